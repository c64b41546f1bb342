//! Settlement status: what the node knows of its batches on Bitcoin, shared between the
//! batcher (sequencer side), the follower (full-node side) and the RPC server.
//!
//! [`BatchRecord`] is the batcher's durable record of one batch (stored borsh-encoded in the
//! store's `batches` table by [`SettlementStatus::put`]); [`SettlementStatus`] keeps the
//! records in memory for the RPC and, on a follower, the highest L2 height whose state root
//! was checked against Bitcoin (`verified_height`).
//!
//! Invariants:
//! - Records are indexed by batch index, from 0, without gaps: the batcher writes record `i`
//!   only after record `i - 1` exists.
//! - A record's status only moves `pending → posted → confirmed`, except that a reorg or a
//!   vanished transaction takes it back to `pending` (it is then posted again).
//! - `SettlementStatus` is `Send + Sync`; every method takes `&self` and locks briefly.
//!   A store write happens before the in-memory copy changes, so the RPC never shows a state
//!   that a crash would lose.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_storage::{Store, StoreError};
use parking_lot::RwLock;
use serde_json::{json, Value as Json};

/// Where a batch stands on Bitcoin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BatchStatus {
    /// Built and recorded; its transactions are not (or no longer) known to Bitcoin.
    Pending,
    /// Its commit and reveal were accepted by the Bitcoin node (mempool or a shallow block).
    Posted,
    /// Its reveal is in a block at least the confirmation depth deep.
    Confirmed,
}

impl BatchStatus {
    /// `pending`, `posted` or `confirmed` (the RPC's names).
    pub fn as_str(&self) -> &'static str {
        match self {
            BatchStatus::Pending => "pending",
            BatchStatus::Posted => "posted",
            BatchStatus::Confirmed => "confirmed",
        }
    }
}

/// The batcher's durable record of one batch.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BatchRecord {
    /// Position in the chain of batches, from 0.
    pub index: u64,
    /// First L2 block height in the batch.
    pub first_height: u64,
    /// Last L2 block height in the batch.
    pub last_height: u64,
    /// L2 transactions in the batch.
    pub tx_count: u64,
    /// The batch's hash ([`crate::batch::Batch::hash`]); the next batch's `prev_hash`.
    pub hash: [u8; 32],
    /// The state root after the last block.
    pub state_root: [u8; 32],
    /// Bytes of batch data (zstd of the compact batch, all chunks together).
    pub data_bytes: u64,
    /// The commit transaction (consensus encoding) of the latest posting; empty while pending.
    pub commit_tx: Vec<u8>,
    /// The reveal transactions (consensus encoding), one per chunk in chunk order, of the
    /// latest posting; empty while pending.
    pub reveal_txs: Vec<Vec<u8>>,
    /// Commit txid (internal byte order, as rust-bitcoin's `Txid`).
    pub commit_txid: Option<[u8; 32]>,
    /// The last reveal's txid (the last chunk in chunk order on the sequencer; on a follower,
    /// the reveal that completed the batch).
    pub reveal_txid: Option<[u8; 32]>,
    /// Every reveal's txid, in chunk order.
    pub reveal_txids: Vec<[u8; 32]>,
    /// Virtual bytes of the commit and all reveals.
    pub vbytes: u64,
    /// Fees of the commit and all reveals, in satoshis.
    pub fee_sat: u64,
    /// Fee rate of the latest posting, sat/kwu.
    pub fee_rate_sat_kwu: u64,
    /// Where it stands.
    pub status: BatchStatus,
    /// The Bitcoin block height holding the batch once all its reveals are in blocks: the
    /// highest of their heights (where its last chunk is).
    pub bitcoin_height: Option<u32>,
    /// That block's hash.
    pub bitcoin_block: Option<[u8; 32]>,
    /// When the latest posting was broadcast (ms since the Unix epoch).
    pub posted_at_ms: u64,
    /// How many times it was broadcast (first posting, RBF bumps and re-posts).
    pub postings: u32,
    /// The Bitcoin tip height when the latest posting was built (where to look for it).
    pub posted_at_tip: u32,
}

/// Errors reading or writing records.
#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored record does not decode.
    #[error("batch record {index} is corrupt: {why}")]
    Corrupt {
        /// Which record.
        index: u64,
        /// Why.
        why: String,
    },
}

fn txid_hex(id: &Option<[u8; 32]>) -> Json {
    match id {
        // Bitcoin shows txids byte-reversed.
        Some(b) => {
            let mut r = *b;
            r.reverse();
            json!(hex::encode(r))
        }
        None => Json::Null,
    }
}

impl BatchRecord {
    /// The JSON object of `pb_getBatch`.
    pub fn to_json(&self) -> Json {
        json!({
            "index": self.index,
            "first_height": self.first_height,
            "last_height": self.last_height,
            "tx_count": self.tx_count,
            "hash": hex::encode(self.hash),
            "state_root": hex::encode(self.state_root),
            "data_bytes": self.data_bytes,
            "commit_txid": txid_hex(&self.commit_txid),
            "reveal_txid": txid_hex(&self.reveal_txid),
            "reveal_txids": self
                .reveal_txids
                .iter()
                .map(|t| txid_hex(&Some(*t)))
                .collect::<Vec<_>>(),
            "vbytes": self.vbytes,
            "fee_sat": self.fee_sat,
            "status": self.status.as_str(),
            "bitcoin_height": self.bitcoin_height,
            "bitcoin_block": txid_hex(&self.bitcoin_block),
            "postings": self.postings,
        })
    }

    /// Decodes a stored record.
    pub fn decode(index: u64, bytes: &[u8]) -> Result<BatchRecord, SettlementError> {
        let r = BatchRecord::try_from_slice(bytes).map_err(|e| SettlementError::Corrupt {
            index,
            why: e.to_string(),
        })?;
        if r.index != index {
            return Err(SettlementError::Corrupt {
                index,
                why: format!("holds index {}", r.index),
            });
        }
        Ok(r)
    }
}

/// The settlement state shared by the batcher or follower and the RPC.
#[derive(Debug)]
pub struct SettlementStatus {
    records: RwLock<BTreeMap<u64, BatchRecord>>,
    /// `u64::MAX` while unset.
    verified: AtomicU64,
}

impl Default for SettlementStatus {
    fn default() -> SettlementStatus {
        SettlementStatus::new()
    }
}

impl SettlementStatus {
    /// An empty status (no batches, no verified height).
    pub fn new() -> SettlementStatus {
        SettlementStatus {
            records: RwLock::new(BTreeMap::new()),
            verified: AtomicU64::new(u64::MAX),
        }
    }

    /// The status with every record of `store`.
    pub fn load(store: &Store) -> Result<SettlementStatus, SettlementError> {
        let status = SettlementStatus::new();
        if let Some(last) = store.latest_batch_index()? {
            let mut map = status.records.write();
            for i in 0..=last {
                if let Some(bytes) = store.batch_record(i)? {
                    map.insert(i, BatchRecord::decode(i, &bytes)?);
                }
            }
        }
        Ok(status)
    }

    /// Writes `record` to `store` (durably), then shows it.
    pub fn put(&self, store: &Store, record: BatchRecord) -> Result<(), SettlementError> {
        store.put_batch(record.index, &borsh::to_vec(&record).unwrap_or_default())?;
        self.records.write().insert(record.index, record);
        Ok(())
    }

    /// Shows `record` without storing it (a follower's view of batches it read).
    pub fn set(&self, record: BatchRecord) {
        self.records.write().insert(record.index, record);
    }

    /// Forgets records from `index` on (a follower rolling back).
    pub fn truncate(&self, index: u64) {
        self.records.write().split_off(&index);
    }

    /// The record of batch `index`.
    pub fn get(&self, index: u64) -> Option<BatchRecord> {
        self.records.read().get(&index).cloned()
    }

    /// The record with the highest index.
    pub fn last(&self) -> Option<BatchRecord> {
        self.records.read().values().next_back().cloned()
    }

    /// All records, by index.
    pub fn all(&self) -> Vec<BatchRecord> {
        self.records.read().values().cloned().collect()
    }

    /// Batches known (any status).
    pub fn batch_count(&self) -> u64 {
        self.records.read().len() as u64
    }

    /// Batches whose transactions Bitcoin has accepted (`posted` or `confirmed`).
    pub fn batches_posted(&self) -> u64 {
        self.records
            .read()
            .values()
            .filter(|r| r.status != BatchStatus::Pending)
            .count() as u64
    }

    /// Batches confirmed.
    pub fn batches_confirmed(&self) -> u64 {
        self.records
            .read()
            .values()
            .filter(|r| r.status == BatchStatus::Confirmed)
            .count() as u64
    }

    /// The batch holding L2 block `height`.
    pub fn batch_of_height(&self, height: u64) -> Option<BatchRecord> {
        self.records
            .read()
            .values()
            .find(|r| r.first_height <= height && height <= r.last_height)
            .cloned()
    }

    /// The follower's verified L2 height.
    pub fn verified_height(&self) -> Option<u64> {
        match self.verified.load(Ordering::SeqCst) {
            u64::MAX => None,
            h => Some(h),
        }
    }

    /// Sets (or with `None` clears) the verified L2 height.
    pub fn set_verified_height(&self, height: Option<u64>) {
        self.verified
            .store(height.unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parabit_storage::StoreConfig;

    pub(crate) fn record(index: u64, status: BatchStatus) -> BatchRecord {
        BatchRecord {
            index,
            first_height: index * 10 + 1,
            last_height: index * 10 + 10,
            tx_count: 3,
            hash: [index as u8; 32],
            state_root: [7; 32],
            data_bytes: 100,
            commit_tx: Vec::new(),
            reveal_txs: Vec::new(),
            commit_txid: Some([1; 32]),
            reveal_txid: Some([2; 32]),
            reveal_txids: vec![[3; 32], [2; 32]],
            vbytes: 300,
            fee_sat: 600,
            fee_rate_sat_kwu: 500,
            status,
            bitcoin_height: None,
            bitcoin_block: None,
            posted_at_ms: 0,
            postings: 1,
            posted_at_tip: 0,
        }
    }

    #[test]
    fn records_persist_and_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path, StoreConfig::default()).expect("open");
            let s = SettlementStatus::new();
            s.put(&store, record(0, BatchStatus::Confirmed))
                .expect("put");
            s.put(&store, record(1, BatchStatus::Posted)).expect("put");
            s.put(&store, record(2, BatchStatus::Pending)).expect("put");
            assert_eq!(s.batches_posted(), 2);
            assert_eq!(s.batches_confirmed(), 1);
        }
        let store = Store::open(&path, StoreConfig::default()).expect("reopen");
        let s = SettlementStatus::load(&store).expect("load");
        assert_eq!(s.batch_count(), 3);
        assert_eq!(s.get(1), Some(record(1, BatchStatus::Posted)));
        assert_eq!(s.last().map(|r| r.index), Some(2));
        assert_eq!(s.batch_of_height(15).map(|r| r.index), Some(1));
        assert_eq!(s.batch_of_height(31), None);
        let j = s.get(0).expect("record").to_json();
        assert_eq!(j["status"], "confirmed");
        assert_eq!(j["reveal_txid"], hex::encode([2u8; 32]));
        assert_eq!(
            j["reveal_txids"],
            serde_json::json!([hex::encode([3u8; 32]), hex::encode([2u8; 32])])
        );
        s.truncate(1);
        assert_eq!(s.batch_count(), 1);
    }

    #[test]
    fn verified_height_set_and_cleared() {
        let s = SettlementStatus::new();
        assert_eq!(s.verified_height(), None);
        s.set_verified_height(Some(42));
        assert_eq!(s.verified_height(), Some(42));
        s.set_verified_height(None);
        assert_eq!(s.verified_height(), None);
    }

    #[test]
    fn corrupt_records_are_errors() {
        assert!(matches!(
            BatchRecord::decode(0, b"junk"),
            Err(SettlementError::Corrupt { .. })
        ));
        let bytes = borsh::to_vec(&record(3, BatchStatus::Pending)).expect("encode");
        assert!(BatchRecord::decode(4, &bytes).is_err());
        assert!(BatchRecord::decode(3, &bytes).is_ok());
    }
}
