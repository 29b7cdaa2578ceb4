# The snapshot out of the page cache (after a reboot, memory pressure, a copy): a fresh
# worker reads it back with read-ahead, a few large reads, not one 4 KiB read at random
# per page it touches (LMDB's MDB_NORDAHEAD did that: a fresh 2-worker nginx on an
# uncached 1M-key snapshot took ~30,000 major faults and served a few hundred requests
# a second for seconds; docs/BENCHMARKS.md "Other findings"). Counted as the worker's
# major page faults, not timed.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use ApiKeyTest;

my $t = ApiKeyTest->new(workers => 1,
                        daemon_extra => "max_import_body_bytes: 16777216\nmax_import_items: 40000\n");
my $ws = $t->create_workspace('acme-corp', 'sales');
my $J = ApiKeyTest::json();

# 40,000 keys: a snapshot of ~1,200 pages, the keys spread over all of them.
my @raw = map { ApiKeyTest::make_key() } 1 .. 40_000;
my $body = join '', map {
    $J->encode({ key_sha256 => sha256_hex($_), key_prefix => substr($_, 0, 12), name => 'bulk' }) . "\n"
} @raw;
my $r = $t->admin(POST => "/api/v1/workspaces/$ws->{id}/api-keys/import", undef, raw_body => $body,
                  headers => ['Content-Type' => 'application/x-ndjson']);
is $r->{status}, 201, 'imported 40,000 keys' or diag $r->{body};
my $SALES = '/api/v1/acme-corp/sales/orders';
my $data = $t->snapshot_path . '/data.mdb';
my $resident = sub { (split ' ', `fincore --bytes --noheadings --output RES '$data'`)[0] // 0 };
my $fs = `stat -f -c %T '$data'` // '';

# The import rewrote the key table (~4.7 MB of buckets): apikeyd dropped it from the page
# cache, so that workers read it back in 2 MB folios where the kernel can (README, "2 MB
# pages"). Checked before any request reads it back.
SKIP: {
    skip "the snapshot is on $fs: its pages are the file, nothing to drop", 1 if $fs =~ /tmpfs/;
    my $after_import = $resident->();
    cmp_ok $after_import, '<', (-s $data) / 4,
        "apikeyd dropped the snapshot it rewrote from the page cache ($after_import of "
        . (-s $data) . ' bytes cached)';
}

ok $t->wait_until(sub { ($t->api(GET => $SALES, key => $raw[-1])->{status} // 0) == 200 }, 5),
    'nginx admits the last one';

# Drop the snapshot from the page cache: nginx stopped, written back, then
# POSIX_FADV_DONTNEED (dd's iflag=nocache). Pages some process still maps stay cached.
$t->stop_nginx;
system('sync') == 0 or die 'sync failed';
system('dd', "if=$data", 'iflag=nocache', 'count=0', 'status=none') == 0 or die 'dd failed';
my $pages = int((-s $data) / 4096);
my $cached = $resident->();
SKIP: {
    skip "could not drop the snapshot from the page cache ($cached bytes stay)", 3
        if $cached > (-s $data) / 4;

    $t->start_nginx;
    my ($worker) = $t->worker_pids;
    my $major_faults = sub { (split ' ', ApiKeyTest::_slurp("/proc/$worker/stat") =~ s/^.*\) //sr)[9] };
    my $before = $major_faults->();
    # 300 keys drawn over the whole table: with one read per page touched, ~300 reads.
    my $admitted = 0;
    for my $i (0 .. 299) {
        $admitted++ if ($t->api(GET => $SALES, key => $raw[$i * 133])->{status} // 0) == 200;
    }
    is $admitted, 300, '300 keys from all over the snapshot admitted';
    my $faults = $major_faults->() - $before;
    cmp_ok $faults, '<', 60, "the worker read the uncached snapshot in a few reads ($faults "
        . "major faults for 300 keys over $pages pages)";

    # The map is advised for 2 MB pages (smaps VmFlags "hg"); where the kernel puts the
    # pages read back into 2 MB folios, they are mapped whole (FilePmdMapped).
    my ($map) = grep { m{ \Q$data\E\n} } split /(?=^[0-9a-f]+-[0-9a-f]+ )/m,
        ApiKeyTest::_slurp("/proc/$worker/smaps");
    SKIP: {
        skip 'this kernel has no transparent huge pages', 1
            unless -e '/sys/kernel/mm/transparent_hugepage/enabled';
        like $map // '', qr/^VmFlags:.* hg\b/m, "the worker's map of data.mdb is advised for 2 MB pages";
    }
    diag 'data.mdb in the worker: ' . join ', ', ($map // '') =~ /^((?:Rss|FilePmdMapped):\s+\d+ kB)/mg;
}

# A rebuild at apikeyd's start (here: of a removed snapshot) writes the whole key table
# too, through the same publish: the snapshot is out of the page cache before nginx
# opens it. (apikeyd answers on its port only once the start's publish is done.)
$t->stop_nginx;
$t->stop_daemon;
unlink glob($t->snapshot_path . '/*.mdb');
$t->start_daemon;
like $t->daemon_log, qr/snapshot rebuilt from the store/, 'apikeyd rebuilt the removed snapshot at start';
SKIP: {
    skip "the snapshot is on $fs: its pages are the file, nothing to drop", 1 if $fs =~ /tmpfs/;
    my $after_rebuild = $resident->();
    cmp_ok $after_rebuild, '<', (-s $data) / 4,
        "... and dropped it from the page cache ($after_rebuild of " . (-s $data) . ' bytes cached)';
}
$t->start_nginx;
ok $t->wait_until(sub { ($t->api(GET => $SALES, key => $raw[7])->{status} // 0) == 200 }, 5),
    'nginx admits a key from the rebuilt snapshot';

done_testing;
