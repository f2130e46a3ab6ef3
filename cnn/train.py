"""The training loop the estimator and the scripts share, and batched inference.

``fit`` runs mini-batch training for a model with the ``Sequential``
interface (``forward``, ``backward``, ``zero_grad``, ``train``, ``eval``,
``state_dict``, ``load_state_dict``), a loss from ``cnn.losses`` and an
optimiser from ``cnn.optim``::

    history = fit(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1, momentum=0.9),
                  X, y, epochs=20, validation_fraction=0.1, early_stopping_patience=3, rng=0)
    history["val_accuracy"]            # one value per epoch

``predict_batches`` runs a model on a data set a chunk at a time, in eval
mode, so memory does not grow with the data set.

Everything random (the validation split, the order of the batches) comes from
one ``numpy.random.Generator``: the same seed gives the same run.
"""
import functools
import math
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager

import numpy as np

from .functional import _int, blas_on_one_thread
from .optim import ReduceLROnPlateau

__all__ = ["fit", "predict_batches", "evaluate", "History", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite (usually: the learning rate is too large).

    It is both a ``FloatingPointError`` and a ``ValueError``, so either catches it.
    """


class History:
    """What ``fit`` did, epoch by epoch (as Keras's ``History``).

    Attributes
    ----------
    history : dict of str to list
        One value per completed epoch for each of: ``"loss"`` (mean training
        loss over the epoch's batches, in training mode), ``"accuracy"``
        (classification only), ``"val_loss"`` and ``"val_accuracy"`` (with
        validation data), ``"lr"`` (the learning rate used in the epoch) and
        ``"seconds"``.
    epoch : list of int
        The numbers (from 1) of the completed epochs.
    monitor : str
        The history key early stopping and the best weights are judged on.
    best_epoch : int or None
        The epoch with the best ``monitor`` value so far.
    best_value : float or None
    stop_reason : {"completed", "early_stopping", "interrupted", "callback"}
    interrupted_at : tuple (epoch, batches_done, n_batches) or None
        Where Ctrl-C stopped training: in ``epoch``, after ``batches_done`` of
        its ``n_batches`` batches. ``epoch`` is in ``history`` (listed in
        ``self.epoch``) only if it was completed, validation included.
    restored_best_weights : bool
        Whether the weights of ``best_epoch`` were put back at the end.
    """

    def __init__(self, keys, monitor):
        self.history = {key: [] for key in keys}
        self.epoch = []
        self.monitor = monitor
        self.best_epoch = None
        self.best_value = None
        self.stop_reason = "completed"
        self.interrupted_at = None
        self.restored_best_weights = False

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        return (f"History(epochs={len(self.epoch)}, keys={list(self.history)}, "
                f"best_epoch={self.best_epoch}, stop_reason={self.stop_reason!r})")


# --------------------------------------------------------------------------
# Argument checks and small helpers
# --------------------------------------------------------------------------


def _model_dtype(model):
    """The dtype of the model's parameters (what its input must be), or None."""
    params = model.parameters()
    return params[0].data.dtype if params else None


def _as_batch(x, dtype):
    """A batch in the model's dtype: data sets are converted a batch at a time, never whole."""
    if dtype is not None and x.dtype != dtype:
        return x.astype(dtype)
    if dtype is None and x.dtype.kind in "biu":
        return x.astype(np.float32)
    return x


def _set_mode(model, training):
    if training:
        model.train()
    else:
        model.eval()


def _transformed(transform, x, rng):
    """transform(x, rng), checked to keep the batch's samples (None: x as it is)."""
    if transform is None:
        return x
    out = np.asarray(transform(x, rng))
    if out.ndim == 0 or len(out) != len(x):
        raise ValueError(f"transform must keep the batch's {len(x)} samples, got an output "
                         f"of shape {out.shape} for a batch of shape {x.shape}")
    return out


def _batch_bounds(n, batch_size):
    """(start, stop) of each batch of n samples; a last batch of one sample joins the one before.

    Batch normalisation cannot train on a single sample (the variance of one
    value per channel is zero), and a step on one sample is the noisiest of
    all, so 2 * 64 + 1 samples make batches of 64 and 65 (PyTorch's
    ``drop_last=True`` would instead leave one sample out of every epoch).
    Only a data set of one sample (or ``batch_size=1``) gives batches of one.
    """
    starts = list(range(0, n, batch_size))
    if batch_size > 1 and len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def _non_finite_state(model):
    """Whether a parameter or a floating-point buffer (running statistics) holds NaN or inf."""
    arrays = [p.data for p in model.parameters()]
    if hasattr(model, "buffers"):  # running statistics, for models that have them
        arrays += [b for b in model.buffers() if b.dtype.kind == "f"]
    return not all(np.isfinite(a).all() for a in arrays)


def _is_class_indices(y):
    return y.ndim == 1 and y.dtype.kind in "iu"


def _check_data(X, y, name_x="X", name_y="y"):
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(f"{name_x} must hold at least one sample, got shape {X.shape}")
    if len(y) != len(X):
        raise ValueError(f"{name_x} and {name_y} must have the same number of samples, "
                         f"got {len(X)} and {len(y)}")
    return X, y


def _train_validation_split(y, fraction, rng):
    """Index arrays (train, validation); stratified when y holds class indices.

    Each class sends ``round(fraction * n_class)`` of its samples to validation,
    so the two parts keep the class proportions (a class with one sample stays
    in training).
    """
    n = len(y)
    if _is_class_indices(y):
        chosen = []
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            rng.shuffle(members)
            chosen.append(members[:int(round(fraction * len(members)))])
        chosen = np.concatenate(chosen)
    else:
        chosen = rng.permutation(n)[:int(round(fraction * n))]
    in_validation = np.zeros(n, dtype=bool)
    in_validation[chosen] = True
    train, validation = np.flatnonzero(~in_validation), np.flatnonzero(in_validation)
    if len(validation) == 0 or len(train) == 0:
        raise ValueError(f"validation_fraction={fraction} of {n} samples leaves an empty "
                         f"{'validation' if len(validation) == 0 else 'training'} set")
    return train, validation


# --------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------


def _blas_on_one_thread(func):
    """Decorate func to run in blas_on_one_thread()."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with blas_on_one_thread():
            return func(*args, **kwargs)
    return wrapper


@_blas_on_one_thread
def predict_batches(model, X, batch_size=256):
    """The model's outputs on X, computed ``batch_size`` samples at a time in eval mode.

    Only the output array is as large as the data set: each batch's activations
    are freed before the next (and in eval mode the layers keep no cache).
    The model's mode (train or eval) is restored afterwards.

    Parameters
    ----------
    model : Sequential
    X : ndarray of shape (n_samples, ...)
        Converted to the model's dtype a batch at a time (so a uint8 image
        array or a memory map stays as it is).
    batch_size : int, default=256

    Returns
    -------
    ndarray of shape (n_samples, ...) in the model's dtype
    """
    X = np.asarray(X)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(f"X must hold at least one sample, got shape {X.shape}")
    batch_size = _int(batch_size, "batch_size", 1)
    dtype = _model_dtype(model)
    with _eval_mode(model):
        out = None
        for start in range(0, len(X), batch_size):
            batch_out = model.forward(_as_batch(X[start:start + batch_size], dtype))
            if out is None:  # the output shape is known once a batch has gone through
                out = np.empty((len(X),) + batch_out.shape[1:], dtype=batch_out.dtype)
            out[start:start + len(batch_out)] = batch_out
    return out


# A model's mode is shared by every thread using it: threads predicting with one
# model at once share one eval period, which the last of them ends by putting
# back the mode from before the first. (Each restoring the mode it found would
# switch a model in training mode back to training -- Dropout dropping,
# BatchNorm updating its statistics -- under another thread's forward pass.)
_mode_lock = threading.Lock()
_eval_users = {}  # id(model) -> [threads inside, the mode before the first]


@contextmanager
def _eval_mode(model):
    """The model in eval mode; its former mode is back once no thread is inside."""
    key = id(model)  # the model is alive, so its id is its own, while an entry exists
    with _mode_lock:
        entry = _eval_users.get(key)
        if entry is None:
            entry = _eval_users[key] = [0, getattr(model, "training", False)]
            model.eval()
        entry[0] += 1
    try:
        yield
    finally:
        with _mode_lock:
            entry[0] -= 1
            if entry[0] == 0:
                del _eval_users[key]
                _set_mode(model, entry[1])


@_blas_on_one_thread
def evaluate(model, loss_fn, X, y, batch_size=256):
    """Loss and accuracy of the model on (X, y), in eval mode.

    Parameters
    ----------
    model : Sequential
    loss_fn : CrossEntropyLoss or MSELoss
    X : ndarray of shape (n_samples, ...)
    y : ndarray of shape (n_samples,) or (n_samples, ...)
    batch_size : int, default=256

    Returns
    -------
    loss : float
    accuracy : float or None
        The fraction of samples whose largest output is the target class;
        None when y does not hold class indices.
    """
    X, y = _check_data(X, y)
    pred = predict_batches(model, X, batch_size)
    loss = float(loss_fn(pred, y))
    accuracy = None
    if _is_class_indices(y) and pred.ndim == 2:
        accuracy = float(np.mean(np.argmax(pred, axis=1) == y))
    return loss, accuracy


# --------------------------------------------------------------------------
# Ctrl-C and progress display
# --------------------------------------------------------------------------


class _StopRequest:
    """Whether Ctrl-C asked the training loop to stop after the current batch."""

    def __init__(self):
        self.requested = False
        # The loops sharing this request; the outermost one reports the interruption.
        self.depth = 0


@contextmanager
def _ctrl_c_stops_after_batch():
    """While training, the first Ctrl-C asks the loop to stop after the current batch.

    Yields the ``_StopRequest`` to check after each batch. A second Ctrl-C
    raises KeyboardInterrupt at once, which the loop also handles. A loop
    inside another one (``fit`` run an epoch at a time by ``CNNClassifier``)
    shares the outer one's request, so that a Ctrl-C between two inner calls
    is not lost. Signal handlers can only be set from the main thread, and a
    handler the user installed is left alone.
    """
    main = threading.current_thread() is threading.main_thread()
    # (another thread's training is not the main thread's to stop)
    enclosing = getattr(signal.getsignal(signal.SIGINT), "stop_request", None) if main else None
    stop = enclosing if enclosing is not None else _StopRequest()
    stop.depth += 1
    try:
        if (enclosing is not None or not main
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield stop
            return

        def handler(signum, frame):
            if stop.requested:
                raise KeyboardInterrupt  # the second Ctrl-C: stop now
            stop.requested = True

        handler.stop_request = stop
        signal.signal(signal.SIGINT, handler)
        try:
            yield stop
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    finally:
        stop.depth -= 1


class _ProgressBar:
    """A one-line progress bar on stderr for long epochs, redrawn at most 10 times a second."""

    def __init__(self, enabled, stream, delay):
        self.enabled = enabled
        self.stream = stream
        self.delay = delay  # seconds before a bar appears: short epochs get none
        self.shown = False

    def update(self, prefix, done, total, loss, started):
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - started
        if elapsed < self.delay or (self.shown and now - self._last < 0.1 and done < total):
            return
        self._last = now
        width = 30
        filled = int(width * done / total)
        eta = elapsed / done * (total - done)
        line = (f"\r{prefix} [{'=' * filled}{'.' * (width - filled)}] {done}/{total}"
                f" - loss: {loss:.4f} - eta {eta:.0f}s")
        self.stream.write(line)
        self._width = len(line)
        self.stream.flush()
        self.shown = True

    def clear(self):
        if self.shown:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self.shown = False


def _format_logs(epoch, epochs, logs):
    seconds = logs["seconds"]
    parts = [f"Epoch {epoch:>{len(str(epochs))}}/{epochs}",
             f"{seconds:.1f}s" if seconds >= 1 else f"{1000 * seconds:.0f}ms"]
    for key, value in logs.items():
        if key == "lr":
            parts.append(f"lr: {value:.3g}")
        elif key != "seconds":
            parts.append(f"{key}: {value:.4f}")
    return " - ".join(parts)


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------


@_blas_on_one_thread
def fit(model, loss_fn, optimizer, X, y, *, epochs=10, batch_size=32, rng=None,
        validation_data=None, validation_fraction=None, scheduler=None,
        early_stopping_patience=None, monitor=None, min_delta=0.0,
        restore_best_weights=True, shuffle=True, eval_batch_size=256, callbacks=None,
        verbose=1, file=None, transform=None):
    """Train a model with mini-batches; return the per-epoch history.

    Each epoch visits the training samples once in a new random order, in
    batches of ``batch_size``: forward, loss, backward, optimiser step. The
    last batch may be smaller; a last batch of one sample is merged into the
    one before, which then holds ``batch_size + 1``: batch normalisation
    cannot train on one sample, and merging it, unlike dropping it, still
    shows every sample each epoch. After the epoch the weights are checked to
    be finite, the validation loss is computed in eval mode, the schedule
    steps and early stopping decides.

    Parameters
    ----------
    model : Sequential
        Anything with ``forward``, ``backward``, ``parameters``, ``zero_grad``,
        ``train``, ``eval``, ``state_dict`` and ``load_state_dict``.
    loss_fn : CrossEntropyLoss or MSELoss
    optimizer : SGD or Adam
        Built on ``model.parameters()``.
    X : ndarray of shape (n_samples, ...)
        Converted to the model's dtype one batch at a time (after ``transform``).
    y : ndarray of shape (n_samples,) of int (class indices) or (n_samples, ...)
        Integer class indices make it a classification: accuracies are reported
        and a validation split is stratified.
    epochs : int, default=10
    batch_size : int, default=32
    rng : int, numpy.random.Generator or None, default=None
        The source of every random choice (split, batch order); a seed makes
        the run repeatable. None draws fresh entropy.
    validation_data : (X_val, y_val), default=None
    validation_fraction : float in (0, 1), default=None
        Hold out this fraction of (X, y) for validation instead (stratified for
        classification). Not with ``validation_data``.
    scheduler : StepLR, CosineAnnealingLR or ReduceLROnPlateau, default=None
        Stepped once per epoch; ``ReduceLROnPlateau`` is given the ``monitor`` value.
    early_stopping_patience : int, default=None
        Stop after this many epochs in a row without improvement of ``monitor``
        (by more than ``min_delta``). None trains all ``epochs``.
    monitor : str, default=None
        The history key that judges "better": ``"val_loss"`` when there is
        validation data, else ``"loss"``. Keys ending in "accuracy" are
        maximised, the others minimised.
    min_delta : float, default=0.0
    restore_best_weights : bool, default=True
        With early stopping, and when Ctrl-C stops training, put back the
        weights of the best epoch (the model's ``state_dict`` is copied each
        time the monitored value improves). Without early stopping a run that
        completes keeps its last weights.
    shuffle : bool, default=True
        Visit the samples in a new random order each epoch.
    eval_batch_size : int, default=256
        Batch size of the validation pass.
    callbacks : list of callable, default=None
        Each is called as ``callback(epoch, logs)`` after every epoch (``logs``
        the epoch's values); returning True stops training.
    verbose : int, default=1
        0 silent; 1 a line per epoch (and a progress bar for epochs longer than
        a second when stderr is a terminal); 2 a progress bar always.
    file : file-like, default=None
        Where the epoch lines go (sys.stdout when None). The bar goes to stderr.
    transform : callable or None, default=None
        Applied to each training batch as ``transform(x, rng)``, as in
        ``cnn.data.iterate_minibatches`` (a transform of ``cnn.data`` or a
        ``Compose`` of them): ``x`` is the batch as ``X`` holds it (uint8
        pixels stay uint8), ``rng`` the run's generator, so a seed repeats the
        augmentation too. What it returns, converted to the model's dtype, is
        what the model trains on; it must keep the number of samples. A
        normalisation or an augmentation done a batch at a time, so that the
        transformed data set never exists as a whole. The validation data is
        *not* transformed: give it ready for the model.

    Returns
    -------
    History

    Raises
    ------
    NonFiniteLossError
        When a batch's loss is NaN or infinite, or when the weights (or a
        floating-point buffer, such as batch norm's running statistics) are
        NaN or infinite at the end of an epoch (the best weights so far are
        put back first when ``restore_best_weights``).
    ValueError
        Bad arguments; also a batch of one sample for a model with batch
        normalisation (from the layer: one value per channel has no variance).
    """
    # ---------------------------------------------------------------- checks
    X, y = _check_data(X, y)
    epochs = _int(epochs, "epochs", 1)
    batch_size = _int(batch_size, "batch_size", 1)
    eval_batch_size = _int(eval_batch_size, "eval_batch_size", 1)
    verbose = _int(verbose, "verbose", 0)
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable or None, got {transform!r}")
    if early_stopping_patience is not None:
        early_stopping_patience = _int(early_stopping_patience, "early_stopping_patience", 1)
    if validation_data is not None and validation_fraction is not None:
        raise ValueError("give validation_data or validation_fraction, not both")
    if validation_fraction is not None and not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if getattr(loss_fn, "reduction", "mean") == "none":
        raise ValueError("loss_fn must reduce the batch to one number: reduction='none' "
                         "cannot train")
    rng = np.random.default_rng(rng)  # an int seeds a new generator; a Generator is used as is
    classification = _is_class_indices(y)

    # ---------------------------------------------------------------- the data
    train_index = np.arange(len(X))
    X_val = y_val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        X_val, y_val = _check_data(*validation_data, name_x="X_val", name_y="y_val")
    elif validation_fraction is not None:
        train_index, val_index = _train_validation_split(y, validation_fraction, rng)
        X_val, y_val = X[val_index], y[val_index]
    has_validation = X_val is not None

    keys = ["loss"] + (["accuracy"] if classification else [])
    if has_validation:
        keys += ["val_loss"] + (["val_accuracy"] if classification else [])
    keys += ["lr", "seconds"]
    if monitor is None:
        monitor = "val_loss" if has_validation else "loss"
    if monitor not in keys or monitor in ("lr", "seconds"):
        raise ValueError(f"monitor must be one of {[k for k in keys if k not in ('lr', 'seconds')]}"
                         f", got {monitor!r}")
    maximise = monitor.endswith("accuracy")
    history = History(keys, monitor)

    dtype = _model_dtype(model)
    bounds = _batch_bounds(len(train_index), batch_size)
    n_batches = len(bounds)
    out = file if file is not None else sys.stdout
    bar = _ProgressBar(enabled=verbose >= 2 or (verbose >= 1 and sys.stderr.isatty()),
                       stream=sys.stderr, delay=0.0 if verbose >= 2 else 1.0)
    was_training = getattr(model, "training", True)
    best_state = None
    epochs_without_improvement = 0

    def restore_best():
        if restore_best_weights and best_state is not None:
            model.load_state_dict(best_state)
            history.restored_best_weights = True

    # ---------------------------------------------------------------- epochs
    epoch = batches_done = 0
    mid_batch = False  # an exception between zero_grad and step leaves a batch half done
    nested = False  # inside a loop that reports Ctrl-C itself (CNNClassifier.fit)
    try:
        with _ctrl_c_stops_after_batch() as stop:
            nested = stop.depth > 1
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                lr = optimizer.lr
                order = rng.permutation(train_index) if shuffle else train_index
                model.train()
                loss_sum, n_correct, n_seen, batches_done = 0.0, 0, 0, 0
                for batch, (start, end) in enumerate(bounds, 1):
                    mid_batch = True
                    index = order[start:end]
                    x_batch = _as_batch(_transformed(transform, X[index], rng), dtype)
                    y_batch = y[index]
                    model.zero_grad()
                    pred = model.forward(x_batch)
                    loss = loss_fn(pred, y_batch)
                    if not np.isfinite(loss):
                        restore_best()
                        raise NonFiniteLossError(_non_finite_message(
                            loss, epoch, batch, n_batches, lr, x_batch, history))
                    model.backward(loss_fn.backward())
                    optimizer.step()
                    mid_batch = False
                    batches_done = batch
                    loss_sum += loss * len(index)
                    n_seen += len(index)
                    if classification:
                        n_correct += int(np.count_nonzero(np.argmax(pred, axis=1) == y_batch))
                    bar.update(f"Epoch {epoch}/{epochs}", batch, n_batches,
                               loss_sum / n_seen, started)
                    if stop.requested and batch < n_batches:
                        raise KeyboardInterrupt  # Ctrl-C was pressed: stop after this batch
                bar.clear()

                # ---------------------------------------------- end of an epoch
                # Each loss was finite, but the step after the last one may still
                # have overflowed the weights (checked once an epoch: it is cheap).
                if _non_finite_state(model):
                    restore_best()
                    raise NonFiniteLossError(_non_finite_weights_message(epoch, lr, history))
                logs = {"loss": loss_sum / n_seen}
                if classification:
                    logs["accuracy"] = n_correct / n_seen
                if has_validation:
                    val_loss, val_accuracy = evaluate(model, loss_fn, X_val, y_val,
                                                      eval_batch_size)
                    logs["val_loss"] = val_loss
                    if classification:
                        logs["val_accuracy"] = val_accuracy
                logs["lr"] = lr
                logs["seconds"] = time.perf_counter() - started
                for key in keys:
                    history.history[key].append(logs[key])
                history.epoch.append(epoch)
                if verbose:
                    print(_format_logs(epoch, epochs, logs), file=out, flush=True)

                value = logs[monitor]
                if _improves(value, history.best_value, min_delta, maximise):
                    history.best_epoch, history.best_value = epoch, value
                    epochs_without_improvement = 0
                    if restore_best_weights:
                        best_state = {k: np.array(v, copy=True)
                                      for k, v in model.state_dict().items()}
                else:
                    epochs_without_improvement += 1

                if scheduler is not None:
                    if isinstance(scheduler, ReduceLROnPlateau):  # it needs the metric
                        scheduler.step(value)
                    else:
                        scheduler.step()
                if any(callback(epoch, dict(logs)) is True for callback in callbacks or ()):
                    history.stop_reason = "callback"
                    break
                if stop.requested:  # Ctrl-C during the last batch or the validation
                    raise KeyboardInterrupt
                if early_stopping_patience is not None and \
                        epochs_without_improvement >= early_stopping_patience:
                    history.stop_reason = "early_stopping"
                    if verbose:
                        print(f"Early stopping: no improvement of {monitor} for "
                              f"{epochs_without_improvement} epochs; best epoch "
                              f"{history.best_epoch} ({monitor} {history.best_value:.4f})",
                              file=out, flush=True)
                    break
    except KeyboardInterrupt:
        bar.clear()
        history.stop_reason = "interrupted"
        history.interrupted_at = (epoch, batches_done, n_batches)
        restore_best()
        if history.restored_best_weights:
            kept = f"the weights of epoch {history.best_epoch} (best {monitor})"
        elif mid_batch:
            kept = "the current weights (the interrupted batch may have updated some of them)"
        else:
            kept = "the current weights"
        if not nested:
            warnings.warn(f"Training interrupted during epoch {epoch} (after {batches_done} of "
                          f"its {n_batches} batches); {len(history.epoch)} complete epochs "
                          f"recorded, keeping {kept}.", RuntimeWarning, stacklevel=2)
    finally:
        bar.clear()
        _set_mode(model, was_training)

    if history.stop_reason != "interrupted" and early_stopping_patience is not None:
        restore_best()
    return history


def _improves(value, best, min_delta, maximise):
    if best is None:
        return not math.isnan(value)
    return value > best + min_delta if maximise else value < best - min_delta


def _non_finite_weights_message(epoch, lr, history):
    restored = (f" The weights of epoch {history.best_epoch} were restored."
                if history.restored_best_weights else "")
    return (f"The weights became NaN or infinite at the end of epoch {epoch} (every batch's "
            f"loss was finite: the last batch's update overflowed them). The learning rate "
            f"({lr:g}) is probably too large: try a smaller one (e.g. {lr / 10:g}).{restored}")


def _non_finite_message(loss, epoch, batch, n_batches, lr, x_batch, history):
    where = f"at epoch {epoch} (batch {batch} of {n_batches})"
    if x_batch.dtype.kind == "f" and not np.all(np.isfinite(x_batch)):
        return f"The training loss is {loss} {where}: the input batch holds NaN or infinity"
    restored = (f" The weights of epoch {history.best_epoch} were restored."
                if history.restored_best_weights else "")
    return (f"The training loss became {loss} {where}. The learning rate ({lr:g}) is "
            f"probably too large: try a smaller one (e.g. {lr / 10:g}).{restored}")
