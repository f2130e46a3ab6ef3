"""A learnable array and the gradient that backward accumulates into it."""
import numpy as np

__all__ = ["Parameter"]


class Parameter:
    """An array a layer learns, with the gradient of the loss beside it.

    Parameters
    ----------
    data : array_like
        The initial values. They are copied, so two parameters never share memory.

    Attributes
    ----------
    data : ndarray
        The values. Optimisers update it in place (``p.data -= lr * p.grad``), so
        every reference to it sees the step.
    grad : ndarray of the same shape and dtype as ``data``
        Zeros at first. Each ``backward`` *adds* to it (``+=``), as in PyTorch, so
        the gradients of several batches or losses add up until ``zero_grad()``.
    """

    def __init__(self, data):
        self.data = np.array(data, copy=True, order="C")
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self):
        """Reset the gradient to zeros, in place (an optimiser may hold a reference to it)."""
        self.grad.fill(0)

    def astype(self, dtype):
        """Convert the values to dtype (new arrays); the gradient is reset to zeros."""
        self.data = self.data.astype(dtype)
        self.grad = np.zeros_like(self.data)
        return self

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"
