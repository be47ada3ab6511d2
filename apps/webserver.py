"""Serve the web demo's files over HTTP, or HTTPS with a self-signed certificate made locally, with the
cross-origin isolation headers that WASM threads need."""
from __future__ import annotations

import errno
import shutil
import socket
import ssl
import subprocess
import tempfile
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from apps import AppError
from apps.website import ISOLATION_HEADERS

TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css", ".js": "text/javascript",
         ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}


class Handler(BaseHTTPRequestHandler):
    """GET/HEAD of the site's files; '/' is index.html. Quiet: no line per request."""

    def __init__(self, *args, files: dict[str, Path | bytes], **kwargs):
        self.files = files
        super().__init__(*args, **kwargs)

    def do_HEAD(self) -> None:
        self._send(body=False)

    def do_GET(self) -> None:
        self._send(body=True)

    def _send(self, body: bool) -> None:
        url = self.path.split("?", 1)[0].lstrip("/") or "index.html"
        source = self.files.get(url)
        if source is None:
            self.send_error(404, f"no {url} in this demo")
            return
        size = source.stat().st_size if isinstance(source, Path) else len(source)
        self.send_response(200)
        self.send_header("Content-Type", TYPES.get(Path(url).suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "no-cache")
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if not body:
            return
        if isinstance(source, Path):
            with open(source, "rb") as f:
                shutil.copyfileobj(f, self.wfile)
        else:
            self.wfile.write(source)

    def log_message(self, format: str, *args) -> None:
        pass


def lan_address() -> str | None:
    """This machine's address on the local network (the route a packet out would take), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, only a route is chosen
            return probe.getsockname()[0]
        except OSError:
            return None


def self_signed_context(hosts: list[str]) -> ssl.SSLContext:
    """A TLS context with a fresh self-signed certificate for ``hosts`` (made with the openssl command)."""
    if shutil.which("openssl") is None:
        raise AppError("--https needs the openssl command to make a self-signed certificate; install openssl")
    names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
    with tempfile.TemporaryDirectory() as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                               "-subj", "/CN=shunted-edge web demo", "-addext", f"subjectAltName={names}",
                               "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
        if made.returncode != 0:
            raise AppError(f"openssl could not make a certificate: {made.stderr.strip().splitlines()[-1]}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    return context


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """Clients that leave mid-download or refuse the self-signed certificate are no error here."""


def make_server(files: dict[str, Path | bytes], host: str, port: int, tls: ssl.SSLContext | None) -> Server:
    """A bound server (port 0: any free port); an AppError when the port is taken."""
    try:
        server = Server((host, port), partial(Handler, files=files))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise AppError(f"port {port} is in use; pass --port N (or --port 0 for any free port)") from None
        raise AppError(f"cannot serve on {host}:{port}: {err.strerror}") from None
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server
