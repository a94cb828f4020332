"""Build the Cython backend of fastsoftmax.

Every ``*.pyx`` under ``fastsoftmax/kernels/cython_backend`` becomes an
extension module.  The extensions are compiled with OpenMP when the compiler
supports it, and serially (with a warning) when it does not.

Environment knobs (all optional):

* ``FASTSOFTMAX_NATIVE=1``   add ``-march=native`` (opt-in; wheels built this
  way only run on CPUs like the build machine).
* ``FASTSOFTMAX_NO_OPENMP=1`` force the serial build.
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy as np
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CY_DIR = os.path.join("fastsoftmax", "kernels", "cython_backend")


def _compiler_supports(flags):
    """True when the C compiler used for extensions accepts ``flags`` and links."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 0;}\n")
        cmd = cc + [src, "-o", os.path.join(tmp, "t")] + flags
        return subprocess.run(cmd, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _openmp_flags():
    if os.environ.get("FASTSOFTMAX_NO_OPENMP"):
        return [], []
    if sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    elif sys.platform == "win32":
        candidates = [(["/openmp"], [])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    for cflags, lflags in candidates:
        if sys.platform == "win32" or _compiler_supports(cflags + lflags):
            return cflags, lflags
    warnings.warn(
        "fastsoftmax: the C compiler does not support OpenMP; the Cython "
        "backend is built serially (one thread). Install an OpenMP-capable "
        "compiler (e.g. gcc, or libomp for clang) and reinstall for parallel "
        "kernels.",
        stacklevel=1,
    )
    return [], []


def _extensions():
    omp_c, omp_l = _openmp_flags()
    # Compile-only speed flags. Never -ffast-math / -ffinite-math-only: they
    # break NaN/inf semantics, and at link time they turn on flush-to-zero for
    # the whole process.  Reassociation (for vectorised reductions) and no errno
    # are what the kernels need.
    if sys.platform == "win32":
        cflags = ["/O2"]
    else:
        cflags = ["-O3", "-fno-math-errno", "-fno-trapping-math",
                  "-fno-semantic-interposition", "-Wno-unused-function"]
        if os.environ.get("FASTSOFTMAX_NATIVE"):
            cflags.append("-march=native")
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    if omp_c:
        macros.append(("FSM_HAVE_OPENMP", "1"))
    exts = []
    for pyx in sorted(glob.glob(os.path.join(CY_DIR, "*.pyx"))):
        name = os.path.splitext(pyx)[0].replace(os.sep, ".")
        exts.append(Extension(
            name, [pyx],
            include_dirs=[np.get_include(), CY_DIR],
            # the C kernels live in headers: rebuild when one changes
            depends=sorted(glob.glob(os.path.join(CY_DIR, "*.h"))),
            define_macros=macros,
            extra_compile_args=cflags + omp_c,
            extra_link_args=omp_l,
        ))
    return exts


def _cythonize(exts):
    from Cython.Build import cythonize
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "nonecheck": False,
        },
    )


setup(ext_modules=_cythonize(_extensions()))
