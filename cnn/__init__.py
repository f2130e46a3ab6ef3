"""cnn: a small convolutional neural network library with Cython kernels.

The layers, ``Sequential``, the losses and ``cnn.optim`` are named and laid out
as in ``torch.nn`` and ``torch.optim``: a PyTorch model definition ports by
changing the import. ``cnn.functional`` holds the operations (conv2d,
conv_transpose2d, max/avg pooling, each with a ``*_backward``) with the
semantics of ``torch.nn.functional``; ``cnn.train`` the training loop;
``cnn.CNNClassifier`` a scikit-learn estimator; ``cnn.filters`` the classic
hand-designed kernels; ``cnn.convolve2d`` and
``cnn.correlate2d`` the textbook single-image operations.
"""
from . import data, filters, functional, layers, losses, optim, train
from .layers import (AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d,
                     Conv2d, ConvTranspose2d, Dropout, Flatten, Identity, LeakyReLU, Linear,
                     MaxPool1d, MaxPool2d, Module, ReLU, Sigmoid, Tanh)
from .estimator import CNNClassifier
from .losses import CrossEntropyLoss, MSELoss
from .model import Sequential
from .parameter import Parameter
from .signal import convolve2d, correlate2d
from .train import fit, predict_batches

__version__ = "0.1.0"
__all__ = [
    "data", "functional", "filters", "layers", "losses", "optim", "train",
    "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv1d",
    "Conv2d", "ConvTranspose2d", "Dropout", "Flatten", "Identity", "LeakyReLU", "Linear",
    "MaxPool1d", "MaxPool2d", "Module", "ReLU", "Sigmoid", "Tanh",
    "CrossEntropyLoss", "MSELoss", "Sequential", "Parameter",
    "convolve2d", "correlate2d", "fit", "predict_batches", "CNNClassifier",
]
