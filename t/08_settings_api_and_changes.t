# apikeyd's settings routes (validation of every field, effective values) and the change
# feed (order, paging, no secrets, survives a restart), through the real daemon.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new(nginx => 0);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $W = "/api/v1/workspaces/$ws->{id}";

# --- workspace settings ------------------------------------------------------------------

my $r = $t->admin(GET => "$W/settings");
is $r->{status}, 200, 'GET workspace settings';
is $r->{json}{maxExpandDepth}, undef, '  nothing set';
is $r->{json}{effective}{maxExpandDepth}, 3, '  effective depth is the system default 3';

$r = $t->admin(PUT => "$W/settings",
               { maxExpandDepth => 5, corsAllowedOrigins => ['https://app.example.com'] });
is $r->{status}, 200, 'PUT workspace settings';
is $r->{json}{effective}{maxExpandDepth}, 5, '  effective depth 5';
is_deeply $t->admin(GET => "$W/settings")->{json}{corsAllowedOrigins},
    ['https://app.example.com'], '  origins stored';

my @bad_ws = (
    [ { maxExpandDepth => -1 },                       'maxExpandDepth', 'negative depth' ],
    [ { maxExpandDepth => 1000 },                     'maxExpandDepth', 'absurd depth' ],
    [ { maxExpandDepth => '3' },                      'maxExpandDepth', 'depth as a string' ],
    [ { corsAllowedOrigins => 'https://a.example' },  'corsAllowedOrigins', 'origins not a list' ],
    [ { corsAllowedOrigins => ['https://a.example/path'] }, 'corsAllowedOrigins', 'origin with a path' ],
    [ { corsAllowedOrigins => ['ftp://a.example'] },  'corsAllowedOrigins', 'origin with another scheme' ],
    [ { corsAllowedOrigins => ['a.example'] },        'corsAllowedOrigins', 'origin without a scheme' ],
    [ { corsAllowedOrigins => ['*'] },                'corsAllowedOrigins', 'wildcard origin' ],
    [ { colour => 'red' },                            'colour', 'unknown field' ],
);
for my $case (@bad_ws) {
    my ($body, $field, $name) = @$case;
    $r = $t->admin(PUT => "$W/settings", $body);
    is $r->{status}, 400, "workspace settings, $name: 400";
    like $r->{json}{error}{message} // '', qr/\Q$field\E/, "  message names $field";
}
is $t->admin(GET => "$W/settings")->{json}{maxExpandDepth}, 5, 'refused PUTs changed nothing';

# --- entity settings --------------------------------------------------------------------

$r = $t->admin(GET => "$W/entities/Customer/settings");
is $r->{status}, 200, 'GET settings of an entity never configured';
is $r->{json}{effective}{publicAccess}, 'NONE', '  public access NONE by default';
is $r->{json}{effective}{maxExpandDepth}, 5, '  depth from the workspace';

$r = $t->admin(PUT => "$W/entities/Customer/settings", {
    publicAccess => 'READ_ONLY', maxExpandDepth => 2, defaultFields => 'id, name ,email',
    expandableRelationships => 'customer,items', columns => { ssn => { apiVisible => JSON::PP::false } } });
is $r->{status}, 200, 'PUT entity settings';
is $r->{json}{defaultFields}, 'id,name,email', '  lists normalised';
is_deeply $r->{json}{effective}{hiddenColumns}, ['ssn'], '  hidden columns resolved';
is $r->{json}{effective}{maxExpandDepth}, 2, '  entity depth wins';

my @bad_entity = (
    [ { publicAccess => 'PUBLIC' },                        'publicAccess', 'bad publicAccess' ],
    [ { publicAccess => 1 },                               'publicAccess', 'publicAccess not a string' ],
    [ { maxExpandDepth => 11 },                            'maxExpandDepth', 'absurd depth' ],
    [ { defaultExpand => 'customer..address' },            'defaultExpand', 'bad relationship path' ],
    [ { expandableRelationships => ['ok', 'not ok'] },     'expandableRelationships', 'bad name in a list' ],
    [ { filterableFields => 7 },                           'filterableFields', 'list of wrong type' ],
    [ { columns => { 'bad name' => { apiVisible => JSON::PP::false } } }, 'columns', 'bad column name' ],
    [ { columns => { ssn => { apiVisible => 'no' } } },    'apiVisible', 'apiVisible not a boolean' ],
    [ { columns => { id => { apiVisible => JSON::PP::false } } }, 'id', 'hiding the primary key' ],
    [ { rowLimit => 5 },                                   'rowLimit', 'unknown field' ],
);
for my $case (@bad_entity) {
    my ($body, $field, $name) = @$case;
    $r = $t->admin(PUT => "$W/entities/Customer/settings", $body);
    is $r->{status}, 400, "entity settings, $name: 400";
    like $r->{json}{error}{message} // '', qr/\Q$field\E/, "  message names $field";
}
is $t->admin(PUT => "$W/entities/bad-name/settings", {})->{status}, 400, 'invalid entity name: 400';
is $t->admin(GET => '/api/v1/workspaces/00000000-0000-4000-8000-000000000000/settings')->{status},
    404, 'settings of an unknown workspace: 404';

# --- change feed ------------------------------------------------------------------------

my $key = $t->create_key($ws->{id}, name => 'feed key', permission => 'read_write');
$t->revoke_key($ws->{id}, $key->{id});

my $feed = $t->admin(GET => "$W/changes?after=0&limit=1000");
is $feed->{status}, 200, 'GET change feed';
my @changes = @{ $feed->{json}{changes} // [] };
is_deeply [ map { $_->{type} } @changes ],
    [ 'workspace.created', 'workspace.settings_updated', 'entity.settings_updated',
      'api_key.created', 'api_key.revoked' ],
    'every mutation, in order (refused PUTs are not changes)';
my @seqs = map { $_->{seq} } @changes;
ok !(grep { $seqs[$_] <= $seqs[$_ - 1] } 1 .. $#seqs), 'sequence numbers increase';
ok !(grep { ($_->{actor} // '') ne 'test-admin' } @changes), 'actor is the admin token name';
ok !(grep { !ApiKeyTest::parse_iso8601($_->{time} // '') } @changes), 'each has an ISO 8601 time';
is $changes[3]{object}{id}, $key->{id}, 'key creation carries the key object';
is $changes[4]{object}{status}, 'revoked', 'revocation carries the object after the change';
my $raw = $feed->{body};
unlike $raw, qr/\Q$key->{key}\E/, 'the feed never contains the raw key';
unlike $raw, qr/sk_live_[0-9A-Za-z]{38}/, 'nor anything shaped like a key';
unlike $raw, qr/[0-9a-f]{64}/, 'nor a SHA-256 hex digest';

# Paging.
my ($after, @paged) = (0);
for (1 .. 10) {
    my $page = $t->admin(GET => "$W/changes?after=$after&limit=2")->{json};
    last unless @{ $page->{changes} };
    ok @{ $page->{changes} } <= 2, 'a page holds at most limit entries';
    push @paged, @{ $page->{changes} };
    $after = $page->{next_after};
}
is_deeply [ map { $_->{seq} } @paged ], \@seqs, 'paging with after/limit returns the same feed';

for my $q ('after=-1', 'after=x', 'limit=0', 'limit=100000', 'page=2') {
    is $t->admin(GET => "$W/changes?$q")->{status}, 400, "bad query '$q': 400";
}

$t->stop_daemon;
$t->start_daemon;
is_deeply [ map { $_->{seq} } @{ $t->admin(GET => "$W/changes?limit=1000")->{json}{changes} } ],
    \@seqs, 'the feed survives a restart';

# --- more validation: every field, error codes, nothing stored on refusal -----------------

sub refused_put {
    my ($path, $body, $code, $field, $name) = @_;
    my $r = $t->admin(PUT => $path, ref $body ? $body : undef, ref $body ? () : (raw_body => $body));
    subtest $name => sub {
        is $r->{status}, 400, 'status 400' or diag $r->{body};
        like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
        is $r->{json}{error}{code}, $code, "code $code";
        like $r->{json}{error}{message} // '', qr/\Q$field\E/, "message names $field" if defined $field;
    };
}

my $ws_before   = $t->admin(GET => "$W/settings")->{body};
my $cust_before = $t->admin(GET => "$W/entities/Customer/settings")->{body};
my $long = 'a' x 65;
my @more_ws = (
    [ '{"maxExpandDepth":2.5}',                             'invalid_field', 'maxExpandDepth', 'fractional depth' ],
    [ '{"maxExpandDepth":true}',                            'invalid_field', 'maxExpandDepth', 'boolean depth' ],
    [ '{"maxExpandDepth":18446744073709551617}',            undef,           undef,            'depth beyond 64 bits' ],
    [ '{"corsAllowedOrigins":[1]}',                         'invalid_field', 'corsAllowedOrigins', 'origin not a string' ],
    [ '{"corsAllowedOrigins":["https://app.example.com/"]}', 'invalid_field', 'corsAllowedOrigins', 'trailing slash' ],
    [ '{"corsAllowedOrigins":["https://a.example?x=1"]}',   'invalid_field', 'corsAllowedOrigins', 'origin with a query' ],
    [ '{"corsAllowedOrigins":["https://a.example#f"]}',     'invalid_field', 'corsAllowedOrigins', 'origin with a fragment' ],
    [ '{"corsAllowedOrigins":["https://u:p@a.example"]}',   'invalid_field', 'corsAllowedOrigins', 'origin with userinfo' ],
    [ '{"corsAllowedOrigins":["https://a.example:0"]}',     'invalid_field', 'corsAllowedOrigins', 'port 0' ],
    [ '{"corsAllowedOrigins":["https://a.example:65536"]}', 'invalid_field', 'corsAllowedOrigins', 'port 65536' ],
    [ '{"corsAllowedOrigins":["https://"]}',                'invalid_field', 'corsAllowedOrigins', 'no host' ],
    [ '{"corsAllowedOrigins":["https://a b.example"]}',     'invalid_field', 'corsAllowedOrigins', 'space in host' ],
    [ '{"corsAllowedOrigins":["https://a.example\r\nX: y"]}', 'invalid_field', 'corsAllowedOrigins', 'header injection' ],
    [ '{"corsAllowedOrigins":["https://*.example.com"]}',   'invalid_field', 'corsAllowedOrigins', 'wildcard subdomain' ],
    [ { corsAllowedOrigins => [ map { "https://o$_.example" } 1 .. 51 ] },
                                                            'invalid_field', 'corsAllowedOrigins', '51 origins' ],
    [ '{"maxExpandDepth":1,"corsAllowedOrigins":null,"x":1}', 'unknown_field', 'x',            'unknown field next to valid ones' ],
    [ '[]',                                                 'invalid_json',  undef,            'a JSON array' ],
    [ 'null',                                               'invalid_json',  undef,            'JSON null' ],
    [ '{"maxExpandDepth":',                                 'invalid_json',  undef,            'truncated JSON' ],
    [ '',                                                   'invalid_json',  undef,            'empty body' ],
);
for my $case (@more_ws) {
    my ($body, $code, $field, $name) = @$case;
    if (defined $code) {
        refused_put("$W/settings", $body, $code, $field, "workspace settings, $name");
    } else {
        is $t->admin(PUT => "$W/settings", undef, raw_body => $body)->{status}, 400,
            "workspace settings, $name: 400";
    }
}
my @more_entity = (
    [ { defaultFields => 'id,a.b' },                      'invalid_field', 'defaultFields', 'dotted field name' ],
    [ { defaultFields => [ 'ok', 5 ] },                   'invalid_field', 'defaultFields', 'non-string item' ],
    [ { filterableFields => ['a,b'] },                    'invalid_field', 'filterableFields', 'comma inside an array item' ],
    [ { filterableFields => "name,$long" },               'invalid_field', 'filterableFields', '65-character field' ],
    [ { filterableFields => '1st' },                      'invalid_field', 'filterableFields', 'field starting with a digit' ],
    [ { defaultExpand => 5 },                             'invalid_field', 'defaultExpand', 'number' ],
    [ { defaultExpand => join('.', ('a') x 11) },         'invalid_field', 'defaultExpand', 'path of 11 names' ],
    [ { expandableRelationships => { a => 1 } },          'invalid_field', 'expandableRelationships', 'object' ],
    [ { expandableRelationships => 'a,.b' },              'invalid_field', 'expandableRelationships', 'path starting with a dot' ],
    [ { publicAccess => 'read_only' },                    'invalid_field', 'publicAccess', 'lowercase publicAccess' ],
    [ { publicAccess => '' },                             'invalid_field', 'publicAccess', 'empty publicAccess' ],
    [ { maxExpandDepth => -3 },                           'invalid_field', 'maxExpandDepth', 'negative depth' ],
    [ { maxExpandDepth => 1000 },                         'invalid_field', 'maxExpandDepth', 'depth 1000' ],
    [ { columns => [] },                                  'invalid_field', 'columns', 'columns as an array' ],
    [ { columns => 'ssn' },                               'invalid_field', 'columns', 'columns as a string' ],
    [ { columns => { ssn => JSON::PP::false } },          'invalid_field', 'ssn', 'column not an object' ],
    [ { columns => { ssn => { visible => JSON::PP::false } } }, 'unknown_field', 'visible', 'unknown column property' ],
    [ { columns => { ssn => {} } },                       'missing_field', 'apiVisible', 'column without apiVisible' ],
    [ { columns => { ssn => { apiVisible => 0 } } },      'invalid_field', 'apiVisible', 'apiVisible as a number' ],
    [ { columns => { $long => { apiVisible => JSON::PP::false } } }, 'invalid_field', 'columns', '65-character column' ],
    [ { columns => { map { ("c$_" => { apiVisible => JSON::PP::false }) } 1 .. 1001 } },
                                                          'invalid_field', 'columns', '1001 columns' ],
    [ { publicAccess => 'READ_ONLY', rowLimit => 5 },     'unknown_field', 'rowLimit', 'unknown field next to a valid one' ],
);
for my $case (@more_entity) {
    my ($body, $code, $field, $name) = @$case;
    refused_put("$W/entities/Customer/settings", $body, $code, $field, "entity settings, $name");
}
is $t->admin(GET => "$W/settings")->{body}, $ws_before, 'no refused workspace PUT changed anything';
is $t->admin(GET => "$W/entities/Customer/settings")->{body}, $cust_before,
    'no refused entity PUT changed anything';

for my $bad ($long, '1abc', 'a-b', 'a.b', '%41bc') {
    $r = $t->admin(PUT => "$W/entities/$bad/settings", { publicAccess => 'READ_ONLY' });
    is $r->{status}, 400, "entity '$bad' in the path: 400";
    like $r->{json}{error}{message} // '', qr/entity/, '  names the entity';
}
is $t->admin(GET => "$W/entities/$long/settings")->{status}, 400, 'GET with a bad entity: 400';
is $t->admin(GET => "$W/entities/" . ('a' x 64) . '/settings')->{status}, 200, '64 characters is fine';
is $t->admin(PUT => '/api/v1/workspaces/00000000-0000-4000-8000-000000000000/entities/X/settings',
             {})->{status}, 404, 'entity settings of an unknown workspace: 404';
is $t->admin(GET => "$W/settings", undef, no_token => 1)->{status}, 401, 'settings need the admin token';
is $t->admin(PUT => "$W/entities/Customer/settings", {}, token => 'nope')->{status}, 401,
    '  a wrong token too';
$r = $t->admin(POST => "$W/settings", {});
is $r->{status}, 405, 'POST settings: 405';
like $r->{headers}{allow} // '', qr/\bPUT\b/, '  Allow names PUT';
is $t->admin(DELETE => "$W/entities/Customer/settings")->{status}, 405, 'DELETE entity settings: 405';
is $t->admin(PATCH => "$W/settings", {})->{status}, 405, 'PATCH settings: 405';

# --- normalisation and PUT-replaces -----------------------------------------------------------

$r = $t->admin(PUT => "$W/settings", { corsAllowedOrigins => [
    'HTTPS://App.Example.COM:443', 'https://app.example.com', 'http://Localhost:80',
    'http://localhost:3000', 'http://127.0.0.1:8080', 'http://[0:0:0:0:0:0:0:1]:9000' ] });
is $r->{status}, 200, 'origins in mixed case, default ports, duplicates, IP literals';
is_deeply $r->{json}{corsAllowedOrigins}, [ 'https://app.example.com', 'http://localhost',
    'http://localhost:3000', 'http://127.0.0.1:8080', 'http://[::1]:9000' ],
    '  stored as a browser sends Origin, duplicates removed, order kept';
is $r->{json}{maxExpandDepth}, undef, '  PUT replaces: the omitted depth is unset';
is $r->{json}{effective}{maxExpandDepth}, 3, '  back to the default 3';
$r = $t->admin(PUT => "$W/settings", { corsAllowedOrigins => [] });
is $r->{json}{corsAllowedOrigins}, undef, '[] is stored as null';
is $r->{json}{effective}{corsAllowedOrigins}, undef, '  effective null: every origin';
$r = $t->admin(PUT => "$W/settings", { maxExpandDepth => 0, corsAllowedOrigins => undef });
is $r->{status}, 200, 'explicit null and depth 0 accepted';
is $r->{json}{effective}{maxExpandDepth}, 0, '  depth 0 is a value, not unset';
is_deeply [ sort keys %{ $t->admin(GET => "$W/settings")->{json} } ],
    [ sort qw(maxExpandDepth corsAllowedOrigins defaultRateLimit effective) ],
    'GET shows every field';

$r = $t->admin(PUT => "$W/entities/Orders/settings", {
    defaultExpand => [ 'customer', ' items.product ', 'customer', '' ],
    defaultFields => ' , ', expandableRelationships => '', filterableFields => 'name,,name, email',
    columns => { ssn => { apiVisible => JSON::PP::false }, name => { apiVisible => JSON::PP::true } } });
is $r->{status}, 200, 'PUT entity settings with arrays, spaces, duplicates and empties';
is $r->{json}{defaultExpand}, 'customer,items.product', '  array normalised to one comma string';
is $r->{json}{defaultFields}, undef, '  an empty default is null';
is $r->{json}{expandableRelationships}, '', '  an empty whitelist is kept as "" (allows nothing)';
is $r->{json}{filterableFields}, 'name,email', '  duplicates and empty items dropped';
is_deeply $r->{json}{effective}{hiddenColumns}, ['ssn'], '  only apiVisible false is hidden';
is $r->{json}{effective}{maxExpandDepth}, 0, '  depth from the workspace (0)';
is $r->{json}{effective}{publicAccess}, 'NONE', '  public access NONE';
is_deeply [ sort keys %{ $r->{json}{effective} } ],
    [ sort qw(maxExpandDepth publicAccess defaultExpand defaultFields expandableRelationships
              filterableFields hiddenColumns) ], '  effective has every resolved value';

$r = $t->admin(PUT => "$W/entities/Orders/settings", { publicAccess => 'READ_WRITE' });
is $r->{json}{defaultExpand}, undef, 'entity PUT replaces: omitted fields are unset';
is $r->{json}{columns}, undef, '  columns too';
is_deeply $r->{json}{effective}{hiddenColumns}, [], '  nothing hidden any more';
is $t->admin(GET => "$W/entities/orders/settings")->{json}{publicAccess}, undef,
    'entity names are case-sensitive (orders is not Orders)';

$t->put_workspace_settings($ws->{id}, { maxExpandDepth => 7 });
is $t->admin(GET => "$W/entities/Orders/settings")->{json}{effective}{maxExpandDepth}, 7,
    "an entity's effective depth follows the workspace";

# Settings are per workspace and survive a restart.
my $ws2 = $t->create_workspace('acme-corp', 'other');
is $t->admin(GET => "/api/v1/workspaces/$ws2->{id}/entities/Orders/settings")->{json}{publicAccess},
    undef, "another workspace's Orders is untouched";
my $orders_before = $t->admin(GET => "$W/entities/Orders/settings")->{body};
$t->stop_daemon(signal => 'KILL');
$t->start_daemon;
is $t->admin(GET => "$W/entities/Orders/settings")->{body}, $orders_before,
    'entity settings survive a SIGKILL of apikeyd';
is $t->admin(GET => "$W/settings")->{json}{maxExpandDepth}, 7, 'workspace settings too';

done_testing;
