"""Data loading and preprocessing shared by training, evaluation, calibration, converters and the demo."""
from .datasets import DataError, FASHION_MNIST_CLASSES, FashionMNIST, ImageFolder, build_dataset, load_image
from .preprocess import (fashion_mnist_preprocess, imagenet_preprocess, preprocess_batch,
                         preprocess_image, validate_preprocess)

__all__ = ["DataError", "FASHION_MNIST_CLASSES", "FashionMNIST", "ImageFolder", "build_dataset",
           "fashion_mnist_preprocess", "imagenet_preprocess", "load_image", "preprocess_batch",
           "preprocess_image", "validate_preprocess"]
