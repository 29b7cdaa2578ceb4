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

# apikey_usage_report keys=N: the per-worker table of key uses, validated here.
($rc, $out) = $t->nginx_t(http_extra => "    apikey_usage_report 127.0.0.1:9 interval=1s keys=200000;");
is $rc, 0, 'apikey_usage_report keys=200000 is accepted' or diag $out;
($rc, $out) = $t->nginx_t(http_extra => "    apikey_usage_report 127.0.0.1:9 keys=16;");
is $rc, 0, '  so is keys=16 (the minimum) without interval=' or diag $out;
for my $bad ('keys=0', 'keys=15', 'keys=abc', 'keys=', 'keys=99999999', 'size=10') {
    ($rc, $out) = $t->nginx_t(http_extra => "    apikey_usage_report 127.0.0.1:9 $bad;");
    isnt $rc, 0, "apikey_usage_report $bad is refused";
    like $out, qr/invalid parameter "\Q$bad\E" in "apikey_usage_report"/, '  naming the parameter'
        or diag $out;
}

# A snapshot that does not exist yet is a run-time condition (503), not a config error:
# nginx must be able to start before apikeyd ever published.
ok !-e $t->snapshot_path, 'no snapshot exists';
($rc, $out) = $t->nginx_t;
is $rc, 0, 'nginx -t passes while the snapshot does not exist yet' or diag $out;

done_testing;
