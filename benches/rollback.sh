#!/usr/bin/env bash
# Rollback benchmark: 1% of a tree changed (rewritten, deleted, added), then
# put back. cairn's in-place restore (safety snapshot included) against
# rustic's restore into the same changed directory (it rewrites only what
# differs), restic's restore over it, and cairn's own full restore into an
# empty directory. Also `cairn diff` of two snapshots and its memory.
#
#   benches/rollback.sh [--runs N] [CORPUS_DIR]
#
# Env: CAIRN (default target/release/cairn), RUSTIC (default: rustic on
# PATH), TMPDIR (scratch, default /var/tmp). See benches/README.md.
set -euo pipefail

RUNS=5
CORPUS=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
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

SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-rollback.XXXXXX")
SHM=$(mktemp -d /dev/shm/cairn-rollback.XXXXXX)
trap 'rm -rf "$SCRATCH" "$SHM"' EXIT
COPY=$SCRATCH/tree
export CAIRN_STATE_DIR=$SCRATCH/state RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$SCRATCH/restic-cache XDG_CACHE_HOME=$SCRATCH/cache
log() { echo "[rollback] $*" >&2; }

# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"

log "copying $CORPUS"
cp -a "$CORPUS" "$COPY"
mapfile -t FILES < <(cd "$COPY" && find . -type f | sort)
N=${#FILES[@]}
STEP=$(( N / (N / 100 > 0 ? N / 100 : 1) ))
# 1% of the files: a third rewritten, a third deleted, and as many added.
change() {
    local i=0 f
    for ((k = 0; k < N; k += STEP)); do
        f=$COPY/${FILES[$k]}
        case $(( i % 3 )) in
            0) echo "// changed by the rollback benchmark" >>"$f" ;;
            1) rm -f "$f" ;;
            2) echo "new file $i" >"$(dirname "$f")/rollback-bench-new-$i.txt" ;;
        esac
        i=$(( i + 1 ))
    done
}
CHANGED=$(( (N + STEP - 1) / STEP ))
remove_added() { find "$COPY" -name 'rollback-bench-new-*' -delete; }

declare -A RESULTS
result() { RESULTS[$1]="${RESULTS[$1]:-} $2"; log "$1: $2"; }

log "cairn: first backup"
"$CAIRN" --repo "$SCRATCH/cairn-repo" init >/dev/null
"$CAIRN" --repo "$SCRATCH/cairn-repo" backup "$COPY" >/dev/null
for ((r = 0; r < RUNS; r++)); do
    # The change's own writes are flushed first: the restore syncs the
    # filesystem, and must not be timed writing back the benchmark's edits.
    change; sync
    # The plan alone (the walk of the tree and the snapshot's manifest): the
    # least any in-place restore costs.
    timed "$CAIRN" --repo "$SCRATCH/cairn-repo" restore latest --in-place --delete --dry-run
    result "cairn in place: its plan alone (--dry-run)" "$WALL $RSS"
    timed "$CAIRN" --repo "$SCRATCH/cairn-repo" restore latest --in-place --delete
    result "cairn in place (--delete)" "$WALL $RSS"
    # What the safety snapshot costs, by its absence.
    change; sync
    timed "$CAIRN" --repo "$SCRATCH/cairn-repo" restore latest --in-place --delete --no-safety-snapshot
    result "cairn in place without safety snapshot" "$WALL $RSS"
    rm -rf "$SHM/full"
    timed "$CAIRN" --repo "$SCRATCH/cairn-repo" restore latest --target "$SHM/full"
    result "cairn full restore into an empty dir (tmpfs)" "$WALL $RSS"
    # The same disk as the tree, which the in-place restore writes to (and
    # syncs). A new directory each round: removing the last one first made
    # each restore slower than the one before (0.4 s, then 2-4.5 s on an
    # ext4 mounted with discard), timing the removal instead.
    sync
    timed "$CAIRN" --repo "$SCRATCH/cairn-repo" restore latest --target "$SCRATCH/full-$r"
    result "cairn full restore into an empty dir (same disk)" "$WALL $RSS"
done
rm -rf "$SCRATCH"/full-*
diff -r "$CORPUS" "$COPY" >/dev/null || { echo "cairn's rollback left differences" >&2; exit 1; }

if [[ -n $RUSTIC ]]; then
    log "rustic: first backup"
    "$RUSTIC" --no-progress -r "$SCRATCH/rustic-repo" init >/dev/null 2>&1
    "$RUSTIC" --no-progress -r "$SCRATCH/rustic-repo" backup "$COPY" >/dev/null 2>&1
    for ((r = 0; r < RUNS; r++)); do
        change; sync
        timed "$RUSTIC" --no-progress -r "$SCRATCH/rustic-repo" restore --delete "latest:$COPY" "$COPY"
        result "rustic restore --delete into the changed dir" "$WALL $RSS"
    done
    diff -r "$CORPUS" "$COPY" >/dev/null || { echo "rustic's restore left differences" >&2; exit 1; }
else
    log "rustic not found (RUSTIC=...): skipped"
fi

if command -v restic >/dev/null; then
    log "restic: first backup"
    restic --repo "$SCRATCH/restic-repo" init >/dev/null 2>&1
    restic --repo "$SCRATCH/restic-repo" backup "$COPY" >/dev/null 2>&1
    for ((r = 0; r < RUNS; r++)); do
        change; sync
        TOLERATE=1 timed restic --repo "$SCRATCH/restic-repo" restore latest --target /
        result "restic restore --target / (over the changed dir)" "$WALL $RSS"
        remove_added
    done
else
    log "restic not installed (apt-get install restic): skipped"
fi

echo
echo "corpus: $CORPUS ($N files), $CHANGED changed per run, median of $RUNS"
printf '%-52s %10s %10s\n' "step" "wall (s)" "peak MiB"
declare -A MEDIAN
for k in "cairn in place (--delete)" "cairn in place: its plan alone (--dry-run)" \
         "cairn in place without safety snapshot" \
         "cairn full restore into an empty dir (tmpfs)" \
         "cairn full restore into an empty dir (same disk)" \
         "rustic restore --delete into the changed dir" "restic restore --target / (over the changed dir)"; do
    [[ -n ${RESULTS[$k]:-} ]] || continue
    read -ra v <<<"${RESULTS[$k]}"
    walls=() rss=()
    for ((i = 0; i < ${#v[@]}; i += 2)); do walls+=("${v[i]}"); rss+=("${v[i+1]}"); done
    MEDIAN[$k]=$(median "${walls[@]}")
    printf '%-52s %10.3f %10s\n' "$k" "${MEDIAN[$k]}" "$(median "${rss[@]}")"
done
# Each in-place figure as a share of a full restore (target: the rollback
# at most 15%).
for k in "cairn in place (--delete)" "cairn in place without safety snapshot" \
         "cairn in place: its plan alone (--dry-run)"; do
    printf '%-52s %9s%% %9s%%  of a full restore (tmpfs, same disk)\n' "$k" \
        "$(awk -v a="${MEDIAN[$k]}" -v b="${MEDIAN["cairn full restore into an empty dir (tmpfs)"]}" 'BEGIN{printf "%.0f", 100*a/b}')" \
        "$(awk -v a="${MEDIAN[$k]}" -v b="${MEDIAN["cairn full restore into an empty dir (same disk)"]}" 'BEGIN{printf "%.0f", 100*a/b}')"
done

log "diff of two snapshots"
change
"$CAIRN" --repo "$SCRATCH/cairn-repo" backup "$COPY" >/dev/null
ids=$("$CAIRN" --repo "$SCRATCH/cairn-repo" snapshots --json | jq -r '[.[] | select(.rollback == null)] | .[-2:] | .[].id')
read -r A B <<<"$(echo $ids)"
walls=() rss=()
for ((r = 0; r < RUNS; r++)); do
    timed "$CAIRN" --repo "$SCRATCH/cairn-repo" diff "$A" "$B"
    walls+=("$WALL") rss+=("$RSS")
done
printf '%-52s %10.3f %10s\n' "cairn diff of two snapshots" "$(median "${walls[@]}")" "$(median "${rss[@]}")"
walls=() rss=()
for ((r = 0; r < RUNS; r++)); do
    timed "$CAIRN" --repo "$SCRATCH/cairn-repo" diff "$A"
    walls+=("$WALL") rss+=("$RSS")
done
printf '%-52s %10.3f %10s\n' "cairn diff of a snapshot with the tree now" "$(median "${walls[@]}")" "$(median "${rss[@]}")"
