//! Facts: named values taken from a collector's output (`go.version` from
//! `go version`, `go.env.GOROOT` from `go env -json`), kept in the snapshot
//! record so snapshots can be compared by what the machine was.

use serde::Serialize;

/// How a fact is read from a command's stdout.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FactSource {
    /// A field of JSON output, as a dotted path (`GOROOT`, `a.b.c`).
    Json(String),
    /// The first capture group of a regular expression (or the whole match).
    Regex(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct FactSpec {
    pub name: String,
    #[serde(flatten)]
    pub source: FactSource,
}

/// The fact's value in `output`, if it is there. A JSON string is taken as
/// it is; other JSON values as their JSON text.
pub fn extract(spec: &FactSpec, output: &[u8]) -> Option<String> {
    match &spec.source {
        FactSource::Json(path) => {
            let parsed: serde_json::Value = serde_json::from_slice(output).ok()?;
            let mut value = &parsed;
            for key in path.split('.') {
                value = value.get(key)?;
            }
            Some(match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        }
        FactSource::Regex(pattern) => {
            let re = regex::Regex::new(pattern).ok()?;
            let text = String::from_utf8_lossy(output);
            let caps = re.captures(&text)?;
            caps.get(1)
                .or_else(|| caps.get(0))
                .map(|m| m.as_str().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(source: FactSource) -> FactSpec {
        FactSpec {
            name: "f".into(),
            source,
        }
    }

    #[test]
    fn json_and_regex() {
        let json = br#"{"GOROOT": "/usr/local/go", "n": {"x": 3}}"#;
        assert_eq!(
            extract(&spec(FactSource::Json("GOROOT".into())), json).as_deref(),
            Some("/usr/local/go")
        );
        assert_eq!(
            extract(&spec(FactSource::Json("n.x".into())), json).as_deref(),
            Some("3")
        );
        assert_eq!(extract(&spec(FactSource::Json("nope".into())), json), None);
        let text = b"go version go1.22.5 linux/amd64\n";
        assert_eq!(
            extract(&spec(FactSource::Regex(r"go version (\S+)".into())), text).as_deref(),
            Some("go1.22.5")
        );
        assert_eq!(
            extract(&spec(FactSource::Regex(r"\d+\.\d+".into())), text).as_deref(),
            Some("1.22")
        );
    }
}
