//! `GET /`: a small page that shows every view as a live table, updated in
//! place from each view's SSE stream.

use axum::response::Html;

pub async fn index() -> Html<&'static str> {
    Html(PAGE)
}

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
<script>
const root = document.getElementById('views');
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
  const sec = document.createElement('section');
  sec.innerHTML = `<h2>${view.name} <span class="meta"></span></h2><pre></pre><div class="error"></div><table><thead></thead><tbody></tbody></table>`;
  sec.querySelector('pre').textContent = view.sql.trim();
  root.appendChild(sec);
  const meta = sec.querySelector('h2 .meta'), err = sec.querySelector('.error');
  const head = sec.querySelector('thead'), body = sec.querySelector('tbody');
  head.innerHTML = '<tr>' + view.columns.map(c => `<th>${c.name} <span class="meta">${c.type}</span></th>`).join('') + '</tr>';
  let rows = new Map(); // JSON of row -> {row, count}
  const changed = new Set();
  function render(lsn) {
    meta.textContent = `${[...rows.values()].reduce((a, r) => a + r.count, 0)} rows @ ${lsn}`;
    const sorted = [...rows.values()].sort((a, b) => compareRows(a.row, b.row)).map(r => [JSON.stringify(r.row), r]);
    body.innerHTML = '';
    for (const [k, r] of sorted) for (let i = 0; i < r.count; i++) {
      const tr = document.createElement('tr');
      if (changed.has(k)) tr.className = 'changed';
      tr.innerHTML = r.row.map(v => `<td>${cell(v)}</td>`).join('');
      body.appendChild(tr);
    }
    changed.clear();
  }
  const es = new EventSource(`/views/${encodeURIComponent(view.name)}/sse`);
  es.addEventListener('snapshot', e => {
    const d = JSON.parse(e.data); rows = new Map();
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
  es.addEventListener('error', e => { if (e.data) { err.textContent = JSON.parse(e.data).message; es.close(); } });
}
fetch('/views').then(r => r.json()).then(vs => vs.forEach(mount));
async function health() {
  try { const r = await fetch('/healthz'); const d = await r.json(); document.getElementById('status').textContent = `${d.status} @ ${d.lsn}`; } catch (e) {}
}
health(); setInterval(health, 2000);
</script>
</body>
</html>
"#;
