//! `parabit bridge …`: BTC into the L2 and back out.
//!
//! A keystore key is also a Bitcoin key: its x-only public key is the L2 address, and the same
//! key's taproot key-path output (`tr(K)`, BIP 86) is its Bitcoin address (`bridge address`).
//! `bridge deposit` spends that address's coins to the bridge address with the deposit marker
//! naming the L2 recipient; the sequencer credits it once the deposit is deep enough.
//! `parabit tx withdraw-btc` goes the other way; `bridge withdrawal ID` follows its payout.
//!
//! Invariants:
//! - Everything is checked before anything is signed or sent: the amount against the
//!   bridge's minimum, the recipient address, the Bitcoin node's network and coins.
//! - The bridge address comes from the node (`pb_bridgeInfo`), never typed by the user.
//! - The exit code is non-zero unless the command did what it says (a deposit waited for is
//!   credited on L2).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use parabit_bitcoin::bitcoin::secp256k1::SecretKey;
use parabit_bitcoin::bitcoin::{self, Address as BtcAddress, Amount as BtcAmount, FeeRate};
use parabit_bitcoin::bridge::build_deposit;
use parabit_bitcoin::{Auth, BitcoinClient, BitcoindClient, BitcoindConfig, TaprootWallet};
use parabit_primitives::AssetId;
use serde_json::{json, Value as Json};

use crate::client::{Rpc, RpcArgs, RpcLookup};
use crate::human;
use crate::wallet_cmd::{self, KeystoreArgs};

/// `parabit bridge`.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    #[command(flatten)]
    keystore: KeystoreArgs,
    #[command(subcommand)]
    cmd: BridgeCmd,
}

/// Where the Bitcoin node is.
#[derive(Debug, Clone, Args)]
pub struct BitcoinArgs {
    /// The Bitcoin node's JSON-RPC URL (a devnet's embedded chain by default).
    #[arg(long, default_value = "http://127.0.0.1:18645", value_name = "URL")]
    bitcoin_rpc: String,
    /// Its cookie file (default: the default devnet's `bitcoin/.cookie`, when it exists).
    #[arg(long, value_name = "FILE")]
    bitcoin_cookie: Option<PathBuf>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum BridgeCmd {
    /// The bridge: its Bitcoin address, deposit depth, minimums, totals, and the sequencer's
    /// deposit watcher and withdrawal payer.
    Info {
        /// Print the JSON document.
        #[arg(long)]
        json: bool,
    },
    /// A keystore key's Bitcoin address (the same key, taproot key path) and its coins.
    Address {
        /// The key (its name or address).
        #[arg(long, env = "PARABIT_FROM")]
        from: String,
        #[command(flatten)]
        btc: BitcoinArgs,
    },
    /// Regtest only: mines blocks paying the key's Bitcoin address (a coinbase can be spent
    /// after 100 more blocks, so the default 101 gives one spendable coin).
    Fund {
        /// The key (its name or address).
        #[arg(long, env = "PARABIT_FROM")]
        from: String,
        /// Blocks to mine.
        #[arg(long, default_value_t = 101)]
        blocks: u32,
        #[command(flatten)]
        btc: BitcoinArgs,
    },
    /// Deposits BTC from the key's Bitcoin coins to an L2 address, and waits until the
    /// sequencer credits it.
    Deposit {
        /// The key whose Bitcoin coins pay (its name or address).
        #[arg(long, env = "PARABIT_FROM")]
        from: String,
        /// The L2 recipient (address or keystore name; default: the same key).
        #[arg(long)]
        to: Option<String>,
        /// How much: "0.01 BTC", or satoshis with their unit ("50000 sat").
        #[arg(long)]
        amount: String,
        /// Bitcoin fee rate in sat/vB (default: the node's estimate).
        #[arg(long, value_name = "SAT_PER_VB")]
        fee_rate: Option<u64>,
        /// Return once Bitcoin accepted it, without waiting for the credit.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the credit.
        #[arg(long, default_value_t = 120, value_name = "SECS")]
        wait_timeout: u64,
        #[command(flatten)]
        btc: BitcoinArgs,
    },
    /// How to deposit from any Bitcoin wallet: the bridge address and the `OP_RETURN` data
    /// naming the L2 recipient, with a Bitcoin Core `send` command that makes the deposit.
    Marker {
        /// The L2 recipient (address or keystore name).
        #[arg(long)]
        to: String,
        /// How much, for the printed command: "0.01 BTC", or satoshis with their unit.
        #[arg(long, default_value = "0.001 BTC")]
        amount: String,
    },
    /// A withdrawal (the id of its `parabit tx withdraw-btc` transaction) and its payout.
    Withdrawal {
        /// The L2 transaction id.
        id: String,
        /// Print the JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `parabit bridge`.
pub fn run(args: &BridgeArgs) -> Result<()> {
    let rpc = Rpc::connect(&args.rpc)?;
    match &args.cmd {
        BridgeCmd::Info { json } => {
            let info = bridge_info(&rpc)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&info);
            }
            Ok(())
        }
        BridgeCmd::Withdrawal { id, json } => {
            let w = rpc.call("pb_getWithdrawal", vec![json!(id.trim())])?;
            if w.is_null() {
                bail!("no committed transaction {id}");
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&w)?);
            } else {
                print_withdrawal(&w);
            }
            Ok(())
        }
        BridgeCmd::Marker { to, amount } => {
            let info = bridge_info(&rpc)?;
            let chain = rpc.chain_info()?;
            let lookup = RpcLookup::new(&rpc, &chain);
            let btc_meta = crate::client::Lookup::asset(&lookup, AssetId::BTC)?;
            let (_, sats) = human::positive_amount("--amount", amount, Some(&btc_meta), &lookup)?;
            let recipient = wallet_cmd::resolve_address(to, &args.keystore).context("--to")?;
            let marker = parabit_bitcoin::bridge::deposit_marker(recipient.0);
            // The marker's script is OP_RETURN and one push: the data is what follows the push.
            let data = marker
                .script_pubkey
                .instructions()
                .nth(1)
                .and_then(|i| i.ok())
                .and_then(|i| i.push_bytes().map(|b| hex::encode(b.as_bytes())))
                .ok_or_else(|| anyhow!("the deposit marker has no data push"))?;
            let address = info["bridge_address"].as_str().unwrap_or("-");
            let btc = BtcAmount::from_sat(u64::try_from(sats).unwrap_or(u64::MAX)).to_btc();
            println!("bridge address  {address}");
            println!("marker data     {data}");
            println!(
                "minimum         {} sat, credited once {} blocks deep",
                info["min_deposit"], info["deposit_confirmations"]
            );
            println!("with Bitcoin Core: bitcoin-cli send '[{{\"{address}\": {btc}}}, {{\"data\": \"{data}\"}}]'");
            Ok(())
        }
        BridgeCmd::Address { from, btc } => {
            let (wallet, net) = bitcoin_wallet(&rpc, &args.keystore, from)?;
            let client = bitcoin_client(btc, &wallet, net)?;
            let coins = client
                .list_unspent()
                .map_err(|e| anyhow!("{e}"))
                .context("listing the address's coins")?;
            let spendable: u64 = coins
                .iter()
                .filter(|u| wallet.can_spend(u))
                .map(|u| u.txout.value.to_sat())
                .sum();
            println!("{}", wallet.address(net));
            println!("spendable: {spendable} sat in {} outputs", coins.len());
            Ok(())
        }
        BridgeCmd::Fund { from, blocks, btc } => {
            let (wallet, net) = bitcoin_wallet(&rpc, &args.keystore, from)?;
            ensure!(
                net == bitcoin::Network::Regtest,
                "`bridge fund` mines blocks: only on regtest"
            );
            ensure!(*blocks >= 1, "--blocks must be at least 1");
            let client = bitcoin_client(btc, &wallet, net)?;
            let address = wallet.address(net);
            client
                .call("generatetoaddress", json!([blocks, address.to_string()]))
                .map_err(|e| anyhow!("{e}"))
                .context("generatetoaddress")?;
            println!("mined {blocks} blocks paying {address}");
            Ok(())
        }
        BridgeCmd::Deposit {
            from,
            to,
            amount,
            fee_rate,
            no_wait,
            wait_timeout,
            btc,
        } => deposit(
            &rpc,
            &args.keystore,
            DepositArgs {
                from,
                to: to.as_deref(),
                amount,
                fee_rate: *fee_rate,
                wait: (!*no_wait).then(|| Duration::from_secs(*wait_timeout)),
                btc,
            },
        ),
    }
}

/// `pb_bridgeInfo`, refusing a chain without a bridge.
fn bridge_info(rpc: &Rpc) -> Result<Json> {
    let info = rpc.call("pb_bridgeInfo", vec![])?;
    if info.is_null() {
        bail!("this chain has no bridge: its genesis does not settle on Bitcoin");
    }
    Ok(info)
}

fn print_info(info: &Json) {
    let s = |k: &str| match info.get(k) {
        Some(Json::String(v)) => v.clone(),
        Some(v) => v.to_string(),
        None => "-".into(),
    };
    println!("bridge address        {}", s("bridge_address"));
    println!("sequencer key         {}", s("sequencer_key"));
    let depth = info["deposit_confirmations"].as_u64().unwrap_or(0);
    println!(
        "deposits              credited once {depth} block{} deep, at least {} sat",
        if depth == 1 { "" } else { "s" },
        s("min_deposit")
    );
    println!("withdrawals           at least {} sat", s("min_withdrawal"));
    println!(
        "totals                deposited {} sat, withdrawn {} sat, locked {} sat",
        s("deposited"),
        s("withdrawn"),
        s("locked")
    );
    println!(
        "deposits through      Bitcoin block {}",
        s("bitcoin_height")
    );
    if let Some(p) = info.get("payer") {
        println!(
            "payer                 {} payouts, {} withdrawals waiting, {} sat held{}",
            p["payouts"],
            p["waiting"],
            p["holdings"],
            p["last_error"]
                .as_str()
                .map(|e| format!(" (last problem: {e})"))
                .unwrap_or_default()
        );
    }
}

fn print_withdrawal(w: &Json) {
    println!("withdrawal  {}", w["id"].as_str().unwrap_or("-"));
    println!(
        "amount      {} sat to {}",
        w["amount"],
        w["address"].as_str().unwrap_or("(a non-standard script)")
    );
    println!("status      {}", w["status"].as_str().unwrap_or("-"));
    if let Some(e) = w["error"].as_str() {
        println!("error       {e}");
    }
    if let Some(p) = w.get("payout").filter(|p| !p.is_null()) {
        println!(
            "payout      {}:{} pays {} sat (fee share {} sat)",
            p["txid"].as_str().unwrap_or("-"),
            p["vout"],
            p["paid"],
            p["fee_share"]
        );
    }
}

/// The keystore key `from` as a Bitcoin wallet, and the chain's Bitcoin network.
fn bitcoin_wallet(
    rpc: &Rpc,
    keystore: &KeystoreArgs,
    from: &str,
) -> Result<(TaprootWallet, bitcoin::Network)> {
    let net = parabit_node::bridge::bitcoin_network(rpc.chain_info()?.network);
    let key = wallet_cmd::signing_key(&keystore.path()?, from)?;
    let secret = SecretKey::from_slice(&key.secret_bytes()).context("the keystore key")?;
    Ok((TaprootWallet::new(secret), net))
}

/// A Bitcoin RPC client watching `wallet`'s address.
fn bitcoin_client(
    args: &BitcoinArgs,
    wallet: &TaprootWallet,
    net: bitcoin::Network,
) -> Result<BitcoindClient> {
    let mut config = BitcoindConfig::new(args.bitcoin_rpc.clone());
    let cookie = args.bitcoin_cookie.clone().or_else(|| {
        dirs::data_dir()
            .map(|d| {
                d.join("parabit")
                    .join("devnet")
                    .join("bitcoin")
                    .join(".cookie")
            })
            .filter(|p| p.exists())
    });
    if let Some(c) = cookie {
        config.auth = Auth::CookieFile(c);
    }
    config.watch_addresses = vec![wallet.address(net).to_string()];
    BitcoindClient::new(config)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("Bitcoin RPC {}", args.bitcoin_rpc))
}

struct DepositArgs<'a> {
    from: &'a str,
    to: Option<&'a str>,
    amount: &'a str,
    fee_rate: Option<u64>,
    wait: Option<Duration>,
    btc: &'a BitcoinArgs,
}

fn deposit(rpc: &Rpc, keystore: &KeystoreArgs, a: DepositArgs<'_>) -> Result<()> {
    let info = bridge_info(rpc)?;
    let chain = rpc.chain_info()?;
    let lookup = RpcLookup::new(rpc, &chain);
    let btc_meta = crate::client::Lookup::asset(&lookup, AssetId::BTC)?;
    let (_, sats) = human::positive_amount("--amount", a.amount, Some(&btc_meta), &lookup)?;
    let sats = u64::try_from(sats).map_err(|_| anyhow!("--amount {sats} is too large"))?;
    let min = info["min_deposit"].as_u64().unwrap_or(0);
    ensure!(
        sats >= min,
        "--amount {sats} sat is below the bridge's minimum deposit of {min} sat"
    );
    let (wallet, net) = bitcoin_wallet(rpc, keystore, a.from)?;
    let recipient = match a.to {
        Some(t) => wallet_cmd::resolve_address(t, keystore).context("--to")?,
        None => parabit_primitives::Address(wallet.internal_key().serialize()),
    };
    let bridge: BtcAddress = info["bridge_address"]
        .as_str()
        .ok_or_else(|| anyhow!("pb_bridgeInfo: no bridge_address"))?
        .parse::<BtcAddress<bitcoin::address::NetworkUnchecked>>()
        .context("pb_bridgeInfo: bridge_address")?
        .require_network(net)
        .context("pb_bridgeInfo: bridge_address")?;
    let client = bitcoin_client(a.btc, &wallet, net)?;
    let coins = client
        .list_unspent()
        .map_err(|e| anyhow!("{e}"))
        .context("listing the key's Bitcoin coins")?;
    let rate = match a.fee_rate {
        Some(r) => {
            FeeRate::from_sat_per_vb(r).ok_or_else(|| anyhow!("--fee-rate {r} is too large"))?
        }
        None => client
            .estimate_fee_rate()
            .map_err(|e| anyhow!("{e}"))
            .context("estimating the fee rate")?,
    };
    let funded = build_deposit(
        &wallet,
        &coins,
        &bridge.script_pubkey(),
        recipient.0,
        BtcAmount::from_sat(sats),
        rate,
    )
    .map_err(|e| anyhow!("{e}"))
    .with_context(|| {
        format!(
            "building the deposit from {} (fund it first: `parabit bridge fund` on regtest)",
            wallet.address(net)
        )
    })?;
    let txid = client
        .send_raw_transaction(&funded.tx)
        .map_err(|e| anyhow!("{e}"))
        .context("sending the deposit to Bitcoin")?;
    println!(
        "deposit {txid}:0 of {sats} sat to {} sent (Bitcoin fee {} sat)",
        recipient.to_bech32(chain.network),
        funded.fee.to_sat()
    );
    let Some(timeout) = a.wait else {
        return Ok(());
    };
    eprintln!(
        "waiting for {} confirmations and the sequencer's credit…",
        info["deposit_confirmations"]
    );
    let started = Instant::now();
    loop {
        let d = rpc.call("pb_getDeposit", vec![json!(txid.to_string()), json!(0)])?;
        if d["credited"].as_bool() == Some(true) {
            println!("credited on L2 to {}", recipient.to_bech32(chain.network));
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bail!(
                "deposit {txid}:0 not credited after {} s; see `parabit bridge info`",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
