//! The JSON-RPC server over HTTP and WebSocket: every stable method, errors with codes, and
//! subscriptions.

use jsonrpsee::core::client::{ClientT, SubscriptionClientT};
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use parabit_node::rpc::{self, RpcContext};
use parabit_primitives::Network;
use serde_json::{json, Value as Json};

use crate::chain::{open, transfer};

/// The JSON-RPC error code and message of a failed call.
fn code(err: &jsonrpsee::core::ClientError) -> (i32, String) {
    match err {
        jsonrpsee::core::ClientError::Call(e) => (e.code(), e.message().to_string()),
        other => panic!("not a call error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stable_methods_answer_and_refuse_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, g) = open(dir.path(), 2);
    let ctx = RpcContext {
        node: node.clone(),
        network: Network::Regtest,
    };
    let (addr, server) = rpc::start(ctx, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start rpc");
    let http = HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .expect("client");
    let ws = WsClientBuilder::default()
        .build(format!("ws://{addr}"))
        .await
        .expect("ws client");

    let info: Json = http
        .request("pb_chainInfo", rpc_params![])
        .await
        .expect("chainInfo");
    assert_eq!(info["height"], 0);
    assert_eq!(info["chain_id"], node.chain().chain_id());
    assert_eq!(info["state_root"].as_str().map(str::len), Some(64));

    let alice = &g.accounts[0].key;
    let bob = g.accounts[1].key.address();
    let bob_s = bob.to_bech32(Network::Regtest);
    let nonce: u64 = http
        .request(
            "pb_getNonce",
            rpc_params![alice.address().to_bech32(Network::Regtest)],
        )
        .await
        .expect("nonce");
    assert_eq!(nonce, 0);

    let mut heads = ws
        .subscribe::<Json, _>(
            "pb_subscribeNewHeads",
            rpc_params![],
            "pb_unsubscribeNewHeads",
        )
        .await
        .expect("subscribe heads");
    let mut bob_txs = ws
        .subscribe::<Json, _>(
            "pb_subscribeAccount",
            rpc_params![bob_s.clone()],
            "pb_unsubscribeAccount",
        )
        .await
        .expect("subscribe account");

    let tx = transfer(alice, 0, bob, 5_000, node.chain().chain_id());
    let id: String = http
        .request(
            "pb_sendRawTransaction",
            rpc_params![hex::encode(tx.encode())],
        )
        .await
        .expect("send");
    assert_eq!(id, tx.id().to_string());
    // The same again: a duplicate, refused with the mempool's code and reason.
    let err = http
        .request::<String, _>(
            "pb_sendRawTransaction",
            rpc_params![hex::encode(tx.encode())],
        )
        .await
        .expect_err("duplicate");
    assert_eq!(code(&err).0, 1001, "{err}");
    assert!(code(&err).1.contains("already"), "{err}");
    // Garbage bytes: undecodable.
    let err = http
        .request::<String, _>("pb_sendRawTransaction", rpc_params!["00ff"])
        .await
        .expect_err("garbage");
    assert_eq!(code(&err).0, 1002, "{err}");
    let pending: Json = http
        .request("pb_getTransaction", rpc_params![id.clone()])
        .await
        .expect("tx");
    assert_eq!(pending["status"], "pending");
    let pending_nonce: u64 = http
        .request(
            "pb_getNonce",
            rpc_params![alice.address().to_bech32(Network::Regtest), "pending"],
        )
        .await
        .expect("pending nonce");
    assert_eq!(pending_nonce, 1);
    let latest_nonce: u64 = http
        .request(
            "pb_getNonce",
            rpc_params![alice.address().to_bech32(Network::Regtest)],
        )
        .await
        .expect("nonce");
    assert_eq!(latest_nonce, 0);
    let none: Json = http
        .request("pb_getTransactionReceipt", rpc_params![id.clone()])
        .await
        .expect("receipt");
    assert!(none.is_null());

    let node2 = node.clone();
    tokio::task::spawn_blocking(move || node2.produce_block(1_700_000_000_500, false))
        .await
        .expect("join")
        .expect("produce")
        .expect("a block");

    let head = tokio::time::timeout(std::time::Duration::from_secs(10), heads.next())
        .await
        .expect("a head in time")
        .expect("stream open")
        .expect("a header");
    assert_eq!(head["height"], 1);
    let mine = tokio::time::timeout(std::time::Duration::from_secs(10), bob_txs.next())
        .await
        .expect("an account tx in time")
        .expect("stream open")
        .expect("a receipt");
    assert_eq!(mine["id"], id);
    assert_eq!(mine["status"], "success");

    let receipt: Json = http
        .request("pb_getTransactionReceipt", rpc_params![id.clone()])
        .await
        .expect("receipt");
    assert_eq!(receipt["status"], "success");
    assert_eq!(receipt["height"], 1);
    assert_eq!(receipt["fee_paid"], "10");
    let block: Json = http
        .request("pb_getBlockByHeight", rpc_params![1, true])
        .await
        .expect("block");
    assert_eq!(block["txs"][0]["id"], id);
    assert_eq!(block["state_root"], head["state_root"]);
    let by_hash: Json = http
        .request("pb_getBlockByHash", rpc_params![block["hash"].clone()])
        .await
        .expect("block by hash");
    assert_eq!(by_hash["height"], 1);
    let bal: Json = http
        .request("pb_getBalance", rpc_params![bob_s.clone()])
        .await
        .expect("balance");
    assert_eq!(bal["amount"], (1_000_000_000u128 + 5_000).to_string());
    assert_eq!(bal["symbol"], "BTC");
    let ids: Vec<String> = http
        .request(
            "pb_getAccountTransactions",
            rpc_params![alice.address().to_bech32(Network::Regtest)],
        )
        .await
        .expect("account txs");
    assert_eq!(ids, vec![id.clone()]);

    // A proof of bob's balance verifies against the block's state root.
    let proof: Json = http
        .request(
            "pb_getProof",
            rpc_params![json!({"balance": [bob_s.clone(), 0]})],
        )
        .await
        .expect("proof");
    let root: [u8; 32] = hex::decode(proof["state_root"].as_str().expect("root"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let proof_bytes = hex::decode(proof["proof"].as_str().expect("proof")).expect("hex");
    let p = parabit_storage::Proof::from_bytes(&proof_bytes).expect("decode proof");
    let value = parabit_storage::decode_value(
        &hex::decode(proof["value"].as_str().expect("value")).expect("hex"),
    )
    .expect("value");
    let key = parabit_modules::bank::balance_key(&bob, parabit_primitives::AssetId::BTC);
    parabit_storage::verify_proof(root, &key, Some(&value), &p).expect("proof verifies");
    assert!(parabit_storage::verify_proof(root, &key, None, &p).is_err());

    // Pools, quotes, markets, positions, staking and insurance answer.
    let pools: Vec<Json> = http
        .request("pb_listPools", rpc_params![])
        .await
        .expect("pools");
    assert_eq!(pools.len(), 1);
    let quote: Json = http
        .request(
            "pb_quoteSwap",
            rpc_params![json!({"path": [0, 1], "amount_in": "100000"})],
        )
        .await
        .expect("quote");
    assert!(
        quote["amount_out"]
            .as_str()
            .expect("amount")
            .parse::<u128>()
            .expect("number")
            > 0
    );
    let markets: Json = http
        .request("pb_getMarkets", rpc_params![])
        .await
        .expect("markets");
    assert_eq!(markets.as_array().map(Vec::len), Some(2));
    let pos: Json = http
        .request(
            "pb_getPosition",
            rpc_params![g.admin.key.address().to_bech32(Network::Regtest)],
        )
        .await
        .expect("position");
    assert!(pos["health_factor"].is_null(), "no debt: {pos}");
    let sp: Json = http
        .request("pb_getStakingPool", rpc_params![g.staking_pool])
        .await
        .expect("staking pool");
    assert!(!sp.is_null());
    let ip: Json = http
        .request("pb_getInsurancePool", rpc_params![g.insurance_pool])
        .await
        .expect("insurance pool");
    assert!(!ip.is_null());
    let assets: Vec<Json> = http
        .request("pb_listAssets", rpc_params![])
        .await
        .expect("assets");
    assert!(assets.iter().any(|a| a["symbol"] == "USDX"));

    // Bad parameters: -32602 with the parameter named.
    let err = http
        .request::<Json, _>("pb_getBalance", rpc_params!["not-an-address"])
        .await
        .expect_err("bad address");
    assert_eq!(code(&err).0, -32602, "{err}");
    assert!(code(&err).1.starts_with("address: "), "{err}");
    let err = http
        .request::<Json, _>("pb_getBlockByHeight", rpc_params!["x"])
        .await
        .expect_err("bad height");
    assert_eq!(code(&err).0, -32602, "{err}");
    assert!(code(&err).1.starts_with("height: "), "{err}");
    let err = http
        .request::<Json, _>("pb_quoteSwap", rpc_params![json!({"path": [0, 1]})])
        .await
        .expect_err("no amount");
    assert!(code(&err).1.contains("amount_in or amount_out"), "{err}");
    let missing: Json = http
        .request("pb_getBlockByHeight", rpc_params![99])
        .await
        .expect("null");
    assert!(missing.is_null());

    server.stop().expect("stop");
}

/// One raw HTTP POST; returns the status line and the body.
async fn post(addr: std::net::SocketAddr, body: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write head");
    // A server may stop reading an oversized body early; that is its answer.
    let _ = s.write_all(body.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, g) = open(dir.path(), 1);
    let (addr, server) = rpc::start(
        RpcContext {
            node: node.clone(),
            network: Network::Regtest,
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("start rpc");
    let http = HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .expect("client");
    let root = node.chain().head().state_root;
    let chain_id = node.chain().chain_id();
    let alice = &g.accounts[0].key;
    let bob = g.accounts[1].key.address();

    // Malformed hex.
    let err = http
        .request::<String, _>("pb_sendRawTransaction", rpc_params!["zz"])
        .await
        .expect_err("bad hex");
    assert_eq!(code(&err), (-32602, "tx: expected hex".to_string()));
    // Wrong chain id.
    let wrong = transfer(alice, 0, bob, 1, chain_id + 1);
    let err = http
        .request::<String, _>(
            "pb_sendRawTransaction",
            rpc_params![hex::encode(wrong.encode())],
        )
        .await
        .expect_err("wrong chain");
    assert_eq!(code(&err).0, 1001);
    assert!(code(&err).1.contains("chain id"), "{err}");
    // Bad signature: flip a bit of the signature (the last bytes of the encoding).
    let mut bytes = transfer(alice, 0, bob, 1, chain_id).encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = http
        .request::<String, _>("pb_sendRawTransaction", rpc_params![hex::encode(&bytes)])
        .await
        .expect_err("bad signature");
    assert_eq!(code(&err).0, 1001);
    assert!(code(&err).1.contains("signature"), "{err}");
    // Unknown method.
    let err = http
        .request::<Json, _>("pb_noSuchMethod", rpc_params![])
        .await
        .expect_err("unknown method");
    assert_eq!(code(&err).0, -32601);
    // A batch over the limit.
    let calls: Vec<Json> = (0..(rpc::MAX_BATCH as usize + 1))
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "pb_chainInfo", "params": []}))
        .collect();
    let (_, body) = post(addr, &Json::Array(calls).to_string()).await;
    let answer: Json = serde_json::from_str(&body).expect("a JSON answer");
    assert!(answer["error"]["code"].as_i64().is_some(), "{answer}");
    // An oversized body.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"pb_sendRawTransaction","params":["{}"]}}"#,
        "00".repeat(rpc::MAX_REQUEST_BYTES as usize / 2 + 16)
    );
    let (status, body) = post(addr, &huge).await;
    assert!(
        status.contains("413") || body.contains("-32007") || body.contains("too big"),
        "{status} {body}"
    );
    // Nothing changed: no transaction pooled, the state root is the same.
    assert_eq!(node.mempool_size().0, 0);
    assert_eq!(node.chain().head().state_root, root);
    server.stop().expect("stop");
}
