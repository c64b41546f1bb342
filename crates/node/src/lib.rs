//! Parabit's node (being built).

pub mod mempool;

pub use mempool::{AccountState, Mempool, MempoolConfig, MempoolError, VerifiedTx};
