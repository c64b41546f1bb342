//! Receipts: what executing a transaction did.
//!
//! Invariants (kept by the runtime that produces receipts):
//! - `Success`: every effect of the call is applied, the fee is paid and the nonce advanced.
//! - `Failed`: the call failed; the fee is paid and the nonce advanced, nothing else changed.
//! - `Invalid`: the transaction could not be charged (wrong chain id, wrong nonce, cannot pay
//!   its fee); no state changed at all and `fee_paid` is 0.
//! - `Panicked`: execution panicked; no state changed at all and `fee_paid` is 0.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::tx::Amount;

/// The outcome of a transaction.
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
#[serde(tag = "kind", content = "reason", rename_all = "lowercase")]
pub enum TxStatus {
    /// The call ran to completion.
    Success,
    /// The call failed: fee and nonce kept, everything else reverted. Holds the reason.
    Failed(String),
    /// Not executable (wrong chain id, wrong nonce, cannot pay fee): no state change.
    Invalid(String),
    /// Execution panicked: no state change.
    Panicked(String),
}

impl TxStatus {
    /// Whether the call succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, TxStatus::Success)
    }
}

impl std::fmt::Display for TxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxStatus::Success => f.write_str("success"),
            TxStatus::Failed(r) => write!(f, "failed: {r}"),
            TxStatus::Invalid(r) => write!(f, "invalid: {r}"),
            TxStatus::Panicked(r) => write!(f, "panicked: {r}"),
        }
    }
}

/// What executing a transaction yields.
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
pub struct Receipt {
    /// The outcome.
    pub status: TxStatus,
    /// The fee charged, in BTC satoshis (0 for `Invalid` and `Panicked`).
    pub fee_paid: Amount,
}

impl Receipt {
    /// A receipt with no state change and no fee.
    pub fn invalid(reason: impl Into<String>) -> Receipt {
        Receipt {
            status: TxStatus::Invalid(reason.into()),
            fee_paid: 0,
        }
    }

    /// A receipt for a panicked execution.
    pub fn panicked(message: impl Into<String>) -> Receipt {
        Receipt {
            status: TxStatus::Panicked(message.into()),
            fee_paid: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_borsh_round_trip() {
        for status in [
            TxStatus::Success,
            TxStatus::Failed("insufficient balance: have 1, need 2".into()),
            TxStatus::Invalid("wrong nonce: expected 5, got 7".into()),
            TxStatus::Panicked("boom".into()),
        ] {
            let r = Receipt {
                status,
                fee_paid: 3,
            };
            let json = serde_json::to_string(&r).expect("json");
            assert_eq!(
                serde_json::from_str::<Receipt>(&json).expect("json back"),
                r
            );
            let bytes = borsh::to_vec(&r).expect("borsh");
            assert_eq!(borsh::from_slice::<Receipt>(&bytes).expect("borsh back"), r);
        }
        assert_eq!(TxStatus::Success.to_string(), "success");
        assert_eq!(TxStatus::Invalid("x".into()).to_string(), "invalid: x");
        let r = Receipt {
            status: TxStatus::Failed("no".into()),
            fee_paid: 2,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("json"),
            r#"{"status":{"kind":"failed","reason":"no"},"fee_paid":2}"#
        );
    }
}
