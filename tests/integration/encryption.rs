//! Encrypted repositories (FORMAT.md section 15): nothing readable in the
//! store, every change to a sealed object found, passwords and keys.
//! These tests make both kinds themselves, whatever `CAIRN_TEST_REPO` says.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{self, code, noise, repo_files, stderr, stdout, write, Env, PASSWORD};

/// What the secret-spotting test saves, and looks for in every byte.
struct Markers {
    content: Vec<u8>,
    names: Vec<String>,
}

/// A tree with incompressible content (zstd keeps it verbatim, so a plain
/// pack shows it), distinctive names, and a profile with a tag, an env
/// value and a command output.
fn secret_tree(env: &Env) -> (Markers, PathBuf) {
    let content = noise(200_000, 77);
    let dir = env.path("src-quasar");
    write(&dir.join("zebrafish-ledger.txt"), &content);
    write(&dir.join("nested-walrus/notes.md"), b"plain words");
    let profile = env.path("p.toml");
    let text = format!(
        "[[collector]]\nkind = \"tree\"\nname = \"data\"\npath = \"{}\"\n\
         [[collector]]\nkind = \"env\"\nname = \"environ\"\ninclude = [\"CAIRN_TEST_MARKER\"]\n\
         [[collector]]\nkind = \"command\"\nname = \"echo\"\nargv = [\"echo\", \"output-okapi\"]\n",
        dir.display()
    );
    fs::write(&profile, text).unwrap();
    let names = [
        "zebrafish-ledger",
        "nested-walrus",
        "src-quasar",
        "tag-narwhal",
        "value-pangolin",
        "output-okapi",
    ];
    (
        Markers {
            content,
            names: names.iter().map(|s| s.to_string()).collect(),
        },
        profile,
    )
}

/// The host name the backups run under (a UTS namespace of their own).
const HOST: &str = "host-marmoset";

fn back_up(env: &Env, profile: &Path) {
    let base = env.cmd();
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-u", "sh", "-c", r#"hostname "$0" && exec "$@""#, HOST, util::BIN]);
    cmd.args(base.get_args());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd
        .env("CAIRN_TEST_MARKER", "value-pangolin")
        .args([
            "backup",
            "--profile",
            profile.to_str().unwrap(),
            "--tag",
            "tag-narwhal",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// Which markers occur in some byte of some object of the repository
/// (locks too: a backup's lock is there while it runs), or in what the
/// object decompresses to, where it does (a plain pack's frames).
fn found_in(repo: &Path, m: &Markers) -> Vec<String> {
    let mut found = Vec::new();
    let window = &m.content[100_000..100_032];
    let plain_id = blake3::hash(&m.content);
    for file in walk_all(repo) {
        let mut bytes = fs::read(&file).unwrap();
        if let Ok(inflated) = zstd::stream::decode_all(&bytes[..]) {
            bytes.extend_from_slice(&inflated);
        }
        let text = String::from_utf8_lossy(&bytes);
        for n in m.names.iter().map(String::as_str).chain([HOST]) {
            if text.contains(n) {
                found.push(format!("{n} in {}", file.display()));
            }
        }
        if bytes.windows(window.len()).any(|w| w == window) {
            found.push(format!("content in {}", file.display()));
        }
        if text.contains(plain_id.to_hex().as_str()) || bytes.windows(32).any(|w| w == plain_id.as_bytes()) {
            found.push(format!("the content's plain hash in {}", file.display()));
        }
    }
    found
}

fn walk_all(repo: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(repo)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn init(env: &Env, flag: &str) {
    env.ok(&["init", flag]);
}

/// An encrypted repository holding one snapshot of `src/a.txt`.
fn encrypted_with_a_backup() -> Env {
    let env = Env::new();
    init(&env, "--encrypt");
    write(&env.path("src/a.txt"), b"a");
    env.backup(&[&env.path("src")]);
    env
}

#[test]
fn nothing_saved_shows_in_any_byte_of_an_encrypted_repository() {
    if !util::is_root() {
        util::skip("needs root for a host name of its own (unshare -u)");
        return;
    }
    let env = Env::new();
    let (markers, profile) = secret_tree(&env);
    // The same backup into a plain repository shows every marker: the
    // search can see what it looks for.
    init(&env, "--no-encrypt");
    back_up(&env, &profile);
    let plain = found_in(&env.repo, &markers);
    for what in [
        "zebrafish-ledger",
        "nested-walrus",
        "src-quasar",
        "value-pangolin",
        "tag-narwhal",
        "output-okapi",
        HOST,
        "content in",
        "plain hash",
    ] {
        assert!(
            plain.iter().any(|f| f.contains(what)),
            "{what} not found in plain: {plain:?}"
        );
    }
    fs::remove_dir_all(&env.repo).unwrap();
    init(&env, "--encrypt");
    back_up(&env, &profile);
    back_up(&env, &profile);
    env.ok(&["check", "--read-data"]);
    let found = found_in(&env.repo, &markers);
    assert!(
        found.is_empty(),
        "plaintext in an encrypted repository: {found:?}"
    );
    // And everything reads back.
    let out = env.path("out");
    env.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    let restored = walk_all(&out);
    let ledger = restored
        .iter()
        .find(|p| p.ends_with("zebrafish-ledger.txt"))
        .expect("restored");
    assert_eq!(fs::read(ledger).unwrap(), markers.content);
    let facts = env.ok(&["facts", "latest"]);
    assert!(facts.contains("value-pangolin"), "{facts}");
}

/// A copy of the repository with `edit` applied to one object; `check`
/// and `restore` must refuse it, naming the object.
fn assert_found(env: &Env, what: &str, edit: impl FnOnce(&Path)) {
    let copy = env.path(&format!("copy-{what}"));
    copy_dir(&env.repo, &copy);
    edit(&copy);
    let run = |args: &[&str]| {
        env.cmd_without_repo()
            .arg("--repo")
            .arg(&copy)
            .args(args)
            .output()
            .unwrap()
    };
    let check = run(&["check", "--read-data"]);
    assert_ne!(code(&check), 0, "{what}: check passed\n{}", stdout(&check));
    let target = env.path(&format!("out-{what}"));
    let restore = run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let all = format!("{}{}", stdout(&check), stderr(&check));
    assert!(
        all.contains("damaged") || all.contains("does not open") || all.contains("contents hash to"),
        "{what}: {all}"
    );
    if code(&restore) == 0 {
        // Only a change that this restore does not read (the end-of-archive
        // frame) may pass; what it restored must still be whole.
        util::assert_same_tree(&env.path("src"), &target.join("tree/src"));
    } else {
        let said = stderr(&restore);
        assert!(
            said.contains("damaged") || said.contains("does not open") || said.contains("cannot be read"),
            "{what}: {said}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for file in walk_all(from) {
        let rel = file.strip_prefix(from).unwrap();
        fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        fs::copy(&file, to.join(rel)).unwrap();
    }
}

/// Replaces `file` with `bytes` under the name they hash to, as an
/// attacker who can write to the store would: the name check passes, so
/// only the seal can find the change.
fn rename_to_hash(file: &Path, bytes: &[u8]) {
    let name = blake3::hash(bytes).to_hex().to_string();
    let file_name = file.file_name().unwrap().to_str().unwrap();
    let new = file.with_file_name(format!("{name}{}", &file_name[64..]));
    fs::remove_file(file).unwrap();
    fs::write(new, bytes).unwrap();
}

fn objects(repo: &Path, dir: &str) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = walk_all(&repo.join(dir));
    all.sort();
    all
}

#[test]
fn a_changed_byte_in_every_kind_of_sealed_object_is_found() {
    let env = Env::new();
    init(&env, "--encrypt");
    write(&env.path("src/a.bin"), &noise(300_000, 5));
    write(&env.path("src/b.txt"), b"small file");
    env.backup(&[&env.path("src")]);
    for dir in ["packs", "index", "snapshots"] {
        for at in ["start", "middle", "end"] {
            // Flipped in place: the name no longer matches.
            assert_found(&env, &format!("{dir}-{at}-flipped"), |repo| {
                let file = &objects(repo, dir)[0];
                let len = fs::metadata(file).unwrap().len() as usize;
                let pos = match at {
                    "start" => 40,
                    "middle" => len / 2,
                    _ => len - 1,
                };
                util::flip_byte(file, pos);
            });
            if dir == "packs" {
                // Index entries name the pack: a renamed one is only
                // missing. Frames are read by range, unchecked by the
                // pack's name: the flip above already tested their seal.
                continue;
            }
            // Flipped and renamed to its new hash: only the seal finds it.
            assert_found(&env, &format!("{dir}-{at}-renamed"), |repo| {
                let file = objects(repo, dir)[0].clone();
                let mut bytes = fs::read(&file).unwrap();
                let pos = match at {
                    "start" => 40,
                    "middle" => bytes.len() / 2,
                    _ => bytes.len() - 1,
                };
                bytes[pos] ^= 0x01;
                rename_to_hash(&file, &bytes);
            });
        }
    }
}

#[test]
fn objects_swapped_or_moved_between_kinds_are_found() {
    let env = Env::new();
    init(&env, "--encrypt");
    write(&env.path("src/a.txt"), b"first");
    env.backup(&[&env.path("src")]);
    write(&env.path("src/a.txt"), b"second");
    env.backup(&[&env.path("src")]);
    // Two records' contents swapped: neither name matches.
    assert_found(&env, "swapped-records", |repo| {
        let records = objects(repo, "snapshots");
        let (a, b) = (fs::read(&records[0]).unwrap(), fs::read(&records[1]).unwrap());
        fs::write(&records[0], b).unwrap();
        fs::write(&records[1], a).unwrap();
    });
    // An index file put among the records, under its own hash: the name
    // checks, the domain does not (and the index file is gone).
    assert_found(&env, "index-as-record", |repo| {
        let index = objects(repo, "index")[0].clone();
        let bytes = fs::read(&index).unwrap();
        let name = blake3::hash(&bytes).to_hex().to_string();
        fs::write(repo.join("snapshots").join(format!("{name}.json")), &bytes).unwrap();
    });
    // A pack's frames moved: what an entry points at is not its frame.
    assert_found(&env, "frame-moved", |repo| {
        for pack in objects(repo, "packs") {
            let mut bytes = fs::read(&pack).unwrap();
            bytes.rotate_left(100);
            fs::write(&pack, bytes).unwrap();
        }
    });
}

#[test]
fn an_index_entry_pointed_at_another_blob_is_found() {
    use cairn::repo::index::IndexFile;
    let env = Env::new();
    init(&env, "--encrypt");
    write(&env.path("src/a.txt"), b"the first file's bytes");
    write(&env.path("src/b.txt"), b"the second file, other bytes");
    env.backup(&[&env.path("src")]);
    let repo = util::open_local(&env.repo);
    let names: Vec<String> = objects(&env.repo, "index")
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap()[..64].to_string())
        .collect();
    let mut file: IndexFile = repo.read_index_file(&names[0]).unwrap();
    // Every blob's entry takes the place of the next one's.
    let blobs = &mut file.packs[0].blobs;
    let first = blobs[0];
    let n = blobs.len();
    for i in 0..n - 1 {
        let next = blobs[i + 1];
        blobs[i] = cairn::repo::index::IndexBlob {
            id: blobs[i].id,
            ..next
        };
    }
    blobs[n - 1] = cairn::repo::index::IndexBlob {
        id: blobs[n - 1].id,
        ..first
    };
    repo.write_index_file(&file).unwrap();
    fs::remove_file(env.repo.join("index").join(format!("{}.json.zst", names[0]))).unwrap();
    let out = env.run(&["check", "--read-data"]);
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    let target = env.path("out");
    let restore = env.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_ne!(code(&restore), 0, "a wrong blob was restored");
    assert!(stderr(&restore).contains("wrong hash"), "{}", stderr(&restore));
}

#[test]
fn a_wrong_or_missing_password_fails_fast_and_touches_nothing() {
    let env = encrypted_with_a_backup();
    let before = util::file_hashes(&env.repo);
    let wrong = env
        .cmd()
        .env("CAIRN_PASSWORD", "not it")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_eq!(code(&wrong), 12, "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("wrong password"), "{}", stderr(&wrong));
    assert_eq!(stderr(&wrong).trim().lines().count(), 1, "{}", stderr(&wrong));
    let missing = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .args(["backup", env.path("src").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&missing), 12, "{}", stderr(&missing));
    for way in [
        "CAIRN_PASSWORD_FILE",
        "CAIRN_PASSWORD",
        "--password-command",
        "terminal",
    ] {
        assert!(stderr(&missing).contains(way), "{way}: {}", stderr(&missing));
    }
    assert_eq!(
        util::file_hashes(&env.repo),
        before,
        "a failed open changed the repository"
    );
    // The other sources.
    let file = env.path("pw");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let from_file = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .env("CAIRN_PASSWORD_FILE", &file)
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_eq!(code(&from_file), 0, "{}", stderr(&from_file));
    let from_command = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .args([
            "--password-command",
            &format!("cat {}", file.display()),
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&from_command), 0, "{}", stderr(&from_command));
    let failing = env
        .cmd()
        .env_remove("CAIRN_PASSWORD")
        .args(["--password-command", "echo nope >&2; exit 3", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(code(&failing), 12, "{}", stderr(&failing));
    assert!(stderr(&failing).contains("nope"), "{}", stderr(&failing));
}

#[test]
fn keys_are_added_listed_changed_and_removed_but_never_the_last() {
    let env = encrypted_with_a_backup();
    let with = |password: &str, args: &[&str]| {
        env.cmd()
            .env("CAIRN_PASSWORD", password)
            .args(args)
            .output()
            .unwrap()
    };
    let add = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "second password")
        .args(["key", "add"])
        .output()
        .unwrap();
    assert_eq!(code(&add), 0, "{}", stderr(&add));
    let keys = env.json(&["key", "list"]);
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["current"] == true).count(), 1);
    assert_eq!(keys[0]["host"], cairn::repo::lock::hostname());
    assert_eq!(code(&with("second password", &["snapshots"])), 0);
    // Remove the first key, opened with the second.
    let first = keys.iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let own = with(PASSWORD, &["key", "remove", &first[..8]]);
    assert_ne!(code(&own), 0, "removed the key it was opened with");
    let removed = with("second password", &["key", "remove", &first[..8]]);
    assert_eq!(code(&removed), 0, "{}", stderr(&removed));
    let old = with(PASSWORD, &["snapshots"]);
    assert_eq!(code(&old), 12, "a removed key still opens: {}", stderr(&old));
    // The last key stays.
    let last = with("second password", &["key", "list", "--json"]);
    let last: serde_json::Value = serde_json::from_slice(&last.stdout).unwrap();
    let last_id = last[0]["id"].as_str().unwrap().to_string();
    let gone = env
        .cmd()
        .env("CAIRN_PASSWORD", "second password")
        .args(["key", "remove", &last_id])
        .output()
        .unwrap();
    assert_ne!(code(&gone), 0);
    // passwd: the new password opens, the old one does not.
    let passwd = env
        .cmd()
        .env("CAIRN_PASSWORD", "second password")
        .env("CAIRN_NEW_PASSWORD", "third password")
        .args(["key", "passwd"])
        .output()
        .unwrap();
    assert_eq!(code(&passwd), 0, "{}", stderr(&passwd));
    assert_eq!(code(&with("second password", &["snapshots"])), 12);
    let out = with("third password", &["check", "--read-data"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(objects(&env.repo, "keys").len(), 1);
}

#[test]
fn a_replaced_config_or_a_plain_config_beside_keys_is_refused() {
    let env = Env::new();
    init(&env, "--encrypt");
    let config = env.repo.join("config.json");
    let text = fs::read_to_string(&config).unwrap();
    // Another frame target: the repository would work, but differently.
    fs::write(
        &config,
        text.replace("\"frame_target\": 1048576", "\"frame_target\": 524288"),
    )
    .unwrap();
    let out = env.run(&["snapshots"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("replaced"), "{}", stderr(&out));
    // Made plain: cairn must not write data in clear beside the keys.
    let plain = text.replace("\"version\": 2", "\"version\": 1").replace(
        ",\n  \"encryption\": {\n    \"algorithm\": \"xchacha20-poly1305\",\n    \"kdf\": \"argon2id\"\n  }",
        "",
    );
    assert!(!plain.contains("encryption"), "{plain}");
    fs::write(&config, plain).unwrap();
    write(&env.path("src/a.txt"), b"secret");
    let out = env.run(&["backup", env.path("src").to_str().unwrap()]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("replaced"), "{}", stderr(&out));
    assert!(objects(&env.repo, "packs").is_empty());
}

#[test]
fn a_profile_that_says_encrypt_makes_an_encrypted_repository_and_refuses_a_plain_one() {
    let env = Env::new();
    write(&env.path("data/a.txt"), b"a");
    let profile = env.path("p.toml");
    let sink = env.path("backups");
    fs::write(
        &profile,
        format!(
            "[[sink]]\nkind = \"local\"\npath = \"{}\"\nencrypt = true\n[[collector]]\nkind = \"tree\"\nname = \"data\"\npath = \"{}\"\n",
            sink.display(),
            env.path("data").display()
        ),
    )
    .unwrap();
    let backup = || {
        env.cmd_without_repo()
            .args(["backup", "--profile", profile.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = backup();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("created encrypted"), "{}", stderr(&out));
    let config = fs::read_to_string(sink.join("config.json")).unwrap();
    assert!(config.contains("xchacha20-poly1305"), "{config}");
    // A plain repository in its place is not written to.
    fs::remove_dir_all(&sink).unwrap();
    let out = env
        .cmd_without_repo()
        .arg("--repo")
        .arg(&sink)
        .args(["init", "--no-encrypt"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = backup();
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("encrypt = true"), "{}", stderr(&out));
    assert!(objects(&sink, "snapshots").is_empty());
}

#[test]
fn the_chunker_and_blob_ids_of_an_encrypted_repository_are_its_own() {
    // The same data in two encrypted repositories: no pack, index or
    // record in common, and no blob id either.
    let env = Env::new();
    write(&env.path("src/big.bin"), &noise(5 << 20, 9));
    let other = env.path("other");
    init(&env, "--encrypt");
    env.ok(&["backup", env.path("src").to_str().unwrap()]);
    let out = env
        .cmd_without_repo()
        .arg("--repo")
        .arg(&other)
        .args(["init", "--encrypt"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    let out = env
        .cmd_without_repo()
        .arg("--repo")
        .arg(&other)
        .args(["backup", env.path("src").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let a = util::open_local(&env.repo).load_index().unwrap();
    let b = util::open_local(&other).load_index().unwrap();
    let ids_a: Vec<_> = a.blob_ids().collect();
    assert!(ids_a.len() >= 3, "5 MiB in 1 MiB chunks");
    assert!(
        ids_a.iter().all(|id| b.get(id).is_none()),
        "a blob id is the same in both"
    );
    let names = |r: &Path| {
        repo_files(r)
            .into_iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (na, nb) = (names(&env.repo), names(&other));
    assert!(na
        .iter()
        .filter(|n| n.to_str().unwrap().len() > 60)
        .all(|n| !nb.contains(n)));
}

#[test]
fn copy_goes_from_plain_to_encrypted_and_back_and_export_writes_plain_tar_zst() {
    let env = Env::new();
    init(&env, "--no-encrypt");
    write(&env.path("src/big.bin"), &noise(3 << 20, 4));
    write(&env.path("src/small.txt"), b"small and plain");
    env.backup(&[&env.path("src")]);
    write(&env.path("src/small.txt"), b"changed");
    env.backup(&[&env.path("src")]);
    let sealed = env.path("sealed");
    let back = env.path("back");
    let at = |repo: &Path, args: &[&str]| {
        let out = env
            .cmd_without_repo()
            .arg("--repo")
            .arg(repo)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    at(&sealed, &["init", "--encrypt"]);
    at(&back, &["init", "--no-encrypt"]);
    let repo = env.repo.to_str().unwrap().to_string();
    let first: serde_json::Value = serde_json::from_str(&at(
        &env.repo,
        &["copy", "--all", "--to", sealed.to_str().unwrap(), "--json"],
    ))
    .unwrap();
    assert_eq!(first["copied"].as_array().unwrap().len(), 2, "{first}");
    // Again: nothing to copy.
    let again: serde_json::Value = serde_json::from_str(&at(
        &env.repo,
        &["copy", "--all", "--to", sealed.to_str().unwrap(), "--json"],
    ))
    .unwrap();
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["present"].as_array().unwrap().len(), 2, "{again}");
    at(&sealed, &["check", "--read-data"]);
    let listed: serde_json::Value = serde_json::from_str(&at(&sealed, &["snapshots", "--json"])).unwrap();
    let copies = listed.as_array().unwrap();
    assert!(copies.iter().all(|s| s["copied_from"].is_string()), "{listed}");
    assert!(
        copies[1]["parent"] == copies[0]["id"],
        "the parent is the copy's: {listed}"
    );
    // Back into a plain repository, and restored byte for byte.
    at(&sealed, &["copy", "--all", "--to", back.to_str().unwrap()]);
    at(&back, &["check", "--read-data"]);
    let out = env.path("out");
    at(&back, &["restore", "latest", "--target", out.to_str().unwrap()]);
    util::assert_same_tree(&env.path("src"), &out.join("tree/src"));
    // Copying the copies back to where they came from finds them there.
    let home: serde_json::Value =
        serde_json::from_str(&at(&sealed, &["copy", "--all", "--to", &repo, "--json"])).unwrap();
    assert_eq!(home["copied"].as_array().unwrap().len(), 0, "{home}");
    // Export from the encrypted repository: a plain .tar.zst.
    let tarball = env.path("snap.tar.zst");
    at(
        &sealed,
        &["export", "latest", "--output", tarball.to_str().unwrap()],
    );
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc {} | tar -t", tarball.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("small.txt"),
        "{}",
        stderr(&listing)
    );
}

fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A scheduled job has no terminal and no password in its environment: it
/// finds the unlock key `key store` put in the OS credential store (here
/// Secret Service: gnome-keyring on a private session bus). Changing the
/// password revokes it.
#[test]
fn an_unlock_key_in_the_os_credential_store_opens_the_repository_unattended() {
    if !["secret-tool", "gnome-keyring-daemon", "dbus-run-session"]
        .iter()
        .all(|p| have(p))
    {
        util::skip("needs secret-tool, gnome-keyring and dbus-run-session (CI installs them)");
        return;
    }
    let env = encrypted_with_a_backup();
    let script = r#"
        set -u
        printf 'keyring password' | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1
        # The daemon makes its login collection after it returns: wait for it.
        for i in $(seq 100); do
            printf x | secret-tool store --label probe probe ready 2>/dev/null && break
            sleep 0.1
        done
        job() { "$0" --repo "$REPO" schedule install --profile job --every daily --backend cron --dry-run; }
        job >/dev/null 2>"$OUT/before.txt" || exit 19
        "$0" --repo "$REPO" key store || exit 20
        secret-tool lookup service cairn repository "$REPO" >"$OUT/secret.txt"
        job >/dev/null 2>"$OUT/stored.txt" || exit 23
        PASSWORD=$CAIRN_PASSWORD
        unset CAIRN_PASSWORD
        "$0" --repo "$REPO" snapshots --json >"$OUT/found.json" || exit 21
        # A new password revokes the stored unlock key.
        CAIRN_PASSWORD=$PASSWORD CAIRN_NEW_PASSWORD=another "$0" --repo "$REPO" key passwd || exit 24
        "$0" --repo "$REPO" snapshots >/dev/null 2>"$OUT/revoked.txt"
        echo "$?" >"$OUT/revoked.code"
        CAIRN_PASSWORD=another "$0" --repo "$REPO" key store || exit 25
        "$0" --repo "$REPO" snapshots --json >/dev/null || exit 26
        "$0" --repo "$REPO" key store --remove || exit 22
        "$0" --repo "$REPO" snapshots >/dev/null 2>"$OUT/after.txt"
        echo "$?" >"$OUT/after.code"
    "#;
    let base = env.cmd_without_repo();
    let mut cmd = std::process::Command::new("dbus-run-session");
    cmd.args(["--", "sh", "-c", script, util::BIN]);
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let home = env.path("home");
    write(
        &home.join("config/cairn/profiles/job.toml"),
        format!(
            "[[collector]]\nkind = \"tree\"\nname = \"src\"\npath = \"{}\"\n",
            env.path("src").display()
        )
        .as_bytes(),
    );
    let out = cmd
        .env("REPO", &env.repo)
        .env("OUT", env.dir.path())
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let found: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path("found.json")).unwrap()).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    // A scheduled job has no terminal: installing one says where its
    // password must be, until it is there.
    let before = fs::read_to_string(env.path("before.txt")).unwrap();
    assert!(
        before.contains("runs unattended") && before.contains("key store"),
        "{before}"
    );
    let stored = fs::read_to_string(env.path("stored.txt")).unwrap();
    assert!(!stored.contains("unattended"), "{stored}");
    // The store holds an unlock key for one key file, never the password.
    let secret = fs::read_to_string(env.path("secret.txt")).unwrap();
    assert!(secret.starts_with("cairn-unlock-v1 "), "{secret}");
    assert!(!secret.contains(util::PASSWORD), "{secret}");
    assert_eq!(fs::read_to_string(env.path("revoked.code")).unwrap().trim(), "12");
    let revoked = fs::read_to_string(env.path("revoked.txt")).unwrap();
    assert!(
        revoked.contains("no longer opens it") || revoked.contains("which is gone"),
        "{revoked}"
    );
    // Removed: nothing opens it now.
    assert_eq!(fs::read_to_string(env.path("after.code")).unwrap().trim(), "12");
    let said = fs::read_to_string(env.path("after.txt")).unwrap();
    assert!(said.contains("cairn key store"), "{said}");
}

#[test]
fn a_damaged_key_file_is_named_by_check_and_the_other_key_still_opens() {
    let env = Env::new();
    init(&env, "--encrypt");
    let add = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "spare")
        .args(["key", "add"])
        .output()
        .unwrap();
    assert_eq!(code(&add), 0, "{}", stderr(&add));
    let keys = env.json(&["key", "list"]);
    let current = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    util::flip_byte(&env.repo.join("keys").join(format!("{current}.json")), 20);
    let opened = env.run(&["snapshots"]);
    assert_eq!(
        code(&opened),
        12,
        "the damaged key still opened: {}",
        stderr(&opened)
    );
    let check = env
        .cmd()
        .env("CAIRN_PASSWORD", "spare")
        .args(["check"])
        .output()
        .unwrap();
    assert_eq!(code(&check), 1, "{}", stderr(&check));
    let said = format!("{}{}", stdout(&check), stderr(&check));
    assert!(
        said.contains(&format!("key {current}")) && said.contains("cairn key remove"),
        "{said}"
    );
    // With only that key, the repository cannot be opened, and says why.
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "spare")
        .args(["key", "remove", &current[..8]])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let spare: Vec<PathBuf> = objects(&env.repo, "keys");
    util::flip_byte(&spare[0], 20);
    let out = env
        .cmd()
        .env("CAIRN_PASSWORD", "spare")
        .args(["snapshots"])
        .output()
        .unwrap();
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("no key file that can be read"),
        "{}",
        stderr(&out)
    );
}

/// Two `init`s racing on one bucket: the loser's key (same password,
/// another config) stayed beside the winner's, and an unlock that met it
/// first called the config replaced.
#[test]
fn a_stray_key_for_another_config_made_the_repository_unopenable() {
    use cairn::repo::keys::{make_key_file, KdfParams, KeyInfo, Password};
    let env = encrypted_with_a_backup();
    let params = KdfParams {
        algorithm: "argon2id".into(),
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
        salt: "00".repeat(32),
    };
    let info = KeyInfo {
        created: chrono::Local::now().fixed_offset(),
        host: "loser".into(),
        user: "x".into(),
    };
    let other_config = cairn::repo::id::ObjectId::of(b"the losing init's config.json");
    let master = cairn::repo::crypto::Secret([3; 32]);
    let password = Password::new(PASSWORD.as_bytes().to_vec());
    // Several, so that one is listed before the right key whatever the order.
    let mut strays = Vec::new();
    for n in 0..4u8 {
        let mut salted = params.clone();
        salted.salt = format!("{n:02x}").repeat(32);
        let (name, bytes) = make_key_file(&master, &other_config, &password, salted, &info).unwrap();
        let path = env.repo.join("keys").join(format!("{name}.json"));
        fs::write(&path, bytes).unwrap();
        strays.push(path);
    }
    let out = env.run(&["snapshots"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Only keys for another config: that config was replaced.
    let mine = objects(&env.repo, "keys")
        .into_iter()
        .find(|p| !strays.contains(p))
        .unwrap();
    fs::remove_file(mine).unwrap();
    let out = env.run(&["snapshots"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("replaced"), "{}", stderr(&out));
}

/// The password variables reached every command cairn started: a hook,
/// a command collector, or `cairn run`'s command could read or record them.
#[test]
fn the_password_was_passed_on_to_the_commands_cairn_runs() {
    let env = Env::new();
    init(&env, "--encrypt");
    write(&env.path("src/a.txt"), b"a");
    let seen = env.path("seen");
    let out = env
        .cmd()
        .env("CAIRN_NEW_PASSWORD", "another")
        .args([
            "run",
            env.path("src").to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &format!(
                "echo \"${{CAIRN_PASSWORD:-none}} ${{CAIRN_NEW_PASSWORD:-none}}\" > {}",
                seen.display()
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&seen).unwrap().trim(), "none none");
    let profile = env.path("p.toml");
    fs::write(
        &profile,
        format!(
            "[[collector]]\nkind = \"command\"\nname = \"probe\"\nargv = [\"sh\", \"-c\", \"echo probe=${{CAIRN_PASSWORD:-none}}\"]\n\
             [[collector]]\nkind = \"tree\"\nname = \"data\"\npath = \"{}\"\n\
             [hooks]\nbefore = [\"echo hook=${{CAIRN_PASSWORD:-none}} > {}\"]\n",
            env.path("src").display(),
            env.path("hook").display()
        ),
    )
    .unwrap();
    let out = env.run(&["backup", "--profile", profile.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read_to_string(env.path("hook")).unwrap().trim(), "hook=none");
    let restored = env.path("out");
    env.ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    let recorded: String = walk_all(&restored)
        .iter()
        .map(|p| fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(
        recorded.contains("probe=none") && !recorded.contains(PASSWORD),
        "{recorded}"
    );
}

/// A host with no credential store (a server, a CI runner) keeps the
/// unlock key in a file that cron jobs name with CAIRN_UNLOCK_KEY_FILE:
/// it opens the repository without a password until its key changes.
#[test]
fn an_unlock_key_file_opens_the_repository_until_its_key_changes() {
    let env = encrypted_with_a_backup();
    let file = env.path("unlock.key");
    let file_arg = file.to_str().unwrap();
    env.ok(&["key", "store", "--file", file_arg]);
    let secret = fs::read_to_string(&file).unwrap();
    assert!(secret.starts_with("cairn-unlock-v1 "), "{secret}");
    assert!(!secret.contains(PASSWORD), "{secret}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let keyed = |key_file: &Path, args: &[&str]| {
        env.cmd()
            .env_remove("CAIRN_PASSWORD")
            .env("CAIRN_UNLOCK_KEY_FILE", key_file)
            .args(args)
            .output()
            .unwrap()
    };
    let out = env.path("out");
    let restore = keyed(&file, &["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(code(&restore), 0, "{}", stderr(&restore));
    assert_eq!(code(&keyed(&file, &["check", "--read-data"])), 0);
    // Anything else in the file: named, and no password is found.
    let garbage = env.path("garbage.key");
    write(&garbage, b"correct horse battery staple\n");
    let refused = keyed(&garbage, &["snapshots"]);
    assert_eq!(code(&refused), 12);
    assert!(
        stderr(&refused).contains("not an unlock key"),
        "{}",
        stderr(&refused)
    );
    // A given password wins over the file, so `passwd` replaces the
    // password's key, and that revokes the file.
    let passwd = env
        .cmd()
        .env("CAIRN_UNLOCK_KEY_FILE", &file)
        .env("CAIRN_NEW_PASSWORD", "another")
        .args(["key", "passwd"])
        .output()
        .unwrap();
    assert_eq!(code(&passwd), 0, "{}", stderr(&passwd));
    let revoked = keyed(&file, &["snapshots"]);
    assert_eq!(code(&revoked), 12);
    assert!(stderr(&revoked).contains("which is gone"), "{}", stderr(&revoked));
    let again = env
        .cmd()
        .env("CAIRN_PASSWORD", "another")
        .args(["key", "store", "--file", file_arg])
        .output()
        .unwrap();
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(code(&keyed(&file, &["snapshots"])), 0);
    let removed = env
        .cmd()
        .env("CAIRN_PASSWORD", "another")
        .args(["key", "store", "--remove", "--file", file_arg])
        .output()
        .unwrap();
    assert_eq!(code(&removed), 0, "{}", stderr(&removed));
    assert!(!file.exists());
}
