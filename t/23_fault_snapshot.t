# Fault injection: a snapshot that is of an unknown format version, truncated (replaced by
# a short copy, or cut in place under running workers, down to nothing), or missing
# (deleted after it was in use, with apikeyd down or running), or restored without its
# lock.mdb. Extends t/05_cold_start.t (nginx before any snapshot):
# here the workers have been serving and the snapshot goes bad under them.
#
# In every case the module never admits a key it cannot verify (503 snapshot_unavailable,
# never 200), no worker crashes (a truncated data.mdb used to SIGBUS every worker, and
# every respawned one, in a loop), each worker logs one error for the problem (not one
# per request), and when apikeyd publishes a good snapshot again the same workers pick
# it up within about a second (no reload, no respawn).
use strict;
use warnings;
use Test::More;
use File::Copy qw(copy);
use File::Path qw(remove_tree);
use Time::HiRes qw(time sleep);
use ApiKeyTest;

my $WORKERS = 2;
my $t = ApiKeyTest->new(workers => $WORKERS, timeout => 170);
my $snap = $t->snapshot_path;
my $PATH = '/api/v1/acme-corp/snapfault/orders';
my $ws = $t->create_workspace('acme-corp', 'snapfault');
my $good = $t->create_key($ws->{id}, name => 'good', permission => 'read_write');
my $revoked = $t->create_key($ws->{id}, name => 'revoked');
$t->revoke_key($ws->{id}, $revoked->{id});
$t->create_key($ws->{id}, name => "filler $_") for 1 .. 60;   # a snapshot of several pages

my $MDB_LOAD = -x '/usr/bin/mdb_load' ? '/usr/bin/mdb_load' : undef;

sub status_of { $t->api(GET => $PATH, key => $_[0])->{status} // 0 }

ok $t->wait_until(sub { status_of($good->{key}) == 200 }, 5), 'the good key is admitted';

# Requests with the good key, the revoked key and no key while the snapshot is bad: every
# one a JSON 503 snapshot_unavailable (never 200, never a dropped connection). Each also
# has a key in its query string: the error lines name the request, never that key whole
# (the secret scan, one more test at the end).
my $stray = ApiKeyTest::make_key();
$t->add_secret($stray, 'a key put in the query string');
sub all_unavailable {
    my ($label) = @_;
    my (%seen, @bad);
    for my $i (1 .. 24) {
        my @key = $i % 3 == 0 ? () : (key => $i % 3 == 1 ? $good->{key} : $revoked->{key});
        my $r = $t->api(GET => "$PATH?api_key=$stray", @key);
        my $code = $r->{json} && ref $r->{json}{error} ? $r->{json}{error}{code} : '';
        $seen{ ($r->{status} // 'none') . " $code" }++;
        push @bad, ($r->{status} // "none: $r->{error}") . " $code"
            unless ($r->{status} // 0) == 503 && $code eq 'snapshot_unavailable';
    }
    is_deeply \@bad, [], "$label: 24 requests (good, revoked, no key) all 503 snapshot_unavailable"
        or diag explain \%seen;
}

# The error log since $from: [error] lines of the module, and crashed workers.
sub log_since {
    my ($from) = @_;
    my $log = substr $t->error_log, $from;
    my @errors = grep { /\[error\].*apikey/ } split /\n/, $log;
    my @crashes = grep { /exited on signal/ } split /\n/, $log;
    return (\@errors, \@crashes);
}

sub one_error_per_worker {
    my ($label, $from, $like) = @_;
    my ($errors, $crashes) = log_since($from);
    is_deeply $crashes, [], "$label: no worker crashed";
    ok @$errors >= 1 && @$errors <= $WORKERS,
        "$label: one error line per worker at most (" . scalar(@$errors) . '), not one per request'
        or diag explain $errors;
    ok !(grep { !/$like/ } @$errors), "$label: it says what is wrong ($like)" or diag explain $errors;
}

# apikeyd publishes again: the same workers (no reload, no respawn) admit the key again.
sub recovers {
    my ($label, %o) = @_;
    my %before = map { $_ => 1 } $t->worker_pids;
    $t->start_daemon unless $t->daemon_running;
    my $t0 = time;
    my $ok = $t->wait_until(sub {
        my %s;
        $s{ status_of($good->{key}) }++ for 1 .. 4;
        ($s{200} // 0) == 4;
    }, 8);
    ok $ok, sprintf('%s: a good snapshot again, the key is admitted on every worker (%.1f s)',
                    $label, time - $t0);
    is status_of($revoked->{key}), 401, "$label: and the revoked key refused";
    my @now = $t->worker_pids;
    is_deeply [ sort @now ], [ sort keys %before ], "$label: by the same workers (no reload, no respawn)";
}

sub expect_daemon_log {
    my ($re, $label) = @_;
    like $t->daemon_log, $re, $label;
}

# --- unknown format version, written in place -------------------------------------------

SKIP: {
    skip 'mdb_load (lmdb-utils) is not installed', 12 unless $MDB_LOAD;
    $t->stop_daemon;
    my $from = length $t->error_log;
    # meta/format = 99 (u64 little endian), in one write transaction, as a newer apikeyd
    # publishing a format this module does not know would.
    my $dump = join "\n", 'VERSION=3', 'format=bytevalue', 'type=btree', 'HEADER=END',
        ' ' . unpack('H*', 'format'), ' 6300000000000000', 'DATA=END', '';
    open my $load, '|-', $MDB_LOAD, '-s', 'meta', $snap or die "mdb_load: $!";
    print {$load} $dump;
    close $load;
    is $?, 0, 'meta/format set to 99 with mdb_load';
    all_unavailable('format 99');
    sleep 1.5;    # the watch timer's reopen attempts
    all_unavailable('format 99, after the reopen attempts');
    my ($errors, $crashes) = log_since($from);
    is_deeply $crashes, [], 'format 99: no worker crashed';
    # The view fails first (the format changed under an open snapshot), then reopening
    # says what the format is: two lines per worker, not one per request.
    ok @$errors >= 1 && @$errors <= 2 * $WORKERS,
        'format 99: at most two error lines per worker (' . scalar(@$errors) . '), not one per request'
        or diag explain $errors;
    ok((grep { /has format 99, this module reads format \d+\b/ } @$errors),
       'format 99: the log names both formats') or diag explain $errors;
    recovers('format 99');
    expect_daemon_log(qr/snapshot rebuilt from the store/, 'format 99: apikeyd rebuilt the snapshot');
}

# --- truncated copy replacing the snapshot (a new inode) ----------------------------------

{
    $t->stop_daemon;
    my $from = length $t->error_log;
    my $size = -s "$snap/data.mdb";
    open my $in, '<:raw', "$snap/data.mdb" or die;
    read $in, my $head, int($size / 2);
    close $in;
    open my $out, '>:raw', "$snap/data.mdb.new" or die;
    print {$out} $head;
    close $out;
    chmod 0644, "$snap/data.mdb.new";
    rename "$snap/data.mdb.new", "$snap/data.mdb" or die;
    diag "data.mdb cut from $size to " . length($head) . ' bytes';
    sleep 1.5;    # the watch timer sees the new inode and tries it
    all_unavailable('truncated copy');
    one_error_per_worker('truncated copy', $from, qr/is truncated: data\.mdb has \d+ bytes, its newest commit needs \d+/);
    recovers('truncated copy');
    expect_daemon_log(qr/was truncated .*discarded, rebuilding it from the store/,
                      'truncated copy: apikeyd discarded it and rebuilt the snapshot');
}

# --- truncated in place, under the open snapshot ------------------------------------------

for my $cut ([ 'to its meta pages', 8192 ], [ 'to nothing', 0 ]) {
    my ($how, $bytes) = @$cut;
    $t->stop_daemon;
    my $from = length $t->error_log;
    truncate "$snap/data.mdb", $bytes or die "truncate: $!";
    # Within a second the watch timer notices and closes the snapshot, before any request
    # reads past the end of the file.
    sleep 1.5;
    all_unavailable("truncated in place $how");
    one_error_per_worker("truncated in place $how", $from, qr/truncated|not an LMDB file|Invalid argument|cannot open snapshot/);
    recovers("truncated in place $how");
}

# --- missing: deleted while in use, then new workers --------------------------------------

{
    $t->stop_daemon;
    my $from = length $t->error_log;
    remove_tree($snap);
    ok !-e $snap, 'snapshot directory deleted';
    sleep 1.5;
    # Workers that have it open keep serving it: it is complete and consistent, only no
    # longer updated (nothing could update it: apikeyd is down).
    is status_of($good->{key}), 200, 'deleted under open workers: they keep serving the snapshot they have';
    is status_of($revoked->{key}), 401, '  (the revoked key still refused)';
    my ($errors) = log_since($from);
    my @warns = grep { /\[warn\].*snapshot is gone from its path/ } split /\n/, substr($t->error_log, $from);
    ok @warns >= 1 && @warns <= $WORKERS, 'each worker warns once that it is gone (' . scalar(@warns) . ')'
        or diag explain \@warns;
    # New workers (nginx restarted) have nothing to open: 503.
    $t->stop_nginx;
    $from = length $t->error_log;
    $t->start_nginx;
    all_unavailable('missing, nginx restarted');
    sleep 1.5;
    all_unavailable('missing, after the retries');
    one_error_per_worker('missing', $from, qr/cannot open snapshot .*No such file or directory/);
    recovers('missing');
}

# --- missing: deleted while apikeyd runs ----------------------------------------------------
# apikeyd used to keep publishing into the deleted (orphaned) file: the old workers went on
# reading it, but any new worker (respawn, reload, restart) answered 503 until apikeyd was
# restarted. Its maintenance timer now notices and creates the snapshot anew.

{
    ok $t->daemon_running, 'apikeyd runs';
    my %workers = map { $_ => 1 } $t->worker_pids;
    remove_tree($snap);
    my $after = $t->create_key($ws->{id}, name => 'created after the deletion', permission => 'read_write');
    my $t0 = time;
    ok $t->wait_until(sub { -e "$snap/data.mdb" }, 6), sprintf(
        'deleted while apikeyd runs: it creates the snapshot anew (%.1f s)', time - $t0);
    ok $t->wait_until(sub {
        my %s;
        $s{ status_of($after->{key}) }++ for 1 .. 4;
        ($s{200} // 0) == 4;
    }, 6), '  the open workers switch to it: a key created after the deletion is admitted';
    is_deeply [ sort $t->worker_pids ], [ sort keys %workers ], '  (the same workers)';
    $t->stop_nginx;
    $t->start_nginx;
    is status_of($after->{key}), 200, '  and so do new workers (nginx restarted)';
    is status_of($revoked->{key}), 401, '  the revoked key still refused';
    like $t->daemon_log, qr/data\.mdb was deleted or replaced: creating it anew/, '  apikeyd logged it';
    is $t->admin(GET => '/healthz')->{status}, 200, '  /healthz 200';
}

# --- restored without lock.mdb, into a directory the workers may write -------------------
# A snapshot restored from a backup holds only data.mdb (what mdb_copy writes). When the
# workers may write its directory, the first worker to open it creates lock.mdb. The
# reader used to create it with mode 0000: after the next reload no worker could open it
# (Permission denied, every request 503 snapshot_unavailable) until someone chmod-ed it.
# It is created 0660 (less the workers' umask), as README "Permissions" has it.

{
    my $restored = $t->dir . '/restored';
    mkdir $restored or die "mkdir $restored: $!";
    copy("$snap/data.mdb", "$restored/data.mdb") or die "copy: $!";
    chmod 0640, "$restored/data.mdb";
    chmod 0700, $restored;
    if ($> == 0) {    # the workers run as nobody: the directory is theirs
        my ($uid, $gid) = ((getpwnam 'nobody')[2], (getgrnam 'nogroup')[2]);
        chown $uid, $gid, $restored, "$restored/data.mdb" or die "chown: $!";
    }
    ok !-e "$restored/lock.mdb", 'restored snapshot: data.mdb only, no lock.mdb';
    my $from = length $t->error_log;
    my %conf = (snapshot => 0, http_extra => "    apikey_snapshot $restored;");
    $t->reload_nginx(%conf);
    ok -e "$restored/lock.mdb", '  the workers created lock.mdb';
    $t->reload_nginx(%conf);    # new workers open the lock.mdb the old ones created
    my %seen;
    $seen{ status_of($good->{key}) }++ for 1 .. 8;
    is_deeply \%seen, { 200 => 8 }, '  after a reload the good key is admitted on every worker'
        or diag explain \%seen, [ grep { /apikey:/ } split /\n/, substr($t->error_log, $from) ];
    is status_of($revoked->{key}), 401, '  the revoked key still refused';
    my ($worker) = $t->worker_pids;
    my ($umask) = ApiKeyTest::_slurp("/proc/$worker/status") =~ /^Umask:\s*([0-7]+)/m;
    my $mode = (stat "$restored/lock.mdb")[2] & 07777;
    is sprintf('%04o', $mode), sprintf('%04o', 0660 & ~oct($umask // '022')),
        "  lock.mdb has mode 0660 less the workers' umask (" . ($umask // '?') . ')';
}

unlike $t->error_log, qr/exited on signal/, 'no worker crashed during the whole test';

done_testing;
