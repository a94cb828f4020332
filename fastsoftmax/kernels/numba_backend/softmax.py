"""Numba softmax / log_softmax kernels (rows and columns layouts).

See :mod:`fastsoftmax.kernels` for the contract.  Numerics, identical for
every thread count:

* **Rows** of ``k <= LONG_ROW`` elements: pass 1 finds the row maximum
  ``m``; pass 2 computes ``exp(x - m)`` (storing it for softmax) and its sum
  while the row is in cache; pass 3 scales by ``1/sum`` (softmax) or writes
  ``(x - m) - log(sum)`` (log_softmax, ``m`` replaced by 0 when not finite).
  Sums are in T, except that float32 log_softmax redoes a sum below
  ``_REDO_BELOW`` (a dominant max) in float64 (``_redo64``), as SciPy's float64 would be.
* **Long rows** (``k > LONG_ROW``) are cut into fixed chunks of ``CHUNK``
  elements (a partition that does not depend on the thread count).  Each
  chunk yields a ``(max, sum of exp(x - max))`` partial from one read; the
  partials are combined in chunk order (a chunk without a finite maximum is
  never rescaled, so an all ``-inf`` chunk cannot make a NaN); a final pass
  writes the result.  Chunks run in parallel when there are few rows.
* **Columns** ``(outer, k, inner)``: blocks of contiguous inner columns
  (``COL_BLOCK``, halved down to ``COL_SCAN`` for many threads: ``col_width``;
  every decision a column's bits depend on is taken per column or per span
  of ``COL_SCAN`` columns, so the width changes nothing but speed) keep a
  running maximum and a float64 sum of exponentials (an "online" softmax
  needing one ``exp`` per element, see ``_col_block``), then a second pass
  writes the result.  Columns holding non-finite values are redone by an exact
  three-pass loop, so special values behave as in SciPy.

Small problems run a serial kernel (no parallel-region start-up); larger
ones a ``prange`` kernel; in-place calls (``out`` is ``x``) run kernels that
take a single array, so that LLVM sees the aliasing and still vectorises.
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from ._exp import _always_inline, fexp, fexp_np, fmax, like, log64_ge1
from ._vec import (Vec, _splat, by_halves, masked_mem, vadd, vadd_ne1, vadd_neg, vadd_not_pos0,
                   vany_eq, vbits_nonneg, vcount_eq, vcount_not_finite, vcount_pos0, vec_exp, vec_exp_np,
                   vfinite_or_zero, vgt, vhead, vhmax, vhsum, vis1, vload, vload_part, vmul, vpick_gt,
                   vrecip, vrest1, vsh, vsplat, vstore, vstore_nt, vsub, vwiden, vzero)
from ._runtime import (LazyKernel, arr, check_layer, element_pointer, flat, keep_alive, parallel_lock,
                       prefetch_intrinsic, stack_array, use_threads, view)

__all__ = ["softmax_rows", "softmax_cols"]

#: rows longer than this use the chunked (long-row) algorithm
LONG_ROW = 1 << 16
#: chunk length of the long-row algorithm (elements)
CHUNK = 1 << 14
#: inner columns per block of the column kernel (at most: ``col_width``)
COL_BLOCK = 2048
#: rows per group of the column kernel's first pass
COL_GROUP = 8  # _col_group8 is written for 8
#: rows per pass of the column kernel's softmax writing pass (``_col_write4``)
COL_WRITE_ROWS = 4  # _col_write4 is written for 4
#: columns per rescaling test of the column kernel
COL_SUB = 16
#: columns per span of softmax's first pass over columns: in a span where
#: more than 1 in ``COL_AGAIN_VEC`` columns outgrew their references, all are
#: rebased and the group added again by vector passes, else the few one at a
#: time (``_col_again``).  Spans start at multiples of ``COL_SCAN`` columns,
#: as blocks do, so a column's bits do not depend on the block width.  (16:
#: float32 (32000, 4096) axis 0, 2 threads, rows with a trend (maxima that
#: move in many columns of a group), 8 and 64 measured too, within the noise
#: but for 8 on the steepest trend, 10% slower)
COL_SCAN = 64
COL_AGAIN_VEC = 16
#: softmax's first pass over columns takes the exponentials against a
#: reference that the running maximum may exceed by up to this much before
#: the column's sum is rescaled (``_col_sums_ref``).  The argument ``x - ref``
#: of the largest terms is then rounded to an ulp of at most this (against
#: the max it is exact): with 4, the benchmark's float32 errors where p > 0.01
#: are at most 2.1 ulp (2.3 before), 8 gives 3.9; below 4, the pass slows
#: (a max growing past its reference is common: 1 costs 0.68 of a copy, 4
#: 0.59, a plain read 0.57; (32000, 4096) float32, 2 threads)
COL_HEADROOM = 4.0
#: float32 log_softmax of blocks of at least ``COL_REF_LOG_W`` columns at
#: least ``COL_REF_LOG_K`` long takes softmax's references, with no headroom
#: (``_col_sums_ref``); other blocks take sums against each group's new max
#: (``_col_sums``).  References cost a column taken again one at a time at
#: every new max, frequent in the first rows and, in few columns, a large
#: part of the work (see ``_col_block``)
COL_REF_LOG_K = 16384
COL_REF_LOG_W = 512
#: rows at least this long are computed through a scratch row, prefetching the next row
SCRATCH_K = 2048
#: log_softmax of rows of at most this many bytes (in cache) is pipelined
#: (``_rows_range``): longer rows' lines would have left L1 by their writing
LOG_PIPE_BYTES = 4096
#: outputs of at least this many bytes are written with streaming stores
NT_MIN_BYTES = 16 << 20
#: elements between prefetch bursts in ``_row_scratch``
PF_BLOCK = 512
#: softmax rows of SCRATCH_K elements up to this many bytes are pipelined (``_rows_scratch_piped``)
PIPE_MAX_BYTES = 256 << 10
#: float32 log_softmax rows of SCRATCH_K elements up to this many bytes are
#: pipelined (``_rows_log_scratch_piped``; float64's up to PIPE_MAX_BYTES)
LOG_PIPE_F32_BYTES = 32 << 10
#: rows shorter than this use the block-of-rows algorithm (``_small_rows``),
#: float32 and float64 (see ``_small_k``)
SMALL_K_F32 = 64
SMALL_K_F64 = 32
#: rows per block of short rows (one lane each of a 64-byte vector): float32, float64
SMALL_LANES_F32 = 16
SMALL_LANES_F64 = 8
#: elements of a block of short rows' scratch (whole tiles: 64 x 16 float32, 32 x 8 float64)
_SMALL_CAP = 64 * SMALL_LANES_F32
#: rows of short-row log_softmax whose logs are taken together (a multiple of the block sizes)
_SMALL_GROUP = 64
#: short-row blocks: the rows of the block this many blocks ahead are prefetched
_SMALL_AHEAD = 4
_DBL_MAX = float(np.finfo(np.float64).max)
#: below this many elements a call runs serially
SERIAL_WORK = 1 << 15

# Floating-point flags.  Never 'nnan'/'ninf' (special values are part of
# the contract).  Only the sum loops get 'reassoc' (LLVM needs it to
# vectorise a sum): they are separate functions, so their flags stay on their
# own instructions after LLVM inlines them (a Numba-level inline would give
# them the caller's flags), and nothing else is reassociated: e.g.
# ``(x - m) - lse`` must not become ``x - (m + lse)``.  The exp functions
# likewise keep their own strict flags.
_FM = {"contract"}
_FM_SUM = {"reassoc", "nsz", "contract"}
_INLINE = dict(inline="always", fastmath=_FM)


_prefetch_l2 = prefetch_intrinsic(2, """Hint: bring ``buf[index]``'s cache line towards L2 (``llvm.prefetch``,
    read, moderate locality: for data needed a little later); never faults, any index is allowed.""")


_prefetch_l1 = prefetch_intrinsic(3, """Hint: bring ``buf[index]``'s cache line into L1 (``llvm.prefetch``,
    read, high locality: for data needed soon); never faults, any index is allowed.""")


@intrinsic
def _address(typingctx, buf, index):
    """The address of ``buf[index]`` (an integer), for alignment tests."""
    if not (isinstance(buf, types.Array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(element_pointer(context, builder, signature, args),
                                context.get_value_type(types.intp))

    return types.intp(buf, index), codegen


@intrinsic
def _recip(typingctx, v):
    """``1 / v``: a plain ``fdiv`` (no zero-division check, which would keep
    a loop of them from vectorising; 1/0 is inf)."""
    if v not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        return builder.fdiv(ir.Constant(args[0].type, 1.0), args[0])

    return v(v), codegen


#: bytes per non-temporal (streaming) store
_NT_BYTES = 64


@intrinsic
def _ordered_sum(typingctx, buf, start, length, init):
    """``init + buf[start] + buf[start + 1] + ...`` (``length`` terms), added
    strictly in this order: plain ``fadd`` without fast-math flags, so that
    no caller's flags can reorder or contract it."""
    if not (isinstance(buf, types.Array) and buf.dtype in (types.float32, types.float64)
            and isinstance(start, types.Integer) and isinstance(length, types.Integer)
            and init == buf.dtype):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, value=args[0])
        s0 = context.cast(builder, args[1], signature.args[1], types.intp)
        n = context.cast(builder, args[2], signature.args[2], types.intp)
        acc = cgutils.alloca_once_value(builder, args[3])
        with cgutils.for_range(builder, n) as loop:
            v = builder.load(builder.gep(ary.data, [builder.add(s0, loop.index)]))
            builder.store(builder.fadd(builder.load(acc), v), acc)
        return builder.load(acc)

    return buf.dtype(buf, start, length, init), codegen


def _fadd(builder, a, b):
    return builder.fadd(a, b)


@intrinsic
def _sum64(typingctx, buf, start, n):
    """float64 sum of ``buf[start:start + n]`` (float32 or float64), in a
    fixed order whatever the caller's flags: four accumulators of 8 lanes
    over chunks of 32 elements (float32 widened exactly), then chunks of 8
    into the first, the lanes by halves, then the last ``n % 8`` one by
    one.  Inline and vectorised by construction (a 'reassoc' loop needs a
    function of its own, whose call costs a reference count per array)."""
    if not (isinstance(buf, types.Array) and buf.dtype in (types.float32, types.float64)
            and isinstance(start, types.Integer) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        ety = context.get_value_type(signature.args[0].dtype)
        dty = ir.DoubleType()
        item = 4 if signature.args[0].dtype == types.float32 else 8
        base = element_pointer(context, builder, signature, args, 0)
        count = context.cast(builder, args[2], signature.args[2], types.intp)
        v8 = ir.VectorType(ety, 8)
        d8 = ir.VectorType(dty, 8)

        def load8(off):
            v = builder.load(builder.bitcast(builder.gep(base, [off]), v8.as_pointer()), align=item)
            return builder.fpext(v, d8) if item == 4 else v

        zero = ir.Constant(d8, None)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(4)]
        n32 = builder.udiv(count, ir.Constant(intp, 32))
        with cgutils.for_range(builder, n32) as loop:
            off = builder.mul(loop.index, ir.Constant(intp, 32))
            for q in range(4):
                o = builder.add(off, ir.Constant(intp, 8 * q))
                builder.store(builder.fadd(builder.load(accs[q]), load8(o)), accs[q])
        done = builder.mul(n32, ir.Constant(intp, 32))
        n8 = builder.udiv(builder.sub(count, done), ir.Constant(intp, 8))
        with cgutils.for_range(builder, n8) as loop:
            o = builder.add(done, builder.mul(loop.index, ir.Constant(intp, 8)))
            builder.store(builder.fadd(builder.load(accs[0]), load8(o)), accs[0])
        a = builder.fadd(builder.fadd(builder.load(accs[0]), builder.load(accs[1])),
                         builder.fadd(builder.load(accs[2]), builder.load(accs[3])))
        total = cgutils.alloca_once_value(builder, by_halves(builder, a, _fadd))
        done = builder.add(done, builder.mul(n8, ir.Constant(intp, 8)))
        with cgutils.for_range(builder, builder.sub(count, done)) as loop:
            v = builder.load(builder.gep(base, [builder.add(done, loop.index)]))
            if item == 4:
                v = builder.fpext(v, dty)
            builder.store(builder.fadd(builder.load(total), v), total)
        return builder.load(total)

    return types.float64(buf, start, n), codegen


class _VecGen:
    """Codegen helper of the 64-byte vector intrinsics on the float arrays
    of argument 0's type: ``w`` lanes, their vector types, the ``llvm.masked``
    load and store, and the arguments as ``intp`` (``arg``) or data pointers
    (``data``)."""

    def __init__(self, context, builder, signature, args):
        self.context, self.builder, self.signature, self.args = context, builder, signature, args
        self.f32 = signature.args[0].dtype == types.float32
        self.w = w = 16 if self.f32 else 8
        self.vty = ir.VectorType(ir.FloatType() if self.f32 else ir.DoubleType(), w)
        self.i32 = ir.IntType(32)
        self.v32 = ir.VectorType(self.i32, w)
        self.intp = context.get_value_type(types.intp)
        self.item = ir.Constant(self.i32, 4 if self.f32 else 8)
        self.iota = ir.Constant(self.v32, list(range(w)))
        self.load = masked_mem(builder, "load", self.vty)
        self.store = masked_mem(builder, "store", self.vty)

    def arg(self, pos):
        return self.context.cast(self.builder, self.args[pos], self.signature.args[pos], types.intp)

    def data(self, pos):
        return self.context.make_array(self.signature.args[pos])(self.context, self.builder,
                                                                 value=self.args[pos]).data

    def splat(self, v):
        """``v`` (an i32 or a float) in every lane."""
        return _splat(self.builder, v, self.w)

    def store_head(self, v, ptr, count):
        """Store lanes ``0:count`` of vector ``v`` at ``ptr`` (a pointer to
        ``vty``; ``count`` an i32, 0 to ``w``), nothing past them.  With
        AVX-512, one masked store; otherwise whole pieces of ``w / 2``,
        ``w / 4``, ..., 1 lanes, those in ``count``'s binary form, copied
        from the vector put on the stack: AVX2's masked stores
        (``vmaskmovps``/``vmaskmovpd``) are microcoded on AMD Zen 2, about a
        dozen cycles each (float32 (64, 10) softmax, a block of 16 rows
        turned back by 32 of them: 0.47 us of a 2.1 us call)."""
        b = self.builder
        w = v.type.count
        if _MASKED_STORES:
            iota = ir.Constant(ir.VectorType(self.i32, w), list(range(w)))
            ok = b.icmp_signed("<", iota, _splat(b, count, w))
            b.call(masked_mem(b, "store", v.type), [v, ptr, self.item, ok])
            return
        align = 4 if self.f32 else 8
        ety = self.vty.element
        full = b.icmp_signed("==", count, ir.Constant(self.i32, w))
        with b.if_else(full) as (then, otherwise):
            with then:
                b.store(v, ptr, align=align)
            with otherwise:
                tmp = cgutils.alloca_once(b, v.type)
                b.store(v, tmp)
                src = b.bitcast(tmp, ety.as_pointer())
                dst = b.bitcast(ptr, ety.as_pointer())
                off = ir.Constant(self.i32, 0)
                p = w // 2
                while p:
                    bit = b.and_(count, ir.Constant(self.i32, p))
                    with b.if_then(b.icmp_unsigned("!=", bit, ir.Constant(self.i32, 0))):
                        pty = ir.VectorType(ety, p).as_pointer() if p > 1 else ety.as_pointer()
                        piece = b.load(b.bitcast(b.gep(src, [off]), pty), align=align)
                        b.store(piece, b.bitcast(b.gep(dst, [off]), pty), align=align)
                    off = b.add(off, bit)
                    p //= 2


@intrinsic
def _tile_t(typingctx, src, sbase, sstride, nrows, ncols, dst, dbase, dstride, whole, fac, swhole):
    """Transpose a tile of at most W x W elements (W = 16 float32, 8
    float64: one 64-byte vector), in registers: ``dst[dbase + j * dstride
    + i] = src[sbase + i * sstride + j]`` for ``i < nrows``, ``j < ncols``
    (both at most W), times ``fac[j]`` when ``fac`` is a ``Vec`` of W
    lanes (None: no product); nothing else is read or written (masked
    loads, ``_VecGen.store_head``'s stores; plain ones for a full W x W
    tile).  ``whole`` (a literal bool): ``dst`` is scratch with room for
    all W rows of W, its rows ``j < ncols`` written with plain stores,
    zeros past ``nrows`` (a load right after a masked store cannot take
    its data from the store); rows past ``ncols`` may be left as they
    were.  ``swhole`` (a literal bool): ``src`` is such scratch, read with
    plain loads (zeros for rows past ``nrows``): on AMD Zen 2 a masked
    load (``vmaskmovps``) of data just stored waits for the store.

    log2(u) stages of u two-source shuffles on each u x u subtile, stage s
    swapping the off-diagonal s x s blocks of each 2s x 2s block (as the
    Cython backend's ``transpose``); u = W with AVX-512, W / 2 (32-byte
    vectors) otherwise, where a whole tile's 16 vectors of 64 bytes took
    32 of AVX2's 16 registers and spilled.  Subtiles past ``ncols`` (and,
    unless ``whole``, past ``nrows``) are skipped.  Zen 2, one thread,
    float32 (1024, 5) softmax in cache, per 16-row block: turning in 69 ->
    25 ns, turning back 72 -> 47 ns; the kernel 18.0 -> 9.9 us with
    ``swhole`` and ``store_head`` (same bits).

    History: the short-row blocks' turning around (``_small_rows``) had
    been element by element, which LLVM made gathers of, and AMD Zen 4's
    are slow (float32 (100000, 16) softmax, 2 threads: 13-14x a copy, 9x
    then; one thread, rows of 16 in cache: 33 -> 15 ns a row).  Softmax's
    turning back takes its product by 1 / sum here (``fac``), which saved
    a pass over the block's exponentials; with the stages (perfect shuffles
    before), one thread, (4000, 16) in cache: float32 34-36 -> 30-31 us,
    float64 60-62 -> 56-58 us; (2000, 33) float32 36-38 -> 32-34 us (same
    bits)."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)
            and src.dtype == dst.dtype and src.dtype in (types.float32, types.float64)
            and all(isinstance(a, types.Integer) for a in (sbase, sstride, nrows, ncols, dbase, dstride))
            and isinstance(whole, types.BooleanLiteral) and isinstance(swhole, types.BooleanLiteral)
            and (isinstance(fac, types.NoneType) or (isinstance(fac, Vec) and fac.dtype == src.dtype))):
        return None

    def codegen(context, builder, signature, args):
        g = _VecGen(context, builder, signature, args)
        w, i32, intp = g.w, g.i32, g.intp
        # subtiles of u x u: the whole tile in registers takes W vectors of
        # 64 bytes, 32 registers with AVX2's 32-byte ones (16 exist: spilled)
        u = w if _MASKED_STORES else w // 2
        uty = ir.VectorType(g.vty.element, u)
        align = 4 if g.f32 else 8
        sdata, ddata = g.data(0), g.data(5)
        sb, ss, nr, nc, db, ds = g.arg(1), g.arg(2), g.arg(3), g.arg(4), g.arg(6), g.arg(7)
        zero = ir.Constant(uty, None)
        load = masked_mem(builder, "load", uty)
        item = g.item
        iota = ir.Constant(ir.VectorType(i32, u), list(range(u)))
        nc32, nr32 = builder.trunc(nc, i32), builder.trunc(nr, i32)
        none = ir.Constant(ir.VectorType(ir.IntType(1), u), None)
        whole_dst, whole_src = whole.literal_value, swhole.literal_value

        def subtile(i0, j0, masked):
            # the lanes' mask once, and each row's by a scalar select: the
            # mask of both compares, row by row, took ~12 instructions a row
            cols = builder.icmp_signed("<", builder.add(iota, _splat(builder, ir.Constant(i32, j0), u)),
                                       _splat(builder, nc32, u))
            if isinstance(fac, Vec):
                f = builder.shuffle_vector(args[9], args[9], ir.Constant(ir.VectorType(i32, u),
                                                                         list(range(j0, j0 + u))))
            vecs = []
            for i in range(i0, i0 + u):
                off = builder.add(sb, builder.add(builder.mul(ss, ir.Constant(intp, i)), ir.Constant(intp, j0)))
                ptr = builder.bitcast(builder.gep(sdata, [off]), uty.as_pointer())
                if not masked:
                    v = builder.load(ptr, align=align)
                else:
                    row = builder.icmp_signed("<", ir.Constant(intp, i), nr)
                    if whole_src:
                        v = builder.select(row, builder.load(ptr, align=align), zero)
                    else:
                        v = builder.call(load, [ptr, item, builder.select(row, cols, none), zero])
                vecs.append(builder.fmul(v, f) if isinstance(fac, Vec) else v)
            st = 1
            while st < u:  # stage st swaps the off-diagonal st x st blocks of each 2st x 2st block
                tl = ir.Constant(ir.VectorType(i32, u), [l + u - st if l & st else l for l in range(u)])
                th = ir.Constant(ir.VectorType(i32, u), [l + u if l & st else l + st for l in range(u)])
                for i in range(u):
                    if not i & st:
                        a, b = vecs[i], vecs[i + st]
                        vecs[i] = builder.shuffle_vector(a, b, tl)
                        vecs[i + st] = builder.shuffle_vector(a, b, th)
                st *= 2
            left = builder.sub(nr32, ir.Constant(i32, i0))
            left = builder.select(builder.icmp_signed(">", left, ir.Constant(i32, u)), ir.Constant(i32, u), left)
            for jj in range(u):
                j = j0 + jj
                off = builder.add(db, builder.add(builder.mul(ds, ir.Constant(intp, j)), ir.Constant(intp, i0)))
                ptr = builder.bitcast(builder.gep(ddata, [off]), uty.as_pointer())
                if whole_dst or not masked:
                    builder.store(vecs[jj], ptr, align=align)
                else:
                    g.store_head(vecs[jj], ptr, builder.select(
                        builder.icmp_signed("<", ir.Constant(intp, j), nc), left, ir.Constant(i32, 0)))

        def tiles(masked):
            for i0 in range(0, w, u):
                for j0 in range(0, w, u):
                    if not masked:
                        subtile(i0, j0, False)
                        continue
                    # a subtile past ncols has nothing to write (scratch rows
                    # past ncols are not read), past nrows only zeros to scratch
                    need = builder.icmp_signed("<", ir.Constant(intp, j0), nc)
                    if not whole_dst:
                        need = builder.and_(need, builder.icmp_signed("<", ir.Constant(intp, i0), nr))
                    with builder.if_then(need):
                        subtile(i0, j0, True)

        full = builder.and_(builder.icmp_signed("==", nr, ir.Constant(intp, w)),
                            builder.icmp_signed("==", nc, ir.Constant(intp, w)))
        with builder.if_else(full) as (then, otherwise):
            with then:
                tiles(False)
            with otherwise:
                tiles(True)
        return context.get_dummy_value()

    return types.none(src, sbase, sstride, nrows, ncols, dst, dbase, dstride, whole, fac, swhole), codegen


@intrinsic
def _shifted_span(typingctx, src, sbase, dst, dbase, n, shift, lse):
    """``dst[dbase + j] = (src[sbase + j] - shift) - lse`` for ``j < n``, a
    64-byte vector at a time, the last one masked (no scalar remainder and
    no run-time overlap check: element ``j`` is read before it is written,
    so ``dst`` may be ``src``): log_softmax's writing of a short row.
    Whole vectors with plain loads and stores, only the rest masked (every
    vector masked before: float32 (100_000, 16) log_softmax, 2 threads,
    time / copy 2.59-2.81 -> 2.29-2.44; one thread, rows of 16 in cache,
    8.3 -> 7.2-7.4 ns a row; the same bits)."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.dtype == dst.dtype
            and src.dtype in (types.float32, types.float64) and shift == src.dtype and lse == src.dtype
            and all(isinstance(a, types.Integer) for a in (sbase, dbase, n))):
        return None

    def codegen(context, builder, signature, args):
        g = _VecGen(context, builder, signature, args)
        w, vty, i32, intp, item, iota, splat = g.w, g.vty, g.i32, g.intp, g.item, g.iota, g.splat
        sdata, ddata = g.data(0), g.data(2)
        sb, db, cnt = g.arg(1), g.arg(3), g.arg(4)
        shv, lsev = splat(args[5]), splat(args[6])
        load = g.load
        align = 4 if g.f32 else 8

        def ptrs(j0):
            return (builder.bitcast(builder.gep(sdata, [builder.add(sb, j0)]), vty.as_pointer()),
                    builder.bitcast(builder.gep(ddata, [builder.add(db, j0)]), vty.as_pointer()))

        # whole vectors with plain loads and stores, then the rest masked
        nfull = builder.udiv(cnt, ir.Constant(intp, w))
        with cgutils.for_range(builder, nfull) as loop:
            sp, dp = ptrs(builder.mul(loop.index, ir.Constant(intp, w)))
            v = builder.load(sp, align=align)
            builder.store(builder.fsub(builder.fsub(v, shv), lsev), dp, align=align)
        j0 = builder.mul(nfull, ir.Constant(intp, w))
        left = builder.trunc(builder.sub(cnt, j0), i32)
        with builder.if_then(builder.icmp_signed(">", left, ir.Constant(i32, 0))):
            sp, dp = ptrs(j0)
            ok = builder.icmp_signed("<", iota, splat(left))
            v = builder.call(load, [sp, item, ok, ir.Constant(vty, None)])
            g.store_head(builder.fsub(builder.fsub(v, shv), lsev), dp, left)
        return context.get_dummy_value()

    return types.none(src, sbase, dst, dbase, n, shift, lse), codegen


@njit(**_INLINE)
def _transpose(src, sb, ss, nrows, ncols, dst, db, ds, whole, fac, swhole=False):
    """``dst[db + j * ds + i] = src[sb + i * ss + j]`` (times ``fac[j]``,
    a ``Vec``, unless None: ``ncols`` at most one tile) for ``i < nrows``,
    ``j < ncols``, a ``_tile_t`` tile at a time; ``whole`` (a literal
    bool): ``dst`` is scratch with room for whole tiles, written whole
    (plain stores, zeros past ``nrows``/``ncols``); ``swhole``: ``src``
    is such scratch (plain loads)."""
    tw = 64 // src.itemsize
    for i0 in range(0, nrows, tw):
        for j0 in range(0, ncols, tw):
            _tile_t(src, sb + i0 * ss + j0, ss, min(tw, nrows - i0), min(tw, ncols - j0),
                    dst, db + j0 * ds + i0, ds, whole, fac, swhole)


@intrinsic
def _stream_fence(typingctx):
    """Orders the calling thread's earlier streaming stores before what follows."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _nt_store(typingctx, buf, index, value):
    """``buf[index] = value`` as a non-temporal (streaming) store, for loops
    that LLVM vectorises: the vector stores it makes of them keep the hint
    (``vmovntps``/``vmovntpd``), so that a loop computing its values writes
    them to memory directly (no scratch row and second copy loop: the
    column kernel's writing pass measured 20-25% faster).  The store claims
    64-byte alignment, which a streaming vector store needs (a misaligned
    one faults), and without which LLVM would not keep the hint: run such a
    loop only over a span from ``_nt_span``, a whole number of 64-byte
    vectors from a 64-byte boundary, indexed from 0 there.  No fence (see
    ``_stream_fence``)."""
    if not (isinstance(buf, types.Array) and isinstance(index, types.Integer)
            and value == buf.dtype and buf.dtype in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        st = builder.store(args[2], element_pointer(context, builder, signature, args), align=_NT_BYTES)
        st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(buf, index, value), codegen


@njit(**_INLINE)
def _nt_span(dst):
    """``(head, n)``: ``dst[head:head + n]`` is the longest run of whole
    64-byte vectors of ``dst`` from its first 64-byte boundary, for
    ``_nt_store`` loops (n = 0 when there is none, or when ``dst`` is not
    even item-aligned)."""
    k = dst.shape[0]
    item = dst.itemsize
    addr = _address(dst, 0)
    head = ((_NT_BYTES - addr % _NT_BYTES) % _NT_BYTES) // item
    if addr % item != 0 or head > k:
        return k, 0
    return head, (k - head) // (_NT_BYTES // item) * (_NT_BYTES // item)


@njit(**_INLINE)
def _put(d, c, v, nt):
    """``d[c] = v``; ``nt`` (a constant at each call): as a streaming store."""
    if nt:
        _nt_store(d, c, v)
    else:
        d[c] = v


#: the elementwise operations of ``_map`` (``v``, ``u``, ``w``: the
#: sources' elements): v * a; (v - a) - b; exp(v - a) * b (v - a <= 0, -inf
#: or NaN); v * a - b; v * a - b * u; and with per-element shift and scale
#: (the columns' writing pass): (v - u) - w; exp(v - u) * w
_MUL, _LOG, _EXP, _AFFINE, _AFFINE_W, _LOG_COLS, _EXP_COLS = 0, 1, 2, 3, 4, 5, 6


@njit(**_INLINE)
def _op(op, v, a, b, u, w):
    if op == _MUL:
        return v * a
    if op == _LOG:
        return (v - a) - b
    if op == _EXP:
        return fexp_np(v - a) * b
    if op == _AFFINE:
        return v * a - b
    if op == _AFFINE_W:
        return v * a - b * u
    if op == _LOG_COLS:
        return (v - u) - w
    return fexp_np(v - u) * w


@njit(**_INLINE)
def _exp_vectors(sv, uv, wv, dv, a, b, cols, nt):
    """``_EXP`` (``cols``: ``_EXP_COLS``) of the whole 64-byte vectors of
    ``dv`` from its start, a vector at a time (``vec_exp_np``: the same
    operations, the same bits as ``fexp_np``); returns how many elements
    it wrote.  LLVM's vectorising of the scalar loop held several vectors
    of the exp's polynomial at once and spilled registers: one thread,
    16384 elements in cache, 1.90 -> 1.48 ns an element in float64, 0.60 ->
    0.48 in float32 (Zen 2, AVX2).  ``nt`` (``dv`` 64-byte aligned): with
    streaming stores."""
    w = 64 // sv.itemsize
    whole = dv.shape[0] - dv.shape[0] % w
    av = vsplat(sv, a)
    bv = vsplat(sv, b)
    for j in range(0, whole, w):
        if cols:
            v = vmul(vec_exp_np(vsub(vload(sv, j), vload(uv, j))), vload(wv, j))
        else:
            v = vmul(vec_exp_np(vsub(vload(sv, j), av)), bv)
        if nt:
            vstore_nt(dv, j, v)
        else:
            vstore(dv, j, v)
    return whole


@njit(**_INLINE)
def _map_part(src, src2, src3, dst, a, b, op, start, n, nt):
    """``_map`` of ``[start, start + n)``, through views from there (a loop
    from ``start`` would wrap negative indices, and LLVM would gather)."""
    sv = view(src, start, n)
    uv = view(src2, start, n)
    wv = view(src3, start, n)
    dv = view(dst, start, n)
    for j in range(n):
        _put(dv, j, _op(op, sv[j], a, b, uv[j], wv[j]), nt)


@njit(**_INLINE)
def _map(src, src2, src3, dst, a, b, op, nt):
    """``dst[j] = op(src[j], a, b, src2[j], src3[j])`` (``op``: one of
    ``_MUL`` ... ``_EXP_COLS``, a constant at each call; pass ``src`` for a
    source the op does not read); ``nt``: with streaming stores over
    ``_nt_span(dst)``, straight from the loop (no fence: see
    ``_stream_fence``)."""
    head, n = _nt_span(dst) if nt else (0, 0)
    _map_part(src, src2, src3, dst, a, b, op, 0, head, False)
    _map_part(src, src2, src3, dst, a, b, op, head, n, True)
    _map_part(src, src2, src3, dst, a, b, op, head + n, dst.shape[0] - head - n, False)


@njit(**_INLINE)
def _exp_part(src, src2, src3, dst, a, b, cols, start, n, nt):
    """``_map_exp`` of ``[start, start + n)`` (views from there, as
    ``_map_part``): whole vectors by ``_exp_vectors``, the rest one by one."""
    sv = view(src, start, n)
    uv = view(src2, start, n)
    wv = view(src3, start, n)
    dv = view(dst, start, n)
    j0 = _exp_vectors(sv, uv, wv, dv, a, b, cols, nt)
    op = _EXP_COLS if cols else _EXP
    for j in range(j0, n):
        _put(dv, j, _op(op, sv[j], a, b, uv[j], wv[j]), nt)


@njit(**_INLINE)
def _map_exp(src, src2, src3, dst, a, b, cols, nt):
    """``_map`` of ``_EXP`` (``cols``: ``_EXP_COLS``), a 64-byte vector at a
    time (``_exp_vectors``); the same bits."""
    head, n = _nt_span(dst) if nt else (0, 0)
    _exp_part(src, src2, src3, dst, a, b, cols, 0, head, False)
    _exp_part(src, src2, src3, dst, a, b, cols, head, n, True)
    _exp_part(src, src2, src3, dst, a, b, cols, head + n, dst.shape[0] - head - n, False)


@intrinsic
def _wide_vectors(typingctx):
    """Let LLVM vectorise the calling function with 512-bit vectors where the
    CPU has them (AVX-512): LLVM's default for such CPUs prefers 256 bits.
    Sets the function attributes ``"prefer-vector-width"="512"`` and
    ``"min-legal-vector-width"="512"`` (llvmlite only accepts a fixed list of
    attribute names, so they are added past its check; a no-op if that
    fails).  Call it in every kernel sharing a summation, so that their
    results stay identical."""
    def codegen(context, builder, signature, args):
        attrs = builder.function.attributes
        try:
            set.add(attrs, '"prefer-vector-width"="512"')
            set.add(attrs, '"min-legal-vector-width"="512"')
        except Exception:  # pragma: no cover - llvmlite internals changed
            pass
        return context.get_dummy_value()

    return types.none(), codegen


def _host_avx512():
    """Whether LLVM's host CPU (Numba's target, and part of its cache key)
    has AVX-512F."""
    try:
        from llvmlite import binding
        return bool(binding.get_host_cpu_features().get("avx512f", False))
    except Exception:  # pragma: no cover - no feature list on this platform
        return False


#: one vector store fills a 64-byte line (the host has AVX-512).  The
#: column kernel takes streaming stores only then (``softmax_cols``): with
#: 32-byte vectors (AVX2) ``_col_write4``'s stores go one vector per row in
#: turn, and four lines per thread stay part-written in the write-combining
#: buffers; row by row (``_col_row``), LLVM's loop of float64 exponentials
#: is slower than ``_col_write4``'s (plain stores).  Zen 2 (AVX2),
#: (8000, 4096) axis 0, 2 threads, time / copy, streaming stores on -> off:
#: float32 softmax 3.14 -> 1.60, log_softmax 1.66 -> 1.47; float64 9.92 ->
#: 6.28 and 3.05 -> 2.68 (row by row with streaming stores: float32 softmax
#: 2.51, float64 8.24).  The same bits either way.
_LINE_STORES = _host_avx512()
#: a masked vector store is one instruction (AVX-512); see ``_VecGen.store_head``
_MASKED_STORES = _LINE_STORES
#: short-row blocks prefetch their rows some blocks ahead (``_prefetch_rows``):
#: only without AVX-512.  Measured on AMD Zen 2 (AVX2): float64 (100_000,
#: 16), one thread, softmax 3.5-4.2 -> 1.5 ms with them.  On AMD Zen 5
#: (AVX-512) they cost time in cache and out of it (``bench/ab_versions.py``,
#: without / with, time / copy, 2 threads: float32 (100_000, 16) softmax
#: 1.60 / 2.04, 2.14 / 2.44; float64 1.26 / 1.50; one thread float64 2.78 /
#: 4.08; in cache (4000, 16) one thread 0.87 of the time), likely because
#: its hardware prefetchers follow the rows' streams (not checked).  Not
#: measured on other AVX-512 machines.
_SHORT_PREFETCH = not _LINE_STORES


@njit(**_INLINE)
def _prefetch_span_l2(buf, start, length):
    """Prefetch every cache line of ``buf[start:start + length]`` towards L2."""
    step = 64 // buf.itemsize
    for j in range(start, start + length, step):
        _prefetch_l2(buf, j)
    _prefetch_l2(buf, start + length - 1)


# ------------------------------------------------------------ row pieces
# Every kernel receives its arrays as flat, C-contiguous 1-D buffers plus an
# offset and strides in elements (see ``_runtime.flat``): Numba's 'A'-layout
# arrays index with a run-time inner stride, which keeps LLVM from
# vectorising (measured 10x slower).  Inside, rows are unmanaged views
# (``_runtime.view``): no reference counting, unit stride, and non-negative
# indices, so every loop below vectorises.
@njit(**_INLINE)
def _max(xr, start, stop):
    """Max of ``xr[start:stop]``, ignoring NaN (see ``fmax``)."""
    hi = xr[start]
    for j in range(start + 1, stop):
        hi = fmax(hi, xr[j])
    return hi


@njit(**_INLINE)
def _max_vec(xv, k):
    """Max of ``xv[:k]``, ignoring NaN, as ``_max``: four 64-byte
    accumulators from -inf, each new vector taken by ``vgt`` (one
    ``vmaxps``: a NaN element leaves the accumulator as it was), where
    ``maxnum`` costs three instructions a vector (``vmaxps`` then a NaN
    test and a blend), and LLVM's ``maxnum`` reduction loop more (it also
    tests for NaN to leave early).  The last group of lanes overlaps the
    one before it (no scalar remainder).  A max of -inf (every element
    -inf or NaN) is taken again by ``_max``, NaN if they are all NaN.
    Rows shorter than the four vectors: ``_max``.  (One thread, 16384
    floats in L2: 0.037 ns an element for ``_max``, 0.031 for the
    ``maxnum`` lanes, 0.020 for this.)"""
    w = 64 // xv.itemsize
    g = 4 * w
    if k < g:
        return _max(xv, 0, k)
    a0 = vsplat(xv, like(-np.inf, xv[0]))
    a1 = a0
    a2 = a0
    a3 = a0
    for j in range(0, k - g + 1, g):
        a0 = vgt(vload(xv, j), a0)
        a1 = vgt(vload(xv, j + w), a1)
        a2 = vgt(vload(xv, j + 2 * w), a2)
        a3 = vgt(vload(xv, j + 3 * w), a3)
    j = k - g
    a0 = vgt(vload(xv, j), a0)
    a1 = vgt(vload(xv, j + w), a1)
    a2 = vgt(vload(xv, j + 2 * w), a2)
    a3 = vgt(vload(xv, j + 3 * w), a3)
    m = vhmax(vgt(vgt(a0, a1), vgt(a2, a3)))
    if m == -np.inf:
        return _max(xv, 0, k)
    return m


@njit(fastmath=_FM, cache=True)
def _max_lanes(xr, k):
    """``_max_vec``: a function of its own, not inlined by Numba: inlined in
    the parallel float64 rows kernel, the old ``maxnum`` loop made LLVM 20's
    loop vectoriser fail an assertion ("VPlan cost model and legacy cost
    model disagreed")."""
    return _max_vec(xr, k)


@njit(**_INLINE)
def _np_ok(m, shift):
    """True when every ``x - shift`` with ``x <= m`` (``m`` the max, NaN
    ignored) is <= 0, -inf or NaN, so that ``fexp_np`` applies: ``shift`` is
    the max itself (also +-inf), or the values are all -inf/NaN."""
    return shift == m or m == -np.inf


@njit(fastmath=_FM_SUM, cache=True)
def _sum_exp_np(xr, shift, start, stop, np_ok, zero):
    """Sum of ``exp(xr[start:stop] - shift)`` (``fexp_np`` when ``np_ok``),
    in ``zero``'s type."""
    _wide_vectors()
    s = zero
    if np_ok:
        for j in range(start, stop):
            s += fexp_np(xr[j] - shift)
    else:
        for j in range(start, stop):
            s += fexp(xr[j] - shift)
    return s


@njit(fastmath=_FM_SUM, cache=True)
def _sum(orow, start, stop):
    """Sum of ``orow[start:stop]`` (in T)."""
    _wide_vectors()
    s = like(0.0, orow[0])  # (not orow[start] then the rest: the loop would be all remainder code)
    for j in range(start, stop):
        s += orow[j]
    return s


@njit(**_INLINE)
def _exp_store_sum(xr, orow, m, start, stop):
    """``orow = exp(xr - m)`` (``m`` the max) and its sum (in T).

    Two loops rather than one fused loop: LLVM vectorises a fused loop
    differently when out is x (in place), which changed the sum's rounding;
    a sum over ``out`` alone is the same code in every kernel.  The row is
    in L1/L2 cache, so the extra pass is cheap."""
    _exp_store(xr, orow, m, start, stop)
    return _sum(orow, start, stop)


@njit(**_INLINE)
def _exp_store(xr, orow, m, start, stop):
    """``orow = exp(xr - m)`` (``m`` the max)."""
    for j in range(start, stop):
        orow[j] = fexp_np(xr[j] - m)


@njit(**_INLINE)
def _scale(orow, factor, start, stop):
    for j in range(start, stop):
        orow[j] = orow[j] * factor


@njit(**_INLINE)
def _write(xr, orow, shift, scale, log, nt):
    """The result from the row's (shift, scale); softmax: shift = the max.
    ``nt``: with streaming stores (no fence: see ``_stream_fence``)."""
    if log:
        _map(xr, xr, xr, orow, shift, scale, _LOG, nt)
    else:
        _map_exp(xr, xr, xr, orow, shift, scale, False, nt)


@njit(**_INLINE)
def _finite(v):
    return v - v == 0


#: float32 log_softmax redoes in float64 a float32 sum of exponentials below this (``_redo64``)
_REDO_BELOW = 8.0


@njit(**_INLINE)
def _redo64(s, buf):
    """True when float32 log_softmax must redo ``s``, a float32 sum of
    exponentials against the max (``buf``: an array of T), in float64.

    ``log(sum)``'s absolute error is the sum's relative error, and the
    result at the max is ``-log(sum)``, the smallest in magnitude: its
    relative error is the sum's amplified by ``1 / log(sum)``, without
    bound as the sum nears 1 (a dominant max).  Below ``_REDO_BELOW`` the
    sum is redone in float64, as SciPy would get it from float64 input:
    log_softmax of [30, -9] is then exactly 0 at 30, where a float32 sum
    would be off by an ulp of 1 on ``-log1p(e**-39)``.  Above it the
    amplification is below 0.5: random float32 rows, k = 40 ... 3000, have
    errors of at most 1.4 eps against float64 SciPy (3.2 eps with a
    threshold of 2).  For the passes that add the exponentials as they
    compute them (rows of ``SCRATCH_K`` and more, long-row chunks): a
    float64 sum there would cost 10-15% of float32 log_softmax's time
    (four more instructions per 16 exponentials, to widen and add).  Rows
    in cache sum in a pass of their own, in float64 always (``_row``)."""
    return buf.itemsize == 4 and s < _REDO_BELOW


#: float32 log_softmax's sums of rows in cache (``_sum_ne1``): vectors per float32 block
_NE1_BLOCK = 16


@njit(**_INLINE)
def _tail_vec(xr, j, fill):
    """``xr[j:]`` (fewer than a vector's lanes) as a vector: the row's last
    vector with the lanes before ``j`` set to ``fill``, or, in a row shorter
    than a vector, a masked load with ``fill`` past the row."""
    k = xr.shape[0]
    w = 64 // xr.itemsize
    return vhead(vload(xr, k - w), w - (k - j), fill) if k >= w else vload_part(xr, 0, k, fill)


@njit(**_INLINE)
def _max_rot(xr):
    """``(m, rot)``: the max of row ``xr`` (NaN ignored; -inf for a row of
    -inf and NaN only, where ``_max_lanes`` gives NaN for one of NaN only)
    and the accumulator that ``_sum_ne1`` leaves the exponentials equal
    to 1 out of.  The max is taken in four vector accumulators over groups
    of four vectors, as ``_sum_ne1`` adds; when exactly one lane of one of
    them holds ``m``, ``rot`` is that one (0 when none does: the max is in
    the rest), else -1 (ties: the sum is taken in float64 instead)."""
    k = xr.shape[0]
    w = 64 // xr.itemsize
    ninf = like(-np.inf, xr[0])
    c0 = vsplat(xr, ninf)
    c1 = c0
    c2 = c0
    c3 = c0
    t = c0
    g = 4 * w
    j = 0
    while j + g <= k:
        c0 = vgt(vload(xr, j), c0)
        c1 = vgt(vload(xr, j + w), c1)
        c2 = vgt(vload(xr, j + 2 * w), c2)
        c3 = vgt(vload(xr, j + 3 * w), c3)
        j += g
    while j + w <= k:
        t = vgt(vload(xr, j), t)
        j += w
    if j < k:
        t = vgt(_tail_vec(xr, j, ninf), t)
    m = vhmax(vgt(vgt(c0, c1), vgt(vgt(c2, c3), t)))
    n0, n1, n2, n3 = vcount_eq(c0, m), vcount_eq(c1, m), vcount_eq(c2, m), vcount_eq(c3, m)
    n = n0 + n1 + n2 + n3
    if n == 0:
        return m, 0
    if n > 1:
        return m, -1
    return m, 0 if n0 else (1 if n1 else (2 if n2 else 3))


@njit(**_INLINE)
def _sum_ne1(xr, m, rot):
    """float64 sum of ``exp(xr - m)``, ``m`` the row's max (or 0 when that is
    -inf: see ``_np_ok``), for float32
    log_softmax of a row in cache, accurate where ``log(sum)`` is near 0.

    A float32 sum loses ``sum - 1`` only where it adds to a max's
    ``exp(0) = 1`` (``1 + 1e-9`` is 1 in float32).  The exponentials are
    added in float32 in four vector accumulators, within blocks of
    ``_NE1_BLOCK`` vectors (four terms to a lane: a few ulps), each block's
    sum added in float64.  The accumulator that takes the max's column
    (``rot`` >= 0, from ``_max_rot``: the group's vectors are taken rotated
    so that it is the first) and the rest of the row after the last group
    leave out the exponentials equal to 1 and count them; the count is
    added last, in float64.  The Cython backend's ``row_exp_sum_log``."""
    k = xr.shape[0]
    w = 64 // xr.itemsize
    mv = vsplat(xr, m)
    one = like(1.0, m)
    o0, o1, o2, o3 = rot * w, ((rot + 1) & 3) * w, ((rot + 2) & 3) * w, ((rot + 3) & 3) * w
    tot = vzero(mv, True)
    cnt = 0
    g = 4 * w
    j = 0
    while j + g <= k:
        end = j + min((k - j) // g, _NE1_BLOCK // 4) * g
        a0 = vzero(mv, False)
        a1 = a0
        a2 = a0
        a3 = a0
        while j < end:
            e0 = vec_exp_np(vsub(vload(xr, j + o0), mv))
            e1 = vec_exp_np(vsub(vload(xr, j + o1), mv))
            e2 = vec_exp_np(vsub(vload(xr, j + o2), mv))
            e3 = vec_exp_np(vsub(vload(xr, j + o3), mv))
            a0 = vadd_ne1(a0, e0)
            cnt += vcount_eq(e0, one)
            a1 = vadd(a1, e1)
            a2 = vadd(a2, e2)
            a3 = vadd(a3, e3)
            j += g
        tot = vadd(tot, vwiden(vadd(vadd(a0, a1), vadd(a2, a3))))
    a0 = vzero(mv, False)
    while j + w <= k:
        e = vec_exp_np(vsub(vload(xr, j), mv))
        a0 = vadd_ne1(a0, e)
        cnt += vcount_eq(e, one)
        j += w
    if j < k:
        e = vec_exp_np(vsub(_tail_vec(xr, j, like(-np.inf, m)), mv))
        a0 = vadd_ne1(a0, e)
        cnt += vcount_eq(e, one)
    return vhsum(vadd(tot, vwiden(a0))) + np.float64(cnt)


@njit(**_INLINE)
def _row_log_sum(xr, orow, scratch, m, rot):
    """log_softmax of one row of at most LONG_ROW elements, ``(m, rot)``
    from ``_max_rot``, its sums: ``(shift, s)``, the result being ``(x -
    shift) - log(s)`` (``s`` in float64; ``scratch``: room for the
    exponentials when out is x, else empty)."""
    k = xr.shape[0]
    shift = m if _finite(m) else like(0.0, m)
    if _np_ok(m, shift):
        # the exponentials to out (to ``scratch`` when out is x), then
        # their sum: softmax's two loops, the same sum either way.  The
        # fused exp-and-sum loop was 20% slower in float64, and out's
        # lines are then in cache for the last pass
        e = scratch if scratch.shape[0] else orow
        if xr.itemsize == 4:
            # float32: not a float32 sum redone below _REDO_BELOW
            # (``_redo64``), which cost two passes on peaked rows ((1024,
            # 1000) of 3 x normal logits: log_softmax 1.16x softmax)
            if rot >= 0:
                return shift, _sum_ne1(xr, shift, rot)
            # ties at the max: the exponentials summed in float64
            _exp_store(xr, e, shift, 0, k)
            return shift, _sum64(e, 0, k)
        return shift, np.float64(_exp_store_sum(xr, e, shift, 0, k))
    return shift, _sum_exp_np(xr, shift, 0, k, False, 0.0)


@njit(**_INLINE)
def _row(xr, orow, log, scratch):
    """Softmax of one row of at most LONG_ROW elements (``scratch``: room
    for log_softmax's exponentials when out is x, else empty)."""
    k = xr.shape[0]
    if log:
        m, rot = _max_rot(xr)
        shift, s = _row_log_sum(xr, orow, scratch, m, rot)
        _write(xr, orow, shift, like(np.log(s), shift), True, False)
    else:
        m = _max_lanes(xr, k)
        s = _exp_store_sum(xr, orow, m, 0, k)
        _scale(orow, like(1.0, m) / s, 0, k)


@njit(**_INLINE)
def _exp_prefetch(xr, e, m, nf, nb, store=True):
    """``e = exp(xr - m)`` (``m`` the max) and its sum, prefetching
    ``nf[nb:nb + len]`` (the next row) towards L2 while the exps compute.
    The sum of each block of PF_BLOCK elements (in T, ``_exp_block_``) is
    added in float64, in block order.  ``store`` (a constant) false: the
    same sum, the same bits, without storing the exponentials (``e`` then
    holds only the last ``len % (4 * lanes)`` of them, which the sum reads
    back): for the long rows' partials, which need the sum alone."""
    if store:
        return _exp_blocks(xr, e, m, nf, nb)
    return _exp_sum_blocks(xr, e, m, nf, nb)


@njit(**_INLINE)
def _exp_blocks_(xr, e, m, nf, nb, store):
    """The body of ``_exp_blocks`` and ``_exp_sum_blocks``."""
    k = xr.shape[0]
    s = 0.0
    for blk in range((k + PF_BLOCK - 1) // PF_BLOCK):
        b0 = blk * PF_BLOCK
        size = min(PF_BLOCK, k - b0)
        # views: indices from 0, so that no index wraparound code defeats the vectoriser
        s += np.float64(_exp_block_(view(xr, b0, size), view(e, b0, size), m, nf, nb + b0, store))
    return s


@njit(fastmath=_FM, cache=True)
def _exp_blocks(xr, e, m, nf, nb):
    """``_exp_prefetch`` storing the exponentials.  A function of its own,
    not inlined by Numba: inlined in a kernel, the exp's loop reloaded its
    constants every iteration.  One call for the whole row, not one per
    block of PF_BLOCK, which set the loop's constants up again each time:
    the long rows' partials, (1, 10_000_000) float32, 2 threads, time /
    copy, 0.60-0.66 before, 0.50-0.54 with the sum-only loop
    (``_exp_sum_blocks``) called per block, 0.45-0.48 called per row."""
    return _exp_blocks_(xr, e, m, nf, nb, True)


@njit(fastmath=_FM, cache=True)
def _exp_sum_blocks(xr, e, m, nf, nb):
    """``_exp_prefetch``'s sum alone (see ``_exp_blocks``)."""
    return _exp_blocks_(xr, e, m, nf, nb, False)


@njit(**_INLINE)
def _exp_block_(xv, ev, m, nf, nb, store):
    """``ev = exp(xv - m)`` (``m`` the max; if ``store``, a constant) and its
    sum in T, in one pass, with ``nf[nb:nb + len]``'s cache lines prefetched
    towards L2 as it goes.

    The prefetches are spread out, one line per vector of exponentials, as
    the Cython kernels do: issued in bursts of 64 lines per block of 512
    elements before its exponentials, they stalled the loop (the line fill
    buffers were full), and float64 softmax of (4096, 32000), 2 threads,
    took 1.31x the time of a copy (1.08-1.14x then; one thread 2.55x ->
    2.35x).

    The summation order is fixed here, not left to LLVM: four vector
    accumulators take vectors 0, 1, 2, 3 of each group of four in turn,
    then ``(a0 + a2) + (a1 + a3)``, its lanes by halves (``vhsum``), and
    the last ``size % (4 * lanes)`` exponentials one by one
    (``_ordered_sum``).  All of it is plain ``fadd`` without fast-math
    flags, so every kernel (the serial and parallel ones are separate
    compilations) adds in the same order.  A 'reassoc' sum leaves the order
    (vector width, interleave) to each compilation: a fused 'reassoc' loop
    here once gave float32 softmax of (64, 3000) different bits at 1 and 2
    threads.  The exponentials are computed a 64-byte vector at a time
    (``_vec``'s ``vec_exp_np``, the same operations as ``fexp_np``: the same
    bits), four to an iteration; LLVM's vectorising of a scalar loop held
    several vectors of float64's longer polynomial at once and spilled
    registers (one thread, rows of 50257 in cache, 0.62-0.64 -> 0.51 ns an
    element).  One thread, 16384 float32 in L2: 0.129 ns an element for the
    former loop (one vector an iteration, the exponentials stored then
    loaded back for the sum), 0.121 for this one storing, 0.108 for the sum
    alone (Cython's sum: 0.113)."""
    _wide_vectors()
    size = xv.shape[0]
    w = 64 // xv.itemsize
    ms = vsplat(xv, m)
    a0 = vzero(ms, False)
    a1 = a0
    a2 = a0
    a3 = a0
    whole = size - size % (4 * w)
    for j in range(0, whole, 4 * w):
        _prefetch_l2(nf, nb + j)
        _prefetch_l2(nf, nb + j + w)
        _prefetch_l2(nf, nb + j + 2 * w)
        _prefetch_l2(nf, nb + j + 3 * w)
        e0 = vec_exp_np(vsub(vload(xv, j), ms))
        e1 = vec_exp_np(vsub(vload(xv, j + w), ms))
        e2 = vec_exp_np(vsub(vload(xv, j + 2 * w), ms))
        e3 = vec_exp_np(vsub(vload(xv, j + 3 * w), ms))
        if store:
            vstore(ev, j, e0)
            vstore(ev, j + w, e1)
            vstore(ev, j + 2 * w, e2)
            vstore(ev, j + 3 * w, e3)
        a0 = vadd(a0, e0)
        a1 = vadd(a1, e1)
        a2 = vadd(a2, e2)
        a3 = vadd(a3, e3)
    for j in range(whole, size):
        ev[j] = fexp_np(xv[j] - m)
    return _ordered_sum(ev, whole, size - whole, vhsum(vadd(vadd(a0, a2), vadd(a1, a3))))


@njit(fastmath=_FM, cache=True)
def _exp_block(xv, ev, m, nf, nb):
    """``_exp_block_`` storing the exponentials, one block (``_exp_write_prefetch``)."""
    return _exp_block_(xv, ev, m, nf, nb, True)


@njit(**_INLINE)
def _sum_exp_prefetch(xr, shift, nf, nb):
    """Sum of ``exp(xr - shift)`` by the general exp (``_sum_exp_np``
    without ``fexp_np``), prefetching the next row block by block: for
    log_softmax when the row's max is +inf or NaN (shift 0), where
    ``_exp_prefetch`` cannot apply."""
    k = xr.shape[0]
    step = 64 // xr.itemsize
    s = 0.0
    for blk in range((k + PF_BLOCK - 1) // PF_BLOCK):
        b0 = blk * PF_BLOCK
        size = min(PF_BLOCK, k - b0)
        for j in range(0, size, step):
            _prefetch_l2(nf, nb + b0 + j)
        s += _sum_exp_np(view(xr, b0, size), shift, 0, size, False, like(0.0, shift))
    return s


@njit(**_INLINE)
def _row_scratch(xr, orow, log, scratch, nf, nb, nt):
    """``_row`` for long rows (at least SCRATCH_K elements): the next row
    (``nf[nb:nb + k]``) is prefetched while this one computes; the
    exponentials go to ``scratch`` (a row kept in cache) rather than to
    ``out``, which is then written once, in the last pass.  log_softmax
    stores them too (only their sum is used, or ``_redo64``'s float64 sum
    of them): the loop without stores (``_exp_prefetch(..., False)``, the
    float64 redo by ``_sum_exp_np``) measured slower in float32, 2 threads,
    time / copy: (4096, 32000) 1.00 -> 1.06, (256, 50257) 0.98 -> 1.07
    (float64 (4096, 32000) 1.00 -> 0.95).  (Before the prefetches were
    spread through the exponentials' loop, a sum-only loop had them in
    bursts: (4096, 32000) float64, 2 threads, 1.21x -> 1.12x a copy.)"""
    k = xr.shape[0]
    m = _max_lanes(xr, k)
    if log:
        shift = m if _finite(m) else like(0.0, m)
        if _np_ok(m, shift):
            s = _exp_prefetch(xr, scratch, shift, nf, nb)
            if _redo64(s, scratch):
                s = _sum64(scratch, 0, k)
        else:
            s = _sum_exp_prefetch(xr, shift, nf, nb)
        _write(xr, orow, shift, like(np.log(s), m), True, nt)
    else:
        s = _exp_prefetch(xr, scratch, m, nf, nb)
        f = like(1.0 / s, m)
        _map(scratch, scratch, scratch, orow, f, f, _MUL, nt)
    if nt:
        _stream_fence()


@njit(**_INLINE)
def _exp_write_prefetch(xr, e, m, nf, nb, prev, orow, a, b, op, nt):
    """``_exp_prefetch(xr, e, m, nf, nb)`` (the same sum), and after each
    block of its exponentials the same block of ``orow = op(prev, a, b)``
    (``_MUL``: softmax's ``prev * a``, ``prev`` the previous row's
    exponentials; ``_LOG``: log_softmax's ``(prev - a) - b``, ``prev`` the
    previous row of x): the previous row's writing, done while this row's
    exponentials compute."""
    k = xr.shape[0]
    s = 0.0
    for blk in range((k + PF_BLOCK - 1) // PF_BLOCK):
        b0 = blk * PF_BLOCK
        size = min(PF_BLOCK, k - b0)
        s += np.float64(_exp_block(view(xr, b0, size), view(e, b0, size), m, nf, nb + b0))
        pv = view(prev, b0, size)
        _map(pv, pv, pv, view(orow, b0, size), a, b, op, nt)
    return s


@njit(**_INLINE)
def _rows_scratch_piped(xf, xo, xs, of, oo, os, r0, r1, k, nt):
    """Softmax of rows ``r0:r1`` (at least two) of SCRATCH_K to
    PIPE_MAX_BYTES, ``_row_scratch``'s passes in a pipeline over two
    scratch rows: row ``i``'s exponentials (``_exp_write_prefetch``) write
    row ``i - 1``'s result a block at a time as they go, so that the
    writing, bound by memory, runs while the exponentials, bound by
    arithmetic, compute (row by row each waited for the other).  The same
    operations on the same values as ``_row_scratch``: the same bits.
    Zen 2, 2 threads, time / copy: (4096, 32000) float32 1.69-1.78 ->
    1.54-1.65, float64 2.25-2.29 -> 2.04-2.05; (256, 50257) float32
    0.98 -> 0.88, but float64 (rows of 402 KB: the two scratch rows no
    longer fit in L2 with the row of x) 1.21 -> 1.65, hence PIPE_MAX_BYTES.
    log_softmax: ``_rows_log_scratch_piped``."""
    # row i's exponentials in a0 or a1 by the parity of i - r0, the previous row's in the other
    a0 = np.empty(k, dtype=xf.dtype)
    a1 = np.empty(k, dtype=xf.dtype)
    f = like(0.0, xf[0])
    for i in range(r0, r1):
        xr = view(xf, xo + i * xs, k)
        # the last row prefetches itself (harmless)
        nxt = xo + (i + 1) * xs if i + 1 < r1 else xo + i * xs
        porow = view(of, oo + (i - 1) * os if i > r0 else oo, k)
        m = _max_lanes(xr, k)
        if (i - r0) & 1:
            s = _exp_write_prefetch(xr, a1, m, xf, nxt, a0, porow, f, f, _MUL, nt)
        elif i > r0:
            s = _exp_write_prefetch(xr, a0, m, xf, nxt, a1, porow, f, f, _MUL, nt)
        else:
            s = _exp_prefetch(xr, a0, m, xf, nxt)
        f = like(1.0 / s, m)
    last = view(of, oo + (r1 - 1) * os, k)
    if (r1 - 1 - r0) & 1:
        _map(a1, a1, a1, last, f, f, _MUL, nt)
    else:
        _map(a0, a0, a0, last, f, f, _MUL, nt)
    keep_alive(a0, a1)  # (_map reads views of them)
    if nt:
        _stream_fence()


@njit(fastmath=_FM, cache=True)
def _rows_log_scratch_piped(xf, xo, xs, of, oo, os, r0, r1, k, nt):
    """log_softmax of rows ``r0:r1`` (at least two) of SCRATCH_K to
    PIPE_MAX_BYTES, ``_row_scratch``'s passes in a pipeline as softmax's
    (``_rows_scratch_piped``): row ``i``'s exponentials write row ``i -
    1``'s result, ``(x - shift) - log(sum)`` from that row of x (still in
    L2), a block at a time as they go.  One scratch row (the writing does
    not read it; float32's ``_redo64`` reads row ``i``'s own).  A row whose
    max is +inf or NaN (the general exp's sum) writes the previous row
    first.  The same operations on the same values as ``_row_scratch``: the
    same bits.  (Zen 2 measured it no faster, before the exponentials'
    prefetches were spread out; the Cython kernel's, fsm_body.h's
    ``rows_log_piped``, gained 15% on this Intel Xeon.)  Intel Xeon, 2
    threads, bench/ab_versions.py, log_softmax time / copy, row by row ->
    pipelined: float64 (4096, 32000) 0.929 -> 0.840, (4096, 8192) 0.912 ->
    0.851, (1000, 3000) one thread 1.946 -> 1.717; float32 (2000, 4096)
    0.887 -> 0.714, (16384, 4096) 0.863 -> 0.850; but float32 rows of
    64 KB and more lost (their exponentials are cheaper; (8192, 16384)
    0.872 -> 0.906, (4096, 32000) 0.825-0.863 -> 0.862-0.920, (256,
    50257) 0.646 -> 0.645), hence LOG_PIPE_F32_BYTES.  Compiled on its
    own (not inlined by Numba, as ``_exp_blocks``): inlined, it added 30%
    to the parallel rows kernels' cold compile (float64, 135 -> 178 s)."""
    _wide_vectors()
    scratch = np.empty(k, dtype=xf.dtype)
    shp = like(0.0, xf[0])
    lsep = shp
    for i in range(r0, r1):
        xr = view(xf, xo + i * xs, k)
        # the last row prefetches itself (harmless)
        nxt = xo + (i + 1) * xs if i + 1 < r1 else xo + i * xs
        pxr = view(xf, xo + (i - 1) * xs if i > r0 else xo, k)
        porow = view(of, oo + (i - 1) * os if i > r0 else oo, k)
        m = _max_lanes(xr, k)
        shift = m if _finite(m) else like(0.0, m)
        if _np_ok(m, shift):
            if i > r0:
                s = _exp_write_prefetch(xr, scratch, shift, xf, nxt, pxr, porow, shp, lsep, _LOG, nt)
            else:
                s = _exp_prefetch(xr, scratch, shift, xf, nxt)
            if _redo64(s, scratch):
                s = _sum64(scratch, 0, k)
        else:
            if i > r0:
                _write(pxr, porow, shp, lsep, True, nt)
            s = _sum_exp_prefetch(xr, shift, xf, nxt)
        shp = shift
        lsep = like(np.log(s), m)
    _write(view(xf, xo + (r1 - 1) * xs, k), view(of, oo + (r1 - 1) * os, k), shp, lsep, True, nt)
    keep_alive(scratch, scratch)
    if nt:
        _stream_fence()


# -------------------------------------------------------- long-row pieces
# ``mpart`` is (n, nch): chunk maxima; ``spart`` (n, nch) the chunk sums.
@njit(**_INLINE)
def _chunk_partial(xr, c, mpart, spart, i, log, scratch, nf, nb):
    """Partials of chunk ``c`` of row ``xr``: ``mpart[i, c]`` = its max,
    ``spart[i, c]`` = sum of exp(x - shift), shift = max, or 0 if not finite
    (float32 log_softmax: redone in float64 when the row's total calls for
    it, see ``_combine``).  While the exponentials compute (into
    ``scratch``, at least a chunk long), the chunk this thread reads next,
    at ``nf[nb:]``, is prefetched towards L2 (``_exp_prefetch``), so that
    its max pass reads from cache: the max pass is bound by memory, the
    exponentials by arithmetic, and they no longer wait for each other.
    (1, 10_000_000) float32, 2 threads, this pass alone against the chunks
    summed without prefetching, medians of 40 interleaved rounds, two
    processes: 1.39-1.42 -> 1.17-1.21 ms, 0.74-0.80 -> 0.65-0.66x a copy;
    float64 within the noise, 0.92-1.11x the old, being bound by memory.)
    The sum is ``_exp_prefetch``'s: blocks of PF_BLOCK in T, added in
    float64 (closer to the exact sum than one sum in T: float64 long
    log_softmax rows' errors went from 1.3-6.3 to 0.7-3.0 eps)."""
    _wide_vectors()
    xv = _chunk(xr, c)  # indices from 0: vectorises (no wraparound code)
    size = xv.shape[0]
    m = _max_vec(xv, size)
    mpart[i, c] = m
    shift = m if _finite(m) else like(0.0, m)
    if _np_ok(m, shift):
        # (a next chunk shorter than this one: the prefetch stays inside nf)
        spart[i, c] = _exp_prefetch(xv, view(scratch, 0, size), shift, nf, min(nb, nf.shape[0] - size), False)
    else:
        spart[i, c] = _sum_exp_np(xv, shift, 0, size, False, like(0.0, m))


@njit(**_INLINE)
def _chunk(xr, c):
    """Chunk ``c`` of row ``xr``, as a view."""
    start = c * CHUNK
    return view(xr, start, min(CHUNK, xr.shape[0] - start))


@njit(**_INLINE)
def _chunk_sum(xv, m, zero):
    """Sum of exp(xv - shift) in ``zero``'s type, ``m`` = max(xv), shift =
    m, or 0 if not finite."""
    shift = m if _finite(m) else like(0.0, m)
    return _sum_exp_np(xv, shift, 0, xv.shape[0], _np_ok(m, shift), zero)


@njit(**_INLINE)
def _total(mpart, spart, i, log):
    """(max, reference, total) of long row ``i``: the sum of exponentials
    against the reference (the max, or 0 for log_softmax when it is not
    finite) from the chunk partials, in chunk order."""
    nch = spart.shape[1]
    m = mpart[i, 0]
    for c in range(1, nch):
        m = fmax(m, mpart[i, c])
    ref = m if (_finite(m) or not log) else like(0.0, m)
    total = 0.0
    for c in range(nch):
        mc = mpart[i, c]
        if mc == -np.inf:
            total += spart[i, c]       # 0, or NaN when the chunk holds a NaN
        else:
            shift_c = mc if _finite(mc) else like(0.0, mc)
            total += spart[i, c] * np.exp(np.float64(shift_c) - np.float64(ref))
    return m, ref, total


@njit(**_INLINE)
def _combine(xr, mpart, spart, i, log):
    """(shift, scale) of long row ``i`` (``xr``) from its chunk partials.

    float32 log_softmax: the chunks were summed in float32, and the total
    carries their relative error, at most the largest chunk's whatever
    the chunks' sizes; its effect on the result is amplified by
    ``1 / log(total)`` (``_redo64``), so below ``_REDO_BELOW`` every
    chunk is summed again in float64.  The test is on the total, not on
    each chunk: a chunk's small sum is harmless when the total is large,
    and 3 x normal logits give chunk sums near 8 (a chunk redone
    per 2-3: (1, 10_000_000) log_softmax took 1.15x softmax)."""
    m, ref, total = _total(mpart, spart, i, log)
    if log and _redo64(total, xr):
        for c in range(spart.shape[1]):
            spart[i, c] = _chunk_sum(_chunk(xr, c), mpart[i, c], 0.0)
        m, ref, total = _total(mpart, spart, i, log)
    if log:
        return ref, like(np.log(total), m)
    if not _finite(m):
        return m, like(np.nan, m)      # a +inf or all -inf row: NaN (SciPy)
    return m, like(1.0 / total, m)


@njit(**_INLINE)
def _write_chunk(xr, orow, c, shift, scale, log, nt):
    """Chunk ``c`` of the result; ``nt``: with streaming stores (straight
    from the loop; (1, 10_000_000), 2 threads, softmax /
    copy: float32 0.88-0.91 -> 0.79-0.80, float64 1.19-1.20 -> 1.10-1.14
    against the exponentials in a scratch block, scaled and streamed out),
    then a fence."""
    _wide_vectors()
    _write(_chunk(xr, c), _chunk(orow, c), shift, scale, log, nt)
    if nt:
        _stream_fence()


@njit(**_INLINE)
def _long_row(xr, orow, log, mpart, spart, i, nt, nf, nb):
    """A row by the long-row algorithm (``mpart[i]``, ``spart[i]`` are scratch);
    written in reverse chunk order (the chunks read last are still in cache).
    ``nf[nb:nb + k]`` is the row itself in its flat buffer (each chunk
    prefetches the next: ``_chunk_partial``)."""
    nch = spart.shape[1]
    scratch = np.empty(min(CHUNK, xr.shape[0]), dtype=xr.dtype)
    for c in range(nch):
        _chunk_partial(xr, c, mpart, spart, i, log, scratch, nf, nb + min(c + 1, nch - 1) * CHUNK)
    shift, scale = _combine(xr, mpart, spart, i, log)
    for c in range(nch - 1, -1, -1):
        _write_chunk(xr, orow, c, shift, scale, log, nt)


# ------------------------------------------------------------- kernels
# Arguments: flat buffer, offset of row 0, row stride (elements), for x then
# out; n rows of k elements.  '_inplace' variants take one buffer.
@njit(cache=True, error_model="numpy")
def _log_sums(s, out, n):
    """``out[:n] = log(s[:n])`` for float64 sums of exponentials, vectorised:
    a sum is >= 1 when its row's max is finite (the max's own term is 1);
    ``np.log`` for the others (0 for an all -inf row, inf, NaN).  A function
    of its own: LLVM vectorises it alone, not inlined into a kernel."""
    odd = 0
    for r in range(n):
        v = s[r]
        out[r] = like(log64_ge1(v), out[0])
        odd += (v < 1.0) | (v > _DBL_MAX) | (v != v)
    if odd:
        for r in range(n):
            v = s[r]
            if not (v >= 1.0 and v <= _DBL_MAX):
                out[r] = like(np.log(v), out[0])


@njit(**_INLINE)
def _small_k(buf):
    """Rows shorter than this go in blocks (``_small_rows``), longer ones
    one by one (``_row``).  One thread, ns per row of (2e6 / k, k):

    ======== ===== ======= ======= ===== =====
    k        32    48      56      64    100
    ======== ===== ======= ======= ===== =====
    f32 rows 52    64      66      40    66
    f32 blks 41    64      66      82    176
    f64 rows 47    66      77      88    150
    f64 blks 71    93      --      133   263
    ======== ===== ======= ======= ===== =====

    (softmax; ``_row`` with its max by whole vectors.  float32 rows of
    fewer than 64 elements are all LLVM's scalar remainder code in ``_row``
    (its loops run 64 floats at a time); float64 rows of 32 and more are
    not).  Rows of 32-99 float32 elements had taken 60-190 ns each."""
    return SMALL_K_F32 if buf.itemsize == 4 else SMALL_K_F64


@njit(**_INLINE)
def _small_rows(xf, xo, xs, of, oo, os, r0, r1, k, log):
    """Rows ``r0:r1`` of ``k < _small_k(xf)`` elements, one vector of rows at a time.

    A loop over a short row is mostly LLVM's scalar remainder code, so the
    block of rows is turned around instead (``_transpose``, in-register
    tiles): row ``r`` is lane ``r`` of a 64-byte vector (16 float32 or 8
    float64 rows a block), element ``j`` of the block's rows the vector
    ``tx[j * lanes:(j + 1) * lanes]``.  The max, the exponentials and their
    sum (in float64, in element order: the same order for every row,
    whichever kernel or layout) are then whole-vector operations with the
    accumulators in registers (``_vec``).  Softmax turns the exponentials
    back, times 1 / sum on the way (``_tile_t``'s ``fac``); log_softmax
    writes each row from the row itself (``_shifted_span``).  The scratch
    lives on the stack.

    One thread, float32 rows of 5 / 16 / 33 / 63 in cache (AMD Zen 4), ns a
    row, softmax: 5.4 / 11.6 / 27 / -- -> 4.3 / 7.5 / 15.5 / --;
    log_softmax of 16 / 63: 11 / 43 -> 8.5 / 24.5 (blocks of 64 rows with
    the accumulators in stack arrays before).  float64 unchanged (14 ns a
    row of 16).
    """
    lanes = 64 // xf.itemsize
    tx = stack_array(xf, _SMALL_CAP)
    te = stack_array(xf, _SMALL_CAP)
    if log:
        # the sums of up to _SMALL_GROUP rows (several blocks), then their
        # logs in one call, then the rows' writing, each from the row itself
        # (still in L1), by its lane's shift and log(sum)
        shs = stack_array(xf, _SMALL_GROUP)
        s = stack_array(0.0, _SMALL_GROUP)
        for g0 in range(r0, r1, _SMALL_GROUP):
            ng = min(_SMALL_GROUP, r1 - g0)
            for b in range(0, ng, lanes):
                nb = min(lanes, ng - b)
                _prefetch_rows(xf, xo, xs, g0 + b + _SMALL_AHEAD * lanes, lanes, r1, k)
                _transpose(xf, xo + (g0 + b) * xs, xs, nb, k, tx, 0, lanes, True, None)
                m = _tile_max(tx, k, lanes)
                # a +inf or NaN max shifts by 0
                sh = vfinite_or_zero(m)
                vstore(s, b, _tile_log_sums(tx, sh, k, lanes, nb, vcount_not_finite(m, nb) == 0))
                vstore(shs, b, sh)
            _log_sums(s, te, ng)
            for r in range(ng):
                _shifted_span(xf, xo + (g0 + r) * xs, of, oo + (g0 + r) * os, k, shs[r], te[r])
        return
    for b0 in range(r0, r1, lanes):
        nb = min(lanes, r1 - b0)
        ob = oo + b0 * os
        _prefetch_rows(xf, xo, xs, b0 + _SMALL_AHEAD * lanes, lanes, r1, k)
        _transpose(xf, xo + b0 * xs, xs, nb, k, tx, 0, lanes, True, None)
        # x - max: every one <= 0, -inf or NaN (fexp_np)
        m = _tile_max(tx, k, lanes)
        acc = _tile_exp_sum(tx, te, m, k, lanes, True, False)
        # the exponentials times 1 / sum as they are turned back
        _transpose(te, 0, lanes, k, nb, of, ob, os, False, vrecip(acc, m), True)


@njit(**_INLINE)
def _prefetch_rows(xf, xo, xs, r, n, r1, k):
    """Prefetch rows ``r:min(r + n, r1)`` (of ``k`` elements, at ``xf[xo +
    row * xs]``) towards L2: a short-row block's rows, some blocks ahead,
    where ``_SHORT_PREFETCH``.  AMD Zen 2, float64 (100_000, 16) (25.6 MB
    with out: past that machine's share of L3), one thread: softmax 3.5 ms
    -> 1.5 ms (a copy 0.33 ms)."""
    if _SHORT_PREFETCH:
        for i in range(r, min(r + n, r1)):
            _prefetch_span_l2(xf, xo + i * xs, k)


@njit(**_INLINE)
def _tile_exp(tx, j, lanes, sh, general):
    """The exponentials of column ``j`` of a block turned around, minus
    ``sh``: ``vec_exp`` if ``general``, else ``vec_exp_np`` (every argument
    <= 0, -inf or NaN)."""
    v = vsub(vload(tx, j * lanes), sh)
    return vec_exp(v) if general else vec_exp_np(v)


@njit(**_INLINE)
def _tile_exp_sum(tx, te, sh, k, lanes, store, general):
    """The row sums (float64 lanes, each added in column order) of the
    exponentials of a block turned around (``_small_rows``'s ``tx``, rows
    of ``k``) minus ``sh``, stored into ``te`` (laid out as ``tx``) where
    ``store``; ``general``: see ``_tile_exp``.

    Four columns an iteration, their four exponentials independent before
    their sums (the same operations in the same order as one column an
    iteration: the same bits).  AMD Zen 5, one thread, float32 rows of 16
    in cache, softmax: 0.85 of the time (one column an iteration, which
    LLVM unrolled by two, left too few exponentials in flight)."""
    acc = vzero(sh, True)
    for j in range(0, k - 3, 4):
        e0 = _tile_exp(tx, j, lanes, sh, general)
        e1 = _tile_exp(tx, j + 1, lanes, sh, general)
        e2 = _tile_exp(tx, j + 2, lanes, sh, general)
        e3 = _tile_exp(tx, j + 3, lanes, sh, general)
        if store:
            vstore(te, j * lanes, e0)
            vstore(te, (j + 1) * lanes, e1)
            vstore(te, (j + 2) * lanes, e2)
            vstore(te, (j + 3) * lanes, e3)
        acc = vadd(vadd(vadd(vadd(acc, vwiden(e0)), vwiden(e1)), vwiden(e2)), vwiden(e3))
    for j in range(k - k % 4, k):
        e = _tile_exp(tx, j, lanes, sh, general)
        if store:
            vstore(te, j * lanes, e)
        acc = vadd(acc, vwiden(e))
    return acc


@njit(**_INLINE)
def _tile_sum_part(acc, n, bits, tx, j, lanes, sh, counted, general):
    """Column ``j`` of ``_tile_sums32``."""
    d = vsub(vload(tx, j * lanes), sh)
    e = vec_exp(d) if general else vec_exp_np(d)
    if counted:
        return vadd_not_pos0(acc, e, d), vcount_pos0(n, d), bits
    return vadd_neg(acc, e, d), n, bits + vbits_nonneg(d)


@njit(**_INLINE)
def _tile_sums32(tx, sh, k, lanes, counted, general):
    """float32 log_softmax's sums of a block turned around (rows of
    ``k``), in float32, the exponentials of ``x - sh`` in four chains
    (column ``j`` in chain ``j % 4``, the chains added as ``(c0 + c1) + (c2
    + c3)``), those equal to 1 that come from the max left out.

    Not ``counted``: the elements with ``x - sh`` of sign bit clear are
    left out (where the max is finite, the max's own element, +0), and
    returned as an integer, the sum of their lane bits over the columns.
    ``counted``: the elements with ``x - sh`` = +0 are left out and counted
    (float32 lanes); the same sums where a row has one such element and
    no other of sign bit clear.  ``general``: ``vec_exp``, else
    ``vec_exp_np`` (every ``x - sh`` <= 0)."""
    z = vzero(sh, False)
    c0, c1, c2, c3, n, bits = z, z, z, z, z, 0
    for j in range(0, k - 3, 4):
        c0, n, bits = _tile_sum_part(c0, n, bits, tx, j, lanes, sh, counted, general)
        c1, n, bits = _tile_sum_part(c1, n, bits, tx, j + 1, lanes, sh, counted, general)
        c2, n, bits = _tile_sum_part(c2, n, bits, tx, j + 2, lanes, sh, counted, general)
        c3, n, bits = _tile_sum_part(c3, n, bits, tx, j + 3, lanes, sh, counted, general)
    j = k - k % 4
    if j < k:
        c0, n, bits = _tile_sum_part(c0, n, bits, tx, j, lanes, sh, counted, general)
    if j + 1 < k:
        c1, n, bits = _tile_sum_part(c1, n, bits, tx, j + 1, lanes, sh, counted, general)
    if j + 2 < k:
        c2, n, bits = _tile_sum_part(c2, n, bits, tx, j + 2, lanes, sh, counted, general)
    return vadd(vadd(c0, c1), vadd(c2, c3)), n, bits


def _tile_log_sums(tx, sh, k, lanes, nb, finite):
    """log_softmax's sums of exponentials of ``x - sh`` of a block turned
    around (``_small_rows``'s ``tx``, rows of ``k``, ``nb`` of its
    ``lanes`` rows real, the others zeros), in float64 lanes; ``finite``:
    every real row's max is finite (``sh`` is then the max).  Chosen by
    type when a kernel compiles (Numba only): float64 ``_tile_exp_sum``,
    float32 ``_tile_log_sums32``, so that neither kernel compiles the
    other's code."""
    raise NotImplementedError("_tile_log_sums is only callable from Numba-compiled code")


@overload(_tile_log_sums, jit_options={"cache": True})
def _tile_log_sums_impl(tx, sh, k, lanes, nb, finite):
    if tx.dtype == types.float32:
        def impl32(tx, sh, k, lanes, nb, finite):
            _always_inline()
            return _tile_log_sums32(tx, sh, k, lanes, nb, finite)
        return impl32

    def impl64(tx, sh, k, lanes, nb, finite):
        _always_inline()
        # a +inf or NaN max needs the general exp (x - 0 may be > 0)
        if finite:
            return _tile_exp_sum(tx, tx, sh, k, lanes, False, False)
        return _tile_exp_sum(tx, tx, sh, k, lanes, False, True)
    return impl64


@njit(**_INLINE)
def _tile_log_sums32(tx, sh, k, lanes, nb, finite):
    """float32 log_softmax's sums of exponentials of a block turned around
    (rows of ``k``, ``nb`` of its ``lanes`` rows real, the others zeros),
    ``n + s`` in float64 lanes: ``n`` the count of exponentials equal to
    1 that come from the max (``x - shift`` = +0), ``s`` the others' sum
    in float32 (``_tile_sums32``).  Where every max is finite, each row has
    at least one element with ``x - max`` of sign bit clear (its max's):
    the bits of those added as integers are then ``(1 << nb) - 1`` (plus
    ``k`` times each zero row's bit) only where each real row has exactly
    one, and ``n`` is 1.  Otherwise (a tie to the max, a non-finite max,
    a NaN with its sign bit clear) the block is summed again with the
    counts; its rows with one such element get the same bits.

    log(n + s) keeps its last bits where it is near 0 (a dominant max: ``s``
    tiny), as the float64 sum of every exponential did, and ``n + s`` is
    rounded in float64 as SciPy's sum would be (log_softmax of [30, -9] is
    0 at 30, not -1.2e-17).  float32 sums instead of every exponential
    widened to float64: two vector operations a column instead of five.
    """
    if finite:
        s, n, bits = _tile_sums32(tx, sh, k, lanes, False, False)
        if bits == (1 << nb) - 1 + k * ((1 << lanes) - (1 << nb)):
            return vadd(vwiden(vsplat(tx, like(1.0, tx[0]))), vwiden(s))
        s, n, bits = _tile_sums32(tx, sh, k, lanes, True, False)
    else:
        s, n, bits = _tile_sums32(tx, sh, k, lanes, True, True)
    return vadd(vwiden(n), vwiden(s))


@njit(**_INLINE)
def _tile_max(tx, k, lanes):
    """The row maxima of a block turned around (``_small_rows``'s ``tx``,
    rows of ``k``): a NaN is ignored unless first (the row's sum is NaN
    either way)."""
    m = vload(tx, 0)
    for j in range(1, k):
        m = vgt(vload(tx, j * lanes), m)
    return m


@njit(**_INLINE)
def _nt(n, k, buf):
    """Stream the output to memory (non-temporal stores) when it is too
    large to stay in cache anyway."""
    return n * k * buf.itemsize >= NT_MIN_BYTES


@njit(fastmath=_FM, cache=True)
def _rows_range(xf, xo, xs, of, oo, os, r0, r1, k, log, nt):
    """Rows ``r0:r1`` (of ``k`` elements at ``xf[xo + row * xs]``, written
    to ``of[oo + row * os]``), one thread: the body of the serial rows
    kernels whose out is not x.  Compiled on its own, once per dtype, and
    inlined by LLVM (``_always_inline``): inlined by Numba, each kernel
    deep-copied its IR (Numba copies a callee block by block, each with
    the callee's whole scope), 18 of a kernel's 38 s to compile (float64,
    cold cache, Intel Xeon; 25 s now)."""
    _always_inline()
    _wide_vectors()
    if k < _small_k(xf):
        _small_rows(xf, xo, xs, of, oo, os, r0, r1, k, log)
    elif k >= SCRATCH_K:
        if r1 - r0 >= 2 and k * xf.itemsize <= (LOG_PIPE_F32_BYTES if log and xf.itemsize == 4
                                                 else PIPE_MAX_BYTES):
            if log:
                _rows_log_scratch_piped(xf, xo, xs, of, oo, os, r0, r1, k, nt)
            else:
                _rows_scratch_piped(xf, xo, xs, of, oo, os, r0, r1, k, nt)
            return
        scratch = np.empty(k, dtype=xf.dtype)
        for i in range(r0, r1):
            # the last row prefetches itself (harmless)
            nxt = xo + (i + 1) * xs if i + 1 < r1 else xo + i * xs
            _row_scratch(view(xf, xo + i * xs, k), view(of, oo + i * os, k), log, scratch, xf, nxt,
                         nt)
    else:
        inplace = _address(xf, xo) == _address(of, oo)
        scratch = np.empty(k if log and inplace else 0, dtype=xf.dtype)
        if log and k * xf.itemsize <= LOG_PIPE_BYTES and r1 > r0:
            # pipelined over three rows: row i + 1's max is found before
            # row i's sum, which then need not wait for it, and row i - 1's
            # log(sum) is taken before that sum and its writing done after
            # it, the log's latency overlapping row i's work (float32
            # (1024, 1000), one thread: log_softmax / softmax 1.14 -> 1.02-1.06
            # with ``_sum_ne1``'s float32 sum; two threads 1.11 -> 1.08-1.11)
            m, rot = _max_rot(view(xf, xo + r0 * xs, k))
            shp, sp = like(0.0, m), 1.0
            for i in range(r0, r1):
                lse = like(np.log(sp), shp)
                m_next, rot_next = _max_rot(view(xf, xo + (i + 1) * xs, k)) if i + 1 < r1 else (m, rot)
                sh, s = _row_log_sum(view(xf, xo + i * xs, k), view(of, oo + i * os, k), scratch, m, rot)
                if i > r0:
                    _write(view(xf, xo + (i - 1) * xs, k), view(of, oo + (i - 1) * os, k), shp, lse,
                           True, False)
                shp, sp, m, rot = sh, s, m_next, rot_next
            _write(view(xf, xo + (r1 - 1) * xs, k), view(of, oo + (r1 - 1) * os, k), shp,
                   like(np.log(sp), shp), True, False)
        else:
            for i in range(r0, r1):
                _row(view(xf, xo + i * xs, k), view(of, oo + i * os, k), log, scratch)


#: ``_rows_range``'s body, inlined by Numba (``_rows_range_ip``, the parallel kernels)
_rows_body = njit(**_INLINE)(_rows_range.py_func)


@njit(fastmath=_FM, cache=True)
def _rows_range_ip(bf, bo, bs, r0, r1, k, log, nt):
    """``_rows_range`` in place, the array passed once: LLVM, which compiles
    this on its own, then knows that every row's source is its
    destination; given two arrays, its loops test them for overlap and
    take their scalar code where they do (float32 (1024, 1000) in place,
    2 threads: softmax 5.1 against 0.92 x copy)."""
    _rows_body(bf, bo, bs, bf, bo, bs, r0, r1, k, log, nt)


@njit(**_INLINE)
def _groups(n):
    return min(n, 64)


def _rows_serial(xf, xo, xs, of, oo, os, n, k, log):
    z = n - n  # 0 typed int64, not Literal[int](0): one _rows_range for the serial kernels
    _rows_range(xf, xo, xs, of, oo, os, z, n, k, log, _nt(n, k, of))


def _rows_serial_c(x, out, log, max_size):
    """C-contiguous 2-D x and out: fewer arguments, less dispatch time.

    Also the public fast path's checks, done here in compiled code (a few
    ns, where NumPy's flags, ``shape`` comparison and ``may_share_memory``
    cost ~0.5 us from Python): returns 1 and touches nothing unless x and
    out have the same shape, at least one element, ``k <= LONG_ROW``,
    ``n * k <= max_size``, are really C-contiguous (the signature's 'C'
    layout is not checked when the compiled function is called directly)
    and item-aligned, and do not overlap; else computes and returns 0.
    """
    n, k = x.shape
    item = x.itemsize
    if out.shape[0] != n or out.shape[1] != k or n * k == 0 or k > LONG_ROW or n * k > max_size:
        return 1
    if not ((n == 1 or x.strides[0] == k * item) and (k == 1 or x.strides[1] == item)
            and (n == 1 or out.strides[0] == k * item) and (k == 1 or out.strides[1] == item)):
        return 1
    xa = x.ctypes.data
    oa = out.ctypes.data
    if xa % item != 0 or oa % item != 0 or (xa < oa + n * k * item and oa < xa + n * k * item):
        return 1
    z = n - n  # (as _rows_serial)
    _rows_range(view(x, 0, n * k), z, k, view(out, 0, n * k), z, k, z, n, k, log, _nt(n, k, out))
    return 0


def _rows_serial_c_inplace(buf, log):
    n, k = buf.shape
    z = n - n  # (as _rows_serial)
    _rows_range_ip(view(buf, 0, n * k), z, k, z, n, k, log, _nt(n, k, buf))


def _rows_parallel(xf, xo, xs, of, oo, os, n, k, log):
    """The rows in parallel, ``_rows_range``'s body inlined by Numba: calling
    ``_rows_range`` (compiled on its own, 73 -> 5.5 s to compile once the
    serial kernels have compiled it) made float32 (1024, 1000)
    log_softmax, 2 threads, 5-9% slower (softmax unchanged; not found why)."""
    groups = _groups(n)
    for g in prange(groups):
        _rows_body(xf, xo, xs, of, oo, os, g * n // groups, (g + 1) * n // groups, k, log, _nt(n, k, of))


def _rows_serial_inplace(bf, bo, bs, n, k, log):
    z = n - n  # (as _rows_serial)
    _rows_range_ip(bf, bo, bs, z, n, k, log, _nt(n, k, bf))


def _rows_parallel_inplace(bf, bo, bs, n, k, log):
    groups = _groups(n)
    for g in prange(groups):
        _rows_body(bf, bo, bs, bf, bo, bs, g * n // groups, (g + 1) * n // groups, k, log, _nt(n, k, bf))


def _long_rows(xf, xo, xs, of, oo, os, n, k, log, mpart, spart, nt):
    """Many long rows: one row per task, chunked serially within the row."""
    for i in prange(n):
        _long_row(view(xf, xo + i * xs, k), view(of, oo + i * os, k), log, mpart, spart, i, nt, xf,
                  xo + i * xs)


def _long_rows_inplace(bf, bo, bs, n, k, log, mpart, spart, nt):
    for i in prange(n):
        _long_row(view(bf, bo + i * bs, k), view(bf, bo + i * bs, k), log, mpart, spart, i, nt, bf,
                  bo + i * bs)


def _long_partials(xf, xo, xs, n, k, log, mpart, spart):
    """Few long rows: every (row, chunk) partial in parallel, in groups of
    consecutive units (each chunk prefetches the next unit's)."""
    nch = spart.shape[1]
    units = n * nch
    for g in prange(_finish_groups(units)):
        ng = _finish_groups(units)
        scratch = np.empty(min(CHUNK, k), dtype=xf.dtype)
        for t in range(g * units // ng, (g + 1) * units // ng):
            i = t // nch
            tn = min(t + 1, units - 1)
            i_n = tn // nch
            _chunk_partial(view(xf, xo + i * xs, k), t - i * nch, mpart, spart, i, log, scratch, xf,
                           xo + i_n * xs + (tn - i_n * nch) * CHUNK)


def _long_finish(xf, xo, xs, of, oo, os, n, k, log, mpart, spart, nt):
    """The writing pass after ``_long_partials``, (row, chunk) units in the
    reverse order of that pass: the chunks it read last are still in cache."""
    nch = spart.shape[1]
    units = n * nch
    shift = np.empty(n, dtype=xf.dtype)
    scale = np.empty(n, dtype=xf.dtype)
    for i in range(n):
        shift[i], scale[i] = _combine(view(xf, xo + i * xs, k), mpart, spart, i, log)
    for g in prange(_finish_groups(units)):
        ng = _finish_groups(units)
        for t in range(g * units // ng, (g + 1) * units // ng):
            u = units - 1 - t
            i = u // nch
            _write_chunk(view(xf, xo + i * xs, k), view(of, oo + i * os, k), u - i * nch, shift[i], scale[i],
                         log, nt)


def _long_finish_inplace(bf, bo, bs, n, k, log, mpart, spart, nt):
    nch = spart.shape[1]
    units = n * nch
    shift = np.empty(n, dtype=bf.dtype)
    scale = np.empty(n, dtype=bf.dtype)
    for i in range(n):
        shift[i], scale[i] = _combine(view(bf, bo + i * bs, k), mpart, spart, i, log)
    for g in prange(_finish_groups(units)):
        ng = _finish_groups(units)
        for t in range(g * units // ng, (g + 1) * units // ng):
            u = units - 1 - t
            i = u // nch
            _write_chunk(view(bf, bo + i * bs, k), view(bf, bo + i * bs, k), u - i * nch, shift[i], scale[i],
                         log, nt)


@njit(**_INLINE)
def _finish_groups(units):
    return min(units, 64)


# ------------------------------------------------------------- columns
@njit(**_INLINE)
def _col_exact(xf, xb, xs1, k, log):
    """Exact SciPy semantics for the column at ``xf[xb::xs1]``: (shift, scale)."""
    m = xf[xb]
    for r in range(1, k):
        m = fmax(m, xf[xb + r * xs1])
    shift = m if (_finite(m) or not log) else like(0.0, m)
    total = 0.0
    for r in range(k):
        total += fexp(xf[xb + r * xs1] - shift)
    if log:
        return shift, like(np.log(total), m)
    return shift, like(1.0 / total, m)


@njit(**_INLINE)
def _col_group_max(xf, xb, xs1, w, g, gm):
    """``gm[c]`` = max over the ``g`` rows at ``xb`` (stride xs1) of column c (NaN ignored)."""
    x0 = view(xf, xb, w)
    for c in range(w):
        gm[c] = x0[c]
    for r in range(1, g):
        xr = view(xf, xb + r * xs1, w)
        for c in range(w):
            gm[c] = fmax(gm[c], xr[c])


@njit(**_INLINE)
def _col_new_max(m, gm, shn, mo_out, w):
    """New running maxima ``m`` (old ones in ``mo_out``), ``shn`` = their
    shift (max, or 0 for -inf); returns how many columns grew."""
    grew = 0
    for c in range(w):
        mo = m[c]
        mn = fmax(mo, gm[c])
        grew += mn > mo
        shn[c] = _sh(mn)
        mo_out[c] = mo
        m[c] = mn
    return grew


@njit(**_INLINE)
def _sh(v):
    """The shift of a running max: itself, or 0 for -inf."""
    return v if v != -np.inf else like(0.0, v)


@njit(**_INLINE)
def _gt(a, b):
    """``a if a > b else b``: one ``max`` instruction (x86 ``maxps``/``maxpd``
    have exactly this semantics), where ``fmax`` (``llvm.maxnum``) costs three.
    A NaN ``a`` gives ``b``, a NaN ``b`` gives NaN."""
    return a if a > b else b


@njit(**_INLINE)
def _group_max8(mo, v0, v1, v2, v3, v4, v5, v6, v7):
    """The new running max of a column: ``mo`` (never NaN) and 8 values.

    Never NaN, and equal to ``fmax`` of them all when no value is NaN.  With
    a NaN among the values it may ignore others too (then too small, so that
    some ``x - max`` are positive): harmless, as that column's sum is NaN
    whatever the max (``exp(NaN - max)``), and such columns are redone
    exactly.  (``fexp_np`` is defined for any argument: a wrong value there
    only enters a sum that is NaN anyway.)"""
    t = _gt(_gt(_gt(v0, v1), _gt(v2, v3)), _gt(_gt(v4, v5), _gt(v6, v7)))
    return _gt(t, mo)


@njit(**_INLINE)
def _exp_sum8(v0, v1, v2, v3, v4, v5, v6, v7, sh):
    """The sum of the 8 ``exp(v - sh)`` as a tree, in T (every ``v - sh``
    in ``fexp_np``'s range: at most 40, -inf or NaN)."""
    return (((fexp_np(v0 - sh) + fexp_np(v1 - sh)) + (fexp_np(v2 - sh) + fexp_np(v3 - sh)))
            + ((fexp_np(v4 - sh) + fexp_np(v5 - sh)) + (fexp_np(v6 - sh) + fexp_np(v7 - sh))))


@njit(**_INLINE)
def _rows8(xf, xg, xs1, w):
    """Views of the ``w`` columns of the 8 rows of a group starting at ``xg``."""
    return (view(xf, xg, w), view(xf, xg + xs1, w), view(xf, xg + 2 * xs1, w),
            view(xf, xg + 3 * xs1, w), view(xf, xg + 4 * xs1, w), view(xf, xg + 5 * xs1, w),
            view(xf, xg + 6 * xs1, w), view(xf, xg + 7 * xs1, w))


@njit(**_INLINE)
def _load8(x0, x1, x2, x3, x4, x5, x6, x7, c):
    """Column ``c`` of the 8 rows of a group (``_rows8``)."""
    return x0[c], x1[c], x2[c], x3[c], x4[c], x5[c], x6[c], x7[c]


@njit(**_INLINE)
def _step8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, mo_out):
    """Column ``c`` of a group of 8 rows: its 8 values, and the shift of the
    new running max (the old max into ``mo_out[c]``, the new into ``m[c]``)."""
    v0, v1, v2, v3, v4, v5, v6, v7 = _load8(x0, x1, x2, x3, x4, x5, x6, x7, c)
    mo = m[c]
    mn = _group_max8(mo, v0, v1, v2, v3, v4, v5, v6, v7)
    mo_out[c] = mo
    m[c] = mn
    return v0, v1, v2, v3, v4, v5, v6, v7, _sh(mn)


@njit(**_INLINE)
def _prefetch4(x0, x1, x2, x3, i):
    """``_prefetch_l1`` of index ``i`` of four rows."""
    _prefetch_l1(x0, i)
    _prefetch_l1(x1, i)
    _prefetch_l1(x2, i)
    _prefetch_l1(x3, i)


@njit(**_INLINE)
def _vstep8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, ahead):
    """``_load8`` and ``_group_max8`` of the 64-byte vector at column ``c``
    (the new max stored into ``m``): the 8 vectors, the old max, the new.
    ``ahead`` (elements, or 0): each row's line that far on is prefetched
    into L1 (the next group's, see ``_col_block``)."""
    if ahead:
        _prefetch4(x0, x1, x2, x3, c + ahead)
        _prefetch4(x4, x5, x6, x7, c + ahead)
    v0 = vload(x0, c)
    v1 = vload(x1, c)
    v2 = vload(x2, c)
    v3 = vload(x3, c)
    v4 = vload(x4, c)
    v5 = vload(x5, c)
    v6 = vload(x6, c)
    v7 = vload(x7, c)
    mo = vload(m, c)
    mn = vgt(_vmax8(v0, v1, v2, v3, v4, v5, v6, v7), mo)
    vstore(m, c, mn)
    return v0, v1, v2, v3, v4, v5, v6, v7, mo, mn


@njit(**_INLINE)
def _vmax8(v0, v1, v2, v3, v4, v5, v6, v7):
    """The group's own max of 8 vectors, lane by lane (``_vstep8``'s tree)."""
    return vgt(vgt(vgt(v0, v1), vgt(v2, v3)), vgt(vgt(v4, v5), vgt(v6, v7)))


@njit(**_INLINE)
def _vexps8(v0, v1, v2, v3, v4, v5, v6, v7, sh):
    """The 8 vectors ``vec_exp_np(v - sh)`` (``fexp_np``'s bits)."""
    return (vec_exp_np(vsub(v0, sh)), vec_exp_np(vsub(v1, sh)), vec_exp_np(vsub(v2, sh)),
            vec_exp_np(vsub(v3, sh)), vec_exp_np(vsub(v4, sh)), vec_exp_np(vsub(v5, sh)),
            vec_exp_np(vsub(v6, sh)), vec_exp_np(vsub(v7, sh)))


@njit(**_INLINE)
def _vtree8(a0, a1, a2, a3, a4, a5, a6, a7):
    """``_exp_sum8``'s tree of 8 vectors."""
    return vadd(vadd(vadd(a0, a1), vadd(a2, a3)), vadd(vadd(a4, a5), vadd(a6, a7)))


@njit(**_INLINE)
def _vsum8(v0, v1, v2, v3, v4, v5, v6, v7, sh):
    """``_exp_sum8`` of vectors."""
    a0, a1, a2, a3, a4, a5, a6, a7 = _vexps8(v0, v1, v2, v3, v4, v5, v6, v7, sh)
    return _vtree8(a0, a1, a2, a3, a4, a5, a6, a7)


@njit(**_INLINE)
def _vsum8_ones(v0, v1, v2, v3, v4, v5, v6, v7, sh):
    """``_exp_sum8_ones`` of vectors."""
    a0, a1, a2, a3, a4, a5, a6, a7 = _vexps8(v0, v1, v2, v3, v4, v5, v6, v7, sh)
    return (_vtree8(vrest1(a0), vrest1(a1), vrest1(a2), vrest1(a3), vrest1(a4), vrest1(a5),
                    vrest1(a6), vrest1(a7)),
            _vtree8(vis1(a0), vis1(a1), vis1(a2), vis1(a3), vis1(a4), vis1(a5), vis1(a6), vis1(a7)))


@njit(**_INLINE)
def _vsum8_log(v0, v1, v2, v3, v4, v5, v6, v7, at, sh):
    """Float32 log_softmax's sums of a group of 8 vectors against the shift
    ``sh`` of ``at`` (the running max or the reference): ``_vsum8_ones``
    where some lane of the group reaches ``at`` (its exp(0) = 1 among them),
    else ``_vsum8`` and no ones.  A float32 sum of 1 and small terms loses
    those below half an ulp of 1 (``_exp_sum8_ones``); a group without the
    max sums terms below 1, or, where one rounds to 1, its column's sum is
    at least 2 and ``log(sum)`` far from 0: a float32 sum of 8 terms then
    keeps the relative precision the rows' sums have.  The max is in few
    groups after the first rows, so the test and its branch (one per 8
    vectors) cost less than counting the ones of every group: (32000, 4096)
    axis 0, 2 threads, log_softmax / softmax 1.04-1.05 -> 1.00
    (bench/mb_ratios.py, two runs each).  The test is a vector's, so a
    column's bits depend on the 16 (float32) columns it shares a vector
    with: always the same ones, as blocks start at multiples of 64 columns
    (the tail, after the last whole vector, counts its ones column by
    column, ``_exp_sum8_ones``)."""
    if vany_eq(_vmax8(v0, v1, v2, v3, v4, v5, v6, v7), at):
        return _vsum8_ones(v0, v1, v2, v3, v4, v5, v6, v7, sh)
    t = _vsum8(v0, v1, v2, v3, v4, v5, v6, v7, sh)
    return t, vzero(t, False)


@njit(**_INLINE)
def _whole_vectors(w, x):
    """How many of ``w`` elements of ``x``'s type fill whole 64-byte vectors."""
    return w - w % (64 // x.itemsize)


@njit(fastmath=_FM, cache=True)
def _col_group8(xf, xg, xs1, w, m, mo_out, e, ahead):
    """A full group of 8 rows in one pass over the columns, all in registers:
    new running max ``m`` (the old one into ``mo_out``), and ``e`` = the sum
    of the 8 ``exp(x - shift)`` against it, in T.  No
    reduction and no conditional store here, so that LLVM vectorises the
    loop at T's full width.  A separate function, not inlined by Numba (as
    ``_exp_block``): inlined in the kernel, its loop reloaded the exp's
    constants every iteration."""
    _wide_vectors()
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(xf, xg, xs1, w)
    whole = _whole_vectors(w, e)
    for c in range(0, whole, 64 // e.itemsize):
        v0, v1, v2, v3, v4, v5, v6, v7, mo, mn = _vstep8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, ahead)
        vstore(mo_out, c, mo)
        vstore(e, c, _vsum8(v0, v1, v2, v3, v4, v5, v6, v7, vsh(mn)))
    for c in range(whole, w):
        v0, v1, v2, v3, v4, v5, v6, v7, sh = _step8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, mo_out)
        e[c] = _exp_sum8(v0, v1, v2, v3, v4, v5, v6, v7, sh)


@njit(**_INLINE)
def _rest(a, one):
    return a if a != one else like(0.0, a)


@njit(**_INLINE)
def _is1(a, one):
    return one if a == one else like(0.0, a)


@njit(**_INLINE)
def _exp_sum8_ones(v0, v1, v2, v3, v4, v5, v6, v7, sh):
    """``_exp_sum8`` with the exponentials equal to 1 (at the max) apart:
    (the sum of the others as a tree in T, how many equal 1, in T).  A
    float32 sum of 1 and small terms loses those below half an ulp of 1,
    and ``log(sum)``, near 0 at a dominant max, needs them; the sum of the
    small terms alone keeps float32's relative precision."""
    one = like(1.0, sh)
    a0 = fexp_np(v0 - sh)
    a1 = fexp_np(v1 - sh)
    a2 = fexp_np(v2 - sh)
    a3 = fexp_np(v3 - sh)
    a4 = fexp_np(v4 - sh)
    a5 = fexp_np(v5 - sh)
    a6 = fexp_np(v6 - sh)
    a7 = fexp_np(v7 - sh)
    rest = (((_rest(a0, one) + _rest(a1, one)) + (_rest(a2, one) + _rest(a3, one)))
            + ((_rest(a4, one) + _rest(a5, one)) + (_rest(a6, one) + _rest(a7, one))))
    ones = (((_is1(a0, one) + _is1(a1, one)) + (_is1(a2, one) + _is1(a3, one)))
            + ((_is1(a4, one) + _is1(a5, one)) + (_is1(a6, one) + _is1(a7, one))))
    return rest, ones



@njit(fastmath=_FM, cache=True)
def _col_group8_ones(xf, xg, xs1, w, m, mo_out, e, ones, ahead):
    """``_col_group8`` for float32 log_softmax: the exponentials equal to 1
    (at the max) are counted into ``ones``, the others summed in float32
    into ``e``, in the vectors where the group reaches the max
    (``_vsum8_log``; elsewhere ``ones`` is 0); the caller adds the two in
    float64.  A float32 sum of 1 and
    small terms loses those below half an ulp of 1, and ``log(sum)``, near
    0 at a dominant max, needs them; the sum of the small terms alone keeps
    float32's relative precision.  (Float64 group sums, widening all 8
    exponentials, cost 12% more: (32000, 4096) axis 0, 1.79x a copy.)"""
    _wide_vectors()
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(xf, xg, xs1, w)
    whole = _whole_vectors(w, e)
    for c in range(0, whole, 64 // e.itemsize):
        v0, v1, v2, v3, v4, v5, v6, v7, mo, mn = _vstep8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, ahead)
        vstore(mo_out, c, mo)
        t, n1 = _vsum8_log(v0, v1, v2, v3, v4, v5, v6, v7, mn, vsh(mn))
        vstore(e, c, t)
        vstore(ones, c, n1)
    for c in range(whole, w):
        v0, v1, v2, v3, v4, v5, v6, v7, sh = _step8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, mo_out)
        e[c], ones[c] = _exp_sum8_ones(v0, v1, v2, v3, v4, v5, v6, v7, sh)


@njit(**_INLINE)
def _rescaled(sc, d, move):
    """A column's float64 sum ``sc`` moved to a larger shift, ``sc *
    exp(d)`` (``d``: old shift - new, in float64) where ``move``; a zero sum
    stays zero (``d`` is garbage when the old shift was -inf), NaN stays
    NaN.  Branch-free (``exp`` taken either way), for vector loops."""
    f = fexp_np(d)
    return sc * f if (move and sc != 0) else sc


@njit(**_INLINE)
def _sub_grew(m, mo, c0, n):
    """How many of the columns ``[c0, c0 + n)`` grew from ``mo`` to ``m``,
    and the views of those ``m`` and ``mo``."""
    mv = view(m, c0, n)
    mov = view(mo, c0, n)
    grew = 0
    for c in range(n):
        grew += mv[c] > mov[c]
    return grew, mv, mov


@njit(**_INLINE)
def _col_rescale(s, mo, m, w):
    """``s *= exp(sh(mo) - sh(m))`` (``_rescaled``) where the running max
    grew from ``mo`` to ``m``.  By sub-blocks of COL_SUB columns, skipping
    those where no max grew (most, after the first rows)."""
    for c0 in range(0, w, COL_SUB):
        n = min(COL_SUB, w - c0)
        changed, mv, mov = _sub_grew(m, mo, c0, n)
        if changed:
            sv = view(s, c0, n)
            for c in range(n):
                mn = mv[c]
                mo_c = mov[c]
                sv[c] = _rescaled(sv[c], np.float64(_sh(mo_c)) - np.float64(_sh(mn)), mn > mo_c)


@njit(**_INLINE)
def _ref_step8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, ref):
    """Column ``c`` of a group of 8 rows against its reference: its 8
    values, the reference, and the new running max (stored into ``m[c]``)."""
    v0, v1, v2, v3, v4, v5, v6, v7 = _load8(x0, x1, x2, x3, x4, x5, x6, x7, c)
    mn = _group_max8(m[c], v0, v1, v2, v3, v4, v5, v6, v7)
    m[c] = mn
    return v0, v1, v2, v3, v4, v5, v6, v7, ref[c], mn


@njit(fastmath=_FM, cache=True)
def _col_group8_ref(xf, xg, xs1, w, m, ref, e, hr, ahead):
    """Softmax's ``_col_group8``: the new running max ``m`` of a full group
    of 8 rows, and ``e`` = the sum of the 8 ``exp(x - sh(ref))`` in T, or -1
    for a column whose max now exceeds its reference ``ref`` by more than
    ``hr`` (``COL_HEADROOM`` in T; ``_col_reref``, or ``_col_rebase`` and
    ``_col_readd8``, take the group again there).  The reference changes
    only then, so no sum is rescaled when the max grows a
    little, and the loop has nothing but loads, arithmetic and two stores
    (a count of those columns here, a reduction, halved LLVM's float32
    vector width: 1.8x slower; it is ``_col_add_ref``'s)."""
    _wide_vectors()
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(xf, xg, xs1, w)
    whole = _whole_vectors(w, e)
    left = vsplat(e, like(-1.0, hr))
    hv = vsplat(e, hr)
    for c in range(0, whole, 64 // e.itemsize):
        v0, v1, v2, v3, v4, v5, v6, v7, mo, mn = _vstep8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, ahead)
        r = vload(ref, c)
        t = _vsum8(v0, v1, v2, v3, v4, v5, v6, v7, vsh(r))
        vstore(e, c, vpick_gt(mn, vadd(r, hv), left, t))
    for c in range(whole, w):
        v0, v1, v2, v3, v4, v5, v6, v7, r, mn = _ref_step8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, ref)
        sh = _sh(r)  # every x - sh <= hr, -inf or NaN (or the column is taken again)
        t = _exp_sum8(v0, v1, v2, v3, v4, v5, v6, v7, sh)
        e[c] = like(-1.0, t) if mn > r + hr else t


@njit(fastmath=_FM, cache=True)
def _col_group8_ref_ones(xf, xg, xs1, w, m, ref, e, ones, ahead):
    """``_col_group8_ref`` for float32 log_softmax, with no headroom (a
    column is left out, ``e`` -1, as soon as its max exceeds its reference,
    so that the reference is the max itself when the group is added), and
    the exponentials equal to 1 apart (``_exp_sum8_ones``: their count into
    ``ones``).  For long, wide blocks only (``COL_REF_LOG_K``,
    ``COL_REF_LOG_W``; see ``_col_block``)."""
    _wide_vectors()
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(xf, xg, xs1, w)
    whole = _whole_vectors(w, e)
    left = vsplat(e, like(-1.0, e[0]))
    for c in range(0, whole, 64 // e.itemsize):
        v0, v1, v2, v3, v4, v5, v6, v7, mo, mn = _vstep8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, ahead)
        r = vload(ref, c)
        t, n1 = _vsum8_log(v0, v1, v2, v3, v4, v5, v6, v7, r, vsh(r))
        vstore(e, c, vpick_gt(mn, r, left, t))
        vstore(ones, c, n1)
    for c in range(whole, w):
        v0, v1, v2, v3, v4, v5, v6, v7, r, mn = _ref_step8(x0, x1, x2, x3, x4, x5, x6, x7, c, m, ref)
        t, n1 = _exp_sum8_ones(v0, v1, v2, v3, v4, v5, v6, v7, _sh(r))
        e[c] = like(-1.0, t) if mn > r else t
        ones[c] = n1


@njit(**_INLINE)
def _group_sum(e, ones, c, wide):
    """A column's sum over a group in float64: ``e`` (``_col_group8``,
    ``_col_group8_ref``) or, ``wide``, the ones plus the rest
    (``_col_group8_ones``, ``_col_group8_ref_ones``)."""
    return np.float64(ones[c]) + np.float64(e[c]) if wide else np.float64(e[c])


@njit(**_INLINE)
def _col_add_ref(s, e, ones, w, wide):
    """``s +=`` a group's sums (``_group_sum``: ``wide``, those of
    ``_col_group8_ref_ones``) in float64 where ``e`` is a sum (>= 0 or NaN);
    returns how many columns have -1 there (to be taken again).  The
    group's sums are loaded in every column: loaded only where added, LLVM
    made masked loads (``vmaskmovpd``) of them, which stalled on AMD Zen 2
    right after ``_col_group8_ref`` stored them, and in one thread far more
    than in the other: float64 softmax of (256, 4096) in cache, axis 0,
    two threads, 3.45 -> 2.11 ns an element (one thread 4.2 -> 4.0);
    (32000, 4096), time / copy, 6.67 -> 4.08."""
    n = 0
    for c in range(w):
        g = _group_sum(e, ones, c, wide)  # loaded whatever again: no masked loads (docstring)
        again = e[c] < 0
        s[c] += 0.0 if again else g
        n += again
    return n


@njit(fastmath=_FM, cache=True)
def _col_rebase(s, m, ref, w, hr):
    """Where a column's running max ``m`` exceeds its reference by more
    than ``COL_HEADROOM``: the reference becomes the max and the float64 sum
    is rescaled to it (``_rescaled``).  Branch-free, so that it vectorises:
    a ramp along the columns rebases every group."""
    for c in range(w):
        mn = m[c]
        r = ref[c]
        again = mn > r + hr
        s[c] = _rescaled(s[c], np.float64(_sh(r)) - np.float64(mn), again)
        ref[c] = mn if again else r


@njit(**_INLINE)
def _col_reref(xf, xg, xs1, c0, n, m, ref, s, e):
    """The columns of ``[c0, c0 + n)`` that ``_col_group8_ref`` left out
    (``e`` -1), one at a time: the reference becomes the max, the float64
    sum is rescaled to it (``_rescaled``), and the group's 8 rows are added
    against it."""
    for c in range(c0, c0 + n):
        if e[c] < 0:
            mn = m[c]
            sc = _rescaled(s[c], np.float64(_sh(ref[c])) - np.float64(mn), True)
            for j in range(COL_GROUP):
                sc += np.float64(fexp_np(xf[xg + j * xs1 + c] - mn))
            s[c] = sc
            ref[c] = mn


@njit(**_INLINE)
def _e64(v, sh):
    return np.float64(fexp_np(v - sh))


@njit(fastmath=_FM, cache=True)
def _col_readd8(xf, xg, xs1, w, ref, s, e, log):
    """``s += `` the sum of the 8 ``exp(x - sh(ref))`` of the group at
    ``xg`` where ``e`` is -1 (after ``_col_rebase``): ``_col_reref`` for
    spans where many columns were left out (a ramp along the columns).
    ``log``: the sum in float64 (the max's 1 among them)."""
    _wide_vectors()
    x0, x1, x2, x3, x4, x5, x6, x7 = _rows8(xf, xg, xs1, w)
    for c in range(w):
        sh = _sh(ref[c])
        v0, v1, v2, v3, v4, v5, v6, v7 = _load8(x0, x1, x2, x3, x4, x5, x6, x7, c)
        if log:  # T's exponentials, as _col_reref's
            t = (((_e64(v0, sh) + _e64(v1, sh)) + (_e64(v2, sh) + _e64(v3, sh)))
                 + ((_e64(v4, sh) + _e64(v5, sh)) + (_e64(v6, sh) + _e64(v7, sh))))
        else:
            t = np.float64(_exp_sum8(v0, v1, v2, v3, v4, v5, v6, v7, sh))
        s[c] += t if e[c] < 0 else 0.0


@njit(fastmath=_FM, cache=True)
def _col_again(xf, xg, xs1, w, m, ref, s, e, hr, log):
    """The columns ``_col_group8_ref`` left out (``e`` -1), by spans of
    ``COL_SCAN`` columns: where more than 1 in ``COL_AGAIN_VEC`` of a span's
    (a ramp along the columns), every column of the span is rebased
    (``_col_rebase``) and those left out take the group again by a vector
    pass (``_col_readd8``); where fewer, one at a time (``_col_reref``).
    Such columns are few, but spread over the groups (a group with one is
    common), so the scan must be cheap.  The choice is the span's (its
    columns' bits depend on it): a block starts at a multiple of
    ``COL_SCAN`` columns, so the spans, and the bits, are the same whatever
    the block width (it was the block's, 1 in 64 of its columns: a 1-ulp
    difference between 1 and 2 threads once blocks narrowed)."""
    for c0 in range(0, w, COL_SCAN):
        n = min(COL_SCAN, w - c0)
        ev = view(e, c0, n)
        again = 0
        for c in range(n):
            again += ev[c] < 0
        if again * COL_AGAIN_VEC > n:  # many (a ramp): two vector passes
            _col_rebase(view(s, c0, n), view(m, c0, n), view(ref, c0, n), n, hr)
            _col_readd8(xf, xg + c0, xs1, n, view(ref, c0, n), view(s, c0, n), ev, log)
        elif again:
            _col_reref(xf, xg, xs1, c0, n, m, ref, s, e)


@njit(**_INLINE)
def _group_ahead(pf, r0, k, xs1):
    """Where the group of rows at ``r0`` prefetches the next one (elements
    ahead, ``_vstep8``): ``pf`` and a full group follows, else 0."""
    return COL_GROUP * xs1 if pf and r0 + 2 * COL_GROUP <= k else 0


@njit(**_INLINE)
def _col_sums_ref(xf, xb, xs1, k, w, m, ref, s, gm, e, ones, log, pf):
    """Pass 1 of ``_col_block`` for softmax and float32 log_softmax: the
    maxima ``m`` and the float64 sums ``s`` of ``exp(x - sh(ref))``,
    against per-column references ``ref`` that trail the max by at most
    ``COL_HEADROOM`` (``_col_group8_ref``; the sum against the max is then
    ``s * exp(sh(ref) - m)``).  Unlike ``_col_sums`` (log_softmax of other
    blocks) there is no rescaling test of every column after every group:
    (32000, 4096) axis 0, 2 threads, this pass 0.67 -> 0.59 of a copy in
    float32 (a plain read of the block: 0.57), 0.69 -> 0.62 in float64.

    ``log`` (float32 log_softmax): no headroom, and the exponentials equal
    to 1 counted apart (``_col_group8_ref_ones``): its result at the max is
    ``-log(sum)``, near 0 at a dominant max, where float32's ulp of the sum
    would show.  Every reference is then its column's max at the end, and
    the columns taken again are added in float64.  Only for long, wide
    blocks (see ``_col_block``)."""
    hr = like(0.0 if log else COL_HEADROOM, m[0])
    for c in range(w):
        m[c] = like(-np.inf, hr)
    if k > 0:  # the first references: no column left out of the first group
        _col_group_max(xf, xb, xs1, w, min(COL_GROUP, k), m)
    for c in range(w):
        ref[c] = m[c]
        s[c] = 0.0
    for r0 in range(0, k, COL_GROUP):
        g = min(COL_GROUP, k - r0)
        xg = xb + r0 * xs1
        if g == COL_GROUP:
            ahead = _group_ahead(pf, r0, k, xs1)
            if log:
                _col_group8_ref_ones(xf, xg, xs1, w, m, ref, e, ones, ahead)
            else:
                _col_group8_ref(xf, xg, xs1, w, m, ref, e, hr, ahead)
            if _col_add_ref(s, e, ones, w, log):
                _col_again(xf, xg, xs1, w, m, ref, s, e, hr, log)
        else:  # the last, ragged group: new references first, then its rows
            _col_group_max(xf, xg, xs1, w, g, gm)
            for c in range(w):
                m[c] = fmax(m[c], gm[c])
            _col_rebase(s, m, ref, w, hr)
            for r in range(g):
                xr = view(xf, xg + r * xs1, w)
                for c in range(w):
                    s[c] += np.float64(fexp_np(xr[c] - _sh(ref[c])))


@njit(**_INLINE)
def _put_vec(d, c, v, nt):
    """``d[c:c + W] = v``; ``nt``: as a streaming store (``d[c]`` 64-byte aligned)."""
    if nt:
        vstore_nt(d, c, v)
    else:
        vstore(d, c, v)


@njit(**_INLINE)
def _col4_vec(v, sh, f, log):
    """``_LOG_COLS`` (log) or ``_EXP_COLS`` of a vector (the same bits as ``_op``)."""
    return vsub(vsub(v, sh), f) if log else vmul(vec_exp_np(vsub(v, sh)), f)


@njit(**_INLINE)
def _col4_vectors(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, log, nt, ahead):
    """``_col4_vec`` of the four rows' whole 64-byte vectors from their
    start, a vector at a time (as ``_exp_vectors``; the same bits); returns
    how many columns it wrote.  ``ahead`` (elements, or 0): each row's line
    that far on is prefetched into L1 (the next four rows, ``_col_block``)."""
    whole = _whole_vectors(d0.shape[0], x0)
    for c in range(0, whole, 64 // x0.itemsize):
        if ahead:
            _prefetch4(x0, x1, x2, x3, c + ahead)
        sh = vload(shv, c)
        f = vload(scv, c)
        _put_vec(d0, c, _col4_vec(vload(x0, c), sh, f, log), nt)
        _put_vec(d1, c, _col4_vec(vload(x1, c), sh, f, log), nt)
        _put_vec(d2, c, _col4_vec(vload(x2, c), sh, f, log), nt)
        _put_vec(d3, c, _col4_vec(vload(x3, c), sh, f, log), nt)
    return whole


@njit(fastmath=_FM, cache=True)
def _col_write4_loop(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, start, n, op, nt, ahead):
    """Columns ``[start, start + n)`` of the four rows, ``op`` ``_LOG_COLS``
    or ``_EXP_COLS`` (views from there, indexed from 0: a loop from
    ``start`` would wrap negative indices, and LLVM would gather).

    Compiled on its own and inlined by LLVM (``_always_inline``), not by
    Numba: ``_col_write4`` inlines it in 18 places, and Numba's inlining
    deep-copies a function's IR at every place (block by block, each copy
    taking the function's whole scope), which took most of the column
    kernel's compile.  First call of the column kernel with a cold cache,
    float64: 114 -> 71 s (Intel Xeon); the same bits, the same speed."""
    _always_inline()
    _wide_vectors()
    x0 = view(x0, start, n)
    x1 = view(x1, start, n)
    x2 = view(x2, start, n)
    x3 = view(x3, start, n)
    d0 = view(d0, start, n)
    d1 = view(d1, start, n)
    d2 = view(d2, start, n)
    d3 = view(d3, start, n)
    shv = view(shv, start, n)
    scv = view(scv, start, n)
    c0 = _col4_vectors(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, op == _LOG_COLS, nt, ahead)
    for c in range(c0, n):  # softmax: shift = the max (NaN ignored): x - shift <= 0, -inf or NaN
        sh = shv[c]
        f = scv[c]
        _put(d0, c, _op(op, x0[c], sh, f, sh, f), nt)
        _put(d1, c, _op(op, x1[c], sh, f, sh, f), nt)
        _put(d2, c, _op(op, x2[c], sh, f, sh, f), nt)
        _put(d3, c, _op(op, x3[c], sh, f, sh, f), nt)


#: ``_col_write4_loop``'s body, inlined by Numba into ``_col_write4_loop_ip``
_col_write4_span = njit(**_INLINE)(_col_write4_loop.py_func)


@njit(fastmath=_FM, cache=True)
def _col_write4_loop_ip(d0, d1, d2, d3, shv, scv, start, n, op, nt, ahead):
    """``_col_write4_loop`` in place, each row passed once (as
    ``_rows_range_ip``: LLVM then needs no overlap test of source and
    destination, which would send its loops to scalar code)."""
    _col_write4_span(d0, d1, d2, d3, d0, d1, d2, d3, shv, scv, start, n, op, nt, ahead)


@njit(**_INLINE)
def _col_write4_go(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, start, n, op, nt, ahead, inplace):
    """``_col_write4_loop``, or ``_ip`` where ``inplace`` (``x0`` is ``d0``...)."""
    if inplace:
        _col_write4_loop_ip(d0, d1, d2, d3, shv, scv, start, n, op, nt, ahead)
    else:
        _col_write4_loop(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, start, n, op, nt, ahead)


@njit(**_INLINE)
def _col_write4_parts(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, head, n, op, ahead, inplace):
    w = d0.shape[0]
    _col_write4_go(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, 0, head, op, False, ahead, inplace)
    _col_write4_go(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, head, n, op, True, ahead, inplace)
    _col_write4_go(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, head + n, w - head - n, op, False, ahead,
                   inplace)


@njit(**_INLINE)
def _col_write4_rows(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, head, n, log, ahead, inplace):
    """The four rows' columns ``[head, head + n)`` with streaming stores
    (``_nt_span`` of ``d0``, the same for the other three), the rest with
    plain stores; ``inplace``: ``x0`` is ``d0``... (``_col_write4_go``)."""
    if log:
        _col_write4_parts(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, head, n, _LOG_COLS, ahead, inplace)
    else:
        _col_write4_parts(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, head, n, _EXP_COLS, ahead, inplace)


@njit(fastmath=_FM, cache=True)
def _col_write4(xf, xg, xs1, of, og, os1, w, shift, scale, log, nt, tmp, inplace, ahead):
    """The writing pass over 4 consecutive rows (strides ``xs1`` and
    ``os1``) of the ``w`` columns at ``xg``/``og``: ``exp(x - shift) *
    scale``, or ``(x - shift) - scale`` (log).  Four rows per pass over the
    columns keep four reads in flight.  ``nt``: streaming stores, straight
    from the loop (``_nt_store``) where the four output rows share their
    alignment (a row stride of whole 64-byte vectors), else the rows go
    through ``tmp`` (``4 * w``, in L1/L2) and are streamed out from there.

    (32000, 4096), axis 0, 2 threads, time / copy, softmax: float32 1.64 ->
    1.44 with four rows through ``tmp`` (3.2 -> 3.05 at one thread), ->
    1.19-1.20 straight (float64 1.51-1.56 -> 1.22-1.28); log_softmax
    straight, against a row at a time: float32 1.43-1.44 -> 1.24-1.28,
    float64 1.44-1.47 -> 1.18-1.22.  (32000, 4095), through ``tmp``:
    softmax 1.46-1.52; a row at a time 1.74-1.78, four rows without
    streaming stores 1.83.

    A separate function, not inlined by Numba (as ``_col_group8``), so that
    its loop keeps the exp's constants in registers.  ``inplace`` (``of`` is
    ``xf`` at the same offsets): the loop reads and writes the same views, so
    that LLVM needs no overlap test that would send it to scalar code."""
    _wide_vectors()
    shv = view(shift, 0, w)
    scv = view(scale, 0, w)
    o0 = view(of, og, w)
    o1 = view(of, og + os1, w)
    o2 = view(of, og + 2 * os1, w)
    o3 = view(of, og + 3 * os1, w)
    x0 = view(xf, xg, w)
    x1 = view(xf, xg + xs1, w)
    x2 = view(xf, xg + 2 * xs1, w)
    x3 = view(xf, xg + 3 * xs1, w)
    if nt and os1 * of.itemsize % _NT_BYTES:
        d0 = view(tmp, 0, w)
        d1 = view(tmp, w, w)
        d2 = view(tmp, 2 * w, w)
        d3 = view(tmp, 3 * w, w)
        _col_write4_rows(x0, x1, x2, x3, d0, d1, d2, d3, shv, scv, 0, 0, log, ahead, False)
        one = like(1.0, scv[0])  # x * 1 is x exactly (-0, +-inf and NaN too)
        _map(d0, d0, d0, o0, one, one, _MUL, True)
        _map(d1, d1, d1, o1, one, one, _MUL, True)
        _map(d2, d2, d2, o2, one, one, _MUL, True)
        _map(d3, d3, d3, o3, one, one, _MUL, True)
        return
    head, n = _nt_span(o0) if nt else (0, 0)
    if inplace:
        _col_write4_rows(o0, o1, o2, o3, o0, o1, o2, o3, shv, scv, head, n, log, ahead, True)
    else:
        _col_write4_rows(x0, x1, x2, x3, o0, o1, o2, o3, shv, scv, head, n, log, ahead, False)


@njit(**_INLINE)
def _col_row(xr, orow, shv, scv, log, nt):
    """One row of a column block's writing pass: ``(x - shift) - scale``
    (log) or ``exp(x - shift) * scale``; ``nt``: streaming stores over
    ``_nt_span(orow)``."""
    zero = like(0.0, orow[0])
    if log:
        _map(xr, shv, scv, orow, zero, zero, _LOG_COLS, nt)
    else:  # shift = the max (NaN ignored): x - shift <= 0, -inf or NaN
        _map_exp(xr, shv, scv, orow, zero, zero, True, nt)


@njit(**_INLINE)
def _col_add_group(s, m, mo, e, ones, w, wide):
    """``s +=`` a group's sums (``_group_sum``) in the columns whose running
    max did not grow (from ``mo`` to ``m``); returns how many grew.  The
    count in this loop, not in the group's (a reduction there halved LLVM's
    float32 vector width), replaced a test of every column after every
    group (``_col_rescale``'s), the same sums in the same order: per group
    of 2048 float32 columns in cache, 0.51-0.62 -> 0.30-0.32 us where no
    max grew, 0.55-0.65 -> 0.49-0.57 us where one did (``_col_add_grown``
    stops after it), 0.86-1.02 -> 1.04-1.19 us where 21 spread ones did;
    axis 0, one thread, log_softmax / softmax (16000, 2048) 1.06-1.16 ->
    0.97-1.01; two threads, (32000, 4096), 1.12-1.15 -> 1.09-1.17 (within
    the noise)."""
    n = 0
    for c in range(w):
        g = _group_sum(e, ones, c, wide)  # loaded whatever grew (see _col_add_ref)
        grew = m[c] > mo[c]
        s[c] += 0.0 if grew else g
        n += grew
    return n


@njit(fastmath=_FM, cache=True)
def _col_add_grown(s, m, mo, e, ones, w, wide, left):
    """The ``left`` columns ``_col_add_group`` left out: their sum rescaled
    to the new max (``_rescaled``), then the group's added.  By sub-blocks
    of ``COL_SUB`` columns, skipping those where no max grew (most, after
    the first rows), branch-free within one (where most grow, early on),
    and stopping after the last."""
    for c0 in range(0, w, COL_SUB):
        if left == 0:
            break
        n = min(COL_SUB, w - c0)
        grew, mv, mov = _sub_grew(m, mo, c0, n)
        if grew == 0:
            continue
        left -= grew
        sv = view(s, c0, n)
        ev = view(e, c0, n)
        ov = view(ones, c0, n)
        for c in range(n):
            mn = mv[c]
            mo_c = mov[c]
            sc = _rescaled(sv[c], np.float64(_sh(mo_c)) - np.float64(_sh(mn)), True)
            sv[c] = sc + _group_sum(ev, ov, c, wide) if mn > mo_c else sv[c]


@njit(**_INLINE)
def _col_sums(xf, xb, xs1, k, w, m, mo, s, gm, shn, e, e64, ones, pf):
    """Pass 1 of ``_col_block`` for float64 log_softmax, and float32's on
    short or narrow blocks: the running maxima ``m`` and the float64 sums
    ``s`` of the w columns at xb, each group's sum added first in T
    (float32: the ones apart, ``_col_group8_ones``; a last, ragged group in
    float64)."""
    wide = e.itemsize == 4
    ninf = like(-np.inf, m[0])
    for c in range(w):
        m[c] = ninf
        s[c] = 0.0
    for r0 in range(0, k, COL_GROUP):
        g = min(COL_GROUP, k - r0)
        xg = xb + r0 * xs1
        if g == COL_GROUP:
            ahead = _group_ahead(pf, r0, k, xs1)
            if wide:
                _col_group8_ones(xf, xg, xs1, w, m, mo, e, ones, ahead)
            else:
                _col_group8(xf, xg, xs1, w, m, mo, e, ahead)
            grew = _col_add_group(s, m, mo, e, ones, w, wide)
            if grew:
                _col_add_grown(s, m, mo, e, ones, w, wide, grew)
        else:
            _col_group_max(xf, xg, xs1, w, g, gm)
            grew = _col_new_max(m, gm, shn, mo, w)
            for c in range(w):
                e64[c] = 0.0
            for r in range(g):
                xr = view(xf, xg + r * xs1, w)
                for c in range(w):
                    e64[c] += np.float64(fexp_np(xr[c] - shn[c]))
            if grew:
                _col_rescale(s, mo, m, w)
            for c in range(w):
                s[c] += e64[c]


@njit(**_INLINE)
def _col_block(xf, xb, xs1, of, ob, os1, k, w, wpath, log, m, mo, s, gm, shn, e, e64, ones, shift,
               scale, nt, tmp):
    """Softmax along the k rows (stride xs1) of the w contiguous columns at
    xb, within a block of ``wpath`` columns of ``COL_BLOCK`` (float32
    log_softmax's choice of pass 1 below is taken on it: the same for any
    narrower block, see ``col_width``).

    Pass 1 reads ``COL_GROUP`` rows at a time: their maximum, then the sum
    of their exponentials, a group's sum in T added in float64 to the
    running sums.  Softmax takes them against references that trail the
    maximum by at most ``COL_HEADROOM`` (``_col_sums_ref``; the sum against
    the max follows from one more exponential per column).  log_softmax
    takes them against the new running maximum (every argument is <= 0,
    -inf or NaN: ``fexp_np``), the sums rescaled (rarely) when the maximum
    grows (``_col_sums``; float32 log_softmax keeps the exponentials equal to 1
    apart in the groups that reach the max, ``_col_group8_ones``: a float32
    sum of 1 and small terms loses them, and ``log(sum)`` is needed to the
    last bits.  A redo of the
    block's pass in float64 where a column's sum was below ``_REDO_BELOW``,
    as the rows do, ran nearly always on the benchmark's logits, 3 x
    standard normal: 2.6x a copy).  Float32 log_softmax of long, wide
    blocks (at least ``COL_REF_LOG_K`` rows, ``COL_REF_LOG_W`` columns)
    takes softmax's references instead, with no headroom (``_col_sums_ref``
    with ``log``): no test of every column after every group, where a
    column whose max grows is taken again alone.  (32000, 4096), two
    threads, log_softmax / softmax 1.08-1.18 -> 1.02-1.16, median of 12
    runs 1.11 -> 1.07 (one thread 1.07 -> 1.00); it lost on narrow blocks,
    (65536, 32) one thread 1.04-1.09 -> 1.66-1.68, and the fourteenth
    session measured losses on short columns in cache, (1000, 2048) and
    (4000, 512) one thread 1.26-1.54.  Pass 2 writes,
    softmax four rows at a time (``_col_write4``), log_softmax one row at a
    time with the row after next prefetched (``nt``: with streaming stores,
    straight from the loops, ``_col_row``; log_softmax (32000, 4096) axis 0,
    2 threads, time / copy: float32 1.54-1.58 -> 1.43-1.44, float64
    1.53-1.56 -> 1.44-1.47 against a scratch row streamed out).

    ``nt`` (a large array, AVX-512): software prefetches into L1, one line
    per vector, of the next group of rows in pass 1 (``_group_ahead``) and
    of the next four rows in the four-row writing (``_col4_vectors``): a
    row's run in a block is short, and the hardware prefetcher, which stops
    at every 4 KiB page, did not keep up (the Cython kernel's measurements,
    fsm_body.h; the same bits).
    """
    _wide_vectors()
    if log and (e.itemsize == 8 or k < COL_REF_LOG_K or wpath < COL_REF_LOG_W):
        _col_sums(xf, xb, xs1, k, w, m, mo, s, gm, shn, e, e64, ones, nt)
    else:  # mo: the references (log_softmax: the maxima, at the end)
        _col_sums_ref(xf, xb, xs1, k, w, m, mo, s, gm, e, ones, log, nt)
    for c in range(w):
        mc = m[c]
        sc = s[c]
        if _finite(mc) and _finite(sc):
            shift[c] = mc
            if log:
                scale[c] = like(np.log(sc), mc)
            else:
                scale[c] = like(1.0 / (sc * fexp_np(np.float64(_sh(mo[c])) - np.float64(mc))), mc)
        else:  # NaN, +inf, or only -inf: redo this column exactly
            shift[c], scale[c] = _col_exact(xf, xb + c, xs1, k, log)
    r_done = 0
    inplace = ob == xb and os1 == xs1 and _address(of, 0) == _address(xf, 0)
    if not log or (nt and os1 * of.itemsize % _NT_BYTES == 0):  # (log_softmax: measured)
        while r_done + COL_WRITE_ROWS <= k:
            ahead = COL_WRITE_ROWS * xs1 if nt and r_done + 2 * COL_WRITE_ROWS <= k else 0
            _col_write4(xf, xb + r_done * xs1, xs1, of, ob + r_done * os1, os1, w, shift, scale,
                        log, nt, tmp, inplace, ahead)
            r_done += COL_WRITE_ROWS
    shv = view(shift, 0, w)  # unmanaged views: the loops below vectorise
    scv = view(scale, 0, w)
    for r in range(r_done, k):
        orow = view(of, ob + r * os1, w)
        if log and r + 2 < k:  # towards L2 (log_softmax only: measured)
            _prefetch_span_l2(xf, xb + (r + 2) * xs1, w)
        if inplace:  # the same view read and written: no overlap test (as _col_write4)
            _col_row(orow, orow, shv, scv, log, nt)
        else:
            _col_row(view(xf, xb + r * xs1, w), orow, shv, scv, log, nt)
    if nt:
        _stream_fence()


@njit(**_INLINE)
def _col_tasks(xf, xo, xs0, xs1, of, oo, os0, os1, outer, k, inner, log, cb, g, ngroups, nt):
    """Group ``g`` of ``ngroups`` of the tasks: blocks of ``cb`` columns
    (a power of 2 from ``COL_SCAN`` to ``COL_BLOCK``, ``col_width``), ``inner``
    cut into blocks, then the ``outer`` slices."""
    nb = (inner + cb - 1) // cb
    ntasks = outer * nb
    lo = g * ntasks // ngroups
    hi = (g + 1) * ntasks // ngroups
    bw = min(cb, inner)
    m = np.empty(bw, dtype=xf.dtype)
    s = np.empty(bw, dtype=np.float64)
    gm = np.empty(bw, dtype=xf.dtype)
    shn = np.empty(bw, dtype=xf.dtype)
    mo = np.empty(bw, dtype=xf.dtype)
    e = np.empty(bw, dtype=xf.dtype)
    e64 = np.empty(bw, dtype=np.float64)
    ones = np.empty(bw, dtype=xf.dtype)
    shift = np.empty(bw, dtype=xf.dtype)
    scale = np.empty(bw, dtype=xf.dtype)
    tmp = np.empty(COL_WRITE_ROWS * bw, dtype=xf.dtype)
    for t in range(lo, hi):
        o = t // nb
        c0 = (t - o * nb) * cb
        wpath = min(COL_BLOCK, inner - c0 // COL_BLOCK * COL_BLOCK)  # (cb divides COL_BLOCK)
        _col_block(xf, xo + o * xs0 + c0, xs1, of, oo + o * os0 + c0, os1, k,
                   min(cb, inner - c0), wpath, log, m, mo, s, gm, shn, e, e64, ones, shift, scale, nt,
                   tmp)


def _cols_kernel(xf, xo, xs0, xs1, of, oo, os0, os1, outer, k, inner, log, cb, ngroups, nt):
    for g in prange(ngroups):
        _col_tasks(xf, xo, xs0, xs1, of, oo, os0, os1, outer, k, inner, log, cb, g, ngroups, nt)


def _cols_kernel_inplace(bf, bo, bs0, bs1, outer, k, inner, log, cb, ngroups, nt):
    for g in prange(ngroups):
        _col_tasks(bf, bo, bs0, bs1, bf, bo, bs0, bs1, outer, k, inner, log, cb, g, ngroups, nt)


# ------------------------------------------------------ compiled variants
_I = types.intp
_B = types.boolean


def _ro(ft):
    return arr(ft, 1, "C", readonly=True)


def _rw(ft):
    return arr(ft, 1, "C")


def _sig_rows(ft):
    return [types.void(_ro(ft), _I, _I, _rw(ft), _I, _I, _I, _I, _B)]


def _sig_rows_c(ft):
    return [types.intp(arr(ft, 2, "C", readonly=True), arr(ft, 2, "C"), _B, _I)]


def _sig_rows_c_ip(ft):
    return [types.void(arr(ft, 2, "C"), _B)]


def _sig_rows_ip(ft):
    return [types.void(_rw(ft), _I, _I, _I, _I, _B)]


def _parts(ft):
    return (arr(ft, 2, "C"), arr(types.float64, 2, "C"))


def _sig_long(ft):
    return [types.void(_ro(ft), _I, _I, _rw(ft), _I, _I, _I, _I, _B, *_parts(ft), _B)]


def _sig_long_ip(ft):
    return [types.void(_rw(ft), _I, _I, _I, _I, _B, *_parts(ft), _B)]


def _sig_partials(ft):
    return [types.void(_ro(ft), _I, _I, _I, _I, _B, *_parts(ft))]


def _sig_cols(ft):
    return [types.void(_ro(ft), _I, _I, _I, _rw(ft), _I, _I, _I, _I, _I, _I, _B, _I, _I, _B)]


def _sig_cols_ip(ft):
    return [types.void(_rw(ft), _I, _I, _I, _I, _I, _I, _B, _I, _I, _B)]


_P = dict(parallel=True, fastmath=_FM)
_S = dict(fastmath=_FM)
K_ROWS = LazyKernel(_rows_serial, _sig_rows, **_S)
K_ROWS_C = LazyKernel(_rows_serial_c, _sig_rows_c, **_S)
K_ROWS_C_IP = LazyKernel(_rows_serial_c_inplace, _sig_rows_c_ip, **_S)
K_ROWS_PAR = LazyKernel(_rows_parallel, _sig_rows, **_P)
K_ROWS_IP = LazyKernel(_rows_serial_inplace, _sig_rows_ip, **_S)
K_ROWS_IP_PAR = LazyKernel(_rows_parallel_inplace, _sig_rows_ip, **_P)
K_LONG = LazyKernel(_long_rows, _sig_long, **_P)
K_LONG_IP = LazyKernel(_long_rows_inplace, _sig_long_ip, **_P)
K_PARTIALS = LazyKernel(_long_partials, _sig_partials, **_P)
K_FINISH = LazyKernel(_long_finish, _sig_long, **_P)
K_FINISH_IP = LazyKernel(_long_finish_inplace, _sig_long_ip, **_P)
K_COLS = LazyKernel(_cols_kernel, _sig_cols, **_P)
K_COLS_IP = LazyKernel(_cols_kernel_inplace, _sig_cols_ip, **_P)

ALL_KERNELS = (K_ROWS, K_ROWS_C, K_ROWS_C_IP, K_ROWS_PAR, K_ROWS_IP, K_ROWS_IP_PAR, K_LONG, K_LONG_IP,
               K_PARTIALS, K_FINISH, K_FINISH_IP, K_COLS, K_COLS_IP)


# ------------------------------------------------------------- wrappers
def _nt_out(out):
    """Streaming stores for this output?  Read at call time (the kernels
    take it as an argument), so that tests can lower NT_MIN_BYTES."""
    return bool(out.nbytes >= NT_MIN_BYTES)


def _launch(kernel, *args):
    with parallel_lock():
        kernel(*args)
    check_layer()


def softmax_rows(x, out, log, n_threads):
    """Softmax (or log-softmax) of each row of ``x`` into ``out`` (rows layout)."""
    n, k = x.shape
    char = x.dtype.char
    inplace = np.may_share_memory(x, out)  # the contract: overlap means same view
    if k <= LONG_ROW and (n_threads == 1 or n == 1 or n * k <= SERIAL_WORK) \
            and x.flags.c_contiguous and out.flags.c_contiguous:
        if inplace:
            K_ROWS_C_IP[char](out, log)
            return
        if K_ROWS_C[char](x, out, log, n * k) == 0:
            return
        # declined (unaligned data, or nothing to do): the general path below
    xf, xo, xs, _ = flat(x)
    if xf is None:  # row stride not a multiple of the item size, or unaligned
        x = np.ascontiguousarray(x)
        xf, xo, xs, _ = flat(x)
    of, oo, os, _ = flat(out)
    if of is None:
        tmp = np.empty(out.shape, dtype=out.dtype)
        softmax_rows(x, tmp, log, n_threads)
        np.copyto(out, tmp)
        return
    if k > LONG_ROW:
        use_threads(n_threads)
        nch = (k + CHUNK - 1) // CHUNK
        mpart = np.empty((n, nch), dtype=x.dtype)
        spart = np.empty((n, nch), dtype=np.float64)
        nt = _nt_out(out)
        if n >= 2 * n_threads:
            if inplace:
                _launch(K_LONG_IP[char], of, oo, os, n, k, log, mpart, spart, nt)
            else:
                _launch(K_LONG[char], xf, xo, xs, of, oo, os, n, k, log, mpart, spart, nt)
            return
        _launch(K_PARTIALS[char], xf, xo, xs, n, k, log, mpart, spart)
        if inplace:
            _launch(K_FINISH_IP[char], of, oo, os, n, k, log, mpart, spart, nt)
        else:
            _launch(K_FINISH[char], xf, xo, xs, of, oo, os, n, k, log, mpart, spart, nt)
        return
    if n_threads == 1 or n == 1 or n * k <= SERIAL_WORK:
        if inplace:
            K_ROWS_IP[char](of, oo, os, n, k, log)
        else:
            K_ROWS[char](xf, xo, xs, of, oo, os, n, k, log)
        return
    use_threads(n_threads)
    if inplace:
        _launch(K_ROWS_IP_PAR[char], of, oo, os, n, k, log)
    else:
        _launch(K_ROWS_PAR[char], xf, xo, xs, of, oo, os, n, k, log)


def col_width(outer, inner, n_threads):
    """The column kernel's block width for ``n_threads`` threads: wide blocks
    read longer runs of each row (the rows are far apart), but with fewer
    blocks than threads the others wait.  From ``COL_BLOCK``, halved down to
    ``COL_SCAN`` while the block is at least twice ``inner``, then while
    that lowers the columns the busiest thread takes (a ragged block counted
    whole).  The Cython kernel's rule (fsm_body.h), measured there on a
    16-core Xeon: (32000, 4096) axis 0 at 16 threads, blocks of 2048 (two
    threads busy) 256 here.  Speed only: a column's bits do not depend on it
    (``_col_again``)."""
    th = max(1, n_threads)

    def busiest(w):
        return (outer * -(-inner // w) + th - 1) // th * min(w, inner)

    cb = COL_BLOCK
    while cb > COL_SCAN and cb // 2 >= inner:
        cb //= 2
    while cb > COL_SCAN and busiest(cb // 2) < busiest(cb):
        cb //= 2
    return cb


def softmax_cols(x, out, log, n_threads, col_block=None):
    """Softmax (or log-softmax) over axis 1 of 3-D ``(outer, k, inner)``
    arrays.  ``col_block`` (tests): the block width instead of
    ``col_width``'s, a power of 2 from ``COL_SCAN`` to ``COL_BLOCK``."""
    outer, k, inner = x.shape
    xf, xo, xs0, xs1 = flat(x)
    if xf is None:
        x = np.ascontiguousarray(x)
        xf, xo, xs0, xs1 = flat(x)
    of, oo, os0, os1 = flat(out)
    if of is None:
        tmp = np.empty(out.shape, dtype=out.dtype)
        softmax_cols(x, tmp, log, n_threads, col_block)
        np.copyto(out, tmp)
        return
    char = x.dtype.char
    serial = n_threads == 1 or x.size <= SERIAL_WORK
    nthr = use_threads(1 if serial else n_threads)
    cb = col_block
    if cb is None:
        cb = col_width(outer, inner, nthr)
    elif not (COL_SCAN <= cb <= COL_BLOCK and COL_BLOCK % cb == 0 and cb % COL_SCAN == 0):
        raise ValueError(f"column block {cb}: a power of 2 from {COL_SCAN} to {COL_BLOCK}")
    ngroups = 1 if serial else min(outer * ((inner + cb - 1) // cb), 8 * nthr)
    # streaming stores (softmax: four rows at a time through the scratch
    # rows, see _col_write4)
    nt = _nt_out(out) and _LINE_STORES
    if np.may_share_memory(x, out):  # the contract: overlap means same view
        _launch(K_COLS_IP[char], of, oo, os0, os1, outer, k, inner, log, cb, ngroups, nt)
    else:
        _launch(K_COLS[char], xf, xo, xs0, xs1, of, oo, os0, os1, outer, k, inner, log, cb, ngroups,
                nt)
