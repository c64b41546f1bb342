//! The keystore: one encrypted JSON file holding several named signing keys.
//!
//! # File format (version 1)
//! ```json
//! {
//!   "version": 1,
//!   "kdf": { "algorithm": "argon2id", "m_cost_kib": 65536, "t_cost": 3, "p_cost": 1 },
//!   "cipher": "xchacha20poly1305",
//!   "salt": "<16 bytes, hex>",
//!   "nonce": "<24 bytes, hex>",
//!   "keys": [ { "name": "alice", "address": "pb1…" } ],
//!   "ciphertext": "<hex>"
//! }
//! ```
//! The encryption key is argon2id(password, salt) with the file's parameters (argon2
//! version 0x13, 32-byte output). The plaintext is the 32-byte secret keys concatenated in
//! the order of `keys`; it is sealed with XChaCha20-Poly1305 under a fresh random nonce at
//! every save, with associated data binding the version, KDF parameters, salt and every
//! name and address. So names and addresses are readable without the password
//! ([`list_addresses`]) but cannot be altered without `open` failing.
//!
//! # Invariants
//! - A secret key is never written in plain text: only the ciphertext holds secrets. The
//!   derived key and plaintext buffers are zeroized when dropped ([`Zeroizing`]). (The
//!   secp256k1 key pairs inside [`SigningKey`] are not wiped by that crate; see caveats in
//!   [`Keystore`].)
//! - After [`Keystore::open`] succeeds, every listed address is the address of its secret,
//!   and names and addresses are unique.
//! - Mutations ([`Keystore::generate`], [`Keystore::import`], [`Keystore::remove`]) change
//!   only memory; [`Keystore::save`] writes the file atomically (temporary file in the same
//!   directory, fsync, rename, fsync of the directory), mode 0600 on unix. If saving fails
//!   the old file is untouched.
//! - A rejected operation (duplicate name, unknown name, bad secret) changes nothing.
//! - Any damage to the file gives a typed error, never a panic: a wrong password or any
//!   altered authenticated byte is [`KeystoreError::WrongPassword`] ("wrong password or
//!   corrupt keystore"); bytes that do not parse are [`KeystoreError::Corrupt`].

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use parabit_primitives::{Address, KeyError, SigningKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The file format version this build reads and writes.
pub const KEYSTORE_VERSION: u32 = 1;
/// Environment variable that overrides [`default_keystore_path`].
pub const KEYSTORE_ENV: &str = "PARABIT_KEYSTORE";

const KDF_ALGORITHM: &str = "argon2id";
const CIPHER: &str = "xchacha20poly1305";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const SECRET_LEN: usize = 32;
const AAD_TAG: &[u8] = b"parabit-keystore-v1";
/// Larger files are refused without being parsed.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// The longest key name.
const MAX_NAME_LEN: usize = 64;

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// Decryption failed: the password is wrong or an authenticated byte was altered.
    #[error("wrong password or corrupt keystore")]
    WrongPassword,
    /// The file does not have the keystore's shape (truncated, not JSON, bad hex, ...).
    #[error("corrupt keystore {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A version this build does not know.
    #[error("unsupported keystore version {found} in {path} (this build reads version {KEYSTORE_VERSION})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
    },
    /// A key with this name is already stored.
    #[error("a key named {0:?} already exists")]
    DuplicateName(String),
    /// This secret key is already stored under another name.
    #[error("this key is already stored as {0:?}")]
    DuplicateKey(String),
    /// No key with this name.
    #[error("no key named {0:?}")]
    UnknownName(String),
    /// A name that is empty, too long or has characters other than letters, digits, `-`, `_`, `.`.
    #[error("invalid key name {0:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'")]
    InvalidName(String),
    /// The secret key text is not 64 hex digits of a valid secp256k1 secret.
    #[error("invalid secret key: {0}")]
    InvalidSecret(String),
    /// `create` on a path that already exists.
    #[error("a keystore already exists at {0}")]
    AlreadyExists(PathBuf),
    /// No file at the path.
    #[error("no keystore at {0}")]
    NotFound(PathBuf),
    /// KDF parameters out of the accepted range.
    #[error("invalid key-derivation parameters: {0}")]
    InvalidKdfParams(String),
    /// An empty password on `create` or `change_password`.
    #[error("the password must not be empty")]
    EmptyPassword,
    /// No per-user data directory is known and no path was given.
    #[error("cannot find the user's data directory; pass a keystore path or set {KEYSTORE_ENV}")]
    NoDataDir,
    /// Reading or writing the file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The most memory a keystore may ask for (4 GiB), so a hostile file cannot exhaust it.
    pub const MAX_M_COST_KIB: u32 = 4 << 20;
    /// The most passes a keystore may ask for.
    pub const MAX_T_COST: u32 = 64;
    /// The most lanes a keystore may ask for.
    pub const MAX_P_COST: u32 = 16;

    /// For real keys: 64 MiB, 3 passes, 1 lane (the OWASP-style recommendation).
    pub const fn production() -> KdfParams {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }

    /// Fast and weak (64 KiB, 1 pass): for tests and throwaway devnet keys only.
    pub const fn insecure_fast() -> KdfParams {
        KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Checks the ranges: `1 <= p <= 16`, `1 <= t <= 64`, `8·p <= m <= 4 GiB`.
    pub fn validate(&self) -> Result<(), KeystoreError> {
        let bad = |m: String| Err(KeystoreError::InvalidKdfParams(m));
        if !(1..=Self::MAX_P_COST).contains(&self.p_cost) {
            return bad(format!(
                "p_cost {} not in 1..={}",
                self.p_cost,
                Self::MAX_P_COST
            ));
        }
        if !(1..=Self::MAX_T_COST).contains(&self.t_cost) {
            return bad(format!(
                "t_cost {} not in 1..={}",
                self.t_cost,
                Self::MAX_T_COST
            ));
        }
        let min_m = 8 * self.p_cost;
        if !(min_m..=Self::MAX_M_COST_KIB).contains(&self.m_cost_kib) {
            return bad(format!(
                "m_cost_kib {} not in {min_m}..={}",
                self.m_cost_kib,
                Self::MAX_M_COST_KIB
            ));
        }
        Ok(())
    }

    fn derive(&self, password: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        self.validate()?;
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| KeystoreError::InvalidKdfParams(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password.as_bytes(), salt, key.as_mut())
            .map_err(|e| KeystoreError::InvalidKdfParams(e.to_string()))?;
        Ok(key)
    }
}

impl Default for KdfParams {
    /// [`KdfParams::production`].
    fn default() -> KdfParams {
        KdfParams::production()
    }
}

/// A stored key's public part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Its name.
    pub name: String,
    /// Its address (JSON: the mainnet bech32m string).
    pub address: Address,
}

#[derive(Serialize, Deserialize)]
struct KdfJson {
    algorithm: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    version: u64,
    kdf: KdfJson,
    cipher: String,
    salt: String,
    nonce: String,
    keys: Vec<KeyInfo>,
    ciphertext: String,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u64,
}

/// The parsed, not yet decrypted, contents of a keystore file.
struct Header {
    params: KdfParams,
    salt: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    keys: Vec<KeyInfo>,
    ciphertext: Vec<u8>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> KeystoreError {
    KeystoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_header(path: &Path) -> Result<Header, KeystoreError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeystoreError::NotFound(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(corrupt(
            path,
            format!("file is {} bytes, too large", meta.len()),
        ));
    }
    let bytes = fs::read(path).map_err(io_err(path))?;
    let probe: VersionProbe = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(path, format!("not a keystore JSON file: {e}")))?;
    if probe.version != u64::from(KEYSTORE_VERSION) {
        return Err(KeystoreError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: probe.version,
        });
    }
    let file: FileJson = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(path, format!("bad keystore JSON: {e}")))?;
    if file.kdf.algorithm != KDF_ALGORITHM {
        return Err(corrupt(
            path,
            format!("unsupported KDF {:?}", file.kdf.algorithm),
        ));
    }
    if file.cipher != CIPHER {
        return Err(corrupt(
            path,
            format!("unsupported cipher {:?}", file.cipher),
        ));
    }
    let params = KdfParams {
        m_cost_kib: file.kdf.m_cost_kib,
        t_cost: file.kdf.t_cost,
        p_cost: file.kdf.p_cost,
    };
    params
        .validate()
        .map_err(|e| corrupt(path, e.to_string()))?;
    let salt = hex::decode(&file.salt).map_err(|e| corrupt(path, format!("salt: {e}")))?;
    if !(8..=64).contains(&salt.len()) {
        return Err(corrupt(path, format!("salt is {} bytes", salt.len())));
    }
    let nonce: [u8; NONCE_LEN] = hex::decode(&file.nonce)
        .map_err(|e| corrupt(path, format!("nonce: {e}")))?
        .try_into()
        .map_err(|_| corrupt(path, format!("nonce is not {NONCE_LEN} bytes")))?;
    let ciphertext =
        hex::decode(&file.ciphertext).map_err(|e| corrupt(path, format!("ciphertext: {e}")))?;
    let expected = file.keys.len() * SECRET_LEN + TAG_LEN;
    if ciphertext.len() != expected {
        return Err(corrupt(
            path,
            format!(
                "ciphertext is {} bytes; {} keys need {expected}",
                ciphertext.len(),
                file.keys.len()
            ),
        ));
    }
    for (i, k) in file.keys.iter().enumerate() {
        validate_name(&k.name).map_err(|e| corrupt(path, e.to_string()))?;
        if file.keys[..i].iter().any(|o| o.name == k.name) {
            return Err(corrupt(path, format!("duplicate name {:?}", k.name)));
        }
        if file.keys[..i].iter().any(|o| o.address == k.address) {
            return Err(corrupt(path, format!("duplicate address {}", k.address)));
        }
    }
    Ok(Header {
        params,
        salt,
        nonce,
        keys: file.keys,
        ciphertext,
    })
}

/// The associated data: everything in the file except the nonce and the ciphertext.
fn associated_data(params: &KdfParams, salt: &[u8], keys: &[KeyInfo]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + keys.len() * 80);
    aad.extend_from_slice(AAD_TAG);
    aad.extend_from_slice(&KEYSTORE_VERSION.to_le_bytes());
    aad.extend_from_slice(&params.m_cost_kib.to_le_bytes());
    aad.extend_from_slice(&params.t_cost.to_le_bytes());
    aad.extend_from_slice(&params.p_cost.to_le_bytes());
    aad.extend_from_slice(&(salt.len() as u32).to_le_bytes());
    aad.extend_from_slice(salt);
    aad.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for k in keys {
        aad.extend_from_slice(&(k.name.len() as u32).to_le_bytes());
        aad.extend_from_slice(k.name.as_bytes());
        aad.extend_from_slice(k.address.as_bytes());
    }
    aad
}

fn validate_name(name: &str) -> Result<(), KeystoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(KeystoreError::InvalidName(name.to_string()))
    }
}

/// Reads the names and addresses of a keystore without the password.
///
/// They are authenticated only by [`Keystore::open`]: someone able to write the file could
/// change what this shows (but not make `open` accept it).
pub fn list_addresses(path: &Path) -> Result<Vec<KeyInfo>, KeystoreError> {
    read_header(path).map(|h| h.keys)
}

/// `$PARABIT_KEYSTORE` if set and non-empty, else `<data_dir>/parabit/keystore.json` (on
/// Linux `~/.local/share/parabit/keystore.json`).
pub fn default_keystore_path() -> Result<PathBuf, KeystoreError> {
    if let Some(p) = std::env::var_os(KEYSTORE_ENV) {
        if !p.is_empty() {
            return Ok(PathBuf::from(p));
        }
    }
    dirs::data_dir()
        .map(|d| d.join("parabit").join("keystore.json"))
        .ok_or(KeystoreError::NoDataDir)
}

struct Entry {
    name: String,
    key: SigningKey,
}

/// An open keystore: the decrypted keys in memory and the derived encryption key, so
/// [`Keystore::save`] needs no password.
///
/// Caveats: the secp256k1 key pairs inside [`SigningKey`] (and copies returned by
/// [`Keystore::get`]) are not zeroized on drop by the secp256k1 crate; the derived key and
/// all plaintext buffers are. Two processes saving the same file concurrently: the last
/// rename wins (no locking).
pub struct Keystore {
    path: PathBuf,
    params: KdfParams,
    salt: Vec<u8>,
    key: Zeroizing<[u8; 32]>,
    entries: Vec<Entry>,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.path)
            .field("params", &self.params)
            .field("keys", &self.list())
            .finish_non_exhaustive()
    }
}

impl Keystore {
    /// Creates an empty keystore file at `path` (creating its parent directories, mode 0700 on
    /// unix). Refuses an existing path and an empty password.
    pub fn create(
        path: impl Into<PathBuf>,
        password: &str,
        params: KdfParams,
    ) -> Result<Keystore, KeystoreError> {
        let path = path.into();
        if password.is_empty() {
            return Err(KeystoreError::EmptyPassword);
        }
        params.validate()?;
        match fs::symlink_metadata(&path) {
            Ok(_) => return Err(KeystoreError::AlreadyExists(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent).map_err(io_err(parent))?;
        }
        let mut salt = vec![0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let key = params.derive(password, &salt)?;
        let ks = Keystore {
            path,
            params,
            salt,
            key,
            entries: Vec::new(),
        };
        ks.save()?;
        Ok(ks)
    }

    /// Opens and decrypts the keystore at `path`.
    pub fn open(path: impl Into<PathBuf>, password: &str) -> Result<Keystore, KeystoreError> {
        let path = path.into();
        let header = read_header(&path)?;
        let key = header.params.derive(password, &header.salt)?;
        let aad = associated_data(&header.params, &header.salt, &header.keys);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&header.nonce),
                    Payload {
                        msg: &header.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeystoreError::WrongPassword)?,
        );
        if plaintext.len() != header.keys.len() * SECRET_LEN {
            return Err(corrupt(&path, "decrypted key count does not match"));
        }
        let mut entries = Vec::with_capacity(header.keys.len());
        for (info, chunk) in header
            .keys
            .into_iter()
            .zip(plaintext.chunks_exact(SECRET_LEN))
        {
            let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
            secret.copy_from_slice(chunk);
            let key = SigningKey::from_secret_bytes(*secret)
                .map_err(|e| corrupt(&path, format!("key {:?}: {e}", info.name)))?;
            if key.address() != info.address {
                return Err(corrupt(
                    &path,
                    format!("key {:?} does not match its address", info.name),
                ));
            }
            entries.push(Entry {
                name: info.name,
                key,
            });
        }
        Ok(Keystore {
            path,
            params: header.params,
            salt: header.salt,
            key,
            entries,
        })
    }

    /// The file this keystore saves to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The KDF parameters in use.
    pub fn kdf_params(&self) -> KdfParams {
        self.params
    }

    /// Names and addresses, in insertion order.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.entries
            .iter()
            .map(|e| KeyInfo {
                name: e.name.clone(),
                address: e.key.address(),
            })
            .collect()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The key named `name`.
    pub fn get(&self, name: &str) -> Result<SigningKey, KeystoreError> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.key.clone())
            .ok_or_else(|| KeystoreError::UnknownName(name.to_string()))
    }

    /// The name of the key for `address`, if stored.
    pub fn name_of(&self, address: &Address) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.key.address() == *address)
            .map(|e| e.name.as_str())
    }

    /// Adds a fresh random key named `name` (in memory; call [`Keystore::save`]).
    pub fn generate(&mut self, name: &str) -> Result<Address, KeystoreError> {
        self.import(name, SigningKey::random())
    }

    /// Adds `key` under `name` (in memory; call [`Keystore::save`]). Refuses a taken name
    /// or a key already stored under another name.
    pub fn import(&mut self, name: &str, key: SigningKey) -> Result<Address, KeystoreError> {
        validate_name(name)?;
        if self.entries.iter().any(|e| e.name == name) {
            return Err(KeystoreError::DuplicateName(name.to_string()));
        }
        let address = key.address();
        if let Some(other) = self.name_of(&address) {
            return Err(KeystoreError::DuplicateKey(other.to_string()));
        }
        self.entries.push(Entry {
            name: name.to_string(),
            key,
        });
        Ok(address)
    }

    /// Adds the key with this secret: 64 hex digits, optionally prefixed by `0x`, surrounding
    /// whitespace ignored. Error messages never echo the secret.
    pub fn import_hex(&mut self, name: &str, secret_hex: &str) -> Result<Address, KeystoreError> {
        let key = parse_secret_hex(secret_hex)?;
        self.import(name, key)
    }

    /// Removes the key named `name` (in memory; call [`Keystore::save`]) and returns its
    /// address.
    pub fn remove(&mut self, name: &str) -> Result<Address, KeystoreError> {
        let i = self
            .entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| KeystoreError::UnknownName(name.to_string()))?;
        Ok(self.entries.remove(i).key.address())
    }

    /// Re-derives the encryption key from a new password (fresh salt) and parameters (in
    /// memory; call [`Keystore::save`]).
    pub fn change_password(
        &mut self,
        new_password: &str,
        params: KdfParams,
    ) -> Result<(), KeystoreError> {
        if new_password.is_empty() {
            return Err(KeystoreError::EmptyPassword);
        }
        let mut salt = vec![0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let key = params.derive(new_password, &salt)?;
        self.params = params;
        self.salt = salt;
        self.key = key;
        Ok(())
    }

    /// Encrypts every key under a fresh nonce and atomically replaces the file.
    pub fn save(&self) -> Result<(), KeystoreError> {
        let bytes = self.encode()?;
        write_atomic(&self.path, &bytes, |_| Ok(())).map_err(io_err(&self.path))
    }

    fn encode(&self) -> Result<Vec<u8>, KeystoreError> {
        let keys = self.list();
        let mut plaintext = Zeroizing::new(Vec::with_capacity(keys.len() * SECRET_LEN));
        for e in &self.entries {
            let secret = Zeroizing::new(e.key.secret_bytes());
            plaintext.extend_from_slice(secret.as_ref());
        }
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(&self.params, &self.salt, &keys);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(self.key.as_ref()));
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupt(&self.path, "encryption failed"))?;
        let file = FileJson {
            version: u64::from(KEYSTORE_VERSION),
            kdf: KdfJson {
                algorithm: KDF_ALGORITHM.to_string(),
                m_cost_kib: self.params.m_cost_kib,
                t_cost: self.params.t_cost,
                p_cost: self.params.p_cost,
            },
            cipher: CIPHER.to_string(),
            salt: hex::encode(&self.salt),
            nonce: hex::encode(nonce),
            keys,
            ciphertext: hex::encode(ciphertext),
        };
        let mut out = serde_json::to_vec_pretty(&file)
            .map_err(|e| corrupt(&self.path, format!("cannot encode: {e}")))?;
        out.push(b'\n');
        Ok(out)
    }
}

/// Parses a secret key from hex (64 digits, optional `0x`); the error never holds the input.
pub fn parse_secret_hex(secret_hex: &str) -> Result<SigningKey, KeystoreError> {
    let s = secret_hex.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.len() != 2 * SECRET_LEN {
        return Err(KeystoreError::InvalidSecret(format!(
            "expected {} hex digits, got {}",
            2 * SECRET_LEN,
            s.len()
        )));
    }
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    hex::decode_to_slice(s, secret.as_mut())
        .map_err(|_| KeystoreError::InvalidSecret("not hexadecimal".to_string()))?;
    SigningKey::from_secret_bytes(*secret)
        .map_err(|e: KeyError| KeystoreError::InvalidSecret(e.to_string()))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Writes `bytes` to a new temporary file beside `path` (mode 0600 on unix), fsyncs it,
/// calls `before_rename` (a test hook for failure injection), renames it over `path` and
/// fsyncs the directory. On any error the temporary file is removed and `path` is untouched.
fn write_atomic(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{:016x}",
        file_name.to_string_lossy(),
        std::process::id(),
        rand::rngs::OsRng.next_u64()
    ));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        before_rename(&tmp)?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    #[cfg(unix)]
    fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_failure_leaves_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ks.json");
        fs::write(&path, b"old contents").expect("write");
        let err = write_atomic(&path, b"new contents", |tmp| {
            assert_eq!(fs::read(tmp).expect("tmp readable"), b"new contents");
            Err(io::Error::other("injected failure"))
        })
        .expect_err("must fail");
        assert_eq!(err.to_string(), "injected failure");
        assert_eq!(fs::read(&path).expect("read"), b"old contents");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("ks.json")],
            "temp file removed"
        );

        write_atomic(&path, b"new contents", |_| Ok(())).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"new contents");
    }

    #[test]
    fn atomic_write_rename_failure_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A non-empty directory in the way: rename onto it fails.
        let path = dir.path().join("ks.json");
        fs::create_dir(&path).expect("mkdir");
        fs::write(path.join("x"), b"x").expect("write");
        assert!(write_atomic(&path, b"data", |_| Ok(())).is_err());
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn kdf_params_validation() {
        assert!(KdfParams::production().validate().is_ok());
        assert!(KdfParams::insecure_fast().validate().is_ok());
        for bad in [
            KdfParams {
                m_cost_kib: 64,
                t_cost: 0,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: 0,
            },
            KdfParams {
                m_cost_kib: 7,
                t_cost: 1,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: u32::MAX,
                t_cost: 1,
                p_cost: 1,
            },
            KdfParams {
                m_cost_kib: 64,
                t_cost: 1000,
                p_cost: 1,
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(KeystoreError::InvalidKdfParams(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn aad_binds_names_and_addresses() {
        let p = KdfParams::insecure_fast();
        let a = SigningKey::from_seed(b"a").address();
        let b = SigningKey::from_seed(b"b").address();
        let k1 = vec![
            KeyInfo {
                name: "x".into(),
                address: a,
            },
            KeyInfo {
                name: "y".into(),
                address: b,
            },
        ];
        let k2 = vec![
            KeyInfo {
                name: "y".into(),
                address: a,
            },
            KeyInfo {
                name: "x".into(),
                address: b,
            },
        ];
        assert_ne!(
            associated_data(&p, b"salt", &k1),
            associated_data(&p, b"salt", &k2)
        );
        assert_ne!(
            associated_data(&p, b"salt", &k1),
            associated_data(&p, b"salt2", &k1)
        );
    }

    #[test]
    fn secret_hex_parsing() {
        let k = SigningKey::from_seed(b"hex");
        let h = hex::encode(k.secret_bytes());
        assert_eq!(parse_secret_hex(&h).expect("ok").address(), k.address());
        assert_eq!(
            parse_secret_hex(&format!(" 0x{} ", h.to_uppercase()))
                .expect("ok")
                .address(),
            k.address()
        );
        for bad in [
            String::new(),
            "zz".repeat(32),
            h[..62].to_string(),
            format!("{h}00"),
            "00".repeat(32),
            "ff".repeat(32),
        ] {
            let err = parse_secret_hex(&bad).expect_err("bad");
            assert!(matches!(err, KeystoreError::InvalidSecret(_)), "{err:?}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(&bad), "error echoes the secret");
            }
        }
    }
}
