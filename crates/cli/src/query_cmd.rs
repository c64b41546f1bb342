//! `parabit query …`: read-only questions to the node over JSON-RPC, shown readably or, with
//! `--json`, as one JSON document (the node's answer, lightly enriched with human amounts).
//!
//! Invariants:
//! - Nothing here signs or sends a transaction; every command is one or a few RPC reads.
//! - A missing object (unknown block, transaction, pool…) is an error with a non-zero exit
//!   code, except `receipt` of a pending transaction, which reports `pending`.
//! - `query proof` never trusts the node: it checks the returned value and proof against the
//!   block's state root locally ([`crate::proof`]) and fails if they do not verify.

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use parabit_exec::Key;
use parabit_modules::bank::{balance_key, nonce_key};
use parabit_primitives::{AssetId, Network};
use serde_json::{json, Value as Json};

use crate::client::{json_u128, AssetMeta, Lookup, Rpc, RpcArgs, RpcLookup};
use crate::human::{self, AssetRef};
use crate::wallet_cmd::{resolve_address, KeystoreArgs};

/// `parabit query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// Print one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    what: Query,
}

#[derive(Debug, Subcommand)]
enum Query {
    /// Chain id, network, head height, hash and state root, mempool size.
    Chain,
    /// A block by height or hash.
    Block {
        /// A height, or a block hash (64 hex digits).
        id: String,
        /// Include whole transactions instead of their ids.
        #[arg(long)]
        full: bool,
    },
    /// A settlement batch by index: its L2 block range, transactions, Bitcoin commit and
    /// reveal txids, size and status (`pending`, `posted`, `confirmed`).
    Batch {
        /// The batch index (from 0).
        #[arg(required_unless_present = "block")]
        index: Option<u64>,
        /// Instead of an index: the batch holding this L2 block height.
        #[arg(long, value_name = "HEIGHT", conflicts_with = "index")]
        block: Option<u64>,
    },
    /// A transaction by id (pending or committed).
    Tx {
        /// The transaction id.
        id: String,
    },
    /// A transaction's receipt.
    Receipt {
        /// The transaction id.
        id: String,
    },
    /// An account's balances (every asset it holds, or one with --asset).
    Balance {
        /// An address, or a keystore key's name.
        address: String,
        /// Only this asset (symbol or id).
        #[arg(long)]
        asset: Option<AssetRef>,
    },
    /// The next nonce an account must use.
    Nonce {
        /// An address, or a keystore key's name.
        address: String,
    },
    /// The latest transactions an account sent or received.
    Txs {
        /// An address, or a keystore key's name.
        address: String,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One asset (symbol or id).
    Asset {
        /// Symbol or id.
        asset: AssetRef,
    },
    /// Every asset.
    Assets,
    /// One DEX pool.
    Pool {
        /// Two assets: "BTC-USDC" or "0-1".
        pool: String,
    },
    /// Every DEX pool.
    Pools,
    /// Quotes a swap without sending it.
    Quote {
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
        /// The whole path, e.g. BTC,ETH,USDC.
        #[arg(long)]
        route: Option<String>,
        /// The batch auction's quote for the current block (single pool, exact input).
        #[arg(long, conflicts_with = "amount_out")]
        batch: bool,
    },
    /// Every lending market.
    Markets,
    /// An account's lending positions and health factor.
    Position {
        /// An address, or a keystore key's name.
        address: String,
    },
    /// Staking pools and stakes.
    #[command(subcommand)]
    Staking(StakingQuery),
    /// Insurance pools, covers, claims and premiums.
    #[command(subcommand)]
    Insurance(InsuranceQuery),
    /// A payment channel: parties, deposits, status (the closing state and its deadline, or
    /// the HTLCs pending after settlement).
    Channel {
        /// The channel id (printed by `parabit tx channel-open`).
        id: u64,
    },
    /// A state value with a Merkle proof, verified locally against the block's state root.
    Proof {
        /// `balance:<address>:<asset>`, `nonce:<address>`, or a raw state key in hex.
        key: String,
        /// The block whose state root to prove against (default: the head).
        #[arg(long)]
        height: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum StakingQuery {
    /// A staking pool's configuration and totals.
    Pool {
        /// The pool id.
        pool: u64,
    },
    /// An account's stake and claimable rewards in a pool.
    Stake {
        /// The pool id.
        pool: u64,
        /// An address, or a keystore key's name.
        address: String,
    },
}

#[derive(Debug, Subcommand)]
enum InsuranceQuery {
    /// An insurance pool.
    Pool {
        /// The pool id.
        pool: u64,
    },
    /// A cover.
    Cover {
        /// The cover id.
        cover: u64,
    },
    /// The claim on a cover.
    Claim {
        /// The cover id.
        cover: u64,
    },
    /// The premium for an amount of cover over a period.
    Premium {
        /// The pool id.
        #[arg(long)]
        pool: u64,
        /// The cover amount, in the pool's asset.
        #[arg(long)]
        amount: String,
        /// Blocks covered.
        #[arg(long)]
        period_blocks: u64,
    },
}

fn print(json_mode: bool, doc: &Json, readable: impl FnOnce() -> String) {
    if json_mode {
        println!("{doc}");
    } else {
        println!("{}", readable());
    }
}

fn pretty(v: &Json) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn some(v: Json, what: impl FnOnce() -> String) -> Result<Json> {
    if v.is_null() {
        bail!("{} not found", what());
    }
    Ok(v)
}

/// The balance object of `pb_getBalance` with a human `display` field.
fn balance_line(b: &Json) -> Result<(Json, String)> {
    let meta = AssetMeta::from_json(b).context("pb_getBalance: unexpected answer")?;
    let amount =
        json_u128(&b["amount"]).ok_or_else(|| anyhow!("pb_getBalance: no amount in {b}"))?;
    let shown = meta.show(amount);
    let mut out = b.clone();
    out["display"] = json!(shown);
    Ok((out, shown))
}

/// Runs `parabit query …`.
pub fn run(args: &QueryArgs) -> Result<()> {
    let rpc = Rpc::connect(&args.rpc)?;
    let j = args.json;
    match &args.what {
        Query::Chain => {
            let info = rpc.chain_info()?;
            let v = &info.raw;
            print(j, v, || {
                format!(
                    "chain id:   {}\nnetwork:    {}\nheight:     {}\nblock hash: {}\nstate root: {}\nmempool:    {} txs, {} bytes",
                    v["chain_id"],
                    v["network"].as_str().unwrap_or("?"),
                    v["height"],
                    v["block_hash"].as_str().unwrap_or("?"),
                    v["state_root"].as_str().unwrap_or("?"),
                    v["mempool_txs"],
                    v["mempool_bytes"]
                )
            });
        }
        Query::Block { id, full } => {
            let id = id.trim();
            let v = if id.bytes().all(|b| b.is_ascii_digit()) {
                let h: u64 = id.parse().with_context(|| format!("block height {id}"))?;
                rpc.call("pb_getBlockByHeight", vec![json!(h), json!(full)])?
            } else {
                ensure!(
                    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                    "block {id:?}: give a height or a 64-hex-digit hash"
                );
                rpc.call(
                    "pb_getBlockByHash",
                    vec![json!(id.to_ascii_lowercase()), json!(full)],
                )?
            };
            let v = some(v, || format!("block {id}"))?;
            print(j, &v, || pretty(&v));
        }
        Query::Batch { index, block } => {
            let (v, what) = match (index, block) {
                (_, Some(h)) => (
                    rpc.call("pb_getBatchOfBlock", vec![json!(h)])?,
                    format!("a batch holding block {h}"),
                ),
                (Some(i), None) => (
                    rpc.call("pb_getBatch", vec![json!(i)])?,
                    format!("batch {i}"),
                ),
                (None, None) => bail!("give a batch index or --block HEIGHT"),
            };
            let v = some(v, || what)?;
            print(j, &v, || {
                let txid = |k: &str| v[k].as_str().unwrap_or("-").to_string();
                let at = match v["bitcoin_height"].as_u64() {
                    Some(h) => format!(" in Bitcoin block {h}"),
                    None => String::new(),
                };
                format!(
                    "batch {}: L2 blocks {}..={} ({} txs)\nstatus:      {}{at}\ncommit txid: {}\nreveal txid: {}\nsize:        {} vB ({} bytes of data), fee {} sat",
                    v["index"],
                    v["first_height"],
                    v["last_height"],
                    v["tx_count"],
                    v["status"].as_str().unwrap_or("?"),
                    txid("commit_txid"),
                    txid("reveal_txid"),
                    v["vbytes"],
                    v["data_bytes"],
                    v["fee_sat"],
                )
            });
        }
        Query::Tx { id } => {
            let v = rpc.call("pb_getTransaction", vec![json!(id.trim())])?;
            let v = some(v, || format!("transaction {id}"))?;
            print(j, &v, || pretty(&v));
        }
        Query::Receipt { id } => {
            let v = rpc.call("pb_getTransactionReceipt", vec![json!(id.trim())])?;
            if v.is_null() {
                let t = rpc.call("pb_getTransaction", vec![json!(id.trim())])?;
                if t.is_null() {
                    bail!("transaction {id} not found");
                }
                let doc = json!({"id": id, "status": "pending"});
                print(j, &doc, || format!("{id}: pending (not committed yet)"));
                return Ok(());
            }
            print(j, &v, || {
                format!(
                    "{}: {}{} in block {} (index {}), fee paid {} sat",
                    v["id"].as_str().unwrap_or(id),
                    v["status"].as_str().unwrap_or("?"),
                    v["error"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default(),
                    v["height"],
                    v["index"],
                    v["fee_paid"].as_str().unwrap_or("?")
                )
            });
        }
        Query::Balance { address, asset } => {
            let info = rpc.chain_info()?;
            let who = resolve_address(address, &args.keystore)?;
            let shown_addr = who.to_bech32(info.network);
            let lk = RpcLookup::new(&rpc, &info);
            let assets: Vec<AssetMeta> = match asset {
                Some(a) => vec![a.resolve(&lk)?],
                None => rpc.list_assets()?,
            };
            let mut rows = Vec::new();
            let mut lines = Vec::new();
            for a in &assets {
                let b = rpc.call("pb_getBalance", vec![json!(shown_addr), json!(a.id.0)])?;
                let (b, shown) = balance_line(&b)?;
                let zero = json_u128(&b["amount"]) == Some(0);
                if asset.is_some() || !zero {
                    rows.push(b);
                    lines.push(shown);
                }
            }
            let doc = json!({"address": shown_addr, "balances": rows});
            print(j, &doc, || {
                if lines.is_empty() {
                    format!("{shown_addr}: no balances")
                } else {
                    lines.join("\n")
                }
            });
        }
        Query::Nonce { address } => {
            let info = rpc.chain_info()?;
            let who = resolve_address(address, &args.keystore)?;
            let n = rpc.nonce(&who, info.network)?;
            let doc = json!({"address": who.to_bech32(info.network), "nonce": n});
            print(j, &doc, || n.to_string());
        }
        Query::Txs { address, limit } => {
            let info = rpc.chain_info()?;
            let who = resolve_address(address, &args.keystore)?;
            let v = rpc.call(
                "pb_getAccountTransactions",
                vec![json!(who.to_bech32(info.network)), json!(limit)],
            )?;
            print(j, &v, || {
                v.as_array()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(Json::as_str)
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default()
            });
        }
        Query::Asset { asset } => {
            let info = rpc.chain_info()?;
            let lk = RpcLookup::new(&rpc, &info);
            let meta = asset.resolve(&lk)?;
            let v = rpc.call("pb_getAsset", vec![json!(meta.id.0)])?;
            let v = some(v, || format!("asset {asset}"))?;
            print(j, &v, || asset_line(&v));
        }
        Query::Assets => {
            let v = rpc.call("pb_listAssets", vec![])?;
            print(j, &v, || {
                v.as_array()
                    .map(|l| l.iter().map(asset_line).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            });
        }
        Query::Pool { pool } => {
            let info = rpc.chain_info()?;
            let lk = RpcLookup::new(&rpc, &info);
            let (a, b) = human::pool(pool)?;
            let (a, b) = (a.resolve(&lk)?, b.resolve(&lk)?);
            let v = rpc.call("pb_getPool", vec![json!(format!("{}-{}", a.id.0, b.id.0))])?;
            let v = some(v, || format!("pool {pool}"))?;
            let line = pool_line(&v, &lk);
            print(j, &v, || line);
        }
        Query::Pools => {
            let info = rpc.chain_info()?;
            let lk = RpcLookup::new(&rpc, &info);
            let v = rpc.call("pb_listPools", vec![])?;
            let lines: Vec<String> = v
                .as_array()
                .map(|l| l.iter().map(|p| pool_line(p, &lk)).collect())
                .unwrap_or_default();
            print(j, &v, || {
                if lines.is_empty() {
                    "no pools".to_string()
                } else {
                    lines.join("\n")
                }
            });
        }
        Query::Quote {
            amount_in,
            amount_out,
            asset_in,
            asset_out,
            route,
            batch,
        } => {
            let info = rpc.chain_info()?;
            let lk = RpcLookup::new(&rpc, &info);
            let path: Vec<AssetMeta> = match route {
                Some(r) => human::route(r)?
                    .iter()
                    .map(|a| a.resolve(&lk))
                    .collect::<Result<_>>()?,
                None => {
                    let from = quote_asset(asset_in.as_ref(), amount_in.as_deref(), "--in", &lk)?;
                    let to = quote_asset(asset_out.as_ref(), amount_out.as_deref(), "--out", &lk)?;
                    vec![from, to]
                }
            };
            let (first, last) = match (path.first(), path.last()) {
                (Some(f), Some(l)) => (f.clone(), l.clone()),
                _ => bail!("empty route"),
            };
            let ids: Vec<_> = path.iter().map(|a| a.id).collect();
            let route_text = path
                .iter()
                .map(|a| a.symbol.clone())
                .collect::<Vec<_>>()
                .join("→");
            let (doc, line) = if let Some(t) = amount_in {
                let (_, v) = human::positive_amount("--amount-in", t, Some(&first), &lk)?;
                let out = lk.quote_exact_in(&ids, v, *batch)?;
                (
                    json!({"path": ids, "amount_in": v.to_string(), "amount_out": out.to_string(), "batch": batch}),
                    format!("{} → {} via {route_text}", first.show(v), last.show(out)),
                )
            } else if let Some(t) = amount_out {
                let (_, v) = human::positive_amount("--amount-out", t, Some(&last), &lk)?;
                let inp = lk.quote_exact_out(&ids, v)?;
                (
                    json!({"path": ids, "amount_in": inp.to_string(), "amount_out": v.to_string()}),
                    format!("{} → {} via {route_text}", first.show(inp), last.show(v)),
                )
            } else {
                bail!("give --amount-in or --amount-out");
            };
            print(j, &doc, || line);
        }
        Query::Markets => {
            let v = rpc.call("pb_getMarkets", vec![])?;
            print(j, &v, || pretty(&v));
        }
        Query::Position { address } => {
            let info = rpc.chain_info()?;
            let who = resolve_address(address, &args.keystore)?;
            let v = rpc.call("pb_getPosition", vec![json!(who.to_bech32(info.network))])?;
            let lk = RpcLookup::new(&rpc, &info);
            print(j, &v, || position_text(&v, &lk));
        }
        Query::Staking(StakingQuery::Pool { pool }) => {
            let v = rpc.call("pb_getStakingPool", vec![json!(pool)])?;
            let v = some(v, || format!("staking pool {pool}"))?;
            print(j, &v, || pretty(&v));
        }
        Query::Staking(StakingQuery::Stake { pool, address }) => {
            let info = rpc.chain_info()?;
            let who = resolve_address(address, &args.keystore)?;
            let v = rpc.call(
                "pb_getStake",
                vec![json!(pool), json!(who.to_bech32(info.network))],
            )?;
            print(j, &v, || pretty(&v));
        }
        Query::Insurance(InsuranceQuery::Pool { pool }) => {
            let v = rpc.call("pb_getInsurancePool", vec![json!(pool)])?;
            let v = some(v, || format!("insurance pool {pool}"))?;
            print(j, &v, || pretty(&v));
        }
        Query::Insurance(InsuranceQuery::Cover { cover }) => {
            let v = rpc.call("pb_getCover", vec![json!(cover)])?;
            let v = some(v, || format!("cover {cover}"))?;
            print(j, &v, || pretty(&v));
        }
        Query::Insurance(InsuranceQuery::Claim { cover }) => {
            let v = rpc.call("pb_getClaim", vec![json!(cover)])?;
            let v = some(v, || format!("claim on cover {cover}"))?;
            print(j, &v, || pretty(&v));
        }
        Query::Insurance(InsuranceQuery::Premium {
            pool,
            amount,
            period_blocks,
        }) => {
            let info = rpc.chain_info()?;
            let lk = RpcLookup::new(&rpc, &info);
            let asset = lk.asset(lk.insurance_pool_asset(*pool)?)?;
            let (_, v) = human::positive_amount("--amount", amount, Some(&asset), &lk)?;
            let p = lk.quote_premium(*pool, v, *period_blocks)?;
            let doc = json!({"pool": pool, "amount": v.to_string(), "period_blocks": period_blocks, "premium": p.to_string()});
            print(j, &doc, || format!("premium: {}", asset.show(p)));
        }
        Query::Channel { id } => {
            let info = rpc.chain_info()?;
            let v = crate::channel_cmd::fetch_channel_json(&rpc, *id)?;
            let lk = RpcLookup::new(&rpc, &info);
            let text = channel_text(&v, info.network, &lk)?;
            print(j, &v, || text);
        }
        Query::Proof { key, height } => {
            let info = rpc.chain_info()?;
            let (spec, expected) = proof_key(key, &args.keystore, info.network)?;
            let mut params = vec![spec];
            if let Some(h) = height {
                params.push(json!(h));
            }
            let v = rpc.call("pb_getProof", params)?;
            let h = v["height"]
                .as_u64()
                .ok_or_else(|| anyhow!("pb_getProof: no height in {v}"))?;
            let block = rpc.call("pb_getBlockByHeight", vec![json!(h), json!(false)])?;
            let header_root = block["state_root"]
                .as_str()
                .ok_or_else(|| anyhow!("block {h} not found or has no state_root"))?;
            let checked = crate::proof::verify_answer(&v, &expected, header_root)
                .context("the node's proof was REJECTED")?;
            let mut doc = v.clone();
            doc["verified"] = json!(true);
            print(j, &doc, || {
                format!(
                    "verified against the state root {} of block {h}\nkey:   {}\nvalue: {}",
                    checked.root_hex,
                    hex::encode(expected.as_bytes()),
                    checked.value_text()
                )
            });
        }
    }
    Ok(())
}

fn quote_asset(
    flag: Option<&AssetRef>,
    amount: Option<&str>,
    flag_name: &str,
    lk: &dyn Lookup,
) -> Result<AssetMeta> {
    if let Some(a) = flag {
        return a.resolve(lk);
    }
    if let Some(t) = amount {
        let (_, unit) = parabit_wallet::parse_amount_with_unit(t)?;
        if let Some(u) = unit {
            return AssetRef::Symbol(u).resolve(lk);
        }
    }
    bail!("which asset? give it in the amount (\"0.5 BTC\") or with {flag_name}")
}

/// A channel for people: parties (in the node's network form), deposits, status.
fn channel_text(v: &Json, network: Network, lk: &dyn Lookup) -> Result<String> {
    let ch =
        crate::channel_cmd::channel_from_json(v).context("pb_getChannel: unexpected answer")?;
    let asset = lk.asset(ch.asset)?;
    let mut out = format!(
        "channel {}: {}
a (opener): {} deposited {}
b (peer):   {} deposited {}
challenge period: {} blocks",
        v["channel"],
        v["status"].as_str().unwrap_or("?"),
        ch.a.to_bech32(network),
        asset.show(ch.deposit_a),
        ch.b.to_bech32(network),
        asset.show(ch.deposit_b),
        ch.challenge_blocks
    );
    match &ch.status {
        parabit_modules::channels::ChannelStatus::Closing { state, deadline } => {
            out.push_str(&format!(
                "
closing with state {}
challenges accepted up to height {deadline}; `parabit tx channel-settle` after it",
                crate::channel_cmd::state_text(state, &asset)
            ));
        }
        parabit_modules::channels::ChannelStatus::Settled { htlcs } => {
            for (i, h) in htlcs.iter().enumerate() {
                if let Some(h) = h {
                    out.push_str(&format!(
                        "
pending HTLC {i}: {} {} hash {} expiry {}",
                        if h.a_to_b { "a->b" } else { "b->a" },
                        asset.show(h.amount),
                        hex::encode(h.hash),
                        h.expiry
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

fn asset_line(v: &Json) -> String {
    let supply = json_u128(&v["supply"]);
    let meta = AssetMeta::from_json(v).ok();
    format!(
        "{:>20}  {:<12} {:>2} decimals  supply {}",
        v["asset"].to_string(),
        v["symbol"].as_str().unwrap_or("?"),
        v["decimals"].to_string(),
        match (meta, supply) {
            (Some(m), Some(s)) => m.show(s),
            _ => v["supply"].to_string(),
        }
    )
}

/// A lending position for people: health, then each market's supply and debt.
fn position_text(v: &Json, lk: &dyn Lookup) -> String {
    let mut out = format!(
        "health factor: {}",
        v["health_factor"].as_str().unwrap_or("none (no debt)")
    );
    for p in v["positions"].as_array().into_iter().flatten() {
        let meta = p["asset"]
            .as_u64()
            .and_then(|a| lk.asset(parabit_primitives::AssetId(a)).ok());
        let show = |field: &str| match (&meta, json_u128(&p[field])) {
            (Some(m), Some(x)) => m.show(x),
            _ => p[field].to_string(),
        };
        out.push_str(&format!(
            "\n  supplied {}, owed {}",
            show("supplied"),
            show("debt")
        ));
    }
    out.push_str(&format!(
        "\ncollateral value {}, debt value {}, borrow limit {}",
        v["collateral_value"].as_str().unwrap_or("?"),
        v["debt_value"].as_str().unwrap_or("?"),
        v["borrow_limit"].as_str().unwrap_or("?")
    ));
    out
}

fn pool_line(p: &Json, lk: &dyn Lookup) -> String {
    let side = |id: &Json, reserve: &Json| -> String {
        let meta = id
            .as_u64()
            .and_then(|i| lk.asset(parabit_primitives::AssetId(i)).ok());
        match (meta, json_u128(reserve)) {
            (Some(m), Some(r)) => m.show(r),
            _ => format!("{reserve} of asset {id}"),
        }
    };
    format!(
        "pool {}: {} + {}, LP asset {} supply {}",
        p["pool"].as_str().unwrap_or("?"),
        side(&p["asset_a"], &p["reserve_a"]),
        side(&p["asset_b"], &p["reserve_b"]),
        p["lp_asset"],
        p["lp_supply"].as_str().unwrap_or("?")
    )
}

/// The `pb_getProof` key for `balance:<address>:<asset>`, `nonce:<address>` or hex, and the
/// state key it names (computed here, so the answer can be checked against it).
fn proof_key(text: &str, keystore: &KeystoreArgs, network: Network) -> Result<(Json, Key)> {
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("balance:") {
        let (addr, asset) = rest
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("proof key {t:?}: expected balance:<address>:<asset id>"))?;
        let who = resolve_address(addr, keystore)?;
        let asset: u64 = asset
            .parse()
            .map_err(|_| anyhow!("proof key {t:?}: the asset must be an id (e.g. 0 for BTC)"))?;
        return Ok((
            json!({"balance": [who.to_bech32(network), asset]}),
            balance_key(&who, AssetId(asset)),
        ));
    }
    if let Some(addr) = t.strip_prefix("nonce:") {
        let who = resolve_address(addr, keystore)?;
        return Ok((json!({"nonce": who.to_bech32(network)}), nonce_key(&who)));
    }
    let hex_part = t.strip_prefix("0x").unwrap_or(t).to_ascii_lowercase();
    let bytes = hex::decode(&hex_part).ok().filter(|b| !b.is_empty()).ok_or_else(|| {
        anyhow!("proof key {t:?}: expected balance:<address>:<asset>, nonce:<address> or a hex state key")
    })?;
    let key = Key::new(&bytes)
        .map_err(|_| anyhow!("proof key {t:?}: a state key is at most 62 bytes"))?;
    Ok((json!(hex_part), key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parabit_primitives::SigningKey;

    fn no_keystore() -> KeystoreArgs {
        KeystoreArgs {
            keystore: Some(std::path::PathBuf::from(
                "/nonexistent/parabit-test/keys.json",
            )),
        }
    }

    #[test]
    fn proof_keys_name_the_state_key() {
        let a = SigningKey::from_seed(b"proof key test").address();
        let text = a.to_bech32(Network::Regtest);
        let ks = no_keystore();
        let (spec, key) = proof_key(&format!("balance:{text}:3"), &ks, Network::Regtest)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(spec, json!({"balance": [text, 3]}));
        assert_eq!(key, balance_key(&a, AssetId(3)));
        let (spec, key) = proof_key(&format!("nonce:{text}"), &ks, Network::Regtest)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(spec, json!({"nonce": text}));
        assert_eq!(key, nonce_key(&a));
        let (spec, key) =
            proof_key("0xABcd01", &ks, Network::Regtest).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(spec, json!("abcd01"));
        assert_eq!(key.as_bytes(), &[0xab, 0xcd, 0x01]);
    }

    #[test]
    fn bad_proof_keys_are_refused() {
        let ks = no_keystore();
        for bad in ["", "0x", "abc", "zz", "balance:x", "nonce:carol"] {
            assert!(proof_key(bad, &ks, Network::Regtest).is_err(), "{bad}");
        }
        let a = SigningKey::from_seed(b"k")
            .address()
            .to_bech32(Network::Regtest);
        assert!(proof_key(&format!("balance:{a}:BTC"), &ks, Network::Regtest).is_err());
        let long = "ab".repeat(63);
        let err = proof_key(&long, &ks, Network::Regtest)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("62 bytes"), "{err}");
    }
}
