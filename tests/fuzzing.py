"""A fuzzer for every op of ``cnn.functional``: one case description, one oracle, one checker.

A *case* is a plain dict of Python literals, so that ``repr(case)`` reproduces it
anywhere (``python3 scripts/fuzz_ops.py --replay "<case>"``)::

    {"op": "conv2d",
     "arrays": {"x": {"shape": (2, 3, 5, 5), "dtype": "float32", "layout": "F"},
                "weight": {...}, "bias": None},
     "kwargs": {"stride": (1, 2), "padding": "same", ...},
     "seed": 12345, "split": True}

The arrays are passed positionally, in order, the kwargs by name; the seed fills
the arrays; "split" runs every kernel on all threads however small its work.
Hypothesis draws cases (``cases()``) with arbitrary shapes, strides, paddings,
dilations, groups, modes, dtypes and memory layouts (C, F-ordered, strided views,
negative strides, read-only, nested lists), zero-size batches, channels and
images, and deliberately invalid parameters.

The *oracle* (``judge``) decides, without calling cnn, what a case must do. It
writes down PyTorch's rules for each op, and the few places where cnn's contract
(README, "The operations") departs from them on purpose:

- ``valid``: PyTorch computes it; cnn must agree with ``tests/reference.py``
  (integer and boolean arrays computed in float64, as cnn documents).
- ``extension``: PyTorch refuses, but the result is well defined and cnn computes
  it (zero output channels, zero-size images under zero padding, pooling and
  padding of no channels); cnn must agree with the reference.
- ``invalid``: PyTorch refuses it too; cnn must raise the ValueError or TypeError
  that the reasons call for (either, where both apply: cnn may check in any order).
- ``refused``: PyTorch computes it, cnn refuses by design (``REFUSALS``), with a
  ValueError or TypeError.
- ``too large``: the result cannot be allocated; ValueError or MemoryError.

The *checker* (``check``) runs the op and raises ``Failure`` for anything else: a
wrong answer or dtype, an input written to, an output sharing memory with an
input, an invalid case accepted, a valid one refused, any other exception. A
crash cannot be caught in-process: ``run_child`` runs the fuzzer in a child
interpreter that prints each case before running it, and names the last one when
the child dies. ``tests/test_fuzz.py`` runs a fixed set of examples that way;
``scripts/fuzz_ops.py`` runs it for a number of minutes.

Run as a script, this file is that child: ``--examples N`` runs N derandomized
examples of each op, ``--minutes M [--seed S]`` random ones until the time is up.
"""

import argparse
import ast
import copy
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field

if __name__ == "__main__":  # the child: import cnn from this checkout, as the tests do
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

import cnn.functional as F
import reference as R
from test_functional import (LAYOUTS, PAD_MODES, assert_close, assert_untouched, conv_pads,
                             int_or_pair, pool_has_empty_window, relayout, smallest_input)

OPS = ("conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
       "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
       "pad2d", "pad2d_backward")
KINDS = ("valid", "extension", "invalid", "refused", "too large", "known bug")

# What cnn refuses although PyTorch computes it, and why each refusal is deliberate.
REFUSALS = {
    "unbatched": "a 3-D (unbatched) input: cnn takes 4-D batches only (README)",
    "dtype": "float16 or complex arrays: cnn computes in float32 and float64 only (README)",
    "empty window": "a max-pooling window wholly in the padding: PyTorch returns -inf and an "
                    "index outside the plane that its own backward writes through",
    "no input channels": "conv2d with C_in = 0: PyTorch returns 0 output channels, not C_out",
    "negative padding": "negative pad2d padding: PyTorch crops, cnn's padding is >= 0",
    "negative divisor": "a negative divisor_override: PyTorch divides by it, cnn takes >= 1",
    "other rank": "pad2d zeros of a 2-D or 5-D+ array: PyTorch pads the last two axes of "
                  "any rank, cnn takes 4-D batches only",
    "mixed dtypes": "a grad_out of the other float dtype: autograd casts it, cnn never mixes "
                    "float32 and float64 silently (README)",
    "one-element pair": "a one-element sequence for a pair, e.g. stride=(2,): PyTorch repeats "
                        "it, cnn takes an int or a pair (documented as such by both)",
    "empty output": "conv_transpose2d with an output of 0 rows or columns: PyTorch returns "
                    "an empty array in float32 and refuses it in float64; cnn refuses it, as "
                    "conv2d and pooling (and PyTorch there) do",
    "bool": "a bool where an int goes: PyTorch's argument parser checks only the first "
            "element of a tuple for booleans, cnn refuses them everywhere",
}

TOO_LARGE = 2**60  # bytes: numpy refuses arrays this large outright ("array is too big")
INT64_MAX = 2**63 - 1

# --------------------------------------------------------------------------
# Building the arguments of a case
# --------------------------------------------------------------------------


def _array_dtype(name):
    return {"str": np.dtype("<U1"), "object": np.dtype(object)}.get(name, None) or np.dtype(name)


def make_array(spec, rng):
    """The array a spec describes, in its memory layout (a nested list for "list")."""
    shape, dtype = tuple(spec["shape"]), _array_dtype(spec["dtype"])
    fill = spec.get("fill", "normal")
    if fill == "indices":
        a = rng.integers(spec["low"], max(spec["high"], spec["low"] + 1), size=shape)
    elif dtype.kind in "biu":
        a = rng.integers(-3, 4, size=shape)
        a = a > 0 if dtype.kind == "b" else (np.abs(a) if dtype.kind == "u" else a)
    elif dtype.kind == "c":
        a = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    elif dtype.kind == "U":
        a = np.full(shape, "a")
    elif fill == "ties":  # few distinct values: max pooling's "first maximum wins"
        a = rng.integers(-2, 2, size=shape).astype(np.float64)
    else:
        a = rng.standard_normal(shape)
        if fill == "special":  # max pooling's NaN rule; infinities
            u = rng.random(shape)
            a[u < 0.15] = np.nan
            a[(u >= 0.15) & (u < 0.22)] = -np.inf
            a[(u >= 0.22) & (u < 0.25)] = np.inf
    a = a.astype(dtype)
    if spec["layout"] == "list":
        return a.tolist()
    return relayout(a, spec["layout"])


ARRAY_NAMES = {"x", "weight", "bias", "grad_out", "indices"}


def simple_case(op, seed=0, **arguments):
    """A case from keyword arguments: arrays given by shape (float64, C order) or spec."""
    arrays = {name: {"shape": v, "dtype": "float64", "layout": "C"} if isinstance(v, tuple) else v
              for name, v in arguments.items() if name in ARRAY_NAMES}
    kwargs = {name: v for name, v in arguments.items() if name not in ARRAY_NAMES}
    return {"op": op, "arrays": arrays, "kwargs": kwargs, "seed": seed}


def build(case):
    """(args, kwargs) of a case: its arrays in order, then its keyword arguments."""
    rng = np.random.default_rng(case["seed"])
    args = [None if spec is None else make_array(spec, rng) for spec in case["arrays"].values()]
    return args, dict(case["kwargs"])


# --------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------


@dataclass
class Verdict:
    kind: str
    errors: tuple = ()  # the exceptions that may be raised; () for a case that must succeed
    reasons: list = field(default_factory=list)
    refusals: list = field(default_factory=list)  # keys of REFUSALS
    dtype: np.dtype = None  # the dtype of the result, when it must succeed

    @property
    def must_succeed(self):
        return self.kind in ("valid", "extension")

    @property
    def may_succeed(self):
        """A result too large for numpy cannot be returned; a window too large to list
        its taps may be refused (MemoryError, ValueError) or computed."""
        return self.must_succeed or self.kind == "too large"


class _Reasons:
    """What the oracle found wrong (or unusual) with a case, as it goes."""

    def __init__(self):
        self.invalid, self.refused, self.extension, self.too_large = [], [], [], []

    def bad(self, exc, text):
        self.invalid.append((exc, text))

    def refuse(self, key, exc, text):
        self.refused.append((key, exc, text))

    def extend(self, text):
        self.extension.append(text)

    def size(self, shape, what, limit=TOO_LARGE):
        """Mark the case too large when an array of `shape` (8-byte items) cannot exist."""
        n = math.prod(int(d) for d in shape if d)
        if n * 8 >= limit:
            self.too_large.append(f"{what} of shape {tuple(shape)}")
            return False
        return True

    def verdict(self, dtype):
        refusals = [key for key, _, _ in self.refused]
        texts = [t for _, t in self.invalid] + [t for _, _, t in self.refused]
        if self.invalid or self.refused:
            errors = tuple(sorted({e for e, _ in self.invalid} | {e for _, e, _ in self.refused},
                                  key=lambda e: e.__name__))
            # an extension is something PyTorch refuses: then both refuse
            kind = "invalid" if self.invalid or self.extension else "refused"
            texts = list(dict.fromkeys(texts + self.extension))
            return Verdict(kind, errors, texts, refusals)
        if self.too_large:
            return Verdict("too large", (MemoryError, ValueError), self.too_large, dtype=dtype)
        if self.extension:
            return Verdict("extension", (), self.extension, dtype=dtype)
        return Verdict("valid", (), [], dtype=dtype)


def _int(rc, value, name, minimum, position=0):
    if isinstance(value, bool) and position > 0:
        rc.refuse("bool", TypeError, f"{name} has {value!r} at position {position}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        rc.bad(TypeError, f"{name}={value!r} is not an int")
        return None
    if value < minimum:
        rc.bad(ValueError, f"{name}={value} < {minimum}")
        return None
    if value > INT64_MAX:  # either error says it: a value no C integer holds
        rc.bad(ValueError, f"{name}={value} does not fit in int64")
        rc.bad(TypeError, f"{name}={value} does not fit in int64")
        return None
    return value


def _pair(rc, value, name, minimum):
    """(h, w) from an int or a 2-sequence of ints, each >= minimum; None when it is not one."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            rc.refuse("one-element pair", ValueError, f"{name}={value!r}")
            value = value * 2
        if len(value) != 2:
            rc.bad(ValueError, f"{name}={value!r} is not a pair")
            return None
        h, w = _int(rc, value[0], name, minimum), _int(rc, value[1], name, minimum, 1)
        return None if h is None or w is None else (h, w)
    v = _int(rc, value, name, minimum)
    return None if v is None else (v, v)


def _array(rc, value, name, optional=False):
    if value is None:
        if not optional:
            rc.bad(TypeError, f"{name} is None")
        return None
    return np.asarray(value)


def _compute_dtype(rc, a, name):
    """The dtype cnn computes an array in: integers and booleans become float64."""
    if a.dtype.kind in "biu":
        return np.dtype(np.float64)
    if a.dtype in (np.float32, np.float64):
        return a.dtype
    if a.dtype == np.float16 or a.dtype.kind == "c":
        rc.refuse("dtype", TypeError, f"{name} has dtype {a.dtype}")
    else:
        rc.bad(TypeError, f"{name} has dtype {a.dtype}")
    return None


def _common_dtype(rc, **arrays):
    """The one dtype of the float arrays (None when they do not have one).

    PyTorch refuses to mix float32 and float64 in a forward pass, but autograd casts a
    grad_out of the other dtype; cnn refuses both.
    """
    dtypes = {name: _compute_dtype(rc, a, name) for name, a in arrays.items() if a is not None}
    found = set(dtypes.values()) - {None}
    if len(found) > 1:
        rest = {d for name, d in dtypes.items() if name != "grad_out"} - {None}
        if "grad_out" in dtypes and len(rest) == 1:
            rc.refuse("mixed dtypes", TypeError, f"grad_out of another dtype: {dtypes}")
        else:
            rc.bad(TypeError, f"float32 and float64 mixed: {dtypes}")
    return found.pop() if len(found) == 1 else None


def _batched(rc, a, name, unbatched=True):
    """The (N, C, H, W) shape of an array; a 3-D one, which PyTorch takes as one image, counts
    as N = 1 (and is refused); None for any other rank."""
    if a is None:
        return None
    if a.ndim == 4:
        return a.shape
    if a.ndim == 3 and unbatched:
        rc.refuse("unbatched", ValueError, f"{name} is 3-D {a.shape}")
        return (1, *a.shape)
    rc.bad(ValueError, f"{name} has shape {a.shape}, not 4-D")
    return None


def _pad_fits(rc, size, before, after, mode, dim):
    """PyTorch's F.pad limits: reflect < size, circular <= size, replicate on a non-empty axis."""
    if mode == "reflect" and max(before, after) >= size:
        rc.bad(ValueError, f"reflect padding ({before}, {after}) >= {dim} {size}")
    elif mode == "circular" and max(before, after) > size:
        rc.bad(ValueError, f"circular padding ({before}, {after}) > {dim} {size}")
    elif mode == "replicate" and size == 0:
        if before or after:
            rc.bad(ValueError, f"replicate padding ({before}, {after}) of an empty {dim}")
        else:
            rc.extend(f"replicate of an empty {dim} by nothing")


def conv2d_geometry(rc, x_shape, w_shape, stride, padding, dilation, groups, padding_mode,
                    backward=False):
    """conv2d's (N, C_out, H_out, W_out) as torch.nn.Conv2d defines it, or None."""
    groups = _int(rc, groups, "groups", 1)
    stride = _pair(rc, stride, "stride", 1)
    dilation = _pair(rc, dilation, "dilation", 1)
    mode_ok = isinstance(padding_mode, str) and padding_mode in PAD_MODES
    if not mode_ok:
        rc.bad(ValueError, f"padding_mode={padding_mode!r}")
    if isinstance(padding, str) and padding not in ("same", "valid"):
        rc.bad(ValueError, f"padding={padding!r}")
        pads = None
    elif padding == "same" and stride is not None and stride != (1, 1):
        rc.bad(ValueError, f"padding='same' with stride {stride}")
        pads = None
    elif not isinstance(padding, str):
        pads = _pair(rc, padding, "padding", 0)
        pads = None if pads is None else tuple((p, p) for p in pads)
    else:
        pads = "same" if padding == "same" else ((0, 0), (0, 0))
    if x_shape is None or w_shape is None:
        return None
    N, C, H, W = x_shape
    C_out, C_g, kH, kW = w_shape
    if groups is not None:
        if C % groups or C_out % groups:
            rc.bad(ValueError, f"groups={groups} does not divide C_in={C} and C_out={C_out}")
        elif C_g * groups != C:
            rc.bad(ValueError, f"weight has {C_g} channels per group, x {C} in {groups} groups")
    if kH < 1 or kW < 1:
        rc.bad(ValueError, f"empty kernel {(kH, kW)}")
        return None
    if C == 0 and padding_mode in ("reflect", "replicate"):
        rc.bad(ValueError, f"{padding_mode} padding of no channels")
    elif C == 0 and backward:  # PyTorch's forward gives no channels to take a gradient of
        rc.bad(ValueError, "x has no channels")
    elif C == 0:
        rc.refuse("no input channels", ValueError, "x has no channels")
    if C_out == 0:
        rc.extend("no output channels")
    if pads == "same" and dilation is not None:  # as PyTorch: the odd pixel goes last
        pads = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                     for k, d in zip((kH, kW), dilation))
    if None in (stride, dilation, pads) or pads == "same" or groups is None:
        return None
    out = [N, C_out]
    for size, k, s, d, (before, after), dim in zip((H, W), (kH, kW), stride, dilation, pads,
                                                   ("height", "width")):
        if mode_ok and padding_mode != "zeros":
            _pad_fits(rc, size, before, after, padding_mode, dim)
        span = d * (k - 1) + 1
        if size + before + after < span:
            rc.bad(ValueError, f"kernel span {span} > padded {dim} {size + before + after}")
            return None
        if size == 0:
            rc.extend(f"an empty {dim}, zero padding around it")
        out.append((size + before + after - span) // s + 1)
    if mode_ok and padding_mode != "zeros":
        (pt, pb), (pl, pr) = pads
        rc.size((N, C, H + pt + pb, W + pl + pr), "the padded input")
    rc.size(out, "the output")
    return tuple(out)


def conv_transpose2d_geometry(rc, x_shape, w_shape, stride, padding, output_padding, groups,
                              dilation):
    """conv_transpose2d's (N, C_out, H_out, W_out), or None."""
    groups = _int(rc, groups, "groups", 1)
    stride = _pair(rc, stride, "stride", 1)
    padding = _pair(rc, padding, "padding", 0)
    output_padding = _pair(rc, output_padding, "output_padding", 0)
    dilation = _pair(rc, dilation, "dilation", 1)
    if x_shape is None or w_shape is None:
        return None
    N, C_in, H, W = x_shape
    C_w, C_out_g, kH, kW = w_shape
    if C_w != C_in:
        rc.bad(ValueError, f"weight expects {C_w} input channels, x has {C_in}")
    if C_in == 0 or C_out_g == 0:
        rc.bad(ValueError, f"no channels: x {x_shape}, weight {w_shape}")
    if groups is not None and C_in % groups:
        rc.bad(ValueError, f"groups={groups} does not divide C_in={C_in}")
    if kH < 1 or kW < 1:
        rc.bad(ValueError, f"empty kernel {(kH, kW)}")
        return None
    if None in (groups, stride, padding, output_padding, dilation):
        return None
    out = [N, C_out_g * groups]
    for size, k, s, p, o, d, dim in zip((H, W), (kH, kW), stride, padding, output_padding,
                                        dilation, ("height", "width")):
        if o >= s and o >= d:
            rc.bad(ValueError, f"output_padding {o} >= stride {s} and dilation {d}")
            return None
        n = (size - 1) * s - 2 * p + d * (k - 1) + o + 1
        if n < 0:
            rc.bad(ValueError, f"output {dim} {n} < 0")
            return None
        if n == 0:
            rc.refuse("empty output", ValueError, f"output {dim} 0")
        if size == 0:
            rc.extend(f"an empty input {dim}")
        out.append(n)
    rc.size(out, "the output")
    return tuple(out)


def pool2d_geometry(rc, shape, kernel_size, stride, padding, dilation, ceil_mode, max_pool):
    """Pooling's (N, C, H_out, W_out) with ATen's output size and checks, or None."""
    kernel = _pair(rc, kernel_size, "kernel_size", 1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel
    else:
        stride = _pair(rc, stride, "stride", 1)
    padding = _pair(rc, padding, "padding", 0)
    dilation = _pair(rc, dilation, "dilation", 1)
    if None in (kernel, stride, padding, dilation):
        return None
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        rc.bad(ValueError, f"padding {padding} > half the kernel {kernel}")
        return None
    if shape is None:
        return None
    N, C, H, W = shape
    if H == 0 or W == 0:
        rc.bad(ValueError, f"an empty image {shape}")
        return None
    if C == 0:
        rc.extend("no channels")
    out = R.pool2d_output_shape((H, W), kernel, stride, padding, dilation, ceil_mode)
    if min(out) < 1:
        rc.bad(ValueError, f"output size {out} < 1")
        return None
    if max_pool and pool_has_empty_window((H, W), kernel, stride, padding, dilation, ceil_mode):
        rc.refuse("empty window", ValueError, "a window wholly in the padding")
    rc.size(kernel, "the window's taps", limit=2**34)  # 2**31 taps
    rc.size((N, C, *out), "the output")
    return (N, C, *out)


def _four_ints(rc, value, name, layout, padding=False):
    """Four ints >= 0: an input_shape (N, C, H, W), or pad2d's padding, where PyTorch
    also takes negative values (cropping) and booleans after the first."""
    if not isinstance(value, (tuple, list)) or len(value) != 4:
        rc.bad(ValueError, f"{name}={value!r} is not {layout}")
        if not isinstance(value, (tuple, list)):
            rc.bad(TypeError, f"{name}={value!r} is not a sequence")
        return None
    ints = []
    for v in value:
        if padding and type(v) is int and -INT64_MAX <= v < 0:
            rc.refuse("negative padding", ValueError, f"padding {value!r} crops")
            v = 0
        ints.append(_int(rc, v, name, 0, len(ints) if padding else 0))
    return None if None in ints else tuple(ints)


def _backward_grad_out(rc, grad_out, out_shape):
    if grad_out is not None and out_shape is not None and grad_out.shape != tuple(out_shape):
        rc.bad(ValueError, f"grad_out has shape {grad_out.shape}, not {tuple(out_shape)}")


def _judge_conv(rc, args, kw, transposed, backward):
    names = ("grad_out", "x", "weight") if backward else ("x", "weight", "bias")
    a = {name: _array(rc, value, name, optional=name == "bias")
         for name, value in zip(names, args)}
    dtype = _common_dtype(rc, **a)
    x_shape = _batched(rc, a["x"], "x")
    w_shape = _batched(rc, a["weight"], "weight", unbatched=False)
    if transposed:
        out = conv_transpose2d_geometry(
            rc, x_shape, w_shape, kw.get("stride", 1), kw.get("padding", 0),
            kw.get("output_padding", 0), kw.get("groups", 1), kw.get("dilation", 1))
        C_out = None if out is None else out[1]
    else:
        out = conv2d_geometry(rc, x_shape, w_shape, kw.get("stride", 1), kw.get("padding", 0),
                              kw.get("dilation", 1), kw.get("groups", 1),
                              kw.get("padding_mode", "zeros"), backward)
        C_out = None if w_shape is None else w_shape[0]
    bias, grad_out = a.get("bias"), a.get("grad_out")
    if bias is not None and C_out is not None and bias.shape != (C_out,):
        rc.bad(ValueError, f"bias has shape {bias.shape}, not ({C_out},)")
    if out is not None and a["x"].ndim == 3:  # PyTorch's output of one image has no N
        out = out[1:]
    _backward_grad_out(rc, grad_out, out)
    return dtype


def _pool_kwargs(kw, max_pool):
    return (kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
            kw.get("dilation", 1) if max_pool else 1, kw.get("ceil_mode", False), max_pool)


def _judge_pool(rc, args, kw, max_pool):
    x = _array(rc, args[0], "x")
    dtype = _common_dtype(rc, x=x)
    if not max_pool:
        _divisor(rc, kw.get("divisor_override"))
    pool2d_geometry(rc, _batched(rc, x, "x"), *_pool_kwargs(kw, max_pool))
    return dtype


def _divisor(rc, divisor):
    if divisor is None:
        return
    if isinstance(divisor, int) and not isinstance(divisor, bool) and -INT64_MAX <= divisor < 0:
        rc.refuse("negative divisor", ValueError, f"divisor_override={divisor}")
    else:
        _int(rc, divisor, "divisor_override", 1)


def _judge_avg_pool2d_backward(rc, args, kw):
    grad_out = _array(rc, args[0], "grad_out")
    dtype = _common_dtype(rc, grad_out=grad_out)
    _divisor(rc, kw.get("divisor_override"))
    input_shape = kw["input_shape"]
    unbatched = isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
    if unbatched:  # PyTorch's avg_pool2d of one (C, H, W) image
        rc.refuse("unbatched", ValueError, f"input_shape {input_shape!r} is 3-D")
        input_shape = (1, *input_shape)
    shape = _four_ints(rc, input_shape, "input_shape", "(N, C, H, W)")
    out = pool2d_geometry(rc, shape, *_pool_kwargs(kw, False))
    if grad_out is not None and grad_out.ndim != 4 - unbatched:
        rc.bad(ValueError, f"grad_out has shape {grad_out.shape}")
    _backward_grad_out(rc, grad_out, out[unbatched:] if out else None)
    return dtype


def _judge_max_pool2d_backward(rc, args, kw):
    grad_out, indices = _array(rc, args[0], "grad_out"), _array(rc, args[1], "indices")
    dtype = _common_dtype(rc, grad_out=grad_out)
    shape = _four_ints(rc, kw["input_shape"], "input_shape", "(N, C, H, W)")
    if grad_out is not None and grad_out.ndim != 4:
        rc.bad(ValueError, f"grad_out has shape {grad_out.shape}")
        grad_out = None
    if grad_out is not None and shape is not None and grad_out.shape[:2] != shape[:2]:
        rc.bad(ValueError, f"grad_out {grad_out.shape} is not of input_shape {shape}")
    if indices is not None and indices.dtype.kind not in "iu":
        rc.bad(TypeError, f"indices have dtype {indices.dtype}")
        indices = None
    if grad_out is None or indices is None:
        return dtype
    if indices.shape != grad_out.shape:
        rc.bad(ValueError, f"indices {indices.shape} and grad_out {grad_out.shape} differ")
    elif shape is not None and grad_out.size and (
            indices.min() < 0 or indices.max() >= shape[2] * shape[3]):
        rc.bad(ValueError, f"indices outside [0, H*W) of input_shape {shape}")
    return dtype


def _judge_pad2d(rc, args, kw, backward):
    name = "grad_out" if backward else "x"
    a = _array(rc, args[0], name)
    dtype = _common_dtype(rc, **{name: a})
    mode = kw.get("mode", "zeros")
    mode_ok = isinstance(mode, str) and mode in PAD_MODES
    if not mode_ok:
        rc.bad(ValueError, f"mode={mode!r}")
    pads = _four_ints(rc, kw["padding"], "padding", "(left, right, top, bottom)", padding=True)
    if a is None:
        return dtype
    if a.ndim == 3 or (a.ndim >= 2 and mode == "zeros" and a.ndim != 4):
        rc.refuse("unbatched" if a.ndim == 3 else "other rank", ValueError,
                  f"{name} has shape {a.shape}")
    elif a.ndim != 4:
        rc.bad(ValueError, f"{name} has shape {a.shape}, not 4-D")
        return dtype
    if pads is None or not mode_ok:
        return dtype
    left, right, top, bottom = pads
    *batch, H, W = a.shape
    if backward:
        H, W = H - top - bottom, W - left - right
        if H < 0 or W < 0:
            rc.bad(ValueError, f"padding {pads} larger than grad_out {a.shape}")
            return dtype
    for size, before, after, dim in ((H, top, bottom, "height"), (W, left, right, "width")):
        _pad_fits(rc, size, before, after, mode, dim)
    if mode in ("reflect", "replicate") and math.prod(batch[-1:]) == 0:
        rc.extend(f"{mode} padding of no channels")
    if not backward:
        rc.size((*batch, H + top + bottom, W + left + right), "the output")
    return dtype


def judge(op, args, kwargs):
    """The Verdict of the oracle on op(*args, **kwargs)."""
    rc = _Reasons()
    if op.startswith("conv"):
        dtype = _judge_conv(rc, args, kwargs, op.startswith("conv_transpose2d"),
                            op.endswith("backward"))
    elif op in ("max_pool2d", "avg_pool2d"):
        dtype = _judge_pool(rc, args, kwargs, op == "max_pool2d")
    elif op == "max_pool2d_backward":
        dtype = _judge_max_pool2d_backward(rc, args, kwargs)
    elif op == "avg_pool2d_backward":
        dtype = _judge_avg_pool2d_backward(rc, args, kwargs)
    elif op in ("pad2d", "pad2d_backward"):
        dtype = _judge_pad2d(rc, args, kwargs, op == "pad2d_backward")
    else:
        raise ValueError(f"unknown op {op!r}")
    return rc.verdict(dtype)


# --------------------------------------------------------------------------
# The oracle's claims about PyTorch, checked against PyTorch
# --------------------------------------------------------------------------

TORCH_PAD_MODE = {"zeros": "constant"}


def _torch_conv2d(torch, x, weight, bias, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros"):
    """torch.nn.Conv2d's forward with these weights: the module owns padding_mode."""
    if weight.ndim != 4:
        return torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)
    C_out, C_g, kH, kW = weight.shape
    conv = torch.nn.Conv2d(C_g * groups, C_out, (kH, kW), stride, padding, dilation, groups,
                           bias is not None, padding_mode, dtype=weight.dtype)
    conv.weight = torch.nn.Parameter(weight, requires_grad=weight.requires_grad)
    if bias is not None:
        conv.bias = torch.nn.Parameter(bias)
    return conv(x)


def _torch_forward(torch, op, args, kw):
    TF = torch.nn.functional
    if op == "conv2d":
        return _torch_conv2d(torch, *args, **kw)
    if op == "conv_transpose2d":
        return TF.conv_transpose2d(*args, **kw)
    if op == "max_pool2d":
        return TF.max_pool2d(*args, **kw)
    if op == "avg_pool2d":
        return TF.avg_pool2d(*args, **kw)
    if op == "pad2d":
        return TF.pad(args[0], kw["padding"], TORCH_PAD_MODE.get(kw["mode"], kw["mode"]))
    raise ValueError(op)


def _ints(value):
    """Every int in a (nested) argument."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [i for v in value for i in _ints(v)]
    return [value] if isinstance(value, int) else []


def _x_has_no_channels(x):
    return x is not None and x.ndim >= 3 and x.shape[-3] == 0


def torch_accepts(case):
    """Whether PyTorch computes a case: forward ops directly, a backward through autograd.

    Integer arrays go in as float64 (cnn's documented conversion). None for what has no
    PyTorch counterpart to ask: max_pool2d_backward, arrays PyTorch cannot hold
    (object, str) or compute (float16, complex), results too large to allocate; and for
    the quirks of PyTorch that the oracle does not model (see the comments below).
    """
    import torch

    op = case["op"]
    args, kw = build(case)
    verdict = judge(op, args, kw)
    arrays = [None if a is None else np.asarray(a) for a in args]
    present = [a for a in arrays if a is not None]
    if (op == "max_pool2d_backward" or verdict.kind == "too large" or "dtype" in verdict.refusals
            or any(a.dtype.kind not in "biuf" for a in present)
            # PyTorch checks dtypes only when there is something to compute
            or (len({a.dtype for a in present}) > 1 and any(a.size == 0 for a in present))
            # PyTorch checks a transposed convolution only when there is something to
            # compute, and a convolution not at all when it has no input channels
            or (op.startswith("conv_transpose2d") and any(a.size == 0 for a in present))
            or (op.startswith("conv2d") and _x_has_no_channels(arrays[op == "conv2d_backward"]))
            # PyTorch's conv_transpose2d does not check the bias's dtype
            or (op == "conv_transpose2d" and arrays[2] is not None
                and len({a.dtype for a in present}) > 1)
            # F.pad crops by negative padding (and Conv2d pads with F.pad but in zeros
            # mode, and repeats a one-element padding differently): not modelled here
            or "negative padding" in verdict.refusals
            or (op.startswith("conv2d") and kw.get("padding_mode", "zeros") != "zeros"
                and (any(v < 0 for v in _ints(kw.get("padding")))
                     or "one-element pair" in verdict.refusals))
            # PyTorch's answer depends on its backend (see REFUSALS)
            or "empty output" in verdict.refusals
            # PyTorch's own size arithmetic overflows
            or any(abs(v) >= 2**31 for v in _ints(case["kwargs"]))):
        return None
    tensors = [None if a is None else torch.from_numpy(
        np.array(a, dtype=np.float64 if a.dtype.kind in "biu" else a.dtype)) for a in arrays]
    kw = {k: v for k, v in kw.items() if k != "needs_input_grad"}
    try:
        if not op.endswith("_backward"):
            _torch_forward(torch, op, tensors, kw)
            return True
        forward = op[: -len("_backward")]
        grad_out, rest = tensors[0], tensors[1:]
        if forward in ("avg_pool2d", "pad2d"):
            if forward == "avg_pool2d":
                shape = kw.pop("input_shape")
            else:
                left, right, top, bottom = kw["padding"]
                *batch, H, W = grad_out.shape
                shape = (*batch, H - top - bottom, W - left - right)
            rest = [torch.zeros(shape, dtype=grad_out.dtype)]
        for t in rest:
            t.requires_grad_(True)
        out = _torch_forward(torch, forward, rest + ([None] if "conv" in op else []), kw)
        out.backward(grad_out)
        return True
    except Exception:  # noqa: BLE001 - any error is PyTorch refusing
        return False


# --------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------


class Failure(AssertionError):
    """cnn did not do what the oracle says a case must do.

    ``known`` names the entry of KNOWN_BUGS that explains it, if one does.
    """

    def __init__(self, case, message, known=None):
        super().__init__(f"{message}\ncase: {case!r}")
        self.case, self.message, self.known = case, message, known


# Bugs in cnn that the fuzzer found and that are not fixed yet. Each entry: what goes
# wrong, a minimal case (tests/test_fuzz.py runs it as a strict xfail, so that the fix
# is noticed and the entry removed; bounds_checked_only: in a CNN_CYTHON_DEBUG=1 build
# only), and a narrow test of a failure, match(case, args,
# what, exc): what went wrong is "refused", "wrong error", "accepted", "wrong result" or
# "aliases" (an output shares memory with an input), exc the exception raised or None.
# A failure that matches is counted as that bug, not as a new failure.
KNOWN_BUGS = {}  # none known: the five the fuzzer found are fixed


def _known_bug(case, args, what, exc):
    return next((name for name, bug in KNOWN_BUGS.items() if bug["match"](case, args, what, exc)),
                None)


def _reference(op, args, kwargs):
    """The loop reference on the same arguments (C-ordered arrays, stride () as None)."""
    args = [None if a is None else np.asarray(a) for a in args]
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("stride"), (tuple, list)) and len(kwargs["stride"]) == 0:
        kwargs["stride"] = None
    return getattr(R, op)(*args, **kwargs)


def _outputs(result):
    return list(result) if isinstance(result, tuple) else [result]


def _compare(op, got, expected, dtype):
    got, expected = _outputs(got), _outputs(expected)
    assert len(got) == len(expected), f"{len(got)} outputs, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        if e is None:
            assert g is None, f"output {i} should be None (needs_input_grad=False)"
        elif op == "max_pool2d" and i == 1:
            assert isinstance(g, np.ndarray) and g.dtype == np.int64, f"indices {type(g)}"
            np.testing.assert_array_equal(g, e, err_msg="max_pool2d indices")
        else:
            assert_close(g, e, dtype)


def _copy(a):
    return copy.deepcopy(a) if isinstance(a, list) else None if a is None else np.array(a)


def _problem(verdict, result, exc):
    """(what went wrong, message) of an outcome that the verdict does not allow, or None."""
    reasons = "; ".join(verdict.reasons)
    if exc is not None:
        if verdict.must_succeed:
            return "refused", (f"{verdict.kind} case refused with {type(exc).__name__}: {exc}"
                               + (f" ({reasons})" if reasons else ""))
        if not isinstance(exc, verdict.errors):
            names = "/".join(e.__name__ for e in verdict.errors)
            return "wrong error", (f"raised {type(exc).__name__}: {exc}; expected {names} "
                                   f"({verdict.kind}: {reasons})")
        return None
    if not verdict.may_succeed:
        names = "/".join(e.__name__ for e in verdict.errors)
        shapes = [getattr(r, "shape", r) for r in _outputs(result)]
        return "accepted", f"returned {shapes}; expected {names} ({verdict.kind}: {reasons})"
    return None


def check(case):
    """Run one case; return its Verdict, or raise Failure."""
    op = case["op"]
    args, kwargs = build(case)
    verdict = judge(op, args, kwargs)
    originals = [_copy(a) for a in args]
    result = exc = None
    # "split": every kernel split across threads, however small its work, so that these
    # small shapes take the multi-threaded paths too (as test_functional's threading fixture)
    min_work = F._MIN_WORK_PER_THREAD
    F._MIN_WORK_PER_THREAD = 1 if case.get("split") else min_work
    try:
        result = getattr(F, op)(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - every exception is judged
        exc = e
    finally:
        F._MIN_WORK_PER_THREAD = min_work
    problem = _problem(verdict, result, exc)
    if problem is None and exc is None:
        try:
            _compare(op, result, _reference(op, originals, kwargs), verdict.dtype)
            assert_untouched(args, originals)
        except AssertionError as e:
            problem = "wrong result", f"{verdict.kind} case: {e}"
    if problem is None and exc is None:
        if any(np.shares_memory(out, a) for out in _outputs(result) for a in args
               if isinstance(out, np.ndarray) and isinstance(a, np.ndarray)):
            problem = "aliases", f"{verdict.kind} case: an output shares memory with an input"
    if problem is not None:
        what, message = problem
        raise Failure(case, message, _known_bug(case, args, what, exc))
    return verdict


def replay(text):
    """Check a case from its repr; a one-line outcome."""
    case = ast.literal_eval(text)
    try:
        verdict = check(case)
    except Failure as e:
        return f"FAIL{f' (known bug {e.known})' if e.known else ''}: {e.message}"
    return f"ok: {verdict.kind}" + (f" ({'; '.join(verdict.reasons)})" if verdict.reasons else "")


# --------------------------------------------------------------------------
# Drawing cases
# --------------------------------------------------------------------------

# Parameters that are wrong in value or type; [2, 1] is a legal list pair.
WILD = (0, -1, 2**62, 2**63, 2.0, True, None, "2", (), (1,), (1, 2, 3), [2, 1])
RARE = 16  # one draw in RARE takes the unusual branch


def rare(draw, one_in=RARE):
    """True once in `one_in` draws (and shrinks to False)."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


def hyper(draw, common, wild=WILD):
    return draw(st.sampled_from(wild)) if rare(draw) else draw(common)


def dim(draw, low, high):
    """A size in [low, high], now and then 0."""
    return 0 if rare(draw) else draw(st.integers(low, high))


FLOAT_DTYPES = ("float32", "float64")
OTHER_DTYPES = ("int64", "int32", "uint8", "bool", "float16", "complex128", "object", "str")


def draw_dtype(draw):
    return draw(st.sampled_from(OTHER_DTYPES if rare(draw) else FLOAT_DTYPES))


def draw_spec(draw, shape, dtype, fill="normal", rerank=True):
    """An array spec; now and then of another rank or dtype than asked for."""
    shape = tuple(shape)
    if rerank and rare(draw, 2 * RARE):
        shape = draw(st.sampled_from([shape[1:], shape[2:], (1, *shape), shape[:-1]]))
    if rare(draw, 2 * RARE):
        dtype = draw_dtype(draw)
    layout = "list" if rare(draw) else draw(st.sampled_from(LAYOUTS))
    return {"shape": shape, "dtype": dtype, "layout": layout, "fill": fill}


def _small(shape, limit=4096):
    return shape is not None and max(shape) <= limit and math.prod(shape) <= limit


def draw_grad_out(draw, out_shape, dtype):
    """grad_out of the output's shape; now and then of another."""
    if not _small(out_shape) or rare(draw):
        out_shape = tuple(draw(st.lists(st.integers(0, 4), min_size=4, max_size=4)))
    return draw_spec(draw, out_shape, dtype)


def _seed(draw):
    return draw(st.integers(0, 2**32 - 1))


def _conv_channels(draw):
    groups = hyper(draw, st.integers(1, 3))
    g = groups if type(groups) is int and 1 <= groups <= 3 else 1
    C_in, C_out = g * dim(draw, 1, 3), g * dim(draw, 1, 3)
    return groups, g, C_in, C_out


def _kernel(draw):
    if rare(draw):  # larger than most inputs, or empty
        return tuple(draw(st.sampled_from([0, 5, 6, 9])) for _ in range(2))
    return (draw(st.integers(1, 4)), draw(st.integers(1, 4)))


def _small_pair(value):
    """A well-formed small int or pair as (h, w); None for anything else."""
    pair = value if isinstance(value, (tuple, list)) else (value, value)
    ok = len(pair) == 2 and all(type(v) is int and 0 <= v <= 9 for v in pair)
    return tuple(pair) if ok else None


def _image_size(draw, kernel, kwargs):
    """(H, W) that the kernel fits, padded as kwargs say, most of the time; any now and then."""
    dilation, padding = _small_pair(kwargs["dilation"]), kwargs["padding"]
    if padding not in ("same", "valid"):
        padding = _small_pair(padding)
    if rare(draw) or dilation is None or padding is None:
        return dim(draw, 1, 8), dim(draw, 1, 8)
    mode = kwargs["padding_mode"]
    left, right, top, bottom = conv_pads(padding, kernel, dilation)
    sizes = []
    for k, d, before, after in ((kernel[0], dilation[0], top, bottom),
                                (kernel[1], dilation[1], left, right)):
        low = smallest_input(d * (max(k, 1) - 1) + 1, before, after, mode)
        sizes.append(draw(st.integers(low, low + 4)))
    return sizes


def _conv_case(draw, op, x_shape, w_shape, C_out, kwargs, geometry):
    """The arrays of a convolution case: (grad_out, x, weight) or (x, weight, bias)."""
    dtype = draw_dtype(draw)
    x, weight = draw_spec(draw, x_shape, dtype), draw_spec(draw, w_shape, dtype)
    if op.endswith("backward"):
        out = geometry(_Reasons(), x_shape, weight["shape"], **kwargs) \
            if len(weight["shape"]) == 4 else None
        kwargs["needs_input_grad"] = draw(st.booleans())
        arrays = {"grad_out": draw_grad_out(draw, out, dtype), "x": x, "weight": weight}
    else:
        bias = draw(st.sampled_from([None, (C_out,), (C_out + 1,), (C_out, 1)][:4 if rare(draw)
                                                                              else 2]))
        arrays = {"x": x, "weight": weight,
                  "bias": None if bias is None else draw_spec(draw, bias, dtype, rerank=False)}
    return {"op": op, "arrays": arrays, "kwargs": kwargs, "seed": _seed(draw)}


@st.composite
def conv2d_cases(draw, op="conv2d"):
    groups, g, C_in, C_out = _conv_channels(draw)
    kernel = _kernel(draw)
    C_g = C_in // g + (draw(st.integers(-1, 1)) if rare(draw) else 0)
    padding = hyper(draw, st.one_of(int_or_pair(0, 3), st.sampled_from(["same", "valid"])),
                    WILD + ("full",))
    stride = 1 if padding == "same" and not rare(draw) else hyper(draw, int_or_pair(1, 3))
    kwargs = dict(stride=stride, padding=padding, dilation=hyper(draw, int_or_pair(1, 3)),
                  groups=groups,
                  padding_mode="mirror" if rare(draw) else draw(st.sampled_from(PAD_MODES)))
    x_shape = (dim(draw, 1, 3), C_in, *_image_size(draw, kernel, kwargs))
    return _conv_case(draw, op, x_shape, (C_out, max(C_g, 0), *kernel), C_out, kwargs,
                      conv2d_geometry)


@st.composite
def conv_transpose2d_cases(draw, op="conv_transpose2d"):
    groups, g, C_in, C_out = _conv_channels(draw)
    kernel = _kernel(draw)
    stride, dilation = hyper(draw, int_or_pair(1, 3)), hyper(draw, int_or_pair(1, 3))
    # output_padding must be below stride or dilation: draw below the larger, now and then 3
    limit = max(max(_small_pair(v) or (1, 1)) for v in (stride, dilation))
    limit = 3 if rare(draw) else max(limit - 1, 0)
    kwargs = dict(stride=stride, padding=hyper(draw, int_or_pair(0, 3)),
                  output_padding=hyper(draw, int_or_pair(0, limit)),
                  groups=groups, dilation=dilation)
    x_shape = (dim(draw, 1, 3), C_in, dim(draw, 1, 6), dim(draw, 1, 6))
    C_w = C_in + (draw(st.integers(-1, 1)) if rare(draw) else 0)
    return _conv_case(draw, op, x_shape, (max(C_w, 0), C_out // g, *kernel), C_out, kwargs,
                      conv_transpose2d_geometry)


def _pool_kwargs_drawn(draw, max_pool):
    kernel = hyper(draw, int_or_pair(1, 4))
    # pooling padding is at most half the kernel: draw that, now and then more, or wild
    padding = (st.tuples(*(st.integers(0, k // 2 + rare(draw)) for k in _small_pair(kernel)))
               if _small_pair(kernel) else int_or_pair(0, 2))
    padding = hyper(draw, padding)
    if type(padding) is tuple and len(padding) == 2 and padding[0] == padding[1]:
        padding = padding[0] if draw(st.booleans()) else padding
    kw = dict(kernel_size=kernel,
              stride=hyper(draw, st.one_of(st.none(), int_or_pair(1, 3))),
              padding=padding, ceil_mode=draw(st.booleans()))
    if max_pool:
        kw["dilation"] = hyper(draw, int_or_pair(1, 3))
    else:
        kw["count_include_pad"] = draw(st.booleans())
        kw["divisor_override"] = (hyper(draw, st.integers(1, 5), (0, -2, 2.0, True))
                                  if draw(st.booleans()) else None)
    return kw


@st.composite
def pool_cases(draw, op):
    max_pool = op.startswith("max")
    kw = _pool_kwargs_drawn(draw, max_pool)
    shape = (dim(draw, 1, 2), dim(draw, 1, 3), dim(draw, 1, 8), dim(draw, 1, 8))
    dtype = draw_dtype(draw)
    if op.endswith("backward"):
        out = pool2d_geometry(_Reasons(), shape, *_pool_kwargs(kw, max_pool))
        kw["input_shape"] = shape if not rare(draw) else draw(st.sampled_from(
            [shape[1:], [*shape], (shape[0], shape[1], -1, shape[3]), (*shape[:3], 2.0)]))
        return {"op": op, "arrays": {"grad_out": draw_grad_out(draw, out, dtype)},
                "kwargs": kw, "seed": _seed(draw)}
    if max_pool:
        kw["return_indices"] = draw(st.booleans())
    # ties decide max pooling's "first maximum wins"; NaN and infinities both poolings' rules
    fill = draw(st.sampled_from(["normal", "special", "ties"][:3 if max_pool else 2]))
    return {"op": op, "arrays": {"x": draw_spec(draw, shape, dtype, fill)}, "kwargs": kw,
            "seed": _seed(draw)}


@st.composite
def max_pool2d_backward_cases(draw):
    """Any indices in [0, H*W) are a valid max_pool2d_backward; now and then one outside."""
    shape = (dim(draw, 1, 2), dim(draw, 1, 3), dim(draw, 1, 6), dim(draw, 1, 6))
    out = (shape[0], shape[1], dim(draw, 1, 4), dim(draw, 1, 4))
    dtype = draw_dtype(draw)
    grad_out = draw_spec(draw, out, dtype)
    low, high = 0, shape[2] * shape[3]
    if rare(draw):
        low, high = draw(st.sampled_from([(-1, high), (0, high + 1), (high, high + 3)]))
    index_dtype = draw(st.sampled_from(["float64", "bool", "uint8", "int32"])) if rare(draw) \
        else "int64"
    indices = dict(draw_spec(draw, grad_out["shape"] if not rare(draw) else out, index_dtype),
                   dtype=index_dtype, fill="indices", low=low, high=high)
    input_shape = shape if not rare(draw) else draw(st.sampled_from(
        [shape[1:], (shape[0], shape[1] + 1, *shape[2:]), (*shape[:3], True), 7]))
    return {"op": "max_pool2d_backward", "arrays": {"grad_out": grad_out, "indices": indices},
            "kwargs": {"input_shape": input_shape}, "seed": _seed(draw)}


@st.composite
def pad2d_cases(draw, backward=False):
    mode = "mirror" if rare(draw) else draw(st.sampled_from(PAD_MODES))
    padding = tuple(hyper(draw, st.integers(0, 4), (-1, 2**62, 2.0, True, None))
                    for _ in range(4))
    if rare(draw):
        padding = draw(st.sampled_from([padding[:3], list(padding), 1, padding + (0,)]))
    shape = (dim(draw, 1, 2), dim(draw, 1, 3), dim(draw, 1, 7), dim(draw, 1, 7))
    dtype = draw_dtype(draw)
    if backward:
        if (isinstance(padding, (tuple, list)) and len(padding) == 4
                and all(type(p) is int and 0 <= p <= 4 for p in padding) and not rare(draw)):
            # grad_out as large as pad2d's output
            left, right, top, bottom = padding
            shape = (*shape[:2], shape[2] + top + bottom, shape[3] + left + right)
        return {"op": "pad2d_backward",
                "arrays": {"grad_out": draw_spec(draw, shape, dtype)},
                "kwargs": {"padding": padding, "mode": mode}, "seed": _seed(draw)}
    fill = draw(st.sampled_from(["normal", "special"]))
    return {"op": "pad2d", "arrays": {"x": draw_spec(draw, shape, dtype, fill)},
            "kwargs": {"padding": padding, "mode": mode}, "seed": _seed(draw)}


GENERATORS = {
    "conv2d": conv2d_cases,
    "conv2d_backward": lambda: conv2d_cases("conv2d_backward"),
    "conv_transpose2d": conv_transpose2d_cases,
    "conv_transpose2d_backward": lambda: conv_transpose2d_cases("conv_transpose2d_backward"),
    "max_pool2d": lambda: pool_cases("max_pool2d"),
    "max_pool2d_backward": max_pool2d_backward_cases,
    "avg_pool2d": lambda: pool_cases("avg_pool2d"),
    "avg_pool2d_backward": lambda: pool_cases("avg_pool2d_backward"),
    "pad2d": lambda: pad2d_cases(),
    "pad2d_backward": lambda: pad2d_cases(backward=True),
}


def cases(ops=OPS):
    """Cases of the given ops, drawn by hypothesis; half of them with "split": True."""
    return st.tuples(st.sampled_from(ops).flatmap(lambda op: GENERATORS[op]()),
                     st.booleans()).map(lambda c: dict(c[0], split=c[1]))


# --------------------------------------------------------------------------
# The child: run cases, one line of output each
# --------------------------------------------------------------------------
# Protocol, one line each, flushed:
#   case <repr>            before a case runs (the parent names it if the child dies)
#   done <op> <kind>       a case drawn and checked
#   shrink <op> <kind>     a case run while hypothesis shrinks a failure
#   known <json>           {"bug": name in KNOWN_BUGS, "case": repr}: a known bug met again
#   failure <json>         {"case": repr, "message": ...}: the (shrunk) failing case
#   error <json>           {"message": ...}: the fuzzer itself went wrong


def _emit(*words):
    print(*words, flush=True)


def _run_batch(max_examples, derandomize, seed, ops=OPS):
    shrinking = []

    @settings(max_examples=max_examples, derandomize=derandomize, database=None, deadline=None,
              verbosity=Verbosity.quiet, report_multiple_bugs=False, print_blob=False,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    @given(case=cases(ops))
    def run(case):
        _emit("case", repr(case))
        try:
            kind = check(case).kind
        except Failure as e:
            if not e.known:
                shrinking.append(True)
                raise
            kind = "known bug"
            _emit("known", json.dumps({"bug": e.known, "case": repr(case)}))
        _emit("shrink" if shrinking else "done", case["op"], kind)

    if seed is not None and not derandomize:
        run = hypothesis_seed(seed)(run)
    try:
        run()
    except Failure as e:
        _emit("failure", json.dumps({"case": repr(e.case), "message": e.message}))
    except Exception:  # noqa: BLE001 - reported, not hidden
        _emit("error", json.dumps({"message": traceback.format_exc()}))


def _child_main(argv):
    parser = argparse.ArgumentParser(description="the fuzzer's child process")
    parser.add_argument("--examples", type=int, default=100, help="examples per batch")
    parser.add_argument("--minutes", type=float, help="random batches until this time is up")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    np.seterr(all="ignore")  # the reference meets inf - inf in pooling; numpy's warnings are noise
    if args.minutes is None:  # a fixed batch of every op
        for op in OPS:
            _run_batch(args.examples, True, None, (op,))
        return 0
    deadline = time.monotonic() + 60 * args.minutes
    batch = 0
    while time.monotonic() < deadline:
        _run_batch(args.examples, False, args.seed * 1_000_003 + batch)
        batch += 1
    return 0


# --------------------------------------------------------------------------
# The parent: a watchdog over the child
# --------------------------------------------------------------------------


@dataclass
class Tally:
    """What a fuzzing run did, summed over its children."""

    cases: int = 0
    shrink_runs: int = 0
    by_op: dict = field(default_factory=lambda: defaultdict(Counter))
    failures: list = field(default_factory=list)  # (case repr, message)
    known: dict = field(default_factory=dict)  # KNOWN_BUGS name -> [count, first case repr]
    errors: list = field(default_factory=list)
    crashes: list = field(default_factory=list)  # (description, last case repr, stderr tail)
    children: int = 0

    @property
    def ok(self):
        return not (self.failures or self.errors or self.crashes)

    def read(self, line):
        word, _, rest = line.partition(" ")
        if word == "done":
            op, kind = rest.split(" ", 1)
            self.cases += 1
            self.by_op[op][kind] += 1
        elif word == "shrink":
            self.shrink_runs += 1
        elif word == "known":
            found = json.loads(rest)
            self.known.setdefault(found["bug"], [0, found["case"]])[0] += 1
        elif word == "failure":
            found = json.loads(rest)
            self.failures.append((found["case"], found["message"]))
        elif word == "error":
            self.errors.append(json.loads(rest)["message"])

    def problems(self):
        """Every failure, error and crash, each reproducible from its case."""
        lines = []
        for text, case, stderr in self.crashes:
            lines.append(f"CRASH: {text}\n  last case: {case}\n  stderr: {stderr}")
        for case, message in self.failures:
            lines.append(f"FAILURE: {message.splitlines()[0]}\n  case: {case}")
        lines += [f"FUZZER ERROR: {m}" for m in self.errors]
        return "\n".join(lines)

    def table(self):
        """Cases per op and per verdict, as a markdown table."""
        rows = ["| op | cases | " + " | ".join(KINDS) + " |",
                "|---|---:|" + "---:|" * len(KINDS)]
        total = Counter()
        for op in OPS:
            counts = self.by_op.get(op, Counter())
            total.update(counts)
            rows.append(f"| `{op}` | {sum(counts.values())} | "
                        + " | ".join(str(counts[k]) for k in KINDS) + " |")
        rows.append(f"| all | {sum(total.values())} | "
                    + " | ".join(str(total[k]) for k in KINDS) + " |")
        return "\n".join(rows)


def child_command(*args):
    return [sys.executable, "-X", "faulthandler", os.path.abspath(__file__), *map(str, args)]


def _read_lines(stream, lines):
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def run_child(command, tally, timeout, hang_seconds=120):
    """Run a child, reading its protocol into tally; record a crash, hang or timeout.

    A child silent for hang_seconds, or running past timeout, is killed. Returns the
    child's exit code (negative: killed by that signal).
    """
    tally.children += 1
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # stderr goes to a file: a pipe nobody reads while we read stdout could fill and block
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr, text=True, cwd=root)
        lines = queue.Queue()
        threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
        last_case, end, problem = None, time.monotonic() + timeout, None
        while problem is None:
            wait = min(hang_seconds, end - time.monotonic())
            try:
                line = lines.get(timeout=max(wait, 0.01))
            except queue.Empty:
                proc.kill()
                problem = ("child hung, killed" if wait == hang_seconds
                           else f"child still running after {timeout:.0f} s, killed")
                continue
            if line is None:
                break
            if line.startswith("case "):
                last_case = line[len("case "):]
            else:
                tally.read(line)
        code = proc.wait()
        if problem is None and code:
            problem = (f"child killed by signal {-code}" if code < 0
                       else f"child exited with {code}")
        if problem is not None:
            stderr.seek(0)
            tally.crashes.append((problem, last_case, stderr.read()[-3000:]))
        return code


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
