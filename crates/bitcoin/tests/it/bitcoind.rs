//! `BitcoindClient` against a tiny in-test HTTP server that answers in Bitcoin Core's exact
//! formats (JSON-RPC 1.0 replies, HTTP 500 with an error object on RPC errors, 401 with an
//! empty body on bad credentials), backed by the embedded regtest chain for real data.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use parabit_bitcoin::bitcoin::consensus::encode::{deserialize, serialize_hex};
use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::{Address, BlockHash, FeeRate, Network, Transaction, Txid};
use parabit_bitcoin::regtest::TxError;
use parabit_bitcoin::{
    Auth, BitcoinClient, BitcoindClient, BitcoindConfig, ClientError, RegtestChain, RegtestError,
};
use serde_json::{json, Value};

use crate::{fund, pay, rate, wallet};

/// What the fake server answers to one call.
enum Reply {
    Result(Value),
    /// An RPC error, sent as Bitcoin Core 1.0 does: HTTP 500 with the error object.
    Error(i64, &'static str),
    /// A raw HTTP status and body.
    Http(u16, String),
}

type Handler = dyn Fn(&str, &Value) -> Reply + Send + Sync;
/// Every (method, params, authorization header) a fake server received.
type Seen = Arc<Mutex<Vec<(String, Value, Option<String>)>>>;

struct Fake {
    url: String,
    seen: Seen,
}

fn serve(expected_auth: Option<String>, handler: Arc<Handler>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = answer(stream, expected_auth.as_deref(), &*handler, &log);
        }
    });
    Fake { url, seen }
}

fn answer(
    stream: TcpStream,
    expected_auth: Option<&str>,
    handler: &Handler,
    log: &Seen,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    assert!(
        request_line.starts_with("POST / HTTP/1.1"),
        "{request_line}"
    );
    let mut length = 0usize;
    let mut auth = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => auth = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let request: Value = serde_json::from_slice(&body).unwrap();
    let method = request["method"].as_str().unwrap().to_string();
    let params = request["params"].clone();
    assert_eq!(request["jsonrpc"], "1.0");
    log.lock()
        .unwrap()
        .push((method.clone(), params.clone(), auth.clone()));
    let (status, text) = if expected_auth.is_some() && auth.as_deref() != expected_auth {
        (401, String::new())
    } else {
        match handler(&method, &params) {
            Reply::Result(v) => (200, json!({"result": v, "error": null, "id": request["id"]}).to_string()),
            Reply::Error(code, message) => (
                500,
                json!({"result": null, "error": {"code": code, "message": message}, "id": request["id"]})
                    .to_string(),
            ),
            Reply::Http(status, body) => (status, body),
        }
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Other",
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}\n",
        text.len() + 1
    )?;
    out.flush()
}

/// Core's `sendrawtransaction` error for a refused transaction.
fn core_reject(e: &TxError) -> (i64, String) {
    match e {
        TxError::MissingOrSpent(_) => (-25, "bad-txns-inputs-missingorspent".into()),
        TxError::AlreadyKnown => (-27, "Transaction already in block chain".into()),
        other => (-26, other.to_string()),
    }
}

/// A fake bitcoind over `chain`, with Core's result formats.
fn bitcoind_over(chain: Arc<RegtestChain>) -> Arc<Handler> {
    Arc::new(move |method: &str, params: &Value| -> Reply {
        match method {
            "getblockchaininfo" => {
                let (height, hash) = chain.tip();
                let tip = chain.block(&hash).unwrap();
                Reply::Result(json!({
                    "chain": "regtest",
                    "blocks": height,
                    "headers": height,
                    "bestblockhash": hash.to_string(),
                    "difficulty": 4.656542373906925e-10,
                    "time": tip.header.time,
                    "mediantime": tip.header.time,
                    "verificationprogress": 1,
                    "initialblockdownload": false,
                    "chainwork": "00000000000000000000000000000000000000000000000000000000000000ca",
                    "size_on_disk": 30000,
                    "pruned": false,
                    "warnings": ""
                }))
            }
            "getblockhash" => match params[0].as_u64().and_then(|h| chain.block_hash(h as u32)) {
                Some(h) => Reply::Result(json!(h.to_string())),
                None => Reply::Error(-8, "Block height out of range"),
            },
            "getblock" => {
                assert_eq!(params[1], json!(0), "raw blocks only");
                let hash: BlockHash = params[0].as_str().unwrap().parse().unwrap();
                match chain.block(&hash) {
                    Some(b) => Reply::Result(json!(serialize_hex(&b))),
                    None => Reply::Error(-5, "Block not found"),
                }
            }
            "sendrawtransaction" => {
                let raw = hex::decode(params[0].as_str().unwrap()).unwrap();
                let tx: Transaction = match deserialize(&raw) {
                    Ok(tx) => tx,
                    Err(_) => return Reply::Error(-22, "TX decode failed"),
                };
                match chain.send_raw_transaction(&tx) {
                    Ok(id) => Reply::Result(json!(id.to_string())),
                    Err(RegtestError::Tx(e)) => {
                        let (code, msg) = core_reject(&e);
                        Reply::Http(
                            500,
                            json!({"result": null, "error": {"code": code, "message": msg}, "id": 1}).to_string(),
                        )
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            "estimatesmartfee" => Reply::Result(json!({"feerate": 0.00002345, "blocks": 2})),
            "listunspent" => {
                assert_eq!(params[0], json!(0), "minconf 0");
                let addresses: Vec<Address> = params[2]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        a.as_str()
                            .unwrap()
                            .parse::<Address<_>>()
                            .unwrap()
                            .assume_checked()
                    })
                    .collect();
                let scripts: Vec<_> = addresses.iter().map(|a| a.script_pubkey()).collect();
                let list: Vec<Value> = chain
                    .list_unspent(&scripts)
                    .into_iter()
                    // Core's wallet never lists immature coinbase outputs.
                    .filter(|u| u.is_spendable())
                    .map(|u| {
                        let address =
                            Address::from_script(&u.txout.script_pubkey, Network::Regtest).unwrap();
                        json!({
                            "txid": u.outpoint.txid.to_string(),
                            "vout": u.outpoint.vout,
                            "address": address.to_string(),
                            "label": "",
                            "scriptPubKey": hex::encode(u.txout.script_pubkey.as_bytes()),
                            "amount": u.txout.value.to_btc(),
                            "confirmations": u.confirmations,
                            "spendable": true,
                            "solvable": true,
                            "desc": "rawtr(...)#00000000",
                            "parent_descs": [],
                            "safe": true
                        })
                    })
                    .collect();
                Reply::Result(json!(list))
            }
            "getrawtransaction" => {
                let id: Txid = params[0].as_str().unwrap().parse().unwrap();
                match chain.transaction(&id) {
                    Some((tx, _)) => Reply::Result(json!(serialize_hex(&tx))),
                    None => Reply::Error(
                        -5,
                        "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
                    ),
                }
            }
            other => panic!("unexpected method {other}"),
        }
    })
}

fn basic(user_pass: &str) -> String {
    // Expected header, computed independently of the client's encoder for these fixed inputs.
    match user_pass {
        "alice:secret" => "Basic YWxpY2U6c2VjcmV0".to_string(),
        "__cookie__:0123abcd" => "Basic X19jb29raWVfXzowMTIzYWJjZA==".to_string(),
        "__cookie__:ffff" => "Basic X19jb29raWVfXzpmZmZm".to_string(),
        other => panic!("no fixture for {other}"),
    }
}

#[test]
fn client_reads_and_writes_through_core_formats() {
    let chain = Arc::new(RegtestChain::in_memory());
    let alice = wallet(1);
    let bob = wallet(2);
    fund(&chain, &alice);
    let fake = serve(
        Some(basic("alice:secret")),
        bitcoind_over(Arc::clone(&chain)),
    );
    let alice_addr = alice.address(Network::Regtest).to_string();
    let mut config = BitcoindConfig::new(fake.url.replace("http://", "http://alice:secret@"));
    config.watch_addresses = vec![alice_addr.clone()];
    let client = BitcoindClient::new(config).unwrap();
    assert_eq!(client.url(), fake.url);

    assert_eq!(client.tip().unwrap(), chain.tip());
    let h50 = client.block_hash(50).unwrap();
    assert_eq!(Some(h50), chain.block_hash(50));
    assert_eq!(client.block(&h50).unwrap(), chain.block(&h50).unwrap());
    assert!(
        matches!(client.block_hash(500), Err(ClientError::NotFound(m)) if m == "Block height out of range")
    );
    assert!(matches!(
        client.block(&BlockHash::all_zeros()),
        Err(ClientError::NotFound(_))
    ));

    // 0.00002345 BTC/kvB = 2345 sat/kvB = 586.25 sat/kwu, rounded up.
    assert_eq!(
        client.estimate_fee_rate().unwrap(),
        FeeRate::from_sat_per_kwu(587)
    );

    let coins = client.list_unspent().unwrap();
    let expected: Vec<_> = chain
        .list_unspent(&[alice.script_pubkey().clone()])
        .into_iter()
        .filter(|u| u.is_spendable())
        .map(|u| (u.outpoint, u.txout, u.confirmations))
        .collect();
    assert_eq!(expected.len(), 2);
    let got: Vec<_> = coins
        .iter()
        .map(|u| (u.outpoint, u.txout.clone(), u.confirmations))
        .collect();
    assert_eq!(got, expected);
    assert!(coins.iter().all(|u| !u.coinbase && u.is_spendable()));
    let f = alice
        .build_payment(&coins, pay(&bob, 12_345_678), rate(2))
        .unwrap();
    let txid = client.send_raw_transaction(&f.tx).unwrap();
    assert!(chain.in_mempool(&txid));
    assert_eq!(client.get_raw_transaction(&txid).unwrap(), f.tx);
    assert!(matches!(
        client.get_raw_transaction(&Txid::all_zeros()),
        Err(ClientError::NotFound(_))
    ));

    // A double spend: refused, permanent, Core's code and message.
    let rival = alice
        .fund(&f.spent, &[], pay(&alice, 1_000_000), rate(2))
        .unwrap();
    match client.send_raw_transaction(&rival.tx) {
        Err(
            e @ ClientError::Rejected {
                code: Some(-26), ..
            },
        ) => {
            assert!(!e.is_transient());
            assert!(e.to_string().contains("insufficient fee"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    chain.mine(1, alice.script_pubkey()).unwrap();
    match client.send_raw_transaction(&f.tx) {
        Err(ClientError::Rejected {
            code: Some(-27), ..
        }) => {}
        other => panic!("{other:?}"),
    }

    // What went over the wire: documented methods and parameter shapes, with Basic auth.
    let seen = fake.seen.lock().unwrap();
    let methods: Vec<&str> = seen.iter().map(|(m, _, _)| m.as_str()).collect();
    assert_eq!(
        &methods[..4],
        [
            "getblockchaininfo",
            "getblockhash",
            "getblock",
            "getblockhash"
        ]
    );
    let (_, getblock, _) = &seen[2];
    assert_eq!(getblock, &json!([h50.to_string(), 0]));
    let (_, listunspent, _) = seen.iter().find(|(m, _, _)| m == "listunspent").unwrap();
    assert_eq!(listunspent, &json!([0, 9_999_999, [alice_addr]]));
    let (_, estimate, _) = seen
        .iter()
        .find(|(m, _, _)| m == "estimatesmartfee")
        .unwrap();
    assert_eq!(estimate, &json!([6]));
    assert!(seen
        .iter()
        .all(|(_, _, a)| a.as_deref() == Some("Basic YWxpY2U6c2VjcmV0")));
}

#[test]
fn credentials_password_and_cookie() {
    let chain = Arc::new(RegtestChain::in_memory());
    let fake = serve(
        Some(basic("alice:secret")),
        bitcoind_over(Arc::clone(&chain)),
    );
    let mut config = BitcoindConfig::new(fake.url.clone());
    config.auth = Auth::UserPass {
        user: "alice".into(),
        password: "wrong".into(),
    };
    let client = BitcoindClient::new(config.clone()).unwrap();
    match client.tip() {
        Err(e @ ClientError::Unauthorized(_)) => assert!(!e.is_transient()),
        other => panic!("{other:?}"),
    }
    config.auth = Auth::UserPass {
        user: "alice".into(),
        password: "secret".into(),
    };
    assert_eq!(BitcoindClient::new(config).unwrap().tip().unwrap().0, 0);

    // The cookie file is read at each call: a rewritten cookie (bitcoind restarted) is picked up.
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join(".cookie");
    std::fs::write(&cookie, "__cookie__:0123abcd").unwrap();
    let fake = serve(
        Some(basic("__cookie__:0123abcd")),
        bitcoind_over(Arc::clone(&chain)),
    );
    let mut config = BitcoindConfig::new(fake.url.clone());
    config.auth = Auth::CookieFile(cookie.clone());
    let client = BitcoindClient::new(config).unwrap();
    assert_eq!(client.tip().unwrap(), chain.tip());
    std::fs::write(&cookie, "__cookie__:ffff").unwrap();
    assert!(matches!(client.tip(), Err(ClientError::Unauthorized(_))));
    std::fs::write(&cookie, "__cookie__:0123abcd\n").unwrap();
    assert!(client.tip().is_ok());
    std::fs::remove_file(&cookie).unwrap();
    // No cookie: bitcoind is down (it deletes the cookie when it stops), a transient error.
    match client.tip() {
        Err(e @ ClientError::Unavailable(_)) => {
            assert!(e.is_transient() && e.to_string().contains(".cookie"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn transient_and_malformed_answers() {
    // Nothing listening: transient.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client =
        BitcoindClient::new(BitcoindConfig::new(format!("http://127.0.0.1:{port}"))).unwrap();
    match client.tip() {
        Err(e @ ClientError::Unavailable(_)) => assert!(e.is_transient()),
        other => panic!("{other:?}"),
    }

    let fake = serve(
        None,
        Arc::new(|method: &str, _params: &Value| {
            match method {
            "getblockchaininfo" => Reply::Error(-28, "Loading block index…"),
            "getblockhash" => Reply::Http(503, "Work queue depth exceeded".into()),
            "getblock" => Reply::Result(json!("00ff")),
            "estimatesmartfee" => {
                Reply::Result(json!({"errors": ["Insufficient data or no feerate found"], "blocks": 0}))
            }
            "listunspent" => Reply::Result(json!([{"txid": "zz", "vout": 0}])),
            "getrawtransaction" => Reply::Http(200, "<html>proxy error</html>".into()),
            // JSON-RPC 2.0 style: HTTP 200 with an error member.
            "sendrawtransaction" => Reply::Http(
                200,
                json!({"jsonrpc": "2.0", "error": {"code": -26, "message": "min relay fee not met"}, "id": 1})
                    .to_string(),
            ),
            _ => Reply::Error(-32601, "Method not found"),
        }
        }),
    );
    let mut config = BitcoindConfig::new(fake.url.clone());
    config.fallback_fee_rate = FeeRate::from_sat_per_vb_u32(3);
    let client = BitcoindClient::new(config).unwrap();
    assert!(matches!(client.tip(), Err(ClientError::WarmingUp(_))));
    assert!(client.tip().unwrap_err().is_transient());
    assert!(matches!(
        client.block_hash(1),
        Err(ClientError::Unavailable(_))
    ));
    assert!(matches!(
        client.block(&BlockHash::all_zeros()),
        Err(ClientError::InvalidResponse(_))
    ));
    assert_eq!(
        client.estimate_fee_rate().unwrap(),
        FeeRate::from_sat_per_vb_u32(3)
    );
    assert!(matches!(
        client.list_unspent(),
        Err(ClientError::InvalidResponse(_))
    ));
    assert!(matches!(
        client.get_raw_transaction(&Txid::all_zeros()),
        Err(ClientError::InvalidResponse(_))
    ));
    let tx = parabit_bitcoin::bitcoin::blockdata::constants::genesis_block(Network::Regtest).txdata
        [0]
    .clone();
    match client.send_raw_transaction(&tx) {
        Err(ClientError::Rejected {
            code: Some(-26),
            reason,
        }) => assert_eq!(reason, "min relay fee not met"),
        other => panic!("{other:?}"),
    }
}
