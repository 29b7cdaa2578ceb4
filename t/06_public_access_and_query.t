# Entity settings in the data plane: public access (seed 003's table, every method),
# keys on public entities, and the query policy (expand / filter / fields) as the
# upstream receives it.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new;
my $ws = $t->create_workspace('acme-corp', 'sales');
my $ro = $t->create_key($ws->{id}, permission => 'read_only');
my $rw = $t->create_key($ws->{id}, permission => 'read_write');

$t->put_entity_settings($ws->{id}, 'Catalog', { publicAccess => 'READ_ONLY' });
$t->put_entity_settings($ws->{id}, 'Form',    { publicAccess => 'READ_WRITE' });
$t->put_entity_settings($ws->{id}, 'Customer', {
    defaultExpand           => 'customer,items.product',
    defaultFields           => 'name,email,ssn',
    expandableRelationships => 'customer,items',
    filterableFields        => 'name,email',
    maxExpandDepth          => 2,
    columns                 => { ssn => { apiVisible => JSON::PP::false } },
});

my $base = '/api/v1/acme-corp/sales';

sub body_of { my $r = shift; ref $r->{json} eq 'HASH' ? $r->{json} : {} }

# --- public access: every row of the seed's table, every method --------------------------

my %expect = (
    Order   => { GET => 401, HEAD => 401, POST => 401, PUT => 401, PATCH => 401, DELETE => 401 },
    Catalog => { GET => 200, HEAD => 200, POST => 401, PUT => 401, PATCH => 401, DELETE => 401 },
    Form    => { GET => 200, HEAD => 200, POST => 200, PUT => 200, PATCH => 200, DELETE => 200 },
);
for my $entity (sort keys %expect) {
    for my $m (qw(GET HEAD POST PUT PATCH DELETE)) {
        my $r = $t->api($m, "$base/$entity", $m =~ /^P/ ? (body => '{}') : ());
        is $r->{status}, $expect{$entity}{$m}, "no key: $m $entity -> $expect{$entity}{$m}";
        if ($r->{status} == 401 && $m ne 'HEAD') {
            is body_of($r)->{error}{code}, 'missing_credentials', "  code missing_credentials";
        } elsif ($m ne 'HEAD') {
            is body_of($r)->{public}, '1', '  the upstream is told the request is public';
            is body_of($r)->{key_id}, '', '  and gets no key id';
        }
    }
}

# With Authorization, the key decides, also on public entities.
is $t->api(POST => "$base/Form", key => $ro->{key}, body => '{}')->{status}, 403,
    'read_only key on a READ_WRITE entity: POST is 403';
is $t->api(GET => "$base/Form", key => ApiKeyTest::make_key())->{status}, 401,
    'unknown key on a public entity is 401';
is $t->api(GET => "$base/Catalog", key => 'garbage')->{status}, 401,
    'malformed key on a public entity is 401';
my $keyed = $t->api(GET => "$base/Catalog", key => $rw->{key});
is $keyed->{status}, 200, 'valid key on a public entity';
is body_of($keyed)->{key_id}, $rw->{id}, '  upstream sees the key, not a public request';
is body_of($keyed)->{public}, '', '  and no public flag';

# --- query policy ----------------------------------------------------------------------

sub upstream {
    my ($query, $name) = @_;
    my $r = $t->api(GET => "$base/Customer?$query", key => $ro->{key});
    is $r->{status}, 200, "$name: 200" or diag $r->{body};
    return body_of($r);
}

sub refused {
    my ($query, $code, $offender, $name) = @_;
    my $r = $t->api(GET => "$base/Customer?$query", key => $ro->{key});
    is $r->{status}, 400, "$name: 400";
    is body_of($r)->{error}{code}, $code, "  code $code";
    like body_of($r)->{error}{message} // '', qr/'\Q$offender\E'/, "  message names '$offender'";
    ok !defined body_of($r)->{method}, '  the upstream was not called';
}

my $u = upstream('', 'no parameters');
is $u->{expand}, 'customer,items.product', 'default expand applied when absent';
is $u->{fields}, 'id,name,email', 'default fields: hidden ssn removed, id kept';
is $u->{hidden}, 'ssn', 'hidden columns passed on';

is upstream('expand=', 'empty expand')->{expand}, '', 'an empty expand means none, not the default';
is upstream('expand=items.product.vendor,customer.address.country', 'deep expand')->{expand},
    'items.product,customer.address', 'paths truncated at the entity depth 2, not rejected';
is upstream('expand=customer&expand=items', 'repeated expand')->{expand}, 'customer,items',
    'repeated expand parameters are joined';
is upstream('fields=name,ssn', 'asking for a hidden column')->{fields}, 'id,name',
    'a hidden column never appears in the effective fields';
is upstream('filter[name]=bob', 'allowed filter')->{method}, 'GET', 'whitelisted filter passes';
is upstream('filter%5Bemail%5D=a%40b', 'encoded filter')->{method}, 'GET',
    'percent-encoded filter name is decoded';

refused('expand=orders', 'expand_not_allowed', 'orders', 'expand outside the whitelist');
refused('expand=customer,orders.lines', 'expand_not_allowed', 'orders', 'second path outside');
refused('filter[status]=x', 'filter_not_allowed', 'status', 'filter outside the whitelist');
refused('filter%5Bstatus%5D=x', 'filter_not_allowed', 'status', 'encoded filter outside');
refused('filter[ssn]=1', 'filter_not_allowed', 'ssn', 'filter on a hidden column');
refused('expand=%zz', 'invalid_query', 'expand', 'broken percent-escape');

# Workspace depth applies where the entity sets none; the system default is 3.
is body_of($t->api(GET => "$base/Order?expand=a.b.c.d", key => $ro->{key}))->{expand}, 'a.b.c',
    'system default depth 3';
$t->put_workspace_settings($ws->{id}, { maxExpandDepth => 1 });
ok $t->wait_until(sub {
    body_of($t->api(GET => "$base/Order?expand=a.b.c.d", key => $ro->{key}))->{expand} eq 'a'
}, 1), 'workspace depth 1 reaches nginx within 1 s';
is body_of($t->api(GET => "$base/Customer?expand=items.product", key => $ro->{key}))->{expand},
    'items.product', 'the entity depth still wins over the workspace';

# A settings change reaches nginx within a second.
$t->put_entity_settings($ws->{id}, 'Order', { publicAccess => 'READ_ONLY' });
ok $t->wait_until(sub { $t->api(GET => "$base/Order")->{status} == 200 }, 1),
    'making an entity public reaches nginx within 1 s';
$t->put_entity_settings($ws->{id}, 'Order', {});
ok $t->wait_until(sub { $t->api(GET => "$base/Order")->{status} == 401 }, 1),
    'and taking it back too';

# --- keys on public entities, per workspace, per name ------------------------------------------

my $inv = $t->create_workspace('acme-corp', 'inventory');
my $inv_key = $t->create_key($inv->{id}, permission => 'read_write');
my $gone = $t->create_key($ws->{id}, permission => 'read_write');
$t->revoke_key($ws->{id}, $gone->{id});

my @with_bad_auth = (
    [ [ Authorization => '' ],                        'invalid_authorization', 'empty Authorization' ],
    [ [ Authorization => 'Basic dXNlcjpwYXNz' ],      'invalid_authorization', 'Basic credentials' ],
    [ [ Authorization => "Bearer $gone->{key}" ],     'key_revoked',           'a revoked key' ],
    [ [ Authorization => "Bearer $inv_key->{key}" ],  'wrong_workspace',       "another workspace's key" ],
);
for my $case (@with_bad_auth) {
    my ($headers, $code, $name) = @$case;
    for my $entity (qw(Catalog Form)) {
        my $r = $t->api(GET => "$base/$entity", headers => $headers);
        is $r->{status}, 401, "$name on public $entity: 401 (never falls back to public)";
        is body_of($r)->{error}{code}, $code, "  code $code";
        like $r->{headers}{'www-authenticate'} // '', qr/^Bearer/, '  WWW-Authenticate';
    }
}
for my $m (qw(PUT PATCH DELETE)) {
    my $r = $t->api($m, "$base/Form", key => $ro->{key}, $m eq 'DELETE' ? () : (body => '{}'));
    is $r->{status}, 403, "read_only key on a READ_WRITE entity: $m is 403";
    is body_of($r)->{error}{code}, 'read_only_key', '  read_only_key';
}
my $r = $t->api(POST => "$base/Catalog", key => $rw->{key}, body => '{}');
is $r->{status}, 200, 'read_write key may POST to a READ_ONLY public entity';
is body_of($r)->{key_id}, $rw->{id}, '  as that key';

$r = $t->api(HEAD => "$base/Catalog");
is $r->{status}, 200, 'public HEAD: 200';
is $r->{body}, '', '  without a body';

$r = $t->api(GET => "$base/Order", key => $rw->{key}, headers => [ 'X-Api-Public' => '1' ]);
is body_of($r)->{public}, '', 'a client cannot claim to be public (X-Api-Public replaced)';
$r = $t->api(GET => "$base/Order", headers => [ 'X-Api-Public' => '1' ]);
is $r->{status}, 401, '  nor get in with it';

is $t->api(GET => '/api/v1/acme-corp/inventory/Catalog')->{status}, 401,
    'public access is per workspace: the same entity elsewhere is not public';
is $t->api(GET => "$base/catalog")->{status}, 401, 'entity names are case-sensitive';
is $t->api(GET => "$base/Catalogue")->{status}, 401, 'and matched whole';

# The access log says how a request was admitted (never a key).
$t->api(GET => "$base/Catalog?marker=logged-public");
$t->api(POST => "$base/Catalog?marker=logged-refused", body => '{}');
ok $t->wait_until(sub { $t->access_log =~ /marker=logged-refused/ }, 2), 'access log written';
like $t->access_log, qr/marker=logged-public HTTP[^"]*" 200 .*result=public_access prefix=-$/m,
    'public request logged as public_access, no prefix';
like $t->access_log, qr/marker=logged-refused HTTP[^"]*" 401 .*result=missing_credentials/m,
    'refused mutation logged as missing_credentials';

# --- public access without apikeyd, and after the workspace is gone -----------------------------

$t->stop_daemon;
is $t->api(GET => "$base/Catalog")->{status}, 200, 'apikeyd down: public reads still served';
is $t->api(POST => "$base/Catalog", body => '{}')->{status}, 401, '  and mutations still refused';
$t->start_daemon;

is $t->admin(DELETE => "/api/v1/workspaces/$ws->{id}")->{status}, 200, 'delete the workspace';
ok $t->wait_until(sub { $t->api(GET => "$base/Form")->{status} == 401 }, 1),
    'its public entities are closed within 1 s';
$t->create_workspace('acme-corp', 'sales');
is $t->api(GET => "$base/Form")->{status}, 401,
    'a new workspace with the same org/slug does not inherit the old settings';
is $t->api(POST => "$base/Form", body => '{}')->{status}, 401, '  (POST too)';

done_testing;
