//! Settlement, sequencer side: the batcher posts batches of the node's blocks to an in-process
//! regtest chain; the envelopes on Bitcoin decode to exactly the stored blocks; records reach
//! `confirmed`; a restart does not post twice; vanished, reorged-out and stuck pairs are
//! re-posted or replaced; a batch split into several chunks goes out as one commit and one
//! reveal per chunk, chained so that Bitcoin keeps batch order, and a partly mined set is
//! completed.

use std::sync::Arc;
use std::time::Duration;

use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::{OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use parabit_bitcoin::{verified_envelopes_in_block, RegtestChain, RegtestClient, TaprootWallet};
use parabit_modules::Call;
use parabit_node::batch::{Batch, BatchCodec, Chunk};
use parabit_node::batcher::{Batcher, BatcherConfig, StoreAccess};
use parabit_node::node::Node;
use parabit_node::rpc::{self, RpcContext};
use parabit_node::settlement::{BatchStatus, SettlementStatus};
use parabit_primitives::Network;

use crate::chain::{open, transfer};

const T0: u64 = 1_800_000_000_000;

struct Setup {
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    btc: Arc<RegtestChain>,
    keypair: Keypair,
    g: parabit_node::devnet::DevnetGenesis,
    nonce: u64,
}

fn miner_script() -> ScriptBuf {
    let kp = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[0x77; 32]).unwrap());
    TaprootWallet::from_keypair(kp).script_pubkey().clone()
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, g) = open(dir.path(), 2);
    let keypair = Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[0x42; 32]).unwrap());
    let btc = Arc::new(RegtestChain::in_memory());
    let wallet = TaprootWallet::from_keypair(keypair);
    btc.mine(110, wallet.script_pubkey()).expect("fund");
    Setup {
        _dir: dir,
        node,
        btc,
        keypair,
        g,
        nonce: 0,
    }
}

impl Setup {
    /// `n` L2 blocks of two transfers each.
    fn blocks(&mut self, n: u64, t: u64) {
        let chain_id = self.node.chain().chain_id();
        let alice = &self.g.accounts[0].key;
        let bob = self.g.accounts[1].key.address();
        for i in 0..n {
            let txs = (0..2)
                .map(|_| {
                    self.nonce += 1;
                    transfer(alice, self.nonce - 1, bob, 5, chain_id)
                })
                .collect();
            assert!(self.node.submit(txs).iter().all(|r| r.is_ok()));
            self.node
                .produce_block(t + i, true)
                .expect("produce")
                .expect("a block");
        }
    }

    fn client(&self) -> RegtestClient {
        let wallet = TaprootWallet::from_keypair(self.keypair);
        self.btc.client(vec![wallet.script_pubkey().clone()])
    }

    fn batcher(&self, config: BatcherConfig) -> Batcher<RegtestClient> {
        let status =
            Arc::new(SettlementStatus::load(self.node.chain().store()).expect("load records"));
        Batcher::new(
            self.node.clone() as Arc<dyn StoreAccess>,
            self.client(),
            TaprootWallet::from_keypair(self.keypair),
            self.keypair,
            config,
            status,
        )
    }

    fn prevout(&self, op: &OutPoint) -> Option<TxOut> {
        self.btc
            .transaction(&op.txid)
            .and_then(|(tx, _)| tx.output.get(op.vout as usize).cloned())
    }

    /// Every batch on the active chain signed by the sequencer, in Bitcoin order (of the
    /// chunk that completes it).
    fn batches_on_chain(&self) -> Vec<Batch> {
        let key = self.keypair.x_only_public_key().0;
        let codec = BatchCodec::from_genesis(self.node.chain().spec());
        let mut pending: std::collections::BTreeMap<(u64, [u8; 32]), Vec<Chunk>> =
            Default::default();
        let mut out = Vec::new();
        for h in 0..=self.btc.height() {
            let block = self.btc.block_at(h).expect("block");
            for (_, _, env) in verified_envelopes_in_block(&block, |op| self.prevout(op)) {
                if env.key == key {
                    let chunk = Chunk::from_envelope(env.version, &env.data).expect("a chunk");
                    let k = (chunk.header.index, chunk.header.data_hash);
                    let count = chunk.header.count as usize;
                    let group = pending.entry(k).or_default();
                    group.push(chunk);
                    if group.len() == count {
                        let chunks = pending.remove(&k).expect("group");
                        out.push(Batch::from_chunks(&codec, &chunks).expect("decodes"));
                    }
                }
            }
        }
        assert!(pending.is_empty(), "incomplete batches on chain");
        out
    }
}

fn config() -> BatcherConfig {
    BatcherConfig {
        max_blocks: 10,
        interval: Duration::from_secs(3600),
        bump_after: Duration::from_secs(3600),
        ..BatcherConfig::devnet()
    }
}

fn txid(bytes: Option<[u8; 32]>) -> Txid {
    Txid::from_byte_array(bytes.expect("txid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_bitcoin_are_exactly_the_stored_blocks() {
    let mut s = setup();
    s.blocks(25, T0);
    let mut b = s.batcher(config());
    s.node.attach_settlement(b.status().clone());
    let now = parabit_node::node::now_ms();
    let r = b.tick(now).expect("tick");
    assert_eq!(
        r.built,
        vec![0, 1],
        "two full batches of 10 blocks, 5 blocks wait"
    );
    let status = b.status().clone();
    let b0 = status.get(0).expect("batch 0");
    let b1 = status.get(1).expect("batch 1");
    assert_eq!((b0.first_height, b0.last_height, b0.tx_count), (1, 10, 20));
    assert_eq!((b1.first_height, b1.last_height), (11, 20));
    assert_eq!(b0.status, BatchStatus::Posted);
    // Batch 1's commit spends batch 0's reveal output: Bitcoin cannot reorder them.
    assert_eq!(b0.reveal_txids, vec![b0.reveal_txid.expect("reveal")]);
    let commit1: Transaction =
        parabit_bitcoin::bitcoin::consensus::deserialize(&b1.commit_tx).expect("tx");
    assert!(commit1
        .input
        .iter()
        .any(|i| i.previous_output.txid == txid(b0.reveal_txid)));
    assert!(s.btc.in_mempool(&txid(b0.reveal_txid)));

    s.btc.mine(1, &miner_script()).expect("mine");
    let r = b.tick(now + 1).expect("tick");
    assert_eq!(r.confirmed, vec![0, 1]);
    assert!(r.built.is_empty() && r.broadcast.is_empty());
    // The interval passes: the last 5 blocks go out.
    let r = b.tick(now + 3_600_001).expect("tick");
    assert_eq!(r.built, vec![2]);
    s.btc.mine(1, &miner_script()).expect("mine");
    b.tick(now + 3_600_002).expect("tick");
    for i in 0..3 {
        let rec = status.get(i).expect("record");
        assert_eq!(rec.status, BatchStatus::Confirmed, "batch {i}");
        assert!(rec.bitcoin_height.is_some() && rec.vbytes > 0 && rec.fee_sat > 0);
    }

    let on_chain = s.batches_on_chain();
    assert_eq!(on_chain.len(), 3);
    let mut prev = [0u8; 32];
    let mut next_height = 1;
    for (i, batch) in on_chain.iter().enumerate() {
        assert_eq!(batch.index, i as u64);
        assert_eq!(batch.prev_hash, prev);
        assert_eq!(batch.first_height, next_height);
        for block in &batch.blocks {
            let stored = s
                .node
                .chain()
                .store()
                .block::<Call>(block.header.height)
                .expect("read")
                .expect("stored");
            assert_eq!(&stored, block);
        }
        assert_eq!(batch.hash(), status.get(i as u64).expect("record").hash);
        prev = batch.hash();
        next_height = batch.last_height() + 1;
    }
    assert_eq!(next_height, 26);
    assert_eq!(
        on_chain[2].state_root,
        s.node.chain().head().state_root,
        "the last batch ends at the head's root"
    );

    // The RPC shows them.
    let module = rpc::module(RpcContext {
        node: s.node.clone(),
        network: Network::Regtest,
    })
    .expect("module");
    let info: serde_json::Value = module.call("pb_chainInfo", [(); 0]).await.expect("info");
    assert_eq!(info["batches_posted"], 3);
    assert!(info.get("verified_height").is_none());
    let got: serde_json::Value = module.call("pb_getBatch", [1]).await.expect("batch");
    assert_eq!(got["index"], 1);
    assert_eq!(got["first_height"], 11);
    assert_eq!(got["last_height"], 20);
    assert_eq!(got["tx_count"], 20);
    assert_eq!(got["status"], "confirmed");
    assert_eq!(got["reveal_txid"], txid(b1.reveal_txid).to_string());
    assert_eq!(
        got["reveal_txids"],
        serde_json::json!([txid(b1.reveal_txid).to_string()])
    );
    assert_eq!(got["commit_txid"], txid(b1.commit_txid).to_string());
    let of: serde_json::Value = module
        .call("pb_getBatchOfBlock", [15])
        .await
        .expect("batch of block");
    assert_eq!(of["index"], 1);
    assert_eq!(of["bitcoin_height"], got["bitcoin_height"]);
    let of: serde_json::Value = module
        .call("pb_getBatchOfBlock", [26])
        .await
        .expect("no batch yet");
    assert!(of.is_null());
    let none: serde_json::Value = module.call("pb_getBatch", [9]).await.expect("none");
    assert!(none.is_null());
    assert!(module
        .call::<_, serde_json::Value>("pb_getBatch", ["x"])
        .await
        .is_err());
}

#[test]
fn a_restart_neither_double_posts_nor_skips() {
    let mut s = setup();
    s.blocks(20, T0);
    let now = parabit_node::node::now_ms();
    {
        let mut b = s.batcher(config());
        assert_eq!(b.tick(now).expect("tick").built, vec![0, 1]);
    }
    let mempool = s.btc.mempool().len();
    assert_eq!(mempool, 4);
    // Restart: the records come back from the store; nothing is posted again.
    let mut b = s.batcher(config());
    let r = b.tick(now + 1).expect("tick");
    assert_eq!(r, Default::default());
    assert_eq!(s.btc.mempool().len(), mempool);
    // More blocks: the next batch continues at height 21, chained to batch 1.
    s.blocks(10, T0 + 100);
    let r = b.tick(now + 2).expect("tick");
    assert_eq!(r.built, vec![2]);
    let b1 = b.status().get(1).expect("1");
    let b2 = b.status().get(2).expect("2");
    assert_eq!((b2.first_height, b2.last_height), (21, 30));
    assert_ne!(b1.hash, b2.hash);

    // The pairs vanish from the mempool (as after a restart of bitcoind without its
    // mempool): a restarted batcher broadcasts the same stored pairs again.
    let before: Vec<_> = b.status().all();
    for rec in &before {
        s.btc
            .remove_from_mempool(&txid(rec.commit_txid))
            .expect("evict");
    }
    assert!(s.btc.mempool().is_empty());
    drop(b);
    let mut b = s.batcher(config());
    let r = b.tick(now + 3).expect("tick");
    assert_eq!(r.broadcast, vec![0, 1, 2]);
    assert!(r.reposted.is_empty(), "the same pairs are valid again");
    for rec in &before {
        assert!(s.btc.in_mempool(&txid(rec.reveal_txid)));
        assert_eq!(
            b.status().get(rec.index).expect("rec").reveal_txid,
            rec.reveal_txid
        );
    }
    s.btc.mine(1, &miner_script()).expect("mine");
    assert_eq!(b.tick(now + 4).expect("tick").confirmed, vec![0, 1, 2]);
    assert_eq!(s.batches_on_chain().len(), 3);
}

#[test]
fn a_reorged_out_batch_is_posted_again() {
    let mut s = setup();
    s.blocks(10, T0);
    let now = parabit_node::node::now_ms();
    let mut b = s.batcher(config());
    assert_eq!(b.tick(now).expect("tick").built, vec![0]);
    s.btc.mine(1, &miner_script()).expect("mine");
    assert_eq!(b.tick(now + 1).expect("tick").confirmed, vec![0]);
    let first = b.status().get(0).expect("0");
    let old_block = first.bitcoin_block;

    // Reorg the block out and make its transactions vanish; spend the commit's inputs
    // elsewhere so the old pair can never come back.
    s.btc.invalidate(1).expect("invalidate");
    s.btc
        .remove_from_mempool(&txid(first.commit_txid))
        .expect("evict");
    let commit: Transaction =
        parabit_bitcoin::bitcoin::consensus::deserialize(&first.commit_tx).expect("tx");
    let wallet = TaprootWallet::from_keypair(s.keypair);
    let inputs: Vec<_> = s
        .client()
        .chain()
        .list_unspent(&[wallet.script_pubkey().clone()])
        .into_iter()
        .filter(|u| commit.input.iter().any(|i| i.previous_output == u.outpoint))
        .collect();
    assert!(!inputs.is_empty());
    let spend = wallet
        .fund(
            &inputs,
            &[],
            vec![TxOut {
                value: parabit_bitcoin::bitcoin::Amount::from_sat(10_000),
                script_pubkey: miner_script(),
            }],
            parabit_bitcoin::bitcoin::FeeRate::from_sat_per_vb_u32(2),
        )
        .expect("spend");
    s.btc.send_raw_transaction(&spend.tx).expect("double spend");
    s.btc.mine(3, &miner_script()).expect("longer branch");

    let r = b.tick(now + 2).expect("tick");
    assert_eq!(r.reposted, vec![0]);
    let again = b.status().get(0).expect("0");
    assert_eq!(again.status, BatchStatus::Posted);
    assert_ne!(again.reveal_txid, first.reveal_txid, "a new pair");
    assert_eq!(again.postings, 2);
    assert_eq!(again.hash, first.hash, "the same batch");
    s.btc.mine(1, &miner_script()).expect("mine");
    assert_eq!(b.tick(now + 3).expect("tick").confirmed, vec![0]);
    let done = b.status().get(0).expect("0");
    assert_ne!(done.bitcoin_block, old_block);
    let on_chain = s.batches_on_chain();
    assert_eq!(on_chain.len(), 1);
    assert_eq!(on_chain[0].hash(), first.hash);
}

#[test]
fn a_reorg_that_keeps_the_pair_in_the_mempool_confirms_it_again() {
    let mut s = setup();
    s.blocks(10, T0);
    let now = parabit_node::node::now_ms();
    let mut b = s.batcher(config());
    b.tick(now).expect("tick");
    s.btc.mine(1, &miner_script()).expect("mine");
    b.tick(now + 1).expect("tick");
    let first = b.status().get(0).expect("0");
    s.btc.reorg(1, &miner_script()).expect("reorg");
    let r = b.tick(now + 2).expect("tick");
    assert!(r.reposted.is_empty());
    assert_eq!(b.status().get(0).expect("0").status, BatchStatus::Posted);
    s.btc.mine(1, &miner_script()).expect("mine");
    b.tick(now + 3).expect("tick");
    let rec = b.status().get(0).expect("0");
    assert_eq!(rec.status, BatchStatus::Confirmed);
    assert_eq!(rec.reveal_txid, first.reveal_txid);
    assert_ne!(rec.bitcoin_block, first.bitcoin_block);
}

#[test]
fn a_stuck_pair_is_replaced_by_fee() {
    let mut s = setup();
    s.blocks(20, T0);
    let now = parabit_node::node::now_ms();
    let mut cfg = config();
    cfg.bump_after = Duration::from_secs(30);
    let mut b = s.batcher(cfg);
    assert_eq!(b.tick(now).expect("tick").built, vec![0, 1]);
    let old0 = b.status().get(0).expect("0");
    let old1 = b.status().get(1).expect("1");
    assert!(b.tick(now + 1_000).expect("tick").bumped.is_empty());
    let r = b.tick(now + 31_000).expect("tick");
    assert_eq!(r.bumped, vec![0]);
    assert_eq!(
        r.reposted,
        vec![1],
        "batch 1 was chained to the replaced reveal"
    );
    let new0 = b.status().get(0).expect("0");
    assert!(new0.fee_rate_sat_kwu > old0.fee_rate_sat_kwu);
    assert!(!s.btc.in_mempool(&txid(old0.commit_txid)));
    assert!(!s.btc.in_mempool(&txid(old1.reveal_txid)));
    assert!(s.btc.in_mempool(&txid(new0.reveal_txid)));
    s.btc.mine(1, &miner_script()).expect("mine");
    assert_eq!(b.tick(now + 32_000).expect("tick").confirmed, vec![0, 1]);
    let on_chain = s.batches_on_chain();
    assert_eq!(
        on_chain.iter().map(|b| b.index).collect::<Vec<_>>(),
        vec![0, 1]
    );
}

/// A config whose batches split into chunks of 300 bytes (several reveals each).
fn chunked() -> BatcherConfig {
    BatcherConfig {
        chunk_bytes: 300,
        ..config()
    }
}

#[test]
fn a_chunked_batch_is_one_commit_and_a_reveal_per_chunk_in_batch_order() {
    let mut s = setup();
    s.blocks(20, T0);
    let now = parabit_node::node::now_ms();
    let mut b = s.batcher(chunked());
    assert_eq!(b.tick(now).expect("tick").built, vec![0, 1]);
    let b0 = b.status().get(0).expect("0");
    let b1 = b.status().get(1).expect("1");
    for r in [&b0, &b1] {
        let n = (r.data_bytes as usize).div_ceil(300);
        assert!(n >= 2, "{} bytes", r.data_bytes);
        assert_eq!(r.reveal_txids.len(), n);
        assert_eq!(r.reveal_txs.len(), n);
        assert_eq!(r.reveal_txid, r.reveal_txids.last().copied());
        let commit: Transaction =
            parabit_bitcoin::bitcoin::consensus::deserialize(&r.commit_tx).expect("commit");
        let mut vbytes = commit.vsize();
        for (k, (raw, id)) in r.reveal_txs.iter().zip(&r.reveal_txids).enumerate() {
            let reveal: Transaction =
                parabit_bitcoin::bitcoin::consensus::deserialize(raw).expect("reveal");
            assert_eq!(reveal.compute_txid(), txid(Some(*id)));
            assert_eq!(
                reveal.input[0].previous_output,
                OutPoint {
                    txid: commit.compute_txid(),
                    vout: k as u32
                },
                "reveal {k} spends commit output {k}"
            );
            vbytes += reveal.vsize();
            assert!(s.btc.in_mempool(&reveal.compute_txid()));
        }
        assert_eq!(r.vbytes, vbytes as u64);
    }
    // Batch 1's commit spends the outputs of every reveal of batch 0.
    let commit1: Transaction =
        parabit_bitcoin::bitcoin::consensus::deserialize(&b1.commit_tx).expect("tx");
    for id in &b0.reveal_txids {
        assert!(
            commit1.input.iter().any(|i| i.previous_output
                == OutPoint {
                    txid: txid(Some(*id)),
                    vout: 0
                }),
            "batch 1 comes after every chunk of batch 0"
        );
    }
    s.btc.mine(1, &miner_script()).expect("mine");
    assert_eq!(b.tick(now + 1).expect("tick").confirmed, vec![0, 1]);
    let on_chain = s.batches_on_chain();
    assert_eq!(on_chain.len(), 2);
    for (batch, rec) in on_chain.iter().zip([&b0, &b1]) {
        assert_eq!(batch.hash(), rec.hash);
        for block in &batch.blocks {
            let stored = s
                .node
                .chain()
                .store()
                .block::<Call>(block.header.height)
                .expect("read")
                .expect("stored");
            assert_eq!(&stored, block);
        }
    }
    let j = b.status().get(1).expect("1").to_json();
    assert_eq!(
        j["reveal_txids"].as_array().map(Vec::len),
        Some(b1.reveal_txids.len())
    );
}

#[test]
fn a_partly_mined_set_is_completed_and_confirmed_at_its_last_reveal() {
    let mut s = setup();
    s.blocks(10, T0);
    let now = parabit_node::node::now_ms();
    let mut cfg = chunked();
    cfg.bump_after = Duration::from_secs(30);
    let mut b = s.batcher(cfg);
    assert_eq!(b.tick(now).expect("tick").built, vec![0]);
    let r0 = b.status().get(0).expect("0");
    assert!(r0.reveal_txids.len() >= 2);
    // Only the commit and the first reveal get mined; the other reveals vanish.
    for id in &r0.reveal_txids[1..] {
        s.btc.remove_from_mempool(&txid(Some(*id))).expect("evict");
    }
    s.btc.mine(1, &miner_script()).expect("mine");
    let partial_height = s.btc.height();
    // Not in a block yet as a whole; the missing reveals are sent again, not replaced.
    let r = b.tick(now + 31_000).expect("tick");
    assert_eq!(r.broadcast, vec![0]);
    assert!(r.bumped.is_empty() && r.reposted.is_empty(), "{r:?}");
    let rec = b.status().get(0).expect("0");
    assert_eq!(rec.bitcoin_height, None);
    assert_eq!(rec.reveal_txids, r0.reveal_txids);
    for id in &r0.reveal_txids[1..] {
        assert!(s.btc.in_mempool(&txid(Some(*id))));
    }
    // Waiting past bump_after with part of the set mined does not try an RBF.
    let r = b.tick(now + 62_000).expect("tick");
    assert!(r.bumped.is_empty(), "{r:?}");
    s.btc.mine(1, &miner_script()).expect("mine");
    let r = b.tick(now + 63_000).expect("tick");
    assert_eq!(r.confirmed, vec![0]);
    let rec = b.status().get(0).expect("0");
    assert_eq!(
        rec.bitcoin_height,
        Some(partial_height + 1),
        "at its last reveal"
    );
    assert_eq!(s.batches_on_chain().len(), 1);
}
