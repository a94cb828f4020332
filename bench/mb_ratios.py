"""Ratios to a copy, one case per process (the per-machine tables of bench/results/HISTORY.md).

``python bench/mb_ratios.py BACKEND THREADS N K DTYPE ROUNDS [AXIS]``: times
``np.copyto``, softmax and log_softmax of the same (N, K) array in turn,
ROUNDS times, and prints the medians' ratios to the copy (and the minima's).
The first calls (Numba's compile or cache load) are made before timing.
``NT_OFF=1`` turns streaming stores off in both compiled backends.
"""
import sys, time, numpy as np, fastsoftmax as fs
b, t, n, k, dt, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
axis = int(sys.argv[7]) if len(sys.argv) > 7 else -1
fs.set_num_threads(t)
import os
if os.environ.get("NT_OFF"):
    from fastsoftmax.kernels.numba_backend import softmax as S
    S.NT_MIN_BYTES = 1 << 62
    from fastsoftmax.kernels.cython_backend import _kernels as CK
    CK._set_config(nt_min_bytes=1 << 62)
rng = np.random.default_rng(0)
x = (rng.standard_normal((n, k)) * 3).astype(dt)
out = np.empty_like(x)
fs.softmax(x, axis=axis, out=out, backend=b); fs.log_softmax(x, axis=axis, out=out, backend=b)
tc, ts, tl = [], [], []
for _ in range(r):
    t0 = time.perf_counter(); np.copyto(out, x); t1 = time.perf_counter(); tc.append(t1 - t0)
    t0 = time.perf_counter(); fs.softmax(x, axis=axis, out=out, backend=b); t1 = time.perf_counter(); ts.append(t1 - t0)
    t0 = time.perf_counter(); fs.log_softmax(x, axis=axis, out=out, backend=b); t1 = time.perf_counter(); tl.append(t1 - t0)
c, s, l = np.median(tc), np.median(ts), np.median(tl)
print(("NTOFF " if os.environ.get("NT_OFF") else "NTon  ") + f"{b} T{t} ({n},{k}) ax{axis} {dt}: copy {c*1e3:.3f} ms  sm {s/c:.2f}x (min {min(ts)/min(tc):.2f})  log {l/c:.2f}x (min {min(tl)/min(tc):.2f})  log/sm {l/s:.2f}")
