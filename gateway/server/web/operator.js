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
      .map((t) => `<tr data-tenant="${esc(t.id)}"><td>${esc(t.id)}${t.name ? ` <small>${esc(t.name)}</small>` : ''}</td><td>${t.rate_per_minute}</td><td>${t.gpu_quota ?? 'none'}</td><td>${t.open_streams} / ${t.max_open_streams}</td><td>${t.active_keys}</td><td>${t.cloud_role ? 'registered' : 'none'}</td><td class="trust">${trustText(t.trust, t.checks)}</td></tr>`)
      .join('');
    $('trust-note').textContent = `A tenant's reports are weighted by its trust: the share of its checked reports that agreed with capsight's own probes and launches (a tenant without checks starts at ${pct(overview.trust_fresh)}).`;
    $('trust').innerHTML =
      overview.trust.map((t) => `<tr data-tenant="${esc(t.tenant)}"><td>${esc(t.tenant)}${t.tenant === '-' ? ` <small class="mono">${esc(t.hash)}</small>` : ''}</td><td>${trustText(t.trust, t.checks)}</td><td>${t.checks}</td><td>${t.contradictions}</td><td>${t.last_check ? esc(new Date(t.last_check).toLocaleString()) : 'never'}</td></tr>`).join('') ||
      '<tr><td colspan="5">No tenants.</td></tr>';
    await loadPipeline();
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

const pct = (x) => `${Math.round((x || 0) * 100)}%`;

function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** Trust as text with an icon for the low band (not colour alone). */
function trustText(trust, checks) {
  if (trust === null || trust === undefined) return 'no reports';
  const low = trust < 0.5;
  return `<span class="${low ? 'health-bad' : ''}">${low ? '<span aria-hidden="true">⚠</span> ' : ''}${pct(trust)}${low ? ' (low)' : ''}</span> <small>${checks} checked</small>`;
}

/** One health line: an icon and words for good or bad (not colour alone). */
function healthLine(id, ok, text) {
  return `<li data-health="${id}" data-ok="${ok}"><span aria-hidden="true">${ok ? '✔' : '✖'}</span> <span class="${ok ? 'health-ok' : 'health-bad'}">${ok ? 'OK' : 'Attention'}</span> — ${text}</li>`;
}

async function loadPipeline() {
  const p = await (await call('/api/operator/pipeline')).json();
  const lines = [];
  if (p.scorer.error) lines.push(healthLine('scorer', false, `scorer: ${esc(p.scorer.error)}`));
  else {
    const stale = p.scorer.last_score_age_secs === null || p.scorer.last_score_age_secs > 900;
    lines.push(healthLine('scorer-lag', p.scorer.lag < 1000, `scorer lag: <strong id="scorer-lag">${p.scorer.lag}</strong> signals behind on ${esc(p.scorer.topic)} (group ${esc(p.scorer.group)})`));
    lines.push(healthLine('scorer-output', !stale, `newest score written ${ago(p.scorer.last_score_written)}`));
  }
  if (p.dlq.error) lines.push(healthLine('dlq', false, `dead letters: ${esc(p.dlq.error)}`));
  else lines.push(healthLine('dlq', p.dlq.messages === 0, `dead letters: <strong id="dlq-count">${p.dlq.messages}</strong> on ${esc(p.dlq.topic)}`));
  $('pipeline').innerHTML = lines.join('');
  $('collectors').innerHTML = p.collectors.error
    ? `<tr><td colspan="3" class="error">${esc(p.collectors.error)}</td></tr>`
    : p.collectors.map((c) => `<tr data-source="${esc(c.source)}"><td>${esc(c.source)}</td><td>${c.age_secs > 3600 ? '<span aria-hidden="true">⚠</span> ' : ''}${ago(c.last_observed)}</td><td>${c.signals_24h}</td></tr>`).join('') ||
      '<tr><td colspan="3">No signals in the last 24 h.</td></tr>';
  if (p.probes.error) {
    $('probe-total').textContent = p.probes.error;
    $('probers').innerHTML = '';
  } else {
    $('probe-total').innerHTML = `<strong id="probe-spent">$${p.probes.spent_usd.toFixed(2)}</strong> spent on ${esc(p.probes.day)} (UTC); each prober's budget is $${p.probes.budget_usd_per_prober.toFixed(2)} a day (probe.daily_budget_usd).`;
    $('probers').innerHTML =
      p.probes.probers
        .map((r) => `<tr data-prober="${esc(r.prober)}"><td>${esc(r.prober)}</td><td><svg class="gauge" width="102" height="12" role="img" aria-label="${pct(r.share)} of the budget"><rect class="gauge-bg" x="0.5" y="0.5" width="101" height="11"/><rect class="gauge-fill" x="1" y="1" width="${Math.min(100, Math.round(r.share * 100))}" height="10"/></svg> $${r.spent_usd.toFixed(2)} / $${r.budget_usd.toFixed(2)} (${pct(r.share)})</td><td>${r.probes} (${r.failed})</td><td>${ago(r.last_at)}</td></tr>`)
        .join('') || '<tr><td colspan="4">No probes today.</td></tr>';
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
$('pipeline-refresh').addEventListener('click', () => loadPipeline().catch((e) => {
  $('pipeline').textContent = e.message;
}));
$('queries').addEventListener('click', (ev) => {
  const b = ev.target.closest('[data-query]');
  if (b) download(b.dataset.query);
});
if (key) signIn(key);
