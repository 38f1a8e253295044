// fork() safety for the policies' locks. A fork() while another thread is inside a Policy call
// would leave the child a locked mutex whose owner does not exist there (every later call in the
// child would hang). pthread_atfork handlers take every registered lock before the fork, so no call
// is in flight at the fork, and release them in both processes afterwards; fork() waits at most
// for the calls in flight to finish.
#pragma once

#include <mutex>

namespace oat_edge::detail {

class ForkGuard {
 public:
  explicit ForkGuard(std::mutex& mu);  // registers mu (installs the handlers on first use)
  ~ForkGuard();                        // unregisters it
  ForkGuard(const ForkGuard&) = delete;
  ForkGuard& operator=(const ForkGuard&) = delete;

 private:
  std::mutex& mu_;
};

}  // namespace oat_edge::detail
