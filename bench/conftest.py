"""pytest-benchmark suite of fastsoftmax: the cases of ``python -m fastsoftmax bench``.

One table of implementations drives both: :mod:`fastsoftmax.bench` builds
them (``softmax_impls``, ``cross_entropy_impls``, ``sampler_impls``,
``sampled_softmax_impls``) and every test here picks one by name.  Each test
is one (case, implementation) pair; ``benchmark.group`` is the case, so
``pytest-benchmark`` puts all implementations of one case side by side and
``--benchmark-compare`` compares each of them with a saved run.

Options (see bench/README.md): ``--fsm-size {full,quick,tiny}``,
``--fsm-dtype {float32,float64}``, ``--fsm-threads N``, ``--fsm-no-torch``,
``--fsm-impls a,b,...``.
"""
import gc

import numpy as np
import pytest

import fastsoftmax
from fastsoftmax import bench as fb

BASELINES = {
    "softmax": ["copy", "scipy", "numpy", "torch"],
    "cross_entropy_grad": ["copy", "numpy", "torch"],
    "sampler": ["numpy", "torch"],
    "sampled_softmax": ["full"],
}


def pytest_addoption(parser):
    g = parser.getgroup("fastsoftmax benchmarks")
    g.addoption("--fsm-size", choices=("full", "quick", "tiny"), default="full",
                help="shapes: full (issue 3/4/5 shapes, default), quick (smaller), tiny (smoke)")
    g.addoption("--fsm-dtype", choices=("float32", "float64"), default=None,
                help="only this dtype (default: both)")
    g.addoption("--fsm-threads", type=int, default=None,
                help="threads for fastsoftmax and torch (default: fastsoftmax's)")
    g.addoption("--fsm-no-torch", action="store_true", help="do not import or time torch")
    g.addoption("--fsm-impls", default=None,
                help="comma-separated impl names to keep (e.g. copy,numba,cython)")


def pytest_configure(config):
    n = config.getoption("--fsm-threads", None)
    if n:
        fastsoftmax.set_num_threads(n)


def _backend_impls():
    return [b for b, ok in fastsoftmax.available_backends().items() if ok is True]


def _impl_names(family, config):
    names = list(BASELINES[family])
    if config.getoption("--fsm-no-torch") and "torch" in names:
        names.remove("torch")
    backends = [fb.backend_impl_name(b) for b in _backend_impls()]
    names += backends
    if family in ("softmax", "cross_entropy_grad"):
        names.append("auto")
    keep = config.getoption("--fsm-impls")
    if keep:
        wanted = {k.strip() for k in keep.split(",")}
        names = [n for n in names if n in wanted]
    return names


def _shape_id(shape):
    return "x".join(str(d) for d in shape)


def pytest_generate_tests(metafunc):
    """Parametrise over (case, impl) in an order that keeps one array in memory at a time."""
    config = metafunc.config
    size = config.getoption("--fsm-size")
    dtypes = [config.getoption("--fsm-dtype")] if config.getoption("--fsm-dtype") \
        else ["float32", "float64"]
    params, ids = [], []
    if "softmax_case" in metafunc.fixturenames:
        op = metafunc.module.OP
        names = _impl_names("softmax", config)
        for dtype in dtypes:
            for shape, axis in fb.SOFTMAX_SHAPES[size]:
                for impl in names:
                    params.append(((op, shape, dtype, axis), impl))
                    ids.append(f"{dtype}-{_shape_id(shape)}-axis{axis}-{impl}")
        metafunc.parametrize("softmax_case", params, ids=ids)
    elif "ce_case" in metafunc.fixturenames:
        names = _impl_names("cross_entropy_grad", config)
        for dtype in dtypes:
            for shape in fb.CE_SHAPES[size]:
                for impl in names:
                    params.append(((shape, dtype), impl))
                    ids.append(f"{dtype}-{_shape_id(shape)}-{impl}")
        metafunc.parametrize("ce_case", params, ids=ids)
    elif "sampler_case" in metafunc.fixturenames:
        num_classes, draws = fb.SAMPLER_SIZES[size]
        for impl in _impl_names("sampler", config):
            params.append(((num_classes, draws), impl))
            ids.append(f"{num_classes}classes-{draws}draws-{impl}")
        metafunc.parametrize("sampler_case", params, ids=ids)
    elif "sampled_case" in metafunc.fixturenames:
        v, d, b, s = fb.SAMPLED_SIZES[size]
        for dtype in dtypes:
            for impl in _impl_names("sampled_softmax", config):
                params.append(((v, d, b, s, dtype), impl))
                ids.append(f"{dtype}-V{v}-D{d}-B{b}-S{s}-{impl}")
        metafunc.parametrize("sampled_case", params, ids=ids)


class ImplTables:
    """Builds the implementation table of a case once; keeps the last case's data only."""

    def __init__(self, config):
        self.torch = None
        if not config.getoption("--fsm-no-torch"):
            try:
                import torch
                torch.set_num_threads(fastsoftmax.get_num_threads())
                self.torch = torch
            except Exception:
                pass
        self.backends = _backend_impls()
        self._key = None
        self._data = None
        self._tables = {}

    def _case_data(self, key, make):
        if key != self._key:
            self._tables.clear()
            self._data = None
            gc.collect()
            self._data = make()
            self._key = key
        return self._data

    def _table(self, key, build):
        if key not in self._tables:
            self._tables[key] = {impl.name: impl for impl in build()}
        return self._tables[key]

    def softmax(self, op, shape, dtype, axis):
        data = self._case_data(("logits", shape, dtype), lambda: {
            "x": fb.make_logits(shape, dtype)})
        x = data["x"]
        data.setdefault("out", np.empty_like(x))
        return self._table((op, axis), lambda: fb.softmax_impls(
            x, axis, op == "log_softmax", self.backends, self.torch, out=data["out"]))

    def cross_entropy(self, shape, dtype):
        def make():
            x = fb.make_logits(shape, dtype)
            y = np.random.default_rng(1).integers(0, shape[1], shape[0], dtype=np.int64)
            return {"x": x, "y": y, "grad": np.empty_like(x)}
        data = self._case_data(("logits", shape, dtype), make)
        if "y" not in data:
            data["y"] = np.random.default_rng(1).integers(0, shape[1], shape[0], dtype=np.int64)
            data["grad"] = np.empty_like(data["x"])
        return self._table("ce", lambda: fb.cross_entropy_impls(
            data["x"], data["y"], self.backends, self.torch, grad=data["grad"]))

    def sampler(self, num_classes, draws):
        self._case_data(("sampler", num_classes, draws), dict)
        return self._table("sampler", lambda: fb.sampler_impls(
            num_classes, draws, self.backends, self.torch)[0])

    def sampled(self, v, d, b, s, dtype):
        self._case_data(("sampled", v, d, b, s, dtype), dict)
        return self._table("sampled", lambda: fb.sampled_softmax_impls(
            v, d, b, s, dtype, self.backends)[0])


@pytest.fixture(scope="session")
def impl_tables(request):
    return ImplTables(request.config)


@pytest.fixture
def run_impl(benchmark):
    """Warm up one implementation (first call timed apart), then benchmark it."""
    import time

    def run(table, name, group, **extra):
        impl = table.get(name)
        if impl is None:
            pytest.skip(f"{name} is not available for this case")
        try:
            t0 = time.perf_counter()
            impl.fn()  # first call: Numba compiles here, never inside the timing
            first = time.perf_counter() - t0
        except Exception as exc:  # e.g. NotImplementedError while a feature is being written
            pytest.skip(f"{name}: {type(exc).__name__}: {exc}")
        benchmark.group = group
        benchmark.extra_info.update(impl=name, call=impl.call, first_call_seconds=first,
                                    threads=fastsoftmax.get_num_threads(), **extra)
        benchmark(impl.fn)
    return run
