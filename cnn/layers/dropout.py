"""Dropout: zero random activations while training."""
import numpy as np

from .module import Module, as_input, check_bool, check_float

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout, as ``torch.nn.Dropout``.

    In training mode each element is zeroed with probability ``p`` and the others
    are scaled by ``1 / (1 - p)``, so the expected activation is unchanged and
    evaluation needs no rescaling: in eval mode the layer is the identity.

    Parameters
    ----------
    p : float in [0, 1]
    inplace : bool
        Accepted for PyTorch compatibility; the output is always a new array.
    rng : None, int or numpy.random.Generator
        Source of the masks (seed it for reproducible training).
    """

    def __init__(self, p=0.5, inplace=False, rng=None):
        super().__init__()
        self.p = check_float(p, "p", 0.0, 1.0)
        self.inplace = check_bool(inplace, "inplace")
        self.rng = np.random.default_rng(rng)
        self._config = dict(p=self.p, inplace=self.inplace)

    def reset_parameters(self, rng=None):
        """No parameters; a new source of masks."""
        self.rng = np.random.default_rng(rng)

    def forward(self, x):
        x = as_input(x)
        if not self.training:
            self._cache = None
            return x
        if self.p == 1:
            scaled_mask = np.zeros_like(x)  # 1 / (1 - p) would be infinite
        else:
            keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p
            scaled_mask = keep * x.dtype.type(1 / (1 - self.p))
        self._save_for_backward(scaled_mask)
        return x * scaled_mask

    def backward(self, grad_out):
        (scaled_mask,) = self._saved()
        return grad_out * scaled_mask

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
