# Security: TLS for apikeyd's admin API (required beyond loopback, checked at --check),
# failed admin auth logged and rate limited per address, private file modes, spoofed
# X-Api-* headers never reach the upstream, and apikeyd surviving idle, slow and
# malformed clients. (No raw key or admin token in any file: the harness checks that
# after every test, see t/lib/ApiKeyTest.pm.)
use strict;
use warnings;
use lib 't/lib';
use ApiKeyTest;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);

sub run_cmd {
    my (@cmd) = @_;
    my $out = qx{@cmd 2>&1};
    return ($? >> 8, $out);
}

sub make_cert {
    my ($dir, $name) = @_;
    my ($rc, $out) = run_cmd("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
        . " -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
        . " -keyout $dir/$name-key.pem -out $dir/$name.pem");
    die "openssl req failed: $out" if $rc;
    chmod 0600, "$dir/$name-key.pem";
    return ("$dir/$name.pem", "$dir/$name-key.pem");
}

sub curl {
    my ($t, $cacert, $method, $path, %o) = @_;
    my @h = map { "-H " . quotemeta($_) } @{ $o{headers} // [] };
    push @h, '-H ' . quotemeta('Authorization: Bearer ' . $t->admin_token) unless $o{no_token};
    push @h, '-H ' . quotemeta('Content-Type: application/json'), '--data-binary ' . quotemeta($o{body})
        if defined $o{body};
    my $url = "https://127.0.0.1:" . $t->admin_port . $path;
    my ($rc, $out) = run_cmd("curl -sS --max-time 10 --cacert $cacert -X $method -w '\\n%{http_code}'"
        . " @h '$url'");
    my ($body, $code) = $out =~ /\A(.*)\n(\d{3})\z/s ? ($1, $2) : ($out, undef);
    return { rc => $rc, status => $code, body => $body,
             json => (defined $code ? scalar(eval { ApiKeyTest::json()->decode($body) }) : undef) };
}

# --- the harness's secret scan finds what it must --------------------------------------

{
    my $t = ApiKeyTest->new(nginx => 0, secret_scan => 0);  # this object's scan is the test
    my $ws = $t->create_workspace('scan-org', 'ws');
    my $key = $t->create_key($ws->{id});
    is_deeply $t->find_secrets, {}, 'a clean run: nothing found';
    ApiKeyTest::_write_file($t->dir . '/leak.log', "x $key->{key} y\n");
    ApiKeyTest::_write_file($t->dir . '/data/token.bin', "\0" . $t->admin_token . "\0");
    ApiKeyTest::_write_file($t->dir . '/settings.yaml', $t->admin_token);  # configs: skipped
    is_deeply $t->find_secrets, { 'leak.log' => ['raw key'], 'data/token.bin' => ['admin token'] },
        'a raw key from a create response and the admin token are found, by file';
    my $t2 = ApiKeyTest->new(nginx => 0, daemon => 0, secret_scan => 0,
                             secret_scan_ignore => qr/duplicate header/);
    $t2->add_secret('sk_live_made_up_for_the_test');
    ApiKeyTest::_write_file($t2->dir . '/error.log',
        "client sent duplicate header line: sk_live_made_up_for_the_test\nother\n");
    is_deeply $t2->find_secrets, {}, 'secret_scan_ignore skips matching lines';
    ApiKeyTest::_write_file($t2->dir . '/error.log', "sk_live_made_up_for_the_test\n");
    is_deeply [keys %{ $t2->find_secrets }], ['error.log'], '... only those';
}

# --- TLS ------------------------------------------------------------------------------

{
    my $t = ApiKeyTest->new(daemon => 0, nginx => 0);
    my $d = $t->dir;
    my ($cert, $key) = make_cert($d, 'admin');
    my ($other_cert, $other_key) = make_cert($d, 'other');
    my $conf = ApiKeyTest::_slurp($t->{daemon_conf});

    # --check: the TLS files and the loopback rule, exit 2 with the key named.
    my $check = sub {
        my ($yaml) = @_;
        ApiKeyTest::_write_file("$d/check.yaml", $yaml, 0600);
        return run_cmd("$ApiKeyTest::DAEMON --config $d/check.yaml --check");
    };
    (my $anywhere = $conf) =~ s/^listen: .*$/listen: "0.0.0.0:1"/m;
    my ($rc, $out) = $check->($anywhere);
    is $rc, 2, '0.0.0.0 without tls: exit 2';
    like $out, qr/listen: 0\.0\.0\.0:1 is not a loopback address.*TLS/, '... with a clear message';
    ($rc, $out) = $check->($anywhere =~ s/^listen: .*$/listen: "[::]:1"/mr);
    is $rc, 2, ':: without tls: exit 2';
    ($rc, $out) = $check->("$anywhere\ntls:\n  cert_file: $cert\n  key_file: $key\n");
    is $rc, 0, '0.0.0.0 with tls: valid' or diag $out;
    ApiKeyTest::_write_file("$d/garbage.pem", "-----BEGIN CERTIFICATE-----\nnope\n", 0600);
    for my $case (
        ["$d/missing.pem", $key, qr/tls\.cert_file: cannot read \Q$d\E\/missing\.pem: No such file/],
        [$cert, "$d/missing.pem", qr/tls\.key_file: cannot read/],
        ["$d/garbage.pem", $key, qr/tls\.cert_file: .*garbage\.pem is not a PEM certificate/],
        [$cert, "$d/garbage.pem", qr/tls\.key_file: .* is not a PEM private key/],
        [$cert, $other_key, qr/tls\.key_file: .* does not match the certificate/],
    ) {
        my ($c, $k, $want) = @$case;
        ($rc, $out) = $check->("$conf\ntls:\n  cert_file: $c\n  key_file: $k\n");
        is $rc, 2, "bad tls files: exit 2 ($want)";
        like $out, $want, '... message names the key and the file';
    }

    # apikeyd over TLS on loopback.
    ApiKeyTest::_write_file($t->{daemon_conf},
        "$conf\nheader_timeout_seconds: 2\ntls:\n  cert_file: $cert\n  key_file: $key\n", 0600);
    $t->start_daemon;
    like $t->daemon_log, qr/listening on 127\.0\.0\.1:\d+ \(TLS\)/, 'apikeyd says it listens with TLS';
    my $r = curl($t, $cert, GET => '/healthz', no_token => 1);
    is $r->{status}, 200, 'GET /healthz over TLS' or diag explain $r;
    $r = curl($t, $cert, POST => '/api/v1/workspaces',
              body => '{"org":"tls-org","slug":"ws","name":"TLS"}');
    is $r->{status}, 201, 'create a workspace over TLS' or diag explain $r;
    my $ws = $r->{json}{id};
    $r = curl($t, $cert, POST => "/api/v1/workspaces/$ws/api-keys", body => '{"name":"over tls"}');
    is $r->{status}, 201, 'create a key over TLS';
    ok ApiKeyTest::key_is_well_formed($r->{json}{key}), '... a raw key, once';
    $t->add_secret($r->{json}{key}, 'raw key (TLS)');
    $r = curl($t, $cert, GET => '/api/v1/workspaces', no_token => 1);
    is $r->{status}, 401, 'the admin token is still required';
    $r = curl($t, $other_cert, GET => '/healthz', no_token => 1);
    isnt $r->{rc}, 0, 'a client that does not trust the certificate refuses it';

    # Plain HTTP to the TLS port: no HTTP answer, the connection is closed promptly, and
    # apikeyd carries on.
    my $start = time;
    my $plain = ApiKeyTest::http_request($t->admin_port,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout => 15);
    ok !defined $plain->{status}, 'plain HTTP to the TLS port gets no HTTP answer';
    unlike $plain->{raw} // '', qr/HTTP\/1/, '... nothing that looks like one';
    cmp_ok time - $start, '<', 12, '... and is closed, not left hanging';
    my $silent = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->admin_port, Proto => 'tcp');
    $start = time;
    IO::Select->new($silent)->can_read(6);
    cmp_ok time - $start, '<', 4, 'a TLS connection that never says hello is closed at header_timeout';
    close $silent;
    ok $t->daemon_running && curl($t, $cert, GET => '/healthz', no_token => 1)->{status} == 200,
        'apikeyd still serves TLS clients';
    $t->stop_daemon;
}

# --- files apikeyd creates ---------------------------------------------------------------

{
    my $t = ApiKeyTest->new(nginx => 0);
    my $ws = $t->create_workspace('mode-org', 'ws');
    $t->create_key($ws->{id});
    my $d = $t->dir;
    my $group = $> == 0;  # the harness sets snapshot_group nogroup as root
    my %want = (
        "data"                   => 0700,
        "data/store"             => 0700,
        "data/store/data.mdb"    => 0600,
        "data/store/lock.mdb"    => 0600,
        "data/store/apikeyd.lock" => 0600,
        "snapshot"               => $group ? 0750 : 0700,
        "snapshot/data.mdb"      => $group ? 0640 : 0600,
        "snapshot/lock.mdb"      => $group ? 0660 : 0600,
    );
    for my $p (sort keys %want) {
        my @st = stat "$d/$p";
        ok @st, "$p exists" or next;
        is sprintf('%04o', $st[2] & 07777), sprintf('%04o', $want{$p}), "$p mode";
        ok !($st[2] & 0007), "$p: nothing for other users";
    }
    # Whatever files LMDB or apikeyd add later: none is world-accessible.
    my @loose = grep { (stat $_)[2] & 0007 } glob("$d/data/store/* $d/snapshot/*");
    is_deeply \@loose, [], 'no world-accessible file in the store or the snapshot';
}

# --- failed admin authentication ----------------------------------------------------------

{
    my $t = ApiKeyTest->new(nginx => 0,
        daemon_extra => "auth_rate_limit:\n  max_failures: 3\n  window_seconds: 3\n");
    my $wrong = 'wrong-token-' . unpack('H*', ApiKeyTest::_random_bytes(8));
    $t->add_secret($wrong, 'presented wrong token');
    is $t->admin(GET => '/api/v1/workspaces', undef, token => $wrong)->{status}, 401, "failure $_"
        for 1 .. 2;
    is $t->admin(GET => '/api/v1/workspaces', undef, no_token => 1)->{status}, 401,
        'a missing token counts too';
    my $r = $t->admin(GET => '/api/v1/workspaces', undef, token => $wrong);
    is $r->{status}, 429, 'then 429 for that address';
    is $r->{json}{error}{code}, 'too_many_requests', '... JSON error body';
    like $r->{headers}{'retry-after'} // '', qr/^[1-3]$/, '... Retry-After in seconds';
    is $t->admin(GET => '/api/v1/workspaces')->{status}, 429, '... even with the right token';
    is $t->admin(GET => '/healthz', undef, no_token => 1)->{status}, 200, '/healthz is not limited';
    is $t->admin(GET => '/api/v1/workspaces', undef, local_addr => '127.0.0.2')->{status}, 200,
        'another source address authenticates normally';
    is $t->admin(GET => '/api/v1/workspaces', undef, token => $wrong, local_addr => '127.0.0.3')->{status},
        401, 'another address has its own count';
    sleep 3.2;
    is $t->admin(GET => '/api/v1/workspaces')->{status}, 200, 'the block ends with its window';
    my $log = $t->daemon_log;
    like $log, qr/warn admin authentication failed peer=127\.0\.0\.1 reason=invalid_token/,
        'failures are logged with the source address';
    like $log, qr/reason=missing_token/, '... and whether a token was sent';
    like $log, qr/admin authentication blocked peer=127\.0\.0\.1 for 3 s after 3 failures/,
        'the block is logged once';
    is scalar(() = $log =~ /authentication blocked/g), 1, '... only once';
    unlike $log, qr/\Q$wrong\E/, 'never the token presented';
    like $log, qr/access peer=127\.0\.0\.1:\d+ method=GET path=\/api\/v1\/workspaces status=429/,
        '429s are in the access log';
}

# --- spoofed X-Api-* headers through nginx -----------------------------------------------

{
    my $t = ApiKeyTest->new(workers => 1, nginx => 0);
    my $port = $t->backend_port;
    (my $extra = <<'EXTRA') =~ s/BACKEND/$port/;
        # Admitted, then an internal redirect (try_files) to a named location without
        # apikey: the $apikey_* values there are the admitting decision's.
        location ~ ^/redirect/(?<org>[^/]+)/(?<ws>[^/]+)/(?<entity>[^/?]+) {
            apikey           on;
            apikey_workspace $org/$ws;
            apikey_entity    $entity;
            try_files /nonexistent-file @upstream;
        }
        location @upstream {
            proxy_set_header X-Api-Key-Id         $apikey_id;
            proxy_set_header X-Api-Key-Permission $apikey_permission;
            proxy_set_header X-Api-Workspace-Id   $apikey_workspace_id;
            proxy_set_header X-Api-Key-Prefix     $apikey_key_prefix;
            proxy_set_header X-Api-Public         $apikey_public;
            proxy_set_header X-Api-Hidden-Columns $apikey_hidden_columns;
            proxy_pass http://127.0.0.1:BACKEND;
        }
EXTRA
    $t->{opts}{server_extra} = $extra;
    $t->write_nginx_conf;
    $t->start_nginx;

    my $ws = $t->create_workspace('spoof-org', 'ws');
    my $ro = $t->create_key($ws->{id}, permission => 'read_only');
    $t->put_entity_settings($ws->{id}, 'Public', { publicAccess => 'READ_ONLY' });
    $t->put_entity_settings($ws->{id}, 'Hidden', { columns => { ssn => { apiVisible => JSON::PP::false } } });
    sleep 0.1;
    my @spoof = (
        'X-Api-Key-Id'         => '00000000-0000-4000-8000-000000000001',
        'x-api-key-permission' => 'read_write',
        'X-API-WORKSPACE-ID'   => '00000000-0000-4000-8000-000000000002',
        'X-Api-Key-Prefix'     => 'sk_live_SPOOF',
        'X-Api-Public'         => '1',
        'X-Api-Hidden-Columns' => '',
        'X-Api-Key-Id'         => 'second-copy',
        'X_Api_Key_Id'         => 'underscore-variant',
    );
    my $r = $t->api(GET => '/api/v1/spoof-org/ws/Hidden', key => $ro->{key}, headers => \@spoof);
    is $r->{status}, 200, 'admitted request with spoofed headers';
    is $r->{json}{key_id}, $ro->{id}, '... upstream sees the real key id';
    is $r->{json}{permission}, 'read_only', '... the real permission';
    is $r->{json}{workspace_id}, $ws->{id}, '... the real workspace';
    is $r->{json}{prefix}, $ro->{key_prefix}, '... the real prefix';
    is $r->{json}{public}, '', '... not public';
    is $r->{json}{hidden}, 'ssn', '... the real hidden columns';

    $r = $t->api(GET => '/api/v1/spoof-org/ws/Public', headers => \@spoof);
    is $r->{status}, 200, 'public-access request with spoofed headers';
    is $r->{json}{key_id}, '', '... no key id reaches the upstream';
    is $r->{json}{permission}, '', '... no permission';
    is $r->{json}{workspace_id}, '', '... no workspace id (no key)';
    is $r->{json}{prefix}, '', '... no prefix';
    is $r->{json}{public}, '1', '... public is the module\'s own 1';

    $r = $t->api(GET => '/api/v1/spoof-org/ws/Private', headers => \@spoof);
    is $r->{status}, 401, 'rejected request with spoofed headers is refused by the module';
    ok !exists $r->{json}{key_id}, '... and never reaches the upstream';
    $r = $t->api(GET => '/api/v1/spoof-org/ws/Private', key => ApiKeyTest::make_key(), headers => \@spoof);
    is $r->{status}, 401, '... also with an unknown key';

    $r = $t->api(GET => '/redirect/spoof-org/ws/Hidden', key => $ro->{key}, headers => \@spoof);
    is $r->{status}, 200, 'admitted, then an internal redirect';
    is $r->{json}{key_id}, $ro->{id}, '... the upstream sees the real key id (the decision before it)';
    is $r->{json}{permission}, 'read_only', '... the real permission';
    is $r->{json}{workspace_id}, $ws->{id}, '... the real workspace';
    is $r->{json}{prefix}, $ro->{key_prefix}, '... the real prefix';
    is $r->{json}{public}, '', '... spoofed public dropped';
    is $r->{json}{hidden}, 'ssn', '... the real hidden columns';
    $r = $t->api(GET => '/redirect/spoof-org/ws/Private', headers => \@spoof);
    is $r->{status}, 401, 'rejected before the redirect';
}

# --- idle, slow and malformed clients ------------------------------------------------------

{
    my $t = ApiKeyTest->new(nginx => 0, daemon_extra =>
        "max_connections: 20\nheader_timeout_seconds: 1\nrequest_timeout_seconds: 2\n");
    my $port = $t->admin_port;

    # Slowloris: headers trickled one byte every 100 ms are cut at header_timeout, a body
    # trickled the same way at request_timeout; a normal client is served meanwhile.
    my $closed_after = sub {
        my ($head, $trickle) = @_;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
            or die "connect: $!";
        my $start = time;
        syswrite $s, $head;
        my $sel = IO::Select->new($s);
        while (time - $start < 8) {
            if ($sel->can_read(0.1)) {
                my $n = sysread $s, my $buf, 4096;
                last if !$n;  # closed
            }
            last unless defined syswrite $s, $trickle;
        }
        return time - $start;
    };
    my $pid = fork // die;
    if (!$pid) {  # a normal client, while the slow ones trickle
        sleep 0.3;
        my $ok = $t->admin(GET => '/api/v1/workspaces')->{status} == 200;
        POSIX::_exit($ok ? 0 : 1);
    }
    my $took = $closed_after->("GET /api/v1/workspaces HTTP/1.1\r\nHost: x\r\n", "X");
    cmp_ok $took, '>=', 0.8, 'trickled headers: connection kept until header_timeout';
    cmp_ok $took, '<', 3, '... and closed after it';
    waitpid $pid, 0;
    is $?, 0, 'a normal client was served meanwhile';
    $took = $closed_after->("POST /api/v1/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        . $t->admin_token . "\r\nContent-Length: 1000\r\n\r\n", "x");
    cmp_ok $took, '>=', 1.8, 'trickled body: kept until request_timeout';
    cmp_ok $took, '<', 4, '... and closed after it';
    my $idle = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
    my $start = time;
    IO::Select->new($idle)->can_read(5);
    cmp_ok time - $start, '<', 3, 'an idle connection is closed after header_timeout';
    close $idle;

    my @idle = map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') or die $!
    } 1 .. 30;
    my $trickle = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
    syswrite $trickle, "POST /api/v1/workspaces HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{";
    sleep 0.2;
    for my $i (1 .. 5) {
        is $t->admin(GET => '/api/v1/workspaces')->{status}, 200,
            "served with 30 idle connections against max_connections 20 ($i)";
        syswrite $trickle, 'x';
    }
    like $t->daemon_log, qr/./, 'apikeyd logs';
    close $_ for @idle, $trickle;

    my $r = ApiKeyTest::http_request($port, "\x00\xff\x16\x03garbage bytes\r\n\r\n");
    ok !defined $r->{status} || $r->{status} == 400, 'garbage bytes: 400 or closed';
    $r = ApiKeyTest::http_request($port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " . ('h' x 20000) . "\r\n\r\n");
    is $r->{status}, 431, 'oversized headers: 431';
    $r = $t->admin(POST => '/api/v1/workspaces', undef, raw_body => '{"x":"' . ('b' x 100_000) . '"}');
    is $r->{status}, 413, 'oversized body: 413';
    $r = ApiKeyTest::http_request($port, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n");
    is $r->{status}, 400, 'bad Content-Length: 400';
    $r = ApiKeyTest::http_request($port, "GET /api/v1/workspaces HTTP/1.1\r\nHost: x\r\n"
        . "Transfer-Encoding: chunked\r\n\r\nzz\r\n");
    ok !defined $r->{status} || $r->{status} == 400, 'bad chunk: 400 or closed';
    is $t->admin(GET => '/api/v1/workspaces')->{status}, 200, 'apikeyd still serves';
    my $m = $t->admin(GET => '/metrics');
    like $m->{body}, qr/apikeyd_http_requests_total\{route="other",status="431"\} 1/,
        'refusals are counted';
}

done_testing;
