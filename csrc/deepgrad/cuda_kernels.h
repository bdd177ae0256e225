// Launchers of deepgrad's hand-written CUDA compute kernels (csrc/cuda/gemm.cu, dense.cu,
// activations.cu, softmax_loss.cu, norms.cu, health.cu, optim.cu, norm_layers.cu, rnn.cu).
//
// Conventions: float32, row-major, contiguous device pointers. Outputs first, then inputs, then
// sizes, then the stream. Backward kernels accumulate (+=) into parameter gradients (dw, db,
// dgamma, dbeta) and overwrite input gradients (dx). Every launcher checks cudaGetLastError()
// and throws std::runtime_error naming the call. Reductions are deterministic: per-block partial
// sums combined in a fixed order, no float atomics. Callers (bindings/bind_cuda_kernels.cpp)
// validate shapes; launchers trust their arguments.
//
// This header needs no CUDA header, so host-only translation units can include it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "deepgrad/common.h"
#include "deepgrad/cuda_array.h"
#include "deepgrad/math.h"

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;  // the same declaration as the CUDA runtime's

namespace dg::cuda {

// ---- gemm.cu ----------------------------------------------------------------------------------
// a (M, K) or (K, M) when trans_a, b (K, N) or (N, K) when trans_b -> c (M, N):
// c = alpha op(a) op(b) + beta c. beta == 0 never reads c (NaN in c does not propagate).
// Shared-memory tiling with register blocking and float4 loads where the rows are aligned.
void gemm(float* c, const float* a, const float* b, index_t M, index_t N, index_t K, bool trans_a,
          bool trans_b, float alpha, float beta, cudaStream_t stream);
// The same contract, one thread per output: the test oracle.
void gemm_naive(float* c, const float* a, const float* b, index_t M, index_t N, index_t K,
                bool trans_a, bool trans_b, float alpha, float beta, cudaStream_t stream);

// GEMM with the dense-layer epilogue fused: z = op(a) op(b) + bias (bias (N) or null),
// y = act(z); z is written only when z_out is non-null.
void gemm_bias_act(float* y, float* z_out, const float* a, const float* b, const float* bias,
                   index_t M, index_t N, index_t K, bool trans_a, bool trans_b, Act act,
                   float act_alpha, cudaStream_t stream);

// ---- dense.cu ---------------------------------------------------------------------------------
// x (N, IN), w (IN, OUT), b (OUT) or null -> y (N, OUT) = act(x w + b), z (N, OUT) = x w + b
// (written only when z is non-null).
void dense_forward(float* y, float* z, const float* x, const float* w, const float* b, index_t n,
                   index_t in, index_t out, Act act, float alpha, cudaStream_t stream);
// dy (N, OUT), x (N, IN), w (IN, OUT), z / y (N, OUT) -> dx (N, IN) = dz wᵀ (overwritten; null
// skips it), dw (IN, OUT) += xᵀ dz, db (OUT) += column sums of dz (null skips it), where
// dz = dy act'(z). work: N*OUT floats of scratch for dz (unused, may be null, for identity).
// z may be null when !act_needs_pre(act); y may be null when the activation does not need it.
void dense_backward(float* dx, float* dw, float* db, float* work, const float* dy, const float* x,
                    const float* w, const float* z, const float* y, index_t n, index_t in,
                    index_t out, Act act, float alpha, cudaStream_t stream);
// db (OUT) += column sums of g (N, OUT), in a fixed order (deterministic).
void column_sum_add(float* db, const float* g, index_t n, index_t out, cudaStream_t stream);

// ---- activations.cu ---------------------------------------------------------------------------
// x (n) -> y (n) = act(x)
void act_forward(float* y, const float* x, index_t n, Act act, float alpha, cudaStream_t stream);
// dy, z, y (n) -> dz (n) = dy act'(z); z or y may be null when the derivative does not need it.
void act_backward(float* dz, const float* dy, const float* z, const float* y, index_t n, Act act,
                  float alpha, cudaStream_t stream);

// ---- softmax_loss.cu --------------------------------------------------------------------------
// x (rows, cols) -> y (rows, cols): softmax (or log_softmax when log) over each row.
void softmax(float* y, const float* x, index_t rows, index_t cols, bool log, cudaStream_t stream);
// dy, y (rows, cols) -> dx: softmax: y (dy - Σ dy y); log_softmax: dy - e^y Σ dy.
void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                      bool log, cudaStream_t stream);

// Losses. pred (n) and target (n) float for mse / bce / bce_logits; for cross_entropy pred is
// (rows, cols) logits and labels (rows) int64. `count` is n (elementwise) or rows (cross-entropy).
// Per-element (or per-row) losses -> terms (count). Cross-entropy lowers *bad_row (device int64
// the caller sets to `rows` beforehand) to the smallest row whose label is outside [0, cols);
// such rows get NaN. For the elementwise kinds rows * cols is the element count.
void loss_terms(float* terms, std::int64_t* bad_row, Loss kind, const float* pred,
                const float* target, const std::int64_t* labels, index_t rows, index_t cols,
                cudaStream_t stream);
// Deterministic sum of x (n) in double -> *out (one block, fixed order); scale multiplies it.
void sum_to_double(double* out, const float* x, index_t n, double scale, cudaStream_t stream);
// dpred (same shape as pred) = d loss / d pred times the upstream gradient: grad_terms (count)
// for reduction none; else `scale` (mean: 1 / count, sum: 1) times *grad_scalar when that
// device pointer is given (the loss's gradient read on the device: no host round trip), or
// `scale` alone (mean: grad / count, sum: grad) when it is null.
void loss_backward(float* dpred, Loss kind, const float* pred, const float* target,
                   const std::int64_t* labels, const float* grad_terms, const float* grad_scalar,
                   float scale, index_t rows, index_t cols, cudaStream_t stream);

// ---- norms.cu ---------------------------------------------------------------------------------
// buf (n) with segment offsets (S + 1, on the device; offsets[0] = 0, offsets[S] = n) ->
// norms (S) float64 L2 norm per segment, *total (float64) the global L2 norm, *nonfinite
// (int64) the count of NaN/Inf elements. Two launches (per-tile partials, then one block that
// combines them in a fixed order); deterministic. workspace: segment_norms_workspace(n, S) bytes.
std::size_t segment_norms_workspace(index_t n, index_t segments);
void segment_norms(double* norms, double* total, std::int64_t* nonfinite, void* workspace,
                   const float* buf, const std::int64_t* offsets, index_t n, index_t segments,
                   cudaStream_t stream);
// The whole host call: offsets (S + 1) and the outputs norms (S), *total, *nonfinite live in
// host memory. Uploads the offsets (skipped when they equal the previous call's), runs
// segment_norms in scratch kept between calls (not from the caching allocator), copies the
// results back through pinned memory and synchronizes the stream.
void segment_norms_host(double* norms, double* total, std::int64_t* nonfinite, const float* buf,
                        const std::int64_t* offsets, index_t n, index_t segments,
                        cudaStream_t stream);
// In place over buf (n): buf *= factor; buf = clamp(buf, -clip, clip); buf = value.
void scale_(float* buf, index_t n, float factor, cudaStream_t stream);
void clip_value_(float* buf, index_t n, float clip, cudaStream_t stream);
void fill_(float* buf, index_t n, float value, cudaStream_t stream);

// ---- act_stats.cu -----------------------------------------------------------------------------
// A layer's activation statistics for the monitor, as dg::cpu::act_stats: z, y (rows, cols) ->
// out (4) float64 on the device = [sum z, sum z^2, saturated count, live columns] (counts as
// doubles; y may be null when saturation != 1 and !dead). part: act_stats_blocks(...) x 4
// float64 of device workspace. Two launches, no host synchronisation, deterministic.
int act_stats_blocks(index_t rows, index_t cols, bool dead);
template <class T>
void act_stats(double* out, double* part, const T* z, const T* y, index_t rows, index_t cols,
               int saturation, T center, T bound, bool dead, cudaStream_t stream);

// ---- health.cu --------------------------------------------------------------------------------
// buf (n) float32 or float64 (t) with segment offsets (S + 1, on the device; offsets[0] = 0,
// offsets[S] = n) -> out (S, 7) float64 on the device: per segment the row of deepgrad/health.h
// ([L2, L-inf, min, max] of the finite elements, NaN count, Inf count, first non-finite index
// relative to the segment or -1), as dg::cpu::segment_health. Two launches, deterministic.
// workspace: segment_health_workspace(n, S, t) bytes, 16-byte aligned.
std::size_t segment_health_workspace(index_t n, index_t segments, DType t);
void segment_health(double* out, void* workspace, const void* buf, DType t,
                    const std::int64_t* offsets, index_t n, index_t segments, cudaStream_t stream);
// K separate float32 or float64 (t) device arrays ptrs[k] of sizes[k] elements -> out (K, 7) on
// the device: each array's row as one segment (the first non-finite index local to it). One
// pair of launches per 64 arrays, the pointers passed as kernel arguments (nothing uploaded).
// workspace: tensors_health_workspace(sizes, K, t) bytes.
std::size_t tensors_health_workspace(const index_t* sizes, index_t count, DType t);
void tensors_health(double* out, void* workspace, const void* const* ptrs, const index_t* sizes,
                    index_t count, DType t, cudaStream_t stream);
// The whole host call: offsets (S + 1) and out (S, 7) in host memory; scratch kept between calls
// (offsets equal to the previous call's are not uploaded again); synchronizes the stream.
void segment_health_host(double* out, const void* buf, DType t, const std::int64_t* offsets,
                         index_t n, index_t segments, cudaStream_t stream);
// The monitor's one host call (the CPU's monitor_norms on the device): rows (R, S, 7) in host
// memory receive the health rows of grads, of params and, when diff, of params - prev (R = 3;
// else 2), then prev = params when snapshot. diff_work: n elements of t, used when diff. One
// device-to-host copy and one synchronisation for everything.
void health_rows_host(double* rows, const void* params, const void* grads, void* prev,
                      void* diff_work, DType t, const std::int64_t* offsets, index_t n,
                      index_t segments, bool diff, bool snapshot, cudaStream_t stream);

// ---- optim.cu ---------------------------------------------------------------------------------
// One launch over the whole flat buffer each; per-element formulas from math.h.
// param, grad, momentum_buf (n); momentum_buf may be null when h.momentum == 0.
void sgd_step(float* param, float* momentum_buf, const float* grad, index_t n,
              const SgdHyper<float>& h, cudaStream_t stream);
void adam_step(float* param, float* m, float* v, const float* grad, index_t n,
               const AdamHyper<float>& h, cudaStream_t stream);
// momentum_buf null when h.momentum == 0; grad_avg null when !h.centered.
void rmsprop_step(float* param, float* square_avg, float* momentum_buf, float* grad_avg,
                  const float* grad, index_t n, const RmspropHyper<float>& h, cudaStream_t stream);

// ---- norm_layers.cu ---------------------------------------------------------------------------
// Batch norm over the rows of x (N, C). training: batch mean / biased variance, saved as
// save_mean / save_invstd (C), running stats (C, may be null) updated with momentum using the
// unbiased variance (PyTorch). Not training: the running stats normalize, and save_mean /
// save_invstd receive them. gamma / beta (C) may be null (affine = False). -> y (N, C).
void batch_norm_forward(float* y, float* save_mean, float* save_invstd, float* running_mean,
                        float* running_var, const float* x, const float* gamma, const float* beta,
                        index_t n, index_t c, float eps, float momentum, bool training,
                        cudaStream_t stream);
// dy, x (N, C), gamma (C) or null, save_mean / save_invstd (C) -> dx (N, C) (overwritten; null
// skips it), dgamma / dbeta (C) += (null skips them). training selects the batch-statistics
// derivative; otherwise the statistics are constants.
void batch_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* gamma, const float* save_mean, const float* save_invstd,
                         index_t n, index_t c, bool training, cudaStream_t stream);
// Layer norm over the last axis of x (N, D): y = gamma (x - mean) invstd + beta; gamma / beta
// (D) may be null. save_mean / save_invstd (N).
void layer_norm_forward(float* y, float* save_mean, float* save_invstd, const float* x,
                        const float* gamma, const float* beta, index_t n, index_t d, float eps,
                        cudaStream_t stream);
// -> dx (N, D) overwritten (null skips), dgamma / dbeta (D) += (null skips).
void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                         const float* gamma, const float* save_mean, const float* save_invstd,
                         index_t n, index_t d, cudaStream_t stream);

// ---- rnn.cu -----------------------------------------------------------------------------------
// The fused LSTM/GRU cell gate arithmetic (deepgrad/rnn.h's per-unit formulas, the contracts of
// dg::cpu::lstm_cell_* / gru_cell_*); one thread per unit. All outputs are overwritten.
// gates (B, 4H) pre-activations (i, f, g, o), c_prev (B, H) -> h (B, H), c (B, H),
// act (B, 4H) the activated gates.
void lstm_cell_forward(float* h, float* c, float* act, const float* gates, const float* c_prev,
                       index_t B, index_t H, cudaStream_t stream);
// dh, dc (B, H) or null (zero), c_prev, c (B, H), act (B, 4H) -> dgates (B, 4H), dc_prev (B, H).
void lstm_cell_backward(float* dgates, float* dc_prev, const float* dh, const float* dc,
                        const float* c_prev, const float* c, const float* act, index_t B,
                        index_t H, cudaStream_t stream);
// xg, hg (B, 3H) (r, z, n), h_prev (B, H) -> h (B, H), act (B, 4H) = (r, z, n, hg_n).
void gru_cell_forward(float* h, float* act, const float* xg, const float* hg, const float* h_prev,
                      index_t B, index_t H, cudaStream_t stream);
// dh, h_prev (B, H), act (B, 4H) -> dxg, dhg (B, 3H), dh_prev (B, H) (the direct part z·dh).
void gru_cell_backward(float* dxg, float* dhg, float* dh_prev, const float* dh,
                       const float* h_prev, const float* act, index_t B, index_t H,
                       cudaStream_t stream);

// Whole sequences in one host call each way: the contracts of dg::cpu::*_sequence_* in
// deepgrad/rnn.h (same layouts, float32), queued without a host synchronisation. hs[0] (and
// cs[0]) hold h0 (c0) on entry. norms: (T) float64 on the device receiving ||dL/dh_t||, or null.
// work: device scratch of the stated number of floats.
// xw (T*B, 4H), w (H, 4H) -> y (B, T+1, H), hs, cs (T+1, B, H), acts (T, B, 4H); work B*4H.
void lstm_sequence_forward(float* y, float* hs, float* cs, float* acts, float* work,
                           const float* xw, const float* w, index_t B, index_t T, index_t H,
                           cudaStream_t stream);
// gy (B, T+1, H) -> dxw (T*B, 4H), dw (H, 4H) (overwritten), dh0, dc0 (B, H); work 4*B*H.
void lstm_sequence_backward(float* dxw, float* dw, float* dh0, float* dc0, double* norms,
                            float* work, const float* gy, const float* hs, const float* cs,
                            const float* acts, const float* w, index_t B, index_t T, index_t H,
                            cudaStream_t stream);
// xw (T*B, H), w (H, H) -> y (B, T, H), hs (T+1, B, H), zs (T, B, H) pre-activations.
void rnn_sequence_forward(float* y, float* hs, float* zs, const float* xw, const float* w,
                          index_t B, index_t T, index_t H, Act act, cudaStream_t stream);
// gy (B, T, H) -> dxw (T*B, H), dw (H, H), dh0 (B, H); work 2*B*H.
void rnn_sequence_backward(float* dxw, float* dw, float* dh0, double* norms, float* work,
                           const float* gy, const float* hs, const float* zs, const float* w,
                           index_t B, index_t T, index_t H, Act act, cudaStream_t stream);
// xw (T*B, 3H) = x W_ih + b_ih, w (H, 3H), bh (3H) or null -> y (B, T, H), hs (T+1, B, H),
// acts (T, B, 4H); work B*3H.
void gru_sequence_forward(float* y, float* hs, float* acts, float* work, const float* xw,
                          const float* w, const float* bh, index_t B, index_t T, index_t H,
                          cudaStream_t stream);
// gy (B, T, H) -> dxw (T*B, 3H), dw (H, 3H), dbh (3H) or null, dh0 (B, H); work 2*B*H + T*B*3H.
void gru_sequence_backward(float* dxw, float* dw, float* dbh, float* dh0, double* norms,
                           float* work, const float* gy, const float* hs, const float* acts,
                           const float* w, index_t B, index_t T, index_t H, cudaStream_t stream);

}  // namespace dg::cuda
