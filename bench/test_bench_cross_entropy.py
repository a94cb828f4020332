"""Fused cross-entropy loss + gradient (issue 4's shapes) against a copy, NumPy and torch."""


def test_cross_entropy_grad(ce_case, impl_tables, run_impl):
    (shape, dtype), impl = ce_case
    table = impl_tables.cross_entropy(shape, dtype)
    run_impl(table, impl, f"cross_entropy_grad {dtype} {shape}",
             op="cross_entropy_grad", shape=list(shape), dtype=dtype)
