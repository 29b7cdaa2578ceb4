# apikey_workspace and apikey_entity in each form the module evaluates differently: text
# with variables (the script engine), one variable alone ($x or ${x}, read as is), and
# captures ($1, the script engine again). Every form decides the same way, variables that
# are not found are the empty string in both paths, and $apikey_entity is what was used.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new(
    workers        => 1,
    location_extra => "            add_header X-Entity \"[\$apikey_entity]\" always;\n"
                    . "            add_header X-Result \$apikey_result always;\n",
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $key = $t->create_key($ws->{id}, permission => 'read_only');
$t->put_entity_settings($ws->{id}, 'Person',
    { columns => { ssn => { apiVisible => JSON::PP::false }, salary => { apiVisible => JSON::PP::false } } });
my $PATH = '/api/v1/acme-corp/sales/Person';

# What a request saw: status, outcome, $apikey_entity, the hidden columns at the upstream.
sub outcome {
    my (@headers) = @_;
    my $r = $t->api(GET => $PATH, key => $key->{key}, headers => \@headers);
    my $hidden = ref $r->{json} eq 'HASH' ? $r->{json}{hidden} // '-' : '-';
    return join ' ', $r->{status} // 'none', $r->{headers}{'x-result'} // '-',
        $r->{headers}{'x-entity'} // '-', $hidden;
}

sub with_config {
    my ($workspace, $entity, $set) = @_;
    $t->reload_nginx(location_apikey => ($set // '')
        . "            apikey on;\n            apikey_workspace $workspace;\n"
        . "            apikey_entity $entity;\n");
}

my $admitted = '200 ok [Person] salary,ssn';
my @same = (
    ['$org/$ws',         '$entity',   undef,               'text with variables; a lone variable'],
    ['$org/$ws',         '${entity}', undef,               'a lone variable in braces'],
    ['$wsv',             '$entity',   'set $wsv $org/$ws;', 'a lone workspace variable'],
    ['$1/$2',            '$3',        undef,               'captures'],
    ['acme-corp/sales',  'Per$ent',   'set $ent son;',     'constant workspace, text and a variable'],
);
for my $c (@same) {
    with_config($c->[0], $c->[1], $c->[2] && "            $c->[2]\n");
    is outcome(), $admitted, "$c->[3]: admitted, entity Person, its hidden columns";
}

# Not found: a lone variable, and the same variable run through the script engine.
for my $form (['$http_x_entity', 'lone'], ['$http_x_entity$http_x_none', 'script']) {
    with_config('$org/$ws', $form->[0]);
    is outcome('X-Entity' => 'Person'), $admitted, "entity from a header ($form->[1]): admitted";
    is outcome(), '200 ok [] ', "entity variable not found ($form->[1]): the empty entity";
}
my %not_found;
for my $form (['$http_x_ws', 'lone'], ['$http_x_ws$http_x_none', 'script']) {
    with_config($form->[0], '$entity');
    is outcome('X-Ws' => 'acme-corp/sales'), $admitted, "workspace from a header ($form->[1]): admitted";
    $not_found{ $form->[1] } = outcome();
    like $not_found{ $form->[1] }, qr/^4\d\d /, "workspace variable not found ($form->[1]): refused";
}
is $not_found{lone}, $not_found{script}, 'a workspace not found is refused alike in both paths';

done_testing;
