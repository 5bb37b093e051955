//! Cluster locks in a real 3-member etcd cluster ([`dbshift_testkit::EtcdCluster`]): a second
//! holder is refused with the holder named; the fencing token grows; a release lets the next
//! one in; a holder cut off from etcd (the one member it talks to frozen) finds its lock lost
//! before anyone else can take it; a deleted key is a lost lock; the lock survives the loss of
//! the member it talks to and of the leading member; no quorum and no etcd are refused with a clear error.
//!
//! Each test starts its own cluster; they run one at a time (a 2-core machine). Needs `etcd`
//! and `etcdctl` (`scripts/deps.sh`). Run with
//! `cargo test -p dbshift-testkit --test etcd_locks`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dbshift_state::{EtcdLocks, EtcdTarget, LockError, Locks};
use dbshift_testkit::EtcdCluster;

/// A short lease, so that the expiry tests take seconds.
const TTL: Duration = Duration::from_secs(2);

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn locks(url: &str) -> Locks {
    let target = EtcdTarget::parse(url).unwrap();
    Locks::new(Arc::new(EtcdLocks::connect(&target, TTL).await.unwrap()))
}

/// Poll `f` every 50 ms until it is `Some`, at most `limit`.
async fn within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_holder_is_refused_with_the_holder_and_the_token_grows() {
    let _one = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start();
    let url = etcd.url("/t1");
    let a = locks(&url).await;
    let b = locks(&url).await;

    let held = a.acquire("lab-1", "switchover of lab-1").await.unwrap();
    held.check().unwrap();
    let first = held.token();
    assert!(first > 0);
    let again = a.acquire("lab-1", "nested").await.unwrap();
    assert_eq!(again.token(), first, "the same command shares its lock");

    let started = Instant::now();
    let err = b.acquire("lab-1", "another switchover").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, not after {:?}",
        started.elapsed()
    );
    assert!(matches!(err, LockError::Held { .. }), "{err}");
    let msg = err.to_string();
    for part in [
        "switchover of lab-1",
        &format!("pid {}", std::process::id()),
        "since 20",
        concat!("dbshift ", env!("CARGO_PKG_VERSION")),
        "/t1/locks/lab-1",
        "Nothing was changed",
    ] {
        assert!(msg.contains(part), "{part:?} missing: {msg}");
    }
    // Another scope is free.
    let other = b.acquire("lab-2", "other cluster").await.unwrap();
    assert!(other.token() > first);

    drop(held);
    assert!(
        b.acquire("lab-1", "x").await.is_err(),
        "a clone still holds it"
    );
    drop(again);
    // Dropping revoked the lease: the next one is let in at once, with a larger token.
    let next = b.acquire("lab-1", "after").await.unwrap();
    assert!(
        next.token() > other.token(),
        "{} then {}",
        other.token(),
        next.token()
    );
    next.check().unwrap();

    // acquire_all takes none when one is held.
    assert!(a
        .acquire_all(&["lab-0".into(), "lab-1".into()], "both")
        .await
        .is_err());
    a.acquire("lab-0", "free again").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_etcd_loses_its_lock_before_another_takes_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start();
    // The holder talks to member 0 only; the others go on with quorum without it.
    let holder = locks(&etcd.url_of(&[0], "/t2")).await;
    let others = locks(&etcd.url_of(&[1, 2], "/t2")).await;
    let held = holder.acquire("lab-1", "switchover").await.unwrap();
    let token = held.token();

    // Frozen, not killed: the holder's requests hang rather than fail. From then on another
    // command tries to take the lock; whenever it gets it, the holder must already know that
    // its lock is lost (its lease is taken as expired earlier than etcd expires it; a new
    // leader, if member 0 led, first gives every lease its full TTL again).
    etcd.pause(0);
    let cut = Instant::now();
    let mut lost_after = None;
    let next = loop {
        if lost_after.is_none() && held.check().is_err() {
            lost_after = Some(cut.elapsed());
        }
        match others.acquire("lab-1", "the next switchover").await {
            Ok(l) => {
                let lost = held
                    .check()
                    .expect_err("taken while the holder still held it");
                assert!(lost.to_string().contains("TTL"), "{lost}");
                break l;
            }
            Err(LockError::Held { .. }) | Err(LockError::Unreachable { .. }) => {
                assert!(
                    cut.elapsed() < Duration::from_secs(15),
                    "never taken over:\n{}",
                    etcd.logs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let lost_after = lost_after.expect("the holder saw the loss before the takeover");
    assert!(
        lost_after >= Duration::from_secs(1) && lost_after <= TTL + Duration::from_secs(1),
        "lost after {lost_after:?}"
    );
    assert!(next.token() > token);
    assert!(held.check().is_err(), "the old holder stays lost");
    etcd.resume(0);
    drop(held);
    next.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_key_is_deleted_is_lost() {
    let _one = ONE_AT_A_TIME.lock().await;
    let etcd = EtcdCluster::start();
    let a = locks(&etcd.url("/t3")).await;
    let held = a.acquire("lab-1", "run").await.unwrap();
    held.check().unwrap();
    etcd.etcdctl(&etcd.endpoints(), &["del", "/t3/locks/lab-1"])
        .unwrap();
    let lost = within(TTL * 2, "the holder sees its key gone", || {
        held.check().err()
    })
    .await;
    assert!(lost.to_string().contains("is gone"), "{lost}");
}

/// `held` stays held for `span`, checked every 100 ms.
async fn hold_for(
    held: &dbshift_state::ClusterLock,
    span: Duration,
    etcd: &EtcdCluster,
    down: &str,
) {
    let from = Instant::now();
    let until = from + span;
    while Instant::now() < until {
        held.check().unwrap_or_else(|e| {
            panic!(
                "lost {:?} after {down} went down: {e}\n{}",
                from.elapsed(),
                etcd.logs()
            )
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_survives_the_loss_of_one_member_the_holders_then_the_leader() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut etcd = EtcdCluster::start();
    let url = etcd.url("/t4");
    let a = locks(&url).await;
    let b = locks(&url).await;
    let held = a.acquire("lab-1", "switchover").await.unwrap();

    // First the member the holder talks to (the first of the URL), then, back with three
    // members, the one that leads: each time, three TTLs later, the holder still holds.
    etcd.kill(0);
    hold_for(&held, TTL * 3, &etcd, "the holder's member").await;
    etcd.restart(0);
    let leader = etcd.leader().expect("a leader");
    etcd.kill(leader);
    hold_for(&held, TTL * 3, &etcd, "the leader").await;
    let err = b.acquire("lab-1", "another").await.unwrap_err();
    assert!(matches!(err, LockError::Held { .. }), "{err}");

    etcd.restart(leader);
    held.check().unwrap();
    let token = held.token();
    drop(held);
    assert!(b.acquire("lab-1", "next").await.unwrap().token() > token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quorum_or_no_etcd_is_refused_with_a_clear_error() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut etcd = EtcdCluster::start();
    let a = locks(&etcd.url("/t5")).await;
    let held = a.acquire("lab-1", "switchover").await.unwrap();
    etcd.kill(1);
    etcd.kill(2);
    let started = Instant::now();
    let err = a.acquire("lab-2", "another").await.unwrap_err();
    assert!(matches!(err, LockError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Without quorum the lease cannot be renewed: the holder stops.
    let lost = within(
        TTL + Duration::from_secs(2),
        "the holder loses its lock",
        || held.check().err(),
    )
    .await;
    assert!(matches!(lost, LockError::Lost { .. }), "{lost}");
    drop(held);

    // Nothing listens on the port: refused at once at connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = EtcdTarget::parse(&format!("etcd://127.0.0.1:{port}")).unwrap();
    let started = Instant::now();
    let err = EtcdLocks::connect(&target, TTL).await.unwrap_err();
    assert!(matches!(err, LockError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
