//! Turning a profile into the concrete roots of one backup run: paths
//! expanded against the environment, globs matched, absent optional sources
//! noted, absent required ones refused before anything is written.

use std::path::{Component, Path, PathBuf};

use super::expand::expand_path;
use super::{Collector, Profile};
use crate::collect::tree::glob;

/// One source to save, with the manifest prefix it is saved under.
#[derive(Debug, Clone, Default)]
pub struct RootSpec {
    /// `tree` or `files`.
    pub collector: String,
    pub path: PathBuf,
    pub prefix: String,
    /// Exclude patterns that apply to this root only.
    pub excludes: Vec<String>,
    /// Tree options: honour .gitignore/.ignore, stay on one filesystem,
    /// leave out directories that hold one of these marker files.
    pub gitignore: bool,
    pub one_file_system: bool,
    pub exclude_if_present: Vec<String>,
    /// What the snapshot records as the root's origin when `path` is only
    /// where the bytes are read from (a command's spilled output).
    pub origin: Option<String>,
    /// Keeps a temporary file at `path` alive until the backup is done.
    pub keep: Option<std::sync::Arc<tempfile::TempPath>>,
    /// Contents made by the collector itself (environment, command output):
    /// saved as one file at `prefix`; `path` then only describes the origin.
    pub content: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct Resolved {
    pub roots: Vec<RootSpec>,
    /// Named values read from collectors' output.
    pub facts: std::collections::BTreeMap<String, String>,
    /// Optional sources that are absent here, each said once.
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("profile {profile}, collector {collector}: {message}")]
pub struct ResolveError {
    pub profile: String,
    pub collector: String,
    pub message: String,
}

/// A variable of this process's environment (the usual `lookup`).
pub fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Every variable of this process's environment that is valid Unicode.
pub fn process_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// What resolving may do beyond looking at files.
pub struct ResolveOptions<'a> {
    /// Values of variables for path expansion and the env collector.
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Every variable, for the env collector's globs.
    pub vars: &'a dyn Fn() -> Vec<(String, String)>,
    /// Run command collectors (`profiles show` does not).
    pub run_commands: bool,
    /// Key of the env collector's fingerprints (from the repository).
    pub fingerprint_key: [u8; 32],
}

pub fn resolve(profile: &Profile, opts: &ResolveOptions) -> Result<Resolved, ResolveError> {
    let mut out = Resolved::default();
    let computed = compute_vars(profile, opts, &mut out.notes);
    let lookup = &|name: &str| computed.get(name).cloned().or_else(|| (opts.lookup)(name));
    for collector in &profile.collectors {
        let fail = |message: String| ResolveError {
            profile: profile.name.clone(),
            collector: collector.name().to_string(),
            message,
        };
        match collector {
            Collector::Tree {
                name,
                path,
                exclude,
                optional,
                gitignore,
                one_file_system,
                exclude_if_present,
            } => {
                let expanded = match expand_path(path, &profile.base, lookup) {
                    Ok(p) => p,
                    Err(e) if *optional => {
                        out.notes.push(format!("skipping tree {name}: {path}: {e}"));
                        continue;
                    }
                    Err(e) => return Err(fail(format!("{path}: {e}"))),
                };
                if std::fs::symlink_metadata(&expanded).is_err() {
                    if *optional {
                        out.notes.push(format!(
                            "skipping tree {name}: {} does not exist",
                            expanded.display()
                        ));
                        continue;
                    }
                    return Err(fail(format!("{} does not exist", expanded.display())));
                }
                out.roots.push(RootSpec {
                    collector: "tree".into(),
                    path: expanded,
                    prefix: format!("tree/{name}"),
                    excludes: exclude.clone(),
                    gitignore: *gitignore,
                    one_file_system: *one_file_system,
                    exclude_if_present: exclude_if_present.clone(),
                    ..Default::default()
                });
            }
            Collector::Env { .. } => resolve_env(collector, opts, &mut out).map_err(fail)?,
            Collector::Command { .. } => resolve_command(collector, opts, &mut out).map_err(fail)?,
            Collector::Files { name, files } => {
                for spec in files {
                    let expanded = match expand_path(&spec.path, &profile.base, lookup) {
                        Ok(p) => p,
                        Err(e) if spec.optional => {
                            out.notes.push(format!("skipping {}: {e}", spec.path));
                            continue;
                        }
                        Err(e) => return Err(fail(format!("{}: {e}", spec.path))),
                    };
                    let matches = matching_files(&expanded).map_err(|e| fail(crate::chain(&e)))?;
                    if matches.is_empty() {
                        if spec.optional {
                            out.notes
                                .push(format!("skipping {}: no such file", expanded.display()));
                            continue;
                        }
                        return Err(fail(format!(
                            "{} does not exist (mark it `optional = true` if that is fine)",
                            expanded.display()
                        )));
                    }
                    for file in matches {
                        let prefix = format!("files/{name}/{}", manifest_tail(&file));
                        if out.roots.iter().any(|r| r.prefix == prefix) {
                            continue;
                        }
                        out.roots.push(RootSpec {
                            collector: "files".into(),
                            path: file,
                            prefix,
                            content: None,
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// An env collector: the variables as a JSON record, and each as a fact.
fn resolve_env(collector: &Collector, opts: &ResolveOptions, out: &mut Resolved) -> Result<(), String> {
    let Collector::Env {
        name,
        include,
        reveal,
        secret,
    } = collector
    else {
        return Ok(());
    };
    let json = crate::collect::env::collect(
        (opts.vars)().into_iter(),
        include,
        reveal,
        secret,
        &opts.fingerprint_key,
    )
    .map_err(|e| crate::chain(&e))?;
    // Each variable is a fact too: `env.NAME`, its value or, for
    // a secret, only its fingerprint.
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&json) {
        for (var, value) in map {
            let value = match value {
                serde_json::Value::String(s) => s,
                other => other
                    .get("redacted")
                    .and_then(|f| f.as_str())
                    .map(|f| format!("redacted:{f}"))
                    .unwrap_or_default(),
            };
            out.facts.insert(format!("env.{var}"), value);
        }
    }
    let origin = format!("env:{}", include.join(","));
    out.roots.push(RootSpec {
        collector: "env".into(),
        path: PathBuf::from(&origin),
        prefix: format!("env/{name}.json"),
        // Recorded as it is: it names variables, not a place on disk.
        origin: Some(origin),
        content: Some(json),
        ..Default::default()
    });
    Ok(())
}

/// A command collector: its status, stderr and stdout as roots, and the
/// facts taken from its output (or, without `run_commands`, a note).
fn resolve_command(collector: &Collector, opts: &ResolveOptions, out: &mut Resolved) -> Result<(), String> {
    let Collector::Command {
        name,
        argv,
        timeout_secs,
        required,
        facts,
    } = collector
    else {
        return Ok(());
    };
    // The command line is recorded (root origins, notes): an argument that
    // looks like a secret is not.
    let line = argv
        .iter()
        .map(|a| match crate::collect::secrets::secret_in(a) {
            Some(_) => "<redacted>",
            None => a.as_str(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    if !opts.run_commands {
        out.notes.push(format!("command {name} would run: {line}"));
        return Ok(());
    }
    let output = match crate::collect::command::run(argv, std::time::Duration::from_secs(*timeout_secs)) {
        Ok(output) => output,
        Err(e) if !*required => {
            out.notes
                .push(format!("skipping command {name}: {}", crate::chain(&e)));
            return Ok(());
        }
        Err(e) => return Err(crate::chain(&e)),
    };
    if !output.success {
        out.notes.push(format!(
            "command {name} ({line}) ended with {}",
            output.status.trim()
        ));
    }
    for fact in facts {
        match crate::collect::facts::extract(fact, output.stdout.head()) {
            // A token or a URL with a password in a command's output is
            // recorded only as its fingerprint, as a secret variable is.
            Some(value) if crate::collect::secrets::secret_in(&value).is_some() => {
                let f = crate::collect::env::fingerprint(&opts.fingerprint_key, &fact.name, &value);
                out.facts.insert(fact.name.clone(), format!("redacted:{f}"));
            }
            Some(value) => {
                out.facts.insert(fact.name.clone(), value);
            }
            None => out
                .notes
                .push(format!("fact {} not found in the output of {name}", fact.name)),
        }
    }
    let status = crate::collect::command::Captured::Memory(output.status.into_bytes());
    for (part, captured) in [
        ("status", status),
        ("stderr", output.stderr),
        ("stdout", output.stdout),
    ] {
        let (path, content, keep) = match captured {
            crate::collect::command::Captured::Memory(bytes) => (PathBuf::from(&line), Some(bytes), None),
            // Too large for memory: read from its temporary file.
            crate::collect::command::Captured::File { path, .. } => {
                (path.to_path_buf(), None, Some(std::sync::Arc::new(path)))
            }
        };
        out.roots.push(RootSpec {
            collector: "command".into(),
            path,
            prefix: format!("cmd/{name}/{part}"),
            origin: Some(line.clone()),
            keep,
            content,
            ..Default::default()
        });
    }
    Ok(())
}

/// The profile's `[vars]`: a command's trimmed output when it succeeds,
/// else the environment's value, else the first `default` that exists.
fn compute_vars(
    profile: &Profile,
    opts: &ResolveOptions,
    notes: &mut Vec<String>,
) -> std::collections::BTreeMap<String, String> {
    let mut values = std::collections::BTreeMap::new();
    for (name, var) in &profile.vars {
        let from_command = (!var.command.is_empty())
            .then(|| crate::collect::command::run(&var.command, std::time::Duration::from_secs(30)).ok())
            .flatten()
            .filter(|out| out.success)
            .map(|out| String::from_utf8_lossy(out.stdout.head()).trim().to_string())
            .filter(|v| !v.is_empty());
        let value = from_command.or_else(|| (opts.lookup)(name)).or_else(|| {
            var.default.iter().find_map(|d| {
                let path = expand_path(d, &profile.base, opts.lookup).ok()?;
                path.exists().then(|| path.display().to_string())
            })
        });
        match value {
            Some(v) => {
                values.insert(name.clone(), v);
            }
            None => notes.push(format!("variable {name} has no value on this machine")),
        }
    }
    values
}

/// The absolute path as manifest components: `/etc/nginx/x` gives
/// `etc/nginx/x`, `C:\Users\x` gives `C/Users/x`.
fn manifest_tail(path: &Path) -> String {
    // `..` takes the component before it away, as the recorded path is
    // normalised (`/a/../b/x` is `b/x`, not `a/b/x`).
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::Prefix(p) => parts.push(p.as_os_str().to_string_lossy().replace([':', '\\'], "")),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir => {}
        }
    }
    parts.join("/")
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The path itself if it exists, or every existing path its glob matches,
/// sorted. The directory part before the first glob is listed, as deep as
/// the pattern reaches (`**` reaches all the way).
fn matching_files(pattern: &Path) -> Result<Vec<PathBuf>, crate::collect::tree::PatternError> {
    let text = pattern.to_string_lossy();
    if !has_glob(&text) {
        return Ok(if std::fs::symlink_metadata(pattern).is_ok() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let matcher = glob(&text)?.compile_matcher();
    let mut base = PathBuf::new();
    let mut depth = 0usize;
    let mut unlimited = false;
    for c in pattern.components() {
        let part = c.as_os_str().to_string_lossy();
        if depth == 0 && !has_glob(&part) {
            base.push(c);
        } else {
            depth += 1;
            unlimited |= part.contains("**");
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![(base, 0usize)];
    while let Some((dir, level)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if matcher.is_match(&path) {
                found.push(path.clone());
            } else if is_dir && (unlimited || level + 1 < depth) {
                stack.push((path, level + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails() {
        assert_eq!(
            manifest_tail(Path::new("/etc/nginx/nginx.conf")),
            "etc/nginx/nginx.conf"
        );
        assert_eq!(manifest_tail(Path::new("/x/a/../b/./c")), "x/b/c");
    }

    #[test]
    fn globs_match_files_at_the_pattern_depth() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sites/deep")).unwrap();
        for f in [
            "sites/a.conf",
            "sites/b.conf",
            "sites/readme",
            "sites/deep/c.conf",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let one = matching_files(&root.join("sites/*.conf")).unwrap();
        assert_eq!(one, vec![root.join("sites/a.conf"), root.join("sites/b.conf")]);
        let all = matching_files(&root.join("sites/**/*.conf")).unwrap();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(matching_files(&root.join("nothing/*.conf")).unwrap().is_empty());
        assert_eq!(
            matching_files(&root.join("sites/readme")).unwrap(),
            vec![root.join("sites/readme")]
        );
    }
}
