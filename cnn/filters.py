"""Classic hand-designed image kernels.

Before networks learned their filters, image processing designed them by hand:
kernels that blur, sharpen or find edges. Each function here returns a fresh
float64 array of shape (size, size), ready for :func:`cnn.signal.correlate2d`,
:func:`cnn.signal.convolve2d`, or as a fixed weight for a convolutional layer.

The sum of a kernel tells what it does to a flat (constant) region: a sum of 1
keeps its brightness (blurs, sharpen, identity, emboss), a sum of 0 maps it to 0
(edge and gradient detectors).

The kernels are written the way a convolutional layer applies them, that is as
cross-correlation kernels (:func:`cnn.signal.correlate2d`). For the symmetric
ones this makes no difference; for :func:`sobel_x`, :func:`sobel_y` and
:func:`emboss`, using :func:`cnn.signal.convolve2d` instead flips the kernel and
so turns the sign of the response around.
"""

import numbers

import numpy as np

__all__ = [
    "box_blur",
    "gaussian",
    "sharpen",
    "sobel_x",
    "sobel_y",
    "laplacian",
    "emboss",
    "identity",
]


def _check_size(size):
    """`size` must be a positive odd int, so the kernel has a centre."""
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
        raise TypeError(
            f"size must be an int, got {size!r} of type {type(size).__name__}"
        )
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd int, got {size}")
    return int(size)


def box_blur(size=3):
    """Box (mean) blur: every output is the average of a size x size window.

    Parameters
    ----------
    size : int, default=3
        Side of the square kernel; positive and odd.

    Returns
    -------
    kernel : ndarray of shape (size, size), dtype float64
        Every entry ``1 / size**2``; the kernel sums to 1, so flat regions
        keep their value.

    Examples
    --------
    >>> from cnn.filters import box_blur
    >>> box_blur(3) * 9
    array([[1., 1., 1.],
           [1., 1., 1.],
           [1., 1., 1.]])
    """
    size = _check_size(size)
    return np.full((size, size), 1.0 / size**2)


def gaussian(size=5, sigma=1.0):
    """Gaussian blur: a weighted average favouring the centre pixel.

    ``kernel[i, j]`` is proportional to ``exp(-(u**2 + v**2) / (2 * sigma**2))``
    with ``u, v`` the offsets of row ``i`` and column ``j`` from the centre,
    normalised so the kernel sums to 1. It is the outer product of a 1-D
    Gaussian with itself, symmetric under every flip and transpose, so
    correlation and convolution with it agree.

    Parameters
    ----------
    size : int, default=5
        Side of the square kernel; positive and odd. About ``6 * sigma``
        (rounded up to odd) captures nearly all of the bell.
    sigma : float, default=1.0
        Standard deviation in pixels; finite and > 0. Larger blurs more.

    Returns
    -------
    kernel : ndarray of shape (size, size), dtype float64
        Sums to 1 (up to rounding); largest at the centre.

    Examples
    --------
    >>> from cnn.filters import gaussian
    >>> k = gaussian(3, sigma=1.0)
    >>> k.round(4)
    array([[0.0751, 0.1238, 0.0751],
           [0.1238, 0.2042, 0.1238],
           [0.0751, 0.1238, 0.0751]])
    >>> float(k.sum().round(12))
    1.0
    """
    size = _check_size(size)
    if isinstance(sigma, (bool, np.bool_)) or not isinstance(sigma, numbers.Real):
        raise TypeError(
            f"sigma must be a real number, got {sigma!r} of type {type(sigma).__name__}"
        )
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")
    offsets = np.arange(size) - size // 2
    bell = np.exp(-(offsets.astype(np.float64) ** 2) / (2.0 * float(sigma) ** 2))
    kernel = np.outer(bell, bell)
    return kernel / kernel.sum()


def sharpen():
    """Sharpen: the pixel plus the amount it differs from its 4 neighbours.

    Equal to ``identity() - laplacian()``: it adds back the (negative)
    Laplacian, which exaggerates local contrast.

    Returns
    -------
    kernel : ndarray of shape (3, 3), dtype float64
        ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]``; sums to 1, so flat regions
        are unchanged.
    """
    return np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])


def sobel_x():
    """Sobel operator for the horizontal gradient: finds vertical edges.

    A central difference along the rows (right minus left), smoothed over
    three rows with weights 1, 2, 1. Correlated with an image
    (:func:`cnn.signal.correlate2d`) it is positive where brightness increases
    to the right, negative where it decreases, and 0 on flat regions and on
    purely horizontal edges.

    Returns
    -------
    kernel : ndarray of shape (3, 3), dtype float64
        ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]``; sums to 0.

    Examples
    --------
    >>> import numpy as np
    >>> from cnn.filters import sobel_x
    >>> from cnn.signal import correlate2d
    >>> step = np.array([[0, 0, 1, 1]] * 3)  # dark left, bright right
    >>> correlate2d(step, sobel_x(), mode="valid")
    array([[4., 4.]])
    """
    return np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_y():
    """Sobel operator for the vertical gradient: finds horizontal edges.

    The transpose of :func:`sobel_x`: bottom row minus top row, smoothed over
    three columns with weights 1, 2, 1. Correlated with an image it is
    positive where brightness increases downwards (rows grow downwards, as in
    image arrays).

    Returns
    -------
    kernel : ndarray of shape (3, 3), dtype float64
        ``[[-1, -2, -1], [0, 0, 0], [1, 2, 1]]``; sums to 0.
    """
    return sobel_x().T.copy()


def laplacian(diagonal=False):
    """Discrete Laplacian: second derivative, responds to edges and spots.

    The sum of a pixel's neighbours minus that many times the pixel. It is 0
    on flat regions and on linear ramps (constant slope), and non-zero where
    the slope changes. Symmetric, so correlation and convolution agree.

    Parameters
    ----------
    diagonal : bool, default=False
        False for the 4-neighbour kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``,
        True for the 8-neighbour one ``[[1, 1, 1], [1, -8, 1], [1, 1, 1]]``
        that also uses the diagonals.

    Returns
    -------
    kernel : ndarray of shape (3, 3), dtype float64
        Sums to 0.
    """
    if not isinstance(diagonal, (bool, np.bool_)):
        raise TypeError(
            f"diagonal must be a bool, got {diagonal!r} of type {type(diagonal).__name__}"
        )
    if diagonal:
        kernel = np.ones((3, 3))
        kernel[1, 1] = -8.0
        return kernel
    return np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def emboss():
    """Emboss: a diagonal gradient added to the pixel, for a raised-relief look.

    Correlated with an image, brightness rising towards the bottom-right
    gives a bright response and brightness rising towards the top-left a dark
    one, while flat regions keep their value.

    Returns
    -------
    kernel : ndarray of shape (3, 3), dtype float64
        ``[[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]``; sums to 1.
    """
    return np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])


def identity(size=3):
    """Identity: a single 1 at the centre, leaving the image unchanged.

    ``correlate2d(image, identity(size), mode="same")`` returns ``image``.

    Parameters
    ----------
    size : int, default=3
        Side of the square kernel; positive and odd.

    Returns
    -------
    kernel : ndarray of shape (size, size), dtype float64
        Zeros with 1 at ``[size // 2, size // 2]``; sums to 1.
    """
    size = _check_size(size)
    kernel = np.zeros((size, size))
    kernel[size // 2, size // 2] = 1.0
    return kernel
