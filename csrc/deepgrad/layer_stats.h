// The layer statistics record: 16 float64 slots that a fused layer kernel fills while it already
// holds the data, so that gradient monitoring costs no extra pass and no Python per layer.
//
// The caller (deepgrad.monitor, through F.dense's documented ``stats=`` option) writes the request
// slots once; every forward that is given the record adds the pre-activation sums, the saturated
// count and the alive-column count of that forward (overwriting the previous forward's) and bumps
// kFwdCount; every backward adds ||dL/dy||^2 and bumps kBwdCount. A reader compares the counts with
// the ones it saw last to tell fresh values from stale ones.
#pragma once

namespace dg::layer_stats {

enum Slot : int {
  // request (written by the caller)
  kWantForward = 0,  // 1: fill the forward slots below; 0: only the backward signal
  kSatMode = 1,      // 0: no saturation count; 1: count |y - center| > bound; 2: |z - center| > bound
  kCenter = 2,
  kBound = 3,
  kDead = 4,         // 1: count the output columns with at least one y > 0 (ReLU's alive units)
  // forward results
  kFwdCount = 5,     // forwards recorded so far (incremented)
  kElements = 6,     // N * C of the last forward
  kColumns = 7,      // C
  kSum = 8,          // sum of z (the pre-activation), accumulated in double
  kSumSq = 9,        // sum of z^2
  kSaturated = 10,   // count of saturated elements (kSatMode != 0)
  kAlive = 11,       // count of columns with some y > 0 (kDead)
  // backward results
  kBwdCount = 12,    // backwards recorded so far (incremented)
  kSignalSq = 13,    // ||dL/dy||^2 of the last backward in double; NaN when dL/dy holds NaN or Inf
  kReaders = 14,     // left to the readers (monitors sharing the record count themselves here)
  kSize = 16,
};

}  // namespace dg::layer_stats
