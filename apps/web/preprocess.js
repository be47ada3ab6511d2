// The preprocessing spec of data/preprocess.py, implemented once for the browser and bit-exact with it:
// grey as PIL's "L", the shorter side resized with PIL's two-pass fixed-point filter, centre crop,
// then (v / 255 - mean) / std in float32. Only the cropped pixels are computed.

const PRECISION_BITS = 22; // PIL's 8-bit resampling: 32 - 8 - 2
const FILTERS = {
  bilinear: { support: 1, weight: (x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0) },
  bicubic: {
    support: 2,
    weight(x) {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};

// Python's round(): halves to even.
function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// Fixed-point taps of output pixels first .. first + count - 1 of an inSize -> outSize resize.
function taps(inSize, outSize, filter, first, count) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const size = Math.ceil(support) * 2 + 1;
  const ss = 1 / filterScale;
  const start = new Int32Array(count);
  const length = new Int32Array(count);
  const weights = new Float64Array(count * size);
  for (let i = 0; i < count; i++) {
    const center = (first + i + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    const w = new Float64Array(n);
    let total = 0;
    for (let x = 0; x < n; x++) total += w[x] = filter.weight((x + lo - center + 0.5) * ss);
    for (let x = 0; x < n; x++) {
      const k = total !== 0 ? w[x] / total : w[x];
      weights[i * size + x] = Math.trunc(k * (1 << PRECISION_BITS) + (k < 0 ? -0.5 : 0.5));
    }
    start[i] = lo;
    length[i] = n;
  }
  return { start, length, weights, size };
}

function clip8(sum) {
  return Math.min(255, Math.max(0, Math.floor(sum / (1 << PRECISION_BITS))));
}

// One uint8 plane (width x height) -> the crop x crop window of its resize, horizontal pass first.
function resample(plane, width, cols, rows) {
  const first = rows.start[0];
  const last = rows.start[rows.start.length - 1] + rows.length[rows.length.length - 1];
  const n = cols.start.length;
  const temp = new Uint8Array((last - first) * n);
  for (let y = first; y < last; y++) {
    for (let i = 0; i < n; i++) {
      let sum = 1 << (PRECISION_BITS - 1);
      for (let x = 0, p = y * width + cols.start[i]; x < cols.length[i]; x++) sum += plane[p + x] * cols.weights[i * cols.size + x];
      temp[(y - first) * n + i] = clip8(sum);
    }
  }
  const out = new Uint8Array(rows.start.length * n);
  for (let j = 0; j < rows.start.length; j++) {
    for (let i = 0; i < n; i++) {
      let sum = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < rows.length[j]; y++) sum += temp[(rows.start[j] - first + y) * n + i] * rows.weights[j * rows.size + y];
      out[j * n + i] = clip8(sum);
    }
  }
  return out;
}

function planes(rgba, grayscale) {
  const count = rgba.length / 4;
  const channels = grayscale ? [new Uint8Array(count)] : [0, 1, 2].map(() => new Uint8Array(count));
  for (let i = 0, p = 0; i < count; i++, p += 4) {
    if (grayscale) channels[0][i] = (rgba[p] * 19595 + rgba[p + 1] * 38470 + rgba[p + 2] * 7471 + 0x8000) >>> 16;
    else for (let c = 0; c < 3; c++) channels[c][i] = rgba[p + c];
  }
  return channels;
}

// RGBA pixels (ImageData.data) of a width x height image -> Float32Array (3, crop, crop) for the model.
export function preprocess(rgba, width, height, spec) {
  const filter = FILTERS[spec.interpolation];
  if (!filter) throw new Error(`unsupported interpolation ${spec.interpolation}`);
  const { resize, crop } = spec;
  const longer = Math.trunc((resize * Math.max(width, height)) / Math.min(width, height));
  const [outW, outH] = width <= height ? [resize, longer] : [longer, resize];
  const cols = taps(width, outW, filter, roundHalfEven((outW - crop) / 2), crop);
  const rows = taps(height, outH, filter, roundHalfEven((outH - crop) / 2), crop);
  const resized = planes(rgba, spec.grayscale).map((plane) => resample(plane, width, cols, rows));
  const out = new Float32Array(3 * crop * crop);
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(spec.mean[c]);
    const std = Math.fround(spec.std[c]);
    const table = Float32Array.from({ length: 256 }, (_, v) => Math.fround(Math.fround(v / 255) - mean) / std);
    const plane = resized[spec.grayscale ? 0 : c];
    for (let i = 0; i < plane.length; i++) out[c * plane.length + i] = table[plane[i]];
  }
  return out;
}
