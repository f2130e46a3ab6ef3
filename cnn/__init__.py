"""cnn: a small convolutional neural network library with Cython kernels.

``cnn.functional`` holds the operations (conv2d, conv_transpose2d, max/avg
pooling, each with a ``*_backward``) with the semantics of
``torch.nn.functional``; ``cnn.filters`` the classic hand-designed kernels;
``cnn.convolve2d`` / ``cnn.correlate2d`` the textbook single-image operations.
"""
from . import filters, functional
from .signal import convolve2d, correlate2d

__version__ = "0.1.0"
__all__ = ["functional", "filters", "convolve2d", "correlate2d"]
