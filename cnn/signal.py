"""Cross-correlation and convolution of one 2-D image with one 2-D kernel.

These are the textbook operations that a convolutional layer generalises, with the
same names, modes and results as ``scipy.signal.correlate2d`` and
``scipy.signal.convolve2d`` (``boundary="fill"``, ``fillvalue=0``).

Both are built on :func:`cnn.functional.conv2d`, which - like every deep-learning
library's "convolution" - computes a **cross-correlation**: the kernel slides over
the image as it is and each output is the sum of the products of overlapping values.
A true (mathematical) **convolution** is the same thing with the kernel first
flipped in both axes (rotated by 180 degrees)::

    convolve2d(image, kernel) == correlate2d(image, kernel[::-1, ::-1])

For a symmetric kernel (box blur, Gaussian, Laplacian) the two agree; for an
asymmetric one (Sobel, emboss, a learned filter) they differ by that flip.
"""

import numpy as np

from .functional import conv2d

__all__ = ["correlate2d", "convolve2d"]

_MODES = ("full", "valid", "same")


def _as_2d_float(a, name):
    """Return `a` as a non-empty 2-D float32 or float64 array.

    float32 and float64 are kept; bool and integer arrays become float64 and
    float16 becomes float32. Anything else (complex, object, str, long double)
    is a TypeError.
    """
    a = np.asarray(a)
    kind, itemsize = a.dtype.kind, a.dtype.itemsize
    if kind in "biu":
        dtype = np.float64
    elif kind == "f" and itemsize <= 4:
        dtype = np.float32
    elif kind == "f" and itemsize == 8:
        dtype = np.float64
    else:
        raise TypeError(
            f"{name} must hold real numbers (bool, int, float32 or float64), "
            f"got dtype {a.dtype}"
        )
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    return a.astype(dtype, copy=False)


def _check_mode(mode):
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, one of {_MODES}, got {mode!r}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")


def _validate(image, kernel, mode):
    """Checked ``(image, kernel)`` converted to one common float dtype."""
    _check_mode(mode)
    image = _as_2d_float(image, "image")
    kernel = _as_2d_float(kernel, "kernel")
    # float32 only when both are float32, as NumPy and scipy promote.
    dtype = np.result_type(image.dtype, kernel.dtype)
    image = image.astype(dtype, copy=False)
    kernel = kernel.astype(dtype, copy=False)
    if mode == "valid":
        image_fits = all(k >= n for n, k in zip(image.shape, kernel.shape))
        kernel_fits = all(n >= k for n, k in zip(image.shape, kernel.shape))
        if not (image_fits or kernel_fits):
            raise ValueError(
                "mode='valid' needs one input at least as large as the other in "
                f"every dimension, got image {image.shape} and kernel {kernel.shape}"
            )
    return image, kernel


# conv2d unfolds its input into a (kH * kW, H_out * W_out) scratch matrix (im2col),
# kH * kW times the size of the output: a 15 x 15 blur of a 1000 x 1000 float64 photo
# would need 1.8 GB at once. Working one band of output rows at a time caps the scratch
# near this many values (64 MiB in float64).
_SCRATCH_VALUES = 2**23


def _full_correlation(image, kernel):
    """The 'full' cross-correlation, of shape (H + kH - 1, W + kW - 1).

    It is conv2d on the image padded with kH - 1 rows and kW - 1 columns of
    zeros on each side, computed a band of output rows at a time.
    """
    if kernel.size > image.size:
        # The same sums of products, with the roles swapped and the result read
        # backwards; conv2d's scratch grows with the kernel, so hand it the smaller.
        return _full_correlation(kernel, image)[::-1, ::-1]
    kH, kW = kernel.shape
    padded = np.pad(image, ((kH - 1, kH - 1), (kW - 1, kW - 1)))
    H_out, W_out = padded.shape[0] - kH + 1, padded.shape[1] - kW + 1
    out = np.empty((H_out, W_out), dtype=image.dtype)
    band = max(1, _SCRATCH_VALUES // (kH * kW * W_out))
    for top in range(0, H_out, band):
        bottom = min(top + band, H_out)
        rows = padded[None, None, top : bottom + kH - 1]
        out[top:bottom] = conv2d(rows, kernel[None, None])[0, 0]
    return out


def _crop(full, image_shape, kernel_shape, mode, same_start):
    """Cut the 'valid' or 'same' part out of a 'full' output.

    'valid' keeps the positions where one input lies wholly inside the other
    (which one is the larger does not matter); 'same' keeps ``image_shape``
    values starting at ``same_start(k)`` along each axis.
    """
    if mode == "full":
        return np.ascontiguousarray(full)
    index = []
    for n, k in zip(image_shape, kernel_shape):
        if mode == "valid":
            start, length = min(n, k) - 1, abs(n - k) + 1
        else:
            start, length = same_start(k), n
        index.append(slice(start, start + length))
    return full[tuple(index)].copy()


def correlate2d(image, kernel, mode="full"):
    """Cross-correlate a 2-D image with a 2-D kernel.

    The kernel slides over the zero-padded image *without* being flipped and
    each output value is the sum of the element-wise products where they
    overlap. This is what a convolutional layer (and :func:`cnn.functional.conv2d`)
    computes. Results agree with ``scipy.signal.correlate2d(image, kernel, mode)``
    with its default ``boundary="fill", fillvalue=0``.

    Parameters
    ----------
    image : array_like of shape (H, W)
        Real-valued, non-empty input.
    kernel : array_like of shape (kH, kW)
        Real-valued, non-empty filter. It may be larger than `image`.
    mode : {"full", "valid", "same"}, default="full"
        - ``"full"``: every position where the two overlap at all,
          shape ``(H + kH - 1, W + kW - 1)``.
        - ``"valid"``: only positions where one input lies wholly inside the
          other, shape ``(|H - kH| + 1, |W - kW| + 1)``. One input must be at
          least as large as the other in every dimension. When the kernel is
          the larger one the result is that of the full correlation restricted
          to the positions where the image fits inside the kernel - the same
          as scipy, which swaps the inputs and flips the result.
        - ``"same"``: shape ``(H, W)``, the centre of ``"full"``: ``out[i, j]``
          is the sum in which ``kernel[(kH - 1) // 2, (kW - 1) // 2]``
          multiplies ``image[i, j]``. For an even kernel size that anchor is
          the element just above / left of the centre, as in scipy and in
          ``padding="same"`` of torch and :func:`cnn.functional.conv2d`.

    Returns
    -------
    out : ndarray of shape given by `mode`
        float32 if both inputs are float32, float64 otherwise (integer and
        bool inputs are computed in float64).

    Raises
    ------
    TypeError
        If an input is complex, object or string typed, or `mode` is not a str.
    ValueError
        If an input is not 2-D or is empty, `mode` is unknown, or in
        ``"valid"`` mode neither input is at least as large as the other.

    See Also
    --------
    convolve2d : the same with the kernel flipped in both axes.

    Notes
    -----
    With ``kH = 2 * a + 1`` and ``kW = 2 * b + 1`` odd, mode ``"same"`` is::

        out[i, j] = sum over u in [-a, a], v in [-b, b] of
                    kernel[a + u, b + v] * image[i + u, j + v]

    with ``image`` read as 0 outside its bounds.

    Examples
    --------
    The edge detector ``[1, -1]`` gives ``image[i, j] - image[i, j + 1]``,
    the result the course notes call "a convolution":

    >>> import numpy as np
    >>> from cnn.signal import correlate2d
    >>> image = np.array([[0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]])
    >>> correlate2d(image, [[1, -1]], mode="valid")
    array([[-1., -1.,  0.],
           [ 0., -1., -1.],
           [ 0.,  0., -1.]])

    Correlating with a single 1 (an impulse) gives the kernel flipped:

    >>> correlate2d([[1]], [[1, 2], [3, 4]])
    array([[4., 3.],
           [2., 1.]])
    """
    image, kernel = _validate(image, kernel, mode)
    full = _full_correlation(image, kernel)
    return _crop(full, image.shape, kernel.shape, mode, same_start=lambda k: k // 2)


def convolve2d(image, kernel, mode="full"):
    """Convolve a 2-D image with a 2-D kernel.

    Convolution is cross-correlation with the kernel flipped in both axes
    (rotated by 180 degrees)::

        convolve2d(image, kernel, "full") == correlate2d(image, kernel[::-1, ::-1], "full")

    and that is how it is computed here, with :func:`cnn.functional.conv2d`.
    Unlike correlation it is commutative (``convolve2d(a, b, "full") ==
    convolve2d(b, a, "full")``) and convolving an impulse reproduces the kernel
    itself. Results agree with ``scipy.signal.convolve2d(image, kernel, mode)``
    with its default ``boundary="fill", fillvalue=0``.

    Parameters
    ----------
    image : array_like of shape (H, W)
        Real-valued, non-empty input.
    kernel : array_like of shape (kH, kW)
        Real-valued, non-empty filter. It may be larger than `image`.
    mode : {"full", "valid", "same"}, default="full"
        - ``"full"``: shape ``(H + kH - 1, W + kW - 1)``.
        - ``"valid"``: shape ``(|H - kH| + 1, |W - kW| + 1)``; one input must
          be at least as large as the other in every dimension. Convolution
          is commutative, so a kernel larger than the image simply swaps roles
          (scipy does the same).
        - ``"same"``: shape ``(H, W)``, the centre of ``"full"``: ``out[i, j]``
          is the sum in which ``kernel[(kH - 1) // 2, (kW - 1) // 2]``
          multiplies ``image[i, j]`` - the same anchor element as
          :func:`correlate2d`. So for an even kernel size
          ``convolve2d(a, k, "same")`` and ``correlate2d(a, k[::-1, ::-1], "same")``
          are one sample apart (their "full" outputs are equal, but the anchor
          is taken in the kernel as given), exactly as in scipy.

    Returns
    -------
    out : ndarray of shape given by `mode`
        float32 if both inputs are float32, float64 otherwise (integer and
        bool inputs are computed in float64).

    Raises
    ------
    TypeError
        If an input is complex, object or string typed, or `mode` is not a str.
    ValueError
        If an input is not 2-D or is empty, `mode` is unknown, or in
        ``"valid"`` mode neither input is at least as large as the other.

    See Also
    --------
    correlate2d : the same without flipping the kernel.

    Notes
    -----
    With ``kH = 2 * a + 1`` and ``kW = 2 * b + 1`` odd, mode ``"same"`` is::

        out[i, j] = sum over u in [-a, a], v in [-b, b] of
                    kernel[a + u, b + v] * image[i - u, j - v]

    (note the minus signs, where :func:`correlate2d` has plus signs), with
    ``image`` read as 0 outside its bounds.

    Examples
    --------
    The course notes' edge detector, now really convolved: flipping
    ``[1, -1]`` to ``[-1, 1]`` turns every sign of the correlation around.

    >>> import numpy as np
    >>> from cnn.signal import convolve2d
    >>> image = np.array([[0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]])
    >>> convolve2d(image, [[1, -1]], mode="valid")
    array([[1., 1., 0.],
           [0., 1., 1.],
           [0., 0., 1.]])

    Convolving an impulse gives the kernel back:

    >>> convolve2d([[1]], [[1, 2], [3, 4]])
    array([[1., 2.],
           [3., 4.]])
    """
    image, kernel = _validate(image, kernel, mode)
    full = _full_correlation(image, kernel[::-1, ::-1])
    return _crop(full, image.shape, kernel.shape, mode, same_start=lambda k: (k - 1) // 2)
