// viewcast.js: the JavaScript client for viewcast's websocket (GET /ws).
// One ES module, no dependencies, no build step; runs in browsers and in
// Node 20+ (give Node 20 a WebSocket constructor, see `connect`). A running
// viewcast serves this file at /client.js.
//
//   import * as viewcast from '/client.js';
//   const vc = viewcast.connect(location.origin, {getToken: fetchMyToken});
//   const sub = vc.subscribe('project_tasks', {project_id: 7}, {
//     onRows(rows, info) { ... },   // rows: the current contents, arrays in column order
//     onError(err) { ... },          // this subscription only
//   });
//   sub.unsubscribe(); vc.close();
//
// Why the client keeps rows itself: the server sends a subscription's
// contents once (a snapshot) and then only changes, as a multiset (a row may
// appear several times). After every batch all subscriptions of a
// connection are at the batch's LSN, so one LSN is enough to resume all of
// them after a dropped connection: the server then sends only what changed
// since, or a fresh snapshot if it cannot. docs/protocol.md, "JavaScript
// client", is the reference.

/** Close codes the server uses (docs/protocol.md). */
export const CLOSE = Object.freeze({
  BAD_MESSAGE: 4400,
  UNAUTHENTICATED: 4401,
  FORBIDDEN: 4403,
  DUPLICATE_ID: 4409,
  TOO_MANY: 4429,
  TOO_SLOW: 4008,
});

/** Codes after which reconnecting would only repeat the refusal. */
const FINAL_CODES = new Set([CLOSE.BAD_MESSAGE, CLOSE.FORBIDDEN, CLOSE.DUPLICATE_ID, CLOSE.TOO_MANY]);

/** First reconnect delay; it doubles per failed attempt up to the maximum. */
const DEFAULT_MIN_BACKOFF_MS = 250;
/** Longest reconnect delay: a restarting server is found within this. */
const DEFAULT_MAX_BACKOFF_MS = 10000;
/** A token is refreshed at most this long before its `exp`. */
const REFRESH_LEAD_MS = 30000;
/** A token expiring within this is not used for a new connection. */
const STALE_MS = 5000;
/** A socket not open within this is given up (and another one tried). */
const DEFAULT_CONNECT_TIMEOUT_MS = 10000;
/**
 * An open connection that has said nothing for this long is given up: a
 * server sends progress at least every 3 s when idle, and the client pings
 * after half this silence (a subscription still waiting for its first rows
 * holds progress back), so only a dead connection stays this quiet.
 */
const DEFAULT_IDLE_TIMEOUT_MS = 15000;
/** How often the client looks at its connection's silence. */
const WATCH_EVERY_MS = 1000;
/** The longest delay setTimeout takes as it is. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** 4401 closes in a row (without a welcome between) before giving up. */
const MAX_UNAUTHENTICATED = 3;

/**
 * The websocket URL for a server base: `http(s)://host:port[/prefix]` or
 * `ws(s)://host:port[/prefix][/ws]`. In a browser a relative URL (or none)
 * is read against the page's location.
 */
export function wsUrl(base) {
  const here = globalThis.location ? globalThis.location.href : undefined;
  const u = new URL(base === undefined ? '/' : String(base), here);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new TypeError(`viewcast: cannot derive a websocket URL from ${u.protocol} URL ${base}`);
  }
  if (!u.pathname.endsWith('/ws')) u.pathname = u.pathname.replace(/\/+$/, '') + '/ws';
  u.search = '';
  u.hash = '';
  return u.toString();
}

/**
 * The `exp` claim of a JWT in seconds, or null: read from the payload
 * without verifying anything (only the server can), to know when to refresh.
 */
export function tokenExpiry(token) {
  if (typeof token !== 'string') return null;
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (part.length % 4)) % 4);
    const bin = atob(b64);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const exp = JSON.parse(new TextDecoder().decode(bytes)).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}

/**
 * Opens a connection to the viewcast server at `url` (see `wsUrl`).
 *
 * Options:
 * - `token`: a JWT to start with.
 * - `getToken`: `async () => jwt`; asked on a (re)connect when there is no
 *   usable token (none, expiring, or the last one was refused with 4401),
 *   and before the current token's `exp`, whose answer is sent as `auth`.
 * - `WebSocket`: the constructor to use (Node 20 has none by default);
 *   otherwise `globalThis.WebSocket`.
 * - `onError(err)`: errors of the connection (not of one subscription):
 *   `err.code` is the close code when the server ended the connection.
 * - `onClose({code, reason, reconnecting})`: every time the socket closes.
 * - `onOpen({lsn})`: every time the server welcomes a (re)connection.
 * - `minBackoff`, `maxBackoff`: reconnect delays in ms.
 * - `connectTimeout`, `idleTimeout`: ms before a socket that does not open,
 *   or an open one that has heard nothing (a ping goes out half way), is
 *   given up and another one opened.
 */
export function connect(url, options = {}) {
  return new Connection(url, options);
}

/** One subscription's rows and callbacks. Made by `Connection.subscribe`. */
export class Subscription {
  constructor(conn, id, view, params, handlers) {
    this.id = id;
    this.view = view;
    this.params = params;
    /** The view's columns (`[{name, type}]`) once the first snapshot came. */
    this.columns = null;
    /** LSN of the contents held, or null before the first snapshot. */
    this.lsn = null;
    this._conn = conn;
    this._onRows = handlers.onRows;
    this._onError = handlers.onError;
    // JSON text of a row -> {row, count}: the multiset.
    this._counts = new Map();
    // True when the rows held are the view's at the connection's LSN: the
    // subscription can be resumed rather than snapshotted again.
    this._held = false;
    // The socket the subscribe (or resume) went out on.
    this._socket = null;
    this._ended = false;
  }

  /** The current rows, each an array in column order, duplicates repeated. */
  get rows() {
    const out = [];
    for (const {row, count} of this._counts.values()) for (let i = 0; i < count; i++) out.push(row);
    return out;
  }

  /** Stops the subscription: no callback is called for it afterwards. */
  unsubscribe() {
    if (this._ended) return;
    this._ended = true;
    this._conn._forget(this);
  }

  _replace(columns, rows) {
    this.columns = columns;
    this._counts = new Map();
    for (const row of rows) this._add(row, 1);
  }

  _add(row, diff) {
    const k = JSON.stringify(row);
    const r = this._counts.get(k);
    const count = (r ? r.count : 0) + diff;
    if (count > 0) this._counts.set(k, {row, count});
    else this._counts.delete(k);
  }
}

/** A connection and its subscriptions; see `connect`. */
export class Connection {
  constructor(url, options) {
    this.url = wsUrl(url);
    this._options = options;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== 'function') {
      throw new TypeError(
        'viewcast: no WebSocket constructor; pass one as connect(url, {WebSocket}) ' +
          '(Node 20: run with --experimental-websocket, or Node 22+)',
      );
    }
    this._token = options.token || null;
    this._getToken = options.getToken || null;
    this._minBackoff = options.minBackoff ?? DEFAULT_MIN_BACKOFF_MS;
    this._maxBackoff = options.maxBackoff ?? DEFAULT_MAX_BACKOFF_MS;
    this._connectTimeout = options.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this._idleTimeout = options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_MS;
    this._subs = new Map();
    this._nextId = 1;
    /** LSN of the last batch or progress: every held subscription is there. */
    this.lsn = null;
    /** The socket in use (null between connections); tests may close it. */
    this._socket = null;
    this._hello = false; // hello went out on _socket
    this._closed = false; // close() was called, or a close code said stop
    this._attempt = 0;
    this._unauthenticated = 0;
    this._needToken = false;
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._watchTimer = null;
    this._heardAt = 0; // when the socket last opened or brought a message
    this._pinged = false;
    this._open();
  }

  /**
   * Subscribes to `view` with `params` (an object; `null`/`{}` for none).
   * `handlers` is `onRows` or `{onRows, onError}`; `onError` may also be
   * the fourth argument. `onRows(rows, info)` runs after each batch that
   * touches this subscription, with all its rows and
   * `info = {columns, changes, snapshot, lsn}` (`changes` is null for a
   * snapshot, which replaced the rows). `onError(err)` gets this
   * subscription's errors (`err.message` from the server, `err.id`,
   * `err.view`); the subscription stays until unsubscribed: a failing view
   * sends a snapshot when it recovers.
   */
  subscribe(view, params, handlers, onError) {
    if (this._closed) throw new Error('viewcast: the connection is closed');
    if (typeof handlers === 'function') handlers = {onRows: handlers, onError};
    handlers = handlers || {};
    const id = `s${this._nextId++}`;
    const sub = new Subscription(this, id, String(view), params || {}, handlers);
    this._subs.set(id, sub);
    if (this._hello) this._subscribeOn(this._socket, sub);
    return sub;
  }

  /**
   * Uses `token` from now on: sent as `{"type":"auth"}` on the open socket
   * (it must carry the same `sub`, or the server closes with 4403) and in
   * the `hello` of later connections.
   */
  setToken(token) {
    this._token = token;
    this._needToken = false;
    if (this._hello) this._send({type: 'auth', token});
    this._scheduleRefresh();
  }

  /** Closes the connection for good; no callbacks afterwards. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._refreshTimer);
    clearInterval(this._watchTimer);
    const ws = this._socket;
    this._socket = null;
    this._hello = false;
    if (ws) {
      try {
        ws.close(1000, 'client closed');
      } catch {
        // Already closing.
      }
    }
    for (const sub of this._subs.values()) sub._ended = true;
    this._subs.clear();
  }

  _forget(sub) {
    if (this._subs.get(sub.id) !== sub) return;
    this._subs.delete(sub.id);
    if (this._hello && sub._socket === this._socket) this._send({type: 'unsubscribe', id: sub.id});
  }

  _send(message) {
    const ws = this._socket;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  _subscribeOn(ws, sub) {
    sub._socket = ws;
    this._send({type: 'subscribe', id: sub.id, view: sub.view, params: sub.params});
  }

  async _tokenForConnect() {
    if (!this._getToken) return this._token;
    const exp = tokenExpiry(this._token);
    const stale = exp !== null && exp * 1000 - Date.now() < STALE_MS;
    if (!this._token || stale || this._needToken) {
      this._token = await this._getToken();
      this._needToken = false;
    }
    return this._token;
  }

  async _open() {
    if (this._closed) return;
    try {
      await this._tokenForConnect();
    } catch (e) {
      this._report(Object.assign(new Error(`viewcast: getToken failed: ${e && e.message}`), {cause: e}));
      this._reconnectLater();
      return;
    }
    if (this._closed) return;
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (e) {
      this._report(e);
      this._reconnectLater();
      return;
    }
    this._socket = ws;
    this._hello = false;
    this._watch(ws);
    ws.onopen = () => {
      if (ws !== this._socket) return;
      this._heard();
      const hello = {type: 'hello'};
      // The newest token: setToken() may have run while this one connected.
      if (this._token) hello.token = this._token;
      // Subscriptions whose rows are at this.lsn continue from there; the
      // others (new, or whose view failed) start over with a snapshot.
      const held = [...this._subs.values()].filter((s) => s._held);
      if (this.lsn && held.length > 0) {
        hello.resume = {lsn: this.lsn, subs: held.map((s) => ({id: s.id, view: s.view, params: s.params}))};
        for (const s of held) s._socket = ws;
      }
      this._send(hello);
      this._hello = true;
      for (const s of this._subs.values()) if (s._socket !== ws) this._subscribeOn(ws, s);
    };
    ws.onmessage = (ev) => {
      if (ws !== this._socket) return;
      this._heard();
      let m;
      try {
        m = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      this._message(m);
    };
    ws.onerror = () => {
      // A close event follows; it decides what happens next.
    };
    ws.onclose = (ev) => {
      if (ws !== this._socket) return;
      this._socket = null;
      this._hello = false;
      clearInterval(this._watchTimer);
      this._closedBy(ev.code, ev.reason || '');
    };
  }

  _heard() {
    this._heardAt = Date.now();
    this._pinged = false;
  }

  /** Gives `ws` up when it does not open, or falls silent (see the options). */
  _watch(ws) {
    clearInterval(this._watchTimer);
    this._heardAt = Date.now();
    this._pinged = false;
    const timer = setInterval(() => {
      if (ws !== this._socket) return clearInterval(timer);
      const quiet = Date.now() - this._heardAt;
      if (ws.readyState === 0 && quiet > this._connectTimeout) {
        this._abandon(ws, `the server did not accept the connection within ${this._connectTimeout} ms`);
      } else if (ws.readyState !== 0 && quiet > this._idleTimeout) {
        this._abandon(ws, `nothing heard from the server for ${this._idleTimeout} ms`);
      } else if (this._hello && quiet > this._idleTimeout / 2 && !this._pinged) {
        this._pinged = this._send({type: 'ping'});
      }
    }, WATCH_EVERY_MS);
    this._watchTimer = timer;
  }

  /** Stops using `ws` without waiting for its close event, and reconnects. */
  _abandon(ws, reason) {
    clearInterval(this._watchTimer);
    this._socket = null;
    this._hello = false;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close();
    } catch {
      // Not open yet, or already closing.
    }
    this._closedBy(1006, reason);
  }

  _message(m) {
    switch (m.type) {
      case 'welcome':
        this._attempt = 0;
        this._unauthenticated = 0;
        this._scheduleRefresh();
        this._call(this._options.onOpen, {lsn: m.lsn});
        break;
      case 'batch':
        this.lsn = m.lsn;
        for (const [id, entry] of Object.entries(m.subs || {})) {
          const sub = this._subs.get(id);
          if (!sub) continue; // unsubscribed meanwhile
          if (entry.snapshot) {
            sub._replace(entry.columns, entry.rows || []);
          } else {
            for (const c of entry.changes || []) sub._add(c.row, c.diff);
          }
          sub._held = true;
          sub.lsn = m.lsn;
          const info = {
            columns: sub.columns,
            changes: entry.snapshot ? null : entry.changes || [],
            snapshot: !!entry.snapshot,
            lsn: m.lsn,
          };
          this._call(sub._onRows, sub.rows, info);
        }
        break;
      case 'progress':
        this.lsn = m.lsn;
        for (const sub of this._subs.values()) if (sub._held) sub.lsn = m.lsn;
        break;
      case 'error': {
        const sub = m.id === undefined ? null : this._subs.get(m.id);
        if (m.id !== undefined && !sub) break; // for an id already dropped
        const err = new Error(m.message);
        if (sub) {
          // Its rows are no longer the view's: a reconnect asks for a snapshot.
          sub._held = false;
          // The server dropped it (unknown view, bad parameters, the view
          // removed): asking again after a reconnect would only repeat this.
          if (m.ended) this._subs.delete(sub.id);
          Object.assign(err, {id: sub.id, view: sub.view, params: sub.params, ended: !!m.ended});
          if (sub._onError) this._call(sub._onError, err);
          else this._report(err);
        } else {
          this._report(err);
        }
        break;
      }
      default:
        break; // pong, and anything newer than this client
    }
  }

  _closedBy(code, reason) {
    if (this._closed) return;
    let reconnecting = true;
    let error = null;
    if (code === CLOSE.UNAUTHENTICATED) {
      this._unauthenticated++;
      if (!this._getToken) {
        reconnecting = false;
        error = `the server refused the token (4401: ${reason}); give a fresh one with setToken(), or pass getToken`;
      } else if (this._unauthenticated >= MAX_UNAUTHENTICATED) {
        reconnecting = false;
        error = `the server refused ${this._unauthenticated} tokens from getToken in a row (4401: ${reason})`;
      } else {
        this._needToken = true;
      }
    } else if (FINAL_CODES.has(code)) {
      reconnecting = false;
      error = `the server closed the connection (${code}: ${reason})`;
    }
    if (!reconnecting) {
      this._closed = true;
      clearTimeout(this._refreshTimer);
    }
    this._call(this._options.onClose, {code, reason, reconnecting});
    if (error) this._report(Object.assign(new Error(`viewcast: ${error}`), {code, reason}));
    if (reconnecting) this._reconnectLater();
  }

  _reconnectLater() {
    if (this._closed) return;
    clearTimeout(this._reconnectTimer);
    const ceiling = Math.min(this._maxBackoff, this._minBackoff * 2 ** this._attempt);
    this._attempt++;
    // Jitter, so clients dropped together do not come back together.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this._reconnectTimer = setTimeout(() => this._open(), delay);
  }

  /** Asks getToken for a new token before the current one expires. */
  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    if (!this._getToken || this._closed) return;
    const exp = tokenExpiry(this._token);
    if (exp === null) return;
    const left = exp * 1000 - Date.now();
    // Expired already: the server closes with 4401 and the reconnect asks.
    if (left <= 0) return;
    // Three quarters into the token's life, or REFRESH_LEAD_MS before its
    // end, whichever is later; never sooner than a second, so a getToken
    // that keeps answering the same token is not asked in a loop.
    const due = Date.now() + Math.max(1000, left - REFRESH_LEAD_MS, left * 0.75);
    this._refreshAt(due);
  }

  _refreshAt(due) {
    // setTimeout fires at once past 2^31-1 ms (24.8 days): wait in steps.
    const wait = Math.min(due - Date.now(), MAX_TIMER_MS);
    this._refreshTimer = setTimeout(async () => {
      if (this._closed) return;
      if (Date.now() < due) return this._refreshAt(due);
      try {
        const token = await this._getToken();
        if (!this._closed) this.setToken(token);
      } catch (e) {
        // The server closes with 4401 at exp; the reconnect asks again.
        this._report(Object.assign(new Error(`viewcast: getToken failed: ${e && e.message}`), {cause: e}));
      }
    }, Math.max(0, wait));
  }

  _report(err) {
    if (this._options.onError) this._call(this._options.onError, err);
    else if (globalThis.console) console.error(err);
  }

  /** Calls a user callback; a throw is rethrown on its own, not into the client. */
  _call(fn, ...args) {
    if (typeof fn !== 'function') return;
    try {
      fn(...args);
    } catch (e) {
      setTimeout(() => {
        throw e;
      }, 0);
    }
  }
}

export default {connect, wsUrl, tokenExpiry, CLOSE};
