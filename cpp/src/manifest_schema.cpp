// Interpreter of the bundle schema's field rules; the Python twin is python/oat_edge/manifest.py.
#include "manifest_schema.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "oat_edge/policy.h"

namespace oat_edge::detail {

extern const char kBundleSchemaJson[];

using nlohmann::json;

void manifest_fail(const std::string& detail) {
  throw BundleError("invalid bundle manifest: " + detail + ". Re-export the bundle with oat_edge's exporter.");
}

const json& bundle_schema() {
  static const json schema = json::parse(kBundleSchemaJson);
  return schema;
}

namespace {

std::string show(const json& v) {
  std::string s = v.dump();
  return s.size() > 80 ? s.substr(0, 80) : s;
}

std::string clip(const std::string& s) { return s.size() > 80 ? s.substr(0, 80) : s; }

std::string join(const json& names) {
  std::string s;
  for (const auto& x : names) s += (s.empty() ? "" : ", ") + x.get<std::string>();
  return s;
}

// Limits checked by a SAX pass before anything is built: depth, duplicate keys, syntax.
struct LimitsSax : json::json_sax_t {
  size_t max_depth;
  std::vector<std::set<std::string>> keys;  // one per open container (empty for arrays)
  std::string error;
  explicit LimitsSax(size_t depth) : max_depth(depth) {}
  bool open() {
    if (keys.size() >= max_depth) {
      error = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
      return false;
    }
    keys.emplace_back();
    return true;
  }
  bool close() {
    keys.pop_back();
    return true;
  }
  bool start_object(std::size_t) override { return open(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    if (keys.back().insert(k).second) return true;
    error = "duplicate key '" + clip(k) + "' in the manifest JSON";
    return false;
  }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = std::string("not valid JSON (") + e.what() + ")";
    return false;
  }
};

bool is_int(const json& v) { return v.is_number_integer(); }  // bool is its own JSON type

// An integer JSON value within [lo, hi], whether stored as int64 or uint64.
bool int_in(const json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u <= uint64_t(INT64_MAX) && int64_t(u) >= lo && int64_t(u) <= hi;
  }
  const int64_t x = v.get<int64_t>();
  return x >= lo && x <= hi;
}

struct Bound {
  int64_t value;
  std::string name;
};

// A schema number, or {"field": path, "plus": n} / {"product_of": path}, read from a manifest
// whose referenced fields were already checked (the schema orders them first).
Bound bound(const json& d, const json& spec) {
  if (!spec.is_object()) return {spec.get<int64_t>(), spec.dump()};
  if (spec.contains("product_of")) {
    const std::string p = spec["product_of"];
    int64_t prod = 1;
    for (const auto& x : *manifest_field(d, p)) prod *= x.get<int64_t>();
    return {prod, "prod(" + p + ")"};
  }
  const std::string p = spec["field"];
  const int64_t plus = spec["plus"];
  return {manifest_field(d, p)->get<int64_t>() + plus, plus ? p + " + " + std::to_string(plus) : p};
}

void check_int(const json& d, const std::string& path, const json& v, const json& rule) {
  if (!is_int(v)) manifest_fail("field '" + path + "' expected an integer, got " + show(v));
  const Bound lo = bound(d, rule["min"]), hi = bound(d, rule["max"]);
  if (!int_in(v, lo.value, hi.value))
    manifest_fail("field '" + path + "' expected an integer in [" + std::to_string(lo.value) + ", " +
                  std::to_string(hi.value) + "]" + (rule["max"].is_object() ? " (max = " + hi.name + ")" : "") +
                  ", got " + v.dump());
  if (rule.contains("equals")) {
    const Bound want = bound(d, rule["equals"]);
    if (v.get<int64_t>() != want.value)
      manifest_fail("field '" + path + "' expected " + want.name + " = " + std::to_string(want.value) + ", got " +
                    v.dump());
  }
}

// double -> float32 as IEEE round-to-nearest does, without the undefined behaviour of casting an
// out-of-range double: at or beyond FLT_MAX + half an ulp it is infinity.
float to_f32(double x) {
  if (std::isnan(x)) return NAN;
  if (std::fabs(x) >= 0x1.ffffffp127) return x > 0 ? INFINITY : -INFINITY;
  return static_cast<float>(x);
}

// A number the runtime uses as float32: finite there, and not silently flushed to 0.
float check_f32(const std::string& path, const json& x, bool nonzero) {
  if (!x.is_number()) manifest_fail("field '" + path + "' expected a number, got " + show(x));
  const double v = x.get<double>();
  const float f = to_f32(v);
  if (!std::isfinite(f)) manifest_fail("field '" + path + "' expected a finite float32 number, got " + show(x));
  if (v != 0 && std::fabs(f) < FLT_MIN)
    manifest_fail("field '" + path + "' underflows float32 (got " + show(x) +
                  ", which float32 rounds to 0 or a subnormal)");
  if (nonzero && f == 0) manifest_fail("field '" + path + "' expected a non-zero number, got " + show(x));
  return f;
}

void check_list(const std::string& path, const json& v, const char* what, size_t lo_len, size_t hi_len) {
  if (!v.is_array()) manifest_fail("field '" + path + "' expected a list of " + what + ", got " + show(v));
  if (v.size() < lo_len || v.size() > hi_len)
    manifest_fail("field '" + path + "' expected " + std::to_string(lo_len) + ".." + std::to_string(hi_len) +
                  " entries, got " + std::to_string(v.size()));
}

void check_string(const std::string& path, const json& v, const json& rule, bool file_name) {
  if (!v.is_string()) manifest_fail("field '" + path + "' expected a string, got " + show(v));
  const std::string s = v.get<std::string>();
  if (rule.contains("equals") && s != rule["equals"].get<std::string>())
    manifest_fail("field '" + path + "' expected '" + rule["equals"].get<std::string>() + "', got '" + clip(s) + "'");
  if (rule.contains("one_of")) {
    const auto& opts = rule["one_of"];
    if (std::find(opts.begin(), opts.end(), v) == opts.end())
      manifest_fail("field '" + path + "' expected one of [" + join(opts) + "], got '" + clip(s) + "'");
  }
  if (file_name &&
      (s.empty() || s == "." || s == ".." || s.find_first_of(std::string("/\\\0", 3)) != std::string::npos))
    manifest_fail("field '" + path + "' expected a plain file name next to " +
                  bundle_schema()["entry_file"].get<std::string>() + ", got '" + clip(s) + "'");
}

void check_int_list(const std::string& path, const json& v, const json& rule) {
  check_list(path, v, "integers", rule["min_len"], rule["max_len"]);
  const int64_t lo = rule["min"], hi = rule["max"], max_prod = rule["product_max"];
  int64_t prod = 1;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = path + "[" + std::to_string(i) + "]";
    if (!is_int(v[i]) || !int_in(v[i], lo, hi))
      manifest_fail("field '" + at + "' expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "], got " + show(v[i]));
    prod *= v[i].get<int64_t>();  // <= max_prod * hi: no overflow
    if (prod > max_prod)
      manifest_fail("field '" + path + "' expected a product of at most " + std::to_string(max_prod) + ", got " +
                    std::to_string(prod) + " (entries 0.." + std::to_string(i) + ")");
  }
}

void check_f32_list(const json& d, const std::string& path, const json& v, const json& rule) {
  const std::string len_path = rule["length"];
  const int64_t n = manifest_field(d, len_path)->get<int64_t>();
  if (!v.is_array()) manifest_fail("field '" + path + "' expected a list of numbers, got " + show(v));
  if (int64_t(v.size()) != n)
    manifest_fail("field '" + path + "' expected length " + std::to_string(n) + " (= " + len_path + "), got " +
                  std::to_string(v.size()));
  const bool nonzero = rule.value("nonzero", false);
  std::vector<float> vals;
  for (size_t i = 0; i < v.size(); ++i) vals.push_back(check_f32(path + "[" + std::to_string(i) + "]", v[i], nonzero));
  if (rule.contains("unnormalized_by")) {  // x = (x_norm - offset) / scale must stay finite for x_norm in [-1, 1]
    const std::string other = rule["unnormalized_by"];
    const json& scales = *manifest_field(d, other);
    for (size_t i = 0; i < vals.size(); ++i) {
      const float sc = to_f32(scales[i].get<double>());
      if (!std::isfinite((-1.0f - vals[i]) / sc) || !std::isfinite((1.0f - vals[i]) / sc))
        manifest_fail("field '" + path + "[" + std::to_string(i) + "]' expected (x - offset) / " + other + "[" +
                      std::to_string(i) + "] finite in float32 for x in [-1, 1], got offset " + show(v[i]) +
                      " with scale " + show(scales[i]));
    }
  }
  if (rule.contains("not_above")) {
    const std::string other = rule["not_above"];
    const json& hi = *manifest_field(d, other);
    for (size_t i = 0; i < vals.size(); ++i)
      if (vals[i] > to_f32(hi[i].get<double>()))
        manifest_fail("field '" + path + "[" + std::to_string(i) + "]' expected <= " + other + "[" + std::to_string(i) +
                      "] = " + show(hi[i]) + ", got " + show(v[i]));
  }
}

void check_string_list(const std::string& path, const json& v, const json& rule) {
  check_list(path, v, "strings", 0, rule["max_len"]);
  std::set<std::string> seen;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string())
      manifest_fail("field '" + path + "[" + std::to_string(i) + "]' expected a string, got " + show(v[i]));
    if (rule.value("unique", false) && !seen.insert(v[i].get<std::string>()).second)
      manifest_fail("field '" + path + "' expected unique entries, got '" + clip(v[i].get<std::string>()) + "' twice");
  }
}

void check_io_names(const json& d, const std::string& path, const json& v, const json& rule) {
  const std::vector<std::string> want = graph_io_names(d, rule["graph"], rule["side"]);
  bool ok = v.is_array() && std::all_of(v.begin(), v.end(), [](const json& x) { return x.is_string(); });
  if (ok) {
    std::vector<std::string> got(v.begin(), v.end()), w = want;
    std::sort(got.begin(), got.end());
    std::sort(w.begin(), w.end());
    ok = got == w;
  }
  if (!ok) {
    std::string names;
    for (const auto& x : want) names += (names.empty() ? "" : ", ") + x;
    manifest_fail("field '" + path + "' expected the names [" + names + "] in any order, got " + show(v));
  }
}

void check_keys(const std::string& path, const json& v, std::initializer_list<const char*> required,
                std::initializer_list<const char*> optional = {}) {
  if (!v.is_object()) manifest_fail("field '" + path + "' expected an object, got " + show(v));
  for (const char* k : required)
    if (!v.contains(k)) manifest_fail("missing field '" + path + "." + k + "'");
  for (const auto& [k, _] : v.items()) {
    auto is = [&k = k](const char* x) { return k == x; };
    if (std::none_of(required.begin(), required.end(), is) && std::none_of(optional.begin(), optional.end(), is)) {
      std::string names;
      for (auto l : {required, optional})
        for (const char* x : l) names += (names.empty() ? "" : ", ") + std::string(x);
      manifest_fail("field '" + path + "' has the unknown key '" + clip(k) + "' (expected " + names + ")");
    }
  }
}

void check_shape(const std::string& path, const json& v, size_t rank, int64_t lo, int64_t hi, const std::string& what) {
  bool ok = v.is_array() && v.size() == rank;
  for (size_t i = 0; ok && i < rank; ++i) ok = is_int(v[i]) && int_in(v[i], lo, hi);
  if (!ok)
    manifest_fail("field '" + path + "' expected " + what + " (" + std::to_string(rank) + " integers in [" +
                  std::to_string(lo) + ", " + std::to_string(hi) + "]), got " + show(v));
}

void check_f32_entries(const std::string& path, const json& v, size_t n, const char* length_name, bool nonzero,
                       bool positive) {
  if (!v.is_array()) manifest_fail("field '" + path + "' expected a list of numbers, got " + show(v));
  if (v.size() != n)
    manifest_fail("field '" + path + "' expected length " + std::to_string(n) + " (= " + length_name + "), got " +
                  std::to_string(v.size()));
  for (size_t i = 0; i < n; ++i) {
    const std::string at = path + "[" + std::to_string(i) + "]";
    if (!(check_f32(at, v[i], nonzero) > 0) && positive)
      manifest_fail("field '" + at + "' expected a number > 0, got " + show(v[i]));
  }
}

void check_state_input(const std::string& path, const json& item, const json& rule) {
  check_keys(path, item, {"name", "dtype", "shape", "normalize"});
  const std::string dtype = rule["dtype"];
  if (item["dtype"] != dtype)
    manifest_fail("field '" + path + ".dtype' expected '" + dtype + "' for " + rule["name"].get<std::string>() +
                  ", got " + show(item["dtype"]));
  check_shape(path + ".shape", item["shape"], 1, 1, rule["max_dim"].get<int64_t>(), "[state_dim]");
  const size_t n = item["shape"][0].get<size_t>();
  const json& norm = item["normalize"];
  check_keys(path + ".normalize", norm, {"scale", "offset"});
  check_f32_entries(path + ".normalize.scale", norm["scale"], n, "shape[0]", true, false);
  check_f32_entries(path + ".normalize.offset", norm["offset"], n, "shape[0]", false, false);
}

void check_camera_input(const std::string& path, const json& item, const json& rule) {
  check_keys(path, item, {"name", "dtype", "shape", "crop", "normalize"});
  const std::string dtype = rule["dtype"];
  if (item["dtype"] != dtype)
    manifest_fail("field '" + path + ".dtype' expected '" + dtype +
                  "' for a camera (raw frames: the graph scales them), got " + show(item["dtype"]));
  const json& shape = item["shape"];
  const int64_t c = rule["channels"];
  const std::string hwc = "[height, width, " + std::to_string(c) + "]";
  if (shape.is_array() && shape.size() == 3 && shape[0] == c && shape[2] != c)
    manifest_fail("field '" + path + ".shape' expected " + hwc + " (channels last), got " + show(shape) +
                  " (channels first)");
  check_shape(path + ".shape", shape, 3, 1, rule["max_side"].get<int64_t>(), hwc);
  if (shape[2] != c)
    manifest_fail("field '" + path + ".shape' expected " + hwc + " (channels last), got " + show(shape));
  const json& crop = item["crop"];
  const bool crop_ok = crop.is_array() && crop.size() == 2 && is_int(crop[0]) && is_int(crop[1]) &&
                       int_in(crop[0], 1, shape[0].get<int64_t>()) && int_in(crop[1], 1, shape[1].get<int64_t>());
  if (!crop_ok)
    manifest_fail("field '" + path + ".crop' expected [height, width] within the frame [" + shape[0].dump() + ", " +
                  shape[1].dump() + "], got " + show(crop));
  const json& norm = item["normalize"];
  check_keys(path + ".normalize", norm, {"mean", "std"});
  check_f32_entries(path + ".normalize.mean", norm["mean"], size_t(c), "channels", false, false);
  check_f32_entries(path + ".normalize.std", norm["std"], size_t(c), "channels", false, true);
}

bool camera_name_ok(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
  });
}

// The named-input block (= ObservationSpec.to_dict()): at most one state, cameras channels last.
void check_observation_spec(const json& d, const std::string& path, const json& v, const json& rule) {
  check_keys(path, v, {"n_obs_steps", "inputs"});
  check_int(d, path + ".n_obs_steps", v["n_obs_steps"], rule["n_obs_steps"]);
  const json& inputs = v["inputs"];
  check_list(path + ".inputs", inputs, "inputs", 1, rule["max_inputs"].get<size_t>());
  const json &state = rule["state"], &cam = rule["camera"];
  const std::string state_name = state["name"], prefix = cam["prefix"];
  std::set<std::string> seen;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string at = path + ".inputs[" + std::to_string(i) + "]";
    const json& item = inputs[i];
    if (!item.is_object()) manifest_fail("field '" + at + "' expected an object, got " + show(item));
    if (!item.contains("name")) manifest_fail("missing field '" + at + ".name'");
    const json& name = item["name"];
    const std::string s = name.is_string() ? name.get<std::string>() : std::string();
    if (name.is_string() && s == state_name) {
      check_state_input(at, item, state);
    } else if (name.is_string() && s.rfind(prefix, 0) == 0 && camera_name_ok(s.substr(prefix.size()))) {
      check_camera_input(at, item, cam);
    } else {
      manifest_fail("field '" + at + ".name' expected '" + state_name + "' or '" + prefix +
                    "<camera>' (camera: letters, digits, '_' or '-'), got " + show(name));
    }
    if (!seen.insert(s).second)
      manifest_fail("field '" + path + ".inputs' expected unique names, got '" + clip(s) + "' twice");
  }
}

// (value, empty) for a present field, else (nullptr, the first missing part of `path`).
const json* lookup(const json& d, const std::string& path, std::string* missing) {
  const json* cur = &d;
  std::string parent;
  size_t start = 0;
  for (;;) {
    const size_t dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) manifest_fail("field '" + parent + "' expected an object, got " + show(*cur));
    const std::string here = parent.empty() ? key : parent + "." + key;
    auto it = cur->find(key);
    if (it == cur->end()) {
      if (missing) *missing = here;
      return nullptr;
    }
    cur = &*it;
    parent = here;
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

void check_rule(const json& d, const json& rule) {
  const std::string path = rule["path"], type = rule["type"];
  std::string missing;
  const json* found = lookup(d, path, &missing);
  if (rule.contains("only_without") && lookup(d, rule["only_without"], nullptr)) {
    // the other block is present: this field must not be
    if (found)
      manifest_fail("field '" + path + "' must be absent when '" + rule["only_without"].get<std::string>() +
                    "' is present (that bundle's prefill graph normalizes its inputs itself)");
    return;
  }
  if (!found) {
    if (rule.value("optional", false)) return;
    if (rule.contains("required_if") && !lookup(d, rule["required_if"], nullptr)) return;
    manifest_fail("missing field '" + missing + "'");
  }
  const json& v = *found;
  if (type == "version") {
    if (!is_int(v)) manifest_fail("field '" + path + "' expected an integer, got " + show(v));
    const json& want = bundle_schema()["format_version"];
    if (v != want)
      throw BundleError("bundle format_version " + v.dump() + ", this runtime reads " + want.dump() +
                        ": re-export the bundle with the oat_edge exporter that matches this runtime, or install an "
                        "oat_edge runtime that reads version " +
                        v.dump());
  } else if (type == "string" || type == "file_name") {
    check_string(path, v, rule, type == "file_name");
  } else if (type == "int") {
    check_int(d, path, v, rule);
  } else if (type == "int_list") {
    check_int_list(path, v, rule);
  } else if (type == "float32") {
    if (check_f32(path, v, false) < rule["min"].get<double>())
      manifest_fail("field '" + path + "' expected a number >= " + rule["min"].dump() + ", got " + show(v));
  } else if (type == "float32_list") {
    check_f32_list(d, path, v, rule);
  } else if (type == "string_list") {
    check_string_list(path, v, rule);
  } else if (type == "io_names") {
    check_io_names(d, path, v, rule);
  } else if (type == "observation_spec") {
    check_observation_spec(d, path, v, rule);
  } else {
    throw std::logic_error("bundle_schema.json: unknown type '" + type + "' for " + path);
  }
}

}  // namespace

const json* manifest_field(const json& d, const std::string& path) { return lookup(d, path, nullptr); }

const json* named_inputs(const json& d, const std::string& graph) {
  const json& g = bundle_schema()["graphs"][graph];
  if (!g.contains("named_inputs")) return nullptr;
  const json* block = lookup(d, g["named_inputs"], nullptr);
  return block ? &(*block)["inputs"] : nullptr;
}

std::vector<std::string> graph_io_names(const json& d, const std::string& graph, const std::string& side) {
  std::vector<std::string> names;
  const json* named = side == "inputs" ? named_inputs(d, graph) : nullptr;
  for (const auto& t : named ? *named : bundle_schema()["graphs"][graph][side])
    names.push_back(named ? t["name"] : t[0]);
  return names;
}

json parse_manifest_json(const std::string& text) {
  const json& limits = bundle_schema()["limits"];
  const size_t max_bytes = limits["max_json_bytes"];
  if (text.size() > max_bytes)
    manifest_fail("manifest JSON is " + std::to_string(text.size()) + " bytes, more than the " +
                  std::to_string(max_bytes) + " allowed");
  if (text.rfind("\xEF\xBB\xBF", 0) == 0)  // nlohmann skips it, Python's json refuses it: refuse it everywhere
    manifest_fail("not valid JSON (it starts with a byte order mark)");
  LimitsSax sax(limits["max_depth"].get<size_t>());
  if (!json::sax_parse(text, &sax)) manifest_fail(sax.error);
  return json::parse(text);
}

void check_manifest_fields(const json& d) {
  if (!d.is_object()) manifest_fail("top level expected a JSON object, got " + show(d));
  for (const auto& rule : bundle_schema()["fields"]) check_rule(d, rule);
}

}  // namespace oat_edge::detail
