// Types of crossbar-jwt.js, written by hand: every name the module exports, nothing more
// (tests/unit/test_js_kit_package.py compares them with what node imports, and type-checks a
// program against this file with tsc --strict).
//
// AutobahnJS ships no types; the interfaces below describe only what the kit hands you (the joined
// autobahn.Session, the autobahn.Connection underneath) and what it needs from the module.

/** The router ended the session at the token's exp (+ grace): the kit reconnects with a fresh token. */
export declare const EXPIRED: "authenticator.error.expired";
/** A refresh was refused (the token is for other roles): the kit reconnects with that token at once. */
export declare const REFRESH_REFUSED: "authenticator.error.refresh_refused";
/** getToken() threw or returned something that is not a token: the kit retries with backoff. */
export declare const TOKEN_UNAVAILABLE: "crossbar-jwt.token_unavailable";
/** getToken() returned null: there is no user to log in; the kit stops. */
export declare const NO_TOKEN: "crossbar-jwt.no_token";
/** Reasons after which the kit stops instead of reconnecting (revoked, a wrong key or claim, NO_TOKEN...). */
export declare const FINAL_REASONS: ReadonlySet<string>;
/** The longest timer the kit sets, in seconds: 2^31 − 1 ms (about 24.8 days). */
export declare const MAX_TIMER_SECONDS: number;

/** Seconds from now until the refresh, from the seconds the router says the token has left. */
export declare function refreshDelay(expiresIn: number, refreshAheadSeconds?: number): number;

export interface RetryOptions {
  /** Seconds before the first retry (0.5). */
  initial?: number;
  /** The longest delay, in seconds (1.5). */
  maximum?: number;
  /** Growth per attempt (1.5). */
  growth?: number;
  /** ± this fraction of the delay (0.1). */
  jitter?: number;
}

/** Seconds before retry `attempt` (0, 1, ...); `rand` returns a number in [0, 1). */
export declare function retryDelay(attempt: number, options?: RetryOptions, rand?: () => number): number;

/** connecting → connected ⇄ reconnecting → stopped. */
export type State = "connecting" | "connected" | "reconnecting" | "stopped";

/** What the router puts in WELCOME's authextra (anonymous sessions: no exp). */
export interface AuthExtra {
  /** Every role of the token, most privileged first. */
  roles?: string[];
  /** The token's exp (Unix time, seconds). */
  exp?: number | null;
  /** Seconds the token has left, by the router's clock. */
  expires_in?: number | null;
  /** Behind proxy workers: an opaque key. */
  login?: string;
  [key: string]: unknown;
}

/** The second argument of onSession: AutobahnJS's join details. */
export interface SessionDetails {
  authid: string;
  authrole: string;
  authmethod?: string;
  authprovider?: string;
  authextra?: AuthExtra;
  [key: string]: unknown;
}

/** The joined autobahn.Session, as far as this file describes it (AutobahnJS has more). */
export interface Session {
  readonly id: number;
  readonly isOpen: boolean;
  subscribe(
    topic: string,
    handler: (args: any[], kwargs: Record<string, any>, details: any) => void,
    options?: Record<string, unknown>,
  ): Promise<unknown>;
  publish(
    topic: string,
    args?: unknown[],
    kwargs?: Record<string, unknown>,
    options?: Record<string, unknown>,
  ): Promise<unknown> | undefined;
  call(procedure: string, args?: unknown[], kwargs?: Record<string, unknown>, options?: Record<string, unknown>): Promise<any>;
  register(
    procedure: string,
    endpoint: (args: any[], kwargs: Record<string, any>, details: any) => unknown,
    options?: Record<string, unknown>,
  ): Promise<unknown>;
  leave(reason?: string, message?: string): void;
}

/** The autobahn.Connection underneath (the kit opens, retries and closes it). */
export interface Connection {
  readonly isOpen: boolean;
  readonly isRetrying: boolean;
  readonly session: Session | null;
}

/** The AutobahnJS module: the global `autobahn` of autobahn.min.js, or `import autobahn from "autobahn"`. */
export interface AutobahnModule {
  Connection: new (options: any) => any;
  log?: { warn: (...args: any[]) => void };
}

export interface ConnectOptions {
  /** The router's WebSocket, e.g. "wss://example.org/ws". */
  url: string;
  realm: string;
  /**
   * A fresh JWT, on every connect and reconnect and before exp; null: no user to log in (the kit
   * stops, reason NO_TOKEN); throwing: retried with backoff. Without it the session is anonymous.
   */
  getToken?: (() => string | null | Promise<string | null>) | null;
  /** Every join: the first and after each reconnect. Subscribe and register here. */
  onSession?: (session: Session, details: SessionDetails) => void;
  /** Every change of client.state; client.reason and client.message say why. */
  onState?: (state: State, client: Client) => void;
  /** After each refresh, with the new token's exp (Unix time, seconds). */
  onRefresh?: (exp: number) => void;
  /** Refresh this many seconds before exp, at most a third of what is left (10). */
  refreshAheadSeconds?: number;
  /** Seconds before the first retry (0.5). */
  initialRetryDelay?: number;
  /** The longest delay between retries, in seconds (1.5). */
  maxRetryDelay?: number;
  /** Growth of the delay per retry (1.5). */
  retryDelayGrowth?: number;
  /** ± this fraction of each delay (0.1). */
  retryDelayJitter?: number;
  /** Reasons to stop on instead of reconnecting (FINAL_REASONS). */
  finalReasons?: ReadonlySet<string>;
  /** The AutobahnJS module (default: the global `autobahn`). */
  autobahn?: AutobahnModule;
}

export interface Client {
  readonly state: State;
  /** The WAMP reason URI that ended the last session or attempt (null while connected). */
  readonly reason: string | null;
  readonly message: string | null;
  /** The joined session, or null between sessions. */
  readonly session: Session | null;
  /** Refreshes that succeeded. */
  readonly refreshes: number;
  readonly connection: Connection;
  /** Ends the session and every retry: state "stopped", reason "wamp.close.normal". */
  close(): void;
}

/** One WAMP connection that stays logged in. Throws if there is no AutobahnJS. */
export declare function connect(options: ConnectOptions): Client;
