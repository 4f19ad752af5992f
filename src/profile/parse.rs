//! Checking a parsed profile's tables: collectors against their kind,
//! facts, sinks, the retention rules; and where in the text an error lies.

use toml::Spanned;

use super::{
    Collector, FileSpec, ProfileError, RawCollector, RawFact, RawFile, RawSink, Retention, SinkSpec,
};
use crate::collect::facts::{FactSource, FactSpec};
use crate::collect::tree::glob;

/// Checks one `[[collector]]` table against its kind.
pub(super) fn parse_collector(
    c: RawCollector,
    name: String,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ProfileError,
) -> Result<Collector, ProfileError> {
    let kind = c.kind.get_ref().clone();
    let kind_span = c.kind.span();
    refuse_other_keys(&c, &kind, kind_span.clone(), at)?;
    let needs = |what: &str| at(kind_span.clone(), format!("a {kind} collector needs {what}"));
    Ok(match kind.as_str() {
        "tree" => {
            let path = c.path.ok_or_else(|| needs("`path`"))?;
            for pattern in &c.exclude {
                glob(pattern.get_ref()).map_err(|e| at(pattern.span(), crate::chain(&e)))?;
            }
            Collector::Tree {
                name,
                path: path.into_inner(),
                exclude: c.exclude.into_iter().map(Spanned::into_inner).collect(),
                optional: c.optional.unwrap_or(false),
                gitignore: c.gitignore.unwrap_or(false),
                one_file_system: c.one_file_system.unwrap_or(false),
                exclude_if_present: c.exclude_if_present.unwrap_or_default(),
            }
        }
        "files" => {
            let mut specs = Vec::new();
            for f in c.files.ok_or_else(|| needs("`files`"))? {
                let span = f.span();
                let (path, optional) = match f.into_inner() {
                    RawFile::Path(path) => (path, false),
                    RawFile::Table { path, optional } => (path, optional),
                };
                glob(&path).map_err(|e| at(span, crate::chain(&e)))?;
                specs.push(FileSpec { path, optional });
            }
            Collector::Files { name, files: specs }
        }
        "env" => {
            let include = c.include.ok_or_else(|| needs("`include`"))?;
            let secret = c.secret.unwrap_or_default();
            for p in include.iter().chain(&secret) {
                glob(p.get_ref()).map_err(|e| at(p.span(), crate::chain(&e)))?;
            }
            Collector::Env {
                name,
                include: include.into_iter().map(Spanned::into_inner).collect(),
                reveal: c.reveal.unwrap_or_default(),
                secret: secret.into_iter().map(Spanned::into_inner).collect(),
            }
        }
        _ => {
            let argv = match (c.argv, c.shell) {
                (Some(argv), None) if !argv.is_empty() => argv,
                (None, Some(line)) if cfg!(windows) => vec!["cmd".into(), "/C".into(), line],
                (None, Some(line)) => vec!["sh".into(), "-c".into(), line],
                _ => return Err(needs("either `argv` (a non-empty list) or `shell`")),
            };
            let facts = parse_facts(c.facts.unwrap_or_default(), at)?;
            Collector::Command {
                name,
                argv,
                timeout_secs: c.timeout_secs.unwrap_or(60),
                required: c.required.unwrap_or(false),
                facts,
            }
        }
    })
}

/// Refuses counts below -1 and spans that are not like `1y2m3d4h`, at the
/// `[retention]` header.
pub(super) fn check_retention(
    r: &Retention,
    text: &str,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ProfileError,
) -> Result<(), ProfileError> {
    let here = || {
        let start = text.find("[retention]").unwrap_or(0);
        start..start + "[retention]".len()
    };
    let counts = [
        ("keep_last", r.keep_last),
        ("keep_hourly", r.keep_hourly),
        ("keep_daily", r.keep_daily),
        ("keep_weekly", r.keep_weekly),
        ("keep_monthly", r.keep_monthly),
        ("keep_yearly", r.keep_yearly),
    ];
    if let Some((key, n)) = counts
        .iter()
        .find_map(|(k, n)| n.filter(|n| *n < -1).map(|n| (k, n)))
    {
        return Err(at(
            here(),
            format!("[retention] {key} = {n}: a number of snapshots, or -1 for all"),
        ));
    }
    let spans = [
        ("keep_within", &r.keep_within),
        ("keep_within_hourly", &r.keep_within_hourly),
        ("keep_within_daily", &r.keep_within_daily),
        ("keep_within_weekly", &r.keep_within_weekly),
        ("keep_within_monthly", &r.keep_within_monthly),
        ("keep_within_yearly", &r.keep_within_yearly),
    ];
    for (key, span) in spans {
        if let Some(Err(e)) = span.as_deref().map(str::parse::<crate::retention::policy::Span>) {
            return Err(at(here(), format!("[retention] {key}: {e}")));
        }
    }
    Ok(())
}

/// Refuses an unknown kind, and any key set that the kind does not take.
pub(super) fn refuse_other_keys(
    c: &RawCollector,
    kind: &str,
    kind_span: std::ops::Range<usize>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ProfileError,
) -> Result<(), ProfileError> {
    // The keys each kind takes; any other key that is set is refused.
    let set = [
        ("path", c.path.is_some()),
        ("exclude", !c.exclude.is_empty()),
        ("optional", c.optional.is_some()),
        ("files", c.files.is_some()),
        ("include", c.include.is_some()),
        ("reveal", c.reveal.is_some()),
        ("secret", c.secret.is_some()),
        ("argv", c.argv.is_some()),
        ("shell", c.shell.is_some()),
        ("timeout_secs", c.timeout_secs.is_some()),
        ("required", c.required.is_some()),
        ("facts", c.facts.is_some()),
        ("gitignore", c.gitignore.is_some()),
        ("one_file_system", c.one_file_system.is_some()),
        ("exclude_if_present", c.exclude_if_present.is_some()),
    ];
    let allowed: &[&str] = match kind {
        "tree" => &[
            "path",
            "exclude",
            "optional",
            "gitignore",
            "one_file_system",
            "exclude_if_present",
        ],
        "files" => &["files"],
        "env" => &["include", "reveal", "secret"],
        "command" => &["argv", "shell", "timeout_secs", "required", "facts"],
        other => {
            return Err(at(
                kind_span,
                format!(
                    "unknown collector kind {other:?} (expected \"tree\", \"files\", \"env\" or \"command\")"
                ),
            ))
        }
    };
    if let Some((key, _)) = set
        .iter()
        .find(|(key, present)| *present && !allowed.contains(key))
    {
        return Err(at(
            kind_span,
            format!("`{key}` does not apply to a {kind} collector"),
        ));
    }
    Ok(())
}

/// A command collector's `[[collector.facts]]`: each a JSON path or a regex.
pub(super) fn parse_facts(
    raw: Vec<RawFact>,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ProfileError,
) -> Result<Vec<FactSpec>, ProfileError> {
    let mut facts = Vec::new();
    for f in raw {
        let source = match (f.json, f.regex) {
            (Some(path), None) => FactSource::Json(path),
            (None, Some(re)) => {
                regex::Regex::new(re.get_ref()).map_err(|e| {
                    at(
                        re.span(),
                        format!("bad regex: {}", e.to_string().lines().last().unwrap_or("")),
                    )
                })?;
                FactSource::Regex(re.into_inner())
            }
            _ => {
                return Err(at(
                    f.name.span(),
                    "a fact needs exactly one of `json` or `regex`".into(),
                ))
            }
        };
        facts.push(FactSpec {
            name: f.name.into_inner(),
            source,
        });
    }
    Ok(facts)
}

pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// 1-based line and column of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// One `[[sink]]`: its kind decides which fields it needs.
pub(super) fn parse_sink(
    s: RawSink,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ProfileError,
) -> Result<SinkSpec, ProfileError> {
    let kind = s.kind.get_ref().as_str();
    let need = |field: Option<Spanned<String>>, name: &str| {
        field
            .map(Spanned::into_inner)
            .ok_or_else(|| at(s.kind.span(), format!("a {kind} sink needs `{name}`")))
    };
    match kind {
        "local" => Ok(SinkSpec::Local {
            path: need(s.path, "path")?,
            encrypt: s.encrypt,
        }),
        "nas" => Ok(SinkSpec::Nas {
            path: need(s.path, "path")?,
            encrypt: s.encrypt,
        }),
        "s3" => {
            let mut options = Vec::new();
            if let Some(v) = &s.region {
                options.push(format!("s3.region={v}"));
            }
            if let Some(v) = s.path_style {
                options.push(format!("s3.path-style={v}"));
            }
            if let Some(v) = &s.storage_class {
                options.push(format!("s3.storage-class={v}"));
            }
            if let Some(v) = s.connections {
                options.push(format!("s3.connections={v}"));
            }
            if let Some(v) = s.conditional_writes {
                options.push(format!("s3.conditional-writes={v}"));
            }
            let url_span = s.url.as_ref().map(|u| u.span());
            let url = need(s.url, "url")?;
            if !url.starts_with("s3:") {
                return Err(at(
                    url_span.unwrap_or(0..0),
                    format!("an s3 sink's url starts with s3: ({url:?})"),
                ));
            }
            Ok(SinkSpec::S3 {
                url,
                options,
                encrypt: s.encrypt,
            })
        }
        other => Err(at(
            s.kind.span(),
            format!("unknown sink kind {other:?} (expected \"local\", \"nas\" or \"s3\")"),
        )),
    }
}
