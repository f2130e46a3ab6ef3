"""Slow, obviously-correct loop versions of every op in ``cnn.functional``.

An independent witness for the kernels (after Caffe's ``caffe_conv`` and MyGrad's
``conv_bank``): explicit Python loops over output positions and kernel taps, the
channel sums done by a small matrix product, everything accumulated in float64.
The semantics are PyTorch's (ATen's CPU kernels for pooling, including the NaN and
tie rules); ``tests/test_reference.py`` checks this file against torch itself.

Signatures are those of ``cnn.functional`` (API_SPEC.md), so a test can call
``reference.X`` and ``F.X`` alike. Inputs are assumed valid: no error checking.
This module must never import ``cnn``.
"""

import numpy as np


# --------------------------------------------------------------------- helpers

def _pair(value):
    if isinstance(value, (tuple, list)):
        first, second = value
        return int(first), int(second)
    return int(value), int(value)


def _result_dtype(x):
    """float32 stays float32, float64 stays float64, anything else becomes float64."""
    x = np.asarray(x)
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _source_index(i, size, mode):
    """Input index that position ``i`` of the padded axis reads; None for a zero."""
    if 0 <= i < size:
        return i
    if mode == "zeros":
        return None
    if mode == "reflect":  # edge not repeated: -1 -> 1, size -> size - 2
        return -i if i < 0 else 2 * (size - 1) - i
    if mode == "replicate":
        return min(max(i, 0), size - 1)
    if mode == "circular":
        return i % size
    raise ValueError(f"unknown padding mode {mode!r}")


def _pool_out_size(size, kernel, stride, padding, dilation, ceil_mode):
    """ATen's pooling_output_shape."""
    numerator = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        numerator += stride - 1
    out = numerator // stride + 1
    # with ceil_mode the last window must start inside the input or the left padding
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


# ---------------------------------------------------------------- shape helpers

def conv2d_output_shape(input_size, kernel_size, stride=1, padding=0, dilation=1):
    sizes, kernels, strides = _pair(input_size), _pair(kernel_size), _pair(stride)
    paddings, dilations = _pair(padding), _pair(dilation)
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                 for size, k, s, p, d in zip(sizes, kernels, strides, paddings, dilations))


def conv_transpose2d_output_shape(input_size, kernel_size, stride=1, padding=0,
                                  output_padding=0, dilation=1):
    sizes, kernels, strides = _pair(input_size), _pair(kernel_size), _pair(stride)
    paddings, output_paddings, dilations = _pair(padding), _pair(output_padding), _pair(dilation)
    return tuple((size - 1) * s - 2 * p + d * (k - 1) + op + 1
                 for size, k, s, p, op, d in zip(sizes, kernels, strides, paddings,
                                                 output_paddings, dilations))


def pool2d_output_shape(input_size, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    stride = kernel_size if stride is None else stride
    sizes, kernels, strides = _pair(input_size), _pair(kernel_size), _pair(stride)
    paddings, dilations = _pair(padding), _pair(dilation)
    return tuple(_pool_out_size(size, k, s, p, d, ceil_mode)
                 for size, k, s, p, d in zip(sizes, kernels, strides, paddings, dilations))


# ------------------------------------------------------------------------- pad

def _pad(x, padding, mode):
    left, right, top, bottom = padding
    N, C, H, W = x.shape
    H_out, W_out = H + top + bottom, W + left + right
    out = np.zeros((N, C, H_out, W_out))
    for i in range(H_out):
        row = _source_index(i - top, H, mode)
        for j in range(W_out):
            col = _source_index(j - left, W, mode)
            if row is not None and col is not None:
                out[:, :, i, j] = x[:, :, row, col]
    return out


def _pad_backward(grad_out, padding, mode):
    left, right, top, bottom = padding
    N, C, H_out, W_out = grad_out.shape
    H, W = H_out - top - bottom, W_out - left - right
    grad_input = np.zeros((N, C, H, W))
    for i in range(H_out):
        row = _source_index(i - top, H, mode)
        for j in range(W_out):
            col = _source_index(j - left, W, mode)
            if row is not None and col is not None:
                grad_input[:, :, row, col] += grad_out[:, :, i, j]
    return grad_input


def pad2d(x, padding, mode="zeros"):
    """padding = (left, right, top, bottom), as torch.nn.functional.pad."""
    return _pad(_f64(x), tuple(padding), mode).astype(_result_dtype(x))


def pad2d_backward(grad_out, padding, mode="zeros"):
    return _pad_backward(_f64(grad_out), tuple(padding), mode).astype(_result_dtype(grad_out))


# ---------------------------------------------------------------------- conv2d

def _conv_pads(padding, kernel, dilation):
    """(left, right, top, bottom) for conv2d's padding argument."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":  # extra pixel on the right/bottom, like torch
            (kH, kW), (dH, dW) = kernel, dilation
            total_h, total_w = dH * (kH - 1), dW * (kW - 1)
            return (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2)
        raise ValueError(f"unknown padding {padding!r}")
    pH, pW = _pair(padding)
    return (pW, pW, pH, pH)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros"):
    dtype = _result_dtype(x)
    x, weight = _f64(x), _f64(weight)
    sH, sW = _pair(stride)
    dH, dW = _pair(dilation)
    C_out, C_in_g, kH, kW = weight.shape
    C_out_g = C_out // groups
    x_pad = _pad(x, _conv_pads(padding, (kH, kW), (dH, dW)), padding_mode)
    N, _, H_pad, W_pad = x_pad.shape
    H_out = (H_pad - dH * (kH - 1) - 1) // sH + 1
    W_out = (W_pad - dW * (kW - 1) - 1) // sW + 1
    out = np.zeros((N, C_out, H_out, W_out))
    for g in range(groups):
        cin = slice(g * C_in_g, (g + 1) * C_in_g)
        cout = slice(g * C_out_g, (g + 1) * C_out_g)
        for oh in range(H_out):
            for ow in range(W_out):
                for kh in range(kH):
                    for kw in range(kW):
                        ih, iw = oh * sH + kh * dH, ow * sW + kw * dW
                        # (N, C_in_g) @ (C_in_g, C_out_g)
                        out[:, cout, oh, ow] += x_pad[:, cin, ih, iw] @ weight[cout, :, kh, kw].T
    if bias is not None:
        out += _f64(bias)[None, :, None, None]
    return out.astype(dtype)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", needs_input_grad=True):
    """Every tap of conv2d's loop sends its gradient back where it came from."""
    dtype = _result_dtype(x)
    grad_out, x, weight = _f64(grad_out), _f64(x), _f64(weight)
    sH, sW = _pair(stride)
    dH, dW = _pair(dilation)
    C_out, C_in_g, kH, kW = weight.shape
    C_out_g = C_out // groups
    pads = _conv_pads(padding, (kH, kW), (dH, dW))
    x_pad = _pad(x, pads, padding_mode)
    _, _, H_out, W_out = grad_out.shape
    grad_x_pad = np.zeros_like(x_pad)
    grad_weight = np.zeros_like(weight)
    for g in range(groups):
        cin = slice(g * C_in_g, (g + 1) * C_in_g)
        cout = slice(g * C_out_g, (g + 1) * C_out_g)
        for oh in range(H_out):
            for ow in range(W_out):
                for kh in range(kH):
                    for kw in range(kW):
                        ih, iw = oh * sH + kh * dH, ow * sW + kw * dW
                        g_o = grad_out[:, cout, oh, ow]  # (N, C_out_g)
                        grad_x_pad[:, cin, ih, iw] += g_o @ weight[cout, :, kh, kw]
                        grad_weight[cout, :, kh, kw] += g_o.T @ x_pad[:, cin, ih, iw]
    grad_input = (_pad_backward(grad_x_pad, pads, padding_mode).astype(dtype)
                  if needs_input_grad else None)
    grad_bias = grad_out.sum(axis=(0, 2, 3))
    return grad_input, grad_weight.astype(dtype), grad_bias.astype(dtype)


# ------------------------------------------------------------ conv_transpose2d

def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Each input pixel scatters weight * value into the output (the adjoint of conv2d)."""
    dtype = _result_dtype(x)
    x, weight = _f64(x), _f64(weight)
    sH, sW = _pair(stride)
    pH, pW = _pair(padding)
    dH, dW = _pair(dilation)
    N, C_in, H, W = x.shape
    _, C_out_g, kH, kW = weight.shape
    C_in_g, C_out = C_in // groups, C_out_g * groups
    H_out, W_out = conv_transpose2d_output_shape((H, W), (kH, kW), stride, padding,
                                                 output_padding, dilation)
    out = np.zeros((N, C_out, H_out, W_out))
    for g in range(groups):
        cin = slice(g * C_in_g, (g + 1) * C_in_g)
        cout = slice(g * C_out_g, (g + 1) * C_out_g)
        for ih in range(H):
            for iw in range(W):
                for kh in range(kH):
                    for kw in range(kW):
                        oh, ow = ih * sH - pH + kh * dH, iw * sW - pW + kw * dW
                        if 0 <= oh < H_out and 0 <= ow < W_out:
                            # (N, C_in_g) @ (C_in_g, C_out_g)
                            out[:, cout, oh, ow] += x[:, cin, ih, iw] @ weight[cin, :, kh, kw]
    if bias is not None:
        out += _f64(bias)[None, :, None, None]
    return out.astype(dtype)


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, needs_input_grad=True):
    dtype = _result_dtype(x)
    grad_out, x, weight = _f64(grad_out), _f64(x), _f64(weight)
    sH, sW = _pair(stride)
    pH, pW = _pair(padding)
    dH, dW = _pair(dilation)
    N, C_in, H, W = x.shape
    _, C_out_g, kH, kW = weight.shape
    C_in_g = C_in // groups
    _, _, H_out, W_out = grad_out.shape
    grad_input = np.zeros_like(x)
    grad_weight = np.zeros_like(weight)
    for g in range(groups):
        cin = slice(g * C_in_g, (g + 1) * C_in_g)
        cout = slice(g * C_out_g, (g + 1) * C_out_g)
        for ih in range(H):
            for iw in range(W):
                for kh in range(kH):
                    for kw in range(kW):
                        oh, ow = ih * sH - pH + kh * dH, iw * sW - pW + kw * dW
                        if 0 <= oh < H_out and 0 <= ow < W_out:
                            g_o = grad_out[:, cout, oh, ow]  # (N, C_out_g)
                            grad_input[:, cin, ih, iw] += g_o @ weight[cin, :, kh, kw].T
                            grad_weight[cin, :, kh, kw] += x[:, cin, ih, iw].T @ g_o
    grad_bias = grad_out.sum(axis=(0, 2, 3))
    return (grad_input.astype(dtype) if needs_input_grad else None,
            grad_weight.astype(dtype), grad_bias.astype(dtype))


# ------------------------------------------------------------------ max_pool2d

def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """ATen's cpu_max_pool: first max wins ties, a NaN always takes over (so the last NaN
    of a window wins), the index starts at the window's first in-bounds position."""
    dtype = _result_dtype(x)
    x = _f64(x)
    stride = kernel_size if stride is None else stride
    kH, kW = _pair(kernel_size)
    sH, sW = _pair(stride)
    pH, pW = _pair(padding)
    dH, dW = _pair(dilation)
    N, C, H, W = x.shape
    H_out, W_out = pool2d_output_shape((H, W), (kH, kW), (sH, sW), (pH, pW), (dH, dW), ceil_mode)
    out = np.zeros((N, C, H_out, W_out))
    indices = np.zeros((N, C, H_out, W_out), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(H_out):
                for ow in range(W_out):
                    h_start, w_start = oh * sH - pH, ow * sW - pW
                    h_end = min(h_start + (kH - 1) * dH + 1, H)
                    w_end = min(w_start + (kW - 1) * dW + 1, W)
                    while h_start < 0:
                        h_start += dH
                    while w_start < 0:
                        w_start += dW
                    max_index = h_start * W + w_start
                    max_value = -np.inf
                    for ih in range(h_start, h_end, dH):
                        for iw in range(w_start, w_end, dW):
                            value = x[n, c, ih, iw]
                            if value > max_value or np.isnan(value):
                                max_value, max_index = value, ih * W + iw
                    out[n, c, oh, ow] = max_value
                    indices[n, c, oh, ow] = max_index
    out = out.astype(dtype)
    return (out, indices) if return_indices else out


def max_pool2d_backward(grad_out, indices, input_shape):
    dtype = _result_dtype(grad_out)
    grad_out = _f64(grad_out)
    N, C, H, W = input_shape
    grad_input = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            for g, index in zip(grad_out[n, c].ravel(), np.asarray(indices)[n, c].ravel()):
                grad_input[n, c, index] += g
    return grad_input.reshape(N, C, H, W).astype(dtype)


# ------------------------------------------------------------------ avg_pool2d

def _avg_windows(input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                 divisor_override):
    """Yield (oh, ow, rows, cols, divisor) for every output pixel, as ATen's cpu_avg_pool;
    empty windows (only padding) are skipped and their output stays 0."""
    stride = kernel_size if stride is None else stride
    kH, kW = _pair(kernel_size)
    sH, sW = _pair(stride)
    pH, pW = _pair(padding)
    H, W = input_shape[-2:]
    H_out, W_out = pool2d_output_shape((H, W), (kH, kW), (sH, sW), (pH, pW), 1, ceil_mode)
    for oh in range(H_out):
        for ow in range(W_out):
            h_start, w_start = oh * sH - pH, ow * sW - pW
            h_end, w_end = min(h_start + kH, H + pH), min(w_start + kW, W + pW)
            pool_size = (h_end - h_start) * (w_end - w_start)  # counts padding, not overhang
            h_start, w_start = max(h_start, 0), max(w_start, 0)
            h_end, w_end = min(h_end, H), min(w_end, W)
            if h_start >= h_end or w_start >= w_end:
                continue
            if divisor_override is not None:
                divisor = divisor_override
            elif count_include_pad:
                divisor = pool_size
            else:
                divisor = (h_end - h_start) * (w_end - w_start)
            yield oh, ow, slice(h_start, h_end), slice(w_start, w_end), divisor


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    dtype = _result_dtype(x)
    x = _f64(x)
    N, C, H, W = x.shape
    stride_ = kernel_size if stride is None else stride
    H_out, W_out = pool2d_output_shape((H, W), kernel_size, stride_, padding, 1, ceil_mode)
    out = np.zeros((N, C, H_out, W_out))
    for oh, ow, rows, cols, divisor in _avg_windows(x.shape, kernel_size, stride, padding,
                                                     ceil_mode, count_include_pad,
                                                     divisor_override):
        out[:, :, oh, ow] = x[:, :, rows, cols].sum(axis=(2, 3)) / divisor
    return out.astype(dtype)


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    dtype = _result_dtype(grad_out)
    grad_out = _f64(grad_out)
    grad_input = np.zeros(tuple(input_shape))
    for oh, ow, rows, cols, divisor in _avg_windows(input_shape, kernel_size, stride, padding,
                                                     ceil_mode, count_include_pad,
                                                     divisor_override):
        grad_input[:, :, rows, cols] += (grad_out[:, :, oh, ow] / divisor)[:, :, None, None]
    return grad_input.astype(dtype)


# ------------------------------------------------------------------------ relu

def relu(x):
    dtype = _result_dtype(x)
    flat = np.asarray(x, dtype=dtype).ravel()
    out = np.empty_like(flat)
    for i, v in enumerate(flat):
        out[i] = 0 if v <= 0 else v  # NaN is not <= 0: it stays NaN
    return out.reshape(np.shape(x))


def relu_backward(grad_out, out):
    dtype = _result_dtype(grad_out)
    grad, out = np.asarray(grad_out, dtype=dtype).ravel(), np.asarray(out).ravel()
    grad_input = np.empty_like(grad)
    for i in range(grad.size):
        grad_input[i] = 0 if out[i] <= 0 else grad[i]  # PyTorch's threshold_backward
    return grad_input.reshape(np.shape(grad_out))
