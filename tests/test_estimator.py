"""CNNClassifier: scikit-learn's own checks, shapes, schedules, files, errors, model selection.

Everything trains tiny networks on 200 digits for a few epochs, so the file
runs in well under a minute on 2 cores.
"""
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import cnn
import cnn.estimator as estimator_module
from cnn.estimator import FORMAT_VERSION, CNNClassifier, _channel_mean_std, _shift_images
from cnn.train import NonFiniteLossError

# The configuration scikit-learn's checks run on: a tiny network, few epochs.
# The checks use 1 to 20 features, which are not square images: image_shape=(1, -1)
# makes each sample one row of pixels.
FAST = dict(conv_channels=(4,), dense_units=(16,), max_iter=10, learning_rate_init=0.01,
            image_shape=(1, -1), random_state=0)

# A small network for digits (8x8, pixels 0..16).
SMALL = dict(conv_channels=(8,), dense_units=(32,), max_iter=8, batch_size=32,
             learning_rate_init=0.01, random_state=0)
EPOCHS, LR = SMALL["max_iter"], SMALL["learning_rate_init"]


@parametrize_with_checks([CNNClassifier(**FAST)])
def test_sklearn_estimator_checks(estimator, check):
    # Every check passes: none is expected to fail.
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200], y[:200]


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return CNNClassifier(**SMALL).fit(X, y)


# --------------------------------------------------------------------------
# Input shapes and scales
# --------------------------------------------------------------------------


def test_square_features_become_one_channel_images(fitted):
    assert fitted.input_shape_ == (1, 8, 8)
    assert fitted.n_features_in_ == 64
    assert isinstance(fitted.model_, cnn.Sequential)


def test_learns_digits(fitted, digits):
    X, y = digits
    assert fitted.score(X, y) > 0.9


@pytest.mark.parametrize("kwargs, reshape", [
    (dict(image_shape=(8, 8)), lambda X: X),
    (dict(image_shape=(1, 8, 8)), lambda X: X),
    (dict(image_shape=(1, -1, 8)), lambda X: X),
    ({}, lambda X: X.reshape(-1, 8, 8)),
    ({}, lambda X: X.reshape(-1, 1, 8, 8)),
])
def test_image_shapes_agree(digits, fitted, kwargs, reshape):
    X, y = digits
    clf = CNNClassifier(**SMALL, **kwargs).fit(reshape(X), y)
    assert clf.input_shape_ == (1, 8, 8)
    assert clf.n_features_in_ == 64
    assert_allclose(clf.predict_proba(reshape(X)), fitted.predict_proba(X), atol=1e-6)
    # a model fitted on images predicts flat rows too, and the other way round
    assert_array_equal(clf.predict(X), fitted.predict(reshape(X)))


def test_channels_and_rectangles():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3, 4, 6))
    y = (X[:, 0].mean(axis=(1, 2)) > 0).astype(int)
    clf = CNNClassifier(**SMALL).fit(X, y)
    assert clf.input_shape_ == (3, 4, 6)
    assert clf.n_features_in_ == 72
    assert clf.predict(X.reshape(40, -1)).shape == (40,)
    with pytest.raises(ValueError, match=r"\(3, 6, 4\)"):
        clf.predict(X.reshape(40, 3, 6, 4))


def test_non_square_features_ask_for_image_shape():
    X, y = np.ones((10, 10)), np.arange(10) % 2
    with pytest.raises(ValueError, match="image_shape"):
        CNNClassifier(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match="image_shape"):
        CNNClassifier(**SMALL, image_shape=(3, 3)).fit(X, y)
    with pytest.raises(ValueError, match="image_shape"):
        CNNClassifier(**SMALL, image_shape=(3, -1)).fit(X, y)
    with pytest.raises(ValueError, match="image_shape"):
        CNNClassifier(**SMALL, image_shape="square").fit(X, y)


@pytest.mark.parametrize("scale", [1 / 16, 255 / 16, 1000.0])
def test_raw_pixels_of_any_scale_train_alike(digits, fitted, scale):
    # The fitted input normalisation removes the scale: 0..1, 0..16, 0..255 alike.
    X, y = digits
    clf = CNNClassifier(**SMALL).fit(X * scale, y)
    assert_allclose(clf.input_mean_, fitted.input_mean_ * scale)
    assert clf.score(X * scale, y) > 0.9
    assert np.mean(clf.predict(X * scale) == fitted.predict(X)) > 0.97


def test_input_dtypes(digits, fitted):
    X, y = digits
    for X_as in (X.astype(np.float32), X.astype(np.int64), X.astype(np.uint8), X.tolist()):
        assert_array_equal(fitted.predict(X_as), fitted.predict(X))


def test_uint8_pixels_train_exactly_as_their_float64_values(digits, fitted):
    # uint8 images are no longer converted to float64 as a whole, but every batch is
    # normalised in float64 all the same: the very same network.
    X, y = digits
    clf = CNNClassifier(**SMALL).fit(X.astype(np.uint8), y)
    assert_array_equal(clf.input_mean_, fitted.input_mean_)
    assert_array_equal(clf.input_std_, fitted.input_std_)
    assert_array_equal(clf.predict_proba(X.astype(np.uint8)), fitted.predict_proba(X))


@pytest.mark.parametrize("chunk_values", [2**18, 100, 1])  # one chunk, many, an image each
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_normalisation_statistics_equal_numpys(monkeypatch, chunk_values, dtype):
    monkeypatch.setattr(estimator_module, "_CHUNK_VALUES", chunk_values)
    rng = np.random.default_rng(0)
    shape = (301, 1, 5, 7)
    if dtype == np.uint8:  # channels of all 256 values, of 100..102, of 0 and 1
        channels = [rng.integers(low, high, shape) for low, high in [(0, 256), (100, 103),
                                                                      (0, 2)]]
    else:  # spreads from 1e-3 to 40 around means from -2 to 100
        channels = [spread * rng.standard_normal(shape) + mean for spread, mean in
                    [(1.0, 0.5), (1e-3, -2.0), (40.0, 100.0)]]
    images = np.concatenate(channels, axis=1).astype(dtype)
    mean, std = _channel_mean_std(images)
    as_float64 = images.astype(np.float64)
    assert mean.dtype == std.dtype == np.float64 and mean.shape == std.shape == (3,)
    assert_allclose(mean, as_float64.mean(axis=(0, 2, 3)), rtol=1e-12)
    assert_allclose(std, as_float64.std(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("value", [0.0, 0.1, 7.0, -3e30, 1e-30])
def test_a_constant_channel_is_centred_to_exactly_zero(value):
    # The mean of a constant channel is its value exactly (np.mean of 0.1s is not), so
    # centring leaves exact zeros; its std is 1, beside a channel of real spread.
    rng = np.random.default_rng(0)
    images = np.full((500, 2, 3, 3), value)
    images[:, 1] = rng.standard_normal((500, 3, 3))
    mean, std = _channel_mean_std(images)
    assert mean[0] == value and std[0] == 1.0
    assert std[1] == pytest.approx(images[:, 1].std(), rel=1e-12)
    assert np.all(CNNClassifier()._normalise(images, mean, std)[:, 0] == 0)


@pytest.mark.parametrize("scale", [1e-13, 1e-30, 2.0**-60])
def test_data_of_a_tiny_scale_is_not_taken_for_constant(digits, scale):
    # The constant test is relative to the data's magnitude, not an absolute 1e-12.
    images = digits[0].reshape(-1, 1, 8, 8) * scale
    mean, std = _channel_mean_std(images)
    assert_allclose(std, images.std(axis=(0, 2, 3)), rtol=1e-12)
    normalised = CNNClassifier()._normalise(images, mean, std)
    assert_allclose(normalised.std(dtype=np.float64), 1.0, rtol=1e-6)


def test_validation_data_beyond_float32_after_normalising_is_named(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"X_val, normalised by the training data's "
                                         r"per-channel mean and std, reaches .*float32"):
        CNNClassifier(**SMALL).fit(X, y, validation_data=(X[:20] * 1e39, y[:20]))


# --------------------------------------------------------------------------
# Fitted attributes, schedules, stopping rules
# --------------------------------------------------------------------------


def test_fitted_attributes(fitted, digits):
    X, y = digits
    assert_array_equal(fitted.classes_, np.arange(10))
    assert fitted.n_iter_ == EPOCHS
    assert fitted.t_ == EPOCHS * len(X)
    assert len(fitted.loss_curve_) == EPOCHS
    assert fitted.loss_ == fitted.loss_curve_[-1]
    assert fitted.best_loss_ == min(fitted.loss_curve_)
    assert fitted.validation_scores_ is None and fitted.best_validation_score_ is None
    assert set(fitted.history_) == {"loss", "accuracy", "lr", "seconds"}
    assert fitted.history_["loss"] == fitted.loss_curve_
    assert not fitted.model_.training  # inference in eval mode
    assert fitted.loss_curve_[-1] < fitted.loss_curve_[0]


def test_string_labels(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    clf = CNNClassifier(**SMALL).fit(X, names[y])
    assert_array_equal(clf.classes_, np.sort(names))
    assert set(clf.predict(X)) <= set(names)
    assert clf.score(X, names[y]) > 0.9


def test_probabilities(fitted, digits):
    X, _ = digits
    proba = fitted.predict_proba(X)
    assert proba.dtype == np.float64 and proba.shape == (200, 10)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_allclose(fitted.predict_log_proba(X), np.log(proba), atol=1e-10)
    assert_array_equal(fitted.predict(X), fitted.classes_[proba.argmax(axis=1)])


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
def test_convergence_warning_when_max_iter_ends_first(digits, schedule):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match="maximum iterations"):
        CNNClassifier(**{**SMALL, "max_iter": 2}, learning_rate=schedule).fit(X, y)


def test_cosine_schedule_ends_without_warning(digits, fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CNNClassifier(**SMALL).fit(*digits)
    lr = fitted.history_["lr"]
    assert lr[0] == pytest.approx(fitted.learning_rate_init)
    assert lr == sorted(lr, reverse=True) and lr[-1] < 0.1 * lr[0]


def test_invscaling_schedule(digits):
    clf = CNNClassifier(**SMALL, learning_rate="invscaling", power_t=0.5)
    with pytest.warns(ConvergenceWarning):
        clf.fit(*digits)
    assert_allclose(clf.history_["lr"], LR / np.sqrt(np.arange(1, EPOCHS + 1)))


def test_stops_when_the_loss_stops_improving(digits):
    # with a huge tol no epoch counts as progress: stop after n_iter_no_change + 1 of them
    clf = CNNClassifier(**{**SMALL, "max_iter": 20}, learning_rate="constant", tol=100.0,
                        n_iter_no_change=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(*digits)
    assert clf.n_iter_ == 4


def test_adaptive_schedule_divides_by_five(digits):
    clf = CNNClassifier(**{**SMALL, "max_iter": 6}, learning_rate="adaptive", tol=100.0,
                        n_iter_no_change=1)
    with pytest.warns(ConvergenceWarning):
        clf.fit(*digits)
    assert_allclose(clf.history_["lr"], LR / 5 ** np.array([0, 0, 0, 1, 1, 2]))


def test_early_stopping_keeps_the_best_epoch(digits):
    X, y = digits
    clf = CNNClassifier(**{**SMALL, "max_iter": 8}, early_stopping=True,
                        validation_fraction=0.2, n_iter_no_change=2).fit(X, y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    assert clf.t_ == clf.n_iter_ * 160  # the validation fifth is held out
    assert "val_accuracy" in clf.history_


def test_explicit_validation_data(digits):
    X, y = digits
    X_val, y_val = load_digits(return_X_y=True)[0][200:300], load_digits().target[200:300]
    clf = CNNClassifier(**SMALL).fit(X, y, validation_data=(X_val, y_val))
    assert len(clf.validation_scores_) == EPOCHS
    assert clf.validation_scores_[-1] == pytest.approx(clf.score(X_val, y_val))
    assert clf.best_loss_ is not None and clf.t_ == EPOCHS * 200
    with pytest.raises(ValueError, match="not in classes"):
        CNNClassifier(**SMALL).fit(X, y, validation_data=(X_val, y_val + 10))
    with pytest.raises(ValueError, match="features"):
        CNNClassifier(**SMALL).fit(X, y, validation_data=(X_val[:, :60], y_val))
    with pytest.raises(ValueError, match="pair"):
        CNNClassifier(**SMALL).fit(X, y, validation_data=X_val)


def test_partial_fit_one_epoch_at_a_time(digits):
    X, y = digits
    clf = CNNClassifier(**SMALL)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    # classes may include labels that y does not hold yet
    clf.partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))
    assert clf.n_iter_ == 1 and len(clf.classes_) == 10
    for _ in range(4):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 5 and clf.t_ == np.sum(y < 5) + 4 * 200
    assert len(clf.loss_curve_) == 5
    assert clf.score(X, y) > 0.8
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, y, classes=np.arange(3))
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :60], y)


def test_warm_start_goes_on(digits, fitted):
    X, y = digits
    clf = CNNClassifier(**SMALL, warm_start=True).fit(X, y)
    first = clf.model_.state_dict()
    clf.set_params(max_iter=2).fit(X, y)
    assert clf.n_iter_ == EPOCHS + 2 and len(clf.loss_curve_) == EPOCHS + 2
    assert not np.array_equal(first["0.weight"], clf.model_.state_dict()["0.weight"])
    # without warm_start a fit starts afresh
    clf.set_params(warm_start=False, max_iter=EPOCHS).fit(X, y)
    assert clf.n_iter_ == EPOCHS
    assert_allclose(clf.predict_proba(X), fitted.predict_proba(X), atol=1e-6)


def test_augment_shifts_images():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2, 5, 5)).astype(np.float32)
    shifted = _shift_images(x, 1, np.random.default_rng(1))
    assert shifted.shape == x.shape and shifted.dtype == x.dtype
    # each image is its original moved by at most one pixel: the centre 3x3 is in there
    for original, moved in zip(x, shifted):
        assert any(np.array_equal(original[:, 1:4, 1:4], moved[:, 1 + dy:4 + dy, 1 + dx:4 + dx])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_augment_trains(digits):
    X, y = digits
    clf = CNNClassifier(**SMALL, augment=True).fit(X, y)
    again = CNNClassifier(**SMALL, augment=True).fit(X, y)
    assert clf.score(X, y) > 0.8
    assert_array_equal(clf.predict_proba(X), again.predict_proba(X))


def test_verbose_prints_each_epoch(digits, capsys):
    CNNClassifier(**{**SMALL, "max_iter": 3}, verbose=True).fit(*digits)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1", "Epoch 2", "Epoch 3"]
    assert "loss:" in lines[0] and "lr:" in lines[0]


# --------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    dict(pooling="avg"), dict(batch_norm=False), dict(dropout=0.0), dict(dense_units=()),
    dict(conv_channels=(4, 8, 8), kernel_size=5), dict(solver="sgd", learning_rate_init=0.05),
    dict(solver="sgd", momentum=0.0, learning_rate_init=0.1),
])
def test_architecture_and_solver_options(digits, kwargs):
    X, y = digits
    clf = CNNClassifier(**{**SMALL, **kwargs}).fit(X, y)
    assert clf.score(X, y) > 0.8


def test_custom_module(digits):
    X, y = digits
    calls = []

    def network(input_shape, n_classes):
        calls.append((input_shape, n_classes))
        C, H, W = input_shape
        return cnn.Sequential(cnn.Conv2d(C, 6, 3, padding=1), cnn.ReLU(), cnn.MaxPool2d(2),
                              cnn.Flatten(), cnn.Linear(6 * (H // 2) * (W // 2), n_classes))

    clf = CNNClassifier(**SMALL, module=network).fit(X, y)
    again = CNNClassifier(**SMALL, module=network).fit(X, y)
    assert calls == [((1, 8, 8), 10)] * 2
    assert type(clf.model_[0]).__name__ == "Conv2d" and len(clf.model_) == 5
    assert clf.score(X, y) > 0.8
    # random_state drives the initialisation of a custom network too
    assert_array_equal(clf.predict_proba(X), again.predict_proba(X))

    with pytest.raises(TypeError, match="cnn.Sequential"):
        CNNClassifier(module=lambda shape, n: "not a network").fit(X, y)
    with pytest.raises(TypeError, match="callable"):
        CNNClassifier(module="resnet").fit(X, y)


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------


def test_same_random_state_same_predictions(digits, fitted):
    X, y = digits
    again = CNNClassifier(**SMALL).fit(X, y)
    # bit for bit with one thread; to rounding when the kernels run on several
    assert_allclose(again.predict_proba(X), fitted.predict_proba(X), atol=1e-6)
    assert_array_equal(again.predict(X), fitted.predict(X))
    other = CNNClassifier(**{**SMALL, "random_state": 1}).fit(X, y)
    assert not np.allclose(other.predict_proba(X), fitted.predict_proba(X))


def test_generator_and_randomstate_seeds(digits):
    X, y = digits
    for seed in (np.random.default_rng(3), np.random.RandomState(3)):
        clf = CNNClassifier(**{**SMALL, "random_state": seed}).fit(X, y)
        assert clf.score(X, y) > 0.8
    with pytest.raises(ValueError, match="random_state"):
        CNNClassifier(**{**SMALL, "random_state": "seed"}).fit(X, y)


def test_prediction_does_not_depend_on_the_batch(fitted, digits):
    X, _ = digits
    whole = fitted.predict_proba(X)
    one_by_one = np.vstack([fitted.predict_proba(X[i:i + 1]) for i in range(0, 200, 7)])
    assert_allclose(one_by_one, whole[::7], rtol=1e-5, atol=1e-7)
    reordered = fitted.predict_proba(X[::-1])[::-1]
    assert_allclose(reordered, whole, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------
# Files and pickling
# --------------------------------------------------------------------------


def test_save_and_load(tmp_path, digits):
    X, y = digits
    labels = np.array(["even", "odd"])[y % 2]
    clf = CNNClassifier(**SMALL, dropout=0.1).fit(X, labels, validation_data=(X, labels))
    path = tmp_path / "digits.npz"
    clf.save(path)
    loaded = CNNClassifier.load(path)
    assert loaded.get_params() == clf.get_params()
    assert_array_equal(loaded.classes_, clf.classes_)
    assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert_array_equal(loaded.predict(X), clf.predict(X))
    for name in ("input_shape_", "n_features_in_", "loss_", "loss_curve_", "best_loss_",
                 "validation_scores_", "best_validation_score_", "n_iter_", "t_", "history_"):
        assert getattr(loaded, name) == getattr(clf, name), name
    # a loaded estimator goes on training
    loaded.partial_fit(X, labels)
    assert loaded.n_iter_ == clf.n_iter_ + 1
    # the file holds no pickle
    with np.load(path, allow_pickle=False) as f:
        assert all(f[key].dtype != object for key in f.files)


def test_save_with_custom_module(tmp_path, digits):
    X, y = digits
    clf = CNNClassifier(module=lambda s, n: cnn.Sequential(cnn.Flatten(), cnn.Linear(64, n)),
                        max_iter=3, random_state=0).fit(X, y)
    clf.save(tmp_path / "m.npz")
    loaded = CNNClassifier.load(tmp_path / "m.npz")
    assert loaded.module is None
    assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_load_rejects_other_files(tmp_path, fitted):
    with pytest.raises(FileNotFoundError):
        CNNClassifier.load(tmp_path / "missing.npz")
    fitted.model_.save(tmp_path / "network.npz")  # a Sequential's file, not an estimator's
    with pytest.raises(ValueError, match="not a saved CNNClassifier"):
        CNNClassifier.load(tmp_path / "network.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a saved CNNClassifier"):
        CNNClassifier.load(tmp_path / "junk.npz")
    with pytest.raises(NotFittedError):
        CNNClassifier().save(tmp_path / "unfitted.npz")


def test_pickle_carries_a_format_version(fitted, digits):
    X, _ = digits
    data = pickle.dumps(fitted)
    restored = pickle.loads(data)
    assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    state = fitted.__getstate__()
    assert state["_cnn_estimator_format_version"] == FORMAT_VERSION
    state["_cnn_estimator_format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="format version"):
        CNNClassifier().__setstate__(state)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("X, match", [
    (np.full((20, 64), np.nan), "NaN"),
    (np.full((20, 64), np.inf), "infinity"),
    (np.zeros((0, 64)), "0 sample"),
    (np.zeros(64), "Expected 2D array"),
    (np.zeros((20, 64), dtype=complex), "Complex data not supported"),
    (np.zeros((20, 1, 1, 8, 8)), "shape"),
])
def test_bad_X(X, match):
    y = np.arange(len(X)) % 2
    with pytest.raises(ValueError, match=match):
        CNNClassifier(**SMALL).fit(X, y)


def test_bad_y(digits):
    X, y = digits
    with pytest.raises(ValueError, match="1 class"):
        CNNClassifier(**SMALL).fit(X, np.zeros(200))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        CNNClassifier(**SMALL).fit(X, y[:-1])
    with pytest.raises(ValueError, match="Unknown label type"):
        CNNClassifier(**SMALL).fit(X, y + 0.5)


def test_wrong_feature_count_at_predict(fitted, digits):
    X, _ = digits
    with pytest.raises(ValueError, match="X has 60 features, but CNNClassifier is expecting 64"):
        fitted.predict(X[:, :60])


def test_not_fitted():
    for method in ("predict", "predict_proba", "predict_log_proba"):
        with pytest.raises(NotFittedError):
            getattr(CNNClassifier(), method)(np.zeros((2, 64)))


@pytest.mark.parametrize("name, value, error", [
    ("batch_size", 0, ValueError), ("batch_size", -5, ValueError), ("batch_size", 2.5, TypeError),
    ("max_iter", 0, ValueError), ("max_iter", -1, ValueError),
    ("learning_rate_init", 0.0, ValueError), ("learning_rate_init", -0.1, ValueError),
    ("learning_rate_init", float("nan"), ValueError), ("learning_rate", "fast", ValueError),
    ("solver", "lbfgs", ValueError), ("pooling", "min", ValueError), ("dropout", 1.0, ValueError),
    ("conv_channels", (8, 0), ValueError), ("alpha", -1.0, ValueError),
    ("validation_fraction", 1.0, ValueError), ("n_iter_no_change", 0, ValueError),
    ("momentum", 1.5, ValueError), ("augment", -1, ValueError), ("batch_norm", "yes", TypeError),
])
def test_bad_parameters_fail_in_fit_naming_them(digits, name, value, error):
    clf = CNNClassifier(**{**SMALL, name: value})  # __init__ and set_params never raise
    with pytest.raises(error, match=name):
        clf.fit(*digits)


def test_diverging_run_names_the_learning_rate_and_keeps_the_estimator(digits, fitted):
    X, y = digits
    clf = clone(fitted).fit(X, y)
    before = clf.predict_proba(X)
    attributes = dict(vars(clf))
    for solver in ("sgd", "adam"):
        clf.set_params(solver=solver, learning_rate_init=1e10)
        with pytest.raises(NonFiniteLossError, match="learning_rate_init"):
            clf.fit(X, y)
        with pytest.raises(ValueError, match="learning rate 1e\\+10"):  # it is a ValueError
            clf.set_params(warm_start=True).fit(X, y)
        with pytest.raises(NonFiniteLossError):
            clf.partial_fit(X, y)
        clf.set_params(warm_start=False)
    assert_array_equal(clf.predict_proba(X), before)
    assert all(vars(clf)[k] is v for k, v in attributes.items() if k.endswith("_"))
    # an estimator that was never fitted stays unfitted
    fresh = CNNClassifier(**{**SMALL, "solver": "sgd", "learning_rate_init": 1e10})
    with pytest.raises(NonFiniteLossError):
        fresh.fit(X, y)
    assert not hasattr(fresh, "model_") and not hasattr(fresh, "n_features_in_")


@pytest.mark.parametrize("n, batch_size", [(65, "auto"), (65, 32), (33, 32)])
def test_batch_norm_trains_when_a_last_batch_would_hold_one_sample(digits, n, batch_size):
    # 65 = 64 + 1: cnn.fit merges the last sample into the batch before, which batch
    # norm (in the default network, after the dense layer too) needs.
    X, y = digits
    clf = CNNClassifier(**{**SMALL, "max_iter": 2, "batch_size": batch_size}).fit(X[:n], y[:n])
    assert clf.t_ == 2 * n  # every sample seen in each epoch
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_batch_norm_on_batches_of_one_sample_is_a_clear_error(digits):
    X, y = digits
    clf = CNNClassifier(**SMALL)
    with pytest.raises(ValueError, match=r"cannot train on batches of one sample \(1 training "
                       r"sample\(s\).*BatchNorm needs more than 1 value per channel.*at "
                       r"least 2 training samples, or batch_norm=False"):
        clf.partial_fit(X[:1], y[:1], classes=np.arange(10))
    assert not hasattr(clf, "model_") and not hasattr(clf, "n_features_in_")
    with pytest.raises(ValueError, match=r"\(40 training sample\(s\), batch_size=1\).*a "
                                         r"batch_size of at least 2, or batch_norm=False"):
        CNNClassifier(**{**SMALL, "batch_size": 1}).fit(X[:40], y[:40])
    # without batch norm, batches of one train
    clf = CNNClassifier(**{**SMALL, "batch_size": 1, "max_iter": 1, "batch_norm": False})
    assert clf.fit(X[:40], y[:40]).t_ == 40


def test_a_run_with_huge_finite_weights_is_not_fitted():
    # The training losses stay finite (3e15) and so do the weights, but the network's
    # outputs overflow float32: fit says it diverged instead of predicting NaN.
    rng = np.random.default_rng(0)
    X, y = rng.random((10, 1, 3, 3)), np.arange(10) % 2
    clf = CNNClassifier(conv_channels=(4,), dense_units=(16,), batch_norm=False, solver="sgd",
                        learning_rate_init=1e6, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(NonFiniteLossError, match=r"outputs on the training data are NaN or "
                           r"infinite .*after epoch 2.*learning_rate_init"):
            clf.fit(X, y)
    assert not hasattr(clf, "model_")


# --------------------------------------------------------------------------
# Model selection
# --------------------------------------------------------------------------


def test_pipeline_and_grid_search(digits):
    X, y = digits
    pipe = make_pipeline(MinMaxScaler(), CNNClassifier(**SMALL))
    search = GridSearchCV(pipe, {"cnnclassifier__learning_rate_init": [0.003, 0.01]}, cv=2)
    search.fit(X, y)
    assert search.best_score_ > 0.8
    assert search.predict(X).shape == (200,)


def test_cross_val_score(digits):
    scores = cross_val_score(CNNClassifier(**SMALL), *digits, cv=3)
    assert scores.mean() > 0.8


def test_cross_val_score_in_two_processes(digits):
    # joblib's default backend: loky worker processes, which unpickle the estimator
    scores = cross_val_score(CNNClassifier(**SMALL), *digits, cv=2, n_jobs=2)
    serial = cross_val_score(CNNClassifier(**SMALL), *digits, cv=2, n_jobs=1)
    assert_allclose(scores, serial, atol=0.02)  # thread counts may differ in workers


def test_grid_search_on_a_dask_cluster(digits):
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    import joblib

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        search = GridSearchCV(CNNClassifier(**SMALL), {"dropout": [0.0, 0.25]}, cv=2)
        with joblib.parallel_backend("dask"):
            search.fit(*digits)
    assert search.best_score_ > 0.8
