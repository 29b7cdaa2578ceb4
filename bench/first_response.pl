#!/usr/bin/perl
# Starts a command (nginx, which daemonizes) and measures the time until the first HTTP
# response with the expected status on 127.0.0.1:PORT. Prints the milliseconds.
#   first_response.pl PORT PATH AUTH_HEADER_OR_- EXPECTED_STATUS TIMEOUT_S -- COMMAND...
use strict;
use warnings;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my ($port, $path, $auth, $want, $timeout, $sep, @cmd) = @ARGV;
die "usage: $0 PORT PATH AUTH EXPECTED TIMEOUT -- CMD...\n" unless $sep && $sep eq '--' && @cmd;
my $request = "GET $path HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
    . ($auth ne '-' ? "Authorization: Bearer $auth\r\n" : '') . "\r\n";

my $t0 = time;
system(@cmd) == 0 or die "$0: @cmd failed: $?\n";
while (time - $t0 < $timeout) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
    if ($s) {
        print $s $request;
        my $line = <$s>;
        close $s;
        if (defined $line && $line =~ m{^HTTP/1\.\d (\d{3})} && $1 == $want) {
            printf "%.2f\n", (time - $t0) * 1000;
            exit 0;
        }
    }
    sleep 0.0005;
}
die "$0: no $want on port $port within ${timeout}s\n";
