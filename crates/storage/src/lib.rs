//! Parabit's durable store: one redb file holding the Jellyfish Merkle tree of the state (its
//! leaves hold the state entries, so the tree is the latest state and its history at once, and
//! proofs at past heights work), blocks, receipts, and indexes of transactions by id and by
//! account; one atomic, durable write transaction per block, whose tree writes are appends.
//!
//! Use: [`Store::open`]; per block, [`Store::prepare`] the block's [`WriteSet`] (which gives
//! the state root for the header), then [`Store::commit`] the block with its receipts. Read
//! with [`Store::get`], [`Store::load_state`], [`Store::block`], [`Store::receipt`]…; prove
//! with [`Store::get_with_proof`] and check with [`verify_proof`].
//!
//! Invariants (detailed in each module):
//! - Tree version = block height; genesis is height 0; a key's tree key is SHA-256 of its
//!   bytes and its tree value the canonical [`encode_value`] of its value.
//! - A committed block survives a crash at any instant, whole: state, tree, block, receipts
//!   and indexes are one transaction. A refused commit changes nothing.
//! - Nothing read from the file or given by a caller panics the store; a corrupt or foreign
//!   file is a [`StoreError`].
//!
//! | file | what it holds |
//! |---|---|
//! | `store.rs` | [`Store`], [`StoreConfig`], [`Prepared`], [`CommitProfile`]: tables, commit, reads, pruning |
//! | `tree.rs` | the tree reader over redb and its node cache, [`Proof`], [`verify_proof`], [`fresh_state_root`] |
//! | `codec.rs` | value encoding, key hashes, tree node keys and entries, composite index keys |
//! | `error.rs` | [`StoreError`], [`ProofError`] |
//!
//! [`WriteSet`]: parabit_exec::WriteSet

mod codec;
mod error;
mod store;
mod tree;

pub use codec::{decode_value, encode_value, key_hash};
pub use error::{ProofError, StoreError};
pub use store::{CommitProfile, Prepared, Store, StoreConfig, TreeStats};
pub use tree::{fresh_state_root, verify_proof, Proof, EMPTY_ROOT};
