//! Prune: frees what forgotten snapshots alone used, and a prune killed at
//! any point leaves a repository in which every kept snapshot restores.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cairn::repo::prune::{self, PruneOptions};
use cairn::sink::faulty::Fault;
use cairn::sink::{FaultySink, LocalSink, Sink};

use crate::util::*;

/// Six backups of a tree with one file that stays and one replaced each
/// time, then `forget --keep-last 2`. Returns the kept snapshots' ids with
/// a copy of the tree each one holds.
fn forgotten_history(env: &Env) -> Vec<(String, PathBuf)> {
    let src = env.path("src");
    // Large enough to fill whole frames, which a repack copies as they are.
    write(&src.join("stays"), &noise(2_500_000, 99));
    let mut made = Vec::new();
    for i in 0..6u64 {
        if i > 0 {
            fs::remove_file(src.join(format!("f{}", i - 1))).expect("rm");
        }
        write(&src.join(format!("f{i}")), &noise(300_000, i));
        let time = format!("2026-11-0{}T10:00:00+00:00", i + 1);
        let out = env.json(&["backup", src.to_str().expect("utf-8"), "--time", &time]);
        let copy = env.path(&format!("expected-{i}"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&copy)
            .status()
            .expect("cp");
        assert!(status.success());
        made.push((out["id"].as_str().expect("id").to_string(), copy));
    }
    env.ok(&["forget", "--keep-last", "2"]);
    made.split_off(4)
}

/// `check --read-data` passes and every kept snapshot restores as it was.
fn assert_whole(env: &Env, repo: &Path, kept: &[(String, PathBuf)], round: &str) {
    let mut cmd = env.cmd_without_repo();
    let out = cmd
        .arg("--repo")
        .arg(repo)
        .args(["check", "--read-data"])
        .output()
        .expect("check");
    assert_eq!(code(&out), 0, "{round}: check: {}{}", stdout(&out), stderr(&out));
    for (id, expected) in kept {
        let target = env.path(&format!("restored-{round}-{}", &id[..8]));
        let mut cmd = env.cmd_without_repo();
        let out = cmd
            .arg("--repo")
            .arg(repo)
            .args(["restore", id, "--target"])
            .arg(&target)
            .output()
            .expect("restore");
        assert_eq!(code(&out), 0, "{round}: restore {id}: {}", stderr(&out));
        assert_same_tree(expected, &target.join("tree/src"));
    }
}

#[test]
fn prune_frees_what_forgotten_snapshots_alone_used() {
    let env = Env::with_repo();
    let kept = forgotten_history(&env);
    let before = repo_files(&env.repo);
    let plan = env.json(&["prune", "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert!(plan["packs_deleted"].as_u64().expect("n") >= 2, "{plan}");
    assert_eq!(repo_files(&env.repo), before, "a dry run changes nothing");

    let size_before = du(&env.repo);
    let report = env.json(&["prune"]);
    assert_eq!(report["snapshots"], 2, "{report}");
    assert!(report["packs_repacked"].as_u64().expect("n") >= 1, "{report}");
    // The four replaced files (300 kB each, incompressible) are gone.
    assert!(
        du(&env.repo) + 1_000_000 < size_before,
        "the repository should shrink: {} -> {}",
        size_before,
        du(&env.repo)
    );
    assert_whole(&env, &env.repo, &kept, "after");
    // Nothing more to free: a second prune changes nothing.
    let again = repo_files(&env.repo);
    let report = env.json(&["prune"]);
    assert_eq!(report["packs_deleted"], 0, "{report}");
    assert_eq!(repo_files(&env.repo), again);
}

/// Prune on a copy of the repository, "killed" (every write and delete
/// fails) after `n` writes and deletes; then checked, then pruned again to
/// the end, and checked. Returns whether the killed prune finished anyway.
fn kill_then_finish(env: &Env, kept: &[(String, PathBuf)], n: usize) -> bool {
    let repo = env.path(&format!("killed-{n}"));
    let status = Command::new("cp")
        .arg("-a")
        .arg(&env.repo)
        .arg(&repo)
        .status()
        .expect("cp");
    assert!(status.success());
    let faulty = Arc::new(FaultySink::new(Arc::new(LocalSink::new(&repo))));
    faulty.inject(Fault::CrashAfter(n));
    let opened = crate::util::try_open(faulty as Arc<dyn Sink>).expect("open");
    let finished = prune::prune(&opened, &PruneOptions::default());
    let round = format!("killed after {n} writes and deletes");
    if let Err(e) = &finished {
        assert!(
            cairn::chain(e).contains("injected crash"),
            "{round}: {}",
            cairn::chain(e)
        );
    }
    assert_whole(env, &repo, kept, &round);
    if finished.is_ok() {
        return true;
    }
    let mut cmd = env.cmd_without_repo();
    let out = cmd.arg("--repo").arg(&repo).arg("prune").output().expect("prune");
    assert_eq!(code(&out), 0, "{round}: prune again: {}", stderr(&out));
    assert_whole(env, &repo, kept, &format!("{round}, then finished"));
    fs::remove_dir_all(&repo).expect("clean up");
    false
}

#[test]
fn a_prune_killed_at_any_point_leaves_every_kept_snapshot_whole() {
    let env = Env::with_repo();
    let kept = forgotten_history(&env);
    let mut points = 0;
    while !kill_then_finish(&env, &kept, points) {
        points += 1;
        assert!(points < 200, "prune never finished");
    }
    assert!(
        points >= 12,
        "prune should have been killed at a dozen points at least, not {points}"
    );
}

/// Killed just after it stored the repacked pack and its index file, a
/// prune left them beside the old ones; the next prune wrote the same pack
/// again (the same bytes, so the same name), counted the old copy among the
/// packs to delete, and deleted it: the snapshots lost those blobs.
#[test]
fn a_prune_after_a_killed_one_deleted_the_pack_it_had_just_rewritten() {
    let env = Env::with_repo();
    let kept = forgotten_history(&env);
    assert!(!kill_then_finish(&env, &kept, 2));
}

/// A real kill: `cairn prune` as a process, SIGKILLed after a growing
/// delay. Whatever it had done by then, every kept snapshot restores, its
/// lock is stale (its process is gone), and the next prune finishes.
#[test]
fn a_prune_process_killed_with_sigkill_leaves_a_valid_repository() {
    let env = Env::with_repo();
    let kept = forgotten_history(&env);
    for delay in [0u64, 5, 10, 20, 35, 50, 80, 120, 180, 260, 400, 600] {
        let repo = env.path(&format!("sigkill-{delay}"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(&env.repo)
            .arg(&repo)
            .status()
            .expect("cp");
        assert!(status.success());
        let mut child = env
            .cmd_without_repo()
            .arg("--repo")
            .arg(&repo)
            .arg("prune")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn prune");
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = child.kill();
        child.wait().expect("wait");
        let round = format!("killed after {delay} ms");
        assert_whole(&env, &repo, &kept, &round);
        let out = env
            .cmd_without_repo()
            .arg("--repo")
            .arg(&repo)
            .arg("prune")
            .output()
            .expect("prune");
        assert_eq!(code(&out), 0, "{round}: prune again: {}", stderr(&out));
        assert_whole(&env, &repo, &kept, &format!("{round}, then finished"));
        fs::remove_dir_all(&repo).expect("clean up");
    }
}
