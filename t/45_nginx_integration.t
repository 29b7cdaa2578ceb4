# The module inside configurations operators write, and the protocols nginx speaks:
# access-phase neighbours (satisfy any with allow/deny and auth_basic, deny all,
# limit_except), error_page aimed at the module's rejections, if blocks, nested locations
# and inheritance, a server-level rewrite; HTTP/1.0 without Host, pipelined requests with
# different keys on one connection, request bodies of rejected requests (Content-Length,
# chunked, Expect: 100-continue) and the next request on that connection, HTTP/2 (h2c)
# with several keys on one connection; Authorization header forms (scheme case, spaces,
# tabs as optional whitespace, other schemes, junk, two headers); a reload onto another
# snapshot path, a rate-limit zone resized by a reload, worker_processes changed.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);
use ApiKeyTest;

my $t = ApiKeyTest->new(workers => 1, nginx => 0);
my ($h2_port) = ApiKeyTest::free_ports(1);
my $back = $t->backend_port;
my $dir = $t->dir;

# auth_basic's user file: nginx reads {PLAIN} passwords
open my $fh, '>', "$dir/htpasswd" or die "htpasswd: $!";
print $fh "user:{PLAIN}secret\n";
close $fh;
chmod 0644, "$dir/htpasswd";

# Each location passes the key id on as the default one does, so the backend's echo says
# what the upstream was told; X-Result says what the module decided.
my $pass = <<"CONF";
            apikey_workspace acme-corp/sales;
            apikey_entity    orders;
            proxy_set_header X-Api-Key-Id \$apikey_id;
            add_header X-Result "[\$apikey_result]" always;
            proxy_pass http://127.0.0.1:$back;
CONF

my %conf = (
    http_extra => <<"CONF",
    apikey_rate_limit_zone zone=keys:64k;
    server {
        listen 127.0.0.1:$h2_port http2;
        location / {
            apikey on;
$pass
        }
    }
CONF
    server_extra => <<"CONF",
        rewrite ^/old/(.*)\$ /plain/\$1 last;
        location /plain/ {
            apikey on;
$pass
        }
        location /any/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            apikey on;
$pass
        }
        location /anydeny/ {
            satisfy any;
            deny all;
            apikey on;
$pass
        }
        location /basic/ {
            satisfy any;
            auth_basic "x";
            auth_basic_user_file $dir/htpasswd;
            apikey on;
$pass
        }
        location /deny/ {
            deny all;
            apikey on;
$pass
        }
        location /except/ {
            apikey on;
            limit_except GET { deny all; }
$pass
        }
        location /errpage/ {
            apikey on;
            apikey_rate_limit zone=keys default=1/60s;
            error_page 400 401 403 429 503 = \@fallback;
$pass
        }
        location \@fallback {
            proxy_set_header X-Api-Key-Id "fallback \$apikey_id";
            proxy_pass http://127.0.0.1:$back;
        }
        location /if/ {
            apikey on;
            if (\$arg_branch) {
                proxy_pass http://127.0.0.1:$back;
            }
$pass
        }
        location /nest/ {
            apikey on;
$pass
            location /nest/open/ {
                apikey off;
                proxy_set_header X-Api-Key-Id \$apikey_id;
                proxy_pass http://127.0.0.1:$back;
            }
            location /nest/inventory/ {
                apikey_workspace acme-corp/inventory;
                proxy_set_header X-Api-Key-Id \$apikey_id;
                proxy_pass http://127.0.0.1:$back;
            }
        }
CONF
);
$t->write_nginx_conf(%conf);
$t->start_nginx;

my $ws    = $t->create_workspace('acme-corp', 'sales');
my $inv   = $t->create_workspace('acme-corp', 'inventory');
my $rw    = $t->create_key($ws->{id}, permission => 'read_write', name => 'rw');
my $ro    = $t->create_key($ws->{id}, permission => 'read_only', name => 'ro');
my $other = $t->create_key($inv->{id}, permission => 'read_write', name => 'other');
my $limited = $t->create_key($ws->{id}, permission => 'read_write', name => 'limited');

sub got {
    my ($r) = @_;
    return ($r->{status} // 'none') . ' ' . ($r->{json} && $r->{json}{error}
        ? $r->{json}{error}{code} : $r->{json} ? "key_id=$r->{json}{key_id}" : '');
}

# --- access phase ---------------------------------------------------------------------

# The module's handler runs first in the access phase (nginx runs a phase's handlers
# in reverse order of the modules' load, and a dynamic module loads after the static
# ones): its rejection is final, also under satisfy any, and allow / auth_basic cannot
# admit a request the key does not admit.
for my $loc (qw(any basic)) {
    is got($t->api(GET => "/$loc/x")), '401 missing_credentials',
        "satisfy any + " . ($loc eq 'any' ? 'allow 127.0.0.1' : 'auth_basic') . ": no key is 401";
    is got($t->api(GET => "/$loc/x", key => $other->{key})), '401 wrong_workspace',
        "satisfy any: another workspace's key is 401, not let through by the other check";
    is got($t->api(GET => "/$loc/x", key => $rw->{key})), "200 key_id=$rw->{id}",
        "satisfy any: a valid key is enough";
}
is got($t->api(GET => '/anydeny/x', key => $rw->{key})), "200 key_id=$rw->{id}",
    'satisfy any + deny all: a valid key is enough';
is got($t->api(GET => '/anydeny/x')), '401 missing_credentials',
    'satisfy any + deny all: no key is the module\'s 401';
is got($t->api(GET => '/basic/x', headers => [Authorization => 'Basic dXNlcjpzZWNyZXQ='])),
    '401 invalid_authorization',
    'satisfy any + auth_basic: right Basic credentials are refused (one Authorization header)';
# deny all after the module: the key is checked first, then nginx's 403
my $r = $t->api(GET => '/deny/x', key => $rw->{key});
is $r->{status}, 403, 'deny all: a valid key is still denied';
unlike $r->{body}, qr/key_id/, 'deny all: nothing reached the upstream';
is got($t->api(GET => '/deny/x')), '401 missing_credentials', 'deny all: no key is 401 first';
# limit_except
is got($t->api(GET => '/except/x', key => $ro->{key})), "200 key_id=$ro->{id}",
    'limit_except GET: GET with a key passes';
$r = $t->api(POST => '/except/x', key => $rw->{key}, body => 'x');
is $r->{status}, 403, 'limit_except GET { deny all; }: POST with a read_write key denied';
is got($t->api(POST => '/except/x', body => 'x')), '401 missing_credentials',
    'limit_except: POST without a key 401 (the location inherits apikey)';

# error_page aimed at the module's codes: the rejection is sent as it is, never turned into
# a pass to the fallback's upstream
for my $case ([undef, '401 missing_credentials'], ['sk_live_nope', '401 malformed_key'],
              [$other->{key}, '401 wrong_workspace'],
              [ApiKeyTest::make_key(), '401 unknown_key']) {
    my ($key, $want) = @$case;
    $r = $t->api(GET => '/errpage/x', defined $key ? (key => $key) : ());
    is got($r), $want, "error_page 401 = \@fallback: $want is the module's answer";
    unlike $r->{body}, qr/fallback/, '... and never the fallback upstream';
}
is got($t->api(POST => '/errpage/x', key => $ro->{key}, body => 'x')), '403 read_only_key',
    'error_page 403 = @fallback: a read_only key\'s POST is 403';
is got($t->api(GET => '/errpage/x', key => $limited->{key})), "200 key_id=$limited->{id}",
    'error_page: the limited key\'s one request passes';
$r = $t->api(GET => '/errpage/x', key => $limited->{key});
is got($r), '429 rate_limited', 'error_page 429 = @fallback: over the limit is 429';
ok $r->{headers}{'retry-after'}, '... with Retry-After';
is got($t->api(GET => '/errpage/x?expand=nope')), '401 missing_credentials',
    'error_page 400: no key is decided before the query';

# if blocks and nested locations inherit the location's apikey
is got($t->api(GET => '/if/x?branch=1')), '401 missing_credentials',
    'if block with proxy_pass: no key is 401';
is got($t->api(GET => '/if/x?branch=1', key => $rw->{key})), "200 key_id=$rw->{id}",
    'if block: a valid key passes with its id';
is got($t->api(GET => '/nest/x')), '401 missing_credentials', 'nested: outer location checks';
is got($t->api(GET => '/nest/open/x')), '200 key_id=', 'nested apikey off: open, no key id';
is got($t->api(GET => '/nest/inventory/x', key => $rw->{key})), '401 wrong_workspace',
    'nested: apikey_workspace overridden, apikey inherited';
is got($t->api(GET => '/nest/inventory/x', key => $other->{key})), "200 key_id=$other->{id}",
    'nested: the inner workspace\'s key passes';
# rewrite ... last at server level: decided in the location it lands in
is got($t->api(GET => '/old/x')), '401 missing_credentials', 'server rewrite last: checked';
is got($t->api(GET => '/old/x', key => $rw->{key})), "200 key_id=$rw->{id}",
    'server rewrite last: a valid key passes';

# --- HTTP/1.x on one connection ---------------------------------------------------------

# Splits a raw answer holding several responses (Content-Length bodies).
sub responses {
    my ($raw) = @_;
    my @out;
    while ($raw =~ s{^(HTTP/1\.\d (\d{3})[^\r]*\r\n(.*?)\r\n\r\n)}{}s) {
        my ($status, $head) = ($2, $3);
        my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
        my $body = substr $raw, 0, $len // 0, '';
        my $json = eval { ApiKeyTest::json()->decode($body) };
        push @out, "$status " . ($json && $json->{error} ? $json->{error}{code}
                                 : $json ? "key_id=$json->{key_id}" : '');
    }
    return @out;
}

sub req {
    my ($path, $key, %o) = @_;
    my $m = $o{method} // 'GET';
    my $h = "$m $path HTTP/1.1\r\nHost: api\r\n";
    $h .= "Authorization: Bearer $key\r\n" if defined $key;
    $h .= $o{headers} // '';
    $h .= "Content-Length: " . length($o{body}) . "\r\n" if defined $o{body};
    $h .= "Connection: close\r\n" if $o{close};
    return "$h\r\n" . ($o{body} // '');
}

# pipelined, different keys: nothing of one request's decision leaks into the next
$r = $t->raw(req('/plain/1', $rw->{key}) . req('/plain/2', 'sk_live_bad') . req('/plain/3')
             . req('/plain/4', $ro->{key}) . req('/plain/5', $other->{key})
             . req('/plain/6', $ro->{key}, method => 'POST', body => 'x', close => 1));
is_deeply [responses($r->{raw})],
    ["200 key_id=$rw->{id}", '401 malformed_key', '401 missing_credentials',
     "200 key_id=$ro->{id}", '401 wrong_workspace', '403 read_only_key'],
    'pipelined requests with different keys: each decided on its own';

# a rejected request's body is read and thrown away: a request inside it is never served,
# and the next request on the connection is parsed from the right place
my $inner = req('/plain/smuggled', $rw->{key});
$r = $t->raw(req('/plain/a', undef, method => 'POST', body => $inner)
             . req('/plain/b', $rw->{key}, close => 1));
is_deeply [responses($r->{raw})], ['401 missing_credentials', "200 key_id=$rw->{id}"],
    'rejected POST with a body (Content-Length): the next request on the connection served';
my $chunked = sprintf "%x\r\n%s\r\n0\r\n\r\n", length $inner, $inner;
$r = $t->raw(req('/plain/a', $ro->{key}, method => 'POST',
                 headers => "Transfer-Encoding: chunked\r\n") . $chunked
             . req('/plain/b', $rw->{key}, close => 1));
is_deeply [responses($r->{raw})], ['403 read_only_key', "200 key_id=$rw->{id}"],
    'rejected POST with a chunked body: the next request on the connection served';
my $big = 'a' x 300_000;
$r = $t->raw(req('/plain/a', 'sk_live_bad', method => 'PUT', body => $big)
             . req('/plain/b', $rw->{key}, close => 1));
is_deeply [responses($r->{raw})], ['401 malformed_key', "200 key_id=$rw->{id}"],
    'rejected PUT of 300 KB: the next request on the connection served';
unlike $t->access_log, qr/smuggled/, 'the request inside a discarded body was never served';

# Expect: 100-continue: the rejection comes without "100 Continue"; a client that sends
# its body anyway keeps its connection
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->api_port,
                                  Timeout => 5) or die "connect: $!";
    print $s req('/plain/a', undef, method => 'POST',
                 headers => "Expect: 100-continue\r\nContent-Length: 10\r\n");
    my $got = read_until($s, qr/\}\}\n\z/, 5);
    unlike $got, qr{^HTTP/1\.1 100}, 'Expect: 100-continue with no key: no 100 Continue';
    is_deeply [responses($got)], ['401 missing_credentials'], '... 401 at once';
    print $s '0123456789' . req('/plain/b', $rw->{key}, close => 1);
    $got = read_until($s, qr/\}\z/, 5);
    is_deeply [responses($got)], ["200 key_id=$rw->{id}"],
        '... and the body sent anyway is discarded, the next request served';
    close $s;
}

sub read_until {
    my ($s, $re, $timeout) = @_;
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $deadline = time + $timeout * ApiKeyTest::time_scale();
    while (time < $deadline && $buf !~ $re) {
        next unless $sel->can_read(0.1);
        sysread($s, my $chunk, 65536) or last;
        $buf .= $chunk;
    }
    return $buf;
}

# HTTP/1.0 without Host (the default server)
$r = $t->raw("GET /plain/x HTTP/1.0\r\n\r\n");
is got($r), '401 missing_credentials', 'HTTP/1.0 without Host, no key: 401';
$r = $t->raw("GET /plain/x HTTP/1.0\r\nAuthorization: Bearer $rw->{key}\r\n\r\n");
is got($r), "200 key_id=$rw->{id}", 'HTTP/1.0 without Host, valid key: 200';

# --- the Authorization header ---------------------------------------------------------

my $k = $rw->{key};
for my $case (
    ["authorization: bearer $k",   "200 key_id=$rw->{id}", 'lowercase name and scheme'],
    ["Authorization: BEARER $k",   "200 key_id=$rw->{id}", 'scheme in capitals'],
    ["Authorization:    Bearer    $k   ", "200 key_id=$rw->{id}", 'extra spaces'],
    ["Authorization:\tBearer $k",  "200 key_id=$rw->{id}", 'a tab before the value (OWS)'],
    ["Authorization: Bearer $k\t", "200 key_id=$rw->{id}", 'a tab after the value (OWS)'],
    ["Authorization: Bearer $k \t ", "200 key_id=$rw->{id}", 'spaces and tabs after the value'],
    ["Authorization: Bearer\t$k",  '401 invalid_authorization', 'a tab between scheme and key'],
    ["Authorization: Basic dXNlcjpzZWNyZXQ=", '401 invalid_authorization', 'Basic'],
    ["Authorization: Bearer $k junk", '401 invalid_authorization', 'a key and junk'],
    ["Authorization: Bearer $k,", '401 invalid_authorization', 'a key and a comma'],
    ["Authorization: Bearer ${k}x", '401 malformed_key', 'a key and one more character'],
    ["Authorization: Bearer " . ('A' x 6000), '401 malformed_key', 'a 6 KB token'],
    ["Authorization: Bearer $k\r\nAuthorization: Bearer $ro->{key}", '400 ',
     'two Authorization headers: nginx\'s 400'],
    ["Authorization: Bearer\r\n $k", '400 ', 'obs-fold: nginx\'s 400'],
) {
    my ($header, $want, $what) = @$case;
    $r = $t->raw("GET /plain/x HTTP/1.1\r\nHost: api\r\n$header\r\nConnection: close\r\n\r\n");
    is got($r), $want, "Authorization: $what";
}

# --- HTTP/2 (h2c) ---------------------------------------------------------------------

# A minimal HTTP/2 client over cleartext (prior knowledge): each request one stream on
# one connection, header fields as HPACK literals without indexing; the answer's :status
# from the first field (indexed for 200/204/400..., else a literal of index 8) and its
# DATA. Returns one "status json-code-or-key_id" per request, in order.
sub h2 {
    my ($port, @reqs) = @_;
    my $frame = sub {
        my ($type, $flags, $id, $payload) = @_;
        return substr(pack('N', length $payload), 1) . pack('CCN', $type, $flags, $id) . $payload;
    };
    my $int = sub {    # HPACK integer, 7-bit prefix, no flag bits
        my ($n) = @_;
        return chr($n) if $n < 127;
        my $s = chr(127);
        $n -= 127;
        while ($n >= 128) { $s .= chr(($n & 127) | 128); $n >>= 7 }
        return $s . chr($n);
    };
    my $lit = sub { my ($n, $v) = @_; "\0" . $int->(length $n) . $n . $int->(length $v) . $v };
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5)
        or die "connect: $!";
    binmode $s;
    my $out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . $frame->(4, 0, 0, '');
    my (%st, @ids);
    my $id = 1;
    for my $q (@reqs) {
        my ($method, $path, $auth, $body) = @$q;
        my $block = $lit->(':method', $method) . $lit->(':path', $path)
                  . $lit->(':scheme', 'http') . $lit->(':authority', 'api');
        $block .= $lit->('authorization', $_) for @{ $auth // [] };
        $block .= $lit->('content-length', length $body) if defined $body;
        $out .= $frame->(1, 4 | (defined $body ? 0 : 1), $id, $block);
        $out .= $frame->(0, 1, $id, $body) if defined $body;
        $st{$id} = { data => '' };
        push @ids, $id;
        $id += 2;
    }
    print $s $out;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 5 * ApiKeyTest::time_scale();
    while (time < $deadline && grep { !$st{$_}{done} } @ids) {
        next unless $sel->can_read(0.1);
        sysread($s, my $chunk, 65536) or last;
        $buf .= $chunk;
        while (length $buf >= 9) {
            my $len = unpack 'N', "\0" . substr($buf, 0, 3);
            last if length $buf < 9 + $len;
            my ($type, $flags, $sid) = unpack 'CCN', substr($buf, 3, 6);
            my $payload = substr $buf, 9, $len;
            substr($buf, 0, 9 + $len) = '';
            $sid &= 0x7fffffff;
            print $s $frame->(4, 1, 0, '') if $type == 4 && !($flags & 1);
            my $x = $st{$sid} or next;
            if ($type == 1) {
                my $b0 = ord $payload;
                my %indexed = (0x88 => 200, 0x89 => 204, 0x8a => 206, 0x8b => 304,
                               0x8c => 400, 0x8d => 404, 0x8e => 500);
                $x->{status} = $indexed{$b0}
                    // ($b0 == 0x48 ? substr($payload, 2, 3) + 0 : sprintf 'field %02x', $b0);
            }
            $x->{data} .= $payload if $type == 0;
            $x->{done} = 1 if $type == 3 || ($flags & 1);
        }
    }
    close $s;
    return map {
        my $x = $st{$_};
        my $json = eval { ApiKeyTest::json()->decode($x->{data}) };
        ($x->{status} // 'none') . ' ' . ($json && $json->{error} ? $json->{error}{code}
                                          : $json ? "key_id=$json->{key_id}" : '');
    } @ids;
}

is_deeply [h2($h2_port,
              [GET => '/a', ["Bearer $rw->{key}"]],
              [GET => '/b', ['Bearer sk_live_bad']],
              [GET => '/c'],
              [POST => '/d', ["Bearer $ro->{key}"], 'body'],
              [GET => '/e', ["Bearer $other->{key}"]],
              [POST => '/f', ["bearer $rw->{key}"], 'body'],
              [HEAD => '/g'],
              [GET => '/h', ["Bearer $ro->{key}", "Bearer $rw->{key}"]],
              [GET => '/i', ["Bearer $rw->{key}\t"]],
              [GET => '/j', [" Bearer $rw->{key} "]])],
    ["200 key_id=$rw->{id}", '401 malformed_key', '401 missing_credentials',
     '403 read_only_key', '401 wrong_workspace', "200 key_id=$rw->{id}", '401 ',
     '400 ', "200 key_id=$rw->{id}", "200 key_id=$rw->{id}"],
    'HTTP/2: streams of one connection with different keys each decided on their own '
    . '(two authorization fields: 400; whitespace around the value is optional whitespace)';
is_deeply [h2($h2_port, [POST => '/big', ['Bearer sk_live_bad'], 'a' x 200_000],
              [GET => '/next', ["Bearer $rw->{key}"]])],
    ['401 malformed_key', "200 key_id=$rw->{id}"],
    'HTTP/2: a rejected 200 KB upload, then the next stream on the connection served';

# --- reload -----------------------------------------------------------------------------

# another snapshot path: 503 until it exists, the old one again: admitted
$t->reload_nginx(%conf, snapshot => 0,
                 http_extra => "apikey_snapshot $dir/elsewhere;\n" . $conf{http_extra});
is got($t->api(GET => '/plain/x', key => $rw->{key})), '503 snapshot_unavailable',
    'reload onto a snapshot path that does not exist: 503';
$t->reload_nginx(%conf);
is got($t->api(GET => '/plain/x', key => $rw->{key})), "200 key_id=$rw->{id}",
    'reload back onto the published snapshot: admitted';

# the rate-limit state survives a reload of the same zone size; a new size is a new zone
is got($t->api(GET => '/errpage/x', key => $limited->{key})), '429 rate_limited',
    'the limited key is still limited after two reloads';
(my $resized = $conf{http_extra}) =~ s/zone=keys:64k/zone=keys:128k/ or die;
$t->reload_nginx(%conf, http_extra => $resized);
is got($t->api(GET => '/errpage/x', key => $limited->{key})), "200 key_id=$limited->{id}",
    'a reload that resizes the zone starts it empty: the key has its budget again (README)';
like $t->error_log, qr/rate limit zone "keys" holds \d+ states/, 'the new zone is logged';

# worker_processes changed on reload, both ways
$t->reload_nginx(%conf, http_extra => $resized, workers => 3);
is scalar(my @w = $t->worker_pids), 3, 'reload to 3 workers';
is got($t->api(GET => '/plain/x', key => $rw->{key})), "200 key_id=$rw->{id}",
    '3 workers: admitted' for 1 .. 3;
$t->reload_nginx(%conf, http_extra => $resized, workers => 1);
is got($t->api(GET => '/plain/x', key => $rw->{key})), "200 key_id=$rw->{id}",
    'back to 1 worker: admitted';
unlike $t->error_log, qr/\[(?:alert|crit|emerg)\]/, 'no alert, crit or emerg in the error log';

done_testing;
