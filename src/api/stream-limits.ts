/**
 * Limits on the API's long-lived streams, so that clients cannot grow the daemon's memory: at most so many event
 * streams at once (TOO_MANY_CLIENTS 429 past that; the console takes one client per instance, CONSOLE_BUSY), and
 * a client that does not read what it is sent is cut once the bytes waiting for it pass a bound.
 */
export interface StreamLimits {
  /** concurrent /v1/events streams per listener */
  maxEventStreams: number;
  /** bytes waiting for one client (an event stream's queue, a console websocket's buffer) before it is cut */
  maxBufferedBytes: number;
  /** how long a cut client has to read its last words before its connection is destroyed */
  cutGraceMs: number;
}

export const STREAM_LIMITS: StreamLimits = { maxEventStreams: 64, maxBufferedBytes: 1024 * 1024, cutGraceMs: 5000 };

/** The event that ends a stream whose client read too slowly (not stored: it has no id). */
export const TOO_SLOW_EVENT = 'events.too-slow';

/** What an event stream writes ahead into its socket before it queues: the rest waits, counted, in the route. */
export const EVENT_WRITE_WINDOW = 64 * 1024;
