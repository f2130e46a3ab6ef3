"""scripts/benchmark.py runs end to end on a tiny IDX data set and reports what it measured."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cnn.data import write_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny_idx(tmp_path):
    rng = np.random.default_rng(0)
    directory = tmp_path / "idx"
    directory.mkdir()
    for split, n in (("train", 192), ("t10k", 64)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        X = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        X[np.arange(n), 2 * y + 3, :] = 255  # a bright row per class: learnable
        write_idx(directory / f"{split}-images-idx3-ubyte", X)
        write_idx(directory / f"{split}-labels-idx1-ubyte", y)
    return directory


def test_benchmark_reports_every_library_from_the_same_start(tiny_idx, tmp_path):
    libs = ["cnn", "numpy"]
    try:
        import torch  # noqa: F401
        libs.append("torch")
    except ImportError:
        pass
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"), "--data", str(tiny_idx),
         "--out", str(out), "--libs", ",".join(libs), "--digits-epochs", "1",
         "--fashion-epochs", "2", "--numpy-batches", "0", "--inference-repeats", "1",
         "--skip-ops", "--skip-sklearn"],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    results = json.loads((out / "results.json").read_text())
    assert set(results["datasets"]) == {"digits", "fashion"}
    fashion = results["datasets"]["fashion"]["runs"]
    assert set(fashion) == set(libs)
    for run in fashion.values():
        assert run["n_train"] == 192 and run["n_test"] == 64
        assert len(run["epochs"]) == 2
        assert all(e["seconds"] > 0 and np.isfinite(e["loss"]) for e in run["epochs"])
        assert 0 <= run["epochs"][-1]["test_accuracy"] <= 1
        assert run["inference_images_per_s"] > 0 and run["peak_rss_mb"] > 0
    # same initial weights, same first batch: the same loss in every library
    first = [run["first_loss"] for run in fashion.values()]
    np.testing.assert_allclose(first, first[0], rtol=1e-5)
    # same weights, batches and recipe: cnn and the NumPy network train alike
    cnn_loss = [e["loss"] for e in fashion["cnn"]["epochs"]]
    numpy_loss = [e["loss"] for e in fashion["numpy"]["epochs"]]
    np.testing.assert_allclose(cnn_loss, numpy_loss, rtol=1e-3)
    report = (out / "report.md").read_text()
    assert "## Fashion-MNIST (28x28)" in report and "## digits (8x8)" in report
    assert "Epoch time NumPy / cnn" in report


def test_benchmark_without_28x28_data_says_how_to_get_it(tmp_path):
    completed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "benchmark.py"),
         "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "--libs", "cnn",
         "--digits-epochs", "1", "--inference-repeats", "1", "--skip-ops", "--skip-sklearn"],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "apt-get install dataset-fashion-mnist" in completed.stderr
    assert "apt-get install dataset-fashion-mnist" in (tmp_path / "out" / "report.md").read_text()
