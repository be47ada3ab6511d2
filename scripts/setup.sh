#!/usr/bin/env bash
# Install the Python packages, on Debian/Ubuntu the Fashion-MNIST data package, and with npm the
# pinned ONNX Runtime Web of the browser demo (apps/web/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${FASHION_MNIST_DIR:-}" ] && command -v apt-get >/dev/null; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -q dataset-fashion-mnist >/dev/null \
    || echo "setup: could not install dataset-fashion-mnist; set FASHION_MNIST_DIR to a folder with the IDX files" >&2
fi
if command -v npm >/dev/null; then
  npm ci --prefix apps/web --silent --no-audit --no-fund >/dev/null \
    || echo "setup: npm could not install onnxruntime-web; the browser demo (apps/web.py) needs it" >&2
else
  echo "setup: npm not found: the browser demo (apps/web.py) needs it for onnxruntime-web; everything else works" >&2
fi
echo "setup: done"
