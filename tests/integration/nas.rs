//! A repository on a real network filesystem: sshfs (FUSE) mounted from an
//! sshd on 127.0.0.1 that the test starts. Needs root, /dev/fuse, sshd and
//! sshfs; `.ci/run` installs them, so CI never skips this.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, code, stderr, Env};

/// sshd on a free loopback port and `root@127.0.0.1:<dir>` mounted with
/// sshfs; unmounted and stopped on drop.
pub(crate) struct Share {
    pub(crate) sshd: Child,
    pub(crate) mount: PathBuf,
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = Command::new("fusermount").arg("-u").arg(&self.mount).status();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

pub(crate) fn missing_tools() -> Option<String> {
    if !util::is_root() {
        return Some("not root".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse".into());
    }
    for tool in ["/usr/sbin/sshd", "sshfs", "ssh-keygen", "fusermount"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (apt-get install openssh-server sshfs)"
            ));
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn mount_share(scratch: &Path, exported: &Path, extra: &str) -> Share {
    let keys = scratch.join("ssh");
    std::fs::create_dir_all(&keys).unwrap();
    for name in ["host", "user"] {
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(keys.join(name)));
    }
    std::fs::copy(keys.join("user.pub"), keys.join("authorized_keys")).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = free_port();
    let config = keys.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\n\
             PidFile {pid}\nSubsystem sftp internal-sftp\n",
            host = keys.join("host").display(),
            auth = keys.join("authorized_keys").display(),
            pid = keys.join("sshd.pid").display(),
        ),
    )
    .unwrap();
    let sshd = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    let mount = scratch.join("mnt");
    std::fs::create_dir_all(&mount).unwrap();
    let share = Share { sshd, mount };
    let start = Instant::now();
    loop {
        let status = Command::new("sshfs")
            .arg(format!("root@127.0.0.1:{}", exported.display()))
            .arg(&share.mount)
            .args(["-p", &port.to_string(), "-o"])
            .arg(format!(
                "IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes{extra}",
                keys.join("user").display()
            ))
            .stderr(Stdio::null())
            .status()
            .expect("sshfs");
        if status.success() {
            return share;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "sshfs did not mount");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_repository_on_sshfs_backs_up_restores_and_checks() {
    if let Some(why) = missing_tools() {
        return util::skip(&format!("sshfs test: {why}"));
    }
    let env = Env::new();
    let exported = env.path("server-disk");
    std::fs::create_dir_all(&exported).unwrap();
    // Without hard links, as on exFAT and some SMB mounts: the sink renames.
    let share = mount_share(env.dir.path(), &exported, ",disable_hardlink");
    assert_eq!(cairn::sink::nas::network_filesystem(&share.mount), Some("fuse"));

    let repo = share.mount.join("cairn");
    let repo_arg = repo.to_str().unwrap();
    let src = env.path("src");
    for i in 0..25u64 {
        util::write(
            &src.join(format!("d{}/f{i}", i % 4)),
            &util::noise(30_000 + i as usize, i),
        );
    }
    let cairn = |args: &[&str]| {
        env.cmd_without_repo()
            .arg("--repo")
            .arg(repo_arg)
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["init", crate::util::init_flag()][..],
        &["backup", src.to_str().unwrap()],
        &["backup", src.to_str().unwrap()],
    ] {
        let out = cairn(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let out = cairn(&["check", "--read-data"]);
    assert!(
        out.status.success() && util::stdout(&out).contains("no errors"),
        "{}",
        stderr(&out)
    );
    // Data that only a forgotten snapshot held goes with prune, on the share.
    std::fs::remove_file(src.join("d0/f0")).unwrap();
    util::write(&src.join("d0/new"), &util::noise(200_000, 77));
    let out = cairn(&["backup", src.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cairn(&["forget", "--keep-last", "1", "--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        util::stdout(&out).contains("2 snapshots removed"),
        "{}",
        util::stdout(&out)
    );
    let out = cairn(&["check", "--read-data"]);
    assert!(
        out.status.success(),
        "after prune: {}{}",
        util::stdout(&out),
        stderr(&out)
    );
    let target = env.path("restored");
    let out = cairn(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    util::assert_same_tree(&src, &target.join("tree/src"));
    // What the server holds is the repository, with no temporary files left.
    assert!(exported.join("cairn/config.json").is_file());
    let leftovers = walkdir::WalkDir::new(exported.join("cairn"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(leftovers, 0);

    // A NAS sink in a profile: used when mounted, refused once unmounted.
    let profile = env.path("profiles/nas.toml");
    util::write(
        &profile,
        format!(
            "[[sink]]\nkind = \"nas\"\npath = \"{}\"\n[[collector]]\nkind = \"tree\"\nname = \"src\"\npath = \"{}\"\n",
            repo.display(),
            src.display()
        )
        .as_bytes(),
    );
    let out = env
        .cmd_without_repo()
        .args(["backup", "--profile", profile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    drop(share);
    let out = env
        .cmd_without_repo()
        .args(["backup", "--profile", profile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("is the share mounted"), "{}", stderr(&out));
    assert!(
        !env.path("mnt/cairn").exists(),
        "a repository was made in the empty mount point"
    );
}

/// The NAS's disk fills (a tmpfs exported over sshfs): a clear error, no
/// partial object, and a repository that checks whole.
#[test]
fn a_nas_repository_that_fills_stops_cleanly() {
    if let Some(why) = missing_tools() {
        return util::skip(&format!("sshfs test: {why}"));
    }
    let env = Env::new();
    let Some(disk) = util::Tmpfs::mount(&env.path("server-disk"), "3m") else {
        return util::skip("cannot mount a tmpfs here (needs root)");
    };
    let share = mount_share(env.dir.path(), &disk.0, "");
    let repo = share.mount.join("cairn");
    let cairn = |args: &[&str]| cairn_at(&env, &repo, args);
    let out = cairn(&["init", crate::util::init_flag()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let small = env.path("small");
    util::write(&small.join("a"), &util::noise(200_000, 1));
    let out = cairn(&["backup", small.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let big = env.path("big");
    for i in 0..8 {
        util::write(&big.join(format!("f{i}")), &util::noise(600_000, 10 + i));
    }
    let out = cairn(&["backup", big.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("space") || err.contains("full"), "{err}");
    assert!(
        err.lines().filter(|l| l.starts_with("error")).count() <= 2,
        "{err}"
    );
    let out = cairn(&["check", "--read-data"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let target = env.path("out");
    assert_eq!(
        code(&cairn(&[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap()
        ])),
        0
    );
    assert_eq!(
        std::fs::read(target.join("tree/small/a")).unwrap(),
        util::noise(200_000, 1)
    );
}

/// The NAS goes away in the middle of a backup (its server stops: sshfs
/// then fails every call with an I/O error): the backup fails with a clear
/// error, and once the share is back the repository checks whole, the
/// earlier snapshot restores, and the backup runs again.
#[test]
fn a_nas_that_goes_away_mid_backup_fails_cleanly() {
    if let Some(why) = missing_tools() {
        return util::skip(&format!("sshfs test: {why}"));
    }
    let env = Env::new();
    let exported = env.path("server-disk");
    std::fs::create_dir_all(&exported).unwrap();
    let mut share = mount_share(&env.path("first"), &exported, "");
    let repo = share.mount.join("cairn");
    let cairn = |repo: &Path, args: &[&str]| cairn_at(&env, repo, args);
    assert_eq!(code(&cairn(&repo, &["init", crate::util::init_flag()])), 0);
    let small = env.path("small");
    util::write(&small.join("a"), &util::noise(200_000, 1));
    assert_eq!(code(&cairn(&repo, &["backup", small.to_str().unwrap()])), 0);
    let big = env.path("big");
    for i in 0..8 {
        util::write(&big.join(format!("f{i}")), &util::noise(600_000, 10 + i));
    }
    let child = spawn_stalled(&env, &repo, &["backup", big.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(400));
    let _ = share.sshd.kill();
    let _ = share.sshd.wait();
    kill_sshfs(&exported);
    let out = util::wait_or_kill(child, 120, "backup to a NAS that went away");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("error:"), "{err}");
    assert!(
        err.lines().filter(|l| l.starts_with("error")).count() <= 2,
        "{err}"
    );
    drop(share);

    let share = mount_share(&env.path("second"), &exported, "");
    let repo = share.mount.join("cairn");
    let out = cairn(&repo, &["check", "--read-data"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let target = env.path("out");
    assert_eq!(
        code(&cairn(
            &repo,
            &["restore", "latest", "--target", target.to_str().unwrap()]
        )),
        0
    );
    assert_eq!(
        std::fs::read(target.join("tree/small/a")).unwrap(),
        util::noise(200_000, 1)
    );
    let out = cairn(&repo, &["backup", big.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// The NAS goes away while a restore reads from it: a clear error, no
/// temporary or partial file left in the target, and every file that is
/// there is whole.
#[test]
fn a_nas_that_goes_away_mid_restore_leaves_no_partial_file() {
    if let Some(why) = missing_tools() {
        return util::skip(&format!("sshfs test: {why}"));
    }
    let env = Env::new();
    let exported = env.path("server-disk");
    std::fs::create_dir_all(&exported).unwrap();
    let share = mount_share(&env.path("first"), &exported, "");
    let repo = share.mount.join("cairn");
    let cairn = |args: &[&str]| cairn_at(&env, &repo, args);
    assert_eq!(code(&cairn(&["init", crate::util::init_flag()])), 0);
    let src = env.path("src");
    for i in 0..12 {
        util::write(&src.join(format!("f{i}")), &util::noise(700_000, 40 + i));
    }
    assert_eq!(code(&cairn(&["backup", src.to_str().unwrap()])), 0);
    let target = env.path("out");
    let child = spawn_stalled(
        &env,
        &repo,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    std::thread::sleep(Duration::from_millis(500));
    kill_sshfs(&exported);
    let out = util::wait_or_kill(child, 120, "restore from a NAS that went away");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("error:"), "{}", stderr(&out));
    assert!(
        util::temp_names(&target).is_empty(),
        "{:?}",
        util::temp_names(&target)
    );
    let restored = util::file_hashes(&target.join("tree/src"));
    let source = util::file_hashes(&src);
    assert!(
        restored.len() < source.len(),
        "the restore ended before the NAS went away"
    );
    for (path, hash) in &restored {
        assert_eq!(&source[path], hash, "{} is partial", path.display());
    }
}

/// cairn on the repository at `repo`.
fn cairn_at(env: &Env, repo: &Path, args: &[&str]) -> std::process::Output {
    env.cmd_without_repo()
        .arg("--repo")
        .arg(repo)
        .args(args)
        .output()
        .unwrap()
}

/// cairn on `repo` with every store operation stalled 100 ms, so that
/// what a test does to the share lands in the middle of it.
fn spawn_stalled(env: &Env, repo: &Path, args: &[&str]) -> Child {
    env.cmd_without_repo()
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("CAIRN_FAULTS", "stall=1:100ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The NAS goes away: the sshfs serving `exported` is killed. SIGKILL: on
/// SIGTERM sshfs unmounts cleanly, and the path would be a plain directory
/// again; killed, every call on the mount fails.
fn kill_sshfs(exported: &Path) {
    let pattern = format!("sshfs root@127.0.0.1:{}", exported.display());
    let _ = Command::new("pkill").args(["-KILL", "-f", &pattern]).status();
}
