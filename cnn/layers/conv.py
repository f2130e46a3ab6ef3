"""Convolution layers: Conv2d, Conv1d (Conv2d with H = 1) and ConvTranspose2d."""
import math

import numpy as np

from .. import functional as F
from ..parameter import Parameter
from .module import (Module, Window, as_input, check_bool, check_dtype, check_int, check_tuple,
                     uniform)

__all__ = ["Conv1d", "Conv2d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    """What Conv1d and Conv2d share: arguments, weights, initialisation, forward, backward.

    The user-facing attributes (``kernel_size``, ``stride``, ...) are tuples of
    ``n`` ints, as PyTorch's; ``_to_2d`` gives the (H, W) arguments of the 2-D
    kernels, which all the computing goes through.
    """

    n = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", rng=None, dtype=np.float32):
        super().__init__()
        n = self.n
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = check_tuple(kernel_size, "kernel_size", 1, n)
        self.stride = check_tuple(stride, "stride", 1, n)
        self.dilation = check_tuple(dilation, "dilation", 1, n)
        self.groups = check_int(groups, "groups", 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide in_channels={self.in_channels} and "
                f"out_channels={self.out_channels}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1,) * n:
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions, got stride {self.stride}")
            self.padding = padding
        else:
            self.padding = check_tuple(padding, "padding", 0, n)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        check_bool(bias, "bias")
        self.dtype = check_dtype(dtype)
        # The first layer of a network needs no input gradient: Sequential turns it off.
        self.needs_input_grad = True
        self.weight = Parameter(np.zeros(self._weight_shape(), self.dtype))
        self.bias = Parameter(np.zeros(self.out_channels, self.dtype)) if bias else None
        self._config = dict(
            in_channels=self.in_channels, out_channels=self.out_channels,
            kernel_size=list(self.kernel_size), stride=list(self.stride),
            padding=self.padding if isinstance(self.padding, str) else list(self.padding),
            dilation=list(self.dilation), groups=self.groups, bias=bias,
            padding_mode=padding_mode, dtype=self.dtype.name)
        self.reset_parameters(rng)

    def _weight_shape(self):
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def reset_parameters(self, rng=None):
        """PyTorch's default: kaiming-uniform with a = sqrt(5), i.e. U(-b, b), b = 1/sqrt(fan_in).

        rng : None, int or numpy.random.Generator
        """
        rng = np.random.default_rng(rng)
        # weight.shape[1] * prod(kernel) is what torch's _calculate_fan_in_and_fan_out
        # calls fan_in; for the transposed layer that is out_channels / groups.
        fan_in = self.weight.shape[1] * math.prod(self.kernel_size)
        bound = 1 / math.sqrt(fan_in)
        self.weight.data[...] = uniform(rng, self.weight.shape, bound, self.dtype)
        if self.bias is not None:
            self.bias.data[...] = uniform(rng, self.bias.shape, bound, self.dtype)

    # The 2-D view of a 1-D layer: H = 1, so the arguments along H are neutral.
    def _to_2d(self):
        """(stride, padding, dilation) as the 2-D kernels take them."""
        return self.stride, self.padding, self.dilation

    def _x_2d(self, x):
        return x

    def _out_nd(self, out):
        return out

    def _weight_2d(self):
        return self.weight.data

    def forward(self, x):
        x = as_input(x, self.dtype)
        stride, padding, dilation = self._to_2d()
        x2 = self._x_2d(x)
        out = F.conv2d(x2, self._weight_2d(), None if self.bias is None else self.bias.data,
                       stride, padding, dilation, self.groups, self.padding_mode)
        self._save_for_backward(x2)
        return self._out_nd(out)

    def backward(self, grad_out):
        (x2,) = self._saved()
        stride, padding, dilation = self._to_2d()
        grad_input, grad_weight, grad_bias = F.conv2d_backward(
            self._x_2d(as_input(grad_out, self.dtype, "grad_out")), x2, self._weight_2d(),
            stride, padding, dilation, self.groups, self.padding_mode,
            needs_input_grad=self.needs_input_grad)
        self.weight.grad += grad_weight.reshape(self.weight.shape)
        if self.bias is not None:
            self.bias.grad += grad_bias
        return None if grad_input is None else self._out_nd(grad_input)

    def extra_repr(self):
        # PyTorch's _ConvNd.extra_repr: defaults are left out.
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self.n:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self.n:
            s += f", dilation={self.dilation}"
        if getattr(self, "output_padding", (0,) * self.n) != (0,) * self.n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    # ------------------------------------------------------------ summary hooks
    def _windows_2d(self):
        stride, padding, dilation = self._to_2d()
        kernel = (1,) * (2 - self.n) + self.kernel_size
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            # the padding before is the smaller half, as in functional
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        return tuple(Window(k, s, p, d) for k, s, p, d in zip(kernel, stride, padding, dilation))

    def _window(self, in_shape):
        return self._windows_2d()

    def _macs(self, in_shape, out_shape):
        # one multiply-add per weight tap per output element
        per_output = (self.in_channels // self.groups) * math.prod(self.kernel_size)
        return math.prod(out_shape) * per_output


class Conv2d(_ConvNd):
    """2-D convolution layer, as ``torch.nn.Conv2d`` (cross-correlation, NCHW).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or (int, int)
    padding : int, (int, int), "same" or "valid"
    groups : int
        Channels split into independent groups; ``groups == in_channels`` is depthwise.
    bias : bool
    padding_mode : "zeros", "reflect", "replicate" or "circular"
    rng : None, int or numpy.random.Generator
        Source of the initial weights.
    dtype : float32 or float64

    Attributes
    ----------
    weight : Parameter of shape (out_channels, in_channels / groups, kH, kW)
    bias : Parameter of shape (out_channels,), or None
    needs_input_grad : bool
        When False, backward skips the input gradient (a third of the work) and
        returns None; Sequential sets it on its first layer.
    """

    n = 2


class Conv1d(_ConvNd):
    """1-D convolution layer, as ``torch.nn.Conv1d``: input (N, C, L), weight (C_out, C_in/groups, k).

    It runs the 2-D kernels on an image of height 1. Arguments as Conv2d, with
    single ints (or 1-tuples) for kernel_size, stride, padding and dilation.
    """

    n = 1

    def _to_2d(self):
        padding = self.padding if isinstance(self.padding, str) else (0, self.padding[0])
        return (1, self.stride[0]), padding, (1, self.dilation[0])

    def _x_2d(self, x):
        if x.ndim != 3:
            raise ValueError(f"x must have shape (N, C, L), got {x.shape}")
        return x[:, :, None, :]

    def _out_nd(self, out):
        return out[:, :, 0, :]

    def _weight_2d(self):
        return self.weight.data[:, :, None, :]


class ConvTranspose2d(_ConvNd):
    """Transposed 2-D convolution, as ``torch.nn.ConvTranspose2d`` (the adjoint of Conv2d).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, dilation : int or (int, int)
    padding : int or (int, int)
        Removed from each side of the output.
    output_padding : int or (int, int)
        Added to one side of the output, to pick among the sizes that a strided
        Conv2d maps to the same size; smaller than stride or dilation.
    groups : int
    bias : bool
    padding_mode : "zeros" (the only one PyTorch supports)
    rng : None, int or numpy.random.Generator
    dtype : float32 or float64

    Attributes
    ----------
    weight : Parameter of shape (in_channels, out_channels / groups, kH, kW)
    bias : Parameter of shape (out_channels,), or None
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 rng=None, dtype=np.float32):
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d padding must be an int or a pair, got {padding!r}")
        if padding_mode != "zeros":
            raise ValueError(f"ConvTranspose2d supports only padding_mode='zeros', got {padding_mode!r}")
        self.output_padding = check_tuple(output_padding, "output_padding", 0, 2)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, rng, dtype)
        for o, s, d in zip(self.output_padding, self.stride, self.dilation):
            if o >= s and o >= d:
                raise ValueError(
                    f"output_padding {self.output_padding} must be smaller than either stride "
                    f"{self.stride} or dilation {self.dilation}")
        self._config["output_padding"] = list(self.output_padding)

    def _weight_shape(self):
        # the adjoint of a Conv2d(out, in) keeps that convolution's weight
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    def forward(self, x):
        x = as_input(x, self.dtype)
        out = F.conv_transpose2d(x, self.weight.data,
                                 None if self.bias is None else self.bias.data, self.stride,
                                 self.padding, self.output_padding, self.groups, self.dilation)
        self._save_for_backward(x)
        return out

    def backward(self, grad_out):
        (x,) = self._saved()
        grad_input, grad_weight, grad_bias = F.conv_transpose2d_backward(
            as_input(grad_out, self.dtype, "grad_out"), x, self.weight.data, self.stride,
            self.padding, self.output_padding, self.groups, self.dilation,
            needs_input_grad=self.needs_input_grad)
        self.weight.grad += grad_weight
        if self.bias is not None:
            self.bias.grad += grad_bias
        return grad_input

    def _window(self, in_shape):
        return tuple(Window(k, s, p, d, transposed=True) for k, s, p, d in
                     zip(self.kernel_size, self.stride, self.padding, self.dilation))

    def _macs(self, in_shape, out_shape):
        # each input element meets every tap of its group's filters
        return math.prod(in_shape) * (self.out_channels // self.groups) * math.prod(self.kernel_size)
