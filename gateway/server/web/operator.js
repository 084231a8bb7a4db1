// capsight operator view: the operator key stays in sessionStorage and goes out as a bearer
// header; tenant keys get 403 from the API.
const STORE = 'capsight.operator';
const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem(STORE) || '';

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

async function call(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    const err = new Error(body.message || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return resp;
}

async function signIn(k) {
  key = k;
  try {
    const overview = await (await call('/api/operator/overview')).json();
    const queries = await (await call('/api/operator/queries')).json();
    sessionStorage.setItem(STORE, k);
    $('signin').hidden = true;
    $('app').hidden = false;
    $('who').hidden = false;
    const v = overview.scores_view;
    $('health').textContent = `${v.keys} keys; ${v.ready ? 'ready' : 'still loading'}; ${v.healthy ? 'following the scores topic' : 'STALLED: not following the scores topic'}`;
    $('tenants').innerHTML = overview.tenants
      .map((t) => `<tr><td>${esc(t.id)}${t.name ? ` <small>${esc(t.name)}</small>` : ''}</td><td>${t.rate_per_minute}</td><td>${t.gpu_quota ?? 'none'}</td><td>${t.open_streams} / ${t.max_open_streams}</td><td>${t.active_keys}</td><td>${t.cloud_role ? 'registered' : 'none'}</td></tr>`)
      .join('');
    $('usage').innerHTML =
      overview.usage.map((u) => `<tr><td>${esc(u.tenant)}</td><td>${esc(u.market)}</td><td>${u.gpu_hours.toFixed(2)}</td><td>${u.launches}${u.still_running ? ' (running)' : ''}</td></tr>`).join('') ||
      `<tr><td colspan="4">No GPU-hours in ${esc(overview.month)}.</td></tr>`;
    $('queries').innerHTML = queries.queries
      .map((q) => `<li><strong>${esc(q.title)}</strong> <button type="button" data-query="${q.id}">Download CSV</button><details><summary>SQL</summary><pre class="mono">${esc(q.sql)}</pre></details></li>`)
      .join('');
  } catch (e) {
    key = '';
    sessionStorage.removeItem(STORE);
    $('signin-error').textContent = e.status === 403 ? `Refused: ${e.message}` : e.status === 401 ? 'That key was refused.' : e.message;
  }
}

async function download(id) {
  $('query-error').textContent = '';
  try {
    const blob = await (await call(`/api/operator/queries/${id}`)).blob();
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `capsight-query-${id}.csv`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    $('query-error').textContent = e.message;
  }
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  signIn($('op-key').value.trim());
});
$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(STORE);
  location.reload();
});
$('queries').addEventListener('click', (ev) => {
  const b = ev.target.closest('[data-query]');
  if (b) download(b.dataset.query);
});
if (key) signIn(key);
