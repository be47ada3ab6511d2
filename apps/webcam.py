"""Live classification demo: camera, stream, video, image or folder -> annotated frames.

    python apps/webcam.py                                      # camera 0, default model, in a window
    python apps/webcam.py --source clip.mp4 --weights m.onnx --headless --output clip_annotated.mp4
    python apps/webcam.py --source photos/ --headless --json   # JSON lines + annotated images
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps import AppError  # noqa: E402  (after the sys.path line above)
from common.cli import Parser, positive, run_cli  # noqa: E402
from common.defaults import SHIPPED_CHECKPOINT  # noqa: E402
from apps.classifier import Classifier, Prediction, open_classifier  # noqa: E402
from apps.outputs import ImageSink, VideoSink, open_sink  # noqa: E402
from apps.overlay import draw_overlay  # noqa: E402
from apps.sources import Frame, Grabber, Source, open_source  # noqa: E402
from apps.stats import Stats  # noqa: E402
from apps.window import Window, open_window  # noqa: E402
from common.quiet import quiet_third_party  # noqa: E402

DEFAULT_THREADS = max(1, (os.cpu_count() or 2) - 1)  # one core stays free for capture, decoding, drawing


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(description="Classify camera, stream, video or image frames with a shunted-edge "
               "model and show (or write) them annotated.")
    p.add_argument("--source", default="0", help="camera index (default 0), video file, image, folder of "
                   "images or stream URL (rtsp://, http://)")
    p.add_argument("--weights", type=Path, default=SHIPPED_CHECKPOINT, help="artifact: .pt/.pth/.safetensors "
                   "checkpoint, .onnx, .pte, or .mlpackage on macOS (default: "
                   f"{SHIPPED_CHECKPOINT.relative_to(ROOT)})")
    p.add_argument("--threads", type=positive, default=DEFAULT_THREADS, help="inference threads (default: "
                   f"cores - 1 = {DEFAULT_THREADS}, leaving a core to capture, decode and draw)")
    p.add_argument("--topk", type=positive, default=3, help="labels shown per frame (default 3)")
    p.add_argument("--headless", action="store_true", help="no window: write annotated output and print "
                   "per-frame results (automatic when there is no display)")
    p.add_argument("--output", type=Path, help="headless: annotated video (.mp4/.avi) for video and camera "
                   "sources, a folder for images (default <source>_annotated.mp4 or <source>_annotated/); "
                   "window: the snapshot folder (default: current folder)")
    p.add_argument("--force", action="store_true", help="replace an existing --output")
    p.add_argument("--json", action="store_true", help="headless: print JSON lines instead of text")
    p.add_argument("--max-frames", type=positive, help="stop after this many frames")
    return p.parse_args(argv)


def report(frame: Frame, prediction: Prediction, as_json: bool) -> None:
    if as_json:
        line = json.dumps({"frame": frame.index, "source": frame.name, "inference_ms": round(prediction.ms, 3),
                           "topk": [{"label": label, "prob": round(prob, 6)} for label, prob in prediction.topk],
                           "abstained": prediction.abstained})
    else:
        labels = ", ".join(f"{label} {prob:.1%}" for label, prob in prediction.topk)
        labels = f"not sure (guesses: {labels})" if prediction.abstained else labels
        line = f"frame {frame.index} {frame.name}: {labels} ({prediction.ms:.1f} ms)"
    print(line, flush=True)


def classify(source: Source, classifier: Classifier, out: Window | VideoSink | ImageSink,
             args: argparse.Namespace) -> dict:
    """The frame loop until the source ends, the user quits, Ctrl+C or --max-frames; returns the summary."""
    grabber, stats = Grabber(source), Stats()
    try:
        while (frame := grabber.get()) is not None:
            prediction = classifier(frame.image)
            stats.tick(prediction.ms)
            image = draw_overlay(frame.image, prediction, stats.fps, classifier.runtime, classifier.knows())
            if isinstance(out, Window):
                if not out.show(image):
                    break
            else:
                out.write(frame, image)
                report(frame, prediction, args.json)
            if stats.frames == args.max_frames:
                break
    except KeyboardInterrupt:  # the normal way to end a headless camera run: keep what was written
        pass
    finally:
        grabber.stop()
    return stats.summary(source.skipped, grabber.dropped)


def print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"summary": summary}), flush=True)
        return
    s = summary
    print(f"summary: {s['frames']} frames, {s['skipped']} skipped (corrupt), {s['dropped']} dropped (stale) | "
          f"inference mean {s['inference_ms_mean']:.2f} ms, median {s['inference_ms_median']:.2f} ms | "
          f"end-to-end {s['fps']:.1f} FPS over {s['seconds']:.1f} s | {s['runtime']}")
    rule = (f'says "not sure" below top-1 probability {s["not_sure_below"]:.2f}' if s["not_sure_below"] is not None
            else "no abstention rule (always names its best guess)")
    print(f"model: {s['model']}; {rule}")
    if "output" in s:
        print(f"wrote {s['output']}" if s["output"] else "nothing written (no frames)")


def run(args: argparse.Namespace) -> int:
    source = open_source(args.source)
    try:
        if not args.weights.exists():
            what = "the default model" if args.weights == SHIPPED_CHECKPOINT else "weights"
            raise AppError(f"{what} {args.weights} not found; pass --weights path/to/artifact (.pt/.pth/"
                           f".safetensors checkpoint, .onnx, .pte, or .mlpackage on macOS)")
        out = None if args.headless else open_window(args.output or Path.cwd(), step=source.kind == "images",
                                                      fps=0.0 if source.live else source.fps)
        if out is None:
            out = open_sink(source, args.output, args.force)
        classifier = open_classifier(args.weights, args.threads, args.topk)
        if not args.headless and not isinstance(out, Window):
            print(f"note: no display; running headless, writing {out.path}", file=sys.stderr)
    except BaseException:
        source.close()
        raise
    try:
        summary = classify(source, classifier, out, args)
        summary["runtime"] = classifier.runtime
        summary["model"] = classifier.knows()
        summary["not_sure_below"] = classifier.rule.threshold if classifier.rule else None
        if isinstance(out, Window):
            out.close()
        else:
            written = out.close()
            summary["output"] = str(written) if written else None
    except BaseException:
        if not isinstance(out, Window):
            out.discard()
        raise
    print_summary(summary, args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_third_party()
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
