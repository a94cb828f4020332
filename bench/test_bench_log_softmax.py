"""log_softmax over the shapes of the roofline issue, every implementation."""
OP = "log_softmax"


def test_log_softmax(softmax_case, impl_tables, run_impl):
    (op, shape, dtype, axis), impl = softmax_case
    table = impl_tables.softmax(op, shape, dtype, axis)
    run_impl(table, impl, f"{op} {dtype} {shape} axis={axis}",
             op=op, shape=list(shape), dtype=dtype, axis=axis)
