//! `cairn schedule`: what it installs, installing into cron for real,
//! systemd units that systemd accepts, and the job's own run and log.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use crate::util::*;

/// An environment with a profile `job` backing up `src`, keeping `keep`.
fn setup(keep: u32) -> (Env, PathBuf) {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"a");
    let config = env.path("config");
    let text = format!(
        "[[collector]]\nkind = \"tree\"\nname = \"src\"\npath = \"{}\"\n[retention]\nkeep_last = {keep}\n",
        src.display()
    );
    write(&config.join("cairn/profiles/job.toml"), text.as_bytes());
    (env, config)
}

fn cairn(env: &Env, config: &PathBuf, args: &[&str]) -> Output {
    env.cmd()
        .env("XDG_CONFIG_HOME", config)
        .args(args)
        .output()
        .expect("run cairn")
}

#[test]
fn show_prints_what_install_writes_and_refuses_bad_input() {
    let (env, config) = setup(3);
    let out = cairn(
        &env,
        &config,
        &[
            "schedule",
            "show",
            "--profile",
            "job",
            "--backend",
            "systemd",
            "--every",
            "weekly",
            "--on",
            "fri",
            "--at",
            "04:30",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("# cairn-job.timer\n") && text.contains("OnCalendar=Fri *-*-* 04:30:00"),
        "{text}"
    );
    assert!(text.contains("Persistent=true"), "{text}");
    assert!(text.contains(&format!("ExecStart={} --repo", BIN)), "{text}");
    assert!(text.contains("schedule run --profile job"), "{text}");
    for bad in [
        &["--every", "fortnightly"][..],
        &["--every", "daily", "--at", "3pm"],
        &["--every", "daily", "--on", "sun"],
        &["--every", "0 3 * * *", "--backend", "systemd"],
        &["--backend", "at"],
    ] {
        let mut args = vec!["schedule", "show", "--profile", "job"];
        args.extend_from_slice(bad);
        let out = cairn(&env, &config, &args);
        assert_eq!(code(&out), 1, "{bad:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{bad:?}: {}", stderr(&out));
    }
    let out = cairn(
        &env,
        &config,
        &["schedule", "show", "--profile", "no-such-profile"],
    );
    assert_eq!(code(&out), 1);
}

#[test]
fn systemd_accepts_the_units() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        skip("systemd-analyze is not installed (package systemd)");
        return;
    };
    assert!(version.status.success());
    let (env, config) = setup(3);
    let out = cairn(
        &env,
        &config,
        &["schedule", "show", "--profile", "job", "--backend", "systemd"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dir = env.path("units");
    fs::create_dir_all(&dir).expect("mkdir");
    let text = stdout(&out);
    // `show` heads each file with `# <its name>`.
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("# cairn-job.") {
            Some(ext) => files.push((dir.join(format!("cairn-job.{ext}")), String::new())),
            None => {
                let (_, body) = files.last_mut().expect("a file heading first");
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    for (path, body) in &files {
        fs::write(path, body).expect("write unit");
    }
    let files: Vec<PathBuf> = files.into_iter().map(|(p, _)| p).collect();
    assert_eq!(files.len(), 2);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .expect("verify");
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Installs into the real crontab of the user running the tests (restored
/// afterwards), as cron would run it.
#[test]
fn install_and_remove_in_the_crontab() {
    if Command::new("crontab").arg("-l").output().is_err() {
        skip("crontab is not installed (package cron)");
        return;
    }
    let (env, config) = setup(3);
    let before = Command::new("crontab").arg("-l").output().expect("crontab -l");
    let saved = if before.status.success() {
        before.stdout
    } else {
        Vec::new()
    };
    let mine = b"# a line of the user's own\n17 4 * * * true\n";
    let mut existing = saved.clone();
    existing.extend_from_slice(mine);
    let mut set = Command::new("crontab")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("crontab -");
    std::io::Write::write_all(set.stdin.as_mut().expect("stdin"), &existing).expect("write");
    drop(set.stdin.take());
    assert!(set.wait().expect("wait").success());

    let install = [
        "schedule",
        "install",
        "--profile",
        "job",
        "--backend",
        "cron",
        "--every",
        "daily",
        "--at",
        "02:10",
    ];
    for _ in 0..2 {
        let out = cairn(&env, &config, &install);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let table = stdout(&Command::new("crontab").arg("-l").output().expect("crontab -l"));
    assert_eq!(
        table.matches("schedule run --profile job").count(),
        1,
        "installed once: {table}"
    );
    assert!(table.contains("\n10 2 * * * "), "{table}");
    assert!(
        table.contains("17 4 * * * true"),
        "the user's own lines stay: {table}"
    );
    let status = cairn(&env, &config, &["schedule", "status", "--profile", "job"]);
    assert!(
        stdout(&status).contains("daily at 02:10 (cron)"),
        "{}",
        stdout(&status)
    );

    let out = cairn(
        &env,
        &config,
        &["schedule", "remove", "--profile", "job", "--backend", "cron"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table = stdout(&Command::new("crontab").arg("-l").output().expect("crontab -l"));
    assert!(!table.contains("cairn"), "{table}");
    assert!(table.contains("17 4 * * * true"), "{table}");

    let mut restore = Command::new("crontab")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("crontab -");
    std::io::Write::write_all(restore.stdin.as_mut().expect("stdin"), &saved).expect("write");
    drop(restore.stdin.take());
    assert!(restore.wait().expect("wait").success());
}

#[test]
fn a_run_backs_up_applies_the_retention_and_logs_its_outcome() {
    let (env, config) = setup(1);
    for _ in 0..2 {
        let out = cairn(&env, &config, &["schedule", "run", "--profile", "job"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        write(&env.path("src/a"), b"changed");
    }
    let list = env.json(&["snapshots"]);
    assert_eq!(list.as_array().expect("array").len(), 1, "keep_last = 1: {list}");
    // A run that fails: the source is gone.
    fs::remove_dir_all(env.path("src")).expect("rm");
    let out = cairn(&env, &config, &["schedule", "run", "--profile", "job"]);
    assert_ne!(code(&out), 0);
    let status = cairn(
        &env,
        &config,
        &["schedule", "status", "--profile", "job", "--json"],
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let outcomes: Vec<&str> = status["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, vec!["success", "success", "failed"], "{status}");
    assert!(status["runs"][2]["error"].is_string(), "{status}");
}
