#!/usr/bin/env bash
# SGEMM rate of each OpenBLAS kernel a3 might run with, via `a3 doctor`.
#
#   scripts/bench_blas.sh [SECONDS]      (default 2 s per measurement)
#
# One line per configuration, grep-able:
#   bench_blas config=default sgemm_gflops=312.4 kernel=SkylakeX threads=2 n=2048 fix=re-executed reexec=1
# Configurations: what a3 does by itself; the fix disabled (A3_NO_BLAS_FIX=1,
# i.e. OpenBLAS's own choice); each kernel forced with OPENBLAS_CORETYPE;
# and the default on one thread. A forced kernel the CPU cannot run is
# skipped (OpenBLAS would fall back or the run would die with SIGILL).
# Environment: A3 (binary, default build/a3), BUILD, SIZE (default 2048).
set -u
cd "$(dirname "$0")/.."
A3=${A3:-$PWD/${BUILD:-build}/a3}
SECS=${1:-2}
SIZE=${SIZE:-2048} # fixed, so the kernels are compared on the same problem
[ -x "$A3" ] || { echo "bench_blas: $A3 not built (make a3)" >&2; exit 1; }

# Which kernels can this CPU run? (the doctor's "best kernel" line)
best=$(env -u OPENBLAS_CORETYPE "$A3" doctor --no-bench | sed -n 's/^  best kernel *//p')

run() { # label, then env assignments / doctor options
    local label=$1; shift
    local envs=() opts=()
    for a in "$@"; do
        case $a in *=*) envs+=("$a") ;; *) opts+=("$a") ;; esac
    done
    local line
    line=$(env -u OPENBLAS_CORETYPE -u A3_NO_BLAS_FIX -u A3_BLAS_REEXEC ${envs[@]+"${envs[@]}"} \
        "$A3" doctor --seconds "$SECS" --size "$SIZE" ${opts[@]+"${opts[@]}"} | grep '^sgemm_gflops=')
    if [ -n "$line" ]; then
        echo "bench_blas config=$label $line"
    else
        echo "bench_blas config=$label failed" >&2
    fi
}

run default
run no-fix A3_NO_BLAS_FIX=1
run Prescott OPENBLAS_CORETYPE=Prescott
case $best in Haswell | SkylakeX) run Haswell OPENBLAS_CORETYPE=Haswell ;; esac
case $best in SkylakeX) run SkylakeX OPENBLAS_CORETYPE=SkylakeX ;; esac
run default-1thread --threads 1
