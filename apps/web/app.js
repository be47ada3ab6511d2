// The page: camera (rear preferred) or a picked video/image -> preprocess -> ONNX Runtime Web -> overlay.
// URL parameters: model=<name in models.json>, backend=webgpu|wasm, threads=N, topk=K.
// For automation the latest result is JSON in #result and window.lastRun holds the frame's pixels,
// the model input and the logits.
import { abstains, describeBackend, describeModel, infer, listModels, loadModel, topk } from "./model.js";
import { drawOverlay } from "./overlay.js";
import { preprocess } from "./preprocess.js";

const params = new URLSearchParams(location.search);
const options = { backend: params.get("backend"), threads: Number(params.get("threads")) || null };
const TOPK = Number(params.get("topk")) || 3;
const MIN_VIEW = 480; // shorter side of the view in canvas pixels, so the overlay stays readable
const SMOOTHING = 0.9; // of the FPS, as in the desktop demo
const MAX_FRAME_PIXELS = 4096 * 4096; // Safari's canvas limit: a larger photo is scaled down to fit it

const $ = (id) => document.getElementById(id);
const view = $("view").getContext("2d");
const grab = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
const video = $("video");
const state = { models: [], model: null, source: null, notes: {}, frames: 0, fps: 0, last: 0 };

function note(key, text, isError = false) {
  state.notes[key] = { text, isError };
  const notes = Object.values(state.notes).filter((n) => n.text);
  $("status").textContent = notes.map((n) => n.text).join(" · ");
  $("status").classList.toggle("error", notes.some((n) => n.isError));
}

function fail(key, err) {
  const text = `error: ${err.message || err}`;
  note(key, text, true);
  $("result").textContent = JSON.stringify({ error: text });
}

// --- model -----------------------------------------------------------------------------------
async function useModel(entry) {
  state.model = null;
  note("model", `loading ${entry.name}…`);
  try {
    state.model = await loadModel(entry, options);
    note("model", `${entry.name}: ${state.model.precision} on ${describeBackend(state.model)}`);
    $("knows").textContent = describeModel(state.model.meta);
    if (state.source?.kind === "image") state.source.done = false;
  } catch (err) {
    fail("model", err);
  }
}

async function start() {
  if (typeof ort === "undefined") {
    fail("model", new Error("ONNX Runtime Web (ort/ort.min.js) did not load: run scripts/setup.sh, then python apps/web.py"));
    return;
  }
  try {
    state.models = await listModels();
  } catch (err) {
    fail("model", err);
    return;
  }
  const select = $("model");
  for (const entry of state.models) select.add(new Option(`${entry.precision}: ${entry.name}`, entry.name));
  const wanted = params.get("model");
  const entry = wanted ? state.models.find((m) => m.name === wanted) : state.models[0];
  if (!entry) {
    fail("model", new Error(`no model named ${wanted} in models.json (${state.models.map((m) => m.name).join(", ")})`));
    return;
  }
  select.value = entry.name;
  select.onchange = () => useModel(state.models.find((m) => m.name === select.value));
  await useModel(entry);
}

// --- sources ---------------------------------------------------------------------------------
function stopVideo() {
  video.pause();
  video.srcObject?.getTracks().forEach((track) => track.stop());
  video.srcObject = null;
  if (video.src) URL.revokeObjectURL(video.src);
  video.removeAttribute("src");
}

async function startCamera() {
  stopVideo();
  state.source = null;
  if (!navigator.mediaDevices?.getUserMedia) {
    note("source", "the camera needs https or localhost (python apps/web.py --https); pick a file instead", true);
    return;
  }
  note("source", "camera: waiting for permission…");
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: { ideal: "environment" }, width: { ideal: 640 }, height: { ideal: 480 } },
    });
    await video.play();
    state.source = { kind: "camera", name: "camera", element: video };
    note("source", "camera");
  } catch (err) {
    const why = { NotAllowedError: "permission denied", NotFoundError: "no camera found" }[err.name] || err.message;
    note("source", `camera: ${why}; pick a video or image file instead`, true);
  }
}

async function openFile(file) {
  stopVideo();
  state.source = null;
  try {
    if (file.type.startsWith("image/")) {
      // Pixels as Python reads the file (data.load_image, cv2.imread): EXIF orientation applied (the
      // default), the embedded colour profile ignored (Chromium would convert to sRGB by default).
      const element = await createImageBitmap(file, { colorSpaceConversion: "none" });
      state.source = { kind: "image", name: file.name, element, done: false };
    } else {
      Object.assign(video, { src: URL.createObjectURL(file), loop: true });
      await video.play();
      state.source = { kind: "video", name: file.name, element: video };
    }
    note("source", file.name);
  } catch (err) {
    const heic = /\.hei[cf]$/i.test(file.name) ? " (a HEIC photo this browser cannot decode: convert it to JPEG)" : "";
    note("source", `cannot open ${file.name}: ${err.message || err}${heic}`, true);
  }
}

function frameSize(source) {
  const el = source.element;
  const [width, height] = source.kind === "image" ? [el.width, el.height] : [el.videoWidth, el.videoHeight];
  const scale = Math.min(1, Math.sqrt(MAX_FRAME_PIXELS / (width * height)));
  return [Math.floor(width * scale), Math.floor(height * scale)];
}

// --- the frame loop --------------------------------------------------------------------------
async function step(source, model) {
  const [width, height] = frameSize(source);
  if (grab.canvas.width !== width || grab.canvas.height !== height) Object.assign(grab.canvas, { width, height });
  grab.imageSmoothingQuality = "high"; // only a photo over MAX_FRAME_PIXELS is scaled here
  grab.drawImage(source.element, 0, 0, width, height);
  const frame = grab.getImageData(0, 0, width, height);
  const input = preprocess(frame.data, width, height, model.meta.preprocess);
  const { logits, ms } = await infer(model, input);
  const best = topk(logits, model.meta.labels, TOPK);
  const abstained = abstains(model.meta, best[0].prob);
  const now = performance.now();
  const instant = 1000 / Math.max(now - state.last, 1e-6);
  state.fps = state.frames ? SMOOTHING * state.fps + (1 - SMOOTHING) * instant : instant;
  state.last = now;
  state.frames += 1;

  const scale = Math.max(1, MIN_VIEW / Math.min(width, height));
  Object.assign(view.canvas, { width: Math.round(width * scale), height: Math.round(height * scale) });
  view.drawImage(grab.canvas, 0, 0, view.canvas.width, view.canvas.height);
  drawOverlay(view, { topk: best, ms, abstained }, state.fps, `${describeBackend(model)} · ${model.precision}`);

  const result = {
    top1: best[0].label, prob: Number(best[0].prob.toFixed(6)), ms: Number(ms.toFixed(3)), backend: model.backend,
    threads: model.threads, precision: model.precision, source: source.name, frames: state.frames, abstained,
  };
  $("result").textContent = JSON.stringify(result);
  window.lastRun = { frame, input, logits, result };
}

async function loop() {
  for (;;) {
    await new Promise(requestAnimationFrame);
    const { source, model } = state;
    const ready = source && model && (source.kind === "image" ? !source.done : video.readyState >= 2);
    if (!ready) continue;
    if (source.kind === "image") source.done = true;
    try {
      await step(source, model);
    } catch (err) {
      fail("run", err);
      return;
    }
  }
}

$("camera").onclick = startCamera;
$("file").onchange = (event) => event.target.files[0] && openFile(event.target.files[0]);
start();
startCamera();
loop();
