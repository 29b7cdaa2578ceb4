# A rate-limit zone keeps a key's state in one set of 8 slots, chosen by the first four
# bytes of the key's SHA-256 (little-endian, scaled to the number of sets nginx logs).
# A key finding its set full takes a slot whose state has recovered if there is one;
# else it evicts the set's least recently used state (the nearest to recovering among
# equals), whose key starts again with a full budget, and nginx warns. This test
# imports 1,500 keys, takes ten that share a set, and fills it (default 2/10s, GCRA:
# a request is given back every 5 s, so one request leaves a state recovered after 5 s
# and two leave it limiting for 10 s).
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use Digest::SHA qw(sha256 sha256_hex);
use ApiKeyTest;

my $CANDIDATES = 1500;   # 32k: about 110 sets, so about 13 keys a set
my $t = ApiKeyTest->new(
    workers        => 2,
    http_extra     => '    apikey_rate_limit_zone zone=keys:32k;',
    location_extra => '            apikey_rate_limit zone=keys default=2/10s;',
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $PATH = '/api/v1/acme-corp/sales/orders';
my $J = ApiKeyTest::json();
sub get { $t->api(GET => $PATH, key => $_[0]{key})->{status} }
sub limit { my ($k, $what) = @_; is_deeply [ map { get($k) } 1 .. 3 ], [ 200, 200, 429 ], $what }

my ($sets) = $t->error_log =~ /rate limit zone "keys" holds \d+ states in (\d+) sets of 8/;
ok $sets, 'nginx says how many sets the zone has' or BAIL_OUT 'no zone notice';

# the set a key falls in, as ngx_http_apikey_rate_limit.c computes it from its SHA-256
sub set_of { int(unpack('V', sha256($_[0]{key})) * $sets / 2**32) }

my @raw = map { ApiKeyTest::make_key() } 1 .. $CANDIDATES;
my $r = $t->admin(POST => "/api/v1/workspaces/$ws->{id}/api-keys/import", undef,
    raw_body => join('', map { $J->encode({ key_sha256 => sha256_hex($_),
                                            key_prefix => substr($_, 0, 12),
                                            name => 'candidate' }) . "\n" } @raw),
    headers => ['Content-Type' => 'application/x-ndjson']);
is $r->{status}, 201, "$CANDIDATES keys imported" or BAIL_OUT $r->{body};
my @keys = map { { id => $_->{id}, key => $raw[ $_->{line} - 1 ] } } @{ $r->{json}{keys} };

my %by_set;
push @{ $by_set{ set_of($_) } }, $_ for @keys;
my ($set) = sort { @{ $by_set{$b} } <=> @{ $by_set{$a} } } keys %by_set;
my ($cold, $brief, $hot, @rest) = @{ $by_set{$set} };
cmp_ok scalar(@rest), '>=', 7, 'ten keys share a set' or BAIL_OUT 'no set of ten';
my @fresh = @rest[ 0 .. 4 ];
my ($next1, $next2) = @rest[ 5 .. 6 ];
my ($probe) = grep { set_of($_) != $set } @keys;
ok $t->wait_until(sub { get($probe) == 200 }, 3), 'keys published';

limit($hot, 'hot spends its budget and is limited');
limit($cold, 'cold spends its budget and is limited (nearer to recovering than hot)');
sleep 1.1;   # the set's LRU order is kept in whole seconds
is get($hot), 429, 'hot, used again, is refused';
is get($brief), 200, 'brief spends half its budget (recovered 5 s later)';
is_deeply [ map { get($_), get($_) } @fresh ], [ (200) x 10 ], 'five fresh keys spend theirs';
# the set is full: hot, cold, brief, five fresh keys
sleep 5.1;   # brief has recovered; the others are still limiting
is get($next1), 200, 'a new key in the full set';
unlike $t->error_log, qr/rate limit zone "keys" is full/,
    '  took the recovered slot: no limited state evicted (cold, the least recently used, stays)';
is get($next2), 200, 'another new key, every state of the set still limiting';
like $t->error_log, qr/\[warn\].*rate limit zone "keys" is full: evicted the state of a key still being limited/,
    '  evicted one, with a warning';
# GCRA gives a request back every 5 s: a state kept answers 200 then 429, a new one 200, 200
is_deeply [ get($hot), get($hot) ], [ 200, 429 ],
    'hot, used a second after cold, kept its state (nearer to recovering, it would go first)';
is_deeply [ get($cold), get($cold) ], [ 200, 200 ],
    'cold, the least recently used, was evicted: its whole budget is back';
is join("\n", grep { /\[(?:alert|crit|emerg)\]/ } split /\n/, $t->error_log), '', 'no alert';

done_testing;
