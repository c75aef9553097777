/** Items of the builder's streamed JSON array (`POST /v3/build`), as balena's builder sends them. */
export type BuildEvent =
  | {type: 'metadata'; resource: 'buildLogId'; value: number}
  | {type: 'metadata'; resource: 'cursor'; value: string}
  /**
   * [flotilla] The upload named stored contents (protocol/build-upload.ts) this builder does not have — another
   * server instance, with a data dir of its own, answered the contents query: the hashes it lacks. The upload is
   * refused (an `isError` item follows); the client sends the project again once, with these contents in full.
   */
  | {type: 'metadata'; resource: 'missingContents'; value: string[]}
  | {type?: undefined; message: string; replace?: boolean; isError?: boolean; isSuccess?: boolean}

/** The answer of a headless (`--detached`) build request. */
export type HeadlessBuildAnswer = {started: true; releaseId: number} | {started: false; error: string; message: string; /** [flotilla] as the `missingContents` item */ missing?: string[]}
