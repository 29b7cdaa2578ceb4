# A rate-limit zone too small for the keys in use, under load: 400 keys (default
# 3/60s) cycle through a 32k zone over 200 connections. The least recently used states
# are evicted, so limits stop holding -- the documented degradation -- but not silently
# any more: each worker warns (once a minute) that it evicted a key still being limited.
# Every answer stays a 200 with the key's own id or a 429 rate_limited.
use strict;
use warnings;
use Test::More;
use POSIX ();
use ApiKeyTest;
use ApiKeyLoad;

my $KEYS = 400;
my $CONNS = 200;
my $t = ApiKeyLoad::new_test(
    $CONNS,
    timeout        => 120,
    http_extra     => 'apikey_rate_limit_zone zone=tiny:32k;',
    location_extra => 'apikey_rate_limit zone=tiny default=3/60s;',
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $PATH = '/api/v1/acme-corp/sales/orders';

# The keys, created by 8 clients at once (each create is a durable commit).
my @keys;
{
    my @kids;
    pipe my $r, my $w or die "pipe: $!";
    for my $c (1 .. 8) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $r;
            my @k = map { $t->create_key($ws->{id}, permission => 'read_write', name => "c$c-$_") }
                1 .. $KEYS / 8;
            print {$w} map { "$_->{id} $_->{key}\n" } @k;
            close $w;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    close $w;
    while (<$r>) { my ($id, $key) = split; push @keys, { id => $id, key => $key } }
    waitpid $_, 0 for @kids;
}
is scalar(@keys), $KEYS, "$KEYS keys created";
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
