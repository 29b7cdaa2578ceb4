#!/usr/bin/perl
# The end of a failed prove run (scripts/prove.sh), from its whole output in $ARGV[0]:
# each failed test's diagnostics ("#   Failed test ...", where, got/expected and the
# test's own diag lines) and the message of a test file that died ("... at t/x.t line N."),
# at most $MAX_LINES lines of $MAX_WIDTH characters, then prove's summary ("Test Summary
# Report" to the end) again.
use strict;
use warnings;

my ($MAX_LINES, $MAX_WIDTH) = (14, 160);
my $log = shift // die "usage: $0 prove-output-file\n";
open my $fh, '<', $log or die "$log: $!\n";

my (@digest, @summary, $in_failure, $in_summary);
while (my $line = <$fh>) {
    chomp $line;
    $in_summary ||= $line =~ /^Test Summary Report/;
    if ($in_summary) { push @summary, $line; next }
    $in_failure = 1 if $line =~ /^#\s+Failed test/;
    $in_failure = 0 if $line !~ /^#/;
    push @digest, substr($line, 0, $MAX_WIDTH)
        if $in_failure || ($line !~ /^#/ && $line =~ / at \S+\.t line \d+\.$/);
}
exit 0 unless @digest;

my $left = @digest > $MAX_LINES ? @digest - $MAX_LINES : 0;
splice @digest, $MAX_LINES if $left;
print "\n==== why the failed tests failed (their diagnostics again; all of the output: $log)\n";
print "$_\n" for @digest;
print "# ... and $left more line(s)\n" if $left;
print "\n", map { "$_\n" } @summary;
