/* LD_PRELOAD heap-allocation counter for oat_edge_run (benchmark aid, not part of the runtime).
 * Counts malloc/calloc/realloc/aligned allocations in the whole process (operator new calls
 * malloc in libstdc++, so it is counted too). Forwards to glibc's __libc_* entry points, which
 * avoids the dlsym(RTLD_NEXT) bootstrap recursion (dlsym itself calls calloc).
 * Read the counter with dlsym(RTLD_DEFAULT, "oat_malloc_count"). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);

static uint64_t g_count; /* relaxed atomic increments: exact under threads */

static void bump(void) { __atomic_fetch_add(&g_count, 1, __ATOMIC_RELAXED); }

uint64_t oat_malloc_count(void) { return __atomic_load_n(&g_count, __ATOMIC_RELAXED); }

void* malloc(size_t n) {
  bump();
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  bump();
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  bump();
  return __libc_realloc(p, n);
}
void* memalign(size_t al, size_t n) {
  bump();
  return __libc_memalign(al, n);
}
void* aligned_alloc(size_t al, size_t n) {
  bump();
  return __libc_memalign(al, n);
}
int posix_memalign(void** out, size_t al, size_t n) {
  bump();
  if (al < sizeof(void*) || (al & (al - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(al, n);
  if (!p && n) return ENOMEM;
  *out = p;
  return 0;
}
