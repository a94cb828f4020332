"""One 64-byte vector of floats as a Numba value (``Vec``), for loops whose
accumulators must stay in registers: the short-row blocks of
``softmax._small_rows``.

LLVM keeps a loop-carried accumulator in a register only when it is a
value, not memory: a block of lanes accumulated through a small array on
the stack (``acc[r] = max(acc[r], x[j * W + r])`` for ``r < W``) was loaded
and stored every iteration, and with ``W`` a constant LLVM unrolled the
``r`` loop and split the array into ``W`` scalars that the SLP vectoriser
did not put back together (float32 rows of 16: the max loop became 16
``vmaxss``).  A ``Vec`` variable is one LLVM vector value (``<16 x
float>``, ``<8 x double>``, or, widened, ``<16 x double>``): Numba's
locals become SSA values, so a loop over ``j`` carries it in registers.

The exponentials (``vec_exp``, ``vec_exp_np``) are ``_exp``'s algorithms
written out on vectors, the same operations in the same order with the
same flags, so they give the scalar functions' bits (tested); applying
the scalar function lane by lane and leaving the rest to the SLP
vectoriser left most of it scalar.
"""
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, models, register_model

from . import _exp as _e
from ._runtime import element_pointer

__all__ = ["exp_by_vectors", "vload", "vload_part", "vstore", "vzero", "vsplat", "vgt", "vsub", "vmul",
           "vadd", "vwiden", "vrecip", "vec_exp", "vec_exp_np", "vfinite_or_zero", "vcount_not_finite",
           "vadd_ne1", "vhead", "vhsum", "vhmax", "vcount_eq", "vany_eq", "vsh", "vpick_gt", "vrest1", "vis1",
           "vadd_neg", "vbits_nonneg", "vadd_not_pos0", "vcount_pos0",
           "by_halves", "masked_mem", "maxnum"]

_BYTES = 64


def by_halves(builder, a, op):
    """Codegen helper: the lanes of vector ``a`` combined by halves with
    ``op(builder, lo, hi)`` (``lanes[:h]`` with ``lanes[h:]``, repeatedly):
    the first lane of the result."""
    i32 = ir.IntType(32)
    n = a.type.count
    while n > 1:
        h = n // 2
        lo = builder.shuffle_vector(a, a, ir.Constant(ir.VectorType(i32, h), list(range(h))))
        hi = builder.shuffle_vector(a, a, ir.Constant(ir.VectorType(i32, h), list(range(h, n))))
        a = op(builder, lo, hi)
        n = h
    return builder.extract_element(a, ir.Constant(i32, 0))


def masked_mem(builder, op, vty):
    """Codegen helper: ``llvm.masked.load`` / ``llvm.masked.store`` for vectors ``vty``."""
    i1v = ir.VectorType(ir.IntType(1), vty.count)
    suffix = "v%d%s" % (vty.count, "f32" if isinstance(vty.element, ir.FloatType) else "f64")
    name = "llvm.masked.%s.%s.p0" % (op, suffix)
    fn = builder.module.globals.get(name)
    if fn is None:
        ptr, i32 = vty.as_pointer(), ir.IntType(32)
        if op == "load":
            fnty = ir.FunctionType(vty, [ptr, i32, i1v, vty])
        else:
            fnty = ir.FunctionType(ir.VoidType(), [vty, ptr, i32, i1v])
        fn = ir.Function(builder.module, fnty, name)
    return fn


def maxnum(builder, a, b):
    """Codegen helper: ``llvm.maxnum`` of two float vectors (a NaN lane gives the other's)."""
    ty = a.type
    name = "llvm.maxnum.v%d%s" % (ty.count, "f32" if isinstance(ty.element, ir.FloatType) else "f64")
    fn = builder.module.globals.get(name)
    if fn is None:
        fn = ir.Function(builder.module, ir.FunctionType(ty, [ty, ty]), name)
    return builder.call(fn, [a, b])


def _splat(builder, v, count):
    """Scalar ``v`` in each of ``count`` lanes."""
    i32 = ir.IntType(32)
    u = builder.insert_element(ir.Constant(ir.VectorType(v.type, count), None), v, ir.Constant(i32, 0))
    return builder.shuffle_vector(u, u, ir.Constant(ir.VectorType(i32, count), None))


class Vec(types.Type):
    """``count`` lanes of ``dtype`` held as one LLVM vector value."""

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count
        super().__init__(name="Vec(%s x %d)" % (dtype, count))


def _ety(dtype):
    return ir.FloatType() if dtype == types.float32 else ir.DoubleType()


def _vty(vec):
    return ir.VectorType(_ety(vec.dtype), vec.count)


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _vty(fe_type))


def _native(dtype):
    """The 64-byte vector type of float type ``dtype``."""
    return Vec(dtype, _BYTES // (4 if dtype == types.float32 else 8))


def _is_float_array(buf):
    return isinstance(buf, types.Array) and buf.dtype in (types.float32, types.float64)


@intrinsic
def vload(typingctx, buf, start):
    """``buf[start:start + W]`` (W = 64 bytes of ``buf``'s type), unchecked."""
    if not (_is_float_array(buf) and isinstance(start, types.Integer)):
        return None
    vec = _native(buf.dtype)

    def codegen(context, builder, signature, args):
        p = element_pointer(context, builder, signature, args, 0)
        return builder.load(builder.bitcast(p, _vty(vec).as_pointer()), align=buf.dtype.bitwidth // 8)

    return vec(buf, start), codegen


@intrinsic
def vload_part(typingctx, buf, start, n, fill):
    """Lane ``j`` = ``buf[start + j]`` for ``j < n``, else ``fill`` (a
    masked load: nothing past ``n`` is read), unchecked."""
    if not (_is_float_array(buf) and isinstance(start, types.Integer) and isinstance(n, types.Integer)
            and fill == buf.dtype):
        return None
    vec = _native(buf.dtype)

    def codegen(context, builder, signature, args):
        vty = _vty(vec)
        i32 = ir.IntType(32)
        p = builder.bitcast(element_pointer(context, builder, signature, args, 0), vty.as_pointer())
        nn = builder.trunc(context.cast(builder, args[2], signature.args[2], types.intp), i32)
        ok = builder.icmp_signed("<", ir.Constant(ir.VectorType(i32, vec.count), list(range(vec.count))),
                                 _splat(builder, nn, vec.count))
        return builder.call(masked_mem(builder, "load", vty),
                            [p, ir.Constant(i32, buf.dtype.bitwidth // 8), ok,
                             _splat(builder, args[3], vec.count)])

    return vec(buf, start, n, fill), codegen


@intrinsic
def vsplat(typingctx, buf, s):
    """``s`` in every lane of a vector of ``buf``'s type."""
    if not (_is_float_array(buf) and s == buf.dtype):
        return None
    vec = _native(buf.dtype)

    def codegen(context, builder, signature, args):
        return _splat(builder, args[1], vec.count)

    return vec(buf, s), codegen


@intrinsic
def vhsum(typingctx, v):
    """The lanes of ``v`` added by halves (``lanes[:h] + lanes[h:]``,
    repeatedly): a scalar of ``v``'s type, in a fixed order."""
    if not isinstance(v, Vec):
        return None

    def codegen(context, builder, signature, args):
        return by_halves(builder, args[0], lambda b, lo, hi: b.fadd(lo, hi))

    return v.dtype(v), codegen


@intrinsic
def vhmax(typingctx, v):
    """The largest lane of ``v``, NaN ignored (``maxnum`` by halves; NaN
    only if every lane is)."""
    if not isinstance(v, Vec):
        return None

    def codegen(context, builder, signature, args):
        return by_halves(builder, args[0], maxnum)

    return v.dtype(v), codegen


@intrinsic
def vcount_eq(typingctx, v, s):
    """How many lanes of ``v`` equal ``s``."""
    if not (isinstance(v, Vec) and s == v.dtype):
        return None

    def codegen(context, builder, signature, args):
        x = args[0]
        eq = builder.fcmp_ordered("==", x, _splat(builder, args[1], v.count))
        bits = builder.bitcast(eq, ir.IntType(v.count))
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(v.count)])
        return builder.zext(builder.call(fn, [bits]), context.get_value_type(types.intp))

    return types.intp(v, s), codegen


@intrinsic
def vany_eq(typingctx, a, b):
    """Whether some lane of ``a`` equals the same lane of ``b`` (ordered: a
    NaN equals nothing)."""
    if not (isinstance(a, Vec) and a == b):
        return None

    def codegen(context, builder, signature, args):
        eq = builder.fcmp_ordered("==", args[0], args[1])
        bits = builder.bitcast(eq, ir.IntType(a.count))
        return builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(a.count), 0))

    return types.boolean(a, b), codegen


@intrinsic
def vstore(typingctx, buf, start, v):
    """``buf[start:start + W] = v``, unchecked."""
    if not (_is_float_array(buf) and isinstance(start, types.Integer) and isinstance(v, Vec)
            and v.dtype == buf.dtype):
        return None

    def codegen(context, builder, signature, args):
        p = element_pointer(context, builder, signature, args, 0)
        builder.store(args[2], builder.bitcast(p, args[2].type.as_pointer()),
                      align=buf.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(buf, start, v), codegen


@intrinsic
def vstore_nt(typingctx, buf, start, v):
    """``buf[start:start + W] = v`` as a streaming (non-temporal) store,
    unchecked; ``buf[start]`` must be 64-byte aligned (a misaligned
    streaming store faults: take spans from ``_nt_span``).  Where vectors
    are narrower than 64 bytes (AVX2), LLVM splits it into stores to
    consecutive addresses, so each 64-byte line is written whole in turn."""
    if not (_is_float_array(buf) and isinstance(start, types.Integer) and isinstance(v, Vec)
            and v.dtype == buf.dtype):
        return None

    def codegen(context, builder, signature, args):
        p = element_pointer(context, builder, signature, args, 0)
        st = builder.store(args[2], builder.bitcast(p, args[2].type.as_pointer()), align=64)
        st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(buf, start, v), codegen


@intrinsic
def vzero(typingctx, ref, wide):
    """Lanes of +0: ``ref``'s lanes (a ``Vec``), in float64 if ``wide``
    (a literal bool) is true."""
    if not (isinstance(ref, Vec) and isinstance(wide, types.BooleanLiteral)):
        return None
    vec = Vec(types.float64, ref.count) if wide.literal_value else ref

    def codegen(context, builder, signature, args):
        return ir.Constant(_vty(vec), None)

    return vec(ref, wide), codegen


def _binary(doc, emit):
    def impl(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            return None

        def codegen(context, builder, signature, args):
            return emit(builder, args[0], args[1])

        return a(a, b), codegen

    impl.__doc__ = doc
    return intrinsic(impl)


vgt = _binary("``a if a > b else b``, lane by lane (one ``vmaxps``; a NaN ``a`` gives ``b``).",
              lambda b, x, y: b.select(b.fcmp_ordered(">", x, y), x, y))
vsub = _binary("``a - b``, lane by lane.", lambda b, x, y: b.fsub(x, y))
vmul = _binary("``a * b``, lane by lane.", lambda b, x, y: b.fmul(x, y))
vadd = _binary("``a + b``, lane by lane.", lambda b, x, y: b.fadd(x, y))


@intrinsic
def vwiden(typingctx, v):
    """``v`` in float64 (exact; ``v`` itself if float64)."""
    if not isinstance(v, Vec):
        return None
    wide = Vec(types.float64, v.count)

    def codegen(context, builder, signature, args):
        if v.dtype == types.float64:
            return args[0]
        return builder.fpext(args[0], _vty(wide))

    return wide(v), codegen


@intrinsic
def vrecip(typingctx, s, ref):
    """``1 / s`` (float64 lanes, divided in float64) rounded to ``ref``'s type."""
    if not (isinstance(s, Vec) and s.dtype == types.float64 and isinstance(ref, Vec)
            and ref.count == s.count):
        return None

    def codegen(context, builder, signature, args):
        one = ir.Constant(args[0].type, [ir.Constant(ir.DoubleType(), 1.0)] * s.count)
        q = builder.fdiv(one, args[0])
        return q if ref.dtype == types.float64 else builder.fptrunc(q, _vty(ref))

    return ref(s, ref), codegen


@intrinsic
def vfinite_or_zero(typingctx, v):
    """``v`` where finite, else +0, lane by lane."""
    if not isinstance(v, Vec):
        return None

    def codegen(context, builder, signature, args):
        x = args[0]
        fin = builder.fcmp_ordered("==", builder.fsub(x, x), ir.Constant(x.type, None))
        return builder.select(fin, x, ir.Constant(x.type, None))

    return v(v), codegen


@intrinsic
def vcount_not_finite(typingctx, v, n):
    """How many of the first ``n`` lanes of ``v`` are +inf or NaN."""
    if not (isinstance(v, Vec) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        x = args[0]
        cnt = x.type.count
        i32 = ir.IntType(32)
        inf = ir.Constant(x.type.element, float("inf"))
        bad = builder.fcmp_unordered("==", x, ir.Constant(x.type, [inf] * cnt))
        nn = builder.trunc(context.cast(builder, args[1], signature.args[1], types.intp), i32)
        splat = builder.shuffle_vector(builder.insert_element(ir.Constant(ir.VectorType(i32, cnt), None),
                                                              nn, ir.Constant(i32, 0)),
                                       ir.Constant(ir.VectorType(i32, cnt), None),
                                       ir.Constant(ir.VectorType(i32, cnt), [0] * cnt))
        live = builder.icmp_unsigned("<", ir.Constant(ir.VectorType(i32, cnt), list(range(cnt))), splat)
        bits = builder.bitcast(builder.and_(bad, live), ir.IntType(cnt))
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(cnt)])
        return builder.zext(builder.call(fn, [bits]), context.get_value_type(types.intp))

    return types.intp(v, n), codegen


def _consts(ty, values):
    return [ir.Constant(ty, [ir.Constant(ty.element, float(v))] * ty.count) for v in values]


def _reduce(b, t, shift):
    """``_exp._reduce32`` / ``_reduce64`` on vector ``t``, the same
    operations in the same order (with the same 'contract' flag):
    ``(p, nf, kd)``, ``exp(t) = p * 2**n``, ``kd = n + shift``."""
    f32 = isinstance(t.type.element, ir.FloatType)
    fl = ("contract",)
    log2e, hi, lo = _consts(t.type, (_e._LOG2E_F, _e._LN2_HI_F, _e._LN2_LO_F) if f32 else
                            (_e._LOG2E, _e._LN2_HI, _e._LN2_LO))
    coef = _consts(t.type, (_e._D6, _e._D5, _e._D4, _e._D3, _e._D2) if f32 else
                   (_e._C11, _e._C10, _e._C9, _e._C8, _e._C7, _e._C6, _e._C5, _e._C4, _e._C3, _e._C2))
    one, = _consts(t.type, (1.0,))
    shift, = _consts(t.type, (shift,))
    kd = b.fadd(b.fmul(t, log2e, flags=fl), shift, flags=fl)
    nf = b.fsub(kd, shift, flags=fl)
    r = b.fsub(t, b.fmul(nf, hi, flags=fl), flags=fl)
    r = b.fsub(r, b.fmul(nf, lo, flags=fl), flags=fl)
    q = coef[0]
    for c in coef[1:]:
        q = b.fadd(b.fmul(q, r, flags=fl), c, flags=fl)
    p = b.fadd(one, b.fadd(r, b.fmul(b.fmul(r, r, flags=fl), q, flags=fl), flags=fl), flags=fl)
    return p, nf, kd


def _pow2(b, kd):
    """``_exp._pow2_from_shifted`` on a vector."""
    f32 = isinstance(kd.type.element, ir.FloatType)
    ity = ir.VectorType(ir.IntType(32 if f32 else 64), kd.type.count)
    mant, bias = (23, 127) if f32 else (52, 1023)
    bits = b.shl(b.bitcast(kd, ity), ir.Constant(ity, [mant] * kd.type.count))
    bits = b.add(bits, ir.Constant(ity, [bias << mant] * kd.type.count))
    return b.bitcast(bits, kd.type)


def _clamp_below(b, x, lo):
    """``lo if x < lo else x`` (a NaN passes)."""
    lo, = _consts(x.type, (lo,))
    return b.select(b.fcmp_ordered("<", x, lo), lo, x)


def _exp_np_ir(b, x):
    """``_exp.exp32_np`` / ``exp64_np`` lane by lane."""
    f32 = isinstance(x.type.element, ir.FloatType)
    t = _clamp_below(b, x, _e._NP_LO32 if f32 else _e._NP_LO64)
    p, nf, kd = _reduce(b, t, _e._SHIFT32_NP if f32 else _e._SHIFT64_NP)
    scale, = _consts(x.type, (_e._NP_SCALE32 if f32 else _e._NP_SCALE64,))
    return b.fmul(b.fmul(p, _pow2(b, kd), flags=("contract",)), scale, flags=("contract",))


def _exp_ir(b, x):
    """``_exp.exp32`` / ``exp64`` lane by lane."""
    f32 = isinstance(x.type.element, ir.FloatType)
    fl = ("contract",)
    t = _clamp_below(b, x, _e._LO32 if f32 else _e._LO64)
    hi, = _consts(x.type, (_e._HI32 if f32 else _e._HI64,))
    t = b.select(b.fcmp_ordered(">", t, hi), hi, t)
    shift = _e._SHIFT32 if f32 else _e._SHIFT64
    p, nf, kd = _reduce(b, t, shift)
    half, sh = _consts(x.type, (0.5, shift))
    name = "llvm.floor.v%d%s" % (x.type.count, "f32" if f32 else "f64")
    floor = b.module.globals.get(name) or ir.Function(b.module, ir.FunctionType(x.type, [x.type]), name)
    n1 = b.call(floor, [b.fmul(nf, half, flags=fl)])
    n2 = b.fsub(nf, n1, flags=fl)
    s1 = _pow2(b, b.fadd(n1, sh, flags=fl))
    s2 = _pow2(b, b.fadd(n2, sh, flags=fl))
    return b.fmul(b.fmul(p, s1, flags=fl), s2, flags=fl)


def _lanewise(emit, doc):
    """An intrinsic ``f(v)`` computed by ``emit(builder, vector)``."""
    def impl(typingctx, v):
        if not isinstance(v, Vec):
            return None

        def codegen(context, builder, signature, args):
            return emit(builder, args[0])

        return v(v), codegen

    impl.__doc__ = doc
    return intrinsic(impl)


@intrinsic
def vadd_ne1(typingctx, acc, v):
    """``acc + v`` in the lanes where ``v`` is not 1 (NaN included), ``acc``
    where it is (a masked add)."""
    if not (isinstance(acc, Vec) and acc == v):
        return None

    def codegen(context, builder, signature, args):
        a, x = args
        one = ir.Constant(x.type, [ir.Constant(x.type.element, 1.0)] * x.type.count)
        return builder.select(builder.fcmp_ordered("==", x, one), a, builder.fadd(a, x))

    return acc(acc, v), codegen


@intrinsic
def vhead(typingctx, v, n, fill):
    """``v`` with its first ``n`` lanes replaced by ``fill``."""
    if not (isinstance(v, Vec) and isinstance(n, types.Integer) and fill == v.dtype):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        nn = builder.trunc(context.cast(builder, args[1], signature.args[1], types.intp), i32)
        head = builder.icmp_signed("<", ir.Constant(ir.VectorType(i32, v.count), list(range(v.count))),
                                   _splat(builder, nn, v.count))
        return builder.select(head, _splat(builder, args[2], v.count), args[0])

    return v(v, n, fill), codegen


def _ones(x):
    return ir.Constant(x.type, [ir.Constant(x.type.element, 1.0)] * x.type.count)


vsh = _lanewise(lambda b, x: b.select(
    b.fcmp_unordered("!=", x, ir.Constant(x.type, [ir.Constant(x.type.element, float("-inf"))]
                                          * x.type.count)), x, ir.Constant(x.type, None)),
    "``v if v != -inf else +0``, lane by lane (a running max's shift; NaN stays NaN).")
vrest1 = _lanewise(lambda b, x: b.select(b.fcmp_unordered("!=", x, _ones(x)), x, ir.Constant(x.type, None)),
                   "``v if v != 1 else +0``, lane by lane (NaN stays NaN).")
vis1 = _lanewise(lambda b, x: b.select(b.fcmp_ordered("==", x, _ones(x)), _ones(x), ir.Constant(x.type, None)),
                 "``1 if v == 1 else +0``, lane by lane.")


@intrinsic
def vpick_gt(typingctx, a, b, x, y):
    """``x if a > b else y``, lane by lane (ordered: a NaN gives ``y``)."""
    if not (isinstance(a, Vec) and a == b == x == y):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[2], args[3])

    return a(a, b, x, y), codegen


def _ibits(builder, x):
    """Float vector ``x``'s bits as integers of its width."""
    width = 32 if isinstance(x.type.element, ir.FloatType) else 64
    return builder.bitcast(x, ir.VectorType(ir.IntType(width), x.type.count))


def _sign_set(builder, x):
    """Lanes of ``x`` with the sign bit set (an integer test: -0 and NaNs included)."""
    b = _ibits(builder, x)
    return builder.icmp_signed("<", b, ir.Constant(b.type, None))


def _is_pos0(builder, x):
    """Lanes of ``x`` that are +0 (every bit clear)."""
    b = _ibits(builder, x)
    return builder.icmp_signed("==", b, ir.Constant(b.type, None))


def _masked_add(doc, keep):
    """An intrinsic ``f(acc, v, d)``: ``acc + v`` in the lanes where
    ``keep(builder, d)``, ``acc`` elsewhere (a masked add)."""
    def impl(typingctx, acc, v, d):
        if not (isinstance(acc, Vec) and acc == v == d):
            return None

        def codegen(context, builder, signature, args):
            a, x, dd = args
            return builder.select(keep(builder, dd), builder.fadd(a, x), a)

        return acc(acc, v, d), codegen

    impl.__doc__ = doc
    return intrinsic(impl)


vadd_neg = _masked_add("``acc + v`` where ``d``'s sign bit is set (``d < 0``, -0, a NaN with the sign "
                       "set), ``acc`` elsewhere.", _sign_set)
vadd_not_pos0 = _masked_add("``acc + v`` where ``d`` is not +0 (NaN included), ``acc`` where it is.",
                            lambda b, d: b.not_(_is_pos0(b, d)))


@intrinsic
def vcount_pos0(typingctx, n, d):
    """``n + 1`` where ``d`` is +0, ``n`` elsewhere, lane by lane."""
    if not (isinstance(n, Vec) and n == d):
        return None

    def codegen(context, builder, signature, args):
        n_, dd = args
        return builder.select(_is_pos0(builder, dd), builder.fadd(n_, _ones(n_)), n_)

    return n(n, d), codegen


@intrinsic
def vbits_nonneg(typingctx, d):
    """The lanes of ``d`` whose sign bit is clear, as the bits of an integer
    (bit ``l``: lane ``l``; +0, positive values and NaNs with the sign clear)."""
    if not isinstance(d, Vec):
        return None

    def codegen(context, builder, signature, args):
        clear = builder.not_(_sign_set(builder, args[0]))
        bits = builder.bitcast(clear, ir.IntType(d.count))
        return builder.zext(bits, context.get_value_type(types.intp))

    return types.intp(d), codegen


vec_exp_np = _lanewise(_exp_np_ir, "``fexp_np`` of every lane (arguments <= 0, -inf or NaN).")
vec_exp = _lanewise(_exp_ir, "``fexp`` of every lane.")



@njit(cache=True)
def exp_by_vectors(x, out, np_only):
    """Testing helper: ``out[:n] = exp(x[:n])`` by ``vec_exp_np`` (if
    ``np_only``) or ``vec_exp``, ``n`` the largest multiple of the lane count
    (x and out: 1-D, contiguous)."""
    w = 64 // x.itemsize
    for i in range(0, x.shape[0] - w + 1, w):
        if np_only:
            vstore(out, i, vec_exp_np(vload(x, i)))
        else:
            vstore(out, i, vec_exp(vload(x, i)))
