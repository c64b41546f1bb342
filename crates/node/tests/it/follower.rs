//! Derivation: a follower that reads only the embedded regtest chain reaches the sequencer's
//! state root at every batch; a wrong state root is caught and named; malformed, foreign,
//! duplicate and out-of-order envelopes are skipped; a batch in chunks spread over several
//! Bitcoin blocks is taken once complete (repeated chunks ignored, inconsistent ones skipped,
//! across a restart, and after a reorg that removes some of its chunks); a reorg that removes
//! a batch is rolled back and re-derived; a restart continues; the follower's RPC is read-only.

use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::{FeeRate, Transaction, Txid};
use parabit_bitcoin::{build_commit_reveal, build_commit_reveals, RegtestChain, TaprootWallet};
use parabit_modules::genesis::SettlementSpec;
use parabit_modules::{Call, GenesisSpec};
use parabit_node::batch::{split_chunks, Batch, BatchCodec, Chunk, BATCH_VERSION, MAX_CHUNK_BYTES};
use parabit_node::chain::{Chain, ChainConfig};
use parabit_node::devnet::{devnet_genesis, DevnetGenesis};
use parabit_node::follower::{Follower, FollowerConfig};
use parabit_node::node::{Node, NodeConfig};
use parabit_node::rpc::{self, RpcContext, CODE_READ_ONLY};
use parabit_primitives::Network;

use crate::chain::transfer;

fn keypair(seed: u8) -> Keypair {
    Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[seed; 32]).expect("key"))
}

/// A sequencer chain, the regtest chain it posts to, and the batches it built.
pub(crate) struct Harness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) btc: Arc<RegtestChain>,
    pub(crate) seq: Arc<Node>,
    pub(crate) g: DevnetGenesis,
    pub(crate) spec: GenesisSpec,
    pub(crate) key: Keypair,
    pub(crate) wallet: TaprootWallet,
    pub(crate) batches: Vec<Batch>,
    pub(crate) nonce: u64,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let btc = Arc::new(RegtestChain::in_memory());
        let wallet = TaprootWallet::new(SecretKey::from_slice(&[5; 32]).expect("key"));
        btc.mine(101, wallet.script_pubkey()).expect("fund");
        let key = keypair(42);
        let g = devnet_genesis(1_700_000_000_000);
        let mut spec = g.spec.clone();
        let mut settlement = SettlementSpec::new(
            hex::encode(key.x_only_public_key().0.serialize()),
            u64::from(btc.height() + 1),
        );
        // Bridge deposits count once one block holds them (the bridge tests).
        settlement.deposit_confirmations = 1;
        spec.settlement = Some(settlement);
        let chain = Chain::open(&dir.path().join("seq.redb"), spec.clone(), &config())
            .expect("sequencer chain");
        let seq = Node::new(chain, NodeConfig::new(spec.chain_id));
        Harness {
            dir,
            btc,
            seq,
            g,
            spec,
            key,
            wallet,
            batches: Vec::new(),
            nonce: 0,
        }
    }

    /// `blocks` sequencer blocks of `txs` transfers each.
    pub(crate) fn produce(&mut self, blocks: usize, txs: u64) {
        let chain_id = self.spec.chain_id;
        let alice = self.g.accounts[0].key.clone();
        let bob = self.g.accounts[1].key.address();
        for _ in 0..blocks {
            let batch: Vec<_> = (0..txs)
                .map(|i| transfer(&alice, self.nonce + i, bob, 1_000 + i as u128, chain_id))
                .collect();
            self.nonce += txs;
            for r in self.seq.submit(batch) {
                r.expect("admitted");
            }
            let ts = 1_700_000_001_000 + self.seq.chain().head().height * 1000;
            self.seq.produce_block(ts, true).expect("produce");
        }
    }

    /// The next batch: the blocks produced since the last one.
    pub(crate) fn next_batch(&mut self) -> Batch {
        let first = self.batches.last().map_or(1, |b| b.last_height() + 1);
        let head = self.seq.chain().head().height;
        let blocks: Vec<_> = (first..=head)
            .map(|h| {
                self.seq
                    .chain()
                    .store()
                    .block::<Call>(h)
                    .expect("read")
                    .expect("block")
            })
            .collect();
        let batch = Batch {
            index: self.batches.len() as u64,
            prev_hash: self.batches.last().map_or([0; 32], Batch::hash),
            first_height: first,
            state_root: blocks.last().expect("blocks").header.state_root,
            blocks,
        };
        self.batches.push(batch.clone());
        batch
    }

    /// Posts `data` in an envelope signed by `signer` (commit and reveal to the mempool).
    fn post_data(&self, signer: &Keypair, version: u8, data: &[u8]) -> Txid {
        let coins = self
            .btc
            .list_unspent(&[self.wallet.script_pubkey().clone()]);
        let cr = build_commit_reveal(
            &self.wallet,
            signer,
            &[],
            &coins,
            version,
            data,
            FeeRate::from_sat_per_vb_u32(1),
        )
        .expect("commit/reveal");
        self.btc.send_raw_transaction(&cr.commit).expect("commit");
        self.btc.send_raw_transaction(&cr.reveal).expect("reveal")
    }

    /// Sends a commit for one envelope per entry of `datas` (signed by the sequencer) and
    /// returns the reveals, not sent.
    fn commit_envelopes(&self, datas: &[Vec<u8>]) -> Vec<Transaction> {
        let coins = self
            .btc
            .list_unspent(&[self.wallet.script_pubkey().clone()]);
        let set = build_commit_reveals(
            &self.wallet,
            &self.key,
            &[],
            &coins,
            BATCH_VERSION,
            datas,
            FeeRate::from_sat_per_vb_u32(1),
        )
        .expect("commit/reveals");
        self.btc.send_raw_transaction(&set.commit).expect("commit");
        set.reveals
    }

    /// The envelope data of `batch`'s chunks of at most `chunk_bytes`.
    fn chunks(&self, batch: &Batch, chunk_bytes: usize) -> Vec<Vec<u8>> {
        let codec = BatchCodec::from_genesis(&self.spec);
        let (_, chunks) = batch.to_chunks(&codec, chunk_bytes).expect("chunks");
        chunks.iter().map(Chunk::to_envelope_data).collect()
    }

    fn send(&self, txs: &[Transaction]) {
        for tx in txs {
            self.btc.send_raw_transaction(tx).expect("send");
        }
    }

    /// Posts `batch` (one chunk) and returns its reveal's txid.
    pub(crate) fn post(&self, batch: &Batch) -> Txid {
        let reveals = self.commit_envelopes(&self.chunks(batch, MAX_CHUNK_BYTES));
        assert_eq!(reveals.len(), 1);
        self.send(&reveals);
        reveals[0].compute_txid()
    }

    /// Batches the blocks produced since the last batch, posts the batch and mines one block
    /// over it; returns the batch and its reveal's txid.
    pub(crate) fn settle(&mut self) -> (Batch, Txid) {
        let batch = self.next_batch();
        let reveal = self.post(&batch);
        self.mine(1);
        (batch, reveal)
    }

    pub(crate) fn mine(&self, n: u32) {
        self.btc.mine(n, self.wallet.script_pubkey()).expect("mine");
    }

    pub(crate) fn follower(&self, confirmations: u32) -> Follower {
        Follower::open(
            &self.dir.path().join("follower.redb"),
            self.spec.clone(),
            Arc::new(self.btc.client(Vec::new())),
            FollowerConfig {
                confirmations,
                poll_interval: Duration::from_millis(20),
                chain: config(),
            },
        )
        .expect("follower")
    }

    /// The sequencer's root at `height`.
    pub(crate) fn root_at(&self, height: u64) -> [u8; 32] {
        self.seq
            .chain()
            .store()
            .header(height)
            .expect("read")
            .expect("header")
            .state_root
    }
}

pub(crate) fn config() -> ChainConfig {
    ChainConfig {
        threads: 2,
        keep_versions: Some(100),
    }
}

#[test]
fn a_follower_reaches_the_sequencer_root_at_every_batch_and_resumes() {
    let mut h = Harness::new();
    let f = h.follower(1);
    // Nothing posted yet: genesis, verified.
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 0);
    assert_eq!(f.verified_height(), 0);
    assert_eq!(f.status().verified_height(), Some(0));

    for (blocks, txs) in [(3, 5), (1, 0), (4, 20)] {
        h.produce(blocks, txs);
        let (batch, reveal) = h.settle();
        let mut events = f.node().subscribe();
        let r = f.sync_once().expect("sync");
        assert_eq!(r.batches, 1, "{r:?}");
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        // Subscribers see each derived block, as on the sequencer.
        let first = events.try_recv().expect("a new-block event");
        assert_eq!(first.header.height, batch.first_height);
        assert_eq!(first.tx_ids.len() as u64, txs);
        let head = f.node().chain().head();
        assert_eq!(head.height, batch.last_height());
        assert_eq!(head.state_root, batch.state_root);
        assert_eq!(head.state_root, h.root_at(batch.last_height()));
        assert_eq!(f.status().verified_height(), Some(batch.last_height()));
        let record = f.status().get(batch.index).expect("record");
        assert_eq!(record.reveal_txid, Some(reveal.to_byte_array()));
        assert_eq!(record.bitcoin_height, Some(h.btc.height()));
        assert_eq!(record.first_height, batch.first_height);
        assert!(record.vbytes > 0);
    }
    // Every block's root is the sequencer's.
    let last = h.seq.chain().head().height;
    for height in 1..=last {
        let mine = f
            .node()
            .chain()
            .store()
            .header(height)
            .expect("read")
            .expect("header");
        assert_eq!(mine.state_root, h.root_at(height), "block {height}");
    }
    // Confirmation depth: with 2 confirmations, a batch in the tip block waits.
    drop(f);
    let f = h.follower(2);
    assert_eq!(f.verified_height(), last, "reopened at the same head");
    h.produce(2, 3);
    let (batch, _) = h.settle();
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.skipped.len()), (0, 0), "{r:?}");
    assert_eq!(f.verified_height(), last);
    h.mine(1);
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 1);
    assert_eq!(f.node().chain().head().state_root, batch.state_root);
    // A restart reads on without applying anything twice.
    drop(f);
    let f = h.follower(1);
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.skipped.len()), (0, 0), "{r:?}");
    assert_eq!(f.verified_height(), batch.last_height());
    assert_eq!(f.status().batch_count(), 4);
}

#[test]
fn a_wrong_state_root_is_caught_and_named_and_the_last_good_state_served() {
    let mut h = Harness::new();
    h.produce(2, 4);
    let good = h.next_batch();
    h.post(&good);
    h.mine(1);
    h.produce(3, 4);
    // Test-only fault: the last block of batch 1 claims another state root.
    let mut bad = h.next_batch();
    let last = bad.blocks.len() - 1;
    bad.blocks[last].header.state_root = [0xAB; 32];
    bad.state_root = [0xAB; 32];
    bad.check().expect("internally consistent");
    let bad_height = bad.last_height();
    let bad_reveal = h.post(&bad);
    h.mine(1);
    let bad_bitcoin_height = h.btc.height();

    let f = h.follower(1);
    let r = f.sync_once().expect("sync");
    let m = r.mismatch.expect("caught");
    assert_eq!(m.batch_index, 1);
    assert_eq!(m.height, bad_height);
    assert_eq!(m.bitcoin_height, bad_bitcoin_height);
    assert_eq!(m.reveal_txid, bad_reveal);
    assert_eq!(m.claimed, hex::encode([0xAB; 32]));
    assert_eq!(m.computed, hex::encode(h.root_at(bad_height)));
    assert!(m.to_string().contains("batch 1"), "{m}");
    assert_eq!(f.mismatch(), Some(m));
    // The last good state: every block before the bad one, checked.
    let head = f.node().chain().head();
    assert_eq!(head.height, bad_height - 1);
    assert_eq!(head.state_root, h.root_at(bad_height - 1));
    assert_eq!(f.status().verified_height(), Some(bad_height - 1));
    assert_eq!(f.status().batch_count(), 1, "the bad batch is not recorded");
    // Following stopped: later batches are not read.
    h.produce(1, 1);
    let later = h.next_batch();
    h.post(&later);
    h.mine(1);
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.blocks), (0, 0));
    assert_eq!(f.node().chain().head().height, bad_height - 1);
    // A restart drops the bad batch's blocks (past the last batch record), derives again
    // and stops at the same place.
    drop(f);
    let f = h.follower(1);
    assert_eq!(f.verified_height(), good.last_height());
    let r = f.sync_once().expect("sync");
    let again = r.mismatch.expect("caught again");
    assert_eq!((again.batch_index, again.height), (1, bad_height));
    assert_eq!(f.node().chain().head().height, bad_height - 1);
}

#[test]
fn malformed_foreign_duplicate_and_out_of_order_envelopes_are_skipped() {
    let mut h = Harness::new();
    h.produce(2, 3);
    let b0 = h.next_batch();
    h.produce(2, 3);
    let b1 = h.next_batch();
    // Garbage under the sequencer key (a well-formed chunk), and another version.
    let garbage = split_chunks(0, b"not zstd at all", MAX_CHUNK_BYTES).expect("chunk");
    h.post_data(&h.key, BATCH_VERSION, &garbage[0].to_envelope_data());
    h.mine(1);
    let b0_data = h.chunks(&b0, MAX_CHUNK_BYTES).remove(0);
    h.post_data(&h.key, 9, &b0_data);
    h.mine(1);
    // Batch 0 signed by another key: ignored (not the sequencer's).
    h.post_data(&keypair(7), BATCH_VERSION, &b0_data);
    h.mine(1);
    // Batch 1 before batch 0.
    h.post(&b1);
    h.mine(1);
    h.post(&b0);
    h.mine(1);
    // Batch 0 again, then batch 1.
    h.post(&b0);
    h.mine(1);
    // A batch 1 whose previous hash is wrong.
    let mut forged = b1.clone();
    forged.prev_hash = [3; 32];
    h.post(&forged);
    h.mine(1);
    // A batch 1 carrying a transaction its sender did not sign (consistent headers).
    let mut unsigned = b1.clone();
    let last = unsigned.blocks.len() - 1;
    let block = &mut unsigned.blocks[last];
    block.txs[1].signature[5] ^= 1;
    block.header.tx_root = parabit_primitives::tx_root(&block.tx_ids());
    unsigned.check().expect("internally consistent");
    h.post(&unsigned);
    h.mine(1);
    h.post(&b1);
    h.mine(1);

    let f = h.follower(1);
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 2, "{r:?}");
    let reasons: Vec<(Option<u64>, &str)> = r
        .skipped
        .iter()
        .map(|s| (s.index, s.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert_eq!(reasons[0].0, Some(0), "the chunk's label");
    assert!(reasons[0].1.contains("decompress"), "{reasons:?}");
    assert_eq!(reasons[1].0, None);
    assert!(reasons[1].1.contains("version 9"), "{reasons:?}");
    assert_eq!(reasons[2].0, Some(1));
    assert!(reasons[2].1.contains("out of order"), "{reasons:?}");
    assert_eq!(reasons[3].0, Some(0));
    assert!(reasons[3].1.contains("duplicate"), "{reasons:?}");
    assert_eq!(reasons[4].0, Some(1));
    assert!(reasons[4].1.contains("previous batch hash"), "{reasons:?}");
    assert_eq!(reasons[5].0, Some(1));
    assert_eq!(
        reasons[5].1,
        format!(
            "block {}: transaction 1 has a bad signature",
            b1.last_height()
        )
    );
    let head = f.node().chain().head();
    assert_eq!(head.height, b1.last_height());
    assert_eq!(head.state_root, b1.state_root);
    assert!(f.mismatch().is_none());
}

#[test]
fn a_reorg_that_removes_a_batch_is_rolled_back_and_re_derived() {
    let mut h = Harness::new();
    h.produce(2, 5);
    let b0 = h.next_batch();
    h.post(&b0);
    h.mine(1);
    h.produce(3, 5);
    let b1 = h.next_batch();
    h.post(&b1);
    h.mine(1);
    let f = h.follower(1);
    let mut swaps = f.subscribe();
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 2);
    assert_eq!(f.verified_height(), b1.last_height());

    // Reorg out the block holding batch 1 (its transactions go back to the mempool).
    let fork = h.btc.height() - 1;
    h.btc.reorg(1, h.wallet.script_pubkey()).expect("reorg");
    let r = f.sync_once().expect("sync");
    assert_eq!(r.rollbacks.len(), 1, "{r:?}");
    assert_eq!(r.rollbacks[0].fork_height, fork);
    assert_eq!(r.rollbacks[0].batches_dropped, 1);
    assert_eq!(r.rollbacks[0].l2_height, b0.last_height());
    assert!(swaps.has_changed().expect("sender alive"));
    swaps.mark_unchanged();
    let head = f.node().chain().head();
    assert_eq!(head.height, b0.last_height());
    assert_eq!(head.state_root, b0.state_root);
    assert_eq!(f.status().batch_count(), 1);
    assert_eq!(f.status().verified_height(), Some(b0.last_height()));

    // Re-posted (mined again from the mempool): re-derived to the same root.
    h.mine(1);
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 1, "{r:?}");
    let head = f.node().chain().head();
    assert_eq!(head.height, b1.last_height());
    assert_eq!(head.state_root, b1.state_root);
    assert_eq!(
        f.status().get(1).and_then(|r| r.bitcoin_height),
        Some(h.btc.height())
    );
    // The rebuilt store is the one on disk.
    drop((f, swaps));
    let f = h.follower(1);
    assert_eq!(f.node().chain().head().state_root, b1.state_root);
    assert_eq!(f.status().batch_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_follower_serves_a_read_only_rpc() {
    let mut h = Harness::new();
    let f = Arc::new(h.follower(1));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(f.clone().run(stop_rx));
    let (addr, server) = rpc::start(
        RpcContext {
            node: f.node(),
            network: Network::Regtest,
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("rpc");
    h.produce(2, 2);
    let b0 = h.next_batch();
    h.post(&b0);
    h.mine(1);
    let http = HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .expect("client");
    let mut info = serde_json::Value::Null;
    for _ in 0..200 {
        info = http
            .request("pb_chainInfo", rpc_params![])
            .await
            .expect("chainInfo");
        if info["height"] == b0.last_height() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(info["height"], b0.last_height(), "{info}");
    assert_eq!(info["verified_height"], b0.last_height(), "{info}");
    assert_eq!(info["state_root"], hex::encode(b0.state_root));
    let tx = transfer(
        &h.g.accounts[0].key,
        100,
        h.g.accounts[1].key.address(),
        1,
        h.spec.chain_id,
    );
    let raw = hex::encode(tx.encode());
    let err = http
        .request::<String, _>("pb_sendRawTransaction", rpc_params![raw])
        .await
        .expect_err("read-only");
    match err {
        jsonrpsee::core::ClientError::Call(e) => {
            assert_eq!(e.code(), CODE_READ_ONLY);
            assert!(e.message().contains("read-only"), "{}", e.message());
        }
        other => panic!("not a call error: {other}"),
    }
    stop_tx.send(true).expect("stop");
    task.await.expect("join").expect("follower");
    let _ = server.stop();
}

/// Derivation speed against the sequencer's execution on the same machine (ignored: run with
/// `cargo test --release -p parabit-node --test it derivation_speed -- --ignored --nocapture`;
/// `PARABIT_DERIVE_TXS` sets the transaction count, default 20,000).
#[test]
#[ignore]
fn derivation_speed() {
    let total: u64 = std::env::var("PARABIT_DERIVE_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let per_block = 4_000u64.min(total);
    let mut h = Harness::new();
    let chain_id = h.spec.chain_id;
    // Many senders so blocks are not one nonce chain.
    let senders: Vec<_> = h.g.accounts.iter().map(|a| a.key.clone()).collect();
    let to = h.g.admin.key.address();
    let mut nonces = vec![0u64; senders.len()];
    let mut exec = Duration::ZERO;
    let mut produced = 0;
    while produced < total {
        let txs: Vec<_> = (0..per_block)
            .map(|i| {
                let s = (i as usize) % senders.len();
                nonces[s] += 1;
                transfer(&senders[s], nonces[s] - 1, to, 1, chain_id)
            })
            .collect();
        let t = std::time::Instant::now();
        h.seq
            .chain()
            .produce(txs, 1_700_000_001_000 + produced)
            .expect("produce");
        exec += t.elapsed();
        produced += per_block;
        {
            let b = h.next_batch();
            h.post(&b);
            h.mine(1);
        }
    }
    let f = h.follower(1);
    let t = std::time::Instant::now();
    let r = f.sync_once().expect("sync");
    let derive = t.elapsed();
    assert_eq!(r.txs, total);
    assert_eq!(
        f.node().chain().head().state_root,
        h.seq.chain().head().state_root
    );
    // The share of signature checks (the sequencer does them at admission, outside `exec`).
    let all: Vec<_> = (1..=h.seq.chain().head().height)
        .flat_map(|height| {
            h.seq
                .chain()
                .store()
                .block::<Call>(height)
                .expect("read")
                .expect("block")
                .txs
        })
        .collect();
    let t = std::time::Instant::now();
    let checked = parabit_primitives::verify_batch(&all);
    let sigs = t.elapsed();
    assert!(checked.iter().all(Result::is_ok));
    let seq_tps = total as f64 / exec.as_secs_f64();
    let fol_tps = total as f64 / derive.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "txs": total,
            "sequencer_exec_tps": seq_tps.round(),
            "follower_tps": fol_tps.round(),
            "ratio": (fol_tps / seq_tps * 100.0).round() / 100.0,
            "ratio_vs_admission_and_exec": (fol_tps / (total as f64 / (exec + sigs).as_secs_f64()) * 100.0).round() / 100.0,
            "follower_s": derive.as_secs_f64(),
            "signature_checks_s": sigs.as_secs_f64(),
        })
    );
}

/// The real batcher with its test-only fault switch: the follower derives the good batches
/// and names the faulty one (batch 2) and its last block.
#[test]
fn the_batchers_wrong_root_fault_is_caught_by_the_follower() {
    use parabit_node::batcher::{Batcher, BatcherConfig, StoreAccess};
    use parabit_node::settlement::SettlementStatus;

    let mut h = Harness::new();
    h.produce(12, 2);
    let wallet = TaprootWallet::from_keypair(keypair(5));
    let client = h.btc.client(vec![wallet.script_pubkey().clone()]);
    let mut batcher = Batcher::new(
        h.seq.clone() as Arc<dyn StoreAccess>,
        client,
        wallet,
        h.key,
        BatcherConfig {
            max_blocks: 4,
            interval: Duration::from_secs(3600),
            fault_wrong_root: Some(2),
            ..BatcherConfig::devnet()
        },
        Arc::new(SettlementStatus::new()),
    );
    let report = batcher
        .tick(parabit_node::node::now_ms())
        .expect("batcher tick");
    assert_eq!(report.built, vec![0, 1, 2], "{report:?}");
    h.mine(1);
    let f = h.follower(1);
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 2, "{r:?}");
    let m = f.mismatch().expect("the fault is caught");
    assert_eq!((m.batch_index, m.height), (2, 12));
    assert_eq!(f.verified_height(), 11);
    assert_eq!(f.node().chain().head().state_root, h.root_at(11));
    let bad = batcher.status().get(2).expect("record");
    assert_eq!(Some(m.reveal_txid.to_byte_array()), bad.reveal_txid);
}

#[test]
fn a_batch_in_chunks_over_several_blocks_is_taken_once_complete_even_across_a_restart() {
    let mut h = Harness::new();
    h.produce(3, 10);
    let b0 = h.next_batch();
    let datas = h.chunks(&b0, 200);
    let n = datas.len();
    assert!(n >= 3, "{n} chunks");
    let reveals = h.commit_envelopes(&datas);
    // The commit and the first reveal in one block: nothing to derive yet.
    h.send(&reveals[..1]);
    h.mine(1);
    let f = h.follower(1);
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.skipped.len()), (0, 0), "{r:?}");
    assert_eq!(f.verified_height(), 0);
    // The first chunk again, in another envelope (as an RBF replacement would carry it):
    // ignored, not skipped.
    h.post_data(&h.key, BATCH_VERSION, &datas[0]);
    h.send(&reveals[1..n - 1]);
    h.mine(1);
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.skipped.len()), (0, 0), "{r:?}");
    // The last chunk completes it.
    h.send(&reveals[n - 1..]);
    h.mine(1);
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.skipped.len()), (1, 0), "{r:?}");
    assert_eq!(f.node().chain().head().state_root, b0.state_root);
    let rec = f.status().get(0).expect("record");
    assert_eq!(
        rec.bitcoin_height,
        Some(h.btc.height()),
        "where the last chunk is"
    );
    assert_eq!(
        rec.reveal_txid,
        Some(reveals[n - 1].compute_txid().to_byte_array())
    );
    let ids: Vec<[u8; 32]> = reveals
        .iter()
        .map(|t| t.compute_txid().to_byte_array())
        .collect();
    assert_eq!(rec.reveal_txids, ids);
    let total: usize = reveals.iter().map(Transaction::vsize).sum();
    assert!(rec.vbytes as usize >= total, "{} < {total}", rec.vbytes);

    // Batch 1's first chunk lands in a block; the follower restarts before the rest.
    h.produce(2, 10);
    let b1 = h.next_batch();
    let datas = h.chunks(&b1, 200);
    let reveals = h.commit_envelopes(&datas);
    h.send(&reveals[..1]);
    h.mine(1);
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.skipped.len()), (0, 0), "{r:?}");
    drop(f);
    let f = h.follower(1);
    h.send(&reveals[1..]);
    h.mine(1);
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.skipped.len()), (1, 0), "{r:?}");
    assert_eq!(f.node().chain().head().state_root, b1.state_root);
    assert_eq!(f.status().batch_count(), 2);
}

#[test]
fn inconsistent_chunks_are_skipped_with_their_reason() {
    let mut h = Harness::new();
    h.produce(2, 5);
    let b0 = h.next_batch();
    let datas = h.chunks(&b0, 150);
    assert!(datas.len() >= 2);
    // A chunk number past its count (the header says chunk 5 of 2).
    let mut out_of_range = datas[0].clone();
    out_of_range[40..44].copy_from_slice(&5u32.to_le_bytes());
    out_of_range[44..48].copy_from_slice(&2u32.to_le_bytes());
    // Chunk 1 of batch 0 whose count disagrees with chunk 0's.
    let mut count_a = datas[0].clone();
    count_a[8] ^= 1; // another data hash: a group of its own
    let mut count_b = datas[1].clone();
    count_b[8] ^= 1;
    count_b[44..48].copy_from_slice(&(datas.len() as u32 + 1).to_le_bytes());
    // Every chunk present but one altered: the whole does not hash to the data hash.
    let mut altered = datas.clone();
    for d in &mut altered {
        d[9] ^= 1;
    }
    let last = altered.len() - 1;
    let end = altered[last].len() - 1;
    altered[last][end] ^= 1;
    let mut envelopes = vec![out_of_range, count_a, count_b];
    envelopes.extend(altered);
    let reveals = h.commit_envelopes(&envelopes);
    h.send(&reveals);
    h.mine(1);
    h.post(&b0);
    h.mine(1);
    let f = h.follower(1);
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 1, "{r:?}");
    let reasons: Vec<&str> = r.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("out of range"), "{reasons:?}");
    assert!(reasons[1].contains("chunk count mismatch"), "{reasons:?}");
    assert!(reasons[2].contains("hash"), "{reasons:?}");
    assert_eq!(r.skipped[1].index, Some(0));
    assert_eq!(f.node().chain().head().state_root, b0.state_root);
}

#[test]
fn a_reorg_that_removes_some_chunks_rolls_the_batch_back_and_re_derives_it() {
    let mut h = Harness::new();
    h.produce(2, 5);
    let b0 = h.next_batch();
    h.post(&b0);
    h.mine(1);
    h.produce(3, 10);
    let b1 = h.next_batch();
    let datas = h.chunks(&b1, 200);
    let reveals = h.commit_envelopes(&datas);
    h.send(&reveals[..1]);
    h.mine(1);
    h.send(&reveals[1..]);
    h.mine(1);
    let f = h.follower(1);
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 2, "{r:?}");
    assert_eq!(f.node().chain().head().state_root, b1.state_root);
    // The block holding the later chunks leaves the chain; the first chunk stays.
    h.btc.reorg(1, h.wallet.script_pubkey()).expect("reorg");
    let r = f.sync_once().expect("sync");
    assert_eq!(r.rollbacks.len(), 1, "{r:?}");
    assert_eq!(r.rollbacks[0].batches_dropped, 1);
    assert_eq!(f.node().chain().head().height, b0.last_height());
    assert_eq!(r.batches, 0);
    // The reveals are mined again: batch 1 is whole once more.
    h.mine(1);
    let r = f.sync_once().expect("sync");
    assert_eq!((r.batches, r.skipped.len()), (1, 0), "{r:?}");
    assert_eq!(f.node().chain().head().state_root, b1.state_root);
    assert_eq!(
        f.status().get(1).and_then(|r| r.bitcoin_height),
        Some(h.btc.height())
    );
}
