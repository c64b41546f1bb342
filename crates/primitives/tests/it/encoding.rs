use borsh::BorshSerialize;
use parabit_primitives::{
    Address, DecodeError, SignedTransaction, SigningKey, Transaction, TxId, MAX_TX_SIZE,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use crate::{sample_tx, TestCall};

type Stx = SignedTransaction<TestCall>;

fn signed() -> Stx {
    let key = SigningKey::from_seed(b"encoding");
    key.sign(sample_tx(&key))
}

#[test]
fn round_trip_and_id() {
    let stx = signed();
    let bytes = stx.encode();
    assert_eq!(Stx::decode(&bytes), Ok(stx.clone()));
    assert_eq!(stx.id(), TxId(Sha256::digest(&bytes).into()));
    assert_eq!(stx.id().to_string().len(), 64);
}

#[test]
fn trailing_bytes_rejected() {
    let mut bytes = signed().encode();
    bytes.extend_from_slice(&[0, 0]);
    assert_eq!(Stx::decode(&bytes), Err(DecodeError::TrailingBytes(2)));
}

#[test]
fn every_truncation_rejected() {
    let bytes = signed().encode();
    for len in 0..bytes.len() {
        assert_eq!(
            Stx::decode(&bytes[..len]),
            Err(DecodeError::Truncated),
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn oversize_rejected() {
    // A transaction whose encoding is just over the limit.
    let key = SigningKey::from_seed(b"big");
    let mut tx = sample_tx(&key);
    tx.call = TestCall::Note {
        text: "x".repeat(MAX_TX_SIZE),
        flag: false,
    };
    let bytes = key.sign(tx).encode();
    assert!(bytes.len() > MAX_TX_SIZE);
    assert_eq!(
        Stx::decode(&bytes),
        Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: MAX_TX_SIZE
        })
    );
    // Exactly at the limit is parsed (and here fails for another reason).
    assert_ne!(
        Stx::decode(&bytes[..MAX_TX_SIZE]),
        Err(DecodeError::TooLarge {
            size: MAX_TX_SIZE,
            max: MAX_TX_SIZE
        })
    );
}

#[test]
fn unknown_variant_rejected() {
    let stx = signed();
    let mut bytes = stx.encode();
    // The call's tag comes right after chain_id (8), sender (32), nonce (8), fee (16).
    let tag_at = 8 + 32 + 8 + 16;
    assert_eq!(bytes[tag_at], 1);
    bytes[tag_at] = 9;
    match Stx::decode(&bytes) {
        Err(DecodeError::UnknownVariant(msg)) => assert!(msg.contains('9'), "{msg}"),
        other => panic!("expected UnknownVariant, got {other:?}"),
    }
}

#[test]
fn malformed_fields_rejected() {
    let key = SigningKey::from_seed(b"encoding");
    let mut tx = sample_tx(&key);
    tx.call = TestCall::Note {
        text: "ab".into(),
        flag: true,
    };
    let stx = key.sign(tx);
    let good = stx.encode();
    let tag_at = 8 + 32 + 8 + 16;
    // Invalid UTF-8 in the string.
    let mut bad = good.clone();
    bad[tag_at + 1 + 4] = 0xff;
    assert!(
        matches!(Stx::decode(&bad), Err(DecodeError::Malformed(_))),
        "{:?}",
        Stx::decode(&bad)
    );
    // A boolean that is neither 0 nor 1.
    let mut bad = good.clone();
    bad[tag_at + 1 + 4 + 2] = 2;
    assert!(
        matches!(Stx::decode(&bad), Err(DecodeError::Malformed(_))),
        "{:?}",
        Stx::decode(&bad)
    );
    // A string length far beyond the input.
    let mut bad = good;
    bad[tag_at + 1..tag_at + 5].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Stx::decode(&bad), Err(DecodeError::Truncated));
}

#[test]
fn error_messages_are_readable() {
    assert_eq!(
        DecodeError::TooLarge {
            size: 70000,
            max: MAX_TX_SIZE
        }
        .to_string(),
        "transaction of 70000 bytes exceeds the 65536-byte limit"
    );
    assert_eq!(
        DecodeError::TrailingBytes(3).to_string(),
        "3 unexpected trailing bytes after the transaction"
    );
}

fn arb_call() -> impl Strategy<Value = TestCall> {
    prop_oneof![
        any::<u64>().prop_map(TestCall::Ping),
        ("\\PC{0,40}", any::<bool>()).prop_map(|(text, flag)| TestCall::Note { text, flag }),
    ]
}

fn arb_stx() -> impl Strategy<Value = Stx> {
    (
        any::<u64>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u128>(),
        arb_call(),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(|(chain_id, sender, nonce, fee, call, sig)| {
            let mut signature = [0u8; 64];
            signature.copy_from_slice(&sig);
            SignedTransaction {
                tx: Transaction {
                    chain_id,
                    sender: Address(sender),
                    nonce,
                    fee,
                    call,
                },
                signature,
            }
        })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(stx in arb_stx()) {
        let bytes = stx.encode();
        prop_assert_eq!(bytes.clone(), borsh::to_vec(&stx).expect("borsh"));
        prop_assert_eq!(Stx::decode(&bytes), Ok(stx.clone()));
        prop_assert_eq!(stx.id(), TxId(Sha256::digest(&bytes).into()));
    }

    #[test]
    fn signed_round_trip_verifies(seed in any::<[u8; 8]>(), nonce in any::<u64>(), fee in any::<u128>(), call in arb_call()) {
        let key = SigningKey::from_seed(&seed);
        let stx = key.sign(Transaction { chain_id: 9, sender: key.address(), nonce, fee, call });
        let back = Stx::decode(&stx.encode()).expect("decode");
        prop_assert_eq!(back.verify(), Ok(()));
        prop_assert_eq!(back.id(), stx.id());
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Stx::decode(&bytes);
    }

    #[test]
    fn decode_of_mutated_encoding_never_panics(stx in arb_stx(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = stx.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(back) = Stx::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes (canonical encoding).
            let mut again = Vec::new();
            back.serialize(&mut again).expect("encode");
            prop_assert_eq!(again, bytes);
        }
    }
}
