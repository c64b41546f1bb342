//! `parabit node --follow-bitcoin`: a read-only full node that derives the chain from Bitcoin
//! alone ([`parabit_node::follower`]) and serves the same JSON-RPC as the sequencer.
//!
//! It reads Bitcoin through the JSON-RPC of bitcoind or `parabit regtest` (`user:password@` in
//! the URL, or a cookie file), shows a progress bar with L2 blocks/s on stderr while it
//! catches up, and restarts its RPC server on the new state after a reorg rebuild.
//!
//! Invariants: nothing is ever submitted (the RPC refuses transactions); a state-root mismatch
//! is printed once, naming the batch and block, and the node keeps serving the last good
//! state until stopped; Ctrl-C or SIGTERM stop it after the Bitcoin block being read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parabit_bitcoin::{Auth, BitcoindClient, BitcoindConfig};
use parabit_modules::GenesisSpec;
use parabit_node::chain::ChainConfig;
use parabit_node::follower::{settlement_of, Follower, FollowerConfig, Progress};
use parabit_node::rpc::{self, RpcContext};
use parabit_primitives::Network;

/// What `parabit node --follow-bitcoin` runs with.
pub struct FollowLaunch {
    /// The store file.
    pub db: PathBuf,
    /// The genesis (with its settlement section).
    pub spec: GenesisSpec,
    /// JSON-RPC address.
    pub rpc_addr: SocketAddr,
    /// Network addresses are shown for.
    pub network: Network,
    /// Bitcoin JSON-RPC URL (may carry `user:password@`).
    pub bitcoin_rpc: String,
    /// Cookie file for the Bitcoin RPC.
    pub bitcoin_cookie: Option<PathBuf>,
    /// Confirmation depth (default: 1 on a regtest chain, else 6).
    pub confirmations: Option<u32>,
    /// Execution threads.
    pub threads: Option<usize>,
    /// Tree versions kept.
    pub keep_versions: Option<u64>,
}

/// The Bitcoin client of a follower.
pub fn bitcoin_client(url: &str, cookie: Option<&Path>) -> Result<BitcoindClient> {
    let mut config = BitcoindConfig::new(url);
    if let Some(c) = cookie {
        config.auth = Auth::CookieFile(c.to_path_buf());
    }
    BitcoindClient::new(config).map_err(|e| anyhow::anyhow!("--bitcoin-rpc {url:?}: {e}"))
}

/// The default confirmation depth for the chain `client` serves: 1 on regtest, else 6.
fn default_confirmations(client: &BitcoindClient) -> u32 {
    match client.call("getblockchaininfo", serde_json::json!([])) {
        Ok(info) if info["chain"] == "regtest" => 1,
        Ok(_) => 6,
        Err(e) => {
            tracing::warn!("getblockchaininfo failed ({e}); assuming 6 confirmations");
            6
        }
    }
}

/// Runs the follower and its RPC until Ctrl-C or SIGTERM.
pub fn follow(launch: FollowLaunch) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("parabit-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(follow_async(launch))
}

/// A progress bar over the Bitcoin heights of a catch-up, with L2 blocks/s.
fn progress_bar() -> impl Fn(&Progress) + Send + Sync + 'static {
    struct State {
        bar: Option<ProgressBar>,
        started: Instant,
        first_l2: u64,
    }
    let state = Mutex::new(State {
        bar: None,
        started: Instant::now(),
        first_l2: 0,
    });
    move |p: &Progress| {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let total = u64::from(p.target.saturating_sub(p.start_height)) + 1;
        let done = u64::from(p.bitcoin_height.saturating_sub(p.start_height)) + 1;
        if s.bar.is_none() {
            // Only a real catch-up gets a bar.
            if p.target.saturating_sub(p.bitcoin_height) < 2 {
                return;
            }
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} Bitcoin {pos}/{len} [{bar:30}] {msg} ({eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            s.bar = Some(bar);
            s.started = Instant::now();
            s.first_l2 = p.l2_height;
        }
        let secs = s.started.elapsed().as_secs_f64().max(1e-3);
        let blocks = p.l2_height.saturating_sub(s.first_l2);
        if let Some(bar) = &s.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!(
                "L2 height {} · {:.0} blocks/s · {:.0} tx/s",
                p.l2_height,
                blocks as f64 / secs,
                p.l2_txs as f64 / secs
            ));
        }
        if p.bitcoin_height >= p.target {
            if let Some(bar) = s.bar.take() {
                bar.finish_and_clear();
                eprintln!(
                    "caught up: Bitcoin height {}, L2 height {} ({} blocks in {:.1} s, {:.0} blocks/s)",
                    p.bitcoin_height,
                    p.l2_height,
                    blocks,
                    secs,
                    blocks as f64 / secs
                );
            }
        }
    }
}

async fn follow_async(launch: FollowLaunch) -> Result<()> {
    let (key, start_height) = settlement_of(&launch.spec).context("--follow-bitcoin")?;
    let client = bitcoin_client(&launch.bitcoin_rpc, launch.bitcoin_cookie.as_deref())?;
    let url = client.url().to_string();
    let client = Arc::new(client);
    let confirmations = match launch.confirmations {
        Some(c) => c.max(1),
        None => {
            let c = client.clone();
            tokio::task::spawn_blocking(move || default_confirmations(&c))
                .await
                .context("asking the Bitcoin node which chain it serves")?
        }
    };
    let mut chain = ChainConfig {
        keep_versions: launch.keep_versions,
        ..ChainConfig::default()
    };
    if let Some(t) = launch.threads {
        chain.threads = t.max(1);
    }
    let config = FollowerConfig {
        confirmations,
        poll_interval: Duration::from_millis(500),
        chain,
    };
    let (db, spec) = (launch.db.clone(), launch.spec.clone());
    let follower = tokio::task::spawn_blocking(move || Follower::open(&db, spec, client, config))
        .await
        .context("opening the follower")?
        .context("opening the follower")?;
    follower.set_progress(progress_bar());
    let follower = Arc::new(follower);
    let mut swaps = follower.subscribe();
    let node = follower.node();
    let head = node.chain().head();
    let ctx = |node| RpcContext {
        node,
        network: launch.network,
    };
    let (addr, mut server) = rpc::start(ctx(node), launch.rpc_addr)
        .await
        .with_context(|| format!("starting JSON-RPC on {}", launch.rpc_addr))?;
    println!("Parabit full node (derives the chain from Bitcoin; read-only)");
    println!("  data dir       {}", launch.db.display());
    println!("  Bitcoin        {url} from height {start_height}, {confirmations} confirmation(s)");
    println!("  sequencer key  {key}");
    println!(
        "  height         {} (state root {})",
        head.height,
        hex::encode(head.state_root)
    );
    println!("  JSON-RPC       http://{addr}  (WebSocket ws://{addr})");
    println!("  explorer       http://{addr}/explorer   metrics http://{addr}/metrics");
    println!("Ctrl-C stops it; starting it again continues where it stopped.");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follower.clone().run(stop_rx));
    tokio::pin!(task);
    let mut reported = false;
    let mut mismatch_tick = tokio::time::interval(Duration::from_millis(500));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let terminate = wait_terminate();
    tokio::pin!(terminate);
    let result = loop {
        tokio::select! {
            r = &mut ctrl_c => {
                r.context("waiting for Ctrl-C")?;
                eprintln!("stopping…");
                break None;
            }
            r = &mut terminate => {
                r?;
                eprintln!("terminated, stopping…");
                break None;
            }
            r = &mut task => {
                break Some(r);
            }
            changed = swaps.changed() => {
                if changed.is_err() {
                    continue;
                }
                // A reorg rebuilt the store: serve the new state on the same address.
                let node = swaps.borrow_and_update().clone();
                let _ = server.stop();
                server.stopped().await;
                let (_, s) = rpc::start(ctx(node), addr)
                    .await
                    .with_context(|| format!("restarting JSON-RPC on {addr}"))?;
                server = s;
                eprintln!("Bitcoin reorg: rolled back and serving L2 height {}", follower.verified_height());
            }
            _ = mismatch_tick.tick() => {
                if let (false, Some(m)) = (reported, follower.mismatch()) {
                    eprintln!("STATE ROOT MISMATCH, following stopped: {m}");
                    eprintln!("serving the last good state (height {})", follower.verified_height());
                    reported = true;
                }
            }
        }
    };
    follower.stop();
    let _ = stop_tx.send(true);
    let outcome = match result {
        Some(r) => r,
        None => task.await,
    };
    let _ = server.stop();
    server.stopped().await;
    outcome
        .context("follower task")?
        .context("following Bitcoin failed")?;
    println!(
        "stopped at height {} (verified against Bitcoin)",
        follower.verified_height()
    );
    Ok(())
}

#[cfg(unix)]
async fn wait_terminate() -> Result<()> {
    let mut s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    s.recv().await;
    Ok(())
}

#[cfg(not(unix))]
async fn wait_terminate() -> Result<()> {
    std::future::pending().await
}
