//! The keystore file through the public API. Every test uses the fast KDF parameters.

use std::fs;
use std::path::PathBuf;

use parabit_primitives::SigningKey;
use parabit_wallet::{list_addresses, KdfParams, KeyInfo, Keystore, KeystoreError};

const PW: &str = "correct horse battery staple";

fn fast() -> KdfParams {
    KdfParams::insecure_fast()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub").join("keystore.json");
    (dir, path)
}

/// A keystore with two keys (alice from a seed, bob random), saved.
fn two_keys() -> (tempfile::TempDir, PathBuf, SigningKey, SigningKey) {
    let (dir, path) = setup();
    let mut ks = Keystore::create(&path, PW, fast()).expect("create");
    let alice = SigningKey::from_seed(b"alice");
    ks.import("alice", alice.clone()).expect("import");
    ks.generate("bob").expect("generate");
    let bob = ks.get("bob").expect("bob");
    ks.save().expect("save");
    (dir, path, alice, bob)
}

#[test]
fn create_open_round_trip() {
    let (_dir, path, alice, bob) = two_keys();
    let ks = Keystore::open(&path, PW).expect("open");
    assert_eq!(ks.len(), 2);
    assert_eq!(
        ks.get("alice").expect("alice").secret_bytes(),
        alice.secret_bytes()
    );
    assert_eq!(
        ks.get("bob").expect("bob").secret_bytes(),
        bob.secret_bytes()
    );
    assert_eq!(
        ks.list(),
        vec![
            KeyInfo {
                name: "alice".into(),
                address: alice.address()
            },
            KeyInfo {
                name: "bob".into(),
                address: bob.address()
            },
        ]
    );
    assert_eq!(ks.name_of(&bob.address()), Some("bob"));
    assert_eq!(ks.kdf_params(), fast());
    // Listing needs no password and agrees with the decrypted list.
    assert_eq!(list_addresses(&path).expect("list"), ks.list());
}

#[test]
fn empty_keystore_round_trips() {
    let (_dir, path) = setup();
    let ks = Keystore::create(&path, PW, fast()).expect("create");
    assert!(ks.is_empty());
    assert!(Keystore::open(&path, PW).expect("open").is_empty());
    assert_eq!(list_addresses(&path).expect("list"), vec![]);
    assert!(matches!(
        Keystore::create(&path, PW, fast()),
        Err(KeystoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        Keystore::create(path.with_file_name("other.json"), "", fast()),
        Err(KeystoreError::EmptyPassword)
    ));
}

#[cfg(unix)]
#[test]
fn file_mode_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path, _, _) = two_keys();
    let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn unsaved_changes_are_not_persisted_and_remove_works() {
    let (_dir, path, alice, bob) = two_keys();
    let mut ks = Keystore::open(&path, PW).expect("open");
    assert_eq!(ks.remove("alice").expect("remove"), alice.address());
    assert!(matches!(ks.get("alice"), Err(KeystoreError::UnknownName(n)) if n == "alice"));
    assert_eq!(
        list_addresses(&path).expect("list").len(),
        2,
        "not saved yet"
    );
    ks.save().expect("save");
    let again = Keystore::open(&path, PW).expect("open");
    assert_eq!(
        again.list(),
        vec![KeyInfo {
            name: "bob".into(),
            address: bob.address()
        }]
    );
}

#[test]
fn import_hex_and_rejections_change_nothing() {
    let (_dir, path, alice, _) = two_keys();
    let mut ks = Keystore::open(&path, PW).expect("open");
    let carol = SigningKey::from_seed(b"carol");
    let carol_hex = hex::encode(carol.secret_bytes());
    assert_eq!(
        ks.import_hex("carol", &carol_hex).expect("import"),
        carol.address()
    );
    let before = ks.list();

    assert!(matches!(
        ks.import_hex("carol", &hex::encode(SigningKey::from_seed(b"x").secret_bytes())),
        Err(KeystoreError::DuplicateName(n)) if n == "carol"
    ));
    assert!(matches!(
        ks.generate("alice"),
        Err(KeystoreError::DuplicateName(_))
    ));
    assert!(matches!(
        ks.import("alice2", alice.clone()),
        Err(KeystoreError::DuplicateKey(n)) if n == "alice"
    ));
    let err = ks
        .import_hex("dave", "not hex at all")
        .expect_err("bad hex");
    assert!(matches!(err, KeystoreError::InvalidSecret(_)));
    assert!(matches!(
        ks.import_hex("dave", &"00".repeat(32)),
        Err(KeystoreError::InvalidSecret(_))
    ));
    for bad in ["", "has space", "slash/", &"n".repeat(65), "é"] {
        assert!(
            matches!(ks.generate(bad), Err(KeystoreError::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        ks.remove("nobody"),
        Err(KeystoreError::UnknownName(_))
    ));
    assert_eq!(ks.list(), before);

    ks.save().expect("save");
    let again = Keystore::open(&path, PW).expect("open");
    assert_eq!(
        again.get("carol").expect("carol").address(),
        carol.address()
    );
}

#[test]
fn wrong_password() {
    let (_dir, path, _, _) = two_keys();
    let err = Keystore::open(&path, "wrong").expect_err("wrong password");
    assert!(matches!(err, KeystoreError::WrongPassword));
    assert_eq!(err.to_string(), "wrong password or corrupt keystore");
}

#[test]
fn change_password() {
    let (_dir, path, alice, _) = two_keys();
    let mut ks = Keystore::open(&path, PW).expect("open");
    ks.change_password("new password", fast()).expect("change");
    ks.save().expect("save");
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::WrongPassword)
    ));
    let ks = Keystore::open(&path, "new password").expect("open");
    assert_eq!(ks.get("alice").expect("alice").address(), alice.address());
}

fn json(path: &PathBuf) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).expect("read")).expect("json")
}

fn write_json(path: &PathBuf, v: &serde_json::Value) {
    fs::write(path, serde_json::to_vec(v).expect("encode")).expect("write");
}

#[test]
fn tampered_ciphertext_is_rejected() {
    let (_dir, path, _, _) = two_keys();
    let mut v = json(&path);
    let ct = v["ciphertext"].as_str().expect("hex").to_string();
    let mut bytes = hex::decode(&ct).expect("hex");
    bytes[5] ^= 1;
    v["ciphertext"] = hex::encode(&bytes).into();
    write_json(&path, &v);
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::WrongPassword)
    ));
}

#[test]
fn tampered_clear_metadata_is_rejected() {
    let (_dir, path, _, _) = two_keys();
    let original = json(&path);

    // Swapping the two names.
    let mut v = original.clone();
    v["keys"][0]["name"] = "bob".into();
    v["keys"][1]["name"] = "alice".into();
    write_json(&path, &v);
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::WrongPassword)
    ));

    // Swapping the addresses.
    let mut v = original.clone();
    let a0 = v["keys"][0]["address"].clone();
    v["keys"][0]["address"] = v["keys"][1]["address"].clone();
    v["keys"][1]["address"] = a0;
    write_json(&path, &v);
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::WrongPassword)
    ));

    // Weakening the KDF.
    let mut v = original.clone();
    v["kdf"]["m_cost_kib"] = 8.into();
    write_json(&path, &v);
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::WrongPassword)
    ));

    // A different nonce.
    let mut v = original.clone();
    v["nonce"] = "00".repeat(24).into();
    write_json(&path, &v);
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::WrongPassword)
    ));

    // Restored: opens again.
    write_json(&path, &original);
    assert!(Keystore::open(&path, PW).is_ok());
}

#[test]
fn truncated_and_garbage_files_are_corrupt() {
    let (_dir, path, _, _) = two_keys();
    let bytes = fs::read(&path).expect("read");
    for cut in [0, 1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 3] {
        fs::write(&path, &bytes[..cut]).expect("write");
        let err = Keystore::open(&path, PW).expect_err("truncated");
        assert!(
            matches!(err, KeystoreError::Corrupt { .. }),
            "cut {cut}: {err:?}"
        );
        assert!(matches!(
            list_addresses(&path),
            Err(KeystoreError::Corrupt { .. })
        ));
    }
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    // Ciphertext of the wrong length for the number of keys.
    let ct = v["ciphertext"].as_str().expect("hex").to_string();
    v["ciphertext"] = ct[..ct.len() - 64].into();
    write_json(&path, &v);
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::Corrupt { .. })
    ));
    // Not hex.
    v["ciphertext"] = "zz".into();
    write_json(&path, &v);
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::Corrupt { .. })
    ));
    // Hostile KDF parameters are refused before any work.
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    v["kdf"]["m_cost_kib"] = u32::MAX.into();
    write_json(&path, &v);
    assert!(matches!(
        Keystore::open(&path, PW),
        Err(KeystoreError::Corrupt { .. })
    ));
}

#[test]
fn unknown_version_and_missing_file() {
    let (_dir, path, _, _) = two_keys();
    let mut v = json(&path);
    v["version"] = 2.into();
    write_json(&path, &v);
    let err = Keystore::open(&path, PW).expect_err("v2");
    assert!(
        matches!(err, KeystoreError::UnsupportedVersion { found: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("unsupported keystore version 2"));
    let missing = path.with_file_name("missing.json");
    assert!(matches!(
        Keystore::open(&missing, PW),
        Err(KeystoreError::NotFound(_))
    ));
    assert!(matches!(
        list_addresses(&missing),
        Err(KeystoreError::NotFound(_))
    ));
}

#[test]
fn no_plaintext_secret_in_file() {
    let (dir, path, alice, bob) = two_keys();
    let bytes = fs::read(&path).expect("read");
    let text = String::from_utf8(bytes.clone()).expect("utf8");
    for key in [&alice, &bob] {
        let secret = key.secret_bytes();
        assert!(
            !bytes.windows(32).any(|w| w == secret),
            "raw secret in file"
        );
        let h = hex::encode(secret);
        assert!(!text.to_lowercase().contains(&h), "hex secret in file");
        assert!(
            !text.to_lowercase().contains(&h[..16]),
            "part of a hex secret in file"
        );
    }
    // Only the keystore file is left in the directory (no stray temporary files).
    let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keystore.json")]);
    drop(dir);
}

#[test]
fn every_save_uses_a_fresh_nonce() {
    let (_dir, path, _, _) = two_keys();
    let first = json(&path);
    let ks = Keystore::open(&path, PW).expect("open");
    ks.save().expect("save");
    let second = json(&path);
    assert_ne!(first["nonce"], second["nonce"]);
    assert_ne!(first["ciphertext"], second["ciphertext"]);
    assert_eq!(first["salt"], second["salt"]);
    assert!(Keystore::open(&path, PW).is_ok());
}

#[test]
fn file_format_fields() {
    let (_dir, path, alice, _) = two_keys();
    let v = json(&path);
    assert_eq!(v["version"], 1);
    assert_eq!(v["kdf"]["algorithm"], "argon2id");
    assert_eq!(v["cipher"], "xchacha20poly1305");
    assert_eq!(v["salt"].as_str().expect("salt").len(), 32);
    assert_eq!(v["nonce"].as_str().expect("nonce").len(), 48);
    assert_eq!(v["keys"][0]["name"], "alice");
    assert_eq!(v["keys"][0]["address"], alice.address().to_string());
    assert_eq!(
        v["ciphertext"].as_str().expect("ct").len(),
        2 * (2 * 32 + 16)
    );
}

#[test]
fn production_params_work() {
    // One real derivation at the production cost (64 MiB, t=3): slow-ish but bounded.
    let (_dir, path) = setup();
    let mut ks = Keystore::create(&path, PW, KdfParams::default()).expect("create");
    ks.generate("main").expect("generate");
    ks.save().expect("save");
    let ks = Keystore::open(&path, PW).expect("open");
    assert_eq!(ks.kdf_params(), KdfParams::production());
    assert_eq!(ks.len(), 1);
}

mod mutation {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Changing any one byte of the file never panics and never yields different keys:
        /// `open` either fails or returns exactly the original keys.
        #[test]
        fn one_byte_change_never_yields_other_keys(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let (_dir, path, alice, bob) = two_keys();
            let mut bytes = fs::read(&path).expect("read");
            let i = pos.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            fs::write(&path, &bytes).expect("write");
            let _ = list_addresses(&path);
            if let Ok(ks) = Keystore::open(&path, PW) {
                prop_assert_eq!(ks.len(), 2);
                prop_assert_eq!(ks.get("alice").expect("alice").secret_bytes(), alice.secret_bytes());
                prop_assert_eq!(ks.get("bob").expect("bob").secret_bytes(), bob.secret_bytes());
            }
        }
    }
}

#[test]
fn default_path_and_env_override() {
    // The only test that touches this variable.
    std::env::set_var(parabit_wallet::KEYSTORE_ENV, "/tmp/custom/ks.json");
    assert_eq!(
        parabit_wallet::default_keystore_path().expect("path"),
        PathBuf::from("/tmp/custom/ks.json")
    );
    std::env::remove_var(parabit_wallet::KEYSTORE_ENV);
    match parabit_wallet::default_keystore_path() {
        Ok(p) => assert!(p.ends_with("parabit/keystore.json"), "{p:?}"),
        Err(e) => assert!(matches!(e, KeystoreError::NoDataDir)),
    }
}
