// A loaded bundle (docs/DESIGN.md §5-6): where it is, its manifest, and one ORT session per graph,
// each checked against the manifest (names, element types, static dims) before anything runs.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <memory>
#include <string>
#include <vector>

#include "manifest.h"
#include "oat_edge/policy.h"
#include "sessions.h"

namespace oat_edge::detail {

struct BundleLocation {
  std::string dir;    // absolute bundle directory
  std::string entry;  // entry file name inside dir (model.onnx)
};

// From a bundle directory or a path to its entry file. Throws BundleError if neither exists.
BundleLocation locate_bundle(const std::string& path);

// Input/output names of one graph in the contract's order (token, step, ...; whatever order the
// manifest or the graph lists them in), as the const char* arrays ORT's Run() wants; the pointers
// point into the strings held here.
struct GraphNames {
  std::vector<std::string> in, out;
  std::vector<const char*> in_c, out_c;
  explicit GraphNames(const GraphIo& io = {});
  // A copy would keep pointers into the source's strings; a move keeps the string objects in place.
  GraphNames(const GraphNames&) = delete;
  GraphNames& operator=(const GraphNames&) = delete;
  GraphNames(GraphNames&&) = default;
  GraphNames& operator=(GraphNames&&) = default;
};

struct Graph {
  std::unique_ptr<Ort::Session> session;  // null only for the optional encoder
  GraphNames names;
  explicit operator bool() const { return bool(session); }
};

// Sessions for every graph of a located bundle. ORT must already be loaded (load_ort).
struct Bundle {
  Bundle(const BundleLocation& where, const RuntimeOptions& opt);

  BundleLocation where;
  std::unique_ptr<SessionFactory> factory;
  Manifest m;
  Graph step, prefill, decoder, encoder;
  int static_batch = 0;  // > 0: the graphs were exported with this fixed batch dimension
};

}  // namespace oat_edge::detail
