#!/usr/bin/env bash
# perl on a large input it generates itself: hashes of arrays and of hashes,
# sorts with custom comparators, regex captures and substitutions, string
# building, then four ithreads (each a full interpreter clone, made and torn
# down by malloc) passing records through a Thread::Queue. With a fixed hash
# seed both runs are the same computation; outputs must be identical.
source "$(dirname "$0")/../preload/preload_lib.sh"

export PERL_HASH_SEED=12345 PERL_PERTURB_KEYS=0

cat >"$WORK/gen.pl" <<'PL'
use strict; use warnings;
srand(42);
my @verbs = qw(GET POST PUT DELETE PATCH);
for my $i (0 .. 299_999) {
  my $user = sprintf "u%05d", int(rand(50_000));
  my $path = join "/", map { ("api", "v" . int(rand(3)), "item", "x" x int(rand(40))) [$_] } 0 .. 1 + int(rand(3));
  printf "%s %s /%s?id=%d&q=%s %d %.3f\n", $user, $verbs[int rand @verbs], $path,
    $i, join("", map { chr(97 + int rand 26) } 1 .. 1 + int(rand(12))), int(rand(600)), rand(5);
}
PL

cat >"$WORK/work.pl" <<'PL'
use strict; use warnings;
use threads; use Thread::Queue;
my (%by_user, %by_verb, %words, @slow);
while (my $line = <STDIN>) {
  chomp $line;
  my ($user, $verb, $url, $status, $secs) = split / /, $line;
  my ($path, $query) = $url =~ m{^(/[^?]*)\?(.*)$} or die "bad line: $line";
  my %q = map { split /=/, $_, 2 } split /&/, $query;
  push @{ $by_user{$user}{paths} }, $path;
  $by_user{$user}{secs} += $secs;
  $by_verb{$verb}{$status >= 500 ? "err" : "ok"}++;
  (my $norm = $path) =~ s/x+/X/g;
  $words{$norm}++;
  $words{$q{q}}++ if length($q{q}) > 10;
  push @slow, "$secs $user $q{id}" if $secs > 4.99;
}
for my $u ((sort { $by_user{$b}{secs} <=> $by_user{$a}{secs} || $a cmp $b } keys %by_user)[0 .. 19]) {
  my $p = $by_user{$u}{paths};
  printf "%s %.3f %d %s\n", $u, $by_user{$u}{secs}, scalar(@$p), (sort { length($b) <=> length($a) || $a cmp $b } @$p)[0];
}
for my $v (sort keys %by_verb) { printf "%s ok=%d err=%d\n", $v, $by_verb{$v}{ok} // 0, $by_verb{$v}{err} // 0; }
my @top = (sort { $words{$b} <=> $words{$a} || $a cmp $b } keys %words)[0 .. 29];
print "word $_ $words{$_}\n" for @top;
print "distinct ", scalar(keys %words), " slow ", scalar(@slow), "\n";
print "slowest ", join(",", (sort { $b cmp $a } @slow)[0 .. 4]), "\n";

# Threads: each clones the interpreter (and %by_user with it), workers turn
# queued user names into summaries, and everything is freed at join.
my $in = Thread::Queue->new(sort keys %by_user);
$in->end;
my $out = Thread::Queue->new;
my @workers = map {
  threads->create(sub {
    my $n = 0;
    while (defined(my $u = $in->dequeue)) {
      my $joined = join "|", sort @{ $by_user{$u}{paths} };
      (my $squeezed = $joined) =~ s/(.)\1+/$1/g;
      $out->enqueue(sprintf "%s %d %d", $u, length($joined), length($squeezed));
      $n++;
    }
    return $n;
  });
} 1 .. 4;
my $done = 0;
$done += $_->join for @workers;
$out->end;
my @summaries;
while (defined(my $s = $out->dequeue)) { push @summaries, $s; }
@summaries = sort @summaries;
my $total = 0;
$total += (split / /)[1] for @summaries;
print "threads $done ", scalar(@summaries), " $total $summaries[0] $summaries[-1]\n";
PL

perl "$WORK/gen.pl" >"$WORK/in.txt"
[ "$(wc -l <"$WORK/in.txt")" -eq 300000 ] || fail "generator wrote a wrong line count"
perl "$WORK/work.pl" <"$WORK/in.txt" >"$WORK/expected.txt"
preloaded "$WORK/err.txt" perl "$WORK/work.pl" <"$WORK/in.txt" >"$WORK/actual.txt"
expect_loaded "$WORK/err.txt"
same_output "$WORK/expected.txt" "$WORK/actual.txt" "perl"
# A generator run under the preload must write the same input, too.
preloaded "$WORK/err_gen.txt" perl "$WORK/gen.pl" | cmp -s - "$WORK/in.txt" ||
  fail "perl generator output differs with the preload"
grep -q '^threads ' "$WORK/actual.txt" || fail "no thread summary"
tail -n 3 "$WORK/actual.txt"
echo PASS
