// ONNX Runtime Web sessions for the artifacts listed in models.json: WebGPU where the browser has an
// adapter, else WASM SIMD, multi-threaded when the page is cross-origin isolated, else one thread.
/* global ort */

const MAX_THREADS = 4;

// The models the server or export lists: [{name, precision, url, manifest}], first = default.
export async function listModels() {
  return (await fetchOk("models.json")).json();
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status} ${response.statusText}`.trim());
  return response;
}

// WASM threads: ?threads=N, else up to MAX_THREADS cores when SharedArrayBuffer is allowed, else 1.
function wasmThreads(requested) {
  if (!self.crossOriginIsolated) return 1;
  return requested || Math.min(navigator.hardwareConcurrency || 1, MAX_THREADS);
}

async function backends(requested) {
  if (requested) return [requested];
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  return adapter ? ["webgpu", "wasm"] : ["wasm"];
}

// Fetch the artifact and its manifest, open a session on the first backend that takes it.
// options: {backend: "webgpu" | "wasm" (default: best available), threads: N}
export async function loadModel(entry, options = {}) {
  const [manifest, bytes] = await Promise.all([
    fetchOk(entry.manifest).then((r) => r.json()),
    fetchOk(entry.url).then((r) => r.arrayBuffer()),
  ]);
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  ort.env.wasm.numThreads = wasmThreads(options.threads);
  const failures = [];
  for (const backend of await backends(options.backend)) {
    try {
      const session = await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: [backend] });
      const threads = backend === "wasm" ? ort.env.wasm.numThreads : null;
      return { entry, manifest, session, backend, threads, meta: manifest.model, precision: manifest.precision };
    } catch (err) {
      failures.push(`${backend}: ${err.message || err}`);
    }
  }
  throw new Error(`cannot run ${entry.name}: ${failures.join("; ")}`);
}

export function describeBackend(model) {
  return model.backend === "wasm" ? `wasm ${model.threads} thread${model.threads === 1 ? "" : "s"}` : model.backend;
}

// One forward pass: logits and the time of session.run in ms.
export async function infer(model, input) {
  const size = model.meta.input_size;
  const feeds = { [model.session.inputNames[0]]: new ort.Tensor("float32", input, [1, 3, size, size]) };
  const start = performance.now();
  const outputs = await model.session.run(feeds);
  const ms = performance.now() - start;
  return { logits: outputs[model.session.outputNames[0]].data, ms };
}

// The model's "not sure" rule (common/abstain.py): top-1 probability below the measured floor.
export function abstains(meta, top1Prob) {
  return Boolean(meta.abstain) && top1Prob < meta.abstain.threshold;
}

const DATASETS = { cifar10: "CIFAR-10 photos", "fashion-mnist": "Fashion-MNIST clothing" };

// One line for the page: the classes, their data set, the frame preprocessing and the rule.
export function describeModel(meta) {
  const labels = meta.labels ?? [];
  const dataset = DATASETS[String(meta.dataset).split(":")[0]] ?? meta.dataset ??
    (meta.num_classes === 1000 ? "ImageNet" : "its training data");
  const named = labels.length && labels.length <= 12 ? labels.join(", ") : `${meta.num_classes} classes`;
  const p = meta.preprocess;
  const rule = meta.abstain
    ? `says "not sure" below ${(meta.abstain.threshold * 100).toFixed(0)}% top-1 probability`
    : "no abstention rule: always names its best guess";
  return `Knows ${named} (${dataset}). Each frame: shorter side resized to ${p.resize} px (${p.interpolation}), ` +
    `centre ${p.crop}×${p.crop} crop${p.grayscale ? ", grey" : ""}. ${rule[0].toUpperCase()}${rule.slice(1)}.`;
}

// Softmax of the logits (in float64), the k most likely (label, probability) pairs first.
export function topk(logits, labels, k) {
  const max = Math.max(...logits);
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const total = exp.reduce((a, b) => a + b, 0);
  return exp
    .map((v, i) => ({ label: labels?.[i] ?? `class ${i}`, prob: v / total, index: i }))
    .sort((a, b) => b.prob - a.prob || a.index - b.index)
    .slice(0, k);
}
