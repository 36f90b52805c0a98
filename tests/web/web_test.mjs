// The web page of `cogvideox serve` in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core),
// against the real server that tests/cli_web.sh starts on 127.0.0.1 with the tiny model:
//  - the page loads from the binary with nothing fetched from outside the server; no script errors;
//  - its HMAC-SHA256 (WebCrypto, and the fallback for non-secure contexts) equals Node's;
//  - a wrong secret gives a clear authentication error and keeps the form disabled;
//  - signature project: key + secret → Tool/Detail fills the fields (defaults and ranges); the credentials are in
//    sessionStorage only; a prompt with 5 steps is submitted; the <progress> bar advances step by step from the
//    WebSocket; the finished <video> reaches readyState >= 2 with the output URL; Recent tasks lists the task;
//    "Stop this task" cancels a queued task;
//    a reload of the tab restores the credentials;
//  - "Show" in Recent tasks follows a task again; Forget clears the credentials; a key-only project runs a task to
//    a playing video as well; with the socket refused, the page polls Task/Detail to the end;
//  - errors under their field (checked in the browser by Tool/Detail's rules; the server's too), the first screen says how
//    to get a key and marks nothing invalid, Random seed, Download named after prompt and seed, Reuse, Ctrl+Enter,
//    the served model in the header, the queue position while waiting, thumbnails (the preview) in Recent tasks,
//    scheduler and dynamic CFG controls, Kill's answer arriving after the socket's task_cancel,
//    no horizontal overflow at 390 px (screenshots at 1280 and 390 px: CVX_WEB_SHOT with -1280 / -390);
//  - under a name for 127.0.0.1 that is not localhost (not a secure context: no crypto.subtle), the page signs with
//    its own SHA-256 and a task runs to a playing video.
// To be sure the page's socket is attached before its task starts (a tiny-model step takes milliseconds), the test
// first keeps the worker busy with a long task of another project and kills it once the page shows its task queued.
// Environment: CVX_WEB_URL, CVX_WEB_KEY, CVX_WEB_SECRET, CVX_WEB_KO_KEY, CVX_WEB_SHOT (screenshot path),
// CVX_CHROMIUM (default /usr/bin/chromium). Exit status 0 = every check passed.
import { createHmac } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, reporter, watchdog as startWatchdog } from './harness.mjs';

const BASE = process.env.CVX_WEB_URL;
const KEY = process.env.CVX_WEB_KEY;
const SECRET = process.env.CVX_WEB_SECRET;
const KO_KEY = process.env.CVX_WEB_KO_KEY;
const SHOT = process.env.CVX_WEB_SHOT || join(tmpdir(), 'cvx-web.png');
if (!BASE || !KEY || !SECRET || !KO_KEY) {
  console.error('usage: CVX_WEB_URL=... CVX_WEB_KEY=... CVX_WEB_SECRET=... CVX_WEB_KO_KEY=... node web_test.mjs');
  process.exit(2);
}
const INSECURE_HOST = 'cvx-insecure.test';
const report = reporter('');
const { ok, bad, check } = report;

// Everything is bounded: the whole run, and each wait below.
const watchdog = startWatchdog('the browser test', 150);

async function apiKeyOnly(path, body) {
  const r = await fetch(BASE + path, { method: 'POST', headers: { 'Content-Type': 'application/json', 'x-api-key': KO_KEY },
                                       body: JSON.stringify(body), signal: AbortSignal.timeout(10000) });
  return r.json();
}

// a name for 127.0.0.1 that is not "localhost": a page there is not a secure context (no WebCrypto)
const { context, close: closeBrowser } = await launchBrowser('cvx-web', [`--host-resolver-rules=MAP ${INSECURE_HOST} 127.0.0.1`]);
ok(`chromium ${context.browser() ? context.browser().version() : ''} started (fresh user data dir)`);

const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(20000);
const base = new URL(BASE);
const outside = [];
const pageErrors = [];
const wsFrames = [];
page.on('request', (r) => {
  const u = new URL(r.url());
  if (u.protocol !== 'data:' && u.host !== base.host && u.host !== `${INSECURE_HOST}:${base.port}`) outside.push(r.url());
});
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') console.log(`  (page console error: ${m.text()})`); });
page.on('websocket', (ws) => {
  if (new URL(ws.url()).host !== base.host) outside.push(ws.url());
  ws.on('framereceived', (f) => { try { wsFrames.push(JSON.parse(String(f.payload))); } catch (e) { /* binary */ } });
});

try {
  // ---- the page itself ----
  const resp = await page.goto(BASE + '/', { waitUntil: 'load' });
  check(resp && resp.status() === 200 && /text\/html/.test(resp.headers()['content-type'] || ''),
        'GET / serves the page (text/html)', resp && `${resp.status()} ${resp.headers()['content-type']}`);
  check((await page.title()).includes('CogVideoX'), `title "${await page.title()}"`);
  const labels = await page.evaluate(() => ['apikey', 'apisecret', 'prompt', 'steps', 'scale', 'seed', 'progress']
    .filter((id) => !document.querySelector(`label[for="${id}"]`)));
  check(labels.length === 0, 'every field has a <label>', labels.join(', '));
  // The first screen explains itself: how to get a key, and no field marked invalid before anything is typed.
  const first = await page.evaluate(() => {
    const b = (id) => getComputedStyle(document.getElementById(id)).borderTopColor;
    return { hint: document.getElementById('run-hint').hidden ? '' : document.getElementById('run-hint').textContent,
             prompt: b('prompt'), seed: b('seed'), apikey: b('apikey'),
             invalid: document.querySelectorAll('[aria-invalid="true"]').length };
  });
  check(/cogvideox keys create/.test(first.hint) && first.prompt === first.apikey && first.seed === first.apikey &&
        first.invalid === 0, 'first screen: says how to get a key (cogvideox keys create), no field shown invalid',
        JSON.stringify(first));

  // ---- signatures: WebCrypto and the fallback against Node ----
  const vectors = [['k', 'secret1732000000000'], ['K'.repeat(100), 'x'.repeat(200)], ['key', ''], [KEY, SECRET + '1']];
  const sig = await page.evaluate(async (v) => Promise.all(v.map(async ([k, m]) =>
    [await window.cogvideox.hmacHex(k, m), await window.cogvideox.hmacHex(k, m, true), window.isSecureContext])), vectors);
  const want = vectors.map(([k, m]) => createHmac('sha256', k).update(m).digest('hex'));
  check(sig.every((s, i) => s[0] === want[i] && s[1] === want[i]),
        `page HMAC-SHA256 (WebCrypto, secure context: ${sig[0][2]}; and the JS fallback) = Node's for ${vectors.length} vectors`,
        JSON.stringify({ sig, want }));

  // ---- a wrong secret ----
  await page.fill('#apikey', KEY);
  await page.fill('#apisecret', SECRET.replace(/.$/, (c) => (c === 'a' ? 'b' : 'a')));
  await page.click('#cred-save');
  await page.waitForSelector('#error:not([hidden])');
  const authErr = await page.textContent('#error');
  check(/Authentication failed: Project authorization is not valid/.test(authErr) &&
        await page.$eval('#run-fields', (f) => f.disabled) &&
        await page.evaluate(() => sessionStorage.length === 0),
        `wrong secret: "${authErr}", form stays disabled, nothing stored`);

  // ---- the signature project ----
  await page.fill('#apisecret', SECRET);
  await page.click('#cred-save');
  await page.waitForFunction(() => /Connected/.test(document.getElementById('cred-status').textContent));
  const stored = await page.evaluate(() => ({ session: Object.keys(sessionStorage).map((k) => [k, sessionStorage.getItem(k)]),
                                              local: localStorage.length, cookie: document.cookie,
                                              error: document.getElementById('error').hidden }));
  check(await page.$eval('#inputImage-row', (e) => e.hidden), 'a text-to-video model: no image picker');
  check(stored.session.length === 1 && stored.session[0][1].includes(KEY) && stored.session[0][1].includes(SECRET) &&
        stored.local === 0 && stored.cookie === '' && stored.error,
        'credentials accepted; kept in sessionStorage only (no localStorage, no cookie), the error is gone',
        JSON.stringify(stored));
  const fields = await page.evaluate(() => Object.fromEntries(['steps', 'scale', 'seed', 'numFrames', 'width']
    .map((id) => { const e = document.getElementById(id); return [id, { v: e.value, min: e.min, max: e.max, step: e.step }]; })));
  check(fields.steps.min === '1' && Number(fields.steps.max) >= 200 && fields.steps.v !== '' && fields.scale.v !== '' &&
        fields.seed.v !== '' && fields.numFrames.v !== '' && fields.width.v !== '',
        `Tool/Detail filled the fields: ${JSON.stringify(fields)}`);
  await page.waitForFunction(() => /No tasks yet|tasks/.test(document.getElementById('recent-status').textContent));
  // The header names the model really served (Tool/Detail's model: the folder and its weights), not only the slug.
  const served = await page.evaluate(() => ({ name: document.getElementById('model-name').textContent,
                                              weights: document.getElementById('model-weights').textContent,
                                              hidden: document.getElementById('model-weights').hidden }));
  check(/^tiny \(as THUDM\/CogVideoX-2b\)$/.test(served.name) && !served.hidden &&
        /^Test model: random weights from cogvideox make-model --preset tiny \(seed 3\)/.test(served.weights),
        `the header names the served model: "${served.name}", "${served.weights}"`, JSON.stringify(served));

  // Errors: a value out of the range Tool/Detail gave is refused on the page; the server's own validation errors
  // are shown as they come.
  // Errors appear under their field (the banner may be out of view), checked in the browser by Tool/Detail's rules.
  const fieldErr = async (id) => page.evaluate((f) => ({
    text: document.getElementById(`${f}-error`).hidden ? '' : document.getElementById(`${f}-error`).textContent,
    invalid: document.getElementById(f).getAttribute('aria-invalid'), focused: document.activeElement.id,
    banner: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent }), id);
  await page.fill('#prompt', 'a red fox');
  await page.fill('#steps', '0');
  await page.click('#submit');
  await page.waitForSelector('#steps-error:not([hidden])');
  let fe = await fieldErr('steps');
  check(/Steps must be between 1 and 1000/.test(fe.text) && fe.invalid === 'true' && fe.focused === 'steps' && !fe.banner,
        `steps 0: at the field "${fe.text}"`, JSON.stringify(fe));
  await page.fill('#steps', '2');
  await page.click('summary');
  await page.fill('#width', '24');
  await page.click('#submit');
  await page.waitForSelector('#width-error:not([hidden])');
  fe = await fieldErr('width');
  check(/Width must be a multiple of 16 \(16 or 32\)/.test(fe.text) && fe.focused === 'width' && !fe.banner,
        `width 24: at the field "${fe.text}"`, JSON.stringify(fe));
  await page.fill('#width', '');
  await page.fill('#numFrames', '10');
  await page.click('#submit');
  await page.waitForSelector('#numFrames-error:not([hidden])');
  fe = await fieldErr('numFrames');
  check(/Frames must be 4N\+1: 5, 9, 13, …/.test(fe.text), `frames 10: "${fe.text}"`, JSON.stringify(fe));
  await page.fill('#numFrames', '');
  check(await page.$eval('#numFrames-error', (e) => e.hidden), 'a corrected field loses its error');
  const seedBefore = await page.inputValue('#seed');
  await page.click('#seed-random');
  const seedAfter = await page.inputValue('#seed');
  check(/^[0-9]+$/.test(seedAfter) && seedAfter !== seedBefore, `the Random button draws a seed (${seedAfter})`);
  await page.click('summary');

  // Keep the worker busy (another project, a long task) so that the page's task waits in the queue.
  const blocker = await apiKeyOnly('/v1/Run/THUDM/CogVideoX-2b',
                                   { prompt: 'blocker', steps: 200, numFrames: 49, width: 480, height: 320 });
  check(blocker.result === true, 'a long task of another project occupies the worker', JSON.stringify(blocker));

  // "Stop this task" on a queued task: Task/Kill cancels it. The server publishes task_cancel on the socket before it
  // answers the Kill, so under load the page may get the frame (and finish) long before the answer: the answer is
  // held here until the page says Cancelled, then let through — the page must stay at Cancelled (it once overwrote it
  // with "Stopping…" for good, the flake of cli_web under load).
  await page.fill('#prompt', 'a task stopped while queued');
  await page.fill('#steps', '5');
  await page.click('#submit');
  await page.waitForFunction(() => /Queued/.test(document.getElementById('progress-text').textContent));
  let releaseKill;
  const killHeld = new Promise((resolve) => { releaseKill = resolve; });
  await page.route('**/v1/Task/Kill', async (route) => {
    const answer = await route.fetch();
    await killHeld;
    await route.fulfill({ response: answer });
  });
  await page.click('#kill');
  await page.waitForFunction(() => /^Cancelled/.test(document.getElementById('progress-text').textContent));
  const killAnswered = page.waitForResponse('**/v1/Task/Kill');
  releaseKill();
  await killAnswered;
  await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 300)));
  const afterKill = await page.textContent('#progress-text');
  check(/^Cancelled/.test(afterKill), `Stop this task on a queued task, Kill's answer after the socket's task_cancel: "${afterKill}"`);
  await page.unroute('**/v1/Task/Kill');

  await page.fill('#prompt', 'a red fox running through fresh snow, golden hour');
  await page.fill('#steps', '5');
  await page.fill('#seed', '42');
  // Every value the bar takes, in order (oldValue of each mutation, then the last value).
  await page.evaluate(() => {
    const p = document.getElementById('progress');
    window.__progress = [];
    window.__progressObserver = new MutationObserver((recs) => {
      for (const r of recs) window.__progress.push({ old: r.oldValue });
    });
    window.__progressObserver.observe(p, { attributes: true, attributeFilter: ['value'], attributeOldValue: true });
    // and every text of the status line: the stages after the denoising are named (issue 14, item 2)
    const t = document.getElementById('progress-text');
    window.__texts = [];
    window.__textObserver = new MutationObserver(() => window.__texts.push(t.textContent));
    window.__textObserver.observe(t, { childList: true, characterData: true, subtree: true });
  });
  const framesBefore = wsFrames.length;
  await page.click('#submit');
  // queued behind the running blocker: the page says how many tasks run before it (Task/Detail's queueposition)
  await page.waitForFunction(() => /^Queued: 1 task ahead$/.test(document.getElementById('progress-text').textContent));
  ok(`the page shows its task queued with its position: "${await page.textContent('#progress-text')}" (socket attached)`);
  await page.waitForFunction(() => [...document.querySelectorAll('#recent-body tr')].some((r) => /Queued: 1 task ahead/.test(r.textContent)));
  ok('Recent tasks shows the queued task\'s position too');
  const killed = await apiKeyOnly('/v1/Task/Kill', { tasktoken: blocker.socketaccesstoken });
  check(killed.result === true, 'the long task is killed: the page\'s task starts', JSON.stringify(killed));

  await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return v.getAttribute('src') && v.readyState >= 2;
  }, null, { timeout: 90000 });
  const media = await page.evaluate(() => {
    const v = document.getElementById('video');
    return { src: v.currentSrc, readyState: v.readyState, w: v.videoWidth, h: v.videoHeight, duration: v.duration,
             autoplay: v.autoplay, muted: v.muted, loop: v.loop, controls: v.controls,
             link: document.getElementById('video-link').href, text: document.getElementById('progress-text').textContent,
             taskid: document.getElementById('task-id').textContent };
  });
  check(/^http:\/\/127\.0\.0\.1:\d+\/files\/[A-Za-z0-9]{16,64}\/0\.mp4$/.test(media.src) && media.link === media.src &&
        media.readyState >= 2 && media.w > 0 && media.autoplay && media.muted && media.loop && media.controls,
        `the <video> loaded the output (readyState ${media.readyState}, ${media.w}x${media.h}, ${media.duration.toFixed(2)} s): ${media.src}`,
        JSON.stringify(media));
  check(/^Finished/.test(media.text), `status line "${media.text}"`);
  const dl = await page.evaluate(() => ({ name: document.getElementById('video-download').getAttribute('download'),
                                          href: document.getElementById('video-download').href }));
  check(dl.name === 'a-red-fox-running-through-fresh-snow-golden-hour-seed42.mp4' && dl.href === media.src,
        `Download names the file after the prompt and the seed: ${dl.name}`, JSON.stringify(dl));
  const progress = await page.evaluate(() => {
    const p = document.getElementById('progress');
    for (const r of window.__progressObserver.takeRecords()) window.__progress.push({ old: r.oldValue });
    return { history: window.__progress.map((r) => Number(r.old)).slice(1).concat([p.value]), max: p.max, value: p.value };
  });
  const h = progress.history;
  const monotonic = h.every((v, i) => i === 0 || v >= h[i - 1]);
  const between = new Set(h.filter((v) => v > 0 && v < progress.max));
  check(progress.max === 100 && progress.value === 100 && monotonic && between.size >= 2,
        `the progress bar (% of the whole task) advanced: ${h.join(' → ')} (max ${progress.max})`, JSON.stringify(progress));
  const texts = await page.evaluate(() => window.__texts);
  const decoding = texts.filter((x) => /^Decoding the video/.test(x));
  check(decoding.length >= 1 && texts.some((x) => /^Step 5\/5/.test(x)) &&
        texts.findIndex((x) => /^Decoding/.test(x)) > texts.findIndex((x) => /^Step 5\/5/.test(x)),
        `the status line names the decode after the last step: "${decoding[0]}"`, JSON.stringify(texts));
  const mine = wsFrames.slice(framesBefore);
  const steps = mine.filter((f) => f.type === 'task_output' && f.message && f.message.type === 'progressGenerate');
  const types = [...new Set(mine.map((f) => f.type))];
  check(steps.length >= 2 && types.includes('task_postprocess_end'),
        `the socket delivered ${steps.length} progressGenerate frames (${types.join(', ')})`);

  // Recent tasks lists it with its link.
  const tid = media.taskid.replace('#', '');
  await page.waitForSelector(`#recent-body tr[data-taskid="${tid}"] a`);
  const row = await page.textContent(`#recent-body tr[data-taskid="${tid}"]`);
  const rowLink = await page.getAttribute(`#recent-body tr[data-taskid="${tid}"] a`, 'href');
  check(/Finished/.test(row) && /red fox/.test(row) && /5 steps · .*seed 42/.test(row) && rowLink === media.src,
        `Recent tasks, with the task's parameters: "${row.replace(/\s+/g, ' ').trim()}"`);
  // its thumbnail: the animated WebP preview the server wrote beside the video (previewurl), loaded
  await page.waitForFunction((id) => {
    const img = document.querySelector(`#recent-body tr[data-taskid="${id}"] td.thumb img`);
    return img && img.complete && img.naturalWidth > 0;
  }, tid, { timeout: 20000 });
  const thumb = await page.$eval(`#recent-body tr[data-taskid="${tid}"] td.thumb img`,
                                 (i) => ({ src: i.src, w: i.naturalWidth, h: i.naturalHeight, alt: i.alt }));
  check(/\/files\/[A-Za-z0-9]{16,64}\/preview\.webp$/.test(thumb.src) && thumb.w > 0,
        `Recent tasks shows the task's preview as a thumbnail (${thumb.w}x${thumb.h}): ${thumb.src}`, JSON.stringify(thumb));
  await page.fill('#prompt', 'something else');
  await page.click(`#recent-body tr[data-taskid="${tid}"] button[aria-label^="Reuse"]`);
  const reused = await page.evaluate(() => ({ prompt: document.getElementById('prompt').value,
                                              steps: document.getElementById('steps').value, seed: document.getElementById('seed').value }));
  check(reused.prompt === 'a red fox running through fresh snow, golden hour' && reused.steps === '5' && reused.seed === '42',
        'Reuse puts the task\'s settings back into the form', JSON.stringify(reused));

  // Head request of the video by the page's URL: the server answers with video/mp4.
  const head = await fetch(media.src, { method: 'HEAD', signal: AbortSignal.timeout(10000) });
  check(head.status === 200 && head.headers.get('content-type') === 'video/mp4', `the output is video/mp4 (${head.headers.get('content-length')} bytes)`);

  await page.screenshot({ path: SHOT, fullPage: true });
  ok(`screenshot: ${SHOT}`);
  // Desktop and phone widths: screenshots kept, and no horizontal overflow at 390 px (the page must not widen).
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    const shot = SHOT.replace(/(\.png)?$/, `-${width}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    const w = await page.evaluate(() => ({ doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
                                           inner: window.innerWidth }));
    check(w.doc <= w.inner && w.body <= w.inner, `${width} px: no horizontal overflow (${w.doc} px wide), screenshot ${shot}`,
          JSON.stringify(w));
  }
  await page.setViewportSize({ width: 1000, height: 1400 });

  // "Show" on the row follows that task again: the socket replays its end, the video comes back.
  await page.evaluate(() => { document.getElementById('video').removeAttribute('src'); });
  await page.click(`#recent-body tr[data-taskid="${tid}"] button`);
  await page.waitForFunction((src) => {
    const v = document.getElementById('video');
    return v.currentSrc === src && v.readyState >= 2 && /^Finished/.test(document.getElementById('progress-text').textContent);
  }, media.src, { timeout: 20000 });
  ok(`Show on task #${tid}: the video plays again`);

  // A reload of the tab restores the credentials from sessionStorage.
  await page.reload({ waitUntil: 'load' });
  await page.waitForFunction(() => /Connected/.test(document.getElementById('cred-status').textContent));
  check(await page.inputValue('#apikey') === KEY, 'reload: the credentials come back from sessionStorage');

  // ---- Forget, then a key-only project ----
  await page.click('#cred-forget');
  const forgot = await page.evaluate(() => ({ n: sessionStorage.length, dis: document.getElementById('run-fields').disabled,
                                              rows: document.getElementById('recent-body').children.length }));
  check(forgot.n === 0 && forgot.dis && forgot.rows === 0, 'Forget clears sessionStorage, the form and the task list', JSON.stringify(forgot));
  await page.fill('#apikey', KO_KEY);
  await page.fill('#apisecret', '');
  await page.click('#cred-save');
  await page.waitForFunction(() => /Connected \(key-only/.test(document.getElementById('cred-status').textContent));
  await page.fill('#prompt', 'a lighthouse in a storm');
  await page.fill('#steps', '2');
  // the step cache (More options): Tool/Detail's default is off; TeaCache 0.2 is sent as the cache input
  await page.click('summary');
  const cacheUi = await page.evaluate(() => ({ v: document.getElementById('cache').value,
                                               opts: [...document.getElementById('cache').options].map((o) => o.value),
                                               custom: document.getElementById('cache-custom-row').hidden,
                                               title: document.getElementById('cache').title }));
  check(cacheUi.v === 'off' && cacheUi.opts.join() === 'off,teacache:0.1,teacache:0.2,custom' && cacheUi.custom &&
        /TeaCache/.test(cacheUi.title), `the step cache select: ${cacheUi.opts.join(', ')} (default ${cacheUi.v})`,
        JSON.stringify(cacheUi));
  await page.selectOption('#cache', 'custom');
  check(await page.$eval('#cache-custom-row', (r) => !r.hidden), 'Custom… shows the text field');
  await page.fill('#cacheCustom', 'teacache:0.1:1,2');
  await page.click('#submit');
  await page.waitForFunction(() => /not started/.test(document.getElementById('error').textContent));
  const cacheErr = await page.textContent('#error');
  check(/Request parameter \[cache\] must be off or teacache.*needs 5 coefficients/.test(cacheErr), `a bad custom cache: "${cacheErr}"`);
  fe = await fieldErr('cacheCustom');
  check(/^Request parameter \[cache\] must be off or teacache/.test(fe.text) && fe.invalid === 'true',
        `the server's message is shown under its field too: "${fe.text.slice(0, 80)}…"`, JSON.stringify(fe));
  await page.selectOption('#cache', 'teacache:0.2');
  // the scheduler and dynamic CFG controls (API inputs): Tool/Detail names the model's scheduler as the default
  const schedUi = await page.evaluate(() => ({ first: document.getElementById('scheduler').options[0].textContent,
                                               opts: [...document.getElementById('scheduler').options].map((o) => o.value),
                                               hint: document.getElementById('scheduler-hint').textContent,
                                               dyn: document.getElementById('dynamicCfg').value }));
  check(/The model's default \(DDIM\)/.test(schedUi.first) && schedUi.opts.join() === ',ddim,dpm' && schedUi.dyn === 'false' &&
        /ddim/.test(schedUi.hint), `scheduler and dynamic CFG controls: "${schedUi.first}", ${schedUi.opts.join('|')}`,
        JSON.stringify(schedUi));
  await page.selectOption('#scheduler', 'dpm');
  await page.selectOption('#dynamicCfg', 'true');
  await page.click('#submit');
  await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return v.getAttribute('src') && v.readyState >= 2 && /^Finished/.test(document.getElementById('progress-text').textContent);
  }, null, { timeout: 60000 });
  const ko = await page.evaluate(() => ({ src: document.getElementById('video').currentSrc, p: document.getElementById('progress').value,
                                          max: document.getElementById('progress').max }));
  check(/\/files\/[A-Za-z0-9]+\/0\.mp4$/.test(ko.src) && ko.p === 100 && ko.max === 100,
        `key-only project: its task played too (${ko.src}, progress ${ko.p}/${ko.max})`);
  // its list holds its own tasks (the killed long one and this one), not the signature project's
  await page.waitForFunction(() => document.querySelectorAll('#recent-body tr').length >= 2);
  const koRows = await page.$$eval('#recent-body tr', (rs) => rs.map((r) => r.textContent.replace(/\s+/g, ' ').trim()));
  check(koRows.some((r) => /Cancelled/.test(r) && /blocker/.test(r)) && !koRows.some((r) => /red fox/.test(r)),
        `key-only Recent tasks: ${koRows.length} rows, the killed task shown Cancelled, none of the other project`);

  const koList = await apiKeyOnly('/v1/Task/List', { type: 'model', sort: 'id', order: 'DESC', start: '0', limit: '10' });
  const lighthouse = (koList.tasklist || []).find((t) => t.parameters && t.parameters.prompt === 'a lighthouse in a storm');
  check(lighthouse && lighthouse.parameters.cache === 'teacache:0.2' && /cache teacache:0\.2/.test(lighthouse.debugoutput),
        'the page sent cache teacache:0.2 and the task ran with it', JSON.stringify(lighthouse || koList).slice(0, 600));
  check(lighthouse && lighthouse.parameters.scheduler === 'dpm' && lighthouse.parameters.dynamicCfg === true &&
        /scheduler dpm, dynamic CFG/.test(lighthouse.debugoutput),
        'the page sent scheduler dpm and dynamicCfg true, and the task ran with them', JSON.stringify(lighthouse || koList).slice(0, 600));
  await page.selectOption('#cache', 'off');

  // Without the socket (a proxy that refuses upgrades), the page polls Task/Detail instead.
  await page.routeWebSocket(/\/v1\/socket/, (ws) => ws.close());
  await page.fill('#prompt', 'a paper boat on a river');
  await page.fill('#steps', '3');
  await page.press('#prompt', 'Control+Enter'); /* the keyboard shortcut generates */
  await page.waitForFunction((prev) => {
    const v = document.getElementById('video');
    return v.getAttribute('src') && v.currentSrc !== prev && v.readyState >= 2 &&
      /^Finished/.test(document.getElementById('progress-text').textContent);
  }, ko.src, { timeout: 60000 });
  const polled = await page.evaluate(() => ({ src: document.getElementById('video').currentSrc, p: document.getElementById('progress').value,
                                              max: document.getElementById('progress').max }));
  check(polled.src !== ko.src && /\/0\.mp4$/.test(polled.src) && polled.p === 100 && polled.max === 100,
        `socket refused: the page polled Task/Detail to the end (${polled.src}, progress ${polled.p}/${polled.max})`);
  const boatList = await apiKeyOnly('/v1/Task/List', { type: 'model', sort: 'id', order: 'DESC', start: '0', limit: '10' });
  const boat = (boatList.tasklist || []).find((t) => t.parameters && t.parameters.prompt === 'a paper boat on a river');
  check(boat && !('cache' in boat.parameters) && /cache off/.test(boat.debugoutput),
        'with the cache Off the page sends no cache input (the task ran without)', JSON.stringify(boat || boatList).slice(0, 600));

  // Plain http under another name than localhost: no WebCrypto, the page signs with its own SHA-256.
  const page2 = await context.newPage();
  page2.on('pageerror', (e) => pageErrors.push(String(e)));
  page2.on('request', (r) => { if (new URL(r.url()).hostname !== INSECURE_HOST) outside.push(r.url()); });
  await page2.goto(`http://${INSECURE_HOST}:${base.port}/`, { waitUntil: 'load' });
  const insecure = await page2.evaluate(() => ({ secure: window.isSecureContext, subtle: !!(window.crypto && window.crypto.subtle),
                                                 stored: sessionStorage.length }));
  await page2.fill('#apikey', KEY);
  await page2.fill('#apisecret', SECRET);
  await page2.click('#cred-save');
  await page2.waitForFunction(() => /Connected \(requests signed/.test(document.getElementById('cred-status').textContent));
  await page2.fill('#prompt', 'a kite over the dunes');
  await page2.fill('#steps', '2');
  await page2.click('#submit');
  await page2.waitForFunction(() => {
    const v = document.getElementById('video');
    return v.getAttribute('src') && v.readyState >= 2 && /^Finished/.test(document.getElementById('progress-text').textContent);
  }, null, { timeout: 60000 });
  const src2 = await page2.evaluate(() => document.getElementById('video').currentSrc);
  check(!insecure.secure && !insecure.subtle && insecure.stored === 0 && src2.startsWith(`http://${INSECURE_HOST}:${base.port}/files/`),
        `not a secure context (crypto.subtle absent, a new tab starts without credentials): signed with the JS SHA-256, the task played (${src2})`,
        JSON.stringify({ insecure, src2 }));
  await page2.close();

  check(outside.length === 0, 'nothing was requested outside the server', outside.join(', '));
  check(pageErrors.length === 0, 'no script errors on the page', pageErrors.join(' | '));
} catch (e) {
  bad(`${e.message.split('\n')[0]}`);
  try {
    await page.screenshot({ path: SHOT, fullPage: true });
    console.log(`  state: error "${await page.textContent('#error')}", status "${await page.textContent('#progress-text')}"; screenshot ${SHOT}`);
  } catch (e2) { /* the page is gone */ }
} finally {
  await closeBrowser();
  clearTimeout(watchdog);
}
console.log(report.fails ? `${report.fails} browser check(s) FAILED` : 'all browser checks passed');
process.exit(report.fails ? 1 : 0);
