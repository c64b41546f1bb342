//! Payment channels end to end with the real binary against `parabit devnet`: two funded
//! development accounts open a channel, the peer deposits, they exchange two off-chain
//! states (`parabit channel state` / `sign`) and close cooperatively; then a unilateral close
//! with an old state is challenged with the newer one and settled after the challenge period;
//! last, a state carrying an HTLC is closed on, settled, and the HTLC claimed by its preimage.
//! Balances are checked to the satoshi (fees from the receipts); refusals of bad state files
//! and non-party signers are checked on the way.

use parabit_primitives::{Address, SigningKey};
use serde_json::Value as Json;

use super::devnet::start_devnet;
use super::wallet::{fails, json, ok, run_env};

const PW: &str = "channel test password";

fn u128_of(v: &Json) -> u128 {
    match v {
        Json::String(s) => s.parse().unwrap_or_else(|_| panic!("not an amount: {v}")),
        Json::Number(n) => n.as_u64().map(u128::from).unwrap_or_else(|| panic!("{v}")),
        _ => panic!("not an amount: {v}"),
    }
}

#[test]
fn channels_close_cooperatively_unilaterally_with_a_challenge_and_with_an_htlc() {
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
    // A committed, successful transaction's JSON document.
    let tx = |args: &[&str]| -> Json {
        let mut a = vec!["tx"];
        a.extend_from_slice(args);
        a.push("--json");
        let doc = json(&ok(&cli(&a)));
        assert_eq!(doc["receipt"]["status"], "success", "{doc}");
        doc
    };
    let fee = |doc: &Json| u128_of(&doc["receipt"]["fee_paid"]);
    let btc = |who: &str| -> u128 {
        let b = json(&ok(&cli(&[
            "query", "balance", who, "--asset", "BTC", "--json",
        ])));
        u128_of(&b["balances"][0]["amount"])
    };
    let channel = |id: &str| json(&ok(&cli(&["query", "channel", id, "--json"])));
    let file = |name: &str| dir.path().join(name).display().to_string();

    // The devnet's funded development keys (public seeds) and an outsider.
    for name in ["alice", "bob", "carol"] {
        let key = SigningKey::from_seed(format!("parabit-devnet/{name}").as_bytes());
        ok(&run_env(
            &[
                "wallet",
                "import",
                name,
                "--keystore",
                &ks,
                "--insecure-fast-kdf",
            ],
            &env,
            &hex::encode(key.secret_bytes()),
        ));
    }
    let (alice0, bob0) = (btc("alice"), btc("bob"));

    // Alice opens a channel with Bob (0.1 BTC); Bob deposits 0.05 BTC.
    let open = tx(&[
        "channel-open",
        "--from",
        "alice",
        "--peer",
        "bob",
        "--deposit",
        "0.1 BTC",
        "--challenge-blocks",
        "20",
    ]);
    let id = open["created"]["channel"]
        .as_u64()
        .unwrap_or_else(|| panic!("no channel id in {open}"))
        .to_string();
    let dep = tx(&[
        "channel-deposit",
        "--from",
        "bob",
        "--channel",
        &id,
        "--amount",
        "0.05",
    ]);
    let c = channel(&id);
    assert_eq!(c["status"], "open", "{c}");
    assert_eq!(
        (c["deposit_a"].clone(), c["deposit_b"].clone()),
        ("10000000".into(), "5000000".into())
    );
    let alice_addr = SigningKey::from_seed(b"parabit-devnet/alice").address();
    assert_eq!(
        c["a"].as_str().and_then(|a| a.parse::<Address>().ok()),
        Some(alice_addr)
    );
    let e = fails(&cli(&["query", "channel", "999"]));
    assert!(e.contains("unknown channel 999"), "{e}");
    let text = ok(&cli(&["query", "channel", &id]));
    assert!(text.contains("0.1 BTC") && text.contains("open"), "{text}");

    // Two off-chain states, each built and signed by one party and signed by the other.
    let s1 = file("s1.json");
    ok(&cli(&[
        "channel",
        "state",
        "--from",
        "alice",
        "--channel",
        &id,
        "--nonce",
        "1",
        "--balance-a",
        "0.08",
        "--balance-b",
        "0.07 BTC",
        "--out",
        &s1,
    ]));
    ok(&cli(&["channel", "sign", "--from", "bob", "--state", &s1]));
    let s2 = file("s2.json");
    ok(&cli(&[
        "channel",
        "state",
        "--from",
        "bob",
        "--channel",
        &id,
        "--nonce",
        "2",
        "--balance-a",
        "0.06",
        "--balance-b",
        "0.09",
        "--out",
        &s2,
    ]));
    // Half-signed: the chain would refuse it, so the CLI does.
    let e = fails(&cli(&[
        "tx",
        "channel-close-coop",
        "--from",
        "alice",
        "--state",
        &s2,
    ]));
    assert!(e.contains("no signature of party a"), "{e}");
    let signed = json(&ok(&cli(&[
        "channel", "sign", "--from", "alice", "--state", &s2, "--json",
    ])));
    assert_eq!(signed["complete"], true, "{signed}");

    // Refusals: an outsider, a second signature by the same party, a state that does not add
    // up, a tampered file, a file that is not a state.
    let e = fails(&cli(&[
        "channel", "sign", "--from", "carol", "--state", &s1,
    ]));
    assert!(e.contains("not a party"), "{e}");
    let e = fails(&cli(&["channel", "sign", "--from", "bob", "--state", &s2]));
    assert!(e.contains("already has your signature"), "{e}");
    let e = fails(&cli(&[
        "channel",
        "state",
        "--from",
        "alice",
        "--channel",
        &id,
        "--nonce",
        "3",
        "--balance-a",
        "0.1",
        "--balance-b",
        "0.1",
        "--out",
        &file("bad.json"),
    ]));
    assert!(e.contains("must be equal"), "{e}");
    let tampered = file("tampered.json");
    let t = std::fs::read_to_string(&s2)
        .unwrap_or_default()
        .replace("6000000", "6000001")
        .replace("9000000", "8999999");
    assert!(std::fs::write(&tampered, t).is_ok());
    let e = fails(&cli(&[
        "channel", "sign", "--from", "bob", "--state", &tampered,
    ]));
    assert!(e.contains("does not verify"), "{e}");
    let e = fails(&cli(&[
        "tx",
        "channel-close-coop",
        "--from",
        "bob",
        "--state",
        &tampered,
    ]));
    assert!(e.contains("does not verify"), "{e}");
    let junk = file("junk.json");
    assert!(std::fs::write(&junk, "{\"nonce\": 1}").is_ok());
    let e = fails(&cli(&[
        "tx",
        "channel-challenge",
        "--from",
        "bob",
        "--state",
        &junk,
    ]));
    assert!(e.contains("not a channel state file"), "{e}");

    // Close cooperatively with the latest state: paid at once.
    let close = tx(&["channel-close-coop", "--from", "alice", "--state", &s2]);
    assert_eq!(channel(&id)["status"], "closed");
    assert_eq!(
        btc("alice"),
        alice0 - 10_000_000 - fee(&open) - fee(&close) + 6_000_000
    );
    assert_eq!(btc("bob"), bob0 - 5_000_000 - fee(&dep) + 9_000_000);

    // A second channel: Alice closes with an old state, Bob challenges with the newer one.
    let (alice1, bob1) = (btc("alice"), btc("bob"));
    let open2 = tx(&[
        "channel-open",
        "--from",
        "alice",
        "--peer",
        "bob",
        "--deposit",
        "0.1 BTC",
        "--challenge-blocks",
        "4",
    ]);
    let id2 = open2["created"]["channel"]
        .as_u64()
        .unwrap_or_else(|| panic!("no channel id in {open2}"))
        .to_string();
    let (old, new) = (file("c2s1.json"), file("c2s2.json"));
    for (path, nonce, to_a, to_b) in [(&old, "1", "0.09", "0.01"), (&new, "2", "0.02", "0.08")] {
        ok(&cli(&[
            "channel",
            "state",
            "--from",
            "alice",
            "--channel",
            &id2,
            "--nonce",
            nonce,
            "--balance-a",
            to_a,
            "--balance-b",
            to_b,
            "--out",
            path,
        ]));
        ok(&cli(&["channel", "sign", "--from", "bob", "--state", path]));
    }
    let close2 = tx(&["channel-close", "--from", "alice", "--state", &old]);
    let c = channel(&id2);
    assert_eq!(
        (c["status"].as_str(), c["state"]["nonce"].as_u64()),
        (Some("closing"), Some(1)),
        "{c}"
    );
    let challenge = tx(&["channel-challenge", "--from", "bob", "--state", &new]);
    let c = channel(&id2);
    assert_eq!(
        (c["status"].as_str(), c["state"]["nonce"].as_u64()),
        (Some("closing"), Some(2)),
        "{c}"
    );
    assert_eq!(c["state"]["balance_b"], "8000000", "{c}");
    let deadline = c["deadline"]
        .as_u64()
        .unwrap_or_else(|| panic!("no deadline in {c}"));
    // The old state cannot come back.
    let e = fails(&cli(&[
        "tx",
        "channel-challenge",
        "--from",
        "alice",
        "--state",
        &old,
    ]));
    assert!(e.contains("not above"), "{e}");

    // Settling waits for the end of the challenge period. The devnet makes a block only when
    // there are transactions: Carol's transfers move the chain on.
    let height = || -> u64 {
        json(&ok(&cli(&["query", "chain", "--json"])))["height"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(height() < deadline);
    let e = fails(&cli(&[
        "tx",
        "channel-settle",
        "--from",
        "bob",
        "--channel",
        &id2,
    ]));
    assert!(e.contains("challenge period not over"), "{e}");
    let sink = SigningKey::from_seed(b"channel test sink")
        .address()
        .to_bech32(parabit_primitives::Network::Regtest);
    while height() < deadline {
        tx(&[
            "transfer", "--from", "carol", "--to", &sink, "--amount", "1sat",
        ]);
    }
    let settle = tx(&["channel-settle", "--from", "bob", "--channel", &id2]);
    assert_eq!(channel(&id2)["status"], "closed");
    assert_eq!(
        btc("alice"),
        alice1 - 10_000_000 - fee(&open2) - fee(&close2) + 2_000_000
    );
    assert_eq!(
        btc("bob"),
        bob1 - fee(&challenge) - fee(&settle) + 8_000_000
    );

    // A third channel with a payment in flight: Bob closes with it, settles after the period,
    // and claims the HTLC with its preimage.
    let (alice2, bob2) = (btc("alice"), btc("bob"));
    let open3 = tx(&[
        "channel-open",
        "--from",
        "alice",
        "--peer",
        "bob",
        "--deposit",
        "0.1 BTC",
        "--challenge-blocks",
        "2",
    ]);
    let id3 = open3["created"]["channel"]
        .as_u64()
        .unwrap_or_else(|| panic!("no channel id in {open3}"))
        .to_string();
    let preimage = [42u8; 32];
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(preimage));
    let h1 = file("c3s1.json");
    let htlc = format!("a->b:0.03 BTC:{hash}:+50");
    ok(&cli(&[
        "channel",
        "state",
        "--from",
        "alice",
        "--channel",
        &id3,
        "--nonce",
        "1",
        "--balance-a",
        "0.07",
        "--balance-b",
        "0",
        "--htlc",
        &htlc,
        "--out",
        &h1,
    ]));
    ok(&cli(&["channel", "sign", "--from", "bob", "--state", &h1]));
    let e = fails(&cli(&[
        "tx",
        "channel-close-coop",
        "--from",
        "bob",
        "--state",
        &h1,
    ]));
    assert!(e.contains("cannot carry HTLCs"), "{e}");
    let close3 = tx(&["channel-close", "--from", "bob", "--state", &h1]);
    let deadline3 = channel(&id3)["deadline"]
        .as_u64()
        .unwrap_or_else(|| panic!("no deadline"));
    while height() < deadline3 {
        tx(&[
            "transfer", "--from", "carol", "--to", &sink, "--amount", "1sat",
        ]);
    }
    let settle3 = tx(&["channel-settle", "--from", "bob", "--channel", &id3]);
    let c = channel(&id3);
    assert_eq!(c["status"], "settled", "{c}");
    assert_eq!(c["htlcs"][0]["index"], 0, "{c}");
    assert_eq!(c["htlcs"][0]["hash"], hash.as_str(), "{c}");
    let text = ok(&cli(&["query", "channel", &id3]));
    assert!(text.contains("pending HTLC 0: a->b 0.03 BTC"), "{text}");
    let e = fails(&cli(&[
        "tx",
        "channel-resolve-htlc",
        "--from",
        "bob",
        "--channel",
        &id3,
        "--index",
        "0",
        "--preimage",
        &hex::encode([41u8; 32]),
    ]));
    assert!(e.contains("does not hash"), "{e}");
    let claim = tx(&[
        "channel-resolve-htlc",
        "--from",
        "bob",
        "--channel",
        &id3,
        "--index",
        "0",
        "--preimage",
        &hex::encode(preimage),
    ]);
    assert_eq!(channel(&id3)["status"], "closed");
    assert_eq!(btc("alice"), alice2 - 10_000_000 - fee(&open3) + 7_000_000);
    assert_eq!(
        btc("bob"),
        bob2 - fee(&close3) - fee(&settle3) - fee(&claim) + 3_000_000
    );
    drop(devnet);
}
