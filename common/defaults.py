"""The repository's defaults, written once: the shipped model and where generated files go."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CHECKPOINT = ROOT / "weights" / "shunted_nano_fmnist.pt"  # the embedded default model
SHIPPED_VARIANT = "shunted_nano"
ARTIFACTS_DIR = ROOT / "artifacts"
RUNS_DIR = ROOT / "runs"
