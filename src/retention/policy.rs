//! The keep policy, with restic's `forget` semantics exactly (restic's
//! documentation is the reference, since many users know it):
//!
//! - Snapshots are taken newest first. A bucket rule (`--keep-daily 7`)
//!   keeps the newest snapshot of each of the last N days that have one;
//!   the days are counted in each snapshot's own recorded time zone, weeks
//!   are ISO weeks. `-1` keeps one per bucket without limit.
//! - A bucket rule that still has counts left when it reaches the oldest
//!   snapshot keeps that one too (so the history kept is as long as it can
//!   be while counts remain).
//! - `--keep-within 1y2m3d4h` keeps every snapshot newer than that span
//!   before the newest snapshot (one in the future does not count as the
//!   newest); the span is subtracted as calendar years, months and days,
//!   with overflowing days rolled over (31 March minus a month is 3 March),
//!   then hours. `--keep-within-daily` and the like keep one per bucket
//!   within the span.
//! - `--keep-tag a,b` keeps snapshots carrying both tags; repeated, it keeps
//!   those matching any of the lists. Tags are not counted.
//! - A snapshot is kept when any rule keeps it; each rule that does is a
//!   reason.

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, Timelike, Utc};

/// How many buckets a rule keeps: `0` none (the rule is off), `-1` all.
pub type Count = i64;

/// A span of calendar time, as restic spells it: `1y2m3d4h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub years: i64,
    pub months: i64,
    pub days: i64,
    pub hours: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpanError {
    #[error("{0:?} is not a span such as 1y2m3d4h: a number must come first")]
    NoNumber(String),
    #[error("{0:?} is not a span such as 1y2m3d4h: a unit (y, m, d or h) must follow {1}")]
    NoUnit(String, i64),
    #[error("{0:?} is not a span such as 1y2m3d4h: {1:?} is not a unit (y, m, d or h)")]
    BadUnit(String, char),
}

impl std::str::FromStr for Span {
    type Err = SpanError;

    /// Numbers each followed by a unit; a unit given twice takes the later
    /// number (as restic's parser does).
    fn from_str(s: &str) -> Result<Span, SpanError> {
        let mut span = Span::default();
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let num: i64 = rest[..digits]
                .parse()
                .map_err(|_| SpanError::NoNumber(s.to_string()))?;
            let mut chars = rest[digits..].chars();
            match chars.next() {
                None => return Err(SpanError::NoUnit(s.to_string(), num)),
                Some('y') => span.years = num,
                Some('m') => span.months = num,
                Some('d') => span.days = num,
                Some('h') => span.hours = num,
                Some(other) => return Err(SpanError::BadUnit(s.to_string(), other)),
            }
            rest = chars.as_str();
        }
        Ok(span)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Span {
    pub fn is_zero(&self) -> bool {
        *self == Span::default()
    }

    /// The moment `self` before `t`: years, months and days on the calendar
    /// in `t`'s own offset, days overflowing a month rolled into the next
    /// (Go's `AddDate`, which restic uses), then hours. `None` past the
    /// calendar's range.
    pub fn before(&self, t: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let local = t.naive_local();
        let months = i64::from(local.year())
            .checked_mul(12)?
            .checked_add(i64::from(local.month0()))?
            .checked_sub(self.years.checked_mul(12)?)?
            .checked_sub(self.months)?;
        let year = i32::try_from(months.div_euclid(12)).ok()?;
        let month = u32::try_from(months.rem_euclid(12)).ok()? + 1;
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let day = i64::from(local.day0()).checked_sub(self.days)?;
        let date = if day >= 0 {
            first.checked_add_days(Days::new(day.unsigned_abs()))?
        } else {
            first.checked_sub_days(Days::new(day.unsigned_abs()))?
        };
        let shifted = date
            .and_time(local.time())
            .and_local_timezone(*t.offset())
            .single()?;
        shifted.checked_sub_signed(chrono::TimeDelta::try_hours(self.hours)?)
    }
}

/// Which snapshots to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Count,
    pub hourly: Count,
    pub daily: Count,
    pub weekly: Count,
    pub monthly: Count,
    pub yearly: Count,
    pub within: Span,
    pub within_hourly: Span,
    pub within_daily: Span,
    pub within_weekly: Span,
    pub within_monthly: Span,
    pub within_yearly: Span,
    /// Keep snapshots that carry every tag of any of these lists.
    pub tags: Vec<Vec<String>>,
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub time: DateTime<FixedOffset>,
    pub tags: &'a [String],
}

/// A calendar bucket: two snapshots in one bucket are the same hour, day...
#[derive(Debug, Clone, Copy)]
enum Bucket {
    /// Every snapshot is a bucket of its own.
    Each,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    fn of(self, t: &DateTime<FixedOffset>, nr: usize) -> i64 {
        let (year, month, day) = (i64::from(t.year()), i64::from(t.month()), i64::from(t.day()));
        match self {
            Bucket::Each => nr as i64,
            Bucket::Hour => ((year * 100 + month) * 100 + day) * 100 + i64::from(t.hour()),
            Bucket::Day => (year * 100 + month) * 100 + day,
            Bucket::Week => {
                let week = t.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Bucket::Month => year * 100 + month,
            Bucket::Year => year,
        }
    }
}

impl Policy {
    /// No rule at all: `forget` then removes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// The rules, for the user: `keep 7 daily, 4 weekly snapshots`.
    pub fn describe(&self) -> String {
        let counts: Vec<String> = [
            (self.last, "latest"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ]
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, what)| {
            if *n < 0 {
                format!("all {what}")
            } else {
                format!("{n} {what}")
            }
        })
        .collect();
        let mut parts = Vec::new();
        if !counts.is_empty() {
            parts.push(format!("{} snapshots", counts.join(", ")));
        }
        for (span, what) in self.spans() {
            parts.push(format!("{what} snapshots within {span}"));
        }
        for tags in &self.tags {
            parts.push(format!("snapshots tagged {}", tags.join(",")));
        }
        if !self.within.is_zero() {
            parts.push(format!("all snapshots within {} of the newest", self.within));
        }
        format!("keep {}", parts.join(", "))
    }

    fn spans(&self) -> Vec<(Span, &'static str)> {
        [
            (self.within_hourly, "hourly"),
            (self.within_daily, "daily"),
            (self.within_weekly, "weekly"),
            (self.within_monthly, "monthly"),
            (self.within_yearly, "yearly"),
        ]
        .into_iter()
        .filter(|(s, _)| !s.is_zero())
        .collect()
    }

    /// For each item, in the order given: the reasons it is kept, or `None`
    /// when it is removed. `now` decides which snapshots lie in the future.
    pub fn apply(&self, items: &[Item], now: DateTime<Utc>) -> Vec<Option<Vec<String>>> {
        let mut out = vec![None; items.len()];
        if self.is_empty() {
            for o in &mut out {
                *o = Some(vec!["policy is empty".to_string()]);
            }
            return out;
        }
        // Newest first; equal times keep the order given.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|a, b| items[*b].time.cmp(&items[*a].time));
        let newest = items.iter().map(|i| i.time).filter(|t| *t < now).max();
        // Before the span, by the newest snapshot (or before all time).
        let after = |span: &Span| newest.and_then(|n| span.before(n));
        let within = after(&self.within);
        let mut counted = [
            (self.last, Bucket::Each, None::<i64>, "last snapshot"),
            (self.hourly, Bucket::Hour, None, "hourly snapshot"),
            (self.daily, Bucket::Day, None, "daily snapshot"),
            (self.weekly, Bucket::Week, None, "weekly snapshot"),
            (self.monthly, Bucket::Month, None, "monthly snapshot"),
            (self.yearly, Bucket::Year, None, "yearly snapshot"),
        ];
        let spans: [(Span, Bucket, &str); 5] = [
            (self.within_hourly, Bucket::Hour, "hourly within"),
            (self.within_daily, Bucket::Day, "daily within"),
            (self.within_weekly, Bucket::Week, "weekly within"),
            (self.within_monthly, Bucket::Month, "monthly within"),
            (self.within_yearly, Bucket::Year, "yearly within"),
        ];
        let mut span_last: [Option<i64>; 5] = [None; 5];
        let oldest = items.len().saturating_sub(1);
        for (nr, &i) in order.iter().enumerate() {
            let item = &items[i];
            let mut reasons = Vec::new();
            for tags in &self.tags {
                if tags.iter().all(|t| item.tags.contains(t)) {
                    reasons.push(format!("has tags {}", tags.join(",")));
                }
            }
            if !self.within.is_zero() && within.is_none_or(|t| item.time > t) {
                reasons.push(format!("within {}", self.within));
            }
            for (count, bucket, last, reason) in &mut counted {
                if *count == 0 {
                    continue;
                }
                let value = bucket.of(&item.time, nr);
                if Some(value) != *last || nr == oldest {
                    *last = Some(value);
                    if *count > 0 {
                        *count -= 1;
                    }
                    reasons.push((*reason).to_string());
                }
            }
            for ((span, bucket, reason), last) in spans.iter().zip(&mut span_last) {
                if span.is_zero() || after(span).is_some_and(|t| item.time <= t) {
                    continue;
                }
                let value = bucket.of(&item.time, nr);
                if Some(value) != *last {
                    *last = Some(value);
                    reasons.push(format!("{reason} {span}"));
                }
            }
            if !reasons.is_empty() {
                out[i] = Some(reasons);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
