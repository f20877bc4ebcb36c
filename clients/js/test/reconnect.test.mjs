// A dropped connection: the client reconnects by itself and resumes its
// subscriptions from the last LSN it holds, or takes a snapshot that
// replaces its rows; either way the rows end exactly right.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';

import net from 'node:net';

import {reset, open, recording, sign, sql, waitFor, sorted, closeAll, URL_BASE, WebSocketImpl} from '../test-helpers.mjs';

after(closeAll);

const same = (rows, want) => JSON.stringify(sorted(rows)) === JSON.stringify(sorted(want));

/** Drops the client's socket: a lost TCP connection where the test socket can, else a close. */
function drop(vc) {
  const ws = vc._socket;
  assert.ok(ws && ws.readyState === 1, 'the client has an open socket');
  if (typeof ws._kill === 'function') ws._kill();
  else ws.close();
}

test('after a dropped socket the client resumes: changes since, no snapshot, no duplicates', {timeout: 60000}, async () => {
  await reset('resume');
  await sql(`INSERT INTO items VALUES (2001, 'resume', 'a', 0), (2002, 'resume', 'b', 0)`);
  const log = {};
  const closes = [];
  const vc = open({token: sign({sub: 'u-resume', tenant: 'resume'}), WebSocket: recording(log), onClose: (c) => closes.push(c)});
  const calls = [];
  const sub = vc.subscribe('tenant_items', {}, (rows, info) => calls.push(info));
  const labels = vc.subscribe('tenant_labels', {}, () => {});
  await waitFor('the snapshot', () => sub.columns && labels.columns);
  // A change after the snapshot, so the server has history to resume from.
  await sql(`INSERT INTO items VALUES (2003, 'resume', 'c', 0)`);
  let want = [[2001, 'a', 0], [2002, 'b', 0], [2003, 'c', 0]];
  await waitFor('the first write', () => same(sub.rows, want), () => JSON.stringify(sub.rows));
  await waitFor('the labels', () => labels.rows.length === 3);
  const heldAt = vc.lsn;
  const callsBefore = calls.length;

  drop(vc);
  // Written while the client may be away.
  await sql(`INSERT INTO items VALUES (2004, 'resume', 'd', 0)`);
  await sql(`UPDATE items SET n = 5 WHERE id = 2001`);
  await sql(`DELETE FROM items WHERE id = 2002`);
  want = [[2001, 'a', 5], [2003, 'c', 0], [2004, 'd', 0]];
  await waitFor('the rows after reconnecting', () => log.sockets.length >= 2 && same(sub.rows, want), () => JSON.stringify(sub.rows));
  await waitFor('the labels after reconnecting', () => same(labels.rows, [['a'], ['c'], ['d']]), () => JSON.stringify(labels.rows));

  assert.ok(closes.length >= 1 && closes.every((c) => c.reconnecting), JSON.stringify(closes));
  const hellos = log.sent.filter((m) => m.type === 'hello');
  assert.equal(hellos.length, log.sockets.length);
  const resume = hellos[1].resume;
  assert.ok(resume, `the second hello resumes: ${JSON.stringify(hellos[1])}`);
  assert.equal(resume.lsn, heldAt);
  assert.deepEqual(
    resume.subs.map((s) => s.id).sort(),
    [sub.id, labels.id].sort(),
  );
  assert.deepEqual(resume.subs.find((s) => s.id === sub.id), {id: sub.id, view: 'tenant_items', params: {}});
  // Resumed, not subscribed again.
  const subscribes = log.sent.filter((m) => m.type === 'subscribe');
  assert.equal(subscribes.length, 2, JSON.stringify(subscribes));
  // The history reached back: only changes came after the reconnect.
  const after = calls.slice(callsBefore);
  assert.ok(after.length >= 1);
  assert.ok(after.every((i) => !i.snapshot), JSON.stringify(after));
  // No row held twice.
  assert.equal(new Set(sub.rows.map((r) => JSON.stringify(r))).size, sub.rows.length);
});

test('when the server cannot resume, its snapshot replaces the rows held', {timeout: 60000}, async () => {
  await reset('reset');
  await sql(`INSERT INTO items VALUES (2101, 'reset', 'a', 0), (2102, 'reset', 'b', 0)`);
  const log = {};
  const vc = open({token: sign({sub: 'u-reset', tenant: 'reset'}), WebSocket: recording(log)});
  const calls = [];
  const sub = vc.subscribe('tenant_items', {}, (rows, info) => calls.push(info));
  await waitFor('the snapshot', () => sub.rows.length === 2);
  // A position from before this server started: it cannot vouch for it.
  vc.lsn = '0/1';
  const n = calls.length;
  drop(vc);
  await sql(`DELETE FROM items WHERE id = 2101; INSERT INTO items VALUES (2103, 'reset', 'c', 0)`);
  const want = [[2102, 'b', 0], [2103, 'c', 0]];
  await waitFor('the rows after the reset', () => log.sockets.length >= 2 && same(sub.rows, want), () => JSON.stringify(sub.rows));
  assert.equal(log.sent.filter((m) => m.type === 'hello')[1].resume.lsn, '0/1');
  assert.ok(calls.slice(n).some((i) => i.snapshot), 'a snapshot came');
});

test('several drops while writing, some before the socket opened: the rows stay exact', {timeout: 90000}, async () => {
  await reset('drops');
  // A socket closed while it connects may never report its close (Node's
  // WebSocket): the client gives it up after connectTimeout.
  const vc = open({token: sign({sub: 'u-drops', tenant: 'drops'}), connectTimeout: 1000});
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot', () => sub.columns);
  const want = new Map();
  for (let round = 0; round < 6; round++) {
    const id = 2200 + round;
    await sql(`INSERT INTO items VALUES (${id}, 'drops', 'r${round}', ${round})`);
    want.set(id, [id, `r${round}`, round]);
    if (round % 2 === 1) {
      await sql(`UPDATE items SET n = n + 100 WHERE id = ${id - 1}`);
      want.get(id - 1)[2] += 100;
    }
    const ws = vc._socket;
    if (ws && ws.readyState === 1) drop(vc);
    else if (ws) ws.close();
  }
  await waitFor('the rows', () => same(sub.rows, [...want.values()]), () => JSON.stringify(sub.rows));
});

/** A TCP proxy to the server whose connections can be frozen: bytes stop, sockets stay open. */
async function proxy() {
  const target = new URL(URL_BASE);
  const pairs = [];
  const server = net.createServer((c) => {
    const up = net.connect(Number(target.port), target.hostname);
    const pair = {c, up, frozen: false};
    pairs.push(pair);
    c.on('data', (d) => pair.frozen || up.write(d));
    up.on('data', (d) => pair.frozen || c.write(d));
    for (const [a, b] of [[c, up], [up, c]]) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `ws://127.0.0.1:${server.address().port}/ws`,
    freeze: () => pairs.forEach((p) => (p.frozen = true)),
    connections: () => pairs.length,
    close: () => {
      pairs.forEach((p) => p.c.destroy());
      server.close();
    },
  };
}

/** A WebSocket class that connects to `url` instead of where it is told. */
const via = (url) => class extends WebSocketImpl {
  constructor() {
    super(url);
  }
};

test('a connection that falls silent is given up and resumed', {timeout: 60000}, async () => {
  await reset('silent');
  await sql(`INSERT INTO items VALUES (2301, 'silent', 'a', 0)`);
  const p = await proxy();
  const closes = [];
  const vc = open({
    token: sign({sub: 'u-silent', tenant: 'silent'}),
    WebSocket: via(p.url),
    idleTimeout: 2000,
    onClose: (c) => closes.push(c),
  });
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot', () => sub.rows.length === 1);
  p.freeze(); // a half-open connection: no FIN, no RST, nothing
  await sql(`INSERT INTO items VALUES (2302, 'silent', 'b', 0)`);
  await waitFor('the rows through a new connection', () => same(sub.rows, [[2301, 'a', 0], [2302, 'b', 0]]), () => JSON.stringify({rows: sub.rows, closes}));
  assert.equal(p.connections(), 2);
  assert.equal(closes.length, 1);
  assert.equal(closes[0].code, 1006);
  assert.match(closes[0].reason, /nothing heard/);
  vc.close();
  p.close();
});

test('a server that accepts TCP but never answers the upgrade is given up', {timeout: 60000}, async () => {
  await reset('hole');
  const held = [];
  const hole = net.createServer((c) => held.push(c));
  await new Promise((r) => hole.listen(0, '127.0.0.1', r));
  let made = 0;
  const Hole = class extends WebSocketImpl {
    constructor(url) {
      super(made++ === 0 ? `ws://127.0.0.1:${hole.address().port}/ws` : url);
    }
  };
  const closes = [];
  const vc = open({token: sign({sub: 'u-hole', tenant: 'hole'}), WebSocket: Hole, connectTimeout: 500, onClose: (c) => closes.push(c)});
  const sub = vc.subscribe('tenant_items', {}, () => {});
  await waitFor('the snapshot from the real server', () => sub.columns, () => JSON.stringify(closes));
  assert.equal(closes.length, 1);
  assert.equal(closes[0].reconnecting, true);
  assert.match(closes[0].reason, /did not accept/);
  vc.close();
  held.forEach((c) => c.destroy());
  hole.close();
});
