use anyhow::{Context, Result};
use cairn::profile::resolve::{process_var, resolve, ResolveOptions};
use cairn::profile::{self, Collector, Profile};
use serde::Serialize;

use super::{exit, print_json};
use crate::cli::ProfilesCommand;

#[derive(Serialize)]
struct Listed {
    name: String,
    /// `user` (in the config dir) or `builtin`.
    kind: &'static str,
    description: String,
    collectors: usize,
    error: Option<String>,
}

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    profile: &'a Profile,
    /// What this machine has of it: the roots a backup would save now.
    roots: Vec<ShownRoot>,
    notes: Vec<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ShownRoot {
    collector: String,
    path: String,
    prefix: String,
}

pub fn run(command: ProfilesCommand) -> Result<u8> {
    match command {
        ProfilesCommand::List { json } => list(json),
        ProfilesCommand::Show { profile, json } => show(&profile, json),
        ProfilesCommand::New { name, from } => new(&name, &from),
        ProfilesCommand::Validate { files } => validate(&files),
    }
}

/// `profiles list`: the user's profiles, then the built-in ones.
fn list(json: bool) -> Result<u8> {
    let user = profile::list_user()
        .into_iter()
        .map(|(name, p)| ("user", name, p));
    let builtin = profile::BUILTIN
        .iter()
        .filter_map(|(name, _)| profile::builtin(name).map(|p| ("builtin", name.to_string(), p)));
    let listed: Vec<Listed> = user
        .chain(builtin)
        .map(|(kind, name, p)| match p {
            Ok(p) => Listed {
                name,
                kind,
                description: p.description,
                collectors: p.collectors.len(),
                error: None,
            },
            Err(e) => Listed {
                name,
                kind,
                description: String::new(),
                collectors: 0,
                error: Some(e.to_string()),
            },
        })
        .collect();
    if json {
        print_json(&listed)?;
    } else {
        for l in &listed {
            match &l.error {
                None => outln!("{:<16} {:<8} {}", l.name, l.kind, l.description)?,
                Some(e) => outln!("{:<16} {:<8} invalid: {e}", l.name, l.kind)?,
            }
        }
    }
    Ok(exit::OK)
}

/// `profiles show`: a profile and what it would save on this machine.
fn show(name: &str, json: bool) -> Result<u8> {
    let p = profile::find(name)?;
    // Show runs no collector: it needs no variables' values.
    let options = ResolveOptions {
        lookup: &process_var,
        vars: &Vec::new,
        run_commands: false,
        fingerprint_key: [0; 32],
    };
    let (roots, notes, error) = match resolve(&p, &options) {
        Ok(r) => (
            r.roots
                .into_iter()
                .map(|r| ShownRoot {
                    collector: r.collector,
                    path: r.path.display().to_string(),
                    prefix: r.prefix,
                })
                .collect(),
            r.notes,
            None,
        ),
        Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    let failed = error.is_some();
    if json {
        print_json(&Shown {
            profile: &p,
            roots,
            notes,
            error,
        })?;
    } else {
        outln!("profile {} ({})", p.name, p.origin)?;
        if !p.description.is_empty() {
            outln!("  {}", p.description)?;
        }
        for c in &p.collectors {
            match c {
                Collector::Tree { name, path, .. } => outln!("  tree {name}: {path}")?,
                Collector::Files { name, files } => outln!("  files {name}: {} paths", files.len())?,
                Collector::Env { name, include, .. } => outln!("  env {name}: {}", include.join(" "))?,
                Collector::Command { name, argv, .. } => outln!("  command {name}: {}", argv.join(" "))?,
            }
        }
        outln!("saved here:")?;
        for r in &roots {
            outln!("  {} -> {}", r.path, r.prefix)?;
        }
        for n in &notes {
            outln!("  note: {n}")?;
        }
        if let Some(e) = &error {
            outln!("  error: {e}")?;
        }
        warn_sensitive(&p)?;
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

/// Warns when a profile saves private keys or `.env` files into a
/// repository that is not encrypted, louder when that repository leaves
/// the machine (an S3 bucket, a NAS share). A sink that says `encrypt =
/// true`, or whose repository's config.json says it is encrypted, draws
/// no warning.
fn warn_sensitive(p: &profile::Profile) -> Result<()> {
    let sensitive = p.sensitive();
    if sensitive.is_empty() {
        return Ok(());
    }
    let files = sensitive.join(", ");
    if p.sinks.is_empty() {
        eprintln!(
            "warning: profile {} saves sensitive files ({files}) into the default repository, which is not encrypted unless made with `cairn init --encrypt`: keep it private",
            p.name
        );
        return Ok(());
    }
    for sink in &p.sinks {
        let (shown, remote) = match sink {
            profile::SinkSpec::S3 { url, .. } => (url.as_str(), true),
            profile::SinkSpec::Nas { path, .. } => (path.as_str(), true),
            profile::SinkSpec::Local { path, .. } => (path.as_str(), false),
        };
        let found = probe_encrypted(p, sink);
        if sink.encrypt() == Some(true) || found == Some(true) {
            continue;
        }
        match (remote, found) {
            (true, Some(_)) => eprintln!(
                "WARNING: profile {} saves sensitive files ({files}) UNENCRYPTED to {shown}: whoever can read that bucket or share can read them",
                p.name
            ),
            (true, None) => eprintln!(
                "WARNING: profile {} saves sensitive files ({files}) to {shown}, a sink not marked `encrypt = true`: unless that repository is encrypted, whoever can read the bucket or share can read them",
                p.name
            ),
            (false, _) => eprintln!(
                "warning: profile {} saves sensitive files ({files}) into {shown}, not encrypted: keep it private, or say `encrypt = true` on the sink",
                p.name
            ),
        }
    }
    Ok(())
}

/// Whether the repository a local or NAS sink names is encrypted, as its
/// config.json (never sealed) says; `None` when there is none, it cannot
/// be read, or it is in a bucket (`profiles show` makes no network calls).
fn probe_encrypted(p: &profile::Profile, sink: &profile::SinkSpec) -> Option<bool> {
    let (profile::SinkSpec::Nas { path, .. } | profile::SinkSpec::Local { path, .. }) = sink else {
        return None;
    };
    let dir = profile::expand::expand_path(path, &p.base, &profile::resolve::process_var).ok()?;
    let bytes = std::fs::read(dir.join("config.json")).ok()?;
    let (config, _) = cairn::repo::Repository::parse_config(&dir.display().to_string(), &bytes).ok()?;
    Some(config.encryption.is_some())
}

/// `profiles new`: a user profile written from a built-in one.
fn new(name: &str, from: &str) -> Result<u8> {
    let Some((_, text)) = profile::BUILTIN.iter().find(|(n, _)| *n == from) else {
        let names: Vec<&str> = profile::BUILTIN.iter().map(|(n, _)| *n).collect();
        anyhow::bail!("no built-in profile {from:?} (there are: {})", names.join(", "));
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        || name.is_empty()
    {
        anyhow::bail!("profile name {name:?} must be letters, digits, '-' or '_'");
    }
    let dir =
        profile::user_dir().ok_or_else(|| anyhow::anyhow!("no config directory is known for this user"))?;
    let file = dir.join(format!("{name}.toml"));
    if file.exists() {
        anyhow::bail!("{} exists already; not overwriting it", file.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    outln!(
        "wrote {} (from built-in {from}); edit it, then: cairn backup --profile {name}",
        file.display()
    )?;
    Ok(exit::OK)
}

/// `profiles validate`: parses and checks profile files.
fn validate(files: &[std::path::PathBuf]) -> Result<u8> {
    let mut bad = 0;
    for file in files {
        match Profile::load_file(file) {
            Ok(p) => outln!(
                "{}: ok, profile {} with {} collectors",
                file.display(),
                p.name,
                p.collectors.len()
            )?,
            Err(e) => {
                eprintln!("error: {e}");
                bad += 1;
            }
        }
    }
    Ok(if bad > 0 { exit::FAILED } else { exit::OK })
}
