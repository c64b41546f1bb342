//! Parabit's Bitcoin side.
//!
//! - [`bridge`]: the BTC bridge's Bitcoin side: the bridge output (the sequencer key tweaked
//!   with a fixed merkle root), deposits into it (`OP_RETURN "pbd" ‖ recipient`) and payouts of
//!   withdrawals out of it (`OP_RETURN "pbw" ‖ cursor`).
//! - [`client`]: the [`BitcoinClient`] trait every backend implements, and its errors.
//! - [`bitcoind`]: the Bitcoin Core JSON-RPC backend ([`BitcoindClient`]).
//! - [`verify`]: transaction checks; scripts are verified by Bitcoin Core's own interpreter
//!   (`libbitcoinconsensus` 26, taproot included).
//! - [`envelope`]: the taproot envelope leaf (`<key> OP_CHECKSIG OP_FALSE OP_IF "pbt" …`) and
//!   commit/reveal pairs that publish data on Bitcoin.
//! - [`regtest`]: the embedded regtest chain (blocks, UTXO set, mempool, reorgs, journal).
//! - [`wallet`]: a single-key taproot key-path wallet (coin selection, signing).
//!
//! All Bitcoin types are `rust-bitcoin`'s, re-exported as [`bitcoin`].
//!
//! **Script checks.** The embedded chain verifies every input with `bitcoinconsensus` 0.106
//! (Bitcoin Core 26's `libbitcoinconsensus`, whose `verify_script_with_spent_outputs` covers
//! taproot) under the flags of a post-taproot block. It compiles Core's C++ once (about 30 s on
//! two cores), and in exchange legacy, segwit v0 and taproot key- and script-path spends are
//! checked by the same interpreter as mainnet's, instead of a hand-written subset; nothing
//! valid under consensus is refused and nothing invalid is accepted. Policy rules that are
//! not consensus (standardness of scripts, MINIMALDATA, dust outputs of other wallets) are not
//! enforced beyond the 400,000 WU weight limit, the 1 sat/vB relay fee and full-RBF rules.

pub mod bitcoind;
pub mod bridge;
pub mod client;
pub mod envelope;
pub mod regtest;
pub mod verify;
pub mod wallet;

pub use bitcoin;
pub use bitcoind::{Auth, BitcoindClient, BitcoindConfig};
pub use bridge::{
    bridge_address, bridge_merkle_root, bridge_script, bridge_wallet, build_deposit, build_payout,
    parse_payout, scan_deposits, BitcoinDeposit, BridgeError, Payout, PayoutRequest,
    SkippedDeposit,
};
pub use client::{BitcoinClient, ClientError, Utxo};
pub use envelope::{
    build_commit_reveal, build_commit_reveals, verified_envelopes, verified_envelopes_in_block,
    CommitReveal, CommitReveals, Envelope, EnvelopeError,
};
pub use regtest::{RegtestChain, RegtestClient, RegtestConfig, RegtestError};
pub use wallet::{Funded, TaprootWallet, WalletError};
