//! A fault-injecting TCP relay, the project's own, to put between a client (dbshift, a probe)
//! and a server, so that tests can make the network slow, partitioned or broken on command.
//!
//! [`Relay::start`] listens on `127.0.0.1:0` and forwards the bytes of every accepted
//! connection to one upstream address, both ways. Faults are switched at run time through a
//! [`RelayControl`] (cheap to clone, usable from any task) and apply to connections that are
//! already open as well as to new ones: added latency per chunk and direction, a black hole,
//! refused new connections, every live connection cut at once.
//!
//! The relay moves bytes and nothing else. It must never parse, reorder, duplicate or corrupt
//! the stream (a real network under TCP never does either; it only delays, stalls or breaks a
//! connection), and it must never outlive its [`Relay`]: dropping it ends the listener and
//! every connection task.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Bytes read in one go; one chunk is the unit of added latency.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction. Bounded so that a black-holed connection
/// stops reading (and the sender sees a full window, as in a real partition) instead of
/// buffering without end.
const IN_FLIGHT_CHUNKS: usize = 64;

/// The faults in force. [`Faults::default`] is a clean pass-through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Latency added to every chunk, in each direction (a round trip gets it twice).
    pub delay: Duration,
    /// Black hole: connections stay open but nothing is delivered.
    pub drop: bool,
    /// New connections are closed as soon as they are accepted.
    pub refuse_new: bool,
}

/// The live connections and the listener, so that `cut_all` and `stop` can end them.
#[derive(Default)]
struct Tasks {
    next_id: u64,
    live: HashMap<u64, AbortHandle>,
    listener: Option<AbortHandle>,
    stopped: bool,
}

struct Shared {
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    tasks: Mutex<Tasks>,
}

impl Shared {
    /// The registry stays usable even if a task panicked while holding it: it only holds
    /// handles, which are valid in any state.
    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle that switches the faults of a running [`Relay`]. Clone it freely; every clone
/// controls the same relay.
#[derive(Clone)]
pub struct RelayControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RelayControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayControl")
            .field("upstream", &self.shared.upstream)
            .field("faults", &self.faults())
            .field("connections", &self.connections())
            .finish()
    }
}

impl RelayControl {
    /// The faults in force now.
    pub fn faults(&self) -> Faults {
        *self.shared.faults.borrow()
    }

    /// Add `delay` to every chunk in each direction, on open and new connections. Chunks
    /// already in flight keep the delay they were read with.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.faults.send_modify(|f| f.delay = delay);
    }

    /// Black hole on (`true`) or off. While on, connections stay open and nothing reaches the
    /// other side, like a partition where packets vanish. Bytes sent meanwhile are held, not
    /// discarded: TCP retransmits through a real partition, so when it heals (`set_drop(false)`
    /// or [`RelayControl::pass`]) a connection that nobody gave up on resumes where it was,
    /// and a relay that discarded bytes would produce corrupt streams no network produces.
    pub fn set_drop(&self, on: bool) {
        self.shared.faults.send_modify(|f| f.drop = on);
    }

    /// Refuse new connections (`true`) or accept them again. A refused connection is
    /// accepted and closed at once (the listener stays bound, so the port cannot be taken by
    /// someone else meanwhile); open connections are not touched.
    pub fn refuse_new(&self, on: bool) {
        self.shared.faults.send_modify(|f| f.refuse_new = on);
    }

    /// Close every live connection now. A one-shot action: new connections are accepted as
    /// before. Bytes in flight in the relay are lost, as when a link breaks.
    pub fn cut_all(&self) {
        let handles: Vec<AbortHandle> = {
            let mut tasks = self.shared.tasks();
            tasks.live.drain().map(|(_, h)| h).collect()
        };
        // An aborted task is never polled again, so nothing more is forwarded on these
        // connections from here on; its sockets close when the runtime drops it.
        for h in handles {
            h.abort();
        }
    }

    /// Back to a clean pass-through: no delay, no black hole, new connections accepted.
    pub fn pass(&self) {
        self.shared.faults.send_replace(Faults::default());
    }

    /// Connections being relayed now (accepted, not closed, not cut).
    pub fn connections(&self) -> usize {
        self.shared.tasks().live.len()
    }

    /// End the listener and every connection. Idempotent.
    pub fn stop(&self) {
        let handles: Vec<AbortHandle> = {
            let mut tasks = self.shared.tasks();
            tasks.stopped = true;
            let mut handles: Vec<AbortHandle> = tasks.live.drain().map(|(_, h)| h).collect();
            handles.extend(tasks.listener.take());
            handles
        };
        for h in handles {
            h.abort();
        }
    }
}

/// A running relay from `addr()` to one upstream address; stopped when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    control: RelayControl,
}

impl Relay {
    /// Listen on `127.0.0.1:0` and relay every accepted connection to `upstream`. Must be
    /// called inside a tokio runtime, whose tasks then carry the traffic.
    pub async fn start(upstream: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::default());
        let shared = Arc::new(Shared {
            upstream,
            faults,
            tasks: Mutex::new(Tasks::default()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        shared.tasks().listener = Some(accept.abort_handle());
        Ok(Relay {
            addr,
            control: RelayControl { shared },
        })
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the relay forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.control.shared.upstream
    }

    /// A handle to switch faults from anywhere (another task, a hook).
    pub fn control(&self) -> RelayControl {
        self.control.clone()
    }

    /// See [`RelayControl::set_delay`].
    pub fn set_delay(&self, delay: Duration) {
        self.control.set_delay(delay);
    }

    /// See [`RelayControl::set_drop`].
    pub fn set_drop(&self, on: bool) {
        self.control.set_drop(on);
    }

    /// See [`RelayControl::refuse_new`].
    pub fn refuse_new(&self, on: bool) {
        self.control.refuse_new(on);
    }

    /// See [`RelayControl::cut_all`].
    pub fn cut_all(&self) {
        self.control.cut_all();
    }

    /// See [`RelayControl::pass`].
    pub fn pass(&self) {
        self.control.pass();
    }

    /// See [`RelayControl::connections`].
    pub fn connections(&self) -> usize {
        self.control.connections()
    }

    /// See [`RelayControl::stop`].
    pub fn stop(&self) {
        self.control.stop();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.control.stop();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            // Out of file descriptors and the like: pause rather than spin, then go on, since
            // a test relay that stops accepting by itself would look like a fault it was not
            // asked for.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.faults.borrow().refuse_new {
            drop(client);
            continue;
        }
        spawn_connection(client, &shared);
    }
}

/// Removes a connection from the live set when its task ends, however it ends.
struct Deregister {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        self.shared.tasks().live.remove(&self.id);
    }
}

fn spawn_connection(client: TcpStream, shared: &Arc<Shared>) {
    // Registered under the lock that `stop` takes, so a connection accepted while the relay
    // stops is either ended by `stop` or never started.
    let mut tasks = shared.tasks();
    if tasks.stopped {
        return;
    }
    let id = tasks.next_id;
    tasks.next_id += 1;
    let guard = Deregister {
        shared: Arc::clone(shared),
        id,
    };
    let task = tokio::spawn(async move {
        let guard = guard;
        relay_connection(client, &guard.shared).await;
    });
    // The task cannot deregister before this insert: its guard needs the lock held here.
    tasks.live.insert(id, task.abort_handle());
}

async fn relay_connection(client: TcpStream, shared: &Shared) {
    // An upstream that is down closes the client's connection at once, as the server itself
    // would have refused it.
    let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    // Small protocol packets must not wait for Nagle: the relay adds only the latency it is
    // told to.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    // A broken direction ends the whole connection (its halves are dropped); a clean EOF is
    // passed on as a half-close and the other direction carries on.
    let _ = tokio::try_join!(
        pump(client_read, upstream_write, shared),
        pump(upstream_read, client_write, shared),
    );
}

/// One direction of one connection: a reader stamps each chunk with the time it is due, a
/// writer delivers chunks in order when due and when no black hole is on. Splitting the two
/// keeps the added delay a latency, not a throughput limit.
async fn pump(mut src: OwnedReadHalf, mut dst: OwnedWriteHalf, shared: &Shared) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let mut faults = shared.faults.subscribe();
    let read = async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = src.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
            buf.truncate(n);
            let due = Instant::now() + shared.faults.borrow().delay;
            if tx.send((due, buf)).await.is_err() {
                return Ok(());
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // The sender lives in `shared`, which outlives this task, so the wait ends only
            // when the black hole is off.
            if faults.wait_for(|f| !f.drop).await.is_err() {
                return Ok(());
            }
            dst.write_all(&chunk).await?;
        }
        dst.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    const LONG: Duration = Duration::from_secs(20);

    /// A plain echo server: every byte read is written back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn bytes_pass_both_ways_unchanged() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");
        // Larger than a chunk and than the in-flight window, in one go and read back whole.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = s.into_split();
        let expected = big.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&big).await.unwrap();
            w
        });
        let mut got = vec![0u8; expected.len()];
        r.read_exact(&mut got).await.unwrap();
        assert!(got == expected, "the stream came back changed");
        let mut w = writer.await.unwrap();
        // A half-close passes through: the echo server sees EOF and closes its side.
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        crate::eventually!(LONG, "the closed connection to leave the live set", {
            (relay.connections() == 0).then_some(())
        });
    }

    #[tokio::test]
    async fn connections_are_counted() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        assert_eq!(relay.connections(), 0);
        let mut a = TcpStream::connect(relay.addr()).await.unwrap();
        let mut b = TcpStream::connect(relay.addr()).await.unwrap();
        round_trip(&mut a, b"a").await.unwrap();
        round_trip(&mut b, b"b").await.unwrap();
        assert_eq!(relay.connections(), 2);
        drop(a);
        crate::eventually!(LONG, "one connection left", {
            (relay.connections() == 1).then_some(())
        });
        round_trip(&mut b, b"still").await.unwrap();
    }

    #[tokio::test]
    async fn delay_applies_to_each_direction_of_open_connections() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(relay.addr()).await.unwrap();
        round_trip(&mut s, b"warm").await.unwrap();
        let delay = Duration::from_millis(150);
        relay.control().set_delay(delay);
        assert_eq!(relay.control().faults().delay, delay);
        let started = StdInstant::now();
        assert_eq!(round_trip(&mut s, b"slow").await.unwrap(), b"slow");
        // There and back: the delay twice. Only a lower bound; a busy machine may add more.
        let took = started.elapsed();
        assert!(took >= 2 * delay, "a round trip took {took:?}");
        relay.pass();
        assert_eq!(relay.control().faults(), Faults::default());
        assert_eq!(round_trip(&mut s, b"fast").await.unwrap(), b"fast");
    }

    #[tokio::test]
    async fn black_hole_holds_bytes_until_it_heals() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(relay.addr()).await.unwrap();
        round_trip(&mut s, b"before").await.unwrap();
        relay.set_drop(true);
        s.write_all(b"lost?").await.unwrap();
        let mut got = [0u8; 5];
        let stalled =
            tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut got)).await;
        assert!(stalled.is_err(), "nothing may pass a black hole");
        // New connections are open but mute too.
        let mut fresh = TcpStream::connect(relay.addr()).await.unwrap();
        fresh.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), fresh.read_exact(&mut one))
                .await
                .is_err()
        );
        assert_eq!(
            relay.connections(),
            2,
            "a black hole keeps connections open"
        );
        relay.pass();
        // Healed: what was held arrives, in order, and the stream goes on.
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"lost?");
        assert_eq!(round_trip(&mut s, b"after").await.unwrap(), b"after");
        fresh.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }

    #[tokio::test]
    async fn cut_all_closes_open_connections_and_new_ones_still_work() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut s = TcpStream::connect(relay.addr()).await.unwrap();
        round_trip(&mut s, b"ping").await.unwrap();
        relay.cut_all();
        assert_eq!(relay.connections(), 0);
        // The peer sees the connection end: EOF or a reset, never an answer.
        let outcome = round_trip(&mut s, b"ping").await;
        assert!(outcome.is_err(), "a cut connection answered: {outcome:?}");
        let mut again = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"new").await.unwrap(), b"new");
    }

    #[tokio::test]
    async fn refused_connections_are_closed_and_open_ones_kept() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(relay.addr()).await.unwrap();
        round_trip(&mut open, b"a").await.unwrap();
        relay.refuse_new(true);
        let mut refused = TcpStream::connect(relay.addr()).await.unwrap();
        let outcome = round_trip(&mut refused, b"b").await;
        assert!(outcome.is_err(), "a refused connection answered");
        assert_eq!(round_trip(&mut open, b"c").await.unwrap(), b"c");
        relay.refuse_new(false);
        let mut welcome = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut welcome, b"d").await.unwrap(), b"d");
    }

    #[tokio::test]
    async fn an_upstream_that_is_down_closes_the_client() {
        let gone = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let relay = Relay::start(gone).await.unwrap();
        assert_eq!(relay.upstream(), gone);
        let mut s = TcpStream::connect(relay.addr()).await.unwrap();
        let mut buf = Vec::new();
        let n = s.read_to_end(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn dropping_the_relay_ends_listener_and_connections() {
        let relay = Relay::start(echo_server().await).await.unwrap();
        let addr = relay.addr();
        let control = relay.control();
        let mut s = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut s, b"x").await.unwrap();
        drop(relay);
        assert_eq!(control.connections(), 0);
        assert!(round_trip(&mut s, b"y").await.is_err());
        crate::eventually!(LONG, "the listener to close", {
            match TcpStream::connect(addr).await {
                Err(_) => Some(()),
                // The port may be taken again by then; what matters is that the relay no
                // longer answers on it.
                Ok(mut t) => round_trip(&mut t, b"z").await.is_err().then_some(()),
            }
        });
        // Faults on a stopped relay are harmless.
        control.set_drop(true);
        control.stop();
    }
}
