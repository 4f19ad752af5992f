//! Backup then restore reproduces a tree exactly, and the format is what it claims.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use crate::util::*;

/// A tree with every kind of thing a backup must keep.
fn build_rich_tree(root: &Path) {
    write(&root.join("plain.txt"), b"hello\n");
    write(&root.join("empty"), b"");
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    write(&root.join("a/b/c/deep.txt"), b"deep");
    write(&root.join("a.txt"), b"sorts between a and a/b");
    symlink("plain.txt", root.join("link")).unwrap();
    symlink("/does/not/exist", root.join("dangling")).unwrap();
    write(&root.join("hard1"), b"one inode, two names");
    fs::hard_link(root.join("hard1"), root.join("a/hard2")).unwrap();
    write(&root.join("mode751"), b"x");
    fs::set_permissions(root.join("mode751"), fs::Permissions::from_mode(0o751)).unwrap();
    write(&root.join("private"), b"secret-ish");
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    let odd = root.join(OsStr::from_bytes(b"not-utf8-\xff\xfe"));
    write(&odd, b"odd name");
    write(&root.join("with space"), b"s");
    write(&root.join("new\nline"), b"n");
    write(&root.join("back\\slash"), b"b");
    // Several chunks (the maximum chunk is 4 MiB).
    write(&root.join("big.bin"), &noise(20 << 20, 7));
    xattr::set(root.join("plain.txt"), "user.cairn.test", b"value\x00\x01").unwrap();
    xattr::set(root.join("a"), "user.cairn.dir", b"d").unwrap();
    if is_root() {
        std::os::unix::fs::lchown(root.join("private"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("link"), Some(4321), Some(8765)).unwrap();
    }
    // Nanosecond mtimes, set last so nothing above touches them.
    for (i, name) in ["plain.txt", "big.bin", "a/b/c/deep.txt", "a"].iter().enumerate() {
        let t = filetime::FileTime::from_unix_time(1_700_000_000 + i as i64, 123_456_789 + i as u32);
        filetime::set_file_times(root.join(name), t, t).unwrap();
    }
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 5);
    filetime::set_symlink_file_times(root.join("link"), t, t).unwrap();
}

#[test]
fn restore_reproduces_every_kind_of_entry() {
    let env = Env::with_repo();
    let src = env.path("src");
    build_rich_tree(&src);
    let out = env.backup(&[&src]);
    assert_eq!(out["partial"], false);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    // Each tree root lands at <target>/tree/<name of the backed-up directory>.
    assert_same_tree(&src, &target.join("tree/src"));
    env.ok(&["check", "--read-data"]);
}

#[test]
fn duplicate_content_is_stored_once() {
    let env = Env::with_repo();
    let src = env.path("src");
    let data = noise(6 << 20, 11);
    write(&src.join("one.bin"), &data);
    env.backup(&[&src]);
    let before = du(&env.repo);
    write(&src.join("copy/two.bin"), &data);
    let out = env.backup(&[&src]);
    let grown = du(&env.repo) - before;
    assert!(
        grown < data.len() as u64 / 10,
        "repository grew by {grown} bytes for a duplicate of {} bytes",
        data.len()
    );
    assert!(
        out["stats"]["blobs_added"].as_u64().unwrap() <= 2,
        "only the manifest is new: {out}"
    );
}

#[test]
fn unchanged_files_are_not_read_again() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..20 {
        write(&src.join(format!("f{i}")), &noise(10_000, i));
    }
    let first = env.backup(&[&src]);
    assert_eq!(first["stats"]["files_new"], 20);
    write(&src.join("f3"), b"changed");
    let second = env.backup(&[&src]);
    let stats = &second["stats"];
    assert_eq!(stats["files_unchanged"], 19, "{second}");
    assert_eq!(stats["files_changed"], 1);
    assert_eq!(stats["bytes_read"], 7);
    assert_eq!(second["parent"], first["id"]);
    // Nothing changed since: the manifest is the same blobs, added nothing.
    let third = env.backup(&[&src]);
    assert_eq!(third["manifest"], second["manifest"]);
    assert_eq!(third["stats"]["blobs_added"], 0);
}

#[test]
fn pack_is_a_valid_tar_zst() {
    if !crate::util::plain_only("an encrypted pack is sealed frame by frame") {
        return;
    }
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..50 {
        write(
            &src.join(format!("small{i}.txt")),
            format!("file {i}\n").repeat(i + 1).as_bytes(),
        );
    }
    write(&src.join("big"), &noise(3 << 20, 3));
    env.backup(&[&src]);
    let packs = packs(&env.repo);
    assert!(!packs.is_empty());
    let mut members = 0;
    for pack in packs {
        let bytes = fs::read(&pack).unwrap();
        // Decompress all frames as one stream, as `zstd -dc` does.
        let mut tar_bytes = Vec::new();
        zstd::stream::Decoder::new(&bytes[..])
            .unwrap()
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            assert_eq!(
                name,
                blake3::hash(&data).to_hex().as_str(),
                "member named by its hash"
            );
            members += 1;
        }
        let stem = pack
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".tar.zst", "");
        assert_eq!(
            stem,
            blake3::hash(&bytes).to_hex().as_str(),
            "pack named by its hash"
        );
    }
    assert!(members >= 51, "only {members} tar members");
}

#[test]
fn include_restores_only_matching_paths() {
    let env = Env::with_repo();
    let src = env.path("project");
    write(&src.join("src/main.rs"), b"fn main() {}");
    write(&src.join("src/lib/mod.rs"), b"mod x;");
    write(&src.join("README"), b"readme");
    env.backup(&[&src]);
    let target = env.path("out");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        "src/**",
    ]);
    assert!(target.join("tree/project/src/main.rs").exists());
    assert!(target.join("tree/project/src/lib/mod.rs").exists());
    assert!(!target.join("tree/project/README").exists());
}

#[test]
fn excludes_leave_out_matching_paths() {
    let env = Env::with_repo();
    let src = env.path("project");
    write(&src.join("src/main.rs"), b"fn main() {}");
    write(&src.join("target/debug/big"), b"build output");
    write(&src.join("logs/today.log"), b"log");
    write(&src.join("src/keep.log.txt"), b"kept");
    env.ok(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        "target",
        "--exclude",
        "*.log",
    ]);
    let listing = env.ok(&["ls", "latest"]);
    assert!(listing.contains("tree/project/src/main.rs"));
    assert!(listing.contains("keep.log.txt"));
    assert!(!listing.contains("target"), "{listing}");
    assert!(!listing.contains("today.log"), "{listing}");
}

#[test]
fn several_roots_with_the_same_name_get_distinct_prefixes() {
    let env = Env::with_repo();
    write(&env.path("one/src/a"), b"1");
    write(&env.path("two/src/a"), b"2");
    let out = env.backup(&[&env.path("one/src"), &env.path("two/src")]);
    let prefixes: Vec<&str> = out["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes, ["tree/src", "tree/src-2"]);
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("tree/src/a")).unwrap(), b"1");
    assert_eq!(fs::read(target.join("tree/src-2/a")).unwrap(), b"2");
}

#[test]
fn a_single_file_can_be_backed_up() {
    let env = Env::with_repo();
    write(&env.path("nginx.conf"), b"server {}");
    env.backup(&[&env.path("nginx.conf")]);
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("tree/nginx.conf")).unwrap(), b"server {}");
}

#[test]
fn a_symlink_given_as_a_source_is_saved_as_the_link() {
    let env = Env::with_repo();
    write(&env.path("real/x"), b"x");
    symlink(env.path("real"), env.path("plink")).unwrap();
    env.backup(&[&env.path("plink")]);
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(
        fs::read_link(target.join("tree/plink")).unwrap(),
        env.path("real")
    );
}

#[test]
fn root_prefixes_never_collide() {
    let env = Env::with_repo();
    for (dir, content) in [("x/a-2", "x"), ("y/a", "y"), ("z/a", "z")] {
        write(&env.path(dir).join("f"), content.as_bytes());
    }
    let out = env.backup(&[&env.path("x/a-2"), &env.path("y/a"), &env.path("z/a")]);
    let mut prefixes: Vec<&str> = out["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap())
        .collect();
    prefixes.sort();
    assert_eq!(prefixes, ["tree/a", "tree/a-2", "tree/a-3"]);
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("tree/a-2/f")).unwrap(), b"x");
    assert_eq!(fs::read(target.join("tree/a/f")).unwrap(), b"y");
    assert_eq!(fs::read(target.join("tree/a-3/f")).unwrap(), b"z");
}

#[test]
fn the_repository_is_never_saved_into_itself() {
    let env = Env::with_repo();
    write(&env.path("notes.txt"), b"mine");
    // The scratch directory holds both the data and the repository.
    let out = env.backup(&[env.dir.path()]);
    assert_eq!(out["partial"], false);
    let listing = env.ok(&["ls", "latest"]);
    assert!(listing.contains("notes.txt"), "{listing}");
    assert!(!listing.contains("/repo"), "the repository was saved: {listing}");
}

#[test]
fn a_tree_deeper_than_the_open_directory_limit_is_saved_whole() {
    // The walk holds at most 256 directories open; deeper ones are opened by
    // path. Files at every depth, and siblings after the deep branch, must
    // all be saved.
    let env = Env::with_repo();
    let src = env.path("src");
    let mut dir = src.clone();
    for depth in 0..300 {
        dir = dir.join("d");
        write(&dir.join(format!("f{depth}")), format!("{depth}").as_bytes());
        fs::create_dir_all(dir.join("e")).unwrap();
    }
    write(&src.join("z-after"), b"after the deep branch");
    let out = env.backup(&[&src]);
    assert_eq!(out["partial"], false);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("tree/src"));
}

#[test]
fn a_second_backup_from_the_parent_reproduces_every_kind_of_entry() {
    // The second backup finishes unchanged entries from the parent's lines:
    // plain ones by their bytes, escaped names, non-UTF-8 names and entries
    // with extended attributes by parsing them. Either way the manifest must
    // come out the same as the first, and restore the same tree.
    let env = Env::with_repo();
    let src = env.path("src");
    build_rich_tree(&src);
    let first = env.backup(&[&src]);
    let second = env.backup(&[&src]);
    assert_eq!(second["parent"], first["id"]);
    assert_eq!(second["stats"]["files_new"], 0, "{second}");
    assert_eq!(second["stats"]["files_changed"], 0, "{second}");
    assert_eq!(second["stats"]["bytes_read"], 0, "{second}");
    assert_eq!(second["manifest"], first["manifest"]);
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("tree/src"));
}
