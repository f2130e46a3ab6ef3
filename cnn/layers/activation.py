"""Pointwise activations: ReLU, LeakyReLU, Tanh, Sigmoid."""
import numpy as np
from scipy.special import expit

from .. import functional as F
from .module import Module, as_input, check_bool, check_float

__all__ = ["ReLU", "LeakyReLU", "Tanh", "Sigmoid"]


class ReLU(Module):
    """max(x, 0), as ``torch.nn.ReLU``; its gradient at 0 is 0, as PyTorch's.

    inplace : bool
        Overwrite the input (when it is a writable float array) to save memory.
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = check_bool(inplace, "inplace")
        self._config = dict(inplace=self.inplace)

    def forward(self, x):
        x = as_input(x)
        out = F.relu(x, inplace=self.inplace and x.flags.writeable)
        # backward needs the output's sign; as in PyTorch, the output itself is kept
        self._save_for_backward(out)
        return out

    def backward(self, grad_out):
        (out,) = self._saved()
        return F.relu_backward(grad_out, out)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x for x > 0, negative_slope * x otherwise, as ``torch.nn.LeakyReLU``."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = check_float(negative_slope, "negative_slope")
        self.inplace = check_bool(inplace, "inplace")
        self._config = dict(negative_slope=self.negative_slope, inplace=self.inplace)

    def forward(self, x):
        x = as_input(x)
        positive = x > 0
        slope = x.dtype.type(self.negative_slope)
        if self.inplace and x.flags.writeable:
            out = x
            np.multiply(x, slope, out=out, where=~positive)
        else:
            out = np.where(positive, x, x * slope)
        self._save_for_backward(positive)
        return out

    def backward(self, grad_out):
        (positive,) = self._saved()
        grad_out = np.asarray(grad_out)
        return np.where(positive, grad_out, grad_out * grad_out.dtype.type(self.negative_slope))

    def extra_repr(self):
        s = f"negative_slope={self.negative_slope}"
        return s + ", inplace=True" if self.inplace else s


class Tanh(Module):
    """Hyperbolic tangent, as ``torch.nn.Tanh``."""

    def forward(self, x):
        out = np.tanh(as_input(x))
        self._save_for_backward(out)  # tanh' = 1 - tanh^2: the output suffices
        return out

    def backward(self, grad_out):
        (out,) = self._saved()
        return grad_out * (1 - out * out)


class Sigmoid(Module):
    """Logistic function 1 / (1 + exp(-x)), as ``torch.nn.Sigmoid``; never overflows."""

    def forward(self, x):
        out = expit(as_input(x))
        self._save_for_backward(out)  # sigmoid' = s (1 - s)
        return out

    def backward(self, grad_out):
        (out,) = self._saved()
        return grad_out * out * (1 - out)
