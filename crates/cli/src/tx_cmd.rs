//! `parabit tx <kind> …`: builds one module call from human input ([`build_call`]), signs it
//! with a keystore key, submits it over JSON-RPC and waits for its receipt.
//!
//! Flow: chain info (chain id, height) → the call, built and checked before any password
//! prompt, so bad input fails fast → the key (`--from`) → the nonce (`pb_getNonce` "pending", or
//! `--nonce`) → sign → `pb_sendRawTransaction` → poll `pb_getTransactionReceipt` until it
//! exists or `--wait-timeout` passes (`--no-wait` skips the wait).
//!
//! Invariants:
//! - [`build_call`] is a pure function of the parsed arguments, the [`Lookup`]'s answers,
//!   the channel records [`BuildCtx::channel`] gives and the channel state files named
//!   (`--state`): no RPC of its own, no key, so it is unit-tested offline.
//! - A channel state file is checked before anything is sent: both signatures over this
//!   chain's digest, the amounts against the channel's record (as the chain will).
//! - Amounts are exact base units from human units (see [`crate::human`]); a unit that
//!   disagrees with the asset the call needs is refused.
//! - Slippage bounds that the user does not give are computed from a fresh quote and
//!   `--slippage-bps`, never left at zero for swaps and cover purchases.
//! - The exit code is non-zero unless the transaction committed with a `success` receipt
//!   (or was only sent, with `--no-wait`, or only signed, with `--dry-run`).

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use parabit_modules::channels::{self, Channel, ChannelId, ChannelStatus, SignedState};
use parabit_modules::insurance::InsurancePool;
use parabit_modules::{
    bank, insurance, staking, BankMsg, BridgeMsg, Call, ChannelMsg, DexMsg, InsuranceMsg,
    LendingMsg, StakingMsg,
};
use parabit_primitives::{Address, AssetId, Network, Transaction};
use serde_json::{json, Value as Json};

use crate::channel_cmd::{self, StateFile};
use crate::client::{AssetMeta, ChainInfo, Lookup, Rpc, RpcArgs, RpcLookup};
use crate::human::{self, AssetRef};
use crate::wallet_cmd::{self, KeystoreArgs};

/// `parabit tx`.
#[derive(Debug, Args)]
pub struct TxArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// The keystore key that signs and pays (its name, or its address).
    #[arg(long, env = "PARABIT_FROM", global = true, value_name = "NAME")]
    from: Option<String>,
    /// The fee: whole satoshis (`1000`), or a BTC amount with its unit (`0.00001 BTC`).
    #[arg(long, default_value = "1000", global = true)]
    fee: String,
    /// Use this nonce instead of asking the node for the account's next one (for sending
    /// several transactions before the first commits).
    #[arg(long, global = true)]
    nonce: Option<u64>,
    /// Return after the node accepts the transaction, without waiting for its receipt.
    #[arg(long, global = true)]
    no_wait: bool,
    /// Seconds to wait for the receipt.
    #[arg(long, default_value_t = 60, value_name = "SECS", global = true)]
    wait_timeout: u64,
    /// Sign and print the transaction (hex) without sending it.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Print one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    kind: TxKind,
}

/// What to do: one variant per message a user sends to a module.
#[derive(Debug, Clone, Subcommand)]
pub enum TxKind {
    /// Sends an amount of an asset to an address (or a keystore key's name).
    Transfer {
        /// The recipient.
        #[arg(long)]
        to: String,
        /// How much: "0.5 BTC", "1000sat", or a number with --asset.
        #[arg(long)]
        amount: String,
        /// The asset (symbol or id) when the amount has no unit.
        #[arg(long)]
        asset: Option<AssetRef>,
    },
    /// Creates an asset; its whole supply goes to the sender.
    CreateAsset {
        /// 1 to 12 uppercase letters or digits.
        #[arg(long)]
        symbol: String,
        /// Decimals of its human unit (at most 18).
        #[arg(long)]
        decimals: u8,
        /// Initial supply in human units (with the new decimals).
        #[arg(long)]
        supply: String,
    },
    /// Deposits both assets of a pair into its pool (creating it) for LP shares.
    AddLiquidity {
        /// Most of the first asset to deposit ("1 BTC").
        #[arg(long)]
        amount_x: String,
        /// Most of the second asset to deposit ("60000 USDC").
        #[arg(long)]
        amount_y: String,
        /// The first asset when --amount-x has no unit.
        #[arg(long)]
        asset_x: Option<AssetRef>,
        /// The second asset when --amount-y has no unit.
        #[arg(long)]
        asset_y: Option<AssetRef>,
        /// Least of the first asset to deposit (default 0).
        #[arg(long)]
        min_x: Option<String>,
        /// Least of the second asset to deposit (default 0).
        #[arg(long)]
        min_y: Option<String>,
        /// Valid for this many blocks from now.
        #[arg(long, default_value_t = 100)]
        deadline_blocks: u64,
    },
    /// Burns LP shares for the pool's assets.
    RemoveLiquidity {
        /// The pool: two assets, "BTC-USDC" or "0-1".
        #[arg(long)]
        pool: String,
        /// LP shares to burn (base units; LP assets have 0 decimals).
        #[arg(long)]
        liquidity: u128,
        /// Least of the pool's first asset to receive (default 0).
        #[arg(long)]
        min_x: Option<String>,
        /// Least of the pool's second asset to receive (default 0).
        #[arg(long)]
        min_y: Option<String>,
        /// Valid for this many blocks from now.
        #[arg(long, default_value_t = 100)]
        deadline_blocks: u64,
    },
    /// Swaps now against the pools: exactly --amount-in for at least --min-out, or (with
    /// --amount-out) exactly that output for at most --max-in.
    Swap {
        /// Exact input ("0.1 BTC").
        #[arg(
            long,
            required_unless_present = "amount_out",
            conflicts_with = "amount_out"
        )]
        amount_in: Option<String>,
        /// Exact output ("500 USDC").
        #[arg(long)]
        amount_out: Option<String>,
        /// The asset sold, when the amount does not name it.
        #[arg(long = "in", value_name = "ASSET")]
        asset_in: Option<AssetRef>,
        /// The asset bought, when no --route is given.
        #[arg(long = "out", value_name = "ASSET")]
        asset_out: Option<AssetRef>,
        /// The whole path, e.g. BTC,ETH,USDC (one pool per consecutive pair).
        #[arg(long)]
        route: Option<String>,
        /// Least output accepted (default: the quote less --slippage-bps).
        #[arg(long, conflicts_with = "amount_out")]
        min_out: Option<String>,
        /// Most input accepted with --amount-out (default: the quote plus --slippage-bps).
        #[arg(long, requires = "amount_out")]
        max_in: Option<String>,
        /// Tolerance on the quote when --min-out/--max-in are not given, in basis points.
        #[arg(long, default_value_t = 50)]
        slippage_bps: u32,
        /// Valid for this many blocks from now.
        #[arg(long, default_value_t = 100)]
        deadline_blocks: u64,
    },
    /// Places an order in a pool's end-of-block batch auction (one clearing price per block).
    BatchSwap {
        /// Input, taken now ("0.1 BTC").
        #[arg(long)]
        amount_in: String,
        /// The asset sold, when the amount does not name it.
        #[arg(long = "in", value_name = "ASSET")]
        asset_in: Option<AssetRef>,
        /// The asset bought.
        #[arg(long = "out", value_name = "ASSET")]
        asset_out: AssetRef,
        /// Least output at the clearing price, or the order is refunded (default: the
        /// batch quote less --slippage-bps).
        #[arg(long)]
        min_out: Option<String>,
        /// Tolerance on the quote when --min-out is not given, in basis points.
        #[arg(long, default_value_t = 100)]
        slippage_bps: u32,
    },
    /// Supplies to a lending market for interest-bearing shares.
    Supply(LendAmount),
    /// Withdraws supplied funds from a lending market.
    Withdraw(LendAmount),
    /// Borrows from a lending market against supplied collateral.
    Borrow(LendAmount),
    /// Repays debt ("max" repays all of it; any excess is not taken).
    Repay(LendAmount),
    /// Repays an unhealthy account's debt and seizes its collateral at a bonus.
    Liquidate {
        /// The unhealthy borrower (address or key name).
        #[arg(long)]
        borrower: String,
        /// The debt to repay ("100 USDC").
        #[arg(long)]
        amount: String,
        /// The debt asset when --amount has no unit.
        #[arg(long)]
        asset: Option<AssetRef>,
        /// The collateral asset to seize.
        #[arg(long)]
        collateral: AssetRef,
    },
    /// Sets an asset's oracle price (the oracle account only).
    SetPrice {
        /// The asset.
        #[arg(long)]
        asset: AssetRef,
        /// Value of one base unit in value units, as a decimal (stored as 1e18 fixed point).
        #[arg(long)]
        price: String,
    },
    /// Creates a staking pool whose authority is the sender.
    CreateStakingPool {
        /// The staked asset.
        #[arg(long)]
        stake_asset: AssetRef,
        /// The reward asset.
        #[arg(long)]
        reward_asset: AssetRef,
        /// Blocks an unbonding entry waits.
        #[arg(long)]
        unbonding_blocks: u64,
        /// Where slashed tokens go (default: the sender).
        #[arg(long)]
        slash_destination: Option<String>,
    },
    /// Stakes in a staking pool.
    Stake(PoolAmount),
    /// Starts unbonding stake (withdrawable after the pool's unbonding period).
    Unbond(PoolAmount),
    /// Pays out released unbonding entries.
    WithdrawStake(PoolOnly),
    /// Pays the sender's pending staking rewards.
    ClaimRewards(PoolOnly),
    /// Adds rewards to a staking pool (in its reward asset).
    FundRewards(PoolAmount),
    /// Slashes a staker (the pool authority only).
    Slash {
        /// The staking pool id.
        #[arg(long)]
        pool: u64,
        /// The staker (address or key name).
        #[arg(long)]
        staker: String,
        /// Parts per million of stake slashed (1 to 1,000,000).
        #[arg(long)]
        fraction_ppm: u32,
    },
    /// Creates an insurance pool.
    CreateInsurancePool {
        /// The asset of capital, premiums, cover and assessor stake.
        #[arg(long)]
        asset: AssetRef,
        /// Capacity as a fraction of capital, basis points.
        #[arg(long, default_value_t = 8_000)]
        max_cover_bps: u32,
        /// Premium rate at zero utilisation, basis points per rate period.
        #[arg(long, default_value_t = 200)]
        base_rate_bps: u32,
        /// Added rate at full utilisation, basis points per rate period.
        #[arg(long, default_value_t = 1_000)]
        slope_bps: u32,
        /// Blocks between a withdrawal request and its payment.
        #[arg(long, default_value_t = 100)]
        notice_blocks: u64,
        /// Blocks a claim is open to votes.
        #[arg(long, default_value_t = 50)]
        vote_blocks: u64,
        /// Share of assessor stake that must vote, basis points.
        #[arg(long, default_value_t = 2_000)]
        quorum_bps: u32,
    },
    /// Deposits capital into an insurance pool for shares.
    Underwrite(PoolAmount),
    /// Asks to withdraw underwriting shares after the notice period.
    RequestWithdrawal {
        /// The insurance pool id.
        #[arg(long)]
        pool: u64,
        /// Shares to set aside.
        #[arg(long)]
        shares: u128,
    },
    /// Pays a withdrawal request whose notice has passed.
    WithdrawCapital(PoolOnly),
    /// Buys cover against a named risk.
    BuyCover {
        /// The insurance pool id.
        #[arg(long)]
        pool: u64,
        /// The named risk.
        #[arg(long)]
        risk: String,
        /// The cover amount, in the pool's asset.
        #[arg(long)]
        amount: String,
        /// Blocks covered from now.
        #[arg(long)]
        period_blocks: u64,
        /// Most premium to pay (default: the quote plus --slippage-bps).
        #[arg(long)]
        max_premium: Option<String>,
        /// Tolerance on the premium quote, basis points.
        #[arg(long, default_value_t = 100)]
        slippage_bps: u32,
    },
    /// Releases an expired cover without a claim.
    ReleaseCover(CoverOnly),
    /// Stakes the pool's asset as a claim assessor.
    StakeAssessor(PoolAmount),
    /// Takes assessor stake back once no vote locks it.
    UnstakeAssessor(PoolAmount),
    /// Files a claim on the sender's cover.
    Claim {
        /// The cover id.
        #[arg(long)]
        cover: u64,
        /// How much to claim, in the pool's asset.
        #[arg(long)]
        amount: String,
    },
    /// Votes on a claim with the sender's assessor stake.
    Vote {
        /// The claim's cover id.
        #[arg(long)]
        cover: u64,
        /// Approve the claim.
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        /// Reject the claim.
        #[arg(long)]
        reject: bool,
    },
    /// Resolves a claim whose vote deadline has passed.
    Resolve(CoverOnly),
    /// Opens a payment channel with --peer, depositing --deposit (prints the channel id).
    ChannelOpen {
        /// The other party (address or key name).
        #[arg(long)]
        peer: String,
        /// The channel's asset, when --deposit has no unit.
        #[arg(long)]
        asset: Option<AssetRef>,
        /// The opener's deposit ("0.1 BTC"; 0 for a channel the peer funds).
        #[arg(long, default_value = "0")]
        deposit: String,
        /// Blocks a unilateral close waits for a challenge.
        #[arg(long)]
        challenge_blocks: u64,
    },
    /// Adds to the sender's deposit of an open channel.
    ChannelDeposit {
        /// The channel id.
        #[arg(long)]
        channel: ChannelId,
        /// How much, in the channel's asset (a unit is optional).
        #[arg(long)]
        amount: String,
    },
    /// Starts a unilateral close with the latest state signed by both (--state), or with the
    /// deposits as they are; it settles after the challenge period.
    ChannelClose {
        /// The channel id (optional with --state).
        #[arg(long, required_unless_present = "state")]
        channel: Option<ChannelId>,
        /// A state file signed by both (`parabit channel state` / `sign`).
        #[arg(long)]
        state: Option<std::path::PathBuf>,
    },
    /// Closes at once with a state signed by both that carries no HTLC.
    ChannelCloseCoop {
        /// A state file signed by both.
        #[arg(long)]
        state: std::path::PathBuf,
    },
    /// Replaces a closing channel's state with a newer one signed by both.
    ChannelChallenge {
        /// A state file signed by both, with a higher nonce than the closing state.
        #[arg(long)]
        state: std::path::PathBuf,
    },
    /// Pays a closing channel's state once its challenge period is over.
    ChannelSettle {
        /// The channel id.
        #[arg(long)]
        channel: ChannelId,
    },
    /// Pays a settled channel's pending HTLC: to its receiver with --preimage (up to its
    /// expiry), or back to its sender after its expiry.
    ChannelResolveHtlc {
        /// The channel id.
        #[arg(long)]
        channel: ChannelId,
        /// The HTLC's index in the settled state.
        #[arg(long)]
        index: u32,
        /// The preimage (64 hex digits), to claim it for the receiver.
        #[arg(long)]
        preimage: Option<String>,
    },
    /// Withdraws BTC to a Bitcoin address: burns it on L2 now; the sequencer pays it on
    /// Bitcoin less an equal share of the payout's network fee (`parabit bridge withdrawal
    /// ID` follows it).
    WithdrawBtc {
        /// The Bitcoin address to pay (of the chain's network: `bcrt1…` on a devnet).
        #[arg(long)]
        to: String,
        /// How much: "0.001 BTC", or satoshis with their unit ("100000 sat").
        #[arg(long)]
        amount: String,
    },
    /// Sends any call given as its JSON form, e.g.
    /// '{"Bank":{"Transfer":{"to":"pbrt1…","asset":0,"amount":5}}}'.
    Raw {
        /// The call's JSON.
        call: String,
    },
}

/// An amount in a lending market.
#[derive(Debug, Clone, Args)]
pub struct LendAmount {
    /// How much ("0.5 BTC", or a number with --asset).
    #[arg(long)]
    amount: String,
    /// The market's asset when the amount has no unit.
    #[arg(long)]
    asset: Option<AssetRef>,
}

/// A pool and an amount in its asset.
#[derive(Debug, Clone, Args)]
pub struct PoolAmount {
    /// The pool id.
    #[arg(long)]
    pool: u64,
    /// How much, in the pool's asset (a unit is optional).
    #[arg(long)]
    amount: String,
}

/// Just a pool.
#[derive(Debug, Clone, Args)]
pub struct PoolOnly {
    /// The pool id.
    #[arg(long)]
    pool: u64,
}

/// Just a cover.
#[derive(Debug, Clone, Args)]
pub struct CoverOnly {
    /// The cover id.
    #[arg(long)]
    cover: u64,
}

/// What [`build_call`] needs besides the arguments.
pub struct BuildCtx<'a> {
    /// Chain facts.
    pub lookup: &'a dyn Lookup,
    /// The sender.
    pub sender: Address,
    /// How addresses are shown.
    pub network: Network,
    /// Turns an address or key name into an address.
    pub address: &'a dyn Fn(&str) -> Result<Address>,
    /// The chain id (channel states are signed for it).
    pub chain_id: u64,
    /// A channel's record (an error for an unknown channel).
    pub channel: &'a dyn Fn(ChannelId) -> Result<Channel>,
}

/// A built call and a one-line description of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The call.
    pub call: Call,
    /// e.g. `transfer 0.5 BTC to pbrt1…`.
    pub summary: String,
}

fn built(call: Call, summary: String) -> Result<Built> {
    Ok(Built { call, summary })
}

/// The output script of a Bitcoin address of the chain's network.
pub fn bitcoin_script(text: &str, network: Network) -> Result<parabit_bitcoin::bitcoin::ScriptBuf> {
    use parabit_bitcoin::bitcoin;
    let net = parabit_node::bridge::bitcoin_network(network);
    let addr: bitcoin::Address<bitcoin::address::NetworkUnchecked> = text
        .trim()
        .parse()
        .with_context(|| format!("{text:?} is not a Bitcoin address"))?;
    let addr = addr
        .require_network(net)
        .with_context(|| format!("{text:?} is not an address of Bitcoin {net}"))?;
    Ok(addr.script_pubkey())
}

/// The asset named by an amount's unit, if it has one.
fn unit_asset(text: &str, lk: &dyn Lookup) -> Result<Option<AssetMeta>> {
    let (_, unit) = parabit_wallet::parse_amount_with_unit(text)?;
    match unit {
        None => Ok(None),
        Some(u) if u.eq_ignore_ascii_case("sat") || u.eq_ignore_ascii_case("sats") => {
            lk.asset(AssetId::BTC).map(Some)
        }
        Some(u) => lk.asset_by_symbol(&u).map(Some),
    }
}

/// An asset from a flag, else from the amount's unit, else an error naming `flag`.
fn asset_of(
    flag: Option<&AssetRef>,
    amount_text: Option<&str>,
    flag_name: &str,
    lk: &dyn Lookup,
) -> Result<AssetMeta> {
    if let Some(a) = flag {
        return a.resolve(lk);
    }
    if let Some(t) = amount_text {
        if let Some(a) = unit_asset(t, lk)? {
            return Ok(a);
        }
    }
    bail!("which asset? give it in the amount (\"0.5 BTC\") or with {flag_name}")
}

fn deadline(lk: &dyn Lookup, blocks: u64) -> Result<u64> {
    Ok(lk.height()?.saturating_add(blocks))
}

fn path_text(path: &[AssetMeta]) -> String {
    path.iter()
        .map(|a| a.symbol.clone())
        .collect::<Vec<_>>()
        .join("→")
}

fn lend_amount(
    a: &LendAmount,
    lk: &dyn Lookup,
    allow_max: bool,
) -> Result<(AssetMeta, u128, String)> {
    let t = a.amount.trim();
    if allow_max && (t.eq_ignore_ascii_case("max") || t.eq_ignore_ascii_case("all")) {
        let asset = a
            .asset
            .as_ref()
            .ok_or_else(|| anyhow!("--amount max needs --asset"))?
            .resolve(lk)?;
        let shown = format!("all {} debt", asset.symbol);
        return Ok((asset, u128::MAX, shown));
    }
    let expected = human::resolve_opt(a.asset.as_ref(), lk)?;
    let (asset, v) = human::positive_amount("--amount", &a.amount, expected.as_ref(), lk)?;
    let shown = asset.show(v);
    Ok((asset, v, shown))
}

/// Refuses a call on a channel that is not open (the chain would fail it, fee paid).
fn ensure_open(id: ChannelId, ch: &Channel) -> Result<()> {
    ensure!(
        ch.status == ChannelStatus::Open,
        "channel {id} is {}, not open",
        ch.status.name()
    );
    Ok(())
}

/// A state file signed by both, checked against the channel's record as the chain will.
fn signed_state(
    path: &std::path::Path,
    ctx: &BuildCtx<'_>,
) -> Result<(SignedState, Channel, AssetMeta)> {
    let file = StateFile::load(path)?;
    ensure!(
        file.chain_id == ctx.chain_id,
        "state file {}: signed for chain {}, but the node runs chain {}",
        path.display(),
        file.chain_id,
        ctx.chain_id
    );
    let id = file.state.channel;
    let ch = (ctx.channel)(id)?;
    let what = || format!("state file {}", path.display());
    channel_cmd::check_amounts(id, &ch, &file.state).with_context(what)?;
    file.verify(&ch).with_context(what)?;
    let signed = file.signed().with_context(what)?;
    let asset = ctx.lookup.asset(ch.asset)?;
    Ok((signed, ch, asset))
}

/// Builds the call for `kind` (see the module doc).
pub fn build_call(kind: &TxKind, ctx: &BuildCtx<'_>) -> Result<Built> {
    let lk = ctx.lookup;
    let show_addr = |a: &Address| a.to_bech32(ctx.network);
    match kind {
        TxKind::Transfer { to, amount, asset } => {
            let to_addr = (ctx.address)(to).context("--to")?;
            let expected = human::resolve_opt(asset.as_ref(), lk)?;
            let (asset, v) = human::positive_amount("--amount", amount, expected.as_ref(), lk)?;
            built(
                Call::Bank(BankMsg::Transfer {
                    to: to_addr,
                    asset: asset.id,
                    amount: v,
                }),
                format!("transfer {} to {}", asset.show(v), show_addr(&to_addr)),
            )
        }
        TxKind::WithdrawBtc { to, amount } => {
            let script = bitcoin_script(to, ctx.network).context("--to")?;
            let btc = lk.asset(AssetId::BTC)?;
            let (asset, v) = human::positive_amount("--amount", amount, Some(&btc), lk)?;
            let amount = u64::try_from(v).map_err(|_| anyhow!("--amount {v} is too large"))?;
            built(
                Call::Bridge(BridgeMsg::Withdraw {
                    amount,
                    script_pubkey: script.to_bytes(),
                }),
                format!("withdraw {} to Bitcoin address {to}", asset.show(v)),
            )
        }
        TxKind::CreateAsset {
            symbol,
            decimals,
            supply,
        } => {
            let v = parabit_wallet::parse_amount(supply, *decimals)
                .with_context(|| format!("--supply {supply:?} with {decimals} decimals"))?;
            let symbol = symbol.trim().to_ascii_uppercase();
            ensure!(
                (1..=12).contains(&symbol.len())
                    && symbol.bytes().all(|b| b.is_ascii_alphanumeric()),
                "--symbol {symbol:?}: 1 to 12 letters or digits"
            );
            ensure!(*decimals <= 18, "--decimals {decimals}: at most 18");
            let shown = parabit_wallet::format_amount_with_symbol(v, *decimals, &symbol);
            built(
                Call::Bank(BankMsg::CreateAsset {
                    symbol,
                    decimals: *decimals,
                    initial_supply: v,
                }),
                format!("create asset with supply {shown}"),
            )
        }
        TxKind::AddLiquidity {
            amount_x,
            amount_y,
            asset_x,
            asset_y,
            min_x,
            min_y,
            deadline_blocks,
        } => {
            let ex = human::resolve_opt(asset_x.as_ref(), lk)?;
            let ey = human::resolve_opt(asset_y.as_ref(), lk)?;
            let (ax, x) = human::positive_amount("--amount-x", amount_x, ex.as_ref(), lk)?;
            let (ay, y) = human::positive_amount("--amount-y", amount_y, ey.as_ref(), lk)?;
            ensure!(
                ax.id != ay.id,
                "--amount-x and --amount-y are both {}",
                ax.symbol
            );
            let mx = match min_x {
                Some(t) => human::amount("--min-x", t, Some(&ax), lk)?.1,
                None => 0,
            };
            let my = match min_y {
                Some(t) => human::amount("--min-y", t, Some(&ay), lk)?.1,
                None => 0,
            };
            ensure!(mx <= x, "--min-x is more than --amount-x");
            ensure!(my <= y, "--min-y is more than --amount-y");
            built(
                Call::Dex(DexMsg::AddLiquidity {
                    asset_x: ax.id,
                    asset_y: ay.id,
                    amount_x_desired: x,
                    amount_y_desired: y,
                    amount_x_min: mx,
                    amount_y_min: my,
                    deadline: deadline(lk, *deadline_blocks)?,
                }),
                format!("add liquidity {} + {}", ax.show(x), ay.show(y)),
            )
        }
        TxKind::RemoveLiquidity {
            pool,
            liquidity,
            min_x,
            min_y,
            deadline_blocks,
        } => {
            let (x, y) = human::pool(pool)?;
            let (ax, ay) = (x.resolve(lk)?, y.resolve(lk)?);
            ensure!(ax.id != ay.id, "--pool {pool}: the two assets are the same");
            ensure!(*liquidity > 0, "--liquidity must be more than zero");
            let mx = match min_x {
                Some(t) => human::amount("--min-x", t, Some(&ax), lk)?.1,
                None => 0,
            };
            let my = match min_y {
                Some(t) => human::amount("--min-y", t, Some(&ay), lk)?.1,
                None => 0,
            };
            built(
                Call::Dex(DexMsg::RemoveLiquidity {
                    asset_x: ax.id,
                    asset_y: ay.id,
                    liquidity: *liquidity,
                    amount_x_min: mx,
                    amount_y_min: my,
                    deadline: deadline(lk, *deadline_blocks)?,
                }),
                format!(
                    "remove {liquidity} LP shares from {}-{}",
                    ax.symbol, ay.symbol
                ),
            )
        }
        TxKind::Swap {
            amount_in,
            amount_out,
            asset_in,
            asset_out,
            route,
            min_out,
            max_in,
            slippage_bps,
            deadline_blocks,
        } => {
            let path: Vec<AssetMeta> = match route {
                Some(r) => {
                    let path = human::route(r)?
                        .iter()
                        .map(|a| a.resolve(lk))
                        .collect::<Result<Vec<_>>>()?;
                    if let (Some(flag), Some(first)) = (asset_in, path.first()) {
                        ensure!(
                            flag.resolve(lk)?.id == first.id,
                            "--in {flag} is not the route's first asset {}",
                            first.symbol
                        );
                    }
                    if let (Some(flag), Some(last)) = (asset_out, path.last()) {
                        ensure!(
                            flag.resolve(lk)?.id == last.id,
                            "--out {flag} is not the route's last asset {}",
                            last.symbol
                        );
                    }
                    path
                }
                None => {
                    let from = asset_of(asset_in.as_ref(), amount_in.as_deref(), "--in", lk)?;
                    let to = asset_of(asset_out.as_ref(), amount_out.as_deref(), "--out", lk)?;
                    vec![from, to]
                }
            };
            for pair in path.windows(2) {
                ensure!(
                    pair[0].id != pair[1].id,
                    "the route {} swaps {} for itself",
                    path_text(&path),
                    pair[0].symbol
                );
            }
            let (first, last) = match (path.first(), path.last()) {
                (Some(f), Some(l)) => (f.clone(), l.clone()),
                _ => bail!("empty route"),
            };
            let ids: Vec<AssetId> = path.iter().map(|a| a.id).collect();
            let deadline = deadline(lk, *deadline_blocks)?;
            if let Some(text) = amount_in {
                let (_, v) = human::positive_amount("--amount-in", text, Some(&first), lk)?;
                let min = match min_out {
                    Some(t) => human::amount("--min-out", t, Some(&last), lk)?.1,
                    None => {
                        let q = lk
                            .quote_exact_in(&ids, v, false)
                            .context("cannot quote the swap (give --min-out)")?;
                        ensure!(q > 0, "the swap would output nothing");
                        human::minus_bps(q, *slippage_bps)
                    }
                };
                built(
                    Call::Dex(DexMsg::SwapExactIn {
                        path: ids,
                        amount_in: v,
                        min_out: min,
                        deadline,
                    }),
                    format!(
                        "swap {} for at least {} via {}",
                        first.show(v),
                        last.show(min),
                        path_text(&path)
                    ),
                )
            } else if let Some(text) = amount_out {
                let (_, v) = human::positive_amount("--amount-out", text, Some(&last), lk)?;
                let max = match max_in {
                    Some(t) => human::amount("--max-in", t, Some(&first), lk)?.1,
                    None => {
                        let q = lk
                            .quote_exact_out(&ids, v)
                            .context("cannot quote the swap (give --max-in)")?;
                        human::plus_bps(q, *slippage_bps)
                    }
                };
                built(
                    Call::Dex(DexMsg::SwapExactOut {
                        path: ids,
                        amount_out: v,
                        max_in: max,
                        deadline,
                    }),
                    format!(
                        "swap at most {} for {} via {}",
                        first.show(max),
                        last.show(v),
                        path_text(&path)
                    ),
                )
            } else {
                bail!("give --amount-in or --amount-out")
            }
        }
        TxKind::BatchSwap {
            amount_in,
            asset_in,
            asset_out,
            min_out,
            slippage_bps,
        } => {
            let from = asset_of(asset_in.as_ref(), Some(amount_in), "--in", lk)?;
            let to = asset_out.resolve(lk)?;
            ensure!(from.id != to.id, "--out is the asset sold");
            let (_, v) = human::positive_amount("--amount-in", amount_in, Some(&from), lk)?;
            let min = match min_out {
                Some(t) => human::amount("--min-out", t, Some(&to), lk)?.1,
                None => {
                    let q = lk
                        .quote_exact_in(&[from.id, to.id], v, true)
                        .context("cannot quote the batch swap (give --min-out)")?;
                    human::minus_bps(q, *slippage_bps)
                }
            };
            built(
                Call::Dex(DexMsg::BatchSwap {
                    asset_in: from.id,
                    asset_out: to.id,
                    amount_in: v,
                    min_out: min,
                }),
                format!("batch-swap {} for at least {}", from.show(v), to.show(min)),
            )
        }
        TxKind::Supply(a) => {
            let (asset, v, shown) = lend_amount(a, lk, false)?;
            built(
                Call::Lending(LendingMsg::Supply {
                    asset: asset.id,
                    amount: v,
                }),
                format!("supply {shown}"),
            )
        }
        TxKind::Withdraw(a) => {
            let (asset, v, shown) = lend_amount(a, lk, false)?;
            built(
                Call::Lending(LendingMsg::Withdraw {
                    asset: asset.id,
                    amount: v,
                }),
                format!("withdraw {shown}"),
            )
        }
        TxKind::Borrow(a) => {
            let (asset, v, shown) = lend_amount(a, lk, false)?;
            built(
                Call::Lending(LendingMsg::Borrow {
                    asset: asset.id,
                    amount: v,
                }),
                format!("borrow {shown}"),
            )
        }
        TxKind::Repay(a) => {
            let (asset, v, shown) = lend_amount(a, lk, true)?;
            built(
                Call::Lending(LendingMsg::Repay {
                    asset: asset.id,
                    amount: v,
                }),
                format!("repay {shown}"),
            )
        }
        TxKind::Liquidate {
            borrower,
            amount,
            asset,
            collateral,
        } => {
            let who = (ctx.address)(borrower).context("--borrower")?;
            let expected = human::resolve_opt(asset.as_ref(), lk)?;
            let (debt, v) = human::positive_amount("--amount", amount, expected.as_ref(), lk)?;
            let coll = collateral.resolve(lk)?;
            built(
                Call::Lending(LendingMsg::Liquidate {
                    borrower: who,
                    debt_asset: debt.id,
                    collateral_asset: coll.id,
                    amount: v,
                }),
                format!(
                    "liquidate {}: repay {} for {} collateral",
                    show_addr(&who),
                    debt.show(v),
                    coll.symbol
                ),
            )
        }
        TxKind::SetPrice { asset, price } => {
            let a = asset.resolve(lk)?;
            let wad = parabit_wallet::parse_amount(price, 18)
                .with_context(|| format!("--price {price:?}"))?;
            ensure!(wad > 0, "--price must be more than zero");
            built(
                Call::Lending(LendingMsg::SetPrice {
                    asset: a.id,
                    price: wad,
                }),
                format!("set the price of one {} base unit to {price}", a.symbol),
            )
        }
        TxKind::CreateStakingPool {
            stake_asset,
            reward_asset,
            unbonding_blocks,
            slash_destination,
        } => {
            let s = stake_asset.resolve(lk)?;
            let r = reward_asset.resolve(lk)?;
            let dest = match slash_destination {
                Some(d) => (ctx.address)(d).context("--slash-destination")?,
                None => ctx.sender,
            };
            built(
                Call::Staking(StakingMsg::CreatePool {
                    stake_asset: s.id,
                    reward_asset: r.id,
                    unbonding_blocks: *unbonding_blocks,
                    slash_destination: dest,
                }),
                format!(
                    "create a staking pool: stake {}, rewards in {}, unbonding {unbonding_blocks} blocks",
                    s.symbol, r.symbol
                ),
            )
        }
        TxKind::Stake(p) | TxKind::Unbond(p) | TxKind::FundRewards(p) => {
            let (stake, reward) = lk.staking_pool_assets(p.pool)?;
            let asset = lk.asset(if matches!(kind, TxKind::FundRewards(_)) {
                reward
            } else {
                stake
            })?;
            let (_, v) = human::positive_amount("--amount", &p.amount, Some(&asset), lk)?;
            let pool = p.pool;
            let (msg, verb) = match kind {
                TxKind::Stake(_) => (StakingMsg::Stake { pool, amount: v }, "stake"),
                TxKind::Unbond(_) => (StakingMsg::Unbond { pool, amount: v }, "unbond"),
                _ => (
                    StakingMsg::FundRewards { pool, amount: v },
                    "fund rewards with",
                ),
            };
            built(
                Call::Staking(msg),
                format!("{verb} {} in staking pool {pool}", asset.show(v)),
            )
        }
        TxKind::WithdrawStake(p) => built(
            Call::Staking(StakingMsg::Withdraw { pool: p.pool }),
            format!("withdraw released stake from staking pool {}", p.pool),
        ),
        TxKind::ClaimRewards(p) => built(
            Call::Staking(StakingMsg::Claim { pool: p.pool }),
            format!("claim rewards from staking pool {}", p.pool),
        ),
        TxKind::Slash {
            pool,
            staker,
            fraction_ppm,
        } => {
            let who = (ctx.address)(staker).context("--staker")?;
            ensure!(
                (1..=1_000_000).contains(fraction_ppm),
                "--fraction-ppm {fraction_ppm}: 1 to 1000000"
            );
            built(
                Call::Staking(StakingMsg::Slash {
                    pool: *pool,
                    staker: who,
                    fraction_ppm: *fraction_ppm,
                }),
                format!(
                    "slash {fraction_ppm} ppm of {} in staking pool {pool}",
                    show_addr(&who)
                ),
            )
        }
        TxKind::CreateInsurancePool {
            asset,
            max_cover_bps,
            base_rate_bps,
            slope_bps,
            notice_blocks,
            vote_blocks,
            quorum_bps,
        } => {
            let a = asset.resolve(lk)?;
            built(
                Call::Insurance(InsuranceMsg::CreatePool(InsurancePool {
                    asset: a.id,
                    max_cover_bps: *max_cover_bps,
                    base_rate_bps: *base_rate_bps,
                    slope_bps: *slope_bps,
                    notice_blocks: *notice_blocks,
                    vote_blocks: *vote_blocks,
                    quorum_bps: *quorum_bps,
                })),
                format!("create an insurance pool in {}", a.symbol),
            )
        }
        TxKind::Underwrite(p) | TxKind::StakeAssessor(p) | TxKind::UnstakeAssessor(p) => {
            let asset = lk.asset(lk.insurance_pool_asset(p.pool)?)?;
            let (_, v) = human::positive_amount("--amount", &p.amount, Some(&asset), lk)?;
            let pool = p.pool;
            let (msg, verb) = match kind {
                TxKind::Underwrite(_) => {
                    (InsuranceMsg::Underwrite { pool, amount: v }, "underwrite")
                }
                TxKind::StakeAssessor(_) => (
                    InsuranceMsg::StakeAssessor { pool, amount: v },
                    "stake as assessor",
                ),
                _ => (
                    InsuranceMsg::UnstakeAssessor { pool, amount: v },
                    "unstake as assessor",
                ),
            };
            built(
                Call::Insurance(msg),
                format!("{verb} {} in insurance pool {pool}", asset.show(v)),
            )
        }
        TxKind::RequestWithdrawal { pool, shares } => {
            ensure!(*shares > 0, "--shares must be more than zero");
            built(
                Call::Insurance(InsuranceMsg::RequestWithdrawal {
                    pool: *pool,
                    shares: *shares,
                }),
                format!("request withdrawal of {shares} shares from insurance pool {pool}"),
            )
        }
        TxKind::WithdrawCapital(p) => built(
            Call::Insurance(InsuranceMsg::Withdraw { pool: p.pool }),
            format!("withdraw capital from insurance pool {}", p.pool),
        ),
        TxKind::BuyCover {
            pool,
            risk,
            amount,
            period_blocks,
            max_premium,
            slippage_bps,
        } => {
            let asset = lk.asset(lk.insurance_pool_asset(*pool)?)?;
            let (_, v) = human::positive_amount("--amount", amount, Some(&asset), lk)?;
            ensure!(*period_blocks > 0, "--period-blocks must be more than zero");
            ensure!(!risk.trim().is_empty(), "--risk must name the risk covered");
            let max = match max_premium {
                Some(t) => human::amount("--max-premium", t, Some(&asset), lk)?.1,
                None => {
                    let q = lk
                        .quote_premium(*pool, v, *period_blocks)
                        .context("cannot quote the premium (give --max-premium)")?;
                    human::plus_bps(q, *slippage_bps)
                }
            };
            built(
                Call::Insurance(InsuranceMsg::BuyCover {
                    pool: *pool,
                    risk: risk.clone(),
                    amount: v,
                    period_blocks: *period_blocks,
                    max_premium: max,
                }),
                format!(
                    "buy {} of cover against {risk:?} for {period_blocks} blocks, premium at most {}",
                    asset.show(v),
                    asset.show(max)
                ),
            )
        }
        TxKind::ReleaseCover(c) => built(
            Call::Insurance(InsuranceMsg::ReleaseCover { cover: c.cover }),
            format!("release cover {}", c.cover),
        ),
        TxKind::Claim { cover, amount } => {
            let asset = lk.asset(lk.insurance_pool_asset(lk.cover_pool(*cover)?)?)?;
            let (_, v) = human::positive_amount("--amount", amount, Some(&asset), lk)?;
            built(
                Call::Insurance(InsuranceMsg::FileClaim {
                    cover: *cover,
                    amount: v,
                }),
                format!("claim {} on cover {cover}", asset.show(v)),
            )
        }
        TxKind::Vote {
            cover,
            approve,
            reject,
        } => {
            ensure!(
                approve != reject,
                "give exactly one of --approve and --reject"
            );
            built(
                Call::Insurance(InsuranceMsg::Vote {
                    cover: *cover,
                    approve: *approve,
                }),
                format!(
                    "vote to {} the claim on cover {cover}",
                    if *approve { "approve" } else { "reject" }
                ),
            )
        }
        TxKind::Resolve(c) => built(
            Call::Insurance(InsuranceMsg::Resolve { cover: c.cover }),
            format!("resolve the claim on cover {}", c.cover),
        ),
        TxKind::ChannelOpen {
            peer,
            asset,
            deposit,
            challenge_blocks,
        } => {
            let peer = (ctx.address)(peer).context("--peer")?;
            ensure!(
                peer != ctx.sender,
                "--peer is the sender: a channel needs two different parties"
            );
            let a = asset_of(asset.as_ref(), Some(deposit), "--asset", lk)?;
            let (_, v) = human::amount("--deposit", deposit, Some(&a), lk)?;
            ensure!(
                (1..=channels::MAX_CHALLENGE_BLOCKS).contains(challenge_blocks),
                "--challenge-blocks {challenge_blocks}: 1 to {}",
                channels::MAX_CHALLENGE_BLOCKS
            );
            built(
                Call::Channel(ChannelMsg::Open {
                    peer,
                    asset: a.id,
                    deposit: v,
                    challenge_blocks: *challenge_blocks,
                }),
                format!(
                    "open a {} channel with {} depositing {}, challenge period {challenge_blocks} blocks",
                    a.symbol,
                    show_addr(&peer),
                    a.show(v)
                ),
            )
        }
        TxKind::ChannelDeposit { channel, amount } => {
            let ch = (ctx.channel)(*channel)?;
            channel_cmd::party(*channel, &ch, &ctx.sender, ctx.network)?;
            ensure_open(*channel, &ch)?;
            let asset = lk.asset(ch.asset)?;
            let (_, v) = human::positive_amount("--amount", amount, Some(&asset), lk)?;
            built(
                Call::Channel(ChannelMsg::Deposit {
                    channel: *channel,
                    amount: v,
                }),
                format!("deposit {} into channel {channel}", asset.show(v)),
            )
        }
        TxKind::ChannelClose { channel, state } => {
            let (id, signed, shown) = match state {
                Some(path) => {
                    let (signed, ch, asset) = signed_state(path, ctx)?;
                    let id = signed.state.channel;
                    if let Some(c) = channel {
                        ensure!(
                            *c == id,
                            "--channel {c}, but the state file is for channel {id}"
                        );
                    }
                    channel_cmd::party(id, &ch, &ctx.sender, ctx.network)?;
                    ensure_open(id, &ch)?;
                    let shown = format!(
                        "with state {}",
                        channel_cmd::state_text(&signed.state, &asset)
                    );
                    (id, Some(Box::new(signed)), shown)
                }
                None => {
                    let id = channel.ok_or_else(|| anyhow!("give --channel or --state"))?;
                    let ch = (ctx.channel)(id)?;
                    channel_cmd::party(id, &ch, &ctx.sender, ctx.network)?;
                    ensure_open(id, &ch)?;
                    (id, None, "with the deposits as they are".to_string())
                }
            };
            built(
                Call::Channel(ChannelMsg::Close {
                    channel: id,
                    state: signed,
                }),
                format!("start closing channel {id} {shown}"),
            )
        }
        TxKind::ChannelCloseCoop { state } => {
            let (signed, ch, asset) = signed_state(state, ctx)?;
            ensure!(
                matches!(
                    ch.status,
                    ChannelStatus::Open | ChannelStatus::Closing { .. }
                ),
                "channel {} is {}: only an open or closing channel closes",
                signed.state.channel,
                ch.status.name()
            );
            ensure!(
                signed.state.htlcs.is_empty(),
                "a cooperative close cannot carry HTLCs ({} in the state): close with `channel-close --state` instead",
                signed.state.htlcs.len()
            );
            let shown = channel_cmd::state_text(&signed.state, &asset);
            let id = signed.state.channel;
            built(
                Call::Channel(ChannelMsg::CloseCooperative {
                    state: Box::new(signed),
                }),
                format!("close channel {id} cooperatively: {shown}"),
            )
        }
        TxKind::ChannelChallenge { state } => {
            let (signed, ch, asset) = signed_state(state, ctx)?;
            let id = signed.state.channel;
            channel_cmd::party(id, &ch, &ctx.sender, ctx.network)?;
            match &ch.status {
                ChannelStatus::Closing { state: held, .. } => ensure!(
                    signed.state.nonce > held.nonce,
                    "the state's nonce {} is not above the closing state's {}: nothing to challenge with",
                    signed.state.nonce,
                    held.nonce
                ),
                _ => bail!("channel {id} is not closing: nothing to challenge"),
            }
            let shown = channel_cmd::state_text(&signed.state, &asset);
            built(
                Call::Channel(ChannelMsg::Challenge {
                    state: Box::new(signed),
                }),
                format!("challenge the close of channel {id} with {shown}"),
            )
        }
        TxKind::ChannelSettle { channel } => {
            let ch = (ctx.channel)(*channel)?;
            let ChannelStatus::Closing { deadline, .. } = &ch.status else {
                bail!("channel {channel} is not closing: nothing to settle");
            };
            // The transaction runs in the block after the head: it must be above the deadline.
            let head = lk.height()?;
            ensure!(
                head >= *deadline,
                "challenge period not over: channel {channel} settles after height {deadline}, now {head}"
            );
            built(
                Call::Channel(ChannelMsg::Settle { channel: *channel }),
                format!("settle channel {channel}"),
            )
        }
        TxKind::ChannelResolveHtlc {
            channel,
            index,
            preimage,
        } => {
            let preimage = match preimage {
                Some(text) => {
                    let mut p = [0u8; 32];
                    hex::decode_to_slice(text.trim(), &mut p)
                        .map_err(|_| anyhow!("--preimage: expected 32 bytes as 64 hex digits"))?;
                    Some(p)
                }
                None => None,
            };
            let ch = (ctx.channel)(*channel)?;
            let ChannelStatus::Settled { htlcs } = &ch.status else {
                bail!("channel {channel} is not settled: its HTLCs are resolved after `channel-settle`");
            };
            let htlc = htlcs
                .get(*index as usize)
                .and_then(Option::as_ref)
                .ok_or_else(|| anyhow!("channel {channel} has no pending HTLC at index {index}"))?;
            if let Some(p) = &preimage {
                let hash: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(p).into();
                ensure!(
                    hash == htlc.hash,
                    "--preimage does not hash to HTLC {index}'s hash {}",
                    hex::encode(htlc.hash)
                );
            }
            let verb = if preimage.is_some() {
                "claim"
            } else {
                "refund"
            };
            built(
                Call::Channel(ChannelMsg::ResolveHtlc {
                    channel: *channel,
                    index: *index,
                    preimage,
                }),
                format!("{verb} HTLC {index} of channel {channel}"),
            )
        }
        TxKind::Raw { call } => {
            let c: Call = serde_json::from_str(call).context(
                "the call is not a valid Call JSON (e.g. {\"Bank\":{\"Transfer\":{…}}})",
            )?;
            built(c, "raw call".to_string())
        }
    }
}

/// The id of what the call creates, derived from the sender and nonce.
pub fn created(call: &Call, sender: &Address, nonce: u64) -> Option<(&'static str, Json)> {
    match call {
        Call::Bank(BankMsg::CreateAsset { .. }) => {
            bank::derive_asset_id(sender, nonce).map(|a| ("asset", json!(a.0)))
        }
        Call::Staking(StakingMsg::CreatePool { .. }) => Some((
            "staking_pool",
            json!(staking::derive_pool_id(sender, nonce)),
        )),
        Call::Insurance(InsuranceMsg::CreatePool(_)) => {
            Some(("insurance_pool", json!(insurance::derive_id(sender, nonce))))
        }
        Call::Insurance(InsuranceMsg::BuyCover { .. }) => {
            Some(("cover", json!(insurance::derive_id(sender, nonce))))
        }
        Call::Channel(ChannelMsg::Open { .. }) => {
            Some(("channel", json!(channels::derive_channel_id(sender, nonce))))
        }
        _ => None,
    }
}

fn call_json(call: &Call) -> Json {
    serde_json::to_value(call).unwrap_or_else(|_| json!(format!("{call:?}")))
}

/// Runs `parabit tx …`.
pub fn run(args: &TxArgs) -> Result<()> {
    let from = args.from.as_deref().ok_or_else(|| {
        anyhow!("--from NAME is required: the keystore key that signs (see `parabit wallet list`)")
    })?;
    let keystore = args.keystore.path()?;
    let sender = wallet_cmd::resolve_address(from, &args.keystore).context("--from")?;
    let rpc = Rpc::connect(&args.rpc)?;
    let info: ChainInfo = rpc.chain_info()?;
    let lk = RpcLookup::new(&rpc, &info);
    let resolve = |s: &str| wallet_cmd::resolve_address(s, &args.keystore);
    let channel = |id: ChannelId| channel_cmd::fetch_channel(&rpc, id);
    let ctx = BuildCtx {
        lookup: &lk,
        sender,
        network: info.network,
        address: &resolve,
        chain_id: info.chain_id,
        channel: &channel,
    };
    let built = build_call(&args.kind, &ctx)?;
    let fee = human::fee(&args.fee, &lk)?;

    let key = wallet_cmd::signing_key(&keystore, from)?;
    ensure!(
        key.address() == sender,
        "the key for --from {from} does not match its address"
    );
    let nonce = match args.nonce {
        Some(n) => n,
        None => rpc.pending_nonce(&sender, info.network)?,
    };
    let signed = key.sign(Transaction {
        chain_id: info.chain_id,
        sender,
        nonce,
        fee,
        call: built.call.clone(),
    });
    let local_id = signed.id().to_string();
    let raw = signed.encode();
    let created = created(&built.call, &sender, nonce);
    let mut doc = json!({
        "id": local_id,
        "from": sender.to_bech32(info.network),
        "chain_id": info.chain_id,
        "nonce": nonce,
        "fee": fee.to_string(),
        "summary": built.summary,
        "call": call_json(&built.call),
    });
    if let Some((what, id)) = &created {
        doc["created"] = json!({ *what: id });
    }
    if args.dry_run {
        doc["raw"] = json!(hex::encode(&raw));
        if args.json {
            println!("{doc}");
        } else {
            println!("signed (not sent) {local_id}: {}", built.summary);
            println!("{}", hex::encode(&raw));
        }
        return Ok(());
    }

    let id = rpc.send_raw(&raw)?;
    if id != local_id {
        eprintln!("warning: the node names the transaction {id}, this client computed {local_id}");
    }
    doc["id"] = json!(id);
    if !args.json {
        println!(
            "sent {id}: {} (nonce {nonce}, fee {fee} sat)",
            built.summary
        );
    }
    if args.no_wait {
        doc["receipt"] = Json::Null;
        if args.json {
            println!("{doc}");
        }
        return Ok(());
    }
    let receipt = rpc.wait_receipt(
        &id,
        Duration::from_secs(args.wait_timeout),
        Duration::from_millis(100),
    )?;
    let status = receipt["status"].as_str().unwrap_or("unknown").to_string();
    doc["receipt"] = receipt.clone();
    if args.json {
        println!("{doc}");
    } else {
        println!(
            "committed in block {} (index {}): {status}{}",
            receipt["height"],
            receipt["index"],
            receipt["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        if status == "success" {
            if let Some((what, v)) = &created {
                println!("created {} {v}", what.replace('_', " "));
            }
        }
    }
    if status != "success" {
        bail!(
            "transaction {id} {status}: {}",
            receipt["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::human::tests::FakeChain;
    use clap::Parser;
    use parabit_primitives::SigningKey;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        kind: TxKind,
    }

    fn alice() -> Address {
        SigningKey::from_seed(b"alice").address()
    }

    fn bob() -> Address {
        SigningKey::from_seed(b"bob").address()
    }

    fn names(s: &str) -> Result<Address> {
        match s {
            "bob" => Ok(bob()),
            _ => s.parse::<Address>().map_err(|e| anyhow!("{s}: {e}")),
        }
    }

    fn build(args: &[&str]) -> Result<Built> {
        let mut argv = vec!["t"];
        argv.extend_from_slice(args);
        let t = T::try_parse_from(argv).map_err(|e| anyhow!("{e}"))?;
        let ctx = BuildCtx {
            lookup: &FakeChain,
            sender: alice(),
            network: Network::Regtest,
            address: &names,
            chain_id: CHAIN,
            channel: &channel_record,
        };
        build_call(&t.kind, &ctx)
    }

    const CHAIN: u64 = 7;

    /// Channels between alice (a) and bob (b) in USDC: 42 open, 44 closing with nonce 1, 45
    /// settled with one HTLC pending at index 1 (preimage [9; 32]).
    fn channel_record(id: ChannelId) -> Result<Channel> {
        let status = match id {
            42 => ChannelStatus::Open,
            46 => ChannelStatus::Closing {
                state: channels::ChannelState {
                    channel: 46,
                    nonce: 0,
                    deposit_a: 10_000_000,
                    deposit_b: 5_000_000,
                    balance_a: 10_000_000,
                    balance_b: 5_000_000,
                    htlcs: vec![],
                },
                deadline: 1_000,
            },
            44 => ChannelStatus::Closing {
                state: channels::ChannelState {
                    channel: 44,
                    nonce: 1,
                    deposit_a: 10_000_000,
                    deposit_b: 5_000_000,
                    balance_a: 10_000_000,
                    balance_b: 5_000_000,
                    htlcs: vec![],
                },
                deadline: 1_010,
            },
            45 => ChannelStatus::Settled {
                htlcs: vec![
                    None,
                    Some(channels::Htlc {
                        a_to_b: true,
                        amount: 1,
                        hash: <sha2::Sha256 as sha2::Digest>::digest([9u8; 32]).into(),
                        expiry: 2_000,
                    }),
                ],
            },
            _ => bail!("unknown channel {id}"),
        };
        Ok(Channel {
            a: alice(),
            b: bob(),
            asset: AssetId(1),
            deposit_a: 10_000_000,
            deposit_b: 5_000_000,
            challenge_blocks: 10,
            status,
        })
    }

    /// A state file for `channel` with nonce `nonce` (a gets `to_a` of 15 USDC), signed by the
    /// given keys over chain `chain`.
    fn state_file(
        dir: &std::path::Path,
        channel: ChannelId,
        nonce: u64,
        to_a: u128,
        chain: u64,
        signers: &[&SigningKey],
    ) -> String {
        let state = channels::ChannelState {
            channel,
            nonce,
            deposit_a: 10_000_000,
            deposit_b: 5_000_000,
            balance_a: to_a,
            balance_b: 15_000_000 - to_a,
            htlcs: vec![],
        };
        let digest = channels::state_digest(chain, &state);
        let mut f = StateFile {
            chain_id: chain,
            state,
            sig_a: None,
            sig_b: None,
        };
        for k in signers {
            let sig = Some(hex::encode(k.sign_digest(&digest)));
            if k.address() == alice() {
                f.sig_a = sig;
            } else {
                f.sig_b = sig;
            }
        }
        let path = dir.join(format!(
            "s{channel}-{nonce}-{to_a}-{chain}-{}.json",
            signers.len()
        ));
        f.save(&path).unwrap_or_else(|e| panic!("{e:#}"));
        path.display().to_string()
    }

    fn call(args: &[&str]) -> Call {
        match build(args) {
            Ok(b) => b.call,
            Err(e) => panic!("{args:?}: {e:#}"),
        }
    }

    fn fails(args: &[&str]) -> String {
        match build(args) {
            Ok(b) => panic!("{args:?} built {b:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn transfer_in_human_units() {
        let bob_text = bob().to_bech32(Network::Regtest);
        let want = Call::Bank(BankMsg::Transfer {
            to: bob(),
            asset: AssetId(0),
            amount: 50_000_000,
        });
        assert_eq!(
            call(&["transfer", "--to", &bob_text, "--amount", "0.5 BTC"]),
            want
        );
        assert_eq!(
            call(&["transfer", "--to", "bob", "--amount", "0.5", "--asset", "0"]),
            want
        );
        assert_eq!(
            call(&["transfer", "--to", "bob", "--amount", "0.5", "--asset", "btc"]),
            want
        );
        let b = build(&["transfer", "--to", "bob", "--amount", "12.5 USDC"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            b.call,
            Call::Bank(BankMsg::Transfer {
                to: bob(),
                asset: AssetId(1),
                amount: 12_500_000
            })
        );
        assert_eq!(b.summary, format!("transfer 12.5 USDC to {bob_text}"));
    }

    #[test]
    fn transfer_refusals() {
        assert!(fails(&["transfer", "--to", "bob", "--amount", "0.5"]).contains("no unit"));
        assert!(fails(&["transfer", "--to", "carol", "--amount", "1 BTC"]).contains("--to"));
        assert!(fails(&["transfer", "--to", "bob", "--amount", "0 BTC"]).contains("more than zero"));
        assert!(
            fails(&["transfer", "--to", "bob", "--amount", "1 BTC", "--asset", "USDC"])
                .contains("needs USDC")
        );
        assert!(fails(&["transfer", "--to", "bob"]).contains("--amount"));
    }

    #[test]
    fn create_asset() {
        assert_eq!(
            call(&[
                "create-asset",
                "--symbol",
                "gold",
                "--decimals",
                "2",
                "--supply",
                "1000.5"
            ]),
            Call::Bank(BankMsg::CreateAsset {
                symbol: "GOLD".into(),
                decimals: 2,
                initial_supply: 100_050
            })
        );
        assert!(fails(&[
            "create-asset",
            "--symbol",
            "G!",
            "--decimals",
            "2",
            "--supply",
            "1"
        ])
        .contains("--symbol"));
        assert!(fails(&[
            "create-asset",
            "--symbol",
            "G",
            "--decimals",
            "2",
            "--supply",
            "0.001"
        ])
        .contains("--supply"));
    }

    #[test]
    fn swaps_exact_in_out_routes_and_quotes() {
        // Quote: 0.1 BTC = 10_000_000 sat → 6_000_000_000; 50 bps off.
        assert_eq!(
            call(&["swap", "--amount-in", "0.1 BTC", "--out", "USDC"]),
            Call::Dex(DexMsg::SwapExactIn {
                path: vec![AssetId(0), AssetId(1)],
                amount_in: 10_000_000,
                min_out: 5_970_000_000,
                deadline: 1_100
            })
        );
        assert_eq!(
            call(&[
                "swap",
                "--amount-in",
                "0.1",
                "--in",
                "BTC",
                "--out",
                "USDC",
                "--min-out",
                "5000",
                "--deadline-blocks",
                "5"
            ]),
            Call::Dex(DexMsg::SwapExactIn {
                path: vec![AssetId(0), AssetId(1)],
                amount_in: 10_000_000,
                min_out: 5_000_000_000,
                deadline: 1_005
            })
        );
        assert_eq!(
            call(&[
                "swap",
                "--amount-in",
                "1 BTC",
                "--route",
                "BTC,ETH,USDC",
                "--min-out",
                "1"
            ]),
            Call::Dex(DexMsg::SwapExactIn {
                path: vec![AssetId(0), AssetId(2), AssetId(1)],
                amount_in: 100_000_000,
                min_out: 1_000_000,
                deadline: 1_100
            })
        );
        // Exact out: 600 USDC = 600_000_000 → quote 1_000_000 sat, plus 50 bps.
        assert_eq!(
            call(&["swap", "--amount-out", "600 USDC", "--in", "BTC"]),
            Call::Dex(DexMsg::SwapExactOut {
                path: vec![AssetId(0), AssetId(1)],
                amount_out: 600_000_000,
                max_in: 1_005_000,
                deadline: 1_100
            })
        );
        assert!(fails(&["swap", "--amount-in", "1 BTC"]).contains("--out"));
        assert!(fails(&["swap", "--amount-in", "1 BTC", "--out", "BTC"]).contains("itself"));
        assert!(
            fails(&["swap", "--amount-in", "1 USDC", "--route", "BTC,USDC"]).contains("needs BTC")
        );
        assert!(fails(&[
            "swap",
            "--amount-in",
            "1 BTC",
            "--in",
            "USDC",
            "--route",
            "BTC,USDC"
        ])
        .contains("first asset"));
        assert!(fails(&["swap", "--out", "USDC"]).contains("--amount-in"));
        assert!(
            fails(&["swap", "--amount-in", "1 BTC", "--amount-out", "1 USDC"])
                .contains("cannot be used")
        );
        assert!(fails(&[
            "swap",
            "--amount-out",
            "1 USDC",
            "--in",
            "BTC",
            "--min-out",
            "1"
        ])
        .contains("cannot be used"));
    }

    #[test]
    fn batch_swap_uses_the_batch_quote() {
        assert_eq!(
            call(&["batch-swap", "--amount-in", "0.1 BTC", "--out", "USDC"]),
            Call::Dex(DexMsg::BatchSwap {
                asset_in: AssetId(0),
                asset_out: AssetId(1),
                amount_in: 10_000_000,
                // 6_000_000_000 × 0.99 (batch) less 100 bps.
                min_out: 5_880_600_000
            })
        );
    }

    #[test]
    fn liquidity() {
        assert_eq!(
            call(&[
                "add-liquidity",
                "--amount-x",
                "1 BTC",
                "--amount-y",
                "60000 USDC",
                "--min-y",
                "59000"
            ]),
            Call::Dex(DexMsg::AddLiquidity {
                asset_x: AssetId(0),
                asset_y: AssetId(1),
                amount_x_desired: 100_000_000,
                amount_y_desired: 60_000_000_000,
                amount_x_min: 0,
                amount_y_min: 59_000_000_000,
                deadline: 1_100
            })
        );
        assert!(fails(&[
            "add-liquidity",
            "--amount-x",
            "1 BTC",
            "--amount-y",
            "2 BTC"
        ])
        .contains("both"));
        assert_eq!(
            call(&[
                "remove-liquidity",
                "--pool",
                "BTC-USDC",
                "--liquidity",
                "77",
                "--min-x",
                "0.5"
            ]),
            Call::Dex(DexMsg::RemoveLiquidity {
                asset_x: AssetId(0),
                asset_y: AssetId(1),
                liquidity: 77,
                amount_x_min: 50_000_000,
                amount_y_min: 0,
                deadline: 1_100
            })
        );
    }

    #[test]
    fn lending_messages() {
        assert_eq!(
            call(&["supply", "--amount", "2 BTC"]),
            Call::Lending(LendingMsg::Supply {
                asset: AssetId(0),
                amount: 200_000_000
            })
        );
        assert_eq!(
            call(&["borrow", "--amount", "100", "--asset", "USDC"]),
            Call::Lending(LendingMsg::Borrow {
                asset: AssetId(1),
                amount: 100_000_000
            })
        );
        assert_eq!(
            call(&["withdraw", "--amount", "1sat"]),
            Call::Lending(LendingMsg::Withdraw {
                asset: AssetId(0),
                amount: 1
            })
        );
        assert_eq!(
            call(&["repay", "--amount", "max", "--asset", "USDC"]),
            Call::Lending(LendingMsg::Repay {
                asset: AssetId(1),
                amount: u128::MAX
            })
        );
        assert!(fails(&["repay", "--amount", "max"]).contains("--asset"));
        assert!(fails(&["borrow", "--amount", "max", "--asset", "USDC"]).contains("max"));
        assert_eq!(
            call(&[
                "liquidate",
                "--borrower",
                "bob",
                "--amount",
                "50 USDC",
                "--collateral",
                "BTC"
            ]),
            Call::Lending(LendingMsg::Liquidate {
                borrower: bob(),
                debt_asset: AssetId(1),
                collateral_asset: AssetId(0),
                amount: 50_000_000
            })
        );
        assert_eq!(
            call(&["set-price", "--asset", "BTC", "--price", "0.0006"]),
            Call::Lending(LendingMsg::SetPrice {
                asset: AssetId(0),
                price: 600_000_000_000_000
            })
        );
    }

    #[test]
    fn staking_messages_use_the_pool_assets() {
        // Pool 5 stakes ETH (18 decimals) for USDC rewards (6 decimals).
        assert_eq!(
            call(&["stake", "--pool", "5", "--amount", "1.5"]),
            Call::Staking(StakingMsg::Stake {
                pool: 5,
                amount: 1_500_000_000_000_000_000
            })
        );
        assert_eq!(
            call(&["unbond", "--pool", "5", "--amount", "1 ETH"]),
            Call::Staking(StakingMsg::Unbond {
                pool: 5,
                amount: 10u128.pow(18)
            })
        );
        assert_eq!(
            call(&["fund-rewards", "--pool", "5", "--amount", "1.5"]),
            Call::Staking(StakingMsg::FundRewards {
                pool: 5,
                amount: 1_500_000
            })
        );
        assert!(fails(&["stake", "--pool", "5", "--amount", "1 BTC"]).contains("needs ETH"));
        assert!(fails(&["stake", "--pool", "6", "--amount", "1"]).contains("staking pool 6"));
        assert_eq!(
            call(&["withdraw-stake", "--pool", "5"]),
            Call::Staking(StakingMsg::Withdraw { pool: 5 })
        );
        assert_eq!(
            call(&["claim-rewards", "--pool", "5"]),
            Call::Staking(StakingMsg::Claim { pool: 5 })
        );
        assert_eq!(
            call(&[
                "create-staking-pool",
                "--stake-asset",
                "ETH",
                "--reward-asset",
                "1",
                "--unbonding-blocks",
                "10"
            ]),
            Call::Staking(StakingMsg::CreatePool {
                stake_asset: AssetId(2),
                reward_asset: AssetId(1),
                unbonding_blocks: 10,
                slash_destination: alice()
            })
        );
        assert_eq!(
            call(&[
                "slash",
                "--pool",
                "5",
                "--staker",
                "bob",
                "--fraction-ppm",
                "1000"
            ]),
            Call::Staking(StakingMsg::Slash {
                pool: 5,
                staker: bob(),
                fraction_ppm: 1000
            })
        );
        assert!(fails(&[
            "slash",
            "--pool",
            "5",
            "--staker",
            "bob",
            "--fraction-ppm",
            "0"
        ])
        .contains("ppm"));
    }

    #[test]
    fn insurance_messages_use_the_pool_asset() {
        // Pool 9 is in USDC; cover 11 is in pool 9.
        assert_eq!(
            call(&["underwrite", "--pool", "9", "--amount", "1000"]),
            Call::Insurance(InsuranceMsg::Underwrite {
                pool: 9,
                amount: 1_000_000_000
            })
        );
        assert_eq!(
            call(&["stake-assessor", "--pool", "9", "--amount", "10 USDC"]),
            Call::Insurance(InsuranceMsg::StakeAssessor {
                pool: 9,
                amount: 10_000_000
            })
        );
        assert_eq!(
            call(&["unstake-assessor", "--pool", "9", "--amount", "10"]),
            Call::Insurance(InsuranceMsg::UnstakeAssessor {
                pool: 9,
                amount: 10_000_000
            })
        );
        assert_eq!(
            call(&["request-withdrawal", "--pool", "9", "--shares", "5"]),
            Call::Insurance(InsuranceMsg::RequestWithdrawal { pool: 9, shares: 5 })
        );
        assert_eq!(
            call(&["withdraw-capital", "--pool", "9"]),
            Call::Insurance(InsuranceMsg::Withdraw { pool: 9 })
        );
        // Premium quote: 100 USDC × 1000 blocks / 1e6 = 100_000, plus 100 bps.
        assert_eq!(
            call(&[
                "buy-cover",
                "--pool",
                "9",
                "--risk",
                "bridge hack",
                "--amount",
                "100",
                "--period-blocks",
                "1000"
            ]),
            Call::Insurance(InsuranceMsg::BuyCover {
                pool: 9,
                risk: "bridge hack".into(),
                amount: 100_000_000,
                period_blocks: 1000,
                max_premium: 101_000
            })
        );
        assert_eq!(
            call(&["claim", "--cover", "11", "--amount", "40"]),
            Call::Insurance(InsuranceMsg::FileClaim {
                cover: 11,
                amount: 40_000_000
            })
        );
        assert!(fails(&["claim", "--cover", "12", "--amount", "40"]).contains("cover 12"));
        assert_eq!(
            call(&["vote", "--cover", "11", "--reject"]),
            Call::Insurance(InsuranceMsg::Vote {
                cover: 11,
                approve: false
            })
        );
        assert_eq!(
            call(&["vote", "--cover", "11", "--approve"]),
            Call::Insurance(InsuranceMsg::Vote {
                cover: 11,
                approve: true
            })
        );
        assert!(fails(&["vote", "--cover", "11"]).contains("--approve"));
        assert_eq!(
            call(&["resolve", "--cover", "11"]),
            Call::Insurance(InsuranceMsg::Resolve { cover: 11 })
        );
        assert_eq!(
            call(&["release-cover", "--cover", "11"]),
            Call::Insurance(InsuranceMsg::ReleaseCover { cover: 11 })
        );
        match call(&[
            "create-insurance-pool",
            "--asset",
            "USDC",
            "--quorum-bps",
            "5000",
        ]) {
            Call::Insurance(InsuranceMsg::CreatePool(p)) => {
                assert_eq!(p.asset, AssetId(1));
                assert_eq!(p.quorum_bps, 5000);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn channel_open_deposit_settle_and_close_without_state() {
        assert_eq!(
            call(&[
                "channel-open",
                "--peer",
                "bob",
                "--deposit",
                "0.1 BTC",
                "--challenge-blocks",
                "20"
            ]),
            Call::Channel(ChannelMsg::Open {
                peer: bob(),
                asset: AssetId(0),
                deposit: 10_000_000,
                challenge_blocks: 20
            })
        );
        assert_eq!(
            call(&[
                "channel-open",
                "--peer",
                "bob",
                "--asset",
                "USDC",
                "--challenge-blocks",
                "5"
            ]),
            Call::Channel(ChannelMsg::Open {
                peer: bob(),
                asset: AssetId(1),
                deposit: 0,
                challenge_blocks: 5
            })
        );
        let alice_text = alice().to_bech32(Network::Regtest);
        assert!(fails(&[
            "channel-open",
            "--peer",
            &alice_text,
            "--deposit",
            "1 BTC",
            "--challenge-blocks",
            "5"
        ])
        .contains("two different parties"));
        assert!(fails(&[
            "channel-open",
            "--peer",
            "bob",
            "--deposit",
            "1 BTC",
            "--challenge-blocks",
            "0"
        ])
        .contains("--challenge-blocks"));
        assert!(fails(&[
            "channel-open",
            "--peer",
            "bob",
            "--deposit",
            "1",
            "--challenge-blocks",
            "5"
        ])
        .contains("--asset"));
        let open = call(&[
            "channel-open",
            "--peer",
            "bob",
            "--deposit",
            "1 BTC",
            "--challenge-blocks",
            "5",
        ]);
        assert_eq!(
            created(&open, &alice(), 3),
            Some(("channel", json!(channels::derive_channel_id(&alice(), 3))))
        );
        // Deposits are in the channel's asset (USDC).
        assert_eq!(
            call(&["channel-deposit", "--channel", "42", "--amount", "2.5"]),
            Call::Channel(ChannelMsg::Deposit {
                channel: 42,
                amount: 2_500_000
            })
        );
        assert!(
            fails(&["channel-deposit", "--channel", "42", "--amount", "1 BTC"])
                .contains("needs USDC")
        );
        assert!(
            fails(&["channel-deposit", "--channel", "43", "--amount", "1"])
                .contains("unknown channel 43")
        );
        assert_eq!(
            call(&["channel-close", "--channel", "42"]),
            Call::Channel(ChannelMsg::Close {
                channel: 42,
                state: None
            })
        );
        assert!(fails(&["channel-close"]).contains("--channel"));
        assert!(fails(&["channel-close", "--channel", "44"])
            .contains("channel 44 is closing, not open"));
        assert!(
            fails(&["channel-deposit", "--channel", "45", "--amount", "1"])
                .contains("channel 45 is settled, not open")
        );
        // The head is at 1000: 46's period ended at 1000, 44's ends at 1010.
        assert_eq!(
            call(&["channel-settle", "--channel", "46"]),
            Call::Channel(ChannelMsg::Settle { channel: 46 })
        );
        assert!(fails(&["channel-settle", "--channel", "44"])
            .contains("challenge period not over: channel 44 settles after height 1010, now 1000"));
        assert!(fails(&["channel-settle", "--channel", "42"]).contains("not closing"));
    }

    #[test]
    fn channel_states_are_checked_before_sending() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let d = dir.path();
        let (ka, kb) = (
            SigningKey::from_seed(b"alice"),
            SigningKey::from_seed(b"bob"),
        );
        let both = state_file(d, 42, 3, 4_000_000, CHAIN, &[&ka, &kb]);
        let file = StateFile::load(std::path::Path::new(&both)).unwrap_or_else(|e| panic!("{e:#}"));
        let signed = file.signed().unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            call(&["channel-close-coop", "--state", &both]),
            Call::Channel(ChannelMsg::CloseCooperative {
                state: Box::new(signed.clone())
            })
        );
        assert_eq!(
            call(&["channel-close", "--state", &both]),
            Call::Channel(ChannelMsg::Close {
                channel: 42,
                state: Some(Box::new(signed))
            })
        );
        assert!(
            fails(&["channel-close", "--channel", "44", "--state", &both]).contains("channel 42")
        );
        // Only one signature, another chain, a tampered file, an unparsable one.
        let half = state_file(d, 42, 3, 4_000_000, CHAIN, &[&ka]);
        assert!(
            fails(&["channel-close-coop", "--state", &half]).contains("no signature of party b")
        );
        let other = state_file(d, 42, 3, 4_000_000, CHAIN + 1, &[&ka, &kb]);
        assert!(fails(&["channel-close-coop", "--state", &other]).contains("chain"));
        let tampered = std::fs::read_to_string(&both)
            .unwrap_or_default()
            .replace("4000000", "4000001")
            .replace("11000000", "10999999");
        let tampered_path = d.join("tampered.json");
        std::fs::write(&tampered_path, tampered).unwrap_or_else(|e| panic!("{e}"));
        let t = tampered_path.display().to_string();
        assert!(fails(&["channel-close-coop", "--state", &t]).contains("does not verify"));
        let junk = d.join("junk.json");
        std::fs::write(&junk, "not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            fails(&["channel-challenge", "--state", &junk.display().to_string()])
                .contains("not a channel state file")
        );
        assert!(
            fails(&["channel-close-coop", "--state", "/nonexistent/s.json"])
                .contains("cannot read")
        );
        // Challenges need a closing channel and a newer state.
        assert!(fails(&["channel-challenge", "--state", &both]).contains("not closing"));
        let newer = state_file(d, 44, 2, 1, CHAIN, &[&ka, &kb]);
        match call(&["channel-challenge", "--state", &newer]) {
            Call::Channel(ChannelMsg::Challenge { state }) => {
                assert_eq!((state.state.channel, state.state.nonce), (44, 2))
            }
            other => panic!("{other:?}"),
        }
        let stale = state_file(d, 44, 1, 1, CHAIN, &[&ka, &kb]);
        assert!(fails(&["channel-challenge", "--state", &stale]).contains("not above"));
    }

    #[test]
    fn channel_htlcs_resolve_with_the_right_preimage() {
        let good = hex::encode([9u8; 32]);
        assert_eq!(
            call(&[
                "channel-resolve-htlc",
                "--channel",
                "45",
                "--index",
                "1",
                "--preimage",
                &good
            ]),
            Call::Channel(ChannelMsg::ResolveHtlc {
                channel: 45,
                index: 1,
                preimage: Some([9; 32])
            })
        );
        assert_eq!(
            call(&["channel-resolve-htlc", "--channel", "45", "--index", "1"]),
            Call::Channel(ChannelMsg::ResolveHtlc {
                channel: 45,
                index: 1,
                preimage: None
            })
        );
        let wrong = hex::encode([8u8; 32]);
        assert!(fails(&[
            "channel-resolve-htlc",
            "--channel",
            "45",
            "--index",
            "1",
            "--preimage",
            &wrong
        ])
        .contains("does not hash"));
        assert!(fails(&[
            "channel-resolve-htlc",
            "--channel",
            "45",
            "--index",
            "1",
            "--preimage",
            "abc"
        ])
        .contains("64 hex digits"));
        assert!(
            fails(&["channel-resolve-htlc", "--channel", "45", "--index", "0"])
                .contains("no pending HTLC")
        );
        assert!(
            fails(&["channel-resolve-htlc", "--channel", "42", "--index", "0"])
                .contains("not settled")
        );
    }

    #[test]
    fn raw_calls_round_trip() {
        let c = Call::Bank(BankMsg::Transfer {
            to: bob(),
            asset: AssetId(3),
            amount: 9,
        });
        let text = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(call(&["raw", &text]), c);
        assert!(fails(&["raw", "{\"Bank\":{}}"]).contains("Call JSON"));
    }

    #[test]
    fn created_ids_follow_the_modules() {
        let c = call(&[
            "create-asset",
            "--symbol",
            "X",
            "--decimals",
            "0",
            "--supply",
            "1",
        ]);
        let (what, id) = created(&c, &alice(), 4).unwrap_or_else(|| panic!("no id"));
        assert_eq!(what, "asset");
        assert_eq!(id, json!(bank::derive_asset_id(&alice(), 4).map(|a| a.0)));
        assert!(created(&call(&["supply", "--amount", "1 BTC"]), &alice(), 4).is_none());
    }
}
