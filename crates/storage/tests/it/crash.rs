//! Crash test: a writer process commits deterministic blocks in a loop and prints each height
//! after its commit returns; it is killed with SIGKILL at random moments, 20 times in a row.
//! After each kill the store reopens and must hold every acknowledged height, a state equal to
//! a deterministic replay up to its latest height, that state's root in the latest header, a
//! chain of linked headers, and pass redb's integrity check.
//!
//! The writer is this test binary itself, re-run on the ignored test [`writer_process`] with
//! the database path in an environment variable.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parabit_exec::{KeyMap, Value, WriteSet};
use parabit_primitives::{tx_root, BlockHeader, SignedTransaction};
use parabit_storage::{fresh_state_root, verify_proof, Store, StoreConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{commit_next, key, tx, Call};

const PATH_ENV: &str = "PARABIT_STORAGE_CRASH_DB";
const QUICK_ENV: &str = "PARABIT_STORAGE_CRASH_QUICK";
const KEYS: u32 = 200;
/// The writer stops here if nobody kills it.
const MAX_HEIGHT: u64 = 5_000;

/// The write set of block `h`: all keys at genesis, then a random mix of writes and deletes,
/// some with larger values.
fn block_writes(h: u64) -> WriteSet {
    let mut rng = ChaCha8Rng::seed_from_u64(h);
    let entries: Vec<(u32, Option<Value>)> = if h == 0 {
        (0..KEYS)
            .map(|k| (k, Some(Value::Num(u128::from(k)))))
            .collect()
    } else {
        (0..rng.gen_range(1..40))
            .map(|_| {
                let k = rng.gen_range(0..KEYS);
                let v = match rng.gen_range(0..10) {
                    0..=1 => None,
                    2 => Some(Value::bytes(vec![h as u8; rng.gen_range(100..3000)])),
                    _ => Some(Value::Num(rng.gen())),
                };
                (k, v)
            })
            .collect()
    };
    WriteSet(entries.into_iter().map(|(k, v)| (key(k), v)).collect())
}

/// The transactions of block `h`.
fn block_txs(h: u64) -> Vec<SignedTransaction<Call>> {
    let mut rng = ChaCha8Rng::seed_from_u64(h ^ 0xdead_beef);
    (0..rng.gen_range(0..5))
        .map(|i| tx(rng.gen_range(0..8), h, i))
        .collect()
}

/// The writer: commits the next deterministic block forever, acknowledging each on stdout.
#[test]
#[ignore = "child process of crash::sigkill_20_times (runs only with its environment)"]
fn writer_process() {
    let Ok(path) = std::env::var(PATH_ENV) else {
        return;
    };
    let config = StoreConfig {
        keep_versions: None,
        quick_repair: std::env::var(QUICK_ENV).as_deref() == Ok("1"),
        // A small cache, so that the writer also reads upper nodes from the file.
        node_cache_depth: 1,
    };
    let store = Store::open(&path, config).expect("writer opens the store");
    while store.next_height() < MAX_HEIGHT {
        let h = store.next_height();
        commit_next(&store, &block_writes(h), block_txs(h));
        // Printed only after the commit returned: an acknowledgement.
        println!("committed {h}");
    }
}

#[test]
fn sigkill_20_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::thread_rng();
    let mut model: KeyMap<Value> = KeyMap::default();
    let mut model_height: Option<u64> = None;
    let mut total_acks = 0usize;
    let started = Instant::now();

    for round in 0..20u32 {
        let mut child = Command::new(&exe)
            .args([
                "crash::writer_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(PATH_ENV, &path)
            .env(QUICK_ENV, if round % 2 == 0 { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let (send, recv) = mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(h) = line.strip_prefix("committed ") {
                    let h: u64 = h.trim().parse().expect("acknowledged height");
                    if send.send(h).is_err() {
                        break;
                    }
                }
            }
        });

        // Every fourth round dies early (possibly while opening); the others after at least
        // one acknowledgement, a random moment later.
        let mut acked = Vec::new();
        if round % 4 == 3 {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
        } else {
            let first = recv.recv_timeout(Duration::from_secs(60));
            if let Ok(h) = first {
                acked.push(h);
            } else {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("round {round}: the writer acknowledged nothing; stderr:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..120)));
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait");
        assert!(
            !status.success(),
            "round {round}: the writer was not killed"
        );
        reader.join().expect("reader thread");
        acked.extend(recv.try_iter());
        total_acks += acked.len();

        // Reopen and check.
        let mut store = Store::open(&path, StoreConfig::default())
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let latest = store.latest().map(|h| h.height);
        if let Some(&max_ack) = acked.iter().max() {
            assert!(
                latest.is_some_and(|l| l >= max_ack),
                "round {round}: acknowledged height {max_ack} lost (latest {latest:?})"
            );
        }
        if let (Some(before), Some(now)) = (model_height, latest) {
            assert!(
                now >= before,
                "round {round}: latest went back from {before} to {now}"
            );
        }
        let Some(latest) = latest else {
            assert!(model_height.is_none());
            continue;
        };
        // Deterministic replay up to the latest height.
        let mut next = model_height.map_or(0, |h| h + 1);
        while next <= latest {
            block_writes(next).apply_to(&mut model);
            next += 1;
        }
        model_height = Some(latest);
        assert_eq!(
            store.load_state().expect("state"),
            model,
            "round {round}: state differs"
        );
        let header = store.latest().expect("latest");
        let root = fresh_state_root(&model).expect("root");
        assert_eq!(
            header.state_root, root,
            "round {round}: root differs from replay"
        );
        let block = store
            .block::<Call>(latest)
            .expect("block")
            .expect("latest block");
        let txs = block_txs(latest);
        let parent = latest
            .checked_sub(1)
            .map(|p| store.header(p).expect("parent").expect("parent header"));
        let ids: Vec<_> = txs.iter().map(SignedTransaction::id).collect();
        let expected = BlockHeader {
            height: latest,
            parent_hash: parent.as_ref().map_or([0; 32], BlockHeader::hash),
            timestamp_ms: 1_000 + parent.as_ref().map_or(0, |p| p.height),
            tx_root: tx_root(&ids),
            state_root: root,
            bitcoin_height: 7,
            fees: 10 * txs.len() as u128,
            tx_count: txs.len() as u32,
        };
        assert_eq!(block.header, expected, "round {round}: latest header");
        assert_eq!(block.txs, txs, "round {round}: latest transactions");
        for id in &ids {
            assert!(store.tx_location(id).expect("tx index").is_some());
        }
        let probe = key(rng.gen_range(0..KEYS));
        let (v, proof) = store.get_with_proof(&probe, latest).expect("proof");
        assert_eq!(v.as_ref(), model.get(&probe));
        verify_proof(root, &probe, v.as_ref(), &proof).expect("proof verifies");
        // redb's integrity check, header links, hash index, state root from scratch.
        store
            .check()
            .unwrap_or_else(|e| panic!("round {round}: integrity: {e}"));
    }
    assert!(
        total_acks >= 15,
        "too few commits acknowledged ({total_acks}) to test anything"
    );
    eprintln!(
        "crash test: 20 kills, {total_acks} acknowledged commits, final height {model_height:?}, {:?}",
        started.elapsed()
    );
}
