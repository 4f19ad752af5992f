//! Key files (FORMAT.md section 15): the master key, wrapped by a key
//! derived from a password with Argon2id, one file per password.

use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::crypto::{Crypto, Domain, SealError, SealKey, Secret};
use super::id::ObjectId;
use super::{RepoError, READ_ATTEMPTS};
use crate::sink::{ObjectInfo, ObjectKind, Sink, SinkError};

/// A password, wiped when dropped.
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    pub fn new(bytes: Vec<u8>) -> Password {
        Password(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Where the password of an encrypted repository comes from, asked only
/// when one is opened. The error says what was tried.
pub trait PasswordSource {
    fn password(&self, location: &str) -> Result<Password, String>;

    /// An unlock token kept for `location` (the OS credential store),
    /// tried before a password is asked for.
    fn stored(&self, _location: &str) -> Option<UnlockToken> {
        None
    }
}

/// What `cairn key store` keeps in the OS credential store: the name of
/// one key file and the key-encryption key its password derives. It opens
/// the repository without the half-second Argon2id, and only while that
/// key file exists (`key remove` and `key passwd` revoke it). It is not
/// the password, so a password also used elsewhere never sits in the store.
#[derive(Clone)]
pub struct UnlockToken {
    pub key: String,
    pub kek: Secret,
}

impl UnlockToken {
    const PREFIX: &'static str = "cairn-unlock-v1 ";

    /// `cairn-unlock-v1 <key file name> <key-encryption key in hex>`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let hex = Zeroizing::new(hex(&self.kek.0));
        Zeroizing::new(format!("{}{} {}", UnlockToken::PREFIX, self.key, hex.as_str()).into_bytes())
    }

    /// A token as [`UnlockToken::encode`] wrote it (`None`: anything else,
    /// such as a password stored by hand).
    pub fn decode(bytes: &[u8]) -> Option<UnlockToken> {
        let text = std::str::from_utf8(bytes).ok()?.trim_end();
        let (key, kek) = text.strip_prefix(UnlockToken::PREFIX)?.split_once(' ')?;
        let kek = Zeroizing::new(unhex(kek)?);
        let kek = <[u8; 32]>::try_from(kek.as_slice()).ok()?;
        let valid_name = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
        valid_name.then(|| UnlockToken {
            key: key.to_string(),
            kek: Secret(kek),
        })
    }
}

impl std::fmt::Debug for UnlockToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UnlockToken({}, ..)", self.key)
    }
}

/// No password at all: plain repositories only.
pub struct NoPassword;

impl PasswordSource for NoPassword {
    fn password(&self, _location: &str) -> Result<Password, String> {
        Err("no password was given".into())
    }
}

/// One fixed password (tests, and `init` opening what it made).
pub struct Given(pub Vec<u8>);

impl Drop for Given {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl PasswordSource for Given {
    fn password(&self, _location: &str) -> Result<Password, String> {
        Ok(Password::new(self.0.clone()))
    }
}

/// The most a key file may be.
pub const MAX_KEY_FILE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub version: u32,
    pub kdf: KdfParams,
    pub master_key: String,
    pub info: String,
}

/// Who made a key, readable by whoever holds any key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    pub created: chrono::DateTime<chrono::FixedOffset>,
    pub host: String,
    pub user: String,
}

#[derive(Serialize, Deserialize)]
struct Wrapped {
    master: String,
    config: String,
}

impl Drop for Wrapped {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.master.zeroize();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("bad key file: {0}")]
    Bad(String),
    #[error("Argon2id refused its parameters: {0}")]
    Kdf(String),
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl KdfParams {
    /// Parameters that take about half a second here (FORMAT.md section
    /// 15): 64 MiB, one lane, the iterations that fill the time. In a
    /// debug build with `CAIRN_TEST_WEAK_KDF` set (the test suite) the
    /// cheapest Argon2id allows, so that a thousand unlocks do not take
    /// minutes; a release build never makes a weak key.
    pub fn tuned() -> Result<KdfParams, KeyError> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|_| SealError::NoRandom)?;
        let mut params = KdfParams {
            algorithm: "argon2id".into(),
            memory_kib: 64 * 1024,
            iterations: 1,
            parallelism: 1,
            salt: hex(&salt),
        };
        if cfg!(debug_assertions) && std::env::var_os("CAIRN_TEST_WEAK_KDF").is_some() {
            params.memory_kib = 8;
            return Ok(params);
        }
        // One pass and three: their difference is the cost of a pass, the
        // rest what every derivation pays anyway (64 MiB to allocate and
        // fault in), so the tuned derivation as a whole takes the target.
        let time = |params: &KdfParams| -> Result<f64, KeyError> {
            let started = Instant::now();
            params.derive(b"calibration")?;
            Ok(started.elapsed().as_secs_f64())
        };
        let one = time(&params)?;
        params.iterations = 3;
        let three = time(&params)?;
        let pass = ((three - one) / 2.0).max(Duration::from_millis(1).as_secs_f64());
        let fixed = (one - pass).max(0.0);
        let target = Duration::from_millis(500).as_secs_f64();
        params.iterations = (((target - fixed) / pass).round().max(0.0) as u32).clamp(2, 100);
        Ok(params)
    }

    fn check(&self) -> Result<(), KeyError> {
        let ok = self.algorithm == "argon2id"
            && (8..=1 << 20).contains(&self.memory_kib)
            && (1..=100).contains(&self.iterations)
            && (1..=16).contains(&self.parallelism)
            && self.memory_kib >= 8 * self.parallelism;
        if !ok {
            return Err(KeyError::Bad(format!(
                "KDF parameters outside what cairn accepts: {} m={} KiB t={} p={}",
                self.algorithm, self.memory_kib, self.iterations, self.parallelism
            )));
        }
        Ok(())
    }

    /// The key-encryption key of `password`.
    fn derive(&self, password: &[u8]) -> Result<Secret, KeyError> {
        self.check()?;
        let salt = unhex(&self.salt)
            .filter(|s| s.len() == 32)
            .ok_or_else(|| KeyError::Bad("bad salt".into()))?;
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| KeyError::Kdf(e.to_string()))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Secret([0; 32]);
        argon
            .hash_password_into(password, &salt, &mut out.0)
            .map_err(|e| KeyError::Kdf(e.to_string()))?;
        Ok(out)
    }
}

/// A new key file for `master`, opened by `password`; its name and bytes.
/// `config` is the hash of the repository's config.json, sealed with the
/// master key so that a replaced config is found.
pub fn make_key_file(
    master: &Secret,
    config: &ObjectId,
    password: &Password,
    params: KdfParams,
    info: &KeyInfo,
) -> Result<(ObjectId, Vec<u8>), KeyError> {
    let kek = params.derive(password.as_bytes())?;
    let wrapped = Wrapped {
        master: hex(&master.0),
        config: config.to_hex(),
    };
    let plain = Zeroizing::new(serde_json::to_vec(&wrapped).map_err(|e| KeyError::Bad(e.to_string()))?);
    let b64 = base64::engine::general_purpose::STANDARD;
    let master_key = b64.encode(SealKey::new(&kek).seal(Domain::Key, &plain)?);
    let info = serde_json::to_vec(info).map_err(|e| KeyError::Bad(e.to_string()))?;
    let info = b64.encode(Crypto::from_master(master).seal(Domain::KeyInfo, info)?);
    let file = KeyFile {
        version: 1,
        kdf: params,
        master_key,
        info,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Bad(e.to_string()))?;
    Ok((ObjectId::of(&bytes), bytes))
}

/// A key file's bytes, parsed.
pub fn parse_key_file(bytes: &[u8]) -> Result<KeyFile, KeyError> {
    let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| KeyError::Bad(e.to_string()))?;
    if file.version != 1 {
        return Err(KeyError::Bad(format!(
            "key file version {} (this cairn reads 1)",
            file.version
        )));
    }
    file.kdf.check()?;
    if unhex(&file.kdf.salt).is_none_or(|salt| salt.len() != 32) {
        return Err(KeyError::Bad("the salt is not 64 hex digits".into()));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    if b64.decode(&file.master_key).is_err() || b64.decode(&file.info).is_err() {
        return Err(KeyError::Bad("master_key or info is not base64".into()));
    }
    Ok(file)
}

/// The master key and the config hash `file` wraps, if `password` opens
/// it (`None`: another password's key), and the key-encryption key.
pub fn unwrap(file: &KeyFile, password: &Password) -> Result<Option<(Secret, ObjectId, Secret)>, KeyError> {
    let kek = file.kdf.derive(password.as_bytes())?;
    Ok(unwrap_with(file, &kek)?.map(|(master, config)| (master, config, kek)))
}

/// [`unwrap`] with the key-encryption key already derived.
pub fn unwrap_with(file: &KeyFile, kek: &Secret) -> Result<Option<(Secret, ObjectId)>, KeyError> {
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&file.master_key)
        .map_err(|_| KeyError::Bad("master_key is not base64".into()))?;
    let plain = match SealKey::new(kek).open(Domain::Key, &sealed) {
        Ok(plain) => Zeroizing::new(plain),
        // Another key's envelope: its header does not check, or its tag.
        // (Damage shows earlier: a key file is named by its hash.)
        Err(SealError::Tag | SealError::BadHeader | SealError::BadLength) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let wrapped: Wrapped =
        serde_json::from_slice(&plain).map_err(|_| KeyError::Bad("wrapped key is not JSON".into()))?;
    let master = unhex(&wrapped.master)
        .and_then(|m| <[u8; 32]>::try_from(m.as_slice()).ok())
        .ok_or_else(|| KeyError::Bad("wrapped key is not 32 bytes".into()))?;
    let config = wrapped
        .config
        .parse()
        .map_err(|_| KeyError::Bad("wrapped config hash is not a hash".into()))?;
    Ok(Some((Secret(master), config)))
}

/// Who made the key in `file`, as its `info` says (sealed with the data key).
pub fn read_info(file: &KeyFile, crypto: &Crypto) -> Result<KeyInfo, KeyError> {
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&file.info)
        .map_err(|_| KeyError::Bad("info is not base64".into()))?;
    let plain = crypto.open(Domain::KeyInfo, sealed)?;
    serde_json::from_slice(&plain).map_err(|e| KeyError::Bad(format!("info: {e}")))
}

/// Writes a new key file for `master` opened by `password`; its name.
pub fn write_key(
    sink: &dyn Sink,
    master: &Secret,
    config: &ObjectId,
    password: &Password,
) -> Result<String, RepoError> {
    let key_err = |source| RepoError::Key {
        name: "(new)".into(),
        source,
    };
    let info = KeyInfo {
        created: chrono::Local::now().fixed_offset(),
        host: super::lock::hostname(),
        user: super::lock::username(),
    };
    let params = KdfParams::tuned().map_err(key_err)?;
    let (id, bytes) = make_key_file(master, config, password, params, &info).map_err(key_err)?;
    let name = id.to_hex();
    match sink.write(ObjectKind::Key, &name, bytes.into()) {
        Ok(_) | Err(SinkError::AlreadyExists { .. }) => Ok(name),
        Err(e) => Err(e.into()),
    }
}

/// A key file parsed, or what is wrong with it.
pub type Judged = Result<KeyFile, String>;

/// Every key file the store lists, read and judged (see [`judge`]).
pub fn key_files(sink: &dyn Sink) -> Result<Vec<(String, Judged)>, RepoError> {
    judge_all(sink, sink.list(ObjectKind::Key)?)
}

fn judge_all(sink: &dyn Sink, listed: Vec<ObjectInfo>) -> Result<Vec<(String, Judged)>, RepoError> {
    let mut out = Vec::new();
    for info in listed {
        if let Some(judged) = judge(sink, &info)? {
            out.push((info.name, judged));
        }
    }
    Ok(out)
}

/// One listed key file, read (again, up to [`READ_ATTEMPTS`] reads, while
/// its bytes do not match its name: a garbled transfer is not damage) and
/// judged: parsed, or what is wrong with it. `None`: removed since the
/// listing (`key remove`).
fn judge(sink: &dyn Sink, info: &ObjectInfo) -> Result<Option<Judged>, RepoError> {
    if info.size > MAX_KEY_FILE as u64 {
        return Ok(Some(Err("it is larger than a key file may be".into())));
    }
    let mut judged = None;
    for _ in 0..READ_ATTEMPTS {
        let bytes = match sink.read(ObjectKind::Key, &info.name) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let actual = ObjectId::of(&bytes);
        if actual.to_hex() == info.name {
            return Ok(Some(parse_key_file(&bytes).map_err(|e| e.to_string())));
        }
        judged = Some(Err(format!("its bytes hash to {actual}")));
    }
    Ok(judged)
}

/// The key files that can be read; one that cannot is passed over with a
/// warning (it opens nothing; `check` names it).
pub fn read_keys(sink: &dyn Sink) -> Result<Vec<(String, KeyFile)>, RepoError> {
    Ok(usable(key_files(sink)?))
}

fn usable(judged: Vec<(String, Judged)>) -> Vec<(String, KeyFile)> {
    judged
        .into_iter()
        .filter_map(|(name, judged)| match judged {
            Ok(file) => Some((name, file)),
            Err(e) => {
                tracing::warn!("passed over: key {name} is damaged: {e}");
                None
            }
        })
        .collect()
}

/// The master key that a token or password from `passwords` opens, and
/// the token (key file name and key-encryption key) that opened it. The
/// config it was made for must be this one. A stored token reads only its
/// own key file; a password is tried on every one.
pub fn unlock(
    sink: &dyn Sink,
    config: &ObjectId,
    passwords: &dyn PasswordSource,
) -> Result<(Secret, UnlockToken), RepoError> {
    let location = sink.location();
    let listed = sink.list(ObjectKind::Key)?;
    if listed.is_empty() {
        return Err(RepoError::NoKeys { location });
    }
    if let Some(token) = passwords.stored(&location) {
        if let Some(master) = open_with_token(sink, config, &token, &listed)? {
            return Ok((master, token));
        }
    }
    let files = usable(judge_all(sink, listed)?);
    if files.is_empty() {
        return Err(RepoError::NoKeys { location });
    }
    let password = passwords
        .password(&location)
        .map_err(|detail| RepoError::NoPassword {
            location: location.clone(),
            detail,
        })?;
    // A key made for another config (a stray from an `init` that lost a
    // race) does not stop the search; only when no key fits is the config
    // called replaced.
    let mut other_config = false;
    // One bad key file costs only its own password.
    for (key, file) in files {
        match unwrap(&file, &password) {
            Ok(Some((master, made_for, kek))) if made_for == *config => {
                return Ok((master, UnlockToken { key, kek }))
            }
            Ok(Some(_)) => other_config = true,
            Ok(None) => {}
            Err(e) => tracing::warn!("passed over: key {key}: {e}"),
        }
    }
    match other_config {
        true => Err(RepoError::ConfigReplaced { location }),
        false => Err(RepoError::WrongPassword { location }),
    }
}

/// The master key `token` opens, from its key file alone; `None`, with a
/// warning that says to store it again, when it no longer does.
fn open_with_token(
    sink: &dyn Sink,
    config: &ObjectId,
    token: &UnlockToken,
    listed: &[ObjectInfo],
) -> Result<Option<Secret>, RepoError> {
    let location = sink.location();
    let judged = match listed.iter().find(|info| info.name == token.key) {
        Some(info) => judge(sink, info)?,
        None => None,
    };
    let opened = match judged {
        Some(Ok(file)) => unwrap_with(&file, &token.kek).ok().flatten(),
        Some(Err(_)) => None,
        None => {
            tracing::warn!(
                "the unlock key stored for {location} belongs to key {}, which is gone; run `cairn key store` again",
                token.key.get(..8).unwrap_or_default()
            );
            return Ok(None);
        }
    };
    match opened {
        Some((master, made_for)) if made_for == *config => return Ok(Some(master)),
        _ => tracing::warn!(
            "the unlock key stored for {location} no longer opens it; run `cairn key store` again"
        ),
    }
    Ok(None)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak() -> KdfParams {
        KdfParams {
            algorithm: "argon2id".into(),
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            salt: hex(&[3; 32]),
        }
    }

    fn info() -> KeyInfo {
        KeyInfo {
            created: chrono::Local::now().fixed_offset(),
            host: "h".into(),
            user: "u".into(),
        }
    }

    #[test]
    fn a_key_opens_with_its_password_only() {
        let master = Secret([5; 32]);
        let config = ObjectId::of(b"config");
        let password = Password::new(b"correct horse".to_vec());
        let (name, bytes) = make_key_file(&master, &config, &password, weak(), &info()).unwrap();
        assert_eq!(name, ObjectId::of(&bytes));
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("0505") && !text.contains("\"h\""), "{text}");
        let file = parse_key_file(&bytes).unwrap();
        let (got, got_config, kek) = unwrap(&file, &password).unwrap().unwrap();
        assert_eq!(got.0, master.0);
        assert_eq!(got_config, config);
        assert!(unwrap(&file, &Password::new(b"wrong".to_vec()))
            .unwrap()
            .is_none());
        let (again, _) = unwrap_with(&file, &kek).unwrap().unwrap();
        assert_eq!(again.0, master.0);
        let crypto = Crypto::from_master(&master);
        assert_eq!(read_info(&file, &crypto).unwrap().host, "h");
    }

    #[test]
    fn hostile_kdf_parameters_are_refused_before_any_work() {
        let mut file = KeyFile {
            version: 1,
            kdf: weak(),
            master_key: String::new(),
            info: String::new(),
        };
        file.kdf.memory_kib = u32::MAX;
        let bytes = serde_json::to_vec(&file).unwrap();
        assert!(matches!(parse_key_file(&bytes), Err(KeyError::Bad(_))));
        file.kdf.memory_kib = 8;
        file.kdf.iterations = 0;
        assert!(parse_key_file(&serde_json::to_vec(&file).unwrap()).is_err());
    }

    #[test]
    fn an_unlock_token_reads_back_and_nothing_else_passes_for_one() {
        let token = UnlockToken {
            key: "ab".repeat(32),
            kek: Secret([7; 32]),
        };
        let encoded = token.encode();
        let back = UnlockToken::decode(&encoded).unwrap();
        assert_eq!((back.key, back.kek.0), (token.key.clone(), token.kek.0));
        assert!(format!("{token:?}").find("0707").is_none());
        for bad in [
            &b"correct horse battery staple"[..],
            b"cairn-unlock-v1 abab",
            b"cairn-unlock-v1 ../../etc/passwd 0707",
            b"cairn-unlock-v1 ",
        ] {
            assert!(
                UnlockToken::decode(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let short = format!("cairn-unlock-v1 {} {}", "ab".repeat(32), "07".repeat(31));
        assert!(UnlockToken::decode(short.as_bytes()).is_none());
    }
}
