"""The browser demo (apps/web.py, apps/web/): the JS preprocessing against data/preprocess.py (node), the
CLI's errors, export and server headers, and, marked ``browser``, the page in headless Chromium with a fake
camera showing CIFAR-10 test photos and picked files (a full-size photo of a dog among them), checked frame
by frame against Python ONNX Runtime on the pixels the page fed, "not sure" included."""
import base64
import contextlib
import json
import shutil
import socket
import struct
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from apps import web, website
from apps.chromium import chromium_missing, fake_camera, launch, write_y4m
from apps.webserver import make_server, self_signed_context
from common.abstain import AbstainRule, confidence, softmax
from common.defaults import CIFAR10_CHECKPOINT, SHIPPED_CHECKPOINT
from data import cifar10_preprocess, load_image
from data.preprocess import fashion_mnist_preprocess, imagenet_preprocess, preprocess_batch, preprocess_image
from runtime import load_artifact

ROOT = Path(__file__).resolve().parents[1]
WEB_CLI = ROOT / "apps" / "web.py"
REAL_DOG = ROOT / "data" / "photos" / "cifar10" / "dog" / "dog-farm.webp"  # 1,024x768 (data/photos/README.md)
RUNTIME_MISSING = (None if all((website.RUNTIME_DIR / name).is_file() for name in website.RUNTIME_FILES)
                   else "ONNX Runtime Web is not installed: run scripts/setup.sh (needs npm)")
BROWSER_MISSING = chromium_missing() or RUNTIME_MISSING
W, H, FPS, REPEAT = 128, 96, 10, 3  # fake camera: each test image held for REPEAT frames
CLASSES_SHOWN, MIN_MARGIN = 4, 0.5  # distinct classes on camera; their top-1 lead over the runner-up
TIMEOUT_MS = 120_000  # a guard against hangs only; nothing waits for a fixed time
# |page logits - Python's|: float kernels agree closely (absolute); ONNX Runtime's x86 int8 kernels (VNNI or
# not) and its WASM ones requantize differently, by a share of the logits' range (seen: 0.4% for the Fashion-MNIST
# model, 1.9% for the CIFAR-10 one on a VNNI CPU)
LOGIT_TOLERANCE = {"fp32": 1e-3, "int8": 0.03}
RELATIVE = {"fp32": False, "int8": True}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The shipped CIFAR-10 model's int8 and fp32 ONNX, built through the converter API into a temporary
    folder (as apps/web.py builds the default model's): tests leave the repository's artifacts/ alone."""
    from convert.api import convert
    folder = tmp_path_factory.mktemp("artifacts")
    return {p: convert(CIFAR10_CHECKPOINT, "onnx", precision=p,
                       output=folder / f"{CIFAR10_CHECKPOINT.stem}_{p}.onnx").path for p in web.DEFAULT_PRECISIONS}


def browser_test(test):
    """Marked ``browser``; skipped with the reason when Chromium, Playwright or ONNX Runtime Web is missing."""
    return pytest.mark.browser(pytest.mark.skipif(bool(BROWSER_MISSING), reason=BROWSER_MISSING or "")(test))


def run_cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WEB_CLI), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


# --- the JS preprocessing, bit for bit ---------------------------------------------------------------
NODE_PREPROCESS = """
import { preprocess } from './apps/web/preprocess.js';
let text = '';
process.stdin.on('data', (d) => (text += d)).on('end', () => {
  const out = JSON.parse(text).map((c) => Buffer.from(
    preprocess(Buffer.from(c.rgba, 'base64'), c.width, c.height, c.spec).buffer).toString('base64'));
  process.stdout.write(JSON.stringify(out));
});
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_preprocessing_equals_python_bit_for_bit():
    rng = np.random.default_rng(0)
    cases = [((96, 128), fashion_mnist_preprocess(32)), ((28, 28), fashion_mnist_preprocess(32)),
             ((480, 640), fashion_mnist_preprocess(32)), ((61, 97), imagenet_preprocess(32)),
             ((300, 233), imagenet_preprocess(224)), ((33, 31), fashion_mnist_preprocess(28)),  # odd crop offset
             ((480, 640), cifar10_preprocess(32)), ((32, 32), cifar10_preprocess(32))]  # the default model's
    images = [(rng.integers(0, 256, (h, w, 3)) * 0.4 + np.linspace(0, 150, w)[:, None]).astype(np.uint8)
              for (h, w), _ in cases]
    payload = [{"rgba": base64.b64encode(np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]).tobytes()).decode(),
                "width": im.shape[1], "height": im.shape[0], "spec": spec} for im, (_, spec) in zip(images, cases)]
    done = subprocess.run(["node", "--input-type=module", "-e", NODE_PREPROCESS], input=json.dumps(payload),
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    for image, (_, spec), out in zip(images, cases, json.loads(done.stdout)):
        expected = preprocess_image(image, spec)
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(out), np.float32).reshape(expected.shape), expected)


# --- command line ------------------------------------------------------------------------------------
@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("case", ["missing", "not onnx", "damaged onnx", "port in use", "export into a full folder"])
def test_errors_are_one_line_exit_2(case, models, busy_port, tmp_path):
    if case in ("port in use", "export into a full folder") and RUNTIME_MISSING:
        pytest.skip(RUNTIME_MISSING)
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"not a protobuf")
    full = tmp_path / "site"
    full.mkdir()
    (full / "mine.txt").write_text("keep")
    args, expected = {
        "missing": (["--weights", tmp_path / "nope.onnx", "--export", tmp_path / "out"], "not found"),
        "not onnx": (["--weights", SHIPPED_CHECKPOINT, "--export", tmp_path / "out"], "is not an .onnx file"),
        "damaged onnx": (["--weights", damaged, "--export", tmp_path / "out"], "could not be loaded by ONNX Runtime"),
        "port in use": (["--weights", models["fp32"], "--port", busy_port], f"port {busy_port} is in use"),
        "export into a full folder": (["--weights", models["fp32"], "--export", full], "--force"),
    }[case]
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert (full / "mine.txt").read_text() == "keep" and sorted(p.name for p in full.iterdir()) == ["mine.txt"]


@pytest.fixture
def fake_runtime(tmp_path, monkeypatch):
    """Stand-in ONNX Runtime Web files, so export and serving are testable without npm."""
    folder = tmp_path / "dist"
    folder.mkdir()
    for name in website.RUNTIME_FILES:
        (folder / name).write_bytes(name.encode())
    monkeypatch.setattr(website, "RUNTIME_DIR", folder)
    return folder


def test_export_writes_a_self_contained_site(models, fake_runtime, tmp_path, capsys):
    site = tmp_path / "site"
    assert web.main(["--weights", str(models["int8"]), str(models["fp32"]), "--export", str(site)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {site}")
    listing = json.loads((site / "models.json").read_text())
    assert [(m["name"], m["precision"]) for m in listing] == [(models["int8"].name, "int8"), (models["fp32"].name, "fp32")]
    for entry in listing:
        source = models[entry["precision"]]
        assert (site / entry["url"]).read_bytes() == source.read_bytes()
        assert json.loads((site / entry["manifest"]).read_text()) == json.loads(Path(f"{source}.json").read_text())
    for name in [*website.PAGE_FILES, *(f"ort/{n}" for n in website.RUNTIME_FILES), "_headers"]:
        assert (site / name).is_file(), name
    assert "Cross-Origin-Embedder-Policy: require-corp" in (site / "_headers").read_text()
    (site / "mine.txt").write_text("keep")
    assert web.main(["--weights", str(models["fp32"]), "--export", str(site), "--force"]) == 0
    assert [m["name"] for m in json.loads((site / "models.json").read_text())] == [models["fp32"].name]
    assert not (site / "models" / models["int8"].name).exists() and (site / "mine.txt").read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_bare_onnx_gets_its_manifest_from_the_embedded_metadata(models, tmp_path):
    bare = tmp_path / "bare.onnx"
    shutil.copyfile(models["fp32"], bare)
    manifest = website.web_model(bare).manifest
    assert manifest["precision"] == "fp32" and manifest["model"]["input_size"] == 32
    assert manifest["model"]["labels"][9] == "truck" and manifest["model"]["abstain"]["threshold"] > 0


def serve_in_thread(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("https", [False, True])
def test_server_sends_isolation_headers_and_types(https, models, fake_runtime):
    if https and shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    files = website.site_files([website.web_model(models["int8"])])
    server = make_server(files, "127.0.0.1", 0, self_signed_context(["localhost", "127.0.0.1"]) if https else None)
    serve_in_thread(server)
    base = f"{'https' if https else 'http'}://127.0.0.1:{server.server_address[1]}/"
    unverified = ssl._create_unverified_context() if https else None  # the certificate is self-signed
    try:
        for path, mime in [("", "text/html"), ("app.js", "text/javascript"), ("models.json", "application/json"),
                           ("ort/ort-wasm-simd-threaded.jsep.wasm", "application/wasm"),
                           ("ort/ort-wasm-simd-threaded.jsep.mjs", "text/javascript")]:
            with urllib.request.urlopen(base + path, context=unverified) as response:
                assert response.headers["Content-Type"].startswith(mime), path
                assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
                body = response.read()
                assert body == (files[path or "index.html"].read_bytes() if isinstance(files[path or "index.html"], Path)
                                else files[path])
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(base + f"../weights/{SHIPPED_CHECKPOINT.name}", context=unverified)
    finally:
        server.shutdown()
        server.server_close()


def test_default_artifact_is_reused_or_built_with_the_converter_api(tmp_path, monkeypatch):
    import convert.api
    from model import file_sha256
    monkeypatch.setattr(web, "ARTIFACTS_DIR", tmp_path)
    requests = []
    monkeypatch.setattr(convert.api, "convert", lambda model, fmt, **options: requests.append((model, fmt, options))
                        or convert.api.Manifest(path=str(options["output"])))
    path = web.default_artifact("int8")
    assert path == tmp_path / f"{SHIPPED_CHECKPOINT.stem}_32_int8.onnx"
    assert [(model, fmt, o["precision"], o["output"]) for model, fmt, o in requests] == [(None, "onnx", "int8", path)]
    path.write_bytes(b"onnx")
    Path(f"{path}.json").write_text(json.dumps({"model": {"checkpoint_sha256": file_sha256(SHIPPED_CHECKPOINT)}}))
    assert web.default_artifact("int8") == path and len(requests) == 1  # reused: same weights
    Path(f"{path}.json").write_text(json.dumps({"model": {"checkpoint_sha256": "other weights"}}))
    assert web.default_artifact("int8") == path and len(requests) == 2 and requests[1][2]["force"]


# --- in the browser ----------------------------------------------------------------------------------
def camera_frame(image: np.ndarray) -> np.ndarray:
    """A 32x32 RGB CIFAR-10 photo enlarged into the middle of a W x H black RGB frame."""
    frame = np.zeros((H, W, 3), np.uint8)
    frame[:, (W - H) // 2:(W + H) // 2] = cv2.resize(image, (H, H), interpolation=cv2.INTER_NEAREST)
    return frame


def decode(b64: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype)


class PythonOnnx:
    """Python ONNX Runtime on what the page reports it fed: the expected input and logits of a sample."""

    def __init__(self, models: dict[str, Path]):
        self.runners = {p: load_artifact(path, threads=1) for p, path in models.items()}

    def check(self, sample: dict) -> str:
        """Assert the page's input and logits are Python's for the page's frame; returns the top-1 label."""
        runner = self.runners[sample["result"]["precision"]]
        pixels = decode(sample["pixels"], np.uint8).reshape(sample["height"], sample["width"], 4)[..., :3]
        expected = preprocess_image(pixels, runner.meta["preprocess"])
        np.testing.assert_array_equal(decode(sample["input"], np.float32).reshape(expected.shape), expected)
        logits = runner.run(expected[None])[0]
        tolerance = LOGIT_TOLERANCE[runner.precision] * (np.ptp(logits) if RELATIVE[runner.precision] else 1.0)
        np.testing.assert_allclose(decode(sample["logits"], np.float32), logits, atol=tolerance)
        label = runner.labels[int(np.argmax(logits))]
        if logits.max() - np.sort(logits)[-2] > 2 * tolerance:  # closer than that, either label may win
            assert sample["result"]["top1"] == label, (sample["result"], label)
        rule, top1 = AbstainRule.from_meta(runner.meta), softmax(logits).max()
        if abs(top1 - rule.threshold) > 2 * tolerance:  # the page's own logits decide a near-tie
            assert sample["result"]["abstained"] == rule.abstains(top1), (sample["result"], top1, rule)
        return label


@pytest.fixture(scope="module")
def shown(models):
    """The test photos: CLASSES_SHOWN classes, each its first CIFAR-10 test image that both models put first
    by more than MIN_MARGIN probability on the camera frame (so the codec's rounding cannot flip it)."""
    from data.cifar10 import load_cifar10
    images, labels = load_cifar10(None, "test")
    runners = PythonOnnx(models).runners
    chosen: dict[int, np.ndarray] = {}
    for image, label in zip(images, labels):
        if label in chosen:
            continue
        frame = camera_frame(image)
        ok = True
        for runner in runners.values():
            logits = runner.run(preprocess_image(frame, runner.meta["preprocess"])[None])[0]
            probs = np.exp(logits - logits.max())
            first, second = np.sort(probs / probs.sum())[::-1][:2]
            ok &= int(np.argmax(logits)) == label and first - second > MIN_MARGIN
        if ok:
            chosen[int(label)] = image
        if len(chosen) == CLASSES_SHOWN:
            return chosen
    pytest.fail("not enough confidently classified test images")


@pytest.fixture(scope="module")
def chromium(shown, tmp_path_factory):
    from playwright.sync_api import sync_playwright
    frames = [camera_frame(image) for image in shown.values() for _ in range(REPEAT)]
    y4m = write_y4m(tmp_path_factory.mktemp("camera") / "cifar10.y4m", frames, FPS)
    with sync_playwright() as playwright:
        browser = launch(playwright, fake_camera(y4m))
        yield browser
        browser.close()


class QuietStatic(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def static_server(folder: Path):
    """``folder`` behind a plain static server (no isolation headers: the page gets one WASM thread)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietStatic, directory=str(folder)))
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def static_site(models, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("export") / "site"
    assert web.main(["--weights", str(models["int8"]), str(models["fp32"]), "--export", str(site)]) == 0
    return site


SAMPLE_JS = """(known) => {  // the latest run, if not among ``known`` frames, its arrays as base64 bytes
  const r = window.lastRun;
  if (!r || known.includes(r.result.frames)) return null;
  const b64 = (a) => { const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength); let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s); };
  return { width: r.frame.width, height: r.frame.height, pixels: b64(r.frame.data), input: b64(r.input),
           logits: b64(r.logits), result: r.result };
}"""


def result(page) -> dict:
    return json.loads(page.text_content("#result") or "{}")


def samples(page, until, python: PythonOnnx) -> list[str]:
    """Check every new result against Python until ``until(labels)``; returns the page's top-1 labels."""
    labels, seen = [], []
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not until(labels):
        assert time.monotonic() < deadline, f"page stalled after {labels}: {page.text_content('#status')}"
        sample = page.evaluate(SAMPLE_JS, seen)
        if sample:
            seen.append(sample["result"]["frames"])
            labels.append(python.check(sample))
            assert sample["result"]["top1"] == labels[-1]
        page.wait_for_timeout(20)
    return labels


def wait_for_result(page, condition: str) -> dict:
    page.wait_for_function(f"(() => {{ const t = document.getElementById('result').textContent;"
                           f" if (!t) return false; const r = JSON.parse(t); return {condition}; }})()",
                           timeout=TIMEOUT_MS)
    return result(page)


def overlay_bars(png: bytes, bgr: tuple[int, int, int]) -> bool:
    """Probability bars of this colour fill part of the overlay's panel (the top-left of the view, where
    the picture is darkened to 35%: no picture pixel there can match a bar colour)."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    panel = image[:image.shape[0] // 3, :image.shape[1] // 2].astype(int)
    return np.all(np.abs(panel - bgr) < 12, axis=2).mean() > 0.01


GREEN, SLATE = (70, 150, 40), (120, 90, 60)  # BGR of the bars: an answer, "not sure" guesses (apps/web/overlay.js)


def not_sure_picture(python: PythonOnnx, folder: Path) -> Path:
    """The scene-free picture (no object) the models are least sure of, clearly below their floor."""
    from data.synthetic import scene_free_images
    candidates = [np.asarray(image) for image in scene_free_images(300, size=96, seed=1)]
    margins = np.min([AbstainRule.from_meta(runner.meta).threshold - confidence(runner.run(
        preprocess_batch(candidates, runner.meta["preprocess"]))) for runner in python.runners.values()], axis=0)
    best = int(np.argmax(margins))
    assert margins[best] > 0.05, f"no scene-free picture is clearly 'not sure' for the shipped model ({margins[best]})"
    path = folder / f"scene-free-{best}.png"
    cv2.imwrite(str(path), candidates[best][..., ::-1])
    return path


def linear_rgb_profile() -> bytes:
    """A valid ICC v2 display profile far from sRGB: sRGB's primaries with linear tone curves."""
    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, 0x0100)  # one entry: gamma 1.0
    text = b"desc" + bytes(4) + struct.pack(">I", 7) + b"linear\0" + bytes(78)
    tags = [(b"desc", text), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    start, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (struct.pack(">I", start + len(data)) + bytes(4) + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + bytes(12) + b"acsp" + bytes(28) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


def phone_photo(photo: Path, folder: Path) -> Path:
    """``photo`` stored as a phone stores a portrait shot: pixels on their side, EXIF orientation 6,
    and a colour profile of its own (Python reads the pixels as they are, and so must the page)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    path = folder / f"{photo.stem}-sideways.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(np.asarray(load_image(photo)), 1))).save(
        path, exif=exif.tobytes(), icc_profile=linear_rgb_profile(), quality=95)
    return path


@browser_test
def test_exported_site_classifies_camera_and_files_like_python(chromium, static_site, models, shown, tmp_path):
    with static_server(static_site) as url:
        check_exported_site(chromium, url, PythonOnnx(models), shown, tmp_path)


def check_exported_site(chromium, url, python, shown, tmp_path):
    expected = {python.runners["int8"].labels[label] for label in shown}
    page = chromium.new_page()
    page.goto(url)
    first = wait_for_result(page, "r.top1 !== undefined")
    assert first["backend"] == "wasm" and first["threads"] == 1 and first["precision"] == "int8"  # not isolated
    assert first["source"] == "camera" and set(first) >= {"top1", "prob", "ms", "backend", "frames", "abstained"}
    assert set(samples(page, lambda labels: set(labels) >= expected, python)) <= expected

    assert overlay_bars(page.locator("#view").screenshot(), GREEN)
    status, knows = page.text_content("#status"), page.text_content("#knows")
    assert "int8 on wasm 1 thread" in status and "camera" in status
    assert "airplane, automobile, bird" in knows and "CIFAR-10" in knows and "not sure" in knows
    assert "resized to 32 px (bilinear), centre 32×32 crop" in knows
    page.set_viewport_size({"width": 360, "height": 740})  # a phone held upright: nothing wider than it
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    page.select_option("#model", python.runners["fp32"].path.name)
    wait_for_result(page, "r.precision === 'fp32'")
    assert set(samples(page, lambda labels: set(labels) >= expected, python)) <= expected

    label, image = next(iter(shown.items()))
    picture = tmp_path / "item.png"
    cv2.imwrite(str(picture), cv2.resize(image[..., ::-1], (84, 84), interpolation=cv2.INTER_NEAREST))
    page.set_input_files("#file", str(picture))
    picked = wait_for_result(page, "r.source === 'item.png'")
    assert picked["top1"] == python.runners["fp32"].labels[label] and not picked["abstained"]
    assert samples(page, lambda labels: len(labels) == 1, python) == [picked["top1"]]

    page.set_input_files("#file", str(REAL_DOG))  # a full-size photo, not from CIFAR-10
    named = wait_for_result(page, f"r.source === '{REAL_DOG.name}'")
    assert named["top1"] == "dog" and not named["abstained"], named
    assert samples(page, lambda labels: len(labels) == 1, python) == ["dog"]

    sideways = phone_photo(REAL_DOG, tmp_path)
    page.set_input_files("#file", str(sideways))
    upright = wait_for_result(page, f"r.source === '{sideways.name}'")
    assert upright["top1"] == "dog" and not upright["abstained"], upright
    frame = page.evaluate(SAMPLE_JS, [])  # the page's frame: the photo upright, as Python reads it
    assert (frame["width"], frame["height"]) == load_image(sideways).size == (1024, 768)
    pixels = np.frombuffer(base64.b64decode(frame["pixels"]), np.uint8).reshape(frame["height"], frame["width"], 4)
    difference = np.abs(pixels[..., :3].astype(int) - np.asarray(load_image(sideways), int)).mean()
    assert difference < 3, f"the page's pixels differ from Python's by {difference:.1f} levels on average"

    large = tmp_path / "dog-20mp.jpg"  # over Safari's canvas limit (4096 x 4096 pixels): scaled to fit it
    load_image(REAL_DOG).resize((5120, 3840), Image.Resampling.BICUBIC).save(large, quality=90)
    page.set_input_files("#file", str(large))
    assert wait_for_result(page, f"r.source === '{large.name}'")["top1"] == "dog"
    width, height = page.evaluate("[window.lastRun.frame.width, window.lastRun.frame.height]")
    assert width * height <= 4096 * 4096 and (width, height) == (4729, 3547)

    heic = tmp_path / "IMG_0001.HEIC"  # an iPhone's photo, not converted: said, not shown
    heic.write_bytes(b"\0\0\0\x18ftypheic" + bytes(64))
    page.set_input_files("#file", str(heic))
    page.wait_for_function("document.getElementById('status').textContent.includes('IMG_0001.HEIC')")
    assert "convert it to JPEG" in page.text_content("#status")

    unknown = not_sure_picture(python, tmp_path)
    page.set_input_files("#file", str(unknown))
    declined = wait_for_result(page, f"r.source === '{unknown.name}'")
    assert declined["abstained"] and declined["top1"]  # "not sure", the best guess still reported
    samples(page, lambda labels: len(labels) == 1, python)
    view = page.locator("#view").screenshot()
    assert overlay_bars(view, SLATE) and not overlay_bars(view, GREEN)
    page.close()


@browser_test
def test_live_server_is_isolated_and_runs_wasm_threads(chromium, models):
    server = subprocess.Popen([sys.executable, str(WEB_CLI), "--weights", str(models["fp32"]), "--port", "0"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = server.stdout.readline()
        assert line.startswith("serving http://localhost:"), line
        page = chromium.new_page()
        page.goto(line.split()[1])
        first = wait_for_result(page, "r.top1 !== undefined")
        assert page.evaluate("crossOriginIsolated")
        assert first["threads"] == min(page.evaluate("navigator.hardwareConcurrency"), 4)
        samples(page, lambda labels: len(labels) >= 3, PythonOnnx(models))
        page.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


@browser_test
def test_missing_model_shows_an_error_on_the_page(chromium, static_site, models, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(static_site, broken)
    (broken / "models" / models["int8"].name).unlink()
    with static_server(broken) as url:
        page = chromium.new_page()
        page.goto(url)
        page.wait_for_selector("#status.error", timeout=TIMEOUT_MS)
        status = page.locator("#status")
        assert status.is_visible()
        assert f"models/{models['int8'].name}" in status.text_content() and "404" in status.text_content()
        assert result(page)["error"] in status.text_content()
        page.close()
