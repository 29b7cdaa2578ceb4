# snapshot_map_size_mb too small for what is published: apikeyd grows the snapshot map
# (MDB_MAP_FULL -> mdb_env_set_mapsize, the publish run again) instead of failing every
# change from then on; nginx workers that had the smaller map open adopt the new size
# (MDB_MAP_RESIZED) and admit the imported keys; revokes keep working. A restart with the
# same small setting starts. The log names the setting.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use ApiKeyTest;

my $t = ApiKeyTest->new(daemon_extra => "snapshot_map_size_mb: 1\n");
my $ws = $t->create_workspace('acme-corp', 'sales');
my $W = "/api/v1/workspaces/$ws->{id}";
my $SALES = '/api/v1/acme-corp/sales/orders';
my $J = ApiKeyTest::json();

# Workers map the 1 MiB snapshot first.
my $first = $t->create_key($ws->{id}, permission => 'read_write');
is $t->api(GET => $SALES, key => $first->{key})->{status}, 200, 'a key works on the 1 MiB map';

# ~20,000 keys are about 2.5 MB of key table: more than the map holds.
my @raw = map { ApiKeyTest::make_key() } 1 .. 20000;
my $body = join '', map {
    $J->encode({ key_sha256 => sha256_hex($_), key_prefix => substr($_, 0, 12), name => 'bulk',
                 permission => 'read_write' }) . "\n"
} @raw;
my $r = $t->admin(POST => "$W/api-keys/import", undef, raw_body => $body);
is $r->{status}, 201, 'an import larger than snapshot_map_size_mb: 201 (the map grew)'
    or diag substr($r->{body} // '', 0, 500);
is $r->{json}{imported}, 20000, '  every key imported';
like $t->daemon_log, qr/snapshot map grown from 1 MiB to \d+ MiB .*snapshot_map_size_mb is 1/,
    '  the growth is logged, naming the setting';

# The workers that had the 1 MiB map open see the new keys.
for my $i (0, 9999, 19999) {
    is $t->api(GET => $SALES, key => $raw[$i])->{status}, 200, "imported key $i admitted by nginx";
}
is $t->api(GET => $SALES, key => $first->{key})->{status}, 200, 'the earlier key still admitted';

# Changes go on: a revoke is published and enforced at once.
$t->revoke_key($ws->{id}, $first->{id});
is $t->api(GET => $SALES, key => $first->{key})->{json}{error}{code}, 'key_revoked', 'a revoke after the growth is enforced';
my $later = $t->create_key($ws->{id});
is $t->api(GET => $SALES, key => $later->{key})->{status}, 200, 'a new key works';
is $t->admin(GET => '/healthz', undef, no_token => 1)->{status}, 200, 'healthy';

# A restart with the same small setting starts (the file keeps its grown size).
$t->stop_daemon;
$t->start_daemon;
is $t->admin(GET => '/healthz', undef, no_token => 1)->{status}, 200, 'restarted with snapshot_map_size_mb: 1';
my $after = $t->create_key($ws->{id});
is $t->api(GET => $SALES, key => $after->{key})->{status}, 200, 'and publishes';
is $t->api(GET => $SALES, key => $raw[42])->{status}, 200, 'imported keys still admitted';
unlike $t->daemon_log, qr/MDB_MAP_FULL/, 'no publish failed';

done_testing;
