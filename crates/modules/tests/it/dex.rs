//! The dex through the runtime: Uniswap V2 reference figures, liquidity, instant swaps and
//! routes, batch auctions, every failure message, and properties (conservation, `k`, one
//! price per batch, parallel == sequential with hooks).

use std::collections::BTreeMap;

use parabit_exec::{execute_sequential, num_of, ExecConfig, KeyMap, ParallelExecutor, Value};
use parabit_modules::dex::{
    clear_batch, get_amount_in, get_amount_out, isqrt_product, lp_asset_id, mul_wide, quote_batch,
    quote_exact_in, quote_exact_out, reserves, vault_address, BatchOrder, DexKey, A_TO_B, B_TO_A,
    MAX_RESERVE, MINIMUM_LIQUIDITY,
};
use parabit_modules::{
    balance_of, block_txs, check_conservation, genesis_state, total_supply, BankMsg, BlockTx, Call,
    DexMsg, Hook, PoolId, Tx,
};
use parabit_primitives::{Amount, AssetId, Receipt, TxStatus};
use proptest::prelude::*;

use crate::harness::pools;
use crate::{account, runtime, CHAIN};

const X: AssetId = AssetId(7);
const Y: AssetId = AssetId(8);
const Z: AssetId = AssetId(9);
const E18: u128 = 1_000_000_000_000_000_000;
const FAR: u64 = u64::MAX;

fn dex_tx(from: u32, nonce: u64, msg: DexMsg) -> Tx {
    Tx {
        chain_id: CHAIN,
        sender: account(from),
        nonce,
        fee: 0,
        call: Call::Dex(msg),
    }
}

fn add(x: AssetId, y: AssetId, dx: Amount, dy: Amount) -> DexMsg {
    DexMsg::AddLiquidity {
        asset_x: x,
        asset_y: y,
        amount_x_desired: dx,
        amount_y_desired: dy,
        amount_x_min: 0,
        amount_y_min: 0,
        deadline: FAR,
    }
}

fn swap_in(path: &[AssetId], amount_in: Amount, min_out: Amount) -> DexMsg {
    DexMsg::SwapExactIn {
        path: path.to_vec(),
        amount_in,
        min_out,
        deadline: FAR,
    }
}

fn batch(asset_in: AssetId, asset_out: AssetId, amount_in: Amount, min_out: Amount) -> DexMsg {
    DexMsg::BatchSwap {
        asset_in,
        asset_out,
        amount_in,
        min_out,
    }
}

/// Accounts 0..n holding `amount` of X, Y and Z (and 1 BTC sat so BTC exists).
fn rich(n: u32, amount: Amount) -> KeyMap<Value> {
    let mut balances = Vec::new();
    for i in 0..n {
        for asset in [X, Y, Z] {
            balances.push((account(i), asset, amount));
        }
    }
    genesis_state(&balances)
}

/// Runs user transactions as one block (with its end-block hooks) at `height`.
fn block(state: &KeyMap<Value>, txs: Vec<Tx>, height: u64) -> (Vec<Receipt>, KeyMap<Value>) {
    let txs = block_txs(Vec::new(), txs);
    let out = execute_sequential(&runtime().at_height(height), &txs, state);
    let mut after = state.clone();
    out.writes.apply_to(&mut after);
    check_conservation(&after).expect("value conserved");
    (out.outputs, after)
}

fn failed(r: &Receipt) -> &str {
    match &r.status {
        TxStatus::Failed(m) => m,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn pool(x: AssetId, y: AssetId) -> PoolId {
    PoolId::new(x, y).expect("pool")
}

fn res(state: &KeyMap<Value>, x: AssetId, y: AssetId) -> (Amount, Amount) {
    reserves(state, &pool(x, y)).expect("reserves")
}

/// A state with pool X/Y at reserves (rx, ry) provided by account 0.
fn with_pool(rx: Amount, ry: Amount) -> KeyMap<Value> {
    let base = rich(6, 1_000_000 * E18);
    let (r, after) = block(&base, vec![dex_tx(0, 0, add(X, Y, rx, ry))], 1);
    assert!(r[0].status.is_success(), "{r:?}");
    after
}

// ---------------------------------------------------------------------------------------
// Reference figures.
// ---------------------------------------------------------------------------------------

/// Uniswap V2 core, `test/UniswapV2Pair.spec.ts`, `swapTestCases`: `[swapAmount,
/// token0Amount, token1Amount, expectedOutputAmount]` in units of 1e18 (the expected output
/// is the most the pair pays for the input, i.e. `UniswapV2Library.getAmountOut`).
#[test]
fn get_amount_out_matches_uniswap_v2_pair_swap_test_cases() {
    let cases: [(u128, u128, u128, u128); 7] = [
        (1, 5, 10, 1_662_497_915_624_478_906),
        (1, 10, 5, 453_305_446_940_074_565),
        (2, 5, 10, 2_851_015_155_847_869_602),
        (2, 10, 5, 831_248_957_812_239_453),
        (1, 10, 10, 906_610_893_880_149_131),
        (1, 100, 100, 987_158_034_397_061_298),
        (1, 1000, 1000, 996_006_981_039_903_216),
    ];
    for (swap, r0, r1, expected) in cases {
        assert_eq!(
            get_amount_out(swap * E18, r0 * E18, r1 * E18),
            Ok(expected),
            "{swap} {r0} {r1}"
        );
    }
}

/// Uniswap V2 periphery, `test/UniswapV2Router01.spec.ts`: `getAmountOut(2, 100, 100) == 1`
/// and `getAmountIn(1, 100, 100) == 2`; and `UniswapV2Library.getAmountIn`'s formula
/// `reserveIn·amountOut·1000 / ((reserveOut − amountOut)·997) + 1` on larger figures.
#[test]
fn get_amount_in_matches_uniswap_v2_library() {
    assert_eq!(get_amount_out(2, 100, 100), Ok(1));
    assert_eq!(get_amount_in(1, 100, 100), Ok(2));
    // 5e18·1e18·1000 / (9e18·997) = 557227237267357628.4… → + 1.
    assert_eq!(
        get_amount_in(E18, 5 * E18, 10 * E18),
        Ok(557_227_237_267_357_629)
    );
    // Rounds up even when exact: 1000·997·1 / ((1000 + 1 − 1)·997) = 1 → 2.
    assert_eq!(get_amount_in(1, 997, 1001), Ok(2));
    // getAmountIn then getAmountOut gives at least the wanted output (pool's favour).
    for (out, r_in, r_out) in [
        (1u128, 100u128, 100u128),
        (E18, 5 * E18, 10 * E18),
        (7, 13, 1000),
    ] {
        let need = get_amount_in(out, r_in, r_out).expect("in");
        assert!(get_amount_out(need, r_in, r_out).expect("out") >= out);
        assert!(get_amount_out(need - 1, r_in, r_out).unwrap_or(0) < out || need == 1);
    }
}

/// Uniswap V2 core, `test/UniswapV2Pair.spec.ts` `mint`: 1e18 and 4e18 mint a supply of
/// 2e18 of which MINIMUM_LIQUIDITY = 1000 is locked.
#[test]
fn first_mint_locks_minimum_liquidity() {
    let base = rich(2, 100 * E18);
    let (r, after) = block(&base, vec![dex_tx(0, 0, add(X, Y, E18, 4 * E18))], 1);
    assert!(r[0].status.is_success(), "{r:?}");
    let p = pool(X, Y);
    let lp = lp_asset_id(&p);
    assert_eq!(total_supply(&after, lp), 2 * E18);
    assert_eq!(balance_of(&after, &account(0), lp), 2 * E18 - 1000);
    assert_eq!(
        balance_of(&after, &vault_address(&p), lp),
        MINIMUM_LIQUIDITY
    );
    assert_eq!(res(&after, X, Y), (E18, 4 * E18));
    assert_eq!(balance_of(&after, &vault_address(&p), X), E18);
    assert_eq!(balance_of(&after, &account(0), Y), 96 * E18);
    assert_eq!(isqrt_product(E18, 4 * E18), 2 * E18);
}

#[test]
fn later_mints_follow_the_router_rule_and_round_down() {
    let state = with_pool(1_000_000, 4_000_000); // supply 2,000,000
    let lp = lp_asset_id(&pool(X, Y));
    // Desired (X 1,000, Y 10,000): Y optimal = 4,000 ≤ 10,000 → deposit (1,000, 4,000),
    // mint min(1000·2e6/1e6, 4000·2e6/4e6) = 2,000.
    let (r, after) = block(&state, vec![dex_tx(1, 0, add(X, Y, 1_000, 10_000))], 2);
    assert!(r[0].status.is_success(), "{r:?}");
    assert_eq!(balance_of(&after, &account(1), lp), 2_000);
    assert_eq!(res(&after, X, Y), (1_001_000, 4_004_000));
    // Asset order reversed, Y-limited: desired (Y 4,001, X 5,000): X optimal for 4,001 Y =
    // floor(4001·1,001,000/4,004,000) = 1,000 → deposit (1,000 X, 4,001 Y); shares =
    // min(1000·2,002,000/1,001,000, 4001·2,002,000/4,004,000) = min(2000, 2000.5) = 2,000.
    let (r, after2) = block(&after, vec![dex_tx(2, 0, add(Y, X, 4_001, 5_000))], 3);
    assert!(r[0].status.is_success(), "{r:?}");
    assert_eq!(balance_of(&after2, &account(2), lp), 2_000);
    assert_eq!(res(&after2, X, Y), (1_002_000, 4_008_001));
}

#[test]
fn remove_liquidity_pays_pro_rata_rounded_down() {
    let state = with_pool(1_000_000, 3_000_001); // supply floor(sqrt(3,000,001e6)) = 1,732,051
    let lp = lp_asset_id(&pool(X, Y));
    let supply = total_supply(&state, lp);
    assert_eq!(supply, 1_732_051);
    let burn = 100_000;
    let msg = DexMsg::RemoveLiquidity {
        asset_x: Y,
        asset_y: X,
        liquidity: burn,
        amount_x_min: 0,
        amount_y_min: 0,
        deadline: FAR,
    };
    let x0 = balance_of(&state, &account(0), X);
    let y0 = balance_of(&state, &account(0), Y);
    let (r, after) = block(&state, vec![dex_tx(0, 1, msg)], 2);
    assert!(r[0].status.is_success(), "{r:?}");
    let ex = burn * 1_000_000 / supply;
    let ey = burn * 3_000_001 / supply;
    assert_eq!(balance_of(&after, &account(0), X), x0 + ex);
    assert_eq!(balance_of(&after, &account(0), Y), y0 + ey);
    assert_eq!(res(&after, X, Y), (1_000_000 - ex, 3_000_001 - ey));
    assert_eq!(total_supply(&after, lp), supply - burn);
}

// ---------------------------------------------------------------------------------------
// Instant swaps.
// ---------------------------------------------------------------------------------------

#[test]
fn exact_in_swap_pays_get_amount_out_and_k_grows() {
    let state = with_pool(5 * E18, 10 * E18);
    let y0 = balance_of(&state, &account(1), Y);
    let q = quote_exact_in(&state, &[X, Y], E18).expect("quote");
    assert_eq!(q, vec![E18, 1_662_497_915_624_478_906]);
    let (r, after) = block(
        &state,
        vec![dex_tx(
            1,
            0,
            swap_in(&[X, Y], E18, 1_662_497_915_624_478_906),
        )],
        2,
    );
    assert!(r[0].status.is_success(), "{r:?}");
    assert_eq!(
        balance_of(&after, &account(1), Y),
        y0 + 1_662_497_915_624_478_906
    );
    let (x, y) = res(&after, X, Y);
    assert_eq!((x, y), (6 * E18, 10 * E18 - 1_662_497_915_624_478_906));
    assert!(mul_wide(x, y) >= mul_wide(5 * E18, 10 * E18));
}

#[test]
fn exact_out_swap_takes_get_amount_in() {
    let state = with_pool(5 * E18, 10 * E18);
    let x0 = balance_of(&state, &account(1), X);
    let need = get_amount_in(E18, 5 * E18, 10 * E18).expect("in");
    assert_eq!(
        quote_exact_out(&state, &[X, Y], E18).expect("quote"),
        vec![need, E18]
    );
    let msg = DexMsg::SwapExactOut {
        path: vec![X, Y],
        amount_out: E18,
        max_in: need,
        deadline: 5,
    };
    let (r, after) = block(&state, vec![dex_tx(1, 0, msg)], 5);
    assert!(r[0].status.is_success(), "{r:?}");
    assert_eq!(balance_of(&after, &account(1), X), x0 - need);
    assert_eq!(res(&after, X, Y), (5 * E18 + need, 9 * E18));
}

#[test]
fn routes_chain_get_amount_out_over_pools() {
    let base = rich(3, 1_000_000 * E18);
    let (r, state) = block(
        &base,
        vec![
            dex_tx(0, 0, add(X, Y, 1_000_000, 2_000_000)),
            dex_tx(0, 1, add(Y, Z, 3_000_000, 1_000_000)),
        ],
        1,
    );
    assert!(r.iter().all(|r| r.status.is_success()), "{r:?}");
    let hop1 = get_amount_out(10_000, 1_000_000, 2_000_000).expect("hop 1");
    let hop2 = get_amount_out(hop1, 3_000_000, 1_000_000).expect("hop 2");
    assert_eq!(
        quote_exact_in(&state, &[X, Y, Z], 10_000).expect("quote"),
        vec![10_000, hop1, hop2]
    );
    let z0 = balance_of(&state, &account(1), Z);
    let (r, after) = block(
        &state,
        vec![dex_tx(1, 0, swap_in(&[X, Y, Z], 10_000, hop2))],
        2,
    );
    assert!(r[0].status.is_success(), "{r:?}");
    assert_eq!(balance_of(&after, &account(1), Z), z0 + hop2);
    assert_eq!(res(&after, X, Y), (1_010_000, 2_000_000 - hop1));
    assert_eq!(res(&after, Y, Z), (3_000_000 + hop1, 1_000_000 - hop2));
    // Exact out over the same route, backwards.
    let in2 = get_amount_in(5_000, 3_000_000 + hop1, 1_000_000 - hop2).expect("in 2");
    let in1 = get_amount_in(in2, 1_010_000, 2_000_000 - hop1).expect("in 1");
    assert_eq!(
        quote_exact_out(&after, &[X, Y, Z], 5_000).expect("quote"),
        vec![in1, in2, 5_000]
    );
}

// ---------------------------------------------------------------------------------------
// Failure modes.
// ---------------------------------------------------------------------------------------

fn fails_with(state: &KeyMap<Value>, from: u32, nonce: u64, msg: DexMsg, height: u64, want: &str) {
    let (r, after) = block(state, vec![dex_tx(from, nonce, msg)], height);
    assert_eq!(failed(&r[0]), want);
    // Nothing but the nonce changed.
    let mut expect = state.clone();
    expect.insert(
        parabit_modules::bank::BankKey::Nonce(account(from)).key(),
        Value::Num(u128::from(nonce) + 1),
    );
    assert_eq!(after, expect);
}

#[test]
fn every_failure_has_a_clear_message() {
    let s = with_pool(1_000_000, 1_000_000);
    let out = get_amount_out(1_000, 1_000_000, 1_000_000).expect("out");
    assert_eq!(out, 996);
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, Y], 1_000, 997),
        1,
        "slippage: min_out 997 > 996",
    );
    fails_with(
        &s,
        1,
        0,
        DexMsg::SwapExactOut {
            path: vec![X, Y],
            amount_out: 996,
            max_in: 999,
            deadline: FAR,
        },
        1,
        &format!(
            "slippage: max_in 999 < {}",
            get_amount_in(996, 1_000_000, 1_000_000).expect("in")
        ),
    );
    fails_with(
        &s,
        1,
        0,
        DexMsg::SwapExactIn {
            path: vec![X, Y],
            amount_in: 10,
            min_out: 0,
            deadline: 9,
        },
        10,
        "deadline passed: height 10 > deadline 9",
    );
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, Z], 10, 0),
        1,
        "pool 7/9 does not exist",
    );
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X], 10, 0),
        1,
        "route must name 2 to 5 assets, got 1",
    );
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, Y, X, Y, X, Y], 10, 0),
        1,
        "route must name 2 to 5 assets, got 6",
    );
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, Y, X], 10, 0),
        1,
        "route uses pool 7/8 twice",
    );
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, X], 10, 0),
        1,
        "identical assets: 7 on both sides of the pair",
    );
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, Y], 0, 0),
        1,
        "amount_in must be positive",
    );
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, Y], 1, 0),
        1,
        "insufficient output amount: a swap of 1 gives 0",
    );
    fails_with(
        &s,
        1,
        0,
        DexMsg::SwapExactOut {
            path: vec![X, Y],
            amount_out: 1_000_000,
            max_in: u128::MAX,
            deadline: FAR,
        },
        1,
        "insufficient liquidity: amount_out 1000000 >= reserve 1000000",
    );
    let have = balance_of(&s, &account(1), X);
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, Y], have + 1, 0),
        1,
        &format!("insufficient balance: have {have}, need {}", have + 1),
    );
    fails_with(
        &s,
        1,
        0,
        swap_in(&[X, Y], MAX_RESERVE, 0),
        1,
        &format!("reserve overflow: 1000000 + {MAX_RESERVE} > {MAX_RESERVE}"),
    );
    // Liquidity.
    fails_with(
        &s,
        1,
        0,
        add(X, Z, 1_000, 1_000),
        1,
        "insufficient liquidity minted: deposit would mint 0 shares",
    );
    fails_with(
        &s,
        1,
        0,
        add(X, AssetId(99), 10_000, 10_000),
        1,
        "unknown asset 99",
    );
    fails_with(
        &s,
        1,
        0,
        add(X, Y, 0, 10),
        1,
        "amount_x_desired must be positive",
    );
    fails_with(
        &s,
        1,
        0,
        DexMsg::AddLiquidity {
            asset_x: X,
            asset_y: Y,
            amount_x_desired: 1_000,
            amount_y_desired: 500,
            amount_x_min: 600,
            amount_y_min: 0,
            deadline: FAR,
        },
        1,
        "slippage: amount of asset 7 500 < min 600",
    );
    fails_with(
        &s,
        1,
        0,
        DexMsg::AddLiquidity {
            asset_x: X,
            asset_y: Y,
            amount_x_desired: 1_000,
            amount_y_desired: 2_000,
            amount_x_min: 0,
            amount_y_min: 1_500,
            deadline: FAR,
        },
        1,
        "slippage: amount of asset 8 1000 < min 1500",
    );
    let remove = |liquidity, min_x, min_y| DexMsg::RemoveLiquidity {
        asset_x: X,
        asset_y: Y,
        liquidity,
        amount_x_min: min_x,
        amount_y_min: min_y,
        deadline: FAR,
    };
    fails_with(&s, 0, 1, remove(0, 0, 0), 1, "liquidity must be positive");
    fails_with(
        &s,
        0,
        1,
        remove(10_000, 10_001, 0),
        1,
        "slippage: amount of asset 7 10000 < min 10001",
    );
    fails_with(
        &s,
        1,
        0,
        remove(10, 0, 0),
        1,
        "insufficient balance: have 0, need 10",
    );
    // A pool of (2, 1_000_000): one share pays 0 of X.
    let tiny = {
        let base = rich(2, 1_000_000 * E18);
        block(
            &base,
            vec![dex_tx(0, 0, add(X, Y, 2_000, 1_000_000_000))],
            1,
        )
        .1
    };
    fails_with(
        &tiny,
        0,
        1,
        remove(1, 0, 0),
        1,
        "insufficient liquidity burned: 1 shares pay 0 and 707",
    );
    // Batch.
    fails_with(&s, 1, 0, batch(X, Z, 10, 0), 1, "pool 7/9 does not exist");
    fails_with(&s, 1, 0, batch(X, Y, 0, 0), 1, "amount_in must be positive");
    fails_with(
        &s,
        1,
        0,
        batch(Y, Y, 5, 0),
        1,
        "identical assets: 8 on both sides of the pair",
    );
}

// ---------------------------------------------------------------------------------------
// Batch auctions.
// ---------------------------------------------------------------------------------------

fn order(dir: u8, amount_in: Amount, min_out: Amount) -> BatchOrder {
    BatchOrder {
        dir,
        amount_in,
        min_out,
    }
}

#[test]
fn one_sided_batch_pays_each_order_its_share_of_one_curve_swap() {
    // Three orders of 1, 2, 3 (×1e18) against (5e18, 10e18): the batch swaps 6e18 through the
    // curve at p = 997·10e18 / (1000·5e18 + 997·6e18); each gets floor(in·p).
    let c = clear_batch(
        5 * E18,
        10 * E18,
        &[
            order(A_TO_B, E18, 0),
            order(A_TO_B, 2 * E18, 0),
            order(A_TO_B, 3 * E18, 0),
        ],
    );
    let price = c.price.expect("price");
    assert_eq!(
        (price.num, price.den),
        (997 * 10 * E18, 1000 * 5 * E18 + 997 * 6 * E18)
    );
    let fills: Vec<u128> = c.fills.iter().map(|f| f.expect("filled")).collect();
    let whole = get_amount_out(6 * E18, 5 * E18, 10 * E18).expect("out");
    assert!(fills.iter().sum::<u128>() <= whole);
    assert!(whole - fills.iter().sum::<u128>() <= 3);
    for (f, i) in fills.iter().zip([1u128, 2, 3]) {
        assert_eq!(*f, price.out(A_TO_B, i * E18));
    }
    assert_eq!(
        (c.reserve_a, c.reserve_b),
        (11 * E18, 10 * E18 - fills.iter().sum::<u128>())
    );
}

#[test]
fn opposite_orders_net_and_only_the_imbalance_moves_the_curve() {
    // Pool 1:1 at 1e6. 10,000 of a against 4,000 of b: the a side is heavier; p =
    // 997·(1e6 + 4000)/(1000·1e6 + 997·10,000).
    let (x, y) = (1_000_000u128, 1_000_000u128);
    let c = clear_batch(x, y, &[order(A_TO_B, 10_000, 0), order(B_TO_A, 4_000, 0)]);
    let p = c.price.expect("price");
    assert_eq!(
        (p.num, p.den),
        (997 * 1_004_000, 1_000 * 1_000_000 + 997 * 10_000)
    );
    let a_gets = c.fills[0].expect("a filled");
    let b_gets = c.fills[1].expect("b filled");
    assert_eq!(a_gets, 10_000 * p.num / p.den);
    assert_eq!(b_gets, 4_000 * p.den / p.num);
    // b sellers are paid better than spot (they are on the wanted side).
    assert!(b_gets > 4_000);
    // Only the imbalance touched the curve: the pool gained x, lost y, and paid no more
    // than getAmountOut of its net input.
    let dx = c.reserve_a - x;
    let dy = y - c.reserve_b;
    assert_eq!(dx, 10_000 - b_gets);
    assert!(dy <= get_amount_out(dx, x, y).expect("curve"));
    assert!(c.reserve_a * c.reserve_b >= x * y);
    // Balanced flow within the fee band matches at B/A and leaves the curve untouched.
    let c = clear_batch(x, y, &[order(A_TO_B, 1_000, 0), order(B_TO_A, 1_001, 0)]);
    let p = c.price.expect("price");
    assert_eq!((p.num, p.den), (1_001, 1_000));
    assert_eq!(c.fills, vec![Some(1_001), Some(1_000)]);
    assert_eq!((c.reserve_a, c.reserve_b), (x, y));
}

#[test]
fn orders_below_their_limit_are_refunded_and_the_rest_re_cleared() {
    let (x, y) = (1_000_000u128, 1_000_000u128);
    // Alone, 50,000 a would get ~47,482 b. With the greedy order (limit 1:1) in, the price
    // drops; it is refunded, and the others clear again without it.
    let orders = [
        order(A_TO_B, 50_000, 0),
        order(A_TO_B, 100_000, 100_000),
        order(A_TO_B, 10_000, 8_000),
    ];
    let c = clear_batch(x, y, &orders);
    assert_eq!(c.fills[1], None);
    let p = c.price.expect("price");
    assert_eq!((p.num, p.den), (997 * y, 1_000 * x + 997 * 60_000));
    assert_eq!(c.fills[0], Some(50_000 * p.num / p.den));
    assert_eq!(c.fills[2], Some(10_000 * p.num / p.den));
    // Every order refunded when nothing can be met.
    let c = clear_batch(x, y, &[order(A_TO_B, 10, 11), order(B_TO_A, 1, 0)]);
    assert!(c.fills.iter().all(Option::is_none), "{c:?}");
    assert_eq!((c.reserve_a, c.reserve_b), (x, y));
}

#[test]
fn batch_swaps_settle_in_the_end_block_hook() {
    let state = with_pool(1_000_000, 1_000_000);
    let p = pool(X, Y);
    let txs = vec![
        dex_tx(1, 0, batch(X, Y, 10_000, 0)),
        dex_tx(2, 0, batch(Y, X, 4_000, 0)),
        dex_tx(3, 0, batch(X, Y, 5_000, 1_000_000)), // refunded
        dex_tx(4, 0, batch(X, Z, 5_000, 0)),         // fails: no pool
    ];
    let blk = block_txs(Vec::new(), txs.clone());
    // Settlements of X/Y and X/Z (whose order fails), then their payouts.
    assert_eq!(blk.len(), 8);
    let named = vec![(account(1), 0), (account(2), 0), (account(3), 0)];
    assert_eq!(
        blk[4],
        BlockTx::Hook(Hook::SettleBatch {
            pool: p,
            orders: named.clone(),
        })
    );
    assert_eq!(
        blk[6],
        BlockTx::Hook(Hook::PayBatch {
            pool: p,
            orders: named,
        })
    );
    let quote = quote_batch(&state, X, Y, 10_000).expect("quote");
    assert_eq!(
        quote.amount_out,
        get_amount_out(10_000, 1_000_000, 1_000_000).expect("out")
    );
    let before: Vec<(u128, u128)> = (1..=3)
        .map(|i| {
            (
                balance_of(&state, &account(i), X),
                balance_of(&state, &account(i), Y),
            )
        })
        .collect();
    let (r, after) = block(&state, txs, 2);
    assert!(r[..3].iter().all(|r| r.status.is_success()), "{r:?}");
    assert_eq!(failed(&r[3]), "pool 7/9 does not exist");
    for hook in &r[4..] {
        assert_eq!(
            *hook,
            Receipt {
                status: TxStatus::Success,
                fee_paid: 0
            }
        );
    }
    let c = clear_batch(
        1_000_000,
        1_000_000,
        &[order(A_TO_B, 10_000, 0), order(B_TO_A, 4_000, 0)],
    );
    let (a_out, b_out) = (c.fills[0].expect("a"), c.fills[1].expect("b"));
    assert_eq!(balance_of(&after, &account(1), X), before[0].0 - 10_000);
    assert_eq!(balance_of(&after, &account(1), Y), before[0].1 + a_out);
    assert_eq!(balance_of(&after, &account(2), X), before[1].0 + b_out);
    assert_eq!(balance_of(&after, &account(2), Y), before[1].1 - 4_000);
    assert_eq!(balance_of(&after, &account(3), X), before[2].0);
    assert_eq!(res(&after, X, Y), (c.reserve_a, c.reserve_b));
    // Orders and totals are cleared; the vault holds exactly the reserves.
    for (o, n) in [(1, 0), (2, 0), (3, 0)] {
        assert!(!after.contains_key(&DexKey::Order(p, account(o), n).key()));
    }
    for dir in [A_TO_B, B_TO_A] {
        assert_eq!(
            num_of(&after.get(&DexKey::BatchTotal(p, dir).key()).cloned()),
            0
        );
    }
    let vault = vault_address(&p);
    assert_eq!(
        (balance_of(&after, &vault, X), balance_of(&after, &vault, Y)),
        res(&after, X, Y)
    );
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

const USERS: u32 = 5;
const ASSETS: [AssetId; 3] = [X, Y, Z];

fn prop_genesis() -> KeyMap<Value> {
    let mut balances = Vec::new();
    for i in 0..USERS {
        balances.push((account(i), AssetId::BTC, 1_000));
        for a in ASSETS {
            balances.push((account(i), a, 5_000_000));
        }
    }
    genesis_state(&balances)
}

/// Pools X/Y and Y/Z exist (X/Z is created only by the random operations).
fn prop_base() -> KeyMap<Value> {
    let base = prop_genesis();
    let (r, s) = block(
        &base,
        vec![
            dex_tx(0, 0, add(X, Y, 1_000_000, 2_000_000)),
            dex_tx(0, 1, add(Y, Z, 500_000, 500_000)),
        ],
        1,
    );
    assert!(r.iter().all(|r| r.status.is_success()));
    s
}

/// (kind, user, asset i, asset j, amount, limit)
type Op = (u8, u8, u8, u8, u32, u16);

fn build(ops: &[Op], nonces: &mut [u64]) -> Vec<Tx> {
    ops.iter()
        .map(|&(kind, user, i, j, amount, limit)| {
            let u = u32::from(user) % USERS;
            // Three distinct assets: a route a → b → c.
            let ia = usize::from(i) % 3;
            let ib = (ia + 1 + usize::from(j) % 2) % 3;
            let (a, b, c) = (ASSETS[ia], ASSETS[ib], ASSETS[3 - ia - ib]);
            let amount = u128::from(amount % 200_000);
            let limit = u128::from(limit);
            let msg = match kind % 8 {
                0 => Call::Dex(add(a, b, amount, amount * 2 + limit)),
                1 => Call::Dex(DexMsg::RemoveLiquidity {
                    asset_x: a,
                    asset_y: b,
                    liquidity: amount / 4,
                    amount_x_min: 0,
                    amount_y_min: limit,
                    deadline: 3,
                }),
                2 => Call::Dex(swap_in(&[a, b], amount, limit * 10)),
                3 => Call::Dex(DexMsg::SwapExactOut {
                    path: vec![a, b, c],
                    amount_out: amount / 8,
                    max_in: amount + limit * 50,
                    deadline: (limit % 5) as u64,
                }),
                4 | 5 => Call::Dex(batch(a, b, amount, limit * 20)),
                6 => Call::Dex(swap_in(&[a, b, c], amount, 0)),
                _ => Call::Bank(BankMsg::Transfer {
                    to: account((limit as u32) % USERS),
                    asset: a,
                    amount,
                }),
            };
            let nonce = nonces[u as usize];
            nonces[u as usize] += 1;
            Tx {
                chain_id: CHAIN,
                sender: account(u),
                nonce,
                fee: limit % 3,
                call: msg,
            }
        })
        .collect()
}

fn all_pools() -> Vec<PoolId> {
    vec![pool(X, Y), pool(Y, Z), pool(X, Z)]
}

fn pool_state(state: &KeyMap<Value>, p: &PoolId) -> Option<(u128, u128, u128)> {
    let (x, y) = reserves(state, p).ok()?;
    Some((x, y, total_supply(state, lp_asset_id(p))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Random blocks of dex operations, hooks and transfers: parallel (1, 2, 4 threads) ==
    /// sequential; and, stepping through each block one transaction at a time: value is
    /// conserved, LP shares sum to their supply, every swap keeps `k` (an instant swap or a
    /// settlement) and liquidity changes never lower `k / supply²`, vaults hold at least
    /// reserves plus pending batch input.
    #[test]
    fn dex_blocks_are_deterministic_and_conserve_value(
        blocks in prop::collection::vec(prop::collection::vec(any::<Op>(), 1..40), 1..4),
    ) {
        let mut state = prop_base();
        let mut nonces = vec![0u64; USERS as usize];
        nonces[0] = 2;
        for (h, ops) in blocks.iter().enumerate() {
            let height = 2 + h as u64;
            let txs = block_txs(Vec::new(), build(ops, &mut nonces));
            let vm = runtime().at_height(height);
            let seq = execute_sequential(&vm, &txs, &state);
            for tp in pools() {
                for config in [
                    ExecConfig { min_parallel_txns: 0, ..ExecConfig::default() },
                    ExecConfig { min_parallel_txns: 0, fallback: false, ..ExecConfig::default() },
                ] {
                    let par = ParallelExecutor::with_config(tp, config).execute_block(&vm, &txs, &state);
                    prop_assert_eq!(&par.outputs, &seq.outputs);
                    prop_assert_eq!(&par.writes, &seq.writes);
                }
            }
            // Step through one transaction at a time (the sequential executor's semantics).
            let mut step = state.clone();
            for (t, r) in txs.iter().zip(&seq.outputs) {
                prop_assert!(!matches!(r.status, TxStatus::Panicked(_)), "{:?}", r);
                let before: BTreeMap<PoolId, _> = all_pools().iter().filter_map(|p| pool_state(&step, p).map(|s| (*p, s))).collect();
                let out = execute_sequential(&vm, std::slice::from_ref(t), &step);
                prop_assert_eq!(&out.outputs[0], r);
                out.writes.apply_to(&mut step);
                prop_assert_eq!(check_conservation(&step), Ok(()));
                for p in all_pools() {
                    let Some((x, y, s)) = pool_state(&step, &p) else { continue };
                    prop_assert!(x > 0 && y > 0 && s >= MINIMUM_LIQUIDITY);
                    let vault = vault_address(&p);
                    let pend = |d| num_of(&step.get(&DexKey::BatchTotal(p, d).key()).cloned());
                    prop_assert!(balance_of(&step, &vault, p.a) >= x + pend(A_TO_B));
                    prop_assert!(balance_of(&step, &vault, p.b) >= y + pend(B_TO_A));
                    if let Some(&(x0, y0, s0)) = before.get(&p) {
                        if s == s0 {
                            prop_assert!(x * y >= x0 * y0, "k fell on {}: {}·{} < {}·{}", p, x, y, x0, y0);
                        } else {
                            // sqrt(k)/S never falls: x·y·S0² >= x0·y0·S².
                            let lhs = mul_wide(x * y, s0 * s0);
                            let rhs = mul_wide(x0 * y0, s * s);
                            prop_assert!(lhs >= rhs, "k per share fell on {}", p);
                        }
                    }
                }
            }
            prop_assert_eq!(&step, &{ let mut s = state.clone(); seq.writes.apply_to(&mut s); s });
            state = step;
            // Every batch is settled at the end of its block.
            for p in all_pools() {
                for d in [A_TO_B, B_TO_A] {
                    prop_assert_eq!(num_of(&state.get(&DexKey::BatchTotal(p, d).key()).cloned()), 0);
                }
            }
        }
    }

    /// Clearing: one price for every filled order (its inverse for the other side), limits
    /// met, `k` never falls, and the pool pays at most what its curve gives for its net input.
    #[test]
    fn batch_clearing_is_uniform_and_bounded_by_the_curve(
        x in 1_000u128..10_000_000_000,
        y in 1_000u128..10_000_000_000,
        orders in prop::collection::vec((any::<bool>(), 1u128..1_000_000_000, 0u128..2_000_000_000), 0..24),
    ) {
        let orders: Vec<BatchOrder> = orders
            .into_iter()
            .map(|(d, amount_in, min_out)| order(if d { A_TO_B } else { B_TO_A }, amount_in, min_out))
            .collect();
        let c = clear_batch(x, y, &orders);
        let (mut in_a, mut in_b, mut out_a, mut out_b) = (0u128, 0u128, 0u128, 0u128);
        for (o, f) in orders.iter().zip(&c.fills) {
            if let Some(out) = f {
                let p = c.price.expect("a fill has a price");
                prop_assert_eq!(*out, p.out(o.dir, o.amount_in));
                prop_assert!(*out >= o.min_out && *out > 0);
                if o.dir == A_TO_B { in_a += o.amount_in; out_b += out; } else { in_b += o.amount_in; out_a += out; }
            }
        }
        prop_assert_eq!(c.reserve_a, x + in_a - out_a);
        prop_assert_eq!(c.reserve_b, y + in_b - out_b);
        prop_assert!(c.reserve_a * c.reserve_b >= x * y);
        if c.reserve_a > x {
            prop_assert!(c.reserve_b >= y || y - c.reserve_b <= get_amount_out(c.reserve_a - x, x, y).expect("curve"));
        }
        if c.reserve_b > y {
            prop_assert!(c.reserve_a >= x || x - c.reserve_a <= get_amount_out(c.reserve_b - y, y, x).expect("curve"));
        }
        // Re-clearing the filled orders alone gives the same price and fills.
        let kept: Vec<BatchOrder> = orders.iter().zip(&c.fills).filter(|(_, f)| f.is_some()).map(|(o, _)| o.clone()).collect();
        if !kept.is_empty() {
            let again = clear_batch(x, y, &kept);
            prop_assert_eq!(again.price, c.price);
        }
    }
}

/// A settlement hook counts a repeated order once and cannot reach another pool's orders.
#[test]
fn settlement_ignores_duplicate_and_foreign_orders() {
    let base = rich(4, 1_000_000 * E18);
    let (r, state) = block(
        &base,
        vec![
            dex_tx(0, 0, add(X, Y, 1_000_000, 1_000_000)),
            dex_tx(0, 1, add(Y, Z, 1_000_000, 1_000_000)),
        ],
        1,
    );
    assert!(r.iter().all(|r| r.status.is_success()));
    let xy = pool(X, Y);
    let yz = pool(Y, Z);
    let users = vec![
        BlockTx::User(dex_tx(1, 0, batch(X, Y, 10_000, 0))),
        BlockTx::User(dex_tx(2, 0, batch(Y, Z, 10_000, 0))),
        // A faulty builder: order 1 twice, and pool Y/Z's order named under X/Y; paid in
        // chunks that name order 1 twice within one and across two.
        BlockTx::Hook(Hook::SettleBatch {
            pool: xy,
            orders: vec![(account(1), 0), (account(1), 0), (account(2), 0)],
        }),
        BlockTx::Hook(Hook::SettleBatch {
            pool: yz,
            orders: vec![(account(2), 0)],
        }),
        BlockTx::Hook(Hook::PayBatch {
            pool: xy,
            orders: vec![(account(1), 0), (account(1), 0)],
        }),
        BlockTx::Hook(Hook::PayBatch {
            pool: xy,
            orders: vec![(account(1), 0), (account(2), 0)],
        }),
        BlockTx::Hook(Hook::PayBatch {
            pool: yz,
            orders: vec![(account(2), 0)],
        }),
    ];
    let out = execute_sequential(&runtime(), &users, &state);
    assert!(
        out.outputs.iter().all(|r| r.status.is_success()),
        "{:?}",
        out.outputs
    );
    let mut after = state.clone();
    out.writes.apply_to(&mut after);
    check_conservation(&after).expect("conserved");
    let paid = get_amount_out(10_000, 1_000_000, 1_000_000).expect("out");
    assert_eq!(
        balance_of(&after, &account(1), Y),
        balance_of(&state, &account(1), Y) + paid
    );
    assert_eq!(res(&after, X, Y), (1_010_000, 1_000_000 - paid));
    assert_eq!(res(&after, Y, Z), (1_010_000, 1_000_000 - paid));
    for p in [xy, yz] {
        let vault = vault_address(&p);
        assert_eq!(
            (
                balance_of(&after, &vault, p.a),
                balance_of(&after, &vault, p.b)
            ),
            reserves(&after, &p).expect("reserves")
        );
    }
}

/// Many batch swaps on one pool from distinct senders: the parallel engine runs them without
/// a single re-execution (they only add to the pool's totals and write their own order), and
/// the result equals the sequential one. Instant swaps on one pool, in contrast, form a chain.
#[test]
fn batch_swaps_on_one_pool_do_not_conflict() {
    let n = 1_500u32;
    let mut balances = Vec::new();
    for i in 0..=n {
        balances.push((account(i), AssetId::BTC, 1_000));
        balances.push((account(i), X, 1_000_000_000));
        balances.push((account(i), Y, 1_000_000_000));
    }
    let base = genesis_state(&balances);
    let (r, state) = block(
        &base,
        vec![dex_tx(0, 0, add(X, Y, 500_000_000, 500_000_000))],
        1,
    );
    assert!(r[0].status.is_success());
    let users: Vec<Tx> = (1..=n)
        .map(|i| {
            let (a, b) = if i % 3 == 0 { (Y, X) } else { (X, Y) };
            let mut tx = dex_tx(i, 0, batch(a, b, u128::from(1_000 + i), 0));
            tx.fee = 1;
            tx
        })
        .collect();
    let txs = block_txs(Vec::new(), users);
    let vm = runtime();
    let seq = execute_sequential(&vm, &txs, &state);
    assert!(seq.outputs.iter().all(|r| r.status.is_success()));
    let tp = &pools()[1];
    let (par, stats) = ParallelExecutor::with_config(
        tp,
        ExecConfig {
            min_parallel_txns: 0,
            fallback: false,
            ..ExecConfig::default()
        },
    )
    .execute_block_with_stats(&vm, &txs, &state);
    assert_eq!(par.outputs, seq.outputs);
    assert_eq!(par.writes, seq.writes);
    // No chain: the orders, the settlement and its payouts run about once each (re-executions
    // are rare).
    assert!(
        stats.executions <= txs.len() as u64 + u64::from(n) / 20,
        "{stats:?}"
    );
    let mut after = state.clone();
    seq.writes.apply_to(&mut after);
    check_conservation(&after).expect("conserved");
}

/// Dex calls survive signing and the canonical encoding; a quote sees the pending batch.
#[test]
fn dex_calls_encode_and_batch_quotes_see_pending_orders() {
    let key = parabit_primitives::SigningKey::from_seed(b"dex-encoding");
    for msg in [
        add(X, Y, 5, 6),
        swap_in(&[X, Y, Z], 10, 9),
        batch(Y, X, 3, 1),
        DexMsg::SwapExactOut {
            path: vec![Z, Y],
            amount_out: 4,
            max_in: 8,
            deadline: 12,
        },
        DexMsg::RemoveLiquidity {
            asset_x: X,
            asset_y: Z,
            liquidity: 7,
            amount_x_min: 1,
            amount_y_min: 2,
            deadline: 3,
        },
    ] {
        let mut tx = dex_tx(1, 4, msg);
        tx.sender = key.address();
        let signed = key.sign(tx);
        let bytes = signed.encode();
        let back = parabit_modules::SignedTx::decode(&bytes).expect("decodes");
        assert_eq!(back, signed);
        assert!(parabit_primitives::verify_one(&back).is_ok());
    }
    // A pending order of 10,000 a is visible to a quote of 4,000 b: the b seller is quoted
    // the netted price.
    let state = with_pool(1_000_000, 1_000_000);
    let p = pool(X, Y);
    let mut pending = state.clone();
    pending.insert(DexKey::BatchTotal(p, A_TO_B).key(), Value::Num(10_000));
    let q = quote_batch(&pending, Y, X, 4_000).expect("quote");
    let c = clear_batch(
        1_000_000,
        1_000_000,
        &[order(A_TO_B, 10_000, 0), order(B_TO_A, 4_000, 0)],
    );
    assert_eq!(Some(q.price), c.price);
    assert_eq!(Some(q.amount_out), c.fills[1]);
}
