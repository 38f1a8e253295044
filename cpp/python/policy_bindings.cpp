// oat_edge._core.Policy: owns the C++ policy, allocates the output arrays, releases the GIL around
// every call. Arguments are converted by convert.h; the core checks them.
#include <oat_edge/policy.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>

#include "convert.h"
#include "module.h"

namespace oat_edge_py {

namespace {

py::dict stats_dict(const oat_edge::ActStats& s) {
  py::dict d;
  d["tokens_used"] = s.tokens_used;
  d["total_ms"] = s.total_ms;
  d["prefill_ms"] = s.prefill_ms;
  d["step_ms"] = s.step_ms;
  d["decode_ms"] = s.decode_ms;
  d["overhead_ms"] = s.overhead_ms;
  return d;
}

py::dict info_dict(const oat_edge::PolicyInfo& i) {
  py::dict d;
  for (auto [k, v] : {std::pair<const char*, int>{"num_tokens", i.num_tokens},
                      {"codebook_size", i.codebook_size},
                      {"horizon", i.horizon},
                      {"action_dim", i.action_dim},
                      {"n_obs_steps", i.n_obs_steps},
                      {"obs_dim", i.obs_dim},
                      {"n_action_steps", i.n_action_steps},
                      {"vocab_size", i.vocab_size},
                      {"bos_id", i.bos_id},
                      {"n_layers", i.n_layers},
                      {"n_heads", i.n_heads},
                      {"head_dim", i.head_dim},
                      {"default_top_k", i.default_top_k},
                      {"max_batch", i.max_batch},
                      {"batch_limit", i.batch_limit}})
    d[k] = v;
  for (auto [k, v] : {std::pair<const char*, const std::string*>{"tokenizer_kind", &i.tokenizer_kind},
                      {"obs_layout", &i.obs_layout},
                      {"provider", &i.provider},
                      {"ort_version", &i.ort_version},
                      {"ort_library", &i.ort_library},
                      {"bundle_dir", &i.bundle_dir},
                      {"precision", &i.precision},
                      {"manifest_json", &i.manifest_json}})
    d[k] = *v;
  d["fsq_levels"] = i.fsq_levels;
  d["tasks"] = i.tasks;
  d["observation"] = i.observation.empty() ? py::object(py::none()) : py::object(py::str(i.observation));
  d["control_hz"] = i.control_hz ? py::object(py::float_(*i.control_hz)) : py::object(py::none());
  d["default_temperature"] = i.default_temperature;
  d["has_encoder"] = i.has_encoder;
  const auto& n = i.normalization;
  py::dict norm;
  norm["obs_scale"] = n.obs_scale;
  norm["obs_offset"] = n.obs_offset;
  norm["action_scale"] = n.action_scale;
  norm["action_offset"] = n.action_offset;
  norm["action_low"] = n.action_low;
  norm["action_high"] = n.action_high;
  d["normalization"] = norm;
  py::list inputs;
  for (const auto& in : i.inputs) {
    py::dict e;
    e["name"] = in.name;
    e["dtype"] = oat_edge::dtype_name(in.dtype);
    e["shape"] = in.shape;
    inputs.append(e);
  }
  d["inputs"] = inputs;
  return d;
}

// Owns the C++ policy. The core serializes calls with its own lock (fork-safe), so the GIL is
// simply released around every call.
class PyPolicy {
 public:
  PyPolicy(const std::string& path, const oat_edge::RuntimeOptions& opt) {
    py::gil_scoped_release nogil;  // loading graphs takes a while: let other threads run
    policy_ = std::make_unique<oat_edge::Policy>(path, opt);
  }
  const oat_edge::PolicyInfo& info() const { return policy_->info(); }
  void check(const oat_edge::ActOptions& o) const { policy_->check(o); }

  // obs: one array, or a dict {name: array} of named inputs.
  std::pair<py::array_t<float>, py::dict> act(const py::handle& obs, const oat_edge::ActOptions& o) {
    const auto& i = info();
    oat_edge::ActStats stats;
    return call(
        obs,
        [&](py::ssize_t rows) { return py::array_t<float>({rows, py::ssize_t(i.horizon), py::ssize_t(i.action_dim)}); },
        [&](auto&& in, py::array_t<float>& out) {
          policy_->act(in, {out.mutable_data(), size_t(out.size())}, o, &stats);
        },
        stats);
  }

  std::pair<py::array_t<int64_t>, py::dict> generate(const py::handle& obs, const oat_edge::ActOptions& o) {
    oat_edge::ActStats stats;
    return call(
        obs, [&](py::ssize_t rows) { return py::array_t<int64_t>({rows, py::ssize_t(info().num_tokens)}); },
        [&](auto&& in, py::array_t<int64_t>& ids) {
          policy_->generate(in, {ids.mutable_data(), size_t(ids.size())}, o, &stats);
        },
        stats);
  }

  py::array_t<float> detokenize(const py::handle& ids) {
    const auto v = view_of(ids, "ids");
    const auto& i = info();
    py::array_t<float> out({rows(v), py::ssize_t(i.horizon), py::ssize_t(i.action_dim)});
    {
      py::gil_scoped_release nogil;
      policy_->detokenize(v, {out.mutable_data(), size_t(out.size())});
    }
    return out;
  }

  py::array_t<int64_t> tokenize(const py::handle& actions) {
    const auto v = view_of(actions, "actions");
    py::array_t<int64_t> ids({rows(v), py::ssize_t(info().num_tokens)});
    {
      py::gil_scoped_release nogil;
      policy_->tokenize(v, {ids.mutable_data(), size_t(ids.size())});
    }
    return ids;
  }

  uint64_t step_runs() const { return policy_->step_runs(); }

 private:
  // Output rows for an input view: its leading dim when it is a plausible batch, else 0 (an empty
  // output the core never writes, since it refuses the input first).
  py::ssize_t rows(const oat_edge::TensorView& v) const {
    return v.rank >= 1 && v.shape[0] >= 1 && v.shape[0] <= info().batch_limit ? py::ssize_t(v.shape[0]) : 0;
  }
  // act()/generate() for one array or a dict of named arrays: the output gets the rows of the first
  // view (the core checks that every input has them), and the call runs without the GIL.
  template <typename Make, typename Run>
  auto call(const py::handle& obs, Make&& make, Run&& run, const oat_edge::ActStats& stats)
      -> std::pair<std::decay_t<decltype(make(py::ssize_t(0)))>, py::dict> {
    if (py::isinstance<py::dict>(obs)) {
      std::vector<std::string> names;
      const auto views = named_views_of(py::reinterpret_borrow<py::dict>(obs), names);
      auto out = make(views.empty() ? 0 : rows(views[0].view));
      {
        py::gil_scoped_release nogil;
        run(oat_edge::Span<const oat_edge::NamedTensorView>(views), out);
      }
      return std::make_pair(std::move(out), stats_dict(stats));
    }
    const auto v = view_of(obs, "obs");
    auto out = make(rows(v));
    {
      py::gil_scoped_release nogil;
      run(v, out);
    }
    return std::make_pair(std::move(out), stats_dict(stats));
  }
  std::unique_ptr<oat_edge::Policy> policy_;
};

// act(), generate() and check_options() take the same keyword-only options, each None (the
// default) unless given: one list, so an option is added in one place.
template <class Class, class F, class... Extra>
void def_with_options(Class& cls, const char* name, F&& f, const Extra&... extra) {
  cls.def(name, std::forward<F>(f), extra..., py::kw_only(), py::arg("max_tokens") = py::none(),
          py::arg("min_tokens") = py::none(), py::arg("temperature") = py::none(), py::arg("top_k") = py::none(),
          py::arg("seed") = py::none(), py::arg("latency_budget_ms") = py::none());
}

}  // namespace

void def_policy(py::module_& m) {
  using H = const py::object&;
  py::class_<PyPolicy> cls(m, "Policy");
  cls.def(py::init([](const std::string& path, const py::kwargs& kw) {
            return std::make_unique<PyPolicy>(path, runtime_options(kw));
          }),
          py::arg("path"),
          "Policy(path, *, ort_library, device, threads, allow_cpu_fallback, max_batch, batch_limit, "
          "spin_wait, optimized_model_dir, trt_cache_dir, trt_fp16, warmup): RuntimeOptions in policy.h");
  def_with_options(
      cls, "act",
      [](PyPolicy& p, H obs, H max_tokens, H min_tokens, H temperature, H top_k, H seed, H budget) {
        return p.act(obs, act_options(max_tokens, min_tokens, temperature, top_k, seed, budget));
      },
      "obs float32 [B, n_obs_steps, obs_dim] or {name: array [B, ...]} -> (actions float32 [B, H_a, D_a], stats dict)",
      py::arg("obs"));
  def_with_options(
      cls, "generate",
      [](PyPolicy& p, H obs, H max_tokens, H min_tokens, H temperature, H top_k, H seed, H budget) {
        return p.generate(obs, act_options(max_tokens, min_tokens, temperature, top_k, seed, budget));
      },
      "obs float32 [B, n_obs_steps, obs_dim] or {name: array [B, ...]} -> (ids int64 [B, K] (-1 past tokens_used), "
      "stats)",
      py::arg("obs"));
  def_with_options(
      cls, "check_options",
      [](const PyPolicy& p, H max_tokens, H min_tokens, H temperature, H top_k, H seed, H budget) {
        p.check(act_options(max_tokens, min_tokens, temperature, top_k, seed, budget));
      },
      "raises the InputError act() would raise for these options");
  cls.def("detokenize", &PyPolicy::detokenize, py::arg("ids"), "ids int64 [B, k] -> actions float32 [B, H_a, D_a]")
      .def("tokenize", &PyPolicy::tokenize, py::arg("actions"), "actions float32 [B, H_a, D_a] -> ids int64 [B, K]")
      .def_property_readonly("info", [](const PyPolicy& p) { return info_dict(p.info()); })
      .def_property_readonly("step_runs", &PyPolicy::step_runs);
}

}  // namespace oat_edge_py
