"""Thread scaling against PyTorch CPU and a copy (issue 3's many-core table).

    python bench/scaling.py [--threads 1,2,4,8,16] [--rounds 9]
        [--impls copy,torch-copy,torch,numba,cython]
        [--cases softmax:float32:4096x32000:-1,...] [--json FILE] [--warm]

For each case (``OP:DTYPE:NxK:AXIS``) and each thread count, in one process,
times in interleaved rounds (the starting implementation rotated each round,
a short sleep after each sample so no thread pool's spinning threads overlap
the next call):

``copy``        ``np.copyto(out, x)`` (one thread: NumPy's copy is serial)
``torch-copy``  ``o.copy_(t)`` on ``torch.from_numpy`` views (torch's threads:
                the memory floor at that thread count)
``torch``       ``torch.softmax(t, dim, out=o)`` (or log_softmax)
``numba``,      ``fastsoftmax.softmax(x, axis=axis, out=out, backend=NAME)``
``cython``

Threads are set with ``fastsoftmax.set_num_threads`` and
``torch.set_num_threads``.  Each implementation's first call (Numba's compile
or cache load) is timed apart and never inside a sample, and its result is
checked against a float64 NumPy reference on a few slices (again at every
thread count).  Prints one
markdown table per case (median milliseconds per call, the ratio to the
copies, torch's time over ours) and, with ``--json``, writes every sample.

``--warm``: only make each compiled backend's first call on every case at
every thread count (to fill Numba's cache ahead of a timed run) and exit.
"""
import argparse
import gc
import json
import math
import sys
import time

import numpy as np

import fastsoftmax
from fastsoftmax import bench as fb

DEFAULT_CASES = ",".join([
    "softmax:float32:4096x32000:-1", "log_softmax:float32:4096x32000:-1",
    "softmax:float64:4096x32000:-1", "softmax:float32:256x50257:-1",
    "softmax:float32:1x10000000:-1", "softmax:float32:1024x1000:-1",
    "softmax:float32:100000x16:-1",
])


def parse_case(text):
    op, dtype, shape, axis = text.split(":")
    if op not in ("softmax", "log_softmax"):
        raise SystemExit(f"unknown op {op!r} in case {text!r}")
    return op, np.dtype(dtype).name, tuple(int(d) for d in shape.split("x")), int(axis)


def make_impls(names, op, x, axis, out, torch):
    """``{name: fn}`` of the asked implementations: ``python -m fastsoftmax
    bench``'s (``fastsoftmax.bench.softmax_impls``) and torch's ``copy_``."""
    backends = [n for n in names if n not in ("copy", "torch", "torch-copy")]
    table = {i.name: i.fn for i in fb.softmax_impls(x, axis, op == "log_softmax", backends, torch, out=out)}
    if torch is not None:
        tx, to = torch.from_numpy(x), torch.from_numpy(out)
        table["torch-copy"] = lambda: to.copy_(tx)
    return {n: table[n] for n in names if n in table}


def set_threads(t, torch):
    fastsoftmax.set_num_threads(t)
    if torch is not None:
        torch.set_num_threads(t)


def time_case(case, threads, names, rounds, torch, gap, log):
    op, dtype, shape, axis = case
    x = fb.make_logits(shape, dtype)
    out = np.empty_like(x)
    impls = make_impls(names, op, x, axis, out, torch)
    check = fb._softmax_check(x, axis, op == "log_softmax")
    first, errors = {}, {}
    set_threads(threads[0], torch)
    for name, fn in list(impls.items()):
        out.fill(np.nan)
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # e.g. a backend that is not built here
            log(f"  {name}: skipped ({type(exc).__name__}: {exc})")
            del impls[name]
            continue
        first[name] = time.perf_counter() - t0
        if name not in ("copy", "torch-copy"):
            errors[name] = check(out)
    samples = {t: {n: [] for n in impls} for t in threads}
    calls = {}
    gc.disable()
    try:
        for t in threads:
            set_threads(t, torch)
            for name, fn in impls.items():   # warm the pools, check; size a sample (>= 2 ms)
                if name in errors:
                    out.fill(np.nan)
                    fn()
                    errors[name] = float(np.max([errors[name], check(out)]))  # NaN propagates
                else:
                    fn()
                t0 = time.perf_counter()
                fn()
                calls[(t, name)] = max(1, math.ceil(2e-3 / max(time.perf_counter() - t0, 1e-9)))
            order = list(impls)
            for r in range(rounds):
                for name in order[r % len(order):] + order[:r % len(order)]:
                    fn, n = impls[name], calls[(t, name)]
                    t0 = time.perf_counter()
                    for _ in range(n):
                        fn()
                    samples[t][name].append((time.perf_counter() - t0) / n)
                    time.sleep(gap)
    finally:
        gc.enable()
    return {"op": op, "dtype": dtype, "shape": list(shape), "axis": axis,
            "first_call_s": first, "max_error": errors,
            "samples_s": {str(t): s for t, s in samples.items()}}


def table(res):
    op, dtype, shape, axis = res["op"], res["dtype"], tuple(res["shape"]), res["axis"]
    med = {int(t): {n: float(np.median(v)) for n, v in s.items()} for t, s in res["samples_s"].items()}
    ours = [n for n in ("numba", "cython") if n in next(iter(med.values()))]
    lines = [f"\n{op} {dtype} {shape} axis={axis}: median ms per call; x copy = / np.copyto,"
             " x tcopy = / torch's copy_ at that thread count, torch/ = torch's time over ours",
             "| threads | copy | torch copy_ | torch | " + " | ".join(ours) + " | "
             + " | ".join(f"{n} x copy | {n} x tcopy | torch/{n}" for n in ours) + " |",
             "|" + "---|" * (4 + 4 * len(ours))]
    for t, m in sorted(med.items()):
        def ms(n):
            return f"{m[n] * 1e3:.3g}" if n in m else "-"

        def ratio(a, b):
            return f"{m[a] / m[b]:.2f}" if a in m and b in m else "-"
        cells = [str(t), ms("copy"), ms("torch-copy"), ms("torch")] + [ms(n) for n in ours]
        for n in ours:
            cells += [ratio(n, "copy"), ratio(n, "torch-copy"), ratio("torch", n)]
        lines.append("| " + " | ".join(cells) + " |")
    t1 = min(med)
    for n in ["torch"] + ours:
        if n in med[t1]:
            lines.append(f"speed-up over {t1} thread(s), {n}: " + ", ".join(
                f"{t}T {med[t1][n] / m[n]:.2f}x" for t, m in sorted(med.items()) if n in m))
    lines.append("first calls (s): " + ", ".join(f"{n} {s:.3f}" for n, s in res["first_call_s"].items())
                 + "; max error vs float64 NumPy (all thread counts): " + ", ".join(f"{n} {e:.1e}" for n, e in res["max_error"].items()))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2,4,8,16")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--impls", default="copy,torch-copy,torch,numba,cython")
    p.add_argument("--cases", default=DEFAULT_CASES)
    p.add_argument("--gap", type=float, default=0.005, help="seconds of sleep after each sample")
    p.add_argument("--json", help="write the machine record and every sample here")
    p.add_argument("--warm", action="store_true", help="only make the compiled backends' first calls")
    p.add_argument("--no-torch", action="store_true")
    a = p.parse_args(argv)
    cases = [parse_case(c) for c in a.cases.split(",") if c]
    names = [n for n in a.impls.split(",") if n]

    def log(msg):
        print(msg, flush=True)
    threads = [int(t) for t in a.threads.split(",")]
    if a.warm:   # at every thread count: one thread takes serial kernels of their own
        for op, dtype, shape, axis in cases:
            x = fb.make_logits(shape, dtype)
            for b in (n for n in names if n in ("numba", "cython")):
                for t in threads:
                    fastsoftmax.set_num_threads(t)
                    t0 = time.perf_counter()
                    getattr(fastsoftmax, op)(x, axis=axis, out=np.empty_like(x), backend=b)
                    log(f"warm {b} {op} {dtype} {shape} axis={axis} {t} threads: {time.perf_counter() - t0:.1f} s")
        return
    torch = None if a.no_torch else fb._try_import_torch()
    record = {"machine": fb.machine_info(threads=threads, torch=torch), "cases": []}
    if torch is not None:
        record["machine"]["torch_parallel_info"] = torch.__config__.parallel_info()
    try:
        import numba
        record["machine"]["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    except ImportError:
        pass
    log(json.dumps(record["machine"], indent=1))
    for case in cases:
        res = time_case(case, threads, names, a.rounds, torch, a.gap, log)
        record["cases"].append(res)
        if "numba" in res["first_call_s"] and "numba_threading_layer" not in record["machine"]:
            import numba
            record["machine"]["numba_threading_layer"] = numba.threading_layer()
            log(f"numba threading layer: {numba.threading_layer()}")
        log(table(res))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(record, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
