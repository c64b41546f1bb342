//! The genesis file: built deterministically, with setup calls run by the runtime, and every
//! bad spec refused with a clear error.

use parabit_modules::{
    balance_of, check_conservation, dex, Call, DexMsg, GenesisAsset, GenesisBalance, GenesisCall,
    GenesisSpec, GenesisSpecError,
};
use parabit_primitives::{AssetId, SigningKey};

fn spec() -> GenesisSpec {
    let alice = SigningKey::from_seed(b"genesis-alice").address();
    let token = AssetId(7);
    GenesisSpec {
        chain_id: 9,
        timestamp_ms: 1_700_000_000_000,
        fee_account: SigningKey::from_seed(b"genesis-fees").address(),
        balances: vec![
            GenesisBalance {
                address: alice,
                asset: AssetId::BTC,
                amount: 10_000_000,
            },
            GenesisBalance {
                address: alice,
                asset: token,
                amount: 50_000_000,
            },
        ],
        assets: vec![GenesisAsset {
            asset: token,
            symbol: "USDX".into(),
            decimals: 6,
        }],
        lending: None,
        setup: vec![GenesisCall {
            sender: alice,
            call: Call::Dex(DexMsg::AddLiquidity {
                asset_x: AssetId::BTC,
                asset_y: token,
                amount_x_desired: 1_000_000,
                amount_y_desired: 20_000_000,
                amount_x_min: 0,
                amount_y_min: 0,
                deadline: u64::MAX,
            }),
        }],
        settlement: None,
    }
}

#[test]
fn a_spec_builds_the_same_state_from_its_json() {
    let spec = spec();
    let json = serde_json::to_string_pretty(&spec).expect("json");
    let back: GenesisSpec = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, spec);
    let state = spec.build().expect("build");
    assert_eq!(state, back.build().expect("build again"));
    check_conservation(&state).expect("conserved");
    let alice = spec.balances[0].address;
    // The setup call created the pool with alice's liquidity.
    assert_eq!(balance_of(&state, &alice, AssetId::BTC), 9_000_000);
    assert_eq!(balance_of(&state, &alice, AssetId(7)), 30_000_000);
    let pool = dex::PoolId::new(AssetId::BTC, AssetId(7)).expect("pool id");
    assert_eq!(
        dex::reserves(&state, &pool).expect("pool exists"),
        (1_000_000, 20_000_000)
    );
}

#[test]
fn bad_specs_are_refused_with_the_reason() {
    let mut s = spec();
    s.assets[0].symbol = "bad symbol".into();
    let e = s.build().expect_err("bad symbol");
    assert!(e.to_string().contains("genesis asset 7: symbol"), "{e}");

    let mut s = spec();
    s.assets[0].asset = AssetId::BTC;
    assert!(matches!(s.build(), Err(GenesisSpecError::Asset { .. })));

    let mut s = spec();
    s.balances[0].amount = 10; // cannot fund the pool
    let e = s.build().expect_err("setup fails");
    assert!(e.to_string().starts_with("genesis setup call 0 ("), "{e}");

    let mut s = spec();
    s.balances.push(GenesisBalance {
        address: s.fee_account,
        asset: AssetId::BTC,
        amount: u128::MAX,
    });
    assert!(matches!(s.build(), Err(GenesisSpecError::Balances(_))));

    let unknown_field = r#"{"chain_id":1,"timestamp_ms":0,"fee_account":"x","nonsense":1}"#;
    assert!(serde_json::from_str::<GenesisSpec>(unknown_field).is_err());
}
