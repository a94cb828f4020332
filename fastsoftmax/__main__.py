"""The command line: ``python -m fastsoftmax {bench,info}`` (also installed as ``fastsoftmax``).

``bench`` times every available backend against SciPy, NumPy, PyTorch (when
installed) and a memory copy; ``info`` prints versions, backends, threads and
the CPU's vector extensions.  The benchmark code lives in
:mod:`fastsoftmax.bench`, imported only when ``bench`` runs.
"""
import argparse
import os
import platform
import sys

__all__ = ["main", "build_parser"]

_OPS = ("softmax", "log_softmax", "cross_entropy_grad", "sampler", "sampled_softmax")
_IMPLS = ("copy", "scipy", "numpy", "torch", "numba", "cython", "numpy-backend", "auto", "full")


def _positive_int(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _impl_list(text):
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in _IMPLS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown impl {', '.join(bad) or repr(text)}; choose from {', '.join(_IMPLS)}")
    return names


def build_parser():
    """The argparse parser of ``python -m fastsoftmax``."""
    parser = argparse.ArgumentParser(
        prog="python -m fastsoftmax",
        description="fastsoftmax command line: benchmark and environment report.")
    sub = parser.add_subparsers(dest="command", metavar="{bench,info}")
    sub.required = True

    b = sub.add_parser(
        "bench", help="time fastsoftmax against SciPy, NumPy, PyTorch and a memory copy",
        description=(
            "Time every available fastsoftmax backend against scipy.special, NumPy written "
            "by hand, torch (when installed) and np.copyto of the same array (the memory "
            "floor), on softmax, log_softmax, the fused cross-entropy gradient, the alias "
            "sampler and the sampled softmax loss. Prints one table per op and dtype: "
            "median time, min time, time / copy time, speed-up against the baseline "
            "(SciPy for softmax), and the first call (Numba compile) time."))
    b.add_argument("--quick", action="store_true",
                   help="smaller shapes and fewer rounds (under a minute on 2 cores)")
    b.add_argument("--dtype", choices=("float32", "float64"),
                   help="only this dtype (default: both)")
    b.add_argument("--json", metavar="PATH", help="write the machine record and all results as JSON")
    b.add_argument("--plot", metavar="PATH",
                   help="write a PNG bar chart of the speed-ups (needs matplotlib)")
    b.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for fastsoftmax and torch (default: fastsoftmax.get_num_threads())")
    b.add_argument("--ops", nargs="+", choices=_OPS, metavar="OP",
                   help=f"operations to time, among: {', '.join(_OPS)} (default: all)")
    b.add_argument("--impls", type=_impl_list, metavar="A,B,...",
                   help=f"only these implementations, among: {', '.join(_IMPLS)}")
    b.add_argument("--repeats", type=_positive_int, metavar="N",
                   help="timed rounds per case (default: by a time budget per case)")
    b.add_argument("--no-torch", action="store_true", help="do not import or time torch")
    b.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
    # test-only: tiny shapes so the CLI tests take seconds
    b.add_argument("--shapes", choices=("tiny",), help=argparse.SUPPRESS)

    sub.add_parser("info", help="versions, backends, threads and CPU vector extensions",
                   description="Print versions, available backends (or why not), the thread "
                               "count and the CPU's model and vector extensions.")
    return parser


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


def info_text():
    """The report ``python -m fastsoftmax info`` prints."""
    import numpy as np

    import fastsoftmax
    from ._cpuinfo import cpu_info

    lines = [f"fastsoftmax {fastsoftmax.__version__}",
             f"  python      {platform.python_version()} ({platform.python_implementation()}, "
             f"{sys.executable})",
             f"  numpy       {np.__version__}"]
    for label, dist, note in (("numba", "numba", ""), ("scipy", "scipy", ""),
                              ("cython", "Cython", " (build time only)"),
                              ("torch", "torch", " (optional, benchmarks only)")):
        v = _dist_version(dist)
        lines.append(f"  {label:<11} {v + note if v else 'not installed'}")
    backends = fastsoftmax.available_backends()
    lines.append("backends:")
    for name, ok in backends.items():
        lines.append(f"  {name:<8} {'available' if ok is True else 'not available: ' + str(ok)}")
    lines.append(f"current backend: {fastsoftmax.get_backend()}"
                 + (f" (FASTSOFTMAX_BACKEND={os.environ['FASTSOFTMAX_BACKEND']})"
                    if os.environ.get("FASTSOFTMAX_BACKEND") else ""))
    lines.append(f"threads: {fastsoftmax.get_num_threads()} (fastsoftmax.get_num_threads()"
                 + (f"; FASTSOFTMAX_NUM_THREADS={os.environ['FASTSOFTMAX_NUM_THREADS']}"
                    if os.environ.get("FASTSOFTMAX_NUM_THREADS") else "") + ")")
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            layer = numba.threading_layer()
        except ValueError:
            layer = "not initialised yet (no parallel kernel has run in this process)"
        except Exception as exc:  # pragma: no cover - unexpected numba state
            layer = f"unknown ({type(exc).__name__}: {exc})"
        lines.append(f"numba threading layer: {layer} (configured: "
                     f"{numba.config.THREADING_LAYER}, max threads {numba.config.NUMBA_NUM_THREADS})")
    else:
        lines.append("numba threading layer: numba not loaded")
    cpu = cpu_info()
    cores = cpu["physical_cores"]
    lines.append(f"CPU: {cpu['model']}, {cpu['logical_cpus']} logical CPUs"
                 + (f", {cores} physical cores" if cores else "")
                 + f", {cpu['usable_cpus']} usable by this process")
    lines.append("vector extensions: " + (" ".join(cpu["vector_extensions"]) or "none detected"))
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Run the command line; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Examples
    --------
    >>> from fastsoftmax.__main__ import main
    >>> main(["info"])  # doctest: +ELLIPSIS
    fastsoftmax ...
    0
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.command == "info":
        sys.stdout.write(info_text())
        return 0
    from . import bench
    args.command_line = " ".join(["python -m fastsoftmax", *argv])
    return bench.run(args)


if __name__ == "__main__":
    sys.exit(main())
