//! `cairn copy` between repositories of any kind: local to S3 and back.

use std::path::PathBuf;

use crate::s3server::{aws_env, S3Server};
use crate::util::{self, code, stderr, Env};

/// Runs cairn; `--repo` (or `--from`) comes from `args`, or is the env's.
fn cairn(env: &Env, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd_without_repo();
    if !args.contains(&"--repo") && !args.contains(&"--from") {
        cmd.arg("--repo").arg(&env.repo);
    }
    aws_env(&mut cmd, env.dir.path());
    cmd.args(args).output().expect("run cairn")
}

fn ok_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let out = cairn(env, args);
    assert!(out.status.success(), "cairn {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// The snapshots each of `repo`'s copies: `copied_from` where records were
/// written anew (an encrypted repository on either side), else its own id.
fn sources(env: &Env, repo: &str) -> Vec<String> {
    let list = ok_json(env, &["--repo", repo, "snapshots", "--json"]);
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["copied_from"]
                .as_str()
                .or(s["id"].as_str())
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

fn ids(env: &Env, repo: &str) -> Vec<String> {
    let list = ok_json(env, &["--repo", repo, "snapshots", "--json"]);
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn copy_to_s3_and_back_keeps_ids_and_moves_only_missing_blobs() {
    let server = S3Server::start();
    let env = Env::with_repo();
    let local = env.repo.to_str().unwrap().to_string();
    let remote = server.url("offsite/laptop");
    let back = env.path("back-repo").to_str().unwrap().to_string();
    let src = env.path("src");
    for i in 0..30u64 {
        util::write(&src.join(format!("f{i}")), &util::noise(40_000, i));
    }
    env.backup(&[&src]);
    util::write(&src.join("new"), &util::noise(100_000, 77));
    env.backup(&[&src]);

    assert!(
        code(&cairn(
            &env,
            &["--repo", &remote, "init", crate::util::init_flag()]
        )) == 0
    );
    assert!(code(&cairn(&env, &["--repo", &back, "init", crate::util::init_flag()])) == 0);
    // The first snapshot, then everything: the second copy moves only the
    // blobs the first did not.
    let first = ids(&env, &local);
    let one = ok_json(&env, &["copy", &first[0][..8], "--to", &remote, "--json"]);
    let all = ok_json(&env, &["copy", "--all", "--to", &remote, "--json"]);
    assert_eq!(one["copied"].as_array().unwrap().len(), 1);
    assert_eq!(all["copied"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all["present"].as_array().unwrap().len(), 1, "{all}");
    assert!(
        all["blobs"].as_u64().unwrap() < one["blobs"].as_u64().unwrap(),
        "{one} {all}"
    );
    // Again: nothing to do.
    let again = ok_json(&env, &["copy", "--all", "--to", &remote, "--json"]);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0);
    assert_eq!(again["blobs"].as_u64(), Some(0));
    assert_eq!(sources(&env, &remote), ids(&env, &local));

    // S3 to another local repository, which restores byte for byte.
    ok_json(
        &env,
        &["copy", "--all", "--from", &remote, "--to", &back, "--json"],
    );
    assert_eq!(sources(&env, &back), ids(&env, &remote));
    let out = cairn(&env, &["--repo", &back, "check", "--read-data"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let target = env.path("restored");
    let out = cairn(
        &env,
        &[
            "--repo",
            &back,
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    util::assert_same_tree(&src, &target.join("tree/src"));
}

#[test]
fn a_damaged_source_stops_the_copy_before_any_snapshot_is_written() {
    let env = Env::with_repo();
    let src = env.path("src");
    util::write(&src.join("a"), &util::noise(200_000, 1));
    env.backup(&[&src]);
    let dest: PathBuf = env.path("dest");
    let dest = dest.to_str().unwrap().to_string();
    assert_eq!(
        code(&cairn(&env, &["--repo", &dest, "init", crate::util::init_flag()])),
        0
    );
    for pack in util::packs(&env.repo) {
        let mut bytes = std::fs::read(&pack).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&pack, bytes).unwrap();
    }
    let out = cairn(&env, &["copy", "--all", "--to", &dest]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("pack"), "{}", stderr(&out));
    assert!(
        ids(&env, &dest).is_empty(),
        "a snapshot was copied from a damaged source"
    );
    // Refusals: no snapshots named, no destination repository.
    let out = cairn(&env, &["copy", "--to", &dest]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = cairn(
        &env,
        &["copy", "--all", "--to", env.path("nowhere").to_str().unwrap()],
    );
    assert_eq!(code(&out), 10, "{}", stderr(&out));
}
