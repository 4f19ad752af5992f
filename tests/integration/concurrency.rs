//! Several hosts back up into one repository at once (each cairn in a UTS
//! namespace of its own, so its records and locks carry its own host
//! name), a prune arrives in the middle, and a dead host left a lock:
//! afterwards every snapshot that reported success restores byte for byte,
//! and the repository checks whole. On a local directory and on S3.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::s3server::{aws_env, S3Server};
use crate::util::*;

const HOSTS: usize = 4;
const ROUNDS: usize = 3;

/// cairn as host `host` (a UTS namespace), against `repo`.
fn as_host(env: &Env, repo: &str, s3: bool, host: &str, args: &[&str]) -> Command {
    let base = env.cmd_without_repo();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-u",
        "sh",
        "-c",
        r#"hostname "$0" && exec "$@""#,
        host,
        BIN,
        "--repo",
        repo,
    ]);
    cmd.args(["--retry-lock", "120s"]).args(args);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    if s3 {
        aws_env(&mut cmd, env.dir.path());
    }
    cmd
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// A lock a host that died left behind: an hour old, so stale.
fn dead_host_lock(repo: &str) {
    let time = (chrono::Local::now() - chrono::Duration::hours(1))
        .fixed_offset()
        .to_rfc3339();
    let record =
        serde_json::json!({"host": "dead-host", "pid": 4242, "user": "x", "time": time, "kind": "exclusive"});
    // Through the library, as any writer would put it there (sealed in an
    // encrypted repository).
    let location = cairn::sink::Location::parse(std::ffi::OsStr::new(repo)).unwrap();
    let sink = cairn::sink::open::open(&location, &Default::default(), false).unwrap();
    let bytes = crate::util::open(sink.clone())
        .seal(
            "a lock",
            cairn::repo::crypto::Domain::Lock,
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
    sink.write(cairn::sink::ObjectKind::Lock, &"d".repeat(32), bytes.into())
        .unwrap();
}

fn hosts_back_up_at_once(env: &Env, repo: &str, s3: bool) {
    if !is_root() {
        skip("needs root for UTS namespaces (unshare -u)");
        return;
    }
    let run = |args: &[&str]| {
        let out = as_host(env, repo, s3, "tester", args).output().unwrap();
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    run(&["init", crate::util::init_flag()]);
    dead_host_lock(repo);
    let shared = noise(400_000, 7);
    let mut saved: BTreeMap<String, (String, BTreeMap<PathBuf, String>)> = BTreeMap::new();
    for round in 0..ROUNDS {
        let mut children = Vec::new();
        for h in 0..HOSTS {
            let src = env.path(&format!("host{h}"));
            write(
                &src.join(format!("own{round}")),
                &noise(300_000, (round * 10 + h) as u64),
            );
            // The same bytes on every host: stored by whichever is first.
            write(&src.join(format!("shared{round}")), &shared[round * 1000..]);
            let cmd = as_host(
                env,
                repo,
                s3,
                &format!("host{h}"),
                &["backup", src.to_str().unwrap(), "--json"],
            );
            children.push((h, file_hashes(&src), spawn(cmd)));
        }
        // A prune arrives in the middle of the second round.
        let prune =
            (round == 1).then(|| spawn(as_host(env, repo, s3, "pruner", &["prune", "--max-unused", "0"])));
        for (h, files, child) in children {
            let out = wait_or_kill(child, 300, "a host's backup");
            assert_eq!(code(&out), 0, "host{h}: {}", stderr(&out));
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(json["host"], format!("host{h}"));
            saved.insert(
                json["id"].as_str().unwrap().to_string(),
                (format!("host{h}"), files),
            );
        }
        if let Some(prune) = prune {
            let out = wait_or_kill(prune, 300, "the prune");
            assert_eq!(code(&out), 0, "prune: {}", stderr(&out));
        }
    }
    run(&["check", "--read-data"]);
    for (id, (host, files)) in &saved {
        let target = env.path(&format!("out-{}", &id[..8]));
        run(&["restore", id, "--target", target.to_str().unwrap()]);
        assert_eq!(
            &file_hashes(&target.join("tree").join(host)),
            files,
            "{host}: snapshot {id}"
        );
    }
    println!(
        "{} snapshots from {HOSTS} hosts at once, a prune among them: all restore",
        saved.len()
    );
}

#[test]
fn hosts_backing_up_at_once_into_a_directory_lose_nothing() {
    let env = Env::new();
    let repo = env.repo.display().to_string();
    hosts_back_up_at_once(&env, &repo, false);
}

#[test]
fn hosts_backing_up_at_once_into_s3_lose_nothing() {
    let server = S3Server::start();
    let env = Env::new();
    let repo = server.url("concurrent/repo");
    hosts_back_up_at_once(&env, &repo, true);
}
