# Rate limits under load: 1,000 keep-alive connections spread over both workers hammer
# two rate-limited keys (GCRA in shared memory), an unlimited key and a revoked one, with
# two `nginx -s reload`s in the middle. Each limited key must be admitted exactly its
# budget (a fresh key may spend it all at once; the windows are a day long, so nothing
# refills during the run) -- not one request more across workers and reloads -- and
# every other answer to it must be 429 rate_limited.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use ApiKeyTest;
use ApiKeyLoad;

my $CONNS = 1000;
my $t = ApiKeyLoad::new_test(
    $CONNS,
    timeout        => 120,
    http_extra     => "apikey_rate_limit_zone zone=keys:1m;\n    keepalive_requests 10000000;",
    location_extra => 'apikey_rate_limit zone=keys;',
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $PATH = '/api/v1/acme-corp/sales/orders';
my %limit = (big => 3000, small => 1000);
my %lim_key = map {
    $_ => $t->create_key($ws->{id}, permission => 'read_write', name => $_,
                         rate_limit => { limit => $limit{$_}, window_seconds => 86400 })
} sort keys %limit;
my $free = $t->create_key($ws->{id}, permission => 'read_write', name => 'unlimited');
my $rev  = $t->create_key($ws->{id}, permission => 'read_write', name => 'revoked',
                          rate_limit => { limit => 1, window_seconds => 86400 });
$t->revoke_key($ws->{id}, $rev->{id});
ok $t->wait_until(sub { $t->api(GET => $PATH, key => $rev->{key})->{status} == 401 }, 3),
    'keys published';

my $limited = sub { ApiKeyLoad::limited_spec($_[0], $PATH, $lim_key{ $_[0] }) };
my @mix = ($limited->('big'), $limited->('big'), $limited->('small'),
           [unlimited => GET => $PATH, 200, qq{"key_id":"$free->{id}"}, $free->{key}],
           [revoked   => GET => $PATH, 401, '"code":"key_revoked"', $rev->{key}]);

my $run = ApiKeyLoad::start($t, connections => $CONNS, duration => 8, mix => \@mix);
sleep 2.5;
$t->reload_nginx;
sleep 1.5;
$t->reload_nginx;
my $res = ApiKeyLoad::finish($run);
my $tot = $res->{total};
ApiKeyLoad::check_answers($res, 'rate limits under load');
my $want = ApiKeyLoad::expected_counts(\@mix, $tot->{sent} // 0);
for my $name (sort keys %limit) {
    my $c = $res->{class}{$name};
    cmp_ok $c->{sent}, '>', 2 * $limit{$name}, "$name: more than twice its budget asked for";
    is $c->{sent}, $want->{$name}, "$name: its exact share of the mix";
    is $c->{ok_200}, $limit{$name}, "$name: exactly its budget of $limit{$name} admitted (2 workers, 2 reloads)";
    is $c->{ok_429}, $c->{sent} - $limit{$name}, "$name: every other request 429 rate_limited";
}
is $res->{class}{unlimited}{ok_200}, $want->{unlimited}, 'unlimited key: every request 200';
is $res->{class}{revoked}{ok_401}, $want->{revoked}, 'revoked key: every request 401 (no budget spent)';
is scalar(grep { /is full: evicted/ } split /\n/, $t->error_log), 0,
    'the zone holds every key: no eviction warning';
my $r = $t->api(GET => $PATH, key => $lim_key{small}{key});
is $r->{status}, 429, 'after the run the small key is still out of budget';
like $r->{headers}{ratelimit} // '', qr/r=0\b/, '  RateLimit shows r=0';

done_testing;
