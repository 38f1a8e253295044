// A fixed-rate control loop on the C++ library alone (no Python): what a ROS 2 node or a C++
// control stack does with oat_edge::Policy.
//   oat_edge_control_loop BUNDLE [--hz 50] [--cycles 500] [--max-tokens k] [--rt-priority P]
//                         [--rt-memory] [--ort LIB]
// The robot is a stand-in, a point that integrates the commanded action; replace read_state() and
// send() with the robot's I/O. The loop replans when the executed part of the chunk
// (n_action_steps) runs out, inline: at these model sizes act() takes a few ms of a 20 ms period.
// A larger model would run act() in a worker thread and swap chunks, as oat_edge.control does.
#include <oat_edge/policy.h>
#include <oat_edge/realtime.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Args {
  std::string bundle, ort;
  double hz = 50;
  int cycles = 500, max_tokens = 0, rt_priority = 0;  // 0: all K tokens / no real-time priority
  bool rt_memory = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "error: %s\nusage: oat_edge_control_loop BUNDLE [--hz 50] [--cycles 500] [--max-tokens k]\n"
               "       [--rt-priority 1-99] [--rt-memory] [--ort LIB]\n",
               why.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(s + " needs a value");
      return argv[++i];
    };
    auto number = [&]() -> double {
      std::string v = val();
      char* end = nullptr;
      double x = std::strtod(v.c_str(), &end);
      if (!end || *end || !std::isfinite(x)) usage(s + " expects a number, got '" + v + "'");
      return x;
    };
    auto integer = [&](long lo, long hi) -> int {
      std::string v = val();
      char* end = nullptr;
      errno = 0;
      long x = std::strtol(v.c_str(), &end, 10);
      if (!end || *end || v.empty() || errno) usage(s + " expects an integer, got '" + v + "'");
      if (x < lo || x > hi) usage(s + " must be in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + v);
      return int(x);
    };
    if (s == "--hz") a.hz = number();
    else if (s == "--cycles") a.cycles = integer(1, 100000000);
    else if (s == "--max-tokens") a.max_tokens = integer(1, 1 << 20);  // the bundle's K is checked by act()
    else if (s == "--rt-priority") a.rt_priority = integer(1, 99);
    else if (s == "--rt-memory") a.rt_memory = true;
    else if (s == "--ort") a.ort = val();
    else if (s == "-h" || s == "--help") usage("help requested");
    else if (!s.empty() && s[0] == '-') usage("unknown option " + s);
    else if (a.bundle.empty()) a.bundle = s;
    else usage("unexpected argument " + s);
  }
  if (a.bundle.empty()) usage("BUNDLE is required");
  if (!(a.hz > 0 && a.hz <= 10000)) usage("--hz must be in (0, 10000], got " + std::to_string(a.hz));
  return a;
}

int64_t now_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void sleep_until_ns(int64_t t) {
  timespec ts{time_t(t / 1000000000), long(t % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {}
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

// Stand-in robot: a point whose first dims integrate the commanded action.
struct Robot {
  std::vector<float> state;
  void send(const float* action, int action_dim, double dt) {
    for (int d = 0; d < std::min<int>(action_dim, int(state.size())); ++d)
      state[d] = std::clamp(state[d] + float(dt) * action[d], -1.f, 1.f);
  }
};

// The calling thread under SCHED_FIFO at `priority`, when the process may (prints what happened).
void set_rt_priority(int priority) {
  sched_param sp{};
  sp.sched_priority = priority;
  int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
  std::printf("rt priority: %s\n", err ? ("not available (" + std::string(std::strerror(err)) + ")").c_str()
                                       : ("SCHED_FIFO " + std::to_string(priority)).c_str());
}

// What the loop measured: wake-up jitter, act() latency, overruns, page faults.
struct LoopStats {
  std::vector<double> jitter_ms, act_ms;
  int overruns = 0, replans = 0;
  int64_t first_wake = 0, last_wake = 0;
  long long page_faults = 0;
};

// `a.cycles` cycles at `a.hz`: read the state, replan when the executed part of the chunk runs out,
// send one action. Everything is allocated before the first cycle.
LoopStats run_loop(oat_edge::Policy& policy, oat_edge::ActOptions opt, const Args& a) {
  const oat_edge::PolicyInfo& in = policy.info();
  Robot robot{std::vector<float>(size_t(in.obs_dim), 0.f)};
  std::vector<float> obs(size_t(in.n_obs_steps) * in.obs_dim, 0.f);  // history, oldest first
  std::vector<float> chunk(size_t(in.horizon) * in.action_dim, 0.f);
  const oat_edge::TensorView obs_view(obs.data(), {1, in.n_obs_steps, in.obs_dim});
  const int n_exec = std::clamp(in.n_action_steps, 1, in.horizon);
  int next = n_exec;  // index into chunk: n_exec = "plan exhausted"
  LoopStats r;
  r.jitter_ms.reserve(size_t(a.cycles));  // no allocation inside the loop
  r.act_ms.reserve(size_t(a.cycles));
  const int64_t period = int64_t(1e9 / a.hz);

  const oat_edge::ThreadFaults f0 = oat_edge::thread_faults();
  const int64_t t0 = now_ns() + period;
  for (int c = 0; c < a.cycles; ++c) {
    const int64_t deadline = t0 + int64_t(c) * period;  // absolute: no drift
    sleep_until_ns(deadline);
    r.last_wake = now_ns();
    if (c == 0) r.first_wake = r.last_wake;
    r.jitter_ms.push_back(double(r.last_wake - deadline) * 1e-6);
    // read_state(): shift the history and append the newest observation
    std::copy(obs.begin() + in.obs_dim, obs.end(), obs.begin());
    std::copy(robot.state.begin(), robot.state.end(), obs.end() - in.obs_dim);
    if (next >= n_exec) {
      oat_edge::ActStats st;
      opt.seed = uint64_t(r.replans++);
      policy.act(obs_view, chunk, opt, &st);
      r.act_ms.push_back(st.total_ms);
      next = 0;
    }
    robot.send(chunk.data() + size_t(next++) * in.action_dim, in.action_dim, 1.0 / a.hz);
    if (now_ns() > deadline + period) ++r.overruns;  // this cycle ran into the next one
  }
  const oat_edge::ThreadFaults f1 = oat_edge::thread_faults();
  r.page_faults = static_cast<long long>(f1.minor + f1.major - f0.minor - f0.major);
  return r;
}

void print_summary(const LoopStats& r, const Args& a) {
  std::printf(
      "cycles %d achieved_hz %.2f jitter_p50_ms %.3f jitter_p99_ms %.3f jitter_max_ms %.3f "
      "replans %d act_p50_ms %.3f act_p99_ms %.3f overruns %d page_faults %lld\n",
      a.cycles, a.cycles > 1 ? double(a.cycles - 1) * 1e9 / double(r.last_wake - r.first_wake) : a.hz,
      pct(r.jitter_ms, 0.5), pct(r.jitter_ms, 0.99), pct(r.jitter_ms, 1.0), r.replans, pct(r.act_ms, 0.5),
      pct(r.act_ms, 0.99), r.overruns, r.page_faults);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.rt_memory) std::printf("rt memory: %s\n", oat_edge::prepare_realtime_memory(true).message.c_str());
  if (a.rt_priority > 0) set_rt_priority(a.rt_priority);
  try {
    oat_edge::RuntimeOptions ro;
    ro.ort_library = a.ort;
    // Loading, validation and the warm-up (ORT's first-run allocations) happen here, never in the loop.
    oat_edge::Policy policy(a.bundle, ro);
    oat_edge::ActOptions opt;
    if (a.max_tokens > 0) opt.max_tokens = a.max_tokens;  // unset: all K tokens
    opt.seed = 0;
    policy.check(opt);  // an impossible option stops here, before the robot moves
    print_summary(run_loop(policy, opt, a), a);
  } catch (const oat_edge::Error& e) {
    std::fprintf(stderr, "oat_edge error: %s\n", e.what());
    return 1;
  }
  return 0;
}
