# make bench (issue 5's one command for its figures), run small: bench/run.sh on a
# 20,000-key snapshot with one 1 s pair per scenario goes through every step - the
# decision microbenchmark; wrk against bare nginx and nginx + module with 1, 2 and 2p
# (pinned) workers and 1s (one worker and wrk on one CPU), valid, unknown and
# rate-limited keys; start time; memory; revokes into the snapshot; and through a real
# apikeyd the bulk import, key creates and revokes to the first 401 in nginx. Checked:
# it finishes, and its report has every table and row with the answers each scenario
# must get. Not the figures: those mean something only from a full run
# (docs/BENCHMARKS.md).
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);
use ApiKeyTest;

# Only the regular build: bench/run.sh measures build/, not a sanitizer build.
plan skip_all => 'make bench measures build/ only' if ($ENV{APIKEY_BUILD} // 'build') ne 'build';
for my $bin (qw(gen_snapshot decision_bench revoke_probe control_probe)) {
    plan skip_all => "build/bench/$bin is missing (make bench-bins)"
        unless -x "$ApiKeyTest::REPO/build/bench/$bin";
}
plan skip_all => 'wrk is not installed (make deps)' if system('command -v wrk >/dev/null') != 0;

my $out = tempdir('apikey-bench-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
local %ENV = (%ENV,
    BENCH_KEYS => 20000, BENCH_SAMPLE => 2000, BENCH_PAIRS => 1, BENCH_DURATION => 1,
    BENCH_RATE_LIMIT => '100000/1m',   # 2,000 keys at ~100,000 requests a second
    BENCH_WARMUPS => 1, BENCH_C1_PAIRS => 1, BENCH_START_REPS => 1, BENCH_MICRO_REPS => 1,
    BENCH_MICRO_MIN_TIME => 0.02, BENCH_REVOKES => 5, BENCH_CREATES_PER_CLIENT => 5,
    BENCH_CP_KEYS => 1000, BENCH_IMPORT_BATCH => 500, BENCH_OUT => $out);
alarm 300;
my $log = `bash '$ApiKeyTest::REPO/bench/run.sh' 2>&1`;
is $?, 0, 'bench/run.sh finished' or diag substr($log, -3000);
alarm 0;

ok -s "$out/last-raw.txt", 'the raw figures are written where BENCH_OUT says';
my $report = -s "$out/last-report.md" ? ApiKeyTest::_slurp("$out/last-report.md") : '';

# wrk rows: scenario | workers | pairs | ... | module non-2xx (the last column)
my %row;
for (split /\n/, $report) {
    my @c = map { s/^\s+|\s+$//gr } split /\|/;
    $row{"$c[1]/$c[2]"} = \@c if @c > 11 && $c[2] =~ /^\d+[ps]?$/;
}
for my $k ('valid keys/1', 'valid keys/2', 'valid keys/2p', 'valid keys/1s',
           'valid keys, 1 connection/1',
           'valid keys, rate limiting + usage reports on/1',
           'valid keys, rate limiting + usage reports on/2') {
    ok $row{$k}, "wrk row: $k" and is $row{$k}[-1], 0, "... every module answer a 2xx";
}
for my $k ('unknown keys (401)/1', 'unknown keys (401)/2') {
    ok $row{$k} && $row{$k}[-1] > 0, "wrk row: $k, the module answers them 401";
}
ok !$row{'unknown keys (401)/2p'}, 'the pinned setting runs valid keys only';
ok !$row{'unknown keys (401)/1s'}, 'so does the shared-CPU setting';

like $report, qr/^\| authenticate\/valid \| \d+ ns \|/m, 'the decision microbenchmark';
like $report, qr/^\| module \| 1 \| [\d.]+ ms \|/m, 'nginx start time with the snapshot';
like $report, qr/^\| module \| 2p \| \d+, \d+ \|/m, 'memory of both pinned workers';
like $report, qr/^\| 5 \| \d+ µs \/ \d+ µs \/ \d+ µs \| \d+ µs/m, 'revokes into the snapshot, to a 401';
like $report, qr/^\| 1000 \| 2 \| [\d.]+ \| \d+ \|/m, 'the bulk import through apikeyd, in 2 requests';
like $report, qr/^\| 8 \| 40 \| \d+ \|/m, 'key creates through apikeyd, 8 clients';
like $report, qr/^\| 5 \| \d+ µs \/ \d+ µs \| \d+ µs \/ \d+ µs \/ \d+ µs \| 1 \|/m,
    "revokes through apikeyd: each one's first request after the 200 is refused";
like $report, qr/^\| throughput module\/bare, valid keys, 2 worker\(s\) \(median ratio\) \| ≥ 0\.95 \| [\d.]+ \|/m,
    'the target table';
like $report, qr/^\| throughput module\/bare, valid keys, 1 worker and wrk on one CPU \(1s; [^|]*\| ≥ 0\.95 \| [\d.]+ \|/m,
    '... with the shared-CPU figure beside it';

done_testing;
