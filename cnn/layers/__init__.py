"""Layers with the constructors, weights and behaviour of their ``torch.nn`` namesakes.

Each layer has ``forward(x)`` (also ``layer(x)``), ``backward(grad_out) ->
grad_input``, ``parameters()``, ``train()``/``eval()`` and a PyTorch-like repr;
see ``Module``.
"""
from .activation import LeakyReLU, ReLU, Sigmoid, Tanh
from .conv import Conv1d, Conv2d, ConvTranspose2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d

# The layers Sequential.load may build from a file, by class name: a file names
# classes from this list only, never arbitrary code.
LAYERS = {cls.__name__: cls for cls in (
    Conv1d, Conv2d, ConvTranspose2d, MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d,
    AdaptiveAvgPool2d, Flatten, Linear, ReLU, LeakyReLU, Tanh, Sigmoid, Dropout,
    BatchNorm1d, BatchNorm2d, Identity)}

__all__ = ["Module", *LAYERS]
