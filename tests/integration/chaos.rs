//! Faults at a share of every store operation (`CAIRN_FAULTS`: reads,
//! writes, lists and deletes that fail, answers lost after a write, reads
//! garbled or cut short), on every sink kind. Every command either succeeds
//! through its retries or fails with a clear message; afterwards, without
//! faults, the repository checks whole and every snapshot a command
//! reported saved restores byte for byte.
//!
//! Short form in `cargo test` (three seeds per sink kind);
//! `CAIRN_CHAOS_SEEDS=200` runs more. Each seed is printed, and
//! `CAIRN_CHAOS_SEED=N` runs that one alone.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::s3server::{aws_env, S3Server};
use crate::util::*;

/// Where the repository is, and how to reach it.
struct Store {
    repo: String,
    s3: bool,
}

fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("CAIRN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![one];
    }
    let n = std::env::var("CAIRN_CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3u64);
    (1..=n).collect()
}

fn cairn(env: &Env, store: &Store, faults: Option<&str>, args: &[&str]) -> Output {
    let mut cmd: Command = env.cmd_without_repo();
    cmd.arg("--repo").arg(&store.repo);
    if store.s3 {
        aws_env(&mut cmd, env.dir.path());
        // Retries wait less than against a real service.
        cmd.args(["--option", "s3.retry-time=20"]);
    }
    match faults {
        Some(f) => cmd.env("CAIRN_FAULTS", f),
        None => cmd.env_remove("CAIRN_FAULTS"),
    };
    cmd.args(args).output().expect("run cairn")
}

/// What a faulty run may end with: success, or a failure that says what
/// failed in a line or two (never a panic, never silence).
fn judge(out: &Output, what: &str, seed: u64) -> bool {
    let err = stderr(out);
    match code(out) {
        0 => true,
        101 => panic!("seed {seed}: {what} panicked: {err}"),
        c => {
            let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
            assert!(
                !errors.is_empty(),
                "seed {seed}: {what} exited {c} without an error line: {err}"
            );
            println!("  seed {seed}: {what} failed (exit {c}): {}", errors[0]);
            false
        }
    }
}

/// What the faulty runs did.
#[derive(Default)]
struct Tally {
    injected: u64,
    commands: u64,
    failed: u64,
}

impl Tally {
    /// Counts a run; returns whether it succeeded.
    fn run(&mut self, out: &Output, what: &str, seed: u64) -> bool {
        self.injected += count_injected(out);
        self.commands += 1;
        let ok = judge(out, what, seed);
        self.failed += u64::from(!ok);
        ok
    }
}

/// One seed: backups of a changing tree, a restore, check, forget and
/// prune, all under faults; then the proof, without them.
fn round(env: &Env, store: &Store, seed: u64, tally: &mut Tally) {
    // Each command draws its own faults (the same for a seed each time).
    let mut calls = 0u64;
    let mut faults = || {
        calls += 1;
        format!("seed={},all=0.1,garble=0.05,short=0.05", seed * 1000 + calls)
    };
    let src = env.path(&format!("src{seed}"));
    let mut saved: Vec<(String, BTreeMap<PathBuf, String>)> = Vec::new();
    for step in 0..4u64 {
        for i in 0..12u64 {
            let size = 1_000 + ((seed * 7919 + step * 104_729 + i * 613) % 150_000) as usize;
            if (i + step) % 3 != 0 || step == 0 {
                write(
                    &src.join(format!("d{}/f{i}", i % 3)),
                    &noise(size, seed * 1000 + step * 100 + i),
                );
            }
        }
        let out = cairn(
            env,
            store,
            Some(&faults()),
            &["backup", src.to_str().unwrap(), "--json"],
        );
        if tally.run(&out, "backup", seed) {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("seed {seed}: backup --json: {e}: {}", stdout(&out)));
            let id = json["id"].as_str().expect("id").to_string();
            saved.push((id, file_hashes(&src)));
        }
    }
    let target = env.path(&format!("out{seed}"));
    let out = cairn(
        env,
        store,
        Some(&faults()),
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    if tally.run(&out, "restore", seed) {
        if let Some((_, files)) = saved.last() {
            assert_eq!(
                &file_hashes(&target.join(tree_of(&src))),
                files,
                "seed {seed}: restore under faults"
            );
        }
    }
    for args in [
        &["check", "--read-data"][..],
        &["forget", "--keep-last", "2", "--prune"][..],
    ] {
        let out = cairn(env, store, Some(&faults()), args);
        tally.run(&out, args[0], seed);
    }
    prove(env, store, seed, &saved, &src);
}

/// `tree/<last component>`: where a tree root restores.
fn tree_of(src: &Path) -> PathBuf {
    Path::new("tree").join(src.file_name().unwrap())
}

/// Without faults: the repository checks whole, and every snapshot that
/// was reported saved and still exists restores byte for byte.
fn prove(env: &Env, store: &Store, seed: u64, saved: &[(String, BTreeMap<PathBuf, String>)], src: &Path) {
    // A command stopped by a fault may leave its lock; a later one would
    // wait for it to go stale.
    cairn(env, store, None, &["unlock"]);
    let out = cairn(env, store, None, &["check", "--read-data"]);
    assert_eq!(code(&out), 0, "seed {seed}: check after faults: {}", stderr(&out));
    let listed = cairn(env, store, None, &["snapshots", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("snapshots --json");
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for (id, files) in saved {
        if !listed.contains(&id.as_str()) {
            continue; // forgotten by the keep policy
        }
        let target = env.path(&format!("proof{seed}-{}", &id[..8]));
        let out = cairn(
            env,
            store,
            None,
            &["restore", id, "--target", target.to_str().unwrap()],
        );
        assert_eq!(code(&out), 0, "seed {seed}: restore {id}: {}", stderr(&out));
        assert_eq!(
            &file_hashes(&target.join(tree_of(src))),
            files,
            "seed {seed}: snapshot {id}"
        );
    }
}

/// The faults a run reports it injected (its `cairn: injected faults:` line).
fn count_injected(out: &Output) -> u64 {
    stderr(out)
        .lines()
        .filter_map(|l| l.strip_prefix("cairn: injected faults: "))
        .flat_map(|l| l.split(", "))
        .filter_map(|part| part.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn run_seeds(env: &Env, store: &Store, kind: &str) {
    let out = cairn(env, store, None, &["init", crate::util::init_flag()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut tally = Tally::default();
    let seeds = seeds();
    for &seed in &seeds {
        println!("{kind}: seed {seed} (CAIRN_CHAOS_SEED={seed} runs it alone)");
        round(env, store, seed, &mut tally);
    }
    println!(
        "{kind}: {} seeds, {} faults injected into {} commands ({} failed with a clear error, the rest succeeded); nothing lost",
        seeds.len(),
        tally.injected,
        tally.commands,
        tally.failed
    );
    assert!(
        tally.injected > 0,
        "no fault was injected: the test tested nothing"
    );
}

#[test]
fn faults_on_a_local_store_lose_nothing() {
    let env = Env::new();
    let store = Store {
        repo: env.repo.display().to_string(),
        s3: false,
    };
    run_seeds(&env, &store, "local");
}

#[test]
fn faults_on_an_s3_store_lose_nothing() {
    let server = S3Server::start();
    let env = Env::new();
    let store = Store {
        repo: server.url("chaos/repo"),
        s3: true,
    };
    run_seeds(&env, &store, "s3");
}

#[test]
fn faults_on_a_nas_store_lose_nothing() {
    if let Some(why) = crate::nas::missing_tools() {
        skip(&why);
        return;
    }
    let env = Env::new();
    let exported = env.path("exported");
    fs::create_dir_all(&exported).unwrap();
    let share = crate::nas::mount_share(env.dir.path(), &exported, "");
    let store = Store {
        repo: share.mount.join("cairn").display().to_string(),
        s3: false,
    };
    run_seeds(&env, &store, "nas");
}
