"""The command line: ``python -m fastsoftmax bench`` / ``info`` (no timing is asserted)."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastsoftmax
from fastsoftmax.__main__ import build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVAILABLE = [b for b, ok in fastsoftmax.available_backends().items() if ok is True]
BASELINES = {"copy", "scipy", "numpy", "torch", "auto", "full"}


def _impl_name(backend):
    return "numpy-backend" if backend == "numpy" else backend


def _run(*args, timeout=1800):
    """``python -m fastsoftmax ARGS`` in a subprocess.  The timeout only
    catches a hang: the first ``bench`` of a fresh checkout compiles Numba's
    kernels on a cold cache, which took over 240 s on a busy 2-core machine."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "fastsoftmax", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize("argv, fragment", [
    (["bench", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["bench", "--threads", "0"], "must be >= 1"),
    (["bench", "--threads", "two"], "not an integer"),
    (["bench", "--repeats", "-3"], "must be >= 1"),
    (["bench", "--ops", "matmul"], "invalid choice: 'matmul'"),
    (["bench", "--impls", "numba,bogus"], "unknown impl bogus"),
    (["bench", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "required: {bench,info}"),
])
def test_argument_errors_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def test_bad_dtype_through_the_interpreter():
    proc = _run("bench", "--dtype", "int8")
    assert proc.returncode == 2
    assert "--dtype" in proc.stderr and "invalid choice" in proc.stderr
    assert proc.stdout == ""


def test_parser_defaults():
    args = build_parser().parse_args(["bench"])
    assert (args.quick, args.dtype, args.json, args.plot, args.threads) == (False, None, None, None, None)
    args = build_parser().parse_args(["bench", "--quick", "--dtype", "float32", "--threads", "3",
                                      "--impls", "copy,numba", "--ops", "softmax", "sampler"])
    assert args.quick and args.dtype == "float32" and args.threads == 3
    assert args.impls == ["copy", "numba"] and args.ops == ["softmax", "sampler"]


def test_help_mentions_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--quick", "--dtype", "--json", "--plot", "--threads", "--ops"):
        assert opt in out
    assert "--shapes" not in out  # test-only option stays hidden


# --------------------------------------------------------------------- info

def test_info_in_process(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fastsoftmax {fastsoftmax.__version__}")
    for word in ("numpy", "numba", "scipy", "cython", "python", "backends:",
                 "vector extensions:", "numba threading layer:", "CPU:"):
        assert word in out
    lines = out.splitlines()
    backend_lines = lines[lines.index("backends:") + 1:]
    for name, ok in fastsoftmax.available_backends().items():
        line = next(ln for ln in backend_lines if ln.strip().startswith(name + " "))
        assert ("available" if ok is True else "not available") in line
    assert f"threads: {fastsoftmax.get_num_threads()}" in out


def test_info_through_the_interpreter():
    proc = _run("info")
    assert proc.returncode == 0, proc.stderr
    assert "backends:" in proc.stdout and "threads:" in proc.stdout
    for name in fastsoftmax.available_backends():
        assert name in proc.stdout


def test_info_respects_thread_env():
    env_threads = "1"
    env = dict(os.environ, FASTSOFTMAX_NUM_THREADS=env_threads,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "fastsoftmax", "info"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"threads: {env_threads} " in proc.stdout


# ------------------------------------------------------------------ cpuinfo

def test_cpuinfo_parses_flags_and_cores(tmp_path):
    from fastsoftmax._cpuinfo import cpu_info
    text = ""
    for cpu, core in ((0, 0), (1, 0), (2, 1), (3, 1)):
        text += (f"processor\t: {cpu}\nmodel name\t: Test CPU 9000\nphysical id\t: 0\n"
                 f"core id\t\t: {core}\nflags\t\t: fpu sse2 avx fma avx2 avx512f ht\n\n")
    p = tmp_path / "cpuinfo"
    p.write_text(text)
    info = cpu_info(str(p))
    assert info["model"] == "Test CPU 9000"
    assert info["vector_extensions"] == ["sse2", "avx", "fma", "avx2", "avx512f"]
    assert info["physical_cores"] == 2


def test_cpuinfo_missing_file(tmp_path):
    from fastsoftmax._cpuinfo import cpu_info
    info = cpu_info(str(tmp_path / "nope"))
    assert isinstance(info["model"], str) and info["vector_extensions"] == []
    assert info["physical_cores"] is None and info["logical_cpus"] >= 1


# -------------------------------------------------------------------- bench

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny benchmark run through the interpreter, with --json and --quick."""
    d = tmp_path_factory.mktemp("bench")
    path = d / "sub" / "results.json"
    proc = _run("bench", "--quick", "--shapes", "tiny", "--dtype", "float32", "--json", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    return proc, report


def test_bench_json_machine(tiny_run):
    _, report = tiny_run
    assert set(report) >= {"machine", "results", "backends", "skipped", "notes", "settings"}
    m = report["machine"]
    assert isinstance(m["cpu_model"], str) and m["cpu_model"]
    assert isinstance(m["vector_extensions"], list)
    assert all(isinstance(v, str) for v in m["vector_extensions"])
    assert isinstance(m["cores"], int) and m["cores"] >= 1
    assert isinstance(m["threads"], int) and m["threads"] >= 1
    v = m["versions"]
    for key in ("python", "numpy", "numba", "scipy", "fastsoftmax"):
        assert key in v
    assert v["fastsoftmax"] == fastsoftmax.__version__
    assert v["numpy"] == np.__version__
    assert report["settings"]["size"] == "tiny"
    assert report["settings"]["dtypes"] == ["float32"]


def test_bench_json_results_schema(tiny_run):
    _, report = tiny_run
    results = report["results"]
    assert results
    allowed = BASELINES | {_impl_name(b) for b in fastsoftmax.available_backends()}
    for r in results:
        assert r["op"] in ("softmax", "log_softmax", "cross_entropy_grad", "sampler",
                           "sampled_softmax")
        assert isinstance(r["shape"], list) and all(isinstance(d, int) for d in r["shape"])
        assert r["dtype"] in ("float32", "int64")
        assert r["axis"] is None or isinstance(r["axis"], int)
        assert r["impl"] in allowed
        assert isinstance(r["seconds"], float) and r["seconds"] > 0
        assert isinstance(r["min_seconds"], float) and 0 < r["min_seconds"] <= r["seconds"]
        assert isinstance(r["repeats"], int) and r["repeats"] >= 1
        assert isinstance(r["first_call_seconds"], float) and r["first_call_seconds"] > 0
        for key in ("ratio_vs_copy", "speedup_vs_scipy", "speedup_vs_baseline", "max_error"):
            assert r[key] is None or isinstance(r[key], float)
        assert isinstance(r["call"], str) and r["call"]
    for s in report["skipped"]:
        assert {"op", "shape", "dtype", "impl", "reason"} <= set(s)
        assert s["impl"] in allowed


def test_bench_json_ratios_are_consistent(tiny_run):
    _, report = tiny_run
    cases = {}
    for r in report["results"]:
        cases.setdefault((r["op"], tuple(r["shape"]), r["axis"]), {})[r["impl"]] = r
    softmax_cases = [c for k, c in cases.items() if k[0] in ("softmax", "log_softmax")]
    assert len(softmax_cases) == 4  # two tiny shapes, two ops
    for impls in softmax_cases:
        assert {"copy", "scipy", "numpy", "auto"} <= set(impls)
        copy_t, scipy_t = impls["copy"]["seconds"], impls["scipy"]["seconds"]
        for r in impls.values():
            assert r["ratio_vs_copy"] == pytest.approx(r["seconds"] / copy_t)
            assert r["speedup_vs_scipy"] == pytest.approx(scipy_t / r["seconds"])
        assert impls["copy"]["max_error"] is None  # the copy is not a softmax
        for name, r in impls.items():
            if name != "copy":  # every softmax implementation computed the right thing
                assert r["max_error"] < 1e-5, name


def test_bench_covers_every_available_backend(tiny_run):
    _, report = tiny_run
    for op in ("softmax", "log_softmax", "cross_entropy_grad"):
        timed = {r["impl"] for r in report["results"] if r["op"] == op}
        skipped = {s["impl"] for s in report["skipped"] if s["op"] == op}
        for b in AVAILABLE:
            assert _impl_name(b) in timed | skipped, (op, b)


def test_bench_table_on_stdout(tiny_run):
    proc, report = tiny_run
    out = proc.stdout
    assert "softmax  float32" in out and "log_softmax  float32" in out
    for word in ("median", "x copy", "vs scipy", "first call"):
        assert word in out
    for r in report["results"]:
        assert r["impl"] in out
    # progress and the time estimate go to stderr, plain lines when not a terminal
    assert "this will take about" in proc.stderr
    assert "\r" not in proc.stderr
    assert "[1/" in proc.stderr


def test_plot_without_matplotlib(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    png = tmp_path / "speedup.png"
    rc = main(["bench", "--shapes", "tiny", "--plot", str(png)])
    assert rc != 0
    err = capsys.readouterr().err
    assert "matplotlib" in err and 'pip install "fastsoftmax[bench]"' in err
    assert not png.exists()


def _fake_rows():
    rows = []
    for op in ("softmax", "log_softmax"):
        for shape in ((4, 5), (6, 7)):
            for impl, t in (("copy", 1e-6), ("scipy", 9e-6), ("numba", 2e-6)):
                rows.append({"op": op, "shape": list(shape), "dtype": "float32", "axis": -1,
                             "impl": impl, "backend": None, "call": impl, "seconds": t,
                             "min_seconds": t, "repeats": 3, "calls_per_repeat": 1,
                             "ratio_vs_copy": t / 1e-6, "speedup_vs_scipy": 9e-6 / t,
                             "baseline": "scipy", "speedup_vs_baseline": 9e-6 / t,
                             "first_call_seconds": t, "max_error": None, "params": {}})
    return rows


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from fastsoftmax import bench
    png = tmp_path / "speedup.png"
    bench.plot_speedups(_fake_rows(), str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_format_tables_aligned():
    from fastsoftmax import bench
    text = bench.format_tables(_fake_rows(), notes=["hello"])
    lines = text.splitlines()
    assert "softmax  float32" in lines and "log_softmax  float32" in lines
    header = next(ln for ln in lines if ln.startswith("shape"))
    row = next(ln for ln in lines if ln.startswith("(4, 5)"))
    # right-aligned numeric columns end where their header ends
    assert row.index("9.00") + 4 <= len(row)
    assert len(header.split()) >= 8
    assert "2.0 us" in text and "9.0 us" in text and "4.50x" in text
    assert lines[-1] == "note: hello"


def test_progress_plain_lines():
    from fastsoftmax.bench import Progress
    buf = io.StringIO()
    p = Progress(2, stream=buf)
    p.start("case one")
    p.step("case one", "round 1/3")  # nothing on a non-terminal
    p.finish_case()
    p.start("case two")
    p.finish_case()
    p.close()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[1/2] case one"
    assert lines[1].startswith("[2/2] case two")
    assert "\r" not in buf.getvalue()


def test_progress_on_a_terminal():
    from fastsoftmax.bench import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True
    buf = Tty()
    p = Progress(1, stream=buf)
    p.start("case")
    p.step("case", "numba (first call)")
    p.close()
    assert "\r" in buf.getvalue() and "numba (first call)" in buf.getvalue()
    assert "\n" not in buf.getvalue()


def test_bench_in_process_restricted(tmp_path, capsys):
    """main(argv) with --impls and --ops: only those implementations are timed."""
    path = tmp_path / "r.json"
    rc = main(["bench", "--shapes", "tiny", "--dtype", "float64", "--ops", "softmax",
               "--impls", "copy,numpy", "--no-torch", "--quiet", "--json", str(path)])
    assert rc == 0
    report = json.loads(path.read_text())
    assert {r["impl"] for r in report["results"]} == {"copy", "numpy"}
    assert {r["op"] for r in report["results"]} == {"softmax"}
    assert all(r["dtype"] == "float64" for r in report["results"])
    assert all(r["speedup_vs_scipy"] is None for r in report["results"])
    captured = capsys.readouterr()
    assert captured.err.strip().endswith(f"wrote {path}")
    assert "[1/" not in captured.err  # --quiet


# ---------------------------------------------------------------- bench/goals.py

GOALS = os.path.join(ROOT, "bench", "goals.py")


def _goals_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("fsm_bench_goals", GOALS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not os.path.exists(GOALS), reason="bench/ is not in this install")
@pytest.mark.parametrize("shape", ["300x40", "64x10"])
def test_goals_one_case_through_the_interpreter(shape):
    # the per-case process goals.py starts, on the NumPy backend (no compile)
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, GOALS, "--one", "numpy", "float32", shape, "-1", "2", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    keys = ("sm_us", "log_us") if shape == "64x10" else ("copy_ms", "sm", "log")
    assert all(rec[k] > 0 for k in keys)
    assert rec["log_sm"] > 0 and set(rec["first_s"]) == {"softmax", "log_softmax"}


@pytest.mark.skipif(not os.path.exists(GOALS), reason="bench/ is not in this install")
def test_goals_table_and_misses(monkeypatch, capsys, tmp_path):
    goals = _goals_module()
    calls = []

    def fake_run(backend, dtype, shape, axis, rounds, threads):
        calls.append((backend, dtype, shape, axis, rounds, threads))
        if shape == (64, 10):
            return {"sm_us": 2.5 if backend == "numba" else 1.0, "log_us": 1.0, "log_sm": 1.0}
        log_sm = 1.2 if (backend, shape) == ("cython", (100_000, 16)) else 1.0
        return {"copy_ms": 1.0, "sm": 1.0, "log": log_sm, "log_sm": log_sm}

    monkeypatch.setattr(goals, "_run", fake_run)
    out_json = tmp_path / "g.json"
    goals.main(["--backends", "numba,cython", "--dtypes", "float64", "--procs", "2",
                "--rounds", "3", "--json", str(out_json)])
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| float64")]
    assert len(rows) == len(goals.CASES)
    assert "| float64 (64, 10), us a call | 2 | 2.50 / 1.00 us | 1.00 / 1.00 us |" in rows
    # two misses: numba's (64, 10) per call, cython's (100_000, 16) log /
    # softmax (its log at 1.2 x copy is within that case's goal of 4)
    assert "numba float64 (64, 10), us a call: 2.50 > goal 2" in text
    assert "cython float64 (100_000, 16): log_softmax / softmax 1.20 > 1.1" in text
    assert "(4096, 32000): 1" not in text.split("missed:")[1]
    # every case twice (--procs 2) per backend, the fast cases with more rounds
    assert len(calls) == 2 * 2 * len(goals.CASES)
    assert {c[4] for c in calls if c[2] == (1024, 1000)} == {15}
    data = json.loads(out_json.read_text())
    assert len(data["records"]) == 2 * len(goals.CASES) and len(data["missed"]) == 2
