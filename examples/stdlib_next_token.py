"""Next-token prediction over the Python standard library, 50,000 classes.

The corpus is every ``.py`` file of the running interpreter's standard library
(``sysconfig.get_paths()["stdlib"]``; ``site-packages`` and ``dist-packages``
are left out, since they are not the standard library), split into tokens by
:mod:`tokenize`. Comments and non-logical newlines are dropped; ``NEWLINE``,
``INDENT``, ``DEDENT`` and the end of a file become the tokens ``<NEWLINE>``,
``<INDENT>``, ``<DEDENT>`` and ``<EOF>``; every other token is its text. A file
that fails to tokenize is skipped.

Files are split at random into training and held-out files (10% held out). The
classes are the ``--vocab`` (default 50,000) most frequent training tokens plus
one ``<UNK>`` class (index 0) that every other token is mapped to, so the
output layer has ``vocab + 1`` rows. Out-of-vocabulary tokens are *kept* as
``<UNK>`` targets, both in training and in the held-out loss.

The model is log-bilinear: the previous ``--window`` tokens each have an
embedding (one table per position; a start-of-file token pads the first
positions), their sum ``h`` feeds a linear output layer
``logits = h @ W.T + b`` with ``W`` of shape ``(V, dim)`` and ``b`` of shape
``(V,)``. It is trained twice from the same initial parameters, with plain
minibatch SGD:

* **full softmax**: ``fastsoftmax.cross_entropy_grad(logits, target,
  grad_out=logits)`` on the full ``batch x V`` logits, a dense update of
  ``W`` and ``b``;
* **sampled softmax**: ``fastsoftmax.sampled_softmax_loss(W, b, labels, h,
  num_sampled, sampler=UnigramSampler(counts, distortion=0.75),
  return_grad=True)``, which reads only the true and sampled rows of ``W``,
  and the sparse update ``W[g.ids] -= lr * g.weights``.

After every epoch both runs are scored with the *full* softmax cross-entropy on
the same held-out positions (``fastsoftmax.cross_entropy``), and the training
time of the epoch is printed. ``--plot PATH`` draws both curves (against epochs
and against training time) to a PNG when matplotlib is installed.

Run::

    python examples/stdlib_next_token.py                   # the full run
    python examples/stdlib_next_token.py --max-files 40 --epochs 2 --train-tokens 5000
    python examples/stdlib_next_token.py --plot next_token.png
"""
from __future__ import annotations

import argparse
import collections
import io
import math
import os
import sysconfig
import time
import tokenize

import numpy as np

try:
    import fastsoftmax
except ImportError:  # running from a source checkout that is not installed
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    import fastsoftmax

UNK = "<UNK>"
_RENAMED = {
    tokenize.NEWLINE: "<NEWLINE>",
    tokenize.INDENT: "<INDENT>",
    tokenize.DEDENT: "<DEDENT>",
    tokenize.ENDMARKER: "<EOF>",
}
_DROPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING}
_NOT_STDLIB = {"site-packages", "dist-packages", "__pycache__"}


# --------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------

def stdlib_files(root=None):
    """Sorted paths of the standard library's ``.py`` files.

    Parameters
    ----------
    root : str or None
        Folder to walk; default ``sysconfig.get_paths()["stdlib"]``.
        ``site-packages``, ``dist-packages`` and ``__pycache__`` folders are
        skipped.

    Examples
    --------
    >>> any(path.endswith(os.sep + "tokenize.py") for path in stdlib_files())
    True
    """
    root = root or sysconfig.get_paths()["stdlib"]
    paths = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in _NOT_STDLIB)
        paths.extend(os.path.join(folder, n) for n in sorted(names) if n.endswith(".py"))
    return paths


def tokenize_source(source):
    """The token strings of Python source text, as this example counts them.

    Examples
    --------
    >>> tokenize_source("if x:\\n    y = 1  # note\\n")
    ['if', 'x', ':', '<NEWLINE>', '<INDENT>', 'y', '=', '1', '<NEWLINE>', '<DEDENT>', '<EOF>']
    """
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [_RENAMED.get(t.type, t.string) for t in tokens if t.type not in _DROPPED]


def _tokenize_file(path):
    with tokenize.open(path) as handle:  # honours the file's coding cookie
        return tokenize_source(handle.read())


def load_corpus(*, max_files=None, max_tokens=None, heldout_fraction=0.1, seed=0, root=None):
    """Tokenize the standard library and split its files into train / held out.

    Files are shuffled with `seed`; the first ``max(1, round(heldout_fraction
    * n))`` of them are held out. `max_files` keeps only that many (shuffled)
    files, `max_tokens` stops reading once that many tokens have been read.

    Returns
    -------
    dict
        ``train`` and ``heldout`` (lists of per-file token lists),
        ``n_files`` (files read), ``n_skipped`` (files that failed to
        tokenize), ``n_tokens``.
    """
    paths = stdlib_files(root)
    order = np.random.default_rng(seed).permutation(len(paths))
    paths = [paths[i] for i in order]
    if max_files is not None:
        paths = paths[:max_files]
    n_heldout = max(1, round(heldout_fraction * len(paths)))
    corpus = {"train": [], "heldout": [], "n_files": 0, "n_skipped": 0, "n_tokens": 0}
    for i, path in enumerate(paths):
        if max_tokens is not None and corpus["n_tokens"] >= max_tokens:
            break
        try:
            tokens = _tokenize_file(path)
        except (SyntaxError, UnicodeDecodeError, tokenize.TokenError, ValueError, OSError):
            corpus["n_skipped"] += 1
            continue
        corpus["heldout" if i < n_heldout else "train"].append(tokens)
        corpus["n_files"] += 1
        corpus["n_tokens"] += len(tokens)
    return corpus


def build_vocab(files, vocab_size=50_000):
    """Classes: ``<UNK>`` (index 0) and the `vocab_size` most frequent tokens.

    Ties are broken by the token's text, so the vocabulary is reproducible.

    Returns
    -------
    itos : list of str
        Class index -> token.
    counts : ndarray of int64
        Training count of each class; ``counts[0]`` counts the tokens mapped
        to ``<UNK>``.

    Examples
    --------
    >>> itos, counts = build_vocab([["a", "b", "a", "c"]], vocab_size=2)
    >>> itos, counts.tolist()
    (['<UNK>', 'a', 'b'], [1, 2, 1])
    """
    counter = collections.Counter()
    for tokens in files:
        counter.update(tokens)
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:vocab_size]
    itos = [UNK] + [token for token, _ in ranked]
    counts = np.array([0] + [c for _, c in ranked], dtype=np.int64)
    counts[0] = sum(counter.values()) - counts[1:].sum()
    return itos, counts


def make_examples(files, stoi, window):
    """``(contexts, targets)``: the `window` previous token ids of every token.

    Context ids index the input embeddings, whose last row (``len(stoi)``) is
    the start-of-file padding; targets are class indices (``<UNK>`` is 0).

    Examples
    --------
    >>> ctx, tgt = make_examples([["a", "b", "z"]], {"<UNK>": 0, "a": 1, "b": 2}, 2)
    >>> ctx.tolist(), tgt.tolist()
    ([[3, 3], [3, 1], [1, 2]], [1, 2, 0])
    """
    pad = len(stoi)
    contexts, targets = [], []
    for tokens in files:
        ids = np.array([stoi.get(t, 0) for t in tokens], dtype=np.int64)
        padded = np.concatenate([np.full(window, pad, dtype=np.int64), ids])
        # column j holds the token window - j places back (oldest first)
        contexts.append(np.stack([padded[j:j + len(ids)] for j in range(window)], axis=1))
        targets.append(ids)
    if not targets:
        return np.empty((0, window), np.int64), np.empty(0, np.int64)
    return np.concatenate(contexts), np.concatenate(targets)


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

class LogBilinear:
    """``logits = (sum_j E[j][context_j]) @ W.T + b``, trained with SGD.

    ``E`` has shape ``(window, V + 1, dim)`` (the extra row is the padding),
    ``W`` ``(V, dim)`` and ``b`` ``(V,)``.
    """

    def __init__(self, num_classes, dim, window, *, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.E = (0.1 * rng.standard_normal((window, num_classes + 1, dim))).astype(dtype)
        self.W = (0.1 * rng.standard_normal((num_classes, dim))).astype(dtype)
        self.b = np.zeros(num_classes, dtype)

    def copy(self):
        other = object.__new__(LogBilinear)
        other.E, other.W, other.b = self.E.copy(), self.W.copy(), self.b.copy()
        return other

    def hidden(self, contexts):
        h = self.E[0][contexts[:, 0]]
        for j in range(1, contexts.shape[1]):
            h += self.E[j][contexts[:, j]]
        return h

    def update_embeddings(self, contexts, grad_hidden, lr):
        step = lr * grad_hidden
        for j in range(contexts.shape[1]):
            np.subtract.at(self.E[j], contexts[:, j], step)

    def heldout_loss(self, contexts, targets, chunk=1024):
        """Mean full-softmax cross-entropy (nats), in chunks of rows."""
        total = 0.0
        for start in range(0, len(targets), chunk):
            h = self.hidden(contexts[start:start + chunk])
            logits = h @ self.W.T
            logits += self.b
            total += fastsoftmax.cross_entropy(
                logits, targets[start:start + chunk], reduction="sum"
            )
        return total / max(len(targets), 1)


def _full_softmax_step(model, contexts, targets, lr):
    h = model.hidden(contexts)
    logits = h @ model.W.T
    logits += model.b
    # loss and d(loss)/d(logits) in one pass, the gradient written over the logits
    loss, grad = fastsoftmax.cross_entropy_grad(logits, targets, grad_out=logits)
    grad_hidden = grad @ model.W
    model.W -= lr * (grad.T @ h)
    model.b -= lr * grad.sum(axis=0)
    model.update_embeddings(contexts, grad_hidden, lr)
    return loss


def _sampled_softmax_step(model, contexts, targets, lr, num_sampled, sampler):
    h = model.hidden(contexts)
    loss, g = fastsoftmax.sampled_softmax_loss(
        model.W, model.b, targets[:, None], h, num_sampled, model.W.shape[0],
        sampler=sampler, reduction="mean", return_grad=True,
    )
    model.W[g.ids] -= lr * g.weights
    model.b[g.ids] -= lr * g.biases
    model.update_embeddings(contexts, g.inputs, lr)
    return float(loss)


# --------------------------------------------------------------------------
# experiment
# --------------------------------------------------------------------------

def run(
    *,
    max_files=None,
    max_tokens=None,
    vocab=50_000,
    window=2,
    dim=64,
    epochs=3,
    batch_size=256,
    lr=1.0,
    num_sampled=1024,
    distortion=0.75,
    train_tokens=80_000,
    eval_tokens=10_000,
    heldout_fraction=0.1,
    seed=0,
    plot=None,
    verbose=True,
):
    """Train with full and with sampled softmax; return both histories.

    Parameters
    ----------
    max_files, max_tokens : int or None
        Caps on the corpus read (see :func:`load_corpus`).
    vocab : int
        Number of most frequent tokens kept as classes (plus ``<UNK>``).
    window : int
        Number of previous tokens the model sees.
    dim : int
        Embedding width.
    epochs : int
        Passes over the training examples, for each run.
    batch_size : int
        Minibatch size.
    lr : float
        SGD learning rate (both runs, every parameter).
    num_sampled : int
        Negatives per minibatch for the sampled run.
    distortion : float
        Exponent of the unigram counts for the sampler.
    train_tokens, eval_tokens : int or None
        Size of the random subsets of training and held-out positions used
        (``None``: all of them). Full-softmax training costs about
        ``6 * dim * V`` flops per token, so this is what sets the run time.
    heldout_fraction : float
        Fraction of the files held out.
    seed : int
        Seeds the file split, the subsets, the initialisation, the shuffling
        and the sampler.
    plot : str or None
        Write both curves to this PNG (needs matplotlib; skipped otherwise).
    verbose : bool
        Print progress and results.

    Returns
    -------
    dict
        ``num_classes``, ``n_files``, ``n_skipped``, ``n_tokens``,
        ``n_train``, ``n_eval``, ``unk_fraction`` (of the evaluated held-out
        targets), and for each of ``"full"`` and ``"sampled"``: a dict with
        ``heldout_loss`` (index 0 before training, then one per epoch),
        ``train_loss`` (each run's own training objective, per epoch) and
        ``epoch_seconds`` (training time of each epoch, evaluation excluded).
    """
    say = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    corpus = load_corpus(max_files=max_files, max_tokens=max_tokens,
                         heldout_fraction=heldout_fraction, seed=seed)
    itos, counts = build_vocab(corpus["train"], vocab)
    stoi = {token: i for i, token in enumerate(itos)}
    num_classes = len(itos)
    train_ctx, train_tgt = make_examples(corpus["train"], stoi, window)
    eval_ctx, eval_tgt = make_examples(corpus["heldout"], stoi, window)

    rng = np.random.default_rng(seed)
    if train_tokens is not None and train_tokens < len(train_tgt):
        keep = np.sort(rng.choice(len(train_tgt), train_tokens, replace=False))
        train_ctx, train_tgt = train_ctx[keep], train_tgt[keep]
    if eval_tokens is not None and eval_tokens < len(eval_tgt):
        keep = np.sort(rng.choice(len(eval_tgt), eval_tokens, replace=False))
        eval_ctx, eval_tgt = eval_ctx[keep], eval_tgt[keep]
    unk_fraction = float(np.mean(eval_tgt == 0)) if len(eval_tgt) else 0.0
    say(
        f"corpus: {corpus['n_files']} files ({corpus['n_skipped']} skipped, failed to tokenize), "
        f"{corpus['n_tokens']:,} tokens, read in {time.perf_counter() - t0:.1f} s\n"
        f"classes: {num_classes:,} ({num_classes - 1:,} most frequent training tokens + <UNK>); "
        f"<UNK> is {unk_fraction:.1%} of the evaluated held-out targets\n"
        f"training on {len(train_tgt):,} positions, held-out loss over {len(eval_tgt):,}; "
        f"window={window}, dim={dim}, batch={batch_size}, lr={lr}, "
        f"fastsoftmax backend {fastsoftmax.get_backend()}, {fastsoftmax.get_num_threads()} threads"
    )

    if num_sampled >= num_classes:
        num_sampled = num_classes - 1
        say(f"num_sampled lowered to {num_sampled} (fewer classes than asked for)")
    initial = LogBilinear(num_classes, dim, window, seed=seed)
    sampler = fastsoftmax.UnigramSampler(counts, distortion=distortion, seed=seed)
    runs = {
        "full": lambda m, c, t: _full_softmax_step(m, c, t, lr),
        "sampled": lambda m, c, t: _sampled_softmax_step(m, c, t, lr, num_sampled, sampler),
    }
    result = dict(
        num_classes=num_classes, n_files=corpus["n_files"], n_skipped=corpus["n_skipped"],
        n_tokens=corpus["n_tokens"], n_train=len(train_tgt), n_eval=len(eval_tgt),
        unk_fraction=unk_fraction,
    )
    for name, step in runs.items():
        label = "full softmax" if name == "full" else f"sampled softmax ({num_sampled} negatives)"
        model = initial.copy()
        order_rng = np.random.default_rng(seed + 1)  # both runs see the same batches
        history = {"heldout_loss": [model.heldout_loss(eval_ctx, eval_tgt)],
                   "train_loss": [], "epoch_seconds": []}
        say(f"{label}: epoch 0  held-out loss {history['heldout_loss'][0]:.4f}")
        for epoch in range(1, epochs + 1):
            order = order_rng.permutation(len(train_tgt))
            losses = []
            start_time = time.perf_counter()
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                losses.append(step(model, train_ctx[idx], train_tgt[idx]))
            seconds = time.perf_counter() - start_time
            history["epoch_seconds"].append(seconds)
            history["train_loss"].append(float(np.mean(losses)) if losses else math.nan)
            history["heldout_loss"].append(model.heldout_loss(eval_ctx, eval_tgt))
            say(
                f"{label}: epoch {epoch}  held-out loss {history['heldout_loss'][-1]:.4f}  "
                f"train objective {history['train_loss'][-1]:.4f}  {seconds:.1f} s"
            )
        result[name] = history

    full, sampled = result["full"], result["sampled"]
    ratio = sampled["heldout_loss"][-1] / full["heldout_loss"][-1]
    speed = sum(full["epoch_seconds"]) / max(sum(sampled["epoch_seconds"]), 1e-12)
    say(
        f"after {epochs} epochs: held-out loss full {full['heldout_loss'][-1]:.4f}, "
        f"sampled {sampled['heldout_loss'][-1]:.4f} ({100 * (ratio - 1):+.1f}%); "
        f"training time full {sum(full['epoch_seconds']):.1f} s, "
        f"sampled {sum(sampled['epoch_seconds']):.1f} s ({speed:.1f}x faster)"
    )
    if plot:
        _plot(result, plot, num_sampled, say)
    return result


def _plot(result, path, num_sampled, say):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no plot")
        return
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for name, label in (("full", "full softmax"),
                        ("sampled", f"sampled softmax ({num_sampled} negatives)")):
        history = result[name]
        epochs = np.arange(len(history["heldout_loss"]))
        seconds = np.concatenate([[0.0], np.cumsum(history["epoch_seconds"])])
        by_epoch.plot(epochs, history["heldout_loss"], marker="o", label=label)
        by_time.plot(seconds, history["heldout_loss"], marker="o", label=label)
    by_epoch.set_xlabel("epoch")
    by_epoch.set_xticks(epochs)
    by_time.set_xlabel("training time (s)")
    by_epoch.set_ylabel("held-out full-softmax loss (nats)")
    by_epoch.legend()
    fig.suptitle(f"Next token over the standard library, {result['num_classes']:,} classes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    say(f"plot written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-files", type=int, default=None, help="read at most this many files")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="stop reading files after this many tokens")
    parser.add_argument("--vocab", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--num-sampled", type=int, default=1024)
    parser.add_argument("--distortion", type=float, default=0.75)
    parser.add_argument("--train-tokens", type=int, default=80_000,
                        help="training positions per epoch (0: all)")
    parser.add_argument("--eval-tokens", type=int, default=10_000,
                        help="held-out positions scored (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="write the loss curves to this PNG (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    return run(
        max_files=args.max_files, max_tokens=args.max_tokens, vocab=args.vocab,
        window=args.window, dim=args.dim, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, num_sampled=args.num_sampled, distortion=args.distortion,
        train_tokens=args.train_tokens or None, eval_tokens=args.eval_tokens or None,
        seed=args.seed, plot=args.plot, verbose=not args.quiet,
    )


if __name__ == "__main__":
    main()
