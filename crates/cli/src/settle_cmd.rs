//! Settlement for `parabit devnet`: the Bitcoin side (the embedded regtest chain in
//! `<data-dir>/bitcoin/` with its JSON-RPC server and a miner, or an external bitcoind /
//! `parabit regtest`), the devnet's sequencer Bitcoin key, and the batcher started beside the
//! node.
//!
//! Invariants:
//! - The devnet's sequencer key is derived deterministically (a fixed tag hashed), so a
//!   restarted devnet signs with the key its `genesis.json` names; a genesis naming another
//!   key is refused rather than posting envelopes no follower would accept.
//! - On first start the embedded chain is mined to 110 blocks paying the sequencer's address,
//!   so the batcher has mature coins; later the miner keeps paying it.
//! - The batcher runs on its own thread; all Bitcoin I/O happens there (or before the node
//!   starts), never on the async runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::{Address, Network as BtcNetwork};
use parabit_bitcoin::regtest::{MinerHandle, RpcServer, ServerAuth};
use parabit_bitcoin::{
    Auth, BitcoinClient, BitcoindClient, BitcoindConfig, RegtestChain, TaprootWallet,
};
use parabit_modules::genesis::{SettlementSpec, DEFAULT_MIN_DEPOSIT, DEFAULT_MIN_WITHDRAWAL};
use parabit_modules::GenesisSpec;
use parabit_node::batcher::{Batcher, BatcherConfig, StoreAccess};
use parabit_node::bridge::{BridgeParams, DepositWatcher, Payer, PayerConfig};
use parabit_node::node::Node;
use parabit_node::settlement::SettlementStatus;
use sha2::{Digest, Sha256};

use crate::node_cmd::{Attach, Attached, DevnetSettlementArgs};

/// The embedded chain's default JSON-RPC address.
pub const DEFAULT_BITCOIN_RPC_ADDR: &str = "127.0.0.1:18645";
/// Default most transactions per block of a settling devnet. Batches may span several
/// envelopes (chunks), but keeping a block within one (~5,000 transfers) keeps each Bitcoin
/// transaction package small.
pub const SETTLING_MAX_BLOCK_TXS: usize = 4_000;
/// Height the embedded chain is mined to on first start (coinbase outputs need 100).
const FUNDED_HEIGHT: u32 = 110;

/// The devnet's sequencer Bitcoin key (deterministic; never use it for real value).
pub fn devnet_sequencer_keypair() -> Keypair {
    let seed: [u8; 32] = Sha256::digest(b"parabit/devnet/sequencer-bitcoin-key").into();
    // A SHA-256 output is a valid secret key except with negligible probability; this fixed
    // one is.
    let secret = SecretKey::from_slice(&seed).unwrap_or_else(|_| {
        SecretKey::from_slice(&[1u8; 32]).unwrap_or_else(|_| unreachable!("1 is a valid key"))
    });
    Keypair::from_secret_key(SECP256K1, &secret)
}

struct Embedded {
    dir: PathBuf,
    server: RpcServer,
    miner: MinerHandle,
    block_time: Duration,
}

/// The devnet's Bitcoin connection, ready before the node starts.
pub struct DevnetBitcoin {
    client: Arc<dyn BitcoinClient>,
    keypair: Keypair,
    embedded: Option<Embedded>,
    external_url: Option<String>,
}

impl DevnetBitcoin {
    /// Opens (or creates) the embedded chain, or connects to `--bitcoin-rpc`.
    pub fn start(data_dir: &Path, args: &DevnetSettlementArgs) -> Result<DevnetBitcoin> {
        let keypair = devnet_sequencer_keypair();
        let wallet = TaprootWallet::from_keypair(keypair);
        let script = wallet.script_pubkey().clone();
        let address = wallet.address(BtcNetwork::Regtest);
        if let Some(url) = &args.bitcoin_rpc {
            let mut config = BitcoindConfig::new(url.clone());
            if let Some(cookie) = &args.bitcoin_cookie {
                config.auth = Auth::CookieFile(cookie.clone());
            }
            config.watch_addresses = vec![address.to_string()];
            let client = BitcoindClient::new(config)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("Bitcoin RPC {url}"))?;
            let (height, _) = client
                .tip()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("reaching the Bitcoin node at {url}"))?;
            fund_external(&client, &address, height);
            return Ok(DevnetBitcoin {
                client: Arc::new(client),
                keypair,
                embedded: None,
                external_url: Some(client_url(url)),
            });
        }
        let dir = data_dir.join("bitcoin");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let chain = Arc::new(
            RegtestChain::open(&dir)
                .with_context(|| format!("opening the regtest chain in {}", dir.display()))?,
        );
        if chain.height() < FUNDED_HEIGHT {
            chain
                .mine(FUNDED_HEIGHT - chain.height(), &script)
                .context("mining the batcher's first coins")?;
        }
        let cookie = dir.join(".cookie");
        let wanted: SocketAddr = match args.bitcoin_rpc_addr {
            Some(a) => a,
            None => DEFAULT_BITCOIN_RPC_ADDR
                .parse()
                .context("default Bitcoin RPC address")?,
        };
        let server = match RpcServer::start(
            Arc::clone(&chain),
            wanted,
            ServerAuth::Cookie(cookie.clone()),
        ) {
            Ok(s) => s,
            Err(e) if args.bitcoin_rpc_addr.is_none() => {
                tracing::warn!(addr = %wanted, error = %e, "Bitcoin RPC port taken; using a free one");
                RpcServer::start(
                    Arc::clone(&chain),
                    "127.0.0.1:0",
                    ServerAuth::Cookie(cookie.clone()),
                )
                .context("starting the regtest JSON-RPC server")?
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("starting the regtest JSON-RPC server on {wanted}"))
            }
        };
        if !(args.bitcoin_block_time.is_finite() && args.bitcoin_block_time > 0.0) {
            bail!("--bitcoin-block-time must be a positive number of seconds");
        }
        let block_time = Duration::from_secs_f64(args.bitcoin_block_time);
        let miner = chain.spawn_miner(block_time, script.clone());
        Ok(DevnetBitcoin {
            client: Arc::new(chain.client(vec![script])),
            keypair,
            embedded: Some(Embedded {
                dir,
                server,
                miner,
                block_time,
            }),
            external_url: None,
        })
    }

    /// The genesis `settlement` field for a new devnet: this key, from the next Bitcoin block.
    pub fn settlement_spec(&self) -> Result<SettlementSpec> {
        let (height, _) = self.client.tip().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(SettlementSpec {
            sequencer_key: hex::encode(self.keypair.x_only_public_key().0.serialize()),
            start_height: u64::from(height) + 1,
            // A devnet credits a deposit once one block holds it (regtest has no miners to
            // reorganise it); a real chain keeps the default depth.
            deposit_confirmations: 1,
            min_deposit: DEFAULT_MIN_DEPOSIT,
            min_withdrawal: DEFAULT_MIN_WITHDRAWAL,
        })
    }

    /// Banner lines.
    pub fn banner(&self) -> String {
        let wallet = TaprootWallet::from_keypair(self.keypair);
        let height = self.client.tip().map(|(h, _)| h).unwrap_or(0);
        let mut out = String::new();
        match (&self.embedded, &self.external_url) {
            (Some(e), _) => {
                out.push_str(&format!(
                    "  bitcoin    embedded regtest chain in {} (height {height}, a block every {:?})\n",
                    e.dir.display(),
                    e.block_time
                ));
                out.push_str(&format!(
                    "  bitcoin RPC {}  (cookie {})\n",
                    e.server.url(),
                    e.dir.join(".cookie").display()
                ));
            }
            (None, Some(url)) => {
                out.push_str(&format!(
                    "  bitcoin    external node {url} (height {height})\n"
                ));
            }
            (None, None) => {}
        }
        out.push_str(&format!(
            "  sequencer  bitcoin address {}, envelope key {}\n",
            wallet.address(BtcNetwork::Regtest),
            hex::encode(self.keypair.x_only_public_key().0.serialize())
        ));
        out.push_str(&format!(
            "  bridge     deposit BTC to {} with `parabit bridge deposit`; withdraw with `parabit tx withdraw-btc`\n",
            parabit_bitcoin::bridge::bridge_address(
                self.keypair.x_only_public_key().0,
                BtcNetwork::Regtest
            )
        ));
        out
    }

    /// The batcher, started once the node exists. `None` (and a warning) when the genesis
    /// does not settle (a devnet created before settlement existed).
    pub fn attach(self, spec: &GenesisSpec, args: &DevnetSettlementArgs) -> Result<Option<Attach>> {
        let key = hex::encode(self.keypair.x_only_public_key().0.serialize());
        match &spec.settlement {
            None => {
                eprintln!(
                    "warning: this devnet's genesis has no settlement section; no batches go to Bitcoin (use --reset to start a settling devnet)"
                );
                return Ok(None);
            }
            Some(s) if s.sequencer_key != key => bail!(
                "the genesis names sequencer key {} but the devnet's key is {key}; use --reset",
                s.sequencer_key
            ),
            Some(_) => {}
        }
        if !(args.batch_interval.is_finite() && args.batch_interval > 0.0) {
            bail!("--batch-interval must be a positive number of seconds");
        }
        let config = BatcherConfig {
            max_blocks: args.batch_blocks.max(1),
            interval: Duration::from_secs_f64(args.batch_interval),
            fault_wrong_root: args.test_fault_wrong_root,
            ..BatcherConfig::devnet()
        };
        let attach: Attach = Box::new(move |node: &Arc<Node>| {
            let status = Arc::new(
                SettlementStatus::load(node.chain().store()).context("reading batch records")?,
            );
            node.attach_settlement(Arc::clone(&status));
            let banner = format!(
                "  batcher    a batch every {} blocks or {:?}; {} batches recorded\n",
                config.max_blocks,
                config.interval,
                status.batch_count()
            );
            let batcher = Batcher::new(
                Arc::clone(node) as Arc<dyn StoreAccess>,
                Arc::clone(&self.client),
                TaprootWallet::from_keypair(self.keypair),
                self.keypair,
                config,
                status,
            );
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = std::thread::Builder::new()
                .name("parabit-batcher".into())
                .spawn(move || batcher.run(flag))
                .context("starting the batcher thread")?;
            let bridge = start_bridge(node, &self.client, self.keypair, &stop)?;
            let embedded = self.embedded;
            Ok(Attached {
                banner,
                stop: Box::new(move || {
                    stop.store(true, Ordering::SeqCst);
                    let _ = thread.join();
                    for t in bridge {
                        let _ = t.join();
                    }
                    if let Some(e) = embedded {
                        e.miner.stop();
                        e.server.stop();
                    }
                }),
            })
        });
        Ok(Some(attach))
    }
}

/// Starts the bridge beside the node: the deposit watcher (its deposits go into every block
/// from now on) and the withdrawal payer, each on its own thread until `stop`.
fn start_bridge(
    node: &Arc<Node>,
    client: &Arc<dyn BitcoinClient>,
    keypair: Keypair,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let Some(params) = BridgeParams::of(node.chain().spec()).map_err(|e| anyhow::anyhow!(e))?
    else {
        return Ok(Vec::new());
    };
    let watcher = Arc::new(
        DepositWatcher::new(
            params,
            &keypair,
            Arc::clone(client),
            node.chain().head().bitcoin_height,
        )
        .map_err(|e| anyhow::anyhow!(e))
        .context("starting the deposit watcher")?,
    );
    node.attach_deposits(Arc::clone(&watcher));
    let payer = Payer::new(
        Arc::clone(node),
        Arc::clone(client),
        keypair,
        PayerConfig::default(),
    )
    .context("starting the withdrawal payer")?;
    node.attach_bridge_status(payer.status());
    let flag = Arc::clone(stop);
    let watch = std::thread::Builder::new()
        .name("parabit-deposits".into())
        .spawn(move || watcher.run(&flag, Duration::from_millis(500)))
        .context("starting the deposit watcher thread")?;
    let flag = Arc::clone(stop);
    let pay = std::thread::Builder::new()
        .name("parabit-payer".into())
        .spawn(move || payer.run(&flag))
        .context("starting the withdrawal payer thread")?;
    Ok(vec![watch, pay])
}

/// The URL without credentials, for the banner.
fn client_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Mines 101 blocks to the batcher on an external regtest node when it has no coins yet
/// (`generatetoaddress`; a node that refuses it is left alone with a warning).
fn fund_external(client: &BitcoindClient, address: &Address, height: u32) {
    match client.list_unspent() {
        Ok(coins) if !coins.is_empty() => return,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "listing the batcher's coins");
            return;
        }
    }
    let r = client.call(
        "generatetoaddress",
        serde_json::json!([101, address.to_string()]),
    );
    match r {
        Ok(_) => eprintln!(
            "funded the batcher: mined 101 blocks to {address} on the external node (was at height {height})"
        ),
        Err(e) => eprintln!(
            "warning: the batcher has no coins and the Bitcoin node refused generatetoaddress ({e}); send coins to {address}"
        ),
    }
}
