use parabit_exec::{num_of, KeyMap, Value};
use parabit_modules::bank::{derive_asset_id, BankKey};
use parabit_modules::{
    balance_of, check_conservation, supplies, total_supply, AssetInfo, BankMsg, Call,
};
use parabit_primitives::{AssetId, Receipt, TxStatus};

use crate::{account, fee_account, funded, run, runtime, transfer, CHAIN};

fn nonce(state: &KeyMap<Value>, i: u32) -> u128 {
    num_of(&state.get(&BankKey::Nonce(account(i)).key()).cloned())
}

#[test]
fn transfer_moves_value_and_pays_the_fee() {
    let base = funded(2, 1_000);
    let (receipts, _, after) = run(
        &base,
        &[transfer(account(0), 0, 10, account(1), AssetId::BTC, 300)],
    );
    assert_eq!(
        receipts,
        vec![Receipt {
            status: TxStatus::Success,
            fee_paid: 10
        }]
    );
    assert_eq!(balance_of(&after, &account(0), AssetId::BTC), 690);
    assert_eq!(balance_of(&after, &account(1), AssetId::BTC), 1_300);
    assert_eq!(balance_of(&after, &fee_account(), AssetId::BTC), 10);
    assert_eq!(nonce(&after, 0), 1);
    assert_eq!(nonce(&after, 1), 0);
    assert_eq!(check_conservation(&after), Ok(()));
    assert_eq!(supplies(&after), supplies(&base));
}

#[test]
fn consecutive_nonces_and_fees_accumulate() {
    let base = funded(3, 1_000);
    let txs: Vec<_> = (0..5)
        .map(|n| {
            transfer(
                account(0),
                n,
                3,
                account(1 + (n as u32 % 2)),
                AssetId::BTC,
                10,
            )
        })
        .collect();
    let (receipts, _, after) = run(&base, &txs);
    assert!(
        receipts.iter().all(|r| r.status.is_success()),
        "{receipts:?}"
    );
    assert_eq!(nonce(&after, 0), 5);
    assert_eq!(balance_of(&after, &fee_account(), AssetId::BTC), 15);
    assert_eq!(
        balance_of(&after, &account(0), AssetId::BTC),
        1_000 - 5 * 13
    );
    assert_eq!(check_conservation(&after), Ok(()));
}

#[test]
fn wrong_nonce_is_invalid_and_changes_nothing() {
    let base = funded(2, 1_000);
    let (receipts, out, _) = run(
        &base,
        &[transfer(account(0), 7, 10, account(1), AssetId::BTC, 1)],
    );
    assert_eq!(
        receipts,
        vec![Receipt::invalid("wrong nonce: expected 0, got 7")]
    );
    assert!(out.writes.is_empty());
}

#[test]
fn replay_of_a_used_nonce_is_invalid() {
    let base = funded(2, 1_000);
    let tx = transfer(account(0), 0, 1, account(1), AssetId::BTC, 5);
    let (receipts, out, _) = run(&base, &[tx.clone(), tx]);
    assert!(receipts[0].status.is_success());
    assert_eq!(
        receipts[1],
        Receipt::invalid("wrong nonce: expected 1, got 0")
    );
    assert_eq!(out.writes.len(), 4); // nonce, two balances, fee account
}

#[test]
fn wrong_chain_is_invalid_and_changes_nothing() {
    let base = funded(2, 1_000);
    let mut tx = transfer(account(0), 0, 10, account(1), AssetId::BTC, 1);
    tx.chain_id = CHAIN + 1;
    let (receipts, out, _) = run(&base, &[tx]);
    assert_eq!(
        receipts,
        vec![Receipt::invalid(format!(
            "wrong chain id: expected {CHAIN}, got {}",
            CHAIN + 1
        ))]
    );
    assert!(out.writes.is_empty());
}

#[test]
fn cannot_pay_fee_is_invalid_and_changes_nothing() {
    let base = funded(2, 40);
    let (receipts, out, _) = run(
        &base,
        &[transfer(account(0), 0, 100, account(1), AssetId::BTC, 1)],
    );
    assert_eq!(
        receipts,
        vec![Receipt::invalid(
            "cannot pay fee: have 40 BTC sats, need 100"
        )]
    );
    assert!(out.writes.is_empty());
    // An account that has never been funded.
    let (receipts, out, _) = run(
        &base,
        &[transfer(account(9), 0, 1, account(1), AssetId::BTC, 1)],
    );
    assert!(matches!(receipts[0].status, TxStatus::Invalid(_)));
    assert_eq!(receipts[0].fee_paid, 0);
    assert!(out.writes.is_empty());
}

#[test]
fn zero_fee_is_allowed() {
    let base = funded(2, 50);
    let (receipts, _, after) = run(
        &base,
        &[transfer(account(0), 0, 0, account(1), AssetId::BTC, 50)],
    );
    assert!(receipts[0].status.is_success());
    assert_eq!(receipts[0].fee_paid, 0);
    assert_eq!(balance_of(&after, &account(0), AssetId::BTC), 0);
    assert_eq!(balance_of(&after, &fee_account(), AssetId::BTC), 0);
}

#[test]
fn overdraft_fails_but_keeps_fee_and_nonce() {
    let base = funded(2, 140);
    let (receipts, _, after) = run(
        &base,
        &[transfer(account(0), 0, 100, account(1), AssetId::BTC, 100)],
    );
    assert_eq!(
        receipts,
        vec![Receipt {
            status: TxStatus::Failed("insufficient balance: have 40, need 100".into()),
            fee_paid: 100
        }]
    );
    assert_eq!(balance_of(&after, &account(0), AssetId::BTC), 40);
    assert_eq!(balance_of(&after, &account(1), AssetId::BTC), 140);
    assert_eq!(balance_of(&after, &fee_account(), AssetId::BTC), 100);
    assert_eq!(nonce(&after, 0), 1);
    assert_eq!(check_conservation(&after), Ok(()));
}

#[test]
fn transfer_of_nothing_or_of_an_unheld_asset_fails() {
    let base = funded(2, 1_000);
    let (receipts, _, after) = run(
        &base,
        &[
            transfer(account(0), 0, 1, account(1), AssetId::BTC, 0),
            transfer(account(0), 1, 1, account(1), AssetId(12345), 5),
        ],
    );
    assert_eq!(
        receipts[0].status,
        TxStatus::Failed("transfer amount must be positive".into())
    );
    assert_eq!(
        receipts[1].status,
        TxStatus::Failed("insufficient balance: have 0, need 5".into())
    );
    assert_eq!(nonce(&after, 0), 2);
    assert_eq!(balance_of(&after, &fee_account(), AssetId::BTC), 2);
}

#[test]
fn self_transfer_is_a_no_op_apart_from_the_fee() {
    let base = funded(1, 100);
    let (receipts, _, after) = run(
        &base,
        &[transfer(account(0), 0, 1, account(0), AssetId::BTC, 99)],
    );
    assert!(receipts[0].status.is_success());
    assert_eq!(balance_of(&after, &account(0), AssetId::BTC), 99);
}

fn create(nonce: u64, symbol: &str, decimals: u8, supply: u128) -> parabit_modules::Tx {
    parabit_modules::Tx {
        chain_id: CHAIN,
        sender: account(0),
        nonce,
        fee: 5,
        call: Call::Bank(BankMsg::CreateAsset {
            symbol: symbol.into(),
            decimals,
            initial_supply: supply,
        }),
    }
}

#[test]
fn create_asset_then_transfer_it() {
    let base = funded(2, 1_000);
    let id = derive_asset_id(&account(0), 0).expect("nonzero id");
    let (receipts, _, after) = run(
        &base,
        &[
            create(0, "USDX", 6, 1_000_000),
            transfer(account(0), 1, 5, account(1), id, 250_000),
        ],
    );
    assert!(
        receipts.iter().all(|r| r.status.is_success()),
        "{receipts:?}"
    );
    assert_eq!(balance_of(&after, &account(0), id), 750_000);
    assert_eq!(balance_of(&after, &account(1), id), 250_000);
    assert_eq!(total_supply(&after, id), 1_000_000);
    let info = match after.get(&BankKey::AssetInfo(id).key()) {
        Some(Value::Bytes(b)) => borsh::from_slice::<AssetInfo>(b).expect("info"),
        other => panic!("no asset info: {other:?}"),
    };
    assert_eq!(
        info,
        AssetInfo {
            symbol: "USDX".into(),
            decimals: 6,
            creator: account(0)
        }
    );
    assert_eq!(check_conservation(&after), Ok(()));
}

#[test]
fn create_asset_refuses_bad_parameters() {
    let base = funded(1, 1_000);
    let (receipts, _, after) = run(
        &base,
        &[
            create(0, "usd", 6, 1),
            create(1, "", 6, 1),
            create(2, "THIRTEENCHARS", 6, 1),
            create(3, "OK", 19, 1),
        ],
    );
    let reasons: Vec<_> = receipts
        .iter()
        .map(|r| match &r.status {
            TxStatus::Failed(m) => m.clone(),
            other => panic!("expected a failure, got {other:?}"),
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            "invalid asset symbol \"usd\": use 1 to 12 ASCII uppercase letters or digits",
            "invalid asset symbol \"\": use 1 to 12 ASCII uppercase letters or digits",
            "invalid asset symbol \"THIRTEENCHARS\": use 1 to 12 ASCII uppercase letters or digits",
            "invalid decimals 19: at most 18",
        ]
    );
    assert_eq!(balance_of(&after, &fee_account(), AssetId::BTC), 20);
    assert_eq!(supplies(&after).len(), 1);
    assert_eq!(check_conservation(&after), Ok(()));
}

#[test]
fn create_asset_refuses_an_existing_id() {
    // Plant an asset at the id the next creation would get.
    let mut base = funded(1, 1_000);
    let id = derive_asset_id(&account(0), 0).expect("nonzero id");
    base.insert(
        BankKey::AssetInfo(id).key(),
        parabit_modules::bank::encode_asset_info(&AssetInfo::btc()),
    );
    let (receipts, _, _) = run(&base, &[create(0, "DUP", 0, 1)]);
    assert_eq!(
        receipts[0].status,
        TxStatus::Failed(format!("asset {id} already exists"))
    );
}

#[test]
fn panic_output_is_a_panicked_receipt_without_fee() {
    use parabit_exec::Vm;
    let tx = transfer(account(0), 0, 10, account(1), AssetId::BTC, 1);
    assert_eq!(
        runtime().panic_output(&parabit_modules::BlockTx::User(tx), "boom"),
        Receipt {
            status: TxStatus::Panicked("boom".into()),
            fee_paid: 0
        }
    );
}

#[test]
fn genesis_is_conserved_and_sums_duplicates() {
    let a = account(0);
    let state = parabit_modules::genesis_state(&[
        (a, AssetId::BTC, 5),
        (a, AssetId::BTC, 7),
        (account(1), AssetId(9), 3),
    ]);
    assert_eq!(balance_of(&state, &a, AssetId::BTC), 12);
    assert_eq!(total_supply(&state, AssetId::BTC), 12);
    assert_eq!(total_supply(&state, AssetId(9)), 3);
    assert_eq!(check_conservation(&state), Ok(()));
    assert_eq!(
        parabit_modules::try_genesis_state(&[(a, AssetId::BTC, u128::MAX), (a, AssetId::BTC, 1)]),
        Err(parabit_modules::GenesisError::SupplyOverflow(AssetId::BTC))
    );
    // The checker notices value created out of nothing.
    let mut bad = state.clone();
    bad.insert(BankKey::Balance(a, AssetId::BTC).key(), Value::Num(13));
    assert!(check_conservation(&bad).is_err());
}
