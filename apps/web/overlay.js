// The desktop demo's overlay (apps/overlay.py) on a canvas: top-k labels on probability bars (or
// "not sure" and the guesses dimmed), inference ms, smoothed FPS, backend and precision, in a
// darkened box at the top left.

const BAR = "rgb(40, 150, 70)";
const GUESS_BAR = "rgb(60, 90, 120)"; // slate blue: no antialiased grey text has its colour
const GUESS = "rgb(150, 150, 150)";
const DIM = 0.35; // brightness left under the panel

export function drawOverlay(ctx, prediction, fps, runtime) {
  const head = prediction.abstained ? ["not sure"] : [];
  const guesses = prediction.topk.map((t) => `${(t.prob * 100).toFixed(1).padStart(5)}%  ${t.label}`);
  const lines = [...head, ...guesses, `${prediction.ms.toFixed(1)} ms  ${fps.toFixed(1)} FPS`, runtime];
  const font = Math.round(Math.min(Math.max(Math.min(ctx.canvas.width, ctx.canvas.height) / 28, 11), 40));
  const row = Math.round(font * 1.45);
  const pad = Math.round(font / 2);
  ctx.font = `${font}px ui-monospace, "DejaVu Sans Mono", monospace`;
  const width = Math.max(...lines.map((line) => ctx.measureText(line).width)) + 2 * pad;
  ctx.fillStyle = `rgba(0, 0, 0, ${1 - DIM})`;
  ctx.fillRect(0, 0, width, row * lines.length + pad);
  ctx.fillStyle = prediction.abstained ? GUESS_BAR : BAR;
  prediction.topk.forEach((t, i) => ctx.fillRect(0, pad / 2 + (i + head.length) * row + 1, t.prob * width, row - 3));
  ctx.textBaseline = "middle";
  lines.forEach((line, i) => {
    const dimmed = prediction.abstained && i >= 1 && i <= guesses.length;
    ctx.fillStyle = dimmed ? GUESS : "white";
    ctx.fillText(line, pad, pad / 2 + (i + 0.5) * row);
  });
}
