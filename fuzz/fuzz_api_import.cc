// libFuzzer target: the NDJSON body of POST /api/v1/workspaces/{id}/api-keys/import
// (daemon/key_import through Api::handle, on a real temporary store; invariants in
// api_fuzz.h). Accepted batches stay in the store, so later inputs that repeat a hash
// take the conflict path.
#include "api_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    fuzz::ApiHarness &h = fuzz::harness();
    h.body("POST", h.workspaces() + "/api-keys/import", data, size);
    return 0;
}
