//! Parabit's Bitcoin side.
//!
//! - [`client`]: the [`BitcoinClient`] trait every backend implements, and its errors.
//! - [`verify`]: transaction checks; scripts are verified by Bitcoin Core's own interpreter
//!   (`libbitcoinconsensus` 26, taproot included).
//! - [`envelope`]: the taproot envelope leaf (`<key> OP_CHECKSIG OP_FALSE OP_IF "pbt" …`) and
//!   commit/reveal pairs that publish data on Bitcoin.
//! - [`regtest`]: the embedded regtest chain (blocks, UTXO set, mempool, reorgs, journal).
//! - [`wallet`]: a single-key taproot key-path wallet (coin selection, signing).
//!
//! All Bitcoin types are `rust-bitcoin`'s, re-exported as [`bitcoin`].

pub mod client;
pub mod envelope;
pub mod regtest;
pub mod verify;
pub mod wallet;

pub use bitcoin;
pub use client::{BitcoinClient, ClientError, Utxo};
pub use envelope::{build_commit_reveal, CommitReveal, Envelope, EnvelopeError};
pub use regtest::{RegtestChain, RegtestClient, RegtestConfig, RegtestError};
pub use wallet::{TaprootWallet, WalletError};
