//! `parabit load`: an end-to-end load generator against a running node's JSON-RPC.
//!
//! Phases:
//! 1. **Setup (untimed).** A funder (a devnet account by name, or a secret key) tops up
//!    `senders` deterministic load accounts with BTC and waits for those transfers to commit;
//!    then every load transaction is signed up front (rayon) and pre-serialized into the
//!    JSON-RPC parameters of its batch.
//! 2. **Timed phase.** Batches go out through `pb_sendRawTransactions` paced by a token
//!    bucket refilled every 10 ms at `--tps` (capacity: one batch), with at most
//!    `--concurrency` requests in flight; a batch's send instant is the submit time of each of
//!    its transactions. Commits are followed over WebSocket (`pb_subscribeNewHeads`); each new
//!    block's ids come from `pb_getBlockByHeight` and are stamped with the instant its head
//!    arrived (heads the subscription skipped are fetched by height, so none is missed).
//! 3. **Drain.** After `--duration` no more batches are sent; in-flight requests finish, then
//!    the generator waits until every accepted transaction has committed, giving up after
//!    `--grace` seconds without a new commit.
//!
//! Invariants:
//! - Nothing is signed or encoded in the timed phase; it only sends prepared bytes.
//! - Each sender has at most [`MAX_PER_SENDER`] load transactions (below the mempool's
//!   per-sender limit of 256 and nonce window of 1024), so a run never trips those limits by
//!   construction: with too few `--accounts` for `tps × duration`, more senders are used.
//! - Transactions of one sender are sent in nonce order (a later batch can overtake an earlier
//!   one in flight; the mempool holds such gaps).
//! - `lost` counts accepted transactions that never committed; a run with `lost > 0` exits
//!   non-zero. Transactions whose request failed outright are counted apart (`request_failed`)
//!   because the node may or may not have admitted them.
//! - stdout carries only the report (with `--json`: exactly one JSON line); progress and notes
//!   go to stderr.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jsonrpsee::core::client::{ClientT, Error as ClientError, SubscriptionClientT};
use jsonrpsee::core::traits::ToRpcParams;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use parabit_modules::{BankMsg, Call, SignedTx, Tx};
use parabit_node::devnet::{dev_key, DEV_ACCOUNTS};
use parabit_primitives::{Address, Amount, AssetId, Network, SigningKey};
use rayon::prelude::*;
use serde_json::value::RawValue;
use serde_json::Value as Json;
use tokio::sync::{mpsc, Semaphore};

use crate::client::{json_u128, RpcArgs};

/// Most load transactions per sender: below the mempool's 256 pending per sender.
pub const MAX_PER_SENDER: u64 = 200;
/// Satoshis each load transfer moves.
const TRANSFER_AMOUNT: Amount = 1;
/// Funding transfers per round (the funder's pending limit is 256).
const FUNDING_CHUNK: usize = 200;
/// Pacing tick.
const TICK: Duration = Duration::from_millis(10);
/// How long setup waits for funding transfers to commit.
const FUNDING_TIMEOUT: Duration = Duration::from_secs(60);
/// Most transactions in one `pb_sendRawTransactions` call this tool makes.
const MAX_BATCH: usize = 5_000;

/// The load's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// BTC transfers of one satoshi between the load accounts.
    Transfer,
}

/// `parabit load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Target submit rate, transactions per second.
    #[arg(long, default_value_t = 1_000)]
    pub tps: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// What the transactions do.
    #[arg(long, value_enum, default_value_t = Workload::Transfer)]
    pub workload: Workload,
    /// Load accounts (senders and recipients); raised automatically so that no sender has
    /// more than 200 transactions.
    #[arg(long, default_value_t = 500)]
    pub accounts: u64,
    /// Transactions per `pb_sendRawTransactions` call (default: one 10 ms tick's worth, 1 to
    /// 500).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// After sending: seconds without a new commit before the remaining accepted
    /// transactions are declared lost.
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
    /// Fee of each transaction, in satoshis.
    #[arg(long, default_value_t = 1)]
    pub fee: u64,
    /// The devnet account that funds the load accounts.
    #[arg(
        long = "from",
        default_value = "alice",
        conflicts_with = "funder_secret"
    )]
    pub from: String,
    /// The funder's 32-byte secret key in hex, instead of a devnet account.
    #[arg(long, env = "PARABIT_LOAD_FUNDER_SECRET", hide_env_values = true)]
    pub funder_secret: Option<String>,
    /// One JSON line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The sizes a run works with, derived from the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Transactions to send: `tps × duration`.
    pub total: u64,
    /// Load accounts: `--accounts`, raised so that none sends more than [`MAX_PER_SENDER`].
    pub senders: u64,
    /// Transactions per sender, at most.
    pub per_sender: u64,
    /// Transactions per request.
    pub batch: usize,
}

impl Plan {
    /// Checks the arguments and sizes the run.
    pub fn new(tps: u64, duration: u64, accounts: u64, batch: Option<usize>) -> Result<Plan> {
        if tps == 0 {
            bail!("--tps must be at least 1");
        }
        if duration == 0 {
            bail!("--duration must be at least 1 second");
        }
        if accounts < 2 {
            bail!("--accounts must be at least 2 (transfers go between load accounts)");
        }
        let total = tps
            .checked_mul(duration)
            .filter(|t| *t <= 100_000_000)
            .ok_or_else(|| {
                anyhow!("--tps × --duration must be at most 100,000,000 transactions")
            })?;
        let senders = accounts.max(total.div_ceil(MAX_PER_SENDER));
        let per_sender = total.div_ceil(senders);
        let batch = match batch {
            Some(0) => bail!("--batch must be at least 1"),
            Some(b) if b > MAX_BATCH => bail!("--batch must be at most {MAX_BATCH}"),
            Some(b) => b,
            None => usize::try_from(tps / 100)
                .unwrap_or(MAX_BATCH)
                .clamp(1, 500),
        };
        Ok(Plan {
            total,
            senders,
            per_sender,
            batch,
        })
    }

    /// The (sender, nonce offset, recipient) of load transaction `i`: round robin over the
    /// senders, so one sender's transactions are `senders` apart and in nonce order; the
    /// recipient is another load account.
    pub fn route(&self, i: u64) -> (u64, u64, u64) {
        let s = i % self.senders;
        let j = i / self.senders;
        let to = (s + 1 + j % (self.senders - 1)) % self.senders;
        (s, j, to)
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    /// `--tps`.
    pub target_tps: u64,
    /// `--duration`.
    pub duration_s: u64,
    /// Load accounts used.
    pub accounts: u64,
    /// Transactions per request.
    pub batch: usize,
    /// Transactions prepared (`tps × duration`).
    pub planned: u64,
    /// Transactions sent (in a request that got an answer or failed).
    pub submitted: u64,
    /// Admitted by the mempool.
    pub accepted: u64,
    /// Refused by the mempool.
    pub rejected: u64,
    /// In a request that failed (unknown whether admitted).
    pub request_failed: u64,
    /// Submitted transactions seen in a committed block.
    pub committed: u64,
    /// Accepted but never committed.
    pub lost: u64,
    /// Achieved submit rate: submitted ÷ time from the first to the last send.
    pub submit_tps: f64,
    /// Committed ÷ time from the first submit to the last commit.
    pub committed_tps: f64,
    /// Submit-to-commit latency percentiles (ms).
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Blocks that held at least one load transaction.
    pub blocks: u64,
    /// The most common rejection reasons (digits folded to `N`) with their counts.
    pub top_rejections: Vec<(String, u64)>,
    /// Why following commits stopped early, if it did (commits after that were not seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_feed_error: Option<String>,
}

/// Runs `parabit load`.
pub fn run(args: &LoadArgs) -> Result<()> {
    let plan = Plan::new(args.tps, args.duration, args.accounts, args.batch)?;
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let funder = funder_key(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(run_async(args, plan, funder))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).context("encoding the report")?
        );
    } else {
        print!("{}", table(&report));
    }
    if report.lost > 0 {
        if let Some(e) = &report.commit_feed_error {
            bail!(
                "{} accepted transactions were not seen committing: following commits failed ({e})",
                report.lost
            );
        }
        bail!(
            "{} accepted transactions never committed (no new commit for {} s after sending; \
             the node dropped them or fell behind: see its log and `parabit query chain`)",
            report.lost,
            args.grace
        );
    }
    Ok(())
}

fn funder_key(args: &LoadArgs) -> Result<SigningKey> {
    if let Some(secret) = &args.funder_secret {
        let bytes: [u8; 32] = hex::decode(secret.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow!("--funder-secret: expected 64 hex digits"))?;
        return SigningKey::from_secret_bytes(bytes)
            .map_err(|e| anyhow!("--funder-secret: not a valid secret key: {e}"));
    }
    let name = args.from.trim().to_ascii_lowercase();
    if !DEV_ACCOUNTS.contains(&name.as_str()) && name != "admin" {
        bail!(
            "--from {:?}: not a devnet account (one of {}, admin); use --funder-secret HEX otherwise",
            args.from,
            DEV_ACCOUNTS.join(", ")
        );
    }
    Ok(dev_key(&name))
}

/// The HTTP and WebSocket URLs of the node, from `--rpc` in either scheme.
fn urls(rpc: &str) -> Result<(String, String)> {
    let rpc = rpc.trim().trim_end_matches('/');
    for (http, ws) in [("http://", "ws://"), ("https://", "wss://")] {
        if let Some(rest) = rpc.strip_prefix(http).or_else(|| rpc.strip_prefix(ws)) {
            return Ok((format!("{http}{rest}"), format!("{ws}{rest}")));
        }
    }
    bail!("invalid RPC URL {rpc:?}: expected http://HOST:PORT or ws://HOST:PORT")
}

/// A JSON-RPC client with errors that name the method and the node.
#[derive(Clone)]
struct Node {
    http: HttpClient,
    url: String,
}

impl Node {
    async fn call<P: ToRpcParams + Send>(&self, method: &str, params: P) -> Result<Json> {
        self.http
            .request::<Json, P>(method, params)
            .await
            .map_err(|e| explain(method, &self.url, e))
    }

    async fn nonce(&self, who: &Address, network: Network) -> Result<u64> {
        let v = self
            .call("pb_getNonce", rpc_params![who.to_bech32(network)])
            .await?;
        v.as_u64()
            .ok_or_else(|| anyhow!("pb_getNonce: expected a number, got {v}"))
    }

    async fn balance(&self, who: &Address, network: Network) -> Result<u128> {
        let v = self
            .call("pb_getBalance", rpc_params![who.to_bech32(network), 0])
            .await?;
        json_u128(&v["amount"]).ok_or_else(|| anyhow!("pb_getBalance: no amount in {v}"))
    }

    /// Sends prepared transactions (hex) and fails unless every one is admitted.
    async fn send_all(&self, hexes: Vec<String>) -> Result<()> {
        let v = self
            .call("pb_sendRawTransactions", rpc_params![hexes])
            .await?;
        let entries = v
            .as_array()
            .ok_or_else(|| anyhow!("pb_sendRawTransactions: expected a list, got {v}"))?;
        if let Some(e) = entries.iter().find(|e| e.get("error").is_some()) {
            bail!(
                "the node refused a funding transfer: {}",
                e["error"]["message"].as_str().unwrap_or("(no message)")
            );
        }
        Ok(())
    }
}

fn explain(method: &str, url: &str, e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Call(obj) => anyhow!("{method}: RPC error {}: {}", obj.code(), obj.message()),
        ClientError::RequestTimeout => anyhow!("{method}: the node at {url} did not answer in time"),
        ClientError::Transport(t) => anyhow!(
            "{method}: cannot reach the node at {url} ({t}); is it running? start one with `parabit devnet`"
        ),
        other => anyhow!("{method}: {other}"),
    }
}

/// Pre-serialized parameters: `[[hex, …]]`.
struct RawParams(Option<Box<RawValue>>);

impl ToRpcParams for RawParams {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        Ok(self.0)
    }
}

/// A load transaction ready to send.
struct Prepared {
    id: [u8; 32],
    hex: String,
}

fn transfer(
    key: &SigningKey,
    chain_id: u64,
    nonce: u64,
    fee: u64,
    to: Address,
    amount: Amount,
) -> SignedTx {
    key.sign(Tx {
        chain_id,
        sender: key.address(),
        nonce,
        fee: Amount::from(fee),
        call: Call::Bank(BankMsg::Transfer {
            to,
            asset: AssetId::BTC,
            amount,
        }),
    })
}

fn progress(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn run_async(args: &LoadArgs, plan: Plan, funder: SigningKey) -> Result<Report> {
    let (http_url, ws_url) = urls(&args.rpc.url)?;
    let timeout = Duration::from_secs(args.rpc.timeout_secs.max(1));
    let http = HttpClientBuilder::default()
        .request_timeout(timeout.max(Duration::from_secs(30)))
        .max_request_size(64 * 1024 * 1024)
        .max_response_size(64 * 1024 * 1024)
        .build(&http_url)
        .with_context(|| format!("invalid RPC URL {http_url:?}"))?;
    let node = Node {
        http,
        url: http_url.clone(),
    };
    let info = node.call("pb_chainInfo", rpc_params![]).await?;
    let chain_id = info["chain_id"]
        .as_u64()
        .ok_or_else(|| anyhow!("pb_chainInfo: no chain_id in {info}"))?;
    let network = match info["network"].as_str() {
        Some("mainnet") => Network::Mainnet,
        _ => Network::Regtest,
    };
    if plan.senders > args.accounts {
        eprintln!(
            "note: using {} load accounts instead of {} so that no sender has more than {MAX_PER_SENDER} transactions",
            plan.senders, args.accounts
        );
    }

    // Setup 1: the load accounts and their funding.
    let seed_prefix = format!("parabit-load/{}/", hex::encode(funder.address().as_bytes()));
    let keys: Vec<SigningKey> = (0..plan.senders)
        .into_par_iter()
        .map(|i| SigningKey::from_seed(format!("{seed_prefix}{i}").as_bytes()))
        .collect();
    let addresses: Vec<Address> = keys.iter().map(SigningKey::address).collect();
    let need = u128::from(plan.per_sender) * (u128::from(args.fee) + TRANSFER_AMOUNT);
    let target = need.saturating_mul(2).max(10_000);
    let balances = per_account(&node, &addresses, network, Kind::Balance).await?;
    let top_ups: Vec<(Address, u128)> = addresses
        .iter()
        .zip(&balances)
        .filter(|(_, b)| **b < need)
        .map(|(a, b)| (*a, target - *b))
        .collect();
    fund(&node, &funder, chain_id, network, args.fee, &top_ups).await?;

    // Setup 2: nonces, then sign everything.
    let nonces = per_account(&node, &addresses, network, Kind::Nonce).await?;
    let nonces: Vec<u64> = nonces
        .into_iter()
        .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
        .collect();
    let bar = progress(plan.total, "signing [{wide_bar}] {human_pos}/{human_len}");
    let fee = args.fee;
    let prepared: Vec<Prepared> = (0..plan.total)
        .into_par_iter()
        .map(|i| {
            let (s, j, to) = plan.route(i);
            // `route` keeps indices below `senders`, the length of both vectors.
            let (s, to) = (s as usize, to as usize);
            let tx = transfer(
                &keys[s],
                chain_id,
                nonces[s].saturating_add(j),
                fee,
                addresses[to],
                TRANSFER_AMOUNT,
            );
            if i % 1024 == 0 {
                bar.inc(1024.min(plan.total - i));
            }
            Prepared {
                id: tx.id().0,
                hex: hex::encode(tx.encode()),
            }
        })
        .collect();
    bar.finish_and_clear();
    let ids: HashMap<[u8; 32], u32> = prepared
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id, i as u32))
        .collect();
    let mut batches: Vec<Option<Box<RawValue>>> = Vec::new();
    let mut batch_start: Vec<usize> = Vec::new();
    for (k, chunk) in prepared.chunks(plan.batch).enumerate() {
        let hexes: Vec<&str> = chunk.iter().map(|p| p.hex.as_str()).collect();
        let text = serde_json::to_string(&[hexes]).context("encoding a batch")?;
        batches.push(Some(
            RawValue::from_string(text).context("encoding a batch")?,
        ));
        batch_start.push(k * plan.batch);
    }
    let tx_ids: Vec<[u8; 32]> = prepared.into_iter().map(|p| p.id).collect();

    // Timed phase.
    let (commit_tx, mut commit_rx) = mpsc::unbounded_channel::<CommitEvent>();
    let follower = tokio::spawn(follow_commits(
        node.clone(),
        ws_url.clone(),
        timeout,
        commit_tx,
    ));
    // Wait until the follower has subscribed (its first event) before sending.
    match commit_rx.recv().await {
        Some(CommitEvent::Ready) => {}
        Some(CommitEvent::Failed(e)) => return Err(anyhow!(e)),
        _ => bail!("the commit follower stopped before starting"),
    }

    let n = tx_ids.len();
    let mut submit_at: Vec<Option<Instant>> = vec![None; n];
    let mut status: Vec<Status> = vec![Status::Unsent; n];
    let mut commit_at: Vec<Option<Instant>> = vec![None; n];
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut blocks = 0u64;
    let mut accepted = 0u64;
    let mut committed_accepted = 0u64;
    let mut feed_error: Option<String> = None;

    let (result_tx, mut result_rx) = mpsc::unbounded_channel::<BatchResult>();
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let bar = progress(
        plan.total,
        "sending [{wide_bar}] {human_pos}/{human_len} {msg}",
    );
    let rate = args.tps as f64;
    let duration = Duration::from_secs(args.duration);
    let start = Instant::now();
    let mut first_send: Option<Instant> = None;
    let mut last_send = start;
    let mut next = 0usize;
    let mut sent_txs = 0usize;
    let mut in_flight = 0usize;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sending = true;
    let mut last_progress = Instant::now();
    let grace = Duration::from_secs(args.grace);

    let record_commit = |ev: CommitEvent,
                         commit_at: &mut Vec<Option<Instant>>,
                         status: &[Status],
                         committed_accepted: &mut u64,
                         blocks: &mut u64,
                         feed_error: &mut Option<String>|
     -> bool {
        match ev {
            CommitEvent::Block { at, ids: block_ids } => {
                let mut ours = false;
                for id in block_ids {
                    if let Some(&i) = ids.get(&id) {
                        let i = i as usize;
                        if commit_at[i].is_none() {
                            commit_at[i] = Some(at);
                            ours = true;
                            if status[i] == Status::Accepted {
                                *committed_accepted += 1;
                            }
                        }
                    }
                }
                if ours {
                    *blocks += 1;
                }
                ours
            }
            CommitEvent::Failed(e) => {
                *feed_error = Some(e);
                false
            }
            CommitEvent::Ready => false,
        }
    };

    loop {
        let drained = !sending && in_flight == 0;
        if drained && (committed_accepted >= accepted || feed_error.is_some()) {
            break;
        }
        if drained && last_progress.elapsed() >= grace {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {
                let now = Instant::now();
                let elapsed = now.duration_since(start);
                if sending && (elapsed >= duration || next >= batches.len()) {
                    sending = false;
                    last_progress = now;
                }
                if sending {
                    let due = (rate * elapsed.as_secs_f64()) as usize + plan.batch;
                    while next < batches.len() {
                        let len = plan.batch.min(n - batch_start[next]);
                        if sent_txs + len > due {
                            break;
                        }
                        let Ok(permit) = Arc::clone(&sem).try_acquire_owned() else { break };
                        let params = RawParams(batches[next].take());
                        let client = node.http.clone();
                        let results = result_tx.clone();
                        let index = next;
                        let at = Instant::now();
                        first_send.get_or_insert(at);
                        last_send = at;
                        tokio::spawn(async move {
                            let r = client
                                .request::<Vec<Json>, _>("pb_sendRawTransactions", params)
                                .await
                                .map_err(|e| e.to_string());
                            drop(permit);
                            let _ = results.send(BatchResult { index, at, result: r });
                        });
                        next += 1;
                        sent_txs += len;
                        in_flight += 1;
                    }
                    bar.set_position(sent_txs as u64);
                    bar.set_message(format!("committed {committed_accepted}"));
                }
            }
            Some(r) = result_rx.recv() => {
                in_flight -= 1;
                let first = batch_start.get(r.index).copied().unwrap_or(n);
                let last = (first + plan.batch).min(n);
                for t in submit_at.get_mut(first..last).unwrap_or_default() {
                    *t = Some(r.at);
                }
                match r.result {
                    Ok(entries) => {
                        for (k, i) in (first..last).enumerate() {
                            match entries.get(k) {
                                Some(e) if e.get("id").is_some() => {
                                    status[i] = Status::Accepted;
                                    accepted += 1;
                                    if commit_at[i].is_some() {
                                        committed_accepted += 1;
                                    }
                                }
                                Some(e) => {
                                    status[i] = Status::Rejected;
                                    let msg = e["error"]["message"].as_str().unwrap_or("(no message)");
                                    *reasons.entry(fold_digits(msg)).or_default() += 1;
                                }
                                None => {
                                    status[i] = Status::Failed;
                                    *reasons.entry("missing from the node's answer".into()).or_default() += 1;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let why = format!("request failed: {}", fold_digits(&e));
                        for s in status.get_mut(first..last).unwrap_or_default() {
                            *s = Status::Failed;
                        }
                        *reasons.entry(why).or_default() += (last - first) as u64;
                    }
                }
            }
            Some(ev) = commit_rx.recv() => {
                if record_commit(ev, &mut commit_at, &status, &mut committed_accepted, &mut blocks, &mut feed_error) {
                    last_progress = Instant::now();
                }
                if !sending {
                    bar.set_message(format!("committed {committed_accepted}/{accepted}"));
                }
            }
        }
    }
    bar.finish_and_clear();
    follower.abort();

    let samples: Vec<Sample> = submit_at
        .iter()
        .zip(&status)
        .zip(&commit_at)
        .map(|((s, st), c)| (*s, *st, *c))
        .collect();
    let mut report = summarize(&samples, first_send, last_send, reasons);
    report.target_tps = args.tps;
    report.duration_s = args.duration;
    report.accounts = plan.senders;
    report.batch = plan.batch;
    report.planned = plan.total;
    report.blocks = blocks;
    report.commit_feed_error = feed_error;
    Ok(report)
}

/// One transaction's (submit time, status, commit time).
pub type Sample = (Option<Instant>, Status, Option<Instant>);

/// What became of one load transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not sent (the duration ended first).
    Unsent,
    /// Admitted by the mempool.
    Accepted,
    /// Refused by the mempool.
    Rejected,
    /// Its request failed: admitted or not, unknown.
    Failed,
}

struct BatchResult {
    index: usize,
    at: Instant,
    result: std::result::Result<Vec<Json>, String>,
}

enum CommitEvent {
    Ready,
    Block { at: Instant, ids: Vec<[u8; 32]> },
    Failed(String),
}

enum Kind {
    Balance,
    Nonce,
}

/// Balances (BTC) or nonces of many accounts, 16 requests at a time.
async fn per_account(
    node: &Node,
    addresses: &[Address],
    network: Network,
    kind: Kind,
) -> Result<Vec<u128>> {
    let mut out = Vec::with_capacity(addresses.len());
    for chunk in addresses.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for (k, a) in chunk.iter().enumerate() {
            let (node, a) = (node.clone(), *a);
            let is_balance = matches!(kind, Kind::Balance);
            set.spawn(async move {
                let v = if is_balance {
                    node.balance(&a, network).await
                } else {
                    node.nonce(&a, network).await.map(u128::from)
                };
                (k, v)
            });
        }
        let mut got = vec![0u128; chunk.len()];
        while let Some(r) = set.join_next().await {
            let (k, v) = r.context("a lookup task failed")?;
            if let Some(slot) = got.get_mut(k) {
                *slot = v?;
            }
        }
        out.extend(got);
    }
    Ok(out)
}

/// Sends the top-ups from the funder in rounds of [`FUNDING_CHUNK`], each waiting for the
/// funder's committed nonce to pass it.
async fn fund(
    node: &Node,
    funder: &SigningKey,
    chain_id: u64,
    network: Network,
    fee: u64,
    top_ups: &[(Address, u128)],
) -> Result<()> {
    if top_ups.is_empty() {
        return Ok(());
    }
    let me = funder.address();
    let total: u128 = top_ups
        .iter()
        .map(|(_, a)| a.saturating_add(u128::from(fee)))
        .fold(0u128, u128::saturating_add);
    let have = node.balance(&me, network).await?;
    if have < total {
        bail!(
            "the funder {} has {have} sat but funding {} load accounts needs {total} sat; \
             use fewer --accounts, a lower --tps × --duration, or another --from/--funder-secret",
            me.to_bech32(network),
            top_ups.len()
        );
    }
    eprintln!(
        "funding {} load accounts from {} …",
        top_ups.len(),
        me.to_bech32(network)
    );
    let mut nonce = node.nonce(&me, network).await?;
    for chunk in top_ups.chunks(FUNDING_CHUNK) {
        let first = nonce;
        let hexes: Vec<String> = chunk
            .par_iter()
            .enumerate()
            .map(|(k, (to, amount))| {
                hex::encode(
                    transfer(funder, chain_id, first + k as u64, fee, *to, *amount).encode(),
                )
            })
            .collect();
        node.send_all(hexes).await?;
        nonce = first + chunk.len() as u64;
        let deadline = Instant::now() + FUNDING_TIMEOUT;
        while node.nonce(&me, network).await? < nonce {
            if Instant::now() >= deadline {
                bail!(
                    "funding transfers did not commit within {} s (is the node producing blocks?)",
                    FUNDING_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Follows commits: subscribes to new heads, then for each head fetches every block since
/// the last one seen and sends its transaction ids, stamped with the head's arrival.
async fn follow_commits(
    node: Node,
    ws_url: String,
    timeout: Duration,
    out: mpsc::UnboundedSender<CommitEvent>,
) {
    if let Err(e) = follow_commits_inner(&node, &ws_url, timeout, &out).await {
        let _ = out.send(CommitEvent::Failed(format!("{e:#}")));
    }
}

async fn follow_commits_inner(
    node: &Node,
    ws_url: &str,
    timeout: Duration,
    out: &mpsc::UnboundedSender<CommitEvent>,
) -> Result<()> {
    let ws = WsClientBuilder::default()
        .connection_timeout(timeout)
        .request_timeout(timeout)
        .max_buffer_capacity_per_subscription(1 << 16)
        .build(ws_url)
        .await
        .map_err(|e| explain("WebSocket connect", ws_url, e))?;
    let mut sub = ws
        .subscribe::<Json, _>(
            "pb_subscribeNewHeads",
            rpc_params![],
            "pb_unsubscribeNewHeads",
        )
        .await
        .map_err(|e| explain("pb_subscribeNewHeads", ws_url, e))?;
    // Heads arrive on their own task so that their arrival instants are not delayed by the
    // block fetches.
    let (head_tx, mut head_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let reader = tokio::spawn(async move {
        while let Some(n) = sub.next().await {
            let at = Instant::now();
            let Ok(head) = n else { continue };
            if let Some(h) = head["height"].as_u64() {
                if head_tx.send((h, at)).is_err() {
                    break;
                }
            }
        }
    });
    let info = node.call("pb_chainInfo", rpc_params![]).await?;
    let mut seen = info["height"]
        .as_u64()
        .ok_or_else(|| anyhow!("pb_chainInfo: no height in {info}"))?;
    if out.send(CommitEvent::Ready).is_err() {
        return Ok(());
    }
    while let Some((h, at)) = head_rx.recv().await {
        while seen < h {
            seen += 1;
            let block = node
                .call("pb_getBlockByHeight", rpc_params![seen, false])
                .await?;
            let ids = block["txs"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|v| v.as_str())
                        .filter_map(|s| hex::decode(s).ok())
                        .filter_map(|b| <[u8; 32]>::try_from(b).ok())
                        .collect()
                })
                .unwrap_or_default();
            if out.send(CommitEvent::Block { at, ids }).is_err() {
                return Ok(());
            }
        }
    }
    reader.abort();
    bail!("the node closed the new-heads subscription")
}

/// Replaces each run of digits by `N`, so that `nonce too low: 3 < 5` and `… 4 < 9` group.
pub fn fold_digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The nearest-rank percentile `p` (0..=100) of sorted values; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or(0.0)
}

/// Counts and rates from each transaction's (submit time, status, commit time).
pub fn summarize(
    samples: &[Sample],
    first_send: Option<Instant>,
    last_send: Instant,
    reasons: HashMap<String, u64>,
) -> Report {
    let count = |f: &dyn Fn(&Sample) -> bool| samples.iter().filter(|s| f(s)).count() as u64;
    let submitted = count(&|s| s.1 != Status::Unsent);
    let accepted = count(&|s| s.1 == Status::Accepted);
    let rejected = count(&|s| s.1 == Status::Rejected);
    let request_failed = count(&|s| s.1 == Status::Failed);
    let committed = count(&|s| s.1 != Status::Unsent && s.2.is_some());
    let lost = count(&|s| s.1 == Status::Accepted && s.2.is_none());
    let mut latencies: Vec<f64> = samples
        .iter()
        .filter_map(|(s, _, c)| Some(c.as_ref()?.saturating_duration_since(*s.as_ref()?)))
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let last_commit = samples.iter().filter_map(|s| s.2).max();
    let committed_tps = match (first_send, last_commit) {
        (Some(a), Some(b)) if b > a => committed as f64 / b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let submit_tps = match first_send {
        Some(a) if last_send > a => submitted as f64 / last_send.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let mut top: Vec<(String, u64)> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(5);
    Report {
        target_tps: 0,
        duration_s: 0,
        accounts: 0,
        batch: 0,
        planned: samples.len() as u64,
        submitted,
        accepted,
        rejected,
        request_failed,
        committed,
        lost,
        submit_tps: round2(submit_tps),
        committed_tps: round2(committed_tps),
        p50_ms: round2(percentile(&latencies, 50.0)),
        p90_ms: round2(percentile(&latencies, 90.0)),
        p99_ms: round2(percentile(&latencies, 99.0)),
        max_ms: round2(latencies.last().copied().unwrap_or(0.0)),
        blocks: 0,
        top_rejections: top,
        commit_feed_error: None,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The human report.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "load: transfer, target {} tps for {} s, {} accounts, batches of {}\n",
        r.target_tps, r.duration_s, r.accounts, r.batch
    );
    let rows: [(&str, String); 9] = [
        ("planned", r.planned.to_string()),
        (
            "submitted",
            format!("{}  ({:.0} tps)", r.submitted, r.submit_tps),
        ),
        ("accepted", r.accepted.to_string()),
        ("rejected", r.rejected.to_string()),
        ("request failed", r.request_failed.to_string()),
        (
            "committed",
            format!(
                "{}  ({:.0} tps, {} blocks)",
                r.committed, r.committed_tps, r.blocks
            ),
        ),
        ("lost", r.lost.to_string()),
        (
            "latency",
            format!(
                "p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
            ),
        ),
        ("", String::new()),
    ];
    for (k, v) in rows.iter().filter(|(k, _)| !k.is_empty()) {
        s.push_str(&format!("  {k:<15} {v}\n"));
    }
    if let Some(e) = &r.commit_feed_error {
        s.push_str(&format!("  commit feed     failed: {e}\n"));
    }
    if !r.top_rejections.is_empty() {
        s.push_str("  top rejection reasons:\n");
        for (why, n) in &r.top_rejections {
            s.push_str(&format!("    {n:>8}  {why}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plan_raises_senders_to_respect_per_sender_limit() {
        let p = Plan::new(6_000, 10, 50, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.total, 60_000);
        assert_eq!(p.senders, 300);
        assert_eq!(p.per_sender, 200);
        assert_eq!(p.batch, 60);
        let small = Plan::new(200, 3, 50, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((small.senders, small.per_sender, small.batch), (50, 12, 2));
        assert_eq!(
            Plan::new(100_000, 1, 2, Some(9)).map(|p| p.batch).ok(),
            Some(9)
        );
    }

    #[test]
    fn plan_refuses_bad_arguments() {
        for (tps, d, a, b) in [
            (0, 1, 10, None),
            (1, 0, 10, None),
            (1, 1, 1, None),
            (1, 1, 10, Some(0)),
            (1, 1, 10, Some(MAX_BATCH + 1)),
            (u64::MAX, 2, 10, None),
        ] {
            assert!(Plan::new(tps, d, a, b).is_err(), "{tps} {d} {a} {b:?}");
        }
    }

    #[test]
    fn routes_keep_nonce_order_and_never_self_send() {
        let p = Plan::new(97, 7, 13, None).unwrap_or_else(|e| panic!("{e}"));
        let mut next = vec![0u64; p.senders as usize];
        for i in 0..p.total {
            let (s, j, to) = p.route(i);
            assert!(s < p.senders && to < p.senders);
            assert_ne!(s, to);
            assert_eq!(
                j, next[s as usize],
                "nonces of a sender are consecutive in order"
            );
            next[s as usize] += 1;
            assert!(j < p.per_sender && p.per_sender <= MAX_PER_SENDER);
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 1.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn digits_fold_for_grouping() {
        assert_eq!(fold_digits("nonce too low: 3 < 15"), "nonce too low: N < N");
        assert_eq!(fold_digits("no digits"), "no digits");
    }

    #[test]
    fn summary_counts_lost_and_latency() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let samples = vec![
            (Some(ms(0)), Status::Accepted, Some(ms(100))),
            (Some(ms(0)), Status::Accepted, Some(ms(300))),
            (Some(ms(10)), Status::Accepted, None),
            (Some(ms(10)), Status::Rejected, None),
            (Some(ms(10)), Status::Failed, Some(ms(200))),
            (None, Status::Unsent, None),
        ];
        let reasons = HashMap::from([("x".to_string(), 1), ("y".to_string(), 3)]);
        let r = summarize(&samples, Some(ms(0)), ms(10), reasons);
        assert_eq!(
            (
                r.planned,
                r.submitted,
                r.accepted,
                r.rejected,
                r.request_failed
            ),
            (6, 5, 3, 1, 1)
        );
        assert_eq!((r.committed, r.lost), (3, 1));
        assert_eq!(r.committed_tps, 10.0); // 3 in 300 ms
        assert_eq!(r.submit_tps, 500.0); // 5 in 10 ms
        assert_eq!((r.p50_ms, r.max_ms), (190.0, 300.0));
        assert_eq!(r.top_rejections[0], ("y".to_string(), 3));
        let line = json!(r);
        for k in [
            "submitted",
            "accepted",
            "committed",
            "committed_tps",
            "p50_ms",
            "p99_ms",
            "lost",
        ] {
            assert!(line.get(k).is_some(), "{k}");
        }
        assert!(table(&r).contains("lost"));
    }

    #[test]
    fn urls_map_between_schemes() {
        let u = urls("http://127.0.0.1:8645/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            u,
            ("http://127.0.0.1:8645".into(), "ws://127.0.0.1:8645".into())
        );
        let u = urls("ws://h:1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.0, "http://h:1");
        assert!(urls("127.0.0.1:8645").is_err());
    }
}
