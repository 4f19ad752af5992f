//! Index files: the small ones every backup writes are merged once many
//! have gathered, and only when no other process uses the repository.

use std::fs;
use std::path::Path;

use crate::util::*;

/// Index files in a local repository.
fn index_files(repo: &Path) -> usize {
    fs::read_dir(repo.join("index"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json.zst"))
                .count()
        })
        .unwrap_or(0)
}

/// `n` backups of `src`, each with one new file, so each writes an index file.
fn backups(env: &Env, src: &Path, n: usize, first: usize) {
    for i in first..first + n {
        write(&src.join(format!("file-{i}")), &noise(3000, i as u64));
        env.backup(&[src]);
    }
}

/// A lock held by a process on another host (never judged stale here).
fn foreign_lock(repo: &Path) -> std::path::PathBuf {
    fs::create_dir_all(repo.join("locks")).expect("mkdir locks");
    let lock = repo.join("locks").join(format!("{:032x}.json", 0xfeed_u128));
    let record = serde_json::json!({
        "host": "another-host.example",
        "pid": 4242,
        "user": "someone",
        "time": "2026-12-01T06:00:00+00:00",
        "kind": "shared",
    });
    fs::write(&lock, serde_json::to_vec_pretty(&record).expect("json")).expect("write lock");
    lock
}

#[test]
fn many_small_index_files_are_merged_after_a_backup() {
    let env = Env::with_repo();
    let src = env.path("src");
    fs::create_dir_all(&src).expect("mkdir");
    backups(&env, &src, 31, 0);
    assert_eq!(
        index_files(&env.repo),
        31,
        "one index file per backup, none merged yet"
    );
    backups(&env, &src, 1, 31);
    let left = index_files(&env.repo);
    assert!(
        left <= 2,
        "32 small index files should have been merged, {left} are left"
    );
    env.ok(&["check", "--read-data"]);
    // Every snapshot still restores: the first, from blobs whose index file
    // was merged away, and the last.
    let snaps = env.json(&["snapshots"]);
    let ids: Vec<&str> = snaps
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 32);
    let out = env.path("out-last");
    env.ok(&["restore", ids[31], "--target", out.to_str().expect("utf-8")]);
    assert_same_tree(&src, &out.join("tree/src"));
    let first = env.path("out-first");
    env.ok(&["restore", ids[0], "--target", first.to_str().expect("utf-8")]);
    let one = first.join("tree/src/file-0");
    assert_eq!(fs::read(one).expect("file-0 restored"), noise(3000, 0));
}

#[test]
fn index_files_are_not_merged_while_another_process_holds_a_lock() {
    let env = Env::with_repo();
    let src = env.path("src");
    fs::create_dir_all(&src).expect("mkdir");
    let lock = foreign_lock(&env.repo);
    backups(&env, &src, 33, 0);
    assert_eq!(
        index_files(&env.repo),
        33,
        "nothing may be deleted while another process uses the repository"
    );
    fs::remove_file(lock).expect("remove lock");
    backups(&env, &src, 1, 33);
    assert!(index_files(&env.repo) <= 2);
    env.ok(&["check", "--read-data"]);
}
