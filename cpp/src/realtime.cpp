#include "oat_edge/realtime.h"

#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace oat_edge {
namespace {

// CAP_IPC_LOCK (bit 14) in the effective set: locking is then not bounded by RLIMIT_MEMLOCK.
bool has_ipc_lock_capability() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("CapEff:", 0) == 0) {
      unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
      return (caps >> 14) & 1ULL;
    }
  return false;
}

// Touch a stack region now so the first deep call in the loop does not fault it in.
void prefault_stack() {
  constexpr size_t kBytes = 256 * 1024;
  volatile unsigned char buf[kBytes];
  for (size_t i = 0; i < kBytes; i += 4096) buf[i] = 0;
}

}  // namespace

RealtimeMemoryStatus prepare_realtime_memory(bool lock_memory) {
  RealtimeMemoryStatus s;
  std::ostringstream msg;
  // Never give freed memory back (no trim) and never serve a block by a fresh mmap: after warm-up
  // every allocation is satisfied from pages the process already owns.
  s.malloc_pinned = mallopt(M_TRIM_THRESHOLD, -1) == 1 && mallopt(M_MMAP_MAX, 0) == 1;
  msg << (s.malloc_pinned ? "malloc: no trim, no mmap"
                          : "malloc: mallopt refused (not glibc's malloc, e.g. a sanitizer build)");
  if (lock_memory) {
    rlimit lim{};
    getrlimit(RLIMIT_MEMLOCK, &lim);
    if (lim.rlim_cur != RLIM_INFINITY && !has_ipc_lock_capability()) {
      // With MCL_FUTURE, any allocation past the limit would fail: never lock under a finite limit.
      msg << "; memory not locked: RLIMIT_MEMLOCK is " << (lim.rlim_cur / 1024)
          << " KiB and the process lacks CAP_IPC_LOCK (run with `ulimit -l unlimited`, a memlock "
             "entry in /etc/security/limits.conf, or CAP_IPC_LOCK)";
    } else if (mlockall(MCL_CURRENT | MCL_FUTURE) == 0) {
      s.locked = true;
      msg << "; all memory locked (mlockall current+future)";
    } else {
      msg << "; mlockall failed: " << std::strerror(errno);
    }
  } else {
    msg << "; memory locking not requested";
  }
  prefault_stack();
  s.message = msg.str();
  return s;
}

ThreadFaults thread_faults() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return ThreadFaults{u.ru_minflt, u.ru_majflt, u.ru_nvcsw};
}

}  // namespace oat_edge
