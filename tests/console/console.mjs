// The web console in a real browser: Debian's Chromium (/usr/bin/chromium) driven by
// playwright-core against a live stack (api + dispatcher + local echo sandboxes).
//
//   CONSOLE_URL=http://127.0.0.1:8000 CONSOLE_KEY=cnt_… node tests/console/console.mjs
//
// CONSOLE_KEY is an API key with the admin and agent scopes; CONSOLE_ARTIFACTS is where the
// screenshots go (default tests/console/artifacts). Run by tests/tests/console.rs, which
// starts the stack. Exits non-zero naming the step that failed.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = process.env.CONSOLE_URL;
const KEY = process.env.CONSOLE_KEY;
const ARTIFACTS = process.env.CONSOLE_ARTIFACTS || join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
  "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
// The flags this machine needs: no sandbox as root, no GPU, and no background connections
// to Google's hosts (refused here).
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// A turn whose events arrive over several seconds: each `@sh` line is a `command` event
// the moment it runs, `@sleep` waits (heartbeating), the last line is the answer.
const LIVE_TURN = [
  '@sh echo step-1', '@sleep 1500',
  '@sh echo step-2', '@sleep 1500',
  '@sh echo step-3', '@sleep 1500',
  'Hello from the console test',
].join('\n');

assert.ok(BASE && KEY, 'CONSOLE_URL and CONSOLE_KEY must be set');
mkdirSync(ARTIFACTS, { recursive: true });

const problems = [];      // CSP violations and uncaught page errors
const keyless = [];       // API requests sent without the key while signed in with one
let keyedRequests = 0;
let expectKey = false;
let current = 'start';
const started = Date.now();

function log(message) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
}

async function step(name, body) {
  current = name;
  const at = Date.now();
  await body();
  log(`ok: ${name} (${Date.now() - at} ms)`);
}

async function shot(page, name) {
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

const profile = mkdtempSync(join(tmpdir(), 'centaur-console-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: FLAGS,
  viewport: { width: 1280, height: 900 },
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(20_000);
page.on('dialog', (dialog) => dialog.accept());
page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
page.on('console', (message) => {
  const text = message.text();
  if (/Content Security Policy|Refused to/i.test(text)) problems.push(`CSP: ${text}`);
});
page.on('request', async (request) => {
  const path = new URL(request.url()).pathname;
  if (!/^\/(agent|admin)\/|^\/health\/tools/.test(path)) return;
  if (!expectKey) return;
  const headers = await request.allHeaders();
  if (headers['x-api-key']) keyedRequests += 1;
  else keyless.push(`${request.method()} ${path}`);
});

const badge = (selector) => page.locator(`${selector} .badge`);

try {
  await step('the console is served with its security headers', async () => {
    const response = await page.goto(`${BASE}/console`);
    assert.equal(response.status(), 200);
    const headers = response.headers();
    assert.equal(headers['content-security-policy'], CSP);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    assert.equal(headers['referrer-policy'], 'no-referrer');
    await page.evaluate(() => { window.__sameDocument = true; });
  });

  await step('sign-in offers "continue without a key" to the local operator', async () => {
    await page.locator('#sign-in').waitFor();
    await page.locator('#continue-local').waitFor();
    assert.equal(await page.locator('#api-key').getAttribute('type'), 'password');
    await shot(page, '01-sign-in');
  });

  await step('a wrong key is refused', async () => {
    await page.fill('#api-key', 'cnt_this_is_not_a_key_000000000000000000000000');
    await page.click('#sign-in-form button[type=submit]');
    await page.locator('#sign-in-error', { hasText: 'Invalid API key' }).waitFor();
    assert.equal(await page.inputValue('#api-key'), '', 'the typed key is not left in the field');
    assert.ok(await page.locator('#nav').isHidden());
  });

  await step('signing in with a key', async () => {
    await page.fill('#api-key', KEY);
    expectKey = true;
    await page.click('#sign-in-form button[type=submit]');
    await page.locator('#nav').waitFor();
    await page.locator('#who', { hasText: KEY.slice(0, 8) }).waitFor();
    await page.locator('#threads').waitFor();
  });

  let liveId;
  await step('a turn started from the form streams its events live', async () => {
    await page.fill('#turn-thread', 'console-live');
    await page.selectOption('#turn-harness', 'echo');
    await page.fill('#turn-message', LIVE_TURN);
    await page.click('#run-turn');
    await page.waitForURL(/#\/executions\/exe_[0-9a-f]{16}$/);
    liveId = decodeURIComponent(page.url().split('#/executions/')[1]);
    const commands = page.locator('#trail li[data-type="command"]');
    await commands.first().waitFor();
    const firstAt = Date.now();
    const statusMeanwhile = await badge('#exec-status').getAttribute('data-status');
    assert.ok(['running', 'queued'].includes(statusMeanwhile),
      `the first command is shown while the turn runs, not after (status ${statusMeanwhile})`);
    assert.equal(await commands.count(), 1, 'the later commands have not happened yet');
    await page.locator('#stream-state[data-state="live"]').waitFor();
    await shot(page, '02-live-turn');
    await page.locator('#trail li[data-type="command"]', { hasText: 'step-3' }).waitFor();
    const spread = Date.now() - firstAt;
    assert.ok(spread >= 2000, `step-3 arrived ${spread} ms after step-1: events stream in as they happen`);
    await page.locator('#exec-status [data-status="completed"]').waitFor();
    await page.locator('#trail li[data-type="assistant.delta"]', { hasText: 'Hello from the console test' }).waitFor();
    await page.locator('#stream-state[data-state="ended"]').waitFor();
    await page.locator('#exec-result', { hasText: 'Hello from the console test' }).waitFor();
    assert.equal(await page.locator('#trail li', { hasText: 'Hello from the console test' }).count(), 1,
      'the streamed answer is shown once');
    assert.ok(await page.evaluate(() => window.__sameDocument), 'no page reload on the way');
    assert.equal(await page.locator('#cancel').count(), 0, 'no cancel button on a finished turn');
    await shot(page, '03-completed-turn');
  });

  await step('another running turn is cancelled from its page', async () => {
    await page.click('#nav a[data-view="threads"]');
    await page.fill('#turn-thread', 'console-cancel');
    await page.selectOption('#turn-harness', 'echo');
    await page.fill('#turn-message', '@sleep 20000');
    await page.click('#run-turn');
    await page.waitForURL(/#\/executions\/exe_[0-9a-f]{16}$/);
    await page.locator('#trail li[data-type="execution_started"]').waitFor();
    await page.locator('#exec-status [data-status="running"]').waitFor();
    const clicked = Date.now();
    await page.click('#cancel');
    await page.locator('#exec-status [data-status="cancelled"]').waitFor({ timeout: 30_000 });
    await page.locator('#exec-reason', { hasText: 'cancelled' }).waitFor();
    await page.locator('#trail li[data-state="cancel_requested"]').waitFor();
    await page.locator('#trail li[data-state="cancelled"]').waitFor();
    await page.locator('#stream-state[data-state="ended"]').waitFor();
    log(`cancelled ${Date.now() - clicked} ms after the click`);
    await shot(page, '04-cancelled-turn');
  });

  await step('a failed turn shows its terminal reason and error at the top', async () => {
    await page.click('#nav a[data-view="threads"]');
    await page.fill('#turn-thread', 'console-fail');
    await page.selectOption('#turn-harness', 'echo');
    await page.fill('#turn-message', '@fail the console saw this failure');
    await page.click('#run-turn');
    await page.waitForURL(/#\/executions\/exe_[0-9a-f]{16}$/);
    await page.locator('#exec-status [data-status="failed_permanent"]').waitFor();
    await page.locator('#exec-reason', { hasText: 'harness_error' }).waitFor();
    await page.locator('#exec-error', { hasText: 'the console saw this failure' }).waitFor();
    await shot(page, '05-failed-turn');
  });

  await step('the thread list and a thread\'s executions', async () => {
    await page.click('#nav a[data-view="threads"]');
    await page.locator('#threads tr[data-thread="console-live"] [data-status="completed"]').waitFor();
    await page.locator('#threads tr[data-thread="console-cancel"] [data-status="cancelled"]').waitFor();
    await shot(page, '06-threads');
    await page.click('#threads tr[data-thread="console-live"] td:first-child a');
    await page.locator(`#executions tr[data-execution="${liveId}"] [data-status="completed"]`).waitFor();
    await shot(page, '07-thread');
    // A finished execution opened afresh shows its whole trail without a stream.
    await page.click(`#executions tr[data-execution="${liveId}"] td:first-child a`);
    await page.locator('#stream-state[data-state="ended"]').waitFor();
    assert.equal(await page.locator('#trail li[data-type="command"]').count(), 3);
    await page.locator('#trail li[data-state="completed"]').waitFor();
  });

  await step('health and tools', async () => {
    await page.click('#nav a[data-view="health"]');
    await page.locator('#ready [data-status="ok"]').waitFor();
    await page.locator('#tools td', { hasText: 'echo' }).first().waitFor();
    await shot(page, '08-health');
  });

  await step('the warm pool', async () => {
    await page.click('#nav a[data-view="pool"]');
    await page.locator('#pool dl.fields').waitFor();
    await shot(page, '09-pool');
  });

  await step('token usage', async () => {
    await page.click('#nav a[data-view="usage"]');
    await page.locator('#usage table, #usage p.muted:not(:has-text("Loading"))').first().waitFor();
  });

  await step('API keys: create one (shown once), then revoke it', async () => {
    await page.click('#nav a[data-view="keys"]');
    await page.locator('#keys table').waitFor();
    await page.fill('#key-name', 'console-made');
    await page.click('#new-key-form button[type=submit]');
    const plaintext = await page.locator('#new-key').textContent();
    assert.match(plaintext, /^cnt_[A-Za-z0-9_-]{43}$/);
    const row = page.locator('#keys tr[data-key="console-made"]');
    await row.locator('[data-status="active"]').waitFor();
    await shot(page, '10-keys');
    await row.locator('button', { hasText: 'Revoke' }).click();
    await row.locator('[data-status="revoked"]').waitFor();
    const refused = await page.evaluate(async (key) =>
      (await fetch('/agent/threads', { headers: { 'X-Api-Key': key } })).status, plaintext);
    assert.equal(refused, 401, 'the revoked key is refused');
  });

  await step('the audit log shows who ran the turn and changed the keys', async () => {
    await page.click('#nav a[data-view="audit"]');
    await page.locator('#audit table').waitFor();
    await page.fill('#audit-principal', 'console-operator');
    await page.click('#audit-filter button[type=submit]');
    const turn = page.locator('#audit tr[data-action="execute"]', { hasText: liveId });
    await turn.waitFor();
    assert.match(await turn.textContent(), /api_key/, 'the turn was started with the signed-in key');
    await page.locator('#audit tr[data-action="cancel"]').first().waitFor();
    await page.locator('#audit tr[data-action="key_revoke"]').waitFor();
    const kinds = await page.locator('#audit tbody tr').evaluateAll((rows) =>
      [...new Set(rows.map((row) => row.dataset.principalKind))]);
    assert.deepEqual(kinds, ['api_key'], 'the filter keeps only the key\'s entries');
    await shot(page, '11-audit');
    await page.fill('#audit-principal', 'nobody-at-all');
    await page.click('#audit-filter button[type=submit]');
    await page.locator('#audit p.muted', { hasText: 'No audit entries match' }).waitFor();
  });

  await step('the key is kept in memory only', async () => {
    const kept = await page.evaluate(() => ({
      local: window.localStorage.length,
      session: window.sessionStorage.length,
      cookies: document.cookie,
    }));
    assert.deepEqual(kept, { local: 0, session: 0, cookies: '' });
    const cookies = await context.cookies();
    assert.equal(cookies.length, 0);
  });

  await step('signing out forgets the key; the local operator continues without one', async () => {
    expectKey = false;
    await page.click('#sign-out');
    await page.locator('#sign-in').waitFor();
    await page.locator('#continue-local').click();
    await page.locator('#who', { hasText: 'local operator' }).waitFor();
    await page.click('#nav a[data-view="threads"]');
    await page.locator('#threads tr[data-thread="console-live"]').waitFor();
  });

  await step('an unknown console asset is the API\'s JSON 404, with the same headers', async () => {
    const response = await page.goto(`${BASE}/console/no-such-asset.js`);
    assert.equal(response.status(), 404);
    assert.equal(response.headers()['content-security-policy'], CSP);
    const body = JSON.parse(await response.text());
    assert.equal(body.code, 'NOT_FOUND');
    assert.match(body.message, /no console asset/);
  });

  await step('no CSP violation, no page error, the key on every request', async () => {
    assert.deepEqual(problems, []);
    assert.deepEqual(keyless, []);
    assert.ok(keyedRequests >= 10, `only ${keyedRequests} requests carried the key`);
  });
  log(`all steps passed; ${keyedRequests} API requests carried the key`);
} catch (err) {
  console.error(`FAILED at step "${current}": ${err.stack || err}`);
  if (problems.length) console.error(`browser problems:\n${problems.join('\n')}`);
  await shot(page, 'failure').catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
