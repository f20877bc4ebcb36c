// The client's pure parts: no server needed.
import {test} from 'node:test';
import assert from 'node:assert/strict';

import * as viewcast from '../viewcast.js';
import client from '../viewcast.js';

test('the websocket URL is derived from the server base', () => {
  assert.equal(viewcast.wsUrl('http://127.0.0.1:8080'), 'ws://127.0.0.1:8080/ws');
  assert.equal(viewcast.wsUrl('http://127.0.0.1:8080/'), 'ws://127.0.0.1:8080/ws');
  assert.equal(viewcast.wsUrl('https://example.com/live/'), 'wss://example.com/live/ws');
  assert.equal(viewcast.wsUrl('ws://h:1/ws'), 'ws://h:1/ws');
  assert.equal(viewcast.wsUrl('wss://h/ws?x=1#y'), 'wss://h/ws');
  assert.throws(() => viewcast.wsUrl('ftp://h/'), /websocket URL/);
});

test('a token\'s exp is read without verifying it', () => {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  assert.equal(viewcast.tokenExpiry(`${part({alg: 'HS256'})}.${part({sub: 'ü', exp: 1700000000})}.sig`), 1700000000);
  assert.equal(viewcast.tokenExpiry(`${part({alg: 'HS256'})}.${part({sub: 'a'})}.sig`), null);
  assert.equal(viewcast.tokenExpiry('not a jwt'), null);
  assert.equal(viewcast.tokenExpiry(undefined), null);
});

test('the default export has connect', () => {
  assert.equal(client.connect, viewcast.connect);
});

test('without a WebSocket constructor, connect says what to pass', () => {
  if (typeof globalThis.WebSocket === 'function') return;
  assert.throws(() => viewcast.connect('http://127.0.0.1:1'), /WebSocket constructor/);
});
