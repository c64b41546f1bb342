//! The development network's genesis: funded accounts whose keys everyone knows, and a DEX
//! pool, two lending markets, a staking pool and an insurance pool already seeded, so that a
//! new user can swap, borrow, stake and buy cover at once.
//!
//! Invariants: the genesis is a pure function of its arguments (every devnet started with the
//! same options has the same genesis state and so the same state roots); the keys come from
//! fixed seeds and must never hold real value.

use parabit_modules::dex::PoolId;
use parabit_modules::insurance::{self, InsuranceMsg, InsurancePool};
use parabit_modules::lending::{LendingConfig, LendingMsg, MarketParams, WAD};
use parabit_modules::staking::{self, StakingMsg};
use parabit_modules::{Call, DexMsg, GenesisAsset, GenesisBalance, GenesisCall, GenesisSpec};
use parabit_primitives::{Address, Amount, AssetId, SigningKey};

/// The devnet's chain id.
pub const DEVNET_CHAIN_ID: u64 = 0x7062_7274; // "pbrt"
/// The devnet's dollar token: 6 decimals.
pub const USDX: AssetId = AssetId(1);
/// One BTC in satoshis.
pub const BTC: Amount = 100_000_000;
/// One USDX in base units.
pub const DOLLAR: Amount = 1_000_000;
/// The names of the funded development accounts.
pub const DEV_ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// A development account.
pub struct DevAccount {
    /// Its name.
    pub name: String,
    /// Its key (public: never use it for anything real).
    pub key: SigningKey,
}

/// The key of a named development account.
pub fn dev_key(name: &str) -> SigningKey {
    SigningKey::from_seed(format!("parabit-devnet/{name}").as_bytes())
}

/// What the devnet seeds, for users and tests.
pub struct DevnetGenesis {
    /// The genesis.
    pub spec: GenesisSpec,
    /// The funded accounts (not the admin and sequencer).
    pub accounts: Vec<DevAccount>,
    /// The admin that seeded everything (lending admin and price oracle).
    pub admin: DevAccount,
    /// The sequencer's fee account.
    pub sequencer: DevAccount,
    /// The BTC/USDX pool.
    pub pool: PoolId,
    /// The staking pool (stake BTC, earn USDX).
    pub staking_pool: u64,
    /// The insurance pool (USDX).
    pub insurance_pool: u64,
}

/// The devnet genesis at this timestamp.
pub fn devnet_genesis(timestamp_ms: u64) -> DevnetGenesis {
    let account = |name: &str| DevAccount {
        name: name.to_string(),
        key: dev_key(name),
    };
    let admin = account("admin");
    let sequencer = account("sequencer");
    let accounts: Vec<DevAccount> = DEV_ACCOUNTS.iter().map(|n| account(n)).collect();
    let a = admin.key.address();
    let mut balances = vec![
        bal(a, AssetId::BTC, 1_000 * BTC),
        bal(a, USDX, 50_000_000 * DOLLAR),
    ];
    for acc in &accounts {
        balances.push(bal(acc.key.address(), AssetId::BTC, 10 * BTC));
        balances.push(bal(acc.key.address(), USDX, 100_000 * DOLLAR));
    }
    let params = MarketParams {
        base_rate_per_year: 20_000_000_000_000_000,
        multiplier_per_year: 100_000_000_000_000_000,
        jump_multiplier_per_year: 1_090_000_000_000_000_000,
        kink: 800_000_000_000_000_000,
        blocks_per_year: 2_102_400 * 48, // 250 ms blocks
        reserve_factor: WAD / 10,
        collateral_factor: 750_000_000_000_000_000,
        liquidation_threshold: 800_000_000_000_000_000,
        liquidation_bonus: WAD / 20,
        close_factor: WAD / 2,
    };
    // Prices: value (1e18 = one dollar) per base unit. 60,000 dollars a BTC.
    let btc_price = 60_000 * WAD / BTC;
    let usdx_price = WAD / DOLLAR;
    let calls = vec![
        Call::Dex(DexMsg::AddLiquidity {
            asset_x: AssetId::BTC,
            asset_y: USDX,
            amount_x_desired: 100 * BTC,
            amount_y_desired: 6_000_000 * DOLLAR,
            amount_x_min: 0,
            amount_y_min: 0,
            deadline: u64::MAX,
        }),
        Call::Lending(LendingMsg::CreateMarket {
            asset: AssetId::BTC,
            params,
        }),
        Call::Lending(LendingMsg::CreateMarket {
            asset: USDX,
            params,
        }),
        Call::Lending(LendingMsg::SetPrice {
            asset: AssetId::BTC,
            price: btc_price,
        }),
        Call::Lending(LendingMsg::SetPrice {
            asset: USDX,
            price: usdx_price,
        }),
        Call::Lending(LendingMsg::Supply {
            asset: USDX,
            amount: 5_000_000 * DOLLAR,
        }),
        Call::Lending(LendingMsg::Supply {
            asset: AssetId::BTC,
            amount: 50 * BTC,
        }),
        // nonce 7
        Call::Staking(StakingMsg::CreatePool {
            stake_asset: AssetId::BTC,
            reward_asset: USDX,
            unbonding_blocks: 40,
            slash_destination: a,
        }),
        // nonce 8
        Call::Insurance(InsuranceMsg::CreatePool(InsurancePool {
            asset: USDX,
            max_cover_bps: 8_000,
            base_rate_bps: 100,
            slope_bps: 900,
            notice_blocks: 40,
            vote_blocks: 40,
            quorum_bps: 2_000,
        })),
    ];
    let staking_pool = staking::derive_pool_id(&a, 7);
    let insurance_pool = insurance::derive_id(&a, 8);
    let mut calls = calls;
    // Rewards need stake to go to: the admin stakes first.
    calls.push(Call::Staking(StakingMsg::Stake {
        pool: staking_pool,
        amount: BTC,
    }));
    calls.push(Call::Staking(StakingMsg::FundRewards {
        pool: staking_pool,
        amount: 100_000 * DOLLAR,
    }));
    calls.push(Call::Insurance(InsuranceMsg::Underwrite {
        pool: insurance_pool,
        amount: 1_000_000 * DOLLAR,
    }));
    let spec = GenesisSpec {
        chain_id: DEVNET_CHAIN_ID,
        timestamp_ms,
        fee_account: sequencer.key.address(),
        balances,
        assets: vec![GenesisAsset {
            asset: USDX,
            symbol: "USDX".into(),
            decimals: 6,
        }],
        lending: Some(LendingConfig {
            admin: a,
            oracle: a,
        }),
        setup: calls
            .into_iter()
            .map(|call| GenesisCall { sender: a, call })
            .collect(),
        settlement: None,
    };
    DevnetGenesis {
        spec,
        accounts,
        admin,
        sequencer,
        pool: PoolId {
            a: AssetId::BTC,
            b: USDX,
        },
        staking_pool,
        insurance_pool,
    }
}

fn bal(address: Address, asset: AssetId, amount: Amount) -> GenesisBalance {
    GenesisBalance {
        address,
        asset,
        amount,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parabit_modules::{balance_of, check_conservation, dex};

    #[test]
    fn the_devnet_genesis_builds_with_everything_seeded() {
        let g = devnet_genesis(1);
        let state = g.spec.build().expect("devnet genesis builds");
        check_conservation(&state).expect("conserved");
        assert_eq!(
            dex::reserves(&state, &g.pool).expect("pool"),
            (100 * BTC, 6_000_000 * DOLLAR)
        );
        assert!(staking::query_pool(&state, g.staking_pool).is_some());
        assert!(insurance::query_pool(&state, g.insurance_pool).is_some());
        let markets = parabit_modules::lending::query_markets(&state).expect("markets");
        assert_eq!(markets.len(), 2);
        for acc in &g.accounts {
            assert_eq!(
                balance_of(&state, &acc.key.address(), AssetId::BTC),
                10 * BTC
            );
        }
        // Deterministic.
        assert_eq!(state, devnet_genesis(1).spec.build().expect("again"));
    }
}
