# last_used_at end to end: nginx reports key uses, apikeyd shows them within 10 s, keeps
# them across restarts of both, and never lets them go backwards; the first report after
# apikeyd is back and a report of thousands of keys at once arrive whole.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use ApiKeyTest;

my $t = ApiKeyTest->new(usage => 1);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $key = $t->create_key($ws->{id});
my $idle = $t->create_key($ws->{id});
my $K = "/api/v1/workspaces/$ws->{id}/api-keys";
my $PATH = '/api/v1/acme-corp/sales/orders';

sub last_used { $t->admin(GET => "$K/$_[0]{id}")->{json}{last_used_at} }
sub last_used_epoch { my $v = last_used($_[0]); defined $v ? ApiKeyTest::parse_iso8601($v) : undef }

is last_used($key), undef, 'a new key has never been used';

my $before = int(time);
is $t->api(GET => $PATH, key => $key->{key})->{status}, 200, 'a request with the key';
my $start = time;
ok $t->wait_until(sub { defined last_used($key) }, 10), 'last_used_at appears within 10 s';
diag sprintf 'last_used_at after %.2f s', time - $start;
my $seen = last_used_epoch($key);
ok $seen >= $before && $seen <= time + 1, 'it is the time of the request';
is last_used($idle), undef, 'an unused key stays null';
my ($listed) = grep { $_->{id} eq $key->{id} } @{ $t->admin(GET => $K)->{json} };
is $listed->{last_used_at}, last_used($key), 'the list shows it too';

# Never backwards: an older report changes nothing; garbage is ignored.
my $udp = IO::Socket::INET->new(Proto => 'udp', PeerAddr => "127.0.0.1:$t->{usage_port}")
    or die "udp: $!";
$udp->send("apikey-usage 1\n$key->{id} 1000000000\n");
$udp->send("not a usage report");
$udp->send("apikey-usage 1\ngarbage line\n$idle->{id} notanumber\n");
$udp->send("apikey-usage 1\n00000000-0000-4000-8000-000000000000 " . int(time) . "\n");
sleep 1.5;
is last_used_epoch($key), $seen, 'an older report does not move last_used_at back';
is last_used($idle), undef, 'malformed lines are ignored';
is $t->admin(GET => '/api/v1/workspaces')->{status}, 200, 'apikeyd still answers';

# Survives restarts of apikeyd and nginx.
$t->stop_daemon;
$t->start_daemon;
is last_used_epoch($key), $seen, 'last_used_at survives an apikeyd restart';
$t->stop_nginx;
$t->start_nginx;
is last_used_epoch($key), $seen, 'and an nginx restart';

# A later use moves it forward.
sleep 1.1;
$t->api(GET => $PATH, key => $key->{key});
ok $t->wait_until(sub { (last_used_epoch($key) // 0) > $seen }, 10),
    'a later use moves last_used_at forward';

# The first report after apikeyd is back arrives. While it was down, a report to its
# closed port left an ICMP error on the worker's socket, and the next send, the first to
# the restarted apikeyd, failed with it (ECONNREFUSED) and was lost: keys used once then
# never got a last_used_at. Each use on its own connection, so both workers see some.
{
    my @down  = map { $t->create_key($ws->{id}) } 1 .. 8;
    my @after = map { $t->create_key($ws->{id}) } 1 .. 8;
    $t->stop_daemon;
    is $t->api(GET => $PATH, key => $_->{key})->{status}, 200, 'a use while apikeyd is down'
        for @down;
    sleep 0.6;  # reported (to nobody) within the 200 ms interval
    $t->start_daemon;
    $t->api(GET => $PATH, key => $_->{key}) for @after;
    ok $t->wait_until(sub { !grep { !defined last_used($_) } @after }, 5),
        'keys used once after apikeyd is back all get last_used_at';
}

# Thousands of keys in one interval: a worker's report is then hundreds of datagrams at
# once, more than a socket's default receive buffer (208 KB) holds: sent in one burst, a
# third of them were dropped by the kernel, silently (3,640 of 6,000 keys got
# last_used_at). Paced by the module, received into a larger buffer by apikeyd, all arrive.
{
    my $N = 8000;
    $t->reload_nginx(usage => 0,
        http_extra => "    apikey_usage_report 127.0.0.1:$t->{usage_port} interval=2s;");
    my @raw = map { ApiKeyTest::make_key() } 1 .. $N;
    my $many = $t->create_workspace('acme-corp', 'many');
    is $t->import_keys($many->{id}, @raw)->{imported}, $N, "$N keys imported";
    # Pipelined on a few connections: every key used within one report interval.
    my $start = time;
    my $ok = $t->use_keys('/api/v1/acme-corp/many/orders', @raw);
    is $ok, $N, sprintf 'each key used once (%.2f s)', time - $start;
    my $used = 0;
    $t->wait_until(sub {
        my $list = $t->admin(GET => "/api/v1/workspaces/$many->{id}/api-keys?limit=10000")->{json};
        $used = grep { defined $_->{last_used_at} } @$list;
        $used == $N;
    }, 15);
    is $used, $N, "all $N keys get last_used_at";

    # apikeyd busy for a while (a large import holds it for seconds; here SIGSTOP): what
    # arrives meanwhile waits in its socket's receive buffer, beyond it the kernel drops
    # it. apikeyd asks for a larger one than the default 208 KB (about 90 datagrams).
    my @again = @{ $t->admin(GET => "/api/v1/workspaces/$many->{id}/api-keys?limit=10000")->{json} };
    my %before = map { $_->{id} => $_->{last_used_at} } @again;
    sleep 1.1;  # a later second: each use below moves last_used_at
    kill 'STOP', $t->{daemon_pid};
    $ok = $t->use_keys('/api/v1/acme-corp/many/orders', @raw[0 .. 3999]);
    is $ok, 4000, '4,000 keys used again while apikeyd is stopped';
    sleep 3.5;  # reported (2 s interval), into apikeyd's socket
    kill 'CONT', $t->{daemon_pid};
    my $moved = 0;
    $t->wait_until(sub {
        my $list = $t->admin(GET => "/api/v1/workspaces/$many->{id}/api-keys?limit=10000")->{json};
        $moved = grep { ($_->{last_used_at} // '') ne ($before{ $_->{id} } // '') } @$list;
        $moved >= 4000;
    }, 10);
    is $moved, 4000, 'all 4,000 moved once apikeyd goes on';
}

done_testing;
