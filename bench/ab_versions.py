"""Two versions of fastsoftmax in one process, timed in turn (A/B).

``python bench/ab_versions.py OTHER BACKEND THREADS N K DTYPE ROUNDS [AXIS]``

OTHER is the ``fastsoftmax`` package directory of another checkout (e.g. a
``git worktree add /tmp/base REV``: ``/tmp/base/fastsoftmax``; for the
Cython backend it needs its built extensions).  It is imported under the
name ``fastsoftmax_b`` (through a symlink in a temporary directory; its
backends are redirected to its own kernels), this checkout's as
``fastsoftmax`` (Numba caches each by its source path: they do not clash).
Prints whether both give the same bits, then the medians of the
rounds' times over ``np.copyto``'s, for softmax and log_softmax of
``standard_normal((N, K)) * 3``; ``INPLACE=1``: in place (``out=x``, each
version on its own copy of the array, timed on what earlier calls left).  Both versions run in the same process,
alternating in each round, so that a shared host's noise falls on both.
"""
import atexit
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def main(argv):
    other = os.path.abspath(argv[0])
    backend, threads, n, k, dt, rounds = argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5], int(argv[6])
    axis = int(argv[7]) if len(argv) > 7 else -1
    tmp = tempfile.mkdtemp()
    os.symlink(other, os.path.join(tmp, "fastsoftmax_b"))
    atexit.register(shutil.rmtree, tmp, True)   # the link only, not what it points to
    sys.path.insert(0, tmp)
    import fastsoftmax as A
    import fastsoftmax_b as B
    import fastsoftmax_b._backends as bb
    bb._MODULES = {key: mod.replace("fastsoftmax.", "fastsoftmax_b.", 1) for key, mod in bb._MODULES.items()}
    for m in (A, B):
        m.set_num_threads(threads)
    x = (np.random.default_rng(0).standard_normal((n, k)) * 3).astype(dt)
    oa, ob, cp = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    inplace = bool(os.environ.get("INPLACE"))
    same = []
    for f in ("softmax", "log_softmax"):
        if inplace:
            oa[...] = x
            ob[...] = x
        getattr(A, f)(oa if inplace else x, axis=axis, out=oa, backend=backend)
        getattr(B, f)(ob if inplace else x, axis=axis, out=ob, backend=backend)
        same.append(bool(np.array_equal(oa, ob, equal_nan=True)))
    times = {key: [] for key in ("copy", "A sm", "B sm", "A log", "B log")}
    for i in range(rounds):
        t0 = time.perf_counter()
        np.copyto(cp, x)
        times["copy"].append(time.perf_counter() - t0)
        for lab, m, o in (("A", A, oa), ("B", B, ob)) if i % 2 else (("B", B, ob), ("A", A, oa)):
            for f, key in (("softmax", " sm"), ("log_softmax", " log")):
                t0 = time.perf_counter()
                getattr(m, f)(o if inplace else x, axis=axis, out=o, backend=backend)
                times[lab + key].append(time.perf_counter() - t0)
    c = np.median(times["copy"])
    print(f"{backend} T{threads} ({n},{k}) axis {axis} {dt}{' in place' if inplace else ''}: same bits (softmax, log) {same}; "
          f"copy {c * 1e3:.3f} ms; A = this checkout, B = {other}; time / copy: "
          + "  ".join(f"{key} {np.median(v) / c:.3f}" for key, v in times.items() if key != "copy"))


if __name__ == "__main__":
    if len(sys.argv) < 8:
        sys.exit(__doc__)
    main(sys.argv[1:])
