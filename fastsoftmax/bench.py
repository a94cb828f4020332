"""``python -m fastsoftmax bench``: time fastsoftmax against SciPy, NumPy, PyTorch and a copy.

Imported only by :mod:`fastsoftmax.__main__` (and by the pytest-benchmark
suite in ``bench/``), never by ``import fastsoftmax``.

What is timed
-------------
Each benchmark *case* is an operation on one shape and dtype.  A case has a
table of *implementations*, each one line of user code (``Impl.call``, shown
in the output's legend and stored in the JSON):

================  ==========================================================
impl              the call that is timed
================  ==========================================================
``copy``          ``np.copyto(out, x)``: the memory floor (read x, write out)
``scipy``         ``scipy.special.softmax(x, axis=axis)`` (log_softmax alike)
``numpy``         NumPy written the usual way: ``e = np.exp(x - x.max(axis,
                  keepdims=True)); e /= e.sum(axis, keepdims=True)``
``torch``         ``torch.softmax(t, dim, out=o)`` on a zero-copy
                  ``torch.from_numpy`` view (only when torch imports)
``numba``,        ``fastsoftmax.softmax(x, axis=axis, out=out, backend=NAME)``:
``cython``        each available compiled backend, preallocated output
``numpy-backend`` the same with ``backend="numpy"`` (the NumPy reference
                  backend; renamed so it is not confused with ``numpy``)
``auto``          ``fastsoftmax.softmax(x, axis=axis, out=out)``: the
                  default backend ("auto"), same preallocated output
================  ==========================================================

Cross-entropy, samplers and sampled softmax have their own tables (see
:func:`cross_entropy_impls`, :func:`sampler_impls`,
:func:`sampled_softmax_impls`); an implementation whose first call raises
(e.g. ``NotImplementedError`` while a feature is being written) is skipped
with its reason.

Timing method
-------------
For each case: every implementation is called once and that first call is
timed on its own (``first_call_seconds``: Numba compiles there) and its
result checked against a float64 SciPy/NumPy reference on a few slices
(``max_error``).  A second call calibrates how many calls make one sample
(at least a few milliseconds, so tiny calls are not lost in timer noise).
Then rounds of samples follow, each round calling every implementation in
turn, with the starting implementation rotated each round, so machine noise
hits all of them alike; the garbage collector is off while timing.  Where
one call is longer than a sample needs (the large cases), an implementation
much faster than the slowest one takes up to four samples per round (each
its own call), so that its median rests on more samples than the few rounds
the slow baselines allow; a round is then still one pass over every
implementation, and the copy gets its extra samples like ours.  We report
the median and the minimum per-call time over the rounds, the ratio to the
copy (``t / t_copy``) and the speed-up against SciPy (``t_scipy / t``).
"""
import contextlib
import datetime
import gc
import importlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import fastsoftmax
from . import _backends
from ._cpuinfo import cpu_info

__all__ = [
    "SOFTMAX_SHAPES", "CE_SHAPES", "SAMPLER_SIZES", "SAMPLED_SIZES", "make_logits",
    "Case", "Impl", "Settings", "softmax_cases", "softmax_impls",
    "cross_entropy_impls", "sampler_impls", "sampled_softmax_impls",
    "machine_info", "run", "OPS", "backend_impl_name",
]

#: the operations ``--ops`` accepts, in the order they run
OPS = ("softmax", "log_softmax", "cross_entropy_grad", "sampler", "sampled_softmax")

SOFTMAX_SHAPES = {
    # the shapes of the roofline issue (issue 3)
    "full": [((4096, 32000), -1), ((256, 50257), -1), ((1024, 1000), -1),
             ((100000, 16), -1), ((1, 10_000_000), -1), ((32000, 4096), 0),
             ((64, 10), -1)],
    "quick": [((128, 32000), -1), ((32, 50257), -1), ((1024, 1000), -1),
              ((20000, 16), -1), ((1, 1_000_000), -1), ((2000, 1024), 0),
              ((64, 10), -1)],
    "tiny": [((8, 100), -1), ((40, 3), 0)],
}
CE_SHAPES = {
    "full": [(4096, 32000), (256, 50257), (8192, 1000)],
    "quick": [(128, 32000), (32, 50257), (1024, 1000)],
    "tiny": [(8, 50)],
}
# (num_classes, draws)
SAMPLER_SIZES = {"full": (1_000_000, 10_000_000), "quick": (1_000_000, 1_000_000),
                  "tiny": (1000, 2000)}
# (num_classes, dim, batch, num_sampled): issue 5's shape for "full"
SAMPLED_SIZES = {"full": (200_000, 128, 1024, 1024), "quick": (20_000, 128, 256, 512),
                  "tiny": (500, 8, 4, 16)}


@dataclass
class Settings:
    """How hard to time: rounds, time budget per case, minimum sample length."""
    size: str = "full"            # "full", "quick" or "tiny" (test-only)
    min_rounds: int = 5
    max_rounds: int = 25
    case_budget: float = 3.0      # seconds of timed rounds per case, roughly
    min_sample: float = 0.005     # seconds; a sample repeats a call to last this long
    rounds: int = None            # fixed number of rounds (--repeats), else budget

    @classmethod
    def for_size(cls, size, repeats=None):
        if size == "full":
            s = cls("full", 5, 25, 3.0, 0.005)
        elif size == "quick":
            s = cls("quick", 3, 5, 0.15, 0.002)
        else:
            s = cls("tiny", 2, 2, 0.0, 0.0002)
        s.rounds = repeats
        return s


@dataclass
class Impl:
    """One implementation of a case: ``fn()`` runs it once and returns its result."""
    name: str
    call: str                 # the line of user code it stands for
    fn: object
    backend: str = None       # fastsoftmax backend name, or None for baselines
    checked: bool = True      # False: its result is not the op's (the copy floor)


@dataclass
class Case:
    """One operation on one shape and dtype, with its implementations."""
    op: str
    shape: tuple
    dtype: str
    axis: object = None
    params: dict = field(default_factory=dict)
    baseline: str = "scipy"   # the impl speed-ups are taken against
    impls: list = field(default_factory=list)
    check: object = None      # result -> max error (float) or None
    extra: object = None      # (impl, seconds) -> dict of extra fields
    notes: list = field(default_factory=list)

    @property
    def label(self):
        ax = "" if self.axis is None else f" axis={self.axis}"
        return f"{self.op} {self.dtype} {self.shape}{ax}"


def backend_impl_name(backend):
    """The impl name of a fastsoftmax backend ("numpy" -> "numpy-backend")."""
    return "numpy-backend" if backend == "numpy" else backend


def _available_backends():
    """Backends that load here, in registry order, and the import time of each."""
    import_seconds, reasons = {}, {}
    for name in _backends._MODULES:
        t0 = time.perf_counter()
        try:
            _backends._load(name)
        except RuntimeError as exc:
            reasons[name] = str(exc)
            continue
        import_seconds[name] = time.perf_counter() - t0
    return import_seconds, reasons


def _try_import_torch():
    try:
        import torch
    except Exception:  # ImportError, or a broken install
        return None
    return torch


# ---------------------------------------------------------------- softmax

def _numpy_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _numpy_log_softmax(x, axis):
    s = x - x.max(axis=axis, keepdims=True)
    s -= np.log(np.exp(s).sum(axis=axis, keepdims=True))
    return s


def _as_numpy(res):
    if isinstance(res, np.ndarray):
        return res
    if hasattr(res, "detach"):  # torch tensor
        return res.detach().numpy()
    return np.asarray(res)


def _softmax_check(x, axis, log):
    """A function giving the max error of a result on a few slices of ``x``."""
    ax = axis % x.ndim
    other = 1 - ax
    n_other = x.shape[other]
    picks = sorted(set(list(range(min(n_other, 16))) + list(range(max(0, n_other - 16), n_other))))
    idx = [slice(None)] * 2
    idx[other] = np.array(picks)
    idx = tuple(idx)
    sub = x[idx].astype(np.float64)
    ref = _numpy_log_softmax(sub, ax) if log else _numpy_softmax(sub, ax)
    scale = np.maximum(np.abs(ref), 1.0) if log else 1.0

    def check(res):
        got = _as_numpy(res)[idx].astype(np.float64)
        with np.errstate(invalid="ignore"):
            return float(np.max(np.abs(got - ref) / scale))
    return check


def softmax_cases(size="full", dtypes=("float32", "float64"), ops=("softmax", "log_softmax")):
    """The softmax / log_softmax cases: ``[(op, shape, dtype, axis)]`` in run order."""
    out = []
    for dtype in dtypes:
        for shape, axis in SOFTMAX_SHAPES[size]:
            for op in ops:
                if op in ("softmax", "log_softmax"):
                    out.append((op, shape, dtype, axis))
    return out


def make_logits(shape, dtype, seed=0):
    """Standard normal logits times 3, generated directly in ``dtype``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.dtype(dtype).type)
    x *= 3
    return x


def softmax_impls(x, axis, log, backends, torch=None, out=None):
    """The implementations of softmax (``log=False``) or log_softmax over ``x``.

    Returns a list of :class:`Impl`; ``out`` (allocated when None) is shared
    by the ones that take a preallocated output.
    """
    name = "log_softmax" if log else "softmax"
    out = np.empty_like(x) if out is None else out
    fs = getattr(fastsoftmax, name)
    impls = [Impl("copy", "np.copyto(out, x)", lambda: np.copyto(out, x) or out, checked=False)]
    try:
        import scipy.special as sps
    except ImportError:
        sps = None
    if sps is not None:
        f = getattr(sps, name)
        impls.append(Impl("scipy", f"scipy.special.{name}(x, axis=axis)",
                          lambda: f(x, axis=axis)))
    by_hand = _numpy_log_softmax if log else _numpy_softmax
    impls.append(Impl("numpy", ("s = x - x.max(axis, keepdims=True); s -= np.log(np.exp(s).sum(axis, keepdims=True))"
                                if log else
                                "e = np.exp(x - x.max(axis, keepdims=True)); e /= e.sum(axis, keepdims=True)"),
                      lambda: by_hand(x, axis)))
    if torch is not None:
        tx, to = torch.from_numpy(x), torch.from_numpy(out)
        tf = getattr(torch, name)
        dim = axis % x.ndim
        impls.append(Impl("torch", f"torch.{name}(t, dim, out=o)  (t, o = torch.from_numpy(x), ...(out))",
                          lambda: tf(tx, dim, out=to)))
    for b in backends:
        impls.append(Impl(backend_impl_name(b),
                          f"fastsoftmax.{name}(x, axis=axis, out=out, backend={b!r})",
                          (lambda b=b: fs(x, axis=axis, out=out, backend=b)), backend=b))
    impls.append(Impl("auto", f"fastsoftmax.{name}(x, axis=axis, out=out)  (default backend)",
                      lambda: fs(x, axis=axis, out=out), backend="auto"))
    return impls


# ---------------------------------------------------------- cross-entropy

def _numpy_cross_entropy_grad(z, y):
    n = z.shape[0]
    rows = np.arange(n)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - z[rows, y]))
    e /= s
    e[rows, y] -= 1
    e /= n
    return loss, e


def _ce_check(z, y):
    """Max error of (loss, grad): relative on the loss, on the first 32 gradient rows."""
    n = z.shape[0]
    total = 0.0
    for start in range(0, n, 256):
        blk = z[start:start + 256].astype(np.float64)
        m = blk.max(axis=1)
        lse = np.log(np.exp(blk - m[:, None]).sum(axis=1)) + m
        total += float(np.sum(lse - blk[np.arange(len(blk)), y[start:start + 256]]))
    ref_loss = total / n
    k = min(n, 32)
    sub = z[:k].astype(np.float64)
    ref_grad = _numpy_softmax(sub, 1)
    ref_grad[np.arange(k), y[:k]] -= 1
    ref_grad /= n
    gscale = float(np.max(np.abs(ref_grad)))

    def check(res):
        loss, grad = res
        grad = _as_numpy(grad)[:k].astype(np.float64)
        return max(abs(float(loss) - ref_loss) / max(abs(ref_loss), 1e-300),
                   float(np.max(np.abs(grad - ref_grad))) / gscale)
    return check


def cross_entropy_impls(z, y, backends, torch=None, grad=None):
    """Implementations of the mean cross-entropy loss and its gradient over rows of ``z``."""
    grad = np.empty_like(z) if grad is None else grad
    impls = [Impl("copy", "np.copyto(grad, logits)", lambda: np.copyto(grad, z) or (0.0, grad),
                  checked=False),
             Impl("numpy", "softmax by hand (x - max, exp, / sum), loss = mean(lse - z[y]), "
                           "grad = (p - onehot) / n", lambda: _numpy_cross_entropy_grad(z, y))]
    if torch is not None:
        import torch.nn.functional as F
        tz, ty = torch.from_numpy(z), torch.from_numpy(y)

        def torch_fwd_bwd():
            w = tz.detach().requires_grad_()
            loss = F.cross_entropy(w, ty)
            loss.backward()
            return loss.item(), w.grad
        impls.append(Impl("torch", "w = t.requires_grad_(); F.cross_entropy(w, y).backward(); w.grad",
                          torch_fwd_bwd))
    ceg = fastsoftmax.cross_entropy_grad
    for b in backends:
        impls.append(Impl(backend_impl_name(b),
                          f"fastsoftmax.cross_entropy_grad(logits, target, grad_out=grad, backend={b!r})",
                          (lambda b=b: ceg(z, y, grad_out=grad, backend=b)), backend=b))
    impls.append(Impl("auto", "fastsoftmax.cross_entropy_grad(logits, target, grad_out=grad)"
                              "  (default backend)",
                      lambda: ceg(z, y, grad_out=grad), backend="auto"))
    return impls


# ---------------------------------------------------------------- samplers

def zipf_weights(num_classes):
    """Zipfian class weights ``1 / (k + 1)``."""
    return 1.0 / np.arange(1, num_classes + 1, dtype=np.float64)


def sampler_impls(num_classes, draws, backends, torch=None):
    """Implementations drawing ``draws`` i.i.d. classes from Zipfian weights."""
    w = zipf_weights(num_classes)
    p = w / w.sum()
    rng = np.random.default_rng(0)
    impls = [Impl("numpy", "rng.choice(num_classes, size=draws, p=p)",
                  lambda: rng.choice(num_classes, size=draws, p=p))]
    if torch is not None:
        tp = torch.from_numpy(p)
        impls.append(Impl("torch", "torch.multinomial(p, draws, replacement=True)",
                          lambda: torch.multinomial(tp, draws, replacement=True)))
    if fastsoftmax.AliasSampler is None:
        return impls, ["fastsoftmax.AliasSampler is not implemented yet"]
    notes = []
    for b in backends:
        try:
            with fastsoftmax.use_backend(b):
                t0 = time.perf_counter()
                s = fastsoftmax.AliasSampler(w, seed=0)
                notes.append(f"AliasSampler({num_classes} Zipfian weights) built in "
                             f"{_fmt_time(time.perf_counter() - t0)} ({backend_impl_name(b)})")
        except Exception as exc:
            notes.append(f"{backend_impl_name(b)}: AliasSampler failed: {type(exc).__name__}: {exc}")
            continue

        def draw(s=s, b=b):
            with fastsoftmax.use_backend(b):
                return s.sample(draws)
        impls.append(Impl(backend_impl_name(b),
                          "with use_backend(NAME): AliasSampler(w, seed=0).sample(draws)  (table built once)",
                          draw, backend=b))
    return impls, notes


def _sampler_check(p):
    top = min(len(p), 10)

    def check(ids):
        ids = _as_numpy(ids)
        if ids.min() < 0 or ids.max() >= len(p):
            return float("inf")
        freq = np.bincount(ids[:, None].ravel() if ids.ndim == 0 else ids.ravel(),
                           minlength=top)[:top] / ids.size
        return float(np.max(np.abs(freq - p[:top])))
    return check


# ---------------------------------------------------------- sampled softmax

def sampled_softmax_impls(num_classes, dim, batch, num_sampled, dtype, backends, seed=0):
    """Implementations of the sampled softmax loss with gradients (issue 5's shape)."""
    rng = np.random.default_rng(seed)
    typ = np.dtype(dtype).type
    weights = rng.standard_normal((num_classes, dim), dtype=typ)
    weights *= 0.05
    biases = np.zeros(num_classes, dtype=typ)
    labels = rng.integers(0, num_classes, size=(batch, 1), dtype=np.int64)
    inputs = rng.standard_normal((batch, dim), dtype=typ)
    impls = []
    ssl = fastsoftmax.sampled_softmax_loss
    if ssl is None:
        return impls, ["fastsoftmax.sampled_softmax_loss is not implemented yet"]
    for b in backends:
        def sampled(b=b):
            with fastsoftmax.use_backend(b):
                return ssl(weights, biases, labels, inputs, num_sampled, num_classes,
                           seed=0, return_grad=True)
        impls.append(Impl(backend_impl_name(b),
                          "with use_backend(NAME): sampled_softmax_loss(W, b, labels, inputs, "
                          "num_sampled, num_classes, seed=0, return_grad=True)", sampled, backend=b))

    # the full-softmax comparison runs on the default backend, or on the first
    # backend whose cross_entropy_grad works while some are still being written
    full_backend = None
    probe = np.zeros((2, 3), dtype=typ)
    for name in ["auto", *backends]:
        try:
            fastsoftmax.cross_entropy_grad(probe, np.array([0, 2]), grad_out=probe.copy(),
                                           backend=name)
        except Exception:
            continue
        full_backend = name
        break
    if full_backend is None:
        return impls, ["full softmax baseline skipped: no backend runs cross_entropy_grad yet"]

    def full():
        logits = inputs @ weights.T
        logits += biases
        loss, g = fastsoftmax.cross_entropy_grad(logits, labels[:, 0], reduction="sum",
                                                 grad_out=logits, backend=full_backend)
        return loss, g @ weights, g.T @ inputs, g.sum(axis=0)
    impls.append(Impl("full", "logits = inputs @ W.T + b; cross_entropy_grad(logits, y, "
                      f"reduction='sum', grad_out=logits, backend={full_backend!r}); "
                      "grads of inputs, W, b by matmul", full, backend=full_backend))
    return impls, []


# ------------------------------------------------------------------ timing

def _fmt_time(t):
    if t is None or not math.isfinite(t):
        return "-"
    if t < 1e-6:
        return f"{t * 1e9:.0f} ns"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.2f} s"


class Progress:
    """Progress on stderr: one rewritten line on a terminal, plain lines otherwise."""

    def __init__(self, total, stream=None, enabled=True, weights=None):
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        # expected relative cost of each case, for the time-left estimate
        self.weights = list(weights) if weights is not None else [1.0] * total
        self.t0 = time.perf_counter()

    def _eta(self):
        if not self.done:
            return ""
        el = time.perf_counter() - self.t0
        done_w = sum(self.weights[:self.done]) or 1.0
        left_w = sum(self.weights[self.done:])
        return f", ~{_fmt_duration(el / done_w * left_w)} left"

    def start(self, label):
        if not self.enabled:
            return
        msg = f"[{self.done + 1}/{self.total}] {label}{self._eta()}"
        if self.tty:
            self.stream.write("\r\x1b[K" + msg)
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()

    def step(self, label, what):
        if self.tty:
            self.stream.write(f"\r\x1b[K[{self.done + 1}/{self.total}] {label}: {what}")
            self.stream.flush()

    def finish_case(self):
        self.done += 1

    def close(self):
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def note(self, msg):
        if not self.enabled:
            return
        self.close()
        self.stream.write(msg + "\n")
        self.stream.flush()


def _fmt_duration(s):
    if s < 90:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min"


def time_case(case, settings, progress=None):
    """Time every implementation of ``case``.

    Returns ``(rows, skipped)``: a result dict per timed implementation (see
    the module docstring for the fields) and ``{impl, reason}`` for the ones
    whose first call failed.
    """
    live, skipped = [], []
    for impl in case.impls:
        if progress:
            progress.step(case.label, f"{impl.name} (first call)")
        try:
            t0 = time.perf_counter()
            res = impl.fn()
            first = time.perf_counter() - t0
        except Exception as exc:
            skipped.append({"impl": impl.name,
                            "reason": f"{type(exc).__name__}: {exc}".rstrip(": ")})
            continue
        err = None
        if case.check is not None and impl.checked:
            try:
                err = case.check(res)
            except Exception as exc:  # a wrong-shaped result, say
                err = float("nan")
                case.notes.append(f"{impl.name}: result check failed: {type(exc).__name__}: {exc}")
        del res
        if err is not None and not math.isfinite(err):
            case.notes.append(f"{impl.name}: result check gave max error {err} (wrong result?)")
            err = None
        t0 = time.perf_counter()
        impl.fn()
        once = max(time.perf_counter() - t0, 1e-9)
        number = max(1, math.ceil(settings.min_sample / once))
        if number > 1:  # calibrate again on a batch: single tiny calls are noisy
            t0 = time.perf_counter()
            for _ in range(number):
                impl.fn()
            once = max((time.perf_counter() - t0) / number, 1e-9)
            number = max(1, math.ceil(settings.min_sample / once))
        live.append({"impl": impl, "first": first, "err": err, "number": number,
                     "once": once, "samples": []})
    if not live:
        return [], skipped
    if settings.rounds:
        rounds = settings.rounds
    else:
        round_cost = sum(it["number"] * it["once"] for it in live)
        rounds = min(settings.max_rounds,
                     max(settings.min_rounds, math.ceil(settings.case_budget / round_cost)))
    slowest = max(it["number"] * it["once"] for it in live)
    for it in live:   # extra samples per round for the fast implementations
        it["reps"] = max(1, min(4, int(slowest / (4 * it["number"] * it["once"]))))
    gc_was_enabled = gc.isenabled()
    if settings.size != "tiny":  # a full collection costs ~0.1 s once Numba is loaded
        gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            if progress:
                progress.step(case.label, f"round {r + 1}/{rounds}")
            k = r % len(live)
            for it in live[k:] + live[:k]:
                fn, number = it["impl"].fn, it["number"]
                for _ in range(it["reps"]):
                    t0 = time.perf_counter()
                    for _ in range(number):
                        fn()
                    it["samples"].append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    by_name = {it["impl"].name: float(np.median(it["samples"])) for it in live}
    copy_t, scipy_t = by_name.get("copy"), by_name.get("scipy")
    base_t = by_name.get(case.baseline)
    rows = []
    for it in live:
        impl = it["impl"]
        med = by_name[impl.name]
        row = {
            "op": case.op, "shape": list(case.shape), "dtype": case.dtype, "axis": case.axis,
            "impl": impl.name, "backend": impl.backend, "call": impl.call,
            "seconds": med, "min_seconds": float(np.min(it["samples"])),
            "repeats": len(it["samples"]), "calls_per_repeat": it["number"],
            "ratio_vs_copy": med / copy_t if copy_t else None,
            "speedup_vs_scipy": scipy_t / med if scipy_t else None,
            "baseline": case.baseline,
            "speedup_vs_baseline": base_t / med if base_t else None,
            "first_call_seconds": it["first"],
            "max_error": it["err"],
            "params": dict(case.params),
        }
        if case.extra is not None:
            row.update(case.extra(impl, med))
        rows.append(row)
    return rows, skipped


# ------------------------------------------------------------------ machine

def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


def machine_info(threads=None, torch=None):
    """The ``machine`` record of the JSON output."""
    cpu = cpu_info()
    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _dist_version("numba"),
        "scipy": _dist_version("scipy"),
        "cython": _dist_version("Cython"),
        "fastsoftmax": fastsoftmax.__version__,
    }
    torch_version = torch.__version__ if torch is not None else _dist_version("torch")
    if torch_version:
        versions["torch"] = torch_version
    return {
        "cpu_model": cpu["model"],
        "vector_extensions": cpu["vector_extensions"],
        "cores": cpu["physical_cores"] or cpu["logical_cpus"],
        "logical_cpus": cpu["logical_cpus"],
        "usable_cpus": cpu["usable_cpus"],
        "threads": fastsoftmax.get_num_threads() if threads is None else threads,
        "platform": platform.platform(),
        "versions": versions,
    }


# ------------------------------------------------------------------ output

def _shape_str(shape):
    dims = [f"{d:_}" if d >= 100_000 else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def format_tables(rows, skipped=(), notes=()):
    """Aligned text tables, one per (op, dtype), in the order the rows came."""
    groups = {}
    for r in rows:
        groups.setdefault((r["op"], r["dtype"]), []).append(r)
    for s in skipped:
        groups.setdefault((s["op"], s["dtype"]), [])
    lines = []
    for (op, dtype), grp in groups.items():
        baseline = grp[0]["baseline"] if grp else "scipy"
        draws = any("draws_per_second" in r for r in grp)
        head = ["shape", "axis", "impl", "median", "min", "x copy", f"vs {baseline}",
                "first call", "max err"]
        if draws:
            head.insert(5, "Mdraws/s")
        table = []
        prev = None
        for r in grp:
            key = (tuple(r["shape"]), r["axis"])
            shape, axis = (_shape_str(r["shape"]), "" if r["axis"] is None else str(r["axis"])) \
                if key != prev else ("", "")
            prev = key
            cells = [shape, axis, r["impl"], _fmt_time(r["seconds"]), _fmt_time(r["min_seconds"]),
                     "-" if r["ratio_vs_copy"] is None else f"{r['ratio_vs_copy']:.2f}",
                     "-" if r["speedup_vs_baseline"] is None else f"{r['speedup_vs_baseline']:.2f}x",
                     _fmt_time(r["first_call_seconds"]),
                     "-" if r["max_error"] is None else f"{r['max_error']:.1e}"]
            if draws:
                dps = r.get("draws_per_second")
                cells.insert(5, "-" if dps is None else f"{dps / 1e6:.1f}")
            table.append(cells)
        title = f"{op}  {dtype}"
        lines.append(title)
        lines.append("=" * len(title))
        if table:
            widths = [max(len(h), *(len(c[i]) for c in table)) for i, h in enumerate(head)]
            left = {0, 2}
            fmt_row = lambda cells: "  ".join(  # noqa: E731
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            lines.append(fmt_row(head).rstrip())
            lines.append("  ".join("-" * w for w in widths))
            lines.extend(fmt_row(c).rstrip() for c in table)
        for s in skipped:
            if (s["op"], s["dtype"]) == (op, dtype):
                lines.append(f"skipped {s['impl']} on {_shape_str(s['shape'])}: {s['reason']}")
        lines.append("")
    for n in notes:
        lines.append(f"note: {n}")
    return "\n".join(lines).rstrip() + "\n"


def format_legend(rows):
    seen = {}
    for r in rows:
        seen.setdefault((r["op"], r["impl"]), r["call"])
    lines = ["What each impl times (one call of user code; median over rounds):"]
    for (op, impl), call in seen.items():
        lines.append(f"  {op:<18} {impl:<14} {call}")
    return "\n".join(lines) + "\n"


#: one colour per impl, the same in every panel
_COLORS = {"scipy": "#7f7f7f", "numpy": "#1f77b4", "torch": "#ff7f0e", "numba": "#2ca02c",
           "cython": "#d62728", "numpy-backend": "#9467bd", "auto": "#8c564b", "full": "#17becf"}


def plot_speedups(rows, path):
    """Write a PNG bar chart of the speed-ups against each op's baseline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {}
    for r in rows:
        if r["speedup_vs_baseline"] is not None:
            groups.setdefault((r["op"], r["dtype"]), []).append(r)
    if not groups:
        groups = {("no results", ""): []}
    ncols = 2 if len(groups) > 1 else 1
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 3.6 * nrows), squeeze=False)
    for ax, ((op, dtype), grp) in zip(axes.flat, groups.items()):
        cases = []
        for r in grp:
            key = (tuple(r["shape"]), r["axis"])
            if key not in cases:
                cases.append(key)
        impls = []
        for r in grp:
            if r["impl"] != r["baseline"] and r["impl"] not in impls:
                impls.append(r["impl"])
        width = 0.8 / max(1, len(impls))
        for j, impl in enumerate(impls):
            xs, ys = [], []
            for i, key in enumerate(cases):
                for r in grp:
                    if r["impl"] == impl and (tuple(r["shape"]), r["axis"]) == key:
                        xs.append(i + (j - (len(impls) - 1) / 2) * width)
                        ys.append(r["speedup_vs_baseline"])
            if impl == "copy":
                ax.bar(xs, ys, width, label="copy (memory floor)", color="0.7", hatch="//")
            else:
                ax.bar(xs, ys, width, label=impl, color=_COLORS.get(impl))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([_shape_str(s) + ("" if a in (None, -1) else f"\naxis={a}")
                            for s, a in cases], fontsize=7)
        base = grp[0]["baseline"] if grp else ""
        ax.set_title(f"{op} {dtype}: speed-up vs {base} (higher is better)", fontsize=9)
        ax.legend(fontsize=7, ncol=3)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _need_matplotlib():
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------ runner

_GUESS = {"copy": 1.0, "scipy": 9.0, "numpy": 7.0, "torch": 5.0, "numpy-backend": 7.0, "auto": 2.5}


def _estimate(plan, settings, impl_names):
    """Rough seconds for each case of a plan, from a quick copy-bandwidth probe."""
    a = np.ones(4 << 20, dtype=np.float64)
    b = np.empty_like(a)
    np.copyto(b, a)
    t0 = time.perf_counter()
    for _ in range(5):
        np.copyto(b, a)
    per_byte = (time.perf_counter() - t0) / 5 / a.nbytes
    fixed_rounds = settings.rounds or settings.min_rounds
    out = []
    for op, shape, dtype, axis in plan:
        if op in ("softmax", "log_softmax", "cross_entropy_grad"):
            nbytes = math.prod(shape) * np.dtype(dtype).itemsize
            copy_t = max(nbytes * per_byte, 2e-6)
            factor = sum(_GUESS.get(n, 2.0) for n in impl_names) * (1.6 if op == "cross_entropy_grad" else 1)
            per_round = max(factor * copy_t, settings.min_sample * len(impl_names))
            rounds = settings.rounds or min(settings.max_rounds, max(settings.min_rounds,
                                                                     math.ceil(settings.case_budget / per_round)))
            out.append(per_round * (rounds + 2) + nbytes * per_byte * 20)  # + data generation
        elif op == "sampler":
            draws = shape[1] if len(shape) > 1 else 1
            out.append((fixed_rounds + 2) * draws * 2.5e-7 + 0.5)
        else:  # sampled softmax: the full-softmax comparison dominates
            v, d, bt, s = shape
            out.append((fixed_rounds + 2) * (6 * v * d * bt / 2e10) + 1)
    return out


def _build_plan(ops, dtypes, size):
    plan = []
    for dtype in dtypes:
        for shape, axis in SOFTMAX_SHAPES[size]:
            for op in ("softmax", "log_softmax"):
                if op in ops:
                    plan.append((op, shape, dtype, axis))
        if "cross_entropy_grad" in ops:
            for shape in CE_SHAPES[size]:
                plan.append(("cross_entropy_grad", shape, dtype, -1))
    if "sampler" in ops:
        plan.append(("sampler", SAMPLER_SIZES[size], "int64", None))
    if "sampled_softmax" in ops:
        for dtype in dtypes:
            plan.append(("sampled_softmax", SAMPLED_SIZES[size], dtype, None))
    return plan


@contextlib.contextmanager
def _numba_quiet():
    # Numba warns on first compile in some set-ups (e.g. TBB version); keep the table clean.
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run_benchmarks(ops=OPS, dtypes=("float32", "float64"), size="full", threads=None,
                   impls=None, use_torch=True, repeats=None, progress=True, stream=None,
                   command=None):
    """Run the benchmark and return ``{"machine", "backends", "results", "skipped", "notes"}``.

    ``impls`` restricts to these impl names (None: all).  ``stream`` receives
    the progress messages (stderr by default).
    """
    settings = Settings.for_size(size, repeats)
    stream = sys.stderr if stream is None else stream
    if threads is not None:
        fastsoftmax.set_num_threads(threads)
    threads = fastsoftmax.get_num_threads()
    import_seconds, reasons = _available_backends()
    backends = list(import_seconds)
    torch = None
    if use_torch and (impls is None or "torch" in impls):
        t0 = time.perf_counter()
        torch = _try_import_torch()
        if torch is not None:
            torch.set_num_threads(threads)
            import_seconds["torch"] = time.perf_counter() - t0
    if impls is not None:
        wanted = set(impls)
        backends = [b for b in backends if backend_impl_name(b) in wanted]

    def keep(impl_list):
        return [i for i in impl_list if impls is None or i.name in impls]

    plan = _build_plan(ops, dtypes, size)
    impl_names = (["copy", "scipy", "numpy"] + (["torch"] if torch else [])
                  + [backend_impl_name(b) for b in backends] + ["auto"])
    if impls is not None:
        impl_names = [n for n in impl_names if n in impls]
    case_est = _estimate(plan, settings, impl_names)
    est = 3.0 + sum(case_est)  # + imports and first calls
    notes = []
    prog = Progress(len(plan), stream=stream, enabled=progress, weights=case_est)
    prog.note(f"fastsoftmax bench: {len(plan)} cases, {threads} thread(s), backends: "
              f"{', '.join(backends) or 'none'}; this will take about {_fmt_duration(est)} "
              "(rough estimate)")
    for name, why in reasons.items():
        notes.append(f"backend {name!r} not available: {why}")
    results, skipped = [], []
    cache = {}
    with _numba_quiet():
        for op, shape, dtype, axis in plan:
            case = Case(op, tuple(shape), dtype, axis)
            prog.start(case.label)
            if op in ("softmax", "log_softmax", "cross_entropy_grad"):
                key = (tuple(shape), dtype)
                if key not in cache:
                    cache.clear()
                    gc.collect()
                    cache[key] = {"x": make_logits(shape, dtype)}
                data = cache[key]
                x = data["x"]
                if "out" not in data:
                    data["out"] = np.empty_like(x)
                if op == "cross_entropy_grad":
                    case.baseline = "numpy"
                    y = np.random.default_rng(1).integers(0, shape[1], shape[0], dtype=np.int64)
                    case.impls = keep(cross_entropy_impls(x, y, backends, torch, grad=data["out"]))
                    case.check = _ce_check(x, y)
                else:
                    log = op == "log_softmax"
                    case.impls = keep(softmax_impls(x, axis, log, backends, torch, out=data["out"]))
                    case.check = _softmax_check(x, axis, log)
            elif op == "sampler":
                cache.clear()
                num_classes, draws = shape
                case.shape = (num_classes,)
                case.params = {"draws": draws}
                case.baseline = "numpy"
                impl_list, more = sampler_impls(num_classes, draws, backends, torch)
                case.impls = keep(impl_list)
                notes.extend(f"sampler: {n}" for n in more)
                w = zipf_weights(num_classes)
                case.check = _sampler_check(w / w.sum())
                case.extra = lambda impl, sec, draws=draws: {"draws_per_second": draws / sec}
            else:  # sampled_softmax
                cache.clear()
                v, d, bt, s = shape
                case.shape = (bt, v)
                case.params = {"num_classes": v, "dim": d, "batch": bt, "num_sampled": s}
                case.baseline = "full"
                impl_list, more = sampled_softmax_impls(v, d, bt, s, dtype, backends)
                case.impls = keep(impl_list)
                notes.extend(f"sampled_softmax: {n}" for n in more)
            rows, skip = time_case(case, settings, prog)
            results.extend(rows)
            for sk in skip:
                sk.update({"op": case.op, "shape": list(case.shape), "dtype": case.dtype,
                           "axis": case.axis})
            skipped.extend(skip)
            notes.extend(f"{case.label}: {n}" for n in case.notes)
            case.impls = []
            prog.finish_case()
    cache.clear()
    prog.close()
    machine = machine_info(threads, torch)
    backend_info = {name: {"available": True, "import_seconds": import_seconds[name]}
                    for name in import_seconds if name != "torch"}
    for name, why in reasons.items():
        backend_info[name] = {"available": why}
    if "torch" in import_seconds:
        notes.append(f"import torch took {_fmt_time(import_seconds['torch'])}")
    return {
        "machine": machine,
        "backends": backend_info,
        "settings": {"size": size, "threads": threads, "repeats": repeats,
                     "dtypes": list(dtypes), "ops": list(ops),
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": command},
        "results": results,
        "skipped": skipped,
        "notes": notes,
    }


def _skip_summary(skipped):
    """Collapse skips that repeat over shapes into one line each."""
    seen, out = set(), []
    for s in skipped:
        key = (s["op"], s["impl"], s["reason"])
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def format_report(report):
    m = report["machine"]
    lines = [
        f"fastsoftmax {m['versions']['fastsoftmax']} benchmark: {m['cpu_model']}, "
        f"{m['cores']} cores, {m['threads']} thread(s), "
        f"vector extensions: {' '.join(m['vector_extensions']) or 'none'}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        "median per-call time over interleaved rounds; x copy = time / np.copyto(out, x) time; "
        "vs BASE = BASE time / time; first call = the first call in this process (Numba compiles there)",
        "", "",
    ]
    notes = list(dict.fromkeys(report["notes"]))
    body = format_tables(report["results"], _skip_summary(report["skipped"]), notes)
    return "\n".join(lines) + body + "\n" + format_legend(report["results"])


def _jsonable(obj):
    """Non-finite floats become None so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def run(args):
    """Entry point of ``python -m fastsoftmax bench`` (``args`` from argparse)."""
    if args.plot and not _need_matplotlib():
        print("fastsoftmax bench: --plot needs matplotlib, which is not installed here. "
              'Get it with:  pip install "fastsoftmax[bench]"   (or: pip install matplotlib)',
              file=sys.stderr)
        return 1
    dtypes = [args.dtype] if args.dtype else ["float32", "float64"]
    size = args.shapes or ("quick" if args.quick else "full")
    ops = args.ops or list(OPS)
    report = run_benchmarks(ops=ops, dtypes=dtypes, size=size, threads=args.threads,
                            impls=args.impls, use_torch=not args.no_torch,
                            repeats=args.repeats, progress=not args.quiet,
                            command=getattr(args, "command_line", None))
    sys.stdout.write(format_report(report))
    sys.stdout.flush()
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(_jsonable(report), f, indent=1, allow_nan=False)
            f.write("\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        d = os.path.dirname(os.path.abspath(args.plot))
        os.makedirs(d, exist_ok=True)
        plot_speedups(report["results"], args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
