//! Parabit's basic types: addresses, assets, amounts, transaction ids, transactions and
//! receipts; their borsh encoding and BIP-340 Schnorr signing.
//!
//! Invariants (detailed in each module):
//! - Every encoding is canonical: decoding accepts exactly what encoding produces.
//! - No input (an address string, transaction bytes, a signature) can make this crate
//!   panic; every rejection is a typed error with a readable message.
//! - Signatures are deterministic BIP-340 over a tagged hash that commits to every field of
//!   a transaction, including the chain id.

mod address;
mod block;
mod keys;
mod receipt;
mod tx;

pub use address::{Address, AddressError, Network, MAINNET_HRP, REGTEST_HRP};
pub use block::{tx_root, Block, BlockHeader};
pub use keys::{KeyError, SigningKey};
pub use receipt::{Receipt, TxStatus};
pub use tx::{
    verify_batch, verify_digest, verify_one, Amount, AssetId, DecodeError, SignatureError,
    SignedTransaction, Transaction, TxId, TxIdParseError, MAX_TX_SIZE, TX_TAG,
};
