# CORS through nginx: preflights answered by the module without a key, and the grant on
# every response to an allowed origin, the module's own rejections included.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

# A rate-limit zone (for the 429 case) and, on /Legacy only, an upstream that sends its own
# CORS headers as many existing backends do.
my $t = ApiKeyTest->new(
    http_extra     => '    apikey_rate_limit_zone zone=keys:32k;',
    location_extra => '            apikey_rate_limit zone=keys;',
    backend_extra  => '            if ($uri ~ "/Legacy") { add_header Access-Control-Allow-Origin "*" always; }',
);
my $locked = $t->create_workspace('acme-corp', 'sales');
my $open   = $t->create_workspace('acme-corp', 'inventory');
my $key = $t->create_key($locked->{id}, permission => 'read_only');
$t->put_workspace_settings($locked->{id},
    { corsAllowedOrigins => ['https://app.example.com', 'http://localhost:3000'] });

my $APP  = 'https://app.example.com';
my $EVIL = 'https://evil.example.net';

sub preflight {
    my ($path, $origin, @more) = @_;
    return $t->api(OPTIONS => $path, headers => [
        Origin => $origin, 'Access-Control-Request-Method' => 'POST', @more ]);
}

my $r = preflight('/api/v1/acme-corp/sales/Customer', $APP,
                  'Access-Control-Request-Headers' => 'content-type, x-request-id');
is $r->{status}, 204, 'preflight from an allowed origin: 204 without a key';
is $r->{headers}{'access-control-allow-origin'}, $APP, '  allows that origin';
like $r->{headers}{'access-control-allow-methods'} // '', qr/\bPOST\b/, '  allows POST';
like $r->{headers}{'access-control-allow-headers'} // '', qr/\bAuthorization\b/i,
    '  allows Authorization';
like $r->{headers}{'access-control-allow-headers'} // '', qr/x-request-id/,
    '  allows the requested header';
like $r->{headers}{'access-control-max-age'} // '', qr/^\d+$/, '  has a max age';
like $r->{headers}{vary} // '', qr/\bOrigin\b/, '  Vary: Origin';
is $r->{body}, '', '  no body';

$r = preflight('/api/v1/acme-corp/sales/Customer', $EVIL);
isnt $r->{status}, 204, 'preflight from another origin is not granted';
ok !defined $r->{headers}{'access-control-allow-origin'}, '  no Access-Control-Allow-Origin';
is $r->{json}{error}{code}, 'cors_origin_not_allowed', '  JSON error code';

$r = preflight('/api/v1/acme-corp/inventory/Item', $EVIL);
is $r->{status}, 204, 'a workspace without a list allows every origin';
is $r->{headers}{'access-control-allow-origin'}, '*', '  with *';

$r = preflight('/api/v1/acme-corp/nowhere/Item', $APP);
ok !defined $r->{headers}{'access-control-allow-origin'}, 'unknown workspace: no grant';

# Real responses.
$r = $t->api(GET => '/api/v1/acme-corp/sales/Customer', key => $key->{key},
             headers => [ Origin => $APP ]);
is $r->{status}, 200, 'request from an allowed origin passes';
is $r->{headers}{'access-control-allow-origin'}, $APP, '  upstream 200 carries the grant';
like $r->{headers}{vary} // '', qr/\bOrigin\b/, '  and Vary: Origin';

$r = $t->api(GET => '/api/v1/acme-corp/sales/Customer', headers => [ Origin => $APP ]);
is $r->{status}, 401, 'no key from an allowed origin: 401';
is $r->{headers}{'access-control-allow-origin'}, $APP, '  the 401 carries the grant';

$r = $t->api(POST => '/api/v1/acme-corp/sales/Customer', key => $key->{key}, body => '{}',
             headers => [ Origin => 'http://localhost:3000' ]);
is $r->{status}, 403, 'read-only key POST from an allowed origin: 403';
is $r->{headers}{'access-control-allow-origin'}, 'http://localhost:3000', '  the 403 carries it';

$r = $t->api(GET => '/api/v1/acme-corp/sales/Customer', key => $key->{key},
             headers => [ Origin => $EVIL ]);
is $r->{status}, 200, 'request from another origin still passes (CORS is the browser\'s job)';
ok !defined $r->{headers}{'access-control-allow-origin'}, '  but gets no grant';

$r = $t->api(GET => '/api/v1/acme-corp/sales/Customer', key => $key->{key});
ok !defined $r->{headers}{'access-control-allow-origin'}, 'no Origin: no CORS headers';

# A change of the list reaches nginx within a second.
$t->put_workspace_settings($locked->{id}, { corsAllowedOrigins => [$EVIL] });
ok $t->wait_until(sub { preflight('/api/v1/acme-corp/sales/Customer', $EVIL)->{status} == 204 }, 1),
    'a new allowed origin reaches nginx within 1 s';
isnt preflight('/api/v1/acme-corp/sales/Customer', $APP)->{status}, 204,
    'and the removed one is no longer granted';

# --- more of the contract -------------------------------------------------------------------

sub acao_values {
    my ($r) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq 'access-control-allow-origin' } @{ $r->{header_list} };
}

sub granted {
    my ($r, $origin, $name) = @_;
    subtest $name => sub {
        is_deeply [ acao_values($r) ], [$origin], "exactly one Access-Control-Allow-Origin: $origin";
        like $r->{headers}{vary} // '', qr/\bOrigin\b/, 'Vary: Origin';
    };
}

sub not_granted {
    my ($r, $name) = @_;
    is_deeply [ acao_values($r) ], [], "$name: no Access-Control-Allow-Origin";
}

my $S = '/api/v1/acme-corp/sales';
my $ws_id = $locked->{id};
$t->put_workspace_settings($ws_id, { corsAllowedOrigins =>
    [ 'HTTPS://App.Example.COM:443', 'http://localhost:3000', 'http://[::1]:8080' ] });
$t->put_entity_settings($ws_id, 'Customer', { expandableRelationships => 'orders' });
ok $t->wait_until(sub { preflight("$S/Customer", $APP)->{status} == 204 }, 1),
    'origins stored in another case and with the default port match what browsers send';
is_deeply $t->admin(GET => "/api/v1/workspaces/$ws_id/settings")->{json}{corsAllowedOrigins},
    [ $APP, 'http://localhost:3000', 'http://[::1]:8080' ], '  (stored normalised)';
is preflight("$S/Customer", 'http://[::1]:8080')->{status}, 204, 'an IPv6 literal origin';

# Near misses are not the same origin.
for my $o ('https://app.example.com.evil.net', 'https://evil-app.example.com',
           'https://app.example.co', 'http://app.example.com', 'https://app.example.com:8443',
           'http://localhost:3001', 'http://localhost', 'null', 'https://app.example.com/',
           'https://app.example.com, https://evil.example.net') {
    my $r = preflight("$S/Customer", $o);
    is $r->{status}, 403, "preflight from '$o': 403";
    not_granted($r, '  preflight');
    not_granted($t->api(GET => "$S/Customer", key => $key->{key}, headers => [ Origin => $o ]),
                '  real request');
}

# The preflight: every method, no key or query check, no upstream.
$r = preflight("$S/Customer?expand=forbidden&filter[x]=1", $APP,
               Authorization => 'Bearer ' . ApiKeyTest::make_key());
is $r->{status}, 204, 'a preflight is answered before the key and the query policy';
granted($r, $APP, '  preflight grant');
for my $m (qw(GET HEAD POST PUT PATCH DELETE)) {
    like $r->{headers}{'access-control-allow-methods'} // '', qr/\b$m\b/, "  allows $m";
}
like $r->{headers}{'access-control-allow-headers'} // '', qr/\bContent-Type\b/i,
    '  allows Content-Type';
is $r->{headers}{'access-control-max-age'}, 600, '  max age 600';
like $t->access_log, qr/"OPTIONS [^"]*" 204 .*result=cors_preflight/, '  logged as cors_preflight';
$r = preflight("$S/Customer", $APP, 'Access-Control-Request-Headers' => 'x-a; y=<b>');
is $r->{status}, 204, 'a preflight asking for odd header names still gets 204';
unlike $r->{headers}{'access-control-allow-headers'} // '', qr/[;<>=]/,
    '  and they are not echoed back';

$r = $t->api(OPTIONS => "$S/Customer", headers => [ Origin => $APP ]);
is $r->{status}, 401, 'OPTIONS without Access-Control-Request-Method is not a preflight: 401';
granted($r, $APP, '  but the rejection carries the grant');
is $t->api(OPTIONS => "$S/Customer", headers => [ 'Access-Control-Request-Method' => 'GET' ])
    ->{status}, 401, 'OPTIONS without Origin is not a preflight: 401';

$r = preflight('/api/v1/acme-corp/nowhere/Item', $APP);
is $r->{status}, 403, 'preflight for an unknown workspace: 403';
is $r->{json}{error}{code}, 'cors_origin_not_allowed', '  cors_origin_not_allowed';

# The grant on the module's own rejections and on every upstream answer.
granted($t->api(HEAD => "$S/Customer", key => $key->{key}, headers => [ Origin => $APP ]),
        $APP, 'HEAD 200 from an allowed origin');
$r = $t->api(GET => "$S/Customer?expand=customer", key => $key->{key}, headers => [ Origin => $APP ]);
is $r->{status}, 400, 'forbidden expand from an allowed origin: 400';
granted($r, $APP, '  the 400 carries the grant');
$r = $t->api(GET => "$S/Customer", key => 'not-a-key', headers => [ Origin => $APP ]);
is $r->{status}, 401, 'malformed key from an allowed origin: 401';
granted($r, $APP, '  the 401 carries the grant');

# The path refused before anything else (ambiguous_path): the grant of the workspace the
# location matched, or a browser shows a CORS failure instead of the 400.
$r = $t->api(GET => "$S/Customer/1%2F..%2Fx", key => $key->{key}, headers => [ Origin => $APP ]);
is $r->{status}, 400, 'an encoded slash from an allowed origin: 400';
is $r->{json}{error}{code}, 'ambiguous_path', '  ambiguous_path';
granted($r, $APP, '  the 400 carries the grant');
$r = $t->api(GET => "$S/Customer/./x", headers => [ Origin => $EVIL ]);
is $r->{status}, 400, 'a dot segment from another origin: 400';
not_granted($r, '  no grant for it');
like $r->{headers}{vary} // '', qr/\bOrigin\b/, '  but Vary: Origin';
$r = $t->api(GET => '/api/v1/acme-corp/nowhere/Item/a%2Fb', headers => [ Origin => $APP ]);
is $r->{status}, 400, 'an encoded slash for an unknown workspace: 400';
not_granted($r, '  no grant (no list to grant from)');

my $limited = $t->create_key($ws_id, permission => 'read_only',
                             rate_limit => { limit => 1, window_seconds => 600 });
is $t->api(GET => "$S/Customer", key => $limited->{key}, headers => [ Origin => $APP ])->{status},
    200, 'a key limited to 1 request: the first passes';
$r = $t->api(GET => "$S/Customer", key => $limited->{key}, headers => [ Origin => $APP ]);
is $r->{status}, 429, '  the second is 429';
granted($r, $APP, '  the 429 carries the grant (the browser can read Retry-After)');
not_granted($t->api(GET => "$S/Customer", key => $limited->{key}, headers => [ Origin => $EVIL ]),
            '429 from another origin');

$r = $t->api(GET => '/api/v1/acme-corp/inventory/Item', headers => [ Origin => $EVIL ]);
is $r->{status}, 401, 'all-origins workspace, no key: 401';
granted($r, '*', '  with Access-Control-Allow-Origin: *');
my $inv_key = $t->create_key($open->{id}, permission => 'read_only');
granted($t->api(GET => '/api/v1/acme-corp/inventory/Item', key => $inv_key->{key},
                headers => [ Origin => $EVIL ]), '*', 'all-origins workspace, upstream 200');
not_granted($t->api(GET => '/api/v1/acme-corp/inventory/Item', key => $inv_key->{key}),
            'all-origins workspace, no Origin header');

# An upstream with its own CORS headers: a browser refuses two Access-Control-Allow-Origin
# values, and a workspace list is only a list if the upstream's "*" does not pass.
$r = $t->api(GET => "$S/Legacy", key => $key->{key}, headers => [ Origin => $APP ]);
is $r->{status}, 200, 'upstream sending its own Access-Control-Allow-Origin';
is_deeply [ acao_values($r) ], [$APP],
    '  allowed origin: exactly one Access-Control-Allow-Origin, the workspace\'s grant';
$r = $t->api(GET => "$S/Legacy", key => $key->{key}, headers => [ Origin => $EVIL ]);
is_deeply [ acao_values($r) ], [], '  disallowed origin: the upstream\'s "*" does not pass';
$r = $t->api(GET => "$S/Legacy", key => $key->{key});
is_deeply [ acao_values($r) ], [], '  no Origin: none either';

# Vary: Origin whenever the answer depends on Origin (a known workspace), granted or not,
# so that a shared cache never hands one origin's answer to another.
sub vary_origin { scalar grep { lc $_->[0] eq 'vary' && $_->[1] =~ /\bOrigin\b/i } @{ $_[0]{header_list} } }
is vary_origin($t->api(GET => "$S/Customer", key => $key->{key})), 1,
    'no Origin header: still Vary: Origin (once)';
is vary_origin($t->api(GET => "$S/Customer", key => $key->{key}, headers => [ Origin => $EVIL ])), 1,
    'disallowed origin: Vary: Origin (once)';
is vary_origin($t->api(GET => "$S/Customer", headers => [ Origin => $EVIL ])), 1,
    'disallowed origin on a 401: Vary: Origin';
is vary_origin($t->api(GET => "$S/Customer", key => $key->{key}, headers => [ Origin => $APP ])), 1,
    'allowed origin: Vary: Origin exactly once';

# Scripts of an allowed origin can read why they were refused or throttled.
for my $case ([ $t->api(GET => "$S/Customer", headers => [ Origin => $APP ]), '401' ],
              [ $t->api(GET => "$S/Customer", key => $limited->{key}, headers => [ Origin => $APP ]), '429' ]) {
    my ($resp, $what) = @$case;
    my $exposed = $resp->{headers}{'access-control-expose-headers'} // '';
    like $exposed, qr/\bWWW-Authenticate\b/i, "$what: WWW-Authenticate exposed";
    like $exposed, qr/\bRetry-After\b/i, "$what: Retry-After exposed";
}
ok !defined preflight("$S/Customer", $APP)->{headers}{'access-control-expose-headers'},
    'no Expose-Headers on a preflight';
ok !defined $t->api(GET => "$S/Customer", headers => [ Origin => $EVIL ])
    ->{headers}{'access-control-expose-headers'}, 'nor for a disallowed origin';

# Deleting the workspace withdraws the grant at once.
$t->admin(DELETE => "/api/v1/workspaces/$open->{id}");
ok $t->wait_until(sub { preflight('/api/v1/acme-corp/inventory/Item', $EVIL)->{status} == 403 }, 1),
    'a deleted workspace grants nothing within 1 s';

done_testing;
