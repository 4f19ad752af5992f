//! Restoring into a directory: what broke, and the rules a restore keeps.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::Stdio;

use crate::util::*;

/// A snapshot holding a fifo hung restore forever (the fifo was opened for
/// writing), ignored SIGTERM, left a temporary name and skipped the files
/// after it.
#[test]
fn a_fifo_in_the_snapshot_hung_the_restore() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a-before"), b"before");
    mkfifo(&src.join("b-fifo"), 0o640);
    write(&src.join("c-after"), b"after");
    env.backup(&[&src]);
    let target = env.path("out");
    let child = env
        .cmd()
        .args(["restore", "latest", "--target", target.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_kill(child, 30, "restore of a fifo");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let fifo = fs::symlink_metadata(target.join("tree/src/b-fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o640);
    assert_eq!(fs::read(target.join("tree/src/c-after")).unwrap(), b"after");
    assert!(temp_names(&target).is_empty(), "{:?}", temp_names(&target));
}

/// Device nodes were opened after mknod: a crafted chardev failed and left
/// a mode-666 node behind. A node is made at its recorded mode, never opened.
#[test]
fn a_device_node_was_opened_after_mknod() {
    if !is_root() {
        skip("making device nodes needs root");
        return;
    }
    let env = Env::with_repo();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // A character device whose driver does not exist: opening it fails.
    let node = src.join("nodev");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mknod only creates the node.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o640, libc::makedev(4000, 7)) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    env.backup(&[&src]);
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = fs::symlink_metadata(target.join("tree/src/nodev")).unwrap();
    assert!(restored.file_type().is_char_device());
    assert_eq!(restored.permissions().mode() & 0o7777, 0o640);
    assert_eq!(restored.rdev(), libc::makedev(4000, 7));
    assert!(temp_names(&target).is_empty());
}

/// `restore --target DIR` into a directory holding files silently wrote
/// over them (a local edit was lost without a word).
#[test]
fn restore_into_a_non_empty_target_overwrote_local_edits() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("same"), b"same");
    write(&src.join("edited"), b"original");
    env.backup(&[&src]);
    let target = env.path("out");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", t]);
    write(&target.join("tree/src/edited"), b"my local edit");
    write(&target.join("tree/src/mine"), b"a file of my own");

    let out = env.run(&["restore", "latest", "--target", t]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("would overwrite 1 path") && err.contains("tree/src/edited"),
        "{err}"
    );
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(
        fs::read(target.join("tree/src/edited")).unwrap(),
        b"my local edit"
    );

    // An identical restore over an identical tree writes nothing.
    fs::remove_file(target.join("tree/src/mine")).unwrap();
    write(&target.join("tree/src/edited"), b"original");
    env.ok(&["restore", "latest", "--target", t, "--overwrite"]);
    let summary = env.json(&["restore", "latest", "--target", t]);
    assert_eq!(summary["files"], 0, "{summary}");
    assert_eq!(summary["metadata"], 0, "{summary}");

    // --overwrite writes over a local edit; the user's own file stays.
    write(&target.join("tree/src/edited"), b"my local edit");
    write(&target.join("tree/src/mine"), b"a file of my own");
    let summary = env.json(&["restore", "latest", "--target", t, "--overwrite"]);
    assert_eq!(summary["files"], 1, "{summary}");
    assert_eq!(fs::read(target.join("tree/src/edited")).unwrap(), b"original");
    assert_eq!(
        fs::read(target.join("tree/src/mine")).unwrap(),
        b"a file of my own"
    );
    assert_eq!(summary["left_count"], 1, "{summary}");
}

/// A restore created files 0666 and directories 0777 (minus umask) and set
/// the recorded modes only at the end: a 0600 key in a 0700 directory was
/// readable by others meanwhile. A restore killed while writing a large
/// file shows what it had made so far: all of it private.
#[test]
fn a_restore_left_files_readable_by_others_while_it_ran() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("private/big.key"), &noise(96 << 20, 7));
    fs::set_permissions(src.join("private/big.key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    env.backup(&[&src]);
    let target = env.path("out");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 0; exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .args([
            "--repo",
            env.repo.to_str().unwrap(),
            "restore",
            "latest",
            "--target",
        ])
        .arg(&target)
        .env("CAIRN_STATE_DIR", env.path("state"))
        .env("CAIRN_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = target.join("tree/src/private");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let temp = loop {
        if let Some(t) = temp_names(&target).into_iter().find(|p| p.starts_with(&dir)) {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "no temporary file appeared");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let mode = |p: &std::path::Path| fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&temp), 0o600, "the file being written");
    for d in [target.join("tree"), target.join("tree/src"), dir.clone()] {
        assert_eq!(mode(&d), 0o700, "{} while the restore runs", d.display());
    }
    // Run again to the end: the recorded modes are there, and no temporary
    // name is left.
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(mode(&dir.join("big.key")), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert!(temp_names(&target).is_empty(), "{:?}", temp_names(&target));
}

/// `--checksum` finds a file whose content changed behind an unchanged
/// size and mtime; `--delete` removes what the snapshot does not have.
#[test]
fn checksum_and_delete_in_a_target() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("same-size"), b"aaaa");
    env.backup(&[&src]);
    let target = env.path("out");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", t]);
    let file = target.join("tree/src/same-size");
    let mtime = filetime::FileTime::from_last_modification_time(&fs::metadata(&file).unwrap());
    fs::write(&file, b"bbbb").unwrap();
    filetime::set_file_mtime(&file, mtime).unwrap();
    write(&target.join("tree/src/extra"), b"not in the snapshot");

    // Size and mtime match: taken as unchanged, and the extra file stays.
    let summary = env.json(&["restore", "latest", "--target", t]);
    assert_eq!(summary["files"], 0, "{summary}");
    assert_eq!(fs::read(&file).unwrap(), b"bbbb");
    // By content it differs: refused without --overwrite, written with it.
    let out = env.run(&["restore", "latest", "--target", t, "--checksum"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let summary = env.json(&[
        "restore",
        "latest",
        "--target",
        t,
        "--checksum",
        "--overwrite",
        "--delete",
    ]);
    assert_eq!(summary["files"], 1, "{summary}");
    assert_eq!(summary["deleted"], 1, "{summary}");
    assert_eq!(fs::read(&file).unwrap(), b"aaaa");
    assert!(!target.join("tree/src/extra").exists());
}

/// A frame holding many small files was fetched and decoded by every worker
/// that got some of them: a full restore of a source tree read each frame
/// 2.5 times (over S3, 2.5 times the requests). From a network store, the
/// frames are fetched ahead of the workers that decode them.
#[test]
fn a_full_restore_fetched_each_frame_several_times() {
    use cairn::progress::Progress;
    use cairn::restore::{self, RestoreOptions};
    use std::sync::Arc;

    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..3000u64 {
        let text = format!(
            "file {i}: {}\n",
            "some source text ".repeat(60 + (i % 40) as usize)
        );
        write(&src.join(format!("d{}/f{i}.txt", i % 7)), text.as_bytes());
    }
    env.backup(&[&src]);
    let counting = Arc::new(SpySink::new(Arc::new(cairn::sink::LocalSink::new(&env.repo)), 4));
    let repo = crate::util::try_open(counting.clone() as Arc<dyn cairn::sink::Sink>).expect("open");
    let index = repo.load_index().expect("index");
    let snapshot = repo.find_snapshot("latest").expect("snapshot");
    let target = env.path("out");
    let opts = RestoreOptions {
        target: target.clone(),
        ..Default::default()
    };
    restore::restore(&repo, &index, &snapshot, &opts, &Progress::hidden()).expect("restore");
    assert_same_tree(&src, &target.join("tree/src"));
    let reads = counting.reads.lock().expect("lock");
    assert!(
        reads.len() > 4,
        "the files should fill several frames: {}",
        reads.len()
    );
    // The manifest is read twice by design: once to find any file whose
    // data is in no index before anything is written, once to restore.
    let manifest_frames: Vec<(String, u64)> = snapshot
        .record
        .manifest
        .iter()
        .map(|id| {
            let (pack, loc) = index.get(id).expect("manifest blob");
            (pack.to_hex(), loc.frame_offset)
        })
        .collect();
    let again: Vec<_> = reads
        .iter()
        .filter(|(frame, n)| **n > 1 && !manifest_frames.contains(frame))
        .collect();
    assert!(
        again.is_empty(),
        "frames read more than once: {again:?} of {}",
        reads.len()
    );
    // A network store's frames are fetched ahead of the workers: all but
    // the manifest's, which the merge reads itself.
    let ahead = counting.ahead.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        ahead + 2 >= reads.len(),
        "{ahead} of {} frames fetched ahead",
        reads.len()
    );
}

/// An in-place restore read every snapshot record twice: once to resolve
/// its reference, and again when its safety snapshot looked for a parent
/// (from a bucket of a thousand snapshots, a thousand requests more). A
/// record is named by the hash of its bytes: one read per process does,
/// whichever loads ask for it (the restore's and the backup's).
#[test]
fn snapshot_records_read_twice_per_in_place_restore_are_read_once() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..3 {
        write(&src.join("f"), format!("version {i}").as_bytes());
        env.backup(&[&src]);
    }
    let spy = Arc::new(SpySink::new(Arc::new(cairn::sink::LocalSink::new(&env.repo)), 4));
    let reads: Arc<Mutex<HashMap<String, usize>>> = Default::default();
    let counted = reads.clone();
    *spy.before_read.lock().expect("lock") = Some(Box::new(move |kind, name| {
        if kind == cairn::sink::ObjectKind::Snapshot {
            *counted.lock().expect("lock").entry(name.to_string()).or_default() += 1;
        }
    }));
    let repo = crate::util::try_open(spy.clone() as Arc<dyn cairn::sink::Sink>).expect("open");
    let latest = repo.find_snapshot("latest").expect("latest");
    let all = repo.load_snapshots().expect("snapshots");
    let clone = repo.clone();
    let names = clone.snapshot_names().expect("names");
    let again = clone.load_snapshots_named(&names).expect("snapshots");
    assert_eq!(all.len(), 3);
    assert_eq!(again.len(), 3);
    assert_eq!(all.last().map(|s| s.id), Some(latest.id));
    let reads = reads.lock().expect("lock");
    assert_eq!(reads.len(), 3, "{reads:?}");
    assert!(
        reads.values().all(|n| *n == 1),
        "records read more than once: {reads:?}"
    );
}

/// A symlink planted where the snapshot has a directory (in a restore
/// target, or in place) is replaced, never written through.
#[test]
fn a_symlink_planted_in_the_target_is_never_written_through() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("d/file"), b"mine");
    env.backup(&[&src]);
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();

    let target = env.path("target");
    fs::create_dir_all(target.join("tree/src")).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("tree/src/d")).unwrap();
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", t, "--overwrite"]);
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "written through the link"
    );
    assert!(fs::symlink_metadata(target.join("tree/src/d")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("tree/src/d/file")).unwrap(), b"mine");

    fs::remove_dir_all(src.join("d")).unwrap();
    std::os::unix::fs::symlink(&outside, src.join("d")).unwrap();
    env.ok(&["restore", "latest", "--in-place"]);
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "written through the link"
    );
    assert!(fs::symlink_metadata(src.join("d")).unwrap().is_dir());
    assert_eq!(fs::read(src.join("d/file")).unwrap(), b"mine");
}
