"""The backend registry: selection, context-locality, environment, threads."""
import asyncio
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastsoftmax
from fastsoftmax import _backends

from conftest import AVAILABLE_BACKENDS


def run_python(code, **env):
    full_env = dict(os.environ)
    for key in ("FASTSOFTMAX_BACKEND", "FASTSOFTMAX_NUM_THREADS"):
        full_env.pop(key, None)
    full_env.update(env)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=full_env, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_import_is_light():
    out = run_python(
        "import sys, time; t = time.perf_counter(); import fastsoftmax; "
        "dt = time.perf_counter() - t; "
        "print('numba' in sys.modules, "
        "any(m.startswith('fastsoftmax.kernels.') for m in sys.modules), dt)")
    numba_loaded, kernels_loaded, _ = out.split()
    assert numba_loaded == "False"
    assert kernels_loaded == "False"


def test_available_backends_reports_reasons():
    info = fastsoftmax.available_backends()
    assert set(info) == {"numpy", "numba", "cython"}
    assert info["numpy"] is True
    for name, ok in info.items():
        assert ok is True or (isinstance(ok, str) and "To get it" in ok), (name, ok)


def test_unloadable_backend_says_why(monkeypatch):
    monkeypatch.setitem(_backends._MODULES, "cython", "fastsoftmax.kernels._missing_module")
    monkeypatch.setattr(_backends, "_loaded", {})
    monkeypatch.setattr(_backends, "_fast_paths", {})
    monkeypatch.setattr(_backends, "_failed", {})
    # (auto's choices made here, without Cython, must not outlive the test)
    monkeypatch.setattr(_backends, "_auto_cache", {})
    with pytest.raises(RuntimeError, match="'cython' is not available.*C compiler"):
        fastsoftmax.set_backend("cython")
    with pytest.raises(RuntimeError, match="not available"):
        fastsoftmax.softmax([1.0, 2.0], backend="cython")
    with pytest.raises(RuntimeError, match="not available"):  # the small-call fast path too
        fastsoftmax.log_softmax(np.ones((2, 3)), axis=-1, backend="cython")
    assert fastsoftmax.available_backends()["cython"].startswith("fastsoftmax backend 'cython'")
    # auto falls back silently
    np.testing.assert_allclose(fastsoftmax.softmax([1.0, 2.0], backend="auto"),
                               [0.2689414213699951, 0.7310585786300049], rtol=1e-13)


def test_set_and_get_backend():
    old = fastsoftmax.get_backend()
    try:
        for name in AVAILABLE_BACKENDS + ["auto"]:
            fastsoftmax.set_backend(name)
            assert fastsoftmax.get_backend() == name
            np.testing.assert_allclose(fastsoftmax.softmax([0.0, 0.0]), [0.5, 0.5])
        with pytest.raises(ValueError, match="unknown backend"):
            fastsoftmax.set_backend("tensorflow")
    finally:
        fastsoftmax.set_backend(old)


def test_use_backend_is_thread_local():
    seen = {}
    entered = threading.Event()
    release = threading.Event()

    def other_thread():
        entered.wait(5)
        seen["other"] = fastsoftmax.get_backend()
        release.set()

    t = threading.Thread(target=other_thread)
    t.start()
    global_default = fastsoftmax.get_backend()
    with fastsoftmax.use_backend("numpy"):
        assert fastsoftmax.get_backend() == "numpy"
        entered.set()
        release.wait(5)
    t.join()
    assert seen["other"] == global_default
    assert fastsoftmax.get_backend() == global_default


def test_use_backend_is_task_local():
    async def task(name, delay):
        with fastsoftmax.use_backend(name):
            await asyncio.sleep(delay)
            return fastsoftmax.get_backend()

    async def main():
        return await asyncio.gather(task("numpy", 0.02), task("auto", 0.01))

    assert asyncio.run(main()) == ["numpy", "auto"]


def test_use_backend_nests_and_restores():
    outer = fastsoftmax.get_backend()
    with fastsoftmax.use_backend("numpy"):
        with fastsoftmax.use_backend("auto"):
            assert fastsoftmax.get_backend() == "auto"
        assert fastsoftmax.get_backend() == "numpy"
    assert fastsoftmax.get_backend() == outer
    with pytest.raises(ValueError, match="unknown backend"):
        with fastsoftmax.use_backend("nope"):
            pass


def test_environment_variables():
    out = run_python("import fastsoftmax; print(fastsoftmax.get_backend(), "
                     "fastsoftmax.get_num_threads())",
                     FASTSOFTMAX_BACKEND="numpy", FASTSOFTMAX_NUM_THREADS="3")
    assert out == "numpy 3"
    res = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "import fastsoftmax; print(fastsoftmax.get_backend(), fastsoftmax.get_num_threads())"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "FASTSOFTMAX_BACKEND": "bogus", "FASTSOFTMAX_NUM_THREADS": "zero"})
    assert res.returncode == 0
    assert res.stdout.split()[0] == "auto"
    assert "FASTSOFTMAX_BACKEND" in res.stderr and "FASTSOFTMAX_NUM_THREADS" in res.stderr


def test_set_num_threads(restore_threads):
    fastsoftmax.set_num_threads(1)
    assert fastsoftmax.get_num_threads() == 1
    fastsoftmax.set_num_threads(np.int64(2))
    assert fastsoftmax.get_num_threads() == 2
    with pytest.raises(ValueError, match=">= 1"):
        fastsoftmax.set_num_threads(0)
    with pytest.raises(TypeError, match="int"):
        fastsoftmax.set_num_threads(1.5)


def test_public_names():
    for name in fastsoftmax.__all__:
        assert getattr(fastsoftmax, name) is not None, name
    assert isinstance(fastsoftmax.__version__, str)
