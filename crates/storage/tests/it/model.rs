//! Model-based property test: random sequences of write sets (inserts, overwrites, deletions,
//! duplicates, deletions of absent keys, empty blocks), with reopening and pruning; after every
//! block the stored state equals a model map, the root equals a from-scratch tree's root, and
//! proofs verify.

use parabit_exec::{KeyMap, Value, WriteSet};
use parabit_storage::{fresh_state_root, verify_proof, Store, StoreConfig};
use proptest::prelude::*;

use crate::{apply, commit_next, key, tx};

fn value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => any::<u128>().prop_map(|n| Some(Value::Num(n % 1000))),
        2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Some(Value::bytes(b))),
        2 => Just(None),
    ]
}

fn write_set() -> impl Strategy<Value = Vec<(u32, Option<Value>)>> {
    proptest::collection::vec((0u32..40, value()), 0..25)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(
        blocks in proptest::collection::vec((write_set(), any::<bool>()), 1..12),
        keep in prop_oneof![Just(None), (1u64..4).prop_map(Some)],
        probe in 0u32..40,
        node_cache_depth in 0usize..3,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.redb");
        let config = StoreConfig { keep_versions: keep, quick_repair: false, node_cache_depth };
        let mut store = Store::open(&path, config.clone()).expect("open");
        let mut model = KeyMap::default();
        let mut roots = Vec::new();
        let mut models = Vec::new();
        for (entries, reopen) in blocks {
            let ws = WriteSet(entries.iter().map(|(k, v)| (key(*k), v.clone())).collect());
            apply(&mut model, &ws);
            let h = store.next_height();
            let b = commit_next(&store, &ws, vec![tx(1, h, 0)]);
            roots.push(b.header.state_root);
            models.push(model.clone());
            if reopen {
                drop(store);
                store = Store::open(&path, config.clone()).expect("reopen");
            }
            prop_assert_eq!(store.load_state().expect("state"), model.clone());
            prop_assert_eq!(b.header.state_root, fresh_state_root(&model).expect("root"));
            let (v, proof) = store.get_with_proof(&key(probe), h).expect("proof");
            prop_assert_eq!(v.clone(), model.get(&key(probe)).cloned());
            prop_assert!(verify_proof(b.header.state_root, &key(probe), v.as_ref(), &proof).is_ok());
        }
        // Every kept past height still proves every key's value of then against its own root.
        let latest = store.next_height() - 1;
        for h in store.oldest_version()..=latest {
            for k in 0u32..40 {
                let (v, proof) = store.get_with_proof(&key(k), h).expect("past proof");
                prop_assert_eq!(v.as_ref(), models[h as usize].get(&key(k)), "key {} at {}", k, h);
                prop_assert!(verify_proof(roots[h as usize], &key(k), v.as_ref(), &proof).is_ok());
            }
        }
        if let Some(n) = keep {
            prop_assert_eq!(store.oldest_version(), (latest + 1).saturating_sub(n));
        }
        store.check().expect("integrity");
    }
}
