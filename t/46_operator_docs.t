# What an operator reads is what the code does: every directive and variable the module
# registers is in README's reference (with the contexts nginx accepts it in), every key
# apikeyd's YAML parser knows is in conf.example/apikeyd.yaml (which passes --check),
# every metric either side renders is in README, the make targets and bench knobs the
# docs name exist, t/README lists every test file. Then conf.example/nginx.conf itself,
# only its ports, module path and snapshot path changed, in front of a real apikeyd:
# nginx -t, keys admitted and refused, usage reports reaching apikeyd, no key in its logs,
# and both status endpoints in strict Prometheus text format 0.0.4.
use strict;
use warnings;
use Test::More;
use ApiKeyTest;

my $REPO = $ApiKeyTest::REPO;

sub slurp {
    my ($path) = @_;
    open my $fh, '<', "$REPO/$path" or die "$path: $!";
    local $/;
    return scalar <$fh>;
}

my $readme = slurp('README.md');
my $module_src = join '', map { slurp("ngx_module/$_") }
    qw(ngx_http_apikey_module.c ngx_http_apikey_status.c);

# --- directives and variables -----------------------------------------------------------

my %context_name = (MAIN => 'http', SRV => 'server', LOC => 'location');
my %directives;  # name => "http, server, location"
while ($module_src =~ /\{\s*ngx_string\("(apikey\w*)"\),\s*((?:NGX_HTTP_\w+_CONF\|)+)/g) {
    my ($name, $flags) = ($1, $2);
    $directives{$name} = join ', ', map { $context_name{$_} } $flags =~ /NGX_HTTP_(\w+?)_CONF/g;
}
my @variables = $module_src =~ /\{\s*ngx_string\("(apikey_\w+)"\),\s*NULL,\s*ngx_http_apikey_variable/g;
cmp_ok scalar(keys %directives), '>=', 8, 'directives found in the module source';
cmp_ok scalar(@variables), '>=', 11, 'variables found in the module source';

my %documented;  # README's directive table: name => context cell
while ($readme =~ /^\| `(apikey(?!d)\w*)[^`]*` \| ([^|]+?) \|/mg) {
    $documented{$1} = $2;
}
for my $name (sort keys %directives) {
    is $documented{$name}, $directives{$name},
        "directive $name: in README's table, contexts as the module registers them";
}
for my $name (sort keys %documented) {
    ok exists $directives{$name}, "README's directive $name exists in the module";
}
for my $name (sort @variables) {
    ok $readme =~ /`\$\Q$name\E`/, "variable \$$name is documented in README";
}
# Variables README names are the module's, or the maps of conf.example/nginx.conf.
my $example_nginx = slurp('conf.example/nginx.conf');
my %known = map { $_ => 1 } @variables, $example_nginx =~ /^\s*map \S+ \$(\w+)/mg;
my %named = map { $_ => 1 } $readme =~ /\$(apikey_\w+)/g;
for my $name (sort keys %named) {
    ok $known{$name}, "README's \$$name is a variable the module or conf.example defines";
}

# --- apikeyd's YAML keys ----------------------------------------------------------------

my $config_src = slurp('daemon/config.cc');
# The body of one function of daemon/config.cc.
sub function_body {
    my ($signature) = @_;
    return $config_src =~ /\Q$signature\E\(.*?\n\}\n/s ? $& : '';
}
my @yaml_keys = function_body('Config parse_config') =~ /\bkey == "(\w+)"/g;
my %nested = map { $_->[0] => [ function_body($_->[1]) =~ /field == "(\w+)"/g ] }
    ['tls', 'void parse_tls'], ['auth_rate_limit', 'void parse_auth_limit'],
    ['admin_tokens', 'void parse_admin_tokens'];
cmp_ok scalar(@yaml_keys), '>=', 16, 'YAML keys found in daemon/config.cc';
my $example_yaml = slurp('conf.example/apikeyd.yaml');
for my $key (@yaml_keys) {
    like $example_yaml, qr/^#? ?\Q$key\E:/m, "YAML key $key is in conf.example/apikeyd.yaml";
    ok $readme =~ /`\Q$key\E[`:.]/, "  and README names $key";
}
for my $parent (sort keys %nested) {
    cmp_ok scalar(@{ $nested{$parent} }), '>=', 2, "$parent: its keys found in daemon/config.cc";
    for my $key (@{ $nested{$parent} }) {
        like $example_yaml, qr/^#?\s+(?:- )?\Q$key\E:/m, "  $parent.$key is in conf.example/apikeyd.yaml";
    }
}
{
    my $out = `'$ApiKeyTest::DAEMON' --check --config '$REPO/conf.example/apikeyd.yaml' 2>&1`;
    is $?, 0, 'conf.example/apikeyd.yaml passes apikeyd --check' or diag $out;
}

# --- metrics ----------------------------------------------------------------------------

my @daemon_metrics = grep { !/_(?:bucket|sum|count)\z/ }
    slurp('daemon/metrics.cc') =~ /"(?:# HELP )?(apikeyd_[a-z_]+)/g;
my @module_metrics = slurp('ngx_module/ngx_http_apikey_status.c') =~ /# TYPE (apikey_[a-z_]+)/g;
cmp_ok scalar(@daemon_metrics), '>=', 15, 'metrics found in daemon/metrics.cc';
cmp_ok scalar(@module_metrics), '>=', 4, 'metrics found in the status handler';
my %seen_metric;
for my $name (grep { !$seen_metric{$_}++ } @daemon_metrics, @module_metrics) {
    ok $readme =~ /`\Q$name\E[`{]/, "metric $name is documented in README";
}

# --- make targets, bench knobs, the test list -------------------------------------------

my $makefile = slurp('Makefile');
my %targets = map { $_ => 1 } $makefile =~ /^([a-z][\w-]*):/mg;
my %mentioned;
for my $doc (qw(README.md docs/BENCHMARKS.md docs/RELIABILITY.md t/README.md)) {
    my $text = slurp($doc);
    # `make X` in running text, and command lines in code blocks
    my @spans = ($text =~ /`([^`\n]+)`/g, $text =~ /^(?:\S+=\S+ )*(make [^\n]*)$/mg);
    for my $span (@spans) {
        $mentioned{$1}{$doc} = 1 while $span =~ /(?:^|&& )(?:\S+=\S+ )*make ([a-z][\w-]*)/g;
    }
}
for my $target (sort keys %mentioned) {
    ok $targets{$target}, "make $target (" . join(', ', sort keys %{ $mentioned{$target} })
        . ') is a Makefile target';
}

my $bench = slurp('bench/run.sh');
my ($bench_head) = $bench =~ /\A((?:#[^\n]*\n)+)/;
my %bench_vars = map { $_ => 1 } $bench =~ /\$\{(BENCH_\w+)/g;
for my $var (sort keys %bench_vars) {
    ok $bench_head =~ /^#\s+\Q$var\E=/m, "bench/run.sh documents $var at its top";
}

my $t_readme = slurp('t/README.md');
opendir my $tdir, "$REPO/t" or die "t: $!";
for my $file (sort grep { /\.t\z/ } readdir $tdir) {
    ok $t_readme =~ /^\| `\Q$file\E` \|/m, "t/README.md lists $file";
}

# --- Prometheus text format 0.0.4, strictly ------------------------------------------------
# Returns ({"name{labels}" => value}, [problems]). Every family has one HELP and one TYPE
# before its samples, which are contiguous; names, labels (escapes included) and values
# have the format's syntax; counters end in _total and are not negative; a histogram's
# buckets rise with le, end at +Inf and match _count; the text ends with a newline.

my $NAME  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $VALUE = qr/[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]Inf|NaN/;

sub prom_parse {
    my ($text) = @_;
    my (%samples, @bad, %help, %type, %done, %buckets);
    my $current = '';
    push @bad, 'does not end with a newline' unless $text =~ /\n\z/;
    push @bad, 'has a carriage return' if $text =~ /\r/;
    my $family_of = sub {
        my ($name) = @_;
        return $name if $type{$name};
        (my $base = $name) =~ s/_(?:bucket|sum|count)\z//;
        return ($type{$base} // '') eq 'histogram' ? $base : $name;
    };
    my $enter = sub {
        my ($family) = @_;
        return if $family eq $current;
        push @bad, "$family: its lines are not together" if $done{$family};
        $done{$current} = 1 if length $current;
        $current = $family;
    };
    (my $body = $text) =~ s/\n\z//;
    for my $line (split /\n/, $body, -1) {
        if ($line eq '') { push @bad, 'empty line'; next }
        if ($line =~ /^# HELP ($NAME) ((?:[^\\\n]|\\[\\n])*)$/) {
            $enter->($1);
            push @bad, "$1: second HELP" if $help{$1}++;
            push @bad, "$1: HELP after its samples" if grep { $family_of->($_) eq $1 } map { /^($NAME)/ } keys %samples;
            next;
        }
        if ($line =~ /^# TYPE ($NAME) (counter|gauge|histogram|summary|untyped)$/) {
            $enter->($1);
            push @bad, "$1: second TYPE" if $type{$1};
            $type{$1} = $2;
            next;
        }
        if ($line =~ /^#/) { push @bad, "not a HELP or TYPE line: $line"; next }
        my ($name, $labels, $value) = $line =~
            /^($NAME)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*,?)?\})? ($VALUE)(?: -?[0-9]+)?$/
            or do { push @bad, "not a sample: $line"; next };
        $labels //= '';
        my $family = $family_of->($name);
        $enter->($family);
        my $t = $type{$family} or do { push @bad, "$name: no TYPE before it"; next };
        push @bad, "$name: no HELP" unless $help{$family};
        my %label;
        while ($labels =~ /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g) {
            push @bad, "$name$labels: label $1 twice" if exists $label{$1};
            push @bad, "$name$labels: reserved label name $1" if $1 =~ /^__/;
            $label{$1} = $2;
        }
        push @bad, "$name$labels: twice" if exists $samples{"$name$labels"};
        $samples{"$name$labels"} = $value;
        if ($t eq 'counter') {
            push @bad, "$name: a counter's name ends in _total" unless $name =~ /_total\z/;
            push @bad, "$name$labels: negative counter" if $value =~ /^-/;
        } elsif ($t eq 'gauge') {
            push @bad, "$name: a gauge's sample must be named $family" if $name ne $family;
        } elsif ($t eq 'histogram') {
            if ($name eq "${family}_bucket") {
                defined $label{le} or push @bad, "$name$labels: no le";
                push @{ $buckets{$family} }, [$label{le} // '', $value];
            } elsif ($name ne "${family}_sum" && $name ne "${family}_count") {
                push @bad, "$name: not a histogram sample";
            }
        }
    }
    for my $family (sort keys %buckets) {
        my @b = @{ $buckets{$family} };
        push @bad, "$family: last bucket is not le=\"+Inf\"" unless $b[-1][0] eq '+Inf';
        for my $i (1 .. $#b) {
            my ($le0, $le1) = map { $_ eq '+Inf' ? 9**9**9 : $_ } $b[$i - 1][0], $b[$i][0];
            push @bad, "$family: le not rising at $b[$i][0]" unless $le1 > $le0;
            push @bad, "$family: bucket counts fall at $b[$i][0]" if $b[$i][1] < $b[$i - 1][1];
        }
        push @bad, "$family: +Inf bucket is not _count"
            unless ($samples{"${family}_count"} // -1) == $b[-1][1];
    }
    for my $family (sort keys %type) {
        push @bad, "$family: TYPE without HELP" unless $help{$family};
    }
    return (\%samples, \@bad);
}

# The parser's own test: it must refuse what it is there to catch.
{
    my $good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n";
    is_deeply((prom_parse($good))[1], [], 'parser: escaped label value accepted');
    my %broken = (
        'no newline at the end' => "# HELP g G.\n# TYPE g gauge\ng 1",
        'no TYPE'               => "# HELP g G.\ng 1\n",
        'bad escape'            => "# HELP g G.\n# TYPE g gauge\ng{a=\"\\x\"} 1\n",
        'split family'          => "# HELP g G.\n# TYPE g gauge\ng 1\n# HELP h H.\n# TYPE h gauge\nh 1\ng{a=\"b\"} 1\n",
        'counter not _total'    => "# HELP c C.\n# TYPE c counter\nc 1\n",
        'bad value'             => "# HELP g G.\n# TYPE g gauge\ng 1,5\n",
        'empty line'            => "# HELP g G.\n# TYPE g gauge\n\ng 1\n",
        'falling buckets'       => "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    );
    for my $what (sort keys %broken) {
        ok scalar(@{ (prom_parse($broken{$what}))[1] }), "parser: refuses $what";
    }
}

# Counters of a later scrape are not below those of an earlier one.
sub counters_not_lower {
    my ($before, $after, $what) = @_;
    my @fell = grep { /_total(?:\{|$)/ && defined $after->{$_} && $after->{$_} < $before->{$_} } keys %$before;
    my @gone = grep { /_total(?:\{|$)/ && !defined $after->{$_} } keys %$before;
    is_deeply [sort @fell, @gone], [], "$what: no counter fell or vanished between scrapes";
}

# --- conf.example/nginx.conf in front of a real apikeyd ------------------------------------

my $t = ApiKeyTest->new(nginx => 0, usage => 1);
my ($api_port, $backend_port) = ApiKeyTest::free_ports(2);
my $prefix = $t->dir . '/example';
mkdir $prefix, 0755;
mkdir "$prefix/$_", 0755 for qw(logs tmp);
my %change = (
    'load_module ../build/ngx_http_apikey_module.so;' => "load_module $ApiKeyTest::MODULE;",
    'apikey_snapshot snapshot;'                       => 'apikey_snapshot ' . $t->snapshot_path . ';',
    'apikey_usage_report 127.0.0.1:8089'              => "apikey_usage_report 127.0.0.1:$t->{usage_port}",
    'listen 127.0.0.1:8080;'                          => "listen 127.0.0.1:$api_port;",
    'listen 127.0.0.1:8081;'                          => "listen 127.0.0.1:$backend_port;",
    'server 127.0.0.1:8081;'                          => "server 127.0.0.1:$backend_port;",
);
my $conf = $example_nginx;
for my $from (sort keys %change) {
    my $n = () = $conf =~ /\Q$from\E/g;
    is $n, 1, "conf.example/nginx.conf has \"$from\" once (the test adjusts it)";
    $conf =~ s/\Q$from\E/$change{$from}/;
}
unlike $conf, qr/\b80(?:80|81|88|89)\b/, 'no fixed port left in the adjusted copy';
{
    open my $fh, '>', "$prefix/nginx.conf" or die $!;
    print {$fh} $conf;
    close $fh;
}
my @nginx = ($ApiKeyTest::NGINX, '-p', "$prefix/", '-c', "$prefix/nginx.conf");
{
    local %ENV = (%ENV, %ApiKeyTest::NGINX_ENV);
    my $out = `@nginx -t 2>&1`;
    is $?, 0, 'conf.example/nginx.conf passes nginx -t' or diag $out;
}
my $nginx_pid = $t->_spawn("$prefix/logs/stderr.log", \%ApiKeyTest::NGINX_ENV, @nginx, '-g', 'daemon off;');
ok $t->wait_until(sub { ApiKeyTest::port_open($api_port) }, 10), 'nginx with conf.example/nginx.conf is up';

sub example {
    my ($method, $path, @headers) = @_;
    return ApiKeyTest::http_request($api_port, ApiKeyTest::_build_request($method, $path, \@headers));
}

my $ws  = $t->create_workspace('acme-corp', 'sales');
my $key = $t->create_key($ws->{id}, name => 'ops', permission => 'read_write');
my $API = '/api/v1/acme-corp/sales/Customer';
my $status_before;
ok $t->wait_until(sub { (example(GET => $API, Authorization => "Bearer $key->{key}")->{status} // 0) == 200 }, 5),
    'a key created through apikeyd is admitted by conf.example';
{
    my ($s, $bad) = prom_parse(example(GET => '/apikey-status')->{body});
    is_deeply $bad, [], 'apikey_status: strict Prometheus text' or diag join "\n", @$bad;
    $status_before = $s;
}
my $r = example(GET => $API, Authorization => "Bearer $key->{key}");
is $r->{status}, 200, 'GET with the key: 200';
is $r->{json}{key_id}, $key->{id}, '  the upstream learns the key id (X-Api-Key-Id)';
is $r->{json}{key_prefix}, $key->{key_prefix}, '  and its prefix';
$r = example(GET => $API);
is $r->{status}, 401, 'no key: 401';
is $r->{json}{error}{code}, 'missing_credentials', '  missing_credentials';
is $r->{headers}{'www-authenticate'}, 'Bearer', '  WWW-Authenticate: Bearer';
$r = example(GET => "$API?api_key=$key->{key}");
is $r->{status}, 401, 'a key in the URL is no credential: 401';
$r = example(GET => "/nothing-here?api_key=$key->{key}");
is $r->{status}, 404, 'a path conf.example does not route: 404';
$r = example(GET => "/nothing/here/either.html?api_key=$key->{key}");
is $r->{status}, 404, '  and another';

my $status = example(GET => '/apikey-status');
is $status->{status}, 200, 'apikey_status answers';
like $status->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, '  as Prometheus text 0.0.4';
my ($after, $bad) = prom_parse($status->{body});
is_deeply $bad, [], '  strictly in the format' or diag join "\n", @$bad;
is $after->{'apikey_requests_total{code="ok",status="200"}'}
    - $status_before->{'apikey_requests_total{code="ok",status="200"}'}, 1, '  one more ok';
is $after->{'apikey_requests_total{code="missing_credentials",status="401"}'}
    - $status_before->{'apikey_requests_total{code="missing_credentials",status="401"}'}, 2,
    '  two more missing_credentials';
counters_not_lower($status_before, $after, 'apikey_status');
is $after->{apikey_snapshot_up}, 1, '  apikey_snapshot_up 1';
ok defined $after->{apikey_snapshot_generation} && defined $after->{apikey_snapshot_age_seconds},
    '  the snapshot generation and age';

# Usage reports, conf.example's interval=1s, reach apikeyd's usage_listen.
ok $t->wait_until(sub {
    defined $t->admin(GET => "/api/v1/workspaces/$ws->{id}/api-keys/$key->{id}")->{json}{last_used_at}
}, 6), 'last_used_at is set through conf.example\'s apikey_usage_report';

ApiKeyTest::_terminate($nginx_pid, 'QUIT', 10);
my $access = do { local $/; open my $fh, '<', "$prefix/logs/access.log" or die $!; <$fh> };
my $errors = do { local $/; open my $fh, '<', "$prefix/logs/error.log" or die $!; <$fh> };
like $access, qr/apikey=ok key=\Q$key->{key_prefix}\E id=\Q$key->{id}\E/, 'access log: the decision, prefix and id';
like $access, qr/\?api_key=\Q$key->{key_prefix}\E\.\.\. HTTP/, '  a key in the URL cut to its prefix';
is index($access, $key->{key}), -1, '  never the key';
is index($errors, $key->{key}), -1, 'error log: never the key, also for paths conf.example does not route';
unlike $errors, qr/\[(?:alert|crit|emerg)\]/, '  no alert';

# --- apikeyd: /metrics, /healthz, its log -----------------------------------------------

my $m1 = $t->admin(GET => '/metrics');
$t->admin(GET => '/healthz', undef, no_token => 1) for 1 .. 2;
$t->admin(GET => '/api/v1/workspaces');
my $m2 = $t->admin(GET => '/metrics');
like $m2->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'apikeyd /metrics: Prometheus text 0.0.4';
my ($d1, $bad1) = prom_parse($m1->{body});
my ($d2, $bad2) = prom_parse($m2->{body});
is_deeply [@$bad1, @$bad2], [], '  strictly in the format' or diag join "\n", @$bad1, @$bad2;
counters_not_lower($d1, $d2, 'apikeyd /metrics');
is $d2->{'apikeyd_http_requests_total{route="/healthz",status="200"}'}
    - ($d1->{'apikeyd_http_requests_total{route="/healthz",status="200"}'} // 0), 2, '  /healthz counted';
ok defined $d2->{apikeyd_usage_datagrams_total} && $d2->{apikeyd_usage_datagrams_total} > 0,
    '  usage datagrams from conf.example\'s nginx counted';
my $h = $t->admin(GET => '/healthz', undef, no_token => 1);
is_deeply [$h->{status}, $h->{json}{status}], [200, 'ok'], '/healthz: 200 ok';

my @log = split /\n/, $t->daemon_log;
my @odd = grep { !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (?:info|warn|error) \S/ } @log;
is_deeply \@odd, [], "apikeyd's log: every line is \"<UTC time> <level> <message>\"";
ok scalar(grep { /\baccess .* method=GET path=\/healthz status=200 / } @log), '  a probe is logged as path=/healthz';
ok scalar(grep { /\baccess .* method=GET path=\/metrics status=200 / } @log), '  a scrape as path=/metrics';

# --- README "Upgrading": a reload keeps the module loaded; a binary upgrade loads the new -----

# These nginx run as daemons, outside the harness: stopped here whatever happens.
my @upgrade_masters;
END { kill 'QUIT', @upgrade_masters if @upgrade_masters }

{
    my $u = $t->dir . '/upgrade';
    mkdir $u, 0755;
    mkdir "$u/logs", 0755;
    system('cp', $ApiKeyTest::MODULE, "$u/module.so") == 0 or die "cp: $?";
    my ($port) = ApiKeyTest::free_ports(1);
    open my $fh, '>', "$u/nginx.conf" or die $!;
    # what the harness adds to nginx's environment (the sanitizer build's runtime):
    # nginx passes a new master (USR2) only the variables "env" names
    print {$fh} join('', map { "env $_;\n" } sort keys %ApiKeyTest::NGINX_ENV),
        "load_module $u/module.so;\nworker_processes 1;\nerror_log logs/error.log notice;\n"
        . "pid logs/nginx.pid;\nevents { worker_connections 64; }\n"
        . "http { server { listen 127.0.0.1:$port; location / { return 204; } } }\n";
    close $fh;
    my @cmd = ($ApiKeyTest::NGINX, '-p', "$u/", '-c', "$u/nginx.conf");
    local %ENV = (%ENV, %ApiKeyTest::NGINX_ENV);
    system(@cmd) == 0 or die "nginx: $?";
    my $pid_of = sub { open my $p, '<', "$u/logs/nginx.pid" or return 0; my $v = <$p>; chomp $v; $v };
    my $master = $pid_of->();
    push @upgrade_masters, $master;
    # the module's mappings in a process: "" when it has none, else whether they are deleted
    my $maps = sub {
        my ($pid) = @_;
        open my $m, '<', "/proc/$pid/maps" or return '';
        my @l = grep { m{\Q$u\E/module\.so} } <$m>;
        return !@l ? '' : (grep { /\(deleted\)$/ } @l) ? 'old' : 'current';
    };
    my $worker = sub {
        my ($parent) = @_;
        my @w = grep { ((ApiKeyTest::_slurp("/proc/$_/stat") =~ /^\d+ \(.*?\) \S (\d+)/)[0] // 0) == $parent }
            map { m{/proc/(\d+)} } glob '/proc/[0-9]*';
        return $w[0];
    };
    ok $t->wait_until(sub { $worker->($master) }, 5), 'upgrade: nginx with a copy of the module runs';
    # a new file under the old name, as README says to install one
    system('cp', "$u/module.so", "$u/module.so.new") == 0 && rename("$u/module.so.new", "$u/module.so") or die $!;
    my $old_worker = $worker->($master);
    system(@cmd, '-s', 'reload') == 0 or die "reload: $?";
    my $new_worker;
    ok $t->wait_until(sub { $new_worker = $worker->($master); $new_worker && $new_worker != $old_worker }, 10),
        '  a reload starts a new worker';
    is $maps->($new_worker), 'old', '  which runs the module file that was replaced (a reload does not load the new one)';
    kill 'USR2', $master;
    my $new_master;
    ok $t->wait_until(sub { $new_master = $pid_of->(); $new_master && $new_master != $master && $worker->($new_master) }, 10),
        '  a binary upgrade (USR2) starts a new master';
    push @upgrade_masters, $new_master if $new_master;
    is $maps->($worker->($new_master)), 'current', '  whose worker runs the new file';
    kill 'QUIT', $master, $new_master;
    $t->wait_until(sub { !kill 0, $master, $new_master }, 10);
}

# --- snapshot_group that apikeyd's user is not in -----------------------------------------
# README: apikeyd must be a member. It says so at start, by name (exit 2), instead of
# ending the start in "chown ...: Operation not permitted" from its first publish.
SKIP: {
    my @nobody = getpwnam('nobody');
    my @group = getgrnam('www-data');
    skip 'needs root, runuser, user nobody and a group www-data nobody is not in', 4
        unless $> == 0 && -x '/usr/sbin/runuser' && @nobody && @group && $nobody[3] != $group[2]
            && !grep { $_ eq 'nobody' } split ' ', $group[3];
    my $d = $t->dir . '/not-a-member';
    mkdir $d, 0755;
    chown $nobody[2], $nobody[3], $d;
    my ($port) = ApiKeyTest::free_ports(1);
    open my $fh, '>', "$d/apikeyd.yaml" or die $!;
    print {$fh} "listen: 127.0.0.1:$port\ndata_dir: $d/data\nsnapshot_path: $d/snapshot\n"
        . "snapshot_group: www-data\nadmin_tokens: [{name: a, token_sha256: " . ('ab' x 32) . "}]\n";
    close $fh;
    chmod 0644, "$d/apikeyd.yaml";
    my $out = `timeout 10 /usr/sbin/runuser -u nobody -- '$ApiKeyTest::DAEMON' --config '$d/apikeyd.yaml' 2>&1`;
    is $? >> 8, 2, 'apikeyd as a user outside snapshot_group: exit 2 (a configuration error)';
    like $out, qr/snapshot_group: apikeyd runs as uid $nobody[2], which is not a member of group "www-data"/,
        '  naming snapshot_group and the group' or diag $out;
    ok !-e "$d/snapshot" && !-e "$d/data", '  before it creates anything';
    $out = `/usr/sbin/runuser -u nobody -- '$ApiKeyTest::DAEMON' --check --config '$d/apikeyd.yaml' 2>&1`;
    is $?, 0, '  --check, which may run as another user, does not look at membership' or diag $out;
}

done_testing;
