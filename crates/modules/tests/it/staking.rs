//! Staking: a worked example of the reward accumulator and its rounding, unbonding and
//! withdrawal heights, slashing, every message's failure modes, invariants over random
//! sequences of operations, and parallel == sequential on random blocks.

use parabit_exec::{execute_sequential, ParallelExecutor, Value};
use parabit_modules::staking::{
    claimable, derive_pool_id, vault_address, StakingKey, PREFIX_STAKE, PREFIX_UNBONDING, SCALE,
};
use parabit_modules::{
    check_conservation, genesis_state, BankMsg, BlockTx, Call, StakingMsg, StakingPoolId, Tx,
};
use parabit_primitives::{Address, Amount, AssetId, TxStatus};
use proptest::prelude::*;

use crate::harness::{self, pools};
use crate::{account, runtime};

const BTC: AssetId = AssetId::BTC;
const RWD: AssetId = AssetId(9);
const UNBONDING: u64 = 10;

fn authority() -> Address {
    account(200)
}
fn slash_sink() -> Address {
    account(201)
}

type Chain = harness::Chain<StakingMsg, StakingPoolId>;

impl Chain {
    /// Accounts 0..n (and the authority) with 1e12 BTC sats and 1e12 RWD each, one pool
    /// staking BTC for RWD rewards.
    fn new(n: u32) -> Chain {
        let mut balances = Vec::new();
        for a in (0..n).map(account).chain([authority()]) {
            balances.push((a, BTC, 1_000_000_000_000));
            balances.push((a, RWD, 1_000_000_000_000));
        }
        let mut c = Chain::start(genesis_state(&balances), derive_pool_id(&authority(), 0));
        c.ok(
            authority(),
            StakingMsg::CreatePool {
                stake_asset: BTC,
                reward_asset: RWD,
                unbonding_blocks: UNBONDING,
                slash_destination: slash_sink(),
            },
        );
        c
    }

    fn claimable(&self, who: &Address) -> Amount {
        claimable(&self.state, who, self.pool).expect("claimable")
    }
}

fn stake(pool: StakingPoolId, amount: Amount) -> StakingMsg {
    StakingMsg::Stake { pool, amount }
}
fn unbond(pool: StakingPoolId, amount: Amount) -> StakingMsg {
    StakingMsg::Unbond { pool, amount }
}
fn fund(pool: StakingPoolId, amount: Amount) -> StakingMsg {
    StakingMsg::FundRewards { pool, amount }
}

#[test]
fn rewards_are_shared_pro_rata_and_rounding_dust_stays_in_the_pool() {
    let mut c = Chain::new(4);
    let (a, b, p) = (account(0), account(1), c.pool);
    c.ok(a, stake(p, 100));
    c.ok(b, stake(p, 300));
    assert_eq!(c.num(StakingKey::TotalStaked(p)), 400);
    c.ok(account(2), fund(p, 1000));
    // acc = 1000e18 / 400 = 2.5e18.
    assert_eq!(
        c.num(StakingKey::RewardPerShare(p)),
        2_500_000_000_000_000_000
    );
    assert_eq!((c.claimable(&a), c.claimable(&b)), (250, 750));
    // 7 over 400: acc += 1.75e16; A earns floor(1.75) = 1, B floor(5.25) = 5; 1 stays.
    c.ok(account(2), fund(p, 7));
    assert_eq!((c.claimable(&a), c.claimable(&b)), (251, 755));
    let before = c.balance(&a, RWD);
    c.ok(a, StakingMsg::Claim { pool: p });
    assert_eq!(c.balance(&a, RWD) - before, 251);
    assert_eq!(c.num(StakingKey::RewardBalance(p)), 1007 - 251);
    assert_eq!(c.claimable(&a), 0);
    // A stake change settles first: B's 755 is kept when B stakes more.
    c.ok(b, stake(p, 100));
    assert_eq!(c.num(StakingKey::Pending(p, b)), 755);
    assert_eq!(c.claimable(&b), 755);
    c.ok(b, StakingMsg::Claim { pool: p });
    assert_eq!(c.num(StakingKey::RewardBalance(p)), 1); // the dust
    check_invariants(&c).unwrap();
}

#[test]
fn accumulator_floors_in_the_pools_favour() {
    let mut c = Chain::new(3);
    let p = c.pool;
    for i in 0..3 {
        c.ok(account(i), stake(p, 1));
    }
    // 1e18 / 3 = 333…333: each staker earns floor(0.333…) = 0; the reward stays.
    c.ok(authority(), fund(p, 1));
    assert_eq!(c.num(StakingKey::RewardPerShare(p)), SCALE / 3);
    for i in 0..3 {
        assert_eq!(c.claimable(&account(i)), 0);
    }
    c.fails(
        account(0),
        StakingMsg::Claim { pool: p },
        "no rewards to claim",
    );
    assert_eq!(c.num(StakingKey::RewardBalance(p)), 1);
}

#[test]
fn unbonding_waits_its_period_then_withdraws() {
    let mut c = Chain::new(2);
    let (a, p) = (account(0), c.pool);
    c.ok(a, stake(p, 1000));
    let h = c.height;
    c.ok(a, unbond(p, 400));
    assert_eq!(c.num(StakingKey::Stake(p, a)), 600);
    assert_eq!(c.num(StakingKey::TotalStaked(p)), 600);
    assert_eq!(c.num(StakingKey::TotalUnbonding(p)), 400);
    let h_now = c.height;
    c.fails(
        a,
        StakingMsg::Withdraw { pool: p },
        &format!(
            "nothing to withdraw at height {h_now}: next release at Some({})",
            h + UNBONDING
        ),
    );
    c.idle_until(h + UNBONDING);
    let before = c.balance(&a, BTC);
    c.ok(a, StakingMsg::Withdraw { pool: p });
    assert_eq!(c.balance(&a, BTC) - before, 400);
    assert_eq!(c.num(StakingKey::TotalUnbonding(p)), 0);
    assert!(!c.state.contains_key(&StakingKey::Unbonding(p, a).key()));
    // Unbonded stake earns no rewards.
    c.ok(account(1), fund(p, 600));
    assert_eq!(c.claimable(&a), 600);
    check_invariants(&c).unwrap();
}

#[test]
fn slashing_takes_a_fraction_rounded_up_of_stake_and_unbonding() {
    let mut c = Chain::new(2);
    let (b, p) = (account(1), c.pool);
    c.ok(b, stake(p, 300));
    c.ok(b, unbond(p, 100));
    c.ok(
        authority(),
        StakingMsg::Slash {
            pool: p,
            staker: b,
            fraction_ppm: 333_333,
        },
    );
    // ceil(200 · 0.333333) = 67 and ceil(100 · 0.333333) = 34.
    assert_eq!(c.num(StakingKey::Stake(p, b)), 133);
    assert_eq!(c.num(StakingKey::TotalStaked(p)), 133);
    assert_eq!(c.num(StakingKey::TotalUnbonding(p)), 66);
    assert_eq!(c.balance(&slash_sink(), BTC), 101);
    // A full slash empties everything.
    c.ok(
        authority(),
        StakingMsg::Slash {
            pool: p,
            staker: b,
            fraction_ppm: 1_000_000,
        },
    );
    assert_eq!(c.num(StakingKey::TotalStaked(p)), 0);
    assert_eq!(c.num(StakingKey::TotalUnbonding(p)), 0);
    assert_eq!(c.balance(&slash_sink(), BTC), 300);
    check_invariants(&c).unwrap();
}

#[test]
fn failure_modes_have_clear_errors() {
    let mut c = Chain::new(2);
    let (a, b, p) = (account(0), account(1), c.pool);
    c.fails(a, stake(5, 1), "unknown staking pool 5");
    c.fails(a, stake(p, 0), "amount must be positive");
    c.fails(
        a,
        stake(p, 2_000_000_000_000),
        "insufficient balance: have 1000000000000, need 2000000000000",
    );
    c.fails(
        a,
        fund(p, 10),
        &format!("cannot fund rewards: pool {p} has no stake"),
    );
    c.fails(a, fund(p, 0), "amount must be positive");
    c.ok(a, stake(p, 10));
    c.fails(a, unbond(p, 0), "amount must be positive");
    c.fails(a, unbond(p, 11), "insufficient stake: have 10, need 11");
    c.fails(b, unbond(p, 1), "insufficient stake: have 0, need 1");
    c.fails(
        a,
        StakingMsg::Withdraw { pool: p },
        &format!(
            "nothing to withdraw at height {}: next release at None",
            c.height
        ),
    );
    c.fails(a, StakingMsg::Claim { pool: p }, "no rewards to claim");
    c.fails(
        b,
        fund(p, 2_000_000_000_000),
        "insufficient balance: have 1000000000000, need 2000000000000",
    );
    let slash = |staker, fraction_ppm| StakingMsg::Slash {
        pool: p,
        staker,
        fraction_ppm,
    };
    c.fails(
        a,
        slash(a, 1),
        &format!("unauthorized: {a} is not the pool's authority"),
    );
    c.fails(
        authority(),
        slash(a, 0),
        "invalid slash fraction 0 ppm: must be 1 to 1000000",
    );
    c.fails(
        authority(),
        slash(a, 1_000_001),
        "invalid slash fraction 1000001 ppm: must be 1 to 1000000",
    );
    c.fails(
        authority(),
        slash(b, 10),
        &format!("nothing to slash: {b} has no stake or unbonding in the pool"),
    );
    for _ in 0..32 {
        c.ok(a, unbond(p, 1));
        c.ok(a, stake(p, 1));
    }
    c.fails(a, unbond(p, 1), "too many unbonding entries: at most 32");
    check_invariants(&c).unwrap();
}

#[test]
fn a_reward_too_small_to_move_the_accumulator_is_refused() {
    let whale = account(0);
    let big: u128 = 3 * SCALE;
    let state = genesis_state(&[(whale, BTC, big), (whale, RWD, 10)]);
    let mut c = Chain::start(state, derive_pool_id(&whale, 0));
    c.ok(
        whale,
        StakingMsg::CreatePool {
            stake_asset: BTC,
            reward_asset: RWD,
            unbonding_blocks: 0,
            slash_destination: whale,
        },
    );
    let p = c.pool;
    c.ok(whale, stake(p, big));
    c.fails(
        whale,
        fund(p, 1),
        &format!("reward 1 too small for total stake {big}: raises reward per share by 0"),
    );
}

/// The module's invariants on a committed state with the test pool.
fn check_invariants(c: &Chain) -> Result<(), String> {
    check_conservation(&c.state).map_err(|e| e.to_string())?;
    let p = c.pool;
    let mut stakes = 0u128;
    let mut entries = 0u128;
    let mut owners = Vec::new();
    for (k, v) in &c.state {
        let bytes = k.as_bytes();
        if bytes.len() == 41 && bytes[0] == PREFIX_STAKE {
            stakes += v.as_num();
            let mut a = [0u8; 32];
            a.copy_from_slice(&bytes[9..]);
            owners.push(Address(a));
        }
        if bytes.len() == 41 && bytes[0] == PREFIX_UNBONDING {
            if let Value::Bytes(b) = v {
                let list: Vec<(u64, u128)> =
                    borsh::from_slice(b).map_err(|e| format!("entries: {e}"))?;
                if list.is_empty() || list.iter().any(|e| e.1 == 0) {
                    return Err("empty unbonding entry stored".into());
                }
                entries += list.iter().map(|e| e.1).sum::<u128>();
            }
        }
    }
    let total = c.num(StakingKey::TotalStaked(p));
    let unbonding = c.num(StakingKey::TotalUnbonding(p));
    let rewards = c.num(StakingKey::RewardBalance(p));
    if stakes != total {
        return Err(format!("stakes sum to {stakes}, total staked {total}"));
    }
    if entries != unbonding {
        return Err(format!(
            "entries sum to {entries}, total unbonding {unbonding}"
        ));
    }
    let vault_btc = c.balance(&vault_address(), BTC);
    if vault_btc != total + unbonding {
        return Err(format!(
            "vault holds {vault_btc} BTC, pool owes {}",
            total + unbonding
        ));
    }
    let vault_rwd = c.balance(&vault_address(), RWD);
    if vault_rwd != rewards {
        return Err(format!(
            "vault holds {vault_rwd} RWD, reward balance {rewards}"
        ));
    }
    let owed: u128 = owners.iter().map(|o| c.claimable(o)).sum();
    if owed > rewards {
        return Err(format!(
            "stakers are owed {owed} > reward balance {rewards}"
        ));
    }
    Ok(())
}

/// A random operation: (kind, user, other, amount).
fn op() -> impl Strategy<Value = (u8, u32, u32, u128)> {
    (0u8..8, 0u32..5, 0u32..5, 1u128..5_000)
}

fn make_tx(c: &mut Chain, (kind, user, other, amount): (u8, u32, u32, u128)) -> Tx {
    let p = c.pool;
    let user_addr = if user == 4 {
        authority()
    } else {
        account(user)
    };
    let msg = match kind {
        0 | 1 => stake(p, amount * 10),
        2 => unbond(p, amount),
        3 => StakingMsg::Withdraw { pool: p },
        4 => fund(p, amount),
        5 => StakingMsg::Claim { pool: p },
        6 => StakingMsg::Slash {
            pool: p,
            staker: account(other),
            fraction_ppm: (amount as u32 * 97) % 1_000_001,
        },
        _ => {
            return c.call_tx(
                user_addr,
                amount % 3,
                Call::Bank(BankMsg::Transfer {
                    to: account(other),
                    asset: if amount % 2 == 0 { BTC } else { RWD },
                    amount,
                }),
            );
        }
    };
    c.tx(user_addr, msg)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_sequences_keep_the_invariants(
        blocks in prop::collection::vec(prop::collection::vec(op(), 1..8), 1..12),
        gaps in prop::collection::vec(0u64..6, 12),
    ) {
        let mut c = Chain::new(4);
        for (i, ops) in blocks.into_iter().enumerate() {
            let txs: Vec<Tx> = ops.into_iter().map(|o| make_tx(&mut c, o)).collect();
            let statuses = c.block(txs);
            for s in &statuses {
                prop_assert!(!matches!(s, TxStatus::Panicked(_) | TxStatus::Invalid(_)), "{:?}", s);
            }
            if let Err(e) = check_invariants(&c) {
                prop_assert!(false, "{}", e);
            }
            for _ in 0..gaps[i] {
                c.block(vec![]);
            }
        }
    }

    #[test]
    fn parallel_equals_sequential_on_random_blocks(
        setup in prop::collection::vec(op(), 0..12),
        ops in prop::collection::vec(op(), 1..48),
    ) {
        let mut c = Chain::new(4);
        for i in 0..4 {
            c.ok(account(i), stake(c.pool, 1000));
        }
        let txs: Vec<Tx> = setup.into_iter().map(|o| make_tx(&mut c, o)).collect();
        c.block(txs);
        c.height += UNBONDING / 2;
        let txs: Vec<Tx> = ops.into_iter().map(|o| make_tx(&mut c, o)).collect();
        let block: Vec<BlockTx> = txs.into_iter().map(BlockTx::User).collect();
        let vm = runtime().at_height(c.height);
        let seq = execute_sequential(&vm, &block, &c.state);
        for pool in pools() {
            let par = ParallelExecutor::new(pool).execute_block(&vm, &block, &c.state);
            prop_assert_eq!(&par, &seq);
        }
        seq.writes.apply_to(&mut c.state);
        if let Err(e) = check_invariants(&c) {
            prop_assert!(false, "{}", e);
        }
    }
}
