#!/usr/bin/env bash
# awk and perl on a large generated input: associative arrays of a few
# hundred thousand keys, string building, regexes, sorting. Outputs must be
# identical with and without the preload.
source "$(dirname "$0")/preload_lib.sh"

awk 'BEGIN { srand(11); for (i = 0; i < 600000; i++)
       printf "user%d,%d,%s\n", int(rand() * 300000), int(rand() * 1000),
              (rand() < 0.5 ? "GET /a/" i : "POST /b/" (i % 977)) }' \
  >"$WORK/in.csv"

cat >"$WORK/prog.awk" <<'AWK'
BEGIN { FS = "," }
{ sum[$1] += $2; n[$1]++
  m = $3 ~ /^POST/ ? "post" : "get"
  trail[m] = trail[m] substr($3, 1, 1) $2  # growing strings: realloc churn
  if (length(trail[m]) > 20000) { total[m] += length(trail[m]); trail[m] = "" } }
END { for (k in sum) printf "%s %d %d\n", k, sum[k], n[k]
      print total["post"] + length(trail["post"]), total["get"] + length(trail["get"]) }
AWK
awk -f "$WORK/prog.awk" "$WORK/in.csv" | sort >"$WORK/expected_awk.txt"
preloaded "$WORK/err_awk.txt" awk -f "$WORK/prog.awk" "$WORK/in.csv" |
  sort >"$WORK/actual_awk.txt"
expect_loaded "$WORK/err_awk.txt"
same_output "$WORK/expected_awk.txt" "$WORK/actual_awk.txt" "awk"

cat >"$WORK/prog.pl" <<'PL'
use strict; use warnings;
my (%sum, %paths, @big);
while (my $line = <STDIN>) {
  chomp $line;
  my ($user, $v, $req) = split /,/, $line;
  $sum{$user} += $v;
  push @{ $paths{(split m{/}, $req)[1] // ""} }, $v if $req =~ m{^(GET|POST) /(\w)/};
  push @big, join(":", $user, $v, scalar reverse $req) if $v % 7 == 0;
}
for my $u (sort { $sum{$b} <=> $sum{$a} || $a cmp $b } keys %sum) { print "$u $sum{$u}\n"; }
for my $p (sort keys %paths) { my @s = sort { $a <=> $b } @{ $paths{$p} }; print "$p ", scalar(@s), " $s[0] $s[-1]\n"; }
print scalar(@big), " ", (sort @big)[0], "\n";
PL
perl "$WORK/prog.pl" <"$WORK/in.csv" >"$WORK/expected_perl.txt"
preloaded "$WORK/err_perl.txt" perl "$WORK/prog.pl" <"$WORK/in.csv" \
  >"$WORK/actual_perl.txt"
expect_loaded "$WORK/err_perl.txt"
same_output "$WORK/expected_perl.txt" "$WORK/actual_perl.txt" "perl"
echo PASS
