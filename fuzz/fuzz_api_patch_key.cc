// libFuzzer target: the admin API body of PATCH /api/v1/workspaces/{id}/api-keys/{keyId} (daemon/api through
// Api::handle, on a real temporary store; invariants in api_fuzz.h).
#include "api_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    fuzz::ApiHarness &h = fuzz::harness();
    h.body("PATCH", h.key(), data, size);
    return 0;
}
