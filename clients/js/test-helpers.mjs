// What the Node tests of the client (test/*.test.mjs) share. Outside test/
// so that `node --test clients/js/test/` does not run it as a test file.
//
// The tests run against a viewcast server that tests/js_client.rs starts,
// with these environment variables:
//   VIEWCAST_URL          the server's base, http://127.0.0.1:PORT
//   VIEWCAST_JWT_SECRET   the HS256 secret it verifies tokens with
//   VIEWCAST_SQL_URL      a helper that runs the SQL POSTed to it on the
//                         server's database and answers once it committed
// and the table and views that file sets up (`items`, `tenant_items`,
// `tenant_items_from`).

import crypto from 'node:crypto';
import net from 'node:net';

import * as viewcast from './viewcast.js';

function env(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run these tests through \`cargo test --test main -- js_client\`, which starts the server`);
  }
  return v;
}

export const URL_BASE = env('VIEWCAST_URL');
const SECRET = env('VIEWCAST_JWT_SECRET');
const SQL_URL = env('VIEWCAST_SQL_URL');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** An HS256 JWT with `claims`, expiring in `seconds` unless claims has exp. */
export function sign(claims, seconds = 600) {
  const body = {exp: Math.floor(Date.now() / 1000) + seconds, ...claims};
  const head = b64url(JSON.stringify({alg: 'HS256', typ: 'JWT'}));
  const payload = b64url(JSON.stringify(body));
  const mac = crypto.createHmac('sha256', SECRET).update(`${head}.${payload}`).digest();
  return `${head}.${payload}.${b64url(mac)}`;
}

/** Runs `text` on the server's database; resolves once it committed. */
export async function sql(text) {
  const r = await fetch(SQL_URL, {method: 'POST', body: text});
  if (!r.ok) throw new Error(`SQL failed: ${await r.text()}\n${text}`);
}

/** Removes the rows of these tenants: a test starts from nothing, also when run again. */
export async function reset(...tenants) {
  await sql(`DELETE FROM items WHERE tenant IN (${tenants.map((t) => `'${t}'`).join(', ')})`);
}

/** Polls `cond` until it is truthy; fails with `what` and `detail()` after `ms`. */
export async function waitFor(what, cond, detail = () => '', ms = 20000) {
  const start = Date.now();
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}: ${detail()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rows as sorted JSON texts, to compare multisets. */
export const sorted = (rows) => rows.map((r) => JSON.stringify(r)).sort();

/**
 * A minimal RFC 6455 client over node:net for a Node without a WebSocket
 * (Node 18, or Node 20 without --experimental-websocket): text frames,
 * close, ping. `_kill()` drops the TCP connection without a close frame, as
 * a network failure does.
 */
export class MiniWebSocket {
  constructor(url) {
    const u = new URL(url);
    if (u.protocol !== 'ws:') throw new Error(`MiniWebSocket speaks ws: only, not ${u.protocol}`);
    this.url = url;
    this.readyState = 0;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._buf = Buffer.alloc(0);
    this._parts = [];
    this._open = false;
    this._got = null;
    const key = crypto.randomBytes(16).toString('base64');
    this._accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    this._sock = net.connect(Number(u.port || 80), u.hostname, () => {
      this._sock.write(
        `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this._sock.on('data', (d) => this._data(d));
    this._sock.on('error', () => this.onerror && this.onerror({type: 'error'}));
    this._sock.on('close', () => this._finish(this._got ? this._got.code : 1006, this._got ? this._got.reason : ''));
  }

  send(text) {
    if (this.readyState === 0) throw new Error('InvalidStateError: still connecting');
    if (this.readyState !== 1) return;
    this._frame(0x1, Buffer.from(String(text)));
  }

  close(code = 1000, reason = '') {
    if (this.readyState >= 2) return;
    if (this.readyState === 0) {
      this.readyState = 2;
      this._sock.destroy();
      return;
    }
    this.readyState = 2;
    const r = Buffer.from(reason);
    const p = Buffer.alloc(2 + r.length);
    p.writeUInt16BE(code, 0);
    r.copy(p, 2);
    this._frame(0x8, p);
    setTimeout(() => this._sock.destroy(), 1000).unref();
  }

  _kill() {
    this._sock.destroy();
  }

  _frame(opcode, payload) {
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n]) : Buffer.alloc(n < 65536 ? 4 : 10);
    if (n >= 126 && n < 65536) {
      head[0] = 0x80 | opcode;
      head[1] = 0x80 | 126;
      head.writeUInt16BE(n, 2);
    } else if (n >= 65536) {
      head[0] = 0x80 | opcode;
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(n), 2);
    }
    const mask = crypto.randomBytes(4);
    const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
    this._sock.write(Buffer.concat([head, mask, body]));
  }

  _data(d) {
    this._buf = Buffer.concat([this._buf, d]);
    if (!this._open) {
      const end = this._buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this._buf.subarray(0, end).toString();
      this._buf = this._buf.subarray(end + 4);
      if (!/^HTTP\/1\.1 101/.test(head) || !head.includes(this._accept)) {
        this._sock.destroy();
        return;
      }
      this._open = true;
      this.readyState = 1;
      if (this.onopen) this.onopen({type: 'open'});
    }
    for (;;) {
      const b = this._buf;
      if (b.length < 2) return;
      let len = b[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.length < at + len) return;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      const payload = b.subarray(at, at + len);
      this._buf = b.subarray(at + len);
      if (opcode === 0x0 || opcode === 0x1) {
        this._parts.push(Buffer.from(payload));
        if (fin) {
          const text = Buffer.concat(this._parts).toString('utf8');
          this._parts = [];
          if (this.readyState === 1 && this.onmessage) this.onmessage({data: text});
        }
      } else if (opcode === 0x8) {
        this._got = {
          code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005,
          reason: payload.length > 2 ? payload.subarray(2).toString('utf8') : '',
        };
        if (this.readyState === 1) {
          this.readyState = 2;
          this._frame(0x8, payload.subarray(0, 2));
        }
        this._sock.end();
      } else if (opcode === 0x9) {
        if (this.readyState === 1) this._frame(0xa, payload);
      }
    }
  }

  _finish(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    if (this.onclose) this.onclose({code, reason, wasClean: code !== 1006});
  }
}

/** The WebSocket the tests use: Node's own when it has one. */
export const WebSocketImpl = typeof globalThis.WebSocket === 'function' ? globalThis.WebSocket : MiniWebSocket;

/**
 * A WebSocket class that records every message the client sends (parsed)
 * in `log.sent` and every socket it opens in `log.sockets`.
 */
export function recording(log) {
  log.sent = log.sent || [];
  log.sockets = log.sockets || [];
  return class extends WebSocketImpl {
    constructor(url) {
      super(url);
      log.sockets.push(this);
    }
    send(text) {
      log.sent.push(JSON.parse(text));
      super.send(text);
    }
  };
}

/** Connections opened through `open`, closed by `closeAll`. */
const opened = [];

/** `viewcast.connect` to the test server with the tests' WebSocket. */
export function open(options = {}) {
  const vc = viewcast.connect(URL_BASE, {WebSocket: WebSocketImpl, minBackoff: 50, maxBackoff: 500, ...options});
  opened.push(vc);
  return vc;
}

export function closeAll() {
  while (opened.length) opened.pop().close();
}

export {viewcast};
