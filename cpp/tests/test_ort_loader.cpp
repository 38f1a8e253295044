// ORT loading failures in a fresh process (nothing loaded yet): each must be a RuntimeLoadError /
// BundleError with a fix in its message, never a crash. argv[1] = the fake "too old" ORT library.
#include <filesystem>
#include <fstream>

#include "mini_test.h"
#include "oat_edge/policy.h"

using namespace oat_edge;
namespace fs = std::filesystem;

static std::string g_fake_old;
static fs::path g_dir;

static RuntimeOptions with_lib(const std::string& lib) {
  RuntimeOptions o;
  o.ort_library = lib;
  return o;
}

TEST(missing_bundle_is_a_bundle_error_before_loading) {
  CHECK_THROWS(BundleError, Policy("/nonexistent/bundle", with_lib("/nonexistent/lib.so")), "does not exist");
  fs::path empty = g_dir / "empty_dir";
  fs::create_directories(empty);
  CHECK_THROWS(BundleError, Policy(empty.string(), with_lib("/nonexistent/lib.so")), "has no model.onnx");
}

TEST(too_old_ort_names_both_versions) {
  CHECK_THROWS(RuntimeLoadError, Policy(g_dir.string(), with_lib(g_fake_old)), "ONNX Runtime 1.10.0 found at");
  CHECK_THROWS(RuntimeLoadError, Policy(g_dir.string(), with_lib(g_fake_old)), "needs >= 1.21 (C API 21)");
}

TEST(not_a_library_and_missing_library) {
  CHECK_THROWS(RuntimeLoadError, Policy(g_dir.string(), with_lib((g_dir / "model.onnx").string())), "tried:");
  CHECK_THROWS(RuntimeLoadError, Policy(g_dir.string(), with_lib("/nonexistent/libonnxruntime.so.1")),
               "OAT_EDGE_ORT_LIBRARY");
}

TEST(bad_options_are_input_errors) {
  RuntimeOptions o;
  o.device = "gpu0";
  CHECK_THROWS(InputError, Policy(g_dir.string(), o), "device: expected");
  o = {};
  o.max_batch = 0;
  CHECK_THROWS(InputError, Policy(g_dir.string(), o), "max_batch");
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  g_fake_old = argv[1];
  g_dir = fs::temp_directory_path() / "oat_edge_test_loader";
  fs::remove_all(g_dir);
  fs::create_directories(g_dir);
  std::ofstream(g_dir / "model.onnx") << "not a model";
  int rc = mini_test::run_all();
  fs::remove_all(g_dir);
  return rc;
}
