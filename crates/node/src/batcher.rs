//! The batcher (sequencer side of settlement): every `max_blocks` L2 blocks or `interval`, it
//! builds the next [`Batch`] from the store, encodes it (compact, zstd) and splits its data
//! into chunks of at most `chunk_bytes` ([`crate::batch`]), writes it to Bitcoin as one commit
//! and one reveal per chunk (each reveal carries one envelope, signed by the sequencer key),
//! and follows them until every reveal is in a block and the highest is at the confirmation
//! depth.
//!
//! One [`Batcher::tick`] does all the work synchronously through the [`BitcoinClient`] trait
//! (so tests drive it step by step on the embedded regtest chain); [`Batcher::run`] calls it
//! in a loop on a blocking thread.
//!
//! Invariants:
//! - Batches cover the L2 chain from height 1 without gaps or overlaps: batch `i + 1` starts at
//!   batch `i`'s `last_height + 1` and its `prev_hash` is batch `i`'s hash; records are written
//!   in index order (see [`crate::settlement`]).
//! - Write-ahead: a set (commit and all reveals) is signed and its record (with every
//!   transaction) stored *before* it is broadcast, so a crash at any point leads, on restart,
//!   to finding the same transactions on Bitcoin or re-broadcasting them: a batch is never
//!   posted twice under two different sets unless the first set is gone from Bitcoin
//!   (vanished, reorged out and dropped).
//! - Bitcoin order equals batch order: while batch `i` is not confirmed, batch `i + 1`'s
//!   commit spends the outputs of *all* of batch `i`'s reveals, so every chunk of `i + 1`
//!   comes after every chunk of `i` and no miner can put `i + 1` first. Records are processed
//!   in index order and a record that cannot be handled stops the walk.
//! - A stuck set (not all in blocks after `bump_after`, none of it mined yet) is replaced by
//!   RBF: a new set spending the same inputs at a fee rate whose commit fee covers the evicted
//!   transactions (BIP 125). A partly mined set is waited for.
//! - A batch whose set leaves the chain (reorg) goes back to `posted`/re-broadcast, or, when
//!   Bitcoin refuses it, is built and posted again (same batch, same chunks, new set).
//! - Nothing from Bitcoin can panic the batcher: every client failure is an error of this tick,
//!   retried at the next one.
//!
//! Limit: Bitcoin Core's default mempool policy caps an unconfirmed package (a transaction
//! with its unconfirmed ancestors, or with its descendants) at 101 kvB. A batch of more than
//! one full chunk (its commit's descendants are all its reveals), or a full batch chained to
//! an unconfirmed full one, exceeds it on a bitcoind left at its defaults; the embedded
//! regtest chain does not enforce it. `max_data_bytes` defaults to one chunk, so only a single
//! L2 block larger than a chunk makes a multi-chunk batch; raise bitcoind's
//! `-limitancestorsize` / `-limitdescendantsize` where that, or chaining, matters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::key::Keypair;
use bitcoin::{BlockHash, FeeRate, OutPoint, Transaction, Txid};
use parabit_bitcoin::{
    bitcoin, build_commit_reveals, BitcoinClient, ClientError, EnvelopeError, TaprootWallet, Utxo,
};
use parabit_modules::{Call, GenesisSpec};
use parabit_storage::{Store, StoreError};

use crate::batch::{Batch, BatchCodec, BatchError, BATCH_VERSION, MAX_CHUNKS, MAX_CHUNK_BYTES};
use crate::node::now_ms;
use crate::settlement::{BatchRecord, BatchStatus, SettlementError, SettlementStatus};

/// How the batcher works.
#[derive(Clone, Debug)]
pub struct BatcherConfig {
    /// A batch as soon as this many new L2 blocks exist (and at most this many per batch).
    pub max_blocks: u64,
    /// A batch of whatever new blocks exist once this long has passed since the last one.
    pub interval: Duration,
    /// Blocks deep (the reveal's block counts as 1) for `confirmed`.
    pub confirmations: u32,
    /// Replace (RBF) a pair that is still not in a block after this long.
    pub bump_after: Duration,
    /// Confirmed records deeper than this many blocks are no longer checked for reorgs.
    pub reorg_horizon: u32,
    /// Batch data (all chunks together) a batch of several blocks stays within: over it, it
    /// is split by blocks. A single block over it still goes out alone, in as many chunks as
    /// it needs (at most [`MAX_CHUNKS`]).
    pub max_data_bytes: usize,
    /// Most batch data per chunk (per reveal), at most [`MAX_CHUNK_BYTES`].
    pub chunk_bytes: usize,
    /// How often [`Batcher::run`] ticks.
    pub poll: Duration,
    /// Test-only fault switch: the batch with this index claims a wrong state root (its last
    /// block's header and the batch's root are altered), so tests can check that full nodes
    /// catch a lying sequencer. `None` in every real configuration.
    pub fault_wrong_root: Option<u64>,
}

impl BatcherConfig {
    /// The devnet's: every 20 blocks or 5 s, 1 confirmation, bump after 60 s.
    pub fn devnet() -> BatcherConfig {
        BatcherConfig {
            max_blocks: 20,
            interval: Duration::from_secs(5),
            confirmations: 1,
            bump_after: Duration::from_secs(60),
            reorg_horizon: 100,
            max_data_bytes: MAX_CHUNK_BYTES,
            chunk_bytes: MAX_CHUNK_BYTES,
            poll: Duration::from_millis(500),
            fault_wrong_root: None,
        }
    }
}

/// Why a tick failed.
#[derive(Debug, thiserror::Error)]
pub enum BatcherError {
    /// The Bitcoin backend failed (see [`ClientError::is_transient`]).
    #[error("bitcoin: {0}")]
    Client(#[from] ClientError),
    /// Building the pair failed (e.g. not enough funds).
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// Encoding the batch failed.
    #[error("batch: {0}")]
    Batch(#[from] BatchError),
    /// The L2 store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A batch record could not be read or written.
    #[error("settlement: {0}")]
    Settlement(#[from] SettlementError),
    /// A block the batch needs is not in the store.
    #[error("L2 block {0} is missing from the store")]
    MissingBlock(u64),
    /// One L2 block alone encodes to more than one batch may hold.
    #[error("L2 block {height} encodes to {bytes} bytes, over the {limit}-byte batch limit")]
    BlockTooLarge {
        /// The block.
        height: u64,
        /// Its encoded batch size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A stored transaction does not decode.
    #[error("batch {0}: stored transaction does not decode")]
    CorruptTx(u64),
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Indexes of batches built (recorded) in this tick.
    pub built: Vec<u64>,
    /// Indexes broadcast (first postings, re-broadcasts, re-posts).
    pub broadcast: Vec<u64>,
    /// Indexes replaced by RBF.
    pub bumped: Vec<u64>,
    /// Indexes that became confirmed.
    pub confirmed: Vec<u64>,
    /// Indexes whose transactions had left Bitcoin and were built again.
    pub reposted: Vec<u64>,
}

/// The sequencer's batcher.
pub struct Batcher<C: BitcoinClient> {
    store: Arc<dyn StoreAccess>,
    client: C,
    wallet: TaprootWallet,
    signer: Keypair,
    config: BatcherConfig,
    status: Arc<SettlementStatus>,
    codec: BatchCodec,
    last_batch_ms: u64,
    /// Bitcoin blocks seen: height → (hash, txids).
    seen: BTreeMap<u32, (BlockHash, HashSet<Txid>)>,
}

/// Where the batcher reads L2 blocks (the node's store).
pub trait StoreAccess: Send + Sync {
    /// The store.
    fn store(&self) -> &Store;
    /// The latest committed L2 height.
    fn head_height(&self) -> u64;
    /// The chain's genesis spec (the batch encoding's dictionary and chain id).
    fn spec(&self) -> &GenesisSpec;
}

impl StoreAccess for crate::node::Node {
    fn store(&self) -> &Store {
        self.chain().store()
    }
    fn spec(&self) -> &GenesisSpec {
        self.chain().spec()
    }
    fn head_height(&self) -> u64 {
        self.chain().head().height
    }
}

impl StoreAccess for crate::chain::Chain {
    fn store(&self) -> &Store {
        crate::chain::Chain::store(self)
    }
    fn head_height(&self) -> u64 {
        self.head().height
    }
    fn spec(&self) -> &GenesisSpec {
        crate::chain::Chain::spec(self)
    }
}

fn txid_bytes(id: Txid) -> [u8; 32] {
    id.to_byte_array()
}

fn txid_of(bytes: [u8; 32]) -> Txid {
    Txid::from_byte_array(bytes)
}

/// Bitcoin Core's "already known / already in the chain" answers to `sendrawtransaction`.
pub(crate) fn already_known(e: &ClientError) -> bool {
    match e {
        ClientError::Rejected { code, reason } => {
            *code == Some(-27) || reason.contains("already") || reason.contains("txn-already")
        }
        _ => false,
    }
}

impl<C: BitcoinClient> Batcher<C> {
    /// A batcher over `source`'s blocks, posting through `client`, funded by `wallet`,
    /// signing envelopes with `signer`, with the records of `status` (load it from the store
    /// with [`SettlementStatus::load`] so that a restart continues where it stopped).
    pub fn new(
        source: Arc<dyn StoreAccess>,
        client: C,
        wallet: TaprootWallet,
        signer: Keypair,
        config: BatcherConfig,
        status: Arc<SettlementStatus>,
    ) -> Batcher<C> {
        let codec = BatchCodec::from_genesis(source.spec());
        Batcher {
            codec,
            store: source,
            client,
            wallet,
            signer,
            config,
            status,
            last_batch_ms: now_ms(),
            seen: BTreeMap::new(),
        }
    }

    /// The shared status.
    pub fn status(&self) -> &Arc<SettlementStatus> {
        &self.status
    }

    /// The Bitcoin client.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// The batch encoding's codec (genesis chain id and dictionary).
    pub fn codec(&self) -> &BatchCodec {
        &self.codec
    }

    /// Whether a scanned block of the active chain holds `txid`.
    fn mined(&self, txid: &Txid) -> bool {
        self.seen.values().any(|(_, ids)| ids.contains(txid))
    }

    /// Builds the batch with `index` covering `first..=last` from the store.
    pub fn build_batch(
        &self,
        index: u64,
        prev_hash: [u8; 32],
        first: u64,
        last: u64,
    ) -> Result<Batch, BatcherError> {
        let store = self.store.store();
        let mut blocks = Vec::new();
        for h in first..=last {
            let b = store
                .block::<Call>(h)?
                .ok_or(BatcherError::MissingBlock(h))?;
            blocks.push(b);
        }
        if self.config.fault_wrong_root == Some(index) {
            if let Some(last) = blocks.last_mut() {
                tracing::warn!(batch = index, "TEST FAULT: posting a wrong state root");
                last.header.state_root[0] ^= 0xff;
            }
        }
        let state_root = blocks
            .last()
            .map(|b| b.header.state_root)
            .ok_or(BatcherError::MissingBlock(first))?;
        Ok(Batch {
            index,
            prev_hash,
            first_height: first,
            blocks,
            state_root,
        })
    }

    /// The batch of `record`, rebuilt from the store (encoding is deterministic).
    fn batch_of(&self, record: &BatchRecord) -> Result<Batch, BatcherError> {
        let prev = match record.index.checked_sub(1) {
            Some(p) => self.status.get(p).map(|r| r.hash).unwrap_or([0; 32]),
            None => [0; 32],
        };
        self.build_batch(record.index, prev, record.first_height, record.last_height)
    }

    /// One step: follow posted pairs, post what is pending, build the next batch if due.
    pub fn tick(&mut self, now_ms: u64) -> Result<TickReport, BatcherError> {
        let mut report = TickReport::default();
        let (tip, _) = self.client.tip()?;
        self.locate(tip)?;
        self.walk(tip, now_ms, &mut report)?;
        while let Some(record) = self.next_due(now_ms)? {
            let index = record.index;
            report.built.push(index);
            self.status.put(self.store.store(), record)?;
            self.last_batch_ms = now_ms;
            // Post it now (the walk stops at the first record it cannot handle).
            self.walk(tip, now_ms, &mut report)?;
            if self.status.get(index).map(|r| r.status) == Some(BatchStatus::Pending) {
                break;
            }
        }
        Ok(report)
    }

    /// Index of the first record that still needs attention.
    fn first_open(&self, tip: u32) -> Option<u64> {
        self.status
            .all()
            .into_iter()
            .find(|r| {
                !(r.status == BatchStatus::Confirmed
                    && r.bitcoin_height
                        .is_some_and(|h| tip.saturating_sub(h) >= self.config.reorg_horizon))
            })
            .map(|r| r.index)
    }

    /// Updates which Bitcoin block holds each open record's reveal.
    fn locate(&mut self, tip: u32) -> Result<(), BatcherError> {
        let Some(first) = self.first_open(tip) else {
            return Ok(());
        };
        // Forget cached blocks that are no longer on the active chain.
        self.seen.retain(|h, _| *h <= tip);
        let mut hashes: HashMap<u32, BlockHash> = HashMap::new();
        // Records whose reveal is not (or no longer) in a known block of the active chain.
        let mut need = Vec::new();
        let mut scan_from = tip.saturating_add(1);
        for r in self.status.all().into_iter().filter(|r| r.index >= first) {
            if r.reveal_txid.is_none() {
                continue;
            }
            let mut since = r.posted_at_tip;
            if let (Some(h), Some(b)) = (r.bitcoin_height, r.bitcoin_block) {
                if h <= tip {
                    let hash = match hashes.get(&h) {
                        Some(x) => *x,
                        None => {
                            let x = self.client.block_hash(h)?;
                            hashes.insert(h, x);
                            x
                        }
                    };
                    if hash.to_byte_array() == b {
                        continue;
                    }
                }
                since = since.min(h);
            }
            scan_from = scan_from.min(since.saturating_sub(6));
            need.push(r);
        }
        if need.is_empty() {
            return Ok(());
        }
        scan_from = scan_from.max(tip.saturating_sub(2_000));
        let wanted: HashSet<Txid> = need
            .iter()
            .flat_map(|r| {
                r.reveal_txids
                    .iter()
                    .copied()
                    .chain(r.commit_txid)
                    .map(txid_of)
            })
            .collect();
        let mut found: BTreeMap<Txid, (u32, BlockHash)> = BTreeMap::new();
        for h in scan_from..=tip {
            let hash = match hashes.get(&h) {
                Some(x) => *x,
                None => self.client.block_hash(h)?,
            };
            let cached = matches!(self.seen.get(&h), Some((c, _)) if *c == hash);
            if !cached {
                let block = self.client.block(&hash)?;
                let ids = block.txdata.iter().map(|t| t.compute_txid()).collect();
                self.seen.insert(h, (hash, ids));
            }
            if let Some((_, ids)) = self.seen.get(&h) {
                for id in wanted.iter().filter(|id| ids.contains(*id)) {
                    found.insert(*id, (h, hash));
                }
            }
        }
        for r in need {
            // In a block once every reveal is: at the highest of their blocks.
            let mut place: Option<(u32, BlockHash)> = None;
            for reveal in r.reveal_txids.iter().copied().map(txid_of) {
                match found.get(&reveal).copied() {
                    Some(p) => {
                        if place.is_none_or(|q| p.0 > q.0) {
                            place = Some(p);
                        }
                    }
                    None => {
                        place = None;
                        break;
                    }
                }
            }
            if r.reveal_txids.is_empty() {
                place = None;
            }
            let new_height = place.map(|(h, _)| h);
            let new_block = place.map(|(_, b)| b.to_byte_array());
            if new_height != r.bitcoin_height || new_block != r.bitcoin_block {
                let mut updated = r.clone();
                updated.bitcoin_height = new_height;
                updated.bitcoin_block = new_block;
                if new_height.is_none() && r.status == BatchStatus::Confirmed {
                    tracing::warn!(batch = r.index, "batch reveals left the chain (reorg)");
                    updated.status = BatchStatus::Posted;
                }
                self.status.put(self.store.store(), updated)?;
            }
        }
        Ok(())
    }

    /// Handles open records in index order: confirmation, broadcast, re-post, RBF.
    fn walk(&mut self, tip: u32, now: u64, report: &mut TickReport) -> Result<(), BatcherError> {
        let Some(first) = self.first_open(tip) else {
            return Ok(());
        };
        let indexes: Vec<u64> = self
            .status
            .all()
            .into_iter()
            .filter(|r| r.index >= first)
            .map(|r| r.index)
            .collect();
        for index in indexes {
            let Some(r) = self.status.get(index) else {
                continue;
            };
            if let Some(h) = r.bitcoin_height {
                let depth = tip.saturating_sub(h).saturating_add(1);
                let status = if depth >= self.config.confirmations {
                    BatchStatus::Confirmed
                } else {
                    BatchStatus::Posted
                };
                if status != r.status {
                    if status == BatchStatus::Confirmed {
                        report.confirmed.push(index);
                    }
                    let mut updated = r;
                    updated.status = status;
                    self.status.put(self.store.store(), updated)?;
                }
                continue;
            }
            if r.reveal_txid.is_none() || r.reveal_txids.is_empty() {
                self.post_new(index, tip, now)?;
                report.broadcast.push(index);
                continue;
            }
            match self.all_known(&r) {
                Ok(partly_mined) => {
                    // In the mempool (or some of it in blocks).
                    if r.status != BatchStatus::Posted {
                        let mut updated = r.clone();
                        updated.status = BatchStatus::Posted;
                        self.status.put(self.store.store(), updated)?;
                    }
                    let waited = now.saturating_sub(r.posted_at_ms);
                    if u128::from(waited) >= self.config.bump_after.as_millis() {
                        if partly_mined {
                            tracing::info!(batch = index, "batch partly mined; waiting");
                        } else {
                            self.bump(index, tip, now)?;
                            report.bumped.push(index);
                        }
                    }
                }
                Err(ClientError::NotFound(_)) => {
                    // Never broadcast (crash after the write-ahead), or gone from Bitcoin.
                    if self.rebroadcast(&r)? {
                        let mut updated = r;
                        updated.status = BatchStatus::Posted;
                        updated.postings = updated.postings.saturating_add(1);
                        updated.posted_at_ms = now;
                        self.status.put(self.store.store(), updated)?;
                        report.broadcast.push(index);
                    } else {
                        tracing::warn!(batch = index, "batch transactions gone; posting again");
                        let mut updated = r;
                        updated.status = BatchStatus::Pending;
                        self.status.put(self.store.store(), updated)?;
                        self.post_new(index, tip, now)?;
                        report.reposted.push(index);
                        report.broadcast.push(index);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Whether Bitcoin knows every transaction of `r`'s set (in a scanned block or in the
    /// mempool): `Ok(true)` if some of it is in a block, `Ok(false)` if none is,
    /// `Err(NotFound)` if some transaction is unknown.
    fn all_known(&self, r: &BatchRecord) -> Result<bool, ClientError> {
        let mut partly = false;
        for id in r
            .commit_txid
            .iter()
            .chain(&r.reveal_txids)
            .copied()
            .map(txid_of)
        {
            if self.mined(&id) {
                partly = true;
                continue;
            }
            self.client.get_raw_transaction(&id)?;
        }
        Ok(partly)
    }

    /// Sends the stored set again (what is not in a block); `false` when Bitcoin refuses it
    /// (inputs gone).
    fn rebroadcast(&self, r: &BatchRecord) -> Result<bool, BatcherError> {
        let mut txs: Vec<Transaction> = Vec::with_capacity(1 + r.reveal_txs.len());
        txs.push(deserialize(&r.commit_tx).map_err(|_| BatcherError::CorruptTx(r.index))?);
        for bytes in &r.reveal_txs {
            txs.push(deserialize(bytes).map_err(|_| BatcherError::CorruptTx(r.index))?);
        }
        for tx in &txs {
            if self.mined(&tx.compute_txid()) {
                continue;
            }
            match self.client.send_raw_transaction(tx) {
                Ok(_) => {}
                Err(e) if already_known(&e) => {}
                Err(ClientError::Rejected { reason, .. }) => {
                    tracing::info!(batch = r.index, %reason, "stored pair refused");
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// The outputs the commit of batch `index` must spend: every reveal output of the previous
    /// batch while that batch is not confirmed (keeps Bitcoin order = batch order).
    fn chained_input(&self, index: u64) -> Result<Vec<Utxo>, BatcherError> {
        let Some(prev) = index.checked_sub(1).and_then(|p| self.status.get(p)) else {
            return Ok(Vec::new());
        };
        if prev.status == BatchStatus::Confirmed {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(prev.reveal_txs.len());
        for bytes in &prev.reveal_txs {
            let tx: Transaction =
                deserialize(bytes).map_err(|_| BatcherError::CorruptTx(prev.index))?;
            let Some(o) = tx.output.first() else {
                continue;
            };
            out.push(Utxo {
                outpoint: OutPoint {
                    txid: tx.compute_txid(),
                    vout: 0,
                },
                txout: o.clone(),
                confirmations: 0,
                coinbase: false,
            });
        }
        Ok(out)
    }

    fn fee_rate(&self) -> Result<FeeRate, BatcherError> {
        let rate = self.client.estimate_fee_rate()?;
        Ok(rate.max(FeeRate::from_sat_per_vb_u32(1)))
    }

    /// Builds, records (write-ahead) and broadcasts a fresh set for record `index`.
    fn post_new(&mut self, index: u64, tip: u32, now: u64) -> Result<(), BatcherError> {
        let Some(record) = self.status.get(index) else {
            return Ok(());
        };
        let rate = self.fee_rate()?;
        let must = self.chained_input(index)?;
        self.post_with(record, must, rate, tip, now, None)
    }

    /// Replaces the set of record `index` by one at a higher fee spending the same inputs.
    fn bump(&mut self, index: u64, tip: u32, now: u64) -> Result<(), BatcherError> {
        let Some(record) = self.status.get(index) else {
            return Ok(());
        };
        let commit: Transaction =
            deserialize(&record.commit_tx).map_err(|_| BatcherError::CorruptTx(index))?;
        let mut must = Vec::new();
        for input in &commit.input {
            let prev = self
                .client
                .get_raw_transaction(&input.previous_output.txid)?;
            let out = prev
                .output
                .get(input.previous_output.vout as usize)
                .cloned()
                .ok_or_else(|| {
                    ClientError::InvalidResponse(format!(
                        "{} has no output {}",
                        input.previous_output.txid, input.previous_output.vout
                    ))
                })?;
            must.push(Utxo {
                outpoint: input.previous_output,
                txout: out,
                confirmations: 0,
                coinbase: false,
            });
        }
        // BIP 125: the new commit pays at least the fees of everything it evicts (this pair
        // and the later unconfirmed batches chained to it) plus 1 sat/vB of its own size.
        let evicted: u64 = self
            .status
            .all()
            .into_iter()
            .filter(|r| r.index >= index && r.bitcoin_height.is_none() && r.reveal_txid.is_some())
            .map(|r| r.fee_sat)
            .sum();
        let old_rate = FeeRate::from_sat_per_kwu(record.fee_rate_sat_kwu);
        let doubled = FeeRate::from_sat_per_kwu(record.fee_rate_sat_kwu.saturating_mul(2));
        let rate = self.fee_rate()?.max(doubled).max(old_rate);
        self.post_with(record, must, rate, tip, now, Some(evicted))
    }

    fn post_with(
        &mut self,
        mut record: BatchRecord,
        must: Vec<Utxo>,
        rate: FeeRate,
        tip: u32,
        now: u64,
        replaces_fees: Option<u64>,
    ) -> Result<(), BatcherError> {
        let batch = self.batch_of(&record)?;
        let (data, chunks) = batch.to_chunks(&self.codec, self.config.chunk_bytes)?;
        let datas: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_envelope_data()).collect();
        let available: Vec<Utxo> = self
            .client
            .list_unspent()?
            .into_iter()
            .filter(|u| !must.iter().any(|m| m.outpoint == u.outpoint))
            .collect();
        let mut rate = rate;
        let pair = loop {
            let pair = build_commit_reveals(
                &self.wallet,
                &self.signer,
                &must,
                &available,
                BATCH_VERSION,
                &datas,
                rate,
            )?;
            match replaces_fees {
                Some(old) => {
                    let needed = old.saturating_add(pair.commit.vsize() as u64);
                    if pair.commit_fee.to_sat() >= needed {
                        break pair;
                    }
                    let per_vb = needed.div_ceil(pair.commit.vsize().max(1) as u64) + 1;
                    let next = FeeRate::from_sat_per_vb(per_vb).unwrap_or(FeeRate::MAX);
                    if next <= rate {
                        break pair;
                    }
                    rate = next;
                }
                None => break pair,
            }
        };
        record.commit_tx = serialize(&pair.commit);
        record.reveal_txs = pair.reveals.iter().map(serialize).collect();
        record.commit_txid = Some(txid_bytes(pair.commit.compute_txid()));
        record.reveal_txids = pair
            .reveals
            .iter()
            .map(|t| txid_bytes(t.compute_txid()))
            .collect();
        record.reveal_txid = record.reveal_txids.last().copied();
        record.vbytes = pair.vsize() as u64;
        record.fee_sat = pair.fee().to_sat();
        record.fee_rate_sat_kwu = rate.to_sat_per_kwu();
        record.data_bytes = data.len() as u64;
        record.bitcoin_height = None;
        record.bitcoin_block = None;
        record.posted_at_tip = tip;
        record.posted_at_ms = now;
        record.status = BatchStatus::Pending;
        // Write-ahead: the set is durable before Bitcoin sees it.
        self.status.put(self.store.store(), record.clone())?;
        self.client.send_raw_transaction(&pair.commit)?;
        for reveal in &pair.reveals {
            self.client.send_raw_transaction(reveal)?;
        }
        record.status = BatchStatus::Posted;
        record.postings = record.postings.saturating_add(1);
        self.status.put(self.store.store(), record.clone())?;
        tracing::info!(
            batch = record.index,
            first = record.first_height,
            last = record.last_height,
            txs = record.tx_count,
            vbytes = record.vbytes,
            reveals = pair.reveals.len(),
            commit = %pair.commit.compute_txid(),
            "batch posted"
        );
        Ok(())
    }

    /// The next batch's record if one is due now: `max_blocks` new blocks, or at least one
    /// and `interval` passed. Splits by blocks to fit `max_data_bytes`; a single block may
    /// exceed it up to [`MAX_CHUNKS`] chunks.
    fn next_due(&self, now: u64) -> Result<Option<BatchRecord>, BatcherError> {
        let last = self.status.last();
        if last
            .as_ref()
            .is_some_and(|r| r.status == BatchStatus::Pending)
        {
            return Ok(None);
        }
        let (index, prev_hash, first) = match &last {
            Some(r) => (r.index + 1, r.hash, r.last_height + 1),
            None => (0, [0; 32], 1),
        };
        let head = self.store.head_height();
        if head < first {
            return Ok(None);
        }
        let available = head - first + 1;
        let waited = now.saturating_sub(self.last_batch_ms);
        if available < self.config.max_blocks
            && u128::from(waited) < self.config.interval.as_millis()
        {
            return Ok(None);
        }
        let mut count = available.min(self.config.max_blocks.max(1));
        let chunk = self.config.chunk_bytes.clamp(1, MAX_CHUNK_BYTES);
        let hard = chunk.saturating_mul(MAX_CHUNKS as usize);
        let limit = self.config.max_data_bytes.min(hard);
        loop {
            let batch = self.build_batch(index, prev_hash, first, first + count - 1)?;
            let data = batch.encode(&self.codec)?;
            if data.len() <= limit || (count == 1 && data.len() <= hard) {
                return Ok(Some(BatchRecord {
                    index,
                    first_height: first,
                    last_height: batch.last_height(),
                    tx_count: batch.tx_count() as u64,
                    hash: batch.hash(),
                    state_root: batch.state_root,
                    data_bytes: data.len() as u64,
                    commit_tx: Vec::new(),
                    reveal_txs: Vec::new(),
                    commit_txid: None,
                    reveal_txid: None,
                    reveal_txids: Vec::new(),
                    vbytes: 0,
                    fee_sat: 0,
                    fee_rate_sat_kwu: 0,
                    status: BatchStatus::Pending,
                    bitcoin_height: None,
                    bitcoin_block: None,
                    posted_at_ms: 0,
                    postings: 0,
                    posted_at_tip: 0,
                }));
            }
            if count == 1 {
                return Err(BatcherError::BlockTooLarge {
                    height: first,
                    bytes: data.len(),
                    limit: hard,
                });
            }
            count = count.div_ceil(2);
        }
    }

    /// Ticks every `poll` until `stop` is set; errors are logged and retried.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        let mut last_error: Option<String> = None;
        while !stop.load(Ordering::SeqCst) {
            match self.tick(now_ms()) {
                Ok(_) => last_error = None,
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::warn!(error = %text, "batcher: tick failed; retrying");
                    }
                    last_error = Some(text);
                }
            }
            std::thread::sleep(self.config.poll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Chain, ChainConfig};
    use crate::devnet::devnet_genesis;
    use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
    use parabit_bitcoin::{RegtestChain, RegtestClient};

    fn setup(blocks: u64) -> (tempfile::TempDir, Arc<Chain>, Batcher<RegtestClient>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = devnet_genesis(1_700_000_000_000);
        let chain = Arc::new(
            Chain::open(&dir.path().join("db"), g.spec, &ChainConfig::default()).expect("chain"),
        );
        for i in 0..blocks {
            chain
                .produce(Vec::new(), 1_700_000_000_001 + i)
                .expect("block");
        }
        let kp =
            Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[5; 32]).expect("key"));
        let wallet = TaprootWallet::from_keypair(kp);
        let btc = Arc::new(RegtestChain::in_memory());
        btc.mine(105, wallet.script_pubkey()).expect("fund");
        let client = btc.client(vec![wallet.script_pubkey().clone()]);
        let config = BatcherConfig {
            max_blocks: 4,
            interval: Duration::from_secs(10),
            ..BatcherConfig::devnet()
        };
        let b = Batcher::new(
            chain.clone() as Arc<dyn StoreAccess>,
            client,
            wallet,
            kp,
            config,
            Arc::new(SettlementStatus::new()),
        );
        (dir, chain, b)
    }

    #[test]
    fn batches_are_due_by_count_or_time_and_chain() {
        let (_dir, _chain, mut b) = setup(6);
        let t = b.last_batch_ms;
        // 6 blocks, 4 per batch: one full batch now, the other 2 blocks wait for the interval.
        let r = b.tick(t).expect("tick");
        assert_eq!(r.built, vec![0]);
        let first = b.status.get(0).expect("0");
        assert_eq!((first.first_height, first.last_height), (1, 4));
        assert_eq!(b.tick(t + 1).expect("tick").built, Vec::<u64>::new());
        assert_eq!(b.tick(t + 10_001).expect("tick").built, vec![1]);
        let second = b.status.get(1).expect("1");
        assert_eq!((second.first_height, second.last_height), (5, 6));
        let rebuilt = b.batch_of(&second).expect("rebuild");
        assert_eq!(rebuilt.prev_hash, first.hash);
        assert_eq!(rebuilt.hash(), second.hash);
        rebuilt.check().expect("consistent");
        // Nothing new: nothing due, however long we wait.
        assert!(b.next_due(t + 1_000_000).expect("due").is_none());
    }

    #[test]
    fn an_oversized_batch_is_split_by_blocks() {
        let (_dir, _chain, mut b) = setup(4);
        let one = b
            .build_batch(0, [0; 32], 1, 1)
            .expect("one")
            .encode(&b.codec)
            .expect("enc");
        let four = b
            .build_batch(0, [0; 32], 1, 4)
            .expect("four")
            .encode(&b.codec)
            .expect("enc");
        assert!(four.len() > one.len());
        b.config.max_data_bytes = four.len() - 1;
        let due = b.next_due(b.last_batch_ms).expect("due").expect("a batch");
        assert!(due.last_height < 4 && due.first_height == 1);
        assert!(due.data_bytes as usize <= b.config.max_data_bytes);
        // One block over the limit goes out alone, in several chunks.
        b.config.max_data_bytes = one.len() - 1;
        b.config.chunk_bytes = one.len().div_ceil(3);
        let due = b.next_due(b.last_batch_ms).expect("due").expect("a batch");
        assert_eq!((due.first_height, due.last_height), (1, 1));
    }

    #[test]
    fn a_block_needing_more_than_max_chunks_is_refused() {
        let (_dir, chain, mut b) = setup(0);
        let g = devnet_genesis(1_700_000_000_000);
        let from = &g.accounts[0].key;
        let txs: Vec<_> = (0..12u64)
            .map(|nonce| {
                from.sign(parabit_primitives::Transaction {
                    chain_id: chain.chain_id(),
                    sender: from.address(),
                    nonce,
                    fee: 10,
                    call: Call::Bank(parabit_modules::BankMsg::Transfer {
                        to: g.accounts[1].key.address(),
                        asset: parabit_primitives::AssetId::BTC,
                        amount: 1 + u128::from(nonce),
                    }),
                })
            })
            .collect();
        chain.produce(txs, 1_700_000_000_001).expect("block");
        let one = b
            .build_batch(0, [0; 32], 1, 1)
            .expect("one")
            .encode(&b.codec)
            .expect("enc");
        assert!(one.len() > MAX_CHUNKS as usize, "{} bytes", one.len());
        b.config.max_data_bytes = 10;
        b.config.chunk_bytes = one.len().div_ceil(5);
        let due = b
            .next_due(b.last_batch_ms + 10_001)
            .expect("due")
            .expect("a batch");
        assert_eq!(
            due.data_bytes as usize,
            one.len(),
            "posted alone, in 5 chunks"
        );
        b.config.chunk_bytes = 1;
        // One block waits for the interval.
        let later = b.last_batch_ms + 10_001;
        assert!(matches!(
            b.next_due(later),
            Err(BatcherError::BlockTooLarge { height: 1, .. })
        ));
    }

    #[test]
    fn the_fault_switch_posts_a_wrong_root_in_a_consistent_batch() {
        let (_dir, chain, mut b) = setup(8);
        b.config.fault_wrong_root = Some(1);
        let t = b.last_batch_ms;
        assert_eq!(b.tick(t).expect("tick").built, vec![0, 1]);
        let good = b.status.get(0).expect("0");
        let bad = b.status.get(1).expect("1");
        let store_root = |h: u64| {
            chain
                .store()
                .header(h)
                .expect("read")
                .expect("header")
                .state_root
        };
        assert_eq!(good.state_root, store_root(4));
        assert_ne!(bad.state_root, store_root(8), "batch 1 lies about its root");
        let batch = b.batch_of(&bad).expect("rebuild");
        batch
            .check()
            .expect("internally consistent, so only re-execution catches it");
        assert_eq!(batch.hash(), bad.hash);
    }

    #[test]
    fn without_coins_the_batch_stays_pending_and_nothing_is_skipped() {
        let (_dir, _chain, b) = setup(4);
        let kp =
            Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[6; 32]).expect("key"));
        // A wallet with no coins.
        let poor = TaprootWallet::from_keypair(kp);
        let btc = Arc::new(RegtestChain::in_memory());
        let mut b = Batcher::new(
            b.store.clone(),
            btc.client(vec![poor.script_pubkey().clone()]),
            poor,
            kp,
            b.config.clone(),
            Arc::new(SettlementStatus::new()),
        );
        let t = b.last_batch_ms;
        assert!(matches!(b.tick(t), Err(BatcherError::Envelope(_))));
        let r = b.status.get(0).expect("recorded");
        assert_eq!(r.status, BatchStatus::Pending);
        assert!(r.reveal_txid.is_none());
        assert!(b.status.get(1).is_none(), "no batch after a pending one");
        // Coins arrive: the same batch goes out, then the chain continues.
        btc.mine(101, b.wallet.script_pubkey()).expect("fund");
        let report = b.tick(t + 1).expect("tick");
        assert_eq!(report.broadcast, vec![0]);
        assert_eq!(b.status.get(0).expect("0").status, BatchStatus::Posted);
    }
}
