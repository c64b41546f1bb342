//! End to end, as a user would: start `parabit devnet` as a child process on a free port,
//! import a funded development key, create a fresh wallet key, and drive the chain with
//! `parabit tx` (transfer, swap, supply, borrow, stake, buy cover, claim) and `parabit query`
//! (balances, quote, position, stake, cover, claim, verified proofs; over HTTP and
//! WebSocket), checking the results; the child is killed at the end (also on panic).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parabit_primitives::{Address, SigningKey};
use serde_json::Value as Json;

use super::wallet::{fails, json, ok, run_env};

const PW: &str = "devnet test password";

/// Kills the devnet when dropped.
pub(crate) struct Devnet {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

/// Starts `parabit devnet` on a free port and waits until its RPC answers.
pub(crate) fn start_devnet(data_dir: &std::path::Path) -> Devnet {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(["devnet", "--data-dir"])
        .arg(data_dir)
        .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => panic!("cannot start parabit devnet: {e}"),
    };
    let mut devnet = Devnet {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let start = Instant::now();
    loop {
        let out = run_env(&["query", "chain", "--json", "--rpc", &devnet.url], &[], "");
        if out.status.success() {
            return devnet;
        }
        if let Ok(Some(status)) = devnet.child.try_wait() {
            panic!("parabit devnet exited early: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the devnet's RPC did not answer within 60 s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Imports the devnet's development key `name` (its seed is public) into the keystore `ks`.
pub(crate) fn import_dev_key(name: &str, ks: &str, env: &[(&str, &str)]) -> SigningKey {
    let key = parabit_node::devnet::dev_key(name);
    ok(&run_env(
        &[
            "wallet",
            "import",
            name,
            "--keystore",
            ks,
            "--insecure-fast-kdf",
        ],
        env,
        &hex::encode(key.secret_bytes()),
    ));
    key
}

fn amount(balances: &Json, symbol: &str) -> u128 {
    balances["balances"]
        .as_array()
        .and_then(|l| l.iter().find(|b| b["symbol"] == symbol))
        .and_then(|b| b["amount"].as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn devnet_transfer_swap_borrow_and_verified_proof() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let devnet = start_devnet(&dir.path().join("data"));
    let ks = dir.path().join("keys.json").display().to_string();
    let env = [
        ("PARABIT_PASSWORD", PW),
        ("PARABIT_RPC", devnet.url.as_str()),
    ];
    let cli = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--keystore", &ks]);
        run_env(&a, &env, "")
    };

    // The devnet's funded development key (its seed is public by design) and a fresh key.
    import_dev_key("alice", &ks, &env);
    let me = ok(&cli(&["wallet", "create", "me"])).trim().to_string();

    // Transfer 1 BTC and 5,000 USDX to the fresh key.
    let t = json(&ok(&cli(&[
        "tx", "transfer", "--from", "alice", "--to", "me", "--amount", "1 BTC", "--json",
    ])));
    assert_eq!(t["receipt"]["status"], "success", "{t}");
    ok(&cli(&[
        "tx",
        "transfer",
        "--from",
        "alice",
        "--to",
        &me,
        "--amount",
        "5000 USDX",
    ]));
    let b = json(&ok(&cli(&["query", "balance", "me", "--json"])));
    assert_eq!(amount(&b, "BTC"), 100_000_000, "{b}");
    assert_eq!(amount(&b, "USDX"), 5_000_000_000, "{b}");

    // Swap 0.01 BTC for USDX at the seeded pool (≈ 60,000 USDX a BTC): min-out from a quote.
    let q = json(&ok(&cli(&[
        "query",
        "quote",
        "--amount-in",
        "0.01 BTC",
        "--out",
        "USDX",
        "--json",
    ])));
    let quoted: u128 = q["amount_out"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(quoted > 500_000_000 && quoted < 700_000_000, "{q}");
    let s = json(&ok(&cli(&[
        "tx",
        "swap",
        "--from",
        "me",
        "--amount-in",
        "0.01 BTC",
        "--out",
        "USDX",
        "--json",
    ])));
    assert_eq!(s["receipt"]["status"], "success", "{s}");
    let fee: u128 = s["fee"].as_str().and_then(|f| f.parse().ok()).unwrap_or(0);
    let b2 = json(&ok(&cli(&["query", "balance", "me", "--json"])));
    // Two fees: the swap's (the transfers were paid by alice).
    assert_eq!(amount(&b2, "BTC"), 100_000_000 - 1_000_000 - fee, "{b2}");
    let got = amount(&b2, "USDX") - 5_000_000_000;
    assert_eq!(got, quoted, "the pool did not move between quote and swap");

    // A swap that cannot meet its bound fails: non-zero exit, nothing swapped.
    let err = fails(&cli(&[
        "tx",
        "swap",
        "--from",
        "me",
        "--amount-in",
        "0.01 BTC",
        "--out",
        "USDX",
        "--min-out",
        "1000000",
    ]));
    assert!(err.contains("failed"), "{err}");

    // Supply BTC as collateral, borrow USDX, and see the debt and health factor.
    ok(&cli(&[
        "tx", "supply", "--from", "me", "--amount", "0.5 BTC",
    ]));
    ok(&cli(&[
        "tx",
        "borrow",
        "--from",
        "me",
        "--amount",
        "1000 USDX",
    ]));
    let p = json(&ok(&cli(&["query", "position", "me", "--json"])));
    let hf: f64 = p["health_factor"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .unwrap_or(0.0);
    assert!(hf > 1.0, "{p}");

    // The balance, proven against the state root and checked locally.
    let b3 = json(&ok(&cli(&[
        "query", "balance", "me", "--asset", "BTC", "--json",
    ])));
    let proof = json(&ok(&cli(&[
        "query",
        "proof",
        &format!("balance:{me}:0"),
        "--json",
    ])));
    assert_eq!(proof["verified"], true, "{proof}");
    let btc_now = amount(&b3, "BTC");
    let value = proof["value"].as_str().unwrap_or("");
    let mut want = vec![0u8];
    want.extend_from_slice(&btc_now.to_le_bytes());
    assert_eq!(value, hex::encode(&want), "{proof}");

    // The same proof at an earlier height verifies against that block's root.
    let old = json(&ok(&cli(&[
        "query", "proof", "nonce:me", "--height", "1", "--json",
    ])));
    assert_eq!(
        (old["verified"].clone(), old["height"].clone()),
        (Json::Bool(true), 1.into())
    );

    // Staking and insurance in the seeded pools (the devnet's admin created them with nonces
    // 7 and 8); amounts without units take the pool's asset.
    let admin = SigningKey::from_seed(b"parabit-devnet/admin").address();
    let staking_pool = parabit_modules::staking::derive_pool_id(&admin, 7).to_string();
    let insurance_pool = parabit_modules::insurance::derive_id(&admin, 8).to_string();
    ok(&cli(&[
        "tx",
        "stake",
        "--from",
        "me",
        "--pool",
        &staking_pool,
        "--amount",
        "0.1",
    ]));
    let st = json(&ok(&cli(&[
        "query",
        "staking",
        "stake",
        &staking_pool,
        "me",
        "--json",
    ])));
    assert_eq!(st["stake"], "10000000", "{st}");
    let c = json(&ok(&cli(&[
        "tx",
        "buy-cover",
        "--from",
        "me",
        "--pool",
        &insurance_pool,
        "--risk",
        "bridge",
        "--amount",
        "100",
        "--period-blocks",
        "1000",
        "--json",
    ])));
    assert_eq!(c["receipt"]["status"], "success", "{c}");
    let cover = c["created"]["cover"]
        .as_u64()
        .unwrap_or_default()
        .to_string();
    let cv = json(&ok(&cli(&[
        "query",
        "insurance",
        "cover",
        &cover,
        "--json",
    ])));
    // (Addresses inside module objects may come in either network's form.)
    let holder = cv["holder"]
        .as_str()
        .and_then(|h| h.parse::<Address>().ok());
    assert_eq!(holder, me.parse::<Address>().ok(), "{cv}");
    ok(&cli(&[
        "tx", "claim", "--from", "me", "--cover", &cover, "--amount", "40 USDX",
    ]));
    let cl = json(&ok(&cli(&[
        "query",
        "insurance",
        "claim",
        &cover,
        "--json",
    ])));
    assert_eq!(cl["status"], "Open", "{cl}");

    // WebSocket works as well as HTTP.
    let ws = devnet.url.replace("http://", "ws://");
    let chain = json(&ok(&run_env(
        &["query", "chain", "--json", "--rpc", &ws],
        &[],
        "",
    )));
    assert!(chain["height"].as_u64().is_some_and(|h| h > 5), "{chain}");
    drop(devnet);
}
