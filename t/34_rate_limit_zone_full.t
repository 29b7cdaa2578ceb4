# A rate-limit zone too small for the keys in use, under load: 2,000 keys (default
# 3/60s) cycle through a 32k zone (888 states) over 200 connections. The least recently
# used states of full sets are evicted, so limits stop holding -- the documented
# degradation -- but not silently: each worker warns (once a minute) that it evicted a
# key still being limited.
# Every answer stays a 200 with the key's own id or a 429 rate_limited.
use strict;
use warnings;
use Test::More;
use Digest::SHA ();
use ApiKeyTest;
use ApiKeyLoad;

my $KEYS = 2000;   # a 32k zone holds 888 states, in sets of 8
my $CONNS = 200;
my $t = ApiKeyLoad::new_test(
    $CONNS,
    timeout        => 120,
    http_extra     => 'apikey_rate_limit_zone zone=tiny:32k;',
    location_extra => 'apikey_rate_limit zone=tiny default=3/60s;',
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $PATH = '/api/v1/acme-corp/sales/orders';

# The keys, imported in one request: about 18 for each set of 8 slots of the zone.
my @raw = map { ApiKeyTest::make_key() } 1 .. $KEYS;
my $J = ApiKeyTest::json();
my $imported = $t->admin(POST => "/api/v1/workspaces/$ws->{id}/api-keys/import", undef,
    raw_body => join('', map { $J->encode({ key_sha256 => Digest::SHA::sha256_hex($_),
                                            key_prefix => substr($_, 0, 12), name => 'load',
                                            permission => 'read_write' }) . "\n" } @raw),
    headers => ['Content-Type' => 'application/x-ndjson']);
my @keys = map { { id => $_->{id}, key => $raw[ $_->{line} - 1 ] } } @{ $imported->{json}{keys} // [] };
is scalar(@keys), $KEYS, "$KEYS keys imported";
my $last = $keys[-1];
ok $t->wait_until(sub { $t->api(GET => $PATH, key => $last->{key})->{status} == 200 }, 3),
    'keys published';

my @mix = map { ApiKeyLoad::limited_spec(limited => $PATH, $_) } @keys;
my $res = ApiKeyLoad::finish(ApiKeyLoad::start($t, connections => $CONNS, duration => 4,
                                               mix => \@mix));
my $c = $res->{class}{limited} // {};
# every answer a 200 as the right key or a 429 rate_limited (limited_spec)
ApiKeyLoad::check_answers($res, 'zone full');
cmp_ok $c->{ok_200} // 0, '>', 3 * $KEYS,
    'more admitted than 3 per key: evicted states restart their budget (the degradation)';

my @warn = grep { /\[warn\].*apikey: rate limit zone "tiny" is full: evicted the state of a key still being limited/ }
    split /\n/, $t->error_log;
cmp_ok scalar(@warn), '>=', 1, 'nginx warns that the zone is too small';
cmp_ok scalar(@warn), '<=', 2, '  once a minute per worker at most';
is ApiKeyLoad::alerts($t), '', 'no alert';

done_testing;
