//! `parabit tx` and `parabit query` as the real binary against a small fake node: an
//! in-process JSON-RPC server that speaks the methods of `docs/RPC.md` the CLI uses, decodes
//! and checks each submitted transaction (signature, chain id, nonce), applies transfers to
//! its balances, and answers receipts after one empty poll. It checks what the CLI signs and
//! sends, and how it reports success, failure and timeouts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use jsonrpsee::server::{Server, ServerHandle};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned};
use jsonrpsee::RpcModule;
use parabit_modules::{BankMsg, Call, DexMsg, SignedTx};
use parabit_primitives::{Address, AssetId, Network, SigningKey};
use serde_json::{json, Value as Json};

use super::wallet::{fails, json as parse_json, ok, run_env};

const CHAIN_ID: u64 = 77;
const PW: &str = "pw";
/// A transfer of exactly this many base units never commits.
const NEVER: u128 = 13;

#[derive(Default)]
struct State {
    balances: BTreeMap<(Address, u64), u128>,
    nonces: BTreeMap<Address, u64>,
    txs: Vec<SignedTx>,
    receipts: BTreeMap<String, Json>,
    polls: BTreeMap<String, u32>,
}

type Shared = Arc<Mutex<State>>;

fn invalid(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObject::owned(-32602, msg.into(), None::<()>)
}

fn addr_param(v: &Json) -> Result<Address, ErrorObjectOwned> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("address: bad"))
}

fn assets() -> Json {
    json!([
        {"asset": 0, "symbol": "BTC", "decimals": 8, "creator": "", "supply": "2100000000000000"},
        {"asset": 1, "symbol": "USDC", "decimals": 6, "creator": "", "supply": "1000000000000"},
    ])
}

fn module(state: Shared) -> RpcModule<Shared> {
    let mut m = RpcModule::new(state);
    let reg = |m: &mut RpcModule<Shared>,
               name: &'static str,
               f: fn(&Json, &Shared) -> Result<Json, ErrorObjectOwned>| {
        let r = m.register_method(name, move |p, s, _| -> Result<Json, ErrorObjectOwned> {
            let params: Json = p.parse().unwrap_or(Json::Array(vec![]));
            f(&params, s)
        });
        assert!(r.is_ok());
    };
    reg(&mut m, "pb_chainInfo", |_, _| {
        Ok(
            json!({"chain_id": CHAIN_ID, "network": "regtest", "height": 10,
            "block_hash": "00".repeat(32), "state_root": "11".repeat(32),
            "timestamp_ms": 0, "mempool_txs": 0, "mempool_bytes": 0}),
        )
    });
    reg(&mut m, "pb_listAssets", |_, _| Ok(assets()));
    reg(&mut m, "pb_getAsset", |p, _| {
        let id = p[0].as_u64().ok_or_else(|| invalid("asset"))?;
        Ok(assets()
            .as_array()
            .and_then(|l| l.iter().find(|a| a["asset"] == id).cloned())
            .unwrap_or(Json::Null))
    });
    reg(&mut m, "pb_getNonce", |p, s| {
        let who = addr_param(&p[0])?;
        let st = s.lock().map_err(|_| invalid("poisoned"))?;
        Ok(json!(st.nonces.get(&who).copied().unwrap_or(0)))
    });
    reg(&mut m, "pb_getBalance", |p, s| {
        let who = addr_param(&p[0])?;
        let asset = p[1].as_u64().unwrap_or(0);
        let st = s.lock().map_err(|_| invalid("poisoned"))?;
        let (sym, dec) = if asset == 0 { ("BTC", 8) } else { ("USDC", 6) };
        Ok(
            json!({"address": p[0], "asset": asset, "symbol": sym, "decimals": dec,
            "amount": st.balances.get(&(who, asset)).copied().unwrap_or(0).to_string()}),
        )
    });
    reg(&mut m, "pb_quoteSwap", |p, _| {
        let q = &p[0];
        let amount_in: u128 = q["amount_in"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("quote.amount_in"))?;
        Ok(json!({"amount_out": (amount_in * 600).to_string(), "path": q["path"]}))
    });
    reg(&mut m, "pb_sendRawTransaction", |p, s| {
        let raw = hex::decode(p[0].as_str().unwrap_or("")).map_err(|_| invalid("tx: hex"))?;
        let tx = SignedTx::decode(&raw)
            .map_err(|e| ErrorObject::owned(1002, e.to_string(), None::<()>))?;
        tx.verify()
            .map_err(|e| ErrorObject::owned(1001, e.to_string(), None::<()>))?;
        if tx.tx.chain_id != CHAIN_ID {
            return Err(ErrorObject::owned(1001, "wrong chain id", None::<()>));
        }
        let mut st = s.lock().map_err(|_| invalid("poisoned"))?;
        let sender = tx.tx.sender;
        let expected = st.nonces.get(&sender).copied().unwrap_or(0);
        if tx.tx.nonce != expected {
            return Err(ErrorObject::owned(
                1001,
                format!("nonce mismatch: {} != {expected}", tx.tx.nonce),
                None::<()>,
            ));
        }
        st.nonces.insert(sender, expected + 1);
        let id = tx.id().to_string();
        let mut status = ("success", Json::Null);
        if let Call::Bank(BankMsg::Transfer { to, asset, amount }) = &tx.tx.call {
            if *amount == NEVER {
                st.txs.push(tx);
                return Ok(json!(id));
            }
            let from_bal = st.balances.get(&(sender, asset.0)).copied().unwrap_or(0);
            if from_bal < *amount {
                status = ("failed", json!("insufficient balance"));
            } else {
                st.balances.insert((sender, asset.0), from_bal - amount);
                *st.balances.entry((*to, asset.0)).or_default() += amount;
            }
        }
        let receipt = json!({"id": id, "height": 11, "index": 0, "block_hash": "22".repeat(32),
            "status": status.0, "error": status.1, "fee_paid": tx.tx.fee.to_string()});
        st.receipts.insert(id.clone(), receipt);
        st.txs.push(tx);
        Ok(json!(id))
    });
    reg(&mut m, "pb_getTransactionReceipt", |p, s| {
        let id = p[0].as_str().unwrap_or("").to_string();
        let mut st = s.lock().map_err(|_| invalid("poisoned"))?;
        // The first poll of each id finds nothing, as before a block commits.
        let polls = st.polls.entry(id.clone()).or_default();
        *polls += 1;
        if *polls == 1 {
            return Ok(Json::Null);
        }
        Ok(st.receipts.get(&id).cloned().unwrap_or(Json::Null))
    });
    reg(&mut m, "pb_getTransaction", |_, _| Ok(Json::Null));
    m
}

struct FakeNode {
    state: Shared,
    url: String,
    _handle: ServerHandle,
    _rt: tokio::runtime::Runtime,
}

impl FakeNode {
    fn start(funded: &[(Address, u64, u128)]) -> FakeNode {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => panic!("runtime: {e}"),
        };
        let state: Shared = Arc::default();
        if let Ok(mut st) = state.lock() {
            for (a, asset, v) in funded {
                st.balances.insert((*a, *asset), *v);
            }
        }
        let module = module(state.clone());
        let (addr, handle): (SocketAddr, ServerHandle) = rt.block_on(async {
            let server = match Server::builder().build("127.0.0.1:0").await {
                Ok(s) => s,
                Err(e) => panic!("server: {e}"),
            };
            let addr = match server.local_addr() {
                Ok(a) => a,
                Err(e) => panic!("addr: {e}"),
            };
            (addr, server.start(module))
        });
        FakeNode {
            state,
            url: format!("http://{addr}"),
            _handle: handle,
            _rt: rt,
        }
    }

    fn txs(&self) -> Vec<SignedTx> {
        self.state.lock().map(|s| s.txs.clone()).unwrap_or_default()
    }
}

/// A keystore holding `alice` (the given key) and `bob`, and their addresses.
fn keystore(dir: &std::path::Path) -> (String, SigningKey, Address) {
    let ks = dir.join("k.json").display().to_string();
    let alice = SigningKey::from_seed(b"cli tx test alice");
    let bob = SigningKey::from_seed(b"cli tx test bob");
    for (name, key) in [("alice", &alice), ("bob", &bob)] {
        ok(&run_env(
            &[
                "wallet",
                "import",
                name,
                "--keystore",
                &ks,
                "--insecure-fast-kdf",
            ],
            &[("PARABIT_PASSWORD", PW)],
            &hex::encode(key.secret_bytes()),
        ));
    }
    (ks, alice, bob.address())
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

#[test]
fn transfer_signs_sends_waits_and_query_shows_it() {
    let dir = tempdir();
    let (ks, alice, bob) = keystore(dir.path());
    let node = FakeNode::start(&[(alice.address(), 0, 100_000_000)]);
    let env = [("PARABIT_PASSWORD", PW), ("PARABIT_RPC", node.url.as_str())];
    let out = run_env(
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "0.5 BTC",
            "--keystore",
            &ks,
            "--json",
        ],
        &env,
        "",
    );
    let doc = parse_json(&ok(&out));
    assert_eq!(doc["receipt"]["status"], "success");
    assert_eq!(doc["nonce"], 0);
    assert_eq!(doc["fee"], "1000");
    let txs = node.txs();
    assert_eq!(txs.len(), 1);
    let tx = &txs[0];
    assert_eq!(doc["id"], tx.id().to_string());
    assert_eq!(tx.tx.sender, alice.address());
    assert_eq!(tx.tx.chain_id, CHAIN_ID);
    assert_eq!(tx.tx.fee, 1000);
    assert_eq!(
        tx.tx.call,
        Call::Bank(BankMsg::Transfer {
            to: bob,
            asset: AssetId(0),
            amount: 50_000_000
        })
    );

    // The next transaction takes the next nonce; a readable run names the outcome.
    let bob_text = bob.to_bech32(Network::Regtest);
    let out = run_env(
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            &bob_text,
            "--amount",
            "0.25",
            "--asset",
            "BTC",
            "--fee",
            "250sat",
            "--keystore",
            &ks,
        ],
        &env,
        "",
    );
    let stdout = ok(&out);
    assert!(
        stdout.contains("committed in block 11") && stdout.contains("success"),
        "{stdout}"
    );
    let txs = node.txs();
    assert_eq!((txs[1].tx.nonce, txs[1].tx.fee), (1, 250));

    let bal = parse_json(&ok(&run_env(
        &["query", "balance", "bob", "--keystore", &ks, "--json"],
        &env,
        "",
    )));
    let rows = bal["balances"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{bal}");
    assert_eq!(rows[0]["amount"], "75000000");
    assert_eq!(rows[0]["display"], "0.75 BTC");
    let readable = ok(&run_env(
        &["query", "balance", &bob_text, "--asset", "USDC"],
        &env,
        "",
    ));
    assert_eq!(readable.trim(), "0 USDC");
    let nonce = parse_json(&ok(&run_env(
        &["query", "nonce", "alice", "--keystore", &ks, "--json"],
        &env,
        "",
    )));
    assert_eq!(nonce["nonce"], 2);
}

#[test]
fn failed_receipts_exit_non_zero_with_the_reason() {
    let dir = tempdir();
    let (ks, _alice, _bob) = keystore(dir.path());
    let node = FakeNode::start(&[]);
    let env = [("PARABIT_PASSWORD", PW), ("PARABIT_RPC", node.url.as_str())];
    let out = run_env(
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "1 BTC",
            "--keystore",
            &ks,
            "--json",
        ],
        &env,
        "",
    );
    let err = fails(&out);
    assert!(
        err.contains("failed") && err.contains("insufficient balance"),
        "{err}"
    );
    // The JSON document is still printed, with the receipt.
    let doc = parse_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["receipt"]["status"], "failed");
}

#[test]
fn no_wait_dry_run_and_timeouts() {
    let dir = tempdir();
    let (ks, alice, _bob) = keystore(dir.path());
    let node = FakeNode::start(&[(alice.address(), 0, 1_000)]);
    let env = [("PARABIT_PASSWORD", PW), ("PARABIT_RPC", node.url.as_str())];

    // --dry-run signs but sends nothing.
    let doc = parse_json(&ok(&run_env(
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "5sat",
            "--keystore",
            &ks,
            "--dry-run",
            "--json",
        ],
        &env,
        "",
    )));
    let raw = hex::decode(doc["raw"].as_str().unwrap_or("")).unwrap_or_default();
    let decoded = SignedTx::decode(&raw).map_err(|e| e.to_string());
    assert!(
        decoded.as_ref().is_ok_and(|t| t.verify().is_ok()),
        "{decoded:?}"
    );
    assert!(node.txs().is_empty());

    // --no-wait returns the id at once, without a receipt.
    let doc = parse_json(&ok(&run_env(
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "5sat",
            "--keystore",
            &ks,
            "--no-wait",
            "--json",
        ],
        &env,
        "",
    )));
    assert_eq!(doc["receipt"], Json::Null);
    assert_eq!(node.txs().len(), 1);

    // A transaction that never commits: a clear timeout, non-zero exit.
    let err = fails(&run_env(
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            &format!("{NEVER}sat"),
            "--keystore",
            &ks,
            "--wait-timeout",
            "1",
        ],
        &env,
        "",
    ));
    assert!(err.contains("not committed within 1s"), "{err}");
    // A wrong password: nothing is sent.
    let err = fails(&run_env(
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "5sat",
            "--keystore",
            &ks,
        ],
        &[
            ("PARABIT_PASSWORD", "wrong"),
            ("PARABIT_RPC", node.url.as_str()),
        ],
        "",
    ));
    assert!(err.contains("wrong password"), "{err}");
    // Bad input is refused before any password or RPC submission.
    for (args, why) in [
        (vec!["--amount", "1.123456789 BTC"], "decimal places"),
        (vec!["--amount", "1 DOGE"], "DOGE"),
        (vec!["--amount", "1"], "no unit"),
    ] {
        let mut a = vec![
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--keystore",
            &ks,
        ];
        a.extend(args);
        let err = fails(&run_env(&a, &[("PARABIT_RPC", node.url.as_str())], ""));
        assert!(err.contains(why) && !err.contains("password"), "{err}");
    }
    assert_eq!(node.txs().len(), 2);
}

#[test]
fn swap_min_out_comes_from_the_quote() {
    let dir = tempdir();
    let (ks, _alice, _bob) = keystore(dir.path());
    let node = FakeNode::start(&[]);
    let env = [("PARABIT_PASSWORD", PW), ("PARABIT_RPC", node.url.as_str())];
    ok(&run_env(
        &[
            "tx",
            "swap",
            "--from",
            "alice",
            "--amount-in",
            "0.01 BTC",
            "--out",
            "USDC",
            "--slippage-bps",
            "100",
            "--keystore",
            &ks,
        ],
        &env,
        "",
    ));
    let txs = node.txs();
    assert_eq!(txs.len(), 1);
    // Quote: 1_000_000 sat × 600 = 600_000_000; less 1%; deadline = height 10 + 100.
    assert_eq!(
        txs[0].tx.call,
        Call::Dex(DexMsg::SwapExactIn {
            path: vec![AssetId(0), AssetId(1)],
            amount_in: 1_000_000,
            min_out: 594_000_000,
            deadline: 110
        })
    );
    let q = parse_json(&ok(&run_env(
        &[
            "query",
            "quote",
            "--amount-in",
            "0.01 BTC",
            "--out",
            "usdc",
            "--json",
        ],
        &env,
        "",
    )));
    assert_eq!(q["amount_out"], "600000000");
}
