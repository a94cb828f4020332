"""The Cython softmax rows pipeline on and off, interleaved in one process.

``python bench/pipe_ab.py N K DTYPE ROUNDS [THREADS]``: times ``np.copyto``
and Cython softmax of the same (N, K) array with the pipeline over rows
(``rows_sm_piped``, the default) and without it (the ``sm_pipe_bytes`` knob
at 0), in turn, ROUNDS times, and prints the medians' ratios to the copy
(and the minima's).  One process, so that both variants share the machine's
noise.
"""
import sys
import time

import numpy as np

import fastsoftmax as fs
from fastsoftmax.kernels.cython_backend import _kernels as CK

n, k, dt, rounds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
fs.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
x = (np.random.default_rng(0).standard_normal((n, k)) * 3).astype(dt)
out = np.empty_like(x)
on = CK._get_config()["sm_pipe_bytes"]
times = {"copy": [], "on": [], "off": []}
try:
    for _ in range(rounds):
        t0 = time.perf_counter()
        np.copyto(out, x)
        times["copy"].append(time.perf_counter() - t0)
        for key, value in (("on", on), ("off", 0)):
            CK._set_config(sm_pipe_bytes=value)
            t0 = time.perf_counter()
            fs.softmax(x, axis=-1, out=out, backend="cython")
            times[key].append(time.perf_counter() - t0)
finally:
    CK._set_config(sm_pipe_bytes=on)
c = np.median(times["copy"])
print(f"cython softmax ({n},{k}) {dt}, {fs.get_num_threads()} threads: copy {c * 1e3:.2f} ms, "
      f"pipelined {np.median(times['on']) / c:.2f}, row by row {np.median(times['off']) / c:.2f} "
      f"(minima {min(times['on']) / min(times['copy']):.2f} / {min(times['off']) / min(times['copy']):.2f})")
