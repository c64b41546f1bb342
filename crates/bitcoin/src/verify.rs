//! Transaction checks shared by the embedded chain's mempool and block connection.
//!
//! - [`check_transaction`]: context-free rules (Bitcoin Core's `CheckTransaction`): inputs and
//!   outputs present, no duplicate inputs, output values within `MAX_MONEY`, size bounds,
//!   coinbase shape.
//! - [`verify_scripts`]: every input's script against the output it spends, with Bitcoin Core
//!   26's own interpreter (`libbitcoinconsensus`, via the `bitcoinconsensus` crate) and the
//!   flags of a post-taproot block (P2SH, DERSIG, NULLDUMMY, CLTV, CSV, WITNESS, TAPROOT). So
//!   legacy, P2WPKH, P2WSH and taproot key-path and script-path spends (BIP 340/341/342) are
//!   all checked exactly as consensus checks them; nothing is re-implemented here.
//!
//! Invariants: pure functions; an error names the first failing rule and input; no input can
//! make them panic (the consensus library receives only slices it can read in full).

use std::collections::HashSet;

use bitcoin::consensus::encode::serialize;
use bitcoin::{Amount, Transaction, TxOut, Weight};

/// Heaviest transaction the mempool accepts (Bitcoin Core's standard limit).
pub const MAX_STANDARD_TX_WEIGHT: Weight = Weight::from_wu(400_000);

/// Script verification flags: every soft fork up to and including taproot.
pub const SCRIPT_FLAGS: u32 =
    bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;

/// Why a transaction is invalid on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxCheckError {
    /// No inputs.
    #[error("bad-txns-vin-empty")]
    NoInputs,
    /// No outputs.
    #[error("bad-txns-vout-empty")]
    NoOutputs,
    /// Weight above the block limit.
    #[error("bad-txns-oversize: weight {0}")]
    Oversize(u64),
    /// An output above `MAX_MONEY`, or outputs summing above it.
    #[error("bad-txns-vout-toolarge")]
    OutputTooLarge,
    /// The same outpoint spent twice in one transaction.
    #[error("bad-txns-inputs-duplicate")]
    DuplicateInputs,
    /// A coinbase with a scriptSig outside 2..=100 bytes.
    #[error("bad-cb-length")]
    CoinbaseLength,
    /// A non-coinbase input spending the null outpoint.
    #[error("bad-txns-prevout-null")]
    NullPrevout,
}

/// Context-free consensus checks (Bitcoin Core's `CheckTransaction`).
pub fn check_transaction(tx: &Transaction) -> Result<(), TxCheckError> {
    if tx.input.is_empty() {
        return Err(TxCheckError::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(TxCheckError::NoOutputs);
    }
    // Base size * 4 must fit a block.
    let stripped_weight = tx.base_size() as u64 * 4;
    if stripped_weight > Weight::MAX_BLOCK.to_wu() {
        return Err(TxCheckError::Oversize(stripped_weight));
    }
    let mut total = Amount::ZERO;
    for out in &tx.output {
        if out.value > Amount::MAX_MONEY {
            return Err(TxCheckError::OutputTooLarge);
        }
        total = total
            .checked_add(out.value)
            .ok_or(TxCheckError::OutputTooLarge)?;
        if total > Amount::MAX_MONEY {
            return Err(TxCheckError::OutputTooLarge);
        }
    }
    let mut seen = HashSet::with_capacity(tx.input.len());
    for input in &tx.input {
        if !seen.insert(input.previous_output) {
            return Err(TxCheckError::DuplicateInputs);
        }
    }
    if tx.is_coinbase() {
        let len = tx.input.first().map(|i| i.script_sig.len()).unwrap_or(0);
        if !(2..=100).contains(&len) {
            return Err(TxCheckError::CoinbaseLength);
        }
    } else if tx.input.iter().any(|i| i.previous_output.is_null()) {
        return Err(TxCheckError::NullPrevout);
    }
    Ok(())
}

/// A script check failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mandatory-script-verify-flag-failed: input {input}: {reason}")]
pub struct ScriptError {
    /// The failing input's index.
    pub input: usize,
    /// What libbitcoinconsensus said (it reports "script failed" without the opcode).
    pub reason: String,
}

/// Verifies every input's script of `tx` against `spent[i]`, the output input `i` spends.
///
/// `spent.len()` must equal `tx.input.len()`; otherwise every input fails.
pub fn verify_scripts(tx: &Transaction, spent: &[TxOut]) -> Result<(), ScriptError> {
    if spent.len() != tx.input.len() {
        return Err(ScriptError {
            input: 0,
            reason: format!(
                "{} spent outputs for {} inputs",
                spent.len(),
                tx.input.len()
            ),
        });
    }
    let bytes = serialize(tx);
    // `Utxo` holds raw pointers into `spent`'s scripts, which outlive this call.
    let mut utxos = Vec::with_capacity(spent.len());
    for out in spent {
        let len = u32::try_from(out.script_pubkey.len()).map_err(|_| ScriptError {
            input: 0,
            reason: "spent script too long".into(),
        })?;
        let value = i64::try_from(out.value.to_sat()).map_err(|_| ScriptError {
            input: 0,
            reason: "spent amount out of range".into(),
        })?;
        utxos.push(bitcoinconsensus::Utxo {
            script_pubkey: out.script_pubkey.as_bytes().as_ptr(),
            script_pubkey_len: len,
            value,
        });
    }
    for (index, out) in spent.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(
            out.script_pubkey.as_bytes(),
            out.value.to_sat(),
            &bytes,
            Some(&utxos),
            index,
            SCRIPT_FLAGS,
        )
        .map_err(|e| ScriptError {
            input: index,
            reason: describe(e),
        })?;
    }
    Ok(())
}

fn describe(e: bitcoinconsensus::Error) -> String {
    match e {
        // libbitcoinconsensus leaves the error at "OK" when the script itself evaluates false.
        bitcoinconsensus::Error::ERR_SCRIPT => "script evaluation failed".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::{OutPoint, ScriptBuf, Sequence, TxIn, Txid, Witness};

    fn tx(inputs: Vec<OutPoint>, outputs: Vec<u64>) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: inputs
                .into_iter()
                .map(|previous_output| TxIn {
                    previous_output,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs
                .into_iter()
                .map(|v| TxOut {
                    value: Amount::from_sat(v),
                    script_pubkey: ScriptBuf::new(),
                })
                .collect(),
        }
    }

    fn op(n: u32) -> OutPoint {
        use bitcoin::hashes::Hash;
        OutPoint {
            txid: Txid::from_byte_array([1; 32]),
            vout: n,
        }
    }

    #[test]
    fn structural_rules() {
        assert_eq!(
            check_transaction(&tx(vec![], vec![1])),
            Err(TxCheckError::NoInputs)
        );
        assert_eq!(
            check_transaction(&tx(vec![op(0)], vec![])),
            Err(TxCheckError::NoOutputs)
        );
        assert_eq!(
            check_transaction(&tx(vec![op(0), op(0)], vec![1])),
            Err(TxCheckError::DuplicateInputs)
        );
        let max = Amount::MAX_MONEY.to_sat();
        assert_eq!(
            check_transaction(&tx(vec![op(0)], vec![max + 1])),
            Err(TxCheckError::OutputTooLarge)
        );
        assert_eq!(
            check_transaction(&tx(vec![op(0)], vec![max, 1])),
            Err(TxCheckError::OutputTooLarge)
        );
        assert_eq!(
            check_transaction(&tx(vec![op(0), OutPoint::null()], vec![1])),
            Err(TxCheckError::NullPrevout)
        );
        assert_eq!(
            check_transaction(&tx(vec![op(0), op(1)], vec![max])),
            Ok(())
        );
    }

    #[test]
    fn coinbase_script_length() {
        let mut cb = tx(vec![OutPoint::null()], vec![1]);
        assert_eq!(check_transaction(&cb), Err(TxCheckError::CoinbaseLength));
        cb.input[0].script_sig = ScriptBuf::from_bytes(vec![1, 1]);
        assert_eq!(check_transaction(&cb), Ok(()));
        cb.input[0].script_sig = ScriptBuf::from_bytes(vec![0; 101]);
        assert_eq!(check_transaction(&cb), Err(TxCheckError::CoinbaseLength));
    }

    #[test]
    fn spent_count_must_match() {
        let t = tx(vec![op(0)], vec![1]);
        let err = verify_scripts(&t, &[]).unwrap_err();
        assert_eq!(err.input, 0);
        assert!(err.reason.contains("0 spent outputs for 1 inputs"));
    }

    #[test]
    fn op_true_passes_and_op_false_fails() {
        // A bare OP_TRUE output is spendable with an empty scriptSig; OP_FALSE is not.
        let t = tx(vec![op(0)], vec![1]);
        let ok = TxOut {
            value: Amount::from_sat(10),
            script_pubkey: ScriptBuf::from_bytes(vec![0x51]),
        };
        verify_scripts(&t, &[ok]).unwrap();
        let bad = TxOut {
            value: Amount::from_sat(10),
            script_pubkey: ScriptBuf::from_bytes(vec![0x00]),
        };
        let err = verify_scripts(&t, &[bad]).unwrap_err();
        assert_eq!(err.input, 0);
    }
}
