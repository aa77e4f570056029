// What the browser harnesses share: their one JSON report, printed exactly once (on success,
// crash or timeout), a deadline for each step, and Chromium launched the same way.
//
// Env: CHROMIUM_PATH overrides the browser binary; HARNESS_TIMEOUT_MS the overall deadline (50 s);
// EXTRA_CHROMIUM_ARGS adds space-separated flags.
import { chromium } from 'playwright-core';
import fs from 'node:fs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Run fn but never longer than ms; a late rejection is swallowed.
export function within(ms, what, fn) {
  const p = Promise.resolve().then(fn);
  p.catch(() => {});
  return Promise.race([p, sleep(ms).then(() => { throw new Error(`${what}: timed out after ${ms} ms`); })]);
}

// Run `main` and print `result` (which must have `errors` and `duration_ms`) exactly once:
// exit 0 when main finished, 1 when it threw, 2 on the overall deadline, 3 on a stray error.
export function runHarness(name, result, main) {
  const t0 = Date.now();
  const overallMs = Number(process.env.HARNESS_TIMEOUT_MS) || 50_000;
  let emitted = false;
  const emit = (code) => {
    if (emitted) return;
    emitted = true;
    result.duration_ms = Date.now() - t0;
    process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code));
  };
  const watchdog = setTimeout(() => {
    result.errors.push(`harness timed out after ${overallMs} ms`);
    emit(2);
  }, overallMs);
  process.on('uncaughtException', (e) => { result.errors.push(`uncaught: ${e.stack || e}`); emit(3); });
  process.on('unhandledRejection', (e) => { result.errors.push(`unhandled: ${e?.stack || e}`); emit(3); });
  main().then(
    () => { clearTimeout(watchdog); emit(0); },
    (e) => { result.errors.push(`${name}: ${e.stack || e}`); clearTimeout(watchdog); emit(1); },
  );
}

function chromiumPath() {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  // Debian's /usr/bin/chromium is a shell wrapper that sources /etc/chromium.d (adds extension
  // loading, GPU rasterization flags, ...). Launch the real binary behind it when present.
  for (const p of ['/usr/lib/chromium/chromium', '/usr/bin/chromium']) if (fs.existsSync(p)) return p;
  throw new Error('chromium not found: run tests/browser/install.sh or set CHROMIUM_PATH');
}

// Headless Chromium with the harnesses' common flags, `extra` ones and EXTRA_CHROMIUM_ARGS.
export function launchChromium(extra = []) {
  const args = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--disable-background-networking', '--no-first-run', '--no-default-browser-check',
    '--disable-extensions', '--mute-audio', ...extra];
  if (process.env.EXTRA_CHROMIUM_ARGS) args.push(...process.env.EXTRA_CHROMIUM_ARGS.split(' ').filter(Boolean));
  return within(20_000, 'launch chromium', () =>
    chromium.launch({ executablePath: chromiumPath(), headless: true, args, timeout: 20_000 }));
}
