//! The BTC bridge on L2: deposits credited once, by the sequencer only, with no fee and no
//! nonce; withdrawals that burn what they record; every failure with its reason and no state
//! change beyond what the runtime always keeps; conservation (`supply == balances`, and
//! `BTC supply == genesis + deposited − withdrawn`) over random blocks, which also run through
//! the parallel engine on several thread counts, with and without footprints; and the
//! footprints that let deposits and withdrawals run apart.

use std::collections::BTreeMap;

use parabit_exec::{execute_sequential, BlockOutput, ExecConfig, KeyMap, ParallelExecutor, Value};
use parabit_modules::bank::BankKey;
use parabit_modules::bridge::{
    display_txid, is_standard_script, query_deposit, query_totals, query_withdrawal,
};
use parabit_modules::genesis::{
    DEFAULT_DEPOSIT_CONFIRMATIONS, DEFAULT_MIN_DEPOSIT, DEFAULT_MIN_WITHDRAWAL,
};
use parabit_modules::{
    balance_of, check_conservation, genesis_state, total_supply, BankMsg, BlockTx, BridgeConfig,
    BridgeKey, BridgeMsg, Call, GenesisBalance, GenesisSpec, Runtime, SettlementSpec, Tx,
    Withdrawal,
};
use parabit_primitives::{Address, AssetId, Receipt, TxStatus};
use proptest::prelude::*;

use crate::harness::{parallel_on, pools};
use crate::{
    account, authority, bridge_config, bridged_runtime, deposit_tx, fee_account, funded, p2wpkh,
    runtime, transfer, withdraw_tx, BRIDGE_MIN, CHAIN,
};

/// A txid whose bytes are all `n`.
fn txid(n: u8) -> [u8; 32] {
    [n; 32]
}

/// Runs one block of `txs` at `height` sequentially with `vm`: receipts, output, state after.
fn run_at(
    vm: &Runtime,
    height: u64,
    state: &KeyMap<Value>,
    txs: &[Tx],
) -> (Vec<Receipt>, BlockOutput<Receipt>, KeyMap<Value>) {
    let block: Vec<BlockTx> = txs.iter().cloned().map(BlockTx::User).collect();
    let out = execute_sequential(&vm.at_height(height), &block, state);
    let mut after = state.clone();
    out.writes.apply_to(&mut after);
    (out.outputs.clone(), out, after)
}

/// [`run_at`] with the bridged runtime at height 1.
fn run(state: &KeyMap<Value>, txs: &[Tx]) -> (Vec<Receipt>, BlockOutput<Receipt>, KeyMap<Value>) {
    run_at(&bridged_runtime(), 1, state, txs)
}

fn success(fee: u128) -> Receipt {
    Receipt {
        status: TxStatus::Success,
        fee_paid: fee,
    }
}

fn nonce_of(state: &KeyMap<Value>, a: &Address) -> u128 {
    state
        .get(&BankKey::Nonce(*a).key())
        .map_or(0, Value::as_num)
}

fn btc(state: &KeyMap<Value>, a: &Address) -> u128 {
    balance_of(state, a, AssetId::BTC)
}

fn btc_supply(state: &KeyMap<Value>) -> u128 {
    total_supply(state, AssetId::BTC)
}

/// The five standard output scripts the bridge pays.
fn standard_scripts() -> Vec<Vec<u8>> {
    let mut p2pkh = vec![0x76, 0xa9, 0x14];
    p2pkh.extend([1; 20]);
    p2pkh.extend([0x88, 0xac]);
    let mut p2sh = vec![0xa9, 0x14];
    p2sh.extend([2; 20]);
    p2sh.push(0x87);
    let mut p2wsh = vec![0x00, 0x20];
    p2wsh.extend([4; 32]);
    let mut p2tr = vec![0x51, 0x20];
    p2tr.extend([5; 32]);
    vec![p2pkh, p2sh, p2wpkh(3), p2wsh, p2tr]
}

/// Scripts one byte or one length off the standard ones, and others the bridge does not pay.
fn near_misses() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in standard_scripts() {
        let mut longer = s.clone();
        longer.push(0);
        out.push(longer);
        out.push(s[..s.len() - 1].to_vec());
        // Each byte of the pattern's head and tail changed (the hash bytes are free).
        let fixed: Vec<usize> = match s.len() {
            25 => vec![0, 1, 2, 23, 24],
            23 => vec![0, 1, 22],
            _ => vec![0, 1],
        };
        for i in fixed {
            let mut t = s.clone();
            t[i] ^= 0x01;
            out.push(t);
        }
    }
    // OP_RETURN, bare multisig-like, witness v1 with 20 bytes, empty.
    out.push([vec![0x6a, 0x14], vec![0; 20]].concat());
    out.push([vec![0x51, 0x14], vec![0; 20]].concat());
    out.push(vec![0x52, 0xae]);
    out.push(vec![]);
    out
}

const NON_STANDARD: &str = "cannot pay to this script: not P2PKH, P2SH, P2WPKH, P2WSH or P2TR";

#[test]
fn a_deposit_mints_to_the_recipient_with_no_fee_and_no_nonce() {
    let base = funded(2, 1_000);
    let supply = btc_supply(&base);
    let (receipts, _, after) = run(&base, &[deposit_tx(txid(1), 2, account(1), 50_000)]);
    assert_eq!(receipts, vec![success(0)]);
    assert_eq!(btc(&after, &account(1)), 51_000);
    assert_eq!(btc_supply(&after), supply + 50_000);
    assert_eq!(query_deposit(&after, &txid(1), 2), Some(50_000));
    assert_eq!(query_deposit(&after, &txid(1), 3), None);
    assert_eq!(query_totals(&after), (50_000, 0));
    // The authority's nonce and balance are untouched, and no fee went anywhere.
    assert_eq!(after.get(&BankKey::Nonce(authority()).key()), None);
    assert_eq!(btc(&after, &authority()), 0);
    assert_eq!(btc(&after, &fee_account()), 0);
    assert_eq!(check_conservation(&after), Ok(()));
    // The authority's next deposit is valid with nonce 0 again.
    let (receipts, _, after) = run(&after, &[deposit_tx(txid(2), 0, account(0), 10_000)]);
    assert_eq!(receipts, vec![success(0)]);
    assert_eq!(query_totals(&after), (60_000, 0));
    assert_eq!(btc_supply(&after), supply + 60_000);
}

#[test]
fn invalid_deposits_are_invalid_and_change_nothing() {
    // The authority holds BTC and has a nonce of 3, so a fee or a nonce could be charged.
    let mut base = genesis_state(&[
        (authority(), AssetId::BTC, 1_000_000),
        (account(0), AssetId::BTC, 1_000_000),
    ]);
    base.insert(BankKey::Nonce(authority()).key(), Value::Num(3));
    let good = deposit_tx(txid(1), 0, account(1), 20_000);
    let with = |f: &dyn Fn(&mut Tx)| {
        let mut t = good.clone();
        f(&mut t);
        t
    };
    let amount = |a: u64| {
        with(&|t: &mut Tx| {
            if let Call::Bridge(BridgeMsg::Deposit { amount, .. }) = &mut t.call {
                *amount = a;
            }
        })
    };
    let no_bridge = runtime();
    let cases: Vec<(Runtime, Tx, String)> = vec![
        (
            bridged_runtime(),
            with(&|t: &mut Tx| t.sender = account(0)),
            "bridge deposits are made by the sequencer only".into(),
        ),
        (
            bridged_runtime(),
            with(&|t: &mut Tx| t.fee = 1),
            "a bridge deposit has fee 0 and nonce 0, got fee 1 and nonce 0".into(),
        ),
        (
            bridged_runtime(),
            with(&|t: &mut Tx| t.nonce = 3),
            "a bridge deposit has fee 0 and nonce 0, got fee 0 and nonce 3".into(),
        ),
        (
            bridged_runtime(),
            amount(5_000),
            "deposit of 5000 sat is below the minimum 10000 sat".into(),
        ),
        (
            bridged_runtime(),
            amount(0),
            "deposit amount must be positive".into(),
        ),
        (
            runtime().with_bridge(BridgeConfig {
                min_deposit: 0,
                ..bridge_config()
            }),
            amount(0),
            "deposit amount must be positive".into(),
        ),
        (no_bridge, good.clone(), "the chain has no bridge".into()),
        (
            bridged_runtime(),
            with(&|t: &mut Tx| t.chain_id = CHAIN + 1),
            format!("wrong chain id: expected {CHAIN}, got {}", CHAIN + 1),
        ),
    ];
    for (vm, tx, reason) in cases {
        let (receipts, out, after) = run_at(&vm, 1, &base, std::slice::from_ref(&tx));
        assert_eq!(receipts, vec![Receipt::invalid(reason)], "{tx:?}");
        assert!(out.writes.is_empty(), "{tx:?}: {:?}", out.writes);
        assert_eq!(after, base);
    }
    // Just at the minimum is fine.
    let (receipts, _, _) = run(&base, &[amount(BRIDGE_MIN)]);
    assert_eq!(receipts, vec![success(0)]);
}

#[test]
fn an_outpoint_is_credited_once() {
    let base = funded(2, 0);
    let first = deposit_tx(txid(7), 1, account(0), 30_000);
    // The same outpoint again (even to another recipient) in the same block and a later one;
    // the same txid with another vout, and another txid with the same vout, are other
    // deposits.
    let again = deposit_tx(txid(7), 1, account(1), 40_000);
    let other_vout = deposit_tx(txid(7), 0, account(1), 40_000);
    let other_txid = deposit_tx(txid(8), 1, account(1), 40_000);
    let (receipts, _, after) = run(
        &base,
        &[first.clone(), again.clone(), other_vout, other_txid],
    );
    let dup = format!("deposit {}:1 already credited", hex::encode([7u8; 32]));
    assert_eq!(
        receipts,
        vec![
            success(0),
            Receipt::invalid(dup.clone()),
            success(0),
            success(0)
        ]
    );
    assert_eq!(btc(&after, &account(0)), 30_000);
    assert_eq!(btc(&after, &account(1)), 80_000);
    assert_eq!(query_totals(&after), (110_000, 0));
    let (receipts, out, _) = run_at(&bridged_runtime(), 2, &after, &[first, again]);
    assert_eq!(
        receipts,
        vec![Receipt::invalid(dup.clone()), Receipt::invalid(dup)]
    );
    assert!(out.writes.is_empty());
}

#[test]
fn the_duplicate_message_shows_the_txid_as_bitcoin_does() {
    let mut id = [0u8; 32];
    id[0] = 0xee; // internal order: shown last
    id[31] = 0x0a; // shown first
    let base = funded(1, 0);
    let tx = deposit_tx(id, 9, account(0), 10_000);
    let (_, _, after) = run(&base, std::slice::from_ref(&tx));
    let (receipts, _, _) = run(&after, &[tx]);
    let shown = display_txid(&id);
    assert!(shown.starts_with("0a") && shown.ends_with("ee"), "{shown}");
    assert_eq!(
        receipts,
        vec![Receipt::invalid(format!(
            "deposit {shown}:9 already credited"
        ))]
    );
}

#[test]
fn a_deposit_without_mint_headroom_is_invalid_and_rolled_back() {
    // BTC's supply is 5 short of u128::MAX: no room to mint 10,000.
    let base = genesis_state(&[(account(0), AssetId::BTC, u128::MAX - 5)]);
    let (receipts, out, _) = run(&base, &[deposit_tx(txid(3), 0, account(1), 10_000)]);
    assert_eq!(
        receipts,
        vec![Receipt::invalid(
            "minting 10000 of asset 0 would overflow its supply"
        )]
    );
    assert!(out.writes.is_empty(), "{:?}", out.writes);
}

#[test]
fn a_withdrawal_burns_and_records_what_it_burns() {
    let base = funded(2, 100_000);
    let supply = btc_supply(&base);
    let script = p2wpkh(9);
    let (receipts, _, after) = run_at(
        &bridged_runtime(),
        42,
        &base,
        &[withdraw_tx(account(0), 0, 5, 20_000, script.clone())],
    );
    assert_eq!(receipts, vec![success(5)]);
    assert_eq!(btc(&after, &account(0)), 100_000 - 20_005);
    assert_eq!(btc(&after, &fee_account()), 5);
    assert_eq!(btc_supply(&after), supply - 20_000);
    assert_eq!(nonce_of(&after, &account(0)), 1);
    assert_eq!(
        query_withdrawal(&after, &account(0), 0),
        Some(Withdrawal {
            amount: 20_000,
            script_pubkey: script,
            height: 42,
        })
    );
    assert_eq!(query_withdrawal(&after, &account(0), 1), None);
    assert_eq!(query_withdrawal(&after, &account(1), 0), None);
    assert_eq!(query_totals(&after), (0, 20_000));
    assert_eq!(check_conservation(&after), Ok(()));
}

#[test]
fn each_standard_script_is_paid_and_near_misses_are_refused() {
    let base = funded(1, 10_000_000);
    let scripts = standard_scripts();
    let txs: Vec<Tx> = scripts
        .iter()
        .enumerate()
        .map(|(n, s)| withdraw_tx(account(0), n as u64, 0, BRIDGE_MIN, s.clone()))
        .collect();
    let (receipts, _, after) = run(&base, &txs);
    assert_eq!(receipts, vec![success(0); scripts.len()]);
    for (n, s) in scripts.iter().enumerate() {
        assert!(is_standard_script(s));
        let w = query_withdrawal(&after, &account(0), n as u64).expect("recorded");
        assert_eq!(&w.script_pubkey, s);
    }
    let misses = near_misses();
    let txs: Vec<Tx> = misses
        .iter()
        .enumerate()
        .map(|(n, s)| withdraw_tx(account(0), n as u64, 0, BRIDGE_MIN, s.clone()))
        .collect();
    let (receipts, _, after) = run(&base, &txs);
    for (r, s) in receipts.iter().zip(&misses) {
        assert!(!is_standard_script(s), "{}", hex::encode(s));
        assert_eq!(
            r.status,
            TxStatus::Failed(NON_STANDARD.into()),
            "{}",
            hex::encode(s)
        );
    }
    assert_eq!(btc(&after, &account(0)), 10_000_000);
    assert_eq!(query_totals(&after), (0, 0));
}

#[test]
fn failed_withdrawals_keep_only_the_fee_and_the_nonce() {
    let base = funded(1, 50_000);
    let cases: Vec<(Runtime, u64, Vec<u8>, String)> = vec![
        (
            bridged_runtime(),
            5_000,
            p2wpkh(1),
            "withdrawal of 5000 sat is below the minimum 10000 sat".into(),
        ),
        (
            runtime().with_bridge(BridgeConfig {
                min_withdrawal: 0,
                ..bridge_config()
            }),
            0,
            p2wpkh(1),
            "withdrawal amount must be positive".into(),
        ),
        (bridged_runtime(), 20_000, vec![0x6a], NON_STANDARD.into()),
        (
            bridged_runtime(),
            49_999,
            p2wpkh(1),
            // The fee (2) is paid first: 49,998 left.
            "insufficient balance: have 49998, need 49999".into(),
        ),
        (
            runtime(),
            20_000,
            p2wpkh(1),
            "the chain has no bridge".into(),
        ),
    ];
    for (vm, amount, script, reason) in cases {
        let tx = withdraw_tx(account(0), 0, 2, amount, script);
        let (receipts, _, after) = run_at(&vm, 1, &base, std::slice::from_ref(&tx));
        assert_eq!(
            receipts,
            vec![Receipt {
                status: TxStatus::Failed(reason),
                fee_paid: 2
            }],
            "{tx:?}"
        );
        let mut expected = base.clone();
        expected.insert(BankKey::Nonce(account(0)).key(), Value::Num(1));
        expected.insert(
            BankKey::Balance(account(0), AssetId::BTC).key(),
            Value::Num(49_998),
        );
        expected.insert(
            BankKey::Balance(fee_account(), AssetId::BTC).key(),
            Value::Num(2),
        );
        assert_eq!(after, expected, "{tx:?}");
    }
}

#[test]
fn a_deposit_then_a_withdrawal_of_the_same_btc_in_one_block() {
    let base = funded(2, 0);
    let supply = btc_supply(&base);
    let newcomer = account(1);
    let block = [
        deposit_tx(txid(4), 0, newcomer, 70_000),
        withdraw_tx(newcomer, 0, 0, 70_000, standard_scripts()[4].clone()),
    ];
    let (receipts, out, after) = run(&base, &block);
    assert_eq!(receipts, vec![success(0), success(0)]);
    assert_eq!(btc(&after, &newcomer), 0);
    assert_eq!(btc_supply(&after), supply);
    assert_eq!(query_totals(&after), (70_000, 70_000));
    assert_eq!(nonce_of(&after, &newcomer), 1);
    assert_eq!(check_conservation(&after), Ok(()));
    // In the other order the withdrawal is overdrawn and the deposit still credited.
    let (receipts, _, after) = run(&base, &[block[1].clone(), block[0].clone()]);
    assert_eq!(
        receipts,
        vec![
            Receipt {
                status: TxStatus::Failed("insufficient balance: have 0, need 70000".into()),
                fee_paid: 0
            },
            success(0)
        ]
    );
    assert_eq!(btc(&after, &newcomer), 70_000);
    // The parallel engine gives the same.
    let txs: Vec<BlockTx> = block.iter().cloned().map(BlockTx::User).collect();
    let vm = bridged_runtime().at_height(1);
    for pool in pools() {
        let exec = parallel_on(pool);
        let (par, stats) = exec.execute_block_with_stats(&vm, &txs, &base);
        assert_eq!(par, out);
        assert_eq!(stats.footprint_violations, 0, "{stats:?}");
    }
}

#[test]
fn call_encodings_of_the_other_modules_are_unchanged() {
    let bank = Call::Bank(BankMsg::Transfer {
        to: account(0),
        asset: AssetId::BTC,
        amount: 1,
    });
    assert_eq!(borsh::to_vec(&bank).expect("borsh")[0], 0);
    let w = Call::Bridge(BridgeMsg::Withdraw {
        amount: 1,
        script_pubkey: vec![],
    });
    assert_eq!(borsh::to_vec(&w).expect("borsh")[0], 6);
    let json = serde_json::to_value(&w).expect("json");
    assert_eq!(json["Bridge"]["Withdraw"]["script_pubkey"], "");
    let d = deposit_tx(txid(1), 2, account(3), 4).call;
    let back: Call =
        serde_json::from_str(&serde_json::to_string(&d).expect("json")).expect("parse");
    assert_eq!(back, d);
    let back: Call = borsh::from_slice(&borsh::to_vec(&d).expect("borsh")).expect("decode");
    assert_eq!(back, d);
}

// ---------------------------------------------------------------------------------------
// Genesis

fn sequencer_hex() -> String {
    hex::encode(authority().0)
}

fn spec(settlement: Option<SettlementSpec>) -> GenesisSpec {
    GenesisSpec {
        chain_id: CHAIN,
        timestamp_ms: 0,
        fee_account: fee_account(),
        balances: vec![GenesisBalance {
            address: account(0),
            asset: AssetId::BTC,
            amount: 1_000,
        }],
        assets: vec![],
        lending: None,
        setup: vec![],
        settlement,
    }
}

#[test]
fn genesis_settlement_configures_the_bridge() {
    let settlement = SettlementSpec {
        sequencer_key: sequencer_hex(),
        start_height: 100,
        deposit_confirmations: 3,
        min_deposit: 1_000,
        min_withdrawal: 2_000,
    };
    let s = spec(Some(settlement.clone()));
    let want = BridgeConfig {
        authority: authority(),
        min_deposit: 1_000,
        min_withdrawal: 2_000,
    };
    assert_eq!(s.bridge_config(), Some(want));
    assert_eq!(s.runtime().bridge(), Some(want));
    assert_eq!(s.runtime(), runtime().with_bridge(want));
    let json = serde_json::to_string(&s).expect("json");
    assert_eq!(
        serde_json::from_str::<GenesisSpec>(&json).expect("parse"),
        s
    );

    // No settlement, or a key that is not 64 hex digits of an x-only key: no bridge.
    assert_eq!(spec(None).bridge_config(), None);
    assert_eq!(spec(None).runtime(), runtime());
    assert_eq!(spec(None).runtime().bridge(), None);
    for bad in ["zz", "", &sequencer_hex()[2..], &"ff".repeat(32)] {
        let s = spec(Some(SettlementSpec {
            sequencer_key: bad.to_string(),
            ..settlement.clone()
        }));
        assert_eq!(s.bridge_config(), None, "{bad}");
        assert_eq!(s.runtime().bridge(), None, "{bad}");
    }
    // Uppercase hex and surrounding whitespace are the same key.
    let s = spec(Some(SettlementSpec {
        sequencer_key: format!(" {} ", sequencer_hex().to_uppercase()),
        ..settlement
    }));
    assert_eq!(s.bridge_config(), Some(want));
}

#[test]
fn old_genesis_files_parse_with_the_bridge_defaults() {
    let old = format!(
        r#"{{"chain_id":{CHAIN},"timestamp_ms":0,"fee_account":"{}",
            "settlement":{{"sequencer_key":"{}","start_height":7}}}}"#,
        fee_account(),
        sequencer_hex()
    );
    let s: GenesisSpec = serde_json::from_str(&old).expect("old genesis parses");
    let settlement = s.settlement.clone().expect("settlement");
    assert_eq!(settlement.start_height, 7);
    assert_eq!(
        settlement.deposit_confirmations,
        DEFAULT_DEPOSIT_CONFIRMATIONS
    );
    assert_eq!(settlement.min_deposit, DEFAULT_MIN_DEPOSIT);
    assert_eq!(settlement.min_withdrawal, DEFAULT_MIN_WITHDRAWAL);
    assert_eq!(
        (
            DEFAULT_DEPOSIT_CONFIRMATIONS,
            DEFAULT_MIN_DEPOSIT,
            DEFAULT_MIN_WITHDRAWAL
        ),
        (6, 10_000, 10_000)
    );
    assert_eq!(
        s.bridge_config(),
        Some(BridgeConfig {
            authority: authority(),
            min_deposit: 10_000,
            min_withdrawal: 10_000,
        })
    );
    let unknown = old.replace("\"start_height\":7", "\"start_height\":7,\"bogus\":1");
    assert!(serde_json::from_str::<GenesisSpec>(&unknown).is_err());
}

#[test]
fn a_bridged_genesis_runs_deposits_of_its_sequencer() {
    let s = spec(Some(SettlementSpec {
        sequencer_key: sequencer_hex(),
        start_height: 0,
        deposit_confirmations: DEFAULT_DEPOSIT_CONFIRMATIONS,
        min_deposit: DEFAULT_MIN_DEPOSIT,
        min_withdrawal: DEFAULT_MIN_WITHDRAWAL,
    }));
    let state = s.build().expect("genesis");
    let block = vec![BlockTx::User(deposit_tx(txid(5), 0, account(0), 10_000))];
    let out = execute_sequential(&s.runtime().at_height(1), &block, &state);
    assert_eq!(out.outputs, vec![success(0)]);
    let out = execute_sequential(&spec(None).runtime().at_height(1), &block, &state);
    assert_eq!(
        out.outputs,
        vec![Receipt::invalid("the chain has no bridge")]
    );
}

// ---------------------------------------------------------------------------------------
// Footprints

#[test]
fn deposits_to_one_recipient_and_withdrawals_run_in_independent_groups() {
    const N: u32 = 40;
    let base = funded(N + 1, 1_000_000);
    let hot = account(0);
    let mut txs: Vec<Tx> = Vec::new();
    for i in 1..=N {
        txs.push(deposit_tx(txid(i as u8), i, hot, 10_000 + u64::from(i)));
        txs.push(withdraw_tx(account(i), 0, 3, 20_000, p2wpkh(i as u8)));
    }
    let block: Vec<BlockTx> = txs.iter().cloned().map(BlockTx::User).collect();
    let vm = bridged_runtime().at_height(5);
    let want = execute_sequential(&vm, &block, &base);
    assert!(
        want.outputs.iter().all(|r| r.status.is_success()),
        "{:?}",
        want.outputs
    );
    for pool in &pools()[1..] {
        let exec = parallel_on(pool);
        let (got, stats) = exec.execute_block_with_stats(&vm, &block, &base);
        assert_eq!(got, want);
        assert_eq!(stats.footprint_violations, 0, "{stats:?}");
        // Every transaction is a group of its own: deposits share only the recipient's
        // balance, the supply, the headroom and the totals, all summed apart.
        assert_eq!(stats.footprint_groups, u64::from(2 * N), "{stats:?}");
    }
    // A repeated outpoint joins its first credit (they read and write one key), nothing else.
    txs.push(deposit_tx(txid(1), 1, hot, 10_000));
    let block: Vec<BlockTx> = txs.into_iter().map(BlockTx::User).collect();
    let want = execute_sequential(&vm, &block, &base);
    assert_eq!(
        want.outputs.last().map(|r| r.status.clone()),
        Some(TxStatus::Invalid(format!(
            "deposit {}:1 already credited",
            hex::encode([1u8; 32])
        )))
    );
    let pool = &pools()[2];
    let exec = parallel_on(pool);
    let (got, stats) = exec.execute_block_with_stats(&vm, &block, &base);
    assert_eq!(got, want);
    assert_eq!(stats.footprint_violations, 0, "{stats:?}");
    assert_eq!(stats.footprint_groups, u64::from(2 * N), "{stats:?}");
}

/// BTC deposited and withdrawn in the same block by accounts that held none: the block burns
/// more than the supply it started with. The engine sums the mint headroom's adds and
/// subtractions apart and cannot tell that `headroom + adds` never overflows in block order, so
/// it may re-run the block on the general engine; the result is the sequential one all the
/// same.
#[test]
fn deposits_withdrawn_in_their_own_block_give_the_sequential_result() {
    let base = funded(1, 0);
    let mut txs = Vec::new();
    for i in 1..=20u32 {
        txs.push(deposit_tx(txid(i as u8), 0, account(i), 30_000));
        txs.push(withdraw_tx(account(i), 0, 0, 30_000, p2wpkh(1)));
    }
    let block: Vec<BlockTx> = txs.into_iter().map(BlockTx::User).collect();
    let vm = bridged_runtime().at_height(3);
    let want = execute_sequential(&vm, &block, &base);
    assert!(want.outputs.iter().all(|r| r.status.is_success()));
    for pool in pools() {
        let exec = parallel_on(pool);
        let (got, stats) = exec.execute_block_with_stats(&vm, &block, &base);
        assert_eq!(got, want);
        assert!(stats.footprint_violations <= 1, "{stats:?}");
    }
    let mut after = base.clone();
    want.writes.apply_to(&mut after);
    assert_eq!(btc_supply(&after), 0);
    assert_eq!(query_totals(&after), (600_000, 600_000));
    assert_eq!(check_conservation(&after), Ok(()));
}

#[test]
fn footprints_declare_what_the_calls_touch() {
    use parabit_exec::{Footprint, Vm};
    let vm = bridged_runtime();
    let state = funded(1, 0);
    let fp = |tx: Tx| -> Footprint {
        vm.footprint(&BlockTx::User(tx), &state)
            .expect("a footprint")
    };
    let d = fp(deposit_tx(txid(1), 3, account(0), 20_000));
    assert_eq!(
        d.exclusive.to_vec(),
        vec![BridgeKey::Deposit(txid(1), 3).key()]
    );
    assert!(d.reads.is_empty());
    let mut deltas = d.deltas.to_vec();
    deltas.sort();
    let mut want = vec![
        BankKey::Balance(account(0), AssetId::BTC).key(),
        BankKey::Supply(AssetId::BTC).key(),
        BridgeKey::Deposited.key(),
    ];
    want.sort();
    assert_eq!(deltas, want);
    assert_eq!(
        d.subs.to_vec(),
        vec![BankKey::MintHeadroom(AssetId::BTC).key()]
    );
    // An invalid deposit touches nothing, not even its sender's nonce.
    let mut bad = deposit_tx(txid(1), 3, account(0), 20_000);
    bad.sender = account(0);
    let b = fp(bad);
    assert!(
        b.exclusive.is_empty() && b.reads.is_empty() && b.deltas.is_empty() && b.subs.is_empty(),
        "{b:?}"
    );

    let w = fp(withdraw_tx(account(0), 4, 1, 20_000, p2wpkh(0)));
    let mut excl = w.exclusive.to_vec();
    excl.sort();
    let mut want = vec![
        BankKey::Nonce(account(0)).key(),
        BankKey::Balance(account(0), AssetId::BTC).key(),
        BridgeKey::Withdrawal(account(0), 4).key(),
    ];
    want.sort();
    assert_eq!(excl, want);
    let mut deltas = w.deltas.to_vec();
    deltas.sort();
    let mut want = vec![
        BankKey::Balance(fee_account(), AssetId::BTC).key(),
        BankKey::Supply(AssetId::BTC).key(),
        BankKey::MintHeadroom(AssetId::BTC).key(),
        BridgeKey::Withdrawn.key(),
    ];
    want.sort();
    assert_eq!(deltas, want);
    assert!(w.subs.is_empty() && w.reads.is_empty());
}

// ---------------------------------------------------------------------------------------
// Conservation over random blocks

const ACCOUNTS: u32 = 16;

/// A generated bridge or bank operation.
#[derive(Clone, Debug)]
enum Op {
    /// A deposit of outpoint `(txid(outpoint / 3), outpoint % 3)`; `mode` 0: sent by an
    /// account instead of the authority, 1: with a fee, 2: with a nonce, else valid.
    Deposit {
        outpoint: u8,
        to: u32,
        amount: u64,
        mode: u8,
    },
    /// A withdrawal; `script` 5 is not standard.
    Withdraw {
        from: u32,
        amount: u64,
        script: usize,
        fee: u8,
    },
    Transfer {
        from: u32,
        to: u32,
        amount: u128,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12, 0..ACCOUNTS, prop_oneof![0u64..12_000, 0u64..300_000], 0u8..10)
            .prop_map(|(outpoint, to, amount, mode)| Op::Deposit { outpoint, to, amount, mode }),
        3 => (0..ACCOUNTS, prop_oneof![0u64..12_000, 0u64..300_000], 0usize..6, 0u8..4)
            .prop_map(|(from, amount, script, fee)| Op::Withdraw { from, amount, script, fee }),
        2 => (0..ACCOUNTS, 0..ACCOUNTS, 0u128..100_000)
            .prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
    ]
}

/// The transactions of `ops`, each account's nonces following on from `nonces`.
fn txs_of(ops: &[Op], nonces: &mut BTreeMap<Address, u64>) -> Vec<Tx> {
    let mut next = |a: Address| {
        let n = nonces.entry(a).or_insert(0);
        *n += 1;
        *n - 1
    };
    ops.iter()
        .map(|op| match *op {
            Op::Deposit {
                outpoint,
                to,
                amount,
                mode,
            } => {
                let mut tx = deposit_tx(
                    txid(outpoint / 3),
                    u32::from(outpoint % 3),
                    account(to),
                    amount,
                );
                match mode {
                    0 => tx.sender = account(to),
                    1 => tx.fee = 1,
                    2 => tx.nonce = 1,
                    _ => {}
                }
                tx
            }
            Op::Withdraw {
                from,
                amount,
                script,
                fee,
            } => {
                let script = standard_scripts()
                    .get(script)
                    .cloned()
                    .unwrap_or_else(|| vec![0x6a]);
                let sender = account(from);
                withdraw_tx(sender, next(sender), u128::from(fee), amount, script)
            }
            Op::Transfer { from, to, amount } => {
                let sender = account(from);
                transfer(sender, next(sender), 1, account(to), AssetId::BTC, amount)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random blocks of deposits (duplicates, non-authority ones, ones with a fee or a nonce,
    /// small ones), withdrawals (overdrafts, bad scripts) and transfers: the parallel engine
    /// equals the sequential one on 1, 2 and 4 threads with and without footprints, and no
    /// call strays outside its footprint (the one engine-side exception is noted below);
    /// every asset's supply is the sum of its balances; the BTC supply is the genesis supply
    /// plus deposits minus withdrawals; no outpoint is credited twice; every success and
    /// failure is the one the rules say.
    #[test]
    fn bridge_blocks_conserve_btc_and_credit_each_outpoint_once(
        funds in prop::collection::vec(0u128..200_000, ACCOUNTS as usize),
        blocks in prop::collection::vec(prop::collection::vec(op(), 1..40), 1..4),
    ) {
        let balances: Vec<_> = (0..ACCOUNTS)
            .map(|i| (account(i), AssetId::BTC, funds[i as usize]))
            .collect();
        let mut state = genesis_state(&balances);
        let genesis_supply = btc_supply(&state);
        let mut nonces = BTreeMap::new();
        let mut credited: BTreeMap<([u8; 32], u32), u64> = BTreeMap::new();
        let (mut deposited, mut withdrawn) = (0u128, 0u128);
        for (h, ops) in blocks.iter().enumerate() {
            let height = h as u64 + 1;
            let vm = bridged_runtime().at_height(height);
            let txs = txs_of(ops, &mut nonces);
            let block: Vec<BlockTx> = txs.iter().cloned().map(BlockTx::User).collect();
            let seq = execute_sequential(&vm, &block, &state);
            // The engine sums the mint headroom's adds (burns) before its subtractions
            // (mints): when a block burns more than the supply it started with (BTC deposited
            // and withdrawn in the same block), `headroom + adds` overflows and it re-runs the
            // block on the general engine, counting a violation. Never otherwise.
            let burnt: u128 = txs
                .iter()
                .zip(&seq.outputs)
                .filter_map(|(tx, r)| match (&tx.call, &r.status) {
                    (Call::Bridge(BridgeMsg::Withdraw { amount, .. }), TxStatus::Success) => {
                        Some(u128::from(*amount))
                    }
                    _ => None,
                })
                .sum();
            let may_overflow = burnt > btc_supply(&state);
            for pool in pools() {
                for config in [
                    ExecConfig { min_parallel_txns: 0, ..ExecConfig::default() },
                    ExecConfig { min_parallel_txns: 0, footprints: false, homes: false, ..ExecConfig::default() },
                    ExecConfig { min_parallel_txns: 0, fallback: false, ..ExecConfig::default() },
                ] {
                    let (par, stats) = ParallelExecutor::with_config(pool, config)
                        .execute_block_with_stats(&vm, &block, &state);
                    prop_assert_eq!(&par.outputs, &seq.outputs);
                    prop_assert_eq!(&par.writes, &seq.writes);
                    prop_assert!(
                        stats.footprint_violations == 0 || may_overflow,
                        "{:?}",
                        stats
                    );
                }
            }
            seq.writes.apply_to(&mut state);
            for (tx, r) in txs.iter().zip(&seq.outputs) {
                if let TxStatus::Panicked(m) = &r.status {
                    prop_assert!(false, "panicked: {}", m);
                }
                match &tx.call {
                    Call::Bridge(BridgeMsg::Deposit { txid, vout, amount, .. }) => {
                        let valid_shape = tx.sender == authority()
                            && tx.fee == 0
                            && tx.nonce == 0
                            && *amount >= BRIDGE_MIN;
                        let fresh = !credited.contains_key(&(*txid, *vout));
                        prop_assert_eq!(r.fee_paid, 0);
                        if valid_shape && fresh {
                            prop_assert_eq!(&r.status, &TxStatus::Success);
                            credited.insert((*txid, *vout), *amount);
                            deposited += u128::from(*amount);
                        } else {
                            prop_assert!(matches!(r.status, TxStatus::Invalid(_)), "{:?}", r);
                        }
                    }
                    Call::Bridge(BridgeMsg::Withdraw { amount, script_pubkey }) => {
                        let recorded = query_withdrawal(&state, &tx.sender, tx.nonce);
                        match &r.status {
                            TxStatus::Success => {
                                prop_assert!(*amount >= BRIDGE_MIN);
                                prop_assert!(is_standard_script(script_pubkey));
                                prop_assert_eq!(
                                    recorded,
                                    Some(Withdrawal {
                                        amount: *amount,
                                        script_pubkey: script_pubkey.clone(),
                                        height,
                                    })
                                );
                                withdrawn += u128::from(*amount);
                            }
                            TxStatus::Failed(reason) => {
                                prop_assert_eq!(recorded, None);
                                let ok_shape =
                                    *amount >= BRIDGE_MIN && is_standard_script(script_pubkey);
                                prop_assert!(
                                    !ok_shape || reason.starts_with("insufficient balance"),
                                    "{}",
                                    reason
                                );
                            }
                            TxStatus::Invalid(_) => prop_assert_eq!(recorded, None),
                            TxStatus::Panicked(_) => {}
                        }
                    }
                    _ => {}
                }
            }
            // The authority never pays and never moves its nonce.
            prop_assert_eq!(nonce_of(&state, &authority()), 0);
            prop_assert_eq!(btc(&state, &authority()), 0);
            prop_assert_eq!(check_conservation(&state), Ok(()));
        }
        prop_assert_eq!(query_totals(&state), (deposited, withdrawn));
        prop_assert_eq!(btc_supply(&state), genesis_supply + deposited - withdrawn);
        // Every credited outpoint holds its amount, and nothing else is recorded.
        let recorded: BTreeMap<([u8; 32], u32), u64> = state
            .keys()
            .filter_map(|k| match BridgeKey::from_bytes(k.as_bytes()) {
                Some(BridgeKey::Deposit(t, v)) => Some(((t, v), query_deposit(&state, &t, v)?)),
                _ => None,
            })
            .collect();
        prop_assert_eq!(recorded, credited);
    }
}
