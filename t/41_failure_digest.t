# scripts/prove.sh, what make test and make test-sanitize run prove through: after a
# failure the failed tests' diagnostics (and a dead test file's message) are printed again
# right before prove's summary, and the output still ends with that summary (CI reads the
# last line and shows only the tail); after a pass the output is prove's alone.
use strict;
use warnings;
use Test::More;
use File::Temp qw(tempdir);

my $dir = tempdir('apikey-digest-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
sub write_test {
    my ($name, $body) = @_;
    mkdir "$dir/$name";
    open my $fh, '>', "$dir/$name/01.t" or die "$dir/$name/01.t: $!";
    print $fh "use Test::More;\n$body\n";
    close $fh or die $!;
}
write_test(fails => "ok 1, 'fine';\nis 1, 2, 'one is two' or diag 'mismatch: got 502';\n"
                  . "ok 1, 'after';\ndone_testing;");
write_test(dies  => "ok 1, 'fine';\ndie 'boom';\n");
write_test(passes => "diag 'a passing diag';\nok 1;\ndone_testing;");

# (output, exit status) of scripts/prove.sh on one of the directories above
sub run_prove {
    my ($name) = @_;
    local $ENV{PROVE_LOG} = "$dir/$name.log";
    my $out = `bash scripts/prove.sh $dir/$name 2>&1`;
    return ($out, $? >> 8);
}

my ($out, $rc) = run_prove('fails');
isnt $rc, 0, 'a failure: prove.sh fails too';
my ($digest) = $out =~ /^==== why the failed tests failed.*?\n(.*?)\nTest Summary Report/ms;
like $digest // '', qr/^#\s+Failed test 'one is two'/m, '  the failed test is named again';
like $digest // '', qr/^# mismatch: got 502$/m, '  with its diag';
unlike $digest // '', qr/fine|after/, '  and nothing of the tests that passed';
like $out, qr/\nResult: FAIL\n\z/, '  the output still ends with prove\'s summary';
ok -s "$dir/fails.log", '  the whole output is kept in PROVE_LOG';

($out, $rc) = run_prove('dies');
isnt $rc, 0, 'a test file that died: prove.sh fails';
like $out, qr/^==== why.*^boom at \S+01\.t line 3\.$/ms, '  its message is printed again';
like $out, qr/\nResult: FAIL\n\z/, '  before the summary';

($out, $rc) = run_prove('passes');
is $rc, 0, 'all passing: prove.sh passes';
unlike $out, qr/==== why/, '  with no digest';
like $out, qr/\nResult: PASS\n\z/, '  and prove\'s summary last';

done_testing;
