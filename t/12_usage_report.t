# The module's usage reports (what apikeyd turns into last_used_at): each worker sends,
# on a timer, the latest use of each key as a UDP datagram; never the key itself.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use ApiKeyTest;
use ApiKeyUsage;

my $sink = ApiKeyUsage->new;
my $t = ApiKeyTest->new(
    workers    => 2,
    http_extra => $sink->directive('interval=200ms'),
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $used   = $t->create_key($ws->{id}, permission => 'read_only');
my $denied = $t->create_key($ws->{id}, permission => 'read_only');
my $unused = $t->create_key($ws->{id}, permission => 'read_only');
my $PATH = '/api/v1/acme-corp/sales/orders';

my $before = int(time);
is $t->api(GET => $PATH, key => $used->{key})->{status}, 200, 'a request with a key';
is $t->api(POST => $PATH, key => $denied->{key}, body => '{}')->{status}, 403,
    'a read-only key refused with 403 (it authenticated: a use)';
is $t->api(GET => $PATH, key => ApiKeyTest::make_key())->{status}, 401, 'an unknown key';

my ($last, $raw) = $sink->collect(5, sub { $_[0]{ $used->{id} } && $_[0]{ $denied->{id} } });
ok $last->{ $used->{id} }, 'the used key is reported within the flush interval';
ok $last->{ $used->{id} } >= $before && $last->{ $used->{id} } <= time + 1,
    '  with the time of its use';
ok $last->{ $denied->{id} }, 'the key refused with 403 is reported too';
ok !$last->{ $unused->{id} }, 'an unused key is not';
my $all = join '', @$raw;
unlike $all, qr/sk_live_/, 'no datagram carries a key';
ok !(grep { length($_) > 1400 } @$raw), 'datagrams stay within 1400 bytes';

# Many keys: reports are split over several datagrams.
my @keys = map { $t->create_key($ws->{id}, permission => 'read_only') } 1 .. 60;
$t->api(GET => $PATH, key => $_->{key}) for @keys;
($last, $raw) = $sink->collect(5, sub { my $l = shift; !grep { !$l->{ $_->{id} } } @keys });
is scalar(grep { $last->{ $_->{id} } } @keys), 60, 'sixty keys used: all sixty reported';
ok !(grep { length($_) > 1400 } @$raw), '  in datagrams of at most 1400 bytes';

# Nothing used: nothing sent.
($last, $raw) = $sink->collect(1, sub { 0 });
is scalar(@$raw), 0, 'no traffic, no reports';

# A report of thousands of keys is paced, 16 datagrams (448 keys) every 5 ms: sent in one
# burst it overflowed the receiver's socket buffer and the kernel dropped the rest. Seen
# in a worker's last report, sent as it leaves on a reload (the interval is long, so no
# timer report comes first): 6,000 keys are over 200 datagrams, at least 7 bursts for the
# worker that used most, so its report takes 30 ms or more; in one burst, under 1 ms.
$t->reload_nginx(http_extra => $sink->directive('interval=600s'));
my $bulk = $t->create_workspace('acme-corp', 'bulk');
my @raw_keys = map { ApiKeyTest::make_key() } 1 .. 6000;
$t->import_keys($bulk->{id}, @raw_keys);
is $t->use_keys('/api/v1/acme-corp/bulk/orders', @raw_keys), 6000, '6,000 keys used';
my %bulk_ids = map { $_->{id} => 1 } $t->list_keys($bulk->{id}, 10000);
$sink->collect(0.3, sub { 0 });                 # nothing is due: the interval is long
kill 'HUP', $t->nginx_pid or die "HUP: $!";     # the sink reads from now on
my $at;
# (a cheap condition: the sink must keep up with the datagrams, as apikeyd does)
($last, $raw, $at) = $sink->collect(10, sub { keys %{ $_[0] } >= 6000 });
is scalar(grep { $last->{$_} } keys %bulk_ids), 6000, 'a reload: every key of the leaving workers reported';
ok @$at > 200 && $at->[-1] - $at->[0] >= 0.015,
    sprintf '  paced: %d datagrams over %.1f ms', scalar(@$at), 1000 * ($at->[-1] - $at->[0]);

done_testing;
