#include "fork_guard.h"

#include <pthread.h>

#include <set>

namespace oat_edge::detail {
namespace {

// Leaked on purpose: the handlers may run during static destruction of another library's fork.
std::mutex& registry_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::set<std::mutex*>& registry() {
  static auto* s = new std::set<std::mutex*>;
  return *s;
}

// Lock order: the registry first, then each policy lock; a call in flight holds only its policy
// lock and never asks for the registry, so this cannot deadlock.
void before_fork() {
  registry_mutex().lock();
  for (std::mutex* m : registry()) m->lock();
}
void after_fork() {  // parent and child alike: the forking thread holds every lock and releases it
  for (std::mutex* m : registry()) m->unlock();
  registry_mutex().unlock();
}

void install_handlers() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(before_fork, after_fork, after_fork); });
}

}  // namespace

ForkGuard::ForkGuard(std::mutex& mu) : mu_(mu) {
  install_handlers();
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().insert(&mu_);
}

ForkGuard::~ForkGuard() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().erase(&mu_);
}

}  // namespace oat_edge::detail
