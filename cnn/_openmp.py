"""Load the compiled kernels with OpenMP threads that wait passively.

By default libgomp's idle threads spin for a while at the end of every
parallel region, waiting for more work. On a machine with cores to spare
that shaves microseconds; on a busy one (other processes, or
scikit-learn's ``n_jobs`` running several fits at once) a spinning thread
holds a core that the thread it waits for needs, and every parallel region
can stall for a scheduler time slice. Measured on 2 cores with two other
jobs running: a digits epoch took 3.4 s with the default policy and 0.13 s
with ``OMP_WAIT_POLICY=PASSIVE``.

libgomp reads its settings once, when it is loaded, so the policy is set
in the environment just for the import of ``cnn._ops`` (the first to load
the system's libgomp) and the environment is put back afterwards: other
libraries' OpenMP runtimes, loaded later, see the user's settings. A user's
own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is left alone.
"""
import os

_OURS = {"OMP_WAIT_POLICY": "PASSIVE"}


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
