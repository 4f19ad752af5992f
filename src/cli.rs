//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Snapshots before risky changes, rollback in one command"
)]
pub struct Cli {
    /// Repository: a directory, or s3:https://HOST[:PORT]/BUCKET[/PREFIX], s3:BUCKET[/PREFIX] (AWS)
    /// [default: the platform data dir, e.g. ~/.local/share/cairn/repo]
    #[arg(long, short = 'r', global = true, env = "CAIRN_REPO", value_name = "PATH|URL")]
    pub repo: Option<PathBuf>,

    /// A store setting, e.g. --option s3.connections=8 --option s3.region=eu-west-1 (README, "S3")
    #[arg(long = "option", global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,

    /// Wait this long for a lock another process holds, e.g. 30s, 5m, 1h
    /// (default: fail at once)
    #[arg(long, global = true, value_name = "DURATION")]
    pub retry_lock: Option<String>,

    /// A command that prints the password of an encrypted repository
    /// (e.g. `pass show cairn`); see README, "Encryption", for the others
    #[arg(long, global = true, env = "CAIRN_PASSWORD_COMMAND", value_name = "CMD")]
    pub password_command: Option<String>,

    /// More logging on stderr (-v info, -vv debug, -vvv trace)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository (refuses to touch an existing one)
    Init(InitArgs),
    /// Save paths into a new snapshot
    Backup(BackupArgs),
    /// List snapshots
    Snapshots(SnapshotsArgs),
    /// List the entries of a snapshot
    Ls(LsArgs),
    /// The facts a snapshot recorded about the machine (tool versions ...)
    Facts(FactsArgs),
    /// Rebuild a snapshot under a directory, or write it back in place
    Restore(RestoreArgs),
    /// What changed between two snapshots, or between a snapshot and now
    Diff(DiffArgs),
    /// Snapshot, run a command, snapshot again, and show what it changed
    /// (`cairn run -p go-toolchain -- ./upgrade-go.sh`)
    Run(RunArgs),
    /// Write a snapshot as one .tar.zst that tar and zstd unpack anywhere
    Export(ExportArgs),
    /// Verify the repository
    Check(CheckArgs),
    /// Copy snapshots into another repository (only the blobs it lacks)
    Copy(CopyArgs),
    /// Remove snapshots by a keep policy (restic's rules), or by id
    Forget(Box<ForgetArgs>),
    /// Free the space of data no snapshot uses (after forget)
    Prune(PruneArgs),
    /// Remove locks left by processes that are gone
    Unlock(UnlockArgs),
    /// The passwords of an encrypted repository: list, add, remove, change
    #[command(subcommand)]
    Key(KeyCommand),
    /// Rebuild the index from the packs, or rewrite snapshots whose data
    /// is lost (what `check` advises)
    #[command(subcommand)]
    Repair(RepairCommand),
    /// List, show and check profiles
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Run a profile's backup, retention and prune on a schedule (cron,
    /// systemd, launchd, Task Scheduler)
    #[command(subcommand)]
    Schedule(ScheduleCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// The keys (passwords) that open the repository; `*` marks the one used
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add a password. The new one comes from CAIRN_NEW_PASSWORD_FILE,
    /// CAIRN_NEW_PASSWORD, or is asked twice on a terminal
    Add,
    /// Remove a key by its id (or a unique prefix); never the last one,
    /// nor the one this command opened the repository with
    Remove { id: String },
    /// Change the password: add the new key, then remove the one used
    Passwd,
    /// Keep an unlock key (not the password) in the OS credential store
    /// (Secret Service, Keychain, Credential Manager), or in a file
    /// (--file), where unattended jobs find it
    Store {
        /// Remove it instead
        #[arg(long)]
        remove: bool,
        /// Write it to this file (mode 0600) instead; jobs name it with
        /// CAIRN_UNLOCK_KEY_FILE
        #[arg(long, value_name = "PATH")]
        file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Encrypt the repository (the default for S3 and NAS; README, "Encryption")
    #[arg(long, conflicts_with = "no_encrypt")]
    pub encrypt: bool,
    /// Keep an S3 or NAS repository plain: whoever can read the bucket or
    /// share can read every file saved in it
    #[arg(long)]
    pub no_encrypt: bool,
}

/// When and where a scheduled job runs.
#[derive(Debug, Args, Clone)]
pub struct JobArgs {
    /// The profile whose backup runs (by name)
    #[arg(long, short = 'p', value_name = "NAME")]
    pub profile: String,
    /// hourly, daily, weekly, monthly, or a cron expression (cron only)
    #[arg(long, value_name = "WHEN", default_value = "daily")]
    pub every: String,
    /// The time of day, e.g. 03:00 (with hourly: the minute, :15)
    #[arg(long, value_name = "HH:MM")]
    pub at: Option<String>,
    /// The day of a weekly job, e.g. sun
    #[arg(long, value_name = "DAY")]
    pub on: Option<String>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Which scheduler, for whom.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// cron, systemd, launchd or windows (default: this platform's)
    #[arg(long, value_name = "SCHEDULER")]
    pub backend: Option<String>,
    /// For the whole machine (root; SYSTEM on Windows), not the user
    #[arg(long)]
    pub system: bool,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Install the job (replacing one of the same profile)
    Install {
        #[command(flatten)]
        job: JobArgs,
        /// Print what would be installed; change nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
    },
    /// Print exactly what install writes
    Show {
        #[command(flatten)]
        job: JobArgs,
    },
    /// Take the job away
    Remove {
        #[arg(long, short = 'p', value_name = "NAME")]
        profile: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The last runs, their outcome, and when the next is due
    Status {
        #[arg(long, short = 'p', value_name = "NAME")]
        profile: String,
        #[arg(long)]
        json: bool,
    },
    /// What the scheduler runs: the backup, then retention and prune; the
    /// outcome goes to the run log
    Run {
        #[arg(long, short = 'p', value_name = "NAME")]
        profile: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// Your profiles (~/.config/cairn/profiles) and the built-in ones
    List {
        #[arg(long)]
        json: bool,
    },
    /// A profile as it would run here: paths expanded, what exists and what not
    Show {
        #[arg(value_name = "NAME|FILE")]
        profile: String,
        #[arg(long)]
        json: bool,
    },
    /// Check profile files; exits 1 if any is invalid
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write an editable copy of a built-in profile into ~/.config/cairn/profiles
    New {
        #[arg(value_name = "NAME")]
        name: String,
        /// The built-in profile to start from
        #[arg(long, value_name = "BUILTIN")]
        from: String,
    },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files and directories to save (with --profile: added as trees)
    #[arg(required_unless_present = "profiles", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Save what a profile names: a name (from ~/.config/cairn/profiles, then
    /// the built-ins: go-toolchain, node, python, dotfiles, web-app) or a file
    /// (repeatable: one snapshot per profile)
    #[arg(long = "profile", short = 'p', value_name = "NAME|FILE")]
    pub profiles: Vec<String>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Leave out matching paths (repeatable; gitignore-like, see README)
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Record this time instead of now (RFC 3339, e.g. 2026-11-24T10:30:00+01:00)
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Which part of a snapshot a command works on (gitignore-like patterns,
/// matched inside each root and against the whole manifest path).
#[derive(Debug, Args, Clone, Default)]
pub struct SelectArgs {
    /// Only matching paths and what is inside them (repeatable)
    #[arg(long = "include", short = 'i', value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out matching paths and what is inside them (repeatable)
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    pub exclude: Vec<String>,
}

/// Which snapshots a command considers; a reference such as `latest` is
/// resolved among these only.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots from this host (repeatable: any of them)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with all of these tags (repeatable: any of the lists)
    #[arg(long = "tag", value_name = "TAG[,TAG...]")]
    pub tags: Vec<String>,
    /// Only snapshots of this profile (repeatable: any of them)
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> cairn::repo::snapshot::Filter {
        cairn::repo::snapshot::Filter {
            hosts: self.hosts.clone(),
            tags: self
                .tags
                .iter()
                .map(|list| {
                    list.split(',')
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                })
                .collect(),
            profiles: self.profiles.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Add a column with this fact (repeatable), e.g. --fact go.version
    #[arg(long = "fact", value_name = "NAME")]
    pub facts: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long)]
    pub json: bool,
}

/// A keep policy, as restic's `forget` spells it. Counts take -1 for
/// unlimited; spans are like 1y2m3d4h.
#[derive(Debug, Args, Clone, Default)]
pub struct KeepArgs {
    /// Keep the last N snapshots
    #[arg(short = 'l', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_last: Option<i64>,
    /// Keep the last N hourly snapshots (the newest of each hour)
    #[arg(short = 'H', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_hourly: Option<i64>,
    /// Keep the last N daily snapshots
    #[arg(short = 'd', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_daily: Option<i64>,
    /// Keep the last N weekly snapshots (ISO weeks)
    #[arg(short = 'w', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_weekly: Option<i64>,
    /// Keep the last N monthly snapshots
    #[arg(short = 'm', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_monthly: Option<i64>,
    /// Keep the last N yearly snapshots
    #[arg(short = 'y', long, value_name = "N", allow_negative_numbers = true)]
    pub keep_yearly: Option<i64>,
    /// Keep snapshots newer than this span before the newest (e.g. 1y5m7d2h)
    #[arg(long, value_name = "SPAN")]
    pub keep_within: Option<String>,
    /// Keep hourly snapshots within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_hourly: Option<String>,
    /// Keep daily snapshots within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_daily: Option<String>,
    /// Keep weekly snapshots within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_weekly: Option<String>,
    /// Keep monthly snapshots within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_monthly: Option<String>,
    /// Keep yearly snapshots within this span of the newest
    #[arg(long, value_name = "SPAN")]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with all of these tags (repeatable: any of the lists)
    #[arg(long, value_name = "TAG[,TAG...]")]
    pub keep_tag: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Snapshots to remove by id (instead of a policy)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub keep: KeepArgs,
    /// Group snapshots by these before applying the policy to each group
    /// (host, profile, paths, tags, or none)
    #[arg(long, short = 'g', value_name = "FIELDS", default_value = "host,profile")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only snapshots that hold this path (repeatable: all of them)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
    /// Show what would be removed; remove nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Allow a policy to remove every snapshot of a group
    #[arg(long)]
    pub allow_empty: bool,
    /// Prune afterwards (under the same lock)
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_opts: PruneOpts,
    #[arg(long)]
    pub json: bool,
}

/// How much prune repacks.
#[derive(Debug, Args, Clone)]
pub struct PruneOpts {
    /// Unused data to tolerate, as a share of what is used (`5%`), or
    /// `unlimited` (only packs with nothing used are deleted)
    #[arg(long, value_name = "PERCENT", default_value = "5%")]
    pub max_unused: String,
    /// Repack at most this much (e.g. 2GiB)
    #[arg(long, value_name = "SIZE")]
    pub max_repack_size: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index: drop damaged index files and packs that are
    /// gone, and index every pack no index lists, from its own tar headers
    Index {
        /// Trust no index file: read every pack and index what it holds
        /// (after `check --read-data` found damage inside packs)
        #[arg(long)]
        read_all_packs: bool,
        /// Say what would change; change nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Rewrite snapshots that need lost data without the files that are
    /// gone (tagged `repaired`, naming them); remove those whose manifest is
    /// lost. Run `repair index` first.
    Snapshots {
        /// Say what would change; change nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub opts: PruneOpts,
    /// Show what would be freed; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FactsArgs {
    /// `latest`, an id prefix, or a time prefix such as 2026-11-24T10:30
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// `latest`, an id prefix, or a time prefix such as 2026-11-24T10:30
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["target", "in_place", "undo", "env_script"])))]
pub struct RestoreArgs {
    /// `latest`, an id prefix, or a time prefix such as 2026-11-24T10:30
    #[arg(
        value_name = "SNAPSHOT",
        required_unless_present = "undo",
        conflicts_with = "undo"
    )]
    pub snapshot: Option<String>,
    /// Directory to rebuild the snapshot under (created if missing)
    #[arg(long, short = 't', value_name = "DIR")]
    pub target: Option<PathBuf>,
    /// Write the snapshot back over the paths it was taken from, after a
    /// safety snapshot of what it changes
    #[arg(long)]
    pub in_place: bool,
    /// Take back the last in-place restore: put its safety snapshot back
    #[arg(long)]
    pub undo: bool,
    /// Print a script that sets the snapshot's environment variables again
    /// (sh, powershell or cmd); secrets are left out, named in a comment
    #[arg(long, value_name = "SHELL")]
    pub env_script: Option<cairn::restore::envscript::Shell>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// With --in-place: only this root (`tree/go` or `go`; repeatable)
    #[arg(long = "root", value_name = "NAME", requires = "in_place")]
    pub roots: Vec<String>,
    /// With --target: write over files that differ from the snapshot
    /// (without it, a restore that would lose such files refuses and lists them)
    #[arg(long, conflicts_with = "in_place")]
    pub overwrite: bool,
    /// Remove what lies under the snapshot's roots but is not in the snapshot
    #[arg(long)]
    pub delete: bool,
    /// Compare files by content hash instead of size and modification time
    #[arg(long)]
    pub checksum: bool,
    /// When the repository has lost some files' data, restore everything
    /// else (those files are named, and the exit code is 3) instead of
    /// refusing
    #[arg(long)]
    pub ignore_damaged: bool,
    /// Show what would be created, overwritten, deleted; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --in-place: do not take a safety snapshot first (no undo)
    #[arg(long)]
    pub no_safety_snapshot: bool,
    /// With --in-place: do not read back the files written
    #[arg(long)]
    pub no_verify: bool,
    /// With --in-place: a shell command that must succeed afterwards, or
    /// everything is rolled back (e.g. 'go version', 'nginx -t')
    #[arg(long, value_name = "CMD")]
    pub check: Option<String>,
    /// Seconds the --check command may run before it counts as failed
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub check_timeout: u64,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The snapshot to compare from (`latest`, an id prefix, a time prefix)
    #[arg(value_name = "A")]
    pub a: String,
    /// The snapshot to compare to [default: the machine now]
    #[arg(value_name = "B")]
    pub b: Option<String>,
    /// Only counts per root, not each path
    #[arg(long)]
    pub stat: bool,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A profile that names what the command may change (repeatable)
    #[arg(long = "profile", short = 'p', value_name = "NAME|FILE")]
    pub profiles: Vec<String>,
    /// Paths the command may change (added as trees)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Tag both snapshots (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Leave out matching paths (repeatable; as for backup)
    #[arg(long = "exclude", short = 'e', value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// When the command fails (or --check does), restore the pre snapshot
    /// in place; the post snapshot is its safety snapshot
    #[arg(long)]
    pub rollback_on_failure: bool,
    /// A shell command that must succeed after a successful command
    #[arg(long, value_name = "CMD")]
    pub check: Option<String>,
    /// Seconds the --check command may run
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub check_timeout: u64,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `latest`, an id prefix, or a time prefix such as 2026-11-24T10:30
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// The archive to write (replaced if it exists), or - for standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also re-read every pack and re-hash every blob
    #[arg(long)]
    pub read_data: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Snapshots to copy (ids, id prefixes or `latest`)
    #[arg(value_name = "REF", required_unless_present = "all", conflicts_with = "all")]
    pub snapshots: Vec<String>,
    /// Copy every snapshot (of --tag/--host/--profile, when given)
    #[arg(long)]
    pub all: bool,
    /// The repository to copy from [default: --repo]
    #[arg(long, value_name = "PATH|URL")]
    pub from: Option<PathBuf>,
    /// The repository to copy into (it must exist: `cairn init`)
    #[arg(long, value_name = "PATH|URL")]
    pub to: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones (make sure no cairn is running)
    #[arg(long)]
    pub remove_all: bool,
}
