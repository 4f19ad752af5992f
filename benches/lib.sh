# Shared by the benchmark scripts (sourced; they set SCRATCH first).

# Runs a command; sets WALL (s) and RSS (MiB). With TOLERATE=1 a failing
# command is timed all the same (restic 0.14 will not restore a symlink
# over an existing one, and says so with a non-zero exit). Its output is
# left in $SCRATCH/cmd.log.
timed() {
    local out=$SCRATCH/time.out start end
    start=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$out" "$@" >"$SCRATCH/cmd.log" 2>&1 ||
        [[ ${TOLERATE:-0} == 1 ]] || { cat "$SCRATCH/cmd.log" >&2; return 1; }
    end=$EPOCHREALTIME
    WALL=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f", b - a }')
    RSS=$(( $(tail -1 "$out") / 1024 ))
}

# The median of numbers.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
