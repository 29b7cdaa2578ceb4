# CORS through nginx: preflights answered by the module without a key, and the grant on
# every response to an allowed origin, the module's own rejections included.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new;
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

done_testing;
