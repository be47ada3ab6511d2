"""Accuracy of any artifact on a dataset, and its agreement with the fp32 PyTorch reference.

    python benchmarks/accuracy.py artifacts/nano_32_fp32.onnx                  # its model's dataset, test split
    python benchmarks/accuracy.py a.onnx b.pte --reference weights/x.pt --data /data/imagenet --limit 5000

Top-1/top-5 in %, top-1 agreement with the fp32 PyTorch model (share of images where both predict
the same class) and delta top-1 (artifact minus reference, on the same images). The reference is
evaluated by ``train.evaluate.evaluate`` (CUDA when present); the images come from ``data``
(``build_dataset``, the project's one preprocessing implementation, with the artifact's spec).
Core ML runs through Core ML on macOS; on Linux through the numpy ML Program evaluator on the
first ``--coreml-limit`` images (slow, but numerically what Core ML computes), labelled as such.
Images come in one seeded order (``EvalSet``), so such a prefix samples every class.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.eval_set import EvalSet  # noqa: E402
from benchmarks.latency import CHECKPOINT_SUFFIXES, COREML_SUFFIXES, DEFAULT_OMP_WAIT_POLICY, failures  # noqa: E402
from common.cli import Parser, run_cli  # noqa: E402
from common.contract import drop_bounds, wilson_lower  # noqa: E402
from common.outputs import check_output, write_output  # noqa: E402
from common.machine import physical_cores  # noqa: E402
from common.text_table import text_table  # noqa: E402

# as many images as the converter's own verification: at 500 a W8A8 program that agrees on 98.0% has a
# lower bound of 96.7% (short of the 97% of the int8 contract), at 1,000 one of 97.1%
DEFAULT_COREML_LIMIT = 1000
EVALUATOR_NOTE = "Core ML via the numpy ML Program evaluator (Linux), first {n} images of the seeded order"
# Apple's Core AI runtime on Linux runs a slow reference CPU path: a prefix of the test set keeps the
# report short (its time per image: docs/coreai.md)
DEFAULT_COREAI_LIMIT = 2000
COREAI_NOTE = "Core AI runtime's reference CPU path (Linux), first {n} images of the seeded order"


# --- metrics ------------------------------------------------------------------------------------
def topk_predictions(logits: np.ndarray, k: int = 5) -> np.ndarray:
    """``(N, min(k, classes))`` class indices, best first."""
    logits = np.asarray(logits)
    k = min(k, logits.shape[1])
    part = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(logits, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def summarize(top5: np.ndarray, labels: np.ndarray | None, reference_top1: np.ndarray | None = None) -> dict:
    """top-1/top-5 (%) of predictions ``top5`` (N, k); with a reference: agreement and delta (points).
    ``labels`` None (images without labels): agreement only, the accuracy fields are None."""
    top5 = np.asarray(top5)
    n = len(top5) if labels is None else len(labels)
    if len(top5) != n or n == 0:
        raise ValueError(f"{len(top5)} predictions for {n} labels")
    out = {"n": int(n), "top1": None, "top5": None, "agreement": None, "reference_top1": None, "delta_top1": None}
    if labels is not None:
        labels = np.asarray(labels)
        out.update(top1=float(100.0 * (top5[:, 0] == labels).mean()),
                   top5=float(100.0 * (top5 == labels[:, None]).any(axis=1).mean()))
    if reference_top1 is not None:
        reference_top1 = np.asarray(reference_top1)[:n]
        agree = top5[:, 0] == reference_top1
        out["agreement"] = float(100.0 * agree.mean())
        out["agreement_lower95"] = float(100.0 * wilson_lower(int(agree.sum()), n))
        if labels is not None:
            out["reference_top1"] = float(100.0 * (reference_top1 == labels).mean())
            out["delta_top1"] = out["top1"] - out["reference_top1"]
            out["drop_lower95"] = drop_bounds(reference_top1 == labels, top5[:, 0] == labels)[0]
    return out


# --- reference ----------------------------------------------------------------------------------
@dataclass
class Reference:
    """The fp32 PyTorch model's results on an EvalSet: metrics and per-image top-1."""

    checkpoint: Path
    metrics: dict
    top1: np.ndarray
    device: str


def reference_results(checkpoint: str | Path, eval_set: EvalSet, batch_size: int = 64, device: str | None = None,
                      progress: bool = True) -> Reference:
    """Evaluate the checkpoint with ``train.evaluate.evaluate``, recording each image's prediction."""
    import torch
    from tqdm import tqdm

    from model import create_model
    from train.evaluate import default_device, evaluate

    model = create_model(checkpoint_path=checkpoint).eval()
    if eval_set.labelled and eval_set.classes and len(eval_set.classes) > model.num_classes:
        from data import DataError
        raise DataError(f"{eval_set.data} has {len(eval_set.classes)} classes but {Path(checkpoint).name} predicts "
                        f"{model.num_classes}; evaluate it on data with its own classes")
    labels = (model.meta or {}).get("labels")
    if eval_set.labelled and eval_set.classes and labels and list(eval_set.classes) != list(labels)[:len(eval_set.classes)]:
        print(f"warning: dataset classes {eval_set.classes[:3]}... differ from the model's labels {labels[:3]}...; "
              f"class indices are compared as they are", file=sys.stderr)
    bar = tqdm(total=len(eval_set), desc="accuracy: PyTorch fp32 reference", unit="img",
               disable=None if progress else True)

    class Recorder(torch.nn.Module):
        """The model, unchanged, keeping each batch's top-5 (evaluate's loader keeps dataset order)."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.num_classes, self.meta, self.top5 = inner, inner.num_classes, inner.meta, []

        def forward(self, x):
            logits = self.inner(x)
            self.top5.append(topk_predictions(logits.float().cpu().numpy()))
            bar.update(len(x))
            return logits

    recorder = Recorder(model)
    try:
        if eval_set.labelled:
            result = evaluate(recorder, eval_set.torch_dataset(), batch_size=batch_size, device=device)
        else:  # evaluate() counts hits per label: without labels, just the predictions
            start, device = time.perf_counter(), torch.device(device) if device else default_device()
            recorder.to(device)
            with torch.inference_mode():
                for x in eval_set.batches(batch_size):
                    recorder(torch.from_numpy(x).to(device))
            result = {"device": device.type, "images_per_s": round(len(eval_set) / (time.perf_counter() - start), 1)}
    finally:
        bar.close()
    top5 = np.concatenate(recorder.top5)
    metrics = summarize(top5, eval_set.labels if eval_set.labelled else None, top5[:, 0])
    metrics["images_per_s"] = result.get("images_per_s")
    if eval_set.labelled:  # evaluate() is the project's definition of accuracy; ours must agree with it exactly
        if abs(result["top1"] - metrics["top1"]) > 1e-6 * 100 + 1e-3 or result["n"] != metrics["n"]:
            raise RuntimeError(f"reference top-1 mismatch: evaluate() {result['top1']} vs recorded {metrics['top1']}")
        metrics.update(top1=result["top1"], top5=result["top5"])
    return Reference(Path(checkpoint), metrics, top5[:, 0], result.get("device", "cpu"))


# --- artifacts ----------------------------------------------------------------------------------
@dataclass
class AccuracyResult:
    """One artifact's accuracy (:func:`measure_accuracy`): ``status`` "ok", "error" (``error`` says why;
    ``user_error``: an unusable artifact) or "needs macOS". Percentages: top-1/top-5 (None without
    labels), agreement of top-1 with the fp32 reference and its 95% lower bound (None without a
    reference), ``delta_top1`` and the upper bound of the drop in points. ``subset``: only the first
    ``n`` images of the set ran (``note`` says why)."""

    artifact: str
    label: str = ""
    status: str = "ok"
    error: str | None = None
    user_error: bool = False
    note: str | None = None
    data: str | None = None
    format: str | None = None
    precision: str | None = None
    engine: str | None = None
    n: int | None = None
    top1: float | None = None
    top5: float | None = None
    agreement: float | None = None
    agreement_lower95: float | None = None
    reference_top1: float | None = None
    delta_top1: float | None = None
    drop_lower95: float | None = None
    subset: bool = False
    seconds: float | None = None
    images_per_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        """Every field, for JSON."""
        return asdict(self)


def coreml_evaluator_available() -> str | None:
    """None if Core ML artifacts can run here, else why not."""
    if platform.system() == "Darwin":
        return None
    try:
        import mlprogram  # noqa: F401
    except Exception as err:  # evaluator missing or broken: the row says "needs macOS"
        return f"needs macOS (numpy ML Program evaluator unavailable: {type(err).__name__}: {err})"
    return None


def measure_accuracy(artifact: str | Path, eval_set: EvalSet, reference: Reference | None = None,
                     batch_size: int = 64, threads: int | None = None, coreml_limit: int | None = DEFAULT_COREML_LIMIT,
                     progress: bool = True, coreai_limit: int | None = DEFAULT_COREAI_LIMIT) -> AccuracyResult:
    """Accuracy of one artifact on ``eval_set`` (agreement: against ``reference``); raises
    ArtifactError/exceptions of the runtime on failure."""
    from tqdm import tqdm

    from runtime import load_artifact
    artifact = Path(artifact)
    result = AccuracyResult(str(artifact), artifact.name, data=eval_set.describe())
    is_coreml = artifact.suffix.lower() in COREML_SUFFIXES
    if is_coreml:
        why = coreml_evaluator_available()
        if why:
            result.status, result.note = "needs macOS", why
            return result
    if reference is not None and artifact.suffix.lower() in CHECKPOINT_SUFFIXES and \
            artifact.resolve() == reference.checkpoint.resolve():
        return replace(result, format="pytorch", precision="fp32", engine=f"pytorch ({reference.device})",
                       **reference.metrics)
    runner = load_artifact(artifact, threads=threads or physical_cores())
    spec = runner.meta.get("preprocess")
    if spec != eval_set.spec:
        raise ValueError(f"{artifact.name} expects preprocessing {spec}, the evaluation set uses {eval_set.spec}; "
                         f"evaluate it with its own EvalSet")
    stop = len(eval_set)
    engine = getattr(runner, "engine", runner.format)
    if is_coreml and engine == "mlprogram-numpy" and coreml_limit:
        stop = min(stop, coreml_limit)
        result.note = EVALUATOR_NOTE.format(n=stop)
    elif engine == "coreai-runtime" and platform.system() != "Darwin" and coreai_limit:
        stop = min(stop, coreai_limit)
        result.note = COREAI_NOTE.format(n=stop)
    start = time.perf_counter()
    top5 = []
    with tqdm(total=stop, desc=f"accuracy: {artifact.name}", unit="img", disable=None if progress else True) as bar:
        for x in eval_set.batches(batch_size, stop):
            top5.append(topk_predictions(runner.judged_outputs(x)))
            bar.update(len(x))
    seconds = time.perf_counter() - start
    metrics = summarize(np.concatenate(top5), eval_set.labels[:stop] if eval_set.labelled else None,
                        None if reference is None else reference.top1)
    return replace(result, format=runner.format, precision=runner.precision, engine=engine, **metrics,
                   subset=stop < len(eval_set), seconds=round(seconds, 2),
                   images_per_s=round(stop / seconds, 1) if seconds > 0 else None)


def reference_for(artifact: Path) -> Path | None:
    """The checkpoint an artifact was converted from (manifest), or the artifact itself if a checkpoint."""
    from model import file_sha256
    from runtime import read_manifest
    if artifact.suffix.lower() in CHECKPOINT_SUFFIXES:
        return artifact
    manifest = read_manifest(artifact) or {}
    model = manifest.get("model", {})
    path = Path(model["checkpoint"]) if model.get("checkpoint") else None
    if path and path.is_file() and file_sha256(path) == model.get("checkpoint_sha256"):
        return path
    return None


def artifact_meta(artifact: Path) -> dict:
    """The model metadata of an artifact (its manifest, or the checkpoint's)."""
    from model import read_checkpoint
    from runtime import ArtifactError, checked_manifest
    if artifact.suffix.lower() in CHECKPOINT_SUFFIXES:
        return read_checkpoint(artifact).meta
    manifest = checked_manifest(artifact)
    if manifest is None:
        if artifact.suffix.lower() == ".onnx":
            from runtime import load_artifact
            return load_artifact(artifact).meta
        raise ArtifactError(f"no manifest next to {artifact}: its preprocessing is unknown; re-export it")
    return manifest["model"]


def artifact_spec(artifact: Path) -> dict:
    """The preprocessing an artifact expects (its manifest, or the checkpoint's metadata)."""
    from model import create_model
    if artifact.suffix.lower() in CHECKPOINT_SUFFIXES:
        return create_model(checkpoint_path=artifact).meta["preprocess"]
    return artifact_meta(artifact)["preprocess"]


def model_dataset(artifact: Path) -> str:
    """The dataset an artifact's model was trained on (its metadata); DataError if it names none."""
    from data import DataError
    dataset = artifact_meta(artifact).get("dataset")
    if not dataset:
        raise DataError(f"{artifact} does not name its dataset: pass --data")
    return dataset


# --- command line -------------------------------------------------------------------------------
def fmt(value, spec: str = ".2f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description="Top-1/top-5 of artifacts and agreement with the fp32 PyTorch model.")
    parser.add_argument("artifacts", nargs="+", type=Path, help=".pt/.safetensors, .onnx, .pte or .mlpackage")
    parser.add_argument("--reference", type=Path, help="fp32 checkpoint to compare with (default: the checkpoint "
                        "named in the artifact's manifest, when it is present with the same sha256)")
    parser.add_argument("--data", help="'cifar10[:PATH]', 'fashion-mnist[:DIR]' or an image folder in ImageNet "
                        "val layout (one sub-folder per class); default: the first artifact's dataset")
    parser.add_argument("--split", default="test", help="split to evaluate (default test); a folder without "
                        "train/ and val/ sub-folders (ImageNet val layout) is evaluated whole")
    parser.add_argument("--limit", type=int, help="evaluate the first N images of a seeded permutation")
    parser.add_argument("--coreml-limit", type=int, default=DEFAULT_COREML_LIMIT, help="images for Core ML on Linux "
                        f"(numpy evaluator, slow; default {DEFAULT_COREML_LIMIT}; 0 = all)")
    parser.add_argument("--coreai-limit", type=int, default=DEFAULT_COREAI_LIMIT, help="images for Core AI on Linux "
                        f"(the runtime's reference CPU path; default {DEFAULT_COREAI_LIMIT}; 0 = all)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per runner call (default 64)")
    parser.add_argument("--threads", type=int, help=f"runtime threads (default: physical cores, {physical_cores()})")
    parser.add_argument("--json", type=Path, help="write the rows to this JSON file")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    args = parser.parse_args(argv)
    for name, low in (("limit", 1), ("coreml_limit", 0), ("batch_size", 1), ("threads", 1)):
        if getattr(args, name) is not None and getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    return args


def evaluate_rows(args: argparse.Namespace) -> list[AccuracyResult]:
    """One row per artifact; an artifact that fails is a row with its error (``user_error``: an unusable one)."""
    from common.errors import UserError
    from data import DataError
    rows, sets, refs = [], {}, {}
    for artifact in args.artifacts:
        try:
            spec = artifact_spec(artifact)
            key = json.dumps(spec, sort_keys=True)
            if key not in sets:
                sets[key] = EvalSet(args.data, args.split, spec, args.limit,  # bad data: the run fails, no row
                                    artifact_meta(artifact).get("labels"))
            eval_set = sets[key]
            ref_path = args.reference or reference_for(artifact)
            reference = None
            if ref_path is not None:
                ref_key = (str(Path(ref_path).resolve()), key)
                if ref_key not in refs:
                    refs[ref_key] = reference_results(ref_path, eval_set, args.batch_size)
                reference = refs[ref_key]
            row = measure_accuracy(artifact, eval_set, reference, args.batch_size, args.threads,
                                   args.coreml_limit or None, coreai_limit=args.coreai_limit or None)
            if reference is None:
                row.note = ((row.note or "") + "; no fp32 reference: pass --reference").lstrip("; ")
        except DataError:
            raise
        except (UserError, ValueError, OSError, RuntimeError) as err:
            user = isinstance(err, UserError)
            row = AccuracyResult(str(artifact), artifact.name, "error", user_error=user,
                           error=str(err) if user else f"{type(err).__name__}: {err}")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    # PyTorch's OpenMP pool spin-waits by default, much slower on a shared machine (see latency.py);
    # set before torch is imported, unless the caller chose a policy
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_OMP_WAIT_POLICY)
    args = parse_args(argv)
    from runtime import check_artifact
    from common.quiet import quiet_third_party
    quiet_third_party()

    def run() -> int:
        for artifact in args.artifacts:
            check_artifact(artifact)
        if args.json:
            check_output(args.json, args.force, "--json")
        args.data = args.data or model_dataset(args.artifacts[0])
        rows = evaluate_rows(args)
        header = ["artifact", "status", "n", "top-1 %", "top-5 %", "agreement %", "delta top-1", "note"]
        lines = [[r.label, r.status if r.status != "error" else f"error: {r.error[:90]}", fmt(r.n, "d"),
                  fmt(r.top1), fmt(r.top5), fmt(r.agreement), fmt(r.delta_top1, "+.2f"), r.note or ""] for r in rows]
        print(text_table(header, lines))
        if args.json:
            write_output(args.json, json.dumps([r.to_dict() for r in rows], indent=2, default=str) + "\n",
                         args.force, "--json")
        return failures(rows)
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
