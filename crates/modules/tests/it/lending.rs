//! Lending: Compound's rate model and liquidation arithmetic on worked examples, accrual
//! through the begin-block hook, every message's failure modes, invariants over random
//! sequences of operations, and parallel == sequential on random blocks.
//!
//! Prices are in micro-dollars per base unit, 1e18 fixed point: BTC at $50,000 is 500 µ$ per
//! satoshi (`500e18`); USDC (6 decimals) at $1 is 1 µ$ per base unit (`1e18`).

use parabit_exec::{execute_sequential, ExecConfig, KeyMap, ParallelExecutor, Value};
use parabit_modules::lending::{
    self, borrow_rate_per_block, config_entry, per_block_rates, query_account, query_market,
    seize_amount, supply_rate_per_block, utilization, vault_address, LendingConfig, LendingKey,
    MarketParams, WAD,
};
use parabit_modules::{
    balance_of, begin_block_hooks, check_conservation, genesis_state, BankMsg, BlockTx, Call, Hook,
    LendingMsg, Tx,
};
use parabit_primitives::{Address, Amount, AssetId, TxStatus};
use proptest::prelude::*;

use crate::harness::{self, pools};
use crate::{account, runtime};

const BTC: AssetId = AssetId::BTC;
const USDC: AssetId = AssetId(7);
const BTC_PRICE: u128 = 500 * WAD;
const USDC_PRICE: u128 = WAD;

fn admin() -> Address {
    account(100)
}
fn oracle() -> Address {
    account(101)
}

/// Compound v2's cUSDC `JumpRateModelV2` (base 0, multiplier 4%/yr, jump 109%/yr, kink 80%,
/// 2,102,400 blocks a year) with a 10% reserve factor and Aave-like risk parameters.
fn usdc_params() -> MarketParams {
    MarketParams {
        base_rate_per_year: 0,
        multiplier_per_year: 40_000_000_000_000_000,
        jump_multiplier_per_year: 1_090_000_000_000_000_000,
        kink: 800_000_000_000_000_000,
        blocks_per_year: 2_102_400,
        reserve_factor: WAD / 10,
        collateral_factor: 800_000_000_000_000_000,
        liquidation_threshold: 850_000_000_000_000_000,
        liquidation_bonus: 80_000_000_000_000_000,
        close_factor: WAD / 2,
    }
}

fn btc_params() -> MarketParams {
    MarketParams {
        base_rate_per_year: 20_000_000_000_000_000,
        multiplier_per_year: 100_000_000_000_000_000,
        jump_multiplier_per_year: 2 * WAD,
        kink: 800_000_000_000_000_000,
        blocks_per_year: 2_102_400,
        reserve_factor: WAD / 5,
        collateral_factor: 750_000_000_000_000_000,
        liquidation_threshold: 800_000_000_000_000_000,
        liquidation_bonus: WAD / 10,
        close_factor: WAD / 2,
    }
}

/// A chain under test: its state, height and per-account nonces; each block begins with the
/// accrual hooks of the markets listed before it.
type Chain = harness::Chain<LendingMsg>;

fn accrual_hooks(state: &KeyMap<Value>) -> Vec<Hook> {
    let markets = lending::market_list(&mut lending::StorageReader(state)).expect("market list");
    begin_block_hooks(&markets)
}

impl Chain {
    /// Accounts 0..n with 10 BTC and 1,000,000 USDC each, lending configured, no markets.
    fn bare(n: u32) -> Chain {
        let mut balances = Vec::new();
        for i in 0..n {
            balances.push((account(i), BTC, 1_000_000_000));
            balances.push((account(i), USDC, 1_000_000_000_000));
        }
        let mut state = genesis_state(&balances);
        let (k, v) = config_entry(&LendingConfig {
            admin: admin(),
            oracle: oracle(),
        });
        state.insert(k, v);
        Chain::start(state, ()).with_hooks(accrual_hooks)
    }

    /// [`Chain::bare`] with BTC and USDC markets and prices.
    fn new(n: u32) -> Chain {
        let mut c = Chain::bare(n);
        c.ok(
            admin(),
            LendingMsg::CreateMarket {
                asset: BTC,
                params: btc_params(),
            },
        );
        c.ok(
            admin(),
            LendingMsg::CreateMarket {
                asset: USDC,
                params: usdc_params(),
            },
        );
        c.price(BTC, BTC_PRICE);
        c.price(USDC, USDC_PRICE);
        c
    }

    fn price(&mut self, asset: AssetId, price: u128) {
        self.ok(oracle(), LendingMsg::SetPrice { asset, price });
    }
}

fn supply(asset: AssetId, amount: Amount) -> LendingMsg {
    LendingMsg::Supply { asset, amount }
}
fn withdraw(asset: AssetId, amount: Amount) -> LendingMsg {
    LendingMsg::Withdraw { asset, amount }
}
fn borrow(asset: AssetId, amount: Amount) -> LendingMsg {
    LendingMsg::Borrow { asset, amount }
}
fn repay(asset: AssetId, amount: Amount) -> LendingMsg {
    LendingMsg::Repay { asset, amount }
}
fn liquidate(borrower: Address, debt: AssetId, coll: AssetId, amount: Amount) -> LendingMsg {
    LendingMsg::Liquidate {
        borrower,
        debt_asset: debt,
        collateral_asset: coll,
        amount,
    }
}

// ---------------------------------------------------------------------------------------
// Worked examples

/// Compound v2 `JumpRateModelV2.sol` (github.com/compound-finance/compound-protocol,
/// contracts/BaseJumpRateModelV2.sol): `multiplierPerBlock = multiplierPerYear * 1e18 /
/// (blocksPerYear * kink)`, `jumpMultiplierPerBlock = jumpMultiplierPerYear / blocksPerYear`.
/// The cUSDC model deployed on mainnet has exactly these per-block values: 23782343987 and
/// 518455098934.
#[test]
fn per_block_rates_match_compound_jump_rate_model_v2() {
    assert_eq!(
        per_block_rates(&usdc_params()),
        Ok((0, 23_782_343_987, 518_455_098_934))
    );
}

/// `utilizationRate = borrows * 1e18 / (cash + borrows - reserves)`, and `getBorrowRate`
/// below the kink `util * multiplierPerBlock / 1e18 + baseRatePerBlock`, above it
/// `normalRate + excessUtil * jumpMultiplierPerBlock / 1e18`.
#[test]
fn borrow_rate_follows_the_kinked_model() {
    let p = usdc_params();
    assert_eq!(utilization(100, 0, 0), Ok(0));
    assert_eq!(utilization(100, 900, 0), Ok(900_000_000_000_000_000));
    assert_eq!(utilization(150, 900, 50), Ok(900_000_000_000_000_000));
    // 50%: 0.5 * 23782343987 = 11891171993 (rounded down).
    assert_eq!(borrow_rate_per_block(&p, WAD / 2), Ok(11_891_171_993));
    // At the kink: 0.8 * 23782343987 = 19025875189.
    assert_eq!(
        borrow_rate_per_block(&p, 800_000_000_000_000_000),
        Ok(19_025_875_189)
    );
    // 90%: 19025875189 + 0.1 * 518455098934 = 19025875189 + 51845509893 = 70871385082.
    assert_eq!(
        borrow_rate_per_block(&p, 900_000_000_000_000_000),
        Ok(70_871_385_082)
    );
    // Compound `getSupplyRate`: util * borrowRate * (1 - reserveFactor):
    // 0.9 * 70871385082 * 0.9 = 0.9 * 63784246573 = 57405821915.
    assert_eq!(
        supply_rate_per_block(&p, 900_000_000_000_000_000),
        Ok(57_405_821_915)
    );
}

/// Compound `accrueInterest` over 100 blocks at 50% utilisation:
/// factor = 11891171993 × 100 = 1189117199300; borrow index 1e18 → 1000001189117199300;
/// borrows 500,000,000 → ceil(500,000,594.56) = 500,000,595: interest 595; reserves
/// ceil(59.5) = 60; suppliers 535 over 1e9 shares: supply index + 535e9.
#[test]
fn accrual_hook_matches_compound_accrue_interest() {
    let mut c = Chain::new(3);
    c.ok(account(0), supply(USDC, 1_000_000_000));
    c.ok(account(1), supply(BTC, 100_000_000));
    c.ok(account(1), borrow(USDC, 500_000_000));
    let start = lending::market(&mut lending::StorageReader(&c.state), USDC)
        .expect("market")
        .accrued_height;
    // Jump 100 blocks: the next block's hook accrues them all at once.
    c.height = start + 100;
    c.block(vec![]);
    let m = query_market(&c.state, USDC).expect("market");
    assert_eq!(m.market.borrow_index, 1_000_001_189_117_199_300);
    assert_eq!(m.total_borrows, 500_000_595);
    assert_eq!(m.reserves, 60);
    assert_eq!(m.market.supply_index, WAD + 535_000_000_000);
    assert_eq!(m.market.accrued_height, start + 100);
    // A second hook in the same block (or a re-run) accrues nothing.
    let again = {
        let hooks = vec![BlockTx::Hook(Hook::AccrueInterest { market: USDC })];
        execute_sequential(&runtime().at_height(start + 100), &hooks, &c.state)
    };
    assert!(again.writes.is_empty());
    // The borrower owes the rounded-up debt; the supplier is owed the rounded-down supply.
    let b = query_account(&c.state, &account(1)).expect("account");
    let debt = b
        .positions
        .iter()
        .find(|p| p.asset == USDC)
        .expect("usdc")
        .debt;
    assert_eq!(debt, 500_000_595);
    let s = query_account(&c.state, &account(0)).expect("account");
    assert_eq!(s.positions[0].supplied, 1_000_000_535);
}

/// Compound `liquidateCalculateSeizeTokens`: seize = repay × priceBorrowed ×
/// liquidationIncentive / priceCollateral. Repaying 100 USDC at $1 with ETH at $2,000 and an
/// 8% incentive seizes 0.054 ETH (prices per base unit: 1e12 per USDC unit, 2000 per wei).
#[test]
fn seize_amount_matches_compound() {
    let repay = 100_000_000; // 100 USDC, 6 decimals
    let seized = seize_amount(repay, 1_000_000_000_000, 2_000, 80_000_000_000_000_000);
    assert_eq!(seized, Ok(54_000_000_000_000_000)); // 0.054 ETH in wei
                                                    // Rounded down: a price ratio that does not divide.
    assert_eq!(seize_amount(10, WAD, 3 * WAD, 0), Ok(3));
}

/// A full liquidation: 1 BTC collateral at $50,000, $30,000 borrowed, BTC falls to $36,000:
/// health = 36,000 × 0.80 / 30,000 = 0.96. The liquidator repays the close factor's 50%
/// ($15,000) and seizes 15,000 / 36,000 × 1.10 BTC = floor(floor(41,666,666.67) × 1.1) =
/// 45,833,332 sats; health becomes 54,166,668 × 360 µ$ × 0.8 / $15,000 = 1.04.
#[test]
fn liquidation_worked_example() {
    let mut c = Chain::new(4);
    let (lender, borrower, liquidator) = (account(0), account(1), account(2));
    c.ok(lender, supply(USDC, 100_000_000_000));
    c.ok(borrower, supply(BTC, 100_000_000));
    c.ok(borrower, borrow(USDC, 30_000_000_000));
    c.fails(
        liquidator,
        liquidate(borrower, USDC, BTC, 1_000),
        "account is not liquidatable: health factor 1.33 >= 1.00",
    );
    c.price(BTC, 360 * WAD);
    let h = query_account(&c.state, &borrower).expect("health");
    // Interest of a few blocks makes the debt a little above $30,000.
    assert_eq!(h.health_factor / (WAD / 100), 95);
    let debt = h
        .positions
        .iter()
        .find(|p| p.asset == USDC)
        .expect("debt")
        .debt;
    // Repaying the whole debt is above the close factor (the limit includes the next
    // block's interest).
    let status = c.send(liquidator, liquidate(borrower, USDC, BTC, debt));
    match status {
        TxStatus::Failed(why) => assert!(
            why.starts_with(&format!(
                "repay {debt} exceeds the close factor limit 150000"
            )),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    let usdc_before = balance_of(&c.state, &liquidator, USDC);
    c.ok(liquidator, liquidate(borrower, USDC, BTC, 15_000_000_000));
    assert_eq!(
        balance_of(&c.state, &liquidator, USDC),
        usdc_before - 15_000_000_000
    );
    // Supply index of BTC is still 1 (no BTC borrows), so shares == sats.
    assert_eq!(c.num(LendingKey::Shares(liquidator, BTC)), 45_833_332);
    assert_eq!(
        c.num(LendingKey::Shares(borrower, BTC)),
        100_000_000 - 45_833_332
    );
    let after = query_account(&c.state, &borrower).expect("health");
    assert!(after.health_factor > h.health_factor);
    assert_eq!(after.health_factor / (WAD / 100), 103);
    // The liquidator can withdraw the seized BTC.
    c.ok(liquidator, withdraw(BTC, 45_833_332));
    assert_eq!(
        balance_of(&c.state, &liquidator, BTC),
        1_000_000_000 + 45_833_332
    );
}

#[test]
fn supply_withdraw_borrow_repay_round_trip() {
    let mut c = Chain::new(3);
    c.ok(account(0), supply(USDC, 1_000_000));
    c.ok(account(1), supply(BTC, 10_000));
    // 10,000 sats × 500 µ$ = 5,000,000 µ$; borrow limit 75%: 3,750,000 µ$ of USDC.
    c.ok(account(1), borrow(USDC, 3_000_000 / 10));
    c.ok(account(1), repay(USDC, u128::MAX));
    assert_eq!(c.num(LendingKey::ScaledDebt(account(1), USDC)), 0);
    assert_eq!(c.num(LendingKey::TotalScaledDebt(USDC)), 0);
    c.ok(account(1), withdraw(BTC, 10_000));
    assert_eq!(c.num(LendingKey::Shares(account(1), BTC)), 0);
    assert_eq!(balance_of(&c.state, &account(1), BTC), 1_000_000_000);
    // The borrower paid interest: their USDC went down, the vault's stayed with the market.
    assert!(balance_of(&c.state, &account(1), USDC) < 1_000_000_000_000);
    assert_eq!(
        balance_of(&c.state, &vault_address(), USDC),
        c.num(LendingKey::Cash(USDC))
    );
    assert_eq!(check_conservation(&c.state), Ok(()));
}

/// Every rounding favours the protocol: shares minted and debt repaid round down, shares
/// burned and debt created round up.
#[test]
fn roundings_favour_the_protocol() {
    let mut c = Chain::new(3);
    c.ok(account(0), supply(USDC, 10_000_000_000));
    c.ok(account(1), supply(BTC, 100_000_000));
    c.ok(account(1), borrow(USDC, 9_000_000_000));
    // Let interest raise both indices well above 1.
    c.height += 2_000_000;
    c.block(vec![]);
    let m = query_market(&c.state, USDC).expect("market");
    assert!(m.market.supply_index > WAD && m.market.borrow_index > WAD);
    // Supplying 1 unit is worth less than a share: refused rather than minting for free.
    c.fails(
        account(2),
        supply(USDC, 1),
        "amount 1 is too small for the market's index",
    );
    // Withdrawing 1 unit burns a whole share (worth more than 1 unit).
    let before = c.num(LendingKey::Shares(account(0), USDC));
    c.ok(account(0), withdraw(USDC, 1));
    assert_eq!(c.num(LendingKey::Shares(account(0), USDC)), before - 1);
    // Borrowing 1 unit creates a whole unit of scaled debt (worth more than 1).
    let before = c.num(LendingKey::ScaledDebt(account(1), USDC));
    c.ok(account(1), borrow(USDC, 1));
    assert_eq!(c.num(LendingKey::ScaledDebt(account(1), USDC)), before + 1);
    // Repaying 1 unit is worth less than a unit of scaled debt: refused, not rounded up.
    c.fails(
        account(1),
        repay(USDC, 1),
        "amount 1 is too small for the market's index",
    );
    let m = query_market(&c.state, USDC).expect("market");
    let a = query_account(&c.state, &account(1)).expect("account");
    let debt = a.positions.iter().find(|p| p.asset == USDC).expect("debt");
    assert_eq!(
        debt.debt,
        lending::mul_div(debt.scaled_debt, m.market.borrow_index, WAD, true).expect("debt")
    );
}

// ---------------------------------------------------------------------------------------
// Failure modes

#[test]
fn create_market_failures() {
    let mut c = Chain::bare(2);
    let p = usdc_params();
    c.fails(
        account(0),
        LendingMsg::CreateMarket {
            asset: USDC,
            params: p,
        },
        &format!("unauthorized: {} is not the lending admin", account(0)),
    );
    c.fails(
        admin(),
        LendingMsg::CreateMarket {
            asset: AssetId(99),
            params: p,
        },
        "unknown asset 99",
    );
    let bad = |f: &dyn Fn(&mut MarketParams)| {
        let mut q = usdc_params();
        f(&mut q);
        q
    };
    for (params, why) in [
        (bad(&|q| q.kink = 0), "kink must be in (0, 1]"),
        (
            bad(&|q| q.blocks_per_year = 0),
            "blocks_per_year must be positive",
        ),
        (
            bad(&|q| q.reserve_factor = WAD + 1),
            "reserve_factor must be at most 1",
        ),
        (
            bad(&|q| q.close_factor = 0),
            "close_factor must be in (0, 1]",
        ),
        (
            bad(&|q| q.collateral_factor = WAD * 9 / 10),
            "collateral_factor must not exceed liquidation_threshold",
        ),
        (
            bad(&|q| q.liquidation_bonus = WAD * 2 / 10),
            "liquidation_threshold x (1 + liquidation_bonus) must be below 1",
        ),
    ] {
        c.fails(
            admin(),
            LendingMsg::CreateMarket {
                asset: USDC,
                params,
            },
            &format!("invalid market parameters: {why}"),
        );
    }
    c.ok(
        admin(),
        LendingMsg::CreateMarket {
            asset: USDC,
            params: p,
        },
    );
    c.fails(
        admin(),
        LendingMsg::CreateMarket {
            asset: USDC,
            params: p,
        },
        "market 7 already exists",
    );
    // Without a config nobody can create markets.
    let mut unconfigured = Chain::bare(1);
    unconfigured.state.remove(&LendingKey::Config.key());
    unconfigured.fails(
        admin(),
        LendingMsg::CreateMarket {
            asset: USDC,
            params: p,
        },
        "lending is not configured",
    );
}

#[test]
fn set_price_failures() {
    let mut c = Chain::bare(1);
    c.fails(
        admin(),
        LendingMsg::SetPrice {
            asset: BTC,
            price: 1,
        },
        &format!("unauthorized: {} is not the lending oracle", admin()),
    );
    c.fails(
        oracle(),
        LendingMsg::SetPrice {
            asset: BTC,
            price: 0,
        },
        "amount must be positive",
    );
}

#[test]
fn supply_and_withdraw_failures() {
    let mut c = Chain::new(3);
    c.fails(account(0), supply(USDC, 0), "amount must be positive");
    c.fails(account(0), supply(AssetId(99), 5), "no market for asset 99");
    c.fails(
        account(0),
        supply(USDC, 1_000_000_000_001),
        "insufficient balance: have 1000000000000, need 1000000000001",
    );
    c.fails(account(0), withdraw(USDC, 0), "amount must be positive");
    c.fails(
        account(0),
        withdraw(USDC, 5),
        "insufficient supply: have 0 shares, need 5",
    );
    c.ok(account(0), supply(USDC, 1_000));
    c.ok(account(1), supply(BTC, 100_000));
    c.ok(account(1), borrow(USDC, 900));
    c.fails(
        account(0),
        withdraw(USDC, 1_000),
        "insufficient cash in market 7: have 100, need 1000",
    );
    // Collateral backing a debt cannot be withdrawn: 100,000 sats × 500 µ$ × 0.75 covers
    // 900 µ$ many times, but withdrawing all but 2 sats leaves 750 µ$ < 900 µ$: 0.83.
    c.fails(
        account(1),
        withdraw(BTC, 99_998),
        "insufficient collateral: health factor 0.83 < 1.00",
    );
    c.ok(account(1), withdraw(BTC, 99_997));
}

#[test]
fn borrow_and_repay_failures() {
    let mut c = Chain::new(3);
    c.ok(account(0), supply(USDC, 100_000_000_000));
    c.fails(account(1), borrow(USDC, 0), "amount must be positive");
    c.fails(account(1), borrow(AssetId(99), 1), "no market for asset 99");
    c.fails(
        account(1),
        borrow(USDC, 1),
        "insufficient collateral: health factor 0.00 < 1.00",
    );
    // 1 BTC = $50,000 at 75%: a $37,500 limit; $40,322.580645 gives 0.93.
    c.ok(account(1), supply(BTC, 100_000_000));
    c.fails(
        account(1),
        borrow(USDC, 40_322_580_645),
        "insufficient collateral: health factor 0.93 < 1.00",
    );
    c.fails(
        account(1),
        borrow(USDC, 200_000_000_000),
        "insufficient cash in market 7: have 100000000000, need 200000000000",
    );
    c.ok(account(1), borrow(USDC, 37_000_000_000));
    c.fails(account(2), repay(USDC, 5), "no debt in market 7");
    c.fails(account(1), repay(USDC, 0), "amount must be positive");
    // A debt in an asset without a price cannot grow.
    let mut d = Chain::bare(3);
    d.ok(
        admin(),
        LendingMsg::CreateMarket {
            asset: USDC,
            params: usdc_params(),
        },
    );
    d.ok(account(0), supply(USDC, 1_000));
    d.fails(account(0), borrow(USDC, 10), "no price for asset 7");
}

#[test]
fn liquidation_failures() {
    let mut c = Chain::new(4);
    let (borrower, liq) = (account(1), account(2));
    c.ok(account(0), supply(USDC, 100_000_000_000));
    c.ok(borrower, supply(BTC, 100_000_000));
    c.ok(borrower, borrow(USDC, 30_000_000_000));
    c.fails(
        borrower,
        liquidate(borrower, USDC, BTC, 1),
        "cannot liquidate oneself",
    );
    c.fails(
        liq,
        liquidate(borrower, USDC, BTC, 0),
        "amount must be positive",
    );
    c.fails(
        liq,
        liquidate(borrower, USDC, AssetId(99), 1),
        "no market for asset 99",
    );
    c.price(BTC, 360 * WAD);
    c.fails(liq, liquidate(borrower, BTC, BTC, 1), "no debt in market 0");
    c.fails(
        liq,
        liquidate(borrower, USDC, USDC, 1_000_000),
        "insufficient collateral to seize: need 1079999 shares, borrower has 0",
    );
    c.fails(
        liq,
        liquidate(borrower, USDC, BTC, 1),
        "amount 1 is too small for the market's index",
    );
    // A liquidator without the funds.
    assert_eq!(c.next_nonce(&account(3)), 0);
    let drain = c.call_tx(
        account(3),
        0,
        Call::Bank(BankMsg::Transfer {
            to: account(0),
            asset: USDC,
            amount: 999_000_000_000,
        }),
    );
    assert!(c.receipts(vec![drain])[0].status.is_success());
    c.fails(
        account(3),
        liquidate(borrower, USDC, BTC, 15_000_000_000),
        "insufficient balance: have 1000000000, need 15000000000",
    );
}

// ---------------------------------------------------------------------------------------
// Properties

const USERS: u32 = 5;

/// Checks the module's invariants over a whole state: bank conservation, vault == cash,
/// shares and scaled debts sum to their totals, and solvency
/// (`Σ supplied + reserves <= cash + Σ debt`).
fn check_invariants(state: &KeyMap<Value>) -> Result<(), String> {
    check_conservation(state).map_err(|e| e.to_string())?;
    let markets =
        lending::market_list(&mut lending::StorageReader(state)).map_err(|e| e.to_string())?;
    let num = |k: LendingKey| state.get(&k.key()).map_or(0, Value::as_num);
    for asset in markets {
        let m = query_market(state, asset).map_err(|e| e.to_string())?;
        let cash = num(LendingKey::Cash(asset));
        if balance_of(state, &vault_address(), asset) != cash {
            return Err(format!("market {asset}: vault balance != cash {cash}"));
        }
        let (mut shares, mut scaled, mut supplied, mut debt) = (0u128, 0u128, 0u128, 0u128);
        for (k, v) in state {
            match LendingKey::from_bytes(k.as_bytes()) {
                Some(LendingKey::Shares(_, a)) if a == asset => {
                    shares += v.as_num();
                    supplied += lending::supply_of(v.as_num(), m.market.supply_index)
                        .map_err(|e| e.to_string())?;
                }
                Some(LendingKey::ScaledDebt(_, a)) if a == asset => {
                    scaled += v.as_num();
                    debt += lending::debt_of(v.as_num(), m.market.borrow_index)
                        .map_err(|e| e.to_string())?;
                }
                _ => {}
            }
        }
        if shares != num(LendingKey::TotalShares(asset)) {
            return Err(format!("market {asset}: shares sum {shares} != total"));
        }
        if scaled != num(LendingKey::TotalScaledDebt(asset)) {
            return Err(format!(
                "market {asset}: scaled debts sum {scaled} != total"
            ));
        }
        let reserves = num(LendingKey::Reserves(asset));
        if supplied + reserves > cash + debt {
            return Err(format!(
                "market {asset}: insolvent: supplied {supplied} + reserves {reserves} > cash {cash} + debt {debt}"
            ));
        }
    }
    Ok(())
}

/// (kind, user, other user, asset, amount, extra)
type LOp = (u8, u8, u8, bool, u32, u8);

fn asset_of(b: bool) -> AssetId {
    if b {
        BTC
    } else {
        USDC
    }
}

/// BTC amounts in thousands of sats, USDC amounts in whole dollars' worth of units / 10.
fn amount_of(asset: AssetId, x: u32) -> Amount {
    if asset == BTC {
        u128::from(x % 200_000) * 100
    } else {
        u128::from(x % 200_000) * 100_000
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random sequences of supply/withdraw/borrow/repay/price changes/liquidations/accruals/
    /// transfers by random users keep every invariant; a successful borrow or withdrawal
    /// leaves the sender's borrow health (hence health factor) >= 1; a liquidation happens
    /// only below 1, and when the health factor `h` before it is at least
    /// `(1 + bonus) × lt` of the seized market (by a 1% margin for roundings) it strictly
    /// improves.
    #[test]
    fn random_sequences_keep_the_invariants(ops in prop::collection::vec(any::<LOp>(), 1..60)) {
        let mut c = leveraged();
        for (kind, u, v, a, x, extra) in ops {
            let user = account(u32::from(u) % USERS);
            let other = account(u32::from(v) % USERS);
            let asset = asset_of(a);
            let amount = amount_of(asset, x);
            match kind % 9 {
                0 | 1 => { c.send(user, supply(asset, amount)); }
                2 => {
                    if c.send(user, withdraw(asset, amount)) == TxStatus::Success {
                        let h = query_account(&c.state, &user).expect("health");
                        prop_assert!(h.borrow_health >= WAD, "withdraw left {:?}", h);
                    }
                }
                3 | 4 => {
                    if c.send(user, borrow(asset, amount / 4)) == TxStatus::Success {
                        let h = query_account(&c.state, &user).expect("health");
                        prop_assert!(h.borrow_health >= WAD, "borrow left {:?}", h);
                        prop_assert!(h.health_factor >= WAD);
                    }
                }
                5 => { c.send(user, repay(asset, amount)); }
                6 => {
                    let base = if asset == BTC { BTC_PRICE } else { USDC_PRICE };
                    // 40% to 160% of the starting price.
                    let price = base / 100 * (40 + u128::from(extra) * 120 / 255);
                    c.price(asset, price);
                }
                7 => {
                    // Run at the previous block's height: the hooks accrue nothing, so the
                    // health measured here is the one the liquidation sees.
                    c.height -= 1;
                    // Mostly the leveraged accounts' USDC debt against their BTC.
                    let (debt_asset, asset) = if extra % 4 != 0 { (USDC, BTC) } else { (asset_of(!a), asset) };
                    let other = if v % 4 != 0 { account(u32::from(v) % 3) } else { other };
                    let before = query_account(&c.state, &other).expect("health");
                    let debt = before.positions.iter().find(|p| p.asset == debt_asset).map_or(0, |p| p.debt);
                    let repay_amount = debt / 2 * (u128::from(extra) + 1) / 256;
                    let status = c.send(user, liquidate(other, debt_asset, asset, repay_amount));
                    if status == TxStatus::Success {
                        prop_assert!(before.health_factor < WAD);
                        let after = query_account(&c.state, &other).expect("health");
                        let p = if asset == BTC { btc_params() } else { usdc_params() };
                        let bar = lending::mul_div(p.liquidation_threshold, WAD + p.liquidation_bonus, WAD, true).expect("bar");
                        if before.health_factor >= bar + bar / 100 {
                            prop_assert!(after.health_factor > before.health_factor,
                                "liquidation lowered health: {:?} -> {:?}", before, after);
                        }
                    }
                }
                _ => {
                    // Let interest run for up to ~255k blocks.
                    c.height += u64::from(extra) * 1_000;
                    c.block(vec![]);
                }
            }
            if let Err(e) = check_invariants(&c.state) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

/// Users 3 and 4 lend both assets; users 0 to 2 hold BTC collateral ($25,000 each) and borrow
/// $17,000, $16,000 and $15,000 of USDC (health factors 1.17 to 1.33): a BTC price fall
/// makes them liquidatable.
fn leveraged() -> Chain {
    let mut c = Chain::new(USERS);
    for i in 3..USERS {
        c.ok(account(i), supply(USDC, 100_000_000_000));
        c.ok(account(i), supply(BTC, 50_000_000));
    }
    for i in 0..3 {
        c.ok(account(i), supply(BTC, 50_000_000));
        c.ok(
            account(i),
            borrow(USDC, 17_000_000_000 - u128::from(i) * 1_000_000_000),
        );
    }
    c
}

/// A state with both markets, suppliers of both assets and some borrowers.
fn seeded() -> Chain {
    let mut c = Chain::new(USERS + 1);
    for i in 0..USERS {
        c.ok(account(i), supply(USDC, 50_000_000_000));
        c.ok(account(i), supply(BTC, 50_000_000));
    }
    for i in 0..3 {
        c.ok(
            account(i),
            borrow(USDC, 15_000_000_000 + u128::from(i) * 1_000_000_000),
        );
        c.ok(account(i), borrow(BTC, 1_000_000));
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random blocks of lending transactions and bank transfers, after the accrual hooks,
    /// give identical receipts and writes sequentially and in parallel on 1, 2 and 4 threads,
    /// and keep the invariants.
    #[test]
    fn lending_blocks_parallel_equals_sequential(
        ops in prop::collection::vec(any::<LOp>(), 1..80),
        skip in 1u64..5_000,
    ) {
        let mut c = seeded();
        let base = c.state.clone();
        let height = c.height + skip;
        let mut txs = Vec::new();
        for (kind, u, v, a, x, extra) in ops {
            let user = account(u32::from(u) % (USERS + 1));
            let other = account(u32::from(v) % (USERS + 1));
            let asset = asset_of(a);
            let amount = amount_of(asset, x);
            let msg = match kind % 10 {
                0 | 1 => supply(asset, amount),
                2 => withdraw(asset, amount),
                3 => borrow(asset, amount / 8),
                4 => repay(asset, amount),
                5 => {
                    let base = if asset == BTC { BTC_PRICE } else { USDC_PRICE };
                    let tx = c.tx(oracle(), LendingMsg::SetPrice {
                        asset,
                        price: base / 100 * (40 + u128::from(extra) * 120 / 255),
                    });
                    txs.push(tx);
                    continue;
                }
                6 => liquidate(other, asset_of(!a), asset, amount / 16),
                _ => {
                    let call = Call::Bank(BankMsg::Transfer { to: other, asset, amount: amount / 2 + 1 });
                    txs.push(c.call_tx(user, u128::from(extra % 3), call));
                    continue;
                }
            };
            txs.push(c.tx(user, msg));
        }
        let mut block: Vec<BlockTx> = accrual_hooks(&base).into_iter().map(BlockTx::Hook).collect();
        block.extend(txs.into_iter().map(BlockTx::User));
        let vm = runtime().at_height(height);
        let seq = execute_sequential(&vm, &block, &base);
        for pool in pools() {
            for config in [
                ExecConfig { min_parallel_txns: 0, ..ExecConfig::default() },
                ExecConfig { min_parallel_txns: 0, fallback: false, ..ExecConfig::default() },
            ] {
                let par = ParallelExecutor::with_config(pool, config).execute_block(&vm, &block, &base);
                prop_assert_eq!(&par.outputs, &seq.outputs);
                prop_assert_eq!(&par.writes, &seq.writes);
            }
        }
        for r in &seq.outputs {
            prop_assert!(!matches!(r.status, TxStatus::Panicked(_)), "{:?}", r);
        }
        let mut after = base.clone();
        seq.writes.apply_to(&mut after);
        if let Err(e) = check_invariants(&after) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The parallelism rules at work: 400 users supplying, borrowing, repaying and withdrawing on
/// the same two markets in one block touch the market totals only by deltas and `try_sub`s,
/// so the engine runs the block in parallel without falling back and with next to no
/// re-executions. The hooks here find the markets accrued already (same height) and write
/// nothing. When they do accrue, every lending transaction that ran before them re-executes
/// (they rewrite the indices all of them read): a start-up burst the engine may judge a
/// chain and finish sequentially; the result is the same either way.
#[test]
fn one_market_many_users_run_without_conflicts() {
    const N: u32 = 400;
    let mut c = Chain::new(N);
    let setup: Vec<Tx> = (0..N)
        .flat_map(|i| {
            let u = account(i);
            [
                (u, supply(BTC, 10_000_000)),
                (u, supply(USDC, 1_000_000_000)),
            ]
        })
        .map(|(u, m)| c.tx(u, m))
        .collect();
    assert!(c.block(setup).iter().all(TxStatus::is_success));
    let debts: Vec<Tx> = (0..N)
        .map(|i| c.tx(account(i), borrow(USDC, 100_000_000)))
        .collect();
    assert!(c.block(debts).iter().all(TxStatus::is_success));

    let users: Vec<Tx> = (0..N)
        .map(|i| {
            let msg = match i % 4 {
                0 => supply(USDC, 5_000_000),
                1 => borrow(USDC, 7_000_000),
                2 => repay(USDC, 3_000_000),
                _ => withdraw(BTC, 1_000_000),
            };
            c.tx(account(i), msg)
        })
        .collect();
    let mut block: Vec<BlockTx> = accrual_hooks(&c.state)
        .into_iter()
        .map(BlockTx::Hook)
        .collect();
    block.extend(users.into_iter().map(BlockTx::User));
    let vm = runtime().at_height(c.height + 10);
    let seq = execute_sequential(&vm, &block, &c.state);
    assert!(seq.outputs.iter().all(|r| r.status.is_success()));
    for pool in &pools()[1..] {
        let par = ParallelExecutor::new(pool).execute_block(&vm, &block, &c.state);
        assert_eq!(par, seq);
    }
    let vm = runtime().at_height(c.height - 1);
    let seq = execute_sequential(&vm, &block, &c.state);
    assert!(seq.outputs.iter().all(|r| r.status.is_success()));
    for pool in &pools()[1..] {
        let (par, stats) =
            ParallelExecutor::new(pool).execute_block_with_stats(&vm, &block, &c.state);
        assert_eq!(par, seq);
        assert_eq!(stats.sequential_from, None, "{stats:?}");
        assert!(stats.aborts <= u64::from(N) / 8, "{stats:?}");
    }
}

#[test]
fn repay_without_the_funds_fails_with_the_bank_error() {
    let mut c = Chain::new(3);
    c.ok(account(0), supply(USDC, 100_000_000_000));
    c.ok(account(1), supply(BTC, 100_000_000));
    c.ok(account(1), borrow(USDC, 10_000_000_000));
    assert_eq!(c.next_nonce(&account(1)), 2);
    let tx = c.call_tx(
        account(1),
        0,
        Call::Bank(BankMsg::Transfer {
            to: account(2),
            asset: USDC,
            amount: 1_010_000_000_000 - 5,
        }),
    );
    assert!(c.receipts(vec![tx])[0].status.is_success());
    c.fails(
        account(1),
        repay(USDC, 10_000_000_000),
        "insufficient balance: have 5, need 10000000000",
    );
}

#[test]
fn queries_and_keys() {
    let mut c = Chain::new(2);
    c.ok(account(0), supply(USDC, 1_000_000));
    c.ok(account(1), supply(BTC, 10_000));
    c.ok(account(1), borrow(USDC, 500_000));
    let all = lending::query_markets(&c.state).expect("markets");
    assert_eq!(
        all.iter().map(|m| m.asset).collect::<Vec<_>>(),
        vec![BTC, USDC]
    );
    let usdc = &all[1];
    assert_eq!(usdc.cash, 500_000);
    assert_eq!(usdc.total_shares, 1_000_000);
    assert_eq!(usdc.price, USDC_PRICE);
    assert!(usdc.total_borrows >= 500_000);
    assert!(usdc.borrow_rate_per_block > usdc.supply_rate_per_block);
    let h = query_account(&c.state, &account(1)).expect("account");
    // 10,000 sats × 500 µ$ = 5,000,000 µ$: × 0.8 / 500,000 = 8 (no block has accrued
    // interest on the debt yet).
    assert_eq!(h.collateral_value, 5_000_000);
    assert_eq!(h.health_factor, 8 * WAD);
    assert_eq!(h.borrow_health, 7_500_000_000_000_000_000);
    assert!(
        query_account(&c.state, &account(0))
            .expect("account")
            .health_factor
            == u128::MAX
    );
    assert_eq!(
        query_market(&c.state, AssetId(99)).map(|_| ()),
        Err(lending::LendingError::NoMarket(AssetId(99)))
    );
    for key in [
        LendingKey::Config,
        LendingKey::Market(USDC),
        LendingKey::MarketList,
        LendingKey::Cash(USDC),
        LendingKey::TotalShares(BTC),
        LendingKey::TotalScaledDebt(USDC),
        LendingKey::Reserves(USDC),
        LendingKey::Price(BTC),
        LendingKey::Shares(account(1), BTC),
        LendingKey::ScaledDebt(account(1), USDC),
        LendingKey::Entered(account(0)),
    ] {
        assert_eq!(LendingKey::from_bytes(key.key().as_bytes()), Some(key));
    }
    assert_eq!(lending::Wad(930_000_000_000_000_000).to_string(), "0.93");
    assert_eq!(lending::Wad(u128::MAX).to_string(), "inf");
    assert_eq!(
        lending::mul_div(u128::MAX, u128::MAX, u128::MAX, false),
        Ok(u128::MAX)
    );
    assert!(lending::mul_div(u128::MAX, 3, 2, true).is_err());
    assert_eq!(
        lending::mul_div(1 << 100, 1 << 100, 1 << 120, true),
        Ok(1 << 80)
    );
    assert_eq!(
        lending::mul_div((1 << 100) + 1, 1 << 100, 1 << 120, true),
        Ok((1 << 80) + 1)
    );
}
