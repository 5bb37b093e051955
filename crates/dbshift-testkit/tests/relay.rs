//! The fault-injecting relay between a real client and a real MariaDB server (TLS verified
//! against the lab CA, which names 127.0.0.1, the relay's address too): queries pass, delay
//! slows them, a black hole times them out, a cut breaks open connections, refused connections
//! fail. One server for the whole binary. Run with `make test`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dbshift_db::server::ConnectOptions;
use dbshift_db::Server;
use dbshift_provider::local::Lab;
use dbshift_testkit::{Relay, TestLab};
use tokio::sync::OnceCell;

/// Bounds on waits that only a badly stuck machine would reach.
const LONG: Duration = Duration::from_secs(30);

/// A lab of one server (a writer, no replica) shared by this binary.
async fn lab() -> &'static Lab {
    static LAB: OnceCell<TestLab> = OnceCell::const_new();
    LAB.get_or_init(|| TestLab::start(1, 0)).await.lab()
}

/// The writer's admin options, and the relay in front of it.
async fn writer_behind_relay() -> (ConnectOptions, Relay) {
    let lab = lab().await;
    let writer = &lab.state().clusters[0].writer;
    let direct = lab.admin_options(writer).unwrap();
    let upstream: SocketAddr = format!("{}:{}", direct.host, direct.port).parse().unwrap();
    let relay = Relay::start(upstream).await.unwrap();
    let via = ConnectOptions {
        host: relay.addr().ip().to_string(),
        port: relay.addr().port(),
        ..direct
    };
    (via, relay)
}

async fn select_one(s: &mut Server) -> Result<Option<String>, dbshift_db::Error> {
    s.query_scalar("SELECT 1").await
}

#[tokio::test]
async fn queries_pass_through_the_relay() {
    let (via, relay) = writer_behind_relay().await;
    let mut s = Server::connect(&via).await.unwrap();
    assert!(s.flavor().is_mariadb());
    assert_eq!(select_one(&mut s).await.unwrap().as_deref(), Some("1"));
    assert!(!s.read_only().await.unwrap());
    assert_eq!(relay.connections(), 1);
    let pos = s.gtid_binlog_state().await;
    assert!(pos.is_ok(), "{pos:?}");
    s.close().await;
}

#[tokio::test]
async fn delay_makes_queries_on_an_open_connection_slower() {
    let (via, relay) = writer_behind_relay().await;
    let mut s = Server::connect(&via).await.unwrap();
    select_one(&mut s).await.unwrap();
    let delay = Duration::from_millis(200);
    relay.set_delay(delay);
    let started = Instant::now();
    select_one(&mut s).await.unwrap();
    let took = started.elapsed();
    // A lower bound only (the query crosses the relay twice): a busy machine adds its own.
    assert!(
        took >= delay,
        "a query through a {delay:?} delay took {took:?}"
    );
    relay.pass();
    select_one(&mut s).await.unwrap();
    s.close().await;
}

#[tokio::test]
async fn black_hole_times_a_query_out_and_after_pass_a_new_connection_works() {
    let (via, relay) = writer_behind_relay().await;
    let mut s = Server::connect(&via).await.unwrap();
    select_one(&mut s).await.unwrap();
    relay.set_drop(true);
    let outcome = tokio::time::timeout(Duration::from_millis(500), select_one(&mut s)).await;
    assert!(
        outcome.is_err(),
        "a query crossed a black hole: {outcome:?}"
    );
    // A new connection cannot get through either: the handshake never arrives.
    let short = via.clone().connect_timeout(Duration::from_millis(500));
    let err = Server::connect(&short).await.unwrap_err();
    assert!(matches!(err, dbshift_db::Error::Timeout { .. }), "{err}");
    // The abandoned connection's protocol state is unknown; it is dropped, not reused.
    drop(s);
    relay.pass();
    let mut fresh = Server::connect(&via).await.unwrap();
    assert_eq!(select_one(&mut fresh).await.unwrap().as_deref(), Some("1"));
    fresh.close().await;
}

#[tokio::test]
async fn cut_all_breaks_the_next_query_on_an_open_connection() {
    let (via, relay) = writer_behind_relay().await;
    let mut s = Server::connect(&via).await.unwrap();
    select_one(&mut s).await.unwrap();
    relay.cut_all();
    assert_eq!(relay.connections(), 0);
    let outcome = select_one(&mut s).await;
    assert!(outcome.is_err(), "a cut connection answered: {outcome:?}");
    // A cut is one-shot: the next connection goes through.
    let mut again = Server::connect(&via).await.unwrap();
    select_one(&mut again).await.unwrap();
    again.close().await;
}

#[tokio::test]
async fn refuse_new_makes_connecting_fail_and_keeps_open_connections() {
    let (via, relay) = writer_behind_relay().await;
    let mut open = Server::connect(&via).await.unwrap();
    relay.refuse_new(true);
    let err = Server::connect(&via).await.unwrap_err();
    assert!(
        matches!(err, dbshift_db::Error::Connect { .. }),
        "connecting through a refusing relay: {err}"
    );
    select_one(&mut open).await.unwrap();
    relay.pass();
    let mut welcome = Server::connect(&via).await.unwrap();
    select_one(&mut welcome).await.unwrap();
    welcome.close().await;
    open.close().await;
}

#[tokio::test]
async fn faults_switched_from_another_task_apply() {
    let (via, relay) = writer_behind_relay().await;
    let control = relay.control();
    let mut s = Server::connect(&via).await.unwrap();
    tokio::spawn(async move { control.cut_all() })
        .await
        .unwrap();
    assert!(select_one(&mut s).await.is_err());
    // Stopping the relay ends it for good: new connections fail too.
    relay.stop();
    let started = Instant::now();
    loop {
        let short = via.clone().connect_timeout(Duration::from_secs(2));
        if Server::connect(&short).await.is_err() {
            break;
        }
        assert!(started.elapsed() < LONG, "a stopped relay still relays");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
