# Rate limits set through apikeyd reach nginx: a key's own limit at create time, changed
# with PATCH (applied without reload), removed with null. A changed limit carries over
# the requests the key spent, not the time they cost under the old one.
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

# A changed limit (the key's own, or the workspace default it inherits) carries over the
# requests the key spent in the window, not the time they cost under the old limit:
# shortened from a day to a minute, a spent key waited out the rest of the day
# (Retry-After 86370); raised, a spent key stayed refused; lowered below what it spent, it
# was still admitted.
{
    my $n = 0;
    for my $case (
        # [what, old limit, requests spent, new limit, via, first answer under the new limit]
        [ 'window shortened from a day to a minute, budget spent', [2, 86400], 2, [2, 60], 'key',
          { status => 429, retry_after => [1, 30], reset_max => 60 } ],
        [ 'limit raised from 5 to 100 a minute, budget spent', [5, 60], 5, [100, 60], 'key',
          { status => 200, remaining => [90, 94] } ],
        [ 'limit lowered from 10 to 4 a minute after 5 requests', [10, 60], 5, [4, 60], 'key',
          { status => 429, retry_after => [1, 15] } ],
        [ 'window lengthened from a minute to an hour after 5 of 10', [10, 60], 5, [10, 3600], 'key',
          { status => 200, remaining => [4, 4] } ],
        [ 'workspace default lowered from 10 to 2 a minute after 3 requests', [10, 60], 3, [2, 60],
          'default', { status => 429, retry_after => [1, 30] } ],
    ) {
        my ($what, $old, $spend, $new, $via, $want) = @$case;
        my $cws = $t->create_workspace('acme-corp', 'change-' . ++$n);
        my $CW = "/api/v1/workspaces/$cws->{id}";
        my $CP = "/api/v1/acme-corp/change-$n/orders";
        my $limit = sub { { limit => $_[0][0], window_seconds => $_[0][1] } };
        my $key;
        if ($via eq 'key') {
            $key = $t->create_key($cws->{id}, rate_limit => $limit->($old));
        } else {
            $t->put_workspace_settings($cws->{id}, { defaultRateLimit => $limit->($old) });
            $key = $t->create_key($cws->{id});
        }
        my @spent = map { $t->api(GET => $CP, key => $key->{key})->{status} } 1 .. $spend;
        is_deeply \@spent, [ (200) x $spend ], "$what: $spend requests admitted";
        $r = $via eq 'key'
            ? $t->admin(PATCH => "$CW/api-keys/$key->{id}", { rate_limit => $limit->($new) })
            : $t->admin(PUT => "$CW/settings", { defaultRateLimit => $limit->($new) });
        is $r->{status}, 200, "  the change is accepted";
        # A 429 spends nothing: poll until nginx answers under the new limit.
        my $first;
        $t->wait_until(sub {
            $first = $t->api(GET => $CP, key => $key->{key});
            ($first->{headers}{'ratelimit-policy'} // '') eq qq("apikey";q=$new->[0];w=$new->[1]);
        }, 1);
        is $first->{headers}{'ratelimit-policy'}, qq("apikey";q=$new->[0];w=$new->[1]),
            "  nginx applies q=$new->[0];w=$new->[1]";
        is $first->{status}, $want->{status}, "  the next request: $want->{status}";
        my ($left, $reset) = ($first->{headers}{ratelimit} // '') =~ /r=(\d+);t=(\d+)/;
        if (my $ra = $want->{retry_after}) {
            my $got = $first->{headers}{'retry-after'} // -1;
            ok $got >= $ra->[0] && $got <= $ra->[1], "  Retry-After $got, within $ra->[0]..$ra->[1]";
        }
        if (my $rm = $want->{remaining}) {
            ok defined $left && $left >= $rm->[0] && $left <= $rm->[1],
                '  RateLimit r=' . ($left // '?') . ", within $rm->[0]..$rm->[1]";
        }
        ok !defined $reset || $reset <= $new->[1], '  RateLimit t=' . ($reset // '?')
            . ", at most the new window ($new->[1])";
    }
}

done_testing;
