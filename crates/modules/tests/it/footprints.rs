//! The runtime's footprints are exact enough for the engine's partitioned path: random blocks
//! of transfers, instant swaps over routes, and batch swaps (including failing ones), and
//! random blocks of every lending, staking, insurance and bridge call (failing ones included,
//! after the markets' accrual hooks) split into groups, never stray outside their footprints, and
//! equal sequential execution; calls of distinct accounts that share only totals, cash and
//! vaults run in groups of their own.

use parabit_exec::{execute_sequential, ExecConfig, ParallelExecutor};
use parabit_modules::lending::{LendingConfig, WAD};
use parabit_modules::{
    begin_block_hooks, block_txs, insurance, staking, BankMsg, BridgeMsg, Call, DexMsg,
    GenesisAsset, GenesisBalance, GenesisCall, GenesisSpec, InsuranceMsg, InsurancePool,
    LendingMsg, MarketParams, StakingMsg, Tx,
};
use parabit_primitives::{AssetId, SigningKey};
use proptest::prelude::*;

use crate::{account, authority, bridged_runtime, deposit_tx, fee_account, p2wpkh, runtime, CHAIN};

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
    let pool = two_threads();
    let exec = eager(&pool);
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

/// Runs `cases` random blocks of `strategy` in home lanes (if they qualify) and sequentially,
/// checks that the results agree and that most blocks finished in home lanes, and returns
/// how many left them.
fn home_lane_blocks(strategy: impl Strategy<Value = Vec<(u32, Kind)>>, cases: usize) -> usize {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let state = state();
    let pool = two_threads();
    let mut runner = TestRunner::deterministic();
    let (mut homed, mut abandoned) = (0, 0);
    for case in 0..cases {
        let txs = strategy
            .new_tree(&mut runner)
            .expect("a random block")
            .current();
        let block = block_of(&txs);
        let want = execute_sequential(&runtime(), &block, &state);
        let exec = eager(&pool);
        let (got, stats) = exec.execute_block_with_stats(&runtime(), &block, &state);
        assert_eq!(got, want, "case {case}: {txs:?}");
        homed += usize::from(stats.home_lanes == 2);
        abandoned += usize::from(stats.home_abandoned == 1);
    }
    assert_eq!(homed + abandoned, cases);
    assert!(
        homed * 2 > cases,
        "only {homed} of {cases} blocks in home lanes"
    );
    abandoned
}

/// Blocks of transfers only (overdrafts included) run in home lanes, by sender, with no
/// planning; a block where an account spends what another lane credits it (its failed
/// `try_sub` or its balance read depends on that credit) leaves them, and either way the
/// result is the sequential one.
#[test]
fn transfer_blocks_run_in_home_lanes_and_equal_sequential() {
    let transfer = (0u32..ACCOUNTS, 0..=TOKENS, 0u128..450_000)
        .prop_map(|(to, asset, amount)| Kind::Transfer { to, asset, amount });
    let abandoned = home_lane_blocks(
        proptest::collection::vec((0u32..ACCOUNTS, transfer), 40..300),
        60,
    );
    assert!(abandoned > 0, "no block left home lanes");
}

/// Blocks of transfers and batch swaps (on pools that exist and ones that do not, some
/// overdrawn) run in home lanes up to their settlements, which run on top, then the payouts:
/// a batch swap acts for its sender, writes the sender's order and only adds to the vault
/// and the pool's totals. The result is the sequential one.
#[test]
fn batch_swap_blocks_run_in_home_lanes_up_to_their_settlement() {
    let kind = prop_oneof![
        1 => (0u32..ACCOUNTS, 0..=TOKENS, 0u128..450_000)
            .prop_map(|(to, asset, amount)| Kind::Transfer { to, asset, amount }),
        3 => (0..=TOKENS, 0..=TOKENS, 0u128..700_000).prop_map(|(from, to, amount)| Kind::Batch {
            from,
            to,
            amount
        }),
    ];
    home_lane_blocks(
        proptest::collection::vec((0u32..ACCOUNTS, kind), 40..300),
        40,
    );
}

/// Blocks of transfers and instant swaps (some over two pools, some failing on their
/// slippage limit) run in home lanes planned by sender and pool: a swap acts for both. A
/// block whose senders and pools all join into one group leaves them. The result is the
/// sequential one.
#[test]
fn swap_blocks_run_in_planned_home_lanes() {
    let kind = prop_oneof![
        1 => (0u32..ACCOUNTS, 0..=TOKENS, 0u128..450_000)
            .prop_map(|(to, asset, amount)| Kind::Transfer { to, asset, amount }),
        3 => (1..=TOKENS, 0u128..300_000, prop_oneof![Just(0u128), 0u128..400_000])
            .prop_map(|(t, amount, min_out)| Kind::SwapIn { path: vec![0, t], amount, min_out }),
        1 => (1..TOKENS, 0u128..300_000).prop_map(|(t, amount)| Kind::SwapOut {
            path: vec![t + 1, t, 0],
            amount,
            max_in: u128::MAX,
        }),
    ];
    home_lane_blocks(
        proptest::collection::vec((0u32..ACCOUNTS, kind), 20..80),
        40,
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
    let pool = two_threads();
    let want = execute_sequential(&runtime(), &block, &state);
    assert!(
        want.outputs.iter().all(|r| r.status.is_success()),
        "{:?}",
        want.outputs
    );
    // In home lanes: a swap acts for its sender and its pool, so the lanes are planned.
    let (got, stats) = eager(&pool).execute_block_with_stats(&runtime(), &block, &state);
    assert_eq!(got, want);
    assert_eq!(
        (stats.home_lanes, stats.home_abandoned),
        (2, 0),
        "{stats:?}"
    );
    // By footprints.
    let exec = ParallelExecutor::with_config(
        &pool,
        ExecConfig {
            min_parallel_txns: 0,
            homes: false,
            ..ExecConfig::default()
        },
    );
    let (got, stats) = exec.execute_block_with_stats(&runtime(), &block, &state);
    assert_eq!(got, want);
    assert_eq!(stats.footprint_groups, TOKENS, "{stats:?}");
    assert_eq!(stats.footprint_violations, 0);
}

// ---------------------------------------------------------------------------------------
// Lending, staking and insurance

/// Accounts of the DeFi state; the last [`UNDERWATER`] of them are liquidatable at genesis.
const D_ACCOUNTS: u32 = 120;
/// Accounts whose health factor is below 1 at genesis.
const UNDERWATER: u32 = 10;
/// Accounts with claims filed at genesis.
const CLAIMANTS: u32 = 20;
/// Height of the random blocks (genesis is height 0).
const HEIGHT: u64 = 100;
/// Lending markets at genesis (`T3` has none).
const MARKETS: [AssetId; 3] = [AssetId::BTC, AssetId(1), AssetId(2)];

fn maker() -> parabit_primitives::Address {
    SigningKey::from_seed(b"footprint-maker").address()
}

/// The DeFi genesis: its state, every account's next nonce, and the ids of its objects.
struct Defi {
    state: parabit_exec::KeyMap<parabit_exec::Value>,
    /// Next nonce of accounts `0..D_ACCOUNTS`, then of the maker.
    nonces: Vec<u64>,
    /// Staking pools: unbonding over by [`HEIGHT`], and not.
    staking: [u64; 2],
    /// Insurance pools: `A` (votes open at [`HEIGHT`], notice over) and `B` (votes closed,
    /// notice running).
    insurance: [u64; 2],
    /// Every account's cover in `A` and in `B`.
    covers: [Vec<u64>; 2],
}

fn market_params() -> MarketParams {
    MarketParams {
        base_rate_per_year: 20_000_000_000_000_000,
        multiplier_per_year: 100_000_000_000_000_000,
        jump_multiplier_per_year: 1_090_000_000_000_000_000,
        kink: 800_000_000_000_000_000,
        blocks_per_year: 2_102_400,
        reserve_factor: WAD / 10,
        collateral_factor: 750_000_000_000_000_000,
        liquidation_threshold: 800_000_000_000_000_000,
        liquidation_bonus: WAD / 10,
        close_factor: WAD / 2,
    }
}

fn insurance_params(vote_blocks: u64, notice_blocks: u64) -> InsurancePool {
    InsurancePool {
        asset: AssetId::BTC,
        max_cover_bps: 5_000,
        base_rate_bps: 200,
        slope_bps: 800,
        notice_blocks,
        vote_blocks,
        quorum_bps: 2_000,
    }
}

/// Markets of BTC, `T1` and `T2` (the maker lends and borrows); two staking pools and two
/// insurance pools funded by the maker; every account supplies, borrows, stakes, unbonds,
/// underwrites, asks to withdraw, stakes as an assessor and buys cover in both pools; the
/// first [`CLAIMANTS`] file claims (those in `B` voted on, half approved by the maker); then
/// the maker funds both staking pools and BTC's price drops by 10%, which puts the
/// [`UNDERWATER`] accounts under water.
fn defi() -> Defi {
    let maker = maker();
    let mut balances = vec![];
    let mut assets = Vec::new();
    for t in 0..=TOKENS {
        balances.push(GenesisBalance {
            address: maker,
            asset: AssetId(t),
            amount: 1 << 60,
        });
        if t > 0 {
            assets.push(GenesisAsset {
                asset: AssetId(t),
                symbol: format!("T{t}"),
                decimals: 0,
            });
        }
        for i in 0..D_ACCOUNTS {
            balances.push(GenesisBalance {
                address: account(i),
                asset: AssetId(t),
                amount: if t == 0 { 1 << 40 } else { 10_000_000 },
            });
        }
    }
    let mut setup: Vec<GenesisCall> = Vec::new();
    let mut nonces: std::collections::HashMap<parabit_primitives::Address, u64> =
        Default::default();
    // Adds a setup call; returns its nonce.
    let mut call = |sender: parabit_primitives::Address, call: Call| {
        let n = nonces.entry(sender).or_insert(0);
        setup.push(GenesisCall { sender, call });
        *n += 1;
        *n - 1
    };
    let lend = |m: LendingMsg| Call::Lending(m);
    for asset in MARKETS {
        call(
            maker,
            lend(LendingMsg::CreateMarket {
                asset,
                params: market_params(),
            }),
        );
        call(maker, lend(LendingMsg::SetPrice { asset, price: WAD }));
        call(
            maker,
            lend(LendingMsg::Supply {
                asset,
                amount: 1 << 40,
            }),
        );
    }
    call(
        maker,
        lend(LendingMsg::Borrow {
            asset: AssetId(1),
            amount: 1 << 36,
        }),
    );
    let mut staking = [0; 2];
    for (k, unbonding_blocks) in [50, 1_000].into_iter().enumerate() {
        let nonce = call(
            maker,
            Call::Staking(StakingMsg::CreatePool {
                stake_asset: AssetId::BTC,
                reward_asset: AssetId(1),
                unbonding_blocks,
                slash_destination: maker,
            }),
        );
        staking[k] = staking::derive_pool_id(&maker, nonce);
        let pool = staking[k];
        call(
            maker,
            Call::Staking(StakingMsg::Stake {
                pool,
                amount: 1 << 40,
            }),
        );
    }
    let mut insurance = [0; 2];
    for (k, (vote, notice)) in [(1_000, 50), (10, 1_000)].into_iter().enumerate() {
        let nonce = call(
            maker,
            Call::Insurance(InsuranceMsg::CreatePool(insurance_params(vote, notice))),
        );
        insurance[k] = insurance::derive_id(&maker, nonce);
        let pool = insurance[k];
        call(
            maker,
            Call::Insurance(InsuranceMsg::Underwrite {
                pool,
                amount: 1 << 40,
            }),
        );
        call(
            maker,
            Call::Insurance(InsuranceMsg::StakeAssessor {
                pool,
                amount: 1 << 20,
            }),
        );
    }
    let mut covers = [Vec::new(), Vec::new()];
    for i in 0..D_ACCOUNTS {
        let a = account(i);
        let underwater = i >= D_ACCOUNTS - UNDERWATER;
        call(
            a,
            lend(LendingMsg::Supply {
                asset: AssetId::BTC,
                amount: 500_000,
            }),
        );
        call(
            a,
            lend(LendingMsg::Borrow {
                asset: AssetId(1),
                amount: if underwater { 370_000 } else { 100_000 },
            }),
        );
        for (k, pool) in staking.into_iter().enumerate() {
            call(
                a,
                Call::Staking(StakingMsg::Stake {
                    pool,
                    amount: 100_000,
                }),
            );
            call(
                a,
                Call::Staking(StakingMsg::Unbond {
                    pool,
                    amount: 10_000 + k as u128,
                }),
            );
        }
        for (k, pool) in insurance.into_iter().enumerate() {
            call(
                a,
                Call::Insurance(InsuranceMsg::Underwrite {
                    pool,
                    amount: 100_000,
                }),
            );
            call(
                a,
                Call::Insurance(InsuranceMsg::RequestWithdrawal {
                    pool,
                    shares: 1_000,
                }),
            );
            call(
                a,
                Call::Insurance(InsuranceMsg::StakeAssessor {
                    pool,
                    amount: 10_000,
                }),
            );
            let nonce = call(
                a,
                Call::Insurance(InsuranceMsg::BuyCover {
                    pool,
                    risk: "bridge".into(),
                    amount: 10_000,
                    period_blocks: 1_000,
                    max_premium: 1_000_000,
                }),
            );
            covers[k].push(insurance::derive_id(&a, nonce));
        }
    }
    for i in 0..CLAIMANTS {
        for pool_covers in &covers {
            call(
                account(i),
                Call::Insurance(InsuranceMsg::FileClaim {
                    cover: pool_covers[i as usize],
                    amount: 5_000,
                }),
            );
        }
        let cover = covers[1][i as usize];
        let vote = |approve| Call::Insurance(InsuranceMsg::Vote { cover, approve });
        call(account(i + 1), vote(true));
        if i.is_multiple_of(2) {
            call(maker, vote(true));
        }
    }
    for pool in staking {
        call(
            maker,
            Call::Staking(StakingMsg::FundRewards {
                pool,
                amount: 1 << 40,
            }),
        );
    }
    call(
        maker,
        lend(LendingMsg::SetPrice {
            asset: AssetId::BTC,
            price: WAD / 10 * 9,
        }),
    );
    let state = GenesisSpec {
        chain_id: CHAIN,
        timestamp_ms: 0,
        fee_account: fee_account(),
        balances,
        assets,
        lending: Some(LendingConfig {
            admin: maker,
            oracle: maker,
        }),
        setup,
        settlement: None,
    }
    .build()
    .expect("genesis");
    let nonces = (0..D_ACCOUNTS)
        .map(account)
        .chain([maker])
        .map(|a| nonces.get(&a).copied().unwrap_or(0))
        .collect();
    Defi {
        state,
        nonces,
        staking,
        insurance,
        covers,
    }
}

/// A random lending, staking, insurance or bank call. Indices (`x`, `p`, `c`) pick among the
/// genesis objects; `admin` calls are sent by the maker.
#[derive(Debug, Clone)]
enum Op {
    Supply {
        x: usize,
        amount: u128,
    },
    Withdraw {
        x: usize,
        amount: u128,
    },
    Borrow {
        x: usize,
        amount: u128,
    },
    Repay {
        x: usize,
        amount: u128,
    },
    Liquidate {
        borrower: u32,
        coll: usize,
        amount: u128,
    },
    SetPrice {
        x: usize,
        price: u128,
    },
    CreateMarket {
        x: usize,
    },
    Stake {
        p: usize,
        amount: u128,
    },
    Unbond {
        p: usize,
        amount: u128,
    },
    StakingWithdraw {
        p: usize,
    },
    Claim {
        p: usize,
    },
    Fund {
        p: usize,
        amount: u128,
    },
    Slash {
        p: usize,
        staker: u32,
        ppm: u32,
    },
    CreateStakingPool,
    Underwrite {
        p: usize,
        amount: u128,
    },
    RequestWithdrawal {
        p: usize,
        shares: u128,
    },
    InsuranceWithdraw {
        p: usize,
    },
    BuyCover {
        p: usize,
        amount: u128,
        period: u64,
        max_premium: u128,
    },
    ReleaseCover {
        p: usize,
        c: u32,
    },
    StakeAssessor {
        p: usize,
        amount: u128,
    },
    UnstakeAssessor {
        p: usize,
        amount: u128,
    },
    FileClaim {
        p: usize,
        c: u32,
        own: bool,
        amount: u128,
    },
    Vote {
        p: usize,
        c: u32,
        approve: bool,
    },
    Resolve {
        p: usize,
        c: u32,
    },
    Transfer {
        to: u32,
        amount: u128,
    },
    /// A bridge deposit (sent by the authority, fee 0, nonce 0) of outpoint
    /// `([outpoint; 32], outpoint % 3)`: few outpoints, so some repeat; amounts below the
    /// minimum too.
    Deposit {
        outpoint: u8,
        to: u32,
        amount: u64,
    },
    /// A bridge withdrawal; `standard: false` names a script the bridge does not pay.
    BridgeWithdraw {
        amount: u64,
        standard: bool,
    },
}

impl Op {
    /// Sent by the maker (the lending admin and oracle, the pools' authority).
    fn admin(&self) -> bool {
        matches!(
            self,
            Op::SetPrice { .. } | Op::CreateMarket { .. } | Op::Slash { .. }
        )
    }

    fn module(&self) -> bool {
        !matches!(self, Op::Transfer { .. })
    }
}

fn op() -> impl Strategy<Value = Op> {
    let x = 0..MARKETS.len();
    let amt = || prop_oneof![0u128..1_000, 0u128..600_000];
    let acct = 0..D_ACCOUNTS;
    let claimant = 0..CLAIMANTS + 2;
    prop_oneof![
        24 => (x.clone(), amt()).prop_map(|(x, amount)| Op::Supply { x, amount }),
        16 => (x.clone(), amt()).prop_map(|(x, amount)| Op::Withdraw { x, amount }),
        16 => (x.clone(), amt()).prop_map(|(x, amount)| Op::Borrow { x, amount }),
        16 => (x.clone(), amt()).prop_map(|(x, amount)| Op::Repay { x, amount }),
        12 => (
            prop_oneof![D_ACCOUNTS - UNDERWATER..D_ACCOUNTS, acct.clone()],
            0..MARKETS.len(),
            0u128..200_000
        )
            .prop_map(|(borrower, coll, amount)| Op::Liquidate { borrower, coll, amount }),
        1 => (x.clone(), WAD / 2..WAD * 2).prop_map(|(x, price)| Op::SetPrice { x, price }),
        1 => (0..MARKETS.len() + 1).prop_map(|x| Op::CreateMarket { x }),
        16 => (0..2usize, amt()).prop_map(|(p, amount)| Op::Stake { p, amount }),
        12 => (0..2usize, amt()).prop_map(|(p, amount)| Op::Unbond { p, amount }),
        8 => (0..2usize).prop_map(|p| Op::StakingWithdraw { p }),
        8 => (0..2usize).prop_map(|p| Op::Claim { p }),
        1 => (0..2usize, amt()).prop_map(|(p, amount)| Op::Fund { p, amount }),
        1 => (0..2usize, acct.clone(), 0u32..1_100_000)
            .prop_map(|(p, staker, ppm)| Op::Slash { p, staker, ppm }),
        1 => Just(Op::CreateStakingPool),
        8 => (0..2usize, amt()).prop_map(|(p, amount)| Op::Underwrite { p, amount }),
        8 => (0..2usize, 0u128..3_000)
            .prop_map(|(p, shares)| Op::RequestWithdrawal { p, shares }),
        8 => (0..2usize).prop_map(|p| Op::InsuranceWithdraw { p }),
        8 => (
            0..2usize,
            0u128..100_000,
            0u64..3_000,
            prop_oneof![Just(u128::MAX), 0u128..50]
        )
            .prop_map(|(p, amount, period, max_premium)| Op::BuyCover {
                p,
                amount,
                period,
                max_premium
            }),
        4 => (0..2usize, acct.clone()).prop_map(|(p, c)| Op::ReleaseCover { p, c }),
        8 => (0..2usize, amt()).prop_map(|(p, amount)| Op::StakeAssessor { p, amount }),
        8 => (0..2usize, 0u128..30_000).prop_map(|(p, amount)| Op::UnstakeAssessor { p, amount }),
        8 => (0..2usize, acct.clone(), any::<bool>(), 0u128..20_000)
            .prop_map(|(p, c, own, amount)| Op::FileClaim { p, c, own, amount }),
        12 => (0..2usize, claimant.clone(), any::<bool>())
            .prop_map(|(p, c, approve)| Op::Vote { p, c, approve }),
        8 => (0..2usize, claimant).prop_map(|(p, c)| Op::Resolve { p, c }),
        24 => (acct.clone(), 0u128..2_000).prop_map(|(to, amount)| Op::Transfer { to, amount }),
        8 => (0u8..40, acct, 0u64..60_000)
            .prop_map(|(outpoint, to, amount)| Op::Deposit { outpoint, to, amount }),
        8 => (0u64..600_000, prop::bool::weighted(0.9))
            .prop_map(|(amount, standard)| Op::BridgeWithdraw { amount, standard }),
    ]
}

fn defi_call(d: &Defi, from: u32, op: &Op) -> Call {
    let asset = |x: usize| MARKETS.get(x).copied().unwrap_or(AssetId(3));
    let cover = |p: usize, c: u32| d.covers[p][c as usize % D_ACCOUNTS as usize];
    match op.clone() {
        Op::Supply { x, amount } => Call::Lending(LendingMsg::Supply {
            asset: asset(x),
            amount,
        }),
        Op::Withdraw { x, amount } => Call::Lending(LendingMsg::Withdraw {
            asset: asset(x),
            amount,
        }),
        Op::Borrow { x, amount } => Call::Lending(LendingMsg::Borrow {
            asset: asset(x),
            amount,
        }),
        Op::Repay { x, amount } => Call::Lending(LendingMsg::Repay {
            asset: asset(x),
            amount,
        }),
        Op::Liquidate {
            borrower,
            coll,
            amount,
        } => Call::Lending(LendingMsg::Liquidate {
            borrower: account(borrower),
            debt_asset: AssetId(1),
            collateral_asset: asset(coll),
            amount,
        }),
        Op::SetPrice { x, price } => Call::Lending(LendingMsg::SetPrice {
            asset: asset(x),
            price,
        }),
        Op::CreateMarket { x } => Call::Lending(LendingMsg::CreateMarket {
            asset: asset(x),
            params: market_params(),
        }),
        Op::Stake { p, amount } => Call::Staking(StakingMsg::Stake {
            pool: d.staking[p],
            amount,
        }),
        Op::Unbond { p, amount } => Call::Staking(StakingMsg::Unbond {
            pool: d.staking[p],
            amount,
        }),
        Op::StakingWithdraw { p } => Call::Staking(StakingMsg::Withdraw { pool: d.staking[p] }),
        Op::Claim { p } => Call::Staking(StakingMsg::Claim { pool: d.staking[p] }),
        Op::Fund { p, amount } => Call::Staking(StakingMsg::FundRewards {
            pool: d.staking[p],
            amount,
        }),
        Op::Slash { p, staker, ppm } => Call::Staking(StakingMsg::Slash {
            pool: d.staking[p],
            staker: account(staker),
            fraction_ppm: ppm,
        }),
        Op::CreateStakingPool => Call::Staking(StakingMsg::CreatePool {
            stake_asset: AssetId(2),
            reward_asset: AssetId(3),
            unbonding_blocks: 5,
            slash_destination: maker(),
        }),
        Op::Underwrite { p, amount } => Call::Insurance(InsuranceMsg::Underwrite {
            pool: d.insurance[p],
            amount,
        }),
        Op::RequestWithdrawal { p, shares } => Call::Insurance(InsuranceMsg::RequestWithdrawal {
            pool: d.insurance[p],
            shares,
        }),
        Op::InsuranceWithdraw { p } => Call::Insurance(InsuranceMsg::Withdraw {
            pool: d.insurance[p],
        }),
        Op::BuyCover {
            p,
            amount,
            period,
            max_premium,
        } => Call::Insurance(InsuranceMsg::BuyCover {
            pool: d.insurance[p],
            risk: "oracle".into(),
            amount,
            period_blocks: period,
            max_premium,
        }),
        Op::ReleaseCover { p, c } => {
            Call::Insurance(InsuranceMsg::ReleaseCover { cover: cover(p, c) })
        }
        Op::StakeAssessor { p, amount } => Call::Insurance(InsuranceMsg::StakeAssessor {
            pool: d.insurance[p],
            amount,
        }),
        Op::UnstakeAssessor { p, amount } => Call::Insurance(InsuranceMsg::UnstakeAssessor {
            pool: d.insurance[p],
            amount,
        }),
        Op::FileClaim { p, c, own, amount } => Call::Insurance(InsuranceMsg::FileClaim {
            cover: cover(p, if own { from } else { c }),
            amount,
        }),
        Op::Vote { p, c, approve } => Call::Insurance(InsuranceMsg::Vote {
            cover: cover(p, c),
            approve,
        }),
        Op::Resolve { p, c } => Call::Insurance(InsuranceMsg::Resolve { cover: cover(p, c) }),
        Op::Transfer { to, amount } => Call::Bank(BankMsg::Transfer {
            to: account(to),
            asset: AssetId::BTC,
            amount,
        }),
        Op::Deposit {
            outpoint,
            to,
            amount,
        } => deposit_tx([outpoint; 32], u32::from(outpoint % 3), account(to), amount).call,
        Op::BridgeWithdraw { amount, standard } => Call::Bridge(BridgeMsg::Withdraw {
            amount,
            script_pubkey: if standard { p2wpkh(7) } else { vec![0x6a] },
        }),
    }
}

/// A block at [`HEIGHT`]: the markets' accrual hooks, then `txs` (`(sender, op)`; admin ops
/// are the maker's, deposits the bridge authority's with nonce 0 and no fee), nonces in order
/// per sender.
fn defi_block(d: &Defi, txs: &[(u32, Op)]) -> Vec<parabit_modules::BlockTx> {
    let mut nonces = d.nonces.clone();
    let user: Vec<Tx> = txs
        .iter()
        .map(|(from, op)| {
            if let Op::Deposit { .. } = op {
                return Tx {
                    chain_id: CHAIN,
                    sender: authority(),
                    nonce: 0,
                    fee: 0,
                    call: defi_call(d, *from, op),
                };
            }
            let i = if op.admin() { D_ACCOUNTS } else { *from } as usize;
            let sender = if op.admin() { maker() } else { account(*from) };
            let nonce = nonces[i];
            nonces[i] += 1;
            Tx {
                chain_id: CHAIN,
                sender,
                nonce,
                fee: 3,
                call: defi_call(d, *from, op),
            }
        })
        .collect();
    block_txs(begin_block_hooks(&MARKETS), user)
}

/// The engine on `pool`, parallel even for small blocks.
fn eager(pool: &rayon::ThreadPool) -> ParallelExecutor<'_> {
    ParallelExecutor::with_config(
        pool,
        ExecConfig {
            min_parallel_txns: 0,
            ..ExecConfig::default()
        },
    )
}

fn two_threads() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool")
}

#[test]
fn lending_staking_insurance_blocks_split_never_stray_and_equal_sequential() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let d = defi();
    let rt = bridged_runtime().at_height(HEIGHT);
    let pool = two_threads();
    let exec = eager(&pool);
    let strategy = proptest::collection::vec((0u32..D_ACCOUNTS, op()), 40..160);
    let mut runner = TestRunner::deterministic();
    let (mut partitioned, cases) = (0, 60);
    let (mut module_txs, mut module_ok) = (0, 0);
    for case in 0..cases {
        let txs = strategy
            .new_tree(&mut runner)
            .expect("a random block")
            .current();
        let block = defi_block(&d, &txs);
        let want = execute_sequential(&rt, &block, &d.state);
        let (got, stats) = exec.execute_block_with_stats(&rt, &block, &d.state);
        assert_eq!(got, want, "case {case}: {txs:?}");
        assert_eq!(
            stats.footprint_violations, 0,
            "case {case}: {stats:?} {txs:?}"
        );
        partitioned += usize::from(stats.footprint_groups > 1);
        // The accrual hooks come first, then the user transactions.
        let user = &want.outputs[MARKETS.len()..];
        for ((_, op), receipt) in txs.iter().zip(user) {
            if op.module() {
                module_txs += 1;
                module_ok += usize::from(receipt.status.is_success());
            }
        }
    }
    // Most blocks split (the rest have one group too large to be worth it), and a good part
    // of the module calls succeed: the blocks do real work, not only failures.
    assert!(
        partitioned * 4 > cases * 3,
        "only {partitioned} of {cases} blocks split"
    );
    assert!(
        module_ok * 4 > module_txs,
        "only {module_ok} of {module_txs} module calls succeeded"
    );
}

/// Blocks of lending calls (supplies, withdrawals, borrows, repayments, liquidations; some
/// failing), staking calls, underwriting, cover purchases and transfers run in home lanes:
/// a call acts for its sender (and the borrower it liquidates, the insurance pool it
/// changes, the cover it creates), reads the markets, prices and accumulators, moves the
/// totals by deltas and takes from the shared cash and vaults, within what they hold. The
/// result is the sequential one.
#[test]
fn module_blocks_run_in_home_lanes_and_equal_sequential() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let d = defi();
    let rt = bridged_runtime().at_height(HEIGHT);
    let pool = two_threads();
    let x = 0..MARKETS.len();
    let amt = || prop_oneof![0u128..1_000, 0u128..600_000];
    let lending = prop_oneof![
        24 => (x.clone(), amt()).prop_map(|(x, amount)| Op::Supply { x, amount }),
        16 => (x.clone(), amt()).prop_map(|(x, amount)| Op::Withdraw { x, amount }),
        16 => (x.clone(), amt()).prop_map(|(x, amount)| Op::Borrow { x, amount }),
        16 => (x, amt()).prop_map(|(x, amount)| Op::Repay { x, amount }),
        3 => (D_ACCOUNTS - UNDERWATER..D_ACCOUNTS, 0..MARKETS.len(), 0u128..200_000)
            .prop_map(|(borrower, coll, amount)| Op::Liquidate { borrower, coll, amount }),
        12 => (0..D_ACCOUNTS, 0u128..2_000).prop_map(|(to, amount)| Op::Transfer { to, amount }),
        8 => (0..2usize, amt()).prop_map(|(p, amount)| Op::Stake { p, amount }),
        6 => (0..2usize, amt()).prop_map(|(p, amount)| Op::Unbond { p, amount }),
        4 => (0..2usize).prop_map(|p| Op::StakingWithdraw { p }),
        4 => (0..2usize).prop_map(|p| Op::Claim { p }),
        2 => (0..2usize, amt()).prop_map(|(p, amount)| Op::Underwrite { p, amount }),
        2 => (0..2usize, 0u128..100_000, 0u64..3_000, prop_oneof![Just(u128::MAX), 0u128..50])
            .prop_map(|(p, amount, period, max_premium)| Op::BuyCover {
                p,
                amount,
                period,
                max_premium
            }),
    ];
    let strategy = proptest::collection::vec((0u32..D_ACCOUNTS, lending), 40..160);
    let mut runner = TestRunner::deterministic();
    let (mut homed, cases) = (0, 40);
    for case in 0..cases {
        let txs = strategy
            .new_tree(&mut runner)
            .expect("a random block")
            .current();
        let block = defi_block(&d, &txs);
        let want = execute_sequential(&rt, &block, &d.state);
        let (got, stats) = eager(&pool).execute_block_with_stats(&rt, &block, &d.state);
        assert_eq!(got, want, "case {case}: {txs:?}");
        homed += usize::from(stats.home_lanes == 2);
    }
    assert!(
        homed * 2 > cases,
        "only {homed} of {cases} blocks in home lanes"
    );
}

#[test]
fn module_calls_of_distinct_accounts_share_totals_and_vaults_without_joining() {
    let d = defi();
    let rt = bridged_runtime().at_height(HEIGHT);
    // One call per account, all succeeding; they share market totals, cash, vaults, stake
    // totals, a claim's tally and the BTC supply, mint headroom and bridge totals, which are
    // only added to and `try_sub`ed from.
    let ops = |i: u32| match i % 14 {
        0 => Op::Supply {
            x: 0,
            amount: 5_000,
        },
        1 => Op::Withdraw {
            x: 0,
            amount: 5_000,
        },
        2 => Op::Borrow {
            x: 1,
            amount: 5_000,
        },
        3 => Op::Repay {
            x: 1,
            amount: 5_000,
        },
        4 => Op::Stake {
            p: 0,
            amount: 5_000,
        },
        5 => Op::Unbond {
            p: 0,
            amount: 5_000,
        },
        6 => Op::StakingWithdraw { p: 0 },
        7 => Op::Claim { p: 1 },
        8 => Op::StakeAssessor {
            p: 0,
            amount: 5_000,
        },
        9 => Op::Vote {
            p: 0,
            c: 0,
            approve: i.is_multiple_of(2),
        },
        10 => Op::RequestWithdrawal { p: 1, shares: 10 },
        11 => Op::Deposit {
            outpoint: i as u8,
            to: i,
            amount: 20_000,
        },
        12 => Op::BridgeWithdraw {
            amount: 20_000,
            standard: true,
        },
        _ => Op::Transfer { to: 0, amount: 7 },
    };
    let txs: Vec<(u32, Op)> = (1..D_ACCOUNTS - UNDERWATER).map(|i| (i, ops(i))).collect();
    let block = defi_block(&d, &txs);
    let want = execute_sequential(&rt, &block, &d.state);
    assert!(
        want.outputs.iter().all(|r| r.status.is_success()),
        "{:?}",
        want.outputs
    );
    let pool = two_threads();
    let exec = eager(&pool);
    let (got, stats) = exec.execute_block_with_stats(&rt, &block, &d.state);
    assert_eq!(got, want);
    assert_eq!(stats.footprint_violations, 0, "{stats:?}");
    assert_eq!(stats.footprint_groups, txs.len() as u64, "{stats:?}");
}

#[test]
fn a_price_update_joins_the_health_checks_it_affects() {
    let d = defi();
    let rt = bridged_runtime().at_height(HEIGHT);
    let mut txs: Vec<(u32, Op)> = (0..40)
        .map(|i| {
            (
                i,
                Op::Borrow {
                    x: 1,
                    amount: 1_000,
                },
            )
        })
        .collect();
    txs.push((
        0,
        Op::SetPrice {
            x: 1,
            price: WAD / 10 * 11,
        },
    ));
    txs.extend((40..60).map(|i| {
        (
            i,
            Op::Supply {
                x: 0,
                amount: 1_000,
            },
        )
    }));
    let block = defi_block(&d, &txs);
    let want = execute_sequential(&rt, &block, &d.state);
    let pool = two_threads();
    let exec = eager(&pool);
    let (got, stats) = exec.execute_block_with_stats(&rt, &block, &d.state);
    assert_eq!(got, want);
    assert_eq!(stats.footprint_violations, 0, "{stats:?}");
    // The borrows read the price the oracle writes: one group with it; the supplies (no
    // health check) run apart.
    assert_eq!(stats.footprint_groups, 21, "{stats:?}");
}
