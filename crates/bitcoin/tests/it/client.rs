//! `BitcoinClient` over the embedded chain: the trait's contract as the node sees it.

use std::sync::Arc;

use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::{BlockHash, Txid};
use parabit_bitcoin::{BitcoinClient, ClientError, RegtestChain};

use crate::{fund, pay, rate, wallet};

#[test]
fn regtest_client_follows_the_contract() {
    let chain = Arc::new(RegtestChain::in_memory());
    let alice = wallet(1);
    let bob = wallet(2);
    fund(&chain, &alice);
    let client: Box<dyn BitcoinClient> =
        Box::new(chain.client(vec![alice.script_pubkey().clone()]));

    let (height, tip) = client.tip().unwrap();
    assert_eq!(height, 101);
    assert_eq!(client.block_hash(101).unwrap(), tip);
    assert_eq!(client.block(&tip).unwrap().block_hash(), tip);
    assert!(matches!(
        client.block_hash(102),
        Err(ClientError::NotFound(_))
    ));
    assert!(matches!(
        client.block(&BlockHash::all_zeros()),
        Err(ClientError::NotFound(_))
    ));
    assert_eq!(client.estimate_fee_rate().unwrap(), rate(2));
    chain.set_fee_estimate(rate(7));
    assert_eq!(client.estimate_fee_rate().unwrap(), rate(7));

    // Only the watched script's spendable outputs: the two mature coinbases, as bitcoind lists.
    let coins = client.list_unspent().unwrap();
    assert_eq!(coins.len(), 2);
    assert_eq!(
        chain.list_unspent(&[alice.script_pubkey().clone()]).len(),
        101
    );
    assert!(coins
        .iter()
        .all(|u| u.txout.script_pubkey == *alice.script_pubkey()));

    let f = alice
        .build_payment(&coins, pay(&bob, 2_000_000), rate(2))
        .unwrap();
    let txid = client.send_raw_transaction(&f.tx).unwrap();
    assert_eq!(client.get_raw_transaction(&txid).unwrap(), f.tx);
    // The change is listed unconfirmed; the spent coin is gone.
    let after = client.list_unspent().unwrap();
    assert!(after
        .iter()
        .any(|u| u.outpoint.txid == txid && u.confirmations == 0));
    assert!(!after.iter().any(|u| u.outpoint == f.spent[0].outpoint));

    // Refusals are permanent, with Bitcoin Core's codes and reasons.
    match client.send_raw_transaction(&f.tx) {
        Err(
            e @ ClientError::Rejected {
                code: Some(-26), ..
            },
        ) => {
            assert!(!e.is_transient());
            assert!(e.to_string().contains("txn-already-in-mempool"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    chain.mine(1, alice.script_pubkey()).unwrap();
    match client.send_raw_transaction(&f.tx) {
        Err(ClientError::Rejected {
            code: Some(-27),
            reason,
        }) => assert_eq!(reason, "txn-already-known"),
        other => panic!("{other:?}"),
    }
    let mut missing = f.tx.clone();
    missing.input[0].previous_output.vout = 9;
    match client.send_raw_transaction(&missing) {
        Err(ClientError::Rejected {
            code: Some(-25),
            reason,
        }) => {
            assert!(
                reason.starts_with("bad-txns-inputs-missingorspent"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Confirmed transactions are still found.
    assert_eq!(client.get_raw_transaction(&txid).unwrap(), f.tx);
    assert!(matches!(
        client.get_raw_transaction(&Txid::all_zeros()),
        Err(ClientError::NotFound(_))
    ));
}
