//! The regtest JSON-RPC server with `BitcoindClient` on the other end: the production client
//! against the embedded chain, as separate processes would use it.

use std::sync::Arc;

use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::Network;
use parabit_bitcoin::envelope::verified_envelopes_in_block;
use parabit_bitcoin::regtest::{RpcServer, ServerAuth};
use parabit_bitcoin::{
    build_commit_reveal, Auth, BitcoinClient, BitcoindClient, BitcoindConfig, ClientError,
    RegtestChain,
};
use serde_json::json;

use crate::{rate, wallet};

#[test]
fn batcher_flow_over_json_rpc_with_cookie_auth() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(RegtestChain::open(&dir.path().join("chain")).unwrap());
    let cookie = dir.path().join(".cookie");
    let server = RpcServer::start(
        Arc::clone(&chain),
        "127.0.0.1:0",
        ServerAuth::Cookie(cookie.clone()),
    )
    .unwrap();
    let text = std::fs::read_to_string(&cookie).unwrap();
    assert!(
        text.starts_with("__cookie__:") && text.len() == 11 + 64,
        "{text}"
    );

    let batcher = wallet(5);
    let address = batcher.address(Network::Regtest).to_string();
    let mut config = BitcoindConfig::new(server.url());
    config.auth = Auth::CookieFile(cookie.clone());
    config.watch_addresses = vec![address.clone()];
    let client = BitcoindClient::new(config).unwrap();

    let mined = client
        .call("generatetoaddress", json!([101, address]))
        .unwrap();
    assert_eq!(mined.as_array().unwrap().len(), 101);
    let (height, tip) = client.tip().unwrap();
    assert_eq!((height, tip), chain.tip());
    assert_eq!(client.call("getblockcount", json!([])).unwrap(), json!(101));

    // Fund and publish an envelope exactly as the batcher will.
    let coins = client.list_unspent().unwrap();
    assert_eq!(
        coins.len(),
        2,
        "only mature coinbases are listed, as by bitcoind"
    );
    let fee_rate = client.estimate_fee_rate().unwrap();
    assert_eq!(fee_rate, rate(2));
    let seq = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[42; 32]).unwrap());
    let data = vec![7u8; 2_000];
    let cr = build_commit_reveal(&batcher, &seq, &[], &coins, 1, &data, fee_rate).unwrap();
    let commit = client.send_raw_transaction(&cr.commit).unwrap();
    let reveal = client.send_raw_transaction(&cr.reveal).unwrap();
    let pool = client.call("getrawmempool", json!([])).unwrap();
    assert_eq!(pool, json!([commit.to_string(), reveal.to_string()]));
    assert_eq!(client.get_raw_transaction(&reveal).unwrap(), cr.reveal);
    // The same commit again is refused for good.
    assert!(matches!(
        client.send_raw_transaction(&cr.commit),
        Err(ClientError::Rejected {
            code: Some(-26),
            ..
        })
    ));

    client
        .call("generatetoaddress", json!([1, address]))
        .unwrap();
    let (h, tip) = client.tip().unwrap();
    assert_eq!(h, 102);
    let block = client.block(&client.block_hash(102).unwrap()).unwrap();
    assert_eq!(block.block_hash(), tip);
    let found = verified_envelopes_in_block(&block, |_| None);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].2.data, data);
    assert_eq!(found[0].2.key, seq.x_only_public_key().0);

    // A reorg through Core's invalidateblock: the pair goes back to the mempool.
    client
        .call("invalidateblock", json!([tip.to_string()]))
        .unwrap();
    assert_eq!(client.tip().unwrap().0, 101);
    let pool = client.call("getrawmempool", json!([])).unwrap();
    assert_eq!(pool.as_array().unwrap().len(), 2);
    // The stale block is still served by hash.
    assert_eq!(client.block(&tip).unwrap().block_hash(), tip);

    // Credentials: a client with the wrong password is refused.
    let mut wrong = BitcoindConfig::new(server.url());
    wrong.auth = Auth::UserPass {
        user: "__cookie__".into(),
        password: "00".into(),
    };
    assert!(matches!(
        BitcoindClient::new(wrong).unwrap().tip(),
        Err(ClientError::Unauthorized(_))
    ));

    server.stop();
    assert!(!cookie.exists(), "the cookie is removed at stop");
    // Server gone (and its cookie with it): transient, so a follower retries.
    assert!(client.tip().unwrap_err().is_transient());
}

#[test]
fn user_password_auth_and_many_clients() {
    let chain = Arc::new(RegtestChain::in_memory());
    let server = RpcServer::start(
        Arc::clone(&chain),
        "127.0.0.1:0",
        ServerAuth::UserPass {
            user: "parabit".into(),
            password: "pw".into(),
        },
    )
    .unwrap();
    let url = server.url().replace("http://", "http://parabit:pw@");
    let miner = wallet(9).address(Network::Regtest).to_string();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let miner = miner.clone();
            std::thread::spawn(move || {
                let client = BitcoindClient::new(BitcoindConfig::new(url)).unwrap();
                for _ in 0..5 {
                    client.call("generatetoaddress", json!([1, miner])).unwrap();
                    client.tip().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(chain.height(), 20);
    let client = BitcoindClient::new(BitcoindConfig::new(url)).unwrap();
    assert_eq!(client.tip().unwrap(), chain.tip());
    assert!(matches!(
        client.call("nosuchmethod", json!([])),
        Err(ClientError::Rpc { code: -32601, .. })
    ));
    assert!(matches!(
        client.call("generatetoaddress", json!([1, "bc1qnotregtest"])),
        Err(ClientError::Rpc { code: -5, .. })
    ));
}
