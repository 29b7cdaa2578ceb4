# Per-key rate limiting in nginx: exact budgets, Retry-After, RateLimit headers, one
# budget shared by both workers, independent keys, state kept across reload, refused
# requests spending nothing. A full zone: t/34 (under load) and t/36 (which state goes).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use ApiKeyTest;

my $t = ApiKeyTest->new(
    workers    => 2,
    http_extra => '    apikey_rate_limit_zone zone=keys:32k;',
    location_extra => '            apikey_rate_limit zone=keys default=5/3s;',
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $k1 = $t->create_key($ws->{id}, permission => 'read_only');
my $k2 = $t->create_key($ws->{id}, permission => 'read_only');
my $PATH = '/api/v1/acme-corp/sales/orders';

sub get { $t->api(GET => $PATH, key => $_[0]{key}) }

# Exactly the budget, then 429.
my @statuses = map { get($k1)->{status} } 1 .. 5;
is_deeply \@statuses, [ (200) x 5 ], 'a key limited to 5 per 3 s gets 5 through';
my $first = get($k1);
is $first->{status}, 429, 'the 6th is refused with 429';
is $first->{json}{error}{code}, 'rate_limited', '  JSON error code rate_limited';
like $first->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/, '  Retry-After in whole seconds, >= 1';
is $first->{headers}{'retry-after'}, 1, '  the true wait (one interval, 0.6 s) rounded up';
like $first->{headers}{'ratelimit-policy'} // '', qr/^"apikey";q=5;w=3$/, '  RateLimit-Policy';
like $first->{headers}{'ratelimit'} // '', qr/^"apikey";r=0;t=\d+$/, '  RateLimit with r=0';
ok !defined $first->{json}{method}, '  the upstream was not called';

# Independent keys.
is get($k2)->{status}, 200, 'another key has its own budget';
like get($k2)->{headers}{'ratelimit'} // '', qr/^"apikey";r=3;t=\d+$/,
    'RateLimit counts down on allowed responses';

# Recovery: one request per interval (0.6 s) comes back.
sleep 0.7;
is get($k1)->{status}, 200, 'after one interval the key gets one more request';
is get($k1)->{status}, 429, '  and only one';

# Retry-After is the true wait rounded up: a client that waits that long is admitted.
{
    my $k = $t->create_key($ws->{id}, rate_limit => { limit => 2, window_seconds => 5 });
    get($k) for 1 .. 2;
    my $r = get($k);
    is $r->{status}, 429, 'a key limited to 2 per 5 s: the 3rd refused';
    is $r->{headers}{'retry-after'}, 3, '  Retry-After 3 (one interval is 2.5 s)';
    sleep 3;
    is get($k)->{status}, 200, '  admitted after waiting Retry-After seconds';
}

# Both workers share one budget: spread requests over many connections (reuseport).
my $k3 = $t->create_key($ws->{id}, permission => 'read_only');
my %pids;
my $ok = 0;
for (1 .. 20) {
    my $r = get($k3);
    $ok++ if $r->{status} == 200;
}
is $ok, 5, 'twenty requests over both workers: exactly 5 allowed in total';
my @workers = $t->worker_pids;
is scalar(@workers), 2, 'two workers were running';

# Refused requests do not spend the budget.
my $k4 = $t->create_key($ws->{id}, permission => 'read_only');
is $t->api(POST => $PATH, key => $k4->{key}, body => '{}')->{status}, 403, 'read-only POST: 403'
    for 1 .. 6;
is get($k4)->{status}, 200, '403s spent nothing: the key still has its budget';
like get($k4)->{headers}{'ratelimit'} // '', qr/r=3;/, '  4 left after 2 GETs, not fewer';

# Reload keeps the state.
my $k5 = $t->create_key($ws->{id}, permission => 'read_only');
get($k5) for 1 .. 5;
$t->reload_nginx;
is get($k5)->{status}, 429, 'after nginx -s reload the spent budget is still spent';
# A zone of another size is a new zone (nginx cannot keep the old one's table).
$t->reload_nginx(http_extra => '    apikey_rate_limit_zone zone=keys:64k;');
my @holds = $t->error_log =~ /rate limit zone "keys" holds (\d+) states/g;
cmp_ok $holds[-1], '>', 1.9 * $holds[0], 'reloaded with 64k: nginx says the new zone holds twice as many';
is get($k5)->{status}, 200, '  and the budget starts again in it';
like get($k5)->{headers}{'ratelimit-policy'} // '', qr/q=5;w=3$/, '  the location still limits';

# Two zones in one server: each location spends its own zone with its own default (the
# post-read phase, which cannot tell which a request will use, prefetches neither).
$t->reload_nginx(
    http_extra   => "    apikey_rate_limit_zone zone=keys:64k;\n"
                  . "    apikey_rate_limit_zone zone=other:32k;",
    server_extra => <<'CONF');
        location /other/ {
            apikey on; apikey_workspace acme-corp/sales; apikey_entity orders;
            apikey_rate_limit zone=other default=2/60s;
            empty_gif;
        }
CONF
my $k6 = $t->create_key($ws->{id}, permission => 'read_only');
my @other = map { $t->api(GET => '/other/x', key => $k6->{key}) } 1 .. 3;
is join(' ', map { $_->{status} } @other), '200 200 429', 'a location with zone=other: 2/60s';
like $other[0]{headers}{'ratelimit-policy'} // '', qr/q=2;w=60$/, '  its policy';
my $api = get($k6);
is $api->{status}, 200, '  the same key in the other location of the server: its own zone';
like $api->{headers}{'ratelimit'} // '', qr/^"apikey";r=4;/, '  with 4 of 5 left there';

# Limits at the admin API's extremes: the first request leaves limit - 1 (in microseconds
# the interval of 10^9 a day was cut to 86 µs: 1,004,651,161 left, more than the limit,
# and 10^9 a second had one of 1 µs: 999,999 left), and t= is the time that one request
# takes to come back.
for my $case ([1, 1, 0, 1], [1, 86400, 0, 86400], [7, 1, 6, 1], [86400, 86400, 86399, 1],
              [1_000_000_000, 1, 999_999_999, 1], [1_000_000_000, 86400, 999_999_999, 1],
              [999_999_999, 86399, 999_999_998, 1]) {
    my ($limit, $window, $left, $reset) = @$case;
    my $k = $t->create_key($ws->{id}, rate_limit => { limit => $limit, window_seconds => $window });
    my $r = get($k);
    is $r->{status}, 200, "a key limited to $limit per $window s: the first request admitted";
    is $r->{headers}{'ratelimit'}, qq("apikey";r=$left;t=$reset), "  RateLimit r=$left;t=$reset";
    if ($limit == 1) {
        $r = get($k);
        is $r->{status}, 429, '  the second refused';
        is $r->{headers}{'retry-after'}, $window, "  Retry-After $window";
    }
}

unlike $t->error_log, qr/\[(alert|crit|emerg)\]/, 'no alerts in the error log';

done_testing;
