"""The webcam demo in the browser (ONNX Runtime Web, apps/web/): serve it live or export a static site.

    python apps/web.py                                   # shipped model, int8 + fp32 ONNX, http://localhost:8000/
    python apps/web.py --weights m_int8.onnx m_fp32.onnx --port 8080
    python apps/web.py --https                           # a phone on the same network can open the camera
    python apps/web.py --export site/                    # a static folder for any static host
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps import AppError  # noqa: E402  (after the sys.path line above)
from apps.website import WebModel, export_site, site_files, web_model  # noqa: E402
from apps.webserver import lan_address, make_server, self_signed_context  # noqa: E402
from common.cli import Parser, run_cli  # noqa: E402
from common.defaults import ARTIFACTS_DIR, SHIPPED_CHECKPOINT  # noqa: E402
from common.quiet import quiet_third_party  # noqa: E402

DEFAULT_PRECISIONS = ("int8", "fp32")  # the page opens the first; the select switches


def default_artifact(precision: str) -> Path:
    """The shipped model's ONNX artifact in artifacts/: reused when its manifest names the same weights,
    else converted and verified now through the converter API."""
    from convert.api import VerificationFailed, artifact_name, convert
    from model import file_sha256, read_checkpoint
    from runtime import ArtifactError, read_manifest
    quiet_third_party()  # after torch's import, which sets its loggers' levels
    size = read_checkpoint(SHIPPED_CHECKPOINT).meta["input_size"]
    path = ARTIFACTS_DIR / f"{artifact_name(SHIPPED_CHECKPOINT.stem, size, precision)}.onnx"
    try:
        manifest = read_manifest(path) if path.is_file() else None
    except ArtifactError:
        manifest = None
    if manifest and manifest["model"].get("checkpoint_sha256") == file_sha256(SHIPPED_CHECKPOINT):
        return path
    print(f"building {path} from {SHIPPED_CHECKPOINT.name} (first use: a minute or more)", file=sys.stderr)
    try:
        return convert(None, "onnx", precision=precision, output=path, force=True).path
    except VerificationFailed as err:
        raise AppError(f"the shipped model's {precision} ONNX failed verification: {err}") from None


def parse_args(argv: list[str] | None):
    p = Parser(description="Serve the browser webcam demo (ONNX Runtime Web) or export it as a static site.")
    p.add_argument("--weights", type=Path, nargs="+", help="ONNX artifacts the page can switch between, the "
                   "first opened (default: the shipped model's int8 and fp32 ONNX, built on first use)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; with --https 0.0.0.0, so phones on "
                   "the same network can connect)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--https", action="store_true", help="serve HTTPS with a self-signed certificate made now: "
                   "browsers allow the camera only on https or localhost")
    p.add_argument("--export", type=Path, metavar="DIR", help="write the page, runtime, models and manifests "
                   "into DIR for a static host instead of serving")
    p.add_argument("--force", action="store_true", help="--export into a non-empty DIR, replacing the site's files")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be between 0 and 65535, got {args.port}")
    return args


def serve(files: dict, args) -> None:
    host = args.host or ("0.0.0.0" if args.https else "127.0.0.1")
    lan = lan_address() if host == "0.0.0.0" else None
    tls = self_signed_context(["localhost", "127.0.0.1", *([lan] if lan else [])]) if args.https else None
    server = make_server(files, host, args.port, tls)
    scheme, port = ("https" if tls else "http"), server.server_address[1]
    urls = [f"{scheme}://localhost:{port}/"] + ([f"{scheme}://{lan}:{port}/"] if lan else [])
    print(f"serving {' and '.join(urls)} (Ctrl+C stops)", flush=True)
    if tls:
        print("the certificate is self-signed: accept the browser's warning once per run", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def run(args) -> int:
    models: list[WebModel] = [web_model(path) for path in
                              (args.weights or [default_artifact(p) for p in DEFAULT_PRECISIONS])]
    files = site_files(models)
    if args.export:
        folder = export_site(files, args.export, args.force)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
        print(f"wrote {folder} ({len(files)} files, {size:.1f} MB): serve it with any static host, e.g. "
              f"python -m http.server -d {folder}; WASM threads need the headers in {folder / '_headers'}")
        return 0
    serve(files, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
