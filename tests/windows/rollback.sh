#!/usr/bin/env bash
# The Windows build of cairn, run under Wine: backup, an in-place rollback
# over a read-only file, a deleted directory and an added file, then
# --undo. Run by .ci/windows-check with CAIRN_EXE and WINE set.
set -euo pipefail
: "${CAIRN_EXE:?path of cairn.exe}" "${WINE:?path of wine64}"
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-windows.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
win() { printf 'Z:%s' "${1//\//\\}"; }
cairn() { timeout 120 "$WINE" "$CAIRN_EXE" --repo "$(win "$WORK/repo")" "$@"; }
fail() { echo "windows rollback: $*" >&2; exit 1; }
export CAIRN_STATE_DIR
CAIRN_STATE_DIR=$(win "$WORK/state")

mkdir -p "$WORK/proj/sub"
echo hello >"$WORK/proj/a.txt"
echo two >"$WORK/proj/sub/b.txt"
echo frozen >"$WORK/proj/ro.txt"
chmod 444 "$WORK/proj/ro.txt"
cp -a "$WORK/proj" "$WORK/before"

cairn init >/dev/null
cairn backup "$(win "$WORK/proj")" --tag pre-upgrade
cairn ls latest | grep -q 'tree/proj/sub/b.txt' || fail "the backup left out a subdirectory"

# The "upgrade": a rewrite, a read-only file rewritten, a directory gone,
# a file added.
echo changed >"$WORK/proj/a.txt"
chmod 644 "$WORK/proj/ro.txt" && echo thawed >"$WORK/proj/ro.txt" && chmod 444 "$WORK/proj/ro.txt"
rm -r "$WORK/proj/sub"
echo new >"$WORK/proj/c.txt"
cp -a "$WORK/proj" "$WORK/after"

cairn diff latest --stat
cairn restore latest --tag pre-upgrade --in-place --delete
diff -r "$WORK/before" "$WORK/proj" || fail "the rollback left differences"

cairn restore --undo
diff -r "$WORK/after" "$WORK/proj" || fail "--undo did not put back the state before the rollback"
echo "windows rollback: ok"
