//! The BTC bridge as a user drives it against a real devnet and its embedded regtest chain:
//! mine coins to a key's Bitcoin address (`bridge fund`), deposit them (`bridge deposit`,
//! which waits for the L2 credit), withdraw to a Bitcoin address (`tx withdraw-btc`), follow
//! the withdrawal until the sequencer paid it (`bridge withdrawal`), and find the payout
//! output on Bitcoin; bad input is refused before anything is sent.

use std::str::FromStr;
use std::time::{Duration, Instant};

use parabit_bitcoin::bitcoin::secp256k1::SecretKey;
use parabit_bitcoin::bitcoin::{Network as BtcNetwork, Txid};
use parabit_bitcoin::{Auth, BitcoinClient, BitcoindClient, BitcoindConfig, TaprootWallet};
use serde_json::Value as Json;

use super::devnet::import_dev_key;
use super::settle::{free_port, start, stop};
use super::wallet::{fails, json, ok, run_env};

const PW: &str = "bridge test password";

#[test]
fn deposit_then_withdraw_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (port, btc_port) = (free_port(), free_port());
    let devnet = start(&data, port, btc_port);
    let url = format!("http://127.0.0.1:{port}");
    let btc_url = format!("http://127.0.0.1:{btc_port}");
    let cookie = data.join("bitcoin").join(".cookie").display().to_string();
    let ks = dir.path().join("keys.json").display().to_string();
    let env = [("PARABIT_PASSWORD", PW), ("PARABIT_RPC", url.as_str())];
    let cli = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--keystore", &ks]);
        run_env(&a, &env, "")
    };
    let btc_args = ["--bitcoin-rpc", &btc_url, "--bitcoin-cookie", &cookie];

    import_dev_key("alice", &ks, &env);
    let me = ok(&cli(&["wallet", "create", "me"])).trim().to_string();

    let info = json(&ok(&cli(&["bridge", "info", "--json"])));
    assert!(info["bridge_address"]
        .as_str()
        .is_some_and(|a| a.starts_with("bcrt1p")));
    assert_eq!(info["deposit_confirmations"], 1);

    // How to deposit from any wallet: the bridge address and the marker naming `me`.
    let me_addr = parabit_primitives::Address::parse(&me).expect("address").1;
    let marker = ok(&cli(&["bridge", "marker", "--to", &me]));
    assert!(
        marker.contains(&format!("706264{}", hex::encode(me_addr.0))),
        "{marker}"
    );
    assert!(
        marker.contains(info["bridge_address"].as_str().expect("address")),
        "{marker}"
    );

    // Bad input is refused before anything is signed or sent.
    let mut a = vec![
        "bridge", "deposit", "--from", "alice", "--amount", "100 sat",
    ];
    a.extend(btc_args);
    let err = fails(&cli(&a));
    assert!(err.contains("below the bridge's minimum deposit"), "{err}");
    let mut a = vec![
        "bridge", "deposit", "--from", "alice", "--amount", "0.01 BTC",
    ];
    a.extend(btc_args);
    let err = fails(&cli(&a));
    assert!(err.contains("insufficient funds"), "no coins yet: {err}");

    // Coins on Bitcoin for alice's key, then a deposit to `me`, waited for.
    let mut a = vec!["bridge", "fund", "--from", "alice"];
    a.extend(btc_args);
    ok(&cli(&a));
    let mut a = vec![
        "bridge", "deposit", "--from", "alice", "--to", "me", "--amount", "0.01 BTC",
    ];
    a.extend(btc_args);
    let out = ok(&cli(&a));
    assert!(out.contains("credited on L2"), "{out}");
    let bal = json(&ok(&cli(&["query", "balance", &me, "--json"])));
    let btc = bal["balances"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["symbol"] == "BTC"))
        .and_then(|b| b["amount"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no BTC balance: {bal}"));
    assert_eq!(btc, "1000000", "{bal}");

    // Withdraw to a Bitcoin address; the sequencer pays it.
    let dest = TaprootWallet::new(SecretKey::from_slice(&[21; 32]).expect("key"));
    let dest_addr = dest.address(BtcNetwork::Regtest).to_string();
    let err = fails(&cli(&[
        "tx",
        "withdraw-btc",
        "--from",
        "me",
        "--to",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        "--amount",
        "50000 sat",
    ]));
    assert!(err.contains("not an address of Bitcoin regtest"), "{err}");
    let w = json(&ok(&cli(&[
        "tx",
        "withdraw-btc",
        "--from",
        "me",
        "--to",
        &dest_addr,
        "--amount",
        "50000 sat",
        "--json",
    ])));
    assert_eq!(w["receipt"]["status"], "success", "{w}");
    let id = w["id"].as_str().expect("id").to_string();
    let start_wait = Instant::now();
    let paid = loop {
        let s = json(&ok(&cli(&["bridge", "withdrawal", &id, "--json"])));
        if s["status"] == "paid" {
            break s;
        }
        assert_eq!(s["status"], "pending", "{s}");
        assert!(
            start_wait.elapsed() < Duration::from_secs(60),
            "not paid: {s}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let text = ok(&cli(&["bridge", "withdrawal", &id]));
    assert!(text.contains("status      paid"), "{text}");

    // The payout output is on Bitcoin, paying the address what the RPC says.
    let mut config = BitcoindConfig::new(btc_url.clone());
    config.auth = Auth::CookieFile(cookie.clone().into());
    let bitcoin = BitcoindClient::new(config).expect("bitcoin client");
    let txid = Txid::from_str(paid["payout"]["txid"].as_str().expect("txid")).expect("txid");
    let tx = bitcoin
        .get_raw_transaction(&txid)
        .expect("payout on Bitcoin");
    let vout = paid["payout"]["vout"].as_u64().expect("vout") as usize;
    assert_eq!(&tx.output[vout].script_pubkey, dest.script_pubkey());
    assert_eq!(
        Some(tx.output[vout].value.to_sat()),
        paid["payout"]["paid"].as_u64()
    );
    let info: Json = json(&ok(&cli(&["bridge", "info", "--json"])));
    assert_eq!(info["deposited"], "1000000");
    assert_eq!(info["withdrawn"], "50000");
    stop(devnet);
}
