# lib.sh: what the benchmark scripts share, sourced after $out (the folder
# for raw outputs) is set.
# shellcheck shell=sh

field() { # field FILE KEY... : a value from a JSON file
    /usr/bin/python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v=v[k]
print(v)' "$@"
}

timed() { # timed NAME CMD...: stdout to out/NAME.json, stderr to out/NAME.err, wall s and peak KiB to out/NAME.time
    name=$1; shift
    rc=0
    /usr/bin/time -f '%e %M' -o "$out/$name.time.tmp" "$@" > "$out/$name.json" 2> "$out/$name.err" || rc=$?
    # time(1) prepends "Command exited with non-zero status N" to its output then
    tail -n 1 "$out/$name.time.tmp" > "$out/$name.time" && rm -f "$out/$name.time.tmp"
    [ $rc = 0 ] || { echo "run.sh: $name exited with status $rc (see $out/$name.err)" >&2; exit 1; }
}
