//! Property: random blocks of bank and bridge transactions (transfers among a few accounts with
//! a hot recipient, overdrafts, wrong nonces, wrong chain ids, fees that cannot be paid, asset
//! creation, bridge deposits (valid, repeated, from another sender, with a fee, too small) and
//! withdrawals (overdrawn, to a bad script)) give identical receipts and write sets
//! sequentially and in parallel on 1, 2 and 4 threads, with and without footprints, and
//! conserve value: every asset's balances sum to its supply, no supply of an existing asset
//! changes but BTC's, which moves by exactly the deposits minus the withdrawals, fees only move
//! BTC to the fee account, and deposits charge no fee and no nonce.

use std::collections::BTreeMap;

use parabit_exec::{execute_sequential, ExecConfig, KeyMap, ParallelExecutor, Value};
use parabit_modules::bank::{derive_asset_id, BankKey};
use parabit_modules::bridge::query_totals;
use parabit_modules::{
    balance_of, check_conservation, genesis_state, supplies, total_supply, BankMsg, BlockTx,
    BridgeMsg, Call, Tx,
};
use parabit_primitives::{Address, AssetId, TxStatus};
use proptest::prelude::*;

use crate::harness::pools;
use crate::{account, authority, bridged_runtime, deposit_tx, fee_account, p2wpkh, runtime, CHAIN};

const ACCOUNTS: u32 = 6;
const TOKEN: AssetId = AssetId(7);

/// One generated transaction: (kind, from, to, amount, fee, nonce mode).
type Op = (u8, u8, u8, u16, u8, u8);

fn build(ops: &[Op]) -> Vec<Tx> {
    let mut nonces = [0u64; ACCOUNTS as usize];
    ops.iter()
        .map(|&(kind, from, to_byte, amount, fee, nonce_mode)| {
            let from_i = (from as u32) % ACCOUNTS;
            let sender = account(from_i);
            // Half of all transfers credit account 0: a hot recipient.
            let to = if to_byte < 128 {
                account(0)
            } else {
                account((to_byte as u32) % ACCOUNTS)
            };
            if kind % 20 == 5 {
                // A bridge deposit of one of 8 outpoints (so some repeat), from the authority
                // with no fee or nonce, except one in ten from the sender and one in eight with
                // a fee. Its amount is often below the minimum.
                let (txid, vout) = ([to_byte % 4; 32], u32::from(to_byte % 8 / 4));
                let mut tx = deposit_tx(txid, vout, to, u64::from(amount));
                if nonce_mode % 10 == 0 {
                    tx.sender = sender;
                }
                if fee % 8 == 7 {
                    tx.fee = 1;
                }
                return tx;
            }
            let expected = nonces[from_i as usize];
            let nonce = match nonce_mode % 10 {
                0 => expected + 1,
                1 if expected > 0 => expected - 1,
                _ => {
                    nonces[from_i as usize] += 1;
                    expected
                }
            };
            let withdrawal = Call::Bridge(BridgeMsg::Withdraw {
                amount: u64::from(amount),
                // One in five to a script the bridge does not pay.
                script_pubkey: if nonce_mode % 5 == 4 {
                    vec![0x6a]
                } else {
                    p2wpkh(from)
                },
            });
            let amount = u128::from(amount);
            let (chain_id, call) = match kind % 20 {
                0 => (
                    CHAIN,
                    Call::Bank(BankMsg::CreateAsset {
                        symbol: "TK".into(),
                        decimals: 2,
                        initial_supply: amount,
                    }),
                ),
                1..=3 => (
                    CHAIN,
                    Call::Bank(BankMsg::Transfer {
                        to,
                        asset: TOKEN,
                        amount,
                    }),
                ),
                6 | 7 => (CHAIN, withdrawal),
                4 => (
                    CHAIN + 1,
                    Call::Bank(BankMsg::Transfer {
                        to,
                        asset: AssetId::BTC,
                        amount,
                    }),
                ),
                _ => (
                    CHAIN,
                    Call::Bank(BankMsg::Transfer {
                        to,
                        asset: AssetId::BTC,
                        amount,
                    }),
                ),
            };
            Tx {
                chain_id,
                sender,
                nonce,
                fee: u128::from(fee % 8),
                call,
            }
        })
        .collect()
}

fn genesis(btc: &[u16], token: &[u16]) -> KeyMap<Value> {
    let mut balances = Vec::new();
    for i in 0..ACCOUNTS {
        balances.push((account(i), AssetId::BTC, u128::from(btc[i as usize])));
        balances.push((account(i), TOKEN, u128::from(token[i as usize])));
    }
    genesis_state(&balances)
}

fn nonce_of(state: &KeyMap<Value>, a: &Address) -> u128 {
    state
        .get(&BankKey::Nonce(*a).key())
        .map_or(0, Value::as_num)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parallel_equals_sequential_and_value_is_conserved(
        btc in prop::collection::vec(0u16..1500, ACCOUNTS as usize),
        token in prop::collection::vec(0u16..400, ACCOUNTS as usize),
        ops in prop::collection::vec(any::<Op>(), 1..120),
    ) {
        let base = genesis(&btc, &token);
        let txs = build(&ops);
        let block: Vec<BlockTx> = txs.iter().cloned().map(BlockTx::User).collect();
        let vm = bridged_runtime();
        let seq = execute_sequential(&vm, &block, &base);

        for pool in pools() {
            for config in [
                ExecConfig { min_parallel_txns: 0, ..ExecConfig::default() },
                ExecConfig { min_parallel_txns: 0, footprints: false, homes: false, ..ExecConfig::default() },
                ExecConfig { min_parallel_txns: 0, fallback: false, ..ExecConfig::default() },
                ExecConfig::default(),
            ] {
                let par = ParallelExecutor::with_config(pool, config)
                    .execute_block(&vm, &block, &base);
                prop_assert_eq!(&par.outputs, &seq.outputs);
                prop_assert_eq!(&par.writes, &seq.writes);
            }
        }

        let mut after = base.clone();
        seq.writes.apply_to(&mut after);
        prop_assert_eq!(check_conservation(&after), Ok(()));

        // Supplies of pre-existing assets are unchanged; new assets hold exactly what their
        // successful creations minted.
        let before = supplies(&base);
        let mut created: BTreeMap<AssetId, u128> = BTreeMap::new();
        let mut fees = 0u128;
        let mut charged: BTreeMap<Address, u128> = BTreeMap::new();
        let (mut deposited, mut withdrawn) = (0u128, 0u128);
        for (tx, r) in txs.iter().zip(&seq.outputs) {
            match (&r.status, &tx.call) {
                (TxStatus::Success, Call::Bridge(BridgeMsg::Deposit { amount, .. })) => {
                    prop_assert_eq!(tx.sender, authority());
                    prop_assert_eq!((r.fee_paid, tx.fee, tx.nonce), (0, 0, 0));
                    deposited += u128::from(*amount);
                }
                (TxStatus::Failed(_), Call::Bridge(BridgeMsg::Deposit { .. })) => {
                    prop_assert!(false, "a deposit fails only as invalid: {:?}", r);
                }
                (TxStatus::Success | TxStatus::Failed(_), _) => {
                    prop_assert_eq!(r.fee_paid, tx.fee);
                    fees += r.fee_paid;
                    *charged.entry(tx.sender).or_default() += 1;
                    if let (TxStatus::Success, Call::Bridge(BridgeMsg::Withdraw { amount, .. })) =
                        (&r.status, &tx.call)
                    {
                        withdrawn += u128::from(*amount);
                    }
                }
                (TxStatus::Invalid(_), _) => prop_assert_eq!(r.fee_paid, 0),
                (TxStatus::Panicked(m), _) => prop_assert!(false, "panicked: {}", m),
            }
            if let (TxStatus::Success, Call::Bank(BankMsg::CreateAsset { initial_supply, .. })) =
                (&r.status, &tx.call)
            {
                let id = derive_asset_id(&tx.sender, tx.nonce).expect("nonzero id");
                created.insert(id, *initial_supply);
            }
        }
        for (asset, supply) in supplies(&after) {
            if asset == AssetId::BTC {
                continue;
            }
            match before.get(&asset) {
                Some(b) => prop_assert_eq!(supply, *b, "supply of {} changed", asset),
                None => prop_assert_eq!(Some(&supply), created.get(&asset)),
            }
        }
        prop_assert_eq!(query_totals(&after), (deposited, withdrawn));
        prop_assert_eq!(
            total_supply(&after, AssetId::BTC),
            total_supply(&base, AssetId::BTC) + deposited - withdrawn
        );
        prop_assert_eq!(nonce_of(&after, &authority()), 0);
        prop_assert_eq!(balance_of(&after, &fee_account(), AssetId::BTC), fees);
        for i in 0..ACCOUNTS {
            let a = account(i);
            prop_assert_eq!(nonce_of(&after, &a), u128::from(charged.get(&a).copied().unwrap_or(0) as u64));
        }
    }
}

/// A fixed, larger block with both a hot recipient and a serial sender: the parallel engine
/// really runs it in parallel (not via its small-block fallback) and still equals the oracle.
#[test]
fn contended_block_runs_in_parallel_and_matches() {
    let balances: Vec<_> = (0..ACCOUNTS)
        .map(|i| (account(i), AssetId::BTC, 1_000_000u128))
        .collect();
    let base = genesis_state(&balances);
    let mut nonces = [0u64; ACCOUNTS as usize];
    let txs: Vec<Tx> = (0..600u32)
        .map(|i| {
            // Every third transaction comes from account 1 (a dependency chain on its nonce);
            // every transaction credits account 0 or 2.
            let from = if i % 3 == 0 { 1 } else { 3 + i % 3 };
            let n = nonces[from as usize];
            nonces[from as usize] += 1;
            Tx {
                chain_id: CHAIN,
                sender: account(from),
                nonce: n,
                fee: 1,
                call: Call::Bank(BankMsg::Transfer {
                    to: account(2 * (i % 2)),
                    asset: AssetId::BTC,
                    amount: u128::from(i % 50 + 1),
                }),
            }
        })
        .collect();
    let txs: Vec<BlockTx> = txs.into_iter().map(BlockTx::User).collect();
    let vm = runtime();
    let seq = execute_sequential(&vm, &txs, &base);
    assert!(seq.outputs.iter().all(|r| r.status.is_success()));
    for pool in &pools()[1..] {
        let (par, stats) = ParallelExecutor::new(pool).execute_block_with_stats(&vm, &txs, &base);
        assert_eq!(par.outputs, seq.outputs);
        assert_eq!(par.writes, seq.writes);
        // Executions by the parallel workers (a sequentially finished suffix is not counted).
        assert!(stats.executions > 0, "{stats:?}");
    }
    let mut after = base.clone();
    seq.writes.apply_to(&mut after);
    assert_eq!(check_conservation(&after), Ok(()));
    assert_eq!(balance_of(&after, &fee_account(), AssetId::BTC), 600);
}
