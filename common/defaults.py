"""The repository's defaults, written once: the shipped model and where generated files go."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR10_CHECKPOINT = ROOT / "weights" / "shunted_nano_s16_deep_cifar10.pt"  # photos: 10 CIFAR-10 classes
FASHION_MNIST_CHECKPOINT = ROOT / "weights" / "shunted_nano_fmnist.pt"  # grey clothing: Fashion-MNIST
# the embedded default model: the CIFAR-10 photo model (90.16% top-1; docs/training.md)
SHIPPED_CHECKPOINT = CIFAR10_CHECKPOINT
SHIPPED_VARIANT = "shunted_nano_s16_deep"
RANDOM_WEIGHTS_DATA = "cifar10"  # shipped real photos: int8 calibration of models with random weights
ARTIFACTS_DIR = ROOT / "artifacts"
RUNS_DIR = ROOT / "runs"
