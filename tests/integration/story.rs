//! The whole story cairn exists for: a toolchain upgrade that breaks, and
//! yesterday back in one command.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

struct Machine {
    env: Env,
    goroot: PathBuf,
    project: PathBuf,
    go_env: PathBuf,
    /// A copy of everything, as it was before the upgrade.
    before: PathBuf,
}

fn executable(path: &Path, text: &str) {
    write(path, text.as_bytes());
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake GOROOT of a few hundred files with a `bin/go` that prints its
/// version, a Go env file, a project, and a profile naming all three.
fn machine() -> Machine {
    let env = Env::with_repo();
    let home = env.path("home");
    let goroot = home.join("sdk/go");
    for pkg in 0..20 {
        for file in 0..15 {
            let body = format!(
                "package p{pkg}\n// file {file}\n{}",
                "x".repeat((pkg * 15 + file) * 37 % 3000)
            );
            write(&goroot.join(format!("src/p{pkg}/f{file}.go")), body.as_bytes());
        }
    }
    executable(
        &goroot.join("bin/go"),
        "#!/bin/sh\necho go version go1.22.5 linux/amd64\n",
    );
    write(&goroot.join("VERSION"), b"go1.22.5\n");
    let go_env = home.join(".config/go/env");
    write(&go_env, b"GOPROXY=https://proxy.golang.org\n");
    let project = home.join("project");
    write(&project.join("go.mod"), b"module example\n\ngo 1.22\n");
    write(&project.join("main.go"), b"package main\n");
    let profile = format!(
        r#"
[[collector]]
kind = "tree"
name = "goroot"
path = "{goroot}"

[[collector]]
kind = "files"
name = "goenv"
files = [{{ path = "{go_env}" }}]

[[collector]]
kind = "tree"
name = "project"
path = "{project}"

[[collector]]
kind = "command"
name = "version"
argv = ["{goroot}/bin/go", "version"]
facts = [{{ name = "go.version", regex = 'go version (\S+)' }}]
"#,
        goroot = goroot.display(),
        go_env = go_env.display(),
        project = project.display()
    );
    write(
        &env.path("config/cairn/profiles/go-upgrade.toml"),
        profile.as_bytes(),
    );
    let before = env.path("before");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&home)
        .arg(&before)
        .status()
        .unwrap();
    assert!(st.success());
    Machine {
        env,
        goroot,
        project,
        go_env,
        before,
    }
}

/// An upgrade script: rewrites, adds and deletes files, changes
/// permissions, swaps a file for a symlink; exits with `code`.
fn upgrade_script(m: &Machine, code: i32) -> PathBuf {
    let script = m.env.path(&format!("upgrade-{code}.sh"));
    let text = format!(
        r#"#!/bin/sh
set -e
G={goroot}
printf '#!/bin/sh\necho go version go1.23.0 linux/amd64\n' > $G/bin/go
echo go1.23.0 > $G/VERSION
rm -r $G/src/p3
mkdir -p $G/src/newpkg && echo 'package newpkg' > $G/src/newpkg/a.go
echo '// changed' >> $G/src/p1/f1.go
chmod 600 $G/src/p2/f2.go
rm $G/src/p4/f4.go && ln -s ../p5/f5.go $G/src/p4/f4.go
echo GOPROXY=direct > {go_env}
sed -i 's/go 1.22/go 1.23/' {project}/go.mod
echo "upgrade output on stdout"
exit {code}
"#,
        goroot = m.goroot.display(),
        go_env = m.go_env.display(),
        project = m.project.display()
    );
    executable(&script, &text);
    script
}

fn cairn(m: &Machine, args: &[&str]) -> std::process::Output {
    m.env
        .cmd()
        .env("XDG_CONFIG_HOME", m.env.path("config"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_failed_upgrade_is_rolled_back_byte_for_byte() {
    let m = machine();
    let script = upgrade_script(&m, 1);
    let out = cairn(
        &m,
        &[
            "run",
            "--profile",
            "go-upgrade",
            "--rollback-on-failure",
            "--",
            script.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 1, "the command's exit code: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "upgrade output on stdout\n",
        "the command's stdout passes through"
    );
    let err = stderr(&out);
    assert!(err.contains("rolling back"), "{err}");
    assert!(
        err.contains("changed fact go.version: go1.22.5 -> go1.23.0"),
        "{err}"
    );
    assert_same_tree(&m.before, &m.env.path("home"));

    // The pair: both share `pair`, the post one names the pre one and the
    // command's exit status.
    let snaps = m.env.json(&["snapshots"]);
    let runs: Vec<&serde_json::Value> = snaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["run"].is_object())
        .collect();
    assert_eq!(runs.len(), 2, "{snaps}");
    assert_eq!(runs[0]["run"]["pair"], runs[1]["run"]["pair"]);
    assert_eq!(runs[0]["run"]["role"], "pre");
    assert_eq!(runs[1]["run"]["pre"], runs[0]["id"]);
    assert_eq!(runs[1]["run"]["exit_code"], 1);
    let listing = stdout(&cairn(&m, &["snapshots"]));
    assert!(
        listing.contains("(before `") && listing.contains(": exit 1)"),
        "{listing}"
    );

    // The rollback can itself be undone: the post state comes back.
    let out = cairn(&m, &["restore", "--undo"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(m.goroot.join("VERSION")).unwrap(), b"go1.23.0\n");
    assert!(fs::symlink_metadata(m.goroot.join("src/p4/f4.go"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_failing_health_check_after_a_successful_upgrade_rolls_it_back() {
    let m = machine();
    let script = upgrade_script(&m, 0);
    let check = format!("{}/bin/go version | grep -q go1.22", m.goroot.display());
    let out = cairn(
        &m,
        &[
            "run",
            "--profile",
            "go-upgrade",
            "--rollback-on-failure",
            "--check",
            &check,
            "--",
            script.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("the check"), "{}", stderr(&out));
    assert_same_tree(&m.before, &m.env.path("home"));
}

#[test]
fn a_successful_run_keeps_the_change_and_exits_with_the_command() {
    let m = machine();
    let script = upgrade_script(&m, 0);
    let out = cairn(
        &m,
        &["run", "--profile", "go-upgrade", "--", script.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read(m.goroot.join("VERSION")).unwrap(), b"go1.23.0\n");
    let err = stderr(&out);
    assert!(err.contains("changed in tree/goroot:"), "{err}");
    // The rollback is one command away.
    let pre = m.env.json(&["snapshots", "--tag", "pre"]);
    let id = pre[0]["id"].as_str().unwrap().to_string();
    let out = cairn(&m, &["restore", &id, "--in-place", "--delete"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("drift: go.version: go1.23.0 now, go1.22.5 in the snapshot"),
        "{}",
        stderr(&out)
    );
    assert_same_tree(&m.before, &m.env.path("home"));
    // A command that cannot run is an error before anything changes.
    let out = cairn(&m, &["run", "--profile", "go-upgrade", "--", "/no/such/program"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("cannot run /no/such/program"),
        "{}",
        stderr(&out)
    );
}
