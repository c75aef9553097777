/** Items of the builder's streamed JSON array (`POST /v3/build`), as balena's builder sends them. */
export type BuildEvent =
  | {type: 'metadata'; resource: 'buildLogId'; value: number}
  | {type: 'metadata'; resource: 'cursor'; value: string}
  | {type?: undefined; message: string; replace?: boolean; isError?: boolean; isSuccess?: boolean}

/** The answer of a headless (`--detached`) build request. */
export type HeadlessBuildAnswer = {started: true; releaseId: number} | {started: false; error: string; message: string}
