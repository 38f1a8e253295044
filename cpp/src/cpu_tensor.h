// An OrtValue over a buffer we own (no copy): the workspace tensors bound to the graphs once per
// batch size. The buffer must outlive the value.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <cstddef>
#include <vector>

namespace oat_edge::detail {

template <typename T>
Ort::Value cpu_tensor(const Ort::MemoryInfo& mem, T* data, size_t count, std::vector<int64_t> shape) {
  return Ort::Value::CreateTensor<T>(mem, data, count, shape.data(), shape.size());
}

}  // namespace oat_edge::detail
