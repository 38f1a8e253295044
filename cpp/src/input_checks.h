// Validation of call arguments at the API boundary, in one place for every caller (C++ and, through
// the bindings, Python): each bad argument becomes an InputError that names the argument, says what
// was expected and what was given, and what to do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

#include "oat_edge/policy.h"

namespace oat_edge::detail {

struct Manifest;

// ActOptions with every default filled in and every range checked.
struct ResolvedAct {
  int max_tokens;                // 1..K
  int min_tokens;                // 1..max_tokens
  double temperature;            // finite, >= 0
  int top_k;                     // 0..codebook_size
  std::optional<uint64_t> seed;  // unset: the caller draws one
  double budget_ms;              // > 0; 0 = no budget
};

// Checks every option against the bundle; unset options take the bundle's defaults.
ResolvedAct resolve_act(const ActOptions& opt, const Manifest& m);

// lo <= v <= hi, else InputError "name: expected lo..hi (what), got v". Returns v.
int check_range(const char* name, int64_t v, int64_t lo, int64_t hi, const char* what);

// Range checks of the constructor's options (before anything is loaded).
void check_runtime_options(const RuntimeOptions& o);

// The shape a TensorView argument must have: `dims` with dims[0] the batch, -1 = any length (the
// caller checks the ones that matter).
// Checks data, dtype, rank and dims, and 1 <= batch <= batch_limit (and == fixed_batch when that is
// > 0). Returns the batch.
int check_view(const TensorView& v, const char* name, DType dtype, std::initializer_list<int64_t> dims, int batch_limit,
               int fixed_batch);
// The same for one named input: `want` is the input's per-row shape (the batch is prepended). A
// uint8 input also says what a float image or a channels-first frame is.
int check_input_view(const TensorView& v, const InputInfo& want, int batch_limit, int fixed_batch);

// One act()/generate() call's named inputs against the bundle's (PolicyInfo::inputs): each expected
// name given exactly once and no other, each view checked by check_input_view, one batch for all,
// float inputs finite. `views` (resized to expected.size(), no heap once sized) gets the views in
// the expected order. Returns the batch.
int check_named_inputs(Span<const NamedTensorView> given, const std::vector<InputInfo>& expected, int batch_limit,
                       int fixed_batch, std::vector<const TensorView*>& views);

// The message for a single-array call on a bundle whose inputs must be given by name.
[[noreturn]] void throw_needs_named_inputs(const std::vector<InputInfo>& expected);
// An output buffer must hold exactly `want` elements.
void check_span(const void* data, size_t size, size_t want, const char* name, const char* shape);

// First NaN/Inf in x (shape dims, row-major) → InputError naming its index. No heap on success.
void check_finite(const float* x, std::initializer_list<size_t> dims, const char* what);
// ids [batch, k] in [0, codebook_size)
void check_ids(const int64_t* ids, int batch, int k, int64_t codebook_size);

}  // namespace oat_edge::detail
