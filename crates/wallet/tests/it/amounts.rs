//! Amounts through the public API: the BTC asset (8 decimals) and a lookup of symbols.

use parabit_primitives::AssetId;
use parabit_wallet::{format_amount, parse_amount, resolve_amount, AmountError};

#[test]
fn btc_amounts_round_trip() {
    let sat = parse_amount("0.5", 8).expect("0.5 BTC");
    assert_eq!(sat, 50_000_000);
    assert_eq!(format_amount(sat, 8), "0.5");
    let lookup = |s: &str| (s == "BTC").then_some((AssetId::BTC, 8u8));
    assert_eq!(resolve_amount("0.5 BTC", lookup), Ok((AssetId::BTC, sat)));
    assert_eq!(
        resolve_amount("50000000sat", lookup),
        Ok((AssetId::BTC, sat))
    );
    assert_eq!(
        parse_amount("21000000.000000001", 8),
        Err(AmountError::TooManyDecimals {
            input: "21000000.000000001".to_string(),
            decimals: 8
        })
    );
    assert_eq!(
        AmountError::TooManyDecimals {
            input: "0.1".into(),
            decimals: 0
        }
        .to_string(),
        "amount \"0.1\" has more than 0 decimal places"
    );
}
