//! The `BitcoinClient` trait: the few things Parabit asks of a Bitcoin node, and its errors.
//!
//! Two backends implement it: the embedded regtest chain (`crate::regtest::RegtestClient`) and
//! Bitcoin Core over JSON-RPC (`crate::bitcoind::BitcoindClient`). The trait is synchronous and
//! object-safe (`Box<dyn BitcoinClient>` / `Arc<dyn BitcoinClient>`); async callers run it in
//! `spawn_blocking`.
//!
//! Invariants:
//! - Heights are those of the backend's active chain; `block_hash(h)` for `h > tip` is
//!   [`ClientError::NotFound`], never a stale answer.
//! - Errors say whether a retry can help: [`ClientError::is_transient`] is true only for
//!   failures of the connection or of a busy backend, never for a refused transaction.
//! - `list_unspent` returns the watched scripts' outputs that are not spent by a confirmed or an
//!   unconfirmed transaction; unconfirmed outputs have `confirmations == 0`.

use bitcoin::{Block, BlockHash, FeeRate, OutPoint, Transaction, TxOut, Txid};

/// An unspent output of a watched script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utxo {
    /// Where the output is.
    pub outpoint: OutPoint,
    /// Its value and script.
    pub txout: TxOut,
    /// Confirmations: 0 for an output of a mempool transaction, 1 for one in the tip block.
    pub confirmations: u32,
    /// Whether the output is a coinbase output (spendable after 100 confirmations).
    pub coinbase: bool,
}

impl Utxo {
    /// Whether the output may be spent by a transaction entering the mempool now.
    pub fn is_spendable(&self) -> bool {
        !self.coinbase || self.confirmations >= bitcoin::constants::COINBASE_MATURITY
    }
}

/// Errors of a Bitcoin backend.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The backend could not be reached or did not answer in time; retrying may help.
    #[error("bitcoin backend unavailable: {0}")]
    Unavailable(String),
    /// The backend is up but not ready (Bitcoin Core's warm-up, RPC_IN_WARMUP); retry later.
    #[error("bitcoin backend warming up: {0}")]
    WarmingUp(String),
    /// The transaction was refused; the reason is the backend's (Bitcoin Core's reject string
    /// on both backends, e.g. `bad-txns-inputs-missingorspent`). Permanent for this transaction.
    #[error("transaction rejected: {reason}")]
    Rejected {
        /// Bitcoin Core's RPC error code when the backend is bitcoind.
        code: Option<i64>,
        /// Why.
        reason: String,
    },
    /// No such block, height or transaction.
    #[error("not found: {0}")]
    NotFound(String),
    /// Authentication failed (wrong cookie or user/password).
    #[error("bitcoin backend refused the credentials: {0}")]
    Unauthorized(String),
    /// The backend answered something this client cannot use.
    #[error("invalid response from bitcoin backend: {0}")]
    InvalidResponse(String),
    /// Any other error the backend reported (permanent).
    #[error("bitcoin backend error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The embedded chain failed (e.g. writing its journal).
    #[error("embedded chain: {0}")]
    Backend(String),
}

impl ClientError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unavailable(_) | ClientError::WarmingUp(_)
        )
    }
}

/// The Bitcoin node as Parabit uses it. Object-safe and synchronous.
pub trait BitcoinClient: Send + Sync {
    /// Height and hash of the active chain's tip.
    fn tip(&self) -> Result<(u32, BlockHash), ClientError>;

    /// Hash of the active chain's block at `height`.
    fn block_hash(&self, height: u32) -> Result<BlockHash, ClientError>;

    /// The full block with this hash (also a block that a reorg left stale, if still known).
    fn block(&self, hash: &BlockHash) -> Result<Block, ClientError>;

    /// Submits a signed transaction to the mempool; returns its txid.
    fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, ClientError>;

    /// Fee rate to confirm soon, in the backend's best estimate (never below 1 sat/vB).
    fn estimate_fee_rate(&self) -> Result<FeeRate, ClientError>;

    /// Spendable unspent outputs of the watched scripts/addresses, confirmed or not (immature
    /// coinbase outputs are left out, as bitcoind's wallet does).
    fn list_unspent(&self) -> Result<Vec<Utxo>, ClientError>;

    /// A transaction by id, from the mempool or the chain.
    fn get_raw_transaction(&self, txid: &Txid) -> Result<Transaction, ClientError>;
}

impl<T: BitcoinClient + ?Sized> BitcoinClient for std::sync::Arc<T> {
    fn tip(&self) -> Result<(u32, BlockHash), ClientError> {
        (**self).tip()
    }
    fn block_hash(&self, height: u32) -> Result<BlockHash, ClientError> {
        (**self).block_hash(height)
    }
    fn block(&self, hash: &BlockHash) -> Result<Block, ClientError> {
        (**self).block(hash)
    }
    fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, ClientError> {
        (**self).send_raw_transaction(tx)
    }
    fn estimate_fee_rate(&self) -> Result<FeeRate, ClientError> {
        (**self).estimate_fee_rate()
    }
    fn list_unspent(&self) -> Result<Vec<Utxo>, ClientError> {
        (**self).list_unspent()
    }
    fn get_raw_transaction(&self, txid: &Txid) -> Result<Transaction, ClientError> {
        (**self).get_raw_transaction(txid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_only_for_connection_problems() {
        assert!(ClientError::Unavailable("refused".into()).is_transient());
        assert!(ClientError::WarmingUp("loading".into()).is_transient());
        let rejected = ClientError::Rejected {
            code: Some(-26),
            reason: "bad".into(),
        };
        assert!(!rejected.is_transient());
        assert!(!ClientError::NotFound("x".into()).is_transient());
        assert!(!ClientError::Rpc {
            code: -1,
            message: "x".into()
        }
        .is_transient());
    }

    #[test]
    fn trait_is_object_safe() {
        fn takes(_: Option<&dyn BitcoinClient>) {}
        takes(None);
        let _: Option<Box<dyn BitcoinClient>> = None;
    }
}
