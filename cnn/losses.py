"""Loss functions with the semantics of ``torch.nn.CrossEntropyLoss`` and ``torch.nn.MSELoss``.

A loss is an object that is called on a batch and then asked for its gradient::

    loss_fn = CrossEntropyLoss()
    loss = loss_fn(logits, y)        # a Python float (reduction "mean" or "sum")
    grad_logits = loss_fn.backward() # ndarray, same shape and dtype as logits
    model.backward(grad_logits)

The call remembers what the backward pass needs (the softmax probabilities and
the target distribution), so ``backward`` costs one subtraction. Computation
happens in the prediction's dtype (float32 or float64), as PyTorch does; only the
reduction to one number ("mean", "sum") adds the per-sample losses in float64.

``softmax`` and ``log_softmax`` are the numerically stable helpers that the
loss and ``predict_proba`` share.
"""
import numbers

import numpy as np

__all__ = ["CrossEntropyLoss", "MSELoss", "softmax", "log_softmax"]

_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------
# Argument checks (one helper per repeated check)
# --------------------------------------------------------------------------


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _as_float_array(x, name):
    """x as a float32/float64 ndarray; integers and booleans become float64, as in functional."""
    x = np.asarray(x)
    if x.dtype in (np.float32, np.float64):
        return x
    if x.dtype.kind in "iub":
        return x.astype(np.float64)
    raise TypeError(f"{name} must be an array of real numbers (float32 or float64), "
                    f"got dtype {x.dtype}")


# --------------------------------------------------------------------------
# Softmax helpers
# --------------------------------------------------------------------------


def log_softmax(x, axis=-1):
    """Logarithm of the softmax along ``axis``, computed without overflow.

    Subtracting the maximum first makes every exponent <= 0, so ``exp`` never
    overflows (logits of 1e4 are fine) and the largest term is exactly 1, so the
    sum never underflows to 0 and its logarithm is finite.

    Parameters
    ----------
    x : ndarray of float32 or float64
        Scores (logits). Integer arrays are computed in float64.
    axis : int, default=-1
        The axis along which the probabilities sum to one.

    Returns
    -------
    ndarray of the same shape and dtype as ``x``
    """
    x = _as_float_array(x, "x")
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """Softmax along ``axis`` (probabilities that sum to one), without overflow.

    Parameters
    ----------
    x : ndarray of float32 or float64
        Scores (logits). Integer arrays are computed in float64.
    axis : int, default=-1
        The axis along which the probabilities sum to one.

    Returns
    -------
    ndarray of the same shape and dtype as ``x``
    """
    x = _as_float_array(x, "x")
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------


class _Loss:
    """What every loss shares: the reduction, the cache and ``backward``."""

    def __init__(self, reduction="mean"):
        self.reduction = _check_reduction(reduction)
        self._cache = None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def _reduce(self, per_sample, denominator):
        """A Python float for "mean"/"sum", the per-sample array for "none"."""
        if self.reduction == "none":
            return per_sample
        # Summed in float64 (the result is a Python float anyway): float32 losses near
        # float32's maximum (logits of 1e38) would otherwise overflow the sum to inf
        # although their mean is finite.
        total = per_sample.sum(dtype=np.float64)
        if self.reduction == "mean":
            # 0 / 0 is NaN, as in PyTorch (e.g. all targets have weight 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                total = total / denominator
        return float(total)

    def _grad_scale(self, grad_output, n_samples, dtype):
        """How much each sample's gradient is scaled by, as a column vector."""
        if self.reduction == "none":
            if grad_output is None:
                grad_output = np.ones(n_samples, dtype=dtype)
            grad_output = np.asarray(grad_output, dtype=dtype)
            if grad_output.shape != (n_samples,):
                raise ValueError(f"grad_output must have shape ({n_samples},) for "
                                 f"reduction='none', got {grad_output.shape}")
            return grad_output
        if grad_output is None:
            grad_output = 1.0
        elif np.ndim(grad_output) != 0:
            raise ValueError("grad_output must be a scalar for reduction "
                             f"{self.reduction!r}, got shape {np.shape(grad_output)}")
        return float(grad_output)

    def _cached(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before the loss "
                               "was computed: call loss_fn(pred, target) first")
        return self._cache


class CrossEntropyLoss(_Loss):
    """Cross entropy between logits and class indices, as ``torch.nn.CrossEntropyLoss``.

    For sample ``n`` with target class ``y_n`` and log-probabilities
    ``logp = log_softmax(pred)``::

        q_nc = (1 - label_smoothing) * w[y_n] * [c == y_n] + label_smoothing / C * w[c]
        loss_n = -sum_c q_nc * logp_nc

    (``w`` is all ones without class weights). With ``reduction="mean"`` the sum
    of the ``loss_n`` is divided by ``sum_n w[y_n]``, the sum of the *target*
    weights (PyTorch's weighted mean; with no weights that is N). The gradient
    is ``softmax(pred) * sum_c q_nc - q_nc``, i.e. ``p - onehot`` in the plain case.

    Targets may also be class probabilities of shape (N, C) (PyTorch's "soft
    labels"): then ``q_nc = w[c] * t_nc`` (smoothed as
    ``t * (1 - label_smoothing) + label_smoothing / C``) and the mean divides by N.

    Parameters
    ----------
    weight : array-like of shape (C,), default=None
        A weight for each class (for unbalanced classes). None means all 1.
    label_smoothing : float in [0, 1], default=0.0
        Mixes the one-hot target with the uniform distribution over the classes.
    reduction : {"mean", "sum", "none"}, default="mean"
        "none" returns the per-sample losses as an ndarray of shape (N,).

    Examples
    --------
    >>> loss_fn = CrossEntropyLoss()
    >>> loss = loss_fn(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 1]))
    >>> round(loss, 4)
    0.1269
    >>> loss_fn.backward().shape
    (2, 2)
    """

    def __init__(self, weight=None, label_smoothing=0.0, reduction="mean"):
        super().__init__(reduction)
        if weight is not None:
            weight = _as_float_array(weight, "weight")
            if weight.ndim != 1 or weight.size == 0:
                raise ValueError(f"weight must have shape (C,) with one weight per class, "
                                 f"got {weight.shape}")
            if not np.all(np.isfinite(weight)):
                raise ValueError("weight must hold finite numbers")
            weight = weight.copy()  # later changes to the caller's array must not leak in
        self.weight = weight
        if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(label_smoothing,
                                                                             numbers.Real):
            raise TypeError(f"label_smoothing must be a float, got {label_smoothing!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def __repr__(self):
        args = []
        if self.weight is not None:
            args.append(f"weight={self.weight.tolist()}")
        if self.label_smoothing:
            args.append(f"label_smoothing={self.label_smoothing}")
        if self.reduction != "mean":
            args.append(f"reduction={self.reduction!r}")
        return f"CrossEntropyLoss({', '.join(args)})"

    def _targets(self, target, N, C, dtype):
        """The target distribution q (N, C) and the mean's denominator."""
        weight = None if self.weight is None else self.weight.astype(dtype, copy=False)
        eps = self.label_smoothing
        target = np.asarray(target)
        if target.shape == (N, C) and target.dtype.kind == "f":
            # class probabilities ("soft labels")
            q = target.astype(dtype)
            if eps:
                q = q * (1 - eps) + eps / C
            if weight is not None:
                q = q * weight
            return q, N
        if target.dtype.kind == "b" or target.dtype.kind not in "iu":
            raise TypeError("target must hold integer class indices (an int array of shape "
                            f"(N,)) or class probabilities of shape (N, C) = ({N}, {C}), "
                            f"got dtype {target.dtype} and shape {target.shape}")
        if target.shape != (N,):
            raise ValueError(f"target must have shape (N,) = ({N},) to match pred of shape "
                             f"({N}, {C}), got {target.shape}")
        if N and (target.min() < 0 or target.max() >= C):
            bad = target[(target < 0) | (target >= C)][0]
            raise ValueError(f"target must hold class indices in [0, {C - 1}] "
                             f"(pred has {C} classes), got {bad}")
        rows = np.arange(N)
        q = np.zeros((N, C), dtype=dtype)
        target_weight = np.ones(N, dtype=dtype) if weight is None else weight[target]
        q[rows, target] = (1 - eps) * target_weight
        if eps:
            q += (eps / C) * (np.ones(C, dtype=dtype) if weight is None else weight)
        return q, target_weight.sum()

    def forward(self, pred, target):
        """The loss of logits ``pred`` against ``target``.

        Parameters
        ----------
        pred : ndarray of shape (N, C)
            Logits (unnormalised scores), float32 or float64.
        target : ndarray of shape (N,) of int, or of shape (N, C) of float
            Class indices in ``[0, C)``, or class probabilities.

        Returns
        -------
        float, or ndarray of shape (N,) when ``reduction="none"``
        """
        pred = _as_float_array(pred, "pred")
        if pred.ndim != 2:
            raise ValueError(f"pred must have shape (N, C) (logits), got {pred.shape}")
        N, C = pred.shape
        if C == 0:
            raise ValueError(f"pred must have at least one class, got shape {pred.shape}")
        if self.weight is not None and self.weight.shape != (C,):
            raise ValueError(f"weight has {self.weight.shape[0]} entries but pred has "
                             f"{C} classes")
        q, denominator = self._targets(target, N, C, pred.dtype)
        logp = log_softmax(pred, axis=1)
        # q is 0 where logp may be -inf (a logit of -inf): 0 * -inf would be NaN
        with np.errstate(invalid="ignore"):
            per_sample = -np.sum(np.where(q != 0, q * logp, 0), axis=1)
        self._cache = (np.exp(logp), q, denominator)
        return self._reduce(per_sample, denominator)

    def backward(self, grad_output=None):
        """Gradient of the loss with respect to ``pred``.

        Parameters
        ----------
        grad_output : float or ndarray of shape (N,), default=None
            The gradient of whatever follows the loss (1 when None); of shape
            (N,) for ``reduction="none"``.

        Returns
        -------
        ndarray of the same shape and dtype as ``pred``
        """
        p, q, denominator = self._cached()
        scale = self._grad_scale(grad_output, p.shape[0], p.dtype)
        grad = p * q.sum(axis=1, keepdims=True) - q
        if self.reduction == "none":
            grad *= scale[:, None]
        else:
            if self.reduction == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    scale = scale / float(denominator)
            grad *= grad.dtype.type(scale)
        return grad


class MSELoss(_Loss):
    """Mean squared error, as ``torch.nn.MSELoss``: ``mean((pred - target) ** 2)``.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}, default="mean"
        "mean" divides by the number of elements (not of samples); "none"
        returns the element-wise squared errors.
    """

    def __repr__(self):
        return "MSELoss()" if self.reduction == "mean" else f"MSELoss(reduction={self.reduction!r})"

    def forward(self, pred, target):
        """The loss of ``pred`` against ``target`` (same shape; the target takes pred's dtype).

        Parameters
        ----------
        pred : ndarray of any shape
        target : ndarray of the same shape as ``pred``

        Returns
        -------
        float, or ndarray of pred's shape when ``reduction="none"``
        """
        pred = _as_float_array(pred, "pred")
        target = _as_float_array(target, "target")
        if target.shape != pred.shape:
            # PyTorch broadcasts here (with a warning); that is nearly always a bug
            raise ValueError(f"target must have the shape of pred {pred.shape}, "
                             f"got {target.shape}")
        diff = pred - target.astype(pred.dtype, copy=False)
        self._cache = diff
        squared = diff * diff
        if self.reduction == "none":
            return squared
        return self._reduce(squared, diff.size)

    def backward(self, grad_output=None):
        """Gradient of the loss with respect to ``pred`` (pred's shape and dtype).

        Parameters
        ----------
        grad_output : float or ndarray of pred's shape, default=None
            The gradient of whatever follows the loss (1 when None).
        """
        diff = self._cached()
        if self.reduction == "none":
            if grad_output is None:
                grad_output = np.ones_like(diff)
            grad_output = np.asarray(grad_output, dtype=diff.dtype)
            if grad_output.shape != diff.shape:
                raise ValueError(f"grad_output must have shape {diff.shape} for "
                                 f"reduction='none', got {grad_output.shape}")
            return 2 * diff * grad_output
        scale = 1.0 if grad_output is None else float(grad_output)
        if self.reduction == "mean":
            scale /= max(diff.size, 1)
        return diff * diff.dtype.type(2 * scale)
