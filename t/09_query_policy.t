# The entity query policy through nginx, beyond the basics of 06: hidden columns without
# a whitelist, empty whitelists, depth 0 and default truncation, filter operators,
# percent-encoded parameter names and values, case, policy on public requests and after
# authentication, spoofed policy headers, huge lists, and settings changes (hiding a
# column, a workspace depth change republishing configured entities) reaching every
# worker within a second.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use ApiKeyTest;

# Big header buffers: the largest settings make X-Api-Hidden-Columns ~21 KB at the backend.
my $t = ApiKeyTest->new(workers => 2,
    http_extra => '    large_client_header_buffers 4 64k; proxy_buffer_size 64k; proxy_buffers 8 64k;');
my $ws    = $t->create_workspace('acme-corp', 'sales');
my $other = $t->create_workspace('acme-corp', 'inventory');
my $ro    = $t->create_key($ws->{id}, permission => 'read_only');
my $alien = $t->create_key($other->{id}, permission => 'read_write');
my $F = JSON::PP::false;

# Person: hidden columns, no whitelists at all.
$t->put_entity_settings($ws->{id}, 'Person',
    { columns => { ssn => { apiVisible => $F }, salary => { apiVisible => $F },
                   name => { apiVisible => JSON::PP::true } } });
# Locked: whitelists that allow nothing.
$t->put_entity_settings($ws->{id}, 'Locked',
    { expandableRelationships => '', filterableFields => '' });
# Shallow: no expansion at all.
$t->put_entity_settings($ws->{id}, 'Shallow', { maxExpandDepth => 0 });
# Order: a default expand deeper than its depth.
$t->put_entity_settings($ws->{id}, 'Order',
    { defaultExpand => 'items.product.vendor,customer', maxExpandDepth => 1,
      defaultFields => 'total,status' });
# Listed: a hidden column that the admin also whitelisted for filtering.
$t->put_entity_settings($ws->{id}, 'Listed',
    { filterableFields => 'name,ssn', columns => { ssn => { apiVisible => $F } } });
# Customer: ordinary whitelists.
$t->put_entity_settings($ws->{id}, 'Customer',
    { expandableRelationships => 'customer,items', filterableFields => 'name,email' });
# Paths: a whitelist of dot paths.
$t->put_entity_settings($ws->{id}, 'Paths',
    { expandableRelationships => 'customer,items.product', maxExpandDepth => 5 });
# Catalog: public, with a whitelist and no depth of its own.
$t->put_entity_settings($ws->{id}, 'Catalog',
    { publicAccess => 'READ_ONLY', filterableFields => 'name' });

my $base = '/api/v1/acme-corp/sales';

sub body_of { my $r = shift; ref $r->{json} eq 'HASH' ? $r->{json} : {} }

# GET through nginx with the read-only key (or as told); returns what the upstream saw.
sub upstream {
    my ($path, $name, %o) = @_;
    my $r = $t->api(GET => "$base/$path", exists $o{key} ? (defined $o{key} ? (key => $o{key}) : ())
                                                          : (key => $ro->{key}),
                    headers => $o{headers} // []);
    is $r->{status}, 200, "$name: 200" or diag $r->{body};
    is body_of($r)->{method}, 'GET', '  reached the upstream';
    return body_of($r);
}

sub refused {
    my ($path, $code, $offender, $name, %o) = @_;
    my $r = $t->api(GET => "$base/$path", exists $o{key} ? (defined $o{key} ? (key => $o{key}) : ())
                                                          : (key => $ro->{key}));
    subtest $name => sub {
        is $r->{status}, 400, 'status 400' or diag $r->{body};
        like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
        is body_of($r)->{error}{code}, $code, "code $code";
        like body_of($r)->{error}{message} // '', qr/'\Q$offender\E'/, "message names '$offender'"
            if defined $offender;
        ok !defined body_of($r)->{method}, 'the upstream was not called';
    };
    return $r;
}

# --- hidden columns without any whitelist -------------------------------------------------

my $u = upstream('Person', 'no parameters, hidden columns');
is $u->{fields}, '', 'no fields asked, no default: every visible field (empty)';
is $u->{hidden}, 'salary,ssn', 'both hidden columns passed on (name order)';
is $u->{expand}, '', 'nothing expanded';

refused('Person?filter[ssn]=1', 'filter_not_allowed', 'ssn',
        'filter on a hidden column with no filterableFields at all');
refused('Person?filter[salary][gte]=100000', 'filter_not_allowed', 'salary',
        'filter with an operator on a hidden column');
refused('Person?filter%5Bssn%5D=1', 'filter_not_allowed', 'ssn', 'percent-encoded filter on hidden');
refused('Person?filter%5B%73sn%5D=1', 'filter_not_allowed', 'ssn',
        'hidden column name itself percent-encoded');
refused('Listed?filter[ssn]=1', 'filter_not_allowed', 'ssn',
        'a hidden column is not filterable even when the admin whitelisted it');
upstream('Listed?filter[name]=bob', 'the other whitelisted field still filters');
upstream('Person?filter[name]=bob&filter[age][gte]=3', 'no whitelist: visible fields filter');

is upstream('Person?fields=ssn', 'only a hidden field asked')->{fields}, 'id',
    'asking only for hidden fields gives id, never "all fields"';
is upstream('Person?fields=ssn,salary', 'only hidden fields asked')->{fields}, 'id',
    '  also with two of them';
is upstream('Person?fields=%73sn', 'encoded hidden field')->{fields}, 'id',
    'a percent-encoded hidden field is removed too';
is upstream('Person?fields=name&fields=ssn', 'repeated fields')->{fields}, 'id,name',
    'repeated fields parameters: joined, hidden removed, id first';
my %f = map { $_ => 1 } split /,/, upstream('Person?fields=name,id,name', 'duplicates')->{fields};
is_deeply \%f, { id => 1, name => 1 }, 'duplicates removed, id kept once';
is upstream('Person?fields=', 'empty fields')->{fields}, '', 'empty fields: every visible field';

# Upstreams read filters from the query with their own parser, more lenient than the
# module's "&"-separated pairs: Rack 2 and Perl's URI split at ';' too, PHP drops a name's
# leading spaces, Rack and qs skip leading brackets, Rack reads "filter]ssn]" as
# filter[ssn]. Each is checked like filter[...], or refused as malformed.
refused('Person?page=1;filter[ssn]=1', 'filter_not_allowed', 'ssn',
        "a filter after a ';' (a separator to Rack 2) is checked");
refused('Listed?a=1;filter[email]=x', 'filter_not_allowed', 'email',
        "  the whitelist too, after a ';'");
upstream('Listed?a=1;filter[name]=x', "an allowed filter after a ';' passes");
upstream('Listed?filter[name]=a;b', "a ';' in an allowed filter's value passes");
for my $q ('%20filter[ssn]=1', '+filter[ssn]=1', '[filter][ssn]=1', '%5Bfilter%5D%5Bssn%5D=1',
           ']filter[ssn]=1', 'filter]ssn]=1', 'a=1;%20filter[name]=x') {
    refused("Listed?$q", 'invalid_query', undef, "'$q', a filter to a lenient parser: malformed");
}
upstream('Person?x[filter][ssn]=1&filters[ssn]=1&filter_ssn=1', 'names that are no filter to anyone');

# Hidden columns whatever their case: a database that folds names (PostgreSQL, MySQL)
# answers SSN with ssn.
refused('Person?filter[SSN]=1', 'filter_not_allowed', 'SSN', 'a hidden column in capitals is not filterable');
is upstream('Person?fields=SSN,Salary,name', 'hidden fields in another case')->{fields}, 'id,name',
    'a hidden column asked in another case is removed';

# --- whitelists of dot paths ----------------------------------------------------------------

is upstream('Paths?expand=items.product', 'a listed dot path')->{expand}, 'items.product',
    'a path listed in expandableRelationships may be expanded';
is upstream('Paths?expand=items', 'the way to a listed path')->{expand}, 'items',
    '  and so may its first segment, the way to it';
is upstream('Paths?expand=items.product.vendor,customer.address', 'below listed paths')->{expand},
    'items.product.vendor,customer.address', '  and what lies below a listed path';
refused('Paths?expand=items.supplier', 'expand_not_allowed', 'items.supplier',
        'another relationship of items is refused, named in full');
refused('Paths?expand=orders', 'expand_not_allowed', 'orders', 'an unlisted relationship is refused');

# --- whitelists that allow nothing --------------------------------------------------------

refused('Locked?expand=anything', 'expand_not_allowed', 'anything', 'empty expand whitelist');
refused('Locked?filter[id]=1', 'filter_not_allowed', 'id', 'empty filter whitelist, even id');
upstream('Locked', 'an empty whitelist does not refuse a request without parameters');
is upstream('Locked?expand=', 'empty expand on an empty whitelist')->{expand}, '', '  nothing expanded';
upstream('Locked?page=2&sort=name', 'other parameters pass through untouched');

# --- depth --------------------------------------------------------------------------------

is upstream('Shallow?expand=customer,items.product', 'depth 0')->{expand}, '',
    'maxExpandDepth 0: nothing is expanded, nothing is refused';
is upstream('Order', 'default expand deeper than the depth')->{expand}, 'items,customer',
    'the default expand is cut at the depth too';
is upstream('Order', 'default fields')->{fields}, 'id,total,status', 'default fields, id in front';
is upstream('Order?expand=customer', 'explicit expand')->{expand}, 'customer',
    'an explicit expand replaces the default';
is upstream('Order?fields=status', 'explicit fields')->{fields}, 'id,status',
    'explicit fields replace the default';
is upstream('Open?expand=a.b.c.d.e,f', 'entity never configured')->{expand}, 'a.b.c,f',
    'an entity never configured: everything expandable, system depth 3';
is upstream('Open?expand=a.b,a.b.c.d,a.b', 'paths equal after the cut')->{expand}, 'a.b,a.b.c',
    'duplicates removed after the cut';

# --- filter syntax and percent-encoding -------------------------------------------------------

upstream('Customer?filter[name][eq]=bob', 'whitelisted filter with an operator');
refused('Customer?filter[status][eq]=x', 'filter_not_allowed', 'status',
        'an operator does not hide a forbidden field');
refused('Customer?filter[name][eq][x]=1', 'invalid_query', undef, 'two operators: malformed');
refused('Customer?filter[]=1', 'invalid_query', undef, 'filter with no field');
refused('Customer?filter[name=1', 'invalid_query', undef, 'filter without its closing bracket');
refused('Customer?filter[na%20me]=1', 'invalid_query', undef, 'a field name with a space');
refused('Customer?filter[Name]=1', 'filter_not_allowed', 'Name', 'field names are case-sensitive');
refused('Customer?expand=Customer', 'expand_not_allowed', 'Customer',
        'relationship names are case-sensitive');
refused('Customer?%65xpand=orders', 'expand_not_allowed', 'orders',
        'a percent-encoded parameter name is still expand');
refused('Customer?expand=%6Frders', 'expand_not_allowed', 'orders', 'an encoded relationship');
refused('Customer?expand=customer%2Corders', 'expand_not_allowed', 'orders',
        'an encoded comma separates paths too');
refused('Customer?expand=customer&expand=orders', 'expand_not_allowed', 'orders',
        'every repeated expand parameter is checked');
refused('Customer?expand=customer..address', 'invalid_query', undef, 'empty path segment');
refused('Customer?expand=customer.', 'invalid_query', undef, 'trailing dot');
refused('Customer?page=1&filter[name]=%zz', 'invalid_query', undef, 'broken escape in a value');
is upstream('Customer?expand=customer,+items', 'plus is a space')->{expand}, 'customer,items',
    "'+' decodes to a space, which is trimmed";
is upstream('Customer?expand=,,customer,,', 'empty items')->{expand}, 'customer',
    'empty items are ignored';

# The offender comes from the client: the body stays valid JSON, and is short.
my $r = refused('Customer?expand=%22%5C%01' . ('x' x 300), 'invalid_query', undef,
                'quotes, backslash and control bytes in the offender');
ok ref $r->{json} eq 'HASH', '  body is valid JSON' or diag $r->{body};
ok length($r->{body}) < 400, '  the offender is cut (body ' . length($r->{body}) . ' bytes)';
unlike $r->{body}, qr/[\x00-\x1f](?!\z)/, '  no raw control bytes in the body';

# A long query: hundreds of relationships, all passed on.
my @many = map { "rel$_" } 1 .. 300;
is upstream('Open?expand=' . join(',', @many), '300 relationships')->{expand}, join(',', @many),
    'a long expand list reaches the upstream whole';

# --- the policy applies after authentication, and to public requests -------------------------

refused('Catalog?filter[price]=1', 'filter_not_allowed', 'price',
        'public request without a key obeys the filter whitelist', key => undef);
my $p = upstream('Catalog?filter[name]=x&expand=a.b.c.d', 'public request, allowed filter',
                 key => undef);
is $p->{public}, '1', '  admitted as public';
is $p->{expand}, 'a.b.c', '  with the expand policy applied';

$r = $t->api(GET => "$base/Customer?filter[status]=1&expand=orders");
is $r->{status}, 401, 'no key on a non-public entity: 401 before any query check';
is body_of($r)->{error}{code}, 'missing_credentials', '  (the policy is not revealed)';
$r = $t->api(GET => "$base/Customer?filter[status]=1", key => $alien->{key});
is $r->{status}, 401, 'a key of another workspace: 401 before any query check';
is body_of($r)->{error}{code}, 'wrong_workspace', '  code wrong_workspace';
$r = $t->api(POST => "$base/Customer?filter[status]=1", key => $ro->{key}, body => '{}');
is $r->{status}, 403, 'read-only key POST with a bad filter: 403 (permission first)';

$r = $t->api(HEAD => "$base/Customer?expand=orders", key => $ro->{key});
is $r->{status}, 400, 'HEAD with a forbidden expand: 400';
is $r->{body}, '', '  without a body';

# --- the client cannot set the policy headers ---------------------------------------------------

my $s = upstream('Person?fields=name', 'spoofed policy headers', headers => [
    'X-Api-Expand' => 'secrets', 'X-Api-Fields' => 'ssn,salary', 'X-Api-Hidden-Columns' => 'none',
    'X-Api-Public' => '1' ]);
is $s->{fields}, 'id,name', 'X-Api-Fields from the client is replaced';
is $s->{expand}, '', 'X-Api-Expand from the client is replaced';
is $s->{hidden}, 'salary,ssn', 'X-Api-Hidden-Columns from the client is replaced';
is $s->{public}, '', 'X-Api-Public from the client is replaced';
$s = upstream('Open', 'spoofed hidden list where none is hidden',
              headers => [ 'X-Api-Hidden-Columns' => 'ssn', 'X-Api-Fields' => 'ssn' ]);
is $s->{hidden}, '', '  no client value when the module has none';
is $s->{fields}, '', '  idem for fields';

# --- settings changes reach every worker within a second -------------------------------------

# Every one of $n requests (spread over the workers by reuseport) satisfies $cond.
sub all_see {
    my ($cond, $n) = @_;
    for (1 .. ($n // 12)) { return 0 unless $cond->() }
    return 1;
}

sub within_1s {
    my ($cond, $name) = @_;
    my $t0 = time;
    my $ok = $t->wait_until($cond, 1);
    my $took = time - $t0;
    ok $ok, "$name (after " . sprintf('%.3f', $took) . ' s)';
    ok all_see($cond), '  and every following request, on every worker, agrees';
}

$t->put_entity_settings($ws->{id}, 'Person',
    { columns => { ssn => { apiVisible => $F }, salary => { apiVisible => $F },
                   name => { apiVisible => $F } } });
within_1s(sub {
    my $b = body_of($t->api(GET => "$base/Person?fields=name,email", key => $ro->{key}));
    ($b->{fields} // '') eq 'id,email' && ($b->{hidden} // '') eq 'name,salary,ssn'
}, 'hiding a column reaches nginx within 1 s');
within_1s(sub {
    $t->api(GET => "$base/Person?filter[name]=x", key => $ro->{key})->{status} == 400
}, 'and it can no longer be filtered on');

$t->put_entity_settings($ws->{id}, 'Person', {});
within_1s(sub {
    my $b = body_of($t->api(GET => "$base/Person?fields=ssn", key => $ro->{key}));
    ($b->{fields} // '') eq 'id,ssn' && ($b->{hidden} // 'x') eq ''
}, 'clearing the entity settings shows every column again within 1 s');

# A workspace depth change must republish the entities that have settings but no depth
# of their own (Catalog), not only the workspace record.
is upstream('Catalog?expand=a.b.c.d', 'before the workspace change')->{expand}, 'a.b.c',
    'configured entity without a depth: 3';
$t->put_workspace_settings($ws->{id}, { maxExpandDepth => 1 });
within_1s(sub {
    (body_of($t->api(GET => "$base/Catalog?expand=a.b.c.d"))->{expand} // '') eq 'a'
}, 'a workspace depth change reaches a configured entity within 1 s');
is upstream('Order?expand=customer.address', 'entity with its own depth')->{expand}, 'customer',
    'an entity depth still wins (Order: 1)';
$t->put_workspace_settings($ws->{id}, { maxExpandDepth => 4 });
within_1s(sub {
    (body_of($t->api(GET => "$base/Catalog?expand=a.b.c.d.e"))->{expand} // '') eq 'a.b.c.d'
}, 'raising the workspace depth to 4 reaches it too');
is upstream('Shallow?expand=a', 'depth 0 entity')->{expand}, '',
    'an entity depth of 0 is its own, not "unset"';
is upstream('Open?expand=a.b.c.d.e', 'entity never configured')->{expand}, 'a.b.c.d',
    'an entity never configured follows the workspace depth';

# Settings are per workspace: the same entity name elsewhere is untouched.
my $other_key = $t->create_key($other->{id}, permission => 'read_only');
my $o = body_of($t->api(GET => '/api/v1/acme-corp/inventory/Person?fields=ssn&filter[ssn]=1',
                        key => $other_key->{key}));
is $o->{fields}, 'id,ssn', "another workspace's Person shows ssn";
is $o->{hidden}, '', '  and hides nothing';

# --- settings at their limits -------------------------------------------------------------------

my @cols  = map { sprintf 'c%019d', $_ } 1 .. 1000;
my @paths = map { my $i = $_; join '.', map { sprintf 'p%02d%03d', $_, $i } 1 .. 3 } 1 .. 256;
$t->put_entity_settings($ws->{id}, 'Big', {
    columns => { map { ($_ => { apiVisible => $F }) } @cols },
    defaultExpand => join(',', @paths), maxExpandDepth => 10,
    defaultFields => join(',', map { sprintf 'f%010d', $_ } 1 .. 256) });
my $big = upstream('Big', 'entity with 1000 hidden columns and 256 default paths');
is $big->{hidden}, join(',', @cols), 'all 1000 hidden columns passed on';
is $big->{expand}, join(',', @paths), 'all 256 default paths passed on';
is scalar(split /,/, $big->{fields}), 257, 'id and the 256 default fields';
is upstream('Big?fields=' . join(',', @cols), 'asking for every hidden column')->{fields}, 'id',
    '  none of them is returned';
refused("Big?filter[$cols[-1]]=1", 'filter_not_allowed', $cols[-1], 'the last hidden column is not filterable');

done_testing;
