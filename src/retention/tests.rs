use super::*;
use crate::repo::snapshot::SnapshotRecord;

fn snap(n: u8, time: &str, host: &str, profile: &str, extra: serde_json::Value) -> Snapshot {
    let mut record = serde_json::json!({
        "version": 1,
        "time": time,
        "host": host,
        "user": "u",
        "profile": profile,
        "roots": [],
        "manifest": [],
        "stats": {},
        "tool_version": "test",
    });
    if let (Some(r), Some(e)) = (record.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    let record: SnapshotRecord = serde_json::from_value(record).expect("record");
    Snapshot {
        id: ObjectId::of(&[n]),
        record,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

#[test]
fn group_by_parses_and_refuses_unknown_keys() {
    assert_eq!("host,profile".parse::<GroupBy>(), Ok(GroupBy::default()));
    let none: GroupBy = "none".parse().expect("none");
    assert!(!none.host && !none.profile && !none.paths && !none.tags);
    assert!("host,colour".parse::<GroupBy>().is_err());
}

#[test]
fn the_policy_applies_per_group() {
    let all = vec![
        snap(1, "2024-01-01T10:00:00Z", "a", "go", serde_json::json!({})),
        snap(2, "2024-01-02T10:00:00Z", "a", "go", serde_json::json!({})),
        snap(3, "2024-01-01T10:00:00Z", "b", "go", serde_json::json!({})),
        snap(4, "2024-01-02T10:00:00Z", "b", "go", serde_json::json!({})),
    ];
    let policy = Policy {
        last: 1,
        ..Policy::default()
    };
    let plans = plan(&all, &all, &policy, GroupBy::default(), now());
    assert_eq!(plans.len(), 2);
    for p in &plans {
        assert_eq!(p.keep.len(), 1);
        assert_eq!(p.remove.len(), 1);
        assert!(p.keep[0].0.record.time > p.remove[0].record.time);
    }
    let one = plan(&all, &all, &policy, "none".parse().expect("none"), now());
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].keep.len(), 1);
    assert_eq!(one[0].remove.len(), 3);
}

#[test]
fn a_run_pair_and_a_restore_with_its_safety_snapshot_stay_together() {
    let pre = serde_json::json!({"run": {"pair": "p1", "role": "pre", "command": ["x"]}});
    let post = serde_json::json!({"run": {"pair": "p1", "role": "post", "command": ["x"]}});
    let restored = ObjectId::of(&[3]).to_hex();
    let safety = serde_json::json!({
        "tags": ["pre-restore"],
        "rollback": {"restores": restored, "transaction": "t"},
    });
    let all = vec![
        snap(1, "2024-01-01T10:00:00Z", "a", "go", pre),
        snap(2, "2024-01-05T10:00:00Z", "a", "go", post),
        snap(3, "2024-01-02T10:00:00Z", "a", "go", serde_json::json!({})),
        snap(4, "2024-01-03T10:00:00Z", "a", "go", serde_json::json!({})),
        snap(5, "2024-01-04T10:00:00Z", "a", "go", safety),
    ];
    // The newest (a post) and the restored snapshot are kept by policy...
    let policy = Policy {
        last: 1,
        tags: vec![vec!["keep".into()]],
        ..Policy::default()
    };
    let mut with_tag = all.clone();
    with_tag[2].record.tags = vec!["keep".into()];
    let plans = plan(&with_tag, &with_tag, &policy, GroupBy::default(), now());
    let kept: Vec<u8> = plans[0]
        .keep
        .iter()
        .map(|(s, _)| (1..=5).find(|n| ObjectId::of(&[*n]) == s.id).unwrap_or(0))
        .collect();
    // ...so their partners are too: the pre of the post, the safety
    // snapshot of the restored one. Only 4 goes.
    assert_eq!(kept, vec![2, 5, 3, 1]);
    assert_eq!(plans[0].remove.len(), 1);
    assert_eq!(plans[0].remove[0].id, ObjectId::of(&[4]));
    let reasons = &plans[0].keep[3].1;
    assert!(reasons[0].starts_with("kept together with"), "{reasons:?}");
    // A partner not considered at all (another host filtered out) still
    // holds the one considered.
    let partners = partners(&all);
    assert_eq!(partners[&ObjectId::of(&[1])], vec![ObjectId::of(&[2])]);
    assert_eq!(partners[&ObjectId::of(&[5])], vec![ObjectId::of(&[3])]);
    assert!(!partners.contains_key(&ObjectId::of(&[4])));
}
