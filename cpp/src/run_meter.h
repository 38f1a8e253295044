// Wall time and heap allocations of ORT Run() calls, for ActStats. Allocations are counted only
// when cpp/tools/malloc_counter.c is LD_PRELOAD'ed (a benchmark aid); otherwise they read as 0.
#pragma once

#include <dlfcn.h>

#include <chrono>
#include <cstdint>

namespace oat_edge::detail {

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

class RunMeter {
 public:
  bool counting() const { return count_ != nullptr; }
  uint64_t allocs_now() const { return count_ ? count_() : 0; }
  // Allocations inside run() calls since the last reset_ort_allocs().
  uint64_t ort_allocs() const { return ort_allocs_; }
  void reset_ort_allocs() { ort_allocs_ = 0; }

  // Runs f (one ORT Run), adds its allocations to ort_allocs(), returns its wall time in ms.
  template <typename F>
  double run(F&& f) {
    const auto t0 = Clock::now();
    const uint64_t a0 = allocs_now();
    f();
    ort_allocs_ += allocs_now() - a0;
    return ms_since(t0);
  }

 private:
  using CountFn = uint64_t (*)();
  CountFn count_ = reinterpret_cast<CountFn>(dlsym(RTLD_DEFAULT, "oat_malloc_count"));
  uint64_t ort_allocs_ = 0;
};

}  // namespace oat_edge::detail
