"""The backend interface: every primitive a device must provide, listed once with its meaning.

A backend is a module (backend/cpu.py over numpy arrays, backend/cuda.py over
``deepgrad._C.CudaArray``) whose names are exactly the members of ``Backend`` below, with the
same signatures (tests/backend/test_parity.py checks both, and checks the CPU backend's results
against float64 references; tests/cuda compares the CUDA backend with the CPU one). Code above
the backend calls these through a tensor's ``_be`` and never asks which device it holds.

Conventions:
- "array" is the backend's array type. It has ``.shape`` (tuple of ints), ``.ndim``, ``.size``
  and ``.dtype`` (a numpy dtype: float32 or float64, int64 for class labels and indices).
- A function returns new arrays unless its name ends in ``_`` (in place, returns None).
  A returned array shares memory with an input only where the entry says "view".
- Float inputs to one call share one dtype (the Tensor layer checks this first). ``scalar``
  arguments are Python floats/ints; shapes are tuples of ints.
- Callers never modify a returned array in place unless they allocated it (``empty``,
  ``zeros``, ``full``, ``copy``): returned arrays may be shared by several gradients.
- Floating-point edge cases give IEEE results (inf, nan) silently, as in PyTorch.
- Backward primitives named ``*_backward`` that take gradient buffers (``dense_backward``)
  accumulate (``+=``) into them; the others return fresh gradients.
- Values a forward saves for its backward (``saved``) are read only by the same backend's
  backward; where their parts are named (batch/layer norm: the input and the mean, and
  ``inv_std``), both backends give them the same meaning, so they can be compared.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

Array = Any   # the backend's array type (numpy.ndarray, deepgrad._C.CudaArray)


@runtime_checkable
class Backend(Protocol):
    """The primitive set of one device. Members are module-level names of a backend module."""

    DEVICE: str
    """The device name, "cpu" or "cuda" (``Tensor.device``)."""
    HOST_MEMORY: bool
    """True when arrays are numpy arrays in host memory: ``to_numpy`` returns the array itself
    (no copy), so a numpy consumer (DLPack, MPI, ``np.asarray(tensor)``) can share it."""
    DLPACK_DEVICE: tuple
    """(DLPack device type, index) of the arrays: (1, 0) kDLCPU, (2, 0) kDLCUDA."""
    STEP_STATS: bool
    """True when the optimizer steps fill step statistics (``offsets=``, ``stats=``) and the
    dense kernels fill layer statistics records (``stats=``); where False, passing a record
    raises NotImplementedError and the caller measures another way (the monitor's hooks)."""

    # -- creation and transfer ------------------------------------------------------------------

    def from_numpy(self, a, dtype=None) -> Array:
        """A new C-contiguous array holding a copy of numpy array ``a`` (cast to ``dtype`` when
        given). int64 arrays stay int64; a bool array given no dtype stays a host numpy bool
        array (an index mask for getitem)."""

    def to_numpy(self, a) -> Any:
        """The values as a numpy array on the host (the array itself when HOST_MEMORY)."""

    def to_dlpack(self, a, stream=None, max_version=None, dl_device=None, copy=None) -> Any:
        """A DLPack capsule sharing ``a``'s memory (a fresh copy's with ``copy=True``), from
        the Python DLPack protocol's ``__dlpack__`` arguments (``Tensor.__dlpack__``): a
        versioned capsule when ``max_version >= (1, 0)``, else the legacy one; on CUDA the
        consumer's ``stream`` is made to wait for the work already enqueued (backend/dlpack.py
        has the argument rules)."""

    def from_dlpack(self, x) -> Any:
        """An array sharing the memory of DLPack producer ``x`` on this device, zero copy
        (``deepgrad.from_dlpack``); the producer's memory stays alive while the array does. On
        the CPU numpy's import (strided or read-only memory comes back as such: the caller
        refuses it); on CUDA non-contiguous, read-only or non float32/float64/int64 memory is
        refused, naming the copy to make."""

    def empty(self, shape: tuple, dtype) -> Array:
        """An uninitialised array."""

    def zeros(self, shape: tuple, dtype) -> Array:
        """An array of zeros."""

    def full(self, shape: tuple, value: float, dtype) -> Array:
        """An array filled with ``value``."""

    def copy(self, a) -> Array:
        """A contiguous copy that the caller owns."""

    def astype(self, a, dtype) -> Array:
        """``a`` converted to ``dtype`` (``a`` itself when it already has that dtype)."""

    def view(self, buf, offset: int, shape: tuple) -> Array:
        """A view of prod(shape) elements of the flat array ``buf`` from element ``offset``,
        with ``shape`` (arena slots: writes through the view are writes to ``buf``)."""

    def copy_(self, dst, src) -> None:
        """dst[...] = src in place; src is an array of this backend (same dtype) or a scalar,
        and broadcasts to dst's shape."""

    def copy_from_host_(self, dst, a) -> None:
        """dst[...] = a in place for a host value ``a`` (numpy array, list or scalar),
        converted to dst's dtype as numpy's ``casting="unsafe"`` does; broadcasts. Crossing
        devices goes through ``deepgrad.backend.copy_into``, which calls this."""

    def add_(self, dst, src) -> None:
        """dst += src in place (same shape and dtype): gradient accumulation into leaf grads."""

    def has_nonfinite(self, a) -> bool:
        """True if a float array holds any NaN or Inf (anomaly mode)."""

    def item(self, a) -> float:
        """The single value of a one-element array as a Python float."""

    # -- elementwise, numpy broadcasting; either operand of a binary op may be a Python scalar --

    def add(self, a, b) -> Array:
        """a + b."""

    def sub(self, a, b) -> Array:
        """a - b."""

    def mul(self, a, b) -> Array:
        """a * b."""

    def div(self, a, b) -> Array:
        """a / b (IEEE: x/0 is +-inf or nan)."""

    def pow(self, a, b) -> Array:
        """a ** b."""

    def maximum(self, a, b) -> Array:
        """Elementwise max(a, b)."""

    def minimum(self, a, b) -> Array:
        """Elementwise min(a, b)."""

    def eq(self, a, b) -> Array:
        """(a == b) as a 1.0/0.0 mask in the float dtype of the operands."""

    def ne(self, a, b) -> Array:
        """(a != b) as a mask."""

    def lt(self, a, b) -> Array:
        """(a < b) as a mask."""

    def le(self, a, b) -> Array:
        """(a <= b) as a mask."""

    def gt(self, a, b) -> Array:
        """(a > b) as a mask."""

    def ge(self, a, b) -> Array:
        """(a >= b) as a mask."""

    def where(self, cond, a, b) -> Array:
        """cond ? a : b elementwise with broadcasting; ``cond`` is a float mask (nonzero =
        true); a or b may be a scalar."""

    def neg(self, a) -> Array:
        """-a."""

    def exp(self, a) -> Array:
        """e ** a."""

    def log(self, a) -> Array:
        """Natural logarithm (log 0 = -inf, log of a negative = nan)."""

    def sqrt(self, a) -> Array:
        """Square root."""

    def abs(self, a) -> Array:
        """|a|."""

    def sign(self, a) -> Array:
        """-1, 0 or 1 elementwise (the derivative of abs)."""

    def clip(self, a, lo, hi) -> Array:
        """a clamped to [lo, hi]; either bound may be None."""

    # -- activations ----------------------------------------------------------------------------

    def act_forward(self, x, activation: str, alpha: float = 0.01) -> Array:
        """y = act(x) elementwise for an activation name (identity, step, sigmoid, tanh, relu,
        leaky_relu, elu, selu, gelu, softplus, silu, softsign); alpha is leaky_relu's slope and
        elu's scale. The formulas are csrc/deepgrad/math.h's, shared by both devices."""

    def act_backward(self, dy, z, y, activation: str, alpha: float = 0.01) -> Array:
        """dz = dy * act'(z), given the input z (None when the derivative needs only y) and the
        output y of act_forward."""

    # -- reductions -----------------------------------------------------------------------------

    def sum(self, a, axis=None, keepdims: bool = False) -> Array:
        """Sum over ``axis`` (None = all, int or tuple), as an array (0-d for a full
        reduction)."""

    def mean(self, a, axis=None, keepdims: bool = False) -> Array:
        """Mean over ``axis``."""

    def max(self, a, axis=None, keepdims: bool = False) -> Array:
        """Maximum over ``axis``."""

    def argmax(self, a, axis=None) -> Array:
        """Index of the (first) maximum along ``axis`` as int64 (flat index when None)."""

    def broadcast_to(self, a, shape: tuple) -> Array:
        """``a`` broadcast to ``shape`` with numpy rules (may be a read-only view; the backward
        of sum/mean)."""

    def sum_to_shape(self, g, shape: tuple) -> Array:
        """A broadcast gradient ``g`` summed back to ``shape`` over the broadcast axes (the
        backward of broadcasting); ``g`` itself when the shapes already match."""

    # -- linear algebra and dense layers --------------------------------------------------------

    def matmul(self, a, b, trans_a: bool = False, trans_b: bool = False) -> Array:
        """op(a) @ op(b) for 2-D arrays, op = transpose when the flag is set."""

    def dense_forward(self, x, w, b, activation: str = "identity", alpha: float = 0.01,
                      keep_z: bool = False, stats=None) -> tuple:
        """The fused dense layer: z = x @ w + b, y = act(z); x (N, IN), w (IN, OUT), b (OUT,)
        or None. Returns (y, z): z is None when the activation's derivative needs only y,
        unless keep_z (the kernel then writes z beside y: no extra pass). ``stats``: None or a
        layer statistics record (functional.LayerStats) whose forward slots the epilogue fills
        (STEP_STATS backends only)."""

    def dense_backward(self, dy, x, w, z, y, dw, db, activation: str = "identity",
                       alpha: float = 0.01, need_dx: bool = True, stats=None) -> Array | None:
        """Backward of dense_forward: dw (IN, OUT) += x^T dz and db (OUT,) += sum(dz, rows) in
        place (db may be None); returns dx = dz w^T (N, IN), or None when not need_dx.
        ``stats``: None or the layer's record, which receives ||dy||^2 (STEP_STATS only)."""

    def dense_chain_forward(self, x, ws, bs, activations, alphas, stats,
                            keep_from: int = 0) -> list:
        """dense_forward through a chain of layers: ws, bs (None entries: no bias),
        activations, alphas, stats (None entries or records) have one entry per layer; layer
        i + 1 takes layer i's y. Returns a list with one entry per layer: (y, z) as
        dense_forward returns them from layer keep_from on and for the last layer, None for
        the layers before keep_from (nothing of theirs is kept). The same values as
        dense_forward called layer by layer (the CPU backend runs the chain in one native
        call)."""

    def dense_chain_backward(self, g, xs, ws, zs, ys, dws, dbs, activations, alphas, stats,
                             k: int = 0, need_dx: bool = True) -> Array | None:
        """The chain's backward from its last layer down to layer k: layer i's dense_backward
        with dy = g for the last layer, else the dx of layer i + 1, its input xs[i] and the
        zs[i], ys[i] its forward gave, accumulating into dws[i] and dbs[i] (None: no bias);
        dx is taken for every layer above k and for layer k when need_dx. Returns layer k's dx,
        or None when not need_dx. Lists indexed by layer; entries below k are not read."""

    # -- softmax (row-wise over the last axis of a 2-D array) -----------------------------------

    def softmax(self, x) -> Array:
        """Row-wise softmax."""

    def log_softmax(self, x) -> Array:
        """Row-wise log-softmax."""

    def softmax_backward(self, dy, y) -> Array:
        """dx for y = softmax(x): y * (dy - sum(dy * y, row))."""

    def log_softmax_backward(self, dy, y) -> Array:
        """dx for y = log_softmax(x): dy - exp(y) * sum(dy, row)."""

    # -- losses ---------------------------------------------------------------------------------

    def loss_forward(self, kind: str, pred, target, reduction: str) -> Array:
        """The loss. kind: mse, bce (pred = probabilities), bce_logits, cross_entropy (pred =
        logits (N, C), target = int64 labels (N,)). reduction: mean or sum (a 0-d array), none
        (per element for mse/bce, per sample (N,) for cross_entropy)."""

    def loss_backward(self, kind: str, pred, target, reduction: str, grad) -> Array:
        """d loss / d pred times ``grad`` (a 0-d array or scalar for mean/sum, an array of the
        per-sample losses' shape for none)."""

    # -- normalisation --------------------------------------------------------------------------

    def batch_norm_forward(self, x, gamma, beta, running_mean, running_var, training: bool,
                           momentum: float, eps: float) -> tuple:
        """Batch norm over axis 0 of x (N, C); gamma/beta (C,) may be None. Training: batch
        statistics, and running_mean/running_var (C,) (may be None) are updated in place with
        PyTorch's rule (unbiased variance, ``momentum`` weight on the new value). Eval: the
        running statistics. Returns (y, saved, inv_std): saved = (x, mean) with mean (C,) the
        mean used (a copy of running_mean in eval) and inv_std (C,) = 1/sqrt(var + eps)."""

    def batch_norm_backward(self, dy, saved, inv_std, gamma, training: bool) -> tuple:
        """Backward of batch_norm_forward: (dx, dgamma (C,), dbeta (C,)); dgamma/dbeta are
        computed even when gamma/beta are None (the caller drops them). In eval the statistics
        are constants: dx = dy * gamma * inv_std."""

    def layer_norm_forward(self, x, gamma, beta, eps: float) -> tuple:
        """Layer norm over the last axis of x (..., D); gamma/beta (D,) may be None. Row
        statistics in float64, so a finite float32 row never overflows, and a row holding
        NaN/Inf (or a float64 row whose variance overflows) gives NaN. Returns (y, saved,
        inv_std): saved = (x as (rows, D), mean (rows,)), inv_std (rows,)."""

    def layer_norm_backward(self, dy, saved, inv_std, gamma) -> tuple:
        """Backward of layer_norm_forward: (dx, dgamma (D,), dbeta (D,))."""

    # -- shape and indexing ---------------------------------------------------------------------

    def reshape(self, a, shape: tuple) -> Array:
        """``a`` with a new shape (a view; -1 infers one dimension)."""

    def transpose(self, a, axes: tuple | None = None) -> Array:
        """Axes permuted (reversed when None), as a contiguous array."""

    def getitem(self, a, index) -> Array:
        """a[index] with numpy semantics, as a contiguous array: ``index`` holds ints, slices,
        None, Ellipsis and int64 or bool numpy arrays (host index arrays on every backend)."""

    def index_add_(self, dst, index, values) -> None:
        """dst[index] += values in place, summing repeated indices (the backward of getitem)."""

    def setitem_(self, dst, index, values) -> None:
        """dst[index] = values in place (an array or scalar, broadcast to the selection)."""

    def concat(self, arrays: list, axis: int = 0) -> Array:
        """Arrays joined along an existing axis."""

    def stack(self, arrays: list, axis: int = 0) -> Array:
        """Arrays of one shape joined along a new axis."""

    def split(self, a, sizes: list, axis: int = 0) -> list:
        """``a`` cut along ``axis`` into contiguous pieces of the given sizes (the backward of
        concat)."""

    # -- random: every draw comes from deepgrad.random's one seeded generator, on the host, so a
    #    seed gives the same numbers on every device ---------------------------------------------

    def normal(self, shape: tuple, mean: float, std: float, dtype) -> Array:
        """Samples from N(mean, std^2)."""

    def uniform(self, shape: tuple, low: float, high: float, dtype) -> Array:
        """Samples from U[low, high)."""

    def bernoulli(self, shape: tuple, p: float, dtype) -> Array:
        """A float mask of 1.0 with probability p, else 0.0 (dropout keep masks)."""

    # -- arena: one pass over a model's flat parameter/gradient buffers -------------------------

    def segment_norms(self, buf, offsets) -> tuple:
        """Per-segment L2 norms of a flat buffer; offsets int64 numpy (S+1,), offsets[0] = 0,
        offsets[-1] = buf.size. Returns (norms float64 numpy (S,), total norm float, number of
        non-finite values int). Deterministic."""

    def segment_health(self, buf, offsets) -> Any:
        """float64 numpy (S, 7) per segment of a flat buffer: L2, L-inf, min and max of the
        finite values, NaN count, Inf count, first non-finite index (-1 when none)."""

    def monitor_norms(self, params, grads, prev, offsets, diff: bool = False,
                      snapshot: bool = False, health: bool = False) -> tuple:
        """One pass per segment over flat params and grads (and prev, same layout):
        (param norms, grad norms, ||params - prev|| norms or None unless diff, non-finite
        gradient count[, with health: float64 (S, 3) of the gradient's L-inf, non-finite count
        and first non-finite index]); afterwards prev[:] = params when snapshot."""

    def act_stats(self, z, y, saturation: int = 0, center: float = 0.0, bound: float = 0.0,
                  dead: bool = False) -> tuple:
        """One pass over a layer's pre-activation z (N, C) and output y (N, C): (sum z,
        sum z^2, both in float64, count of |a - center| > bound with a = y for saturation=1 or
        z for saturation=2 (0 for saturation=0), number of columns where some y > 0 when dead
        (else 0))."""

    def act_stats_array(self, z, y, saturation: int = 0, center: float = 0.0,
                        bound: float = 0.0, dead: bool = False) -> Any:
        """act_stats as a float64 array (4,) in the backend's memory: [sum z, sum z^2,
        saturated count, live columns]. On CUDA it stays on the device (nothing waits), so a
        monitor can put it in its device ring."""

    def act_stats_many(self, items) -> list:
        """act_stats over a sequence of (z, y, saturation, center, bound, dead) tuples in one
        call; the list of their results."""

    def l2_norms(self, arrays) -> Any:
        """float64 numpy (K,): the L2 norm of each of K float arrays (NaN where one holds NaN or
        Inf)."""

    def stat_ring(self, slots: int, width: int) -> Any:
        """A ring of per-step records of ``width`` float64 statistics (on CUDA in device memory,
        copied to the host asynchronously every ``slots`` records)."""

    def record_stats(self, ring, step: int, health=(), values=()) -> None:
        """One record for ``step`` without a host synchronisation: for each (col, buf, offsets)
        of ``health`` the segment_health rows (S, 7) of buf at columns [col, col + 7 S); for
        each (col, array) of ``values`` the array's values at [col, col + size); NaN elsewhere."""

    def read_stats(self, ring) -> tuple:
        """(steps int64 (m,), rows float64 (m, width)): every record since the last read,
        oldest first (the one synchronisation)."""

    def tensors_health(self, arrays) -> Any:
        """float64 numpy (K, 7): segment_health's row for each of K float arrays, one call."""

    def tensors_param_norms(self, arrays, prev, diff: bool = False,
                            snapshot: bool = False) -> tuple:
        """Parameters held as K separate float arrays of one dtype: (float64 numpy (K,) of
        ||a||, float64 numpy (K,) of ||a - its segment of prev|| or None unless diff); prev is
        one flat buffer of the total size, refreshed with the arrays' values when snapshot."""

    def scale_(self, buf, factor: float) -> None:
        """buf *= factor in place (gradient-norm clipping)."""

    def clip_value_(self, buf, clip: float) -> None:
        """buf clamped to [-clip, clip] in place."""

    def fill_(self, buf, value: float) -> None:
        """buf[...] = value in place (zero_grad)."""

    def sgd_step(self, param, grad, momentum_buf, lr, momentum, dampening, nesterov,
                 weight_decay, first_step, offsets=None, stats=None) -> None:
        """One SGD update in place with PyTorch semantics (momentum_buf may be None when
        momentum == 0; first_step: the buffer starts as the gradient). offsets/stats: step
        statistics, as for adam_step."""

    def adam_step(self, param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay,
                  decoupled, offsets=None, stats=None) -> None:
        """One Adam (decoupled=False: L2 weight decay) or AdamW (decoupled=True) update in
        place; ``step`` counts from 1. With ``offsets`` (int64 (S+1,) segment starts ending
        with the size) and ``stats`` (float64 (S, 8)), the same pass fills per segment: ||grad||
        (NaN when it holds NaN or Inf), L-inf of its finite values, its non-finite count, the
        first non-finite index (-1: none), ||param|| after the step, ||update||, and 1 (filled)
        (STEP_STATS backends only; the update itself is the same bits either way)."""

    def rmsprop_step(self, param, grad, square_avg, lr, alpha, eps, weight_decay, momentum,
                     momentum_buf, centered, grad_avg, offsets=None, stats=None) -> None:
        """One RMSprop update in place with PyTorch semantics (momentum_buf / grad_avg may be
        None when unused); offsets/stats: step statistics, as for adam_step."""

    # -- recurrent cells and sequences (formulas in csrc/deepgrad/rnn.h) ------------------------

    def lstm_cell_forward(self, gates, c_prev) -> tuple:
        """gates (B, 4H) pre-activations in order (i, f, g, o), c_prev (B, H) -> (h, c, act)
        with act (B, 4H) the activated gates saved for the backward."""

    def lstm_cell_backward(self, dh, dc, c_prev, c, act) -> tuple:
        """dh, dc (B, H) or None (zero) -> (dgates (B, 4H), dc_prev (B, H)), fresh arrays."""

    def gru_cell_forward(self, xg, hg, h_prev) -> tuple:
        """xg = x W_ih + b_ih and hg = h_prev W_hh + b_hh, both (B, 3H) in order (r, z, n),
        h_prev (B, H) -> (h (B, H), act (B, 4H) = (r, z, n, hg_n))."""

    def gru_cell_backward(self, dh, h_prev, act) -> tuple:
        """dh (B, H) -> (dxg (B, 3H), dhg (B, 3H), dh_prev (B, H)); dh_prev is only the direct
        part z * dh (the W_hh path is the caller's matmul)."""

    def rnn_sequence_forward(self, xw, w, h0, activation: str) -> tuple:
        """A whole Elman recurrence h_t = act(xw_t + h_{t-1} w): xw (T*B, H) time-major input
        projections, w (H, H), h0 (B, H) -> (y (B, T, H), saved)."""

    def rnn_sequence_backward(self, gy, saved, w, norms: bool = False) -> tuple:
        """gy = dL/dy (B, T, H) -> (dxw (T*B, H), dw (H, H), dh0 (B, H), ||dL/dh_t|| float64
        numpy (T,) when norms, else None)."""

    def gru_sequence_forward(self, xw, w, bh, h0) -> tuple:
        """A whole GRU recurrence: xw (T*B, 3H) = x W_ih + b_ih time-major, w (H, 3H), bh (3H,)
        or None, h0 (B, H) -> (y (B, T, H), saved)."""

    def gru_sequence_backward(self, gy, saved, w, norms: bool = False) -> tuple:
        """gy (B, T, H) -> (dxw (T*B, 3H), dw (H, 3H), dbh (3H,) or None, dh0, norms or
        None)."""

    def lstm_sequence_forward(self, xw, w, h0, c0) -> tuple:
        """A whole LSTM recurrence: xw (T*B, 4H) time-major input projections, w (H, 4H), h0 and
        c0 (B, H) -> (y (B, T+1, H) = h_1 .. h_T then c_T, saved)."""

    def lstm_sequence_backward(self, gy, saved, w, norms: bool = False) -> tuple:
        """gy = dL/dy (B, T+1, H) -> (dxw (T*B, 4H), dw (H, 4H), dh0, dc0, norms or None)."""


def members() -> dict:
    """{name: the Protocol's function or None for a data member} for every primitive."""
    out = {n: None for n in Backend.__annotations__}
    for n, v in vars(Backend).items():
        if callable(v) and not n.startswith("_"):
            out[n] = v
    return out
