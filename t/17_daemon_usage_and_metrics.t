# apikeyd on its own (no nginx): PATCH of a key's name and limit, usage datagrams crafted
# here the way the module writes them (last_used_at within 10 s, never backwards, kept
# across a restart, hostile input ignored and counted), and /healthz and /metrics over
# real HTTP (Prometheus text that parses, counters that move, answers the HTTP server
# gives itself counted too).
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use ApiKeyTest;

my $t = ApiKeyTest->new(usage => 1, nginx => 0);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $W = "/api/v1/workspaces/$ws->{id}";
my $key = $t->create_key($ws->{id}, name => 'ci');
my $other = $t->create_key($ws->{id});

# --- PATCH ----------------------------------------------------------------------------

my $r = $t->admin(PATCH => "$W/api-keys/$key->{id}",
                  { name => 'ci (2026)', rate_limit => { limit => 10, window_seconds => 1 } });
is $r->{status}, 200, 'PATCH name and rate_limit';
is $r->{json}{name}, 'ci (2026)', '  name changed';
is_deeply $r->{json}{rate_limit}, { limit => 10, window_seconds => 1 }, '  limit changed';
ok !exists $r->{json}{key}, '  never the raw key';
$r = $t->admin(PATCH => "$W/api-keys/$key->{id}", { rate_limit => { limit => 10, window_seconds => 1.5 } });
is $r->{status}, 400, 'a fractional window is 400';
is $r->{json}{error}{code}, 'invalid_field', '  invalid_field';
like $r->{json}{error}{message}, qr/rate_limit\.window_seconds/, '  naming rate_limit.window_seconds';
$r = $t->admin(PATCH => "$W/api-keys/$key->{id}", undef, raw_body => '{"rate_limit":');
is $r->{status}, 400, 'broken JSON is 400';
is $r->{json}{error}{code}, 'invalid_json', '  invalid_json';

$t->revoke_key($ws->{id}, $other->{id});
$r = $t->admin(PATCH => "$W/api-keys/$other->{id}", { name => 'revoked CI key' });
is $r->{status}, 200, 'a revoked key may still be renamed';
is $r->{json}{status}, 'revoked', '  and stays revoked';

my @updated = grep { $_->{type} eq 'api_key.updated' } $t->feed($ws->{id});
is scalar(@updated), 2, 'two api_key.updated feed entries';
is $updated[0]{object}{name}, 'ci (2026)', '  with the key after the change';

# --- usage datagrams --------------------------------------------------------------------

my $udp = IO::Socket::INET->new(Proto => 'udp', PeerAddr => "127.0.0.1:$t->{usage_port}")
    or die "udp: $!";
sub report { $udp->send(join '', "apikey-usage 1\n", map { "$_->[0] $_->[1]\n" } @_) }
sub last_used {
    my $v = $t->admin(GET => "$W/api-keys/$_[0]")->{json}{last_used_at};
    return defined $v ? ApiKeyTest::parse_iso8601($v) : undef;
}

sub scrape {
    my $m = $t->admin(GET => '/metrics');
    my (%v, %type, %help, @bad);
    for my $line (split /\n/, $m->{body}) {
        if ($line =~ /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S/) { $help{$1}++; next }
        if ($line =~ /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/) {
            push @bad, "second TYPE for $1" if $type{$1}++;
            next;
        }
        if ($line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? (-?[0-9.]+(?:e[+-]?[0-9]+)?|\+Inf|NaN)$/) {
            my ($name, $labels, $value) = ($1, $2 // '', $3);
            my $family = $name;
            $family =~ s/_(bucket|sum|count)$// unless $type{$name};
            push @bad, "no TYPE before $line" unless $type{$family};
            push @bad, "no HELP for $line" unless $help{$family};
            push @bad, "duplicate $name$labels" if exists $v{"$name$labels"};
            $v{"$name$labels"} = $value;
            next;
        }
        push @bad, "bad line: $line";
    }
    return ($m, \%v, \@bad);
}

my $now = int(time);
is last_used($key->{id}), undef, 'no use yet';
my $start = time;
report([$key->{id}, $now - 30]);
ok $t->wait_until(sub { defined last_used($key->{id}) }, 10), 'a crafted report shows within 10 s';
diag sprintf 'last_used_at after %.2f s', time - $start;
is last_used($key->{id}), $now - 30, '  the reported time';
my ($listed) = grep { $_->{id} eq $key->{id} } @{ $t->admin(GET => "$W/api-keys")->{json} };
is ApiKeyTest::parse_iso8601($listed->{last_used_at}), $now - 30, '  in the list too';

my (undef, $before) = scrape();
report([$key->{id}, $now - 100]);                                  # older
report([$key->{id}, $now + 3600]);                                 # an hour ahead
report(['00000000-0000-4000-8000-000000000000', $now]);            # unknown key
$udp->send("apikey-usage 1\n" . ("x" x 1500));                    # oversize
$udp->send("apikey-usage 9\n$key->{id} $now\n");                   # other version
$udp->send("apikey-usage 1\n$key->{id}\n$key->{id} soon\n\0\n");   # junk lines
ok $t->wait_until(sub {
    my (undef, $v) = scrape();
    ($v->{apikeyd_usage_datagrams_total} // 0) - ($before->{apikeyd_usage_datagrams_total} // 0) >= 6
      && ($v->{apikeyd_usage_unknown_keys_total} // 0) > ($before->{apikeyd_usage_unknown_keys_total} // 0)
}, 10), 'six datagrams received and written';
is last_used($key->{id}), $now - 30, 'older, future, unknown and junk reports change nothing';
my ($m, $after, $bad) = scrape();
my $d = sub { ($after->{$_[0]} // 0) - ($before->{$_[0]} // 0) };
is $d->('apikeyd_usage_rejected_datagrams_total'), 2, 'oversize and other-version datagrams rejected';
is $d->('apikeyd_usage_rejected_lines_total'), 4, 'the future line and three junk lines rejected';
is $d->('apikeyd_usage_unknown_keys_total'), 1, 'the unknown key counted';
is $d->('apikeyd_usage_keys_updated_total'), 0, 'nothing moved';
is $t->admin(GET => '/healthz', undef, no_token => 1)->{status}, 200, 'apikeyd is fine';

my $generation = $t->admin(GET => '/healthz', undef, no_token => 1)->{json}{generation};
report([$key->{id}, $now - 1]);
ok $t->wait_until(sub { (last_used($key->{id}) // 0) == $now - 1 }, 10), 'a newer report moves it forward';
is $t->admin(GET => '/healthz', undef, no_token => 1)->{json}{generation}, $generation,
    'usage is not an admin change: same generation';
is scalar(grep { $_->{type} !~ /^(workspace|api_key)\.(created|updated|revoked)$/ } $t->feed($ws->{id})), 0,
    '  and nothing new in the feed';

$t->stop_daemon;
$t->start_daemon;
is last_used($key->{id}), $now - 1, 'last_used_at survives an apikeyd restart';
report([$key->{id}, $now - 500]);
sleep 1.5;
is last_used($key->{id}), $now - 1, 'and still never goes backwards after it';

# --- /healthz and /metrics ------------------------------------------------------------------

$r = $t->admin(GET => '/healthz', undef, no_token => 1);
is $r->{status}, 200, '/healthz without a token';
is $r->{json}{status}, 'ok', '  ok';
is $r->{json}{generation}, $generation, '  the store generation';
like $r->{headers}{'content-type'}, qr{^application/json}, '  JSON';
is $t->admin(POST => '/healthz', {}, no_token => 1)->{status}, 405, 'POST /healthz is 405';
is $t->admin(HEAD => '/healthz', undef, no_token => 1)->{status}, 200, 'HEAD /healthz';
is $t->admin(GET => '/metrics', undef, no_token => 1)->{status}, 401, '/metrics needs the admin token';
is $t->admin(DELETE => '/metrics')->{status}, 405, 'DELETE /metrics is 405';

($m, $before, $bad) = scrape();
is $m->{status}, 200, '/metrics 200';
like $m->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4}, '  text format 0.0.4';
is_deeply $bad, [], '  every line is HELP, TYPE or name{labels} value';
for my $name (qw(apikeyd_store_generation apikeyd_snapshot_generation apikeyd_store_bytes
                 apikeyd_workspaces apikeyd_api_keys apikeyd_healthy
                 apikeyd_snapshot_publish_seconds_count apikeyd_snapshot_publish_failures_total
                 apikeyd_usage_datagrams_total apikeyd_usage_keys_updated_total)) {
    ok defined $before->{$name}, "  has $name";
}
is $before->{apikeyd_workspaces}, 1, '  one workspace';
is $before->{apikeyd_api_keys}, 2, '  two keys';
is $before->{apikeyd_healthy}, 1, '  healthy';

$t->create_key($ws->{id});
$t->admin(GET => "$W/api-keys/$key->{id}") for 1 .. 2;
$t->admin(GET => '/api/v1/workspaces', undef, no_token => 1);
$t->admin(POST => '/api/v1/workspaces', { org => 'x', slug => 'y', name => 'n' x 70000 });  # 413
my $bad_http = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$t->{admin_port}") or die;
print $bad_http "NONSENSE\r\n\r\n";
local $/;
<$bad_http>;
close $bad_http;

($m, $after, $bad) = scrape();
is_deeply $bad, [], 'still valid after more requests';
my $route = sub { "apikeyd_http_requests_total{route=\"$_[0]\",status=\"$_[1]\"}" };
is $d->($route->('/api/v1/workspaces/{id}/api-keys', 201)), 1, 'a create counted by route pattern and status';
is $d->($route->('/api/v1/workspaces/{id}/api-keys/{id}', 200)), 2, 'two GETs of a key';
is $d->($route->('/api/v1/workspaces', 401)), 1, 'a 401';
is $d->($route->('/api/v1/workspaces', 413)), 1, 'a 413 the HTTP server answered itself';
is $d->($route->('other', 400)), 1, 'malformed HTTP, as route "other"';
is $d->('apikeyd_store_generation'), 1, 'the store generation moved by one';
is $after->{apikeyd_snapshot_generation}, $after->{apikeyd_store_generation}, 'snapshot caught up';
is $d->('apikeyd_snapshot_publish_seconds_count'), 1, 'one publish timed';
is $after->{apikeyd_api_keys}, 3, 'three keys';
ok !grep(/sk_live_|\Q$key->{key}\E/, $m->{body}), 'no key material in /metrics';

done_testing;
