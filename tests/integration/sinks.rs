//! Several sinks per profile (3-2-1): every snapshot goes into each; one
//! failing sink does not stop the others, and the run says it was
//! incomplete. And NAS sinks: never created in an unmounted share.

use crate::s3server::{aws_env, S3Server};
use crate::util::{self, code, stderr, Env};

fn backup_with_profile(env: &Env, profile: &std::path::Path) -> std::process::Output {
    let mut cmd = env.cmd_without_repo();
    aws_env(&mut cmd, env.dir.path());
    cmd.args(["backup", "--profile", profile.to_str().unwrap(), "--json"])
        .output()
        .expect("run cairn")
}

fn snapshot_ids(env: &Env, repo: &str) -> Vec<String> {
    let mut cmd = env.cmd_without_repo();
    aws_env(&mut cmd, env.dir.path());
    let out = cmd
        .args(["--repo", repo, "snapshots", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{repo}: {}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_profile_writes_each_snapshot_to_every_sink_and_says_which_failed() {
    let server = S3Server::start();
    let env = Env::new();
    let remote = server.url("offsite/profile");
    let mut init = env.cmd_without_repo();
    aws_env(&mut init, env.dir.path());
    assert!(init
        .args(["--repo", &remote, "init", crate::util::init_flag()])
        .status()
        .unwrap()
        .success());
    util::write(&env.path("profiles/data/a.txt"), &util::noise(50_000, 1));
    util::write(&env.path("profiles/data/b.txt"), &util::noise(70_000, 2));
    let nas = env.path("unmounted-share");
    std::fs::create_dir(&nas).unwrap();
    let profile = env.path("profiles/three.toml");
    util::write(
        &profile,
        format!(
            "[[sink]]\nkind = \"local\"\npath = \"primary\"\n\
             [[sink]]\nkind = \"s3\"\nurl = \"{remote}\"\nconnections = 2\n\
             [[sink]]\nkind = \"local\"\npath = \"second\"\n\
             [[sink]]\nkind = \"nas\"\npath = \"{nas}\"\n\
             [[collector]]\nkind = \"tree\"\nname = \"data\"\npath = \"data\"\n",
            nas = nas.display()
        )
        .as_bytes(),
    );
    let out = backup_with_profile(&env, &profile);
    // The NAS share is not mounted: the run is incomplete (exit 3), the
    // others hold the snapshot, and nothing was written into the mount point.
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("is the share mounted"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&nas).unwrap().count(), 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let sinks = report["sinks"].as_array().expect("sinks in --json");
    assert_eq!(sinks.len(), 4, "{report}");
    let ok: Vec<bool> = sinks.iter().map(|s| s["ok"].as_bool().unwrap()).collect();
    assert_eq!(ok.iter().filter(|o| **o).count(), 3, "{report}");
    let failed = sinks.iter().find(|s| !s["ok"].as_bool().unwrap()).unwrap();
    assert!(
        failed["location"].as_str().unwrap().contains("unmounted-share"),
        "{report}"
    );

    let id = report["id"].as_str().unwrap().to_string();
    assert_eq!(sinks[0]["id"], id.as_str(), "{report}");
    let primary = env.path("profiles/primary");
    let second = env.path("profiles/second");
    for (repo, name) in [
        (primary.to_str().unwrap(), "primary"),
        (second.to_str().unwrap(), "second"),
        (remote.as_str(), "offsite/profile"),
    ] {
        // The same record in each plain repository; sealed anew, with an
        // id of its own, in an encrypted one.
        let result = sinks
            .iter()
            .find(|s| s["location"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} in {report}"));
        let there = result["id"].as_str().unwrap().to_string();
        assert_eq!(snapshot_ids(&env, repo), vec![there.clone()], "{repo}");
        if !crate::util::encrypted() {
            assert_eq!(there, id, "{repo}");
        }
    }
    // Each copy restores on its own.
    let mut cmd = env.cmd_without_repo();
    aws_env(&mut cmd, env.dir.path());
    let target = env.path("from-s3");
    let out = cmd
        .args([
            "--repo",
            &remote,
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    util::assert_same_tree(&env.path("profiles/data"), &target.join("tree/data"));
}
