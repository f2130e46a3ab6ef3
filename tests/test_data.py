"""cnn.data: IDX files, data sets, mini-batches and augmentation transforms.

IDX files are written here byte by byte (``_idx_bytes``), independently of
``cnn.data.write_idx``, so that the reader is checked against the format
itself and not against its own inverse.
"""
import gzip
import os
import struct

import numpy as np
import pytest
import scipy.ndimage

from cnn import data

# --------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------

CODES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32,
         0x0D: np.float32, 0x0E: np.float64}
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def _idx_bytes(array, code):
    """The IDX encoding of array, from the format's description."""
    array = np.asarray(array)
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.dtype(CODES[code]).newbyteorder(">")).tobytes()


def _write(path, content, compress=False):
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def _sample(code, shape, seed=0):
    """Values spanning the dtype's range (extremes included), to catch byte-order slips."""
    dtype = np.dtype(CODES[code])
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        values = rng.standard_normal(shape).astype(dtype) * 1e3
        values.flat[:3] = [np.finfo(dtype).max, np.finfo(dtype).tiny, -0.0]
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        values.flat[:2] = [info.min, info.max]
    return values


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("code", sorted(CODES), ids=[f"0x{c:02X}" for c in sorted(CODES)])
@pytest.mark.parametrize("shape", [(7,), (5, 3, 4), (2, 1, 3, 2)])
def test_read_idx_round_trips_bit_exactly(tmp_path, code, compress, shape):
    expected = _sample(code, shape)
    path = _write(tmp_path / "file", _idx_bytes(expected, code), compress)
    got = data.read_idx(path)
    assert got.dtype == expected.dtype and got.dtype.isnative
    assert got.shape == shape
    assert got.tobytes() == expected.tobytes()  # bit-exact, -0.0 included
    assert got.flags.writeable and got.flags.c_contiguous


@pytest.mark.parametrize("code", sorted(CODES))
def test_write_idx_writes_the_format(tmp_path, code):
    array = _sample(code, (4, 3, 2))
    data.write_idx(tmp_path / "plain", array)
    assert (tmp_path / "plain").read_bytes() == _idx_bytes(array, code)
    data.write_idx(tmp_path / "file.gz", array)
    assert gzip.decompress((tmp_path / "file.gz").read_bytes()) == _idx_bytes(array, code)
    assert data.read_idx(tmp_path / "file.gz").tobytes() == array.tobytes()


def test_write_idx_rejects_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="IDX dtype"):
        data.write_idx(tmp_path / "f", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        data.write_idx(tmp_path / "f", np.uint8(3))


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    gzipped_without_suffix = _write(tmp_path / "labels", _idx_bytes(labels, 0x08), compress=True)
    plain_with_suffix = _write(tmp_path / "labels.gz", _idx_bytes(labels, 0x08))
    np.testing.assert_array_equal(data.read_idx(gzipped_without_suffix), labels)
    np.testing.assert_array_equal(data.read_idx(plain_with_suffix), labels)


def test_empty_dimensions_are_read(tmp_path):
    path = _write(tmp_path / "empty", _idx_bytes(np.zeros((0, 28, 28), np.uint8), 0x08))
    assert data.read_idx(path).shape == (0, 28, 28)


GOOD = _idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4), 0x0B)
CORRUPTIONS = {
    "empty file": (b"", "4-byte magic number"),
    "short magic": (b"\x00\x00\x08", "4-byte magic number"),
    "bad magic": (b"\x01" + GOOD[1:], "two zero bytes, found 01 00 0b 03"),
    "html page": (b"<!DOCTYPE html><html></html>", "two zero bytes"),
    "unknown type code": (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown IDX type code 0x0A"),
    "zero dimensions": (b"\x00\x00\x08\x00", "0 dimensions"),
    "truncated header": (GOOD[:4 + 4 * 2], "truncated IDX header"),
    "truncated data": (GOOD[:-1], r"truncated: shape \(2, 3, 4\) of int16 needs 64 bytes"),
    "extra bytes": (GOOD + b"\x00", "too long.*needs 64 bytes.*found 65"),
    "more dimensions than data": (b"\x00\x00\x08\x04" + struct.pack(">4I", 9, 9, 9, 9),
                                  "truncated"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_files_are_errors_naming_the_file(tmp_path, case, compress):
    content, message = CORRUPTIONS[case]
    path = _write(tmp_path / "corrupt-file-idx3-ubyte", content, compress)
    with pytest.raises(ValueError, match=message) as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_is_an_error_naming_the_file(tmp_path, damage):
    packed = gzip.compress(GOOD)
    packed = packed[:len(packed) // 2] if damage == "truncated" else (
        packed[:12] + bytes(b ^ 0xFF for b in packed[12:]))
    path = _write(tmp_path / "images.gz", packed)
    with pytest.raises(ValueError, match="gzip") as error:
        data.read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_checks_the_number_of_dimensions(tmp_path):
    path = _write(tmp_path / "labels", _idx_bytes(np.zeros(5, np.uint8), 0x08))
    with pytest.raises(ValueError, match="expected an IDX file of 3 dimension.*found 1") as error:
        data.read_idx(path, ndim=3)
    assert str(path) in str(error.value)
    assert data.read_idx(path, ndim=1).shape == (5,)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        data.read_idx(tmp_path / "nothing-here")


# --------------------------------------------------------------------------
# load_idx_dataset
# --------------------------------------------------------------------------


def _write_dataset(directory, names, n_train=6, n_test=4, H=5, W=3, compress=False):
    """A small data set under the given names (train images, train labels, test ...)."""
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (n_train, H, W), dtype=np.uint8),
              rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, H, W), dtype=np.uint8),
              rng.integers(0, 10, n_test, dtype=np.uint8)]
    directory.mkdir(exist_ok=True)
    for name, array in zip(names, arrays):
        _write(directory / name, _idx_bytes(array, 0x08), compress)
    return arrays


USUAL = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
NAMINGS = {
    "plain": (USUAL, False),
    "gz": ([n + ".gz" for n in USUAL], True),
    "dotted": ([n.replace("-idx", ".idx") for n in USUAL], False),
    "test-for-t10k": ([n.replace("t10k", "test") for n in USUAL], True),
}


@pytest.mark.parametrize("naming", NAMINGS)
def test_load_idx_dataset_finds_the_usual_names(tmp_path, naming):
    names, compress = NAMINGS[naming]
    arrays = _write_dataset(tmp_path / "set", names, compress=compress)
    dataset = data.load_idx_dataset(tmp_path / "set")
    assert isinstance(dataset, data.IdxDataset)
    X_train, y_train, X_test, y_test = dataset
    assert X_train.shape == (6, 1, 5, 3) and X_test.shape == (4, 1, 5, 3)
    assert X_train.dtype == np.uint8
    for got, expected in zip(dataset, arrays):
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_load_idx_dataset_prefix(tmp_path):
    names = ["emnist-digits-" + n.replace("t10k", "test") + ".gz" for n in USUAL]
    _write_dataset(tmp_path, names, compress=True)
    assert data.load_idx_dataset(tmp_path, prefix="emnist-digits-").X_test.shape == (4, 1, 5, 3)


def test_load_idx_dataset_missing_file_lists_the_names(tmp_path):
    _write_dataset(tmp_path, USUAL)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError) as error:
        data.load_idx_dataset(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    for name in ["t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz",
                 "t10k-labels.idx1-ubyte", "test-labels-idx1-ubyte.gz"]:
        assert name in message
    with pytest.raises(FileNotFoundError, match="no such directory"):
        data.load_idx_dataset(tmp_path / "absent")


def test_load_idx_dataset_count_mismatch_names_both_files(tmp_path):
    names = USUAL
    _write_dataset(tmp_path, names)
    _write(tmp_path / names[3], _idx_bytes(np.zeros(5, np.uint8), 0x08))  # 4 images, 5 labels
    with pytest.raises(ValueError, match="4 images.*5 labels") as error:
        data.load_idx_dataset(tmp_path)
    assert str(tmp_path / names[2]) in str(error.value)
    assert str(tmp_path / names[3]) in str(error.value)


@pytest.mark.parametrize("swap", ["labels as images", "images as labels"])
def test_load_idx_dataset_wrong_number_of_dimensions(tmp_path, swap):
    _write_dataset(tmp_path, USUAL)
    if swap == "labels as images":
        bad, content = USUAL[0], _idx_bytes(np.zeros(6, np.uint8), 0x08)
    else:
        bad, content = USUAL[1], _idx_bytes(np.zeros((6, 5, 3), np.uint8), 0x08)
    _write(tmp_path / bad, content)
    with pytest.raises(ValueError, match="dimension") as error:
        data.load_idx_dataset(tmp_path)
    assert str(tmp_path / bad) in str(error.value)


@pytest.mark.skipif(not os.path.isfile(os.path.join(FASHION_MNIST, "train-labels-idx1-ubyte.gz")),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_debian_fashion_mnist():
    X_train, y_train, X_test, y_test = data.load_idx_dataset(FASHION_MNIST)
    assert X_train.shape == (60000, 1, 28, 28) and X_test.shape == (10000, 1, 28, 28)
    assert X_train.dtype == X_test.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    # ten balanced classes, labels 0..9
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), [1000] * 10)
    assert X_train.max() == 255 and X_train.min() == 0


def test_fashion_mnist_class_names():
    names = data.FASHION_MNIST_CLASSES
    assert len(names) == 10 and len(set(names)) == 10
    assert all(isinstance(name, str) and name for name in names)
    assert (names[0], names[9]) == ("T-shirt/top", "Ankle boot")


@pytest.mark.skipif(not os.path.isfile(os.path.join(FASHION_MNIST, "t10k-labels-idx1-ubyte.gz")),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_class_names_fit_the_images():
    # All shoes in Fashion-MNIST face the same way, so the mean image of a footwear
    # class is far from mirror-symmetric; clothes and bags are nearly symmetric.
    X_test, y_test = data.load_idx_dataset(FASHION_MNIST)[2:]
    asymmetry = []
    for c in range(10):
        mean_image = X_test[y_test == c, 0].mean(axis=0)
        asymmetry.append(np.abs(mean_image - mean_image[:, ::-1]).mean())
    most_asymmetric = {data.FASHION_MNIST_CLASSES[c] for c in np.argsort(asymmetry)[-3:]}
    assert most_asymmetric == {"Sandal", "Sneaker", "Ankle boot"}
    footwear, others = [5, 7, 9], [0, 1, 2, 3, 4, 6, 8]
    assert min(asymmetry[c] for c in footwear) > 1.5 * max(asymmetry[c] for c in others)


def test_load_digits_images():
    X, y = data.load_digits_images()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float64
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))
    assert X.min() == 0 and X.max() == 16
    from sklearn.datasets import load_digits
    np.testing.assert_array_equal(X.reshape(len(X), -1), load_digits().data)
    assert data.load_digits_images(np.float32)[0].dtype == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        data.load_digits_images(np.int32)


# --------------------------------------------------------------------------
# Mini-batches
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_minibatches_cover_every_sample_once(n, batch_size, shuffle):
    X = np.arange(n * 2).reshape(n, 2)
    y = np.arange(n)
    batches = list(data.iterate_minibatches(X, y, batch_size, shuffle=shuffle, rng=0))
    seen = np.concatenate([yb for _, yb in batches])
    np.testing.assert_array_equal(np.sort(seen), y)
    if not shuffle:
        np.testing.assert_array_equal(seen, y)
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # samples stay with their targets
    assert [len(yb) for _, yb in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert len(batches) == -(-n // batch_size)


def test_minibatches_drop_last_and_epochs():
    X, y = np.arange(10), np.arange(10)
    batches = list(data.iterate_minibatches(X, y, 3, rng=0, drop_last=True))
    assert [len(b) for _, b in batches] == [3, 3, 3]
    assert len(set(np.concatenate([b for _, b in batches]))) == 9
    rng = np.random.default_rng(0)
    first = np.concatenate([b for _, b in data.iterate_minibatches(X, y, 4, rng=rng)])
    second = np.concatenate([b for _, b in data.iterate_minibatches(X, y, 4, rng=rng)])
    assert not np.array_equal(first, second)  # one generator: a new order each epoch
    np.testing.assert_array_equal(np.sort(second), y)


def test_minibatches_are_seeded():
    X = np.arange(50)
    orders = [np.concatenate(list(data.iterate_minibatches(X, None, 7, rng=seed)))
              for seed in (3, 3, 4)]
    np.testing.assert_array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], orders[2])


def test_minibatches_transform_and_errors():
    X = np.zeros((6, 1, 4, 4))
    batches = list(data.iterate_minibatches(X, np.arange(6), 4, rng=0,
                                            transform=data.GaussianNoise(1.0)))
    assert batches[0][0].shape == (4, 1, 4, 4) and batches[0][0].std() > 0.5
    assert X.max() == 0  # the data set is not changed
    with pytest.raises(ValueError, match="same number of samples, got 6 and 5"):
        next(data.iterate_minibatches(X, np.arange(5), 2))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(data.iterate_minibatches(X, None, 0))
    with pytest.raises(TypeError, match="batch_size must be an int"):
        next(data.iterate_minibatches(X, None, 2.0))


# --------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------

RANDOM_TRANSFORMS = {
    "shift": lambda x, rng: data.random_shift(x, 2, rng),
    "shift edge": lambda x, rng: data.random_shift(x, 2, rng, fill="edge"),
    "crop": lambda x, rng: data.random_crop(x, 3, rng),
    "rotation": lambda x, rng: data.random_rotation(x, 15, rng),
    "flip": lambda x, rng: data.random_flip(x, 0.5, rng),
    "noise": lambda x, rng: data.gaussian_noise(x, 0.1, rng),
    "compose": data.Compose([data.RandomShift(1), data.RandomRotation(10), data.RandomFlip(),
                             data.GaussianNoise(0.05), data.Normalize(0.5, 0.25)]),
}


def _images(dtype=np.float64, shape=(16, 2, 9, 11), seed=0):
    return np.random.default_rng(seed).random(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", RANDOM_TRANSFORMS)
def test_transforms_are_seeded_and_keep_shape_and_dtype(name, dtype):
    transform = RANDOM_TRANSFORMS[name]
    x = _images(dtype)
    before = x.copy()
    a, b, c = transform(x, 7), transform(x, np.random.default_rng(7)), transform(x, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == dtype
    np.testing.assert_array_equal(x, before)  # the input is not changed


@pytest.mark.parametrize("name", RANDOM_TRANSFORMS)
def test_transforms_take_integer_images_as_float64(name):
    x = (_images() * 255).astype(np.uint8)
    assert RANDOM_TRANSFORMS[name](x, 0).dtype == np.float64


def _bright_pixel(shape, i, j):
    x = np.zeros(shape)
    x[:, :, i, j] = 1.0
    return x


def test_translate_moves_a_pixel_by_the_given_amount():
    x = _bright_pixel((3, 2, 7, 9), 3, 4)
    moved = data.translate(x, [1, -2, 0], [2, 0, -4])
    for n, (i, j) in enumerate([(4, 6), (1, 4), (3, 0)]):
        np.testing.assert_array_equal(moved[n], _bright_pixel((1, 2, 7, 9), i, j)[0])
    assert data.translate(x, 0, 9).max() == 0  # moved out entirely: all zeros


def test_translate_edge_fill_repeats_the_border():
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    moved = data.translate(x, 0, 2, fill="edge")
    np.testing.assert_array_equal(moved[0, 0], [[0, 0, 0, 1], [4, 4, 4, 5], [8, 8, 8, 9]])


@pytest.mark.parametrize("transform", ["shift", "crop"])
def test_random_shift_and_crop_move_a_pixel_within_range(transform):
    x = _bright_pixel((400, 1, 11, 11), 5, 5)
    out = (data.random_shift(x, 2, rng=0) if transform == "shift"
           else data.random_crop(x, 2, rng=0))
    positions = np.argwhere(out[:, 0] == 1.0)
    assert len(positions) == len(x) and out.sum() == len(x)  # one intact pixel per image
    offsets = positions[:, 1:] - 5
    assert set(map(tuple, offsets)) == {(i, j) for i in range(-2, 3) for j in range(-2, 3)}


def test_random_crop_size():
    x = _images(shape=(5, 3, 8, 8))
    out = data.random_crop(x, 0, rng=0, size=(4, 6))
    assert out.shape == (5, 3, 4, 6)
    for n in range(5):  # each crop is a window of its image
        windows = np.lib.stride_tricks.sliding_window_view(x[n], (4, 6), axis=(1, 2))
        assert any(np.array_equal(windows[:, i, j], out[n]) for i in range(5) for j in range(3))
    with pytest.raises(ValueError, match="larger than the padded images"):
        data.random_crop(x, 1, size=11)


def test_rotation_by_zero_is_the_identity():
    x = _images()
    np.testing.assert_array_equal(data.rotate(x, 0), x)
    np.testing.assert_array_equal(data.random_rotation(x, 0, rng=0), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rotation_matches_scipy(dtype):
    x = _images(dtype, shape=(4, 2, 9, 12))
    angles = [7.5, -30.0, 90.0, 180.0]
    out = data.rotate(x, angles)
    for n, angle in enumerate(angles):
        for c in range(2):
            expected = scipy.ndimage.rotate(x[n, c].astype(np.float64), angle, reshape=False,
                                            order=1, mode="grid-constant")
            np.testing.assert_allclose(out[n, c], expected, atol=1e-5 if dtype == np.float32
                                       else 1e-12)


def test_rotation_turns_counter_clockwise():
    x = _bright_pixel((1, 1, 5, 5), 0, 2)  # top centre
    np.testing.assert_allclose(data.rotate(x, 90), _bright_pixel((1, 1, 5, 5), 2, 0), atol=1e-12)


def test_random_rotation_angles_stay_within_range():
    x = _bright_pixel((200, 1, 21, 21), 10, 20)  # on the right edge's midpoint, radius 10
    out = data.random_rotation(x, 30, rng=0)
    rows, cols = np.indices((21, 21))
    weight = out[:, 0].sum(axis=(1, 2))
    angle = np.degrees(np.arctan2(-((out[:, 0] * (rows - 10)).sum(axis=(1, 2)) / weight),
                                  (out[:, 0] * (cols - 10)).sum(axis=(1, 2)) / weight))
    assert np.abs(angle).max() <= 30.5 and np.abs(angle).max() > 25
    assert (angle > 0).any() and (angle < 0).any()


def test_flip():
    x = _images()
    np.testing.assert_array_equal(data.random_flip(data.random_flip(x, 1.0), 1.0), x)
    np.testing.assert_array_equal(data.random_flip(x, 1.0), x[..., ::-1])
    np.testing.assert_array_equal(data.random_flip(x, 0.0), x)
    once = data.random_flip(x, 0.5, rng=3)
    np.testing.assert_array_equal(data.random_flip(once, 0.5, rng=3), x)  # same choices undo
    flipped = [np.array_equal(once[n], x[n, :, :, ::-1]) for n in range(len(x))]
    kept = [np.array_equal(once[n], x[n]) for n in range(len(x))]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_gaussian_noise():
    x = np.full((50, 2, 20, 20), 3.0)
    noisy = data.gaussian_noise(x, 0.5, rng=0)
    assert abs(noisy.mean() - 3.0) < 0.01 and abs(noisy.std() - 0.5) < 0.01
    np.testing.assert_array_equal(data.gaussian_noise(x, 0.0, rng=0), x)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_normalization_gives_mean_0_std_1_per_channel(dtype):
    rng = np.random.default_rng(0)
    x = (rng.random((300, 3, 6, 5)) * [[[[10]], [[100]], [[200]]]] + [[[[5]], [[-20]], [[40]]]])
    x = x.clip(0, 255).astype(dtype)
    mean, std = data.fit_normalization(x, batch_size=7)  # chunks of 7 samples
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=(0, 2, 3)), rtol=1e-12)
    z = data.normalize(x, mean, std)
    assert z.dtype == (np.float64 if dtype == np.uint8 else dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3), dtype=np.float64), 0, atol=tol)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3), dtype=np.float64), 1, atol=tol)
    np.testing.assert_allclose(data.Normalize(mean, std)(x), z)


def test_normalization_of_a_constant_channel_only_centres_it():
    x = np.stack([np.full((4, 3, 3), 7.0), _images(shape=(4, 3, 3))], axis=1)
    mean, std = data.fit_normalization(x)
    assert mean[0] == 7 and std[0] == 1
    assert np.all(data.normalize(x, mean, std)[:, 0] == 0)


def test_compose_draws_from_one_generator():
    x = _images()
    steps = [data.RandomShift(2), data.RandomRotation(10), data.GaussianNoise(0.1)]
    rng = np.random.default_rng(5)
    by_hand = x
    for step in steps:
        by_hand = step(by_hand, rng)
    np.testing.assert_array_equal(data.Compose(steps)(x, 5), by_hand)
    assert "RandomRotation(max_degrees=10.0)" in repr(data.Compose(steps))


BAD_ARGUMENTS = [
    (lambda: data.random_shift(np.zeros((2, 3, 4)), 1), ValueError, r"\(N, C, H, W\), got shape"),
    (lambda: data.random_shift(np.zeros((1, 1, 4, 4), complex), 1), TypeError, "real numbers"),
    (lambda: data.random_shift(np.zeros((1, 1, 4, 4), np.float16), 1), TypeError, "float32"),
    (lambda: data.random_shift(np.zeros((1, 1, 4, 4)), -1), ValueError, "max_shift must be >= 0"),
    (lambda: data.random_shift(np.zeros((1, 1, 4, 4)), 1.5), TypeError, "max_shift must be an"),
    (lambda: data.random_shift(np.zeros((1, 1, 4, 4)), 1, fill="wrap"), ValueError, "fill"),
    (lambda: data.translate(np.zeros((2, 1, 4, 4)), [1, 2, 3], 0), ValueError, "dy must be"),
    (lambda: data.translate(np.zeros((2, 1, 4, 4)), 0, 0.5), ValueError, "dx must be"),
    (lambda: data.random_crop(np.zeros((1, 1, 4, 4)), -2), ValueError, "padding must be >= 0"),
    (lambda: data.random_crop(np.zeros((1, 1, 4, 4)), (1, 2, 3)), ValueError, "padding"),
    (lambda: data.random_rotation(np.zeros((1, 1, 4, 4)), 200), ValueError, r"in \[0, 180\]"),
    (lambda: data.random_rotation(np.zeros((1, 1, 4, 4)), "10"), TypeError, "max_degrees"),
    (lambda: data.rotate(np.zeros((2, 1, 4, 4)), [1.0]), ValueError, "degrees"),
    (lambda: data.rotate(np.zeros((1, 1, 4, 4)), np.nan), ValueError, "finite"),
    (lambda: data.random_flip(np.zeros((1, 1, 4, 4)), 1.5), ValueError, r"p must .* \[0, 1\]"),
    (lambda: data.gaussian_noise(np.zeros((1, 1, 4, 4)), -0.1), ValueError, "std must be"),
    (lambda: data.gaussian_noise(np.zeros((1, 1, 4, 4)), np.inf), ValueError, "std must be"),
    (lambda: data.normalize(np.zeros((1, 2, 4, 4)), [0, 0, 0], 1), ValueError, "2 numbers"),
    (lambda: data.normalize(np.zeros((1, 1, 4, 4)), 0, 0), ValueError, "std finite and > 0"),
    (lambda: data.fit_normalization(np.zeros((0, 1, 4, 4))), ValueError, "at least one pixel"),
    (lambda: data.Normalize(0, -1), ValueError, "std > 0"),
    (lambda: data.RandomShift(-1), ValueError, "max_shift"),
    (lambda: data.RandomFlip(2), ValueError, "p must be"),
    (lambda: data.Compose([1]), TypeError, "callable"),
]


@pytest.mark.parametrize("call, error, message", BAD_ARGUMENTS)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()
