/**
 * The one error hierarchy of flotilla. Libraries throw these; the CLI's base command turns an
 * ExpectedError into one line on stderr with its exit code, and anything else into a bug report.
 */
export class ExpectedError extends Error {
  readonly exitCode: number

  constructor(message: string, options: {exitCode?: number; cause?: unknown} = {}) {
    super(message, {cause: options.cause})
    this.name = new.target.name
    this.exitCode = options.exitCode ?? 1
  }
}

/** Wrong flags or arguments: exit code 2. */
export class UsageError extends ExpectedError {
  constructor(message: string) {
    super(message, {exitCode: 2})
  }
}

export class NotLoggedInError extends ExpectedError {
  constructor(message = 'not logged in — run "flotilla login"') {
    super(message)
  }
}

export class NotFoundError extends ExpectedError {
  constructor(
    readonly kind: string,
    readonly reference: string,
    hint?: string,
  ) {
    super(`${kind} "${reference}" not found${hint ? ` — ${hint}` : ''}`)
  }
}

/** The server answered with an error status that no more specific error explains. */
export class ApiError extends ExpectedError {
  constructor(
    message: string,
    readonly statusCode: number,
    readonly body?: unknown,
  ) {
    super(message)
  }
}

/** The server could not be reached at all; `hint` says what to check (default: start a local server). */
export class ConnectionError extends ExpectedError {
  constructor(readonly url: string, cause?: unknown, hint = 'is it running? (start one with "flotilla server start")') {
    super(`cannot reach the fleet server at ${url} — ${hint}`, {cause})
  }
}

/** The user pressed Ctrl-C or an operation was aborted on purpose: exit code 130. */
export class InterruptedError extends ExpectedError {
  constructor(message = 'interrupted') {
    super(message, {exitCode: 130})
  }
}
