//! The BTC bridge on the embedded chain: deposits built, accepted, mined and found by
//! `scan_deposits` (and the outputs it skips, with their reasons), payouts signed by the bridge
//! key (tweaked with the bridge root) accepted by the script interpreter, their errors, and
//! properties: the parsers never panic and a payout's amounts always add up.

use parabit_bitcoin::bitcoin::blockdata::constants::genesis_block;
use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::{SecretKey, SECP256K1};
use parabit_bitcoin::bitcoin::{
    absolute::LockTime, transaction::Version, Amount, Block, Network, OutPoint, ScriptBuf,
    Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use parabit_bitcoin::bridge::{
    bridge_address, bridge_script, bridge_wallet, build_deposit, build_payout, deposit_marker,
    parse_deposit_marker, parse_payout, payout_marker, scan_deposits, BitcoinDeposit, BridgeError,
    PayoutRequest, DEPOSIT_TAG, MAX_PAYOUT_OUTPUTS, PAYOUT_TAG,
};
use parabit_bitcoin::verify::verify_scripts;
use parabit_bitcoin::wallet::fee_for;
use parabit_bitcoin::{RegtestChain, TaprootWallet, Utxo, WalletError};
use proptest::prelude::*;

use crate::{fund, rate, utxos, wallet};

const MIN: Amount = Amount::from_sat(10_000);

fn sequencer() -> Keypair {
    Keypair::from_secret_key(SECP256K1, &SecretKey::from_slice(&[42; 32]).unwrap())
}

fn bridge() -> ScriptBuf {
    bridge_script(sequencer().x_only_public_key().0)
}

/// A valid L2 address (x-only key).
fn recipient(seed: u8) -> [u8; 32] {
    wallet(seed).internal_key().serialize()
}

fn out(script: &ScriptBuf, sats: u64) -> TxOut {
    TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: script.clone(),
    }
}

fn op_return(data: &[u8]) -> TxOut {
    let mut bytes = vec![0x6a, u8::try_from(data.len()).unwrap()];
    assert!(data.len() < 76);
    bytes.extend_from_slice(data);
    TxOut {
        value: Amount::ZERO,
        script_pubkey: ScriptBuf::from_bytes(bytes),
    }
}

fn tagged(tag: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut v = tag.to_vec();
    v.extend_from_slice(rest);
    v
}

fn mine_one(chain: &RegtestChain) -> Block {
    let hash = chain.mine(1, wallet(77).script_pubkey()).unwrap()[0];
    chain.block(&hash).unwrap()
}

#[test]
fn bridge_address_is_not_the_batcher_wallet() {
    let kp = sequencer();
    let (x, _) = kp.x_only_public_key();
    let batcher = TaprootWallet::from_keypair(kp);
    let same_secret = TaprootWallet::new(SecretKey::from_slice(&[42; 32]).unwrap());
    assert_eq!(batcher.script_pubkey(), same_secret.script_pubkey());
    let bw = bridge_wallet(kp);
    assert_eq!(bw.script_pubkey(), &bridge_script(x));
    assert_ne!(bw.script_pubkey(), same_secret.script_pubkey());
    assert_ne!(
        bridge_address(x, Network::Regtest),
        same_secret.address(Network::Regtest)
    );
    assert_eq!(
        bridge_address(x, Network::Regtest).script_pubkey(),
        bridge_script(x)
    );
    assert!(bridge_address(x, Network::Regtest)
        .to_string()
        .starts_with("bcrt1p"));
    // The batcher's coin selection never sees the bridge's outputs.
    let deposit = Utxo {
        outpoint: OutPoint::null(),
        txout: out(&bridge_script(x), 50_000),
        confirmations: 6,
        coinbase: false,
    };
    assert!(!same_secret.can_spend(&deposit));
    assert!(bw.can_spend(&deposit));
}

#[test]
fn deposit_is_accepted_mined_and_found() {
    let chain = RegtestChain::in_memory();
    let user = wallet(1);
    fund(&chain, &user);
    let bridge = bridge();
    let to = recipient(9);
    let amount = Amount::from_sat(250_000);
    let f = build_deposit(&user, &utxos(&chain, &user), &bridge, to, amount, rate(2)).unwrap();
    assert_eq!(f.tx.output[0], out(&bridge, 250_000));
    assert_eq!(f.tx.output[1], deposit_marker(to));
    assert_eq!(f.change, Some(2));
    assert_eq!(f.fee, fee_for(rate(2), f.tx.weight()));
    let txid = chain.send_raw_transaction(&f.tx).unwrap();
    let block = mine_one(&chain);
    let (deposits, skipped) = scan_deposits(&block, &bridge, MIN);
    assert_eq!(
        deposits,
        vec![BitcoinDeposit {
            outpoint: OutPoint { txid, vout: 0 },
            recipient: to,
            amount,
        }]
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    // Another script is not this bridge.
    let other = bridge_script(wallet(3).internal_key());
    assert_eq!(scan_deposits(&block, &other, MIN), (vec![], vec![]));
    let held = chain.list_unspent(std::slice::from_ref(&bridge));
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].outpoint, OutPoint { txid, vout: 0 });

    // One marker, two bridge outputs: two deposits to the same recipient, in vout order.
    let f = user
        .build_payment(
            &utxos(&chain, &user),
            vec![
                out(&bridge, 100_000),
                deposit_marker(to),
                out(&bridge, 200_000),
            ],
            rate(1),
        )
        .unwrap();
    let txid = chain.send_raw_transaction(&f.tx).unwrap();
    let block = mine_one(&chain);
    let (deposits, skipped) = scan_deposits(&block, &bridge, MIN);
    assert!(skipped.is_empty());
    assert_eq!(
        deposits,
        vec![
            BitcoinDeposit {
                outpoint: OutPoint { txid, vout: 0 },
                recipient: to,
                amount: Amount::from_sat(100_000),
            },
            BitcoinDeposit {
                outpoint: OutPoint { txid, vout: 2 },
                recipient: to,
                amount: Amount::from_sat(200_000),
            },
        ]
    );
}

#[test]
fn build_deposit_refuses_what_would_never_be_credited_or_relayed() {
    let user = wallet(1);
    let coins = vec![Utxo {
        outpoint: OutPoint::new(Txid::from_byte_array([1; 32]), 0),
        txout: out(user.script_pubkey(), 1_000_000),
        confirmations: 1,
        coinbase: false,
    }];
    let bridge = bridge();
    let err = build_deposit(&user, &coins, &bridge, [0xff; 32], MIN, rate(1)).unwrap_err();
    assert_eq!(err, BridgeError::InvalidRecipient(hex_ff()));
    assert!(err.to_string().contains("not a valid x-only public key"));
    let err = build_deposit(
        &user,
        &coins,
        &bridge,
        recipient(2),
        Amount::from_sat(100),
        rate(1),
    )
    .unwrap_err();
    assert!(
        matches!(err, BridgeError::Wallet(WalletError::Dust { index: 0, .. })),
        "{err}"
    );
    let err = build_deposit(
        &user,
        &coins,
        &bridge,
        recipient(2),
        Amount::from_sat(5_000_000),
        rate(1),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            BridgeError::Wallet(WalletError::InsufficientFunds { .. })
        ),
        "{err}"
    );
}

fn hex_ff() -> String {
    "ff".repeat(32)
}

/// Outputs of one transaction, and the (vout, reason) of each output it expects skipped.
type Case = (Vec<TxOut>, Vec<(u32, &'static str)>);

#[test]
fn skipped_outputs_say_why_and_coinbase_and_payouts_are_ignored() {
    let chain = RegtestChain::in_memory();
    let user = wallet(1);
    // 115 blocks: the coinbases of blocks 1..=15 are mature, one per transaction below.
    chain.mine(115, user.script_pubkey()).unwrap();
    let mut coins: Vec<Utxo> = utxos(&chain, &user)
        .into_iter()
        .filter(|u| u.is_spendable())
        .collect();
    let bridge = bridge();
    let to = recipient(9);
    let bad_tag = tagged(b"pbx", &to);
    let short = tagged(DEPOSIT_TAG, &to[..31]);
    let invalid_key = tagged(DEPOSIT_TAG, &[0xff; 32]);
    let cases: Vec<Case> = vec![
        (
            vec![out(&bridge, 50_000)],
            vec![(0, "no OP_RETURN deposit marker")],
        ),
        (
            vec![out(&bridge, 50_000), deposit_marker(to), deposit_marker(to)],
            vec![(0, "2 OP_RETURN outputs; a deposit has exactly one marker")],
        ),
        (
            vec![out(&bridge, 50_000), op_return(&bad_tag)],
            vec![(
                0,
                "invalid deposit marker: marker tag is 706278, expected 706264 (\"pbd\")",
            )],
        ),
        (
            vec![op_return(&short), out(&bridge, 50_000)],
            vec![(1, "invalid deposit marker: marker data is 34 bytes, expected 35")],
        ),
        (
            vec![out(&bridge, 50_000), op_return(&invalid_key)],
            vec![(
                0,
                "invalid deposit marker: recipient ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff is not a valid x-only public key",
            )],
        ),
        (
            vec![out(&bridge, 5_000), deposit_marker(to)],
            vec![(0, "deposit of 5000 sat is below the minimum 10000 sat")],
        ),
        (
            // One output below the minimum, one credited.
            vec![out(&bridge, 5_000), deposit_marker(to), out(&bridge, 20_000)],
            vec![(0, "deposit of 5000 sat is below the minimum 10000 sat")],
        ),
        (
            // A marker but nothing paid to the bridge: not the bridge's business.
            vec![out(user.script_pubkey(), 50_000), deposit_marker(to)],
            vec![],
        ),
    ];
    let mut expected = Vec::new();
    for (outputs, skips) in cases {
        let coin = coins.remove(0);
        let f = user.fund(&[coin], &[], outputs, rate(1)).unwrap();
        let txid = chain.send_raw_transaction(&f.tx).unwrap();
        expected.push((txid, skips));
    }
    // Shaped like a payout (last output a payout marker): its bridge output is the bridge's
    // change, neither a deposit nor skipped. Built by hand so that the marker stays last.
    let coin = coins.remove(0);
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: coin.outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![
            out(&bridge, 50_000),
            out(user.script_pubkey(), coin.txout.value.to_sat() - 60_000),
            payout_marker((3, 1)),
        ],
    };
    user.sign_key_spends(&mut tx, std::slice::from_ref(&coin.txout))
        .unwrap();
    assert_eq!(parse_payout(&tx), Some((3, 1)));
    expected.push((chain.send_raw_transaction(&tx).unwrap(), vec![]));
    let block = mine_one(&chain);
    assert_eq!(block.txdata.len(), 1 + expected.len());
    let position = |txid: &Txid| {
        block
            .txdata
            .iter()
            .position(|tx| tx.compute_txid() == *txid)
            .unwrap()
    };
    let (deposits, skipped) = scan_deposits(&block, &bridge, MIN);
    // Exactly the one credited output of the mixed case.
    let mixed = expected[6].0;
    assert_eq!(
        deposits,
        vec![BitcoinDeposit {
            outpoint: OutPoint {
                txid: mixed,
                vout: 2
            },
            recipient: to,
            amount: Amount::from_sat(20_000),
        }]
    );
    let mut want: Vec<(usize, OutPoint, &str)> = expected
        .iter()
        .flat_map(|(txid, skips)| {
            skips.iter().map(|(vout, reason)| {
                (
                    position(txid),
                    OutPoint {
                        txid: *txid,
                        vout: *vout,
                    },
                    *reason,
                )
            })
        })
        .collect();
    want.sort_by_key(|(pos, op, _)| (*pos, op.vout));
    let got: Vec<(OutPoint, &str)> = skipped
        .iter()
        .map(|s| (s.outpoint, s.reason.as_str()))
        .collect();
    let want: Vec<(OutPoint, &str)> = want.into_iter().map(|(_, op, r)| (op, r)).collect();
    assert_eq!(got, want);
    for s in &skipped {
        let value = chain.utxo(&s.outpoint).unwrap().value;
        assert_eq!(s.amount, value);
    }

    // A coinbase paying the bridge is neither a deposit nor skipped.
    let hash = chain.mine(1, &bridge).unwrap()[0];
    let block = chain.block(&hash).unwrap();
    assert_eq!(block.txdata[0].output[0].script_pubkey, bridge);
    assert_eq!(scan_deposits(&block, &bridge, MIN), (vec![], vec![]));
}

#[test]
fn payouts_are_accepted_and_add_up() {
    let chain = RegtestChain::in_memory();
    let user = wallet(1);
    fund(&chain, &user);
    let kp = sequencer();
    let bw = bridge_wallet(kp);
    let bridge = bridge();
    for (sats, seed) in [(1_000_000, 9), (2_000_000, 10)] {
        let f = build_deposit(
            &user,
            &utxos(&chain, &user),
            &bridge,
            recipient(seed),
            Amount::from_sat(sats),
            rate(1),
        )
        .unwrap();
        chain.send_raw_transaction(&f.tx).unwrap();
    }
    let block = mine_one(&chain);
    assert_eq!(scan_deposits(&block, &bridge, MIN).0.len(), 2);
    let inputs = chain.list_unspent(std::slice::from_ref(&bridge));
    assert_eq!(inputs.len(), 2);
    // The batcher's wallet of the same key does not see them.
    assert!(chain
        .list_unspent(&[TaprootWallet::from_keypair(kp).script_pubkey().clone()])
        .is_empty());

    let requests: Vec<PayoutRequest> = [(5u8, 400_000u64), (6, 700_000), (7, 1_100_000)]
        .iter()
        .map(|(seed, sats)| PayoutRequest {
            script_pubkey: wallet(*seed).script_pubkey().clone(),
            amount: Amount::from_sat(*sats),
        })
        .collect();
    let fee_rate = rate(3);
    let p = build_payout(&bw, &inputs, &requests, (7, 3), fee_rate).unwrap();
    let txid = chain.send_raw_transaction(&p.tx).unwrap();
    assert_eq!(p.fee, fee_for(fee_rate, p.tx.weight()));
    assert_eq!(p.shares.len(), 3);
    let share = p.shares[0];
    assert!(p.shares.iter().all(|s| *s == share));
    assert_eq!(share.to_sat(), p.fee.to_sat().div_ceil(3));
    assert!(share * 3 >= p.fee);
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(p.tx.output[i].script_pubkey, r.script_pubkey);
        assert_eq!(p.tx.output[i].value, r.amount - share);
    }
    let (vout, change) = p.change.unwrap();
    assert_eq!(vout, 3);
    assert_eq!(
        p.tx.output[3],
        TxOut {
            value: change,
            script_pubkey: bridge.clone()
        }
    );
    // The rounding surplus stays with the bridge.
    assert_eq!(
        change.to_sat(),
        3_000_000 - 2_200_000 + (share * 3 - p.fee).to_sat()
    );
    assert_eq!(p.tx.output.len(), 5);
    assert_eq!(p.tx.output[4], payout_marker((7, 3)));
    assert_eq!(parse_payout(&p.tx), Some((7, 3)));
    assert_eq!(p.spent, inputs);
    let total_out: Amount = p.tx.output.iter().map(|o| o.value).sum();
    assert_eq!(total_out + p.fee, Amount::from_sat(3_000_000));

    let block = mine_one(&chain);
    assert!(block.txdata.iter().any(|tx| tx.compute_txid() == txid));
    // The payout's change is not a deposit.
    assert_eq!(scan_deposits(&block, &bridge, MIN), (vec![], vec![]));
    for (i, r) in requests.iter().enumerate() {
        let paid = chain
            .utxo(&OutPoint {
                txid,
                vout: i as u32,
            })
            .unwrap();
        assert_eq!(paid.value, r.amount - share);
    }

    // A later payout spends the change.
    let held = chain.list_unspent(std::slice::from_ref(&bridge));
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].outpoint, OutPoint { txid, vout: 3 });
    let later = vec![PayoutRequest {
        script_pubkey: wallet(8).script_pubkey().clone(),
        amount: Amount::from_sat(150_000),
    }];
    let p2 = build_payout(&bw, &held, &later, (9, 0), rate(1)).unwrap();
    let txid2 = chain.send_raw_transaction(&p2.tx).unwrap();
    assert_eq!(p2.shares, vec![p2.fee]);
    assert_eq!(parse_payout(&p2.tx), Some((9, 0)));
    mine_one(&chain);
    assert_eq!(chain.confirmations(&txid2), Some(1));
    assert_eq!(
        chain.list_unspent(std::slice::from_ref(&bridge))[0].outpoint,
        OutPoint {
            txid: txid2,
            vout: 1
        }
    );
}

fn bridge_coin(n: u8, sats: u64) -> Utxo {
    Utxo {
        outpoint: OutPoint::new(Txid::from_byte_array([n; 32]), u32::from(n)),
        txout: out(&bridge(), sats),
        confirmations: 3,
        coinbase: false,
    }
}

fn request(seed: u8, sats: u64) -> PayoutRequest {
    PayoutRequest {
        script_pubkey: wallet(seed).script_pubkey().clone(),
        amount: Amount::from_sat(sats),
    }
}

#[test]
fn dust_change_goes_to_the_fee() {
    let bw = bridge_wallet(sequencer());
    let inputs = vec![bridge_coin(1, 100_000)];
    // Gross 99_900: the change would be 100 sat (+ rounding), below the 330-sat dust limit.
    let p = build_payout(&bw, &inputs, &[request(5, 99_900)], (1, 0), rate(2)).unwrap();
    assert_eq!(p.change, None);
    assert_eq!(p.tx.output.len(), 2);
    let weight_fee = fee_for(rate(2), p.tx.weight());
    assert_eq!(p.shares, vec![weight_fee]);
    assert_eq!(p.fee, weight_fee + Amount::from_sat(100));
    assert_eq!(p.tx.output[0].value, Amount::from_sat(99_900) - weight_fee);
    assert_eq!(p.tx.output[0].value + p.fee, Amount::from_sat(100_000));
    verify_scripts(&p.tx, &[inputs[0].txout.clone()]).unwrap();
}

#[test]
fn payout_errors() {
    let bw = bridge_wallet(sequencer());
    let coins = vec![bridge_coin(1, 5_000)];
    let big = vec![bridge_coin(1, 10_000_000)];
    let through = (1, 0);
    let r = rate(1);
    assert_eq!(
        build_payout(&bw, &big, &[], through, r).unwrap_err(),
        BridgeError::NoRequests
    );
    let many: Vec<PayoutRequest> = (0..=MAX_PAYOUT_OUTPUTS)
        .map(|_| request(5, 20_000))
        .collect();
    let err = build_payout(&bw, &big, &many, through, r).unwrap_err();
    assert_eq!(err, BridgeError::TooManyRequests(251));
    assert_eq!(
        err.to_string(),
        "251 withdrawals exceed the 250 one payout may pay"
    );
    // Exactly the maximum is fine.
    let p = build_payout(&bw, &big, &many[1..], through, r).unwrap();
    assert_eq!(p.tx.output.len(), MAX_PAYOUT_OUTPUTS + 2);

    // A withdrawal that cannot pay its share and stay above dust.
    let reqs = vec![request(5, 100_000), request(6, 1_000), request(7, 100_000)];
    let err = build_payout(&bw, &big, &reqs, through, rate(20)).unwrap_err();
    match &err {
        BridgeError::WithdrawalTooSmall {
            index,
            amount,
            share,
            dust,
        } => {
            assert_eq!(*index, 1);
            assert_eq!(*amount, Amount::from_sat(1_000));
            assert_eq!(*dust, Amount::from_sat(330));
            assert!(*amount < *share + *dust);
            assert!(err.to_string().starts_with(&format!(
                "withdrawal 1 of 1000 sat cannot pay its fee share {} sat",
                share.to_sat()
            )));
        }
        other => panic!("{other:?}"),
    }

    let err = build_payout(&bw, &coins, &[request(5, 9_000)], through, r).unwrap_err();
    assert_eq!(
        err,
        BridgeError::Insufficient {
            held: Amount::from_sat(5_000),
            needed: Amount::from_sat(9_000),
        }
    );
    assert_eq!(
        err.to_string(),
        "bridge holds 5000 sat, payouts need 9000 sat"
    );
    assert!(matches!(
        build_payout(&bw, &[], &[request(5, 9_000)], through, r).unwrap_err(),
        BridgeError::Insufficient {
            held: Amount::ZERO,
            ..
        }
    ));

    let mut foreign = bridge_coin(2, 50_000);
    foreign.txout.script_pubkey = TaprootWallet::from_keypair(sequencer())
        .script_pubkey()
        .clone();
    let err = build_payout(
        &bw,
        &[big[0].clone(), foreign.clone()],
        &[request(5, 9_000)],
        through,
        r,
    )
    .unwrap_err();
    assert_eq!(err, BridgeError::ForeignInput(foreign.outpoint));
    assert!(err
        .to_string()
        .contains("is not an output of the bridge script"));

    let mut immature = bridge_coin(3, 50_000);
    immature.coinbase = true;
    immature.confirmations = 99;
    assert_eq!(
        build_payout(&bw, &[immature.clone()], &[request(5, 9_000)], through, r).unwrap_err(),
        BridgeError::ImmatureInput(immature.outpoint)
    );
    assert_eq!(
        build_payout(
            &bw,
            &[big[0].clone(), big[0].clone()],
            &[request(5, 9_000)],
            through,
            r
        )
        .unwrap_err(),
        BridgeError::DuplicateInput(big[0].outpoint)
    );
}

// ---- properties ----

fn script_strategy() -> impl Strategy<Value = ScriptBuf> {
    let recipient_bytes = prop::array::uniform32(any::<u8>());
    prop_oneof![
        Just(bridge()),
        Just(bridge()),
        recipient_bytes.prop_map(|r| deposit_marker(r).script_pubkey),
        (any::<u64>(), any::<u32>()).prop_map(|t| payout_marker(t).script_pubkey),
        prop::collection::vec(any::<u8>(), 0..60).prop_map(|d| {
            let mut b = vec![0x6a];
            b.extend_from_slice(&d);
            ScriptBuf::from_bytes(b)
        }),
        (
            prop::sample::select(vec![DEPOSIT_TAG.to_vec(), PAYOUT_TAG.to_vec()]),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(tag, rest)| op_return(&tagged(&tag, &rest)).script_pubkey),
        prop::collection::vec(any::<u8>(), 0..80).prop_map(ScriptBuf::from_bytes),
    ]
}

fn tx_strategy() -> impl Strategy<Value = Transaction> {
    (
        any::<bool>(),
        prop::collection::vec((script_strategy(), any::<u64>()), 0..6),
    )
        .prop_map(|(coinbase, outs)| Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: if coinbase {
                    OutPoint::null()
                } else {
                    OutPoint::new(Txid::from_byte_array([7; 32]), 1)
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output: outs
                .into_iter()
                .map(|(script_pubkey, v)| TxOut {
                    value: Amount::from_sat(v % 100_000),
                    script_pubkey,
                })
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let script = ScriptBuf::from_bytes(bytes.clone());
        let _ = parse_deposit_marker(&script);
        let mut with_return = vec![0x6a];
        with_return.extend_from_slice(&bytes);
        let _ = parse_deposit_marker(&ScriptBuf::from_bytes(with_return.clone()));
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![],
            output: vec![
                TxOut { value: Amount::ZERO, script_pubkey: script },
                TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::from_bytes(with_return) },
            ],
        };
        let _ = parse_payout(&tx);
    }

    #[test]
    fn scan_never_panics_and_accounts_for_every_bridge_output(
        txs in prop::collection::vec(tx_strategy(), 0..6),
        min in 0u64..60_000,
    ) {
        let bridge = bridge();
        let mut block = genesis_block(Network::Regtest);
        block.txdata = txs;
        let min = Amount::from_sat(min);
        let (deposits, skipped) = scan_deposits(&block, &bridge, min);
        let considered: Vec<(Txid, u32, Amount)> = block
            .txdata
            .iter()
            .filter(|tx| !tx.is_coinbase() && parse_payout(tx).is_none())
            .flat_map(|tx| {
                let txid = tx.compute_txid();
                tx.output
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.script_pubkey == bridge)
                    .map(move |(v, o)| (txid, v as u32, o.value))
            })
            .collect();
        prop_assert_eq!(deposits.len() + skipped.len(), considered.len());
        for d in &deposits {
            prop_assert!(d.amount >= min);
            prop_assert!(considered.contains(&(d.outpoint.txid, d.outpoint.vout, d.amount)));
        }
        for s in &skipped {
            prop_assert!(considered.contains(&(s.outpoint.txid, s.outpoint.vout, s.amount)));
            prop_assert!(!s.reason.is_empty());
        }
    }

    #[test]
    fn payout_amounts_add_up(
        inputs in prop::collection::vec(0u64..3_000_000, 1..4),
        amounts in prop::collection::vec(0u64..1_500_000, 1..12),
        fee_rate in 1u32..40,
        through in (any::<u64>(), any::<u32>()),
        tight in prop::option::of(0u64..800),
    ) {
        let bw = bridge_wallet(sequencer());
        let coins: Vec<Utxo> = match tight {
            // One input of exactly the gross amounts plus a little: the change is that little
            // plus the rounding surplus, often below dust (the no-change branch).
            Some(slack) => vec![bridge_coin(1, amounts.iter().sum::<u64>() + slack)],
            None => inputs
                .iter()
                .enumerate()
                .map(|(i, sats)| bridge_coin(i as u8 + 1, *sats))
                .collect(),
        };
        // Withdrawals to P2TR, P2WPKH and P2PKH scripts (different dust limits).
        let requests: Vec<PayoutRequest> = amounts
            .iter()
            .enumerate()
            .map(|(i, sats)| {
                let script_pubkey = match i % 3 {
                    0 => wallet(5).script_pubkey().clone(),
                    1 => ScriptBuf::from_bytes([&[0x00, 20][..], &[i as u8; 20]].concat()),
                    _ => ScriptBuf::from_bytes(
                        [&[0x76, 0xa9, 20][..], &[i as u8; 20], &[0x88, 0xac]].concat(),
                    ),
                };
                PayoutRequest { script_pubkey, amount: Amount::from_sat(*sats) }
            })
            .collect();
        let held: Amount = coins.iter().map(|u| u.txout.value).sum();
        let r = rate(fee_rate);
        match build_payout(&bw, &coins, &requests, through, r) {
            Ok(p) => {
                let n = requests.len();
                let weight_fee = fee_for(r, p.tx.weight());
                let shares: Amount = p.shares.iter().copied().sum();
                prop_assert_eq!(p.shares.len(), n);
                prop_assert!(shares >= weight_fee);
                prop_assert!(p.fee >= weight_fee);
                let total_out: Amount = p.tx.output.iter().map(|o| o.value).sum();
                prop_assert_eq!(total_out + p.fee, held);
                for (i, req) in requests.iter().enumerate() {
                    prop_assert_eq!(&p.tx.output[i].script_pubkey, &req.script_pubkey);
                    prop_assert_eq!(p.tx.output[i].value, req.amount - p.shares[i]);
                    prop_assert!(p.tx.output[i].value >= req.script_pubkey.minimal_non_dust());
                }
                match p.change {
                    Some((vout, change)) => {
                        prop_assert_eq!(vout as usize, n);
                        prop_assert_eq!(p.fee, weight_fee);
                        prop_assert!(shares >= p.fee);
                        prop_assert_eq!(&p.tx.output[n].script_pubkey, bw.script_pubkey());
                        prop_assert_eq!(p.tx.output[n].value, change);
                        prop_assert!(change >= bw.script_pubkey().minimal_non_dust());
                        prop_assert_eq!(p.tx.output.len(), n + 2);
                    }
                    None => {
                        prop_assert_eq!(p.tx.output.len(), n + 1);
                        // Only a dust change (plus rounding) goes to the fee.
                        prop_assert!(p.fee - weight_fee < Amount::from_sat(330 + n as u64));
                    }
                }
                prop_assert_eq!(parse_payout(&p.tx), Some(through));
                let prevouts: Vec<TxOut> = coins.iter().map(|u| u.txout.clone()).collect();
                prop_assert!(verify_scripts(&p.tx, &prevouts).is_ok());
            }
            Err(BridgeError::WithdrawalTooSmall { index, amount, share, dust }) => {
                prop_assert_eq!(amount, requests[index].amount);
                prop_assert!(amount < share + dust);
            }
            Err(BridgeError::Insufficient { held: h, needed }) => {
                prop_assert_eq!(h, held);
                prop_assert!(h < needed);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }
}
