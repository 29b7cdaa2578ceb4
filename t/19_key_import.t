# Bulk key import (POST /api/v1/workspaces/{id}/api-keys/import) end to end: keys whose
# raw values only the test knows are imported as SHA-256 + prefix, then nginx admits
# them (200), refuses a read_only key's POST (403) and an expired one (401); a bad batch
# leaves nothing behind; the feed has one summary entry; a second import of the same hash
# is a conflict; an imported key's rate limit, last_used_at and created_by; feed paging around
# the import's entry; the import route has its own body limit (for a valid admin token only),
# the others keep theirs; apikeyd SIGKILLed during an import: all or nothing after the restart.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use ApiKeyTest;

my $t = ApiKeyTest->new(usage => 1,
                        http_extra     => '    apikey_rate_limit_zone zone=keys:1m;',
                        location_extra => '            apikey_rate_limit zone=keys;',
                        daemon_extra => "max_body_bytes: 4096\nmax_import_body_bytes: 1048576\n"
                                        . "max_import_items: 2000\n");
my $ws = $t->create_workspace('acme-corp', 'sales');
my $IMPORT = "/api/v1/workspaces/$ws->{id}/api-keys/import";
my $SALES = '/api/v1/acme-corp/sales/orders';
my $J = ApiKeyTest::json();

sub item {
    my ($raw, %f) = @_;
    return { key_sha256 => sha256_hex($raw), key_prefix => substr($raw, 0, 12), name => 'legacy', %f };
}
sub ndjson { join '', map { $J->encode($_) . "\n" } @_ }
sub import_body { $t->admin(POST => $IMPORT, undef, raw_body => $_[0],
                            headers => ['Content-Type' => 'application/x-ndjson']) }
sub key_ids { map { $_->{id} } $t->list_keys($ws->{id}) }  # paged: 1000 keys a page

my ($rw, $ro, $exp) = map { ApiKeyTest::make_key() } 1 .. 3;
ok ApiKeyTest::key_is_well_formed($_), 'test key is well formed' for $rw, $ro, $exp;
my $exp_at = time + 3;

# --- a bad batch leaves nothing behind ----------------------------------------------------
my $feed_before = scalar $t->feed(undef);
my $bad = import_body(ndjson(item($rw, permission => 'read_write'),
                             item($ro, key_prefix => 'sk_live_!!!!'),
                             item($exp, expires_at => '2001-01-01T00:00:00Z'),
                             item($rw)));
is $bad->{status}, 400, 'bad batch: 400';
is $bad->{json}{error}{code}, 'import_rejected', '  import_rejected';
is $bad->{json}{imported}, 0, '  nothing imported';
is_deeply [ map { [ $_->{line}, $_->{code} ] } @{ $bad->{json}{errors} } ],
    [ [ 2, 'invalid_field' ], [ 3, 'invalid_field' ], [ 4, 'conflict' ] ],
    '  every bad item listed by line, the duplicate as a conflict';
is scalar(key_ids()), 0, '  no key stored';
is scalar($t->feed(undef)), $feed_before, '  no feed entry';
is $t->api(GET => $SALES, key => $rw)->{status}, 401, '  nginx does not know the good item either';

# --- a good batch -------------------------------------------------------------------------
my $ok = import_body(ndjson(item($rw, permission => 'read_write'),
                            item($ro),
                            item($exp, permission => 'read_write',
                                 expires_at => ApiKeyTest::iso8601($exp_at))));
is $ok->{status}, 201, 'import: 201' or diag $ok->{body};
is $ok->{json}{imported}, 3, '  3 keys';
is_deeply [ map { $_->{line} } @{ $ok->{json}{keys} } ], [ 1, 2, 3 ], '  a result per line';
is_deeply [ key_ids() ], [ map { $_->{id} } @{ $ok->{json}{keys} } ], '  listed in line order';
unlike $ok->{raw}, qr/\Q@{[ sha256_hex($rw) ]}\E/, '  the answer holds no hash';

is $t->api(GET => $SALES, key => $rw)->{status}, 200, 'imported read_write key: GET 200';
is $t->api(POST => $SALES, key => $rw, body => '{}')->{status}, 200, '  POST 200';
is $t->api(GET => $SALES, key => $ro)->{status}, 200, 'imported read_only key: GET 200';
my $denied = $t->api(POST => $SALES, key => $ro, body => '{}');
is $denied->{status}, 403, '  POST 403';
is $denied->{json}{error}{code}, 'read_only_key', '  read_only_key';
is $t->api(GET => $SALES, key => $exp)->{status}, 200, 'key with expires_at: 200 before it';
my $expired = $t->wait_until(sub {
    my $x = $t->api(GET => $SALES, key => $exp);
    $x->{status} == 401 ? $x : undef;
}, 8);
ok $expired, '  401 after it';
is $expired && $expired->{json}{error}{code}, 'key_expired', '  key_expired';
ok time >= $exp_at - 1, '  not before it';
is $t->api(GET => $SALES, key => ApiKeyTest::make_key())->{status}, 401, 'a key never imported: 401';

# An imported key's own rate limit holds in nginx; its use reaches last_used_at; it was
# created by the importing admin token, at the time of the import.
my $limited = ApiKeyTest::make_key();
my $lim = import_body(ndjson(item($limited, rate_limit => { limit => 2, window_seconds => 60 })));
is $lim->{status}, 201, 'import of a rate-limited key: 201' or diag $lim->{body};
my @codes = map { $t->api(GET => $SALES, key => $limited)->{status} } 1 .. 3;
is "@codes", '200 200 429', '  its rate limit in nginx: 2 admitted, then 429';
my $lim_key = "/api/v1/workspaces/$ws->{id}/api-keys/$lim->{json}{keys}[0]{id}";
my $shown = $t->wait_until(sub {
    my $k = $t->admin(GET => $lim_key)->{json};
    defined $k->{last_used_at} ? $k : undef;
}, 10);
ok $shown, '  last_used_at set within 10 s';
is $shown && $shown->{created_by}, 'test-admin', '  created_by: the admin token';
ok $shown && abs(ApiKeyTest::parse_iso8601($shown->{created_at}) - time) < 30, '  created_at: now';

# --- the feed -----------------------------------------------------------------------------
my @feed = $t->feed($ws->{id});
my @imported = grep { $_->{type} eq 'api_key.imported' } @feed;
is scalar(@imported), 2, 'one api_key.imported entry per import';
is scalar(grep { $_->{type} eq 'api_key.created' } @feed), 0, '  and no per-key entries';
is $imported[0]{object}{count}, 3, '  count 3';
is $imported[0]{object}{first_key_id}, $ok->{json}{keys}[0]{id}, '  first key id';
is $imported[0]{object}{last_key_id}, $ok->{json}{keys}[2]{id}, '  last key id';
is $imported[0]{seq}, $ok->{json}{seq}, '  seq of the import';
unlike $J->encode($imported[0]), qr/\Q@{[ sha256_hex($ro) ]}\E|sk_live_/, '  no hash, no prefix';
for my $feed ("/api/v1/workspaces/$ws->{id}/changes", '/api/v1/changes') {
    my $page = $t->admin(GET => "$feed?after=@{[ $ok->{json}{seq} - 1 ]}&limit=1")->{json}{changes};
    is_deeply [ map { "$_->{seq} $_->{type}" } @$page ], [ "$ok->{json}{seq} api_key.imported" ],
        "  $feed?after=seq-1&limit=1: the import's entry alone";
}

# --- a second import of the same hash -----------------------------------------------------
my $again = import_body(ndjson(item(ApiKeyTest::make_key()), item($ro)));
is $again->{status}, 409, 'the same hash again: 409';
is_deeply [ map { [ $_->{line}, $_->{code} ] } @{ $again->{json}{errors} } ], [ [ 2, 'conflict' ] ],
    '  line 2 conflicts';
is scalar(key_ids()), 4, '  nothing added';
my $revoked = $t->revoke_key($ws->{id}, $ok->{json}{keys}[0]{id});
is $t->api(GET => $SALES, key => $rw)->{status}, 401, 'imported key revoked: 401';

# --- a compressed body -------------------------------------------------------------------
# apikeyd does not decode content codings: 415, not a gzip body read as NDJSON (each of its
# "lines" not a JSON object) nor a plain body labelled gzip imported as if unlabelled.
my $plain = ndjson(item(ApiKeyTest::make_key()));
for my $coding ('gzip', 'deflate, identity') {
    my $r = $t->admin(POST => $IMPORT, undef, raw_body => $plain,
                      headers => [ 'Content-Encoding' => $coding ]);
    is $r->{status}, 415, "Content-Encoding: $coding: 415" or diag $r->{body};
    is $r->{json}{error}{code}, 'unsupported_media_type', '  unsupported_media_type';
}
is $t->admin(POST => $IMPORT, undef, raw_body => $plain, headers => [ 'Content-Encoding' => 'identity' ])
    ->{status}, 201, 'Content-Encoding: identity: imported';

# --- limits -------------------------------------------------------------------------------
my @many = map { item(ApiKeyTest::make_key()) } 1 .. 1500;  # ~200 KB: over max_body_bytes
my $big = import_body(ndjson(@many));
is $big->{status}, 201, 'import body over max_body_bytes but under max_import_body_bytes: 201'
    or diag $big->{body};
is $big->{json}{imported}, 1500, '  1500 keys';
my $small = $t->admin(POST => '/api/v1/workspaces', undef, raw_body => 'x' x 5000);
is $small->{status}, 413, 'other routes keep max_body_bytes: 413';
my $huge = import_body('x' x 1048577);
is $huge->{status}, 413, 'over max_import_body_bytes: 413';
is $huge->{json}{error}{code}, 'payload_too_large', '  payload_too_large JSON';
# The import's larger limit is for admins only: the body is buffered whole before the
# request is authenticated, so without a valid token any client could make apikeyd hold
# max_import_body_bytes per connection (4 of 200 MB held 819 MB). A body over
# max_body_bytes is admitted at the header as every request is (401, logged and counted
# against the address; a 413 there told a right token from a wrong one, unlimited); a
# small body gets its 401 from the handler, counted once.
my $failures = () = $t->daemon_log =~ /admin authentication failed/g;
for my $case ([ 'no token', no_token => 1 ], [ 'a wrong token', token => 'not-an-admin-token' ]) {
    my ($what, @auth) = @$case;
    my $r = $t->admin(POST => $IMPORT, undef, raw_body => ndjson(@many), @auth);
    is $r->{status}, 401, "import with $what, body over max_body_bytes: 401 at the header"
        or diag $r->{body};
    is $r->{json}{error}{code}, 'unauthorized', '  unauthorized';
    is $t->admin(POST => $IMPORT, undef, raw_body => ndjson(item(ApiKeyTest::make_key())), @auth)
        ->{status}, 401, "  a small body with $what: 401";
}
ok $t->wait_until(sub { (() = $t->daemon_log =~ /admin authentication failed/g) == $failures + 4 }, 2),
    'each of the four logged once as a failed admin authentication' or diag $t->daemon_log;
my $count = import_body(ndjson(map { item(ApiKeyTest::make_key()) } 1 .. 2001));
is $count->{status}, 413, 'over max_import_items: 413';
is scalar(key_ids()), 1505, 'nothing of the refused batches stored';

# --- apikeyd SIGKILLed during an import ---------------------------------------------------
# Whatever the moment (the body still arriving, parsing, the store or the snapshot
# transaction), after the restart the batch is wholly there or wholly absent: in the list,
# the feed and nginx; and a 201 the client got is never lost.
use Time::HiRes qw(sleep);
for my $delay (0.002, 0.015, 0.04) {
    my @raw = map { ApiKeyTest::make_key() } 1 .. 2000;
    my $body = ndjson(map { item($_) } @raw);
    my $keys_before = scalar key_ids();
    my ($feed_top) = reverse $t->feed($ws->{id});
    $t->start_clients(1, 10, sub {
        my ($c, $out) = @_;
        my $r = import_body($body);
        print {$out} 'STATUS ', $r->{status} // 'none', "\n";
    });
    sleep $delay;
    $t->stop_daemon(signal => 'KILL');
    $t->stop_clients;
    $t->start_daemon;
    my ($answer) = map { /^STATUS (\S+)/ ? $1 : () } $t->client_lines;
    my $added = scalar(key_ids()) - $keys_before;
    my @entries = grep { $_->{seq} > $feed_top->{seq} } $t->feed($ws->{id});
    note "SIGKILL after ${delay}s: client got @{[ $answer // 'nothing' ]}, $added keys";
    ok $added == 0 || $added == 2000, "SIGKILL after ${delay}s: all or nothing in the list ($added)";
    is scalar(@entries), $added ? 1 : 0, '  one feed entry if imported, none if not';
    is $entries[0]{object}{count}, 2000, '  of the whole batch' if @entries;
    is $added, 2000, '  a 201 was not lost' if ($answer // '') eq '201';
    my $want = $added ? 200 : 401;
    ok $t->wait_until(sub {
        $t->api(GET => $SALES, key => $raw[0])->{status} == $want
            && $t->api(GET => $SALES, key => $raw[-1])->{status} == $want
    }, 5), "  nginx: first and last key $want";
}

done_testing;
