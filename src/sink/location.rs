//! Where a repository is, from what the user typed: a path, or an S3 URL
//! spelled as restic spells it.
//!
//! - `s3:https://HOST[:PORT]/BUCKET[/PREFIX]` (or `s3:http://` for a server
//!   without TLS, such as one on 127.0.0.1): any S3-compatible server.
//! - `s3:s3.amazonaws.com/BUCKET[/PREFIX]`, or a regional AWS host.
//! - `s3:BUCKET[/PREFIX]`: AWS, region from the usual configuration.
//! - anything else: a directory (a local disk or a mounted share).

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;

/// A parsed repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Url),
}

/// An S3 bucket (and key prefix inside it) on AWS or another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// `http[s]://host[:port]` of a server other than AWS's default one.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the bucket root.
    pub prefix: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad repository URL {url:?}: {reason} (expected s3:https://HOST[:PORT]/BUCKET[/PREFIX], s3:s3.amazonaws.com/BUCKET[/PREFIX] or s3:BUCKET[/PREFIX])")]
pub struct LocationError {
    pub url: String,
    pub reason: &'static str,
}

impl Location {
    /// Parses `--repo`, a profile's sink or `CAIRN_REPO`.
    pub fn parse(text: &OsStr) -> Result<Location, LocationError> {
        match text.to_str().and_then(|t| t.strip_prefix("s3:")) {
            Some(rest) => S3Url::parse(rest)
                .map(Location::S3)
                .map_err(|reason| LocationError {
                    url: text.to_string_lossy().into_owned(),
                    reason,
                }),
            None => Ok(Location::Local(PathBuf::from(text))),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3(url) => write!(f, "{url}"),
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("s3:")?;
        match &self.endpoint {
            Some(endpoint) => write!(f, "{endpoint}/{}", self.bucket)?,
            None => f.write_str(&self.bucket)?,
        }
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl S3Url {
    fn parse(rest: &str) -> Result<S3Url, &'static str> {
        let (endpoint, path) = if let Some(after) = rest.strip_prefix("https://") {
            let (host, path) = after.split_once('/').ok_or("no bucket after the host")?;
            (Some(format!("https://{}", check_host(host)?)), path)
        } else if let Some(after) = rest.strip_prefix("http://") {
            let (host, path) = after.split_once('/').ok_or("no bucket after the host")?;
            (Some(format!("http://{}", check_host(host)?)), path)
        } else {
            match rest.split_once('/') {
                // AWS's own hosts: the SDK finds the endpoint from the region.
                Some((host, path)) if host == "s3.amazonaws.com" || host.ends_with(".amazonaws.com") => {
                    (None, path)
                }
                _ => (None, rest),
            }
        };
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        check_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
            && !prefix.is_empty()
        {
            return Err("the prefix has an empty, '.' or '..' part");
        }
        if prefix.chars().any(|c| c.is_control() || c == '\\') {
            return Err("the prefix has a control character or a backslash");
        }
        Ok(S3Url {
            endpoint,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The key of an object's repository-relative path.
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }
}

fn check_host(host: &str) -> Result<&str, &'static str> {
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(host)
    } else {
        Err("the host is empty or has characters a host name cannot have")
    }
}

/// S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    let chars_ok = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = bucket
        .bytes()
        .next()
        .zip(bucket.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if bucket.is_empty() {
        Err("no bucket name")
    } else if !(3..=63).contains(&bucket.len()) || !chars_ok || !ends_ok {
        Err("a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(text: &str) -> S3Url {
        match Location::parse(OsStr::new(text)).unwrap() {
            Location::S3(url) => url,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn urls_as_restic_spells_them() {
        let u = s3("s3:http://127.0.0.1:9000/backups/host-a/");
        assert_eq!(u.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("backups", "host-a"));
        assert_eq!(u.key("config.json"), "host-a/config.json");
        assert_eq!(u.to_string(), "s3:http://127.0.0.1:9000/backups/host-a");
        let u = s3("s3:https://minio.lan/cairn");
        assert_eq!(
            (u.endpoint.as_deref(), u.prefix.as_str()),
            (Some("https://minio.lan"), "")
        );
        let u = s3("s3:s3.amazonaws.com/my-bucket/laptop");
        assert_eq!(
            (u.endpoint, u.bucket.as_str(), u.prefix.as_str()),
            (None, "my-bucket", "laptop")
        );
        let u = s3("s3:my-bucket");
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("my-bucket", ""));
        assert_eq!(u.key("config.json"), "config.json");
        assert_eq!(
            Location::parse(OsStr::new("/srv/repo")).unwrap(),
            Location::Local(PathBuf::from("/srv/repo"))
        );
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for bad in [
            "s3:",
            "s3:http://",
            "s3:http://host",
            "s3:http://host/",
            "s3:http://ho st/bucket",
            "s3:UPPER",
            "s3:ab",
            "s3:-bucket",
            "s3:bucket/../up",
            "s3:bucket/a//b",
        ] {
            let err = Location::parse(OsStr::new(bad)).expect_err(bad);
            assert!(err.to_string().contains("bad repository URL"), "{bad}: {err}");
        }
    }
}
