# The module's status handler: Prometheus text with decision counters shared by the
# workers (a row each, summed by every scrape, kept across reloads), and the snapshot's
# generation and age for alerting on a stale data plane.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $t = ApiKeyTest->new(
    workers      => 2,
    server_extra => "        location = /apikey-status { apikey_status; }\n",
);
my $ws = $t->create_workspace('acme-corp', 'sales');
my $key = $t->create_key($ws->{id}, permission => 'read_only');
my $PATH = '/api/v1/acme-corp/sales/orders';

# The status page parsed: the response, name{labels} => value, and the lines that are not
# Prometheus text. No test of its own, so that polling it keeps the plan fixed.
sub status_page {
    my $r = $t->api(GET => '/apikey-status');
    my (%v, @bad, %typed);
    for my $line (split /\n/, $r->{body} // '') {
        if ($line =~ /^# TYPE (\w+) (counter|gauge)$/) { $typed{$1} = 1; next }
        next if $line =~ /^# HELP \w+ .+$/;
        if ($line =~ /^(\w+)(\{[^}]*\})? (-?\d+(?:\.\d+)?)$/) {
            push @bad, "untyped $1" unless $typed{$1};
            $v{ $1 . ($2 // '') } = $3;
        } else {
            push @bad, $line;
        }
    }
    return ($r, \%v, \@bad);
}

# name{labels} => value, after checking every line is valid exposition format.
sub scrape {
    my ($r, $v, $bad) = status_page();
    is $r->{status}, 200, 'status handler answers 200';
    like $r->{headers}{'content-type'} // '', qr{^text/plain; version=0\.0\.4}, '  Prometheus content type';
    is_deeply $bad, [], '  every line parses as Prometheus text';
    return $v;
}

my $before = scrape();
ok exists $before->{'apikey_requests_total{code="ok",status="200"}'}, 'has a counter per outcome';
is $before->{apikey_snapshot_up}, 1, 'snapshot up';

$t->api(GET => $PATH, key => $key->{key}) for 1 .. 7;
$t->api(GET => $PATH) for 1 .. 3;
$t->api(POST => $PATH, key => $key->{key}, body => '{}') for 1 .. 2;
$t->api(GET => $PATH, key => ApiKeyTest::make_key());

my $after = scrape();
my %moved = (
    'apikey_requests_total{code="ok",status="200"}'                  => 7,
    'apikey_requests_total{code="missing_credentials",status="401"}' => 3,
    'apikey_requests_total{code="read_only_key",status="403"}'       => 2,
    'apikey_requests_total{code="unknown_key",status="401"}'         => 1,
    'apikey_requests_total{code="rate_limited",status="429"}'        => 0,
);
for my $name (sort keys %moved) {
    is $after->{$name} - $before->{$name}, $moved{$name},
        "$name moved by $moved{$name} (requests over both workers)";
}

$t->create_key($ws->{id});
ok $t->wait_until(sub { ((status_page())[1]{apikey_snapshot_generation} // 0) > $after->{apikey_snapshot_generation} }, 2),
    'the generation follows a publish';
ok scrape()->{apikey_snapshot_age_seconds} < 5, 'snapshot age is small right after a publish';

# Each worker counts in a row of its own (no cache line shared between cores); whichever
# worker answers a scrape sums every row. The access log says which worker (pid=) decided
# each request and answered each scrape.
my $OK = 'apikey_requests_total{code="ok",status="200"}';
sub log_lines { my @l = split /\n/, $t->access_log; scalar @l }
sub pids_since {  # distinct pids of the access log's lines from line $from on matching $re
    my ($from, $re) = @_;
    my @lines = split /\n/, $t->access_log;
    my %pid = map { /pid=(\d+)/ ? ($1 => 1) : () } grep { /$re/ } @lines[$from .. $#lines];
    return keys %pid;
}
sub ok_count { (status_page())[1]{$OK} }  # one scrape's ok counter
for my $round ('started', 'after a reload') {
    my $base = ok_count();
    my $from = log_lines();
    my $sent = 0;
    # reuseport spreads the connections (one a request) over both workers
    while ($sent < 200) {
        $t->api(GET => $PATH, key => $key->{key});
        $sent++;
        last if $sent >= 10 && pids_since($from, qr{ /api/v1/\S+ HTTP\S*" 200 .*result=ok}) >= 2;
    }
    is scalar(pids_since($from, qr{ /api/v1/\S+ HTTP\S*" 200 .*result=ok})), 2,
        "$round: both workers decided some of the $sent requests";
    my $scrapes_from = log_lines();
    my (%seen, @counts);
    for (1 .. 100) {
        push @counts, ok_count() - $base;
        %seen = map { $_ => 1 } pids_since($scrapes_from, qr{ /apikey-status });
        last if keys %seen >= 2 && @counts >= 2;
    }
    is scalar(keys %seen), 2, "$round: both workers answered scrapes";
    is_deeply [sort { $a <=> $b } keys %{{ map { $_ => 1 } @counts }}], [$sent],
        "$round: every scrape, from either worker, counts all $sent requests";
    last if $round ne 'started';
    my $before = ok_count();
    $t->reload_nginx;
    is ok_count(), $before, 'the counters survive a reload';
}

done_testing;
