"""A screenshot of the web demo in headless Chromium, its fake camera filming a photo.

    python scripts/web_screenshot.py data/photos/cifar10/dog/dog-farm.webp docs/web_demo.png
    python scripts/web_screenshot.py photo.jpg shot.png --weights m_int8.onnx m_fp32.onnx

The photo is centre-cropped to 4:3 and shown at 640x480 as the camera's picture; the page runs the
first ONNX artifact (default: the shipped model's int8 and fp32, built on first use). Prints the
page's ``#result`` JSON. An existing output is kept unless ``--force``.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from apps import AppError, web  # noqa: E402
from apps.chromium import chromium_missing, fake_camera, launch, write_y4m  # noqa: E402
from apps.website import site_files, web_model  # noqa: E402
from common.cli import Parser, run_cli  # noqa: E402
from common.outputs import check_output, partial, publish  # noqa: E402
from data import load_image  # noqa: E402

WIDTH, HEIGHT, FRAMES = 640, 480, 20
TIMEOUT_MS = 120_000


def camera_picture(photo: Path) -> np.ndarray:
    """The photo's centre 4:3 crop at WIDTH x HEIGHT, RGB."""
    image = load_image(photo)
    w, h = image.size
    side = min(w, h * WIDTH // HEIGHT)
    image = image.crop(((w - side) // 2, (h - side * HEIGHT // WIDTH) // 2,
                        (w - side) // 2 + side, (h - side * HEIGHT // WIDTH) // 2 + side * HEIGHT // WIDTH))
    return np.asarray(image.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC))


def screenshot(photo: Path, output: Path, weights: list[Path] | None, force: bool) -> dict:
    """Serve the page, film ``photo`` with the fake camera, wait for a result, save the page as PNG."""
    import threading

    from playwright.sync_api import sync_playwright

    from apps.webserver import make_server
    models = [web_model(path) for path in (weights or [web.default_artifact(p) for p in web.DEFAULT_PRECISIONS])]
    server = make_server(site_files(models), "127.0.0.1", 0, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
            y4m = write_y4m(Path(folder) / "camera.y4m", [camera_picture(photo)] * FRAMES)
            browser = launch(playwright, fake_camera(y4m))
            page = browser.new_page(viewport={"width": 900, "height": 760})
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_function("document.getElementById('result').textContent.includes('camera')",
                                   timeout=TIMEOUT_MS)
            page.wait_for_timeout(500)  # a few more frames: the FPS settles
            with partial(output) as tmp:
                tmp.write_bytes(page.screenshot(full_page=True))
                publish(tmp, output, force)
            result = json.loads(page.text_content("#result"))
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("output", type=Path, help="the PNG to write")
    parser.add_argument("--weights", type=Path, nargs="+", help="ONNX artifacts (default: the shipped model's)")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)

    def run() -> None:
        check_output(args.output, args.force)
        missing = chromium_missing()
        if missing:
            raise AppError(missing)
        print(json.dumps(screenshot(args.photo, args.output, args.weights, args.force)))
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
