//! `mint` and `burn`, driven through a small test VM since no message exposes them yet.

use parabit_exec::{execute_sequential, KeyMap, StateResult, StateView, Value, Vm};
use parabit_modules::bank::{self, BankError, BankKey};
use parabit_modules::{balance_of, check_conservation, total_supply};
use parabit_primitives::{Address, AssetId};

use crate::{account, funded};

enum Op {
    Mint(Address, AssetId, u128),
    Burn(Address, AssetId, u128),
}

struct OpsVm;

impl Vm for OpsVm {
    type Txn = Op;
    type Output = Result<(), BankError>;

    fn execute<V: StateView>(&self, op: &Op, view: &mut V) -> StateResult<Self::Output> {
        let cp = view.checkpoint();
        let r = match op {
            Op::Mint(a, asset, n) => bank::mint(view, a, *asset, *n),
            Op::Burn(a, asset, n) => bank::burn(view, a, *asset, *n),
        };
        match r {
            Err(BankError::Halt(h)) => Err(h),
            Err(e) => {
                view.rollback(cp);
                Ok(Err(e))
            }
            Ok(()) => Ok(Ok(())),
        }
    }

    fn panic_output(&self, _: &Op, _: &str) -> Self::Output {
        Ok(())
    }
}

fn run(state: &KeyMap<Value>, ops: &[Op]) -> (Vec<Result<(), BankError>>, KeyMap<Value>) {
    let out = execute_sequential(&OpsVm, ops, state);
    let mut after = state.clone();
    out.writes.apply_to(&mut after);
    (out.outputs, after)
}

#[test]
fn mint_and_burn_keep_supply_equal_to_balances() {
    let base = funded(2, 1_000);
    let (results, after) = run(
        &base,
        &[
            Op::Mint(account(0), AssetId::BTC, 500),
            Op::Burn(account(1), AssetId::BTC, 300),
            Op::Burn(account(1), AssetId::BTC, 800),
            Op::Mint(account(5), AssetId::BTC, 0),
        ],
    );
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Ok(()));
    assert_eq!(
        results[2],
        Err(BankError::InsufficientBalance {
            asset: AssetId::BTC,
            have: 700,
            need: 800
        })
    );
    assert_eq!(results[3], Ok(()));
    assert_eq!(balance_of(&after, &account(0), AssetId::BTC), 1_500);
    assert_eq!(balance_of(&after, &account(1), AssetId::BTC), 700);
    assert_eq!(total_supply(&after, AssetId::BTC), 2_200);
    assert_eq!(check_conservation(&after), Ok(()));
}

#[test]
fn mint_refuses_to_overflow_the_supply() {
    let base = funded(1, 1_000);
    let (results, after) = run(
        &base,
        &[
            Op::Mint(account(0), AssetId::BTC, u128::MAX - 1_000),
            Op::Mint(account(1), AssetId::BTC, 1),
        ],
    );
    assert_eq!(results[0], Ok(()));
    assert_eq!(
        results[1],
        Err(BankError::SupplyOverflow {
            asset: AssetId::BTC,
            amount: 1
        })
    );
    assert_eq!(total_supply(&after, AssetId::BTC), u128::MAX);
    assert_eq!(
        after.get(&BankKey::MintHeadroom(AssetId::BTC).key()),
        Some(&Value::Num(0))
    );
    assert_eq!(check_conservation(&after), Ok(()));
}
