"""The training loop: learning, early stopping, Ctrl-C, NaN, determinism, batched predict."""
import io
import os
import signal
import warnings

import numpy as np
import pytest

from cnn.losses import CrossEntropyLoss, MSELoss
from cnn.optim import SGD, Adam, ReduceLROnPlateau, StepLR
from cnn.train import (History, NonFiniteLossError, _train_validation_split, evaluate, fit,
                       predict_batches)


# --------------------------------------------------------------------------
# A stand-in model: a linear classifier with the Sequential interface
# --------------------------------------------------------------------------


class Param:
    def __init__(self, data):
        self.data = np.array(data)
        self.grad = np.zeros_like(self.data)


class LinearModel:
    """``x @ weight.T + bias`` with forward/backward/state_dict like cnn.model.Sequential."""

    def __init__(self, n_in, n_out, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.weight = Param((0.1 * rng.standard_normal((n_out, n_in))).astype(dtype))
        self.bias = Param(np.zeros(n_out, dtype=dtype))
        self.training = True
        self.forward_calls = 0

    def parameters(self):
        return [self.weight, self.bias]

    def forward(self, x):
        self.forward_calls += 1
        if x.dtype != self.weight.data.dtype:
            raise TypeError("dtype mismatch")  # as the real layers do
        self._x = x if self.training else None
        return x @ self.weight.data.T + self.bias.data

    def backward(self, grad_out):
        self.weight.grad += grad_out.T @ self._x
        self.bias.grad += grad_out.sum(axis=0)
        return grad_out @ self.weight.data

    def zero_grad(self):
        for p in self.parameters():
            p.grad[...] = 0

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def state_dict(self):
        # references, as a real state_dict may give: fit must copy them
        return {"weight": self.weight.data, "bias": self.bias.data}

    def load_state_dict(self, state):
        self.weight.data[...] = state["weight"]
        self.bias.data[...] = state["bias"]


def _blobs(n=120, n_features=6, n_classes=3, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((n_classes, n_features))
    y = rng.integers(0, n_classes, n)
    X = centers[y] + spread * rng.standard_normal((n, n_features))
    return X, y


def _weights(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def _recorder(model, store):
    """A callback keeping a copy of the weights after every epoch."""
    def callback(epoch, logs):
        store[epoch] = _weights(model)
    return callback


def _fit(model, X, y, **kwargs):
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("rng", 0)
    lr = kwargs.pop("lr", 0.05)
    loss_fn = kwargs.pop("loss_fn", CrossEntropyLoss())
    optimizer = kwargs.pop("optimizer", None) or SGD(model.parameters(), lr=lr, momentum=0.9)
    return fit(model, loss_fn, optimizer, X, y, **kwargs)


# --------------------------------------------------------------------------
# Learning and the history
# --------------------------------------------------------------------------


def test_loss_decreases_and_history_has_every_key():
    X, y = _blobs()
    model = LinearModel(6, 3)
    history = _fit(model, X, y, epochs=8, batch_size=16, validation_fraction=0.25)
    assert isinstance(history, History) and len(history) == 8
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr",
                                     "seconds"]
    assert all(len(v) == 8 for v in history.history.values())
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    assert history.epoch == list(range(1, 9))
    assert history.stop_reason == "completed"
    assert history.monitor == "val_loss"
    assert history.best_epoch == 1 + int(np.argmin(history["val_loss"]))
    assert model.training  # the mode it had is restored


def test_regression_with_mse_has_no_accuracy():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 4))
    Y = X @ rng.standard_normal((4, 2))
    model = LinearModel(4, 2)
    history = _fit(model, X, Y, loss_fn=MSELoss(), epochs=10, validation_fraction=0.25,
                   lr=0.05)
    assert "accuracy" not in history and "val_accuracy" not in history
    assert history["val_loss"][-1] < 0.2 * history["val_loss"][0]


def test_validation_data_is_used_as_given():
    X, y = _blobs()
    model = LinearModel(6, 3)
    history = _fit(model, X[:90], y[:90], validation_data=(X[90:], y[90:]), epochs=2)
    loss, accuracy = evaluate(model, CrossEntropyLoss(), X[90:], y[90:])
    assert history["val_loss"][-1] == loss and history["val_accuracy"][-1] == accuracy


def test_data_is_converted_to_the_model_dtype_batch_by_batch():
    X, y = _blobs()
    model = LinearModel(6, 3, dtype=np.float32)
    history = _fit(model, X, y, epochs=2, validation_fraction=0.2)  # X is float64
    assert np.isfinite(history["loss"]).all()
    assert model.weight.data.dtype == np.float32
    assert predict_batches(model, X).dtype == np.float32


def test_same_seed_same_run():
    X, y = _blobs()
    runs = []
    for _ in range(2):
        model = LinearModel(6, 3, seed=3)
        history = _fit(model, X, y, epochs=4, batch_size=10, validation_fraction=0.2,
                       rng=np.random.default_rng(42))
        del history.history["seconds"]
        runs.append((history.history, _weights(model)))
    assert runs[0][0] == runs[1][0]
    for key in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][key], runs[1][1][key])
    # and another seed shuffles differently
    model = LinearModel(6, 3, seed=3)
    other = _fit(model, X, y, epochs=4, batch_size=10, validation_fraction=0.2, rng=7)
    assert other["loss"] != runs[0][0]["loss"]


def test_schedules_change_the_recorded_lr():
    X, y = _blobs()
    model = LinearModel(6, 3)
    optimizer = SGD(model.parameters(), lr=0.1)
    history = _fit(model, X, y, epochs=5, optimizer=optimizer,
                   scheduler=StepLR(optimizer, step_size=2, gamma=0.5))
    assert history["lr"] == [0.1, 0.1, 0.05, 0.05, 0.025]

    model = LinearModel(6, 3)
    optimizer = SGD(model.parameters(), lr=0.1)
    plateau = ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
    # validation labels unrelated to the inputs: val_loss stops improving at once
    rng = np.random.default_rng(0)
    history = _fit(model, X, y, epochs=4, optimizer=optimizer, scheduler=plateau,
                   validation_data=(X, rng.permutation(y)))
    expected = [0.1]
    for i in range(1, 4):
        improved = history["val_loss"][i - 1] < min(history["val_loss"][:i - 1] or [np.inf]) \
            * (1 - 1e-4)
        expected.append(expected[-1] if improved else expected[-1] * 0.5)
    assert history["lr"] == expected


def test_adam_learns_too():
    X, y = _blobs()
    model = LinearModel(6, 3)
    history = _fit(model, X, y, epochs=5, optimizer=Adam(model.parameters(), lr=0.05))
    assert history["accuracy"][-1] > 0.9


def test_stratified_validation_split_keeps_class_proportions():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = _train_validation_split(y, 0.2, np.random.default_rng(0))
    assert np.bincount(y[val]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    # a class of one sample stays in training
    train, val = _train_validation_split(np.array([0, 0, 0, 0, 1]), 0.25,
                                         np.random.default_rng(0))
    assert 4 in train
    with pytest.raises(ValueError, match="empty validation set"):
        _train_validation_split(np.array([0, 1]), 0.1, np.random.default_rng(0))


# --------------------------------------------------------------------------
# Early stopping and the best weights
# --------------------------------------------------------------------------


def test_early_stopping_restores_the_best_weights():
    X, y = _blobs()
    model = LinearModel(6, 3)
    per_epoch = {}
    # validation labels are the training labels shifted: the better the model
    # learns, the worse the validation loss, so the best epoch is an early one
    history = _fit(model, X, y, epochs=30, validation_data=(X, (y + 1) % 3),
                   early_stopping_patience=3, callbacks=[_recorder(model, per_epoch)])
    assert history.stop_reason == "early_stopping"
    best = history.best_epoch
    assert best == 1 + int(np.argmin(history["val_loss"]))
    assert len(history) == best + 3
    assert history.restored_best_weights
    for key, value in _weights(model).items():
        np.testing.assert_array_equal(value, per_epoch[best][key])
        assert not np.array_equal(value, per_epoch[len(history)][key])


def test_early_stopping_on_accuracy_maximises():
    X, y = _blobs()
    model = LinearModel(6, 3)
    history = _fit(model, X, y, epochs=30, validation_fraction=0.3, monitor="val_accuracy",
                   early_stopping_patience=2)
    assert history.best_value == max(history["val_accuracy"])
    assert history.stop_reason == "early_stopping"


def test_without_early_stopping_the_last_weights_are_kept():
    X, y = _blobs()
    model = LinearModel(6, 3)
    per_epoch = {}
    history = _fit(model, X, y, epochs=6, validation_data=(X, (y + 1) % 3),
                   callbacks=[_recorder(model, per_epoch)])
    assert not history.restored_best_weights
    np.testing.assert_array_equal(model.weight.data, per_epoch[6]["weight"])


def test_callback_can_stop_training():
    X, y = _blobs()
    history = _fit(LinearModel(6, 3), X, y, epochs=10,
                   callbacks=[lambda epoch, logs: epoch == 2])
    assert len(history) == 2 and history.stop_reason == "callback"


# --------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------


def _interrupt_at(model, monkeypatch, call, how):
    """Make the model's ``call``-th forward raise KeyboardInterrupt or send SIGINT."""
    forward = model.forward

    def patched(x):
        if model.forward_calls + 1 == call:
            if how == "raise":
                model.forward_calls += 1
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, arriving mid-batch
        return forward(x)

    monkeypatch.setattr(model, "forward", patched)


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_ctrl_c_stops_cleanly_and_keeps_the_best_weights(how, monkeypatch):
    X, y = _blobs(n=100)
    model = LinearModel(6, 3)
    per_epoch = {}
    # 100 samples, batch 25: 4 training batches + 1 validation forward per epoch;
    # call 13 is the 3rd batch of epoch 3
    _interrupt_at(model, monkeypatch, call=13, how=how)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    steps = []
    step = optimizer.step
    monkeypatch.setattr(optimizer, "step", lambda: (steps.append(1), step()))
    with pytest.warns(RuntimeWarning, match="interrupted during epoch 3"):
        history = _fit(model, X, y, epochs=10, batch_size=25, optimizer=optimizer,
                       validation_data=(X, (y + 1) % 3),
                       callbacks=[_recorder(model, per_epoch)])
    assert history.stop_reason == "interrupted"
    # a signal lets the current batch finish (its step happens); an exception cannot
    assert history.interrupted_at == (3, 3 if how == "signal" else 2, 4)
    assert len(history) == 2 and all(len(v) == 2 for v in history.history.values())
    assert len(steps) == 8 + (3 if how == "signal" else 2)
    assert history.restored_best_weights
    for key, value in _weights(model).items():
        np.testing.assert_array_equal(value, per_epoch[history.best_epoch][key])
    # the default handler is back: a Ctrl-C now would interrupt as usual
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_validation_finishes_the_epoch(monkeypatch):
    X, y = _blobs(n=100)
    model = LinearModel(6, 3)
    _interrupt_at(model, monkeypatch, call=5, how="signal")  # epoch 1's validation pass
    with pytest.warns(RuntimeWarning, match="interrupted during epoch 1"):
        history = _fit(model, X, y, epochs=5, batch_size=25, validation_fraction=0.2)
    # 80 training samples: 4 batches, all done, and the epoch is recorded
    assert history.interrupted_at == (1, 4, 4) and history.epoch == [1]
    assert history.restored_best_weights and history.best_epoch == 1


def test_ctrl_c_in_the_first_epoch_keeps_the_current_weights(monkeypatch):
    X, y = _blobs(n=100)
    model = LinearModel(6, 3)
    _interrupt_at(model, monkeypatch, call=2, how="raise")
    with pytest.warns(RuntimeWarning, match="keeping the current weights"):
        history = _fit(model, X, y, epochs=3, batch_size=25)
    assert len(history) == 0 and history.interrupted_at == (1, 1, 4)
    assert not history.restored_best_weights


# --------------------------------------------------------------------------
# Batches and transform
# --------------------------------------------------------------------------


class BatchRecorder(LinearModel):
    """A LinearModel keeping a copy of every batch it trains on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def forward(self, x):
        if self.training:
            self.batches.append(x.copy())
        return super().forward(x)


@pytest.mark.parametrize("n, batch_size, sizes", [
    (65, 32, [32, 33]),      # a last batch of one sample joins the one before
    (129, 64, [64, 65]),
    (66, 32, [32, 32, 2]),   # two samples are a batch
    (64, 32, [32, 32]),
    (33, 32, [33]),
    (1, 32, [1]),            # nothing to join: a data set of one sample is one batch
    (3, 1, [1, 1, 1]),       # batch_size=1 asks for batches of one
])
def test_a_last_batch_of_one_sample_joins_the_one_before(n, batch_size, sizes):
    X, y = _blobs(n)
    X[:, 0] = np.arange(n)  # each sample's index, to see which samples each epoch visits
    model = BatchRecorder(6, 3)
    history = _fit(model, X, y, epochs=2, batch_size=batch_size, lr=0.0)
    assert [len(b) for b in model.batches] == 2 * sizes
    for epoch in range(2):  # every epoch visits every sample once
        visited = np.concatenate(model.batches[epoch * len(sizes):(epoch + 1) * len(sizes)])
        np.testing.assert_array_equal(np.sort(visited[:, 0]), np.arange(n))
    assert history.stop_reason == "completed"


def _batch_norm_mlp():
    model_module = pytest.importorskip("cnn.model")
    layers = pytest.importorskip("cnn.layers")
    return model_module.Sequential(layers.Flatten(), layers.Linear(64, 8, rng=0),
                                   layers.BatchNorm1d(8), layers.ReLU(), layers.Linear(8, 2, rng=0))


def test_batch_norm_trains_on_a_last_batch_of_one_sample_but_not_on_one_sample():
    X, y = _bars(65, seed=3)
    model = _batch_norm_mlp()
    history = _fit(model, X, y, epochs=2, batch_size=32,
                   optimizer=SGD(model.parameters(), lr=0.05))
    assert len(history) == 2
    # one value per channel has no variance: the layer refuses it, clearly
    with pytest.raises(ValueError, match=r"BatchNorm needs more than 1 value per channel.*"
                                         r"\(1, 8\)"):
        _fit(_batch_norm_mlp(), X[:1], y[:1], epochs=1, batch_size=32)


def test_transform_is_applied_to_each_training_batch_and_not_to_validation():
    X, y = _blobs(50)
    X_val, y_val = _blobs(10, seed=1)
    X_uint8 = np.round(np.abs(X) * 10).astype(np.uint8)
    raw, generators = [], []

    def transform(batch, rng):  # cnn.data's convention, as iterate_minibatches calls it
        raw.append(batch.copy())
        generators.append(rng)
        return batch / 10.0

    model = BatchRecorder(6, 3)
    history = _fit(model, X_uint8, y, epochs=2, batch_size=7, transform=transform,
                   validation_data=(X_val, y_val))
    # the transform sees each batch as X holds it, and the model trains on its output
    assert [len(b) for b in raw] == [len(b) for b in model.batches] == 2 * ([7] * 6 + [8])
    for batch, trained in zip(raw, model.batches):
        assert batch.dtype == np.uint8 and trained.dtype == np.float64
        np.testing.assert_array_equal(trained, batch / 10.0)
    np.testing.assert_array_equal(np.sort(np.concatenate(raw[:7]), axis=0),
                                  np.sort(X_uint8, axis=0))  # the first epoch: all of X
    # one generator, the run's, feeds every batch's transform
    assert isinstance(generators[0], np.random.Generator)
    assert all(rng is generators[0] for rng in generators)
    # the validation data is scored as given
    assert history["val_loss"][-1] == evaluate(model, CrossEntropyLoss(), X_val, y_val)[0]


def test_a_random_transform_is_repeated_by_the_seed():
    X, y = _blobs(60)

    def noise(batch, rng):
        return batch + rng.standard_normal(batch.shape)

    runs = []
    for seed in (3, 3, 4):
        model = LinearModel(6, 3)
        _fit(model, X, y, epochs=2, batch_size=16, rng=seed, transform=noise)
        runs.append(_weights(model))
    np.testing.assert_array_equal(runs[0]["weight"], runs[1]["weight"])
    assert not np.array_equal(runs[0]["weight"], runs[2]["weight"])


def test_bad_transform():
    X, y = _blobs()
    with pytest.raises(TypeError, match="transform must be callable or None"):
        _fit(LinearModel(6, 3), X, y, epochs=1, transform="normalise")
    with pytest.raises(ValueError, match=r"transform must keep the batch's 32 samples.*\(31, 6\)"):
        _fit(LinearModel(6, 3), X, y, epochs=1, batch_size=32, transform=lambda x, rng: x[1:])


# --------------------------------------------------------------------------
# NaN and infinity
# --------------------------------------------------------------------------


def test_diverging_loss_raises_a_clear_error():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    Y = X @ rng.standard_normal((4, 2)).astype(np.float32)
    model = LinearModel(4, 2, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow on the way up
        with pytest.raises(NonFiniteLossError, match=r"at epoch \d+ \(batch \d+ of 4\).*"
                                                     r"learning rate \(10\).*smaller"):
            _fit(model, X, Y, loss_fn=MSELoss(), epochs=100, batch_size=16, lr=10.0)


def test_weights_overflowed_by_the_last_step_of_an_epoch_raise_and_restore_the_best():
    # One batch per epoch: its loss is computed before its step, so only the check at the
    # end of the epoch sees what the step did.
    X, y = _blobs(40)
    X = X.astype(np.float32)
    model = LinearModel(6, 3, dtype=np.float32)
    optimizer = SGD(model.parameters(), lr=0.01)
    per_epoch = {}

    def huge_rate_after_epoch_1(epoch, logs):
        per_epoch[epoch] = _weights(model)
        optimizer.lr = 1e39  # beyond float32: the next step makes the weights infinite

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(NonFiniteLossError, match=r"weights became NaN or infinite at the "
                           r"end of epoch 2 .*learning rate \(1e\+39\).*The weights of "
                           r"epoch 1 were restored"):
            _fit(model, X, y, epochs=3, batch_size=len(X), optimizer=optimizer,
                 early_stopping_patience=3, callbacks=[huge_rate_after_epoch_1])
    for key, value in _weights(model).items():
        np.testing.assert_array_equal(value, per_epoch[1][key])


def test_non_finite_loss_error_is_both_floating_point_and_value_error():
    assert issubclass(NonFiniteLossError, FloatingPointError)
    assert issubclass(NonFiniteLossError, ValueError)


def test_nan_in_the_data_is_named_as_the_cause():
    X, y = _blobs()
    X[5, 2] = np.nan
    with pytest.raises(NonFiniteLossError, match="input batch holds NaN"):
        _fit(LinearModel(6, 3), X, y, epochs=1)


# --------------------------------------------------------------------------
# Batched inference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 7, 120, 500])
def test_batched_predict_equals_unbatched(batch_size):
    X, _ = _blobs()
    model = LinearModel(6, 3)
    expected = model.eval().forward(X)
    model.train()
    out = predict_batches(model, X, batch_size=batch_size)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)
    assert model.training  # the mode is restored
    model.eval()
    predict_batches(model, X, batch_size=batch_size)
    assert not model.training


def test_predict_restores_mode_after_an_error():
    model = LinearModel(6, 3)
    with pytest.raises(ValueError):
        predict_batches(model, np.zeros((4, 5)))  # wrong number of features
    assert model.training


# --------------------------------------------------------------------------
# Output and bad arguments
# --------------------------------------------------------------------------


def test_epoch_lines_and_progress_bar(capsys):
    X, y = _blobs()
    out = io.StringIO()
    _fit(LinearModel(6, 3), X, y, epochs=2, validation_fraction=0.2, verbose=2, file=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 1/2 - ") and "val_accuracy: " in lines[0]
    assert "lr: 0.05" in lines[1]
    assert "[" in capsys.readouterr().err  # verbose=2 draws the bar even without a terminal


def test_silent_when_verbose_is_0(capsys):
    X, y = _blobs()
    _fit(LinearModel(6, 3), X, y, epochs=2, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, "epochs must be >= 1"),
    (dict(epochs=2.0), TypeError, "epochs must be an int"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(validation_fraction=1.5), ValueError, r"validation_fraction must be in \(0, 1\)"),
    (dict(validation_fraction=0.2, validation_data=(np.zeros((2, 6)), np.zeros(2, int))),
     ValueError, "not both"),
    (dict(validation_data=np.zeros((2, 6))), ValueError, "must be a pair"),
    (dict(validation_data=(np.zeros((2, 6)), np.zeros(3, int))), ValueError,
     "X_val and y_val must have the same number"),
    (dict(monitor="val_loss"), ValueError, "monitor must be one of"),
    (dict(early_stopping_patience=0), ValueError, "early_stopping_patience must be >= 1"),
])
def test_bad_arguments(kwargs, error, match):
    X, y = _blobs()
    with pytest.raises(error, match=match):
        _fit(LinearModel(6, 3), X, y, **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="same number of samples"):
        _fit(LinearModel(6, 3), np.zeros((5, 6)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="at least one sample"):
        _fit(LinearModel(6, 3), np.zeros((0, 6)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="at least one sample"):
        predict_batches(LinearModel(6, 3), np.zeros((0, 6)))


# --------------------------------------------------------------------------
# With the real layers
# --------------------------------------------------------------------------


def _bars(n, seed):
    """8x8 images of a horizontal (class 0) or vertical (class 1) bar, with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = 0.3 * rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    where = rng.integers(1, 7, n)
    for i in range(n):
        if y[i] == 0:
            X[i, 0, where[i], :] += 1
        else:
            X[i, 0, :, where[i]] += 1
    return X, y


def _small_cnn(seed=0, dtype=np.float32):
    model_module = pytest.importorskip("cnn.model")
    layers = pytest.importorskip("cnn.layers")
    rng = np.random.default_rng(seed)
    return model_module.Sequential(
        layers.Conv2d(1, 4, 3, padding=1, rng=rng, dtype=dtype),
        layers.BatchNorm2d(4, dtype=dtype),
        layers.ReLU(),
        layers.MaxPool2d(2),
        layers.Flatten(),
        layers.Dropout(0.1, rng=rng),
        layers.Linear(4 * 4 * 4, 2, rng=rng, dtype=dtype),
    )


def test_small_cnn_learns_and_early_stopping_restores_its_state():
    X, y = _bars(96, seed=0)
    model = _small_cnn()
    per_epoch = {}
    history = _fit(model, X, y, epochs=6, batch_size=16, validation_fraction=0.25,
                   optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9),
                   early_stopping_patience=6, callbacks=[_recorder(model, per_epoch)])
    assert history["loss"][-1] < history["loss"][0]
    assert max(history["val_accuracy"]) >= 0.9
    # the state (weights and BatchNorm's running statistics) of the best epoch is back
    for key, value in _weights(model).items():
        np.testing.assert_array_equal(value, per_epoch[history.best_epoch][key])
    # batched inference equals one big batch, and leaves the mode as it was
    model.train()
    out = predict_batches(model, X, batch_size=10)
    assert model.training
    np.testing.assert_allclose(out, model.eval().forward(X), rtol=1e-5, atol=1e-6)


def test_small_cnn_same_seed_same_run():
    X, y = _bars(48, seed=1)
    runs = []
    for _ in range(2):
        model = _small_cnn(seed=5)
        history = _fit(model, X, y, epochs=2, batch_size=16, validation_fraction=0.25, rng=3,
                       optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9))
        del history.history["seconds"]
        runs.append((history.history, _weights(model)))
    assert runs[0][0] == runs[1][0]
    for key in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][key], runs[1][1][key])


def test_small_cnn_huge_learning_rate_raises():
    X, y = _bars(64, seed=2)
    model = _small_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(NonFiniteLossError, match="smaller"):
            _fit(model, X, y, epochs=50, batch_size=16,
                 optimizer=SGD(model.parameters(), lr=1e30))


def test_short_epochs_get_no_progress_bar_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    X, y = _blobs()
    _fit(LinearModel(6, 3), X, y, epochs=2, verbose=1, file=io.StringIO())
    assert terminal.getvalue() == ""  # each epoch took well under the 1 s before a bar appears
