//! Commits: what they write and how to read it back (blocks, hashes, receipts, transaction and
//! account indexes), what they refuse (leaving everything unchanged), and reopening.

use parabit_exec::{KeyMap, Value, WriteSet};
use parabit_primitives::{Address, Block, BlockHeader, Receipt, TxId};
use parabit_storage::{Store, StoreConfig, StoreError};

use crate::{apply, build, commit_next, key, receipt, temp_store, tx, writes, Call};

/// Spoils a block and gives the receipts to commit it with.
type Spoiler = Box<dyn Fn(&mut Block<Call>) -> Vec<Receipt>>;

/// Everything observable about a store, to compare before and after a refused commit.
fn snapshot(
    store: &Store,
) -> (
    Option<BlockHeader>,
    KeyMap<Value>,
    Option<Block<Call>>,
    usize,
) {
    let latest = store.latest();
    let next = store.next_height();
    (
        latest,
        store.load_state().expect("state"),
        store.block::<Call>(next).expect("block"),
        store
            .account_txs(&Address([1; 32]), 1000)
            .expect("index")
            .len(),
    )
}

#[test]
fn blocks_receipts_and_indexes_read_back() {
    let (_dir, _path, store) = temp_store(StoreConfig::default());
    let g = commit_next(&store, &writes(&[(1, Some(Value::Num(5)))]), vec![]);
    assert_eq!(store.latest(), Some(g.header.clone()));
    let txs = vec![tx(1, 0, 11), tx(2, 0, 12), tx(1, 1, 13)];
    let ids: Vec<TxId> = txs.iter().map(|t| t.id()).collect();
    let receipts: Vec<Receipt> = (0..3).map(receipt).collect();
    let (prepared, block) = build(&store, &writes(&[(1, Some(Value::Num(6)))]), txs);
    let extra = vec![
        vec![Address([9; 32])],
        vec![Address([9; 32]), Address([2; 32])],
        vec![],
    ];
    store
        .commit(prepared, &block, &receipts, &extra)
        .expect("commit");

    assert_eq!(store.latest(), Some(block.header.clone()));
    assert_eq!(store.header(1).expect("header"), Some(block.header.clone()));
    assert_eq!(store.block::<Call>(1).expect("block"), Some(block.clone()));
    assert_eq!(store.block::<Call>(0).expect("block"), Some(g.clone()));
    assert_eq!(store.block::<Call>(2).expect("block"), None);
    assert_eq!(store.header(2).expect("header"), None);
    assert_eq!(
        store.height_of(&block.header.hash()).expect("hash"),
        Some(1)
    );
    assert_eq!(store.height_of(&g.header.hash()).expect("hash"), Some(0));
    assert_eq!(store.height_of(&[3; 32]).expect("hash"), None);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.tx_location(id).expect("loc"), Some((1, i as u32)));
        assert_eq!(
            store.receipt(id).expect("receipt"),
            Some(receipts[i].clone())
        );
    }
    assert_eq!(store.receipt(&TxId([0; 32])).expect("receipt"), None);
    assert_eq!(store.tx_location(&TxId([0; 32])).expect("loc"), None);
    // Newest first; sender and extra accounts; limit.
    assert_eq!(
        store.account_txs(&Address([1; 32]), 10).expect("a1"),
        vec![ids[2], ids[0]]
    );
    assert_eq!(
        store.account_txs(&Address([1; 32]), 1).expect("a1"),
        vec![ids[2]]
    );
    assert_eq!(
        store.account_txs(&Address([2; 32]), 10).expect("a2"),
        vec![ids[1]]
    );
    assert_eq!(
        store.account_txs(&Address([9; 32]), 10).expect("a9"),
        vec![ids[1], ids[0]]
    );
    assert!(store
        .account_txs(&Address([3; 32]), 10)
        .expect("a3")
        .is_empty());

    // A later block with a transaction of the same id keeps the first location.
    let again = vec![tx(1, 0, 11), tx(1, 2, 14)];
    let new_id = again[1].id();
    commit_next(&store, &WriteSet::default(), again);
    assert_eq!(store.tx_location(&ids[0]).expect("loc"), Some((1, 0)));
    assert_eq!(store.tx_location(&new_id).expect("loc"), Some((2, 1)));
    assert_eq!(
        store.account_txs(&Address([1; 32]), 10).expect("a1"),
        vec![new_id, ids[0], ids[2], ids[0]]
    );
}

#[test]
fn refused_commits_change_nothing() {
    let (_dir, _path, store) = temp_store(StoreConfig::default());
    // Genesis must have a zero parent and height 0.
    let (p, mut b) = build(&store, &writes(&[(1, Some(Value::Num(1)))]), vec![]);
    b.header.parent_hash = [1; 32];
    assert!(matches!(
        store.commit(p, &b, &[], &[]),
        Err(StoreError::ParentMismatch { .. })
    ));
    assert_eq!(store.latest(), None);
    assert!(store.load_state().expect("state").is_empty());
    assert!(matches!(
        store.prepare(1, &WriteSet::default()),
        Err(StoreError::WrongHeight {
            expected: 0,
            got: 1
        })
    ));
    commit_next(
        &store,
        &writes(&[(1, Some(Value::Num(1)))]),
        vec![tx(1, 0, 0)],
    );
    let before = snapshot(&store);
    let ws = writes(&[(1, Some(Value::Num(2))), (2, Some(Value::Num(3)))]);
    let txs = vec![tx(1, 1, 0), tx(1, 2, 0)];
    let receipts = vec![receipt(1), receipt(2)];

    let refusals: Vec<(&str, Spoiler)> = vec![
        (
            "wrong height",
            Box::new(|b| {
                b.header.height = 2;
                vec![receipt(1), receipt(2)]
            }),
        ),
        (
            "wrong parent",
            Box::new(|b| {
                b.header.parent_hash[0] ^= 1;
                vec![receipt(1), receipt(2)]
            }),
        ),
        (
            "wrong state root",
            Box::new(|b| {
                b.header.state_root[0] ^= 1;
                vec![receipt(1), receipt(2)]
            }),
        ),
        (
            "wrong tx root",
            Box::new(|b| {
                b.header.tx_root[0] ^= 1;
                vec![receipt(1), receipt(2)]
            }),
        ),
        (
            "wrong tx count",
            Box::new(|b| {
                b.header.tx_count = 3;
                vec![receipt(1), receipt(2)]
            }),
        ),
        (
            "tx not in root",
            Box::new(|b| {
                b.txs.pop();
                vec![receipt(1)]
            }),
        ),
        ("missing receipt", Box::new(|_| vec![receipt(1)])),
    ];
    for (what, spoil) in refusals {
        let (p, mut b) = build(&store, &ws, txs.clone());
        let r = spoil(&mut b);
        let err = store.commit(p, &b, &r, &[]).expect_err(what);
        assert!(err.is_rejection(), "{what}: {err}");
        assert_eq!(snapshot(&store), before, "{what} changed the store");
    }
    let (p, b) = build(&store, &ws, txs.clone());
    let err = store
        .commit(p, &b, &receipts, &[vec![]])
        .expect_err("extra accounts");
    assert!(matches!(
        err,
        StoreError::CountMismatch {
            what: "extra accounts",
            ..
        }
    ));
    assert_eq!(snapshot(&store), before);

    // A prepared update from before another commit is stale.
    let (old_p, old_b) = build(&store, &ws, txs.clone());
    commit_next(&store, &writes(&[(3, Some(Value::Num(3)))]), vec![]);
    let after = snapshot(&store);
    assert!(matches!(
        store.commit(old_p, &old_b, &receipts, &[]),
        Err(StoreError::WrongHeight {
            expected: 2,
            got: 1
        })
    ));
    assert_eq!(snapshot(&store), after);

    // After all that, a correct block still commits.
    let (p, b) = build(&store, &ws, txs);
    store.commit(p, &b, &receipts, &[]).expect("commit");
    assert_eq!(store.get(&key(2)).expect("get"), Some(Value::Num(3)));
}

#[test]
fn reopening_gives_the_same_state_and_root() {
    let (_dir, path, store) = temp_store(StoreConfig::default());
    let mut model = KeyMap::default();
    let mut last = None;
    for h in 0..10u32 {
        let ws = writes(&[
            (h, Some(Value::Num(u128::from(h)))),
            (h / 2, Some(Value::bytes(vec![h as u8; 3]))),
            (h.saturating_sub(3), None),
        ]);
        apply(&mut model, &ws);
        last = Some(commit_next(&store, &ws, vec![tx(h as u8, 0, 0)]));
    }
    let last = last.expect("blocks");
    drop(store);
    let mut store = Store::open(&path, StoreConfig::default()).expect("reopen");
    assert_eq!(store.latest(), Some(last.header.clone()));
    assert_eq!(store.load_state().expect("state"), model);
    assert_eq!(store.block::<Call>(9).expect("block"), Some(last.clone()));
    store.check().expect("integrity");
    // The reopened store extends the chain.
    let b = commit_next(&store, &writes(&[(100, Some(Value::Num(1)))]), vec![]);
    assert_eq!(b.header.parent_hash, last.header.hash());
    // A second handle on the same file is refused, not corrupting.
    assert!(Store::open(&path, StoreConfig::default()).is_err());
}
