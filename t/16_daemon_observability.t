# apikeyd's /healthz (no token) and /metrics (Prometheus text, admin token): they parse,
# and their counters move as requests are made.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use ApiKeyTest;

my $t = ApiKeyTest->new(usage => 1);

my $h = $t->admin(GET => '/healthz', undef, no_token => 1);
is $h->{status}, 200, '/healthz answers without a token';
is $h->{json}{status}, 'ok', '  status ok';
ok $h->{json}{generation} >= 1, '  with the store generation';

is $t->admin(GET => '/metrics', undef, no_token => 1)->{status}, 401, '/metrics needs the admin token';

# /metrics parsed: its status, content type, values by series, and the lines that are
# not valid exposition format. No test of its own, so that polling it keeps the plan fixed.
sub metrics {
    my $r = $t->admin(GET => '/metrics');
    my (%v, %typed, @bad);
    for my $line (split /\n/, $r->{body} // '') {
        if ($line =~ /^# TYPE (\w+) (counter|gauge|histogram)$/) { $typed{$1} = 1; next }
        next if $line =~ /^# HELP \w+ \S.*$/;
        if ($line =~ /^(\w+?)(_bucket|_sum|_count)?(\{(?:[^"}]|"[^"]*")*\})? (-?[\d.e+-]+)$/) {
            my $family = $typed{ $1 . ($2 // '') } ? $1 . ($2 // '') : $1;
            push @bad, "untyped: $line" unless $typed{$family};
            $v{ $1 . ($2 // '') . ($3 // '') } = $4;
        } else {
            push @bad, $line;
        }
    }
    return ($r, \%v, \@bad);
}

sub scrape {
    my ($r, $v, $bad) = metrics();
    is $r->{status}, 200, '/metrics 200';
    like $r->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4}, '  Prometheus content type';
    is_deeply $bad, [], '  every line is valid exposition format';
    return $v;
}
sub metric { my (undef, $v) = metrics(); return $v->{ $_[0] } // 0 }

my $before = scrape();
my $ws = $t->create_workspace('acme-corp', 'sales');
my $key = $t->create_key($ws->{id});
$t->admin(GET => "/api/v1/workspaces/$ws->{id}/api-keys") for 1 .. 3;
$t->admin(GET => '/api/v1/workspaces/00000000-0000-4000-8000-000000000000');
$t->api(GET => '/api/v1/acme-corp/sales/orders', key => $key->{key});

my $after = scrape();
my $c = sub { ($after->{$_[0]} // 0) - ($before->{$_[0]} // 0) };
is $c->('apikeyd_http_requests_total{route="/api/v1/workspaces/{id}/api-keys",status="200"}'), 3,
    'requests counted by route pattern and status';
is $c->('apikeyd_http_requests_total{route="/api/v1/workspaces/{id}",status="404"}'), 1, '  404s too';
is $c->('apikeyd_store_generation'), 2, 'store generation moved by the two changes';
is $after->{apikeyd_snapshot_generation}, $after->{apikeyd_store_generation}, 'snapshot caught up';
is $c->('apikeyd_snapshot_publish_seconds_count'), 2, 'two publishes timed';
ok $after->{apikeyd_store_bytes} > 0, 'store size reported';

ok $t->wait_until(sub { metric('apikeyd_usage_keys_updated_total') >= 1 }, 10),
    'usage reports from nginx are counted';
IO::Socket::INET->new(Proto => 'udp', PeerAddr => "127.0.0.1:$t->{usage_port}")->send('junk');
ok $t->wait_until(sub { metric('apikeyd_usage_rejected_datagrams_total') >= 1 }, 5),
    'a junk datagram is counted as rejected';

done_testing;
