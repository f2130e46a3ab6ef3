"""Data sets, mini-batches and augmentation: the data-loading steps of a training run.

Files
    ``read_idx`` reads one file of the IDX format of MNIST, Fashion-MNIST,
    KMNIST and EMNIST (plain or gzip-compressed) and checks it thoroughly: a
    truncated, foreign or inconsistent file is a ``ValueError`` naming the
    file. ``load_idx_dataset`` finds the four usual files of such a data set in
    a directory; ``load_digits_images`` gives scikit-learn's 8x8 digits as
    images. Nothing here downloads: Debian's ``dataset-fashion-mnist`` package,
    for one, installs Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``::

        fashion = load_idx_dataset("/usr/share/datasets/fashion-mnist")
        fashion.X_train.shape            # (60000, 1, 28, 28), uint8
        FASHION_MNIST_CLASSES[fashion.y_train[0]]   # 'Ankle boot'

Mini-batches
    ``iterate_minibatches`` walks a data set in (optionally shuffled) batches.

Augmentation
    Transforms of a batch of images, an array of shape ``(N, C, H, W)``, each
    image drawn its own random parameters, the whole batch computed at once:
    ``random_shift``, ``random_crop``, ``random_rotation``, ``random_flip``,
    ``gaussian_noise``; ``normalize`` and ``fit_normalization`` for the
    per-channel standardisation. Each has a class twin (``RandomShift``,
    ``Normalize``, ...) holding its settings, and ``Compose`` chains them::

        augment = Compose([RandomShift(2), RandomRotation(10), Normalize(mean, std)])
        for x, y in iterate_minibatches(X, y, 64, rng=rng, transform=augment):
            ...

Everything random takes ``rng``: an int, a ``numpy.random.Generator`` (used as
is, so one generator can feed a whole run) or None (fresh entropy). The same
seed gives the same result. Float32 and float64 images keep their dtype;
integer and boolean images are converted to float64.
"""
import gzip
import math
import numbers
import os
import zlib
from collections import namedtuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .functional import _float_dtype, _int, _pair

__all__ = [
    "read_idx", "write_idx", "load_idx_dataset", "IdxDataset", "FASHION_MNIST_CLASSES",
    "load_digits_images",
    "iterate_minibatches",
    "translate", "random_shift", "random_crop", "rotate", "random_rotation", "random_flip",
    "gaussian_noise", "normalize", "fit_normalization",
    "Compose", "RandomShift", "RandomCrop", "RandomRotation", "RandomFlip", "GaussianNoise",
    "Normalize",
]

# --------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------

# The third byte of the magic number: the element type, stored big-endian.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _describe_codes():
    return ", ".join(f"0x{code:02X} ({dtype.newbyteorder('=').name})"
                     for code, dtype in _IDX_DTYPES.items())


def _read_bytes(path):
    """The file's content, decompressed when it starts with gzip's magic bytes."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None


def read_idx(path, ndim=None):
    """Read an array from a file in the IDX format (MNIST and its kin).

    An IDX file is a 4-byte magic number (two zero bytes, a type code, the
    number of dimensions), one big-endian 32-bit size per dimension, then the
    elements in C order, big-endian. Files compressed with gzip are recognised
    by their first two bytes, whatever their name.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read, plain or gzip-compressed.
    ndim : int or None, default=None
        The number of dimensions the file must have (3 for images, 1 for
        labels); None accepts any.

    Returns
    -------
    ndarray
        An array of the file's shape and element type, in native byte order:
        uint8 (type code 0x08), int8 (0x09), int16 (0x0B), int32 (0x0C),
        float32 (0x0D) or float64 (0x0E).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a valid IDX file: corrupt gzip data, a magic number
        that does not start with two zero bytes, an unknown type code, zero
        dimensions or not ``ndim`` of them, or a length other than the header
        plus the elements its sizes announce (a truncated or over-long file).
        The message names the file and says what was expected and found.
    """
    path = os.fspath(path)
    if ndim is not None:
        ndim = _int(ndim, "ndim", 1)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: expected a 4-byte magic number, found a "
                         f"file of {len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file: expected the magic number to start with "
                         f"two zero bytes, found {data[:4].hex(' ')}")
    code, n_dims = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}: expected one of "
                         f"{_describe_codes()}")
    if n_dims == 0:
        raise ValueError(f"{path}: the IDX magic number announces 0 dimensions: expected at "
                         f"least 1")
    if ndim is not None and n_dims != ndim:
        raise ValueError(f"{path}: expected an IDX file of {ndim} dimension(s), found {n_dims}")
    header = 4 + 4 * n_dims
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header: {n_dims} dimension(s) need {header} "
                         f"bytes, the file has {len(data)}")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=n_dims, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "too long"
        raise ValueError(f"{path}: IDX file {problem}: shape {shape} of {dtype.newbyteorder('=')} "
                         f"needs {expected} bytes (header {header} + data), found {len(data)}")
    values = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header)
    # a writable array in native byte order (frombuffer over bytes is read-only)
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path, array, compress=None):
    """Write an array to a file in the IDX format; the inverse of ``read_idx``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    array : array-like
        Of dtype uint8, int8, int16, int32, float32 or float64, with at least
        one dimension and each size below 2**32.
    compress : bool or None, default=None
        Compress with gzip; None compresses when ``path`` ends in ``.gz``.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code.
    ValueError
        If the array has no dimensions or too many, or a size too large.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder("=")
    if dtype not in _IDX_CODES:
        raise TypeError(f"array must have an IDX dtype (uint8, int8, int16, int32, float32, "
                        f"float64), got dtype {array.dtype}")
    if not 1 <= array.ndim <= 255 or any(s >= 2**32 for s in array.shape):
        raise ValueError(f"array must have 1 to 255 dimensions, each of size < 2**32, "
                         f"got shape {array.shape}")
    header = bytes([0, 0, _IDX_CODES[dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    content = header + np.ascontiguousarray(array, dtype=dtype.newbyteorder(">")).tobytes()
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        content = gzip.compress(content, mtime=0)
    with open(path, "wb") as f:
        f.write(content)


# The labels 0..9 of Fashion-MNIST, as its authors name them (Xiao, Rasul and
# Vollgraf, 2017, and the data set's README).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

IdxDataset = namedtuple("IdxDataset", ["X_train", "y_train", "X_test", "y_test"])
IdxDataset.__doc__ = "A data set from ``load_idx_dataset``: images (n, 1, H, W), labels (n,)."


def _idx_candidates(prefix, split, kind, n_dims):
    """The usual names of one file: train-images-idx3-ubyte, train-images.idx3-ubyte, .gz."""
    for sep in ("-", "."):
        name = f"{prefix}{split}-{kind}{sep}idx{n_dims}-ubyte"
        yield name
        yield name + ".gz"


def _find_idx_file(directory, prefix, splits, kind, n_dims):
    looked_for = []
    for split in splits:
        for name in _idx_candidates(prefix, split, kind, n_dims):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
            looked_for.append(name)
    raise FileNotFoundError(f"no {' or '.join(splits)} {kind} file in {directory}: looked for "
                            f"{', '.join(looked_for)}")


def _load_split(directory, prefix, splits):
    images_path = _find_idx_file(directory, prefix, splits, "images", 3)
    labels_path = _find_idx_file(directory, prefix, splits, "labels", 1)
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                         f"{len(labels)} labels")
    return images[:, np.newaxis], labels


def load_idx_dataset(directory, prefix=""):
    """Load a data set stored as the four IDX files of MNIST from a directory.

    The files are found under their usual names, each plain or with ``.gz``:
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (``test``
    also serves for ``t10k``, and ``.idx3-ubyte`` for ``-idx3-ubyte``). This
    fits MNIST, Fashion-MNIST and KMNIST as distributed; for EMNIST pass
    ``prefix``, e.g. ``"emnist-digits-"``, and note that EMNIST stores each
    image transposed (``X.transpose(0, 1, 3, 2)`` turns them upright).

    Parameters
    ----------
    directory : str or os.PathLike
        The directory holding the files.
    prefix : str, default=""
        Put before every file name.

    Returns
    -------
    IdxDataset
        A named tuple ``(X_train, y_train, X_test, y_test)``: images as
        arrays of shape ``(n_samples, 1, H, W)`` of the files' dtype (uint8,
        0..255, for all the data sets above), labels of shape ``(n_samples,)``.

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message lists the names looked for.
    ValueError
        If a file is not a valid IDX file (see ``read_idx``), images are not
        3-dimensional or labels not 1-dimensional, or an images file and its
        labels file disagree on the number of samples (the message names both).
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no such directory: {directory}")
    X_train, y_train = _load_split(directory, prefix, ("train",))
    X_test, y_test = _load_split(directory, prefix, ("t10k", "test"))
    return IdxDataset(X_train, y_train, X_test, y_test)


def load_digits_images(dtype=np.float64):
    """Scikit-learn's 8x8 handwritten digits as a batch of one-channel images.

    The data ships with scikit-learn: nothing downloads.

    Parameters
    ----------
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        The dtype of the images.

    Returns
    -------
    X : ndarray of shape (1797, 1, 8, 8)
        The images, values 0..16 (divide by 16, or ``normalize``, before training).
    y : ndarray of shape (1797,)
        The digits 0..9, as int64.
    """
    from sklearn.datasets import load_digits  # scikit-learn is only needed here

    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    digits = load_digits()
    X = digits.images.astype(dtype)[:, np.newaxis]
    return X, digits.target.astype(np.int64)


# --------------------------------------------------------------------------
# Mini-batches
# --------------------------------------------------------------------------


def iterate_minibatches(X, y, batch_size, shuffle=True, rng=None, drop_last=False,
                        transform=None):
    """Yield a data set in mini-batches, each sample once per pass.

    Parameters
    ----------
    X : ndarray of shape (n_samples, ...)
        The samples (a memory-mapped array works: only a batch is read at a time).
    y : ndarray of shape (n_samples, ...) or None
        The targets; None yields batches of ``X`` alone.
    batch_size : int
        Samples per batch; the last batch is smaller when ``batch_size`` does
        not divide ``n_samples``.
    shuffle : bool, default=True
        Visit the samples in a random order (a new one on every call).
    rng : int, numpy.random.Generator or None, default=None
        The source of the order and of the transform's randomness.
    drop_last : bool, default=False
        Leave out a last, smaller batch.
    transform : callable or None, default=None
        Applied to each batch of ``X`` as ``transform(x, rng)`` (a transform
        of this module or a ``Compose``).

    Yields
    ------
    x : ndarray of shape (batch_size, ...)
        A batch of samples.
    y : ndarray of shape (batch_size, ...)
        Their targets (only when ``y`` is not None).

    Raises
    ------
    ValueError
        If ``X`` and ``y`` differ in length or ``batch_size`` is below 1.
    """
    batch_size = _int(batch_size, "batch_size", 1)
    n = len(X)
    if y is not None and len(y) != n:
        raise ValueError(f"X and y must have the same number of samples, got {n} and {len(y)}")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable or None, got {transform!r}")
    rng = np.random.default_rng(rng)
    order = rng.permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        # without shuffling a batch is a slice: a view, not a copy
        index = order[start:start + batch_size] if shuffle else slice(start, start + batch_size)
        x_batch = X[index]
        if transform is not None:
            x_batch = transform(x_batch, rng)
        if y is None:
            yield x_batch
        else:
            yield x_batch, y[index]


# --------------------------------------------------------------------------
# Augmentation: argument checks
# --------------------------------------------------------------------------

_FILLS = ("zeros", "edge")


def _as_images(x, name="x"):
    """x as a float (N, C, H, W) array (integers and booleans become float64)."""
    x = np.asarray(x)
    dtype = _float_dtype(x, name)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {x.shape}")
    return x.astype(dtype, copy=False)


def _real(value, name, minimum=None, maximum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type "
                        f"{type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum) or (
            maximum is not None and value > maximum):
        bounds = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be a finite number {bounds}, got {value}")
    return value


def _check_fill(fill):
    if fill not in _FILLS:
        raise ValueError(f"fill must be one of {_FILLS}, got {fill!r}")
    return fill


def _per_image(value, N, name):
    """An int, or one int per image, as an int array of shape (N,)."""
    values = np.asarray(value)
    if values.dtype.kind not in "iu" or values.ndim > 1 or (values.ndim == 1 and len(values) != N):
        raise ValueError(f"{name} must be an int or {N} ints (one per image), got {value!r}")
    return np.broadcast_to(values.astype(np.intp), (N,))


def _per_channel(value, C, name):
    """A number, or one number per channel, as a float64 array of shape (C,)."""
    values = np.asarray(value, dtype=np.float64)
    if values.ndim > 1 or (values.ndim == 1 and len(values) != C):
        raise ValueError(f"{name} must be a number or {C} numbers (one per channel), "
                         f"got shape {values.shape}")
    return np.broadcast_to(values, (C,))


# --------------------------------------------------------------------------
# Shifts and crops
# --------------------------------------------------------------------------


def _crop(padded, top, left, H_out, W_out):
    """padded[n, :, top[n]:top[n] + H_out, left[n]:left[n] + W_out] for every n, in one gather."""
    windows = sliding_window_view(padded, (H_out, W_out), axis=(2, 3))
    # windows[n, c, i, j] is the (H_out, W_out) window whose corner is (i, j)
    return windows[np.arange(len(padded)), :, top, left]


def _pad(x, pad_y, pad_x, fill):
    mode = "constant" if fill == "zeros" else "edge"
    return np.pad(x, ((0, 0), (0, 0), (pad_y, pad_y), (pad_x, pad_x)), mode=mode)


def translate(x, dy, dx, fill="zeros"):
    """Move each image by a whole number of pixels.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The images.
    dy, dx : int or array-like of N ints
        How far each image moves down (``dy`` > 0) and right (``dx`` > 0); the
        pixel at ``(i, j)`` goes to ``(i + dy, j + dx)``.
    fill : {"zeros", "edge"}, default="zeros"
        What comes in at the border: zeros, or copies of the edge pixels.

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The moved images, of the dtype of ``x`` (float64 for integer ``x``).
    """
    x = _as_images(x)
    N, C, H, W = x.shape
    dy = _per_image(dy, N, "dy")
    dx = _per_image(dx, N, "dx")
    _check_fill(fill)
    pad_y = int(np.abs(dy).max(initial=0))
    pad_x = int(np.abs(dx).max(initial=0))
    return _crop(_pad(x, pad_y, pad_x, fill), pad_y - dy, pad_x - dx, H, W)


def random_shift(x, max_shift, rng=None, fill="zeros"):
    """Move each image by a random whole number of pixels (translation augmentation).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The images.
    max_shift : int
        Each image moves by ``dy`` and ``dx`` drawn uniformly from
        ``-max_shift..max_shift`` (see ``translate``).
    rng : int, numpy.random.Generator or None, default=None
        The source of the shifts.
    fill : {"zeros", "edge"}, default="zeros"
        What comes in at the border.

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The shifted images.
    """
    x = _as_images(x)
    max_shift = _int(max_shift, "max_shift", 0)
    rng = np.random.default_rng(rng)
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=(2, len(x)))
    return translate(x, dy, dx, fill)


def random_crop(x, padding, rng=None, size=None, fill="zeros"):
    """Pad each image and cut a window of it at a random place (torchvision's RandomCrop).

    With ``size`` the size of the images (the default) this is a random shift
    by up to ``padding`` pixels: the usual CIFAR and MNIST recipe.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The images.
    padding : int or (int, int)
        Pixels added on each side: one for all sides, or (top and bottom, left
        and right).
    rng : int, numpy.random.Generator or None, default=None
        The source of the window positions.
    size : int, (int, int) or None, default=None
        The size ``(H_out, W_out)`` of the windows, at most the padded size;
        None keeps ``(H, W)``.
    fill : {"zeros", "edge"}, default="zeros"
        What the padding holds.

    Returns
    -------
    ndarray of shape (N, C, H_out, W_out)
        The crops.
    """
    x = _as_images(x)
    N, C, H, W = x.shape
    pad_y, pad_x = _pair(padding, "padding", 0)
    H_out, W_out = (H, W) if size is None else _pair(size, "size", 1)
    if H_out > H + 2 * pad_y or W_out > W + 2 * pad_x:
        raise ValueError(f"size {(H_out, W_out)} is larger than the padded images "
                         f"{(H + 2 * pad_y, W + 2 * pad_x)}")
    _check_fill(fill)
    rng = np.random.default_rng(rng)
    top = rng.integers(0, H + 2 * pad_y - H_out + 1, size=N)
    left = rng.integers(0, W + 2 * pad_x - W_out + 1, size=N)
    return _crop(_pad(x, pad_y, pad_x, fill), top, left, H_out, W_out)


# --------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------


def rotate(x, degrees):
    """Rotate each image about its centre, bilinearly resampled, zeros coming in.

    The result equals ``scipy.ndimage.rotate(image, degrees, reshape=False,
    order=1, mode="grid-constant")`` for each image, computed for the whole
    batch at once.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The images.
    degrees : float or array-like of N floats
        The angle of each image, counter-clockwise as displayed (row 0 at the top).

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The rotated images, of the dtype of ``x`` (float64 for integer ``x``).
    """
    x = _as_images(x)
    N, C, H, W = x.shape
    angles = np.asarray(degrees, dtype=np.float64)
    if angles.ndim > 1 or (angles.ndim == 1 and len(angles) != N) or not np.isfinite(angles).all():
        raise ValueError(f"degrees must be a finite number or {N} of them (one per image), "
                         f"got {degrees!r}")
    theta = np.deg2rad(np.broadcast_to(angles, (N,)))[:, np.newaxis, np.newaxis]
    cos, sin = np.cos(theta), np.sin(theta)
    # each output pixel samples the input where the inverse rotation takes it
    cy, cx = (H - 1) / 2, (W - 1) / 2
    yc = np.arange(H, dtype=np.float64)[:, np.newaxis] - cy
    xc = np.arange(W, dtype=np.float64)[np.newaxis, :] - cx
    src_y = (cy + cos * yc + sin * xc).reshape(N, 1, H * W)
    src_x = (cx - sin * yc + cos * xc).reshape(N, 1, H * W)
    y0, x0 = np.floor(src_y), np.floor(src_x)
    wy, wx = src_y - y0, src_x - x0
    y0, x0 = y0.astype(np.intp), x0.astype(np.intp)

    flat = x.reshape(N, C, H * W)
    out = np.zeros((N, C, H * W), dtype=x.dtype)
    for dy, weight_y in ((0, 1 - wy), (1, wy)):  # the four neighbours of each sample point
        for dx, weight_x in ((0, 1 - wx), (1, wx)):
            row, col = y0 + dy, x0 + dx
            inside = (row >= 0) & (row < H) & (col >= 0) & (col < W)
            index = np.where(inside, row * W + col, 0)
            weight = np.where(inside, weight_y * weight_x, 0.0).astype(x.dtype)
            out += weight * np.take_along_axis(flat, index, axis=2)
    return out.reshape(N, C, H, W)


def random_rotation(x, max_degrees, rng=None):
    """Rotate each image by a random angle about its centre (see ``rotate``).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The images.
    max_degrees : float
        Angles are drawn uniformly from ``[-max_degrees, max_degrees]``, at
        most 180; for digits keep it small (10-15): a 6 turned far is a 9.
    rng : int, numpy.random.Generator or None, default=None
        The source of the angles.

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The rotated images.
    """
    x = _as_images(x)
    max_degrees = _real(max_degrees, "max_degrees", 0, 180)
    rng = np.random.default_rng(rng)
    return rotate(x, rng.uniform(-max_degrees, max_degrees, size=len(x)))


# --------------------------------------------------------------------------
# Flips, noise, normalisation
# --------------------------------------------------------------------------


def random_flip(x, p=0.5, rng=None):
    """Mirror each image left to right with probability ``p``.

    Not for digits, letters or other data whose mirror image is another class
    (or none): it suits photographs and most of Fashion-MNIST's clothes.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The images.
    p : float, default=0.5
        The probability that an image is mirrored, in [0, 1].
    rng : int, numpy.random.Generator or None, default=None
        The source of the choices.

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The images, some mirrored (a new array; ``x`` is not changed).
    """
    x = _as_images(x)
    p = _real(p, "p", 0, 1)
    rng = np.random.default_rng(rng)
    flipped = rng.random(len(x)) < p
    return np.where(flipped[:, np.newaxis, np.newaxis, np.newaxis], x[..., ::-1], x)


def gaussian_noise(x, std, rng=None):
    """Add independent Gaussian noise of mean 0 to every pixel.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The images.
    std : float
        The standard deviation of the noise, >= 0, in the units of ``x``.
    rng : int, numpy.random.Generator or None, default=None
        The source of the noise.

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The noisy images (unclipped), of the dtype of ``x``.
    """
    x = _as_images(x)
    std = _real(std, "std", 0)
    rng = np.random.default_rng(rng)
    return x + std * rng.standard_normal(x.shape, dtype=x.dtype)


def fit_normalization(X, batch_size=4096):
    """The per-channel mean and standard deviation of a set of images.

    Computed in float64, a chunk of samples at a time (so a uint8 data set is
    never converted whole), in two passes for accuracy.

    Parameters
    ----------
    X : ndarray of shape (n_samples, C, H, W)
        The images; any real dtype.
    batch_size : int, default=4096
        Samples per chunk.

    Returns
    -------
    mean : ndarray of shape (C,)
        The mean of each channel, float64.
    std : ndarray of shape (C,)
        The (population) standard deviation of each channel, float64; a
        constant channel gets 1, so that ``normalize`` only centres it.
    """
    X = np.asarray(X)
    _float_dtype(X, "X")
    if X.ndim != 4 or len(X) == 0 or X.shape[2] * X.shape[3] == 0:
        raise ValueError(f"X must have shape (n_samples, C, H, W) with at least one pixel "
                         f"per channel, got shape {X.shape}")
    batch_size = _int(batch_size, "batch_size", 1)
    N, C, H, W = X.shape
    count = N * H * W
    chunks = [X[start:start + batch_size] for start in range(0, N, batch_size)]
    mean = sum(c.sum(axis=(0, 2, 3), dtype=np.float64) for c in chunks) / count
    centred = (c.astype(np.float64) - mean[:, np.newaxis, np.newaxis] for c in chunks)
    var = sum(np.square(c).sum(axis=(0, 2, 3)) for c in centred) / count
    std = np.sqrt(var)
    std[std == 0] = 1.0
    return mean, std


def normalize(x, mean, std):
    """Standardise each channel: ``(x - mean[c]) / std[c]``.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        The images (uint8 images become float64).
    mean : float or array-like of shape (C,)
        The value subtracted from each channel.
    std : float or array-like of shape (C,)
        The divisor of each channel, > 0.

    Returns
    -------
    ndarray of shape (N, C, H, W)
        The standardised images, of the dtype of ``x``.
    """
    x = _as_images(x)
    C = x.shape[1]
    mean = _per_channel(mean, C, "mean")
    std = _per_channel(std, C, "std")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"mean must be finite and std finite and > 0, got mean={mean}, "
                         f"std={std}")
    shift = mean.astype(x.dtype)[:, np.newaxis, np.newaxis]
    scale = (1 / std).astype(x.dtype)[:, np.newaxis, np.newaxis]
    return (x - shift) * scale


# --------------------------------------------------------------------------
# Transforms as objects, and their chaining
# --------------------------------------------------------------------------


class Compose:
    """Apply transforms in turn: ``Compose([t1, t2])(x, rng)`` is ``t2(t1(x, rng), rng)``.

    Parameters
    ----------
    transforms : sequence of callables
        Each called as ``t(x, rng)``: the classes below, or any function of
        that form. All draw from the one generator, so a seed fixes the lot.
    """

    def __init__(self, transforms):
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"every transform must be callable, got {t!r}")
        self.transforms = transforms

    def __call__(self, x, rng=None):
        rng = np.random.default_rng(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self):
        inner = "".join(f"    {t!r},\n" for t in self.transforms)
        return f"Compose([\n{inner}])"


class _Transform:
    """A transform function with its settings bound; checked once, here."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class RandomShift(_Transform):
    """``random_shift(x, max_shift, rng, fill)`` as a transform."""

    def __init__(self, max_shift, fill="zeros"):
        self.max_shift = _int(max_shift, "max_shift", 0)
        self.fill = _check_fill(fill)

    def __call__(self, x, rng=None):
        return random_shift(x, self.max_shift, rng, self.fill)


class RandomCrop(_Transform):
    """``random_crop(x, padding, rng, size, fill)`` as a transform."""

    def __init__(self, padding, size=None, fill="zeros"):
        self.padding = _pair(padding, "padding", 0)
        self.size = None if size is None else _pair(size, "size", 1)
        self.fill = _check_fill(fill)

    def __call__(self, x, rng=None):
        return random_crop(x, self.padding, rng, self.size, self.fill)


class RandomRotation(_Transform):
    """``random_rotation(x, max_degrees, rng)`` as a transform."""

    def __init__(self, max_degrees):
        self.max_degrees = _real(max_degrees, "max_degrees", 0, 180)

    def __call__(self, x, rng=None):
        return random_rotation(x, self.max_degrees, rng)


class RandomFlip(_Transform):
    """``random_flip(x, p, rng)`` as a transform (not for digits: see ``random_flip``)."""

    def __init__(self, p=0.5):
        self.p = _real(p, "p", 0, 1)

    def __call__(self, x, rng=None):
        return random_flip(x, self.p, rng)


class GaussianNoise(_Transform):
    """``gaussian_noise(x, std, rng)`` as a transform."""

    def __init__(self, std):
        self.std = _real(std, "std", 0)

    def __call__(self, x, rng=None):
        return gaussian_noise(x, self.std, rng)


class Normalize(_Transform):
    """``normalize(x, mean, std)`` as a transform (``rng`` is ignored)."""

    def __init__(self, mean, std):
        self.mean = mean
        self.std = std
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if mean.ndim > 1 or std.ndim > 1 or not (std > 0).all():
            raise ValueError(f"mean and std must be numbers or 1-D (one per channel), std > 0, "
                             f"got mean={self.mean!r}, std={self.std!r}")

    def __call__(self, x, rng=None):
        return normalize(x, self.mean, self.std)
