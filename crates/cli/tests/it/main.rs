//! Runs the built `parabit` binary: a tiny `bench --json` run, and bad flags.

mod bridge;
mod channels;
mod crash;
mod devnet;
mod follow;
mod load;
mod settle;
mod tx;
mod wallet;

use std::process::{Command, Output};

fn parabit(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run parabit: {e}"),
    }
}

const TINY: [&str; 9] = [
    "bench",
    "--accounts",
    "50",
    "--txs",
    "300",
    "--block-size",
    "100",
    "--threads",
    "1,2",
];

#[test]
fn bench_json_lines_parse_and_roots_match() {
    let mut args = TINY.to_vec();
    args.extend(["--workload", "all", "--json", "--seed", "5"]);
    let out = parabit(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) => panic!("not a JSON line ({e}): {l}"),
        })
        .collect();
    // Per workload: one engine line per thread count, then one sigverify line per count.
    let all: Vec<&str> = parabit_bench::WorkloadKind::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    assert_eq!(lines.len(), all.len() * 4, "{stdout}");
    let engines: Vec<_> = lines
        .iter()
        .filter(|l| l["workload"] != "sigverify")
        .collect();
    assert_eq!(engines.len(), all.len() * 2);
    let mut names: Vec<&str> = engines
        .iter()
        .filter_map(|l| l["workload"].as_str())
        .collect();
    names.dedup();
    assert_eq!(names, all);
    assert!(names.contains(&"transfer-serial") && names.contains(&"batchswap-hot"));
    for l in &engines {
        assert_eq!(l["roots_match"], true, "{l}");
        assert_eq!(l["accounts"], 50);
        assert_eq!(l["txs"], 300);
        assert_eq!(l["block_size"], 100);
        assert_eq!(l["failed_txs"], 0);
        for field in [
            "threads",
            "seconds",
            "tps",
            "sequential_tps",
            "speedup",
            "cpu_cores_used",
        ] {
            assert!(l[field].is_number(), "{field} in {l}");
        }
    }
    let threads: Vec<_> = engines.iter().map(|l| l["threads"].clone()).collect();
    assert_eq!(threads[..2], [1, 2]);
    for l in lines.iter().filter(|l| l["workload"] == "sigverify") {
        assert!(l["efficiency"].is_number(), "{l}");
        assert!(l["rate"].as_f64().is_some_and(|r| r > 0.0), "{l}");
    }
}

#[test]
fn bench_table_is_human_readable() {
    let out = parabit(&TINY);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("transfer-uniform: 50 accounts, 300 txs in 3 blocks of 100"));
    assert!(stdout.contains("speedup"));
    assert_eq!(stdout.matches(" match").count(), 2, "{stdout}");
    assert!(!stdout.contains("DIFFER"));
}

#[test]
fn zero_threads_is_refused_clearly() {
    let mut args = TINY.to_vec();
    args[8] = "1,0";
    let out = parabit(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--threads") && stderr.contains("0"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn unknown_workload_is_refused_with_the_known_names() {
    let out = parabit(&["bench", "--workload", "nope"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(
        stderr.contains("transfer-uniform") && stderr.contains("all"),
        "{stderr}"
    );
}

#[test]
fn too_few_accounts_are_refused() {
    let out = parabit(&["bench", "--accounts", "1", "--txs", "10"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--accounts"), "{stderr}");
}
