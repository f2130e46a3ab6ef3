"""cnn.filters: shapes, sums, symmetries, validation and what each filter does to an image."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnn.filters
from cnn.filters import (
    box_blur,
    emboss,
    gaussian,
    identity,
    laplacian,
    sharpen,
    sobel_x,
    sobel_y,
)
from cnn.signal import convolve2d, correlate2d

# (factory, kwargs, shape, documented sum)
KERNELS = [
    (box_blur, {}, (3, 3), 1.0),
    (box_blur, {"size": 1}, (1, 1), 1.0),
    (box_blur, {"size": 7}, (7, 7), 1.0),
    (gaussian, {}, (5, 5), 1.0),
    (gaussian, {"size": 9, "sigma": 0.3}, (9, 9), 1.0),
    (gaussian, {"size": 3, "sigma": 100.0}, (3, 3), 1.0),
    (sharpen, {}, (3, 3), 1.0),
    (sobel_x, {}, (3, 3), 0.0),
    (sobel_y, {}, (3, 3), 0.0),
    (laplacian, {}, (3, 3), 0.0),
    (laplacian, {"diagonal": True}, (3, 3), 0.0),
    (emboss, {}, (3, 3), 1.0),
    (identity, {}, (3, 3), 1.0),
    (identity, {"size": 5}, (5, 5), 1.0),
]
KERNEL_IDS = [f"{f.__name__}-{kw}" for f, kw, _, _ in KERNELS]
SIZED = [box_blur, gaussian, identity]


@pytest.mark.parametrize("factory, kwargs, shape, total", KERNELS, ids=KERNEL_IDS)
def test_shape_dtype_and_sum(factory, kwargs, shape, total):
    kernel = factory(**kwargs)
    assert isinstance(kernel, np.ndarray)
    assert kernel.dtype == np.float64
    assert kernel.shape == shape
    assert kernel.sum() == pytest.approx(total, abs=1e-12)


@pytest.mark.parametrize("factory, kwargs, shape, total", KERNELS, ids=KERNEL_IDS)
def test_each_call_returns_a_fresh_array(factory, kwargs, shape, total):
    first = factory(**kwargs)
    first[...] = 123.0
    assert not np.any(factory(**kwargs) == 123.0)


def test_exact_values():
    np.testing.assert_array_equal(sobel_x(), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(sobel_y(), [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    np.testing.assert_array_equal(laplacian(), [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    np.testing.assert_array_equal(laplacian(diagonal=True), [[1, 1, 1], [1, -8, 1], [1, 1, 1]])
    np.testing.assert_array_equal(sharpen(), identity() - laplacian())
    np.testing.assert_array_equal(emboss(), [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    np.testing.assert_array_equal(box_blur(3), np.full((3, 3), 1 / 9))
    np.testing.assert_array_equal(identity(1), [[1.0]])


@settings(max_examples=30, deadline=None)
@given(size=st.sampled_from([1, 3, 5, 7, 9, 11]), sigma=st.floats(0.05, 50.0))
def test_gaussian_sums_to_one_and_is_symmetric(size, sigma):
    kernel = gaussian(size, sigma)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(kernel, kernel.T)
    np.testing.assert_array_equal(kernel, kernel[::-1, :])
    np.testing.assert_array_equal(kernel, kernel[:, ::-1])
    assert np.all(kernel >= 0)  # tiny sigma: the far corners underflow to 0
    c = size // 2
    assert kernel[c, c] == kernel.max()
    assert np.all(np.diff(kernel[c, c:]) <= 0)  # falls off from the centre


def test_gaussian_shape_follows_sigma():
    centres = [gaussian(5, sigma)[2, 2] for sigma in (0.5, 1.0, 3.0)]
    assert centres[0] > centres[1] > centres[2]  # wider bell, less weight in the middle
    # Separable: the outer product of its own (normalised) middle row.
    kernel = gaussian(7, 1.5)
    row = kernel.sum(axis=0)
    np.testing.assert_allclose(kernel, np.outer(row, row), rtol=1e-13)
    assert row[2] / row[3] == pytest.approx(np.exp(-1 / (2 * 1.5**2)))


@pytest.mark.parametrize("factory", SIZED)
@pytest.mark.parametrize("size", [0, -1, -3, 2, 4])
def test_size_must_be_positive_and_odd(factory, size):
    with pytest.raises(ValueError, match="size must be a positive odd int"):
        factory(size)


@pytest.mark.parametrize("factory", SIZED)
@pytest.mark.parametrize("size", [3.0, "3", True, None, np.float64(3.0)])
def test_size_must_be_an_int(factory, size):
    with pytest.raises(TypeError, match="size must be an int"):
        factory(size)


@pytest.mark.parametrize("factory", SIZED)
def test_numpy_int_size_accepted(factory):
    assert factory(np.int64(5)).shape == (5, 5)


@pytest.mark.parametrize("sigma", [0, 0.0, -1.0, float("nan"), float("inf")])
def test_gaussian_sigma_must_be_positive_and_finite(sigma):
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        gaussian(5, sigma)


@pytest.mark.parametrize("sigma", ["1", None, True, 1j, [1.0]])
def test_gaussian_sigma_must_be_real(sigma):
    with pytest.raises(TypeError, match="sigma must be a real number"):
        gaussian(5, sigma)


def test_gaussian_accepts_int_and_numpy_sigma():
    np.testing.assert_array_equal(gaussian(5, 2), gaussian(5, np.float32(2.0)))


@pytest.mark.parametrize("diagonal", [0, 1, "yes", None])
def test_laplacian_diagonal_must_be_bool(diagonal):
    with pytest.raises(TypeError, match="diagonal must be a bool"):
        laplacian(diagonal)


def test_sobel_responds_to_a_vertical_edge():
    image = np.zeros((6, 8))
    image[:, 4:] = 1.0  # dark left half, bright right half
    gx = correlate2d(image, sobel_x(), mode="valid")
    gy = correlate2d(image, sobel_y(), mode="valid")
    # Output column j looks at image columns j..j+2: only j = 2, 3 straddle the edge.
    expected = np.zeros((4, 6))
    expected[:, 2:4] = 4.0
    np.testing.assert_array_equal(gx, expected)
    np.testing.assert_array_equal(gy, np.zeros((4, 6)))
    # Convolution flips the kernel, so the same edge reads as a falling one.
    np.testing.assert_array_equal(convolve2d(image, sobel_x(), mode="valid"), -expected)


def test_sobel_y_responds_to_a_horizontal_edge():
    image = np.zeros((8, 5))
    image[4:, :] = 2.0  # bright bottom half
    expected = np.zeros((6, 3))
    expected[2:4, :] = 8.0
    np.testing.assert_array_equal(correlate2d(image, sobel_y(), mode="valid"), expected)
    np.testing.assert_array_equal(correlate2d(image, sobel_x(), mode="valid"), np.zeros((6, 3)))


@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("value", [0.0, 1.0, -2.5, 7.25])
def test_box_blur_of_a_constant_is_the_constant(size, value):
    image = np.full((9, 8), value)
    out = correlate2d(image, box_blur(size), mode="valid")
    assert out.shape == (10 - size, 9 - size)
    np.testing.assert_allclose(out, value, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("factory", [sharpen, emboss, identity, lambda: gaussian(5, 1.3)])
def test_unit_sum_kernels_keep_a_constant_image(factory):
    image = np.full((7, 7), 3.0)
    np.testing.assert_allclose(correlate2d(image, factory(), mode="valid"), 3.0, rtol=1e-14)


@pytest.mark.parametrize("factory", [sobel_x, sobel_y, laplacian])
def test_zero_sum_kernels_map_a_constant_image_to_zero(factory):
    image = np.full((7, 7), 3.0)
    np.testing.assert_array_equal(correlate2d(image, factory(), mode="valid"), 0.0)


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("op", [correlate2d, convolve2d])
@pytest.mark.parametrize("slope", [(1.0, 0.0), (0.0, -2.0), (0.5, 3.0)])
def test_laplacian_of_a_linear_ramp_is_zero(diagonal, op, slope):
    rows, cols = np.mgrid[0:8, 0:9]
    ramp = slope[0] * rows + slope[1] * cols + 4.0
    np.testing.assert_allclose(op(ramp, laplacian(diagonal), mode="valid"), 0.0, atol=1e-12)


def test_laplacian_of_a_paraboloid_is_constant():
    rows, cols = np.mgrid[0:8, 0:9]
    # The 4-neighbour Laplacian is exact for quadratics: d2/dr2 + d2/dc2 of r^2 + c^2 is 4.
    out = correlate2d(rows**2 + cols**2, laplacian(), mode="valid")
    np.testing.assert_array_equal(out, 4.0)


def test_identity_leaves_the_image_unchanged():
    image = np.random.default_rng(0).standard_normal((6, 7))
    for size in (1, 3, 5):
        np.testing.assert_array_equal(correlate2d(image, identity(size), mode="same"), image)
        np.testing.assert_array_equal(convolve2d(image, identity(size), mode="same"), image)


def test_sharpen_boosts_a_bright_spot():
    image = np.zeros((5, 5))
    image[2, 2] = 1.0
    out = correlate2d(image, sharpen(), mode="same")
    assert out[2, 2] == 5.0 and out[1, 2] == out[2, 1] == -1.0


def test_docstring_examples():
    result = doctest.testmod(cnn.filters, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
