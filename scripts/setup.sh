#!/usr/bin/env bash
# Install the Python packages and, on Debian/Ubuntu, the Fashion-MNIST data package.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${FASHION_MNIST_DIR:-}" ] && command -v apt-get >/dev/null; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -q dataset-fashion-mnist >/dev/null \
    || echo "setup: could not install dataset-fashion-mnist; set FASHION_MNIST_DIR to a folder with the IDX files" >&2
fi
echo "setup: done"
