"""Alias sampler draws and the sampled softmax loss with gradients (issue 5)."""


def test_alias_sampler(sampler_case, impl_tables, run_impl):
    (num_classes, draws), impl = sampler_case
    table = impl_tables.sampler(num_classes, draws)
    run_impl(table, impl, f"sampler {num_classes} Zipfian classes, {draws} draws",
             op="sampler", num_classes=num_classes, draws=draws)


def test_sampled_softmax_loss(sampled_case, impl_tables, run_impl):
    (v, d, b, s, dtype), impl = sampled_case
    table = impl_tables.sampled(v, d, b, s, dtype)
    run_impl(table, impl, f"sampled_softmax {dtype} V={v} D={d} B={b} S={s}",
             op="sampled_softmax", num_classes=v, dim=d, batch=b, num_sampled=s, dtype=dtype)
