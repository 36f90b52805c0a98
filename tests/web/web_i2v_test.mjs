// The web page of `cogvideox serve` with an image-to-video model (make-model --preset tiny-i2v), in headless
// Chromium (Debian's /usr/bin/chromium driven by playwright-core), against the real server tests/cli_web.sh starts:
//  - a key-only project connects; Tool/Detail lists inputImage, so the page shows an image picker (accept image/*)
//    above the prompt, and leaves width and height empty (the server takes the image's size);
//  - Generate without a picture: an error under the picker, nothing sent;
//  - a file that is not a picture: the server's error (Request parameter [inputImage] ...) under the picker;
//  - the test picks a PNG on the page: Run goes as multipart/form-data with the file part inputImage, the task runs
//    and the finished <video> reaches readyState >= 2 at the image's size.
// Environment: CVX_WEB_URL, CVX_WEB_KO_KEY, CVX_WEB_IMAGE (an 80x48 PNG), CVX_WEB_BAD_IMAGE (not a picture),
// CVX_WEB_SHOT (screenshot path), CVX_CHROMIUM (default /usr/bin/chromium). Exit status 0 = every check passed.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, reporter, watchdog as startWatchdog } from './harness.mjs';

const BASE = process.env.CVX_WEB_URL;
const KO_KEY = process.env.CVX_WEB_KO_KEY;
const IMAGE = process.env.CVX_WEB_IMAGE;
const BAD_IMAGE = process.env.CVX_WEB_BAD_IMAGE;
const SHOT = process.env.CVX_WEB_SHOT || join(tmpdir(), 'cvx-web-i2v.png');
if (!BASE || !KO_KEY || !IMAGE || !BAD_IMAGE) {
  console.error('usage: CVX_WEB_URL=... CVX_WEB_KO_KEY=... CVX_WEB_IMAGE=... CVX_WEB_BAD_IMAGE=... node web_i2v_test.mjs');
  process.exit(2);
}
const report = reporter('i2v');
const { ok, bad, check } = report;
const watchdog = startWatchdog('the i2v browser test', 90);

const { context, close: closeBrowser } = await launchBrowser('cvx-web-i2v');
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(20000);
const pageErrors = [];
const runs = []; // the Run requests the page sent: their Content-Type
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (m) => { if (m.type() === 'error') console.log(`  (page console error: ${m.text()})`); });
page.on('request', (r) => {
  if (r.method() === 'POST' && /\/v1\/Run\//.test(r.url()))
    runs.push({ type: r.headers()['content-type'] || '' });
});

try {
  await page.goto(BASE + '/', { waitUntil: 'load' });
  check(await page.$eval('#inputImage-row', (e) => e.hidden), 'before connecting: no image picker');
  await page.fill('#apikey', KO_KEY);
  await page.click('#cred-save');
  await page.waitForFunction(() => /Connected/.test(document.getElementById('cred-status').textContent));
  const picker = await page.evaluate(() => {
    const row = document.getElementById('inputImage-row'), el = document.getElementById('inputImage');
    return { hidden: row.hidden, visible: row.offsetParent !== null, type: el.type, accept: el.accept,
             hint: document.getElementById('inputImage-hint').textContent, width: document.getElementById('width').value,
             height: document.getElementById('height').value,
             beforePrompt: !!(row.compareDocumentPosition(document.getElementById('prompt')) & Node.DOCUMENT_POSITION_FOLLOWING) };
  });
  check(!picker.hidden && picker.visible && picker.type === 'file' && picker.accept === 'image/*' && picker.beforePrompt &&
        /At most 10 MiB/.test(picker.hint) && picker.width === '' && picker.height === '',
        `Tool/Detail lists inputImage: an image picker (accept ${picker.accept}) above the prompt, width/height empty`,
        JSON.stringify(picker));

  // no picture: the page says so under the picker and sends nothing
  await page.fill('#prompt', 'the fox runs');
  await page.fill('#steps', '2');
  await page.click('#submit');
  await page.waitForSelector('#inputImage-error:not([hidden])');
  const none = await page.textContent('#inputImage-error');
  check(/Choose an image/.test(none) && runs.length === 0, `no picture: "${none}", nothing sent`);

  // not a picture: the server's error contract, shown under the picker
  await page.setInputFiles('#inputImage', BAD_IMAGE);
  await page.click('#submit');
  await page.waitForFunction(() => /Request parameter \[inputImage\]/.test(document.getElementById('inputImage-error').textContent));
  const badMsg = await page.textContent('#inputImage-error');
  check(/is not an image that can be decoded/.test(badMsg) && runs.length === 1,
        `not a picture: the server's error under the picker: "${badMsg.slice(0, 120)}"`);

  // the picture: multipart Run, the task runs to a playing video of the image's size
  await page.setInputFiles('#inputImage', IMAGE);
  await page.click('#submit');
  await page.waitForFunction(() => {
    const v = document.getElementById('video');
    return v.getAttribute('src') && v.readyState >= 2;
  }, null, { timeout: 60000 });
  const media = await page.evaluate(() => {
    const v = document.getElementById('video');
    return { src: v.currentSrc, readyState: v.readyState, w: v.videoWidth, h: v.videoHeight,
             error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
             imageError: document.getElementById('inputImage-error').hidden };
  });
  // (Chromium does not hand a request's file parts to the test: what the server received is in the task's parameters)
  const run = runs[runs.length - 1] || { type: '' };
  const list = await (await fetch(BASE + '/v1/Task/List', {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'x-api-key': KO_KEY },
    body: JSON.stringify({ limit: 1, order: 'DESC' }), signal: AbortSignal.timeout(10000) })).json();
  const params = (list.tasklist && list.tasklist[0] && list.tasklist[0].parameters) || {};
  check(runs.length === 2 && /^multipart\/form-data; boundary=/.test(run.type) && params.inputImage === 'first.png' &&
        params.prompt === 'the fox runs' && params.width === undefined,
        'Run went as multipart/form-data: the picked first.png as the file part inputImage, the prompt as a text part, no width',
        `${run.type} ${JSON.stringify(params)}`);
  check(media.readyState >= 2 && media.w === 80 && media.h === 48 && !media.error && media.imageError,
        `the task finished: the <video> plays the output at the image's size (${media.w}x${media.h}): ${media.src}`,
        JSON.stringify(media));
  await page.screenshot({ path: SHOT, fullPage: true });
  check(pageErrors.length === 0, 'no script errors', pageErrors.join('; '));
} catch (e) {
  bad(`exception: ${e.stack || e}`);
} finally {
  clearTimeout(watchdog);
  await closeBrowser();
}
console.log(report.fails ? `web_i2v_test: ${report.fails} FAILED` : 'web_i2v_test: all checks passed');
process.exit(report.fails ? 1 : 0);
