//! Locks: refreshed while held, stale by age on any host, waited for with
//! `--retry-lock`, taken by the listings too.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::repo::lock::{self, LockKind};
use cairn::sink::{LocalSink, Sink};

use crate::util::*;

/// A lock object as another process would leave it.
fn put_lock(repo: &Path, host: &str, pid: u32, age: chrono::Duration, kind: &str) -> PathBuf {
    let dir = repo.join("locks");
    fs::create_dir_all(&dir).expect("mkdir");
    let time = (chrono::Local::now() - age).fixed_offset().to_rfc3339();
    let record = serde_json::json!({"host": host, "pid": pid, "user": "x", "time": time, "kind": kind});
    let path = dir.join(format!("{:032x}.json", u128::from(pid) + 1));
    let bytes = stored(
        repo,
        cairn::repo::crypto::Domain::Lock,
        serde_json::to_vec_pretty(&record).expect("json"),
    );
    fs::write(&path, bytes).expect("write lock");
    path
}

fn this_host() -> String {
    lock::hostname()
}

fn lock_names(repo: &Path) -> Vec<String> {
    fs::read_dir(repo.join("locks"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_lock_of_another_host_was_never_stale_and_one_with_pid_0_lived_forever() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    // Fresh, from another host: it blocks.
    let fresh = put_lock(
        &env.repo,
        "elsewhere",
        4242,
        chrono::Duration::minutes(1),
        "exclusive",
    );
    let out = env.run(&["backup", src.to_str().expect("utf-8")]);
    assert_eq!(code(&out), 11, "{}", stderr(&out));
    assert!(stderr(&out).contains("elsewhere"), "{}", stderr(&out));
    fs::remove_file(fresh).expect("rm");
    // Not refreshed for two hours: stale, whoever took it.
    put_lock(
        &env.repo,
        "elsewhere",
        4243,
        chrono::Duration::hours(2),
        "exclusive",
    );
    // pid 0 on this host names no process.
    put_lock(
        &env.repo,
        &this_host(),
        0,
        chrono::Duration::minutes(1),
        "exclusive",
    );
    env.backup(&[&src]);
    let out = env.ok(&["unlock"]);
    assert!(out.contains('2'), "both stale locks are removed: {out}");
    assert!(lock_names(&env.repo).is_empty(), "{:?}", lock_names(&env.repo));
}

#[test]
fn a_held_lock_is_written_again_under_a_new_name() {
    let env = Env::with_repo();
    let sink: Arc<dyn Sink> = Arc::new(LocalSink::new(&env.repo));
    let repo = crate::util::open(sink.clone());
    let held = lock::acquire(&repo, LockKind::Shared).expect("lock");
    let first = held.name();
    std::thread::sleep(Duration::from_millis(20));
    held.refresh().expect("refresh");
    let second = held.name();
    assert_ne!(first, second);
    assert_eq!(lock_names(&env.repo), vec![format!("{second}.json")]);
    let locks = lock::list_locks(sink.as_ref(), repo.crypto()).expect("list");
    assert_eq!(locks.len(), 1);
    assert!(!locks[0].1.is_stale());
    drop(held);
    assert!(lock_names(&env.repo).is_empty());
}

#[test]
fn retry_lock_waits_for_the_holder_then_names_it() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    let held = put_lock(
        &env.repo,
        "elsewhere",
        7,
        chrono::Duration::minutes(1),
        "exclusive",
    );
    let started = Instant::now();
    let out = env.run(&["backup", "--retry-lock", "2s", src.to_str().expect("utf-8")]);
    assert_eq!(code(&out), 11, "{}", stderr(&out));
    assert!(started.elapsed() >= Duration::from_secs(2), "it must wait");
    let err = stderr(&out);
    assert!(
        err.contains("waiting up to 2s") && err.contains("elsewhere"),
        "{err}"
    );
    // The holder goes while cairn waits: it goes on.
    let remover = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        fs::remove_file(held).expect("rm");
    });
    let out = env.run(&["backup", "--retry-lock", "1m", src.to_str().expect("utf-8")]);
    remover.join().expect("thread");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = env.run(&["backup", "--retry-lock", "soon", src.to_str().expect("utf-8")]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("--retry-lock"), "{}", stderr(&out));
}

#[test]
fn the_listings_take_a_shared_lock() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    put_lock(
        &env.repo,
        "elsewhere",
        9,
        chrono::Duration::minutes(1),
        "exclusive",
    );
    for args in [&["snapshots"][..], &["ls", "latest"], &["facts", "latest"]] {
        let out = env.run(args);
        assert_eq!(code(&out), 11, "{args:?}: {}", stderr(&out));
    }
}

/// A lock with pid 2^32-1 counted as alive forever (kill(-1, 0) asks about
/// every process), and a lock that could not be parsed was never removed
/// by `unlock`.
#[test]
fn a_lock_with_pid_u32_max_and_an_unreadable_lock_are_debris() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    put_lock(
        &env.repo,
        &this_host(),
        u32::MAX,
        chrono::Duration::minutes(1),
        "exclusive",
    );
    fs::write(
        env.repo.join("locks").join(format!("{:032x}.json", 5)),
        b"{ garbage",
    )
    .expect("write");
    env.backup(&[&src]);
    env.ok(&["unlock"]);
    assert!(lock_names(&env.repo).is_empty(), "{:?}", lock_names(&env.repo));
}

/// `unlock` leaves the lock of a live process; `unlock --remove-all`
/// removes it too (the user says that process is gone for good).
#[test]
fn unlock_remove_all_removes_live_locks_too() {
    let env = Env::with_repo();
    let live = put_lock(
        &env.repo,
        &this_host(),
        std::process::id(),
        chrono::Duration::zero(),
        "exclusive",
    );
    let stale = put_lock(&env.repo, &this_host(), 0, chrono::Duration::zero(), "shared");
    let out = env.ok(&["unlock"]);
    assert!(out.contains("removed 1 lock"), "{out}");
    assert!(live.exists() && !stale.exists());
    let out = env.run(&["snapshots"]);
    assert_eq!(
        code(&out),
        11,
        "the live exclusive lock must block: {}",
        stderr(&out)
    );
    let out = env.ok(&["unlock", "--remove-all"]);
    assert!(out.contains("removed 1 lock"), "{out}");
    assert!(lock_names(&env.repo).is_empty());
}
