import type { ErrorCode } from "./protocol.js";

/** An `error` reply from the socket, or an error answer from the REST API. */
export class MeshiError extends Error {
  constructor(
    readonly code: ErrorCode | string,
    message: string,
    /** Present on `rate_limited`. */
    readonly retryAfterMs?: number,
    /** The HTTP status, for REST errors. */
    readonly status?: number,
  ) {
    super(message);
    this.name = "MeshiError";
  }
}

/** A request had no reply within its timeout. */
export class MeshiTimeoutError extends Error {
  constructor(
    readonly op: string,
    readonly timeoutMs: number,
  ) {
    super(`${op}: no reply within ${timeoutMs} ms`);
    this.name = "MeshiTimeoutError";
  }
}

/**
 * The socket closed before a request was answered (requests that cannot be
 * retried safely), or the client is closed or stopped.
 */
export class MeshiConnectionError extends Error {
  constructor(
    message: string,
    readonly closeCode?: number,
  ) {
    super(message);
    this.name = "MeshiConnectionError";
  }
}
