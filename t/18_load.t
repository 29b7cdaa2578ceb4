# Load: 1,000 concurrent keep-alive connections for 30 s through nginx + module, with a
# known mix of valid, read-only, revoked, malformed and unknown keys. The load client
# (t/tools/loadclient.cc) checks every answer (status and JSON code / the key id the
# upstream saw); the test wants no transport error, no mismatch, exact per-class counts
# and every connection held open for the whole run.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;
use ApiKeyLoad;

ApiKeyLoad::check_built();

my $CONNS    = $ENV{TEST_LOAD_CONNECTIONS} || 1000;
my $DURATION = $ENV{TEST_LOAD_DURATION}    || 30;

# 1,000 client connections over 2 workers, plus their upstream connections: room for
# both, and the descriptors to match.
my $t = ApiKeyTest->new(
    workers            => 2,
    timeout            => $DURATION + 120,
    worker_connections => 4096,
    main_extra         => 'worker_rlimit_nofile 10000;',
    # keep every client connection for the whole run (nginx closes one after 1,000
    # requests by default)
    http_extra         => "keepalive_requests 10000000;\n    keepalive_timeout 300s;",
    server_extra       => 'access_log off;',
    upstream_keepalive => 64,
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $PATH = '/api/v1/acme-corp/sales/orders';

my @valid = map { $t->create_key($ws->{id}, permission => 'read_write', name => "rw$_") } 1 .. 3;
my @ro    = map { $t->create_key($ws->{id}, permission => 'read_only',  name => "ro$_") } 1 .. 2;
my @revoked = map { $t->create_key($ws->{id}, permission => 'read_write', name => "rev$_") } 1 .. 2;
$t->revoke_key($ws->{id}, $_->{id}) for @revoked;

my @mix = ApiKeyLoad::standard_mix($t, $PATH, valid => \@valid, read_only => \@ro,
                                   revoked => \@revoked);

# Every spec answers as promised one request at a time, so a mismatch under load is
# about load.
ok $t->wait_until(sub {
    $t->api(GET => $PATH, key => $revoked[-1]{key})->{status} == 401
        && $t->api(GET => $PATH, key => $valid[-1]{key})->{status} == 200;
}, 3), 'keys published';
for my $spec (@mix) {
    my ($class, $method, $path, $status, $needle, $key) = @$spec;
    $key = ApiKeyTest::make_key() if $key eq '@unknown';
    $key = substr(ApiKeyTest::make_key(), 0, 45) if $key eq '@malformed';
    my $r = $t->api($method => $path, key => $key, $method eq 'POST' ? (body => '{}') : ());
    ok +($r->{status} // 0) == $status && index($r->{body} // '', $needle) >= 0,
        "one $class request: $status $needle" or diag explain $r;
}

my $run = ApiKeyLoad::start($t, connections => $CONNS, duration => $DURATION, mix => \@mix);
my $res = ApiKeyLoad::finish($run);
my $tot = $res->{total};
diag "load: $CONNS connections, ${DURATION}s: " . ApiKeyLoad::summary($res);
diag "  class $_: sent=$res->{class}{$_}{sent} ok=$res->{class}{$_}{ok}"
    for sort keys %{ $res->{class} };

is $res->{rc}, 0, 'load client: every request answered as expected' or diag $res->{stderr};
is $tot->{transport_errors}, 0, 'no transport errors';
is $tot->{mismatch}, 0, 'no mismatched answers';
is $tot->{answered}, $tot->{sent}, 'every request sent was answered';
cmp_ok $tot->{sent} // 0, '>=', 5 * $CONNS, 'at least 5 requests per connection';
is $tot->{peak_open}, $CONNS, "$CONNS connections open at once";
is $tot->{connects}, $CONNS, 'each held for the whole run (no reconnect)';
is $tot->{server_closes}, 0, 'nginx closed none of them';
is $tot->{idle_close_retries}, 0, 'no request had to be retried';

my $want = ApiKeyLoad::expected_counts(\@mix, $tot->{sent} // 0);
for my $class (sort keys %$want) {
    my $c = $res->{class}{$class} // {};
    is $c->{sent}, $want->{$class}, "$class: sent $want->{$class} (its share of the mix)";
    is $c->{answered}, $c->{sent}, "$class: answered = sent";
    is $c->{ok}, $c->{sent}, "$class: every answer as expected";
}

my $errors = join "\n", grep { /\[(?:alert|crit|emerg)\]|worker_connections are not enough/ }
    split /\n/, $t->error_log;
is $errors, '', 'nginx logged no alert/crit/emerg';
is $t->api(GET => $PATH, key => $valid[0]{key})->{status}, 200, 'nginx still answers after the load';

done_testing;
