//! The storage crate's errors.
//!
//! Invariants:
//! - Every failure is a typed value; nothing a file, a caller or a peer supplies can panic.
//! - [`StoreError::is_rejection`] separates a refused commit or query (the store is unchanged
//!   and healthy; the caller made a mistake) from a fault of the database itself (I/O, a
//!   corrupt or foreign file), which a node should treat as fatal.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed (I/O error, corrupt file, file locked by another process…).
    #[error("database error: {0}")]
    Database(Box<redb::Error>),
    /// Data read back from the database does not decode: the file is corrupt.
    #[error("database is corrupt: {0}")]
    Corrupt(String),
    /// The file is a valid redb database but not a Parabit store (or of another format version).
    #[error("not a Parabit store: {0}")]
    Foreign(String),
    /// A Parabit store in a layout this version does not read.
    #[error("the store uses layout {found:?}, this version reads {expected:?}: rebuild it by replaying the chain into a new store")]
    OldLayout {
        /// The layout tag found in the file.
        found: String,
        /// The layout tag this version writes.
        expected: String,
    },
    /// The configuration is invalid.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// A block or prepared state is not for the next height.
    #[error("height {got} is not the next height (expected {expected})")]
    WrongHeight {
        /// The next height (latest + 1, or 0 for an empty store).
        expected: u64,
        /// The height given.
        got: u64,
    },
    /// The prepared state was computed on a different parent state than the store's latest.
    #[error("the prepared state is stale: it was computed on another parent state")]
    StalePrepared,
    /// The block's state root differs from the prepared root.
    #[error("block state root {block} differs from the prepared root {prepared}")]
    StateRootMismatch {
        /// Hex of the header's state root.
        block: String,
        /// Hex of the prepared root.
        prepared: String,
    },
    /// The block's parent hash is not the previous block's hash.
    #[error("block parent hash {got} differs from the previous block's hash {expected}")]
    ParentMismatch {
        /// Hex of the previous block's hash (zeros for genesis).
        expected: String,
        /// Hex of the header's parent hash.
        got: String,
    },
    /// The header's `tx_root` or `tx_count` does not match the block's transactions.
    #[error("block header does not match its transactions (tx_root or tx_count)")]
    TxsMismatch,
    /// Receipts or extra accounts are not one per transaction.
    #[error("{what}: {got} entries for {txs} transactions")]
    CountMismatch {
        /// Which list.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The number of transactions.
        txs: usize,
    },
    /// No block at this height has been committed.
    #[error("no block at height {0}")]
    UnknownHeight(u64),
    /// The tree at this height has been pruned.
    #[error("the state at height {height} has been pruned (oldest kept: {oldest})")]
    Pruned {
        /// The height asked for.
        height: u64,
        /// The oldest height whose tree is kept.
        oldest: u64,
    },
    /// Something could not be encoded (a collection of more than `u32::MAX` items).
    #[error("cannot encode: {0}")]
    Encoding(String),
    /// The Merkle tree failed (a missing node means a corrupt database).
    #[error("merkle tree error: {0}")]
    Tree(String),
}

impl StoreError {
    /// Whether this is a refused request that left the store unchanged and healthy (as opposed
    /// to a database fault).
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            StoreError::Database(_)
                | StoreError::Corrupt(_)
                | StoreError::Foreign(_)
                | StoreError::OldLayout { .. }
                | StoreError::Tree(_)
        )
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::Database(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A state proof does not prove the claimed value against the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid state proof: {0}")]
pub struct ProofError(pub String);
