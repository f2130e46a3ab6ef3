"""Reliability, tested for real: files that survive a kill and refuse damage, Ctrl-C during
training, inference from several threads, and memory that follows the batch, not the data.

Kills and Ctrl-C are real signals sent to child processes; the peak memory of training is
measured in child processes too, so that nothing else this test run allocated counts.
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_info, threadpool_limits

import cnn.functional as F
import cnn.layers as L
from cnn import CNNClassifier, Sequential, _ops
from cnn.train import blas_on_one_thread, predict_batches

ROOT = Path(__file__).resolve().parents[1]
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals and fork")


def _child(code, *args, env=None):
    """A Python child running `code` (with args in sys.argv[1:]) from the repository."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            cwd=ROOT, env=environ, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=120):
    """The child's stdout once it has exited successfully."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err[-3000:]}"
    return out


def _last_json(out):
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def _same_state(a, b):
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k])
        for k in a)


# ==========================================================================================
# 2. Model files
# ==========================================================================================

# Imports once, then forks a child per kill that saves two models of a kind in turn,
# over one path, until the parent kills it (SIGKILL: no cleanup runs). Commands on
# stdin, one JSON list a line: [kind, model A's path, model B's path, target path].
_SAVER = """
import json, os, sys
from cnn import CNNClassifier, Sequential
print("ready", flush=True)
for line in sys.stdin:
    kind, a_path, b_path, target = json.loads(line)
    cls = Sequential if kind == "sequential" else CNNClassifier
    models = [cls.load(a_path), cls.load(b_path)]
    if not os.path.exists(target):
        models[0].save(target)  # a file is in place before the first kill
    pid = os.fork()
    if pid == 0:
        try:
            os.write(1, f"saving {os.getpid()}\\n".encode())
            i = 0
            while True:
                models[i % 2].save(target)
                i += 1
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    print(f"ended by signal {os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}",
          flush=True)
"""


def _two_models(kind, digits, directory):
    """Paths of two different saved models of a kind, and a check that a model is one of them."""
    if kind == "sequential":
        # 4 MB of weights: a save takes milliseconds, writing and syncing
        models = [Sequential(L.Linear(512, 1024, rng=seed), L.ReLU(), L.BatchNorm1d(1024),
                             L.Linear(1024, 512, rng=seed + 10)) for seed in (0, 1)]
        models[1][2].running_mean[:] = 1.0

        def state(m):
            return m.state_dict()
    else:
        X, y = digits
        # the default network on digits, as the README trains it (232 KB)
        models = [CNNClassifier(random_state=seed, max_iter=1).fit(X[:200], y[:200])
                  for seed in (0, 1)]

        def state(m):
            return {**{f"model.{k}": v for k, v in m.model_.state_dict().items()},
                    "classes_": m.classes_, "input_mean_": m.input_mean_,
                    "input_std_": m.input_std_, "loss_curve_": np.array(m.loss_curve_)}
    paths = [directory / f"{kind}_{i}.npz" for i in range(2)]
    for model, path in zip(models, paths):
        model.save(path)
    states = [state(m) for m in models]
    assert not _same_state(*states)

    def which(loaded):
        s = state(loaded)
        return [i for i in range(2) if _same_state(s, states[i])]
    return paths, which


@posix_only
def test_a_save_killed_at_random_moments_never_leaves_a_broken_model(tmp_path, digits):
    """SIGKILL mid-save, 12 times per kind: the file is always one whole model, bit for bit.

    A killed save can leave its temporary file behind (nothing runs after SIGKILL), as a
    hidden ``.model.npz.<random>.tmp``: never under the model's name, never ``*.npz``.
    """
    kills_per_kind = 12
    rng = np.random.default_rng(0)
    proc = _child(_SAVER)
    leftovers = 0
    for kind in ("sequential", "classifier"):
        models_dir, save_dir = tmp_path / f"{kind}_models", tmp_path / kind
        models_dir.mkdir()
        save_dir.mkdir()
        paths, which = _two_models(kind, digits, models_dir)
        target = save_dir / "model.npz"
        if kind == "sequential":
            assert proc.stdout.readline() == "ready\n"
        for _ in range(kills_per_kind):
            proc.stdin.write(json.dumps([kind, *map(str, paths), str(target)]) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            pid = int(re.fullmatch(r"saving (\d+)\n", line).group(1))
            time.sleep(rng.uniform(0.0, 0.04))  # a few saves' time: anywhere in a save
            os.kill(pid, signal.SIGKILL)
            assert proc.stdout.readline() == f"ended by signal {int(signal.SIGKILL)}\n"
            loaded = (Sequential if kind == "sequential" else CNNClassifier).load(target)
            assert len(which(loaded)) == 1, "the file on disk is neither of the two models"
        others = sorted(p.name for p in save_dir.iterdir() if p.name != "model.npz")
        for name in others:
            assert re.fullmatch(r"\.model\.npz\.[0-9a-f]+\.tmp", name), name
        leftovers += len(others)
    _finish(proc)
    # Evidence that the kills landed inside saves: some left their temporary file.
    assert leftovers >= 1


def test_a_saved_file_gets_the_permissions_of_any_new_file(tmp_path, monkeypatch):
    """Mode 0666 less the umask, as open() gives, without reading the umask: os.umask
    sets it to read it, for every thread of the process at once."""
    reference = tmp_path / "reference"
    reference.write_bytes(b"")

    def umask(mask):
        raise AssertionError("save changed the process's umask")

    monkeypatch.setattr(os, "umask", umask)
    Sequential(L.Linear(2, 2, rng=0)).save(tmp_path / "model.npz")
    assert (tmp_path / "model.npz").stat().st_mode == reference.stat().st_mode


def _sequential_file(directory):
    model = Sequential(L.Conv2d(1, 2, 3, rng=0), L.BatchNorm2d(2), L.ReLU(), L.Flatten(),
                       L.Linear(8, 3, rng=0))
    path = directory / "good.npz"
    model.save(path)
    return model, path


def _zip_structure_positions(data):
    """Byte offsets of every zip header field (local headers, central directory, end record)."""
    positions = set()
    for signature, length in ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46), (b"PK\x05\x06", 22),
                              (b"PK\x06\x06", 56), (b"PK\x06\x07", 20)):
        for match in re.finditer(re.escape(signature), data):
            positions.update(range(match.start(), min(match.start() + length, len(data))))
    return positions


def _assert_damage_is_refused(data, path, load, is_original, positions, lengths):
    """Flipped bytes and truncations: each a ValueError naming the file, or the same model."""
    outcomes = {"refused": 0, "unchanged": 0}
    for n in lengths:
        path.write_bytes(data[:n])
        with pytest.raises(ValueError) as info:
            load(path)
        assert str(path) in str(info.value), (n, info.value)
        outcomes["refused"] += 1
    for pos in positions:
        damaged = bytearray(data)
        damaged[pos] ^= 1 << (pos % 8)
        path.write_bytes(bytes(damaged))
        try:
            loaded = load(path)
        except ValueError as exc:  # anything else fails the test
            assert str(path) in str(exc), (pos, exc)
            outcomes["refused"] += 1
        else:  # a byte zip ignores (a timestamp, a local header's copy of a size)
            assert is_original(loaded), f"flipping byte {pos} loaded a different model"
            outcomes["unchanged"] += 1
    return outcomes


def test_damaged_model_files_are_refused_or_read_exactly(tmp_path):
    """Truncated anywhere, or any bit flipped: a ValueError naming the file, or the very model.

    Every other byte of the zip headers is flipped (a different bit from byte to byte),
    and a sample of the rest (the weights and the metadata, which the zip's CRC-32
    checks cover). Done exhaustively once (two bits of every byte of this 5.5 KB file and
    785 truncations): 10,402 refusals naming the file, 1,367 loads of the very model,
    nothing else.
    """
    model, good = _sequential_file(tmp_path)
    data = good.read_bytes()
    state = model.state_dict()
    rng = np.random.default_rng(0)
    positions = sorted(set(sorted(_zip_structure_positions(data))[::2]) |
                       set(rng.choice(len(data), 100, replace=False).tolist()))
    lengths = sorted({0, 1, 4, 22, 30, 100, len(data) // 2, len(data) - 22, len(data) - 1} |
                     set(rng.choice(len(data), 20, replace=False).tolist()))
    outcomes = _assert_damage_is_refused(
        data, tmp_path / "bad.npz", Sequential.load,
        lambda loaded: _same_state(loaded.state_dict(), state), positions, lengths)
    assert outcomes["refused"] > len(lengths)


def _npz(path, arrays):
    np.savez(path, **arrays)
    return path


def test_model_files_that_do_not_fit_their_architecture_are_refused(tmp_path):
    """What test_model's bad-file test leaves out: dtypes, the metadata's shape, huge layers."""
    model, good = _sequential_file(tmp_path)
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__cnn_model__"][()]))

    def with_meta(m):
        return {**arrays, "__cnn_model__": np.array(json.dumps(m))}

    cases = {
        # weights are never cast: a float64 or an integer array is not a float32 weight
        "float64.npz": ({**arrays, "0.weight": arrays["0.weight"].astype(np.float64)},
                        r"'0.weight' has dtype float64, expected float32"),
        "int.npz": ({**arrays, "4.bias": np.zeros(3, np.int32)},
                    r"'4.bias' has dtype int32, expected float32"),
        "tracked.npz": ({**arrays, "1.num_batches_tracked": np.array(0.0)},
                        r"'1.num_batches_tracked' has dtype float64, expected int64"),
        "list_meta.npz": ({**arrays, "__cnn_model__": np.array("[1, 2]")}, "format is None"),
        "bytes_meta.npz": ({**arrays, "__cnn_model__": np.frombuffer(b"{}", np.uint8)},
                           "not a JSON string"),
        "deep_meta.npz": ({**arrays, "__cnn_model__": np.array("[" * 100000 + "]" * 100000)},
                          "not valid JSON"),
        "no_architecture.npz": (with_meta({k: v for k, v in meta.items()
                                           if k != "architecture"}), "no architecture"),
        "architecture_list.npz": (with_meta({**meta, "architecture": [1]}),
                                  "architecture cannot be built"),
        "bad_argument.npz": (with_meta({**meta, "architecture": {"layers": [
            {"class": "Linear", "config": {"in_features": 2, "out_features": 3,
                                           "bias": True, "dtype": "object"}}]}}),
            "architecture cannot be built"),
        # 10^7 x 10^7 weights: refused, not a crash nor an attempt to fill 400 TB
        "huge.npz": (with_meta({**meta, "architecture": {"layers": [
            {"class": "Linear", "config": {"in_features": 10**7, "out_features": 10**7}}]}}),
            "architecture cannot be built: .*MemoryError"),
    }
    for name, (content, match) in cases.items():
        path = _npz(tmp_path / name, content)
        with pytest.raises(ValueError, match=match) as info:
            Sequential.load(path)
        assert str(path) in str(info.value), name


@pytest.fixture(scope="module")
def saved_classifier(digits, tmp_path_factory):
    X, y = digits
    clf = CNNClassifier(conv_channels=(2,), dense_units=(), max_iter=1, random_state=0)
    clf.fit(X[:100], y[:100])
    path = tmp_path_factory.mktemp("classifier") / "clf.npz"
    clf.save(path)
    return clf, path


def test_damaged_classifier_files_are_refused_or_read_exactly(saved_classifier, tmp_path,
                                                              digits):
    """The same for CNNClassifier.load (fewer positions: the zip is read by the same code)."""
    clf, good = saved_classifier
    data = good.read_bytes()
    X = digits[0][:20]
    expected = clf.predict_proba(X)
    state = clf.model_.state_dict()

    def is_original(loaded):
        return (_same_state(loaded.model_.state_dict(), state)
                and np.array_equal(loaded.predict_proba(X), expected)
                and loaded.get_params() == clf.get_params() and loaded.n_iter_ == clf.n_iter_)

    rng = np.random.default_rng(1)
    structure = sorted(_zip_structure_positions(data))
    positions = sorted(set(structure[::8]) |
                       set(rng.choice(len(data), 40, replace=False).tolist()))
    lengths = sorted({0, 1, 30, len(data) // 2, len(data) - 1} |
                     set(rng.choice(len(data), 8, replace=False).tolist()))
    _assert_damage_is_refused(data, tmp_path / "bad.npz", CNNClassifier.load, is_original,
                              positions, lengths)


def test_classifier_files_with_wrong_contents_are_refused(saved_classifier, tmp_path):
    """Every entry is checked: keys, shapes, dtypes, parameters, fitted attributes."""
    clf, good = saved_classifier
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__cnn_estimator__"][()]))

    def with_meta(**changes):
        return {**arrays, "__cnn_estimator__": np.array(json.dumps({**meta, **changes}))}

    def without(key):
        return {k: v for k, v in arrays.items() if k != key}

    rng = np.random.default_rng(0)
    cases = {
        "empty.npz": (None, "not a saved CNNClassifier"),
        "foreign.npz": ({"a": rng.standard_normal(3), "b": rng.standard_normal((2, 2))},
                        "no '__cnn_estimator__' entry"),
        "pickled.npz": ({**arrays, "classes_": np.array([{"x": 1}, 2], dtype=object)},
                        "pickled"),
        "newer.npz": (with_meta(version=2), "format version 2 is not supported"),
        "sequential.npz": ("sequential", "no '__cnn_estimator__' entry"),
        "not_json.npz": ({**arrays, "__cnn_estimator__": np.array("{oops")}, "not valid JSON"),
        "extra_key.npz": ({**arrays, "secret": np.zeros(2)}, r"unexpected entries \['secret'\]"),
        "extra_weight.npz": ({**arrays, "model.9.weight": np.zeros(2, np.float32)},
                             "unexpected key.*'9.weight'"),
        "missing_weight.npz": (without("model.0.weight"), "missing key.*'0.weight'"),
        "missing_classes.npz": (without("classes_"), "no classes_"),
        "weight_shape.npz": ({**arrays, "model.0.weight": np.zeros((2, 1, 2, 2), np.float32)},
                             r"'0.weight'\] has shape \(2, 1, 2, 2\)"),
        "weight_dtype.npz": ({**arrays, "model.0.weight":
                              arrays["model.0.weight"].astype(np.float64)},
                             "'0.weight' has dtype float64, expected float32"),
        "mean_shape.npz": ({**arrays, "input_mean_": np.zeros(3)},
                           r"input_mean_ must be 1 finite float64 values, got float64 of shape"),
        "std_zero.npz": ({**arrays, "input_std_": np.zeros(1)}, "input_std_ must be positive"),
        "mean_nan.npz": ({**arrays, "input_mean_": np.array([np.nan])}, "input_mean_ must be"),
        "classes_3.npz": ({**arrays, "classes_": np.arange(3)},
                          r"outputs of shape \(10,\) for 3 classes"),
        "classes_unsorted.npz": ({**arrays, "classes_": np.arange(10)[::-1].copy()},
                                 "sorted, distinct"),
        "classes_2d.npz": ({**arrays, "classes_": np.arange(10).reshape(2, 5)},
                           "classes_ must be"),
        "image_shape.npz": (with_meta(input_shape_=[1, 1, 64], n_features_in_=64),
                            "does not take images of shape"),
        "features.npz": (with_meta(n_features_in_=65), "n_features_in_ 65"),
        "unknown_param.npz": (with_meta(params={**meta["params"], "evil": 1}),
                              "parameters are not valid"),
        "bad_param.npz": (with_meta(params={**meta["params"], "max_iter": -1}),
                          "parameters are not valid.*max_iter"),
        "module.npz": (with_meta(params={**meta["params"], "module": "os.system"}),
                       "module None"),
        # a file must not set arbitrary attributes (here: shadow the predict method)
        "fitted_names.npz": (with_meta(fitted={**meta["fitted"], "predict": 1}),
                             "fitted attributes must be"),
    }
    for name, (content, match) in cases.items():
        path = tmp_path / name
        if content is None:
            path.write_bytes(b"")
        elif content == "sequential":
            clf.model_.save(path)
        else:
            _npz(path, content)
        with pytest.raises(ValueError, match=match) as info:
            CNNClassifier.load(path)
        assert str(path) in str(info.value), name


# ==========================================================================================
# 3. Ctrl-C during training
# ==========================================================================================

_INTERRUPTED_CLASSIFIER = """
import json, signal, warnings
import numpy as np
from sklearn.datasets import load_digits
from cnn import CNNClassifier

X, y = load_digits(return_X_y=True)
X, y = X[:400], y[:400]
params = dict(conv_channels=(4,), dense_units=(16,), learning_rate="constant", batch_size=16,
              n_iter_no_change=1000, random_state=0)
clf = CNNClassifier(max_iter=1000, verbose=True, **params)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    clf.fit(X, y)  # until the parent's SIGINT
result = {
    "n_iter": clf.n_iter_, "loss_curve": len(clf.loss_curve_), "t": clf.t_,
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "handler_restored": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    "score": clf.score(X, y),
}
# The best epoch so far (smallest training loss), trained again without interruption:
# the same seed and a constant rate make its first epochs these very epochs.
best = int(np.argmin(clf.loss_curve_)) + 1
reference = CNNClassifier(max_iter=best, **params)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # not converged in `best` epochs: expected
    reference.fit(X, y)
result.update(best=best, reference_score=reference.score(X, y),
              same_probabilities=bool(np.array_equal(clf.predict_proba(X),
                                                     reference.predict_proba(X))))
clf.set_params(verbose=False).partial_fit(X, y)  # the estimator goes on training
result["n_iter_after_partial_fit"] = clf.n_iter_
print(json.dumps(result))
"""

_INTERRUPTED_FIT = """
import json, signal, warnings
import numpy as np
from sklearn.datasets import load_digits
import cnn
from cnn.train import evaluate

X, y = load_digits(return_X_y=True)
X = (X[:500] / 16).astype(np.float32).reshape(-1, 1, 8, 8)
y = y[:500]
model = cnn.Sequential(cnn.Conv2d(1, 4, 3, padding=1, rng=0), cnn.ReLU(), cnn.MaxPool2d(2),
                       cnn.Flatten(), cnn.Linear(64, 10, rng=0))
loss_fn = cnn.CrossEntropyLoss()
states = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    history = cnn.fit(model, loss_fn, cnn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                      X[:400], y[:400], validation_data=(X[400:], y[400:]), epochs=1000,
                      batch_size=16, rng=0, verbose=1,
                      callbacks=[lambda epoch, logs: states.update({epoch: model.state_dict()})])
best = history.best_epoch
val_loss, val_accuracy = evaluate(model, loss_fn, X[400:], y[400:])
print(json.dumps({
    "epochs": len(history), "stop_reason": history.stop_reason,
    "interrupted_at": history.interrupted_at, "best_epoch": best,
    "best_is_min": best == int(np.argmin(history["val_loss"])) + 1,
    "restored": history.restored_best_weights,
    "weights_are_best": all(np.array_equal(v, states[best][k])
                            for k, v in model.state_dict().items()),
    "score_is_best": [val_loss, val_accuracy] == [history["val_loss"][best - 1],
                                                   history["val_accuracy"][best - 1]],
    "predicts": cnn.predict_batches(model, X).shape == (500, 10),
    "training_mode_kept": model.training,
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "handler_restored": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
}))
"""


def _interrupt_after_epoch(code, line_pattern, epoch=2):
    """Run a training child, SIGINT it once it has printed `epoch`'s line; (lines, result)."""
    proc = _child(code)
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, f"the child ended before epoch {epoch}:\n{proc.stderr.read()[-3000:]}"
        lines.append(line)
        if re.match(line_pattern.format(epoch=epoch), line):
            os.kill(proc.pid, signal.SIGINT)
            break
    out = _finish(proc)
    lines += out.splitlines(keepends=True)
    return lines, _last_json(out)


@posix_only
def test_ctrl_c_stops_the_classifier_with_the_best_weights_so_far():
    lines, r = _interrupt_after_epoch(_INTERRUPTED_CLASSIFIER, r"Epoch {epoch} - ")
    epochs_printed = sum(line.startswith("Epoch ") for line in lines)
    assert r["n_iter"] == r["loss_curve"] == epochs_printed >= 2
    assert r["t"] == 400 * r["n_iter"]
    # one warning, from the estimator, saying what was kept
    assert r["warnings"] == [
        f"RuntimeWarning: Training interrupted by the user in epoch {r['n_iter'] + 1}: "
        f"n_iter_={r['n_iter']} complete epochs, keeping the weights of epoch {r['best']} "
        f"(the smallest training loss)."]
    # the weights are exactly those of the best epoch: same outputs as a run that ended there
    assert r["same_probabilities"] and r["score"] == r["reference_score"]
    assert r["handler_restored"]
    assert r["n_iter_after_partial_fit"] == r["n_iter"] + 1


@posix_only
def test_ctrl_c_stops_cnn_fit_with_the_best_weights_so_far():
    lines, r = _interrupt_after_epoch(_INTERRUPTED_FIT, r"Epoch +{epoch}/1000 - ")
    epochs_printed = sum(line.startswith("Epoch ") for line in lines)
    assert r["stop_reason"] == "interrupted" and r["epochs"] == epochs_printed >= 2
    epoch, batches_done, n_batches = r["interrupted_at"]
    assert n_batches == 25 and epoch in (r["epochs"], r["epochs"] + 1)
    assert r["restored"] and r["best_is_min"] and r["weights_are_best"] and r["score_is_best"]
    assert r["predicts"] and r["training_mode_kept"] and r["handler_restored"]
    assert len(r["warnings"]) == 1
    assert re.fullmatch(rf"RuntimeWarning: Training interrupted during epoch {epoch} \(after "
                        rf"{batches_done} of its 25 batches\); {r['epochs']} complete epochs "
                        rf"recorded, keeping the weights of epoch {r['best_epoch']} \(best "
                        rf"val_loss\)\.", r["warnings"][0])


# ==========================================================================================
# 4. Threads
# ==========================================================================================


def _blas_threads():
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def _run_threads(target, n=4):
    """Run target(k) in n threads started together; re-raise the first exception."""
    barrier = threading.Barrier(n)
    errors = []

    def run(k):
        try:
            barrier.wait()
            target(k)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def small_classifier(digits):
    X, y = digits
    return CNNClassifier(conv_channels=(4, 8), dense_units=(16,), max_iter=2,
                         random_state=0).fit(X[:400], y[:400])


def test_predictions_from_four_threads_are_the_sequential_ones(small_classifier, digits):
    clf = small_classifier
    X = digits[0]
    # different and overlapping inputs, small (one kernel thread) and large (several)
    inputs = [X[:1], X[5:12], X[3:103], X[50:350], X[::-1][:600], X]
    expected = [(clf.predict_proba(x), clf.predict(x)) for x in inputs]
    blas_before = _blas_threads()
    mismatches = []

    def predict(k):
        for i in range(12):
            j = (k + i) % len(inputs)
            proba, labels = clf.predict_proba(inputs[j]), clf.predict(inputs[j])
            if not (np.array_equal(proba, expected[j][0]) and
                    np.array_equal(labels, expected[j][1])):
                mismatches.append((k, j))

    _run_threads(predict)
    assert mismatches == []
    # BLAS is back to its own thread count, not left on the one thread predictions use
    assert _blas_threads() == blas_before


def test_predict_batches_from_threads_on_a_model_in_training_mode():
    """Each call runs in eval mode; the mode the model had comes back once all are done."""
    model = Sequential(L.Conv2d(1, 8, 3, padding=1, rng=0), L.BatchNorm2d(8), L.ReLU(),
                       L.MaxPool2d(2), L.Flatten(), L.Dropout(0.5, rng=0), L.Linear(128, 10, rng=0))
    X = np.random.default_rng(0).standard_normal((400, 1, 8, 8)).astype(np.float32)
    expected = predict_batches(model, X, batch_size=50)
    assert model.training
    statistics = {k: v for k, v in model.state_dict().items() if k.startswith("1.")}
    mismatches = []

    def predict(k):
        for _ in range(10):
            if not np.array_equal(predict_batches(model, X, batch_size=50), expected):
                mismatches.append(k)

    _run_threads(predict)
    assert mismatches == []  # no call ran a layer in training mode (dropout, batch statistics)
    assert model.training
    assert _same_state({k: v for k, v in model.state_dict().items() if k.startswith("1.")},
                       statistics)


def test_blas_on_one_thread_is_shared_by_overlapping_threads():
    """The first thread in sets BLAS to one thread, the last one out restores it."""
    with threadpool_limits(limits=2, user_api="blas"):
        if not _blas_threads() or min(_blas_threads()) < 2:
            pytest.skip("no BLAS library here runs on 2 threads")
        original = _blas_threads()
        inside = threading.Barrier(4)
        seen = []
        order = [threading.Event() for _ in range(4)]

        def worker(k):
            with blas_on_one_thread():
                inside.wait()
                if k > 0:  # leave one after the other, the others still inside
                    order[k - 1].wait()
                seen.append(_blas_threads())
            order[k].set()

        _run_threads(worker)
        assert seen == [[1] * len(original)] * 4
        assert _blas_threads() == original


def test_the_kernels_let_other_python_threads_run():
    """While a kernel computes, another Python thread runs: every kernel releases the GIL.

    The switch interval is made so long that the GIL changes hands only when it is
    released; a thread counting in a loop then advances during a kernel only if the
    kernel released it. Without a release the count would stay exactly the same.
    """
    kernels = ["im2col_gemm", "gemm_col2im", "weight_grad", "depthwise_forward",
               "depthwise_backward_input", "depthwise_backward_weight", "max_pool2d_forward",
               "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward"]
    count = [0]
    stop = threading.Event()
    progress = dict.fromkeys(kernels, 0)
    real = {name: getattr(_ops, name) for name in kernels}

    def counting():
        while not stop.is_set():
            count[0] += 1
            time.sleep(1e-4)  # releases the GIL: the main thread never waits long for it

    def watched(name):
        def call(*args):
            before = count[0]
            out = real[name](*args)
            progress[name] += count[0] - before
            return out
        return call

    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 16, 32, 32), dtype=np.float32)
    weight = rng.standard_normal((16, 16, 3, 3), dtype=np.float32)
    depthwise = rng.standard_normal((16, 1, 3, 3), dtype=np.float32)
    interval = sys.getswitchinterval()
    counter = threading.Thread(target=counting)
    for name in kernels:
        setattr(_ops, name, watched(name))
    try:
        sys.setswitchinterval(1000.0)
        counter.start()
        # one OpenMP thread leaves a core to the counting thread
        with threadpool_limits(limits=1, user_api="openmp"):
            for _ in range(20):  # until each kernel has been seen releasing the GIL
                out = F.conv2d(x, weight, padding=1)
                F.conv2d_backward(out, x, weight, padding=1)
                out = F.conv2d(x, depthwise, padding=1, groups=16)
                F.conv2d_backward(out, x, depthwise, padding=1, groups=16)
                out, indices = F.max_pool2d(x, 2, return_indices=True)
                F.max_pool2d_backward(out, indices, x.shape)
                F.avg_pool2d_backward(F.avg_pool2d(x, 2), x.shape, 2)
                if all(progress.values()):
                    break
    finally:
        stop.set()
        counter.join()
        sys.setswitchinterval(interval)
        for name in kernels:
            setattr(_ops, name, real[name])
    assert all(progress.values()), progress


_FIT_ONE_THREAD = """
import sys
import numpy as np
from sklearn.datasets import load_digits
from cnn import CNNClassifier, _ops
assert _ops.max_threads() == 1
X, y = load_digits(return_X_y=True)
CNNClassifier(conv_channels=(4, 8), dense_units=(16,), max_iter=2, random_state=0).fit(
    X[:400], y[:400]).save(sys.argv[1])
"""


def test_fit_under_thread_limits_gives_the_same_model(small_classifier, digits, tmp_path):
    """threadpool_limits(1) and OMP_NUM_THREADS=1 train the same network, bit for bit.

    On more threads the network differs by rounding only: the weight gradients are sums
    over the batch, which each kernel thread adds up for its share of the images before
    the shares are added (test_only_weight_gradients_depend_on_the_thread_count).
    """
    X, y = digits
    child = _child(_FIT_ONE_THREAD, tmp_path / "one_thread.npz",
                   env={"OMP_NUM_THREADS": "1"})

    default = small_classifier  # the same parameters, on the default thread count
    with threadpool_limits(limits=1):
        assert _ops.max_threads() == 1
        limited = CNNClassifier(**default.get_params()).fit(X[:400], y[:400])
    _finish(child)
    one_thread = CNNClassifier.load(tmp_path / "one_thread.npz")
    assert _same_state(limited.model_.state_dict(), one_thread.model_.state_dict())
    assert_array_equal(limited.predict_proba(X), one_thread.predict_proba(X))
    assert limited.loss_curve_ == one_thread.loss_curve_
    # measured on 2 threads: 2.4e-7 on the weights, 3e-8 on the probabilities
    a, b = default.model_.state_dict(), limited.model_.state_dict()
    assert max(np.abs(a[k].astype(np.float64) - b[k]).max() for k in a) < 1e-5
    assert np.abs(default.predict_proba(X) - limited.predict_proba(X)).max() < 1e-5


def test_only_weight_gradients_depend_on_the_thread_count():
    """Outputs and input gradients are bit for bit the same on 1 thread and on several;
    weight and bias gradients differ by float32 rounding of their sums, no more."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 8, 8), dtype=np.float32)
    weight = rng.standard_normal((16, 8, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(16, dtype=np.float32)
    grad_out = rng.standard_normal((64, 16, 8, 8), dtype=np.float32)

    def run():
        return (F.conv2d(x, weight, bias, padding=1),
                *F.conv2d_backward(grad_out, x, weight, padding=1))

    many = run()
    with threadpool_limits(limits=1):
        one = run()
    for name, a, b in zip(("output", "input gradient"), many[:2], one[:2]):
        assert_array_equal(a, b, err_msg=name)
    # the sums of |terms| bound what any order of addition can change
    _, abs_weight, abs_bias = F.conv2d_backward(
        np.abs(grad_out).astype(np.float64), np.abs(x).astype(np.float64),
        weight.astype(np.float64), padding=1)
    eps = np.finfo(np.float32).eps
    for name, a, b, scale in (("weight gradient", many[2], one[2], abs_weight),
                              ("bias gradient", many[3], one[3], abs_bias)):
        assert np.all(np.abs(a.astype(np.float64) - b) <= 8 * eps * scale), name


# ==========================================================================================
# 6. Memory
# ==========================================================================================

_TRAIN_MEMORY = """
import json, sys
import numpy as np
import cnn
from cnn import Conv2d, Flatten, Linear, MaxPool2d, AvgPool2d, ReLU, Sequential

n, batch_size = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
X = np.empty((n, 1, 28, 28), np.float32)
rng.standard_normal(out=X, dtype=np.float32)
y = rng.integers(0, 10, n)
model = Sequential(AvgPool2d(2), Conv2d(1, 8, 3, padding=1, rng=0), ReLU(), MaxPool2d(2),
                   Flatten(), Linear(8 * 7 * 7, 10, rng=0))
optimizer = cnn.optim.SGD(model.parameters(), lr=0.01)


def peak_resident():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


# Reset the peak to what is resident now: the imports' own peak is forgotten, and the
# data set, which is resident, is in the baseline.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = peak_resident()
cnn.fit(model, cnn.CrossEntropyLoss(), optimizer, X, y, epochs=1, batch_size=batch_size,
        rng=0, verbose=0)
cnn.predict_batches(model, X, batch_size=batch_size)
print(json.dumps({"growth": peak_resident() - before, "data": X.nbytes,
                  "activations": model.summary((1, 28, 28), batch_size=batch_size,
                                               print_fn=None).activation_bytes}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_training_memory_follows_the_batch_not_the_data_set():
    """Peak memory of cnn.fit + predict_batches: the same for 2,000 and 20,000 images
    (6 MB and 60 MB of data), and larger for a larger batch."""
    # One kernel thread: the claim does not depend on it (the workspace is per thread and
    # per chunk of images), and on a busy machine a team of threads waits for its slowest.
    runs = {key: _child(_TRAIN_MEMORY, *key, env={"OMP_NUM_THREADS": "1"}) for key in
            ((2000, 64), (20000, 64), (2000, 1024))}
    r = {key: _last_json(_finish(proc)) for key, proc in runs.items()}
    small, large, big_batch = r[2000, 64], r[20000, 64], r[2000, 1024]
    data_difference = large["data"] - small["data"]  # 54 MB
    # measured: 2.0 MB and 2.6 MB of growth (the batches, the kernels' scratch)
    assert abs(large["growth"] - small["growth"]) < 0.2 * data_difference, r
    # a batch 16 times larger holds 16 times the activations, and at least half of that
    # shows (measured: 24.0 MB of growth; the layers' outputs alone are 16.1 MB)
    assert big_batch["growth"] - small["growth"] > \
        0.5 * (big_batch["activations"] - small["activations"]), r


_ESTIMATOR_MEMORY = """
import json, sys, warnings
import numpy as np
from cnn import CNNClassifier

n = int(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
y = rng.integers(0, 10, n)


def classifier():
    return CNNClassifier(conv_channels=(4,), dense_units=(16,), batch_size=64, max_iter=1,
                         random_state=0)


def peak_resident():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


warnings.simplefilter("ignore")  # ConvergenceWarning is not the point
classifier().fit(X[:100], y[:100]).predict(X[:100])  # lazy set-up is not fit's memory
with open("/proc/self/clear_refs", "w") as f:  # the peak from here on; X is in the baseline
    f.write("5")
before = peak_resident()
classifier().fit(X, y).predict(X)
print(json.dumps({"growth": peak_resident() - before, "data": X.nbytes}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_classifier_memory_follows_the_batch_not_the_data_set():
    """Peak memory of CNNClassifier.fit + predict on 2,000 and 20,000 uint8 images (1.6 MB
    and 15.7 MB): the statistics, the normalisation and the augmentation go a chunk or a
    batch at a time, so what grows with the data is only y, the batch order and predict's
    output."""
    runs = {n: _child(_ESTIMATOR_MEMORY, n, env={"OMP_NUM_THREADS": "1"}) for n in (2000, 20000)}
    small, large = (_last_json(_finish(runs[n])) for n in (2000, 20000))
    data_difference = large["data"] - small["data"]  # 14 MB
    # What must grow with the data: y, its class indices and the batch order (8 bytes a
    # sample each), and predict's logits (10 float64 a sample): 1.9 MB for 18,000 images.
    unavoidable = (20000 - 2000) * (3 * 8 + 10 * 8)
    # measured: 13.6 MB and 15.3 MB of growth (the batches' activations, a chunk of the
    # statistics, then the above). Before: 30 MB and 251 MB, from a float64 copy of the
    # uint8 images, np.std's float64 temporary, then a normalised float32 copy.
    assert large["growth"] - small["growth"] < unavoidable + 0.2 * data_difference, (small, large)
    # not even one float32 copy of the images (what the network sees): 63 MB
    assert large["growth"] < 4 * large["data"], (small, large)


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/statm")
def test_fit_predict_cycles_do_not_grow_memory(digits):
    """200 fits and predictions in this process: resident memory grows by under 50 MB."""
    X, y = digits[0][:100], digits[1][:100]

    def cycle():
        clf = CNNClassifier(conv_channels=(2,), dense_units=(8,), max_iter=1, batch_size=32,
                            random_state=0)
        clf.fit(X, y).predict(X)
        clf.predict_proba(X)

    for _ in range(5):  # warm-up: lazy imports, the allocator's arenas, the thread pools
        cycle()
    before = _resident_bytes()
    for _ in range(200):
        cycle()
    assert _resident_bytes() - before < 50 * 2**20  # measured: 0.5 MB


@pytest.mark.parametrize("op", ["conv2d", "conv2d_backward", "conv_transpose2d"])
def test_im2col_buffers_are_bounded_per_chunk_of_images(op):
    """The column matrix of a batch is never built: 512 images need no more scratch than 64.

    tracemalloc sees NumPy's allocations; the peak beyond the result is the per-thread
    workspace, the same for both batches and a fraction of the whole batch's matrix.
    """
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((32, 16, 3, 3), dtype=np.float32)
    extra = {}
    for N in (64, 512):
        x = rng.standard_normal((N, 16 if op != "conv_transpose2d" else 32, 14, 14),
                                dtype=np.float32)
        if op == "conv2d":
            def call():
                return [F.conv2d(x, weight, padding=1)]
        elif op == "conv2d_backward":
            grad_out = rng.standard_normal((N, 32, 14, 14), dtype=np.float32)

            def call():
                return [a for a in F.conv2d_backward(grad_out, x, weight, padding=1)]
        else:
            def call():
                return [F.conv_transpose2d(x, weight, padding=1)]
        call()  # first call: lazy set-up is not the op's memory
        tracemalloc.start()
        try:
            results = call()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        extra[N] = peak - sum(a.nbytes for a in results)
    whole_batch_columns = 512 * 16 * 3 * 3 * 14 * 14 * 4  # 58 MB
    assert extra[512] < 0.05 * whole_batch_columns, extra  # measured: 0.56 MB
    assert abs(extra[512] - extra[64]) < 64 * 1024, extra  # measured: 95 bytes
