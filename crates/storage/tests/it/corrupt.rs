//! Corrupt and foreign files are clear errors, never panics.

use parabit_exec::Value;
use parabit_storage::{Store, StoreConfig, StoreError};
use redb::{ReadableTable, TableDefinition};

use crate::{commit_next, key, temp_store, writes};

const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");
/// The length of `borsh(Node::Leaf)`: variant, key hash, value hash.
const LEAF_LEN: usize = 65;

/// Replaces every stored leaf entry of `k` (`borsh(leaf) ‖ key length ‖ key ‖ value`) by
/// `f(entry)`.
fn tamper_leaves(txn: &redb::WriteTransaction, k: u32, f: &dyn Fn(&[u8]) -> Vec<u8>) {
    let mut nodes = txn.open_table(NODES).expect("nodes");
    let key_bytes = key(k);
    let key_bytes = key_bytes.as_bytes();
    let mut found = Vec::new();
    for entry in nodes.iter().expect("iter") {
        let (node_key, bytes) = entry.expect("entry");
        let bytes = bytes.value();
        if bytes.len() > LEAF_LEN
            && bytes.get(LEAF_LEN) == Some(&(key_bytes.len() as u8))
            && bytes.get(LEAF_LEN + 1..LEAF_LEN + 1 + key_bytes.len()) == Some(key_bytes)
        {
            found.push((node_key.value().to_vec(), f(bytes)));
        }
    }
    assert!(!found.is_empty(), "no leaf of key {k}");
    for (node_key, bytes) in found {
        nodes
            .insert(node_key.as_slice(), bytes.as_slice())
            .expect("insert");
    }
}

/// A leaf entry with another encoded value.
fn with_value(entry: &[u8], value: &[u8]) -> Vec<u8> {
    let key_len = usize::from(entry[LEAF_LEN]);
    let mut out = entry[..LEAF_LEN + 1 + key_len].to_vec();
    out.extend_from_slice(value);
    out
}

#[test]
fn garbage_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in [
        ("text", b"hello, this is not a database at all".repeat(200)),
        ("zeros", vec![0u8; 8192]),
        ("short", vec![1u8; 3]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        let err = Store::open(&path, StoreConfig::default()).expect_err(name);
        assert!(!err.is_rejection(), "{name}: {err}");
        // The file is left as it was.
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "{name}");
    }
}

#[test]
fn foreign_redb_databases_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Another application's tables.
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        txn.open_table(TableDefinition::<u64, u64>::new("things"))
            .expect("table")
            .insert(1, 2)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = Store::open(&path, StoreConfig::default()).expect_err("foreign");
    assert!(matches!(err, StoreError::Foreign(_)), "{err}");
    // A `meta` table of another layout.
    let path = dir.path().join("meta.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        txn.open_table(TableDefinition::<u64, u64>::new("meta"))
            .expect("table")
            .insert(1, 2)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = Store::open(&path, StoreConfig::default()).expect_err("foreign meta");
    assert!(matches!(err, StoreError::Foreign(_)), "{err}");
    // An unknown format version, and the earlier layout (refused, by name, and left as it
    // was).
    for (tag, old) in [
        (&b"parabit-storage/9"[..], false),
        (&b"parabit-storage/1"[..], true),
    ] {
        let path = dir.path().join("other-version.redb");
        let _ = std::fs::remove_file(&path);
        {
            let db = redb::Database::create(&path).expect("create");
            let txn = db.begin_write().expect("txn");
            txn.open_table(TableDefinition::<&str, &[u8]>::new("meta"))
                .expect("table")
                .insert("format", tag)
                .expect("insert");
            txn.commit().expect("commit");
        }
        let before = std::fs::read(&path).expect("read");
        let err = Store::open(&path, StoreConfig::default()).expect_err("other version");
        if old {
            assert!(
                matches!(&err, StoreError::OldLayout { found, expected }
                    if found == "parabit-storage/1" && expected == "parabit-storage/2"),
                "{err}"
            );
            assert!(err.to_string().contains("replaying the chain"), "{err}");
        } else {
            assert!(matches!(err, StoreError::Foreign(_)), "{err}");
        }
        assert!(!err.is_rejection());
        assert_eq!(std::fs::read(&path).expect("read"), before, "unchanged");
    }
}

#[test]
fn invalid_config_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Store::open(
        dir.path().join("x.redb"),
        StoreConfig {
            keep_versions: Some(0),
            ..StoreConfig::default()
        },
    )
    .expect_err("keep 0");
    assert!(matches!(err, StoreError::InvalidConfig(_)));
}

#[test]
fn undecodable_stored_data_is_an_error() {
    let (_dir, path, store) = temp_store(StoreConfig::default());
    commit_next(&store, &writes(&[(1, Some(Value::Num(1)))]), vec![]);
    drop(store);
    let tamper = |f: &dyn Fn(&redb::WriteTransaction)| {
        let db = redb::Database::create(&path).expect("open");
        let txn = db.begin_write().expect("txn");
        f(&txn);
        txn.commit().expect("commit");
    };
    // A leaf whose value does not decode.
    tamper(&|txn| tamper_leaves(txn, 1, &|e| with_value(e, &[9, 9])));
    let store = Store::open(&path, StoreConfig::default()).expect("open");
    assert!(matches!(store.get(&key(1)), Err(StoreError::Corrupt(_))));
    assert!(matches!(store.load_state(), Err(StoreError::Corrupt(_))));
    drop(store);
    // A valid value again: readable (the store reads what the leaf holds).
    tamper(&|txn| tamper_leaves(txn, 1, &|e| with_value(e, &[0u8; 17])));
    let store = Store::open(&path, StoreConfig::default()).expect("open");
    assert_eq!(store.get(&key(1)).expect("get"), Some(Value::Num(0)));
    drop(store);
    // A key length longer than any state key, or than the entry.
    for len in [70u8, 200] {
        tamper(&|txn| {
            tamper_leaves(txn, 1, &|e| {
                let mut e = e.to_vec();
                e[LEAF_LEN] = len;
                e
            })
        });
        let store = Store::open(&path, StoreConfig::default()).expect("open");
        let err = store.load_state().expect_err("long key");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert!(matches!(store.get(&key(1)), Err(StoreError::Corrupt(_))));
        drop(store);
        // Restore the length for the next case.
        tamper(&|txn| {
            let mut nodes = txn.open_table(NODES).expect("nodes");
            let mut fixed = Vec::new();
            for entry in nodes.iter().expect("iter") {
                let (k, v) = entry.expect("entry");
                let mut v = v.value().to_vec();
                if v.len() > LEAF_LEN {
                    v[LEAF_LEN] = key(1).as_bytes().len() as u8;
                    fixed.push((k.value().to_vec(), v));
                }
            }
            for (k, v) in fixed {
                nodes.insert(k.as_slice(), v.as_slice()).expect("insert");
            }
        });
    }
    let store = Store::open(&path, StoreConfig::default()).expect("open");
    assert_eq!(store.get(&key(1)).expect("get"), Some(Value::Num(0)));
    drop(store);
    // An internal node or a leaf with bytes that do not decode.
    tamper(&|txn| {
        let mut nodes = txn.open_table(NODES).expect("nodes");
        let first = nodes
            .first()
            .expect("first")
            .map(|(k, _)| k.value().to_vec());
        nodes
            .insert(first.expect("a node").as_slice(), [7u8; 3].as_slice())
            .expect("insert");
    });
    let store = Store::open(&path, StoreConfig::default()).expect("open");
    assert!(matches!(store.load_state(), Err(StoreError::Corrupt(_))));
    drop(store);
    // The latest header does not decode: opening says so.
    tamper(&|txn| {
        txn.open_table(TableDefinition::<u64, &[u8]>::new("headers"))
            .expect("headers")
            .insert(0, [1u8, 2, 3].as_slice())
            .expect("insert");
    });
    let err = Store::open(&path, StoreConfig::default()).expect_err("corrupt header");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

#[test]
fn flipped_bytes_give_errors_or_the_original_data() {
    let (_dir, path, store) = temp_store(StoreConfig::default());
    let entries: Vec<_> = (0..300)
        .map(|i| (i, Some(Value::Num(u128::from(i)))))
        .collect();
    commit_next(&store, &writes(&entries), vec![]);
    let state = store.load_state().expect("state");
    let root = store.latest().expect("latest").state_root;
    drop(store);
    let original = std::fs::read(&path).expect("read");
    let mut errors = 0;
    // Damage one 64-byte run at a time at spread-out offsets.
    for i in 1..16 {
        let at = original.len() * i / 16;
        let mut bytes = original.clone();
        for b in bytes.iter_mut().skip(at).take(64) {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).expect("write");
        let outcome = Store::open(&path, StoreConfig::default()).and_then(|mut s| {
            s.check()?;
            Ok((s.load_state()?, s.latest().map(|h| h.state_root)))
        });
        match outcome {
            Ok((s, r)) => {
                assert_eq!(s, state, "damage at {at} changed the state undetected");
                assert_eq!(r, Some(root));
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 0, "no damage was detected at all");
}

#[test]
fn check_detects_a_state_that_does_not_match_the_root() {
    let (_dir, path, mut store) = temp_store(StoreConfig::default());
    commit_next(&store, &writes(&[(1, Some(Value::Num(1)))]), vec![]);
    commit_next(&store, &writes(&[(2, Some(Value::Num(2)))]), vec![]);
    store.check().expect("healthy");
    drop(store);
    {
        let db = redb::Database::create(&path).expect("open");
        let txn = db.begin_write().expect("txn");
        let five = parabit_storage::encode_value(&Value::Num(5));
        tamper_leaves(&txn, 1, &|e| with_value(e, &five));
        txn.commit().expect("commit");
    }
    let mut store = Store::open(&path, StoreConfig::default()).expect("open");
    // The tampered value is what the store now reads, but check sees it is not the leaf's.
    assert_eq!(store.get(&key(1)).expect("get"), Some(Value::Num(5)));
    let err = store.check().expect_err("state differs from root");
    assert!(
        matches!(err, StoreError::Corrupt(ref m) if m.contains("another key or value")),
        "{err}"
    );
    drop(store);
    {
        let db = redb::Database::create(&path).expect("open");
        let txn = db.begin_write().expect("txn");
        txn.open_table(TableDefinition::<&[u8; 32], u64>::new("block_hashes"))
            .expect("hashes")
            .insert(&[0u8; 32], 0)
            .expect("insert");
        let one = parabit_storage::encode_value(&Value::Num(1));
        tamper_leaves(&txn, 1, &|e| with_value(e, &one));
        txn.commit().expect("commit");
    }
    let mut store = Store::open(&path, StoreConfig::default()).expect("open");
    store
        .check()
        .expect("an extra hash entry is harmless; state restored");
}
