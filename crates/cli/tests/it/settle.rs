//! `parabit devnet` settles on its embedded regtest chain: after some load, `parabit query
//! batch` shows confirmed batches covering the chain from height 1, the reveal transactions
//! read back over the regtest chain's own JSON-RPC (cookie auth) carry envelopes signed by
//! the genesis' sequencer key whose chunks decode to the batch, and a restarted devnet neither
//! posts a batch twice nor skips one.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use parabit_bitcoin::bitcoin::Txid;
use parabit_bitcoin::envelope::envelope_from_witness;
use parabit_bitcoin::envelope::Envelope;
use parabit_bitcoin::{Auth, BitcoinClient, BitcoindClient, BitcoindConfig};
use parabit_modules::GenesisSpec;
use parabit_node::batch::{Batch, BatchCodec, Chunk};
use serde_json::Value as Json;

pub(crate) struct Devnet {
    child: Child,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

fn run(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(args)
        .env_remove("PARABIT_RPC")
        .env_remove("PARABIT_LOAD_FUNDER_SECRET")
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run parabit: {e}"),
    }
}

pub(crate) fn start(dir: &Path, port: u16, btc_port: u16) -> Devnet {
    let child = Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(["devnet", "--data-dir"])
        .arg(dir)
        .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
        .args(["--bitcoin-rpc-addr", &format!("127.0.0.1:{btc_port}")])
        .args(["--bitcoin-block-time", "0.5", "--batch-interval", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start parabit devnet: {e}"));
    let mut d = Devnet { child };
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    while !run(&["query", "chain", "--json", "--rpc", &url])
        .status
        .success()
    {
        if let Ok(Some(s)) = d.child.try_wait() {
            panic!("devnet exited early: {s}");
        }
        assert!(t.elapsed() < Duration::from_secs(60), "devnet RPC not up");
        std::thread::sleep(Duration::from_millis(200));
    }
    d
}

fn json(out: Output) -> Option<Json> {
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn batch(url: &str, index: u64) -> Option<Json> {
    json(run(&[
        "query",
        "batch",
        &index.to_string(),
        "--json",
        "--rpc",
        url,
    ]))
}

/// The envelopes of every reveal of batch `record` (its `reveal_txids`), read over `btc`, and
/// the batch their chunks put together decode to (with the codec of the genesis file).
fn batch_on_bitcoin(btc: &BitcoindClient, record: &Json, genesis: &Path) -> (Vec<Envelope>, Batch) {
    let spec: GenesisSpec =
        serde_json::from_str(&std::fs::read_to_string(genesis).expect("genesis file"))
            .expect("genesis spec");
    let ids = record["reveal_txids"].as_array().expect("reveal_txids");
    assert!(!ids.is_empty());
    assert_eq!(
        ids.last(),
        Some(&record["reveal_txid"]),
        "reveal_txid is the last"
    );
    let mut envelopes = Vec::new();
    let mut chunks = Vec::new();
    for id in ids {
        let reveal = Txid::from_str(id.as_str().expect("txid")).expect("txid");
        let tx = btc.get_raw_transaction(&reveal).expect("reveal on chain");
        let env = envelope_from_witness(&tx.input[0].witness)
            .expect("envelope")
            .expect("an envelope");
        chunks.push(Chunk::from_envelope(env.version, &env.data).expect("a chunk"));
        envelopes.push(env);
    }
    let batch = Batch::from_chunks(&BatchCodec::from_genesis(&spec), &chunks).expect("decodes");
    (envelopes, batch)
}

pub(crate) fn stop(mut d: Devnet) {
    // SIGTERM: the devnet stops cleanly (the batcher thread is joined).
    let _ = Command::new("kill").arg(d.child.id().to_string()).status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = d.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = d.child.kill();
}

#[test]
fn devnet_posts_confirmed_batches_to_its_regtest_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, btc_port) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}");
    let d = start(dir.path(), port, btc_port);
    let load = run(&[
        "load",
        "--rpc",
        &url,
        "--tps",
        "300",
        "--duration",
        "2",
        "--json",
    ]);
    assert!(
        load.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    let head = json(run(&["query", "chain", "--json", "--rpc", &url])).expect("chain");
    let height = head["height"].as_u64().expect("height");
    assert!(height > 0);
    // Wait until batches cover the head and are confirmed.
    let t = Instant::now();
    let records = loop {
        let mut records = Vec::new();
        let mut i = 0;
        while let Some(b) = batch(&url, i) {
            records.push(b);
            i += 1;
        }
        let covered = records
            .last()
            .and_then(|b| b["last_height"].as_u64())
            .is_some_and(|h| h >= height);
        if covered && records.iter().all(|b| b["status"] == "confirmed") {
            break records;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "batches not confirmed in time: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let mut next = 1;
    for (i, b) in records.iter().enumerate() {
        assert_eq!(b["index"], i as u64);
        assert_eq!(b["first_height"], next, "no gap, no overlap");
        next = b["last_height"].as_u64().expect("last") + 1;
        assert!(b["vbytes"].as_u64().expect("vbytes") > 0);
    }
    let info = json(run(&["query", "chain", "--json", "--rpc", &url])).expect("chain");
    assert_eq!(info["batches_posted"], records.len() as u64);
    let of_head = json(run(&[
        "query",
        "batch",
        "--block",
        &height.to_string(),
        "--json",
        "--rpc",
        &url,
    ]))
    .expect("batch of the head block");
    assert_eq!(of_head, *records.last().expect("a batch"));

    // The reveal, read over the embedded chain's JSON-RPC with its cookie.
    let genesis: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("genesis.json")).expect("genesis"),
    )
    .expect("genesis json");
    let key = genesis["settlement"]["sequencer_key"]
        .as_str()
        .expect("sequencer key")
        .to_string();
    let mut config = BitcoindConfig::new(format!("http://127.0.0.1:{btc_port}"));
    config.auth = Auth::CookieFile(dir.path().join("bitcoin").join(".cookie"));
    let btc = BitcoindClient::new(config).expect("client");
    let first = &records[0];
    let (envelopes, decoded) = batch_on_bitcoin(&btc, first, &dir.path().join("genesis.json"));
    for env in &envelopes {
        assert_eq!(hex::encode(env.key.serialize()), key);
    }
    assert_eq!(decoded.index, 0);
    assert_eq!(decoded.first_height, 1);
    assert_eq!(Some(decoded.last_height()), first["last_height"].as_u64());
    assert_eq!(hex::encode(decoded.state_root), first["state_root"]);

    // Restart: the same records, nothing posted again.
    stop(d);
    let d = start(dir.path(), port, btc_port);
    std::thread::sleep(Duration::from_secs(3));
    for (i, b) in records.iter().enumerate() {
        let again = batch(&url, i as u64).expect("record survives");
        assert_eq!(again["reveal_txid"], b["reveal_txid"], "batch {i}");
        assert_eq!(again["postings"], 1, "batch {i} posted once");
    }
    assert!(
        batch(&url, records.len() as u64).is_none(),
        "no new batch without new blocks"
    );
    drop(d);
}

#[test]
fn a_devnet_settles_on_a_separate_parabit_regtest_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let btc_dir = dir.path().join("btc");
    let (port, btc_port) = (free_port(), free_port());
    let mut regtest = Devnet {
        child: Command::new(env!("CARGO_BIN_EXE_parabit"))
            .args(["regtest", "--data-dir"])
            .arg(&btc_dir)
            .args(["--rpc-addr", &format!("127.0.0.1:{btc_port}")])
            .args(["--rpc-user", "u", "--rpc-password", "p"])
            .args(["--block-interval", "0.5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start parabit regtest"),
    };
    let btc = BitcoindClient::new(BitcoindConfig::new(format!(
        "http://u:p@127.0.0.1:{btc_port}"
    )))
    .expect("client");
    let t = Instant::now();
    while btc.tip().is_err() {
        if let Ok(Some(s)) = regtest.child.try_wait() {
            panic!("parabit regtest exited early: {s}");
        }
        assert!(t.elapsed() < Duration::from_secs(30), "regtest RPC not up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let bad = BitcoindClient::new(BitcoindConfig::new(format!(
        "http://u:wrong@127.0.0.1:{btc_port}"
    )))
    .expect("client");
    assert!(bad.tip().is_err(), "wrong password refused");

    let child = Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(["devnet", "--data-dir"])
        .arg(dir.path().join("l2"))
        .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--bitcoin-rpc",
            &format!("http://u:p@127.0.0.1:{btc_port}"),
            "--batch-interval",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start devnet");
    let mut d = Devnet { child };
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    while !run(&["query", "chain", "--json", "--rpc", &url])
        .status
        .success()
    {
        if let Ok(Some(s)) = d.child.try_wait() {
            panic!("devnet exited early: {s}");
        }
        assert!(t.elapsed() < Duration::from_secs(60), "devnet RPC not up");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !dir.path().join("l2").join("bitcoin").exists(),
        "no embedded chain"
    );
    let load = run(&[
        "load",
        "--rpc",
        &url,
        "--tps",
        "200",
        "--duration",
        "1",
        "--json",
    ]);
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let t = Instant::now();
    let first = loop {
        if let Some(b) = batch(&url, 0) {
            if b["status"] == "confirmed" {
                break b;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "batch 0 not confirmed"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let (_, decoded) = batch_on_bitcoin(&btc, &first, &dir.path().join("l2").join("genesis.json"));
    assert_eq!(decoded.first_height, 1);
    drop(d);
    drop(regtest);
}
