#!/usr/bin/env bash
# Prune benchmark: 30 snapshots of one tree with about 1% of the files
# changed between each (a third rewritten, a third deleted, as many added),
# the same history in cairn, restic and rustic; then each tool's
# `forget --keep-last 10 --prune`, timed, with its peak memory and the
# repository's size before and after.
#
#   benches/prune.sh [--snapshots N] [CORPUS_DIR]
#
# Env: CAIRN (default target/release/cairn), RUSTIC (default: rustic on
# PATH), TMPDIR (scratch, default /var/tmp). See benches/README.md.
set -euo pipefail

SNAPSHOTS=30
CORPUS=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --snapshots) SNAPSHOTS=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) CORPUS=$1; shift ;;
    esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
CAIRN=${CAIRN:-$HERE/../target/release/cairn}
RUSTIC=${RUSTIC:-$(command -v rustic || true)}
[[ -x $CAIRN ]] || { echo "build cairn first: cargo build --release" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (package time)" >&2; exit 1; }
if [[ -z $CORPUS ]]; then
    CORPUS=/usr/share/go-1.19/src
    [[ -d $CORPUS ]] || { echo "no corpus: apt-get install golang-1.19-src, or give a directory" >&2; exit 1; }
fi

SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-prune.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
TREE=$SCRATCH/tree
export CAIRN_STATE_DIR=$SCRATCH/state CAIRN_CACHE_DIR=$SCRATCH/cairn-cache
export RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench RESTIC_CACHE_DIR=$SCRATCH/restic-cache XDG_CACHE_HOME=$SCRATCH/cache
log() { echo "[prune] $*" >&2; }

# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"

log "copying $CORPUS"
cp -a "$CORPUS" "$TREE"

# Round r changes every 100th file, starting at offset r: a third rewritten,
# a third deleted, and as many new files added.
change() {
    local r=$1 i=0 f
    mapfile -t files < <(cd "$TREE" && find . -type f | sort)
    for ((k = r % 100; k < ${#files[@]}; k += 100)); do
        f=$TREE/${files[$k]}
        case $(( i % 3 )) in
            0) echo "// round $r" >>"$f" ;;
            1) rm -f "$f" ;;
            2) echo "new in round $r" >"$(dirname "$f")/prune-bench-$r-$i.txt" ;;
        esac
        i=$(( i + 1 ))
    done
}

TOOLS=(cairn restic)
[[ -n $RUSTIC ]] && TOOLS+=(rustic) || log "rustic not found (RUSTIC=...): skipped"
command -v restic >/dev/null || { log "restic not installed: skipped"; TOOLS=("${TOOLS[@]/restic}"); }

"$CAIRN" --repo "$SCRATCH/cairn" init >/dev/null
command -v restic >/dev/null && restic --repo "$SCRATCH/restic" init >/dev/null 2>&1
[[ -n $RUSTIC ]] && "$RUSTIC" --no-progress -r "$SCRATCH/rustic" init >/dev/null 2>&1

log "$SNAPSHOTS snapshots, about 1% changed between each"
for ((r = 0; r < SNAPSHOTS; r++)); do
    ((r > 0)) && change "$r"
    "$CAIRN" --repo "$SCRATCH/cairn" backup "$TREE" >/dev/null
    command -v restic >/dev/null && restic --repo "$SCRATCH/restic" backup "$TREE" >/dev/null 2>&1
    [[ -n $RUSTIC ]] && "$RUSTIC" --no-progress -r "$SCRATCH/rustic" backup "$TREE" >/dev/null 2>&1
done

echo
echo "corpus: $CORPUS, $SNAPSHOTS snapshots, about 1% changed between each; forget --keep-last 10 --prune"
printf '%-10s %10s %10s %14s %14s\n' "tool" "wall (s)" "peak MiB" "repo before" "repo after"
size() { du -sb "$1" | cut -f1 | awk '{ printf "%.1f MB", $1 / 1e6 }'; }
for tool in "${TOOLS[@]}"; do
    [[ -n $tool ]] || continue
    repo=$SCRATCH/$tool
    before=$(size "$repo")
    case $tool in
        cairn) timed "$CAIRN" --repo "$repo" forget --keep-last 10 --prune ;;
        restic) timed restic --repo "$repo" forget --keep-last 10 --prune ;;
        rustic) timed "$RUSTIC" --no-progress -r "$repo" forget --keep-last 10 --prune ;;
    esac
    printf '%-10s %10.3f %10s %14s %14s\n' "$tool" "$WALL" "$RSS" "$before" "$(size "$repo")"
done
log "checking cairn's repository after prune"
"$CAIRN" --repo "$SCRATCH/cairn" check --read-data >/dev/null
