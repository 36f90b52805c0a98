/* The web page of `cogvideox serve` (docs/API.md, ../shared/design/WIRO_API.md).
 *
 * Every API call is a POST with a JSON body and the Wiro headers: x-api-key, and for signature projects x-nonce and
 * x-signature = hex(HMAC-SHA256(key = API key, message = API secret + nonce)). The signature is computed here, in the
 * browser, with WebCrypto; where WebCrypto is unavailable (a page served over plain http from a host other than
 * localhost is not a secure context, so crypto.subtle is undefined) a small SHA-256 of our own computes the same
 * digest. The credentials live in sessionStorage only: they are gone when the tab closes, and are never sent except
 * as the API key header.
 *
 * A submitted task is followed over the WebSocket (/v1/socket: one task_info frame, then the server replays the
 * status and streams one task_output per denoising step); when the socket cannot be used, Task/Detail is polled.
 * The finished task's Task/Detail gives the output URL (built from this request's Host), which the <video> plays.
 * Server text is only ever inserted with textContent. */
'use strict';

(function () {
  const STORE_KEY = 'cogvideox.credentials';
  const REQUEST_TIMEOUT_MS = 30000;
  const POLL_MS = 1000;
  const QUEUE_POLL_MS = 2000;
  const FINAL = new Set(['task_postprocess_end', 'task_cancel']);
  const STATUS_TEXT = {
    task_queue: 'Queued',
    task_accept: 'Accepted by the worker',
    task_preprocess_start: 'Preparing',
    task_preprocess_end: 'Prepared',
    task_assign: 'Assigned',
    task_start: 'Started',
    task_output: 'Generating',
    task_end: 'Denoising finished',
    task_postprocess_start: 'Writing the video',
    task_postprocess_end: 'Finished',
    task_cancel: 'Cancelled',
    task_error: 'Failed',
  };

  const $ = (id) => document.getElementById(id);
  const enc = new TextEncoder();

  /* ---- SHA-256 / HMAC-SHA256 (FIPS 180-4, RFC 2104) for contexts without WebCrypto ---- */
  const K256 = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));

  function sha256(bytes) {
    const nblocks = Math.ceil((bytes.length + 9) / 64);
    const buf = new Uint8Array(nblocks * 64);
    buf.set(bytes);
    buf[bytes.length] = 0x80;
    const dv = new DataView(buf.buffer);
    const bits = bytes.length * 8;
    dv.setUint32(buf.length - 8, Math.floor(bits / 0x100000000));
    dv.setUint32(buf.length - 4, bits >>> 0);
    const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    const w = new Uint32Array(64);
    for (let off = 0; off < buf.length; off += 64) {
      for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + 4 * i);
      for (let i = 16; i < 64; i++) {
        const a = w[i - 15], b = w[i - 2];
        const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
        const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
      for (let i = 0; i < 64; i++) {
        const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i]) | 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
    }
    const out = new Uint8Array(32);
    const odv = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) odv.setUint32(4 * i, h[i]);
    return out;
  }

  function hmacSha256Fallback(keyBytes, msgBytes) {
    let key = keyBytes.length > 64 ? sha256(keyBytes) : keyBytes;
    const ipad = new Uint8Array(64 + msgBytes.length);
    const opad = new Uint8Array(64 + 32);
    for (let i = 0; i < 64; i++) {
      const kb = i < key.length ? key[i] : 0;
      ipad[i] = kb ^ 0x36;
      opad[i] = kb ^ 0x5c;
    }
    ipad.set(msgBytes, 64);
    opad.set(sha256(ipad), 64);
    return sha256(opad);
  }

  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

  /* hex(HMAC-SHA256(key, message)); WebCrypto when this is a secure context, else the fallback. */
  async function hmacHex(key, message, forceFallback) {
    const k = enc.encode(key), m = enc.encode(message);
    const subtle = window.crypto && window.crypto.subtle;
    if (subtle && !forceFallback) {
      const ck = await subtle.importKey('raw', k, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
      return hex(new Uint8Array(await subtle.sign('HMAC', ck, m)));
    }
    return hex(hmacSha256Fallback(k, m));
  }

  /* ---- credentials (sessionStorage only) ---- */
  let creds = null; /* {key, secret}; secret '' = key-only project */
  let lastNonce = 0;

  function loadCreds() {
    try {
      const c = JSON.parse(sessionStorage.getItem(STORE_KEY) || 'null');
      if (c && typeof c.key === 'string' && c.key) return { key: c.key, secret: typeof c.secret === 'string' ? c.secret : '' };
    } catch (e) { /* unreadable: start without */ }
    return null;
  }

  /* A millisecond nonce (as Wiro's own clients send), strictly increasing within this tab: the server refuses a
   * nonce it has seen for this key on the calls that change state. */
  function nextNonce() {
    lastNonce = Math.max(Date.now(), lastNonce + 1);
    return String(lastNonce);
  }

  async function authHeaders(c) {
    const h = { 'x-api-key': c.key };
    if (c.secret) {
      const nonce = nextNonce();
      h['x-nonce'] = nonce;
      h['x-signature'] = await hmacHex(c.key, c.secret + nonce);
    }
    return h;
  }

  /* ---- API ---- */
  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  function errorText(body) {
    if (body && Array.isArray(body.errors) && body.errors.length)
      return body.errors.map((e) => (e && e.message) ? String(e.message) : JSON.stringify(e)).join('; ');
    return '';
  }

  async function api(path, body, c) {
    c = c || creds;
    if (!c) throw new ApiError('Enter an API key first.', 0);
    for (let attempt = 0; ; attempt++) {
      /* a FormData body (Run with an image) goes as multipart/form-data: the browser writes its boundary */
      const form = typeof FormData === 'function' && body instanceof FormData;
      const headers = Object.assign(form ? {} : { 'Content-Type': 'application/json' }, await authHeaders(c));
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
      let res, text;
      try {
        res = await fetch(path, { method: 'POST', headers, body: form ? body : JSON.stringify(body || {}),
                                  signal: ctl.signal, cache: 'no-store', credentials: 'omit' });
        text = await res.text();
      } catch (e) {
        throw new ApiError(e.name === 'AbortError' ? `No answer from the server within ${REQUEST_TIMEOUT_MS / 1000} s (${path}).`
                                                   : `Cannot reach the server (${path}): ${e.message}`, 0);
      } finally {
        clearTimeout(timer);
      }
      let json = null;
      try { json = JSON.parse(text); } catch (e) { /* reported below */ }
      const msg = errorText(json);
      /* Another tab with the same key may have used this millisecond: a refused nonce did nothing, try once more. */
      if (res.status === 401 && attempt === 0 && /Nonce has already been used/.test(msg)) continue;
      if (res.status === 401) throw new ApiError(`Authentication failed: ${msg || 'HTTP 401'}`, 401);
      if (res.status === 429) throw new ApiError(`The server is busy: ${msg || 'too many tasks'}. Try again later.`, 429);
      if (!json) throw new ApiError(`Unexpected answer from the server (HTTP ${res.status}) for ${path}.`, res.status);
      if (!res.ok || json.result !== true) throw new ApiError(msg || `Request failed (HTTP ${res.status}).`, res.status);
      return json;
    }
  }

  /* ---- messages ---- */
  function showError(msg) {
    const e = $('error');
    e.textContent = msg;
    e.hidden = !msg;
  }
  const clearError = () => showError('');

  /* An error of one field is shown under it (the banner at the top may be out of view): the field is marked, its
   * "More options" opened, and it gets the focus. */
  class FieldError extends Error {
    constructor(field, message) { super(message); this.field = field; }
  }
  const ERROR_FIELDS = ['inputImage', 'prompt', 'steps', 'scale', 'seed', 'numFrames', 'width', 'height', 'fps',
                        'cacheCustom'];
  function clearFieldErrors() {
    for (const id of ERROR_FIELDS) {
      $(id).removeAttribute('aria-invalid');
      const e = $(`${id}-error`);
      e.textContent = '';
      e.hidden = true;
    }
  }
  function showFieldError(id, msg) {
    const el = $(id), e = $(`${id}-error`);
    if (!el || !e) return false;
    e.textContent = msg;
    e.hidden = false;
    el.setAttribute('aria-invalid', 'true');
    const det = el.closest('details');
    if (det) det.open = true;
    el.focus();
    return true;
  }

  /* ---- the model and its parameters (Tool/Detail) ---- */
  let slug = null; /* "owner/project" */
  const FIELDS = ['prompt', 'negativePrompt', 'steps', 'scale', 'seed', 'numFrames', 'width', 'height', 'fps', 'cache',
                  'precision', 'scheduler', 'dynamicCfg'];
  function rangeText(it) {
    if (it.type !== 'number' && it.type !== 'float') return '';
    if (it.min === null || it.min === undefined || it.max === null || it.max === undefined) return '';
    return ` ${it.min} to ${it.max}${it.default !== undefined && it.default !== null ? `, default ${it.default}` : ''}.`;
  }
  const limits = {};
  /* Tool/Detail's inputImage item when the served model takes an image (image-to-video), else null */
  let imageInput = null;

  function applyImageInput(params) {
    imageInput = null;
    for (const group of params)
      for (const it of (Array.isArray(group.items) ? group.items : []))
        if (it && it.id === 'inputImage') imageInput = it;
    $('inputImage-row').hidden = !imageInput;
    if (!imageInput) return;
    const el = $('inputImage');
    el.accept = typeof imageInput.accept === 'string' && imageInput.accept ? imageInput.accept : 'image/*';
    el.required = !!imageInput.required;
    const max = Number(imageInput.max);
    $('inputImage-hint').textContent = (imageInput.note ? String(imageInput.note) : 'The video\'s first frame.') +
      (max > 0 ? ` At most ${(max / 1048576).toFixed(max % 1048576 ? 1 : 0)} MiB.` : '');
  }

  function applyTool(tool) {
    slug = `${tool.slugowner}/${tool.slugproject}`;
    /* the model really served (its folder, and whether its weights are random), not only the API's slug */
    const m = tool.model && typeof tool.model === 'object' ? tool.model : {};
    const folder = typeof m.folder === 'string' && m.folder ? m.folder : '';
    $('model-name').textContent = folder ? `${folder} (as ${slug})` : slug;
    const w = $('model-weights');
    const kind = { random: 'Test model', checkpoint: 'Checkpoint', unknown: 'Weights' }[m.weights];
    w.textContent = kind ? `${kind}: ${String(m.weightsOrigin || '')}` : '';
    w.hidden = !kind;
    w.classList.toggle('warn', m.weights === 'random');
    $('slug').textContent = slug;
    const params = Array.isArray(tool.parameters) ? tool.parameters : [];
    applyImageInput(params);
    for (const group of params) {
      for (const it of (Array.isArray(group.items) ? group.items : [])) {
        if (!FIELDS.includes(it.id)) continue;
        const el = $(it.id);
        limits[it.id] = it;
        const isNum = el.type === 'number';
        if (isNum) {
          if (it.min !== null && it.min !== undefined) el.min = String(it.min);
          if (it.max !== null && it.max !== undefined) el.max = String(it.max);
          if (it.step !== null && it.step !== undefined) el.step = String(it.step);
        } else if (el.tagName === 'TEXTAREA' && typeof it.max === 'number') {
          el.maxLength = it.max;
        }
        if (it.note) {
          el.title = String(it.note);
          const hint = $(`${it.id}-hint`);
          if (hint) hint.textContent = String(it.note) + rangeText(it) + (it.id === 'prompt' ? ' Ctrl+Enter generates.' : '');
        }
        if (it.id === 'scheduler' && it.default) {
          $('scheduler').options[0].textContent = `The model's default (${String(it.default).toUpperCase()})`;
          continue;
        }
        if (it.id === 'precision' && Array.isArray(it.options)) {
          const sel = $('precision');
          while (sel.options.length > 1) sel.remove(1);
          for (const o of it.options) sel.add(new Option(String(o), String(o)));
          sel.options[0].textContent = `The server's default (${it.default})`;
          continue;
        }
        if (el.tagName === 'SELECT' && it.default !== null && it.default !== undefined &&
            ![...el.options].some((o) => o.value === String(it.default)))
          continue; /* a default this page does not offer: keep its own */
        if (!el.dataset.touched && it.default !== null && it.default !== undefined) el.value = String(it.default);
      }
    }
  }

  async function connect(c) {
    const detail = await api('/v1/Tool/Detail', {}, c);
    const tool = Array.isArray(detail.tool) ? detail.tool[0] : null;
    if (!tool || !tool.slugowner || !tool.slugproject) throw new ApiError('Tool/Detail did not describe a model.', 0);
    applyTool(tool);
  }

  function setConnected(on) {
    $('run-fields').disabled = !on;
    $('run-hint').hidden = on;
    $('refresh').disabled = !on;
  }

  async function useCredentials(c, remember) {
    $('cred-status').textContent = 'Checking…';
    try {
      await connect(c);
    } catch (e) {
      $('cred-status').textContent = '';
      setConnected(false);
      showError(e.message);
      return false;
    }
    creds = c;
    if (remember) sessionStorage.setItem(STORE_KEY, JSON.stringify(c));
    $('cred-status').textContent = c.secret ? 'Connected (requests signed with HMAC-SHA256).' : 'Connected (key-only project).';
    clearError();
    setConnected(true);
    refreshRecent();
    return true;
  }

  /* ---- following a task ---- */
  let follow = null; /* {token, id, ws, pollTimer, done} of the task shown in the Task panel */

  function stopFollowing() {
    if (!follow) return;
    follow.done = true;
    if (follow.ws) { try { follow.ws.close(); } catch (e) { /* already closed */ } }
    clearTimeout(follow.pollTimer);
    clearTimeout(follow.queueTimer);
    follow = null;
  }

  function setProgress(step, total, detail) {
    const p = $('progress');
    if (total > 0) {
      p.max = total;
      p.value = Math.min(step, total);
    }
    if (detail !== undefined) $('progress-text').textContent = detail;
  }

  /* The stage in words: "Step 12/50" while denoising, "Decoding the video (batch 3/7)" and "Writing the video" after
   * (the server names the stage); the percentage is of the whole task when the server gives it. */
  function progressLine(pg) {
    const later = pg.stage && pg.stage !== 'denoise';
    const label = String(pg.stageLabel || pg.stage || '');
    const first = later
      ? label.charAt(0).toUpperCase() + label.slice(1) +
        (Number(pg.stageTotal) > 0 && pg.stage === 'decode' ? ` (batch ${pg.stageCurrent}/${pg.stageTotal})` : '')
      : `Step ${pg.stepCurrent}/${pg.stepTotal}`;
    const parts = [first];
    if (pg.taskPercentage !== undefined) parts.push(`${pg.taskPercentage}%`);
    else if (pg.percentage !== undefined) parts.push(`${pg.percentage}%`);
    if (pg.speed && !later) parts.push(`${pg.speed} ${pg.speedType || 'it/s'}`);
    if (pg.elapsedTime) parts.push(`elapsed ${pg.elapsedTime}`);
    if (pg.remainingTime) parts.push(`remaining ${pg.remainingTime}`);
    return parts.join(' · ');
  }

  function showStatus(f, status) {
    if (status === 'task_output') return; /* the progress line says more */
    $('progress-text').textContent = STATUS_TEXT[status] || status;
    if (status === 'task_queue') watchQueue(f);
  }

  /* While the task waits, Task/Detail's queueposition (tasks the one worker runs before it) is shown and refreshed:
   * the socket only carries this task's own events. */
  function queueText(ahead) {
    const n = Number(ahead);
    if (!Number.isInteger(n) || n < 0) return 'Queued';
    return n === 0 ? 'Queued: next' : `Queued: ${n} task${n === 1 ? '' : 's'} ahead`;
  }
  function watchQueue(f) {
    if (f.queueTimer || f.done) return;
    const tick = async () => {
      f.queueTimer = 0;
      if (follow !== f || f.done) return;
      let t = null;
      try {
        const d = await api('/v1/Task/Detail', { tasktoken: f.token });
        t = d.tasklist && d.tasklist[0];
      } catch (e) { /* the socket or the next tick carries on */ }
      if (follow !== f || f.done || !t) return;
      if (t.status !== 'task_queue') return;
      if (/^(Queued|Submitted)/.test($('progress-text').textContent)) $('progress-text').textContent = queueText(t.queueposition);
      f.queueTimer = setTimeout(tick, QUEUE_POLL_MS);
    };
    f.queueTimer = setTimeout(tick, 0);
  }

  function safeUrl(u) {
    try {
      const url = new URL(String(u), location.href);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function showVideo(output) {
    const url = safeUrl(output && output.url);
    if (!url) return false;
    const v = $('video');
    $('result').hidden = false;
    if (v.getAttribute('src') !== url) {
      v.src = url;
      v.load();
    }
    $('video-link').href = url;
    $('video-download').href = url;
    $('video-download').download = downloadName(follow && follow.params);
    const size = Number(output.size);
    $('video-info').textContent = Number.isFinite(size) && size > 0 ? `${output.name || ''} · ${(size / 1024).toFixed(1)} KiB` : '';
    return true;
  }

  /* The task reached task_postprocess_end or task_cancel: Task/Detail says whether it succeeded and gives the URL
   * under this page's host (the socket's copy is built from the server's listen address). */
  async function finish(f, socketOutputs) {
    if (f.done) return;
    f.done = true;
    clearTimeout(f.pollTimer);
    $('kill').disabled = true;
    let task = null;
    try {
      const d = await api('/v1/Task/Detail', { tasktoken: f.token });
      task = d.tasklist && d.tasklist[0];
    } catch (e) {
      if (!socketOutputs) showError(`Could not read the finished task: ${e.message}`);
    }
    if (follow !== f) return;
    const status = task ? task.status : 'task_postprocess_end';
    const pexit = task ? String(task.pexit) : '0';
    const outputs = task ? task.outputs : socketOutputs;
    if (status === 'task_cancel') {
      $('progress-text').textContent = 'Cancelled.';
    } else if (pexit !== '0') {
      const why = (task && task.debugerror) || 'unknown error';
      $('progress-text').textContent = 'Failed.';
      showError(`Task ${f.id} failed: ${why}`);
    } else if (Array.isArray(outputs) && outputs.length && showVideo(outputs[0])) {
      const p = $('progress');
      p.max = 100; /* the whole task, as the stage messages count it */
      p.value = 100;
      const el = task ? Number(task.elapsedseconds) : NaN;
      const secs = Number.isFinite(el) && el > 0 ? ` in ${el < 10 ? el.toFixed(2) : el.toFixed(1)} s` : '';
      $('progress-text').textContent = `Finished${secs}.`;
    } else {
      $('progress-text').textContent = 'Finished, but the task has no video (its files were deleted).';
    }
    refreshRecent();
  }

  function onSocketMessage(f, data) {
    let m;
    try { m = JSON.parse(data); } catch (e) { return; }
    if (!m || typeof m.type !== 'string') return;
    f.gotMessage = true;
    let msg = m.message;
    if (typeof msg === 'string' && /^\s*[[{]/.test(msg)) { try { msg = JSON.parse(msg); } catch (e) { /* text */ } }
    if (m.type === 'task_error') {
      if (m.result === false) { /* unknown token */
        f.done = true;
        showError(`The server does not know this task: ${typeof msg === 'string' ? msg : ''}`);
        $('progress-text').textContent = 'Failed.';
        return;
      }
      if (typeof msg === 'string' && msg) f.errorText = msg;
      $('progress-text').textContent = 'Failed.';
      return;
    }
    if (m.type === 'task_output' && msg && msg.type === 'progressGenerate') {
      if (msg.taskPercentage !== undefined) setProgress(Number(msg.taskPercentage), 100, progressLine(msg));
      else setProgress(Number(msg.stepCurrent), Number(msg.stepTotal), progressLine(msg));
      return;
    }
    if (m.type === 'task_output') return; /* other outputs (logs) */
    showStatus(f, m.type);
    if (m.type !== f.lastStatus) { /* Recent tasks follow the live task's status */
      f.lastStatus = m.type;
      refreshRecent();
    }
    if (FINAL.has(m.type)) finish(f, Array.isArray(msg) ? msg : null);
  }

  function socketUrl() {
    return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/v1/socket`;
  }

  function followBySocket(f) {
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (e) {
      poll(f);
      return;
    }
    f.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'task_info', tasktoken: f.token }));
    ws.onmessage = (ev) => { if (follow === f) onSocketMessage(f, ev.data); };
    ws.onclose = () => {
      f.ws = null;
      /* closed before the end (proxy, restart, network): carry on by polling */
      if (follow === f && !f.done) poll(f);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  /* Task/Detail every POLL_MS: the progress comes from the last "Generate: step k/n" line of debugoutput. */
  async function poll(f) {
    if (f.done || follow !== f) return;
    try {
      const d = await api('/v1/Task/Detail', { tasktoken: f.token });
      const t = d.tasklist && d.tasklist[0];
      if (follow !== f || f.done) return;
      if (t) {
        /* the last progress line: a step ("Generate: step k/n ...") or a later stage ("... (97% of the task) ...") */
        const lines = String(t.debugoutput || '').match(/Generate: (step \d+\/\d+|[^\n]*% of the task\))[^\n]*/g);
        if (lines && lines.length) {
          const last = lines[lines.length - 1];
          const m = /step (\d+)\/(\d+)/.exec(last);
          const stage = /\((\d+)% of the task\)/.exec(last);
          const text = last.replace(/^Generate: (.)/, (all, c) => c.toUpperCase());
          if (stage) setProgress(Number(stage[1]), 100, text);
          else setProgress(Number(m[1]), Number(m[2]), text);
        } else if (t.status === 'task_queue') {
          $('progress-text').textContent = queueText(t.queueposition);
        } else {
          showStatus(f, t.status);
        }
        if (FINAL.has(t.status)) {
          finish(f, null);
          return;
        }
      }
    } catch (e) {
      if (e.status === 401 || (e.status === 0 && !creds)) {
        showError(e.message);
        return;
      }
      /* transient: keep polling, say so */
      $('progress-text').textContent = `Waiting for the server… (${e.message})`;
    }
    f.pollTimer = setTimeout(() => poll(f), POLL_MS);
  }

  /* "a-red-fox-in-the-snow-seed42.mp4": the prompt's first words and the seed, as a file name */
  function downloadName(params) {
    const p = params || {};
    const words = String(p.prompt || 'video').toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '').slice(0, 48).replace(/-+$/, '') || 'video';
    const seed = p.seed !== undefined && p.seed !== null && String(p.seed) !== '' ? String(p.seed)
      : String((limits.seed || {}).default || '');
    return `${words}${seed ? `-seed${seed}` : ''}.mp4`;
  }

  function startFollowing(token, id, steps, params) {
    stopFollowing();
    const f = { token, id, ws: null, pollTimer: 0, done: false, gotMessage: false, params };
    follow = f;
    $('task-id').textContent = id ? `#${id}` : '';
    $('result').hidden = true;
    const v = $('video');
    v.removeAttribute('src');
    v.load();
    const p = $('progress');
    p.max = steps > 0 ? steps : 1;
    p.value = 0;
    $('progress-text').textContent = 'Submitted.';
    $('kill').disabled = false;
    if (typeof WebSocket === 'function') followBySocket(f);
    else poll(f);
  }

  /* ---- submit ---- */
  function fieldValue(id) {
    const el = $(id);
    return el.value.trim();
  }

  function checkNumber(id, label, integer) {
    const s = fieldValue(id);
    if (s === '') return undefined;
    const n = Number(s);
    const it = limits[id] || {};
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)))
      throw new FieldError(id, `${label} must be ${integer ? 'an integer' : 'a number'}.`);
    const min = it.min !== null && it.min !== undefined ? Number(it.min) : -Infinity;
    const max = it.max !== null && it.max !== undefined ? Number(it.max) : Infinity;
    if (n < min || n > max) throw new FieldError(id, `${label} must be between ${it.min} and ${it.max}.`);
    /* the server's rules, from Tool/Detail's step: 4N+1 frames, multiples of 16 pixels */
    const step = Number(it.step);
    if (integer && Number.isInteger(step) && step > 1 && Number.isFinite(min) && (n - min) % step !== 0) {
      if (id === 'numFrames')
        throw new FieldError(id, `${label} must be 4N+1: ${min}, ${min + step}, ${min + 2 * step}, …, ${it.max} (not ${n}).`);
      throw new FieldError(id, `${label} must be a multiple of ${step} (${n - ((n - min) % step)} or ${n - ((n - min) % step) + step}).`);
    }
    return n;
  }

  function collectInputs() {
    const inputs = {};
    const prompt = $('prompt').value.trim();
    if (!prompt) throw new FieldError('prompt', 'Enter a prompt.');
    inputs.prompt = prompt;
    const neg = $('negativePrompt').value.trim();
    if (neg) inputs.negativePrompt = neg;
    const steps = checkNumber('steps', 'Steps', true);
    if (steps !== undefined) inputs.steps = steps;
    const scale = checkNumber('scale', 'Guidance scale', false);
    if (scale !== undefined) inputs.scale = scale;
    const seed = fieldValue('seed');
    if (seed !== '') {
      if (!/^[0-9]{1,20}$/.test(seed) || BigInt(seed) > 18446744073709551615n)
        throw new FieldError('seed', 'Seed must be a whole number (0 to 18446744073709551615).');
      inputs.seed = seed; /* text on Wiro: a 64-bit seed does not fit a JSON number */
    }
    for (const [id, label] of [['numFrames', 'Frames'], ['width', 'Width'], ['height', 'Height'], ['fps', 'Frames per second']]) {
      const n = checkNumber(id, label, true);
      if (n !== undefined) inputs[id] = n;
    }
    /* the step cache is sent only when set; the server checks a custom setting (teacache[:THRESHOLD[:C4,...,C0]]) */
    const cache = $('cache').value;
    if (cache === 'custom') {
      const spec = $('cacheCustom').value.trim();
      if (!spec) throw new FieldError('cacheCustom', 'Enter a cache setting, e.g. teacache:0.15, or choose Off.');
      inputs.cache = spec;
    } else if (cache && cache !== 'off') {
      inputs.cache = cache;
    }
    if ($('precision').value) inputs.precision = $('precision').value;
    if ($('scheduler').value) inputs.scheduler = $('scheduler').value;
    if ($('dynamicCfg').value === 'true') inputs.dynamicCfg = true;
    return inputs;
  }

  /* The picked image of an image-to-video model (checked against Tool/Detail's limit), or null for other models. */
  function pickedImage() {
    if (!imageInput) return null;
    const file = $('inputImage').files && $('inputImage').files[0];
    if (!file) throw new FieldError('inputImage', 'Choose an image: this model animates a picture (its first frame).');
    const max = Number(imageInput.max);
    if (max > 0 && file.size > max)
      throw new FieldError('inputImage', `The image is ${file.size} bytes; the server takes at most ${max}.`);
    if (file.size === 0) throw new FieldError('inputImage', 'The image file is empty.');
    return file;
  }

  /* Run's body: the inputs as JSON, or, with an image, multipart/form-data with the image as the file part
   * inputImage (as Wiro's image-to-video models take it) and every other input as a text part. */
  function runBody(inputs, image) {
    if (!image) return inputs;
    const fd = new FormData();
    for (const [k, v] of Object.entries(inputs)) fd.append(k, String(v));
    fd.append('inputImage', image, image.name || 'image');
    return fd;
  }

  async function submit() {
    clearError();
    clearFieldErrors();
    let inputs, image;
    try {
      image = pickedImage();
      inputs = collectInputs();
    } catch (e) {
      if (!(e instanceof FieldError) || !showFieldError(e.field, e.message)) showError(e.message);
      return;
    }
    if (!slug) {
      showError('The model is not known yet: enter the credentials first.');
      return;
    }
    const btn = $('submit');
    btn.disabled = true;
    try {
      const r = await api(`/v1/Run/${slug}`, runBody(inputs, image));
      if (!r.socketaccesstoken) throw new ApiError('Run did not return a task token.', 0);
      const steps = inputs.steps || Number((limits.steps || {}).default) || 1;
      startFollowing(String(r.socketaccesstoken), String(r.taskid || ''), steps, inputs);
      refreshRecent();
    } catch (e) {
      showError(`The task was not started: ${e.message}`);
      /* "Request parameter [width] must be ...": also under that field */
      const m = /Request parameter \[(\w+)\]/.exec(e.message);
      if (m) showFieldError(m[1] === 'cache' ? 'cacheCustom' : m[1], e.message.replace(/^.*?Request parameter/, 'Request parameter'));
    } finally {
      btn.disabled = false;
    }
  }

  async function killCurrent() {
    const f = follow;
    if (!f || f.done) return;
    $('kill').disabled = true;
    try {
      const r = await api('/v1/Task/Kill', { tasktoken: f.token });
      /* The socket's task_cancel may have come first (the server publishes it before it answers): its "Cancelled."
       * stays. Kill's answer says the task is final already (a queued or a running task is task_cancel at once):
       * end here rather than wait for that frame. */
      if (follow !== f || f.done) return;
      const t = r.tasklist && r.tasklist[0];
      if (t && FINAL.has(t.status)) finish(f, null);
      else $('progress-text').textContent = 'Stopping…';
    } catch (e) {
      showError(`Could not stop the task: ${e.message}`);
      $('kill').disabled = false;
    }
  }

  /* The settings of an earlier task back in the form ("Reuse" in Recent tasks). */
  function reuse(params) {
    clearFieldErrors();
    for (const id of ['prompt', 'negativePrompt', 'steps', 'scale', 'seed', 'numFrames', 'width', 'height', 'fps']) {
      const v = params[id];
      if (v === undefined || v === null) continue;
      $(id).value = String(v);
      $(id).dataset.touched = '1';
    }
    const cache = params.cache ? String(params.cache) : 'off';
    if ([...$('cache').options].some((o) => o.value === cache)) {
      $('cache').value = cache;
    } else {
      $('cache').value = 'custom';
      $('cacheCustom').value = cache;
    }
    $('cache-custom-row').hidden = $('cache').value !== 'custom';
    const prec = params.precision ? String(params.precision) : '';
    $('precision').value = [...$('precision').options].some((o) => o.value === prec) ? prec : '';
    const sched = params.scheduler ? String(params.scheduler).toLowerCase() : '';
    $('scheduler').value = [...$('scheduler').options].some((o) => o.value === sched) ? sched : '';
    $('dynamicCfg').value = String(params.dynamicCfg) === 'true' || String(params.dynamicCfg) === '1' ? 'true' : 'false';
    $('prompt').focus();
    $('prompt').scrollIntoView({ block: 'center' });
  }

  /* ---- recent tasks (Task/List) ---- */
  let refreshing = null;

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function statusOf(t) {
    if (t.status === 'task_postprocess_end') return String(t.pexit) === '0' ? ['Finished', 'status-ok'] : ['Failed', 'status-fail'];
    if (t.status === 'task_queue') return [queueText(t.queueposition), ''];
    return [STATUS_TEXT[t.status] || String(t.status), ''];
  }

  /* "5 steps · scale 6 · seed 42 · 9 frames · 80×48 · dpm": the inputs a task was given (the server's defaults for
   * the rest) */
  function paramsText(p) {
    if (!p || typeof p !== 'object') return '';
    const parts = [];
    const has = (k) => p[k] !== undefined && p[k] !== null && String(p[k]) !== '';
    if (has('steps')) parts.push(`${p.steps} steps`);
    if (has('scale')) parts.push(`scale ${p.scale}`);
    if (has('seed')) parts.push(`seed ${p.seed}`);
    if (has('numFrames')) parts.push(`${p.numFrames} frames`);
    if (has('width') && has('height')) parts.push(`${p.width}×${p.height}`);
    else if (has('width')) parts.push(`width ${p.width}`);
    else if (has('height')) parts.push(`height ${p.height}`);
    if (has('scheduler')) parts.push(String(p.scheduler));
    if (String(p.dynamicCfg) === 'true') parts.push('dynamic CFG');
    if (has('cache') && String(p.cache) !== 'off') parts.push(String(p.cache));
    if (has('precision')) parts.push(String(p.precision));
    return parts.join(' · ');
  }

  function renderRecent(list) {
    const body = $('recent-body');
    body.textContent = '';
    for (const t of list) {
      const tr = document.createElement('tr');
      tr.dataset.taskid = String(t.id);
      cell(tr, `#${t.id}`);
      /* the preview the server wrote beside the video (an animated WebP), as a thumbnail */
      const th = cell(tr, '', 'thumb');
      const pv = t.previewurl && safeUrl(t.previewurl);
      if (pv) {
        const img = document.createElement('img');
        img.src = pv;
        img.alt = `Preview of task ${t.id}`;
        img.loading = 'lazy';
        img.decoding = 'async';
        th.appendChild(img);
      }
      const [st, cls] = statusOf(t);
      const sc = cell(tr, st, cls);
      if (String(t.pexit) !== '0' && t.debugerror) sc.title = String(t.debugerror);
      const prompt = t.parameters && typeof t.parameters.prompt === 'string' ? t.parameters.prompt : '';
      const pc = cell(tr, prompt, 'prompt');
      /* the task's parameters under its prompt (what "Reuse" puts back) */
      const pt = paramsText(t.parameters);
      pc.title = pt ? `${prompt}\n${pt}` : prompt;
      if (pt) {
        const small = document.createElement('small');
        small.className = 'muted params';
        small.textContent = pt;
        pc.appendChild(small);
      }
      const ct = Number(t.createtime);
      cell(tr, ct > 0 ? new Date(ct * 1000).toLocaleString() : '', 'created');
      const vc = cell(tr, '');
      const out = Array.isArray(t.outputs) && t.outputs.length ? t.outputs[0] : null;
      const url = out && safeUrl(out.url);
      if (url) {
        const a = document.createElement('a');
        a.href = url;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
        a.textContent = out.name || 'video';
        vc.appendChild(a);
        vc.appendChild(document.createTextNode(' '));
      }
      if (t.socketaccesstoken && (url || !FINAL.has(t.status))) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'secondary';
        b.textContent = 'Show';
        b.setAttribute('aria-label', `Show task ${t.id}`);
        b.addEventListener('click', () => {
          clearError();
          startFollowing(String(t.socketaccesstoken), String(t.id), 1, t.parameters);
        });
        vc.appendChild(b);
      }
      if (t.parameters && typeof t.parameters === 'object') {
        const r = document.createElement('button');
        r.type = 'button';
        r.className = 'secondary';
        r.textContent = 'Reuse';
        r.title = 'Put this task\'s settings into the form';
        r.setAttribute('aria-label', `Reuse the settings of task ${t.id}`);
        r.addEventListener('click', () => reuse(t.parameters));
        vc.appendChild(r);
      }
      body.appendChild(tr);
    }
  }

  function refreshRecent() {
    if (!creds) return Promise.resolve();
    if (refreshing) return refreshing;
    $('recent-status').textContent = 'Loading…';
    refreshing = api('/v1/Task/List', { type: 'model', sort: 'id', order: 'DESC', start: '0', limit: '10' })
      .then((r) => {
        const list = Array.isArray(r.tasklist) ? r.tasklist : [];
        renderRecent(list);
        $('recent-status').textContent = list.length ? `${list.length} of ${r.total} tasks` : 'No tasks yet.';
      })
      .catch((e) => { $('recent-status').textContent = `Could not list the tasks: ${e.message}`; })
      .finally(() => { refreshing = null; });
    return refreshing;
  }

  /* ---- wiring ---- */
  function init() {
    for (const id of FIELDS) $(id).addEventListener('input', () => { $(id).dataset.touched = '1'; });
    const showCustomCache = () => { $('cache-custom-row').hidden = $('cache').value !== 'custom'; };
    $('cache').addEventListener('change', () => { $('cache').dataset.touched = '1'; showCustomCache(); });
    showCustomCache();
    $('cred-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearError();
      const key = $('apikey').value.trim();
      const secret = $('apisecret').value.trim();
      if (!key) {
        showError('Enter the API key of your project.');
        return;
      }
      stopFollowing();
      useCredentials({ key, secret }, true);
    });
    $('cred-forget').addEventListener('click', () => {
      sessionStorage.removeItem(STORE_KEY);
      creds = null;
      stopFollowing();
      $('apikey').value = '';
      $('apisecret').value = '';
      $('cred-status').textContent = 'Forgotten.';
      $('recent-body').textContent = '';
      $('recent-status').textContent = '';
      setConnected(false);
    });
    $('run-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      submit();
    });
    /* Ctrl+Enter (Cmd+Enter) in any field of the form generates */
    $('run-form').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey) && !$('run-fields').disabled && !$('submit').disabled) {
        ev.preventDefault();
        submit();
      }
    });
    $('seed-random').addEventListener('click', () => {
      const a = new Uint32Array(1);
      window.crypto.getRandomValues(a);
      $('seed').value = String(a[0]);
      $('seed').dataset.touched = '1';
      $('seed').removeAttribute('aria-invalid');
      $('seed-error').hidden = true;
    });
    for (const id of ERROR_FIELDS) /* a corrected field loses its error */
      $(id).addEventListener('input', () => { $(id).removeAttribute('aria-invalid'); $(`${id}-error`).hidden = true; });
    $('kill').addEventListener('click', killCurrent);
    $('refresh').addEventListener('click', () => refreshRecent());
    $('video').addEventListener('error', () => {
      if ($('video').getAttribute('src')) showError('The browser could not play the video file.');
    });
    const saved = loadCreds();
    if (saved) {
      $('apikey').value = saved.key;
      $('apisecret').value = saved.secret;
      useCredentials(saved, false);
    }
  }

  /* For tests and for debugging signatures from the console. */
  window.cogvideox = Object.freeze({ hmacHex, nextNonce });

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
