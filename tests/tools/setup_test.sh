#!/usr/bin/env bash
# tools/setup.sh against stand-ins for dpkg-query, apt-get and sudo (nothing
# is installed): apt's output goes to the log, never to stdout; stderr gets
# one line per step; a held lock is waited for; a failure shows the log's
# end and exits 1; nothing missing means nothing printed.
set -uo pipefail

SETUP=$(readlink -f "$1")
TMP=${TEST_TMPDIR:-$(mktemp -d)}
STUBS=$TMP/stubs
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

mkdir -p "$STUBS"
# Everything installed except the packages named in $MISSING.
cat >"$STUBS/dpkg-query" <<'SH'
#!/bin/sh
for pkg; do :; done  # the last argument
for p in $MISSING; do [ "$p" = "$pkg" ] && exit 1; done
printf 'install ok installed'
SH
# Noisy like apt on both streams; the first `update` finds the lists
# locked; `install` fails when $APT_FAIL is set. Records its arguments.
cat >"$STUBS/apt-get" <<'SH'
#!/bin/sh
echo "apt-get $*" >>"$STATE/calls"
for i in 1 2 3 4 5; do echo "Get:$i http://deb.debian.org/debian bookworm/main noise"; done
echo "W: some warning" >&2
case " $* " in
  *" update "*)
    if [ ! -e "$STATE/locked-once" ]; then
      touch "$STATE/locked-once"
      echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
      exit 100
    fi ;;
  *" install "*)
    if [ -n "${APT_FAIL:-}" ]; then echo "E: Unable to locate package $APT_FAIL" >&2; exit 100; fi ;;
esac
exit 0
SH
printf '#!/bin/sh\nexec "$@"\n' >"$STUBS/sudo"
printf '#!/bin/sh\nexit 0\n' >"$STUBS/sleep"  # the lock wait, without the wait
chmod +x "$STUBS"/*

# run_setup NAME MISSING [APT_FAIL]: runs setup.sh with the stubs first in
# PATH, the packages MISSING not installed.
run_setup() {
  export STATE=$TMP/$1
  mkdir -p "$STATE"
  rc=0
  PATH=$STUBS:$PATH SETUP_LOG=$STATE/setup.log MISSING=$2 APT_FAIL=${3:-} \
    bash "$SETUP" >"$STATE/out" 2>"$STATE/err" || rc=$?
}

# Nothing missing: silent, no apt.
run_setup none ""
[[ $rc -eq 0 ]] || fail "nothing missing: exit $rc"
[[ ! -s $STATE/out && ! -s $STATE/err ]] || fail "nothing missing, yet it printed: $(cat "$STATE/out" "$STATE/err")"
[[ ! -e $STATE/calls ]] || fail "nothing missing, yet apt-get ran"

# Two missing, the lists locked once.
run_setup two "make time"
[[ $rc -eq 0 ]] || fail "install: exit $rc: $(cat "$STATE/err")"
[[ ! -s $STATE/out ]] || fail "setup wrote to stdout: $(head -3 "$STATE/out")"
expected="setup: missing make time
setup: apt-get update (log: $STATE/setup.log)
setup: waiting for another apt or dpkg to release its lock
setup: installing 2 packages (log: $STATE/setup.log)
setup: done"
[[ $(cat "$STATE/err") == "$expected" ]] || fail "stderr is not one line per step:
$(cat "$STATE/err")"
grep -q "Get:5 http://deb.debian.org" "$STATE/setup.log" || fail "apt's stdout is not in the log"
grep -q "W: some warning" "$STATE/setup.log" || fail "apt's stderr is not in the log"
[[ $(grep -c ' update ' "$STATE/calls") -eq 2 ]] || fail "update was not retried after the lock: $(cat "$STATE/calls")"
grep -q "^apt-get -o DPkg::Lock::Timeout=[0-9]* install -y -q --no-install-recommends make time$" \
  "$STATE/calls" || fail "install call: $(cat "$STATE/calls")"

# A failing install: exit 1, the log's end on stderr, still nothing on stdout.
run_setup broken make make
[[ $rc -eq 1 ]] || fail "failed install: exit $rc"
[[ ! -s $STATE/out ]] || fail "failed install wrote to stdout"
grep -q "^setup: error: 'installing 1 packages' failed; the end of $STATE/setup.log:$" "$STATE/err" ||
  fail "no error line: $(cat "$STATE/err")"
grep -q "E: Unable to locate package make" "$STATE/err" || fail "the log's end is not shown"

if ((failures)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "PASS"
