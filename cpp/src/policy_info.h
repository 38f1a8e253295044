// PolicyInfo from a parsed manifest: the typed view of a bundle that callers read instead of the
// manifest JSON. The runtime fields (provider, ORT, batch) are filled in by the Policy.
#pragma once

#include "manifest.h"
#include "oat_edge/policy.h"

namespace oat_edge::detail {

PolicyInfo make_policy_info(const Manifest& m, bool has_encoder);

}  // namespace oat_edge::detail
