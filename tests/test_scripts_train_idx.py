"""scripts/train_idx.py, run as a user runs it: a child process on a small IDX data set.

The data set is made here: 28x28 images whose class says where a bright
square sits (with jitter and noise), written with ``cnn.data.write_idx`` under
the usual file names, so the whole path from the files to the saved model is
exercised in seconds. What the script prints is checked against the model it
saved: loaded back, it must predict the test images with exactly the printed
accuracy and confusion matrix.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import cnn
from cnn.data import FASHION_MNIST_CLASSES, write_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "train_idx.py")
N_TRAIN, N_TEST, N_CLASSES = 300, 60, 10


def _images(labels, rng):
    """One 28x28 uint8 image per label: a bright 8x8 square at a place set by the class."""
    n = len(labels)
    images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    rows, cols = 2 + 12 * (labels // 5), 1 + 5 * (labels % 5)
    rows = rows + rng.integers(-1, 2, size=n)
    cols = cols + rng.integers(0, 2, size=n)
    for image, top, left in zip(images, rows, cols):
        image[top:top + 8, left:left + 8] = 200
    return images


@pytest.fixture(scope="module")
def idx_directory(tmp_path_factory):
    """A directory named like Fashion-MNIST's, holding the four IDX files (two gzipped)."""
    directory = tmp_path_factory.mktemp("data") / "tiny-fashion"
    directory.mkdir()
    rng = np.random.default_rng(0)
    y_train = np.arange(N_TRAIN) % N_CLASSES
    y_test = np.arange(N_TEST) % N_CLASSES
    rng.shuffle(y_train)
    rng.shuffle(y_test)
    write_idx(directory / "train-images-idx3-ubyte.gz", _images(y_train, rng))
    write_idx(directory / "train-labels-idx1-ubyte.gz", y_train.astype(np.uint8))
    write_idx(directory / "t10k-images-idx3-ubyte", _images(y_test, rng))
    write_idx(directory / "t10k-labels-idx1-ubyte", y_test.astype(np.uint8))
    return directory


def _run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _printed_confusion(stdout):
    """The confusion matrix the script printed, as an array."""
    lines = stdout.split("Confusion matrix")[1].splitlines()[2:2 + N_CLASSES]
    return np.array([[int(n) for n in line.split()[1:]] for line in lines])


@pytest.fixture(scope="module")
def lenet_run(idx_directory, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    limit = 240  # of the 300 training images; the test keeps 240 // 6 = 40 of its 60
    result = _run(idx_directory, "--limit", limit, "--epochs", 4, "--batch-size", 32,
                  "--save", out / "tiny.npz", cwd=out)
    return result, out, limit


def test_lenet_run_prints_a_report(lenet_run, idx_directory):
    result, _, limit = lenet_run
    assert result.returncode == 0, result.stderr
    stdout = result.stdout
    assert f"{limit} training and {limit // 6} test images of 1x28x28, 10 classes" in stdout
    assert "Total parameters: 184,586" in stdout  # the LeNet of the recipe, 10 classes
    assert re.search(r"Epoch 1/4 .* val_accuracy: .* lr: 0\.05$", stdout, re.MULTILINE)
    # the default schedule anneals along a cosine over the 4 epochs: 0.05 (1 + cos(pi/4)) / 2
    assert re.search(r"Epoch 2/4 .* lr: 0\.0427$", stdout, re.MULTILINE)
    assert "Test accuracy: " in stdout and "Training time: " in stdout
    # the directory's name says "fashion": the classes get Fashion-MNIST's names
    for c, name in enumerate(FASHION_MNIST_CLASSES):
        assert re.search(rf"^ +{c} {re.escape(name)} +[\d.]+ %", stdout, re.MULTILINE), name
    matrix = _printed_confusion(stdout)
    assert matrix.shape == (N_CLASSES, N_CLASSES)
    y_test = cnn.data.load_idx_dataset(idx_directory).y_test[:limit // 6]
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(y_test, minlength=N_CLASSES))


def test_saved_lenet_reproduces_the_printed_results(lenet_run, idx_directory):
    result, out, limit = lenet_run
    assert result.returncode == 0, result.stderr
    model = cnn.Sequential.load(out / "tiny.npz")
    with open(out / "tiny.json") as f:
        info = json.load(f)
    X_train, _, X_test, y_test = cnn.data.load_idx_dataset(idx_directory)
    # the normalisation is the mean and std of the (limited) training images
    pixels = X_train[:limit].astype(np.float64)
    np.testing.assert_allclose(info["input_mean"], [pixels.mean()], rtol=1e-12)
    np.testing.assert_allclose(info["input_std"], [pixels.std()], rtol=1e-12)
    assert info["classes"] == list(FASHION_MNIST_CLASSES)

    X_test, y_test = X_test[:limit // 6], y_test[:limit // 6]
    x = cnn.data.normalize(X_test.astype(np.float32), info["input_mean"], info["input_std"])
    predicted = cnn.predict_batches(model, x).argmax(axis=1)
    wrong = int(np.sum(predicted != y_test))
    assert f"Test accuracy: {100 * np.mean(predicted == y_test):.2f} % ({wrong} of " \
           f"{len(y_test)} wrong)" in result.stdout
    expected = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(expected, (y_test, predicted), 1)
    np.testing.assert_array_equal(_printed_confusion(result.stdout), expected)
    # the squares are easy to tell apart: four short epochs learn most of them (chance: 10 %)
    assert np.mean(predicted == y_test) >= 0.5


def test_better_model_without_validation(idx_directory, tmp_path):
    result = _run(idx_directory, "--model", "better", "--limit", 120, "--epochs", 1,
                  "--validation", 0, "--class-names", "digits", "--quiet",
                  "--schedule", "step", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no validation" in result.stdout and "weights of the last epoch (1)" in result.stdout
    assert "Epoch 1/1" not in result.stdout  # --quiet
    assert " 9 digit 9 " in result.stdout
    # saved under the default name, in the working directory: BatchNorm and Dropout load back
    model = cnn.Sequential.load(tmp_path / "tiny-fashion_better.npz")
    assert any(isinstance(layer, cnn.BatchNorm2d) for layer in model)
    assert (tmp_path / "tiny-fashion_better.json").is_file()


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_data_exits_2_saying_how_to_install_it(tmp_path, make):
    directory = tmp_path / "fashion-mnist"
    if make == "empty":
        directory.mkdir()
    result = _run(directory, "--epochs", 1, cwd=tmp_path)
    assert result.returncode == 2
    assert "apt-get install dataset-fashion-mnist" in result.stderr
    assert str(directory) in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.npz"))  # nothing trained, nothing saved
