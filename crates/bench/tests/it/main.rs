//! Integration tests of the bench library: deterministic generation, valid transactions,
//! the runner's oracle comparison, and parameter checks.

use parabit_bench::{
    run, state_root, Accounts, BenchError, Report, RunOptions, Workload, WorkloadKind,
    WorkloadSpec, FEE,
};
use parabit_exec::{execute_sequential, Value};
use parabit_modules::{check_conservation, BankMsg, BlockTx, Call};
use parabit_primitives::{verify_batch, AssetId};

fn spec(kind: WorkloadKind) -> WorkloadSpec {
    WorkloadSpec {
        kind,
        accounts: 64,
        txs: 500,
        block_size: 128,
        seed: 42,
    }
}

fn generate(spec: &WorkloadSpec) -> Workload {
    match Workload::generate(spec) {
        Ok(w) => w,
        Err(e) => panic!("generating {}: {e}", spec.kind),
    }
}

#[test]
fn generation_is_deterministic() {
    for kind in WorkloadKind::ALL {
        let a = generate(&spec(kind));
        let b = generate(&spec(kind));
        assert_eq!(a.signed, b.signed, "{kind}");
        assert_eq!(a.blocks, b.blocks, "{kind}");
        assert_eq!(state_root(&a.genesis), state_root(&b.genesis), "{kind}");
        assert_eq!(a.runtime, b.runtime);

        let other = generate(&WorkloadSpec {
            seed: 43,
            ..spec(kind)
        });
        assert_ne!(
            a.signed, other.signed,
            "{kind}: another seed, other transactions"
        );
    }
}

#[test]
fn keys_do_not_depend_on_the_thread_count() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let one = pool.install(|| Accounts::derive(9, 50, false));
    let many = Accounts::derive(9, 50, false);
    for i in 0..50 {
        assert_eq!(one.address(i), many.address(i));
    }
    assert_ne!(one.address(0), one.address(1));
}

#[test]
fn blocks_have_the_requested_shape() {
    for kind in WorkloadKind::ALL {
        let w = generate(&spec(kind));
        assert_eq!(w.txs(), 500);
        let sizes: Vec<usize> = w.signed.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![128, 128, 128, 116], "{kind}");
        // `lending-mix` and `defi-mix` blocks begin with the two markets' accrual hooks.
        let begin = if kind.accrues() { 2 } else { 0 };
        for (b, s) in w.blocks.iter().zip(&w.signed) {
            assert!(b[..begin].iter().all(|t| matches!(t, BlockTx::Hook(_))));
            let b = &b[begin..];
            let unsigned: Vec<_> = s.iter().map(|t| BlockTx::User(t.tx.clone())).collect();
            assert_eq!(b[..s.len()], unsigned[..]);
            // Then the end-block hooks: one settlement per pool with batch orders, and its
            // payouts.
            let hooks = match kind {
                WorkloadKind::BatchswapHot => 1 + s.len().div_ceil(parabit_modules::dex::PAY_CHUNK),
                WorkloadKind::DefiMix => {
                    let users: Vec<_> = s.iter().map(|t| t.tx.clone()).collect();
                    parabit_modules::end_block_hooks(&users).len()
                }
                _ => 0,
            };
            assert_eq!(b.len(), s.len() + hooks, "{kind}");
            assert!(b[s.len()..].iter().all(|t| matches!(t, BlockTx::Hook(_))));
        }
    }
}

#[test]
fn every_generated_transaction_is_valid() {
    for kind in WorkloadKind::ALL {
        let w = generate(&spec(kind));
        let mut state = w.genesis.clone();
        check_conservation(&state).expect("genesis conserves value");
        for (block, signed) in w.blocks.iter().zip(&w.signed) {
            assert!(verify_batch(signed).iter().all(Result::is_ok), "{kind}");
            let out = execute_sequential(&w.runtime, block, &state);
            for (i, receipt) in out.outputs.iter().enumerate() {
                assert!(
                    receipt.status.is_success(),
                    "{kind}: tx {i}: {:?}",
                    receipt.status
                );
                let is_user = matches!(block[i], BlockTx::User(_));
                let fee = if is_user { FEE } else { 0 };
                assert_eq!(receipt.fee_paid, fee, "{kind}: tx {i}");
            }
            out.writes.apply_to(&mut state);
        }
        check_conservation(&state).expect("value conserved");
    }
}

#[test]
fn hot_and_serial_workloads_have_their_shape() {
    let hot = generate(&spec(WorkloadKind::TransferHot));
    let BlockTx::User(first) = hot.blocks[0][0].clone() else {
        panic!("not a user transaction");
    };
    let Call::Bank(BankMsg::Transfer {
        to: hot_account, ..
    }) = first.call
    else {
        panic!("not a transfer");
    };
    for tx in hot.signed.iter().flatten().map(|s| &s.tx) {
        let Call::Bank(BankMsg::Transfer { to, asset, .. }) = &tx.call else {
            panic!("not a transfer");
        };
        assert_eq!(*to, hot_account);
        assert_eq!(*asset, AssetId::BTC);
        assert_ne!(tx.sender, hot_account);
    }

    let serial = generate(&spec(WorkloadKind::TransferSerial));
    let sender = serial.signed[0][0].tx.sender;
    for (i, tx) in serial.signed.iter().flatten().map(|s| &s.tx).enumerate() {
        assert_eq!(tx.sender, sender);
        assert_eq!(tx.nonce, i as u64);
    }
}

/// Run options without progress bars.
fn options(threads: Vec<usize>, repeat: usize) -> RunOptions {
    RunOptions {
        threads,
        progress: false,
        repeat,
    }
}

#[test]
fn runner_reports_matching_roots_on_every_workload() {
    for kind in WorkloadKind::ALL {
        let w = generate(&spec(kind));
        let mut streamed = 0;
        let reports = run(&w, &options(vec![1, 2, 3], 1), |_| streamed += 1).expect("run");
        assert_eq!(streamed, reports.len());
        let engines: Vec<_> = reports
            .iter()
            .filter_map(|r| match r {
                Report::Engine(e) => Some(e),
                Report::Sig(_) => None,
            })
            .collect();
        let sigs: Vec<_> = reports
            .iter()
            .filter_map(|r| match r {
                Report::Sig(s) => Some(s),
                Report::Engine(_) => None,
            })
            .collect();
        assert_eq!(engines.len(), 3);
        assert_eq!(sigs.len(), 3);
        for e in &engines {
            assert!(e.roots_match, "{kind} on {} threads: {e:?}", e.threads);
            assert_eq!(e.first_divergent_block, None);
            assert_eq!(e.sequential_root, e.parallel_root);
            assert_eq!(e.failed_txs, 0);
            assert_eq!((e.txs, e.blocks, e.accounts), (500, 4, 64));
            assert!(e.executions + e.fallback_txs as u64 >= 500, "{e:?}");
            assert!(e.seconds > 0.0 && e.tps > 0.0 && e.sequential_tps > 0.0);
        }
        assert_eq!(
            engines[0].fallback_blocks, 4,
            "one thread runs sequentially"
        );
        assert_eq!(engines[0].sequential_root, engines[2].sequential_root);
        for s in &sigs {
            assert_eq!(s.workload, "sigverify");
            assert_eq!(s.signatures, 500);
            assert!(s.rate > 0.0 && s.single_thread_rate > 0.0 && s.efficiency > 0.0);
        }
        let json = serde_json::to_value(&reports[0]).expect("json");
        for field in [
            "workload",
            "accounts",
            "txs",
            "block_size",
            "threads",
            "seconds",
            "tps",
            "sequential_seconds",
            "sequential_tps",
            "speedup",
            "cpu_cores_used",
            "roots_match",
            "executions",
            "aborts",
            "suspensions",
            "fallback_blocks",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
    }
}

#[test]
fn repeated_runs_keep_the_fastest_and_still_compare_every_block() {
    for kind in [WorkloadKind::TransferHot, WorkloadKind::DefiMix] {
        let w = generate(&spec(kind));
        let reports = run(&w, &options(vec![2], 3), |_| {}).expect("run");
        let Some(Report::Engine(e)) = reports.first() else {
            panic!("no engine report");
        };
        assert_eq!(e.repeat, 3);
        assert!(e.roots_match, "{kind}: {e:?}");
        assert_eq!(e.first_divergent_block, None);
        assert_eq!((e.txs, e.blocks), (500, 4));
        assert!(e.seconds > 0.0 && e.sequential_seconds > 0.0 && e.ceiling_speedup > 0.0);
    }
}

#[test]
fn single_thread_rate_is_measured_when_one_is_not_in_the_list() {
    let w = generate(&WorkloadSpec {
        txs: 100,
        ..spec(WorkloadKind::TransferUniform)
    });
    let reports = run(&w, &options(vec![2], 1), |_| {}).expect("run");
    let Some(Report::Sig(sig)) = reports.last() else {
        panic!("no sigverify report");
    };
    assert_eq!(sig.threads, 2);
    assert!(sig.single_thread_rate > 0.0);
}

#[test]
fn bad_parameters_are_refused() {
    let w = generate(&WorkloadSpec {
        txs: 10,
        ..spec(WorkloadKind::TransferUniform)
    });
    let zero = run(&w, &options(vec![1, 0], 1), |_| {});
    assert!(matches!(zero, Err(BenchError::ZeroThreads)));
    let none = run(&w, &options(vec![], 1), |_| {});
    assert!(matches!(none, Err(BenchError::NoThreads)));

    for bad in [
        WorkloadSpec {
            accounts: 1,
            ..spec(WorkloadKind::TransferHot)
        },
        WorkloadSpec {
            txs: 0,
            ..spec(WorkloadKind::TransferHot)
        },
        WorkloadSpec {
            block_size: 0,
            ..spec(WorkloadKind::TransferHot)
        },
    ] {
        assert!(matches!(
            Workload::generate(&bad),
            Err(BenchError::InvalidSpec(_))
        ));
    }

    let accounts = Accounts::derive(1, 8, false);
    assert!(matches!(
        Workload::generate_with(&spec(WorkloadKind::TransferHot), &accounts, false),
        Err(BenchError::AccountsMismatch { .. })
    ));
}

#[test]
fn workload_names_round_trip() {
    for kind in WorkloadKind::ALL {
        assert_eq!(kind.name().parse::<WorkloadKind>().expect("known"), kind);
        assert_eq!(kind.to_string(), kind.name());
    }
    let err = "nope".parse::<WorkloadKind>().expect_err("unknown");
    let msg = err.to_string();
    assert!(
        msg.contains("\"nope\"") && msg.contains("transfer-serial"),
        "{msg}"
    );
}

#[test]
fn state_root_commits_to_every_entry_and_ignores_insertion_order() {
    let w = generate(&spec(WorkloadKind::TransferUniform));
    let root = state_root(&w.genesis);
    let mut entries: Vec<_> = w.genesis.iter().map(|(k, v)| (*k, v.clone())).collect();
    entries.reverse();
    let mut rebuilt = parabit_exec::key_map_with_capacity(entries.len());
    rebuilt.extend(entries.iter().cloned());
    assert_eq!(state_root(&rebuilt), root);

    let (k, _) = entries[0].clone();
    rebuilt.insert(k, Value::Num(123_456_789));
    assert_ne!(state_root(&rebuilt), root);
    rebuilt.remove(&k);
    assert_ne!(state_root(&rebuilt), root);
}

/// `defi-mix` draws its transactions in the documented proportions (lending and staking
/// operations that the plan cannot afford are turned into supplies and stakes, within their
/// module), and every module's genesis objects exist.
#[test]
fn defi_mix_has_its_documented_proportions() {
    use parabit_modules::{DexMsg, InsuranceMsg, LendingMsg, StakingMsg};
    let w = generate(&WorkloadSpec {
        accounts: 300,
        txs: 20_000,
        block_size: 5_000,
        ..spec(WorkloadKind::DefiMix)
    });
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for t in w.signed.iter().flatten() {
        let kind = match &t.tx.call {
            Call::Bank(BankMsg::Transfer { .. }) => "transfer",
            Call::Dex(DexMsg::SwapExactIn { .. }) => "swap",
            Call::Dex(DexMsg::BatchSwap { .. }) => "batch",
            Call::Lending(LendingMsg::Borrow { .. }) => "borrow",
            Call::Lending(_) => "lending",
            Call::Staking(StakingMsg::Unbond { .. }) => "unbond",
            Call::Staking(_) => "staking",
            Call::Insurance(InsuranceMsg::BuyCover { .. }) => "cover",
            Call::Insurance(InsuranceMsg::Underwrite { .. }) => "underwrite",
            other => panic!("unexpected call {other:?}"),
        };
        *counts.entry(kind).or_default() += 1;
    }
    // Per mille, within 1% of the target (20,000 draws: a standard deviation of at most 3.5‰).
    let share = |ks: &[&str]| {
        ks.iter()
            .map(|k| counts.get(k).copied().unwrap_or(0))
            .sum::<usize>()
            * 1000
            / 20_000
    };
    for (ks, target) in [
        (&["transfer"][..], 400),
        (&["swap"], 200),
        (&["batch"], 100),
        (&["lending", "borrow"], 150),
        (&["staking", "unbond"], 100),
        (&["cover"], 30),
        (&["underwrite"], 20),
    ] {
        assert!(share(ks).abs_diff(target) <= 10, "{ks:?}: {counts:?}");
    }
    // The plan keeps most borrows and unbonds (it turns only unaffordable ones into supplies
    // and stakes).
    assert!(
        share(&["borrow"]) >= 30 && share(&["unbond"]) >= 30,
        "{counts:?}"
    );
}
