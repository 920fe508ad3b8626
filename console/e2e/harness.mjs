// The browser tests' harness: a `smartsite serve` of their own on random ports (read back from
// DATA_DIR/endpoints.json, as tests/src/lib.rs does), Debian's chromium driven headless by
// playwright-core with a fresh profile, and screenshots kept under e2e-artifacts/ (gitignored).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, selectors } from 'playwright-core';
import { Api, onboard, PASSWORD } from './world.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = resolve(here, '..', 'e2e-artifacts');
const BIN = process.env.SMARTSITE_BIN ?? resolve(here, '..', '..', 'target', 'debug', 'smartsite');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

selectors.setTestIdAttribute('data-test');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts `smartsite serve` in a fresh data dir; `stop()` ends it and removes the dir. */
export async function startServer() {
  if (!existsSync(BIN)) throw new Error(`no smartsite binary at ${BIN} (cargo build -p smartsite, or set SMARTSITE_BIN)`);
  const dataDir = mkdtempSync(join(tmpdir(), 'smartsite-console-e2e-'));
  const child = spawn(
    BIN,
    ['serve', '--data-dir', dataDir, '--http', '127.0.0.1:0', '--mqtts', '127.0.0.1:0', '--mqtt', '127.0.0.1:0'],
    {
      // The escalation sweep every second, so an alarm reaches the government within the test.
      env: { ...process.env, SMARTSITE_LOG_FORMAT: 'json', RUST_LOG: process.env.RUST_LOG ?? 'warn', SMARTSITE_SWEEP_SECS: '1' }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  let exited = null;
  child.on('exit', (code, signal) => (exited = { code, signal }));
  const kill = () => child.kill('SIGKILL');
  process.on('exit', kill);
  const file = join(dataDir, 'endpoints.json');
  const deadline = Date.now() + 30000;
  let endpoints;
  while (!endpoints) {
    if (exited) throw new Error(`smartsite serve exited during start-up: ${JSON.stringify(exited)}`);
    if (Date.now() > deadline) throw new Error('smartsite serve wrote no endpoints.json within 30 s');
    if (existsSync(file)) {
      try {
        endpoints = JSON.parse(readFileSync(file, 'utf8'));
      } catch {
        /* being written */
      }
    }
    if (!endpoints) await sleep(50);
  }
  const base = `http://${endpoints.http}`;
  for (;;) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      /* not yet */
    }
    await sleep(50);
  }
  return {
    base,
    endpoints,
    dataDir,
    adminPassword: readFileSync(join(dataDir, 'admin-password'), 'utf8').trim(),
    async stop() {
      process.off('exit', kill);
      if (!exited) {
        child.kill('SIGTERM');
        const until = Date.now() + 10000;
        while (!exited && Date.now() < until) await sleep(50);
        if (!exited) kill();
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Chromium, headless, with a fresh profile; fails (never skips) when it is not installed. */
export async function startBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`chromium is not installed at ${CHROMIUM}: scripts/test installs it (apt-get install -y chromium)`);
  }
  const profile = mkdtempSync(join(tmpdir(), 'smartsite-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
    viewport: { width: 1366, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A server with an onboarded world and a browser: what every suite starts from. */
export async function setup(tag) {
  // The browser first: without it the suite fails at once. Whatever did start is stopped when a
  // later step fails, so a failed set-up never leaves a server holding the test run open.
  const browser = await startBrowser();
  let server;
  let api;
  let world;
  try {
    server = await startServer();
    api = new Api(server.base);
    world = await onboard(api, server.adminPassword, tag);
  } catch (e) {
    await server?.stop();
    await browser.close();
    throw e;
  }
  return {
    server,
    api,
    world,
    browser,
    async teardown() {
      await browser.close();
      await server.stop();
    },
  };
}

/** A new tab signed in as `username` (each tab has its own sessionStorage, so its own sign-in). */
export async function signIn(env, username, { viewport, password = PASSWORD } = {}) {
  const page = await env.browser.context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  await page.goto(`${env.server.base}/login`);
  await fillIn(page, 'username', username);
  await fillIn(page, 'password', password);
  await page.getByTestId('sign-in').click();
  await page.waitForURL((u) => !u.pathname.startsWith('/login'));
  return page;
}

/** Types into the field marked `data-test=id` (Element Plus puts the attribute on the input
 * itself, or on a wrapper for composite widgets). */
export async function fillIn(page, id, value) {
  const el = page.getByTestId(id).first();
  const tag = await el.evaluate((e) => e.tagName);
  if (tag === 'INPUT' || tag === 'TEXTAREA') await el.fill(String(value));
  else await el.locator('input, textarea').first().fill(String(value));
}

/** The navigation entries a signed-in page shows, by name. */
export async function navNames(page) {
  await page.getByTestId('nav').first().waitFor();
  const ids = await page.locator('[data-test^="nav-"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-test')));
  return ids.map((id) => id.slice(4)).sort();
}

/** Keeps a full-page screenshot as a test artefact. */
export async function shot(page, name, { fullPage = true } = {}) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.waitForLoadState('networkidle', { timeout: 5000 }).catch(() => {});
  // Whatever is still moving (a drawer sliding in, a chart drawing) settles first.
  // (A spinner runs forever: only finite animations are waited for.)
  await page.evaluate(() =>
    Promise.all(
      document
        .getAnimations()
        .filter((a) => Number.isFinite(a.effect?.getComputedTiming().endTime ?? Infinity))
        .map((a) => a.finished.catch(() => {})),
    ),
  );
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage });
}

export { PASSWORD };
