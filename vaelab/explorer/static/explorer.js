// The page of `vaelab serve`. It talks only to /api/... of the server that sent it
// (request and response shapes: docs/explorer-api.md). No build step, no libraries.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];  // matplotlib's tab10
const $ = (id) => document.getElementById(id);
const state = {
  info: null, run: null, points: null,
  view: null,     // [[x_lo, x_hi], [y_lo, y_hi]] of the scatter, in plane coordinates
  label: 0,       // the class a conditional model decodes and encodes with
  current: null,  // what the "decoded" panel shows: {plane: [x, y]} or {z: [...]}
  clicks: [],     // up to two plane points, the ends of the interpolation
  path: null,     // plane points of the interpolation strip
  drawn: null,    // plane point of the encoded drawing
  hover: null,    // plane point under the cursor, marked on the scatter
};

const DEFAULT_TEXT = {  // what each caption says before anything is shown for the current run
  "decoded-at": "move over the scatter",
  "drawn-at": "draw a digit: it is encoded (encoder mean), marked ★ on the scatter and decoded here",
  "strip-caption": "click two points of the scatter",
  "grid-caption": "",
};

// ---- talking to the server ---------------------------------------------------------------------

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

// At most one request of a kind in flight; arguments that arrive meanwhile replace each other,
// so a fast mouse never builds a backlog: the latest position wins.
function latest(send) {
  let busy = false, next = null;
  return (arg) => {
    next = arg;
    if (busy) return;
    busy = true;
    (async () => {
      while (next !== null) {
        const now = next;
        next = null;
        try { await send(now); } catch (error) { showError(error); }
      }
      busy = false;
    })();
  };
}

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}
const showError = (error) => showStatus(error.message, true);

function withRun(body) {  // the run, and the label when the model is conditional
  const full = {run: state.run.index, ...body};
  if (state.run.conditional) full.label = state.label;
  return full;
}

// ---- the scatter ---------------------------------------------------------------------------------

const scatter = $("scatter");
const layer = document.createElement("canvas");  // the points, redrawn only when the view changes
layer.width = scatter.width;
layer.height = scatter.height;

function toPixel([x, y]) {
  const [[x0, x1], [y0, y1]] = state.view;
  return [(x - x0) / (x1 - x0) * scatter.width, (y1 - y) / (y1 - y0) * scatter.height];
}

function toPlane(px, py) {
  const [[x0, x1], [y0, y1]] = state.view;
  return [x0 + px / scatter.width * (x1 - x0), y1 - py / scatter.height * (y1 - y0)];
}

function eventPlane(event) {  // the canvas may be shown smaller than its pixel size
  const box = scatter.getBoundingClientRect();
  return toPlane((event.clientX - box.left) * scatter.width / box.width,
                 (event.clientY - box.top) * scatter.height / box.height);
}

function drawPoints() {
  const ctx = layer.getContext("2d");
  ctx.clearRect(0, 0, layer.width, layer.height);
  const {x, y, label} = state.points;
  ctx.globalAlpha = 0.7;
  for (let i = 0; i < x.length; i++) {
    const [px, py] = toPixel([x[i], y[i]]);
    ctx.fillStyle = PALETTE[label[i] % PALETTE.length];
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  drawTicks(ctx);
}

function drawTicks(ctx) {
  const [xName, yName] = state.run.projection === "pca" ? ["PC1", "PC2"] : ["z₁", "z₂"];
  ctx.fillStyle = "#555";
  ctx.font = "11px system-ui, sans-serif";
  const span = state.view[0][1] - state.view[0][0];
  const digits = Math.max(0, Math.ceil(1 - Math.log10(span / 5)));  // enough to tell ticks apart
  for (let k = 1; k < 5; k++) {
    const [x, y] = toPlane(k / 5 * layer.width, k / 5 * layer.height);
    ctx.fillText(x.toFixed(digits), k / 5 * layer.width - 12, layer.height - 4);
    ctx.fillText(y.toFixed(digits), 3, k / 5 * layer.height + 4);
  }
  ctx.font = "bold 12px system-ui, sans-serif";
  ctx.fillText(`${xName} →`, layer.width - 40, layer.height - 4);
  ctx.fillText(`${yName} ↑`, 3, 14);
}

function render() {
  const ctx = scatter.getContext("2d");
  ctx.clearRect(0, 0, scatter.width, scatter.height);
  ctx.drawImage(layer, 0, 0);
  if (state.path) polyline(ctx, state.path.map(toPixel));
  if (state.hover) crosshair(ctx, toPixel(state.hover));
  state.clicks.forEach((p, i) => marker(ctx, toPixel(p), "AB"[i]));
  if (state.drawn) marker(ctx, toPixel(state.drawn), "★");
}

function polyline(ctx, pixels) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 2;
  ctx.beginPath();
  pixels.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
  ctx.stroke();
}

function crosshair(ctx, [px, py]) {  // where the decoded image comes from
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.arc(px, py, 6, 0, 2 * Math.PI);
  ctx.moveTo(px - 11, py); ctx.lineTo(px - 3, py); ctx.moveTo(px + 3, py); ctx.lineTo(px + 11, py);
  ctx.moveTo(px, py - 11); ctx.lineTo(px, py - 3); ctx.moveTo(px, py + 3); ctx.lineTo(px, py + 11);
  ctx.stroke();
}

function marker(ctx, [px, py], text) {
  ctx.fillStyle = "#fff";
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 2;
  ctx.beginPath();
  ctx.arc(px, py, 9, 0, 2 * Math.PI);
  ctx.fill();
  ctx.stroke();
  ctx.fillStyle = "#000";
  ctx.font = "bold 12px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, px, py + 1);
  ctx.textAlign = "start";
  ctx.textBaseline = "alphabetic";
}

function zoom(event) {
  event.preventDefault();
  const pixels = event.deltaMode === 1 ? 16 * event.deltaY : event.deltaY;  // Firefox may count lines
  const factor = Math.exp(pixels * 0.001);
  const [cx, cy] = eventPlane(event);
  const limit = state.run.limit;
  state.view = state.view.map(([lo, hi], axis) => {
    const c = axis ? cy : cx;
    return [Math.max(-limit, c + (lo - c) * factor), Math.min(limit, c + (hi - c) * factor)];
  });
  drawPoints();
  render();
}

// ---- decoding under the cursor, the label, the interpolation ----------------------------------------

const fmt = (values) => "(" + values.slice(0, 4).map((v) => v.toFixed(2)).join(", ") +
  (values.length > 4 ? ", …" : "") + ")";

const decodeLatest = latest(async (where) => {
  const run = state.run;
  const data = await api("/api/decode", withRun(where));
  if (run !== state.run) return;  // the run was switched meanwhile
  $("decoded").src = data.image;
  $("decoded-at").textContent = `plane ${fmt(data.plane)}` +
    (state.run.latent_dim > 2 ? ` → z ${fmt(data.z)}` : "");
});

function showCurrent(where) {
  state.current = where;
  if (where.plane) {
    state.hover = where.plane;
    scatter.dataset.hover = where.plane.map((v) => v.toFixed(4)).join(",");
    render();
  }
  decodeLatest(where);
}

async function onClick(event) {
  const point = eventPlane(event);
  state.clicks = state.clicks.length === 2 ? [point] : [...state.clicks, point];
  state.path = null;
  render();
  if (state.clicks.length < 2) return;
  const [start, end] = state.clicks;
  const run = state.run;
  const data = await api("/api/interpolate",
    withRun({start: {plane: start}, end: {plane: end}, steps: 10}));
  if (run !== state.run) return;  // the run was switched meanwhile
  state.path = data.plane;
  render();
  $("strip").replaceChildren(...data.images.map((src) => Object.assign(new Image(), {src})));
  $("strip-caption").textContent = `A ${fmt(start)} → B ${fmt(end)}, ${data.images.length} steps, a straight line in z`;
}

function buildLabels() {
  const buttons = state.run.classes.map((name, k) => {
    const button = Object.assign(document.createElement("button"), {type: "button", textContent: name});
    button.setAttribute("role", "radio");
    button.dataset.label = k;
    button.addEventListener("click", () => pickLabel(k));
    return button;
  });
  $("labels").replaceChildren(...buttons);
  $("label-picker").hidden = !state.run.conditional;
  pickLabel(0, false);
}

function pickLabel(k, redecode = true) {
  state.label = k;
  for (const button of $("labels").children) {
    button.setAttribute("aria-checked", String(Number(button.dataset.label) === k));
  }
  if (redecode && state.current) decodeLatest(state.current);
}

// ---- the drawing pad ------------------------------------------------------------------------------

const pad = $("pad");
let drawing = false;

function padImage() {  // the pad shrunk to the run's image size, grey replicated over its channels
  const [channels, height, width] = state.run.image_shape;
  const small = Object.assign(document.createElement("canvas"), {width, height});
  const ctx = small.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(pad, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const rows = Array.from({length: height}, (_, r) =>
    Array.from({length: width}, (_, c) => Math.round(rgba[4 * (r * width + c)] / 255 * 1000) / 1000));
  return Array.from({length: channels}, () => rows);
}

const encodeLatest = latest(async () => {
  const run = state.run;
  const data = await api("/api/encode", withRun({image: padImage()}));
  if (run !== state.run) return;
  state.drawn = data.plane;
  scatter.dataset.drawn = data.plane.join(",");
  $("recon").src = data.image;
  $("drawn-at").textContent = `encoder mean z ${fmt(data.z)}, plane ${fmt(data.plane)}`;
  state.current = {z: data.z};
  render();
});

function stroke(event) {
  const box = pad.getBoundingClientRect();
  const x = (event.clientX - box.left) * pad.width / box.width;
  const y = (event.clientY - box.top) * pad.height / box.height;
  const ctx = pad.getContext("2d");
  ctx.lineTo(x, y);
  ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(x, y);
}

function startStroke(event) {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  const ctx = pad.getContext("2d");
  Object.assign(ctx, {strokeStyle: "#fff", lineWidth: 18, lineCap: "round", lineJoin: "round"});
  ctx.beginPath();
  stroke(event);
}

function clearPad() {
  const ctx = pad.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  state.drawn = null;
  delete scatter.dataset.drawn;
  $("recon").removeAttribute("src");
  if (state.points) render();
}

// ---- the manifold grid ---------------------------------------------------------------------------

async function showGrid() {
  const n = Number($("grid-n").value);
  const [x_range, y_range] = state.view;
  const run = state.run;
  const data = await api("/api/grid", withRun({n, x_range, y_range}));
  if (run !== state.run) return;
  $("grid").src = data.image;
  const span = ([lo, hi]) => `${lo.toFixed(2)} … ${hi.toFixed(2)}`;
  $("grid-caption").textContent = `${n} × ${n} decoded images over the visible range: ` +
    `x ${span(x_range)} left to right, y ${span(y_range)} bottom to top` + (state.run.projection === "pca" ?
    "; the plane point (x, y) is z = x·PC1 + y·PC2" : "");
}

// ---- runs ------------------------------------------------------------------------------------------

function describe(run, count) {
  const axes = run.projection === "pca"
    ? `PCA of the ${run.latent_dim}-dimensional latent: the plane of the two leading principal ` +
      `components (${run.explained_variance.map((v) => (100 * v).toFixed(0) + "%").join(" + ")} of ` +
      `the variance), through z = 0 as in the report; the point (x, y) is decoded at z = x·PC1 + y·PC2`
    : "z₁ across, z₂ up (latent size 2, no projection)";
  return `Encoder means μ of ${count.toLocaleString()} test images of ${run.dataset}, coloured by ` +
    `class. Run ${run.name}: ${run.model}. ${axes}.`;
}

function buildLegend(run) {
  $("legend").replaceChildren(...run.classes.map((name, k) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.style.background = PALETTE[k % PALETTE.length];
    item.append(swatch, name);
    return item;
  }));
}

async function loadRun(index) {
  state.run = state.info.runs[index];
  state.points = await api(`/api/points?run=${index}`);
  Object.assign(state, {view: state.run.view.map((r) => [...r]), current: null, clicks: [], path: null, hover: null});
  delete scatter.dataset.hover;
  for (const [id, text] of Object.entries(DEFAULT_TEXT)) $(id).textContent = text;  // nothing of the last run stays
  $("caption").textContent = describe(state.run, state.points.x.length);
  buildLegend(state.run);
  buildLabels();
  clearPad();
  for (const id of ["decoded", "grid"]) $(id).removeAttribute("src");
  $("strip").replaceChildren();
  drawPoints();
  render();
  scatter.dataset.points = state.points.x.length;
  showStatus(`${state.run.name}: ${state.run.model} on ${state.run.dataset}, latent size ${state.run.latent_dim}`);
}

async function start() {
  state.info = await api("/api/info");
  const picker = $("run");
  picker.replaceChildren(...state.info.runs.map((run) =>
    Object.assign(document.createElement("option"), {value: run.index, textContent: `${run.name} (${run.model})`})));
  $("run-picker").hidden = state.info.runs.length < 2;
  picker.addEventListener("change", () => loadRun(Number(picker.value)).catch(showError));
  for (let n = 5; n <= state.info.max_grid; n += 2) {
    $("grid-n").append(Object.assign(document.createElement("option"), {value: n, textContent: n, selected: n === 15}));
  }
  scatter.addEventListener("pointermove", (e) => state.points && showCurrent({plane: eventPlane(e)}));
  scatter.addEventListener("click", (e) => onClick(e).catch(showError));
  scatter.addEventListener("wheel", zoom, {passive: false});
  pad.addEventListener("pointerdown", startStroke);
  pad.addEventListener("pointermove", (e) => { if (drawing) { stroke(e); encodeLatest(true); } });
  pad.addEventListener("pointerup", () => { drawing = false; encodeLatest(true); });
  $("clear-pad").addEventListener("click", clearPad);
  $("reset-view").addEventListener("click", () => { state.view = state.run.view.map((r) => [...r]); drawPoints(); render(); });
  $("show-grid").addEventListener("click", () => showGrid().catch(showError));
  await loadRun(0);
}

start().catch(showError);
