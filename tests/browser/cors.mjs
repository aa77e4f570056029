#!/usr/bin/env node
// Browser harness for Islet's CORS: a page on the tenant's own origin calls the API directly
// with a browser token (`mst_…`), and a page on another origin tries the same calls.
//
//   node tests/browser/cors.mjs < config.json        (install deps first: tests/browser/install.sh)
//
// Input (stdin, JSON):
//   api_base        the API, e.g. http://127.0.0.1:P/api/v1 (call paths are appended to it)
//   token           the browser token: the only credential the pages are given
//   allowed_port    port of the page on the allowed origin http://127.0.0.1:<allowed_port>; the
//                   caller put that origin in the tenant's allowed_origins (0 or absent: any port)
//   other_port      optional, port of the page on the other origin (default: any free port)
//   allowed_calls   [{name, method, path, body?}] made in order by the page on the allowed origin
//   other_calls     the same for the page on the other origin
//                   `body` is sent as JSON (content-type: application/json); every call carries
//                   `Authorization: Bearer <token>`, so every one needs a preflight.
//
// Output: ONE JSON object on stdout (logs go to stderr). Exit 0 when the scenario could be run,
// whatever it observed: the caller asserts on the JSON. Non-zero on internal crash or timeout
// (a partial JSON object is still printed when possible).
//   allowed / other   {<name>: {method, path, threw, error, status, body, request_id,
//                     ratelimit_remaining}}: what the page's own script saw. A call CORS refused
//                     throws (TypeError) and has no status; `request_id` and
//                     `ratelimit_remaining` are only readable when the API exposes them.
//   requests          every HTTP request the browser made: {page, url, method, headers,
//                     post_data, status, failure}. `headers` as sent (Authorization included).
//   load_failures     Network.loadingFailed as CDP reports it: {page, url, error_text,
//                     cors_error} (cors_error e.g. "PreflightMissingAllowOriginHeader")
//   console           {page, type, text} of both pages (Chromium logs CORS refusals there)
//
// Env: CHROMIUM_PATH overrides the browser binary; HARNESS_TIMEOUT_MS the overall deadline (50 s);
// EXTRA_CHROMIUM_ARGS adds space-separated flags.
import { launchChromium, runHarness, sleep, within } from './common.mjs';
import fs from 'node:fs';
import http from 'node:http';

const log = (...a) => console.error('[cors.mjs]', ...a);
const CALL_MS = 30_000; // one fetch (an exec runs a command in the sandbox)

const result = {
  chromium_version: null,
  api_base: null,
  allowed_origin: null,
  other_origin: null,
  allowed: {},
  other: {},
  requests: [],
  load_failures: [],
  console: [],
  errors: [],
  duration_ms: null,
};

// ---- page servers ----------------------------------------------------------------------
// One tiny page per origin. Both are plain HTTP on 127.0.0.1 and differ only by port, which is
// enough to be different origins; loopback pages are secure contexts and calling the loopback
// API from them involves no private-network checks, so the only thing that differs between
// the two pages' calls is whether the tenant allows their origin.
async function startPageServer(port, which) {
  const page = `<!doctype html><meta charset="utf-8"><title>islet cors: ${which}</title><p>${which}</p>`;
  const server = http.createServer((req, res) => {
    if (new URL(req.url, 'http://x').pathname !== '/') { res.writeHead(req.url === '/favicon.ico' ? 204 : 404); return res.end(); }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page);
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(port || 0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

// The calls, made by the page's own script (page.evaluate runs in the page's main world, so
// every fetch is a cross-origin request from the page's origin, preflight and all).
function callsInPage({ apiBase, token, calls, callMs }) {
  return (async () => {
    const out = {};
    for (const c of calls) {
      const r = { method: c.method, path: c.path, threw: false, error: null, status: null, body: null,
        request_id: null, ratelimit_remaining: null };
      try {
        const headers = { authorization: `Bearer ${token}` };
        const init = { method: c.method, headers, signal: AbortSignal.timeout(callMs) };
        if (c.body !== undefined && c.body !== null) {
          headers['content-type'] = 'application/json';
          init.body = JSON.stringify(c.body);
        }
        const res = await fetch(apiBase + c.path, init);
        r.status = res.status;
        r.request_id = res.headers.get('x-request-id');
        r.ratelimit_remaining = res.headers.get('x-ratelimit-remaining');
        const text = await res.text();
        try { r.body = JSON.parse(text); } catch { r.body = text.slice(0, 2000); }
      } catch (e) {
        r.threw = true;
        r.error = `${e.name}: ${e.message}`;
      }
      out[c.name] = r;
    }
    return out;
  })();
}

async function main() {
  const cfg = JSON.parse(fs.readFileSync(0, 'utf8'));
  for (const k of ['api_base', 'token']) if (!cfg[k]) throw new Error(`config: missing ${k}`);
  const allowedCalls = cfg.allowed_calls || [];
  const otherCalls = cfg.other_calls || [];
  result.api_base = cfg.api_base;

  let allowedServer, otherServer, browser;
  const pending = []; // async per-request bookkeeping, settled before output
  try {
    ({ server: allowedServer, origin: result.allowed_origin } = await startPageServer(cfg.allowed_port, 'allowed'));
    ({ server: otherServer, origin: result.other_origin } = await startPageServer(cfg.other_port, 'other'));
    if (result.allowed_origin === result.other_origin) throw new Error('config: the two origins are the same');
    log('pages at', result.allowed_origin, 'and', result.other_origin);

    browser = await launchChromium();
    result.chromium_version = browser.version();
    log('chromium', result.chromium_version);

    // Each page in its own context: nothing (preflight cache, storage) is shared between them.
    const visit = async (which, origin, calls) => {
      const context = await browser.newContext();
      context.on('request', (r) => {
        const entry = { page: which, url: r.url(), method: r.method(), headers: r.headers(),
          post_data: r.postData(), status: null, failure: null };
        result.requests.push(entry);
        // The raw headers (what went on the wire) when Chromium reports them.
        pending.push(within(3000, 'request headers', () => r.allHeaders())
          .then((h) => { entry.headers = h; }, () => {}));
        pending.push(within(3000, 'response', () => r.response())
          .then((res) => { if (res) entry.status = res.status(); }, () => {}));
      });
      context.on('requestfailed', (r) => {
        const e = result.requests.find((x) => x.page === which && x.url === r.url() && x.status === null && x.failure === null);
        if (e) e.failure = r.failure()?.errorText ?? 'failed';
      });
      const page = await context.newPage();
      page.on('console', (m) => {
        result.console.push({ page: which, type: m.type(), text: m.text() });
        log(`${which} console[${m.type()}] ${m.text()}`);
      });
      page.on('pageerror', (e) => result.errors.push(`${which} pageerror: ${e.message}`));
      // CDP tells why a load failed (Playwright only gives the net error): a CORS refusal
      // carries corsErrorStatus, a network failure does not.
      const urls = new Map();
      try {
        const cdp = await context.newCDPSession(page);
        cdp.on('Network.requestWillBeSent', (e) => urls.set(e.requestId, e.request.url));
        cdp.on('Network.loadingFailed', (e) => result.load_failures.push({
          page: which,
          url: urls.get(e.requestId) ?? null,
          error_text: e.errorText,
          cors_error: e.corsErrorStatus?.corsError ?? null,
          blocked_reason: e.blockedReason ?? null,
        }));
        await cdp.send('Network.enable');
      } catch (e) {
        result.errors.push(`${which}: CDP Network.enable failed: ${e.message}`);
      }
      await page.goto(origin + '/', { waitUntil: 'domcontentloaded', timeout: 10_000 });
      const seen = await within(CALL_MS * Math.max(calls.length, 1) + 5000, `${which} calls`, () =>
        page.evaluate(callsInPage, { apiBase: cfg.api_base, token: cfg.token, calls, callMs: CALL_MS }));
      await sleep(200); // let the last failure and console events arrive
      await Promise.allSettled(pending); // before the context (and its requests) goes away
      await context.close();
      return seen;
    };
    result.allowed = await visit('allowed', result.allowed_origin, allowedCalls);
    result.other = await visit('other', result.other_origin, otherCalls);
    await Promise.allSettled(pending);
  } finally {
    await browser?.close().catch((e) => log('browser close:', e.message));
    allowedServer?.close();
    otherServer?.close();
  }
}

runHarness('harness', result, main);
