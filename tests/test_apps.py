"""The webcam demo without camera or display: headless runs on generated videos/images, errors, threads, keys."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps import sources, webcam, window
from apps.outputs import save_snapshot
from apps.sources import Frame, Grabber
from common.defaults import CIFAR10_CHECKPOINT
from data import FASHION_MNIST_CLASSES

ROOT = Path(__file__).resolve().parents[1]
WEBCAM = ROOT / "apps" / "webcam.py"
FRAMES, W, H, FPS = 12, 64, 48, 12.0


def shapes(i: int) -> np.ndarray:
    image = np.full((H, W, 3), 128, np.uint8)
    cv2.rectangle(image, (4 + 3 * i, 8), (20 + 3 * i, 30), (0, 0, 255), cv2.FILLED)
    cv2.circle(image, (48, 10 + 2 * i), 6, (255, 200, 0), cv2.FILLED)
    return image


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "shapes.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for i in range(FRAMES):
        writer.write(shapes(i))
    writer.release()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (result := cap.read())[0]:
        frames.append(result[1])
    return frames, cap.get(cv2.CAP_PROP_FPS)


def run_demo(capsys, *args) -> tuple[int, list[str]]:
    code = webcam.main([str(a) for a in args])
    return code, capsys.readouterr().out.splitlines()


def check_json_lines(lines: list[str], frames: int, source: str, runtime: str) -> dict:
    records = [json.loads(line) for line in lines]
    *per_frame, last = records
    assert [r["frame"] for r in per_frame] == list(range(frames))
    for r in per_frame:
        assert set(r) == {"frame", "source", "topk", "inference_ms", "abstained"} and r["source"] == source
        probs = [t["prob"] for t in r["topk"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert all(t["label"] in FASHION_MNIST_CLASSES for t in r["topk"])
        assert 0 < sum(probs) <= 1 + 1e-6 and r["inference_ms"] > 0
    summary = last["summary"]
    assert summary["frames"] == frames and summary["skipped"] == 0 and summary["dropped"] == 0
    assert summary["runtime"] == runtime and summary["fps"] > 0
    assert summary["inference_ms_mean"] > 0 and summary["inference_ms_median"] > 0
    return records


def test_cli_headless_video_end_to_end(checkpoint, video, tmp_path):
    out = tmp_path / "annotated.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, str(WEBCAM), "--headless", "--json", "--source", str(video),
                             "--weights", str(checkpoint), "--output", str(out)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    records = check_json_lines(result.stdout.splitlines(), FRAMES, "shapes.mp4", "pytorch fp32")
    assert records[-1]["summary"]["output"] == str(out)
    annotated, fps = read_video(out)
    original, _ = read_video(video)
    assert len(annotated) == len(original) == FRAMES and fps == FPS
    for before, after in zip(original, annotated):
        overlay = np.abs(after[:H // 3, :W // 2].astype(int) - before[:H // 3, :W // 2]).mean()
        assert overlay > 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mp4"]  # no temporary left behind


def test_text_output_avi_and_no_display_means_headless(checkpoint, video, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    code, lines = run_demo(capsys, "--source", video, "--weights", checkpoint, "--topk", "2", "--max-frames", 5)
    assert code == 0
    assert [line.split(":")[0] for line in lines[:5]] == [f"frame {i} shapes.mp4" for i in range(5)]
    assert lines[5].startswith("summary: 5 frames, 0 skipped (corrupt), 0 dropped (stale)")
    assert lines[6] == ("model: knows T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot "
                        "(fashion-mnist); no abstention rule (always names its best guess)")
    assert lines[7] == "wrote shapes_annotated.mp4" and len(read_video(tmp_path / "shapes_annotated.mp4")[0]) == 5
    code, lines = run_demo(capsys, "--headless", "--source", video, "--weights", checkpoint, "--output", "a.avi")
    assert code == 0 and len(read_video(tmp_path / "a.avi")[0]) == FRAMES


def test_image_folder_skips_corrupt_images(checkpoint, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), shapes(0))
    cv2.imwrite(str(folder / "c.jpg"), shapes(5))
    (folder / "b.jpg").write_bytes(b"not a jpeg at all")
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    code, lines = run_demo(capsys, "--headless", "--json", "--source", folder, "--weights", checkpoint,
                           "--output", out)
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert [(r["frame"], r["source"]) for r in records[:-1]] == [(0, "a.png"), (2, "c.jpg")]
    summary = records[-1]["summary"]
    assert summary["frames"] == 2 and summary["skipped"] == 1 and summary["output"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.jpg"]
    assert np.abs(cv2.imread(str(out / "a.png")).astype(int) - shapes(0)).mean() > 5
    assert run_demo(capsys, "--headless", "--source", folder, "--weights", checkpoint, "--output", out,
                    "--force")[0] == 0


@pytest.fixture
def error_cases(checkpoint, video, tmp_path):
    (tmp_path / "model.txt").write_text("not a model")
    (tmp_path / "model.mlpackage").mkdir()
    (tmp_path / "taken.mp4").write_bytes(b"precious")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    good = ["--source", video, "--weights", checkpoint]
    return {
        "camera": (["--source", "7", "--weights", checkpoint], "no camera at index 7; to classify a video file "
                   "instead pass --source path/to/video.mp4"),
        "missing source": (["--source", tmp_path / "nope.mp4", "--weights", checkpoint], "not found"),
        "missing weights": (["--source", video, "--weights", tmp_path / "nope.onnx"], "not found"),
        "unreadable video": (["--source", tmp_path / "broken.mp4", "--weights", checkpoint], "cannot read video"),
        "unknown artifact": (["--source", video, "--weights", tmp_path / "model.txt"], "unknown artifact type"),
        "coreml": (["--source", video, "--weights", tmp_path / "model.mlpackage"],
                   "Core ML models run only on macOS/iOS; use the .onnx or .pte artifact here"),
        "output exists": ([*good, "--output", tmp_path / "taken.mp4"], "already exists; pass --force"),
    }


@pytest.mark.parametrize("case", ["camera", "missing source", "missing weights", "unreadable video",
                                  "unknown artifact", "coreml", "output exists"])
def test_errors_are_one_line_exit_2(case, error_cases, tmp_path, capfd, monkeypatch):
    if case == "coreml" and sys.platform == "darwin":
        pytest.skip("Core ML runs on macOS")
    args, message = error_cases[case]
    monkeypatch.chdir(tmp_path)
    assert webcam.main(["--headless", *map(str, args)]) == 2
    out, err = capfd.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert (tmp_path / "taken.mp4").read_bytes() == b"precious"
    assert not [p for p in tmp_path.iterdir() if "annotated" in p.name or ".partial-" in p.name]


def test_cli_error_has_no_traceback(checkpoint, tmp_path):
    result = subprocess.run([sys.executable, str(WEBCAM), "--source", "7", "--weights", str(checkpoint)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["error: no camera at index 7; to classify a video file instead pass "
                                          "--source path/to/video.mp4"]


class FakeSource:
    kind, fps, skipped, closed = "video", 0.0, 0, False

    def __init__(self, count: int, live: bool, delay: float):
        self.count, self.live, self.delay = count, live, delay

    def frames(self):
        for i in range(self.count):
            time.sleep(self.delay)
            yield Frame(i, "fake", np.zeros((4, 4, 3), np.uint8))

    def close(self):
        self.closed = True


def consume(grabber: Grabber, delay: float) -> list[int]:
    seen = []
    while (frame := grabber.get()) is not None:
        seen.append(frame.index)
        time.sleep(delay)
    grabber.stop()
    return seen


def test_live_capture_keeps_only_the_newest_frame():
    source = FakeSource(200, live=True, delay=0.001)
    grabber = Grabber(source)
    seen = consume(grabber, delay=0.02)
    assert grabber.dropped > 0 and len(seen) + grabber.dropped == 200
    assert seen == sorted(seen) and seen[-1] == 199 and source.closed


def test_file_capture_keeps_every_frame_in_order():
    grabber = Grabber(FakeSource(30, live=False, delay=0.0))
    assert consume(grabber, delay=0.005) == list(range(30)) and grabber.dropped == 0


def test_failed_video_reads_are_skipped_and_counted(monkeypatch):
    reads = iter([True, True, False, False, True, False] + [False] * 100)

    class FakeCapture:
        def __init__(self, target): pass
        def isOpened(self): return True
        def set(self, *args): pass
        def get(self, prop): return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_COUNT: 6}[prop]
        def read(self): return (True, np.zeros((4, 4, 3), np.uint8)) if next(reads) else (False, None)
        def release(self): pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCapture)
    source = sources.open_source(__file__)  # any existing non-image file is a video
    assert [f.index for f in source.frames()] == [0, 1, 4] and source.skipped == 2  # the end is not a skip


def test_window_keys_snapshot_pause_quit(tmp_path, monkeypatch):
    keys = iter([ord("s"), ord("s"), ord(" "), ord("x"), ord(" "), 255, ord("q")])
    waits = []
    monkeypatch.setattr(window.cv2, "imshow", lambda *args: None)
    monkeypatch.setattr(window.cv2, "waitKey", lambda ms: waits.append(ms) or next(keys))
    monkeypatch.setattr(window.cv2, "getWindowProperty", lambda *args: 1.0)
    view = window.Window(tmp_path, step=False, fps=0.0)
    assert view.show(shapes(0))  # s, s, pause, (x ignored while paused), resume, next frame
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot_001.png", "snapshot_002.png"]
    assert waits == [1, 1, 1, 0, 0, 1]
    assert not view.show(shapes(1))  # q


def test_snapshot_never_overwrites(tmp_path):
    (tmp_path / "snapshot_001.png").write_bytes(b"old")
    assert save_snapshot(shapes(0), tmp_path).name == "snapshot_002.png"
    assert (tmp_path / "snapshot_001.png").read_bytes() == b"old"


@pytest.mark.slow
def test_onnx_artifact_gives_the_checkpoints_results(checkpoint, video, tmp_path, capsys):
    from convert import to_onnx
    artifact = tmp_path / "nano.onnx"
    assert to_onnx.main(to_onnx.CONVERTER, ["--checkpoint", str(checkpoint), "--output", str(artifact)]) == 0
    capsys.readouterr()
    results = {}
    for weights in (checkpoint, artifact):
        code, lines = run_demo(capsys, "--headless", "--json", "--source", video, "--weights", weights,
                               "--output", tmp_path / f"{weights.suffix[1:]}.mp4")
        assert code == 0
        runtime = "onnx fp32" if weights == artifact else "pytorch fp32"
        results[weights.suffix] = check_json_lines(lines, FRAMES, "shapes.mp4", runtime)[:-1]
    for torch_result, onnx_result in zip(results[".pt"], results[".onnx"]):
        assert [t["label"] for t in torch_result["topk"]] == [t["label"] for t in onnx_result["topk"]]
        np.testing.assert_allclose([t["prob"] for t in torch_result["topk"]],
                                   [t["prob"] for t in onnx_result["topk"]], atol=1e-4)


# --- the CIFAR-10 model on full-resolution photos it never saw -------------------------------------
SAMPLES = ROOT / "apps" / "samples"


def test_cifar10_model_on_photos_says_what_it_knows_and_when_it_is_not_sure(tmp_path, capsys):
    from common.abstain import AbstainRule
    from model import read_checkpoint
    rule = AbstainRule.from_meta(read_checkpoint(CIFAR10_CHECKPOINT).meta)
    assert webcam.main([str(a) for a in ("--source", SAMPLES, "--weights", CIFAR10_CHECKPOINT, "--headless",
                                         "--json", "--output", tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    said = {r["source"]: r for r in map(json.loads, printed.out.splitlines()[:-1])}
    assert set(said) == {p.name for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png")}
    for record in said.values():  # "not sure" exactly when the best guess is below the model's floor
        assert record["abstained"] == rule.abstains(record["topk"][0]["prob"]), record
    summary = json.loads(printed.out.splitlines()[-1])["summary"]
    assert summary["model"] == "knows airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck (cifar10)"
    assert summary["not_sure_below"] == rule.threshold


def test_overlay_says_not_sure_and_dims_the_guesses():
    from apps.classifier import Prediction
    from apps.overlay import BAR, GUESS_BAR, draw_overlay
    sure, unsure = (draw_overlay(np.zeros((240, 320, 3), np.uint8), Prediction([("cat", 0.9), ("dog", 0.05)], 1.0, a),
                                 10.0, "onnx int8", "knows cat, dog (pets)") for a in (False, True))
    def has(image, bgr):
        return np.all(image == bgr, axis=2).any()
    assert has(sure, BAR) and not has(sure, GUESS_BAR)
    assert has(unsure, GUESS_BAR) and not has(unsure, BAR)
    assert sure[-20:].any()  # the "knows" line at the bottom
