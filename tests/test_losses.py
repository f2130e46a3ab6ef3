"""CrossEntropyLoss, MSELoss and softmax: PyTorch parity, finite differences, edge cases."""
import numpy as np
import pytest

from cnn.losses import CrossEntropyLoss, MSELoss, log_softmax, softmax
from gradcheck import numerical_grad

REDUCTIONS = ["mean", "sum", "none"]
# weights and label smoothing in every combination (torch's smoothed weighted mean is subtle)
CE_SETTINGS = [{}, {"weight": True}, {"label_smoothing": 0.2},
               {"weight": True, "label_smoothing": 0.2}, {"label_smoothing": 1.0}]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def _problem(rng, N=9, C=5, dtype=np.float64, scale=3.0):
    pred = (scale * rng.standard_normal((N, C))).astype(dtype)
    target = rng.integers(0, C, N)
    weight = rng.uniform(0.2, 2.0, C)
    return pred, target, weight


def _ce(settings, weight, reduction="mean"):
    kw = dict(settings)
    if kw.pop("weight", False):
        kw["weight"] = weight
    return CrossEntropyLoss(reduction=reduction, **kw)


# --------------------------------------------------------------------------
# softmax helpers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_sums_to_one_and_matches_log_softmax(dtype):
    x = np.random.default_rng(0).standard_normal((4, 7)).astype(dtype)
    p = softmax(x)
    assert p.dtype == dtype
    np.testing.assert_allclose(p.sum(axis=1), 1, **TOL[dtype])
    np.testing.assert_allclose(np.log(p), log_softmax(x), **TOL[dtype])
    np.testing.assert_allclose(softmax(x.T, axis=0), p.T, **TOL[dtype])


def test_softmax_extreme_values_stay_finite():
    x = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [1e30, 1e30, -1e30]])
    p, logp = softmax(x), log_softmax(x)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(logp))
    np.testing.assert_allclose(p[0], [1, 0, 0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    np.testing.assert_allclose(p[2], [0.5, 0.5, 0])


def test_softmax_converts_integers():
    assert softmax(np.array([[1, 2]])).dtype == np.float64


# --------------------------------------------------------------------------
# CrossEntropyLoss
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("settings", CE_SETTINGS)
def test_cross_entropy_matches_torch(settings, reduction, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    pred, target, weight = _problem(rng, dtype=dtype)
    loss_fn = _ce(settings, weight, reduction)
    loss = loss_fn(pred, target)
    grad_output = rng.standard_normal(len(target)).astype(dtype)
    grad = loss_fn.backward(grad_output if reduction == "none" else None)

    kw = dict(settings)
    if kw.pop("weight", False):
        kw["weight"] = torch.tensor(weight.astype(dtype))
    pred_t = torch.tensor(pred, requires_grad=True)
    loss_t = torch.nn.CrossEntropyLoss(reduction=reduction, **kw)(pred_t, torch.tensor(target))
    (loss_t * torch.tensor(grad_output) if reduction == "none" else loss_t).sum().backward()

    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype
    else:
        assert type(loss) is float
    np.testing.assert_allclose(loss, loss_t.detach().numpy(), **TOL[dtype])
    assert grad.dtype == dtype and grad.shape == pred.shape
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("settings", [{}, {"weight": True}, {"label_smoothing": 0.3},
                                      {"weight": True, "label_smoothing": 0.3}])
def test_cross_entropy_soft_labels_match_torch(settings):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    pred, _, weight = _problem(rng)
    probs = softmax(rng.standard_normal(pred.shape))
    loss_fn = _ce(settings, weight)
    loss, grad = loss_fn(pred, probs), loss_fn.backward()
    kw = dict(settings)
    if kw.pop("weight", False):
        kw["weight"] = torch.tensor(weight)
    pred_t = torch.tensor(pred, requires_grad=True)
    loss_t = torch.nn.CrossEntropyLoss(**kw)(pred_t, torch.tensor(probs))
    loss_t.backward()
    np.testing.assert_allclose(loss, loss_t.item(), **TOL[np.float64])
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), **TOL[np.float64])


@pytest.mark.parametrize("settings", CE_SETTINGS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradient_matches_finite_differences(settings, reduction):
    rng = np.random.default_rng(3)
    pred, target, weight = _problem(rng, N=4, C=3)
    loss_fn = _ce(settings, weight, reduction)
    loss_fn(pred, target)
    grad = loss_fn.backward()
    numeric = numerical_grad(lambda: loss_fn(pred, target), pred)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


def test_cross_entropy_plain_case_is_textbook():
    pred = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    target = np.array([0, 1, 0])
    loss_fn = CrossEntropyLoss()
    expected = -np.mean(np.log(softmax(pred))[np.arange(3), target])
    assert loss_fn(pred, target) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(loss_fn.backward(), (softmax(pred) - np.eye(2)[target]) / 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_extreme_logits_stay_finite(dtype):
    pred = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3], [-1e4, -1e4, -1e4]], dtype=dtype)
    target = np.array([1, 1, 2])
    for settings in CE_SETTINGS:
        loss_fn = _ce(settings, np.array([1.0, 2.0, 0.5]))
        loss = loss_fn(pred, target)
        grad = loss_fn.backward()
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # sample 0 is wrong by 2e4, sample 1 right, sample 2 uniform
    assert CrossEntropyLoss()(pred, target) == pytest.approx((2e4 + 0 + np.log(3)) / 3,
                                                             rel=1e-6)


def test_cross_entropy_minus_infinite_logit_of_another_class_is_fine():
    pred = np.array([[0.0, -np.inf, 1.0]])
    loss_fn = CrossEntropyLoss()
    loss = loss_fn(pred, np.array([2]))
    assert np.isfinite(loss)
    assert np.all(np.isfinite(loss_fn.backward()))


def test_cross_entropy_weighted_mean_divides_by_target_weights():
    pred = np.zeros((3, 2))
    target = np.array([0, 0, 1])
    weight = np.array([1.0, 3.0])
    # every sample's unweighted loss is log(2); the weighted mean is then log(2) too
    assert CrossEntropyLoss(weight=weight)(pred, target) == pytest.approx(np.log(2))
    assert CrossEntropyLoss(weight=weight, reduction="sum")(pred, target) == \
        pytest.approx(5 * np.log(2))


def test_cross_entropy_backward_grad_output_scales():
    rng = np.random.default_rng(4)
    pred, target, _ = _problem(rng)
    loss_fn = CrossEntropyLoss()
    loss_fn(pred, target)
    np.testing.assert_allclose(loss_fn.backward(2.5), 2.5 * loss_fn.backward())


def test_cross_entropy_does_not_modify_inputs_and_accepts_read_only():
    rng = np.random.default_rng(5)
    pred, target, weight = _problem(rng)
    pred.flags.writeable = False
    target.flags.writeable = False
    before = pred.copy()
    loss_fn = CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    loss_fn(pred, target)
    loss_fn.backward()
    np.testing.assert_array_equal(pred, before)


def test_cross_entropy_accepts_all_integer_target_dtypes():
    pred = np.zeros((2, 3))
    expected = np.log(3)
    for dtype in (np.int8, np.uint8, np.int32, np.int64, np.uint64):
        assert CrossEntropyLoss()(pred, np.array([0, 2], dtype=dtype)) == pytest.approx(expected)


@pytest.mark.parametrize("target, error, match", [
    (np.array([0, 3]), ValueError, r"class indices in \[0, 2\].*got 3"),
    (np.array([0, -1]), ValueError, r"got -1"),
    (np.array([0, 1, 2]), ValueError, r"shape \(N,\) = \(2,\)"),
    (np.array([[0], [1]]), ValueError, r"shape \(N,\)"),
    (np.array([0.0, 1.0]), TypeError, "integer class indices"),
    (np.array([True, False]), TypeError, "integer class indices"),
    (np.array(["a", "b"]), TypeError, "integer class indices"),
])
def test_cross_entropy_bad_targets(target, error, match):
    with pytest.raises(error, match=match):
        CrossEntropyLoss()(np.zeros((2, 3)), target)


def test_cross_entropy_bad_arguments():
    with pytest.raises(ValueError, match="pred must have shape"):
        CrossEntropyLoss()(np.zeros(3), np.array([0]))
    with pytest.raises(TypeError, match="pred must be an array of real numbers"):
        CrossEntropyLoss()(np.array([["a", "b"]]), np.array([0]))
    with pytest.raises(ValueError, match="weight has 2 entries but pred has 3"):
        CrossEntropyLoss(weight=[1.0, 2.0])(np.zeros((1, 3)), np.array([0]))
    with pytest.raises(ValueError, match="weight must have shape"):
        CrossEntropyLoss(weight=np.ones((2, 2)))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(TypeError, match="label_smoothing must be a float"):
        CrossEntropyLoss(label_smoothing="0.1")
    with pytest.raises(ValueError, match="reduction must be one of"):
        CrossEntropyLoss(reduction="average")
    with pytest.raises(RuntimeError, match="before the loss was computed"):
        CrossEntropyLoss().backward()


def test_cross_entropy_all_zero_target_weights_give_nan_as_torch():
    loss = CrossEntropyLoss(weight=[0.0, 1.0])(np.zeros((2, 2)), np.array([0, 0]))
    assert np.isnan(loss)


def test_cross_entropy_repr():
    assert repr(CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert "label_smoothing=0.1" in repr(CrossEntropyLoss(label_smoothing=0.1))


# --------------------------------------------------------------------------
# MSELoss
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_torch(reduction, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    pred = rng.standard_normal((5, 3)).astype(dtype)
    target = rng.standard_normal((5, 3)).astype(dtype)
    grad_output = rng.standard_normal((5, 3)).astype(dtype)
    loss_fn = MSELoss(reduction)
    loss = loss_fn(pred, target)
    grad = loss_fn.backward(grad_output if reduction == "none" else None)
    pred_t = torch.tensor(pred, requires_grad=True)
    loss_t = torch.nn.MSELoss(reduction=reduction)(pred_t, torch.tensor(target))
    (loss_t * torch.tensor(grad_output) if reduction == "none" else loss_t).sum().backward()
    np.testing.assert_allclose(loss, loss_t.detach().numpy(), **TOL[dtype])
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), **TOL[dtype])


def test_mse_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    pred, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    loss_fn = MSELoss()
    loss_fn(pred, target)
    grad = loss_fn.backward()
    numeric = numerical_grad(lambda: loss_fn(pred, target), pred)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_mse_target_takes_pred_dtype():
    loss_fn = MSELoss()
    pred = np.ones((2, 2), dtype=np.float32)
    assert loss_fn(pred, np.zeros((2, 2), dtype=np.int64)) == 1.0
    assert loss_fn.backward().dtype == np.float32


def test_mse_bad_arguments():
    with pytest.raises(ValueError, match=r"target must have the shape of pred \(2, 2\)"):
        MSELoss()(np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(TypeError, match="target must be an array of real numbers"):
        MSELoss()(np.zeros(2), np.array(["a", "b"]))
    with pytest.raises(ValueError, match="reduction"):
        MSELoss("avg")
    with pytest.raises(RuntimeError, match="before the loss was computed"):
        MSELoss().backward()
