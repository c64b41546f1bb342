//! The runtime's footprints are exact enough for the engine's partitioned path: random blocks
//! of transfers, instant swaps over routes, and batch swaps (including failing ones) split into
//! groups, never stray outside their footprints, and equal sequential execution.

use parabit_exec::{execute_sequential, ExecConfig, ParallelExecutor};
use parabit_modules::{
    block_txs, BankMsg, Call, DexMsg, GenesisAsset, GenesisBalance, GenesisCall, GenesisSpec, Tx,
};
use parabit_primitives::{AssetId, SigningKey};
use proptest::prelude::*;

use crate::{account, fee_account, runtime, CHAIN};

const TOKENS: u64 = 4;
const ACCOUNTS: u32 = 200;

/// Accounts 0..20 funded with BTC and tokens 1..=4; pools BTC/token and token/token+1.
fn state() -> parabit_exec::KeyMap<parabit_exec::Value> {
    let maker = SigningKey::from_seed(b"footprint-maker").address();
    let mut balances = vec![GenesisBalance {
        address: maker,
        asset: AssetId::BTC,
        amount: 1 << 60,
    }];
    let mut assets = Vec::new();
    for t in 1..=TOKENS {
        balances.push(GenesisBalance {
            address: maker,
            asset: AssetId(t),
            amount: 1 << 60,
        });
        assets.push(GenesisAsset {
            asset: AssetId(t),
            symbol: format!("T{t}"),
            decimals: 0,
        });
    }
    for i in 0..ACCOUNTS {
        for a in 0..=TOKENS {
            balances.push(GenesisBalance {
                address: account(i),
                asset: AssetId(a),
                amount: 1_000_000,
            });
        }
    }
    let mut setup = Vec::new();
    let mut pair = |x: u64, y: u64| {
        setup.push(GenesisCall {
            sender: maker,
            call: Call::Dex(DexMsg::AddLiquidity {
                asset_x: AssetId(x),
                asset_y: AssetId(y),
                amount_x_desired: 1 << 40,
                amount_y_desired: 1 << 40,
                amount_x_min: 0,
                amount_y_min: 0,
                deadline: u64::MAX,
            }),
        })
    };
    for t in 1..=TOKENS {
        pair(0, t);
        if t < TOKENS {
            pair(t, t + 1);
        }
    }
    GenesisSpec {
        chain_id: CHAIN,
        timestamp_ms: 0,
        fee_account: fee_account(),
        balances,
        assets,
        lending: None,
        setup,
        settlement: None,
    }
    .build()
    .expect("genesis")
}

#[derive(Debug, Clone)]
enum Kind {
    Transfer {
        to: u32,
        asset: u64,
        amount: u128,
    },
    SwapIn {
        path: Vec<u64>,
        amount: u128,
        min_out: u128,
    },
    SwapOut {
        path: Vec<u64>,
        amount: u128,
        max_in: u128,
    },
    Batch {
        from: u64,
        to: u64,
        amount: u128,
    },
}

fn kind() -> impl Strategy<Value = Kind> {
    let path = proptest::collection::vec(0..=TOKENS, 2..5);
    prop_oneof![
        (0u32..ACCOUNTS, 0..=TOKENS, 0u128..2_000_000)
            .prop_map(|(to, asset, amount)| Kind::Transfer { to, asset, amount }),
        (
            path.clone(),
            0u128..300_000,
            prop_oneof![Just(0u128), 0u128..400_000]
        )
            .prop_map(|(path, amount, min_out)| Kind::SwapIn {
                path,
                amount,
                min_out
            }),
        (
            path,
            0u128..300_000,
            prop_oneof![Just(u128::MAX), 0u128..400_000]
        )
            .prop_map(|(path, amount, max_in)| Kind::SwapOut {
                path,
                amount,
                max_in
            }),
        (0..=TOKENS, 0..=TOKENS, 0u128..300_000).prop_map(|(from, to, amount)| Kind::Batch {
            from,
            to,
            amount
        }),
    ]
}

fn call(k: &Kind) -> Call {
    let ids = |p: &[u64]| p.iter().map(|a| AssetId(*a)).collect::<Vec<_>>();
    match k {
        Kind::Transfer { to, asset, amount } => Call::Bank(BankMsg::Transfer {
            to: account(*to),
            asset: AssetId(*asset),
            amount: *amount,
        }),
        Kind::SwapIn {
            path,
            amount,
            min_out,
        } => Call::Dex(DexMsg::SwapExactIn {
            path: ids(path),
            amount_in: *amount,
            min_out: *min_out,
            deadline: u64::MAX,
        }),
        Kind::SwapOut {
            path,
            amount,
            max_in,
        } => Call::Dex(DexMsg::SwapExactOut {
            path: ids(path),
            amount_out: *amount,
            max_in: *max_in,
            deadline: u64::MAX,
        }),
        Kind::Batch { from, to, amount } => Call::Dex(DexMsg::BatchSwap {
            asset_in: AssetId(*from),
            asset_out: AssetId(*to),
            amount_in: *amount,
            min_out: 0,
        }),
    }
}

/// A random block: `(sender, kind)` pairs with nonces in order per sender.
fn block_of(txs: &[(u32, Kind)]) -> Vec<parabit_modules::BlockTx> {
    let mut nonces = vec![0u64; ACCOUNTS as usize];
    let user: Vec<Tx> = txs
        .iter()
        .map(|(from, k)| {
            let nonce = nonces[*from as usize];
            nonces[*from as usize] += 1;
            Tx {
                chain_id: CHAIN,
                sender: account(*from),
                nonce,
                fee: 3,
                call: call(k),
            }
        })
        .collect();
    block_txs(Vec::new(), user)
}

#[test]
fn footprinted_blocks_split_never_stray_and_equal_sequential() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let state = state();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let exec = ParallelExecutor::with_config(
        &pool,
        ExecConfig {
            min_parallel_txns: 0,
            ..ExecConfig::default()
        },
    );
    let strategy = proptest::collection::vec((0u32..ACCOUNTS, kind()), 40..160);
    let mut runner = TestRunner::deterministic();
    let (mut partitioned, cases) = (0, 60);
    for case in 0..cases {
        let txs = strategy
            .new_tree(&mut runner)
            .expect("a random block")
            .current();
        let block = block_of(&txs);
        let want = execute_sequential(&runtime(), &block, &state);
        let (got, stats) = exec.execute_block_with_stats(&runtime(), &block, &state);
        assert_eq!(got, want, "case {case}: {txs:?}");
        assert_eq!(
            stats.footprint_violations, 0,
            "case {case}: {stats:?} {txs:?}"
        );
        partitioned += usize::from(stats.footprint_groups > 0);
    }
    // Most blocks split (the rest have one group too large to be worth it).
    assert!(
        partitioned * 2 > cases,
        "only {partitioned} of {cases} blocks split"
    );
}

#[test]
fn swaps_on_separate_pools_run_in_separate_groups() {
    let state = state();
    // Account i swaps on pool BTC/token (i % 4 + 1): four pools, four groups at most, but each
    // sender's own keys keep... every sender swaps on one pool only.
    let user: Vec<Tx> = (0..20u32)
        .map(|i| Tx {
            chain_id: CHAIN,
            sender: account(i),
            nonce: 0,
            fee: 3,
            call: Call::Dex(DexMsg::SwapExactIn {
                path: vec![AssetId::BTC, AssetId(u64::from(i) % TOKENS + 1)],
                amount_in: 1_000,
                min_out: 1,
                deadline: u64::MAX,
            }),
        })
        .collect();
    let block = block_txs(Vec::new(), user);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let exec = ParallelExecutor::with_config(
        &pool,
        ExecConfig {
            min_parallel_txns: 0,
            ..ExecConfig::default()
        },
    );
    let (got, stats) = exec.execute_block_with_stats(&runtime(), &block, &state);
    assert_eq!(got, execute_sequential(&runtime(), &block, &state));
    assert!(
        got.outputs.iter().all(|r| r.status.is_success()),
        "{:?}",
        got.outputs
    );
    assert_eq!(stats.footprint_groups, TOKENS, "{stats:?}");
    assert_eq!(stats.footprint_violations, 0);
}
