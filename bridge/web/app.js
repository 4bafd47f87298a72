// hal0 Image-Gen page. Live only from GET /api/events (EventSource; no polling loop), controls
// through the bridge's REST API. No build step, no dependencies (an ES module: strict by itself).

const GIB = 2 ** 30;
const HISTORY_MAX = 10;
const GALLERY_MAX = 12;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5000;
const NOTICE_MS = 6000;
const TOKEN_KEY = "hal0.token";
const GALLERY_KEY = "hal0.gallery";

const $ = (id) => document.getElementById(id);
const state = {
  info: null, // GET /api/info
  status: null, // the newest snapshot
  history: [], // switchovers, newest first
  gallery: loadGallery(), // {url, model, seed, size, time}, newest first
  es: null,
  retries: 0,
  online: false,
};

// ------------------------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// Every call: JSON bodies sent as application/json, the bearer token when the page has one.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token()) headers.Authorization = "Bearer " + token();
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError("network", "the bridge cannot be reached (" + err.message + ")", 0);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch (_) { /* not JSON: described below by the status line */ }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(e.code || "http." + resp.status, e.message || resp.status + " " + resp.statusText, resp.status);
    if (resp.status === 401) askToken(err.message);
    throw err;
  }
  return data;
}

// EventSource cannot send headers: with a token, the stream URL carries it as ?token= (what the
// bridge must accept for /api/events once a token guards it: issue 11).
function eventsUrl() {
  return "/api/events" + (token() ? "?token=" + encodeURIComponent(token()) : "");
}

// ------------------------------------------------------------------------------- live stream

function connect() {
  if (state.es) state.es.close();
  const es = new EventSource(eventsUrl());
  let opened = false;
  state.es = es;
  es.addEventListener("open", () => {
    opened = true;
    state.retries = 0;
    setOnline(true);
  });
  es.addEventListener("status", (ev) => applyStatus(JSON.parse(ev.data)));
  for (const name of ["switch_started", "switch_finished", "switch_failed"]) {
    es.addEventListener(name, (ev) => onSwitchEvent(JSON.parse(ev.data)));
  }
  es.addEventListener("image_generated", (ev) => addImages(JSON.parse(ev.data)));
  es.addEventListener("render_failed", (ev) => onRenderFailed(JSON.parse(ev.data)));
  // PREVIEW HOOK: when the bridge emits partial images (issue "partial-image" work), subscribe here,
  // e.g. es.addEventListener("<that event>", (ev) => showPreviewFrame(JSON.parse(ev.data).url)).
  es.addEventListener("error", () => {
    // Reconnect ourselves with a capped back-off, whatever the browser would do on its own.
    es.close();
    if (state.es === es) state.es = null;
    setOnline(false);
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** state.retries++);
    setTimeout(() => reconnect(opened), delay);
  });
}

async function reconnect(wasOpen) {
  try {
    await loadInfo();
  } catch (_) {
    setTimeout(() => reconnect(wasOpen), Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** state.retries++));
    return; // still offline
  }
  if (!wasOpen && state.info.auth_required && state.retries > 2) {
    askToken("The bridge refused the event stream; check the token.");
    return;
  }
  if (state.info.auth_required && !token()) {
    askToken();
    return;
  }
  connect();
}

function setOnline(online) {
  state.online = online;
  $("banner").hidden = online;
  document.body.classList.toggle("offline", !online);
  $("conn").classList.toggle("on", online);
  $("conn").title = online ? "live" : "offline";
  renderControls();
}

// ------------------------------------------------------------------------------- status -> DOM

function applyStatus(s) {
  const first = state.status === null;
  state.status = s;
  const other = s.mode === "generation" ? "inference" : "generation";
  const mode = $("mode");
  mode.textContent = s.mode;
  mode.className = "badge " + s.mode;
  $("owner").textContent = s.mode === "generation" ? "ComfyUI owns the GPU" : "the LLM slots own the GPU";
  $("pinned").hidden = !s.pinned;
  $("switch-btn").textContent = "Switch to " + other;
  $("pin-btn").textContent = s.pinned ? "Unpin" : "Pin";
  const sw = s.switchover;
  $("switch-state").textContent = sw.active
    ? "switching to " + sw.target + " (" + sw.trigger + ")" + phaseText(sw.phases, " · ")
    : sw.error ? "last switch failed: " + sw.error : "";
  $("switch-state").className = sw.active ? "" : sw.error ? "error-text" : "muted";
  $("idle-restore").textContent = s.idle_restore_at
    ? "back to inference at " + clock(s.idle_restore_at) + " if idle" : "";

  $("engine").textContent = s.engine;
  $("reachable").textContent = s.reachable ? "yes" : "no";
  $("container").textContent = s.container;
  $("queue-running").textContent = String(s.queue.running);
  $("queue-pending").textContent = String(s.queue.pending);

  gauge("gtt", s.memory.gtt_used, s.memory.gtt_total);
  gauge("ram", s.memory.ram_used, s.memory.ram_total);
  renderProgress(s.progress);
  renderSlots(s.slots);
  if (first && sw.target && sw.started_at) seedHistory(sw);
  renderControls();
  document.body.dataset.updatedAt = String(s.updated_at);
  // for bench/bench_page.py: the snapshot's time (the bridge's clock) once the DOM shows it
  document.dispatchEvent(new CustomEvent("hal0:status", { detail: { updated_at: s.updated_at } }));
}

function gauge(id, used, total) {
  const bar = $(id + "-bar");
  if (used == null || !total) {
    bar.value = 0;
    $(id + "-text").textContent = used == null ? "—" : gib(used) + " GiB";
    return;
  }
  bar.value = used / total;
  $(id + "-text").textContent = gib(used) + " / " + gib(total) + " GiB";
}

function renderProgress(p) {
  if (!p) {
    $("progress-bar").value = 0;
    $("progress-text").textContent = "idle";
    $("rate").textContent = "";
    $("eta").textContent = "";
    return;
  }
  $("progress-bar").value = p.steps ? p.step / p.steps : 0;
  $("progress-text").textContent = "step " + p.step + " / " + p.steps;
  $("rate").textContent = p.it_s != null ? p.it_s.toFixed(2) + " it/s" : "";
  $("eta").textContent = p.eta_s != null ? "ETA " + p.eta_s.toFixed(1) + " s" : "";
}

// The latest preview frame of the running render. Nothing calls it yet: see PREVIEW HOOK above.
function showPreviewFrame(src) {
  const img = $("preview");
  img.src = src;
  img.hidden = !src;
}

function renderSlots(slots) {
  const list = $("slots");
  list.replaceChildren(
    ...(slots.length ? slots : [null]).map((slot) => {
      const li = document.createElement("li");
      if (!slot) {
        li.className = "muted empty";
        li.textContent = "no slots configured";
        return li;
      }
      const name = document.createElement("span");
      name.textContent = slot.name + " (" + slot.group + ")";
      const st = document.createElement("span");
      st.className = "state-" + slot.state;
      st.textContent = slot.state;
      li.dataset.slot = slot.name;
      li.append(name, st);
      return li;
    }),
  );
}

function renderControls() {
  const s = state.status;
  const ready = state.online && s !== null;
  $("switch-btn").disabled = !ready || s.switchover.active;
  $("pin-btn").disabled = !ready;
  $("cancel-btn").disabled = !ready || s.queue.running + s.queue.pending === 0;
}

// ------------------------------------------------------------------------------- switch history

function seedHistory(sw) {
  state.history = [{
    target: sw.target, trigger: sw.trigger, started: sw.started_at, finished: sw.finished_at,
    phases: sw.phases, error: sw.error, active: sw.active,
  }];
  renderHistory();
}

function onSwitchEvent(ev) {
  const current = state.history[0];
  if (ev.type === "switch_started") {
    state.history.unshift({ target: ev.target, trigger: ev.trigger, started: ev.time, phases: {}, active: true });
  } else {
    const entry = current && current.active && current.target === ev.target ? current : null;
    const done = { target: ev.target, trigger: ev.trigger, finished: ev.time, phases: ev.phases || {},
      error: ev.error, warnings: ev.warnings || [], active: false, started: entry ? entry.started : null };
    if (entry) state.history[0] = done; else state.history.unshift(done);
  }
  state.history.length = Math.min(state.history.length, HISTORY_MAX);
  renderHistory();
}

function renderHistory() {
  const list = $("history");
  if (!state.history.length) return;
  list.replaceChildren(...state.history.map((h) => {
    const li = document.createElement("li");
    const took = h.started && h.finished ? " in " + (h.finished - h.started).toFixed(2) + " s" : "";
    const head = document.createElement("span");
    head.textContent = clock(h.started || h.finished) + " → " + h.target + " (" + h.trigger + ")"
      + (h.active ? " … running" : h.error ? " failed" + took : " ok" + took);
    li.append(head);
    if (h.error) li.className = "failed";
    const detail = phaseText(h.phases, " · ") + (h.error ? " — " + h.error : "");
    if (detail) {
      const small = document.createElement("span");
      small.className = "phases";
      small.textContent = detail.replace(/^ · /, "");
      li.append(small);
    }
    return li;
  }));
}

function phaseText(phases, sep) {
  const parts = Object.entries(phases || {}).map(([k, v]) => k + " " + Number(v).toFixed(2) + " s");
  return parts.length ? sep + parts.join(sep) : "";
}

// ------------------------------------------------------------------------------- gallery

function loadGallery() {
  try {
    const items = JSON.parse(sessionStorage.getItem(GALLERY_KEY) || "[]");
    return Array.isArray(items) ? items.slice(0, GALLERY_MAX) : [];
  } catch (_) {
    return [];
  }
}

function addImages(ev) {
  const known = new Set(state.gallery.map((g) => g.url));
  const fresh = (ev.urls || []).filter((u) => typeof u === "string" && !known.has(u)).reverse()
    .map((url) => ({ url, model: ev.model, seed: ev.seed, size: ev.size, time: ev.time || Date.now() / 1000 }));
  if (!fresh.length) return;
  state.gallery = [...fresh, ...state.gallery].slice(0, GALLERY_MAX);
  sessionStorage.setItem(GALLERY_KEY, JSON.stringify(state.gallery));
  renderGallery();
}

function dropImage(url) {
  state.gallery = state.gallery.filter((g) => g.url !== url); // evicted from the bridge's cache
  sessionStorage.setItem(GALLERY_KEY, JSON.stringify(state.gallery));
  renderGallery();
}

function renderGallery() {
  const box = $("gallery");
  if (!state.gallery.length) {
    box.innerHTML = '<p class="muted empty">no image yet</p>';
    return;
  }
  box.replaceChildren(...state.gallery.map((g) => {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.title = g.model + " · seed " + g.seed + " · " + g.size;
    const img = document.createElement("img");
    img.src = g.url;
    img.alt = "generated with " + g.model;
    img.loading = "lazy";
    img.addEventListener("error", () => dropImage(g.url));
    btn.append(img);
    btn.addEventListener("click", () => openViewer(g));
    return btn;
  }));
}

function openViewer(g) {
  $("viewer-img").src = g.url;
  $("viewer-link").href = g.url;
  $("viewer-meta").textContent = g.model + " · " + g.size + " · seed " + g.seed + " · " + clock(g.time);
  $("viewer").showModal();
}

function onRenderFailed(ev) {
  const p = $("last-failure");
  p.textContent = "render failed (" + ev.model + "): " + ev.message;
  p.hidden = false;
}

// ------------------------------------------------------------------------------- controls

function notice(text, code) {
  const box = $("notice");
  box.replaceChildren(document.createTextNode(text));
  if (code) {
    const c = document.createElement("code");
    c.textContent = code;
    box.append(c);
  }
  box.className = "notice" + (code ? " error" : "");
  box.hidden = false;
  clearTimeout(notice.timer); // errors stay until clicked; news goes by itself
  if (!code) notice.timer = setTimeout(() => { box.hidden = true; }, NOTICE_MS);
}

async function run(button, work) {
  button.classList.add("busy");
  button.disabled = true;
  try {
    await work();
  } catch (err) {
    notice(err.message, err.code);
  } finally {
    button.classList.remove("busy");
    button.disabled = false;
    renderControls();
  }
}

function onSwitch() {
  const s = state.status;
  const mode = s.mode === "generation" ? "inference" : "generation";
  run($("switch-btn"), async () => {
    const r = await api("POST", "/api/comfyui/switchover", { mode, force: $("force").checked });
    notice(r.status === "noop" ? "already in " + r.mode : "switching to " + r.mode + "…");
  });
}

function onPin() {
  const pinned = !state.status.pinned;
  run($("pin-btn"), async () => {
    const r = await api("POST", "/api/comfyui/pin", { pinned });
    notice(r.pinned ? "generation mode pinned" : "unpinned");
  });
}

function onCancel() {
  run($("cancel-btn"), async () => {
    const r = await api("POST", "/api/comfyui/cancel", {});
    notice("cancelled: " + r.interrupted + " interrupted, " + r.dropped_pending + " pending dropped");
  });
}

function onGenerate(ev) {
  ev.preventDefault();
  const body = { prompt: $("prompt").value };
  if ($("model").value) body.model = $("model").value;
  if ($("size").value.trim()) body.size = $("size").value.trim();
  const btn = $("generate-btn");
  const started = performance.now();
  btn.textContent = "Generating…";
  run(btn, async () => {
    try {
      const r = await api("POST", "/v1/images/generations", body);
      addImages({ ...r._hal0, time: r.created });
      notice("image ready in " + ((performance.now() - started) / 1000).toFixed(1) + " s (seed " + r._hal0.seed + ")");
    } finally {
      btn.textContent = "Generate";
    }
  });
}

// ------------------------------------------------------------------------------- token

function askToken(reason) {
  if (reason) $("token-reason").textContent = reason;
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

function onToken() {
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  $("token-input").value = "";
  state.retries = 0;
  connect();
}

// ------------------------------------------------------------------------------- start

async function loadInfo() {
  state.info = await api("GET", "/api/info");
  $("node").textContent = state.info.node_id + " · v" + state.info.version;
  const select = $("model");
  if (select.options.length === 1) {
    for (const m of state.info.models || []) select.add(new Option(m.id + " (" + m.size + ")", m.id));
  }
}

function clock(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleTimeString() : "";
}

function gib(bytes) {
  return (bytes / GIB).toFixed(1);
}

async function start() {
  $("switch-btn").addEventListener("click", onSwitch);
  $("pin-btn").addEventListener("click", onPin);
  $("cancel-btn").addEventListener("click", onCancel);
  $("prompt-form").addEventListener("submit", onGenerate);
  $("token-form").addEventListener("submit", onToken);
  $("notice").addEventListener("click", () => { $("notice").hidden = true; });
  renderGallery();
  try {
    await loadInfo();
  } catch (_) {
    setOnline(false);
    setTimeout(() => reconnect(false), RETRY_MIN_MS);
    return;
  }
  if (state.info.auth_required && !token()) askToken();
  else connect();
}

start();
