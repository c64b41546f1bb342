//! End to end with separate processes: a `parabit regtest` Bitcoin chain, a `parabit devnet`
//! sequencer settling on it under `parabit load`, then a fresh
//! `parabit node --follow-bitcoin` that reads only that Bitcoin chain reaches the sequencer's
//! state root at every block of every batch, and refuses transactions; a Bitcoin reorg of the
//! block holding a batch is rolled back and re-derived by a running full node.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

/// Kills the child when dropped (also on panic).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

/// One JSON-RPC call over a fresh connection; the whole answer object, or None when the
/// node does not answer.
fn call(addr: &str, method: &str, params: Json) -> Option<Json> {
    call_auth(addr, None, method, params)
}

/// Standard padded base64 (Basic auth).
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(T[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// [`call`] with Basic credentials `user:password`.
fn call_auth(addr: &str, auth: Option<&str>, method: &str, params: Json) -> Option<Json> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let auth = auth.map_or(String::new(), |a| {
        format!("Authorization: Basic {}\r\n", base64(a.as_bytes()))
    });
    let mut s = TcpStream::connect(addr).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let (_, json) = answer.split_once("\r\n\r\n")?;
    serde_json::from_str(json).ok()
}

fn result(addr: &str, method: &str, params: Json) -> Json {
    match call(addr, method, params.clone()) {
        Some(a) if a.get("result").is_some() => a["result"].clone(),
        other => panic!("{method} {params} on {addr}: {other:?}"),
    }
}

fn spawn(args: &[&str], dir: &Path, log: &str) -> Proc {
    let out = std::fs::File::create(dir.join(log)).expect("log file");
    let err = out.try_clone().expect("log file");
    match Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
    {
        Ok(c) => Proc(c),
        Err(e) => panic!("cannot start parabit {args:?}: {e}"),
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool, logs: &Path) {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > Duration::from_secs(secs) {
            let mut text = String::new();
            for log in ["seq.log", "follower.log"] {
                text.push_str(&format!(
                    "--- {log}\n{}\n",
                    std::fs::read_to_string(logs.join(log)).unwrap_or_default()
                ));
            }
            panic!("{what}: not within {secs} s\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_fresh_full_node_reading_only_bitcoin_reaches_the_sequencer_root_at_every_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seq_dir = dir.path().join("seq");
    let fol_dir = dir.path().join("follower");
    let btc_dir = dir.path().join("btc");
    let seq_rpc = format!("127.0.0.1:{}", free_port());
    let btc_rpc = format!("127.0.0.1:{}", free_port());
    let fol_rpc = format!("127.0.0.1:{}", free_port());
    let seq_dir_s = seq_dir.to_string_lossy().into_owned();
    // Bitcoin: a `parabit regtest` process of its own, with a user and password.
    let _btc = spawn(
        &[
            "regtest",
            "--data-dir",
            &btc_dir.to_string_lossy(),
            "--rpc-addr",
            &btc_rpc,
            "--rpc-user",
            "u",
            "--rpc-password",
            "p",
            "--block-interval",
            "0.3",
        ],
        dir.path(),
        "regtest.log",
    );
    let btc_url = format!("http://u:p@{btc_rpc}");
    wait_for(
        "the regtest chain's RPC",
        60,
        || {
            call_auth(&btc_rpc, Some("u:p"), "getblockcount", json!([]))
                .is_some_and(|a| a["result"].is_u64())
        },
        dir.path(),
    );
    // The sequencer: a devnet settling on that chain.
    let _seq = spawn(
        &[
            "devnet",
            "--data-dir",
            &seq_dir_s,
            "--rpc-addr",
            &seq_rpc,
            "--bitcoin-rpc",
            &btc_url,
            "--batch-blocks",
            "4",
            "--batch-interval",
            "0.5",
        ],
        dir.path(),
        "seq.log",
    );
    wait_for(
        "the sequencer's RPC",
        60,
        || call(&seq_rpc, "pb_chainInfo", json!([])).is_some(),
        dir.path(),
    );

    // Load for a while.
    let out = Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(["load", "--rpc", &format!("http://{seq_rpc}")])
        .args(["--tps", "200", "--duration", "4", "--json"])
        .env_remove("PARABIT_RPC")
        .env_remove("PARABIT_LOAD_FUNDER_SECRET")
        .output()
        .expect("run parabit load");
    assert!(
        out.status.success(),
        "load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Wait until every block is in a confirmed batch.
    let mut batches = 0u64;
    let mut head = 0u64;
    wait_for(
        "every sequencer block in a confirmed batch",
        90,
        || {
            let info = result(&seq_rpc, "pb_chainInfo", json!([]));
            head = info["height"].as_u64().unwrap_or(0);
            batches = info["batches"].as_u64().unwrap_or(0);
            if batches == 0 || info["batches_confirmed"] != info["batches"] {
                return false;
            }
            let last = result(&seq_rpc, "pb_getBatch", json!([batches - 1]));
            last["last_height"].as_u64() == Some(head)
        },
        dir.path(),
    );
    assert!(batches >= 3, "only {batches} batches");
    assert!(head >= 5, "only {head} blocks");

    // A fresh full node from the genesis file and the Bitcoin RPC alone.
    let genesis = seq_dir.join("genesis.json");
    let _follower = spawn(
        &[
            "node",
            "--data-dir",
            &fol_dir.to_string_lossy(),
            "--genesis",
            &genesis.to_string_lossy(),
            "--rpc-addr",
            &fol_rpc,
            "--follow-bitcoin",
            "--bitcoin-rpc",
            &btc_url,
        ],
        dir.path(),
        "follower.log",
    );
    // Its batch count may trail its verified height for a moment: wait for both.
    wait_for(
        "the follower to verify the sequencer's head",
        120,
        || {
            call(&fol_rpc, "pb_chainInfo", json!([])).is_some_and(|a| {
                a["result"]["verified_height"].as_u64() == Some(head)
                    && a["result"]["batches"].as_u64() == Some(batches)
            })
        },
        dir.path(),
    );
    let info = result(&fol_rpc, "pb_chainInfo", json!([]));
    assert_eq!(info["batches"], batches, "{info}");
    // The sequencer's state root at every batch, and at every block.
    for i in 0..batches {
        let b = result(&seq_rpc, "pb_getBatch", json!([i]));
        let f = result(&fol_rpc, "pb_getBatch", json!([i]));
        assert_eq!(f["state_root"], b["state_root"], "batch {i}");
        assert_eq!(f["reveal_txid"], b["reveal_txid"], "batch {i}");
        assert_eq!(f["last_height"], b["last_height"], "batch {i}");
        let last = b["last_height"].as_u64().expect("last height");
        let block = result(&fol_rpc, "pb_getBlockByHeight", json!([last]));
        assert_eq!(block["state_root"], b["state_root"], "batch {i}");
    }
    for h in 1..=head {
        let s = result(&seq_rpc, "pb_getBlockByHeight", json!([h]));
        let f = result(&fol_rpc, "pb_getBlockByHeight", json!([h]));
        assert_eq!(f["state_root"], s["state_root"], "block {h}");
        assert_eq!(f["hash"], s["hash"], "block {h}");
    }
    // Read-only.
    let refused = call(&fol_rpc, "pb_sendRawTransaction", json!(["00"])).expect("answer");
    assert_eq!(refused["error"]["code"], 1004, "{refused}");
}

#[test]
fn a_bitcoin_reorg_of_a_batch_is_rolled_back_and_re_derived_by_the_full_node() {
    use parabit_bitcoin::bitcoin::secp256k1::SecretKey;
    use parabit_bitcoin::bitcoin::Network as BtcNetwork;
    use parabit_bitcoin::TaprootWallet;

    let dir = tempfile::tempdir().expect("tempdir");
    let seq_dir = dir.path().join("seq");
    let seq_rpc = format!("127.0.0.1:{}", free_port());
    let btc_rpc = format!("127.0.0.1:{}", free_port());
    let fol_rpc = format!("127.0.0.1:{}", free_port());
    let seq_dir_s = seq_dir.to_string_lossy().into_owned();
    // Bitcoin blocks only when the test mines them.
    let _seq = spawn(
        &[
            "devnet",
            "--data-dir",
            &seq_dir_s,
            "--rpc-addr",
            &seq_rpc,
            "--bitcoin-rpc-addr",
            &btc_rpc,
            "--bitcoin-block-time",
            "100000",
            "--batch-blocks",
            "2",
            "--batch-interval",
            "0.3",
        ],
        dir.path(),
        "seq.log",
    );
    wait_for(
        "the sequencer's RPC",
        60,
        || call(&seq_rpc, "pb_chainInfo", json!([])).is_some(),
        dir.path(),
    );
    let cookie_path = seq_dir.join("bitcoin").join(".cookie");
    let cookie = std::fs::read_to_string(&cookie_path).expect("cookie");
    let btc = |method: &str, params: Json| -> Json {
        match call_auth(&btc_rpc, Some(cookie.trim()), method, params.clone()) {
            Some(a) if a.get("error").is_none_or(Json::is_null) => a["result"].clone(),
            other => panic!("bitcoin {method} {params}: {other:?}"),
        }
    };
    let address = |seed: u8| {
        TaprootWallet::new(SecretKey::from_slice(&[seed; 32]).expect("key"))
            .address(BtcNetwork::Regtest)
            .to_string()
    };
    let (miner_a, miner_b) = (address(11), address(12));
    let _follower = spawn(
        &[
            "node",
            "--data-dir",
            &dir.path().join("follower").to_string_lossy(),
            "--genesis",
            &seq_dir.join("genesis.json").to_string_lossy(),
            "--rpc-addr",
            &fol_rpc,
            "--follow-bitcoin",
            "--bitcoin-rpc",
            &format!("http://{btc_rpc}"),
            "--bitcoin-cookie",
            &cookie_path.to_string_lossy(),
        ],
        dir.path(),
        "follower.log",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(["load", "--rpc", &format!("http://{seq_rpc}")])
        .args(["--tps", "100", "--duration", "2", "--json"])
        .env_remove("PARABIT_RPC")
        .env_remove("PARABIT_LOAD_FUNDER_SECRET")
        .output()
        .expect("run parabit load");
    assert!(out.status.success(), "load failed");

    // Mine until every block is in a confirmed batch that the follower verified.
    let synced = |miner: &str| {
        let mut head = 0;
        let mut batches = 0;
        wait_for(
            "sequencer and follower in step",
            90,
            || {
                btc("generatetoaddress", json!([1, miner]));
                let info = result(&seq_rpc, "pb_chainInfo", json!([]));
                head = info["height"].as_u64().unwrap_or(0);
                batches = info["batches"].as_u64().unwrap_or(0);
                if batches == 0 || info["batches_confirmed"] != info["batches"] {
                    return false;
                }
                let last = result(&seq_rpc, "pb_getBatch", json!([batches - 1]));
                let fol = call(&fol_rpc, "pb_getBatch", json!([batches - 1]))
                    .map(|a| a["result"].clone())
                    .unwrap_or(Json::Null);
                last["last_height"].as_u64() == Some(head)
                    && fol["bitcoin_block"] == last["bitcoin_block"]
                    && call(&fol_rpc, "pb_chainInfo", json!([]))
                        .and_then(|a| a["result"]["verified_height"].as_u64())
                        == Some(head)
            },
            dir.path(),
        );
        (head, batches)
    };
    let (head, batches) = synced(&miner_a);
    assert!(batches >= 2, "only {batches} batches");
    let last = result(&seq_rpc, "pb_getBatch", json!([batches - 1]));
    let old_block = last["bitcoin_block"].as_str().expect("block").to_string();
    let old_height = last["bitcoin_height"].as_u64().expect("height");

    // Reorg out the Bitcoin block holding the last batch (and everything above it); the
    // competing branch pays another address, so its blocks differ.
    btc("invalidateblock", json!([old_block]));
    assert_eq!(btc("getblockcount", json!([])), old_height - 1);
    btc("generatetoaddress", json!([1, miner_b]));
    wait_for(
        "the follower to re-derive the last batch from the new branch",
        90,
        || {
            btc("generatetoaddress", json!([1, miner_b]));
            call(&fol_rpc, "pb_getBatch", json!([batches - 1]))
                .map(|a| a["result"]["bitcoin_block"].clone())
                .is_some_and(|b| b.is_string() && b != json!(old_block))
        },
        dir.path(),
    );
    let (head2, batches2) = synced(&miner_b);
    assert_eq!((head2, batches2), (head, batches));
    let again = result(&fol_rpc, "pb_getBatch", json!([batches - 1]));
    assert_ne!(again["bitcoin_block"], json!(old_block), "{again}");
    for h in 1..=head {
        let s = result(&seq_rpc, "pb_getBlockByHeight", json!([h]));
        let f = result(&fol_rpc, "pb_getBlockByHeight", json!([h]));
        assert_eq!(f["state_root"], s["state_root"], "block {h}");
    }
    let log = std::fs::read_to_string(dir.path().join("follower.log")).unwrap_or_default();
    assert!(log.contains("Bitcoin reorg"), "{log}");
}
