#!/usr/bin/env bash
# Runs every test program given on the command line from the repository
# root, echoes their output, and ends with one line adding them up:
# "tests: N passed, N failed, N skipped". Exit status 1 if any failed.
set -u
pass=0; fail=0; skip=0; crashed=0
for t in "$@"; do
    out=$("$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^[a-z0-9_]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -n 1)
    if [ -z "$line" ] || { [ $rc -ne 0 ] && ! printf '%s' "$line" | grep -q ' [1-9][0-9]* failed'; }; then
        printf '%s: crashed or exited %d without a summary\n' "$t" "$rc"
        crashed=$((crashed + 1)); continue
    fi
    p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) skipped.*/\1/')
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
done
fail=$((fail + crashed))
echo "tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
