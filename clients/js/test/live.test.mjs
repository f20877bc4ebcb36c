// Snapshot, then live changes; a multiset; unsubscribe; errors of one
// subscription. Each test has a tenant of its own, so tests never see each
// other's rows (the views filter by the token's `tenant` claim).
import {test, after} from 'node:test';
import assert from 'node:assert/strict';

import {reset, open, sign, sql, waitFor, sleep, sorted, closeAll} from '../test-helpers.mjs';

after(closeAll);

const same = (rows, want) => JSON.stringify(sorted(rows)) === JSON.stringify(sorted(want));

test('a snapshot, then live changes that equal what was written', {timeout: 60000}, async () => {
  await reset('live', 'live-other');
  await sql(`INSERT INTO items VALUES (1001, 'live', 'a', 1), (1002, 'live', 'b', 2), (1003, 'live-other', 'x', 3)`);
  const errors = [];
  const vc = open({token: sign({sub: 'u-live', tenant: 'live'}), onError: (e) => errors.push(e)});
  const calls = [];
  const sub = vc.subscribe('tenant_items', {}, (rows, info) => calls.push({rows, info}));
  await waitFor('the snapshot', () => calls.length > 0);
  assert.equal(calls[0].info.snapshot, true);
  assert.equal(calls[0].info.changes, null);
  assert.deepEqual(calls[0].info.columns.map((c) => c.name), ['id', 'label', 'n']);
  assert.deepEqual(sorted(calls[0].rows), sorted([[1001, 'a', 1], [1002, 'b', 2]]));

  // One transaction per statement, then one with several.
  await sql(`INSERT INTO items VALUES (1004, 'live', 'c', 4)`);
  await sql(`UPDATE items SET n = n + 10 WHERE id = 1001`);
  await sql(`DELETE FROM items WHERE id = 1002`);
  await sql(`INSERT INTO items VALUES (1005, 'live-other', 'y', 5)`);
  await sql(`INSERT INTO items VALUES (1006, 'live', 'd', 6); UPDATE items SET label = 'cc' WHERE id = 1004; DELETE FROM items WHERE id = 1006`);
  const want = [[1001, 'a', 11], [1004, 'cc', 4]];
  await waitFor('the writes', () => same(sub.rows, want), () => JSON.stringify(sub.rows));

  // Every later call carried changes, at LSNs that never go back, and
  // handed over the rows as the subscription holds them.
  const later = calls.slice(1);
  assert.ok(later.length >= 1);
  for (const c of later) {
    assert.equal(c.info.snapshot, false);
    assert.ok(Array.isArray(c.info.changes) && c.info.changes.length > 0, JSON.stringify(c.info));
  }
  const lsns = calls.map((c) => c.info.lsn.split('/').map((h) => parseInt(h, 16)));
  for (let i = 1; i < lsns.length; i++) {
    const [a, b] = [lsns[i - 1], lsns[i]];
    assert.ok(b[0] > a[0] || (b[0] === a[0] && b[1] >= a[1]), `LSNs go back: ${calls.map((c) => c.info.lsn)}`);
  }
  assert.deepEqual(sorted(calls.at(-1).rows), sorted(want));
  assert.deepEqual(errors, []);
});

test('rows are a multiset: a duplicate row is held twice and removed once', {timeout: 60000}, async () => {
  await reset('multi');
  await sql(`INSERT INTO items VALUES (1101, 'multi', 'same', 0), (1102, 'multi', 'same', 0), (1103, 'multi', 'other', 0)`);
  const vc = open({token: sign({sub: 'u-multi', tenant: 'multi'})});
  const sub = vc.subscribe('tenant_labels', null, () => {});
  await waitFor('the snapshot', () => same(sub.rows, [['same'], ['same'], ['other']]), () => JSON.stringify(sub.rows));
  await sql(`DELETE FROM items WHERE id = 1101`);
  await waitFor('one copy gone', () => same(sub.rows, [['same'], ['other']]), () => JSON.stringify(sub.rows));
  await sql(`DELETE FROM items WHERE id = 1102`);
  await waitFor('both gone', () => same(sub.rows, [['other']]), () => JSON.stringify(sub.rows));
});

test('unsubscribe stops the callbacks of that subscription only', {timeout: 60000}, async () => {
  await reset('unsub');
  await sql(`INSERT INTO items VALUES (1201, 'unsub', 'a', 0)`);
  const vc = open({token: sign({sub: 'u-unsub', tenant: 'unsub'})});
  let stopped = 0;
  let kept = 0;
  const a = vc.subscribe('tenant_items', {}, () => stopped++);
  const b = vc.subscribe('tenant_labels', {}, () => kept++);
  await waitFor('both snapshots', () => stopped > 0 && kept > 0);
  a.unsubscribe();
  a.unsubscribe(); // twice is harmless
  const before = stopped;
  await sql(`INSERT INTO items VALUES (1202, 'unsub', 'b', 0)`);
  await waitFor('the other subscription sees the write', () => same(b.rows, [['a'], ['b']]), () => JSON.stringify(b.rows));
  await sleep(300);
  assert.equal(stopped, before, 'a callback ran after unsubscribe');
});

test('bad parameters are an error for that subscription alone', {timeout: 60000}, async () => {
  await reset('params');
  await sql(`INSERT INTO items VALUES (1301, 'params', 'low', 0), (1350, 'params', 'high', 0)`);
  const connectionErrors = [];
  const closes = [];
  const vc = open({
    token: sign({sub: 'u-params', tenant: 'params'}),
    onError: (e) => connectionErrors.push(e),
    onClose: (c) => closes.push(c),
  });
  const errs = {};
  const onError = (name) => (e) => (errs[name] = e);
  const good = vc.subscribe('tenant_items_from', {min_id: 1340}, {onRows: () => {}, onError: onError('good')});
  const text = vc.subscribe('tenant_items_from', {min_id: '1340'}, () => {}, onError('text'));
  const malformed = vc.subscribe('tenant_items_from', {min_id: 'abc'}, () => {}, onError('malformed'));
  const missing = vc.subscribe('tenant_items_from', {}, () => {}, onError('missing'));
  const claim = vc.subscribe('tenant_items_from', {min_id: 1, tenant: 'someone-else'}, () => {}, onError('claim'));
  const unknown = vc.subscribe('no_such_view', {}, () => {}, onError('unknown'));
  await waitFor(
    'the good snapshots and four errors',
    () => good.columns && text.columns && ['malformed', 'missing', 'claim', 'unknown'].every((k) => errs[k]),
    () => JSON.stringify({errs: Object.keys(errs), good: good.rows}),
  );
  assert.deepEqual(sorted(good.rows), sorted([[1350, 'high']]));
  assert.deepEqual(sorted(text.rows), sorted([[1350, 'high']]), 'a value in its text form');
  assert.equal(errs.good, undefined);
  assert.equal(errs.text, undefined);
  assert.match(errs.malformed.message, /min_id/);
  assert.equal(errs.malformed.id, malformed.id);
  assert.equal(errs.malformed.view, 'tenant_items_from');
  assert.match(errs.missing.message, /min_id/);
  assert.match(errs.claim.message, /tenant/);
  assert.match(errs.unknown.message, /no_such_view/);
  assert.ok(missing.rows.length === 0 && claim.rows.length === 0 && unknown.rows.length === 0);
  // The connection and the good subscription go on.
  await sql(`INSERT INTO items VALUES (1360, 'params', 'higher', 0)`);
  await waitFor('the write', () => same(good.rows, [[1350, 'high'], [1360, 'higher']]), () => JSON.stringify(good.rows));
  assert.deepEqual(closes, []);
  assert.deepEqual(connectionErrors, []);
});
