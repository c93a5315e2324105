#!/usr/bin/env bash
# Entry point of every preload_test_all_modes target. sh_test runs its
# executable through a symlink named after the target, in the target's
# package; the scripts find preload_lib.sh relative to their own folder, so
# run each by its real runfiles path (the first argument) instead.
set -euo pipefail
script="${1:?usage: run_script.sh SCRIPT LIBRARY}"
shift
exec bash "$script" "$@"
