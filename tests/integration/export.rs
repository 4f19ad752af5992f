//! `cairn export`: one .tar.zst that the system's tar and zstd unpack into
//! the snapshot's tree; and docs/RECOVERY.md, followed with standard tools.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// Whether every tool is installed; prints why a test is skipped if not.
fn have_tools(tools: &[&str]) -> bool {
    for tool in tools {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            skip(&format!("{tool} not installed"));
            return false;
        }
    }
    true
}

/// Every kind of entry an archive must carry.
fn build_tree(root: &Path) {
    write(&root.join("a/b/c/deep.txt"), b"deep");
    write(&root.join("a.txt"), b"sorts between a and a/b");
    write(&root.join("empty"), b"");
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    write(&root.join("big.bin"), &noise(3 << 20, 5));
    symlink("a.txt", root.join("link")).unwrap();
    let far = format!("../{}/target-of-a-long-link", "x".repeat(120));
    symlink(&far, root.join("long-link")).unwrap();
    write(&root.join("hard1"), b"one inode, two names");
    fs::hard_link(root.join("hard1"), root.join("a/hard2")).unwrap();
    write(&root.join("private"), b"secret-ish");
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    write(&root.join(OsStr::from_bytes(b"not-utf8-\xff\xfe")), b"odd name");
    // Longer than ustar's 100-byte name, with no `/` to split at.
    write(&root.join("n".repeat(200)), b"long name");
    mkfifo(&root.join("fifo"), 0o640);
    xattr::set(root.join("a.txt"), "user.cairn.test", b"value\x00\x01").unwrap();
    if is_root() {
        std::os::unix::fs::lchown(root.join("private"), Some(1234), Some(5678)).unwrap();
    }
    // Nanosecond mtimes, set last so nothing above touches them.
    for (i, name) in ["a.txt", "big.bin", "a/b/c/deep.txt", "a", "fifo"]
        .iter()
        .enumerate()
    {
        let t = filetime::FileTime::from_unix_time(1_700_000_000 + i as i64, 123_456_789 + i as u32);
        filetime::set_symlink_file_times(root.join(name), t, t).unwrap();
    }
}

/// `zstd -dc ARCHIVE | tar -x` into `dir`, as any machine would.
fn unpack_with_tar(archive: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut zstd = Command::new("zstd")
        .arg("-dc")
        .arg(archive)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run zstd");
    let stdout = zstd.stdout.take().unwrap();
    let status = Command::new("tar")
        .args([
            "-x",
            "--numeric-owner",
            "-p",
            "--xattrs",
            "--xattrs-include=user.*",
            "-C",
        ])
        .arg(dir)
        .stdin(stdout)
        .status()
        .expect("run tar");
    assert!(zstd.wait().unwrap().success(), "zstd failed");
    assert!(status.success(), "tar failed");
}

/// The archive's members as (type, path, link name) in archive order.
fn members(archive: &Path) -> Vec<(tar::EntryType, Vec<u8>, Option<Vec<u8>>)> {
    let file = fs::File::open(archive).unwrap();
    let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(file).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let link = e.link_name_bytes().map(|l| l.into_owned());
            (e.header().entry_type(), e.path_bytes().into_owned(), link)
        })
        .collect()
}

fn paths(archive: &Path) -> Vec<String> {
    members(archive)
        .into_iter()
        .map(|(_, p, _)| String::from_utf8_lossy(&p).into_owned())
        .collect()
}

/// Files in `dir` whose names start with `.` (temporary names).
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n.as_bytes().starts_with(b".")))
        .collect()
}

#[test]
fn an_export_unpacks_with_tar_into_the_snapshot_tree() {
    if !have_tools(&["zstd", "tar"]) {
        return;
    }
    let env = Env::with_repo();
    let src = env.path("src");
    build_tree(&src);
    assert_eq!(env.backup(&[&src])["partial"], false);
    let archive = env.path("out/snap.tar.zst");
    fs::create_dir_all(archive.parent().unwrap()).unwrap();
    let summary = env.json(&["export", "latest", "-o", archive.to_str().unwrap()]);
    assert_eq!(summary["output"], archive.to_str().unwrap());
    assert_eq!(summary["dirs"], 5);
    assert_eq!(summary["files"], 9);
    assert_eq!(summary["links"], 2);
    assert_eq!(summary["other"], 1);
    assert_eq!(summary["bytes"], (3 << 20) + 74);
    let mode = fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the archive may hold secrets");
    assert!(leftovers(archive.parent().unwrap()).is_empty());

    // Manifest paths, the layout `restore --target` gives.
    let unpacked = env.path("unpacked");
    unpack_with_tar(&archive, &unpacked);
    assert_same_tree(&src, &unpacked.join("tree/src"));
    let restored = env.path("restored");
    env.ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    assert_same_tree(&restored.join("tree/src"), &unpacked.join("tree/src"));

    // The hard link is a tar hard link to the first name in manifest order
    // (`a/hard2`: `a/...` sorts before `a.txt` and `hard1`).
    let link = members(&archive)
        .into_iter()
        .find(|(kind, _, _)| *kind == tar::EntryType::Link)
        .expect("a hard link member");
    assert_eq!(link.1, b"tree/src/hard1");
    assert_eq!(link.2.as_deref(), Some(&b"tree/src/a/hard2"[..]));

    // -o - writes the very same bytes.
    let piped = env.cmd().args(["export", "latest", "-o", "-"]).output().unwrap();
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert!(
        piped.stdout == fs::read(&archive).unwrap(),
        "-o - differs from -o FILE"
    );
    assert!(stderr(&piped).contains("exported snapshot"), "{}", stderr(&piped));
}

#[test]
fn include_and_exclude_choose_what_is_exported() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("keep/one.txt"), b"1");
    write(&src.join("keep/skip.log"), b"2");
    write(&src.join("keep/sub/two.txt"), b"3");
    write(&src.join("other/three.txt"), b"4");
    // Three names of one inode; the first in manifest order is left out.
    write(&src.join("a-first"), b"shared");
    fs::hard_link(src.join("a-first"), src.join("keep/link1")).unwrap();
    fs::hard_link(src.join("a-first"), src.join("keep/sub/link2")).unwrap();
    env.backup(&[&src]);

    let out = env.path("part.tar.zst");
    let o = out.to_str().unwrap();
    env.ok(&[
        "export",
        "latest",
        "-o",
        o,
        "--include",
        "keep",
        "--exclude",
        "keep/*.log",
    ]);
    assert_eq!(
        paths(&out),
        [
            "tree/src/keep/",
            "tree/src/keep/one.txt",
            "tree/src/keep/sub/",
            "tree/src/keep/sub/two.txt",
            // The first exported name of the inode carries the data ...
            "tree/src/keep/link1",
            // ... and the others link to it.
            "tree/src/keep/sub/link2",
        ]
    );
    let m = members(&out);
    assert_eq!(m[4].0, tar::EntryType::Regular);
    assert_eq!(m[5].0, tar::EntryType::Link);
    assert_eq!(m[5].2.as_deref(), Some(&b"tree/src/keep/link1"[..]));
    let file = fs::File::open(&out).unwrap();
    let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(file).unwrap());
    let mut shared = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path_bytes().ends_with(b"link1") {
            e.read_to_string(&mut shared).unwrap();
        }
    }
    assert_eq!(shared, "shared");

    // The whole manifest path matches too, and an exclude alone keeps the rest.
    env.ok(&["export", "latest", "-o", o, "-i", "tree/src/other/**"]);
    assert_eq!(paths(&out), ["tree/src/other/three.txt"]);
    env.ok(&["export", "latest", "-o", o, "-e", "keep", "-e", "a-first"]);
    assert_eq!(
        paths(&out),
        ["tree/src/", "tree/src/other/", "tree/src/other/three.txt"]
    );
}

#[test]
fn a_damaged_pack_fails_the_export_and_leaves_no_file() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("big.bin"), &noise(3 << 20, 9));
    env.backup(&[&src]);
    let pack = packs(&env.repo)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    fs::set_permissions(&pack, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&pack, bytes).unwrap();

    let dir = env.path("out");
    fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("snap.tar.zst");
    let out = env.run(&["export", "latest", "-o", archive.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("tree/src/big.bin"), "{}", stderr(&out));
    assert!(!archive.exists());
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

#[test]
fn refusals() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("f"), b"x");
    env.backup(&[&src]);
    let out = env.run(&["export", "latest", "-o", "-", "--json"]);
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty());
    let dir = env.path("a-dir");
    fs::create_dir_all(&dir).unwrap();
    let out = env.run(&["export", "latest", "-o", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));
    assert!(leftovers(env.dir.path()).is_empty());
}

#[test]
fn ctrl_c_stops_an_export_and_removes_its_file() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..24 {
        write(&src.join(format!("f{i}")), &noise(2 << 20, 100 + i));
    }
    env.backup(&[&src]);
    let dir = env.path("out");
    fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("snap.tar.zst");
    let mut child = env
        .cmd()
        .args(["export", "latest", "-o", archive.to_str().unwrap()])
        // Every store operation waits: the signal lands mid-export.
        .env("CAIRN_FAULTS", "stall=1:100ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the export ended before the signal"
    );
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(!archive.exists());
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
}

/// The script between the markers of docs/RECOVERY.md, without its fence.
fn recovery_script() -> String {
    let doc = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/RECOVERY.md")).unwrap();
    let start = doc.find("<!-- recovery-script:start -->").expect("start marker");
    let end = doc.find("<!-- recovery-script:end -->").expect("end marker");
    let block = &doc[start..end];
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .map(|(body, _)| body)
        .expect("a ```sh fence between the markers");
    body.to_string()
}

#[test]
fn recovery_doc_gets_files_back_with_standard_tools() {
    if !crate::util::plain_only("docs/RECOVERY.md reads a plain repository with standard tools") {
        return;
    }
    if !have_tools(&["zstd", "tar", "jq", "b3sum"]) {
        return;
    }
    let env = Env::with_repo();
    let src = env.path("src");
    let big = noise(3 << 20, 21);
    write(&src.join("data/big.bin"), &big);
    write(&src.join("small.txt"), b"old\n");
    // Written as 10:30+01:00, this snapshot is older than the next one
    // (09:45Z) although its time sorts after it as text.
    env.ok(&[
        "backup",
        src.to_str().unwrap(),
        "--time",
        "2026-11-24T10:30:00+01:00",
    ]);
    write(&src.join("small.txt"), b"new\n");
    fs::hard_link(src.join("small.txt"), src.join("z-link")).unwrap();
    env.ok(&["backup", src.to_str().unwrap(), "--time", "2026-11-24T09:45:00Z"]);

    // The multi-blob file has a `hash`; the one-blob file has none.
    let entries = env.json(&["ls", "latest"]);
    let entry = |p: &str| {
        entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == p)
            .unwrap()
            .clone()
    };
    assert!(entry("tree/src/data/big.bin")["blobs"].as_array().unwrap().len() > 1);
    assert!(entry("tree/src/data/big.bin")["hash"].is_string());
    assert!(entry("tree/src/small.txt")["hash"].is_null());

    let script = env.path("recover.sh");
    fs::write(&script, recovery_script()).unwrap();
    let recover = |path: &str, env_vars: &[(&str, &str)]| -> Vec<u8> {
        let out_file = env.path("recovered");
        let _ = fs::remove_file(&out_file);
        let out = Command::new("bash")
            .arg(&script)
            .arg(&env.repo)
            .arg(path)
            .arg(&out_file)
            .envs(env_vars.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "recover {path}: {}", stderr(&out));
        fs::read(&out_file).unwrap()
    };
    assert!(recover("tree/src/data/big.bin", &[]) == big);
    assert_eq!(recover("tree/src/small.txt", &[]), b"new\n");
    assert_eq!(recover("tree/src/z-link", &[]), b"new\n");
    let first = env.json(&["snapshots"])[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        recover("tree/src/small.txt", &[("SNAPSHOT", &first[..8])]),
        b"old\n"
    );

    // A damaged blob is refused, not written out.
    for pack in packs(&env.repo) {
        let mut bytes = fs::read(&pack).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x55;
        fs::write(&pack, bytes).unwrap();
    }
    let out_file = env.path("recovered");
    let _ = fs::remove_file(&out_file);
    let out = Command::new("bash")
        .arg(&script)
        .arg(&env.repo)
        .arg("tree/src/data/big.bin")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out_file.exists());
}
