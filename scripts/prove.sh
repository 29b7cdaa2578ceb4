#!/usr/bin/env bash
# prove, for make test and make test-sanitize: its arguments are prove's. CI keeps only
# the tail of a run's output, where prove's summary says which tests failed but not why
# (their diagnostics scrolled past with the rest). So after a failure
# scripts/failure_digest.pl prints the failed tests' diagnostics once more, cut short,
# and prove's summary again: the output still ends with the summary CI reads. The whole
# output is kept in $PROVE_LOG (default build/prove.log).
set -u
log=${PROVE_LOG:-build/prove.log}
mkdir -p "$(dirname "$log")"
prove "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
[ "$status" -eq 0 ] || perl "$(dirname "$0")/failure_digest.pl" "$log"
exit "$status"
