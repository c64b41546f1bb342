//! Byte encodings of what the store keeps: state values, tree key hashes, tree node keys, and
//! the composite keys of the history and index tables.
//!
//! Invariants:
//! - A [`Value`] has exactly one encoding: `0x00 || u128 little-endian` (17 bytes) for
//!   `Num`, `0x01 || bytes` for `Bytes`. [`decode_value`] accepts exactly these, so the
//!   encoding (and the tree's value hash, which is over it) is canonical and never empty.
//! - A state key's tree key hash is `SHA256(key bytes)`.
//! - Composite keys are big-endian and version-first where they hold a version, so byte order
//!   equals numeric order and everything one block writes sorts after everything older: a
//!   block's tree nodes and history entries are appended at the end of their tables.
//! - A stored tree node is `borsh(Node)`, followed for a leaf by its state entry (key and
//!   encoded value): the tree's leaves are the latest state and its history at once.
//! - A tree node key `(version, nibble path)` is encoded as `version (8, big-endian) ‖ the
//!   path's nibbles packed two per byte (a trailing half byte is zero) ‖ nibble count (1)`,
//!   which is injective; [`node_key_at`] gives the same bytes for a prefix of a key hash.

use borsh::BorshDeserialize;
use jmt::storage::Node;
use parabit_exec::{Key, Value};
use sha2::{Digest, Sha256};

use crate::error::StoreError;

const TAG_NUM: u8 = 0;
const TAG_BYTES: u8 = 1;

/// The canonical encoding of a state value (see the module doc).
pub fn encode_value(value: &Value) -> Vec<u8> {
    match value {
        Value::Num(n) => {
            let mut out = Vec::with_capacity(17);
            out.push(TAG_NUM);
            out.extend_from_slice(&n.to_le_bytes());
            out
        }
        Value::Bytes(b) => {
            let mut out = Vec::with_capacity(1 + b.len());
            out.push(TAG_BYTES);
            out.extend_from_slice(b);
            out
        }
    }
}

/// Decodes [`encode_value`]'s output; anything else is `None`.
pub fn decode_value(bytes: &[u8]) -> Option<Value> {
    match bytes.split_first() {
        Some((&TAG_NUM, rest)) => {
            let n: [u8; 16] = rest.try_into().ok()?;
            Some(Value::Num(u128::from_le_bytes(n)))
        }
        Some((&TAG_BYTES, rest)) => Some(Value::bytes(rest)),
        _ => None,
    }
}

/// Decodes a stored value, naming what it was on failure.
pub(crate) fn stored_value(bytes: &[u8], what: &str) -> Result<Value, StoreError> {
    decode_value(bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: invalid value encoding")))
}

/// Decodes a stored key.
pub(crate) fn stored_key(bytes: &[u8]) -> Result<Key, StoreError> {
    Key::new(bytes).map_err(|e| StoreError::Corrupt(format!("state key: {e}")))
}

/// The tree key hash of a state key: SHA-256 of its bytes.
pub fn key_hash(key: &Key) -> jmt::KeyHash {
    jmt::KeyHash(Sha256::digest(key.as_bytes()).into())
}

/// The stored key of a tree node (see the module doc).
pub(crate) fn node_key(key: &jmt::storage::NodeKey) -> Vec<u8> {
    let path = key.nibble_path();
    let count = path.num_nibbles();
    let mut out = Vec::with_capacity(9 + count.div_ceil(2));
    out.extend_from_slice(&key.version().to_be_bytes());
    let mut half: Option<u8> = None;
    for nibble in path.nibbles() {
        let n = u8::from(nibble);
        match half.take() {
            None => half = Some(n << 4),
            Some(high) => out.push(high | n),
        }
    }
    out.extend(half);
    // A nibble path has at most 64 nibbles.
    out.push(u8::try_from(count).unwrap_or(u8::MAX));
    out
}

/// The stored key of the node at `version` whose path is the first `depth` nibbles of
/// `key_hash` (`depth <= 64`).
pub(crate) fn node_key_at(version: u64, key_hash: &[u8; 32], depth: usize) -> Vec<u8> {
    let depth = depth.min(64);
    let bytes = depth.div_ceil(2);
    let mut out = Vec::with_capacity(9 + bytes);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&key_hash[..bytes]);
    if depth % 2 == 1 {
        if let Some(last) = out.last_mut() {
            *last &= 0xF0;
        }
    }
    out.push(depth as u8);
    out
}

/// The stored key of the child at `nibble` (`< 16`), created at `version`, of the node stored
/// under `parent`.
pub(crate) fn child_key(parent: &[u8], version: u64, nibble: u8) -> Vec<u8> {
    let (Some(&count), Some(path)) = (parent.last(), parent.get(8..parent.len().saturating_sub(1)))
    else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(parent.len() + 1);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(path);
    if count % 2 == 0 {
        out.push(nibble << 4);
    } else if let Some(last) = out.last_mut() {
        *last |= nibble & 0x0F;
    }
    out.push(count.saturating_add(1));
    out
}

/// The stored entry of a tree node: `borsh(node)`, and for a leaf then `key length (1) ‖ key
/// bytes ‖ encoded value` of the state entry it commits to.
pub(crate) fn node_entry(node: &Node, leaf: Option<(&Key, &[u8])>) -> Result<Vec<u8>, StoreError> {
    let mut out = borsh::to_vec(node).map_err(|e| StoreError::Encoding(e.to_string()))?;
    if let Some((key, value)) = leaf {
        let bytes = key.as_bytes();
        // A key has at most MAX_KEY_LEN (62) bytes.
        out.push(
            u8::try_from(bytes.len()).map_err(|_| StoreError::Encoding("key too long".into()))?,
        );
        out.extend_from_slice(bytes);
        out.extend_from_slice(value);
    }
    Ok(out)
}

/// A leaf's state entry: its key and encoded value.
pub(crate) type StateEntry<'a> = (Key, &'a [u8]);

/// Decodes the node of a stored entry (ignoring a leaf's state entry).
pub(crate) fn entry_node(bytes: &[u8]) -> Result<Node, StoreError> {
    let mut rest = bytes;
    Node::deserialize(&mut rest).map_err(|e| StoreError::Corrupt(format!("tree node: {e}")))
}

/// Decodes a stored entry: the node, and for a leaf its state key and encoded value (checked
/// to be a valid encoding). An internal node with trailing bytes, or a leaf without a valid
/// state entry, is corrupt.
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<(Node, Option<StateEntry<'_>>), StoreError> {
    let mut rest = bytes;
    let node =
        Node::deserialize(&mut rest).map_err(|e| StoreError::Corrupt(format!("tree node: {e}")))?;
    match node {
        Node::Leaf(_) => {
            let corrupt = || StoreError::Corrupt("leaf entry without a valid state entry".into());
            let (&len, rest) = rest.split_first().ok_or_else(corrupt)?;
            let key = rest.get(..usize::from(len)).ok_or_else(corrupt)?;
            let value = rest.get(usize::from(len)..).ok_or_else(corrupt)?;
            decode_value(value).ok_or_else(corrupt)?;
            Ok((node, Some((stored_key(key)?, value))))
        }
        _ if rest.is_empty() => Ok((node, None)),
        _ => Err(StoreError::Corrupt(
            "trailing bytes after a tree node".into(),
        )),
    }
}

/// The nibble of `key_hash` at `depth` (`depth < 64`).
pub(crate) fn nibble(key_hash: &[u8; 32], depth: usize) -> u8 {
    let byte = key_hash[(depth / 2) % 32];
    if depth.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0F
    }
}

/// `address || height || index`: an account's transaction.
pub(crate) fn account_key(address: &[u8; 32], height: u64, index: u32) -> [u8; 44] {
    let mut out = [0u8; 44];
    out[..32].copy_from_slice(address);
    out[32..40].copy_from_slice(&height.to_be_bytes());
    out[40..].copy_from_slice(&index.to_be_bytes());
    out
}

/// Reads a big-endian u64 at `at` in `bytes`.
pub(crate) fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_be_bytes(slice.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_encoding_round_trips_and_is_strict() {
        for v in [
            Value::Num(0),
            Value::Num(u128::MAX),
            Value::bytes(vec![]),
            Value::bytes(vec![0; 17]),
        ] {
            assert_eq!(decode_value(&encode_value(&v)), Some(v));
        }
        assert_eq!(encode_value(&Value::Num(1)).len(), 17);
        assert_eq!(decode_value(&[]), None);
        assert_eq!(decode_value(&[0; 16]), None);
        assert_eq!(decode_value(&[0; 18]), None);
        assert_eq!(decode_value(&[2, 1]), None);
        // A number and bytes never share an encoding.
        assert_ne!(
            encode_value(&Value::Num(5)),
            encode_value(&Value::bytes(5u128.to_le_bytes().to_vec()))
        );
    }

    #[test]
    fn composite_keys_sort_numerically() {
        assert!(account_key(&[1; 32], 1, u32::MAX) < account_key(&[1; 32], 2, 0));
        assert_eq!(be_u64(&account_key(&[0; 32], 77, 0), 32), Some(77));
        assert_eq!(be_u64(&[0; 7], 0), None);
    }

    #[test]
    fn leaf_entries_round_trip_and_are_strict() {
        use jmt::storage::LeafNode;
        use jmt::ValueHash;
        let k = Key::new(b"account").expect("key");
        let v = encode_value(&Value::Num(7));
        let leaf = Node::Leaf(LeafNode::new(key_hash(&k), ValueHash([3; 32])));
        let entry = node_entry(&leaf, Some((&k, &v))).expect("entry");
        let (node, state) = decode_entry(&entry).expect("decodes");
        assert_eq!(node, leaf);
        assert_eq!(state, Some((k, v.as_slice())));
        assert_eq!(entry_node(&entry).expect("node"), leaf);
        // A leaf without its state entry, with a bad value, or with a key length past the end.
        let bare = node_entry(&leaf, None).expect("bare");
        assert!(decode_entry(&bare).is_err());
        assert!(decode_entry(&[&entry[..entry.len() - 1], &[]].concat()).is_err());
        let mut long = entry.clone();
        long[bare.len()] = 200;
        assert!(decode_entry(&long).is_err());
        // A null node with trailing bytes.
        let null = node_entry(&Node::Null, None).expect("null");
        assert_eq!(decode_entry(&null).expect("null").0, Node::Null);
        assert!(decode_entry(&[null.as_slice(), &[1]].concat()).is_err());
    }

    /// Node keys of every path prefix of a key hash, built by jmt (through borsh, the only
    /// public way to build a path) and by [`node_key_at`].
    #[test]
    fn node_keys_are_version_first_and_match_prefix_keys() {
        use jmt::storage::{NibblePath, NodeKey};
        let hash: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5A);
        let mut seen = std::collections::BTreeSet::new();
        for depth in 0..=64usize {
            let mut bytes = hash[..depth.div_ceil(2)].to_vec();
            if depth % 2 == 1 {
                if let Some(l) = bytes.last_mut() {
                    *l &= 0xF0;
                }
            }
            let mut raw = (depth as u64).to_le_bytes().to_vec();
            raw.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            raw.extend_from_slice(&bytes);
            let path: NibblePath = borsh::from_slice(&raw).expect("path");
            assert_eq!(path.num_nibbles(), depth);
            for (i, n) in path.nibbles().enumerate() {
                assert_eq!(u8::from(n), nibble(&hash, i));
            }
            let key = NodeKey::new(300, path);
            let encoded = node_key(&key);
            assert_eq!(encoded, node_key_at(300, &hash, depth), "depth {depth}");
            assert!(seen.insert(encoded.clone()), "injective");
            if depth < 64 {
                assert_eq!(
                    child_key(&encoded, 301, nibble(&hash, depth)),
                    node_key_at(301, &hash, depth + 1)
                );
            }
            // A newer version sorts after every key of an older one.
            assert!(node_key_at(299, &[0xFF; 32], 64) < encoded);
            assert!(encoded < node_key_at(301, &[0; 32], 0));
        }
    }
}
