#!/usr/bin/perl
# Stands in for apikeyd's usage_listen during the benchmark: binds a loopback UDP port,
# writes the port number to PORTFILE, and counts the usage datagrams nginx sends until
# SIGTERM, then prints "usage <datagrams> <bytes>".
use strict;
use warnings;
use IO::Socket::INET;

my $portfile = shift or die "usage: $0 PORTFILE\n";
my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'udp')
    or die "$0: bind: $!\n";
my ($n, $bytes, $stop) = (0, 0, 0);
$SIG{TERM} = sub { $stop = 1 };
open my $fh, '>', "$portfile.tmp" or die "$0: $portfile: $!\n";
print $fh $s->sockport, "\n";
close $fh;
rename "$portfile.tmp", $portfile or die "$0: rename: $!\n";
until ($stop) {
    my $buf;
    next unless defined $s->recv($buf, 65536);  # EINTR on SIGTERM
    $n++;
    $bytes += length $buf;
}
print "usage $n $bytes\n";
