#!/usr/bin/env bash
# What encryption costs cairn, measured in pairs: each round times a plain
# and an encrypted repository back to back (in alternating order), so that
# the drift of a shared machine falls on both alike. The encrypted one is
# opened by an unlock key file (`cairn key store --file`), as an unattended
# job opens it; what a password costs on top (Argon2id, about 0.5 s a
# command, on purpose) is compare.sh's `cairn_enc`.
#
#   benches/encryption.sh [--rounds N] [CORPUS_DIR]
#
# Env: CAIRN (binary, default ../target/release/cairn), TMPDIR (scratch).
# Prints, per step, the median of each side and the median of the per-round
# ratios encrypted/plain.
set -euo pipefail
export LC_ALL=C

ROUNDS=11
CORPUS=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=${2:?--rounds needs a number}; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) CORPUS=$1; shift ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "--rounds wants a positive integer" >&2; exit 2; }
CORPUS=${CORPUS:-/usr/share/go-1.19/src}
[[ -d $CORPUS ]] || { echo "no corpus at $CORPUS (apt-get install golang-1.19-src, or name a directory)" >&2; exit 1; }
CAIRN=$(realpath "${CAIRN:-"$(dirname "$0")/../target/release/cairn"}")
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-enc-bench.XXXXXX")
TARGETS=$SCRATCH
[[ -d /dev/shm && -w /dev/shm ]] && TARGETS=$(mktemp -d /dev/shm/cairn-enc-bench.XXXXXX)
trap 'rm -rf -- "$SCRATCH" "$TARGETS"' EXIT
# shellcheck source=benches/lib.sh
source "$(dirname "$0")/lib.sh"

COPY=$SCRATCH/corpus
cp -a -- "$CORPUS" "$COPY"
export HOME=$SCRATCH/home CAIRN_PASSWORD=cairn-bench
mkdir -p "$HOME"
KEY=$SCRATCH/unlock.key

# No `sync` before a timed command (compare.sh has one): with it the
# encrypted side came out 10-15% slower over 21 rounds, without it 4-6%, as
# `perf stat -r 10` of each side and 30 pairs of bare restores measured.
# Each side's empty repository is made once, and copied for every backup:
# `init --encrypt` and `key store` run Argon2id (64 MiB, half a second),
# which just before a timed command slows it by a tenth (page faults and
# writes of the next process cost more), a cost no backup of an existing
# repository pays.
"$CAIRN" --repo "$SCRATCH/plain.empty" init >/dev/null
"$CAIRN" --repo "$SCRATCH/enc.empty" init --encrypt >/dev/null 2>&1
"$CAIRN" --repo "$SCRATCH/enc.empty" key store --file "$KEY" >/dev/null

declare -A TIMES
# Runs STEP on SIDE (plain or enc): a fresh copy of the empty repository
# for a backup, the round's repository for restore, check, a second,
# unchanged backup and one after 1% of the files changed.
step() { # SIDE STEP
    local repo=$SCRATCH/$1 run=("$CAIRN")
    [[ $1 == enc ]] && run=(env -u CAIRN_PASSWORD CAIRN_UNLOCK_KEY_FILE="$KEY" "$CAIRN")
    case $2 in
        backup) rm -rf -- "$repo"
                cp -a -- "$SCRATCH/$1.empty" "$repo"
                timed "${run[@]}" --repo "$repo" backup "$COPY" ;;
        restore) rm -rf -- "$TARGETS/$1"
                 timed "${run[@]}" --repo "$repo" restore latest --target "$TARGETS/$1" ;;
        check) timed "${run[@]}" --repo "$repo" check --read-data ;;
        unchanged|changed) timed "${run[@]}" --repo "$repo" backup "$COPY" ;;
    esac
    TIMES[$1:$2]+="$WALL "
}

# 1% of the files (every 100th, sorted) get a line appended before the
# "changed" pair, and are cut back to their size after it.
mapfile -t CHANGED < <(find "$COPY" -type f | LC_ALL=C sort | awk 'NR % 100 == 0')
declare -A SIZES
for f in "${CHANGED[@]}"; do SIZES[$f]=$(stat -c %s "$f"); done
change() { for f in "${CHANGED[@]}"; do echo "// encryption.sh: appended" >>"$f"; done; }
revert() { for f in "${CHANGED[@]}"; do truncate -s "${SIZES[$f]}" "$f"; done; }

STEPS=(backup restore check unchanged changed)
declare -A RATIOS
for (( round = 1; round <= ROUNDS; round++ )); do
    for s in "${STEPS[@]}"; do
        [[ $s == changed ]] && change
        if (( round % 2 )); then step plain "$s"; a=$WALL; step enc "$s"; b=$WALL
        else step enc "$s"; b=$WALL; step plain "$s"; a=$WALL; fi
        RATIOS[$s]+="$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.4f", b / a}') "
        [[ $s == changed ]] && revert
    done
    echo "[encryption] round $round of $ROUNDS done" >&2
done

echo "== cairn encrypted (unlock key file) against plain, $ROUNDS rounds of pairs, $(nproc) cpus"
echo "corpus: $CORPUS ($(find "$COPY" -type f | wc -l) files)"
printf '%-10s %10s %10s %16s %22s\n' step "plain s" "enc s" "enc/plain (med)" "per-round ratios"
for s in "${STEPS[@]}"; do
    # shellcheck disable=SC2086
    printf '%-10s %10.3f %10.3f %15.1f%% %22s\n' "$s" "$(median ${TIMES[plain:$s]})" \
        "$(median ${TIMES[enc:$s]})" "$(awk -v r="$(median ${RATIOS[$s]})" 'BEGIN{print 100 * (r - 1)}')" \
        "$(printf '%s\n' ${RATIOS[$s]} | sort -g | sed -n '1p;$p' | tr '\n' ' ')"
done
