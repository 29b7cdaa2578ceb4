# Fault injection: the disk under data_dir and the snapshot full, then unwritable.
#
# A small tmpfs holds both (data_dir and snapshot_path are symlinks into it).
#   full:       a filler file takes every free block; admin writes then fail with a JSON
#               5xx, nothing is corrupted (earlier keys keep working in nginx and through
#               the API, reads still work), and writes work again once the filler is gone.
#   unwritable: a read-only remount is refused while apikeyd holds its files open for
#               writing (EBUSY), and root ignores file modes; so writes are failed with
#               EROFS/EIO by an LD_PRELOAD shim (t/lib/fault_shim.c) in apikeyd, first for
#               the store only, then for the snapshot only, then for both.
# At the end apikeyd is restarted on the same files: everything acknowledged is there,
# the change feed has one entry per stored key, and the generations agree.
use strict;
use warnings;
use Test::More;
use Cwd qw(abs_path);
use Errno qw(ENOSPC);
use Time::HiRes qw(time sleep);
use ApiKeyTest;

plan skip_all => 'needs root to mount a tmpfs' unless $> == 0;

my $t = ApiKeyTest->new(daemon => 0, nginx => 0, workers => 2, timeout => 170);
my $d  = abs_path($t->dir);
my $fs = "$d/fs";
mkdir $fs or die "mkdir $fs: $!";
my $mount_out = `mount -t tmpfs -o size=8m,mode=0755 apikey-fault '$fs' 2>&1`;
if ($?) {
    plan skip_all => "cannot mount a tmpfs here (sandbox?): $mount_out";
}
my $mounted = 1;
END { system('umount', '-l', $fs) if $mounted }    # also when the test dies

rmdir "$d/data" or die "rmdir $d/data: $!";
mkdir "$fs/data", 0700 or die;
mkdir "$fs/snapshot", 0750 or die;
symlink "$fs/data", "$d/data" or die;
symlink "$fs/snapshot", "$d/snapshot" or die;

$t->start_daemon;
$t->start_nginx;

my $ws   = $t->create_workspace('acme-corp', 'disk');
my $W    = "/api/v1/workspaces/$ws->{id}";
my $PATH = '/api/v1/acme-corp/disk/orders';
my $good    = $t->create_key($ws->{id}, name => 'before the disk filled');
my $revoked = $t->create_key($ws->{id}, name => 'revoked before the disk filled');
$t->revoke_key($ws->{id}, $revoked->{id});
my %acked = map { $_->{id} => $_ } $good, $revoked;   # every key that got a 201
my @unacked_tries;                                    # names of creates that got a 5xx

sub status_of { my $r = $t->api(GET => $PATH, key => $_[0]); $r->{status} // 0 }

# The data plane and the read side of the admin API are fine, whatever the disk does.
sub still_serving {
    my ($label) = @_;
    subtest "$label: nothing is corrupted" => sub {
        ok $t->wait_until(sub { status_of($good->{key}) == 200 }, 5), 'an earlier key is still admitted (200)';
        my $r = $t->api(GET => $PATH, key => $revoked->{key});
        is $r->{status}, 401, 'a key revoked earlier is still refused (401)';
        is $r->{json}{error}{code}, 'key_revoked', '  key_revoked';
        is $t->api(GET => $PATH, key => ApiKeyTest::make_key())->{status}, 401, 'an unknown key 401';
        $r = $t->admin(GET => "$W/api-keys/$good->{id}");
        is $r->{status}, 200, 'the earlier key reads back through the API';
        is $r->{json}{name}, $good->{name}, '  unchanged';
        is $t->admin(GET => "$W/api-keys")->{status}, 200, 'the key list reads';
        is $t->admin(GET => "$W/changes")->{status}, 200, 'the feed reads';
    };
}

# A refused write: a 5xx with a JSON error body, and not a key.
sub refused_ok {
    my ($r, $label, $codes) = @_;
    subtest $label => sub {
        ok defined $r->{status} && $r->{status} >= 500 && $r->{status} <= 599,
            '5xx (' . ($r->{status} // 'none') . ')' or diag $r->{raw} // $r->{error};
        like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
        my $code = $r->{json} && ref $r->{json}{error} ? $r->{json}{error}{code} : undef;
        ok defined $code && grep({ $_ eq $code } @$codes), 'code ' . ($code // 'none') . " is one of @$codes"
            or diag $r->{body};
        ok !defined $r->{json}{key}, 'no key in the body';
    };
}

sub healthy {
    $t->wait_until(sub {
        my $h = $t->admin(GET => '/healthz');
        ($h->{status} // 0) == 200 && $h->{json}{generation} == $h->{json}{published_generation};
    }, 10);
}

# --- the disk full ----------------------------------------------------------------------------

{
    open my $fill, '>', "$fs/filler" or die "filler: $!";
    my $block = "\0" x 4096;
    my $blocks = 0;
    while (1) {
        my $n = syswrite $fill, $block;
        last unless defined $n && $n == length $block;
        $blocks++;
        last if $blocks > 100_000;    # 400 MB: the size= limit did not apply
    }
    my $err = $! + 0;
    close $fill;
    is $err, ENOSPC, "the tmpfs is full ($blocks blocks of filler; ENOSPC)";
}

my (%full_status, @full_refused);
my $full_failures = 0;
for my $i (1 .. 300) {
    my $name = sprintf('full %03d ', $i) . ('x' x 180);
    my $r = $t->admin(POST => "$W/api-keys", { name => $name, permission => 'read_write' });
    $full_status{ $r->{status} // 'none' }++;
    if (($r->{status} // 0) == 201) {
        $acked{ $r->{json}{id} } = $r->{json};
        next;
    }
    push @unacked_tries, $name;
    push @full_refused, $r;
    last if ++$full_failures >= 3;
}
diag 'creates while full: ' . join(', ', map { "$_=$full_status{$_}" } sort keys %full_status);
ok @full_refused, 'with the disk full, creating keys fails sooner or later';
refused_ok($full_refused[0], 'the first refused create', [qw(store_unavailable publish_failed)])
    if @full_refused;
is_deeply [ grep { $_ ne '201' && !/^5\d\d$/ } keys %full_status ], [],
    'every create answered 201 or a 5xx (no hang, no 4xx, no dropped connection)';
my $r = $t->admin(PUT => "$W/settings", { maxExpandDepth => 3 });
ok(($r->{status} // 0) >= 500 || ($r->{status} // 0) == 200, 'a settings write answers 200 or a 5xx')
    or diag $r->{raw};
refused_ok($r, 'a settings write while full', [qw(store_unavailable publish_failed)])
    if ($r->{status} // 0) != 200;
still_serving('disk full');
my @full_acked_keys = grep { $_->{name} =~ /^full / } values %acked;
my @full_acked_refused = grep { status_of($_->{key}) != 200 && ($_->{status} // '') ne 'revoked' }
    grep { defined $_->{key} } @full_acked_keys;
is scalar @full_acked_refused, 0, 'keys acknowledged while the disk was filling are admitted by nginx ('
    . scalar(@full_acked_keys) . ')';

# Space comes back.
unlink "$fs/filler" or die "unlink filler: $!";
my $back;
ok $t->wait_until(sub {
    $back = $t->admin(POST => "$W/api-keys", { name => 'after the disk full', permission => 'read_write' });
    ($back->{status} // 0) == 201;
}, 10), 'space returned: creating a key works again (within 10 s, no restart)';
$acked{ $back->{json}{id} } = $back->{json} if ($back->{status} // 0) == 201;
ok $t->wait_until(sub { status_of($back->{json}{key} // '') == 200 }, 5), '  and nginx admits it';
ok healthy(), '/healthz 200, the snapshot at the store generation';
still_serving('after the disk full');

# --- unwritable (EROFS/EIO from every write, as on a disk gone read-only) ----------------------

my $ro = `mount -o remount,ro '$fs' 2>&1`;
if (!$?) {
    # The kernel let us: writes really fail now. Give it back right away (the shim below
    # does the thorough part).
    $r = $t->admin(POST => "$W/api-keys", { name => 'on a read-only remount' });
    push @unacked_tries, 'on a read-only remount' if ($r->{status} // 0) != 201;
    refused_ok($r, 'read-only remount: a create', [qw(store_unavailable publish_failed)]);
    system('mount', '-o', 'remount,rw', $fs) == 0 or BAIL_OUT("cannot remount $fs read-write");
} else {
    chomp $ro;
    diag "read-only remount while apikeyd holds its files open is refused, as expected: $ro";
}

SKIP: {
    my $so = "$d/fault_shim.so";
    my $cc_out = `cc -shared -fPIC -O2 -o '$so' '$ApiKeyTest::REPO/t/lib/fault_shim.c' -ldl 2>&1`;
    skip "cannot build the LD_PRELOAD shim: $cc_out", 1 if $? || !-f $so;

    my $flag = "$d/fault.flag";
    $t->stop_daemon;
    {
        # After the sanitizer runtime when there is one (make test-sanitize): a sanitized
        # apikeyd refuses to start unless ASan comes first in the library list.
        local $ENV{LD_PRELOAD} = join ' ', grep { defined && length }
            $ApiKeyTest::NGINX_ENV{LD_PRELOAD}, $so;
        local $ENV{FAULT_SHIM_FLAG} = $flag;
        $t->start_daemon;
    }
    my $set = sub {
        my ($errno, $prefix) = @_;
        open my $fh, '>', "$flag.tmp" or die;
        print {$fh} "$errno $prefix\n";
        close $fh;
        rename "$flag.tmp", $flag or die;
    };
    my $generation = sub { $t->admin(GET => '/healthz')->{json}{generation} };
    my $count = sub { scalar @{ $t->admin(GET => "$W/api-keys")->{json} // [] } };

    # The store refuses writes: nothing is stored, nothing published.
    ok healthy(), 'apikeyd (with the shim) is healthy before the fault';
    my ($g0, $n0) = ($generation->(), $count->());
    $set->('EROFS', "$fs/data/");
    $r = $t->admin(POST => "$W/api-keys", { name => 'store read-only' });
    push @unacked_tries, 'store read-only' if ($r->{status} // 0) != 201;
    refused_ok($r, 'store unwritable (EROFS): create key', ['store_unavailable']);
    $r = $t->admin(DELETE => "$W/api-keys/$good->{id}");
    refused_ok($r, 'store unwritable: revoke key', ['store_unavailable']);
    is $generation->(), $g0, '  the store generation did not move';
    is $count->(), $n0, '  no key was added';
    still_serving('store unwritable');
    unlink $flag;
    $r = $t->admin(POST => "$W/api-keys", { name => 'store writable again', permission => 'read_write' });
    is $r->{status}, 201, 'store writable again: create works at once';
    $acked{ $r->{json}{id} } = $r->{json} if ($r->{status} // 0) == 201;
    ok $t->wait_until(sub { status_of($r->{json}{key} // '') == 200 }, 5), '  and nginx admits it';

    # The snapshot refuses writes: the change is stored, but not published (the client is
    # told so); nginx keeps serving the last snapshot; later writes are refused until the
    # snapshot can be written again, and then apikeyd catches up by itself.
    ok healthy(), 'healthy before the snapshot fault';
    ($g0, $n0) = ($generation->(), $count->());
    $set->('EIO', "$fs/snapshot/");
    $r = $t->admin(POST => "$W/api-keys", { name => 'snapshot unwritable 1' });
    push @unacked_tries, 'snapshot unwritable 1' if ($r->{status} // 0) != 201;
    refused_ok($r, 'snapshot unwritable (EIO): create key', ['publish_failed']);
    like $r->{json}{error}{message} // '', qr/stored but not yet published/i,
        '  the message says the change is stored but not yet published';
    my $h = $t->admin(GET => '/healthz');
    is $h->{status}, 503, '/healthz 503 while the snapshot cannot be written';
    is $h->{json}{status}, 'degraded', '  degraded';
    $r = $t->admin(POST => "$W/api-keys", { name => 'snapshot unwritable 2' });
    push @unacked_tries, 'snapshot unwritable 2' if ($r->{status} // 0) != 201;
    refused_ok($r, 'snapshot still unwritable: the next create is refused', ['publish_failed']);
    is $count->(), $n0 + 1, '  only the first was stored (the second refused before storing)';
    still_serving('snapshot unwritable');
    unlink $flag;
    ok healthy(), 'snapshot writable again: apikeyd republishes by itself (healthz 200 within 10 s)';
    $r = $t->admin(POST => "$W/api-keys", { name => 'snapshot writable again', permission => 'read_write' });
    is $r->{status}, 201, '  and creating works';
    $acked{ $r->{json}{id} } = $r->{json} if ($r->{status} // 0) == 201;
    ok $t->wait_until(sub { status_of($r->{json}{key} // '') == 200 }, 5), '  and nginx admits it';

    # Everything at once, EIO.
    $set->('EIO', "$fs/");
    $r = $t->admin(POST => "$W/api-keys", { name => 'all EIO' });
    push @unacked_tries, 'all EIO' if ($r->{status} // 0) != 201;
    refused_ok($r, 'the whole disk failing (EIO): create key', [qw(store_unavailable publish_failed)]);
    still_serving('whole disk EIO');
    unlink $flag;
    ok healthy(), 'disk back: healthy again';
}

# --- restart on the same files: nothing lost, nothing half-written -------------------------

$t->stop_daemon;
$t->start_daemon;
like $t->daemon_log, qr/snapshot up to date/, 'apikeyd restarts on a snapshot that is up to date';
ok healthy(), 'healthy after the restart';
my @listed = @{ $t->admin(GET => "$W/api-keys")->{json} // [] };
my %listed = map { $_->{id} => $_ } @listed;
my @lost = grep { !$listed{$_} } sort keys %acked;
is_deeply \@lost, [], 'every acknowledged key is still there' or diag explain \@lost;
my %tried = map { $_ => 1 } @unacked_tries, map { $_->{name} } values %acked;
my @strange = grep { !$tried{ $_->{name} } || !$_->{key_prefix} || !$_->{created_at} } @listed;
is_deeply \@strange, [], 'every stored key is complete and one a client asked for';
my @created = grep { $_->{type} eq 'api_key.created' } $t->feed($ws->{id});
is_deeply [ sort map { $_->{object}{id} } @created ], [ sort keys %listed ],
    'the feed has exactly one api_key.created per stored key';
my $g = $t->admin(GET => '/healthz')->{json};
my @global = $t->feed(undef);
is $g->{generation}, $global[-1]{seq}, 'the store generation is the last feed seq';
my @bad_nginx = grep { defined $_->{key} && $_->{id} ne $revoked->{id} && status_of($_->{key}) != 200 }
    values %acked;
is scalar @bad_nginx, 0, 'nginx admits every acknowledged, unrevoked key (' . scalar(keys %acked) . ' keys)';
is status_of($revoked->{key}), 401, 'and still refuses the revoked one';

unlike $t->error_log, qr/\[(?:alert|emerg)\]/, 'no alert/emerg in the nginx error log';
like $t->daemon_log, qr/store error|snapshot publish/, 'apikeyd logged the failures';

$t->stop_nginx;
$t->stop_daemon;
if (system('umount', $fs) == 0) { $mounted = 0 }
done_testing;
