//! Every sink passes the same conformance suite.

use cairn::sink::conformance;
use cairn::sink::{LocalSink, ObjectKind, Sink};

use crate::util::*;

#[test]
fn local_sink_conformance() {
    let env = Env::new();
    conformance::run(&LocalSink::new(env.path("store")));
}

#[test]
fn local_sink_ignores_leftover_temporary_files() {
    let env = Env::new();
    let sink = LocalSink::new(env.path("store"));
    sink.write_bytes(ObjectKind::Pack, "aabb", b"real").unwrap();
    // What a write killed before its rename leaves behind.
    write(&env.path("store/packs/aa/.tmp-aacc-0123456789abcdef"), b"half");
    write(&env.path("store/snapshots/.tmp-0011-0123456789abcdef"), b"half");
    let packs: Vec<String> = sink
        .list(ObjectKind::Pack)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(packs, ["aabb"]);
    assert!(sink.list(ObjectKind::Snapshot).unwrap().is_empty());
}
