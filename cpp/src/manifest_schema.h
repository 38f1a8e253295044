// The bundle contract's field rules (python/oat_edge/bundle_schema.json, embedded at build time by
// cmake/OatEdgeSchema.cmake) interpreted exactly as python/oat_edge/manifest.py does: same rules,
// same messages. tests/export/manifest_cases.json is run against both.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace oat_edge::detail {

// The schema, parsed once from the embedded text.
const nlohmann::json& bundle_schema();

// Throws BundleError("invalid bundle manifest: <detail>. Re-export ...").
[[noreturn]] void manifest_fail(const std::string& detail);

// Manifest text -> JSON, within the schema's limits: size, nesting depth (checked while parsing, so
// hostile nesting never recurses), no duplicate keys, no NaN/Infinity. Throws BundleError.
nlohmann::json parse_manifest_json(const std::string& text);

// Every field rule of the schema against a parsed manifest. Throws BundleError naming the field,
// what was expected and what was given (integers exactly as written, not after conversion).
void check_manifest_fields(const nlohmann::json& manifest);

// Value at a dotted path of a manifest that passed check_manifest_fields (nullptr when absent).
const nlohmann::json* manifest_field(const nlohmann::json& manifest, const std::string& path);

// A graph's input or output names for a manifest whose named-input block (if any) was checked: the
// schema's table, or for a graph with `named_inputs` in a manifest that has that block, the spec's
// entry names in spec order.
std::vector<std::string> graph_io_names(const nlohmann::json& manifest, const std::string& graph,
                                        const std::string& side);

// The spec entries (name, dtype, shape, ...) that replace `graph`'s table inputs, or nullptr.
const nlohmann::json* named_inputs(const nlohmann::json& manifest, const std::string& graph);

}  // namespace oat_edge::detail
