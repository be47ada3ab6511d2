// In-page latency of one model (benchmarks/web_latency.py drives it): ?model=<name>&backend=wasm&threads=N.
// Once loaded, window.bench(runs) times `runs` calls of session.run with performance.now and returns them.
import { describeBackend, infer, listModels, loadModel } from "./model.js";

const params = new URLSearchParams(location.search);
const show = (value) => (document.getElementById("result").textContent = JSON.stringify(value));

try {
  const name = params.get("model");
  const entry = (await listModels()).find((m) => m.name === name);
  if (!entry) throw new Error(`no model named ${name} in models.json`);
  const model = await loadModel(entry, { backend: params.get("backend"), threads: Number(params.get("threads")) || null });
  const size = model.meta.input_size;
  const input = Float32Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i)); // fixed, not constant
  window.bench = async (runs) => {
    const times = [];
    for (let i = 0; i < runs; i++) times.push((await infer(model, input)).ms);
    return times;
  };
  show({ ready: true, backend: model.backend, threads: model.threads, precision: model.precision,
         label: describeBackend(model), userAgent: navigator.userAgent });
} catch (err) {
  show({ error: `${err.message || err}` });
}
