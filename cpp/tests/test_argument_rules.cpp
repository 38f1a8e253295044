// Every row of tests/data/argument_rules.json (argv[1]) through the C++ API, on the tiny test bundle
// (OAT_EDGE_TEST_BUNDLE; skipped, exit 77, when unset). tests/runtime/test_argument_rules.py runs
// the same rows through Python: one table, both front doors. Rows marked python_only hold values C++
// cannot express (a str where a number goes) and are skipped here.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>

#include "mini_test.h"
#include "oat_edge/policy.h"

using namespace oat_edge;
using nlohmann::json;

static json g_rules;
static std::string g_bundle, g_ort;

static RuntimeOptions base_options() {
  RuntimeOptions o;
  o.ort_library = g_ort;
  o.warmup = false;
  return o;
}

static Policy& policy() {
  static Policy p(g_bundle, base_options());
  return p;
}

static double number(const json& v) {
  if (v.is_string()) {
    const std::string s = v;
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    throw std::runtime_error("argument_rules.json: unknown number string '" + s + "'");
  }
  return v.get<double>();
}

static std::string row_name(const char* section, const json& row) { return std::string(section) + " " + row.dump(); }

// The row's verdict: accepted (no "error") or an InputError holding every listed substring.
static void expect(const char* section, const json& row, const std::function<void()>& call) {
  const std::string name = row_name(section, row);
  try {
    call();
  } catch (const InputError& e) {
    if (!row.contains("error")) return mini_test::fail(__FILE__, __LINE__, name + ": unexpected " + e.what());
    for (const auto& part : row["error"])
      if (std::string(e.what()).find(part.get<std::string>()) == std::string::npos)
        mini_test::fail(__FILE__, __LINE__, name + ": '" + part.get<std::string>() + "' missing from: " + e.what());
    return;
  } catch (const std::exception& e) {
    return mini_test::fail(__FILE__, __LINE__, name + ": expected InputError, got " + e.what());
  }
  if (row.contains("error")) mini_test::fail(__FILE__, __LINE__, name + ": accepted, expected an InputError");
}

static ActOptions act_options(const json& args) {
  ActOptions o;
  for (const auto& [k, v] : args.items()) {
    if (k == "max_tokens") o.max_tokens = v.get<int64_t>();
    else if (k == "min_tokens") o.min_tokens = v.get<int64_t>();
    else if (k == "top_k") o.top_k = v.get<int64_t>();
    else if (k == "seed") o.seed = v.get<uint64_t>();
    else if (k == "temperature") o.temperature = number(v);
    else if (k == "latency_budget_ms") o.latency_budget_ms = number(v);
    else throw std::runtime_error("argument_rules.json: unknown option " + k);
  }
  return o;
}

// A row's array: its shape and dtype, zeros (or its "values"), one element set by "set".
struct Array {
  std::vector<unsigned char> bytes;
  TensorView view;
  int64_t rows() const { return view.rank >= 1 && view.shape[0] > 0 ? view.shape[0] : 0; }
};

static DType dtype_of(const std::string& s) {
  for (DType t : {DType::Float32, DType::Float64, DType::Int64, DType::Int32, DType::UInt8, DType::Bool})
    if (s == dtype_name(t)) return t;
  throw std::runtime_error("argument_rules.json: unknown dtype " + s);
}

static Array array(const json& row, const char* default_dtype) {
  Array a;
  a.view.dtype = dtype_of(row.value("dtype", std::string(default_dtype)));
  size_t n = 1;
  for (const auto& d : row["shape"]) {
    a.view.shape[a.view.rank++] = d.get<int64_t>();
    n *= d.get<size_t>();
  }
  a.bytes.assign(n * 8 + 8, 0);  // 8 bytes per element covers every dtype used
  if (row.contains("values")) {
    auto* p = reinterpret_cast<int64_t*>(a.bytes.data());
    for (size_t i = 0; i < row["values"].size(); ++i) {
      if (a.view.dtype == DType::Float64) reinterpret_cast<double*>(p)[i] = row["values"][i].get<double>();
      else p[i] = row["values"][i].get<int64_t>();
    }
  }
  if (row.contains("set")) {  // float32 arrays only
    size_t flat = 0;
    for (size_t i = 0; i < a.view.rank; ++i) flat = flat * size_t(a.view.shape[i]) + row["set"][0][i].get<size_t>();
    reinterpret_cast<float*>(a.bytes.data())[flat] = float(number(row["set"][1]));
  }
  a.view.data = a.bytes.data();
  return a;
}

template <typename F>
static void for_rows(const char* section, F&& f) {
  for (const auto& row : g_rules[section])
    if (!row.value("python_only", false)) f(row);
}

TEST(option_rules_hold_for_check_act_and_generate) {
  Policy& p = policy();
  const auto& in = p.info();
  std::vector<float> obs(size_t(in.n_obs_steps) * in.obs_dim), out(size_t(in.horizon) * in.action_dim);
  std::vector<int64_t> ids(size_t(in.num_tokens));
  const TensorView view(obs.data(), {1, in.n_obs_steps, in.obs_dim});
  for_rows("options", [&](const json& row) {
    const ActOptions o = act_options(row["args"]);
    expect("options", row, [&] { p.check(o); });
    expect("options", row, [&] { p.act(view, out, o); });
    expect("options", row, [&] { p.generate(view, ids, o); });
  });
}

TEST(obs_rules_hold_for_act_and_generate) {
  Policy& p = policy();
  const auto& in = p.info();
  for_rows("obs", [&](const json& row) {
    Array a = array(row, "float32");
    std::vector<float> out(size_t(a.rows()) * in.horizon * in.action_dim);
    std::vector<int64_t> ids(size_t(a.rows()) * in.num_tokens);
    expect("obs", row, [&] { p.act(a.view, out); });
    expect("obs", row, [&] { p.generate(a.view, ids); });
  });
}

TEST(ids_rules_hold_for_detokenize) {
  Policy& p = policy();
  const auto& in = p.info();
  for_rows("ids", [&](const json& row) {
    Array a = array(row, "int64");
    std::vector<float> out(size_t(a.rows()) * in.horizon * in.action_dim);
    expect("ids", row, [&] { p.detokenize(a.view, out); });
  });
}

TEST(actions_rules_hold_for_tokenize) {
  Policy& p = policy();
  for_rows("actions", [&](const json& row) {
    Array a = array(row, "float32");
    std::vector<int64_t> ids(size_t(a.rows()) * p.info().num_tokens);
    expect("actions", row, [&] { p.tokenize(a.view, ids); });
  });
}

TEST(constructor_rules_hold) {
  for_rows("runtime", [&](const json& row) {
    RuntimeOptions o = base_options();
    for (const auto& [k, v] : row["args"].items()) {
      if (k == "max_batch") o.max_batch = v.get<int>();
      else if (k == "batch_limit") o.batch_limit = v.get<int>();
      else if (k == "threads") o.intra_op_threads = v.get<int>();
      else if (k == "device") o.device = v.get<std::string>();
      else throw std::runtime_error("argument_rules.json: unknown runtime option " + k);
    }
    expect("runtime", row, [&] { Policy(g_bundle, o); });
  });
}

TEST(wrong_output_buffer_sizes_are_input_errors) {
  Policy& p = policy();
  const auto& in = p.info();
  std::vector<float> obs(size_t(2) * in.n_obs_steps * in.obs_dim);
  const TensorView view(obs.data(), {2, in.n_obs_steps, in.obs_dim});
  std::vector<float> one_row(size_t(in.horizon) * in.action_dim);  // a batch of 2 needs twice this
  CHECK_THROWS(InputError, p.act(view, one_row), "out: expected a buffer of " + std::to_string(2 * one_row.size()));
  std::vector<int64_t> ids(size_t(in.num_tokens) + 1);
  CHECK_THROWS(InputError, p.generate(view, ids), "out_ids: expected a buffer of");
  CHECK_THROWS(InputError, p.act(view, Span<float>(nullptr, 2 * one_row.size())), "out: expected a valid buffer");
}

int main(int argc, char** argv) {
  const char* b = std::getenv("OAT_EDGE_TEST_BUNDLE");
  if (!b || !*b || argc < 2) {
    std::printf("OAT_EDGE_TEST_BUNDLE or the rules table not given: skipping\n");
    return mini_test::kSkip;
  }
  g_bundle = b;
  std::ifstream f(argv[1]);
  g_rules = json::parse(f);
  if (argc > 2) g_ort = argv[2];
  if (const char* e = std::getenv("OAT_EDGE_ORT_LIBRARY"); e && *e && g_ort.empty()) g_ort = e;
  return mini_test::run_all();
}
