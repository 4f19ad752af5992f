//! Bad input and damaged repositories: a clear error naming the object, the
//! right exit code, and nothing lost.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn::backup::{self, BackupOptions};
use cairn::progress::Progress;
use cairn::repo::id::ObjectId;
use cairn::repo::index::{IndexFile, IndexPack};
use cairn::repo::pack::{FrameBuilder, PackBuilder};
use cairn::repo::snapshot::{SnapshotRecord, SnapshotStats};
use cairn::repo::Repository;
use cairn::sink::faulty::Fault;
use cairn::sink::{FaultySink, LocalSink, ObjectKind, Sink};

use crate::util::*;

#[test]
fn unreadable_file_is_a_warning_and_the_snapshot_is_partial() {
    if !can_run_as_nobody() {
        return;
    }
    let env = Env::new();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.path("src");
    write(&src.join("readable.txt"), b"fine");
    write(&src.join("secret.txt"), b"root only");
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::hard_link(src.join("secret.txt"), src.join("z-secret-link")).unwrap();
    fs::create_dir_all(src.join("closed")).unwrap();
    write(&src.join("closed/inside"), b"x");
    fs::set_permissions(src.join("closed"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir_all(&env.repo).unwrap();
    std::os::unix::fs::chown(&env.repo, Some(65534), Some(65534)).unwrap();
    assert_eq!(code(&env.run_as_nobody(&["init", crate::util::init_flag()])), 0);
    let out = env.run_as_nobody(&["backup", src.to_str().unwrap()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("secret.txt") && err.contains("ermission denied"),
        "{err}"
    );
    assert!(err.contains("closed"), "{err}");
    assert!(err.contains("z-secret-link: not saved"), "{err}");
    assert!(err.lines().count() <= 4, "one line per problem: {err}");
    let list = env.json(&["snapshots"]);
    assert_eq!(list[0]["partial"], true);
    assert!(list[0]["warnings"].to_string().contains("secret.txt"));
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("tree/src/readable.txt")).unwrap(), b"fine");
    assert!(!target.join("tree/src/secret.txt").exists());
    assert!(!target.join("tree/src/z-secret-link").exists());
    env.ok(&["check", "--read-data"]);
}

#[test]
fn a_corrupted_pack_is_named_by_check_and_never_restored() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("data.bin"), &noise(2 << 20, 5));
    let snap = env.backup(&[&src]);
    let short = &snap["id"].as_str().unwrap()[..8];
    let pack = packs(&env.repo).pop().unwrap();
    flip_byte(&pack, 1000);
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    let pack_name = pack
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".tar.zst", "");
    assert!(err.contains(&pack_name), "check must name the pack: {err}");
    assert!(err.contains(short), "check must name the snapshot: {err}");

    let target = env.path("out");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("data.bin"), "{}", stderr(&out));
    // No torn or wrong file, and no temporary file left behind.
    let left: Vec<_> = fs::read_dir(target.join("tree/src")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_missing_pack_is_named_by_check() {
    let env = Env::with_repo();
    write(&env.path("src/a"), &noise(100_000, 1));
    let snap = env.backup(&[&env.path("src")]);
    let pack = packs(&env.repo).pop().unwrap();
    fs::remove_file(&pack).unwrap();
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("is missing"), "{err}");
    assert!(err.contains(&snap["id"].as_str().unwrap()[..8]), "{err}");
}

#[test]
fn a_damaged_snapshot_record_or_index_is_named() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    env.backup(&[&env.path("src")]);
    let record = only_file_in(&env.repo.join("snapshots"));
    flip_byte(&record, 10);
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1);
    let name = record.file_name().unwrap().to_string_lossy().replace(".json", "");
    assert!(stderr(&out).contains(&name), "{}", stderr(&out));
    // The listing goes on without it, and says so.
    let out = env.run(&["snapshots"]);
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).contains(&name) && stderr(&out).contains("damaged"),
        "{}",
        stderr(&out)
    );
    // check's advice works: forget of the damaged record removes it.
    let out = env.run(&["check"]);
    assert!(
        stderr(&out).contains("to repair: cairn forget ID"),
        "{}",
        stderr(&out)
    );
    let out = env.ok(&["forget", &name[..8]]);
    assert!(out.contains("removed damaged snapshot record"), "{out}");
    env.ok(&["check"]);

    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    env.backup(&[&env.path("src")]);
    let index = only_file_in(&env.repo.join("index"));
    flip_byte(&index, 5);
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1);
    let name = index
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".json.zst", "");
    assert!(
        stderr(&out).contains(&format!("index {name}")),
        "{}",
        stderr(&out)
    );
}

/// Writes a snapshot whose manifest is exactly `lines`, bypassing the checks
/// that the manifest writer makes, as a malicious repository would.
/// A snapshot whose manifest is `lines`, with a root for each first path
/// component (as a real snapshot has for every entry).
fn plant_manifest(repo: &Repository, lines: &str) {
    let mut roots: Vec<cairn::repo::snapshot::Root> = Vec::new();
    for line in lines.lines() {
        let path = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["path"].as_str().map(String::from))
            .unwrap_or_default();
        let first = path.split('/').next().unwrap_or_default().to_string();
        if !first.is_empty() && !roots.iter().any(|r| r.prefix == first) {
            roots.push(cairn::repo::snapshot::Root {
                collector: "tree".into(),
                path: format!("/nonexistent/{first}").as_str().into(),
                prefix: first,
                excludes: vec![],
                gitignore: false,
                one_file_system: false,
                exclude_if_present: vec![],
            });
        }
    }
    let blob = lines.as_bytes();
    let id = repo.crypto().blob_id(blob);
    let mut frames = FrameBuilder::new(1 << 20, 3, repo.crypto());
    let mut pack = PackBuilder::new(repo.crypto());
    for f in frames.push(id, blob).unwrap() {
        pack.push(f);
    }
    pack.push(frames.finish().unwrap());
    let (pack_id, bytes, blobs) = pack.finish().unwrap();
    repo.write_content_named(ObjectKind::Pack, pack_id, bytes)
        .unwrap();
    repo.write_index_file(&IndexFile {
        packs: vec![IndexPack { id: pack_id, blobs }],
    })
    .unwrap();
    repo.write_snapshot(&SnapshotRecord {
        version: 1,
        time: chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00+00:00").unwrap(),
        host: "evil".into(),
        user: "evil".into(),
        profile: None,
        tags: vec![],
        roots,
        manifest: vec![id],
        parent: None,
        partial: false,
        warnings: vec![],
        notes: vec![],
        facts: Default::default(),
        stats: SnapshotStats::default(),
        tool_version: "test".into(),
        rollback: None,
        run: None,
        repaired: None,
        copied_from: None,
    })
    .unwrap();
}

#[test]
fn restore_refuses_paths_that_escape_the_target() {
    for bad in ["../escaped", "/tmp/cairn-absolute-escape", "a/../../escaped"] {
        let env = Env::with_repo();
        let repo = crate::util::try_open(Arc::new(LocalSink::new(&env.repo))).unwrap();
        let line =
            serde_json::json!({"path": bad, "type": "file", "mode": 420, "uid": 0, "gid": 0, "mtime": 0});
        plant_manifest(&repo, &format!("{line}\n"));
        let target = env.path("deep/target");
        let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_eq!(code(&out), 1, "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("'..'"), "{bad}: {}", stderr(&out));
        assert!(!env.path("deep/escaped").exists() && !env.path("escaped").exists());
        assert!(!Path::new("/tmp/cairn-absolute-escape").exists());
    }
}

#[test]
fn restore_never_writes_through_a_symlink() {
    let env = Env::with_repo();
    let repo = crate::util::try_open(Arc::new(LocalSink::new(&env.repo))).unwrap();
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    // A symlink `d/link` pointing outside, then a file under `d/link/`.
    let lines = [
        serde_json::json!({"path": "d", "type": "dir", "mode": 493, "uid": 0, "gid": 0, "mtime": 0}),
        serde_json::json!({"path": "d/link", "type": "symlink", "mode": 511, "uid": 0, "gid": 0, "mtime": 0,
                           "target": outside.to_str().unwrap()}),
        serde_json::json!({"path": "d/link/pwned", "type": "file", "mode": 420, "uid": 0, "gid": 0, "mtime": 0}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    plant_manifest(&repo, &text);
    let target = env.path("target");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not writing through it"),
        "{}",
        stderr(&out)
    );
    assert!(!outside.join("pwned").exists());
}

#[test]
fn a_file_that_changes_while_read_is_warned_about() {
    let env = Env::with_repo();
    let src = env.path("src");
    let growing = src.join("growing.log");
    write(&growing, &noise(64 << 20, 9));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, growing) = (stop.clone(), growing.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&growing).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"more\n").unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = env.run(&["backup", src.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("growing.log: changed while it was being read"),
        "{}",
        stderr(&out)
    );
    env.ok(&["check", "--read-data"]);
}

/// A store that fails mid-write: the backup fails, earlier snapshots stay whole.
#[test]
fn a_failing_pack_write_leaves_the_repository_valid() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("first"), &noise(300_000, 1));
    env.backup(&[&src]);
    write(&src.join("second"), &noise(300_000, 2));

    let faulty = Arc::new(FaultySink::new(Arc::new(LocalSink::new(&env.repo))));
    faulty.inject(Fault::FailWrite(ObjectKind::Pack));
    let repo = crate::util::try_open(faulty.clone() as Arc<dyn Sink>).unwrap();
    let opts = BackupOptions {
        paths: vec![src.clone()],
        ..Default::default()
    };
    let err = backup::run(&repo, &opts, &Progress::hidden())
        .err()
        .expect("the backup must fail");
    let text = cairn::chain(&err);
    assert!(text.contains("injected write fault"), "{text}");

    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
    env.ok(&["check", "--read-data"]);
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(target.join("tree/src/first").exists());
    // The next backup, through a healthy sink, completes.
    env.backup(&[&src]);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn a_corrupt_read_is_never_restored() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("f"), &noise(200_000, 4));
    env.backup(&[&src]);
    let faulty = Arc::new(FaultySink::new(Arc::new(LocalSink::new(&env.repo))));
    let repo = crate::util::try_open(faulty.clone() as Arc<dyn Sink>).unwrap();
    let snapshot = repo.find_snapshot("latest").unwrap();
    let index = repo.load_index().unwrap();
    // The manifest blob comes first; corrupt the data read after it.
    let mut reader = cairn::repo::reader::BlobReader::new(&repo, &index);
    let entries: Vec<_> = reader
        .manifest("t", &snapshot.record.manifest)
        .collect::<Result<_, _>>()
        .unwrap();
    let file = entries.iter().find(|e| !e.blobs.is_empty()).unwrap();
    // Corrupt on every read: refused.
    for _ in 0..3 {
        faulty.inject(Fault::CorruptRead(ObjectKind::Pack));
    }
    let mut fresh = cairn::repo::reader::BlobReader::new(&repo, &index);
    let err = fresh
        .read(&file.blobs[0])
        .expect_err("a corrupt frame must not be accepted");
    assert!(
        err.to_string().contains(&file.blobs[0].to_hex()[..16]) || err.to_string().contains("pack"),
        "{err}"
    );
    // One garbled transfer is read again.
    faulty.inject(Fault::CorruptRead(ObjectKind::Pack));
    let mut fresh = cairn::repo::reader::BlobReader::new(&repo, &index);
    assert_eq!(fresh.read(&file.blobs[0]).unwrap().len(), file.size as usize);
    faulty.inject(Fault::TransientRead(ObjectKind::Pack));
    let mut fresh = cairn::repo::reader::BlobReader::new(&repo, &index);
    assert!(fresh.read(&file.blobs[0]).is_err());
    assert_eq!(fresh.read(&file.blobs[0]).unwrap().len(), file.size as usize);
}

/// Two backups that race can store the same blob in two packs; when one copy
/// is damaged, restore reads the other and check blames no snapshot.
#[test]
fn a_damaged_copy_of_a_blob_stored_twice_is_read_from_the_other() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("data.bin"), &noise(300_000, 8));
    env.backup(&[&src]);
    let repo = crate::util::try_open(Arc::new(LocalSink::new(&env.repo))).unwrap();
    let first = packs(&env.repo).pop().unwrap();
    let first_name = first
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".tar.zst", "");
    // A second pack with the same frames: the bytes plus one more end frame
    // (still a valid tar.zst), so every offset stays and only the name moves.
    let mut bytes = fs::read(&first).unwrap();
    bytes.extend_from_slice(&zstd::bulk::compress(&[0u8; 1024], 3).unwrap());
    let second = ObjectId::of(&bytes);
    repo.write_content_named(ObjectKind::Pack, second, bytes.clone())
        .unwrap();
    let mut file = repo
        .read_index_file(
            &only_file_in(&env.repo.join("index"))
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(".json.zst", ""),
        )
        .unwrap();
    file.packs[0].id = second;
    repo.write_index_file(&file).unwrap();

    flip_byte(&first, 600);
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::read(target.join("tree/src/data.bin")).unwrap(),
        noise(300_000, 8)
    );

    let report = env.run(&["check", "--read-data", "--json"]);
    assert_eq!(code(&report), 1, "the damaged pack is still an error");
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .all(|e| e["object"].as_str().unwrap().contains(&first_name)),
        "{report}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e["snapshots"].as_array().unwrap().is_empty()),
        "no snapshot is lost: {report}"
    );
}

/// Owner and extended attributes are best effort on restore: as an
/// unprivileged user (or on a filesystem without xattrs) the contents must
/// still arrive, with a warning about what could not be set.
#[test]
fn metadata_that_cannot_be_restored_is_a_warning_not_a_lost_file() {
    if !can_run_as_nobody() {
        return;
    }
    let env = Env::with_repo();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.path("src");
    write(&src.join("f"), b"contents");
    // Only root may set trusted.* attributes.
    xattr::set(src.join("f"), "trusted.cairn", b"x").unwrap();
    env.backup(&[&src]);
    let repo_files: Vec<_> = walkdir::WalkDir::new(&env.repo)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    for e in repo_files {
        std::os::unix::fs::chown(e.path(), Some(65534), Some(65534)).unwrap();
    }
    let target = env.path("out");
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).unwrap();
    let out = env.run_as_nobody(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot set extended attribute trusted.cairn"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(target.join("tree/src/f")).unwrap(), b"contents");
}

/// A file swapped for a symlink (or a fifo, or another file) between the walk
/// and the read must not bring outside contents into a snapshot, nor hang.
#[test]
fn a_file_replaced_after_the_walk_is_not_read() {
    use cairn::meta::{identity, open_same};
    let env = Env::new();
    let victim = env.path("victim");
    write(&victim, b"mine");
    let seen = identity(&fs::symlink_metadata(&victim).unwrap());
    assert!(open_same(&victim, seen, false).is_ok());
    // The original stays alive under another name, so its inode number
    // cannot be handed to the files that replace it below.
    fs::hard_link(&victim, env.path("keep")).unwrap();

    write(&env.path("secret"), b"not yours");
    fs::remove_file(&victim).unwrap();
    std::os::unix::fs::symlink(env.path("secret"), &victim).unwrap();
    let err = open_same(&victim, seen, false).expect_err("a symlink must not be followed");
    assert!(err.to_string().contains("replaced"), "{err}");

    fs::remove_file(&victim).unwrap();
    write(&victim, b"another file, another inode");
    assert!(open_same(&victim, seen, false).is_err());

    fs::remove_file(&victim).unwrap();
    let c = std::ffi::CString::new(victim.to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    assert!(
        open_same(&victim, seen, false).is_err(),
        "a fifo must neither block nor be read"
    );

    let dir = env.path("dir");
    fs::create_dir(&dir).unwrap();
    let seen_dir = identity(&fs::symlink_metadata(&dir).unwrap());
    assert!(open_same(&dir, seen_dir, true).is_ok());
    fs::remove_dir(&dir).unwrap();
    std::os::unix::fs::symlink("/etc", &dir).unwrap();
    assert!(
        open_same(&dir, seen_dir, true).is_err(),
        "a directory swapped for a link is not entered"
    );
}

#[test]
fn the_repository_is_left_out_even_through_a_symlinked_path() {
    let env = Env::new();
    write(&env.path("data/notes.txt"), b"mine");
    std::os::unix::fs::symlink(env.path("data"), env.path("link")).unwrap();
    let repo_via_link = env.path("link/repo");
    let run = |args: &[&str]| {
        crate::util::cairn_command()
            .env("TZ", "UTC")
            .arg("--repo")
            .arg(&repo_via_link)
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(code(&run(&["init", crate::util::init_flag()])), 0);
    let out = run(&["backup", env.path("data").to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listing = stdout(&run(&["ls", "latest"]));
    assert!(listing.contains("notes.txt"), "{listing}");
    assert!(
        !listing.contains("config.json"),
        "the repository was saved: {listing}"
    );
}

#[test]
fn a_pack_that_cannot_be_read_is_reported_and_check_goes_on() {
    let env = Env::with_repo();
    write(&env.path("src/a"), &noise(50_000, 2));
    env.backup(&[&env.path("src")]);
    let faulty = Arc::new(FaultySink::new(Arc::new(LocalSink::new(&env.repo))));
    let repo = crate::util::try_open(faulty.clone() as Arc<dyn Sink>).unwrap();
    faulty.inject(Fault::TransientRead(ObjectKind::Pack));
    let report = cairn::repo::check::check(&repo, true, &|_| {}).expect("check reports, it does not stop");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].message.contains("cannot be read"), "{report:?}");
    assert_eq!(
        report.errors[0].snapshots.len(),
        1,
        "the snapshot is named: {report:?}"
    );
}

/// A backup that may not fit in what the repository's disk has free is
/// refused before anything is written, with the sizes in the message.
#[test]
fn a_backup_that_may_not_fit_is_refused_before_writing() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("big"), &noise(3 << 20, 3));
    let faulty = Arc::new(FaultySink::new(Arc::new(LocalSink::new(&env.repo))));
    faulty.inject(Fault::FreeSpace(2 << 20));
    let repo = crate::util::try_open(faulty.clone() as Arc<dyn Sink>).unwrap();
    let before = du(&env.repo);
    let opts = BackupOptions {
        paths: vec![src.clone()],
        ..Default::default()
    };
    let err = backup::run(&repo, &opts, &Progress::hidden())
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("not enough space") && msg.contains("2.00 MiB is free"),
        "{msg}"
    );
    assert_eq!(du(&env.repo), before, "nothing written");
    // With room enough, the same backup goes through.
    let roomy = crate::util::try_open(Arc::new(LocalSink::new(&env.repo)) as Arc<dyn Sink>).unwrap();
    backup::run(&roomy, &opts, &Progress::hidden()).expect("fits");
}

/// The up-front space check used to refuse a tree that stores far smaller
/// than it is (113 MiB stored as 25 MiB on a 150 MiB disk) and to suggest
/// commands that do not exist: it now bounds what a backup adds by this
/// repository's own stored-to-added ratio.
#[test]
fn free_space_check_refused_a_tree_that_compresses_to_fit() {
    let env = Env::with_repo();
    let src = env.path("src");
    let text: Vec<u8> = (0..4u32 << 20)
        .map(|i| b"cairn text "[(i % 11) as usize])
        .collect();
    write(&src.join("first.txt"), &text);
    env.backup(&[&src]);
    // 24 MiB more of the same kind of data, with 16 MiB free.
    for n in 0..6u8 {
        let mut more = text.clone();
        more[0] = n;
        write(&src.join(format!("more-{n}.txt")), &more);
    }
    let faulty = Arc::new(FaultySink::new(Arc::new(LocalSink::new(&env.repo))));
    faulty.inject(Fault::FreeSpace(16 << 20));
    let repo = crate::util::try_open(faulty.clone() as Arc<dyn Sink>).unwrap();
    let opts = BackupOptions {
        paths: vec![src],
        ..Default::default()
    };
    let outcome = backup::run(&repo, &opts, &Progress::hidden()).expect("fits once compressed");
    assert!(
        outcome.record.stats.bytes_stored < 1 << 20,
        "{:?}",
        outcome.record.stats
    );
}

/// A backup whose estimate fits but whose packs do not stops cleanly before
/// the pack that would fill the disk: no snapshot, a valid repository, and
/// a message that says so.
#[test]
fn a_backup_that_runs_out_of_space_while_writing_stops_cleanly() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("small"), &noise(50_000, 1));
    env.backup(&[&src]);
    write(&src.join("big"), &noise(20 << 20, 2));
    let faulty = Arc::new(FaultySink::new(Arc::new(LocalSink::new(&env.repo))));
    faulty.inject(Fault::FreeSpace(9 << 20));
    let repo = crate::util::try_open(faulty.clone() as Arc<dyn Sink>).unwrap();
    let opts = BackupOptions {
        paths: vec![src],
        ..Default::default()
    };
    let err = backup::run(&repo, &opts, &Progress::hidden())
        .err()
        .expect("stops");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("is full") && msg.contains("saved no snapshot"),
        "{msg}"
    );
    assert!(
        !msg.contains("prune"),
        "no advice about commands that do not exist: {msg}"
    );
    let snapshots = env.json(&["snapshots"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 1, "no new snapshot");
    env.ok(&["check", "--read-data"]);
}

/// A stray or damaged file in `snapshots/` made `snapshots`, a restore of a
/// good snapshot and every new backup fail. It is passed over with a
/// warning naming it; prune, which must know every snapshot, refuses.
#[test]
fn a_damaged_snapshot_record_took_every_other_snapshot_down() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"good");
    let good = env.backup(&[&src]);
    let bad_name = "ab".repeat(32);
    fs::write(
        env.repo.join(format!("snapshots/{bad_name}.json")),
        b"{ not a record",
    )
    .unwrap();
    let out = env.run(&["snapshots", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], good["id"]);
    assert!(
        stderr(&out).contains(&bad_name),
        "the warning names it: {}",
        stderr(&out)
    );
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("tree/src/a")).unwrap(), b"good");
    write(&src.join("b"), b"more");
    env.backup(&[&src]);
    let out = env.run(&["prune"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(&bad_name), "{}", stderr(&out));
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1, "check reports it: {}", stderr(&out));
}

/// A crafted manifest time (mtime near i64::MAX, or nanoseconds of a
/// second or more) panicked restore (exit 101). Such times are refused as
/// the entry's metadata, with a warning; the contents are restored.
#[test]
fn a_crafted_manifest_time_panicked_restore() {
    for (mtime, nsec) in [
        (i64::MAX, 0u64),
        (i64::MIN, 0),
        (0, 1_000_000_000),
        (1_700_000_000, u64::from(u32::MAX)),
    ] {
        let env = Env::with_repo();
        let repo = crate::util::try_open(Arc::new(LocalSink::new(&env.repo))).unwrap();
        let dir = serde_json::json!({"path": "t", "type": "dir", "mode": 493, "uid": 0, "gid": 0,
            "mtime": mtime, "mtime_nsec": nsec});
        let file = serde_json::json!({"path": "t/f", "type": "file", "mode": 420, "uid": 0, "gid": 0,
            "mtime": mtime, "mtime_nsec": nsec, "size": 0});
        plant_manifest(&repo, &format!("{dir}\n{file}\n"));
        let target = env.path("out");
        let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
        assert_ne!(code(&out), 101, "({mtime}, {nsec}) panicked: {}", stderr(&out));
        assert!(
            stderr(&out).lines().count() <= 4,
            "({mtime}, {nsec}): {}",
            stderr(&out)
        );
        let out = env.run(&["ls", "latest"]);
        assert_ne!(code(&out), 101, "ls ({mtime}, {nsec}) panicked: {}", stderr(&out));
        let out = env.run(&["check"]);
        assert_ne!(
            code(&out),
            101,
            "check ({mtime}, {nsec}) panicked: {}",
            stderr(&out)
        );
    }
}

/// `ls --json` printed half a document (`[` and the entries before the
/// damage) when it hit a damaged manifest: one valid document or nothing.
#[test]
fn ls_json_printed_half_a_document_from_a_damaged_manifest() {
    let env = Env::with_repo();
    let repo = crate::util::try_open(Arc::new(LocalSink::new(&env.repo))).unwrap();
    let good = serde_json::json!({"path": "t", "type": "dir", "mode": 493, "uid": 0, "gid": 0, "mtime": 0});
    plant_manifest(
        &repo,
        &format!("{good}\n{{\"path\": \"t/x\", \"type\": \"nonsense\"}}\n"),
    );
    let out = env.run(&["ls", "latest", "--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", stdout(&out));
    assert!(stderr(&out).contains("cannot read snapshot"), "{}", stderr(&out));
}

/// A failure to read a frame was not remembered: 300 files in one frame of
/// a missing pack asked the store for it 300 times. Each worker asks once.
#[test]
fn a_frame_that_failed_was_read_again_for_every_file_in_it() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..300 {
        write(&src.join(format!("f{i:03}")), format!("file {i}\n").as_bytes());
    }
    env.backup(&[&src]);
    let spy = Arc::new(SpySink::new(Arc::new(LocalSink::new(&env.repo)), 1));
    let repo = crate::util::try_open(spy.clone() as Arc<dyn Sink>).unwrap();
    let index = repo.load_index().unwrap();
    let snapshot = repo.find_snapshot("latest").unwrap();
    // Read the manifest while the pack is there, then take the pack away.
    let mut reader = cairn::repo::reader::BlobReader::new(&repo, &index);
    let entries: Vec<_> = reader
        .manifest("x", &snapshot.record.manifest)
        .map(|e| e.unwrap())
        .filter(|e| !e.blobs.is_empty())
        .collect();
    assert_eq!(entries.len(), 300);
    for p in packs(&env.repo) {
        fs::remove_file(p).unwrap();
    }
    spy.reads.lock().unwrap().clear();
    let mut reader = cairn::repo::reader::BlobReader::new(&repo, &index);
    for e in &entries {
        assert!(reader.read(&e.blobs[0]).is_err());
    }
    let frames: std::collections::HashSet<_> = entries
        .iter()
        .map(|e| index.get(&e.blobs[0]).map(|(p, l)| (p, l.frame_offset)).unwrap())
        .collect();
    let reads: usize = spy.reads.lock().unwrap().values().sum();
    assert_eq!(
        reads,
        frames.len(),
        "{} missing frames were asked for {reads} times",
        frames.len()
    );
}

/// `cairn backup R` of the repository itself stored the repository into
/// itself, and again each run.
#[test]
fn a_backup_of_the_repository_stored_it_into_itself() {
    let env = Env::with_repo();
    let out = env.run(&["backup", env.repo.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is the repository itself"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        fs::read_dir(env.repo.join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
    // Beside another source, it is left out with a warning.
    let src = env.path("src");
    write(&src.join("a"), b"a");
    let out = env.run(&[
        "backup",
        env.repo.join("index").to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("left out"), "{}", stderr(&out));
    let listing = env.ok(&["ls", "latest"]);
    assert!(!listing.contains("index"), "{listing}");
}

/// Repository objects that are not regular files: `config.json` linked to
/// `/dev/zero` ate all memory, and a pack replaced by a fifo hung check and
/// restore. They are refused at once, naming the object.
#[test]
fn a_repository_object_that_is_a_link_or_a_fifo_hung_or_ate_memory() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), &noise(10_000, 3));
    env.backup(&[&src]);
    let pack = packs(&env.repo).pop().unwrap();
    fs::remove_file(&pack).unwrap();
    mkfifo(&pack, 0o644);
    for args in [
        &["check", "--read-data"][..],
        &["restore", "latest", "--target", "/nonexistent-target-x"],
    ] {
        let child = env
            .cmd()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_or_kill(child, 60, &format!("{args:?} with a fifo for a pack"));
        assert_ne!(code(&out), 0, "{args:?}");
        assert!(
            stderr(&out).contains("not a regular file"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let config = env.repo.join("config.json");
    fs::remove_file(&config).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &config).unwrap();
    let child = env
        .cmd()
        .arg("snapshots")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_kill(child, 60, "snapshots with config.json -> /dev/zero");
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
}

/// Every index file load reserved 1 GiB up front, so a cairn under a memory
/// limit aborted before reading anything.
#[test]
fn an_index_load_reserved_a_gigabyte_and_aborted_under_a_memory_limit() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    env.backup(&[&src]);
    // The address space the binary itself maps, and 600 MiB besides: far
    // less than 1 GiB more.
    let binary = fs::metadata(BIN).unwrap().len() / 1024;
    let limit = binary + 600 * 1024;
    let line = format!(
        "ulimit -v {limit} && exec '{BIN}' --repo '{}' ls latest",
        env.repo.display()
    );
    let out = env.cmd_without_repo();
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .envs(
            out.get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "under ulimit -v {limit}: {}", stderr(&out));
    assert!(stdout(&out).contains("tree/src/a"), "{}", stdout(&out));
}

/// An index entry whose frame offset is near 2^64 wrapped round to a small
/// end, and plain `check` reported no errors.
#[test]
fn an_offset_near_2_64_wrapped_and_check_saw_nothing() {
    let env = Env::with_repo();
    write(&env.path("src/a"), &noise(10_000, 9));
    env.backup(&[&env.path("src")]);
    let repo = crate::util::try_open(Arc::new(LocalSink::new(&env.repo))).unwrap();
    let old = only_file_in(&env.repo.join("index"));
    let name = old
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".json.zst", "");
    let mut file = repo.read_index_file(&name).unwrap();
    file.packs[0].blobs.push(cairn::repo::index::IndexBlob {
        id: ObjectId::of(b"crafted"),
        frame_offset: u64::MAX - 5,
        frame_length: 100,
        offset: 0,
        length: 1,
    });
    repo.write_index_file(&file).unwrap();
    fs::remove_file(old).unwrap();
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("is truncated"), "{}", stderr(&out));
}

/// A config whose frame target is above what the reader reads was only
/// discovered at restore; it is refused when the repository is opened.
#[test]
fn a_config_beyond_the_readers_limits_was_discovered_at_restore() {
    for (field, value) in [("frame_target", 1u64 << 30), ("pack_target", 1), ("level", 99)] {
        let env = Env::with_repo();
        let path = env.repo.join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        if field == "level" {
            config["compression"]["level"] = value.into();
        } else {
            config[field] = value.into();
        }
        fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let out = env.run(&["snapshots"]);
        assert_eq!(code(&out), 1, "{field}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("config.json") && err.contains(field),
            "{field}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// Plain `check` passed manifests that restore refuses: a file whose blobs
/// do not add up to its size, a hard link to a path that is not an earlier
/// file, an entry under a file.
#[test]
fn check_passed_manifests_that_restore_refuses() {
    let env = Env::with_repo();
    let data = noise(5_000, 8);
    write(&env.path("src/a"), &data);
    env.backup(&[&env.path("src")]);
    let repo = crate::util::try_open(Arc::new(LocalSink::new(&env.repo))).unwrap();
    let blob = repo.crypto().blob_id(&data).to_hex();
    let base = serde_json::json!({"mode": 420, "uid": 0, "gid": 0, "mtime": 0});
    let line = |extra: serde_json::Value| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        format!("{v}\n")
    };
    let manifest = [
        line(serde_json::json!({"path": "r", "type": "dir", "mode": 493})),
        line(serde_json::json!({"path": "r/a", "type": "file", "size": 4_000, "blobs": [blob]})),
        line(serde_json::json!({"path": "r/a/under", "type": "file"})),
        line(serde_json::json!({"path": "r/b", "type": "hardlink", "target": "r/missing"})),
        line(serde_json::json!({"path": "r/c", "type": "file", "size": 5_000, "hash": ObjectId::of(&data).to_hex(), "blobs": [blob]})),
    ]
    .concat();
    plant_manifest(&repo, &manifest);
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("3 entries restore would refuse"), "{err}");
    assert!(
        err.contains("r/a has size 4000 but its blobs hold 5000 bytes"),
        "{err}"
    );
    assert!(
        err.contains("r/a/under lies under r/a, which is not a directory"),
        "{err}"
    );
    assert!(err.contains("to repair: cairn repair snapshots"), "{err}");
    let report = env.json(&["repair", "snapshots"]);
    assert_eq!(report["repaired"][0]["lost_count"], 3, "{report}");
    env.ok(&["check", "--read-data"]);
    let target = env.path("out");
    let out = env.run(&[
        "restore",
        "latest",
        "--host",
        "evil",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(target.join("r/c")).unwrap(), data);
    assert!(!target.join("r/a").exists() && !target.join("r/b").exists());
}
