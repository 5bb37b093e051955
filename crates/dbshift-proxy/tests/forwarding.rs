//! The proxy against real servers: forwarding (queries, transactions, large results, prepared
//! statements, errors, multi-statements, TLS both ways), authentication (wrong password,
//! unsupported plugin), a transaction left open past a pause's bound, and the admin API.
//!
//! Run with `cargo test -p dbshift-proxy --test forwarding` (needs `mariadbd`; `make test`
//! installs it). One lab (a writer and a replica) serves every test of this binary; each test
//! starts its own proxy in front of the writer and uses its own tables.

use std::time::Duration;

use dbshift_db::server::TlsOptions;
use dbshift_db::ConnectOptions;
use dbshift_provider::local::Lab;
use dbshift_proxy::{AuthSource, Backend, ProxyConfig, ProxyHandle};
use dbshift_testkit::TestLab;
use mysql_async::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

mod common;

use common::{start_proxy, writer_port};

async fn lab() -> &'static Lab {
    static LAB: OnceCell<TestLab> = OnceCell::const_new();
    LAB.get_or_init(|| TestLab::start(1, 1)).await.lab()
}

fn app_opts(lab: &Lab, proxy: &ProxyHandle, tls: bool) -> mysql_async::Opts {
    let app = &lab.state().users.app;
    let mut o = ConnectOptions::new("127.0.0.1", proxy.local_addr().port(), app.user.clone())
        .password(app.password.clone())
        .database("app");
    if tls {
        o = o.tls(TlsOptions {
            ca_path: lab.ca_bundle(),
            verify_identity: true,
        });
    }
    o.to_opts()
}

async fn writer_server_id(lab: &Lab) -> u32 {
    let w = lab.state().clusters[0].writer.clone();
    lab.state().instance(&w).expect("the writer").server_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_transactions_results_statements_errors() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    for tls in [true, false] {
        let mut c = mysql_async::Conn::new(app_opts(lab, &proxy, tls))
            .await
            .expect("a client connects through the proxy");
        let sid: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
        assert_eq!(sid, writer_server_id(lab).await);
        let table = if tls { "fwd_tls" } else { "fwd_plain" };
        c.query_drop(format!(
            "CREATE OR REPLACE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(64))"
        ))
        .await
        .unwrap();

        // A committed and a rolled-back transaction.
        c.query_drop("START TRANSACTION").await.unwrap();
        c.exec_drop(format!("INSERT INTO {table} VALUES (?, ?)"), (1, "one"))
            .await
            .unwrap();
        c.query_drop("COMMIT").await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop(format!("INSERT INTO {table} VALUES (2, 'two')"))
            .await
            .unwrap();
        c.query_drop("ROLLBACK").await.unwrap();
        let n: u64 = c
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);

        // Many rows, and one large row.
        let rows: Vec<u64> = c.query("SELECT seq FROM seq_1_to_20000").await.unwrap();
        assert_eq!(rows.len(), 20000);
        assert_eq!(rows.iter().sum::<u64>(), 20000 * 20001 / 2);
        let big: String = c
            .query_first("SELECT REPEAT('x', 5000000)")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(big.len(), 5_000_000);

        // A prepared statement with parameters, executed several times.
        let st = c
            .prep(format!("SELECT v, ? + id FROM {table} WHERE id = ?"))
            .await
            .unwrap();
        for k in 0..5i64 {
            let r: Option<(String, i64)> = c.exec_first(&st, (k, 1)).await.unwrap();
            assert_eq!(r, Some(("one".to_string(), k + 1)));
        }
        let many: Vec<(u64, String)> = c
            .exec(
                "SELECT seq, CONCAT('r', seq) FROM seq_1_to_3000 WHERE seq > ?",
                (0,),
            )
            .await
            .unwrap();
        assert_eq!(many.len(), 3000);
        c.close(st).await.unwrap();

        // Errors come through and the session goes on.
        let e = c
            .query_drop("SELECT * FROM no_such_table")
            .await
            .expect_err("an unknown table is an error");
        match e {
            mysql_async::Error::Server(se) => assert_eq!(se.code, 1146),
            other => panic!("expected a server error, got {other}"),
        }
        let e = c.exec_drop("SELECT nope FROM dual WHERE ? = 1", (1,)).await;
        assert!(e.is_err());

        // Multi-statements: every result set arrives.
        let mut r = c.query_iter("SELECT 1; SELECT 2, 3; DO 1").await.unwrap();
        let first: Vec<u8> = r.collect().await.unwrap();
        let second: Vec<(u8, u8)> = r.collect().await.unwrap();
        drop(r);
        assert_eq!((first, second), (vec![1], vec![(2, 3)]));

        // COM_INIT_DB, COM_PING and session variables.
        c.query_drop("USE dbshift").await.unwrap();
        let db: String = c.query_first("SELECT DATABASE()").await.unwrap().unwrap();
        assert_eq!(db, "dbshift");
        c.ping().await.unwrap();
        c.disconnect().await.unwrap();
    }

    // A pool returns connections with COM_RESET_CONNECTION.
    let pool = mysql_async::Pool::new(app_opts(lab, &proxy, true));
    for _ in 0..3 {
        let mut c = pool.get_conn().await.unwrap();
        let one: u8 = c.query_first("SELECT 1").await.unwrap().unwrap();
        assert_eq!(one, 1);
        c.query_drop("SET @x = 1").await.unwrap();
    }
    pool.disconnect().await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unsupported_plugin_are_refused() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let app = &lab.state().users.app;
    let bad = ConnectOptions::new("127.0.0.1", proxy.local_addr().port(), app.user.clone())
        .password("not-the-password")
        .to_opts();
    match mysql_async::Conn::new(bad).await {
        Err(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 1045);
            assert!(
                e.message.starts_with(&format!(
                    "Access denied for user '{}'@'127.0.0.1'",
                    app.user
                )),
                "{}",
                e.message
            );
        }
        Err(e) => panic!("expected Access denied, got {e}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    let unknown = ConnectOptions::new("127.0.0.1", proxy.local_addr().port(), "nobody")
        .password("x")
        .to_opts();
    match mysql_async::Conn::new(unknown).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1045),
        other => panic!("an unknown user must be denied: {:?}", other.map(|_| ())),
    }

    // A user with a plugin the proxy can neither check nor answer (ed25519 is supported now:
    // tests/auth.rs).
    let mut admin = lab
        .connect_admin(&lab.state().clusters[0].writer)
        .await
        .unwrap();
    admin
        .exec_sql("CREATE OR REPLACE USER 'edu'@'127.0.0.1' IDENTIFIED VIA unix_socket")
        .await
        .unwrap();
    let plugin = "unix_socket";
    let ed = ConnectOptions::new("127.0.0.1", proxy.local_addr().port(), "edu")
        .password("pw")
        .to_opts();
    match mysql_async::Conn::new(ed).await {
        Err(mysql_async::Error::Server(e)) => {
            assert!(e.message.contains(plugin), "{}", e.message);
            assert!(e.message.contains("dbshift proxy"), "{}", e.message);
        }
        other => panic!(
            "expected a refusal naming {plugin}: {:?}",
            other.map(|_| ())
        ),
    }
    // Garbage instead of a handshake response ends that connection only.
    let mut raw = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    let mut greeting = [0u8; 256];
    let _ = raw.read(&mut greeting).await.unwrap();
    raw.write_all(b"\x05\x00\x00\x01garbage-garbage")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    let mut ok = mysql_async::Conn::new(app_opts(lab, &proxy, true))
        .await
        .unwrap();
    ok.ping().await.unwrap();
    ok.disconnect().await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transaction_past_the_bound_is_ended_clearly_and_idle_ones_are_held() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let mut open = mysql_async::Conn::new(app_opts(lab, &proxy, true))
        .await
        .unwrap();
    let mut idle = mysql_async::Conn::new(app_opts(lab, &proxy, true))
        .await
        .unwrap();
    open.query_drop("CREATE OR REPLACE TABLE txn_bound (id INT PRIMARY KEY)")
        .await
        .unwrap();
    open.query_drop("BEGIN").await.unwrap();
    open.query_drop("INSERT INTO txn_bound VALUES (1)")
        .await
        .unwrap();

    let report = proxy.pause(Duration::from_millis(300)).await.unwrap();
    assert_eq!(report.ended_in_transaction, 1, "{report:?}");

    // While paused, the idle session's next command is held, not answered.
    let held = tokio::spawn(async move {
        let v: u8 = idle.query_first("SELECT 7").await.unwrap().unwrap();
        (v, idle)
    });
    let status = dbshift_testkit::eventually!(Duration::from_secs(5), "the command to be held", {
        let s = proxy.status();
        s.sessions.iter().any(|x| x.held).then_some(s)
    });
    assert!(status.paused);
    assert!(!held.is_finished());

    let e = open
        .query_drop("INSERT INTO txn_bound VALUES (2)")
        .await
        .expect_err("the ended session reports an error");
    assert!(
        e.to_string().contains("your open transaction was ended"),
        "unclear error: {e}"
    );
    let released = proxy.resume().await;
    assert!(released.released >= 1);
    let (v, idle) = held.await.unwrap();
    assert_eq!(v, 7);
    // The open transaction was rolled back by the server when its connection closed.
    let mut idle = idle;
    let n: u64 = dbshift_testkit::eventually!(Duration::from_secs(5), "the rollback", {
        let n: u64 = idle
            .query_first("SELECT COUNT(*) FROM txn_bound")
            .await
            .unwrap()
            .unwrap();
        (n == 0).then_some(n)
    });
    assert_eq!(n, 0);
    idle.disconnect().await.unwrap();
    proxy.shutdown().await;
}

async fn http(addr: std::net::SocketAddr, req: String) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_requires_the_token_and_drives_the_proxy() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let token = "0123456789abcdef-token".to_string();
    assert!(
        dbshift_proxy::serve_admin(proxy.clone(), "0.0.0.0:0".parse().unwrap(), token.clone())
            .await
            .is_err(),
        "a non-loopback admin address is refused"
    );
    let admin =
        dbshift_proxy::serve_admin(proxy.clone(), "127.0.0.1:0".parse().unwrap(), token.clone())
            .await
            .unwrap();
    let a = admin.local_addr();
    let (code, _) = http(a, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n".into()).await;
    assert_eq!(code, 401);
    let (code, _) = http(
        a,
        "POST /pause HTTP/1.1\r\nAuthorization: Bearer wrong-token-0000000\r\n\r\n".into(),
    )
    .await;
    assert_eq!(code, 401);
    assert!(
        !proxy.status().paused,
        "an unauthorized pause changed nothing"
    );

    let mut c = mysql_async::Conn::new(app_opts(lab, &proxy, true))
        .await
        .unwrap();
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (code, body) = http(a, format!("GET /status HTTP/1.1\r\n{auth}\r\n")).await;
    assert_eq!(code, 200);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["sessions"].as_array().map(|s| s.len()), Some(1));

    let (code, body) = http(
        a,
        format!("POST /pause?bound_ms=500 HTTP/1.1\r\n{auth}\r\n"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(
        a,
        format!("POST /switch HTTP/1.1\r\n{auth}Content-Length: 9\r\n\r\nnot json!"),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let target = serde_json::json!({"host": "127.0.0.1", "port": writer_port(lab)}).to_string();
    let (code, body) = http(
        a,
        format!(
            "POST /switch HTTP/1.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{target}",
            target.len()
        ),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let sw: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sw["moved"], 1, "{body}");
    let (code, _) = http(a, format!("POST /resume HTTP/1.1\r\n{auth}\r\n")).await;
    assert_eq!(code, 200);

    // The session moved with its variables.
    let mode: String = c
        .query_first("SELECT @@SESSION.sql_mode")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode, "ANSI_QUOTES");

    let (code, metrics) = http(a, format!("GET /metrics HTTP/1.1\r\n{auth}\r\n")).await;
    assert_eq!(code, 200);
    for name in [
        "dbshift_proxy_connections_current 1",
        "dbshift_proxy_commands_total",
        "dbshift_proxy_held_seconds_count",
        "dbshift_proxy_errors_sent_total",
        "dbshift_proxy_switches_total 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    c.disconnect().await.unwrap();
    admin.stop();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_is_down_or_hung_gives_a_clear_error_not_a_hang() {
    let lab = lab().await;
    let admin = &lab.state().users.admin;
    let auth = AuthSource::Admin {
        user: admin.user.clone(),
        password: admin.password.clone(),
    };
    // Down at start: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Backend::new("127.0.0.1", port),
        auth.clone(),
    );
    cfg.backend_tls = Some(lab.ca_bundle());
    cfg.connect_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let err = dbshift_proxy::start(cfg)
        .await
        .err()
        .expect("no backend, no proxy");
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");

    // Hung after start: the replica (no other test uses it) stopped with SIGSTOP.
    let replica = lab
        .state()
        .instances
        .iter()
        .find(|i| i.id != lab.state().clusters[0].writer)
        .unwrap()
        .clone();
    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Backend::new("127.0.0.1", replica.port),
        auth,
    );
    cfg.backend_tls = Some(lab.ca_bundle());
    cfg.connect_timeout = Duration::from_secs(1);
    let proxy = dbshift_proxy::start(cfg).await.unwrap();
    // The replica's server, resumed below.
    let pid = dbshift_testkit::pid_of(lab, &replica.id);
    dbshift_testkit::signal(pid, libc::SIGSTOP);
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        mysql_async::Conn::new(app_opts(lab, &proxy, false)),
    )
    .await;
    dbshift_testkit::signal(pid, libc::SIGCONT);
    let r = r.expect("the client got an answer, not a hang");
    let Err(err) = r else {
        panic!("a hung writer cannot let anyone in");
    };
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_hashes_are_cached_and_a_changed_password_is_read_again() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let w = lab.state().clusters[0].writer.clone();
    let mut admin = lab.connect_admin(&w).await.unwrap();
    admin
        .exec_sql(
            "CREATE USER IF NOT EXISTS 'cachet'@'127.0.0.1' IDENTIFIED BY 'first-pass'; \
             GRANT SELECT ON app.* TO 'cachet'@'127.0.0.1'",
        )
        .await
        .unwrap();
    let lookups = |p: &ProxyHandle| -> u64 {
        p.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix("dbshift_proxy_auth_lookups_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("the lookups counter")
    };
    let login = |password: &str| {
        let o = ConnectOptions::new("127.0.0.1", proxy.local_addr().port(), "cachet")
            .password(password)
            .to_opts();
        async move {
            let c = mysql_async::Conn::new(o).await?;
            c.disconnect().await
        }
    };
    login("first-pass").await.unwrap();
    login("first-pass").await.unwrap();
    login("first-pass").await.unwrap();
    assert_eq!(lookups(&proxy), 1, "three logins, one lookup");

    admin
        .exec_sql("ALTER USER 'cachet'@'127.0.0.1' IDENTIFIED BY 'second-pass'")
        .await
        .unwrap();
    login("second-pass").await.unwrap();
    assert_eq!(lookups(&proxy), 2, "the cached hash refused it: read again");
    let err = login("first-pass").await.unwrap_err();
    assert!(err.to_string().contains("Access denied"), "{err}");
    admin
        .exec_sql("DROP USER 'cachet'@'127.0.0.1'")
        .await
        .unwrap();
    admin.close().await;
    proxy.shutdown().await;
}

/// A CA and an admin API certificate it issued for 127.0.0.1 and localhost, PEM files in
/// `dir`: (ca.pem, cert.pem, key.pem); and a second, unrelated CA (other-ca.pem).
fn admin_tls_files(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        let cert = p.self_signed(&key).unwrap();
        (p, key, cert)
    };
    let (ca_params, ca_key, ca_cert) = ca("admin test CA");
    let (_, _, other) = ca("another CA");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// The admin API over TLS (on 127.0.0.1: this machine has no other address; TLS is what lets
/// it listen elsewhere): a caller with the CA that issued its certificate drives it, one
/// with another CA is refused by the handshake, plain HTTP gets no answer, the token is
/// still required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_over_tls_verifies_against_the_ca_and_requires_the_token() {
    use dbshift_ops::proxy_admin::{ProxyAdmin, ProxyAdminError};
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let dir = std::env::temp_dir().join(format!("dbshift-admin-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    admin_tls_files(&dir);
    let tls = dbshift_proxy::AdminTls {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let token = "0123456789abcdef-token".to_string();
    let e = dbshift_proxy::serve_admin_tls(
        proxy.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "short".into(),
        &tls,
    )
    .await
    .err()
    .expect("a short token is refused");
    assert!(e.to_string().contains("at least 16"), "{e}");
    let bad = dbshift_proxy::AdminTls {
        cert: dir.join("missing.pem"),
        key: dir.join("key.pem"),
    };
    let e = dbshift_proxy::serve_admin_tls(
        proxy.clone(),
        "127.0.0.1:0".parse().unwrap(),
        token.clone(),
        &bad,
    )
    .await
    .err()
    .expect("a missing certificate is refused");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    let admin = dbshift_proxy::serve_admin_tls(
        proxy.clone(),
        "127.0.0.1:0".parse().unwrap(),
        token.clone(),
        &tls,
    )
    .await
    .unwrap();
    assert!(admin.is_tls());
    let port = admin.local_addr().port();
    let t = Duration::from_secs(10);

    // With the CA: the routes work, by IP address and by name.
    for host in ["127.0.0.1", "localhost"] {
        let a = ProxyAdmin::with_ca(host, port, &dir.join("ca.pem"), token.clone(), t).unwrap();
        let st = a.status().await.unwrap();
        assert_eq!(st["paused"], false, "{st}");
    }
    let endpoint = dbshift_provider::ProxyEndpoint {
        cluster: "lab-1".into(),
        listen: dbshift_provider::Endpoint {
            host: "127.0.0.1".into(),
            port: proxy.local_addr().port(),
        },
        admin: dbshift_provider::Endpoint {
            host: "127.0.0.1".into(),
            port,
        },
        token: token.clone(),
        admin_ca: Some(dir.join("ca.pem")),
    };
    let a = ProxyAdmin::of(&endpoint, t).unwrap();
    assert!(a.is_tls());
    let paused = a.pause(Duration::from_millis(500)).await.unwrap();
    assert!(proxy.status().paused, "{paused}");
    let sw = a.switch("127.0.0.1", writer_port(lab)).await.unwrap();
    assert!(sw.is_object(), "{sw}");
    a.resume().await.unwrap();
    assert!(!proxy.status().paused);

    // Another CA: the handshake fails, nothing is asked.
    let other = ProxyAdmin::with_ca(
        "127.0.0.1",
        port,
        &dir.join("other-ca.pem"),
        token.clone(),
        t,
    )
    .unwrap();
    let e = other
        .pause(Duration::from_millis(500))
        .await
        .expect_err("a certificate from another CA is refused");
    assert!(matches!(e, ProxyAdminError::Io { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(!proxy.status().paused, "a refused caller changed nothing");

    // The right CA, the wrong token: 401.
    let wrong = ProxyAdmin::with_ca(
        "127.0.0.1",
        port,
        &dir.join("ca.pem"),
        "wrong-token-0000000".into(),
        t,
    )
    .unwrap();
    match wrong.pause(Duration::from_millis(500)).await {
        Err(ProxyAdminError::Status { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    assert!(!proxy.status().paused);

    // Plain HTTP to the TLS port: no HTTP answer.
    let plain = ProxyAdmin::new(admin.local_addr(), token.clone(), Duration::from_secs(3));
    assert!(plain.status().await.is_err());

    admin.stop();
    proxy.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
