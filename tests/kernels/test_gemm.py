"""GEMM kernels (deepgrad._C.gemm, gemm_naive, _gemm_portable, and the AVX2 / AVX-512
micro-kernels that this CPU runs) against float64 numpy."""
import zlib

import numpy as np
import pytest

import deepgrad
from deepgrad import _C

KERNELS = {"gemm": _C.gemm, "gemm_naive": _C.gemm_naive, "portable": _C._gemm_portable}
ISAS, BEST_ISA = _C._gemm_isas()
# Every SIMD family the CPU runs, whichever gemm picks (AVX-512 on Zen 5 / Intel server cores).
KERNELS.update({isa: getattr(_C, f"_gemm_{isa}") for isa in ("avx2", "avx512") if isa in ISAS})
# Odd sizes and non-multiples of the 6x16 / 6x8 tiles (the unpacked small-problem path).
SHAPES = [(1, 1, 1), (7, 33, 5), (33, 7, 257), (257, 1, 33), (6, 16, 8), (65, 130, 97)]
# Mid-size (packs only B) and large shapes that cross the cache blocks MC, KC, NC.
BIG_SHAPES = [(40, 300, 250), (150, 300, 530), (257, 33, 1100), (7, 4100, 300)]
# A^T B with B over 64 KiB on the small-problem path: K in 512-row chunks, each panel of B packed
# into L1 (gemm_at_panels; the weight gradient of a recurrent layer's input projection).
AT_PANEL_SHAPES = [(8, 256, 3200), (7, 33, 700), (1, 17, 4000), (9, 40, 1025), (16, 100, 513)]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def reference(a, b, ta, tb, alpha=1.0, beta=0.0, c=None):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    r = alpha * ((a64.T if ta else a64) @ (b64.T if tb else b64))
    if c is not None and beta != 0.0:
        r += beta * c.astype(np.float64)
    return r


def check(got, ref, dtype, k):
    # float32 rounding grows with the length of each dot product; scale by sqrt(k)*|ref|max.
    scale = max(1.0, np.abs(ref).max()) * np.sqrt(max(k, 1))
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_gemm_matches_numpy(kernel, dtype, ta, tb, shape):
    rng = np.random.default_rng(zlib.crc32(repr((kernel, dtype, ta, tb, shape)).encode()))
    m, n, k = shape
    a, b = operands(rng, m, n, k, ta, tb, dtype)
    out = KERNELS[kernel](a, b, trans_a=ta, trans_b=tb)
    assert out.dtype == dtype and out.shape == (m, n)
    check(out, reference(a, b, ta, tb), dtype, k)


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k != "gemm_naive"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", AT_PANEL_SHAPES)
def test_transposed_a_over_many_rows(kernel, dtype, shape):
    rng = np.random.default_rng(zlib.crc32(repr((kernel, dtype, shape)).encode()))
    m, n, k = shape
    a, b = operands(rng, m, n, k, True, False, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    KERNELS[kernel](a, b, out=c, trans_a=True, alpha=0.5, beta=-2.0)
    check(c, reference(a, b, True, False, 0.5, -2.0, c0), dtype, k)
    check(KERNELS[kernel](a, b, trans_a=True), reference(a, b, True, False), dtype, k)


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k != "gemm_naive"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("shape", BIG_SHAPES)
def test_gemm_blocked_paths(kernel, dtype, ta, tb, shape):
    rng = np.random.default_rng(7)
    m, n, k = shape
    a, b = operands(rng, m, n, k, ta, tb, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy()
    KERNELS[kernel](a, b, c, ta, tb, -0.5, 2.0)
    check(c, reference(a, b, ta, tb, -0.5, 2.0, c0), dtype, k)


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,beta",
                         [(1.0, 1.0), (0.7, 0.3), (-2.0, 0.0), (0.0, 0.5), (0.0, 0.0)])
def test_gemm_alpha_beta(kernel, dtype, alpha, beta):
    rng = np.random.default_rng(3)
    m, n, k = 13, 40, 21
    for ta in (False, True):
        for tb in (False, True):
            a, b = operands(rng, m, n, k, ta, tb, dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            c = c0.copy()
            res = KERNELS[kernel](a, b, c, ta, tb, alpha, beta)
            assert res is c or np.shares_memory(res, c)
            check(c, reference(a, b, ta, tb, alpha, beta, c0), dtype, k)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_beta_zero_does_not_read_out(kernel):
    # BLAS semantics: with beta == 0 the old contents (here NaN) must not leak into the result.
    rng = np.random.default_rng(4)
    a, b = operands(rng, 9, 20, 11, False, False, np.float64)
    c = np.full((9, 20), np.nan)
    KERNELS[kernel](a, b, c, beta=0.0)
    check(c, a @ b, np.float64, 11)


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (4, 0, 3), (4, 5, 0)])
def test_empty_dimensions(kernel, m, n, k):
    a = np.ones((m, k), np.float32)
    b = np.ones((k, n), np.float32)
    assert KERNELS[kernel](a, b).shape == (m, n)
    c = np.full((m, n), 3.0, np.float32)
    KERNELS[kernel](a, b, c, alpha=1.0, beta=0.5)
    # K == 0: op(a) op(b) is all zeros, so out becomes beta * out.
    np.testing.assert_array_equal(c, np.full((m, n), 1.5, np.float32))


def test_nan_and_inf_propagate():
    a = np.ones((8, 8))
    b = np.ones((8, 8))
    a[2, 3] = np.nan
    b[0, 5] = np.inf
    c = _C.gemm(a, b)
    assert np.isnan(c[2]).all()
    assert np.isinf(c[:, 5][[i for i in range(8) if i != 2]]).all()
    assert np.isfinite(np.delete(np.delete(c, 2, axis=0), 5, axis=1)).all()


def test_non_contiguous_inputs_are_read_correctly():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((20, 30))[:, ::2]  # strided view (20, 15)
    b = np.asfortranarray(rng.standard_normal((15, 9)))
    check(_C.gemm(a, b), a @ b, np.float64, 15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_one_and_two_agree(dtype):
    rng = np.random.default_rng(6)
    saved = deepgrad.get_num_threads()
    try:
        for (m, n, k) in [(300, 200, 600), (40, 500, 700), (1000, 64, 64)]:
            a, b = operands(rng, m, n, k, False, False, dtype)
            deepgrad.set_num_threads(1)
            c1 = _C.gemm(a, b)
            deepgrad.set_num_threads(2)
            c2 = _C.gemm(a, b)
            np.testing.assert_allclose(c1, c2, rtol=TOL[dtype], atol=TOL[dtype])
            check(c2, reference(a, b, False, False), dtype, k)
    finally:
        deepgrad.set_num_threads(saved)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_bad_inputs(kernel):
    f = KERNELS[kernel]
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    with pytest.raises(TypeError, match="a has dtype int64"):
        f(np.ones((3, 4), np.int64), b)
    with pytest.raises(TypeError, match="b has dtype float16"):
        f(a, b.astype(np.float16))
    with pytest.raises(TypeError, match="must match"):
        f(a, b.astype(np.float64))
    with pytest.raises(TypeError, match="numpy array"):
        f([[1.0]], b)
    with pytest.raises(ValueError, match="a must be 2-D"):
        f(np.ones(4, np.float32), b)
    with pytest.raises(ValueError, match="inner dimensions"):
        f(a, np.ones((5, 4), np.float32))
    with pytest.raises(ValueError, match="inner dimensions"):
        f(a, b, trans_a=True)
    with pytest.raises(ValueError, match=r"out has shape \(5, 3\)"):
        f(a, b, np.zeros((5, 3), np.float32))
    with pytest.raises(TypeError, match="out has dtype float64"):
        f(a, b, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="C-contiguous"):
        f(a, b, np.zeros((5, 3), np.float32).T)
    ro = np.zeros((3, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        f(a, b, ro)
    sq = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        f(sq, sq.copy(), sq)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", [(64, 256, 64), (32, 512, 128), (6, 1024, 128), (97, 61, 300),
                                   (8, 256, 3200)])
def test_mid_size_gemm_is_bitwise_thread_independent(dtype, ta, tb, m, n, k):
    # 0.5M-4M multiply-adds: one fork, blocks of whole row tiles (or column tiles when there is
    # a single row tile, as for m = 6); beta != 0 reads C in the split too
    rng = np.random.default_rng(9)
    a, b = operands(rng, m, n, k, ta, tb, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    saved = deepgrad.get_num_threads()
    outs = []
    try:
        for t in (1, 2, 3):
            deepgrad.set_num_threads(t)
            c = c0.copy()
            _C.gemm(a, b, out=c, trans_a=ta, trans_b=tb, alpha=0.5, beta=-2.0)
            outs.append(c)
    finally:
        deepgrad.set_num_threads(saved)
    for c in outs[1:]:
        np.testing.assert_array_equal(c, outs[0])
    check(outs[0], reference(a, b, ta, tb, 0.5, -2.0, c0), dtype, k)


@pytest.mark.skipif(not {"avx2", "avx512"} <= set(ISAS), reason="needs a CPU with AVX-512F")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", SHAPES + BIG_SHAPES + [(128, 64, 64), (64, 64, 128)])
def test_avx2_and_avx512_kernels_are_bitwise_equal(dtype, ta, tb, m, n, k):
    # Each element of C is the same chain of FMAs in both (gemm.h): the vector width only
    # changes which elements share an instruction.
    rng = np.random.default_rng(11)
    a, b = operands(rng, m, n, k, ta, tb, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c2, c5 = c0.copy(), c0.copy()
    _C._gemm_avx2(a, b, c2, ta, tb, 0.5, -2.0)
    _C._gemm_avx512(a, b, c5, ta, tb, 0.5, -2.0)
    np.testing.assert_array_equal(c2, c5)
    check(c5, reference(a, b, ta, tb, 0.5, -2.0, c0), dtype, k)


def test_gemm_uses_the_widest_isa():
    assert BEST_ISA == ISAS[-1]
    assert ISAS[0] == "portable"


def test_missing_isa_is_a_clear_error():
    a = np.ones((2, 2), np.float32)
    for isa in ("avx2", "avx512"):
        if isa not in ISAS:
            with pytest.raises(ValueError, match=f"no {isa} micro-kernel"):
                getattr(_C, f"_gemm_{isa}")(a, a)


def test_fma_peak_probe():
    flops, secs = _C._fma_peak_probe(1000, 1)
    lanes = {"portable": 1, "avx2": 8, "avx512": 16}[BEST_ISA]
    assert flops == 2 * 12 * lanes * 1000 and secs > 0
    for isa in ISAS:
        assert _C._fma_peak_probe(10, 2, isa)[0] == 2 * 12 * {"portable": 1, "avx2": 8,
                                                                "avx512": 16}[isa] * 10 * 2
    for iters, threads in ((0, 1), (10, 0), (2**63 - 1, 1), (10, 5000)):
        # (a huge count held the caller for hours: the fuzzer found it)
        with pytest.raises(ValueError, match=r"iters must be in \[1, 1e10\] and threads"):
            _C._fma_peak_probe(iters, threads)
    with pytest.raises(ValueError, match="isa must be"):
        _C._fma_peak_probe(10, 1, "sse9")
