//! The operating system's credential store, where a scheduled job that
//! runs unattended finds a repository's password (`cairn key store`):
//! Secret Service on Linux and the BSDs (through `secret-tool`, package
//! libsecret-tools), the login Keychain on macOS (through `security`), the
//! Credential Manager on Windows. Each entry is the service `cairn` and the
//! repository's location. A password never passes through argv: it goes
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
    use super::{helper, said, CredError};

    /// `security`'s "the item could not be found".
    const NOT_FOUND: i32 = 44;

    pub fn lookup(location: &str) -> Result<Option<Vec<u8>>, CredError> {
        let out = helper(
            "security",
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

    /// `security -i` reads the command from stdin, so the password is never
    /// an argument; quotes and backslashes are escaped for its parser.
    pub fn save(location: &str, secret: &[u8]) -> Result<(), CredError> {
        let quote = |b: &[u8]| {
            let mut q = vec![b'"'];
            for &c in b {
                if c == b'"' || c == b'\\' {
                    q.push(b'\\');
                }
                q.push(c);
            }
            q.push(b'"');
            q
        };
        let mut line = b"add-generic-password -U -s cairn -a ".to_vec();
        line.extend(quote(location.as_bytes()));
        line.extend_from_slice(b" -w ");
        line.extend(quote(secret));
        line.push(b'\n');
        let out = helper("security", &["-i"], &line)?;
        match out.status.success() && out.stderr.is_empty() {
            true => Ok(()),
            false => Err(CredError::Failed(format!("security: {}", said(&out)))),
        }
    }

    pub fn remove(location: &str) -> Result<bool, CredError> {
        let out = helper(
            "security",
            &["delete-generic-password", "-s", "cairn", "-a", location],
            b"",
        )?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(NOT_FOUND) => Ok(false),
            _ => Err(CredError::Failed(format!("security: {}", said(&out)))),
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
