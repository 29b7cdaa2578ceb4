// libFuzzer target: the admin API body of PUT /api/v1/workspaces/{id}/entities/Person/settings (daemon/api through
// Api::handle, on a real temporary store; invariants in api_fuzz.h).
#include "api_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    fuzz::ApiHarness &h = fuzz::harness();
    h.body("PUT", h.workspaces() + "/entities/Person/settings", data, size);
    return 0;
}
