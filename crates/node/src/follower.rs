//! Derivation: a full node that rebuilds and checks the L2 from Bitcoin data alone.
//!
//! The [`Follower`] reads Bitcoin blocks from the genesis' settlement start height up to
//! `tip − confirmations + 1` through a [`BitcoinClient`], takes the envelopes that Bitcoin
//! authenticated as signed by the sequencer key (block order, then transaction order, then
//! input order), reads each as a batch [`Chunk`], and once every chunk of a batch (same index
//! and data hash) is there, puts them together and decodes the [`Batch`] (its Bitcoin
//! position is that of the chunk that completed it), re-executes every block of a good batch with
//! the parallel engine ([`Chain::apply`]) and commits it into its own store, whose RPC it
//! serves read-only (the node's settlement status carries a verified height, which the RPC
//! takes as "this node is a follower").
//!
//! Invariants:
//! - Chunks: a chunk repeated (an RBF replacement carries identical chunks) is ignored; a
//!   malformed chunk, or one whose count disagrees with its batch's earlier chunks, is
//!   skipped with its reason; chunks whose whole does not hash to their data hash, or does not
//!   decode, are skipped when the last one arrives. Incomplete batches wait in memory (at most
//!   [`MAX_PENDING_BATCHES`]); on open and after a rollback the follower reads again from the
//!   lowest Bitcoin block that may hold a chunk of a batch not yet derived (the sequencer
//!   posts batch `i + 1`'s chunks after all of batch `i`'s), ignoring quietly the chunks of
//!   batches it already derived in the blocks it reads a second time.
//! - Nothing read from Bitcoin can panic it or stop it, except a state root that re-execution
//!   does not reach: a malformed, duplicate or out-of-order batch (index, previous batch hash,
//!   first height or parent hash not the next expected), or one carrying a transaction with a
//!   bad signature or another chain id (checked in parallel, as admission does on the
//!   sequencer; execution does not check them), is skipped with a logged reason
//!   ([`SyncReport::skipped`]). A state-root mismatch stops following for good: the first bad
//!   batch and block are recorded ([`Follower::mismatch`]) and logged, and the store keeps the
//!   last block whose root matched, which the RPC goes on serving.
//! - `verified_height` is the store's head: every block in the store was re-executed and its
//!   root compared with the sequencer's header.
//! - The follower's batch records (in its store's `batches` table) name the Bitcoin block
//!   that held each batch, and a batch record is written only after all its blocks are
//!   committed. On open, blocks past the last record (a crash mid-batch) are discarded by a
//!   rebuild, so the store's head is always the last record's `last_height` (0 without one).
//! - Reorgs: the hash of every Bitcoin block it read (the recent ones, and every batch's) is
//!   remembered. When the last one is no longer on the best chain, the fork point is the
//!   highest remembered block still on it; batches completed above it (and chunks read above
//!   it) are forgotten, and when
//!   there are any, the store is rebuilt from genesis up to the last batch still on the best
//!   chain (re-executing the blocks it already has) and swapped in ([`Follower::subscribe`]
//!   announces the new node). It then reads on from the fork point (or from the first chunk
//!   of a forgotten batch, if lower).
//! - Bitcoin calls are blocking: async callers use [`Follower::run`], which runs them on a
//!   blocking thread. One sync runs at a time (the cursor lock).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::secp256k1::XOnlyPublicKey;
use parabit_bitcoin::bitcoin::{Block as BtcBlock, BlockHash, OutPoint, TxOut, Txid};
use parabit_bitcoin::{verified_envelopes_in_block, BitcoinClient, ClientError, Envelope};
use parabit_modules::{Call, GenesisSpec};
use parabit_storage::StoreError;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::batch::{Batch, BatchCodec, Chunk};
use crate::bridge::{check_deposits, BridgeParams, DepositLog, PayoutAudit};
use crate::chain::{Chain, ChainConfig, ChainError};
use crate::node::{Node, NodeConfig};
use crate::settlement::{BatchRecord, BatchStatus, SettlementError, SettlementStatus};

/// Recent Bitcoin blocks whose hashes are remembered for reorg detection (besides every
/// batch's block).
pub const REMEMBERED_BLOCKS: u32 = 1_000;
/// Recent Bitcoin blocks whose taproot outputs are kept to authenticate envelopes (older
/// commit outputs are fetched with `get_raw_transaction`).
pub const OUTPUT_WINDOW: u32 = 12;
/// Incomplete batches (chunks waiting for the rest) kept at most.
pub const MAX_PENDING_BATCHES: usize = 64;

/// How the follower runs.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// A Bitcoin block is read once it has this many confirmations (1: the tip itself).
    pub confirmations: u32,
    /// How often [`Follower::run`] polls Bitcoin once caught up.
    pub poll_interval: Duration,
    /// The chain's execution settings.
    pub chain: ChainConfig,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        FollowerConfig {
            confirmations: 6,
            poll_interval: Duration::from_secs(1),
            chain: ChainConfig::default(),
        }
    }
}

/// Why the follower cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FollowerError {
    /// The genesis has no settlement section.
    #[error("the genesis has no settlement section (sequencer key, Bitcoin start height): nothing to follow")]
    NoSettlement,
    /// The settlement section is unusable.
    #[error("genesis settlement: {0}")]
    BadSettlement(String),
    /// The chain failed (store, genesis).
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Batch records failed.
    #[error("batch records: {0}")]
    Settlement(#[from] SettlementError),
    /// The Bitcoin backend failed (retried by [`Follower::run`] unless it refused the
    /// credentials).
    #[error("bitcoin: {0}")]
    Bitcoin(#[from] ClientError),
    /// A file operation of a rebuild failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The store lacks a block it recorded (a damaged store).
    #[error("the store lacks block {0}")]
    MissingBlock(u64),
    /// The sync task panicked.
    #[error("sync task failed: {0}")]
    Task(String),
    /// The bridge's payout audit failed (its store records).
    #[error("bridge payout audit: {0}")]
    Audit(#[from] crate::bridge::PayerError),
}

impl FollowerError {
    /// Whether [`Follower::run`] retries after it (Bitcoin unavailable, a block gone in a
    /// race with a reorg).
    pub fn is_retryable(&self) -> bool {
        matches!(self, FollowerError::Bitcoin(e) if !matches!(e, ClientError::Unauthorized(_)))
    }
}

/// The first batch whose state root re-execution does not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The batch's index.
    pub batch_index: u64,
    /// The first block whose root differs.
    pub height: u64,
    /// The Bitcoin block holding the batch.
    pub bitcoin_height: u32,
    /// The reveal transaction holding the batch.
    pub reveal_txid: Txid,
    /// The root re-execution reached (hex).
    pub computed: String,
    /// The root the sequencer's header claims (hex).
    pub claimed: String,
    /// When the block was refused before execution (its deposits are not Bitcoin's): why.
    /// `computed` is then empty.
    pub reason: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(reason) = &self.reason {
            return write!(
                f,
                "batch {} (reveal {} in Bitcoin block {}): block {}: {reason}",
                self.batch_index, self.reveal_txid, self.bitcoin_height, self.height
            );
        }
        write!(
            f,
            "batch {} (reveal {} in Bitcoin block {}): block {} has state root {} but re-execution gives {}",
            self.batch_index,
            self.reveal_txid,
            self.bitcoin_height,
            self.height,
            self.claimed,
            self.computed
        )
    }
}

/// An envelope of the sequencer that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The Bitcoin block holding it.
    pub bitcoin_height: u32,
    /// The transaction holding it.
    pub txid: Txid,
    /// The batch index, when it decoded.
    pub index: Option<u64>,
    /// Why it was skipped.
    pub reason: String,
}

/// A rollback after a Bitcoin reorg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The highest remembered Bitcoin block still on the best chain.
    pub fork_height: u32,
    /// Batches forgotten (their Bitcoin blocks left the best chain).
    pub batches_dropped: u64,
    /// The L2 height kept.
    pub l2_height: u64,
}

/// What one [`Follower::sync_once`] did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// The last Bitcoin height read (None: none yet).
    pub bitcoin_height: Option<u32>,
    /// Batches applied.
    pub batches: u64,
    /// L2 blocks applied.
    pub blocks: u64,
    /// L2 transactions applied.
    pub txs: u64,
    /// Envelopes of the sequencer skipped.
    pub skipped: Vec<Skipped>,
    /// Rollbacks after reorgs.
    pub rollbacks: Vec<Rollback>,
    /// The mismatch found in this sync, if any.
    pub mismatch: Option<Mismatch>,
}

/// Where a catching-up follower is, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The Bitcoin height just read.
    pub bitcoin_height: u32,
    /// The Bitcoin height this sync reads up to.
    pub target: u32,
    /// The first Bitcoin height this follower reads.
    pub start_height: u32,
    /// The L2 head.
    pub l2_height: u64,
    /// L2 transactions applied in this sync so far.
    pub l2_txs: u64,
}

type ProgressFn = Box<dyn Fn(&Progress) + Send + Sync>;

struct Cursor {
    /// Next Bitcoin height to read.
    next: u32,
    /// Hashes of Bitcoin blocks read (recent ones and every batch's).
    scanned: BTreeMap<u32, BlockHash>,
    /// Taproot outputs of the last [`OUTPUT_WINDOW`] blocks read, with their height.
    outputs: HashMap<OutPoint, (u32, TxOut)>,
    /// Next batch index expected.
    next_index: u64,
    /// The last batch's hash (zeros before batch 0).
    last_hash: [u8; 32],
    /// Chunks of batches not complete yet, by (index, data hash).
    pending: BTreeMap<(u64, [u8; 32]), Pending>,
    /// Blocks up to this height are being read a second time: chunks of batches already
    /// derived are ignored there without a report.
    quiet_until: Option<u32>,
    /// The bridge deposits of the Bitcoin blocks read, after the head's `bitcoin_height` (those
    /// up to it are forgotten once in the chain; a rollback starts the log again).
    deposits: DepositLog,
    /// The next Bitcoin height whose deposits are to be logged.
    deposit_next: u32,
}

/// The chunks of one batch read so far.
struct Pending {
    count: u32,
    chunks: BTreeMap<u32, (Chunk, Found)>,
}

/// A full node deriving the L2 from Bitcoin.
pub struct Follower {
    db: PathBuf,
    spec: GenesisSpec,
    key: XOnlyPublicKey,
    start_height: u32,
    bridge: Option<BridgeParams>,
    /// The check of the bridge's payouts (with a bridge).
    audit: Option<PayoutAudit>,
    codec: BatchCodec,
    client: Arc<dyn BitcoinClient>,
    config: FollowerConfig,
    node: watch::Sender<Arc<Node>>,
    status: Arc<SettlementStatus>,
    cursor: Mutex<Cursor>,
    mismatch: RwLock<Option<Mismatch>>,
    progress: RwLock<Option<ProgressFn>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("db", &self.db)
            .field("key", &self.key)
            .field("start_height", &self.start_height)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The sequencer key and Bitcoin start height of a genesis.
pub fn settlement_of(spec: &GenesisSpec) -> Result<(XOnlyPublicKey, u32), FollowerError> {
    let s = spec
        .settlement
        .as_ref()
        .ok_or(FollowerError::NoSettlement)?;
    let key = XOnlyPublicKey::from_str(s.sequencer_key.trim()).map_err(|e| {
        FollowerError::BadSettlement(format!(
            "sequencer_key {:?} is not an x-only public key: {e}",
            s.sequencer_key
        ))
    })?;
    let start = u32::try_from(s.start_height).map_err(|_| {
        FollowerError::BadSettlement(format!("start_height {} is too high", s.start_height))
    })?;
    Ok((key, start))
}

fn open_node(
    db: &Path,
    spec: &GenesisSpec,
    config: &ChainConfig,
    status: &Arc<SettlementStatus>,
) -> Result<Arc<Node>, FollowerError> {
    let chain = Chain::open(db, spec.clone(), config)?;
    let node = Node::new(chain, NodeConfig::new(spec.chain_id));
    node.attach_settlement(status.clone());
    Ok(node)
}

impl Follower {
    /// Opens (or creates) the follower's store at `db` from `spec`, whose settlement section
    /// names the sequencer key and the Bitcoin start height.
    pub fn open(
        db: &Path,
        spec: GenesisSpec,
        client: Arc<dyn BitcoinClient>,
        config: FollowerConfig,
    ) -> Result<Follower, FollowerError> {
        let (key, start_height) = settlement_of(&spec)?;
        let bridge = BridgeParams::of(&spec).map_err(FollowerError::BadSettlement)?;
        let chain = Chain::open(db, spec.clone(), &config.chain)?;
        let records = SettlementStatus::load(chain.store())?.all();
        // Records must be contiguous from 0 and chained; keep the longest good prefix.
        let mut kept: Vec<BatchRecord> = Vec::new();
        for r in records {
            let next_first = kept.last().map_or(1, |p| p.last_height + 1);
            if r.index != kept.len() as u64
                || r.first_height != next_first
                || r.bitcoin_height.is_none()
            {
                tracing::warn!(index = r.index, "dropping an inconsistent batch record");
                break;
            }
            kept.push(r);
        }
        let keep_height = kept.last().map_or(0, |r| r.last_height);
        let head = chain.head().height;
        let status = Arc::new(SettlementStatus::new());
        for r in &kept {
            status.set(r.clone());
        }
        let node = if head != keep_height || kept.len() as u64 != status.batch_count() {
            tracing::warn!(
                head,
                keep_height,
                "the store's head is not the last batch's end; rebuilding up to it"
            );
            let old = Node::new(chain, NodeConfig::new(spec.chain_id));
            rebuild(db, &spec, &config.chain, &old, keep_height, &kept, &status)?
        } else {
            let node = Node::new(chain, NodeConfig::new(spec.chain_id));
            node.attach_settlement(status.clone());
            node
        };
        status.set_verified_height(Some(node.chain().head().height));
        let audit = match &bridge {
            Some(p) => {
                let audit = PayoutAudit::open(p.clone(), &node)?;
                node.attach_bridge_status(audit.status());
                Some(audit)
            }
            None => None,
        };
        let mut scanned = BTreeMap::new();
        for r in &kept {
            if let (Some(h), Some(b)) = (r.bitcoin_height, r.bitcoin_block) {
                scanned.insert(h, BlockHash::from_byte_array(b));
            }
        }
        // Read the last batch's block again: it may hold chunks of the next batch.
        let last_seen = kept.last().and_then(|r| r.bitcoin_height);
        // Deposits the next blocks may include lie after the head's Bitcoin height.
        let deposit_next = u32::try_from(node.chain().head().bitcoin_height.saturating_add(1))
            .unwrap_or(u32::MAX)
            .max(start_height);
        let cursor = Cursor {
            next: last_seen.map_or(start_height, |h| h.max(start_height)),
            scanned,
            outputs: HashMap::new(),
            next_index: kept.len() as u64,
            last_hash: kept.last().map_or([0; 32], |r| r.hash),
            pending: BTreeMap::new(),
            quiet_until: last_seen,
            deposits: DepositLog::default(),
            deposit_next,
        };
        let (node_tx, _) = watch::channel(node);
        Ok(Follower {
            db: db.to_path_buf(),
            codec: BatchCodec::from_genesis(&spec),
            spec,
            key,
            start_height,
            bridge,
            audit,
            client,
            config,
            node: node_tx,
            status,
            cursor: Mutex::new(cursor),
            mismatch: RwLock::new(None),
            progress: RwLock::new(None),
            stop: AtomicBool::new(false),
        })
    }

    /// The node whose state the follower derived (changes after a reorg rebuild).
    pub fn node(&self) -> Arc<Node> {
        self.node.borrow().clone()
    }

    /// Announces the node each time a rebuild replaces it.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Node>> {
        self.node.subscribe()
    }

    /// The settlement status shown by the RPC (batches derived, verified height).
    pub fn status(&self) -> Arc<SettlementStatus> {
        self.status.clone()
    }

    /// The sequencer key whose envelopes count.
    pub fn sequencer_key(&self) -> XOnlyPublicKey {
        self.key
    }

    /// The first state-root mismatch, once found (the follower then stops following).
    pub fn mismatch(&self) -> Option<Mismatch> {
        self.mismatch.read().clone()
    }

    /// The highest L2 height whose state root was checked.
    pub fn verified_height(&self) -> u64 {
        self.node().chain().head().height
    }

    /// Calls `f` after each Bitcoin block read.
    pub fn set_progress(&self, f: impl Fn(&Progress) + Send + Sync + 'static) {
        *self.progress.write() = Some(Box::new(f));
    }

    /// Asks a running sync to stop after the Bitcoin block it is reading.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Reads Bitcoin up to `tip − confirmations + 1` (handling a reorg first), applying every
    /// good batch. Blocking. Does nothing once a mismatch was found.
    pub fn sync_once(&self) -> Result<SyncReport, FollowerError> {
        let mut report = SyncReport::default();
        if self.mismatch.read().is_some() {
            return Ok(report);
        }
        let mut cur = self.cursor.lock();
        let mut reorg_checks = 0;
        'outer: loop {
            if let Some(rb) = self.check_reorg(&mut cur)? {
                report.rollbacks.push(rb);
            }
            let (tip, _) = self.client.tip()?;
            let target = tip
                .saturating_add(1)
                .saturating_sub(self.config.confirmations.max(1));
            while cur.next <= target {
                if self.stop.load(Ordering::SeqCst) {
                    break 'outer;
                }
                let h = cur.next;
                let hash = self.client.block_hash(h)?;
                let block = self.client.block(&hash)?;
                if let Some(prev) = h.checked_sub(1).and_then(|p| cur.scanned.get(&p)) {
                    if block.header.prev_blockhash != *prev {
                        // The chain changed under us: handle the reorg, then go on.
                        reorg_checks += 1;
                        if reorg_checks > 100 {
                            return Err(ClientError::Unavailable(
                                "the Bitcoin chain keeps changing".into(),
                            )
                            .into());
                        }
                        continue 'outer;
                    }
                }
                self.read_block(&mut cur, h, hash, &block, &mut report)?;
                report.bitcoin_height = Some(h);
                if h == u32::MAX {
                    break 'outer;
                }
                if let Some(f) = self.progress.read().as_ref() {
                    f(&Progress {
                        bitcoin_height: h,
                        target,
                        start_height: self.start_height,
                        l2_height: self.node().chain().head().height,
                        l2_txs: report.txs,
                    });
                }
                if report.mismatch.is_some() {
                    break 'outer;
                }
            }
            break;
        }
        Ok(report)
    }

    /// Runs [`Self::sync_once`] on a blocking thread every poll interval until `shutdown`
    /// turns true; Bitcoin errors are logged and retried with a growing delay (at most 30 s).
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), FollowerError> {
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let me = self.clone();
            let sync = tokio::task::spawn_blocking(move || me.sync_once());
            tokio::pin!(sync);
            let result = tokio::select! {
                r = &mut sync => r,
                _ = shutdown.changed() => {
                    self.stop();
                    sync.await
                }
            };
            match result {
                Ok(Ok(_)) => failures = 0,
                Ok(Err(e)) if e.is_retryable() => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(failures, "following Bitcoin: {e}; retrying");
                }
                Ok(Err(e)) => return Err(e),
                Err(join) => return Err(FollowerError::Task(join.to_string())),
            }
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            // Back off while Bitcoin fails: poll interval × 2^failures, at most 30 s.
            let wait = self
                .config
                .poll_interval
                .saturating_mul(1u32 << failures.min(6))
                .min(Duration::from_secs(30).max(self.config.poll_interval));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Detects a reorg of the blocks read and rolls back to the fork point.
    fn check_reorg(&self, cur: &mut Cursor) -> Result<Option<Rollback>, FollowerError> {
        let Some((&last, &last_hash)) = cur.scanned.iter().next_back() else {
            return Ok(None);
        };
        if self.on_best_chain(last, &last_hash)? {
            return Ok(None);
        }
        let mut fork = self.start_height.saturating_sub(1);
        for (&h, hash) in cur.scanned.iter().rev() {
            if self.on_best_chain(h, hash)? {
                fork = h;
                break;
            }
        }
        let records = self.status.all();
        let first_dropped = records
            .iter()
            .find(|r| !matches!(r.bitcoin_height, Some(h) if h <= fork))
            .map(|r| r.index);
        // Chunks of forgotten batches may lie at or below the fork: read from the lowest.
        let dropped_low = records
            .iter()
            .filter(|r| matches!(first_dropped, Some(d) if r.index >= d))
            .map(|r| r.posted_at_tip)
            .min();
        let kept: Vec<BatchRecord> = records
            .into_iter()
            .filter(|r| !matches!(first_dropped, Some(d) if r.index >= d))
            .collect();
        let dropped = self.status.batch_count() - kept.len() as u64;
        let keep_height = kept.last().map_or(0, |r| r.last_height);
        tracing::warn!(
            fork,
            dropped,
            keep_height,
            "Bitcoin reorg: block {last} left the best chain; rolling back"
        );
        if dropped > 0 {
            let old = self.node();
            if let Some(d) = first_dropped {
                self.status.truncate(d);
            }
            let new = rebuild(
                &self.db,
                &self.spec,
                &self.config.chain,
                &old,
                keep_height,
                &kept,
                &self.status,
            )?;
            self.status.set_verified_height(Some(keep_height));
            if let Some(a) = &self.audit {
                new.attach_bridge_status(a.status());
            }
            self.node.send_replace(new);
        }
        if let Some(a) = &self.audit {
            a.forget_above(&self.node(), fork, dropped > 0)?;
        }
        cur.scanned.retain(|h, _| *h <= fork);
        cur.outputs.retain(|_, (h, _)| *h <= fork);
        // The deposits the next blocks may include lie after the (possibly rolled back)
        // head's Bitcoin height: read them again from there (the log keeps no older ones).
        cur.deposits = DepositLog::default();
        cur.deposit_next =
            u32::try_from(self.node().chain().head().bitcoin_height.saturating_add(1))
                .unwrap_or(u32::MAX)
                .max(self.start_height);
        for p in cur.pending.values_mut() {
            p.chunks.retain(|_, (_, f)| f.height <= fork);
        }
        cur.pending.retain(|_, p| !p.chunks.is_empty());
        let mut next = fork.saturating_add(1);
        if let Some(low) = dropped_low {
            if low < next {
                next = low;
                cur.pending.clear();
                cur.quiet_until = Some(fork);
            }
        }
        cur.next = next.max(self.start_height);
        cur.next_index = kept.len() as u64;
        cur.last_hash = kept.last().map_or([0; 32], |r| r.hash);
        Ok(Some(Rollback {
            fork_height: fork,
            batches_dropped: dropped,
            l2_height: keep_height,
        }))
    }

    fn on_best_chain(&self, height: u32, hash: &BlockHash) -> Result<bool, FollowerError> {
        match self.client.block_hash(height) {
            Ok(h) => Ok(h == *hash),
            Err(ClientError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the sequencer's envelopes of one Bitcoin block.
    fn read_block(
        &self,
        cur: &mut Cursor,
        height: u32,
        hash: BlockHash,
        block: &BtcBlock,
        report: &mut SyncReport,
    ) -> Result<(), FollowerError> {
        self.log_deposits(cur, height, block)?;
        if let Some(audit) = &self.audit {
            let node = self.node();
            for tx in block.txdata.iter().skip(1) {
                audit.saw(&node, height, tx, |op| {
                    block
                        .txdata
                        .iter()
                        .find(|t| t.compute_txid() == op.txid)
                        .and_then(|t| t.output.get(op.vout as usize).cloned())
                        .or_else(|| cur.outputs.get(op).map(|(_, o)| o.clone()))
                        .or_else(|| {
                            self.client
                                .get_raw_transaction(&op.txid)
                                .ok()
                                .and_then(|t| t.output.get(op.vout as usize).cloned())
                        })
                })?;
            }
        }
        let envelopes = {
            let outputs = &cur.outputs;
            let client = &self.client;
            verified_envelopes_in_block(block, |op| {
                outputs.get(op).map(|(_, o)| o.clone()).or_else(|| {
                    client
                        .get_raw_transaction(&op.txid)
                        .ok()
                        .and_then(|tx| tx.output.get(op.vout as usize).cloned())
                })
            })
        };
        for (t, input, envelope) in envelopes {
            if envelope.key != self.key {
                continue;
            }
            let Some(tx) = block.txdata.get(t) else {
                continue;
            };
            let txid = tx.compute_txid();
            let commit_txid = tx.input.get(input).map(|i| i.previous_output.txid);
            let commit_vbytes = commit_txid
                .and_then(|c| block.txdata.iter().find(|x| x.compute_txid() == c))
                .map_or(0, |c| c.vsize());
            let found = Found {
                height,
                seq: t as u64,
                hash,
                txid,
                commit_txid,
                vbytes: tx.vsize() as u64,
                commit_vbytes: commit_vbytes as u64,
                time_ms: u64::from(block.header.time) * 1000,
            };
            match self.take_chunk(cur, &envelope, found, report)? {
                Ok(()) => {}
                Err((index, reason)) => {
                    tracing::warn!(
                        bitcoin_height = height,
                        %txid,
                        ?index,
                        "skipping a batch: {reason}"
                    );
                    report.skipped.push(Skipped {
                        bitcoin_height: height,
                        txid,
                        index,
                        reason,
                    });
                }
            }
            if report.mismatch.is_some() {
                break;
            }
        }
        if cur.quiet_until.is_some_and(|q| height >= q) {
            cur.quiet_until = None;
        }
        // Remember the block, its taproot outputs; forget old ones.
        cur.scanned.insert(height, hash);
        for tx in &block.txdata {
            let id = tx.compute_txid();
            for (vout, o) in tx.output.iter().enumerate() {
                if o.script_pubkey.is_p2tr() {
                    cur.outputs.insert(
                        OutPoint {
                            txid: id,
                            vout: vout as u32,
                        },
                        (height, o.clone()),
                    );
                }
            }
        }
        // Forget old hashes now and then (every batch's block is kept).
        if cur.scanned.len() as u32 > 2 * REMEMBERED_BLOCKS {
            let batch_heights: std::collections::HashSet<u32> = self
                .status
                .all()
                .iter()
                .filter_map(|r| r.bitcoin_height)
                .collect();
            let floor = height.saturating_sub(REMEMBERED_BLOCKS);
            cur.scanned
                .retain(|h, _| *h > floor || batch_heights.contains(h));
        }
        let out_floor = height.saturating_sub(OUTPUT_WINDOW);
        cur.outputs.retain(|_, (h, _)| *h > out_floor);
        cur.next = height.saturating_add(1);
        if let Some(audit) = &self.audit {
            audit.catch_up(&self.node())?;
        }
        Ok(())
    }

    /// Logs the bridge deposits of the Bitcoin blocks up to `height` (the block just read),
    /// fetching the ones between the last logged and it (after a restart, the follower reads
    /// on from its last batch's block while the next L2 block's deposits may lie lower).
    fn log_deposits(
        &self,
        cur: &mut Cursor,
        height: u32,
        block: &BtcBlock,
    ) -> Result<(), FollowerError> {
        let Some(params) = &self.bridge else {
            return Ok(());
        };
        while cur.deposit_next < height {
            let h = cur.deposit_next;
            let earlier = self.client.block(&self.client.block_hash(h)?)?;
            cur.deposits.record(h, &earlier, params);
            cur.deposit_next = h + 1;
        }
        if cur.deposit_next == height {
            cur.deposits.record(height, block, params);
            cur.deposit_next = height.saturating_add(1);
        }
        Ok(())
    }

    /// Files one envelope's chunk; when it completes its batch, decodes, checks and applies
    /// the batch. `Ok(Err((index, reason)))`: skipped.
    #[allow(clippy::type_complexity)]
    fn take_chunk(
        &self,
        cur: &mut Cursor,
        envelope: &Envelope,
        found: Found,
        report: &mut SyncReport,
    ) -> Result<Result<(), (Option<u64>, String)>, FollowerError> {
        let chunk = match Chunk::from_envelope(envelope.version, &envelope.data) {
            Ok(c) => c,
            Err(e) => return Ok(Err((None, e.to_string()))),
        };
        let h = chunk.header;
        let index = Some(h.index);
        if h.index < cur.next_index {
            if cur.quiet_until.is_some_and(|q| found.height <= q) {
                tracing::debug!(index = h.index, "chunk of a derived batch read again");
                return Ok(Ok(()));
            }
            return Ok(Err((
                index,
                format!("duplicate: batch {} was already derived", h.index),
            )));
        }
        let key = (h.index, h.data_hash);
        if !cur.pending.contains_key(&key) && cur.pending.len() >= MAX_PENDING_BATCHES {
            return Ok(Err((
                index,
                format!("{MAX_PENDING_BATCHES} incomplete batches already wait for chunks"),
            )));
        }
        let pending = cur.pending.entry(key).or_insert_with(|| Pending {
            count: h.count,
            chunks: BTreeMap::new(),
        });
        if pending.count != h.count {
            return Ok(Err((
                index,
                format!(
                    "chunk count mismatch: chunk {} says {} chunks, earlier chunks {}",
                    h.chunk, h.count, pending.count
                ),
            )));
        }
        if pending.chunks.contains_key(&h.chunk) {
            tracing::debug!(
                index = h.index,
                chunk = h.chunk,
                "chunk seen before; ignored"
            );
            return Ok(Ok(()));
        }
        pending.chunks.insert(h.chunk, (chunk, found));
        if pending.chunks.len() < pending.count as usize {
            return Ok(Ok(()));
        }
        let Some(done) = cur.pending.remove(&key) else {
            return Ok(Ok(()));
        };
        let (chunks, founds): (Vec<Chunk>, Vec<Found>) = done.chunks.into_values().unzip();
        // The batch sits where its last chunk (in Bitcoin order) is.
        let Some(last) = founds.iter().max_by_key(|f| (f.height, f.seq)).cloned() else {
            return Ok(Ok(()));
        };
        let mut commits = std::collections::HashSet::new();
        let mut vbytes = 0u64;
        for f in &founds {
            vbytes += f.vbytes;
            if let Some(c) = f.commit_txid {
                if commits.insert(c) {
                    vbytes += f.commit_vbytes;
                }
            }
        }
        let lowest = founds.iter().map(|f| f.height).min().unwrap_or(last.height);
        let batch = match Batch::from_chunks(&self.codec, &chunks) {
            Ok(b) => b,
            Err(e) => return Ok(Err((index, e.to_string()))),
        };
        let data_bytes: usize = chunks.iter().map(|c| c.bytes.len()).sum();
        let placed = Placed {
            found: last,
            vbytes,
            lowest,
            data_bytes: data_bytes as u64,
            reveals: founds.iter().map(|f| f.txid.to_byte_array()).collect(),
        };
        let result = self.take(cur, batch, &placed, report)?;
        // Incomplete batches that can no longer be taken.
        let next = cur.next_index;
        cur.pending.retain(|(i, _), _| *i >= next);
        Ok(result)
    }

    /// Checks and applies one decoded batch. `Ok(Err((index, reason)))`: skipped.
    #[allow(clippy::type_complexity)]
    fn take(
        &self,
        cur: &mut Cursor,
        batch: Batch,
        placed: &Placed,
        report: &mut SyncReport,
    ) -> Result<Result<(), (Option<u64>, String)>, FollowerError> {
        let found = &placed.found;
        let index = Some(batch.index);
        if batch.index < cur.next_index {
            return Ok(Err((
                index,
                format!("duplicate: batch {} was already derived", batch.index),
            )));
        }
        if batch.index > cur.next_index {
            return Ok(Err((
                index,
                format!(
                    "out of order: batch {} while batch {} is expected",
                    batch.index, cur.next_index
                ),
            )));
        }
        if batch.prev_hash != cur.last_hash {
            return Ok(Err((
                index,
                format!(
                    "previous batch hash {} is not batch {}'s {}",
                    hex::encode(batch.prev_hash),
                    batch.index.wrapping_sub(1),
                    hex::encode(cur.last_hash)
                ),
            )));
        }
        let node = self.node();
        let chain = node.chain();
        let head = chain.head();
        if batch.first_height != head.height + 1 {
            return Ok(Err((
                index,
                format!(
                    "starts at block {} while block {} is next",
                    batch.first_height,
                    head.height + 1
                ),
            )));
        }
        if batch.blocks.first().map(|b| b.header.parent_hash) != Some(head.hash()) {
            return Ok(Err((
                index,
                format!("its first block does not follow block {}", head.height),
            )));
        }
        // Signatures and chain id, as admission checks them on the sequencer (execution
        // does not): a batch carrying a transaction its sender did not sign is refused.
        if let Some(reason) = bad_transaction(&batch, self.spec.chain_id) {
            return Ok(Err((index, reason)));
        }
        let hash = batch.hash();
        let (first_height, last_height) = (batch.first_height, batch.last_height());
        let tx_count = batch.tx_count() as u64;
        let state_root = batch.state_root;
        for block in batch.blocks {
            let height = block.header.height;
            let ntx = block.txs.len() as u64;
            if let Some(params) = &self.bridge {
                let parent = node.chain().head().bitcoin_height;
                if let Err(reason) = check_deposits(&block, parent, &cur.deposits, params) {
                    let m = Mismatch {
                        batch_index: batch.index,
                        height,
                        bitcoin_height: found.height,
                        reveal_txid: found.txid,
                        computed: String::new(),
                        claimed: hex::encode(block.header.state_root),
                        reason: Some(format!("deposits: {reason}")),
                    };
                    tracing::error!("a block's deposits are not Bitcoin's, following stopped: {m}");
                    *self.mismatch.write() = Some(m.clone());
                    report.mismatch = Some(m);
                    return Ok(Ok(()));
                }
            }
            let bitcoin_height = block.header.bitcoin_height;
            match node.apply_block(block) {
                Ok(_) => {
                    report.blocks += 1;
                    report.txs += ntx;
                    self.status.set_verified_height(Some(height));
                    // Deposits up to it are in the chain now.
                    cur.deposits.forget_through(bitcoin_height);
                }
                Err(ChainError::RootMismatch {
                    height,
                    computed,
                    claimed,
                }) => {
                    let m = Mismatch {
                        batch_index: batch.index,
                        height,
                        bitcoin_height: found.height,
                        reveal_txid: found.txid,
                        computed,
                        claimed,
                        reason: None,
                    };
                    tracing::error!("state root mismatch, following stopped: {m}");
                    *self.mismatch.write() = Some(m.clone());
                    report.mismatch = Some(m);
                    return Ok(Ok(()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let record = BatchRecord {
            index: batch.index,
            first_height,
            last_height,
            tx_count,
            hash,
            state_root,
            data_bytes: placed.data_bytes,
            commit_tx: Vec::new(),
            reveal_txs: Vec::new(),
            commit_txid: found.commit_txid.map(|t| t.to_byte_array()),
            reveal_txid: Some(found.txid.to_byte_array()),
            reveal_txids: placed.reveals.clone(),
            vbytes: placed.vbytes,
            fee_sat: 0,
            fee_rate_sat_kwu: 0,
            status: BatchStatus::Confirmed,
            bitcoin_height: Some(found.height),
            bitcoin_block: Some(found.hash.to_byte_array()),
            posted_at_ms: found.time_ms,
            postings: 1,
            // Where its first chunk is (a rollback reads again from there).
            posted_at_tip: placed.lowest,
        };
        self.status.put(chain.store(), record)?;
        cur.next_index = batch.index + 1;
        cur.last_hash = hash;
        report.batches += 1;
        tracing::info!(
            index = batch.index,
            first_height,
            last_height,
            bitcoin_height = found.height,
            "batch derived and checked"
        );
        Ok(Ok(()))
    }
}

/// The first transaction of `batch` with a bad signature or another chain id, as a reason.
fn bad_transaction(batch: &Batch, chain_id: u64) -> Option<String> {
    use rayon::prelude::*;
    let all: Vec<(u64, usize, &parabit_modules::SignedTx)> = batch
        .blocks
        .iter()
        .flat_map(|b| {
            b.txs
                .iter()
                .enumerate()
                .map(move |(i, t)| (b.header.height, i, t))
        })
        .collect();
    all.par_iter()
        .with_min_len(64)
        .find_first(|(_, _, t)| t.tx.chain_id != chain_id || t.verify().is_err())
        .map(|(h, i, t)| {
            if t.tx.chain_id != chain_id {
                format!(
                    "block {h}: transaction {i} is for chain {}, not {chain_id}",
                    t.tx.chain_id
                )
            } else {
                format!("block {h}: transaction {i} has a bad signature")
            }
        })
}

/// Where one chunk was read.
#[derive(Clone)]
struct Found {
    height: u32,
    /// The transaction's position in its block (orders chunks of one block).
    seq: u64,
    hash: BlockHash,
    txid: Txid,
    commit_txid: Option<Txid>,
    /// The reveal's virtual size.
    vbytes: u64,
    /// The commit's, when it is in the same block (0 otherwise).
    commit_vbytes: u64,
    time_ms: u64,
}

/// Where a complete batch was read.
struct Placed {
    /// The chunk that completed it.
    found: Found,
    /// Virtual bytes of its reveals and of the commits found beside them.
    vbytes: u64,
    /// The lowest Bitcoin height holding one of its chunks.
    lowest: u32,
    /// Bytes of batch data.
    data_bytes: u64,
    /// Its reveals' txids, in chunk order.
    reveals: Vec<[u8; 32]>,
}

/// Rebuilds the store at `db` from genesis up to `keep_height` by re-executing `old`'s
/// blocks, with the records `kept`, then puts it in place of `old`'s file and returns its
/// node (with `status` attached).
fn rebuild(
    db: &Path,
    spec: &GenesisSpec,
    config: &ChainConfig,
    old: &Arc<Node>,
    keep_height: u64,
    kept: &[BatchRecord],
    status: &Arc<SettlementStatus>,
) -> Result<Arc<Node>, FollowerError> {
    let mut tmp = db.as_os_str().to_owned();
    tmp.push(".rebuild");
    let tmp = PathBuf::from(tmp);
    if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(|source| FollowerError::Io {
            what: format!("removing {}", tmp.display()),
            source,
        })?;
    }
    {
        let chain = Chain::open(&tmp, spec.clone(), config)?;
        let source = old.chain().store();
        for h in 1..=keep_height {
            let block = source
                .block::<Call>(h)?
                .ok_or(FollowerError::MissingBlock(h))?;
            chain.apply(block)?;
        }
        for r in kept {
            chain
                .store()
                .put_batch(r.index, &borsh::to_vec(r).unwrap_or_default())?;
        }
        // The bridge payouts found on Bitcoin (the audit forgets those a reorg took away).
        for (index, bytes) in source.payout_records()? {
            chain.store().put_payout(index, &bytes)?;
        }
    }
    std::fs::rename(&tmp, db).map_err(|source| FollowerError::Io {
        what: format!("replacing {} by its rebuild", db.display()),
        source,
    })?;
    open_node(db, spec, config, status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parabit_modules::genesis::SettlementSpec;

    fn spec(settlement: Option<SettlementSpec>) -> GenesisSpec {
        let mut s = crate::devnet::devnet_genesis(0).spec;
        s.settlement = settlement;
        s
    }

    #[test]
    fn the_settlement_section_is_required_and_checked() {
        assert!(matches!(
            settlement_of(&spec(None)),
            Err(FollowerError::NoSettlement)
        ));
        let bad_key = spec(Some(SettlementSpec::new("zz".into(), 1)));
        assert!(matches!(
            settlement_of(&bad_key),
            Err(FollowerError::BadSettlement(m)) if m.contains("sequencer_key")
        ));
        let key = "0e42bc1e17dba22941ca26243b913768a8049842ce9825eab009f7a2c312a39e";
        let too_high = spec(Some(SettlementSpec::new(
            key.into(),
            u64::from(u32::MAX) + 1,
        )));
        assert!(matches!(
            settlement_of(&too_high),
            Err(FollowerError::BadSettlement(m)) if m.contains("start_height")
        ));
        let good = spec(Some(SettlementSpec::new(key.into(), 7)));
        let (k, h) = settlement_of(&good).expect("good");
        assert_eq!(k.to_string(), key);
        assert_eq!(h, 7);
    }

    #[test]
    fn only_bitcoin_errors_other_than_credentials_are_retried() {
        assert!(FollowerError::Bitcoin(ClientError::Unavailable("x".into())).is_retryable());
        assert!(FollowerError::Bitcoin(ClientError::NotFound("x".into())).is_retryable());
        assert!(!FollowerError::Bitcoin(ClientError::Unauthorized("x".into())).is_retryable());
        assert!(!FollowerError::MissingBlock(3).is_retryable());
    }

    #[test]
    fn a_mismatch_names_the_batch_and_block() {
        let m = Mismatch {
            batch_index: 4,
            height: 17,
            bitcoin_height: 120,
            reveal_txid: Txid::all_zeros(),
            computed: "aa".into(),
            claimed: "bb".into(),
            reason: None,
        };
        let text = m.to_string();
        assert!(text.starts_with("batch 4 "), "{text}");
        assert!(text.contains("block 17 has state root bb but re-execution gives aa"));
        assert!(text.contains("Bitcoin block 120"));
        let refused = Mismatch {
            reason: Some("deposits: the block leaves out a deposit".into()),
            ..m
        };
        let text = refused.to_string();
        assert!(
            text.ends_with("block 17: deposits: the block leaves out a deposit"),
            "{text}"
        );
    }
}
