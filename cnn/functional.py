"""Convolution and pooling on NumPy arrays, with the semantics of ``torch.nn.functional``.

Every op takes and returns NCHW arrays of float32 or float64 (the output has the
input's dtype) and has a ``*_backward`` beside it that returns the gradients of
its inputs given the gradient of its output.

Arrays are checked here, once, before the compiled kernels in ``cnn._ops`` run
without bounds checks: every bad shape, argument or dtype raises a
``ValueError`` or ``TypeError`` naming the argument and the shapes. Integer and
boolean arrays are converted to float64. Non-contiguous and read-only arrays
are accepted (they are copied to C order when needed, never written to).
"""
import math
import numbers
import threading
from collections import namedtuple
from contextlib import contextmanager, nullcontext

import numpy as np

from ._openmp import load_ops

_ops = load_ops()

__all__ = [
    "conv2d", "conv2d_backward",
    "conv_transpose2d", "conv_transpose2d_backward",
    "max_pool2d", "max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward",
    "pad2d", "pad2d_backward",
    "relu", "relu_backward",
    "conv2d_output_shape", "conv_transpose2d_output_shape", "pool2d_output_shape",
]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect",
                   "replicate": "edge", "circular": "wrap"}

# --------------------------------------------------------------------------
# Argument checks (one helper per repeated check)
# --------------------------------------------------------------------------


_INT64_MAX = 2**63 - 1


def _int(value, name, minimum):
    if type(value) is not int:  # the common case skips the slow ABC check
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"{name} must be an int, got {value!r} of type {type(value).__name__}")
        value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > _INT64_MAX:  # the kernels' indices are 64-bit
        raise ValueError(f"{name} must fit in a 64-bit integer, got {value}")
    return value


def _pair(value, name, minimum):
    """An int or a pair of ints, each >= minimum, as a tuple (h, w)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return _int(value[0], name, minimum), _int(value[1], name, minimum)
    v = _int(value, name, minimum)
    return v, v


def _float_dtype(arr, name):
    """The float dtype an array is computed in; TypeError for what is not a real number."""
    kind = arr.dtype.kind
    if kind in "biu":
        return np.dtype(np.float64)
    if kind == "f" and arr.dtype in (np.float32, np.float64):
        return arr.dtype
    if kind == "f":
        raise TypeError(f"{name} must be float32 or float64, got dtype {arr.dtype}")
    raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")


def _arrays(**named):
    """Float arrays of one common dtype, C-contiguous; a bias of None passes through.

    Integer and boolean arrays become float64; float32 and float64 are never
    mixed silently.
    """
    out, dtypes = {}, {}
    for name, value in named.items():
        if value is None and name == "bias":
            out[name] = None
            continue
        if value is None:
            raise TypeError(f"{name} must be an array, got None")
        arr = np.asarray(value)
        dtypes[name] = _float_dtype(arr, name)
        out[name] = arr
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{k} {v}" for k, v in dtypes.items())
        raise TypeError(f"arrays must have the same dtype (float32 or float64), got {got}")
    for name, dtype in dtypes.items():
        out[name] = np.ascontiguousarray(out[name], dtype=dtype)
    return out


def _check_rank(arr, rank, name, layout):
    if arr.ndim != rank:
        raise ValueError(f"{name} must have shape {layout}, got {arr.shape}")


def _input_size(input_size):
    if isinstance(input_size, (tuple, list)):
        if len(input_size) != 2:
            raise ValueError(f"input_size must be an int or (H, W), got {input_size!r}")
        return _int(input_size[0], "input_size", 0), _int(input_size[1], "input_size", 0)
    h = _int(input_size, "input_size", 0)
    return h, h


def _flat(arr):
    return arr.reshape(-1)


# Below this many multiply-adds (or comparisons) per thread, waking a team of
# OpenMP threads costs more than it saves, and far more on a busy machine.
_MIN_WORK_PER_THREAD = 1 << 16


def _threads(n_items, work):
    """OpenMP threads for a kernel over n_items independent items doing `work` in all."""
    return max(1, min(_ops.max_threads(), n_items, work // _MIN_WORK_PER_THREAD))


# BLAS's thread count is the process's, shared by every Python thread: the
# first thread in sets it to one, the last one out restores it. (Each call
# saving and restoring the count for itself let a thread leaving restore BLAS's
# threads under another thread's kernel.)
_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved = None  # [(thread count before, its setter)] of the libraries set to one
_blas_libraries = None  # found once: looking among all loaded libraries takes ms


def blas_on_one_thread():
    """A context in which BLAS runs on one thread (the convolutions keep their OpenMP threads).

    Idle OpenBLAS threads spin-wait for work after each product, taking the cores
    from the convolution kernels' OpenMP threads, and a network's dense products
    are small: fitting CNNClassifier's default network on digits took 20.8 s with
    BLAS threaded and about 6 s without, on 2 cores. (``cnn.train`` re-exports it.)

    BLAS's thread count is global to the process, so the contexts of all Python
    threads share one limit: the first to enter sets it, the last to leave
    restores it (each restoring the count it found left BLAS on one thread for
    good after overlapping predictions). The BLAS libraries are found once:
    looking for them among all loaded libraries took 4.6 ms a call.
    """
    return _BLAS_ON_ONE_THREAD


class _BlasOnOneThread:
    """blas_on_one_thread's context: its state is global, so one object serves every use.

    A class rather than a generator context: every convolution enters it, and
    @contextmanager's generator cost a tenth of a small layer's Python time.
    """

    __slots__ = ()

    def __enter__(self):
        global _blas_users, _blas_saved, _blas_libraries
        with _blas_lock:
            if _blas_users == 0:
                if _blas_libraries is None:
                    _blas_libraries = _blas_thread_setters()
                # the libraries to set back: those on more than one thread (a count
                # that cannot be read is one that cannot be set either)
                counts = [(get(), set_) for get, set_ in _blas_libraries]
                _blas_saved = [(n, set_) for n, set_ in counts if n is not None and n != 1]
                for n, set_ in _blas_saved:
                    set_(1)
            _blas_users += 1

    def __exit__(self, *exc_info):
        global _blas_users, _blas_saved
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for n, set_ in _blas_saved:
                    set_(n)
                _blas_saved = None
        return False


_BLAS_ON_ONE_THREAD = _BlasOnOneThread()


def _blas_thread_setters():
    """(get, set) of the thread count of each BLAS library loaded, found once.

    A pthreads OpenBLAS is set through its own C functions, which take a
    fraction of a microsecond: threadpoolctl's limit() and restore took 16 us,
    a tenth of a small layer's forward and backward. Other libraries go through
    threadpoolctl's controllers.
    """
    from threadpoolctl import ThreadpoolController

    setters = []
    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        get = set_ = None
        if lib.internal_api == "openblas" and getattr(lib, "threading_layer", "") == "pthreads":
            find = getattr(lib, "_get_symbol", None)  # threadpoolctl's own symbol lookup
            if find is not None:
                get, set_ = find("openblas_get_num_threads"), find("openblas_set_num_threads")
        if get is None or set_ is None:
            setters.append((lib.get_num_threads, _controlled(lib.set_num_threads)))
        else:
            setters.append((get, set_))
    return setters


def _controlled(set_num_threads):
    def set_(n):
        with _blas_control():
            set_num_threads(n)
    return set_


@contextmanager
def _blas_control():
    """Let this thread set OpenBLAS's thread count, and no thread keep that right after.

    threadpoolctl 3.8 lets one Python thread at a time set a pthreads OpenBLAS's
    thread count and silently ignores the others; the thread restoring the count
    here (the last out) need not be the one that set it.
    """
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None),
                    "clear_controlling_thread", None)  # threadpoolctl >= 3.8
    if clear is not None:
        clear(force=True)
    try:
        yield
    finally:
        if clear is not None:
            clear(force=True)


def _blas_single_threaded(n_threads):
    """BLAS runs on one thread while our threads call it (never both threaded).

    When the kernel itself runs on one thread, BLAS keeps its own threads.
    """
    return _BLAS_ON_ONE_THREAD if n_threads > 1 else nullcontext()


def _thread_rows(n_threads, size, dtype):
    """Per-thread scratch rows of `size` items, each on cache lines of its own.

    Rows that shared a cache line would bounce it between the cores on every
    write (false sharing): max pooling's scratch once ran no faster on two
    threads than on one.
    """
    dtype = np.dtype(dtype)
    per_line = 64 // dtype.itemsize
    width = -(-size // per_line) * per_line + per_line
    return np.empty((n_threads, width), dtype=dtype)[:, :size]


def _as_blas_int(value, what):
    if value >= 2**31:
        raise ValueError(f"{what} has {value} elements, more than BLAS can index (2**31 - 1)")


# --------------------------------------------------------------------------
# Output sizes
# --------------------------------------------------------------------------


def _conv_out(size, k, s, p_total, d):
    return (size + p_total - d * (k - 1) - 1) // s + 1


def _pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        out = -(-span // s) + 1
        # The last window must start inside the input or the left padding.
        if (out - 1) * s >= size + p:
            out -= 1
    else:
        out = span // s + 1
    return out


def conv2d_output_shape(input_size, kernel_size, stride=1, padding=0, dilation=1):
    """(H_out, W_out) of conv2d: floor((H + 2p - d(k-1) - 1) / s) + 1 per dimension.

    ``padding`` may be an int, a pair, "valid" or "same".
    """
    H, W = _input_size(input_size)
    kH, kW = _pair(kernel_size, "kernel_size", 1)
    g = _conv2d_geometry((1, 1, H, W), (1, 1, kH, kW), stride, padding, dilation, 1, "zeros")
    return g.H_out, g.W_out


def conv_transpose2d_output_shape(input_size, kernel_size, stride=1, padding=0,
                                  output_padding=0, dilation=1):
    """(H_out, W_out) of conv_transpose2d: (H - 1)s - 2p + d(k-1) + output_padding + 1."""
    H, W = _input_size(input_size)
    kH, kW = _pair(kernel_size, "kernel_size", 1)
    g = _conv_transpose2d_geometry((1, 1, H, W), (1, 1, kH, kW), stride, padding,
                                   output_padding, 1, dilation)
    return g.H, g.W


def pool2d_output_shape(input_size, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """(H_out, W_out) of max_pool2d/avg_pool2d, with ceil_mode as PyTorch."""
    H, W = _input_size(input_size)
    g = _pool2d_geometry((1, 1, H, W), kernel_size, stride, padding, dilation, ceil_mode,
                         name="input_size")
    return g.H_out, g.W_out


# --------------------------------------------------------------------------
# Padding
# --------------------------------------------------------------------------


def _pad4(padding):
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        return tuple(_int(p, "padding", 0) for p in padding)
    raise ValueError(f"padding must be (left, right, top, bottom), got {padding!r}")


def _check_pad_mode(mode, name="mode"):
    if mode not in _PADDING_MODES:
        raise ValueError(f"{name} must be one of {_PADDING_MODES}, got {mode!r}")


def _check_pad_fits(shape, pads, mode, name="padding"):
    """reflect needs padding < size; circular padding <= size; replicate a non-empty input."""
    left, right, top, bottom = pads
    H, W = shape[-2], shape[-1]
    for size, before, after, dim in ((H, top, bottom, "height"), (W, left, right, "width")):
        if mode == "reflect" and max(before, after) >= size:
            raise ValueError(
                f"reflect {name} ({before}, {after}) must be smaller than the input {dim} "
                f"{size} (input shape {tuple(shape)})")
        if mode == "circular" and max(before, after) > size:
            raise ValueError(
                f"circular {name} ({before}, {after}) must be at most the input {dim} "
                f"{size} (input shape {tuple(shape)})")
        if mode == "replicate" and size == 0 and before + after > 0:
            raise ValueError(f"replicate {name} needs a non-empty input, got shape {tuple(shape)}")


def pad2d(x, padding, mode="zeros"):
    """Pad the last two dimensions of x, like ``F.pad(x, (left, right, top, bottom), mode)``.

    mode: "zeros", "reflect" (mirror without repeating the edge), "replicate"
    (repeat the edge) or "circular" (wrap around).
    """
    x = _arrays(x=x)["x"]
    _check_rank(x, 4, "x", "(N, C, H, W)")
    _check_pad_mode(mode)
    pads = _pad4(padding)
    _check_pad_fits(x.shape, pads, mode)
    left, right, top, bottom = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=_NUMPY_PAD_MODE[mode])


def _source_index(size, before, after, mode):
    """For each padded position along one axis, the input position it copies (-1: zero)."""
    pos = np.arange(-before, size + after)
    if mode == "zeros":
        return np.where((pos >= 0) & (pos < size), pos, -1)
    if mode == "replicate":
        return np.clip(pos, 0, size - 1)
    if mode == "circular":
        return pos % size
    # reflect: -1 -> 1, size -> size - 2
    pos = np.abs(pos)
    return np.where(pos >= size, 2 * (size - 1) - pos, pos)


def pad2d_backward(grad_out, padding, mode="zeros"):
    """Gradient of pad2d: each padded entry's gradient goes back to the input it copied."""
    grad_out = _arrays(grad_out=grad_out)["grad_out"]
    _check_rank(grad_out, 4, "grad_out", "(N, C, H, W)")
    _check_pad_mode(mode)
    left, right, top, bottom = _pad4(padding)
    N, C, Hp, Wp = grad_out.shape
    H, W = Hp - top - bottom, Wp - left - right
    if H < 0 or W < 0:
        raise ValueError(f"padding {padding!r} is larger than grad_out of shape {grad_out.shape}")
    _check_pad_fits((N, C, H, W), (left, right, top, bottom), mode)
    if mode == "zeros":
        return grad_out[:, :, top:top + H, left:left + W].copy()  # never a view of grad_out
    # Sum rows, then columns, into the positions they were copied from.
    # Interior positions map to themselves, so only the borders add anything.
    rows = _source_index(H, top, bottom, mode)
    cols = _source_index(W, left, right, mode)
    g = np.zeros((N, C, H, Wp), dtype=grad_out.dtype)
    np.add.at(g, (slice(None), slice(None), rows), grad_out)
    grad_input = np.zeros((N, C, H, W), dtype=grad_out.dtype)
    np.add.at(grad_input, (slice(None), slice(None), slice(None), cols), g)
    return grad_input


# --------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------

_ConvGeometry = namedtuple(
    "_ConvGeometry",
    "N C H W C_out kH kW sH sW dH dW pt pb pl pr H_out W_out groups mode")


def _conv_padding(padding, kernel, stride, dilation):
    """((top, bottom), (left, right)) from an int, a pair, "valid" or "same"."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions, got stride {stride}")
            # As PyTorch: the odd pixel of an even kernel's padding goes last.
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    pH, pW = _pair(padding, "padding", 0)
    return (pH, pH), (pW, pW)


def _conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups, padding_mode):
    if len(x_shape) != 4:
        raise ValueError(f"x must have shape (N, C_in, H, W), got {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(
            f"weight must have shape (C_out, C_in/groups, kH, kW), got {tuple(w_shape)}")
    N, C, H, W = x_shape
    C_out, C_g, kH, kW = w_shape
    groups = _int(groups, "groups", 1)
    sH, sW = _pair(stride, "stride", 1)
    dH, dW = _pair(dilation, "dilation", 1)
    _check_pad_mode(padding_mode, "padding_mode")
    if C == 0:
        raise ValueError(f"x must have at least one input channel, got shape {tuple(x_shape)}")
    if C % groups or C_out % groups:
        raise ValueError(
            f"groups={groups} must divide both C_in={C} (x shape {tuple(x_shape)}) and "
            f"C_out={C_out} (weight shape {tuple(w_shape)})")
    if C_g * groups != C:
        raise ValueError(
            f"weight shape {tuple(w_shape)} expects C_in/groups={C_g} input channels per group, "
            f"but x of shape {tuple(x_shape)} has C_in={C} in {groups} group(s)")
    if kH < 1 or kW < 1:
        raise ValueError(f"weight kernel size must be at least 1, got weight shape {tuple(w_shape)}")
    (pt, pb), (pl, pr) = _conv_padding(padding, (kH, kW), (sH, sW), (dH, dW))
    if H + pt + pb < dH * (kH - 1) + 1 or W + pl + pr < dW * (kW - 1) + 1:
        raise ValueError(
            f"kernel size ({kH}, {kW}) with dilation ({dH}, {dW}) is larger than the padded "
            f"input ({H + pt + pb}, {W + pl + pr}) (x shape {tuple(x_shape)}, "
            f"padding ({pt}+{pb}, {pl}+{pr}))")
    if padding_mode != "zeros":
        _check_pad_fits(x_shape, (pl, pr, pt, pb), padding_mode)
    H_out = _conv_out(H, kH, sH, pt + pb, dH)
    W_out = _conv_out(W, kW, sW, pl + pr, dW)
    _as_blas_int(C_g * kH * kW * H_out * W_out, "the column matrix of one image")
    return _ConvGeometry(N, C, H, W, C_out, kH, kW, sH, sW, dH, dW, pt, pb, pl, pr,
                         H_out, W_out, groups, padding_mode)


def _padded_input(x, g):
    """For non-zero padding modes, pad first (as torch.nn.Conv2d does); the kernel pads zeros."""
    if g.mode == "zeros":
        return x, g.pt, g.pl
    return pad2d(x, (g.pl, g.pr, g.pt, g.pb), g.mode), 0, 0


def _is_depthwise(g):
    return g.groups > 1 and g.C == g.groups


def _depthwise_scratch(g, n_threads, dtype, size):
    """Padded-plane scratch that selects the depthwise 3x3, stride-1 kernels; empty otherwise."""
    fast = (g.kH, g.kW, g.sH, g.sW, g.dH, g.dW) == (3, 3, 1, 1, 1, 1)
    return _thread_rows(n_threads, size if fast else 0, dtype)


# Images narrower than this many output pixels are put side by side, a chunk
# of them per GEMM: one product of 64 columns runs far faster than four of 16.
# Wider chunks gain nothing more: OpenBLAS runs a product of 64 columns as fast
# as one of 256, and the images must then be gathered into and out of a
# scratch matrix. Forward and backward with 256 instead of 64: 4x4 images
# 12% slower, transposed conv 32->1 on 14x14 24%, 1->16 on 8x8 10%.
_GEMM_COLUMNS = 64
# The weight gradient sums its products over the images, so a chunk's GEMM is
# deeper, not wider: 1->16 on 8x8 (a 16x9 result) ran its forward and backward
# 12% faster with chunks of 256 columns there; the larger layers did not mind.
_WEIGHT_GRAD_COLUMNS = 256


def _conv_work(g):
    """Multiply-adds of one product of a convolution (forward, or either gradient)."""
    return g.N * g.C_out * g.H_out * g.W_out * (g.C // g.groups) * g.kH * g.kW


class _Workspace:
    """Per-thread scratch of the im2col kernels, bounded per chunk of images, never per batch.

    col holds the column matrix (C*kH*kW, chunk*L) of a chunk of images; tmp
    its (M, chunk*L) product, or its gradient, gathered side by side.
    """

    def __init__(self, g, dtype, columns=None):
        L = g.H_out * g.W_out
        columns = _GEMM_COLUMNS if columns is None else columns
        self.n_threads = _threads(g.N, _conv_work(g))
        self.chunk = max(1, min(-(-columns // L), -(-g.N // self.n_threads)))
        width = self.chunk * L
        _as_blas_int(max(g.C * g.kH * g.kW, g.C_out) * width, "the column matrix of a chunk")
        self.col = np.empty((self.n_threads, g.C * g.kH * g.kW, width), dtype=dtype)
        tmp_rows = g.C_out if self.chunk > 1 else 0
        self.tmp = np.empty((self.n_threads, tmp_rows, width), dtype=dtype)
        # im2col's and col2im's padded plane, when the kernel pads (other modes
        # pad x beforehand)
        padded = g.mode == "zeros" and any((g.pt, g.pb, g.pl, g.pr))
        Hp = (g.H_out - 1) * g.sH + g.dH * (g.kH - 1) + 1
        Wp = (g.W_out - 1) * g.sW + g.dW * (g.kW - 1) + 1
        self.padded = _thread_rows(self.n_threads, Hp * Wp if padded else 0, dtype)


def _bias_or_empty(bias, C_out, dtype, name="bias"):
    if bias is None:
        return np.empty(0, dtype=dtype), False
    if bias.shape != (C_out,):
        raise ValueError(f"{name} must have shape ({C_out},), got {bias.shape}")
    return bias, True


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros"):
    """2-D cross-correlation of a batch of images with a bank of filters.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_out, C_in / groups, kH, kW)
    bias : ndarray of shape (C_out,), optional
    stride, dilation : int or (int, int)
    padding : int, (int, int), "valid" or "same"
        "same" keeps H and W (stride 1 only); an even kernel gets the odd pixel
        of padding at the bottom/right, as PyTorch.
    groups : int
        Input and output channels split into this many independent groups;
        ``groups == C_in`` is a depthwise convolution.
    padding_mode : "zeros", "reflect", "replicate" or "circular"
        What ``torch.nn.Conv2d(padding_mode=...)`` does.

    Returns
    -------
    out : ndarray of shape (N, C_out, H_out, W_out)
        ``out[n, o] = bias[o] + sum_{c, i, j} weight[o, c, i, j] *
        x_padded[n, g*C_in/groups + c, h*sH + i*dH, w*sW + j*dW]``.
    """
    a = _arrays(x=x, weight=weight, bias=bias)
    x, weight = a["x"], a["weight"]
    g = _conv2d_geometry(x.shape, weight.shape, stride, padding, dilation, groups, padding_mode)
    bias, has_bias = _bias_or_empty(a["bias"], g.C_out, x.dtype)
    out = np.empty((g.N, g.C_out, g.H_out, g.W_out), dtype=x.dtype)
    if out.size == 0:
        return out
    if x.shape[2] * x.shape[3] == 0:  # an image of no pixels, zero-padded: the bias alone
        out[...] = bias.reshape(1, -1, 1, 1) if has_bias else 0
        return out
    x, pH, pW = _padded_input(x, g)
    if _is_depthwise(g):
        n_threads = _threads(g.N * g.C_out, _conv_work(g))
        padded = _depthwise_scratch(g, n_threads, x.dtype, (g.H_out + 2) * (g.W_out + 2))
        _ops.depthwise_forward(x, weight.reshape(g.C_out, g.kH, g.kW), bias, out, padded,
                               g.sH, g.sW, pH, pW, g.dH, g.dW, has_bias, n_threads)
        return out
    ws = _Workspace(g, x.dtype)
    with _blas_single_threaded(ws.n_threads):
        _ops.im2col_gemm(x, weight.reshape(g.C_out, -1), bias,
                         out.reshape(g.N, g.C_out, -1), ws.col, ws.tmp, ws.padded,
                         g.kH, g.kW, g.sH, g.sW, pH, pW, g.dH, g.dW,
                         g.H_out, g.W_out, g.groups, ws.chunk, has_bias, ws.n_threads)
    return out


def _check_grad_out(grad_out, expected):
    if grad_out.shape != tuple(expected):
        raise ValueError(f"grad_out must have shape {tuple(expected)}, got {grad_out.shape}")


def _sum_threads(per_thread):
    return per_thread.sum(axis=0) if per_thread.shape[0] > 1 else per_thread[0]


# weight_grad's arguments for the product it is not asked for, per dtype
_NO_PRODUCT = {np.dtype(t).char: (np.empty((0, 0), t), np.empty((0, 0, 0), t),
                                  np.empty((0, 0, 0), t))
               for t in (np.float32, np.float64)}


def _weight_grad_buffer(n_threads, w_shape, groups, dtype):
    """Zeroed per-thread weight gradients for _ops.weight_grad, and whether they are
    transposed per group, (threads, groups*K_g, M_g), which is faster when K_g >= M_g."""
    M, K_g = w_shape[0], math.prod(w_shape[1:])
    transposed = K_g >= M // groups
    shape = (n_threads, groups * K_g, M // groups) if transposed else (n_threads, M, K_g)
    return np.zeros(shape, dtype=dtype), transposed


def _weight_grad_result(per_thread, transposed, w_shape, groups):
    """Sum _weight_grad_buffer over threads; transpose each group back to w_shape."""
    total = _sum_threads(per_thread)
    if not transposed:
        return total.reshape(w_shape)
    K_g, M_g = total.shape[0] // groups, total.shape[1]
    return np.ascontiguousarray(
        total.reshape(groups, K_g, M_g).transpose(0, 2, 1)).reshape(w_shape)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", needs_input_grad=True):
    """Gradients of conv2d with respect to x, weight and bias.

    Parameters are conv2d's; ``grad_out`` has conv2d's output shape.
    With ``needs_input_grad=False`` (a network's first layer) the input
    gradient, a third of the work, is skipped and returned as None.

    Returns
    -------
    grad_input : ndarray of shape (N, C_in, H, W), or None
    grad_weight : ndarray of shape (C_out, C_in / groups, kH, kW)
    grad_bias : ndarray of shape (C_out,)
    """
    a = _arrays(grad_out=grad_out, x=x, weight=weight)
    grad_out, x, weight = a["grad_out"], a["x"], a["weight"]
    g = _conv2d_geometry(x.shape, weight.shape, stride, padding, dilation, groups, padding_mode)
    _check_grad_out(grad_out, (g.N, g.C_out, g.H_out, g.W_out))
    dtype = x.dtype
    grad_weight = np.zeros(weight.shape, dtype=dtype)
    grad_bias = np.zeros(g.C_out, dtype=dtype)
    xp, pH, pW = _padded_input(x, g)
    grad_xp = np.zeros(xp.shape, dtype=dtype) if needs_input_grad else None
    if x.shape[2] * x.shape[3] == 0:  # an image of no pixels: only the bias had a say
        grad_bias = grad_out.sum(axis=(0, 2, 3), dtype=dtype)
    elif g.N and g.C_out and g.H_out * g.W_out:
        geometry = (g.sH, g.sW, pH, pW, g.dH, g.dW)
        if _is_depthwise(g):
            w3 = weight.reshape(g.C_out, g.kH, g.kW)
            n_threads = _threads(g.C_out, _conv_work(g))
            padded = _depthwise_scratch(g, n_threads, dtype, (g.H_out + 2) * (g.W_out + 2))
            # the 3x3 path keeps only its nine sums in acc
            acc = np.empty((n_threads, g.kH * g.kW, 1 if padded.shape[1] else g.H_out * g.W_out),
                           dtype=dtype)
            _ops.depthwise_backward_weight(grad_out, xp, grad_weight.reshape(w3.shape), grad_bias,
                                           acc, padded, *geometry, n_threads)
            if needs_input_grad:
                n_threads = _threads(g.N * g.C, _conv_work(g))
                padded = _depthwise_scratch(g, n_threads, dtype, (xp.shape[2] + 2) * (xp.shape[3] + 2))
                if pH > 2 or pW > 2:  # the 3x3 adjoint pads grad_out by 2 - padding
                    padded = padded[:, :0]
                _ops.depthwise_backward_input(grad_out, w3, grad_xp, padded, *geometry, n_threads)
        else:
            ws = _Workspace(g, dtype, _WEIGHT_GRAD_COLUMNS)
            n_threads = ws.n_threads
            gw, gw_transposed = _weight_grad_buffer(n_threads, weight.shape, g.groups, dtype)
            gb = np.zeros((n_threads, g.C_out), dtype=dtype)
            g_flat = grad_out.reshape(g.N, g.C_out, -1)
            with _blas_single_threaded(n_threads):
                _ops.weight_grad(g_flat, xp, gw, gb, ws.col, ws.tmp, ws.padded,
                                 *_NO_PRODUCT[dtype.char], g.kH, g.kW, *geometry, g.H_out,
                                 g.W_out, g.groups, ws.chunk, True, gw_transposed, False,
                                 n_threads)
                if needs_input_grad:
                    del ws  # before the next is allocated: malloc can reuse its memory
                    ws = _Workspace(g, dtype)
                    _ops.gemm_col2im(g_flat, weight.reshape(g.C_out, -1),
                                     np.empty(0, dtype=dtype), grad_xp, ws.col, ws.tmp,
                                     ws.padded, g.kH, g.kW, *geometry, g.H_out, g.W_out,
                                     g.groups, ws.chunk, False, n_threads)
            grad_weight = _weight_grad_result(gw, gw_transposed, weight.shape, g.groups)
            grad_bias = _sum_threads(gb)
    if not needs_input_grad:
        return None, grad_weight, grad_bias
    if g.mode != "zeros":
        grad_xp = pad2d_backward(grad_xp, (g.pl, g.pr, g.pt, g.pb), g.mode)
    return grad_xp, grad_weight, grad_bias


# --------------------------------------------------------------------------
# conv_transpose2d: the adjoint of conv2d, from the same three kernels
# --------------------------------------------------------------------------


def _conv_transpose2d_geometry(x_shape, w_shape, stride, padding, output_padding, groups,
                               dilation):
    """The geometry of the conv2d whose adjoint this is: its input is our output."""
    if len(x_shape) != 4:
        raise ValueError(f"x must have shape (N, C_in, H, W), got {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(
            f"weight must have shape (C_in, C_out/groups, kH, kW), got {tuple(w_shape)}")
    N, C_in, H, W = x_shape
    C_w, C_out_g, kH, kW = w_shape
    groups = _int(groups, "groups", 1)
    sH, sW = _pair(stride, "stride", 1)
    dH, dW = _pair(dilation, "dilation", 1)
    pH, pW = _pair(padding, "padding", 0)
    oH, oW = _pair(output_padding, "output_padding", 0)
    if C_in == 0 or C_out_g == 0:
        raise ValueError(
            f"conv_transpose2d needs at least one input and one output channel, got x shape "
            f"{tuple(x_shape)} and weight shape {tuple(w_shape)}")
    if C_w != C_in:
        raise ValueError(
            f"weight of shape {tuple(w_shape)} expects C_in={C_w} input channels, "
            f"x of shape {tuple(x_shape)} has {C_in}")
    if C_in % groups:
        raise ValueError(f"groups={groups} must divide C_in={C_in} (x shape {tuple(x_shape)})")
    if kH < 1 or kW < 1:
        raise ValueError(f"weight kernel size must be at least 1, got weight shape {tuple(w_shape)}")
    for o, s, d, dim in ((oH, sH, dH, "height"), (oW, sW, dW, "width")):
        if o >= s and o >= d:
            raise ValueError(
                f"output_padding ({oH}, {oW}) must be smaller than either stride ({sH}, {sW}) "
                f"or dilation ({dH}, {dW}) in {dim}")
    H_out = (H - 1) * sH - 2 * pH + dH * (kH - 1) + oH + 1
    W_out = (W - 1) * sW - 2 * pW + dW * (kW - 1) + oW + 1
    if H_out < 1 or W_out < 1:
        raise ValueError(
            f"output size ({H_out}, {W_out}) is too small: x shape {tuple(x_shape)}, kernel "
            f"({kH}, {kW}), stride ({sH}, {sW}), padding ({pH}, {pW}), dilation ({dH}, {dW})")
    _as_blas_int(C_out_g * kH * kW * H * W, "the column matrix of one image")
    # Fields as conv2d's: C, H, W the conv's input (our output), H_out, W_out its output (our input).
    return _ConvGeometry(N, C_out_g * groups, H_out, W_out, C_in, kH, kW, sH, sW, dH, dW,
                         pH, pH, pW, pW, H, W, groups, "zeros")


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed convolution: the gradient of conv2d with respect to its input.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_in, C_out / groups, kH, kW)
    bias : ndarray of shape (C_out,), optional

    Returns
    -------
    out : ndarray of shape (N, C_out, H_out, W_out)
        ``H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1``.
    """
    a = _arrays(x=x, weight=weight, bias=bias)
    x, weight = a["x"], a["weight"]
    g = _conv_transpose2d_geometry(x.shape, weight.shape, stride, padding, output_padding,
                                   groups, dilation)
    bias, has_bias = _bias_or_empty(a["bias"], g.C, x.dtype)
    out = np.empty((g.N, g.C, g.H, g.W), dtype=x.dtype)
    if out.size == 0:
        return out
    if g.H_out * g.W_out == 0:  # an input of no pixels: the bias alone
        out[...] = bias.reshape(1, -1, 1, 1) if has_bias else 0
        return out
    ws = _Workspace(g, x.dtype)
    with _blas_single_threaded(ws.n_threads):
        _ops.gemm_col2im(x.reshape(g.N, g.C_out, -1), weight.reshape(g.C_out, -1), bias, out,
                         ws.col, ws.tmp, ws.padded, g.kH, g.kW, g.sH, g.sW, g.pt, g.pl,
                         g.dH, g.dW, g.H_out, g.W_out, g.groups, ws.chunk, has_bias,
                         ws.n_threads)
    return out


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, needs_input_grad=True):
    """Gradients of conv_transpose2d with respect to x, weight and bias.

    grad_input is conv2d of grad_out with the same weight; grad_weight pairs x
    with the columns of grad_out.

    Returns
    -------
    grad_input : ndarray of shape (N, C_in, H, W), or None
    grad_weight : ndarray of shape (C_in, C_out / groups, kH, kW)
    grad_bias : ndarray of shape (C_out,)
    """
    a = _arrays(grad_out=grad_out, x=x, weight=weight)
    grad_out, x, weight = a["grad_out"], a["x"], a["weight"]
    g = _conv_transpose2d_geometry(x.shape, weight.shape, stride, padding, output_padding,
                                   groups, dilation)
    _check_grad_out(grad_out, (g.N, g.C, g.H, g.W))
    dtype = x.dtype
    grad_input = np.zeros(x.shape, dtype=dtype) if needs_input_grad else None
    grad_weight = np.zeros(weight.shape, dtype=dtype)
    grad_bias = grad_out.sum(axis=(0, 2, 3))
    if g.N and g.C_out and g.H_out * g.W_out:
        ws = _Workspace(g, dtype)
        gw, gw_transposed = _weight_grad_buffer(ws.n_threads, weight.shape, g.groups, dtype)
        x_flat = x.reshape(g.N, g.C_out, -1)
        geometry = (g.kH, g.kW, g.sH, g.sW, g.pt, g.pl, g.dH, g.dW, g.H_out, g.W_out, g.groups,
                    ws.chunk)
        if needs_input_grad:  # from the same columns of grad_out as the weight gradient
            product = (weight.reshape(g.C_out, -1), grad_input.reshape(x_flat.shape),
                       np.empty(ws.tmp.shape if ws.chunk > 1 else (0, 0, 0), dtype=dtype))
        else:
            product = _NO_PRODUCT[dtype.char]
        with _blas_single_threaded(ws.n_threads):
            _ops.weight_grad(x_flat, grad_out, gw, np.empty((ws.n_threads, 0), dtype=dtype),
                             ws.col, ws.tmp, ws.padded, *product, *geometry, False,
                             gw_transposed, needs_input_grad, ws.n_threads)
        grad_weight = _weight_grad_result(gw, gw_transposed, weight.shape, g.groups)
    return grad_input, grad_weight, grad_bias


# --------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------

_PoolGeometry = namedtuple("_PoolGeometry", "N C H W kH kW sH sW pH pW dH dW H_out W_out")


def _pool2d_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode, name="x"):
    if len(x_shape) != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x_shape)}")
    N, C, H, W = x_shape
    kH, kW = _pair(kernel_size, "kernel_size", 1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        sH, sW = kH, kW
    else:
        sH, sW = _pair(stride, "stride", 1)
    pH, pW = _pair(padding, "padding", 0)
    dH, dW = _pair(dilation, "dilation", 1)
    # a window one tap wide has no dilation (and a huge one must not overflow the offsets)
    dH, dW = (dH if kH > 1 else 1), (dW if kW > 1 else 1)
    if pH > kH // 2 or pW > kW // 2:
        raise ValueError(
            f"padding ({pH}, {pW}) must be at most half the kernel_size ({kH}, {kW})")
    H_out = _pool_out(H, kH, sH, pH, dH, ceil_mode)
    W_out = _pool_out(W, kW, sW, pW, dW, ceil_mode)
    if H_out < 1 or W_out < 1:
        raise ValueError(
            f"output size ({H_out}, {W_out}) is too small: {name} shape {tuple(x_shape)}, "
            f"kernel_size ({kH}, {kW}), stride ({sH}, {sW}), padding ({pH}, {pW}), "
            f"dilation ({dH}, {dW})")
    for size, k, s, p, d, n_out, dim in ((H, kH, sH, pH, dH, H_out, "height"),
                                         (W, kW, sW, pW, dW, W_out, "width")):
        if _has_empty_window(size, k, s, p, d, n_out):
            # PyTorch returns -inf there, with an index outside the plane that its own
            # backward then writes through; we refuse the configuration instead.
            raise ValueError(
                f"a pooling window lies wholly in the padding along the {dim}: {name} shape "
                f"{tuple(x_shape)}, kernel_size ({kH}, {kW}), stride ({sH}, {sW}), "
                f"padding ({pH}, {pW}), dilation ({dH}, {dW})")
    return _PoolGeometry(N, C, H, W, kH, kW, sH, sW, pH, pW, dH, dW, H_out, W_out)


def _has_empty_window(size, k, s, p, d, n_out):
    """Whether some window's dilated taps all miss [0, size)."""
    start = np.arange(n_out) * s - p
    taps = start[:, None] + d * np.arange(k)[None, :]
    return not np.all(((taps >= 0) & (taps < size)).any(axis=1))


def _input_shape(input_shape):
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {input_shape!r}")
    return tuple(_int(s, "input_shape", 0) for s in input_shape)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over each (dilated) window; padding never wins.

    Returns
    -------
    out : ndarray of shape (N, C, H_out, W_out)
    indices : ndarray of int64, same shape, if return_indices
        Flat offset ``h * W + w`` of each maximum in its (H, W) plane. The first
        maximum of a window wins ties; a NaN counts as the maximum.
    """
    x = _arrays(x=x)["x"]
    g = _pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    out = np.empty((g.N, g.C, g.H_out, g.W_out), dtype=x.dtype)
    indices = np.empty(out.shape if return_indices else (0, 0, 0), dtype=np.int64)
    if out.size:
        P = g.N * g.C
        n_threads = _threads(P, out.size * g.kH * g.kW)
        _ops.max_pool2d_forward(x.reshape(P, g.H, g.W), out.reshape(P, g.H_out, g.W_out),
                                indices.reshape(P, g.H_out, g.W_out) if return_indices else indices,
                                _thread_rows(n_threads, g.W_out, x.dtype),
                                (np.arange(g.kH)[:, None] * (g.dH * g.W)
                                 + np.arange(g.kW)[None, :] * g.dW).ravel(),
                                g.kH, g.kW, g.sH, g.sW, g.pH, g.pW, g.dH, g.dW,
                                return_indices, n_threads)
    return (out, indices) if return_indices else out


def max_pool2d_backward(grad_out, indices, input_shape):
    """Gradient of max_pool2d: each output's gradient goes to the input that was its maximum."""
    grad_out = _arrays(grad_out=grad_out)["grad_out"]
    N, C, H, W = _input_shape(input_shape)
    _check_rank(grad_out, 4, "grad_out", "(N, C, H_out, W_out)")
    if grad_out.shape[:2] != (N, C):
        raise ValueError(
            f"grad_out of shape {grad_out.shape} does not match input_shape {(N, C, H, W)}")
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
    if indices.shape != grad_out.shape:
        raise ValueError(
            f"indices and grad_out must have the same shape, got indices {indices.shape} "
            f"and grad_out {grad_out.shape}")
    grad_input = np.empty((N, C, H, W), dtype=grad_out.dtype)
    if grad_input.size == 0 or grad_out.size == 0:
        if indices.size and (indices.min() < 0 or indices.max() >= H * W):
            raise _indices_range_error(indices, (N, C, H, W))
        grad_input.fill(0)
        return grad_input
    given, indices = indices, np.ascontiguousarray(indices, dtype=np.int64)
    P = N * C
    # the kernel checks every index before it writes through it, and counts those out of range
    n_bad = _ops.max_pool2d_backward(grad_out.reshape(P, *grad_out.shape[2:]),
                                     indices.reshape(P, *indices.shape[2:]),
                                     grad_input.reshape(P, H, W), _threads(P, grad_input.size))
    if n_bad:
        raise _indices_range_error(given, (N, C, H, W))
    return grad_input


def _indices_range_error(indices, input_shape):
    H, W = input_shape[2:]
    return ValueError(
        f"indices must lie in [0, H*W) = [0, {H * W}) for input_shape {input_shape}, "
        f"got values in [{indices.min()}, {indices.max()}]")


def _divisor(divisor_override):
    if divisor_override is None:
        return 0
    return _int(divisor_override, "divisor_override", 1)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over each window.

    ``count_include_pad`` counts the zero padding in the divisor (PyTorch's
    default); ``divisor_override`` replaces the divisor altogether.
    """
    x = _arrays(x=x)["x"]
    g = _pool2d_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    divisor = _divisor(divisor_override)
    out = np.empty((g.N, g.C, g.H_out, g.W_out), dtype=x.dtype)
    if out.size:
        P = g.N * g.C
        _ops.avg_pool2d_forward(x.reshape(P, g.H, g.W), out.reshape(P, g.H_out, g.W_out),
                                g.kH, g.kW, g.sH, g.sW, g.pH, g.pW, bool(count_include_pad),
                                divisor, _threads(P, out.size * g.kH * g.kW))
    return out


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d: each output's gradient is spread evenly over its window."""
    grad_out = _arrays(grad_out=grad_out)["grad_out"]
    shape = _input_shape(input_shape)
    g = _pool2d_geometry(shape, kernel_size, stride, padding, 1, ceil_mode, name="input_shape")
    divisor = _divisor(divisor_override)
    _check_grad_out(grad_out, (g.N, g.C, g.H_out, g.W_out))
    grad_input = np.zeros(shape, dtype=grad_out.dtype)
    if grad_input.size:
        P = g.N * g.C
        n_threads = _threads(P, grad_out.size * g.kH * g.kW)
        _ops.avg_pool2d_backward(grad_out.reshape(P, g.H_out, g.W_out),
                                 grad_input.reshape(P, g.H, g.W),
                                 _thread_rows(n_threads, g.W_out, grad_out.dtype),
                                 g.kH, g.kW, g.sH, g.sW, g.pH, g.pW, bool(count_include_pad),
                                 divisor, n_threads)
    return grad_input


# The textbook single-image operations, built on conv2d (imported last: cnn.signal uses conv2d).
from .signal import convolve2d, correlate2d  # noqa: E402

__all__ += ["convolve2d", "correlate2d"]


# --------------------------------------------------------------------------
# ReLU
# --------------------------------------------------------------------------


def relu(x, inplace=False):
    """max(x, 0) elementwise, as ``torch.nn.functional.relu`` (relu(NaN) is NaN).

    With ``inplace=True`` the result is written into ``x`` and ``x`` is
    returned; ``x`` must then be a writable float32 or float64 array.
    """
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"inplace must be a bool, got {inplace!r}")
    if inplace:
        if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64):
            raise TypeError("relu(inplace=True) needs a float32 or float64 ndarray, got "
                            f"{type(x).__name__}" + (f" of dtype {x.dtype}"
                                                     if isinstance(x, np.ndarray) else ""))
        if not x.flags.writeable:
            raise ValueError(f"relu(inplace=True) cannot write to a read-only array (shape {x.shape})")
    src = _arrays(x=x)["x"]
    out = x if inplace and src is x else np.empty_like(src)
    if src.size:
        _ops.relu_forward(_flat(src), _flat(out), _threads(src.size, src.size))
    if inplace and out is not x:  # x was not C-contiguous: write the result back
        x[...] = out
        return x
    return out


def relu_backward(grad_out, out):
    """Gradient of relu: ``grad_out`` where the forward's output ``out`` is > 0, else 0.

    ``out`` may also be the forward's input (it has the same sign). As
    PyTorch's ``threshold_backward``, the gradient passes where ``out`` is NaN.
    """
    arrays = _arrays(grad_out=grad_out, out=out)
    grad_out, out = arrays["grad_out"], arrays["out"]
    if grad_out.shape != out.shape:
        raise ValueError(f"grad_out and out must have the same shape, got grad_out "
                         f"{grad_out.shape} and out {out.shape}")
    grad_input = np.empty_like(grad_out)
    if grad_out.size:
        _ops.relu_backward(_flat(grad_out), _flat(out), _flat(grad_input),
                           _threads(grad_out.size, grad_out.size))
    return grad_input
