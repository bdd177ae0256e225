"""The fast recurrent sequence kernels (W_hh packed once per sequence, fused row tiles, batch rows
split over threads) against the stepwise reference kernels (one gemm() call per step,
reference=True), and against float64 when run in float32."""
import numpy as np
import pytest

import deepgrad
from deepgrad import _C

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# (batch, steps, hidden): micro-kernel row-tile remainders 1-5, 7, 8; hidden sizes below, at and
# past the 16-wide panels; 600 sums K in gemm's 512-long chunks on the forward and backward.
SHAPES = [(1, 3, 1), (2, 4, 3), (7, 3, 5), (13, 5, 17), (32, 4, 33), (20, 3, 64), (9, 2, 600)]


def _inputs(kind, B, T, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[kind] * H
    xw = rng.standard_normal((T * B, G)).astype(dtype)
    w = (rng.uniform(-1, 1, (H, G)) * 1.5 / np.sqrt(H)).astype(dtype)
    bh = rng.uniform(-0.5, 0.5, G).astype(dtype)
    h0 = rng.uniform(-0.5, 0.5, (B, H)).astype(dtype)
    c0 = rng.uniform(-0.5, 0.5, (B, H)).astype(dtype)
    gy = rng.standard_normal((B, T + (kind == "lstm"), H)).astype(dtype)
    return xw, w, bh, h0, c0, gy


def _run(kind, args, reference, act="tanh", with_bias=True):
    """Forward and backward outputs of one sequence: [y, saved..., grads..., norms]."""
    xw, w, bh, h0, c0, gy = args
    if kind == "lstm":
        y, hs, cs, acts = _C.lstm_sequence_forward(xw, w, h0, c0, reference=reference)
        back = _C.lstm_sequence_backward(gy, hs, cs, acts, w, True, reference=reference)
        return [y, hs, cs, acts, *back]
    if kind == "gru":
        y, hs, acts = _C.gru_sequence_forward(xw, w, bh if with_bias else None, h0,
                                              reference=reference)
        back = _C.gru_sequence_backward(gy, hs, acts, w, with_bias, True, reference=reference)
        return [y, hs, acts, *back]
    y, hs, zs = _C.rnn_sequence_forward(xw, w, h0, act, reference=reference)
    back = _C.rnn_sequence_backward(gy, hs, zs, w, act, True, reference=reference)
    return [y, hs, zs, *back]


def _rel_err(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_fast_sequence_matches_the_stepwise_reference(kind, shape, dtype, tol):
    # On one thread the two paths give every element the same operations in the same order; the
    # per-step ||dL/dh_t|| (last output) adds its squares row by row, so it may differ in the
    # last bits of a double.
    saved = deepgrad.get_num_threads()
    try:
        deepgrad.set_num_threads(1)
        args = _inputs(kind, *shape, dtype)
        fast, ref = _run(kind, args, False), _run(kind, args, True)
    finally:
        deepgrad.set_num_threads(saved)
    assert len(fast) == len(ref)
    for i, (a, b) in enumerate(zip(fast, ref)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert _rel_err(a, b) <= (1e-13 if i == len(fast) - 1 else tol), (i, _rel_err(a, b))


@pytest.mark.parametrize("kind,shape", [("lstm", (32, 100, 16)), ("gru", (64, 50, 8)),
                                        ("rnn", (40, 30, 20)), ("lstm", (9, 2, 600))])
def test_fast_sequence_gives_the_reference_bits(kind, shape):
    # dW_hh over T*B > 512 rows with B^T over 64 KiB: gemm() sums K in 512-row chunks there
    # (gemm_at_panels) and the fast path's weight gradient must chunk alike (gemm_k_chunk), so
    # every output but the double norms is the reference's, bit for bit, on one thread
    saved = deepgrad.get_num_threads()
    try:
        deepgrad.set_num_threads(1)
        args = _inputs(kind, *shape, np.float32, seed=5)
        fast, ref = _run(kind, args, False), _run(kind, args, True)
    finally:
        deepgrad.set_num_threads(saved)
    for i, (a, b) in enumerate(zip(fast[:-1], ref[:-1])):
        np.testing.assert_array_equal(a, b, err_msg=f"output {i}")


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_fast_sequence_variants_match_the_reference(kind):
    # GRU without b_hh, RNN with relu (float32; a relu recurrence can grow, so relative error)
    saved = deepgrad.get_num_threads()
    try:
        deepgrad.set_num_threads(1)
        args = _inputs(kind, 11, 6, 24, np.float32, seed=4)
        kw = {"with_bias": False} if kind == "gru" else {"act": "relu"}
        fast, ref = _run(kind, args, False, **kw), _run(kind, args, True, **kw)
    finally:
        deepgrad.set_num_threads(saved)
    for i, (a, b) in enumerate(zip(fast, ref)):
        if b is None:
            assert a is None
            continue
        assert _rel_err(a, b) <= (1e-13 if i == len(fast) - 1 else 1e-6), i


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_fast_sequence_gives_the_same_bits_on_any_number_of_threads(kind):
    # batch rows are split over threads; each row's arithmetic does not depend on the split
    args = _inputs(kind, 37, 5, 40, np.float32, seed=2)
    saved = deepgrad.get_num_threads()
    runs = []
    try:
        for t in (1, 2, 3, 4):
            deepgrad.set_num_threads(t)
            runs.append(_run(kind, args, False))
    finally:
        deepgrad.set_num_threads(saved)
    for r in runs[1:]:
        for a, b in zip(r, runs[0]):
            np.testing.assert_array_equal(a, b)


# Batches cut into several chains of rows (up to 32 rows on one thread, 16 on a team): chain
# sizes that are not multiples of the 8-row tile, single-step sequences, one row, hidden sizes off
# the 16-lane vector width; on 1 to 3 threads (the last two shapes are big enough for a team:
# 4.2M multiply-adds), against the reference and float64.
CHAIN_SHAPES = [(1, 1, 5), (70, 3, 19), (45, 1, 40), (33, 2, 16), (100, 2, 7), (70, 8, 96),
                (50, 20, 72)]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("shape", CHAIN_SHAPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fast_sequence_chains_match_the_reference_and_float64(kind, shape, threads):
    saved = deepgrad.get_num_threads()
    try:
        deepgrad.set_num_threads(threads)
        args32 = _inputs(kind, *shape, np.float32, seed=7)
        args64 = tuple(a.astype(np.float64) for a in args32)
        fast = _run(kind, args32, False)
        deepgrad.set_num_threads(1)
        fast1 = _run(kind, args32, False)
        ref = _run(kind, args32, True)
        ref64 = _run(kind, args64, True)
        fast64 = _run(kind, args64, False)
    finally:
        deepgrad.set_num_threads(saved)
    for a, a1 in zip(fast, fast1):  # the same bits on any number of threads
        np.testing.assert_array_equal(a, a1)
    for i, (a, b, b64, a64) in enumerate(zip(fast, ref, ref64, fast64)):
        last = i == len(fast) - 1
        assert _rel_err(a, b) <= (1e-13 if last else 1e-6), (i, _rel_err(a, b))
        assert _rel_err(a, b64) < 2e-5, (i, _rel_err(a, b64))
        assert _rel_err(a64, b64) <= (1e-13 if last else 1e-14), (i, _rel_err(a64, b64))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_fast_float32_sequence_is_close_to_float64(kind):
    # the float32 fast path against the float64 reference path on the same (rounded) inputs
    args32 = _inputs(kind, 10, 8, 48, np.float32, seed=5)
    args64 = tuple(a.astype(np.float64) for a in args32)
    fast32, ref64 = _run(kind, args32, False), _run(kind, args64, True)
    for i, (a, b) in enumerate(zip(fast32, ref64)):
        assert _rel_err(a, b) < 2e-5, (i, _rel_err(a, b))


def test_fast_sequence_norms_are_nan_where_the_gradient_is_not_finite():
    xw, w, bh, h0, c0, gy = _inputs("lstm", 6, 4, 8, np.float32, seed=1)
    gy[2, 2, 3] = np.inf  # dL/dh_2 of row 2 is infinite; earlier steps get NaN through W^T
    y, hs, cs, acts = _C.lstm_sequence_forward(xw, w, h0, c0)
    norms = _C.lstm_sequence_backward(gy, hs, cs, acts, w, True)[4]
    ref = _C.lstm_sequence_backward(gy, hs, cs, acts, w, True, reference=True)[4]
    assert np.isfinite(norms[3]) and np.isnan(norms[:3]).all()
    np.testing.assert_array_equal(np.isnan(norms), np.isnan(ref))


def _with_kernel(name, f):
    """f() with the sequence and cell kernels limited to `name` ('avx2' or 'auto')."""
    try:
        _C._rnn_set_kernel(name)
        return f()
    finally:
        _C._rnn_set_kernel("auto")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avx512_and_avx2_kernels_give_the_same_bits(kind, dtype):
    # Where the CPU has AVX-512 the sequences run 8 x 32 tiles and the float32 LSTM/GRU forward
    # cells 16 lanes; both keep the AVX2 kernels' operations, so the results are the same bits.
    # (On a CPU without AVX-512 both runs take the AVX2 kernels and the test is trivially true.)
    for shape in [(13, 5, 17), (20, 3, 64), (9, 2, 600)]:
        args = _inputs(kind, *shape, dtype, seed=7)
        a = _with_kernel("avx2", lambda: _run(kind, args, False))
        b = _with_kernel("auto", lambda: _run(kind, args, False))
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_avx512_and_avx2_cells_agree_on_special_values():
    rng = np.random.default_rng(8)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 88.5, -88.5, 103.9,
                         -104.5, -200.0, 200.0, 0.625, -0.625, 0.62499], np.float32)
    for H in (5, 16, 21):
        gates = rng.normal(0, 5, (4, 4 * H)).astype(np.float32)
        xg, hg = (rng.normal(0, 5, (4, 3 * H)).astype(np.float32) for _ in range(2))
        prev = rng.normal(0, 1, (4, H)).astype(np.float32)
        for arr in (gates, xg, hg, prev):
            idx = rng.choice(arr.size, size=min(arr.size // 3, len(specials)), replace=False)
            arr.flat[idx] = specials[:len(idx)]

        dh, dc = (rng.normal(0, 5, (4, H)).astype(np.float32) for _ in range(2))
        dh.flat[::7], dc.flat[::5] = np.inf, np.nan

        def forward_cells():
            return [*_C.lstm_cell_forward(gates, prev), *_C.gru_cell_forward(xg, hg, prev)]

        def lstm_backward():
            h, c, act = _C.lstm_cell_forward(gates, prev)
            return _C.lstm_cell_backward(dh, dc, prev, c, act)
        a, b = _with_kernel("avx2", forward_cells), _with_kernel("auto", forward_cells)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u.view(np.int32), v.view(np.int32))  # NaN bits too
        # the backward's NaNs may carry another sign or payload (operand order); values agree
        for u, v in zip(_with_kernel("avx2", lstm_backward), _with_kernel("auto", lstm_backward)):
            np.testing.assert_array_equal(u, v)


def test_set_kernel_rejects_unknown_names():
    with pytest.raises(ValueError, match="'auto' or 'avx2'"):
        _C._rnn_set_kernel("avx1024")
