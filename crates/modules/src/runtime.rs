//! The runtime: the [`Vm`] that charges a transaction (chain id, nonce, fee) and dispatches
//! its call to a module.
//!
//! # Per transaction
//! 1. Wrong chain id → `Invalid`, no state touched.
//! 2. Read the sender's nonce; a mismatch → `Invalid("wrong nonce: expected N, got M")`, no
//!    state change.
//! 3. `try_sub` the fee from the sender's BTC balance; if it cannot → `Invalid("cannot pay
//!    fee …")`, no state change.
//! 4. Write nonce + 1, `add` the fee to the fee account, take a checkpoint, run the call.
//! 5. The call fails → roll back to the checkpoint: `Failed(reason)`, fee and nonce kept.
//!
//! # Invariants
//! - `Invalid` and `Panicked` receipts come with no state change and `fee_paid == 0`;
//!   `Success` and `Failed` receipts with `fee_paid == tx.fee`, moved from the sender to the
//!   fee account, and the nonce advanced by one.
//! - The fee credit is an `add` and the fee debit a `try_sub`: a block of transactions that
//!   all pay the same fee account does not conflict on it.
//! - A `Halt` from the state view is returned as `Err(halt)` at once, never turned into a
//!   receipt; apart from it, `execute` is a pure function of the transaction and the values
//!   its state operations return.
//! - Value is conserved: the runtime itself only moves the fee.

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_exec::{num_of, StateResult, StateView, Value, Vm};
use parabit_primitives::{Address, AssetId, Receipt, SignedTransaction, Transaction, TxStatus};

use crate::bank::{self, balance_key, nonce_key, BankError, BankMsg};

/// A transaction's call: one module's message.
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
pub enum Call {
    /// A bank message.
    Bank(BankMsg),
}

/// A Parabit transaction.
pub type Tx = Transaction<Call>;
/// A signed Parabit transaction.
pub type SignedTx = SignedTransaction<Call>;

/// The runtime of a chain: its id and where fees go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Runtime {
    /// Transactions for another chain are invalid.
    pub chain_id: u64,
    /// The sequencer's account, credited with every fee (in BTC).
    pub fee_account: Address,
}

impl Runtime {
    /// A runtime for `chain_id` paying fees to `fee_account`.
    pub fn new(chain_id: u64, fee_account: Address) -> Runtime {
        Runtime {
            chain_id,
            fee_account,
        }
    }
}

/// The outcome of a module call, with the engine's `Halt` split off.
fn call_status(result: Result<(), BankError>) -> StateResult<Result<(), String>> {
    match result {
        Ok(()) => Ok(Ok(())),
        Err(BankError::Halt(h)) => Err(h),
        Err(e) => Ok(Err(e.to_string())),
    }
}

impl Vm for Runtime {
    type Txn = Tx;
    type Output = Receipt;

    fn execute<V: StateView>(&self, tx: &Tx, view: &mut V) -> StateResult<Receipt> {
        if tx.chain_id != self.chain_id {
            return Ok(Receipt::invalid(format!(
                "wrong chain id: expected {}, got {}",
                self.chain_id, tx.chain_id
            )));
        }
        let nonce_key = nonce_key(&tx.sender);
        let expected = num_of(&view.read(&nonce_key)?);
        if expected != u128::from(tx.nonce) {
            return Ok(Receipt::invalid(format!(
                "wrong nonce: expected {expected}, got {}",
                tx.nonce
            )));
        }
        if tx.fee > 0 {
            let fee_from = balance_key(&tx.sender, AssetId::BTC);
            if !view.try_sub(fee_from, tx.fee)? {
                let have = num_of(&view.read(&fee_from)?);
                return Ok(Receipt::invalid(format!(
                    "cannot pay fee: have {have} BTC sats, need {}",
                    tx.fee
                )));
            }
        }
        view.write(nonce_key, Some(Value::Num(expected.wrapping_add(1))));
        if tx.fee > 0 {
            view.add(balance_key(&self.fee_account, AssetId::BTC), tx.fee);
        }
        let checkpoint = view.checkpoint();
        let result = match &tx.call {
            Call::Bank(msg) => bank::execute(view, &tx.sender, tx.nonce, msg),
        };
        let status = match call_status(result)? {
            Ok(()) => TxStatus::Success,
            Err(reason) => {
                view.rollback(checkpoint);
                TxStatus::Failed(reason)
            }
        };
        Ok(Receipt {
            status,
            fee_paid: tx.fee,
        })
    }

    fn panic_output(&self, _tx: &Tx, message: &str) -> Receipt {
        Receipt::panicked(message)
    }
}
