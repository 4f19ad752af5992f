//! `cairn diff`: two snapshots, or a snapshot and the machine now.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use crate::util::*;

/// A profile found by name (in the test's own config dir) with a tree, an
/// env collector and a command whose output names a version.
fn with_profile(env: &Env) -> std::path::PathBuf {
    let proj = env.path("proj");
    write(&proj.join("a"), b"one\n");
    write(&proj.join("sub/b"), b"two\n");
    write(&env.path("version"), b"go version go1.22.5 linux/amd64\n");
    let text = format!(
        r#"
[[collector]]
kind = "tree"
name = "proj"
path = "{}"

[[collector]]
kind = "env"
name = "go"
include = ["DIFFTEST_*"]

[[collector]]
kind = "command"
name = "version"
argv = ["cat", "{}"]
facts = [{{ name = "go.version", regex = 'go version (\S+)' }}]
"#,
        proj.display(),
        env.path("version").display()
    );
    write(&env.path("config/cairn/profiles/difftest.toml"), text.as_bytes());
    proj
}

fn run(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = env.cmd();
    cmd.env("XDG_CONFIG_HOME", env.path("config"));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(args).output().unwrap()
}

fn ok(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> String {
    let out = run(env, vars, args);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The upgrade between the two snapshots.
fn change(proj: &std::path::Path, env: &Env) {
    write(&proj.join("a"), b"changed\n");
    write(&proj.join("c"), b"new\n");
    fs::remove_file(proj.join("sub/b")).unwrap();
    fs::set_permissions(proj.join("sub"), fs::Permissions::from_mode(0o700)).unwrap();
    write(&env.path("version"), b"go version go1.23.0 linux/amd64\n");
}

const BEFORE: [(&str, &str); 2] = [
    ("DIFFTEST_GOFLAGS", "-mod=mod"),
    ("DIFFTEST_API_TOKEN", "first-secret"),
];
const AFTER: [(&str, &str); 2] = [
    ("DIFFTEST_GOFLAGS", "-mod=vendor"),
    ("DIFFTEST_API_TOKEN", "second-secret"),
];

#[test]
fn diff_of_two_snapshots_shows_paths_facts_env_and_command_output() {
    let env = Env::with_repo();
    let proj = with_profile(&env);
    ok(&env, &BEFORE, &["backup", "--profile", "difftest"]);
    change(&proj, &env);
    ok(&env, &AFTER, &["backup", "--profile", "difftest"]);
    let ids: Vec<String> = env
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let text = ok(&env, &[], &["diff", &ids[0], &ids[1]]);
    for line in [
        "M tree/proj/a\n",
        "+ tree/proj/c\n",
        "m tree/proj/sub\n",
        "- tree/proj/sub/b\n",
        "  go.version: go1.22.5 -> go1.23.0\n",
        "  DIFFTEST_GOFLAGS: -mod=mod -> -mod=vendor\n",
        "  DIFFTEST_API_TOKEN: changed (redacted)\n",
        "-go version go1.22.5 linux/amd64\n+go version go1.23.0 linux/amd64\n",
        "tree/proj: 1 added, 1 removed, 1 modified, 1 metadata only\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains("secret"), "no secret value: {text}");

    let json = env.json(&["diff", &ids[0], &ids[1]]);
    assert_eq!(json["changes"].as_array().unwrap().len(), 4, "{json}");
    assert_eq!(json["stats"]["tree/proj"]["added"], 1);
    assert_eq!(json["facts"][0]["after"], "go1.23.0");
    let stat = ok(&env, &[], &["diff", &ids[0], &ids[1], "--stat"]);
    assert!(!stat.contains("+ tree/proj/c"), "{stat}");
    assert!(stat.contains("tree/proj: 1 added"), "{stat}");
    let only = ok(&env, &[], &["diff", &ids[0], &ids[1], "--include", "sub"]);
    assert!(
        only.contains("- tree/proj/sub/b") && !only.contains("tree/proj/a"),
        "{only}"
    );
}

#[test]
fn diff_with_the_machine_now_and_the_drift_before_a_rollback() {
    let env = Env::with_repo();
    let proj = with_profile(&env);
    ok(&env, &BEFORE, &["backup", "--profile", "difftest"]);
    let same = ok(&env, &BEFORE, &["diff", "latest"]);
    assert!(same.contains("no differences"), "{same}");
    change(&proj, &env);
    let text = ok(&env, &AFTER, &["diff", "latest"]);
    for line in [
        "M tree/proj/a\n",
        "+ tree/proj/c\n",
        "- tree/proj/sub/b\n",
        "go.version: go1.22.5 -> go1.23.0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // The drift check before an in-place restore says the same of facts.
    let out = run(&env, &AFTER, &["restore", "latest", "--in-place", "--dry-run"]);
    let err = stderr(&out);
    assert!(
        err.contains("drift: go.version: go1.23.0 now, go1.22.5 in the snapshot"),
        "{err}"
    );
    assert!(err.contains("drift: env.DIFFTEST_API_TOKEN changed"), "{err}");
    assert!(!err.contains("second-secret") && !stdout(&out).contains("second-secret"));
    let json: serde_json::Value = serde_json::from_slice(
        &run(
            &env,
            &AFTER,
            &["restore", "latest", "--in-place", "--dry-run", "--json"],
        )
        .stdout,
    )
    .unwrap();
    assert!(
        json["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "go.version"),
        "{json}"
    );
}

#[test]
fn env_script_sets_the_captured_variables_again() {
    let env = Env::with_repo();
    with_profile(&env);
    ok(
        &env,
        &[("DIFFTEST_QUOTE", "it's here"), ("DIFFTEST_API_TOKEN", "hush")],
        &["backup", "--profile", "difftest"],
    );
    let sh = ok(&env, &[], &["restore", "latest", "--env-script", "sh"]);
    assert!(sh.contains("# DIFFTEST_API_TOKEN is a secret"), "{sh}");
    assert!(!sh.contains("hush"));
    // The script really sets the value in a shell.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{sh}\nprintf %s \"$DIFFTEST_QUOTE\""))
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "it's here");
    let ps = ok(&env, &[], &["restore", "latest", "--env-script", "powershell"]);
    assert!(ps.contains("$env:DIFFTEST_QUOTE = 'it''s here'"), "{ps}");
}

/// `cairn diff A` against the tree now passed over a directory it could not
/// read without a word, and listed the files in it as removed.
#[test]
fn a_directory_diff_could_not_read_was_passed_over_without_a_word() {
    if !can_run_as_nobody() {
        return;
    }
    let env = Env::with_repo();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.path("src");
    write(&src.join("open.txt"), b"anyone");
    write(&src.join("closed/inside"), b"root only");
    env.backup(&[&src]);
    fs::set_permissions(src.join("closed"), fs::Permissions::from_mode(0o700)).unwrap();
    let owned = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&env.repo)
        .status()
        .expect("chown");
    assert!(owned.success());
    let out = env.run_as_nobody(&["diff", "latest"]);
    let err = stderr(&out);
    assert!(
        err.contains("closed: not compared") && err.contains("ermission denied"),
        "{err}"
    );
    assert!(!err.contains("open.txt"), "{err}");
    // Not read is not removed.
    let listed = stdout(&out);
    assert!(!listed.contains("closed/inside"), "{listed}");
}
