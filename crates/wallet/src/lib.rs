//! Parabit's wallet: an encrypted keystore file holding several named signing keys, and
//! amounts in human units (`0.5 BTC`, `1000sat`).
//!
//! Invariants (detailed in each module):
//! - A secret key is never written to disk in plain text: the keystore file holds the
//!   secrets only inside an XChaCha20-Poly1305 ciphertext under a key derived from the
//!   password with argon2id. Key names and addresses are stored in clear (so listing
//!   needs no password) but are authenticated: any change to them makes `open` fail.
//! - Saving is atomic: a reader sees either the old file or the new one, never a mix.
//! - Amount parsing is exact decimal arithmetic on `u128` (no floats): it either returns
//!   the exact base-unit value or a typed error; formatting then parsing gives back the
//!   same value.

pub mod amount;
pub mod keystore;

pub use amount::{
    format_amount, format_amount_with_symbol, parse_amount, parse_amount_with_unit, resolve_amount,
    AmountError, MAX_DECIMALS,
};
pub use keystore::{
    default_keystore_path, list_addresses, parse_secret_hex, KdfParams, KeyInfo, Keystore,
    KeystoreError, KEYSTORE_ENV, KEYSTORE_VERSION,
};
