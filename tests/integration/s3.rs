//! Repositories in S3, against a real S3 server on 127.0.0.1 (s3s-fs,
//! started by the tests in this process).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

use cairn::sink::{self, conformance, Location, ObjectKind, Sink, SinkError, SinkOptions};

use crate::s3server::{aws_env, S3Server};
use crate::util::{self, code, stderr, Env};

fn options(settings: &[&str]) -> SinkOptions {
    let mut o = SinkOptions::default();
    for s in settings {
        o.set(s).expect("setting");
    }
    o
}

fn open(server: &S3Server, path: &str, settings: &[&str], create: bool) -> Result<Arc<dyn Sink>, SinkError> {
    let location = Location::parse(OsStr::new(&server.url(path))).expect("url");
    sink::open(&location, &options(settings), create)
}

/// An [`Env`] whose `--repo` is a bucket and prefix on `server`.
fn s3_env(server: &S3Server, path: &str) -> Env {
    let mut env = Env::new();
    env.repo = PathBuf::from(server.url(path));
    env
}

fn s3_cmd(env: &Env, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd();
    aws_env(&mut cmd, env.dir.path());
    cmd.args(args).output().expect("run cairn")
}

fn s3_ok(env: &Env, args: &[&str]) -> String {
    let out = s3_cmd(env, args);
    assert!(out.status.success(), "cairn {args:?} failed: {}", stderr(&out));
    util::stdout(&out)
}

#[test]
fn the_s3_sink_passes_the_conformance_suite() {
    let server = S3Server::start();
    // A server without conditional writes: what most S3 clones offer.
    let sink = open(
        &server,
        "conformance/plain",
        &["s3.conditional-writes=false"],
        true,
    )
    .unwrap();
    assert!(!sink.capabilities().exclusive_create);
    conformance::run(sink.as_ref());
    // And under a prefix next to it, with a second bucket of its own.
    let sink = open(
        &server,
        "conformance-two/a/b",
        &["s3.conditional-writes=false"],
        true,
    )
    .unwrap();
    conformance::run(sink.as_ref());
}

#[test]
fn conditional_writes_refuse_a_second_write_of_a_name() {
    let server = S3Server::start();
    let sink = open(&server, "conditional", &["s3.conditional-writes=true"], true).unwrap();
    assert!(sink.capabilities().exclusive_create);
    sink.write_bytes(ObjectKind::Lock, "00aa", b"first").unwrap();
    let err = sink.write_bytes(ObjectKind::Lock, "00aa", b"second").unwrap_err();
    assert!(matches!(err, SinkError::AlreadyExists { .. }), "{err}");
    assert_eq!(sink.read(ObjectKind::Lock, "00aa").unwrap(), b"first");
}

#[test]
fn backup_restore_and_check_through_s3() {
    let server = S3Server::start();
    let env = s3_env(&server, "backups/laptop");
    let out = s3_ok(&env, &["init", crate::util::init_flag()]);
    assert!(out.contains("cairn repository"), "{out}");
    assert!(server.bucket_dir("backups").join("laptop/config.json").is_file());

    let src = env.path("src");
    for i in 0..60u64 {
        util::write(
            &src.join(format!("dir{}/file{i}.txt", i % 7)),
            &util::noise(3000 + i as usize * 97, i),
        );
    }
    util::write(&src.join("big.bin"), &util::noise(3 << 20, 99));
    s3_ok(&env, &["backup", src.to_str().unwrap()]);
    // Unchanged: a second backup adds nothing and still works over S3.
    s3_ok(&env, &["backup", src.to_str().unwrap()]);

    let whole = env.path("whole");
    s3_ok(&env, &["restore", "latest", "--target", whole.to_str().unwrap()]);
    util::assert_same_tree(&src, &whole.join("tree/src"));

    let part = env.path("part");
    s3_ok(
        &env,
        &[
            "restore",
            "latest",
            "--target",
            part.to_str().unwrap(),
            "--include",
            "tree/src/dir3/**",
        ],
    );
    let restored: Vec<_> = walkdir::WalkDir::new(&part)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(
        !restored.is_empty()
            && restored
                .iter()
                .all(|e| e.path().to_string_lossy().contains("/dir3/"))
    );

    let out = s3_ok(&env, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    let snapshots = s3_ok(&env, &["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&snapshots).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(2));
}

#[test]
fn a_large_pack_goes_up_in_parts() {
    let server = S3Server::start();
    let env = s3_env(&server, "multipart");
    s3_ok(&env, &["init", crate::util::init_flag()]);
    let src = env.path("src");
    // Incompressible, so the pack is as large as the data (8 MiB target).
    util::write(&src.join("a.bin"), &util::noise(7 << 20, 1));
    util::write(&src.join("b.bin"), &util::noise(3 << 20, 2));
    s3_ok(
        &env,
        &[
            "--option",
            "s3.multipart-threshold=5MiB",
            "--option",
            "s3.part-size=5MiB",
            "-v",
            "backup",
            src.to_str().unwrap(),
        ],
    );
    let out = s3_ok(&env, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    let back = env.path("back");
    s3_ok(&env, &["restore", "latest", "--target", back.to_str().unwrap()]);
    util::assert_same_tree(&src, &back.join("tree/src"));
    let packs = walkdir::WalkDir::new(server.bucket_dir("multipart").join("packs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.metadata().map(|m| m.len()).unwrap_or(0) >= 5 << 20)
        .count();
    assert!(packs >= 1, "no pack of 5 MiB or more was stored");
}

#[test]
fn two_backups_into_one_bucket_at_once() {
    let server = S3Server::start();
    let env = s3_env(&server, "shared/repo");
    s3_ok(&env, &["init", crate::util::init_flag()]);
    let (a, b) = (env.path("host-a"), env.path("host-b"));
    for i in 0..40u64 {
        util::write(&a.join(format!("f{i}")), &util::noise(20_000, i));
        // Half the files are the same on both hosts: deduplicated at once.
        let seed = if i % 2 == 0 { i } else { 1000 + i };
        util::write(&b.join(format!("f{i}")), &util::noise(20_000, seed));
    }
    let spawn = |dir: &PathBuf| {
        let mut cmd = env.cmd();
        aws_env(&mut cmd, env.dir.path());
        cmd.args(["backup", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    for (child, what) in [(ca, "a"), (cb, "b")] {
        let out = util::wait_or_kill(child, 120, what);
        assert!(out.status.success(), "backup {what}: {}", stderr(&out));
    }
    let out = s3_ok(&env, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    let list: serde_json::Value = serde_json::from_str(&s3_ok(&env, &["snapshots", "--json"])).unwrap();
    let ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let back = env.path("back");
    for id in &ids {
        s3_ok(
            &env,
            &["restore", id, "--target", back.join(id).to_str().unwrap()],
        );
    }
    for dir in [&a, &b] {
        let rel = std::path::Path::new("tree").join(dir.file_name().unwrap());
        let found = ids.iter().map(|id| back.join(id).join(&rel)).find(|p| p.is_dir());
        util::assert_same_tree(dir, &found.expect("a snapshot of each host"));
    }
}

#[test]
fn bad_s3_repositories_fail_in_one_clear_line() {
    let server = S3Server::start();
    // A malformed URL.
    let env = s3_env(&server, "UPPER-case");
    let out = s3_cmd(&env, &["snapshots"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("bad repository URL"), "{}", stderr(&out));

    // A bucket that does not exist: no repository (exit 10), nothing made.
    let env = s3_env(&server, "missing-bucket");
    let out = s3_cmd(&env, &["snapshots"]);
    assert_eq!(code(&out), 10, "{}", stderr(&out));
    assert!(stderr(&out).contains("cairn init"), "{}", stderr(&out));
    assert!(!server.bucket_dir("missing-bucket").exists());

    // Wrong credentials: says so, and never prints the secret.
    let env = s3_env(&server, "creds");
    s3_ok(&env, &["init", crate::util::init_flag()]);
    let mut cmd = env.cmd();
    aws_env(&mut cmd, env.dir.path());
    let out = cmd
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
        .args(["snapshots"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("credentials"), "{err}");
    assert!(
        !err.contains("wrong-secret-value") && !err.contains(crate::s3server::SECRET_KEY),
        "{err}"
    );
    assert!(err.lines().count() <= 2, "{err}");

    // A server that is down: retried for the retry time, then one line.
    let addr = server.addr;
    drop(server);
    let mut env = Env::new();
    env.repo = PathBuf::from(format!("s3:http://{addr}/down"));
    let out = s3_cmd(&env, &["--option", "s3.retry-time=1", "snapshots"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("cannot reach the server"), "{err}");
    assert!(err.lines().count() <= 2, "{err}");
}

/// A proxy spoils every second connection (refused, 503, cut mid-upload, a
/// download broken off, delayed): backups through it retry and succeed,
/// and every snapshot restores byte for byte and passes check --read-data,
/// through the proxy and straight from the server.
#[test]
fn backups_through_a_faulty_network_still_restore_byte_for_byte() {
    use crate::s3server::{FaultyProxy, ProxyFault};
    let server = S3Server::start();
    let proxy = FaultyProxy::start(
        server.addr,
        2,
        &[
            ProxyFault::CutResponse,
            ProxyFault::Refuse,
            ProxyFault::SlowDown,
            ProxyFault::CutRequest,
            ProxyFault::Delay,
        ],
    );
    let mut env = Env::new();
    env.repo = PathBuf::from(format!("s3:http://{}/faulty/repo", proxy.addr));
    let direct = server.url("faulty/repo");
    let settings = ["--option", "s3.retry-time=60", "--option", "s3.connections=2"];
    fn with<'a>(settings: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
        [settings, args].concat()
    }
    s3_ok(&env, &with(&settings, &["init", crate::util::init_flag()]));
    let src = env.path("src");
    for round in 0..3u64 {
        for i in 0..20u64 {
            util::write(
                &src.join(format!("r{round}/f{i}")),
                &util::noise(60_000, round * 100 + i),
            );
        }
        s3_ok(&env, &with(&settings, &["backup", src.to_str().unwrap()]));
    }
    let out = s3_ok(&env, &with(&settings, &["check", "--read-data"]));
    assert!(out.contains("no errors"), "{out}");
    let back = env.path("back");
    s3_ok(
        &env,
        &with(
            &settings,
            &["restore", "latest", "--target", back.to_str().unwrap()],
        ),
    );
    util::assert_same_tree(&src, &back.join("tree/src"));
    let injected = proxy.injected.load(std::sync::atomic::Ordering::Relaxed);
    println!("faults injected: {injected}");
    assert!(injected >= 3, "too few faults injected: {injected}");

    // Straight from the server, without the proxy.
    let mut plain = Env::new();
    plain.repo = PathBuf::from(direct);
    let out = s3_ok(&plain, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    let list: serde_json::Value = serde_json::from_str(&s3_ok(&plain, &["snapshots", "--json"])).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(3));
}

/// Index files and snapshot records are kept in a local cache: a second
/// command reads them from there, checked against their names, and a
/// damaged cached copy is read again from the bucket.
#[test]
fn index_files_and_records_come_from_the_local_cache() {
    let server = S3Server::start();
    let env = s3_env(&server, "cached/repo");
    s3_ok(&env, &["init", crate::util::init_flag()]);
    let src = env.path("src");
    util::write(&src.join("a"), &util::noise(10_000, 1));
    s3_ok(&env, &["backup", src.to_str().unwrap()]);
    let cache = env.path("cache");
    let cached: Vec<PathBuf> = walkdir::WalkDir::new(&cache)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    assert!(
        cached.iter().any(|p| p.to_string_lossy().contains("/snapshots/")),
        "{cached:?}"
    );
    assert!(
        cached.iter().any(|p| p.to_string_lossy().contains("/index/")),
        "{cached:?}"
    );
    for p in &cached {
        std::fs::write(p, b"damaged").unwrap();
    }
    let out = s3_ok(&env, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    for p in &cached {
        assert_ne!(std::fs::read(p).unwrap(), b"damaged", "{p:?} was not replaced");
    }
}

/// `init` on a bucket that does not exist, with credentials that may not
/// create one: one clear line naming the bucket, nothing made.
#[test]
fn init_without_the_right_to_create_the_bucket_says_so() {
    let server = S3Server::start_without_bucket_creation();
    let env = s3_env(&server, "not-mine/repo");
    let out = s3_cmd(&env, &["init", crate::util::init_flag()]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("AccessDenied") && err.contains("not-mine"), "{err}");
    assert!(err.lines().count() <= 2, "{err}");
    assert!(!server.bucket_dir("not-mine").exists());
}

/// Index files merged in a bucket go from the local cache too, and every
/// snapshot still restores.
#[test]
fn small_index_files_are_merged_in_a_bucket() {
    use cairn::repo::consolidate::CONSOLIDATE_AT;
    let server = S3Server::start();
    let env = s3_env(&server, "merged/repo");
    s3_ok(&env, &["init", crate::util::init_flag()]);
    let src = env.path("src");
    for i in 0..CONSOLIDATE_AT {
        util::write(&src.join(format!("f{i}")), &util::noise(2000, i as u64));
        s3_ok(&env, &["backup", src.to_str().unwrap()]);
    }
    let sink = open(&server, "merged/repo", &[], false).expect("open");
    let names: Vec<String> = sink
        .list(ObjectKind::Index)
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert!(names.len() <= 2, "{} index files left", names.len());
    let out = s3_ok(&env, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    let cached: Vec<String> = std::fs::read_dir(env.path("cache"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .flat_map(|repo| walkdir::WalkDir::new(repo.path().join("index")))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!cached.is_empty(), "check read no index file through the cache");
    for c in &cached {
        assert!(
            names.iter().any(|n| c.starts_with(n.as_str())),
            "{c} is cached but gone from the bucket"
        );
    }
    let target = env.path("out");
    s3_ok(&env, &["restore", "latest", "--target", target.to_str().unwrap()]);
    util::assert_same_tree(&src, &target.join("tree/src"));
}

/// forget and prune through S3: the space goes, what is kept restores, and
/// the local cache forgets what the bucket no longer has.
#[test]
fn forget_and_prune_in_a_bucket() {
    let server = S3Server::start();
    let env = s3_env(&server, "pruned/repo");
    s3_ok(&env, &["init", crate::util::init_flag()]);
    let src = env.path("src");
    util::write(&src.join("stays"), &util::noise(1_500_000, 7));
    for i in 0..4u64 {
        if i > 0 {
            std::fs::remove_file(src.join(format!("f{}", i - 1))).unwrap();
        }
        util::write(&src.join(format!("f{i}")), &util::noise(400_000, i));
        let time = format!("2026-11-0{}T10:00:00Z", i + 1);
        s3_ok(&env, &["backup", src.to_str().unwrap(), "--time", &time]);
    }
    let sink = open(&server, "pruned/repo", &[], false).expect("open");
    let size = |kind| -> u64 { sink.list(kind).expect("list").iter().map(|o| o.size).sum() };
    let before = size(ObjectKind::Pack);
    let out = s3_ok(&env, &["forget", "--keep-last", "1", "--prune"]);
    assert!(out.contains("3 snapshots removed"), "{out}");
    assert!(
        size(ObjectKind::Pack) + 1_000_000 < before,
        "{before} -> {}",
        size(ObjectKind::Pack)
    );
    assert_eq!(sink.list(ObjectKind::Snapshot).expect("list").len(), 1);
    let cached_records = walkdir::WalkDir::new(env.path("cache"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().to_string_lossy().contains("/snapshots/"))
        .count();
    assert_eq!(cached_records, 1, "the records forgotten are gone from the cache");
    let out = s3_ok(&env, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    let target = env.path("out");
    s3_ok(&env, &["restore", "latest", "--target", target.to_str().unwrap()]);
    util::assert_same_tree(&src, &target.join("tree/src"));
}
