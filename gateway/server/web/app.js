// capsight dashboard: plain JavaScript, no dependencies. Talks only to this origin's /api
// (the gateway's services over HTTP); the tenant key lives in sessionStorage and goes out as a
// bearer header, never in a URL. Live views read Server-Sent Events with fetch (EventSource
// cannot send headers).

const KEY_STORE = 'capsight.key';
const LABELS = {
  available: { icon: '✔', text: 'Available' },
  limited: { icon: '◐', text: 'Limited' },
  unavailable: { icon: '✖', text: 'Unavailable' },
  unknown: { icon: '?', text: 'Unknown' },
};
const MARKETS = ['on_demand', 'spot', 'capacity_block'];
const FINAL = new Set(['terminated', 'failed', 'cancelled']);

const WATCH_STORE = 'capsight.watched';
const $ = (id) => document.getElementById(id);
/** Keys the user watches (not secret: kept in localStorage across sessions). */
const watched = new Set(JSON.parse(localStorage.getItem(WATCH_STORE) || '[]'));
const state = {
  key: sessionStorage.getItem(KEY_STORE) || '',
  scores: new Map(), // key text -> score
  selected: '',
  range: '24h',
  watch: null, // AbortController of the scores stream
  job: null, // { id, abort }
};

/** The known labels; anything else (a label added later, "unspecified") is Unknown. */
function labelOf(name) {
  return LABELS[name] ? name : 'unknown';
}

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function labelHtml(name) {
  const l = labelOf(name);
  return `<span class="lbl ${l}"><span aria-hidden="true">${LABELS[l].icon}</span> ${LABELS[l].text}</span>`;
}

function pct(x) {
  return `${Math.round((x || 0) * 100)}%`;
}

function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

// ------------------------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || '';
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${state.key}`, ...extra };
}

async function api(path, options = {}) {
  const resp = await fetch(path, {
    ...options,
    headers: headers(options.body ? { 'Content-Type': 'application/json' } : {}),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new ApiError(resp.status, body);
    if (resp.status === 401 && path !== '/api/whoami') signOut(err.message);
    throw err;
  }
  return body;
}

/** Reads an SSE response; calls onEvent(name, data) per event until the stream ends. */
async function sse(path, onEvent, signal) {
  const resp = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    throw new ApiError(resp.status, body);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n/g, '\n');
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}

// --------------------------------------------------------------------------------- sign in

async function signIn(key) {
  state.key = key;
  try {
    const me = await api('/api/whoami');
    sessionStorage.setItem(KEY_STORE, key);
    $('tenant-name').textContent = me.name ? `${me.name} (${me.tenant})` : me.tenant;
    $('signin').hidden = true;
    $('who').hidden = false;
    $('app').hidden = false;
    $('signin-error').textContent = '';
    startScores();
    // the launches and usage load when their tab opens, not while the map loads
    selectTab('tab-capacity', false);
  } catch (e) {
    state.key = '';
    sessionStorage.removeItem(KEY_STORE);
    $('signin-error').textContent =
      e.status === 401 ? 'That key was refused: it is unknown or revoked.' : `Sign-in failed: ${e.message}`;
  }
}

function signOut(message = '') {
  state.key = '';
  sessionStorage.removeItem(KEY_STORE);
  state.watch?.abort();
  state.job?.abort.abort();
  state.scores.clear();
  state.job = null;
  state.lastSpec = null;
  state.selected = '';
  // nothing of this tenant stays on the page for the next one
  for (const id of ['grids', 'changes', 'launches', 'usage', 'job-events', 'pf-checks', 'pf-alts', 'pf-launch-self']) $(id).innerHTML = '';
  for (const id of ['job', 'pf-result', 'explain']) $(id).hidden = true;
  document.querySelector('.capacity-layout').classList.remove('with-explain');
  $('app').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('api-key').value = '';
  $('api-key').focus();
}

// ------------------------------------------------------------------------------------ tabs

function selectTab(id, focus = true) {
  for (const tab of document.querySelectorAll('[role=tab]')) {
    const on = tab.id === id;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute('aria-controls')).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (id === 'tab-launches') {
    loadLaunches();
    loadNotifications();
  }
}

function tabKeys(ev) {
  const tabs = [...document.querySelectorAll('[role=tab]')];
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  const move = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: tabs.length - 1 - i }[ev.key];
  if (move === undefined) return;
  ev.preventDefault();
  selectTab(tabs[(i + move + tabs.length) % tabs.length].id);
}

// ------------------------------------------------------------------------------ capacity map

/** Every page of the scores the query selects, into `into`; the filter's total. */
async function loadPages(query, into) {
  let token = '';
  let total = 0;
  do {
    const page = await api(`/api/scores?${query}page_size=1000&page_token=${encodeURIComponent(token)}`);
    for (const s of page.scores) into.set(s.key.text, s);
    token = page.next_page_token;
    total = page.total;
  } while (token);
  return total;
}

/** The full list: one page chain per market, side by side (pages of one chain follow each
 * other by token); if the markets do not add up to every key (a market this page does not
 * know), one chain over everything. */
async function loadScores() {
  let all = new Map();
  const [everything, ...perMarket] = await Promise.all([
    api('/api/scores?page_size=1').then((p) => p.total),
    ...MARKETS.map((m) => loadPages(`market=${m}&`, all)),
  ]);
  if (perMarket.reduce((a, b) => a + b, 0) < everything) {
    all = new Map();
    await loadPages('', all);
  }
  state.scores = all;
  fillFilterOptions();
  renderGrids();
}

/** Watches label transitions; (re)loads the full list once each subscription is open. */
async function startScores() {
  state.watch?.abort();
  const abort = new AbortController();
  state.watch = abort;
  let delay = 1000;
  while (!abort.signal.aborted && state.key) {
    try {
      await sse(
        '/api/scores/watch',
        (name, data) => {
          if (name === 'open') {
            setLive(true);
            delay = 1000;
            loadScores().catch((e) => setLive(false, e.message));
          } else if (name === 'transition') {
            onTransition(data);
          } else if (name === 'error') {
            setLive(false, data.message);
          }
        },
        abort.signal,
      );
    } catch (e) {
      if (abort.signal.aborted) return;
      setLive(false, e.message);
      if (e.status === 401) return;
    }
    if (abort.signal.aborted) return;
    setLive(false, 'reconnecting…');
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

function setLive(on, why = '') {
  const el = $('live');
  el.classList.toggle('on', on);
  el.textContent = on ? 'Live: updates are pushed' : `Not live${why ? `: ${why}` : ''}`;
}

function onTransition(t) {
  if (!t.score) return;
  const s = t.score;
  const old = state.scores.get(s.key.text);
  state.scores.set(s.key.text, s);
  if (!old) fillFilterOptions();
  const prev = labelOf(t.previous === 'unspecified' && old ? old.label : t.previous);
  if (t.previous !== 'unspecified' || old) {
    const li = document.createElement('li');
    li.dataset.key = s.key.text;
    li.hidden = $('changes-watched').checked && !watched.has(s.key.text);
    li.innerHTML = `${new Date().toLocaleTimeString()} <span class="mono">${esc(s.key.text)}</span>: ${labelHtml(prev)} → ${labelHtml(s.label)} (score ${s.score})`;
    $('changes').prepend(li);
    while ($('changes').children.length > 50) $('changes').lastChild.remove();
  }
  if (!renderCell(s, old)) renderGrids(s.key.text);
  if (state.selected === s.key.text) renderExplain(s);
}

function filters() {
  return {
    gpu: $('f-gpu').value,
    count: Number($('f-count').value),
    region: $('f-region').value,
    market: $('f-market').value,
    conf: Number($('f-conf').value),
  };
}

function setOptions(select, values, anyText, keep = true) {
  const current = select.value;
  select.innerHTML =
    (anyText !== null ? `<option value="">${esc(anyText)}</option>` : '') +
    values.map((v) => `<option value="${esc(v.value ?? v)}">${esc(v.text ?? v)}</option>`).join('');
  if (keep && [...select.options].some((o) => o.value === current)) select.value = current;
}

function fillFilterOptions() {
  const scores = [...state.scores.values()];
  const uniq = (f) => [...new Set(scores.map(f).filter(Boolean))].sort();
  setOptions($('f-gpu'), uniq((s) => s.gpu?.gpu_model), 'any');
  setOptions($('f-region'), uniq((s) => s.key.region), 'all');
  setOptions($('f-market'), uniq((s) => s.key.market).map((m) => ({ value: m, text: m.replace('_', '-') })), 'all');
  // preflight form: every type and region the tenant can see
  setOptions($('pf-type'), uniq((s) => s.key.instance_type), null);
  setOptions($('pf-region'), uniq((s) => s.key.region), null);
  setOptions($('pf-market'), MARKETS.map((m) => ({ value: m, text: m.replace('_', '-') })), null);
  fillZones();
  syncStandby();
}

function fillZones() {
  const region = $('pf-region').value;
  const zones = [...new Set([...state.scores.values()].filter((s) => s.key.region === region && s.key.zone_id).map((s) => s.key.zone_id))].sort();
  setOptions($('pf-zone'), zones, 'any zone');
}

function visible(s, f) {
  return (
    (!f.gpu || s.gpu?.gpu_model === f.gpu) &&
    (!f.count || (s.gpu?.gpu_count || 0) >= f.count) &&
    (!f.region || s.key.region === f.region) &&
    (!f.market || s.key.market === f.market) &&
    (s.confidence || 0) >= f.conf - 1e-9
  );
}

/** The button of one map cell: icon and words (not colour alone), the score, a star when
 * watched. */
function cellHtml(s, flash = false) {
  const l = labelOf(s.label);
  const k = s.key.text;
  const z = s.key.zone_id || '(region-wide)';
  return (
    `<button type="button" class="cell ${l}${flash ? ' flash' : ''}" data-key="${esc(k)}" data-label="${l}" aria-pressed="${k === state.selected}" ` +
    `aria-label="${esc(`${s.key.instance_type} in ${z}: ${LABELS[l].text}, score ${s.score}, confidence ${pct(s.confidence)}`)}">` +
    `<span><span aria-hidden="true">${LABELS[l].icon}</span> ${LABELS[l].text}</span><span class="n" aria-hidden="true">${watched.has(k) ? '<span class="star" title="watched">★</span> ' : ''}${s.score}</span></button>`
  );
}

/** Redraws one key's cell in place; false when the whole map must be drawn again (a new
 * key, or one the filters now show or hide). */
function renderCell(s, old) {
  const f = filters();
  if (!old || visible(s, f) !== visible(old, f)) return false;
  if (!visible(s, f)) return true;
  const el = document.querySelector(`.cell[data-key="${CSS.escape(s.key.text)}"]`);
  if (!el) return false;
  const focused = document.activeElement === el;
  el.parentElement.innerHTML = cellHtml(s, true);
  if (focused) document.querySelector(`.cell[data-key="${CSS.escape(s.key.text)}"]`)?.focus();
  return true;
}

/** One table per (region, market): zones down, GPU types across; each in a box the browser
 * lays out only when it is near the screen (`content-visibility`). */
function renderGrids(flashKey = '') {
  const f = filters();
  $('f-conf-out').textContent = pct(f.conf);
  const groups = new Map();
  let shown = 0;
  for (const s of state.scores.values()) {
    if (!visible(s, f)) continue;
    shown++;
    const g = `${s.key.provider}/${s.key.region}/${s.key.market}`;
    if (!groups.has(g)) groups.set(g, { key: s.key, zones: new Set(), types: new Map(), cells: new Map() });
    const grp = groups.get(g);
    const zone = s.key.zone_id || '(region-wide)';
    grp.zones.add(zone);
    grp.types.set(s.key.instance_type, s.gpu);
    grp.cells.set(`${zone}|${s.key.instance_type}`, s);
  }
  const html = [];
  for (const g of [...groups.keys()].sort()) {
    const grp = groups.get(g);
    const types = [...grp.types.keys()].sort((a, b) => {
      const ga = grp.types.get(a) || {}, gb = grp.types.get(b) || {};
      return (ga.gpu_model || '').localeCompare(gb.gpu_model || '') || a.localeCompare(b);
    });
    const zones = [...grp.zones].sort();
    html.push(`<div class="grid-box"><table class="grid"><caption>${esc(grp.key.provider)} ${esc(grp.key.region)} · ${esc(grp.key.market.replace('_', '-'))}</caption><thead><tr><th scope="col">Zone</th>`);
    for (const t of types) {
      const gpu = grp.types.get(t);
      html.push(`<th scope="col">${esc(t)}<small>${gpu ? `${gpu.gpu_count}× ${esc(gpu.gpu_model)}` : ''}</small></th>`);
    }
    html.push('</tr></thead><tbody>');
    for (const z of zones) {
      html.push(`<tr><th scope="row" class="mono">${esc(z)}</th>`);
      for (const t of types) {
        const s = grp.cells.get(`${z}|${t}`);
        html.push(s ? `<td>${cellHtml(s, s.key.text === flashKey)}</td>` : '<td class="empty" aria-label="not scored">—</td>');
      }
      html.push('</tr>');
    }
    html.push('</tbody></table></div>');
  }
  if (!html.length) html.push('<p class="empty">No scores match these filters yet.</p>');
  const focused = document.activeElement?.dataset?.key;
  $('grids').innerHTML = html.join('');
  if (focused) document.querySelector(`.cell[data-key="${CSS.escape(focused)}"]`)?.focus();
  $('counts').textContent = `${shown} of ${state.scores.size} keys shown`;
}

// -------------------------------------------------------------------------- why this score

async function openExplain(key) {
  state.selected = key;
  $('explain').hidden = false;
  document.querySelector('.capacity-layout').classList.add('with-explain');
  for (const c of document.querySelectorAll('.cell')) c.setAttribute('aria-pressed', String(c.dataset.key === key));
  const cached = state.scores.get(key);
  if (cached) renderExplain(cached);
  $('explain-title').focus();
  try {
    const fresh = await api(`/api/score?key=${encodeURIComponent(key)}`);
    state.scores.set(key, fresh);
    if (state.selected === key) renderExplain(fresh);
  } catch (e) {
    $('explain-facts').insertAdjacentHTML('beforeend', `<dt>Error</dt><dd class="error">${esc(e.message)}</dd>`);
  }
  loadHistory();
}

function closeExplain() {
  const key = state.selected;
  state.selected = '';
  $('explain').hidden = true;
  document.querySelector('.capacity-layout').classList.remove('with-explain');
  const cell = document.querySelector(`.cell[data-key="${CSS.escape(key)}"]`);
  cell?.setAttribute('aria-pressed', 'false');
  cell?.focus();
}

const FEATURE_UNITS = {
  launch_success_rate: (v) => pct(v),
  provisioning_latency: (v) => `${Math.round(v)} ms`,
};

function renderWatch() {
  const on = watched.has(state.selected);
  $('explain-watch').setAttribute('aria-pressed', String(on));
  $('explain-watch').textContent = on ? '★ Watching this key' : '☆ Watch this key';
  $('watched-count').textContent = String(watched.size);
}

function toggleWatch() {
  const k = state.selected;
  if (!k) return;
  if (watched.has(k)) watched.delete(k);
  else watched.add(k);
  localStorage.setItem(WATCH_STORE, JSON.stringify([...watched]));
  renderWatch();
  renderGrids();
  filterChanges();
}

function filterChanges() {
  const only = $('changes-watched').checked;
  for (const li of $('changes').children) li.hidden = only && !watched.has(li.dataset.key);
}

function renderExplain(s) {
  $('explain-key').textContent = s.key.text;
  renderWatch();
  const gpu = s.gpu ? `${s.gpu.gpu_count}× ${s.gpu.gpu_model} · $${s.gpu.usd_per_gpu_hour.toFixed(2)}/GPU-hour on-demand` : 'not in the catalog';
  $('explain-facts').innerHTML = `
    <dt>Label</dt><dd>${labelHtml(s.label)}</dd>
    <dt>Score</dt><dd>${s.score} / 100</dd>
    <dt>Confidence</dt><dd>${pct(s.confidence)}</dd>
    <dt>Evidence age</dt><dd>${ago(s.updated_at)} <small>(${when(s.updated_at)})</small></dd>
    <dt>Window</dt><dd>${Math.round(s.window_secs / 3600)} h, ${s.signal_count} signals</dd>
    <dt>GPU</dt><dd>${esc(gpu)}</dd>`;
  if (!s.evidence) {
    // the map's list carries no evidence: the key's own score (fetched now) does
    $('explain-evidence').innerHTML = '<tr><td colspan="4">loading…</td></tr>';
    return;
  }
  const max = Math.max(1, ...s.evidence.map((e) => Math.abs(e.contribution)));
  $('explain-evidence').innerHTML =
    s.evidence
      .map((e) => {
        const fmt = FEATURE_UNITS[e.feature] || ((v) => (Math.abs(v) < 10 ? v.toFixed(2) : Math.round(v)));
        const w = Math.round((Math.abs(e.contribution) / max) * 60);
        const sign = e.contribution >= 0 ? '+' : '−';
        return `<tr><td>${esc(e.feature.replaceAll('_', ' '))}</td><td>${esc(fmt(e.value))}</td>
          <td><span class="contrib"><svg class="bar ${e.contribution >= 0 ? 'pos' : 'neg'}" width="${w + 1}" height="10" aria-hidden="true"><rect width="${w + 1}" height="10"/></svg>${sign}${Math.abs(e.contribution).toFixed(1)} pts</span></td>
          <td>${e.samples}</td></tr>`;
      })
      .join('') || '<tr><td colspan="4">No evidence in the window.</td></tr>';
}

async function loadHistory() {
  const key = state.selected;
  if (!key) return;
  for (const b of document.querySelectorAll('.ranges button')) b.setAttribute('aria-pressed', String(b.dataset.range === state.range));
  $('history').textContent = 'loading…';
  try {
    const h = await api(`/api/history?key=${encodeURIComponent(key)}&range=${state.range}`);
    if (state.selected === key) $('history').innerHTML = chart(h);
  } catch (e) {
    $('history').innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

/** The signal kinds marked on the history's time axis: a lane each, told apart by lane, icon
 * and name (not colour alone). */
const MARKS = [
  { kind: 'probe', icon: '◆', name: 'probe', text: (m) => `${m.count} probe${m.count === 1 ? '' : 's'}, ${m.negative} failed` },
  { kind: 'capacity_error', icon: '✖', name: 'capacity error', text: (m) => `${m.count} launch attempt${m.count === 1 ? '' : 's'} hit a capacity error` },
  { kind: 'price', icon: '$', name: 'price', text: (m) => `${m.count} spot price${m.count === 1 ? '' : 's'}, up to $${m.max_value.toFixed(2)}/h` },
  { kind: 'status_incident', icon: '⚠', name: 'status', text: (m) => `${m.count} status event${m.count === 1 ? '' : 's'}, ${m.negative} open incident${m.negative === 1 ? '' : 's'}` },
  { kind: 'crowd_report', icon: '☰', name: 'crowd', text: (m) => `${m.count} crowd report${m.count === 1 ? '' : 's'}, ${m.negative} saying no capacity` },
];

/** An inline SVG line chart of the score with the Limited/Available bands, and below the time
 * axis one lane per signal kind with a mark at each bucket where such signals arrived. */
function chart(h) {
  const lane = 12;
  const W = 400, L = 28, R = 8, T = 8, PLOT = 132, AXIS = 16;
  const marks = h.marks || [];
  const H = T + PLOT + AXIS + MARKS.length * lane + 4;
  const x = (t) => L + ((t - h.from) / (h.to - h.from)) * (W - L - R);
  const y = (v) => T + (1 - v / 100) * PLOT;
  const pts = h.points;
  const counts = MARKS.map((k) => [k, marks.filter((m) => m.kind === k.kind).reduce((n, m) => n + m.count, 0)]).filter(([, n]) => n);
  const summary = counts.length ? `; signals marked: ${counts.map(([k, n]) => `${n} ${k.name}`).join(', ')}` : '; no signals marked';
  const parts = [`<svg viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="hist-desc"><title id="hist-desc">Score over the last ${esc(state.range)}: ${pts.length} points${pts.length ? `, latest ${pts[pts.length - 1].score}` : ''}${esc(summary)}</title>`];
  parts.push(`<line class="axis" x1="${L}" y1="${y(0)}" x2="${W - R}" y2="${y(0)}"/><line class="axis" x1="${L}" y1="${T}" x2="${L}" y2="${y(0)}"/>`);
  for (const [v, name] of [[80, 'Available'], [50, 'Limited']]) {
    parts.push(`<line class="band" x1="${L}" y1="${y(v)}" x2="${W - R}" y2="${y(v)}"/><text x="${L + 2}" y="${y(v) - 2}">${name} ≥ ${v}</text>`);
  }
  for (const v of [0, 50, 100]) parts.push(`<text x="2" y="${y(v) + 3}">${v}</text>`);
  parts.push(`<text x="${L}" y="${y(0) + 12}">${esc(new Date(h.from).toLocaleString())}</text><text x="${W - R}" y="${y(0) + 12}" text-anchor="end">now</text>`);
  if (pts.length) {
    parts.push(`<polyline class="line" points="${pts.map((p) => `${x(p.at).toFixed(1)},${y(p.score).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) parts.push(`<circle class="dot" cx="${x(p.at).toFixed(1)}" cy="${y(p.score).toFixed(1)}" r="2.5"><title>${esc(when(p.at))}: score ${p.score}</title></circle>`);
  } else {
    parts.push(`<text x="${W / 2}" y="${T + PLOT / 2}" text-anchor="middle">no history in this range</text>`);
  }
  MARKS.forEach((k, i) => {
    const ly = T + PLOT + AXIS + i * lane + lane / 2;
    parts.push(`<line class="lane" x1="${L}" y1="${ly}" x2="${W - R}" y2="${ly}"/><text class="lane-name" x="${L - 2}" y="${ly + 3}" text-anchor="end">${esc(k.icon)}</text>`);
    for (const m of marks.filter((m) => m.kind === k.kind)) {
      const mx = Math.min(W - R, Math.max(L, x(m.at + (h.step_secs * 1000) / 2)));
      parts.push(
        `<g class="mark ${k.kind}${m.negative ? ' negative' : ''}" data-kind="${k.kind}" data-at="${m.at}"><title>${esc(when(m.at))}: ${esc(k.text(m))}</title>` +
          `<text x="${mx.toFixed(1)}" y="${ly + 4}" text-anchor="middle">${esc(k.icon)}</text></g>`,
      );
    }
  });
  parts.push('</svg>');
  const legend = MARKS.map((k) => `<li data-kind="${k.kind}"><span aria-hidden="true" class="mark-icon ${k.kind}">${esc(k.icon)}</span> ${esc(k.name)} <small>(${counts.find(([c]) => c === k)?.[1] ?? 0})</small></li>`).join('');
  return `${parts.join('')}<ul class="mark-legend" aria-label="Signals marked on the time axis">${legend}</ul>`;
}

// ------------------------------------------------------------------------ preflight & launch

function prefill(key) {
  const [, region, zone, type, market] = key.split('/');
  $('pf-type').value = type;
  $('pf-region').value = region;
  fillZones();
  $('pf-zone').value = zone;
  $('pf-market').value = market;
  syncStandby();
  selectTab('tab-preflight', false);
  $('pf-type').focus();
}

function specFromForm() {
  const market = $('pf-market').value;
  return {
    key: `aws/${$('pf-region').value}/${$('pf-zone').value}/${$('pf-type').value}/${market}`,
    count: Number($('pf-count').value),
    image_id: $('pf-image').value.trim(),
    interruptible: $('pf-interruptible').checked,
    allow_substitutes: $('pf-substitutes').checked,
    max_usd_per_gpu_hour: Number($('pf-maxprice').value) || 0,
    max_fallbacks: Math.max(0, Math.min(10, Math.trunc(Number($('pf-fallbacks').value) || 0))),
    warm_standby: $('pf-standby').checked,
  };
}

/** The warm standby is for spot launches only: the option follows the form's market. */
function syncStandby() {
  const spot = $('pf-market').value === 'spot';
  $('pf-standby').disabled = !spot;
  if (!spot) $('pf-standby').checked = false;
}

async function runPreflight(ev) {
  ev.preventDefault();
  $('pf-error').textContent = '';
  const spec = specFromForm();
  const button = ev.submitter || $('pf-form').querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const r = await api('/api/preflight', { method: 'POST', body: JSON.stringify(spec) });
    renderPreflight(r, spec);
  } catch (e) {
    $('pf-error').textContent = e.message;
  } finally {
    button.disabled = false;
  }
}

const CHECK_ICONS = { passed: '✔', failed: '✖', warning: '⚠', skipped: '–' };

function renderPreflight(r, spec) {
  $('pf-result').hidden = false;
  const d = $('pf-decision');
  d.className = `decision ${r.decision}`;
  d.textContent = `${r.decision.replaceAll('_', ' ')}: ${r.summary}`;
  $('pf-checks').innerHTML = r.checks
    .map((c) => `<li><span aria-hidden="true">${CHECK_ICONS[c.status] || '?'}</span> <strong>${esc(c.name)}</strong> ${esc(c.status)} — ${esc(c.reason)}${c.error_code ? ` <code>${esc(c.error_code)}</code>` : ''}</li>`)
    .join('');
  $('pf-launch-self').innerHTML =
    r.decision === 'can_launch'
      ? `<button type="button" data-launch="${esc(spec.key)}">Launch ${esc(spec.key)} ×${spec.count}</button>`
      : r.decision === 'retry_with_alternatives' && spec.max_fallbacks > 0
        ? `<button type="button" class="secondary" data-launch="${esc(spec.key)}" id="pf-launch-anyway">Launch ${esc(spec.key)} anyway, falling back to up to ${spec.max_fallbacks} alternative${spec.max_fallbacks === 1 ? '' : 's'}</button>`
        : '';
  $('pf-alts').innerHTML = r.alternatives
    .map(
      (a) => `<tr><td>${a.rank}</td><td class="mono">${esc(a.key.text)}</td><td>${a.gpu_count}× ${esc(a.gpu_model)}</td>
        <td>${labelHtml(a.label)} <small>${a.score}</small></td><td>${pct(a.confidence)}</td><td>$${a.usd_per_gpu_hour.toFixed(2)}</td>
        <td>${esc(a.reason)}${a.advice ? `<br><small>${esc(a.advice)}</small>` : ''}</td>
        <td><button type="button" data-launch="${esc(a.key.text)}" aria-label="Launch alternative ${a.rank}: ${esc(a.key.text)}">Launch</button></td></tr>`,
    )
    .join('');
  $('pf-no-alts').hidden = r.alternatives.length > 0;
  state.lastSpec = spec;
  $('pf-result-title').focus();
}

async function launch(key) {
  const spec = { ...(state.lastSpec || specFromForm()), key, idempotency_key: `web-${crypto.randomUUID()}` };
  // the standby applies to spot only: an alternative on another market launches without it
  const standbyDropped = spec.warm_standby && !key.endsWith('/spot');
  if (standbyDropped) spec.warm_standby = false;
  $('job-error').textContent = '';
  try {
    const r = await api('/api/launches', { method: 'POST', body: JSON.stringify(spec) });
    watchJob(r.job_id);
    $('job-options').textContent =
      `Up to ${spec.max_fallbacks} fallback${spec.max_fallbacks === 1 ? '' : 's'}; warm standby ${spec.warm_standby ? 'on' : 'off'}` +
      (standbyDropped ? ' (not for this non-spot key)' : '');
  } catch (e) {
    $('pf-error').textContent = `Launch refused: ${e.message}`;
  }
}

function renderJobState(s) {
  $('job-state').textContent = s;
  $('job-state').className = `state ${s}`;
  $('job-cancel').disabled = FINAL.has(s);
}

const STEPS = {
  fallback: { cls: 'fallback', icon: '↪', text: 'Fallback' },
  standby_ready: { cls: 'standby', icon: '◌', text: 'Standby ready' },
  standby_active: { cls: 'standby', icon: '⇄', text: 'Switched to standby' },
  replacement_running: { cls: 'standby', icon: '⇄', text: 'Switched back to spot' },
  standby_stopped: { cls: 'standby', icon: '◌', text: 'Standby stopped' },
};

function addJobEvent(e) {
  const list = $('job-events');
  if (list.querySelector(`[data-seq="${e.seq}"]`)) return;
  const li = document.createElement('li');
  li.dataset.seq = e.seq;
  li.dataset.state = e.state;
  const step = STEPS[e.step];
  if (step) li.dataset.step = e.step;
  const badge = step ? `<span class="step-badge ${step.cls}"><span aria-hidden="true">${step.icon}</span> ${esc(step.text)}${e.step === 'fallback' ? ` (attempt ${e.attempt})` : ''}</span>` : '';
  if (e.step === 'fallback') $('job-fallbacks').textContent = String(Number($('job-fallbacks').textContent) + 1);
  if (e.switch) $('job-switches').textContent = String(Number($('job-switches').textContent) + 1);
  li.innerHTML = `${badge}<strong>${esc(e.state)}</strong> ${esc(new Date(e.at).toLocaleTimeString())}${e.key?.text ? ` <span class="mono">${esc(e.key.text)}</span>` : ''}${e.instance_id ? ` ${esc(e.instance_id)}` : ''}${e.detail ? ` — ${esc(e.detail)}` : ''}${e.error_code ? ` <code>${esc(e.error_code)}</code>` : ''}`;
  list.append(li);
  renderJobState(e.state);
}

async function watchJob(jobId) {
  state.job?.abort.abort();
  const abort = new AbortController();
  state.job = { id: jobId, abort };
  selectTab('tab-preflight', false);
  $('job').hidden = false;
  $('job-id').textContent = jobId;
  $('job-events').innerHTML = '';
  $('job-options').textContent = '';
  $('job-fallbacks').textContent = '0';
  $('job-switches').textContent = '0';
  renderJobState('queued');
  $('job-title').focus();
  try {
    await sse(
      `/api/launches/${encodeURIComponent(jobId)}/watch`,
      (name, data) => {
        if (name === 'launch') addJobEvent(data);
        else if (name === 'error') $('job-error').textContent = data.message;
      },
      abort.signal,
    );
  } catch (e) {
    if (!abort.signal.aborted) $('job-error').textContent = e.message;
  }
}

async function cancelJob() {
  const id = state.job?.id;
  if (!id) return;
  try {
    const s = await api(`/api/launches/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    for (const e of s.events) addJobEvent(e);
    $('job-error').textContent = s.cancel_requested ? 'Cancel requested.' : '';
  } catch (e) {
    $('job-error').textContent = e.message;
  }
}

// --------------------------------------------------------------------------------- launches

async function loadLaunches() {
  $('launches-error').textContent = '';
  $('launches').innerHTML = '<tr><td colspan="5">loading…</td></tr>';
  try {
    const [list, usage] = await Promise.all([api('/api/launches'), api('/api/usage')]);
    $('launches').innerHTML =
      list.launches
        .map(
          (l) => `<tr tabindex="0" data-job="${esc(l.job_id)}"><td class="mono">${esc(l.job_id)}</td><td class="mono">${esc(l.key?.text)}</td>
            <td>${l.count}</td><td class="state">${esc(l.state)}${l.cancel_requested && !FINAL.has(l.state) ? ' (cancelling)' : ''}</td><td>${esc(when(l.created_at))}</td></tr>`,
        )
        .join('') || '<tr><td colspan="5">No launches yet.</td></tr>';
    const parts = usage.by_market.map((m) => `${m.gpu_hours.toFixed(2)} on ${esc(m.market.replace('_', '-'))} (${m.launches} launch${m.launches === 1 ? '' : 'es'}${m.still_running ? ', still running' : ''})`);
    $('usage').innerHTML = `<strong>${usage.gpu_hours.toFixed(2)}</strong> GPU-hours in ${esc(usage.month)}${parts.length ? ` — ${parts.join('; ')}` : ''}`;
  } catch (e) {
    $('launches-error').textContent = e.message;
  }
}

// ---------------------------------------------------------------------------- notifications

async function loadNotifications() {
  $('notify-error').textContent = '';
  try {
    const n = await api('/api/notifications');
    $('subscriptions').innerHTML =
      n.subscriptions
        .map(
          (s) => `<tr><td class="mono">${esc(s.id)}</td><td class="mono">${esc(s.url)}</td><td>${esc(s.format)}</td>
            <td>${esc(s.events.join(', '))}${s.keys.length ? ` (${esc(s.keys.map((k) => [k.gpu_model, k.region].filter(Boolean).join(' in ')).join('; '))})` : ''}</td>
            <td><button type="button" data-unsubscribe="${esc(s.id)}">Delete</button></td></tr>`,
        )
        .join('') || '<tr><td colspan="5">No subscriptions.</td></tr>';
    $('dead-letters').innerHTML =
      n.dead_letters
        .map((d) => `<tr><td>${esc(when(d.failed_at))}</td><td>${esc(d.event)}</td><td>${d.attempts}</td><td>${esc(d.last_error)}</td></tr>`)
        .join('') || '<tr><td colspan="4">None.</td></tr>';
  } catch (e) {
    $('notify-error').textContent = e.message;
  }
}

async function subscribe(ev) {
  ev.preventDefault();
  $('notify-error').textContent = '';
  $('notify-secret').textContent = '';
  const body = {
    url: $('n-url').value.trim(),
    format: $('n-format').value,
    events: [...document.querySelectorAll('input[name=n-event]:checked')].map((i) => i.value),
    gpu_model: $('n-gpu').value.trim(),
    region: $('n-region').value.trim(),
    cooldown_seconds: Number($('n-cooldown').value || 0) * 60,
  };
  try {
    const r = await api('/api/notifications', { method: 'POST', body: JSON.stringify(body) });
    $('notify-secret').textContent = `Subscribed. Signing secret (shown only now): ${r.secret}`;
    loadNotifications();
  } catch (e) {
    $('notify-error').textContent = e.message;
  }
}

async function unsubscribe(id) {
  try {
    await api(`/api/notifications/${encodeURIComponent(id)}/delete`, { method: 'POST' });
    loadNotifications();
  } catch (e) {
    $('notify-error').textContent = e.message;
  }
}

// ------------------------------------------------------------------------------------ wiring

// A click inside element `id` on something carrying `data-<name>` calls `act` with its value.
function onData(id, name, act) {
  $(id).addEventListener('click', (ev) => {
    const el = ev.target.closest(`[data-${name}]`);
    if (el) act(el.dataset[name]);
  });
}

function wire() {
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    signIn($('api-key').value.trim());
  });
  $('sign-out').addEventListener('click', () => signOut());
  for (const tab of document.querySelectorAll('[role=tab]')) tab.addEventListener('click', () => selectTab(tab.id));
  document.querySelector('[role=tablist]').addEventListener('keydown', tabKeys);
  for (const id of ['f-gpu', 'f-count', 'f-region', 'f-market', 'f-conf']) $(id).addEventListener('input', () => renderGrids());
  $('grids').addEventListener('click', (ev) => {
    const cell = ev.target.closest('.cell');
    if (cell) openExplain(cell.dataset.key);
  });
  $('explain-close').addEventListener('click', closeExplain);
  $('explain').addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') closeExplain();
  });
  for (const b of document.querySelectorAll('.ranges button')) {
    b.addEventListener('click', () => {
      state.range = b.dataset.range;
      loadHistory();
    });
  }
  $('explain-preflight').addEventListener('click', () => prefill(state.selected));
  $('explain-watch').addEventListener('click', toggleWatch);
  $('changes-watched').addEventListener('change', filterChanges);
  $('watched-count').textContent = String(watched.size);
  $('pf-region').addEventListener('change', fillZones);
  $('pf-market').addEventListener('change', syncStandby);
  $('pf-form').addEventListener('submit', runPreflight);
  onData('pf-result', 'launch', launch);
  $('job-cancel').addEventListener('click', cancelJob);
  $('launches-refresh').addEventListener('click', loadLaunches);
  $('notify-form').addEventListener('submit', subscribe);
  onData('subscriptions', 'unsubscribe', unsubscribe);
  const openRow = (ev) => {
    const row = ev.target.closest('tr[data-job]');
    if (row && (ev.type === 'click' || ev.key === 'Enter' || ev.key === ' ')) {
      ev.preventDefault();
      watchJob(row.dataset.job);
    }
  };
  $('launches').addEventListener('click', openRow);
  $('launches').addEventListener('keydown', openRow);
  if (state.key) signIn(state.key);
  else $('api-key').focus();
}

wire();
