"""The loop reference (tests/reference.py) against torch, so that it can witness for cnn.

Skipped when torch is not installed; everything in float64, compared to 1e-10.
"""

import numpy as np
import pytest

import reference as R

torch = pytest.importorskip("torch")
TF = torch.nn.functional

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

TOL = 1e-10
TORCH_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
                  "circular": "circular"}


def assert_close(got, expected):
    expected = np.asarray(expected)
    assert got.shape == expected.shape
    finite = expected[np.isfinite(expected)]
    scale = max(1.0, np.abs(finite).max()) if finite.size else 1.0
    np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL * scale, equal_nan=True)


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def backprop(out, rng):
    grad_out = rng.standard_normal(tuple(out.shape))
    out.backward(torch.tensor(grad_out))
    return grad_out


# x_shape, weight_shape, stride, padding, dilation, groups, padding_mode
CONV2D_CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0, 1, 1, "zeros"),
    ((1, 2, 8, 9), (3, 2, 3, 2), (2, 3), (1, 2), 1, 1, "zeros"),
    ((2, 4, 9, 8), (6, 2, 3, 3), 1, 2, (2, 3), 2, "zeros"),
    ((1, 6, 7, 7), (6, 1, 3, 3), 2, 1, 1, 6, "zeros"),  # depthwise
    ((2, 3, 6, 7), (2, 3, 4, 2), 1, "same", 1, 1, "zeros"),  # asymmetric same
    ((1, 2, 8, 7), (4, 1, 2, 3), 1, "same", (3, 2), 2, "zeros"),
    ((2, 2, 5, 6), (3, 2, 3, 3), 1, "valid", 1, 1, "zeros"),
    ((2, 3, 6, 5), (2, 3, 3, 3), 1, 2, 1, 1, "reflect"),
    ((1, 2, 5, 7), (4, 2, 4, 3), (2, 1), (1, 2), (1, 2), 1, "reflect"),
    ((2, 2, 6, 6), (2, 2, 2, 4), 1, "same", 1, 1, "reflect"),
    ((2, 3, 4, 5), (3, 3, 3, 3), 1, 3, 1, 1, "replicate"),
    ((1, 4, 6, 5), (4, 2, 3, 2), (1, 2), (2, 1), 2, 2, "replicate"),
    ((2, 2, 4, 5), (2, 2, 3, 3), 1, 4, 1, 1, "circular"),  # pad == size
    ((1, 3, 6, 6), (3, 1, 2, 3), 1, "same", 1, 3, "circular"),
    ((1, 1, 1, 1), (1, 1, 1, 1), 1, 0, 1, 1, "zeros"),
    ((3, 1, 5, 5), (2, 1, 5, 5), 1, 0, 1, 1, "zeros"),  # kernel == input
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, dilation, groups, mode", CONV2D_CASES)
def test_conv2d_matches_torch(x_shape, w_shape, stride, padding, dilation, groups, mode):
    rng = np.random.default_rng(0)
    x, weight = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    bias = rng.standard_normal(w_shape[0])
    x_t, w_t, b_t = leaf(x), leaf(weight), leaf(bias)
    conv = torch.nn.Conv2d(x_shape[1], w_shape[0], w_shape[2:], stride=stride, padding=padding,
                           dilation=dilation, groups=groups, padding_mode=mode)
    out = conv._conv_forward(x_t, w_t, b_t)
    assert_close(R.conv2d(x, weight, bias, stride, padding, dilation, groups, mode),
                 out.detach().numpy())
    grad_out = backprop(out, rng)
    grad_input, grad_weight, grad_bias = R.conv2d_backward(grad_out, x, weight, stride, padding,
                                                           dilation, groups, mode)
    assert_close(grad_input, x_t.grad.numpy())
    assert_close(grad_weight, w_t.grad.numpy())
    assert_close(grad_bias, b_t.grad.numpy())


# x_shape, weight_shape, stride, padding, output_padding, groups, dilation
CONV_TRANSPOSE2D_CASES = [
    ((2, 3, 4, 5), (3, 2, 3, 3), 1, 0, 0, 1, 1),
    ((1, 2, 3, 4), (2, 3, 3, 2), 2, 1, 1, 1, 1),
    ((2, 4, 3, 3), (4, 2, 3, 3), (3, 2), (1, 0), (2, 1), 2, 1),
    ((1, 3, 4, 3), (3, 1, 2, 3), 1, (0, 1), (1, 0), 3, (2, 3)),  # op < dilation, stride 1
    ((2, 2, 3, 4), (2, 2, 4, 4), 2, 3, 0, 1, 2),  # padding crops most of the output
    ((1, 1, 1, 1), (1, 1, 1, 1), 1, 0, 0, 1, 1),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, output_padding, groups, dilation",
                         CONV_TRANSPOSE2D_CASES)
def test_conv_transpose2d_matches_torch(x_shape, w_shape, stride, padding, output_padding,
                                        groups, dilation):
    rng = np.random.default_rng(1)
    x, weight = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    bias = rng.standard_normal(w_shape[1] * groups)
    x_t, w_t, b_t = leaf(x), leaf(weight), leaf(bias)
    args = (stride, padding, output_padding, groups, dilation)
    out = TF.conv_transpose2d(x_t, w_t, b_t, *args)
    assert_close(R.conv_transpose2d(x, weight, bias, *args), out.detach().numpy())
    grad_out = backprop(out, rng)
    grad_input, grad_weight, grad_bias = R.conv_transpose2d_backward(grad_out, x, weight, *args)
    assert_close(grad_input, x_t.grad.numpy())
    assert_close(grad_weight, w_t.grad.numpy())
    assert_close(grad_bias, b_t.grad.numpy())


def pool_input(kind, shape, rng):
    if kind == "normal":
        return rng.standard_normal(shape)
    x = rng.integers(0, 3, shape).astype(np.float64)  # many ties
    if kind == "nan":
        x[rng.random(shape) < 0.2] = np.nan
        x[rng.random(shape) < 0.1] = -np.inf
    return x


# x_shape, kernel_size, stride, padding, dilation, ceil_mode, input kind
MAX_POOL2D_CASES = [
    ((2, 3, 6, 6), 2, None, 0, 1, False, "normal"),
    ((2, 2, 7, 5), 3, 2, 1, 1, False, "normal"),
    ((2, 2, 7, 5), 3, 2, 1, 1, True, "normal"),
    ((1, 2, 8, 7), (3, 2), (2, 1), (1, 1), (2, 3), False, "normal"),
    ((1, 2, 5, 6), (2, 3), 3, (1, 0), 1, True, "normal"),  # ceil: last window dropped
    ((2, 2, 6, 7), 3, 1, 1, 1, False, "ties"),
    ((2, 2, 7, 7), (3, 2), 2, (1, 1), 2, True, "ties"),
    ((2, 3, 6, 6), 3, 2, 1, 1, True, "nan"),
    ((2, 3, 7, 5), 2, 1, 1, (2, 1), False, "nan"),
]


@pytest.mark.parametrize("x_shape, kernel_size, stride, padding, dilation, ceil_mode, kind",
                         MAX_POOL2D_CASES)
def test_max_pool2d_matches_torch(x_shape, kernel_size, stride, padding, dilation, ceil_mode, kind):
    rng = np.random.default_rng(2)
    x = pool_input(kind, x_shape, rng)
    x_t = leaf(x)
    args = (kernel_size, stride, padding, dilation, ceil_mode)
    out, indices = TF.max_pool2d(x_t, *args, return_indices=True)
    got, got_indices = R.max_pool2d(x, *args, return_indices=True)
    assert_close(got, out.detach().numpy())
    np.testing.assert_array_equal(got_indices, indices.numpy())
    grad_out = backprop(out, rng)
    assert_close(R.max_pool2d_backward(grad_out, got_indices, x.shape), x_t.grad.numpy())


# x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override
AVG_POOL2D_CASES = [
    ((2, 3, 6, 6), 2, None, 0, False, True, None),
    ((2, 2, 7, 5), 3, 2, 1, False, True, None),
    ((2, 2, 7, 5), 3, 2, 1, False, False, None),
    ((2, 2, 6, 5), 3, 2, 1, True, True, None),  # last window hangs over the padding
    ((2, 2, 6, 5), 3, 2, 1, True, False, None),
    ((1, 2, 8, 7), (4, 3), (3, 2), (2, 1), True, True, None),
    ((1, 2, 5, 6), (2, 3), (3, 3), (1, 1), True, True, 5),
    ((1, 2, 6, 5), 3, 1, 1, False, False, 2),
]


@pytest.mark.parametrize("x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad, "
                         "divisor_override", AVG_POOL2D_CASES)
def test_avg_pool2d_matches_torch(x_shape, kernel_size, stride, padding, ceil_mode,
                                  count_include_pad, divisor_override):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape)
    x_t = leaf(x)
    args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    out = TF.avg_pool2d(x_t, *args)
    assert_close(R.avg_pool2d(x, *args), out.detach().numpy())
    grad_out = backprop(out, rng)
    assert_close(R.avg_pool2d_backward(grad_out, x.shape, *args), x_t.grad.numpy())


PAD2D_CASES = [
    ((2, 3, 4, 5), (1, 2, 3, 0), "zeros"),
    ((2, 3, 4, 5), (4, 3, 2, 3), "reflect"),
    ((1, 2, 3, 3), (5, 0, 1, 6), "replicate"),
    ((1, 2, 4, 3), (3, 2, 4, 1), "circular"),
    ((1, 1, 1, 1), (0, 0, 0, 0), "reflect"),
]


@pytest.mark.parametrize("x_shape, padding, mode", PAD2D_CASES)
def test_pad2d_matches_torch(x_shape, padding, mode):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(x_shape)
    x_t = leaf(x)
    out = TF.pad(x_t, padding, TORCH_PAD_MODE[mode])
    assert_close(R.pad2d(x, padding, mode), out.detach().numpy())
    grad_out = backprop(out, rng)
    assert_close(R.pad2d_backward(grad_out, padding, mode), x_t.grad.numpy())


def test_shape_helpers_match_torch():
    x = torch.zeros(1, 1, 9, 8)
    out = TF.conv2d(x, torch.zeros(1, 1, 3, 2), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    assert R.conv2d_output_shape((9, 8), (3, 2), (2, 3), (1, 2), (2, 1)) == tuple(out.shape[2:])
    out = TF.conv_transpose2d(x, torch.zeros(1, 1, 3, 2), stride=(2, 3), padding=(1, 2),
                              output_padding=(1, 2), dilation=(2, 1))
    assert R.conv_transpose2d_output_shape((9, 8), (3, 2), (2, 3), (1, 2), (1, 2),
                                           (2, 1)) == tuple(out.shape[2:])
    out = TF.max_pool2d(x, (3, 2), (2, 3), (1, 1), (2, 1), ceil_mode=True)
    assert R.pool2d_output_shape((9, 8), (3, 2), (2, 3), (1, 1), (2, 1),
                                 True) == tuple(out.shape[2:])
