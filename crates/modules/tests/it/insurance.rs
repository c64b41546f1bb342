//! Insurance: a worked example end to end (pool, underwriting, cover, claim, votes, payout,
//! loss pro rata, withdrawal after notice), the roundings, every message's failure modes,
//! invariants over random sequences of operations and users, and parallel == sequential on
//! random blocks.

use parabit_exec::{execute_sequential, ExecConfig, ParallelExecutor, Value};
use parabit_modules::insurance::{
    capacity, derive_id, query_claim, query_cover, quote_premium, vault_address, ClaimStatus,
    PREFIX_ASSESSOR_STAKE, PREFIX_COVER, PREFIX_SHARES, PREFIX_WITHDRAWAL,
};
use parabit_modules::{
    check_conservation, genesis_state, BankMsg, BlockTx, Call, InsuranceId, InsuranceKey,
    InsuranceMsg, InsurancePool, Tx,
};
use parabit_primitives::{Address, Amount, AssetId, TxStatus};
use proptest::prelude::*;

use crate::harness::{self, pools};
use crate::{account, runtime};

const BTC: AssetId = AssetId::BTC;
const START: Amount = 1_000_000_000_000;
const NOTICE: u64 = 10;
const VOTE: u64 = 5;

fn creator() -> Address {
    account(300)
}

fn params() -> InsurancePool {
    InsurancePool {
        asset: BTC,
        max_cover_bps: 5_000,
        base_rate_bps: 200,
        slope_bps: 800,
        notice_blocks: NOTICE,
        vote_blocks: VOTE,
        quorum_bps: 5_000,
    }
}

type Chain = harness::Chain<InsuranceMsg, InsuranceId>;

impl Chain {
    /// Accounts 0..n and the creator with [`START`] BTC sats each; one pool with `p`.
    fn with(n: u32, p: InsurancePool) -> Chain {
        let balances: Vec<_> = (0..n)
            .map(account)
            .chain([creator()])
            .map(|a| (a, BTC, START))
            .collect();
        let mut c = Chain::start(genesis_state(&balances), derive_id(&creator(), 0));
        c.ok(creator(), InsuranceMsg::CreatePool(p));
        c
    }

    fn new(n: u32) -> Chain {
        Chain::with(n, params())
    }

    /// Buys cover; returns its id.
    fn buy(&mut self, buyer: Address, amount: Amount, period: u64) -> InsuranceId {
        let id = derive_id(&buyer, self.next_nonce(&buyer));
        self.ok(buyer, buy(self.pool, amount, period, Amount::MAX));
        id
    }

    fn bal(&self, who: &Address) -> Amount {
        self.balance(who, BTC)
    }

    fn skip_to(&mut self, height: u64) {
        assert!(height >= self.height);
        self.height = height;
    }
}

fn underwrite(pool: InsuranceId, amount: Amount) -> InsuranceMsg {
    InsuranceMsg::Underwrite { pool, amount }
}
fn buy(pool: InsuranceId, amount: Amount, period_blocks: u64, max_premium: Amount) -> InsuranceMsg {
    InsuranceMsg::BuyCover {
        pool,
        risk: "bridge-hack".into(),
        amount,
        period_blocks,
        max_premium,
    }
}
fn stake(pool: InsuranceId, amount: Amount) -> InsuranceMsg {
    InsuranceMsg::StakeAssessor { pool, amount }
}
fn vote(cover: InsuranceId, approve: bool) -> InsuranceMsg {
    InsuranceMsg::Vote { cover, approve }
}
fn file(cover: InsuranceId, amount: Amount) -> InsuranceMsg {
    InsuranceMsg::FileClaim { cover, amount }
}

#[test]
fn worked_example_end_to_end() {
    let mut c = Chain::new(8);
    let p = c.pool;
    let (u1, u2, buyer, a1, a2, a3) = (
        account(0),
        account(1),
        account(2),
        account(3),
        account(4),
        account(5),
    );
    // Underwriters: 1,000,000 then 500,000 at one share per unit.
    c.ok(u1, underwrite(p, 1_000_000));
    c.ok(u2, underwrite(p, 500_000));
    assert_eq!(c.num(InsuranceKey::Shares(p, u1)), 1_000_000);
    assert_eq!(c.num(InsuranceKey::Shares(p, u2)), 500_000);
    assert_eq!(c.num(InsuranceKey::Capital(p)), 1_500_000);
    // Capacity 50% of capital: 750,000. Cover of 300,000 for 50,000 blocks: utilisation after
    // = 4,000 bps, rate = 200 + 800 · 0.4 = 520 bps per 100,000 blocks, premium
    // = 300,000 · 5.2% · 0.5 = 7,800.
    assert_eq!(quote_premium(&c.state, p, 300_000, 50_000), Ok(7_800));
    let before = c.bal(&buyer);
    let cover = c.buy(buyer, 300_000, 50_000);
    assert_eq!(before - c.bal(&buyer), 7_800);
    assert_eq!(c.num(InsuranceKey::Capital(p)), 1_507_800);
    assert_eq!(c.num(InsuranceKey::ActiveCover(p)), 300_000);
    let cv = query_cover(&c.state, cover).expect("cover");
    assert_eq!(
        (cv.holder, cv.amount, cv.end - cv.start),
        (buyer, 300_000, 50_000)
    );
    assert_eq!(cv.risk, "bridge-hack");

    // Assessors: 600 + 300 + 100; quorum 50% of 1,000 = 500.
    c.ok(a1, stake(p, 600));
    c.ok(a2, stake(p, 300));
    c.ok(a3, stake(p, 100));
    assert_eq!(c.num(InsuranceKey::TotalAssessorStake(p)), 1_000);

    let filed = c.height;
    c.ok(buyer, file(cover, 200_000));
    let claim = query_claim(&c.state, cover).expect("claim");
    assert_eq!(
        (claim.amount, claim.deadline, claim.status),
        (200_000, filed + VOTE, ClaimStatus::Open)
    );
    c.ok(a1, vote(cover, true));
    c.ok(a2, vote(cover, false));
    assert_eq!(c.num(InsuranceKey::VotesYes(cover)), 600);
    assert_eq!(c.num(InsuranceKey::VotesNo(cover)), 300);
    // A voter's stake is locked until the deadline.
    let h = c.height;
    c.fails(
        a1,
        InsuranceMsg::UnstakeAssessor { pool: p, amount: 1 },
        &format!(
            "assessor stake locked until height {}, now {h}",
            filed + VOTE
        ),
    );
    let h = c.height;
    c.fails(
        a3,
        InsuranceMsg::Resolve { cover },
        &format!(
            "voting on cover {cover}'s claim still open at height {h} (deadline {})",
            filed + VOTE
        ),
    );
    c.skip_to(filed + VOTE);
    let before = c.bal(&buyer);
    c.ok(a3, InsuranceMsg::Resolve { cover });
    // 900 ≥ 500 voted and 600 > 300: approved, paid in full.
    assert_eq!(c.bal(&buyer) - before, 200_000);
    let claim = query_claim(&c.state, cover).expect("claim");
    assert_eq!((claim.status, claim.paid), (ClaimStatus::Paid, 200_000));
    assert_eq!(c.num(InsuranceKey::Capital(p)), 1_307_800);
    assert_eq!(c.num(InsuranceKey::ActiveCover(p)), 0);
    assert!(query_cover(&c.state, cover).expect("cover").released);
    check_invariants(&c).unwrap();

    // The loss is borne pro rata: U1 holds 2/3 of the shares, U2 1/3.
    // U1: floor(1,000,000 · 1,307,800 / 1,500,000) = 871,866 (the remaining 0.67 stays).
    let h = c.height;
    c.ok(
        u1,
        InsuranceMsg::RequestWithdrawal {
            pool: p,
            shares: 1_000_000,
        },
    );
    assert_eq!(c.num(InsuranceKey::Shares(p, u1)), 0);
    assert_eq!(c.num(InsuranceKey::TotalShares(p)), 1_500_000);
    let now = c.height;
    c.fails(
        u1,
        InsuranceMsg::Withdraw { pool: p },
        &format!(
            "notice period: withdrawal ready at height {}, now {now}",
            h + NOTICE
        ),
    );
    c.skip_to(h + NOTICE);
    let before = c.bal(&u1);
    c.ok(u1, InsuranceMsg::Withdraw { pool: p });
    assert_eq!(c.bal(&u1) - before, 871_866);
    assert_eq!(c.num(InsuranceKey::Capital(p)), 435_934);
    assert_eq!(c.num(InsuranceKey::TotalShares(p)), 500_000);
    // U2 is last and takes the rest, the rounding dust included: 435,933.33 → 435,934.
    let h = c.height;
    c.ok(
        u2,
        InsuranceMsg::RequestWithdrawal {
            pool: p,
            shares: 500_000,
        },
    );
    c.skip_to(h + NOTICE);
    let before = c.bal(&u2);
    c.ok(u2, InsuranceMsg::Withdraw { pool: p });
    assert_eq!(c.bal(&u2) - before, 435_934);
    assert_eq!(c.num(InsuranceKey::Capital(p)), 0);
    // Underwriters lost 200,000 − 7,800 = 192,200 together, 2:1 up to the roundings.
    let (loss1, loss2) = (START - c.bal(&u1), START - c.bal(&u2));
    assert_eq!((loss1, loss2), (128_134, 64_066));
    assert_eq!(loss1 + loss2, 200_000 - 7_800);
    // The assessors take their stake back once unlocked.
    c.ok(
        a1,
        InsuranceMsg::UnstakeAssessor {
            pool: p,
            amount: 600,
        },
    );
    assert_eq!(c.bal(&a1), START);
    check_invariants(&c).unwrap();
}

#[test]
fn a_claim_without_quorum_or_majority_is_rejected_and_the_cover_released_after_its_end() {
    let mut c = Chain::new(6);
    let p = c.pool;
    c.ok(account(0), underwrite(p, 1_000_000));
    c.ok(account(1), stake(p, 600));
    c.ok(account(2), stake(p, 400));
    let cover = c.buy(account(5), 100_000, 20);
    let filed = c.height;
    c.ok(account(5), file(cover, 100_000));
    // 400 of 1,000 vote: below the 500 quorum.
    c.ok(account(2), vote(cover, true));
    c.skip_to(filed + VOTE);
    c.ok(account(3), InsuranceMsg::Resolve { cover });
    let claim = query_claim(&c.state, cover).expect("claim");
    assert_eq!((claim.status, claim.paid), (ClaimStatus::Rejected, 0));
    assert_eq!(c.num(InsuranceKey::ActiveCover(p)), 100_000);
    // One claim per cover.
    c.fails(
        account(5),
        file(cover, 1),
        &format!("cover {cover} already has a claim"),
    );
    let end = query_cover(&c.state, cover).expect("cover").end;
    c.skip_to(end);
    c.ok(account(4), InsuranceMsg::ReleaseCover { cover });
    assert_eq!(c.num(InsuranceKey::ActiveCover(p)), 0);

    // A tie rejects: 500 yes against 500 no.
    let mut c = Chain::new(6);
    let p = c.pool;
    c.ok(account(0), underwrite(p, 1_000_000));
    c.ok(account(1), stake(p, 500));
    c.ok(account(2), stake(p, 500));
    let cover = c.buy(account(5), 100_000, 20);
    let filed = c.height;
    c.ok(account(5), file(cover, 50_000));
    c.ok(account(1), vote(cover, true));
    c.ok(account(2), vote(cover, false));
    c.skip_to(filed + VOTE);
    c.ok(account(3), InsuranceMsg::Resolve { cover });
    assert_eq!(
        query_claim(&c.state, cover).expect("claim").status,
        ClaimStatus::Rejected
    );
    check_invariants(&c).unwrap();
}

#[test]
fn roundings_favour_the_pool() {
    let mut c = Chain::new(4);
    let p = c.pool;
    let (u1, u2, b) = (account(0), account(1), account(2));
    c.ok(u1, underwrite(p, 1_000));
    // Capacity floor(1,000 · 0.5) = 500. The smallest premium is 1 (a ceiling of 0.0000…).
    assert_eq!(capacity(1_000, 5_000), Ok(500));
    assert_eq!(capacity(1_001, 5_000), Ok(500));
    assert_eq!(quote_premium(&c.state, p, 1, 1), Ok(1));
    c.buy(b, 1, 1);
    assert_eq!(c.num(InsuranceKey::Capital(p)), 1_001);
    // Capacity stays 500 (floor of 500.5): 500 fits in all, 501 does not.
    c.fails(
        b,
        buy(p, 500, 1, Amount::MAX),
        "insufficient capacity: active cover 1 + 500 > capacity 500",
    );
    // Shares round down: 1,002 · 1,000 / 1,001 = 1,000.999 → 1,000 shares.
    c.fails(u2, underwrite(p, 1), "deposit 1 too small: worth 0 shares");
    c.ok(u2, underwrite(p, 1_002));
    assert_eq!(c.num(InsuranceKey::Shares(p, u2)), 1_000);
    assert_eq!(c.num(InsuranceKey::Capital(p)), 2_003);
    // Withdrawal value rounds down too: 1,000 · 2,003 / 2,000 = 1,001.5 → 1,001 (< 1,002 paid).
    let h = c.height;
    c.ok(
        u2,
        InsuranceMsg::RequestWithdrawal {
            pool: p,
            shares: 1_000,
        },
    );
    c.skip_to(h + NOTICE);
    let before = c.bal(&u2);
    c.ok(u2, InsuranceMsg::Withdraw { pool: p });
    assert_eq!(c.bal(&u2) - before, 1_001);
    assert_eq!(c.num(InsuranceKey::Capital(p)), 1_002);

    // Premium rounds up at each step: capacity 501, cover 7 for 333 blocks.
    // Utilisation ceil(8 · 10,000 / 501) = 160 bps (159.68), slope part ceil(800 · 0.016)
    // = 13 (12.8): rate 213 bps; premium ceil(7 · 213 · 333 / 1e9) = 1 (0.0005).
    assert_eq!(capacity(1_002, 5_000), Ok(501));
    assert_eq!(quote_premium(&c.state, p, 7, 333), Ok(1));
    // A bigger one: 400 for 1,000,000 blocks: utilisation ceil(401 · 10,000 / 501) = 8,004
    // (8,003.99), slope ceil(800 · 0.8004) = 641 (640.32), rate 841, premium
    // ceil(400 · 841 · 1,000,000 / 1e9) = ceil(336.4) = 337.
    assert_eq!(quote_premium(&c.state, p, 400, 1_000_000), Ok(337));
    c.fails(
        b,
        buy(p, 400, 1_000_000, 336),
        "premium 337 above max_premium 336",
    );
    c.ok(b, buy(p, 400, 1_000_000, 337));
    check_invariants(&c).unwrap();
}

#[test]
fn quorum_rounds_up() {
    let mut c = Chain::new(6);
    let p = c.pool;
    c.ok(account(0), underwrite(p, 1_000_000));
    // Total stake 3; quorum ceil(3 · 50%) = 2.
    c.ok(account(1), stake(p, 1));
    c.ok(account(2), stake(p, 2));
    let lone = c.buy(account(5), 1_000, 100);
    let both = c.buy(account(4), 1_000, 100);
    let filed = c.height;
    c.ok(account(5), file(lone, 1_000));
    c.ok(account(4), file(both, 1_000));
    c.ok(account(1), vote(lone, true)); // 1 < 2: no quorum
    c.ok(account(2), vote(both, true)); // 2 ≥ 2
    c.skip_to(filed + VOTE);
    c.ok(account(3), InsuranceMsg::Resolve { cover: lone });
    c.ok(account(3), InsuranceMsg::Resolve { cover: both });
    assert_eq!(
        query_claim(&c.state, lone).expect("claim").status,
        ClaimStatus::Rejected
    );
    assert_eq!(
        query_claim(&c.state, both).expect("claim").status,
        ClaimStatus::Paid
    );
    check_invariants(&c).unwrap();
}

#[test]
fn a_claim_is_paid_up_to_its_cover_and_the_premium_stays() {
    let mut c = Chain::with(
        6,
        InsurancePool {
            max_cover_bps: 10_000,
            ..params()
        },
    );
    let p = c.pool;
    c.ok(account(0), underwrite(p, 1_000));
    c.ok(account(1), stake(p, 10));
    // Full capacity: cover 1,000 plus its premium.
    let cover = c.buy(account(5), 1_000, 10);
    let capital = c.num(InsuranceKey::Capital(p));
    assert!(capital > 1_000);
    let filed = c.height;
    c.ok(account(5), file(cover, 1_000));
    c.ok(account(1), vote(cover, true));
    c.skip_to(filed + VOTE);
    c.ok(account(1), InsuranceMsg::Resolve { cover });
    // Paid the cover, never above it: the premium stays.
    assert_eq!(c.num(InsuranceKey::Capital(p)), capital - 1_000);
    check_invariants(&c).unwrap();
}

#[test]
fn failure_modes_have_clear_errors() {
    let mut c = Chain::new(8);
    let p = c.pool;
    let (u, b, a, x) = (account(0), account(1), account(2), account(3));
    // CreatePool.
    for (bad, why) in [
        (
            InsurancePool {
                max_cover_bps: 0,
                ..params()
            },
            "max_cover_bps must be 1 to 10000",
        ),
        (
            InsurancePool {
                max_cover_bps: 10_001,
                ..params()
            },
            "max_cover_bps must be 1 to 10000",
        ),
        (
            InsurancePool {
                quorum_bps: 0,
                ..params()
            },
            "quorum_bps must be 1 to 10000",
        ),
        (
            InsurancePool {
                quorum_bps: 10_001,
                ..params()
            },
            "quorum_bps must be 1 to 10000",
        ),
        (
            InsurancePool {
                vote_blocks: 0,
                ..params()
            },
            "vote_blocks must be positive",
        ),
    ] {
        c.fails(
            x,
            InsuranceMsg::CreatePool(bad),
            &format!("invalid pool parameters: {why}"),
        );
    }
    // Underwrite.
    c.fails(u, underwrite(5, 1), "unknown insurance pool 5");
    c.fails(u, underwrite(p, 0), "amount must be positive");
    c.fails(
        u,
        underwrite(p, START + 1),
        &format!("insufficient balance: have {START}, need {}", START + 1),
    );
    // BuyCover on an empty pool.
    c.fails(
        b,
        buy(p, 1, 10, 100),
        "insufficient capacity: active cover 0 + 1 > capacity 0",
    );
    c.ok(u, underwrite(p, 10_000));
    c.fails(b, buy(7, 1, 10, 100), "unknown insurance pool 7");
    c.fails(b, buy(p, 0, 10, 100), "amount must be positive");
    c.fails(b, buy(p, 1, 0, 100), "cover period must be positive");
    for risk in ["", "a risk name longer than thirty-two", "tab\there"] {
        c.fails(
            b,
            InsuranceMsg::BuyCover {
                pool: p,
                risk: risk.into(),
                amount: 1,
                period_blocks: 10,
                max_premium: 100,
            },
            &format!("invalid risk name {risk:?}: use 1 to 32 printable ASCII characters"),
        );
    }
    // A huge name is quoted by its first 40 characters only.
    c.fails(
        b,
        InsuranceMsg::BuyCover {
            pool: p,
            risk: "x".repeat(10_000),
            amount: 1,
            period_blocks: 10,
            max_premium: 100,
        },
        &format!(
            "invalid risk name {:?}: use 1 to 32 printable ASCII characters",
            "x".repeat(40)
        ),
    );
    c.fails(
        b,
        buy(p, 5_001, 10, 100),
        "insufficient capacity: active cover 0 + 5001 > capacity 5000",
    );
    // Full utilisation: rate 200 + 800 = 1,000 bps; 5,000 · 10% = 500.
    c.fails(
        b,
        buy(p, 5_000, 100_000, 499),
        "premium 500 above max_premium 499",
    );
    c.fails(
        account(100),
        buy(p, 5_000, 100_000, 500),
        "insufficient balance: have 0, need 500",
    );
    // RequestWithdrawal / Withdraw.
    c.fails(
        u,
        InsuranceMsg::RequestWithdrawal { pool: p, shares: 0 },
        "amount must be positive",
    );
    c.fails(
        u,
        InsuranceMsg::RequestWithdrawal {
            pool: p,
            shares: 10_001,
        },
        "insufficient shares: have 10000, need 10001",
    );
    c.fails(
        u,
        InsuranceMsg::Withdraw { pool: p },
        "no withdrawal requested",
    );
    // StakeAssessor / UnstakeAssessor.
    c.fails(a, stake(9, 1), "unknown insurance pool 9");
    c.fails(a, stake(p, 0), "amount must be positive");
    c.ok(a, stake(p, 100));
    c.fails(
        a,
        InsuranceMsg::UnstakeAssessor { pool: p, amount: 0 },
        "amount must be positive",
    );
    c.fails(
        a,
        InsuranceMsg::UnstakeAssessor {
            pool: p,
            amount: 101,
        },
        "insufficient assessor stake: have 100, need 101",
    );
    // Cover, claims, votes. Cover 4,000 (utilisation 80%, premium 1): capital 10,001.
    let cover = c.buy(b, 4_000, 20);
    let end = c.height - 1 + 20;
    assert_eq!(c.num(InsuranceKey::Capital(p)), 10_001);
    // Withdrawing 5,000 shares (5,000 sats) would leave capacity 2,500 < 4,000 active.
    let h = c.height;
    c.ok(
        u,
        InsuranceMsg::RequestWithdrawal {
            pool: p,
            shares: 5_000,
        },
    );
    c.fails(
        b,
        InsuranceMsg::ReleaseCover { cover: 42 },
        "unknown cover 42",
    );
    c.fails(
        b,
        InsuranceMsg::ReleaseCover { cover },
        &format!("cover {cover} cannot be released: still running"),
    );
    c.fails(x, file(77, 1), "unknown cover 77");
    c.fails(
        x,
        file(cover, 1),
        &format!("{x} does not hold cover {cover}"),
    );
    c.fails(b, file(cover, 0), "amount must be positive");
    c.fails(b, file(cover, 4_001), "claim 4001 above cover 4000");
    c.fails(x, vote(cover, true), &format!("no claim on cover {cover}"));
    c.fails(
        x,
        InsuranceMsg::Resolve { cover },
        &format!("no claim on cover {cover}"),
    );
    c.ok(b, stake(p, 50));
    let filed = c.height;
    c.ok(b, file(cover, 1_000));
    c.ok(a, vote(cover, true));
    c.fails(
        a,
        vote(cover, false),
        &format!("{a} already voted on this claim"),
    );
    c.fails(
        b,
        vote(cover, true),
        &format!("{b} holds cover {cover} and cannot vote on its claim"),
    );
    c.fails(
        x,
        vote(cover, true),
        &format!("{x} has no assessor stake in the pool"),
    );
    c.fails(
        b,
        file(cover, 1_000),
        &format!("cover {cover} already has a claim"),
    );
    c.skip_to(c.height.max(filed + VOTE).max(h + NOTICE));
    let now = c.height;
    c.fails(
        x,
        vote(cover, true),
        &format!(
            "voting on cover {cover}'s claim closed at height {now} (deadline {})",
            filed + VOTE
        ),
    );
    c.fails(
        u,
        InsuranceMsg::Withdraw { pool: p },
        "withdrawal would leave active cover 4000 above capacity 2500",
    );
    c.fails(
        b,
        InsuranceMsg::ReleaseCover { cover },
        &format!("cover {cover} cannot be released: still running"),
    );
    c.skip_to(c.height.max(end));
    c.fails(
        b,
        InsuranceMsg::ReleaseCover { cover },
        &format!("cover {cover} cannot be released: its claim is open"),
    );
    c.ok(x, InsuranceMsg::Resolve { cover });
    c.fails(
        x,
        InsuranceMsg::Resolve { cover },
        &format!("claim on cover {cover} is already resolved"),
    );
    c.fails(
        a,
        vote(cover, true),
        &format!("claim on cover {cover} is already resolved"),
    );
    c.fails(
        b,
        InsuranceMsg::ReleaseCover { cover },
        &format!("cover {cover} cannot be released: already released"),
    );
    // A cover past its end cannot be claimed.
    let late = c.buy(x, 10, 1);
    let now = c.height;
    c.fails(
        x,
        file(late, 10),
        &format!(
            "cover {late} is not active at height {now} (covers [{}, {}))",
            now - 1,
            now
        ),
    );
    check_invariants(&c).unwrap();
}

/// A premium of at least 1 always stays in the pool, so claims cannot empty it while shares
/// remain; the refusal of deposits into a pool with shares and no capital is a defence, shown
/// here on a state where the capital key was zeroed.
#[test]
fn deposits_into_a_pool_with_shares_and_no_capital_are_refused() {
    let mut c = Chain::new(4);
    let p = c.pool;
    c.ok(account(0), underwrite(p, 1_000));
    c.state
        .insert(InsuranceKey::Capital(p).key(), Value::Num(0));
    c.fails(
        account(1),
        underwrite(p, 500),
        &format!("pool {p} has shares but no capital: deposits are closed"),
    );
}

/// A fixed block of 600 insurance transactions from many users on one pool (cover purchases
/// and underwriting that read the pool's totals, votes that only add to the tallies, assessor
/// stakes, claims) runs through the parallel workers and equals the sequential oracle.
#[test]
fn a_busy_block_on_one_pool_runs_in_parallel_and_matches() {
    let users = 40;
    let mut c = Chain::new(users);
    let p = c.pool;
    c.ok(account(0), underwrite(p, 10_000_000));
    let mut covers = Vec::new();
    for i in 0..users {
        c.ok(account(i), stake(p, 1_000 + u128::from(i)));
        covers.push(c.buy(account(i), 10_000, 1_000));
    }
    for (i, cover) in covers.iter().enumerate().take(10) {
        c.ok(account(i as u32), file(*cover, 5_000));
    }
    let txs: Vec<Tx> = (0..600u32)
        .map(|k| {
            let who = account(k % users);
            let msg = match k % 6 {
                0 => buy(p, 1_000 + u128::from(k), 500, Amount::MAX),
                1 => underwrite(p, 5_000 + u128::from(k)),
                2 | 3 => vote(covers[(k as usize / 7) % 10], k % 5 != 0),
                4 => stake(p, u128::from(k) + 1),
                _ => InsuranceMsg::Resolve {
                    cover: covers[k as usize % 10],
                },
            };
            c.tx(who, msg)
        })
        .collect();
    let block: Vec<BlockTx> = txs.into_iter().map(BlockTx::User).collect();
    let vm = runtime().at_height(c.height);
    let seq = execute_sequential(&vm, &block, &c.state);
    let ok = seq.outputs.iter().filter(|r| r.status.is_success()).count();
    assert!(ok > 300, "only {ok} successes");
    for pool in &pools()[1..] {
        let (par, stats) =
            ParallelExecutor::new(pool).execute_block_with_stats(&vm, &block, &c.state);
        assert_eq!(par, seq);
        assert!(stats.executions > 0, "{stats:?}");
    }
    seq.writes.apply_to(&mut c.state);
    check_invariants(&c).unwrap();
}

/// The module's invariants on a committed state (every pool of `c`'s asset).
fn check_invariants(c: &Chain) -> Result<(), String> {
    check_conservation(&c.state).map_err(|e| e.to_string())?;
    let p = c.pool;
    let mut shares = 0u128;
    let mut stakes = 0u128;
    let mut active = 0u128;
    for (k, v) in &c.state {
        let bytes = k.as_bytes();
        let of_pool = bytes.len() == 41 && bytes[1..9] == p.to_be_bytes();
        match bytes[0] {
            PREFIX_SHARES if of_pool => shares += v.as_num(),
            PREFIX_WITHDRAWAL if of_pool => {
                if let Value::Bytes(b) = v {
                    let (s, _ready): (u128, u64) =
                        borsh::from_slice(b).map_err(|e| format!("withdrawal: {e}"))?;
                    shares += s;
                }
            }
            PREFIX_ASSESSOR_STAKE if of_pool => stakes += v.as_num(),
            PREFIX_COVER if bytes.len() == 9 => {
                let mut id = [0u8; 8];
                id.copy_from_slice(&bytes[1..]);
                let id = u64::from_be_bytes(id);
                let cover = query_cover(&c.state, id).ok_or("cover does not decode")?;
                if cover.pool == p && !cover.released {
                    active += cover.amount;
                }
                if let Some(claim) = query_claim(&c.state, id) {
                    if claim.paid > cover.amount || claim.paid > claim.amount {
                        return Err(format!("claim on {id} paid {} above cover", claim.paid));
                    }
                }
            }
            _ => {}
        }
    }
    let total = c.num(InsuranceKey::TotalShares(p));
    if shares != total {
        return Err(format!("shares sum to {shares}, total shares {total}"));
    }
    let total_stake = c.num(InsuranceKey::TotalAssessorStake(p));
    if stakes != total_stake {
        return Err(format!("stakes sum to {stakes}, total {total_stake}"));
    }
    let capital = c.num(InsuranceKey::Capital(p));
    let vault = c.bal(&vault_address());
    if vault != capital + total_stake {
        return Err(format!(
            "vault holds {vault}, pool owes {capital} capital + {total_stake} stake"
        ));
    }
    let active_key = c.num(InsuranceKey::ActiveCover(p));
    if active != active_key {
        return Err(format!("covers sum to {active}, active cover {active_key}"));
    }
    let cap = capacity(capital, params_of(c).max_cover_bps).map_err(|e| e.to_string())?;
    if active > cap {
        return Err(format!("active cover {active} above capacity {cap}"));
    }
    Ok(())
}

fn params_of(c: &Chain) -> InsurancePool {
    parabit_modules::insurance::query_pool(&c.state, c.pool).expect("pool")
}

const USERS: u32 = 6;

/// A random operation: (kind, user, pick, amount).
fn op() -> impl Strategy<Value = (u8, u32, usize, u128)> {
    (0u8..15, 0..USERS, 0usize..64, 1u128..20_000)
}

/// The covers bought so far (by a successful `BuyCover`), in order, with their holders.
type Covers = Vec<(InsuranceId, Address)>;

fn make_tx(
    c: &mut Chain,
    covers: &Covers,
    (kind, user, pick, amount): (u8, u32, usize, u128),
) -> Tx {
    let p = c.pool;
    let mut who = account(user);
    // Votes and resolutions mostly go to open claims, claims to covers without one.
    let open: Covers = covers
        .iter()
        .copied()
        .filter(|(id, _)| {
            matches!(query_claim(&c.state, *id), Some(cl) if cl.status == ClaimStatus::Open)
                == (kind >= 10)
        })
        .collect();
    let from = if pick % 5 != 0 && !open.is_empty() {
        &open
    } else {
        covers
    };
    let (cover, holder) = from
        .get(pick % from.len().max(1))
        .copied()
        .unwrap_or((pick as u64, who));
    let msg = match kind {
        0 | 1 => underwrite(p, amount * 10),
        2 => InsuranceMsg::RequestWithdrawal {
            pool: p,
            shares: amount * 3,
        },
        3 => InsuranceMsg::Withdraw { pool: p },
        4 | 5 => buy(p, amount * 2, (pick as u64 % 8 + 1) * 25, amount),
        6 => stake(p, amount),
        7 => InsuranceMsg::UnstakeAssessor { pool: p, amount },
        8 | 9 => {
            // Mostly the holder files (an outsider's claim is refused).
            if pick % 4 != 0 {
                who = holder;
            }
            file(cover, amount * 2)
        }
        10 | 11 => vote(cover, pick % 4 != 0),
        12 => InsuranceMsg::Resolve { cover },
        13 => InsuranceMsg::ReleaseCover { cover },
        _ => {
            return c.call_tx(
                who,
                amount % 3,
                Call::Bank(BankMsg::Transfer {
                    to: account(pick as u32 % USERS),
                    asset: BTC,
                    amount,
                }),
            );
        }
    };
    c.tx(who, msg)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// One transaction a block (so each payout can be compared with the capital just before
    /// it), with random gaps so notices, deadlines and cover ends pass.
    #[test]
    fn random_sequences_keep_the_invariants(
        ops in prop::collection::vec(op(), 1..120),
        gaps in prop::collection::vec(0u64..4, 120),
    ) {
        // Votes stay open for 20 blocks so that random sequences reach resolutions.
        let mut c = Chain::with(USERS, InsurancePool { vote_blocks: 20, quorum_bps: 1_000, ..params() });
        c.ok(account(0), underwrite(c.pool, 200_000));
        for i in 0..USERS {
            c.ok(account(i), stake(c.pool, 1_000));
        }
        let mut covers: Covers = Vec::new();
        for (i, o) in ops.into_iter().enumerate() {
            let tx = make_tx(&mut c, &covers, o);
            let capital_before = c.num(InsuranceKey::Capital(c.pool));
            let claims_before: Vec<_> = covers.iter().map(|&(id, _)| query_claim(&c.state, id)).collect();
            let (sender, nonce) = (tx.sender, tx.nonce);
            let is_buy = matches!(tx.call, Call::Insurance(InsuranceMsg::BuyCover { .. }));
            let status = c.block(vec![tx]).remove(0);
            prop_assert!(matches!(status, TxStatus::Success | TxStatus::Failed(_)), "{:?}", status);
            if let TxStatus::Failed(reason) = &status {
                prop_assert!(!reason.contains("corrupt") && !reason.contains("overflow"), "{}", reason);
            }
            if is_buy && status == TxStatus::Success {
                covers.push((derive_id(&sender, nonce), sender));
            }
            for ((id, _), before) in covers.iter().zip(claims_before) {
                let after = query_claim(&c.state, *id);
                let newly_paid = matches!(&after, Some(cl) if cl.status == ClaimStatus::Paid)
                    && !matches!(&before, Some(cl) if cl.status == ClaimStatus::Paid);
                if newly_paid {
                    let cl = after.expect("claim");
                    let cover = query_cover(&c.state, *id).expect("cover");
                    prop_assert!(cl.paid <= cover.amount && cl.paid <= cl.amount);
                    prop_assert!(cl.paid <= capital_before, "paid {} > capital {}", cl.paid, capital_before);
                    prop_assert_eq!(c.num(InsuranceKey::Capital(c.pool)), capital_before - cl.paid);
                }
            }
            if let Err(e) = check_invariants(&c) {
                prop_assert!(false, "{}", e);
            }
            c.height += gaps[i];
        }
    }

    #[test]
    fn parallel_equals_sequential_on_random_blocks(
        setup in prop::collection::vec(op(), 0..16),
        ops in prop::collection::vec(op(), 1..48),
    ) {
        let mut c = Chain::new(USERS);
        for i in 0..USERS {
            c.ok(account(i), underwrite(c.pool, 100_000));
            c.ok(account(i), stake(c.pool, 1_000 + u128::from(i)));
        }
        let mut covers: Covers = Vec::new();
        for i in 0..3 {
            covers.push((c.buy(account(i), 5_000, 20), account(i)));
        }
        c.ok(account(0), file(covers[0].0, 1_000));
        let txs: Vec<Tx> = setup.into_iter().map(|o| make_tx(&mut c, &covers, o)).collect();
        c.block(txs);
        c.height += 3;
        let txs: Vec<Tx> = ops.into_iter().map(|o| make_tx(&mut c, &covers, o)).collect();
        let block: Vec<BlockTx> = txs.into_iter().map(BlockTx::User).collect();
        let vm = runtime().at_height(c.height);
        let seq = execute_sequential(&vm, &block, &c.state);
        for pool in pools() {
            // Every block through the parallel machinery (no small-block shortcut), with and
            // without the sequential fallback.
            for fallback in [true, false] {
                let config = ExecConfig { min_parallel_txns: 0, fallback, ..ExecConfig::default() };
                let par = ParallelExecutor::with_config(pool, config).execute_block(&vm, &block, &c.state);
                prop_assert_eq!(&par, &seq);
            }
        }
        seq.writes.apply_to(&mut c.state);
        if let Err(e) = check_invariants(&c) {
            prop_assert!(false, "{}", e);
        }
    }
}
