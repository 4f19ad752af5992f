#!/usr/bin/env bash
# Whole-process benchmark: cairn vs restic vs borg vs tar|zstd on one corpus.
#
#   benches/compare.sh [--runs N] [--install-peers] [CORPUS_DIR]
#
# Env: CAIRN (binary, default ../target/release/cairn), TMPDIR (scratch, default /var/tmp).
# See benches/README.md.
set -euo pipefail
ORIG_ARGS=("$@")
export LC_ALL=C   # one decimal point for $EPOCHREALTIME, awk and sort

usage() {
    cat <<'EOF'
usage: compare.sh [--runs N] [--install-peers | --skip-peers] [CORPUS_DIR]

  CORPUS_DIR       directory to back up (default: Go 1.19 source tree from
                   the Debian package golang-1.19-src, installed if missing)
  --runs N         runs per measurement, the median is shown (default 3)
  --install-peers  apt-get update && apt-get install -y restic borgbackup first
  --skip-peers     measure cairn and the baselines only (quick comparisons
                   while working on cairn)

env: CAIRN=path/to/cairn (default: <repo>/target/release/cairn)
     TMPDIR=dir      scratch space for the corpus copy and repositories (default /var/tmp)
EOF
}

RUNS=3
INSTALL_PEERS=0
SKIP_PEERS=0
CORPUS=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --runs=*) RUNS=${1#--runs=}; shift ;;
        --install-peers) INSTALL_PEERS=1; shift ;;
        --skip-peers) SKIP_PEERS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
        *) [[ -z $CORPUS ]] || { echo "only one corpus directory" >&2; exit 2; }
           CORPUS=$1; shift ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive integer, got '$RUNS'" >&2; exit 2; }

log() { echo "[compare] $*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }
apt_install() {
    is_root || die "need root to apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; }
}

# ---------------------------------------------------------------- setup

if [[ $INSTALL_PEERS -eq 1 ]]; then
    is_root || die "--install-peers needs root"
    apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y restic borgbackup \
        libsecret-tools gnome-keyring dbus >&2
fi

# cairn_key (an encrypted repository opened by the unlock key `cairn key
# store` keeps, as a scheduled job opens it) needs a Secret Service: run on
# a private session bus, with a gnome-keyring whose files live in scratch,
# never in the user's own keyring.
if [[ -z ${CAIRN_BENCH_BUS:-} ]] && command -v dbus-run-session >/dev/null \
    && command -v gnome-keyring-daemon >/dev/null && command -v secret-tool >/dev/null; then
    export CAIRN_BENCH_BUS=1
    exec dbus-run-session -- bash "$0" "${ORIG_ARGS[@]}"
fi

[[ -x /usr/bin/time ]] || { log "installing the 'time' package"; apt_install time; }
if ! command -v zstd >/dev/null && is_root; then apt_install zstd || true; fi
HAVE_ZSTD=0; command -v zstd >/dev/null && HAVE_ZSTD=1

CAIRN=${CAIRN:-"$(dirname "$0")/../target/release/cairn"}
[[ -x $CAIRN ]] || die "no cairn binary at $CAIRN: run 'cargo build --release' first (or set CAIRN=...)"
CAIRN=$(realpath "$CAIRN")

go_src_dir() {
    local files
    files=$(dpkg -L golang-1.19-src 2>/dev/null) || return 0
    printf '%s\n' "$files" | grep -E '/go-1\.19/src$' | sed -n 1p
}
if [[ -z $CORPUS ]]; then
    CORPUS=$(go_src_dir)
    if [[ -z $CORPUS || ! -d $CORPUS ]]; then
        is_root || die "no corpus given and golang-1.19-src is not installed (apt-get install golang-1.19-src)"
        log "installing golang-1.19-src for the default corpus"
        apt_install golang-1.19-src
        CORPUS=$(go_src_dir)
        [[ -n $CORPUS && -d $CORPUS ]] || die "golang-1.19-src installed but its src dir was not found"
    fi
fi
[[ -d $CORPUS ]] || die "corpus $CORPUS is not a directory"
CORPUS=$(realpath "$CORPUS")

HAVE_RESTIC=0; command -v restic >/dev/null && HAVE_RESTIC=1
HAVE_BORG=0; command -v borg >/dev/null && HAVE_BORG=1
# rustic (restic's format, in Rust) is not a Debian package: `cargo install
# rustic-rs --no-default-features` puts it on PATH, or name it with $RUSTIC.
RUSTIC=${RUSTIC:-$(command -v rustic || true)}
HAVE_RUSTIC=0; [[ -n $RUSTIC && -x $RUSTIC ]] && HAVE_RUSTIC=1
[[ $HAVE_RESTIC -eq 1 ]] || log "restic not installed, skipping it (apt-get install restic, or --install-peers)"
[[ $HAVE_BORG -eq 1 ]] || log "borg not installed, skipping it (apt-get install borgbackup, or --install-peers)"
[[ $HAVE_RUSTIC -eq 1 ]] || log "rustic not installed, skipping it (cargo install rustic-rs --no-default-features, or set RUSTIC)"
[[ $SKIP_PEERS -eq 1 ]] && { log "--skip-peers: cairn and the baselines only"; HAVE_RESTIC=0; HAVE_BORG=0; HAVE_RUSTIC=0; }

# Scratch on disk (corpus copy, repositories); restore targets in /dev/shm if it fits.
SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/cairn-bench.XXXXXX")
SHM=""
cleanup() {
    local rc=$?
    sync
    [[ -n $SHM ]] && rm -rf -- "$SHM"
    rm -rf -- "$SCRATCH"
    sync
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

corpus_bytes=$(find "$CORPUS" -type f -printf '%s\n' | awk '{s+=$1} END{print s+0}')
corpus_files=$(find "$CORPUS" -type f | wc -l)
if [[ -d /dev/shm && -w /dev/shm ]]; then
    shm_avail=$(df --output=avail -B1 /dev/shm | tail -n1)
    if (( shm_avail > 3 * corpus_bytes )); then
        SHM=$(mktemp -d /dev/shm/cairn-bench-restore.XXXXXX)
    fi
fi
TARGET_BASE=${SHM:-$SCRATCH}

COPY=$SCRATCH/$(basename "$CORPUS")   # everything backs up this copy
REPO=$SCRATCH/repo                     # the repository (or tar.zst) being measured
TARGET=$TARGET_BASE/target             # restore target
TIMEFILE=$SCRATCH/time.out
LOGFILE=$SCRATCH/cmd.log

HAVE_KEYRING=0
if [[ ${CAIRN_BENCH_BUS:-} == 1 ]]; then
    mkdir -p "$SCRATCH/keyring"
    printf 'cairn-bench' | XDG_DATA_HOME=$SCRATCH/keyring gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1 || true
    # The daemon makes its login collection after it returns: wait for it.
    for _ in $(seq 100); do
        if printf x | secret-tool store --label probe cairn-bench ready 2>/dev/null; then HAVE_KEYRING=1; break; fi
        sleep 0.1
    done
fi
[[ $HAVE_KEYRING -eq 1 ]] || log "no Secret Service, skipping cairn_store (apt-get install libsecret-tools gnome-keyring dbus, or --install-peers)"

# Tools keep caches/config outside the repository: keep them in scratch too.
export RESTIC_PASSWORD=cairn-bench RESTIC_CACHE_DIR=$SCRATCH/restic-cache
export CAIRN_PASSWORD=cairn-bench
export RUSTIC_PASSWORD=cairn-bench RUSTIC_CACHE_DIR=$SCRATCH/rustic-cache
export BORG_BASE_DIR=$SCRATCH/borg-home
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
unset CAIRN_REPO RESTIC_REPOSITORY BORG_REPO

# ---------------------------------------------------------------- helpers

# Removes paths with care: on ext4 mounted with `discard`, writes stall after a
# large rm -rf, so flush before, and let the discards go out (sync) before
# anything is timed again.
careful_rm() {
    local p any=0
    for p in "$@"; do [[ -e $p || -L $p ]] && any=1; done
    [[ $any -eq 1 ]] || return 0
    sync
    rm -rf -- "$@"
    sync
}

# Runs a command untimed; its output goes to the log, shown on failure.
quiet() {
    if ! "$@" >"$LOGFILE" 2>&1; then
        log "setup FAILED: $*"
        tail -n 20 "$LOGFILE" | sed 's/^/    /' >&2
        return 1
    fi
}

# Runs a command under /usr/bin/time; sets T_WALL T_CPU T_RSS (KiB). Returns
# the command's status (borg's 1 means warnings: accepted). Wall time is
# taken from bash's microsecond clock: time(1) rounds to 10 ms, too coarse
# for a 40 ms backup of an unchanged tree.
timed() {
    local rc=0 user sys start end
    sync
    start=$EPOCHREALTIME
    /usr/bin/time -f '%e %U %S %M' -o "$TIMEFILE" "$@" >"$LOGFILE" 2>&1 || rc=$?
    end=$EPOCHREALTIME
    [[ $rc -eq 1 && " $* " == *" borg "* ]] && { log "borg warnings: $(grep -v '^$' "$LOGFILE" | tail -n 3 | tr '\n' ' ')"; rc=0; }
    if [[ $rc -ne 0 ]]; then
        log "FAILED (exit $rc): $*"
        tail -n 20 "$LOGFILE" | sed 's/^/    /' >&2
        return 1
    fi
    read -r _ user sys T_RSS < <(tail -n1 "$TIMEFILE")
    T_WALL=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.4f", b - a}')
    T_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{
        if (NR == 0) print "";
        else if (NR % 2) print a[(NR+1)/2];
        else print (a[NR/2] + a[NR/2+1]) / 2 }'
}

bytes_of() { du -sb -- "$1" | cut -f1; }

# Results, keyed "tool::step": space-separated values of each run.
declare -A R_WALL R_CPU R_RSS R_SIZE R_FAIL
ROWS=()

record() { # KEY SIZE_BYTES_OR_EMPTY
    R_WALL[$1]+="$T_WALL "; R_CPU[$1]+="$T_CPU "; R_RSS[$1]+="$T_RSS "
    [[ -n $2 ]] && R_SIZE[$1]+="$2 "
    log "  $1 run $run: wall ${T_WALL}s cpu ${T_CPU}s rss $((T_RSS / 1024))MiB${2:+ size $2 B}"
}
add_row() { local k; for k in "${ROWS[@]}"; do [[ $k == "$1" ]] && return; done; ROWS+=("$1"); }

# 1% of the files (at least one), picked evenly from the sorted list.
CHANGED=(); CHANGED_SIZE=()
pick_changed() {
    local all=() n step i
    mapfile -d '' all < <(find "$COPY" -type f -print0 | LC_ALL=C sort -z)
    n=${#all[@]}
    (( n > 0 )) || die "corpus has no regular files"
    local count=$(( n / 100 )); (( count >= 1 )) || count=1
    step=$(( n / count ))
    for (( i = 0; i < count; i++ )); do
        CHANGED+=("${all[i * step + step / 2]}")
        CHANGED_SIZE+=("$(stat -c %s -- "${all[i * step + step / 2]}")")
    done
}
apply_changes() {
    local f
    for f in "${CHANGED[@]}"; do echo "// cairn-bench: appended line" >>"$f"; done
}
revert_changes() {
    local i
    for i in "${!CHANGED[@]}"; do truncate -s "${CHANGED_SIZE[i]}" -- "${CHANGED[i]}"; done
}

# ---------------------------------------------------------------- tools
# Each TOOL_cmd STEP [ARCHIVE] sets CMD to the command line for init, backup,
# restore (into $TARGET) and check; TOOL_restored prints where the copy lands.

cairn_cmd() {
    case $1 in
        init)    CMD=("$CAIRN" --repo "$REPO" init) ;;
        backup)  CMD=("$CAIRN" --repo "$REPO" backup "$COPY") ;;
        restore) CMD=("$CAIRN" --repo "$REPO" restore latest --target "$TARGET") ;;
        check)   CMD=("$CAIRN" --repo "$REPO" check --read-data) ;;
        list)    CMD=("$CAIRN" --repo "$REPO" snapshots) ;;
    esac
}
cairn_restored() { echo "$TARGET/tree/$(basename "$COPY")"; }
cairn_clean() { :; }

# cairn with an encrypted repository (init --encrypt; CAIRN_PASSWORD): the
# same steps, to show what encryption costs.
cairn_enc_cmd() {
    case $1 in
        init) CMD=("$CAIRN" --repo "$REPO" init --encrypt) ;;
        *)    cairn_cmd "$@" ;;
    esac
}
cairn_enc_restored() { cairn_restored; }
cairn_enc_clean() { :; }

# cairn with an encrypted repository opened without its password, as an
# unattended job opens it: cairn_key by the unlock key `cairn key store
# --file` wrote (CAIRN_UNLOCK_KEY_FILE), cairn_store by the one `cairn key
# store` put in the OS credential store (Secret Service, read through
# secret-tool). Neither runs Argon2id.
cairn_key_cmd() {
    case $1 in
        init) CMD=(bash -c "$ENC_EMPTY"' && cp -a "$1" "$2"' _ "$SCRATCH/enc.empty" "$REPO") ;;
        *)    cairn_cmd "$@"; CMD=(env -u CAIRN_PASSWORD CAIRN_UNLOCK_KEY_FILE="$SCRATCH/enc.empty.key" "${CMD[@]}") ;;
    esac
}
cairn_key_restored() { cairn_restored; }
cairn_key_clean() { :; }
cairn_store_cmd() {
    case $1 in
        init) CMD=(bash -c "$ENC_EMPTY"' && cp -a "$1" "$2" && env -u CAIRN_PASSWORD CAIRN_UNLOCK_KEY_FILE="$1.key" "$CAIRN" --repo "$2" key store'
                   _ "$SCRATCH/enc.empty" "$REPO") ;;
        *)    cairn_cmd "$@"; CMD=(env -u CAIRN_PASSWORD "${CMD[@]}") ;;
    esac
}
# Both start from a copy of one empty encrypted repository, made once:
# `init --encrypt` and a password's `key store` run Argon2id (64 MiB),
# which just before a timed backup slows it by about a tenth (the next
# process's page faults and writes cost more), a cost a backup of an
# existing repository never pays. The copy's unlock key is the template's.
ENC_EMPTY='[[ -d "$1" ]] || { "$CAIRN" --repo "$1" init --encrypt && "$CAIRN" --repo "$1" key store --file "$1.key"; } >/dev/null 2>&1'
export CAIRN
cairn_store_restored() { cairn_restored; }
cairn_store_clean() { :; }

restic_cmd() {
    case $1 in
        init)    CMD=(restic --repo "$REPO" init) ;;
        backup)  CMD=(restic --repo "$REPO" backup "$COPY") ;;
        restore) CMD=(restic --repo "$REPO" restore latest --target "$TARGET") ;;
        check)   CMD=(restic --repo "$REPO" check --read-data) ;;
        list)    CMD=(restic --repo "$REPO" snapshots) ;;
    esac
}
restic_restored() { echo "$TARGET$COPY"; }
restic_clean() { careful_rm "$RESTIC_CACHE_DIR"; }

rustic_cmd() {
    case $1 in
        init)    CMD=("$RUSTIC" --no-progress -r "$REPO" init) ;;
        backup)  CMD=("$RUSTIC" --no-progress -r "$REPO" backup "$COPY") ;;
        restore) CMD=("$RUSTIC" --no-progress -r "$REPO" restore latest "$TARGET") ;;
        check)   CMD=("$RUSTIC" --no-progress -r "$REPO" check --read-data) ;;
        list)    CMD=("$RUSTIC" --no-progress -r "$REPO" snapshots) ;;
    esac
}
rustic_restored() { echo "$TARGET$COPY"; }
rustic_clean() { careful_rm "$RUSTIC_CACHE_DIR"; }

borg_cmd() {
    case $1 in
        init)    CMD=(borg init -e none "$REPO") ;;
        backup)  CMD=(borg create "$REPO::$2" "$COPY") ;;
        restore) CMD=(env -C "$TARGET" borg extract "$REPO::first") ;;
        check)   CMD=(borg check --verify-data "$REPO") ;;
        list)    CMD=(borg list "$REPO") ;;
    esac
}
borg_restored() { echo "$TARGET/${COPY#/}"; }
borg_clean() { careful_rm "$BORG_BASE_DIR"; }

# Fresh repository with nothing in it (old one removed before, not after).
fresh_repo() { # TOOL
    careful_rm "$REPO"
    "${1}_clean"
    "${1}_cmd" init
    quiet "${CMD[@]}"
}

# Sorted listing: path, type, mode, and for non-directories size and mtime.
listing() { (cd "$1" && find . \( -type d -printf '%P d %m\n' \) -o -printf '%P %y %m %s %T@\n' | LC_ALL=C sort); }

# Compares the restored tree with the corpus copy (content and file metadata).
verify_restore() { # TOOL
    local dir diffs meta
    dir=$("${1}_restored")
    if [[ ! -d $dir ]]; then log "  $1 restore: $dir not found"; VERIFY[$1]="restored tree not found at $dir"; return; fi
    diffs=$(diff -rq --no-dereference "$COPY" "$dir" 2>&1 | wc -l) || true
    meta=$(diff <(listing "$COPY") <(listing "$dir") | grep -c '^<') || true
    if [[ $diffs -eq 0 && $meta -eq 0 ]]; then
        VERIFY[$1]="identical (content, modes, file mtimes)"
        log "  $1 restore: ${VERIFY[$1]}"
    else
        VERIFY[$1]="$diffs content differences (diff -rq lines), $meta corpus entries not reproduced exactly (type/mode/size/mtime)"
        log "  $1 restore: ${VERIFY[$1]}"
        diff <(listing "$COPY") <(listing "$dir") | head -n 6 | sed 's/^/    /' >&2 || true
    fi
}
declare -A VERIFY

# Untimed first backup into a fresh repository.
prepared_repo() { # TOOL
    fresh_repo "$1" && "${1}_cmd" backup first && quiet "${CMD[@]}"
}

bench_tool() { # TOOL
    local tool=$1 key
    log "== $tool"

    key="$tool::backup (first)"; add_row "$key"
    for (( run = 1; run <= RUNS; run++ )); do
        if fresh_repo "$tool" && "${tool}_cmd" backup first && timed "${CMD[@]}"
        then record "$key" "$(bytes_of "$REPO")"; else R_FAIL[$key]=1; fi
    done
    # The last repository (one snapshot) serves restore and check.
    key="$tool::restore"; add_row "$key"
    for (( run = 1; run <= RUNS; run++ )); do
        careful_rm "$TARGET"; mkdir -p "$TARGET"
        if "${tool}_cmd" restore && timed "${CMD[@]}"
        then record "$key" ""; else R_FAIL[$key]=1; fi
    done
    [[ -n ${R_FAIL[$key]:-} ]] || verify_restore "$tool"
    careful_rm "$TARGET"
    key="$tool::check --read-data"; add_row "$key"
    for (( run = 1; run <= RUNS; run++ )); do
        if "${tool}_cmd" check && timed "${CMD[@]}"
        then record "$key" ""; else R_FAIL[$key]=1; fi
    done
    # What every command pays before it works: start-up, and for an
    # encrypted repository the password's key derivation.
    key="$tool::list snapshots"; add_row "$key"
    for (( run = 1; run <= RUNS; run++ )); do
        if "${tool}_cmd" list && timed "${CMD[@]}"
        then record "$key" ""; else R_FAIL[$key]=1; fi
    done

    key="$tool::backup (unchanged)"; add_row "$key"
    for (( run = 1; run <= RUNS; run++ )); do
        if prepared_repo "$tool" && "${tool}_cmd" backup second && timed "${CMD[@]}"
        then record "$key" "$(bytes_of "$REPO")"; else R_FAIL[$key]=1; fi
    done

    key="$tool::backup (1% changed)"; add_row "$key"
    for (( run = 1; run <= RUNS; run++ )); do
        if prepared_repo "$tool" && apply_changes && "${tool}_cmd" backup second && timed "${CMD[@]}"
        then record "$key" "$(bytes_of "$REPO")"; else R_FAIL[$key]=1; fi
        revert_changes
    done
    careful_rm "$REPO"; "${tool}_clean"
}

# shellcheck disable=SC2016 # ($1.. expand in the inner bash)
bench_baselines() {
    local key parent base
    parent=$(dirname "$COPY"); base=$(basename "$COPY")
    log "== baselines"
    if [[ $HAVE_ZSTD -eq 1 ]]; then
        key="tar | zstd -3 -T0::backup"; add_row "$key"
        for (( run = 1; run <= RUNS; run++ )); do
            careful_rm "$REPO"
            if timed bash -c 'set -o pipefail; tar -C "$1" -cf - "$2" | zstd -q -3 -T0 >"$3"' _ "$parent" "$base" "$REPO"
            then record "$key" "$(bytes_of "$REPO")"; else R_FAIL[$key]=1; fi
        done
        careful_rm "$REPO"
    fi
    key="tar | tar -x::restore (copy)"; add_row "$key"
    for (( run = 1; run <= RUNS; run++ )); do
        careful_rm "$TARGET"; mkdir -p "$TARGET"
        if timed bash -c 'set -o pipefail; tar -C "$1" -cf - "$2" | tar -xf - -C "$3"' _ "$parent" "$base" "$TARGET"
        then record "$key" ""; else R_FAIL[$key]=1; fi
    done
    careful_rm "$TARGET"
}

# ---------------------------------------------------------------- run

log "copying corpus $CORPUS to $COPY"
cp -a -- "$CORPUS" "$COPY"
sync
pick_changed

bench_tool cairn
bench_tool cairn_enc
bench_tool cairn_key
[[ $HAVE_KEYRING -eq 1 ]] && bench_tool cairn_store
[[ $HAVE_RESTIC -eq 1 ]] && bench_tool restic
[[ $HAVE_BORG -eq 1 ]] && bench_tool borg
[[ $HAVE_RUSTIC -eq 1 ]] && bench_tool rustic
bench_baselines

# ---------------------------------------------------------------- report

version_of() { "$@" 2>/dev/null | head -n1 || true; }
fs_of() { findmnt -f -n -o FSTYPE,OPTIONS --target "$1" 2>/dev/null | awk '{o=$2; gsub(/,/," ",o); d=(o ~ /(^| )discard( |$)/) ? ", discard" : ""; print $1 d}'; }

# Median of a column for a key, formatted; "-" when absent, "FAILED" when failed.
med() { # ARRAY KEY SCALE FORMAT
    local -n arr=$1
    if [[ -n ${R_FAIL[$2]:-} ]]; then echo FAILED; return; fi
    [[ -n ${arr[$2]:-} ]] || { echo -; return; }
    # shellcheck disable=SC2086
    awk -v v="$(median ${arr[$2]})" -v s="$3" -v f="$4" 'BEGIN{printf f, v / s}'
}
raw_med() { # ARRAY KEY -> median or empty
    local -n arr=$1
    [[ -z ${R_FAIL[$2]:-} && -n ${arr[$2]:-} ]] || return 0
    # shellcheck disable=SC2086
    median ${arr[$2]}
}
# Prints a/b as "0.42x" (or a percentage), "n/a" when either is missing.
ratio() { # A B [pct]
    if [[ -z $1 || -z $2 ]] || awk -v b="$2" 'BEGIN{exit !(b <= 0)}'; then echo "n/a"; return; fi
    if [[ ${3:-} == pct ]]; then awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f%%", 100 * a / b}'
    else awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", a / b}'; fi
}
wall() { raw_med R_WALL "$1"; }

echo
echo "== machine"
echo "cpus:    $(nproc) x $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory:  $(free -h | awk '/^Mem:/{print $2 " total, " $7 " available"}')"
echo "kernel:  $(uname -r)"
echo "scratch: $SCRATCH ($(fs_of "$SCRATCH")); restore target: $TARGET_BASE ($(fs_of "$TARGET_BASE"))"
echo
echo "== corpus"
echo "path:    $CORPUS"
echo "files:   $corpus_files regular files, $corpus_bytes bytes ($(awk -v b="$corpus_bytes" 'BEGIN{printf "%.1f MB", b/1e6}'))"
echo "changed: ${#CHANGED[@]} files (1%) get one line appended for the 1%-changed backup"
echo
echo "== versions"
echo "cairn:   $(version_of "$CAIRN" --version) ($CAIRN)"
if [[ $HAVE_RESTIC -eq 1 ]]; then echo "restic:  $(version_of restic version)"
else echo "restic:  not installed: apt-get install restic (or run with --install-peers)"; fi
if [[ $HAVE_BORG -eq 1 ]]; then
    bv=$(version_of borg --version)
    echo "borg:    $bv$([[ $bv == *" 1.2."* ]] || echo "  (note: expected BorgBackup 1.2)")"
else echo "borg:    not installed: apt-get install borgbackup (or run with --install-peers)"; fi
if [[ $HAVE_RUSTIC -eq 1 ]]; then echo "rustic:  $(version_of "$RUSTIC" --version)"
else echo "rustic:  not installed: cargo install rustic-rs --no-default-features (or set RUSTIC)"; fi
echo "tar:     $(version_of tar --version); zstd $([[ $HAVE_ZSTD -eq 1 ]] && zstd --version | grep -o 'v[0-9][0-9.]*' | sed -n 1p || echo 'not installed (apt-get install zstd)')"
echo
echo "== results (median of $RUNS run(s); warm cache: nothing dropped from the page cache)"
printf '%-20s %-20s %8s %8s %10s %9s\n' tool step "wall s" "cpu s" "peak MiB" "repo MB"
for key in "${ROWS[@]}"; do
    printf '%-20s %-20s %8s %8s %10s %9s\n' "${key%%::*}" "${key#*::}" \
        "$(med R_WALL "$key" 1 %.3f)" "$(med R_CPU "$key" 1 %.2f)" \
        "$(med R_RSS "$key" 1024 %.1f)" "$(med R_SIZE "$key" 1e6 %.1f)"
done
echo
echo "repo MB: du -sb of the repository after that backup (1 MB = 10^6 bytes)."
echo "Backups: every run starts from a fresh repository; unchanged/1% changed time only the second backup."
echo "Restore/check: the repository of the last first-backup run. Pipelines: peak MiB is the largest process."
echo "restic and rustic encrypt (AES-256, always on) and compress (repo v2, auto); borg runs with -e none (lz4);"
echo "cairn: a plain repository (zstd); cairn_enc: an encrypted one (XChaCha20-Poly1305) given its password (Argon2id, ~0.5 s"
echo "per command); cairn_key: the same, opened by an unlock key file (key store --file, CAIRN_UNLOCK_KEY_FILE);"
echo "cairn_store: opened by the unlock key in the OS credential store (key store; Secret Service through secret-tool);"
echo "tar|zstd is one stream with no dedup, index or verification."
echo
echo "== restored trees compared with the corpus"
for t in cairn cairn_enc cairn_key cairn_store restic borg rustic; do [[ -n ${VERIFY[$t]:-} ]] && echo "$t: ${VERIFY[$t]}"; done
echo
echo "== ratios (time ratios are wall-time: cairn / other; below 1 means cairn is faster)"
echo "cairn first backup vs tar|zstd:        $(ratio "$(wall 'cairn::backup (first)')" "$(wall 'tar | zstd -3 -T0::backup')")"
echo "cairn repo size vs tar.zst size:       $(ratio "$(raw_med R_SIZE 'cairn::backup (first)')" "$(raw_med R_SIZE 'tar | zstd -3 -T0::backup')")"
echo "cairn unchanged backup vs its first:   $(ratio "$(wall 'cairn::backup (unchanged)')" "$(wall 'cairn::backup (first)')" pct)"
echo "cairn 1%-changed backup vs its first:  $(ratio "$(wall 'cairn::backup (1% changed)')" "$(wall 'cairn::backup (first)')" pct)"
echo "cairn restore vs tar | tar -x:         $(ratio "$(wall 'cairn::restore')" "$(wall 'tar | tar -x::restore (copy)')")"
printf '%-22s %14s %14s %14s\n' step "cairn/restic" "cairn/borg" "cairn/rustic"
for step in "backup (first)" "backup (unchanged)" "backup (1% changed)" "restore" "check --read-data"; do
    vr="not run"; vb="not run"; vu="not run"
    [[ $HAVE_RESTIC -eq 1 ]] && vr=$(ratio "$(wall "cairn::$step")" "$(wall "restic::$step")")
    [[ $HAVE_BORG -eq 1 ]] && vb=$(ratio "$(wall "cairn::$step")" "$(wall "borg::$step")")
    [[ $HAVE_RUSTIC -eq 1 ]] && vu=$(ratio "$(wall "cairn::$step")" "$(wall "rustic::$step")")
    printf '%-22s %14s %14s %14s\n' "$step" "$vr" "$vb" "$vu"
done
echo
echo "== encryption (encrypted / plain cairn: what encryption costs; encrypted cairn / restic and rustic, which always encrypt)"
echo "key: cairn_key (unlock key file); store: cairn_store (credential store); pw: cairn_enc (password: Argon2id, ~0.5 s, every command)."
printf '%-22s %10s %11s %9s %11s %11s %10s %10s\n' step "key/plain" "store/plain" "pw/plain" "key/restic" "key/rustic" "pw/restic" "pw/rustic"
for step in "list snapshots" "backup (first)" "backup (unchanged)" "backup (1% changed)" "restore" "check --read-data"; do
    kr="not run"; ku="not run"; pr="not run"; pu="not run"
    if [[ $HAVE_RESTIC -eq 1 ]]; then
        kr=$(ratio "$(wall "cairn_key::$step")" "$(wall "restic::$step")")
        pr=$(ratio "$(wall "cairn_enc::$step")" "$(wall "restic::$step")")
    fi
    if [[ $HAVE_RUSTIC -eq 1 ]]; then
        ku=$(ratio "$(wall "cairn_key::$step")" "$(wall "rustic::$step")")
        pu=$(ratio "$(wall "cairn_enc::$step")" "$(wall "rustic::$step")")
    fi
    printf '%-22s %10s %11s %9s %11s %11s %10s %10s\n' "$step" \
        "$(ratio "$(wall "cairn_key::$step")" "$(wall "cairn::$step")")" \
        "$(ratio "$(wall "cairn_store::$step")" "$(wall "cairn::$step")")" \
        "$(ratio "$(wall "cairn_enc::$step")" "$(wall "cairn::$step")")" "$kr" "$ku" "$pr" "$pu"
done
if [[ $HAVE_RESTIC -eq 1 || $HAVE_BORG -eq 1 ]]; then
    echo "repo size, first backup: cairn/restic $(ratio "$(raw_med R_SIZE 'cairn::backup (first)')" "$(raw_med R_SIZE 'restic::backup (first)')")," \
         "cairn/borg $(ratio "$(raw_med R_SIZE 'cairn::backup (first)')" "$(raw_med R_SIZE 'borg::backup (first)')")"
fi
