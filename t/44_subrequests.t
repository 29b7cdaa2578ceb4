# Subrequests. nginx's access phase skips them (their main request was checked), so the
# module decides a subrequest that reaches a location with "apikey" in the preaccess
# phase. One that answers with its status only (auth_request) stands for its client's
# request (method, path as sent, key): auth_request into such a location admits what the
# key admits and refuses the rest (401 with WWW-Authenticate, 403; a 429 becomes
# auth_request's 500), and a preflight is not answered there (an OPTIONS needing a key).
# A mirror's copy stands for its client's request the same way: refused, it never reaches
# the mirror's upstream. An SSI include is a GET of its own URI: it gets the refusal instead of the upstream's
# answer without a key, and is not refused for the page's method or path. A subrequest's
# $apikey_* are its own decision's.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

# info: the module's rejection lines are logged (keys in them cut, checked at the end)
my $t = ApiKeyTest->new(workers => 1, nginx => 0, error_log_level => 'info');
my $backend = $t->backend_port;
# The mirror's upstream: logs each copy it gets (method and path, never a header)
my ($sink) = ApiKeyTest::free_ports(1);
my $sink_log = "$t->{dir}/mirror-sink.log";
my $html = "$t->{dir}/html";
mkdir $html or die "mkdir $html: $!";
mkdir "$html/page" or die "mkdir: $!";
chmod 0755, $t->{dir}, $html, "$html/page";
open my $fh, '>', "$html/page/orders.html" or die "$!";
print $fh "before <!--# include virtual=\"/api/v1/acme-corp/sales/orders\" --> after\n";
close $fh;
chmod 0644, "$html/page/orders.html";

$t->write_nginx_conf(http_extra => <<"HTTP", server_extra => <<"CONF");
    apikey_rate_limit_zone zone=keys:32k;
    log_format mirror_copy '\$request_method \$request_uri';
    server {
        listen 127.0.0.1:$sink;
        access_log $sink_log mirror_copy;
        location / { return 204; }
        location /fail { access_log off; return 502; }
    }
HTTP
        # auth_request: the guarded location has no apikey, its subrequest's location has
        location /guarded/ {
            auth_request /check;
            auth_request_set \$checked "[\$apikey_id] [\$apikey_result]";
            add_header X-Checked \$checked always;
            proxy_pass http://127.0.0.1:$backend;
        }
        location = /check {
            internal;
            apikey            on;
            apikey_workspace  acme-corp/sales;
            apikey_entity     orders;
            apikey_rate_limit zone=keys default=3/60s;
            empty_gif;
        }
        # mirror: the client's location has no apikey, the copy's location has
        location /mirrored/ {
            mirror /mirror-copy;
            proxy_pass http://127.0.0.1:$backend;
        }
        location = /mirror-copy {
            internal;
            apikey           on;
            apikey_workspace acme-corp/sales;
            apikey_entity    orders;
            proxy_pass http://127.0.0.1:$sink\$request_uri;
        }
        # decides for Customer, mirrors (the copy decides for orders), and its upstream's
        # 502 sends it to a location without apikey
        location /mirrored-keyed/ {
            apikey           on;
            apikey_workspace acme-corp/sales;
            apikey_entity    Customer;
            mirror /mirror-copy;
            proxy_intercept_errors on;
            error_page 502 = \@fallback;
            proxy_pass http://127.0.0.1:$sink/fail;
        }
        location \@fallback {
            add_header X-Seen "[\$apikey_entity] [\$apikey_result]" always;
            return 200 "fallback\n";
        }
        # SSI: a page without apikey including the API (whose location has it), also as
        # the answer to a POST
        location = /form {
            ssi on;
            ssi_types *;
            return 200 'before <!--# include virtual="/api/v1/acme-corp/sales/orders" --> after';
        }
        location /page/ {
            root $html;
            ssi on;
            ssi_types *;
        }
        # SSI in a location with apikey (entity Customer) including another entity
        location /keyed-page/ {
            apikey           on;
            apikey_workspace acme-corp/sales;
            apikey_entity    Customer;
            root $html;
            rewrite ^/keyed-page/(.*) /page/\$1 break;
            ssi on;
            ssi_types *;
        }
CONF
$t->start_nginx;
my $ws = $t->create_workspace('acme-corp', 'sales');
my $rw = $t->create_key($ws->{id}, permission => 'read_write');
my $ro = $t->create_key($ws->{id}, permission => 'read_only');
$t->put_entity_settings($ws->{id}, 'orders', { defaultFields => 'id,total' });

# --- auth_request ----------------------------------------------------------------------

my $r = $t->api(GET => '/guarded/x');
is $r->{status}, 401, 'auth_request: no key -> 401';
like $r->{headers}{'www-authenticate'} // '', qr/^Bearer\b/, '... with WWW-Authenticate: Bearer';
ok !(ref $r->{json} eq 'HASH' && $r->{json}{method}), '... the upstream not reached';

$r = $t->api(GET => '/guarded/x', key => ApiKeyTest::make_key());
is $r->{status}, 401, 'auth_request: unknown key -> 401';

$r = $t->api(GET => '/guarded/x', key => $rw->{key});
is $r->{status}, 200, 'auth_request: valid key -> 200';
is $r->{json}{method}, 'GET', '... passed on to the upstream';
is $r->{headers}{'x-checked'}, "[$rw->{id}] [ok]", '... $apikey_id and $apikey_result of the check';

$r = $t->api(POST => '/guarded/x', key => $ro->{key}, body => '{}');
is $r->{status}, 403, 'auth_request: read_only key, POST -> 403 (the client request\'s method)';
$r = $t->api(POST => '/guarded/x', key => $rw->{key}, body => '{}');
is $r->{status}, 200, 'auth_request: read_write key, POST -> 200';
is $r->{json}{method}, 'POST', '... the upstream got the POST';
# The client's path as sent, which proxy_pass passes on: an encoded slash is refused
# (400 ambiguous_path in the check, which auth_request turns into its 500).
$r = $t->api(GET => '/guarded/a%2F..%2Fx', key => $rw->{key});
is $r->{status}, 500, 'auth_request: a path with an encoded slash refused (auth_request\'s 500)';
ok !(ref $r->{json} eq 'HASH' && $r->{json}{method}), '... the upstream not reached';

# A CORS preflight is answered only for a client's request: in auth_request's subrequest
# it is an OPTIONS like any other, which needs a read_write key (a 204 there would pass
# the OPTIONS on to the upstream without a key).
$t->put_workspace_settings($ws->{id}, { corsAllowedOrigins => ['https://app.example.com'] });
my @preflight = (Origin => 'https://app.example.com', 'Access-Control-Request-Method' => 'DELETE');
$r = $t->api(OPTIONS => '/guarded/x', headers => \@preflight);
is $r->{status}, 401, 'auth_request: a preflight without a key -> 401';
ok !(ref $r->{json} eq 'HASH' && $r->{json}{method}), '... the upstream not reached';
$r = $t->api(OPTIONS => '/guarded/x', headers => \@preflight, key => $ro->{key});
is $r->{status}, 403, '... with a read_only key 403';

my $limited = $t->create_key($ws->{id}, permission => 'read_write');
is join(' ', map { $t->api(GET => '/guarded/x', key => $limited->{key})->{status} } 1 .. 4),
    '200 200 200 500', 'auth_request: a key over its rate limit (3/60s) is refused (auth_request\'s 500)';

# --- mirror -----------------------------------------------------------------------------
# The client's answer is the upstream's whatever the copy's decision; the copies refused
# (no key, a read_only key's POST) are decided before the one admitted, which is then the
# sink's only line.

is $t->api(GET => '/mirrored/none')->{status}, 200, 'mirror: no key, the client still answered';
is $t->api(POST => '/mirrored/ro', key => $ro->{key}, body => '{}')->{status}, 200,
    'mirror: read_only key, POST, the client still answered';
is $t->api(POST => '/mirrored/rw', key => $rw->{key}, body => '{}')->{status}, 200,
    'mirror: read_write key, POST';
ok $t->wait_until(sub { ApiKeyTest::_slurp($sink_log) =~ /^POST/m }, 5),
    '... its copy reached the mirror\'s upstream';
is ApiKeyTest::_slurp($sink_log), "POST /mirrored/rw\n",
    'mirror: the copies without a key and of a read_only key\'s POST never reached it';

# The mirror's copy decides after the client's request (for its own entity); the request
# sent on to a location without apikey by its upstream's 502 keeps its own decision.
$r = $t->api(GET => '/mirrored-keyed/x', key => $rw->{key});
is join(' ', $r->{status}, $r->{headers}{'x-seen'} // '-'), '200 [Customer] [ok]',
    'mirror, then error_page into a location without apikey: the client request\'s decision';

# --- SSI includes -----------------------------------------------------------------------

$r = $t->api(GET => '/page/orders.html');
is $r->{status}, 200, 'SSI page without a key: 200 (the page has no apikey)';
like $r->{body}, qr/^before \{"error":\{"code":"missing_credentials"/, '... the include is the refusal';
unlike $r->{body}, qr/"method"/, '... not the upstream\'s answer';

$r = $t->api(GET => '/page/orders.html', key => $ro->{key});
like $r->{body}, qr/"key_id":"\Q$ro->{id}\E"/, 'SSI page with a key: the include admitted, the upstream told the key';
like $r->{body}, qr/"fields":"id,total"/, '... and the included entity\'s policy (its defaultFields)';

# The include is a GET of its own URI: neither the page's method nor its path as sent
# is what it is decided for.
$r = $t->api(POST => '/form', key => $ro->{key}, body => 'a=1');
like $r->{body}, qr/^before \{"key_id":"\Q$ro->{id}\E"/,
    'SSI page answered to a POST: a read_only key\'s include admitted (a GET)';
$r = $t->api(GET => '/page/./orders.html', key => $ro->{key});
like $r->{body}, qr/"key_id":"\Q$ro->{id}\E"/,
    'SSI page requested with a dot segment: its include admitted (its own URI is normalised)';

$r = $t->api(GET => '/keyed-page/orders.html', key => $ro->{key});
is $r->{status}, 200, 'SSI page in a location with apikey (entity Customer): 200';
like $r->{body}, qr/"fields":"id,total"/,
    '... its include decided for its own entity (orders), not the page\'s';

# --- the module's log lines: the client's request line, a key in it cut ---------------
# nginx's log handler would end them with the request line as sent; the secret scan
# (one more test at the end) finds the key if any file holds it whole.

my $stray = ApiKeyTest::make_key();
$t->add_secret($stray, 'a key put in the query string');
is $t->api(GET => "/guarded/x?api_key=$stray")->{status}, 401, 'a key in the query string: 401';
my $cut = quotemeta(substr($stray, 0, 12) . '...');
ok $t->wait_until(sub { $t->error_log =~ m{apikey: rejected with 401 missing_credentials, request: "GET /guarded/x\?api_key=$cut HTTP/1\.1", client: } }, 2),
    '... logged with the request line, the key cut to its prefix'
    or diag $t->error_log;

unlike $t->error_log, qr/\[(?:alert|emerg|crit)\]|exited on signal/, 'no alert or crash in the error log';

done_testing;
