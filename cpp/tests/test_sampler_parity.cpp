// Replays cpp/tests/data/sampler_cases.txt (written by make_sampler_cases.py from the Python
// reference sampler) through the C++ sampler: ids must match exactly.
#include <fstream>
#include <sstream>

#include "mini_test.h"
#include "sampler.h"

using oat_edge::detail::Sampler;
using oat_edge::detail::SplitMix64;

static std::string g_file;

TEST(cpp_sampler_matches_python_reference) {
  std::ifstream f(g_file);
  CHECK(f.good());
  Sampler s(1000);
  std::vector<float> logits(1001);
  std::string line;
  int cases = 0;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    long long p, q, m, k;
    double d, t;
    unsigned long long seed;
    std::string colon;
    in >> p >> q >> m >> d >> seed >> t >> k >> colon;
    for (int i = 0; i < 1001; ++i) logits[i] = static_cast<float>(double((i * p + q) % m) / d - 3.0);
    SplitMix64 rng(seed);
    long long want;
    int draw = 0;
    while (in >> want) {
      int64_t got = s.sample(logits.data(), t, int(k), rng);
      if (got != want)
        mini_test::fail(__FILE__, __LINE__,
                        "case '" + line.substr(0, line.find(':')) + "' draw " + std::to_string(draw) + ": C++ " +
                            std::to_string(got) + ", Python " + std::to_string(want));
      ++draw;
    }
    ++cases;
  }
  CHECK(cases >= 100);
}

int main(int argc, char** argv) {
  g_file = argc > 1 ? argv[1] : "sampler_cases.txt";
  return mini_test::run_all();
}
