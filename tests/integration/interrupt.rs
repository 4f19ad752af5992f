//! A backup killed at any point leaves a repository that checks clean and in
//! which every earlier snapshot restores.

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use crate::util::*;

fn corpus(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    for d in 0..8 {
        for f in 0..40 {
            let size = if f % 10 == 0 { 2 << 20 } else { 20_000 + f * 997 };
            write(
                &src.join(format!("d{d}/f{f}")),
                &noise(size, (d * 100 + f) as u64),
            );
        }
    }
    src
}

#[test]
fn a_killed_backup_leaves_the_repository_valid() {
    let env = Env::with_repo();
    let src = corpus(&env);
    let first = env.path("first");
    fs::create_dir_all(&first).unwrap();
    fs::copy(src.join("d0/f1"), first.join("kept")).unwrap();
    env.backup(&[&first]);

    let mut killed_mid_write = 0;
    // 0: the moment a new pack lands (the index and record, each stalled
    // 40 ms, are still to come), whatever this machine's speed.
    for (i, delay_ms) in [30u64, 120, 300, 0].into_iter().enumerate() {
        // Change some data each round so every attempt has new packs to write.
        write(&src.join(format!("round{i}")), &noise(3 << 20, 1000 + i as u64));
        let packs_before = packs(&env.repo).len();
        // Every store operation waits 40 ms: the backup is still running
        // when the kill comes, whatever this machine's speed.
        let mut child = env
            .cmd()
            .args(["backup", src.to_str().unwrap()])
            .env("CAIRN_FAULTS", "stall=1:40ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if delay_ms == 0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while packs(&env.repo).len() == packs_before && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before the kill at {delay_ms} ms: nothing was tested"
        );
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        killed_mid_write += usize::from(packs(&env.repo).len() > packs_before);

        let out = env.run(&["check", "--read-data"]);
        assert_eq!(code(&out), 0, "after a kill at {delay_ms} ms: {}", stderr(&out));
        let target = env.path(&format!("restored{i}"));
        env.ok(&[
            "restore",
            "--target",
            target.to_str().unwrap(),
            &env.json(&["snapshots"])[0]["id"].as_str().unwrap()[..8],
        ]);
        assert_same_tree(&first, &target.join("tree/first"));
    }
    assert!(killed_mid_write > 0, "no kill landed after a pack was written");
    // The dead processes' locks are stale: they never block, and unlock clears them.
    env.backup(&[&src]);
    env.ok(&["unlock"]);
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn an_interrupted_backup_exits_130_and_releases_its_lock() {
    let env = Env::with_repo();
    let src = corpus(&env);
    let mut child = env
        .cmd()
        .args(["backup", src.to_str().unwrap()])
        // Every store operation waits: the signal lands mid-backup.
        .env("CAIRN_FAULTS", "stall=1:100ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended before the signal"
    );
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
    env.ok(&["check", "--read-data"]);
}

/// One SIGTERM ends a restore promptly (exit 130): no temporary file is
/// left, and every file is its old or its new content.
#[test]
fn sigterm_ends_an_in_place_restore_promptly_and_cleanly() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..6 {
        write(&src.join(format!("big{i}")), &noise(24 << 20, i));
    }
    env.backup(&[&src]);
    for i in 0..6 {
        write(&src.join(format!("big{i}")), b"changed");
    }
    let child = env
        .cmd()
        .args(["restore", "latest", "--in-place"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it writes, then one SIGTERM.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while temp_names(&src).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never started writing"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let out = wait_or_kill(child, 20, "restore after SIGTERM");
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(5), "ended promptly");
    assert!(temp_names(&src).is_empty(), "{:?}", temp_names(&src));
    for i in 0..6 {
        let now = fs::read(src.join(format!("big{i}"))).unwrap();
        assert!(now == b"changed" || now == noise(24 << 20, i), "big{i} is torn");
    }
    // Running it again finishes the restore.
    env.ok(&["restore", "latest", "--in-place"]);
    assert_eq!(fs::read(src.join("big0")).unwrap(), noise(24 << 20, 0));
}

/// A tree collector on /proc never ended: `/proc/N/pagemap` says 0 bytes
/// and yields hundreds of gigabytes, and the read loop never looked at
/// SIGTERM. Files are read up to the size their stat gave.
#[test]
fn a_backup_of_proc_never_ended() {
    let env = Env::with_repo();
    let child = env
        .cmd()
        .args(["backup", "/proc/self/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_kill(child, 60, "backup of /proc/self");
    assert!(matches!(code(&out), 0 | 3), "{}", stderr(&out));
    env.ok(&["check", "--read-data"]);
}

/// SIGTERM while cairn waited between retries of a failing store was only
/// seen after the wait (up to 10 s): the waits now end with it.
#[test]
fn sigterm_during_retries_waited_for_the_backoff() {
    let env = Env::with_repo();
    let mut child = env
        .cmd()
        .args(["snapshots"])
        // Every listing fails as a flaky store's would: retried for 30 s.
        .env("CAIRN_FAULTS", "list=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(child.try_wait().unwrap().is_none(), "gave up before the signal");
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let out = wait_or_kill(child, 20, "snapshots after SIGTERM");
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}
