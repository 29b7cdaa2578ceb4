package ApiKeyUsage;

# A UDP sink on loopback for the module's usage reports (apikey_usage_report), standing
# in for apikeyd's usage listener so a test sees the datagrams themselves. Used by t/12
# and t/35.
#
#   my $sink = ApiKeyUsage->new;
#   my $t = ApiKeyTest->new(http_extra => $sink->directive('interval=200ms'));
#   my ($last, $raw, $at) = $sink->collect(5, sub { $_[0]{ $key->{id} } });
#   # $last: {key id => latest unix time reported}, $raw: every datagram received,
#   # $at: when each was read (seconds, fractional)

use strict;
use warnings;

use Carp qw(croak);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

sub new {
    my ($class) = @_;
    my $sock = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0)
        or croak "udp socket: $!";
    return bless { sock => $sock }, $class;
}

sub port { $_[0]{sock}->sockport }

# The http-level directive that sends the reports here; $params e.g. 'interval=2s keys=16'.
sub directive {
    my ($self, $params) = @_;
    return "    apikey_usage_report 127.0.0.1:" . $self->port . " $params;";
}

# Receives datagrams until $cond->(\%last) holds or $timeout seconds passed. Every
# datagram goes to @raw; %last takes the "<key id> <unix time>" lines of those headed
# "apikey-usage 1"; @at the time each was read. Returns (\%last, \@raw, \@at).
sub collect {
    my ($self, $timeout, $cond) = @_;
    my (%last, @raw, @at);
    my $sel = IO::Select->new($self->{sock});
    my $deadline = time + $timeout;
    while (time < $deadline) {
        next unless $sel->can_read(0.1);
        my $d;
        $self->{sock}->recv($d, 65536);
        push @raw, $d;
        push @at, time;
        my ($head, @lines) = split /\n/, $d;
        next unless ($head // '') eq 'apikey-usage 1';
        for (@lines) {
            my ($id, $at) = /^([0-9a-f-]{36}) (\d+)$/ or next;
            $last{$id} = $at if !defined $last{$id} || $at > $last{$id};
        }
        last if $cond->(\%last);
    }
    return (\%last, \@raw, \@at);
}

1;
