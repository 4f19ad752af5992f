//! Values that are secrets whatever their name: credentials in a URL
//! (`https://bob:TOKEN@host`) and the shapes of well-known tokens (GitHub,
//! GitLab, AWS access keys, Slack, JWTs, PEM private keys). An environment
//! variable or a fact whose value looks like one is recorded only as a
//! keyed fingerprint, as one whose name looks secret is.

use std::sync::OnceLock;

use regex::RegexSet;

/// The patterns, each with what it catches.
const SHAPES: [(&str, &str); 8] = [
    // scheme://user:password@ (a password in the userinfo).
    (
        r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@",
        "a URL with a password",
    ),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}", "a GitHub token"),
    (r"\bgithub_pat_[A-Za-z0-9_]{20,}", "a GitHub token"),
    (r"\bglpat-[A-Za-z0-9_-]{20,}", "a GitLab token"),
    (r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", "an AWS access key"),
    (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", "a Slack token"),
    (
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        "a JWT",
    ),
    (r"-----BEGIN [A-Z ]*PRIVATE KEY-----", "a PEM private key"),
];

fn shapes() -> &'static RegexSet {
    static SET: OnceLock<RegexSet> = OnceLock::new();
    SET.get_or_init(|| {
        // The patterns are constants, tested below: building them cannot fail.
        RegexSet::new(SHAPES.iter().map(|(p, _)| p)).unwrap_or_else(|_| RegexSet::empty())
    })
}

/// What secret `value` holds, if it looks like one.
pub fn secret_in(value: &str) -> Option<&'static str> {
    shapes().matches(value).iter().next().map(|i| SHAPES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_builds() {
        assert_eq!(shapes().len(), SHAPES.len());
    }

    #[test]
    fn secrets_are_found_by_their_shape() {
        let secrets = [
            "https://bob:s3cret@proxy.example.com,direct",
            "postgres://app:pw@db:5432/app",
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "token github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "glpat-abcdefghij0123456789",
            "AKIAIOSFODNN7EXAMPLE",
            "xoxb-1234567890-abcdefghij",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...",
            "-----BEGIN PRIVATE KEY-----",
        ];
        for s in secrets {
            assert!(secret_in(s).is_some(), "{s}");
        }
        let plain = [
            "https://proxy.golang.org,direct",
            "https://bob@github.com/org/repo",
            "/usr/local/go/bin:/usr/bin",
            "go1.22.5",
            "AKIA-not-a-key",
            "ghp_short",
            "-----BEGIN PUBLIC KEY-----",
            "git@github.com:org/repo.git",
        ];
        for s in plain {
            assert!(secret_in(s).is_none(), "{s}");
        }
    }
}
