"""Train a small NumPy multilayer perceptron on scikit-learn's handwritten digits.

The network is ``input (64) -> dense -> ReLU -> dense -> softmax (10)``, trained
with minibatch Adam on ``sklearn.datasets.load_digits`` (bundled with
scikit-learn, nothing is downloaded) and evaluated on a held-out, stratified
split. The loss and the gradient of the output layer come from one call to
:func:`fastsoftmax.cross_entropy_grad`; everything else is plain NumPy.

On every minibatch the same softmax/cross-entropy step is also computed with
the NumPy code in :func:`numpy_cross_entropy_grad`, on the same logits, and
both are timed (alternating which runs first), so the report at the end
compares the two on identical work. The NumPy result is only timed and
checked against fastsoftmax's; it is not used for training.

Run::

    python examples/digits_mlp.py                  # 40 epochs, ~97-98% accuracy
    python examples/digits_mlp.py --epochs 5 --n-train 300 --quiet

Needs scikit-learn (``pip install ".[examples]"``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

try:
    import fastsoftmax
except ImportError:  # running from a source checkout that is not installed
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
    import fastsoftmax


def numpy_cross_entropy_grad(logits, target):
    """Mean softmax cross-entropy and its gradient, written in plain NumPy.

    The baseline the example times fastsoftmax against: the numerically
    stable textbook form (shift by the row maximum, exponentiate, normalise).

    Parameters
    ----------
    logits : ndarray, shape (n, C)
        Unnormalised scores.
    target : ndarray of int, shape (n,)
        Class indices in ``[0, C)``.

    Returns
    -------
    loss : float
        Mean over the rows of ``-log softmax(logits)[target]``.
    grad : ndarray, shape (n, C)
        ``d loss / d logits``, in the dtype of `logits`.

    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = numpy_cross_entropy_grad(np.zeros((2, 4)), np.array([0, 3]))
    >>> round(loss, 6) == round(float(np.log(4)), 6)
    True
    >>> grad.sum(axis=1)
    array([0., 0.])
    """
    logits = np.asarray(logits)
    rows = np.arange(logits.shape[0])
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(sum_exp[:, 0]) - shifted[rows, target], dtype=np.float64))
    grad = exp / sum_exp
    grad[rows, target] -= 1.0
    grad /= logits.shape[0]
    return loss, grad


def load_data(*, test_size=0.25, n_train=None, seed=0, dtype=np.float32):
    """The digits as ``(X_train, X_test, y_train, y_test)``, pixels scaled to [0, 1].

    The split is stratified and seeded; `n_train` keeps only the first
    `n_train` training images (the test split is unchanged).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(dtype)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=seed
    )
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    return X_train, X_test, y_train.astype(np.int64), y_test.astype(np.int64)


class _Adam:
    """Adam (Kingma & Ba) over a list of parameter arrays, updated in place."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        step = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= step * m / (np.sqrt(v) + self.eps)


def _forward(X, W1, b1, W2, b2):
    pre = X @ W1 + b1
    hidden = np.maximum(pre, 0.0)
    return pre, hidden, hidden @ W2 + b2


def train(
    *,
    epochs=40,
    hidden=128,
    batch_size=64,
    lr=2e-3,
    weight_decay=1e-4,
    seed=0,
    n_train=None,
    test_size=0.25,
    dtype="float32",
    backend=None,
    verbose=True,
):
    """Train the MLP and return its history and timings.

    Parameters
    ----------
    epochs : int
        Passes over the training split.
    hidden : int
        Width of the ReLU hidden layer.
    batch_size : int
        Minibatch size.
    lr : float
        Adam learning rate.
    weight_decay : float
        L2 penalty on the weight matrices (added to their gradients).
    seed : int
        Seeds the split, the initialisation and the shuffling.
    n_train : int or None
        Keep only this many training images (for a quick run).
    test_size : float
        Fraction of the 1797 images held out for testing.
    dtype : str
        ``"float32"`` or ``"float64"``: the dtype of data and parameters.
    backend : str or None
        fastsoftmax backend for the cross-entropy step (``None``: current).
    verbose : bool
        Print the loss and accuracy after every epoch, and the timing report.

    Returns
    -------
    dict
        ``train_loss`` (mean minibatch loss per epoch), ``test_loss`` and
        ``test_accuracy`` (index 0 is before training, then one per epoch),
        ``final_test_accuracy``, ``n_train``, ``n_test``, ``steps``,
        ``fastsoftmax_seconds`` and ``numpy_seconds`` (total time of the
        softmax/cross-entropy step over all minibatches), ``max_grad_diff``
        (largest difference between the two gradients) and ``backend``.

    Examples
    --------
    >>> result = train(epochs=2, n_train=200, verbose=False)  # doctest: +SKIP
    >>> result["test_accuracy"][-1] > result["test_accuracy"][0]  # doctest: +SKIP
    True
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    X_train, X_test, y_train, y_test = load_data(
        test_size=test_size, n_train=n_train, seed=seed, dtype=dtype
    )
    n_features, n_classes = X_train.shape[1], 10

    # He initialisation for the ReLU layer, small output layer.
    W1 = (rng.standard_normal((n_features, hidden)) * np.sqrt(2.0 / n_features)).astype(dtype)
    b1 = np.zeros(hidden, dtype)
    W2 = (rng.standard_normal((hidden, n_classes)) * np.sqrt(1.0 / hidden)).astype(dtype)
    b2 = np.zeros(n_classes, dtype)
    params = [W1, b1, W2, b2]
    optimizer = _Adam(params, lr=lr)

    def evaluate():
        logits = _forward(X_test, *params)[2]
        loss = fastsoftmax.cross_entropy(logits, y_test, backend=backend)
        accuracy = float(np.mean(logits.argmax(axis=1) == y_test))
        return loss, accuracy

    # Warm up both implementations outside the timings (a JIT backend compiles
    # on its first call).
    warm_logits = _forward(X_train[:batch_size], *params)[2]
    fastsoftmax.cross_entropy_grad(warm_logits, y_train[:batch_size], backend=backend)
    numpy_cross_entropy_grad(warm_logits, y_train[:batch_size])

    loss0, acc0 = evaluate()
    history = {"train_loss": [], "test_loss": [loss0], "test_accuracy": [acc0]}
    if verbose:
        print(
            f"digits: {len(X_train)} train / {len(X_test)} test images, hidden={hidden}, "
            f"batch={batch_size}, {dtype.name}, fastsoftmax backend "
            f"{backend or fastsoftmax.get_backend()}"
        )
        print(f"epoch  0  test loss {loss0:.4f}  test accuracy {acc0:.4f}")

    time_fast = time_numpy = 0.0
    max_grad_diff = 0.0
    steps = 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X_train))
        batch_losses = []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = X_train[idx], y_train[idx]
            pre, hid, logits = _forward(xb, *params)

            # The step under study, fastsoftmax and NumPy on the same logits;
            # alternate which goes first so neither always gets the warm cache.
            def run_fast():
                t = time.perf_counter()
                out = fastsoftmax.cross_entropy_grad(logits, yb, backend=backend)
                return out, time.perf_counter() - t

            def run_numpy():
                t = time.perf_counter()
                out = numpy_cross_entropy_grad(logits, yb)
                return out, time.perf_counter() - t

            if steps % 2 == 0:
                (loss, grad), dt_fast = run_fast()
                (_, grad_np), dt_np = run_numpy()
            else:
                (_, grad_np), dt_np = run_numpy()
                (loss, grad), dt_fast = run_fast()
            time_fast += dt_fast
            time_numpy += dt_np
            max_grad_diff = max(max_grad_diff, float(np.max(np.abs(grad - grad_np))))
            steps += 1
            batch_losses.append(loss)

            # Backpropagation through the rest of the network, in NumPy.
            gW2 = hid.T @ grad + weight_decay * W2
            gb2 = grad.sum(axis=0)
            ghid = grad @ W2.T
            ghid *= pre > 0
            gW1 = xb.T @ ghid + weight_decay * W1
            gb1 = ghid.sum(axis=0)
            optimizer.step([gW1, gb1, gW2, gb2])

        train_loss = float(np.mean(batch_losses))
        test_loss, test_acc = evaluate()
        history["train_loss"].append(train_loss)
        history["test_loss"].append(test_loss)
        history["test_accuracy"].append(test_acc)
        if verbose:
            print(
                f"epoch {epoch:2d}  train loss {train_loss:.4f}  "
                f"test loss {test_loss:.4f}  test accuracy {test_acc:.4f}"
            )

    result = dict(
        history,
        final_test_accuracy=history["test_accuracy"][-1],
        n_train=len(X_train),
        n_test=len(X_test),
        steps=steps,
        fastsoftmax_seconds=time_fast,
        numpy_seconds=time_numpy,
        max_grad_diff=max_grad_diff,
        backend=backend or fastsoftmax.get_backend(),
    )
    if verbose:
        print(
            f"softmax/cross-entropy step over {steps} minibatches of {batch_size}x{n_classes}: "
            f"fastsoftmax {1e6 * time_fast / steps:.1f} us/step, "
            f"NumPy {1e6 * time_numpy / steps:.1f} us/step "
            f"(NumPy / fastsoftmax = {time_numpy / time_fast:.2f}); "
            f"largest gradient difference {max_grad_diff:.2e}"
        )
        print(f"final test accuracy {result['final_test_accuracy']:.4f}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None,
                        help="use only this many training images")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backend", default=None,
                        help="fastsoftmax backend (default: the current one)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    result = train(
        epochs=args.epochs, hidden=args.hidden, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, seed=args.seed, n_train=args.n_train,
        test_size=args.test_size, dtype=args.dtype, backend=args.backend,
        verbose=not args.quiet,
    )
    if args.quiet:
        print(
            f"test accuracy {result['final_test_accuracy']:.4f}; step time NumPy / fastsoftmax "
            f"= {result['numpy_seconds'] / result['fastsoftmax_seconds']:.2f}"
        )
    return result


if __name__ == "__main__":
    main()
