//! Parabit's native modules and the runtime that dispatches transactions to them.
//!
//! | module | what it owns |
//! |---|---|
//! | [`bank`] | assets, balances, nonces, transfers, asset creation, mint/burn |
//! | [`dex`] | constant-product pools, LP shares, instant swaps and routes, batch auctions |
//! | [`lending`] | markets per asset, supply shares, borrows, jump-rate interest, health, liquidation, oracle |
//! | [`staking`] | staking pools, unbonding, reward-per-share rewards, slashing |
//! | [`insurance`] | cover pools, underwriter shares, utilisation-priced cover, assessor-voted claims |
//! | [`channels`] | two-party payment channels: deposits, signed off-chain states, cooperative and challenged closes, HTLCs |
//! | [`bridge`] | the L2 side of the BTC bridge: Bitcoin deposits credited by the sequencer, withdrawals burnt and recorded |
//! | [`runtime`] | the [`Vm`](parabit_exec::Vm): chain id, nonce and fee checks, dispatch |
//! | [`genesis`] | genesis state and conservation checks for tests, benches and the devnet |
//!
//! Invariants (each module's doc details its own):
//! - Every module's state keys start with a prefix byte that no other module uses
//!   (bank: `0x01`–`0x05`, dex: `0x10`–`0x14`, lending: `0x20`–`0x2a`, staking: `0x30`–`0x38`,
//!   insurance: `0x40`–`0x4d`, channels: `0x50`, bridge: `0x60`–`0x63`).
//! - Value is conserved in every module; no balance goes below zero; every asset's supply
//!   equals the sum of its balances.
//! - Execution is deterministic and credits use commutative deltas, so the parallel engine
//!   gives exactly the sequential result.
//! - No transaction content can panic the runtime: every failure is a typed error that
//!   becomes a receipt.

/// Implements the two conversions every module error needs: a [`Halt`](parabit_exec::Halt)
/// from the engine, and a bank error (whose own `Halt` stays a halt). The error type must have
/// `Halt(Halt)` and `Bank(BankError)` variants.
macro_rules! module_error_conversions {
    ($error:ident) => {
        impl From<parabit_exec::Halt> for $error {
            fn from(h: parabit_exec::Halt) -> $error {
                $error::Halt(h)
            }
        }

        impl From<$crate::bank::BankError> for $error {
            fn from(e: $crate::bank::BankError) -> $error {
                match e {
                    $crate::bank::BankError::Halt(h) => $error::Halt(h),
                    e => $error::Bank(e),
                }
            }
        }
    };
}

/// An account that no key controls, named by a tag (a module's vault): SHA-256 of the tag.
pub(crate) fn module_account(tag: &[u8]) -> parabit_primitives::Address {
    use sha2::Digest;
    parabit_primitives::Address(sha2::Sha256::digest(tag).into())
}

/// The id of an object a transaction creates (an asset, a pool, a cover): the first 8 bytes,
/// big-endian, of `SHA256(tag ‖ creator ‖ nonce_le)`. Distinct tags keep the kinds apart.
pub(crate) fn derive_object_id(
    tag: &[u8],
    creator: &parabit_primitives::Address,
    nonce: u64,
) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(tag);
    h.update(creator.0);
    h.update(nonce.to_le_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// A module key `prefix ‖ id (8 bytes, big-endian)`: an object's field (a pool's total).
pub(crate) fn id_key(prefix: u8, id: u64) -> parabit_exec::Key {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    parabit_exec::Key::from_array(k)
}

/// A module key `prefix ‖ id (8 bytes, big-endian) ‖ owner (32 bytes)`: an account's entry in
/// an object (a stake in a pool).
pub(crate) fn id_owner_key(
    prefix: u8,
    id: u64,
    owner: &parabit_primitives::Address,
) -> parabit_exec::Key {
    let mut k = [0u8; 41];
    k[0] = prefix;
    k[1..9].copy_from_slice(&id.to_be_bytes());
    k[9..].copy_from_slice(&owner.0);
    parabit_exec::Key::from_array(k)
}

/// The object of an [`id_key`] (`Some(id)` if `bytes` has its length and one of `prefixes`).
pub(crate) fn id_key_object(bytes: &[u8], prefixes: &[u8]) -> Option<u64> {
    match bytes {
        [p, id @ ..] if id.len() == 8 && prefixes.contains(p) => {
            Some(u64::from_be_bytes(id.try_into().ok()?))
        }
        _ => None,
    }
}

/// The owner's home ([`bank::home_of`]) of an [`id_owner_key`] with one of `prefixes`.
pub(crate) fn id_owner_key_home(bytes: &[u8], prefixes: &[u8]) -> Option<u64> {
    match bytes {
        [p, rest @ ..] if rest.len() == 40 && prefixes.contains(p) => {
            Some(u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?))
        }
        _ => None,
    }
}

/// How a transaction touches a key, for its footprint ([`declare`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Touch {
    /// Only reads it.
    Read,
    /// Only `add`s to it.
    Add,
    /// Only `add`s to it and `try_sub`s from it (a vault, a total that pays out).
    Sub,
    /// Writes, deletes or reads and changes it.
    Write,
}

/// Declares `key` in `fp` as touched `how`, merged with how `fp` declares it already: a key
/// both read and changed, or written, is exclusive; one added to and subtracted from is in
/// `subs`. Each key ends up in one list of `fp`, once.
pub(crate) fn declare(fp: &mut parabit_exec::Footprint, key: parabit_exec::Key, how: Touch) {
    if fp.exclusive.contains(&key) {
        return;
    }
    let (read, added, subbed) = (
        fp.reads.contains(&key),
        fp.deltas.contains(&key),
        fp.subs.contains(&key),
    );
    let to = match how {
        Touch::Write => Touch::Write,
        Touch::Read if added || subbed => Touch::Write,
        Touch::Add | Touch::Sub if read => Touch::Write,
        Touch::Add if subbed => Touch::Sub,
        t => t,
    };
    macro_rules! keep {
        ($list:expr, $there:expr, $mine:expr) => {
            if $mine && !$there {
                $list.push(key);
            } else if !$mine && $there {
                $list.retain(|k| *k != key);
            }
        };
    }
    keep!(fp.reads, read, to == Touch::Read);
    keep!(fp.deltas, added, to == Touch::Add);
    keep!(fp.subs, subbed, to == Touch::Sub);
    if to == Touch::Write {
        fp.exclusive.push(key);
    }
}

pub mod bank;
pub mod bridge;
pub mod channels;
pub mod dex;
pub mod genesis;
pub mod insurance;
pub mod lending;
pub mod runtime;
pub mod staking;

pub use bank::{AssetInfo, BankError, BankKey, BankMsg};
pub use bridge::{BridgeConfig, BridgeError, BridgeKey, BridgeMsg, Withdrawal};
pub use channels::{ChannelError, ChannelId, ChannelMsg, ChannelState, SignedState};
pub use dex::{DexError, DexKey, DexMsg, PoolId};
pub use genesis::{
    balance_of, check_conservation, genesis_state, supplies, total_supply, try_genesis_state,
    ConservationError, GenesisAsset, GenesisBalance, GenesisCall, GenesisError, GenesisSpec,
    GenesisSpecError, SettlementSpec,
};
pub use insurance::{InsuranceError, InsuranceId, InsuranceKey, InsuranceMsg, InsurancePool};
pub use lending::{LendingError, LendingKey, LendingMsg, MarketParams};
pub use runtime::{
    begin_block_hooks, block_txs, end_block_hooks, BlockTx, Call, Hook, Runtime, SignedTx, Tx,
};
pub use staking::{StakingError, StakingKey, StakingMsg, StakingPoolId};

#[cfg(test)]
mod tests {
    use super::{declare, Touch};
    use parabit_exec::{Footprint, Key};

    fn lists(fp: &Footprint, k: Key) -> [bool; 4] {
        [
            fp.exclusive.contains(&k),
            fp.reads.contains(&k),
            fp.deltas.contains(&k),
            fp.subs.contains(&k),
        ]
    }

    /// Staking and insurance keys belong to their owner, their pool or their cover; the
    /// pools' shared keys to no account.
    #[test]
    fn module_keys_belong_to_their_owner_or_object() {
        use crate::insurance::{self, InsuranceKey as I};
        use crate::staking::{self, StakingKey as S};
        let owner = parabit_primitives::Address([0x77; 32]);
        let home = Some(crate::bank::home_of(&owner));
        for k in [
            S::Stake(5, owner),
            S::Paid(5, owner),
            S::Pending(5, owner),
            S::Unbonding(5, owner),
        ] {
            assert_eq!(staking::key_home(&k.key()), home, "{k:?}");
        }
        for k in [
            S::Pool(5),
            S::TotalStaked(5),
            S::RewardPerShare(5),
            S::TotalUnbonding(5),
            S::RewardBalance(5),
        ] {
            assert_eq!(staking::key_home(&k.key()), None, "{k:?}");
        }
        for k in [
            I::Shares(9, owner),
            I::Withdrawal(9, owner),
            I::AssessorStake(9, owner),
            I::AssessorLock(9, owner),
            I::Voted(9, owner),
        ] {
            assert_eq!(insurance::key_home(&k.key()), home, "{k:?}");
        }
        for k in [
            I::Pool(9),
            I::Capital(9),
            I::TotalShares(9),
            I::ActiveCover(9),
            I::TotalAssessorStake(9),
            I::Cover(9),
            I::Claim(9),
            I::VotesYes(9),
            I::VotesNo(9),
        ] {
            assert_eq!(insurance::key_home(&k.key()), Some(9), "{k:?}");
        }
        // Neither module claims the other's keys, nor a balance.
        assert_eq!(staking::key_home(&I::Shares(9, owner).key()), None);
        assert_eq!(insurance::key_home(&S::Stake(5, owner).key()), None);
        let balance = crate::bank::balance_key(&owner, parabit_primitives::AssetId::BTC);
        assert_eq!(insurance::key_home(&balance), None);
    }

    #[test]
    fn declaring_a_key_twice_merges_the_ways_it_is_touched() {
        let k = Key::from_array([7]);
        let cases = [
            (Touch::Read, Touch::Read, [false, true, false, false]),
            (Touch::Add, Touch::Add, [false, false, true, false]),
            (Touch::Add, Touch::Sub, [false, false, false, true]),
            (Touch::Sub, Touch::Add, [false, false, false, true]),
            (Touch::Read, Touch::Add, [true, false, false, false]),
            (Touch::Sub, Touch::Read, [true, false, false, false]),
            (Touch::Write, Touch::Read, [true, false, false, false]),
            (Touch::Add, Touch::Write, [true, false, false, false]),
        ];
        for (first, then, want) in cases {
            let mut fp = Footprint::default();
            declare(&mut fp, k, first);
            declare(&mut fp, k, then);
            assert_eq!(lists(&fp, k), want, "{first:?} then {then:?}");
            let total = fp.exclusive.len() + fp.reads.len() + fp.deltas.len() + fp.subs.len();
            assert_eq!(total, 1, "{first:?} then {then:?}: {fp:?}");
        }
    }

    #[test]
    fn declaring_keeps_other_keys_as_they_are() {
        let (a, b) = (Key::from_array([1]), Key::from_array([2]));
        let mut fp = Footprint::default();
        declare(&mut fp, a, Touch::Add);
        declare(&mut fp, b, Touch::Read);
        declare(&mut fp, b, Touch::Sub);
        assert_eq!(lists(&fp, a), [false, false, true, false]);
        assert_eq!(lists(&fp, b), [true, false, false, false]);
    }
}
