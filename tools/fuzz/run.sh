#!/usr/bin/env bash
# Builds the fuzz targets of tools/fuzz/ (cargo-fuzz, libFuzzer) and runs each in turn,
# one at a time, then prints per target: executions, coverage (libFuzzer's cov/ft), corpus
# size and crashes. `make fuzz` and `make fuzz-smoke` call it; README "Fuzzing".
#
#   tools/fuzz/run.sh [--seconds N | --runs N] [--merge] [--seed] [TARGET...]
#
#   --seconds N  run each target N seconds (default: $FUZZ_SECONDS, else 60)
#   --runs N     run each target for N executions instead (at most an hour each, or at
#                most --seconds if that is given too)
#   --merge      afterwards, minimise what was found into tools/fuzz/corpus/TARGET
#                (libFuzzer -merge=1 over edges, -use_counters=0: the inputs that keep
#                every edge reached, not every hit-count feature, so the corpus stays small)
#   --seed       first merge fresh seeds from the spec's vectors (seed.py) into the corpus
#
# The committed corpus is only read; new inputs go to a scratch directory unless --merge.
# A crash stops that target's run and leaves the input in tools/fuzz/artifacts/TARGET/;
# the script exits 1 if any target crashed. Without cargo-fuzz it says SKIPPED and exits 0,
# unless PEERSHARE_REQUIRE_FUZZ=1 (CI), which makes that a failure.
#
# Toolchain: the stable one. Targets are built with `--sanitizer none`, which needs no
# nightly (-Z) flag: the code under test is safe Rust, and tools/fuzz/src/lib.rs turns any
# allocation above 64 MiB into a crash (what ASan's -malloc_limit_mb would catch).
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_DIR=tools/fuzz
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
BIN_DIR=$FUZZ_DIR/target/$TRIPLE/release

seconds=${FUZZ_SECONDS:-60}
seconds_given=
runs=
merge=
seed=
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; seconds_given=1; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    --seed) seed=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  # Every [[bin]] of the fuzz crate, in the order of its Cargo.toml.
  mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' $FUZZ_DIR/Cargo.toml | grep -v '^peershare')
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  msg="cargo-fuzz is not installed (cargo install --locked cargo-fuzz)"
  if [ "${PEERSHARE_REQUIRE_FUZZ:-}" = 1 ]; then
    echo "fuzz: FAILED: $msg, and PEERSHARE_REQUIRE_FUZZ=1" >&2
    exit 1
  fi
  echo "fuzz: SKIPPED: $msg"
  exit 0
fi

start=$(date +%s)
echo "fuzz: building ${#targets[@]} targets ($(cargo fuzz --version))"
for t in "${targets[@]}"; do
  cargo fuzz build --fuzz-dir $FUZZ_DIR --sanitizer none "$t"
done
echo "fuzz: built in $(( $(date +%s) - start )) s"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/peershare-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

if [ -n "$seed" ]; then
  python3 $FUZZ_DIR/seed.py "$scratch/seeds" >/dev/null
fi

# libFuzzer options: stop a run past 2 GiB of memory or 10 s on one input (both count as
# crashes); -print_final_stats for the execution count.
common=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
if [ -n "$runs" ]; then
  cap=3600
  [ -z "$seconds_given" ] || cap=$seconds
  limit=(-runs="$runs" -max_total_time="$cap")
else
  limit=(-max_total_time="$seconds")
fi

rows=()
failed=0
for t in "${targets[@]}"; do
  corpus=$FUZZ_DIR/corpus/$t
  artifacts=$FUZZ_DIR/artifacts/$t
  mkdir -p "$corpus" "$artifacts" "$scratch/new/$t"
  if [ -n "$seed" ] && [ -d "$scratch/seeds/$t" ]; then
    "$BIN_DIR/$t" -merge=1 -use_counters=0 "$corpus" "$scratch/seeds/$t" >/dev/null 2>&1
  fi
  log=$scratch/$t.log
  t0=$(date +%s)
  status=ok
  "$BIN_DIR/$t" "${common[@]}" "${limit[@]}" -artifact_prefix="$artifacts/" \
    "$scratch/new/$t" "$corpus" >"$log" 2>&1 || status=crash
  secs=$(( $(date +%s) - t0 ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=0
  if [ "$status" = crash ]; then
    crashes=1
    failed=$((failed + 1))
    echo "fuzz: $t CRASHED; its log ends:" >&2
    tail -30 "$log" >&2
    grep -h 'Test unit written to\|artifact_prefix' "$log" >&2 || true
  fi
  if [ -n "$merge" ]; then
    mkdir -p "$scratch/min/$t"
    "$BIN_DIR/$t" -merge=1 -use_counters=0 "$scratch/min/$t" "$corpus" "$scratch/new/$t" \
      >"$scratch/$t.merge.log" 2>&1
    rm -rf "$corpus" && mv "$scratch/min/$t" "$corpus"
  fi
  files=$(find "$corpus" -type f | wc -l)
  kib=$(( ($(find "$corpus" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}') + 1023) / 1024 ))
  rows+=("$(printf '%-14s %12s %9s %6s %7s %6s %7s %7s %5s' "$t" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "$files" "${kib}K" "$crashes" "$secs")")
  echo "fuzz: $t: ${execs:-?} runs, cov ${cov:-?}, ft ${ft:-?}, crashes $crashes (${secs} s)"
done

echo
printf '%-14s %12s %9s %6s %7s %6s %7s %7s %5s\n' target executions exec/s cov ft files corpus crashes secs
printf '%s\n' "${rows[@]}"
echo "fuzz: total $(( $(date +%s) - start )) s"
echo "fuzz: $(( ${#targets[@]} - failed )) passed, $failed failed"
[ "$failed" -eq 0 ]
