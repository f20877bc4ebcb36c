// Tokens: refreshed on the open connection, refused for another user,
// refreshed by getToken before they expire, and after the server closed
// with 4401.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';

import {reset, open, recording, sign, sql, waitFor, sleep, sorted, closeAll} from '../test-helpers.mjs';

after(closeAll);

const same = (rows, want) => JSON.stringify(sorted(rows)) === JSON.stringify(sorted(want));

test('setToken with the same sub keeps the connection and its subscriptions', {timeout: 60000}, async () => {
  await reset('refresh');
  await sql(`INSERT INTO items VALUES (3001, 'refresh', 'a', 0)`);
  const log = {};
  const closes = [];
  const vc = open({token: sign({sub: 'u-refresh', tenant: 'refresh'}), WebSocket: recording(log), onClose: (c) => closes.push(c)});
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot', () => sub.rows.length === 1);
  vc.setToken(sign({sub: 'u-refresh', tenant: 'refresh'}, 1200));
  await sql(`INSERT INTO items VALUES (3002, 'refresh', 'b', 0)`);
  await waitFor('the write', () => same(sub.rows, [[3001, 'a', 0], [3002, 'b', 0]]), () => JSON.stringify(sub.rows));
  assert.equal(log.sent.filter((m) => m.type === 'auth').length, 1);
  assert.equal(log.sockets.length, 1);
  assert.deepEqual(closes, []);
});

test('setToken for another sub: 4403 is surfaced and the client does not reconnect', {timeout: 60000}, async () => {
  await reset('switch');
  const log = {};
  const closes = [];
  const errors = [];
  const vc = open({
    token: sign({sub: 'u-ann', tenant: 'switch'}),
    WebSocket: recording(log),
    onClose: (c) => closes.push(c),
    onError: (e) => errors.push(e),
  });
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot', () => sub.columns);
  vc.setToken(sign({sub: 'u-bob', tenant: 'switch'}));
  await waitFor('the close', () => closes.length > 0);
  assert.equal(closes[0].code, 4403);
  assert.equal(closes[0].reconnecting, false);
  await waitFor('the error', () => errors.length > 0);
  assert.equal(errors[0].code, 4403);
  assert.match(errors[0].message, /4403/);
  await sleep(1000);
  assert.equal(log.sockets.length, 1, 'it reconnected');
  assert.throws(() => vc.subscribe('tenant_items', {}, () => {}), /closed/);
});

test('getToken is asked before the token expires; the connection never drops', {timeout: 60000}, async () => {
  await reset('early');
  await sql(`INSERT INTO items VALUES (3201, 'early', 'a', 0)`);
  const log = {};
  const closes = [];
  let asked = 0;
  const vc = open({
    // Longer than the 5 s under which a token is not even used to connect.
    token: sign({sub: 'u-early', tenant: 'early'}, 7),
    getToken: async () => {
      asked++;
      return sign({sub: 'u-early', tenant: 'early'}, 600);
    },
    WebSocket: recording(log),
    onClose: (c) => closes.push(c),
  });
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot', () => sub.rows.length === 1);
  await sleep(7500); // past the first token's exp
  assert.equal(asked, 1, 'getToken was asked once, before the exp');
  assert.ok(log.sent.some((m) => m.type === 'auth'), 'no auth message');
  await sql(`INSERT INTO items VALUES (3202, 'early', 'b', 0)`);
  await waitFor('the write', () => sub.rows.length === 2, () => JSON.stringify(sub.rows));
  assert.deepEqual(closes, []);
  assert.equal(log.sockets.length, 1);
});

test('a token that expires: the server closes 4401, getToken gives a new one, the client resumes', {timeout: 60000}, async () => {
  await reset('expire');
  await sql(`INSERT INTO items VALUES (3301, 'expire', 'a', 0)`);
  const log = {};
  const closes = [];
  const errors = [];
  let asked = 0;
  const vc = open({
    getToken: async () => {
      asked++;
      // The first token is short; the issuer is down when the client asks
      // again before it expires; then it answers again.
      if (asked === 1) return sign({sub: 'u-expire', tenant: 'expire'}, 3);
      if (asked === 2) throw new Error('issuer unavailable');
      return sign({sub: 'u-expire', tenant: 'expire'}, 600);
    },
    WebSocket: recording(log),
    onClose: (c) => closes.push(c),
    onError: (e) => errors.push(e),
  });
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot', () => sub.rows.length === 1);
  await waitFor('the 4401 close', () => closes.length > 0, () => JSON.stringify(closes), 10000);
  assert.equal(closes[0].code, 4401);
  assert.equal(closes[0].reconnecting, true);
  await sql(`INSERT INTO items VALUES (3302, 'expire', 'b', 0)`);
  await waitFor('the rows after reconnecting', () => log.sockets.length === 2 && same(sub.rows, [[3301, 'a', 0], [3302, 'b', 0]]), () => JSON.stringify(sub.rows));
  assert.equal(asked, 3);
  assert.ok(errors.some((e) => /issuer unavailable/.test(e.message)), errors.map((e) => e.message).join('; '));
  const hellos = log.sent.filter((m) => m.type === 'hello');
  assert.notEqual(hellos[0].token, hellos[1].token);
});

test('a token refused at hello: 4401, and getToken is asked again', {timeout: 60000}, async () => {
  await reset('stale');
  const closes = [];
  let asked = 0;
  const vc = open({
    getToken: async () => {
      asked++;
      // An expired token first (as from a stale cache), then a good one.
      return sign({sub: 'u-stale', tenant: 'stale'}, asked === 1 ? -10 : 600);
    },
    onClose: (c) => closes.push(c),
  });
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot', () => sub.columns, () => JSON.stringify(closes));
  assert.equal(asked, 2);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].code, 4401);
  assert.equal(closes[0].reconnecting, true);
});

test('without getToken, an expired token is surfaced and the client stops', {timeout: 60000}, async () => {
  await reset('noget');
  const log = {};
  const closes = [];
  const errors = [];
  const vc = open({
    token: sign({sub: 'u-noget', tenant: 'noget'}, 2),
    WebSocket: recording(log),
    onClose: (c) => closes.push(c),
    onError: (e) => errors.push(e),
  });
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot', () => sub.columns);
  await waitFor('the 4401 close', () => closes.length > 0, () => '', 10000);
  assert.equal(closes[0].code, 4401);
  assert.equal(closes[0].reconnecting, false);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 4401);
  await sleep(1000);
  assert.equal(log.sockets.length, 1);
});

test('a token refused at hello without getToken: 4401 surfaced, no loop', {timeout: 60000}, async () => {
  await reset('bad');
  const log = {};
  const closes = [];
  const errors = [];
  open({
    token: sign({sub: 'u-bad', tenant: 'bad'}, -10),
    WebSocket: recording(log),
    onClose: (c) => closes.push(c),
    onError: (e) => errors.push(e),
  });
  await waitFor('the close', () => closes.length > 0);
  assert.equal(closes[0].code, 4401);
  assert.match(errors[0].message, /expired/);
  await sleep(800);
  assert.equal(log.sockets.length, 1);
});
