//! The benchmark workloads: deterministic accounts, genesis, and blocks of signed transfers.
//!
//! | name | who sends | who receives | what it measures |
//! |---|---|---|---|
//! | `transfer-uniform` | a random account | another random account | the common case: few conflicts |
//! | `transfer-hot` | a random account other than the hot one | always account 0 | deltas: one key every transaction credits |
//! | `transfer-serial` | always account 0, consecutive nonces | a random other account | the worst case: a dependency chain, nothing can run in parallel |
//! | `swap-pools` | a random account | an instant swap BTC → token on one of [`SWAP_POOLS`] pools at random | independent pools: few conflicts |
//! | `swap-hot` | a random account | an instant swap BTC → token on one pool | a chain on one pool's reserves: nothing can run in parallel |
//! | `batchswap-hot` | a random account | a batch swap on one pool, either direction at random | batch orders only add to the pool's totals: no conflicts until the end-block settlement |
//! | `lending-mix` | a random account | supply BTC 30%, borrow the token 25%, repay 20%, withdraw BTC 15%, BTC transfer 10% on two lending markets | market totals move by deltas: many users on one market without conflicts |
//!
//! `lending-mix` starts from a BTC and a token market created at genesis through the runtime
//! (prices 1:1, a lender supplying the token), every account supplying [`LENDING_COLLATERAL`]
//! sats and owing [`LENDING_DEBT`] of the token; its blocks begin with the markets' accrual
//! hooks. The plan tracks each account's collateral and debt, so a borrow or a withdrawal
//! that would leave it under-collateralised, or a repay above its debt, is planned as a
//! supply instead: every transaction succeeds.
//!
//! The swap workloads start from pools created at genesis by a market-maker account
//! (`BTC/token i`, [`POOL_RESERVE`] of each side); their blocks end with the dex's end-block
//! hooks ([`block_txs`]). Swaps move 2 to [`MAX_TRANSFER`] base units with `min_out` 0 (a
//! batch order too small to receive anything is refunded; its transaction still succeeds).
//!
//! Every transaction pays [`FEE`] to the runtime's fee account and moves a random amount of
//! 1 to [`MAX_TRANSFER`] satoshis of BTC. Some senders of `transfer-uniform` and
//! `transfer-hot` send several transactions in one block (consecutive nonces): a few real
//! dependencies, as in a real block.
//!
//! Invariants:
//! - Account `i`'s key is `SigningKey::from_seed(b"parabit-bench" ‖ seed_le ‖ i_le)`
//!   (`u64`s); the transaction plan comes from a ChaCha8 stream seeded by the seed and the
//!   workload name. Keys are derived and transactions signed in parallel, but the results are
//!   collected in index order, so the output does not depend on the thread count.
//! - Every account holds [`BASE_BALANCE`] at genesis plus exactly what it sends (amounts and
//!   fees), so every transaction succeeds and every account of the population is in the state.

use std::fmt;
use std::str::FromStr;

use parabit_exec::{execute_sequential, KeyMap, Value};
use parabit_modules::lending;
use parabit_modules::{
    begin_block_hooks, block_txs, genesis_state, BankMsg, BlockTx, Call, DexMsg, LendingMsg,
    Runtime, SignedTx, Tx,
};
use parabit_primitives::{Address, Amount, AssetId, SigningKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::BenchError;
use crate::progress::Progress;

/// Chain id of every benchmark transaction.
pub const BENCH_CHAIN_ID: u64 = 0x7062_6265_6e63; // "pbbenc"
/// Fee of every benchmark transaction, in satoshis.
pub const FEE: Amount = 10;
/// Largest amount a benchmark transfer moves, in satoshis.
pub const MAX_TRANSFER: Amount = 1_000;
/// What every account holds at genesis besides what it will send.
pub const BASE_BALANCE: Amount = 1_000_000;

/// Seed of the runtime's fee account key.
const FEE_ACCOUNT_SEED: &[u8] = b"parabit-bench/fee-account";
/// Seed of the key of the account that provides the swap workloads' liquidity at genesis.
const MARKET_MAKER_SEED: &[u8] = b"parabit-bench/market-maker";

/// Pools of `swap-pools`.
pub const SWAP_POOLS: u32 = 1_000;
/// Each side of every pool of the swap workloads at genesis.
pub const POOL_RESERVE: Amount = 1_000_000_000_000;

/// The token borrowed in `lending-mix`.
pub const LENDING_TOKEN: AssetId = AssetId(0x7062_1000_0000);
/// BTC every `lending-mix` account supplies at genesis, in satoshis.
pub const LENDING_COLLATERAL: Amount = 500_000;
/// Token every `lending-mix` account owes at genesis.
pub const LENDING_DEBT: Amount = 100_000;

/// The token of the swap workloads' pool `i` (paired with BTC).
pub fn pool_token(i: u32) -> AssetId {
    AssetId(0x7062_0000_0000 + u64::from(i))
}

/// A workload's name: shared by `parabit bench`, the criterion benches and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// Random sender, random recipient.
    TransferUniform,
    /// Every transaction credits one hot account.
    TransferHot,
    /// Every transaction comes from one sender.
    TransferSerial,
    /// Instant swaps on [`SWAP_POOLS`] independent pools.
    SwapPools,
    /// Instant swaps on one pool.
    SwapHot,
    /// Batch swaps on one pool, settled at end of block.
    BatchswapHot,
    /// Supplies, borrows, repays, withdrawals and transfers on two lending markets.
    LendingMix,
}

impl WorkloadKind {
    /// Every workload, in the order `--workload all` runs them.
    pub const ALL: [WorkloadKind; 7] = [
        WorkloadKind::TransferUniform,
        WorkloadKind::TransferHot,
        WorkloadKind::TransferSerial,
        WorkloadKind::SwapPools,
        WorkloadKind::SwapHot,
        WorkloadKind::BatchswapHot,
        WorkloadKind::LendingMix,
    ];

    /// The workload's name.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::TransferUniform => "transfer-uniform",
            WorkloadKind::TransferHot => "transfer-hot",
            WorkloadKind::TransferSerial => "transfer-serial",
            WorkloadKind::SwapPools => "swap-pools",
            WorkloadKind::SwapHot => "swap-hot",
            WorkloadKind::BatchswapHot => "batchswap-hot",
            WorkloadKind::LendingMix => "lending-mix",
        }
    }

    /// Pools the workload trades on (created at genesis).
    pub fn pools(self) -> u32 {
        match self {
            WorkloadKind::SwapPools => SWAP_POOLS,
            WorkloadKind::SwapHot | WorkloadKind::BatchswapHot => 1,
            _ => 0,
        }
    }

    /// All names, comma-separated (for error messages and help).
    pub fn names() -> String {
        WorkloadKind::ALL.map(WorkloadKind::name).join(", ")
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WorkloadKind {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<WorkloadKind, BenchError> {
        WorkloadKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| BenchError::UnknownWorkload(s.to_string()))
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// Which workload.
    pub kind: WorkloadKind,
    /// Accounts in the population (all funded at genesis); at least 2.
    pub accounts: usize,
    /// Transactions in all; at least 1.
    pub txs: usize,
    /// Transactions per block (the last block may be shorter); at least 1.
    pub block_size: usize,
    /// Seed of keys and of the transaction plan.
    pub seed: u64,
}

impl WorkloadSpec {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.accounts < 2 {
            return Err(BenchError::InvalidSpec(format!(
                "--accounts must be at least 2 (a sender and a recipient), got {}",
                self.accounts
            )));
        }
        if self.accounts > u32::MAX as usize {
            return Err(BenchError::InvalidSpec(format!(
                "--accounts must be at most {}, got {}",
                u32::MAX,
                self.accounts
            )));
        }
        if self.txs == 0 {
            return Err(BenchError::InvalidSpec("--txs must be at least 1".into()));
        }
        if self.block_size == 0 {
            return Err(BenchError::InvalidSpec(
                "--block-size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The deterministic key population of a seed.
pub struct Accounts {
    seed: u64,
    keys: Vec<SigningKey>,
}

impl Accounts {
    /// The seed of account `i`'s key: `b"parabit-bench" ‖ seed_le ‖ i_le`.
    pub fn key_seed(seed: u64, i: u64) -> [u8; 29] {
        let mut out = [0u8; 29];
        out[..13].copy_from_slice(b"parabit-bench");
        out[13..21].copy_from_slice(&seed.to_le_bytes());
        out[21..].copy_from_slice(&i.to_le_bytes());
        out
    }

    /// Derives `n` keys in parallel on the current rayon pool.
    pub fn derive(seed: u64, n: usize, progress: bool) -> Accounts {
        let bar = Progress::new(progress, n as u64, "deriving account keys");
        let keys = (0..n)
            .into_par_iter()
            .with_min_len(256)
            .map(|i| {
                let key = SigningKey::from_seed(&Accounts::key_seed(seed, i as u64));
                if i % 256 == 255 {
                    bar.inc(256);
                }
                key
            })
            .collect();
        bar.finish();
        tracing::debug!(n, seed, "derived account keys");
        Accounts { seed, keys }
    }

    /// The seed they were derived from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Account `i`'s key.
    pub fn key(&self, i: usize) -> &SigningKey {
        &self.keys[i]
    }

    /// Account `i`'s address.
    pub fn address(&self, i: usize) -> Address {
        self.keys[i].address()
    }
}

/// A generated workload: the runtime, the genesis state, and the blocks, both signed (for
/// pre-verification) and as the engine runs them (for execution): `blocks[b]` is
/// [`block_txs`] of the unsigned `signed[b]`, so `blocks[b][i]` is `BlockTx::User(signed[b][i].tx)`
/// followed by the block's end-block hooks, if any.
pub struct Workload {
    /// What was generated.
    pub spec: WorkloadSpec,
    /// The runtime the blocks execute on.
    pub runtime: Runtime,
    /// Every account funded in BTC.
    pub genesis: KeyMap<Value>,
    /// The blocks to execute: user transactions, then end-block hooks.
    pub blocks: Vec<Vec<BlockTx>>,
    /// The same blocks, signed.
    pub signed: Vec<Vec<SignedTx>>,
}

/// One planned transaction: sender index, recipient index (transfers), pool and direction
/// (swaps), amount.
struct Planned {
    from: u32,
    to: u32,
    nonce: u64,
    amount: Amount,
    pool: u32,
    sell_token: bool,
    /// `lending-mix`: 0 supply, 1 borrow, 2 repay, 3 withdraw, 4 transfer.
    lend_op: u8,
}

impl Workload {
    /// Derives the accounts and generates the workload (no progress bars).
    pub fn generate(spec: &WorkloadSpec) -> Result<Workload, BenchError> {
        spec.validate()?;
        let accounts = Accounts::derive(spec.seed, spec.accounts, false);
        Workload::generate_with(spec, &accounts, false)
    }

    /// Generates the workload with accounts derived beforehand (they can be shared by
    /// several workloads of the same seed and size).
    pub fn generate_with(
        spec: &WorkloadSpec,
        accounts: &Accounts,
        progress: bool,
    ) -> Result<Workload, BenchError> {
        spec.validate()?;
        if accounts.seed() != spec.seed || accounts.len() != spec.accounts {
            return Err(BenchError::AccountsMismatch {
                have_seed: accounts.seed(),
                have_len: accounts.len(),
                want_seed: spec.seed,
                want_len: spec.accounts,
            });
        }
        let n = spec.accounts;
        let plan = plan(spec);

        let mut sends = vec![0 as Amount; n];
        let mut token_sends = vec![0 as Amount; n];
        for p in &plan {
            sends[p.from as usize] += FEE;
            if spec.kind == WorkloadKind::LendingMix {
                match p.lend_op {
                    0 | 4 => sends[p.from as usize] += p.amount,
                    2 => token_sends[p.from as usize] += p.amount,
                    _ => {}
                }
            } else if p.sell_token {
                token_sends[p.from as usize] += p.amount;
            } else {
                sends[p.from as usize] += p.amount;
            }
        }
        let mut balances: Vec<(Address, AssetId, Amount)> = (0..n)
            .map(|i| (accounts.address(i), AssetId::BTC, BASE_BALANCE + sends[i]))
            .collect();
        if spec.kind == WorkloadKind::BatchswapHot {
            balances.extend((0..n).map(|i| {
                (
                    accounts.address(i),
                    pool_token(0),
                    BASE_BALANCE + token_sends[i],
                )
            }));
        }
        let runtime = Runtime::new(
            BENCH_CHAIN_ID,
            SigningKey::from_seed(FEE_ACCOUNT_SEED).address(),
        );
        let genesis = if spec.kind == WorkloadKind::LendingMix {
            // So far `balances` holds each account's BTC only.
            for b in balances.iter_mut() {
                b.2 += LENDING_COLLATERAL;
            }
            balances.extend((0..n).map(|i| {
                (
                    accounts.address(i),
                    LENDING_TOKEN,
                    BASE_BALANCE + token_sends[i],
                )
            }));
            with_lending(&runtime, balances, accounts)?
        } else {
            with_pools(&runtime, balances, spec.kind.pools())?
        };

        let bar = Progress::new(progress, plan.len() as u64, "signing transactions");
        let signed: Vec<SignedTx> = plan
            .par_iter()
            .enumerate()
            .with_min_len(128)
            .map(|(i, p)| {
                let key = accounts.key(p.from as usize);
                let token = pool_token(p.pool);
                let call = match spec.kind {
                    WorkloadKind::TransferUniform
                    | WorkloadKind::TransferHot
                    | WorkloadKind::TransferSerial => Call::Bank(BankMsg::Transfer {
                        to: accounts.address(p.to as usize),
                        asset: AssetId::BTC,
                        amount: p.amount,
                    }),
                    WorkloadKind::SwapPools | WorkloadKind::SwapHot => {
                        Call::Dex(DexMsg::SwapExactIn {
                            path: vec![AssetId::BTC, token],
                            amount_in: p.amount,
                            min_out: 0,
                            deadline: u64::MAX,
                        })
                    }
                    WorkloadKind::LendingMix => {
                        let amount = p.amount;
                        Call::Lending(match p.lend_op {
                            0 => LendingMsg::Supply {
                                asset: AssetId::BTC,
                                amount,
                            },
                            1 => LendingMsg::Borrow {
                                asset: LENDING_TOKEN,
                                amount,
                            },
                            2 => LendingMsg::Repay {
                                asset: LENDING_TOKEN,
                                amount,
                            },
                            3 => LendingMsg::Withdraw {
                                asset: AssetId::BTC,
                                amount,
                            },
                            _ => {
                                return key.sign(Tx {
                                    chain_id: BENCH_CHAIN_ID,
                                    sender: key.address(),
                                    nonce: p.nonce,
                                    fee: FEE,
                                    call: Call::Bank(BankMsg::Transfer {
                                        to: accounts.address(p.to as usize),
                                        asset: AssetId::BTC,
                                        amount,
                                    }),
                                })
                            }
                        })
                    }
                    WorkloadKind::BatchswapHot => {
                        let (asset_in, asset_out) = if p.sell_token {
                            (token, AssetId::BTC)
                        } else {
                            (AssetId::BTC, token)
                        };
                        Call::Dex(DexMsg::BatchSwap {
                            asset_in,
                            asset_out,
                            amount_in: p.amount,
                            min_out: 0,
                        })
                    }
                };
                let tx = Tx {
                    chain_id: BENCH_CHAIN_ID,
                    sender: key.address(),
                    nonce: p.nonce,
                    fee: FEE,
                    call,
                };
                let signed = key.sign(tx);
                if i % 128 == 127 {
                    bar.inc(128);
                }
                signed
            })
            .collect();
        bar.finish();

        let mut rest = signed.into_iter();
        let signed: Vec<Vec<SignedTx>> = std::iter::from_fn(|| {
            let block: Vec<SignedTx> = rest.by_ref().take(spec.block_size).collect();
            (!block.is_empty()).then_some(block)
        })
        .collect();
        let blocks = signed
            .iter()
            .map(|b| {
                let begin = if spec.kind == WorkloadKind::LendingMix {
                    begin_block_hooks(&[AssetId::BTC, LENDING_TOKEN])
                } else {
                    Vec::new()
                };
                block_txs(begin, b.iter().map(|s| s.tx.clone()).collect())
            })
            .collect();
        tracing::debug!(workload = %spec.kind, txs = spec.txs, "generated workload");
        Ok(Workload {
            spec: spec.clone(),
            runtime,
            genesis,
            blocks,
            signed,
        })
    }

    /// User transactions in all blocks (hooks not counted).
    pub fn txs(&self) -> usize {
        self.signed.iter().map(Vec::len).sum()
    }
}

/// The genesis state of `balances` plus `pools` pools `BTC/pool_token(i)` holding
/// [`POOL_RESERVE`] on each side, created by a market-maker account through the runtime.
fn with_pools(
    runtime: &Runtime,
    mut balances: Vec<(Address, AssetId, Amount)>,
    pools: u32,
) -> Result<KeyMap<Value>, BenchError> {
    if pools == 0 {
        return Ok(genesis_state(&balances));
    }
    let maker = SigningKey::from_seed(MARKET_MAKER_SEED).address();
    balances.push((maker, AssetId::BTC, POOL_RESERVE * Amount::from(pools)));
    balances.extend((0..pools).map(|i| (maker, pool_token(i), POOL_RESERVE)));
    let mut state = genesis_state(&balances);
    let setup: Vec<Tx> = (0..pools)
        .map(|i| Tx {
            chain_id: runtime.chain_id,
            sender: maker,
            nonce: u64::from(i),
            fee: 0,
            call: Call::Dex(DexMsg::AddLiquidity {
                asset_x: AssetId::BTC,
                asset_y: pool_token(i),
                amount_x_desired: POOL_RESERVE,
                amount_y_desired: POOL_RESERVE,
                amount_x_min: POOL_RESERVE,
                amount_y_min: POOL_RESERVE,
                deadline: u64::MAX,
            }),
        })
        .collect();
    let out = execute_sequential(runtime, &block_txs(Vec::new(), setup), &state);
    if let Some((i, r)) = out
        .outputs
        .iter()
        .enumerate()
        .find(|(_, r)| !r.status.is_success())
    {
        return Err(BenchError::InvalidSpec(format!(
            "creating pool {i} at genesis failed: {:?}",
            r.status
        )));
    }
    out.writes.apply_to(&mut state);
    Ok(state)
}

/// The genesis state of `balances` plus `lending-mix`'s two markets, created through the
/// runtime: a lender (the market-maker key, also admin and oracle) creates the BTC and
/// [`LENDING_TOKEN`] markets, prices both at 1, supplies the token, then every account
/// supplies [`LENDING_COLLATERAL`] sats and borrows [`LENDING_DEBT`] (nonces 0 and 1).
fn with_lending(
    runtime: &Runtime,
    mut balances: Vec<(Address, AssetId, Amount)>,
    accounts: &Accounts,
) -> Result<KeyMap<Value>, BenchError> {
    let maker = SigningKey::from_seed(MARKET_MAKER_SEED).address();
    let n = accounts.len() as Amount;
    let cash = POOL_RESERVE + n * LENDING_DEBT;
    balances.push((maker, LENDING_TOKEN, cash));
    let mut state = genesis_state(&balances);
    let (k, v) = lending::config_entry(&lending::LendingConfig {
        admin: maker,
        oracle: maker,
    });
    state.insert(k, v);
    let params = lending::MarketParams {
        base_rate_per_year: 20_000_000_000_000_000,
        multiplier_per_year: 100_000_000_000_000_000,
        jump_multiplier_per_year: 1_090_000_000_000_000_000,
        kink: 800_000_000_000_000_000,
        blocks_per_year: 2_102_400,
        reserve_factor: lending::WAD / 10,
        collateral_factor: 750_000_000_000_000_000,
        liquidation_threshold: 800_000_000_000_000_000,
        liquidation_bonus: lending::WAD / 10,
        close_factor: lending::WAD / 2,
    };
    let tx = |sender: Address, nonce: u64, msg: LendingMsg| Tx {
        chain_id: runtime.chain_id,
        sender,
        nonce,
        fee: 0,
        call: Call::Lending(msg),
    };
    let mut setup = Vec::with_capacity(accounts.len() * 2 + 5);
    for (i, asset) in [AssetId::BTC, LENDING_TOKEN].into_iter().enumerate() {
        setup.push(tx(
            maker,
            2 * i as u64,
            LendingMsg::CreateMarket { asset, params },
        ));
        setup.push(tx(
            maker,
            2 * i as u64 + 1,
            LendingMsg::SetPrice {
                asset,
                price: lending::WAD,
            },
        ));
    }
    setup.push(tx(
        maker,
        4,
        LendingMsg::Supply {
            asset: LENDING_TOKEN,
            amount: cash,
        },
    ));
    for i in 0..accounts.len() {
        let a = accounts.address(i);
        setup.push(tx(
            a,
            0,
            LendingMsg::Supply {
                asset: AssetId::BTC,
                amount: LENDING_COLLATERAL,
            },
        ));
        setup.push(tx(
            a,
            1,
            LendingMsg::Borrow {
                asset: LENDING_TOKEN,
                amount: LENDING_DEBT,
            },
        ));
    }
    let out = execute_sequential(runtime, &block_txs(Vec::new(), setup), &state);
    if let Some((i, r)) = out
        .outputs
        .iter()
        .enumerate()
        .find(|(_, r)| !r.status.is_success())
    {
        return Err(BenchError::InvalidSpec(format!(
            "lending setup transaction {i} at genesis failed: {:?}",
            r.status
        )));
    }
    out.writes.apply_to(&mut state);
    Ok(state)
}

/// The ChaCha8 stream of a workload: seeded by the seed and the workload's name.
fn rng_for(spec: &WorkloadSpec) -> ChaCha8Rng {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&spec.seed.to_le_bytes());
    let name = spec.kind.name().as_bytes();
    let len = name.len().min(24);
    seed[8..8 + len].copy_from_slice(&name[..len]);
    ChaCha8Rng::from_seed(seed)
}

/// The transactions of a workload, in order, with each sender's nonces.
fn plan(spec: &WorkloadSpec) -> Vec<Planned> {
    let mut rng = rng_for(spec);
    let n = spec.accounts as u32;
    let lending = spec.kind == WorkloadKind::LendingMix;
    // `lending-mix` accounts used nonces 0 and 1 at genesis.
    let mut nonces = vec![if lending { 2u64 } else { 0 }; spec.accounts];
    // `lending-mix`: each account's collateral and debt (prices 1:1, indices 1: no interest
    // accrues at the workload's fixed height).
    let mut collateral = vec![if lending { LENDING_COLLATERAL } else { 0 }; spec.accounts];
    let mut debt = vec![if lending { LENDING_DEBT } else { 0 }; spec.accounts];
    (0..spec.txs)
        .map(|_| {
            let mut pool = 0;
            let mut sell_token = false;
            let mut lend_op = 0;
            let (from, to) = match spec.kind {
                WorkloadKind::TransferUniform => {
                    let from = rng.gen_range(0..n);
                    let to = rng.gen_range(0..n - 1);
                    (from, if to >= from { to + 1 } else { to })
                }
                WorkloadKind::TransferHot => (rng.gen_range(1..n), 0),
                WorkloadKind::TransferSerial => (0, rng.gen_range(1..n)),
                WorkloadKind::SwapPools => {
                    pool = rng.gen_range(0..SWAP_POOLS);
                    (rng.gen_range(0..n), 0)
                }
                WorkloadKind::SwapHot => (rng.gen_range(0..n), 0),
                WorkloadKind::BatchswapHot => {
                    sell_token = rng.gen_bool(0.5);
                    (rng.gen_range(0..n), 0)
                }
                WorkloadKind::LendingMix => {
                    let r = rng.gen_range(0..100u32);
                    lend_op = match r {
                        0..=29 => 0,
                        30..=54 => 1,
                        55..=74 => 2,
                        75..=89 => 3,
                        _ => 4,
                    };
                    let from = rng.gen_range(0..n);
                    let to = rng.gen_range(0..n - 1);
                    (from, if to >= from { to + 1 } else { to })
                }
            };
            let amount = rng.gen_range(1..=MAX_TRANSFER);
            // A swap of 1 base unit at a 1:1 price pays nothing (0.3% fee): swaps move 2 or more.
            let amount = if spec.kind.pools() > 0 {
                amount.max(2)
            } else {
                amount
            };
            if lending {
                // Collateral factor 0.75 with a margin of a few units for the roundings.
                let (c, d) = (&mut collateral[from as usize], &mut debt[from as usize]);
                lend_op = match lend_op {
                    1 if (*d + amount) * 4 + 8 <= *c * 3 => 1,
                    2 if *d > amount => 2,
                    3 if *c > amount && (*c - amount) * 3 >= *d * 4 + 8 => 3,
                    4 => 4,
                    _ => 0,
                };
                match lend_op {
                    0 => *c += amount,
                    1 => *d += amount,
                    2 => *d -= amount,
                    3 => *c -= amount,
                    _ => {}
                }
            }
            let nonce = nonces[from as usize];
            nonces[from as usize] += 1;
            Planned {
                from,
                to,
                nonce,
                amount,
                pool,
                sell_token,
                lend_op,
            }
        })
        .collect()
}
