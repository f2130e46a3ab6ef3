"""Pure-NumPy im2col convolution and pooling: the benchmark's baseline competitor.

Same call signatures as ``cnn.functional`` (zero padding only, float arrays only), so
``scripts/bench_ops.py`` drives both through one code path. Meant to be a fair,
competent implementation rather than a strawman:

- im2col gathers one strided slice per kernel tap (kH*kW vectorised copies) into a
  ``(groups, C_in/groups * kH * kW, N * H_out * W_out)`` matrix, so every convolution
  is one BLAS ``matmul`` per group; col2im adds the taps back the same way.
- Depthwise convolution (one input channel per group) skips the matrix and
  accumulates ``weight[:, tap] * slice`` per tap, which moves far less memory than a
  stack of width-1 GEMMs.
- Transposed convolution reuses the pieces with roles swapped (its forward is
  convolution's backward-data, its backward-data is a convolution).
- Pooling reduces over the taps with ``np.maximum`` / ``+=`` (no masked writes, which
  are several times slower than plain ufuncs); max-pool backward scatters with one
  ``np.bincount`` pass (``np.add.at`` is an order of magnitude slower).

No input validation: the benchmark only passes valid arguments.
"""

import numpy as np


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _pad(x, pH, pW, value=0.0):
    if pH == 0 and pW == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pH, pH), (pW, pW)), constant_values=value)


def _tap(xp, i, j, H_out, W_out, stride, dilation):
    """The strided view of padded input ``xp`` that kernel tap ``(i, j)`` reads."""
    sH, sW = stride
    dH, dW = dilation
    return xp[:, :, i * dH:i * dH + sH * (H_out - 1) + 1:sH,
              j * dW:j * dW + sW * (W_out - 1) + 1:sW]


def _im2col(x, kernel, stride, padding, dilation, groups):
    """-> cols of shape (groups, C/groups * kH * kW, N * H_out * W_out), H_out, W_out."""
    N, C, H, W = x.shape
    kH, kW = kernel
    H_out = _out_size(H, kH, stride[0], padding[0], dilation[0])
    W_out = _out_size(W, kW, stride[1], padding[1], dilation[1])
    xp = _pad(x, *padding)
    cols = np.empty((C, kH, kW, N, H_out, W_out), dtype=x.dtype)
    for i in range(kH):
        for j in range(kW):
            cols[:, i, j] = _tap(xp, i, j, H_out, W_out, stride, dilation).transpose(1, 0, 2, 3)
    return cols.reshape(groups, C // groups * kH * kW, N * H_out * W_out), H_out, W_out


def _col2im(cols, x_shape, kernel, stride, padding, dilation):
    """Adjoint of ``_im2col``: cols (groups, C/groups * kH * kW, N * H_out * W_out)."""
    N, C, H, W = x_shape
    kH, kW = kernel
    pH, pW = padding
    H_out = _out_size(H, kH, stride[0], pH, dilation[0])
    W_out = _out_size(W, kW, stride[1], pW, dilation[1])
    cols = cols.reshape(C, kH, kW, N, H_out, W_out)
    grad_padded = np.zeros((N, C, H + 2 * pH, W + 2 * pW), dtype=cols.dtype)
    for i in range(kH):
        for j in range(kW):
            _tap(grad_padded, i, j, H_out, W_out, stride, dilation)[...] += \
                cols[:, i, j].transpose(1, 0, 2, 3)
    return grad_padded[:, :, pH:pH + H, pW:pW + W]


def _channels_major(x, groups):
    """(N, C, H, W) -> (groups, C/groups, N * H * W)."""
    N, C, H, W = x.shape
    return x.transpose(1, 0, 2, 3).reshape(groups, C // groups, N * H * W)


def _batch_major(y, N, H, W):
    """(groups, C/groups, N * H * W) -> contiguous (N, C, H, W)."""
    return np.ascontiguousarray(y.reshape(-1, N, H, W).transpose(1, 0, 2, 3))


def _is_depthwise(weight, groups):
    return groups > 1 and weight.shape[1] == 1 and weight.shape[0] == groups


# ---------------------------------------------------------------------------- conv2d

def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    C_out, _, kH, kW = weight.shape
    N = x.shape[0]
    if _is_depthwise(weight, groups):
        out = _depthwise_forward(x, weight, stride, padding, dilation)
    else:
        cols, H_out, W_out = _im2col(x, (kH, kW), stride, padding, dilation, groups)
        out = _batch_major(np.matmul(weight.reshape(groups, C_out // groups, -1), cols),
                           N, H_out, W_out)
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    needs_input_grad=True):
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    grad_bias = grad_out.sum(axis=(0, 2, 3))
    if _is_depthwise(weight, groups):
        grad_input, grad_weight = _depthwise_backward(grad_out, x, weight, stride, padding,
                                                      dilation, needs_input_grad)
        return grad_input, grad_weight, grad_bias
    C_out, _, kH, kW = weight.shape
    cols, _, _ = _im2col(x, (kH, kW), stride, padding, dilation, groups)
    g = _channels_major(grad_out, groups)
    grad_weight = np.matmul(g, cols.transpose(0, 2, 1)).reshape(weight.shape)
    grad_input = None
    if needs_input_grad:
        grad_cols = np.matmul(weight.reshape(groups, C_out // groups, -1).transpose(0, 2, 1), g)
        grad_input = np.ascontiguousarray(
            _col2im(grad_cols, x.shape, (kH, kW), stride, padding, dilation))
    return grad_input, grad_weight, grad_bias


def _depthwise_forward(x, weight, stride, padding, dilation):
    N, C, H, W = x.shape
    kH, kW = weight.shape[2:]
    H_out = _out_size(H, kH, stride[0], padding[0], dilation[0])
    W_out = _out_size(W, kW, stride[1], padding[1], dilation[1])
    xp = _pad(x, *padding)
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for i in range(kH):
        for j in range(kW):
            out += _tap(xp, i, j, H_out, W_out, stride, dilation) * \
                weight[:, 0, i, j].reshape(1, C, 1, 1)
    return out


def _depthwise_backward(grad_out, x, weight, stride, padding, dilation, needs_input_grad):
    N, C, H, W = x.shape
    kH, kW = weight.shape[2:]
    pH, pW = padding
    H_out, W_out = grad_out.shape[2:]
    xp = _pad(x, pH, pW)
    grad_weight = np.empty_like(weight)
    grad_padded = np.zeros_like(xp) if needs_input_grad else None
    for i in range(kH):
        for j in range(kW):
            window = _tap(xp, i, j, H_out, W_out, stride, dilation)
            grad_weight[:, 0, i, j] = np.einsum("nchw,nchw->c", grad_out, window)
            if needs_input_grad:
                _tap(grad_padded, i, j, H_out, W_out, stride, dilation)[...] += \
                    grad_out * weight[:, 0, i, j].reshape(1, C, 1, 1)
    grad_input = None
    if needs_input_grad:
        grad_input = np.ascontiguousarray(grad_padded[:, :, pH:pH + H, pW:pW + W])
    return grad_input, grad_weight


# ------------------------------------------------------------------ conv_transpose2d

def _transpose_canvas(H, W, kernel, stride, dilation, output_padding):
    """Size of the uncropped output that col2im of a transposed convolution fills."""
    return tuple((size - 1) * s + d * (k - 1) + 1 + op
                 for size, k, s, d, op in zip((H, W), kernel, stride, dilation, output_padding))


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    stride, padding = _pair(stride), _pair(padding)
    output_padding, dilation = _pair(output_padding), _pair(dilation)
    N, C_in, H, W = x.shape
    C_out_g, kH, kW = weight.shape[1:]
    w = weight.reshape(groups, C_in // groups, C_out_g * kH * kW)
    cols = np.matmul(w.transpose(0, 2, 1), _channels_major(x, groups))
    Hc, Wc = _transpose_canvas(H, W, (kH, kW), stride, dilation, output_padding)
    # col2im onto an unpadded canvas of the full size, then crop the padding away
    canvas = _col2im_canvas(cols, (N, C_out_g * groups, Hc, Wc), (H, W), (kH, kW), stride,
                            dilation)
    pH, pW = padding
    out = np.ascontiguousarray(canvas[:, :, pH:Hc - pH, pW:Wc - pW])
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def _col2im_canvas(cols, canvas_shape, in_size, kernel, stride, dilation):
    N, C, Hc, Wc = canvas_shape
    H, W = in_size
    kH, kW = kernel
    cols = cols.reshape(C, kH, kW, N, H, W)
    canvas = np.zeros(canvas_shape, dtype=cols.dtype)
    for i in range(kH):
        for j in range(kW):
            _tap(canvas, i, j, H, W, stride, dilation)[...] += cols[:, i, j].transpose(1, 0, 2, 3)
    return canvas


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, needs_input_grad=True):
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    N, C_in, H, W = x.shape
    kH, kW = weight.shape[2:]
    grad_bias = grad_out.sum(axis=(0, 2, 3))
    # grad_out's im2col has one column per pixel of x (output_padding < stride)
    cols, _, _ = _im2col(grad_out, (kH, kW), stride, padding, dilation, groups)
    w = weight.reshape(groups, C_in // groups, -1)
    grad_weight = np.matmul(_channels_major(x, groups), cols.transpose(0, 2, 1))
    grad_input = _batch_major(np.matmul(w, cols), N, H, W) if needs_input_grad else None
    return grad_input, grad_weight.reshape(weight.shape), grad_bias


# ------------------------------------------------------------------------- pooling

def _pool_geometry(x, kernel_size, stride, padding):
    kernel = _pair(kernel_size)
    stride = kernel if stride is None else _pair(stride)
    padding = _pair(padding)
    H, W = x.shape[2:]
    H_out = _out_size(H, kernel[0], stride[0], padding[0], 1)
    W_out = _out_size(W, kernel[1], stride[1], padding[1], 1)
    return kernel, stride, padding, H_out, W_out


def max_pool2d(x, kernel_size, stride=None, padding=0, return_indices=False):
    (kH, kW), stride, (pH, pW), H_out, W_out = _pool_geometry(x, kernel_size, stride, padding)
    xp = _pad(x, pH, pW, value=-np.inf)
    windows = [_tap(xp, t // kW, t % kW, H_out, W_out, stride, (1, 1)) for t in range(kH * kW)]
    out = windows[0].copy()
    for window in windows[1:]:
        np.maximum(out, window, out=out)
    if not return_indices:
        return out
    # The first tap equal to the maximum wins ties, as in torch. Masked writes
    # (np.copyto(where=), np.where) are 5-10x slower than plain ufuncs, so take the
    # max over taps of code = (K - t) * (window_t == out): the first matching t wins.
    K = kH * kW
    code_type = np.uint8 if K < 256 else np.int32
    code = np.zeros(out.shape, dtype=code_type)
    equal = np.empty(out.shape, dtype=bool)
    scratch = np.empty(out.shape, dtype=code_type)
    for t, window in enumerate(windows):
        np.equal(window, out, out=equal)
        np.multiply(equal, code_type(K - t), out=scratch)
        np.maximum(code, scratch, out=code)
    W = x.shape[3]
    window_origin = ((np.arange(H_out).reshape(-1, 1) * stride[0] - pH) * W
                     + np.arange(W_out) * stride[1] - pW)
    offset_of_code = np.array([0] + [(t // kW) * W + t % kW for t in reversed(range(K))])
    return out, window_origin + offset_of_code[code]


def max_pool2d_backward(grad_out, indices, input_shape):
    N, C, H, W = input_shape
    plane = np.arange(N * C, dtype=np.int64).reshape(N, C, 1, 1) * (H * W)
    grad_input = np.bincount((indices + plane).ravel(), weights=grad_out.ravel(),
                             minlength=N * C * H * W)
    return grad_input.astype(grad_out.dtype).reshape(input_shape)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    (kH, kW), stride, (pH, pW), H_out, W_out = _pool_geometry(x, kernel_size, stride, padding)
    xp = _pad(x, pH, pW)
    out = _tap(xp, 0, 0, H_out, W_out, stride, (1, 1)).copy()
    for t in range(1, kH * kW):
        out += _tap(xp, t // kW, t % kW, H_out, W_out, stride, (1, 1))
    out *= x.dtype.type(1.0 / (kH * kW))  # count_include_pad=True
    return out


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0):
    N, C, H, W = input_shape
    kernel = _pair(kernel_size)
    stride = kernel if stride is None else _pair(stride)
    pH, pW = _pair(padding)
    H_out, W_out = grad_out.shape[2:]
    share = grad_out * grad_out.dtype.type(1.0 / (kernel[0] * kernel[1]))
    grad_padded = np.zeros((N, C, H + 2 * pH, W + 2 * pW), dtype=grad_out.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            _tap(grad_padded, i, j, H_out, W_out, stride, (1, 1))[...] += share
    return np.ascontiguousarray(grad_padded[:, :, pH:pH + H, pW:pW + W])
