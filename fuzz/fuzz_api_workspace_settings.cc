// libFuzzer target: the admin API body of PUT /api/v1/workspaces/{id}/settings (daemon/api through
// Api::handle, on a real temporary store; invariants in api_fuzz.h).
#include "api_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    fuzz::ApiHarness &h = fuzz::harness();
    h.body("PUT", h.workspaces() + "/settings", data, size);
    return 0;
}
