# lib.sh: what the command-line tests share, sourced after BIN and T are set:
# run the binary, and check its exit code, stdout and stderr (every runtime
# failure exits 1 with one line "polytask: FILE[:LINE]: ..." on stderr, after
# optional warnings; usage errors exit 2 with one line). Failures are
# counted in FAILS; each test script prints them and exits non-zero.
# shellcheck shell=sh

FAILS=0
CMD=
RC=0

fail() {
    echo "FAIL: $*"
    echo "  command: polytask $CMD"
    echo "  exit code: $RC"
    echo "  stderr:"
    head -n 20 "$T/err" | sed 's/^/    | /'
    echo "  stdout (first lines):"
    head -n 5 "$T/out" | cut -c 1-300 | sed 's/^/    | /'
    FAILS=$((FAILS + 1))
}

# run ARGS...: runs the binary; stdout in $T/out, stderr in $T/err, exit code in RC
run() {
    CMD="$*"
    "$BIN" "$@" >"$T/out" 2>"$T/err"
    RC=$?
}

# expect_fail NEEDLE...: exit 1, nothing on stdout, stderr one error line
# "polytask: ..." (after optional warning lines) holding every NEEDLE.
expect_fail() {
    if [ "$RC" -ne 1 ]; then fail "want exit 1"; return 1; fi
    if [ -s "$T/out" ]; then fail "want nothing on stdout"; return 1; fi
    grep -v '^polytask: warning: ' "$T/err" >"$T/err1"
    if [ "$(wc -l <"$T/err1")" -ne 1 ] || [ "$(wc -l <"$T/err")" -lt 1 ]; then
        fail "want exactly one error line on stderr"
        return 1
    fi
    if [ "$(tail -n 1 "$T/err")" != "$(cat "$T/err1")" ]; then fail "the error must be the last line"; return 1; fi
    case $(cat "$T/err1") in
    "polytask: polytask:"*) fail "prefix repeated"; return 1 ;;
    "polytask: "?*) ;;
    *) fail "want the line to start with 'polytask: '"; return 1 ;;
    esac
    for needle in "$@"; do
        if ! grep -qF -- "$needle" "$T/err1"; then fail "stderr lacks '$needle'"; return 1; fi
    done
    return 0
}

# expect_usage: exit 2, nothing on stdout, one line on stderr starting "polytask"
expect_usage() {
    if [ "$RC" -ne 2 ]; then fail "want exit 2 (usage error)"; return; fi
    if [ -s "$T/out" ]; then fail "want nothing on stdout"; return; fi
    if [ "$(wc -l <"$T/err")" -ne 1 ]; then fail "want one line on stderr"; return; fi
    case $(cat "$T/err") in
    "polytask"*) ;;
    *) fail "want the line to start with 'polytask'" ;;
    esac
}

expect_ok() {
    if [ "$RC" -ne 0 ]; then fail "want exit 0"; return 1; fi
    return 0
}
