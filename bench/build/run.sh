#!/bin/sh
# Sample-building benchmark: `polytask build` on a synthetic e-commerce event
# log of 20M events (view, cart, purchase; ~1M users, 500k items, 30 days),
# one thread. Prints events, whole-process wall time, events/s (events / wall),
# peak RSS and the samples written per split, against the targets.
#
#   sh bench/build/run.sh     (from anywhere; POLYTASK=path/to/polytask to pick the binary)
#
# The data (about 660 MB) is generated into data/events.csv on the first run
# with gen_events.py (seed 1, about 25 s and 800 MB of memory); build.yaml
# reads it. Raw outputs go to out/ (out/samples is the command's output).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${POLYTASK:-$root/build/polytask}
out=$here/out
mkdir -p "$out"
[ -x "$bin" ] || { echo "run.sh: $bin not built (make build)" >&2; exit 1; }
"$bin" build --help > /dev/null 2>&1 || { echo "run.sh: $bin has no 'build' command" >&2; exit 1; }
if [ ! -f "$here/data/events.csv" ]; then
    /usr/bin/python3 -c 'import numpy' 2> /dev/null || { echo "run.sh: needs Debian's python3-numpy" >&2; exit 1; }
    echo "generating data/events.csv (20M events) ..." >&2
    /usr/bin/python3 "$here/gen_events.py" --events 20000000 --users 1000000 --items 500000 \
        --categories 5000 --days 30 --seed 1 --out "$here/data/events.csv" >&2
fi
threads=""
"$bin" build --help 2>&1 | grep -q -- --threads && threads="--threads 1"

. "$root/bench/lib.sh"

rm -rf "$out/samples"
# $threads is empty or "--threads 1": unquoted on purpose
# shellcheck disable=SC2086
timed polytask-build "$bin" build --config "$here/build.yaml" --out "$out/samples" $threads --json
read -r w r < "$out/polytask-build.time"
f=$out/polytask-build.json
events=$(field "$f" events)
echo "polytask build, $(date -u +%Y-%m-%d), $(nproc) cores, ${threads:-default threads (no --threads option)}"
printf '%10s %8s %9s %12s %9s %10s %9s %9s %14s\n' events bad_rows wall_s events/s rss_mib train valid test own_events/s
awk -v e="$events" -v b="$(field "$f" bad_rows)" -v w="$w" -v r="$r" -v tr="$(field "$f" samples train)" \
    -v va="$(field "$f" samples valid)" -v te="$(field "$f" samples test)" -v own="$(field "$f" events_per_second)" 'BEGIN {
    printf "%10d %8d %9.2f %12.0f %9.1f %10d %9d %9d %14.0f\n", e, b, w, e / w, r / 1024, tr, va, te, own
    printf "targets: >= 1,000,000 events/s on 1 thread (%s); peak RSS < 2 GiB (%s)\n",
           (e / w >= 1000000 ? "met" : "NOT met"), (r < 2 * 1024 * 1024 ? "met" : "NOT met") }'
# The output is large (one row of ~50 fields per exposure): how long does the
# disk take to write the same number of bytes, with nothing else to do?
bytes=$(cat "$out"/samples/*.csv | wc -c)
mib=$((bytes / 1048576))
t0=$(date +%s.%N)
dd if=/dev/zero of="$out/write-floor" bs=1M count="$mib" conv=fsync status=none
t1=$(date +%s.%N)
rm -f "$out/write-floor"
awk -v b="$bytes" -v a="$t0" -v z="$t1" -v e="$events" 'BEGIN {
    printf "write floor: %.0f MiB of samples; dd of as many bytes to the same disk (with fsync, as the build does) takes %.1f s, i.e. at most %.0f events/s from writing alone\n",
           b / 1048576, z - a, e / (z - a) }'
# The build is bound by scattered memory accesses, whose cost moves with the
# machine's load: what one costs now, for comparing runs (bench/build/memlat.c)
if cc -O2 -o "$out/memlat" "$here/memlat.c" 2> /dev/null; then "$out/memlat"; rm -f "$out/memlat"; fi
