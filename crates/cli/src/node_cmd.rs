//! `parabit devnet` and `parabit node`: open the chain in a data directory, produce blocks,
//! serve JSON-RPC, stop cleanly on Ctrl-C (the block being committed finishes; a restart
//! continues from the last committed block).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use parabit_modules::GenesisSpec;
use parabit_node::chain::{Chain, ChainConfig};
use parabit_node::devnet::{devnet_genesis, DEVNET_CHAIN_ID};
use parabit_node::node::{now_ms, Node, NodeConfig};
use parabit_node::rpc::{self, RpcContext, DEFAULT_RPC_ADDR};
use parabit_primitives::Network;

/// The database file in a data directory.
pub const DB_FILE: &str = "parabit.redb";
/// The genesis file in a data directory.
pub const GENESIS_FILE: &str = "genesis.json";

/// `parabit devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Data directory (default: the user's data dir, `parabit/devnet`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// JSON-RPC address (HTTP and WebSocket).
    #[arg(long, default_value = DEFAULT_RPC_ADDR)]
    pub rpc_addr: SocketAddr,
    /// Delete the data directory first and start from genesis.
    #[arg(long)]
    pub reset: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub settle: DevnetSettlementArgs,
}

/// Settlement options of `parabit devnet`: the embedded regtest chain (or an external one)
/// and the batcher.
#[derive(Debug, Args, Clone, Default)]
pub struct DevnetSettlementArgs {
    /// Use this Bitcoin JSON-RPC server (bitcoind or `parabit regtest`; `user:password@` in
    /// the URL works) instead of the embedded regtest chain.
    #[arg(long, value_name = "URL")]
    pub bitcoin_rpc: Option<String>,
    /// Cookie file of the external Bitcoin node (with --bitcoin-rpc).
    #[arg(long, value_name = "FILE", requires = "bitcoin_rpc")]
    pub bitcoin_cookie: Option<PathBuf>,
    /// Address of the embedded regtest chain's JSON-RPC server (default 127.0.0.1:18645, or
    /// a free port when that one is taken); its cookie is `<data-dir>/bitcoin/.cookie`.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "bitcoin_rpc")]
    pub bitcoin_rpc_addr: Option<SocketAddr>,
    /// Seconds between blocks of the embedded regtest chain.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub bitcoin_block_time: f64,
    /// A batch to Bitcoin every this many L2 blocks…
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub batch_blocks: u64,
    /// …or every this many seconds (when there is at least one new block).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub batch_interval: f64,
    /// Run without Bitcoin: no regtest chain, no batcher.
    #[arg(long, conflicts_with_all = ["bitcoin_rpc", "bitcoin_rpc_addr"])]
    pub no_settlement: bool,
    /// Test-only fault: batch N claims a wrong state root (full nodes must catch it).
    #[arg(long, hide = true, value_name = "N")]
    pub test_fault_wrong_root: Option<u64>,
}

/// `parabit node`.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The genesis file (copied into the data directory on first start).
    #[arg(long)]
    pub genesis: Option<PathBuf>,
    /// A TOML config file: `rpc_addr`, `block_time_ms`, `max_block_txs`, `threads`,
    /// `keep_versions`, `network` ("regtest" or "mainnet"); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// JSON-RPC address (HTTP and WebSocket).
    #[arg(long)]
    pub rpc_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Run as a read-only full node that derives the chain from Bitcoin alone (the genesis'
    /// `settlement` names the sequencer key and the Bitcoin start height); needs
    /// --bitcoin-rpc.
    #[arg(long, requires = "bitcoin_rpc")]
    pub follow_bitcoin: bool,
    /// Bitcoin JSON-RPC URL of bitcoind or `parabit regtest` (`http://user:password@host:port`
    /// works) (with --follow-bitcoin).
    #[arg(long, value_name = "URL", requires = "follow_bitcoin")]
    pub bitcoin_rpc: Option<String>,
    /// Cookie file of the Bitcoin node (instead of credentials in the URL).
    #[arg(long, value_name = "FILE", requires = "follow_bitcoin")]
    pub bitcoin_cookie: Option<PathBuf>,
    /// Read a Bitcoin block once it has this many confirmations (default: 1 on regtest, 6
    /// otherwise).
    #[arg(long, value_name = "N", requires = "follow_bitcoin")]
    pub confirmations: Option<u32>,
}

/// Block production options shared by `devnet` and `node`.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Milliseconds between blocks while transactions wait.
    #[arg(long)]
    pub block_time: Option<u64>,
    /// Most transactions in a block (a block is built as soon as this many are ready).
    #[arg(long)]
    pub max_block_txs: Option<usize>,
    /// Execution threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The config file of `parabit node`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFileConfig {
    rpc_addr: Option<SocketAddr>,
    block_time_ms: Option<u64>,
    max_block_txs: Option<usize>,
    threads: Option<usize>,
    keep_versions: Option<u64>,
    network: Option<String>,
}

struct Launch {
    data_dir: PathBuf,
    spec: GenesisSpec,
    rpc_addr: SocketAddr,
    network: Network,
    block_time: Duration,
    max_block_txs: usize,
    threads: Option<usize>,
    keep_versions: Option<u64>,
    banner: Option<String>,
}

/// Runs the devnet.
pub fn devnet(args: &DevnetArgs) -> Result<()> {
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => dirs::data_dir()
            .context("no user data directory on this system; pass --data-dir")?
            .join("parabit")
            .join("devnet"),
    };
    if args.reset && data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)
            .with_context(|| format!("removing {}", data_dir.display()))?;
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let genesis_path = data_dir.join(GENESIS_FILE);
    let dev = devnet_genesis(now_ms());
    // Bitcoin first: a new genesis names the sequencer key and the Bitcoin start height.
    let bitcoin = if args.settle.no_settlement {
        None
    } else {
        Some(crate::settle_cmd::DevnetBitcoin::start(
            &data_dir,
            &args.settle,
        )?)
    };
    let spec = if genesis_path.exists() {
        read_genesis(&genesis_path)?
    } else {
        let mut spec = dev.spec.clone();
        if let Some(b) = &bitcoin {
            spec.settlement = Some(b.settlement_spec()?);
        }
        write_genesis(&genesis_path, &spec)?;
        spec
    };
    if spec.chain_id != DEVNET_CHAIN_ID {
        bail!(
            "{} is not a devnet genesis (chain id {}); use `parabit node` or --reset",
            genesis_path.display(),
            spec.chain_id
        );
    }
    let mut banner = String::new();
    banner.push_str("Parabit devnet\n");
    banner.push_str(&format!("  data dir   {}\n", data_dir.display()));
    banner.push_str(&format!("  chain id   {}\n", spec.chain_id));
    banner.push_str("  development accounts (public keys, never use them for real value):\n");
    for acc in dev.accounts.iter().chain([&dev.admin]) {
        banner.push_str(&format!(
            "    {:<6} {}  secret {}\n",
            acc.name,
            acc.key.address().to_bech32(Network::Regtest),
            hex::encode(acc.key.secret_bytes())
        ));
    }
    banner.push_str(&format!(
        "  seeded: pool BTC/USDX ({}-{}), lending markets BTC and USDX (asset 1), staking pool {}, insurance pool {}\n",
        dev.pool.a.0, dev.pool.b.0, dev.staking_pool, dev.insurance_pool
    ));
    let settling = bitcoin.is_some() && spec.settlement.is_some();
    let attach = match bitcoin {
        Some(b) => {
            banner.push_str(&b.banner());
            b.attach(&spec, &args.settle)?
        }
        None => None,
    };
    run_with(
        Launch {
            data_dir,
            spec,
            rpc_addr: args.rpc_addr,
            network: Network::Regtest,
            block_time: Duration::from_millis(args.run.block_time.unwrap_or(250)),
            // A settling devnet keeps blocks small enough that one block always fits one
            // Bitcoin envelope (~390 kB compressed; transfers take ~80 B each).
            max_block_txs: args.run.max_block_txs.unwrap_or(if settling {
                crate::settle_cmd::SETTLING_MAX_BLOCK_TXS
            } else {
                10_000
            }),
            threads: args.run.threads,
            keep_versions: Some(10_000),
            banner: Some(banner),
        },
        attach,
    )
}

/// Runs a node from a genesis file and an optional config file.
pub fn node(args: &NodeArgs) -> Result<()> {
    let file: NodeFileConfig = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?
        }
        None => NodeFileConfig::default(),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let in_dir = args.data_dir.join(GENESIS_FILE);
    let spec = match (&args.genesis, in_dir.exists()) {
        (Some(g), true) => {
            let given = read_genesis(g)?;
            let stored = read_genesis(&in_dir)?;
            if given != stored {
                bail!(
                    "{} differs from the genesis this data directory was created with ({})",
                    g.display(),
                    in_dir.display()
                );
            }
            stored
        }
        (Some(g), false) => {
            let spec = read_genesis(g)?;
            write_genesis(&in_dir, &spec)?;
            spec
        }
        (None, true) => read_genesis(&in_dir)?,
        (None, false) => bail!(
            "no genesis: pass --genesis FILE (the data directory {} has none yet)",
            args.data_dir.display()
        ),
    };
    let network = match file.network.as_deref() {
        None | Some("regtest") => Network::Regtest,
        Some("mainnet") => Network::Mainnet,
        Some(other) => bail!("config: network must be \"regtest\" or \"mainnet\", not {other:?}"),
    };
    if args.follow_bitcoin {
        let bitcoin_rpc = args
            .bitcoin_rpc
            .clone()
            .context("--follow-bitcoin needs --bitcoin-rpc URL")?;
        return crate::follow_cmd::follow(crate::follow_cmd::FollowLaunch {
            db: args.data_dir.join(DB_FILE),
            spec,
            rpc_addr: args
                .rpc_addr
                .or(file.rpc_addr)
                .unwrap_or_else(|| DEFAULT_RPC_ADDR.parse().expect("a valid default address")),
            network,
            bitcoin_rpc,
            bitcoin_cookie: args.bitcoin_cookie.clone(),
            confirmations: args.confirmations,
            threads: args.run.threads.or(file.threads),
            keep_versions: file.keep_versions.or(Some(10_000)),
        });
    }
    run(Launch {
        data_dir: args.data_dir.clone(),
        spec,
        rpc_addr: args
            .rpc_addr
            .or(file.rpc_addr)
            .unwrap_or_else(|| DEFAULT_RPC_ADDR.parse().expect("a valid default address")),
        network,
        block_time: Duration::from_millis(
            args.run.block_time.or(file.block_time_ms).unwrap_or(250),
        ),
        max_block_txs: args
            .run
            .max_block_txs
            .or(file.max_block_txs)
            .unwrap_or(10_000),
        threads: args.run.threads.or(file.threads),
        keep_versions: file.keep_versions.or(Some(10_000)),
        banner: None,
    })
}

fn read_genesis(path: &Path) -> Result<GenesisSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing genesis {}", path.display()))
}

fn write_genesis(path: &Path, spec: &GenesisSpec) -> Result<()> {
    let text = serde_json::to_string_pretty(spec).context("encoding genesis")?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Something started beside the node once it exists (the batcher, a follower): it gets the
/// node, may add lines to the banner, and returns how to stop it.
pub type Attach = Box<dyn FnOnce(&Arc<Node>) -> Result<Attached> + Send>;

/// What an [`Attach`] started.
pub struct Attached {
    /// Banner lines.
    pub banner: String,
    /// Stops it (called after block production stops, before the RPC server stops).
    pub stop: Box<dyn FnOnce() + Send>,
}

fn run(launch: Launch) -> Result<()> {
    run_with(launch, None)
}

fn run_with(launch: Launch, attach: Option<Attach>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("parabit-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(launch, attach))
}

async fn run_async(launch: Launch, attach: Option<Attach>) -> Result<()> {
    let db = launch.data_dir.join(DB_FILE);
    let mut config = ChainConfig {
        keep_versions: launch.keep_versions,
        ..ChainConfig::default()
    };
    if let Some(t) = launch.threads {
        config.threads = t.max(1);
    }
    let chain = tokio::task::spawn_blocking(move || Chain::open(&db, launch.spec, &config))
        .await
        .context("opening the chain")?
        .context("opening the chain")?;
    let mut node_config = NodeConfig::new(chain.chain_id());
    node_config.block_time = launch.block_time;
    node_config.max_block_txs = launch.max_block_txs.max(1);
    let node = Node::new(chain, node_config);
    let head = node.chain().head();
    let attached = match attach {
        Some(f) => Some(f(&node)?),
        None => None,
    };
    let (addr, server) = rpc::start(
        RpcContext {
            node: node.clone(),
            network: launch.network,
        },
        launch.rpc_addr,
    )
    .await
    .with_context(|| format!("starting JSON-RPC on {}", launch.rpc_addr))?;
    if let Some(banner) = &launch.banner {
        print!("{banner}");
    }
    if let Some(a) = &attached {
        print!("{}", a.banner);
    }
    println!(
        "  height     {} (state root {})",
        head.height,
        hex::encode(head.state_root)
    );
    println!("  JSON-RPC   http://{addr}  (WebSocket ws://{addr})");
    println!("  explorer   http://{addr}/explorer   metrics http://{addr}/metrics");
    println!("Ctrl-C stops it; starting it again continues where it stopped.");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn(Arc::clone(&node).run_producer(stop_rx));
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for Ctrl-C")?;
            eprintln!("stopping…");
        }
        r = wait_terminate() => {
            r?;
            eprintln!("terminated, stopping…");
        }
    }
    let _ = stop_tx.send(true);
    let produced = producer.await.context("block producer")?;
    if let Some(a) = attached {
        tokio::task::spawn_blocking(a.stop)
            .await
            .context("stopping settlement")?;
    }
    let _ = server.stop();
    server.stopped().await;
    produced.context("block production failed")?;
    println!("stopped at height {}", node.chain().head().height);
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

/// `parabit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data directory of a stopped node (its `parabit.redb` and `genesis.json`).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Execution threads for the replay.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// One JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Replays a stopped node's chain from its genesis into a scratch store and checks every
/// block's receipts and state root; fails naming the first block that differs.
pub fn verify(args: &VerifyArgs) -> Result<()> {
    let spec = read_genesis(&args.data_dir.join(GENESIS_FILE))?;
    let db = args.data_dir.join(DB_FILE);
    let source = parabit_storage::Store::open(&db, parabit_storage::StoreConfig::default())
        .with_context(|| format!("opening {} (is the node still running?)", db.display()))?;
    let mut check = source;
    check
        .check()
        .with_context(|| format!("integrity check of {}", db.display()))?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let started = std::time::Instant::now();
    let (height, root) = parabit_node::chain::replay(
        &spec,
        &check,
        &scratch.path().join("replay.redb"),
        args.threads,
    )
    .context("replay from genesis")?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "height": height, "state_root": hex::encode(root), "seconds": seconds})
        );
    } else {
        println!(
            "ok: replayed blocks 0..={height} from genesis in {seconds:.2} s; state root {}",
            hex::encode(root)
        );
    }
    Ok(())
}
