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

done_testing;
