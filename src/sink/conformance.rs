//! The behaviour every sink must have, written once and run against each one
//! (as restic's `internal/backend/test` is). Call [`run`] on an empty sink.

use super::{ObjectKind, Sink, SinkError, CONFIG_NAME};

/// Runs every check against `sink`, which must start empty. Panics with the
/// name of the failed check.
pub fn run(sink: &dyn Sink) {
    starts_empty(sink);
    write_then_read_and_list(sink);
    second_write_is_refused(sink);
    ranged_reads(sink);
    not_found_is_its_own_kind(sink);
    delete_removes(sink);
    racing_writers_of_one_name(sink);
    invalid_names_are_refused(sink);
    config_object(sink);
    many_packs_are_listed(sink);
    listing_goes_past_a_thousand(sink);
}

fn names(sink: &dyn Sink, kind: ObjectKind) -> Vec<String> {
    let mut names: Vec<String> = sink
        .list(kind)
        .unwrap_or_else(|e| panic!("list {kind}: {e}"))
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.sort();
    names
}

fn starts_empty(sink: &dyn Sink) {
    for kind in ObjectKind::ALL {
        assert!(names(sink, kind).is_empty(), "starts_empty: {kind} not empty");
    }
}

fn write_then_read_and_list(sink: &dyn Sink) {
    for kind in [
        ObjectKind::Pack,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Lock,
    ] {
        let name = "ab01";
        let data = format!("contents of {kind}").into_bytes();
        let n = sink
            .write_bytes(kind, name, &data)
            .expect("write_then_read: write");
        assert_eq!(n, data.len() as u64, "write_then_read: size returned");
        assert_eq!(sink.read(kind, name).expect("write_then_read: read"), data);
        let listed = sink.list(kind).expect("write_then_read: list");
        assert_eq!(listed.len(), 1, "write_then_read: list {kind}");
        assert_eq!(listed[0].name, name);
        assert_eq!(listed[0].size, data.len() as u64, "write_then_read: listed size");
        sink.delete(kind, name).expect("write_then_read: delete");
    }
}

fn second_write_is_refused(sink: &dyn Sink) {
    sink.write_bytes(ObjectKind::Snapshot, "0001", b"first")
        .expect("write");
    let err = sink
        .write_bytes(ObjectKind::Snapshot, "0001", b"second")
        .expect_err("second_write: a second write of a name must fail");
    assert!(
        matches!(err, SinkError::AlreadyExists { .. }),
        "second_write: wrong error {err}"
    );
    assert_eq!(sink.read(ObjectKind::Snapshot, "0001").expect("read"), b"first");
    sink.delete(ObjectKind::Snapshot, "0001").expect("delete");
}

fn ranged_reads(sink: &dyn Sink) {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    sink.write_bytes(ObjectKind::Pack, "cafe", &data).expect("write");
    let got = sink
        .read_range(ObjectKind::Pack, "cafe", 1000, 500)
        .expect("range");
    assert_eq!(got, &data[1000..1500], "ranged_reads: middle");
    let got = sink.read_range(ObjectKind::Pack, "cafe", 0, 1).expect("range");
    assert_eq!(got, &data[..1], "ranged_reads: first byte");
    let got = sink
        .read_range(ObjectKind::Pack, "cafe", 9990, 100)
        .expect("range");
    assert_eq!(got, &data[9990..], "ranged_reads: past the end is cut short");
    sink.delete(ObjectKind::Pack, "cafe").expect("delete");
}

fn not_found_is_its_own_kind(sink: &dyn Sink) {
    let kind = ObjectKind::Index;
    assert!(sink.read(kind, "dead").expect_err("read missing").is_not_found());
    assert!(sink
        .read_range(kind, "dead", 0, 10)
        .expect_err("range missing")
        .is_not_found());
    assert!(sink
        .delete(kind, "dead")
        .expect_err("delete missing")
        .is_not_found());
}

fn delete_removes(sink: &dyn Sink) {
    sink.write_bytes(ObjectKind::Lock, "1234", b"{}").expect("write");
    sink.delete(ObjectKind::Lock, "1234").expect("delete");
    assert!(
        names(sink, ObjectKind::Lock).is_empty(),
        "delete_removes: still listed"
    );
    assert!(sink
        .read(ObjectKind::Lock, "1234")
        .expect_err("read deleted")
        .is_not_found());
}

/// Two writers of one name at once: the stored object is one of the two
/// whole, never a mix; with `exclusive_create` exactly one write succeeds.
fn racing_writers_of_one_name(sink: &dyn Sink) {
    for round in 0..4u8 {
        let name = format!("ace{round}");
        let payloads: Vec<Vec<u8>> = (0..2u8).map(|w| vec![w ^ round; 256 * 1024]).collect();
        let results: Vec<Result<u64, SinkError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = payloads
                .iter()
                .map(|p| {
                    let name = &name;
                    scope.spawn(move || sink.write_bytes(ObjectKind::Lock, name, p))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("racing_writers: writer panicked"))
                .collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(ok >= 1, "racing_writers: both writes failed: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, SinkError::AlreadyExists { .. }),
                    "racing_writers: the losing write must say the name exists: {e}"
                );
            }
        }
        if sink.capabilities().exclusive_create {
            assert_eq!(ok, 1, "racing_writers: both writers of one name succeeded");
        }
        let stored = sink.read(ObjectKind::Lock, &name).expect("racing_writers: read");
        assert!(
            payloads.contains(&stored),
            "racing_writers: the stored object is neither write whole"
        );
        sink.delete(ObjectKind::Lock, &name).expect("delete");
    }
}

fn invalid_names_are_refused(sink: &dyn Sink) {
    for name in ["", "../x", "a/b", "UPPER", "a", "x.y"] {
        let r = sink.write_bytes(ObjectKind::Pack, name, b"x");
        assert!(
            matches!(r, Err(SinkError::InvalidName { .. })),
            "invalid_names: {name:?} was accepted"
        );
    }
    assert!(names(sink, ObjectKind::Pack).is_empty());
}

fn config_object(sink: &dyn Sink) {
    sink.write_bytes(ObjectKind::Config, CONFIG_NAME, b"{\"version\":1}")
        .expect("write config");
    assert_eq!(names(sink, ObjectKind::Config), vec![CONFIG_NAME.to_string()]);
    assert!(sink.write_bytes(ObjectKind::Config, CONFIG_NAME, b"{}").is_err());
    sink.delete(ObjectKind::Config, CONFIG_NAME)
        .expect("delete config");
}

fn many_packs_are_listed(sink: &dyn Sink) {
    let mut expected = Vec::new();
    for i in 0..40u32 {
        let name = blake3::hash(&i.to_le_bytes()).to_hex().to_string();
        sink.write_bytes(ObjectKind::Pack, &name, &i.to_le_bytes())
            .expect("write");
        expected.push(name);
    }
    expected.sort();
    assert_eq!(names(sink, ObjectKind::Pack), expected, "many_packs: listing");
    for name in &expected {
        sink.delete(ObjectKind::Pack, name).expect("delete");
    }
    assert!(names(sink, ObjectKind::Pack).is_empty());
}

/// An object store lists 1,000 keys per page: the listing must follow its
/// continuation past the first page.
fn listing_goes_past_a_thousand(sink: &dyn Sink) {
    let count = 1_003u32;
    let expected: Vec<String> = (0..count).map(|i| format!("{i:08x}")).collect();
    std::thread::scope(|scope| {
        for part in expected.chunks(count as usize / 4 + 1) {
            scope.spawn(move || {
                for name in part {
                    sink.write_bytes(ObjectKind::Lock, name, b"{}").expect("write");
                }
            });
        }
    });
    assert_eq!(
        names(sink, ObjectKind::Lock),
        expected,
        "past_a_thousand: listing"
    );
    std::thread::scope(|scope| {
        for part in expected.chunks(count as usize / 4 + 1) {
            scope.spawn(move || {
                for name in part {
                    sink.delete(ObjectKind::Lock, name).expect("delete");
                }
            });
        }
    });
    assert!(names(sink, ObjectKind::Lock).is_empty());
}
