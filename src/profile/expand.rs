//! Path expansion in profiles: `~`, `$VAR`, `${VAR}`, `%VAR%` (Windows), and
//! paths relative to the profile file.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("no home directory is known for ~")]
    NoHome,
    #[error("unclosed ${{ in {0:?}")]
    Unclosed(String),
}

/// Expands variables and `~` with values from `lookup`, then anchors a
/// relative result at `base` (the profile's directory).
pub fn expand_path(
    raw: &str,
    base: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, ExpandError> {
    let text = expand_vars(raw, lookup)?;
    let path = if text == "~" || text.starts_with("~/") || text.starts_with("~\\") {
        let home = dirs::home_dir().ok_or(ExpandError::NoHome)?;
        home.join(text[1..].trim_start_matches(['/', '\\']))
    } else {
        PathBuf::from(text)
    };
    Ok(if path.is_absolute() { path } else { base.join(path) })
}

/// Replaces `$VAR`, `${VAR}` and, on Windows, `%VAR%`. `$$` is a literal `$`.
pub fn expand_vars(raw: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let get = |name: &str| lookup(name).ok_or_else(|| ExpandError::Unset(name.to_string()));
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find(['$', '%']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| ExpandError::Unclosed(raw.to_string()))?;
            out.push_str(&get(&after[..end])?);
            rest = &after[end + 1..];
        } else if let Some(after) = tail.strip_prefix('$') {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(&get(&after[..len])?);
            }
            rest = &after[len..];
        } else {
            // `%VAR%` only on Windows, where `%` cannot start anything else.
            let after = &tail[1..];
            match after.find('%') {
                Some(end)
                    if cfg!(windows)
                        && end > 0
                        && after[..end]
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    out.push_str(&get(&after[..end])?);
                    rest = &after[end + 1..];
                }
                _ => {
                    out.push('%');
                    rest = after;
                }
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "GOROOT" => Some("/usr/local/go".into()),
            "X" => Some("x".into()),
            _ => None,
        }
    }

    #[test]
    fn variables() {
        assert_eq!(expand_vars("$GOROOT/bin", &env).unwrap(), "/usr/local/go/bin");
        assert_eq!(expand_vars("${X}y", &env).unwrap(), "xy");
        assert_eq!(expand_vars("cost $$5 and 50%", &env).unwrap(), "cost $5 and 50%");
        assert_eq!(expand_vars("$NOPE", &env), Err(ExpandError::Unset("NOPE".into())));
        assert!(matches!(expand_vars("${X", &env), Err(ExpandError::Unclosed(_))));
    }

    #[test]
    fn paths() {
        let base = Path::new("/profiles");
        assert_eq!(
            expand_path("conf/a", base, &env).unwrap(),
            PathBuf::from("/profiles/conf/a")
        );
        assert_eq!(
            expand_path("$GOROOT", base, &env).unwrap(),
            PathBuf::from("/usr/local/go")
        );
        if let Some(home) = dirs::home_dir() {
            assert_eq!(
                expand_path("~/.bashrc", base, &env).unwrap(),
                home.join(".bashrc")
            );
        }
    }
}
