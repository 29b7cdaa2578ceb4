# nginx configuration checks (`nginx -t`): a broken apikey setup is refused at
# configuration time with a message that names the directive, a sane one is accepted.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new(daemon => 0, nginx => 0);

my ($rc, $out) = $t->nginx_t;
is $rc, 0, 'the harness configuration passes nginx -t' or diag $out;
like $out, qr/test is successful/, 'nginx reports success';

($rc, $out) = $t->nginx_t(location_apikey => "apikey on;\napikey_entity \$entity;\n");
isnt $rc, 0, '"apikey on" without apikey_workspace is refused';
like $out, qr/apikey_workspace/, 'the message names apikey_workspace' or diag $out;

($rc, $out) = $t->nginx_t(snapshot => 0);
isnt $rc, 0, '"apikey on" without apikey_snapshot is refused';
like $out, qr/apikey_snapshot/, 'the message names apikey_snapshot' or diag $out;

($rc, $out) = $t->nginx_t(location_apikey => "apikey maybe;\napikey_workspace \$org/\$ws;\n");
isnt $rc, 0, '"apikey maybe" is refused';
like $out, qr/apikey/, 'the message names the directive' or diag $out;

($rc, $out) = $t->nginx_t(location_apikey => "apikey on;\napikey_workspace \$org/\$ws;\n"
                          . "apikey_snapshot /tmp;\n");
isnt $rc, 0, 'apikey_snapshot inside a location is refused (http-level directive)';
like $out, qr/apikey_snapshot/, 'the message names apikey_snapshot' or diag $out;

# Operators load the module fleet-wide (modules-enabled/): a config that does not use it,
# or switches it off, must stay valid.
($rc, $out) = $t->nginx_t(snapshot => 0, location_apikey => "apikey off;\n");
is $rc, 0, '"apikey off" without apikey_workspace or apikey_snapshot is accepted' or diag $out;
($rc, $out) = $t->nginx_t(snapshot => 0, location_apikey => '');
is $rc, 0, 'module loaded but unused: nginx -t passes' or diag $out;

# Workspace set at server level, "apikey on" in the location: inheritance works.
($rc, $out) = $t->nginx_t(location_apikey => "apikey on;\n",
                          server_extra => "apikey_workspace acme-corp/sales;\n");
is $rc, 0, 'apikey_workspace inherited from the server level is accepted' or diag $out;

# A constant apikey_workspace must be a workspace apikeyd can publish: org and slug as its
# admin API accepts them (shared/names.h: 1-63 of a-z, 0-9 and "-", starting and ending
# with a letter or digit). A value with variables is known per request only.
my $on = "apikey on;\napikey_entity \$entity;\n";
for my $good ('acme-corp/sales', 'a/b', '0/9', ('o' x 63) . '/' . ('s' x 63),
              '$org/$ws', '$org/sales', 'ACME/$ws') {
    ($rc, $out) = $t->nginx_t(location_apikey => "${on}apikey_workspace $good;\n");
    is $rc, 0, "apikey_workspace $good is accepted" or diag $out;
}
for my $bad ('ACME/Sales', 'acme-corp/Sales', 'acme-corp', 'acme-corp/', '/sales',
             'acme-corp/sales/x', '-acme/sales', 'acme/sales-', 'acme_corp/sales',
             'acme.corp/sales', ('o' x 64) . '/sales', 'acme/' . ('s' x 64)) {
    ($rc, $out) = $t->nginx_t(location_apikey => "${on}apikey_workspace $bad;\n");
    isnt $rc, 0, "apikey_workspace $bad is refused";
    like $out, qr/invalid value "\Q$bad\E" in "apikey_workspace" directive, it must be "org\/slug", each 1-63 characters/,
        '  naming the value and the rule' or diag $out;
}
($rc, $out) = $t->nginx_t(location_apikey => "apikey on;\n", server_extra => "apikey_workspace ACME/Sales;\n");
isnt $rc, 0, 'apikey_workspace ACME/Sales at the server level is refused too';

# So must a constant apikey_entity: a name the settings API accepts
# ([A-Za-z_][A-Za-z0-9_]{0,63}, case-sensitive).
my $ws_on = "apikey on;\napikey_workspace \$org/\$ws;\n";
for my $good ('orders', 'Order_Items2', '_x', 'a', 'x' x 64, '$entity', 'bad-$entity') {
    ($rc, $out) = $t->nginx_t(location_apikey => "${ws_on}apikey_entity $good;\n");
    is $rc, 0, "apikey_entity $good is accepted" or diag $out;
}
for my $bad ('bad-name', '9orders', 'order.items', 'orders/1', "caf\xc3\xa9", 'x' x 65) {
    ($rc, $out) = $t->nginx_t(location_apikey => "${ws_on}apikey_entity $bad;\n");
    isnt $rc, 0, "apikey_entity $bad is refused";
    like $out, qr/invalid value "\Q$bad\E" in "apikey_entity" directive, it must be an entity name/,
        '  naming the value and the rule' or diag $out;
}

# apikey_status: once per location.
($rc, $out) = $t->nginx_t(server_extra => "location = /apikey-status { apikey_status; }\n");
is $rc, 0, 'apikey_status in a location is accepted' or diag $out;
($rc, $out) = $t->nginx_t(server_extra => "location = /apikey-status { apikey_status; apikey_status; }\n");
isnt $rc, 0, 'apikey_status twice in one location is refused';
like $out, qr/"apikey_status" directive is duplicate/, '  as a duplicate' or diag $out;
# Without a snapshot there are no counters and no generation: the location could only
# answer 404, which a scraper shows as a target down, not as a configuration mistake.
($rc, $out) = $t->nginx_t(snapshot => 0, location_apikey => '',
                          server_extra => "location = /apikey-status { apikey_status; }\n");
isnt $rc, 0, 'apikey_status without apikey_snapshot is refused';
like $out, qr/"apikey_status" has nothing to report: "apikey_snapshot" is not set in the http block in \S+\.conf:\d+/,
    '  saying why and where' or diag $out;

# apikey_usage_report keys=N: the per-worker table of key uses, validated here.
($rc, $out) = $t->nginx_t(http_extra => "    apikey_usage_report 127.0.0.1:9 interval=1s keys=200000;");
is $rc, 0, 'apikey_usage_report keys=200000 is accepted' or diag $out;
($rc, $out) = $t->nginx_t(http_extra => "    apikey_usage_report 127.0.0.1:9 keys=16;");
is $rc, 0, '  so is keys=16 (the minimum) without interval=' or diag $out;
for my $bad ('127.0.0.1:0', '127.0.0.1:99999', '127.0.0.1', 'unix:/tmp/usage.sock', 'off') {
    ($rc, $out) = $t->nginx_t(http_extra => "    apikey_usage_report $bad;");
    isnt $rc, 0, "apikey_usage_report $bad is refused";
    like $out, qr/invalid address "\Q$bad\E" in "apikey_usage_report" \(expected an IP address and port/,
        '  naming the address' or diag $out;
}
for my $bad ('keys=0', 'keys=15', 'keys=abc', 'keys=', 'keys=99999999', 'size=10') {
    ($rc, $out) = $t->nginx_t(http_extra => "    apikey_usage_report 127.0.0.1:9 $bad;");
    isnt $rc, 0, "apikey_usage_report $bad is refused";
    like $out, qr/invalid parameter "\Q$bad\E" in "apikey_usage_report"/, '  naming the parameter'
        or diag $out;
}
for my $case (['interval=1s interval=2s', 'interval=2s'], ['keys=16 keys=32', 'keys=32'],
              ['interval=1s keys=16', undef]) {
    ($rc, $out) = $t->nginx_t(http_extra => "    apikey_usage_report 127.0.0.1:9 $case->[0];");
    if (!defined $case->[1]) {
        is $rc, 0, "apikey_usage_report $case->[0] is accepted" or diag $out;
        next;
    }
    isnt $rc, 0, "apikey_usage_report $case->[0] is refused (a parameter given twice)";
    like $out, qr/duplicate parameter "\Q$case->[1]\E" in "apikey_usage_report"/,
        '  naming the parameter' or diag $out;
}

# Rate limiting: the zone's size and name, the zone a location uses, and a default limit
# within the admin API's bounds (1 to 1,000,000,000 requests in 1 s to 1 d).
my $zone = '    apikey_rate_limit_zone zone=keys:1m;';
my $limit = sub { (http_extra => $zone, location_extra => "apikey_rate_limit $_[0];") };
for my $good ('zone=keys', 'zone=keys default=100/60s', 'zone=keys default=1000000000/1d',
              'zone=keys default=1/86400s', 'off') {
    ($rc, $out) = $t->nginx_t($limit->($good));
    is $rc, 0, "apikey_rate_limit $good is accepted" or diag $out;
}
for my $bad ('zone=keys default=0/1m', 'zone=keys default=100/0s', 'zone=keys default=5/',
             'zone=keys default=/1s', 'zone=keys default=-1/1s', 'zone=keys default=5/1.5s',
             'zone=keys default=5', 'zone=keys rate=5/1s', 'zone=') {
    ($rc, $out) = $t->nginx_t($limit->($bad));
    isnt $rc, 0, "apikey_rate_limit $bad is refused";
    my ($param) = $bad =~ /(\S+)$/;
    like $out, qr/invalid parameter "\Q$param\E" \(expected "zone=name"/,
        '  naming the parameter and the forms expected' or diag $out;
}
for my $bad ('zone=keys default=1000000001/1s', 'zone=keys default=5/86401s',
             'zone=keys default=5/2d', 'zone=keys default=5/600000y') {
    ($rc, $out) = $t->nginx_t($limit->($bad));
    isnt $rc, 0, "apikey_rate_limit $bad is refused";
    my ($param) = $bad =~ /(\S+)$/;
    like $out, qr/invalid parameter "\Q$param\E" \(a limit is 1 to 1000000000 requests in a window of 1s to 1d\)/,
        '  saying the bounds' or diag $out;
}
for my $case (['zone=keys zone=keys', 'zone=keys'], ['default=1/1s default=2/1s', 'default=2/1s']) {
    ($rc, $out) = $t->nginx_t($limit->($case->[0]));
    isnt $rc, 0, "apikey_rate_limit $case->[0] is refused (a parameter given twice)";
    like $out, qr/duplicate parameter "\Q$case->[1]\E" in "apikey_rate_limit"/, '  naming the parameter'
        or diag $out;
}
# One default= per zone: a key's state is one per zone, and what it spent carries over to
# a changed limit, so two defaults would rescale each other's spending (a bypass).
my $two_zones = "$zone\n    apikey_rate_limit_zone zone=other:1m;";
my $second = sub { "        location /second/ { apikey_rate_limit $_[0]; }\n" };
($rc, $out) = $t->nginx_t(http_extra => $zone, location_extra => 'apikey_rate_limit zone=keys default=10/60s;',
                          server_extra => $second->('zone=keys default=1000/60s'));
isnt $rc, 0, 'two locations charging one zone with different default= are refused';
like $out, qr/zone "keys" has default=10\/60s in \S+:\d+: a zone keeps one state per key/,
    '  naming the zone and where its default was given' or diag $out;
for my $case (['zone=keys default=10/60s', $zone, 'the same default= in two locations of one zone'],
              ['zone=keys default=10/1m', $zone, '  also written another way (1m for 60s)'],
              ['zone=other default=1000/60s', $two_zones, 'another default= in another zone']) {
    ($rc, $out) = $t->nginx_t(http_extra => $case->[1],
                              location_extra => 'apikey_rate_limit zone=keys default=10/60s;',
                              server_extra => $second->($case->[0]));
    is $rc, 0, "$case->[2]: accepted" or diag $out;
}
($rc, $out) = $t->nginx_t(location_extra => 'apikey_rate_limit zone=keys;');
isnt $rc, 0, 'apikey_rate_limit with a zone no apikey_rate_limit_zone declares is refused';
like $out, qr/uses zone "keys" but no "apikey_rate_limit_zone" declares it/, '  naming the zone'
    or diag $out;
($rc, $out) = $t->nginx_t(http_extra => "$zone\n$zone");
isnt $rc, 0, 'a rate-limit zone declared twice is refused';
like $out, qr/apikey_rate_limit_zone "keys" is duplicate/, '  naming the zone' or diag $out;
for my $case (['zone=keys', qr/invalid zone size "zone=keys", expected "zone=name:size"/],
              ['zone=:1m', qr/invalid zone "zone=:1m"/],
              ['zone=keys:1x', qr/invalid zone "zone=keys:1x"/],
              ['zone=keys:12k', qr/zone "zone=keys:12k" is too small/]) {
    ($rc, $out) = $t->nginx_t(http_extra => "    apikey_rate_limit_zone $case->[0];");
    isnt $rc, 0, "apikey_rate_limit_zone $case->[0] is refused";
    like $out, $case->[1], '  saying why' or diag $out;
}

# apikey_snapshot is a directory (apikeyd's snapshot_path): a path that exists and is not
# one, or lies below a file, can never hold a snapshot. An existing directory is fine, and
# so is a missing one (a cold start, below).
for my $bad ('/etc/passwd', '/etc/passwd/', '/etc/passwd/snapshot', '/dev/null') {
    ($rc, $out) = $t->nginx_t(snapshot => 0, http_extra => "    apikey_snapshot $bad;");
    isnt $rc, 0, "apikey_snapshot $bad is refused";
    like $out, qr/invalid value "\Q$bad\E" in "apikey_snapshot" directive(, it is not a directory| \(\d+: Not a directory\))/,
        '  naming the value' or diag $out;
}
for my $good ($t->dir, $t->dir . '/', 'tmp', $t->dir . '/no/such/dir') {
    ($rc, $out) = $t->nginx_t(snapshot => 0, http_extra => "    apikey_snapshot $good;");
    is $rc, 0, "apikey_snapshot $good is accepted" or diag $out;
}

# A snapshot that does not exist yet is a run-time condition (503), not a config error:
# nginx must be able to start before apikeyd ever published.
ok !-e $t->snapshot_path, 'no snapshot exists';
($rc, $out) = $t->nginx_t;
is $rc, 0, 'nginx -t passes while the snapshot does not exist yet' or diag $out;

done_testing;
