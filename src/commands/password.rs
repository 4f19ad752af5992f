//! Where the password of an encrypted repository comes from, in this
//! order: `--password-command`, `CAIRN_PASSWORD_FILE`, `CAIRN_PASSWORD`,
//! `CAIRN_UNLOCK_KEY_FILE` or the operating system's credential store
//! (`cairn key store`: an unlock token, not a password), a prompt on a
//! terminal. Never from an argument: argv is visible to every user of
//! the machine.

use std::time::Duration;

use cairn::repo::keys::{Password, PasswordSource, UnlockToken};
use zeroize::Zeroizing;

/// How long a password command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The password sources the command line and environment name. `prefix`
/// is `CAIRN` (`CAIRN_NEW` for a new key's).
#[derive(Debug, Clone)]
pub struct Passwords {
    pub command: Option<String>,
    pub prefix: &'static str,
}

impl Default for Passwords {
    fn default() -> Self {
        Passwords {
            command: None,
            prefix: "CAIRN",
        }
    }
}

impl Passwords {
    fn var(&self, name: &str) -> Option<std::ffi::OsString> {
        std::env::var_os(format!("{}_{name}", self.prefix)).filter(|v| !v.is_empty())
    }

    /// The sources of the repository's password: `command`, then the rest.
    pub fn with_command(command: Option<String>) -> Passwords {
        Passwords {
            command,
            ..Passwords::default()
        }
    }

    /// The password sources of a new key (`key add`, `key passwd`).
    pub fn new_key() -> Passwords {
        Passwords {
            prefix: "CAIRN_NEW",
            ..Passwords::default()
        }
    }

    /// The ways there are, for a message that says none was given.
    fn ways(&self) -> String {
        let command = match self.prefix {
            "CAIRN" => ", give --password-command CMD",
            _ => "",
        };
        let store = match self.prefix {
            "CAIRN" => ", keep an unlock key in the OS credential store (`cairn key store`) or in a file named by CAIRN_UNLOCK_KEY_FILE (`cairn key store --file F`)",
            _ => "",
        };
        format!(
            "no password was given: set {p}_PASSWORD_FILE (a file holding it) or {p}_PASSWORD{command}{store}, or run cairn on a terminal to be asked",
            p = self.prefix
        )
    }

    /// Whether a password is given by command, file or variable.
    fn gives_password(&self) -> bool {
        self.command.is_some() || self.var("PASSWORD_FILE").is_some() || self.var("PASSWORD").is_some()
    }

    /// The password without a prompt, if one is given.
    fn given(&self) -> Result<Option<Password>, String> {
        if let Some(command) = &self.command {
            return from_command(command).map(Some);
        }
        if let Some(path) = self.var("PASSWORD_FILE") {
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read {}_PASSWORD_FILE {}: {e}",
                    self.prefix,
                    std::path::Path::new(&path).display()
                )
            })?;
            return first_line(bytes, "the password file").map(Some);
        }
        if let Some(value) = self.var("PASSWORD") {
            return first_line(value.into_encoded_bytes(), "CAIRN_PASSWORD").map(Some);
        }
        Ok(None)
    }

    /// A new repository's password: given, or typed twice on a terminal.
    pub fn new_password(&self, location: &str) -> Result<Password, String> {
        if let Some(p) = self.given()? {
            return Ok(p);
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(self.ways());
        }
        let first = prompt(&format!("new password for {location}: "))?;
        let again = prompt("the same password again: ")?;
        if first.as_bytes() != again.as_bytes() {
            return Err("the two passwords differ; nothing was created".into());
        }
        Ok(first)
    }
}

impl PasswordSource for Passwords {
    fn password(&self, location: &str) -> Result<Password, String> {
        self.find(location)
    }

    /// The unlock token in `CAIRN_UNLOCK_KEY_FILE`, or else in the
    /// credential store, unless a password is given another way (a given
    /// password always wins: `key passwd` changes the key it opens).
    fn stored(&self, location: &str) -> Option<UnlockToken> {
        if self.gives_password() || self.prefix != "CAIRN" {
            return None;
        }
        if let Some(path) = self.var("UNLOCK_KEY_FILE") {
            return read_unlock_file(std::path::Path::new(&path));
        }
        match cairn::credstore::lookup(location) {
            Ok(Some(secret)) => UnlockToken::decode(&Zeroizing::new(secret)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!("no unlock key from the credential store: {e}");
                None
            }
        }
    }
}

impl Passwords {
    fn find(&self, location: &str) -> Result<Password, String> {
        if let Some(p) = self.given()? {
            return Ok(p);
        }
        match cairn::credstore::lookup(location) {
            // An unlock token was tried already (see `stored`).
            Ok(Some(secret)) if UnlockToken::decode(&secret).is_some() => {}
            Ok(Some(secret)) => return first_line(secret, "the password in the credential store"),
            Ok(None) => {}
            Err(e) => tracing::debug!("no password from the credential store: {e}"),
        }
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return prompt(&format!("password for {location}: "));
        }
        Err(self.ways())
    }
}

/// The unlock token in a file `cairn key store --file` wrote; a warning,
/// and `None`, for anything else.
fn read_unlock_file(path: &std::path::Path) -> Option<UnlockToken> {
    let warn = |why: &str| {
        tracing::warn!("CAIRN_UNLOCK_KEY_FILE {}: {why}", path.display());
        None
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // A fifo would block the open; it is refused below.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let (file, meta) = match options.open(path).and_then(|f| f.metadata().map(|m| (f, m))) {
        Ok(opened) => opened,
        Err(e) => return warn(&e.to_string()),
    };
    if !meta.is_file() {
        return warn("not a regular file");
    }
    #[cfg(unix)]
    {
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
            tracing::warn!(
                "CAIRN_UNLOCK_KEY_FILE {} can be read by other users: chmod 600 it",
                path.display()
            );
        }
    }
    let mut bytes = Zeroizing::new(Vec::new());
    // A token is about 150 bytes; more is not one.
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::Read::take(&file, 4096), &mut bytes) {
        return warn(&e.to_string());
    }
    UnlockToken::decode(&bytes).or_else(|| warn("not an unlock key written by `cairn key store --file`"))
}

fn prompt(text: &str) -> Result<Password, String> {
    let typed = rpassword::prompt_password(text).map_err(|e| format!("cannot read the password: {e}"))?;
    first_line(typed.into_bytes(), "the password typed")
}

/// The first line of `bytes`, without its line ending; an empty one is refused.
fn first_line(mut bytes: Vec<u8>, what: &str) -> Result<Password, String> {
    let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let mut line = bytes[..end].to_vec();
    zeroize::Zeroize::zeroize(&mut bytes);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(Password::new(line))
}

/// What `--password-command` prints on its first line. It runs through
/// the shell, in a process group of its own, killed after
/// [`COMMAND_TIMEOUT`].
fn from_command(command: &str) -> Result<Password, String> {
    let (shell, flag) = if cfg!(windows) {
        ("cmd", "/C")
    } else {
        ("sh", "-c")
    };
    let out = cairn::process::run_captured(shell, &[flag, command], b"", COMMAND_TIMEOUT)
        .map_err(|e| format!("--password-command failed: {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.lines().next().unwrap_or("").trim();
        return Err(format!("--password-command failed ({}): {said}", out.status));
    }
    first_line(out.stdout, "what --password-command printed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_line_counts_and_an_empty_one_is_refused() {
        assert_eq!(
            first_line(b"secret\r\nmore".to_vec(), "x").unwrap().as_bytes(),
            b"secret"
        );
        assert!(first_line(b"\nsecret".to_vec(), "x").is_err());
        assert!(first_line(Vec::new(), "x").is_err());
    }
}
