// libFuzzer target: the admin API body of POST /api/v1/workspaces/{id}/api-keys (daemon/api through
// Api::handle, on a real temporary store; invariants in api_fuzz.h).
#include "api_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    fuzz::ApiHarness &h = fuzz::harness();
    h.body("POST", h.workspaces() + "/api-keys", data, size);
    return 0;
}
