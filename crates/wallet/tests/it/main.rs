//! Integration tests of the wallet crate: the keystore file through its public API, and
//! amounts.

mod amounts;
mod keystore;
