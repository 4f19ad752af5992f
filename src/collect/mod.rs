//! Collectors turn part of the machine into snapshot entries. They know
//! nothing of storage: they yield paths and metadata in manifest order.

pub mod command;
pub mod dir;
pub mod env;
pub mod facts;
pub mod secrets;
pub mod tree;

/// The user's fingerprint secret: 32 random bytes kept (as hex) in
/// `$CAIRN_CONFIG_DIR/fingerprint.key`, else the platform's config
/// directory (`~/.config/cairn`), created 0600 on first use. It keys the
/// fingerprints of secret values, so that a repository alone does not let
/// anyone test guesses against them. Two processes creating it at once
/// agree: the file is linked into place only if none is there yet.
pub fn fingerprint_secret() -> std::io::Result<[u8; 32]> {
    let dir = match std::env::var_os("CAIRN_CONFIG_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => dirs::config_dir()
            .ok_or_else(|| std::io::Error::other("no config directory"))?
            .join("cairn"),
    };
    let path = dir.join("fingerprint.key");
    if let Some(key) = read_secret(&path)? {
        return Ok(key);
    }
    std::fs::create_dir_all(&dir)?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".fingerprint.key.{}", std::process::id()));
    crate::private::write_new(&tmp, blake3::Hash::from_bytes(key).to_hex().as_bytes(), true)?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret(&path)?
            .ok_or_else(|| std::io::Error::other(format!("{} is not a fingerprint key", path.display()))),
        Err(e) => Err(e),
    }
}

fn read_secret(path: &std::path::Path) -> std::io::Result<Option<[u8; 32]>> {
    match std::fs::read_to_string(path) {
        Ok(text) => blake3::Hash::from_hex(text.trim())
            .map(|h| Some(*h.as_bytes()))
            .map_err(|_| std::io::Error::other(format!("{} is not a fingerprint key", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
