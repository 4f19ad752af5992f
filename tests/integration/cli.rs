//! The command line: exit codes, references, JSON, messages.

use std::fs;

use crate::util::*;

#[test]
fn missing_repository_exits_10_and_names_init() {
    let env = Env::new();
    let out = env.run(&["snapshots"]);
    assert_eq!(code(&out), 10, "{}", stderr(&out));
    assert!(stderr(&out).contains("cairn init"), "{}", stderr(&out));
    let out = env.run(&["backup", env.dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 10, "an explicit --repo is never created implicitly");
    assert!(!env.repo.exists());
}

#[test]
fn init_refuses_an_existing_repository_or_a_busy_directory() {
    let env = Env::with_repo();
    let config = fs::read(env.repo.join("config.json")).unwrap();
    let out = env.run(&["init", crate::util::init_flag()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(fs::read(env.repo.join("config.json")).unwrap(), config);

    let busy = Env::new();
    write(&busy.repo.join("notes.txt"), b"mine");
    let out = busy.run(&["init", crate::util::init_flag()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert!(!busy.repo.join("config.json").exists());
}

#[test]
fn a_directory_that_is_not_a_repository_is_refused() {
    let env = Env::new();
    write(&env.repo.join("photo.jpg"), b"jpeg");
    let out = env.run(&["backup", env.path("repo/photo.jpg").to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("not a cairn repository"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_dir(&env.repo).unwrap().count(), 1, "nothing written");
}

#[test]
fn a_newer_format_is_refused_and_nothing_is_written() {
    let env = Env::with_repo();
    let path = env.repo.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    config["version"] = 3.into();
    fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    write(&env.path("src/a"), b"a");
    let before = du(&env.repo);
    let out = env.run(&["backup", env.path("src").to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("format version 3"), "{}", stderr(&out));
    assert_eq!(du(&env.repo), before);
    assert!(!env.repo.join("locks").exists() || fs::read_dir(env.repo.join("locks")).unwrap().count() == 0);
}

#[test]
fn first_backup_creates_the_default_repository() {
    let env = Env::new();
    write(&env.path("src/a"), b"a");
    let out = std::process::Command::new(BIN)
        .env_remove("CAIRN_REPO")
        .env("XDG_DATA_HOME", env.path("xdg"))
        .args(["backup", env.path("src").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(env.path("xdg/cairn/repo/config.json").exists());
    assert!(stderr(&out).contains("created the default repository"));
}

#[test]
fn snapshot_references_by_time_id_and_latest() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    let src = env.path("src");
    let src = src.to_str().unwrap();
    for time in [
        "2026-11-24T10:30:05+00:00",
        "2026-11-24T10:31:00+00:00",
        "2026-11-25T08:00:00+01:00",
    ] {
        env.ok(&["backup", src, "--time", time]);
    }
    let list = env.json(&["snapshots"]);
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let ls_of = |r: &str| env.run(&["ls", r]);
    // TZ=UTC in tests: local time is UTC.
    assert_eq!(code(&ls_of("2026-11-24T10:30")), 0);
    assert_eq!(code(&ls_of("2026-11-25")), 0);
    assert_eq!(code(&ls_of("2026-11-25T08:00+01:00")), 0);
    assert_eq!(code(&ls_of("2026-11-25T07:00Z")), 0);
    assert_eq!(code(&ls_of("2026-11-25T07:00")), 0, "local time is UTC here");
    assert_eq!(code(&ls_of(&ids[1][..8])), 0);
    assert_eq!(code(&ls_of("latest")), 0);

    let out = ls_of("2026-11-24");
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("matches 2 snapshots"), "{err}");
    assert!(err.contains(&ids[0][..8]) && err.contains(&ids[1][..8]), "{err}");

    let out = ls_of("2025-01-01");
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("no snapshot matches"), "{}", stderr(&out));
}

#[test]
fn json_outputs_are_documents() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    let backup = env.backup(&[&env.path("src")]);
    assert_eq!(backup["id"].as_str().unwrap().len(), 64);
    assert_eq!(backup["stats"]["files"], 1);
    let list = env.json(&["snapshots"]);
    assert_eq!(list[0]["id"], backup["id"]);
    let ls = env.json(&["ls", "latest"]);
    let paths: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["tree/src", "tree/src/a"]);
    let check = env.json(&["check", "--read-data"]);
    assert_eq!(check["errors"].as_array().unwrap().len(), 0);
    assert_eq!(check["snapshots"], 1);
}

#[test]
fn no_progress_output_when_stderr_is_not_a_terminal() {
    let env = Env::with_repo();
    write(&env.path("src/a"), &noise(1 << 20, 1));
    let out = env.run(&["backup", env.path("src").to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    assert_eq!(stderr(&out), "", "stderr must stay clean");
    let summary = stdout(&out);
    assert!(
        summary.starts_with("snapshot ") && summary.contains("1 new"),
        "{summary}"
    );
}

#[test]
fn missing_source_path_gives_a_partial_snapshot_and_exit_3() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    let missing = env.path("nope");
    let out = env.run(&[
        "backup",
        env.path("src").to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nope: source path does not exist"),
        "{}",
        stderr(&out)
    );
    let list = env.json(&["snapshots"]);
    assert_eq!(list[0]["partial"], true);
    assert!(env.ok(&["ls", "latest"]).contains("tree/src/a"));
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let out = env.run(&["backup"]);
    assert_eq!(code(&out), 2);
    let out = env.run(&["frobnicate"]);
    assert_eq!(code(&out), 2);
}

#[test]
fn a_bad_time_or_pattern_is_named() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    let src = env.path("src");
    let out = env.run(&["backup", src.to_str().unwrap(), "--time", "yesterday"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("\"yesterday\""), "{}", stderr(&out));
    let out = env.run(&["backup", src.to_str().unwrap(), "--exclude", "a["]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("a["), "{}", stderr(&out));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
}

/// `backup --exclude 'a['` printed "error parsing glob 'a[': unclosed
/// character class; missing ']'" twice: the pattern error put its cause in
/// its own message and marked it as its source, which `{:#}` prints again.
#[test]
fn a_bad_exclude_pattern_printed_its_cause_twice() {
    // And `--include '['` was called a bad exclude pattern.
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    env.backup(&[&env.path("src")]);
    let out = env.run(&[
        "restore",
        "latest",
        "--target",
        env.path("out").to_str().unwrap(),
        "--include",
        "[",
    ]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("bad include pattern \"[\""),
        "{}",
        stderr(&out)
    );

    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    let out = env.run(&["backup", env.path("src").to_str().unwrap(), "--exclude", "a["]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("bad exclude pattern \"a[\": unclosed character class"),
        "{err}"
    );
    assert_eq!(err.matches("a[").count(), 1, "the pattern is named once: {err}");
    assert_eq!(err.matches("unclosed character class").count(), 1, "{err}");
    // A message kept as text (a profile's error) still names the cause, once.
    let profile = env.path("bad-glob.toml");
    write(
        &profile,
        b"[[collector]]\nkind = \"tree\"\nname = \"t\"\npath = \"/tmp\"\nexclude = [\"a[\"]\n",
    );
    let out = env.run(&["profiles", "validate", profile.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert_eq!(err.matches("unclosed character class").count(), 1, "{err}");
}

fn write_lock(env: &Env, name: &str, pid: u32, kind: &str) {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let lock = serde_json::json!({
        "host": host, "pid": pid, "user": "test", "time": chrono::Local::now().fixed_offset().to_rfc3339(), "kind": kind
    });
    let bytes = crate::util::stored(
        &env.repo,
        cairn::repo::crypto::Domain::Lock,
        lock.to_string().into_bytes(),
    );
    write(&env.repo.join(format!("locks/{name}.json")), &bytes);
}

#[test]
fn an_exclusive_lock_held_by_a_live_process_exits_11() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    write_lock(&env, "00aa", std::process::id(), "exclusive");
    let out = env.run(&["backup", env.path("src").to_str().unwrap()]);
    assert_eq!(code(&out), 11, "{}", stderr(&out));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("pid {}", std::process::id())));
    // Our own lock was taken back.
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 1);
}

#[test]
fn a_stale_lock_never_blocks_and_unlock_removes_it() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    write_lock(&env, "00bb", dead, "exclusive");
    env.ok(&["backup", env.path("src").to_str().unwrap()]);
    assert!(env.ok(&["unlock"]).contains("removed 1 lock"));
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
}

#[test]
fn only_missing_sources_make_no_snapshot() {
    let env = Env::with_repo();
    let out = env.run(&["backup", env.path("nope").to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("nope cannot be found"), "{}", stderr(&out));
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 0);
}

/// Runs `cairn ARGS | head -1` through a real pipe that closes early.
fn piped_to_head(env: &Env, args: &[&str]) -> (std::process::ExitStatus, String, Vec<u8>) {
    use std::process::Stdio;
    let mut cairn = env
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let head = std::process::Command::new("head")
        .arg("-1")
        .stdin(cairn.stdout.take().unwrap())
        .output()
        .unwrap();
    let out = cairn.wait_with_output().unwrap();
    (out.status, stderr(&out), head.stdout)
}

/// `cairn snapshots | head -1` panicked with exit 101 and `ls | head`
/// printed an error and exited 1: a closed pipe must end cairn quietly.
#[test]
fn a_closed_pipe_panicked_snapshots_and_made_ls_fail() {
    let env = Env::with_repo();
    // Long lines, so that both listings outgrow the pipe's buffer.
    let roots: Vec<String> = (0..40)
        .map(|i| {
            let dir = env.path(&format!(
                "src/{i:02}-{}",
                "a-rather-long-directory-name-".repeat(3)
            ));
            for j in 0..100 {
                write(&dir.join(format!("f{j}")), b"x");
            }
            dir.display().to_string()
        })
        .collect();
    let mut args = vec!["backup"];
    args.extend(roots.iter().map(String::as_str));
    for _ in 0..30 {
        env.ok(&args);
    }
    for listing in [&["snapshots"][..], &["ls", "latest"]] {
        assert!(env.ok(listing).len() > 128 << 10, "{listing:?} fills a pipe");
    }
    for args in [&["snapshots"][..], &["ls", "latest"], &["ls", "latest", "--json"]] {
        let (status, err, first) = piped_to_head(&env, args);
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed: {err}");
        assert!(!first.is_empty(), "{args:?} wrote its first line");
    }
}

/// `-vv` wrote ANSI colour codes into pipes and files.
#[test]
fn verbose_logs_wrote_colour_codes_into_a_pipe() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    let out = env.run(&["-vv", "backup", env.path("src").to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("DEBUG"), "debug logs are there: {err}");
    assert!(!err.contains('\u{1b}'), "no escape codes: {err:?}");
}

/// `check` called the packs of a backup still writing "left by an
/// interrupted backup": while another live process holds a lock, they are
/// work in progress.
#[test]
fn check_called_a_running_backup_interrupted() {
    let env = Env::with_repo();
    write(&env.path("src/a"), b"a");
    env.ok(&["backup", env.path("src").to_str().unwrap()]);
    // A pack with no index, as a running backup has before its index.
    let stray = env.repo.join("index");
    let index = fs::read_dir(&stray).unwrap().next().unwrap().unwrap().path();
    fs::remove_file(&index).unwrap();
    write_lock(&env, "00cc", std::process::id(), "shared");
    let out = env.run(&["check"]);
    let err = stderr(&out);
    assert!(!err.contains("interrupted"), "{err}");
    assert!(err.contains("work in progress"), "{err}");
    // Without the live lock, the same pack is called what it is.
    fs::remove_file(env.repo.join("locks/00cc.json")).unwrap();
    let err = stderr(&env.run(&["check"]));
    assert!(err.contains("left by an interrupted backup"), "{err}");
}

/// `latest` could not be narrowed: with `--tag`, `--host` or `--profile`
/// it is the newest matching snapshot, in every command that takes one.
#[test]
fn latest_could_not_be_narrowed_by_tag_host_or_profile() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"before");
    let src_s = src.to_str().unwrap();
    env.ok(&[
        "backup",
        "--tag",
        "pre-upgrade",
        "--time",
        "2026-11-20T10:00:00Z",
        src_s,
    ]);
    write(&src.join("a"), b"after");
    env.ok(&["backup", "--time", "2026-11-21T10:00:00Z", src_s]);
    let pre = env.json(&["snapshots", "--tag", "pre-upgrade"]);
    assert_eq!(pre.as_array().unwrap().len(), 1);
    let pre_id = pre[0]["id"].as_str().unwrap().to_string();

    let target = env.path("out");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--tag", "pre-upgrade", "--target", t]);
    assert_eq!(fs::read(target.join("tree/src/a")).unwrap(), b"before");
    let ls = env.ok(&["ls", "latest", "--tag", "pre-upgrade"]);
    assert!(ls.contains("tree/src/a"), "{ls}");
    let facts = env.ok(&["facts", "latest", "--tag", "pre-upgrade"]);
    assert!(facts.contains(&pre_id[..8]), "{facts}");

    let out = env.run(&["ls", "latest", "--host", "no-such-host"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("--host no-such-host"), "{}", stderr(&out));
    let out = env.run(&["ls", "latest", "--profile", "go-toolchain"]);
    assert_eq!(code(&out), 1, "no snapshot of that profile");
}
