//! Disks that really fill (a small tmpfs), under a repository and under a
//! restore: a clear error, no partial object or file left visible, and a
//! repository that checks whole with every earlier snapshot intact.

use std::fs;

use crate::util::*;

fn tmpfs(env: &Env, name: &str, size: &str) -> Option<Tmpfs> {
    let disk = Tmpfs::mount(&env.path(name), size);
    if disk.is_none() {
        skip("cannot mount a tmpfs here (needs root)");
    }
    disk
}

/// What is in a directory tree that is not a whole object: temporary files.
fn partial_objects(repo: &std::path::Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(repo)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            name.starts_with('.') || name.contains("tmp")
        })
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn a_backup_that_fills_a_real_disk_stops_cleanly() {
    let env = Env::with_repo();
    // The packs on a disk of their own: the free space the backup sees
    // (the repository's) is not what it has, so it meets ENOSPC itself.
    let Some(disk) = tmpfs(&env, "repo/packs", "2m") else {
        return;
    };
    let small = env.path("small");
    write(&small.join("a"), &noise(500_000, 1));
    let first = env.backup(&[&small]);
    let first = first["id"].as_str().unwrap().to_string();
    let big = env.path("big");
    for i in 0..6 {
        write(&big.join(format!("f{i}")), &noise(700_000, 10 + i));
    }
    let out = env.run(&["backup", big.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.lines().filter(|l| l.starts_with("error")).count() <= 2,
        "{err}"
    );
    assert!(
        partial_objects(&env.repo).is_empty(),
        "{:?}",
        partial_objects(&env.repo)
    );
    env.ok(&["check", "--read-data"]);
    let target = env.path("out");
    env.ok(&["restore", &first, "--target", target.to_str().unwrap()]);
    assert_eq!(fs::read(target.join("tree/small/a")).unwrap(), noise(500_000, 1));
    // With room again, the same backup succeeds.
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(&disk.0)
        .status()
        .unwrap();
    assert!(grown.success());
    env.backup(&[&big]);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn a_restore_that_fills_a_real_disk_stops_cleanly() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..8 {
        write(&src.join(format!("f{i}")), &noise(600_000, 20 + i));
    }
    env.backup(&[&src]);
    let Some(disk) = tmpfs(&env, "target", "2m") else {
        return;
    };
    let target = disk.0.join("out");
    let out = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(temp_names(&target).is_empty(), "{:?}", temp_names(&target));
    // What was written is whole.
    for (path, hash) in file_hashes(&target.join("tree/src")) {
        assert_eq!(hash, file_hashes(&src)[&path], "{} is partial", path.display());
    }
}
