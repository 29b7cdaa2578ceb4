package ApiKeyTest;

# Integration-test harness for apikey: starts a real apikeyd and a real nginx with
# ngx_http_apikey_module in a private temporary directory, on ports chosen at run time
# (loopback only), and talks to both with a tiny HTTP/1.1 client.
#
# Only core Perl (Test::More, IO::Socket::INET, JSON::PP, File::Temp, POSIX, Time::HiRes,
# Digest::SHA, Compress::Zlib). Every wait is bounded; everything this process started is
# stopped (TERM, wait, KILL) by DESTROY and by an END block, also when a test dies.
#
#   my $t = ApiKeyTest->new(workers => 2, http_extra => '...');
#   my $ws  = $t->create_workspace('acme-corp', 'sales');
#   my $key = $t->create_key($ws->{id}, permission => 'read_write');
#   my $r   = $t->api(GET => '/api/v1/acme-corp/sales/orders', key => $key->{key});
#   is $r->{status}, 200;
#
# Secret hygiene, automatic for every test: the harness remembers every admin token it
# configures and every raw key that appears in an admin API response, and when the
# object's servers stop for good (cleanup, DESTROY, or done_testing for objects still
# alive) it scans every file under its directory (logs, store and snapshot data.mdb, temp
# files; *.yaml and *.conf excepted, which hold token hashes) for them: one test
# "no raw key or admin token in <dir>", failing with the file names. Options:
# secret_scan => 0 turns it off, secret_scan_ignore => qr/.../ skips matching lines (a
# test that runs nginx's error_log at info on purpose, see error_log_level).
#
# Environment: TEST_NGINX_BINARY (default /usr/sbin/nginx), TEST_APIKEYD and
# TEST_APIKEY_MODULE (default $APIKEY_BUILD/...), TEST_APIKEY_LEAVE=1 keeps the
# temporary directory (its path is printed as a diagnostic).
# Another build (make test-sanitize runs the same t/ files on build-sanitize/):
#   APIKEY_BUILD        the build directory, absolute or relative to the repository
#                       (default build)
#   APIKEY_NGINX_ENV    "NAME=value NAME=value": added to nginx's environment (also for
#                       nginx -t), e.g. LD_PRELOAD of the ASan runtime; set in this
#                       process's %ENV, so every child (an nginx a test runs itself) has it
#   APIKEY_DAEMON_ENV   the same for apikeyd
#   APIKEY_TIME_SCALE   multiplies every wait of the harness (start, reload, wait_until,
#                       HTTP timeouts, the watchdog); default 1. time_scale() returns it.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex);
use Compress::Zlib ();
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h strftime);
use Test::More ();
use Test2::API ();
use Scalar::Util ();
use File::Find ();
use Time::HiRes qw(time sleep);

our $REPO   = abs_path(dirname(abs_path(__FILE__)) . '/../..');
our $BUILD  = $ENV{APIKEY_BUILD} || 'build';
$BUILD = "$REPO/$BUILD" unless $BUILD =~ m{^/};
our $NGINX  = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
our $MODULE = $ENV{TEST_APIKEY_MODULE} || "$BUILD/ngx_http_apikey_module.so";
our $DAEMON = $ENV{TEST_APIKEYD} || "$BUILD/apikeyd";
our $TIME_SCALE = ($ENV{APIKEY_TIME_SCALE} // '') =~ /^\d+(?:\.\d+)?\z/ && $ENV{APIKEY_TIME_SCALE} > 0
    ? $ENV{APIKEY_TIME_SCALE} : 1;
our %NGINX_ENV  = _env_pairs($ENV{APIKEY_NGINX_ENV});
our %DAEMON_ENV = _env_pairs($ENV{APIKEY_DAEMON_ENV});

sub _env_pairs {
    my ($text) = @_;
    my %env;
    for my $pair (split ' ', $text // '') {
        my ($name, $value) = $pair =~ /^([A-Za-z_][A-Za-z0-9_]*)=(.*)\z/s
            or croak "bad NAME=value pair in environment list: $pair";
        $env{$name} = $value;
    }
    return %env;
}


# The factor every harness wait is multiplied by (APIKEY_TIME_SCALE): tests with their
# own timing assertions scale them with it.
sub time_scale { $TIME_SCALE }

my $JSON = JSON::PP->new->canonical->utf8->allow_nonref;
my %LIVE;        # pid => 1 for every process any harness object started
my %OBJECTS;     # refaddr => weak ref of every harness object not yet scanned
my $OWNER = $$;  # only the process that loaded us cleans up (never a forked child)

$SIG{PIPE} = 'IGNORE';

sub json { $JSON }

# ---------------------------------------------------------------------------------------
# construction

sub new {
    my ($class, %opts) = @_;

    for my $bin ([$DAEMON, 'apikeyd'], [$MODULE, 'nginx module']) {
        Test::More::BAIL_OUT("$bin->[1] not built: $bin->[0] is missing (run make)")
            unless -f $bin->[0];
    }
    Test::More::BAIL_OUT("nginx binary $NGINX not found") unless -x $NGINX;

    my $self = bless {
        opts     => {
            workers => 2,
            daemon  => 1,
            nginx   => 1,
            %opts,
        },
        keyno    => 0,
        daemon_pid => undef,
        nginx_pid  => undef,
    }, $class;

    # A whole .t file must never hang CI: a watchdog turns a stuck test into a failure.
    my $alarm = ($opts{timeout} // 180) * $TIME_SCALE;
    if ($alarm) {
        $SIG{ALRM} = sub { die "ApiKeyTest: test exceeded ${alarm}s watchdog\n" };
        alarm $alarm;
    }

    # Interrupted (Ctrl-C, CI timeout): die, so END stops what we started (it runs in
    # its own process group and would not get the terminal's signal).
    $SIG{INT} = $SIG{TERM} = $SIG{HUP} = sub { die "ApiKeyTest: caught SIG$_[0]\n" };

    my $dir = tempdir('apikey-t-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{TEST_APIKEY_LEAVE});
    chmod 0711, $dir or croak "chmod $dir: $!";  # nginx workers run as nobody
    Test::More::diag("ApiKeyTest dir: $dir") if $ENV{TEST_APIKEY_LEAVE};
    $self->{dir} = $dir;
    mkdir "$dir/data", 0700;
    mkdir "$dir/tmp", 0755;

    my @ports = free_ports(4);
    @{$self}{qw(admin_port api_port backend_port usage_port)} = @ports;

    $self->{admin_token} = 'test-admin-' . unpack('H*', _random_bytes(16));
    $self->{secrets} = { $self->{admin_token} => 'admin token' };
    $self->{secrets}{ $opts{admin_tokens}{$_} } = "admin token $_" for keys %{ $opts{admin_tokens} // {} };
    $OBJECTS{ Scalar::Util::refaddr($self) } = $self;
    Scalar::Util::weaken($OBJECTS{ Scalar::Util::refaddr($self) });
    $self->write_daemon_conf;
    $self->write_nginx_conf;

    $self->start_daemon if $self->{opts}{daemon};
    $self->start_nginx  if $self->{opts}{nginx};
    return $self;
}

sub dir          { $_[0]{dir} }
sub admin_port   { $_[0]{admin_port} }
sub api_port     { $_[0]{api_port} }
sub backend_port { $_[0]{backend_port} }
sub admin_token  { $_[0]{admin_token} }
sub snapshot_path { "$_[0]{dir}/snapshot" }

sub _random_bytes {
    my ($n) = @_;
    open my $fh, '<:raw', '/dev/urandom' or croak "urandom: $!";
    my $buf;
    my $got = read $fh, $buf, $n;
    croak "short read from /dev/urandom" unless $got && $got == $n;
    return $buf;
}

# Distinct free loopback ports: all sockets are held open until every port is known.
sub free_ports {
    my ($n) = @_;
    my @socks;
    for (1 .. $n) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or croak "cannot bind a loopback port: $@";
        push @socks, $s;
    }
    my @ports = map { $_->sockport } @socks;
    close $_ for @socks;
    return @ports;
}

sub _write_file {
    my ($path, $text, $mode) = @_;
    open my $fh, '>', $path or croak "write $path: $!";
    print {$fh} $text;
    close $fh or croak "close $path: $!";
    chmod $mode, $path if defined $mode;
}

sub _slurp {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}

# ---------------------------------------------------------------------------------------
# configuration files

sub write_daemon_conf {
    my ($self) = @_;
    my $d = $self->{dir};
    my $yaml = <<"YAML";
listen: "127.0.0.1:$self->{admin_port}"
data_dir: "$d/data"
snapshot_path: "$d/snapshot"
admin_tokens:
  - name: "test-admin"
    token_sha256: "@{[ sha256_hex($self->{admin_token}) ]}"
YAML
    # admin_tokens => { name => token }: more admin tokens, right after the first (the
    # feed's actor is the token's name)
    my $extra = $self->{opts}{admin_tokens} // {};
    for my $name (sort keys %$extra) {
        $yaml .= "  - name: \"$name\"\n    token_sha256: \"" . sha256_hex($extra->{$name}) . "\"\n";
    }
    $yaml .= "snapshot_group: nogroup\n" if $> == 0;
    # usage => 1: nginx reports key uses to apikeyd (last_used_at)
    $yaml .= "usage_listen: \"127.0.0.1:$self->{usage_port}\"\n" if $self->{opts}{usage};
    $yaml .= $self->{opts}{daemon_extra} if defined $self->{opts}{daemon_extra};
    $self->{daemon_conf} = "$d/apikeyd.yaml";
    _write_file($self->{daemon_conf}, $yaml, 0600);
}

# The nginx.conf text. Options (constructor options, overridable per call):
#   workers           worker_processes (2)
#   http_extra        text added at http level
#   server_extra      text added to the API server block
#   location_extra    text added to the API location
#   location_apikey   replaces the apikey/apikey_workspace/apikey_entity lines
#   backend_extra     text added to the backend's location (e.g. its own add_header)
#   snapshot          0 to leave out the apikey_snapshot directive
#   main_extra        text added at main level (e.g. worker_rlimit_nofile)
#   worker_connections  events' worker_connections (256)
#   upstream_keepalive  N: proxy to the backend through an upstream block keeping up to N
#                     idle connections per worker (HTTP/1.1), instead of one per request
sub nginx_conf_text {
    my ($self, %over) = @_;
    my %o = (%{ $self->{opts} }, %over);
    my $d = $self->{dir};
    my $user = $> == 0 ? "user nobody nogroup;\n" : '';
    # notice: at info nginx core logs a duplicate Authorization header whole (README).
    my $level = $o{error_log_level} // 'notice';
    my $snapshot = (exists $o{snapshot} && !$o{snapshot}) ? '' : "apikey_snapshot $d/snapshot;";
    my $apikey = $o{location_apikey} // <<'APIKEY';
            apikey           on;
            apikey_workspace $org/$ws;
            apikey_entity    $entity;
APIKEY
    my $http_extra     = $o{http_extra}     // '';
    $http_extra .= "\n    apikey_usage_report 127.0.0.1:$self->{usage_port} interval=200ms;\n"
        if $o{usage};
    my $server_extra   = $o{server_extra}   // '';
    my $location_extra = $o{location_extra} // '';
    my $backend_extra  = $o{backend_extra}  // '';
    my $main_extra     = $o{main_extra}     // '';
    my $worker_connections = $o{worker_connections} // 256;
    my $proxy_pass = "http://127.0.0.1:$self->{backend_port}";
    if ($o{upstream_keepalive}) {
        $http_extra .= "\n    upstream apikey_backend {\n        server 127.0.0.1:$self->{backend_port};\n"
            . "        keepalive $o{upstream_keepalive};\n    }\n";
        $location_extra .= "\n            proxy_http_version 1.1;\n"
            . "            proxy_set_header Connection \"\";\n";
        $proxy_pass = 'http://apikey_backend';
    }
    my $backend_body = '{"key_id":"$http_x_api_key_id","permission":"$http_x_api_key_permission",'
        . '"workspace_id":"$http_x_api_workspace_id","prefix":"$http_x_api_key_prefix",'
        . '"method":"$request_method","public":"$http_x_api_public",'
        . '"expand":"$http_x_api_expand","fields":"$http_x_api_fields",'
        . '"hidden":"$http_x_api_hidden_columns"}';

    return <<"CONF";
${user}load_module $MODULE;
worker_processes $o{workers};
error_log $d/error.log $level;
pid $d/nginx.pid;
daemon off;
$main_extra

events {
    worker_connections $worker_connections;
}

http {
    $snapshot

    # As conf.example/nginx.conf: keys in the request line cut to their prefix.
    map \$request \$apikey_request_1 {
        "~^(.*?)(sk_live_[0-9A-Za-z]{4})[0-9A-Za-z]{34}(.*)\$"  "\$1\$2...\$3";
        default                                                  \$request;
    }
    map \$apikey_request_1 \$apikey_loggable_request {
        "~^(.*?)(sk_live_[0-9A-Za-z]{4})[0-9A-Za-z]{34}(.*)\$"  "\$1\$2...\$3";
        default                                                  \$apikey_request_1;
    }
    log_format apikey '\$remote_addr [\$time_local] "\$apikey_loggable_request" \$status '
                      'pid=\$pid result=\$apikey_result prefix=\$apikey_key_prefix';
    access_log $d/access.log apikey;

    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path       $d/tmp/proxy;
    fastcgi_temp_path     $d/tmp/fastcgi;
    uwsgi_temp_path       $d/tmp/uwsgi;
    scgi_temp_path        $d/tmp/scgi;

$http_extra

    server {
        # reuseport: the kernel spreads connections over all workers, so a test that
        # sends several requests reaches every worker.
        listen 127.0.0.1:$self->{api_port} reuseport;
        server_name api;

        location ~ ^/api/v1/(?<org>[^/]+)/(?<ws>[^/]+)/(?<entity>[^/?]+) {
$apikey
            proxy_set_header X-Api-Key-Id         \$apikey_id;
            proxy_set_header X-Api-Key-Permission \$apikey_permission;
            proxy_set_header X-Api-Workspace-Id   \$apikey_workspace_id;
            proxy_set_header X-Api-Key-Prefix     \$apikey_key_prefix;
            proxy_set_header X-Api-Public         \$apikey_public;
            proxy_set_header X-Api-Expand         \$apikey_expand;
            proxy_set_header X-Api-Fields         \$apikey_fields;
            proxy_set_header X-Api-Hidden-Columns \$apikey_hidden_columns;
$location_extra
            proxy_pass $proxy_pass;
        }

$server_extra
    }

    server {
        listen 127.0.0.1:$self->{backend_port};
        server_name backend;
        access_log off;

        location / {
            default_type application/json;
$backend_extra
            return 200 '$backend_body';
        }
    }
}
CONF
}

sub write_nginx_conf {
    my ($self, %over) = @_;
    $self->{nginx_conf} = "$self->{dir}/nginx.conf";
    _write_file($self->{nginx_conf}, $self->nginx_conf_text(%over), 0644);
    return $self->{nginx_conf};
}

# Runs `nginx -t` on a config built with the given overrides (the running config is
# left alone). Returns (exit status, combined stdout+stderr).
sub nginx_t {
    my ($self, %over) = @_;
    my $conf = "$self->{dir}/nginx-t-" . ++$self->{tconf} . ".conf";
    _write_file($conf, $self->nginx_conf_text(%over), 0644);
    my $out = "$self->{dir}/nginx-t.out";
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        $ENV{$_} = $NGINX_ENV{$_} for keys %NGINX_ENV;
        exec $NGINX, '-t', '-p', "$self->{dir}/", '-c', $conf, '-e', "$self->{dir}/error.log"
            or POSIX::_exit(127);
    }
    my $rc = _wait_pid($pid, 20 * $TIME_SCALE);
    if (!defined $rc) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
        croak "nginx -t did not finish within " . 20 * $TIME_SCALE . "s";
    }
    return ($rc, _slurp($out));
}

# ---------------------------------------------------------------------------------------
# processes

# Waits up to $timeout seconds for a child; returns its exit status ($? style >> 8, or
# 128+signal), or undef if it is still running.
sub _wait_pid {
    my ($pid, $timeout) = @_;
    local $?;    # never leak a child's status into the test's exit code (END, DESTROY)
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid $pid, WNOHANG;
        if ($r == $pid || $r == -1) {
            delete $LIVE{$pid};
            return $r == -1 ? 0 : ($? & 127 ? 128 + ($? & 127) : $? >> 8);
        }
        return undef if time >= $deadline;
        sleep 0.02;
    }
}

# _spawn($log, [{NAME => value},] @cmd): the optional hash is extra environment.
sub _spawn {
    my ($self, $log, @cmd) = @_;
    my $env = ref $cmd[0] eq 'HASH' ? shift @cmd : {};
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        # Own process group: the test's terminal signals do not reach it twice, and
        # nothing of the test (END blocks, temp dir cleanup) runs in the child.
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null' or POSIX::_exit(126);
        open STDOUT, '>>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        $ENV{$_} = $env->{$_} for keys %$env;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    $LIVE{$pid} = 1;
    return $pid;
}

# TERM, wait up to $grace seconds, then KILL (and reap).
sub _terminate {
    my ($pid, $sig, $grace) = @_;
    return unless $pid;
    kill $sig // 'TERM', $pid;
    return if defined _wait_pid($pid, ($grace // 5) * $TIME_SCALE);
    kill 'KILL', $pid;
    _wait_pid($pid, 5);
}

sub port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return 0 unless $s;
    close $s;
    return 1;
}

sub start_daemon {
    my ($self) = @_;
    croak "apikeyd already running" if $self->{daemon_pid};
    my $log = "$self->{dir}/apikeyd.log";
    my $pid = $self->_spawn($log, \%DAEMON_ENV, $DAEMON, '--config', $self->{daemon_conf});
    $self->{daemon_pid} = $pid;
    my $deadline = time + 10 * $TIME_SCALE;
    while (time < $deadline) {
        if (defined(my $rc = _wait_pid($pid, 0))) {
            $self->{daemon_pid} = undef;
            croak "apikeyd exited with status $rc at start:\n" . _slurp($log);
        }
        return $pid if port_open($self->{admin_port});
        sleep 0.02;
    }
    croak "apikeyd did not accept on 127.0.0.1:$self->{admin_port} within 10s:\n" . _slurp($log);
}

# Stops apikeyd; `signal => 'KILL'` simulates a crash. Returns its exit status.
sub stop_daemon {
    my ($self, %o) = @_;
    my $pid = delete $self->{daemon_pid} or return;
    kill $o{signal} // 'TERM', $pid;
    my $rc = _wait_pid($pid, 5 * $TIME_SCALE);
    return $rc if defined $rc;
    kill 'KILL', $pid;
    return _wait_pid($pid, 5);
}

sub daemon_running { defined $_[0]{daemon_pid} }

sub start_nginx {
    my ($self) = @_;
    croak "nginx already running" if $self->{nginx_pid};
    my $d = $self->{dir};
    my $pid = $self->_spawn("$d/nginx.stderr", \%NGINX_ENV, $NGINX, '-p', "$d/",
                            '-c', $self->{nginx_conf}, '-e', "$d/error.log");
    $self->{nginx_pid} = $pid;
    my $deadline = time + 10 * $TIME_SCALE;
    while (time < $deadline) {
        if (defined(my $rc = _wait_pid($pid, 0))) {
            $self->{nginx_pid} = undef;
            croak "nginx exited with status $rc at start:\n" . _slurp("$d/nginx.stderr")
                . $self->error_log;
        }
        if (port_open($self->{api_port}) && port_open($self->{backend_port})
            && $self->worker_pids >= $self->{opts}{workers}) {
            return $pid;
        }
        sleep 0.02;
    }
    croak "nginx did not come up within 10s:\n" . $self->error_log;
}

sub stop_nginx {
    my ($self) = @_;
    my $pid = delete $self->{nginx_pid} or return;
    my @workers = $self->_children_of($pid);
    kill 'TERM', $pid;
    if (!defined _wait_pid($pid, 5 * $TIME_SCALE)) {
        kill 'KILL', $pid;
        _wait_pid($pid, 5);
    }
    kill 'KILL', grep { kill 0, $_ } @workers;  # orphans of a killed master
}

sub nginx_pid { $_[0]{nginx_pid} }

# Pids whose parent is $ppid, from /proc (no procps needed).
sub _children_of {
    my ($self, $ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = _slurp("/proc/$p/stat") or next;
        # pid (comm) state ppid ...: comm may hold spaces/parens, so split after the last ')'
        $stat =~ /\)\s+\S+\s+(\d+)/ or next;
        push @kids, $p if $1 == $ppid;
    }
    return @kids;
}

sub worker_pids {
    my ($self) = @_;
    return () unless $self->{nginx_pid};
    return grep { _slurp("/proc/$_/cmdline") =~ /worker process/ }
        $self->_children_of($self->{nginx_pid});
}

# `nginx ARGS` for this instance's prefix, config and error log (e.g. `-s reload`), with
# APIKEY_NGINX_ENV (the sanitizer runtime under make test-sanitize) in its environment
# only: other programs a test runs never get it. Returns system()'s status.
sub run_nginx {
    my ($self, @args) = @_;
    local %ENV = (%ENV, %NGINX_ENV);
    return system $NGINX, '-p', "$self->{dir}/", '-c', "$self->{dir}/nginx.conf",
        '-e', "$self->{dir}/error.log", @args;
}

# Graceful reconfiguration (what `nginx -s reload` does): HUP, then wait until every old
# worker is gone, the configured number of new ones runs, and a request is answered.
sub reload_nginx {
    my ($self, %over) = @_;
    my $pid = $self->{nginx_pid} or croak "nginx is not running";
    $self->write_nginx_conf(%over) if %over;
    my %old = map { $_ => 1 } $self->worker_pids;
    kill 'HUP', $pid or croak "HUP nginx: $!";
    my $ok = $self->wait_until(sub {
        my @w = $self->worker_pids;
        return 0 if grep { $old{$_} } @w;
        return 0 if @w < $self->{opts}{workers};
        # no old pid among the children, and not running an old config any more
        return !grep { $old{$_} && kill 0, $_ } keys %old;
    }, 10);
    croak "nginx reload did not replace its workers within " . 10 * $TIME_SCALE . "s:\n"
        . $self->error_log unless $ok;
    $self->wait_until(sub { defined $self->api(GET => '/__probe__')->{status} }, 5)
        or croak "nginx does not answer after reload";
    return 1;
}

# Background clients (the fault tests' traffic while they kill things): forks $n
# children; child $c runs $body->($c, $out, $running) once, where $out is its own
# autoflushed file client.$c under the test's directory (one line per outcome, for
# client_lines) and $running->() is true until $run_for seconds passed or stop_clients
# was called: the body loops on it. A body that dies ends its child (on stderr).
sub start_clients {
    my ($self, $n, $run_for, $body) = @_;
    croak "clients already running" if $self->{client_pids};
    my $dir = $self->{dir};
    unlink "$dir/stop";
    my @pids;
    for my $c (1 .. $n) {
        my $pid = fork // croak "fork: $!";
        if (!$pid) {
            open my $out, '>', "$dir/client.$c" or POSIX::_exit(1);
            select((select($out), $| = 1)[0]);
            my $deadline = time + $run_for;
            my $running = sub { time < $deadline && !-e "$dir/stop" };
            my $ok = eval { $body->($c, $out, $running); 1 };
            print STDERR "client $c: $@" unless $ok;
            close $out;
            POSIX::_exit($ok ? 0 : 1);
        }
        $LIVE{$pid} = 1;
        push @pids, $pid;
    }
    $self->{client_pids} = \@pids;
    $self->{clients} = $n;
}

# Tells the clients to stop (the file "stop"), waits up to 20 s for each, then kills it.
sub stop_clients {
    my ($self) = @_;
    my $pids = delete $self->{client_pids} or return;
    open my $stop, '>', "$self->{dir}/stop" or croak "create $self->{dir}/stop: $!";
    close $stop;
    for my $pid (@$pids) {
        next if defined _wait_pid($pid, 20);
        kill 'KILL', $pid;
        _wait_pid($pid, 5);
    }
}

# Every line the clients wrote so far (chomped), client 1's first. While they run a
# client that has not opened its file yet has none; after stop_clients a missing file
# dies.
sub client_lines {
    my ($self) = @_;
    my @lines;
    for my $c (1 .. ($self->{clients} // 0)) {
        my $path = "$self->{dir}/client.$c";
        open my $in, '<', $path or do {
            croak "$path: $!" unless $self->{client_pids};
            next;
        };
        chomp(my @l = <$in>);
        push @lines, @l;
    }
    return @lines;
}

sub error_log  { _slurp("$_[0]{dir}/error.log") }
sub access_log { _slurp("$_[0]{dir}/access.log") }
sub daemon_log { _slurp("$_[0]{dir}/apikeyd.log") }

sub cleanup {
    my ($self) = @_;
    return unless $$ == $OWNER;
    $self->stop_nginx;
    $self->stop_daemon;
    $self->scan_secrets;
}

# Remembers a secret the scan must never find (a raw key a test made some other way).
sub add_secret {
    my ($self, $secret, $what) = @_;
    $self->{secrets}{$secret} = $what // 'secret' if defined $secret && length $secret;
}

# Files under the directory that hold one of the secrets: { path => [what, ...] }.
sub find_secrets {
    my ($self) = @_;
    my %found;
    my $ignore = $self->{opts}{secret_scan_ignore};
    my @secrets = keys %{ $self->{secrets} };
    File::Find::find({ no_chdir => 1, wanted => sub {
        my $path = $File::Find::name;
        return unless -f $path && !-l $path;
        return if $path =~ /\.(?:yaml|conf)\z/;
        my $data = _slurp($path);
        $data = join "\n", grep { !/$ignore/ } split /\n/, $data if $ignore;
        for my $secret (@secrets) {
            push @{ $found{ substr $path, length($self->{dir}) + 1 } }, $self->{secrets}{$secret}
                if index($data, $secret) >= 0;
        }
    } }, $self->{dir});
    return \%found;
}

# The automatic check (see the top of this file): once per object, after its servers
# stopped. After done_testing it can only report on stderr and fail the exit code.
sub scan_secrets {
    my ($self) = @_;
    return if $self->{scanned}++ || !$self->{dir} || !-d $self->{dir};
    delete $OBJECTS{ Scalar::Util::refaddr($self) };
    return if exists $self->{opts}{secret_scan} && !$self->{opts}{secret_scan};
    my $found = $self->find_secrets;
    my @report = map { "$_: " . join(', ', @{ $found->{$_} }) } sort keys %$found;
    my $hub = eval { Test2::API::test2_stack()->top };
    if ($hub && !$hub->ended && !defined $hub->plan) {
        Test::More::ok(!@report, 'no raw key or admin token in the logs, store and snapshot files')
            or Test::More::diag(join "\n", 'found:', @report);
    } else {
        if (@report) {
            print STDERR "# ApiKeyTest: raw key or admin token found after the tests:\n",
                map { "#   $_\n" } @report;
            $ApiKeyTest::LEAKED = 1;
        }
    }
}

# Objects still alive when the test calls done_testing are stopped and scanned then, so
# the check is one more test before the plan.
Test2::API::test2_add_callback_testing_done(sub {
    return unless $$ == $OWNER;
    for my $obj (grep { defined } values %OBJECTS) {
        $obj->cleanup;
    }
});

sub DESTROY {
    local ($?, $@, $!);
    $_[0]->cleanup;
}

END {
    if ($$ == $OWNER) {
        my $status = $?;
        for my $pid (keys %LIVE) {
            kill 'TERM', $pid;
        }
        for my $pid (keys %LIVE) {
            next if defined _wait_pid($pid, 5 * $TIME_SCALE);
            kill 'KILL', $pid;
            _wait_pid($pid, 2);
        }
        $? = $status;
        $? = 255 if $ApiKeyTest::LEAKED && !$?;
    }
}

# ---------------------------------------------------------------------------------------
# polling

# Calls $cond every 20 ms until it returns true or $timeout seconds (times
# APIKEY_TIME_SCALE) passed; returns the last value of $cond (false on timeout).
sub wait_until {
    my ($self, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 5) * $TIME_SCALE;
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return $v if time >= $deadline;
        sleep 0.02;
    }
}

# ---------------------------------------------------------------------------------------
# HTTP client: HTTP/1.1, Connection: close, read to EOF. Returns
#   { status, reason, headers => {lowercase => value (duplicates joined with ", ")},
#     header_list => [[name, value], ...], body, json (or undef) }
# On a transport failure status is undef and {error} says why.

sub http_request {
    my ($port, $raw, %o) = @_;
    my $timeout = ($o{timeout} // 10) * $TIME_SCALE;
    my $deadline = time + $timeout;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
                                  Timeout => $timeout,
                                  # local_addr => '127.0.0.2': another loopback source
                                  ($o{local_addr} ? (LocalAddr => $o{local_addr}) : ()))
        or return { status => undef, error => "connect 127.0.0.1:$port: $@" };
    binmode $s;
    my $sel = IO::Select->new($s);
    my $off = 0;
    my $write_error;
    while ($off < length $raw) {
        last if time >= $deadline;
        next unless $sel->can_write(0.1);
        my $n = syswrite $s, $raw, 65536, $off;
        if (!defined $n) {
            # The peer may answer (413, 400) and close before reading everything.
            $write_error = "$!";
            last;
        }
        $off += $n;
    }
    my $resp = '';
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            close $s;
            return { status => undef, error => "timeout after ${timeout}s", raw => $resp };
        }
        next unless $sel->can_read($left > 0.2 ? 0.2 : $left);
        my $n = sysread $s, my $buf, 65536;
        last if !$n;    # EOF or reset: parse what we have
        $resp .= $buf;
    }
    close $s;
    my $r = parse_response($resp);
    $r->{write_error} = $write_error if defined $write_error;
    return $r;
}

sub parse_response {
    my ($resp) = @_;
    my $r = { status => undef, headers => {}, header_list => [], body => '', json => undef,
              raw => $resp };
    my $end = index $resp, "\r\n\r\n";
    if ($end < 0) {
        $r->{error} = length $resp ? 'incomplete response head' : 'empty response';
        return $r;
    }
    my ($status_line, @lines) = split /\r\n/, substr($resp, 0, $end);
    my $body = substr $resp, $end + 4;
    if ($status_line =~ m{^HTTP/\d\.\d\s+(\d{3})\s*(.*)$}) {
        $r->{status} = $1 + 0;
        $r->{reason} = $2;
    } else {
        $r->{error} = "bad status line: $status_line";
        return $r;
    }
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $r->{header_list} }, [$name, $value];
        my $lc = lc $name;
        $r->{headers}{$lc} = exists $r->{headers}{$lc} ? "$r->{headers}{$lc}, $value" : $value;
    }
    if (($r->{headers}{'transfer-encoding'} // '') =~ /chunked/i) {
        my $decoded = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $decoded .= substr $body, 0, $len;
            substr($body, 0, $len + 2) = '';
        }
        $body = $decoded;
    }
    $r->{body} = $body;
    if (length $body && ($r->{headers}{'content-type'} // '') =~ m{json}i) {
        $r->{json} = eval { $JSON->decode($body) };
    } elsif (length $body && $body =~ /^\s*[\[{]/) {
        $r->{json} = eval { $JSON->decode($body) };
    }
    return $r;
}

sub _build_request {
    my ($method, $path, $headers, $body) = @_;
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    my @h = @{ $headers // [] };
    while (my ($n, $v) = splice @h, 0, 2) {
        $req .= "$n: $v\r\n";
    }
    $req .= 'Content-Length: ' . length($body) . "\r\n" if defined $body;
    return $req . "\r\n" . ($body // '');
}

# Admin API call. $data (a Perl structure) is sent as JSON. Options:
#   token => '...'   another bearer token;  no_token => 1   no Authorization header
#   raw_body => '..' a body sent as is (wins over $data);  headers => [name => value, ...]
sub admin {
    my ($self, $method, $path, $data, %o) = @_;
    my @headers = @{ $o{headers} // [] };
    unless ($o{no_token}) {
        push @headers, Authorization => 'Bearer ' . ($o{token} // $self->{admin_token});
    }
    my $body = $o{raw_body};
    $body = $JSON->encode($data) if !defined $body && defined $data;
    push @headers, 'Content-Type' => 'application/json' if defined $body;
    my $r = http_request($self->{admin_port}, _build_request($method, $path, \@headers, $body),
                         %o);
    $self->{secrets}{$1} //= 'raw key' while ($r->{body} // '') =~ /(sk_live_[0-9A-Za-z]{38})/g;
    return $r;
}

# Data-plane call through nginx. Options: key => '...' (sends Authorization: Bearer key),
# headers => [name => value, ...], body => '...'.
sub api {
    my ($self, $method, $path, %o) = @_;
    my @headers = @{ $o{headers} // [] };
    push @headers, Authorization => "Bearer $o{key}" if defined $o{key};
    return http_request($self->{api_port}, _build_request($method, $path, \@headers, $o{body}),
                        %o);
}

# Sends raw bytes to nginx's API port and parses the answer.
sub raw {
    my ($self, $bytes, %o) = @_;
    return http_request($self->{api_port}, $bytes, %o);
}

# ---------------------------------------------------------------------------------------
# admin helpers (die with the response when the daemon does not answer as promised)

sub _expect {
    my ($r, $status, $what) = @_;
    return $r->{json} if defined $r->{status} && $r->{status} == $status && $r->{json};
    croak "$what: expected $status, got " . ($r->{status} // "no response ($r->{error})")
        . ": " . ($r->{body} // '');
}

sub create_workspace {
    my ($self, $org, $slug, %extra) = @_;
    my $r = $self->admin(POST => '/api/v1/workspaces',
                         { org => $org, slug => $slug, name => "$org $slug", %extra });
    return _expect($r, 201, "create workspace $org/$slug");
}

sub create_key {
    my ($self, $ws_id, %fields) = @_;
    $fields{name} //= 'test key ' . ++$self->{keyno};
    my $r = $self->admin(POST => "/api/v1/workspaces/$ws_id/api-keys", \%fields);
    return _expect($r, 201, "create key in $ws_id");
}

sub revoke_key {
    my ($self, $ws_id, $key_id) = @_;
    my $r = $self->admin(DELETE => "/api/v1/workspaces/$ws_id/api-keys/$key_id");
    return _expect($r, 200, "revoke key $key_id");
}

sub put_workspace_settings {
    my ($self, $ws_id, $settings) = @_;
    my $r = $self->admin(PUT => "/api/v1/workspaces/$ws_id/settings", $settings);
    return _expect($r, 200, "put settings of $ws_id");
}

sub put_entity_settings {
    my ($self, $ws_id, $entity, $settings) = @_;
    my $r = $self->admin(PUT => "/api/v1/workspaces/$ws_id/entities/$entity/settings", $settings);
    return _expect($r, 200, "put settings of $entity in $ws_id");
}

# Every key of a workspace, in listing order, following the list's
# `Link: <...>; rel="next"` pages ($limit keys a page, the daemon's default when undef;
# at most 1000 pages). Dies on a non-200 page.
sub list_keys {
    my ($self, $ws_id, $limit) = @_;
    my $path = "/api/v1/workspaces/$ws_id/api-keys" . (defined $limit ? "?limit=$limit" : '');
    my @keys;
    for (1 .. 1000) {
        my $r = $self->admin(GET => $path);
        push @keys, @{ _expect($r, 200, "list keys of $ws_id") };
        ($path) = ($r->{headers}{link} // '') =~ /^<([^>]+)>; rel="next"\z/ or return @keys;
    }
    croak "the key list of $ws_id does not end";
}

# Imports raw keys (make_key) into a workspace through the bulk import (their SHA-256 and
# prefix, name "bulk"): many keys in one request. Dies unless 201.
sub import_keys {
    my ($self, $ws_id, @raw) = @_;
    my $ndjson = join '', map {
        qq({"key_sha256":"@{[ sha256_hex($_) ]}","key_prefix":"@{[ substr $_, 0, 12 ]}","name":"bulk"}\n)
    } @raw;
    return _expect($self->admin(POST => "/api/v1/workspaces/$ws_id/api-keys/import", undef,
                                raw_body => $ndjson), 201, "import into $ws_id");
}

# One GET of $path with each key, pipelined 1,000 to a connection (thousands of keys'
# uses within a moment); how many were answered 200.
sub use_keys {
    my ($self, $path, @keys) = @_;
    my $ok = 0;
    while (my @batch = splice @keys, 0, 1000) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{api_port}")
            or croak "connect: $!";
        print $s join '', map {
            "GET $path HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $_\r\n"
            . ($_ eq $batch[-1] ? "Connection: close\r\n" : '') . "\r\n"
        } @batch;
        local $/;
        my $answers = <$s> // '';
        $ok += () = $answers =~ m{HTTP/1\.1 200 }g;
    }
    return $ok;
}

# The whole change feed of a workspace ($ws_id undef: the global feed), paged with
# after/limit until a page is empty (at most 1000 pages). Dies on a non-200 page.
sub feed {
    my ($self, $ws_id, %o) = @_;
    my $path = defined $ws_id ? "/api/v1/workspaces/$ws_id/changes" : '/api/v1/changes';
    my $after = $o{after} // 0;
    my $limit = $o{limit} // 1000;
    my @entries;
    for (1 .. 1000) {
        my $page = _expect($self->admin(GET => "$path?after=$after&limit=$limit"), 200,
                           "GET $path?after=$after");
        last unless @{ $page->{changes} // [] };
        push @entries, @{ $page->{changes} };
        $after = $page->{next_after};
    }
    return @entries;
}

# ---------------------------------------------------------------------------------------
# key format helpers (the contract: sk_live_ + 32 base62 + 6 base62 of CRC32 of the first
# 40 characters, most significant digit first, zero padded)

my @B62 = ('0' .. '9', 'A' .. 'Z', 'a' .. 'z');

sub key_checksum {
    my ($body) = @_;
    my $v = Compress::Zlib::crc32($body);
    my $out = '';
    for (1 .. 6) {
        $out = $B62[$v % 62] . $out;
        $v = int($v / 62);
    }
    return $out;
}

# A well-formed key (right shape and checksum) that no daemon ever issued.
sub make_key {
    my ($random) = @_;
    $random //= join '', map { $B62[ord($_) % 62] } split //, _random_bytes(32);
    my $body = "sk_live_$random";
    return $body . key_checksum($body);
}

sub key_is_well_formed {
    my ($key) = @_;
    return 0 unless defined $key && $key =~ /^sk_live_[0-9A-Za-z]{38}\z/;
    return key_checksum(substr $key, 0, 40) eq substr($key, 40) ? 1 : 0;
}

# ISO 8601 UTC ("2024-05-01T12:00:00Z", fractional seconds allowed) -> unix seconds.
sub parse_iso8601 {
    my ($s) = @_;
    return undef unless defined $s
        && $s =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:Z|\+00:?00)\z/;
    require Time::Local;
    return Time::Local::timegm($6, $5, $4, $3, $2 - 1, $1);
}

sub iso8601 {
    my ($epoch) = @_;
    return strftime('%Y-%m-%dT%H:%M:%SZ', gmtime $epoch);
}

1;
