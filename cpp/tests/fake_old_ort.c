/* A stand-in for an ONNX Runtime that is too old: OrtGetApiBase exists, GetApi(21) returns NULL
 * (what a real ORT < 1.21 does for an API version it does not know). Used by test_ort_loader. */
#include <stddef.h>
#include <stdint.h>

typedef struct FakeApiBase {
  const void* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)(void);
} FakeApiBase;

static const void* get_api(uint32_t version) {
  (void)version;
  return NULL;
}
static const char* version_string(void) { return "1.10.0"; }
static const FakeApiBase kBase = {get_api, version_string};

const FakeApiBase* OrtGetApiBase(void) { return &kBase; }
