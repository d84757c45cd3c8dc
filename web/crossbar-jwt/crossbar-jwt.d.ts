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
/** The procedure that gives a topic's kept events after a position (recovering subscriptions call it). */
export declare const HISTORY_PROCEDURE: "authenticator.history";
/** The procedure that says who is subscribed to a topic: {authids, sessions}. */
export declare const PRESENCE_PROCEDURE: "authenticator.presence";
/** Join/leave events of topic T are published on this prefix + T: kwargs {event: "join" | "leave", authid}. */
export declare const PRESENCE_TOPIC_PREFIX: "authenticator.presence.";
/** The EVENT detail with a live event's position on a topic that keeps history. */
export declare const EVENT_POSITION_DETAIL: "x_position";
/** The AutobahnJS version whose EVENT handling the kit reads positions from (others: no live positions). */
export declare const VERIFIED_AUTOBAHN: string;
/** sessionStorage keys of kept positions: this prefix + realm + " " + topic. */
export declare const RECOVERY_KEY_PREFIX: string;

/** Seconds from now until the refresh, from the seconds the router says the token has left. */
export declare function refreshDelay(expiresIn: number, refreshAheadSeconds?: number): number;

export interface RetryOptions {
  /** The cap of the first retry's delay, in seconds (0.5). */
  initial?: number;
  /** The largest cap, in seconds (10). */
  maximum?: number;
  /** Growth of the cap per attempt (2). */
  growth?: number;
  /** The random part of each delay: uniform in [(1 − jitter) × cap, cap]; 1, the default, is full jitter. */
  jitter?: number;
}

/** Seconds before retry `attempt` (0, 1, ...): full jitter below a growing cap; `rand` returns a number in [0, 1). */
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

/** A place in a topic's history, as the router hands it out (opaque: give it back unchanged). */
export interface Position {
  offset: number;
  epoch: string;
}

/** The third argument of a client.subscribe handler. */
export interface EventDetails {
  topic?: string;
  /** The event's position (topics that keep history; null otherwise). */
  position: Position | null;
  /** true: delivered from the history (published while this page was not subscribed). */
  missed: boolean;
  /** The publisher, where the policy discloses it. */
  publisher_authid?: string | null;
  [key: string]: unknown;
}

/** What onRecovered is told after each (re)subscribe that had a position to recover from. */
export interface Recovery {
  /** false: events were lost for good (history too old or too short, another epoch): reload from your own data. */
  recovered: boolean;
  /** Events delivered from the history before the live ones. */
  missed: number;
  /** The history was refused for this topic (e.g. authenticator.error.no_history): no recovery on this session. */
  error?: string;
}

export interface SubscribeOptions {
  /** A topic that keeps history: every event once, in order, also those missed while disconnected or reloading. */
  recover?: boolean;
  /** After each recovery (a resubscribe, a reload, a gap in the live events). */
  onRecovered?: ((recovery: Recovery) => void) | null;
  /** A subscribe or history call failed (default: console.warn). */
  onError?: ((error: any) => void) | null;
  /** AutobahnJS's subscribe options (match, get_retained, ...). */
  options?: Record<string, unknown>;
}

/** A subscription the kit makes on every join until unsubscribe(). */
export interface KitSubscription {
  readonly topic: string;
  /** The last position delivered (recovering subscriptions), kept in sessionStorage too. */
  readonly position: Position | null;
  /** Subscribed on the current session. */
  readonly active: boolean;
  unsubscribe(): Promise<void>;
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
  version?: string;
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
  /** The cap of the first retry's delay, in seconds (0.5): the retry comes after a random part of it. */
  initialRetryDelay?: number;
  /** The largest cap of a retry's delay, in seconds (10; docs/clients.md#backoff). */
  maxRetryDelay?: number;
  /** Growth of the cap per retry (2). */
  retryDelayGrowth?: number;
  /** The random part of each delay, uniform in [(1 − jitter) × cap, cap] (1: full jitter). */
  retryDelayJitter?: number;
  /** Reasons to stop on instead of reconnecting (FINAL_REASONS). */
  finalReasons?: ReadonlySet<string>;
  /** The AutobahnJS module (default: the global `autobahn`). */
  autobahn?: AutobahnModule;
  /** Events per history call of a recovering subscription (100; the router gives at most 1000). */
  historyPageSize?: number;
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
  /** Subscribes now (if joined) and on every later join; {recover: true} recovers missed events. */
  subscribe(
    topic: string,
    handler: (args: any[], kwargs: Record<string, any>, details: EventDetails) => void,
    options?: SubscribeOptions,
  ): KitSubscription;
  /** Ends the session and every retry: state "stopped", reason "wamp.close.normal". */
  close(): void;
}

/** One WAMP connection that stays logged in. Throws if there is no AutobahnJS. */
export declare function connect(options: ConnectOptions): Client;
