"""The base class of every layer: parameters, buffers, modes, the backward cache, repr."""
import json
from collections import namedtuple

import numpy as np

from ..functional import _int as check_int  # an int >= minimum; a bool is not an int
from ..parameter import Parameter

__all__ = ["Module"]

# How a layer's outputs sit on its input along one spatial axis, for the receptive
# field arithmetic of Sequential.summary: kernel k, stride s, padding before p,
# dilation d; a transposed layer runs the other way (its stride divides the jump).
Window = namedtuple("Window", "k s p d transposed", defaults=(False,))


class Module:
    """Base class of the layers: a forward pass, its backward, and the bookkeeping.

    A subclass sets its hyper-parameters and ``Parameter`` attributes in
    ``__init__`` and writes ``forward(x)`` and ``backward(grad_out)``.
    Parameters are found by looking at the instance's attributes (in the order
    they were set, which is the order of PyTorch's state dict); buffers, plain
    arrays such as BatchNorm's running statistics, are listed by name in
    ``_buffer_names``.

    ``backward`` needs what ``forward`` saw. In training mode ``forward`` keeps
    just that (``self._cache``), and ``backward`` uses it once and lets it go;
    in eval mode ``forward`` keeps nothing, so inference memory stays flat.

    Attributes
    ----------
    training : bool
        True after ``train()`` (the default), False after ``eval()``.
    """

    _buffer_names = ()

    def __init__(self):
        self.training = True
        self._cache = None
        self._config = {}

    # ------------------------------------------------------------ computing
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, grad_out):
        """Gradient of the loss with respect to the input, given the one of the output.

        The gradients of the parameters are added to their ``.grad``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def __call__(self, x):
        return self.forward(x)

    def _save_for_backward(self, *values):
        # In eval mode nothing is kept: a forward pass for inference must not
        # hold on to activations (nor to those of an earlier training pass).
        self._cache = values if self.training else None

    def _saved(self):
        """What forward kept for backward; it is released, as PyTorch frees its graph."""
        if self._cache is None:
            raise RuntimeError(
                f"{self!r}: backward needs a forward pass in training mode just before it "
                "(eval mode keeps nothing for backward, and backward runs once per forward)")
        cache, self._cache = self._cache, None
        return cache

    # ------------------------------------------------------------ parameters and buffers
    def named_children(self):
        """(name, module) of the modules inside this one; layers have none."""
        return []

    def named_parameters(self, prefix=""):
        """(name, Parameter) pairs, with PyTorch's names ("weight", "0.bias", ...)."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self):
        """The list of Parameters, what an optimiser needs."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        """(name, ndarray) of the state that is saved but not learned (running statistics)."""
        for name in self._buffer_names:
            value = getattr(self, name)
            if value is not None:
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def _named_state(self, prefix=""):
        """(key, array) in PyTorch's state-dict order: own parameters, own buffers, then children's."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value.data
        for name in self._buffer_names:
            value = getattr(self, name)
            if value is not None:
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._named_state(f"{prefix}{name}.")

    def state_dict(self):
        """Copies of the parameters and buffers under PyTorch's keys ("weight", "0.running_mean", ...).

        Copies, so that a state dict kept aside (the best weights so far) does
        not move on with training.
        """
        return {key: np.array(value, copy=True) for key, value in self._named_state()}

    def load_state_dict(self, state_dict):
        """Copy arrays into the parameters and buffers, in place.

        Accepts what ``state_dict`` returns, and a PyTorch state dict converted
        to NumPy (``{k: v.numpy() for k, v in module.state_dict().items()}``).
        The keys must be exactly this module's and the shapes must match; on any
        error nothing is changed. Values are cast to the module's dtype.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
        targets = dict(self._named_state())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if missing or unexpected:
            problems = []
            if missing:
                problems.append("missing key(s) " + ", ".join(map(repr, missing)))
            if unexpected:
                problems.append("unexpected key(s) " + ", ".join(map(repr, unexpected)))
            raise ValueError(f"state_dict does not match {type(self).__name__}: " + "; ".join(problems))
        values = {}
        for key, target in targets.items():
            value = np.asarray(state_dict[key])
            if value.dtype.kind not in "biuf":
                raise TypeError(f"state_dict[{key!r}] must hold numbers, got dtype {value.dtype}")
            if value.shape != target.shape:
                raise ValueError(
                    f"state_dict[{key!r}] has shape {value.shape}, expected {target.shape}")
            values[key] = value
        for key, target in targets.items():
            target[...] = values[key]

    def zero_grad(self):
        """Set the gradient of every parameter to zero."""
        for p in self.parameters():
            p.zero_grad()

    def astype(self, dtype):
        """Convert the parameters and floating buffers to dtype (float64 for gradient checks).

        The gradients are reset to zeros; an optimiser built before holds the old
        arrays, so convert first and build the optimiser after.
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        for p in vars(self).values():
            if isinstance(p, Parameter):
                p.astype(dtype)
        for name in self._buffer_names:
            value = getattr(self, name)
            if value is not None and value.dtype.kind == "f":
                setattr(self, name, value.astype(dtype))
        if "dtype" in self._config:
            self.dtype = dtype
            self._config["dtype"] = dtype.name
        self._cache = None
        for _, child in self.named_children():
            child.astype(dtype)
        return self

    # ------------------------------------------------------------ modes
    def train(self, mode=True):
        """Training mode (Dropout drops, BatchNorm uses and updates batch statistics)."""
        self.training = bool(mode)
        if not self.training:
            self._cache = None
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode: Dropout is the identity, BatchNorm uses its running statistics."""
        return self.train(False)

    # ------------------------------------------------------------ description
    def get_config(self):
        """The constructor's arguments, as JSON values (what ``save`` writes).

        Passed through JSON here, so tuples read back as the lists a loaded file gives.
        """
        return json.loads(json.dumps(self._config))

    def extra_repr(self):
        """The settings shown between the parentheses of the repr."""
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    # ------------------------------------------------------------ summary hooks
    def _window(self, in_shape):
        """Per spatial axis (H, W), the Window of this layer; None for a pointwise layer."""
        return None

    def _macs(self, in_shape, out_shape):
        """Multiply-adds of one forward pass on an input of in_shape."""
        return 0


# ---------------------------------------------------------------- helpers for layers


def as_input(x, dtype=None, name="x"):
    """x as a float ndarray; integer input becomes the layer's dtype.

    A layer with parameters passes its dtype: float32 and float64 are never
    mixed silently.
    """
    x = np.asarray(x)
    if x.dtype.kind in "biu":
        return x.astype(dtype if dtype is not None else np.float64)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be an array of float32 or float64, got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the layer's parameters are {np.dtype(dtype)}: "
            f"convert the input (x.astype(np.{np.dtype(dtype).name})) or the model (model.astype)")
    return x


def check_dtype(dtype):
    """np.dtype of float32 or float64, the two dtypes the kernels compute in."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_tuple(value, name, minimum, n):
    """An int or a tuple of n ints, each >= minimum, as a tuple of n ints (PyTorch's _pair)."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
        return tuple(check_int(v, name, minimum) for v in value)
    return (check_int(value, name, minimum),) * n


def check_float(value, name, low=None, high=None):
    """A real number in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def uniform(rng, shape, bound, dtype):
    """Draws from U(-bound, bound): PyTorch's default initialisation of weights and biases."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
