//! What the bridge costs on Bitcoin: the virtual size of a deposit, and of payouts of `n`
//! withdrawals (per withdrawal, and the fee share each pays), for P2TR and P2WPKH recipients.
//! Deterministic: fixed keys and amounts, no chain needed (`build_payout` and
//! `build_deposit` size and sign real transactions).
//!
//! `cargo run --release -p parabit-bitcoin --example bridge_cost`

use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, TxOut, Txid, WPubkeyHash};
use parabit_bitcoin::bridge::{bridge_wallet, build_deposit, build_payout, PayoutRequest};
use parabit_bitcoin::{TaprootWallet, Utxo};

fn key(seed: u8) -> Keypair {
    let secret = SecretKey::from_slice(&[seed; 32]).unwrap_or_else(|e| panic!("key: {e}"));
    Keypair::from_secret_key(SECP256K1, &secret)
}

fn coin(script: &ScriptBuf, n: u32, sats: u64) -> Utxo {
    Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([n as u8 + 1; 32]),
            vout: n,
        },
        txout: TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: script.clone(),
        },
        confirmations: 6,
        coinbase: false,
    }
}

fn main() {
    let rate = FeeRate::from_sat_per_vb_u32(1);
    let user = TaprootWallet::from_keypair(key(7));
    let bridge = bridge_wallet(key(42));
    let deposit = build_deposit(
        &user,
        &[coin(user.script_pubkey(), 0, 5_000_000)],
        bridge.script_pubkey(),
        user.internal_key().serialize(),
        Amount::from_sat(1_000_000),
        rate,
    )
    .unwrap_or_else(|e| panic!("deposit: {e}"));
    println!(
        "deposit (1 P2TR input, bridge output, marker, change): {} vB",
        deposit.tx.vsize()
    );
    println!();
    println!("| recipients | withdrawals | bridge inputs | payout vB | vB per withdrawal | fee share at 1 sat/vB | at 10 sat/vB |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let p2tr = |i: usize| {
        TaprootWallet::from_keypair(key(100 + (i % 100) as u8))
            .script_pubkey()
            .clone()
    };
    let p2wpkh = |i: usize| ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([i as u8; 20]));
    for (kind, script) in [
        ("P2TR", &p2tr as &dyn Fn(usize) -> ScriptBuf),
        ("P2WPKH", &p2wpkh),
    ] {
        for (n, inputs) in [(1usize, 1u32), (10, 1), (100, 1), (100, 10), (250, 1)] {
            let requests: Vec<PayoutRequest> = (0..n)
                .map(|i| PayoutRequest {
                    script_pubkey: script(i),
                    amount: Amount::from_sat(100_000),
                })
                .collect();
            let coins: Vec<Utxo> = (0..inputs)
                .map(|i| coin(bridge.script_pubkey(), i, 30_000_000))
                .collect();
            let share = |r: u32| {
                build_payout(
                    &bridge,
                    &coins,
                    &requests,
                    (1, 0),
                    FeeRate::from_sat_per_vb_u32(r),
                )
                .unwrap_or_else(|e| panic!("payout: {e}"))
            };
            let p1 = share(1);
            let p10 = share(10);
            let vb = p1.tx.vsize();
            println!(
                "| {kind} | {n} | {inputs} | {vb} | {:.1} | {} sat | {} sat |",
                vb as f64 / n as f64,
                p1.shares[0].to_sat(),
                p10.shares[0].to_sat()
            );
        }
    }
}
