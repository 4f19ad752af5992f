//! Profiles: TOML files that name what to save (collectors), where (sinks),
//! and the retention policy to keep. A profile is parsed strictly: an unknown
//! key, a wrong type, a bad glob or an unknown collector kind is an error that
//! names the file, line and column, and nothing runs.

pub mod expand;
pub mod hooks;
mod parse;
pub mod resolve;

use parse::{check_retention, line_column, parse_collector, parse_sink, valid_name};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::collect::facts::FactSpec;

/// A problem with a profile, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ProfileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default, rename = "collector")]
    collectors: Vec<RawCollector>,
    #[serde(default, rename = "sink")]
    sinks: Vec<RawSink>,
    #[serde(default)]
    retention: Retention,
    #[serde(default)]
    vars: std::collections::BTreeMap<String, Var>,
    #[serde(default)]
    hooks: Hooks,
}

/// Shell command lines run around a profile's backup: a failing `before`
/// hook stops it with the hook's output shown; `after` hooks run whatever
/// happened and are told the outcome in CAIRN_OUTCOME (success, partial,
/// failed), CAIRN_SNAPSHOT and CAIRN_ERROR.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// How long each hook may run before it is stopped with everything it
    /// started (600 s when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// A variable a profile computes: the trimmed output of a command (which
/// wins over the environment when it succeeds), else the first of `default`
/// that exists on this machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Var {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default: Vec<String>,
}

/// One `[[collector]]` table. The keys that apply depend on `kind`; the
/// others are refused by [`Profile::parse`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    kind: Spanned<String>,
    name: Spanned<String>,
    path: Option<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    optional: Option<bool>,
    files: Option<Vec<Spanned<RawFile>>>,
    /// env: variable names or globs to take.
    include: Option<Vec<Spanned<String>>>,
    /// env: names whose values are kept even though they look secret.
    reveal: Option<Vec<String>>,
    /// env: more name globs to treat as secret.
    secret: Option<Vec<Spanned<String>>>,
    /// command: the program and its arguments, run without a shell.
    argv: Option<Vec<String>>,
    /// command: a command line for `sh -c` (`cmd /C` on Windows) instead.
    shell: Option<String>,
    timeout_secs: Option<u64>,
    required: Option<bool>,
    /// command: named values to take from its stdout.
    facts: Option<Vec<RawFact>>,
    /// tree: honour .gitignore and .ignore files.
    gitignore: Option<bool>,
    /// tree: stay on the root's filesystem.
    one_file_system: Option<bool>,
    /// tree: leave out directories holding one of these files (CACHEDIR.TAG).
    exclude_if_present: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFact {
    name: Spanned<String>,
    json: Option<String>,
    regex: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawFile {
    Path(String),
    Table {
        path: String,
        #[serde(default)]
        optional: bool,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: Spanned<String>,
    /// A directory: `local` and `nas` sinks.
    path: Option<Spanned<String>>,
    /// `s3:...`: `s3` sinks.
    url: Option<Spanned<String>>,
    region: Option<String>,
    path_style: Option<bool>,
    storage_class: Option<String>,
    connections: Option<usize>,
    conditional_writes: Option<bool>,
    /// The repository must be encrypted (FORMAT.md section 15).
    encrypt: Option<bool>,
}

/// Which of the profile's snapshots `cairn forget --profile NAME` keeps
/// when no rule is given on the command line: the same rules as its flags
/// (counts take -1 for unlimited; spans are like `1y2m3d4h`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_hourly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_daily: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_weekly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_monthly: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_yearly: Option<String>,
    /// Tag lists (`"a,b"`): snapshots with all tags of any list are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tag: Vec<String>,
}

/// A parsed, checked profile. Paths are still as written: they are expanded
/// against the environment when the profile is resolved for a run.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    /// The file it came from, or `builtin:<name>`.
    pub origin: String,
    /// Where relative paths in the profile are anchored.
    #[serde(skip)]
    pub base: PathBuf,
    pub collectors: Vec<Collector>,
    pub sinks: Vec<SinkSpec>,
    pub retention: Retention,
    pub vars: std::collections::BTreeMap<String, Var>,
    pub hooks: Hooks,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Collector {
    /// A directory (or one file) saved under `tree/<name>`.
    Tree {
        name: String,
        path: String,
        exclude: Vec<String>,
        optional: bool,
        gitignore: bool,
        one_file_system: bool,
        exclude_if_present: Vec<String>,
    },
    /// Listed files and globs saved under `files/<name>/<absolute path>`.
    Files { name: String, files: Vec<FileSpec> },
    /// Environment variables saved as `env/<name>.json`, secrets redacted.
    Env {
        name: String,
        include: Vec<String>,
        reveal: Vec<String>,
        secret: Vec<String>,
    },
    /// A program's output saved as `cmd/<name>/stdout`, `stderr`, `status`.
    Command {
        name: String,
        argv: Vec<String>,
        timeout_secs: u64,
        required: bool,
        facts: Vec<FactSpec>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSpec {
    pub path: String,
    pub optional: bool,
}

/// Where a profile's snapshots go. A backup writes into the first sink
/// that opens and copies the snapshot into each other one.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkSpec {
    /// A directory on this machine, created on first use.
    Local {
        path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypt: Option<bool>,
    },
    /// A directory on a mounted network share, never created implicitly:
    /// an unmounted share's empty mount point is left alone.
    Nas {
        path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypt: Option<bool>,
    },
    /// A bucket (and prefix): `url` as `--repo` takes it, plus settings.
    S3 {
        url: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypt: Option<bool>,
    },
}

impl SinkSpec {
    /// `encrypt = true`: the repository must be encrypted (one made on
    /// first use is); `false`: plain is meant; `None`: not said.
    pub fn encrypt(&self) -> Option<bool> {
        match self {
            SinkSpec::Local { encrypt, .. }
            | SinkSpec::Nas { encrypt, .. }
            | SinkSpec::S3 { encrypt, .. } => *encrypt,
        }
    }
}

impl Collector {
    pub fn name(&self) -> &str {
        match self {
            Collector::Tree { name, .. }
            | Collector::Files { name, .. }
            | Collector::Env { name, .. }
            | Collector::Command { name, .. } => name,
        }
    }
}

impl Profile {
    /// Parses and checks a profile's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Profile, ProfileError> {
        let at = |span: std::ops::Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            ProfileError {
                file: origin.to_string(),
                line,
                column,
                message,
            }
        };
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            at(e.span().unwrap_or(0..0), message)
        })?;
        let default_name = Path::new(origin)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| origin.to_string());
        let mut names = std::collections::HashSet::new();
        let mut collectors = Vec::new();
        for c in raw.collectors {
            let name = c.name.get_ref().clone();
            if !valid_name(&name) {
                return Err(at(
                    c.name.span(),
                    format!("collector name {name:?} must be letters, digits, '-', '_' or '.'"),
                ));
            }
            if !names.insert((c.kind.get_ref().clone(), name.clone())) {
                return Err(at(
                    c.name.span(),
                    format!("two {} collectors are named {name:?}", c.kind.get_ref()),
                ));
            }
            collectors.push(parse_collector(c, name, &at)?);
        }
        let mut sinks = Vec::new();
        for s in raw.sinks {
            sinks.push(parse_sink(s, &at)?);
        }
        check_retention(&raw.retention, text, &at)?;
        Ok(Profile {
            name: raw.name.unwrap_or(default_name),
            description: raw.description,
            tags: raw.tags,
            origin: origin.to_string(),
            base: base.to_path_buf(),
            collectors,
            sinks,
            retention: raw.retention,
            vars: raw.vars,
            hooks: raw.hooks,
        })
    }

    /// Reads and parses a profile file.
    pub fn load_file(path: &Path) -> Result<Profile, ProfileError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
            file: origin.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Profile::parse(&text, &origin, &base)
    }
}

impl Profile {
    /// The paths and patterns this profile names that look sensitive:
    /// private keys, certificates' keys, `.env` files. Cairn does not encrypt
    /// repositories yet, so `profiles show` warns about them.
    pub fn sensitive(&self) -> Vec<String> {
        let looks_sensitive = |path: &str| {
            let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
            matches!(name, "id_rsa" | "id_dsa" | "id_ecdsa" | "id_ed25519")
                || [".pem", ".key", ".p12", ".pfx"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
                || name.starts_with(".env")
                || path.contains("letsencrypt")
                || path.contains("/private")
        };
        let mut out = Vec::new();
        for c in &self.collectors {
            match c {
                Collector::Tree { path, .. } if looks_sensitive(path) => out.push(path.clone()),
                Collector::Files { files, .. } => out.extend(
                    files
                        .iter()
                        .filter(|f| looks_sensitive(&f.path))
                        .map(|f| f.path.clone()),
                ),
                _ => {}
            }
        }
        out
    }
}

/// Where users keep their profiles: `~/.config/cairn/profiles` on Linux,
/// `%APPDATA%\cairn\profiles` on Windows.
pub fn user_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("cairn").join("profiles"))
}

/// The profiles that ship inside the binary, by name.
pub const BUILTIN: [(&str, &str); 5] = [
    ("dotfiles", include_str!("../../profiles/dotfiles.toml")),
    ("go-toolchain", include_str!("../../profiles/go-toolchain.toml")),
    ("node", include_str!("../../profiles/node.toml")),
    ("python", include_str!("../../profiles/python.toml")),
    ("web-app", include_str!("../../profiles/web-app.toml")),
];

/// A built-in profile, parsed. Relative paths in it are anchored at the
/// current directory.
pub fn builtin(name: &str) -> Option<Result<Profile, ProfileError>> {
    let (name, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
    let base = std::env::current_dir().unwrap_or_default();
    Some(
        Profile::parse(text, &format!("builtin:{name}"), &base).map(|mut p| {
            p.name = name.to_string();
            p
        }),
    )
}

/// Finds a profile by file path (anything with a `/` or ending in `.toml`),
/// else by name in the user's profile directory, then among the built-ins.
pub fn find(name_or_path: &str) -> Result<Profile, ProfileError> {
    let as_path = Path::new(name_or_path);
    if name_or_path.contains(['/', '\\']) || name_or_path.ends_with(".toml") {
        return Profile::load_file(as_path);
    }
    if let Some(dir) = user_dir() {
        let file = dir.join(format!("{name_or_path}.toml"));
        if file.is_file() {
            return Profile::load_file(&file);
        }
    }
    if let Some(found) = builtin(name_or_path) {
        return found;
    }
    let looked = user_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
    Err(ProfileError {
        file: name_or_path.to_string(),
        line: 0,
        column: 0,
        message: format!(
            "no profile of that name in {looked}, nor built in ({})",
            names.join(", ")
        ),
    })
}

/// Every profile in the user's directory, by name.
pub fn list_user() -> Vec<(String, Result<Profile, ProfileError>)> {
    let Some(dir) = user_dir() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Result<Profile, ProfileError>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, Profile::load_file(&p))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
