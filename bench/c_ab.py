"""The Cython backend's C kernels alone, from one or more checkouts, timed in turn (A/B).

``python bench/c_ab.py [--cols] [--isa L] DTYPE THREADS N K ROUNDS DIR [DIR ...]``

Each DIR is a checkout (or its ``fastsoftmax/kernels/cython_backend``
directory): its ``fsm_kernels.h`` is compiled with a small C shim into a
shared library, with the flags of ``setup.py`` (``-O3 -fno-math-errno
-fno-trapping-math``, OpenMP; no ``-march``: the kernels pick their
instruction set at run time), and called through ``ctypes``: no Python
layer, no Cython wrapper.  Softmax and log_softmax of ``standard_normal((N,
K)) * 3`` over the rows (``--cols``: over axis 0, the column kernel) run
in every round after a ``np.copyto`` of the same array, each version in
turn (the order reversed every other round), so that a shared host's
noise falls on all of them.  Prints whether
every version gives the first one's bits, then the medians of the rounds'
times over the copy's.  ``--isa L`` forces an instruction-set level
(``fsm_set_isa``: 0 baseline, 1 AVX2, 2 AVX-512) where the host has it.

Needs ``gcc`` (or ``$CC``) with OpenMP.  A version's experimental switches
can be compiled in through ``CFLAGS`` (e.g. ``CFLAGS=-DMY_SWITCH=1``),
given once for every version.  Used for the twenty-fifth session's column
prefetch (bench/results/HISTORY.md, "An AVX-512 AMD machine (Zen 5)").
"""
import ctypes
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

_SHIM = r"""
#include "fsm_kernels.h"
int h_init(void) { fsm_init(); return fsm_isa_level; }
int h_isa(int level) { return fsm_set_isa(level); }
int h_rows(int f64, const char *x, long xs, char *out, long os, long n, long k, int is_log, int nth)
{
    return f64 ? fsm_softmax_rows_f64(x, xs, out, os, n, k, is_log, nth)
               : fsm_softmax_rows_f32(x, xs, out, os, n, k, is_log, nth);
}
int h_cols(int f64, const char *x, long xs0, long xs1, char *out, long os0, long os1,
           long outer, long k, long inner, int is_log, int nth)
{
    return f64 ? fsm_softmax_cols_f64(x, xs0, xs1, out, os0, os1, outer, k, inner, is_log, nth)
               : fsm_softmax_cols_f32(x, xs0, xs1, out, os0, os1, outer, k, inner, is_log, nth);
}
"""


def _kernel_dir(path):
    for d in (path, os.path.join(path, "fastsoftmax", "kernels", "cython_backend")):
        if os.path.isfile(os.path.join(d, "fsm_kernels.h")):
            return os.path.abspath(d)
    raise SystemExit(f"no fsm_kernels.h in {path} or its fastsoftmax/kernels/cython_backend")


def build(path, tmp, i):
    """Compile ``path``'s kernels with the shim; returns the loaded library."""
    src = os.path.join(tmp, "shim.c")
    with open(src, "w") as f:
        f.write(_SHIM)
    lib = os.path.join(tmp, f"v{i}.so")
    cc = shlex.split(os.environ.get("CC", "gcc"))
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fno-semantic-interposition",
             "-Wno-unused-function", "-fopenmp", "-fPIC", "-shared", "-DFSM_HAVE_OPENMP=1"]
    flags += shlex.split(os.environ.get("CFLAGS", ""))
    subprocess.run(cc + flags + ["-I", _kernel_dir(path), src, "-o", lib, "-lm"], check=True)
    h = ctypes.CDLL(lib)
    h.h_init()
    long_, int_, ptr = ctypes.c_long, ctypes.c_int, ctypes.c_void_p
    h.h_rows.argtypes = [int_, ptr, long_, ptr, long_, long_, long_, int_, int_]
    h.h_cols.argtypes = [int_, ptr, long_, long_, ptr, long_, long_, long_, long_, long_, int_, int_]
    return h


def main(argv):
    cols = "--cols" in argv
    argv = [a for a in argv if a != "--cols"]
    isa = None
    if "--isa" in argv:
        i = argv.index("--isa")
        isa = int(argv[i + 1])
        del argv[i:i + 2]
    if len(argv) < 6:
        raise SystemExit(__doc__)
    dt, threads, n, k, rounds = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4])
    dirs = argv[5:]
    tmp = tempfile.mkdtemp()
    libs = [build(d, tmp, i) for i, d in enumerate(dirs)]
    for h in libs:
        if isa is not None:
            h.h_isa(isa)
    x = (np.random.default_rng(0).standard_normal((n, k)) * 3).astype(dt)
    out, cp = np.empty_like(x), np.empty_like(x)
    f64, item = int(x.itemsize == 8), x.itemsize

    def call(h, log):
        if cols:
            # one outer slice; the axis of length n, stride k items; k columns
            rc = h.h_cols(f64, x.ctypes.data, n * k * item, k * item, out.ctypes.data, n * k * item,
                          k * item, 1, n, k, log, threads)
        else:
            rc = h.h_rows(f64, x.ctypes.data, k * item, out.ctypes.data, k * item, n, k, log, threads)
        if rc:
            raise SystemExit(f"the kernel returned {rc}")

    same = []
    for log in (0, 1):
        ref = None
        for h in libs:
            out[...] = np.nan
            call(h, log)
            if ref is None:
                ref = out.copy()
            else:
                same.append(bool(np.array_equal(ref, out, equal_nan=True)))
    times = {(i, log): [] for i in range(len(libs)) for log in (0, 1)}
    tc = []
    order = list(enumerate(libs))
    for r in range(rounds):
        t0 = time.perf_counter()
        np.copyto(cp, x)
        tc.append(time.perf_counter() - t0)
        for log in (0, 1):
            for i, h in order if r % 2 else order[::-1]:   # each version first in turn
                t0 = time.perf_counter()
                call(h, log)
                times[i, log].append(time.perf_counter() - t0)
    c = np.median(tc)
    axis = 0 if cols else -1
    print(f"C kernels, {threads} thread(s), ({n}, {k}) axis {axis} {dt}: same bits as the first "
          f"version: {all(same)}; copy {c * 1e3:.3f} ms; time / copy, softmax / log_softmax:")
    for i, d in enumerate(dirs):
        print(f"  {d}: {np.median(times[i, 0]) / c:.3f} / {np.median(times[i, 1]) / c:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
