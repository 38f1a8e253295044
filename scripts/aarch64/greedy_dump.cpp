// greedy_dump BUNDLE OBS_F32 N: greedy tokens and actions of N observations, one line each.
// OBS_F32 holds N * n_obs_steps * obs_dim raw float32 values (little-endian, row-major). Built for
// x86-64 and for aarch64 by scripts/aarch64/compare_arch.sh, which diffs the two outputs: the same
// bundle and observations must give the same tokens on both, and actions within 1e-4.
// Output per observation: "ids t0 .. tK-1 actions a0 a1 ..." (actions at %.9g: float32 exact).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "oat_edge/policy.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: greedy_dump BUNDLE OBS_F32 N\n");
    return 2;
  }
  const int n = std::atoi(argv[3]);
  try {
    oat_edge::RuntimeOptions ro;
    ro.warmup = false;  // nothing timed here
    oat_edge::Policy policy(argv[1], ro);
    const auto& info = policy.info();
    const size_t obs_len = size_t(info.n_obs_steps) * size_t(info.obs_dim);
    std::vector<float> obs(size_t(n) * obs_len);
    std::ifstream f(argv[2], std::ios::binary);
    if (n < 1 || !f.read(reinterpret_cast<char*>(obs.data()), std::streamsize(obs.size() * sizeof(float)))) {
      std::fprintf(stderr, "error: %s does not hold %d x %zu float32 values\n", argv[2], n, obs_len);
      return 2;
    }
    std::fprintf(stderr, "greedy_dump: ORT %s (%s)\n", info.ort_version.c_str(), info.ort_library.c_str());
    oat_edge::ActOptions opt;
    opt.temperature = 0;  // greedy: no RNG, the comparison is of arithmetic only
    std::vector<int64_t> ids(size_t(info.num_tokens));
    std::vector<float> actions(size_t(info.horizon) * size_t(info.action_dim));
    const int64_t steps = info.n_obs_steps, dim = info.obs_dim;
    for (int i = 0; i < n; ++i) {
      const int k = policy.generate(oat_edge::TensorView(obs.data() + size_t(i) * obs_len, {1, steps, dim}), ids, opt);
      policy.detokenize(oat_edge::TensorView(ids.data(), {1, k}), actions);
      std::printf("ids");
      for (int t = 0; t < k; ++t) std::printf(" %lld", static_cast<long long>(ids[size_t(t)]));
      std::printf(" actions");
      for (float a : actions) std::printf(" %.9g", double(a));
      std::printf("\n");
    }
  } catch (const oat_edge::Error& e) {
    std::fprintf(stderr, "oat_edge error: %s\n", e.what());
    return 1;
  }
  return 0;
}
