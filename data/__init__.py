"""Data loading and preprocessing shared by training, evaluation, calibration, converters and the demo."""
from .augment import AUGMENTS
from .cifar10 import cifar10_preprocess
from .datasets import (CIFAR10_CLASSES, Cifar10, DataError, FASHION_MNIST_CLASSES, FashionMNIST, ImageFolder,
                       build_dataset, dataset_name, load_image, preprocess_files)
from .imagenet import imagenet_labels
from .labels import label_indices, model_labels
from .preprocess import (fashion_mnist_preprocess, imagenet_preprocess, preprocess_batch,
                         preprocess_image, validate_preprocess)

__all__ = ["AUGMENTS", "CIFAR10_CLASSES", "Cifar10", "cifar10_preprocess", "dataset_name", "DataError", "FASHION_MNIST_CLASSES", "FashionMNIST", "ImageFolder", "build_dataset",
           "fashion_mnist_preprocess", "imagenet_labels", "imagenet_preprocess", "label_indices", "model_labels", "load_image", "preprocess_batch", "preprocess_files",
           "preprocess_image", "validate_preprocess"]
