//! The behaviour every sink must have, written once and run against each one
//! (as restic's `internal/backend/test` is). Call [`run`] on an empty sink.

use std::io::{self, Read};

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
    failed_write_leaves_nothing(sink);
    invalid_names_are_refused(sink);
    config_object(sink);
    many_packs_are_listed(sink);
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

/// Yields some bytes, then fails, like a source that breaks mid-upload.
struct BrokenReader(usize);

impl Read for BrokenReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("source broke"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(7);
        self.0 -= n;
        Ok(n)
    }
}

fn failed_write_leaves_nothing(sink: &dyn Sink) {
    let err = sink.write(ObjectKind::Pack, "beef", &mut BrokenReader(100_000));
    assert!(err.is_err(), "failed_write: a broken source must fail the write");
    assert!(
        names(sink, ObjectKind::Pack).is_empty(),
        "failed_write: half an object is listed"
    );
    assert!(sink
        .read(ObjectKind::Pack, "beef")
        .expect_err("read")
        .is_not_found());
    sink.write_bytes(ObjectKind::Pack, "beef", b"whole")
        .expect("failed_write: retry");
    assert_eq!(sink.read(ObjectKind::Pack, "beef").expect("read"), b"whole");
    sink.delete(ObjectKind::Pack, "beef").expect("delete");
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
