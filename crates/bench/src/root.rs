//! A stand-in state root: a SHA-256 commitment to a whole in-memory state.
//!
//! **This is a placeholder until the Jellyfish Merkle tree (`jmt`) lands**; it commits to the
//! same thing (every key and value), so comparing two of them answers "are these states
//! identical?", which is all the bench needs. It is not the chain's state root and has no
//! proofs.
//!
//! Definition: entries sorted by key bytes; for each, `len(key) as u8 ‖ key ‖ value`, where a
//! value is `0x00 ‖ u128 little-endian` for `Num` and `0x01 ‖ len as u32 little-endian ‖ bytes`
//! for `Bytes`; the root is SHA-256 of the concatenation.

use parabit_exec::{KeyMap, Value};
use sha2::{Digest, Sha256};

/// The stand-in root of `state` (see the module doc for the exact definition).
pub fn state_root(state: &KeyMap<Value>) -> [u8; 32] {
    let mut entries: Vec<_> = state.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = Sha256::new();
    for (key, value) in entries {
        let bytes = key.as_bytes();
        // Keys are at most `MAX_KEY_LEN` (62) bytes, so the length fits a byte.
        h.update([bytes.len() as u8]);
        h.update(bytes);
        match value {
            Value::Num(n) => {
                h.update([0u8]);
                h.update(n.to_le_bytes());
            }
            Value::Bytes(b) => {
                h.update([1u8]);
                h.update((b.len() as u32).to_le_bytes());
                h.update(b);
            }
        }
    }
    h.finalize().into()
}

/// Lower-case hex of a 32-byte hash.
pub fn hex32(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(64);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}
