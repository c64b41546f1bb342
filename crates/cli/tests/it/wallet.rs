//! `parabit wallet …` run as the real binary over a temporary keystore, with the password
//! from `PARABIT_PASSWORD`; and the offline failures of `tx` and `query` (no node, bad
//! input), which must be clear and leave the keystore as it was.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use parabit_primitives::{Network, SigningKey};

const PW: &str = "correct horse battery staple";

/// Runs parabit with `stdin` piped in, `password` in the environment (or none), and no
/// keystore/RPC variables inherited from the caller.
fn run(args: &[&str], password: Option<&str>, stdin: &str) -> Output {
    match password {
        Some(p) => run_env(args, &[("PARABIT_PASSWORD", p)], stdin),
        None => run_env(args, &[], stdin),
    }
}

/// Runs parabit with `stdin` piped in and exactly the given Parabit variables set.
pub fn run_env(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parabit"));
    cmd.args(args)
        .env_remove("PARABIT_PASSWORD")
        .env_remove("PARABIT_KEYSTORE")
        .env_remove("PARABIT_RPC")
        .env_remove("PARABIT_FROM")
        .env_remove("PARABIT_NETWORK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot run parabit: {e}"),
    };
    if let Some(mut s) = child.stdin.take() {
        let _ = s.write_all(stdin.as_bytes());
    }
    match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => panic!("parabit did not finish: {e}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

pub fn json(s: &str) -> serde_json::Value {
    match serde_json::from_str(s.trim()) {
        Ok(v) => v,
        Err(e) => panic!("not one JSON document ({e}): {s}"),
    }
}

fn ks_arg(dir: &Path) -> String {
    dir.join("keys.json").display().to_string()
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

#[test]
fn create_list_show_remove() {
    let dir = tempdir();
    let ks = ks_arg(dir.path());
    let out = run(
        &[
            "wallet",
            "create",
            "alice",
            "--keystore",
            &ks,
            "--insecure-fast-kdf",
        ],
        Some(PW),
        "",
    );
    let alice = ok(&out).trim().to_string();
    assert!(alice.starts_with("pbrt1"), "{alice}");
    assert!(alice.parse::<parabit_primitives::Address>().is_ok());

    let out = run(
        &["wallet", "create", "bob", "--keystore", &ks, "--json"],
        Some(PW),
        "",
    );
    let bob = json(&ok(&out));
    assert_eq!(bob["name"], "bob");
    assert_eq!(bob["created_keystore"], false);
    let bob_addr = bob["address"].as_str().unwrap_or_default().to_string();
    assert_ne!(bob_addr, alice);

    // list and show need no password.
    let listed = json(&ok(&run(
        &["wallet", "list", "--keystore", &ks, "--json"],
        None,
        "",
    )));
    let keys = listed["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["name"], "alice");
    assert_eq!(keys[0]["address"], alice.as_str());
    assert_eq!(keys[1]["address"], bob_addr.as_str());
    let table = ok(&run(&["wallet", "list", "--keystore", &ks], None, ""));
    assert!(table.contains("alice") && table.contains(&alice), "{table}");
    let mainnet = ok(&run(
        &["wallet", "list", "--keystore", &ks, "--network", "mainnet"],
        None,
        "",
    ));
    assert!(
        mainnet.contains("pb1") && !mainnet.contains("pbrt1"),
        "{mainnet}"
    );

    let shown = json(&ok(&run(
        &["wallet", "show", "alice", "--keystore", &ks, "--json"],
        None,
        "",
    )));
    assert_eq!(shown["address"], alice.as_str());
    assert!(shown.get("secret_key").is_none());

    // The secret, shown with the password, is nowhere in the file in plain text.
    let secret = json(&ok(&run(
        &[
            "wallet",
            "show",
            "alice",
            "--keystore",
            &ks,
            "--secret",
            "--json",
        ],
        Some(PW),
        "",
    )));
    let secret_hex = secret["secret_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(secret_hex.len(), 64);
    let file = std::fs::read_to_string(dir.path().join("keys.json")).unwrap_or_default();
    assert!(!file.contains(&secret_hex));
    assert!(file.contains("ciphertext"));

    // Removing without --yes and without a terminal is refused; nothing changes.
    let before = std::fs::read(dir.path().join("keys.json")).unwrap_or_default();
    let err = fails(&run(
        &["wallet", "remove", "bob", "--keystore", &ks],
        Some(PW),
        "",
    ));
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("keys.json")).unwrap_or_default(),
        before
    );

    let out = run(
        &["wallet", "remove", "bob", "--keystore", &ks, "--yes"],
        Some(PW),
        "",
    );
    assert!(ok(&out).contains(&bob_addr));
    let listed = json(&ok(&run(
        &["wallet", "list", "--keystore", &ks, "--json"],
        None,
        "",
    )));
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(1));
}

#[test]
fn import_reads_the_secret_from_stdin() {
    let dir = tempdir();
    let ks = ks_arg(dir.path());
    let key = SigningKey::from_seed(b"parabit cli import test");
    let secret = hex::encode(key.secret_bytes());
    let want = key.address().to_bech32(Network::Regtest);
    let out = run(
        &[
            "wallet",
            "import",
            "carol",
            "--keystore",
            &ks,
            "--insecure-fast-kdf",
        ],
        Some(PW),
        &format!("0x{secret}\n"),
    );
    assert_eq!(ok(&out).trim(), want);
    // The secret never appears in what the command printed.
    assert!(!text(&out.stdout).contains(&secret) && !text(&out.stderr).contains(&secret));

    // The same key again, under another name: refused, file unchanged.
    let before = std::fs::read(dir.path().join("keys.json")).unwrap_or_default();
    let err = fails(&run(
        &["wallet", "import", "dave", "--keystore", &ks],
        Some(PW),
        &secret,
    ));
    assert!(err.contains("carol"), "{err}");
    // A bad secret: refused without echoing it.
    let err = fails(&run(
        &["wallet", "import", "erin", "--keystore", &ks],
        Some(PW),
        "zz12",
    ));
    assert!(
        err.contains("invalid secret key") && !err.contains("zz12"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("keys.json")).unwrap_or_default(),
        before
    );
}

#[test]
fn password_errors_are_clear_and_change_nothing() {
    let dir = tempdir();
    let ks = ks_arg(dir.path());
    ok(&run(
        &[
            "wallet",
            "create",
            "alice",
            "--keystore",
            &ks,
            "--insecure-fast-kdf",
        ],
        Some(PW),
        "",
    ));
    let before = std::fs::read(dir.path().join("keys.json")).unwrap_or_default();

    let err = fails(&run(
        &["wallet", "create", "bob", "--keystore", &ks],
        Some("nope"),
        "",
    ));
    assert!(err.contains("wrong password"), "{err}");
    // No password and no terminal: the error names the variable.
    let err = fails(&run(
        &["wallet", "create", "bob", "--keystore", &ks],
        None,
        "",
    ));
    assert!(err.contains("PARABIT_PASSWORD"), "{err}");
    let err = fails(&run(
        &["wallet", "create", "alice", "--keystore", &ks],
        Some(PW),
        "",
    ));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&run(
        &["wallet", "create", "a b", "--keystore", &ks],
        Some(PW),
        "",
    ));
    assert!(err.contains("invalid key name"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("keys.json")).unwrap_or_default(),
        before
    );

    let err = fails(&run(
        &["wallet", "show", "zed", "--keystore", &ks],
        None,
        "",
    ));
    assert!(err.contains("zed"), "{err}");
    let missing = dir.path().join("none.json").display().to_string();
    let err = fails(&run(
        &["wallet", "show", "alice", "--keystore", &missing],
        None,
        "",
    ));
    assert!(err.contains("no keystore"), "{err}");
    let listed = json(&ok(&run(
        &["wallet", "list", "--keystore", &missing, "--json"],
        None,
        "",
    )));
    assert_eq!(listed["keys"], serde_json::json!([]));
}

#[test]
fn tx_and_query_without_a_node_fail_clearly() {
    let dir = tempdir();
    let ks = ks_arg(dir.path());
    ok(&run(
        &[
            "wallet",
            "create",
            "alice",
            "--keystore",
            &ks,
            "--insecure-fast-kdf",
        ],
        Some(PW),
        "",
    ));
    // Port 9 on localhost: nothing listens there.
    let err = fails(&run(
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "alice",
            "--amount",
            "1 BTC",
            "--keystore",
            &ks,
            "--rpc",
            "http://127.0.0.1:9",
        ],
        Some(PW),
        "",
    ));
    assert!(
        err.contains("cannot reach the node") && err.contains("127.0.0.1:9"),
        "{err}"
    );
    let err = fails(&run(
        &[
            "tx",
            "transfer",
            "--to",
            "alice",
            "--amount",
            "1 BTC",
            "--keystore",
            &ks,
        ],
        Some(PW),
        "",
    ));
    assert!(err.contains("--from"), "{err}");
    let err = fails(&run(
        &[
            "tx",
            "transfer",
            "--from",
            "zed",
            "--to",
            "alice",
            "--amount",
            "1 BTC",
            "--keystore",
            &ks,
        ],
        Some(PW),
        "",
    ));
    assert!(err.contains("zed"), "{err}");
    let err = fails(&run(
        &["query", "chain", "--rpc", "http://127.0.0.1:9", "--json"],
        None,
        "",
    ));
    assert!(err.contains("cannot reach the node"), "{err}");
    let err = fails(&run(&["query", "chain", "--rpc", "localhost:1"], None, ""));
    assert!(err.contains("http://"), "{err}");
    let err = fails(&run(
        &["tx", "vote", "--from", "alice", "--cover", "1"],
        Some(PW),
        "",
    ));
    assert!(err.contains("--approve"), "{err}");
}
