// CPU kernels for the elementwise families: activations, softmax, losses, fused norms and
// in-place buffer ops, optimizer updates. Plain functions over raw contiguous buffers; outputs
// first, then inputs, then sizes. Instantiated for float and double. The callers (bindings)
// have already checked every argument. The per-element formulas are in deepgrad/math.h.
#pragma once
#include <cstdint>

#include "deepgrad/common.h"
#include "deepgrad/math.h"

namespace dg::cpu {

// ---- activations (activations.cpp) -----------------------------------------------------------
// x (n) -> y (n): y = act(x)
template <class T> void act_forward(T* y, const T* x, index_t n, Act a, T alpha);
// dy, z, y (n) -> dz (n): dz = dy * act'(z). Writes (does not accumulate). z may be null when
// !act_needs_pre(a); y may be null (recomputed from z where the derivative needs it); both may
// be null for identity and step.
template <class T>
void act_backward(T* dz, const T* dy, const T* z, const T* y, index_t n, Act a, T alpha);

// ---- softmax (softmax.cpp), row-wise over the last axis ------------------------------------
// x (rows, cols) -> y (rows, cols): softmax, or log_softmax when log = true. Stable (row max).
template <class T> void softmax_forward(T* y, const T* x, index_t rows, index_t cols, bool log);
// dy, y (rows, cols) -> dx (rows, cols), y being the forward output (softmax or log_softmax).
template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, index_t rows, index_t cols, bool log);

// ---- losses (losses.cpp) ---------------------------------------------------------------------
// Elementwise losses (mse, bce, bce_logits): pred, target (n) -> per-element terms into `terms`
// (n) when non-null; returns the sum of the terms, accumulated in double in a fixed order.
template <class T> double loss_forward(T* terms, Loss kind, const T* pred, const T* target, index_t n);
// dpred (n) = d loss / d pred, scaled by `scale` (grad_terms null) or by grad_terms[i] (n).
template <class T>
void loss_backward(T* dpred, Loss kind, const T* pred, const T* target, const T* grad_terms,
                   T scale, index_t n);
// Softmax cross-entropy: logits (N, C), labels (N) in [0, C) -> per-row losses (N) when non-null;
// returns their sum (double, fixed order).
template <class T>
double cross_entropy_forward(T* losses, const T* logits, const std::int64_t* labels, index_t N, index_t C);
// dlogits (N, C) = (softmax(logits) - onehot(labels)) * (grad_rows ? grad_rows[i] : scale).
template <class T>
void cross_entropy_backward(T* dlogits, const T* logits, const std::int64_t* labels,
                            const T* grad_rows, T scale, index_t N, index_t C);

// ---- norms and in-place buffer ops (reduce.cpp) ----------------------------------------------
// x (offsets[S]) with segments [offsets[s], offsets[s+1]) -> norms (S) L2 norm of each segment,
// *total the global L2 norm; returns the number of NaN/Inf elements. Accumulates in double over
// fixed-size chunks combined in a fixed order: the same bits for any thread count.
template <class T>
index_t segment_norms(double* norms, double* total, const T* x, const index_t* offsets, index_t S);
template <class T> void scale_inplace(T* x, index_t n, T factor);
template <class T> void clip_value_inplace(T* x, index_t n, T clip);  // clamp to [-clip, clip]
template <class T> void fill_inplace(T* x, index_t n, T value);

// ---- activation statistics (act_stats.cpp), for the GradientMonitor -------------------------
// z (N, C) pre-activation, y (N, C) output (may be null when unused) -> sums = (sum z, sum z^2)
// in double (fixed order); counts[0] = #{|a - center| > bound} with a = y (saturation 1) or z
// (saturation 2), 0 for saturation 0; counts[1] = columns with some y > 0 (when dead), else 0.
template <class T>
void act_stats(double* sums, index_t* counts, const T* z, const T* y, index_t n, index_t c,
               int saturation, T center, T bound, bool dead);
// x (n) -> ||x|| (double sums, fixed order); NaN when x holds NaN or Inf.
template <class T> double l2_norm(const T* x, index_t n);
// params, grads, prev (offsets[S]) in segments [offsets[s], offsets[s+1]) -> per segment
// pnorms = ||params||, gnorms = ||grads||, dnorms = ||params - prev|| (when dnorms is not null),
// then prev = params when snapshot; one pass, double sums in a fixed order. Returns the number of
// NaN/Inf gradient values. With ghealth (S, 3) not null, the gradient pass is the health kernel
// instead: ghealth[s] = (L-inf of the finite gradient values, their NaN + Inf count, index of the
// first non-finite or -1) and gnorms[s] is NaN for a segment holding a non-finite value.
template <class T>
index_t monitor_norms(double* pnorms, double* gnorms, double* dnorms, T* prev, const T* params,
                      const T* grads, const index_t* offsets, index_t S, bool snapshot,
                      double* ghealth = nullptr);
// params, prev (n) -> *pn = ||params||, *dn = ||params - prev|| (skipped when dn is null; the
// difference taken in T), then prev = params when snapshot; double accumulation.
template <class T>
void param_norms(double* pn, double* dn, T* prev, const T* params, index_t n, bool snapshot);

// ---- tensor health (health.cpp) -------------------------------------------------------------
// x (n) -> out (7): L2 norm and L-infinity norm of the finite elements, their min and max (NaN
// when there is none), the count of NaN, the count of +-Inf, the index of the first non-finite
// element (-1 when none). One pass when x is finite; double sums in a fixed order.
template <class T> void health(double* out, const T* x, index_t n);
// buf (offsets[S]) in segments [offsets[s], offsets[s+1]) -> out (S, 7): health of each segment
// (segments in parallel for large buffers; the same bits for any thread count).
template <class T> void segment_health(double* out, const T* buf, const index_t* offsets, index_t S);

// ---- optimizers (optim.cpp), one pass over flat buffers, in place --------------------------
// Step statistics: with `stats` not null, the step also fills, per segment s of the buffers
// [offsets[s], offsets[s+1]) (offsets (S+1), offsets[0] == 0, offsets[S] == n), the row
// stats[s] (kStepStats slots) while it holds the data: ||grad|| (NaN when the segment holds a NaN
// or an Inf), the L-inf norm of its finite values, its non-finite count, the index of its first
// non-finite value (-1: none), ||param|| after the step, ||param after - param before|| (the
// difference taken in T), and 1 in slot 6 (filled). Norms in double. The same bits for any
// thread count (the segments are cut into fixed chunks combined in order).
constexpr int kStepStats = 8;
struct StepStatsOut {
  const index_t* offsets = nullptr;
  index_t segments = 0;
  double* stats = nullptr;  // (segments, kStepStats), or null: no statistics
};
// param, grad, momentum_buf (n); momentum_buf may be null only when h.momentum == 0 (a null buffer
// means no momentum term).
template <class T>
void sgd_step(T* param, T* momentum_buf, const T* grad, index_t n, const SgdHyper<T>& h,
              const StepStatsOut& st = {});
// param, grad, m, v (n)
template <class T>
void adam_step(T* param, T* m, T* v, const T* grad, index_t n, const AdamHyper<T>& h,
               const StepStatsOut& st = {});
// param, grad, square_avg (n); momentum_buf null unless h.momentum > 0; grad_avg null unless centered
// (a null buffer means no momentum term / not centered).
template <class T>
void rmsprop_step(T* param, T* square_avg, T* momentum_buf, T* grad_avg, const T* grad, index_t n,
                  const RmspropHyper<T>& h, const StepStatsOut& st = {});

}  // namespace dg::cpu
