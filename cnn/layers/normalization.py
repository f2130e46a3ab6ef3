"""Batch normalisation: BatchNorm2d over (N, C, H, W), BatchNorm1d over (N, C) or (N, C, L)."""
import numpy as np

from ..parameter import Parameter
from .module import Module, as_input, check_bool, check_dtype, check_float, check_int

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    """Normalise each channel by the mean and variance of the batch, then scale and shift.

    In training mode the batch statistics are used and the running ones updated
    (``running = (1 - momentum) * running + momentum * batch``; the running
    variance takes the *unbiased* batch variance, while the normalisation uses
    the biased one, exactly as PyTorch). In eval mode the running statistics are
    used, so the output of one sample no longer depends on the others.

    Parameters
    ----------
    num_features : int
        The number of channels C.
    eps : float
        Added to the variance before the square root.
    momentum : float or None
        Weight of the new batch in the running statistics; None for a plain
        (cumulative) average over all batches seen.
    affine : bool
        Learn a scale (weight, ones at first) and a shift (bias, zeros).
    track_running_stats : bool
        Keep running statistics; without them the batch statistics are used in
        both modes.
    dtype : float32 or float64
    bias : bool, keyword only
        With affine, learn the shift too (PyTorch 2.13's ``bias`` argument).

    Attributes
    ----------
    weight, bias : Parameter of shape (C,), or None
    running_mean, running_var : ndarray of shape (C,), or None
    num_batches_tracked : ndarray of shape () and dtype int64, or None
    """

    _buffer_names = ("running_mean", "running_var", "num_batches_tracked")
    _layouts = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32, *, bias=True):
        super().__init__()
        self.num_features = check_int(num_features, "num_features", 1)
        self.eps = check_float(eps, "eps", 0.0)
        if self.eps == 0:
            raise ValueError("eps must be > 0 (it keeps the division finite), got 0")
        self.momentum = None if momentum is None else check_float(momentum, "momentum", 0.0, 1.0)
        self.affine = check_bool(affine, "affine")
        self.track_running_stats = check_bool(track_running_stats, "track_running_stats")
        check_bool(bias, "bias")
        self.dtype = check_dtype(dtype)
        C = self.num_features
        self.weight = Parameter(np.ones(C, self.dtype)) if affine else None
        self.bias = Parameter(np.zeros(C, self.dtype)) if affine and bias else None
        if track_running_stats:
            self.running_mean = np.zeros(C, self.dtype)
            self.running_var = np.ones(C, self.dtype)
            self.num_batches_tracked = np.array(0, dtype=np.int64)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._config = dict(num_features=C, eps=self.eps, momentum=self.momentum,
                            affine=self.affine, track_running_stats=self.track_running_stats,
                            dtype=self.dtype.name, bias=bias)

    def reset_parameters(self, rng=None):
        """Weight 1, bias 0, running statistics those of a standard normal (rng unused)."""
        if self.weight is not None:
            self.weight.data.fill(1)
        if self.bias is not None:
            self.bias.data.fill(0)
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def _check(self, x):
        if x.ndim not in self._layouts or x.shape[1] != self.num_features:
            layouts = " or ".join(self._layouts.values())
            raise ValueError(f"x must have shape {layouts} with C = num_features = "
                             f"{self.num_features}, got {x.shape}")

    def _axes_and_shape(self, x):
        """The axes a channel's statistics are taken over, and the shape that broadcasts (C,)."""
        axes = (0,) + tuple(range(2, x.ndim))
        return axes, (1, -1) + (1,) * (x.ndim - 2)

    def forward(self, x):
        x = as_input(x, self.dtype)
        self._check(x)
        axes, bshape = self._axes_and_shape(x)
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            n = x.size // self.num_features
            if self.training and n <= 1:
                raise ValueError(
                    f"BatchNorm needs more than 1 value per channel when training, got x of shape {x.shape}")
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)  # biased: the batch is normalised by its own spread
            if self.training and self.track_running_stats:
                self._update_running(mean, var, n)
        else:
            mean, var = self.running_mean, self.running_var
        inv_std = 1 / np.sqrt(var + x.dtype.type(self.eps))
        x_hat = (x - mean.reshape(bshape)) * inv_std.reshape(bshape)
        out = x_hat
        if self.weight is not None:
            out = out * self.weight.data.reshape(bshape)
        if self.bias is not None:
            out = out + self.bias.data.reshape(bshape)
        self._save_for_backward(x_hat, inv_std)
        return out

    def _update_running(self, mean, var, n):
        self.num_batches_tracked += 1
        if self.momentum is None:
            factor = 1 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        factor = self.running_mean.dtype.type(factor)
        # in place: an optimiser or a user may hold these arrays
        self.running_mean *= 1 - factor
        self.running_mean += factor * mean
        self.running_var *= 1 - factor
        # the running variance estimates the population's: the unbiased batch variance
        self.running_var += factor * var * self.running_var.dtype.type(n / (n - 1))

    def backward(self, grad_out):
        x_hat, inv_std = self._saved()
        grad_out = as_input(grad_out, self.dtype, "grad_out")
        axes, bshape = self._axes_and_shape(x_hat)
        if self.bias is not None:
            self.bias.grad += grad_out.sum(axis=axes)
        if self.weight is not None:
            self.weight.grad += (grad_out * x_hat).sum(axis=axes)
            grad_out = grad_out * self.weight.data.reshape(bshape)
        # The batch mean and variance depend on every input too: their share is the
        # two mean terms (zero mean and zero correlation with x_hat are enforced).
        mean_g = grad_out.mean(axis=axes).reshape(bshape)
        mean_gx = (grad_out * x_hat).mean(axis=axes).reshape(bshape)
        return (grad_out - mean_g - x_hat * mean_gx) * inv_std.reshape(bshape)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")

    def _macs(self, in_shape, out_shape):
        # one multiply-add an element once folded into a scale and a shift
        return int(np.prod(out_shape))


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of images (N, C, H, W), as ``torch.nn.BatchNorm2d``."""

    _layouts = {4: "(N, C, H, W)"}


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of features (N, C) or signals (N, C, L), as ``torch.nn.BatchNorm1d``."""

    _layouts = {2: "(N, C)", 3: "(N, C, L)"}
