"""Soak test: fit, predict, save and reload CNNClassifiers with random configurations.

    python3 scripts/soak.py --minutes 10 [--seed 0] [--fits N] [--iteration I] [--verbose]

Until the time is up (or N iterations are done), each iteration draws a random
configuration from ``(seed, iteration)`` alone, so any iteration can be re-run by
itself with ``--seed S --iteration I``:

- the data: a subset of scikit-learn's digits (2 to 10 classes) or random images
  of random size (1-3 channels, 1-10 pixels a side, 2-5 classes), flat with
  ``image_shape`` or as 3-D/4-D arrays, in float64, float32 or uint8, labels as
  ints, shifted ints, floats or strings;
- CNNClassifier's hyper-parameters (read from ``cnn/estimator.py``): the
  architecture (``conv_channels``, ``kernel_size``, ``pooling``, ``dense_units``,
  ``dropout``, ``batch_norm``), the optimiser (``solver``, ``learning_rate_init``,
  ``learning_rate``, ``momentum``, ...), ``batch_size``, ``max_iter``,
  ``early_stopping``, ``augment``, sometimes a ``partial_fit`` after ``fit``.
  The estimator has no ``sample_weight`` and no dtype parameter: the network is float32.

Then it checks every prediction (``predict_proba`` finite, non-negative, of
shape (n, n_classes), rows summing to 1; ``predict_log_proba`` finite; ``predict``
equal to ``classes_[argmax(predict_proba)]``), saves the estimator and its
``Sequential`` to a temporary directory, loads them and checks that the reloaded
ones predict bit for bit the same and hold bit-identical parameters. It also
round-trips a random ``Sequential`` of the other layer types (transposed and
grouped convolutions, adaptive pooling, batch norm with running statistics,
LeakyReLU, Tanh, Sigmoid), in float32 or float64.

A few configurations are invalid on purpose (a bad hyper-parameter, which must
be refused by name; batch_size=1 with batch norm, which may be refused) or may
diverge on purpose (a learning rate of 1e6 or more): their ``ValueError`` or
``TypeError`` naming the problem, or ``NonFiniteLossError``, is a "clear error"
and fine; so is early stopping's refusal of a split that leaves a side empty.
Anything else is a failure, printed with its configuration and the command that
repeats it. The summary (counts, failures grouped by kind, resident memory at the
start, after the first iteration and at the end) is printed at the end and on
Ctrl-C; the exit status is 1 if anything failed (130 after a Ctrl-C otherwise).
"""

import argparse
import math
import os
import re
import signal
import sys
import tempfile
import time
import traceback
import warnings

SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(SCRIPTS_DIR))  # cnn as built in place

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import cnn  # noqa: E402
from cnn import CNNClassifier, Sequential  # noqa: E402
from cnn.train import NonFiniteLossError  # noqa: E402

# Bad hyper-parameters drawn on purpose: each must be refused with an error naming it.
INVALID_PARAMS = [
    ("kernel_size", 0), ("pooling", "min"), ("validation_fraction", 1.5),
    ("learning_rate_init", -1.0), ("batch_size", 0), ("dropout", 1.0), ("momentum", 1.5),
    ("solver", "lbfgs"), ("max_iter", 0), ("conv_channels", (0,)), ("learning_rate", "fast"),
    ("batch_norm", "yes"), ("augment", -1), ("alpha", -0.1),
]
COUNTERS = ["iterations", "fits", "partial fits", "clear errors", "predictions",
            "estimator reloads", "Sequential reloads", "argmax ties", "failures"]


class Failure(Exception):
    """A check did not hold."""


# ------------------------------------------------------------------------ drawing

def _log_uniform(rng, low, high):
    return float(10 ** rng.uniform(math.log10(low), math.log10(high)))


def _pick(rng, options):
    return options[rng.integers(len(options))]


def draw_config(rng):
    """A random configuration: the data, the estimator's parameters, and what is expected."""
    config = {"expect": "ok", "partial_fit": bool(rng.random() < 0.15)}
    n_classes = int(rng.integers(2, 11)) if rng.random() < 0.5 else int(rng.integers(2, 6))
    if rng.random() < 0.5:
        data = {"kind": "digits", "n_classes": n_classes,
                "n_samples": int(rng.integers(max(2 * n_classes, 20), 301)),
                "layout": _pick(rng, ["flat", "3d", "4d"]),
                "scale": _pick(rng, [1.0, 1 / 16, 255 / 16, 1e-6, 1e6])}
    else:
        data = {"kind": "random", "n_classes": min(n_classes, 5),
                "n_samples": int(rng.integers(10, 121)),
                "shape": (int(rng.integers(1, 4)), int(rng.integers(1, 11)),
                          int(rng.integers(1, 11))),
                "layout": _pick(rng, ["flat", "flat_hw", "3d", "4d"]),
                "scale": _log_uniform(rng, 1e-3, 1e3)}
    data["dtype"] = _pick(rng, ["float64", "float32", "uint8"])
    data["labels"] = _pick(rng, ["int", "shifted int", "float", "str"])
    config["data"] = data

    solver = _pick(rng, ["adam", "sgd"])
    params = {
        "conv_channels": _pick(rng, [(), (2,), (4,), 4, (4, 8), (8,)]),
        "kernel_size": int(rng.integers(1, 6)),
        "pooling": _pick(rng, ["max", "avg"]),
        "dense_units": _pick(rng, [(), (8,), 16, (8, 8)]),
        "dropout": _pick(rng, [0.0, 0.25, 0.5]),
        "batch_norm": bool(rng.random() < 0.5),
        "solver": solver,
        "learning_rate_init": (_log_uniform(rng, 1e-4, 3e-2) if solver == "adam"
                               else _log_uniform(rng, 1e-3, 1e-1)),
        "learning_rate": _pick(rng, ["constant", "invscaling", "adaptive", "cosine"]),
        "max_iter": int(rng.integers(1, 5)),
        "batch_size": "auto" if rng.random() < 0.4 else int(rng.integers(2, 65)),
        "momentum": float(rng.uniform(0.0, 0.95)),
        "nesterovs_momentum": bool(rng.random() < 0.5),
        "alpha": _pick(rng, [0.0, 1e-4, 1e-2]),
        "shuffle": bool(rng.random() < 0.8),
        "augment": _pick(rng, [False, False, True, 2]),
        "n_iter_no_change": int(rng.integers(1, 4)),
        "early_stopping": bool(rng.random() < 0.3),
        "validation_fraction": float(rng.uniform(0.1, 0.3)),
        "random_state": int(rng.integers(2**31)),
    }
    draw = rng.random()
    if draw < 0.05:  # a learning rate meant to diverge
        params["learning_rate_init"] = _log_uniform(rng, 1e6, 1e12)
        config["expect"] = "may diverge"
    elif draw < 0.10:  # a bad hyper-parameter, which fit must refuse by name
        name, value = INVALID_PARAMS[rng.integers(len(INVALID_PARAMS))]
        params[name] = value
        config["expect"] = f"error naming {name}"
    elif draw < 0.13:  # batch norm cannot train on one value per channel (nor in PyTorch)
        params.update(batch_norm=True, batch_size=1)
        config["expect"] = "may fail in batch norm"
    config["params"] = params
    return config


def make_data(data, rng):
    """(X, y, X_test, image_shape parameter) as the configuration describes them."""
    k = data["n_classes"]
    if data["kind"] == "digits":
        digits = load_digits()
        classes = np.sort(rng.choice(10, size=k, replace=False))
        index = np.flatnonzero(np.isin(digits.target, classes))
        index = rng.choice(index, size=min(data["n_samples"], len(index)), replace=False)
        images, labels = digits.images[index], digits.target[index]
        images = images[:, None] * data["scale"]  # (n, 1, 8, 8)
        classes_present = np.unique(labels)
        labels = np.searchsorted(classes_present, labels)
    else:
        C, H, W = data["shape"]
        n = data["n_samples"]
        labels = np.arange(n) % k  # every class present
        rng.shuffle(labels)
        patterns = rng.random((k, C, H, W))  # something to learn
        images = (patterns[labels] + 0.5 * rng.random((n, C, H, W))) * data["scale"]
    if data["dtype"] == "uint8":
        images = np.clip(images / max(images.max(), 1e-300) * 255, 0, 255).astype(np.uint8)
    else:
        images = images.astype(data["dtype"])
    n_test = max(1, len(images) // 4)
    X_test = images[:n_test].copy()

    names = {"int": labels, "shifted int": labels * 7 - 3, "float": labels * 2.0 + 1.0,
             "str": np.array([f"class {c}" for c in labels], dtype=object)}
    y = names[data["labels"]]

    image_shape = None
    N, C, H, W = images.shape
    layout = data["layout"]
    if layout == "3d" and C == 1:
        images, X_test = images[:, 0], X_test[:, 0]
    elif layout.startswith("flat"):
        images, X_test = images.reshape(N, -1), X_test.reshape(len(X_test), -1)
        if data["kind"] == "random" or H * W != int(math.isqrt(H * W)) ** 2:
            image_shape = (H, W) if layout == "flat_hw" and C == 1 else (C, H, W)
    return images, y, X_test, image_shape


# ------------------------------------------------------------------------ checks

def check_predictions(clf, X_test, counts):
    """predict_proba, predict_log_proba and predict are finite and agree; returns the
    probabilities."""
    proba = clf.predict_proba(X_test)
    n_classes = len(clf.classes_)
    if proba.shape != (len(X_test), n_classes):
        raise Failure(f"predict_proba has shape {proba.shape}, expected "
                      f"{(len(X_test), n_classes)}")
    bad = ~np.isfinite(proba).all(axis=1)
    if bad.any():
        raise Failure(f"predict_proba is not finite on {bad.sum()} of {len(proba)} samples, "
                      f"e.g. {np.array2string(proba[bad][0], precision=3, separator=', ')}")
    if np.any(proba < 0):
        raise Failure("predict_proba has negative entries")
    sums = proba.sum(axis=1)
    if np.max(np.abs(sums - 1)) > 1e-9:
        raise Failure(f"predict_proba rows sum to {sums.min()}..{sums.max()}, not 1")
    log_proba = clf.predict_log_proba(X_test)
    if not np.all(np.isfinite(log_proba)):
        raise Failure("predict_log_proba is not finite")
    pred = clf.predict(X_test)
    if pred.shape != (len(X_test),):
        raise Failure(f"predict has shape {pred.shape}, expected ({len(X_test)},)")
    argmax = clf.classes_[np.argmax(proba, axis=1)]
    differ = np.flatnonzero(pred != argmax)
    if len(differ):
        chosen = np.searchsorted(clf.classes_, pred[differ])
        if np.any(proba[differ, chosen] < proba[differ].max(axis=1)):
            raise Failure(f"predict differs from classes_[argmax(predict_proba)] on samples "
                          f"{differ[:5].tolist()}")
        counts["argmax ties"] += len(differ)  # equal probabilities: either class is the argmax
    counts["predictions"] += 1
    return proba


def _same_state(a, b, what):
    if a.keys() != b.keys():
        raise Failure(f"{what}: state dict keys differ: {sorted(a)} vs {sorted(b)}")
    for key in a:
        if a[key].dtype != b[key].dtype or not np.array_equal(a[key], b[key]):
            raise Failure(f"{what}: {key!r} is not bit-identical after reloading")


def check_reload(clf, X_test, proba, directory, counts):
    """The saved and reloaded estimator and Sequential predict and hold bit-identical values."""
    path = os.path.join(directory, "estimator.npz")
    clf.save(path)
    loaded = CNNClassifier.load(path)
    _same_state(clf.model_.state_dict(), loaded.model_.state_dict(), "CNNClassifier.load")
    for name in ("input_mean_", "input_std_", "classes_"):
        if not np.array_equal(getattr(clf, name), getattr(loaded, name)):
            raise Failure(f"CNNClassifier.load: {name} differs")
    params, loaded_params = clf.get_params(), loaded.get_params()
    params.pop("module"), loaded_params.pop("module")
    if params != loaded_params:
        raise Failure(f"CNNClassifier.load: get_params differs: {params} vs {loaded_params}")
    if not np.array_equal(loaded.predict_proba(X_test), proba):
        raise Failure("the reloaded estimator's predict_proba is not bit-identical")
    if not np.array_equal(loaded.predict(X_test), clf.predict(X_test)):
        raise Failure("the reloaded estimator's predict differs")
    counts["estimator reloads"] += 1
    x = np.random.default_rng(0).standard_normal((5,) + tuple(clf.input_shape_))
    check_sequential_reload(clf.model_, x.astype(np.float32), directory, counts)


def check_sequential_reload(model, x, directory, counts):
    path = os.path.join(directory, "model.npz")
    model.save(path)
    loaded = Sequential.load(path)
    _same_state(model.state_dict(), loaded.state_dict(), "Sequential.load")
    if not np.array_equal(cnn.predict_batches(model, x), cnn.predict_batches(loaded, x)):
        raise Failure("the reloaded Sequential's outputs are not bit-identical")
    counts["Sequential reloads"] += 1


def random_sequential(rng):
    """(model, input batch): layers drawn at random, kept when they fit the shape so far."""
    dtype = _pick(rng, [np.float32, np.float64])
    C, H, W = int(rng.integers(1, 4)), int(rng.integers(4, 13)), int(rng.integers(4, 13))
    x = rng.standard_normal((4, C, H, W)).astype(dtype)
    layers, out = [], x
    for _ in range(int(rng.integers(1, 6))):
        c = out.shape[1]
        kind = _pick(rng, ["conv", "conv_grouped", "convT", "maxpool", "avgpool", "adaptive",
                           "bn", "leaky", "tanh", "sigmoid", "dropout"])
        seed = int(rng.integers(2**31))
        if kind == "conv":
            layer = cnn.Conv2d(c, int(rng.integers(1, 5)), int(rng.integers(1, 4)),
                               stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, 2)),
                               dilation=int(rng.integers(1, 3)),
                               padding_mode=_pick(rng, ["zeros", "reflect", "replicate",
                                                        "circular"]),
                               rng=seed, dtype=dtype)
        elif kind == "conv_grouped":
            layer = cnn.Conv2d(c, 2 * c, 3, padding=1, groups=c, rng=seed, dtype=dtype)
        elif kind == "convT":
            stride = int(rng.integers(1, 3))
            layer = cnn.ConvTranspose2d(c, int(rng.integers(1, 5)), int(rng.integers(1, 4)),
                                        stride=stride, output_padding=stride - 1, rng=seed,
                                        dtype=dtype)
        elif kind == "maxpool":
            layer = cnn.MaxPool2d(2, ceil_mode=bool(rng.random() < 0.5))
        elif kind == "avgpool":
            layer = cnn.AvgPool2d(2, padding=int(rng.integers(0, 2)),
                                  count_include_pad=bool(rng.random() < 0.5))
        elif kind == "adaptive":
            layer = cnn.AdaptiveAvgPool2d((int(rng.integers(1, 4)), int(rng.integers(1, 4))))
        elif kind == "bn":
            layer = cnn.BatchNorm2d(c, dtype=dtype)
        elif kind == "leaky":
            layer = cnn.LeakyReLU(float(rng.uniform(0.0, 0.3)))
        elif kind == "tanh":
            layer = cnn.Tanh()
        elif kind == "sigmoid":
            layer = cnn.Sigmoid()
        else:
            layer = cnn.Dropout(float(rng.uniform(0.0, 0.5)), rng=seed)
        try:
            candidate = layer.forward(out)
        except ValueError:
            continue  # the drawn layer does not fit this shape (e.g. a window larger than it)
        layers.append(layer)
        out = candidate
    layers.append(cnn.Flatten())
    layers.append(cnn.Linear(int(np.prod(out.shape[1:])), int(rng.integers(1, 6)),
                             rng=int(rng.integers(2**31)), dtype=dtype))
    if rng.random() < 0.5:
        layers.append(cnn.BatchNorm1d(layers[-1].out_features, dtype=dtype))
    model = Sequential(*layers)
    model.train()
    model.forward(x)  # batch norm's running statistics move away from their defaults
    model.eval()
    return model, x


# ------------------------------------------------------------------------ one iteration

def _clear_error(exc, config):
    """Whether exc is an expected, clearly worded refusal for this configuration."""
    expect = config["expect"]
    if isinstance(exc, NonFiniteLossError):
        return expect == "may diverge" and "learning_rate_init" in str(exc)
    if not isinstance(exc, (ValueError, TypeError)):
        return False
    message = str(exc)
    if expect.startswith("error naming "):
        return expect[len("error naming "):] in message
    if expect == "may fail in batch norm" and "BatchNorm needs more than 1 value" in message:
        return True
    # a small data set can leave early stopping's stratified split empty (whatever else
    # the configuration might also have failed on)
    return config["params"]["early_stopping"] and "leaves an empty" in message


def run_iteration(seed, iteration, directory, counts, verbose):
    """One random configuration, fitted and checked; returns None or a failure (a dict)."""
    rng = np.random.default_rng([seed, iteration])
    config = draw_config(rng)
    if verbose:
        print(f"[{iteration}] {config}", flush=True)
    stage = "drawing the data"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # numpy's overflow warnings on the way to a divergence are expected there
            if config["expect"] == "may diverge":
                warnings.simplefilter("ignore", RuntimeWarning)
            X, y, X_test, image_shape = make_data(config["data"], rng)
            clf = CNNClassifier(image_shape=image_shape, **config["params"])
            stage = "fit"
            try:
                clf.fit(X, y)
                counts["fits"] += 1
                if config["partial_fit"]:
                    stage = "partial_fit"
                    clf.partial_fit(X, y)
                    counts["partial fits"] += 1
            except Exception as exc:
                if _clear_error(exc, config):
                    counts["clear errors"] += 1
                    return None
                raise
            if config["expect"].startswith("error naming "):
                raise Failure(f"fit accepted a configuration it should refuse "
                              f"({config['expect']})")
            stage = "predict"
            proba = check_predictions(clf, X_test, counts)
            stage = "save/load"
            check_reload(clf, X_test, proba, directory, counts)
            stage = "random Sequential save/load"
            model, x = random_sequential(rng)
            check_sequential_reload(model, x, directory, counts)
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = "" if isinstance(exc, Failure) or not frames else \
            f"{os.path.relpath(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}"
        message = str(exc).splitlines()[0] if str(exc) else ""
        return {"iteration": iteration, "stage": stage,
                "error": f"{type(exc).__name__}: {message}", "where": where, "config": config,
                "repeat": f"python3 scripts/soak.py --seed {seed} --iteration {iteration}"}
    return None


def _signature(failure):
    """What makes two failures the same problem: stage, error and place, numbers and
    example arrays left out."""
    error = re.sub(r"\d+", "#", re.sub(r"\[.*\]", "[...]", failure["error"]))
    return failure["stage"], error, failure["where"]


# ------------------------------------------------------------------------ driver

def rss_mib():
    """The resident memory of this process now, in MiB (Linux), or None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def print_summary(counts, elapsed, rss, failures, interrupted):
    """rss: {"start": MiB, "after iteration 1": MiB, "end": MiB} (values may be None)."""
    print()
    print("soak summary" + (" (interrupted)" if interrupted else ""))
    print("-" * 44)
    rows = [(name, str(counts[name])) for name in COUNTERS]
    rows.append(("elapsed", f"{elapsed:.0f} s"))
    for label, value in rss.items():
        rows.append((f"RSS {label}", "-" if value is None else f"{value:.0f} MiB"))
    # the first iteration loads data sets and thread pools: growth counts from after it
    first, end = rss.get("after iteration 1"), rss.get("end")
    if first is not None and end is not None:
        rows.append(("RSS growth after it", f"{end - first:+.0f} MiB"))
    for name, value in rows:
        print(f"{name:30s}{value:>14s}")
    if failures:
        groups = {}
        for failure in failures:
            groups.setdefault(_signature(failure), []).append(failure)
        print(f"\n{len(failures)} failure(s) of {len(groups)} kind(s), each with its first "
              f"configuration:")
        for (stage, error, where), members in groups.items():
            first = members[0]
            print(f"\n- {len(members)} x in {stage}: {first['error']}"
                  + (f"\n  at {where}" if where else "")
                  + f"\n  iterations: {', '.join(str(f['iteration']) for f in members[:20])}"
                  + ("..." if len(members) > 20 else "")
                  + f"\n  config: {first['config']}\n  repeat: {first['repeat']}")
    print("\nFAIL" if failures else "\nOK")


def _parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long to run (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--fits", type=int, default=None,
                        help="stop after this many iterations even if time is left")
    parser.add_argument("--iteration", type=int, default=None,
                        help="run only this iteration of the seed (to repeat a failure)")
    parser.add_argument("--verbose", action="store_true", help="print each configuration")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    if args.fits is not None and args.fits < 1:
        parser.error("--fits must be >= 1")
    return args


def main():
    args = _parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    counts = dict.fromkeys(COUNTERS, 0)
    failures = []
    stop = {"requested": False}

    def on_ctrl_c(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        stop["requested"] = True
        print("\nCtrl-C: stopping after this iteration (again to stop at once)", flush=True)

    # our handler stays in force during fit (cnn.fit leaves a user's handler alone)
    signal.signal(signal.SIGINT, on_ctrl_c)
    iterations = [args.iteration] if args.iteration is not None else None
    rss = {"start": rss_mib()}
    started = time.perf_counter()
    deadline = started + 60 * args.minutes
    interrupted = False
    print(f"soak: seed {args.seed}, "
          + (f"iteration {args.iteration}" if args.iteration is not None else
             f"{args.minutes:g} min" + (f", at most {args.fits} iterations" if args.fits else "")),
          flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="cnn-soak-") as directory:
            iteration = 0
            while not stop["requested"]:
                if iterations is not None:
                    if not iterations:
                        break
                    iteration = iterations.pop()
                elif time.perf_counter() >= deadline or (
                        args.fits is not None and counts["iterations"] >= args.fits):
                    break
                failure = run_iteration(args.seed, iteration, directory, counts, args.verbose)
                counts["iterations"] += 1
                if counts["iterations"] == 1:
                    rss["after iteration 1"] = rss_mib()
                if failure is not None:
                    counts["failures"] += 1
                    failures.append(failure)
                    print(f"iteration {iteration} FAILED in {failure['stage']}: "
                          f"{failure['error']} (repeat: {failure['repeat']})", flush=True)
                iteration += 1
                if counts["iterations"] % 50 == 0:
                    print(f"... {counts['iterations']} iterations, {counts['failures']} failures,"
                          f" {time.perf_counter() - started:.0f} s", flush=True)
    except KeyboardInterrupt:
        interrupted = True
    interrupted = interrupted or stop["requested"]
    rss["end"] = rss_mib()
    print_summary(counts, time.perf_counter() - started, rss, failures, interrupted)
    sys.exit(1 if failures else 130 if interrupted else 0)


if __name__ == "__main__":
    main()
