#include "response.h"

#include <nlohmann/json.hpp>

namespace apikeyd {

Response error_response(unsigned status, std::string_view code, std::string_view message) {
    nlohmann::ordered_json body;
    body["error"]["code"] = code;
    body["error"]["message"] = message;
    Response r;
    r.status = status;
    r.body = body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"apikeyd\"");
    return r;
}

}  // namespace apikeyd
