//! `before` and `after` hooks: shell command lines a profile runs around its
//! backup (stop a service, dump a database, notify someone).

use std::time::Duration;

use super::Profile;
use crate::collect::command::{self, CommandOutput};

/// How long one hook may run, unless the profile says (`timeout_secs`).
const HOOK_TIMEOUT: Duration = Duration::from_secs(600);

fn timeout(profile: &Profile) -> Duration {
    profile
        .hooks
        .timeout_secs
        .map_or(HOOK_TIMEOUT, Duration::from_secs)
}

#[derive(Debug, thiserror::Error)]
#[error("profile {profile}: before hook `{hook}` failed ({why}); nothing was saved{output}")]
pub struct HookError {
    pub profile: String,
    pub hook: String,
    pub why: String,
    /// The hook's last lines of output, to show the user.
    pub output: String,
}

/// What `after` hooks are told, as CAIRN_OUTCOME, CAIRN_SNAPSHOT,
/// CAIRN_ERROR (and CAIRN_PROFILE) in their environment.
pub struct Outcome {
    pub status: &'static str,
    pub snapshot: Option<String>,
    pub error: Option<String>,
}

fn shell(line: &str) -> Vec<String> {
    if cfg!(windows) {
        vec!["cmd".into(), "/C".into(), line.into()]
    } else {
        vec!["sh".into(), "-c".into(), line.into()]
    }
}

fn tail(out: &CommandOutput) -> String {
    let text =
        String::from_utf8_lossy(out.stderr.head()).into_owned() + &String::from_utf8_lossy(out.stdout.head());
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = &lines[lines.len().saturating_sub(3)..];
    if last.is_empty() {
        String::new()
    } else {
        format!(": {}", last.join(" | "))
    }
}

/// Runs the `before` hooks in order; the first that fails stops the backup.
pub fn run_before(profile: &Profile) -> Result<(), HookError> {
    for hook in &profile.hooks.before {
        let env = [("CAIRN_PROFILE".to_string(), profile.name.clone())];
        let fail = |why: String, output: String| HookError {
            profile: profile.name.clone(),
            hook: hook.clone(),
            why,
            output,
        };
        match command::run_with_env(&shell(hook), timeout(profile), &env) {
            Ok(out) if out.success => {}
            Ok(out) => return Err(fail(out.status.trim().to_string(), tail(&out))),
            Err(e) => return Err(fail(crate::chain(&e), String::new())),
        }
    }
    Ok(())
}

/// Runs every `after` hook, whatever happened; returns warnings for those
/// that failed (the backup's own outcome stands).
pub fn run_after(profile: &Profile, outcome: &Outcome) -> Vec<String> {
    let env = [
        ("CAIRN_PROFILE".to_string(), profile.name.clone()),
        ("CAIRN_OUTCOME".to_string(), outcome.status.to_string()),
        (
            "CAIRN_SNAPSHOT".to_string(),
            outcome.snapshot.clone().unwrap_or_default(),
        ),
        (
            "CAIRN_ERROR".to_string(),
            outcome.error.clone().unwrap_or_default(),
        ),
    ];
    let mut warnings = Vec::new();
    for hook in &profile.hooks.after {
        match command::run_with_env(&shell(hook), timeout(profile), &env) {
            Ok(out) if out.success => {}
            Ok(out) => warnings.push(format!(
                "profile {}: after hook `{hook}` failed ({}){}",
                profile.name,
                out.status.trim(),
                tail(&out)
            )),
            Err(e) => warnings.push(format!(
                "profile {}: after hook `{hook}`: {}",
                profile.name,
                crate::chain(&e)
            )),
        }
    }
    warnings
}
