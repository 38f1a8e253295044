// A tiny test harness (no gtest download): TEST(name) registers a function; CHECK* record failures.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace mini_test {

struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Registrar {
  Registrar(const char* n, std::function<void()> f) { registry().push_back({n, std::move(f)}); }
};

inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what.c_str());
  ++failures();
}

// Exit code 77 = skipped (CTest SKIP_RETURN_CODE), used when a test needs a bundle that is absent.
constexpr int kSkip = 77;

inline int run_all() {
  for (auto& c : registry()) {
    int before = failures();
    try {
      c.fn();
    } catch (const std::exception& e) { fail(c.name, 0, std::string("uncaught exception: ") + e.what()); }
    std::printf("%s %s\n", failures() == before ? "[ ok ]" : "[FAIL]", c.name);
  }
  std::printf("%zu tests, %d failures\n", registry().size(), failures());
  return failures() ? 1 : 0;
}

}  // namespace mini_test

#define MT_CAT2(a, b) a##b
#define MT_CAT(a, b) MT_CAT2(a, b)
#define TEST(name)                                             \
  static void name();                                          \
  static mini_test::Registrar MT_CAT(reg_, name)(#name, name); \
  static void name()
#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) mini_test::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)
#define CHECK_EQ(a, b)                                                                                                 \
  do {                                                                                                                 \
    auto _a = (a);                                                                                                     \
    auto _b = (b);                                                                                                     \
    if (!(_a == _b))                                                                                                   \
      mini_test::fail(__FILE__, __LINE__, #a " == " #b " (" + std::to_string(_a) + " vs " + std::to_string(_b) + ")"); \
  } while (0)
#define CHECK_NEAR(a, b, tol)                                                                                          \
  do {                                                                                                                 \
    double _a = (a), _b = (b);                                                                                         \
    if (!(std::fabs(_a - _b) <= (tol)))                                                                                \
      mini_test::fail(__FILE__, __LINE__, #a " ~= " #b " (" + std::to_string(_a) + " vs " + std::to_string(_b) + ")"); \
  } while (0)
// Expects `stmt` to throw `Exc` whose message contains `needle`.
#define CHECK_THROWS(Exc, stmt, needle)                                                                           \
  do {                                                                                                            \
    bool _thrown = false;                                                                                         \
    try {                                                                                                         \
      stmt;                                                                                                       \
    } catch (const Exc& _e) {                                                                                     \
      _thrown = true;                                                                                             \
      if (std::string(_e.what()).find(needle) == std::string::npos)                                               \
        mini_test::fail(__FILE__, __LINE__, std::string(#Exc " message lacks '") + (needle) + "': " + _e.what()); \
    } catch (const std::exception& _e) {                                                                          \
      _thrown = true;                                                                                             \
      mini_test::fail(__FILE__, __LINE__, std::string("expected " #Exc ", got: ") + _e.what());                   \
    }                                                                                                             \
    if (!_thrown) mini_test::fail(__FILE__, __LINE__, "expected " #Exc " from " #stmt);                           \
  } while (0)

#define MINI_TEST_MAIN() \
  int main() { return mini_test::run_all(); }
