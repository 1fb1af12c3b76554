/**
 * Limits on the API's long-lived streams, so that clients cannot grow the daemon's memory: at most so many event
 * streams at once (TOO_MANY_CLIENTS 429 past that; the console takes one client per instance, CONSOLE_BUSY; the
 * graphical console a few, TOO_MANY_CLIENTS), and a client that does not read what it is sent is cut once the bytes
 * waiting for it pass a bound (the graphical console first stops reading from QEMU, which then holds back its
 * screen updates, and cuts a client that stays that slow).
 */
export interface StreamLimits {
  /** concurrent /v1/events streams per listener */
  maxEventStreams: number;
  /** concurrent graphical console (VNC) websockets per instance (TOO_MANY_CLIENTS 429 past that) */
  maxVncClients: number;
  /** bytes waiting for one client (an event stream's queue, a console websocket's buffer) before it is cut */
  maxBufferedBytes: number;
  /** how long a cut client has to read its last words before its connection is destroyed */
  cutGraceMs: number;
  /** how long reading from QEMU's VNC socket may stay paused for a client that does not read before it is cut */
  vncStallMs: number;
}

export const STREAM_LIMITS: StreamLimits = { maxEventStreams: 64, maxVncClients: 4, maxBufferedBytes: 1024 * 1024, cutGraceMs: 5000, vncStallMs: 30_000 };

/** The event that ends a stream whose client read too slowly (not stored: it has no id). */
export const TOO_SLOW_EVENT = 'events.too-slow';

/** What an event stream writes ahead into its socket before it queues: the rest waits, counted, in the route. */
export const EVENT_WRITE_WINDOW = 64 * 1024;
