"""Bad input to every tool (issue #19): exit 2 (user mistake), 1 (verification failed) or 130/143 (signal),
one line on stderr, no traceback, nothing new left behind, every file that was there byte-identical."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGE = np.full((40, 40, 3), 128, np.uint8)


# --- the tools, run in-process ----------------------------------------------------------------
def _converter(name: str):
    from importlib import import_module

    from convert.cli import main
    return lambda argv: main(import_module(f"convert.to_{name}").CONVERTER, argv)


def _main(module: str):
    from importlib import import_module
    return lambda argv: import_module(module).main(argv)


TOOLS = {"onnx": _converter("onnx"), "executorch": _converter("executorch"), "coreml": _converter("coreml"),
         "export_all": _main("convert.export_all"), "report": _main("benchmarks.report"),
         "latency": _main("benchmarks.latency"), "accuracy": _main("benchmarks.accuracy"),
         "op_profile": _main("benchmarks.research.op_profile"), "sensitivity": _main("quantize.rank_units"),
         "train": _main("train.train"), "evaluate": _main("train.evaluate"),
         "webcam": lambda argv: _main("apps.webcam")(["--headless", *argv])}


def invoke(tool: str, argv: list[str]) -> int:
    try:
        return TOOLS[tool](argv)
    except SystemExit as exit_:  # argparse
        return exit_.code


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def assert_one_line(err: str, codes: tuple[int, ...], code: int, message: str | None) -> None:
    assert code in codes, f"exit {code}, expected {codes}: {err}"
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    assert "(see --help)" in err or "usage:" not in err, err
    if message:
        assert message in err, err


# --- inputs a careless user has lying around --------------------------------------------------
def ours(state_dict=None, meta=None) -> bytes:
    """A file in our checkpoint format with the given (wrong) parts."""
    buffer = io.BytesIO()
    torch.save({"format": "shunted-edge/1", "meta": {} if meta is None else meta,
                "state_dict": [1, 2, 3] if state_dict is None else state_dict}, buffer)
    return buffer.getvalue()


def safetensors_with_bad_metadata() -> bytes:
    from safetensors.torch import save
    return save({"w": torch.zeros(2)}, metadata={"shunted_edge": "{not json"})


def stale_manifest(suffix: str) -> bytes:
    """The manifest of another artifact (its sha256 is not this file's)."""
    return json.dumps({"format": {".pte": "executorch", ".onnx": "onnx"}[suffix], "precision": "fp32",
                       "sha256": "0" * 64, "artifact": f"a{suffix}", "input": {"name": "x", "shape": [1, 3, 32, 32]},
                       "outputs": {"logits": 0}, "model": {"input_size": 32}}).encode()


def png() -> bytes:
    return cv2.imencode(".png", IMAGE)[1].tobytes()


@dataclass
class Case:
    tool: str
    args: list[str]
    files: dict = field(default_factory=dict)  # path -> bytes, str, a callable giving bytes, or None (a folder)
    message: str | None = None  # a part of the error line
    codes: tuple[int, ...] = (2,)


QUICK_TRAIN = ["--data", "colors", "--input-size", "32", "--epochs", "1", "--steps", "1", "--batch-size", "2"]
LATENCY = ["--runs", "1", "--rounds", "1", "--warmup", "0", "--no-cuda"]
INT8 = ["--checkpoint", "ckpt.pt", "--precision", "int8"]

CASES = {
    # 1-3: the converters never replace what they were not asked to
    "onnx output exists": Case("onnx", ["--checkpoint", "ckpt.pt", "--output", "out/r.onnx"],
                               {"out/r.onnx": "user data"}, "--force"),
    "onnx sidecar exists": Case("onnx", ["--checkpoint", "ckpt.pt", "--output", "out/s.onnx"],
                                {"out/s.onnx.json": "{}\n"}, "s.onnx.json"),
    "onnx --force onto a directory": Case("onnx", ["--checkpoint", "ckpt.pt", "--output", "out/dir.onnx", "--force"],
                                          {"out/dir.onnx/notes.txt": "mine"}, "dir.onnx"),
    "coreml --force onto a foreign package": Case(
        "coreml", ["--checkpoint", "ckpt.pt", "--output", "out/x.mlpackage", "--force"],
        {"out/x.mlpackage/Manifest.json": "{}"}, "x.mlpackage"),
    "onnx --force onto a sidecar directory": Case(
        "onnx", ["--checkpoint", "ckpt.pt", "--output", "out/s.onnx", "--force"], {"out/s.onnx.json/a": "mine"}),
    "onnx output under a file": Case("onnx", ["--checkpoint", "ckpt.pt", "--output", "a_file/x.onnx"],
                                     {"a_file": "x"}),
    "export_all --output-dir is a file": Case("export_all", ["--checkpoint", "ckpt.pt", "--output-dir", "a_file"],
                                              {"a_file": "x"}, "a_file"),
    # 4-5: every other tool's outputs, validated before any work
    "latency --json exists": Case("latency", ["ckpt.pt", "--json", "old.json", *LATENCY], {"old.json": "{}"}, "--force"),
    "latency --json under a file": Case("latency", ["ckpt.pt", "--json", "a_file/x.json", *LATENCY], {"a_file": "x"}),
    "accuracy --json exists": Case("accuracy", ["ckpt.pt", "--limit", "8", "--json", "old.json"], {"old.json": "{}"},
                                   "--force"),
    "accuracy --json under a file": Case("accuracy", ["ckpt.pt", "--limit", "8", "--json", "a_file/x.json"],
                                         {"a_file": "x"}),
    "evaluate replaces its accuracy.json": Case("evaluate", ["ckpt.pt", "--limit", "50"],
                                                {"ckpt.accuracy.json": "{}"}, "--force"),
    "evaluate --output under a file": Case("evaluate", ["ckpt.pt", "--limit", "8", "--output", "a_file/x.json"],
                                           {"a_file": "x"}),
    "train into an earlier run": Case("train", [*QUICK_TRAIN, "--output", "run"],
                                      {"run/last.pt": "earlier", "run/final.pt": "earlier"}, "--resume"),
    "train --final exists": Case("train", [*QUICK_TRAIN, "--output", "run", "--final", "w.pt"], {"w.pt": "mine"},
                                 "--force"),
    "train --output under a file": Case("train", [*QUICK_TRAIN, "--output", "a_file/run"], {"a_file": "x"}),
    "report --runs-dir is a file": Case("report", ["--checkpoint", "ckpt.pt", "--runs-dir", "a_file"], {"a_file": "x"}),
    "webcam --output under a file": Case("webcam", ["--source", "img.png", "--weights", "ckpt.pt", "--output",
                                                    "a_file/out"], {"a_file": "x"}),
    "webcam --output exists": Case("webcam", ["--source", "img.png", "--weights", "ckpt.pt", "--output", "shown"],
                                   {"shown/img.png": "mine"}, "--force"),
    # 7-8, 16: checkpoints that are not ours, or ours with wrong types
    "onnx text .pt": Case("onnx", ["--checkpoint", "bad.pt", "--output", "x.onnx"], {"bad.pt": "hello\n"}, "bad.pt"),
    "onnx empty .pt": Case("onnx", ["--checkpoint", "bad.pt", "--output", "x.onnx"], {"bad.pt": ""}, "bad.pt"),
    "onnx checkpoint is a folder": Case("onnx", ["--checkpoint", "bad.pt", "--output", "x.onnx"], {"bad.pt": None}),
    "onnx state_dict a list": Case("onnx", ["--checkpoint", "bad.pt", "--output", "x.onnx"], {"bad.pt": ours}, "bad.pt"),
    "onnx meta a string": Case("onnx", ["--checkpoint", "bad.pt", "--output", "x.onnx"],
                               {"bad.pt": lambda: ours({"w": torch.zeros(1)}, "x")}, "bad.pt"),
    "onnx state_dict of numbers": Case("onnx", ["--checkpoint", "bad.pt", "--output", "x.onnx"],
                                       {"bad.pt": lambda: ours({"w": 1})}, "bad.pt"),
    "onnx safetensors metadata not JSON": Case("onnx", ["--checkpoint", "bad.safetensors", "--output", "x.onnx"],
                                               {"bad.safetensors": safetensors_with_bad_metadata}, "bad.safetensors"),
    "webcam text .pt": Case("webcam", ["--source", "img.png", "--weights", "bad.pt"], {"bad.pt": "hello\n"}, "bad.pt"),
    "webcam state_dict a list": Case("webcam", ["--source", "img.png", "--weights", "bad.pt"], {"bad.pt": ours}),
    "evaluate text .pt": Case("evaluate", ["bad.pt"], {"bad.pt": "hello\n"}, "bad.pt"),
    "train --checkpoint text .pt": Case("train", [*QUICK_TRAIN, "--checkpoint", "bad.pt", "--output", "run"],
                                        {"bad.pt": "hello\n"}, "bad.pt"),
    "train --resume text .pt": Case("train", ["--resume", "bad.pt", "--output", "run"], {"bad.pt": "hello\n"}),
    "accuracy text .pt": Case("accuracy", ["bad.pt", "--limit", "8"], {"bad.pt": "hello\n"}, "bad.pt"),
    "latency text .pt": Case("latency", ["bad.pt", *LATENCY], {"bad.pt": "hello\n"}, "bad.pt"),
    "latency text .onnx": Case("latency", ["bad.onnx", *LATENCY], {"bad.onnx": "hello\n"}, "bad.onnx"),
    # 9-10: sizes and module names
    "onnx --input-size 0": Case("onnx", ["--checkpoint", "ckpt.pt", "--input-size", "0", "--output", "x.onnx"], {}, "32"),
    "onnx --input-size -32": Case("onnx", ["--checkpoint", "ckpt.pt", "--input-size", "-32", "--output", "x.onnx"], {}, "32"),
    "onnx --input-size 100000": Case("onnx", ["--checkpoint", "ckpt.pt", "--input-size", "100000", "--output", "x.onnx"], {},
                                "memory"),
    "onnx --input-size 33": Case("onnx", ["--checkpoint", "ckpt.pt", "--input-size", "33", "--output", "x.onnx"], {}, "32, 64"),
    "onnx --batch 0": Case("onnx", ["--checkpoint", "ckpt.pt", "--batch", "0", "--output", "x.onnx"]),
    "onnx --batch 10000000": Case("onnx", ["--checkpoint", "ckpt.pt", "--batch", "10000000", "--output", "x.onnx"],
                                  {}, "memory"),
    "export_all --input-size 0": Case("export_all", ["--checkpoint", "ckpt.pt", "--input-size", "0", "--output-dir", "out"]),
    "train --input-size 0": Case("train", [*QUICK_TRAIN, "--input-size", "0", "--output", "run"]),
    "train --input-size -32": Case("train", [*QUICK_TRAIN, "--input-size", "-32", "--output", "run"], {}, "32"),
    "onnx --float-modules unknown": Case("onnx", [*INT8, "--float-modules", "stages.9.nope", "--output", "x.onnx"],
                                         {}, "stages.9.nope"),
    "executorch --float-modules unknown": Case(
        "executorch", [*INT8, "--float-modules", "stages.9.nope", "--output", "x.pte"], {}, "stages.9.nope"),
    # 11: a manifest beside the artifact that belongs to another one
    "webcam stale .pte manifest": Case("webcam", ["--source", "img.png", "--weights", "a.pte"],
                                       {"a.pte": "program", "a.pte.json": lambda: stale_manifest(".pte")}, "a.pte.json"),
    "webcam stale .onnx manifest": Case("webcam", ["--source", "img.png", "--weights", "a.onnx"],
                                        {"a.onnx": "graph", "a.onnx.json": lambda: stale_manifest(".onnx")},
                                        "a.onnx.json"),
    "latency stale manifest": Case("latency", ["a.pte", *LATENCY],
                                   {"a.pte": "program", "a.pte.json": lambda: stale_manifest(".pte")}, "a.pte.json"),
    "accuracy stale manifest": Case("accuracy", ["a.onnx", "--limit", "8"],
                                    {"a.onnx": "graph", "a.onnx.json": lambda: stale_manifest(".onnx")}, "a.onnx.json"),
    # 12-14: one error line on stderr, exit 2, in every tool
    "latency missing artifact": Case("latency", ["missing.onnx", *LATENCY], {}, "missing.onnx"),
    "latency --runs abc": Case("latency", ["ckpt.pt", "--runs", "abc"]),
    "latency --threads 0": Case("latency", ["ckpt.pt", "--threads", "0"]),
    "latency no artifact": Case("latency", []),
    "accuracy missing artifact": Case("accuracy", ["missing.onnx"], {}, "missing.onnx"),
    "accuracy --limit -5": Case("accuracy", ["ckpt.pt", "--limit", "-5"], {}, "--limit"),
    "accuracy --batch-size 0": Case("accuracy", ["ckpt.pt", "--batch-size", "0"], {}, "--batch-size"),
    "accuracy empty class folders": Case("accuracy", ["ckpt.pt", "--data", "empty_classes"],
                                         {"empty_classes/a": None, "empty_classes/b": None}, "empty_classes"),
    "accuracy --data missing": Case("accuracy", ["ckpt.pt", "--data", "nowhere"], {}, "nowhere"),
    "report --model nonsense": Case("report", ["--model", "nonsense"]),
    "report --runs 0": Case("report", ["--runs", "0"]),
    "report --checkpoint text .pt": Case("report", ["--checkpoint", "bad.pt", "--runs-dir", "runs", "--artifacts-dir",
                                                    "arts"], {"bad.pt": "hello\n"}, "bad.pt"),
    "report unknown artifact spec": Case("report", ["--checkpoint", "ckpt.pt", "--artifacts", "onnx", "--runs-dir",
                                                    "runs", "--artifacts-dir", "arts"]),
    "op_profile missing artifact": Case("op_profile", ["missing.onnx"], {}, "missing.onnx"),
    "op_profile --runs x": Case("op_profile", ["missing.onnx", "--runs", "x"]),
    "export_all unknown option": Case("export_all", ["--nope"]),
    "onnx unknown option": Case("onnx", ["--nope"]),
    "webcam --topk 0": Case("webcam", ["--source", "img.png", "--topk", "0"]),
    "webcam unknown option": Case("webcam", ["--nope"]),
    "webcam missing source": Case("webcam", ["--source", "nope.mp4", "--weights", "ckpt.pt"], {}, "nope.mp4"),
    "webcam weights are a folder": Case("webcam", ["--source", "img.png", "--weights", "w.onnx"], {"w.onnx": None}),
    "evaluate --batch-size 0": Case("evaluate", ["ckpt.pt", "--batch-size", "0"], {}, "--batch-size"),
    "evaluate --limit 0": Case("evaluate", ["ckpt.pt", "--limit", "0"], {}, "--limit"),
    "evaluate --workers -1": Case("evaluate", ["ckpt.pt", "--workers", "-1"], {}, "--workers"),
    "evaluate --split nope": Case("evaluate", ["ckpt.pt", "--split", "nope"], {}, "nope"),
    "evaluate unknown option": Case("evaluate", ["--nope"]),
    "train --workers -1": Case("train", [*QUICK_TRAIN, "--workers", "-1", "--output", "run"], {}, "--workers"),
    "train --lr 0": Case("train", [*QUICK_TRAIN, "--lr", "0", "--output", "run"], {}, "--lr"),
    "train unknown option": Case("train", ["--nope"]),
    # 15-16: validation before the slow work; messages that name the right thing
    "onnx int8 --calib empty folder": Case("onnx", [*INT8, "--calib", "empty", "--output", "new/sub/x.onnx"],
                                           {"empty": None}, "empty"),
    "onnx int8 --calib-size 0": Case("onnx", [*INT8, "--calib-size", "0", "--output", "new/x.onnx"], {}, "--calib-size"),
    "onnx int8 --calib missing.npy": Case("onnx", [*INT8, "--calib", "missing.npy", "--output", "new/x.onnx"], {},
                                          "missing.npy"),
    "onnx int8 --calib text .npy": Case("onnx", [*INT8, "--calib", "bad.npy", "--output", "new/x.onnx"],
                                        {"bad.npy": "hello"}, "bad.npy"),
    "onnx int8 --calib of HEIC photos": Case("onnx", [*INT8, "--calib", "phone", "--output", "new/x.onnx"],
                                             {"phone/IMG_0001.HEIC": "ftypheic"}, "convert to JPEG first"),
    "webcam HEIC photo": Case("webcam", ["--source", "IMG_0001.HEIC", "--weights", "ckpt.pt"],
                              {"IMG_0001.HEIC": "ftypheic"}, "convert to JPEG first"),
    "webcam folder of HEIC photos": Case("webcam", ["--source", "phone", "--weights", "ckpt.pt"],
                                         {"phone/IMG_0001.HEIC": "ftypheic"}, "convert to JPEG first"),
    "executorch int8 --calib empty folder": Case("executorch", [*INT8, "--calib", "empty", "--output", "new/x.pte"],
                                                 {"empty": None}, "empty"),
    "onnx no verification images": Case("onnx", ["--checkpoint", "ckpt.pt", "--verify-images", "0", "--verify-random",
                                                 "0", "--output", "x.onnx"], {}, "--verify"),
    "onnx --verify-data missing": Case("onnx", ["--checkpoint", "ckpt.pt", "--verify-data", "nowhere", "--output",
                                                "new/x.onnx"], {}, "nowhere"),
    "onnx --opset 9": Case("onnx", ["--checkpoint", "ckpt.pt", "--opset", "9", "--output", "new/x.onnx"], {}, "--opset"),
    "executorch int8 on coreml": Case("executorch", [*INT8, "--backend", "coreml", "--output", "new/x.pte"], {},
                                      "xnnpack"),
    "train --data missing": Case("train", [*QUICK_TRAIN[2:], "--data", "missing", "--output", "newrun"], {}, "missing"),
    "train --data empty class folders": Case("train", [*QUICK_TRAIN[2:], "--data", "empty_classes", "--output",
                                                       "newrun"], {"empty_classes/a": None}, "empty_classes"),
    "train --resume and --checkpoint": Case("train", ["--resume", "ckpt.pt", "--checkpoint", "ckpt.pt"], {}, "--resume"),
    "train --resume of weights only": Case("train", ["--resume", "ckpt.pt"], {}, "--checkpoint"),
    "sensitivity --output exists": Case("sensitivity", ["--checkpoint", "ckpt.pt", "--output", "old.json"],
                                        {"old.json": "{}"}, "--force"),
    "sensitivity --output under a missing folder": Case("sensitivity", ["--checkpoint", "ckpt.pt", "--output",
                                                                        "nodir/x/s.json"], {}, "nodir"),
    "sensitivity --held-out 0": Case("sensitivity", ["--checkpoint", "ckpt.pt", "--held-out", "0"], {}, "--held-out"),
    "sensitivity text .pt": Case("sensitivity", ["--checkpoint", "bad.pt", "--output", "s.json"], {"bad.pt": "hello\n"},
                                 "bad.pt"),
    # more of the same kinds
    "onnx --output without .onnx": Case("onnx", ["--checkpoint", "ckpt.pt", "--output", "x.pt"], {}, ".onnx"),
    "coreml --compress unknown": Case("coreml", ["--checkpoint", "ckpt.pt", "--compress", "zip"]),
    "export_all --force onto a directory": Case("export_all", ["--checkpoint", "ckpt.pt", "--output-dir", "out",
                                                               "--force"], {"out/ckpt_32_fp32.pte/a": "mine"}),
    "accuracy --reference text .pt": Case("accuracy", ["ckpt.pt", "--reference", "bad.pt", "--limit", "8"],
                                          {"bad.pt": "hello\n"}, "bad.pt"),
    "evaluate --data a file": Case("evaluate", ["ckpt.pt", "--data", "img.png"], {}, "img.png"),
    "latency --batch 0": Case("latency", ["ckpt.pt", "--batch", "0"], {}, "--batch"),
    "webcam --max-frames 0": Case("webcam", ["--source", "img.png", "--weights", "ckpt.pt", "--max-frames", "0"]),
    "webcam --weights of unknown type": Case("webcam", ["--source", "img.png", "--weights", "notes.txt"],
                                             {"notes.txt": "x"}, "notes.txt"),
}


@pytest.fixture(scope="module")
def colors(tmp_path_factory) -> Path:
    """Two class folders of three small images each."""
    root = tmp_path_factory.mktemp("colors")
    for name in ("dark", "light"):
        (root / name).mkdir()
        for i in range(3):
            cv2.imwrite(str(root / name / f"{i}.png"), IMAGE // (2 if name == "dark" else 1))
    return root


@pytest.fixture
def work(tmp_path, checkpoint, colors, monkeypatch) -> Path:
    """The current folder of a case: the checkpoint, an image and the colour folders, nothing else."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt.pt").write_bytes(Path(checkpoint).read_bytes())
    (tmp_path / "img.png").write_bytes(png())
    (tmp_path / "colors").symlink_to(colors, target_is_directory=True)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def lay_out(folder: Path, files: dict) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        else:
            content = content() if callable(content) else content
            path.write_bytes(content.encode() if isinstance(content, str) else content)


def run_case(case: Case, work: Path, capfd) -> None:
    lay_out(work, case.files)
    before = snapshot(work)
    capfd.readouterr()
    code = invoke(case.tool, case.args)
    assert_one_line(capfd.readouterr().err, case.codes, code, case.message)
    assert snapshot(work) == before


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, work, capfd):
    run_case(CASES[name], work, capfd)


# --- 1-2: races at publish time ----------------------------------------------------------------
def fake_converter(suffix: str, during_export=lambda output: None):
    """A converter whose export writes a small file (or package folder) at once and runs ``during_export``."""
    from convert.pipeline import Converter, Exported

    def export(job, tmp):
        if suffix == ".mlpackage":
            tmp.mkdir()
            (tmp / "model.mlmodel").write_bytes(b"new")
        else:
            tmp.write_bytes(b"new")
        during_export(Path(job.request.output))
        return Exported({}, {}, runnable_here=False, not_runnable_reason="test")
    return Converter("coreml" if suffix == ".mlpackage" else "onnx", suffix, ("fp32",), export)


def convert_with(converter, argv: list[str]) -> int:
    from convert.cli import main
    return main(converter, argv)


@pytest.mark.parametrize("appears", ["out/r.onnx", "out/r.onnx.json", "out/r.onnx/"])
def test_output_that_appears_during_the_run_is_kept(appears, work, capfd):
    def other_run(output):
        path = work / appears
        if appears.endswith("/"):
            path.mkdir()
        else:
            path.write_text("the other run's")

    code = convert_with(fake_converter(".onnx", other_run), ["--checkpoint", "ckpt.pt", "--output", "out/r.onnx"])
    assert_one_line(capfd.readouterr().err, (2,), code, "--force")
    left = {p.name for p in (work / "out").iterdir()}
    assert left == {Path(appears).name}
    if not appears.endswith("/"):
        assert (work / appears).read_text() == "the other run's"


def test_errors_name_the_output_not_its_temporary_name(work, capfd):
    from convert.pipeline import Converter, ConvertError

    def export(job, tmp):
        raise ConvertError(f"{tmp} could not be loaded")
    code = convert_with(Converter("onnx", ".onnx", ("fp32",), export), ["--checkpoint", "ckpt.pt", "--output", "out/r.onnx"])
    assert_one_line(capfd.readouterr().err, (2,), code, "out/r.onnx could not be loaded")
    assert not (work / "out").exists()


def test_force_replaces_our_own_package_only(work, capfd):
    argv = ["--checkpoint", "ckpt.pt", "--output", "out/m.mlpackage"]
    assert convert_with(fake_converter(".mlpackage"), argv) == 0
    assert convert_with(fake_converter(".mlpackage"), argv) == 2  # exists: --force needed
    assert convert_with(fake_converter(".mlpackage"), [*argv, "--force"]) == 0  # ours: replaced
    assert sorted(p.name for p in (work / "out").iterdir()) == ["m.mlpackage", "m.mlpackage.json"]
    (work / "out" / "m.mlpackage.json").unlink()  # no manifest: not ours any more
    capfd.readouterr()
    assert convert_with(fake_converter(".mlpackage"), [*argv, "--force"]) == 2
    assert "m.mlpackage" in capfd.readouterr().err and (work / "out" / "m.mlpackage" / "model.mlmodel").exists()


def test_force_replaces_a_file_and_its_sidecar(work):
    (work / "r.onnx").write_text("old")
    (work / "r.onnx.json").write_text("{}")
    assert convert_with(fake_converter(".onnx"), ["--checkpoint", "ckpt.pt", "--output", "r.onnx", "--force"]) == 0
    assert (work / "r.onnx").read_bytes() == b"new" and json.loads((work / "r.onnx.json").read_text())["sha256"]


def test_stale_partial_files_are_swept(work):
    """Partial files of processes that are gone are removed; those of a running process stay."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = work / "out"
    out.mkdir()
    stale, alive = out / f".partial-{gone.stdout.strip()}-x.onnx", out / f".partial-{os.getppid()}-y.onnx"
    stale.write_text("left by a killed run")
    alive.write_text("another run, still going")
    assert convert_with(fake_converter(".onnx"), ["--checkpoint", "ckpt.pt", "--output", "out/z.onnx"]) == 0
    assert not stale.exists() and alive.exists()


# --- 6: signals ---------------------------------------------------------------------------------
CLEANUP_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from common.cli import run_cli
from common.outputs import partial

def work():
    with partial(Path("out/x.onnx")) as tmp:
        tmp.write_text("half")
        print("ready", flush=True)
        time.sleep(60)
sys.exit(run_cli(work))
"""


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_removes_partial_files_and_prints_one_line(signum, code, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CLEANUP_SCRIPT.format(root=str(ROOT))], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert_one_line(err, (code,), code, signal.Signals(signum).name)
    assert list(tmp_path.iterdir()) == []  # the partial file, and the folder the run created for it


def wait_for(predicate, proc, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_converter_terminated_during_int8_export(tmp_path, checkpoint):
    """SIGTERM (``timeout``) while quantizing: one line, 143, and neither partial file nor created folder."""
    out = tmp_path / "new" / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "convert" / "to_onnx.py"), "--checkpoint", str(checkpoint),
                             "--precision", "int8", "--output", str(out / "x.onnx")],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: out.is_dir() and any(out.iterdir()), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert_one_line(err, (143,), proc.returncode, "SIGTERM")
    assert list(tmp_path.iterdir()) == []


# --- 17: quiet runtimes -------------------------------------------------------------------------
@pytest.mark.slow
def test_executorch_conversion_and_demo_print_no_native_logs(tmp_path, checkpoint):
    def run(*argv):
        return subprocess.run([sys.executable, *map(str, argv)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=900)

    pte = tmp_path / "m.pte"
    converted = run(ROOT / "convert" / "to_executorch.py", "--checkpoint", checkpoint, "--output", pte)
    assert converted.returncode == 0 and converted.stderr == "", converted.stderr[-3000:]
    (tmp_path / "img.png").write_bytes(png())
    demo = run(ROOT / "apps" / "webcam.py", "--headless", "--source", "img.png", "--weights", pte)
    assert demo.returncode == 0 and demo.stderr == "", demo.stderr[-3000:]
    verbose = run(ROOT / "apps" / "webcam.py", "--headless", "--source", "img.png", "--weights", pte,
                  "--output", "v", "--verbose")
    assert verbose.returncode == 0 and "cpuinfo" in verbose.stderr


def test_a_log_file_is_left_by_every_handler_when_its_block_ends(tmp_path, capsys):
    """The report writes each conversion's output to its own file: a logging handler that a library makes
    during one conversion must not keep writing to that file once it is closed (it did: "Logging error ...
    I/O operation on closed file" in conversions.log, and the later messages lost)."""
    import logging

    from common.quiet import output_to
    logger = logging.getLogger("test_output_to")
    logger.propagate = False
    try:
        with open(tmp_path / "first.log", "w") as log, output_to(log):
            logger.addHandler(logging.StreamHandler())  # bound to sys.stderr, which is the log here
            logger.warning("during the first")
        with open(tmp_path / "second.log", "w") as log, output_to(log):
            logger.warning("during the second")
        logger.warning("after both")
    finally:
        logger.handlers.clear()
    assert (tmp_path / "first.log").read_text() == "during the first\n"
    assert (tmp_path / "second.log").read_text() == "during the second\n"
    assert capsys.readouterr().err == "after both\n"
