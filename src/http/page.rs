//! `GET /`: a small page that shows every view as a live table, updated in
//! place from each view's SSE stream; `GET /page.js` is its script.
//!
//! Everything the page shows comes from the database or from files an
//! operator wrote, and is rendered as text: row values, column names and
//! types, view names, SQL and error messages go through `textContent` and
//! `createElement`, never through HTML parsing, so a row holding
//! `<img src=x onerror=...>` or `</script>` shows as those characters
//! (tests/page.rs checks this in a real browser). As a second wall, the
//! page's Content-Security-Policy runs no script but `/page.js`: no inline
//! script, no event-handler attributes.

use axum::http::header;
use axum::response::IntoResponse;

/// Scripts only from this origin's `/page.js`, requests only to this origin,
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
 #views { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
 section { max-height: 32rem; overflow: auto; }
 pre { background: #f8f8f8; padding: .4rem; font-size: 12px; }
</style>
</head>
<body>
<h1>viewcast <span class="meta" id="status"></span></h1>
<div id="views"></div>
<script src="/page.js"></script>
</body>
</html>
"#;

/// The page's script. It builds every element with `el()`, which sets text
/// only; nothing here may parse a string as HTML.
const SCRIPT: &str = r#"'use strict';
const root = document.getElementById('views');
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
function mount(view) {
  const sec = el('section');
  const title = el('h2', null, view.name + ' ');
  const meta = el('span', 'meta');
  title.appendChild(meta);
  const err = el('div', 'error');
  const table = el('table'), head = el('thead'), body = el('tbody');
  table.append(head, body);
  sec.append(title, el('pre', null, view.sql.trim()), err, table);
  root.appendChild(sec);
  const headRow = el('tr');
  for (const c of view.columns) {
    const th = el('th', null, c.name + ' ');
    th.appendChild(el('span', 'meta', c.type));
    headRow.appendChild(th);
  }
  head.appendChild(headRow);
  let rows = new Map(); // JSON of row -> {row, count}
  const changed = new Set();
  function render(lsn) {
    meta.textContent = `${[...rows.values()].reduce((a, r) => a + r.count, 0)} rows @ ${lsn}`;
    const sorted = [...rows.values()].sort((a, b) => compareRows(a.row, b.row)).map(r => [JSON.stringify(r.row), r]);
    const trs = [];
    for (const [k, r] of sorted) for (let i = 0; i < r.count; i++) {
      const tr = el('tr', changed.has(k) ? 'changed' : null);
      for (const v of r.row) tr.appendChild(el('td', null, cell(v)));
      trs.push(tr);
    }
    body.replaceChildren(...trs);
    changed.clear();
  }
  const es = new EventSource(`/views/${encodeURIComponent(view.name)}/sse`);
  es.addEventListener('snapshot', e => {
    const d = JSON.parse(e.data); rows = new Map();
    err.textContent = '';
    for (const row of d.rows) { const k = JSON.stringify(row); const r = rows.get(k) || {row, count: 0}; r.count++; rows.set(k, r); }
    render(d.lsn);
  });
  es.addEventListener('diff', e => {
    const d = JSON.parse(e.data);
    for (const c of d.changes) {
      const k = JSON.stringify(c.row); const r = rows.get(k) || {row: c.row, count: 0};
      r.count += c.diff; if (r.count <= 0) rows.delete(k); else { rows.set(k, r); changed.add(k); }
    }
    render(d.lsn);
  });
  es.addEventListener('progress', e => { const d = JSON.parse(e.data); meta.textContent = meta.textContent.replace(/@ .*/, '@ ' + d.lsn); });
  es.addEventListener('error', e => { if (e.data) err.textContent = JSON.parse(e.data).message; });
}
fetch('/views').then(r => r.json()).then(vs => vs.forEach(mount));
async function health() {
  try { const r = await fetch('/healthz'); const d = await r.json(); document.getElementById('status').textContent = `${d.status} @ ${d.lsn}`; } catch (e) {}
}
health(); setInterval(health, 2000);
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
        }
        assert_eq!(PAGE.matches("<script").count(), 1, "one script tag");
        assert!(PAGE.contains(r#"<script src="/page.js"></script>"#));
        assert!(!PAGE.contains(" on"), "no event-handler attributes");
    }
}
