"""Kernel backends of fastsoftmax and the contract that binds them.

A backend is a module (``reference`` for NumPy, ``numba_backend``,
``cython_backend``) exporting the functions below with the same names and
signatures.  The public functions validate and lay out every argument
(:mod:`fastsoftmax._validate`, :mod:`fastsoftmax._layout`) before calling a
kernel, so a kernel may rely on every precondition stated here and does no
checking of its own.  Kernels write into caller-supplied outputs and return
``None``.

Common preconditions
--------------------
* Float arrays are float32 or float64, native byte order, all arrays of one
  call of the same float dtype unless stated otherwise.
* "rows layout" ``(n, k)``: ``n >= 1``, ``k >= 1``, ``strides[1] ==
  itemsize``; the row stride is arbitrary (negative, or 0 for a broadcast
  input).
* An output may be the very same memory as an input (same data pointer and
  strides: in-place); it never overlaps an input in any other way.
* ``n_threads >= 1`` is the thread count to use for this call.  Results must
  not depend on it (fixed work partition and summation order).

Softmax family
--------------
``softmax_rows(x, out, log, n_threads)``
    Softmax (``log=False``) or log-softmax (``log=True``) of each row of
    ``x`` (rows layout) into ``out`` (rows layout, same shape).  A single long
    row (``n < n_threads``) is split across threads.
``softmax_cols(x, out, log, n_threads)``
    Same over axis 1 of 3-D ``(outer, k, inner)`` arrays with ``inner >= 2``
    and ``strides[2] == itemsize``; no transposed copy.

Semantics per slice (SciPy's), with ``m = max(slice)``:
    softmax:      ``e = exp(x - m); out = e / sum(e)``
    log_softmax:  ``m = 0 if m is not finite; t = x - m; out = t - log(sum(exp(t)))``
which gives: a slice holding NaN -> all NaN; softmax of a slice holding +inf
-> all NaN; log_softmax of a slice holding +inf -> -inf at finite entries,
NaN at +inf entries; an all -inf slice -> all NaN; a -inf entry among finite
ones -> 0 (softmax) / -inf (log_softmax).  Underflow goes through the
subnormal range as ``np.exp`` does.

Cross-entropy family
--------------------
``cross_entropy_index_rows(logits, target, weight, ignore_index,
label_smoothing, grad_scale, loss, grad, n_threads)``
    ``logits`` rows layout ``(n, C)``; ``target`` int64 ``(n,)`` contiguous,
    each entry ``ignore_index`` or in ``[0, C)``; ``weight`` float64 ``(C,)``
    contiguous or ``None`` (all ones); ``label_smoothing`` float in [0, 1];
    ``grad_scale`` float; ``loss`` float64 ``(n,)`` contiguous, written;
    ``grad`` rows layout ``(n, C)`` of the logits' dtype, or ``None`` for the
    loss only, and may be ``logits`` itself.
    Per row ``i`` with ``y = target[i]``, ``lse = log(sum(exp(z)))``,
    ``p = exp(z - lse)``, ``eps = label_smoothing``, ``W = sum(weight)``::

        loss[i] = (1-eps)*w[y]*(lse - z[y]) + eps/C * sum_c w[c]*(lse - z[c])
        grad[i, j] = grad_scale * (p[j]*((1-eps)*w[y] + eps/C*W)
                                   - (1-eps)*w[y]*(j == y) - eps/C*w[j])

    and ``loss[i] = 0``, ``grad[i, :] = 0`` where ``y == ignore_index``.
``cross_entropy_prob_rows(logits, target, weight, label_smoothing,
grad_scale, loss, grad, n_threads)``
    ``target`` rows layout ``(n, C)`` of the logits' dtype, entries >= 0 and
    not NaN.  With ``t = target*(1-eps) + eps/C``::

        loss[i] = sum_c w[c]*t[c]*(lse - z[c])
        grad[i, j] = grad_scale * (p[j]*sum_c w[c]*t[c] - w[j]*t[j])

A NaN in a logits row makes that row's loss and gradient NaN and nothing
else.

Optional
--------
``warmup()``: compile/load everything ahead of time (Numba), so that
benchmarks can report compile time separately from run time.

``softmax_fast(x, axis, out, log, n_threads)``: the public softmax's fast
path in compiled code, the one exception to "kernels do no checking": it
takes *unvalidated* public arguments and returns ``None`` unless ``x`` is
an aligned, C-ordered, native float32/float64 ndarray with at least one
element, ``axis`` is ``None``/-1/``x.ndim - 1`` and ``out`` is ``None`` or
an aligned, writeable, C-ordered ndarray of the same shape and dtype that
is ``x`` or does not overlap it; then it computes the result (into ``out``,
or a new array) and returns it.  It saves a small call the front end's
Python checks (the Cython backend has it).

``cross_entropy_fast(logits, target, axis, weight, ignore_index, reduction,
label_smoothing, want_grad, grad_out, n_threads)``: likewise for the public
cross-entropy, on unvalidated arguments: ``(loss, grad)`` exactly as the
general path gives them for C-ordered ``(n, C)`` float32/float64 logits,
an aligned C-ordered int64 target of shape ``(n,)`` with every entry in
``[0, C)`` or ``ignore_index``, ``weight`` None, exact int/str/float option
types and ``grad_out`` None, ``logits`` or a disjoint array; ``None`` for
anything else (bad class indices included).
"""
