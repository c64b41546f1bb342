//! Pruning: with `keep_versions = n` only the last n trees are kept, their proofs (including
//! of values written long ago) still verify, older heights are a clear error, and the tree
//! tables stop growing.

use parabit_exec::{KeyMap, Value};
use parabit_storage::{fresh_state_root, verify_proof, Store, StoreConfig, StoreError};

use crate::{apply, commit_next, key, temp_store, writes};

fn run(store: &Store, blocks: u32, model: &mut KeyMap<Value>) {
    for _ in 0..blocks {
        let h = store.next_height() as u32;
        let mut entries: Vec<_> = (0..20)
            .map(|i| (i, Some(Value::Num(u128::from(h * 100 + i)))))
            .collect();
        if h == 0 {
            // Written once at genesis and never again: must stay provable.
            entries.push((1000, Some(Value::bytes(b"genesis".to_vec()))));
            entries.push((1001, Some(Value::Num(1))));
        }
        if h == 3 {
            entries.push((1001, None));
        }
        let ws = writes(&entries);
        apply(model, &ws);
        commit_next(store, &ws, vec![]);
    }
}

#[test]
fn pruning_keeps_the_last_versions_and_bounds_the_tree() {
    let keep = StoreConfig {
        keep_versions: Some(3),
        ..StoreConfig::default()
    };
    let (_dir, path, store) = temp_store(keep.clone());
    let (_d2, _p2, archive) = temp_store(StoreConfig::default());
    let mut model = KeyMap::default();
    let mut model2 = KeyMap::default();
    run(&store, 15, &mut model);
    run(&archive, 15, &mut model2);
    let at15 = store.tree_stats().expect("stats");
    run(&store, 15, &mut model);
    run(&archive, 15, &mut model2);
    let at30 = store.tree_stats().expect("stats");
    let archive_stats = archive.tree_stats().expect("stats");
    assert_eq!(
        at15.nodes, at30.nodes,
        "pruned tree stops growing: {at15:?} {at30:?}"
    );
    assert_eq!(at15.values, at30.values);
    assert!(
        at30.nodes * 5 < archive_stats.nodes,
        "{at30:?} vs {archive_stats:?}"
    );
    assert_eq!(store.oldest_version(), 27);
    assert_eq!(archive.oldest_version(), 0);
    assert_eq!(
        store.latest().map(|h| h.state_root),
        archive.latest().map(|h| h.state_root)
    );
    assert_eq!(store.load_state().expect("state"), model);

    for height in 27..30 {
        let root = store
            .header(height)
            .expect("header")
            .expect("kept")
            .state_root;
        for k in [0, 19, 1000, 1001, 5000] {
            let (v, proof) = store.get_with_proof(&key(k), height).expect("proof");
            let (v2, _) = archive
                .get_with_proof(&key(k), height)
                .expect("archive proof");
            assert_eq!(v, v2, "key {k} at {height}");
            verify_proof(root, &key(k), v.as_ref(), &proof).expect("verifies");
        }
    }
    let (v, _) = store.get_with_proof(&key(1000), 29).expect("proof");
    assert_eq!(v, Some(Value::bytes(b"genesis".to_vec())));
    for height in [0, 10, 26] {
        let err = store.get_with_proof(&key(1), height).expect_err("pruned");
        assert!(
            matches!(err, StoreError::Pruned { height: h, oldest: 27 } if h == height),
            "{err}"
        );
        assert!(err.is_rejection());
        // The archive still proves it.
        let (v, proof) = archive.get_with_proof(&key(1), height).expect("archive");
        let root = archive.header(height).expect("h").expect("h").state_root;
        verify_proof(root, &key(1), v.as_ref(), &proof).expect("verifies");
    }
    // Blocks and headers are never pruned.
    assert!(store.block::<crate::Call>(0).expect("block").is_some());

    // Reopened without pruning: old heights stay pruned, the root is intact.
    drop(store);
    let mut store = Store::open(&path, StoreConfig::default()).expect("reopen");
    assert_eq!(store.oldest_version(), 27);
    assert!(matches!(
        store.get_with_proof(&key(1), 5),
        Err(StoreError::Pruned { .. })
    ));
    assert_eq!(
        store.latest().map(|h| h.state_root),
        Some(fresh_state_root(&model).expect("root"))
    );
    store.check().expect("integrity");
    run(&store, 2, &mut model);
    assert_eq!(store.oldest_version(), 27);
}

#[test]
fn keep_one_version() {
    let (_dir, _path, store) = temp_store(StoreConfig {
        keep_versions: Some(1),
        quick_repair: false,
        node_cache_depth: 0,
    });
    let mut model = KeyMap::default();
    run(&store, 6, &mut model);
    assert_eq!(store.oldest_version(), 5);
    let root = store.latest().expect("latest").state_root;
    let (v, proof) = store.get_with_proof(&key(3), 5).expect("proof");
    verify_proof(root, &key(3), v.as_ref(), &proof).expect("verifies");
    assert!(store.get_with_proof(&key(3), 4).is_err());
    assert_eq!(root, fresh_state_root(&model).expect("root"));
}

#[test]
fn pruning_turned_on_later_keeps_kept_heights_provable() {
    let (_dir, path, store) = temp_store(StoreConfig::default());
    let mut model = KeyMap::default();
    run(&store, 8, &mut model);
    drop(store);
    let store = Store::open(
        &path,
        StoreConfig {
            keep_versions: Some(2),
            ..StoreConfig::default()
        },
    )
    .expect("reopen");
    run(&store, 8, &mut model);
    let first = store.tree_stats().expect("stats");
    run(&store, 8, &mut model);
    let second = store.tree_stats().expect("stats");
    assert_eq!(first.nodes, second.nodes, "{first:?} {second:?}");
    assert_eq!(first.values, second.values, "{first:?} {second:?}");
    assert_eq!(store.oldest_version(), 22);
    for height in [22, 23] {
        let root = store
            .header(height)
            .expect("header")
            .expect("kept")
            .state_root;
        for k in [0, 1000, 1001] {
            let (v, proof) = store.get_with_proof(&key(k), height).expect("proof");
            verify_proof(root, &key(k), v.as_ref(), &proof).expect("verifies");
        }
    }
    assert!(matches!(
        store.get_with_proof(&key(0), 21),
        Err(StoreError::Pruned { .. })
    ));
    assert_eq!(store.load_state().expect("state"), model);
}
