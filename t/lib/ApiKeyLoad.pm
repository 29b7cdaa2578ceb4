package ApiKeyLoad;

# Runs tools/loadclient (t/tools/loadclient.cc) of the harness's build dir (build/, or
# APIKEY_BUILD under make test-sanitize) against an ApiKeyTest's nginx, in the
# background, and parses what it reports. Used by the load tests (t/30, t/32-34).
#
#   my $t = ApiKeyLoad::new_test(1000, timeout => 150);   # sized for 1,000 connections
#   my $keys = ApiKeyLoad::standard_keys($t, $ws->{id});
#   my @mix = ApiKeyLoad::standard_mix($t, $path, %$keys);  # or valid => [...], ...
#   ok ApiKeyLoad::published($t, $path, $keys), 'keys published';
#   my $run = ApiKeyLoad::start($t, connections => 1000, duration => 30, mix => \@mix,
#                               rate => 0);
#   ... (operations while it runs)
#   my $res = ApiKeyLoad::finish($run);   # waits (bounded), parses
#   $res->{total}{sent}, $res->{class}{valid}{ok}, $res->{rc}, $res->{stderr}
#   ApiKeyLoad::check_answers($res, 'label');   # 4 tests: exit status, transport
#                                               # errors, mismatches, answered = sent
#   is ApiKeyLoad::alerts($t), '', 'nginx logged no alert';
#
# TEST_APIKEY_LOADCLIENT picks another binary.

use strict;
use warnings;

use Carp qw(croak);
use POSIX ();
use Time::HiRes qw(time sleep);
use ApiKeyTest;

our $LOADCLIENT = $ENV{TEST_APIKEY_LOADCLIENT} || "$ApiKeyTest::BUILD/tools/loadclient";

my %RUNNING;      # pid => 1 for every client started and not yet reaped
my $OWNER = $$;   # forked test children never clean up

# A test that dies while a client runs must not leave it behind.
END {
    if ($$ == $OWNER) {
        local $?;
        for my $pid (keys %RUNNING) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
        }
    }
}

sub check_built {
    Test::More::BAIL_OUT("load client not built: $LOADCLIENT is missing (run make)")
        unless -x $LOADCLIENT;
}

# An ApiKeyTest (2 workers) sized for a run of $conns client connections: worker
# connections for them and their upstream connections, the descriptors to match, the
# backend behind keep-alive upstream connections, and no access log (a line per request
# would be most of the work). %opts are ApiKeyTest->new's and win. Bails out first when
# the load client is not built.
sub new_test {
    my ($conns, %opts) = @_;
    check_built();
    my $big = $conns > 200;
    return ApiKeyTest->new(
        workers            => 2,
        worker_connections => $big ? 4096 : 2048,
        main_extra         => 'worker_rlimit_nofile ' . ($big ? 10000 : 5000) . ';',
        server_extra       => 'access_log off;',
        upstream_keepalive => $big ? 64 : 32,
        %opts,
    );
}

# The keys for standard_mix, created in workspace $ws_id: { valid => 3 read_write keys
# (rw1..3), read_only => 2 (ro1..2), revoked => 2 read_write keys revoked (rev1..2) }.
sub standard_keys {
    my ($t, $ws_id) = @_;
    my $make = sub {
        my ($permission, $prefix, $n) = @_;
        return [ map { $t->create_key($ws_id, permission => $permission, name => "$prefix$_") } 1 .. $n ];
    };
    my %keys = (valid     => $make->('read_write', 'rw', 3),
                read_only => $make->('read_only', 'ro', 2),
                revoked   => $make->('read_write', 'rev', 2));
    $t->revoke_key($ws_id, $_->{id}) for @{ $keys{revoked} };
    return \%keys;
}

# True once nginx refuses the last revoked key of $keys (standard_keys) and admits its
# last valid one on $path: apikeyd published them all (waits up to 3 s).
sub published {
    my ($t, $path, $keys) = @_;
    return $t->wait_until(sub {
        ($t->api(GET => $path, key => $keys->{revoked}[-1]{key})->{status} // 0) == 401
            && ($t->api(GET => $path, key => $keys->{valid}[-1]{key})->{status} // 0) == 200;
    }, 3);
}

# The mix every load test sends (class => weight): valid read_write GET -> 200 with the
# key's id in the upstream's echo, read_only key POST -> 403 read_only_key, revoked key
# -> 401 key_revoked, a fresh malformed key -> 401 malformed_key and a fresh well-formed
# unknown key -> 401 unknown_key. Each key of a list is used in turn.
our %WEIGHT = (valid => 4, read_only => 2, revoked => 2, malformed => 1, unknown => 1);

sub standard_mix {
    my ($t, $path, %keys) = @_;
    my @mix;
    for my $i (0 .. $WEIGHT{valid} - 1) {
        my $k = $keys{valid}[ $i % @{ $keys{valid} } ];
        push @mix, [valid => GET => $path, 200, qq{"key_id":"$k->{id}"}, $k->{key}];
    }
    for my $i (0 .. $WEIGHT{read_only} - 1) {
        my $k = $keys{read_only}[ $i % @{ $keys{read_only} } ];
        push @mix, [read_only => POST => $path, 403, '"code":"read_only_key"', $k->{key}];
    }
    for my $i (0 .. $WEIGHT{revoked} - 1) {
        my $k = $keys{revoked}[ $i % @{ $keys{revoked} } ];
        push @mix, [revoked => GET => $path, 401, '"code":"key_revoked"', $k->{key}];
    }
    push @mix, [malformed => GET => $path, 401, '"code":"malformed_key"', '@malformed'];
    push @mix, [unknown   => GET => $path, 401, '"code":"unknown_key"',   '@unknown'];
    return @mix;
}

# The spec of a rate-limited key $k: each answer a 200 as the key itself or a 429
# rate_limited (ok_200 and ok_429 of the class count them).
sub limited_spec {
    my ($class, $path, $k) = @_;
    return [$class => GET => $path, '200|429', qq{"key_id":"$k->{id}"|"code":"rate_limited"}, $k->{key}];
}

sub start {
    my ($t, %o) = @_;
    check_built();
    my $n = ++$t->{load_runs};
    my $out = $t->dir . "/load-$n.out";
    my $err = $t->dir . "/load-$n.err";
    my @cmd = ($LOADCLIENT, '--port', $t->api_port, '--connections', $o{connections},
               '--duration', $o{duration}, '--timeout', $o{timeout} // 10);
    push @cmd, '--rate', $o{rate} if $o{rate};
    push @cmd, map { ('--req', @$_) } @{ $o{mix} };
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null' or POSIX::_exit(126);
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>', $err or POSIX::_exit(126);
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    $RUNNING{$pid} = 1;
    return { pid => $pid, out => $out, err => $err, started => time,
             limit => $o{duration} + ($o{timeout} // 10) + 30, mix => $o{mix}, t => $t };
}

sub _slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar(<$fh>) // '';
}

sub _fields {
    my ($line) = @_;
    return { map { /^([a-z_0-9]+)=(.*)$/ ? ($1 => $2) : () } split ' ', $line };
}

sub finish {
    my ($run) = @_;
    my $deadline = $run->{started} + $run->{limit};
    my $rc;
    while (1) {
        my $r = waitpid $run->{pid}, POSIX::WNOHANG();
        if ($r == $run->{pid}) { $rc = $? >> 8; last }
        if (time >= $deadline) {
            kill 'KILL', $run->{pid};
            waitpid $run->{pid}, 0;
            $rc = 'killed';
            last;
        }
        sleep 0.05;
    }
    delete $RUNNING{ $run->{pid} };
    my %res = (rc => $rc, stderr => _slurp($run->{err}), stdout => _slurp($run->{out}),
               class => {}, t => $run->{t});
    for (split /\n/, $res{stdout}) {
        if (/^class=(\S+)/) { $res{class}{$1} = _fields($_) }
        elsif (/^total /)  { $res{total} = _fields($_) }
    }
    $res{total} //= {};
    return \%res;
}

# How many requests each class should have had out of $total, sent in round-robin over
# the mix (request i is spec i mod n): exact, give or take one per spec.
sub expected_counts {
    my ($mix, $total) = @_;
    my $n = @$mix;
    my %want;
    for my $i (0 .. $n - 1) {
        my $c = int($total / $n) + ($i < $total % $n ? 1 : 0);
        $want{ $mix->[$i][0] } += $c;
    }
    return \%want;
}

# One line for diagnostics and docs.
sub summary {
    my ($res) = @_;
    my $t = $res->{total};
    return join ' ', map { "$_=" . ($t->{$_} // '?') }
        qw(sent answered ok mismatch transport_errors idle_close_retries idle_closes server_closes
           connects peak_open elapsed rps p50_us p99_us max_us);
}

# The checks every run ends with, four tests named "$label: ...": the client's exit status
# is 0 (every answer as expected; its stderr describes the first that were not, and
# nginx's last warnings and errors may say why), no transport error, no mismatch, every
# request sent answered. First a diag of the summary and of each class's counts.
sub check_answers {
    my ($res, $label) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $tot = $res->{total};
    Test::More::diag("$label: " . summary($res));
    for my $c (sort keys %{ $res->{class} }) {
        my $h = $res->{class}{$c};
        Test::More::diag("  class $c: " . join ' ', map { "$_=$h->{$_}" } grep { $_ ne 'class' } sort keys %$h);
    }
    Test::More::is($res->{rc}, 0, "$label: every request answered as expected")
        or Test::More::diag(first_lines($res->{stderr}, 4), last_problems($res->{t}, 4));
    Test::More::is($tot->{transport_errors}, 0, "$label: no transport error (no failed request)");
    Test::More::is($tot->{mismatch}, 0, "$label: no mismatched answer");
    Test::More::is($tot->{answered}, $tot->{sent}, "$label: every request sent was answered");
}

# Diag texts kept short: CI shows the end of the output only (scripts/prove.sh).
sub first_lines {
    my ($text, $n) = @_;
    return join '', map { "$_\n" } grep { defined } (split /\n/, $text)[0 .. $n - 1];
}

# nginx's error log lines matching $re.
sub _error_log_lines {
    my ($t, $re) = @_;
    return grep { $_ =~ $re } split /\n/, $t->error_log;
}

# The last $n lines of nginx's error log at warn or above.
sub last_problems {
    my ($t, $n) = @_;
    my @lines = _error_log_lines($t, qr/\[(?:warn|error|crit|alert|emerg)\]/);
    splice @lines, 0, @lines - $n if @lines > $n;
    return @lines ? join '', map { "$_\n" } 'nginx error log, last warnings and errors:', @lines : '';
}

# nginx's error log lines that no load run may cause: alert, crit or emerg, a worker that
# died of a signal, worker_connections too small. '' when there are none.
sub alerts {
    my ($t) = @_;
    return join "\n", _error_log_lines($t,
        qr/\[(?:alert|crit|emerg)\]|exited on signal|worker_connections are not enough/);
}

1;
