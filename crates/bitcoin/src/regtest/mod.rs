//! The embedded regtest chain: real Bitcoin blocks from regtest's genesis, mined on demand at
//! regtest difficulty, with a UTXO set, a mempool whose spends are fully checked (scripts by
//! Bitcoin Core's interpreter), reorgs on request, and a journal on disk so a restart keeps the
//! chain. [`RegtestClient`] serves it through [`BitcoinClient`] in-process; [`RpcServer`] serves
//! it to other processes over Bitcoin Core's JSON-RPC.
//!
//! Invariants:
//! - Every change (block, rewind, admitted or evicted mempool transaction) is validated first,
//!   then journaled, then applied; a refused change, or one whose journal write fails, changes
//!   nothing. Calls that change the chain return only after the journal is synced.
//! - Reopening a directory replays its journal to the same tip, UTXO set and mempool (blocks
//!   are re-validated without re-running scripts, which the checksums protect).
//! - All methods take `&self` (one internal lock), so an `Arc<RegtestChain>` is shared by the
//!   node's threads and by tests. One handle per directory: `open` takes an exclusive lock
//!   on `dir/.lock` and refuses a directory already open (other processes share the chain
//!   through [`RpcServer`]).

mod journal;
mod server;
mod state;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::{
    Amount, Block, BlockHash, FeeRate, OutPoint, Script, ScriptBuf, Transaction, TxOut, Txid,
};
use parking_lot::Mutex;

pub use journal::{JournalError, Record, JOURNAL_FILE};
pub use server::{RpcServer, ServerAuth};
pub use state::{subsidy, BlockError, TxError, REGTEST_HALVING_INTERVAL};

use crate::client::{BitcoinClient, ClientError, Utxo};
use journal::Journal;
use state::ChainState;

/// A summary of the chain's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainStats {
    /// Tip height.
    pub height: u32,
    /// Tip hash.
    pub tip: BlockHash,
    /// Unspent outputs in the active chain.
    pub utxo_count: usize,
    /// Their total value (equals the subsidies of blocks 1..=height: every block claims its fees).
    pub utxo_value: Amount,
    /// Transactions in the mempool.
    pub mempool_txs: usize,
}

/// Settings of the embedded chain.
#[derive(Clone, Debug)]
pub struct RegtestConfig {
    /// Smallest fee rate the mempool admits (Bitcoin Core's `-minrelaytxfee`; 1 sat/vB).
    pub min_relay_fee: FeeRate,
    /// What `estimate_fee_rate` answers (2 sat/vB unless set).
    pub fee_estimate: FeeRate,
}

impl Default for RegtestConfig {
    fn default() -> Self {
        RegtestConfig {
            min_relay_fee: FeeRate::from_sat_per_vb_u32(1),
            fee_estimate: FeeRate::from_sat_per_vb_u32(2),
        }
    }
}

/// Errors of the embedded chain.
#[derive(Debug, thiserror::Error)]
pub enum RegtestError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A transaction was refused.
    #[error("transaction rejected: {0}")]
    Tx(#[from] TxError),
    /// A block was refused.
    #[error("block rejected: {0}")]
    Block(#[from] BlockError),
    /// Another handle (this process or another) has the directory open.
    #[error("regtest chain directory {0} is in use by another process")]
    Locked(std::path::PathBuf),
    /// The directory's lock file could not be created.
    #[error("regtest chain lock file {path}: {source}")]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A reorg deeper than the chain (genesis is never disconnected).
    #[error("cannot disconnect {depth} blocks from height {height}: genesis stays")]
    TooDeep {
        /// Blocks asked for.
        depth: u32,
        /// The chain's height.
        height: u32,
    },
}

struct Inner {
    state: ChainState,
    journal: Option<Journal>,
    /// Held (exclusively locked) while the chain is open from a directory.
    _lock: Option<std::fs::File>,
    fee_estimate: FeeRate,
    extra_nonce: u64,
}

impl Inner {
    fn log(&mut self, record: Record) -> Result<(), RegtestError> {
        if let Some(j) = self.journal.as_mut() {
            j.append(&record)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), RegtestError> {
        if let Some(j) = self.journal.as_mut() {
            j.sync()?;
        }
        Ok(())
    }

    fn mine_one(&mut self, script: &Script, with_mempool: bool) -> Result<BlockHash, RegtestError> {
        let (txs, fees) = if with_mempool {
            self.state.block_template()
        } else {
            (Vec::new(), Amount::ZERO)
        };
        self.extra_nonce = self.extra_nonce.wrapping_add(1);
        let block = self
            .state
            .build_block(txs, fees, script, self.extra_nonce, now());
        // Mempool transactions were fully checked on admission; skip re-running their scripts.
        let changes = self.state.validate_block(&block, false, now())?;
        let hash = block.block_hash();
        self.log(Record::Block(block.clone()))?;
        self.state.apply_block(block, changes);
        Ok(hash)
    }
}

/// The embedded regtest chain.
pub struct RegtestChain {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for RegtestChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (height, hash) = self.tip();
        f.debug_struct("RegtestChain")
            .field("height", &height)
            .field("tip", &hash)
            .finish()
    }
}

fn now() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

fn nonce_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl RegtestChain {
    /// A chain in memory only (genesis alone), with default settings.
    pub fn in_memory() -> Self {
        Self::in_memory_with(RegtestConfig::default())
    }

    /// A chain in memory only, with `config`.
    pub fn in_memory_with(config: RegtestConfig) -> Self {
        RegtestChain {
            inner: Mutex::new(Inner {
                state: ChainState::new(config.min_relay_fee),
                journal: None,
                _lock: None,
                fee_estimate: config.fee_estimate,
                extra_nonce: nonce_seed(),
            }),
        }
    }

    /// Opens (or creates) the chain persisted in `dir`, with default settings.
    pub fn open(dir: &Path) -> Result<Self, RegtestError> {
        Self::open_with(dir, RegtestConfig::default())
    }

    /// Opens (or creates) the chain persisted in `dir`: replays `dir/chain.journal`, cutting off
    /// a torn or corrupt tail with a warning.
    pub fn open_with(dir: &Path, config: RegtestConfig) -> Result<Self, RegtestError> {
        let lock = lock_dir(dir)?;
        let mut state = ChainState::new(config.min_relay_fee);
        let journal = Journal::open(dir, |record| replay(&mut state, record))?;
        tracing::info!(dir = %dir.display(), height = state.height(), "regtest chain opened");
        Ok(RegtestChain {
            inner: Mutex::new(Inner {
                state,
                journal: Some(journal),
                _lock: Some(lock),
                fee_estimate: config.fee_estimate,
                extra_nonce: nonce_seed(),
            }),
        })
    }

    /// Height and hash of the tip.
    pub fn tip(&self) -> (u32, BlockHash) {
        let g = self.inner.lock();
        (g.state.height(), g.state.tip_hash())
    }

    /// Height of the tip.
    pub fn height(&self) -> u32 {
        self.inner.lock().state.height()
    }

    /// Hash of the active chain's block at `height`.
    pub fn block_hash(&self, height: u32) -> Option<BlockHash> {
        self.inner
            .lock()
            .state
            .block_at(height)
            .map(|b| b.block_hash())
    }

    /// The block at `height` of the active chain.
    pub fn block_at(&self, height: u32) -> Option<Block> {
        self.inner.lock().state.block_at(height).cloned()
    }

    /// A block by hash, active or stale.
    pub fn block(&self, hash: &BlockHash) -> Option<Block> {
        self.inner.lock().state.block(hash).cloned()
    }

    /// The active chain's height of a block, `None` if stale or unknown.
    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        self.inner.lock().state.height_of(hash)
    }

    /// Mines `n` blocks paying to `script`, each taking the mempool (as much as fits).
    pub fn mine(&self, n: u32, script: &Script) -> Result<Vec<BlockHash>, RegtestError> {
        self.mine_inner(n, script, true)
    }

    /// Mines `n` blocks with only a coinbase (the mempool stays), e.g. a competing branch.
    pub fn mine_empty(&self, n: u32, script: &Script) -> Result<Vec<BlockHash>, RegtestError> {
        self.mine_inner(n, script, false)
    }

    fn mine_inner(
        &self,
        n: u32,
        script: &Script,
        with_mempool: bool,
    ) -> Result<Vec<BlockHash>, RegtestError> {
        let mut g = self.inner.lock();
        let mut hashes = Vec::with_capacity(n as usize);
        let mut result = Ok(());
        for _ in 0..n {
            match g.mine_one(script, with_mempool) {
                Ok(h) => hashes.push(h),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let synced = g.sync();
        result?;
        synced?;
        Ok(hashes)
    }

    /// A mined block on the tip holding `txs` after a coinbase that pays the subsidy to `script`
    /// (fees are left unclaimed), not connected: tests craft blocks with it for
    /// [`Self::submit_block`].
    pub fn build_block(&self, txs: Vec<Transaction>, script: &Script) -> Block {
        let mut g = self.inner.lock();
        g.extra_nonce = g.extra_nonce.wrapping_add(1);
        let nonce = g.extra_nonce;
        g.state.build_block(txs, Amount::ZERO, script, nonce, now())
    }

    /// Connects a block built elsewhere on the tip, with every check (scripts included).
    pub fn submit_block(&self, block: Block) -> Result<BlockHash, RegtestError> {
        let mut g = self.inner.lock();
        let changes = g.state.validate_block(&block, true, now())?;
        let hash = block.block_hash();
        g.log(Record::Block(block.clone()))?;
        g.state.apply_block(block, changes);
        g.sync()?;
        Ok(hash)
    }

    /// Checks `tx` and admits it to the mempool (replacing conflicting transactions that pay
    /// less, full-RBF rules); returns its txid.
    pub fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RegtestError> {
        let mut g = self.inner.lock();
        let adm = g.state.check_for_mempool(tx)?;
        let txid = adm.txid;
        g.log(Record::Tx(tx.clone()))?;
        g.state.apply_admission(tx.clone(), adm);
        g.sync()?;
        Ok(txid)
    }

    /// Checks `tx` against the mempool rules without admitting it.
    pub fn test_mempool_accept(&self, tx: &Transaction) -> Result<Amount, TxError> {
        self.inner.lock().state.check_for_mempool(tx).map(|a| a.fee)
    }

    /// The mempool's transactions in admission order.
    pub fn mempool(&self) -> Vec<Transaction> {
        self.inner.lock().state.mempool_txs()
    }

    /// Whether `txid` is in the mempool.
    pub fn in_mempool(&self, txid: &Txid) -> bool {
        self.inner.lock().state.mempool_entry(txid).is_some()
    }

    /// Removes a mempool transaction and its descendants (a test's way to make a transaction
    /// vanish); returns the removed ids.
    pub fn remove_from_mempool(&self, txid: &Txid) -> Result<Vec<Txid>, RegtestError> {
        let mut g = self.inner.lock();
        if g.state.mempool_entry(txid).is_none() {
            return Ok(Vec::new());
        }
        g.log(Record::Evict(*txid))?;
        let removed = g.state.evict(txid);
        g.sync()?;
        Ok(removed)
    }

    /// Disconnects the last `depth` blocks (they stay retrievable by hash as stale blocks); their
    /// non-coinbase transactions go back to the mempool where still valid. Returns the ids of
    /// the disconnected transactions. Tests then mine a competing branch.
    pub fn invalidate(&self, depth: u32) -> Result<Vec<Txid>, RegtestError> {
        let mut g = self.inner.lock();
        let height = g.state.height();
        if depth > height {
            return Err(RegtestError::TooDeep { depth, height });
        }
        let target = height - depth;
        g.log(Record::Rewind(target))?;
        let ids = g.state.rewind(target);
        g.sync()?;
        Ok(ids)
    }

    /// A reorg: disconnects `depth` blocks and mines `depth + 1` empty blocks paying to
    /// `script`, so the new branch is longer; the disconnected transactions wait in the mempool
    /// for the next [`Self::mine`]. Returns the new branch's hashes.
    pub fn reorg(&self, depth: u32, script: &Script) -> Result<Vec<BlockHash>, RegtestError> {
        self.invalidate(depth)?;
        self.mine_empty(depth + 1, script)
    }

    /// A transaction by id and its block height (`None` while in the mempool).
    pub fn transaction(&self, txid: &Txid) -> Option<(Transaction, Option<u32>)> {
        self.inner.lock().state.transaction(txid)
    }

    /// Confirmations of a transaction: `Some(0)` in the mempool, `None` if unknown.
    pub fn confirmations(&self, txid: &Txid) -> Option<u32> {
        let g = self.inner.lock();
        let (_, h) = g.state.transaction(txid)?;
        Some(h.map(|h| g.state.height() + 1 - h).unwrap_or(0))
    }

    /// An unspent output of the active chain (ignoring the mempool).
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<TxOut> {
        self.inner
            .lock()
            .state
            .coin(outpoint)
            .map(|c| c.txout.clone())
    }

    /// Unspent outputs paying any of `scripts` (confirmed or in the mempool, and not spent by
    /// the mempool), most confirmed first.
    pub fn list_unspent(&self, scripts: &[ScriptBuf]) -> Vec<Utxo> {
        let set: HashSet<ScriptBuf> = scripts.iter().cloned().collect();
        self.inner.lock().state.unspent_for(&set)
    }

    /// Tip, UTXO set size and value, mempool size.
    pub fn stats(&self) -> ChainStats {
        let g = self.inner.lock();
        let (utxo_count, utxo_value, mempool_txs) = g.state.stats();
        ChainStats {
            height: g.state.height(),
            tip: g.state.tip_hash(),
            utxo_count,
            utxo_value,
            mempool_txs,
        }
    }

    /// The fee rate `estimate_fee_rate` answers.
    pub fn fee_estimate(&self) -> FeeRate {
        self.inner.lock().fee_estimate
    }

    /// Sets the fee rate `estimate_fee_rate` answers (tests of fee bumping).
    pub fn set_fee_estimate(&self, rate: FeeRate) {
        self.inner.lock().fee_estimate = rate;
    }

    /// A [`BitcoinClient`] over this chain watching `scripts` for `list_unspent`.
    pub fn client(self: &Arc<Self>, scripts: Vec<ScriptBuf>) -> RegtestClient {
        RegtestClient {
            chain: Arc::clone(self),
            watched: scripts,
        }
    }

    /// Mines a block paying to `script` every `interval` on a background thread until the
    /// returned handle is dropped or stopped.
    pub fn spawn_miner(self: &Arc<Self>, interval: Duration, script: ScriptBuf) -> MinerHandle {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let chain = Arc::clone(self);
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                if let Err(e) = chain.mine(1, &script) {
                    tracing::warn!(error = %e, "regtest miner: block not mined");
                }
            }
        });
        MinerHandle {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

/// Stops the background miner when dropped.
pub struct MinerHandle {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MinerHandle {
    /// Stops the miner and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MinerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Creates `dir` and takes an exclusive, non-blocking `flock` on `dir/.lock` (released when
/// the file is closed, also by a crash).
fn lock_dir(dir: &Path) -> Result<std::fs::File, RegtestError> {
    let path = dir.join(".lock");
    let io = |source| RegtestError::Lock {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor we own and keep open; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(RegtestError::Locked(dir.to_path_buf()));
            }
            return Err(io(err));
        }
    }
    Ok(file)
}

/// Applies one journal record during replay; `false` marks the record (and the rest) corrupt.
fn replay(state: &mut ChainState, record: Record) -> bool {
    match record {
        Record::Block(block) => match state.validate_block(&block, false, u32::MAX) {
            Ok(changes) => {
                state.apply_block(block, changes);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "regtest journal: block does not connect");
                false
            }
        },
        Record::Rewind(height) => {
            if height > state.height() {
                return false;
            }
            state.rewind(height);
            true
        }
        Record::Tx(tx) => {
            // A transaction no longer valid (e.g. its lock time rule now differs) is skipped,
            // as a restarted bitcoind drops such mempool entries.
            if let Ok(adm) = state.check_for_mempool(&tx) {
                state.apply_admission(tx, adm);
            }
            true
        }
        Record::Evict(txid) => {
            state.evict(&txid);
            true
        }
    }
}

/// [`BitcoinClient`] over an embedded chain, watching a set of scripts.
#[derive(Clone, Debug)]
pub struct RegtestClient {
    chain: Arc<RegtestChain>,
    watched: Vec<ScriptBuf>,
}

impl RegtestClient {
    /// A client of `chain` watching `scripts`.
    pub fn new(chain: Arc<RegtestChain>, scripts: Vec<ScriptBuf>) -> Self {
        RegtestClient {
            chain,
            watched: scripts,
        }
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<RegtestChain> {
        &self.chain
    }

    /// Adds a script to watch.
    pub fn watch(&mut self, script: ScriptBuf) {
        if !self.watched.contains(&script) {
            self.watched.push(script);
        }
    }
}

/// Maps a mempool refusal to Bitcoin Core's RPC error code and reject reason.
pub fn rejection(e: &TxError) -> ClientError {
    let code = match e {
        TxError::MissingOrSpent(_) => -25,
        TxError::AlreadyKnown => -27,
        _ => -26,
    };
    ClientError::Rejected {
        code: Some(code),
        reason: e.to_string(),
    }
}

impl BitcoinClient for RegtestClient {
    fn tip(&self) -> Result<(u32, BlockHash), ClientError> {
        Ok(self.chain.tip())
    }

    fn block_hash(&self, height: u32) -> Result<BlockHash, ClientError> {
        self.chain
            .block_hash(height)
            .ok_or_else(|| ClientError::NotFound(format!("block height {height}")))
    }

    fn block(&self, hash: &BlockHash) -> Result<Block, ClientError> {
        self.chain
            .block(hash)
            .ok_or_else(|| ClientError::NotFound(format!("block {hash}")))
    }

    fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, ClientError> {
        match self.chain.send_raw_transaction(tx) {
            Ok(id) => Ok(id),
            Err(RegtestError::Tx(e)) => Err(rejection(&e)),
            Err(e) => Err(ClientError::Backend(e.to_string())),
        }
    }

    fn estimate_fee_rate(&self) -> Result<FeeRate, ClientError> {
        Ok(self.chain.fee_estimate())
    }

    fn list_unspent(&self) -> Result<Vec<Utxo>, ClientError> {
        // As bitcoind's wallet: immature coinbase outputs are not listed.
        let mut all = self.chain.list_unspent(&self.watched);
        all.retain(Utxo::is_spendable);
        Ok(all)
    }

    fn get_raw_transaction(&self, txid: &Txid) -> Result<Transaction, ClientError> {
        self.chain
            .transaction(txid)
            .map(|(tx, _)| tx)
            .ok_or_else(|| ClientError::NotFound(format!("transaction {txid}")))
    }
}
