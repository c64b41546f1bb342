//! The node: the chain, the mempool, block production on a timer, and new-block events.
//!
//! Admission verifies signatures in parallel before taking any lock, then inserts under the
//! mempool lock against the committed state. The producer takes the best ready transactions
//! every `block_time` (or at once when `max_block_txs` are ready), builds and commits the
//! block off the async runtime, brings the mempool up to date, and publishes a [`Committed`]
//! event to subscribers.
//!
//! Invariants:
//! - Lock order: the chain's state before the mempool; the mempool lock is never held while a
//!   block executes, so submissions go on while a block is being built.
//! - Only one block is produced at a time (`producing`).
//! - A transaction leaves the mempool when its block commits (its nonce is used) or when the
//!   block found it invalid (it could never be included as it is).

use std::sync::Arc;
use std::time::Duration;

use parabit_exec::{KeyMap, Value};
use parabit_modules::bank::{balance_key, nonce_key};
use parabit_modules::SignedTx;
use parabit_primitives::{Address, Amount, AssetId, TxId, TxStatus};
use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};

use crate::chain::{Chain, ChainError, Committed};
use crate::mempool::{AccountState, Mempool, MempoolConfig, MempoolError};

/// How the node builds blocks.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// A block at least this often while transactions are waiting.
    pub block_time: Duration,
    /// A block as soon as this many transactions are ready, and at most this many per block.
    pub max_block_txs: usize,
    /// The mempool's limits.
    pub mempool: MempoolConfig,
}

impl NodeConfig {
    /// Defaults for `chain_id`: 250 ms blocks of at most 10,000 transactions.
    pub fn new(chain_id: u64) -> NodeConfig {
        NodeConfig {
            block_time: Duration::from_millis(250),
            max_block_txs: 10_000,
            mempool: MempoolConfig::new(chain_id),
        }
    }
}

/// The committed state as the mempool sees it.
pub struct StateAccounts<'a>(pub &'a KeyMap<Value>);

impl AccountState for StateAccounts<'_> {
    fn nonce(&self, who: &Address) -> u64 {
        match self.0.get(&nonce_key(who)) {
            Some(Value::Num(n)) => u64::try_from(*n).unwrap_or(u64::MAX),
            _ => 0,
        }
    }

    fn fee_balance(&self, who: &Address) -> Amount {
        match self.0.get(&balance_key(who, AssetId::BTC)) {
            Some(Value::Num(n)) => *n,
            _ => 0,
        }
    }
}

/// A running node's shared core.
pub struct Node {
    chain: Chain,
    mempool: Mutex<Mempool>,
    config: NodeConfig,
    events: broadcast::Sender<Arc<Committed>>,
    wake: Notify,
    producing: Mutex<()>,
    settlement: std::sync::OnceLock<Arc<crate::settlement::SettlementStatus>>,
    deposits: std::sync::OnceLock<Arc<crate::bridge::DepositWatcher>>,
    bridge: std::sync::OnceLock<Arc<crate::bridge::BridgeStatus>>,
    metrics: crate::metrics::Metrics,
}

impl Node {
    /// A node over an opened chain.
    pub fn new(chain: Chain, config: NodeConfig) -> Arc<Node> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Node {
            mempool: Mutex::new(Mempool::new(config.mempool.clone())),
            chain,
            config,
            events,
            wake: Notify::new(),
            producing: Mutex::new(()),
            settlement: std::sync::OnceLock::new(),
            deposits: std::sync::OnceLock::new(),
            bridge: std::sync::OnceLock::new(),
            metrics: crate::metrics::Metrics::new(),
        })
    }

    /// The metrics page (`GET /metrics`), its gauges read now.
    pub fn render_metrics(&self) -> String {
        let head = self.chain.head();
        let (txs, bytes) = self.mempool_size();
        let settlement = self.settlement();
        let (bridge_deposited, bridge_withdrawn) =
            self.chain.with_state(parabit_modules::bridge::query_totals);
        let payer = self.bridge_status().map(|b| b.info()).unwrap_or_default();
        self.metrics.render(&crate::metrics::Snapshot {
            height: head.height,
            mempool_txs: txs as u64,
            mempool_bytes: bytes as u64,
            batches_posted: settlement.map_or(0, |s| s.batches_posted()),
            verified_height: settlement.and_then(|s| s.verified_height()).unwrap_or(0),
            bridge_deposited,
            bridge_withdrawn,
            bridge_waiting: payer.waiting,
            bridge_payouts: payer.payouts,
        })
    }

    /// Attaches the settlement status (the batcher's or the follower's) that the RPC shows;
    /// only the first call counts (returns `false` when one was already attached).
    pub fn attach_settlement(&self, status: Arc<crate::settlement::SettlementStatus>) -> bool {
        self.settlement.set(status).is_ok()
    }

    /// The attached settlement status, if any.
    pub fn settlement(&self) -> Option<&Arc<crate::settlement::SettlementStatus>> {
        self.settlement.get()
    }

    /// Attaches the sequencer's deposit watcher: from then on every block includes the
    /// deposits it has read. Only the first call counts (`false` after).
    pub fn attach_deposits(&self, watcher: Arc<crate::bridge::DepositWatcher>) -> bool {
        self.deposits.set(watcher).is_ok()
    }

    /// The attached deposit watcher, if any.
    pub fn deposit_watcher(&self) -> Option<&Arc<crate::bridge::DepositWatcher>> {
        self.deposits.get()
    }

    /// Attaches the withdrawal payer's status that the RPC shows (first call only).
    pub fn attach_bridge_status(&self, status: Arc<crate::bridge::BridgeStatus>) -> bool {
        self.bridge.set(status).is_ok()
    }

    /// The attached payer status, if any.
    pub fn bridge_status(&self) -> Option<&Arc<crate::bridge::BridgeStatus>> {
        self.bridge.get()
    }

    /// The chain.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Verifies (in parallel) and admits transactions; one result per transaction.
    pub fn submit(&self, txs: Vec<SignedTx>) -> Vec<Result<TxId, MempoolError>> {
        let verified = Mempool::verify(txs);
        self.admit(verified)
    }

    /// Decodes, verifies (in parallel) and admits encoded transactions.
    pub fn submit_raw<B: AsRef<[u8]> + Sync>(&self, raw: &[B]) -> Vec<Result<TxId, MempoolError>> {
        let verified = Mempool::verify_raw(raw);
        self.admit(verified)
    }

    fn admit(
        &self,
        verified: Vec<Result<crate::mempool::VerifiedTx, MempoolError>>,
    ) -> Vec<Result<TxId, MempoolError>> {
        let (results, ready) = self.chain.with_state(|state| {
            let mut pool = self.mempool.lock();
            let results = pool.insert_all(verified, &StateAccounts(state));
            (results, pool.ready_len())
        });
        if ready >= self.config.max_block_txs {
            self.wake.notify_one();
        }
        let accepted = results.iter().filter(|r| r.is_ok()).count() as u64;
        self.metrics
            .submitted(accepted, results.len() as u64 - accepted);
        results
    }

    /// The nonce `who`'s next transaction should carry counting its pooled ones: the committed
    /// nonce, or past the end of its run of ready pooled transactions.
    pub fn pending_nonce(&self, who: &Address) -> u64 {
        self.chain.with_state(|state| {
            let committed = StateAccounts(state).nonce(who);
            let pooled = self.mempool.lock().pending_nonce(who).unwrap_or(committed);
            committed.max(pooled)
        })
    }

    /// A pooled transaction.
    pub fn pending(&self, id: &TxId) -> Option<SignedTx> {
        self.mempool.lock().get(id).cloned()
    }

    /// Pooled transactions and their encoded bytes.
    pub fn mempool_size(&self) -> (usize, usize) {
        let pool = self.mempool.lock();
        (pool.len(), pool.bytes())
    }

    /// New-block events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.events.subscribe()
    }

    /// Builds, commits and publishes a block of the deposits read on Bitcoin (with a deposit
    /// watcher attached) and the best ready transactions, if there are any (`force`: even an
    /// empty block).
    pub fn produce_block(
        &self,
        timestamp_ms: u64,
        force: bool,
    ) -> Result<Option<Arc<Committed>>, ChainError> {
        let _one_at_a_time = self.producing.lock();
        let parent_bitcoin_height = self.chain.head().bitcoin_height;
        let (mut txs, bitcoin_height) = match self.deposits.get() {
            Some(w) => w.take(parent_bitcoin_height),
            None => (Vec::new(), parent_bitcoin_height),
        };
        let room = self.config.max_block_txs.saturating_sub(txs.len()).max(1);
        let user = self
            .chain
            .with_state(|state| self.mempool.lock().select(room, &StateAccounts(state)));
        txs.extend(user);
        if txs.is_empty() && !force {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let committed = Arc::new(self.chain.produce_at(txs, timestamp_ms, bitcoin_height)?);
        self.metrics.block(
            "produced",
            started.elapsed().as_secs_f64(),
            &committed.receipts,
        );
        self.chain.with_state(|state| {
            let mut pool = self.mempool.lock();
            for (id, receipt) in committed.tx_ids.iter().zip(&committed.receipts) {
                if matches!(receipt.status, TxStatus::Invalid(_) | TxStatus::Panicked(_)) {
                    pool.remove(id);
                }
            }
            let senders = committed.accounts.iter().filter_map(|a| a.first());
            pool.on_committed_senders(senders, &StateAccounts(state));
        });
        tracing::info!(
            height = committed.header.height,
            txs = committed.tx_ids.len(),
            "block committed"
        );
        // No subscriber is not an error.
        let _ = self.events.send(committed.clone());
        Ok(Some(committed))
    }

    /// Re-executes and commits a block built elsewhere ([`Chain::apply`], a full node
    /// deriving the chain from Bitcoin) and publishes it to subscribers like a produced one.
    pub fn apply_block(
        &self,
        block: parabit_primitives::Block<parabit_modules::Call>,
    ) -> Result<Arc<Committed>, ChainError> {
        let _one_at_a_time = self.producing.lock();
        let started = std::time::Instant::now();
        let committed = Arc::new(self.chain.apply(block)?);
        self.metrics.block(
            "applied",
            started.elapsed().as_secs_f64(),
            &committed.receipts,
        );
        // No subscriber is not an error.
        let _ = self.events.send(committed.clone());
        Ok(committed)
    }

    /// Produces blocks until `shutdown` resolves: every `block_time` while transactions are
    /// ready, or at once when `max_block_txs` are. A block that fails to commit stops the
    /// loop with the error (the store is unusable; the node must stop).
    pub async fn run_producer(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ChainError> {
        let mut tick = tokio::time::interval(self.config.block_time);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return Ok(()),
            }
            if *shutdown.borrow() {
                return Ok(());
            }
            let node = self.clone();
            let now = now_ms();
            let result = tokio::task::spawn_blocking(move || node.produce_block(now, false)).await;
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(join) => {
                    tracing::error!("block production panicked: {join}");
                    return Err(ChainError::Pool(format!(
                        "block production panicked: {join}"
                    )));
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
