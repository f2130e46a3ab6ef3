"""cnn.signal against scipy.signal, the course notes' worked example and impulses."""

import doctest

import numpy as np
import pytest
import scipy.signal
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import cnn.signal
from cnn.functional import conv2d
from cnn.signal import convolve2d, correlate2d

MODES = ("full", "valid", "same")
FUNCS = {correlate2d: scipy.signal.correlate2d, convolve2d: scipy.signal.convolve2d}
# Relative to sum(|image| * |kernel|) over each output's window.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}

# The course notes' "edge detector" (notes 004): this image and kernel [1, -1]
# "convolved" give NOTES_OUTPUT. It is image[i, j] - image[i, j + 1], i.e. a
# cross-correlation, as deep-learning libraries call it convolution.
NOTES_IMAGE = np.array([[0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]])
NOTES_KERNEL = np.array([[1, -1]])
NOTES_OUTPUT = np.array([[-1, -1, 0], [0, -1, -1], [0, 0, -1]])


def _fits(image_shape, kernel_shape):
    """scipy's condition for mode='valid'."""
    return all(n >= k for n, k in zip(image_shape, kernel_shape)) or all(
        k >= n for n, k in zip(image_shape, kernel_shape)
    )


def _assert_matches_scipy(func, image, kernel, mode, dtype):
    out = func(image, kernel, mode)
    ref_func = FUNCS[func]
    ref = ref_func(image.astype(np.float64), kernel.astype(np.float64), mode)
    bound = ref_func(np.abs(image).astype(np.float64), np.abs(kernel).astype(np.float64), mode)
    assert out.dtype == dtype
    assert out.shape == ref.shape
    np.testing.assert_array_less(np.abs(out - ref), RTOL[dtype] * bound + 1e-300)


dims = st.integers(1, 9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("func", [correlate2d, convolve2d], ids=["correlate2d", "convolve2d"])
@settings(max_examples=60, deadline=None)
@given(
    H=dims, W=dims, kH=dims, kW=dims, mode=st.sampled_from(MODES), seed=st.integers(0, 2**32 - 1)
)
def test_matches_scipy(func, dtype, H, W, kH, kW, mode, seed):
    # Odd and even kernels, kernels larger than the image in one or both axes.
    assume(mode != "valid" or _fits((H, W), (kH, kW)))
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((H, W)).astype(dtype)
    kernel = rng.standard_normal((kH, kW)).astype(dtype)
    _assert_matches_scipy(func, image, kernel, mode, dtype)


@settings(max_examples=40, deadline=None)
@given(H=dims, W=dims, kH=dims, kW=dims, seed=st.integers(0, 2**32 - 1))
def test_convolution_is_correlation_with_flipped_kernel(H, W, kH, kW, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(-5, 6, (H, W))
    kernel = rng.integers(-5, 6, (kH, kW))
    # Small integers: every product and sum is exact in float64.
    np.testing.assert_array_equal(
        convolve2d(image, kernel), correlate2d(image, kernel[::-1, ::-1])
    )
    np.testing.assert_array_equal(convolve2d(image, kernel), convolve2d(kernel, image))
    np.testing.assert_array_equal(
        correlate2d(image, kernel), correlate2d(kernel, image)[::-1, ::-1]
    )


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
@pytest.mark.parametrize(
    "image_shape, kernel_shape", [((3, 5), (4, 2)), ((5, 3), (2, 4)), ((1, 4), (2, 1))]
)
def test_valid_needs_one_input_inside_the_other(func, image_shape, kernel_shape):
    image, kernel = np.ones(image_shape), np.ones(kernel_shape)
    with pytest.raises(ValueError):
        FUNCS[func](image, kernel, "valid")  # scipy refuses too
    with pytest.raises(ValueError, match="at least as large"):
        func(image, kernel, "valid")


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("image_shape, kernel_shape", [((13, 11), (3, 4)), ((4, 3), (13, 11))])
def test_computed_in_bands_of_rows(monkeypatch, func, mode, image_shape, kernel_shape):
    # A tiny scratch budget forces one conv2d call per output row, then per few rows.
    rng = np.random.default_rng(1)
    image = rng.standard_normal(image_shape)
    kernel = rng.standard_normal(kernel_shape)
    expected = FUNCS[func](image, kernel, mode)
    for budget in (1, 100, 1000):
        monkeypatch.setattr(cnn.signal, "_SCRATCH_VALUES", budget)
        np.testing.assert_allclose(func(image, kernel, mode), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
def test_valid_with_kernel_larger_than_image(func):
    image = np.arange(6.0).reshape(2, 3)
    kernel = np.arange(12.0).reshape(3, 4)
    out = func(image, kernel, "valid")
    assert out.shape == (2, 2)
    np.testing.assert_array_equal(out, FUNCS[func](image, kernel, "valid"))


def test_notes_worked_example_correlation():
    out = correlate2d(NOTES_IMAGE, NOTES_KERNEL, mode="valid")
    np.testing.assert_array_equal(out, NOTES_OUTPUT)
    assert out.dtype == np.float64


def test_notes_worked_example_convolution():
    # A true convolution flips [1, -1] to [-1, 1]: every sign turns around.
    out = convolve2d(NOTES_IMAGE, NOTES_KERNEL, mode="valid")
    np.testing.assert_array_equal(out, -NOTES_OUTPUT)
    np.testing.assert_array_equal(
        out, correlate2d(NOTES_IMAGE, NOTES_KERNEL[:, ::-1], mode="valid")
    )


@pytest.mark.parametrize("kernel_shape", [(1, 1), (2, 3), (3, 3), (4, 2), (5, 4)])
def test_impulse_reproduces_kernel(kernel_shape):
    kernel = np.arange(1.0, 1.0 + np.prod(kernel_shape)).reshape(kernel_shape)
    impulse = np.ones((1, 1))
    np.testing.assert_array_equal(convolve2d(impulse, kernel), kernel)
    np.testing.assert_array_equal(correlate2d(impulse, kernel), kernel[::-1, ::-1])


@pytest.mark.parametrize("kernel_shape", [(3, 3), (3, 5)])
def test_impulse_inside_image_same_mode(kernel_shape):
    kH, kW = kernel_shape
    kernel = np.arange(1.0, 1.0 + kH * kW).reshape(kernel_shape)
    image = np.zeros((7, 9))
    image[3, 4] = 1.0
    window = np.s_[3 - kH // 2 : 3 + kH // 2 + 1, 4 - kW // 2 : 4 + kW // 2 + 1]
    conv, corr = convolve2d(image, kernel, "same"), correlate2d(image, kernel, "same")
    np.testing.assert_array_equal(conv[window], kernel)
    np.testing.assert_array_equal(corr[window], kernel[::-1, ::-1])
    assert conv.sum() == corr.sum() == kernel.sum()  # nothing outside the window


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
@pytest.mark.parametrize("kernel_shape", [(1, 2), (2, 2), (3, 4), (4, 4), (5, 3)])
def test_same_mode_anchor(func, kernel_shape):
    # Documented: out[i, j] is the sum in which kernel[(kH-1)//2, (kW-1)//2]
    # multiplies image[i, j] - for both functions, even sizes included.
    kH, kW = kernel_shape
    kernel = np.arange(1.0, 1.0 + kH * kW).reshape(kernel_shape)
    image = np.zeros((8, 8))
    image[4, 3] = 1.0
    assert func(image, kernel, "same")[4, 3] == kernel[(kH - 1) // 2, (kW - 1) // 2]


@pytest.mark.parametrize("kernel_shape", [(1, 2), (2, 2), (3, 4), (4, 5), (5, 3)])
def test_correlate_same_is_conv2d_padding_same(kernel_shape):
    # As documented: correlate2d's "same" anchor is the one of conv2d(padding="same").
    rng = np.random.default_rng(2)
    image = rng.standard_normal((7, 6))
    kernel = rng.standard_normal(kernel_shape)
    expected = conv2d(image[None, None], kernel[None, None], padding="same")[0, 0]
    out = correlate2d(image, kernel, "same")
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_even_kernel_same_mode_by_hand():
    image = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    kernel = np.array([[1.0, 10.0]])
    # correlation: image[i, j] + 10 * image[i, j + 1]
    # convolution: image[i, j] + 10 * image[i, j - 1]
    np.testing.assert_array_equal(
        correlate2d(image, kernel, "same"), [[21.0, 32.0, 3.0], [54.0, 65.0, 6.0]]
    )
    np.testing.assert_array_equal(
        convolve2d(image, kernel, "same"), [[1.0, 12.0, 23.0], [4.0, 45.0, 56.0]]
    )


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
@pytest.mark.parametrize(
    "image_dtype, kernel_dtype, expected",
    [
        (np.float32, np.float32, np.float32),
        (np.float64, np.float64, np.float64),
        (np.float32, np.float64, np.float64),
        (np.float64, np.float32, np.float64),
        (np.int64, np.int64, np.float64),
        (np.uint8, np.int8, np.float64),
        (np.int32, np.float32, np.float64),
        (np.bool_, np.bool_, np.float64),
        (np.float16, np.float16, np.float32),
    ],
)
def test_dtype_rules(func, image_dtype, kernel_dtype, expected):
    image = (np.arange(20).reshape(4, 5) % 3).astype(image_dtype)
    kernel = np.array([[1, 0], [1, 1]]).astype(kernel_dtype)
    out = func(image, kernel, "full")
    assert out.dtype == expected
    ref = FUNCS[func](image.astype(np.float64), kernel.astype(np.float64))
    np.testing.assert_array_equal(out, ref)  # small integers: exact in any float


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
@pytest.mark.parametrize(
    "bad",
    [
        np.ones((3, 3), dtype=np.complex128),
        np.ones((3, 3), dtype=object),
        np.array([["a", "b"], ["c", "d"]]),
    ],
    ids=["complex", "object", "str"],
)
def test_non_real_inputs_raise_type_error(func, bad):
    with pytest.raises(TypeError, match="image"):
        func(bad, np.ones((2, 2)))
    with pytest.raises(TypeError, match="kernel"):
        func(np.ones((4, 4)), bad)


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4), (1, 1, 3, 3)])
def test_non_2d_inputs_raise(func, shape):
    bad = np.ones(shape)
    with pytest.raises(ValueError, match=r"image must be a 2-D array, got shape"):
        func(bad, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"kernel must be a 2-D array, got shape"):
        func(np.ones((4, 4)), bad)


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_empty_inputs_raise(func, shape):
    with pytest.raises(ValueError, match="image must not be empty"):
        func(np.ones(shape), np.ones((2, 2)))
    with pytest.raises(ValueError, match="kernel must not be empty"):
        func(np.ones((4, 4)), np.ones(shape))


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
def test_bad_mode(func):
    for mode in ("Full", "circular", ""):
        with pytest.raises(ValueError, match="mode must be one of"):
            func(np.ones((3, 3)), np.ones((2, 2)), mode)
    for mode in (None, 1, ["same"]):
        with pytest.raises(TypeError, match="mode must be a str"):
            func(np.ones((3, 3)), np.ones((2, 2)), mode)


@pytest.mark.parametrize("func", [correlate2d, convolve2d])
@pytest.mark.parametrize("mode", MODES)
def test_lists_strided_fortran_and_read_only_inputs(func, mode):
    rng = np.random.default_rng(0)
    image = rng.standard_normal((12, 14))
    kernel = rng.standard_normal((3, 4))
    expected = FUNCS[func](image[::2, ::2], kernel, mode)

    strided = image[::2, ::2]
    fortran = np.asfortranarray(image[::2, ::2])
    read_only = image[::2, ::2].copy()
    read_only.setflags(write=False)
    kernel_ro = kernel.copy()
    kernel_ro.setflags(write=False)
    kernel_before = kernel.copy()
    for x in (strided, fortran, read_only, strided.tolist()):
        for k in (kernel, np.asfortranarray(kernel), kernel_ro, kernel.tolist()):
            np.testing.assert_allclose(func(x, k, mode), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(kernel, kernel_before)  # inputs are not modified


@pytest.mark.parametrize("mode", MODES)
def test_output_is_a_fresh_contiguous_array(mode):
    out = correlate2d(np.ones((5, 6)), np.ones((2, 3)), mode)
    assert out.flags.c_contiguous and out.flags.writeable


def test_docstring_examples():
    result = doctest.testmod(cnn.signal, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
