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
//! - A tree node key `(version, nibble path)` is encoded as `version (8, big-endian) ‖ the
//!   path's nibbles packed two per byte (a trailing half byte is zero) ‖ nibble count (1)`,
//!   which is injective; [`node_key_at`] gives the same bytes for a prefix of a key hash.

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

/// `version ‖ key_hash` (version big-endian): the key of a value's history entry.
pub(crate) fn history_key(version: u64, key_hash: &[u8; 32]) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&version.to_be_bytes());
    out[8..].copy_from_slice(key_hash);
    out
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
        assert!(history_key(255, &[9; 32]) < history_key(256, &[0; 32]));
        assert!(account_key(&[1; 32], 1, u32::MAX) < account_key(&[1; 32], 2, 0));
        assert_eq!(be_u64(&history_key(77, &[0; 32]), 0), Some(77));
        assert_eq!(be_u64(&[0; 7], 0), None);
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
            // A newer version sorts after every key of an older one.
            assert!(node_key_at(299, &[0xFF; 32], 64) < encoded);
            assert!(encoded < node_key_at(301, &[0; 32], 0));
        }
    }
}
