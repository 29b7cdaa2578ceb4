# The admin API under 50 concurrent clients: creates, revokes, patches and settings puts
# on several workspaces at once, two admin tokens. Afterwards nothing is lost or
# duplicated: every 201 is listed exactly once, every revoked key is revoked, every patch
# shows, and the change feed has exactly one entry per successful mutation (right type,
# object and actor), with strictly increasing, gap-free seq, and nothing extra. nginx then
# answers every key as its final state says.
use strict;
use warnings;
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use ApiKeyTest;

my $CLIENTS = 50;
my $ROUNDS  = 6;     # per client and round: 2 creates, 1 patch, 1 revoke, 1 settings put
my $WS_N    = 4;
my %TOKENS  = (ops => 'test-ops-' . join('', map { int rand 10 } 1 .. 24));

my $t = ApiKeyTest->new(workers => 2, admin_tokens => \%TOKENS, timeout => 170);
my @ws = map { $t->create_workspace('acme-corp', "ws$_") } 1 .. $WS_N;
my $start_gen = $t->admin(GET => '/healthz')->{json}{generation};
ok $start_gen, "generation before the clients: $start_gen";

# --- the clients ---------------------------------------------------------------------------

# Client $c works on workspace $c % 4 with token test-admin (even) or ops (odd). Each
# settings put sets a value nobody else sets, so every one is a change (a put of the
# current value would rightly add no feed entry): odd rounds the workspace's CORS origins,
# even rounds the defaultFields of the client's own entity.
sub client {
    my ($c, $out) = @_;
    my $w = $ws[ $c % $WS_N ]{id};
    my %tok = $c % 2 ? (token => $TOKENS{ops}) : ();
    my @log;
    my $op = sub {
        my ($what, $expect, $method, $path, $data, %info) = @_;
        my $r = $t->admin($method, $path, $data, %tok, timeout => 30);
        push @log, { %info, op => $what, status => $r->{status} // 0, expect => $expect,
                     error => $r->{error}, body => ($r->{status} // 0) == $expect ? undef : $r->{body},
                     json => $r->{json} };
        return $r;
    };
    for my $round (1 .. $ROUNDS) {
        my $a = $op->(create => 201, POST => "/api/v1/workspaces/$w/api-keys",
                      { name => "c$c-r$round-a", permission => 'read_write' });
        my $b = $op->(create => 201, POST => "/api/v1/workspaces/$w/api-keys",
                      { name => "c$c-r$round-b", permission => 'read_only' });
        my $aid = $a->{json} && $a->{json}{id};
        my $bid = $b->{json} && $b->{json}{id};
        $op->(patch => 200, PATCH => "/api/v1/workspaces/$w/api-keys/$aid",
              { name => "c$c-r$round-a-patched", rate_limit => { limit => 1000 + $c, window_seconds => $round } },
              id => $aid) if $aid;
        $op->(revoke => 200, DELETE => "/api/v1/workspaces/$w/api-keys/$bid", undef, id => $bid)
            if $bid;
        if ($round % 2) {
            $op->(ws_settings => 200, PUT => "/api/v1/workspaces/$w/settings",
                  { corsAllowedOrigins => ["https://c$c-r$round.example.com"] },
                  origin => "https://c$c-r$round.example.com");
        } else {
            $op->(entity_settings => 200, PUT => "/api/v1/workspaces/$w/entities/e$c/settings",
                  { defaultFields => "f$round" }, entity => "e$c", value => "f$round");
        }
    }
    open my $fh, '>', $out or POSIX::_exit(3);
    print {$fh} ApiKeyTest::json()->encode(\@log);
    close $fh or POSIX::_exit(3);
}

# All clients start together: each blocks on a pipe the parent closes.
pipe my $go_r, my $go_w or die "pipe: $!";
my %kids;
for my $c (0 .. $CLIENTS - 1) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        close $go_w;
        alarm 120;
        my $x = <$go_r>;   # EOF when the parent closes its end
        my $ok = eval { client($c, $t->dir . "/client-$c.json"); 1 };
        print STDERR "client $c: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    $kids{$pid} = $c;
}
close $go_r;
my $t0 = time;
close $go_w;
my $deadline = time + 150;
my %exit;
while (%kids && time < $deadline) {
    my $pid = waitpid -1, POSIX::WNOHANG();
    if ($pid > 0 && exists $kids{$pid}) { $exit{ delete $kids{$pid} } = $? >> 8; next }
    sleep 0.02;
}
kill 'KILL', keys %kids;
waitpid $_, 0 for keys %kids;
my $elapsed = time - $t0;
is scalar(keys %kids), 0, "all $CLIENTS clients finished";
is_deeply [ grep { $exit{$_} } sort { $a <=> $b } keys %exit ], [], 'every client exited 0';

# --- what the clients saw ------------------------------------------------------------------

my (@ops, %created, %revoked, %patched, %ws_puts, %ent_puts);
for my $c (0 .. $CLIENTS - 1) {
    my $raw = ApiKeyTest::_slurp($t->dir . "/client-$c.json");
    my $log = eval { ApiKeyTest::json()->decode($raw) } || [];
    my $w = $ws[ $c % $WS_N ]{id};
    my $actor = $c % 2 ? 'ops' : 'test-admin';
    for my $e (@$log) {
        push @ops, { %$e, client => $c };
        next unless $e->{status} == $e->{expect};
        if ($e->{op} eq 'create') {
            $created{ $e->{json}{id} } = { ws => $w, actor => $actor, name => $e->{json}{name},
                                           key => $e->{json}{key},
                                           permission => $e->{json}{permission} };
        } elsif ($e->{op} eq 'revoke') {
            $revoked{ $e->{id} } = $actor;
        } elsif ($e->{op} eq 'patch') {
            $patched{ $e->{id} } = { actor => $actor, name => $e->{json}{name} };
        } elsif ($e->{op} eq 'ws_settings') {
            $ws_puts{ $e->{origin} } = { ws => $w, actor => $actor };
        } else {
            push @{ $ent_puts{"$w/$e->{entity}"} }, { actor => $actor, value => $e->{value} };
        }
    }
}
my $N_OPS = $CLIENTS * $ROUNDS * 5;
is scalar(@ops), $N_OPS, "$N_OPS requests made";
my @bad = grep { $_->{status} != $_->{expect} } @ops;
is scalar(@bad), 0, 'every request answered with its success status'
    or diag explain [ @bad[0 .. ($#bad < 4 ? $#bad : 4)] ];
my $mutations = keys(%created) + keys(%revoked) + keys(%patched) + keys(%ws_puts)
    + (map { @$_ } values %ent_puts);
diag sprintf '%d clients, %d admin requests in %.2f s (%.0f/s)', $CLIENTS, scalar @ops,
    $elapsed, @ops / ($elapsed || 1);

# --- nothing lost, nothing duplicated --------------------------------------------------------

subtest 'key lists: every 201 exactly once, revokes and patches applied' => sub {
    my (%listed, @dups);
    for my $w (@ws) {
        my $r = $t->admin(GET => "/api/v1/workspaces/$w->{id}/api-keys");
        is $r->{status}, 200, "list $w->{slug}";
        for my $k (@{ ref $r->{json} eq 'ARRAY' ? $r->{json} : [] }) {
            push @dups, $k->{id} if $listed{ $k->{id} };
            $listed{ $k->{id} } = { %$k, ws => $w->{id} };
        }
    }
    is_deeply \@dups, [], 'no key listed twice';
    is_deeply [ sort keys %listed ], [ sort keys %created ],
        'the listed keys are exactly the created ones (' . scalar(keys %created) . ')';
    my (@wrong);
    for my $id (sort keys %created) {
        my $l = $listed{$id} or next;
        my $want_status = $revoked{$id} ? 'revoked' : 'active';
        my $want_name = $patched{$id} ? $patched{$id}{name} : $created{$id}{name};
        push @wrong, "$id: status $l->{status} (want $want_status)" if $l->{status} ne $want_status;
        push @wrong, "$id: name $l->{name} (want $want_name)" if $l->{name} ne $want_name;
        push @wrong, "$id: in $l->{ws}, created in $created{$id}{ws}" if $l->{ws} ne $created{$id}{ws};
        push @wrong, "$id: no rate_limit after the patch"
            if $patched{$id} && !(ref $l->{rate_limit} eq 'HASH' && $l->{rate_limit}{limit});
    }
    is_deeply \@wrong, [], 'every key in its workspace with the status and name it should have';
};

subtest 'settings: the last put of each entity and workspace shows' => sub {
    for my $key (sort keys %ent_puts) {
        my ($w, $entity) = split m{/}, $key;
        my $r = $t->admin(GET => "/api/v1/workspaces/$w/entities/$entity/settings");
        is $r->{json}{defaultFields}, $ent_puts{$key}[-1]{value}, "$entity: last value"
            or last;
    }
    for my $w (@ws) {
        my $r = $t->admin(GET => "/api/v1/workspaces/$w->{id}/settings");
        my $o = $r->{json}{corsAllowedOrigins};
        ok ref $o eq 'ARRAY' && @$o == 1 && $ws_puts{ $o->[0] } && $ws_puts{ $o->[0] }{ws} eq $w->{id},
            "$w->{slug}: CORS origins set by one of its puts";
    }
};

# --- the change feed ------------------------------------------------------------------------

my @global = $t->feed(undef, after => $start_gen);
subtest 'global feed: one entry per successful mutation, gap-free seq, nothing extra' => sub {
    is scalar(@global), $mutations, "$mutations entries for $mutations mutations";
    my @seq = map { $_->{seq} } @global;
    is_deeply \@seq, [ $start_gen + 1 .. $start_gen + $mutations ], 'seq strictly increasing, no gap';
    is $t->admin(GET => '/healthz')->{json}{generation}, $start_gen + $mutations,
        'store generation = last seq';

    my (%seen, @extra, @wrong);
    for my $e (@global) {
        my $o = $e->{object} // {};
        my $id;
        if ($e->{type} eq 'api_key.created') {
            $id = "created $o->{id}";
            my $c = $created{ $o->{id} };
            push @extra, $id and next unless $c;
            push @wrong, "$id: actor $e->{actor}" if $e->{actor} ne $c->{actor};
            push @wrong, "$id: workspace" if $e->{workspace_id} ne $c->{ws};
            push @wrong, "$id: raw key in the feed" if grep { defined $_ && $_ eq $c->{key} } values %$o;
        } elsif ($e->{type} eq 'api_key.revoked') {
            $id = "revoked $o->{id}";
            push @extra, $id and next unless $revoked{ $o->{id} };
            push @wrong, "$id: actor" if $e->{actor} ne $revoked{ $o->{id} };
            push @wrong, "$id: status $o->{status}" if $o->{status} ne 'revoked';
        } elsif ($e->{type} eq 'api_key.updated') {
            $id = "updated $o->{id}";
            push @extra, $id and next unless $patched{ $o->{id} };
            push @wrong, "$id: actor" if $e->{actor} ne $patched{ $o->{id} }{actor};
            push @wrong, "$id: name $o->{name}" if $o->{name} ne $patched{ $o->{id} }{name};
        } elsif ($e->{type} eq 'workspace.settings_updated') {
            my $origin = (ref $o->{corsAllowedOrigins} eq 'ARRAY' ? $o->{corsAllowedOrigins}[0] : '') // '';
            $id = "ws_settings $origin";
            my $p = $ws_puts{$origin};
            push @extra, $id and next unless $p;
            push @wrong, "$id: actor" if $e->{actor} ne $p->{actor};
            push @wrong, "$id: workspace" if $e->{workspace_id} ne $p->{ws};
        } elsif ($e->{type} eq 'entity.settings_updated') {
            $id = "entity $e->{workspace_id}/$e->{entity} " . ($o->{defaultFields} // 'null');
            push @extra, $id and next
                unless grep { $_->{value} eq ($o->{defaultFields} // '') }
                    @{ $ent_puts{"$e->{workspace_id}/$e->{entity}"} // [] };
        } else {
            $id = "$e->{type} ?";
            push @extra, $id;
            next;
        }
        push @wrong, "$id: twice" if $seen{$id}++;
    }
    is_deeply \@extra, [], 'no entry without a successful request';
    is_deeply \@wrong, [], 'every entry with the right actor, workspace and object, none twice';

    my @missing;
    push @missing, grep { !$seen{"created $_"} } keys %created;
    push @missing, grep { !$seen{"revoked $_"} } keys %revoked;
    push @missing, grep { !$seen{"updated $_"} } keys %patched;
    push @missing, grep { !$seen{"ws_settings $_"} } keys %ws_puts;
    for my $key (keys %ent_puts) {
        my ($w, $entity) = split m{/}, $key;
        push @missing, grep { !$seen{"entity $w/$entity $_"} } map { $_->{value} } @{ $ent_puts{$key} };
    }
    is_deeply \@missing, [], 'every successful mutation has its entry';

    # per entity, the entries are in the order the client made its puts
    my %order;
    push @{ $order{"$_->{workspace_id}/$_->{entity}"} }, $_->{object}{defaultFields}
        for grep { $_->{type} eq 'entity.settings_updated' } @global;
    my @disorder = grep { join(',', @{ $order{$_} // [] }) ne join(',', map { $_->{value} } @{ $ent_puts{$_} }) }
        sort keys %ent_puts;
    is_deeply \@disorder, [], "each entity's entries in the order of its puts";
};

subtest 'workspace feeds: the global feed split by workspace' => sub {
    for my $w (@ws) {
        my @f = $t->feed($w->{id}, after => $start_gen);
        is_deeply [ map { $_->{seq} } @f ], [ map { $_->{seq} } grep { $_->{workspace_id} eq $w->{id} } @global ],
            "$w->{slug}: same entries as the global feed, same order";
    }
};

# --- and nginx agrees -----------------------------------------------------------------------

subtest 'nginx answers every key as its final state says' => sub {
    my $h = $t->admin(GET => '/healthz')->{json};
    ok $t->wait_until(sub { $t->admin(GET => '/healthz')->{json}{published_generation} == $start_gen + $mutations }, 5),
        'everything published';
    my %slug = map { $_->{id} => $_->{slug} } @ws;
    my @wrong;
    for my $id (sort keys %created) {
        my $c = $created{$id};
        my $r = $t->api(GET => "/api/v1/acme-corp/$slug{ $c->{ws} }/orders", key => $c->{key});
        my $want = $revoked{$id} ? 401 : 200;
        push @wrong, "$id: $r->{status} (want $want)" if ($r->{status} // 0) != $want;
    }
    is_deeply \@wrong, [], scalar(keys %created) . ' keys: revoked ones 401, the others 200';
};

done_testing;
