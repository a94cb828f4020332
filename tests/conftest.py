import numpy as np
import pytest

import fastsoftmax

#: every backend that loads here (the compiled ones when built / installed)
AVAILABLE_BACKENDS = [name for name, ok in fastsoftmax.available_backends().items() if ok is True]
#: plus "auto", which must give the same results
ALL_BACKENDS = AVAILABLE_BACKENDS + ["auto"]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=[b for b in AVAILABLE_BACKENDS if b != "numpy"] or ["numpy"])
def compiled_backend(request):
    return request.param


@pytest.fixture
def restore_threads():
    n = fastsoftmax.get_num_threads()
    yield
    fastsoftmax.set_num_threads(n)


def pytest_report_header(config):
    info = fastsoftmax.available_backends()
    lines = [f"fastsoftmax {fastsoftmax.__version__}, numpy {np.__version__}, "
             f"threads {fastsoftmax.get_num_threads()}"]
    for name, ok in info.items():
        lines.append(f"  backend {name}: {'available' if ok is True else ok}")
    return lines
