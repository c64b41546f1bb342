//! Integration tests of parabit-primitives: addresses, signing, encoding.

mod address;
mod block;
mod encoding;
mod signing;

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_primitives::{Address, SigningKey, Transaction};

/// A stand-in for the runtime's call enum.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub enum TestCall {
    Ping(u64),
    Note { text: String, flag: bool },
}

pub fn sample_tx(key: &SigningKey) -> Transaction<TestCall> {
    Transaction {
        chain_id: 1,
        sender: key.address(),
        nonce: 5,
        fee: 1_000,
        call: TestCall::Note {
            text: "hello".into(),
            flag: true,
        },
    }
}

pub fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).expect("test hex");
    out
}

pub fn addr(s: &str) -> Address {
    Address(hex32(s))
}
