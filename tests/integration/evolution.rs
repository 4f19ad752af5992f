//! Format evolution (FORMAT.md, section 14): a snapshot record with fields
//! this cairn does not know is read, one of a newer record version refused.

use std::fs;
use std::path::PathBuf;

use cairn::repo::id::ObjectId;

use crate::util::*;

/// Rewrites the only snapshot record with `change` applied to its JSON,
/// under its new name; returns the new id.
fn rewrite_record(env: &Env, change: impl Fn(&mut serde_json::Value)) -> String {
    let dir = env.repo.join("snapshots");
    let files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("snapshots dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1);
    let domain = cairn::repo::crypto::Domain::Snapshot;
    let plain = opened(&env.repo, domain, fs::read(&files[0]).expect("read"));
    let mut record: serde_json::Value = serde_json::from_slice(&plain).expect("json");
    change(&mut record);
    let bytes = stored(
        &env.repo,
        domain,
        serde_json::to_vec_pretty(&record).expect("json"),
    );
    let id = ObjectId::of(&bytes).to_hex();
    fs::write(dir.join(format!("{id}.json")), &bytes).expect("write");
    fs::remove_file(&files[0]).expect("remove old");
    id
}

#[test]
fn a_record_with_fields_from_a_newer_cairn_is_read_and_a_newer_version_refused() {
    let env = Env::with_repo();
    let src = env.path("src");
    write(&src.join("a"), b"hello");
    env.backup(&[&src]);
    let id = rewrite_record(&env, |r| {
        r["added_by_a_later_cairn"] = serde_json::json!({"anything": [1, 2]});
        r["roots"][0]["also_new"] = serde_json::json!(true);
    });
    let list = env.json(&["snapshots"]);
    assert_eq!(list[0]["id"], id.as_str());
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().expect("utf-8")]);
    assert_eq!(fs::read(target.join("tree/src/a")).expect("restored"), b"hello");
    env.ok(&["check", "--read-data"]);

    rewrite_record(&env, |r| r["version"] = serde_json::json!(2));
    // Passed over with a warning, never acted on.
    let out = env.run(&["snapshots", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[]");
    assert!(
        stderr(&out).contains("written by a newer cairn (record version 2)"),
        "{}",
        stderr(&out)
    );
    // Prune cannot tell what such a snapshot uses: it changes nothing.
    let out = env.run(&["prune"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}
