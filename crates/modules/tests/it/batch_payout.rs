//! Batch settlement in two steps: the clearing barrier ([`Hook::SettleBatch`]) and the chunked
//! payouts ([`Hook::PayBatch`]). Any chunking pays exactly what one clearing of the batch gives
//! ([`clear_batch`]: fills at the uniform price, refunds in full); the payouts run partitioned
//! in parallel and equal sequential execution; a payout with no settlement of its block fails
//! and changes nothing; the clearing record round-trips.

use std::collections::BTreeMap;

use parabit_exec::{execute_sequential, ExecConfig, KeyMap, ParallelExecutor, Value};
use parabit_modules::dex::{
    clear_batch, reserves, vault_address, BatchOrder, ClearingRecord, DexKey, Price, A_TO_B,
    B_TO_A, PAY_CHUNK,
};
use parabit_modules::runtime::end_block_hooks_chunked;
use parabit_modules::{
    balance_of, block_txs, check_conservation, genesis_state, BlockTx, Call, DexMsg, Hook, PoolId,
    Tx,
};
use parabit_primitives::{Address, Amount, AssetId, TxStatus};
use proptest::prelude::*;

use crate::{account, runtime, CHAIN};

const ASSETS: [AssetId; 3] = [AssetId(7), AssetId(8), AssetId(9)];
/// Traders are accounts 1..=TRADERS; account 0 provides the liquidity.
const TRADERS: u32 = 24;
const FUNDS: Amount = 1_000_000_000_000;

fn pool(i: usize) -> PoolId {
    let (x, y) = [(0, 1), (1, 2), (0, 2)][i % 3];
    PoolId::new(ASSETS[x], ASSETS[y]).expect("pool")
}

fn tx(from: u32, nonce: u64, msg: DexMsg) -> Tx {
    Tx {
        chain_id: CHAIN,
        sender: account(from),
        nonce,
        fee: 0,
        call: Call::Dex(msg),
    }
}

/// Accounts 0..=`traders` funded with every asset; pools X/Y, Y/Z and X/Z created by account 0
/// with unequal reserves.
fn base(traders: u32) -> KeyMap<Value> {
    let mut balances = Vec::new();
    for i in 0..=traders {
        for a in ASSETS {
            balances.push((account(i), a, FUNDS));
        }
    }
    let state = genesis_state(&balances);
    let setup: Vec<Tx> = (0..3)
        .map(|i| {
            let p = pool(i);
            tx(
                0,
                i as u64,
                DexMsg::AddLiquidity {
                    asset_x: p.a,
                    asset_y: p.b,
                    amount_x_desired: 40_000_000 + 7_000_000 * i as u128,
                    amount_y_desired: 50_000_000,
                    amount_x_min: 0,
                    amount_y_min: 0,
                    deadline: u64::MAX,
                },
            )
        })
        .collect();
    let out = execute_sequential(&runtime(), &block_txs(Vec::new(), setup), &state);
    assert!(out.outputs.iter().all(|r| r.status.is_success()));
    let mut after = state;
    out.writes.apply_to(&mut after);
    after
}

/// A batch order: (trader, pool, sells the pool's `a`?, amount in, min out).
type Order = (u32, usize, bool, Amount, Amount);

/// The user transactions of `orders`, with consecutive nonces per trader.
fn users(orders: &[Order]) -> Vec<Tx> {
    let mut nonces = BTreeMap::new();
    orders
        .iter()
        .map(|&(who, p, sell_a, amount_in, min_out)| {
            let p = pool(p);
            let (asset_in, asset_out) = if sell_a { (p.a, p.b) } else { (p.b, p.a) };
            let nonce = nonces.entry(who).or_insert(0u64);
            let t = tx(
                who,
                *nonce,
                DexMsg::BatchSwap {
                    asset_in,
                    asset_out,
                    amount_in,
                    min_out,
                },
            );
            *nonce += 1;
            t
        })
        .collect()
}

/// Runs the block with payouts of `chunk` orders each; returns the receipts and the state.
fn run_chunked(
    state: &KeyMap<Value>,
    users: &[Tx],
    chunk: usize,
) -> (Vec<TxStatus>, KeyMap<Value>) {
    let mut block: Vec<BlockTx> = users.iter().cloned().map(BlockTx::User).collect();
    block.extend(
        end_block_hooks_chunked(users, chunk)
            .into_iter()
            .map(BlockTx::Hook),
    );
    let out = execute_sequential(&runtime(), &block, state);
    let mut after = state.clone();
    out.writes.apply_to(&mut after);
    (out.outputs.into_iter().map(|r| r.status).collect(), after)
}

/// Every trader's balance of every asset.
type Balances = BTreeMap<(Address, AssetId), Amount>;
/// Every pool's reserves.
type Reserves = BTreeMap<PoolId, (Amount, Amount)>;

/// What settling each pool's batch at once gives, from [`clear_batch`] alone: every trader's
/// balances and every pool's reserves after the block (all orders are placed successfully).
fn expected(state: &KeyMap<Value>, orders: &[Order]) -> (Balances, Reserves) {
    let mut balances = BTreeMap::new();
    for &(who, ..) in orders {
        for a in ASSETS {
            balances.insert((account(who), a), balance_of(state, &account(who), a));
        }
    }
    let mut pools = BTreeMap::new();
    for i in 0..3 {
        let p = pool(i);
        let mine: Vec<&Order> = orders.iter().filter(|o| o.1 == i).collect();
        let (x, y) = reserves(state, &p).expect("reserves");
        let list: Vec<BatchOrder> = mine
            .iter()
            .map(|o| BatchOrder {
                dir: if o.2 { A_TO_B } else { B_TO_A },
                amount_in: o.3,
                min_out: o.4,
            })
            .collect();
        let c = clear_batch(x, y, &list);
        for (o, fill) in mine.iter().zip(&c.fills) {
            let (asset_in, asset_out) = if o.2 { (p.a, p.b) } else { (p.b, p.a) };
            let who = account(o.0);
            if let Some(out) = fill {
                *balances.get_mut(&(who, asset_in)).expect("in") -= o.3;
                *balances.get_mut(&(who, asset_out)).expect("out") += out;
            }
        }
        pools.insert(p, (c.reserve_a, c.reserve_b));
    }
    (balances, pools)
}

fn two_threads() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("thread pool")
    })
}

fn order_strategy() -> impl Strategy<Value = Vec<Order>> {
    // Limits up to 2× the input at prices near 1: a good share of orders are refunded, and
    // some batches re-clear several times.
    prop::collection::vec(
        (
            1..=TRADERS,
            0usize..3,
            any::<bool>(),
            1u128..2_000_000,
            0u128..3_000_000,
        ),
        1..120,
    )
    .prop_map(|mut v| {
        for o in v.iter_mut() {
            // Half of the orders take any price.
            if o.3 % 2 == 0 {
                o.4 = 0;
            }
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Paying in chunks of 1, 7, `PAY_CHUNK` or all of a batch gives the same state, and that
    /// state is what one clearing of each batch gives: every filled order at the uniform
    /// price, every other refunded, reserves as cleared, orders and totals gone, value
    /// conserved, the vault holding exactly the reserves.
    #[test]
    fn chunked_payouts_pay_what_one_clearing_gives(orders in order_strategy()) {
        let state = base(TRADERS);
        let users = users(&orders);
        let (want_balances, want_reserves) = expected(&state, &orders);
        let mut states = Vec::new();
        for chunk in [1, 7, PAY_CHUNK, usize::MAX] {
            let (statuses, after) = run_chunked(&state, &users, chunk);
            prop_assert!(statuses.iter().all(|s| *s == TxStatus::Success), "{:?}", statuses);
            prop_assert_eq!(check_conservation(&after), Ok(()));
            for ((who, asset), want) in &want_balances {
                prop_assert_eq!(balance_of(&after, who, *asset), *want, "chunk {}", chunk);
            }
            for (p, want) in &want_reserves {
                prop_assert_eq!(reserves(&after, p).expect("reserves"), *want);
                let vault = vault_address(p);
                prop_assert_eq!((balance_of(&after, &vault, p.a), balance_of(&after, &vault, p.b)), *want);
                for dir in [A_TO_B, B_TO_A] {
                    prop_assert_eq!(after.get(&DexKey::BatchTotal(*p, dir).key()).map_or(0, Value::as_num), 0);
                }
            }
            prop_assert!(after.keys().all(|k| !matches!(DexKey::from_bytes(k.as_bytes()), Some(DexKey::Order(..)))));
            states.push(after);
        }
        for s in &states[1..] {
            prop_assert_eq!(s, &states[0]);
        }
    }

    /// Blocks of batch orders on several pools with small payout chunks: the parallel engine
    /// (2 threads, footprints on, with and without the chain fallback) equals sequential
    /// execution, and the payouts never stray outside their footprints.
    #[test]
    fn chunked_payouts_in_parallel_equal_sequential(orders in order_strategy(), chunk in 1usize..9) {
        let state = base(TRADERS);
        let users = users(&orders);
        let mut block: Vec<BlockTx> = users.iter().cloned().map(BlockTx::User).collect();
        block.extend(end_block_hooks_chunked(&users, chunk).into_iter().map(BlockTx::Hook));
        let want = execute_sequential(&runtime(), &block, &state);
        for fallback in [true, false] {
            let exec = ParallelExecutor::with_config(
                two_threads(),
                ExecConfig { min_parallel_txns: 0, fallback, ..ExecConfig::default() },
            );
            let (got, stats) = exec.execute_block_with_stats(&runtime(), &block, &state);
            prop_assert_eq!(&got.outputs, &want.outputs);
            prop_assert_eq!(&got.writes, &want.writes);
            prop_assert_eq!(stats.footprint_violations, 0, "{:?}", stats);
        }
    }
}

/// A busy block: 3,000 batch orders over three pools (some refunded), paid in `PAY_CHUNK`s
/// with the default engine settings. The payouts run partitioned (no violation, many groups
/// after the barrier), and the result equals sequential execution.
#[test]
fn busy_batches_pay_out_in_parallel_and_equal_sequential() {
    let n = 3_000u32;
    let state = base(n);
    let orders: Vec<Order> = (1..=n)
        .map(|i| {
            let amount = u128::from(1_000 + (i * 7919) % 50_000);
            // Every 10th order asks for 1.5× its input: refunded.
            let min_out = if i % 10 == 0 { amount * 3 / 2 } else { 0 };
            (i, (i % 3) as usize, i % 4 != 0, amount, min_out)
        })
        .collect();
    let users = users(&orders);
    let block = block_txs(Vec::new(), users.clone());
    let hooks = block.len() - users.len();
    assert_eq!(hooks, 3 + 3 * (n as usize / 3).div_ceil(PAY_CHUNK));
    assert!(matches!(
        block[users.len() + 3],
        BlockTx::Hook(Hook::PayBatch { .. })
    ));
    let want = execute_sequential(&runtime(), &block, &state);
    assert!(want.outputs.iter().all(|r| r.status.is_success()));
    let exec = ParallelExecutor::new(two_threads());
    let (got, stats) = exec.execute_block_with_stats(&runtime(), &block, &state);
    assert_eq!(got, want);
    assert_eq!(stats.footprint_violations, 0, "{stats:?}");
    // The orders' groups, plus one group per payout hook after the barrier.
    let (_, body) = exec.execute_block_with_stats(&runtime(), &block[..users.len()], &state);
    assert_eq!(
        stats.footprint_groups - body.footprint_groups,
        (hooks - 3) as u64,
        "payouts did not split: {stats:?} (body {body:?})"
    );
    let mut after = state.clone();
    want.writes.apply_to(&mut after);
    let (balances, pools) = expected(&state, &orders);
    for ((who, asset), amount) in balances {
        assert_eq!(balance_of(&after, &who, asset), amount);
    }
    for (p, r) in pools {
        assert_eq!(reserves(&after, &p).expect("reserves"), r);
    }
    check_conservation(&after).expect("conserved");
}

/// A payout with no settlement in its block (no record, or one of another height) fails and
/// changes nothing; the order stays for no one to take; a settled but unpaid batch keeps its
/// orders and the vault its tokens.
#[test]
fn payouts_need_a_settlement_of_their_block() {
    let state = base(2);
    let p = pool(0);
    let order = users(&[(1, 0, true, 10_000, 0)]);
    let named = vec![(account(1), 0)];
    let pay = BlockTx::Hook(Hook::PayBatch {
        pool: p,
        orders: named.clone(),
    });
    let settle = BlockTx::Hook(Hook::SettleBatch {
        pool: p,
        orders: named.clone(),
    });
    // No record at all.
    let block = vec![BlockTx::User(order[0].clone()), pay.clone()];
    let out = execute_sequential(&runtime().at_height(5), &block, &state);
    assert!(out.outputs[0].status.is_success());
    assert_eq!(
        out.outputs[1].status,
        TxStatus::Failed(format!("batch of pool {p} was not settled at height 5"))
    );
    let mut placed = state.clone();
    out.writes.apply_to(&mut placed);
    assert!(placed.contains_key(&DexKey::Order(p, account(1), 0).key()));
    check_conservation(&placed).expect("conserved");
    // Settled at height 5 but not paid: the order stays, the record is of height 5.
    let out = execute_sequential(&runtime().at_height(5), &[settle], &placed);
    assert!(out.outputs[0].status.is_success());
    let mut settled = placed.clone();
    out.writes.apply_to(&mut settled);
    let record = match settled.get(&DexKey::Clearing(p).key()) {
        Some(Value::Bytes(b)) => ClearingRecord::decode(b).expect("record"),
        other => panic!("no record: {other:?}"),
    };
    assert_eq!(record.height, 5);
    assert!(record.price.is_some() && record.refunds.is_empty());
    // A payout at another height does not take the stale record.
    let out = execute_sequential(
        &runtime().at_height(6),
        std::slice::from_ref(&pay),
        &settled,
    );
    assert_eq!(
        out.outputs[0].status,
        TxStatus::Failed(format!("batch of pool {p} was not settled at height 6"))
    );
    assert!(out.writes.0.is_empty(), "{:?}", out.writes);
    // At its height it pays, once.
    let out = execute_sequential(&runtime().at_height(5), &[pay.clone(), pay], &settled);
    assert!(out.outputs.iter().all(|r| r.status.is_success()));
    let mut paid = settled.clone();
    out.writes.apply_to(&mut paid);
    let price = record.price.expect("price");
    assert_eq!(
        balance_of(&paid, &account(1), p.b),
        balance_of(&state, &account(1), p.b) + price.out(A_TO_B, 10_000)
    );
    assert!(!paid.contains_key(&DexKey::Order(p, account(1), 0).key()));
    check_conservation(&paid).expect("conserved");
}

/// The record's stored form: the refunds sorted and deduplicated, no list without a price,
/// and bytes of the wrong shape rejected.
#[test]
fn clearing_records_round_trip() {
    let price = Price {
        num: 997,
        den: 1_003,
    };
    let record = ClearingRecord {
        height: 42,
        price: Some(price),
        refunds: vec![
            (account(3), 9),
            (account(1), 2),
            (account(1), 1),
            (account(3), 9),
        ],
    };
    let bytes = record.encode();
    assert_eq!(bytes.len(), 40 + 3 * 40);
    let back = ClearingRecord::decode(&bytes).expect("decodes");
    let mut sorted = vec![(account(3), 9), (account(1), 2), (account(1), 1)];
    sorted.sort_by_key(|(a, n)| (a.0, *n));
    assert_eq!(back.refunds, sorted);
    assert_eq!((back.height, back.price), (42, Some(price)));
    let none = ClearingRecord {
        height: 1,
        price: None,
        refunds: vec![(account(1), 1)],
    };
    let bytes = none.encode();
    assert_eq!(bytes.len(), 40);
    assert_eq!(
        ClearingRecord::decode(&bytes),
        Some(ClearingRecord {
            height: 1,
            price: None,
            refunds: Vec::new()
        })
    );
    let good = record.encode();
    assert_eq!(ClearingRecord::decode(&good[..39]), None);
    assert_eq!(ClearingRecord::decode(&good[..good.len() - 1]), None);
    let mut half = good.clone();
    half[8..24].fill(0); // a zero numerator with a denominator
    assert_eq!(ClearingRecord::decode(&half), None);
}

/// A batch whose totals would overflow the reserves has no price: the settlement records that
/// and every order is refunded by its payout.
#[test]
fn a_batch_without_a_price_refunds_every_order() {
    let state = base(3);
    let p = pool(1);
    let big = parabit_modules::dex::MAX_RESERVE - 10;
    let mut state = state;
    // Traders hold enough of the pool's `a` for an order past the reserve cap.
    for who in [1u32, 2] {
        let key = parabit_modules::BankKey::Balance(account(who), p.a).key();
        let have = balance_of(&state, &account(who), p.a);
        state.insert(key, Value::Num(have + big));
        let supply = parabit_modules::BankKey::Supply(p.a).key();
        let s = state.get(&supply).map_or(0, Value::as_num);
        state.insert(supply, Value::Num(s + big));
        let head = parabit_modules::BankKey::MintHeadroom(p.a).key();
        let h = state.get(&head).map_or(0, Value::as_num);
        state.insert(head, Value::Num(h - big));
    }
    check_conservation(&state).expect("conserved before");
    let orders = [
        (1, 1, true, big, 0),
        (2, 1, true, big, 0),
        (3, 1, false, 5_000, 0),
    ];
    let users = users(&orders);
    let before = reserves(&state, &p).expect("reserves");
    for chunk in [1, 2, 3] {
        let (statuses, after) = run_chunked(&state, &users, chunk);
        assert!(
            statuses.iter().all(|s| *s == TxStatus::Success),
            "{statuses:?}"
        );
        for who in 1..=3 {
            for a in [p.a, p.b] {
                assert_eq!(
                    balance_of(&after, &account(who), a),
                    balance_of(&state, &account(who), a)
                );
            }
        }
        assert_eq!(reserves(&after, &p).expect("reserves"), before);
        let record = match after.get(&DexKey::Clearing(p).key()) {
            Some(Value::Bytes(b)) => ClearingRecord::decode(b).expect("record"),
            other => panic!("no record: {other:?}"),
        };
        assert_eq!(record.price, None);
        check_conservation(&after).expect("conserved");
    }
}
