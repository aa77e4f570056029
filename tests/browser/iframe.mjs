#!/usr/bin/env node
// Browser harness for Islet's private preview links embedded in a third-party iframe.
//
//   node tests/browser/iframe.mjs < config.json      (install deps first: tests/browser/install.sh)
//
// Input (stdin, JSON):
//   preview_url          https://<port>-<sbx>.preview.localhost:P/?mt=mp_...  (one-time token link)
//   expired_url          same shape, expired token: proxy renders a page that postMessages
//                        {type: "preview.session_expired"} to window.parent
//   ws_path              WebSocket echo path served by the app behind the preview (default "/ws")
//   expect_text          text the preview body must contain
//   host_resolver_rules  optional, passed as --host-resolver-rules
//   parent_scheme        optional, "https" (default) or "http": scheme of the harness's parent page
//   expired_fresh_context optional bool (default false): load the expired link in a new browser
//                        context (no preview cookie) instead of the same page that holds one
//
// Output: ONE JSON object on stdout (logs go to stderr). Exit 0 when the scenario could be run,
// whatever it observed: the caller asserts on the JSON. Non-zero on internal crash or timeout
// (a partial JSON object is still printed when possible).
//
// Env: CHROMIUM_PATH overrides the browser binary; HARNESS_TIMEOUT_MS the overall deadline (50 s);
// EXTRA_CHROMIUM_ARGS adds space-separated flags (e.g. --test-third-party-cookie-phaseout).
import { launchChromium, runHarness, sleep, within } from './common.mjs';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

const log = (...a) => console.error('[iframe.mjs]', ...a);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'islet-iframe-')); // parent's TLS key + cert
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

const result = {
  chromium_version: null,
  parent_url: null,
  rendered: false,
  frame_url: null,
  frame_text: null,
  preview_messages: [],      // message events the parent got while showing the preview
  ws_url: null,
  ws_sent: null,
  ws_echo: null,
  ws_error: null,
  cookies: [],               // cookies for the preview host; values never printed, only value_length
  expired_frame_url: null,
  expired_frame_text: null,
  expired_messages: [],      // event.data of every message the second parent page received
  expired_message_origins: [],
  requested_urls: [],        // every HTTP(S) request in order (incl. redirect hops), plus ws(s) URLs
  requests: [],              // {url, resource_type, status, cookie_sent, failure} per HTTP(S) request
  errors: [],
  duration_ms: null,
};

// Poll the frame's body text until `done(text)`; tolerates the frame being mid-navigation.
async function pollFrameText(frame, done, ms) {
  const deadline = Date.now() + ms;
  let text = '';
  for (;;) {
    try {
      text = await within(2000, 'frame text', () =>
        frame.evaluate(() => (document.body ? document.body.innerText : '')));
      if (done(text)) return { ok: true, text };
    } catch { /* context destroyed by a navigation, or not ready yet: retry */ }
    if (Date.now() >= deadline) return { ok: false, text };
    await sleep(200);
  }
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const parentPage = (src) => `<!doctype html><meta charset="utf-8"><title>islet preview host</title>
<script>
  // Registered before the iframe exists, so no early message is missed.
  window.__messages = [];
  addEventListener('message', (e) => { window.__messages.push({ origin: e.origin, data: e.data }); });
</script>
<iframe id="preview" src="${esc(src)}" width="1000" height="700"></iframe>`;

// ---- parent page server ----------------------------------------------------------------
// The parent must be a *different site* from *.preview.localhost so the iframe is third-party.
// Default: HTTPS on 127.0.0.1 with a throwaway self-signed cert (openssl in a temp dir). That
// mirrors production (an https dashboard embedding an https preview). http://127.0.0.1 is also a
// secure context for Chromium (loopback is "potentially trustworthy"), so parent_scheme:"http"
// works too; it is kept as a knob to compare both.
async function startParentServer(scheme, pages, tmp) {
  const handler = (req, res) => {
    const body = pages[new URL(req.url, 'http://x').pathname];
    if (body === undefined) { res.writeHead(req.url === '/favicon.ico' ? 204 : 404); return res.end(); }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(body);
  };
  let server;
  if (scheme === 'https') {
    const key = path.join(tmp, 'key.pem'), cert = path.join(tmp, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, handler);
  } else {
    server = http.createServer(handler);
  }
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return { server, origin: `${scheme}://127.0.0.1:${server.address().port}` };
}

// Cookies through CDP (Storage.getCookies for this context) because it exposes partitionKey
// {topLevelSite, hasCrossSiteAncestor}; falls back to context.cookies().
async function previewCookies(browser, context, page, previewHost) {
  let raw;
  try {
    const pageSession = await context.newCDPSession(page);
    const { targetInfo } = await pageSession.send('Target.getTargetInfo');
    const browserSession = await browser.newBrowserCDPSession();
    ({ cookies: raw } = await browserSession.send('Storage.getCookies',
      { browserContextId: targetInfo.browserContextId }));
  } catch (e) {
    result.errors.push(`CDP Storage.getCookies failed, using context.cookies(): ${e.message}`);
    raw = (await context.cookies()).map((c) => ({ ...c, partitionKey: c.partitionKey && { topLevelSite: c.partitionKey } }));
  }
  const matches = (d) => { d = d.replace(/^\./, ''); return previewHost === d || previewHost.endsWith('.' + d); };
  return raw.filter((c) => matches(c.domain)).map((c) => ({
    name: c.name,
    domain: c.domain,
    path: c.path,
    secure: c.secure,
    httpOnly: c.httpOnly,
    sameSite: c.sameSite ?? null,          // CDP omits it when the attribute was not set
    session: c.session ?? (c.expires === -1),
    partitioned: Boolean(c.partitionKey) || Boolean(c.partitionKeyOpaque),
    partitionKey: c.partitionKey ?? null,   // e.g. {topLevelSite: "https://127.0.0.1", hasCrossSiteAncestor: true}
    value_length: (c.value ?? '').length,   // never the value: it is a credential
  }));
}

async function main() {
  const cfg = JSON.parse(fs.readFileSync(0, 'utf8'));
  for (const k of ['preview_url', 'expired_url', 'expect_text']) if (!cfg[k]) throw new Error(`config: missing ${k}`);
  const wsPath = cfg.ws_path || '/ws';
  const previewHost = new URL(cfg.preview_url).hostname;
  const scheme = cfg.parent_scheme || 'https';

  let server, browser;
  const pending = []; // async per-request bookkeeping, settled before output
  try {
    ({ server, origin: result.parent_url } = await startParentServer(scheme, {
      '/': parentPage(cfg.preview_url),
      '/expired': parentPage(cfg.expired_url),
    }, tmp));
    log('parent at', result.parent_url);

    const extra = ['--ignore-certificate-errors'];
    if (cfg.host_resolver_rules) extra.push(`--host-resolver-rules=${cfg.host_resolver_rules}`);
    browser = await launchChromium(extra);
    result.chromium_version = browser.version();
    log('chromium', result.chromium_version);

    const newPage = async () => {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      // Every request of every frame (cross-site iframes are out-of-process but still reported
      // on the context). A redirect hop is its own request, so the ?mt= hop and its target both
      // show up. cookie_sent comes from the raw request headers (CDP ExtraInfo), value not kept.
      context.on('request', (r) => {
        result.requested_urls.push(r.url());
        const entry = { url: r.url(), resource_type: r.resourceType(), status: null, cookie_sent: null };
        result.requests.push(entry);
        pending.push(within(3000, 'request headers', () => r.allHeaders())
          .then((h) => { entry.cookie_sent = 'cookie' in h; }, () => {}));
        pending.push(within(3000, 'response', () => r.response()).then((res) => { if (res) entry.status = res.status(); }, () => {}));
      });
      context.on('requestfailed', (r) => {
        const e = result.requests.find((x) => x.url === r.url() && x.status === null);
        if (e) e.failure = r.failure()?.errorText ?? 'failed';
      });
      const page = await context.newPage();
      page.on('websocket', (ws) => {
        result.requested_urls.push(ws.url());
        ws.on('socketerror', (e) => result.errors.push(`websocket ${ws.url()}: ${e}`));
      });
      page.on('console', (m) => log(`console[${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => result.errors.push(`pageerror: ${e.message}`));
      return { context, page };
    };
    const { context, page } = await newPage();

    // --- 1-2. parent page with the preview iframe --------------------------------------
    await page.goto(result.parent_url + '/', { waitUntil: 'domcontentloaded', timeout: 10_000 });
    const frame = await (await page.waitForSelector('#preview', { timeout: 5_000 })).contentFrame();
    const shown = await pollFrameText(frame, (t) => t.includes(cfg.expect_text), 15_000);
    result.rendered = shown.ok;
    result.frame_url = frame.url();
    result.frame_text = shown.text.slice(0, 500);
    if (!shown.ok) result.errors.push(`preview frame never showed expect_text (frame at ${frame.url()})`);

    // --- 3. WebSocket opened by the frame's own document (so it carries the frame's cookie) ---
    result.ws_sent = `ping-${crypto.randomBytes(6).toString('hex')}`;
    if (!result.rendered) result.ws_error = 'skipped: preview frame did not render';
    else try {
      const ws = await within(10_000, 'websocket in frame', () => frame.evaluate(({ wsPath, msg }) =>
        new Promise((resolve) => {
          const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + wsPath;
          const done = (echo, error) => { clearTimeout(timer); try { sock.close(); } catch {} resolve({ url, echo, error }); };
          const timer = setTimeout(() => done(null, 'no echo within 5 s'), 5000);
          let sock;
          try { sock = new WebSocket(url); } catch (e) { return done(null, String(e)); }
          sock.onopen = () => sock.send(msg);
          sock.onmessage = (ev) => done(typeof ev.data === 'string' ? ev.data : '[binary]', null);
          sock.onerror = () => done(null, 'error event (handshake refused or connection failed)');
          sock.onclose = (ev) => done(null, `closed before echo: code=${ev.code} reason=${ev.reason}`);
        }), { wsPath, msg: result.ws_sent }));
      Object.assign(result, { ws_url: ws.url, ws_echo: ws.echo, ws_error: ws.error });
    } catch (e) {
      result.ws_error = e.message;
    }
    result.preview_messages = await page.evaluate(() => window.__messages);

    // --- 4. cookies the browser now holds for the preview host --------------------------
    result.cookies = await within(5_000, 'read cookies', () => previewCookies(browser, context, page, previewHost));

    // --- 5. expired link: the proxy's page must postMessage the parent ---------------------
    // By default the same page (and so the same cookie partition) is reused: the request for
    // the expired link then carries the preview cookie set in step 1 (see requests[].cookie_sent).
    const exp = cfg.expired_fresh_context ? await newPage() : { page };
    await exp.page.goto(result.parent_url + '/expired', { waitUntil: 'domcontentloaded', timeout: 10_000 });
    const deadline = Date.now() + 10_000;
    let msgs = [];
    while (Date.now() < deadline) {
      msgs = await exp.page.evaluate(() => window.__messages);
      if (msgs.length) break;
      await sleep(100);
    }
    await sleep(300); // let a second message, if any, arrive too
    msgs = await exp.page.evaluate(() => window.__messages);
    result.expired_messages = msgs.map((m) => m.data);
    result.expired_message_origins = msgs.map((m) => m.origin);
    if (!msgs.length) result.errors.push('no message event from the expired frame within 10 s');
    const expFrame = await (await exp.page.waitForSelector('#preview', { timeout: 5_000 })).contentFrame();
    const expText = await pollFrameText(expFrame, (t) => t.trim().length > 0, 5_000);
    result.expired_frame_url = expFrame.url();
    result.expired_frame_text = expText.text.slice(0, 500);
    await Promise.allSettled(pending);
  } finally {
    await browser?.close().catch((e) => log('browser close:', e.message));
    server?.close();
  }
}

runHarness('harness', result, main);
