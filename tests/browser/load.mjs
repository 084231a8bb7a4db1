// Load time of the dashboard's capacity map with many keys, in Debian's Chromium (run by
// tests/tests/dashboard_load.rs; figures in docs/benchmarks.md). For each of RUNS sign-ins:
// the time from submitting the key to the map showing every key (all EXPECTED cells
// rendered), and where it went (the score pages' resource timings, the rendering after the
// last page). Prints one `RESULT {json}` line.
//
// Environment: DASHBOARD_URL, KEY, EXPECTED (keys), RUNS (default 5), CHROMIUM.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.DASHBOARD_URL;
const key = process.env.KEY;
const expected = Number(process.env.EXPECTED);
const runs = Number(process.env.RUNS || 5);
const profile = mkdtempSync(join(tmpdir(), 'capsight-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width: 1440, height: 900 },
});
const times = [];
const splits = [];
let cells = 0;
try {
  for (let i = 0; i < runs; i++) {
    // A fresh tab each run: the key lives in a tab's sessionStorage, so a new tab always
    // starts signed out (clearing and reloading one tab raced with its own sign-in).
    const page = await context.newPage();
    for (const old of context.pages()) if (old !== page) await old.close();
    await page.goto(url);
    await page.fill('#api-key', key);
    const t0 = Date.now();
    const pageT0 = await page.evaluate(() => performance.now());
    await page.press('#api-key', 'Enter');
    await page.waitForFunction(
      (n) => {
        if (document.querySelectorAll('.cell').length < n) return false;
        window.__doneAt = performance.now();
        return true;
      },
      expected,
      { timeout: 60_000, polling: 'raf' },
    );
    times.push(Date.now() - t0);
    // where the time went, from the page's resource timings: the score pages (request start
    // to last byte) and the rendering after the last page arrived
    const split = await page.evaluate((t) => {
      const pages = performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/scores?') && e.startTime >= t);
      const who = performance.getEntriesByType('resource').find((e) => e.name.endsWith('/api/whoami') && e.startTime >= t);
      const last = Math.max(...pages.map((e) => e.responseEnd));
      return {
        pages: pages.length,
        bytes: pages.reduce((n, e) => n + e.encodedBodySize, 0),
        whoami_ms: who ? Math.round(who.responseEnd - t) : null,
        first_page_start_ms: Math.round(Math.min(...pages.map((e) => e.startTime)) - t),
        page_ms: pages.map((e) => Math.round(e.responseEnd - e.startTime)),
        server_ms: pages.map((e) => Math.round(e.responseStart - e.requestStart)),
        last_page_end_ms: Math.round(last - t),
        render_ms: Math.round(window.__doneAt - last),
        total_page_ms: Math.round(window.__doneAt - t),
      };
    }, pageT0);
    splits.push(split);
    cells = await page.evaluate(() => document.querySelectorAll('.cell').length);
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(`RESULT ${JSON.stringify({ cells, times_ms: times, median_ms: sorted[Math.floor(sorted.length / 2)], max_ms: sorted[sorted.length - 1], splits })}`);
} catch (e) {
  console.error(`load test failed: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
