#!/usr/bin/env bash
# make fuzz: every fuzz target (tests/fuzz/targets.c) under libFuzzer with
# ASan+UBSan, FUZZ_SECONDS each (default 60), one after the other.
#   make fuzz                                   all targets, 60 s each
#   make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS="plan cache"
# Starts from the valid files tests/test_fuzz.c knows and the committed
# inputs (tests/fuzz/corpus/<target>/); the corpus grows in
# build-fuzz/corpus/, findings go to build-fuzz/crashes/ (nothing is
# written into the repository). A finding, once fixed, is committed to
# tests/fuzz/corpus/<target>/ so that `make check` replays it. Exit 1 when
# any target found something. Needs clang with libFuzzer (Debian's clang).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${FUZZ_SECONDS:-60}
OUT=build-fuzz
all=$(sed -n 's/^    {"\([a-z_0-9]*\)", fz_.*/\1/p' tests/fuzz/targets.c)
targets=${FUZZ_TARGETS:-$all}
command -v clang >/dev/null || { echo "make fuzz: clang not found (apt-get install clang)" >&2; exit 2; }

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
make --no-print-directory -j2 BUILD=$OUT CC=clang CFLAGS="-O1 -g -fsanitize=fuzzer-no-link $SAN" \
    $OUT/liba3.a $OUT/tests/helpers/files.o $OUT/tests/helpers/fixture.o >/dev/null
make --no-print-directory -j2 BUILD="$BUILD" "$BUILD/a3" "$BUILD/tests/test_fuzz" >/dev/null
# the Makefile's own preprocessor flags and libraries (its database, -p)
db=$(make --no-print-directory -s -p -n BUILD=$OUT 2>/dev/null)
flags=$(printf '%s\n' "$db" | sed -n 's/^CPPFLAGS := //p' | head -n 1)
libs=$(printf '%s\n' "$db" | sed -n 's/^LDLIBS := //p' | head -n 1)

rm -rf "$OUT/seeds" && mkdir -p "$OUT/seeds" "$OUT/crashes" "$OUT/tmp"
# the targets' scratch files: a target that crashes cannot remove them, so
# they stay under build-fuzz (make clean), not in /tmp
export TMPDIR=$PWD/$OUT/tmp
A3_BIN=$PWD/$BUILD/a3 A3_FUZZ_SEEDS=$PWD/$OUT/seeds "$BUILD/tests/test_fuzz"

found=0
for t in $targets; do
    bin=$OUT/fuzz_$t
    # shellcheck disable=SC2086
    clang $flags -DFZ_TARGET="\"$t\"" -O1 -g -fsanitize=fuzzer $SAN -Itests \
        -o "$bin" tests/fuzz/fuzz_main.c tests/fuzz/targets.c $OUT/tests/helpers/files.o $OUT/tests/helpers/fixture.o $OUT/liba3.a $libs
    mkdir -p "$OUT/corpus/$t"
    for d in "$OUT/seeds/$t" "tests/fuzz/corpus/$t"; do
        [ -d "$d" ] && cp -n "$d"/* "$OUT/corpus/$t/" 2>/dev/null || true
    done
    before=$(ls "$OUT/crashes" | grep -c "^$t-" || true)
    echo "== $t: $SECS s"
    # -rss_limit_mb: a loader that allocates what a hostile header asks for
    # is a finding too
    "$bin" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$OUT/crashes/$t-" "$OUT/corpus/$t" 2>"$OUT/$t.log" || true
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$OUT/$t.log" | sed 's/^/   /' || true
    after=$(ls "$OUT/crashes" | grep -c "^$t-" || true)
    if [ "$after" -gt "$before" ]; then
        found=1
        echo "   FOUND: $((after - before)) input(s) in $OUT/crashes/ (log: $OUT/$t.log)"
        grep -m 3 -E "ERROR|runtime error|invariant" "$OUT/$t.log" | sed 's/^/   /' || true
    fi
done
[ $found -eq 0 ] && echo "fuzz: nothing found" || echo "fuzz: findings in $OUT/crashes/"
exit $found
