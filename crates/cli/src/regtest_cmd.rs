//! `parabit regtest`: the embedded regtest chain as its own process, serving the subset of
//! Bitcoin Core's JSON-RPC that Parabit uses (so several Parabit processes share one chain,
//! and the bitcoind backend is exercised against it).
//!
//! Invariants:
//! - Authentication as bitcoind's: `--rpc-user`/`--rpc-password`, or else a cookie file
//!   `<data-dir>/.cookie` written at start and removed at a clean stop.
//! - The chain lives in the data directory and survives restarts (its journal); blocks are
//!   mined every `--block-interval` seconds (paying a fixed development key) and on
//!   `generatetoaddress`.
//! - Ctrl-C or SIGTERM stops the miner and the server, then exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
use parabit_bitcoin::regtest::{RpcServer, ServerAuth};
use parabit_bitcoin::{RegtestChain, TaprootWallet};
use sha2::{Digest, Sha256};

/// bitcoind's default regtest RPC port.
pub const DEFAULT_REGTEST_RPC_ADDR: &str = "127.0.0.1:18443";

/// `parabit regtest`.
#[derive(Debug, Args)]
pub struct RegtestArgs {
    /// Data directory (default: the user's data dir, `parabit/regtest`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// JSON-RPC address.
    #[arg(long, default_value = DEFAULT_REGTEST_RPC_ADDR, value_name = "HOST:PORT")]
    pub rpc_addr: SocketAddr,
    /// RPC user (with --rpc-password); without it a cookie file is written.
    #[arg(long, requires = "rpc_password", value_name = "U")]
    pub rpc_user: Option<String>,
    /// RPC password.
    #[arg(long, requires = "rpc_user", value_name = "P")]
    pub rpc_password: Option<String>,
    /// Mine a block every this many seconds (default: only on `generatetoaddress`).
    #[arg(long, value_name = "SECS")]
    pub block_interval: Option<f64>,
}

fn miner_script() -> parabit_bitcoin::bitcoin::ScriptBuf {
    let seed: [u8; 32] = Sha256::digest(b"parabit/regtest/miner-key").into();
    let secret = SecretKey::from_slice(&seed).unwrap_or_else(|_| {
        SecretKey::from_slice(&[2u8; 32]).unwrap_or_else(|_| unreachable!("2 is a valid key"))
    });
    let kp = Keypair::from_secret_key(SECP256K1, &secret);
    TaprootWallet::from_keypair(kp).script_pubkey().clone()
}

/// Runs the chain until Ctrl-C or SIGTERM.
pub fn run(args: &RegtestArgs) -> Result<()> {
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => dirs::data_dir()
            .context("no user data directory on this system; pass --data-dir")?
            .join("parabit")
            .join("regtest"),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let interval = match args.block_interval {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => bail!("--block-interval must be a positive number of seconds, not {s}"),
    };
    let chain = Arc::new(
        RegtestChain::open(&data_dir)
            .with_context(|| format!("opening the regtest chain in {}", data_dir.display()))?,
    );
    let (auth, auth_line) = match (&args.rpc_user, &args.rpc_password) {
        (Some(user), Some(password)) => (
            ServerAuth::UserPass {
                user: user.clone(),
                password: password.clone(),
            },
            format!("user {user}"),
        ),
        _ => {
            let cookie = data_dir.join(".cookie");
            let line = format!("cookie {}", cookie.display());
            (ServerAuth::Cookie(cookie), line)
        }
    };
    let server = RpcServer::start(Arc::clone(&chain), args.rpc_addr, auth)
        .with_context(|| format!("starting JSON-RPC on {}", args.rpc_addr))?;
    let miner = interval.map(|i| chain.spawn_miner(i, miner_script()));
    println!("Parabit regtest chain");
    println!("  data dir   {}", data_dir.display());
    println!("  height     {}", chain.height());
    println!("  JSON-RPC   {}  ({auth_line})", server.url());
    match interval {
        Some(i) => println!("  mining     a block every {i:?}"),
        None => println!("  mining     on generatetoaddress only"),
    }
    println!("Ctrl-C stops it; starting it again continues the same chain.");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("installing the SIGTERM handler")?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok::<(), anyhow::Error>(())
    })?;
    if let Some(m) = miner {
        m.stop();
    }
    server.stop();
    println!("stopped at height {}", chain.height());
    Ok(())
}
