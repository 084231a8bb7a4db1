// The dashboard in a real browser: Debian's Chromium driven by playwright-core (no bundled
// browser). Run by tests/tests/dashboard.rs against a live gateway, scorer, launcher and
// cloudsim; it prints `WAITING stockout` when the capacity map is up, expects the caller to
// stock the key out in cloudsim then, and ends with one `RESULT {json}` line (exit 0) or an
// error and a `failure.png` screenshot (exit 1).
//
// Environment: DASHBOARD_URL, KEY_A (a tenant that may launch), KEY_B (another tenant),
// STOCKOUT_KEY (the key the caller stocks out), OPERATOR_KEY (the operator credential),
// SCREENSHOTS (folder for the PNGs),
// CHROMIUM (default /usr/bin/chromium).

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const url = need('DASHBOARD_URL');
const keyA = need('KEY_A');
const keyB = need('KEY_B');
const stockoutKey = need('STOCKOUT_KEY');
const shots = need('SCREENSHOTS');
mkdirSync(shots, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), 'capsight-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
  viewport: { width: 1440, height: 900 },
});
const page = context.pages()[0] ?? (await context.newPage());
const consoleErrors = [];
page.on('console', (m) => {
  if (m.type() === 'error') consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
const step = (name) => console.log(`STEP ${name}`);
const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
const cell = (key) => `.cell[data-key="${key}"]`;

async function signIn(key) {
  await page.fill('#api-key', key);
  await page.press('#api-key', 'Enter');
}

async function signOut() {
  await page.click('#sign-out');
  await page.waitForSelector('#signin:not([hidden])');
}

/** An API call from the page with `key` as bearer: the HTTP status. */
async function statusWith(key, path) {
  return page.evaluate(
    async ([k, p]) => (await fetch(p, { headers: { Authorization: `Bearer ${k}` } })).status,
    [key, path],
  );
}

const result = {};
try {
  step('open');
  await page.goto(url);
  await page.waitForSelector('#signin:not([hidden])');

  step('a wrong key is refused');
  await signIn('not-a-valid-key');
  await page.waitForFunction(() => document.querySelector('#signin-error').textContent.includes('refused'));
  result.wrong_key_message = await page.textContent('#signin-error');
  result.wrong_key_app_hidden = await page.isHidden('#app');
  await shot('signin-refused');

  step('sign in');
  await signIn(keyA);
  await page.waitForSelector('#app:not([hidden])');
  result.tenant_a = await page.textContent('#tenant-name');
  result.key_in_url = page.url().includes(keyA);
  await page.waitForSelector(cell(stockoutKey), { timeout: 60_000 });
  await page.waitForFunction(() => document.querySelector('#live').classList.contains('on'));
  result.label_before = await page.getAttribute(cell(stockoutKey), 'data-label');
  // a marker that a reload would lose
  await page.evaluate(() => {
    window.__sameDocument = true;
  });
  await shot('capacity');

  step('filters');
  await page.selectOption('#f-market', 'on_demand');
  await page.selectOption('#f-count', '8');
  result.cells_with_8_gpus = await page.locator('.cell').count();
  await page.selectOption('#f-count', '0');
  result.cells_all = await page.locator('.cell').count();

  step('stockout');
  console.log('WAITING stockout');
  await page.waitForSelector(`${cell(stockoutKey)}[data-label="unavailable"]`, { timeout: 240_000 });
  result.same_document = await page.evaluate(() => window.__sameDocument === true);
  result.change_listed = (await page.textContent('#changes')).includes(stockoutKey);
  await shot('capacity-stockout');

  step('why this score (keyboard)');
  await page.focus(cell(stockoutKey));
  await page.keyboard.press('Enter');
  await page.waitForSelector('#explain:not([hidden])');
  await page.waitForSelector('#history svg');
  result.explain_facts = await page.textContent('#explain-facts');
  result.evidence_rows = await page.locator('#explain-evidence tr').count();
  // the signals that moved the score, marked on the time axis of each range
  result.history_marks = {};
  for (const range of ['7d', '24h', '1h']) {
    await page.click(`.ranges button[data-range="${range}"]`);
    await page.waitForSelector(`.ranges button[data-range="${range}"][aria-pressed="true"]`);
    await page.waitForSelector('#history svg .mark-legend, #history .mark-legend');
    result.history_marks[range] = await page.evaluate(() => ({
      probe: document.querySelectorAll('#history .mark[data-kind="probe"]').length,
      failed_probe: document.querySelectorAll('#history .mark.probe.negative').length,
      lanes: document.querySelectorAll('#history .lane').length,
      legend: document.querySelector('#history .mark-legend')?.textContent ?? '',
      title: document.querySelector('#history svg title')?.textContent ?? '',
      mark_title: document.querySelector('#history .mark.probe.negative title')?.textContent ?? '',
    }));
  }
  result.history_points = await page.evaluate(() => document.querySelector('#history polyline')?.getAttribute('points').split(' ').length ?? 0);
  await page.click('#explain-watch');
  result.watching = await page.getAttribute('#explain-watch', 'aria-pressed');
  await page.check('#changes-watched');
  result.watched_alerts = await page.locator('#changes li:not([hidden])').count();
  await shot('explain');

  step('preflight');
  await page.click('#explain-preflight');
  await page.waitForSelector('#view-preflight:not([hidden])');
  // launch options: the warm standby is for spot only, fallbacks are up to 10
  result.standby_disabled_on_demand = await page.isDisabled('#pf-standby');
  await page.selectOption('#pf-market', 'spot');
  result.standby_enabled_on_spot = await page.isEnabled('#pf-standby');
  await page.selectOption('#pf-market', 'on_demand');
  await page.fill('#pf-fallbacks', '2');
  result.standby_refused_on_demand = await page.evaluate(async ([k, key]) => {
    const r = await fetch('/api/launches', {
      method: 'POST',
      headers: { Authorization: `Bearer ${k}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ key, count: 1, image_id: 'ami-0123456789abcdef0', warm_standby: true }),
    });
    return { status: r.status, body: await r.json() };
  }, [keyA, stockoutKey]);
  await page.click('#pf-form button[type=submit]');
  await page.waitForSelector('#pf-result:not([hidden])', { timeout: 60_000 });
  result.decision = await page.textContent('#pf-decision');
  result.checks = await page.textContent('#pf-checks');
  result.alternatives = await page.locator('#pf-alts tr').count();
  result.first_alternative = await page.textContent('#pf-alts tr:first-child td.mono');
  await shot('preflight');

  step('launch an alternative');
  await page.click('#pf-alts tr:first-child button[data-launch]');
  await page.waitForSelector('#job:not([hidden])');
  await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'running', null, { timeout: 120_000 });
  result.job_id = await page.textContent('#job-id');
  result.job_states = await page.$$eval('#job-events li', (lis) => lis.map((li) => li.dataset.state));
  await shot('launch');

  step('cancel');
  await page.click('#job-cancel');
  await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'cancelled', null, { timeout: 120_000 });
  result.job_states_after_cancel = await page.$$eval('#job-events li', (lis) => lis.map((li) => li.dataset.state));
  result.cancel_disabled = await page.isDisabled('#job-cancel');

  step('launch the stocked-out key anyway: the launcher falls back');
  await page.click('#pf-launch-anyway');
  await page.waitForFunction((id) => document.querySelector('#job-id').textContent !== id, result.job_id);
  await page.waitForSelector('#job-events li[data-step="fallback"]', { timeout: 120_000 });
  await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'running', null, { timeout: 120_000 });
  result.fallback_job_id = await page.textContent('#job-id');
  result.fallback_options = await page.textContent('#job-options');
  result.fallback_count = await page.textContent('#job-fallbacks');
  result.fallback_event = await page.textContent('#job-events li[data-step="fallback"]');
  result.fallback_states = await page.$$eval('#job-events li', (lis) => lis.map((li) => `${li.dataset.state}${li.dataset.step ? `:${li.dataset.step}` : ''}`));
  await shot('launch-fallback');
  await page.click('#job-cancel');
  await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'cancelled', null, { timeout: 120_000 });

  step('launches');
  await page.click('#tab-launches');
  await page.waitForSelector(`#launches tr[data-job="${result.job_id}"]`);
  await page.waitForFunction(() => document.querySelector('#usage').textContent.includes('GPU-hours'));
  result.usage = await page.textContent('#usage');
  result.own_launch_status = await statusWith(keyA, `/api/launches/${result.job_id}`);
  await shot('launches');

  step('notifications');
  await page.waitForFunction(() => !document.querySelector('#subscriptions').textContent.includes('loading'));
  await page.fill('#n-url', 'https://hooks.example.com/capsight');
  await page.selectOption('#n-format', 'slack');
  await page.click('#notify-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#notify-secret').textContent.includes('whsec_'));
  await page.waitForSelector('#subscriptions button[data-unsubscribe]');
  result.subscription_rows = await page.locator('#subscriptions button[data-unsubscribe]').count();
  result.subscription_text = await page.textContent('#subscriptions');
  result.subscription_id = await page.getAttribute('#subscriptions button[data-unsubscribe]', 'data-unsubscribe');
  result.secret_shown = (await page.textContent('#notify-secret')).includes('whsec_');
  // a private address is refused, naming the field
  await page.fill('#n-url', 'http://10.0.0.1/hook');
  await page.click('#notify-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#notify-error').textContent.length > 0);
  result.private_url_error = await page.textContent('#notify-error');

  step('tenant B');
  await signOut();
  result.key_cleared = await page.evaluate(() => sessionStorage.getItem('capsight.key') === null);
  await signIn(keyB);
  await page.waitForSelector('#app:not([hidden])');
  result.tenant_b = await page.textContent('#tenant-name');
  await page.click('#tab-launches');
  await page.waitForFunction(() => !document.querySelector('#launches').textContent.includes('loading'));
  await page.waitForSelector('#launches tr');
  result.b_sees_launch_in_list = (await page.locator(`#launches tr[data-job="${result.job_id}"]`).count()) > 0;
  result.b_get_launch_status = await statusWith(keyB, `/api/launches/${result.job_id}`);
  result.b_cancel_status = await page.evaluate(
    async ([k, id]) => (await fetch(`/api/launches/${id}/cancel`, { method: 'POST', headers: { Authorization: `Bearer ${k}` } })).status,
    [keyB, result.job_id],
  );
  result.b_subscriptions = await page.evaluate(
    async (k) => (await (await fetch('/api/notifications', { headers: { Authorization: `Bearer ${k}` } })).json()).subscriptions.length,
    keyB,
  );
  result.b_delete_subscription_status = await page.evaluate(
    async ([k, id]) => (await fetch(`/api/notifications/${id}/delete`, { method: 'POST', headers: { Authorization: `Bearer ${k}` } })).status,
    [keyB, result.subscription_id],
  );
  result.no_key_status = await page.evaluate(async () => (await fetch('/api/scores')).status);
  result.b_pipeline_status = await statusWith(keyB, '/api/operator/pipeline');

  step('operator view');
  await page.goto(new URL('operator.html', url).href);
  await page.fill('#op-key', keyA);
  await page.press('#op-key', 'Enter');
  await page.waitForFunction(() => document.querySelector('#signin-error').textContent.includes('Refused'));
  result.operator_with_tenant_key = await page.textContent('#signin-error');
  await page.fill('#op-key', need('OPERATOR_KEY'));
  await page.press('#op-key', 'Enter');
  await page.waitForSelector('#app:not([hidden])');
  await page.waitForSelector('#queries li');
  await page.waitForSelector('#pipeline li');
  result.operator_usage = await page.textContent('#usage');
  result.operator_trust_acme = await page.textContent('#trust tr[data-tenant="acme"]');
  result.operator_tenant_trust = await page.textContent('#tenants tr[data-tenant="acme"] td.trust');
  result.operator_pipeline = await page.$$eval('#pipeline li', (lis) => lis.map((li) => ({ id: li.dataset.health, ok: li.dataset.ok, text: li.textContent })));
  result.operator_dlq = await page.textContent('#dlq-count');
  result.operator_collectors = await page.$$eval('#collectors tr[data-source]', (trs) => trs.map((tr) => tr.dataset.source));
  result.operator_probers = await page.$$eval('#probers tr[data-prober]', (trs) => trs.map((tr) => ({ prober: tr.dataset.prober, text: tr.textContent })));
  result.operator_probe_spent = await page.textContent('#probe-spent');
  result.operator_queries = await page.locator('#queries li').count();
  const download = page.waitForEvent('download');
  await page.click('#queries li:first-child button');
  const csv = await download;
  result.operator_csv_name = csv.suggestedFilename();
  await shot('operator');
  result.console_errors = consoleErrors;
  console.log(`RESULT ${JSON.stringify(result)}`);
} catch (e) {
  console.error(`dashboard test failed: ${e.stack || e}`);
  console.error(`so far: ${JSON.stringify(result)}`);
  await page.screenshot({ path: join(process.env.FAILURE_DIR || shots, 'failure.png') }).catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
