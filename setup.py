"""Build the Cython kernels of cnn.

Environment variables:
    CNN_CYTHON_DEBUG=1  compile with bounds checks, wraparound and initialisation
                        checks on (the test suite is also run against such a build).
    CNN_NATIVE=1        add -march=native (faster on the build machine, not portable).
    CNN_NO_OPENMP=1     build without OpenMP (kernels run on one thread).
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def _flag(name):
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _compiler_has_openmp():
    """Compile and link a tiny OpenMP program; False if the compiler can't."""
    if _flag("CNN_NO_OPENMP") or sys.platform == "win32":
        return False
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "omp.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
        cmd = cc + ["-fopenmp", src, "-o", os.path.join(tmp, "omp")]
        return subprocess.run(cmd, capture_output=True).returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


debug = _flag("CNN_CYTHON_DEBUG")


def _mode_changed(mode, stamp="cnn/_ops.build-mode"):
    """Whether the generated C was made in another mode (the directives are baked into it)."""
    try:
        with open(stamp) as f:
            previous = f.read().strip()
    except OSError:
        previous = None
    with open(stamp, "w") as f:
        f.write(mode)
    return previous != mode

# GCC would turn the kernels' short zeroing and copy loops (a few pixels per image
# row) into memset/memcpy calls, whose call overhead costs more than the loops.
compile_args = ["-O3", "-fno-tree-loop-distribute-patterns"]
link_args = []
if _flag("CNN_NATIVE"):
    compile_args.append("-march=native")
if _compiler_has_openmp():
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
else:
    print("cnn: building without OpenMP; kernels will use one thread", file=sys.stderr)

extensions = [
    Extension(
        "cnn._ops",
        ["cnn/_ops.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("CNN_BOUNDSCHECK", "1" if debug else "0")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": not debug,
        },
        # Switching between a debug and a release build must regenerate the C file.
        force=_mode_changed("debug" if debug else "release"),
    ),
)
