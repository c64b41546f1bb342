//! The explorer and metrics pages on the RPC address, beside JSON-RPC over HTTP and WebSocket.

use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use parabit_node::rpc::{self, RpcContext};
use parabit_primitives::Network;
use serde_json::Value as Json;

use crate::chain::{open, transfer};

/// One raw HTTP GET; returns the status line, the headers and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, head.to_lowercase(), body.to_string())
}

/// The value of a metric line `name value` on the page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_and_the_metrics_are_served_beside_json_rpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, g) = open(dir.path(), 2);
    let ctx = RpcContext {
        node: node.clone(),
        network: Network::Regtest,
    };
    let (addr, server) = rpc::start(ctx, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start rpc");

    // Two blocks: three transfers (one with a wrong nonce is refused by the mempool).
    let (alice, bob) = (&g.accounts[0].key, g.accounts[1].key.address());
    let id = node.chain().chain_id();
    let results = node.submit(vec![
        transfer(alice, 0, bob, 5, id),
        transfer(alice, 1, bob, 5, id),
        transfer(alice, 1, bob, 5, id),
    ]);
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
    node.produce_block(1_700_000_001_000, false)
        .expect("block")
        .expect("some");
    node.submit(vec![transfer(alice, 2, bob, 5, id)]);
    node.produce_block(1_700_000_002_000, false)
        .expect("block")
        .expect("some");

    let (status, head, page) = get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert_eq!(metric(&page, "parabit_height"), Some(2.0), "{page}");
    assert_eq!(
        metric(&page, "parabit_blocks_total{source=\"produced\"}"),
        Some(2.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "parabit_transactions_total{status=\"success\"}"),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "parabit_submitted_transactions_total{result=\"accepted\"}"
        ),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "parabit_submitted_transactions_total{result=\"rejected\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "parabit_block_seconds_count"),
        Some(2.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "parabit_mempool_transactions"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        metric(&page, "parabit_bridge_deposited_sats"),
        Some(0.0),
        "{page}"
    );

    for path in ["/explorer", "/"] {
        let (status, head, page) = get(addr, path).await;
        assert!(status.contains("200"), "{path}: {status}");
        assert!(head.contains("content-type: text/html"), "{path}: {head}");
        assert!(page.contains("<title>Parabit explorer</title>"), "{path}");
        assert!(
            page.contains("pb_bridgeInfo"),
            "{path}: the bridge's figures"
        );
    }
    let (status, _, _) = get(addr, "/nothing-here").await;
    assert!(!status.contains("200"), "{status}");

    // JSON-RPC over HTTP and WebSocket on the same address still works.
    let http = HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .expect("client");
    let info: Json = http
        .request("pb_chainInfo", rpc_params![])
        .await
        .expect("chainInfo");
    assert_eq!(info["height"], 2);
    let ws = WsClientBuilder::default()
        .build(format!("ws://{addr}"))
        .await
        .expect("ws client");
    let info: Json = ws
        .request("pb_chainInfo", rpc_params![])
        .await
        .expect("chainInfo over ws");
    assert_eq!(info["height"], 2);
    server.stop().expect("stop");
}
