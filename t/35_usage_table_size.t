# apikey_usage_report keys=N: the per-worker table of key uses between two reports. More
# distinct keys in one interval than it holds are not lost for good (reported on a later
# use) and nginx says which setting to raise.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use ApiKeyTest;
use ApiKeyUsage;

my $sink = ApiKeyUsage->new;
my $t = ApiKeyTest->new(
    workers    => 1,
    http_extra => $sink->directive('interval=2s keys=16'),
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my @keys = map { $t->create_key($ws->{id}, permission => 'read_only') } 1 .. 60;
my $PATH = '/api/v1/acme-corp/sales/orders';

# Drain whatever an earlier flush sent, then use 60 keys. Every report they make (one
# datagram each: 16 keys fit one) is read, over two intervals: the uses may straddle a
# report (a slow build), and a table left full would drop the uses below.
$sink->collect(0.5, sub { 0 });
is $t->api(GET => $PATH, key => $_->{key})->{status}, 200, 'a request with a key' for @keys[0 .. 1];
$t->api(GET => $PATH, key => $_->{key}) for @keys[2 .. $#keys];
my ($seen, $raw) = $sink->collect(4.5, sub { 0 });
my @sizes = map { scalar(() = /^[0-9a-f-]{36} \d+$/mg) } @$raw;
ok @sizes && !grep { $_ > 16 } @sizes, "a 16-key table reports at most 16 keys an interval (@sizes)";
ok $t->wait_until(sub { $t->error_log =~ /key uses not recorded since the last usage report/ }, 5),
    'the overflow is logged';
like $t->error_log, qr/more than about 16 keys per interval in one worker: raise apikey_usage_report keys=/,
    '  naming the table size and the setting';

# The keys not recorded are reported on their next use (8 of them: an empty table of 16
# slots holds them).
my @missed = grep { !$seen->{ $_->{id} } } @keys;
ok @missed >= 8, scalar(@missed) . ' keys not reported';
$t->api(GET => $PATH, key => $_->{key}) for @missed[0 .. 7];
my ($last) = $sink->collect(5, sub { my $l = shift; !grep { !$l->{ $_->{id} } } @missed[0 .. 7] });
is scalar(grep { $last->{ $_->{id} } } @missed[0 .. 7]), 8, 'eight of them used again: reported';

done_testing;
