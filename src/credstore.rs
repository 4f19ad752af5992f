//! The operating system's credential store, where a scheduled job that
//! runs unattended finds a repository's unlock key (`cairn key store`):
//! Secret Service on Linux and the BSDs (through `secret-tool`, package
//! libsecret-tools), the login Keychain on macOS (through `security`), the
//! Credential Manager on Windows. Each entry is the service `cairn` and the
//! repository's location. A secret never passes through argv: it goes
//! to and from the helper programs through pipes.

#[cfg(unix)]
use std::time::Duration;

/// How long a helper program may take (it may wait for a keyring daemon).
#[cfg(unix)]
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CredError {
    #[error("the credential store cannot be reached: {0}")]
    Unavailable(String),
    #[error("the credential store refused: {0}")]
    Failed(String),
}

/// The password stored for `location`, if there is one.
pub fn lookup(location: &str) -> Result<Option<Vec<u8>>, CredError> {
    imp::lookup(&account(location))
}

/// Stores (or replaces) the password for `location`.
pub fn save(location: &str, secret: &[u8]) -> Result<(), CredError> {
    imp::save(&account(location), secret)
}

/// Removes the password for `location`; whether there was one.
pub fn remove(location: &str) -> Result<bool, CredError> {
    imp::remove(&account(location))
}

/// The entry's name for a repository: a URL as it is, a directory made
/// absolute, so that `key store` run anywhere and a scheduled job started
/// elsewhere name it alike.
pub fn account(location: &str) -> String {
    if location.starts_with("s3:") {
        return location.to_string();
    }
    std::path::absolute(location).map_or_else(|_| location.to_string(), |p| p.display().to_string())
}

/// Runs a helper program with `input` on its stdin.
#[cfg(unix)]
fn helper(program: &str, args: &[&str], input: &[u8]) -> Result<crate::process::Captured, CredError> {
    crate::process::run_captured(program, args, input, TIMEOUT).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CredError::Unavailable(format!("{program} is not installed"))
        } else {
            CredError::Unavailable(format!("{program}: {e}"))
        }
    })
}

#[cfg(unix)]
fn said(out: &crate::process::Captured) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(all(unix, not(target_os = "macos")))]
mod imp {
    use super::{helper, said, CredError};

    fn attributes(location: &str) -> [&str; 4] {
        ["service", "cairn", "repository", location]
    }

    pub fn lookup(location: &str) -> Result<Option<Vec<u8>>, CredError> {
        let mut args = vec!["lookup"];
        args.extend(attributes(location));
        let out = helper("secret-tool", &args, b"")?;
        match (out.status.success(), out.stdout.is_empty()) {
            (true, false) => Ok(Some(out.stdout)),
            // Not found: exit 1 and nothing said.
            (_, true) if out.stderr.is_empty() => Ok(None),
            _ => Err(CredError::Unavailable(format!("secret-tool: {}", said(&out)))),
        }
    }

    pub fn save(location: &str, secret: &[u8]) -> Result<(), CredError> {
        let label = format!("cairn repository {location}");
        let mut args = vec!["store", "--label", &label];
        args.extend(attributes(location));
        let out = helper("secret-tool", &args, secret)?;
        match out.status.success() {
            true => Ok(()),
            false => Err(CredError::Failed(format!("secret-tool: {}", said(&out)))),
        }
    }

    pub fn remove(location: &str) -> Result<bool, CredError> {
        let had = lookup(location)?.is_some();
        let mut args = vec!["clear"];
        args.extend(attributes(location));
        let out = helper("secret-tool", &args, b"")?;
        match out.status.success() || !had {
            true => Ok(had),
            false => Err(CredError::Failed(format!("secret-tool: {}", said(&out)))),
        }
    }
}

#[cfg(target_os = "macos")]
mod imp {
    use super::{keychain, CredError};

    pub fn lookup(location: &str) -> Result<Option<Vec<u8>>, CredError> {
        keychain::lookup("security", location)
    }

    pub fn save(location: &str, secret: &[u8]) -> Result<(), CredError> {
        keychain::save("security", location, secret)
    }

    pub fn remove(location: &str) -> Result<bool, CredError> {
        keychain::remove("security", location)
    }
}

/// The login Keychain through `security(1)`; `program` names it (a test
/// elsewhere than macOS stands a script in for it).
#[cfg(any(target_os = "macos", all(test, unix)))]
mod keychain {
    use super::{helper, said, CredError};

    /// `security`'s "the item could not be found".
    const NOT_FOUND: i32 = 44;

    pub fn lookup(program: &str, location: &str) -> Result<Option<Vec<u8>>, CredError> {
        let out = helper(
            program,
            &["find-generic-password", "-s", "cairn", "-a", location, "-w"],
            b"",
        )?;
        if out.status.code() == Some(NOT_FOUND) {
            return Ok(None);
        }
        if !out.status.success() {
            return Err(CredError::Unavailable(format!("security: {}", said(&out))));
        }
        let mut secret = out.stdout;
        if secret.last() == Some(&b'\n') {
            secret.pop();
        }
        Ok(Some(secret))
    }

    /// `security -i` reads the command from stdin, so the secret is never
    /// an argument; quotes and backslashes are escaped for its parser.
    pub fn save(program: &str, location: &str, secret: &[u8]) -> Result<(), CredError> {
        let mut line = b"add-generic-password -U -s cairn -a ".to_vec();
        line.extend(quote(location.as_bytes()));
        line.extend_from_slice(b" -w ");
        line.extend(quote(secret));
        line.push(b'\n');
        let out = helper(program, &["-i"], &line)?;
        match out.status.success() && out.stderr.is_empty() {
            true => Ok(()),
            false => Err(CredError::Failed(format!("security: {}", said(&out)))),
        }
    }

    fn quote(bytes: &[u8]) -> Vec<u8> {
        let mut q = vec![b'"'];
        for &c in bytes {
            if c == b'"' || c == b'\\' {
                q.push(b'\\');
            }
            q.push(c);
        }
        q.push(b'"');
        q
    }

    pub fn remove(program: &str, location: &str) -> Result<bool, CredError> {
        let out = helper(
            program,
            &["delete-generic-password", "-s", "cairn", "-a", location],
            b"",
        )?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(NOT_FOUND) => Ok(false),
            _ => Err(CredError::Failed(format!("security: {}", said(&out)))),
        }
    }

    #[cfg(test)]
    mod tests {
        /// A stand-in for `security(1)` as cairn uses it: items kept as
        /// files named by the account's hex, exit 44 for a missing one,
        /// and `-i` parsing its command line as a double-quoted shell
        /// string (the same escapes: `\"` and `\\`).
        const FAKE: &str = r#"#!/bin/sh
store=$(dirname "$0")/items; mkdir -p "$store"
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
case "$1" in
  find-generic-password) [ -f "$store/$(hex "$5")" ] || exit 44; cat "$store/$(hex "$5")"; echo ;;
  delete-generic-password) [ -f "$store/$(hex "$5")" ] || exit 44; rm "$store/$(hex "$5")" ;;
  -i) IFS= read -r line; eval "set -- $line"
      [ "$1 $2 $3 $4 $5 $7" = "add-generic-password -U -s cairn -a -w" ] || { echo "bad: $line" >&2; exit 1; }
      printf '%s' "$8" >"$store/$(hex "$6")" ;;
  *) echo "unknown: $*" >&2; exit 2 ;;
esac
"#;

        #[test]
        fn a_secret_is_stored_read_and_removed_through_security() {
            let dir = tempfile::tempdir().unwrap();
            let program = dir.path().join("security");
            std::fs::write(&program, FAKE).unwrap();
            let mut perms = std::fs::metadata(&program).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(&program, perms).unwrap();
            let program = program.to_str().unwrap();
            let location = "/srv/backups/a \"quoted\" repo";
            let secret = br#"cairn-unlock-v1 ab "quote" back\slash"#;
            assert_eq!(super::lookup(program, location).unwrap(), None);
            super::save(program, location, secret).unwrap();
            assert_eq!(
                super::lookup(program, location).unwrap().as_deref(),
                Some(&secret[..])
            );
            assert_eq!(super::lookup(program, "/srv/other").unwrap(), None);
            assert!(super::remove(program, location).unwrap());
            assert!(!super::remove(program, location).unwrap());
            assert_eq!(super::lookup(program, location).unwrap(), None);
        }
    }
}

#[cfg(windows)]
mod imp {
    //! The Credential Manager's generic credentials, target `cairn:<location>`.
    use super::CredError;
    use std::ffi::c_void;

    #[repr(C)]
    struct Credential {
        flags: u32,
        kind: u32,
        target_name: *mut u16,
        comment: *mut u16,
        last_written: [u32; 2],
        blob_size: u32,
        blob: *mut u8,
        persist: u32,
        attribute_count: u32,
        attributes: *mut c_void,
        target_alias: *mut u16,
        user_name: *mut u16,
    }

    #[link(name = "advapi32")]
    extern "system" {
        fn CredReadW(target: *const u16, kind: u32, flags: u32, out: *mut *mut Credential) -> i32;
        fn CredWriteW(credential: *const Credential, flags: u32) -> i32;
        fn CredDeleteW(target: *const u16, kind: u32, flags: u32) -> i32;
        fn CredFree(buffer: *mut c_void);
    }

    const CRED_TYPE_GENERIC: u32 = 1;
    const CRED_PERSIST_LOCAL_MACHINE: u32 = 2;
    const ERROR_NOT_FOUND: i32 = 1168;

    fn wide(text: &str) -> Vec<u16> {
        text.encode_utf16().chain(Some(0)).collect()
    }

    fn target(location: &str) -> Vec<u16> {
        wide(&format!("cairn:{location}"))
    }

    fn last_error() -> std::io::Error {
        std::io::Error::last_os_error()
    }

    pub fn lookup(location: &str) -> Result<Option<Vec<u8>>, CredError> {
        let name = target(location);
        let mut found: *mut Credential = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated UTF-16; `found` receives a
        // buffer that CredFree releases below.
        if unsafe { CredReadW(name.as_ptr(), CRED_TYPE_GENERIC, 0, &mut found) } == 0 {
            let e = last_error();
            return match e.raw_os_error() {
                Some(ERROR_NOT_FOUND) => Ok(None),
                _ => Err(CredError::Unavailable(e.to_string())),
            };
        }
        // SAFETY: CredReadW succeeded, so `found` points at a credential
        // whose blob holds `blob_size` bytes (or is null when empty).
        let secret = unsafe {
            let c = &*found;
            let secret = if c.blob.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(c.blob, c.blob_size as usize).to_vec()
            };
            CredFree(found.cast());
            secret
        };
        Ok(Some(secret))
    }

    pub fn save(location: &str, secret: &[u8]) -> Result<(), CredError> {
        let mut name = target(location);
        let mut blob = secret.to_vec();
        let size =
            u32::try_from(blob.len()).map_err(|_| CredError::Failed("the password is too long".into()))?;
        let credential = Credential {
            flags: 0,
            kind: CRED_TYPE_GENERIC,
            target_name: name.as_mut_ptr(),
            comment: std::ptr::null_mut(),
            last_written: [0, 0],
            blob_size: size,
            blob: blob.as_mut_ptr(),
            persist: CRED_PERSIST_LOCAL_MACHINE,
            attribute_count: 0,
            attributes: std::ptr::null_mut(),
            target_alias: std::ptr::null_mut(),
            user_name: std::ptr::null_mut(),
        };
        // SAFETY: every pointer in `credential` is valid for the call.
        let ok = unsafe { CredWriteW(&credential, 0) } != 0;
        zeroize::Zeroize::zeroize(&mut blob);
        match ok {
            true => Ok(()),
            false => Err(CredError::Failed(last_error().to_string())),
        }
    }

    pub fn remove(location: &str) -> Result<bool, CredError> {
        let name = target(location);
        // SAFETY: `name` is NUL-terminated UTF-16.
        if unsafe { CredDeleteW(name.as_ptr(), CRED_TYPE_GENERIC, 0) } != 0 {
            return Ok(true);
        }
        let e = last_error();
        match e.raw_os_error() {
            Some(ERROR_NOT_FOUND) => Ok(false),
            _ => Err(CredError::Failed(e.to_string())),
        }
    }

    #[cfg(test)]
    mod tests {
        /// A round trip through the Credential Manager (Wine has one too).
        #[test]
        fn a_password_is_stored_read_and_removed() {
            let location = format!("test-{}", std::process::id());
            super::save(&location, b"s3cret").unwrap();
            assert_eq!(super::lookup(&location).unwrap().as_deref(), Some(&b"s3cret"[..]));
            assert!(super::remove(&location).unwrap());
            assert_eq!(super::lookup(&location).unwrap(), None);
        }
    }
}
