"""CNNClassifier: a convolutional network as a scikit-learn classifier.

The estimator is the scikit-learn face of the library: it validates the data,
fits an input normalisation, builds a ``Sequential`` (a default network or the
user's), and runs ``cnn.train.fit`` one epoch at a time so that it can apply
``MLPClassifier``'s schedules, stopping rules and bookkeeping between epochs::

    from sklearn.datasets import load_digits
    from cnn.estimator import CNNClassifier

    X, y = load_digits(return_X_y=True)       # (1797, 64), pixels 0..16
    clf = CNNClassifier(random_state=0).fit(X, y)   # 64 features -> 1x8x8 images
    clf.predict(X[:5]), clf.predict_proba(X[:5])

Everything random (initialisation, dropout masks, batch order, the early
stopping split, augmentation) comes from one ``numpy.random.Generator`` made
from ``random_state``.
"""
import contextlib
import copy
import json
import math
import numbers
import os
import sys
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .functional import _int
from .layers import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear,
                     MaxPool2d, ReLU)
from .losses import CrossEntropyLoss, log_softmax, softmax
from .model import (Sequential, _leaves, build_model, read_metadata, read_npz,
                    write_npz_atomically)
from .optim import SGD, Adam
from .train import (NonFiniteLossError, _ctrl_c_stops_after_batch, _non_finite_state,
                    _train_validation_split, blas_on_one_thread, fit, predict_batches)

__all__ = ["CNNClassifier"]

# The version of what ``save`` writes and of the pickled state; bump it when
# either changes in a way an older cnn could not read.
FORMAT_VERSION = 1
_FILE_FORMAT = "cnn.CNNClassifier"
_META_KEY = "__cnn_estimator__"
_WEIGHT_PREFIX = "model."
_PICKLE_KEY = "_cnn_estimator_format_version"

# Parameters stored as tuples; a saved file gives them back as JSON lists.
_TUPLE_PARAMS = ("conv_channels", "dense_units", "image_shape")
# The fitted attributes save writes as JSON (the arrays are saved as arrays).
_FITTED = ("loss_", "loss_curve_", "best_loss_", "validation_scores_",
           "best_validation_score_", "n_iter_", "t_", "history_")


# --------------------------------------------------------------------------
# The default network
# --------------------------------------------------------------------------


def _default_network(input_shape, n_classes, *, conv_channels, kernel_size, pooling,
                     dense_units, dropout, batch_norm, rng):
    """Conv blocks (conv, batch norm, ReLU, 2x2 pooling) then dense layers (ReLU, dropout).

    Each convolution keeps the image size ("same" padding); each block halves
    it by pooling, along an axis only while that axis is longer than 1, so any
    image size works (a 1x5 row as well as a 28x28 image).
    """
    C, H, W = input_shape
    layers = []
    for channels in conv_channels:
        # a convolution followed by batch norm needs no bias: the norm's shift is one
        layers.append(Conv2d(C, channels, kernel_size, padding="same", bias=not batch_norm,
                             rng=rng))
        if batch_norm:
            layers.append(BatchNorm2d(channels))
        layers.append(ReLU())
        pool = (min(2, H), min(2, W))
        if pool != (1, 1):
            layers.append((MaxPool2d if pooling == "max" else AvgPool2d)(pool))
            H, W = H // pool[0], W // pool[1]
        C = channels
    layers.append(Flatten())
    n_in = C * H * W
    for units in dense_units:
        layers.append(Linear(n_in, units, bias=not batch_norm, rng=rng))
        if batch_norm:
            layers.append(BatchNorm1d(units))
        layers.append(ReLU())
        if dropout > 0:
            layers.append(Dropout(dropout, rng=rng))
        n_in = units
    layers.append(Linear(n_in, n_classes, rng=rng))
    return Sequential(*layers)


# --------------------------------------------------------------------------
# Parameter checks (run in fit, never in __init__ or set_params)
# --------------------------------------------------------------------------


def _check_real(value, name, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        interval = (f"{'(' if low_open else '['}{'-inf' if low is None else low}, "
                    f"{'inf' if high is None else high}{')' if high_open else ']'}")
        raise ValueError(f"{name} must be a finite number in {interval}, got {value}")
    return value


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_int_tuple(value, name, allow_empty):
    """An int or a sequence of ints >= 1, as a tuple."""
    values = (value,) if isinstance(value, numbers.Integral) else value
    if not isinstance(values, (tuple, list)) or (not values and not allow_empty):
        raise ValueError(f"{name} must be an int or a tuple of ints >= 1, got {value!r}")
    return tuple(_int(v, name, 1) for v in values)


# --------------------------------------------------------------------------
# Images: shapes, normalisation, augmentation
# --------------------------------------------------------------------------


def _resolve_image_shape(image_shape, n_features):
    """(C, H, W) for samples of n_features values, or a ValueError telling what to pass."""
    if image_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValueError(
                f"X has {n_features} features, which is not a square image (side*side): pass "
                f"image_shape=(C, H, W) or (H, W) (e.g. image_shape=(1, -1) to treat each "
                f"sample as one row of pixels)")
        return (1, side, side)
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and (s >= 1 or s == -1)
            for s in image_shape) or list(image_shape).count(-1) > 1:
        raise ValueError(f"image_shape must be None, (H, W) or (C, H, W) of ints >= 1 (one may "
                         f"be -1, inferred as in numpy.reshape), got {image_shape!r}")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if -1 in shape:
        known = -math.prod(shape)
        if n_features % known:
            raise ValueError(f"image_shape={image_shape!r} does not fit {n_features} features")
        shape = tuple(n_features // known if s == -1 else s for s in shape)
    if math.prod(shape) != n_features:
        raise ValueError(f"image_shape={image_shape!r} holds {math.prod(shape)} values, but X has "
                         f"{n_features} features per sample")
    return shape


# Values per chunk when the statistics of a data set are taken a chunk of images at a
# time: 2 MB of float64 (at least one image), so that memory does not grow with the data.
_CHUNK_VALUES = 2**18
# The training samples whose logits fit checks at the end (a diverged network gives
# NaN or infinity on all of them): one batch of predict_batches.
_CHECKED_SAMPLES = 256
# Samples normalised at a time for prediction: one batch of predict_batches.
_PREDICT_CHUNK = 256


def _channel_mean_std(images):
    """The mean and standard deviation of each channel of (N, C, H, W) images, in float64.

    The corrected two-pass algorithm (Chan, Golub and LeVeque, "Algorithms for
    computing the sample variance", 1983), a chunk of images at a time, in
    float64: the sums give the mean; then the deviations from it give the
    variance, and their sum (zero but for rounding) corrects the mean. That
    is ``np.mean`` and ``np.std`` over axes (0, 2, 3) up to rounding, without
    their float64 copy (and its square) of the whole data set, eight times the
    size of uint8 pixels. The correction makes the mean of a constant channel
    exactly its value, so that it is centred to exactly 0.

    A channel indistinguishable from a constant gets a standard deviation of 1
    (it is only centred). The test is relative, as in scikit-learn's
    ``StandardScaler`` (``_is_constant_feature``): the variance is within the
    algorithm's rounding error bound, ``n * eps * var + (n * mean * eps) ** 2``
    for the n values of a channel. (An absolute threshold took data of scale
    1e-13 for constant.)

    Returns
    -------
    mean, std : ndarray of shape (C,) of float64
    """
    N, C = images.shape[:2]
    n = N * math.prod(images.shape[2:])  # values per channel
    rows = max(1, _CHUNK_VALUES // max(1, math.prod(images.shape[1:])))
    chunks = [slice(start, start + rows) for start in range(0, N, rows)]
    axes = (0, 2, 3)
    total = np.zeros(C)
    for chunk in chunks:
        total += images[chunk].sum(axis=axes, dtype=np.float64)
    mean = total / n
    deviation_sum, squares = np.zeros(C), np.zeros(C)
    for chunk in chunks:
        deviations = images[chunk].astype(np.float64)
        deviations -= mean.reshape(1, -1, 1, 1)
        deviation_sum += deviations.sum(axis=axes)
        squares += np.square(deviations, out=deviations).sum(axis=axes)
    correction = deviation_sum / n
    mean += correction
    var = np.maximum(squares / n - correction ** 2, 0.0)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))):
        raise ValueError(f"X's values are too large for their per-channel mean and variance "
                         f"to be computed in float64 (largest magnitude "
                         f"{max(abs(float(images.max())), abs(float(images.min()))):.3g})")
    eps = np.finfo(np.float64).eps
    with np.errstate(over="ignore"):  # a bound beyond float64 (mean ~1e300) is inf: constant
        constant = var <= n * eps * var + (n * mean * eps) ** 2
    std = np.sqrt(var)
    std[constant] = 1.0
    return mean, std


def _shift_images(x, max_shift, rng):
    """Each image moved by a random whole number of pixels in [-max_shift, max_shift] per axis.

    The border that comes in repeats the edge pixels (Keras's fill_mode="nearest"),
    which for digits and most photographs is background.
    """
    N, C, H, W = x.shape
    s = max_shift
    padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)), mode="edge")
    shifts = rng.integers(-s, s + 1, size=(N, 2))
    out = np.empty_like(x)
    for dy in range(-s, s + 1):  # one slice per shift, not one per image
        for dx in range(-s, s + 1):
            chosen = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
            if len(chosen):
                out[chosen] = padded[chosen, :, s + dy:s + dy + H, s + dx:s + dx + W]
    return out


# --------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """A convolutional neural network classifier with ``MLPClassifier``'s interface.

    Samples are images. They come flat, ``(n_samples, n_features)`` (as
    ``load_digits`` and tabular pipelines hand them over), or as
    ``(n_samples, H, W)`` / ``(n_samples, C, H, W)`` arrays. The network is
    trained with mini-batches of the cross-entropy loss; inference runs in
    evaluation mode, so a sample's prediction does not depend on its batch.

    Parameters
    ----------
    conv_channels : int or tuple of int, default=(32, 64)
        Output channels of each convolution block of the default network. A
        block is a convolution (``kernel_size``, "same" padding), batch
        normalisation (with ``batch_norm``), ReLU, and a 2x2 pooling along the
        axes longer than one pixel.
    kernel_size : int, default=3
        Convolution kernel size (square).
    pooling : {"max", "avg"}, default="max"
        The pooling of each block.
    dense_units : int or tuple of int, default=(128,)
        Units of the fully connected hidden layers after the blocks (as
        ``MLPClassifier``'s ``hidden_layer_sizes``); ``()`` for none.
    dropout : float in [0, 1), default=0.25
        Dropout probability after each dense hidden layer.
    batch_norm : bool, default=True
        Batch normalisation after every convolution and dense hidden layer.
    module : callable or None, default=None
        ``module(input_shape, n_classes) -> cnn.Sequential``, a custom network
        that maps ``(N, *input_shape)`` float32 images to ``(N, n_classes)``
        logits; it replaces the architecture parameters above. Its layers are
        re-initialised from ``random_state`` (PyTorch's default initialisation),
        so that one seed drives the whole run.
    image_shape : tuple of int or None, default=None
        The shape of one sample, ``(C, H, W)`` or ``(H, W)``, for flat input;
        one entry may be -1 (inferred, as in ``numpy.reshape``). None infers a
        single-channel square image, ``(1, s, s)`` for ``s * s`` features.
        Ignored for 3-D and 4-D input, whose shape says it.
    solver : {"adam", "sgd"}, default="adam"
    max_iter : int, default=30
        The number of epochs (passes over the training data).
    batch_size : int or "auto", default="auto"
        Samples per mini-batch; "auto" is ``min(64, n_samples)``. A last batch
        of one sample is merged into the one before (``cnn.fit`` does it: batch
        normalisation cannot train on one sample), so 65 samples make one batch.
    learning_rate_init : float, default=0.003
        The initial learning rate.
    learning_rate : {"constant", "invscaling", "adaptive", "cosine"}, default="cosine"
        The schedule, applied per epoch (``MLPClassifier`` applies
        "invscaling" per sample seen instead):

        - "constant": ``learning_rate_init`` throughout;
        - "invscaling": ``learning_rate_init / epoch ** power_t`` (epoch from 1);
        - "adaptive": divided by 5 whenever ``n_iter_no_change`` epochs in a
          row fail to improve by ``tol`` (then training goes on, until the
          rate falls below 1e-6);
        - "cosine": from ``learning_rate_init`` down to 0 over ``max_iter``
          epochs (``CosineAnnealingLR``). The end of the schedule is the
          planned end of training, so it raises no ``ConvergenceWarning``.

        ``partial_fit`` uses ``learning_rate_init`` for all but "invscaling"
        (whose epochs it counts by ``n_iter_``): it has no planned end.
    power_t : float, default=0.5
        The exponent of "invscaling".
    momentum : float in [0, 1], default=0.9
        SGD momentum (solver "sgd").
    nesterovs_momentum : bool, default=True
        Nesterov momentum (solver "sgd", with ``momentum > 0``).
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's decay rates (solver "adam").
    epsilon : float, default=1e-8
        Adam's denominator term (solver "adam").
    alpha : float >= 0, default=1e-4
        L2 penalty: ``alpha * w`` is added to the gradient of every parameter
        (the optimiser's ``weight_decay``, as PyTorch's; not divided by the
        batch size as in ``MLPClassifier``).
    shuffle : bool, default=True
        Visit the samples in a new random order each epoch.
    augment : bool or int, default=False
        Random shifts of the training images by up to this many pixels per axis
        (True means 1), drawn anew for each batch; the border repeats the edge
        pixels.
    tol : float, default=1e-4
        Improvement of the training loss (or of the validation score, with
        ``early_stopping``) that counts as progress.
    n_iter_no_change : int, default=10
        Epochs without progress after which training stops (or, with
        ``learning_rate="adaptive"``, the rate drops).
    early_stopping : bool, default=False
        Judge progress on the accuracy on validation data (``validation_data``
        given to ``fit``, else a stratified ``validation_fraction`` of the
        training data) and keep the weights of the best epoch.
    validation_fraction : float in (0, 1), default=0.1
        The share of the training data held out with ``early_stopping``.
    warm_start : bool, default=False
        ``fit`` goes on from the fitted network instead of starting afresh
        (with a new optimiser, as ``MLPClassifier``).
    verbose : bool or int, default=False
        Print a line per epoch to stdout.
    random_state : int, numpy.random.Generator, RandomState or None, default=None
        Seeds the one generator behind initialisation, dropout, batch order, the
        validation split and augmentation. An int gives the same network run
        after run, bit for bit, with the same number of threads (measured:
        digits, default network, 1 thread and 2 threads). Another thread count
        sums some weight gradients in another order; the rounding differences
        grow over the epochs, so it gives a different network of the same
        quality (on the digits test split: 99.72 % with 1 thread, 99.44 % with
        2; probabilities differ by up to 0.2 on a few samples).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, as given (strings too).
    n_features_in_ : int
        Values per sample (``C * H * W``).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when X was a DataFrame with string column names.
    input_shape_ : tuple (C, H, W)
        The image shape the network takes.
    input_mean_, input_std_ : ndarray of shape (C,)
        The per-channel normalisation fitted on the first training data: the
        network sees ``(x - input_mean_) / input_std_``, so raw pixels (0..16,
        0..255) train as well as scaled ones. Computed a chunk of images at a
        time in float64, and applied a batch at a time (in float64, rounded to
        float32 once), so that no normalised copy of the data set is made. A
        channel indistinguishable from a constant (relative to its magnitude)
        has ``input_std_`` 1: it is only centred.
    model_ : cnn.Sequential
        The fitted network (in evaluation mode); it returns logits.
    loss_ : float
        The training loss of the last epoch (mean cross entropy over its
        batches, in training mode; the L2 penalty is not included).
    loss_curve_ : list of float
        The training loss of every epoch.
    best_loss_ : float or None
        The smallest training loss; None with ``early_stopping``.
    validation_scores_ : list of float or None
        Validation accuracy of every epoch, when there is validation data.
    best_validation_score_ : float or None
        The best of ``validation_scores_``.
    n_iter_ : int
        Epochs run.
    t_ : int
        Training samples seen (over all epochs).
    history_ : dict of str to list
        Per epoch: "loss", "accuracy", "val_loss" and "val_accuracy" (with
        validation data), "lr", "seconds".

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = CNNClassifier(max_iter=5, random_state=0).fit(X, y)   # doctest: +SKIP
    >>> clf.predict_proba(X[:2]).shape                                # doctest: +SKIP
    (2, 10)
    """

    def __init__(self, *, conv_channels=(32, 64), kernel_size=3, pooling="max",
                 dense_units=(128,), dropout=0.25, batch_norm=True, module=None,
                 image_shape=None, solver="adam", max_iter=30, batch_size="auto",
                 learning_rate_init=0.003, learning_rate="cosine", power_t=0.5,
                 momentum=0.9, nesterovs_momentum=True, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, alpha=1e-4, shuffle=True, augment=False, tol=1e-4,
                 n_iter_no_change=10, early_stopping=False, validation_fraction=0.1,
                 warm_start=False, verbose=False, random_state=None):
        self.conv_channels = conv_channels
        self.kernel_size = kernel_size
        self.pooling = pooling
        self.dense_units = dense_units
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.module = module
        self.image_shape = image_shape
        self.solver = solver
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.alpha = alpha
        self.shuffle = shuffle
        self.augment = augment
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # (n, H, W) images
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_label = False
        return tags

    # ------------------------------------------------------------ checks
    def _validate_params(self):
        """Check every parameter; return the few that need normalising, as a dict."""
        p = {}
        if self.module is None:
            p["conv_channels"] = _check_int_tuple(self.conv_channels, "conv_channels", True)
            p["dense_units"] = _check_int_tuple(self.dense_units, "dense_units", True)
            _int(self.kernel_size, "kernel_size", 1)
            _check_choice(self.pooling, "pooling", ("max", "avg"))
            _check_real(self.dropout, "dropout", 0.0, 1.0, high_open=True)
            if not isinstance(self.batch_norm, (bool, np.bool_)):
                raise TypeError(f"batch_norm must be True or False, got {self.batch_norm!r}")
        elif not callable(self.module):
            raise TypeError(f"module must be a callable (input_shape, n_classes) -> "
                            f"cnn.Sequential, or None; got {self.module!r}")
        _check_choice(self.solver, "solver", ("adam", "sgd"))
        _int(self.max_iter, "max_iter", 1)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _int(self.batch_size, "batch_size", 1)
        _check_real(self.learning_rate_init, "learning_rate_init", 0.0, low_open=True)
        _check_choice(self.learning_rate, "learning_rate",
                      ("constant", "invscaling", "adaptive", "cosine"))
        _check_real(self.power_t, "power_t", 0.0)
        _check_real(self.momentum, "momentum", 0.0, 1.0)
        _check_real(self.beta_1, "beta_1", 0.0, 1.0, high_open=True)
        _check_real(self.beta_2, "beta_2", 0.0, 1.0, high_open=True)
        _check_real(self.epsilon, "epsilon", 0.0, low_open=True)
        _check_real(self.alpha, "alpha", 0.0)
        _check_real(self.tol, "tol", 0.0)
        _int(self.n_iter_no_change, "n_iter_no_change", 1)
        _check_real(self.validation_fraction, "validation_fraction", 0.0, 1.0,
                    low_open=True, high_open=True)
        if isinstance(self.augment, (bool, np.bool_)):
            p["augment"] = int(self.augment)
        else:
            p["augment"] = _int(self.augment, "augment", 0)
        return p

    def _generator(self):
        """A new numpy Generator from random_state (an int gives the same one each time)."""
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            # a legacy RandomState (what check_random_state gives) seeds a Generator
            return np.random.default_rng(rs.randint(np.iinfo(np.int32).max))
        if rs is None or isinstance(rs, np.random.Generator) or (
                isinstance(rs, numbers.Integral) and not isinstance(rs, bool)):
            return np.random.default_rng(rs)
        raise ValueError(f"random_state must be None, an int, a numpy Generator or RandomState, "
                         f"got {rs!r}")

    # ------------------------------------------------------------ data
    def _validate_X(self, X, y=None, reset=True):
        """(images of shape (N, C, H, W), y as validated, the image shape (C, H, W)).

        The images keep their numeric dtype (uint8 pixels stay uint8, and a
        C-ordered array is not copied): they are normalised to float32 a batch
        at a time by ``_normalise``. With reset the image shape is found;
        without it the data must fit the fitted shape.
        """
        image_shape = None
        ndim = getattr(X, "ndim", None)
        if ndim is not None and ndim in (3, 4) and not hasattr(X, "columns"):
            X = np.asarray(X)
            image_shape = (1,) + X.shape[1:] if ndim == 3 else X.shape[1:]
            X = X.reshape(len(X), -1)
        elif ndim is not None and ndim > 4:
            raise ValueError(f"X must have shape (n_samples, n_features), (n_samples, H, W) or "
                             f"(n_samples, C, H, W), got an array of shape {X.shape}")
        kwargs = dict(dtype="numeric", ensure_min_features=1)
        if y is None:
            X = validate_data(self, X, reset=reset, **kwargs)
        else:
            X, y = validate_data(self, X, y, reset=reset, **kwargs)
        if reset:
            shape = image_shape if image_shape is not None else \
                _resolve_image_shape(self.image_shape, X.shape[1])
        else:
            shape = self.input_shape_
            if image_shape is not None and tuple(image_shape) != tuple(shape):
                raise ValueError(f"X holds images of shape {tuple(image_shape)}, but "
                                 f"{type(self).__name__} was fitted on {tuple(shape)}")
        return X.reshape((len(X),) + tuple(shape)), y, tuple(int(s) for s in shape)

    def _normalise(self, images, mean, std, name="X"):
        """(images - mean) / std per channel, computed in float64, returned in float32.

        The network computes in float32, but the inputs may be finite float64
        numbers beyond its range (1e39) that normalise into it; so the
        arithmetic is float64 and only the result is rounded, once. Called on
        a batch (or a chunk) at a time, so the float64 copy stays small.

        Raises
        ------
        ValueError
            When a normalised value is beyond float32's range: ``name`` holds
            values too far from the training data's (whose own normalised
            values are at most sqrt(n_samples * H * W) standard deviations from
            the mean).
        """
        out = images.astype(np.float64)  # a new array, also for float64 input
        out -= mean.reshape(1, -1, 1, 1)
        out /= std.reshape(1, -1, 1, 1)
        big = float(np.finfo(np.float32).max)
        if out.size and not (out.min() >= -big and out.max() <= big):
            worst = max(abs(float(out.min())), abs(float(out.max())))
            raise ValueError(
                f"{name}, normalised by the training data's per-channel mean and std, reaches "
                f"{worst:.3g}: beyond float32's range (+-{big:.3g}), in which the network "
                f"computes. {name} is far outside the scale of the training data.")
        return out.astype(np.float32)

    def _encode(self, y, classes, name="y"):
        """Class indices of the labels y, which must all be in classes."""
        index = np.searchsorted(classes, y)
        index = np.clip(index, 0, len(classes) - 1)
        unknown = classes[index] != y
        if np.any(unknown):
            raise ValueError(f"{name} holds labels that are not in classes "
                             f"{classes.tolist()}: {np.unique(y[unknown]).tolist()[:10]}")
        return index.astype(np.int64)

    def _build_model(self, input_shape, n_classes, params, rng):
        if self.module is None:
            return _default_network(
                input_shape, n_classes, conv_channels=params["conv_channels"],
                kernel_size=self.kernel_size, pooling=self.pooling,
                dense_units=params["dense_units"], dropout=float(self.dropout),
                batch_norm=bool(self.batch_norm), rng=rng)
        model = self.module(input_shape, n_classes)
        if not isinstance(model, Sequential):
            raise TypeError(f"module must return a cnn.Sequential, got {type(model).__name__}")
        for _, layer in _leaves(model):
            # random_state drives the initialisation of a custom network too
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters(rng)
        return model

    def _make_optimizer(self, model):
        if self.solver == "adam":
            return Adam(model.parameters(), lr=self.learning_rate_init,
                        betas=(self.beta_1, self.beta_2), eps=self.epsilon,
                        weight_decay=self.alpha)
        return SGD(model.parameters(), lr=self.learning_rate_init, momentum=self.momentum,
                   weight_decay=self.alpha,
                   nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)

    def _scheduled_lr(self, epoch, current, incremental):
        """The learning rate of an epoch (counted from 0) for the fixed schedules.

        ``partial_fit`` has no planned end, so there "cosine" (like "adaptive")
        is constant; "invscaling" counts all the epochs done (``n_iter_``).
        """
        if self.learning_rate == "invscaling":
            return self.learning_rate_init / (epoch + 1) ** self.power_t
        if self.learning_rate == "cosine" and not incremental:
            return self.learning_rate_init * (1 + math.cos(math.pi * epoch / self.max_iter)) / 2
        if self.learning_rate == "adaptive" and not incremental:
            return current  # changed on plateaus, below
        return self.learning_rate_init

    # ------------------------------------------------------------ fitting
    def fit(self, X, y, validation_data=None):
        """Train the network on (X, y) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, C, H, W)
            The images; flat rows are reshaped to ``image_shape``.
        y : array-like of shape (n_samples,)
            Class labels (ints, strings, ...).
        validation_data : (X_val, y_val) or None, default=None
            Data to score after every epoch (``validation_scores_``); with
            ``early_stopping`` it judges progress instead of a held-out split.

        Returns
        -------
        self : CNNClassifier

        Raises
        ------
        NonFiniteLossError
            When the training diverged (a learning rate too large): the loss or
            the weights became NaN or infinite, or, at the end, the network's
            outputs on (up to 256) training samples; the estimator is left as
            it was before the call.
        ValueError
            Bad data or parameters; also batch normalisation with batches of
            one sample (``batch_size=1``, or a single training sample).

        Notes
        -----
        Ctrl-C (SIGINT) stops training after the current batch with a
        ``RuntimeWarning``: ``n_iter_`` counts the complete epochs, and the
        network keeps the weights of the best of them (the smallest training
        loss; with ``early_stopping``, the best validation score). A Ctrl-C
        before the first epoch is complete raises ``KeyboardInterrupt`` and
        leaves the estimator as it was; a second Ctrl-C interrupts at once.
        """
        # one Ctrl-C handler for all the epochs: cnn.fit, run an epoch at a time, shares
        # its request, so that a Ctrl-C between two epochs is not lost either
        with blas_on_one_thread(), _ctrl_c_stops_after_batch() as stop, \
                self._unchanged_on_error():
            return self._fit(X, y, validation_data=validation_data, incremental=False,
                             stop=stop)

    def partial_fit(self, X, y, classes=None):
        """Train for one epoch on (X, y), going on from the current network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All the classes that will ever be seen; required on the first call.
            The first call also fits the input normalisation.

        Returns
        -------
        self : CNNClassifier
        """
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if not first and classes is not None and not np.array_equal(
                np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to "
                             f"partial_fit, {self.classes_.tolist()}")
        with blas_on_one_thread(), _ctrl_c_stops_after_batch() as stop, \
                self._unchanged_on_error():
            return self._fit(X, y, classes=classes, incremental=True, stop=stop)

    @contextlib.contextmanager
    def _unchanged_on_error(self):
        """Put back what validate_data set (n_features_in_, feature_names_in_) if fitting fails.

        Everything else ``_fit`` assigns only once training has succeeded.
        """
        names = ("n_features_in_", "feature_names_in_")
        saved = {name: vars(self)[name] for name in names if name in vars(self)}
        try:
            yield
        except BaseException:
            for name in names:
                if name in saved:
                    setattr(self, name, saved[name])
                elif name in vars(self):
                    delattr(self, name)
            raise

    def _fit(self, X, y, *, validation_data=None, classes=None, incremental, stop):
        params = self._validate_params()
        continuing = hasattr(self, "model_") and (incremental or self.warm_start)
        images, y, input_shape = self._validate_X(X, y, reset=not continuing)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)

        # ------------------------------------------------ the classes
        if continuing:
            classes_ = self.classes_
        else:
            classes_ = np.unique(np.asarray(classes) if classes is not None else y)
            if len(classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes, "
                                 f"got 1 class: {classes_.tolist()}")
        y_index = self._encode(y, classes_)

        # ------------------------------------------------ network, optimiser, generator
        if continuing:
            # train copies: an error (a diverging run) leaves the fitted estimator as it was
            rng = copy.deepcopy(self._rng) if incremental else self._generator()
            if incremental:
                model, optimizer = copy.deepcopy((self.model_, self._optimizer))
            else:  # warm start: a new optimiser, as MLPClassifier's
                model = copy.deepcopy(self.model_)
                optimizer = self._make_optimizer(model)
            mean, std = self.input_mean_, self.input_std_
            loss_curve = list(self.loss_curve_)
            n_iter, t = self.n_iter_, self.t_
            history = {k: list(v) for k, v in self.history_.items()}
            validation_scores = (None if self.validation_scores_ is None
                                 else list(self.validation_scores_))
        else:
            rng = self._generator()
            mean, std = _channel_mean_std(images)
            model = self._build_model(input_shape, len(classes_), params, rng)
            optimizer = self._make_optimizer(model)
            loss_curve, n_iter, t, history, validation_scores = [], 0, 0, {}, None
        # The images stay as given: cnn.fit normalises (and augments) each batch, so no
        # normalised float32 copy of the whole data set is made.
        x = images

        def normalise(batch):
            return self._normalise(batch, mean, std)

        def training_batch(batch, rng):  # cnn.fit passes its generator, which is ours
            batch = normalise(batch)
            return _shift_images(batch, params["augment"], rng) if params["augment"] else batch

        # ------------------------------------------------ validation data
        x_val = y_val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            x_val, y_val = self._validate_X_val(validation_data, input_shape)
            x_val = self._normalise(x_val, mean, std, "X_val")
            y_val = self._encode(y_val, classes_, "y_val")
        elif self.early_stopping and not incremental:
            train_index, val_index = _train_validation_split(y_index, self.validation_fraction,
                                                             rng)
            x, x_val = x[train_index], normalise(x[val_index])
            y_index, y_val = y_index[train_index], y_index[val_index]
        early_stopping = self.early_stopping and not incremental
        if x_val is not None and validation_scores is None:
            validation_scores = []

        # ------------------------------------------------ epochs
        batch_size = (min(64, len(x)) if self.batch_size == "auto" else
                      min(self.batch_size, len(x)))
        epochs = 1 if incremental else self.max_iter
        lr = self.learning_rate_init
        best_loss = self.best_loss_ if continuing else math.inf
        best_score = (self.best_validation_score_ if continuing else None)
        if best_loss is None:
            best_loss = math.inf
        best_state, no_improvement, converged, interrupted = None, 0, False, False
        # What Ctrl-C keeps without early stopping: the weights of this call's epoch
        # with the smallest training loss (as cnn.fit keeps the best epoch's).
        kept_state, kept_loss, kept_epoch = None, math.inf, None
        n_iter_before = n_iter
        loss_fn = CrossEntropyLoss()
        for epoch in range(epochs):
            if stop.requested:  # Ctrl-C after the last epoch's end
                interrupted = True
                break
            # the schedule counts the epochs of this fit; partial_fit's go on counting
            lr = self._scheduled_lr(n_iter if incremental else epoch, lr, incremental)
            optimizer.lr = lr
            try:
                # overflow in a diverging run is reported below, as one clear error
                with np.errstate(over="ignore", invalid="ignore"):
                    result = fit(model, loss_fn, optimizer, x, y_index, epochs=1,
                                 batch_size=batch_size, rng=rng, shuffle=bool(self.shuffle),
                                 validation_data=None if x_val is None else (x_val, y_val),
                                 verbose=0, transform=training_batch)
                diverged = _non_finite_state(model)
            except NonFiniteLossError:
                diverged = True
            except KeyboardInterrupt:  # raised by a SIGINT handler of the user's
                interrupted = True
                break
            except ValueError as exc:
                if batch_size > 1 or not _has_batch_norm(model):
                    raise
                # (cnn.fit merges a last batch of one sample into the one before, so
                # batches of one come from batch_size=1 or a single training sample)
                remedy = ("at least 2 training samples" if len(x) == 1 else
                          "a batch_size of at least 2")
                raise ValueError(
                    f"{type(self).__name__} cannot train on batches of one sample ({len(x)} "
                    f"training sample(s), batch_size={self.batch_size!r}): {exc}. Batch "
                    f"normalisation needs at least 2 samples per batch: give it {remedy}, or "
                    f"{'batch_norm=False' if self.module is None else 'a module without it'}."
                ) from exc
            if diverged:
                raise self._diverged(f"the training loss or the weights became NaN or infinite "
                                     f"in epoch {n_iter + 1}", lr)
            if not result.epoch:  # Ctrl-C within the epoch: it does not count
                interrupted = True
                break
            # the epoch is complete (a Ctrl-C during its validation pass stops after it)
            logs = {key: values[-1] for key, values in result.history.items()}
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            n_iter += 1
            t += len(x)
            loss_curve.append(logs["loss"])
            if self.verbose:
                self._print_epoch(n_iter, logs)

            # ---------------------------------------- MLPClassifier's stopping rules
            if x_val is not None:
                validation_scores.append(logs["val_accuracy"])
            if early_stopping:
                score = logs["val_accuracy"]
                no_improvement = no_improvement + 1 if best_score is not None and \
                    score < best_score + self.tol else 0
                if best_score is None or score > best_score:
                    best_score = score
                    best_state = model.state_dict()
            else:
                if x_val is not None:
                    best_score = max(validation_scores)
                no_improvement = no_improvement + 1 if logs["loss"] > best_loss - self.tol else 0
                best_loss = min(best_loss, logs["loss"])
                if logs["loss"] < kept_loss:
                    kept_state, kept_loss, kept_epoch = model.state_dict(), logs["loss"], n_iter
            if result.stop_reason == "interrupted":
                interrupted = True
                break
            if incremental or no_improvement <= self.n_iter_no_change:
                continue
            if self.learning_rate == "adaptive" and lr / 5 > 1e-6:
                lr /= 5
                no_improvement = 0
                if self.verbose:
                    print(f"Learning rate divided by 5: now {lr:g}", flush=True)
                continue
            converged = True
            if self.verbose:
                judged = "validation score" if early_stopping else "training loss"
                print(f"The {judged} did not improve by more than tol={self.tol:g} for "
                      f"{self.n_iter_no_change} epochs: stopping.", flush=True)
            break
        if n_iter == n_iter_before:
            # interrupted before a single epoch of this call: nothing to keep, and the
            # estimator is left as it was
            raise KeyboardInterrupt
        if interrupted:
            if early_stopping:
                kept = "the weights of the epoch with the best validation score"
            else:
                kept = f"the weights of epoch {kept_epoch} (the smallest training loss)"
                model.load_state_dict(kept_state)
            warnings.warn(f"Training interrupted by the user in epoch {n_iter + 1}: "
                          f"n_iter_={n_iter} complete epochs, keeping {kept}.",
                          RuntimeWarning, stacklevel=3)
        elif not incremental and not converged and self.learning_rate != "cosine":
            warnings.warn(f"Stochastic optimiser: maximum iterations ({self.max_iter}) reached "
                          f"and the optimisation has not converged yet.", ConvergenceWarning,
                          stacklevel=3)
        if early_stopping and best_state is not None:
            model.load_state_dict(best_state)  # the weights of the best validation score
        model.eval()  # inference mode, and the layers drop what they kept for backward
        # Finite weights can still be huge (a loss of 3e15 after a learning rate of 1e10)
        # and overflow float32 in the forward pass: predict_proba would be NaN. A forward
        # pass on some training samples, with the weights kept, tells.
        with np.errstate(over="ignore", invalid="ignore"):
            logits = predict_batches(model, normalise(x[:_CHECKED_SAMPLES]))
        if not np.all(np.isfinite(logits)):
            raise self._diverged(f"the network's outputs on the training data are NaN or "
                                 f"infinite (they overflow float32) after epoch {n_iter}", lr)

        # ------------------------------------------------ commit (nothing above changed self)
        self.classes_ = classes_
        self.input_shape_ = input_shape
        self.input_mean_, self.input_std_ = mean, std
        self.model_ = model
        self._optimizer = optimizer
        self._rng = rng
        self.loss_curve_ = loss_curve
        self.loss_ = loss_curve[-1]
        self.best_loss_ = None if early_stopping else best_loss
        self.validation_scores_ = validation_scores
        self.best_validation_score_ = best_score if validation_scores is not None else None
        self.n_iter_ = n_iter
        self.t_ = t
        self.history_ = history
        return self

    def _diverged(self, what, lr):
        """The NonFiniteLossError of a diverged fit: what happened, and what to do."""
        return NonFiniteLossError(
            f"{type(self).__name__} diverged: {what}, at learning rate {lr:g}. Lower "
            f"learning_rate_init (now {self.learning_rate_init:g}); the estimator is left as "
            f"it was before this call.")

    def _validate_X_val(self, validation_data, input_shape):
        """The validation images and labels, checked against the training data's shape."""
        X_val, y_val = validation_data
        y_val = column_or_1d(np.asarray(y_val), warn=True)
        if getattr(X_val, "ndim", None) in (3, 4):  # images: checked flat, like X
            X_val = np.asarray(X_val).reshape(len(X_val), -1)
        X_val = check_array(X_val, dtype="numeric", input_name="X_val")
        if X_val.shape[1] != math.prod(input_shape):
            raise ValueError(f"X_val has {X_val.shape[1]} features, but X has "
                             f"{math.prod(input_shape)}")
        if len(X_val) != len(y_val):
            raise ValueError(f"X_val and y_val must have the same number of samples, got "
                             f"{len(X_val)} and {len(y_val)}")
        return X_val.reshape((len(X_val),) + input_shape), y_val

    def _print_epoch(self, n_iter, logs):
        parts = [f"Epoch {n_iter}"]
        seconds = logs["seconds"]
        parts.append(f"{seconds:.1f}s" if seconds >= 1 else f"{1000 * seconds:.0f}ms")
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs:
                parts.append(f"{key}: {logs[key]:.4f}")
        parts.append(f"lr: {logs['lr']:.3g}")
        print(" - ".join(parts), file=sys.stdout, flush=True)

    # ------------------------------------------------------------ predicting
    def _logits(self, X):
        """The network's outputs on X in float64, X normalised a batch at a time."""
        check_is_fitted(self)
        images, _, _ = self._validate_X(X, reset=False)
        logits = np.empty((len(images), len(self.classes_)))
        # normalised a chunk at a time, so there is no normalised copy of all of X
        with blas_on_one_thread(), np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, len(images), _PREDICT_CHUNK):
                chunk = self._normalise(images[start:start + _PREDICT_CHUNK], self.input_mean_,
                                        self.input_std_)
                logits[start:start + len(chunk)] = predict_batches(self.model_, chunk)
        if not np.all(np.isfinite(logits)):
            # the fit checked the outputs on training data: X must be far from its scale
            raise ValueError("the network's outputs on X overflow float32 (NaN or infinite "
                             "logits): X is too far outside the scale of the training data")
        return logits

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples, n_classes) of float64
            Rows sum to one; columns follow ``classes_``.

        Raises
        ------
        ValueError
            When X is so far outside the scale of the training data that,
            normalised, it or the network's outputs overflow float32 (as do
            ``predict`` and ``predict_log_proba``).
        """
        return softmax(self._logits(X), axis=1)

    def predict_log_proba(self, X):
        """Logarithms of the class probabilities (computed stably from the logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples, n_classes) of float64
        """
        return log_softmax(self._logits(X), axis=1)

    def predict(self, X):
        """The most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, C, H, W)

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        logits = self._logits(X)  # first: it raises NotFittedError before classes_ is read
        return self.classes_[np.argmax(logits, axis=1)]

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        state = super().__getstate__()
        state[_PICKLE_KEY] = FORMAT_VERSION
        return state

    def __setstate__(self, state):
        version = state.pop(_PICKLE_KEY, None)
        if version != FORMAT_VERSION:
            raise ValueError(f"this pickled {type(self).__name__} has format version {version!r}; "
                             f"this cnn reads version {FORMAT_VERSION}")
        super().__setstate__(state)

    # ------------------------------------------------------------ files
    def save(self, path):
        """Write the fitted estimator to one ``.npz`` file at ``path``, without pickle.

        The file holds the parameters, ``classes_``, the fitted attributes, the
        network's architecture and its weights (in ``Sequential.save``'s
        layout, keys prefixed with "model."). It is written to a temporary file
        renamed over ``path``, so a crash never leaves a truncated file.

        A custom ``module`` (a callable) is not saved: the loaded estimator
        has ``module=None`` and predicts with the saved network; set ``module``
        again before refitting it. The optimiser's state is not saved either, so
        ``partial_fit`` after ``load`` starts a new optimiser.
        """
        check_is_fitted(self)
        classes = np.asarray(self.classes_)
        if classes.dtype == object:
            try:
                classes = classes.astype(str) if all(isinstance(c, str) for c in classes) \
                    else classes.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError("classes_ must be numbers or strings to be saved without "
                                "pickle") from exc
        params = self.get_params(deep=False)
        params["module"] = None
        random_state = params["random_state"]
        if not (random_state is None or isinstance(random_state, numbers.Integral)):
            params["random_state"] = None  # a generator's state is not part of the file
        meta = {
            "format": _FILE_FORMAT, "version": FORMAT_VERSION,
            "params": _jsonable(params),
            "custom_module": self.module is not None,
            "architecture": self.model_.get_config(),
            "input_shape_": list(self.input_shape_),
            "n_features_in_": int(self.n_features_in_),
            "fitted": _jsonable({name: getattr(self, name) for name in _FITTED}),
        }
        arrays = {f"{_WEIGHT_PREFIX}{k}": v for k, v in self.model_.state_dict().items()}
        arrays["classes_"] = classes
        arrays["input_mean_"] = self.input_mean_
        arrays["input_std_"] = self.input_std_
        if hasattr(self, "feature_names_in_"):
            arrays["feature_names_in_"] = np.asarray(self.feature_names_in_).astype(str)
        arrays[_META_KEY] = np.array(json.dumps(meta))
        write_npz_atomically(os.fspath(path), arrays)

    @classmethod
    def load(cls, path):
        """A fitted CNNClassifier read from a file written by ``save``.

        Raises
        ------
        FileNotFoundError
            No file at path.
        ValueError
            The file is not a saved CNNClassifier (truncated, empty, damaged,
            another kind of file, pickled data, entries of the wrong keys,
            shapes or dtypes, a network that does not fit the classes), or of
            a format version this cnn does not read; the message names the file.
        """
        path = os.fspath(path)
        what = "saved CNNClassifier"
        arrays = read_npz(path, what)
        meta = read_metadata(arrays, path, _META_KEY, _FILE_FORMAT, FORMAT_VERSION, what)

        def bad(why):
            return ValueError(f"{path} is not a valid {what}: {why}")

        # ---------------------------------------------- the parameters
        params = meta.get("params")
        if not isinstance(params, dict) or params.get("module") is not None:
            raise bad(f"its parameters must be a mapping with module None, got {params!r:.200}")
        params = dict(params)
        for name in _TUPLE_PARAMS:
            if isinstance(params.get(name), list):
                params[name] = tuple(params[name])
        try:
            estimator = cls(**params)
            estimator._validate_params()
            estimator._generator()
        except (TypeError, ValueError) as exc:
            raise bad(f"its parameters are not valid: {exc}") from exc

        # ---------------------------------------------- the network and its data
        known = {"classes_", "input_mean_", "input_std_", "feature_names_in_"}
        unknown = [k for k in arrays if k not in known and not k.startswith(_WEIGHT_PREFIX)]
        if unknown:
            raise bad(f"unexpected entries {unknown}")
        model = build_model(meta.get("architecture"),
                            {key[len(_WEIGHT_PREFIX):]: value for key, value in arrays.items()
                             if key.startswith(_WEIGHT_PREFIX)}, path)
        model.eval()
        input_shape = meta.get("input_shape_")
        if not (isinstance(input_shape, list) and len(input_shape) == 3 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_shape)):
            raise bad(f"input_shape_ must be 3 positive ints, got {input_shape!r:.200}")
        input_shape = tuple(input_shape)
        if meta.get("n_features_in_") != math.prod(input_shape):
            raise bad(f"n_features_in_ {meta.get('n_features_in_')!r:.50} is not the size of "
                      f"input_shape_ {input_shape}")
        missing = [k for k in ("classes_", "input_mean_", "input_std_") if k not in arrays]
        if missing:
            raise bad(f"no {', '.join(missing)}")
        classes = arrays["classes_"]
        if classes.ndim != 1 or len(classes) < 2 or classes.dtype.kind not in "biufU" or \
                not np.all(classes[1:] > classes[:-1]):
            raise bad(f"classes_ must be at least 2 sorted, distinct numbers or strings, got "
                      f"{classes.dtype} of shape {classes.shape}")
        C = input_shape[0]
        for name in ("input_mean_", "input_std_"):
            value = arrays[name]
            if value.shape != (C,) or value.dtype != np.float64 or not np.all(np.isfinite(value)):
                raise bad(f"{name} must be {C} finite float64 values, got {value.dtype} of "
                          f"shape {value.shape}")
        if not np.all(arrays["input_std_"] > 0):
            raise bad("input_std_ must be positive")
        feature_names = arrays.get("feature_names_in_")
        if feature_names is not None and (feature_names.dtype.kind != "U" or
                                          feature_names.shape != (math.prod(input_shape),)):
            raise bad(f"feature_names_in_ must be {math.prod(input_shape)} strings, got "
                      f"{feature_names.dtype} of shape {feature_names.shape}")
        try:  # the network must take the images and give one logit per class
            with blas_on_one_thread():
                out_shape = model.forward(np.zeros((1,) + input_shape, np.float32)).shape
        except (TypeError, ValueError) as exc:
            raise bad(f"its network does not take images of shape {input_shape}: {exc}") from exc
        if out_shape != (1, len(classes)):
            raise bad(f"its network gives outputs of shape {out_shape[1:]} for "
                      f"{len(classes)} classes")
        fitted = meta.get("fitted")
        if not isinstance(fitted, dict) or sorted(fitted) != sorted(_FITTED):
            raise bad(f"its fitted attributes must be {list(_FITTED)}, got {fitted!r:.200}")

        # ---------------------------------------------- all checked: the estimator
        estimator.model_ = model
        estimator.classes_ = classes
        estimator.input_mean_ = arrays["input_mean_"]
        estimator.input_std_ = arrays["input_std_"]
        if feature_names is not None:
            estimator.feature_names_in_ = feature_names.astype(object)
        estimator.input_shape_ = input_shape
        estimator.n_features_in_ = math.prod(input_shape)
        for name in _FITTED:
            setattr(estimator, name, fitted[name])
        estimator._optimizer = estimator._make_optimizer(model)
        estimator._rng = estimator._generator()
        return estimator


def _has_batch_norm(model):
    return any(isinstance(layer, (BatchNorm1d, BatchNorm2d)) for _, layer in _leaves(model))


def _jsonable(value):
    """value with tuples as lists and NumPy scalars as Python numbers, for JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
