//! Parabit's node: the chain over the durable store, the mempool, block production, the
//! JSON-RPC server, and the development network's genesis.
//!
//! | module | what it does |
//! |---|---|
//! | [`batch`] | the batch of blocks written to Bitcoin, and its envelope encoding |
//! | [`chain`] | the committed state and the block builder: hooks, parallel execution, state root, atomic commit |
//! | [`mempool`] | admission (parallel signature checks), nonce order, fee priority, bounds, replacement |
//! | [`node`] | the chain and mempool together: submission, block production on a timer, new-block events |
//! | [`settlement`] | batch records and settlement status shared by the batcher, the follower and the RPC |
//! | [`bridge`] | the BTC bridge: deposits read on Bitcoin and included in blocks, checked by full nodes; withdrawals paid on Bitcoin |
//! | [`batcher`] | the sequencer's batcher: batches to Bitcoin as commit/reveal envelopes, confirmation, RBF, re-posts |
//! | [`follower`] | derivation: a full node that rebuilds and checks the L2 from Bitcoin alone |
//! | [`rpc`] | the JSON-RPC server (`docs/RPC.md`), HTTP and WebSocket |
//! | [`pages`] | the block explorer (`GET /explorer`) and metrics (`GET /metrics`) pages on the RPC address |
//! | [`metrics`] | the node's counters, gauges and histograms, rendered as OpenMetrics text |
//! | [`devnet`] | the development network's genesis: funded accounts, a pool, markets, staking and insurance |
//!
//! Invariants (detailed in each module): the in-memory state always equals the store's state
//! at the head; a block is committed whole or not at all; no input (a transaction, an RPC
//! request) can panic the node.

pub mod batch;
pub mod batcher;
pub mod bridge;
pub mod chain;
pub mod devnet;
pub mod follower;
pub mod mempool;
pub mod metrics;
pub mod node;
pub mod pages;
pub mod rpc;
pub mod settlement;

pub use mempool::{AccountState, Mempool, MempoolConfig, MempoolError, VerifiedTx};
