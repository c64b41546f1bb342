//! The Jellyfish Merkle tree over the state: a [`TreeReader`] over the store's redb tables,
//! state proofs and their verification, and the root of a state built from scratch.
//!
//! Invariants:
//! - Tree version = block height. A leaf's key is [`key_hash`] of the state key and its value
//!   is [`encode_value`] of the state value, so a root commits to every key and value exactly.
//! - Nodes are stored under their version-first node key ([`crate::codec`]) as `borsh(Node)`,
//!   a leaf followed by its state key and encoded value: the value of a key in the tree at any
//!   kept version (the latest included) is found by walking that tree to the key's leaf, and
//!   the state at a version is the entries of its tree's leaves.
//! - The [`NodeCache`] holds nodes by node key, so whatever it returns is the stored node.
//! - [`verify_proof`] depends only on its arguments (a light client can run it).

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleProof;
use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, RootHash, Sha256Jmt, Version};
use parabit_exec::{Key, KeyMap, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use redb::{ReadOnlyTable, ReadTransaction};
use sha2::Sha256;

use crate::codec::{
    be_u64, child_key, decode_entry, encode_value, entry_node, key_hash, nibble,
    node_key as codec_node_key, node_key_at,
};
use crate::error::{ProofError, StoreError};
use crate::store::NODES;

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

/// The latest tree's nodes down to a depth, in memory, so that [`crate::Store::prepare`] need
/// not read them from the file. Entries are keyed by their stored node key (see
/// [`crate::codec`]): a node key names one immutable node, so an entry is never wrong, only
/// possibly superseded; each path keeps only its newest node, which bounds the cache by the
/// number of paths of at most `depth` nibbles (`(16^(depth+1) - 1) / 15`).
pub(crate) struct NodeCache {
    depth: usize,
    /// Stored key without its version (path bytes ‖ nibble count) → (version, node).
    nodes: HashMap<Vec<u8>, (u64, Node)>,
}

impl NodeCache {
    pub(crate) fn new(depth: usize) -> NodeCache {
        NodeCache {
            depth,
            nodes: HashMap::new(),
        }
    }

    /// Whether a node with this stored key belongs in the cache.
    pub(crate) fn holds(&self, key: &[u8]) -> bool {
        key.len() >= 9 && key.last().is_some_and(|d| usize::from(*d) <= self.depth)
    }

    fn get(&self, key: &[u8]) -> Option<&Node> {
        let version = be_u64(key, 0)?;
        match self.nodes.get(key.get(8..)?) {
            Some((v, node)) if *v == version => Some(node),
            _ => None,
        }
    }

    /// Adds a node (ignored beyond the depth, or when the path holds a newer one).
    pub(crate) fn insert(&mut self, key: &[u8], node: &Node) {
        let (Some(version), Some(path)) = (be_u64(key, 0), key.get(8..)) else {
            return;
        };
        if !self.holds(key) {
            return;
        }
        match self.nodes.get_mut(path) {
            Some((v, _)) if *v > version => {}
            Some(entry) => *entry = (version, node.clone()),
            None => {
                self.nodes.insert(path.to_vec(), (version, node.clone()));
            }
        }
    }
}

/// Reads tree nodes (through the node cache) and the state entries of leaves from a redb read
/// transaction.
pub(crate) struct RedbTreeReader<'a> {
    pub(crate) nodes: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(crate) cache: Option<&'a NodeCache>,
    /// Nodes read from the file that belong in the cache (to add once the read is over).
    pub(crate) misses: RefCell<Vec<(Vec<u8>, Node)>>,
    /// Nodes read from the file.
    pub(crate) reads: Cell<u64>,
    /// Nodes found in the cache.
    pub(crate) hits: Cell<u64>,
}

impl<'a> RedbTreeReader<'a> {
    pub(crate) fn new(
        read: &ReadTransaction,
        cache: Option<&'a NodeCache>,
    ) -> Result<Self, StoreError> {
        Ok(RedbTreeReader {
            nodes: read.open_table(NODES)?,
            cache,
            misses: RefCell::new(Vec::new()),
            reads: Cell::new(0),
            hits: Cell::new(0),
        })
    }

    /// The node stored under `key`.
    fn node(&self, key: &[u8]) -> Result<Option<Node>, StoreError> {
        if let Some(node) = self.cache.and_then(|c| c.get(key)) {
            self.hits.set(self.hits.get() + 1);
            return Ok(Some(node.clone()));
        }
        self.reads.set(self.reads.get() + 1);
        match self.nodes.get(key)? {
            None => Ok(None),
            Some(bytes) => {
                let node = entry_node(bytes.value())?;
                if self.cache.is_some_and(|c| c.holds(key)) {
                    self.misses.borrow_mut().push((key.to_vec(), node.clone()));
                }
                Ok(Some(node))
            }
        }
    }

    /// The state entry of `key_hash`'s leaf among `stale`: nodes of the previous tree that an
    /// update replaced, by path (stored key without its version) → version. When the update
    /// moved the key's leaf to another path, its old leaf is the deepest of them on the key's
    /// path, so this usually costs one read instead of a walk from the root.
    pub(crate) fn stale_leaf_entry(
        &self,
        stale: &HashMap<Vec<u8>, u64>,
        key_hash: &KeyHash,
    ) -> Result<Option<(Key, OwnedValue)>, StoreError> {
        for depth in (0..=64).rev() {
            let mut key = node_key_at(0, &key_hash.0, depth);
            let Some(version) = key.get(8..).and_then(|path| stale.get(path)) else {
                continue;
            };
            key[..8].copy_from_slice(&version.to_be_bytes());
            let Some(bytes) = self.nodes.get(key.as_slice())? else {
                continue;
            };
            if let (Node::Leaf(leaf), Some((k, v))) = decode_entry(bytes.value())? {
                if leaf.key_hash() == *key_hash {
                    return Ok(Some((k, v.to_vec())));
                }
            }
        }
        Ok(None)
    }

    /// The state entry (key, encoded value) of `key_hash` in the tree at `version`, found by
    /// walking that tree from its root to the key's leaf.
    pub(crate) fn entry_at(
        &self,
        version: Version,
        key_hash: &KeyHash,
    ) -> Result<Option<(Key, OwnedValue)>, StoreError> {
        let kh = &key_hash.0;
        let mut node_version = version;
        for depth in 0..=64 {
            let key = node_key_at(node_version, kh, depth);
            let Some(node) = self.node(&key)? else {
                return Err(StoreError::Corrupt(format!(
                    "tree node of version {node_version} at depth {depth} is missing"
                )));
            };
            match node {
                Node::Null => return Ok(None),
                Node::Leaf(leaf) => {
                    if leaf.key_hash() != *key_hash {
                        return Ok(None);
                    }
                    let bytes = self.nodes.get(key.as_slice())?.ok_or_else(|| {
                        StoreError::Corrupt(format!("leaf of version {node_version} is missing"))
                    })?;
                    let (_, entry) = decode_entry(bytes.value())?;
                    return Ok(entry.map(|(k, v)| (k, v.to_vec())));
                }
                Node::Internal(internal) => {
                    if depth >= 64 {
                        break;
                    }
                    match internal.child(nibble(kh, depth).into()) {
                        None => return Ok(None),
                        Some(child) => node_version = child.version,
                    }
                }
            }
        }
        Err(StoreError::Corrupt("tree deeper than 64 nibbles".into()))
    }

    /// Calls `f` with the state entry of every leaf of the tree at `version`, in key hash
    /// order.
    pub(crate) fn for_each_leaf(
        &self,
        version: Version,
        mut f: impl FnMut(Key, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stack = vec![node_key_at(version, &[0; 32], 0)];
        while let Some(key) = stack.pop() {
            let bytes = self.nodes.get(key.as_slice())?.ok_or_else(|| {
                StoreError::Corrupt(format!("tree node {} is missing", hex::encode(&key)))
            })?;
            match decode_entry(bytes.value())? {
                (Node::Null, _) => {}
                (Node::Leaf(_), Some((k, v))) => f(k, v)?,
                (Node::Leaf(_), None) => {
                    return Err(StoreError::Corrupt("leaf without a state entry".into()))
                }
                (Node::Internal(internal), _) => {
                    if key.last().is_some_and(|d| *d >= 64) {
                        return Err(StoreError::Corrupt("tree deeper than 64 nibbles".into()));
                    }
                    let children: Vec<_> = internal
                        .children_sorted()
                        .map(|(n, c)| child_key(&key, c.version, u8::from(n)))
                        .collect();
                    stack.extend(children.into_iter().rev());
                }
            }
        }
        Ok(())
    }
}

impl TreeReader for RedbTreeReader<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.node(&codec_node_key(node_key))?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.entry_at(max_version, &key_hash)?.map(|(_, v)| v))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        anyhow::bail!("tree restoration is not supported by this store")
    }
}
