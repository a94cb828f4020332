"""More tests of the Numba softmax kernels: the column kernel's special
values at every position of its groups of rows, and the exp's polynomial."""
import warnings

import numpy as np
import pytest

pytest.importorskip("numba")
sc = pytest.importorskip("scipy.special")

import fastsoftmax  # noqa: E402

if fastsoftmax.available_backends()["numba"] is not True:  # pragma: no cover
    pytest.skip("the numba backend does not load here", allow_module_level=True)

from fastsoftmax.kernels.numba_backend import softmax as nb_softmax  # noqa: E402


def _scipy(x, axis, log):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return (sc.log_softmax if log else sc.softmax)(x.astype(np.float64), axis=axis)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_columns_special_values_at_every_group_position(dtype, log):
    """The column kernel's first pass takes the maximum of a group of rows
    with compare-and-select (a NaN may hide the other values of its group):
    a column holding a NaN, +inf or -inf, at any position in a group, next
    to values far above the rest, still gives SciPy's result, and the other
    columns are untouched by it."""
    group = nb_softmax.COL_GROUP
    k = 3 * group + 3  # full groups and a partial one
    inner = 4 * group * 3 + 5
    rng = np.random.default_rng(0)
    x = rng.normal(size=(k, inner)).astype(dtype)
    col = 0
    for special in (np.nan, np.inf, -np.inf):
        for row in range(k):
            x[:, col] = rng.normal(size=k)
            # values far above the others: a hidden maximum makes x - max large
            x[(row + 1) % k, col] = 80 if dtype == np.float32 else 700
            x[(row + 2) % k, col] = 60 if dtype == np.float32 else 650
            x[row, col] = special
            col += 1
    assert col <= inner
    x[:, -1] = -np.inf  # an all -inf column
    f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
    got = f(x, axis=0, backend="numba").astype(np.float64)
    want = _scipy(x, 0, log)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5 if dtype == np.float32 else 1e-13,
                               atol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_match_rows_of_the_transpose(dtype):
    """Column softmax over many rows (the online max/sum rescaling) against
    SciPy, with a growing trend so that the running maximum keeps growing."""
    rng = np.random.default_rng(1)
    k, inner = 1000, 300
    x = (rng.normal(size=(k, inner)) * 4 + np.linspace(0, 30, k)[:, None]).astype(dtype)
    for log in (False, True):
        f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
        got = f(x, axis=0, backend="numba").astype(np.float64)
        want = _scipy(x, 0, log)
        rtol = 1e-13 if dtype == np.float64 else 1e-5
        scale = np.maximum(np.abs(want), 1.0) if log else np.abs(want)
        assert np.all(np.abs(got - want) <= rtol * scale + (0 if dtype == np.float64 else 1e-30))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_columns_streaming_stores_change_nothing(monkeypatch, dtype, log):
    """The column kernel's writing pass with streaming stores (through
    scratch rows, two at a time; odd row counts, unaligned outputs, in
    place) gives the same bits as with plain stores."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(37, 2 * nb_softmax.COL_BLOCK + 75)).astype(dtype)
    f = fastsoftmax.log_softmax if log else fastsoftmax.softmax
    plain = f(x, axis=0, backend="numba")
    monkeypatch.setattr(nb_softmax, "NT_MIN_BYTES", 0)
    np.testing.assert_array_equal(f(x, axis=0, backend="numba"), plain)
    wide = np.zeros((x.shape[0], x.shape[1] + 1), dtype=dtype)
    f(x, axis=0, out=wide[:, 1:], backend="numba")  # rows not 64-byte aligned
    np.testing.assert_array_equal(wide[:, 1:], plain)
    y = x.copy()
    f(y, axis=0, out=y, backend="numba")
    np.testing.assert_array_equal(y, plain)
