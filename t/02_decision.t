# The module's request decision, end to end: apikeyd issues keys, nginx enforces them.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

# A 10 KB token must reach the module (which rejects it with 401) rather than being
# refused by nginx core's default 8k header buffers (400/494): raise the buffer size.
my $t = ApiKeyTest->new(http_extra => '    large_client_header_buffers 4 32k;');

my $sales     = $t->create_workspace('acme-corp', 'sales');
my $inventory = $t->create_workspace('acme-corp', 'inventory');
my $rw = $t->create_key($sales->{id}, permission => 'read_write');
my $ro = $t->create_key($sales->{id}, permission => 'read_only');
my $inv_key = $t->create_key($inventory->{id}, permission => 'read_write');
my @all_raw_keys = map { $_->{key} } $rw, $ro, $inv_key;  # checked against the logs at the end

my $SALES = '/api/v1/acme-corp/sales/orders';
my $INV   = '/api/v1/acme-corp/inventory/items';

# Every rejection: status, JSON error body with the code, no key echoed, and
# WWW-Authenticate: Bearer on 401.
sub rejected {
    my ($r, $status, $code, $name, $secret) = @_;
    subtest $name => sub {
        is $r->{status}, $status, "status $status" or diag explain $r;
        like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON content type';
        my $e = ref $r->{json} eq 'HASH' ? $r->{json}{error} : undef;
        ok ref $e eq 'HASH', 'body {"error":{...}}' or diag $r->{body};
        is $e->{code}, $code, "code $code" if defined $code;
        ok defined $e->{message} && length $e->{message}, 'has a message';
        like $r->{headers}{'www-authenticate'} // '', qr/^Bearer\b/, 'WWW-Authenticate: Bearer'
            if $status == 401;
        unlike $r->{raw} // '', qr/\Q$secret\E/, 'the key is not echoed'
            if defined $secret && length $secret;
        unlike $r->{raw} // '', qr/sk_live_[0-9A-Za-z]{38}/, 'no key of any kind echoed';
        ok !defined $r->{json}{method}, 'the request did not reach the backend'
            if ref $r->{json} eq 'HASH';
    };
}

# Allowed: the backend answered and saw what the module told it.
sub allowed {
    my ($r, $key, $method, $name) = @_;
    subtest $name => sub {
        is $r->{status}, 200, 'status 200' or diag $r->{body};
        return if $method eq 'HEAD';
        my $j = $r->{json} // {};
        is $j->{method},       $method,            "backend saw $method";
        is $j->{key_id},       $key->{id},         'backend got X-Api-Key-Id';
        is $j->{permission},   $key->{permission}, 'backend got X-Api-Key-Permission';
        is $j->{workspace_id}, $key->{workspace_id}, 'backend got X-Api-Workspace-Id';
        is $j->{prefix},       $key->{key_prefix}, 'backend got X-Api-Key-Prefix';
    };
}

# --- permissions --------------------------------------------------------------------------

for my $m (qw(GET POST PUT PATCH DELETE)) {
    my $body = $m =~ /^(POST|PUT|PATCH)$/ ? '{"x":1}' : undef;
    allowed($t->api($m => $SALES, key => $rw->{key}, body => $body), $rw, $m,
            "read_write key: $m allowed");
}
allowed($t->api(GET => $SALES, key => $ro->{key}), $ro, 'GET', 'read_only key: GET allowed');
allowed($t->api(HEAD => $SALES, key => $ro->{key}), $ro, 'HEAD', 'read_only key: HEAD allowed');
allowed($t->api(GET => "$SALES?page=2", key => $ro->{key}), $ro, 'GET', 'query string is fine');
for my $m (qw(POST PUT PATCH DELETE)) {
    my $body = $m =~ /^(POST|PUT|PATCH)$/ ? '{"x":1}' : undef;
    rejected($t->api($m => $SALES, key => $ro->{key}, body => $body), 403, 'read_only_key',
             "read_only key: $m -> 403", $ro->{key});
}

# --- the Authorization header -------------------------------------------------------------

rejected($t->api(GET => $SALES), 401, 'missing_credentials', 'no Authorization -> 401');
is $t->api(HEAD => $SALES)->{status}, 401, 'no Authorization, HEAD -> 401';

allowed($t->api(GET => $SALES, headers => [Authorization => "bearer $rw->{key}"]),
        $rw, 'GET', 'lowercase "bearer" scheme accepted');
allowed($t->api(GET => $SALES, headers => [Authorization => "BEARER $rw->{key}"]),
        $rw, 'GET', 'uppercase "BEARER" scheme accepted');
allowed($t->api(GET => $SALES, headers => [Authorization => "Bearer    $rw->{key}"]),
        $rw, 'GET', 'several spaces between scheme and token accepted (1*SP)');

rejected($t->api(GET => $SALES, headers => [Authorization => 'Basic eHl6OnBhc3M=']),
         401, 'invalid_authorization', 'Basic scheme -> 401 invalid_authorization');
rejected($t->api(GET => $SALES, headers => [Authorization => $rw->{key}]),
         401, 'invalid_authorization', 'bare key without scheme -> 401', $rw->{key});
rejected($t->api(GET => $SALES, headers => [Authorization => 'Bearer']),
         401, 'invalid_authorization', 'Bearer with no token -> 401');
rejected($t->api(GET => $SALES, headers => [Authorization => 'Bearer   ']),
         401, undef, 'Bearer followed by spaces only -> 401');
rejected($t->api(GET => $SALES, headers => [Authorization => "Bearer $rw->{key} $ro->{key}"]),
         401, 'invalid_authorization', 'two tokens in one header -> 401', $rw->{key});
rejected($t->api(GET => $SALES, headers => [Authorization => "Bearer $rw->{key},x"]),
         401, 'invalid_authorization', 'token followed by a comma -> 401', $rw->{key});

{
    # Flip one character of the random part: shape right, checksum wrong.
    my $k = $rw->{key};
    my $c = substr $k, 20, 1;
    substr($k, 20, 1) = $c eq 'a' ? 'b' : 'a';
    rejected($t->api(GET => $SALES, key => $k), 401, 'malformed_key',
             'one character changed (bad checksum) -> 401 malformed_key', $k);
    # Checksum itself altered.
    my $k2 = $rw->{key};
    substr($k2, -1, 1) = substr($k2, -1, 1) eq '0' ? '1' : '0';
    rejected($t->api(GET => $SALES, key => $k2), 401, 'malformed_key',
             'checksum altered -> 401 malformed_key', $k2);
    rejected($t->api(GET => $SALES, key => substr($rw->{key}, 0, 45)), 401, 'malformed_key',
             'truncated key -> 401 malformed_key', substr($rw->{key}, 0, 45));
    rejected($t->api(GET => $SALES, key => 'sk_test_' . substr($rw->{key}, 8)), 401,
             'malformed_key', 'other scheme prefix -> 401 malformed_key');
    rejected($t->api(GET => $SALES, key => 'hunter2'), 401, 'malformed_key',
             'random short token -> 401 malformed_key');
    # "Bearer <key>" of exactly a key's length and scheme, one character not a key's: the
    # header parser, not the checksum, says what is wrong.
    my $comma = $rw->{key};
    substr($comma, 20, 1) = ',';
    rejected($t->api(GET => $SALES, key => $comma), 401, 'invalid_authorization',
             'a comma inside a key-sized token -> 401 invalid_authorization', $comma);
    my $padded = $rw->{key};
    substr($padded, -1, 1) = '=';
    rejected($t->api(GET => $SALES, key => $padded), 401, 'malformed_key',
             'a key-sized token ending in "=" padding -> 401 malformed_key', $padded);
}

{
    my $long = 'sk_live_' . ('A' x (10 * 1024));
    my $r = $t->api(GET => $SALES, key => $long);
    rejected($r, 401, undef, '10 KB token -> 401 (not 400/500)');
}

{
    # Non-ASCII bytes: raw request so Perl sends the bytes as they are.
    my $k = $rw->{key};
    my $bad = substr($k, 0, 20) . "\xc3\xa9" . substr($k, 22);
    my $r = $t->raw("GET $SALES HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                    . "Authorization: Bearer $bad\r\n\r\n");
    rejected($r, 401, undef, 'non-ASCII (UTF-8) bytes in the token -> 401');
    $r = $t->raw("GET $SALES HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                 . "Authorization: Bearer $k\xff\r\n\r\n");
    rejected($r, 401, undef, 'valid key followed by a 0xFF byte -> 401');
    $r = $t->raw("GET $SALES HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                 . "Authorization: Bearer\t$k\r\n\r\n");
    isnt $r->{status}, 500, 'TAB as separator does not crash (no 500)';
    ok $r->{status} == 200 || $r->{status} == 401, 'TAB separator: either accepted or 401'
        or diag $r->{raw};
}

{
    # Two Authorization headers: nginx core (not the module) rejects the request with 400
    # ("client sent duplicate header line"); whatever answers, it must never be let through.
    my $r = $t->raw("GET $SALES HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                    . "Authorization: Bearer $rw->{key}\r\n"
                    . "Authorization: Bearer $ro->{key}\r\n\r\n");
    isnt $r->{status}, 200, 'two Authorization headers are not let through';
    is $r->{status}, 400, 'two Authorization headers -> 400 from nginx core';
    $r = $t->raw("GET $SALES HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                 . "Authorization: Basic eHl6\r\n"
                 . "Authorization: Bearer $rw->{key}\r\n\r\n");
    isnt $r->{status}, 200, 'a valid key in a second Authorization header is not let through';
}

{
    # Only the Authorization header carries credentials. (A key sent in the URL would end
    # up in access logs through $request: the harness logs $apikey_loggable_request, the
    # request line with keys cut to their prefix, like conf.example/nginx.conf, and its
    # secret scan checks that. Still a key of its own, left out of the log check below.)
    my $q = $t->create_key($sales->{id}, permission => 'read_write');
    rejected($t->api(GET => "$SALES?api_key=$q->{key}"), 401, 'missing_credentials',
             'key in the query string is not accepted');
    rejected($t->api(GET => "$SALES?access_token=$q->{key}"), 401, 'missing_credentials',
             'key as access_token query parameter is not accepted');
    ok $t->wait_until(sub { $t->access_log =~ /access_token=\Q$q->{key_prefix}\E\.\.\. HTTP/ }, 2),
        'a key in the URL is logged as its prefix only';
    rejected($t->api(GET => $SALES, headers => ['X-Api-Key' => $rw->{key}]), 401,
             'missing_credentials', 'key in X-Api-Key is not accepted', $rw->{key});
    my $r = $t->raw("GET $SALES HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                    . "Authorization: \r\n\r\n");
    rejected($r, 401, undef, 'empty Authorization header -> 401');
}

{
    # Dot segments cannot smuggle a request for another workspace past the check: nginx
    # resolves them before the location regex, and the module refuses a path the
    # upstream would get otherwise (see "a path that means one thing" below).
    for my $path ('/api/v1/acme-corp/sales/../inventory/items',
                  '/api/v1/acme-corp/sales/%2e%2e/inventory/items',
                  '/api/v1/acme-corp/./inventory/items') {
        my $r = $t->raw("GET $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                        . "Authorization: Bearer $rw->{key}\r\n\r\n");
        rejected($r, 400, 'ambiguous_path', "sales key, $path -> 400", $rw->{key});
    }
}

{
    my $unknown = ApiKeyTest::make_key();
    ok ApiKeyTest::key_is_well_formed($unknown), 'generated key is well formed';
    rejected($t->api(GET => $SALES, key => $unknown), 401, 'unknown_key',
             'well-formed key nobody issued -> 401 unknown_key', $unknown);

    # Same random part as a real key but a recomputed checksum: still unknown.
    my $mangled = ApiKeyTest::make_key(scalar reverse substr($rw->{key}, 8, 32));
    rejected($t->api(GET => $SALES, key => $mangled), 401, 'unknown_key',
             'mangled real key with a valid checksum -> 401 unknown_key', $mangled);
}

rejected($t->api(GET => $INV, key => $rw->{key}), 401, 'wrong_workspace',
         'sales key on acme-corp/inventory -> 401 wrong_workspace', $rw->{key});
rejected($t->api(GET => $SALES, key => $inv_key->{key}), 401, 'wrong_workspace',
         'inventory key on acme-corp/sales -> 401 wrong_workspace', $inv_key->{key});
rejected($t->api(GET => '/api/v1/acme-corp/nosuch/orders', key => $rw->{key}), 401,
         'wrong_workspace', 'key on a workspace that does not exist -> 401 wrong_workspace');
rejected($t->api(GET => '/api/v1/other-corp/sales/orders', key => $rw->{key}), 401,
         'wrong_workspace', 'same slug, other org -> 401 wrong_workspace');
allowed($t->api(GET => $INV, key => $inv_key->{key}), $inv_key, 'GET',
        "inventory key on its own workspace -> 200");
allowed($t->api(GET => '/api/v1/acme-corp/sales/customers', key => $ro->{key}), $ro, 'GET',
        'same key works for every entity of its workspace');

# --- spoofing -----------------------------------------------------------------------------

{
    my $r = $t->api(GET => $SALES, key => $ro->{key},
                    headers => ['X-Api-Key-Id' => 'spoofed', 'X-Api-Key-Permission' => 'read_write',
                                'X-Api-Workspace-Id' => 'spoofed', 'X-Api-Key-Prefix' => 'spoofed']);
    allowed($r, $ro, 'GET', 'client-sent X-Api-Key-* headers are replaced by the real values');
    unlike $r->{body}, qr/spoofed/, 'no spoofed value reaches the backend';

    $r = $t->api(GET => $SALES, headers => ['X-Api-Key-Id' => 'spoofed']);
    rejected($r, 401, 'missing_credentials', 'spoofed X-Api-Key-Id without a key -> 401');

    $r = $t->api(POST => $SALES, key => $ro->{key}, body => '{}',
                 headers => ['X-Api-Key-Permission' => 'read_write']);
    rejected($r, 403, 'read_only_key', 'spoofed permission header does not lift read_only');
}

# --- lifecycle: revoke, expiry, rotation, workspace deletion -------------------------------

{
    my $k = $t->create_key($sales->{id}, permission => 'read_write');
    allowed($t->api(GET => $SALES, key => $k->{key}), $k, 'GET', 'fresh key works at once');
    $t->revoke_key($sales->{id}, $k->{id});
    my $r = $t->wait_until(sub {
        my $x = $t->api(GET => $SALES, key => $k->{key});
        $x->{status} == 401 ? $x : undef;
    }, 2);
    rejected($r || $t->api(GET => $SALES, key => $k->{key}), 401, 'key_revoked',
             'revoked key -> 401 key_revoked', $k->{key});
}

{
    # Rotation: two active keys side by side; revoking the old one leaves the new one.
    my $old = $t->create_key($sales->{id}, permission => 'read_write', name => 'old');
    my $new = $t->create_key($sales->{id}, permission => 'read_write', name => 'new');
    allowed($t->api(GET => $SALES, key => $old->{key}), $old, 'GET', 'rotation: old key works');
    allowed($t->api(GET => $SALES, key => $new->{key}), $new, 'GET', 'rotation: new key works');
    $t->revoke_key($sales->{id}, $old->{id});
    ok $t->wait_until(sub { $t->api(GET => $SALES, key => $old->{key})->{status} == 401 }, 2),
        'rotation: old key rejected after revoke';
    for (1 .. 4) {    # several connections: both workers
        allowed($t->api(GET => $SALES, key => $new->{key}), $new, 'GET',
                "rotation: new key still works ($_)");
    }
    allowed($t->api(GET => $SALES, key => $rw->{key}), $rw, 'GET', 'unrelated key unaffected');
}

{
    my $exp_at = time + 3;
    my $k = $t->create_key($sales->{id}, permission => 'read_write',
                           expires_at => ApiKeyTest::iso8601($exp_at));
    allowed($t->api(GET => $SALES, key => $k->{key}), $k, 'GET', 'key works before expires_at');
    my $r = $t->wait_until(sub {
        my $x = $t->api(GET => $SALES, key => $k->{key});
        $x->{status} == 401 ? $x : undef;
    }, 8);
    ok $r, 'key rejected after expires_at';
    ok time >= $exp_at - 1, 'and not (much) before expires_at';
    rejected($r || {}, 401, 'key_expired', 'expired key -> 401 key_expired', $k->{key});
}

{
    my $ws = $t->create_workspace('acme-corp', 'temp');
    my $k = $t->create_key($ws->{id}, permission => 'read_write');
    my $path = '/api/v1/acme-corp/temp/things';
    allowed($t->api(GET => $path, key => $k->{key}), $k, 'GET', 'key of a temp workspace works');
    my $r = $t->admin(DELETE => "/api/v1/workspaces/$ws->{id}");
    is $r->{status}, 200, 'workspace deleted';
    ok $t->wait_until(sub { $t->api(GET => $path, key => $k->{key})->{status} == 401 }, 2),
        "deleting a workspace revokes its keys in nginx";

    # A new workspace reusing the org/slug must not revive the old keys.
    my $ws2 = $t->create_workspace('acme-corp', 'temp');
    $r = $t->api(GET => $path, key => $k->{key});
    rejected($r, 401, undef, 'old key stays rejected on a re-created workspace with the same slug',
             $k->{key});
}

# --- a path that means one thing to nginx and another to the upstream ---------------------
# nginx matches the location on the path it normalised (%2F decoded, dot segments
# resolved), while proxy_pass without a URI part passes the path as sent: an upstream
# splitting it on '/' would act on inventory/Customer what the module decided for a
# public entity of sales. Such paths are refused, with or without a key.

{
    $t->put_entity_settings($sales->{id}, 'Open', { publicAccess => 'READ_WRITE' });
    my $r = $t->api(DELETE => '/api/v1/acme-corp/sales/Open/1');
    is $r->{status}, 200, 'a READ_WRITE entity: DELETE passed on without a key';
    for my $path ('/api/v1/acme-corp/inventory/Customer/1%2F..%2F..%2F..%2Fsales%2FOpen',
                  '/api/v1/acme-corp/inventory/Customer/1%2f..%2f..%2f..%2fsales/Open') {
        rejected($t->api(DELETE => $path), 400, 'ambiguous_path', "$path: 400");
    }
    rejected($t->api(GET => '/api/v1/acme-corp/inventory/Customer/..%2F..%2Fsales%2FCustomer',
                     key => $rw->{key}), 400, 'ambiguous_path', '... also with a valid key');
    allowed($t->api(GET => "$SALES/a%20b/.well-known", key => $rw->{key}), $rw, 'GET',
            'other escapes and names starting with a dot are passed on');
}

# --- logs ---------------------------------------------------------------------------------

{
    my $ok = $t->wait_until(sub { $t->access_log =~ /result=ok prefix=\Q$rw->{key_prefix}\E/ }, 2);
    ok $ok, '$apikey_result / $apikey_key_prefix logged for an allowed request';
    like $t->access_log, qr/ 401 .*result=missing_credentials/, 'rejection code logged';
    like $t->access_log, qr/ 403 .*result=read_only_key prefix=\Q$ro->{key_prefix}\E/,
        '403 logged with code and prefix';
    # nginx core itself logs, at level info, the full value of a duplicate header line
    # ("client sent duplicate header line: "Authorization: Bearer sk_live_..."") when it
    # refuses the two-Authorization-headers request above; the module cannot prevent that
    # (production error_log levels of notice and above do not show it). Everything else
    # must be free of keys.
    my @lines = grep { !/client sent duplicate header line/ }
        split /\n/, $t->access_log . "\n" . $t->error_log . "\n" . $t->daemon_log;
    for my $key (@all_raw_keys) {
        my @leaks = grep { /\Q$key\E/ } @lines;
        is scalar @leaks, 0,
            'raw key ' . substr($key, 0, 12) . '... never in access, error or apikeyd logs'
            or diag join "\n", @leaks;
    }
    unlike $t->error_log, qr/\[(?:alert|emerg|crit)\]/, 'no alert/crit/emerg in the error log';
}

done_testing;
