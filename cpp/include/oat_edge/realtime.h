// Memory set-up for a real-time control process, and the counters that show it holds.
//
// ONNX Runtime's CPU executor makes a few small heap allocations per graph node on every Run()
// (2-6, whatever its arena/memory-pattern options say; see docs/bench/allocations.txt), so a
// generated token is not allocation-free inside ORT. What a control loop needs is that none of
// those allocations reaches the kernel: no page fault, no brk/mmap, no sleep on a lock. This
// module applies the usual PREEMPT_RT recipe so that holds by construction after warm-up, and
// thread_faults() lets a loop (or a test) check it.
#pragma once

#include <cstdint>
#include <string>

namespace oat_edge {

struct RealtimeMemoryStatus {
  bool malloc_pinned = false;  // freed memory stays in the process; large blocks come from the heap
  bool locked = false;         // mlockall(MCL_CURRENT | MCL_FUTURE) is in force
  std::string message;         // what was applied, and for anything skipped: why and how to enable it
};

// Call once at start-up of the process that runs the control loop, ideally before loading the
// Policy. Never throws: what cannot be applied (e.g. locking without CAP_IPC_LOCK or a large
// enough RLIMIT_MEMLOCK, where MCL_FUTURE would make later allocations fail) is skipped and said.
RealtimeMemoryStatus prepare_realtime_memory(bool lock_memory = true);

struct ThreadFaults {
  int64_t minor = 0;               // page faults served without I/O (first touch, reclaimed pages)
  int64_t major = 0;               // page faults that needed I/O
  int64_t voluntary_switches = 0;  // the thread slept (blocked on a lock, I/O, or a syscall)
};
ThreadFaults thread_faults();  // getrusage(RUSAGE_THREAD) of the calling thread

}  // namespace oat_edge
