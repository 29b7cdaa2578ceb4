package ApiKeyLoad;

# Runs tools/loadclient (t/tools/loadclient.cc) of the harness's build dir (build/, or
# APIKEY_BUILD under make test-sanitize) against an ApiKeyTest's nginx, in the
# background, and parses what it reports. Used by the load tests (t/30, t/32-34).
#
#   my @mix = ApiKeyLoad::standard_mix($t, $path, valid => [...], read_only => [...],
#                                      revoked => [...]);
#   my $run = ApiKeyLoad::start($t, connections => 1000, duration => 30, mix => \@mix,
#                               rate => 0);
#   ... (operations while it runs)
#   my $res = ApiKeyLoad::finish($run);   # waits (bounded), parses
#   $res->{total}{sent}, $res->{class}{valid}{ok}, $res->{rc}, $res->{stderr}
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
             limit => $o{duration} + ($o{timeout} // 10) + 30, mix => $o{mix} };
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
               class => {});
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

1;
