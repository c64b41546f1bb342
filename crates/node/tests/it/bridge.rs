//! The BTC bridge end to end on the embedded regtest chain: a real deposit transaction is
//! read by the sequencer's watcher and credited in the next block, and a full node reading
//! only Bitcoin agrees; a sequencer that leaves out a deposit or invents one is caught and the
//! block named; withdrawals are burned on L2 and paid on Bitcoin once, across restarts; the
//! RPC shows deposits, withdrawals and the bridge.

use std::sync::Arc;

use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClientBuilder;
use jsonrpsee::rpc_params;
use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::secp256k1::SecretKey;
use parabit_bitcoin::bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Transaction, Txid};
use parabit_bitcoin::bridge::{build_deposit, parse_payout, BitcoinDeposit};
use parabit_bitcoin::TaprootWallet;
use parabit_modules::bank::balance_key;
use parabit_modules::bridge::{query_deposit, query_totals, BridgeMsg};
use parabit_modules::{Call, SignedTx, Tx};
use parabit_node::bridge::{deposit_tx, BridgeParams, DepositWatcher, Payer, PayerConfig};
use parabit_node::mempool::MempoolError;
use parabit_node::rpc::{self, RpcContext};
use parabit_primitives::{Address, AssetId, Network, SigningKey, TxStatus};
use serde_json::Value as Json;

use crate::follower::Harness;

/// A harness whose sequencer has a deposit watcher, and a user with spendable Bitcoin.
struct Bridged {
    h: Harness,
    watcher: Arc<DepositWatcher>,
    user: TaprootWallet,
    params: BridgeParams,
}

impl Bridged {
    fn new() -> Bridged {
        let h = Harness::new();
        let user = TaprootWallet::new(SecretKey::from_slice(&[9; 32]).expect("key"));
        h.btc
            .mine(101, user.script_pubkey())
            .expect("fund the user");
        let params = BridgeParams::of(&h.spec)
            .expect("settlement")
            .expect("a bridge");
        let watcher = Arc::new(
            DepositWatcher::new(
                params.clone(),
                &h.key,
                Arc::new(h.btc.client(Vec::new())),
                h.seq.chain().head().bitcoin_height,
            )
            .expect("watcher"),
        );
        assert!(h.seq.attach_deposits(Arc::clone(&watcher)));
        Bridged {
            h,
            watcher,
            user,
            params,
        }
    }

    /// A deposit of `sats` to `to`, sent to the mempool.
    fn deposit(&self, to: Address, sats: u64) -> Txid {
        let coins = self
            .h
            .btc
            .list_unspent(&[self.user.script_pubkey().clone()]);
        let funded = build_deposit(
            &self.user,
            &coins,
            &self.params.script,
            to.0,
            Amount::from_sat(sats),
            FeeRate::from_sat_per_vb_u32(1),
        )
        .expect("deposit");
        self.h.btc.send_raw_transaction(&funded.tx).expect("sent")
    }

    /// Deposits `sats` to carol and commits the block crediting it; returns carol.
    fn credited(&self, sats: u64) -> Address {
        let carol = self.h.g.accounts[2].key.address();
        self.deposit(carol, sats);
        self.confirm_and_produce().expect("deposit block");
        carol
    }

    /// Mines a block, lets the watcher read it, and produces an L2 block.
    fn confirm_and_produce(&self) -> Option<Arc<parabit_node::chain::Committed>> {
        self.h.mine(1);
        self.watcher.poll().expect("poll");
        let ts = 1_700_000_100_000 + self.h.seq.chain().head().height * 1000;
        self.h.seq.produce_block(ts, false).expect("produce")
    }

    /// The sequencer's withdrawal payer over the regtest chain (a new one is a restart).
    fn payer(&self) -> Payer {
        Payer::new(
            Arc::clone(&self.h.seq),
            Arc::new(self.h.btc.client(Vec::new())),
            self.h.key,
            PayerConfig::default(),
        )
        .expect("payer")
    }

    /// Submits `txs` and commits them (with any deposits read) in the next block.
    fn commit(&self, txs: Vec<SignedTx>) -> Arc<parabit_node::chain::Committed> {
        for r in self.h.seq.submit(txs) {
            r.expect("admitted");
        }
        let ts = 1_700_000_900_000 + self.h.seq.chain().head().height * 1000;
        self.h
            .seq
            .produce_block(ts, false)
            .expect("produce")
            .expect("a block")
    }

    fn btc_balance(&self, who: &Address) -> u128 {
        self.h
            .seq
            .chain()
            .with_state(|s| match s.get(&balance_key(who, AssetId::BTC)) {
                Some(parabit_exec::Value::Num(n)) => *n,
                _ => 0,
            })
    }
}

/// A P2WPKH script of a made-up key hash.
fn p2wpkh(fill: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&parabit_bitcoin::bitcoin::WPubkeyHash::from_byte_array(
        [fill; 20],
    ))
}

/// A withdrawal of `sats` by `from` to `script`.
fn withdraw(
    from: &SigningKey,
    nonce: u64,
    sats: u64,
    script: &ScriptBuf,
    chain_id: u64,
) -> SignedTx {
    from.sign(Tx {
        chain_id,
        sender: from.address(),
        nonce,
        fee: 10,
        call: Call::Bridge(BridgeMsg::Withdraw {
            amount: sats,
            script_pubkey: script.to_bytes(),
        }),
    })
}

#[test]
fn a_bitcoin_deposit_is_credited_in_the_next_block_and_a_full_node_agrees() {
    let mut b = Bridged::new();
    let carol = b.h.g.accounts[2].key.address();
    let before = b.btc_balance(&carol);
    let txid = b.deposit(carol, 250_000);
    // Unconfirmed: nothing to include.
    b.watcher.poll().expect("poll");
    assert!(b
        .h
        .seq
        .produce_block(1_700_000_050_000, false)
        .expect("produce")
        .is_none());
    let block = b.confirm_and_produce().expect("a block with the deposit");
    let deposit_height = b.h.btc.height();
    assert_eq!(block.header.bitcoin_height, u64::from(deposit_height));
    assert_eq!(block.receipts.len(), 1);
    assert_eq!(block.receipts[0].status, TxStatus::Success);
    assert_eq!(block.receipts[0].fee_paid, 0);
    assert_eq!(b.btc_balance(&carol), before + 250_000);
    let credited =
        b.h.seq
            .chain()
            .with_state(|s| query_deposit(s, &txid.to_byte_array(), 0));
    assert_eq!(credited, Some(250_000));
    assert_eq!(b.h.seq.chain().with_state(query_totals), (250_000, 0));
    // Nothing new on Bitcoin: no block, and the next block's range is empty.
    assert!(b.confirm_and_produce().is_none());
    // Two deposits in one Bitcoin block, then a user transfer: one L2 block, deposits first.
    let dave = b.h.g.accounts[3].key.address();
    b.deposit(dave, 20_000);
    b.h.produce(1, 2);
    b.deposit(carol, 30_000);
    let block = b.confirm_and_produce().expect("block");
    assert_eq!(block.receipts.len(), 2);
    assert_eq!(block.header.bitcoin_height, u64::from(b.h.btc.height()));
    assert_eq!(b.h.seq.chain().with_state(query_totals), (300_000, 0));

    // A full node reading only Bitcoin reaches every root, deposits included.
    let (batch, _) = b.h.settle();
    let f = b.h.follower(1);
    let r = f.sync_once().expect("sync");
    assert!(r.mismatch.is_none(), "{:?}", r.mismatch);
    assert_eq!(r.batches, 1, "{r:?}");
    assert_eq!(f.node().chain().head().state_root, batch.state_root);
    // After a restart it reads on from its last batch's Bitcoin block, while the next
    // block's deposits may lie lower: a deposit mined before the block holding batch 1, but
    // read by the sequencer only after it.
    b.deposit(dave, 40_000);
    b.h.mine(1);
    b.h.produce(1, 1);
    b.h.settle();
    let r = f.sync_once().expect("sync");
    assert!(r.mismatch.is_none(), "{:?}", r.mismatch);
    assert_eq!(r.batches, 1);
    drop(f);
    b.watcher.poll().expect("poll");
    let block = b.commit(Vec::new());
    assert_eq!(block.receipts.len(), 1);
    let (batch, _) = b.h.settle();
    let f = b.h.follower(1);
    let r = f.sync_once().expect("sync");
    assert!(r.mismatch.is_none(), "{:?}", r.mismatch);
    assert_eq!(r.batches, 1);
    assert_eq!(f.node().chain().head().state_root, batch.state_root);
}

#[test]
fn a_sequencer_that_leaves_out_a_deposit_is_caught_and_the_block_named() {
    let mut b = Bridged::new();
    let carol = b.h.g.accounts[2].key.address();
    b.deposit(carol, 50_000);
    b.h.mine(1);
    // The faulty sequencer claims Bitcoin's blocks through the deposit but leaves it out.
    let ts = 1_700_000_100_000;
    let bitcoin_height = u64::from(b.h.btc.height());
    b.h.seq
        .chain()
        .produce_at(Vec::new(), ts, bitcoin_height)
        .expect("produce");
    b.h.settle();
    let f = b.h.follower(1);
    let m = f.sync_once().expect("sync").mismatch.expect("caught");
    assert_eq!((m.batch_index, m.height), (0, 1));
    let reason = m.reason.clone().expect("a reason");
    assert!(reason.contains("leaves out a deposit"), "{reason}");
    assert!(m.to_string().contains("block 1: deposits:"), "{m}");
    assert_eq!(
        f.node().chain().head().height,
        0,
        "nothing of the bad block applied"
    );
}

#[test]
fn a_sequencer_that_invents_a_deposit_is_caught() {
    let mut b = Bridged::new();
    let carol = b.h.g.accounts[2].key.address();
    let signer = SigningKey::from_secret_bytes(b.h.key.secret_bytes()).expect("key");
    let fake = BitcoinDeposit {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([7; 32]),
            vout: 0,
        },
        recipient: carol.0,
        amount: Amount::from_sat(1_000_000),
    };
    b.h.mine(1);
    let height = b.h.btc.height();
    let tx = deposit_tx(&signer, b.h.spec.chain_id, height, &fake);
    let committed =
        b.h.seq
            .chain()
            .produce_at(vec![tx], 1_700_000_100_000, u64::from(height))
            .expect("produce");
    // The chain itself accepts it (it cannot see Bitcoin): the full node must refuse it.
    assert_eq!(committed.receipts[0].status, TxStatus::Success);
    b.h.settle();
    let f = b.h.follower(1);
    let m = f.sync_once().expect("sync").mismatch.expect("caught");
    let reason = m.reason.expect("a reason");
    assert!(reason.contains("is not on Bitcoin"), "{reason}");
}

#[test]
fn users_cannot_submit_deposits() {
    let b = Bridged::new();
    let signer = SigningKey::from_secret_bytes(b.h.key.secret_bytes()).expect("key");
    let d = BitcoinDeposit {
        outpoint: OutPoint::null(),
        recipient: signer.address().0,
        amount: Amount::from_sat(20_000),
    };
    let tx = deposit_tx(&signer, b.h.spec.chain_id, 1, &d);
    let r = b.h.seq.submit(vec![tx]).pop().expect("one result");
    assert!(matches!(r, Err(MempoolError::DepositSubmitted)), "{r:?}");
}

/// The payout transaction of `txid` from the regtest chain.
fn payout_tx(b: &Bridged, txid: &[u8; 32]) -> Transaction {
    b.h.btc
        .transaction(&Txid::from_byte_array(*txid))
        .expect("known to Bitcoin")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_are_paid_on_bitcoin_once_across_restarts() {
    let b = Bridged::new();
    b.credited(400_000);
    let chain_id = b.h.spec.chain_id;
    let alice = b.h.g.accounts[0].key.clone();
    let bob = b.h.g.accounts[1].key.clone();
    let to_alice = TaprootWallet::new(SecretKey::from_slice(&[11; 32]).expect("k"))
        .script_pubkey()
        .clone();
    let to_bob = p2wpkh(3);
    let w1 = withdraw(&alice, 0, 100_000, &to_alice, chain_id);
    let w2 = withdraw(&bob, 0, 50_000, &to_bob, chain_id);
    let too_small = withdraw(&bob, 1, 500, &to_bob, chain_id);
    let ids: Vec<_> = [&w1, &w2, &too_small].iter().map(|t| t.id()).collect();
    let block = b.commit(vec![w1, w2, too_small]);
    assert_eq!(block.receipts[0].status, TxStatus::Success);
    assert_eq!(block.receipts[1].status, TxStatus::Success);
    assert!(matches!(block.receipts[2].status, TxStatus::Failed(_)));
    assert_eq!(b.h.seq.chain().with_state(query_totals), (400_000, 150_000));

    let payer = b.payer();
    payer.step().expect("step");
    let status = payer.status();
    let info = status.info();
    assert_eq!((info.payouts, info.waiting), (1, 0), "{info:?}");
    let (index, txid, first) = status.payout_of(&ids[0].0).expect("paid");
    assert_eq!(index, 0);
    let (_, same, second) = status.payout_of(&ids[1].0).expect("paid");
    assert_eq!(same, txid, "one payout for both");
    assert!(
        status.payout_of(&ids[2].0).is_none(),
        "a failed withdrawal is not paid"
    );
    let tx = payout_tx(&b, &txid);
    assert_eq!(tx.output[first.vout as usize].script_pubkey, to_alice);
    assert_eq!(
        tx.output[first.vout as usize].value.to_sat(),
        100_000 - first.fee_share
    );
    assert_eq!(tx.output[second.vout as usize].script_pubkey, to_bob);
    assert_eq!(
        tx.output[second.vout as usize].value.to_sat(),
        50_000 - second.fee_share
    );
    assert_eq!(first.fee_share, second.fee_share, "equal shares");
    assert_eq!(parse_payout(&tx), Some((block.header.height, 1)));
    // The bridge keeps the rest: the deposit less what it paid out and the fee.
    let change: u64 = tx
        .output
        .iter()
        .filter(|o| o.script_pubkey == b.params.script)
        .map(|o| o.value.to_sat())
        .sum();
    assert_eq!(
        change,
        400_000 - 150_000 + first.fee_share + second.fee_share - fee_of(&b, &tx)
    );
    assert_eq!(info.holdings, change);
    b.h.mine(1);

    // A restart pays nothing twice; a new withdrawal is paid from the change.
    drop(payer);
    let payer = b.payer();
    payer.step().expect("step");
    assert_eq!(payer.status().info().payouts, 1);
    assert!(payer.status().payout_of(&ids[0].0).is_some());
    let w3 = withdraw(&alice, 1, 30_000, &to_alice, chain_id);
    let id3 = w3.id();
    b.commit(vec![w3]);
    payer.step().expect("step");
    let (index, txid3, _) = payer.status().payout_of(&id3.0).expect("paid");
    assert_eq!(index, 1);
    let tx3 = payout_tx(&b, &txid3);
    assert_eq!(
        tx3.input[0].previous_output.txid,
        Txid::from_byte_array(txid)
    );

    // The RPC shows it all.
    b.h.seq.attach_bridge_status(payer.status());
    let (addr, server) = rpc::start(
        RpcContext {
            node: Arc::clone(&b.h.seq),
            network: Network::Regtest,
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("rpc");
    let http = HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .expect("client");
    let w: Json = http
        .request("pb_getWithdrawal", rpc_params![ids[0].to_string()])
        .await
        .expect("withdrawal");
    assert_eq!(w["status"], "paid");
    assert_eq!(w["amount"], 100_000);
    assert_eq!(w["payout"]["txid"], Txid::from_byte_array(txid).to_string());
    let failed: Json = http
        .request("pb_getWithdrawal", rpc_params![ids[2].to_string()])
        .await
        .expect("withdrawal");
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"]
        .as_str()
        .is_some_and(|e| e.contains("below the minimum")));
    let info: Json = http
        .request("pb_bridgeInfo", rpc_params![])
        .await
        .expect("info");
    assert_eq!(info["deposited"], "400000");
    assert_eq!(info["withdrawn"], "180000");
    assert_eq!(info["payer"]["payouts"], 2);
    assert!(info["bridge_address"]
        .as_str()
        .is_some_and(|a| a.starts_with("bcrt1p")));
    let d: Json = http
        .request(
            "pb_getDeposit",
            rpc_params![Txid::from_byte_array([1; 32]).to_string(), 0],
        )
        .await
        .expect("deposit");
    assert_eq!(d["credited"], false);
    let bad = http
        .request::<Json, _>("pb_getDeposit", rpc_params!["zz", 0])
        .await;
    assert!(bad.is_err());
    let _ = server.stop();
}

/// The fee `tx` pays, from the regtest chain's outputs it spends.
fn fee_of(b: &Bridged, tx: &Transaction) -> u64 {
    let inputs: u64 = tx
        .input
        .iter()
        .map(|i| {
            let (prev, _) =
                b.h.btc
                    .transaction(&i.previous_output.txid)
                    .expect("input known");
            prev.output[i.previous_output.vout as usize].value.to_sat()
        })
        .sum();
    let outputs: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
    inputs - outputs
}

#[test]
fn a_withdrawal_the_bridge_cannot_cover_waits_and_the_ones_before_it_are_paid() {
    let b = Bridged::new();
    let carol = b.credited(100_000);
    let chain_id = b.h.spec.chain_id;
    let alice = b.h.g.accounts[0].key.clone();
    let bob = b.h.g.accounts[1].key.clone();
    let dest = p2wpkh(5);
    // Genesis BTC is not backed by the bridge: alice's 1 BTC cannot be paid yet.
    let small = withdraw(&bob, 0, 30_000, &dest, chain_id);
    let big = withdraw(&alice, 0, 100_000_000, &dest, chain_id);
    let after = withdraw(&bob, 1, 20_000, &dest, chain_id);
    let ids: Vec<_> = [&small, &big, &after].iter().map(|t| t.id()).collect();
    b.commit(vec![small, big, after]);
    let payer = b.payer();
    payer.step().expect("step");
    let status = payer.status();
    assert!(status.payout_of(&ids[0].0).is_some(), "the first is paid");
    assert!(status.payout_of(&ids[1].0).is_none());
    assert!(
        status.payout_of(&ids[2].0).is_none(),
        "paid in order: it waits"
    );
    let info = status.info();
    assert_eq!((info.payouts, info.waiting), (1, 2));
    let err = info.last_error.expect("why it waits");
    assert!(err.contains("next withdrawal (100000000 sat)"), "{err}");
    // Once the bridge holds enough, both are paid, in one payout.
    b.deposit(carol, 150_000_000);
    b.confirm_and_produce().expect("deposit block");
    payer.step().expect("step");
    let (i1, t1, _) = status.payout_of(&ids[1].0).expect("paid");
    let (i2, t2, _) = status.payout_of(&ids[2].0).expect("paid");
    assert_eq!((i1, i2), (1, 1));
    assert_eq!(t1, t2);
    assert_eq!(status.info().last_error, None);
}

#[test]
fn a_restarted_watcher_reads_on_after_the_heads_bitcoin_height() {
    let b = Bridged::new();
    let carol = b.h.g.accounts[2].key.address();
    b.deposit(carol, 70_000);
    let block = b.confirm_and_produce().expect("deposit block");
    let head_bitcoin = block.header.bitcoin_height;
    b.h.mine(3);
    // A new watcher (a restarted sequencer) starts after the head's Bitcoin height: the
    // deposit already credited is not offered again.
    let again = DepositWatcher::new(
        b.params.clone(),
        &b.h.key,
        Arc::new(b.h.btc.client(Vec::new())),
        head_bitcoin,
    )
    .expect("watcher");
    again.poll().expect("poll");
    let (txs, through) = again.take(head_bitcoin);
    assert!(txs.is_empty());
    assert_eq!(through, u64::from(b.h.btc.height()));
    let (read, seen, halted) = again.progress();
    assert_eq!((read, seen, halted), (Some(b.h.btc.height()), 0, None));
    b.deposit(carol, 80_000);
    b.h.mine(1);
    again.poll().expect("poll");
    let (txs, _) = again.take(head_bitcoin);
    assert_eq!(txs.len(), 1);
    assert!(matches!(
        txs[0].tx.call,
        Call::Bridge(BridgeMsg::Deposit { amount: 80_000, .. })
    ));
}

#[test]
fn payouts_bitcoin_lost_are_sent_again_in_order() {
    let b = Bridged::new();
    b.credited(500_000);
    let chain_id = b.h.spec.chain_id;
    let bob = b.h.g.accounts[1].key.clone();
    let dest = p2wpkh(8);
    let payer = b.payer();
    let mut txids = Vec::new();
    for nonce in 0..2 {
        let w = withdraw(&bob, nonce, 40_000, &dest, chain_id);
        let id = w.id();
        b.commit(vec![w]);
        payer.step().expect("step");
        let (_, txid, _) = payer.status().payout_of(&id.0).expect("paid");
        txids.push(Txid::from_byte_array(txid));
    }
    // The second payout spends the first one's change; both vanish from the mempool.
    let removed = b.h.btc.remove_from_mempool(&txids[0]).expect("evict");
    assert_eq!(removed.len(), 2, "the payout and its child");
    assert!(!b.h.btc.in_mempool(&txids[1]));
    drop(payer);
    let payer = b.payer();
    payer.step().expect("step");
    assert!(b.h.btc.in_mempool(&txids[0]));
    assert!(b.h.btc.in_mempool(&txids[1]));
    assert_eq!(
        payer.status().info().payouts,
        2,
        "sent again, not paid again"
    );
    b.h.mine(1);
    assert_eq!(b.h.btc.confirmations(&txids[1]), Some(1));
}

#[test]
fn a_full_node_sees_withdrawals_paid_on_bitcoin_and_a_payout_to_the_wrong_script() {
    use parabit_bitcoin::bridge::{bridge_wallet, build_payout, PayoutRequest};
    use parabit_bitcoin::Utxo;
    let mut b = Bridged::new();
    b.credited(400_000);
    let chain_id = b.h.spec.chain_id;
    let alice = b.h.g.accounts[0].key.clone();
    let bob = b.h.g.accounts[1].key.clone();
    let dest = p2wpkh(4);
    let w1 = withdraw(&alice, 0, 100_000, &dest, chain_id);
    let id1 = w1.id();
    b.commit(vec![w1]);
    let payer = b.payer();
    payer.step().expect("step");
    let (_, paid_by, _) = payer.status().payout_of(&id1.0).expect("paid");
    b.h.mine(1);
    b.h.settle();
    let f = b.h.follower(1);
    let r = f.sync_once().expect("sync");
    assert!(r.mismatch.is_none(), "{:?}", r.mismatch);
    let seen = f.node().bridge_status().expect("an audit").clone();
    let (_, txid, w) = seen.payout_of(&id1.0).expect("the full node sees it paid");
    assert_eq!(txid, paid_by);
    assert_eq!(w.amount, 100_000);
    assert_eq!((seen.info().payouts, seen.info().waiting), (1, 0));
    assert_eq!(seen.info().last_error, None);

    // A payout of the next withdrawal to another script than the one it burned for.
    let w2 = withdraw(&bob, 0, 50_000, &dest, chain_id);
    let id2 = w2.id();
    let block = b.commit(vec![w2]);
    let first = payout_tx(&b, &paid_by);
    let (vout, change) = first
        .output
        .iter()
        .enumerate()
        .find(|(_, o)| o.script_pubkey == b.params.script)
        .expect("change");
    let thief = p2wpkh(6);
    let bad = build_payout(
        &bridge_wallet(b.h.key),
        &[Utxo {
            outpoint: OutPoint {
                txid: first.compute_txid(),
                vout: vout as u32,
            },
            txout: change.clone(),
            confirmations: 1,
            coinbase: false,
        }],
        &[PayoutRequest {
            script_pubkey: thief,
            amount: Amount::from_sat(50_000),
        }],
        (block.header.height, 0),
        FeeRate::from_sat_per_vb_u32(1),
    )
    .expect("payout");
    b.h.btc.send_raw_transaction(&bad.tx).expect("sent");
    b.h.mine(1);
    b.h.settle();
    let r = f.sync_once().expect("sync");
    assert!(r.mismatch.is_none(), "{:?}", r.mismatch);
    assert!(seen.payout_of(&id2.0).is_none(), "not paid as recorded");
    let err = seen.info().last_error.expect("reported");
    assert!(err.contains("does not pay withdrawal"), "{err}");
    assert_eq!(seen.info().payouts, 2);

    // A restarted full node still knows (the payouts found are stored).
    drop(f);
    let f = b.h.follower(1);
    f.sync_once().expect("sync");
    let seen = f.node().bridge_status().expect("an audit").clone();
    assert!(seen.payout_of(&id1.0).is_some());
    assert!(seen.payout_of(&id2.0).is_none());
    assert!(seen.info().last_error.is_some());
}

#[test]
fn a_reorg_that_takes_a_payout_away_unmarks_it_until_it_is_mined_again() {
    let mut b = Bridged::new();
    b.credited(300_000);
    let alice = b.h.g.accounts[0].key.clone();
    let dest = p2wpkh(2);
    let w = withdraw(&alice, 0, 60_000, &dest, b.h.spec.chain_id);
    let id = w.id();
    b.commit(vec![w]);
    b.h.settle();
    let payer = b.payer();
    payer.step().expect("step");
    b.h.mine(1);
    let f = b.h.follower(1);
    f.sync_once().expect("sync");
    assert!(f
        .node()
        .bridge_status()
        .expect("audit")
        .payout_of(&id.0)
        .is_some());
    // The block holding the payout leaves the best chain (its transaction goes back to the
    // mempool): the full node forgets the payout, then finds it again once it is mined.
    b.h.btc.reorg(1, b.h.wallet.script_pubkey()).expect("reorg");
    let r = f.sync_once().expect("sync");
    assert_eq!(r.rollbacks.len(), 1, "{r:?}");
    let status = f.node().bridge_status().expect("audit").clone();
    assert!(
        status.payout_of(&id.0).is_none(),
        "not on the best chain now"
    );
    assert_eq!(status.info().waiting, 1);
    b.h.mine(1);
    f.sync_once().expect("sync");
    let status = f.node().bridge_status().expect("audit").clone();
    assert!(status.payout_of(&id.0).is_some(), "mined again");
}

#[test]
fn a_reorg_that_drops_a_batch_with_deposits_re_derives_it() {
    let mut b = Bridged::new();
    b.credited(90_000);
    b.h.mine(2);
    let (batch, _) = b.h.settle();
    let f = b.h.follower(1);
    let r = f.sync_once().expect("sync");
    assert_eq!(r.batches, 1, "{r:?}");
    // The block holding the batch leaves the best chain; the full node rolls back past the
    // deposit's block, and must read that deposit again when the batch returns.
    b.h.btc.reorg(1, b.h.wallet.script_pubkey()).expect("reorg");
    let r = f.sync_once().expect("sync");
    assert_eq!(r.rollbacks.len(), 1, "{r:?}");
    assert_eq!(f.node().chain().head().height, 0);
    b.h.mine(1);
    let r = f.sync_once().expect("sync");
    assert!(r.mismatch.is_none(), "{:?}", r.mismatch);
    assert_eq!(r.batches, 1, "{r:?}");
    assert_eq!(f.node().chain().head().state_root, batch.state_root);
}
