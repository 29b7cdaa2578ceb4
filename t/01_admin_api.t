# Admin REST API of apikeyd: authentication, workspaces, keys, error bodies.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new(nginx => 0);

my $UUID = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\z/i;
my $ISO  = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\z/;
my $MISSING_UUID = '00000000-0000-4000-8000-000000000000';

# Checks the shape every admin error shares and returns its code.
sub error_ok {
    my ($r, $status, $code, $name) = @_;
    subtest $name => sub {
        is $r->{status}, $status, "status $status";
        like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON content type';
        my $e = ref $r->{json} eq 'HASH' ? $r->{json}{error} : undef;
        ok ref $e eq 'HASH', 'body is {"error":{...}}' or diag $r->{body};
        is $e->{code}, $code, "code $code" if defined $code;
        ok defined $e->{message} && length $e->{message}, 'has a message';
    };
}

# --- admin authentication ---------------------------------------------------------------

{
    my $r = $t->admin(GET => '/api/v1/workspaces', undef, no_token => 1);
    error_ok($r, 401, 'unauthorized', 'no admin token -> 401');
    like $r->{headers}{'www-authenticate'} // '', qr/^Bearer/, '401 carries WWW-Authenticate: Bearer';

    $r = $t->admin(GET => '/api/v1/workspaces', undef, token => 'not-the-token');
    error_ok($r, 401, 'unauthorized', 'wrong admin token -> 401');
    like $r->{headers}{'www-authenticate'} // '', qr/^Bearer/, 'wrong token 401 carries WWW-Authenticate';

    $r = $t->admin(GET => '/api/v1/workspaces', undef, no_token => 1,
                   headers => [Authorization => 'Basic ' . $t->admin_token]);
    error_ok($r, 401, 'unauthorized', 'admin token with Basic scheme -> 401');

    # A mutation without a token must not happen.
    $r = $t->admin(POST => '/api/v1/workspaces', { org => 'evil', slug => 'ws', name => 'x' },
                   no_token => 1);
    is $r->{status}, 401, 'unauthenticated create refused';
    my $list = $t->admin(GET => '/api/v1/workspaces');
    ok !grep({ $_->{org} eq 'evil' } @{ $list->{json} // [] }), 'and nothing was created';
}

# --- workspaces ---------------------------------------------------------------------------

my $sales;
{
    my $r = $t->admin(POST => '/api/v1/workspaces',
                      { org => 'acme-corp', slug => 'sales', name => 'Sales' });
    is $r->{status}, 201, 'create workspace -> 201' or diag $r->{body};
    like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON response';
    $sales = $r->{json} // {};
    like $sales->{id} // '', $UUID, 'workspace id is a UUID';
    is $sales->{org},  'acme-corp', 'org echoed';
    is $sales->{slug}, 'sales',     'slug echoed';
    is $sales->{name}, 'Sales',     'name echoed';
    like $sales->{created_at} // '', $ISO, 'created_at ISO 8601 UTC';
    like $sales->{updated_at} // '', $ISO, 'updated_at ISO 8601 UTC';
}
my $inventory = $t->create_workspace('acme-corp', 'inventory');
isnt $inventory->{id}, $sales->{id}, 'second workspace gets its own id';

{
    my $r = $t->admin(POST => '/api/v1/workspaces',
                      { org => 'acme-corp', slug => 'sales', name => 'Again' });
    error_ok($r, 409, 'conflict', 'duplicate org/slug -> 409 conflict');

    $r = $t->admin(GET => '/api/v1/workspaces');
    is $r->{status}, 200, 'list workspaces -> 200';
    is ref $r->{json}, 'ARRAY', 'list is a JSON array';
    my %by_id = map { $_->{id} => $_ } @{ ref $r->{json} eq 'ARRAY' ? $r->{json} : [] };
    is scalar(grep { $_->{org} eq 'acme-corp' && $_->{slug} eq 'sales' } values %by_id), 1,
        'the duplicate was not stored';
    ok $by_id{ $sales->{id} } && $by_id{ $inventory->{id} }, 'both workspaces listed';

    $r = $t->admin(GET => "/api/v1/workspaces/$sales->{id}");
    is $r->{status}, 200, 'get workspace -> 200';
    is_deeply [ @{ $r->{json} // {} }{qw(id org slug name)} ],
              [ @$sales{qw(id org slug name)} ], 'get returns the created workspace';

    $r = $t->admin(GET => "/api/v1/workspaces/$MISSING_UUID");
    error_ok($r, 404, 'not_found', 'unknown workspace id -> 404');
    $r = $t->admin(GET => '/api/v1/workspaces/not-a-uuid');
    ok $r->{status} == 404 || $r->{status} == 400, 'malformed workspace id -> 404/400'
        or diag "$r->{status} $r->{body}";
    $r = $t->admin(GET => '/api/v1/no-such-collection');
    is $r->{status}, 404, 'unknown route -> 404';
}

# --- request validation -----------------------------------------------------------------

{
    my $r = $t->admin(POST => '/api/v1/workspaces', undef, raw_body => '{"org":"a",');
    error_ok($r, 400, 'invalid_json', 'truncated JSON -> 400 invalid_json');
    $r = $t->admin(POST => '/api/v1/workspaces', undef, raw_body => 'not json at all');
    error_ok($r, 400, 'invalid_json', 'garbage body -> 400 invalid_json');
    $r = $t->admin(POST => '/api/v1/workspaces', undef, raw_body => '["org","slug"]');
    ok $r->{status} == 400, 'JSON array instead of object -> 400' or diag $r->{body};
    $r = $t->admin(POST => '/api/v1/workspaces',
                   { org => 'acme-corp', slug => 'x1', name => 'X', colour => 'red' });
    error_ok($r, 400, 'unknown_field', 'unknown field -> 400 unknown_field');
    $r = $t->admin(POST => '/api/v1/workspaces', { org => 'acme-corp', name => 'X' });
    error_ok($r, 400, 'missing_field', 'missing slug -> 400 missing_field');
    $r = $t->admin(POST => '/api/v1/workspaces', { org => 'acme-corp', slug => 5, name => 'X' });
    error_ok($r, 400, 'invalid_field', 'slug of the wrong type -> 400 invalid_field');
    $r = $t->admin(POST => '/api/v1/workspaces', { org => 'acme-corp', slug => 'x3', name => " \t " });
    error_ok($r, 400, 'invalid_field', 'a workspace name of whitespace only -> 400 invalid_field');
    $r = $t->admin(POST => '/api/v1/workspaces', { org => 'acme/corp', slug => 'x2', name => 'X' });
    error_ok($r, 400, 'invalid_field', 'org containing "/" -> 400 invalid_field (would break org/slug)');

    my $list = $t->admin(GET => '/api/v1/workspaces');
    is scalar @{ $list->{json} // [] }, 2, 'no rejected request created a workspace';

    $r = $t->admin(PATCH => '/api/v1/workspaces', { name => 'x' });
    error_ok($r, 405, 'method_not_allowed', 'PATCH on the collection -> 405');
    like $r->{headers}{allow} // '', qr/\bGET\b/, '405 lists GET in Allow';
    like $r->{headers}{allow} // '', qr/\bPOST\b/, '405 lists POST in Allow';

    my $big = '{"org":"acme-corp","slug":"big","name":"' . ('x' x (65 * 1024)) . '"}';
    $r = $t->admin(POST => '/api/v1/workspaces', undef, raw_body => $big);
    error_ok($r, 413, 'payload_too_large', 'body over 64 KiB -> 413');
}

# --- keys ---------------------------------------------------------------------------------

my $keys_path = "/api/v1/workspaces/$sales->{id}/api-keys";
my ($ro, $rw);
{
    my $r = $t->admin(POST => $keys_path, { name => 'reporting' });
    is $r->{status}, 201, 'create key -> 201' or diag $r->{body};
    $ro = $r->{json} // {};
    like $ro->{key} // '', qr/^sk_live_[0-9A-Za-z]{38}\z/, 'raw key: sk_live_ + 38 base62 (46 chars)';
    ok ApiKeyTest::key_is_well_formed($ro->{key}), 'last 6 chars are the base62 CRC32 of the first 40';
    is $ro->{key_prefix}, substr($ro->{key} // '', 0, 12), 'key_prefix = first 12 chars';
    like $ro->{id} // '', $UUID, 'key id is a UUID';
    is $ro->{workspace_id}, $sales->{id}, 'workspace_id';
    is $ro->{name}, 'reporting', 'name';
    is $ro->{permission}, 'read_only', 'permission defaults to read_only';
    is $ro->{status}, 'active', 'status active';
    like $ro->{created_at} // '', $ISO, 'created_at ISO 8601 UTC';
    ok !grep({ /hash|secret/i } keys %$ro), 'no hash field in the create response';

    $rw = $t->create_key($sales->{id}, name => 'ci', permission => 'read_write');
    is $rw->{permission}, 'read_write', 'read_write key';
    isnt $rw->{key}, $ro->{key}, 'every key is different';
    isnt substr($rw->{key}, 8, 32), substr($ro->{key}, 8, 32), 'random parts differ';

    my $exp = ApiKeyTest::iso8601(time + 3600);
    my $ek = $t->create_key($sales->{id}, expires_at => $exp);
    is ApiKeyTest::parse_iso8601($ek->{expires_at}), ApiKeyTest::parse_iso8601($exp),
        'expires_at stored and returned (ISO 8601 UTC, same instant)';

    $r = $t->admin(POST => $keys_path, { name => 'x', permission => 'admin' });
    error_ok($r, 400, 'invalid_field', 'unknown permission -> 400 invalid_field');
    $r = $t->admin(POST => $keys_path, { name => 'x', expires_at => ApiKeyTest::iso8601(time - 60) });
    error_ok($r, 400, 'invalid_field', 'expires_at in the past -> 400 invalid_field');
    $r = $t->admin(POST => $keys_path, { name => 'x', expires_at => 'next tuesday' });
    error_ok($r, 400, 'invalid_field', 'unparsable expires_at -> 400 invalid_field');
    $r = $t->admin(POST => $keys_path, { name => 'x', expires_at => '9999-12-31T23:59:59-23:59' });
    error_ok($r, 400, 'invalid_field', 'expires_at past 9999-12-31T23:59:59Z (by its offset) -> 400');
    $r = $t->admin(POST => $keys_path, { name => 'x', key => ApiKeyTest::make_key() });
    ok $r->{status} == 400, 'a client cannot choose its own raw key (400)' or diag $r->{body};
    $r = $t->admin(POST => $keys_path, undef,
                   raw_body => '{"name":"dup","permission":"read_only","permission":"read_write"}');
    error_ok($r, 400, 'invalid_json', 'a member named twice -> 400 invalid_json (not: the last wins)');
    like $r->{json}{error}{message} // '', qr/"permission" appears more than once/, 'naming it';
    $r = $t->admin(POST => $keys_path, { name => '   ' });
    error_ok($r, 400, 'invalid_field', 'a key name of spaces only -> 400 invalid_field, as ""');
    is $r->{body}, $t->admin(POST => $keys_path, { name => '' })->{body}, '  the empty name\'s very error';
    $r = $t->admin(POST => $keys_path, { permission => 'read_only' });
    error_ok($r, 400, 'missing_field', 'key without name -> 400 missing_field');
    $r = $t->admin(POST => "/api/v1/workspaces/$MISSING_UUID/api-keys", { name => 'x' });
    error_ok($r, 404, 'not_found', 'key for an unknown workspace -> 404');

    $r = $t->admin(GET => $keys_path);
    is $r->{status}, 200, 'list keys -> 200';
    my @list = @{ ref $r->{json} eq 'ARRAY' ? $r->{json} : [] };
    is scalar @list, 3, 'three keys listed (rejected creates stored nothing)';
    ok !grep({ exists $_->{key} } @list), 'listed keys never carry the raw key';
    ok !grep({ my $k = $_; grep { /hash|secret/i } keys %$k } @list), 'nor any hash';
    unlike $r->{body}, qr/\Q$ro->{key}\E|\Q$rw->{key}\E/, 'list body contains no raw key';
    my ($listed) = grep { $_->{id} eq $ro->{id} } @list;
    is $listed->{key_prefix}, $ro->{key_prefix}, 'list shows the prefix';
    ok !defined $r->{headers}{link}, 'one page holds them all: no Link';

    # Paged: ?limit=N keys a page, a Link header to the next one until the last.
    $r = $t->admin(GET => "$keys_path?limit=2");
    is scalar @{ $r->{json} // [] }, 2, 'limit=2: two keys, still a plain array';
    like $r->{headers}{link} // '', qr{^<\Q$keys_path\E\?after=[0-9.]+&limit=2>; rel="next"\z},
        'and a Link to the next page';
    is_deeply [ map { $_->{id} } $t->list_keys($sales->{id}, 1) ], [ map { $_->{id} } @list ],
        'following the links one key at a time lists every key once, in order';
    $r = $t->admin(GET => "$keys_path?limit=0");
    error_ok($r, 400, 'invalid_field', 'limit=0 -> 400 invalid_field');
    $r = $t->admin(GET => "$keys_path?limit=10001");
    error_ok($r, 400, 'invalid_field', 'limit over 10000 -> 400 invalid_field');
    $r = $t->admin(GET => "$keys_path?offset=2");
    error_ok($r, 400, 'unknown_field', 'offset -> 400 unknown_field (the list takes after and limit)');

    $r = $t->admin(GET => "$keys_path/$ro->{id}");
    is $r->{status}, 200, 'get key -> 200';
    is $r->{json}{id}, $ro->{id}, 'the right key';
    ok !exists $r->{json}{key}, 'get never returns the raw key';
    unlike $r->{body}, qr/\Q$ro->{key}\E/, 'get body contains no raw key';

    # Keys are scoped to their workspace in the admin API too.
    $r = $t->admin(GET => "/api/v1/workspaces/$inventory->{id}/api-keys/$ro->{id}");
    error_ok($r, 404, 'not_found', "a key is not reachable under another workspace's path");
    $r = $t->admin(DELETE => "/api/v1/workspaces/$inventory->{id}/api-keys/$ro->{id}");
    is $r->{status}, 404, 'nor revocable through it';
    $r = $t->admin(GET => "$keys_path/$ro->{id}");
    is $r->{json}{status}, 'active', 'key still active after the cross-workspace attempt';

    $r = $t->admin(GET => "$keys_path/$MISSING_UUID");
    error_ok($r, 404, 'not_found', 'unknown key id -> 404');

    $r = $t->admin(DELETE => "$keys_path/$ro->{id}");
    is $r->{status}, 200, 'revoke -> 200';
    is_deeply $r->{json}, { status => 'revoked' }, 'revoke body {"status":"revoked"}';
    $r = $t->admin(GET => "$keys_path/$ro->{id}");
    is $r->{json}{status}, 'revoked', 'key shows status revoked';
    $r = $t->admin(DELETE => "$keys_path/$MISSING_UUID");
    error_ok($r, 404, 'not_found', 'revoking an unknown key -> 404');

    $r = $t->admin(PUT => "$keys_path/$rw->{id}", { name => 'x' });
    is $r->{status}, 405, 'PUT on a key -> 405';
    like $r->{headers}{allow} // '', qr/\bDELETE\b/, 'Allow lists DELETE';
}

# --- query parameters: refused, never ignored ---------------------------------------------

{
    # A parameter a route would ignore is refused before the route does anything.
    my $r = $t->admin(DELETE => "/api/v1/workspaces/$inventory->{id}?dry_run=true");
    error_ok($r, 400, 'unknown_field', 'DELETE ?dry_run=true -> 400 unknown_field');
    like $r->{json}{error}{message} // '', qr/"dry_run"/, 'the message names the parameter';
    is $t->admin(GET => "/api/v1/workspaces/$inventory->{id}")->{status}, 200,
        'and the workspace was not deleted';
    $r = $t->admin(GET => '/api/v1/workspaces?limit=1');
    error_ok($r, 400, 'unknown_field', 'GET workspaces ?limit=1 -> 400 (no paging there)');
    $r = $t->admin(DELETE => "$keys_path/$rw->{id}?dry_run=1");
    error_ok($r, 400, 'unknown_field', 'revoke ?dry_run=1 -> 400');
    is $t->admin(GET => "$keys_path/$rw->{id}")->{json}{status}, 'active', 'and the key is still active';
    $r = $t->admin(POST => "/api/v1/workspaces?dry_run=1", { org => 'acme-corp', slug => 'q', name => 'Q' });
    error_ok($r, 400, 'unknown_field', 'create ?dry_run=1 -> 400');
    is $t->admin(GET => '/api/v1/workspaces')->{status}, 200, 'list without a query still works';
    ok !grep({ $_->{slug} eq 'q' } @{ $t->admin(GET => '/api/v1/workspaces')->{json} // [] }),
        'and nothing was created';
}

# --- workspace deletion -------------------------------------------------------------------

{
    my $r = $t->admin(DELETE => "/api/v1/workspaces/$sales->{id}");
    is $r->{status}, 200, 'delete workspace -> 200';
    $r = $t->admin(GET => "/api/v1/workspaces/$sales->{id}");
    error_ok($r, 404, 'not_found', 'deleted workspace -> 404');
    $r = $t->admin(GET => $keys_path);
    is $r->{status}, 404, "deleted workspace's keys collection -> 404";
    $r = $t->admin(DELETE => "/api/v1/workspaces/$sales->{id}");
    is $r->{status}, 404, 'deleting it again -> 404';
    $r = $t->admin(GET => '/api/v1/workspaces');
    ok !grep({ $_->{id} eq $sales->{id} } @{ $r->{json} // [] }), 'no longer listed';

    # org/slug is free again after deletion.
    my $again = $t->create_workspace('acme-corp', 'sales');
    isnt $again->{id}, $sales->{id}, 'org/slug reusable after delete, with a new id';
}

# --- file permissions: nginx workers may read the snapshot, nobody else the store -------

{
    my $d = $t->dir;
    my $mode = sub { my @st = stat $_[0]; @st ? ($st[2] & 07777) : undef };
    my $gid  = sub { my @st = stat $_[0]; @st ? $st[5] : undef };
    ok -d "$d/data/store", 'the store lives in data_dir/store';
    my $store = $mode->("$d/data/store");
    ok defined $store && ($store & 077) == 0, sprintf('store directory private to apikeyd (%o)', $store // 0);
    my @store_files = glob "$d/data/store/*";
    ok @store_files && !grep({ ($mode->($_) & 077) != 0 } @store_files), 'store files private (no group/other bits)';
    my $snap = $t->snapshot_path;
    ok -f "$snap/data.mdb", 'snapshot published (data.mdb)';
    my $data_mode = $mode->("$snap/data.mdb") // 0;
    is $data_mode & 0007, 0, sprintf('snapshot data.mdb not accessible to others (%o)', $data_mode);
    is $data_mode & 0022, 0, 'snapshot data.mdb writable by apikeyd only';
    is $mode->($snap) & 0007, 0, 'snapshot directory not accessible to others';
    if ($> == 0) {
        my $nogroup = getgrnam('nogroup');
        is $gid->($snap), $nogroup, 'snapshot directory belongs to snapshot_group';
        is $gid->("$snap/data.mdb"), $nogroup, 'data.mdb belongs to snapshot_group';
        ok $data_mode & 0040, 'snapshot_group may read data.mdb';
    }
}

# --- secrets never logged -----------------------------------------------------------------

{
    my $log = $t->daemon_log;
    unlike $log, qr/\Q$ro->{key}\E/, 'apikeyd log never contains a raw key (read_only)';
    unlike $log, qr/\Q$rw->{key}\E/, 'apikeyd log never contains a raw key (read_write)';
    unlike $log, qr/\Q@{[ $t->admin_token ]}\E/, 'apikeyd log never contains the admin token';
}

done_testing;
