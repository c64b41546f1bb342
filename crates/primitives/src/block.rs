//! Blocks: the header that commits to a block's transactions and resulting state, the block
//! itself, and the Merkle root of its transaction ids.
//!
//! Invariants:
//! - A header's hash is `SHA256(borsh(header))`; every field is committed to, in declaration
//!   order. The genesis block (height 0) has an all-zero `parent_hash`.
//! - [`tx_root`] is a binary SHA-256 Merkle tree over the transaction ids in block order, with
//!   domain-separated hashing (RFC 6962 style): a leaf is `SHA256(0x00 || id)`, an inner node
//!   `SHA256(0x01 || left || right)`. A level with an odd number of nodes **promotes** its
//!   last node unchanged to the next level (it is not duplicated, so no two different id lists
//!   share a root, unlike Bitcoin's duplication). The root of no transactions is all zeros.
//! - In JSON a 32-byte hash is 64 lowercase hex digits, and a block's transactions are the hex
//!   of their canonical encodings ([`SignedTransaction::encode`]); decoding them applies every
//!   check of [`SignedTransaction::decode`].

use borsh::{BorshDeserialize, BorshSerialize};
use sha2::{Digest, Sha256};

use crate::tx::{Amount, SignedTransaction, TxId};

/// A block header.
#[derive(
    Clone,
    PartialEq,
    Eq,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct BlockHeader {
    /// The block's height; genesis is 0.
    pub height: u64,
    /// The hash of the previous block's header (all zeros for genesis).
    #[serde(with = "hex32")]
    pub parent_hash: [u8; 32],
    /// When the sequencer built the block, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// [`tx_root`] of the block's transaction ids.
    #[serde(with = "hex32")]
    pub tx_root: [u8; 32],
    /// The Jellyfish Merkle root of the state after the block.
    #[serde(with = "hex32")]
    pub state_root: [u8; 32],
    /// The last Bitcoin block whose deposits this block includes.
    pub bitcoin_height: u64,
    /// The fees collected by the block's transactions, in BTC satoshis.
    pub fees: Amount,
    /// The number of transactions in the block.
    pub tx_count: u32,
}

impl BlockHeader {
    /// The header's hash: SHA-256 of its borsh encoding.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = HashWriter(Sha256::new());
        // Writing into a hash cannot fail, and a header has no collections.
        if let Err(e) = self.serialize(&mut h) {
            panic!("borsh encoding of a header into a hash failed: {e}");
        }
        h.0.finalize().into()
    }
}

/// A block: its header and its transactions in execution order. `C` is the call type.
#[derive(
    Clone,
    PartialEq,
    Eq,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(bound(serialize = "C: BorshSerialize", deserialize = "C: BorshDeserialize"))]
pub struct Block<C> {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, in block order.
    #[serde(with = "hex_txs")]
    pub txs: Vec<SignedTransaction<C>>,
}

impl<C: BorshSerialize> Block<C> {
    /// The ids of the block's transactions, in block order.
    pub fn tx_ids(&self) -> Vec<TxId> {
        self.txs.iter().map(SignedTransaction::id).collect()
    }

    /// Whether the header's `tx_root` and `tx_count` match the transactions.
    pub fn txs_match_header(&self) -> bool {
        u32::try_from(self.txs.len()) == Ok(self.header.tx_count)
            && tx_root(&self.tx_ids()) == self.header.tx_root
    }
}

/// The Merkle root of transaction ids (see the module doc for the exact construction).
pub fn tx_root(ids: &[TxId]) -> [u8; 32] {
    if ids.is_empty() {
        return [0; 32];
    }
    let mut level: Vec<[u8; 32]> = ids
        .iter()
        .map(|id| {
            let mut h = Sha256::new();
            h.update([0x00]);
            h.update(id.0);
            h.finalize().into()
        })
        .collect();
    while level.len() > 1 {
        let next = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut h = Sha256::new();
                    h.update([0x01]);
                    h.update(left);
                    h.update(right);
                    h.finalize().into()
                }
                // An odd last node is promoted unchanged.
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
        level = next;
    }
    level.first().copied().unwrap_or([0; 32])
}

/// Feeds written bytes into a hash.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serde of a 32-byte hash as 64 hex digits.
mod hex32 {
    pub fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out)
            .map_err(|_| serde::de::Error::custom("a 32-byte hash is 64 hex digits"))?;
        Ok(out)
    }
}

/// Serde of a block's transactions as the hex of their canonical encodings.
mod hex_txs {
    use borsh::{BorshDeserialize, BorshSerialize};
    use serde::ser::SerializeSeq;

    use crate::tx::SignedTransaction;

    pub fn serialize<C: BorshSerialize, S: serde::Serializer>(
        txs: &[SignedTransaction<C>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(txs.len()))?;
        for tx in txs {
            seq.serialize_element(&hex::encode(tx.encode()))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, C: BorshDeserialize, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<SignedTransaction<C>>, D::Error> {
        let texts = <Vec<String> as serde::Deserialize>::deserialize(d)?;
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let bytes = hex::decode(text).map_err(|e| {
                    serde::de::Error::custom(format!("transaction {i}: invalid hex: {e}"))
                })?;
                SignedTransaction::decode(&bytes)
                    .map_err(|e| serde::de::Error::custom(format!("transaction {i}: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TxId {
        TxId([n; 32])
    }

    fn leaf(id: &TxId) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0x00]);
        h.update(id.0);
        h.finalize().into()
    }

    fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0x01]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    }

    #[test]
    fn tx_root_matches_its_definition() {
        assert_eq!(tx_root(&[]), [0; 32]);
        assert_eq!(tx_root(&[id(1)]), leaf(&id(1)));
        let (a, b, c) = (leaf(&id(1)), leaf(&id(2)), leaf(&id(3)));
        assert_eq!(tx_root(&[id(1), id(2)]), node(&a, &b));
        // Odd node promoted, not duplicated.
        assert_eq!(tx_root(&[id(1), id(2), id(3)]), node(&node(&a, &b), &c));
        assert_ne!(
            tx_root(&[id(1), id(2), id(3)]),
            tx_root(&[id(1), id(2), id(3), id(3)])
        );
    }

    #[test]
    fn header_hash_is_sha256_of_borsh() {
        let h = BlockHeader {
            height: 3,
            parent_hash: [1; 32],
            timestamp_ms: 4,
            tx_root: [2; 32],
            state_root: [3; 32],
            bitcoin_height: 5,
            fees: 6,
            tx_count: 7,
        };
        let expected: [u8; 32] = Sha256::digest(borsh::to_vec(&h).expect("encode")).into();
        assert_eq!(h.hash(), expected);
    }
}
