// The mid-size fork's backoff (see cpu/mid_fork.h). Relaxed atomics: the state is a heuristic,
// races between threads calling kernels at once only blur it.
#include "cpu/mid_fork.h"

#include <algorithm>
#include <atomic>

namespace dg::cpu {
namespace {

class ForkBackoff {
 public:
  bool allow() {
    const int s = skip_.load(std::memory_order_relaxed);
    if (s <= 0) return true;
    skip_.store(s - 1, std::memory_order_relaxed);
    return false;
  }
  void report(double own_s, double join_wait_s) {
    const double wait = 0.95 * wait_.load(std::memory_order_relaxed) + join_wait_s;
    const double own = 0.95 * own_.load(std::memory_order_relaxed) + own_s;
    int since = since_.load(std::memory_order_relaxed);
    int len = len_.load(std::memory_order_relaxed);
    if (wait > 300e-6 && wait > own) {
      if (since < kDoubleWithin) len = std::min(2 * len, kMax);
      skip_.store(len, std::memory_order_relaxed);
      len_.store(len, std::memory_order_relaxed);
      since_.store(0, std::memory_order_relaxed);
      wait_.store(0, std::memory_order_relaxed);
      own_.store(0, std::memory_order_relaxed);
      return;
    }
    if (since < kResetAfter) since_.store(since + 1, std::memory_order_relaxed);
    else len_.store(kMin, std::memory_order_relaxed);
    wait_.store(wait, std::memory_order_relaxed);
    own_.store(own, std::memory_order_relaxed);
  }

 private:
  static constexpr int kMin = 256, kMax = 65536, kDoubleWithin = 1024, kResetAfter = 8192;
  std::atomic<int> skip_{0}, len_{kMin}, since_{kResetAfter};
  std::atomic<double> wait_{0}, own_{0};
};
ForkBackoff g_backoff;

}  // namespace

bool mid_fork_allowed() { return g_backoff.allow(); }
void mid_fork_report(double own_s, double join_wait_s) { g_backoff.report(own_s, join_wait_s); }

}  // namespace dg::cpu
