"""End-to-end benchmark: cnn vs PyTorch (CPU) vs a pure-NumPy network vs scikit-learn.

    python scripts/benchmark.py                 # digits + Fashion-MNIST + per-op table (~15 min)
    python scripts/benchmark.py --quick         # a smoke run of every part (~1 min)
    python scripts/benchmark.py --data DIR      # another MNIST-format IDX directory

For each data set, every library trains the same network from the same initial
weights (one state dict, loaded into each), on the same batches in the same
order (one seeded permutation per epoch, drawn as ``cnn.train.fit`` draws it),
with the same recipe (SGD, lr 0.05 decayed along a cosine over the run, momentum
0.9, float32) and the same number
of threads. Each library runs in a child process of its own, one after the
other, so that no library's spinning worker threads slow another's and peak
memory (RSS) is that library's alone. Measured per library: seconds per
training epoch (median over epochs), training images/s, inference images/s at
batch 256 (median of repeats over the test set), test accuracy after every
epoch, peak RSS and RSS after each epoch, and the first batch's loss (equal
across libraries when they start from the same point).

The NumPy network (``scripts/_numpy_net.py``) is timed on the first
``--numpy-batches`` batches of Fashion-MNIST and its epoch time extrapolated;
it trains whole epochs on digits. scikit-learn's ``SVC``, ``MLPClassifier``
and ``LogisticRegression`` are fitted on the same splits (SVC on the first
``--svc-limit`` Fashion-MNIST training images: its fit grows with the square
of the samples). Then ``scripts/bench_ops.py`` adds its per-op table.

Writes ``OUT/report.md`` (default ``OUT=benchmark``) and, when matplotlib is
installed (``pip install -e ".[bench]"``), ``OUT/epoch_time.png`` and
``OUT/accuracy_vs_time.png``. Nothing is downloaded: Fashion-MNIST comes from
Debian's ``dataset-fashion-mnist`` package (``apt-get install
dataset-fashion-mnist``) and is skipped, with a message, when absent.
"""
import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
LIBS = ("cnn", "torch", "numpy")
PAUSE = 1.0  # seconds between children, for the previous one's threads to be gone

# (kind, arguments): the same list builds the network in every library.
NETWORKS = {
    "digits": [("conv", 1, 16, 3, 1), ("relu",), ("maxpool", 2),
               ("conv", 16, 32, 3, 1), ("relu",), ("maxpool", 2),
               ("flatten",), ("linear", 128, 10)],
    "lenet": [("conv", 1, 32, 5, 0), ("relu",), ("maxpool", 2),
              ("conv", 32, 64, 5, 0), ("relu",), ("maxpool", 2),
              ("flatten",), ("linear", 1024, 128), ("relu",), ("linear", 128, 10)],
}
DATASETS = {
    # name: (network, batch size, default epochs)
    "digits": ("digits", 32, 20),
    "fashion": ("lenet", 64, 10),
}
LR, MOMENTUM = 0.05, 0.9  # SGD, with the learning rate decayed along a cosine over the run


def cosine_lr(epoch, epochs):
    """The learning rate of epoch `epoch` (0-based): PyTorch's CosineAnnealingLR(T_max=epochs)."""
    return LR * (1 + math.cos(math.pi * epoch / epochs)) / 2
INFERENCE_BATCH = 256


# ------------------------------------------------------------------------ data

def load_data(dataset, data_dir, limit):
    """(X_train, y_train, X_test, y_test) as float32 NCHW images and int64 labels."""
    import numpy as np

    if dataset == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.2, stratify=y, random_state=0)
    else:
        from cnn.data import load_idx_dataset

        X_train, y_train, X_test, y_test = load_idx_dataset(data_dir)
        if limit:
            X_train, y_train = X_train[:limit], y_train[:limit]
            X_test, y_test = X_test[:max(limit // 6, 1)], y_test[:max(limit // 6, 1)]
        X_train = X_train.astype(np.float32) / 255
        X_test = X_test.astype(np.float32) / 255
        mean, std = X_train.mean(), X_train.std()
        X_train = (X_train - mean) / std
        X_test = (X_test - mean) / std
    return (np.ascontiguousarray(X_train), y_train.astype(np.int64),
            np.ascontiguousarray(X_test), y_test.astype(np.int64))


def epoch_orders(n, epochs, seed):
    """The batch order of each epoch, as cnn.train.fit(rng=seed) draws them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.permutation(np.arange(n)) for _ in range(epochs)]


def initial_weights(network, seed):
    """One state dict (PyTorch's keys and layouts) for every library, from cnn's init."""
    return build_cnn(network, seed).state_dict()


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------ the networks

def build_cnn(network, seed=None):
    import numpy as np
    import cnn

    rng = np.random.default_rng(seed)
    make = {"conv": lambda i, o, k, p: cnn.Conv2d(i, o, k, padding=p, rng=rng),
            "relu": cnn.ReLU, "maxpool": cnn.MaxPool2d, "flatten": cnn.Flatten,
            "linear": lambda i, o: cnn.Linear(i, o, rng=rng)}
    return cnn.Sequential(*(make[kind](*args) for kind, *args in NETWORKS[network]))


def build_torch(network):
    import torch

    nn = torch.nn
    make = {"conv": lambda i, o, k, p: nn.Conv2d(i, o, k, padding=p), "relu": nn.ReLU,
            "maxpool": nn.MaxPool2d, "flatten": nn.Flatten, "linear": nn.Linear}
    return nn.Sequential(*(make[kind](*args) for kind, *args in NETWORKS[network]))


def build_numpy(network):
    import _numpy_net as npnet

    layers = []
    for kind, *args in NETWORKS[network]:
        if kind == "conv":  # the image needs no gradient, as in the other two
            layers.append(npnet.Conv2d(padding=args[3], needs_input_grad=bool(layers)))
        elif kind == "maxpool":
            layers.append(npnet.MaxPool2d(args[0]))
        else:  # the weights come from the state dict: their sizes need not be given
            layers.append({"relu": npnet.ReLU, "flatten": npnet.Flatten,
                           "linear": npnet.Linear}[kind]())
    return npnet.Network(layers)


# ---------------------------------------------------------- one library, one child

# Each trainer has train_epoch(X, y, rng) -> mean loss, first_loss(X, y), and
# predict(X) -> logits as a NumPy array.

class CnnTrainer:
    def __init__(self, network, state, batch_size, epochs):
        import cnn
        from cnn import optim

        self.cnn, self.batch_size = cnn, batch_size
        self.model = build_cnn(network)
        self.model.load_state_dict(state)
        self.loss = cnn.CrossEntropyLoss()
        self.optimizer = optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.scheduler = optim.CosineAnnealingLR(self.optimizer, T_max=epochs)

    def train_epoch(self, X, y, seed_rng):
        # cnn.train.fit is what users call; given the benchmark's Generator it
        # draws the same permutation as the other libraries are handed.
        history = self.cnn.train.fit(self.model, self.loss, self.optimizer, X, y, epochs=1,
                                     batch_size=self.batch_size, rng=seed_rng,
                                     scheduler=self.scheduler, verbose=0)
        return history.history["loss"][0]

    def first_loss(self, X, y):
        self.model.train()
        return float(self.loss(self.model.forward(X), y))

    def predict(self, X):
        return self.cnn.predict_batches(self.model, X, batch_size=INFERENCE_BATCH)


class TorchTrainer:
    def __init__(self, network, state, batch_size, epochs):
        import torch

        self.torch, self.batch_size = torch, batch_size
        self.model = build_torch(network)
        self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
        self.loss = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=epochs)

    def train_epoch(self, X, y, seed_rng):
        torch = self.torch
        order = seed_rng.permutation(len(X))
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        self.model.train()
        total = 0.0
        for start in range(0, len(order), self.batch_size):
            index = torch.from_numpy(order[start:start + self.batch_size])
            self.optimizer.zero_grad()
            loss = self.loss(self.model(X[index]), y[index])
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(index)
        self.scheduler.step()
        return total / len(order)

    def first_loss(self, X, y):
        with self.torch.no_grad():
            return float(self.loss(self.model(self.torch.from_numpy(X)),
                                   self.torch.from_numpy(y)))

    def predict(self, X):
        torch = self.torch
        self.model.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(X), INFERENCE_BATCH):
                out.append(self.model(torch.from_numpy(X[start:start + INFERENCE_BATCH])).numpy())
        import numpy as np

        return np.concatenate(out)


class NumpyTrainer:
    def __init__(self, network, state, batch_size, epochs, max_batches=None):
        import _numpy_net as npnet

        self.npnet, self.batch_size, self.max_batches = npnet, batch_size, max_batches
        self.epochs, self.epochs_done = epochs, 0
        self.model = build_numpy(network)
        self.model.load_state_dict(state)
        self.optimizer = npnet.SGD(self.model, lr=LR, momentum=MOMENTUM)
        self.batches_done = None

    def train_epoch(self, X, y, seed_rng):
        order = seed_rng.permutation(len(X))
        self.optimizer.lr = cosine_lr(self.epochs_done, self.epochs)
        self.epochs_done += 1
        starts = range(0, len(order), self.batch_size)
        if self.max_batches:
            starts = starts[:self.max_batches]
        total = 0.0
        for start in starts:
            index = order[start:start + self.batch_size]
            loss, grad = self.npnet.cross_entropy(self.model.forward(X[index]), y[index])
            self.model.backward(grad)
            self.optimizer.step()
            total += loss * len(index)
        self.batches_done = len(starts)
        return total / min(len(order), len(starts) * self.batch_size)

    def first_loss(self, X, y):
        return self.npnet.cross_entropy(self.model.forward(X), y)[0]

    def predict(self, X):
        import numpy as np

        return np.concatenate([self.model.forward(X[s:s + INFERENCE_BATCH])
                               for s in range(0, len(X), INFERENCE_BATCH)])


def run_worker(args):
    """Train one library on one data set; write its measurements as JSON."""
    import numpy as np

    network, batch_size, _ = DATASETS[args.dataset]
    state = dict(np.load(args.weights))
    X_train, y_train, X_test, y_test = load_data(args.dataset, args.data, args.limit)
    if args.lib == "torch":
        import torch

        torch.set_num_threads(args.threads)
        trainer = TorchTrainer(network, state, batch_size, args.epochs)
    elif args.lib == "numpy":
        sys.path.insert(0, HERE)
        partial = args.dataset != "digits" and args.numpy_batches
        trainer = NumpyTrainer(network, state, batch_size, args.epochs,
                               max_batches=args.numpy_batches if partial else None)
    else:
        trainer = CnnTrainer(network, state, batch_size, args.epochs)
    from threadpoolctl import threadpool_info

    result = dict(lib=args.lib, dataset=args.dataset, threads=args.threads,
                  blas=[f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
                        for i in threadpool_info() if i["user_api"] == "blas"],
                  n_train=len(X_train), n_test=len(X_test), batch_size=batch_size,
                  first_loss=trainer.first_loss(X_train[:batch_size], y_train[:batch_size]))
    result["rss_before_mb"] = rss_mb()
    rng = np.random.default_rng(args.seed)
    epochs = []
    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        loss = trainer.train_epoch(X_train, y_train, rng)
        seconds = time.perf_counter() - started
        entry = dict(epoch=epoch, seconds=seconds, loss=loss, rss_mb=rss_mb())
        if args.lib == "numpy" and trainer.max_batches:
            n_batches = -(-len(X_train) // batch_size)
            entry.update(batches=trainer.batches_done,
                         seconds=seconds * n_batches / trainer.batches_done, extrapolated=True)
        else:
            entry["test_accuracy"] = float(np.mean(
                np.argmax(trainer.predict(X_test), axis=1) == y_test))
        epochs.append(entry)
        print(f"  {args.lib:>5} {args.dataset} epoch {epoch}: {entry['seconds']:.3f} s"
              + (f", test accuracy {100 * entry['test_accuracy']:.2f} %"
                 if "test_accuracy" in entry else " (extrapolated)"),
              file=sys.stderr, flush=True)
        if entry.get("extrapolated"):
            break  # the NumPy network's partial epoch is a timing, not a training run
    result["epochs"] = epochs
    times = []
    for _ in range(args.inference_repeats):
        started = time.perf_counter()
        trainer.predict(X_test)
        times.append(time.perf_counter() - started)
    result["inference_images_per_s"] = len(X_test) / statistics.median(times)
    result["peak_rss_mb"] = peak_rss_mb()
    with open(args.json_out, "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------- scikit-learn

def run_sklearn(dataset, data_dir, limit, svc_limit, threads):
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from threadpoolctl import threadpool_limits

    X_train, y_train, X_test, y_test = load_data(dataset, data_dir, limit)
    X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    n_svc = len(X_train) if dataset == "digits" else min(svc_limit, len(X_train))
    max_iter = 1000 if dataset == "digits" else 200  # lbfgs on 60,000 x 784 is slow
    models = [
        (f"SVC() on {n_svc} training images", SVC(), n_svc),
        ("MLPClassifier(random_state=0)" if dataset == "digits" else
         "MLPClassifier((128,), max_iter=10, random_state=0)",
         MLPClassifier(random_state=0) if dataset == "digits" else
         MLPClassifier((128,), max_iter=10, random_state=0), len(X_train)),
        (f"LogisticRegression(max_iter={max_iter}) on scaled pixels",
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter)), len(X_train)),
    ]
    rows = []
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, model, n in models:
            started = time.perf_counter()
            model.fit(X_train[:n], y_train[:n])
            fit_seconds = time.perf_counter() - started
            rows.append(dict(name=name, fit_seconds=fit_seconds,
                             accuracy=float(model.score(X_test, y_test))))
            print(f"  sklearn {dataset}: {name}: {100 * rows[-1]['accuracy']:.2f} % "
                  f"(fit {fit_seconds:.1f} s)", file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------------- driver

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=FASHION_DIR,
                        help="MNIST-format IDX directory for the 28x28 run (default: %(default)s)")
    parser.add_argument("--out", default="benchmark", help="output directory (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every library")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument("--digits-epochs", type=int, default=None,
                        help=f"default {DATASETS['digits'][2]}")
    parser.add_argument("--fashion-epochs", type=int, default=None,
                        help=f"default {DATASETS['fashion'][2]}")
    parser.add_argument("--libs", default=",".join(LIBS),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--numpy-batches", type=int, default=100,
                        help="batches the NumPy network is timed on for 28x28 data "
                             "(0: whole epochs; default %(default)s)")
    parser.add_argument("--svc-limit", type=int, default=10000,
                        help="training images for SVC on 28x28 data (default %(default)s)")
    parser.add_argument("--inference-repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0,
                        help="use only this many 28x28 training images (and a sixth as many "
                             "test images)")
    parser.add_argument("--skip-ops", action="store_true", help="no per-op table")
    parser.add_argument("--skip-sklearn", action="store_true", help="no scikit-learn baselines")
    parser.add_argument("--quick", action="store_true",
                        help="2 epochs, 3000 28x28 images, few repeats: a smoke test")
    # a child process runs one library: the driver passes these
    parser.add_argument("--worker", nargs=2, metavar=("LIB", "DATASET"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.quick:
        args.limit = args.limit or 3000
        args.numpy_batches = min(args.numpy_batches or 10, 10)
        args.inference_repeats = 2
        args.svc_limit = min(args.svc_limit, 2000)
    for name in ("digits", "fashion"):
        key = f"{name}_epochs"
        if getattr(args, key) is None:
            setattr(args, key, 2 if args.quick else DATASETS[name][2])
    return args


def set_threads(threads):
    """Every library's thread pool to `threads`, before any of them starts."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for name in ("numpy", "scipy", "sklearn", "torch", "cnn"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), **versions)


def run_child(lib, dataset, epochs, weights, args, tmp):
    json_out = os.path.join(tmp, f"{lib}-{dataset}.json")
    command = [sys.executable, os.path.abspath(__file__), "--worker", lib, dataset,
               "--weights", weights, "--epochs", str(epochs), "--json-out", json_out,
               "--threads", str(args.threads), "--seed", str(args.seed), "--data", args.data,
               "--limit", str(args.limit), "--numpy-batches", str(args.numpy_batches),
               "--inference-repeats", str(args.inference_repeats)]
    time.sleep(PAUSE)
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise SystemExit(f"{lib} on {dataset} failed (exit code {completed.returncode})")
    with open(json_out) as f:
        return json.load(f)


def have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main():
    args = parse_args()
    set_threads(args.threads)
    if args.worker:
        args.lib, args.dataset = args.worker
        run_worker(args)
        return
    import numpy as np

    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(libs) - set(LIBS)
    if unknown:
        raise SystemExit(f"--libs: unknown {sorted(unknown)}; choose from {LIBS}")
    notes = []
    if "torch" in libs and not have_torch():
        libs.remove("torch")
        notes.append("PyTorch is not installed: its columns are missing "
                     "(`pip install torch==2.13.0` on this machine installs the CPU build).")
    datasets = ["digits"]
    if os.path.isdir(args.data):
        datasets.append("fashion")
    else:
        notes.append(f"No 28x28 data: {args.data} does not exist (`apt-get install "
                     f"dataset-fashion-mnist`, or pass --data DIR with MNIST-format IDX files).")
        print(notes[-1], file=sys.stderr)

    os.makedirs(args.out, exist_ok=True)
    results = dict(machine=machine(), args=vars(args), notes=notes, datasets={})
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in datasets:
            network, batch_size, _ = DATASETS[dataset]
            epochs = getattr(args, f"{dataset}_epochs")
            weights = os.path.join(tmp, f"{dataset}-weights.npz")
            np.savez(weights, **initial_weights(network, args.seed))
            print(f"{dataset}: {network} network, batch {batch_size}, {epochs} epochs, "
                  f"{args.threads} threads", file=sys.stderr, flush=True)
            runs = {lib: run_child(lib, dataset, epochs, weights, args, tmp) for lib in libs}
            sklearn_rows = ([] if args.skip_sklearn else
                            run_sklearn(dataset, args.data, args.limit, args.svc_limit,
                                        args.threads))
            results["datasets"][dataset] = dict(network=network, epochs=epochs, runs=runs,
                                                sklearn=sklearn_rows)
    if not args.skip_ops:
        print("per-op table (scripts/bench_ops.py) ...", file=sys.stderr, flush=True)
        command = [sys.executable, os.path.join(HERE, "bench_ops.py"), "--markdown",
                   "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        results["ops_table"] = subprocess.run(command, capture_output=True, text=True,
                                              check=True).stdout
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    report = render_report(results)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report)
    plots = make_plots(results, args.out)
    print(report)
    print(f"Wrote {os.path.join(args.out, 'report.md')}"
          + (f" and {', '.join(plots)}" if plots else " (no plots: matplotlib is not installed)"),
          file=sys.stderr)


# ---------------------------------------------------------------------- the report

def _median_epoch(run):
    return statistics.median(e["seconds"] for e in run["epochs"])


def _final_accuracy(run):
    accuracies = [e["test_accuracy"] for e in run["epochs"] if "test_accuracy" in e]
    return accuracies[-1] if accuracies else None


def _fmt_pct(value):
    return "n/a" if value is None else f"{100 * value:.2f} %"


def render_report(results):
    m = results["machine"]
    args = results["args"]
    lines = [
        "# Benchmark: cnn vs PyTorch vs NumPy vs scikit-learn",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python scripts/benchmark.py"
        + (" --quick" if args["quick"] else "") + "` on "
        f"{m['cpu']} ({m['cores']} cores), {args['threads']} threads for every library; "
        f"Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, "
        f"scikit-learn {m['sklearn']}, torch {m['torch'] or 'not installed'}, cnn {m['cnn']}.",
        f"SGD lr {LR} decayed along a cosine over the run (CosineAnnealingLR, T_max = epochs), "
        f"momentum {MOMENTUM}, float32; same initial weights and batch order "
        "for every library; each library in a child process of its own.",
        "",
    ]
    lines += [f"> {note}" for note in results["notes"]]
    for dataset, d in results["datasets"].items():
        runs = d["runs"]
        any_run = next(iter(runs.values()))
        lines += [
            "", f"## {'digits (8x8)' if dataset == 'digits' else 'Fashion-MNIST (28x28)'}: "
            f"{d['network']} network, batch {any_run['batch_size']}, {d['epochs']} epochs",
            "",
            f"{any_run['n_train']} training and {any_run['n_test']} test images.",
            "",
            "| library | s / epoch | train images/s | inference images/s (batch 256) "
            "| test accuracy | peak RSS | RSS after epoch 1 → last | first loss |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for lib, run in runs.items():
            t = _median_epoch(run)
            extrapolated = any(e.get("extrapolated") for e in run["epochs"])
            first, last = run["epochs"][0]["rss_mb"], run["epochs"][-1]["rss_mb"]
            lines.append(
                f"| {lib} | {t:.3f}{' *' if extrapolated else ''} | {run['n_train'] / t:,.0f} | "
                f"{run['inference_images_per_s']:,.0f} | {_fmt_pct(_final_accuracy(run))} | "
                f"{run['peak_rss_mb']:,.0f} MB | {first:,.0f} → {last:,.0f} MB | "
                f"{run['first_loss']:.6f} |")
        if any(any(e.get("extrapolated") for e in r["epochs"]) for r in runs.values()):
            lines += ["", f"\\* timed on the first {results['args']['numpy_batches']} batches "
                      "and extrapolated to the whole epoch (the NumPy network trains too slowly "
                      "for whole epochs here)."]
        lines += ["", *ratio_lines(runs)]
        accuracy_rows = accuracy_table(runs)
        if accuracy_rows:
            lines += ["", "Test accuracy after each epoch:", "", *accuracy_rows]
        if d["sklearn"]:
            lines += ["", "scikit-learn on the same split (flattened pixels):", "",
                      "| model | fit seconds | test accuracy |", "|---|---:|---:|"]
            lines += [f"| {r['name']} | {r['fit_seconds']:.1f} | {_fmt_pct(r['accuracy'])} |"
                      for r in d["sklearn"]]
    bars = bar_lines(results["datasets"])
    if bars:
        lines += ["", "## The bars of issue 5", "", "| bar | measured | |", "|---|---|---|", *bars]
    if results.get("ops_table"):
        lines += ["", "## Per-op times (`scripts/bench_ops.py`)", "", results["ops_table"].strip()]
    return "\n".join(lines) + "\n"


def bar_lines(datasets):
    """The issue's bars, each with what this run measured and whether it is met."""
    rows = []

    def row(bar, measured, met):
        rows.append(f"| {bar} | {measured} | {'met' if met else '**missed**'} |")

    for dataset, d in datasets.items():
        runs = d["runs"]
        if "cnn" not in runs:
            continue
        cnn = runs["cnn"]
        if "torch" in runs:
            torch = runs["torch"]
            ratio = _median_epoch(cnn) / _median_epoch(torch)
            row(f"{dataset}: epoch time at most PyTorch's", f"{ratio:.2f}x", ratio <= 1)
            ratio = cnn["inference_images_per_s"] / torch["inference_images_per_s"]
            row(f"{dataset}: inference images/s at least PyTorch's", f"{ratio:.2f}x", ratio >= 1)
        if "numpy" in runs:
            ratio = _median_epoch(runs["numpy"]) / _median_epoch(cnn)
            row(f"{dataset}: at least 10x faster than NumPy per epoch", f"{ratio:.1f}x",
                ratio >= 10)
        if dataset != "fashion":
            continue
        accuracies = [e["test_accuracy"] for e in cnn["epochs"][:10] if "test_accuracy" in e]
        if accuracies:
            # judged on the last epoch: picking the best epoch by test accuracy would
            # select on the test set
            row("fashion: test accuracy >= 90.5 % within 10 epochs",
                f"{_fmt_pct(accuracies[-1])} after epoch {len(accuracies)}",
                accuracies[-1] >= 0.905)
        if "torch" in runs and _final_accuracy(runs["torch"]) is not None:
            gap = _final_accuracy(cnn) - _final_accuracy(runs["torch"])
            row("fashion: final accuracy within 0.5 points of PyTorch's", f"{100 * gap:+.2f} points",
                abs(gap) <= 0.005)
        growth = cnn["epochs"][-1]["rss_mb"] - cnn["epochs"][0]["rss_mb"]
        row("fashion: peak RSS below 1.5 GB, not growing with epochs",
            f"peak {cnn['peak_rss_mb']:,.0f} MB; {growth:+.0f} MB from epoch 1 to "
            f"{len(cnn['epochs'])}", cnn["peak_rss_mb"] < 1536 and growth < 50)
    return rows


def ratio_lines(runs):
    lines = []
    if "cnn" not in runs:
        return lines
    cnn = runs["cnn"]
    if "torch" in runs:
        torch = runs["torch"]
        lines.append(f"- Epoch time cnn / torch: **{_median_epoch(cnn) / _median_epoch(torch):.2f}x** "
                     "(below 1: cnn is faster); inference images/s cnn / torch: "
                     f"**{cnn['inference_images_per_s'] / torch['inference_images_per_s']:.2f}x** "
                     "(above 1: cnn is faster).")
        a, b = _final_accuracy(cnn), _final_accuracy(torch)
        if a is not None and b is not None:
            lines.append(f"- Final test accuracy cnn − torch: {100 * (a - b):+.2f} points.")
    if "numpy" in runs:
        lines.append(f"- Epoch time NumPy / cnn: **{_median_epoch(runs['numpy']) / _median_epoch(cnn):.1f}x**"
                     " (how many times faster cnn is).")
    return lines


def accuracy_table(runs):
    with_accuracy = {lib: r for lib, r in runs.items()
                     if any("test_accuracy" in e for e in r["epochs"])}
    if not with_accuracy:
        return []
    n = max(len(r["epochs"]) for r in with_accuracy.values())
    rows = ["| epoch | " + " | ".join(with_accuracy) + " |",
            "|---:|" + "---:|" * len(with_accuracy)]
    for i in range(n):
        cells = []
        for r in with_accuracy.values():
            e = r["epochs"][i] if i < len(r["epochs"]) else {}
            cells.append(_fmt_pct(e.get("test_accuracy")))
        rows.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return rows


def make_plots(results, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    datasets = results["datasets"]
    paths = []
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.5), squeeze=False)
    for ax, (dataset, d) in zip(axes[0], datasets.items()):
        libs = list(d["runs"])
        ax.bar(libs, [_median_epoch(d["runs"][lib]) for lib in libs], color="C0")
        ax.set_yscale("log")
        ax.set_ylabel("seconds per epoch (log)")
        ax.set_title(f"{dataset}: {d['network']} network")
    fig.tight_layout()
    paths.append(os.path.join(out, "epoch_time.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.5), squeeze=False)
    for ax, (dataset, d) in zip(axes[0], datasets.items()):
        for lib, run in d["runs"].items():
            points = [(e["seconds"], e["test_accuracy"]) for e in run["epochs"]
                      if "test_accuracy" in e]
            if not points:
                continue
            elapsed, total = [], 0.0
            for seconds, _ in points:
                total += seconds
                elapsed.append(total)
            ax.plot(elapsed, [100 * a for _, a in points], marker="o", label=lib)
        ax.set_xlabel("training seconds")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(dataset)
        ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(out, "accuracy_vs_time.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


if __name__ == "__main__":
    main()
