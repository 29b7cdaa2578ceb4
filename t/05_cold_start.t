# nginx started before apikeyd ever published a snapshot: it answers 503
# snapshot_unavailable (JSON), and picks the snapshot up without a restart once
# apikeyd publishes one.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time);
use ApiKeyTest;

my $t = ApiKeyTest->new(daemon => 0, workers => 2);
my $PATH = '/api/v1/acme-corp/sales/orders';

ok !-e $t->snapshot_path . '/data.mdb', 'no snapshot yet';
for my $case ([ 'a well-formed key', key => ApiKeyTest::make_key() ], [ 'no key' ]) {
    my ($label, @args) = @$case;
    for my $n (1 .. 3) {
        my $r = $t->api(GET => $PATH, @args);
        subtest "no snapshot, $label ($n) -> 503 snapshot_unavailable" => sub {
            is $r->{status}, 503, 'status 503' or diag $r->{raw};
            like $r->{headers}{'content-type'} // '', qr{^application/json}, 'JSON';
            is $r->{json}{error}{code}, 'snapshot_unavailable', 'code snapshot_unavailable'
                or diag $r->{body};
            ok !defined $r->{json}{method}, 'not passed to the backend';
            like $r->{headers}{'retry-after'} // '', qr/^[1-9]\d*\z/,
                'Retry-After in whole seconds tells clients when to come back';
        };
    }
}
is $t->api(POST => $PATH, key => ApiKeyTest::make_key(), body => '{}')->{status}, 503,
    'no snapshot: mutations also 503 (fail closed)';

$t->start_daemon;
my $ws  = $t->create_workspace('acme-corp', 'sales');
my $key = $t->create_key($ws->{id}, permission => 'read_write');
my $t0 = time;
my $ok = $t->wait_until(sub { ($t->api(GET => $PATH, key => $key->{key})->{status} // 0) == 200 }, 5);
my $took = time - $t0;
ok $ok, 'after apikeyd publishes, a valid key is accepted without restarting nginx';
cmp_ok $took, '<', 2.5 * ApiKeyTest::time_scale(),
    sprintf('within ~2 s of the key being created (%.2f s)', $took);

# Every worker has picked the snapshot up.
my %seen;
$seen{ $t->api(GET => $PATH, key => $key->{key})->{status} // 'none' }++ for 1 .. 10;
is_deeply \%seen, { 200 => 10 }, 'ten requests over both workers all 200' or diag explain \%seen;
my $r = $t->api(GET => $PATH);
is $r->{status}, 401, 'no key now -> 401 (not 503)';
is $r->{json}{error}{code}, 'missing_credentials', '... missing_credentials';
$r = $t->api(GET => $PATH, key => ApiKeyTest::make_key());
is $r->{json}{error}{code}, 'unknown_key', 'unknown key -> unknown_key (not 503)';

like $t->access_log, qr/ 503 .*result=snapshot_unavailable/, '503s were logged with their code';
unlike $t->error_log, qr/\[(?:alert|emerg)\]/, 'no alert/emerg in the error log';

done_testing;
