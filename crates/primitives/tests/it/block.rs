//! Blocks: header hash, transaction root, borsh and JSON round trips, hostile JSON.

use parabit_primitives::{tx_root, Block, BlockHeader, SigningKey, TxId};
use proptest::prelude::*;

use crate::{sample_tx, TestCall};

fn header(height: u64, tx_root: [u8; 32], tx_count: u32) -> BlockHeader {
    BlockHeader {
        height,
        parent_hash: [7; 32],
        timestamp_ms: 1_700_000_000_000,
        tx_root,
        state_root: [9; 32],
        bitcoin_height: 840_000,
        fees: 12_345,
        tx_count,
    }
}

fn block() -> Block<TestCall> {
    let key = SigningKey::from_seed(b"block");
    let mut tx = sample_tx(&key);
    let a = key.sign(tx.clone());
    tx.nonce += 1;
    let b = key.sign(tx);
    let ids = [a.id(), b.id()];
    Block {
        header: header(5, tx_root(&ids), 2),
        txs: vec![a, b],
    }
}

#[test]
fn borsh_and_json_round_trip() {
    let b = block();
    assert!(b.txs_match_header());
    let bytes = borsh::to_vec(&b).expect("borsh");
    assert_eq!(
        borsh::from_slice::<Block<TestCall>>(&bytes).expect("back"),
        b
    );
    let json = serde_json::to_string(&b).expect("json");
    assert_eq!(
        serde_json::from_str::<Block<TestCall>>(&json).expect("back"),
        b
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("value");
    assert_eq!(v["header"]["parent_hash"], hex::encode([7u8; 32]));
    assert_eq!(v["header"]["height"], 5);
    assert_eq!(v["txs"][0], hex::encode(b.txs[0].encode()));
}

#[test]
fn header_hash_changes_with_every_field() {
    let base = header(1, [1; 32], 1);
    let variants = [
        BlockHeader {
            height: 2,
            ..base.clone()
        },
        BlockHeader {
            parent_hash: [8; 32],
            ..base.clone()
        },
        BlockHeader {
            timestamp_ms: 1,
            ..base.clone()
        },
        BlockHeader {
            tx_root: [2; 32],
            ..base.clone()
        },
        BlockHeader {
            state_root: [0; 32],
            ..base.clone()
        },
        BlockHeader {
            bitcoin_height: 1,
            ..base.clone()
        },
        BlockHeader {
            fees: 1,
            ..base.clone()
        },
        BlockHeader {
            tx_count: 2,
            ..base.clone()
        },
    ];
    for v in variants {
        assert_ne!(v.hash(), base.hash(), "{v:?}");
    }
    assert_eq!(base.hash(), base.clone().hash());
}

#[test]
fn mismatched_tx_root_or_count_detected() {
    let mut b = block();
    b.header.tx_count = 3;
    assert!(!b.txs_match_header());
    let mut b = block();
    b.txs.swap(0, 1);
    assert!(!b.txs_match_header());
}

#[test]
fn bad_json_is_an_error() {
    let b = block();
    let mut v: serde_json::Value = serde_json::to_value(&b).expect("json");
    v["header"]["state_root"] = "zz".into();
    assert!(serde_json::from_value::<Block<TestCall>>(v.clone()).is_err());
    let mut v: serde_json::Value = serde_json::to_value(&b).expect("json");
    v["txs"][0] = "00ff".into();
    let err = serde_json::from_value::<Block<TestCall>>(v).expect_err("truncated tx");
    assert!(err.to_string().contains("transaction 0"), "{err}");
}

proptest! {
    #[test]
    fn tx_root_is_sensitive_to_content_order_and_length(
        ids in proptest::collection::vec(any::<[u8; 32]>(), 1..20),
        flip in any::<prop::sample::Index>(),
    ) {
        let ids: Vec<TxId> = ids.into_iter().map(TxId).collect();
        let root = tx_root(&ids);
        prop_assert_ne!(root, [0; 32]);
        let mut changed = ids.clone();
        let i = flip.index(changed.len());
        changed[i].0[0] ^= 1;
        prop_assert_ne!(tx_root(&changed), root);
        let mut longer = ids.clone();
        longer.push(ids[ids.len() - 1]);
        prop_assert_ne!(tx_root(&longer), root);
        let shorter = &ids[..ids.len() - 1];
        prop_assert_ne!(tx_root(shorter), root);
    }
}
