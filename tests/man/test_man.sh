#!/usr/bin/env bash
# test_man.sh SMMUCTL SOURCE_DIR — the man pages say what the binary does (issue 14.2): every option that
# `smmuctl --help` and `smmuctl help COMMAND` name is in smmuctl(1) (serve's in smmuctl-serve(8)), and every
# option a page names is one the binary has; every command of --help has its entry in smmuctl(1); every exit
# code of --help is in EXIT STATUS; the pages format without warnings where groff is installed.
set -uo pipefail
BIN=$1
SRC=$2
MAN1=$SRC/dist/man/smmuctl.1
MAN8=$SRC/dist/man/smmuctl-serve.8
failed=0
fail() { echo "FAIL: $*"; failed=1; }

# options named in a text (help output, or a man page with roff escapes undone)
opts() { grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }
unroff() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(..//g' -e 's/\\e/\\/g' "$1"; }

commands=$("$BIN" --help | sed -n '/^Commands:/,/^$/{s/^  \([a-z][a-z-]*\).*/\1/p}')
[[ -n $commands ]] || { echo "FAIL: no commands in smmuctl --help"; exit 1; }
global=$("$BIN" --help | grep -v "^  serve " | opts) # the serve synopsis line: smmuctl-serve.8
cmd_opts=""
for c in $commands; do
    [[ $c == serve ]] && continue
    cmd_opts+=$'\n'$("$BIN" help "$c" | opts)
done
serve_opts=$("$BIN" help serve | opts)
want1=$(printf '%s\n%s\n' "$global" "$cmd_opts" | grep . | sort -u)
allowed1=$(printf '%s\n%s\n%s\n' "$global" "$cmd_opts" "$serve_opts" | grep . | sort -u)
have1=$(unroff "$MAN1" | opts)
have8=$(unroff "$MAN8" | opts)

missing=$(comm -23 <(echo "$want1") <(echo "$have1"))
[[ -z $missing ]] || fail "options in --help but not in smmuctl.1:" $missing
extra=$(comm -13 <(echo "$allowed1") <(echo "$have1"))
[[ -z $extra ]] || fail "options in smmuctl.1 that no --help names:" $extra
missing=$(comm -23 <(echo "$serve_opts") <(echo "$have8"))
[[ -z $missing ]] || fail "options in 'smmuctl help serve' but not in smmuctl-serve.8:" $missing
extra=$(comm -13 <(printf '%s\n%s\n' "$serve_opts" "$global" | sort -u) <(echo "$have8"))
[[ -z $extra ]] || fail "options in smmuctl-serve.8 that 'smmuctl help serve' does not name:" $extra

# every command has an entry (a .TP line starting with it) in COMMANDS
for c in $commands help; do
    grep -Eq "^\.(TP|B|BI|BR)?.*\b$c\b" <(sed -n '/^\.SH COMMANDS/,/^\.SH /p' "$MAN1" | grep -A1 '^\.TP' | grep -v '^\.TP') ||
        fail "smmuctl.1 COMMANDS has no entry for '$c'"
done
# every exit code --help or a command's help gives is in EXIT STATUS
codes=$({ "$BIN" --help; for c in $commands; do "$BIN" help "$c"; done; } | grep -o 'Exit[^.]*' | grep -o '\b[0-9]\b' | sort -u)
status=$(sed -n '/^\.SH EXIT STATUS/,/^\.SH /p' "$MAN1")
for k in $codes; do
    grep -q "^\.B $k\$" <<<"$status" || fail "exit code $k is not in smmuctl.1 EXIT STATUS"
done
# environment variables the help names
for v in $("$BIN" --help | grep -o 'SMMUCTL_[A-Z_]*' | sort -u); do
    grep -q "$v" "$MAN1" || fail "$v (in --help) is not in smmuctl.1"
done

if command -v groff >/dev/null; then
    for p in "$MAN1" "$MAN8"; do
        w=$(groff -k -man -ww -z -Tutf8 "$p" 2>&1)
        [[ -z $w ]] || fail "groff warns on ${p##*/}: $w"
    done
else
    echo "note: groff not installed; the pages' formatting is not checked"
fi
[[ $failed == 0 ]] && echo "ok: smmuctl.1 and smmuctl-serve.8 match the binary's help ($(wc -l <<<"$have1") + $(wc -l <<<"$have8") options)"
exit $failed
