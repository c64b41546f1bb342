//! The Jellyfish Merkle tree over the state: a [`TreeReader`] over the store's redb tables,
//! state proofs and their verification, and the root of a state built from scratch.
//!
//! Invariants:
//! - Tree version = block height. A leaf's key is [`key_hash`] of the state key and its value
//!   is [`encode_value`] of the state value, so a root commits to every key and value exactly.
//! - Nodes are stored under `borsh(NodeKey)` as `borsh(Node)`; value history under
//!   `key_hash || version` (big-endian), where an empty entry records a deletion. The reader
//!   answers "newest entry at or below a version", which is what proofs at past heights need.
//! - [`verify_proof`] depends only on its arguments (a light client can run it).

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleProof;
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, RootHash, Sha256Jmt, Version};
use parabit_exec::{Key, KeyMap, Value};
use redb::ReadOnlyTable;
use sha2::Sha256;

use crate::codec::{encode_value, key_hash, value_key};
use crate::error::{ProofError, StoreError};

/// The root of the empty tree.
pub const EMPTY_ROOT: [u8; 32] = Sha256Jmt::<EmptyReader>::EMPTY_ROOT.0;

/// A proof that a key has a given value (or none) in the state under a root. Its borsh
/// encoding is canonical; in JSON it is the hex of that encoding.
#[derive(Clone, PartialEq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Proof(SparseMerkleProof<Sha256>);

impl Proof {
    pub(crate) fn new(proof: SparseMerkleProof<Sha256>) -> Proof {
        Proof(proof)
    }

    /// The borsh encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding into memory cannot fail; a proof has at most 256 siblings.
        borsh::to_vec(self).unwrap_or_default()
    }

    /// Decodes [`Proof::to_bytes`]'s output; trailing bytes are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Proof, ProofError> {
        borsh::from_slice(bytes).map_err(|e| ProofError(format!("undecodable proof: {e}")))
    }
}

impl serde::Serialize for Proof {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> serde::Deserialize<'de> for Proof {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Proof, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        Proof::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Checks that `proof` shows `key` holding `value` (`None`: absent) in the state whose root is
/// `root`.
pub fn verify_proof(
    root: [u8; 32],
    key: &Key,
    value: Option<&Value>,
    proof: &Proof,
) -> Result<(), ProofError> {
    proof
        .0
        .verify(RootHash(root), key_hash(key), value.map(encode_value))
        .map_err(|e| ProofError(e.to_string()))
}

/// The root of a tree built from scratch over `state` (the reference for the incremental
/// roots; it holds the whole tree in memory).
pub fn fresh_state_root(state: &KeyMap<Value>) -> Result<[u8; 32], StoreError> {
    let set: Vec<(KeyHash, Option<OwnedValue>)> = state
        .iter()
        .map(|(k, v)| (key_hash(k), Some(encode_value(v))))
        .collect();
    let (root, _) = Sha256Jmt::new(&EmptyReader)
        .put_value_set(set, 0)
        .map_err(tree_error)?;
    Ok(root.0)
}

/// Wraps a tree error.
pub(crate) fn tree_error(e: anyhow::Error) -> StoreError {
    StoreError::Tree(format!("{e:#}"))
}

/// A reader of an empty store.
pub struct EmptyReader;

impl TreeReader for EmptyReader {
    fn get_node_option(&self, _: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(None)
    }
    fn get_value_option(&self, _: Version, _: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        Ok(None)
    }
    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(None)
    }
}

/// Reads tree nodes and value history from a redb read transaction.
pub(crate) struct RedbTreeReader {
    pub(crate) nodes: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(crate) values: ReadOnlyTable<&'static [u8; 40], &'static [u8]>,
}

impl TreeReader for RedbTreeReader {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let key = borsh::to_vec(node_key)?;
        match self.nodes.get(key.as_slice())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(Node::try_from_slice(bytes.value())?)),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let low = value_key(&key_hash.0, 0);
        let high = value_key(&key_hash.0, max_version);
        match self.values.range::<&[u8; 40]>(&low..=&high)?.next_back() {
            None => Ok(None),
            Some(entry) => {
                let (_, value) = entry?;
                let bytes = value.value();
                Ok(if bytes.is_empty() {
                    None
                } else {
                    Some(bytes.to_vec())
                })
            }
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("tree restoration is not supported by this store")
    }
}
