//! Integration tests of parabit-storage: roots, proofs, commits and their refusals, reads and
//! indexes, reopening, pruning, corrupt files, a model-based property test, and a crash test
//! that kills a writer process with SIGKILL.

mod commit;
mod corrupt;
mod crash;
mod model;
mod proofs;
mod pruning;
mod roots;

use parabit_exec::{Key, KeyMap, Value, WriteSet};
use parabit_primitives::{
    tx_root, Address, Block, BlockHeader, Receipt, SignedTransaction, Transaction, TxStatus,
};
use parabit_storage::{Prepared, Store, StoreConfig};

/// The call type of test transactions.
pub type Call = u64;

/// A state key from a small number.
pub fn key(n: u32) -> Key {
    Key::from_parts(&[b"k", &n.to_be_bytes()]).expect("short key")
}

/// A write set from (key number, value) pairs; `None` deletes.
pub fn writes(entries: &[(u32, Option<Value>)]) -> WriteSet {
    WriteSet(entries.iter().map(|(k, v)| (key(*k), v.clone())).collect())
}

/// An unsigned test transaction (the store does not check signatures).
pub fn tx(sender: u8, nonce: u64, call: Call) -> SignedTransaction<Call> {
    SignedTransaction {
        tx: Transaction {
            chain_id: 1,
            sender: Address([sender; 32]),
            nonce,
            fee: 10,
            call,
        },
        signature: [0; 64],
    }
}

/// A receipt for transaction number `i`.
pub fn receipt(i: u64) -> Receipt {
    Receipt {
        status: if i.is_multiple_of(3) {
            TxStatus::Failed(format!("no {i}"))
        } else {
            TxStatus::Success
        },
        fee_paid: 10,
    }
}

/// The header of the next block on top of `store`'s latest, for `txs` and `state_root`.
pub fn next_header(
    store: &Store,
    txs: &[SignedTransaction<Call>],
    state_root: [u8; 32],
) -> BlockHeader {
    let latest = store.latest();
    let ids: Vec<_> = txs.iter().map(SignedTransaction::id).collect();
    BlockHeader {
        height: latest.as_ref().map_or(0, |h| h.height + 1),
        parent_hash: latest.as_ref().map_or([0; 32], BlockHeader::hash),
        timestamp_ms: 1_000 + latest.as_ref().map_or(0, |h| h.height),
        tx_root: tx_root(&ids),
        state_root,
        bitcoin_height: 7,
        fees: 10 * txs.len() as u128,
        tx_count: txs.len() as u32,
    }
}

/// Prepares `ws` and builds the matching next block with `txs`.
pub fn build(
    store: &Store,
    ws: &WriteSet,
    txs: Vec<SignedTransaction<Call>>,
) -> (Prepared, Block<Call>) {
    let prepared = store.prepare(store.next_height(), ws).expect("prepare");
    let header = next_header(store, &txs, prepared.state_root());
    (prepared, Block { header, txs })
}

/// Prepares and commits the next block with `ws` and `txs` (receipts made up).
pub fn commit_next(store: &Store, ws: &WriteSet, txs: Vec<SignedTransaction<Call>>) -> Block<Call> {
    let receipts: Vec<Receipt> = (0..txs.len() as u64).map(receipt).collect();
    let (prepared, block) = build(store, ws, txs);
    store
        .commit(prepared, &block, &receipts, &[])
        .expect("commit");
    block
}

/// A fresh store in a temporary directory.
pub fn temp_store(config: StoreConfig) -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("parabit.redb");
    let store = Store::open(&path, config).expect("open");
    (dir, path, store)
}

/// Applies a write set to a model state.
pub fn apply(model: &mut KeyMap<Value>, ws: &WriteSet) {
    ws.apply_to(model);
}
