"""Finite differences: the witness every backward in the suite is checked against."""
import numpy as np


def numerical_grad(loss, a, eps=1e-6):
    """Central differences of the scalar loss() with respect to every entry of a.

    a is changed in place, one entry at a time, and restored. The error is
    O(eps**2) from curvature plus O(rounding / eps): a map that is (piecewise)
    linear in a allows a large eps, leaving rounding only.
    """
    grad = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        saved = a[i]
        a[i] = saved + eps
        up = loss()
        a[i] = saved - eps
        down = loss()
        a[i] = saved
        grad[i] = (up - down) / (2 * eps)
    return grad
