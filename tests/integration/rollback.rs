//! Rollback: restore in place as one undoable transaction.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// `cp -a`: a reference copy with modes, times and links.
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

/// A project tree of a few kinds of entries.
fn make_project(dir: &Path) {
    write(&dir.join("main.go"), b"package main\n");
    write(&dir.join("go.mod"), b"module example\n");
    write(&dir.join("internal/a.go"), &noise(40_000, 1));
    write(&dir.join("internal/b.go"), b"package internal\n");
    write(&dir.join("docs/readme.md"), b"# readme\n");
    write(&dir.join("bin/tool"), b"#!/bin/sh\necho tool 1.0\n");
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("main.go", dir.join("entry")).unwrap();
    write(&dir.join("secret.key"), b"key");
    fs::set_permissions(dir.join("secret.key"), fs::Permissions::from_mode(0o600)).unwrap();
}

/// What an upgrade does: rewrites, adds, deletes, changes permissions,
/// swaps a file for a symlink and a directory for a file.
fn upgrade(dir: &Path) {
    write(&dir.join("main.go"), b"package main // v2\n");
    write(&dir.join("internal/c.go"), b"package internal // new\n");
    fs::remove_file(dir.join("internal/b.go")).unwrap();
    fs::set_permissions(dir.join("secret.key"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(dir.join("go.mod")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("go.mod")).unwrap();
    fs::remove_dir_all(dir.join("docs")).unwrap();
    write(&dir.join("docs"), b"docs moved online\n");
    fs::remove_file(dir.join("entry")).unwrap();
    fs::create_dir(dir.join("entry")).unwrap();
    write(&dir.join("bin/tool"), b"#!/bin/sh\necho tool 2.0\n");
}

struct Story {
    env: Env,
    proj: std::path::PathBuf,
    /// The project as it was when the snapshot was taken.
    original: std::path::PathBuf,
    /// The project after the upgrade.
    upgraded: std::path::PathBuf,
}

/// A snapshot of a project, then an upgrade of it, with copies of both.
fn story() -> Story {
    let env = Env::with_repo();
    let proj = env.path("proj");
    make_project(&proj);
    env.backup(&[&proj]);
    let original = env.path("original");
    copy_tree(&proj, &original);
    upgrade(&proj);
    let upgraded = env.path("upgraded");
    copy_tree(&proj, &upgraded);
    Story {
        env,
        proj,
        original,
        upgraded,
    }
}

#[test]
fn in_place_restore_brings_the_tree_back_and_undo_takes_it_back() {
    let s = story();
    let out = s.env.ok(&["restore", "latest", "--in-place", "--delete"]);
    assert!(out.contains("safety snapshot"), "{out}");
    assert_same_tree(&s.original, &s.proj);

    // A second identical restore writes nothing.
    let again = s.env.ok(&["restore", "latest", "--in-place", "--delete"]);
    assert!(again.contains("nothing to restore"), "{again}");

    // The safety snapshot is tagged and names the restore it protects.
    let snaps = s.env.json(&["snapshots", "--tag", "pre-restore"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert!(snaps[0]["rollback"]["restores"].is_string(), "{snaps}");

    s.env.ok(&["restore", "--undo"]);
    assert_same_tree(&s.upgraded, &s.proj);
    // Undoing the undo restores the snapshot again.
    s.env.ok(&["restore", "--undo"]);
    assert_same_tree(&s.original, &s.proj);
}

/// The safety snapshot is matched against the snapshot being restored,
/// whose lines the plan has read already, when the files on disk are the
/// ones that snapshot saw; otherwise against the newest snapshot, as any
/// backup: a large file whose ctime changed would be read again.
#[test]
fn the_safety_snapshot_reuses_the_restored_snapshot_as_parent_only_when_that_is_cheap() {
    let env = Env::with_repo();
    let proj = env.path("proj");
    make_project(&proj);
    write(&proj.join("big.bin"), &noise(9 << 20, 7));
    let restored = env.backup(&[&proj])["id"].as_str().unwrap().to_string();
    let safety_parent = |env: &Env| {
        let snaps = env.json(&["snapshots", "--tag", "pre-restore"]);
        let last = snaps.as_array().unwrap().last().unwrap().clone();
        last["parent"].as_str().unwrap().to_string()
    };

    write(&proj.join("main.go"), b"package main // edited\n");
    env.ok(&["restore", &restored, "--in-place", "--delete"]);
    assert_eq!(safety_parent(&env), restored);

    // Same size, mtime and mode, a new ctime: unchanged for the restore, to
    // be read again by a backup matched against the restored snapshot.
    let big = proj.join("big.bin");
    fs::set_permissions(&big, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&big, fs::Permissions::from_mode(0o644)).unwrap();
    let newest = env.backup(&[&proj])["id"].as_str().unwrap().to_string();
    write(&proj.join("main.go"), b"package main // edited again\n");
    env.ok(&["restore", &restored, "--in-place", "--delete"]);
    assert_eq!(safety_parent(&env), newest);

    env.ok(&["restore", "--undo"]);
    assert_eq!(
        fs::read(proj.join("main.go")).unwrap(),
        b"package main // edited again\n"
    );
    assert_eq!(fs::read(&big).unwrap(), noise(9 << 20, 7));

    // A large file the restored snapshot lacks would be read whole too.
    let restored = env.backup(&[&proj])["id"].as_str().unwrap().to_string();
    write(&proj.join("added.bin"), &noise(9 << 20, 8));
    let newest = env.backup(&[&proj])["id"].as_str().unwrap().to_string();
    write(&proj.join("main.go"), b"package main // a third edit\n");
    env.ok(&["restore", &restored, "--in-place"]);
    assert_eq!(safety_parent(&env), newest);
}

/// The journals in a state directory.
fn journals(state: &Path) -> Vec<serde_json::Value> {
    files_in(state)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_slice(&fs::read(p).unwrap()).unwrap())
        .collect()
}

/// A journal made from `template`, named `name`, edited by `edit`.
fn plant_journal(
    state: &Path,
    template: &serde_json::Value,
    name: &str,
    edit: &dyn Fn(&mut serde_json::Value),
) {
    let mut j = template.clone();
    j["transaction"] = name.into();
    edit(&mut j);
    fs::write(
        state.join(format!("{name}.json")),
        serde_json::to_vec(&j).unwrap(),
    )
    .unwrap();
}

/// The story restored in place once: its state directory, and the
/// journal that restore left there.
fn restored_once() -> (Story, std::path::PathBuf, serde_json::Value) {
    let s = story();
    s.env.ok(&["restore", "latest", "--in-place", "--delete"]);
    let state = s.env.path("state");
    let journal = journals(&state).pop().unwrap();
    (s, state, journal)
}

/// Journals piled up, one per in-place restore, and every restore read
/// them all: finished ones past the newest sixteen of a repository go.
#[test]
fn old_finished_journals_are_pruned_and_unfinished_ones_kept() {
    let (s, state, first) = restored_once();
    let old = |j: &mut serde_json::Value| j["started"] = "2020-01-01T00:00:00Z".into();
    for i in 0..20 {
        plant_journal(&state, &first, &format!("old-{i:02}"), &old);
    }
    plant_journal(&state, &first, "other-repository", &|j| {
        old(j);
        j["repository"] = "another".into();
    });
    plant_journal(&state, &first, "unfinished", &|j| {
        old(j);
        j["state"] = "writing".into();
        j["snapshot"] = "0".repeat(64).into();
    });

    write(&s.proj.join("main.go"), b"package main // edited\n");
    s.env.ok(&["restore", "latest", "--in-place", "--delete"]);
    let left = journals(&state);
    let ours = |state: &str| {
        left.iter()
            .filter(|j| j["repository"] == first["repository"] && j["state"] == state)
            .count()
    };
    assert_eq!(ours("done"), 16, "{left:?}");
    assert_eq!(ours("writing"), 1, "{left:?}");
    assert!(left.iter().any(|j| j["repository"] == "another"));
    assert!(
        left.iter().any(|j| j["transaction"] == first["transaction"]),
        "the newest are kept"
    );
}

/// Pruning counted the journal `--undo` needs among the sixteen: after
/// sixteen restores that cannot be undone (rolled back, or without a
/// safety snapshot), the last one that can be was removed.
#[test]
fn pruning_journals_keeps_the_one_undo_takes_back() {
    let (s, state, undoable) = restored_once();
    for i in 0..20 {
        plant_journal(&state, &undoable, &format!("later-{i:02}"), &|j| {
            j["started"] = "2030-01-01T00:00:00Z".into();
            j["state"] = "rolled-back".into();
        });
    }
    write(&s.proj.join("main.go"), b"package main // edited\n");
    s.env.ok(&[
        "restore",
        "latest",
        "--in-place",
        "--delete",
        "--no-safety-snapshot",
    ]);
    let left = journals(&state);
    assert!(
        left.iter().any(|j| j["transaction"] == undoable["transaction"]),
        "{left:?}"
    );
    s.env.ok(&["restore", "--undo"]);
    assert_same_tree(&s.upgraded, &s.proj);
}

#[test]
fn without_delete_new_files_are_kept_and_listed() {
    let s = story();
    let out = s.env.run(&["restore", "latest", "--in-place"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("not in the snapshot"), "{}", stderr(&out));
    assert_eq!(
        fs::read(s.proj.join("internal/c.go")).unwrap(),
        b"package internal // new\n"
    );
    assert_eq!(fs::read(s.proj.join("main.go")).unwrap(), b"package main\n");
}

#[test]
fn dry_run_shows_the_plan_and_changes_nothing() {
    let s = story();
    let out = s
        .env
        .json(&["restore", "latest", "--in-place", "--delete", "--dry-run"]);
    let plan = &out["plan"];
    let root = &plan["roots"][0];
    assert_eq!(root["prefix"], "tree/proj", "{plan}");
    assert_eq!(root["create"], 2, "internal/b.go, docs/readme.md: {plan}");
    // main.go, go.mod (a symlink now), docs (a file now), entry (a dir
    // now), bin/tool.
    assert_eq!(root["overwrite"], 5, "{plan}");
    assert_eq!(root["extra"], 1, "internal/c.go: {plan}");
    assert!(
        root["metadata"].as_u64().unwrap() >= 1,
        "secret.key's mode: {plan}"
    );
    assert_same_tree(&s.upgraded, &s.proj);
    assert_eq!(
        s.env.json(&["snapshots"]).as_array().unwrap().len(),
        1,
        "no safety snapshot"
    );
}

#[test]
fn excluded_paths_are_never_deleted() {
    let env = Env::with_repo();
    let proj = env.path("proj");
    write(&proj.join("src/main.rs"), b"fn main() {}");
    write(&proj.join("target/debug/app"), b"build output");
    let p = proj.to_str().unwrap();
    env.ok(&["backup", "--exclude", "target", "--exclude", "*.log", p]);
    write(&proj.join("run.log"), b"log");
    write(&proj.join("src/extra.rs"), b"added");
    env.ok(&["restore", "latest", "--in-place", "--delete"]);
    assert!(proj.join("target/debug/app").exists(), "excluded tree kept");
    assert!(proj.join("run.log").exists(), "excluded file kept");
    assert!(
        !proj.join("src/extra.rs").exists(),
        "a file the snapshot lacks is deleted"
    );
}

#[test]
fn a_failing_health_check_rolls_everything_back() {
    let s = story();
    // The check wants the upgraded main.go: the restored one fails it.
    let check = format!("grep -q v2 {} || exit 3", s.proj.join("main.go").display());
    let out = s
        .env
        .run(&["restore", "latest", "--in-place", "--delete", "--check", &check]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("health check") && err.contains("put back"), "{err}");
    assert_same_tree(&s.upgraded, &s.proj);
    // A check that passes keeps the restore.
    s.env
        .ok(&["restore", "latest", "--in-place", "--delete", "--check", "true"]);
    assert_same_tree(&s.original, &s.proj);
}

#[test]
fn a_health_check_that_hangs_is_stopped_with_its_children() {
    let s = story();
    let marker = s.env.path("grandchild-alive");
    let cmd = format!("(sleep 3; touch {}) & sleep 60", marker.display());
    let started = Instant::now();
    let out = s.env.run(&[
        "restore",
        "latest",
        "--in-place",
        "--check",
        &cmd,
        "--check-timeout",
        "1",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        stderr(&out).contains("still running after 1s"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!marker.exists(), "the check's whole process group was killed");
    assert_same_tree(&s.upgraded, &s.proj);
}

/// A root that is now a symlink to somewhere else is replaced by the
/// directory, never written through; a manifest entry cannot leave its root.
#[test]
fn a_root_swapped_for_a_symlink_is_not_written_through() {
    let s = story();
    let elsewhere = s.env.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    write(&elsewhere.join("keep"), b"not mine to touch");
    fs::rename(&s.proj, s.env.path("moved")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &s.proj).unwrap();
    s.env.ok(&["restore", "latest", "--in-place", "--delete"]);
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 1);
    assert_eq!(fs::read(elsewhere.join("keep")).unwrap(), b"not mine to touch");
    assert_same_tree(&s.original, &s.proj);
    s.env.ok(&["restore", "--undo"]);
    assert!(fs::symlink_metadata(&s.proj).unwrap().file_type().is_symlink());
}

/// Every file after a kill is its old or its new content, never a mix;
/// running the restore again finishes it; `--undo` then gives back exactly
/// the state before the first attempt.
#[test]
fn a_killed_in_place_restore_leaves_no_torn_file_and_can_be_finished_or_undone() {
    // Many files of distinct old and new content.
    let s = story();
    for i in 0..300 {
        write(&s.original.join(format!("many/f{i:03}")), &noise(30_000, i));
    }
    let env = &s.env;
    fs::remove_dir_all(&s.proj).unwrap();
    copy_tree(&s.original, &s.proj);
    env.backup(&[&s.proj]);
    let reference = env.path("reference");
    copy_tree(&s.proj, &reference);
    let upgraded = env.path("upgraded-many");
    for i in 0..300 {
        write(&s.proj.join(format!("many/f{i:03}")), &noise(20_000, 1000 + i));
    }
    upgrade(&s.proj);
    copy_tree(&s.proj, &upgraded);

    // How long a whole restore takes here, to spread the kills over it.
    let started = Instant::now();
    env.ok(&["restore", "latest", "--in-place", "--delete"]);
    let full = started.elapsed();
    assert_same_tree(&reference, &s.proj);

    for point in 0..12u32 {
        fs::remove_dir_all(&s.proj).unwrap();
        copy_tree(&upgraded, &s.proj);
        let child = env
            .cmd()
            .args(["restore", "latest", "--in-place", "--delete"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = child;
        std::thread::sleep(full * point / 12);
        let _ = child.kill();
        child.wait().unwrap();
        for i in 0..300 {
            let path = s.proj.join(format!("many/f{i:03}"));
            let now = fs::read(&path).unwrap();
            assert!(
                now == noise(30_000, i) || now == noise(20_000, 1000 + i),
                "kill point {point}: {} is torn",
                path.display()
            );
        }
        env.ok(&["restore", "latest", "--in-place", "--delete"]);
        assert_same_tree(&reference, &s.proj);
        assert!(
            temp_names(&s.proj).is_empty(),
            "kill point {point}: temporary names left"
        );
        env.ok(&["restore", "--undo"]);
        assert_same_tree(&upgraded, &s.proj);
    }
}

/// A small tmpfs, unmounted when dropped.
/// The disk fills while an in-place restore writes: the error says what
/// failed, and everything is as it was before.
#[test]
fn a_disk_full_during_an_in_place_restore_changes_nothing() {
    let env = Env::with_repo();
    let Some(disk) = crate::util::Tmpfs::mount(&env.path("small"), "1m") else {
        skip("cannot mount a tmpfs here (needs root)");
        return;
    };
    let proj = disk.0.join("proj");
    write(&proj.join("big"), &noise(600_000, 1));
    write(&proj.join("a"), b"a before");
    env.backup(&[&proj]);
    write(&proj.join("a"), b"a after");
    write(&proj.join("big"), b"small now");
    write(&proj.join("filler"), &noise(700_000, 2));
    let before = env.path("before");
    copy_tree(&proj, &before);
    let out = env.run(&["restore", "latest", "--in-place"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("put back from safety snapshot"), "{err}");
    assert_same_tree(&before, &proj);
    assert!(temp_names(&proj).is_empty(), "{:?}", temp_names(&proj));
}

/// A directory swapped for a symlink after the plan and before the write:
/// the write sees the symlink where the plan saw a directory, replaces it,
/// and writes nothing through it.
#[test]
fn a_directory_swapped_for_a_symlink_between_plan_and_write() {
    use cairn::progress::Progress;
    use cairn::restore::inplace::{self, InPlaceOptions};
    use cairn::restore::{self, ApplyOptions};
    use cairn::select::Selection;
    use cairn::sink::LocalSink;
    use std::sync::Arc;

    // Both ways of writing: over the whole tree again, or only the
    // plan's items.
    for keep in [false, true] {
        let s = story();
        let repo = crate::util::try_open(Arc::new(LocalSink::new(&s.env.repo))).unwrap();
        let index = repo.load_index().unwrap();
        let snapshot = repo.find_snapshot("latest").unwrap();
        let opts = InPlaceOptions::default();
        let targets = inplace::targets(&snapshot, &snapshot.record.roots, &opts).unwrap();
        let everything = Selection::default();
        let mut plan =
            restore::plan_items(&repo, &index, &snapshot, &targets, &everything, false, keep, None).unwrap();
        assert_eq!(plan.items.is_some(), keep);
        assert!(plan.conflict_count > 0, "the plan writes into internal/");

        // internal/ (which the plan will write into) becomes a link elsewhere.
        let elsewhere = s.env.path("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::rename(s.proj.join("internal"), s.env.path("internal-moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, s.proj.join("internal")).unwrap();

        let apply = ApplyOptions {
            delete: true,
            ..Default::default()
        };
        let summary = restore::apply(
            &repo,
            &index,
            &snapshot,
            &targets,
            &everything,
            plan.items.take(),
            apply,
            &Default::default(),
            &Progress::hidden(),
        )
        .unwrap();
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            0,
            "nothing written through the link"
        );
        assert_same_tree(&s.original, &s.proj);
    }
}

#[test]
fn part_of_a_snapshot_is_restored_in_place_by_root_or_pattern() {
    let env = Env::with_repo();
    let (a, b) = (env.path("a"), env.path("b"));
    write(&a.join("x.conf"), b"a1");
    write(&a.join("y.txt"), b"a1");
    write(&b.join("z"), b"b1");
    env.backup(&[&a, &b]);
    write(&a.join("x.conf"), b"a2");
    write(&a.join("y.txt"), b"a2");
    write(&b.join("z"), b"b2");
    env.ok(&[
        "restore",
        "latest",
        "--in-place",
        "--root",
        "a",
        "--include",
        "*.conf",
    ]);
    assert_eq!(fs::read(a.join("x.conf")).unwrap(), b"a1");
    assert_eq!(fs::read(a.join("y.txt")).unwrap(), b"a2", "not included");
    assert_eq!(fs::read(b.join("z")).unwrap(), b"b2", "another root");
    let out = env.run(&["restore", "latest", "--in-place", "--root", "nope"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("no root of snapshot"), "{}", stderr(&out));
    env.ok(&["restore", "latest", "--in-place", "--root", "tree/b"]);
    assert_eq!(fs::read(b.join("z")).unwrap(), b"b1");
}

/// A repository inside a restored root is neither part of the safety
/// snapshot nor removed by `--delete`.
#[test]
fn the_repository_inside_a_root_survives_an_in_place_delete() {
    let env = Env::new();
    let home = env.path("home");
    write(&home.join("notes.txt"), b"v1");
    let repo = home.join(".backup");
    let run = |args: &[&str]| {
        let out = crate::util::cairn_command()
            .env("CAIRN_STATE_DIR", env.path("state"))
            .env("XDG_DATA_HOME", env.path("xdg-data"))
            .args(["--repo", repo.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    };
    run(&["init", crate::util::init_flag()]);
    run(&["backup", home.to_str().unwrap()]);
    write(&home.join("notes.txt"), b"v2");
    write(&home.join("added.txt"), b"new");
    run(&["restore", "latest", "--in-place", "--delete"]);
    assert_eq!(fs::read(home.join("notes.txt")).unwrap(), b"v1");
    assert!(!home.join("added.txt").exists());
    assert!(repo.join("config.json").exists(), "the repository is still there");
    run(&["check", "--read-data"]);
}

/// A root that no longer exists at all is restored in place (there is
/// nothing to keep in a safety snapshot).
#[test]
fn a_root_that_was_removed_entirely_comes_back() {
    let env = Env::with_repo();
    let proj = env.path("proj");
    write(&proj.join("a/b.txt"), b"kept");
    env.backup(&[&proj]);
    fs::remove_dir_all(&proj).unwrap();
    env.ok(&["restore", "latest", "--in-place"]);
    assert_eq!(fs::read(proj.join("a/b.txt")).unwrap(), b"kept");
    // Nothing was there before, so there is nothing to undo.
    let out = env.run(&["restore", "--undo"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("no in-place restore to undo"),
        "{}",
        stderr(&out)
    );
}

/// Clears the immutable flag when dropped, so the test's directory can go.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Writing fails half-way (a file that cannot be replaced, after others
/// were): everything already written is put back from the safety snapshot,
/// and the error says what failed.
#[test]
fn a_write_that_fails_half_way_is_rolled_back() {
    let s = story();
    // secret.key comes last in manifest order: main.go and others are
    // written before it fails.
    let stuck = s.proj.join("secret.key");
    let ok = Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .status()
        .is_ok_and(|st| st.success());
    if !ok {
        skip("chattr +i is not supported here (needs root on ext4 or similar)");
        return;
    }
    let _guard = Immutable(stuck.clone());
    let out = s.env.run(&["restore", "latest", "--in-place", "--delete"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("secret.key"), "names what failed: {err}");
    assert!(err.contains("put back from safety snapshot"), "{err}");
    drop(_guard);
    assert_same_tree(&s.upgraded, &s.proj);
}

/// A small in-place restore reads the blobs it will write while it takes
/// its safety snapshot: what it holds is what the repository holds, within
/// its budget, and a blob that cannot be read is left for the writer to
/// read again and report.
#[test]
fn blobs_read_ahead_are_the_repository_s_and_an_unreadable_one_is_left_out() {
    use cairn::repo::reader::{preload, BlobReader};
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), &noise(1_200_000, 1));
    write(&src.join("b"), &noise(1_200_000, 2));
    env.backup(&[&src]);
    let repo = open_local(&env.repo);
    let index = repo.load_index().unwrap();
    let snapshot = repo.find_snapshot("latest").unwrap();
    let entries: Vec<_> = BlobReader::new(&repo, &index)
        .manifest("t", &snapshot.record.manifest)
        .collect::<Result<_, _>>()
        .unwrap();
    let blobs_of = |name: &str| {
        let entry = entries
            .iter()
            .find(|e| e.path.as_bytes().ends_with(name.as_bytes()));
        entry.unwrap().blobs.clone()
    };
    let (a, b) = (blobs_of("/a"), blobs_of("/b"));
    let frame = |id: &cairn::repo::id::ObjectId| index.get(id).map(|(p, l)| (p, l.frame_offset)).unwrap();
    let damaged = frame(&b[0]);
    assert!(a.iter().all(|id| frame(id) != damaged), "a and b share no frame");
    let pack = packs(&env.repo)
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&damaged.0.to_hex()))
        .unwrap();
    // Past the zstd frame header and the tar member header: in the data.
    flip_byte(&pack, damaged.1 as usize + 4096);

    let wanted: Vec<_> = a.iter().chain(&b).copied().collect();
    let lost = wanted.iter().filter(|id| frame(id) == damaged).count();
    let go = std::sync::atomic::AtomicBool::new(false);
    let preloaded = preload(&repo, &index, &wanted, u64::MAX, &go);
    assert_eq!(preloaded.len(), wanted.len() - lost);
    let mut from_memory = BlobReader::new(&repo, &index).with_preloaded(&preloaded);
    let mut from_disk = BlobReader::new(&repo, &index);
    for id in &a {
        assert_eq!(from_memory.read(id).unwrap(), from_disk.read(id).unwrap());
    }
    assert!(from_memory.read(&b[0]).is_err(), "not read ahead, and damaged");

    let first = from_disk.read(&a[0]).unwrap().len() as u64;
    assert!(
        preload(&repo, &index, &wanted, first - 1, &go).is_empty(),
        "within the budget"
    );
    go.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        preload(&repo, &index, &wanted, u64::MAX, &go).is_empty(),
        "stopped"
    );
}
