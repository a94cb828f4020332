"""Candidate samplers: laws (chi-square), reproducibility, edge cases, errors."""
import numpy as np
import pytest
from scipy import stats

import fastsoftmax
from fastsoftmax import (AliasSampler, Candidates, LogUniformSampler, UniformSampler,
                         UnigramSampler)

BACKENDS = [b for b, ok in fastsoftmax.available_backends().items() if ok is True]
COMPILED = [b for b in BACKENDS if b != "numpy"]
P_MIN = 1e-4  # chi-square p-value threshold (fixed seeds: deterministic, not flaky)


@pytest.fixture(params=BACKENDS)
def backend(request):
    with fastsoftmax.use_backend(request.param):
        yield request.param


@pytest.fixture
def threads():
    """Restore the thread count after a test changes it."""
    before = fastsoftmax.get_num_threads()
    yield
    fastsoftmax.set_num_threads(before)


def chi2_pvalue(draws, probs):
    """Goodness of fit of ``draws`` to ``probs`` (classes of p == 0 must be absent)."""
    counts = np.bincount(draws.ravel(), minlength=probs.size)
    assert counts.size == probs.size
    assert counts[probs == 0].sum() == 0
    keep = probs > 0
    expected = probs[keep] * draws.size
    assert expected.min() >= 5, "test design: too few expected draws per class"
    return stats.chisquare(counts[keep], expected * (counts[keep].sum() / expected.sum())).pvalue


def zipf_weights(n, with_zeros=False, seed=0):
    w = 1.0 / np.arange(1, n + 1) ** 1.1
    if with_zeros:
        w[np.random.default_rng(seed).random(n) < 0.3] = 0.0
    return w


# -- laws -------------------------------------------------------------------

def test_alias_chisquare(backend):
    rng = np.random.default_rng(1)
    w = 0.02 + rng.random(60) ** 3
    w[[3, 17, 40]] = 0.0
    s = AliasSampler(w, seed=2024)
    np.testing.assert_allclose(s.probs, w / w.sum(), rtol=1e-14)
    assert s.probs.dtype == np.float64 and np.isclose(s.probs.sum(), 1.0)
    draws = s.sample(2_000_000)
    assert draws.dtype == np.int64
    assert chi2_pvalue(draws, s.probs) > P_MIN


@pytest.mark.parametrize("make", [
    lambda: UniformSampler(37, seed=5),
    lambda: LogUniformSampler(40, seed=6),
    lambda: UnigramSampler(np.arange(30) % 7, distortion=0.75, seed=7),
], ids=["uniform", "loguniform", "unigram"])
def test_other_samplers_chisquare(backend, make):
    s = make()
    draws = s.sample((1000, 1000))
    assert draws.shape == (1000, 1000)
    assert chi2_pvalue(draws, s.probs) > P_MIN


def test_loguniform_law():
    v = 1000
    s = LogUniformSampler(v)
    k = np.arange(v)
    tf_law = (np.log(k + 2.0) - np.log(k + 1.0)) / np.log(v + 1.0)
    np.testing.assert_allclose(s.probs, tf_law, rtol=1e-12)
    assert np.isclose(s.probs.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(s.log_prob([[0, 5], [999, 1]]),
                               np.log(tf_law[[[0, 5], [999, 1]]]), rtol=1e-12)
    big = LogUniformSampler(2**32 - 1)  # no table: closed forms only
    assert np.isfinite(big.log_prob([0, 2**32 - 2])).all()


def test_unigram_distortion():
    counts = np.array([0, 1, 8, 27])
    np.testing.assert_allclose(UnigramSampler(counts, distortion=1 / 3).probs,
                               np.array([0, 1, 2, 3]) / 6, rtol=1e-14)
    np.testing.assert_allclose(UnigramSampler(counts).probs, counts / 36, rtol=1e-14)
    # huge counts ** distortion must not overflow
    p = UnigramSampler([1e300, 1e300, 0.0], distortion=3.0).probs
    np.testing.assert_allclose(p, [0.5, 0.5, 0.0])


def test_large_zipfian_table(backend):
    """Millions of classes with many zeros: zero classes never drawn, law right."""
    if backend == "numpy":
        pytest.skip("the reference build is a Python loop: too slow for 2e6 classes")
    n = 2_000_000
    w = zipf_weights(n, with_zeros=True)
    s = AliasSampler(w, seed=11)
    draws = s.sample(3_000_000)
    assert (w[draws] > 0).all()
    # goodness of fit on 40 groups of classes of comparable mass
    edges = np.searchsorted(np.cumsum(s.probs), np.linspace(0, 1, 41)[1:-1])
    edges = np.unique(np.concatenate([[0], edges, [n]]))
    group_p = np.add.reduceat(s.probs, edges[:-1])
    group_of = np.searchsorted(edges, draws, side="right") - 1
    assert chi2_pvalue(group_of, group_p) > P_MIN


# -- reproducibility ----------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda seed: AliasSampler(zipf_weights(5000, with_zeros=True), seed=seed),
    lambda seed: UniformSampler(12345, seed=seed),
    lambda seed: LogUniformSampler(50000, seed=seed),
], ids=["alias", "uniform", "loguniform"])
def test_same_draws_whatever_threads_and_backend(make, threads):
    with fastsoftmax.use_backend("numpy"):
        expected = make(3).sample(100_003, seed=99)
    for name in BACKENDS:
        with fastsoftmax.use_backend(name):
            for n_threads in (1, 2, 3):
                fastsoftmax.set_num_threads(n_threads)
                got = make(3).sample(100_003, seed=99)
                assert np.array_equal(got, expected), (name, n_threads)
                got = make(99).sample(100_003)  # the sampler's own seed, same stream
                assert np.array_equal(got, expected), (name, n_threads)


def test_stream(backend):
    s = AliasSampler(np.ones(1000), seed=5)
    a, b = s.sample(300), s.sample(700)
    assert np.array_equal(np.concatenate([a, b]), AliasSampler(np.ones(1000), seed=5).sample(1000))
    # a seeded call leaves the sampler's stream alone, and is reproducible
    c = s.sample(50, seed=1)
    assert np.array_equal(c, s.sample(50, seed=1))
    assert np.array_equal(s.sample(10), AliasSampler(np.ones(1000), seed=5).sample(1010)[1000:])
    # unseeded samplers and calls: fresh entropy, different draws
    u = UniformSampler(2**31)
    assert not np.array_equal(u.sample(20), u.sample(20))
    assert not np.array_equal(UniformSampler(2**31).sample(20), UniformSampler(2**31).sample(20))
    # SeedSequence and Generator seeds
    ss = np.random.SeedSequence(8)
    assert np.array_equal(s.sample(20, seed=ss), s.sample(20, seed=np.random.SeedSequence(8)))
    assert np.array_equal(s.sample(20, seed=np.random.default_rng(4)),
                          s.sample(20, seed=np.random.default_rng(4)))


def test_sample_shapes(backend):
    s = UniformSampler(10, seed=0)
    assert s.sample(7).shape == (7,)
    assert s.sample((2, 3, 4)).shape == (2, 3, 4)
    assert s.sample((0, 3)).shape == (0, 3)
    one = s.sample()
    assert isinstance(one, np.integer) and 0 <= one < 10
    assert np.array_equal(s.sample([2, 2], seed=3).ravel(), s.sample(4, seed=3))


# -- extreme weights --------------------------------------------------------

def test_extreme_weights(backend):
    s = AliasSampler([1e-300, 1e300, 1.0, 0.0], seed=0)
    assert np.isfinite(s.probs).all() and np.isclose(s.probs.sum(), 1.0)
    assert s.probs[1] == 1.0
    assert (s.sample(100_000) == 1).all()
    tiny = AliasSampler([1e-300, 2e-300, 0.0, 3e-300], seed=1)
    np.testing.assert_allclose(tiny.probs, [1 / 6, 2 / 6, 0, 3 / 6], rtol=1e-12)
    assert chi2_pvalue(tiny.sample(300_000), tiny.probs) > P_MIN
    sub = AliasSampler([5e-324, 0.0, 5e-324], seed=2)  # subnormal weights
    np.testing.assert_allclose(sub.probs, [0.5, 0, 0.5])
    assert chi2_pvalue(sub.sample(100_000), sub.probs) > P_MIN
    huge = AliasSampler([1e308, 1e308, 1e308], seed=3)  # the sum would overflow
    np.testing.assert_allclose(huge.probs, [1 / 3] * 3)
    single = AliasSampler([0, 0, 2.5, 0], seed=4)
    assert (single.sample(10_000) == 2).all()


def test_many_zeros(backend):
    n = 100_000
    w = np.zeros(n)
    nz = np.random.default_rng(3).choice(n, 10, replace=False)
    w[nz] = np.arange(1, 11)
    s = AliasSampler(w, seed=5)
    draws = s.sample(200_000)
    assert np.isin(draws, nz).all()
    assert chi2_pvalue(draws, s.probs) > P_MIN
    c = s.sample_candidates(10, [[int(nz[0])]], seed=1)
    assert sorted(c.sampled_ids.tolist()) == sorted(nz.tolist())
    with pytest.raises(ValueError, match="only 10 classes have nonzero probability"):
        s.sample_candidates(11, [[0]])


# -- candidates ---------------------------------------------------------------

def test_candidates_unique(backend):
    s = LogUniformSampler(1000, seed=0)
    true = np.array([[1, 5], [999, 0], [3, 3]])
    c = s.sample_candidates(64, true, seed=10)
    assert isinstance(c, Candidates)
    ids, t_exp, s_exp = c
    assert ids.shape == (64,) and ids.dtype == np.int64
    assert np.unique(ids).size == 64
    assert t_exp.shape == true.shape and t_exp.dtype == np.float64
    assert s_exp.shape == (64,) and s_exp.dtype == np.float64
    # the ids are the first 64 distinct ones of the seed's stream, in order
    stream = s.sample(10_000, seed=10)
    _, first = np.unique(stream, return_index=True)
    first.sort()
    assert np.array_equal(ids, stream[first[:64]])
    num_tries = first[63] + 1
    assert num_tries > 64  # a log-uniform law repeats small ids
    p = s.probs
    np.testing.assert_allclose(s_exp, -np.expm1(num_tries * np.log1p(-p[ids])), rtol=1e-12)
    np.testing.assert_allclose(t_exp, -np.expm1(num_tries * np.log1p(-p[true])), rtol=1e-12)
    # reproducible
    again = s.sample_candidates(64, true, seed=10)
    for x, y in zip(c, again):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("n, size", [(1, 5), (7, 1), (10, 1000), (100_000, 4096)])
def test_first_occurrences(n, size, monkeypatch):
    # sorting (id, position) keys must give np.unique(return_index=True)'s answer,
    # and so must its fallback for keys that would overflow
    s = UniformSampler(n)
    rng = np.random.default_rng(size)
    stream = rng.integers(0, n, size)
    _, want = np.unique(stream, return_index=True)
    want.sort()
    assert np.array_equal(s._first_occurrences(stream), want)
    monkeypatch.setattr(s, "_n", 2**62)
    assert np.array_equal(s._first_occurrences(stream), want)


def test_candidates_not_unique(backend):
    s = UnigramSampler([5, 1, 0, 3], seed=0)
    c = s.sample_candidates(100, [[0], [3]], unique=False, seed=4)
    assert np.array_equal(c.sampled_ids, s.sample(100, seed=4))
    np.testing.assert_allclose(c.sampled_expected_count, 100 * s.probs[c.sampled_ids])
    np.testing.assert_allclose(c.true_expected_count, 100 * s.probs[[[0], [3]]])
    # as many distinct ids as classes: fine with unique=False only
    with pytest.raises(ValueError, match="unique=True"):
        s.sample_candidates(4, [[0]])
    assert s.sample_candidates(4, [[0]], unique=False).sampled_ids.shape == (4,)


def test_candidates_without_repeats_use_num_sampled_times_p(backend):
    s = UniformSampler(10**9, seed=0)  # repeats are (almost) impossible
    c = s.sample_candidates(5, [[7]], seed=3)
    np.testing.assert_allclose(c.sampled_expected_count, 5e-9, rtol=1e-12)
    np.testing.assert_allclose(c.true_expected_count, [[5e-9]], rtol=1e-12)


@pytest.mark.parametrize("make, atol", [
    (lambda: UniformSampler(60), 0.03),
    # TF's formula plugs the random num_tries into P(id in num_tries draws);
    # num_tries grows when the likeliest ids repeat, so for them it
    # overestimates the inclusion rate by a few percent: the approximation
    # TensorFlow makes too.
    (lambda: LogUniformSampler(60), 0.085),
], ids=["uniform", "loguniform"])
def test_expected_counts_match_inclusion_rates(backend, make, atol):
    """Unique sampling: the expected counts approximate P(id in the sample)."""
    s = make()
    num_sampled, calls = 12, 2000
    included = np.zeros(60)
    predicted = np.zeros(60)
    for seed in range(calls):
        c = s.sample_candidates(num_sampled, np.arange(60)[None], seed=seed)
        included[c.sampled_ids] += 1
        predicted += c.true_expected_count[0]
    assert (included > 0).all()
    np.testing.assert_allclose(included / calls, predicted / calls, atol=atol)
    assert included.sum() == num_sampled * calls
    assert abs(predicted.sum() / calls - num_sampled) < 0.05 * num_sampled
    # unique=False: the expected count is exactly the mean number of occurrences
    counts = np.zeros(60)
    for seed in range(300):
        ids = s.sample_candidates(num_sampled, [[0]], unique=False, seed=seed).sampled_ids
        counts += np.bincount(ids, minlength=60)
    np.testing.assert_allclose(counts / 300, num_sampled * s.probs, atol=0.12)


def test_log_prob():
    s = AliasSampler([0.0, 1.0, 3.0])
    np.testing.assert_allclose(s.log_prob([[1, 2], [2, 1]]),
                               np.log([[0.25, 0.75], [0.75, 0.25]]))
    assert s.log_prob([0])[0] == -np.inf
    u = UniformSampler(4)
    np.testing.assert_allclose(u.log_prob(np.arange(4)), np.log(0.25))
    np.testing.assert_allclose(u.probs, 0.25)
    assert s.num_classes == 3 and u.num_classes == 4
    assert "num_classes=3" in repr(s)


# -- errors ---------------------------------------------------------------------

@pytest.mark.parametrize("weights, fragment", [
    ([1.0, -0.5], "non-negative"),
    ([1.0, np.nan], "NaN"),
    ([np.inf, 1.0], "infinite"),
    ([0.0, 0.0], "all zero"),
    ([], "empty"),
    ([[1.0, 2.0]], "1-D"),
    (3.0, "1-D"),
])
def test_bad_weights(weights, fragment):
    with pytest.raises(ValueError, match=fragment):
        AliasSampler(weights)
    with pytest.raises(ValueError, match=fragment):
        UnigramSampler(weights)


def test_bad_arguments():
    with pytest.raises(TypeError, match="complex"):
        AliasSampler([1 + 1j, 2])
    with pytest.raises(ValueError, match="distortion must be finite"):
        UnigramSampler([1, 2], distortion=np.nan)
    with pytest.raises(ValueError, match="num_classes"):
        UniformSampler(0)
    with pytest.raises(ValueError, match="num_classes"):
        LogUniformSampler(2**32)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        LogUniformSampler(10.5)
    s = UniformSampler(10)
    with pytest.raises(ValueError, match="size must be non-negative"):
        s.sample(-1)
    with pytest.raises(TypeError, match="size"):
        s.sample(2.5)
    with pytest.raises(ValueError, match="seed must be non-negative"):
        s.sample(3, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        s.sample(3, seed="abc")
    with pytest.raises(IndexError, match=r"ids\[1\] = 10 is out of range"):
        s.log_prob([0, 10])
    with pytest.raises(IndexError, match=r"true_classes\[0, 1\] = -1"):
        s.sample_candidates(2, [[1, -1]])
    with pytest.raises(ValueError, match="integer class ids"):
        s.sample_candidates(2, [[1.5]])
    with pytest.raises(ValueError, match="num_sampled must be >= 1"):
        s.sample_candidates(0, [[1]])
    with pytest.raises(ValueError, match="only 10 classes"):
        s.sample_candidates(11, [[1]])


def test_pickle():
    import pickle
    for s in (AliasSampler([1, 2, 0, 3], seed=1), UnigramSampler([1, 2], seed=2),
              LogUniformSampler(100, seed=3), UniformSampler(7, seed=4)):
        s.sample(5)
        clone = pickle.loads(pickle.dumps(s))
        assert np.array_equal(clone.sample(50), s.sample(50))  # same stream position
        np.testing.assert_array_equal(clone.probs, s.probs)


def test_threads_share_a_sampler(backend):
    """Concurrent unseeded calls take disjoint parts of the sampler's stream."""
    from concurrent.futures import ThreadPoolExecutor
    s = AliasSampler(np.ones(2**20), seed=123)
    name = fastsoftmax.get_backend()

    def work(_):
        with fastsoftmax.use_backend(name):
            return s.sample(10_000)

    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(work, range(8)))
    together = np.sort(np.concatenate(parts))
    expected = np.sort(AliasSampler(np.ones(2**20), seed=123).sample(80_000))
    assert np.array_equal(together, expected)
