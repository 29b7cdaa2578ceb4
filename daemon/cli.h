// apikeyd's command line:
//   apikeyd --config FILE          run the daemon
//   apikeyd --config FILE --check  validate the configuration and exit
//   apikeyd hash-token             read an admin token on stdin, print its SHA-256 (hex)
//   apikeyd --help
#pragma once

#include <iosfwd>

namespace apikeyd {

inline constexpr int kExitUsage = 2;  // usage and configuration errors

int run_cli(int argc, char **argv);

// hash-token on the given streams (unit-testable). Returns the exit code.
int hash_token(std::istream &in, std::ostream &out, std::ostream &err);

}  // namespace apikeyd
