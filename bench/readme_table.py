"""Turn a ``python -m fastsoftmax bench --json`` file into the README's table.

    python bench/readme_table.py bench/results/results_float32.json

Prints one Markdown table: per op and shape, each implementation's median time
as a multiple of ``np.copyto`` of the same array ("x copy"), and the default
backend's speed-up against the op's baseline (SciPy, or NumPy for the fused
cross-entropy gradient).
"""

import json
import sys


def _shape(shape):
    return "(" + ", ".join(f"{n:_}" if n >= 100_000 else str(n) for n in shape) + (",)" if len(shape) == 1 else ")")


def main(path, impls=("scipy", "numpy", "torch", "numba", "cython", "auto")):
    with open(path) as fh:
        data = json.load(fh)
    cases = {}
    for r in data["results"]:
        key = (r["op"], tuple(r["shape"]), r["axis"])
        cases.setdefault(key, {})[r["impl"]] = r
    present = [i for i in impls if any(i in c for c in cases.values())]
    head = ["op", "shape", "axis"] + [f"{i} x copy" for i in present] + ["auto vs baseline"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (op, shape, axis), c in cases.items():
        if "copy" not in c:
            continue
        cells = [op, _shape(shape), str(axis)]
        for i in present:
            r = c.get(i)
            cells.append(f"{r['ratio_vs_copy']:.2f}" if r and r.get("ratio_vs_copy") else "-")
        a = c.get("auto")
        cells.append(f"{a['speedup_vs_baseline']:.1f}x {a['baseline']}" if a else "-")
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
