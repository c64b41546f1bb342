//! `parabit load` against a real `parabit devnet` child: a JSON run whose every accepted
//! transaction commits with a measured latency, a second (table) run on the same chain that
//! reuses the funded accounts at their current nonces, and clear errors for an unreachable
//! node and bad arguments.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Kills the devnet when dropped (also on panic).
struct Devnet {
    child: Child,
    addr: String,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

/// POSTs `pb_chainInfo` and returns whether the node answered with a result.
fn chain_info_answers(addr: &str) -> bool {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"pb_chainInfo","params":[]}"#;
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.contains("\"result\"") && answer.contains("chain_id")
}

fn start_devnet(data_dir: &std::path::Path) -> Devnet {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_parabit"))
        .args(["devnet", "--data-dir"])
        .arg(data_dir)
        .args(["--rpc-addr", &addr])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => panic!("cannot start parabit devnet: {e}"),
    };
    let mut devnet = Devnet { child, addr };
    let start = Instant::now();
    while !chain_info_answers(&devnet.addr) {
        if let Ok(Some(status)) = devnet.child.try_wait() {
            panic!("parabit devnet exited early: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the devnet's RPC did not answer within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    devnet
}

fn load(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_parabit"))
        .arg("load")
        .args(args)
        .env_remove("PARABIT_RPC")
        .env_remove("PARABIT_LOAD_FUNDER_SECRET")
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!("cannot run parabit load: {e}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn num(v: &serde_json::Value, k: &str) -> f64 {
    match v[k].as_f64() {
        Some(x) => x,
        None => panic!("{k} is not a number in {v}"),
    }
}

#[test]
fn load_against_a_devnet_commits_everything_it_got_accepted() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let devnet = start_devnet(dir.path());
    let url = format!("http://{}", devnet.addr);

    let out = load(&[
        "--rpc",
        &url,
        "--tps",
        "200",
        "--duration",
        "3",
        "--accounts",
        "50",
        "--json",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one JSON line: {stdout}");
    let r: serde_json::Value = match serde_json::from_str(lines[0]) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {stdout}"),
    };
    assert_eq!(num(&r, "planned"), 600.0, "{r}");
    assert_eq!(num(&r, "submitted"), 600.0, "{r}");
    assert_eq!(num(&r, "accepted"), 600.0, "{r}");
    assert_eq!(num(&r, "accepted"), num(&r, "committed"), "{r}");
    assert_eq!(num(&r, "lost"), 0.0, "{r}");
    assert_eq!(num(&r, "rejected"), 0.0, "{r}");
    assert!(num(&r, "committed") > 0.0, "{r}");
    assert!(num(&r, "committed_tps") > 0.0, "{r}");
    let (p50, p90, p99, max) = (
        num(&r, "p50_ms"),
        num(&r, "p90_ms"),
        num(&r, "p99_ms"),
        num(&r, "max_ms"),
    );
    assert!(p99 > 0.0 && p50 <= p90 && p90 <= p99 && p99 <= max, "{r}");
    assert_eq!(num(&r, "accounts"), 50.0);
    assert_eq!(num(&r, "target_tps"), 200.0);
    assert_eq!(num(&r, "duration_s"), 3.0);

    // Again on the same chain: the accounts are funded already and their nonces moved on.
    let out = load(&[
        "--rpc",
        &url.replace("http://", "ws://"),
        "--tps",
        "100",
        "--duration",
        "1",
        "--accounts",
        "50",
    ]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("funding"), "no second funding: {stderr}");
    let row = |name: &str| -> u64 {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} row in {stdout}"))
    };
    assert_eq!(row("committed"), 100, "{stdout}");
    assert_eq!(row("lost"), 0, "{stdout}");
}

#[test]
fn unreachable_node_and_bad_arguments_are_clear_errors() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = load(&[
        "--rpc",
        &format!("http://{addr}"),
        "--tps",
        "10",
        "--duration",
        "1",
        "--rpc-timeout",
        "2",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot reach the node") && stderr.contains(&addr),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    for (args, word) in [
        (vec!["--tps", "0"], "--tps"),
        (vec!["--duration", "0"], "--duration"),
        (vec!["--accounts", "1"], "--accounts"),
        (vec!["--from", "mallory"], "mallory"),
        (vec!["--funder-secret", "zz"], "--funder-secret"),
    ] {
        let out = load(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(word), "{args:?}: {stderr}");
    }
}
