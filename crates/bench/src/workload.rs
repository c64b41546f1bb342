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
//! | `defi-mix` | a random account | every module at once, in the proportions below | a realistic block: mostly independent, some chains on hot pools |
//!
//! `lending-mix` starts from a BTC and a token market created at genesis through the runtime
//! (prices 1:1, a lender supplying the token), every account supplying [`LENDING_COLLATERAL`]
//! sats and owing [`LENDING_DEBT`] of the token; its blocks begin with the markets' accrual
//! hooks. The plan tracks each account's collateral and debt, so a borrow or a withdrawal
//! that would leave it under-collateralised, or a repay above its debt, is planned as a
//! supply instead: every transaction succeeds.
//!
//! `defi-mix` mixes every module, by share of transactions:
//!
//! | share | transaction |
//! |---|---|
//! | 40% | BTC transfer to a random account |
//! | 20% | instant swap BTC → token on one of [`DEFI_SWAP_POOLS`] pools at random |
//! | 10% | batch swap, either direction, on one of the first [`DEFI_BATCH_POOLS`] of them |
//! | 6% / 5% / 4% | lending: supply BTC / borrow the token / repay it |
//! | 6% / 4% | staking: stake BTC / unbond it |
//! | 3% / 2% | insurance: buy cover / underwrite, on one of [`DEFI_INSURANCE_POOLS`] pools |
//!
//! Where the proportions come from: on public chains with a DeFi ecosystem (Ethereum and its
//! rollups, as broken down by transaction count on public dashboards such as Dune's and
//! Etherscan's top contracts), plain and token transfers are the largest group (roughly 40–50%
//! of transactions), DEX trades the next (roughly a quarter to a third; we split them 2:1
//! between instant swaps and batch auctions), lending a few to ten percent, staking deposits
//! and withdrawals a few percent, and on-chain insurance well under one percent. These are
//! rounded orders of magnitude, not a measurement; insurance is over-weighted (5%) so that its
//! paths carry weight in the figure. Swaps are spread uniformly over the pools, batch swaps
//! concentrate on a few hot pairs (as trading volume does).
//!
//! Its genesis is built through the runtime: `lending-mix`'s two markets and positions, the
//! [`DEFI_SWAP_POOLS`] dex pools of the swap workloads, one staking pool of BTC in which every
//! account stakes [`DEFI_STAKE`], and [`DEFI_INSURANCE_POOLS`] insurance pools of BTC each
//! underwritten with [`INSURANCE_CAPITAL`] by the market maker. Its blocks begin with the
//! markets' accrual hooks and end with the batch settlements. The plan keeps lending positions
//! collateralised (as `lending-mix`), unbonds at most the planned stake (and at most 32
//! entries), funds each cover buyer with the premium at full utilisation (an upper bound,
//! also its `max_premium`) and underwrites at least 1,000 sats (worth more than one share):
//! every transaction succeeds.
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

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use parabit_exec::{execute_sequential, KeyMap, Value};
use parabit_modules::staking::{self, StakingPoolId};
use parabit_modules::{
    begin_block_hooks, block_txs, genesis_state, BankMsg, BlockTx, Call, DexMsg, InsuranceId,
    InsuranceMsg, InsurancePool, LendingMsg, Runtime, SignedTx, StakingMsg, Tx,
};
use parabit_modules::{insurance, lending};
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

/// `defi-mix`: pools for instant swaps (`BTC/pool_token(i)`, created at genesis).
pub const DEFI_SWAP_POOLS: u32 = 64;
/// `defi-mix`: batch swaps go to the first this many of the swap pools.
pub const DEFI_BATCH_POOLS: u32 = 4;
/// `defi-mix`: insurance pools of BTC.
pub const DEFI_INSURANCE_POOLS: u32 = 16;
/// `defi-mix`: capital the market maker underwrites in each insurance pool at genesis.
pub const INSURANCE_CAPITAL: Amount = 1_000_000_000_000;
/// `defi-mix`: BTC every account stakes at genesis.
pub const DEFI_STAKE: Amount = 100_000;
/// `defi-mix` insurance pools: capacity 50% of capital, 2% + 8% · utilisation per 100,000
/// blocks, 100 blocks' notice, 50 blocks of voting, quorum 20%.
const INSURANCE_PARAMS: InsurancePool = InsurancePool {
    asset: AssetId::BTC,
    max_cover_bps: 5_000,
    base_rate_bps: 200,
    slope_bps: 800,
    notice_blocks: 100,
    vote_blocks: 50,
    quorum_bps: 2_000,
};
/// `defi-mix` cover names.
const RISKS: [&str; 4] = ["bridge", "oracle", "contract-bug", "depeg"];

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
    /// Every module at once: transfers, swaps, batch swaps, lending, staking, insurance.
    DefiMix,
}

impl WorkloadKind {
    /// Every workload, in the order `--workload all` runs them.
    pub const ALL: [WorkloadKind; 8] = [
        WorkloadKind::TransferUniform,
        WorkloadKind::TransferHot,
        WorkloadKind::TransferSerial,
        WorkloadKind::SwapPools,
        WorkloadKind::SwapHot,
        WorkloadKind::BatchswapHot,
        WorkloadKind::LendingMix,
        WorkloadKind::DefiMix,
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
            WorkloadKind::DefiMix => "defi-mix",
        }
    }

    /// Pools the workload trades on (created at genesis).
    pub fn pools(self) -> u32 {
        match self {
            WorkloadKind::SwapPools => SWAP_POOLS,
            WorkloadKind::SwapHot | WorkloadKind::BatchswapHot => 1,
            WorkloadKind::DefiMix => DEFI_SWAP_POOLS,
            _ => 0,
        }
    }

    /// Whether its blocks begin with the lending markets' accrual hooks.
    pub fn accrues(self) -> bool {
        matches!(self, WorkloadKind::LendingMix | WorkloadKind::DefiMix)
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
    /// `defi-mix`: what the transaction does.
    defi: DefiOp,
    /// `defi-mix` cover: its period, its premium bound, its risk's index in [`RISKS`].
    period: u64,
    max_premium: Amount,
    risk: usize,
}

/// A `defi-mix` transaction's kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DefiOp {
    Transfer,
    Swap,
    BatchSwap,
    Supply,
    Borrow,
    Repay,
    Stake,
    Unbond,
    BuyCover,
    Underwrite,
}

impl DefiOp {
    /// The kind of a draw `r` in `0..100` (the proportions of the module doc).
    fn of(r: u32) -> DefiOp {
        match r {
            0..=39 => DefiOp::Transfer,
            40..=59 => DefiOp::Swap,
            60..=69 => DefiOp::BatchSwap,
            70..=75 => DefiOp::Supply,
            76..=80 => DefiOp::Borrow,
            81..=84 => DefiOp::Repay,
            85..=90 => DefiOp::Stake,
            91..=94 => DefiOp::Unbond,
            95..=97 => DefiOp::BuyCover,
            _ => DefiOp::Underwrite,
        }
    }
}

/// The call of a planned `defi-mix` transaction.
fn defi_call(p: &Planned, accounts: &Accounts) -> Call {
    let amount = p.amount;
    let token = pool_token(p.pool);
    match p.defi {
        DefiOp::Transfer => Call::Bank(BankMsg::Transfer {
            to: accounts.address(p.to as usize),
            asset: AssetId::BTC,
            amount,
        }),
        DefiOp::Swap => Call::Dex(DexMsg::SwapExactIn {
            path: vec![AssetId::BTC, token],
            amount_in: amount,
            min_out: 0,
            deadline: u64::MAX,
        }),
        DefiOp::BatchSwap => {
            let (asset_in, asset_out) = if p.sell_token {
                (token, AssetId::BTC)
            } else {
                (AssetId::BTC, token)
            };
            Call::Dex(DexMsg::BatchSwap {
                asset_in,
                asset_out,
                amount_in: amount,
                min_out: 0,
            })
        }
        DefiOp::Supply => Call::Lending(LendingMsg::Supply {
            asset: AssetId::BTC,
            amount,
        }),
        DefiOp::Borrow => Call::Lending(LendingMsg::Borrow {
            asset: LENDING_TOKEN,
            amount,
        }),
        DefiOp::Repay => Call::Lending(LendingMsg::Repay {
            asset: LENDING_TOKEN,
            amount,
        }),
        DefiOp::Stake => Call::Staking(StakingMsg::Stake {
            pool: defi_staking_pool(),
            amount,
        }),
        DefiOp::Unbond => Call::Staking(StakingMsg::Unbond {
            pool: defi_staking_pool(),
            amount,
        }),
        DefiOp::BuyCover => Call::Insurance(InsuranceMsg::BuyCover {
            pool: defi_insurance_pool(p.pool),
            risk: RISKS[p.risk % RISKS.len()].to_string(),
            amount,
            period_blocks: p.period,
            max_premium: p.max_premium,
        }),
        DefiOp::Underwrite => Call::Insurance(InsuranceMsg::Underwrite {
            pool: defi_insurance_pool(p.pool),
            amount,
        }),
    }
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
        // `defi-mix`: (account, pool) → the pool token the account sells in batch swaps.
        let mut pool_token_sends: BTreeMap<(u32, u32), Amount> = BTreeMap::new();
        for p in &plan {
            sends[p.from as usize] += FEE;
            if spec.kind == WorkloadKind::DefiMix {
                match p.defi {
                    DefiOp::BatchSwap if p.sell_token => {
                        *pool_token_sends.entry((p.from, p.pool)).or_default() += p.amount
                    }
                    DefiOp::Repay => token_sends[p.from as usize] += p.amount,
                    DefiOp::BuyCover => sends[p.from as usize] += p.max_premium,
                    DefiOp::Borrow | DefiOp::Unbond => {}
                    _ => sends[p.from as usize] += p.amount,
                }
            } else if spec.kind == WorkloadKind::LendingMix {
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
        let genesis = if spec.kind == WorkloadKind::DefiMix {
            // So far `balances` holds each account's BTC only.
            for b in balances.iter_mut() {
                b.2 += LENDING_COLLATERAL + DEFI_STAKE;
            }
            balances.extend((0..n).map(|i| {
                (
                    accounts.address(i),
                    LENDING_TOKEN,
                    BASE_BALANCE + token_sends[i],
                )
            }));
            balances.extend(pool_token_sends.iter().map(|(&(i, pool), &amount)| {
                (accounts.address(i as usize), pool_token(pool), amount)
            }));
            with_defi(&runtime, balances, accounts)?
        } else if spec.kind == WorkloadKind::LendingMix {
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
                    WorkloadKind::DefiMix => defi_call(p, accounts),
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
                let begin = if spec.kind.accrues() {
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
    let (config, setup) = lending_setup(runtime, &mut balances, accounts);
    let mut state = genesis_state(&balances);
    state.insert(config.0, config.1);
    run_setup(runtime, state, setup, "lending setup")
}

/// `lending-mix`'s setup (see [`with_lending`]): adds the lender's token to `balances` and
/// returns the lending configuration entry and the setup transactions (the market maker's
/// nonces 0 to 4, each account's 0 and 1).
fn lending_setup(
    runtime: &Runtime,
    balances: &mut Vec<(Address, AssetId, Amount)>,
    accounts: &Accounts,
) -> ((parabit_exec::Key, Value), Vec<Tx>) {
    let maker = SigningKey::from_seed(MARKET_MAKER_SEED).address();
    let n = accounts.len() as Amount;
    let cash = POOL_RESERVE + n * LENDING_DEBT;
    balances.push((maker, LENDING_TOKEN, cash));
    let config = lending::config_entry(&lending::LendingConfig {
        admin: maker,
        oracle: maker,
    });
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
    (config, setup)
}

/// Runs `setup` sequentially on `state` in one block; every transaction must succeed.
fn run_setup(
    runtime: &Runtime,
    mut state: KeyMap<Value>,
    setup: Vec<Tx>,
    what: &str,
) -> Result<KeyMap<Value>, BenchError> {
    let out = execute_sequential(runtime, &block_txs(Vec::new(), setup), &state);
    if let Some((i, r)) = out
        .outputs
        .iter()
        .enumerate()
        .find(|(_, r)| !r.status.is_success())
    {
        return Err(BenchError::InvalidSpec(format!(
            "{what} transaction {i} at genesis failed: {:?}",
            r.status
        )));
    }
    out.writes.apply_to(&mut state);
    Ok(state)
}

/// The market maker's nonce of `defi-mix`'s staking pool creation (after the lending setup's
/// 5 and one per swap pool); insurance pool `k` is created at the next nonce plus `2k`.
const DEFI_STAKING_NONCE: u64 = 5 + DEFI_SWAP_POOLS as u64;

/// `defi-mix`'s staking pool.
fn defi_staking_pool() -> StakingPoolId {
    staking::derive_pool_id(
        &SigningKey::from_seed(MARKET_MAKER_SEED).address(),
        DEFI_STAKING_NONCE,
    )
}

/// `defi-mix`'s insurance pool `k`.
fn defi_insurance_pool(k: u32) -> InsuranceId {
    insurance::derive_id(
        &SigningKey::from_seed(MARKET_MAKER_SEED).address(),
        DEFI_STAKING_NONCE + 1 + 2 * u64::from(k),
    )
}

/// The genesis state of `defi-mix` (see the module doc): `lending-mix`'s setup, then by the
/// market maker the swap pools, the staking pool and the underwritten insurance pools, then
/// every account's stake (nonce 2).
fn with_defi(
    runtime: &Runtime,
    mut balances: Vec<(Address, AssetId, Amount)>,
    accounts: &Accounts,
) -> Result<KeyMap<Value>, BenchError> {
    let maker = SigningKey::from_seed(MARKET_MAKER_SEED).address();
    let (config, mut setup) = lending_setup(runtime, &mut balances, accounts);
    balances.push((
        maker,
        AssetId::BTC,
        POOL_RESERVE * Amount::from(DEFI_SWAP_POOLS)
            + INSURANCE_CAPITAL * Amount::from(DEFI_INSURANCE_POOLS),
    ));
    balances.extend((0..DEFI_SWAP_POOLS).map(|i| (maker, pool_token(i), POOL_RESERVE)));
    let tx = |sender: Address, nonce: u64, call: Call| Tx {
        chain_id: runtime.chain_id,
        sender,
        nonce,
        fee: 0,
        call,
    };
    let mut nonce = 5u64;
    for i in 0..DEFI_SWAP_POOLS {
        setup.push(tx(
            maker,
            nonce,
            Call::Dex(DexMsg::AddLiquidity {
                asset_x: AssetId::BTC,
                asset_y: pool_token(i),
                amount_x_desired: POOL_RESERVE,
                amount_y_desired: POOL_RESERVE,
                amount_x_min: POOL_RESERVE,
                amount_y_min: POOL_RESERVE,
                deadline: u64::MAX,
            }),
        ));
        nonce += 1;
    }
    debug_assert_eq!(nonce, DEFI_STAKING_NONCE);
    setup.push(tx(
        maker,
        nonce,
        Call::Staking(StakingMsg::CreatePool {
            stake_asset: AssetId::BTC,
            reward_asset: AssetId::BTC,
            unbonding_blocks: 100,
            slash_destination: maker,
        }),
    ));
    nonce += 1;
    for k in 0..DEFI_INSURANCE_POOLS {
        setup.push(tx(
            maker,
            nonce,
            Call::Insurance(InsuranceMsg::CreatePool(INSURANCE_PARAMS)),
        ));
        setup.push(tx(
            maker,
            nonce + 1,
            Call::Insurance(InsuranceMsg::Underwrite {
                pool: defi_insurance_pool(k),
                amount: INSURANCE_CAPITAL,
            }),
        ));
        nonce += 2;
    }
    let pool = defi_staking_pool();
    setup.extend((0..accounts.len()).map(|i| {
        tx(
            accounts.address(i),
            2,
            Call::Staking(StakingMsg::Stake {
                pool,
                amount: DEFI_STAKE,
            }),
        )
    }));
    let mut state = genesis_state(&balances);
    state.insert(config.0, config.1);
    run_setup(runtime, state, setup, "defi-mix setup")
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
    let defi = spec.kind == WorkloadKind::DefiMix;
    let lending = spec.kind == WorkloadKind::LendingMix || defi;
    // `lending-mix` accounts used nonces 0 and 1 at genesis, `defi-mix` accounts also 2.
    let first_nonce = match spec.kind {
        WorkloadKind::LendingMix => 2u64,
        WorkloadKind::DefiMix => 3,
        _ => 0,
    };
    let mut nonces = vec![first_nonce; spec.accounts];
    // `defi-mix`: each account's stake and unbonding entries in the staking pool.
    let mut staked = vec![if defi { DEFI_STAKE } else { 0 }; spec.accounts];
    let mut entries = vec![0usize; spec.accounts];
    // `lending-mix`: each account's collateral and debt (prices 1:1, indices 1: no interest
    // accrues at the workload's fixed height).
    let mut collateral = vec![if lending { LENDING_COLLATERAL } else { 0 }; spec.accounts];
    let mut debt = vec![if lending { LENDING_DEBT } else { 0 }; spec.accounts];
    (0..spec.txs)
        .map(|_| {
            let mut pool = 0;
            let mut sell_token = false;
            let mut lend_op = 0;
            let mut op = DefiOp::Transfer;
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
                WorkloadKind::DefiMix => {
                    op = DefiOp::of(rng.gen_range(0..100u32));
                    match op {
                        DefiOp::Swap => pool = rng.gen_range(0..DEFI_SWAP_POOLS),
                        DefiOp::BatchSwap => {
                            pool = rng.gen_range(0..DEFI_BATCH_POOLS);
                            sell_token = rng.gen_bool(0.5);
                        }
                        DefiOp::BuyCover | DefiOp::Underwrite => {
                            pool = rng.gen_range(0..DEFI_INSURANCE_POOLS)
                        }
                        _ => {}
                    }
                    let from = rng.gen_range(0..n);
                    let to = rng.gen_range(0..n - 1);
                    (from, if to >= from { to + 1 } else { to })
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
            let (mut period, mut max_premium, mut risk) = (0, 0, 0);
            let mut amount = amount;
            if defi {
                // Lending ops go through the feasibility check below; the others here.
                lend_op = match op {
                    DefiOp::Supply => 0,
                    DefiOp::Borrow => 1,
                    DefiOp::Repay => 2,
                    _ => 5,
                };
                let i = from as usize;
                match op {
                    DefiOp::Unbond
                        if staked[i] >= amount && entries[i] < staking::MAX_UNBONDING_ENTRIES =>
                    {
                        staked[i] -= amount;
                        entries[i] += 1;
                    }
                    DefiOp::Unbond | DefiOp::Stake => {
                        op = DefiOp::Stake;
                        staked[i] += amount;
                    }
                    DefiOp::BuyCover => {
                        amount *= 10;
                        period = rng.gen_range(100..=10_000u64);
                        risk = rng.gen_range(0..RISKS.len());
                        // The premium at full utilisation: an upper bound of the real one.
                        let rate = Amount::from(
                            INSURANCE_PARAMS.base_rate_bps + INSURANCE_PARAMS.slope_bps,
                        );
                        max_premium = (amount * rate * Amount::from(period))
                            .div_ceil(insurance::BPS * insurance::RATE_PERIOD_BLOCKS)
                            .max(1);
                    }
                    // At least 1,000 sats: worth at least 999 shares while the share price is
                    // below 1.001.
                    DefiOp::Underwrite => amount = 1_000 + amount * 10,
                    _ => {}
                }
            }
            if lending && lend_op < 5 {
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
                if defi {
                    op = match lend_op {
                        1 => DefiOp::Borrow,
                        2 => DefiOp::Repay,
                        _ => DefiOp::Supply,
                    };
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
                defi: op,
                period,
                max_premium,
                risk,
            }
        })
        .collect()
}
