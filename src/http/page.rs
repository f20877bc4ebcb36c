//! `GET /`: a small page that shows every view as a live table, updated in
//! place over one websocket through the JavaScript client; `GET /page.js` is
//! its script and `GET /client.js` the client (clients/js/viewcast.js).
//!
//! Everything the page shows comes from the database or from files an
//! operator wrote, and is rendered as text: row values, column names and
//! types, view names, SQL and error messages go through `textContent` and
//! `createElement`, never through HTML parsing, so a row holding
//! `<img src=x onerror=...>` or `</script>` shows as those characters
//! (tests/page.rs checks this in a real browser). As a second wall, the
//! page's Content-Security-Policy runs no script but this origin's (`/page.js`
//! and the `/client.js` it imports): no inline script, no event-handler
//! attributes; `connect-src 'self'` covers the page's websocket to this
//! host and port.

use axum::http::header;
use axum::response::IntoResponse;

/// Scripts only from this origin (`/page.js`, `/client.js`), requests and
/// websockets only to this origin,
/// no plugins, no framing; the `<style>` block is the one inline thing allowed.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                   style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        PAGE,
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

/// `GET /client.js`: the JavaScript client (clients/js/viewcast.js), an
/// ES module the page imports and applications may load from here.
pub async fn client_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CLIENT,
    )
}

const CLIENT: &str = include_str!("../../clients/js/viewcast.js");

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>viewcast</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
 h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .3rem; }
 .meta { color: #777; font-size: 12px; }
 table { border-collapse: collapse; margin-top: .3rem; }
 th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; font-variant-numeric: tabular-nums; }
 th { background: #f4f4f4; }
 tr.changed td { background: #fff6c2; transition: background 1.5s; }
 .error { color: #b00020; white-space: pre-wrap; }
 #user { margin: 0 0 1rem; }
 #views { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
 section { max-height: 32rem; overflow: auto; }
 pre { background: #f8f8f8; padding: .4rem; font-size: 12px; }
 label { margin-right: .6rem; }
</style>
</head>
<body>
<h1>viewcast <span class="meta" id="status"></span></h1>
<div id="user"></div>
<div id="views"></div>
<script type="module" src="/page.js"></script>
</body>
</html>
"#;

/// The page's script, an ES module over the JavaScript client (`/client.js`).
/// It builds every element with `el()`, which sets text only; nothing here
/// may parse a string as HTML.
///
/// Where the token comes from: in the demo, from `GET /demo/users` and
/// `/demo/token` (a user switcher); otherwise from the page's fragment,
/// `/#token=<jwt>` (the fragment never leaves the browser). A server that
/// wants a token and got none is told on the page.
const SCRIPT: &str = r#"import * as viewcast from '/client.js';
const root = document.getElementById('views');
const userBox = document.getElementById('user');
const statusBox = document.getElementById('status');
// An element with a class and text; text is never parsed as HTML.
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function compareRows(a, b) {
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (x === y) continue;
    if (x === null) return 1; if (y === null) return -1;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return 0;
}
function cell(v) { return v === null ? 'NULL' : (typeof v === 'object' ? JSON.stringify(v) : String(v)); }
let health = '';
let link = '';
function showStatus() { statusBox.textContent = [health, link].filter(Boolean).join(' · '); }

// One view: a table kept by a subscription of the connection `vc`.
function mount(vc, view) {
  const sec = el('section');
  sec.dataset.view = view.name;
  const title = el('h2', null, view.name + ' ');
  const meta = el('span', 'meta');
  title.appendChild(meta);
  const err = el('div', 'error');
  const table = el('table'), head = el('thead'), body = el('tbody');
  table.append(head, body);
  const inputs = el('div');
  sec.append(title, el('pre', null, view.sql.trim()), inputs, err, table);
  root.appendChild(sec);
  const headRow = el('tr');
  for (const c of view.columns) {
    const th = el('th', null, c.name + ' ');
    th.appendChild(el('span', 'meta', c.type));
    headRow.appendChild(th);
  }
  head.appendChild(headRow);
  function render(rows, info) {
    const changed = new Set((info.changes || []).filter(c => c.diff > 0).map(c => JSON.stringify(c.row)));
    meta.textContent = `${rows.length} rows @ ${info.lsn}`;
    const trs = [...rows].sort(compareRows).map(row => {
      const tr = el('tr', changed.has(JSON.stringify(row)) ? 'changed' : null);
      for (const v of row) tr.appendChild(el('td', null, cell(v)));
      return tr;
    });
    body.replaceChildren(...trs);
    err.textContent = '';
  }
  let sub = null;
  function subscribe(params) {
    if (sub) sub.unsubscribe();
    body.replaceChildren();
    meta.textContent = '';
    sub = vc.subscribe(view.name, params, { onRows: render, onError: e => { err.textContent = e.message; } });
  }
  // Parameters the subscriber gives: one field each; the table follows
  // once every field has a value.
  const asked = (view.params || []).filter(p => p.from === 'request');
  if (asked.length === 0) return subscribe({});
  const fields = asked.map(p => {
    const label = el('label', null, `${p.name} (${p.type}) `);
    const input = el('input');
    input.name = p.name;
    label.appendChild(input);
    inputs.appendChild(label);
    input.addEventListener('change', () => {
      const params = {};
      for (const f of fields) { if (f.value === '') return; params[f.name] = f.value; }
      subscribe(params);
    });
    return input;
  });
  err.textContent = `give ${asked.map(p => p.name).join(', ')} to see rows`;
}

let shown = 0;
let current = null;
// Shows every view as `user` (a demo user) or with `token` (or none).
async function show(user, token) {
  const mine = ++shown;
  if (current) current.close();
  current = null;
  root.replaceChildren();
  const getToken = user ? async () => {
    const r = await fetch(`/demo/token?user=${encodeURIComponent(user)}`);
    if (!r.ok) throw new Error(`no token for ${user}: ${r.status}`);
    return (await r.json()).token;
  } : null;
  if (getToken) token = await getToken();
  const r = await fetch('/views', { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (mine !== shown) return;
  if (r.status === 401) {
    root.appendChild(el('p', 'error', token
      ? 'This server refused the token: ' + ((await r.json()).error || r.status)
      : 'This server needs a token to show its views: open this page as /#token=<jwt> (the part after # stays in the browser).'));
    return;
  }
  const views = await r.json();
  if (mine !== shown) return;
  const vc = current = viewcast.connect(location.origin, {
    token, getToken,
    onOpen: () => { link = user ? `live as ${user}` : 'live'; showStatus(); },
    onClose: c => { link = c.reconnecting ? 'reconnecting' : `closed (${c.code})`; showStatus(); },
    onError: e => { link = e.message; showStatus(); },
  });
  for (const view of views) mount(vc, view);
}

async function start() {
  let users = null;
  try { const r = await fetch('/demo/users'); if (r.ok) users = await r.json(); } catch (e) {}
  if (users && users.length) {
    const label = el('label', null, 'viewing as ');
    const pick = el('select');
    pick.id = 'who';
    for (const u of users) {
      const o = el('option', null, `${u.name} (region ${u.region})`);
      o.value = u.name;
      pick.appendChild(o);
    }
    label.appendChild(pick);
    userBox.appendChild(label);
    pick.addEventListener('change', () => show(pick.value));
    return show(users[0].name);
  }
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  return show(null, token);
}
start();
async function poll() {
  try { const r = await fetch('/healthz'); const d = await r.json(); health = `${d.status} @ ${d.lsn}`; showStatus(); } catch (e) {}
}
poll(); setInterval(poll, 2000);
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap guard beside the browser test: no API that parses HTML, no
    /// inline script or handler the policy would block anyway.
    #[test]
    fn the_page_never_parses_strings_as_html() {
        for api in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "createContextualFragment",
            "DOMParser",
            "eval(",
            "Function(",
        ] {
            assert!(!SCRIPT.contains(api), "page.js uses {api}");
            assert!(!CLIENT.contains(api), "client.js uses {api}");
        }
        assert_eq!(PAGE.matches("<script").count(), 1, "one script tag");
        assert!(PAGE.contains(r#"<script type="module" src="/page.js"></script>"#));
        assert!(!PAGE.contains(" on"), "no event-handler attributes");
    }
}
