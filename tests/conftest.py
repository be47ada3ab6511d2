"""Fixtures shared by the test modules."""
from pathlib import Path

import pytest
import torch

from data import FASHION_MNIST_CLASSES, fashion_mnist_preprocess
from model import create_model, save_checkpoint

TINY_SIZE = 32
TRAINED = Path(__file__).resolve().parents[1] / "weights" / "shunted_nano_fmnist.pt"  # the shipped Fashion-MNIST model


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A random-weight shunted_nano checkpoint at 32 px with the default model's Fashion-MNIST metadata."""
    torch.manual_seed(0)
    model = create_model("shunted_nano", num_classes=10, input_size=TINY_SIZE, labels=FASHION_MNIST_CLASSES)
    meta = {**model.meta, "preprocess": fashion_mnist_preprocess(TINY_SIZE), "dataset": "fashion-mnist",
            "random_weights": True}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "nano.pt", model, meta)
