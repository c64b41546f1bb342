//! The chain: the committed state and the block builder over the store.
//!
//! [`Chain::produce`] turns a list of verified transactions into the next block: it adds the
//! begin-block hooks (interest accrual of every lending market) and the end-block hooks (batch
//! auction settlements), runs the block on the parallel engine, computes the state root from
//! the write set, and commits block, receipts, state and tree nodes in one store transaction.
//! Only then does the in-memory state move to the new block.
//!
//! Invariants:
//! - The in-memory state always equals the store's state at [`Chain::head`]: it is loaded from
//!   the store on open and changed only after a commit succeeded.
//! - A block is committed whole or not at all; a failed commit leaves head and state as they
//!   were, so the same transactions can be offered again.
//! - The engine's result equals sequential execution (the engine's own invariant), so the
//!   state root is the one any full node re-executing the block computes.
//! - No disk or network I/O other than the store's; no threads other than the given pool's.

use std::path::Path;
use std::sync::Arc;

use parabit_exec::{KeyMap, ParallelExecutor, Value};
use parabit_modules::runtime::{begin_block_hooks, block_txs};
use parabit_modules::{lending, BlockTx, GenesisSpec, GenesisSpecError, Runtime, SignedTx};
use parabit_primitives::{tx_root, Address, Amount, Block, BlockHeader, Receipt, TxId};
use parabit_storage::{Store, StoreConfig, StoreError};
use parking_lot::RwLock;

/// Why the chain cannot open or produce a block. All of these are fatal for the node: the
/// store is unusable or the genesis is wrong; bad transactions never get here (they become
/// receipts).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The genesis spec cannot be built.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisSpecError),
    /// The database was created from another genesis.
    #[error("the database's genesis state root {stored} is not this genesis' {expected}: another chain's data directory (use another one, or --reset)")]
    GenesisMismatch {
        /// In the database.
        stored: String,
        /// Of the given genesis.
        expected: String,
    },
    /// The store has no genesis block after initialisation (a bug or a foreign file).
    #[error("the database has no genesis block")]
    NoGenesis,
    /// The engine's thread pool could not start.
    #[error("thread pool: {0}")]
    Pool(String),
    /// A block applied with [`Chain::apply`] does not extend the head.
    #[error("block {height} does not extend the head {head}")]
    NotNext {
        /// The block's height.
        height: u64,
        /// The head's height.
        head: u64,
    },
    /// Re-executing a block applied with [`Chain::apply`] reached another state root than
    /// its header says (nothing was committed).
    #[error("block {height}: state root {computed} after re-execution, the header says {claimed}")]
    RootMismatch {
        /// The block's height.
        height: u64,
        /// The root re-execution computed (hex).
        computed: String,
        /// The header's root (hex).
        claimed: String,
    },
}

/// How the chain runs.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Engine worker threads.
    pub threads: usize,
    /// Tree versions kept for proofs (`None`: all).
    pub keep_versions: Option<u64>,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            keep_versions: Some(10_000),
        }
    }
}

/// A block just committed, with what notifications need.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Its header.
    pub header: BlockHeader,
    /// The ids of its transactions, in order.
    pub tx_ids: Vec<TxId>,
    /// The receipts, in order.
    pub receipts: Vec<Receipt>,
    /// Per transaction, the accounts it concerns (sender first).
    pub accounts: Vec<Vec<Address>>,
}

/// The chain a node holds.
pub struct Chain {
    spec: GenesisSpec,
    runtime: Runtime,
    store: Store,
    state: RwLock<KeyMap<Value>>,
    head: RwLock<BlockHeader>,
    pool: rayon::ThreadPool,
}

impl Chain {
    /// Opens the chain in `db` (a redb file), creating it from `spec` when it is new.
    pub fn open(db: &Path, spec: GenesisSpec, config: &ChainConfig) -> Result<Chain, ChainError> {
        let store = Store::open(
            db,
            StoreConfig {
                keep_versions: config.keep_versions,
                ..StoreConfig::default()
            },
        )?;
        if store.latest().is_none() {
            let genesis = spec.build()?;
            let writes = parabit_exec::WriteSet(
                genesis.iter().map(|(k, v)| (*k, Some(v.clone()))).collect(),
            );
            let prepared = store.prepare(0, &writes)?;
            let header = BlockHeader {
                height: 0,
                parent_hash: [0; 32],
                timestamp_ms: spec.timestamp_ms,
                tx_root: tx_root(&[]),
                state_root: prepared.state_root(),
                bitcoin_height: 0,
                fees: 0,
                tx_count: 0,
            };
            let block: Block<parabit_modules::Call> = Block {
                header,
                txs: Vec::new(),
            };
            store.commit(prepared, &block, &[], &[])?;
        }
        let head = store.latest().ok_or(ChainError::NoGenesis)?;
        // The database must hold this genesis' chain.
        let stored = store.header(0)?.ok_or(ChainError::NoGenesis)?;
        let expected = parabit_storage::fresh_state_root(&spec.build()?)?;
        if stored.state_root != expected {
            return Err(ChainError::GenesisMismatch {
                stored: hex::encode(stored.state_root),
                expected: hex::encode(expected),
            });
        }
        let state = store.load_state()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .thread_name(|i| format!("parabit-exec-{i}"))
            .build()
            .map_err(|e| ChainError::Pool(e.to_string()))?;
        Ok(Chain {
            runtime: spec.runtime(),
            spec,
            store,
            state: RwLock::new(state),
            head: RwLock::new(head),
            pool,
        })
    }

    /// The genesis spec.
    pub fn spec(&self) -> &GenesisSpec {
        &self.spec
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.spec.chain_id
    }

    /// The latest committed block's header.
    pub fn head(&self) -> BlockHeader {
        self.head.read().clone()
    }

    /// The store (blocks, receipts, indexes, proofs).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `f` on the committed state at [`Self::head`].
    pub fn with_state<R>(&self, f: impl FnOnce(&KeyMap<Value>) -> R) -> R {
        f(&self.state.read())
    }

    /// Executes `txs` (already verified) as the next block with this timestamp, commits it,
    /// and returns it. Transactions that fail or are invalid still get a receipt.
    pub fn produce(&self, txs: Vec<SignedTx>, timestamp_ms: u64) -> Result<Committed, ChainError> {
        let bitcoin_height = self.head().bitcoin_height;
        self.produce_at(txs, timestamp_ms, bitcoin_height)
    }

    /// [`Self::produce`] with the header saying that the block includes the deposits of
    /// Bitcoin blocks up to `bitcoin_height` (never below the parent's).
    pub fn produce_at(
        &self,
        txs: Vec<SignedTx>,
        timestamp_ms: u64,
        bitcoin_height: u64,
    ) -> Result<Committed, ChainError> {
        let parent = self.head();
        let height = parent.height + 1;
        let (receipts, writes) = {
            let state = self.state.read();
            execute_block(&self.runtime, &self.pool, height, &txs, &state)
        };
        let fees: Amount = receipts.iter().map(|r| r.fee_paid).sum();
        let tx_ids: Vec<TxId> = txs.iter().map(|t| t.id()).collect();
        let accounts: Vec<Vec<Address>> = txs.iter().map(|t| concerned(&t.tx)).collect();
        let prepared = self.store.prepare(height, &writes)?;
        let header = BlockHeader {
            height,
            parent_hash: parent.hash(),
            timestamp_ms: timestamp_ms.max(parent.timestamp_ms),
            tx_root: tx_root(&tx_ids),
            state_root: prepared.state_root(),
            bitcoin_height: bitcoin_height.max(parent.bitcoin_height),
            fees,
            tx_count: txs.len() as u32,
        };
        let block = Block {
            header: header.clone(),
            txs,
        };
        self.store.commit(prepared, &block, &receipts, &accounts)?;
        {
            let mut state = self.state.write();
            writes.apply_to(&mut state);
            *self.head.write() = header.clone();
        }
        Ok(Committed {
            header,
            tx_ids,
            receipts,
            accounts,
        })
    }
}

impl Chain {
    /// Re-executes `block` (built elsewhere, e.g. read from a batch on Bitcoin) on the head
    /// state with the parallel engine and commits it. Refused, with nothing changed, when it
    /// does not extend the head ([`ChainError::NotNext`]) or when re-execution reaches another
    /// state root than its header ([`ChainError::RootMismatch`]); the store also refuses a
    /// wrong transaction root.
    pub fn apply(&self, block: Block<parabit_modules::Call>) -> Result<Committed, ChainError> {
        let head = self.head();
        let height = block.header.height;
        if height != head.height + 1 || block.header.parent_hash != head.hash() {
            return Err(ChainError::NotNext {
                height,
                head: head.height,
            });
        }
        let (receipts, writes) = {
            let state = self.state.read();
            execute_block(&self.runtime, &self.pool, height, &block.txs, &state)
        };
        let prepared = self.store.prepare(height, &writes)?;
        if prepared.state_root() != block.header.state_root {
            return Err(ChainError::RootMismatch {
                height,
                computed: hex::encode(prepared.state_root()),
                claimed: hex::encode(block.header.state_root),
            });
        }
        let tx_ids: Vec<TxId> = block.txs.iter().map(|t| t.id()).collect();
        let accounts: Vec<Vec<Address>> = block.txs.iter().map(|t| concerned(&t.tx)).collect();
        self.store.commit(prepared, &block, &receipts, &accounts)?;
        let header = block.header;
        {
            let mut state = self.state.write();
            writes.apply_to(&mut state);
            *self.head.write() = header.clone();
        }
        Ok(Committed {
            header,
            tx_ids,
            receipts,
            accounts,
        })
    }
}

/// Executes a block's user transactions at `height` on `state` (with the begin-block hooks of
/// its lending markets and the end-block hooks of its batch swaps) on the parallel engine:
/// the user transactions' receipts and the block's write set. The block builder and every
/// re-execution of a block (replay, a full node) use this one function.
pub fn execute_block(
    runtime: &Runtime,
    pool: &rayon::ThreadPool,
    height: u64,
    txs: &[SignedTx],
    state: &KeyMap<Value>,
) -> (Vec<Receipt>, parabit_exec::WriteSet) {
    let runtime = runtime.at_height(height);
    let markets = lending::query_market_list(state).unwrap_or_default();
    let begin = begin_block_hooks(&markets);
    let lead = begin.len();
    let user: Vec<_> = txs.iter().map(|s| s.tx.clone()).collect();
    let n = user.len();
    let engine_txs: Vec<BlockTx> = block_txs(begin, user);
    let executor = ParallelExecutor::new(pool);
    let output = executor.execute_block(&runtime, &engine_txs, state);
    for (i, r) in output.outputs.iter().enumerate() {
        if !(lead..lead + n).contains(&i) && !r.status.is_success() {
            tracing::warn!(height, hook = i, status = %r.status, "a block hook failed");
        }
    }
    let receipts = output.outputs[lead..lead + n].to_vec();
    (receipts, output.writes)
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the source or writing the replica failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The genesis cannot be built.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisSpecError),
    /// The source has a gap.
    #[error("block {0} is missing from the source")]
    Missing(u64),
    /// Re-execution disagrees with the source.
    #[error("block {height}: {what}")]
    Mismatch {
        /// The first block that differs.
        height: u64,
        /// How.
        what: String,
    },
    /// The thread pool could not start.
    #[error("thread pool: {0}")]
    Pool(String),
}

/// Rebuilds a chain from its genesis by re-executing every block of `source` into a new store
/// at `target` (which must not exist yet), checking each block's receipts and state root.
/// Returns the last height replayed and its state root.
pub fn replay(
    spec: &GenesisSpec,
    source: &Store,
    target: &Path,
    threads: usize,
) -> Result<(u64, [u8; 32]), ReplayError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ReplayError::Pool(e.to_string()))?;
    let replica = Store::open(
        target,
        StoreConfig {
            keep_versions: Some(2),
            ..StoreConfig::default()
        },
    )?;
    let runtime = spec.runtime();
    let mut state = spec.build()?;
    let latest = source.latest().map_or(0, |h| h.height);
    let mut last_root = [0u8; 32];
    for height in 0..=latest {
        let block = source
            .block::<parabit_modules::Call>(height)?
            .ok_or(ReplayError::Missing(height))?;
        let (receipts, writes) = if height == 0 {
            let writes =
                parabit_exec::WriteSet(state.iter().map(|(k, v)| (*k, Some(v.clone()))).collect());
            (Vec::new(), writes)
        } else {
            execute_block(&runtime, &pool, height, &block.txs, &state)
        };
        for (i, (tx, receipt)) in block.txs.iter().zip(&receipts).enumerate() {
            let stored = source.receipt(&tx.id())?;
            if stored.as_ref() != Some(receipt) {
                return Err(ReplayError::Mismatch {
                    height,
                    what: format!("receipt {i} is {receipt:?}, the source has {stored:?}"),
                });
            }
        }
        let prepared = replica.prepare(height, &writes)?;
        if prepared.state_root() != block.header.state_root {
            return Err(ReplayError::Mismatch {
                height,
                what: format!(
                    "state root {} after re-execution, the block says {}",
                    hex::encode(prepared.state_root()),
                    hex::encode(block.header.state_root)
                ),
            });
        }
        let accounts: Vec<Vec<Address>> = block.txs.iter().map(|t| concerned(&t.tx)).collect();
        replica.commit(prepared, &block, &receipts, &accounts)?;
        if height > 0 {
            writes.apply_to(&mut state);
        }
        last_root = block.header.state_root;
    }
    Ok((latest, last_root))
}

/// The accounts a transaction concerns: its sender, and whoever it names as a recipient.
pub fn concerned(tx: &parabit_modules::Tx) -> Vec<Address> {
    use parabit_modules::bridge::BridgeMsg;
    use parabit_modules::{BankMsg, Call};
    let mut out = vec![tx.sender];
    let to = match &tx.call {
        Call::Bank(BankMsg::Transfer { to, .. }) => Some(to),
        Call::Bridge(BridgeMsg::Deposit { recipient, .. }) => Some(recipient),
        _ => None,
    };
    if let Some(to) = to {
        if *to != tx.sender {
            out.push(*to);
        }
    }
    out
}

/// A shared chain.
pub type SharedChain = Arc<Chain>;
