//! The policy against restic's documented semantics: hand-made cases
//! (year ends, ISO weeks, DST, equal times, tags, the future), then
//! hundreds of generated histories checked against a second, independently
//! written statement of the same rules.

use super::*;

fn t(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("time")
}

fn now() -> DateTime<Utc> {
    t("2030-01-01T00:00:00Z").with_timezone(&Utc)
}

/// The times kept (as given), newest first.
fn kept(policy: &Policy, times: &[&str], tags: &[&[&str]]) -> Vec<String> {
    let tags: Vec<Vec<String>> = (0..times.len())
        .map(|i| {
            tags.get(i)
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        })
        .collect();
    let items: Vec<Item> = times
        .iter()
        .zip(&tags)
        .map(|(s, tags)| Item { time: t(s), tags })
        .collect();
    let decisions = policy.apply(&items, now());
    let mut out: Vec<(DateTime<FixedOffset>, String)> = times
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| d.is_some())
        .map(|(s, _)| (t(s), s.to_string()))
        .collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    out.into_iter().map(|(_, s)| s).collect()
}

#[test]
fn spans_parse_as_restic_spells_them() {
    let span: Span = "1y2m3d4h".parse().expect("span");
    assert_eq!(
        span,
        Span {
            years: 1,
            months: 2,
            days: 3,
            hours: 4
        }
    );
    assert_eq!(
        "5d".parse::<Span>(),
        Ok(Span {
            days: 5,
            ..Span::default()
        })
    );
    assert_eq!(
        "2d3d".parse::<Span>(),
        Ok(Span {
            days: 3,
            ..Span::default()
        })
    );
    assert_eq!("".parse::<Span>(), Ok(Span::default()));
    assert!(matches!("5".parse::<Span>(), Err(SpanError::NoUnit(_, 5))));
    assert!(matches!("5w".parse::<Span>(), Err(SpanError::BadUnit(_, 'w'))));
    assert!(matches!("d".parse::<Span>(), Err(SpanError::NoNumber(_))));
    assert_eq!(span.to_string(), "1y2m3d4h");
}

#[test]
fn a_span_rolls_overflowing_days_into_the_next_month() {
    let month = Span {
        months: 1,
        ..Span::default()
    };
    // 31 March minus a month is "31 February": 2 March in a leap year.
    assert_eq!(
        month.before(t("2024-03-31T12:00:00+00:00")),
        Some(t("2024-03-02T12:00:00+00:00"))
    );
    assert_eq!(
        month.before(t("2023-03-31T12:00:00+00:00")),
        Some(t("2023-03-03T12:00:00+00:00"))
    );
    let mixed = Span {
        years: 1,
        days: 40,
        hours: 5,
        ..Span::default()
    };
    assert_eq!(
        mixed.before(t("2024-02-10T03:00:00+02:00")),
        Some(t("2022-12-31T22:00:00+02:00"))
    );
}

#[test]
fn keep_last_keeps_the_newest() {
    let p = Policy {
        last: 3,
        ..Policy::default()
    };
    let times = [
        "2024-01-01T10:00:00Z",
        "2024-01-05T10:00:00Z",
        "2024-01-03T10:00:00Z",
        "2024-01-04T10:00:00Z",
        "2024-01-02T10:00:00Z",
    ];
    assert_eq!(
        kept(&p, &times, &[]),
        [
            "2024-01-05T10:00:00Z",
            "2024-01-04T10:00:00Z",
            "2024-01-03T10:00:00Z"
        ]
    );
}

#[test]
fn keep_daily_keeps_the_newest_of_each_day_and_the_oldest_while_counts_remain() {
    // The example of restic's forum and documentation.
    let times = [
        "2024-05-01T08:00:00Z",
        "2024-05-02T08:00:00Z",
        "2024-05-02T11:00:00Z",
        "2024-05-04T09:00:00Z",
        "2024-05-05T10:00:00Z",
    ];
    let daily4 = Policy {
        daily: 4,
        ..Policy::default()
    };
    assert_eq!(
        kept(&daily4, &times, &[]),
        [
            "2024-05-05T10:00:00Z",
            "2024-05-04T09:00:00Z",
            "2024-05-02T11:00:00Z",
            "2024-05-01T08:00:00Z"
        ]
    );
    let within = Policy {
        within_daily: "4d".parse().expect("span"),
        ..Policy::default()
    };
    assert_eq!(
        kept(&within, &times, &[]),
        [
            "2024-05-05T10:00:00Z",
            "2024-05-04T09:00:00Z",
            "2024-05-02T11:00:00Z"
        ]
    );
    // Counts left at the oldest: it is kept besides the newest of its day.
    let times = [
        "2024-05-01T07:00:00Z",
        "2024-05-01T08:00:00Z",
        "2024-05-02T08:00:00Z",
    ];
    let daily9 = Policy {
        daily: 9,
        ..Policy::default()
    };
    assert_eq!(
        kept(&daily9, &times, &[]),
        [
            "2024-05-02T08:00:00Z",
            "2024-05-01T08:00:00Z",
            "2024-05-01T07:00:00Z"
        ]
    );
    // Counts used up before the oldest: the oldest goes.
    let daily2 = Policy {
        daily: 2,
        ..Policy::default()
    };
    assert_eq!(
        kept(&daily2, &times, &[]),
        ["2024-05-02T08:00:00Z", "2024-05-01T08:00:00Z"]
    );
}

#[test]
fn weeks_are_iso_weeks_across_the_year_end() {
    // 2020-12-31 and 2021-01-01 are both in ISO week 53 of 2020.
    let times = [
        "2020-12-30T10:00:00Z",
        "2020-12-31T10:00:00Z",
        "2021-01-01T10:00:00Z",
        "2021-01-04T10:00:00Z",
    ];
    let weekly1 = Policy {
        weekly: 1,
        ..Policy::default()
    };
    assert_eq!(kept(&weekly1, &times, &[]), ["2021-01-04T10:00:00Z"]);
    let weekly2 = Policy {
        weekly: 2,
        ..Policy::default()
    };
    assert_eq!(
        kept(&weekly2, &times, &[]),
        ["2021-01-04T10:00:00Z", "2021-01-01T10:00:00Z"]
    );
    // Yearly goes by the calendar year, not the ISO year.
    let yearly = Policy {
        yearly: 5,
        ..Policy::default()
    };
    assert_eq!(
        kept(&yearly, &times, &[]),
        [
            "2021-01-04T10:00:00Z",
            "2020-12-31T10:00:00Z",
            "2020-12-30T10:00:00Z"
        ]
    );
}

#[test]
fn days_are_counted_in_each_snapshots_own_time_zone() {
    // Across the end of summer time in Berlin: the two snapshots of
    // 27 October are one local day, though 24 hours of UTC apart differ.
    let times = [
        "2024-10-26T23:30:00+02:00",
        "2024-10-27T00:30:00+02:00",
        "2024-10-27T23:30:00+01:00",
    ];
    let daily = Policy {
        daily: 2,
        ..Policy::default()
    };
    assert_eq!(
        kept(&daily, &times, &[]),
        ["2024-10-27T23:30:00+01:00", "2024-10-26T23:30:00+02:00"]
    );
}

#[test]
fn equal_times_keep_the_first_given() {
    let times = [
        "2024-01-01T10:00:00Z",
        "2024-01-01T10:00:00Z",
        "2023-01-01T10:00:00Z",
    ];
    let p = Policy {
        last: 1,
        ..Policy::default()
    };
    let items: Vec<Item> = times
        .iter()
        .map(|s| Item {
            time: t(s),
            tags: &[],
        })
        .collect();
    let d = p.apply(&items, now());
    assert!(d[0].is_some() && d[1].is_none() && d[2].is_none(), "{d:?}");
}

#[test]
fn keep_within_counts_from_the_newest_snapshot_not_in_the_future() {
    let times = [
        "2024-03-08T12:00:00Z",
        "2024-03-08T12:00:01Z",
        "2024-03-10T12:00:00Z",
        "2031-01-01T00:00:00Z",
    ];
    let p = Policy {
        within: "2d".parse().expect("span"),
        ..Policy::default()
    };
    // Strictly after 8 March 12:00:00; the future one is newer still.
    assert_eq!(
        kept(&p, &times, &[]),
        [
            "2031-01-01T00:00:00Z",
            "2024-03-10T12:00:00Z",
            "2024-03-08T12:00:01Z"
        ]
    );
}

#[test]
fn keep_tag_lists_need_every_tag_and_any_list() {
    let times = [
        "2024-01-01T10:00:00Z",
        "2024-01-02T10:00:00Z",
        "2024-01-03T10:00:00Z",
        "2024-01-04T10:00:00Z",
    ];
    let tags: &[&[&str]] = &[&["a", "b"], &["a"], &["c"], &[]];
    let p = Policy {
        tags: vec![vec!["a".into(), "b".into()], vec!["c".into()]],
        ..Policy::default()
    };
    assert_eq!(
        kept(&p, &times, tags),
        ["2024-01-03T10:00:00Z", "2024-01-01T10:00:00Z"]
    );
}

#[test]
fn unlimited_keeps_one_per_bucket_and_the_oldest() {
    let times = [
        "2024-01-01T08:00:00Z",
        "2024-01-01T09:00:00Z",
        "2024-01-02T09:00:00Z",
        "2024-01-02T10:00:00Z",
    ];
    let p = Policy {
        daily: -1,
        ..Policy::default()
    };
    assert_eq!(
        kept(&p, &times, &[]),
        [
            "2024-01-02T10:00:00Z",
            "2024-01-01T09:00:00Z",
            "2024-01-01T08:00:00Z"
        ]
    );
}

#[test]
fn an_empty_policy_keeps_everything() {
    let p = Policy::default();
    assert!(p.is_empty());
    let items = [Item {
        time: t("2024-01-01T10:00:00Z"),
        tags: &[],
    }];
    assert_eq!(
        p.apply(&items, now()),
        vec![Some(vec!["policy is empty".to_string()])]
    );
}

/// A small deterministic generator (xorshift), so failures repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The rules stated a second way: per rule, the set it keeps; kept is
/// their union. A bucket rule of N keeps the newest snapshot of each of
/// the N newest buckets, and the oldest snapshot when there are fewer than
/// N buckets (or N is -1).
fn reference(policy: &Policy, items: &[Item], now: DateTime<Utc>) -> Vec<bool> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*b].time.cmp(&items[*a].time));
    let mut keep = vec![false; items.len()];
    let newest = items.iter().map(|i| i.time).filter(|t| *t < now).max();
    let inside = |span: &Span, time: DateTime<FixedOffset>| match newest.and_then(|n| span.before(n)) {
        Some(start) => time > start,
        None => true,
    };
    let key = |bucket: Bucket, i: usize, nr: usize| bucket.of(&items[i].time, nr);
    let rules = [
        (policy.last, Bucket::Each),
        (policy.hourly, Bucket::Hour),
        (policy.daily, Bucket::Day),
        (policy.weekly, Bucket::Week),
        (policy.monthly, Bucket::Month),
        (policy.yearly, Bucket::Year),
    ];
    for (count, bucket) in rules.into_iter().filter(|(c, _)| *c != 0) {
        let mut buckets: Vec<(i64, usize)> = Vec::new();
        for (nr, &i) in order.iter().enumerate() {
            let k = key(bucket, i, nr);
            if buckets.last().map(|b| b.0) != Some(k) {
                buckets.push((k, i));
            }
        }
        let n = if count < 0 {
            buckets.len()
        } else {
            (count as usize).min(buckets.len())
        };
        for (_, i) in &buckets[..n] {
            keep[*i] = true;
        }
        if count < 0 || (buckets.len() as i64) < count {
            if let Some(&oldest) = order.last() {
                keep[oldest] = true;
            }
        }
    }
    let spans = [
        (policy.within_hourly, Bucket::Hour),
        (policy.within_daily, Bucket::Day),
        (policy.within_weekly, Bucket::Week),
        (policy.within_monthly, Bucket::Month),
        (policy.within_yearly, Bucket::Year),
    ];
    for (span, bucket) in spans.into_iter().filter(|(s, _)| !s.is_zero()) {
        let mut last = None;
        for (nr, &i) in order.iter().enumerate() {
            if inside(&span, items[i].time) && last != Some(key(bucket, i, nr)) {
                last = Some(key(bucket, i, nr));
                keep[i] = true;
            }
        }
    }
    for (i, item) in items.iter().enumerate() {
        if !policy.within.is_zero() && inside(&policy.within, item.time) {
            keep[i] = true;
        }
        if policy
            .tags
            .iter()
            .any(|l| l.iter().all(|t| item.tags.contains(t)))
        {
            keep[i] = true;
        }
    }
    keep
}

fn random_history(rng: &mut Rng) -> Vec<(DateTime<FixedOffset>, Vec<String>)> {
    let offsets = [0, 3600, 7200, -5 * 3600, 19800];
    let n = 20 + rng.below(130) as usize;
    let mut at = t("2019-12-20T00:00:00Z").timestamp();
    let mut out = Vec::new();
    for _ in 0..n {
        // Steps from minutes to months; sometimes the same time again.
        let step = match rng.below(6) {
            0 => 0,
            1 => rng.below(3600),
            2 => rng.below(86_400),
            3 => rng.below(7 * 86_400),
            4 => rng.below(40 * 86_400),
            _ => rng.below(200 * 86_400),
        };
        at += step as i64;
        let offset = FixedOffset::east_opt(offsets[rng.below(5) as usize]).expect("offset");
        let time = DateTime::from_timestamp(at, 0)
            .expect("time")
            .with_timezone(&offset);
        let tags = ["a", "b", "c"]
            .iter()
            .filter(|_| rng.below(4) == 0)
            .map(|s| s.to_string())
            .collect();
        out.push((time, tags));
    }
    out
}

fn random_policy(rng: &mut Rng) -> Policy {
    let count = |rng: &mut Rng| match rng.below(5) {
        0 => -1,
        1 | 2 => 0,
        _ => rng.below(12) as i64,
    };
    let span = |rng: &mut Rng| {
        if rng.below(3) == 0 {
            Span {
                years: rng.below(2) as i64,
                months: rng.below(13) as i64,
                days: rng.below(40) as i64,
                hours: rng.below(30) as i64,
            }
        } else {
            Span::default()
        }
    };
    Policy {
        last: count(rng),
        hourly: count(rng),
        daily: count(rng),
        weekly: count(rng),
        monthly: count(rng),
        yearly: count(rng),
        within: span(rng),
        within_hourly: span(rng),
        within_daily: span(rng),
        within_weekly: span(rng),
        within_monthly: span(rng),
        within_yearly: span(rng),
        tags: match rng.below(4) {
            0 => vec![vec!["a".into(), "b".into()]],
            1 => vec![vec!["c".into()], vec!["b".into()]],
            _ => Vec::new(),
        },
    }
}

#[test]
fn generated_histories_agree_with_the_rules_stated_another_way() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut snapshots = 0;
    for round in 0..400 {
        let history = random_history(&mut rng);
        let policy = random_policy(&mut rng);
        let items: Vec<Item> = history
            .iter()
            .map(|(time, tags)| Item { time: *time, tags })
            .collect();
        // Some histories run past "now": those snapshots are in the future.
        let now = if round % 5 == 0 {
            items[items.len() / 2].time.with_timezone(&Utc)
        } else {
            now()
        };
        let got: Vec<bool> = policy.apply(&items, now).iter().map(Option::is_some).collect();
        let want = if policy.is_empty() {
            vec![true; items.len()]
        } else {
            reference(&policy, &items, now)
        };
        assert_eq!(got, want, "round {round}: {policy:?}\n{history:?}");
        snapshots += items.len();
    }
    assert!(snapshots > 10_000);
}
