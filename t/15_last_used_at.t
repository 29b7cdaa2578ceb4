# last_used_at end to end: nginx reports key uses, apikeyd shows them within 10 s, keeps
# them across restarts of both, and never lets them go backwards.
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

done_testing;
