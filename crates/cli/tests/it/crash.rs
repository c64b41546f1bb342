//! Crash consistency of the node: `kill -9` during load, 20 times in a row. After every
//! restart each block that was acknowledged as committed is still there, unchanged; at the end
//! the database passes its integrity check and a replay from genesis reaches its state root.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parabit_modules::{BankMsg, Call, SignedTx, Tx};
use parabit_node::devnet::{dev_key, DEV_ACCOUNTS};
use parabit_primitives::{AssetId, Network};
use serde_json::{json, Value as Json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One JSON-RPC call over a fresh HTTP/1.1 connection.
pub fn rpc(port: u16, method: &str, params: Json) -> Result<Json, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let json_start = response.find("\r\n\r\n").ok_or("no HTTP body")? + 4;
    let v: Json = serde_json::from_str(&response[json_start..]).map_err(|e| e.to_string())?;
    match v.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(v.to_string()),
    }
}

fn start(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(["devnet", "--data-dir"])
        .arg(dir)
        .args([
            "--rpc-addr",
            &format!("127.0.0.1:{port}"),
            "--block-time",
            "40",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the devnet")
}

fn wait_ready(port: u16, child: &mut Child) -> Json {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(info) = rpc(port, "pb_chainInfo", json!([])) {
            return info;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the devnet exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the devnet did not answer in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A deterministic pseudo-random stream (no need for a crate).
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

#[test]
fn kill_9_during_load_loses_no_acknowledged_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<_> = DEV_ACCOUNTS.iter().map(|n| dev_key(n)).collect();
    let mut seed = 0x5eed_u64;
    // (height, hash) of the newest block acknowledged before each kill.
    let mut acknowledged: Option<(u64, Json)> = None;
    let mut chain_id = 0;
    let mut sent = 0usize;
    for round in 0..20 {
        let port = free_port();
        let mut child = start(dir.path(), port);
        let info = wait_ready(port, &mut child);
        chain_id = info["chain_id"].as_u64().expect("chain id");
        if let Some((h, hash)) = &acknowledged {
            let height = info["height"].as_u64().expect("height");
            assert!(
                height >= *h,
                "round {round}: restarted at {height}, but {h} was acknowledged"
            );
            let block = rpc(port, "pb_getBlockByHeight", json!([h])).expect("block");
            assert_eq!(
                &block["hash"], hash,
                "round {round}: block {h} changed after a crash"
            );
        }
        // Load: transfers from every dev account, sent in batches until the kill.
        let kill_after = Duration::from_millis(100 + next(&mut seed) % 700);
        let started = Instant::now();
        let mut nonces: Vec<u64> = keys
            .iter()
            .map(|k| {
                rpc(
                    port,
                    "pb_getNonce",
                    json!([k.address().to_bech32(Network::Regtest)]),
                )
                .ok()
                .and_then(|n| n.as_u64())
                .expect("nonce")
            })
            .collect();
        while started.elapsed() < kill_after {
            let mut batch = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                for _ in 0..10 {
                    let to = keys[(i + 1) % keys.len()].address();
                    let tx = Tx {
                        chain_id,
                        sender: k.address(),
                        nonce: nonces[i],
                        fee: 1,
                        call: Call::Bank(BankMsg::Transfer {
                            to,
                            asset: AssetId::BTC,
                            amount: u128::from(1 + next(&mut seed) % 1000),
                        }),
                    };
                    nonces[i] += 1;
                    let signed: SignedTx = k.sign(tx);
                    batch.push(hex::encode(signed.encode()));
                }
            }
            sent += batch.len();
            // A send may race the kill of a previous round's leftovers; errors are fine here.
            let _ = rpc(port, "pb_sendRawTransactions", json!([batch]));
            if let Ok(info) = rpc(port, "pb_chainInfo", json!([])) {
                let h = info["height"].as_u64().expect("height");
                if h > 0 {
                    acknowledged = Some((h, info["block_hash"].clone()));
                }
            }
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }
    let (last, _) = acknowledged.expect("some block was committed");
    // Blocks were being produced throughout, so kills landed among commits.
    assert!(
        last >= 20,
        "only {last} blocks in 20 rounds of load ({sent} transactions sent)"
    );
    // The database is intact and a replay from genesis reaches its root.
    let out = Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(["verify", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run verify");
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Json = serde_json::from_slice(&out.stdout).expect("verify json");
    assert!(report["height"].as_u64().expect("height") >= last);
    assert_eq!(report["ok"], true);
    let _ = chain_id;
}
