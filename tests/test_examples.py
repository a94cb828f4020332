"""The examples in examples/ train for real, on small slices of their data.

Each example is loaded from its file (examples/ is not a package) and run in
a reduced form that takes a few seconds; the checks are on what training must
do (loss falls, accuracy rises), never on timings.
"""
import importlib.util
import pathlib

import numpy as np
import pytest

import fastsoftmax

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
BACKENDS = [b for b, ok in fastsoftmax.available_backends().items() if ok is True]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits_mlp():
    pytest.importorskip("sklearn")
    return _load("digits_mlp")


@pytest.fixture(scope="module")
def next_token():
    return _load("stdlib_next_token")


# ---------------------------------------------------------------- digits


@pytest.mark.parametrize("backend", BACKENDS)
def test_digits_mlp_learns(digits_mlp, backend):
    result = digits_mlp.train(epochs=5, n_train=400, hidden=32, batch_size=32, lr=1e-2, seed=1,
                              backend=backend, verbose=False)
    acc, test_loss, train_loss = (result["test_accuracy"], result["test_loss"],
                                  result["train_loss"])
    assert len(acc) == len(test_loss) == 6 and len(train_loss) == 5
    assert acc[0] < 0.3  # chance level before training: ten classes
    assert acc[-1] > 0.8 and acc[-1] > acc[0] + 0.5
    assert test_loss[-1] < 0.5 * test_loss[0]
    assert train_loss[-1] < train_loss[0]
    assert result["n_train"] == 400 and result["n_test"] == 450
    # the fastsoftmax gradient used for training matches the NumPy one
    assert result["max_grad_diff"] < 1e-5
    assert result["fastsoftmax_seconds"] > 0 and result["numpy_seconds"] > 0


def test_numpy_cross_entropy_grad_matches_fastsoftmax(digits_mlp):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 10)) * 3
    target = rng.integers(0, 10, 7)
    loss, grad = digits_mlp.numpy_cross_entropy_grad(logits, target)
    ref_loss, ref_grad = fastsoftmax.cross_entropy_grad(logits, target)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)


def test_digits_mlp_command_line(digits_mlp, capsys):
    result = digits_mlp.main(["--epochs", "1", "--n-train", "100", "--hidden", "16", "--quiet"])
    out = capsys.readouterr().out
    assert "test accuracy" in out and "NumPy / fastsoftmax" in out
    assert 0.0 <= result["final_test_accuracy"] <= 1.0


# ------------------------------------------------------------ next token


def test_tokenizer_and_vocabulary(next_token):
    tokens = next_token.tokenize_source("def f(x):\n    return x  # hi\n\n")
    assert tokens == ["def", "f", "(", "x", ")", ":", "<NEWLINE>", "<INDENT>", "return", "x",
                      "<NEWLINE>", "<DEDENT>", "<EOF>"]
    itos, counts = next_token.build_vocab([["b", "a", "b", "c", "d"], ["c", "b"]], vocab_size=2)
    assert itos == ["<UNK>", "b", "c"]
    assert counts.tolist() == [2, 3, 2]  # "a" and "d" are <UNK>
    stoi = {t: i for i, t in enumerate(itos)}
    ctx, tgt = next_token.make_examples([["b", "a"], ["c"]], stoi, 3)
    pad = len(itos)
    assert ctx.tolist() == [[pad, pad, pad], [pad, pad, 1], [pad, pad, pad]]
    assert tgt.tolist() == [1, 0, 2]


def test_stdlib_files_exclude_site_packages(next_token):
    paths = next_token.stdlib_files()
    assert any(p.endswith("tokenize.py") for p in paths)
    assert not any("site-packages" in pathlib.Path(p).parts for p in paths)


def test_load_corpus_caps_and_split(next_token):
    corpus = next_token.load_corpus(max_files=10, seed=3)
    assert corpus["n_files"] + corpus["n_skipped"] == 10
    assert len(corpus["heldout"]) + len(corpus["train"]) == corpus["n_files"]
    assert len(corpus["heldout"]) >= 1
    capped = next_token.load_corpus(max_files=10, max_tokens=1, seed=3)
    assert capped["n_files"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_next_token_full_and_sampled_softmax_learn(next_token, backend):
    with fastsoftmax.use_backend(backend):
        result = next_token.run(max_files=20, vocab=1000, dim=16, epochs=3, batch_size=256,
                                num_sampled=64, train_tokens=6000, eval_tokens=1500, seed=0,
                                verbose=False)
    assert result["num_classes"] == 1001  # 1000 tokens + <UNK>
    assert result["n_train"] == 6000 and 0 < result["n_eval"] <= 1500
    for name in ("full", "sampled"):
        losses = result[name]["heldout_loss"]
        assert len(losses) == 4 and len(result[name]["epoch_seconds"]) == 3
        assert np.all(np.isfinite(losses))
        # from about log(V) down: training on either objective lowers the full-softmax loss
        assert losses[-1] < losses[0] - 1.0
        assert losses[-1] < losses[1]
    # both runs start from the same parameters
    assert result["full"]["heldout_loss"][0] == result["sampled"]["heldout_loss"][0]
    # sampled softmax ends near full softmax on this tiny problem too
    assert result["sampled"]["heldout_loss"][-1] < 1.2 * result["full"]["heldout_loss"][-1]


def test_next_token_plot(next_token, tmp_path):
    pytest.importorskip("matplotlib")
    history = {"heldout_loss": [7.0, 4.0, 3.5], "train_loss": [5.0, 4.0],
               "epoch_seconds": [1.0, 1.0]}
    result = {"num_classes": 2001, "full": history,
              "sampled": dict(history, epoch_seconds=[0.1, 0.1])}
    path = tmp_path / "curves.png"
    messages = []
    next_token._plot(result, str(path), 64, messages.append)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert messages == [f"plot written to {path}"]


def test_sampled_step_updates_only_true_and_sampled_rows(next_token):
    rng = np.random.default_rng(0)
    model = next_token.LogBilinear(500, 8, 2, seed=0)
    before = model.W.copy()
    contexts = rng.integers(0, 501, (32, 2))
    targets = rng.integers(0, 500, 32)
    sampler = fastsoftmax.UnigramSampler(np.arange(1, 501), distortion=0.75, seed=0)
    loss = next_token._sampled_softmax_step(model, contexts, targets, 0.5, 16, sampler)
    assert np.isfinite(loss) and loss > 0
    changed = set(np.flatnonzero(np.any(model.W != before, axis=1)).tolist())
    assert set(targets.tolist()) <= changed
    assert len(changed) <= len(set(targets.tolist())) + 16
