//! Opening a sink from a location: the one place where wrappers are
//! stacked (rustic_core's layout), so the repository never knows which
//! store it talks to.

use std::sync::Arc;
use std::time::Duration;

use super::cache::CacheSink;
use super::chaos::{Chaos, ChaosSink};
use super::location::Location;
use super::retry::{RetryPolicy, RetrySink};
use super::s3::{S3Options, S3Sink};
use super::{LocalSink, Sink, SinkError};

/// Settings of the stores, by kind (`--option s3.connections=8`, or a profile's
/// `[[sink]]` fields).
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    pub s3: S3Options,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("option {0:?} is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("unknown option {0:?} (known: s3.region, s3.path-style, s3.storage-class, s3.connections, s3.conditional-writes, s3.multipart-threshold, s3.part-size, s3.retry-time, s3.timeout)")]
    Unknown(String),
    #[error("option {key}: {value:?} is not {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
}

impl SinkOptions {
    /// Applies one `KEY=VALUE` setting.
    pub fn set(&mut self, setting: &str) -> Result<(), OptionError> {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| OptionError::NotKeyValue(setting.to_string()))?;
        let bad = |expected| OptionError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let s3 = &mut self.s3;
        match key {
            "s3.region" => s3.region = Some(value.to_string()),
            "s3.storage-class" => s3.storage_class = Some(value.to_string()),
            "s3.path-style" => s3.path_style = Some(parse_bool(value).ok_or_else(|| bad("true or false"))?),
            "s3.conditional-writes" => {
                s3.conditional_writes = Some(parse_bool(value).ok_or_else(|| bad("true or false"))?)
            }
            "s3.connections" => {
                s3.connections = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| bad("a number from 1 to 64"))?
            }
            "s3.multipart-threshold" => {
                s3.multipart_threshold = parse_size(value).ok_or_else(|| bad("a size such as 64MiB"))?
            }
            "s3.part-size" => s3.part_size = parse_size(value).ok_or_else(|| bad("a size such as 16MiB"))?,
            "s3.retry-time" => s3.retry_time = parse_secs(value).ok_or_else(|| bad("seconds"))?,
            "s3.timeout" => s3.timeout = parse_secs(value).ok_or_else(|| bad("seconds"))?,
            _ => return Err(OptionError::Unknown(key.to_string())),
        }
        Ok(())
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn parse_secs(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim_end_matches('s').parse().ok()?;
    (secs.is_finite() && (0.0..=86_400.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// `64MiB`, `5M`, `1048576`.
pub fn parse_size(value: &str) -> Option<u64> {
    let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The sink for `location`, with what a network store needs stacked on it:
/// retries of transient failures, then a local cache of index files and
/// snapshot records.
/// Nothing is created: an S3 bucket is checked to exist (`create` makes
/// it when missing, for `init`).
/// Random faults (`CAIRN_FAULTS`, for tests: see `sink::chaos`) go
/// directly on the real store, under everything else.
pub fn open(location: &Location, options: &SinkOptions, create: bool) -> Result<Arc<dyn Sink>, SinkError> {
    let chaos = Chaos::from_env().map_err(|message| SinkError::Remote {
        op: "open",
        location: location.to_string(),
        message,
        transient: false,
    })?;
    let faulty = |sink: Arc<dyn Sink>| -> Arc<dyn Sink> {
        match &chaos {
            Some(chaos) => Arc::new(ChaosSink::new(sink, chaos.clone())),
            None => sink,
        }
    };
    let (base, retry_time): (Arc<dyn Sink>, Duration) = match location {
        // A directory on a network share is retried for half a minute.
        Location::Local(path) => (faulty(Arc::new(LocalSink::new(path))), Duration::from_secs(30)),
        Location::S3(url) => {
            let sink = Arc::new(S3Sink::new(url.clone(), options.s3.clone())?);
            let retrying = RetrySink::new(faulty(sink.clone()), RetryPolicy::lasting(options.s3.retry_time));
            // The bucket first, so a wrong name or credentials fail in one line.
            retrying.retry("open", || sink.ensure_bucket(create))?;
            return Ok(CacheSink::wrap(Arc::new(retrying)));
        }
    };
    if !base.capabilities().needs_retries {
        return Ok(base);
    }
    let retrying = RetrySink::new(base, RetryPolicy::lasting(retry_time));
    Ok(CacheSink::wrap(Arc::new(retrying)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_parsed_and_checked() {
        let mut o = SinkOptions::default();
        o.set("s3.connections=8").unwrap();
        o.set("s3.region=eu-west-1").unwrap();
        o.set("s3.multipart-threshold=5MiB").unwrap();
        o.set("s3.conditional-writes=false").unwrap();
        o.set("s3.retry-time=2.5").unwrap();
        assert_eq!(o.s3.connections, 8);
        assert_eq!(o.s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(o.s3.multipart_threshold, 5 << 20);
        assert_eq!(o.s3.conditional_writes, Some(false));
        assert_eq!(o.s3.retry_time, Duration::from_millis(2500));
        assert!(matches!(
            o.set("s3.connections=0"),
            Err(OptionError::BadValue { .. })
        ));
        assert!(matches!(o.set("s3.nope=1"), Err(OptionError::Unknown(_))));
        assert!(matches!(o.set("s3.region"), Err(OptionError::NotKeyValue(_))));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("99999999999999999999G"), None);
    }
}
