//! Damage costs only what it touched: a damaged index file or pack leaves
//! every other snapshot and file usable, and `repair index` / `repair
//! snapshots` give back everything still stored, naming what was lost.

use std::fs;
use std::path::PathBuf;

use cairn::repo::index::IndexFile;
use cairn::repo::Repository;
use cairn::sink::{LocalSink, Sink};

use crate::util::*;

fn open(env: &Env) -> Repository {
    let sink: std::sync::Arc<dyn Sink> = std::sync::Arc::new(LocalSink::new(&env.repo));
    crate::util::try_open(sink).unwrap()
}

fn target(env: &Env, name: &str) -> PathBuf {
    env.path(name)
}

/// Restores `snapshot` to a fresh directory and returns where its tree is.
fn restore(env: &Env, snapshot: &str, name: &str, extra: &[&str]) -> (std::process::Output, PathBuf) {
    let dir = target(env, name);
    let mut args = vec!["restore", snapshot, "--target", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    (out, dir)
}

fn id_of(snap: &serde_json::Value) -> String {
    snap["id"].as_str().unwrap()[..8].to_string()
}

#[test]
fn a_damaged_index_file_costs_only_its_own_blobs() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a1"), &noise(300_000, 1));
    write(&src.join("a2"), b"small");
    let first = id_of(&env.backup(&[&src]));
    let damaged = only_file_in(&env.repo.join("index"));
    write(&src.join("b1"), &noise(200_000, 2));
    let second = id_of(&env.backup(&[&src]));
    flip_byte(&damaged, 40);

    // Every snapshot still lists.
    let list = env.run(&["snapshots"]);
    assert_eq!(code(&list), 0, "{}", stderr(&list));
    assert!(stdout(&list).contains(&first) && stdout(&list).contains(&second));

    // A snapshot whose manifest was listed there says so.
    let (out, _) = restore(&env, &first, "no-manifest", &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("the manifest of snapshot {first} cannot be read")),
        "{}",
        stderr(&out)
    );
    // A restore that needs its blobs names the files and writes nothing.
    let (out, dir) = restore(&env, &second, "refused", &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tree/src/a1") && err.contains("--ignore-damaged"),
        "{err}"
    );
    assert!(!dir.join("tree/src/b1").exists() && !dir.join("tree/src/a1").exists());

    // With --ignore-damaged, the rest comes back; the exit code says not all.
    let (out, dir) = restore(&env, &second, "partial", &["--ignore-damaged"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("lost: tree/src/a1"), "{}", stderr(&out));
    assert_eq!(fs::read(dir.join("tree/src/b1")).unwrap(), noise(200_000, 2));
    assert!(!dir.join("tree/src/a1").exists());
    assert!(temp_names(&dir.join("tree/src")).is_empty());

    // A backup stores the unknown blobs again.
    env.backup(&[&src]);

    // check names the file and the repair; the repair gives everything back.
    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1);
    let name = damaged
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".json.zst", "");
    assert!(
        stderr(&out).contains(&format!("index {name}: is damaged")),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("to repair: cairn repair index"),
        "{}",
        stderr(&out)
    );
    let before = repo_files(&env.repo);
    env.ok(&["repair", "index", "--dry-run"]);
    assert_eq!(repo_files(&env.repo), before, "--dry-run changed the repository");
    env.ok(&["repair", "index"]);
    env.ok(&["check", "--read-data"]);
    let (out, dir) = restore(&env, &first, "whole", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(dir.join("tree/src/a1")).unwrap(), noise(300_000, 1));
    assert_eq!(fs::read(dir.join("tree/src/a2")).unwrap(), b"small");
}

/// The rebuilt index file had the same content as the damaged one, so the
/// same name: the store took it as written already, and the damaged file
/// stayed for good.
#[test]
fn a_rebuilt_index_file_with_the_damaged_ones_name_was_taken_as_stored() {
    let env = Env::with_repo();
    write(&env.path("src/a"), &noise(50_000, 3));
    let snap = id_of(&env.backup(&[&env.path("src")]));
    let index = only_file_in(&env.repo.join("index"));
    flip_byte(&index, 30);
    let out = env.ok(&["repair", "index"]);
    assert!(out.contains("deleted 1"), "{out}");
    assert!(!index.exists());
    env.ok(&["check", "--read-data"]);
    let (out, dir) = restore(&env, &snap, "out", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(dir.join("tree/src/a")).unwrap(), noise(50_000, 3));
}

#[test]
fn a_damaged_pack_is_salvaged_and_repaired_snapshots_name_what_was_lost() {
    let env = Env::with_repo();
    let src = env.path("src");
    for i in 0..20 {
        write(&src.join(format!("f{i:02}")), &noise(100_000, 10 + i));
    }
    fs::hard_link(src.join("f03"), src.join("link03")).unwrap();
    let snap = id_of(&env.backup(&[&src]));
    let pack = packs(&env.repo).pop().unwrap();
    flip_byte(&pack, 1_000_000);

    let out = env.run(&["check", "--read-data"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("to repair: cairn repair index --read-all-packs, then cairn repair snapshots"),
        "{}",
        stderr(&out)
    );
    env.ok(&["repair", "index", "--read-all-packs"]);
    assert!(
        !pack.exists(),
        "the damaged pack stays after its blobs were salvaged"
    );

    let before = repo_files(&env.repo);
    let planned = env.json(&["repair", "snapshots", "--dry-run"]);
    assert_eq!(repo_files(&env.repo), before, "--dry-run changed the repository");
    let report = env.json(&["repair", "snapshots"]);
    assert_eq!(planned["repaired"][0]["lost"], report["repaired"][0]["lost"]);
    let lost: Vec<String> = report["repaired"][0]["lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().trim_start_matches("tree/src/").to_string())
        .collect();
    // A plain frame loses only the blob the byte fell in; a sealed frame
    // fails its tag whole (about 1 MiB: ten of these files, and the link).
    let most = if crate::util::encrypted() { 12 } else { 2 };
    assert!(!lost.is_empty() && lost.len() <= most, "{lost:?}");
    assert_eq!(report["repaired"][0]["snapshot"].as_str().unwrap()[..8], snap);

    // The record says what it lost and which record it replaced.
    let list = env.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0]["tags"].to_string().contains("repaired"), "{list}");
    assert_eq!(list[0]["repaired"]["from"].as_str().unwrap()[..8], snap);
    env.ok(&["check", "--read-data"]);

    // Everything else restores byte for byte.
    let (out, dir) = restore(&env, "latest", "out", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for entry in fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let restored = dir.join("tree/src").join(&name);
        if lost.contains(&name) {
            assert!(!restored.exists(), "{name} was lost but restored");
        } else {
            assert_eq!(
                fs::read(&restored).unwrap(),
                fs::read(src.join(&name)).unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn a_missing_pack_drops_from_the_index_and_its_snapshot_goes() {
    let env = Env::with_repo();
    write(&env.path("a/one"), &noise(100_000, 4));
    let kept = id_of(&env.backup(&[&env.path("a")]));
    let first_packs = packs(&env.repo);
    write(&env.path("b/two"), &noise(100_000, 5));
    let gone = id_of(&env.backup(&[&env.path("b")]));
    let new_pack: Vec<_> = packs(&env.repo)
        .into_iter()
        .filter(|p| !first_packs.contains(p))
        .collect();
    assert_eq!(new_pack.len(), 1);
    fs::remove_file(&new_pack[0]).unwrap();

    let out = env.run(&["check"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("is missing") && stderr(&out).contains(&gone));
    let out = env.ok(&["repair", "index"]);
    assert!(out.contains("listed but not stored"), "{out}");
    let report = env.json(&["repair", "snapshots"]);
    assert_eq!(
        report["removed"][0]["snapshot"].as_str().unwrap()[..8],
        gone,
        "{report}"
    );
    assert!(report["removed"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("manifest is lost"));
    env.ok(&["check", "--read-data"]);
    let list = env.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (out, dir) = restore(&env, &kept, "out", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(dir.join("tree/a/one")).unwrap(), noise(100_000, 4));
}

#[test]
fn an_in_place_restore_needing_lost_data_refuses_or_restores_the_rest() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"version one of a");
    env.backup(&[&src]);
    let damaged = only_file_in(&env.repo.join("index"));
    write(&src.join("b"), b"version one of b");
    let snap = id_of(&env.backup(&[&src]));
    flip_byte(&damaged, 40);
    write(&src.join("a"), b"a, edited");
    write(&src.join("b"), b"b, edited");

    let out = env.run(&["restore", &snap, "--in-place"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("src/a"), "{}", stderr(&out));
    assert_eq!(fs::read(src.join("a")).unwrap(), b"a, edited");
    assert_eq!(
        fs::read(src.join("b")).unwrap(),
        b"b, edited",
        "a refused restore wrote"
    );

    let out = env.run(&["restore", &snap, "--in-place", "--ignore-damaged"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(fs::read(src.join("b")).unwrap(), b"version one of b");
    assert_eq!(
        fs::read(src.join("a")).unwrap(),
        b"a, edited",
        "a lost file is left as it is"
    );
}

/// Two index files placed one blob in two places of one pack, one of them
/// wrong: the index kept the first loaded, so restore never tried the
/// right one.
#[test]
fn a_wrong_index_entry_hid_the_right_one() {
    let env = Env::with_repo();
    write(&env.path("src/a"), &noise(70_000, 6));
    let snap = id_of(&env.backup(&[&env.path("src")]));
    let repo = open(&env);
    let name = only_file_in(&env.repo.join("index"))
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".json.zst", "");
    let mut wrong: IndexFile = repo.read_index_file(&name).unwrap();
    for p in &mut wrong.packs {
        for b in &mut p.blobs {
            b.offset += 512;
        }
    }
    repo.write_index_file(&wrong).unwrap();
    // Whichever file loads first, the blob reads from its right place.
    let (out, dir) = restore(&env, &snap, "out", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(dir.join("tree/src/a")).unwrap(), noise(70_000, 6));
    // check reads both and names the wrong entries, though no snapshot
    // lost anything; rebuilding from the packs leaves only the right ones.
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(!stderr(&out).contains("affects"), "{}", stderr(&out));
    env.ok(&["repair", "index", "--read-all-packs"]);
    env.ok(&["check", "--read-data"]);
    assert_eq!(files_in(&env.repo.join("index")).len(), 1);
}

/// A byte flipped anywhere in any content-named object (the start, the
/// middle, the end of every pack, index file and snapshot record) is found
/// by `check --read-data` and named, one object at a time.
#[test]
fn every_flipped_byte_is_found_and_named() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), &noise(300_000, 30));
    write(&src.join("b"), b"a small file");
    env.backup(&[&src]);
    write(&src.join("c"), &noise(100_000, 31));
    env.backup(&[&src]);
    let objects: Vec<PathBuf> = ["packs", "index", "snapshots"]
        .iter()
        .flat_map(|kind| {
            walkdir::WalkDir::new(env.repo.join(kind))
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
        })
        .collect();
    let mut found = 0;
    for object in &objects {
        let original = fs::read(object).unwrap();
        let name = object.file_name().unwrap().to_string_lossy();
        let name = name.split('.').next().unwrap().to_string();
        for at in [0, original.len() / 2, original.len() - 1] {
            flip_byte(object, at);
            let out = env.run(&["check", "--read-data"]);
            assert_eq!(
                code(&out),
                1,
                "byte {at} of {}: {}",
                object.display(),
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(&name),
                "byte {at} of {name} not named: {}",
                stderr(&out)
            );
            fs::write(object, &original).unwrap();
            found += 1;
        }
    }
    env.ok(&["check", "--read-data"]);
    println!(
        "{found} corruptions in {} objects: every one found and named",
        objects.len()
    );
}
