"""Sequential: layers chained into a network, its state dict, files and summary."""
import json
import math
import os
import secrets
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .layers import LAYERS, Module
from .layers.module import Window

__all__ = ["Sequential", "LayerSummary", "ModelSummary"]

# What save writes beside the weights, under a key no state-dict key can take
# (those always hold a dot).
_META_KEY = "__cnn_model__"
_FORMAT = "cnn.Sequential"
FORMAT_VERSION = 1


class Sequential(Module):
    """Layers applied one after the other, as ``torch.nn.Sequential``.

    Parameters
    ----------
    *layers : Module
        Layers (or other Sequentials), named "0", "1", ... as in PyTorch, so
        the state dict keys are PyTorch's ("0.weight", "1.running_mean", ...).

    Attributes
    ----------
    needs_input_grad : bool, default False
        Whether ``backward`` computes the gradient with respect to the network's
        input. Training does not need it, and skipping it spares the first
        convolution a third of its backward work; set it to True for saliency
        maps or gradient checks.

    Examples
    --------
    >>> import cnn
    >>> model = cnn.Sequential(cnn.Conv2d(1, 8, 3, padding=1), cnn.ReLU(), cnn.Flatten(),
    ...                        cnn.Linear(8 * 28 * 28, 10))
    >>> logits = model(x)                      # doctest: +SKIP
    >>> model.backward(grad_logits)            # doctest: +SKIP
    """

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i} must be a cnn layer (Module), got {type(layer).__name__}")
        self.layers = list(layers)
        self.needs_input_grad = False

    # ------------------------------------------------------------ a list of layers
    def named_children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def append(self, layer):
        """Add a layer at the end; returns self."""
        if not isinstance(layer, Module):
            raise TypeError(f"layer must be a cnn layer (Module), got {type(layer).__name__}")
        self.layers.append(layer)
        return self

    # ------------------------------------------------------------ computing
    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_out):
        """Back-propagate the gradient of the output through every layer.

        Each parameter's ``.grad`` has the gradient added to it. Returns the
        gradient with respect to the input, or None when ``needs_input_grad`` is
        False and the first layer can skip it.
        """
        grad = grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            # Only the first layer may skip its input gradient: every other
            # layer's is the gradient of the layer before. Set here, at the time
            # of use, so a layer shared by two Sequentials serves both.
            if hasattr(layer, "needs_input_grad"):
                layer.needs_input_grad = self.needs_input_grad if i == 0 else True
            grad = layer.backward(grad)
        return grad

    # ------------------------------------------------------------ description
    def __repr__(self):
        if not self.layers:
            return "Sequential()"
        lines = []
        for name, layer in self.named_children():
            # a nested module's lines are indented under its name, as in PyTorch
            body = repr(layer).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "Sequential(\n" + "\n".join(lines) + "\n)"

    def get_config(self):
        """The architecture: each layer's class name and constructor arguments (JSON-friendly)."""
        return {"layers": [{"class": type(layer).__name__, "config": layer.get_config()}
                           for layer in self.layers]}

    @classmethod
    def from_config(cls, config):
        """A new Sequential, with fresh weights, from what ``get_config`` returned."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError(f"config must be {{'layers': [...]}}, got {config!r:.200}")
        layers = []
        for i, spec in enumerate(config["layers"]):
            if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
                raise ValueError(f"layer {i} must be {{'class': ..., 'config': {{...}}}}, got {spec!r:.200}")
            name = spec.get("class")
            if name == "Sequential":
                layers.append(Sequential.from_config(spec["config"]))
                continue
            if name not in LAYERS:
                raise ValueError(f"layer {i} has unknown class {name!r}; known: {', '.join(LAYERS)}")
            try:
                layers.append(LAYERS[name](**spec["config"]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"layer {i} ({name}) cannot be built from {spec['config']}: {exc}") from exc
        return cls(*layers)

    # ------------------------------------------------------------ files
    def save(self, path):
        """Write the architecture and the weights to one ``.npz`` file at exactly ``path``.

        The architecture is JSON (class names and constructor arguments) and the
        weights are plain arrays under their state-dict keys: no pickle, so
        loading a file never runs code. The file is written to a temporary file
        in the same directory and renamed over ``path``: a crash mid-write
        leaves the old file whole, never a truncated one.
        """
        path = os.fspath(path)
        meta = {"format": _FORMAT, "version": FORMAT_VERSION, "architecture": self.get_config()}
        arrays = self.state_dict()
        arrays[_META_KEY] = np.array(json.dumps(meta))
        write_npz_atomically(path, arrays)

    @classmethod
    def load(cls, path):
        """A Sequential read from a file written by ``save``, bit for bit as saved.

        Raises
        ------
        FileNotFoundError
            No file at path.
        ValueError
            The file is not a cnn model file (truncated, empty, damaged, another
            kind of file, pickled data, an unknown format version, weights whose
            keys, shapes or dtypes do not fit the architecture); the message
            names the file.
        """
        path = os.fspath(path)
        arrays = read_npz(path, "cnn model file")
        meta = read_metadata(arrays, path, _META_KEY, _FORMAT, FORMAT_VERSION, "cnn model file")
        return build_model(meta.get("architecture"), arrays, path)

    # ------------------------------------------------------------ summary
    def summary(self, input_shape, batch_size=1, print_fn=print):
        """Print a table of the layers and return it as a ModelSummary.

        Parameters
        ----------
        input_shape : tuple of int
            The shape of one sample, without the batch dimension: (C, H, W) for
            images, (C, L) for signals, (F,) for feature vectors.
        batch_size : int
            Output shapes, multiply-adds and activation memory are for a batch of this size.
        print_fn : callable or None
            Receives the table; None prints nothing.

        Returns
        -------
        ModelSummary
            Per layer: output shape, parameters, multiply-adds, and where its
            outputs sit on the input: receptive field ``r``, jump ``j`` (the
            distance on the input between neighbouring outputs, the effective
            stride) and ``start`` (the input coordinate of the centre of the
            first output's receptive field; pixel centres are 0, 1, 2, ...),
            per spatial axis, from the recurrences

                r_l = r_{l-1} + (k_l - 1) * d_l * j_{l-1}
                j_l = j_{l-1} * s_l
                start_l = start_{l-1} + ((k_l - 1) * d_l / 2 - p_l) * j_{l-1}

            A Linear layer sees the whole map (a kernel the size of the map);
            pointwise layers change nothing. None where no single window
            describes a layer (adaptive pooling to a size that does not divide
            the input, or inputs without spatial axes).

        A forward pass on zeros finds the shapes; it runs in eval mode and
        restores each layer's mode after.
        """
        if not isinstance(input_shape, (tuple, list)) or not all(
                isinstance(s, (int, np.integer)) and s >= 1 for s in input_shape):
            raise ValueError(f"input_shape must be a tuple of positive ints (without the batch "
                             f"dimension), got {input_shape!r}")
        leaves = list(_leaves(self))
        params = self.parameters()
        dtype = params[0].dtype if params else np.dtype(np.float32)
        x = np.zeros((batch_size, *input_shape), dtype=dtype)
        modes = [layer.training for _, layer in leaves]
        n_spatial = len(input_shape) - 1
        field_ = _Field(input_shape[1:]) if n_spatial in (1, 2) else None
        rows = []
        try:
            for _, layer in leaves:
                layer.eval()
            for name, layer in leaves:
                out = layer(x)
                if field_ is not None:
                    field_.apply(layer._window(x.shape), out.shape)
                rows.append(LayerSummary(
                    name=name, layer=type(layer).__name__, output_shape=tuple(out.shape),
                    params=sum(p.size for p in layer.parameters()),
                    macs=int(layer._macs(x.shape, out.shape)),
                    receptive_field=None if field_ is None else field_.r(n_spatial),
                    jump=None if field_ is None else field_.j(n_spatial),
                    start=None if field_ is None else field_.start(n_spatial),
                    activation_bytes=out.nbytes))
                x = out
        finally:
            for (_, layer), mode in zip(leaves, modes):
                layer.train(mode)
        result = ModelSummary(
            input_shape=(batch_size, *input_shape), layers=rows,
            total_params=sum(p.size for p in params),
            total_macs=sum(r.macs for r in rows),
            activation_bytes=sum(r.activation_bytes for r in rows))
        if print_fn is not None:
            print_fn(str(result))
        return result


def _leaves(module, prefix=""):
    """(dotted name, layer) of the layers in order, nested Sequentials opened."""
    for name, child in module.named_children():
        if isinstance(child, Sequential):
            yield from _leaves(child, f"{prefix}{name}.")
        else:
            yield prefix + name, child


# ---------------------------------------------------------------- files
# Shared with CNNClassifier.save/load.


def read_npz(path, what):
    """Every array of the ``.npz`` file at path, or a ValueError naming the file.

    No pickle is loaded, and a ``.npy`` file is memory-mapped rather than read,
    to be rejected without reading a large array. FileNotFoundError,
    IsADirectoryError and PermissionError pass through as they are.
    """
    def bad(why):
        return ValueError(f"{path} is not a {what}: {why}")

    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # empty, truncated, text, pickle: numpy says which
        raise bad(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise bad("it holds a single array (.npy), not an .npz archive")
    try:
        with loaded:
            # read everything now: a damaged archive fails here, not later
            return {key: loaded[key] for key in loaded.files}
    except Exception as exc:
        # A damaged zip fails in many ways: BadZipFile (a wrong CRC-32),
        # zlib.error, NotImplementedError (a flipped compression method),
        # RuntimeError (a flipped encryption flag), MemoryError (a flipped shape)...
        raise bad(f"it is damaged or holds pickled objects ({type(exc).__name__}: {exc})") from exc


def read_metadata(arrays, path, key, file_format, version, what):
    """The JSON metadata popped from arrays[key], its format and version checked."""
    def bad(why):
        return ValueError(f"{path} is not a {what}: {why}")

    if key not in arrays:
        raise bad(f"no {key!r} entry (an .npz of other arrays?)")
    raw = arrays.pop(key)
    if raw.dtype.kind != "U" or raw.shape != ():
        raise bad(f"its {key!r} entry is not a JSON string")
    try:
        meta = json.loads(str(raw[()]))
    except (ValueError, RecursionError) as exc:
        raise bad(f"its {key!r} entry is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != file_format:
        raise bad(f"its format is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                  f"expected {file_format!r}")
    found = meta.get("version")
    if found != version:
        raise ValueError(f"{path}: format version {found!r} is not supported (this cnn reads "
                         f"version {version}; was it written by a newer cnn?)")
    return meta


def build_model(architecture, weights, path):
    """A Sequential from a file's architecture and weights, or a ValueError naming the file.

    The weights must have exactly the architecture's keys, shapes and dtypes:
    a file is never cast or completed silently.
    """
    if architecture is None:
        raise ValueError(f"{path}: no architecture in its metadata")
    try:
        model = Sequential.from_config(architecture)
    except (TypeError, ValueError, RecursionError, OverflowError, MemoryError) as exc:
        raise ValueError(f"{path}: its architecture cannot be built: "
                         f"{type(exc).__name__}: {exc}") from exc
    targets = dict(model._named_state())
    for key, value in weights.items():
        if key in targets and value.dtype != targets[key].dtype:
            raise ValueError(f"{path}: the weights do not fit the architecture: {key!r} has "
                             f"dtype {value.dtype}, expected {targets[key].dtype}")
    try:
        model.load_state_dict(weights)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the weights do not fit the architecture: {exc}") from exc
    return model


# ---------------------------------------------------------------- summary


class _Field:
    """Receptive field r, jump j and start per spatial axis (H, W), updated layer by layer.

    A 1-D input is an image of height 1, like the 1-D layers; only W is reported.
    Fractions keep the jump of a transposed convolution (1/s) exact.
    """

    def __init__(self, spatial):
        self.size = [1] * (2 - len(spatial)) + list(spatial)
        self.r_ = [Fraction(1)] * 2
        self.j_ = [Fraction(1)] * 2
        self.start_ = [Fraction(0)] * 2
        self.known = True

    def apply(self, windows, out_shape):
        if not self.known:
            return
        if isinstance(windows, str) and windows == "global":
            # a kernel the size of the map: each output sees all of it
            windows = tuple(Window(size, 1, 0, 1) for size in self.size)
        elif isinstance(windows, str):
            self.known = False
            return
        if windows is not None:
            for axis, w in enumerate(windows):
                self._apply(axis, w)
        if len(out_shape) >= 3:  # a map: its spatial size, for a Linear layer later
            spatial = list(out_shape[2:])
            self.size = [1] * (2 - len(spatial)) + spatial
        elif isinstance(windows, tuple):
            self.size = [1, 1]

    def _apply(self, axis, w):
        j = self.j_[axis]
        span = (w.k - 1) * w.d  # the dilated kernel spans span + 1 input positions
        if not w.transposed:
            self.r_[axis] += span * j
            self.start_[axis] += (Fraction(span, 2) - w.p) * j
            self.j_[axis] = j * w.s
            return
        # Transposed: output o takes input i through tap t when i * s - p + t * d = o.
        # Count the taps one output meets (the most over the s phases); they are
        # d / gcd(s, d) inputs apart.
        g = math.gcd(w.s, w.d)
        taps = max(sum(1 for t in range(w.k) if (o + w.p - t * w.d) % w.s == 0)
                   for o in range(w.s))
        self.r_[axis] += max(taps - 1, 0) * (w.d // g) * j
        self.start_[axis] += Fraction(w.p * 2 - span, 2 * w.s) * j
        self.j_[axis] = j / w.s

    @staticmethod
    def _out(values, n_spatial):
        values = [int(v) if v.denominator == 1 else float(v) for v in values]
        return tuple(values[2 - n_spatial:])

    def r(self, n):
        return self._out(self.r_, n) if self.known else None

    def j(self, n):
        return self._out(self.j_, n) if self.known else None

    def start(self, n):
        return self._out(self.start_, n) if self.known else None


@dataclass
class LayerSummary:
    """One row of ``Sequential.summary``; spatial tuples are (H, W), or (L,) for signals."""

    name: str
    layer: str
    output_shape: tuple
    params: int
    macs: int
    receptive_field: tuple = None
    jump: tuple = None
    start: tuple = None
    activation_bytes: int = 0


@dataclass
class ModelSummary:
    """What ``Sequential.summary`` returns; ``str()`` of it is the printed table."""

    input_shape: tuple
    layers: list = field(default_factory=list)
    total_params: int = 0
    total_macs: int = 0
    activation_bytes: int = 0

    def __str__(self):
        def fmt(t):
            return "-" if t is None else "x".join(str(v) for v in t)

        header = ("Layer", "Output shape", "Params", "Mult-adds", "RF", "Jump", "Start")
        body = [(f"{r.name} {r.layer}", str(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
                 fmt(r.receptive_field), fmt(r.jump), fmt(r.start)) for r in self.layers]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(row):
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths)))

        rule = "-" * len(line(header))
        return "\n".join([
            f"Input shape: {self.input_shape}", rule, line(header), rule,
            *(line(row) for row in body), rule,
            f"Total parameters: {self.total_params:,}",
            f"Total multiply-adds: {self.total_macs:,}",
            f"Activation memory: {self.activation_bytes:,} bytes "
            f"({self.activation_bytes / 2**20:.2f} MiB, the outputs of all layers)",
        ])


def write_npz_atomically(path, arrays):
    """np.savez to a temporary file in path's directory, then renamed over path.

    A crash mid-write leaves the old file whole, never a truncated one. After
    an exception the temporary file is removed; a process killed outright
    (SIGKILL, power loss) can leave it behind, as a hidden
    ``.<name>.<random>.tmp`` beside ``<name>``: it never takes the model's
    name, and ``*.npz`` does not match it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _create_temporary(directory, name):
    """(fd, path) of a new file ``.<name>.<random>.tmp`` in directory, opened for writing.

    Not tempfile.mkstemp: its file is private (0600), and reading the umask to
    widen it means setting it (os.umask), which races with every other thread.
    Created with mode 0666, the file gets the umask's permissions, as ``open`` gives.
    """
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            # O_EXCL: never an existing file, nor one a symbolic link points to
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {directory} for {name}")
