"""One Runner per runtime; all take normalized float32 NCHW batches and return logits."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from common.digest import artifact_sha256
from common.quiet import native_logs_silenced

from .base import ArtifactError, Runner, to_pixels

MANIFEST_SUFFIX = ".json"


def manifest_path(artifact: str | os.PathLike) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def checked_manifest(artifact: str | os.PathLike) -> dict | None:
    """The sidecar manifest, if any, made sure to describe this very artifact (its sha256)."""
    manifest = read_manifest(artifact)
    if manifest is not None and manifest.get("sha256") not in (None, artifact_sha256(artifact)):
        raise ArtifactError(f"manifest {manifest_path(artifact)} is stale: it describes another artifact (its sha256 "
                            f"is not {Path(artifact).name}'s); convert again to write a matching one, or move it away")
    return manifest


def read_manifest(artifact: str | os.PathLike) -> dict | None:
    """The sidecar manifest ``<artifact>.json`` written by the converters, or None."""
    path = manifest_path(artifact)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactError(f"manifest {path} is unreadable ({err}); re-run the converter") from None


class TorchRunner(Runner):
    format = "pytorch"

    def __init__(self, path: Path, threads: int | None):
        import torch
        from model import CheckpointError, create_model
        if threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            self.model = create_model(checkpoint_path=path).eval()
        except CheckpointError as err:
            raise ArtifactError(str(err)) from None
        super().__init__(path, self.model.meta, "fp32", None, time.perf_counter() - start)

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        import torch
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()


class OnnxRunner(Runner):
    format = "onnx"

    def __init__(self, path: Path, manifest: dict | None, threads: int | None):
        start = time.perf_counter()
        self.session = onnx_session(path, threads)
        elapsed = time.perf_counter() - start
        self.input_name = self.session.get_inputs()[0].name
        dim0 = self.session.get_inputs()[0].shape[0]
        meta = manifest["model"] if manifest else _onnx_metadata(self.session)
        precision = manifest["precision"] if manifest else "fp32"
        super().__init__(path, meta, precision, dim0 if isinstance(dim0, int) else None, elapsed)

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


def onnx_session(path: Path, threads: int | None = None, **options):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (default: the process's
    ``common.machine.thread_budget``; ORT itself ignores ``OMP_NUM_THREADS``) and 1 inter-op thread;
    ``options`` set other ``SessionOptions`` attributes (``enable_profiling=True``, ...)."""
    import onnxruntime as ort

    from common.machine import thread_budget
    settings = ort.SessionOptions()
    settings.intra_op_num_threads, settings.inter_op_num_threads = threads or thread_budget(), 1
    for key, value in options.items():
        setattr(settings, key, value)
    try:
        return ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for every load failure
        raise ArtifactError(f"{path} could not be loaded by ONNX Runtime: {str(err).splitlines()[0]}") from None


def _onnx_metadata(session) -> dict:
    props = session.get_modelmeta().custom_metadata_map
    if "shunted_edge" not in props:
        raise ArtifactError("ONNX file carries no shunted-edge metadata and has no manifest; re-export it "
                            "with convert/to_onnx.py")
    return json.loads(props["shunted_edge"])


class ExecuTorchRunner(Runner):
    format = "executorch"

    def __init__(self, path: Path, manifest: dict | None, threads: int | None):
        import torch
        from executorch.runtime import Runtime
        if manifest is None:
            raise ArtifactError(f"no manifest {manifest_path(path)} next to {path}; the preprocessing is unknown: "
                                f"re-export it with convert/to_executorch.py")
        start = time.perf_counter()
        try:
            with native_logs_silenced():  # its C++ log reports every CPU probe on stderr
                if threads:
                    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
                    _unsafe_reset_threadpool(threads)
                self.method = Runtime.get().load_program(path).load_method("forward")
        except Exception as err:  # the runtime raises RuntimeError/ValueError variants on bad programs
            raise ArtifactError(f"{path} could not be loaded by the ExecuTorch runtime: {err}") from None
        self._torch = torch
        super().__init__(path, manifest["model"], manifest["precision"], manifest["input"]["shape"][0],
                         time.perf_counter() - start)

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        return self.method.execute([self._torch.from_numpy(x)])[0].numpy()


class CoreMLRunner(Runner):
    """Core ML `predict` on macOS; on Linux the project's numpy ML Program evaluator."""

    format = "coreml"
    remembers_outputs = True
    CHUNK_PIXELS = 32 * 32 * 32  # images per evaluator pass: 32 at 32 px, 1 at 224 px (0.58 s per image
    # there against 0.96 s in passes of 32, whose intermediates are hundreds of MB each)

    def __init__(self, path: Path, manifest: dict | None, compute_units: str = "ALL"):
        if manifest is None:
            raise ArtifactError(f"no manifest {manifest_path(path)} next to {path}; re-export it with "
                                f"convert/to_coreml.py")
        start = time.perf_counter()
        if platform.system() == "Darwin":
            import coremltools as ct
            self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
            self.engine = f"coreml-{compute_units.lower()}"
        else:
            import mlprogram
            self.model = mlprogram.load(path)
            self.engine = "mlprogram-numpy"
        self.input_name = manifest["input"]["name"]
        self.logits_name = manifest["outputs"]["logits"]
        super().__init__(path, manifest["model"], manifest["precision"], manifest["input"]["shape"][0],
                         time.perf_counter() - start)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch of any N, in chunks of ``CHUNK_PIXELS`` pixels (the evaluator runs a batch-1
        program on a chunk in one pass where that provably keeps images apart: ``mlprogram.batching``)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        chunk = max(1, self.CHUNK_PIXELS // (x.shape[-2] * x.shape[-1]))
        return np.concatenate([self._run_batch(x[i:i + chunk]) for i in range(0, len(x), chunk)])

    def pixels(self, x: np.ndarray) -> np.ndarray:
        """Normalized input -> the 0..255 RGB pixels the image input takes."""
        return to_pixels(x, self.meta["preprocess"])

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        pixels = self.pixels(x)
        if self.engine.startswith("coreml"):
            from PIL import Image
            outs = []
            for image in pixels.round().astype(np.uint8).transpose(0, 2, 3, 1):
                result = self.model.predict({self.input_name: Image.fromarray(image)})
                outs.append(np.asarray(result[self.logits_name], np.float32).reshape(-1))
            return np.stack(outs)
        return np.asarray(self.model.run({self.input_name: pixels})[self.logits_name], np.float32).reshape(len(x), -1)


def check_artifact(path: str | os.PathLike) -> dict | None:
    """What needs no runtime: the artifact exists, its type is known and a manifest beside it is its own
    (:func:`checked_manifest`, returned; None for checkpoints, which carry their metadata)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} not found; pass a .pt/.safetensors checkpoint, .onnx, .pte, .mlpackage or "
                            f".aimodel")
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".pth", ".safetensors", ".onnx", ".pte", ".mlpackage", ".mlmodel", ".aimodel"):
        raise ArtifactError(f"{path}: unknown artifact type {suffix or path.name!r}; expected .pt, .pth, "
                            f".safetensors, .onnx, .pte, .mlpackage or .aimodel")
    return None if suffix in (".pt", ".pth", ".safetensors") else checked_manifest(path)


def load_artifact(path: str | os.PathLike, threads: int | None = None, compute_units: str = "ALL",
                  manifest: dict | None = None) -> Runner:
    """Open an artifact with the runtime its file type calls for (manifest: default its sidecar)."""
    path = Path(path)
    sidecar = check_artifact(path)
    manifest = manifest or sidecar
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".safetensors"):
        return TorchRunner(path, threads)
    if suffix == ".onnx":
        return OnnxRunner(path, manifest, threads)
    if suffix == ".pte":
        return ExecuTorchRunner(path, manifest, threads)
    if suffix == ".aimodel":
        from .coreai_runner import CoreAIRunner
        return CoreAIRunner(path, manifest)
    return CoreMLRunner(path, manifest, compute_units)
