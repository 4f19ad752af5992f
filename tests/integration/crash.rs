//! Crash consistency: backup, prune, copy, in-place restore and repair are
//! SIGKILLed at random points, many times. After every kill, `check
//! --read-data` passes (packs no index lists are only warned about: the
//! next prune removes them), every snapshot complete before the kill
//! restores byte for byte, running the command again succeeds, and an
//! in-place restore left every file old or new, never torn.
//!
//! Every store operation is made to wait a few milliseconds
//! (`CAIRN_FAULTS=stall=1:Nms`), so that a kill at a random delay lands
//! inside the command on any machine. Short form in `cargo test` (a dozen
//! kills per command); `CAIRN_CRASH_TRIALS=200` for the long form. The seed
//! is printed; `CAIRN_CRASH_SEED=N` repeats a run.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::util::*;

fn trials() -> u64 {
    std::env::var("CAIRN_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

fn seed(command: &str) -> u64 {
    let seed = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            u64::from(std::process::id()) ^ blake3::hash(command.as_bytes()).as_bytes()[0] as u64
        });
    println!("{command}: seed {seed} (CAIRN_CRASH_SEED={seed} repeats it)");
    seed
}

/// Runs cairn with every store operation stalled, and SIGKILLs it after
/// `delay_ms`; returns whether the kill found it still running.
fn kill_at(env: &Env, repo: &Path, args: &[&str], stall_ms: u64, delay_ms: u64) -> bool {
    let mut child = env
        .cmd_without_repo()
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("CAIRN_FAULTS", format!("stall=1:{stall_ms}ms"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cairn");
    std::thread::sleep(Duration::from_millis(delay_ms));
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

fn run(env: &Env, repo: &Path, args: &[&str]) -> Output {
    env.cmd_without_repo()
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .expect("run cairn")
}

fn ok(env: &Env, repo: &Path, args: &[&str], what: &str) -> String {
    let out = run(env, repo, args);
    assert_eq!(code(&out), 0, "{what}: cairn {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// What each snapshot holds, by id.
type Saved = BTreeMap<String, BTreeMap<PathBuf, String>>;

/// Snapshots restored after each kill, at most (all of them at the end):
/// every snapshot is listed and checked each time, but restoring each of
/// hundreds after every one of hundreds of kills would take hours.
const RESTORED_PER_KILL: usize = 6;

/// The repository checks whole, every snapshot in `saved` is there, and
/// the newest few of them restore byte for byte.
fn prove(env: &Env, repo: &Path, saved: &Saved, root: &str, what: &str) {
    prove_some(env, repo, saved, root, what, RESTORED_PER_KILL)
}

/// [`prove`], restoring the newest `most` snapshots.
fn prove_some(env: &Env, repo: &Path, saved: &Saved, root: &str, what: &str, most: usize) {
    let out = run(env, repo, &["check", "--read-data"]);
    assert_eq!(code(&out), 0, "{what}: check: {}", stderr(&out));
    let listed = ok(env, repo, &["snapshots", "--json"], what);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("snapshots --json");
    // Each snapshot by the one it copies (`copied_from`, where a copy
    // into an encrypted repository, or out of one, wrote it anew), else
    // by its own id, oldest first.
    let ids: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap();
            (s["copied_from"].as_str().unwrap_or(id), id)
        })
        .collect();
    for id in saved.keys() {
        assert!(
            ids.iter().any(|(source, _)| source == id),
            "{what}: snapshot {id} is gone"
        );
    }
    // The newest by time (`snapshots` lists oldest first).
    let newest: Vec<(&str, &str)> = ids.iter().rev().take(most).copied().collect();
    for (source, files) in saved.iter() {
        let Some(&(_, id)) = newest.iter().find(|(s, _)| s == source) else {
            continue;
        };
        let target = env.path(&format!("proof-{}", &id[..12]));
        let _ = fs::remove_dir_all(&target);
        ok(
            env,
            repo,
            &["restore", id, "--target", target.to_str().unwrap()],
            what,
        );
        assert_eq!(
            &file_hashes(&target.join("tree").join(root)),
            files,
            "{what}: snapshot {id}"
        );
        fs::remove_dir_all(&target).unwrap();
    }
}

/// Changes a few files of `src` (and adds one), at random.
fn change(src: &Path, rng: &mut Rng, round: u64) {
    for _ in 0..4 {
        let i = rng.below(24);
        let size = 10_000 + rng.below(400_000) as usize;
        write(&src.join(format!("d{}/f{i}", i % 4)), &noise(size, rng.draw()));
    }
    write(&src.join(format!("new/r{round}")), &noise(300_000, rng.draw()));
}

fn backup_id(env: &Env, repo: &Path, src: &Path, what: &str) -> String {
    let out = ok(env, repo, &["backup", src.to_str().unwrap(), "--json"], what);
    let json: serde_json::Value = serde_json::from_str(&out).expect("backup --json");
    json["id"].as_str().unwrap().to_string()
}

/// Kill tally: how many kills landed inside the command.
fn report(command: &str, kills: u64, trials: u64) {
    println!("{command}: {kills} of {trials} kills landed mid-command; nothing lost");
    assert!(
        kills * 2 >= trials,
        "{command}: too few kills landed mid-command ({kills} of {trials})"
    );
}

#[test]
fn killed_backups_lose_nothing() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut rng = Rng(seed("backup"));
    change(&src, &mut rng, 0);
    let mut saved = Saved::new();
    saved.insert(backup_id(&env, &env.repo, &src, "first"), file_hashes(&src));
    let trials = trials();
    let mut kills = 0;
    for t in 1..=trials {
        change(&src, &mut rng, t);
        let delay = rng.below(250);
        let what = format!("backup trial {t}, killed at {delay} ms");
        // 20 ms a store operation: a backup of a few changed files makes
        // few, and with 10 ms, on a loaded machine (the whole suite on two
        // cores), only 4 of 12 kills once found it still running.
        kills += u64::from(kill_at(
            &env,
            &env.repo,
            &["backup", src.to_str().unwrap()],
            20,
            delay,
        ));
        prove(&env, &env.repo, &saved, "src", &what);
        saved.insert(backup_id(&env, &env.repo, &src, &what), file_hashes(&src));
    }
    prove_some(&env, &env.repo, &saved, "src", "backups, at the end", usize::MAX);
    report("backup", kills, trials);
}

#[test]
fn killed_prunes_lose_nothing() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut rng = Rng(seed("prune"));
    let mut saved = Saved::new();
    let mut order = Vec::new();
    let trials = trials();
    let mut kills = 0;
    for t in 1..=trials {
        // Garbage to prune: snapshots forgotten since the last prune.
        for r in 0..3 {
            change(&src, &mut rng, t * 10 + r);
            let id = backup_id(&env, &env.repo, &src, "setup");
            saved.insert(id.clone(), file_hashes(&src));
            order.push(id);
        }
        let keep: Vec<String> = order.iter().rev().take(2).cloned().collect();
        saved.retain(|id, _| keep.contains(id));
        ok(&env, &env.repo, &["forget", "--keep-last", "2"], "forget");
        let delay = rng.below(200);
        let what = format!("prune trial {t}, killed at {delay} ms");
        kills += u64::from(kill_at(
            &env,
            &env.repo,
            &["prune", "--max-unused", "0"],
            10,
            delay,
        ));
        prove(&env, &env.repo, &saved, "src", &what);
        ok(&env, &env.repo, &["prune", "--max-unused", "0"], &what);
        prove(&env, &env.repo, &saved, "src", &what);
    }
    report("prune", kills, trials);
}

#[test]
fn killed_copies_lose_nothing() {
    let env = Env::with_repo();
    let other = env.path("other");
    ok(&env, &other, &["init", crate::util::init_flag()], "init");
    let src = env.path("src");
    let mut rng = Rng(seed("copy"));
    let mut copied = Saved::new();
    let trials = trials();
    let mut kills = 0;
    for t in 1..=trials {
        change(&src, &mut rng, t);
        let id = backup_id(&env, &env.repo, &src, "setup");
        let files = file_hashes(&src);
        let delay = rng.below(200);
        let what = format!("copy trial {t}, killed at {delay} ms");
        let args = ["copy", "--all", "--to", other.to_str().unwrap()];
        kills += u64::from(kill_at(&env, &env.repo, &args, 10, delay));
        prove(&env, &other, &copied, "src", &what);
        ok(&env, &env.repo, &args, &what);
        copied.insert(id, files);
        prove(&env, &other, &copied, "src", &what);
    }
    report("copy", kills, trials);
}

#[test]
fn killed_in_place_restores_leave_every_file_old_or_new() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut rng = Rng(seed("restore"));
    for i in 0..16u64 {
        write(&src.join(format!("f{i}")), &noise(1 << 20, 500 + i));
    }
    let snapshot = backup_id(&env, &env.repo, &src, "setup");
    let restored = file_hashes(&src);
    let trials = trials();
    let mut kills = 0;
    for t in 1..=trials {
        let mut edited = BTreeMap::new();
        for i in 0..16u64 {
            let path = src.join(format!("f{i}"));
            write(&path, &noise(1 << 20, rng.draw()));
            edited.insert(
                PathBuf::from(format!("f{i}")),
                file_hashes(&src)[Path::new(&format!("f{i}"))].clone(),
            );
        }
        let delay = rng.below(300);
        let what = format!("in-place restore trial {t}, killed at {delay} ms");
        kills += u64::from(kill_at(
            &env,
            &env.repo,
            &["restore", &snapshot, "--in-place"],
            10,
            delay,
        ));
        for (path, hash) in file_hashes(&src) {
            if path.to_string_lossy().contains(".cairn-") {
                continue; // a temporary file of the killed run
            }
            assert!(
                hash == restored[&path] || hash == edited[&path],
                "{what}: {} is torn",
                path.display()
            );
        }
        // Running it again finishes it (no safety snapshot is lost either).
        ok(&env, &env.repo, &["restore", &snapshot, "--in-place"], &what);
        assert_eq!(
            file_hashes(&src),
            restored,
            "{what}: the rerun did not finish the restore"
        );
        assert!(temp_names(&src).is_empty(), "{what}: {:?}", temp_names(&src));
        let out = run(&env, &env.repo, &["check", "--read-data"]);
        assert_eq!(code(&out), 0, "{what}: check: {}", stderr(&out));
    }
    report("in-place restore", kills, trials);
}

#[test]
fn killed_index_repairs_lose_nothing() {
    let env = Env::with_repo();
    let src = env.path("src");
    let mut rng = Rng(seed("repair"));
    let mut saved = Saved::new();
    for r in 0..4 {
        change(&src, &mut rng, r);
        saved.insert(backup_id(&env, &env.repo, &src, "setup"), file_hashes(&src));
    }
    let trials = trials();
    let mut kills = 0;
    for t in 1..=trials {
        let delay = rng.below(150);
        let what = format!("repair index trial {t}, killed at {delay} ms");
        let args = ["repair", "index", "--read-all-packs"];
        kills += u64::from(kill_at(&env, &env.repo, &args, 10, delay));
        prove(&env, &env.repo, &saved, "src", &what);
        ok(&env, &env.repo, &args, &what);
        prove(&env, &env.repo, &saved, "src", &what);
    }
    report("repair index", kills, trials);
}

/// A pack of a snapshot's data (not of its manifest) is lost; `repair
/// snapshots` is killed at random while it rewrites the snapshot. Every
/// other snapshot stays whole, and the rerun gives a repaired snapshot
/// whose remaining files restore byte for byte.
#[test]
fn killed_snapshot_repairs_lose_nothing_more() {
    let env = Env::with_repo();
    let mut rng = Rng(seed("repair snapshots"));
    let kept_src = env.path("kept");
    write(&kept_src.join("k"), &noise(200_000, rng.draw()));
    let mut saved = Saved::new();
    saved.insert(
        backup_id(&env, &env.repo, &kept_src, "setup"),
        file_hashes(&kept_src),
    );
    let trials = trials().min(24);
    let mut kills = 0;
    for t in 1..=trials {
        let src = env.path(&format!("src{t}"));
        for i in 0..4 {
            write(&src.join(format!("f{i}")), &noise(4 << 20, rng.draw()));
        }
        let before = packs(&env.repo);
        let id = backup_id(&env, &env.repo, &src, "setup");
        let repo =
            crate::util::try_open(std::sync::Arc::new(cairn::sink::LocalSink::new(&env.repo))).unwrap();
        let index = repo.load_index().unwrap();
        let snapshot = repo.find_snapshot(&id).unwrap();
        let (manifest_pack, _) = index.get(&snapshot.record.manifest[0]).unwrap();
        let doomed = packs(&env.repo)
            .into_iter()
            .find(|p| !before.contains(p) && !p.to_string_lossy().contains(&manifest_pack.to_hex()))
            .expect("a pack of data only");
        fs::remove_file(&doomed).unwrap();
        ok(&env, &env.repo, &["repair", "index"], "repair index");
        let delay = rng.below(150);
        let what = format!("repair snapshots trial {t}, killed at {delay} ms");
        kills += u64::from(kill_at(&env, &env.repo, &["repair", "snapshots"], 10, delay));
        ok(&env, &env.repo, &["repair", "snapshots"], &what);
        prove_some(&env, &env.repo, &saved, "kept", &what, usize::MAX);
        // The repaired snapshot: what is left of it restores.
        let target = env.path(&format!("repaired{t}"));
        ok(
            &env,
            &env.repo,
            &["restore", "latest", "--target", target.to_str().unwrap()],
            &what,
        );
        let restored = file_hashes(&target.join(format!("tree/src{t}")));
        let source = file_hashes(&src);
        // The lost pack held only some of the data (its files went into
        // other packs too, in whatever order the workers packed them).
        assert!(!restored.is_empty(), "{what}: nothing of the snapshot was kept");
        for (path, hash) in &restored {
            assert_eq!(&source[path], hash, "{what}: {}", path.display());
        }
        fs::remove_dir_all(&target).unwrap();
    }
    report("repair snapshots", kills, trials);
}
