//! Transactions, their signed form, their encoding, their ids and their signature checks.
//!
//! Invariants:
//! - The signed message of a transaction is the BIP-340-style tagged hash
//!   `SHA256(SHA256("parabit/tx") || SHA256("parabit/tx") || borsh(tx))` ([`TX_TAG`]); the
//!   signature is BIP-340 Schnorr by the key whose x coordinate is `tx.sender`. A signature
//!   therefore commits to the chain id, sender, nonce, fee and call.
//! - A transaction's id is `SHA256(borsh(signed transaction))`, i.e. of exactly the bytes
//!   [`SignedTransaction::encode`] yields, so equal ids mean equal encodings.
//! - [`SignedTransaction::decode`] accepts exactly the encodings [`SignedTransaction::encode`]
//!   yields: it refuses input over [`MAX_TX_SIZE`] before parsing anything, and refuses
//!   truncated input, trailing bytes, unknown enum variants and malformed fields with a typed
//!   [`DecodeError`]; it never panics and never allocates more than the input's size allows.
//! - Hashing streams the borsh encoding into SHA-256 without building it in memory.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::OnceLock;

use borsh::{BorshDeserialize, BorshSerialize};
use rayon::prelude::*;
use secp256k1::{schnorr, Message, XOnlyPublicKey, SECP256K1};
use sha2::{Digest, Sha256};

use crate::address::Address;

/// The largest encoded signed transaction accepted, in bytes (64 KiB).
pub const MAX_TX_SIZE: usize = 64 * 1024;

/// The tag of the tagged hash that transactions are signed over.
pub const TX_TAG: &[u8] = b"parabit/tx";

/// An amount in an asset's base unit (satoshis for BTC).
pub type Amount = u128;

/// An asset's identifier. [`AssetId::BTC`] is 0; other ids are derived by the bank module.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct AssetId(pub u64);

impl AssetId {
    /// Bitcoin, bridged from L1; amounts in satoshis.
    pub const BTC: AssetId = AssetId(0);
}

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A transaction's id: SHA-256 of its signed encoding. Shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct TxId(pub [u8; 32]);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxId({self})")
    }
}

/// Why a string is not a transaction id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a transaction id is 64 hex digits")]
pub struct TxIdParseError;

impl FromStr for TxId {
    type Err = TxIdParseError;
    fn from_str(s: &str) -> Result<TxId, TxIdParseError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| TxIdParseError)?;
        Ok(TxId(bytes))
    }
}

impl serde::Serialize for TxId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TxId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TxId, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A transaction: who sends it, in which order, for which fee, doing what. `C` is the call
/// type (the runtime's enum of module messages).
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Transaction<C> {
    /// The chain this transaction is for (replay protection across networks).
    pub chain_id: u64,
    /// The sender's address: the key that must sign.
    pub sender: Address,
    /// The sender's next nonce: transactions of one sender run in nonce order, each once.
    pub nonce: u64,
    /// The fee in BTC satoshis, paid to the sequencer's fee account.
    pub fee: Amount,
    /// What the transaction does.
    pub call: C,
}

impl<C: BorshSerialize> Transaction<C> {
    /// The 32-byte message that the sender signs (see the module doc).
    pub fn sighash(&self) -> [u8; 32] {
        let mut w = HashWriter(tagged_hasher());
        encode_into(self, &mut w);
        w.0.finalize().into()
    }
}

/// A transaction with the sender's BIP-340 signature.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction<C> {
    /// The transaction.
    pub tx: Transaction<C>,
    /// The BIP-340 Schnorr signature of [`Transaction::sighash`] by `tx.sender`.
    pub signature: [u8; 64],
}

/// Why a signature check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The sender's bytes are not a valid x-only public key.
    #[error("sender is not a valid x-only secp256k1 public key")]
    InvalidSender,
    /// The signature does not verify for this transaction and sender.
    #[error("invalid signature: it does not match the transaction and its sender")]
    BadSignature,
}

/// Why bytes are not a signed transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_TX_SIZE`]; refused before parsing.
    #[error("transaction of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The input's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends in the middle of a field.
    #[error("transaction encoding is truncated")]
    Truncated,
    /// A complete transaction is followed by more bytes.
    #[error("{0} unexpected trailing bytes after the transaction")]
    TrailingBytes(usize),
    /// An enum tag (a call, a message) that this node does not know.
    #[error("unknown variant in transaction encoding: {0}")]
    UnknownVariant(String),
    /// Any other malformed field (invalid UTF-8, an invalid boolean…).
    #[error("malformed transaction encoding: {0}")]
    Malformed(String),
}

impl<C: BorshSerialize> SignedTransaction<C> {
    /// The message the signature signs: `self.tx.sighash()`.
    pub fn sighash(&self) -> [u8; 32] {
        self.tx.sighash()
    }

    /// The transaction id: SHA-256 of [`SignedTransaction::encode`]'s bytes.
    pub fn id(&self) -> TxId {
        let mut w = HashWriter(Sha256::new());
        encode_into(self, &mut w);
        TxId(w.0.finalize().into())
    }

    /// Checks the BIP-340 signature against the sender's key.
    pub fn verify(&self) -> Result<(), SignatureError> {
        verify_digest(&self.tx.sender, &self.sighash(), &self.signature)
    }

    /// The canonical borsh encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        encode_into(self, &mut out);
        out
    }
}

impl<C: BorshDeserialize> SignedTransaction<C> {
    /// Decodes a signed transaction (see the module doc for what it refuses). The signature
    /// is not checked here.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_TX_SIZE {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                max: MAX_TX_SIZE,
            });
        }
        let mut rest = bytes;
        let tx = <Self as BorshDeserialize>::deserialize(&mut rest).map_err(decode_error)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        Ok(tx)
    }
}

/// Maps a borsh error to a typed decode error.
fn decode_error(e: io::Error) -> DecodeError {
    let msg = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof || msg.contains("Unexpected length of input") {
        DecodeError::Truncated
    } else if msg.to_ascii_lowercase().contains("variant") {
        DecodeError::UnknownVariant(msg)
    } else {
        DecodeError::Malformed(msg)
    }
}

/// Checks one transaction's signature (the single-threaded form of [`verify_batch`]).
pub fn verify_one<C: BorshSerialize>(tx: &SignedTransaction<C>) -> Result<(), SignatureError> {
    tx.verify()
}

/// Checks the signatures of many transactions in parallel on the current rayon pool (the
/// one the caller installs, or the global one); one result per transaction, in order.
pub fn verify_batch<C: Sync + BorshSerialize>(
    txs: &[SignedTransaction<C>],
) -> Vec<Result<(), SignatureError>> {
    txs.par_iter().with_min_len(64).map(verify_one).collect()
}

/// Checks a BIP-340 signature of a 32-byte message by `signer`.
pub fn verify_digest(
    signer: &Address,
    digest: &[u8; 32],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    let key = XOnlyPublicKey::from_slice(&signer.0).map_err(|_| SignatureError::InvalidSender)?;
    let sig =
        schnorr::Signature::from_slice(signature).map_err(|_| SignatureError::BadSignature)?;
    SECP256K1
        .verify_schnorr(&sig, &Message::from_digest(*digest), &key)
        .map_err(|_| SignatureError::BadSignature)
}

/// A SHA-256 state that has absorbed `SHA256(tag) || SHA256(tag)` for [`TX_TAG`]
/// (one 64-byte block, computed once).
fn tagged_hasher() -> Sha256 {
    static MIDSTATE: OnceLock<Sha256> = OnceLock::new();
    MIDSTATE
        .get_or_init(|| {
            let tag = Sha256::digest(TX_TAG);
            let mut h = Sha256::new();
            h.update(tag);
            h.update(tag);
            h
        })
        .clone()
}

/// Feeds written bytes into a hash.
struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Borsh-encodes `value` into an in-memory writer.
fn encode_into<T: BorshSerialize + ?Sized, W: io::Write>(value: &T, w: &mut W) {
    // Writing to memory or a hash cannot fail; borsh only errs on a collection of more than
    // u32::MAX elements, which no transaction can hold (it would be > 4 GiB).
    if let Err(e) = value.serialize(w) {
        panic!("borsh encoding into memory failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_hash_matches_definition() {
        let tx = Transaction {
            chain_id: 7,
            sender: Address([2; 32]),
            nonce: 1,
            fee: 10,
            call: 42u32,
        };
        let tag = Sha256::digest(TX_TAG);
        let mut h = Sha256::new();
        h.update(tag);
        h.update(tag);
        h.update(borsh::to_vec(&tx).expect("encode"));
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(tx.sighash(), expected);
    }

    #[test]
    fn id_is_sha256_of_encoding() {
        let stx = SignedTransaction {
            tx: Transaction {
                chain_id: 1,
                sender: Address([9; 32]),
                nonce: 0,
                fee: 0,
                call: (),
            },
            signature: [5; 64],
        };
        let expected: [u8; 32] = Sha256::digest(stx.encode()).into();
        assert_eq!(stx.id(), TxId(expected));
        assert_eq!(stx.id().to_string().parse::<TxId>(), Ok(stx.id()));
    }

    #[test]
    fn decode_refuses_oversize_before_parsing() {
        let big = vec![0u8; MAX_TX_SIZE + 1];
        assert_eq!(
            SignedTransaction::<()>::decode(&big),
            Err(DecodeError::TooLarge {
                size: MAX_TX_SIZE + 1,
                max: MAX_TX_SIZE
            })
        );
    }
}
