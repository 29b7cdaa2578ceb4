# Zero-downtime operations under load: while the load client (t/tools/loadclient.cc)
# sends the checked key mix at a moderate rate over 200 keep-alive connections, apikeyd
# is stopped, restarted, crashed (SIGKILL) and "upgraded" (stopped, another copy of the
# binary started on the same data_dir), and nginx is reloaded (`nginx -s reload`)
# several times. Not one data-plane request may fail or be answered wrongly. The one
# thing an HTTP client retries is allowed: a request on a reused keep-alive connection
# that a reloading worker closed while it was idle, before any byte of an answer (the
# request never reached nginx); the client sends it again on a new connection. Last, the
# same load while eight admin clients publish hundreds of snapshots.
use strict;
use warnings;
use Test::More;
use File::Copy qw(copy);
use POSIX ();
use Time::HiRes qw(time sleep);
use ApiKeyTest;
use ApiKeyLoad;

my $CONNS = 200;
my $RATE  = 2000;   # requests/s over all connections

my $t = ApiKeyLoad::new_test(
    $CONNS,
    timeout => 170,
    usage   => 1,    # nginx's usage reports must reach each new apikeyd too
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $PATH = '/api/v1/acme-corp/sales/orders';
my $keys = ApiKeyLoad::standard_keys($t, $ws->{id});
my @mix = ApiKeyLoad::standard_mix($t, $PATH, %$keys);
ok ApiKeyLoad::published($t, $PATH, $keys), 'keys published';

sub check_run {
    my ($label, $res, %o) = @_;
    my $tot = $res->{total};
    ApiKeyLoad::check_answers($res, $label);
    cmp_ok $tot->{sent} // 0, '>=', $o{min_sent}, "$label: at least $o{min_sent} requests";
    is $tot->{idle_close_retries}, 0, "$label: no retried request" if $o{no_retries};
    my $want = ApiKeyLoad::expected_counts(\@mix, $tot->{sent} // 0);
    my @off = grep { ($res->{class}{$_}{sent} // -1) != $want->{$_}
                     || ($res->{class}{$_}{ok} // -1) != $want->{$_} } sort keys %$want;
    is_deeply \@off, [], "$label: every class sent and answered its exact share"
        or diag explain $res->{class};
}

# --- apikeyd: stop, restart, crash, upgrade -----------------------------------------------

{
    my $run = ApiKeyLoad::start($t, connections => $CONNS, rate => $RATE, duration => 14,
                                mix => \@mix);
    sleep 1.5;

    $t->stop_daemon;
    ok !ApiKeyTest::port_open($t->admin_port), 'apikeyd stopped under load';
    sleep 2;    # longer than any snapshot re-check interval
    $t->start_daemon;
    my $k1 = $t->create_key($ws->{id}, permission => 'read_write', name => 'after-restart');
    ok $t->wait_until(sub { $t->api(GET => $PATH, key => $k1->{key})->{status} == 200 }, 1),
        'restarted: a new key works within 1 s';
    sleep 1.5;

    $t->stop_daemon(signal => 'KILL');
    sleep 1;
    $t->start_daemon;
    ok $t->admin(GET => '/healthz')->{status} == 200, 'restarted after SIGKILL';
    sleep 1.5;

    # The upgrade: stop, then start a different binary file on the same data_dir (and
    # snapshot), as a package upgrade would.
    my $copy = $t->dir . '/apikeyd-upgraded';
    copy($ApiKeyTest::DAEMON, $copy) or die "copy apikeyd: $!";
    chmod 0755, $copy;
    $t->stop_daemon;
    {
        local $ApiKeyTest::DAEMON = $copy;
        $t->start_daemon;
    }
    is readlink("/proc/$t->{daemon_pid}/exe"), $copy, 'the upgraded binary runs';
    my $k2 = $t->create_key($ws->{id}, permission => 'read_write', name => 'after-upgrade');
    ok $t->wait_until(sub { $t->api(GET => $PATH, key => $k2->{key})->{status} == 200 }, 1),
        'upgraded: a new key works within 1 s';
    $t->revoke_key($ws->{id}, $k1->{id});
    ok $t->wait_until(sub { $t->api(GET => $PATH, key => $k1->{key})->{status} == 401 }, 1),
        'upgraded: a revoke is enforced within 1 s';
    my $r = $t->admin(GET => "/api/v1/workspaces/$ws->{id}/api-keys");
    is scalar(@{ $r->{json} // [] }), 9, 'upgraded: every key still listed';
    my $upgraded_at = time;
    ok $t->wait_until(sub {
        my $lu = $t->admin(GET => "/api/v1/workspaces/$ws->{id}/api-keys/$keys->{valid}[0]{id}")->{json}{last_used_at};
        defined $lu && ApiKeyTest::parse_iso8601($lu) >= int($upgraded_at) + 1;
    }, 5), "upgraded: nginx's usage reports reach it (last_used_at of a key under load moves on)";

    my $res = ApiKeyLoad::finish($run);
    check_run('apikeyd stop/restart/kill/upgrade', $res, min_sent => 10 * $RATE,
              no_retries => 1);
    is ApiKeyLoad::alerts($t), '', 'nginx logged no alert';
}

# --- nginx -s reload, five times ---------------------------------------------------------

# `nginx -s reload` (signals the master named in the pid file), then wait until the old
# workers are gone and the new ones run.
sub nginx_s_reload {
    my %old = map { $_ => 1 } $t->worker_pids;
    my $rc = $t->run_nginx('-s', 'reload');
    return 0 if $rc != 0;
    return $t->wait_until(sub {
        my @w = $t->worker_pids;
        @w >= 2 && !grep { $old{$_} } @w;
    }, 10);
}

{
    my $run = ApiKeyLoad::start($t, connections => $CONNS, rate => $RATE, duration => 12,
                                mix => \@mix);
    sleep 1.5;
    my $ok = 0;
    for (1 .. 5) {
        $ok++ if nginx_s_reload();
        sleep 1.5;
    }
    is $ok, 5, 'nginx reloaded 5 times under load (old workers gone, new ones running)';
    my $res = ApiKeyLoad::finish($run);
    check_run('5 x nginx -s reload', $res, min_sent => 8 * $RATE);
    diag "requests retried after a reloading worker closed an idle connection: "
        . ($res->{total}{idle_close_retries} // '?');
    is ApiKeyLoad::alerts($t), '', 'nginx logged no alert';
}

# --- admin writes under load ----------------------------------------------------------------

# Not an operation but the daily case: apikeyd publishes hundreds of snapshots (creates,
# revokes, settings that republish entity records) while nginx serves the mix; meanwhile
# a probe checks that a new key works and a revoked one is refused within 1 s.
{
    my $gen0 = $t->admin(GET => '/healthz')->{json}{generation};
    my $run = ApiKeyLoad::start($t, connections => $CONNS, rate => $RATE, duration => 10,
                                mix => \@mix);
    my @kids;
    for my $c (1 .. 8) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $ok = eval {
                my $end = time + 8.5;
                my $n = 0;
                while (time < $end) {
                    $n++;
                    my $k = $t->create_key($ws->{id}, permission => 'read_write', name => "w$c-$n");
                    $t->revoke_key($ws->{id}, $k->{id});
                    $t->put_workspace_settings($ws->{id}, { maxExpandDepth => $n % 10 }) if $c == 1;
                    $t->put_entity_settings($ws->{id}, 'orders', { defaultFields => "f$n" }) if $c == 2;
                }
                1;
            };
            print STDERR "writer $c: $@" unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        push @kids, $pid;
    }
    my (@late, $probes);
    my $probe_end = time + 8;
    while (time < $probe_end) {
        my $k = $t->create_key($ws->{id}, permission => 'read_write', name => 'probe');
        my $t0 = time;
        my $ok = $t->wait_until(sub { ($t->api(GET => $PATH, key => $k->{key})->{status} // 0) == 200 }, 2);
        push @late, sprintf('create %.3f s', time - $t0) if !$ok || time - $t0 > 1;
        $t->revoke_key($ws->{id}, $k->{id});
        $t0 = time;
        $ok = $t->wait_until(sub { ($t->api(GET => $PATH, key => $k->{key})->{status} // 0) == 401 }, 2);
        push @late, sprintf('revoke %.3f s', time - $t0) if !$ok || time - $t0 > 1;
        $probes++;
    }
    my @rc = map { waitpid($_, 0); $? >> 8 } @kids;
    is_deeply \@rc, [ (0) x @kids ], 'every writer got its 201s and 200s';
    my $res = ApiKeyLoad::finish($run);
    my $gen = $t->admin(GET => '/healthz')->{json}{generation};
    diag "admin writes under load: " . ($gen - $gen0) . " publishes, $probes probes";
    cmp_ok $gen - $gen0, '>=', 100, 'at least 100 snapshot publishes during the run';
    is_deeply \@late, [], "$probes probe keys: usable and then refused within 1 s each";
    check_run('admin writes under load', $res, min_sent => 8 * $RATE, no_retries => 1);
    is ApiKeyLoad::alerts($t), '', 'nginx logged no alert';
}

done_testing;
