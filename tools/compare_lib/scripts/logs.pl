# Text processing in Perl: parses a web-server-like log into hashes of
# arrays and of hashes, normalises paths with regexes, builds strings, sorts
# with custom comparators, then drops everything. Output depends only on the
# input file.
use strict;
use warnings;

my (%by_user, %by_verb, %paths, @slow);
open(my $in, "<", $ARGV[0]) or die "cannot read $ARGV[0]: $!";
while (my $line = <$in>) {
  chomp $line;
  my ($user, $verb, $url, $status, $secs) = split / /, $line;
  my ($path, $query) = $url =~ m{^(/[^?]*)\?(.*)$} or die "bad line: $line";
  my %q = map { split /=/, $_, 2 } split /&/, $query;
  push @{ $by_user{$user}{paths} }, $path;
  $by_user{$user}{secs} += $secs;
  $by_verb{$verb}{ $status >= 500 ? "err" : "ok" }++;
  (my $norm = $path) =~ s/x+/X/g;
  $paths{$norm}++;
  $paths{"q:" . $q{q}}++ if length($q{q}) > 8;
  push @slow, sprintf("%.3f %s %s", $secs, $user, $q{id}) if $secs > 4.9;
}
close $in;

for my $u ((sort { $by_user{$b}{secs} <=> $by_user{$a}{secs} || $a cmp $b } keys %by_user)[0 .. 9]) {
  my $p = $by_user{$u}{paths};
  printf "user %s %.3f %d %s\n", $u, $by_user{$u}{secs}, scalar(@$p),
    (sort { length($b) <=> length($a) || $a cmp $b } @$p)[0];
}
for my $v (sort keys %by_verb) {
  printf "verb %s ok=%d err=%d\n", $v, $by_verb{$v}{ok} // 0, $by_verb{$v}{err} // 0;
}
my @top = (sort { $paths{$b} <=> $paths{$a} || $a cmp $b } keys %paths)[0 .. 19];
print "path $_ $paths{$_}\n" for @top;
my $joined = join "|", map { join ",", sort @{ $by_user{$_}{paths} } } sort keys %by_user;
(my $squeezed = $joined) =~ s/(.)\1+/$1/g;
printf "users %d paths %d slow %d joined %d squeezed %d\n", scalar(keys %by_user),
  scalar(keys %paths), scalar(@slow), length($joined), length($squeezed);
print "slowest ", join(",", (sort { $b cmp $a } @slow)[0 .. 2]), "\n";
