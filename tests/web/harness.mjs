// What the browser tests share: their checks' report (ok / bad / check, with the seconds since the start), a
// watchdog that bounds the whole run, and a headless Chromium in a throw-away profile (playwright-core) that is
// closed and removed at the end. Each test imports it and keeps only its own steps.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// The report of one test: label prefixes every line ('' for none).
export function reporter(label) {
  const t0 = Date.now();
  const r = { fails: 0 };
  const tag = label ? `${label}: ` : '';
  r.ok = (msg) => console.log(`ok: [${((Date.now() - t0) / 1000).toFixed(1)}s] ${tag}${msg}`);
  r.bad = (msg) => { console.log(`FAIL: ${tag}${msg}`); r.fails++; };
  r.check = (cond, msg, detail) => (cond ? r.ok(msg) : r.bad(detail ? `${msg}: ${detail}` : msg));
  return r;
}

// Ends the process with a failure when the test is not done within `seconds`; clearTimeout(the result) stops it.
export function watchdog(what, seconds) {
  return setTimeout(() => { console.log(`FAIL: ${what} did not finish within ${seconds} s`); process.exit(1); },
                    seconds * 1000);
}

// Chromium (CVX_CHROMIUM, default /usr/bin/chromium) headless in a fresh profile, with extra command-line
// arguments; on failure to start it prints FAIL and exits 1. Returns { context, close }: close() ends the browser and
// removes the profile.
export async function launchBrowser(name, extraArgs = []) {
  const executablePath = process.env.CVX_CHROMIUM || '/usr/bin/chromium';
  const userDataDir = mkdtempSync(join(tmpdir(), `${name}-chromium-`));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      timeout: 60000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
      viewport: { width: 1000, height: 1400 },
    });
  } catch (e) {
    console.log(`FAIL: could not start ${executablePath}: ${e.message}`);
    rmSync(userDataDir, { recursive: true, force: true });
    process.exit(1);
  }
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}
