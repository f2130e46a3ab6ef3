"""Load the compiled kernels with OpenMP threads that spin only briefly when idle.

By default libgomp's idle threads spin for a long while (300,000 rounds) at
the end of every parallel region, waiting for more work. On a machine with
cores to spare that shaves microseconds; on a busy one (other processes, or
scikit-learn's ``n_jobs`` running several fits at once) a spinning thread
holds a core that the thread it waits for needs, and every parallel region
can stall for a scheduler time slice. Measured on 2 cores, seconds per
digits epoch (the README's network, 2 threads):

    GOMP_SPINCOUNT / policy     quiet    2 CPU hogs   other Python jobs
    libgomp's default           0.045    0.22         1.2-4.3
    30,000                      0.043    0.58
    3,000 (cnn's)               0.050    0.16
    OMP_WAIT_POLICY=PASSIVE     0.061    0.16         0.14

so cnn spins 3,000 rounds, then sleeps. libgomp reads its settings once,
when it is loaded, so the spin count is set in the environment just for the
import of ``cnn._ops`` (the first to load the system's libgomp) and the
environment is put back afterwards: other libraries' OpenMP runtimes,
loaded later, see the user's settings. A user's own ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` is left alone.
"""
import os

_OURS = {"GOMP_SPINCOUNT": "3000"}


def load_ops():
    if any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        from . import _ops
        return _ops
    os.environ.update(_OURS)
    try:
        from . import _ops
    finally:
        for name in _OURS:
            os.environ.pop(name, None)
    return _ops
