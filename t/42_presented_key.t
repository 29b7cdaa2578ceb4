# The key a request presents is checked and hashed in the post-read phase, for every
# request with an Authorization header, before nginx knows the location (the snapshot
# entry starts to load then; docs/BENCHMARKS.md). Only the access phase of a location
# with "apikey" decides: a location without it answers as if the module were not there,
# and an internal redirect (which drops the request's module contexts) into a location
# with "apikey" decides from the header again. A server without any location with
# "apikey" does not look at keys at all. (Every other test's requests take the same path:
# t/02 has each header form at the API location.)
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new(
    workers         => 1,
    nginx           => 0,
    # the post-read phase says when it presents a key (debug level); nginx's own debug
    # lines echo the request's headers, the key among them
    error_log_level    => 'debug',
    secret_scan_ignore => qr/\[debug\] .*http header: "Authorization: /,
    server_extra    => <<'CONF',
        location /open/ {
            add_header X-Result "[$apikey_result]" always;
            return 200 "open\n";
        }
        location /redirect/ {
            error_page 418 = @keyed;
            return 418;
        }
        # decides, then try_files sends it to @keyed, which decides again
        location /twice/ {
            apikey           on;
            apikey_workspace acme-corp/sales;
            apikey_entity    orders;
            apikey_rate_limit zone=keys default=3/60s;
            add_header X-Result "[$apikey_result]" always;
            try_files /nonexistent @keyed;
        }
        # decides, then try_files hands it to @plain, which has no apikey
        location /handoff/ {
            apikey           on;
            apikey_workspace acme-corp/sales;
            apikey_entity    orders;
            apikey_rate_limit zone=keys default=3/60s;
            try_files /nonexistent @plain;
        }
        # decides for orders, then try_files hands it to @customer, which decides anew
        location /rehandoff/ {
            apikey           on;
            apikey_workspace acme-corp/sales;
            apikey_entity    orders;
            try_files /nonexistent @customer;
        }
        location @customer {
            apikey           on;
            apikey_workspace acme-corp/sales;
            apikey_entity    Customer;
            set $before "[$apikey_entity]";
            add_header X-Result "$before [$apikey_entity]" always;
            empty_gif;
        }
        location @plain {
            add_header X-Result "[$apikey_result] [$apikey_id]" always;
            return 200 "plain\n";
        }
        location = /status {
            apikey_status;
        }
        location @keyed {
            apikey           on;
            apikey_workspace acme-corp/sales;
            apikey_entity    orders;
            apikey_rate_limit zone=keys default=3/60s;
            add_header X-Result "[$apikey_result]" always;
            empty_gif;
        }
CONF
);
# Another server without any location with apikey.
my ($other_port) = ApiKeyTest::free_ports(1);
$t->write_nginx_conf(http_extra => <<"CONF");
    apikey_rate_limit_zone zone=keys:32k;
    server {
        listen 127.0.0.1:$other_port;
        location / {
            add_header X-Result "[\$apikey_result]" always;
            return 200 "other\n";
        }
    }
CONF
$t->start_nginx;
my $ws = $t->create_workspace('acme-corp', 'sales');
my $key = $t->create_key($ws->{id})->{key};
my $unknown = ApiKeyTest::make_key();

# status, $apikey_result as the location saw it, Vary
sub seen {
    my ($path, @auth) = @_;
    my $r = $t->api(GET => $path, headers => \@auth);
    return join ' ', $r->{status} // 'none', $r->{headers}{'x-result'} // '-',
        $r->{headers}{vary} // '-';
}

is seen('/open/x', Authorization => "Bearer $key"), '200 [] -',
    'a location without apikey: no decision, no Vary, for a valid key';
is seen('/open/x', Authorization => "Bearer $unknown"), '200 [] -', '... an unknown one';
is seen('/open/x', Authorization => 'Bearer sk_live_short'), '200 [] -', '... a malformed one';
is seen('/open/x', Authorization => 'Basic dXNlcjpwYXNz'), '200 [] -', '... another scheme';

is seen('/redirect/x', Authorization => "Bearer $key"), '200 [ok] Origin',
    'internal redirect into a location with apikey: a valid key admitted';
is seen('/redirect/x', Authorization => "Bearer $unknown"), '401 [unknown_key] Origin',
    '... an unknown key refused';
is seen('/redirect/x', Authorization => 'Bearer sk_live_short'), '401 [malformed_key] Origin',
    '... a malformed key refused';
is seen('/redirect/x'), '401 [missing_credentials] Origin', '... no key refused';
# the rate limit's state is found by the key's hash, made again there
my $limited = $t->create_key($ws->{id})->{key};
is join(' ', map { (split ' ', seen('/redirect/x', Authorization => "Bearer $limited"))[0] } 1 .. 4),
    '200 200 200 429', '... and its rate limit (3/60s) applied';

# A request decided in two locations (try_files into another with apikey) spends once:
# one unit of its key's rate limit, one count. Each decision seen by its RateLimit header.
sub counted {
    my $body = $t->api(GET => '/status')->{body};
    my %n = $body =~ /^apikey_requests_total\{code="(\w+)",status="\d+"\} (\d+)$/mg;
    return \%n;
}
my $twice = $t->create_key($ws->{id})->{key};
my $before_twice = counted();
my $r;
my @seen = map {
    my $r = $t->api(GET => '/twice/x', key => $twice);
    join ':', $r->{status}, $r->{headers}{'x-result'} // '-', $r->{headers}{ratelimit} // '-'
} 1 .. 4;
is_deeply \@seen, ['200:[ok]:"apikey";r=2;t=20', '200:[ok]:"apikey";r=1;t=40',
    '200:[ok]:"apikey";r=0;t=60', '429:[rate_limited]:"apikey";r=0;t=60'],
    'decided again after try_files: the rate limit (3/60s) spent once a request';
my $after_twice = counted();
is join(' ', map { $_ . '+' . (($after_twice->{$_} // 0) - ($before_twice->{$_} // 0)) } qw(ok rate_limited)),
    'ok+3 rate_limited+1', '... and each request counted once, by its first decision';

# A location without apikey reached by a redirect from one with it: the decision that
# admitted the request stands there (its variables, Vary, RateLimit), not an empty one.
my $handed = $t->create_key($ws->{id});
$r = $t->api(GET => '/handoff/x', key => $handed->{key});
is join(' ', $r->{status}, $r->{headers}{'x-result'} // '-', $r->{headers}{vary} // '-',
        $r->{headers}{ratelimit} // '-'),
    "200 [ok] [$handed->{id}] Origin \"apikey\";r=2;t=20",
    'try_files into a location without apikey: the decision before it, its headers';
$r = $t->api(GET => '/handoff/x');
is $r->{status}, 401, '... a request without a key refused before it';
# A location with apikey reached that way decides for itself: before it has (set, if),
# the variables are empty as in any location, not the earlier decision's.
$r = $t->api(GET => '/rehandoff/x', key => $handed->{key});
is join(' ', $r->{status}, $r->{headers}{'x-result'} // '-'), '200 [] [Customer]',
    'try_files into another location with apikey: set sees nothing before its decision';

# Keys presented so far, by the post-read phase's debug line.
sub presented { scalar(() = $t->error_log =~ /apikey: key presented: /g) }

my $before = presented();
$r = ApiKeyTest::http_request($other_port,
    "GET /x HTTP/1.1\r\nHost: other\r\nAuthorization: Bearer $key\r\nConnection: close\r\n\r\n");
is join(' ', $r->{status} // 'none', $r->{headers}{'x-result'} // '-', $r->{body} // ''),
    "200 [] other\n", 'a server without apikey answers a request with a key';
is presented(), $before, '... without presenting the key (no hash, no context)';
seen('/open/x', Authorization => "Bearer $key");
is presented(), $before + 1, 'a location without apikey in a server with one: key presented';

done_testing;
