#!/usr/bin/perl
# Turns bench/run.sh's raw result lines into the markdown tables of docs/BENCHMARKS.md.
use strict;
use warnings;

my (%conf, %size, %micro, %wrk, %start, %rss, @revoke, %load, %create, @e2e, @usage, %import, %cp_size);
while (<>) {
    my @f = split;
    next unless @f;
    if ($f[0] eq 'conf') { %conf = map { split /=/, $_, 2 } @f[1 .. $#f] }
    elsif ($f[0] eq 'size') { %size = map { split /=/, $_, 2 } @f[1 .. $#f] }
    elsif ($f[0] eq 'micro') { $micro{$f[1]} = [$f[2], $f[3]] }
    elsif ($f[0] eq 'wrk') {
        my (undef, $sc, $wp, $pair, $v, $rps, $p50, $p99, $non2xx, $err, $n, $cpu) = @f;
        $wrk{"$sc/$wp"}{$pair}{$v} = {rps => $rps, p50 => $p50, p99 => $p99,
                                      non2xx => $non2xx, err => $err, n => $n, cpu => $cpu // 0};
    }
    elsif ($f[0] eq 'revoke') { push @revoke, {publish => $f[1], enforced => $f[2], requests => $f[3]} }
    elsif ($f[0] eq 'usage') { @usage = @f[1, 2] }
    elsif ($f[0] eq 'import') { @import{qw(keys batches secs bytes slowest)} = @f[1 .. 5] }
    elsif ($f[0] eq 'cp_size') { %cp_size = map { split /=/, $_, 2 } @f[1 .. $#f] }
    elsif ($f[0] eq 'create') { @create{qw(clients keys secs p50 p99)} = @f[1 .. 5] }
    elsif ($f[0] eq 'revoke_e2e') { push @e2e, {delete => $f[1], after => $f[2], requests => $f[3]} }
    elsif ($f[0] =~ /^load_(\w+)/) { $load{$1} = "@f[1 .. $#f]" }
    elsif ($f[0] eq 'start') { push @{$start{$f[1]}}, $f[3] }
    elsif ($f[0] eq 'rss') { push @{$rss{"$f[1]/$f[2]"}}, {rss => $f[4], anon => $f[5], file => $f[6], pss => $f[8] // 0, pmd => $f[9] // 0} }
}

sub median { my @s = sort { $a <=> $b } @_; return undef unless @s;
             @s % 2 ? $s[$#s / 2] : ($s[@s / 2 - 1] + $s[@s / 2]) / 2 }
sub minmax { my @s = sort { $a <=> $b } @_; ($s[0], $s[-1]) }
sub pct { my ($p, @v) = @_; my @s = sort { $a <=> $b } @v; return undef unless @s;
          my $i = int($p / 100 * @s + 0.999999) - 1; $s[$i < 0 ? 0 : $i] }
sub us { my $v = shift; defined $v ? sprintf('%.0f µs', $v) : '-' }
# Worker settings as run.sh names them: N, then after it Np (N workers pinned one per
# core) and 1s (one worker and wrk on one CPU).
sub by_workers { my ($x, $y) = @_; my ($xn, $yn) = map { /^(\d+)/ ? $1 : 0 } $x, $y;
                 $xn <=> $yn || $x cmp $y }

my (%fig);  # for the target summary

print "\n## Snapshot\n\n";
if (%size) {
    my $used = ($size{pages_used} - $size{pages_free}) * $size{page_size};
    $fig{bytes_per_key_used} = $used / $size{keys};
    $fig{bytes_per_key} = $size{data_bytes} / $size{keys};
    printf "| keys | data.mdb | bytes/key (file) | bytes/key (pages in use) | generated at |\n|---|---|---|---|---|\n";
    printf "| %d | %.1f MiB | %.0f | %.0f | %d keys/s |\n", $size{keys}, $size{data_bytes} / 1048576,
        $fig{bytes_per_key}, $used / $size{keys}, $size{gen_keys_per_s} // 0;
}

print "\n## Decision microbenchmark (median of repetitions, ns per call)\n\n";
print "| benchmark | median | CV |\n|---|---|---|\n";
for my $name (sort keys %micro) {
    printf "| %s | %.0f ns | %.1f %% |\n", $name, $micro{$name}[0], 100 * $micro{$name}[1];
}
$fig{micro} = $micro{'authenticate/valid'}[0] if $micro{'authenticate/valid'};

print "\n## wrk: bare nginx (A) vs nginx + module (B), interleaved A B A B\n\n";
print "| scenario | workers | pairs | bare req/s | module req/s | ratio min / median / max |"
    . " bare p50 / p99 | module p50 / p99 | p99 added (median) | worker CPU/request bare / module | module non-2xx |\n";
print "|---|---|---|---|---|---|---|---|---|---|---|\n";
my %label = (valid => 'valid keys', unknown => 'unknown keys (401)', valid_c1 => 'valid keys, 1 connection',
             cold => 'valid keys, first run after start (cold)',
             valid_rl => 'valid keys, rate limiting + usage reports on');
my %order = (cold => 0, valid => 1, unknown => 2, valid_rl => 3, valid_c1 => 4);
for my $k (sort { my ($as, $aw) = split m{/}, $a; my ($bs, $bw) = split m{/}, $b;
                  by_workers($aw, $bw) || ($order{$as} // 9) <=> ($order{$bs} // 9) } keys %wrk) {
    my ($sc, $wp) = split m{/}, $k;
    my @pairs = grep { $wrk{$k}{$_}{bare} && $wrk{$k}{$_}{module} } sort { $a <=> $b } keys %{$wrk{$k}};
    my (@ratio, @added, @b, @m, %l);
    my $non2xx = 0;
    for my $p (@pairs) {
        my ($A, $B) = ($wrk{$k}{$p}{bare}, $wrk{$k}{$p}{module});
        push @ratio, $B->{rps} / $A->{rps};
        push @added, $B->{p99} - $A->{p99};
        push @b, $A->{rps}; push @m, $B->{rps};
        push @{$l{bp50}}, $A->{p50}; push @{$l{bp99}}, $A->{p99};
        push @{$l{mp50}}, $B->{p50}; push @{$l{mp99}}, $B->{p99};
        push @{$l{bcpu}}, $A->{cpu}; push @{$l{mcpu}}, $B->{cpu};
        $non2xx += $B->{non2xx};
        warn "report: socket errors in $k pair $p\n" if $A->{err} || $B->{err};
    }
    next unless @pairs;
    my ($rmin, $rmax) = minmax(@ratio);
    printf "| %s | %s | %d | %.0f | %.0f | %.3f / %.3f / %.3f | %s / %s | %s / %s | %s | %.1f / %.1f µs | %d |\n",
        $label{$sc} // $sc, $wp, scalar @pairs, median(@b), median(@m), $rmin, median(@ratio), $rmax,
        us(median(@{$l{bp50}})), us(median(@{$l{bp99}})), us(median(@{$l{mp50}})),
        us(median(@{$l{mp99}})), us(median(@added)), median(@{$l{bcpu}}) / 1000,
        median(@{$l{mcpu}}) / 1000, $non2xx;
    if ($sc eq 'valid') {
        $fig{"ratio/$wp"} = median(@ratio);
        $fig{"ratio_min/$wp"} = $rmin;
        $fig{"p99/$wp"} = median(@added);
        $fig{"bp99/$wp"} = median(@{$l{bp99}});
    }
    if ($sc eq 'valid_c1') { $fig{"p99_c1"} = median(@added); $fig{"bp99_c1"} = median(@{$l{bp99}}) }
    $fig{"ratio_rl/$wp"} = median(@ratio) if $sc eq 'valid_rl';
}

printf "\nUsage reports received during the runs: %d datagrams, %d bytes.\n", @usage if @usage;

if (%start) {
    print "\n## nginx start, until the first 200 (module: with a valid key)\n\n";
    print "| variant | starts | median | min | max |\n|---|---|---|---|---|\n";
    for my $v (qw(bare module)) {
        next unless $start{$v};
        my ($lo, $hi) = minmax(@{$start{$v}});
        printf "| %s | %d | %.1f ms | %.1f ms | %.1f ms |\n", $v, scalar @{$start{$v}},
            median(@{$start{$v}}), $lo, $hi;
    }
    $fig{start} = median(@{$start{module}}) - median(@{$start{bare}}) if $start{module} && $start{bare};
}

if (%rss) {
    print "\n## RSS per worker after the load (KiB)\n\n";
    print "| variant | workers | RSS | anon | file (incl. mapped snapshot pages) | of which in 2 MB pages | PSS |\n|---|---|---|---|---|---|---|\n";
    for my $k (sort { my ($av, $aw) = split m{/}, $a; my ($bv, $bw) = split m{/}, $b;
                      by_workers($aw, $bw) || $av cmp $bv } keys %rss) {
        my ($v, $wp) = split m{/}, $k;
        my @w = @{$rss{$k}};
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", $v, $wp,
            map { my $f = $_; join(', ', map { $_->{$f} } @w) } qw(rss anon file pmd pss);
    }
}

if (@revoke) {
    my @pub = map { $_->{publish} } @revoke;
    my @enf = map { $_->{enforced} } @revoke;
    my @req = map { $_->{requests} } @revoke;
    print "\n## Revoke -> 401 in nginx, data-plane half (snapshot publish + next request), $size{keys} keys\n\n";
    print "| revokes | publish p50 / p99 / max | first 401 after publish start p50 / p99 / max | requests until 401 (max) |\n|---|---|---|---|\n";
    printf "| %d | %s / %s / %s | %s / %s / %s | %d |\n", scalar @revoke,
        us(pct(50, @pub)), us(pct(99, @pub)), us((minmax(@pub))[1]),
        us(pct(50, @enf)), us(pct(99, @enf)), us((minmax(@enf))[1]), (minmax(@req))[1];
    $fig{revoke} = pct(99, @enf);
}
# Keys in apikeyd's store during the creates and revokes: the import's plus the creates'.
my $store_keys = ($import{keys} // 0) + ($create{keys} // 0);
if (%import) {
    $fig{import} = $import{keys} / $import{secs};
    print "\n## Control plane through apikeyd: bulk import\n\n";
    print "| keys imported | requests | seconds (HTTP body → store → snapshot → 201) | keys/s | slowest request | body |\n|---|---|---|---|---|---|\n";
    printf "| %d | %d | %.2f | %.0f | %.2f s | %.0f MB |\n", $import{keys}, $import{batches},
        $import{secs}, $fig{import}, $import{slowest}, $import{bytes} / 1e6;
    if (%cp_size && $store_keys) {
        my $used = ($cp_size{snapshot_pages_used} - $cp_size{snapshot_pages_free}) * $cp_size{page_size};
        printf "\napikeyd's snapshot at the end (%d keys): data.mdb %.0f bytes/key, pages in use %.1f bytes/key; store data.mdb %.0f bytes/key.\n",
            $store_keys, $cp_size{snapshot_bytes} / $store_keys, $used / $store_keys,
            $cp_size{store_bytes} / $store_keys;
    }
}
if (%create) {
    $fig{creates} = $create{keys} / $create{secs};
    print "\n## Control plane through apikeyd (store of $store_keys keys)\n\n";
    print "| clients | keys created | creates/s | create latency p50 / p99 |\n|---|---|---|---|\n";
    printf "| %d | %d | %.0f | %s / %s |\n", $create{clients}, $create{keys}, $fig{creates},
        us($create{p50}), us($create{p99});
}
if (@e2e) {
    my @del = map { $_->{delete} } @e2e;
    my @aft = map { $_->{after} } @e2e;
    my @req = map { $_->{requests} } @e2e;
    $fig{revoke_e2e} = pct(99, @aft);
    print "\n| revokes through apikeyd | DELETE latency p50 / p99 | revoke's 200 -> first 401 p50 / p99 / max | requests until 401 (max) |\n|---|---|---|---|\n";
    printf "| %d | %s / %s | %s / %s / %s | %d |\n", scalar @e2e, us(pct(50, @del)), us(pct(99, @del)),
        us(pct(50, @aft)), us(pct(99, @aft)), us((minmax(@aft))[1]), (minmax(@req))[1];
}
if (%load) {
    printf "\nLoad average (1/5/15 min) before: %s, after: %s (other users of the machine).\n",
        $load{before} // '?', $load{after} // '?';
}

print "\n## Against the targets of issue 5\n\n| figure | target | measured | |\n|---|---|---|---|\n";
sub row { my ($what, $target, $val, $fmt, $ok) = @_;
          printf "| %s | %s | %s | %s |\n", $what, $target,
              defined $val ? sprintf($fmt, $val) : 'not measured',
              defined $val ? ($ok->($val) ? 'met' : '**missed**') : '' }
for my $wp (1, 2) {
    row("throughput module/bare, valid keys, $wp worker(s) (median ratio)", '≥ 0.95',
        $fig{"ratio/$wp"}, '%.3f', sub { $_[0] >= 0.95 });
}
# The same figure with the workers pinned one per core: another arrangement of the same
# two cores, shown beside the one above, which stays the target's figure.
row("throughput module/bare, valid keys, 2 workers pinned one per core (2p; beside the row above)",
    '≥ 0.95', $fig{"ratio/2p"}, '%.3f', sub { $_[0] >= 0.95 }) if defined $fig{"ratio/2p"};
# And the machine's whole cost a request without the scheduling: one worker and wrk on
# one CPU, never idle.
row("throughput module/bare, valid keys, 1 worker and wrk on one CPU (1s; beside the rows above)",
    '≥ 0.95', $fig{"ratio/1s"}, '%.3f', sub { $_[0] >= 0.95 }) if defined $fig{"ratio/1s"};
for my $wp (1, 2) {
    row("throughput module/bare, rate limiting + usage reports, $wp worker(s)", '≥ 0.95',
        $fig{"ratio_rl/$wp"}, '%.3f', sub { $_[0] >= 0.95 });
}
# A p99 difference means nothing when bare nginx's own p99 is scheduling noise.
sub p99row { my ($what, $added, $bare) = @_;
    if (!defined $added) { printf "| %s | ≤ 50 µs | not measured | |\n", $what; return }
    my $verdict = $bare > 1000 ? sprintf('inconclusive: bare p99 is %.1f ms here', $bare / 1000)
                : $added <= 50 ? 'met' : '**missed**';
    printf "| %s | ≤ 50 µs | %+.0f µs | %s |\n", $what, $added, $verdict }
for my $wp (1, 2) {
    p99row("p99 added over bare, -c" . ($conf{conns} // '?') . ", $wp worker(s)", $fig{"p99/$wp"}, $fig{"bp99/$wp"});
}
p99row('p99 added over bare, 1 connection', $fig{p99_c1}, $fig{bp99_c1});
row('decision microbenchmark (authenticate, valid key), median', '≤ 1 µs', $fig{micro}, '%.0f ns',
    sub { $_[0] <= 1000 });
row('snapshot bytes per key: data.mdb size / keys', '≤ 160', $fig{bytes_per_key}, '%.0f', sub { $_[0] <= 160 });
row('snapshot bytes per key: pages in use (file minus LMDB free pages) / keys', '≤ 160',
    $fig{bytes_per_key_used}, '%.1f', sub { $_[0] <= 160 });
row('nginx start with the snapshot, over bare (median)', '< 100 ms', $fig{start}, '%+.1f ms',
    sub { $_[0] < 100 });
row("revoke → enforced in nginx, p99: snapshot publish + next request, $size{keys} keys", '≤ 100 ms',
    defined $fig{revoke} ? $fig{revoke} / 1000 : undef, '%.2f ms', sub { $_[0] <= 100 });
row("revoke's 200 (apikeyd) → first 401, p99, store of $store_keys keys", '≤ 100 ms',
    defined $fig{revoke_e2e} ? $fig{revoke_e2e} / 1000 : undef, '%.2f ms', sub { $_[0] <= 100 });
row("key creates/s, 8 clients, durable, store of $store_keys keys", '≥ 1,000',
    $fig{creates}, '%.0f', sub { $_[0] >= 1000 });
row('bulk import of 1,000,000 keys, end to end', 'well under 60 s',
    defined $import{secs} && $import{keys} >= 1_000_000 ? $import{secs} : undef, '%.1f s',
    sub { $_[0] < 30 });
