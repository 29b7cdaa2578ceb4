# A full rate-limit zone evicts the least recently used state, and a key in use keeps
# its state even though a state moves to the head of the LRU queue at most once a
# second (the move writes shared cache lines, so it is not done on every request):
# a key used every second stays limited while 240 fresh keys (1/60s: every state
# limited for a minute, none expires on its own) overflow a 32k zone, and a key not
# used again is evicted, its budget restarting.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use ApiKeyTest;

my $FRESH = 240;   # a 32k zone holds fewer states than this
my $ROUNDS = 4;
my $t = ApiKeyTest->new(
    workers        => 2,
    http_extra     => '    apikey_rate_limit_zone zone=keys:32k;',
    location_extra => '            apikey_rate_limit zone=keys default=1/60s;',
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $PATH = '/api/v1/acme-corp/sales/orders';
sub get { $t->api(GET => $PATH, key => $_[0]{key})->{status} }

my $hot = $t->create_key($ws->{id}, permission => 'read_only');
my $cold = $t->create_key($ws->{id}, permission => 'read_only');
my @fresh = map { $t->create_key($ws->{id}, permission => 'read_only') } 1 .. $FRESH;
ok $t->wait_until(sub { get($fresh[-1]) == 200 }, 3), 'keys published';
shift @fresh;  # its state is in the zone already

is get($hot), 200, 'the hot key spends its budget';
is get($hot), 429, '  and is limited';
is get($cold), 200, 'the cold key spends its budget';
is get($cold), 429, '  and is limited';

my $per_round = int(@fresh / $ROUNDS);
my @hot;
for my $round (1 .. $ROUNDS) {
    my %seen;
    $seen{ get($_) }++ for splice @fresh, 0, $per_round;
    is_deeply \%seen, { 200 => $per_round }, "round $round: $per_round fresh keys pass";
    sleep 1.1;  # more than the at-most-once-a-second of a move
    push @hot, get($hot);
}
is_deeply \@hot, [ (429) x $ROUNDS ], 'the hot key, used every second, stayed limited';
is get($cold), 200, 'the cold key was evicted: its budget restarted';
like $t->error_log, qr/\[warn\].*rate limit zone "keys" is full: evicted the state of a key still being limited/,
    'the eviction of limited states is warned about';
is join("\n", grep { /\[(?:alert|crit|emerg)\]/ } split /\n/, $t->error_log), '', 'no alert';

done_testing;
