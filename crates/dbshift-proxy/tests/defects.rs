//! The proxy's defects that changed data, availability or an account's rules, and a command a
//! real client sends that it refused (issue 16), each run once directly against the server and
//! once through the proxy, the two required to agree:
//! - a closed prepared statement executed again: the server's "Unknown prepared statement
//!   handler", never another statement (the proxy used to send 0xFFFFFFFF, which MariaDB runs
//!   as "the statement prepared last": a closed SELECT ran an INSERT);
//! - `KILL QUERY <the id the greeting gave>` from a second connection: the first one's query is
//!   interrupted, no one else's (the proxy used to hand out its own counter and forward `KILL`
//!   unchanged, killing whatever server thread had that number); an id of no session of the
//!   proxy is refused, not forwarded;
//! - an account created `REQUIRE SSL` cannot log in over a plaintext client leg (the proxy's own
//!   TLS to the server used to satisfy the rule for it), and logs in over TLS;
//! - `mariadb-admin flush-logs` (COM_REFRESH) passes through instead of being refused;
//! - (the cursor execute that fails after its column definitions is a unit test of the
//!   response state machine, `response.rs`.)
//!
//! Run with `cargo test -p dbshift-proxy --test defects` (needs `mariadbd`; `make test`
//! installs it). One lab (a writer and a replica) for the whole binary.

use std::time::Duration;

use dbshift_db::server::TlsOptions;
use dbshift_db::ConnectOptions;
use dbshift_provider::local::Lab;
use dbshift_testkit::TestLab;
use mysql_async::prelude::*;
use tokio::sync::OnceCell;

mod common;

use common::{start_proxy, writer_port};

async fn lab() -> &'static Lab {
    static LAB: OnceCell<TestLab> = OnceCell::const_new();
    LAB.get_or_init(|| TestLab::start(1, 1)).await.lab()
}

/// Options for `user` at `port` (the server's or the proxy's), over TLS or not.
fn opts(lab: &Lab, port: u16, user: &str, password: &str, tls: bool) -> mysql_async::Opts {
    let mut o = ConnectOptions::new("127.0.0.1", port, user)
        .password(password)
        .database("app");
    if tls {
        o = o.tls(TlsOptions {
            ca_path: lab.ca_bundle(),
            verify_identity: true,
        });
    }
    o.to_opts()
}

fn app(lab: &Lab, port: u16) -> mysql_async::Opts {
    let app = &lab.state().users.app;
    opts(lab, port, &app.user, &app.password, true)
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// A closed statement executed again: 1243 and nothing run, directly and through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_statement_is_unknown_and_never_runs_another() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    for (how, port) in [
        ("directly", writer_port(lab)),
        ("through the proxy", proxy.local_addr().port()),
    ] {
        let mut c = mysql_async::Conn::new(app(lab, port)).await.unwrap();
        let table = if port == writer_port(lab) {
            "closed_direct"
        } else {
            "closed_proxy"
        };
        c.query_drop(format!("CREATE OR REPLACE TABLE {table} (id INT)"))
            .await
            .unwrap();
        let select = c.prep("SELECT 1").await.unwrap();
        let insert = c
            .prep(format!("INSERT INTO {table} VALUES (1)"))
            .await
            .unwrap();
        c.close(select.clone()).await.unwrap();
        let e = c
            .exec_drop(&select, ())
            .await
            .expect_err("a closed statement does not run");
        assert_eq!(server_code(&e), Some(1243), "{how}: {e}");
        let n: u64 = c
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "{how}: the INSERT prepared last must not have run");
        // The session goes on: the open statement still runs.
        c.exec_drop(&insert, ()).await.unwrap();
        c.disconnect().await.unwrap();
    }
    proxy.shutdown().await;
}

/// `KILL QUERY` of the id a connection was greeted with interrupts that connection's query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_of_the_greeted_id_interrupts_that_session_only() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    for (how, port) in [
        ("directly", writer_port(lab)),
        ("through the proxy", proxy.local_addr().port()),
    ] {
        let mut victim = mysql_async::Conn::new(app(lab, port)).await.unwrap();
        let mut bystander = mysql_async::Conn::new(app(lab, port)).await.unwrap();
        let mut killer = mysql_async::Conn::new(app(lab, port)).await.unwrap();
        let id = victim.id();
        let sleeping = tokio::spawn(async move {
            let r: mysql_async::Result<Option<u64>> = victim.query_first("SELECT SLEEP(30)").await;
            (r, victim)
        });
        let quiet = tokio::spawn(async move {
            let r: mysql_async::Result<Option<u64>> =
                bystander.query_first("SELECT SLEEP(2)").await;
            r
        });
        // Let the victim's query start: KILL QUERY of an idle session interrupts nothing.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n: u64 = killer
                .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(30)'")
                .await
                .unwrap()
                .unwrap();
            if n > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{how}: the query never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        killer
            .query_drop(format!("KILL QUERY {id}"))
            .await
            .unwrap_or_else(|e| panic!("{how}: KILL QUERY {id}: {e}"));
        let (r, mut victim) = tokio::time::timeout(Duration::from_secs(20), sleeping)
            .await
            .expect("the query ends once killed")
            .unwrap();
        // Interrupted: 1317, or SLEEP's own answer to a kill, 1.
        match r {
            Err(e) => assert_eq!(server_code(&e), Some(1317), "{how}: {e}"),
            Ok(v) => assert_eq!(v, Some(1), "{how}: SLEEP returns 1 when interrupted"),
        }
        assert_eq!(
            quiet.await.unwrap().unwrap(),
            Some(0),
            "{how}: the bystander's query ran to its end"
        );
        // The victim's connection lives on (KILL QUERY, not KILL CONNECTION).
        let one: u64 = victim.query_first("SELECT 1").await.unwrap().unwrap();
        assert_eq!(one, 1);
        victim.disconnect().await.unwrap();
        killer.disconnect().await.unwrap();
    }
    // An id no session of the proxy has is refused, not forwarded to some server thread.
    let mut c = mysql_async::Conn::new(app(lab, proxy.local_addr().port()))
        .await
        .unwrap();
    let e = c.query_drop("KILL QUERY 1").await.expect_err("refused");
    assert_eq!(server_code(&e), Some(1094), "{e}");
    c.disconnect().await.unwrap();
    proxy.shutdown().await;
}

/// An account created `REQUIRE SSL`: refused over a plaintext leg, accepted over TLS, the same
/// directly and through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_ssl_is_judged_on_the_clients_leg() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let mut admin = lab
        .connect_admin(&lab.state().clusters[0].writer)
        .await
        .unwrap();
    admin
        .exec_sql(
            "CREATE OR REPLACE USER 'tls_only'@'%' IDENTIFIED VIA mysql_native_password \
             USING PASSWORD('tls-only-pw') REQUIRE SSL",
        )
        .await
        .unwrap();
    admin
        .exec_sql("GRANT SELECT ON app.* TO 'tls_only'@'%'")
        .await
        .unwrap();
    admin.close().await;
    for (how, port) in [
        ("directly", writer_port(lab)),
        ("through the proxy", proxy.local_addr().port()),
    ] {
        let e = mysql_async::Conn::new(opts(lab, port, "tls_only", "tls-only-pw", false))
            .await
            .expect_err("a plaintext leg is refused");
        assert_eq!(server_code(&e), Some(1045), "{how}: {e}");
        let mut c = mysql_async::Conn::new(opts(lab, port, "tls_only", "tls-only-pw", true))
            .await
            .unwrap_or_else(|e| panic!("{how}: over TLS: {e}"));
        let one: u64 = c.query_first("SELECT 1").await.unwrap().unwrap();
        assert_eq!(one, 1);
        c.disconnect().await.unwrap();
    }
    proxy.shutdown().await;
}

/// COM_REFRESH, as `mariadb-admin flush-logs` sends it (a client no one on the project wrote):
/// done directly and through the proxy alike (the proxy used to refuse the command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn com_refresh_from_mariadb_admin_passes_through() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let admin = lab.state().users.admin.clone();
    for (how, port) in [
        ("directly", writer_port(lab)),
        ("through the proxy", proxy.local_addr().port()),
    ] {
        let out = tokio::process::Command::new("mariadb-admin")
            .args(["--protocol=tcp", "-h127.0.0.1"])
            .arg(format!("-P{port}"))
            .arg(format!("-u{}", admin.user))
            .arg(format!("--ssl-ca={}", lab.ca_bundle().display()))
            .arg("flush-logs")
            .env("MYSQL_PWD", &admin.password)
            .output()
            .await
            .expect("mariadb-admin runs");
        assert!(
            out.status.success(),
            "{how}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    proxy.shutdown().await;
}

/// The session state information a client tracking state gets: what its own settings produce
/// (the server's defaults, then what it sets), the same directly and through the proxy, which
/// itself tracks every variable and filters (it used to show its own tracking to clients).
/// Connectors do not ask for session tracking: a raw client does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tracking_is_what_the_client_asked_for() {
    use mysql_common::constants::CapabilityFlags;
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let app = lab.state().users.app.clone();
    let mut seen = Vec::new();
    for port in [writer_port(lab), proxy.local_addr().port()] {
        let mut c = common::raw::RawConn::connect(
            port,
            &app.user,
            &app.password,
            Some("app"),
            CapabilityFlags::CLIENT_SESSION_TRACK,
        )
        .await;
        assert!(c.caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK));
        let mut saw = vec![(
            "greeting status",
            vec![(0u8, c.greeting_status.to_le_bytes().to_vec())],
        )];
        for sql in [
            "SET time_zone = '+02:00', sql_mode = 'ANSI'",
            "SET @u = 1",
            "SET SESSION session_track_system_variables = 'sql_mode', session_track_schema = OFF",
            "SET time_zone = '+03:00', sql_mode = 'TRADITIONAL'",
            "USE information_schema",
            "SET SESSION session_track_state_change = ON",
            "SET @v = 2",
            "SET SESSION session_track_schema = ON",
            "USE app",
        ] {
            let ok = c.query_ok(sql).await;
            let ok = c.ok(&ok);
            let entries: Vec<(u8, Vec<u8>)> = ok
                .session_state_info()
                .unwrap()
                .iter()
                .map(|i| (i.data_type() as u8, i.data_ref().to_vec()))
                .collect();
            saw.push((sql, entries));
        }
        c.quit().await;
        seen.push(saw);
    }
    assert_eq!(
        seen[0], seen[1],
        "directly (left) and through the proxy (right)"
    );
    // Not vacuous: the defaults report time_zone and the schema; sql_mode once asked for.
    let has = |i: usize, what: &[u8]| {
        seen[0][i]
            .1
            .iter()
            .any(|(_, d)| d.windows(what.len()).any(|w| w == what))
    };
    assert!(
        has(1, b"time_zone") && !has(1, b"sql_mode"),
        "{:?}",
        seen[0][1]
    );
    assert!(
        has(4, b"sql_mode") && !has(4, b"time_zone"),
        "{:?}",
        seen[0][4]
    );
    assert!(
        seen[0][5].1.is_empty(),
        "schema tracking off: {:?}",
        seen[0][5]
    );
    assert!(has(9, b"app"), "{:?}", seen[0][9]);
    proxy.shutdown().await;
}

/// Garbage from clients, before and after login: every connection is answered or closed within
/// a bound (no hang), the proxy keeps serving, and no session is left behind once the clients
/// are gone. Deterministic (a fixed seed), a few hundred cases; the parsers' own property tests
/// are `tests/parsers.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_clients_never_hangs_the_proxy() {
    use common::raw::RawConn;
    use mysql_common::constants::CapabilityFlags;
    use rand::{Rng, SeedableRng};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let port = proxy.local_addr().port();
    let app = lab.state().users.app.clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let bound = Duration::from_secs(10);
    // Read until the peer closes or a ping's OK comes back; panics past the bound.
    async fn settle(stream: &mut tokio::net::TcpStream, bound: Duration, what: &str) {
        let mut buf = vec![0u8; 1 << 16];
        let deadline = tokio::time::Instant::now() + bound;
        let mut seen = Vec::new();
        loop {
            let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer and no close within {bound:?}"));
            match n {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            // The ping's answer: an OK packet with sequence 1 (07 00 00 01 00 00 00 ..).
            if seen.windows(5).any(|w| w == [7, 0, 0, 1, 0]) {
                return;
            }
        }
    }
    // What the server counts as handshakes broken off (towards `max_connect_errors`, which
    // blocks a host): the proxy's backend connections opened for clients that never log in
    // must not count (they are settled as completed logins).
    async fn aborted(lab: &Lab) -> u64 {
        let mut admin = lab
            .connect_admin(&lab.state().clusters[0].writer)
            .await
            .unwrap();
        let rows = admin
            .query_rows("SHOW GLOBAL STATUS LIKE 'Aborted_connects'")
            .await
            .unwrap();
        admin.close().await;
        rows[0][1].1.as_deref().unwrap_or("0").parse().unwrap()
    }
    let aborted_before = aborted(lab).await;
    // Before login: a random handshake response.
    for case in 0..100 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut greeting = [0u8; 4];
        s.read_exact(&mut greeting).await.unwrap();
        let len = u32::from_le_bytes([greeting[0], greeting[1], greeting[2], 0]) as usize;
        let mut rest = vec![0u8; len];
        s.read_exact(&mut rest).await.unwrap();
        let n = rng.random_range(0..120);
        let mut payload: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        if case % 2 == 0 && payload.len() >= 4 {
            // Often a plausible head: protocol 4.1 and friends.
            payload[..4].copy_from_slice(
                &(0x000A_A285u32 | rng.random::<u32>() & 0x0100_0000).to_le_bytes(),
            );
        }
        let mut pkt = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        pkt.push(1);
        pkt.extend_from_slice(&payload);
        s.write_all(&pkt).await.unwrap();
        settle(&mut s, bound, &format!("handshake case {case}")).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let grew = aborted(lab).await - aborted_before;
        if grew <= 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{grew} of 100 abandoned logins counted as broken handshakes on the server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // After login: a random command, then a ping.
    for case in 0..200 {
        let c = RawConn::connect(
            port,
            &app.user,
            &app.password,
            Some("app"),
            CapabilityFlags::empty(),
        )
        .await;
        let mut s = c.into_stream();
        let cmd: u8 = if case % 3 == 0 {
            rng.random()
        } else {
            rng.random_range(0..0x20)
        };
        let n = rng.random_range(0..64);
        let mut payload = vec![cmd];
        payload.extend((0..n).map(|_| rng.random::<u8>()));
        let mut pkt = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        pkt.push(0);
        pkt.extend_from_slice(&payload);
        pkt.extend_from_slice(&[1, 0, 0, 0, 0x0E]);
        s.write_all(&pkt).await.unwrap();
        settle(&mut s, bound, &format!("command case {case} ({cmd:#04x})")).await;
    }
    // A header cut short, then the client leaves.
    let c = RawConn::connect(
        port,
        &app.user,
        &app.password,
        None,
        CapabilityFlags::empty(),
    )
    .await;
    let mut s = c.into_stream();
    s.write_all(&[0xFF, 0xFF, 0x00, 0x00, 0x03]).await.unwrap();
    drop(s);
    // The proxy still serves, and every garbage session is gone.
    let mut ok = mysql_async::Conn::new(app_plain(lab, port)).await.unwrap();
    let one: u64 = ok.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    ok.disconnect().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = proxy.status().sessions.len();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} sessions left behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.shutdown().await;
}

fn app_plain(lab: &Lab, port: u16) -> mysql_async::Opts {
    let app = &lab.state().users.app;
    opts(lab, port, &app.user, &app.password, false)
}

/// A switch whose old writer stopped answering (every packet black-holed) while a session has
/// state to read from it (user variables): the session's part of the switch is bounded, the
/// client gets an answer (moved, or ended with 1927), never a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_old_writer_never_hangs_a_session_in_a_switch() {
    let lab = lab().await;
    let relay = dbshift_testkit::relay::Relay::start(
        format!("127.0.0.1:{}", writer_port(lab)).parse().unwrap(),
    )
    .await
    .unwrap();
    let admin = &lab.state().users.admin;
    let mut cfg = dbshift_proxy::ProxyConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dbshift_proxy::Backend::new("127.0.0.1", relay.addr().port()),
        dbshift_proxy::AuthSource::Admin {
            user: admin.user.clone(),
            password: admin.password.clone(),
        },
    );
    cfg.backend_tls = Some(lab.ca_bundle());
    cfg.client_tls = Some(common::proxy_cert(lab));
    cfg.drain_bound = Duration::from_secs(2);
    cfg.connect_timeout = Duration::from_secs(2);
    let proxy = dbshift_proxy::start(cfg).await.unwrap();
    let mut c = mysql_async::Conn::new(app(lab, proxy.local_addr().port()))
        .await
        .unwrap();
    c.query_drop("SET @kept = 42").await.unwrap();
    relay.set_drop(true);
    // To the same server, directly: only the old leg is black-holed.
    proxy
        .switch(dbshift_proxy::Backend::new("127.0.0.1", writer_port(lab)))
        .await
        .unwrap();
    let r: mysql_async::Result<Option<u64>> =
        tokio::time::timeout(Duration::from_secs(30), c.query_first("SELECT 1"))
            .await
            .expect("the client is answered, not hung");
    match r {
        Ok(v) => assert_eq!(v, Some(1)),
        Err(e) => assert_eq!(server_code(&e), Some(1927), "{e}"),
    }
    relay.pass();
    proxy.shutdown().await;
}

/// `CONNECTION_ID()` says what the greeting said, directly and through the proxy (the proxy
/// greets with its backend connection's id; it used to greet with a counter of its own), and
/// `KILL` of that id from another connection ends that connection only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_id_is_the_greetings_id() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    for (how, port) in [
        ("directly", writer_port(lab)),
        ("through the proxy", proxy.local_addr().port()),
    ] {
        let mut a = mysql_async::Conn::new(app(lab, port)).await.unwrap();
        let mut b = mysql_async::Conn::new(app(lab, port)).await.unwrap();
        for c in [&mut a, &mut b] {
            let id: u32 = c
                .query_first("SELECT CONNECTION_ID()")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(id, c.id(), "{how}");
        }
        assert_ne!(a.id(), b.id(), "{how}");
        b.query_drop(format!("KILL {}", a.id())).await.unwrap();
        let e = a.query_drop("SELECT 1").await.expect_err("a was killed");
        assert!(
            matches!(
                e,
                mysql_async::Error::Server(_)
                    | mysql_async::Error::Io(_)
                    | mysql_async::Error::Driver(_)
            ),
            "{how}: {e}"
        );
        let one: u64 = b.query_first("SELECT 1").await.unwrap().unwrap();
        assert_eq!(one, 1, "{how}: the killer lives on");
        b.disconnect().await.unwrap();
    }
    proxy.shutdown().await;
}
