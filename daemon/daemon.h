// Runs apikeyd: opens the store, brings the snapshot up to date (before the port opens,
// so "accepting connections" implies "snapshot published"), then serves the admin API
// until SIGINT/SIGTERM.
#pragma once

#include "config.h"

namespace apikeyd {

// Returns the process exit code: 0 after a signal-initiated shutdown, 1 when the store,
// snapshot or listening socket cannot be set up. Throws ConfigError for path problems
// (the caller exits 2).
int run_daemon(const Config &config);

}  // namespace apikeyd
