//! Helpers shared by every integration test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn::sink::{ObjectKind, Sink, SinkError};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// The password of every encrypted repository the tests make.
pub const PASSWORD: &str = "test password, not a secret";

/// The kind of repository the suite runs on: `CAIRN_TEST_REPO=encrypted`
/// runs every test on encrypted repositories (a parameter of the whole
/// suite, not a copy of its tests); otherwise plain ones.
pub fn encrypted() -> bool {
    std::env::var("CAIRN_TEST_REPO").is_ok_and(|v| v == "encrypted")
}

/// Whether a test about plain repositories only (their packs are
/// `.tar.zst` files that standard tools read; a one-blob file's hash is its
/// blob's id) runs: not in the encrypted pass, which says so.
pub fn plain_only(what: &str) -> bool {
    if encrypted() {
        eprintln!("not run on encrypted repositories (the plain pass runs it): {what}");
        return false;
    }
    true
}

/// The flag that makes `init` create the kind under test.
pub fn init_flag() -> &'static str {
    if encrypted() {
        "--encrypt"
    } else {
        "--no-encrypt"
    }
}

/// Where the library finds the tests' password.
pub fn passwords() -> cairn::repo::keys::Given {
    cairn::repo::keys::Given(PASSWORD.as_bytes().to_vec())
}

/// Opens the repository in `sink` as cairn would, with the tests' password.
pub fn open(sink: std::sync::Arc<dyn Sink>) -> cairn::repo::Repository {
    cairn::repo::Repository::open_with(sink, &passwords()).expect("open the repository")
}

/// [`open`], the error returned.
pub fn try_open(sink: std::sync::Arc<dyn Sink>) -> Result<cairn::repo::Repository, cairn::repo::RepoError> {
    cairn::repo::Repository::open_with(sink, &passwords())
}

/// `plain` as the local repository at `repo` stores an object of
/// `domain`: sealed when it is encrypted, unchanged when not (tests that
/// plant a lock or edit a record work on both kinds).
pub fn stored(repo: &Path, domain: cairn::repo::crypto::Domain, plain: Vec<u8>) -> Vec<u8> {
    open_local(repo)
        .seal("a test object", domain, plain)
        .expect("seal")
}

/// What a stored object of `domain` in the local repository at `repo` holds.
pub fn opened(repo: &Path, domain: cairn::repo::crypto::Domain, bytes: Vec<u8>) -> Vec<u8> {
    open_local(repo)
        .crypto()
        .open(domain, bytes)
        .expect("open a sealed object")
}

/// Every byte the local repository at `repo` holds, opened where it is
/// sealed and decompressed where it is compressed (each pack frame by
/// frame), so a test can say a value appears in no byte of it.
pub fn repository_plaintext(repo: &Path) -> Vec<u8> {
    use cairn::repo::crypto::Domain;
    let crypto = open_local(repo).crypto().clone();
    let inflate = |bytes: &[u8]| zstd::stream::decode_all(bytes).expect("a zstd frame");
    let mut all = Vec::new();
    for file in walkdir::WalkDir::new(repo).into_iter().filter_map(Result::ok) {
        if !file.file_type().is_file() {
            continue;
        }
        let bytes = fs::read(file.path()).unwrap();
        let dir = file.path().parent().unwrap();
        let kind = |name: &str| dir.ends_with(name) || dir.parent().is_some_and(|d| d.ends_with(name));
        if kind("packs") && crypto.is_encrypted() {
            let mut pos = 0;
            while let Some(n) = crypto.envelope_len(&bytes[pos..]) {
                let frame = crypto
                    .open(Domain::Frame, bytes[pos..pos + n].to_vec())
                    .expect("a sealed frame");
                all.extend(inflate(&frame));
                pos += n;
            }
        } else if kind("packs") {
            all.extend(inflate(&bytes));
        } else if kind("index") {
            all.extend(inflate(
                &crypto.open(Domain::Index, bytes.clone()).expect("an index file"),
            ));
        } else if kind("snapshots") {
            all.extend(crypto.open(Domain::Snapshot, bytes.clone()).expect("a record"));
        } else if kind("locks") {
            all.extend(crypto.open(Domain::Lock, bytes.clone()).expect("a lock"));
        }
        all.extend(bytes);
    }
    all
}

/// Opens the local repository at `path`.
pub fn open_local(path: &Path) -> cairn::repo::Repository {
    open(std::sync::Arc::new(cairn::sink::LocalSink::new(path)))
}

/// A cairn command that finds the tests' password, and derives keys at
/// the cheapest Argon2id setting (a thousand unlocks at half a second
/// each would take minutes).
pub fn cairn_command() -> Command {
    let mut c = Command::new(BIN);
    c.env("CAIRN_PASSWORD", PASSWORD)
        .env("CAIRN_TEST_WEAK_KDF", "1")
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND");
    c
}

/// A scratch directory with a repository path inside it, and a `cairn`
/// command set up to use them (and never the user's own data dir).
pub struct Env {
    pub dir: TempDir,
    pub repo: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("cairn-test-")
            .tempdir()
            .expect("tempdir");
        let repo = dir.path().join("repo");
        Env { dir, repo }
    }

    /// A new repository, initialised.
    pub fn with_repo() -> Env {
        let env = Env::new();
        env.ok(&["init", init_flag()]);
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self) -> Command {
        let mut c = self.cmd_without_repo();
        c.arg("--repo").arg(&self.repo);
        c
    }

    /// [`Env::cmd`] without `--repo`, for commands that name their own.
    pub fn cmd_without_repo(&self) -> Command {
        let mut c = cairn_command();
        c.env_remove("CAIRN_REPO")
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env("CAIRN_STATE_DIR", self.dir.path().join("state"))
            .env("CAIRN_CONFIG_DIR", self.dir.path().join("config"))
            .env("CAIRN_CACHE_DIR", self.dir.path().join("cache"))
            .env("TZ", "UTC");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run cairn")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed ({:?})\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and returns the parsed JSON on stdout (the command gets --json).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: bad JSON ({e}): {out}"))
    }

    /// Runs cairn as the unprivileged user `nobody` (see `can_run_as_nobody`).
    pub fn run_as_nobody(&self, args: &[&str]) -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "--repo"])
            .arg(&self.repo)
            .args(args)
            .env("TZ", "UTC")
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env("CAIRN_STATE_DIR", self.dir.path().join("state"))
            .env("CAIRN_CONFIG_DIR", self.dir.path().join("config"))
            .env("CAIRN_CACHE_DIR", self.dir.path().join("cache"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_TEST_WEAK_KDF", "1")
            .output()
            .expect("run cairn as nobody")
    }

    pub fn backup(&self, paths: &[&Path]) -> serde_json::Value {
        let mut args = vec!["backup".to_string()];
        args.extend(paths.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.json(&args)
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("mkdir");
    }
    fs::write(path, data).expect("write");
}

/// Size of everything under a directory.
pub fn du(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Every file of a local repository but its locks, sorted: what a command
/// that must change nothing leaves as it was.
pub fn repo_files(repo: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = walkdir::WalkDir::new(repo)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && !e.path().starts_with(repo.join("locks")))
        .map(|e| e.into_path())
        .collect();
    all.sort();
    all
}

/// The hash of every file under `dir`, by relative path.
pub fn file_hashes(dir: &Path) -> BTreeMap<PathBuf, String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let hash = blake3::hash(&fs::read(e.path()).unwrap()).to_hex().to_string();
            (e.path().strip_prefix(dir).unwrap().to_path_buf(), hash)
        })
        .collect()
}

pub use cairn::rng::Rng;

/// Inverts the byte at `at` (or the last one) of a file.
pub fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

/// The one file in `dir`.
pub fn only_file_in(dir: &Path) -> PathBuf {
    let files: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// The files in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

pub fn packs(repo: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(repo.join("packs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.into_path())
        .collect()
}

/// What a test compares between a source tree and its restored copy.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    content: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Index of the first path sharing this inode (hard links), or none.
    link_group: Option<PathBuf>,
}

/// Every entry under `root`, keyed by relative path; hard links are recorded
/// by which earlier path they share an inode with.
pub fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.expect("walk");
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let m = fs::symlink_metadata(e.path()).expect("lstat");
        let ft = m.file_type();
        let (kind, content) = if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(e.path()).unwrap().as_os_str().as_bytes().to_vec(),
            )
        } else if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_fifo() {
            // Never opened: opening a fifo waits for a writer.
            ("fifo", Vec::new())
        } else if ft.is_char_device() || ft.is_block_device() {
            ("device", m.rdev().to_le_bytes().to_vec())
        } else {
            ("file", fs::read(e.path()).expect("read"))
        };
        let link_group = if ft.is_file() && m.nlink() > 1 {
            Some(
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| rel.clone())
                    .clone(),
            )
        } else {
            None
        };
        let mut xattrs = Vec::new();
        if !ft.is_symlink() {
            for name in xattr::list(e.path()).unwrap() {
                let v = xattr::get(e.path(), &name).unwrap().unwrap_or_default();
                xattrs.push((name.as_bytes().to_vec(), v));
            }
            xattrs.sort();
        }
        let node = Node {
            kind,
            mode: if ft.is_symlink() {
                0
            } else {
                m.permissions().mode() & 0o7777
            },
            uid: m.uid(),
            gid: m.gid(),
            // The root directory's mtime is compared too, except at depth 0
            // where the caller's directory may differ.
            mtime: if e.depth() == 0 {
                (0, 0)
            } else {
                (m.mtime(), m.mtime_nsec())
            },
            content,
            xattrs,
            link_group,
        };
        out.insert(rel, node);
    }
    out
}

pub fn assert_same_tree(a: &Path, b: &Path) {
    let left = snapshot_tree(a);
    let right = snapshot_tree(b);
    let lk: Vec<_> = left.keys().collect();
    let rk: Vec<_> = right.keys().collect();
    assert_eq!(
        lk,
        rk,
        "different paths under {} and {}",
        a.display(),
        b.display()
    );
    for (path, node) in &left {
        assert_eq!(Some(node), right.get(path), "{} differs", path.display());
    }
}

/// Whether cairn can be run as `nobody` here (as root, with setpriv); if
/// not, says that the test is skipped (see [`skip`]).
pub fn can_run_as_nobody() -> bool {
    let can = is_root() && can_drop_privileges();
    if !can {
        skip("needs root and setpriv to run cairn as an unprivileged user");
    }
    can
}

/// Whether an unprivileged user can be switched to with setpriv.
fn can_drop_privileges() -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes a fifo at `path`.
pub fn mkfifo(path: &Path, mode: u32) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) }, 0);
}

/// Waits for a child at most `secs` seconds; kills it and fails the test
/// when it is still running then.
pub fn wait_or_kill(mut child: std::process::Child, secs: u64, what: &str) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs}s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Names under `dir` that a killed restore leaves (`.<name>.cairn-<hex>`).
pub fn temp_names(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".cairn-"))
        .map(|e| e.into_path())
        .collect()
}

/// Says that a test cannot run on this machine. Outside CI it is skipped
/// with a line saying so; CI must run every test, so there it fails.
pub fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("cannot run here: {reason}; CI must not skip this test");
    }
    println!("SKIPPED: {reason}");
}

/// What [`SpySink`] runs before each whole-object read.
pub type ReadHook = Box<dyn FnMut(ObjectKind, &str) + Send>;

/// A store in front of another that counts the ranged reads of each object
/// and offset (and those made by a restore's fetchers), can run a hook
/// before each read, and asks for `concurrency` transfers at once (more
/// than one: as a network store does).
pub struct SpySink {
    inner: std::sync::Arc<dyn Sink>,
    concurrency: usize,
    pub reads: std::sync::Mutex<std::collections::HashMap<(String, u64), usize>>,
    /// Ranged reads made by a thread that fetches ahead of a restore's writers.
    pub ahead: std::sync::atomic::AtomicUsize,
    pub before_read: std::sync::Mutex<Option<ReadHook>>,
}

impl SpySink {
    pub fn new(inner: std::sync::Arc<dyn Sink>, concurrency: usize) -> SpySink {
        SpySink {
            inner,
            concurrency,
            reads: Default::default(),
            ahead: Default::default(),
            before_read: Default::default(),
        }
    }
}

impl Sink for SpySink {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn capabilities(&self) -> cairn::sink::Capabilities {
        cairn::sink::Capabilities {
            concurrency: self.concurrency,
            ..self.inner.capabilities()
        }
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<cairn::sink::ObjectInfo>, SinkError> {
        self.inner.list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, SinkError> {
        if let Some(hook) = self.before_read.lock().expect("lock").as_mut() {
            hook(kind, name);
        }
        self.inner.read(kind, name)
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, SinkError> {
        *self
            .reads
            .lock()
            .expect("lock")
            .entry((name.to_string(), offset))
            .or_default() += 1;
        if std::thread::current().name() == Some("cairn-fetch") {
            self.ahead.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.read_range(kind, name, offset, length)
    }
    fn write(&self, kind: ObjectKind, name: &str, data: bytes::Bytes) -> Result<u64, SinkError> {
        self.inner.write(kind, name, data)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError> {
        self.inner.delete(kind, name)
    }
}

/// A tmpfs of a given size mounted at a path (root only), unmounted on drop:
/// a disk that really fills.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
