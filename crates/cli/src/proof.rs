//! Local verification of `pb_getProof` answers: the value and the Jellyfish Merkle proof
//! the node returns are checked against the block's state root with the storage crate's
//! verifier ([`parabit_storage::verify_proof`]), so `parabit query proof` does not have to
//! trust the node's word for the value.
//!
//! Invariants:
//! - [`verify_answer`] succeeds only if the answer is for exactly the key the user asked for
//!   (computed locally), its state root is the one the block header carries, and the proof
//!   verifies for the returned value (or proves the key absent when the value is `null`).
//! - Malformed hex, a value or proof that does not decode, or a wrong-length root is an
//!   error, never a panic.

use anyhow::{anyhow, bail, ensure, Context, Result};
use parabit_exec::{Key, Value};
use parabit_storage::{decode_value, verify_proof, Proof};
use serde_json::Value as Json;

/// What a verified answer proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The state root (hex) the proof verified against.
    pub root_hex: String,
    /// The proven value (`None`: the key is absent).
    pub value: Option<Value>,
}

impl Checked {
    /// The value for people: a number, hex bytes, or `absent`.
    pub fn value_text(&self) -> String {
        match &self.value {
            None => "absent".to_string(),
            Some(Value::Num(n)) => n.to_string(),
            Some(Value::Bytes(b)) => format!("0x{}", hex::encode(b.as_ref())),
        }
    }
}

fn hex_field(v: &Json, name: &str) -> Result<Vec<u8>> {
    let s = v[name]
        .as_str()
        .ok_or_else(|| anyhow!("pb_getProof: no {name} in the answer"))?;
    hex::decode(s).with_context(|| format!("pb_getProof: {name} is not hex"))
}

fn root32(bytes: &[u8], what: &str) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| anyhow!("{what}: expected 32 bytes, got {}", bytes.len()))
}

/// Checks a `pb_getProof` answer `{key, value, height, state_root, proof}` for `expected`
/// against `header_root`, the state root in the header of the answer's block.
pub fn verify_answer(v: &Json, expected: &Key, header_root: &str) -> Result<Checked> {
    let key = hex_field(v, "key")?;
    ensure!(
        key == expected.as_bytes(),
        "the node answered for key {} instead of {}",
        hex::encode(&key),
        hex::encode(expected.as_bytes())
    );
    let root_bytes = hex_field(v, "state_root")?;
    let root = root32(&root_bytes, "state_root")?;
    let header = root32(
        &hex::decode(header_root).context("the block's state_root is not hex")?,
        "the block's state_root",
    )?;
    if root != header {
        bail!(
            "the proof is against root {} but block {} has state root {header_root}",
            hex::encode(root),
            v["height"]
        );
    }
    let proof = Proof::from_bytes(&hex_field(v, "proof")?)
        .map_err(|e| anyhow!("pb_getProof: proof: {e}"))?;
    let value = match &v["value"] {
        Json::Null => None,
        _ => Some(
            decode_value(&hex_field(v, "value")?)
                .ok_or_else(|| anyhow!("pb_getProof: value is not a stored-value encoding"))?,
        ),
    };
    verify_proof(root, expected, value.as_ref(), &proof)
        .map_err(|e| anyhow!("the proof does not verify: {e}"))?;
    Ok(Checked {
        root_hex: hex::encode(root),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parabit_exec::WriteSet;
    use parabit_modules::Call;
    use parabit_primitives::{tx_root, Block, BlockHeader};
    use parabit_storage::{encode_value, Store, StoreConfig};
    use serde_json::json;

    fn key(n: u8) -> Key {
        Key::new(&[0x77, n]).unwrap_or_else(|_| panic!("short key"))
    }

    /// A store with block 0 holding keys 1 → 10 and 2 → bytes; the answers the node would
    /// give for `k`, and the header's root.
    fn answer(k: Key) -> (Json, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(dir.path().join("db"), StoreConfig::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let ws = WriteSet(vec![
            (key(1), Some(Value::Num(10))),
            (key(2), Some(Value::bytes(vec![1, 2, 3]))),
        ]);
        let prepared = store.prepare(0, &ws).unwrap_or_else(|e| panic!("{e}"));
        let header = BlockHeader {
            height: 0,
            parent_hash: [0; 32],
            timestamp_ms: 1,
            tx_root: tx_root(&[]),
            state_root: prepared.state_root(),
            bitcoin_height: 0,
            fees: 0,
            tx_count: 0,
        };
        let block: Block<Call> = Block {
            header: header.clone(),
            txs: vec![],
        };
        store
            .commit(prepared, &block, &[], &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let (value, proof) = store
            .get_with_proof(&k, 0)
            .unwrap_or_else(|e| panic!("{e}"));
        let v = json!({
            "key": hex::encode(k.as_bytes()),
            "value": value.as_ref().map(|v| hex::encode(encode_value(v))),
            "height": 0,
            "state_root": hex::encode(header.state_root),
            "proof": hex::encode(proof.to_bytes()),
        });
        (v, hex::encode(header.state_root), dir)
    }

    fn err(r: Result<Checked>) -> String {
        match r {
            Ok(c) => panic!("verified: {c:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn honest_answers_verify() {
        let (v, root, _d) = answer(key(1));
        let c = verify_answer(&v, &key(1), &root).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.value, Some(Value::Num(10)));
        assert_eq!(c.value_text(), "10");
        let (v, root, _d) = answer(key(2));
        let c = verify_answer(&v, &key(2), &root).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.value_text(), "0x010203");
        // Absence.
        let (v, root, _d) = answer(key(9));
        let c = verify_answer(&v, &key(9), &root).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(c.value_text(), "absent");
    }

    #[test]
    fn lies_are_caught() {
        let (v, root, _d) = answer(key(1));
        // Another value.
        let mut lie = v.clone();
        lie["value"] = json!(hex::encode(encode_value(&Value::Num(11))));
        assert!(err(verify_answer(&lie, &key(1), &root)).contains("does not verify"));
        // Claimed absent.
        let mut lie = v.clone();
        lie["value"] = Json::Null;
        assert!(err(verify_answer(&lie, &key(1), &root)).contains("does not verify"));
        // The answer for another key than asked.
        assert!(err(verify_answer(&v, &key(3), &root)).contains("instead of"));
        // A root that is not the block's.
        let other = "ab".repeat(32);
        assert!(err(verify_answer(&v, &key(1), &other)).contains("state root"));
        let mut lie = v.clone();
        lie["state_root"] = json!(other);
        assert!(err(verify_answer(&lie, &key(1), &other)).contains("does not verify"));
        // Garbage.
        let mut lie = v.clone();
        lie["proof"] = json!("00ff");
        assert!(err(verify_answer(&lie, &key(1), &root)).contains("proof"));
        let mut lie = v.clone();
        lie["value"] = json!("zz");
        assert!(err(verify_answer(&lie, &key(1), &root)).contains("not hex"));
        let mut lie = v;
        lie["value"] = json!("09");
        assert!(err(verify_answer(&lie, &key(1), &root)).contains("stored-value"));
    }
}
