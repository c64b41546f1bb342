//! The mempool: every rejection, gap holding and promotion, replacement, eviction under the
//! byte bound, selection order, commits, and random-sequence invariants.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Instant;

use parabit_modules::{BankMsg, Call, SignedTx, Tx};
use parabit_node::mempool::{AccountState, Mempool, MempoolConfig, MempoolError, VerifiedTx};
use parabit_primitives::{
    Address, Amount, AssetId, DecodeError, SignatureError, SigningKey, TxId, MAX_TX_SIZE,
};
use proptest::prelude::*;

const CHAIN: u64 = 1;

/// A committed state: nonces and BTC balances (unknown accounts: nonce 0, a large balance).
#[derive(Default, Clone)]
struct State {
    nonces: HashMap<Address, u64>,
    balances: HashMap<Address, Amount>,
}

impl AccountState for State {
    fn nonce(&self, who: &Address) -> u64 {
        self.nonces.get(who).copied().unwrap_or(0)
    }
    fn fee_balance(&self, who: &Address) -> Amount {
        self.balances.get(who).copied().unwrap_or(1_000_000_000)
    }
}

fn key(i: u32) -> SigningKey {
    SigningKey::from_seed(format!("mempool-test-{i}").as_bytes())
}

fn signed(k: &SigningKey, nonce: u64, fee: Amount) -> SignedTx {
    signed_on(CHAIN, k, nonce, fee)
}

fn signed_on(chain_id: u64, k: &SigningKey, nonce: u64, fee: Amount) -> SignedTx {
    k.sign(Tx {
        chain_id,
        sender: k.address(),
        nonce,
        fee,
        call: Call::Bank(BankMsg::Transfer {
            to: Address([7; 32]),
            asset: AssetId::BTC,
            amount: 1,
        }),
    })
}

fn verified(tx: SignedTx) -> VerifiedTx {
    Mempool::verify(vec![tx])
        .pop()
        .expect("one result")
        .expect("valid")
}

fn pool() -> Mempool {
    Mempool::new(MempoolConfig::new(CHAIN))
}

fn add(pool: &mut Mempool, state: &State, k: &SigningKey, nonce: u64, fee: Amount) -> TxId {
    pool.insert(verified(signed(k, nonce, fee)), state)
        .expect("admitted")
}

fn try_add(
    pool: &mut Mempool,
    state: &State,
    k: &SigningKey,
    nonce: u64,
    fee: Amount,
) -> Result<TxId, MempoolError> {
    pool.insert(verified(signed(k, nonce, fee)), state)
}

/// (sender, nonce, fee) of each transaction.
fn summary(txs: &[SignedTx]) -> Vec<(Address, u64, Amount)> {
    txs.iter()
        .map(|t| (t.tx.sender, t.tx.nonce, t.tx.fee))
        .collect()
}

fn ids(pool: &Mempool) -> HashSet<TxId> {
    pool.iter().map(SignedTx::id).collect()
}

#[test]
fn admits_and_answers_queries() {
    let (mut p, s, a) = (pool(), State::default(), key(0));
    let tx = signed(&a, 0, 50);
    let id = p.insert(verified(tx.clone()), &s).expect("admitted");
    assert_eq!(id, tx.id());
    assert_eq!(p.len(), 1);
    assert!(!p.is_empty());
    assert_eq!(p.bytes(), tx.encode().len());
    assert_eq!(p.get(&id), Some(&tx));
    assert!(p.contains(&id));
    assert_eq!(p.is_ready(&id), Some(true));
    assert_eq!(p.pending_of(&a.address()).collect::<Vec<_>>(), vec![&tx]);
    assert_eq!(p.pending_nonce(&a.address()), Some(1));
    assert_eq!(p.pending_nonce(&key(1).address()), None);
    assert_eq!(p.ready_len(), 1);
    assert_eq!(p.senders_len(), 1);
    p.check_invariants().expect("invariants");
}

#[test]
fn verify_checks_signatures_in_order() {
    let a = key(0);
    let good = signed(&a, 0, 1);
    let mut tampered = signed(&a, 1, 1);
    tampered.tx.fee = 1_000;
    let mut bad_sender = signed(&a, 2, 1);
    bad_sender.tx.sender = Address([0xff; 32]); // x ≥ p: not a point
    let out = Mempool::verify(vec![good.clone(), tampered, bad_sender]);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].as_ref().map(VerifiedTx::id), Ok(good.id()));
    assert_eq!(
        out[0].as_ref().map(VerifiedTx::size),
        Ok(good.encode().len())
    );
    let err = out[1].clone().expect_err("tampered");
    assert_eq!(err, MempoolError::Signature(SignatureError::BadSignature));
    assert!(err.to_string().starts_with("bad signature"), "{err}");
    assert_eq!(
        out[2].clone().expect_err("bad sender"),
        MempoolError::Signature(SignatureError::InvalidSender)
    );
}

#[test]
fn verify_raw_decodes_with_limits_and_typed_errors() {
    let a = key(0);
    let tx = signed(&a, 0, 9);
    let enc = tx.encode();
    let mut trailing = enc.clone();
    trailing.push(0);
    let truncated = enc[..enc.len() - 1].to_vec();
    let huge = vec![0u8; MAX_TX_SIZE + 1];
    let out = Mempool::verify_raw(&[enc.clone(), trailing, truncated, huge, Vec::new()]);
    let v = out[0].clone().expect("valid");
    assert_eq!((v.id(), v.size(), v.tx()), (tx.id(), enc.len(), &tx));
    assert_eq!(v.clone().into_inner(), tx);
    assert_eq!(
        out[1],
        Err(MempoolError::Decode(DecodeError::TrailingBytes(1)))
    );
    assert_eq!(out[2], Err(MempoolError::Decode(DecodeError::Truncated)));
    assert_eq!(
        out[3],
        Err(MempoolError::Decode(DecodeError::TooLarge {
            size: MAX_TX_SIZE + 1,
            max: MAX_TX_SIZE
        }))
    );
    assert_eq!(out[4], Err(MempoolError::Decode(DecodeError::Truncated)));
    assert!(out[3]
        .clone()
        .expect_err("huge")
        .to_string()
        .starts_with("cannot decode transaction"));
    assert_eq!(Mempool::decode(&enc), Ok(tx));
    // A valid encoding with a forged signature is refused after decoding.
    let mut forged = enc;
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(matches!(
        Mempool::verify_raw(&[forged])[0],
        Err(MempoolError::Signature(_))
    ));
}

#[test]
fn wrong_chain_id_is_refused() {
    let (mut p, s, a) = (pool(), State::default(), key(0));
    let err = p
        .insert(verified(signed_on(2, &a, 0, 1)), &s)
        .expect_err("other chain");
    assert_eq!(
        err,
        MempoolError::WrongChainId {
            got: 2,
            expected: 1
        }
    );
    assert_eq!(err.to_string(), "wrong chain id: 2 != 1");
    assert!(p.is_empty());
}

#[test]
fn oversize_for_the_configured_limit_is_refused() {
    let tx = signed(&key(0), 0, 1);
    let size = tx.encode().len();
    let mut p = Mempool::new(MempoolConfig {
        max_tx_bytes: size - 1,
        ..MempoolConfig::new(CHAIN)
    });
    let err = p
        .insert(verified(tx), &State::default())
        .expect_err("too large");
    assert_eq!(
        err,
        MempoolError::TooLarge {
            size,
            max: size - 1
        }
    );
    assert_eq!(
        err.to_string(),
        format!("transaction too large: {size} bytes > {}", size - 1)
    );
    assert!(p.is_empty());
}

#[test]
fn fee_below_minimum_is_refused() {
    let mut p = Mempool::new(MempoolConfig {
        min_fee: 10,
        ..MempoolConfig::new(CHAIN)
    });
    let s = State::default();
    let err = try_add(&mut p, &s, &key(0), 0, 9).expect_err("below minimum");
    assert_eq!(err.to_string(), "fee too low: 9 < minimum 10");
    add(&mut p, &s, &key(0), 0, 10);
}

#[test]
fn duplicate_is_refused_and_changes_nothing() {
    let (mut p, s, a) = (pool(), State::default(), key(0));
    let id = add(&mut p, &s, &a, 0, 5);
    let bytes = p.bytes();
    let err = try_add(&mut p, &s, &a, 0, 5).expect_err("duplicate");
    assert_eq!(err, MempoolError::AlreadyKnown(id));
    assert_eq!(
        err.to_string(),
        format!("transaction {id} is already in the mempool")
    );
    assert_eq!((p.len(), p.bytes()), (1, bytes));
}

#[test]
fn replayed_nonce_is_refused() {
    let (mut p, a) = (pool(), key(0));
    let mut s = State::default();
    s.nonces.insert(a.address(), 5);
    let err = try_add(&mut p, &s, &a, 3, 1).expect_err("replay");
    assert_eq!(
        err,
        MempoolError::NonceTooLow {
            nonce: 3,
            committed: 5
        }
    );
    assert_eq!(err.to_string(), "nonce too low: 3 < 5");
    add(&mut p, &s, &a, 5, 1);
}

#[test]
fn nonce_beyond_the_window_is_refused() {
    let mut p = Mempool::new(MempoolConfig {
        nonce_window: 4,
        ..MempoolConfig::new(CHAIN)
    });
    let a = key(0);
    let mut s = State::default();
    s.nonces.insert(a.address(), 10);
    add(&mut p, &s, &a, 13, 1);
    let err = try_add(&mut p, &s, &a, 14, 1).expect_err("outside window");
    assert_eq!(
        err,
        MempoolError::NonceTooHigh {
            nonce: 14,
            committed: 10,
            limit: 14
        }
    );
    assert_eq!(
        err.to_string(),
        "nonce too high: 14 >= 14 (committed nonce 10 + window)"
    );
    let huge = try_add(&mut p, &s, &a, u64::MAX, 1).expect_err("far outside");
    assert!(matches!(huge, MempoolError::NonceTooHigh { .. }));
}

#[test]
fn gaps_are_held_until_filled() {
    let (mut p, mut s, a) = (pool(), State::default(), key(0));
    let b = key(1);
    let id2 = add(&mut p, &s, &a, 2, 100);
    let id1 = add(&mut p, &s, &a, 1, 100);
    add(&mut p, &s, &b, 0, 1);
    assert_eq!(p.is_ready(&id1), Some(false));
    assert_eq!(p.is_ready(&id2), Some(false));
    assert_eq!(p.ready_len(), 1);
    assert_eq!(p.pending_nonce(&a.address()), Some(0));
    // Only b's transaction is selectable.
    assert_eq!(
        summary(&p.select(10, &s)),
        vec![(b.address(), 0, 1)],
        "held transactions must not be selected"
    );
    add(&mut p, &s, &a, 0, 2);
    assert_eq!(p.is_ready(&id2), Some(true));
    assert_eq!(p.pending_nonce(&a.address()), Some(3));
    assert_eq!(
        summary(&p.select(10, &s)),
        vec![
            (a.address(), 0, 2),
            (a.address(), 1, 100),
            (a.address(), 2, 100),
            (b.address(), 0, 1)
        ]
    );
    // A commit that jumps over a gap (a's nonce 3 committed elsewhere) promotes nonce 4.
    let id4 = add(&mut p, &s, &a, 4, 7);
    assert_eq!(p.is_ready(&id4), Some(false));
    s.nonces.insert(a.address(), 4);
    let dropped = p.on_committed(&s);
    assert_eq!(dropped.len(), 3);
    assert!(!p.contains(&id1) && !p.contains(&id2));
    assert_eq!(p.is_ready(&id4), Some(true));
    assert_eq!(
        summary(&p.select(10, &s)),
        vec![(a.address(), 4, 7), (b.address(), 0, 1)]
    );
    p.check_invariants().expect("invariants");
}

#[test]
fn replacement_needs_the_minimum_bump() {
    let (mut p, s, a) = (pool(), State::default(), key(0));
    let old = add(&mut p, &s, &a, 0, 100);
    let err = try_add(&mut p, &s, &a, 0, 109).expect_err("under bump");
    assert_eq!(
        err,
        MempoolError::ReplacementUnderpriced {
            fee: 109,
            required: 110
        }
    );
    assert_eq!(
        err.to_string(),
        "fee too low to replace: 109 needs at least 110"
    );
    assert!(p.contains(&old));
    let new = add(&mut p, &s, &a, 0, 110);
    assert!(!p.contains(&old) && p.contains(&new));
    assert_eq!(p.len(), 1);
    assert_eq!(p.bytes(), p.get(&new).expect("pooled").encode().len());
    assert_eq!(summary(&p.select(10, &s)), vec![(a.address(), 0, 110)]);
    // A held transaction is replaceable too, and zero fees need one satoshi more.
    add(&mut p, &s, &a, 5, 0);
    assert_eq!(
        try_add(&mut p, &s, &a, 5, 0),
        Err(MempoolError::AlreadyKnown(signed(&a, 5, 0).id()))
    );
    add(&mut p, &s, &a, 5, 1);
    assert_eq!(p.len(), 2);
    p.check_invariants().expect("invariants");
}

#[test]
fn per_sender_limit_is_enforced_but_replacement_is_allowed() {
    let mut p = Mempool::new(MempoolConfig {
        max_per_sender: 3,
        ..MempoolConfig::new(CHAIN)
    });
    let (s, a) = (State::default(), key(0));
    for n in 0..3 {
        add(&mut p, &s, &a, n, 10);
    }
    let err = try_add(&mut p, &s, &a, 3, 10).expect_err("limit");
    assert_eq!(err, MempoolError::SenderLimit { limit: 3 });
    assert_eq!(
        err.to_string(),
        "too many pending transactions from this sender: limit 3"
    );
    add(&mut p, &s, &a, 1, 20);
    add(&mut p, &s, &key(1), 0, 10);
    assert_eq!(p.len(), 4);
}

#[test]
fn fees_must_be_payable_from_the_balance() {
    let (mut p, a) = (pool(), key(0));
    let mut s = State::default();
    s.balances.insert(a.address(), 250);
    add(&mut p, &s, &a, 0, 100);
    add(&mut p, &s, &a, 1, 100);
    let err = try_add(&mut p, &s, &a, 2, 100).expect_err("cannot pay");
    assert_eq!(
        err,
        MempoolError::CannotPayFee {
            need: 300,
            have: 250
        }
    );
    assert_eq!(
        err.to_string(),
        "cannot pay fees: 300 sats needed for pending transactions, balance 250"
    );
    // Replacing nonce 1 counts its new fee instead of the old one: 100 + 150 = 250.
    add(&mut p, &s, &a, 1, 150);
    assert!(matches!(
        try_add(&mut p, &s, &a, 1, 165),
        Err(MempoolError::CannotPayFee {
            need: 265,
            have: 250
        })
    ));
    // A sum past u128::MAX is refused, not wrapped.
    let b = key(1);
    s.balances.insert(b.address(), Amount::MAX);
    add(&mut p, &s, &b, 0, Amount::MAX - 1);
    assert!(matches!(
        try_add(&mut p, &s, &b, 1, 2),
        Err(MempoolError::CannotPayFee {
            need: Amount::MAX,
            ..
        })
    ));
    // With the check off, fees are not compared with balances.
    let mut off = Mempool::new(MempoolConfig {
        check_fee_balance: false,
        ..MempoolConfig::new(CHAIN)
    });
    add(&mut off, &s, &a, 0, 1_000);
}

/// A pool that holds exactly `n` of the test transactions (all encode to the same size).
fn pool_of(n: usize) -> (Mempool, usize) {
    let size = signed(&key(0), 0, 1).encode().len();
    assert_eq!(signed(&key(9), 3, Amount::MAX).encode().len(), size);
    let cfg = MempoolConfig {
        max_bytes: n * size,
        ..MempoolConfig::new(CHAIN)
    };
    (Mempool::new(cfg), size)
}

#[test]
fn byte_bound_evicts_lowest_fee_last_transactions_without_gaps() {
    let (mut p, size) = pool_of(3);
    let s = State::default();
    let (a, b, c, d) = (key(0), key(1), key(2), key(3));
    let a0 = add(&mut p, &s, &a, 0, 1);
    let a1 = add(&mut p, &s, &a, 1, 1);
    let b0 = add(&mut p, &s, &b, 0, 5);
    assert_eq!(p.bytes(), 3 * size);
    // Equal or lower priority than everything evictable: refused, nothing changes.
    let err = try_add(&mut p, &s, &c, 0, 1).expect_err("full");
    assert_eq!(err, MempoolError::Full { size, fee: 1 });
    assert_eq!(
        err.to_string(),
        format!("mempool full: no room for {size} bytes at fee 1")
    );
    assert_eq!(ids(&p), HashSet::from([a0, a1, b0]));
    // Fee 3 evicts a's *last* transaction (nonce 1), never a's nonce 0 alone.
    let c0 = add(&mut p, &s, &c, 0, 3);
    assert_eq!(ids(&p), HashSet::from([a0, b0, c0]));
    // Again: a's nonce 0 is now its last and the lowest.
    let d0 = add(&mut p, &s, &d, 0, 3);
    assert_eq!(ids(&p), HashSet::from([b0, c0, d0]));
    assert_eq!(p.bytes(), 3 * size);
    // Equal fee does not evict (no churn).
    assert!(matches!(
        try_add(&mut p, &s, &a, 0, 3),
        Err(MempoolError::Full { .. })
    ));
    p.check_invariants().expect("invariants");
}

#[test]
fn eviction_takes_held_transactions_first_and_spares_the_newcomers_earlier_nonces() {
    let (mut p, _) = pool_of(3);
    let s = State::default();
    let (a, b, c) = (key(0), key(1), key(2));
    let held = add(&mut p, &s, &a, 5, 1_000);
    let b0 = add(&mut p, &s, &b, 0, 10);
    let c0 = add(&mut p, &s, &c, 0, 1);
    // A ready newcomer evicts the held transaction despite its high fee.
    let b1 = add(&mut p, &s, &b, 1, 2);
    assert_eq!(ids(&p), HashSet::from([b0, c0, b1]));
    // A held newcomer cannot evict a ready transaction.
    assert!(matches!(
        try_add(&mut p, &s, &a, 9, 1_000),
        Err(MempoolError::Full { .. })
    ));
    assert!(!p.contains(&held));
    // b's nonce 2 (fee 2): the lowest last transaction is c's (fee 1), then b's own nonce 1,
    // which is below the newcomer's nonce and must stay: c0 goes.
    let b2 = add(&mut p, &s, &b, 2, 2);
    assert_eq!(ids(&p), HashSet::from([b0, b1, b2]));
    // Now every transaction is b's and below b's next nonce: nothing evictable.
    assert!(matches!(
        try_add(&mut p, &s, &b, 3, 1_000),
        Err(MempoolError::Full { .. })
    ));
    // A newcomer filling b's... replacement of b's nonce 0 at a higher fee fits in place.
    let b0x = add(&mut p, &s, &b, 0, 20);
    assert_eq!(ids(&p), HashSet::from([b0x, b1, b2]));
    p.check_invariants().expect("invariants");
}

#[test]
fn a_larger_replacement_evicts_others_never_the_transaction_it_replaces() {
    let (a, b) = (key(0), key(1));
    let small = sized(&a, 0, 1, 1);
    let other = sized(&b, 0, 5, 1);
    let big = sized(&a, 0, 10, 12);
    let room = small.encode().len() + other.encode().len();
    let mut p = Mempool::new(MempoolConfig {
        max_bytes: room,
        ..MempoolConfig::new(CHAIN)
    });
    let s = State::default();
    p.insert(verified(small.clone()), &s).expect("fits");
    p.insert(verified(other.clone()), &s).expect("fits");
    assert_eq!(p.bytes(), room);
    // The old transaction (fee 1) is the lowest, but it is the one being replaced: its
    // bytes are already counted as freed, so b's must go.
    let id = p.insert(verified(big.clone()), &s).expect("replaces");
    assert_eq!(ids(&p), HashSet::from([id]));
    assert_eq!(p.bytes(), big.encode().len());
    p.check_invariants().expect("invariants");
}

#[test]
fn a_newcomer_may_evict_its_own_senders_later_nonces() {
    let (mut p, _) = pool_of(2);
    let s = State::default();
    let a = key(0);
    let a2 = add(&mut p, &s, &a, 2, 1);
    let a3 = add(&mut p, &s, &a, 3, 1);
    // a's nonce 0 (ready) evicts a's held nonce 3 (its last), keeping nonce 2.
    let a0 = add(&mut p, &s, &a, 0, 1);
    assert_eq!(ids(&p), HashSet::from([a0, a2]));
    assert!(!p.contains(&a3));
    p.check_invariants().expect("invariants");
}

#[test]
fn selection_is_by_fee_then_arrival_in_nonce_order_within_limits() {
    let (mut p, s) = (pool(), State::default());
    let (a, b, c) = (key(0), key(1), key(2));
    add(&mut p, &s, &a, 0, 5);
    add(&mut p, &s, &a, 1, 50); // waits for a's nonce 0
    add(&mut p, &s, &b, 0, 10);
    add(&mut p, &s, &b, 1, 1);
    add(&mut p, &s, &c, 0, 5); // same fee as a's nonce 0, later
    let all = summary(&p.select(100, &s));
    assert_eq!(
        all,
        vec![
            (b.address(), 0, 10),
            (a.address(), 0, 5),
            (a.address(), 1, 50),
            (c.address(), 0, 5),
            (b.address(), 1, 1),
        ]
    );
    assert_eq!(summary(&p.select(2, &s)), all[..2].to_vec());
    assert!(p.select(0, &s).is_empty());
    // Selection does not remove anything.
    assert_eq!(p.len(), 5);
}

#[test]
fn selection_follows_the_given_state_even_if_the_pool_is_behind() {
    let (mut p, mut s, a) = (pool(), State::default(), key(0));
    for n in 0..4 {
        add(&mut p, &s, &a, n, 1);
    }
    s.nonces.insert(a.address(), 2);
    assert_eq!(
        summary(&p.select(10, &s)),
        vec![(a.address(), 2, 1), (a.address(), 3, 1)]
    );
    // A state with no matching nonce selects nothing for that sender.
    s.nonces.insert(a.address(), 9);
    assert!(p.select(10, &s).is_empty());
}

#[test]
fn commits_drop_included_and_stale_transactions() {
    let (mut p, mut s) = (pool(), State::default());
    let (a, b) = (key(0), key(1));
    let a0 = add(&mut p, &s, &a, 0, 1);
    let a1 = add(&mut p, &s, &a, 1, 1);
    let b0 = add(&mut p, &s, &b, 0, 1);
    let block = p.select(1, &s);
    assert_eq!(summary(&block), vec![(a.address(), 0, 1)]);
    s.nonces.insert(a.address(), 1);
    let senders: Vec<Address> = block.iter().map(|t| t.tx.sender).collect();
    assert_eq!(p.on_committed_senders(&senders, &s), vec![a0]);
    assert_eq!(ids(&p), HashSet::from([a1, b0]));
    // Nonces never move back.
    s.nonces.insert(a.address(), 0);
    assert!(p.on_committed(&s).is_empty());
    assert_eq!(p.len(), 2);
    // Insert brings a sender forward before checking: a1 is stale once a's nonce is 2.
    s.nonces.insert(a.address(), 2);
    let a2 = add(&mut p, &s, &a, 2, 1);
    assert_eq!(ids(&p), HashSet::from([a2, b0]));
    p.check_invariants().expect("invariants");
}

#[test]
fn remove_holds_the_senders_later_transactions() {
    let (mut p, s, a) = (pool(), State::default(), key(0));
    let a0 = add(&mut p, &s, &a, 0, 1);
    let a1 = add(&mut p, &s, &a, 1, 1);
    let a2 = add(&mut p, &s, &a, 2, 1);
    let removed = p.remove(&a1).expect("pooled");
    assert_eq!(removed.id(), a1);
    assert_eq!(p.remove(&a1), None);
    assert_eq!(p.is_ready(&a0), Some(true));
    assert_eq!(p.is_ready(&a2), Some(false));
    assert_eq!(summary(&p.select(10, &s)), vec![(a.address(), 0, 1)]);
    p.check_invariants().expect("invariants");
}

#[test]
fn batch_insertion_passes_errors_through_and_fills_gaps_in_order() {
    let (mut p, s, a) = (pool(), State::default(), key(0));
    let mut bad = signed(&a, 3, 1);
    bad.signature[0] ^= 1;
    let txs = vec![
        signed(&a, 1, 1),
        signed(&a, 0, 1),
        bad,
        signed_on(9, &a, 2, 1),
    ];
    let out = p.insert_all(Mempool::verify(txs.clone()), &s);
    assert_eq!(out[0], Ok(txs[0].id()));
    assert_eq!(out[1], Ok(txs[1].id()));
    assert!(matches!(out[2], Err(MempoolError::Signature(_))));
    assert!(matches!(out[3], Err(MempoolError::WrongChainId { .. })));
    assert_eq!(p.ready_len(), 2);
}

/// 20,000 transactions from 2,000 senders: verified in parallel, admitted, selected and
/// committed; prints the rates (`cargo test --release -- --nocapture` for real figures).
#[test]
fn many_transactions_flow_through() {
    let keys: Vec<SigningKey> = (0..2_000).map(key).collect();
    let txs: Vec<SignedTx> = keys
        .iter()
        .enumerate()
        .flat_map(|(i, k)| {
            (0..10).map(move |n| signed(k, 9 - n, (i as Amount * 7) % 100 + n as Amount))
        })
        .collect();
    let n = txs.len();
    let t = Instant::now();
    let verified = Mempool::verify(txs);
    let t_verify = t.elapsed();
    let mut p = pool();
    let mut s = State::default();
    let t = Instant::now();
    for v in verified {
        p.insert(v.expect("valid"), &s).expect("admitted");
    }
    let t_insert = t.elapsed();
    assert_eq!((p.len(), p.ready_len()), (n, n));
    let t = Instant::now();
    let block = p.select(10_000, &s);
    let t_select = t.elapsed();
    assert_eq!(block.len(), 10_000);
    let mut senders = BTreeMap::new();
    for tx in &block {
        let next = s.nonces.entry(tx.tx.sender).or_insert(0);
        assert_eq!(*next, tx.tx.nonce, "selection must be nonce-contiguous");
        *next += 1;
        senders.insert(tx.tx.sender, ());
    }
    let t = Instant::now();
    let dropped = p.on_committed_senders(senders.keys(), &s);
    let t_commit = t.elapsed();
    assert_eq!(dropped.len(), 10_000);
    assert_eq!(p.len(), n - 10_000);
    p.check_invariants().expect("invariants");
    let rate = |d: std::time::Duration, k: usize| k as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "verify {:.0}/s, insert {:.0}/s, select {:.0}/s, commit {:.0}/s",
        rate(t_verify, n),
        rate(t_insert, n),
        rate(t_select, 10_000),
        rate(t_commit, 10_000)
    );
}

// ---- random sequences ------------------------------------------------------------------

const SENDERS: u32 = 4;
const NONCES: u64 = 6;
const FEES: [Amount; 6] = [1, 2, 3, 5, 8, 20];

/// A transaction whose encoding grows with `len` (an asset symbol of `len` letters).
fn sized(k: &SigningKey, nonce: u64, fee: Amount, len: usize) -> SignedTx {
    k.sign(Tx {
        chain_id: CHAIN,
        sender: k.address(),
        nonce,
        fee,
        call: Call::Bank(BankMsg::CreateAsset {
            symbol: "A".repeat(len),
            decimals: 0,
            initial_supply: 1,
        }),
    })
}

/// Every (sender, nonce, fee) transaction the property tests use (of varied sizes), signed and verified once.
fn catalogue() -> &'static HashMap<(u32, u64, usize), VerifiedTx> {
    static CAT: OnceLock<HashMap<(u32, u64, usize), VerifiedTx>> = OnceLock::new();
    CAT.get_or_init(|| {
        let mut keys_of = Vec::new();
        let mut txs = Vec::new();
        for s in 0..SENDERS {
            let k = key(100 + s);
            for n in 0..NONCES {
                for (f, fee) in FEES.iter().enumerate() {
                    keys_of.push((s, n, f));
                    txs.push(sized(
                        &k,
                        n,
                        *fee,
                        1 + (s as usize * 7 + n as usize * 13 + f * 29) % 120,
                    ));
                }
            }
        }
        keys_of
            .into_iter()
            .zip(Mempool::verify(txs))
            .map(|(k, v)| (k, v.expect("valid")))
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u32, u64, usize),
    /// Select up to this many, commit them, sync the block's senders (or all).
    Commit(usize, bool),
    /// A sender's nonce moves on by transactions the pool never saw.
    Bump(u32, u64),
    /// Remove the i-th pooled transaction (as the builder does with an invalid one).
    Remove(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SENDERS, 0..NONCES, 0..FEES.len()).prop_map(|(s, n, f)| Op::Insert(s, n, f)),
        2 => (0usize..6, any::<bool>()).prop_map(|(m, all)| Op::Commit(m, all)),
        1 => (0..SENDERS, 1u64..3).prop_map(|(s, k)| Op::Bump(s, k)),
        1 => (0usize..10).prop_map(Op::Remove),
    ]
}

/// The reference selection: repeatedly the best (fee, earliest arrival) next transaction
/// among the senders' contiguous runs from their state nonce. O(n²), obviously right.
fn reference_select(
    p: &Mempool,
    state: &State,
    arrival: &HashMap<TxId, u64>,
    max: usize,
) -> Vec<TxId> {
    let mut by_sender: HashMap<Address, BTreeMap<u64, (Amount, u64, TxId)>> = HashMap::new();
    for tx in p.iter() {
        let id = tx.id();
        by_sender
            .entry(tx.tx.sender)
            .or_default()
            .insert(tx.tx.nonce, (tx.tx.fee, arrival[&id], id));
    }
    let mut next: HashMap<Address, u64> = by_sender.keys().map(|a| (*a, state.nonce(a))).collect();
    let mut out = Vec::new();
    while out.len() < max {
        let best = by_sender
            .iter()
            .filter_map(|(a, txs)| txs.get(&next[a]).map(|t| (a, *t)))
            .max_by(|x, y| {
                (x.1 .0, std::cmp::Reverse(x.1 .1)).cmp(&(y.1 .0, std::cmp::Reverse(y.1 .1)))
            });
        let Some((a, (_, _, id))) = best else { break };
        out.push(id);
        let a = *a;
        *next.get_mut(&a).expect("sender") += 1;
    }
    out
}

/// (ready, fee, arrival, size, id, nonce) of a pooled transaction.
type Pooled = (bool, Amount, u64, usize, TxId, u64);

/// The reference eviction plan for a newcomer from `sender` at `nonce` paying `fee`:
/// repeatedly the least (held before ready, fee, latest arrival) last transaction of a sender,
/// never the newcomer's sender's at or below `nonce`, while strictly below the newcomer's
/// (class, fee). `None`: not enough room can be made.
fn reference_evictions(
    p: &Mempool,
    arrival: &HashMap<TxId, u64>,
    (sender, nonce, fee, ready): (Address, u64, Amount, bool),
    need: usize,
) -> Option<HashSet<TxId>> {
    let mut chains: HashMap<Address, Vec<Pooled>> = HashMap::new();
    for tx in p.iter() {
        let id = tx.id();
        chains.entry(tx.tx.sender).or_default().push((
            p.is_ready(&id) == Some(true),
            tx.tx.fee,
            arrival[&id],
            tx.encode().len(),
            id,
            tx.tx.nonce,
        ));
    }
    for c in chains.values_mut() {
        c.sort_by_key(|t| t.5);
    }
    let mut freed = 0;
    let mut out = HashSet::new();
    while freed < need {
        let (a, last) = chains
            .iter()
            .filter_map(|(a, c)| c.last().map(|t| (*a, *t)))
            .filter(|(a, t)| !(*a == sender && t.5 <= nonce))
            .min_by_key(|(_, t)| (t.0, t.1, std::cmp::Reverse(t.2)))?;
        if (last.0, last.1) >= (ready, fee) {
            return None;
        }
        chains.get_mut(&a)?.pop();
        freed += last.3;
        out.insert(last.4);
    }
    Some(out)
}

fn nonces_by_sender(p: &Mempool) -> HashMap<Address, Vec<u64>> {
    let mut m: HashMap<Address, Vec<u64>> = HashMap::new();
    for tx in p.iter() {
        m.entry(tx.tx.sender).or_default().push(tx.tx.nonce);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sequences_keep_every_invariant(
        ops in prop::collection::vec(op(), 1..80),
        balances in prop::collection::vec(0u128..60, SENDERS as usize),
        bytes_room in 3usize..10,
    ) {
        let cat = catalogue();
        let size = cat[&(0, 0, 0)].size();
        let cfg = MempoolConfig {
            max_bytes: bytes_room * size,
            max_per_sender: 4,
            nonce_window: 5,
            ..MempoolConfig::new(CHAIN)
        };
        let mut p = Mempool::new(cfg);
        let mut state = State::default();
        let addr = |s: u32| cat[&(s, 0, 0)].tx().tx.sender;
        for s in 0..SENDERS {
            state.balances.insert(addr(s), balances[s as usize]);
        }
        let mut arrival: HashMap<TxId, u64> = HashMap::new();
        let mut clock = 0u64;
        for op in ops {
            match op {
                Op::Insert(s, n, f) => {
                    let v = cat[&(s, n, f)].clone();
                    let size = v.size();
                    let before = ids(&p);
                    let before_bytes = p.bytes();
                    let before_nonces = nonces_by_sender(&p);
                    let replaced_tx = p.pending_of(&addr(s)).find(|t| t.tx.nonce == n).cloned();
                    let replaced = replaced_tx.as_ref().map(SignedTx::id);
                    let replaced_size = replaced_tx.map_or(0, |t| t.encode().len());
                    let incoming_ready = n <= p.pending_nonce(&addr(s)).unwrap_or(state.nonce(&addr(s)));
                    let need = (before_bytes - replaced_size + size).saturating_sub(p.config().max_bytes);
                    let plan = reference_evictions(&p, &arrival, (addr(s), n, FEES[f], incoming_ready), need);
                    match p.insert(v.clone(), &state) {
                        Ok(id) => {
                            prop_assert_eq!(id, v.id());
                            prop_assert!(p.contains(&id));
                            arrival.insert(id, clock);
                            clock += 1;
                            // What left: the replaced one, and evicted transactions, each
                            // above every kept earlier transaction of its sender.
                            let after = ids(&p);
                            let after_nonces = nonces_by_sender(&p);
                            for (a, old) in &before_nonces {
                                let kept: Vec<u64> = after_nonces.get(a).cloned().unwrap_or_default();
                                let removed: Vec<u64> = old.iter().copied().filter(|x| !(kept.contains(x) || (*a == addr(s) && *x == n))).collect();
                                if let (Some(min_removed), Some(max_kept_old)) = (
                                    removed.iter().min(),
                                    old.iter().copied().filter(|x| kept.contains(x)).max(),
                                ) {
                                    prop_assert!(min_removed > &max_kept_old,
                                        "eviction left a gap: removed {:?}, kept {:?}", removed, kept);
                                }
                                if *a == addr(s) {
                                    prop_assert!(removed.iter().all(|x| *x > n),
                                        "evicted the newcomer's own earlier nonce");
                                }
                            }
                            let evicted: HashSet<TxId> = before.difference(&after).copied().filter(|x| Some(*x) != replaced).collect();
                            prop_assert_eq!(Some(evicted), plan, "eviction differs from the reference");
                            if before.len() + 1 - usize::from(replaced.is_some()) > after.len() {
                                // Something was evicted: the pool had to be over the bound.
                                prop_assert!(before_bytes - replaced_size + size > p.config().max_bytes);
                            } else {
                                prop_assert_eq!(p.bytes(), before_bytes - replaced_size + size);
                            }
                        }
                        Err(e) => {
                            // A refusal changes nothing (the pool is always in sync here).
                            prop_assert_eq!(ids(&p), before);
                            let committed = state.nonce(&addr(s));
                            match e {
                                MempoolError::NonceTooLow { nonce, committed: c } => {
                                    prop_assert_eq!((nonce, c), (n, committed));
                                    prop_assert!(n < committed);
                                }
                                MempoolError::NonceTooHigh { .. } => prop_assert!(n >= committed + 5),
                                MempoolError::AlreadyKnown(id) => prop_assert_eq!(id, v.id()),
                                MempoolError::ReplacementUnderpriced { .. } => prop_assert!(replaced.is_some()),
                                MempoolError::SenderLimit { .. } => {
                                    prop_assert!(replaced.is_none());
                                    prop_assert_eq!(p.pending_of(&addr(s)).count(), 4);
                                }
                                MempoolError::CannotPayFee { need, have } => {
                                    prop_assert!(need > have);
                                    prop_assert_eq!(have, state.fee_balance(&addr(s)));
                                }
                                MempoolError::Full { .. } => {
                                    prop_assert!(p.bytes() - replaced_size + size > p.config().max_bytes);
                                    prop_assert_eq!(plan, None, "refused although room could be made");
                                }
                                other => prop_assert!(false, "unexpected error {}", other),
                            }
                        }
                    }
                }
                Op::Commit(max, all) => {
                    let block = p.select(max, &state);
                    let expect = reference_select(&p, &state, &arrival, max);
                    let got: Vec<TxId> = block.iter().map(SignedTx::id).collect();
                    prop_assert_eq!(&got, &expect);
                    prop_assert!(block.len() <= max);
                    let mut senders = Vec::new();
                    for tx in &block {
                        let a = tx.tx.sender;
                        prop_assert_eq!(state.nonce(&a), tx.tx.nonce, "not nonce-contiguous");
                        // Admission keeps pending fees within the balance, so the fee is paid.
                        let bal = state.fee_balance(&a);
                        prop_assert!(bal >= tx.tx.fee, "unpayable fee selected");
                        state.balances.insert(a, bal - tx.tx.fee);
                        state.nonces.insert(a, tx.tx.nonce + 1);
                        senders.push(a);
                    }
                    let dropped = if all { p.on_committed(&state) } else { p.on_committed_senders(&senders, &state) };
                    for id in &got {
                        prop_assert!(dropped.contains(id) && !p.contains(id));
                    }
                }
                Op::Bump(s, k) => {
                    let a = addr(s);
                    let n = state.nonce(&a) + k;
                    state.nonces.insert(a, n);
                    p.on_committed(&state);
                    prop_assert!(p.pending_of(&a).all(|t| t.tx.nonce >= n));
                }
                Op::Remove(i) => {
                    let mut all: Vec<TxId> = ids(&p).into_iter().collect();
                    all.sort();
                    if let Some(id) = all.get(i) {
                        let len = p.len();
                        prop_assert_eq!(p.remove(id).map(|t| t.id()), Some(*id));
                        prop_assert_eq!(p.len(), len - 1);
                    }
                }
            }
            // After every step.
            if let Err(e) = p.check_invariants() {
                prop_assert!(false, "invariant broken: {}", e);
            }
            let sum: usize = p.iter().map(|t| t.encode().len()).sum();
            prop_assert_eq!(p.bytes(), sum);
            prop_assert_eq!(p.len(), p.iter().count());
            prop_assert!(p.bytes() <= p.config().max_bytes);
            for (a, ns) in nonces_by_sender(&p) {
                prop_assert!(ns.len() <= 4);
                let c = state.nonce(&a);
                prop_assert!(ns.iter().all(|n| *n >= c && *n < c + 5));
                let fees: Amount = p.pending_of(&a).map(|t| t.tx.fee).sum();
                prop_assert!(fees <= state.fee_balance(&a), "pending fees exceed the balance");
                let mut next = c;
                while ns.contains(&next) { next += 1; }
                prop_assert_eq!(p.pending_nonce(&a), Some(next));
            }
        }
    }
}
