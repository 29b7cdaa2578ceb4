# Rate limits set through apikeyd reach nginx: a key's own limit at create time, changed
# with PATCH (applied without reload), removed with null.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new(
    http_extra     => '    apikey_rate_limit_zone zone=keys:1m;',
    location_extra => '            apikey_rate_limit zone=keys;',
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $W = "/api/v1/workspaces/$ws->{id}";
my $PATH = '/api/v1/acme-corp/sales/orders';

my $limited = $t->create_key($ws->{id}, rate_limit => { limit => 3, window_seconds => 60 });
is_deeply $limited->{rate_limit}, { limit => 3, window_seconds => 60 }, 'create returns the rate limit';
is_deeply $t->admin(GET => "$W/api-keys/$limited->{id}")->{json}{rate_limit},
    { limit => 3, window_seconds => 60 }, 'GET shows it';

my @s = map { $t->api(GET => $PATH, key => $limited->{key})->{status} } 1 .. 4;
is_deeply \@s, [200, 200, 200, 429], 'limit 3 per minute: three pass, the fourth is 429';

my $free = $t->create_key($ws->{id});
my $r = $t->api(GET => $PATH, key => $free->{key});
is $r->{status}, 200, 'a key without a limit (and no default) passes';
ok !defined $r->{headers}{'ratelimit-policy'}, '  with no RateLimit headers';

# PATCH raises the limit: applies on the next requests, no reload.
$r = $t->admin(PATCH => "$W/api-keys/$limited->{id}", { rate_limit => { limit => 100, window_seconds => 60 } });
is $r->{status}, 200, 'PATCH rate_limit';
is $r->{json}{rate_limit}{limit}, 100, '  returns the key with the new limit';
ok $t->wait_until(sub { $t->api(GET => $PATH, key => $limited->{key})->{status} == 200 }, 1),
    'the raised limit applies in nginx within 1 s, without reload';
like $t->api(GET => $PATH, key => $limited->{key})->{headers}{'ratelimit-policy'} // '',
    qr/q=100;w=60/, '  RateLimit-Policy shows the new limit';

$r = $t->admin(PATCH => "$W/api-keys/$limited->{id}", { rate_limit => undef });
is $r->{status}, 200, 'PATCH rate_limit null';
ok $t->wait_until(sub {
    !defined $t->api(GET => $PATH, key => $limited->{key})->{headers}{'ratelimit-policy'} }, 1),
    'the key is unlimited again';

for my $case ([ { rate_limit => { limit => 0, window_seconds => 1 } }, 'limit' ],
              [ { rate_limit => { limit => 1, window_seconds => 0 } }, 'window_seconds' ],
              [ { rate_limit => 'fast' }, 'rate_limit' ],
              [ { permission => 'read_write' }, 'permission' ],
              [ { name => '' }, 'name' ],
              [ {}, 'rate_limit' ]) {
    my ($body, $field) = @$case;
    $r = $t->admin(PATCH => "$W/api-keys/$limited->{id}", $body);
    is $r->{status}, 400, "PATCH with a bad body is 400 ($field)";
    like $r->{json}{error}{message} // '', qr/\Q$field\E/, '  naming the field';
}
is $t->admin(PATCH => "$W/api-keys/00000000-0000-4000-8000-000000000000",
             { rate_limit => undef })->{status}, 404, 'PATCH of an unknown key: 404';

my @types = map { $_->{type} } @{ $t->admin(GET => "$W/changes?limit=1000")->{json}{changes} };
is scalar(grep { $_ eq 'api_key.updated' } @types), 2, 'each PATCH that changed something is in the feed';

# A workspace default applies to the keys without a limit of their own.
my $inherits = $t->create_key($ws->{id});
my $own = $t->create_key($ws->{id}, rate_limit => { limit => 50, window_seconds => 60 });
$r = $t->admin(PUT => "$W/settings", { defaultRateLimit => { limit => 2, window_seconds => 60 } });
is $r->{status}, 200, 'PUT workspace defaultRateLimit';
is_deeply $r->{json}{effective}{defaultRateLimit}, { limit => 2, window_seconds => 60 }, '  effective';
ok $t->wait_until(sub {
    ($t->api(GET => $PATH, key => $inherits->{key})->{headers}{'ratelimit-policy'} // '') =~ /q=2;/ }, 1),
    'a key without its own limit gets the workspace default within 1 s';
is $t->api(GET => $PATH, key => $inherits->{key})->{status}, 200, '  second request of 2 passes';
is $t->api(GET => $PATH, key => $inherits->{key})->{status}, 429, '  third is 429';
like $t->api(GET => $PATH, key => $own->{key})->{headers}{'ratelimit-policy'} // '', qr/q=50;/,
    'a key with its own limit keeps it';
$t->admin(PUT => "$W/settings", {});
ok $t->wait_until(sub {
    !defined $t->api(GET => $PATH, key => $inherits->{key})->{headers}{'ratelimit-policy'} }, 1),
    'removing the default frees the inheriting key again';
is $t->admin(PUT => "$W/settings", { defaultRateLimit => { limit => -1, window_seconds => 5 } })->{status},
    400, 'a bad defaultRateLimit is 400';

done_testing;
