"""Pooling layers: MaxPool2d, AvgPool2d, their 1-D forms, and AdaptiveAvgPool2d."""

import numpy as np

from .. import functional as F
from .module import Module, Window, as_input, check_bool, check_int, check_tuple

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d"]


def _as_given(value):
    # PyTorch keeps pooling arguments as given (an int stays an int) and shows them so.
    return tuple(value) if isinstance(value, list) else value


class _PoolNd(Module):
    """Arguments shared by the pooling layers; ``n`` is 1 or 2 spatial dimensions."""

    n = 2

    def _check_window(self, kernel_size, stride, padding, dilation=1):
        n = self.n
        k = check_tuple(kernel_size, "kernel_size", 1, n)
        s = k if stride is None else check_tuple(stride, "stride", 1, n)
        p = check_tuple(padding, "padding", 0, n)
        d = check_tuple(dilation, "dilation", 1, n)
        if any(pi > ki // 2 for pi, ki in zip(p, k)):
            raise ValueError(f"padding {padding!r} must be at most half the kernel_size {kernel_size!r}")
        # the (H, W) arguments of the 2-D kernels; a 1-D layer is an image of height 1
        pad = (1,) * (2 - n)
        self._k2, self._s2 = pad + k, pad + s
        self._p2, self._d2 = (0,) * (2 - n) + p, pad + d

    def _x_2d(self, x):
        if x.ndim != self.n + 2:
            layout = "(N, C, L)" if self.n == 1 else "(N, C, H, W)"
            raise ValueError(f"x must have shape {layout}, got {x.shape}")
        return x[:, :, None, :] if self.n == 1 else x

    def _out_nd(self, out):
        return out[:, :, 0, :] if self.n == 1 else out

    def _window(self, in_shape):
        return tuple(Window(*w) for w in zip(self._k2, self._s2, self._p2, self._d2))


class MaxPool2d(_PoolNd):
    """Maximum over windows, as ``torch.nn.MaxPool2d``.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default kernel_size
    padding : int or (int, int)
        At most half the kernel; padding never wins the maximum.
    dilation : int or (int, int)
    return_indices : False
        A layer in a Sequential returns one array; the indices live in the layer.
    ceil_mode : bool
        Round the output size up rather than down.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self._check_window(kernel_size, stride, padding, dilation)
        if check_bool(return_indices, "return_indices"):
            raise ValueError("return_indices=True is not supported by the layer "
                             "(use cnn.functional.max_pool2d)")
        self.kernel_size = _as_given(kernel_size)
        self.stride = _as_given(stride) if stride is not None else self.kernel_size
        self.padding = _as_given(padding)
        self.dilation = _as_given(dilation)
        self.return_indices = False
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self._config = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                            dilation=dilation, ceil_mode=self.ceil_mode)

    def forward(self, x):
        x2 = self._x_2d(as_input(x))
        if not self.training:  # inference needs no indices, and is faster without them
            return self._out_nd(F.max_pool2d(x2, self._k2, self._s2, self._p2, self._d2,
                                             self.ceil_mode))
        out, indices = F.max_pool2d(x2, self._k2, self._s2, self._p2, self._d2, self.ceil_mode,
                                    return_indices=True)
        self._save_for_backward(indices, x2.shape)
        return self._out_nd(out)

    def backward(self, grad_out):
        indices, shape = self._saved()
        grad_out = self._x_2d(as_input(grad_out, name="grad_out"))
        return self._out_nd(F.max_pool2d_backward(grad_out, indices, shape))

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(MaxPool2d):
    """Maximum over windows of a signal (N, C, L), as ``torch.nn.MaxPool1d``; arguments as MaxPool2d."""

    n = 1


class AvgPool2d(_PoolNd):
    """Mean over windows, as ``torch.nn.AvgPool2d``.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default kernel_size
    padding : int or (int, int)
    ceil_mode : bool
    count_include_pad : bool
        Whether the zero padding counts in the divisor (PyTorch's default: yes).
    divisor_override : int, optional
        Divide by this instead of the window size.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self._check_window(kernel_size, stride, padding)
        self.kernel_size = _as_given(kernel_size)
        self.stride = _as_given(stride) if stride is not None else self.kernel_size
        self.padding = _as_given(padding)
        self.ceil_mode = check_bool(ceil_mode, "ceil_mode")
        self.count_include_pad = check_bool(count_include_pad, "count_include_pad")
        if divisor_override is not None:
            check_int(divisor_override, "divisor_override", 1)
        self.divisor_override = divisor_override
        self._config = dict(kernel_size=kernel_size, stride=stride, padding=padding,
                            ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad,
                            divisor_override=divisor_override)

    def _args(self):
        return (self._k2, self._s2, self._p2, self.ceil_mode, self.count_include_pad,
                self.divisor_override)

    def forward(self, x):
        x2 = self._x_2d(as_input(x))
        out = F.avg_pool2d(x2, *self._args())
        self._save_for_backward(x2.shape)
        return self._out_nd(out)

    def backward(self, grad_out):
        (shape,) = self._saved()
        grad_out = self._x_2d(as_input(grad_out, name="grad_out"))
        return self._out_nd(F.avg_pool2d_backward(grad_out, shape, *self._args()))

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(AvgPool2d):
    """Mean over windows of a signal (N, C, L), as ``torch.nn.AvgPool1d``.

    Arguments as AvgPool2d, without divisor_override (as PyTorch).
    """

    n = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        # PyTorch's AvgPool1d keeps its arguments as 1-tuples (and shows them so)
        self.kernel_size = check_tuple(kernel_size, "kernel_size", 1, 1)
        self.stride = self.kernel_size if stride is None else check_tuple(stride, "stride", 1, 1)
        self.padding = check_tuple(padding, "padding", 0, 1)
        del self._config["divisor_override"]


def _adaptive_bounds(size, out):
    """PyTorch's adaptive windows: output i averages [floor(i*size/out), ceil((i+1)*size/out))."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``.

    ``AdaptiveAvgPool2d(1)`` is global average pooling: one value per channel
    whatever the image size.

    Parameters
    ----------
    output_size : int or (int or None, int or None)
        None keeps that input dimension.
    """

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (tuple, list)):
            if len(output_size) != 2:
                raise ValueError(f"output_size must be an int or a pair, got {output_size!r}")
            for s in output_size:
                if s is not None:
                    check_int(s, "output_size", 1)
            output_size = tuple(output_size)
        else:
            check_int(output_size, "output_size", 1)
        self.output_size = output_size
        self._config = dict(output_size=list(output_size) if isinstance(output_size, tuple)
                            else output_size)

    def _out_hw(self, H, W):
        size = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        return tuple(dim if s is None else s for s, dim in zip(size, (H, W)))

    def forward(self, x):
        x = as_input(x)
        if x.ndim != 4:
            raise ValueError(f"x must have shape (N, C, H, W), got {x.shape}")
        N, C, H, W = x.shape
        H_out, W_out = self._out_hw(H, W)
        if H == 0 or W == 0:
            raise ValueError(f"x must have a non-empty image, got shape {x.shape}")
        if (H_out, W_out) == (1, 1):
            out = x.mean(axis=(2, 3), keepdims=True)
        else:
            # windows may overlap and differ in size: a loop over the (few) outputs
            (h0, h1), (w0, w1) = _adaptive_bounds(H, H_out), _adaptive_bounds(W, W_out)
            out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
            for i in range(H_out):
                for j in range(W_out):
                    out[:, :, i, j] = x[:, :, h0[i]:h1[i], w0[j]:w1[j]].mean(axis=(2, 3))
        self._save_for_backward(x.shape)
        return out

    def backward(self, grad_out):
        (shape,) = self._saved()
        grad_out = as_input(grad_out, name="grad_out")
        N, C, H, W = shape
        H_out, W_out = self._out_hw(H, W)
        if grad_out.shape != (N, C, H_out, W_out):
            raise ValueError(f"grad_out must have shape {(N, C, H_out, W_out)}, got {grad_out.shape}")
        (h0, h1), (w0, w1) = _adaptive_bounds(H, H_out), _adaptive_bounds(W, W_out)
        grad_input = np.zeros(shape, dtype=grad_out.dtype)
        for i in range(H_out):
            for j in range(W_out):
                area = (h1[i] - h0[i]) * (w1[j] - w0[j])
                grad_input[:, :, h0[i]:h1[i], w0[j]:w1[j]] += grad_out[:, :, i:i + 1, j:j + 1] / area
        return grad_input

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def _window(self, in_shape):
        H, W = in_shape[2:]
        windows = []
        for size, out in zip((H, W), self._out_hw(H, W)):
            if size % out:
                return "irregular"  # windows of unequal sizes: no single jump describes them
            windows.append(Window(size // out, size // out, 0, 1))
        return tuple(windows)

    def _macs(self, in_shape, out_shape):
        return 0
