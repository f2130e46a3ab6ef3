"""Linear (fully connected), Flatten and Identity."""
import math

import numpy as np

from ..parameter import Parameter
from .module import Module, as_input, check_bool, check_dtype, check_int, uniform

__all__ = ["Linear", "Flatten", "Identity"]


class Linear(Module):
    """Fully connected layer ``y = x @ weight.T + bias``, as ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    rng : None, int or numpy.random.Generator
        Source of the initial weights.
    dtype : float32 or float64

    Attributes
    ----------
    weight : Parameter of shape (out_features, in_features)
    bias : Parameter of shape (out_features,), or None
    needs_input_grad : bool
        When False, backward skips the input gradient and returns None
        (Sequential sets it on its first layer).

    Input of shape (..., in_features); output (..., out_features).
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        check_bool(bias, "bias")
        self.dtype = check_dtype(dtype)
        self.needs_input_grad = True
        self.weight = Parameter(np.zeros((self.out_features, self.in_features), self.dtype))
        self.bias = Parameter(np.zeros(self.out_features, self.dtype)) if bias else None
        self._config = dict(in_features=self.in_features, out_features=self.out_features,
                            bias=bias, dtype=self.dtype.name)
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        """PyTorch's default: U(-b, b) with b = 1/sqrt(in_features) (kaiming-uniform, a = sqrt(5))."""
        rng = np.random.default_rng(rng)
        bound = 1 / math.sqrt(self.in_features)
        self.weight.data[...] = uniform(rng, self.weight.shape, bound, self.dtype)
        if self.bias is not None:
            self.bias.data[...] = uniform(rng, self.bias.shape, bound, self.dtype)

    def forward(self, x):
        x = as_input(x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must have shape (..., {self.in_features}) (in_features), got {x.shape}")
        out = x @ self.weight.data.T
        if self.bias is not None:
            out += self.bias.data
        self._save_for_backward(x)
        return out

    def backward(self, grad_out):
        (x,) = self._saved()
        grad_out = as_input(grad_out, self.dtype, "grad_out")
        # any leading dimensions are a batch: fold them into one
        g2 = grad_out.reshape(-1, self.out_features)
        self.weight.grad += g2.T @ x.reshape(-1, self.in_features)
        if self.bias is not None:
            self.bias.grad += g2.sum(axis=0)
        return grad_out @ self.weight.data if self.needs_input_grad else None

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

    def _window(self, in_shape):
        return "global"  # every output sees every input

    def _macs(self, in_shape, out_shape):
        return math.prod(out_shape) * self.in_features


class Flatten(Module):
    """Flatten dimensions start_dim..end_dim into one, as ``torch.nn.Flatten`` (default: all but N)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim", -64)
        self.end_dim = check_int(end_dim, "end_dim", -64)
        self._config = dict(start_dim=self.start_dim, end_dim=self.end_dim)

    def forward(self, x):
        x = as_input(x)
        start = self.start_dim + x.ndim if self.start_dim < 0 else self.start_dim
        end = self.end_dim + x.ndim if self.end_dim < 0 else self.end_dim
        if not 0 <= start <= end < x.ndim:
            raise ValueError(
                f"cannot flatten dimensions {self.start_dim}..{self.end_dim} of x with shape {x.shape}")
        out = x.reshape(x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:])
        self._save_for_backward(x.shape)
        return out

    def backward(self, grad_out):
        (shape,) = self._saved()
        return np.asarray(grad_out).reshape(shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Returns its input; arguments are accepted and ignored, as ``torch.nn.Identity``."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x

    def backward(self, grad_out):
        return grad_out
