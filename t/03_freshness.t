# Freshness and robustness: revocations reach every worker within a second, nginx keeps
# deciding while apikeyd is down, apikeyd keeps what it acknowledged across restarts and
# crashes, and a graceful nginx reload keeps everything working.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use ApiKeyTest;

my $WORKERS = 2;
my $t = ApiKeyTest->new(workers => $WORKERS);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $PATH = '/api/v1/acme-corp/sales/orders';

sub status_of { my ($key) = @_; $t->api(GET => $PATH, defined $key ? (key => $key) : ())->{status} }
sub code_of {
    my ($key) = @_;
    my $r = $t->api(GET => $PATH, key => $key);
    return ($r->{status} // 'none') . ' ' . ($r->{json} && ref $r->{json} eq 'HASH'
        && ref $r->{json}{error} eq 'HASH' ? $r->{json}{error}{code} : '');
}

# Pids of the workers that logged a given result for a given key prefix.
sub pids_logging {
    my ($result, $prefix) = @_;
    my %pids;
    for (split /\n/, $t->access_log) {
        $pids{$1} = 1 if /pid=(\d+) result=\Q$result\E prefix=\Q$prefix\E$/;
    }
    return keys %pids;
}

# Sends requests with $key until every worker has served it with $result (access log).
sub reach_all_workers {
    my ($key, $result) = @_;
    return $t->wait_until(sub {
        $t->api(GET => $PATH, key => $key->{key}) for 1 .. 4;
        pids_logging($result, $key->{key_prefix}) >= $WORKERS;
    }, 5);
}

# Revokes $key and checks that within 1 s of the DELETE's 200 every request (from every
# worker) is refused: requests are sent back to back for 1.5 s and every one sent after
# the 1 s mark must be a 401 key_revoked.
sub revoke_is_fresh {
    my ($key, $label) = @_;
    subtest "revoke enforced by all workers within 1 s ($label)" => sub {
        ok reach_all_workers($key, 'ok'), "key served by all $WORKERS workers before the revoke";
        my $r = $t->admin(DELETE => "/api/v1/workspaces/$ws->{id}/api-keys/$key->{id}");
        my $t0 = time;
        is $r->{status}, 200, 'DELETE -> 200';
        my ($first_401, $last_200, $late_ok, $late_total, @odd) = (undef, undef, 0, 0);
        while (time < $t0 + 1.5) {
            my $sent = time;
            my $c = code_of($key->{key});
            if ($c eq '401 key_revoked') {
                $first_401 //= $sent - $t0;
                $late_ok++ if $sent >= $t0 + 1.0;
            } elsif ($c =~ /^200/) {
                $last_200 = $sent - $t0;
            } else {
                push @odd, $c;
            }
            $late_total++ if $sent >= $t0 + 1.0;
        }
        ok defined $first_401, 'revoked key refused with 401 key_revoked';
        cmp_ok $first_401 // 99, '<', 1.0, sprintf('first refusal %.3f s after the 200', $first_401 // 99);
        ok !defined $last_200 || $last_200 < 1.0,
            sprintf('no success later than 1 s (last 200 at %s)',
                    defined $last_200 ? sprintf('%.3f s', $last_200) : 'never');
        ok $late_total > 0 && $late_ok == $late_total,
            "every request after the 1 s mark refused ($late_ok/$late_total)";
        is_deeply \@odd, [], 'no other answers';
        my @pids = pids_logging('key_revoked', $key->{key_prefix});
        cmp_ok scalar @pids, '>=', $WORKERS, "refused by every worker (pids @pids)";
    };
}

# --- revocation freshness -----------------------------------------------------------------

my $good = $t->create_key($ws->{id}, permission => 'read_write', name => 'good');
revoke_is_fresh($t->create_key($ws->{id}, permission => 'read_write'), 'running system');
is status_of($good->{key}), 200, 'other keys unaffected';

# --- apikeyd down -------------------------------------------------------------------------

my $revoked = $t->create_key($ws->{id}, permission => 'read_write', name => 'revoked');
$t->revoke_key($ws->{id}, $revoked->{id});
my $ro = $t->create_key($ws->{id}, permission => 'read_only', name => 'ro');
ok $t->wait_until(sub { status_of($revoked->{key}) == 401 }, 2), 'revoked before the stop';

$t->stop_daemon;
ok !ApiKeyTest::port_open($t->admin_port), 'apikeyd is down';
{
    my %seen;
    my $until = time + 1.5;    # longer than any snapshot re-open interval
    while (time < $until) {
        $seen{'good ' . code_of($good->{key})}++;
        $seen{'revoked ' . code_of($revoked->{key})}++;
        $seen{'none ' . (status_of(undef) // 'none')}++;
    }
    is_deeply [sort keys %seen], ['good 200 ', 'none 401', 'revoked 401 key_revoked'],
        'while apikeyd is down: valid key 200, revoked 401 key_revoked, no key 401'
        or diag explain \%seen;
    is $t->api(POST => $PATH, key => $ro->{key}, body => '{}')->{status}, 403,
        'while apikeyd is down: read_only key still 403 on POST';
    is code_of(ApiKeyTest::make_key()), '401 unknown_key', 'while apikeyd is down: unknown key 401';
}

# --- restart keeps what was acknowledged --------------------------------------------------

$t->start_daemon;
{
    my $r = $t->admin(GET => "/api/v1/workspaces/$ws->{id}/api-keys");
    is $r->{status}, 200, 'restarted apikeyd lists keys';
    my %st = map { $_->{id} => $_->{status} } @{ ref $r->{json} eq 'ARRAY' ? $r->{json} : [] };
    is $st{ $good->{id} }, 'active', 'good key still there, active';
    is $st{ $revoked->{id} }, 'revoked', 'revoked key still revoked';
    is $st{ $ro->{id} }, 'active', 'read_only key still there';
    is status_of($good->{key}), 200, 'good key works after the restart';
    is code_of($revoked->{key}), '401 key_revoked', 'revoked key stays refused after the restart';
    my $ws2 = $t->admin(GET => "/api/v1/workspaces/$ws->{id}");
    is $ws2->{json}{slug}, 'sales', 'workspace still there';

    my $new = $t->create_key($ws->{id}, permission => 'read_write');
    ok $t->wait_until(sub { status_of($new->{key}) == 200 }, 1),
        'key created after the restart works in nginx within 1 s';
    revoke_is_fresh($t->create_key($ws->{id}, permission => 'read_write'), 'after apikeyd restart');
}

# --- crash (SIGKILL) right after acknowledgements -----------------------------------------

{
    my $k1 = $t->create_key($ws->{id}, permission => 'read_write', name => 'just-before-crash');
    my $k2 = $t->create_key($ws->{id}, permission => 'read_write', name => 'revoked-before-crash');
    $t->revoke_key($ws->{id}, $k2->{id});
    $t->stop_daemon(signal => 'KILL');
    $t->start_daemon;
    my $r = $t->admin(GET => "/api/v1/workspaces/$ws->{id}/api-keys/$k1->{id}");
    is $r->{status}, 200, 'key acknowledged just before a SIGKILL survives it';
    is $r->{json}{status}, 'active', '... as active';
    $r = $t->admin(GET => "/api/v1/workspaces/$ws->{id}/api-keys/$k2->{id}");
    is $r->{json}{status}, 'revoked', 'revoke acknowledged just before a SIGKILL survives it';
    is status_of($k1->{key}), 200, 'key created before the crash works';
    is code_of($k2->{key}), '401 key_revoked', 'key revoked before the crash stays refused';
    is status_of($good->{key}), 200, 'older keys still work after the crash';
}

# --- nginx reload -------------------------------------------------------------------------

{
    my $old_workers = join ',', sort $t->worker_pids;
    $t->reload_nginx;
    isnt join(',', sort $t->worker_pids), $old_workers, 'reload replaced the workers';
    my %seen;
    for (1 .. 8) {
        $seen{'good ' . code_of($good->{key})}++;
        $seen{'revoked ' . code_of($revoked->{key})}++;
    }
    is_deeply [sort keys %seen], ['good 200 ', 'revoked 401 key_revoked'],
        'after reload: valid key 200, revoked 401 on every worker' or diag explain \%seen;
    my $new = $t->create_key($ws->{id}, permission => 'read_write');
    ok $t->wait_until(sub { status_of($new->{key}) == 200 }, 1), 'key created after reload works';
    revoke_is_fresh($t->create_key($ws->{id}, permission => 'read_write'), 'after nginx reload');

    # Reload while apikeyd is down: new workers open the last published snapshot.
    $t->stop_daemon;
    $t->reload_nginx;
    is status_of($good->{key}), 200, 'reload while apikeyd is down: valid key 200';
    is code_of($revoked->{key}), '401 key_revoked', 'reload while apikeyd is down: revoked 401';
    $t->start_daemon;
    is status_of($good->{key}), 200, 'and after apikeyd is back';
}

unlike $t->error_log, qr/\[(?:alert|emerg)\]/, 'no alert/emerg in the nginx error log';

done_testing;
