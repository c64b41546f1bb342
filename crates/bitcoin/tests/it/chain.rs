//! The embedded regtest chain: mining, spends and their refusals, replacement, reorgs,
//! persistence and recovery from a torn journal.

use parabit_bitcoin::bitcoin::blockdata::constants::genesis_block;
use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::{Amount, Network, OutPoint, TxMerkleNode, TxOut, Witness};
use parabit_bitcoin::regtest::{subsidy, BlockError, TxError, JOURNAL_FILE};
use parabit_bitcoin::verify::ScriptError;
use parabit_bitcoin::{RegtestChain, RegtestError};

use crate::{fund, pay, rate, utxos, wallet};

fn tx_err(r: Result<impl std::fmt::Debug, RegtestError>) -> TxError {
    match r {
        Err(RegtestError::Tx(e)) => e,
        other => panic!("expected a transaction rejection, got {other:?}"),
    }
}

#[test]
fn mine_spend_persist_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let alice = wallet(1);
    let bob = wallet(2);
    let (tip, spent_outpoint, txid, pending) = {
        let chain = RegtestChain::open(dir.path()).unwrap();
        assert_eq!(
            chain.tip(),
            (0, genesis_block(Network::Regtest).block_hash())
        );
        fund(&chain, &alice);
        assert_eq!(chain.height(), 101);
        let mine = utxos(&chain, &alice);
        assert_eq!(mine.len(), 101);
        // Coinbases of blocks 1 and 2 may go into block 102 (100 confirmations, as in Core).
        assert_eq!(mine.iter().filter(|u| u.is_spendable()).count(), 2);
        assert_eq!(mine[0].confirmations, 101);
        assert_eq!(mine[0].txout.value, subsidy(1));

        let f = alice
            .build_payment(&mine, pay(&bob, 100_000_000), rate(2))
            .unwrap();
        let txid = chain.send_raw_transaction(&f.tx).unwrap();
        assert!(chain.in_mempool(&txid));
        assert_eq!(chain.confirmations(&txid), Some(0));
        // Bob sees the unconfirmed output; Alice's coin is no longer listed (spent by mempool).
        let bob_pending = utxos(&chain, &bob);
        assert_eq!(bob_pending.len(), 1);
        assert_eq!(bob_pending[0].confirmations, 0);
        assert!(!utxos(&chain, &alice)
            .iter()
            .any(|u| u.outpoint == f.spent[0].outpoint));

        let hashes = chain.mine(1, alice.script_pubkey()).unwrap();
        let block = chain.block(&hashes[0]).unwrap();
        assert_eq!(block.txdata.len(), 2);
        assert_eq!(block.txdata[1].compute_txid(), txid);
        // The coinbase collects subsidy plus the fee.
        assert_eq!(block.txdata[0].output[0].value, subsidy(102) + f.fee);
        assert!(block.check_merkle_root() && block.check_witness_commitment());
        assert!(block.header.validate_pow(block.header.target()).is_ok());
        assert!(chain.mempool().is_empty());
        assert_eq!(chain.confirmations(&txid), Some(1));
        assert_eq!(utxos(&chain, &bob)[0].confirmations, 1);
        assert_eq!(chain.utxo(&f.spent[0].outpoint), None);

        // One more transaction left in the mempool across the restart.
        let f2 = bob
            .build_payment(&utxos(&chain, &bob), pay(&alice, 10_000_000), rate(1))
            .unwrap();
        let pending = chain.send_raw_transaction(&f2.tx).unwrap();
        (chain.tip(), f.spent[0].outpoint, txid, pending)
    };
    let chain = RegtestChain::open(dir.path()).unwrap();
    assert_eq!(chain.tip(), tip);
    assert_eq!(chain.utxo(&spent_outpoint), None);
    assert_eq!(chain.transaction(&txid).map(|(_, h)| h), Some(Some(102)));
    assert!(chain.in_mempool(&pending));
    assert_eq!(utxos(&chain, &alice).len(), 101 + 1 + 1); // 102 coinbases - 1 spent + change + pending payment
    assert_eq!(
        chain.block_at(50).unwrap().block_hash(),
        chain.block_hash(50).unwrap()
    );
    chain.mine(1, bob.script_pubkey()).unwrap();
    assert_eq!(chain.confirmations(&pending), Some(1));
}

#[test]
fn double_spends_are_refused_and_replacement_needs_more_fee() {
    let chain = RegtestChain::in_memory();
    let alice = wallet(1);
    let bob = wallet(2);
    let carol = wallet(3);
    fund(&chain, &alice);
    let coins = utxos(&chain, &alice);
    let first = alice
        .build_payment(&coins, pay(&bob, 1_000_000), rate(2))
        .unwrap();
    chain.send_raw_transaction(&first.tx).unwrap();
    // A child of the first spends its change.
    let child_coins: Vec<_> = utxos(&chain, &alice)
        .into_iter()
        .filter(|u| u.confirmations == 0)
        .collect();
    let child = alice
        .build_payment(&child_coins, pay(&carol, 500_000), rate(2))
        .unwrap();
    assert_eq!(child.spent[0].outpoint.txid, first.tx.compute_txid());
    chain.send_raw_transaction(&child.tx).unwrap();

    // Same coin, same fee rate: refused, mempool unchanged.
    let rival = alice
        .fund(&first.spent, &[], pay(&carol, 1_000_000), rate(2))
        .unwrap();
    let err = tx_err(chain.send_raw_transaction(&rival.tx));
    assert!(matches!(err, TxError::ReplacementFee(_)), "{err}");
    assert!(err.to_string().starts_with("insufficient fee"));
    assert_eq!(chain.mempool().len(), 2);
    // Resubmitting the same transaction.
    assert_eq!(
        tx_err(chain.send_raw_transaction(&first.tx)),
        TxError::AlreadyInMempool
    );

    // Enough to pay for both replaced transactions plus relay: replaces the first and its child.
    let bump = alice
        .fund(&first.spent, &[], pay(&carol, 1_000_000), rate(10))
        .unwrap();
    let bump_id = chain.send_raw_transaction(&bump.tx).unwrap();
    let pool = chain.mempool();
    assert_eq!(pool.len(), 1);
    assert_eq!(pool[0].compute_txid(), bump_id);
    chain.mine(1, alice.script_pubkey()).unwrap();

    // Once confirmed, spending the coin again is a missing input.
    let again = alice.fund(&first.spent, &[], pay(&bob, 1_000_000), rate(50));
    // The wallet does not know the coin is gone; the chain does.
    let err = tx_err(chain.send_raw_transaction(&again.unwrap().tx));
    assert_eq!(err, TxError::MissingOrSpent(first.spent[0].outpoint));
    assert_eq!(
        tx_err(chain.send_raw_transaction(&bump.tx)),
        TxError::AlreadyKnown
    );
}

#[test]
fn bad_signatures_are_refused_and_change_nothing() {
    let chain = RegtestChain::in_memory();
    let alice = wallet(1);
    let bob = wallet(2);
    fund(&chain, &alice);
    let coins = utxos(&chain, &alice);
    let f = alice
        .build_payment(&coins, pay(&bob, 1_000_000), rate(2))
        .unwrap();

    // A flipped signature bit.
    let mut flipped = f.tx.clone();
    let mut sig = flipped.input[0].witness.to_vec();
    sig[0][10] ^= 1;
    flipped.input[0].witness = Witness::from_slice(&sig);
    let err = tx_err(chain.send_raw_transaction(&flipped));
    assert!(
        matches!(err, TxError::Script(ScriptError { input: 0, .. })),
        "{err}"
    );
    // Outputs changed after signing: the signature no longer commits to the transaction.
    let mut redirected = f.tx.clone();
    redirected.output[0].script_pubkey = wallet(9).script_pubkey().clone();
    assert!(matches!(
        tx_err(chain.send_raw_transaction(&redirected)),
        TxError::Script(_)
    ));
    // Signed by the wrong key.
    let mut stolen = f.tx.clone();
    let prevouts: Vec<TxOut> = f.spent.iter().map(|u| u.txout.clone()).collect();
    let mut foreign_prevouts = prevouts.clone();
    foreign_prevouts[0].script_pubkey = bob.script_pubkey().clone();
    bob.sign_key_spends(&mut stolen, &foreign_prevouts).unwrap();
    assert!(matches!(
        tx_err(chain.send_raw_transaction(&stolen)),
        TxError::Script(_)
    ));
    // No witness at all.
    let mut bare = f.tx.clone();
    bare.input[0].witness.clear();
    assert!(matches!(
        tx_err(chain.send_raw_transaction(&bare)),
        TxError::Script(_)
    ));

    assert!(chain.mempool().is_empty());
    assert!(chain.utxo(&f.spent[0].outpoint).is_some());
    // The untouched transaction is fine.
    chain.send_raw_transaction(&f.tx).unwrap();
}

#[test]
fn wrong_amounts_are_refused() {
    let chain = RegtestChain::in_memory();
    let alice = wallet(1);
    let bob = wallet(2);
    fund(&chain, &alice);
    let coins = utxos(&chain, &alice);
    let f = alice
        .build_payment(&coins, pay(&bob, 1_000_000), rate(2))
        .unwrap();
    let prevouts: Vec<TxOut> = f.spent.iter().map(|u| u.txout.clone()).collect();
    let input_value = prevouts[0].value;

    // Outputs above the input, properly signed.
    let mut over = f.tx.clone();
    over.output[1].value = input_value;
    alice.sign_key_spends(&mut over, &prevouts).unwrap();
    let err = tx_err(chain.send_raw_transaction(&over));
    assert!(matches!(err, TxError::InBelowOut { .. }), "{err}");
    assert!(err.to_string().starts_with("bad-txns-in-belowout"));

    // A fee below the relay minimum (1 sat/vB): 10 sats for ~150 vB.
    let mut stingy = f.tx.clone();
    stingy.output[1].value = input_value - Amount::from_sat(1_000_000 + 10);
    alice.sign_key_spends(&mut stingy, &prevouts).unwrap();
    let err = tx_err(chain.send_raw_transaction(&stingy));
    assert!(matches!(err, TxError::MinRelayFee { .. }), "{err}");

    // An output above 21 million BTC.
    let mut huge = f.tx.clone();
    huge.output[0].value = Amount::MAX_MONEY + Amount::from_sat(1);
    assert!(matches!(
        tx_err(chain.send_raw_transaction(&huge)),
        TxError::Check(_)
    ));

    // Spending an output that does not exist.
    let mut ghost = f.tx.clone();
    ghost.input[0].previous_output = OutPoint {
        txid: f.tx.compute_txid(),
        vout: 7,
    };
    assert!(matches!(
        tx_err(chain.send_raw_transaction(&ghost)),
        TxError::MissingOrSpent(_)
    ));
    assert!(chain.mempool().is_empty());
}

#[test]
fn immature_coinbase_is_refused_until_100_confirmations() {
    let chain = RegtestChain::in_memory();
    let alice = wallet(1);
    chain.mine(100, alice.script_pubkey()).unwrap();
    let all = utxos(&chain, &alice);
    // The coinbase of block 1 has 100 confirmations and may go into block 101.
    assert_eq!(all.iter().filter(|u| u.is_spendable()).count(), 1);
    let young = all.iter().find(|u| u.confirmations == 99).unwrap().clone();
    assert!(young.coinbase && !young.is_spendable());
    // Build the spend by hand (the wallet would not select it): mark it mature to get it signed.
    let mut forced = young.clone();
    forced.confirmations = 100;
    let f = alice
        .fund(&[forced], &[], pay(&alice, 1_000_000), rate(1))
        .unwrap();
    let err = tx_err(chain.send_raw_transaction(&f.tx));
    assert_eq!(
        err,
        TxError::ImmatureCoinbase {
            outpoint: young.outpoint,
            depth: 99
        }
    );
    chain.mine(1, alice.script_pubkey()).unwrap();
    chain.send_raw_transaction(&f.tx).unwrap();
}

#[test]
fn reorg_returns_transactions_and_a_competing_branch_wins() {
    let dir = tempfile::tempdir().unwrap();
    let alice = wallet(1);
    let bob = wallet(2);
    let miner = wallet(7);
    let chain = RegtestChain::open(dir.path()).unwrap();
    fund(&chain, &alice);
    let f = alice
        .build_payment(&utxos(&chain, &alice), pay(&bob, 5_000_000), rate(2))
        .unwrap();
    let txid = chain.send_raw_transaction(&f.tx).unwrap();
    let old = chain.mine(1, alice.script_pubkey()).unwrap()[0];
    assert_eq!(chain.confirmations(&txid), Some(1));

    let returned = chain.invalidate(1).unwrap();
    assert_eq!(returned, vec![txid]);
    assert_eq!(chain.height(), 101);
    assert!(chain.in_mempool(&txid));
    // The old block stays retrievable but is no longer in the active chain.
    assert!(chain.block(&old).is_some());
    assert_eq!(chain.height_of(&old), None);
    // A longer branch without the transaction.
    let branch = chain.mine_empty(2, miner.script_pubkey()).unwrap();
    assert_eq!(chain.tip(), (103, branch[1]));
    assert_ne!(chain.block_hash(102), Some(old));
    assert!(chain.in_mempool(&txid));
    assert_eq!(utxos(&chain, &bob)[0].confirmations, 0);
    // `reorg` does both steps: disconnect 2, mine 3 empty blocks.
    let before = chain.block_hash(102).unwrap();
    let new = chain.reorg(2, miner.script_pubkey()).unwrap();
    assert_eq!(new.len(), 3);
    assert_eq!(chain.height(), 104);
    assert_ne!(chain.block_hash(102), Some(before));
    // Mining picks the transaction up again.
    chain.mine(1, miner.script_pubkey()).unwrap();
    assert_eq!(chain.confirmations(&txid), Some(1));
    let tip = chain.tip();
    drop(chain);
    // The reorgs survive a restart, stale blocks included.
    let chain = RegtestChain::open(dir.path()).unwrap();
    assert_eq!(chain.tip(), tip);
    assert!(chain.block(&old).is_some());
    assert_eq!(chain.height_of(&old), None);
    assert_eq!(chain.confirmations(&txid), Some(1));
}

#[test]
fn reorg_drops_transactions_that_became_invalid() {
    let chain = RegtestChain::in_memory();
    let alice = wallet(1);
    let bob = wallet(2);
    fund(&chain, &alice);
    // Spends block 1's coinbase, valid from block 101 on; mined in block 102.
    let f = alice
        .build_payment(&utxos(&chain, &alice), pay(&bob, 5_000_000), rate(2))
        .unwrap();
    let txid = chain.send_raw_transaction(&f.tx).unwrap();
    chain.mine(1, alice.script_pubkey()).unwrap();
    // Back to height 99: the coinbase is immature again, so the spend cannot wait in the mempool.
    let returned = chain.invalidate(3).unwrap();
    assert_eq!(returned, vec![txid]);
    assert!(!chain.in_mempool(&txid));
    assert!(chain.mempool().is_empty());
    assert!(matches!(
        chain.invalidate(100),
        Err(RegtestError::TooDeep {
            depth: 100,
            height: 99
        })
    ));
    assert_eq!(chain.invalidate(99).unwrap(), Vec::new());
    assert_eq!(chain.tip().1, genesis_block(Network::Regtest).block_hash());
}

#[test]
fn torn_journal_tail_is_cut_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let alice = wallet(1);
    let hashes = {
        let chain = RegtestChain::open(dir.path()).unwrap();
        chain.mine(3, alice.script_pubkey()).unwrap()
    };
    let path = dir.path().join(JOURNAL_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    // Garbage appended (a crash mid-write of a record header): ignored and cut.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[1, 200, 0]);
    std::fs::write(&path, &bytes).unwrap();
    {
        let chain = RegtestChain::open(dir.path()).unwrap();
        assert_eq!(chain.tip(), (3, hashes[2]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    }
    // The last block record torn: the chain comes back at height 2 and keeps working.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let chain = RegtestChain::open(dir.path()).unwrap();
    assert_eq!(chain.tip(), (2, hashes[1]));
    chain.mine(2, alice.script_pubkey()).unwrap();
    let tip = chain.tip();
    drop(chain);
    assert_eq!(RegtestChain::open(dir.path()).unwrap().tip(), tip);
}

#[test]
fn foreign_blocks_connect_only_when_valid() {
    let a = RegtestChain::in_memory();
    let b = RegtestChain::in_memory();
    let alice = wallet(1);
    a.mine(2, alice.script_pubkey()).unwrap();
    let b1 = a.block_at(1).unwrap();
    let b2 = a.block_at(2).unwrap();
    // Out of order: not on the tip.
    assert!(matches!(
        b.submit_block(b2.clone()),
        Err(RegtestError::Block(BlockError::NotOnTip(_)))
    ));
    // Tampered merkle root.
    let mut bad = b1.clone();
    bad.header.merkle_root = TxMerkleNode::all_zeros();
    let err = b.submit_block(bad).unwrap_err();
    assert!(
        matches!(
            err,
            RegtestError::Block(BlockError::HighHash | BlockError::BadMerkleRoot)
        ),
        "{err}"
    );
    // Wrong difficulty bits.
    let mut bits = b1.clone();
    bits.header.bits = parabit_bitcoin::bitcoin::CompactTarget::from_consensus(0x1d00ffff);
    assert!(matches!(
        b.submit_block(bits),
        Err(RegtestError::Block(BlockError::BadBits(_)))
    ));
    // A coinbase that pays itself more (merkle root no longer matches).
    let mut greedy = b1.clone();
    greedy.txdata[0].output[0].value += Amount::from_sat(1);
    assert!(b.submit_block(greedy).is_err());
    assert_eq!(b.height(), 0);
    b.submit_block(b1).unwrap();
    b.submit_block(b2).unwrap();
    assert_eq!(a.tip(), b.tip());
}

#[test]
fn blocks_with_invalid_transactions_are_refused() {
    let chain = RegtestChain::in_memory();
    let alice = wallet(1);
    let bob = wallet(2);
    fund(&chain, &alice);
    let coins = utxos(&chain, &alice);
    let f = alice
        .build_payment(&coins, pay(&bob, 1_000_000), rate(2))
        .unwrap();
    let rival = alice
        .fund(&f.spent, &[], pay(&alice, 2_000_000), rate(2))
        .unwrap();
    let tip = chain.tip();

    // A bad signature inside a block: scripts are checked on submitted blocks too.
    let mut forged = f.tx.clone();
    forged.output[0].value = Amount::from_sat(1_000_001);
    let block = chain.build_block(vec![forged], alice.script_pubkey());
    match chain.submit_block(block) {
        Err(RegtestError::Block(BlockError::Tx {
            index: 1,
            error: TxError::Script(_),
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
    // Two transactions spending one coin.
    let block = chain.build_block(vec![f.tx.clone(), rival.tx.clone()], alice.script_pubkey());
    match chain.submit_block(block) {
        Err(RegtestError::Block(BlockError::Tx {
            index: 2,
            error: TxError::MissingOrSpent(op),
            ..
        })) => {
            assert_eq!(op, f.spent[0].outpoint)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(chain.tip(), tip);
    // A valid block that confirms a transaction the mempool holds a rival of: the rival goes.
    chain.send_raw_transaction(&rival.tx).unwrap();
    let block = chain.build_block(vec![f.tx.clone()], alice.script_pubkey());
    chain.submit_block(block).unwrap();
    assert!(chain.mempool().is_empty());
    assert_eq!(chain.confirmations(&f.tx.compute_txid()), Some(1));
}

#[test]
fn background_miner_mines_until_stopped() {
    let chain = std::sync::Arc::new(RegtestChain::in_memory());
    let alice = wallet(1);
    let miner = chain.spawn_miner(
        std::time::Duration::from_millis(10),
        alice.script_pubkey().clone(),
    );
    let start = std::time::Instant::now();
    while chain.height() < 3 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "miner stalled"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    miner.stop();
    let stopped_at = chain.height();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(chain.height(), stopped_at);
    assert_eq!(utxos(&chain, &alice).len() as u32, stopped_at);
}

#[test]
fn a_directory_is_opened_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = RegtestChain::open(dir.path()).unwrap();
    match RegtestChain::open(dir.path()) {
        Err(RegtestError::Locked(d)) => assert_eq!(d, dir.path()),
        other => panic!("{other:?}"),
    }
    drop(first);
    RegtestChain::open(dir.path()).unwrap();
}
