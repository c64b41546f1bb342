//! Byte encodings of what the store keeps: state values, tree key hashes, and the composite
//! keys of the index tables.
//!
//! Invariants:
//! - A [`Value`] has exactly one encoding: `0x00 || u128 little-endian` (17 bytes) for
//!   `Num`, `0x01 || bytes` for `Bytes`. [`decode_value`] accepts exactly these, so the
//!   encoding (and the tree's value hash, which is over it) is canonical and never empty.
//! - A state key's tree key hash is `SHA256(key bytes)`.
//! - Composite index keys are big-endian, so byte order equals numeric order.

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

/// `key_hash || version` (big-endian): the key of a value's history entry.
pub(crate) fn value_key(key_hash: &[u8; 32], version: u64) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(key_hash);
    out[32..].copy_from_slice(&version.to_be_bytes());
    out
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
        assert!(value_key(&[1; 32], 255) < value_key(&[1; 32], 256));
        assert!(account_key(&[1; 32], 1, u32::MAX) < account_key(&[1; 32], 2, 0));
        assert_eq!(be_u64(&value_key(&[0; 32], 77), 32), Some(77));
        assert_eq!(be_u64(&[0; 7], 0), None);
    }
}
