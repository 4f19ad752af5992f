//! `cairn forget`: a keep policy (restic's rules) per group, by id, and the
//! pairs that stay together.

use std::fs;
use std::path::Path;

use crate::util::*;

/// Snapshots of `src` at these times (RFC 3339), oldest first; their ids.
fn history(env: &Env, src: &Path, times: &[&str]) -> Vec<String> {
    times
        .iter()
        .enumerate()
        .map(|(i, time)| {
            write(&src.join("f"), format!("version {i}").as_bytes());
            let out = env.json(&["backup", src.to_str().expect("utf-8"), "--time", time]);
            out["id"].as_str().expect("id").to_string()
        })
        .collect()
}

fn ids(env: &Env) -> Vec<String> {
    let list = env.json(&["snapshots"]);
    list.as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

const TIMES: [&str; 6] = [
    "2026-11-01T10:00:00+00:00",
    "2026-11-01T12:00:00+00:00",
    "2026-11-02T09:00:00+00:00",
    "2026-11-09T09:00:00+00:00",
    "2026-11-09T18:00:00+00:00",
    "2026-11-10T08:00:00+00:00",
];

#[test]
fn forget_keeps_what_the_policy_keeps_and_removes_the_rest() {
    let env = Env::with_repo();
    let src = env.path("src");
    let made = history(&env, &src, &TIMES);

    // --dry-run: restic's JSON shape, nothing removed.
    let plan = env.json(&["forget", "--keep-daily", "2", "--keep-weekly", "2", "--dry-run"]);
    let groups = plan.as_array().expect("one entry per group");
    assert_eq!(groups.len(), 1, "{plan}");
    let g = &groups[0];
    assert!(
        g["group"]["hostname"].is_string() && g["group"]["paths"].is_null(),
        "{g}"
    );
    let kept: Vec<&str> = g["keep"]
        .as_array()
        .expect("keep")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    // Newest first: 10 Nov (daily, weekly), 9 Nov 18:00 (daily), 2 Nov
    // (weekly); the oldest is not kept: the counts ran out before it.
    assert_eq!(
        kept,
        vec![made[5].as_str(), made[4].as_str(), made[2].as_str()],
        "{g}"
    );
    assert_eq!(g["remove"].as_array().expect("remove").len(), 3);
    // 9 and 10 November are one ISO week: its weekly snapshot is the 10th.
    let reasons = &g["reasons"];
    assert_eq!(reasons[0]["snapshot"]["id"], made[5].as_str());
    assert_eq!(
        reasons[0]["matches"],
        serde_json::json!(["daily snapshot", "weekly snapshot"])
    );
    assert_eq!(reasons[1]["matches"], serde_json::json!(["daily snapshot"]));
    assert_eq!(reasons[2]["matches"], serde_json::json!(["weekly snapshot"]));
    assert_eq!(ids(&env).len(), 6, "a dry run removes nothing");
    // With --prune, the dry run says what prune would free once they go.
    let before = repo_files(&env.repo);
    let out = env.ok(&[
        "forget",
        "--keep-daily",
        "2",
        "--keep-weekly",
        "2",
        "--dry-run",
        "--prune",
    ]);
    assert!(out.contains("would remove snapshot"), "{out}");
    assert!(out.contains("prune would do: 3 packs deleted"), "{out}");
    assert_eq!(repo_files(&env.repo), before, "nothing changes");

    let out = env.ok(&["forget", "--keep-daily", "2", "--keep-weekly", "2"]);
    assert!(out.contains("3 snapshots removed"), "{out}");
    let mut left = ids(&env);
    left.sort();
    let mut want = vec![made[2].clone(), made[4].clone(), made[5].clone()];
    want.sort();
    assert_eq!(left, want);
    env.ok(&["check", "--read-data"]);
    let target = env.path("out");
    env.ok(&["restore", &made[2], "--target", target.to_str().expect("utf-8")]);
    assert_eq!(
        fs::read(target.join("tree/src/f")).expect("restored"),
        b"version 2"
    );
}

#[test]
fn forget_refuses_to_empty_a_group_and_says_so_without_rules() {
    let env = Env::with_repo();
    let src = env.path("src");
    history(&env, &src, &TIMES[..3]);
    let out = env.run(&["forget", "--keep-tag", "release"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("would remove all 3 snapshots") && err.contains("--allow-empty"),
        "{err}"
    );
    assert_eq!(ids(&env).len(), 3);

    let out = env.run(&["forget"]);
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).contains("nothing removed"), "{}", stderr(&out));
    assert_eq!(ids(&env).len(), 3);

    let out = env.run(&["forget", "--keep-within", "2x"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("--keep-within"), "{}", stderr(&out));

    env.ok(&["forget", "--keep-tag", "release", "--allow-empty"]);
    assert!(ids(&env).is_empty());
}

#[test]
fn forget_by_id_never_splits_a_run_pair() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("f"), b"before");
    let out = env.run(&["run", src.to_str().expect("utf-8"), "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let list = env.json(&["snapshots"]);
    let pair: Vec<&serde_json::Value> = list.as_array().expect("array").iter().collect();
    assert_eq!(pair.len(), 2);
    let pre = pair.iter().find(|s| s["run"]["role"] == "pre").expect("pre")["id"]
        .as_str()
        .expect("id");
    let post = pair.iter().find(|s| s["run"]["role"] == "post").expect("post")["id"]
        .as_str()
        .expect("id");

    let out = env.run(&["forget", pre]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("name them too"), "{}", stderr(&out));
    assert_eq!(ids(&env).len(), 2);

    // A policy that keeps the post keeps its pre as well.
    let plan = env.json(&["forget", "--keep-last", "1", "--dry-run"]);
    assert_eq!(plan[0]["keep"].as_array().expect("keep").len(), 2, "{plan}");

    env.ok(&["forget", pre, post]);
    assert!(ids(&env).is_empty());
}

#[test]
fn forget_takes_a_profiles_retention_and_the_exclusive_lock() {
    let env = Env::with_repo();
    let src = env.path("src");
    fs::create_dir_all(&src).expect("mkdir");
    let profile = format!(
        "name = \"keep2\"\n[[collector]]\nkind = \"tree\"\nname = \"src\"\npath = \"{}\"\n[retention]\nkeep_last = 2\n",
        src.display()
    );
    let config = env.path("config");
    write(&config.join("cairn/profiles/keep2.toml"), profile.as_bytes());
    let cairn = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.env("XDG_CONFIG_HOME", &config).args(args);
        cmd.output().expect("run cairn")
    };
    for i in 0..4 {
        write(&src.join("f"), format!("{i}").as_bytes());
        let out = cairn(&["backup", "--profile", "keep2"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    // Another process holds a lock: forget may not remove anything.
    fs::create_dir_all(env.repo.join("locks")).expect("mkdir");
    let lock = env.repo.join("locks").join(format!("{:032x}.json", 7));
    let record = serde_json::json!({
        "host": "elsewhere", "pid": 1, "user": "x",
        "time": chrono::Local::now().fixed_offset().to_rfc3339(), "kind": "shared",
    });
    let bytes = crate::util::stored(
        &env.repo,
        cairn::repo::crypto::Domain::Lock,
        record.to_string().into_bytes(),
    );
    fs::write(&lock, bytes).expect("lock");
    let out = cairn(&["forget", "--profile", "keep2"]);
    assert_eq!(code(&out), 11, "{}", stderr(&out));
    assert_eq!(ids(&env).len(), 4);
    fs::remove_file(lock).expect("unlock");

    let out = cairn(&["forget", "--profile", "keep2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("keep 2 latest snapshots"),
        "{}",
        stdout(&out)
    );
    assert_eq!(ids(&env).len(), 2);
}
