"""cnn.functional against its three witnesses.

1. the loop reference (tests/reference.py, itself checked against torch in
   test_reference.py), forward and backward, float32 and float64, on configurations
   drawn by hypothesis, with C-, F-ordered, strided, reversed and read-only inputs;
2. central finite differences in float64 for every backward;
3. adjoint identities: <conv2d(x, w), y> == <x, conv_transpose2d(y, w)>, and every
   linear map against its backward (pad2d, avg_pool2d, conv2d in every padding mode).

Plus shape helpers, needs_input_grad=False, max pooling's tie and NaN rules and empty
batches. Bad inputs live in test_errors.py. Hypothesis is derandomized (CI sees the
same examples every run) and small shapes keep the file fast.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cnn.functional as F
import gradcheck
import reference as R


def hypothesis_settings(max_examples):
    return settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


DTYPES = [np.float32, np.float64]
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
FD_TOL = 1e-7  # central differences of (piecewise) linear maps in float64: rounding only
PAD_MODES = ["zeros", "reflect", "replicate", "circular"]
LAYOUTS = ["C", "F", "strided", "reversed", "readonly"]


# ------------------------------------------------------------------------ helpers

def pair(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


def int_or_pair(low, high):
    """The API takes an int or an (int, int) pair: draw both forms."""
    value = st.integers(low, high)
    return st.one_of(value, st.tuples(value, value))


def relayout(a, layout):
    """The same values in another memory layout."""
    a = np.asarray(a)
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":  # every axis strided by 2
        big = np.zeros(tuple(2 * n for n in a.shape), dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":  # negative stride on the last axis
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if layout == "readonly":
        frozen = np.array(a, order="C")
        frozen.flags.writeable = False
        return frozen
    raise ValueError(layout)


def assert_close(got, expected, dtype, layout=""):
    """Relative to the magnitude of the result (at least 1)."""
    expected = np.asarray(expected)
    assert isinstance(got, np.ndarray)
    assert got.dtype == dtype, (got.dtype, dtype, layout)
    assert got.shape == expected.shape, (got.shape, expected.shape, layout)
    finite = np.abs(expected[np.isfinite(expected)])
    scale = max(1.0, finite.max()) if finite.size else 1.0
    tol = TOL[np.dtype(dtype)]
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale, equal_nan=True,
                               err_msg=f"{layout} inputs" if layout else "")


def inner(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def assert_adjoint(lhs_pair, rhs_pair, tol=1e-10):
    """<A u, v> == <u, A^T v>, relative to the sum of the absolute products."""
    lhs, rhs = inner(*lhs_pair), inner(*rhs_pair)
    scale = inner(*map(np.abs, lhs_pair)) + inner(*map(np.abs, rhs_pair)) + 1e-300
    assert abs(lhs - rhs) <= tol * scale, (lhs, rhs)


def numerical_grad(loss, a):
    # eps can be large: every map here is linear in a (max pooling piecewise so, and the
    # tests keep its values far apart), so only rounding is left.
    return gradcheck.numerical_grad(loss, a, eps=1e-3)


def assert_fd_close(analytic, numeric):
    scale = max(1.0, np.abs(numeric).max()) if numeric.size else 1.0
    np.testing.assert_allclose(analytic, numeric, rtol=FD_TOL, atol=FD_TOL * scale)


def conv_pads(padding, kernel, dilation):
    """(left, right, top, bottom) of conv2d's padding argument."""
    (kH, kW), (dH, dW) = kernel, pair(dilation)
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        total_h, total_w = dH * (kH - 1), dW * (kW - 1)
        return (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2)
    pH, pW = pair(padding)
    return (pW, pW, pH, pH)


def smallest_input(span, before, after, mode):
    """Smallest input size a padded window of `span` fits, given the mode's own limit."""
    low = max(1, span - before - after)
    if mode == "reflect":
        low = max(low, before + 1, after + 1)
    if mode == "circular":
        low = max(low, before, after)
    return low


def pool_has_empty_window(size, kernel, stride, padding, dilation, ceil_mode):
    """True when a (dilated) max-pooling window sees only padding. ATen does not check this
    and returns an out-of-range index (torch then crashes in backward), so the reference
    comparisons stay away from it; test_max_pool2d_window_of_only_padding covers it."""
    H_out, W_out = R.pool2d_output_shape(size, kernel, stride, padding, dilation, ceil_mode)
    stride = kernel if stride is None else stride
    for n_out, n_in, k, s, p, d in zip((H_out, W_out), size, pair(kernel), pair(stride),
                                       pair(padding), pair(dilation)):
        for o in range(n_out):
            if not any(0 <= o * s - p + j * d < n_in for j in range(k)):
                return True
    return False


# --------------------------------------------------------------------- strategies

@st.composite
def conv2d_cases(draw, extra=5, max_channels=3, modes=tuple(PAD_MODES), strings=True,
                 max_batch=5):
    groups = draw(st.integers(1, 3))
    C_in = groups * draw(st.integers(1, max_channels))
    C_out = groups * draw(st.integers(1, max_channels))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = draw(int_or_pair(1, 3))
    paddings = int_or_pair(0, 3)
    if strings:
        paddings = st.one_of(paddings, st.sampled_from(["same", "valid"]))
    padding = draw(paddings)
    stride = draw(st.sampled_from([1, (1, 1)]) if padding == "same" else int_or_pair(1, 3))
    padding_mode = draw(st.sampled_from(modes))
    left, right, top, bottom = conv_pads(padding, kernel, dilation)
    sizes = []
    for k, d, before, after in ((kernel[0], pair(dilation)[0], top, bottom),
                                (kernel[1], pair(dilation)[1], left, right)):
        span = d * (k - 1) + 1
        assume(span <= 8)
        low = smallest_input(span, before, after, padding_mode)
        sizes.append(draw(st.integers(low, low + extra)))
    return dict(
        x_shape=(draw(st.integers(1, max_batch)), C_in, *sizes),
        w_shape=(C_out, C_in // groups, *kernel),
        C_out=C_out,
        bias=draw(st.booleans()),
        kwargs=dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                    padding_mode=padding_mode),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@st.composite
def conv_transpose2d_cases(draw, max_size=6, max_channels=3, max_batch=5):
    groups = draw(st.integers(1, 3))
    C_in = groups * draw(st.integers(1, max_channels))
    C_out = groups * draw(st.integers(1, max_channels))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride, padding, dilation = (draw(int_or_pair(1, 3)), draw(int_or_pair(0, 3)),
                                 draw(int_or_pair(1, 3)))
    # torch: output_padding smaller than stride or than dilation
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(pair(stride), pair(dilation)))
    if draw(st.booleans()) and output_padding[0] == output_padding[1]:
        output_padding = output_padding[0]
    size = (draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    out_size = R.conv_transpose2d_output_shape(size, kernel, stride, padding, output_padding,
                                               dilation)
    assume(min(out_size) >= 1)
    return dict(
        x_shape=(draw(st.integers(1, max_batch)), C_in, *size),
        w_shape=(C_in, C_out // groups, *kernel),
        C_out=C_out,
        bias=draw(st.booleans()),
        kwargs=dict(stride=stride, padding=padding, output_padding=output_padding,
                    groups=groups, dilation=dilation),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@st.composite
def pool_cases(draw, dilated=True, max_size=8, max_kernel=4, allow_empty_windows=False):
    kernel_size = draw(int_or_pair(1, max_kernel))
    stride = draw(st.one_of(st.none(), int_or_pair(1, 3)))
    # pooling padding at most half the kernel
    padding = tuple(draw(st.integers(0, k // 2)) for k in pair(kernel_size))
    if padding[0] == padding[1] and draw(st.booleans()):
        padding = padding[0]
    dilation = draw(int_or_pair(1, 3)) if dilated else 1
    ceil_mode = draw(st.booleans())
    size = (draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    for n, k, p, d in zip(size, pair(kernel_size), pair(padding), pair(dilation)):
        assume(n + 2 * p >= d * (k - 1) + 1)
    assume(min(R.pool2d_output_shape(size, kernel_size, stride, padding, dilation,
                                     ceil_mode)) >= 1)
    if not allow_empty_windows:
        assume(not pool_has_empty_window(size, kernel_size, stride, padding, dilation,
                                         ceil_mode))
    kwargs = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode)
    if dilated:
        kwargs["dilation"] = dilation
    return dict(x_shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), *size),
                kwargs=kwargs, seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def avg_pool_cases(draw, **kw):
    case = draw(pool_cases(dilated=False, **kw))
    case["kwargs"].update(count_include_pad=draw(st.booleans()),
                          divisor_override=draw(st.one_of(st.none(), st.integers(1, 7))))
    return case


@st.composite
def pad2d_cases(draw, max_pad=4, max_size=6, modes=tuple(PAD_MODES)):
    mode = draw(st.sampled_from(modes))
    padding = tuple(draw(st.integers(0, max_pad)) for _ in range(4))
    left, right, top, bottom = padding
    H = draw(st.integers(smallest_input(1, top, bottom, mode), max_size + max_pad))
    W = draw(st.integers(smallest_input(1, left, right, mode), max_size + max_pad))
    return dict(x_shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), H, W),
                padding=padding, mode=mode, seed=draw(st.integers(0, 2**32 - 1)))


def distinct_values(shape, rng):
    """Values at least 0.1 apart (no ties, no near-ties), for max pooling."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 - 0.05 * n).reshape(shape)


# --------------------------------------------------------------- conv2d vs loops

def make_conv_arrays(case, dtype):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    weight = rng.standard_normal(case["w_shape"]).astype(dtype)
    bias = rng.standard_normal(case["C_out"]).astype(dtype) if case["bias"] else None
    return rng, x, weight, bias


def in_every_layout(*arrays):
    """Yield (layout, arrays in that layout); None stays None."""
    for layout in LAYOUTS:
        yield layout, [None if a is None else relayout(a, layout) for a in arrays]


def assert_untouched(arrays, originals):
    for a, original in zip(arrays, originals):
        if a is not None:
            np.testing.assert_array_equal(a, original)


@pytest.mark.parametrize("padding_mode", PAD_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(30)
@given(data=st.data())
def test_conv2d_matches_reference(dtype, padding_mode, data):
    case = data.draw(conv2d_cases(modes=(padding_mode,)))
    check_conv_against_reference("conv2d", case, dtype)


def check_conv_against_reference(op, case, dtype):
    """F.<op> and F.<op>_backward against the loop reference, in every memory layout."""
    forward, backward = getattr(F, op), getattr(F, op + "_backward")
    ref_forward, ref_backward = getattr(R, op), getattr(R, op + "_backward")
    rng, x, weight, bias = make_conv_arrays(case, dtype)
    kwargs = case["kwargs"]
    expected = ref_forward(x, weight, bias, **kwargs)
    grad_out = rng.standard_normal(expected.shape).astype(dtype)
    expected_grads = ref_backward(grad_out, x, weight, **kwargs)
    originals = (x.copy(), weight.copy(), None if bias is None else bias.copy(), grad_out.copy())
    for layout, arrays in in_every_layout(x, weight, bias, grad_out):
        assert_close(forward(*arrays[:3], **kwargs), expected, dtype, layout)
        grads = backward(arrays[3], *arrays[:2], **kwargs)
        assert len(grads) == 3
        for got, want in zip(grads, expected_grads):
            assert_close(got, want, dtype, layout)
        assert_untouched(arrays, originals)


@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(80)
@given(case=conv_transpose2d_cases())
def test_conv_transpose2d_matches_reference(dtype, case):
    check_conv_against_reference("conv_transpose2d", case, dtype)


# ------------------------------------------------------------------ pooling vs loops

@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(100)
@given(case=pool_cases(), ties=st.booleans())
def test_max_pool2d_matches_reference(dtype, case, ties):
    rng = np.random.default_rng(case["seed"])
    if ties:  # few distinct values: many ties, decided by "first max wins"
        x = rng.integers(-2, 2, case["x_shape"]).astype(dtype)
    else:
        x = rng.standard_normal(case["x_shape"]).astype(dtype)
    kwargs = case["kwargs"]
    expected, expected_indices = R.max_pool2d(x, return_indices=True, **kwargs)
    grad_out = rng.standard_normal(expected.shape).astype(dtype)
    expected_grad = R.max_pool2d_backward(grad_out, expected_indices, x.shape)
    originals = (x.copy(), grad_out.copy(), expected_indices.copy())
    for layout, arrays in in_every_layout(x, grad_out, expected_indices):
        assert_close(F.max_pool2d(arrays[0], **kwargs), expected, dtype, layout)
        out, indices = F.max_pool2d(arrays[0], return_indices=True, **kwargs)
        assert_close(out, expected, dtype, layout)
        assert indices.dtype == np.int64
        np.testing.assert_array_equal(indices, expected_indices, err_msg=layout)
        got = F.max_pool2d_backward(arrays[1], arrays[2], x.shape)
        assert_close(got, expected_grad, dtype, layout)
        assert_untouched(arrays, originals)


@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(100)
@given(case=avg_pool_cases())
def test_avg_pool2d_matches_reference(dtype, case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    kwargs = case["kwargs"]
    expected = R.avg_pool2d(x, **kwargs)
    grad_out = rng.standard_normal(expected.shape).astype(dtype)
    expected_grad = R.avg_pool2d_backward(grad_out, x.shape, **kwargs)
    originals = (x.copy(), grad_out.copy())
    for layout, arrays in in_every_layout(x, grad_out):
        assert_close(F.avg_pool2d(arrays[0], **kwargs), expected, dtype, layout)
        assert_close(F.avg_pool2d_backward(arrays[1], x.shape, **kwargs), expected_grad, dtype,
                     layout)
        assert_untouched(arrays, originals)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("values", [(-1.0, 0.0, 1.0), (np.nan, -1.0, 1.0),
                                    (np.nan, np.inf, -np.inf, 0.0), (0.0, -0.0)])
@pytest.mark.parametrize("kernel_size, padding", [(2, 0), (3, 0), (3, 1)])
def test_max_pool2d_fast_paths_match_reference(dtype, ceil_mode, values, kernel_size, padding):
    # 2x2 and 3x3 windows of stride 2 have their own kernels, which find each
    # window's index again from its maximum: ties, NaNs, infinities and signed
    # zeros; the windows at the edges go another way.
    rng = np.random.default_rng(0)
    kwargs = dict(kernel_size=kernel_size, stride=2, padding=padding, ceil_mode=ceil_mode)
    for H in range(kernel_size, 8):
        for W in range(kernel_size, 8):
            x = rng.choice(np.array(values), (2, 3, H, W)).astype(dtype)
            expected, expected_indices = R.max_pool2d(x, return_indices=True, **kwargs)
            out, indices = F.max_pool2d(x, return_indices=True, **kwargs)
            np.testing.assert_array_equal(indices, expected_indices, err_msg=f"{H}x{W}")
            for got in (out, F.max_pool2d(x, **kwargs)):
                np.testing.assert_array_equal(got, expected, err_msg=f"{H}x{W}")
                np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_depthwise_3x3_kernels_match_reference(dtype, multiplier, padding):
    # 3x3 stride-1 depthwise layers have kernels of their own: padded planes whose
    # zeros are written once per thread, and a weight gradient summed in vector
    # registers a strip of columns at a time, the last columns one by one.
    rng = np.random.default_rng(3)
    C = 3
    for H, W in [(1, 1), (3, 4), (5, 7), (9, 13), (28, 28)]:
        x = rng.standard_normal((4, C, H, W)).astype(dtype)
        weight = rng.standard_normal((C * multiplier, 1, 3, 3)).astype(dtype)
        bias = rng.standard_normal(C * multiplier).astype(dtype)
        kwargs = dict(padding=padding, groups=C)
        if H + 2 * padding < 3 or W + 2 * padding < 3:
            continue
        expected = R.conv2d(x, weight, bias, **kwargs)
        assert_close(F.conv2d(x, weight, bias, **kwargs), expected, dtype, f"{H}x{W}")
        grad_out = rng.standard_normal(expected.shape).astype(dtype)
        for got, want in zip(F.conv2d_backward(grad_out, x, weight, **kwargs),
                             R.conv2d_backward(grad_out, x, weight, **kwargs)):
            assert_close(got, want, dtype, f"{H}x{W}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("special", [None, np.nan, np.inf, -np.inf])
def test_max_pool2d_3x3_wide_rows_match_reference(dtype, padding, special):
    # float32 3x3 stride-2 rows go four windows at a time by MAXPS, and a row
    # holding a NaN (or an inf - inf) is redone exactly; windows with a row in
    # the padding copy the neighbouring row. Rows of 5 to 20 windows, a few
    # special values among ties and signed zeros, NaNs with payloads of their own.
    rng = np.random.default_rng(1)
    for H, W in [(9, 11), (12, 28), (28, 28), (13, 41)]:
        x = rng.choice(np.array([-1.0, -0.0, 0.0, 1.0]), (2, 2, H, W)).astype(dtype)
        if special is not None:
            x.flat[rng.integers(0, x.size, 4)] = special
        if special is not None and np.isnan(special):
            bits = x.view(np.uint32 if dtype == np.float32 else np.uint64)
            bits[np.isnan(x)] |= rng.integers(1, 1000, np.isnan(x).sum()).astype(bits.dtype)
        kwargs = dict(kernel_size=3, stride=2, padding=padding)
        expected, expected_indices = R.max_pool2d(x, return_indices=True, **kwargs)
        out, indices = F.max_pool2d(x, return_indices=True, **kwargs)
        np.testing.assert_array_equal(indices, expected_indices, err_msg=f"{H}x{W}")
        # the same bits: NaN payloads and signed zeros too
        uint = np.uint32 if dtype == np.float32 else np.uint64
        for got in (out, F.max_pool2d(x, **kwargs)):
            np.testing.assert_array_equal(got.view(uint), expected.view(uint), err_msg=f"{H}x{W}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("divisor_override", [None, 3])
def test_avg_pool2d_2x2_fast_path_matches_reference(dtype, ceil_mode, divisor_override):
    # 2x2 stride 2 unpadded has its own kernel path: whole windows in one pass,
    # the odd last row/column (ceil_mode) by the general path beside it.
    rng = np.random.default_rng(0)
    for H in range(1, 6):
        for W in range(1, 6):
            x = rng.standard_normal((2, 3, H, W)).astype(dtype)
            kwargs = dict(kernel_size=2, stride=2, padding=0, ceil_mode=ceil_mode,
                          divisor_override=divisor_override)
            if H < 2 and not ceil_mode or W < 2 and not ceil_mode:
                continue
            expected = R.avg_pool2d(x, **kwargs)
            grad_out = rng.standard_normal(expected.shape).astype(dtype)
            assert_close(F.avg_pool2d(x, **kwargs), expected, dtype, f"{H}x{W}")
            assert_close(F.avg_pool2d_backward(grad_out, x.shape, **kwargs),
                         R.avg_pool2d_backward(grad_out, x.shape, **kwargs), dtype, f"{H}x{W}")


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(25)
@given(data=st.data())
def test_pad2d_matches_reference(dtype, mode, data):
    case = data.draw(pad2d_cases(modes=(mode,)))
    padding = case["padding"]
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    expected = R.pad2d(x, padding, mode)
    grad_out = rng.standard_normal(expected.shape).astype(dtype)
    expected_grad = R.pad2d_backward(grad_out, padding, mode)
    originals = (x.copy(), grad_out.copy())
    for layout, arrays in in_every_layout(x, grad_out):
        assert_close(F.pad2d(arrays[0], padding, mode), expected, dtype, layout)
        assert_close(F.pad2d_backward(arrays[1], padding, mode), expected_grad, dtype, layout)
        assert_untouched(arrays, originals)


@pytest.fixture(params=["default threads", "threads even for tiny work"])
def threading(request, monkeypatch):
    """Run a test as is, and again with every kernel split across threads.

    cnn keeps small work on one thread; the second run makes the small shapes
    here exercise the multi-threaded paths too (per-thread buffers, uneven splits).
    """
    if request.param != "default threads":
        monkeypatch.setattr(F, "_MIN_WORK_PER_THREAD", 1)


# Larger than hypothesis draws: several images per thread, uneven splits, bigger GEMMs.
MEDIUM_CONV2D = [
    ((3, 5, 17, 19), (7, 5, 3, 3), dict(padding=1)),
    ((4, 6, 16, 15), (6, 2, 5, 3), dict(stride=2, padding=(2, 1), groups=3)),
    ((5, 4, 14, 13), (8, 1, 3, 3), dict(padding="same", dilation=2, groups=4,
                                         padding_mode="circular")),
    ((3, 8, 12, 12), (16, 8, 1, 1), dict(padding=2, padding_mode="reflect")),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", MEDIUM_CONV2D)
def test_conv2d_and_transpose_on_medium_shapes(dtype, x_shape, w_shape, kwargs, threading):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal(w_shape).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype)
    expected = R.conv2d(x, weight, bias, **kwargs)
    assert_close(F.conv2d(x, weight, bias, **kwargs), expected, dtype)
    grad_out = rng.standard_normal(expected.shape).astype(dtype)
    for got, want in zip(F.conv2d_backward(grad_out, x, weight, **kwargs),
                         R.conv2d_backward(grad_out, x, weight, **kwargs)):
        assert_close(got, want, dtype)
    if kwargs.get("padding_mode", "zeros") != "zeros" or isinstance(kwargs.get("padding"), str):
        return
    # the transposed convolution with the same weight, grad_out as its input
    t_bias = bias[: w_shape[1] * kwargs.get("groups", 1)]
    expected = R.conv_transpose2d(grad_out, weight, t_bias, **kwargs)
    assert_close(F.conv_transpose2d(grad_out, weight, t_bias, **kwargs), expected, dtype)
    y = rng.standard_normal(expected.shape).astype(dtype)
    for got, want in zip(F.conv_transpose2d_backward(y, grad_out, weight, **kwargs),
                         R.conv_transpose2d_backward(y, grad_out, weight, **kwargs)):
        assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pooling_on_medium_shapes(dtype, threading):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 5, 17, 16)).astype(dtype)
    for kwargs in (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                   dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1))):
        expected, expected_indices = R.max_pool2d(x, return_indices=True, **kwargs)
        out, indices = F.max_pool2d(x, return_indices=True, **kwargs)
        assert_close(out, expected, dtype)
        np.testing.assert_array_equal(indices, expected_indices)
        grad_out = rng.standard_normal(out.shape).astype(dtype)
        assert_close(F.max_pool2d_backward(grad_out, indices, x.shape),
                     R.max_pool2d_backward(grad_out, expected_indices, x.shape), dtype)
    kwargs = dict(kernel_size=(3, 4), stride=(2, 3), padding=(1, 2), ceil_mode=True,
                  count_include_pad=False)
    expected = R.avg_pool2d(x, **kwargs)
    assert_close(F.avg_pool2d(x, **kwargs), expected, dtype)
    grad_out = rng.standard_normal(expected.shape).astype(dtype)
    assert_close(F.avg_pool2d_backward(grad_out, x.shape, **kwargs),
                 R.avg_pool2d_backward(grad_out, x.shape, **kwargs), dtype)


# ---------------------------------------------------------- finite differences

@pytest.mark.parametrize("padding_mode", PAD_MODES)
@hypothesis_settings(10)
@given(data=st.data())
def test_conv2d_backward_finite_differences(padding_mode, data):
    case = data.draw(conv2d_cases(extra=2, max_channels=2, modes=(padding_mode,), max_batch=2))
    rng, x, weight, bias = make_conv_arrays(case, np.float64)
    bias = rng.standard_normal(case["C_out"])
    kwargs = case["kwargs"]
    y = rng.standard_normal(F.conv2d(x, weight, bias, **kwargs).shape)

    def loss():
        return inner(F.conv2d(x, weight, bias, **kwargs), y)

    grad_input, grad_weight, grad_bias = F.conv2d_backward(y, x, weight, **kwargs)
    assert_fd_close(grad_input, numerical_grad(loss, x))
    assert_fd_close(grad_weight, numerical_grad(loss, weight))
    assert_fd_close(grad_bias, numerical_grad(loss, bias))


@hypothesis_settings(25)
@given(case=conv_transpose2d_cases(max_size=4, max_channels=2, max_batch=2))
def test_conv_transpose2d_backward_finite_differences(case):
    rng, x, weight, _ = make_conv_arrays(case, np.float64)
    kwargs = case["kwargs"]
    bias = rng.standard_normal(case["C_out"])
    y = rng.standard_normal(F.conv_transpose2d(x, weight, bias, **kwargs).shape)

    def loss():
        return inner(F.conv_transpose2d(x, weight, bias, **kwargs), y)

    grad_input, grad_weight, grad_bias = F.conv_transpose2d_backward(y, x, weight, **kwargs)
    assert_fd_close(grad_input, numerical_grad(loss, x))
    assert_fd_close(grad_weight, numerical_grad(loss, weight))
    assert_fd_close(grad_bias, numerical_grad(loss, bias))


@hypothesis_settings(25)
@given(case=pool_cases(max_size=6))
def test_max_pool2d_backward_finite_differences(case):
    rng = np.random.default_rng(case["seed"])
    x = distinct_values(case["x_shape"], rng)
    kwargs = case["kwargs"]
    out, indices = F.max_pool2d(x, return_indices=True, **kwargs)
    y = rng.standard_normal(out.shape)

    def loss():
        return inner(F.max_pool2d(x, **kwargs), y)

    assert_fd_close(F.max_pool2d_backward(y, indices, x.shape), numerical_grad(loss, x))


@hypothesis_settings(25)
@given(case=avg_pool_cases(max_size=6))
def test_avg_pool2d_backward_finite_differences(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"])
    kwargs = case["kwargs"]
    y = rng.standard_normal(F.avg_pool2d(x, **kwargs).shape)

    def loss():
        return inner(F.avg_pool2d(x, **kwargs), y)

    assert_fd_close(F.avg_pool2d_backward(y, x.shape, **kwargs), numerical_grad(loss, x))


@hypothesis_settings(25)
@given(case=pad2d_cases(max_pad=3, max_size=4))
def test_pad2d_backward_finite_differences(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"])
    padding, mode = case["padding"], case["mode"]
    y = rng.standard_normal(F.pad2d(x, padding, mode).shape)

    def loss():
        return inner(F.pad2d(x, padding, mode), y)

    assert_fd_close(F.pad2d_backward(y, padding, mode), numerical_grad(loss, x))


# ----------------------------------------------------------------- adjoint identities

@hypothesis_settings(60)
@given(case=conv2d_cases(modes=("zeros",), strings=False))
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>, output_padding restoring x's size."""
    rng, x, weight, _ = make_conv_arrays(case, np.float64)
    kwargs = dict(case["kwargs"])
    kwargs.pop("padding_mode")
    out = F.conv2d(x, weight, **kwargs)
    y = rng.standard_normal(out.shape)
    kernel = case["w_shape"][2:]
    output_padding = tuple(
        (n + 2 * p - d * (k - 1) - 1) % s
        for n, k, s, p, d in zip(x.shape[2:], kernel, pair(kwargs["stride"]),
                                 pair(kwargs["padding"]), pair(kwargs["dilation"])))
    back = F.conv_transpose2d(y, weight, output_padding=output_padding, **kwargs)
    assert back.shape == x.shape
    assert_adjoint((out, y), (x, back))
    # and conv2d's own backward is that same map
    grad_input, _, _ = F.conv2d_backward(y, x, weight, **kwargs)
    np.testing.assert_allclose(grad_input, back, rtol=1e-10,
                               atol=1e-10 * max(1.0, np.abs(back).max()))


@hypothesis_settings(60)
@given(case=conv2d_cases())
def test_conv2d_backward_is_the_adjoint_of_conv2d(case):
    """conv2d is linear in x and in w (no bias): its backward is the adjoint of each."""
    rng, x, weight, _ = make_conv_arrays(case, np.float64)
    kwargs = case["kwargs"]
    out = F.conv2d(x, weight, **kwargs)
    y = rng.standard_normal(out.shape)
    grad_input, grad_weight, _ = F.conv2d_backward(y, x, weight, **kwargs)
    assert_adjoint((out, y), (x, grad_input))
    assert_adjoint((out, y), (weight, grad_weight))


@hypothesis_settings(40)
@given(case=conv_transpose2d_cases())
def test_conv_transpose2d_backward_is_the_adjoint(case):
    rng, x, weight, _ = make_conv_arrays(case, np.float64)
    kwargs = case["kwargs"]
    out = F.conv_transpose2d(x, weight, **kwargs)
    y = rng.standard_normal(out.shape)
    grad_input, grad_weight, _ = F.conv_transpose2d_backward(y, x, weight, **kwargs)
    assert_adjoint((out, y), (x, grad_input))
    assert_adjoint((out, y), (weight, grad_weight))


@hypothesis_settings(60)
@given(case=pad2d_cases())
def test_pad2d_backward_is_the_adjoint(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"])
    padding, mode = case["padding"], case["mode"]
    out = F.pad2d(x, padding, mode)
    y = rng.standard_normal(out.shape)
    assert_adjoint((out, y), (x, F.pad2d_backward(y, padding, mode)))


@hypothesis_settings(60)
@given(case=avg_pool_cases())
def test_avg_pool2d_backward_is_the_adjoint(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["x_shape"])
    kwargs = case["kwargs"]
    out = F.avg_pool2d(x, **kwargs)
    y = rng.standard_normal(out.shape)
    assert_adjoint((out, y), (x, F.avg_pool2d_backward(y, x.shape, **kwargs)))


# ---------------------------------------------------------------------- shape helpers

@hypothesis_settings(80)
@given(case=conv2d_cases(modes=("zeros",), strings=False), int_size=st.booleans())
def test_conv2d_output_shape_is_the_output_shape(case, int_size):
    kw = case["kwargs"]
    size = case["x_shape"][2:]
    input_size = size[0] if int_size else size
    expected = R.conv2d_output_shape(input_size, case["w_shape"][2:], kw["stride"],
                                     kw["padding"], kw["dilation"])
    assume(min(expected) >= 1)
    x = np.zeros((1, case["x_shape"][1], *pair(input_size)))
    out = F.conv2d(x, np.zeros(case["w_shape"]), **kw)
    shape = F.conv2d_output_shape(input_size, case["w_shape"][2:], kw["stride"], kw["padding"],
                                  kw["dilation"])
    assert tuple(shape) == out.shape[2:] == expected


@hypothesis_settings(80)
@given(case=conv_transpose2d_cases())
def test_conv_transpose2d_output_shape_is_the_output_shape(case):
    kw = case["kwargs"]
    out = F.conv_transpose2d(np.zeros(case["x_shape"]), np.zeros(case["w_shape"]), **kw)
    shape = F.conv_transpose2d_output_shape(case["x_shape"][2:], case["w_shape"][2:],
                                            kw["stride"], kw["padding"], kw["output_padding"],
                                            kw["dilation"])
    assert tuple(shape) == out.shape[2:]


@hypothesis_settings(80)
@given(case=pool_cases())
def test_pool2d_output_shape_is_the_output_shape(case):
    kw = case["kwargs"]
    x = np.zeros(case["x_shape"])
    size = case["x_shape"][2:]
    shape = F.pool2d_output_shape(size, kw["kernel_size"], kw["stride"], kw["padding"],
                                  kw["dilation"], kw["ceil_mode"])
    assert tuple(shape) == F.max_pool2d(x, **kw).shape[2:]
    assert tuple(shape) == R.pool2d_output_shape(size, kw["kernel_size"], kw["stride"],
                                                 kw["padding"], kw["dilation"], kw["ceil_mode"])
    if pair(kw["dilation"]) == (1, 1):
        avg_kw = {k: v for k, v in kw.items() if k != "dilation"}
        assert tuple(shape) == F.avg_pool2d(x, **avg_kw).shape[2:]


def test_output_shape_helpers_on_known_values():
    assert tuple(F.conv2d_output_shape(32, 5)) == (28, 28)
    assert tuple(F.conv2d_output_shape((32, 17), (3, 5), stride=2, padding=(1, 2))) == (16, 9)
    assert tuple(F.conv2d_output_shape(10, 3, dilation=2)) == (6, 6)
    assert tuple(F.conv_transpose2d_output_shape(16, 4, stride=2, padding=1)) == (32, 32)
    assert tuple(F.conv_transpose2d_output_shape((3, 4), 3, stride=2,
                                                 output_padding=(1, 0))) == (8, 9)
    assert tuple(F.pool2d_output_shape(7, 2)) == (3, 3)
    assert tuple(F.pool2d_output_shape(7, 2, ceil_mode=True)) == (4, 4)
    # ceil_mode never starts a window in the right padding: 5 + 2*1 with k=2, s=3 gives 2
    assert tuple(F.pool2d_output_shape(5, 2, stride=3, padding=1, ceil_mode=True)) == (2, 2)


# ------------------------------------------------------------------ needs_input_grad

@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(15)
@given(case=conv2d_cases(extra=3))
def test_conv2d_backward_without_input_grad(dtype, case):
    rng, x, weight, _ = make_conv_arrays(case, dtype)
    kwargs = case["kwargs"]
    grad_out = rng.standard_normal(F.conv2d(x, weight, **kwargs).shape).astype(dtype)
    full = F.conv2d_backward(grad_out, x, weight, **kwargs)
    grad_input, grad_weight, grad_bias = F.conv2d_backward(grad_out, x, weight,
                                                           needs_input_grad=False, **kwargs)
    assert grad_input is None
    np.testing.assert_array_equal(grad_weight, full[1])
    np.testing.assert_array_equal(grad_bias, full[2])


@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(15)
@given(case=conv_transpose2d_cases())
def test_conv_transpose2d_backward_without_input_grad(dtype, case):
    rng, x, weight, _ = make_conv_arrays(case, dtype)
    kwargs = case["kwargs"]
    grad_out = rng.standard_normal(F.conv_transpose2d(x, weight, **kwargs).shape).astype(dtype)
    full = F.conv_transpose2d_backward(grad_out, x, weight, **kwargs)
    grad_input, grad_weight, grad_bias = F.conv_transpose2d_backward(
        grad_out, x, weight, needs_input_grad=False, **kwargs)
    assert grad_input is None
    np.testing.assert_array_equal(grad_weight, full[1])
    np.testing.assert_array_equal(grad_bias, full[2])


# ------------------------------------------------------- max pooling: ties and NaN

@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_first_max_wins(dtype):
    x = np.zeros((1, 1, 4, 4), dtype)
    _, indices = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(indices[0, 0], [[0, 2], [8, 10]])
    # windows hanging over the padding start at their first in-bounds pixel
    _, indices = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(indices[0, 0], [[0, 1], [4, 5]])
    x = np.array([[[[1, 3, 3], [3, 2, 3], [0, 3, 1]]]], dtype)
    out, indices = F.max_pool2d(x, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(out[0, 0], [[3, 3], [3, 3]])
    np.testing.assert_array_equal(indices[0, 0], [[1, 1], [3, 5]])
    grad = F.max_pool2d_backward(np.ones_like(out), indices, x.shape)
    np.testing.assert_array_equal(grad[0, 0], [[0, 2, 0], [1, 0, 1], [0, 0, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_all_minus_inf(dtype):
    x = np.full((1, 2, 3, 3), -np.inf, dtype)
    out, indices = F.max_pool2d(x, 2, stride=1, padding=1, return_indices=True)
    assert np.all(out == -np.inf)
    np.testing.assert_array_equal(indices, R.max_pool2d(x, 2, 1, 1, return_indices=True)[1])
    np.testing.assert_array_equal(indices[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5],
                                                  [6, 6, 7, 8]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_nan_propagates(dtype):
    """As ATen: `val > maxval or isnan(val)`: a NaN takes over, the last NaN of a window wins."""
    nan = np.nan
    x = np.array([[[[1, nan, 5, 2],
                    [nan, 2, 0, 7],
                    [4, 3, 9, nan],
                    [8, 1, 1, 1]]]], dtype)
    out, indices = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(out[0, 0], [[nan, 7], [8, nan]])
    np.testing.assert_array_equal(indices[0, 0], [[4, 7], [12, 11]])
    out, indices = F.max_pool2d(x, 3, stride=1, return_indices=True)
    assert np.isnan(out).all()
    np.testing.assert_array_equal(indices[0, 0], [[4, 11], [4, 11]])
    grad = F.max_pool2d_backward(np.ones_like(out), indices, x.shape)
    assert grad[0, 0, 1, 0] == 2 and grad[0, 0, 2, 3] == 2 and grad.sum() == 4


@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(20)
@given(case=pool_cases(max_size=6))
def test_max_pool2d_nan_and_inf_match_reference(dtype, case):
    rng = np.random.default_rng(case["seed"])
    x = rng.integers(0, 3, case["x_shape"]).astype(dtype)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[rng.random(x.shape) < 0.1] = -np.inf
    x[rng.random(x.shape) < 0.05] = np.inf
    expected, expected_indices = R.max_pool2d(x, return_indices=True, **case["kwargs"])
    out, indices = F.max_pool2d(x, return_indices=True, **case["kwargs"])
    assert_close(out, expected, dtype)
    np.testing.assert_array_equal(indices, expected_indices)


@hypothesis_settings(100)
@given(case=pool_cases(allow_empty_windows=True))
def test_max_pool2d_indices_stay_in_the_plane(case):
    """Wherever the reference applies, or where a window sees only padding (refused or not)."""
    x = np.random.default_rng(case["seed"]).standard_normal(case["x_shape"])
    try:
        out, indices = F.max_pool2d(x, return_indices=True, **case["kwargs"])
    except ValueError:
        kw = case["kwargs"]
        assert pool_has_empty_window(case["x_shape"][2:], kw["kernel_size"], kw["stride"],
                                     kw["padding"], kw["dilation"], kw["ceil_mode"])
        return
    assert np.all((indices >= 0) & (indices < x.shape[2] * x.shape[3]))
    F.max_pool2d_backward(np.ones_like(out), indices, x.shape)


def test_max_pool2d_window_of_only_padding():
    """H=3, kernel 2, dilation 4, padding 1: the window reads rows -1 and 3, both padding.
    torch returns an out-of-range index there (and crashes in backward); cnn must either
    refuse the configuration or give indices inside the plane."""
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    try:
        out, indices = F.max_pool2d(x, 2, stride=1, padding=1, dilation=4, return_indices=True)
    except ValueError:
        return
    assert np.all((indices >= 0) & (indices < 9)), indices
    F.max_pool2d_backward(np.ones_like(out), indices, x.shape)


# ------------------------------------------------------------------ empty batch

def test_empty_batch():
    x = np.zeros((0, 4, 6, 5))
    weight = np.ones((6, 2, 3, 3))
    bias = np.ones(6)
    out = F.conv2d(x, weight, bias, padding=1, groups=2)
    assert out.shape == (0, 6, 6, 5)
    grad_input, grad_weight, grad_bias = F.conv2d_backward(out, x, weight, padding=1, groups=2)
    assert grad_input.shape == x.shape
    np.testing.assert_array_equal(grad_weight, np.zeros_like(weight))
    np.testing.assert_array_equal(grad_bias, np.zeros(6))
    out = F.conv2d(x, weight, bias, padding="same", groups=2, padding_mode="reflect")
    assert out.shape == (0, 6, 6, 5)

    weight_t = np.ones((4, 3, 3, 3))
    out = F.conv_transpose2d(x, weight_t, np.ones(3), stride=2)
    assert out.shape == (0, 3, 13, 11)
    grad_input, grad_weight, grad_bias = F.conv_transpose2d_backward(out, x, weight_t, stride=2)
    assert grad_input.shape == x.shape
    np.testing.assert_array_equal(grad_weight, np.zeros_like(weight_t))
    np.testing.assert_array_equal(grad_bias, np.zeros(3))

    out, indices = F.max_pool2d(x, 2, return_indices=True)
    assert out.shape == indices.shape == (0, 4, 3, 2)
    assert F.max_pool2d_backward(out, indices, x.shape).shape == x.shape
    out = F.avg_pool2d(x, 2, ceil_mode=True)
    assert out.shape == (0, 4, 3, 3)
    assert F.avg_pool2d_backward(out, x.shape, 2, ceil_mode=True).shape == x.shape
    out = F.pad2d(x, (1, 2, 3, 4), "reflect")
    assert out.shape == (0, 4, 13, 8)
    assert F.pad2d_backward(out, (1, 2, 3, 4), "reflect").shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_input_becomes_float64_and_dtype_is_kept(dtype):
    x = np.arange(2 * 2 * 5 * 5).reshape(2, 2, 5, 5)
    weight = np.ones((3, 2, 2, 2), dtype)
    assert F.conv2d(x.astype(dtype), weight).dtype == dtype
    assert F.max_pool2d(x, 2).dtype == np.float64
    assert F.avg_pool2d(x, 2).dtype == np.float64
    assert F.pad2d(x, (1, 1, 1, 1)).dtype == np.float64
    np.testing.assert_array_equal(F.max_pool2d(x, 2), R.max_pool2d(x, 2))


def test_kernels_restore_the_callers_denormal_mode():
    # The kernels flush denormals to zero while they run (denormals slow x86 arithmetic
    # many times over), and must give the caller's thread its floating-point mode back.
    tiny = np.array([1e-39, -3e-40], dtype=np.float32)  # below float32's smallest normal
    x = np.full((2, 3, 6, 6), 1e-39, dtype=np.float32)
    weight = np.ones((4, 3, 3, 3), dtype=np.float32)
    y = F.conv2d(x, weight, padding=1)
    F.conv2d_backward(y, x, weight, padding=1)
    F.avg_pool2d_backward(F.avg_pool2d(x, 2), x.shape, 2)
    out, indices = F.max_pool2d(x, 2, return_indices=True)
    F.max_pool2d_backward(out, indices, x.shape)
    np.testing.assert_array_equal(tiny * np.float32(1), tiny)
    assert (tiny + np.float32(0))[0] != 0


@pytest.mark.parametrize("groups", [1, 4])
def test_conv2d_with_no_output_channels(groups):
    # Nothing to compute, but every shape must come back right (no BLAS call with a zero size).
    x = np.ones((2, 4, 5, 5))
    weight = np.ones((0, 4 // groups, 3, 3))
    y = F.conv2d(x, weight, groups=groups)
    assert y.shape == (2, 0, 3, 3)
    grad_input, grad_weight, grad_bias = F.conv2d_backward(y, x, weight, groups=groups)
    np.testing.assert_array_equal(grad_input, np.zeros(x.shape))
    assert grad_weight.shape == weight.shape and grad_bias.shape == (0,)


# ----------------------------------------------------------------------------- relu

@pytest.mark.parametrize("dtype", DTYPES)
@hypothesis_settings(30)
@given(shape=st.lists(st.integers(0, 9), min_size=1, max_size=4),
       special=st.booleans())
def test_relu_matches_reference(dtype, shape, special):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    grad_out = rng.standard_normal(shape).astype(dtype)
    if special and x.size:  # zeros, signed zeros, infinities and NaN, in x and grad_out
        values = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype=dtype)
        x.flat[:5] = values[:min(5, x.size)]
        grad_out.flat[-min(5, x.size):] = values[:min(5, x.size)]
    expected, expected_grad = R.relu(x), R.relu_backward(grad_out, R.relu(x))
    originals = [x.copy(), grad_out.copy()]
    for layout, (x_l, g_l) in in_every_layout(x, grad_out):
        out = F.relu(x_l)
        np.testing.assert_array_equal(out, expected, err_msg=layout)
        assert out.dtype == dtype
        np.testing.assert_array_equal(F.relu_backward(g_l, out), expected_grad, err_msg=layout)
        assert_untouched([x_l, g_l], originals)


def test_relu_nan_rules_are_pytorchs():
    # relu(NaN) is NaN; the gradient passes where the output is NaN and stops where it is
    # <= 0, even when the incoming gradient is NaN or infinite there.
    x = np.array([np.nan, -1.0, 0.0, 2.0, -np.inf, np.inf])
    grad_out = np.array([5.0, np.nan, np.inf, 3.0, 7.0, 1.0])
    out = F.relu(x)
    np.testing.assert_array_equal(out, [np.nan, 0, 0, 2, 0, np.inf])
    np.testing.assert_array_equal(F.relu_backward(grad_out, out), [5, 0, 0, 3, 0, 1])


def test_relu_inplace_writes_into_the_input():
    x = np.arange(-6.0, 6.0, dtype=np.float32).reshape(3, 4)
    assert F.relu(x, inplace=True) is x
    np.testing.assert_array_equal(x, np.maximum(np.arange(-6.0, 6.0), 0).reshape(3, 4))
    column = np.arange(-6.0, 6.0).reshape(3, 4)[:, 1]  # not contiguous: written back
    assert F.relu(column, inplace=True) is column
    np.testing.assert_array_equal(column, [0, 0, 3])


def test_relu_errors_name_the_argument():
    with pytest.raises(ValueError, match="read-only"):
        frozen = np.ones(3)
        frozen.flags.writeable = False
        F.relu(frozen, inplace=True)
    with pytest.raises(TypeError, match="inplace=True"):
        F.relu(np.ones(3, dtype=np.int64), inplace=True)
    with pytest.raises(TypeError, match="inplace must be a bool"):
        F.relu(np.ones(3), inplace=1)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        F.relu(np.ones(3, dtype=np.float16))
    with pytest.raises(ValueError, match=r"grad_out \(2, 3\) and out \(3, 2\)"):
        F.relu_backward(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(TypeError, match="same dtype"):
        F.relu_backward(np.ones(3, dtype=np.float32), np.ones(3))


def test_importing_cnn_leaves_the_openmp_environment_as_it_was():
    # cnn loads its kernels with GOMP_SPINCOUNT=3000 (long-spinning threads stall
    # every parallel region on a busy machine) and puts the environment back, so
    # that OpenMP runtimes loaded later see the user's settings; a user's own
    # policy is kept.
    import subprocess
    import sys

    code = ("import os, cnn; print(os.environ.get('OMP_WAIT_POLICY'), "
            "os.environ.get('GOMP_SPINCOUNT'))")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    for extra, expected in (({}, "None None"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE None"),
                            ({"GOMP_SPINCOUNT": "1000"}, "None 1000")):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra},
                             capture_output=True, text=True, check=True).stdout.split("\n")[0]
        assert out == expected, (extra, out)
