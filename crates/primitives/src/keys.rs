//! Signing keys: a secp256k1 key pair whose x-only public key is an [`Address`].
//!
//! Invariants:
//! - Signing is deterministic: BIP-340 with 32 zero bytes of auxiliary randomness, so the
//!   same key and message always give the same signature (tests and benchmarks rely on it).
//! - [`SigningKey::from_seed`] is a pure function of the seed.
//! - The secret never appears in `Debug` output.

use std::fmt;

use borsh::BorshSerialize;
use secp256k1::{Keypair, Message, SECP256K1};
use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::tx::{SignedTransaction, Transaction};

/// Why bytes are not a secret key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Zero, or not below the curve order.
    #[error("secret key out of range (must be in 1..n-1 of secp256k1)")]
    OutOfRange,
}

/// A key that signs transactions for one address.
#[derive(Clone)]
pub struct SigningKey {
    keypair: Keypair,
    address: Address,
}

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn random() -> SigningKey {
        let keypair = Keypair::new(SECP256K1, &mut secp256k1::rand::thread_rng());
        SigningKey::from_keypair(keypair)
    }

    /// The key with this 32-byte secret.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Result<SigningKey, KeyError> {
        let keypair =
            Keypair::from_seckey_slice(SECP256K1, &secret).map_err(|_| KeyError::OutOfRange)?;
        Ok(SigningKey::from_keypair(keypair))
    }

    /// A deterministic key: the first `SHA256(seed || counter)` (counter a little-endian
    /// `u32` from 0) that is a valid secret. For tests and benchmarks.
    pub fn from_seed(seed: &[u8]) -> SigningKey {
        let mut counter: u32 = 0;
        loop {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(counter.to_le_bytes());
            if let Ok(key) = SigningKey::from_secret_bytes(h.finalize().into()) {
                return key;
            }
            // Probability of reaching here is about 2^-128 per try.
            counter = counter.wrapping_add(1);
        }
    }

    fn from_keypair(keypair: Keypair) -> SigningKey {
        let (xonly, _parity) = keypair.x_only_public_key();
        SigningKey {
            keypair,
            address: Address(xonly.serialize()),
        }
    }

    /// The 32-byte secret.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.keypair.secret_bytes()
    }

    /// The address this key signs for.
    pub fn address(&self) -> Address {
        self.address
    }

    /// BIP-340 signature of a 32-byte message (auxiliary randomness: 32 zero bytes).
    pub fn sign_digest(&self, digest: &[u8; 32]) -> [u8; 64] {
        SECP256K1
            .sign_schnorr_with_aux_rand(&Message::from_digest(*digest), &self.keypair, &[0u8; 32])
            .serialize()
    }

    /// Signs a transaction. The transaction's `sender` should be [`SigningKey::address`];
    /// otherwise the signature will not verify.
    pub fn sign<C: BorshSerialize>(&self, tx: Transaction<C>) -> SignedTransaction<C> {
        let signature = self.sign_digest(&tx.sighash());
        SignedTransaction { tx, signature }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_seed_is_deterministic() {
        let a = SigningKey::from_seed(b"alice");
        let b = SigningKey::from_seed(b"alice");
        assert_eq!(a.secret_bytes(), b.secret_bytes());
        assert_ne!(a.address(), SigningKey::from_seed(b"bob").address());
    }

    #[test]
    fn secret_round_trip_and_range() {
        let k = SigningKey::random();
        let back = SigningKey::from_secret_bytes(k.secret_bytes()).expect("valid");
        assert_eq!(back.address(), k.address());
        assert_eq!(
            SigningKey::from_secret_bytes([0; 32]).err(),
            Some(KeyError::OutOfRange)
        );
        assert_eq!(
            SigningKey::from_secret_bytes([0xff; 32]).err(),
            Some(KeyError::OutOfRange)
        );
        assert!(!format!("{k:?}").contains(&hex::encode(k.secret_bytes())));
    }
}
