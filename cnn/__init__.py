"""cnn: a small convolutional neural network library with Cython kernels."""
from . import functional

__version__ = "0.1.0"
__all__ = ["functional"]
