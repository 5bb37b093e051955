//! The lab's proxy as clients see it: `lab proxy up` puts a dbshift proxy in front of the
//! cluster; the downtime probe connects through it (TLS verified against the lab CA) while a
//! blue/green switchover and its rollback run through the switchover core, which holds clients
//! at the proxy (pause at the fence, switch at the redirect, resume after the promotion):
//! no failed attempt, no lost write; with two proxies in front of the cluster (`lab proxy up
//! --count 2`), the probe through one for the switch and through the other for the rollback.
//! `lab down` stops the proxies with the servers. Run with
//! `make test`.

mod common;

use std::process::{Command, Stdio};

use common::{dbshift, json, text, CliLab};
use serde_json::Value;

fn proxy_port(dir: &std::path::Path) -> u64 {
    let st = json(&dbshift(dir, &["lab", "status", "-o", "json"]));
    st["clusters"][0]["proxy"]["port"]
        .as_u64()
        .unwrap_or_else(|| panic!("no proxy in {st}"))
}

/// A probe through the proxy, in the background, for `secs` seconds.
/// A probe of `secs` seconds through a proxy; gives it and its report directory.
fn probe(
    dir: &std::path::Path,
    port: u64,
    password: &str,
    secs: u32,
) -> (std::process::Child, std::path::PathBuf) {
    let reports = dir
        .with_file_name(format!("probe-{}", std::process::id()))
        .join(format!(
            "{secs}-{}",
            std::time::UNIX_EPOCH.elapsed().unwrap().as_millis()
        ));
    let child = Command::new(env!("CARGO_BIN_EXE_dbshift"))
        .arg("--dir")
        .arg(dir)
        .args([
            "probe",
            "--target",
            &format!("mysql://app@127.0.0.1:{port}/dbshift"),
            "--tls-ca",
            dir.join("tls/trust.pem").to_str().unwrap(),
            "--rate",
            "100",
            "--duration",
            &format!("{secs}s"),
            "-o",
            "json",
        ])
        .arg("--report-dir")
        .arg(&reports)
        .env("DBSHIFT_PROBE_PASSWORD", password)
        .env_remove("DBSHIFT_LAB_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, reports)
}

fn assert_clean(summary: &Value) {
    for kind in ["write", "read", "connect"] {
        let k = &summary["kinds"][kind];
        assert!(k["attempted"].as_u64().unwrap() > 0, "{kind}: {summary}");
        assert_eq!(k["failed"], 0, "{kind} failed through the proxy: {summary}");
    }
    assert_eq!(
        summary["lost_writes"].as_array().unwrap().len(),
        0,
        "{summary}"
    );
    assert!(
        summary["outages"].as_array().unwrap().is_empty(),
        "{summary}"
    );
}

#[test]
fn clients_behind_the_lab_proxy_see_no_error_through_a_bluegreen_switch_and_back() {
    let lab = CliLab::up(1, 1);
    let dir = &lab.dir;
    let up = json(&dbshift(dir, &["lab", "proxy", "up", "-o", "json"]));
    assert_eq!(up[0]["cluster"], "lab-1");
    let port = proxy_port(dir);
    let st = json(&dbshift(dir, &["lab", "status", "-o", "json"]));
    let password = st["users"]["app"]["password"].as_str().unwrap().to_string();
    let again = json(&dbshift(dir, &["lab", "proxy", "up", "-o", "json"]));
    assert_eq!(again, up, "proxy up is idempotent");
    // A second proxy in front of the same cluster (as behind a load balancer); the first one
    // stays as it was. A count out of range is refused, changing nothing.
    let bad = dbshift(dir, &["lab", "proxy", "up", "--count", "9"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let two = json(&dbshift(
        dir,
        &["lab", "proxy", "up", "--count", "2", "-o", "json"],
    ));
    assert_eq!(two.as_array().unwrap().len(), 2, "{two}");
    assert_eq!(two[0], up[0], "the first proxy is the one that ran");
    let st = json(&dbshift(dir, &["lab", "status", "-o", "json"]));
    let ports: Vec<u64> = st["clusters"][0]["proxies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports.len(), 2, "{st}");
    assert_eq!(ports[0], port);

    let o = dbshift(
        dir,
        &[
            "bluegreen",
            "create",
            "--source",
            "lab-1",
            "--replicas",
            "0",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));

    // The switch through the first proxy, the rollback through the second: both follow.
    for (verb, port) in [("switchover", ports[0]), ("rollback", ports[1])] {
        let (p, reports) = probe(dir, port, &password, 6);
        // Switch once the probe is writing (its attempts file has lines), not after a guess.
        let attempts = reports.join("attempts.jsonl");
        dbshift_testkit::eventually_blocking(
            std::time::Duration::from_secs(30),
            "the probe writing through the proxy",
            || {
                let n = std::fs::read_to_string(&attempts)
                    .map(|s| s.lines().count())
                    .unwrap_or(0);
                dbshift_testkit::holds(n >= 50, n)
            },
        );
        let o = dbshift(dir, &["bluegreen", verb, "--yes"]);
        assert!(o.status.success(), "{verb}: {}", text(&o));
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "probe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_clean(&summary);
    }

    // The proxy runs as a process of the lab: `lab down` stops it.
    let down = json(&dbshift(dir, &["lab", "down", "-o", "json"]));
    assert!(
        down["stopped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("proxy")),
        "{down}"
    );
    for port in ports {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err());
    }
}
