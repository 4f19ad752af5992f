//! The `env` collector: environment variables by name and glob, with the
//! values of secret-looking names, and values that look secret whatever
//! their name (`collect::secrets`), replaced by a keyed fingerprint, so
//! that a later diff can say "changed" without the snapshot ever holding
//! the value.

use std::collections::BTreeMap;

use globset::GlobSetBuilder;
use serde_json::{json, Value};

use super::tree::{glob, PatternError};

/// Names that look secret unless a profile reveals them.
pub const DEFAULT_SECRETS: [&str; 6] = ["*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*_KEY", "AWS_*"];

/// The variables whose names match `include`, as a JSON object sorted by name.
/// Secret-looking names (matched case-insensitively against the defaults and
/// `extra_secrets`) and secret-looking values (a URL with a password, a
/// token's shape) get `{"redacted": "<fingerprint>"}` unless in `reveal`.
pub fn collect(
    vars: impl Iterator<Item = (String, String)>,
    include: &[String],
    reveal: &[String],
    extra_secrets: &[String],
    fingerprint_key: &[u8; 32],
) -> Result<Vec<u8>, PatternError> {
    let build = |patterns: &mut dyn Iterator<Item = String>| -> Result<globset::GlobSet, PatternError> {
        let mut b = GlobSetBuilder::new();
        let mut all = Vec::new();
        for p in patterns {
            b.add(glob(&p).map_err(|e| PatternError {
                what: "variable",
                ..e
            })?);
            all.push(p);
        }
        b.build().map_err(|source| PatternError {
            what: "variable",
            ..PatternError::new(&all.join(" "), &source)
        })
    };
    let wanted = build(&mut include.iter().cloned())?;
    let secret = build(
        &mut DEFAULT_SECRETS
            .iter()
            .map(|s| s.to_string())
            .chain(extra_secrets.iter().map(|s| s.to_uppercase())),
    )?;
    let mut out = BTreeMap::new();
    for (name, value) in vars {
        if !wanted.is_match(&name) {
            continue;
        }
        let looks_secret =
            secret.is_match(name.to_uppercase()) || super::secrets::secret_in(&value).is_some();
        let value = if looks_secret && !reveal.contains(&name) {
            json!({ "redacted": fingerprint(fingerprint_key, &name, &value) })
        } else {
            Value::String(value)
        };
        out.insert(name, value);
    }
    let mut bytes = serde_json::to_vec_pretty(&out).unwrap_or_default();
    bytes.push(b'\n');
    Ok(bytes)
}

/// A keyed hash of a name and value: equal values give equal fingerprints
/// under one key, and the value cannot be read back from it.
pub fn fingerprint(key: &[u8; 32], name: &str, value: &str) -> String {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(name.as_bytes());
    h.update(&[0]);
    h.update(value.as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fingerprinted() {
        let vars = [
            ("GOPATH", "/home/u/go"),
            ("GITHUB_TOKEN", "ghp_supersecret"),
            ("GOFLAGS", "-mod=mod"),
            ("HOME", "/home/u"),
            ("go_api_key", "lowercase-secret"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()));
        let key = [7u8; 32];
        let out = collect(
            vars.clone().into_iter(),
            &["GO*".into(), "GITHUB_*".into(), "go_*".into()],
            &[],
            &[],
            &key,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("/home/u/go") && text.contains("-mod=mod"));
        assert!(
            !text.contains("supersecret") && !text.contains("lowercase-secret"),
            "{text}"
        );
        assert!(!text.contains("HOME"));
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed["GITHUB_TOKEN"]["redacted"],
            fingerprint(&key, "GITHUB_TOKEN", "ghp_supersecret")
        );
        let revealed = collect(
            vars.into_iter(),
            &["GITHUB_*".into()],
            &["GITHUB_TOKEN".into()],
            &[],
            &key,
        )
        .unwrap();
        assert!(String::from_utf8(revealed).unwrap().contains("supersecret"));
    }
}
