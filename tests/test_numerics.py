"""Numerics: extreme logits, extreme input scales, denormal numbers, diverging runs.

- softmax, log_softmax and CrossEntropyLoss on logits scaled from 1e-30 to 1e30, at
  float32's maximum, and with -inf or hugely negative logits: finite, and equal to a
  float64 reference built on ``scipy.special.logsumexp`` (and to PyTorch, when installed);
- CNNClassifier.predict_proba on inputs scaled by 1e-20 and 1e20, and on constant images;
- denormal inputs and weights: the kernels flush them to zero while they run, so their
  results equal the results with the denormals replaced by zero; Linear (NumPy's
  matmul) keeps them, within denormal size of the same; the caller's FP mode is kept;
- diverging runs, where tests/test_train.py and tests/test_estimator.py leave gaps
  (Adam in ``cnn.fit``, a divergence in the very last step, early stopping).

No timing here: ``scripts/bench_ops.py`` measures what denormals cost.
"""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

import cnn
import cnn.functional as F
from cnn import CNNClassifier
from cnn.losses import CrossEntropyLoss, log_softmax, softmax
from cnn.optim import SGD, Adam
from cnn.train import NonFiniteLossError, fit

DTYPES = [np.float32, np.float64]
# A few units in the last place of numbers of order 1 (probabilities, log(C)).
TOL = {np.float32: 2e-6, np.float64: 1e-13}
SCALES = [1e-30, 1e-10, 1.0, 1e10, 1e30]
N, C = 6, 5


# --------------------------------------------------------------------------
# Softmax, log-softmax and cross entropy at every scale
# --------------------------------------------------------------------------


def _reference(logits, target):
    """float64 log-probabilities, probabilities, mean loss and its gradient (scipy)."""
    z = logits.astype(np.float64)
    # Shifted by the maximum first: logsumexp alone returns max + log(sum), and at
    # 3e38 the float64 sum rounds log(sum) away (its spacing there is 4e22).
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - logsumexp(shifted, axis=1, keepdims=True)
    p = np.exp(logp)
    rows = np.arange(len(z))
    onehot = np.zeros_like(z)
    onehot[rows, target] = 1
    return logp, p, -logp[rows, target], (p - onehot) / len(z)


def _check_against_reference(logits, target):
    dtype = logits.dtype.type
    tol = TOL[dtype]
    ref_logp, ref_p, ref_losses, ref_grad = _reference(logits, target)

    logp = log_softmax(logits, axis=1)
    p = softmax(logits, axis=1)
    assert logp.dtype == p.dtype == dtype
    assert not np.isnan(logp).any() and np.all(np.isfinite(p))
    assert_allclose(logp, ref_logp, rtol=tol, atol=tol)  # -inf where the reference has -inf
    assert_allclose(p, ref_p, rtol=0, atol=tol)
    assert_allclose(p.sum(axis=1), 1, rtol=0, atol=C * tol)

    loss_fn = CrossEntropyLoss()
    loss = loss_fn(logits, target)
    grad = loss_fn.backward()
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and grad.dtype == dtype
    assert loss == pytest.approx(ref_losses.mean(), rel=tol, abs=tol)
    assert_allclose(grad, ref_grad, rtol=0, atol=tol)
    losses = CrossEntropyLoss(reduction="none")(logits, target)
    assert_allclose(losses, ref_losses, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", SCALES)
def test_cross_entropy_at_every_scale_equals_the_stable_reference(dtype, scale):
    rng = np.random.default_rng(0)
    logits = (scale * rng.standard_normal((N, C))).astype(dtype)
    _check_against_reference(logits, rng.integers(0, C, N))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_at_float32_max(dtype):
    # Logits up to float32's largest number; their differences stay representable, so
    # every per-sample loss (up to 3.4e38) is finite in float32 and so is their mean.
    rng = np.random.default_rng(1)
    big = np.finfo(np.float32).max
    logits = (big * rng.uniform(0, 1, (N, C))).astype(dtype)
    logits[0] = big  # a row of ties at the maximum: uniform probabilities
    target = rng.integers(0, C, N)
    target[1] = np.argmin(logits[1])  # a loss of the order of float32's maximum
    _check_against_reference(logits, target)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_minus_infinite_and_hugely_negative_logits(dtype):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((N, C)).astype(dtype)
    target = np.arange(N) % C
    off_target = np.ones((N, C), bool)
    off_target[np.arange(N), target] = False
    logits[off_target & (rng.random((N, C)) < 0.5)] = -np.inf  # never the target's logit
    logits[1, :] = -np.inf
    logits[1, target[1]] = 0.0  # one finite logit: probability exactly 1, loss exactly 0
    logits[2, target[2]] = np.finfo(dtype).min / 2  # the target hugely negative: a huge loss
    logits[3] = -1e30  # every logit hugely negative: uniform
    _check_against_reference(logits, target)
    loss_fn = CrossEntropyLoss(reduction="none")
    assert loss_fn(logits, target)[1] == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["scales", "float32 max", "minus inf"])
def test_cross_entropy_extremes_match_torch(dtype, case):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    if case == "scales":
        logits = np.concatenate([(s * rng.standard_normal((2, C))) for s in SCALES])
    elif case == "float32 max":
        logits = np.finfo(np.float32).max * rng.uniform(0, 1, (N, C))
    else:
        logits = rng.standard_normal((N, C))
        logits[rng.random((N, C)) < 0.4] = -np.inf
        logits[:, 0] = rng.standard_normal(N)  # the target's logit stays finite
    logits = logits.astype(dtype)
    target = np.zeros(len(logits), np.int64) if case == "minus inf" else \
        rng.integers(0, C, len(logits))
    tol = TOL[dtype]

    z = torch.from_numpy(logits).requires_grad_()
    t = torch.from_numpy(target)
    torch.nn.functional.cross_entropy(z, t).backward()
    loss_fn = CrossEntropyLoss()
    loss_fn(logits, target)
    assert_allclose(loss_fn.backward(), z.grad.numpy(), rtol=0, atol=tol)
    expected = torch.nn.functional.cross_entropy(z, t, reduction="none").detach().numpy()
    assert_allclose(CrossEntropyLoss(reduction="none")(logits, target), expected,
                    rtol=tol, atol=tol)
    assert_allclose(log_softmax(logits, axis=1),
                    torch.log_softmax(z, dim=1).detach().numpy(), rtol=tol, atol=tol)
    assert_allclose(softmax(logits, axis=1),
                    torch.softmax(z, dim=1).detach().numpy(), rtol=0, atol=tol)


def test_mean_of_losses_near_float32_max_is_finite():
    # Each float32 loss is about 1.7e38: their float32 sum would overflow to inf
    # (as it does in PyTorch), but the mean is a finite number.
    big = np.finfo(np.float32).max
    logits = np.tile(np.array([big / 2, 0.0], np.float32), (4, 1))
    loss = CrossEntropyLoss()(logits, np.ones(4, np.int64))
    assert loss == pytest.approx(float(big / 2), rel=1e-6)


# --------------------------------------------------------------------------
# CNNClassifier on extreme input scales
# --------------------------------------------------------------------------

SMALL = dict(conv_channels=(4,), dense_units=(16,), max_iter=2, batch_size=32,
             random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200], y[:200]


@pytest.fixture(scope="module")
def fitted(digits):
    return _fit_classifier(*digits)


def _fit_classifier(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return CNNClassifier(**{**SMALL, **params}).fit(X, y)


def _assert_probabilities(clf, X):
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), len(clf.classes_))
    assert np.all(np.isfinite(proba)) and np.all(proba >= 0)
    assert_allclose(proba.sum(axis=1), 1, rtol=0, atol=1e-12)
    assert np.all(np.isfinite(clf.predict_log_proba(X)))
    assert_array_equal(clf.predict(X), clf.classes_[np.argmax(proba, axis=1)])
    return proba


@pytest.mark.parametrize("scale", [1e-20, 1e20])
@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_proba_on_inputs_scaled_far_from_the_training_data(fitted, digits, scale, dtype):
    _assert_probabilities(fitted, (digits[0] * scale).astype(dtype))


@pytest.mark.parametrize("value", [0.0, 5.0, 1e-20, 1e20])
def test_predict_proba_on_constant_images(fitted, value):
    _assert_probabilities(fitted, np.full((3, 64), value))


@pytest.mark.parametrize("scale", [1e-20, 1e20])
def test_fit_on_data_scaled_by_1e20_or_1e_minus_20_predicts_probabilities(digits, scale):
    X, y = digits
    _assert_probabilities(_fit_classifier(X * scale, y), X * scale)


def test_fit_on_constant_images_predicts_probabilities():
    X = np.full((40, 1, 4, 4), 7.0)
    clf = _fit_classifier(X, np.arange(40) % 2)
    proba = _assert_probabilities(clf, X)
    assert_array_equal(proba, proba[:1].repeat(len(X), axis=0))  # nothing tells them apart


def test_fit_is_blind_to_a_large_power_of_two_scale(digits, fitted):
    # The normalisation learns the scale; scaling by a power of two is exact in binary,
    # so the network sees the very same numbers.
    X, y = digits
    clf = _fit_classifier(X * 2.0**60, y)
    assert_array_equal(clf.predict_proba(X * 2.0**60), fitted.predict_proba(X))


def test_fit_is_blind_to_a_small_power_of_two_scale(digits, fitted):
    X, y = digits
    clf = _fit_classifier(X * 2.0**-60, y)
    assert_array_equal(clf.predict_proba(X * 2.0**-60), fitted.predict_proba(X))


def test_inputs_beyond_float32_give_probabilities_or_a_clear_error(fitted, digits):
    X = digits[0][:5] * 1e38  # finite in float64, 1.6e39 at most: beyond float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            proba = fitted.predict_proba(X)
        except ValueError as exc:
            assert "float32" in str(exc)
            return
    assert np.all(np.isfinite(proba))


# --------------------------------------------------------------------------
# Denormal numbers
# --------------------------------------------------------------------------


def _with_denormals(a, rng, share=0.5):
    """(a with a share of its entries replaced by denormals, the same with zeros there)."""
    dtype = a.dtype.type
    tiny = np.finfo(dtype).smallest_normal
    where = rng.random(a.shape) < share
    where.flat[0] = True  # at least one, however small the array
    denormals = (tiny * rng.uniform(0.01, 0.99, a.shape) * rng.choice([-1, 1], a.shape))
    with_denormals = np.where(where, denormals.astype(dtype), a).astype(dtype)
    assert np.any((with_denormals != 0) & (np.abs(with_denormals) < tiny))
    return with_denormals, np.where(where, 0, a).astype(dtype)


def _assert_callers_mode_keeps_denormals():
    """This thread still computes with denormals: the kernels gave its FP mode back."""
    for dtype in DTYPES:
        tiny = np.array([np.finfo(dtype).smallest_normal / 4], dtype)
        assert (tiny * dtype(1))[0] != 0  # no flush-to-zero of results
        assert (tiny + dtype(0))[0] == tiny[0]  # no denormals-are-zero of inputs


CONV_CASES = {  # name: (x shape, weight shape, keyword arguments)
    "3x3 pad 1": ((2, 3, 7, 7), (4, 3, 3, 3), dict(padding=1)),
    "one image": ((1, 3, 7, 7), (4, 3, 3, 3), dict(padding=1)),
    "batch of 9, stride 2": ((9, 2, 6, 6), (3, 2, 3, 3), dict(stride=2)),
    "1x1": ((2, 4, 5, 5), (3, 4, 1, 1), {}),
    "depthwise": ((2, 3, 6, 6), (3, 1, 3, 3), dict(padding=1, groups=3)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_flushes_denormal_inputs_and_weights(dtype, case):
    x_shape, w_shape, kwargs = CONV_CASES[case]
    rng = np.random.default_rng(4)
    x, x0 = _with_denormals(rng.standard_normal(x_shape).astype(dtype), rng)
    w, w0 = _with_denormals(rng.standard_normal(w_shape).astype(dtype), rng)
    b, b0 = _with_denormals(rng.standard_normal(w_shape[0]).astype(dtype), rng)
    y = F.conv2d(x, w, b, **kwargs)
    assert_array_equal(y, F.conv2d(x0, w0, b0, **kwargs))
    g, g0 = _with_denormals(rng.standard_normal(y.shape).astype(dtype), rng)
    for got, expected in zip(F.conv2d_backward(g, x, w, **kwargs),
                             F.conv2d_backward(g0, x0, w0, **kwargs)):
        assert_array_equal(got, expected)
    # all-denormal data: every product is flushed, so the output is exactly the bias
    assert_array_equal(F.conv2d(np.full_like(x, np.finfo(dtype).smallest_normal / 2), w, b0,
                                **kwargs),
                       np.broadcast_to(b0[:, None, None], y.shape[1:])[None].repeat(len(y), 0))
    _assert_callers_mode_keeps_denormals()


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_flushes_denormal_inputs_and_weights(dtype):
    rng = np.random.default_rng(5)
    x, x0 = _with_denormals(rng.standard_normal((3, 4, 5, 5)).astype(dtype), rng)
    w, w0 = _with_denormals(rng.standard_normal((4, 2, 3, 3)).astype(dtype), rng)
    b, b0 = _with_denormals(rng.standard_normal(2).astype(dtype), rng)
    kwargs = dict(stride=2, padding=1, output_padding=1)
    y = F.conv_transpose2d(x, w, b, **kwargs)
    assert_array_equal(y, F.conv_transpose2d(x0, w0, b0, **kwargs))
    g, g0 = _with_denormals(rng.standard_normal(y.shape).astype(dtype), rng)
    for got, expected in zip(F.conv_transpose2d_backward(g, x, w, **kwargs),
                             F.conv_transpose2d_backward(g0, x0, w0, **kwargs)):
        assert_array_equal(got, expected)
    _assert_callers_mode_keeps_denormals()


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool2d_flushes_denormals(dtype):
    rng = np.random.default_rng(6)
    x, x0 = _with_denormals(rng.standard_normal((2, 3, 7, 7)).astype(dtype), rng)
    kwargs = dict(kernel_size=3, stride=2, padding=1)
    y = F.avg_pool2d(x, **kwargs)
    assert_array_equal(y, F.avg_pool2d(x0, **kwargs))
    g, g0 = _with_denormals(rng.standard_normal(y.shape).astype(dtype), rng)
    assert_array_equal(F.avg_pool2d_backward(g, x.shape, **kwargs),
                       F.avg_pool2d_backward(g0, x.shape, **kwargs))
    _assert_callers_mode_keeps_denormals()


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_with_denormals_is_within_denormal_size_of_flushed(dtype):
    # Max pooling compares (a denormal compares as 0) and copies the winner, so a
    # window's winner may be a denormal itself: the output then differs from the
    # flushed one by less than the smallest normal number, and always holds the
    # value that its index points to.
    tiny = np.finfo(dtype).smallest_normal
    rng = np.random.default_rng(7)
    x, x0 = _with_denormals(rng.standard_normal((2, 3, 7, 7)).astype(dtype), rng)
    x[0, 0] = x[0, 0] * tiny  # a whole plane of denormals (and zeros)
    y, indices = F.max_pool2d(x, 2, return_indices=True)
    y0 = F.max_pool2d(x0 * (np.abs(x) >= tiny), 2)
    assert_allclose(y, y0, rtol=0, atol=tiny)
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    assert_array_equal(np.take_along_axis(planes, indices.reshape(*y.shape[:2], -1), axis=2),
                       y.reshape(*y.shape[:2], -1))
    g = rng.standard_normal(y.shape).astype(dtype)
    grad = F.max_pool2d_backward(g, indices, x.shape)
    assert grad.sum() == pytest.approx(float(g.sum()), rel=TOL[dtype], abs=TOL[dtype])
    _assert_callers_mode_keeps_denormals()


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_with_denormals_is_within_denormal_size_of_flushed(dtype):
    # Linear is NumPy's matmul (BLAS), which keeps denormals (gradual underflow)
    # instead of flushing them; the difference is below denormal size times the sums.
    tiny = np.finfo(dtype).smallest_normal
    rng = np.random.default_rng(8)
    layer = cnn.Linear(12, 5, rng=0, dtype=dtype)
    w, w0 = _with_denormals(layer.weight.data, rng)
    x, x0 = _with_denormals(rng.standard_normal((7, 12)).astype(dtype), rng)
    g = rng.standard_normal((7, 5)).astype(dtype)
    results = []
    for weight, inp in ((w, x), (w0, x0)):
        layer.weight.data[...] = weight
        layer.zero_grad()
        y = layer.forward(inp)
        results.append((y, layer.backward(g), layer.weight.grad.copy()))
    bound = tiny * (np.abs(w).sum() + np.abs(x).sum() + np.abs(g).sum() + 1)
    for got, expected in zip(*results):
        assert np.all(np.isfinite(got))
        assert_allclose(got, expected, rtol=TOL[dtype], atol=bound)
    _assert_callers_mode_keeps_denormals()


def test_kernels_restore_a_callers_flush_to_zero_mode():
    # The kernels set flush-to-zero and restore the mode they found: a caller that
    # flushes denormals itself (torch.set_flush_denormal) must find it still on.
    torch = pytest.importorskip("torch")
    tiny = np.array([1e-39], np.float32)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        assert (tiny * np.float32(1))[0] == 0  # the mode is on in this thread
        x = np.full((2, 3, 6, 6), 1.0, np.float32)
        F.conv2d(x, np.ones((4, 3, 3, 3), np.float32), padding=1)
        F.max_pool2d(x, 2)
        F.avg_pool2d(x, 2)
        F.conv_transpose2d(x, np.ones((3, 2, 3, 3), np.float32))
        assert (tiny * np.float32(1))[0] == 0  # still on
    finally:
        torch.set_flush_denormal(False)
    _assert_callers_mode_keeps_denormals()


def test_classifier_trained_on_denormal_inputs_predicts_probabilities(digits):
    X, y = digits
    X = (X * 1e-40).astype(np.float32)  # pixels 0..16 times 1e-40: all denormal
    clf = _fit_classifier(X, y)
    _assert_probabilities(clf, X)
    _assert_callers_mode_keeps_denormals()


# --------------------------------------------------------------------------
# Diverging runs (what tests/test_train.py and tests/test_estimator.py do not cover)
# --------------------------------------------------------------------------


def _bars(n=32, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = 0.3 * rng.standard_normal((n, 1, 6, 6)).astype(np.float32)
    X[y == 0, 0, 3, :] += 1
    X[y == 1, 0, :, 3] += 1
    return X, y


def _small_cnn():
    return cnn.Sequential(cnn.Conv2d(1, 4, 3, padding=1, rng=0), cnn.ReLU(), cnn.MaxPool2d(2),
                          cnn.Flatten(), cnn.Linear(36, 2, rng=0))


def test_fit_with_adam_stops_a_diverging_run_with_the_clear_error():
    X, y = _bars()
    model = _small_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow on the way up
        with pytest.raises(NonFiniteLossError, match=r"at epoch \d+ \(batch \d+ of 4\).*"
                                                     r"learning rate \(1e\+30\).*smaller"):
            fit(model, CrossEntropyLoss(), Adam(model.parameters(), lr=1e30), X, y,
                epochs=20, batch_size=8, rng=0, verbose=0)


def test_fit_stops_a_run_whose_last_step_overflows_the_weights():
    X, y = _bars()
    model = _small_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        # one batch, one step: 1e39 is beyond float32, so the step makes weights infinite
        with pytest.raises(NonFiniteLossError):
            fit(model, CrossEntropyLoss(), SGD(model.parameters(), lr=1e39), X, y,
                epochs=1, batch_size=len(X), rng=0, verbose=0)


def test_classifier_stops_a_run_whose_last_step_overflows_the_weights(digits):
    # The loss of the only batch is finite; only the weights after its step are not.
    X, y = digits
    clf = CNNClassifier(**{**SMALL, "solver": "sgd", "learning_rate_init": 1e39,
                           "max_iter": 1, "batch_size": len(X)})
    with pytest.raises(NonFiniteLossError, match="learning_rate_init"):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")


def test_classifier_with_early_stopping_stops_a_diverging_run(digits):
    X, y = digits
    clf = CNNClassifier(**{**SMALL, "solver": "sgd", "learning_rate_init": 1e10,
                           "early_stopping": True, "batch_norm": False})
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, at learning rate 1e\+10"):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")
