//! Integration tests of `parabit-bitcoin`: the embedded regtest chain (mining, spends, mempool
//! rules, reorgs, persistence), taproot envelopes on it, the bridge's deposits and payouts, and
//! the `BitcoinClient` backends.

mod bitcoind;
mod bridge;
mod chain;
mod client;
mod envelope;
mod model;
mod server;

use parabit_bitcoin::bitcoin::secp256k1::SecretKey;
use parabit_bitcoin::bitcoin::{Amount, FeeRate, TxOut};
use parabit_bitcoin::{RegtestChain, TaprootWallet, Utxo};

/// A wallet with a fixed key.
pub fn wallet(seed: u8) -> TaprootWallet {
    TaprootWallet::new(SecretKey::from_slice(&[seed; 32]).expect("valid key"))
}

/// 1 sat/vB.
pub fn rate(sat_vb: u32) -> FeeRate {
    FeeRate::from_sat_per_vb_u32(sat_vb)
}

/// Mines 101 blocks to `w`, so the coinbases of blocks 1 and 2 (50 BTC each) are spendable.
pub fn fund(chain: &RegtestChain, w: &TaprootWallet) {
    chain.mine(101, w.script_pubkey()).expect("mine");
}

/// `w`'s unspent outputs on `chain`.
pub fn utxos(chain: &RegtestChain, w: &TaprootWallet) -> Vec<Utxo> {
    chain.list_unspent(&[w.script_pubkey().clone()])
}

/// A payment of `sats` to `to`.
pub fn pay(to: &TaprootWallet, sats: u64) -> Vec<TxOut> {
    vec![TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: to.script_pubkey().clone(),
    }]
}
