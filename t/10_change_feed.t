# The change feed beyond the basics of 08: entry shape per type (the object equals what
# GET shows, never a secret), actors per admin token, only real changes recorded,
# isolation between workspaces, the global feed and deleted workspaces, seq = store
# generation, paging edges, concurrent writers, and a SIGKILLed apikeyd.
use strict;
use warnings;
use Test::More;
use Digest::SHA qw(sha256_hex);
use POSIX ();
use ApiKeyTest;

my $BOT_TOKEN = 'bot-token-' . join('', map { int rand 10 } 1 .. 20);
my $t = ApiKeyTest->new(nginx => 0, admin_tokens => { 'ci-bot' => $BOT_TOKEN });
my $ws    = $t->create_workspace('acme-corp', 'sales');
my $other = $t->create_workspace('acme-corp', 'inventory');
my $W = "/api/v1/workspaces/$ws->{id}";
my @raw_keys;

sub types { [ map { $_->{type} } @_ ] }
sub generation { $t->admin(GET => '/healthz')->{json}{generation} }

# --- each type of entry -----------------------------------------------------------------

my $key = $t->create_key($ws->{id}, name => 'shape', permission => 'read_write');
push @raw_keys, $key->{key};
$t->put_workspace_settings($ws->{id},
    { maxExpandDepth => 4, corsAllowedOrigins => ['https://app.example.com'] });
$t->put_entity_settings($ws->{id}, 'Customer',
    { publicAccess => 'READ_ONLY', filterableFields => ['name', 'email'],
      columns => { ssn => { apiVisible => JSON::PP::false } } });
$t->revoke_key($ws->{id}, $key->{id});

my @feed = $t->feed($ws->{id});
is_deeply types(@feed), [ 'workspace.created', 'api_key.created', 'workspace.settings_updated',
                          'entity.settings_updated', 'api_key.revoked' ], 'one entry per mutation';
for my $e (@feed) {
    is $e->{workspace_id}, $ws->{id}, "$e->{type}: workspace_id";
    like $e->{seq}, qr/^\d+$/, "$e->{type}: integer seq";
    ok defined ApiKeyTest::parse_iso8601($e->{time}), "$e->{type}: ISO 8601 time";
    ok abs(ApiKeyTest::parse_iso8601($e->{time}) - time) < 120, "$e->{type}: time is now";
}
my %by = map { $_->{type} => $_ } @feed;

is_deeply $by{'workspace.created'}{object}, $ws,
    'workspace.created: the workspace as the create answered it';
my $created = $by{'api_key.created'}{object};
is $created->{id}, $key->{id}, 'api_key.created: the key object';
is $created->{key_prefix}, $key->{key_prefix}, '  with its prefix';
is $created->{status}, 'active', '  active at the time';
ok !exists $created->{key}, '  and no "key" field';
ok !(grep { /hash|secret/i } keys %$created), '  nor any hash field';
is_deeply $by{'workspace.settings_updated'}{object}, $t->admin(GET => "$W/settings")->{json},
    'workspace.settings_updated: the settings as GET shows them (effective included)';
is $by{'entity.settings_updated'}{entity}, 'Customer', 'entity.settings_updated names the entity';
is_deeply $by{'entity.settings_updated'}{object},
    $t->admin(GET => "$W/entities/Customer/settings")->{json},
    '  and carries the settings as GET shows them';
ok !exists $by{'workspace.settings_updated'}{entity}, 'workspace entries have no entity';
is_deeply $by{'api_key.revoked'}{object}, $t->admin(GET => "$W/api-keys/$key->{id}")->{json},
    'api_key.revoked: the key as GET shows it after the revoke';

# --- the actor is the name of the admin token used ---------------------------------------

my $r = $t->admin(PUT => "$W/entities/Invoice/settings", { publicAccess => 'READ_WRITE' },
                  token => $BOT_TOKEN);
is $r->{status}, 200, 'a second admin token works';
my $bot_key = $t->admin(POST => "$W/api-keys", { name => 'made by bot' }, token => $BOT_TOKEN)->{json};
push @raw_keys, $bot_key->{key};
my @tail = $t->feed($ws->{id}, after => $feed[-1]{seq});
is_deeply [ map { $_->{actor} } @tail ], [ 'ci-bot', 'ci-bot' ], 'actor is that token\'s name';
is $tail[1]{object}{created_by}, 'ci-bot', '  and the key records it as created_by';
is generation(), $tail[-1]{seq}, 'seq is the store generation of the mutation';

# A key update (rate_limit) is a mutation too.
$r = $t->admin(PATCH => "$W/api-keys/$bot_key->{id}", { rate_limit => { limit => 5, window_seconds => 60 } });
is $r->{status}, 200, 'PATCH a key';
my @upd = $t->feed($ws->{id}, after => $tail[-1]{seq});
is_deeply types(@upd), ['api_key.updated'], 'api_key.updated entry';
is_deeply $upd[0]{object}{rate_limit}, { limit => 5, window_seconds => 60 }, '  with the object after';
ok !exists $upd[0]{object}{key}, '  and no key';
push @tail, @upd;

# --- only real changes ------------------------------------------------------------------

my $before = $tail[-1]{seq};
my $gen = generation();
$t->put_entity_settings($ws->{id}, 'Invoice', { publicAccess => 'READ_WRITE' });
$t->put_workspace_settings($ws->{id},
    { maxExpandDepth => 4, corsAllowedOrigins => ['https://APP.example.com:443'] });
is $t->admin(DELETE => "$W/api-keys/$key->{id}")->{status}, 200, 'second revoke answers 200';
is $t->admin(PUT => "$W/settings", { maxExpandDepth => 99 })->{status}, 400, 'a refused PUT';
is $t->admin(POST => "$W/api-keys", { name => 'x', permission => 'admin' })->{status}, 400,
    'a refused key create';
is $t->admin(PUT => "$W/entities/Invoice/settings", { publicAccess => 'READ_WRITE' },
             token => 'wrong')->{status}, 401, 'a PUT with a bad admin token';
is_deeply [ $t->feed($ws->{id}, after => $before) ], [],
    'no entry for same settings (also equal after normalisation), second revoke, refusals';
is generation(), $gen, 'and no new generation';

# PUT replaces: clearing a field is a change.
$t->put_workspace_settings($ws->{id}, { maxExpandDepth => 4 });
my @clear = $t->feed($ws->{id}, after => $before);
is_deeply types(@clear), ['workspace.settings_updated'], 'dropping a field is a change';
is $clear[0]{object}{corsAllowedOrigins}, undef, '  the object shows it unset';

# --- workspaces are isolated; the global feed has everything ------------------------------

my $ik = $t->create_key($other->{id}, name => 'other');
push @raw_keys, $ik->{key};
ok !(grep { $_->{workspace_id} ne $ws->{id} } $t->feed($ws->{id})),
    "a workspace's feed holds only its own entries";
my @other_feed = $t->feed($other->{id});
is_deeply types(@other_feed), [ 'workspace.created', 'api_key.created' ], "the other's feed";
my @global = $t->feed(undef);
my @gseq = map { $_->{seq} } @global;
ok !(grep { $gseq[$_] <= $gseq[$_ - 1] } 1 .. $#gseq), 'global feed: strictly increasing seq';
is scalar(@global), scalar($t->feed($ws->{id})) + scalar(@other_feed),
    'global feed = both workspaces, nothing else';

# --- paging edges ---------------------------------------------------------------------------

my $last = $global[-1]{seq};
$r = $t->admin(GET => "/api/v1/changes?after=$last");
is_deeply $r->{json}{changes}, [], 'after the last seq: empty page';
is $r->{json}{next_after}, $last, '  next_after stays at after';
$r = $t->admin(GET => '/api/v1/changes?after=999999999');
is $r->{json}{next_after}, 999999999, 'after far ahead: empty, next_after unchanged';
$r = $t->admin(GET => "$W/changes?limit=1");
is scalar @{ $r->{json}{changes} }, 1, 'limit=1: one entry';
is $r->{json}{next_after}, $r->{json}{changes}[0]{seq}, '  next_after is its seq';
$r = $t->admin(GET => "$W/changes?after=$global[0]{seq}&limit=1");
is $r->{json}{changes}[0]{seq}, (grep { $_->{workspace_id} eq $ws->{id} && $_->{seq} > $global[0]{seq} }
    @global)[0]{seq}, 'after is exclusive';
for my $q ('after=1&after=2', 'limit=1001', 'limit=', 'after=1.5', 'limit=-1') {
    $r = $t->admin(GET => "$W/changes?$q");
    is $r->{status}, 400, "bad query '$q': 400";
    is $r->{json}{error}{code}, 'invalid_field', '  invalid_field';
}
$r = $t->admin(GET => "$W/changes?since=1");
is $r->{json}{error}{code}, 'unknown_field', 'unknown parameter: unknown_field';
is $t->admin(GET => "$W/changes", undef, no_token => 1)->{status}, 401, 'feed needs the admin token';
is $t->admin(GET => '/api/v1/changes', undef, no_token => 1)->{status}, 401, '  global feed too';
is $t->admin(POST => "$W/changes", {})->{status}, 405, 'feed is read-only (405)';
is $t->admin(GET => '/api/v1/workspaces/00000000-0000-4000-8000-000000000000/changes')->{status},
    404, 'feed of an unknown workspace: 404';

# Default page size 100.
my $bulk = $t->create_workspace('acme-corp', 'bulk');
for my $i (1 .. 104) {
    my $k = $t->create_key($bulk->{id}, name => "bulk $i");
    push @raw_keys, $k->{key};
}
$r = $t->admin(GET => "/api/v1/workspaces/$bulk->{id}/changes");
is scalar @{ $r->{json}{changes} }, 100, 'default limit: 100 entries';
is scalar($t->feed($bulk->{id}, limit => 7)), 105, 'paging by 7 returns all 105';

# --- concurrent writers ---------------------------------------------------------------------

my $conc = $t->create_workspace('acme-corp', 'concurrent');
my (@kids, %ids);
my $dir = $t->dir;
for my $c (1 .. 4) {
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open my $out, '>', "$dir/conc.$c" or POSIX::_exit(1);
        for my $i (1 .. 10) {
            my $res = $t->admin(POST => "/api/v1/workspaces/$conc->{id}/api-keys",
                                { name => "c$c-$i" });
            print {$out} (($res->{status} // 0) == 201 ? "$res->{json}{id} $res->{json}{key}\n"
                                                       : "ERR $res->{status}\n");
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid $_, 0 for @kids;
for my $c (1 .. 4) {
    open my $in, '<', "$dir/conc.$c" or die;
    while (<$in>) {
        my ($id, $raw) = split;
        $ids{$id} = 1;
        push @raw_keys, $raw if defined $raw;
    }
}
is scalar(grep { $_ ne 'ERR' } keys %ids), 40, '4 clients x 10 concurrent creates all succeeded';
my @cf = grep { $_->{type} eq 'api_key.created' } $t->feed($conc->{id});
is scalar @cf, 40, 'the feed has exactly 40 api_key.created entries';
is_deeply { map { $_->{object}{id} => 1 } @cf }, \%ids, '  one per created key, none twice';
my @cseq = map { $_->{seq} } @cf;
ok !(grep { $cseq[$_] <= $cseq[$_ - 1] } 1 .. $#cseq), '  with strictly increasing seq';

# --- no secrets anywhere in the feed ----------------------------------------------------------

my ($everything, $after) = ('', 0);
for (1 .. 100) {    # raw page bodies, not decoded JSON: a secret in any form would show
    my $page = $t->admin(GET => "/api/v1/changes?after=$after&limit=50");
    last unless @{ $page->{json}{changes} // [] };
    $everything .= $page->{body};
    $after = $page->{json}{next_after};
}
ok length $everything > 1000, 'global feed read (' . length($everything) . ' bytes)';
my @leaks = grep { index($everything, $_) >= 0 } @raw_keys;
is scalar @leaks, 0, 'none of the ' . scalar(@raw_keys) . ' raw keys appears';
my @hash_leaks = grep { index($everything, sha256_hex($_)) >= 0 } @raw_keys;
is scalar @hash_leaks, 0, 'nor their SHA-256';
unlike $everything, qr/\Q$BOT_TOKEN\E|\Q@{[ $t->admin_token ]}\E/, 'nor an admin token';
unlike $everything, qr/\Q@{[ sha256_hex($BOT_TOKEN) ]}\E/, "nor an admin token's hash";

# --- deleted workspace ------------------------------------------------------------------------

my @before_delete = $t->feed($other->{id});
is $t->admin(DELETE => "/api/v1/workspaces/$other->{id}")->{status}, 200, 'delete a workspace';
is $t->admin(GET => "/api/v1/workspaces/$other->{id}/changes")->{status}, 404,
    "a deleted workspace's feed is 404";
my @gone = grep { $_->{workspace_id} eq $other->{id} } $t->feed(undef);
is_deeply types(@gone), [ types(@before_delete)->@*, 'workspace.deleted' ],
    'the global feed keeps its entries and adds workspace.deleted (no entry per revoked key)';
is $gone[-1]{object}{id}, $other->{id}, '  workspace.deleted carries the workspace';

# --- a SIGKILLed apikeyd loses nothing it answered ----------------------------------------------

my @all = $t->feed(undef);
$t->put_entity_settings($ws->{id}, 'Crash', { publicAccess => 'READ_ONLY' });
my $crash_key = $t->create_key($ws->{id}, name => 'just before the crash');
push @raw_keys, $crash_key->{key};
$t->stop_daemon(signal => 'KILL');
$t->start_daemon;
my @after = $t->feed(undef);
is_deeply [ map { $_->{seq} } @after[0 .. $#all] ], [ map { $_->{seq} } @all ],
    'after SIGKILL: every earlier entry still there';
is_deeply types(@after[ @all .. $#after ]), [ 'entity.settings_updated', 'api_key.created' ],
    '  and the two answered just before the kill';
is $after[-1]{object}{id}, $crash_key->{id}, '  the last is the key';
$t->put_workspace_settings($ws->{id}, { maxExpandDepth => 2 });
my @next = $t->feed(undef, after => $after[-1]{seq});
is scalar @next, 1, 'a change after the restart gets one entry';
ok $next[0]{seq} > $after[-1]{seq}, '  with a higher seq (no reuse after a crash)';
is $t->admin(GET => "$W/entities/Crash/settings")->{json}{publicAccess}, 'READ_ONLY',
    'the settings themselves survived too';

done_testing;
