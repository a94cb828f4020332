"""What CPU this is: model name, vector extensions, core counts.

Used by ``python -m fastsoftmax info`` and the benchmark's machine record.
Reads ``/proc/cpuinfo`` on Linux and falls back to :mod:`platform` elsewhere;
nothing here raises.
"""
import os
import platform

__all__ = ["cpu_info", "VECTOR_EXTENSIONS"]

#: the /proc/cpuinfo flags worth reporting for vectorised kernels, oldest first
VECTOR_EXTENSIONS = (
    "sse2", "ssse3", "sse4_1", "sse4_2", "avx", "f16c", "fma", "avx2",
    "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512_bf16",
    "avx512_fp16", "amx_tile", "neon", "asimd", "sve", "sve2",
)


def _read_cpuinfo(path="/proc/cpuinfo"):
    """The ``key: value`` blocks of /proc/cpuinfo, one dict per logical CPU."""
    blocks, block = [], {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if block:
                        blocks.append(block)
                        block = {}
                    continue
                key, sep, value = line.partition(":")
                if sep:
                    block.setdefault(key.strip(), value.strip())
    except OSError:
        return []
    if block:
        blocks.append(block)
    return blocks


def cpu_info(path="/proc/cpuinfo"):
    """Describe the CPU.

    Returns
    -------
    dict
        ``model`` (str), ``vector_extensions`` (list of the flags in
        :data:`VECTOR_EXTENSIONS` this CPU has, in that order),
        ``logical_cpus`` (int, CPUs of the machine), ``usable_cpus`` (int,
        CPUs this process may run on), ``physical_cores`` (int or None when
        unknown).

    Examples
    --------
    >>> from fastsoftmax._cpuinfo import cpu_info
    >>> info = cpu_info()
    >>> sorted(info)
    ['logical_cpus', 'model', 'physical_cores', 'usable_cpus', 'vector_extensions']
    """
    blocks = _read_cpuinfo(path)
    model = None
    flags = set()
    cores = set()
    for b in blocks:
        model = model or b.get("model name") or b.get("Model") or b.get("Hardware")
        flags.update((b.get("flags") or b.get("Features") or "").split())
        if "physical id" in b and "core id" in b:
            cores.add((b["physical id"], b["core id"]))
    if not model:
        model = platform.processor() or platform.machine() or "unknown"
    logical = os.cpu_count() or len(blocks) or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        usable = logical
    return {
        "model": model,
        "vector_extensions": [f for f in VECTOR_EXTENSIONS if f in flags],
        "logical_cpus": logical,
        "usable_cpus": usable,
        "physical_cores": len(cores) or None,
    }
