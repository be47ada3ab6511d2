"""Two independent Apple paths on one checkpoint: Core AI fp16 (Apple's runtime) against Core ML fp16
(Core ML on macOS, the project's numpy ML Program evaluator on Linux), on the same images.

    python benchmarks/apple_crosscheck.py artifacts/m_32_fp16.aimodel artifacts/m_32_fp16.mlpackage --images 500

Agreement between two paths that share no code is evidence that each computes the model.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.accuracy import model_dataset  # noqa: E402
from common.cli import Parser, run_cli  # noqa: E402

PAIR = ("coreai:fp16", "coreml:fp16")  # the report's specs compared


def cross_check(coreai: Path, coreml: Path, images: np.ndarray) -> dict:
    """Top-1 agreement, per-image cosine (median, 5th percentile, worst) and max |diff| of the logits."""
    from runtime import ArtifactError, load_artifact
    runners = [load_artifact(coreai), load_artifact(coreml)]
    if runners[0].meta["preprocess"] != runners[1].meta["preprocess"]:
        raise ArtifactError(f"{coreai.name} and {coreml.name} expect different preprocessing; convert both "
                            f"from the same checkpoint")
    a, b = (runner.judged_outputs(images) for runner in runners)
    return compare(a, b, {"coreai": str(coreai), "coreml": str(coreml), "engines": [r.engine for r in runners]})


def compare(a: np.ndarray, b: np.ndarray, about: dict) -> dict:
    """The cross-check's figures for Core AI logits ``a`` and Core ML logits ``b`` of the same images."""
    from common.contract import per_image_cosine
    cos = per_image_cosine(a, b)
    return {"status": "ok", **about, "images": len(a), "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "cosine_median": float(np.median(cos)), "cosine_p5": float(np.percentile(cos, 5)),
            "cosine_min": float(cos.min()), "max_abs_diff": float(np.abs(a.astype(np.float64) - b).max())}


def describe(result: dict) -> str:
    if result.get("status") == "error":
        return f"Core AI fp16 vs Core ML fp16 cross-check failed: {result['error']}"
    return (f"Core AI fp16 ({result['engines'][0]}) vs Core ML fp16 ({result['engines'][1]}) on {result['images']} "
            f"test images: top-1 agreement {result['top1_agreement']:.2%}, cosine median "
            f"{result['cosine_median']:.6f}, 5th percentile {result['cosine_p5']:.6f}, worst "
            f"{result['cosine_min']:.6f}, max |diff| {result['max_abs_diff']:.3g}")


def first_images(artifact: Path, data: str, split: str, n: int | None) -> np.ndarray:
    """The first ``n`` images (None: all) of ``data``'s ``split``, preprocessed as ``artifact`` expects."""
    from benchmarks.accuracy import artifact_spec
    from benchmarks.eval_set import EvalSet
    eval_set = EvalSet(data, split, artifact_spec(artifact))
    return next(eval_set.batches(n or len(eval_set)))


def report_cross_check(jobs: list, data: str, split: str, n: int | None) -> dict | None:
    """The report's built ``coreai:fp16`` and ``coreml:fp16`` rows cross-checked (None: not both built)."""
    pair = [next((job for job in jobs if job.spec == spec and not job.error), None) for spec in PAIR]
    if None in pair:
        return None
    try:
        if all(job.judged_logits is not None for job in pair):  # the judges' outputs, on the same first images
            return compare(*(job.judged_logits for job in pair), {
                "coreai": str(pair[0].path), "coreml": str(pair[1].path),
                "engines": [job.accuracy["engine"] for job in pair]})
        return cross_check(*(job.path for job in pair), first_images(pair[0].path, data, split, n))
    except Exception as err:  # a failing cross-check is a line of the report, not its end
        return {"status": "error", "error": f"{type(err).__name__}: {err}"[:600]}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description="Core AI fp16 vs Core ML fp16 logits on the same test images.")
    parser.add_argument("coreai", type=Path, help=".aimodel (convert/to_coreai.py --precision fp16)")
    parser.add_argument("coreml", type=Path, help=".mlpackage (convert/to_coreml.py)")
    parser.add_argument("--data", help="'cifar10', 'fashion-mnist' or an image folder (default: the model's dataset)")
    parser.add_argument("--images", type=int, default=500, help="test images (default 500)")
    args = parser.parse_args(argv)

    def run() -> None:
        data = args.data or model_dataset(args.coreai)
        images = first_images(args.coreai, data, "test", args.images)
        print(describe(cross_check(args.coreai, args.coreml, images)))
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
