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
        "time": chrono::Local::now().fixed_offset().to_rfc3339(),
        "kind": "shared",
    });
    let bytes = crate::util::stored(
        repo,
        cairn::repo::crypto::Domain::Lock,
        serde_json::to_vec_pretty(&record).expect("json"),
    );
    fs::write(&lock, bytes).expect("write lock");
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

/// Another process merged the index files between this one's listing and
/// its reads: the listing is taken again and nothing goes missing.
#[test]
fn an_index_file_merged_away_while_loading_is_found_in_its_merged_file() {
    use cairn::repo::consolidate;
    use cairn::sink::{LocalSink, Sink};
    use std::sync::Arc;

    let env = Env::with_repo();
    let src = env.path("src");
    fs::create_dir_all(&src).expect("mkdir");
    // A foreign lock keeps the backups themselves from merging.
    let lock = foreign_lock(&env.repo);
    backups(&env, &src, consolidate::CONSOLIDATE_AT, 0);
    fs::remove_file(lock).expect("remove lock");
    let local: Arc<dyn Sink> = Arc::new(LocalSink::new(&env.repo));
    let expected = crate::util::try_open(local.clone())
        .expect("open")
        .load_index()
        .expect("index");

    let spy = Arc::new(SpySink::new(local.clone(), 1));
    let other = crate::util::try_open(local).expect("open");
    let mut merged = false;
    *spy.before_read.lock().expect("lock") = Some(Box::new(move |kind, _name| {
        if kind == cairn::sink::ObjectKind::Index && !merged {
            merged = true;
            let done = consolidate::consolidate(&other).expect("consolidate");
            assert_eq!(done.merged, consolidate::CONSOLIDATE_AT);
        }
    }));
    let repo = crate::util::try_open(spy.clone() as Arc<dyn Sink>).expect("open");
    let index = repo
        .load_index()
        .expect("the index loads although its files were merged away");
    assert_eq!(index.len(), expected.len());
    assert_eq!(index_files(&env.repo), 1);
    for id in expected.blob_ids() {
        assert!(index.contains(id), "blob {id:?} went missing");
    }
}
