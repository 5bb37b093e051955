//! One client session: the proxy's handshake, authentication, then a loop of one command at a
//! time forwarded to the session's backend connection and its response relayed to the end.
//!
//! Between two commands the session is at a boundary, the only place where it obeys the
//! control: it holds while paused, re-attaches to a new backend, or ends itself with a clear
//! error when told to. It must never answer a held command with an error, and never log the
//! session's secret.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::auth::{self, SessionSecret, Stored, StoredCredential, CACHING_SHA2, CLIENT_ED25519};
use crate::backend::{BackendConn, LoginSpec, Target, TRACKING_SQL};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protocol::{
    self, cap, com, err_payload, ok_payload, parse_handshake_response, server_handshake_payload,
    status, StateChange, NATIVE_PASSWORD,
};
use crate::response::{Expect, Kind, Response};
use crate::sql::{self, Effects};
use crate::tracking::{self, ClientTracking};
use crate::wire::{Stream, Wire};
use crate::{pin, Control, SessionInfo, Shared};

/// Variables the tracker reports that no session may set; never replayed.
const READ_ONLY_TRACKED: &[&str] = &[
    "last_gtid",
    "in_transaction",
    "warning_count",
    "error_count",
];

/// ER_CONNECTION_KILLED: what a client sees when the proxy ends its session.
const ENDED_CODE: u16 = 1927;
const MSG_TRANSACTION: &str = "dbshift proxy: the writer is being switched; your open \
     transaction was ended: retry it";
const MSG_UNMOVABLE: &str = "dbshift proxy: the writer was switched and this session held \
     state that cannot move to the new writer";
const MSG_REATTACH: &str =
    "dbshift proxy: the writer was switched and this session could not be re-attached";

pub(crate) async fn run(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    Metrics::inc(&shared.metrics.connections_total);
    shared.metrics.connections_current.fetch_add(1, Relaxed);
    let _ = tcp.set_nodelay(true);
    match Session::open(&shared, tcp, peer).await {
        Ok(Some(mut s)) => {
            let info = s.info.clone();
            let id = info.id;
            shared
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, info);
            shared.session_event.notify_waiters();
            if let Err(e) = s.serve().await {
                tracing::debug!(session = id, error = %e, "session ended");
            }
            s.close().await;
            shared
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            shared.session_event.notify_waiters();
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(client = %peer, error = %e, "login failed"),
    }
    shared.metrics.connections_current.fetch_sub(1, Relaxed);
}

/// A prepared statement of the session.
struct Stmt {
    sql: Vec<u8>,
    backend_id: u32,
    params: u16,
    /// Parameter types last sent (2 bytes per parameter).
    types: Option<Vec<u8>>,
    /// Re-prepared on a new backend, which has not seen the types yet.
    needs_types: bool,
    cursor_open: bool,
    long_data: bool,
    effects: Effects,
}

#[derive(Default)]
struct State {
    in_trans: bool,
    schema: Option<String>,
    /// System variables the server reported as changed, by name.
    vars: BTreeMap<String, Vec<u8>>,
    user_variables: bool,
    temp_tables: u32,
    user_locks: u32,
    lock_tables: bool,
    stmts: HashMap<u32, Stmt>,
    next_stmt_id: u32,
    /// The client's id of the statement prepared last, while it is open: what MariaDB runs
    /// for the id 0xFFFFFFFF ("the last prepared statement").
    last_prepared: Option<u32>,
}

/// The statement id MariaDB takes for "the statement prepared last" (direct execution).
const LAST_STMT_ID: u32 = u32::MAX;

impl State {
    fn unmovable(&self) -> u32 {
        let mut bits = 0;
        if self.temp_tables > 0 {
            bits |= pin::TEMP_TABLES;
        }
        if self.user_locks > 0 {
            bits |= pin::USER_LOCKS;
        }
        if self.lock_tables {
            bits |= pin::LOCK_TABLES;
        }
        for s in self.stmts.values() {
            if s.cursor_open {
                bits |= pin::CURSORS;
            }
            if s.long_data {
                bits |= pin::LONG_DATA;
            }
        }
        bits
    }

    fn apply(&mut self, e: &Effects) {
        self.temp_tables =
            (self.temp_tables + e.temp_tables_created).saturating_sub(e.temp_tables_dropped);
        if e.all_locks_released {
            self.user_locks = 0;
        }
        self.user_locks = (self.user_locks + e.locks_taken).saturating_sub(e.locks_released);
        if e.lock_tables {
            self.lock_tables = true;
        }
        if e.unlock_tables {
            self.lock_tables = false;
        }
        if e.user_variables {
            self.user_variables = true;
        }
    }
}

struct Session {
    shared: Arc<Shared>,
    info: Arc<SessionInfo>,
    client: Wire,
    backend: BackendConn,
    login: LoginSpec,
    secret: SessionSecret,
    /// The greeting's scramble: what a COM_CHANGE_USER's answer is computed on.
    scramble: [u8; 20],
    state: State,
    /// What the client asked to track (the proxy tracks more, and filters).
    tracking: ClientTracking,
    ctl: watch::Receiver<Control>,
    generation: u64,
    end_seen: u64,
    /// The greeting's id, held while the session lives.
    _id: crate::IdClaim,
}

/// A backend connection opened before the greeting, settled (logged in and closed as the
/// admin) if no client logs in on it: see [`Target::settle_early`]. At most a few at once, so
/// a flood of clients that never log in cannot turn into a flood of admin logins.
struct EarlyGuard {
    shared: Arc<Shared>,
    target: Arc<Target>,
    early: Option<crate::backend::Early>,
}

static SETTLING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

impl Drop for EarlyGuard {
    fn drop(&mut self) {
        let Some(early) = self.early.take() else {
            return;
        };
        let Ok(permit) = SETTLING.try_acquire() else {
            return;
        };
        let admin = match &self.shared.cfg.auth {
            auth::AuthSource::Admin { user, password } => {
                Some((user.clone(), auth::Password::new(password.clone())))
            }
            auth::AuthSource::Hashes(_) => None,
        };
        let target = self.target.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                target.settle_early(early, admin).await;
                drop(permit);
            });
        }
    }
}

/// How a boundary ends.
enum Flow {
    Go,
    End(&'static str),
}

fn scramble() -> [u8; 20] {
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in s.iter_mut() {
        // Printable and never NUL: some clients treat the scramble as a C string.
        *b = rng.random_range(33u8..127);
    }
    s
}

async fn send_err(shared: &Shared, wire: &mut Wire, seq: u8, code: u16, state: &str, msg: &str) {
    Metrics::inc(&shared.metrics.errors_sent_total);
    let _ = wire.write_packet(seq, &err_payload(code, state, msg)).await;
}

impl Session {
    /// Handshake and authentication. `Ok(None)`: the client was refused (and told why).
    async fn open(
        shared: &Arc<Shared>,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<Option<Session>> {
        let mut ctl = shared.control.subscribe();
        // New connections wait before their greeting while paused.
        if ctl.borrow_and_update().paused {
            let held_at = Instant::now();
            shared.held_connections.fetch_add(1, Relaxed);
            while ctl.borrow_and_update().paused && !ctl.borrow().shutdown {
                if ctl.changed().await.is_err() {
                    break;
                }
            }
            shared.held_connections.fetch_sub(1, Relaxed);
            shared.metrics.held(held_at.elapsed());
        }
        if ctl.borrow().shutdown {
            return Ok(None);
        }
        let mut client = Wire::new(Stream::Plain(tcp));
        // The backend connection is opened first (its greeting only): the client is greeted
        // with that connection's id, so that `CONNECTION_ID()` says what the greeting said
        // (until a switch moves the session). Unreachable now: the proxy's own id, and the
        // client gets the connection error after its login, as before.
        let (early_generation, early_target) = {
            let c = ctl.borrow();
            (c.generation, c.target.clone())
        };
        let mut early = EarlyGuard {
            shared: shared.clone(),
            target: early_target.clone(),
            early: early_target.open_early().await.ok(),
        };
        let claim = shared.claim_id(early.early.as_ref().map(|e| e.hs.connection_id));
        let id = claim.id;
        let scramble = scramble();
        let (mut offer, offer_ext) = shared.offer;
        if shared.client_tls.is_some() {
            offer |= cap::SSL;
        }
        let defaults = shared
            .client_defaults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let greeting = server_handshake_payload(
            &shared.server_version,
            id,
            &scramble,
            offer,
            offer_ext,
            shared.charset,
            defaults.status,
        );
        client.write_packet(0, &greeting).await?;
        let handshake_timeout = Duration::from_secs(10);
        let (mut seq, mut payload) =
            tokio::time::timeout(handshake_timeout, client.read_packet_exact())
                .await
                .map_err(|_| Error::protocol("no handshake response in time"))??;
        if protocol::is_ssl_request(&payload) {
            let Some(tls) = &shared.client_tls else {
                return Err(Error::protocol(
                    "client asked for TLS, which is not configured",
                ));
            };
            if !client.is_drained() {
                return Err(Error::protocol("data after the SSL request"));
            }
            let Stream::Plain(tcp) = std::mem::replace(&mut client.stream, Stream::Empty) else {
                return Err(Error::protocol("stream already upgraded"));
            };
            let tls = tokio::time::timeout(
                handshake_timeout,
                tokio_rustls::TlsAcceptor::from(tls.clone()).accept(tcp),
            )
            .await
            .map_err(|_| Error::protocol("TLS handshake timed out"))??;
            client.stream = Stream::ServerTls(Box::new(tls));
            (seq, payload) = tokio::time::timeout(handshake_timeout, client.read_packet())
                .await
                .map_err(|_| Error::protocol("no handshake response in time"))??;
        }
        let mut resp = match parse_handshake_response(&payload) {
            Ok(r) => r,
            Err(e) => {
                send_err(
                    shared,
                    &mut client,
                    seq.wrapping_add(1),
                    1043,
                    "08S01",
                    "Bad handshake",
                )
                .await;
                return Err(e);
            }
        };
        let secret = match authenticate(
            shared,
            &mut client,
            seq,
            peer.ip(),
            &resp.user,
            resp.auth_plugin.as_deref(),
            std::mem::take(&mut resp.auth_response),
            &scramble,
        )
        .await?
        {
            Login::Accepted { secret, next } => {
                seq = next.wrapping_sub(1);
                secret
            }
            Login::Refused => return Ok(None),
        };
        let next = seq.wrapping_add(1);
        let login = LoginSpec {
            user: resp.user.clone(),
            client_caps: resp.capabilities & offer,
            client_ext_caps: resp.ext_capabilities & offer_ext,
            max_packet: resp.max_packet,
            charset: resp.charset,
            connect_attrs: resp.connect_attrs.clone(),
        };
        let ctl_now = ctl.borrow_and_update().clone();
        let early = early.early.take();
        let connected = match early.filter(|_| ctl_now.generation == early_generation) {
            Some(e) => {
                ctl_now
                    .target
                    .connect_early(e, &login, &secret, resp.database.as_deref())
                    .await
            }
            None => {
                ctl_now
                    .target
                    .connect(&login, &secret, resp.database.as_deref())
                    .await
            }
        };
        let backend = match connected {
            Ok(b) => b,
            Err(Error::BackendRefused {
                code,
                state,
                message,
                ..
            }) => {
                send_err(shared, &mut client, next, code, &state, &message).await;
                return Ok(None);
            }
            Err(e) => {
                Metrics::inc(&shared.metrics.backend_connect_failures_total);
                tracing::warn!(error = %e, "cannot open a backend connection for a client");
                send_err(
                    shared,
                    &mut client,
                    next,
                    2013,
                    "HY000",
                    &format!("dbshift proxy: the backend is not reachable: {e}"),
                )
                .await;
                return Ok(None);
            }
        };
        client
            .write_packet(next, &ok_payload(defaults.status, login.client_caps))
            .await?;
        let info = Arc::new(SessionInfo {
            id,
            user: std::sync::Mutex::new(resp.user.clone()),
            client: peer,
            generation: std::sync::atomic::AtomicU64::new(ctl_now.generation),
            in_trans: Default::default(),
            busy: Default::default(),
            held: Default::default(),
            unmovable: Default::default(),
            backend_thread: std::sync::atomic::AtomicU32::new(backend.handshake.connection_id),
        });
        let state = State {
            schema: resp.database.clone(),
            next_stmt_id: 1,
            ..Default::default()
        };
        tracing::debug!(session = id, user = %resp.user, client = %peer, "session open");
        Ok(Some(Session {
            _id: claim,
            shared: shared.clone(),
            info,
            client,
            backend,
            login,
            secret,
            scramble,
            state,
            tracking: defaults.tracking,
            generation: ctl_now.generation,
            end_seen: ctl_now.end_pinned,
            ctl,
        }))
    }

    fn in_trans(&self) -> bool {
        self.state.in_trans
    }

    fn publish(&self) {
        self.info.in_trans.store(self.state.in_trans, Relaxed);
        self.info.unmovable.store(self.state.unmovable(), Relaxed);
    }

    async fn close(&mut self) {
        let backend = std::mem::replace(&mut self.backend.wire.stream, crate::wire::Stream::Empty);
        let mut w = Wire::new(backend);
        let _ = w.write_packet(0, &[com::QUIT]).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.client.stream).await;
    }

    async fn end_with(&mut self, msg: &str) {
        let user = self
            .info
            .user
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tracing::warn!(session = self.info.id, user = %user, reason = msg, "ending a client session");
        Metrics::inc(&self.shared.metrics.sessions_ended_total);
        // Outside a command the client expects nothing: an ERR with sequence 1 is what a
        // server that kills the connection sends (clients read it with their next command).
        send_err(&self.shared, &mut self.client, 1, ENDED_CODE, "70100", msg).await;
    }

    /// Obey the control at a boundary.
    async fn at_boundary(&mut self) -> Flow {
        let ctl = self.ctl.borrow_and_update().clone();
        if ctl.shutdown {
            return Flow::End("");
        }
        let unmovable = self.state.unmovable();
        if ctl.end_pinned != self.end_seen {
            self.end_seen = ctl.end_pinned;
            if self.in_trans() {
                return Flow::End(MSG_TRANSACTION);
            }
            if ctl.generation != self.generation && unmovable != 0 {
                return Flow::End(MSG_UNMOVABLE);
            }
        }
        if ctl.generation != self.generation && !self.in_trans() {
            if unmovable != 0 {
                if ctl.paused && ctl.drain_over {
                    return Flow::End(MSG_UNMOVABLE);
                }
                return Flow::Go;
            }
            // Each session's part of a switch is bounded: a backend that hangs ends this
            // session, never holds the others or the switch.
            let bound = self.shared.cfg.drain_bound + 2 * self.shared.cfg.connect_timeout;
            let moved = tokio::time::timeout(bound, self.reattach(&ctl.target))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::protocol(format!(
                        "re-attaching did not finish within {bound:?}"
                    )))
                });
            match moved {
                Ok(()) => {
                    self.generation = ctl.generation;
                    self.info.generation.store(ctl.generation, Relaxed);
                    Metrics::inc(&self.shared.metrics.sessions_moved_total);
                    self.shared.session_event.notify_waiters();
                }
                Err(e) => {
                    tracing::warn!(session = self.info.id, error = %e, "re-attach failed");
                    return Flow::End(MSG_REATTACH);
                }
            }
        }
        Flow::Go
    }

    /// May a command go to the backend now?
    fn may_forward(&self, ctl: &Control) -> bool {
        if !ctl.paused {
            return true;
        }
        if self.in_trans() {
            return true;
        }
        // Sessions with state that cannot move may release it while the pause drains.
        self.state.unmovable() != 0 && !ctl.drain_over && ctl.generation == self.generation
    }

    async fn serve(&mut self) -> Result<()> {
        loop {
            if let Flow::End(msg) = self.at_boundary().await {
                if !msg.is_empty() {
                    self.end_with(msg).await;
                }
                return Ok(());
            }
            // Wait for a whole command, or a control change.
            let end = match self.client.logical_at_start() {
                Some((_, end)) => end,
                None => {
                    tokio::select! {
                        r = self.client.fill() => {
                            if r? == 0 {
                                return Ok(());
                            }
                        }
                        r = self.ctl.changed() => {
                            if r.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    continue;
                }
            };
            // Hold while paused.
            let ctl = self.ctl.borrow().clone();
            if !self.may_forward(&ctl) {
                let held_at = Instant::now();
                self.info.held.store(true, Relaxed);
                let mut ended = None;
                loop {
                    if self.ctl.changed().await.is_err() {
                        ended = Some("");
                        break;
                    }
                    if let Flow::End(msg) = self.at_boundary().await {
                        ended = Some(msg);
                        break;
                    }
                    let ctl = self.ctl.borrow().clone();
                    if self.may_forward(&ctl) {
                        break;
                    }
                }
                self.info.held.store(false, Relaxed);
                self.shared.metrics.held(held_at.elapsed());
                if let Some(msg) = ended {
                    if !msg.is_empty() {
                        self.end_with(msg).await;
                    }
                    return Ok(());
                }
            }
            self.info.busy.store(true, Relaxed);
            let r = self.command(end).await;
            self.info.busy.store(false, Relaxed);
            self.publish();
            self.shared.session_event.notify_waiters();
            match r? {
                Flow::Go => {}
                Flow::End(msg) => {
                    if !msg.is_empty() {
                        self.end_with(msg).await;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Forward the command in `client.buf[start..end]` and relay its response.
    async fn command(&mut self, end: usize) -> Result<Flow> {
        Metrics::inc(&self.shared.metrics.commands_total);
        let at = self.client.start;
        let payload_at = at + 4;
        let cmd = self.client.buf.get(payload_at).copied().unwrap_or(0);
        let single = self.client.frame_at(at).is_some_and(|f| f.end() == end);
        let mut current_stmt = None;
        let mut replaced: Option<Vec<u8>> = None;
        let mut sets_tracking = false;
        match cmd {
            com::QUIT => return Ok(Flow::End("")),
            com::QUERY | com::PROCESS_KILL => {
                // KILL takes the proxy's ids (the greeting's): translated to the session's
                // backend connection, or refused when no session of this proxy has the id.
                let text = &self.client.buf[payload_at + 1..end];
                let kill = if cmd == com::PROCESS_KILL {
                    text.get(..4).map(|b| {
                        let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
                        (id, 0..4)
                    })
                } else if single {
                    sql::kill_target(text).map(|k| (k.id, k.digits))
                } else {
                    None
                };
                if let Some((id, digits)) = kill {
                    let Some(backend) = self.shared.kill_target(id) else {
                        self.client.start = end;
                        send_err(
                            &self.shared,
                            &mut self.client,
                            1,
                            1094,
                            "HY000",
                            &format!("Unknown thread id: {id}"),
                        )
                        .await;
                        return Ok(Flow::Go);
                    };
                    let mut p = vec![cmd];
                    p.extend_from_slice(&text[..digits.start]);
                    if cmd == com::PROCESS_KILL {
                        p.extend_from_slice(&backend.to_le_bytes());
                    } else {
                        p.extend_from_slice(backend.to_string().as_bytes());
                    }
                    p.extend_from_slice(&text[digits.end..]);
                    replaced = Some(p);
                }
                sets_tracking = tracking::mentions_tracking(text);
                let e = sql::effects(&self.client.buf[payload_at + 1..end]);
                if !e.is_none() {
                    self.state.apply(&e);
                }
            }
            com::STMT_PREPARE => {}
            com::STMT_EXECUTE
            | com::STMT_BULK_EXECUTE
            | com::STMT_FETCH
            | com::STMT_RESET
            | com::STMT_CLOSE
            | com::STMT_SEND_LONG_DATA => {
                let mut idb = self
                    .client
                    .buf
                    .get(payload_at + 1..payload_at + 5)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if idb == LAST_STMT_ID {
                    idb = self.state.last_prepared.unwrap_or(LAST_STMT_ID);
                }
                let Some(s) = self.state.stmts.get_mut(&idb) else {
                    // Unknown or closed: answered as the server answers, nothing forwarded.
                    // (Any id sent on would be wrong on the backend, where ids differ; the
                    // server itself reads 0xFFFFFFFF as "the statement prepared last".)
                    self.client.start = end;
                    let given_to = match cmd {
                        // MariaDB 10.11 names the execute for a bulk execute too.
                        com::STMT_EXECUTE | com::STMT_BULK_EXECUTE => "mysqld_stmt_execute",
                        com::STMT_FETCH => "mysqld_stmt_fetch",
                        com::STMT_RESET => "mysqld_stmt_reset",
                        // COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA get no answer.
                        _ => return Ok(Flow::Go),
                    };
                    send_err(
                        &self.shared,
                        &mut self.client,
                        1,
                        1243,
                        "HY000",
                        &format!("Unknown prepared statement handler ({idb}) given to {given_to}"),
                    )
                    .await;
                    return Ok(Flow::Go);
                };
                current_stmt = Some(idb);
                match cmd {
                    com::STMT_EXECUTE => {
                        s.cursor_open = false;
                        s.long_data = false;
                        replaced = execute_types(&self.client.buf[payload_at..end], s, single);
                    }
                    com::STMT_BULK_EXECUTE => {
                        s.cursor_open = false;
                        s.long_data = false;
                        replaced = bulk_types(&self.client.buf[payload_at..end], s, single);
                    }
                    com::STMT_RESET => {
                        s.cursor_open = false;
                        s.long_data = false;
                    }
                    com::STMT_SEND_LONG_DATA => s.long_data = true,
                    _ => {}
                }
                let backend_id = s.backend_id;
                sets_tracking = cmd == com::STMT_EXECUTE && tracking::mentions_tracking(&s.sql);
                if cmd == com::STMT_EXECUTE || cmd == com::STMT_BULK_EXECUTE {
                    if let Some(e) = self.state.stmts.get(&idb).map(|s| s.effects) {
                        self.state.apply(&e);
                    }
                }
                if cmd == com::STMT_CLOSE {
                    self.state.stmts.remove(&idb);
                    if self.state.last_prepared == Some(idb) {
                        self.state.last_prepared = None;
                    }
                }
                match &mut replaced {
                    Some(p) => p[1..5].copy_from_slice(&backend_id.to_le_bytes()),
                    None => self.client.buf[payload_at + 1..payload_at + 5]
                        .copy_from_slice(&backend_id.to_le_bytes()),
                }
            }
            com::CHANGE_USER => {
                let payload = self.client.buf[payload_at..end].to_vec();
                let seq = self.client.buf[at + 3];
                self.client.start = end;
                return self.change_user(&payload, seq).await;
            }
            com::INIT_DB
            | com::FIELD_LIST
            | com::REFRESH
            | com::STATISTICS
            | com::DEBUG
            | com::PING
            | com::SET_OPTION
            | com::RESET_CONNECTION => {}
            other => {
                self.client.start = end;
                send_err(
                    &self.shared,
                    &mut self.client,
                    1,
                    1047,
                    "08S01",
                    &format!(
                        "dbshift proxy: command {other:#04x} is not supported through the proxy"
                    ),
                )
                .await;
                return Ok(Flow::Go);
            }
        }
        let prepare_sql =
            (cmd == com::STMT_PREPARE).then(|| self.client.buf[payload_at + 1..end].to_vec());
        match replaced {
            Some(p) => {
                let seq = self.client.buf[at + 3];
                self.backend.wire.write_packet(seq, &p).await?;
            }
            None => {
                self.backend
                    .wire
                    .write_raw(&self.client.buf[at..end])
                    .await?;
                self.backend.wire.flush().await?;
            }
        }
        self.client.start = end;
        if cmd == com::RESET_CONNECTION {
            return self.reset_connection().await;
        }
        let flow = self
            .relay(Expect::of(cmd), current_stmt, prepare_sql)
            .await?;
        if sets_tracking && matches!(flow, Flow::Go) {
            self.take_back_tracking().await?;
        }
        Ok(flow)
    }

    /// What a client of the current backend starts tracking with (the server's defaults).
    fn default_tracking(&self) -> ClientTracking {
        self.shared
            .client_defaults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .tracking
            .clone()
    }

    /// The client set a tracking variable the proxy owns: keep the client's values as its view
    /// and put the proxy's tracking back on the backend session.
    async fn take_back_tracking(&mut self) -> Result<()> {
        let rows = self.backend.rows(tracking::SESSION_SQL).await?;
        if let Some(row) = rows.first() {
            let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            self.tracking = ClientTracking::parse(&cell(0), &cell(1));
        }
        if !self.tracking.sees_all() {
            self.backend.simple(TRACKING_SQL).await?;
        }
        Ok(())
    }

    async fn reset_connection(&mut self) -> Result<Flow> {
        let (seq, p) = self.backend.wire.read_packet().await?;
        if p.first() == Some(&0x00) {
            // The server dropped everything, session tracking included.
            self.state = State {
                schema: self.state.schema.take(),
                next_stmt_id: self.state.next_stmt_id,
                ..Default::default()
            };
            self.backend.simple(TRACKING_SQL).await?;
            self.tracking = self.default_tracking();
            let st = protocol::parse_ok_head(&p)
                .map(|h| h.status)
                .unwrap_or(status::AUTOCOMMIT);
            self.client
                .write_packet(
                    seq,
                    &ok_payload(st & !status::SESSION_STATE_CHANGED, self.login.client_caps),
                )
                .await?;
        } else {
            self.client.write_packet(seq, &p).await?;
        }
        Ok(Flow::Go)
    }

    /// Relay the backend's response to the client, packet boundaries followed, bytes written
    /// from the buffer they were read into.
    async fn relay(
        &mut self,
        expect: Expect,
        current_stmt: Option<u32>,
        prepare_sql: Option<Vec<u8>>,
    ) -> Result<Flow> {
        let mut r = Response::new(expect, self.backend.framing());
        let client_tracks = self.login.client_caps & cap::SESSION_TRACK != 0;
        let mut scan = self.backend.wire.start;
        let mut prepare_sql = prepare_sql;
        while !r.done() {
            while !r.done() {
                let Some(f) = self.backend.wire.frame_at(scan) else {
                    break;
                };
                let payload = &mut self.backend.wire.buf[f.payload()];
                let kind = r.feed(payload, f.len);
                scan = f.end();
                if let Kind::Ok(st) | Kind::Eof(st) = kind {
                    self.state.in_trans = st & status::IN_TRANS != 0;
                    // A cursor opened (its EOF under classic EOF, its OK under DEPRECATE_EOF),
                    // or its last row fetched.
                    if let Some(s) = current_stmt.and_then(|id| self.state.stmts.get_mut(&id)) {
                        if st & status::CURSOR_EXISTS != 0 && expect == Expect::Execute {
                            s.cursor_open = true;
                        }
                        if st & status::LAST_ROW_SENT != 0 {
                            s.cursor_open = false;
                        }
                    }
                }
                match kind {
                    Kind::Data | Kind::Progress | Kind::Eof(_) => {}
                    Kind::Ok(st) => {
                        if st & status::SESSION_STATE_CHANGED != 0 || !client_tracks {
                            let head = protocol::parse_ok_head(payload);
                            if let Some(head) = head {
                                track_changes(&mut self.state, payload, &head);
                                let rewritten = if client_tracks {
                                    tracking::filter_ok(payload, &head, &self.tracking)
                                } else {
                                    Some(protocol::ok_without_tracking(payload, &head))
                                };
                                if let Some(plain) = rewritten {
                                    let seq = self.backend.wire.buf[f.at + 3];
                                    let start = self.backend.wire.start;
                                    self.client
                                        .write_raw(&self.backend.wire.buf[start..f.at])
                                        .await?;
                                    let mut out = Vec::with_capacity(plain.len() + 4);
                                    protocol::frame(&mut out, seq, &plain);
                                    self.client.write_raw(&out).await?;
                                    self.backend.wire.start = scan;
                                }
                            }
                        }
                    }
                    Kind::Err => {
                        let code = u16::from_le_bytes([
                            payload.get(1).copied().unwrap_or(0),
                            payload.get(2).copied().unwrap_or(0),
                        ]);
                        // A deadlock rolls the whole transaction back.
                        if code == 1213 {
                            self.state.in_trans = false;
                        }
                    }
                    Kind::PrepareOk { params, .. } => {
                        let backend_id =
                            u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
                        let client_id = self.state.next_stmt_id;
                        self.state.next_stmt_id = self.state.next_stmt_id.wrapping_add(1).max(1);
                        payload[1..5].copy_from_slice(&client_id.to_le_bytes());
                        self.state.last_prepared = Some(client_id);
                        let sql = prepare_sql.take().unwrap_or_default();
                        let effects = sql::effects(&sql);
                        self.state.stmts.insert(
                            client_id,
                            Stmt {
                                sql,
                                backend_id,
                                params,
                                types: None,
                                needs_types: false,
                                cursor_open: false,
                                long_data: false,
                                effects,
                            },
                        );
                    }
                    Kind::LocalInfile => {
                        if self.login.client_caps & cap::LOCAL_FILES == 0 {
                            // Never passed on without the client's consent.
                            return Err(Error::protocol(
                                "the backend asked for a LOCAL INFILE the client did not allow",
                            ));
                        }
                        let start = self.backend.wire.start;
                        self.client
                            .write_raw(&self.backend.wire.buf[start..scan])
                            .await?;
                        self.client.flush().await?;
                        self.backend.wire.start = scan;
                        if let Flow::End(msg) = self.local_file().await? {
                            return Ok(Flow::End(msg));
                        }
                    }
                }
            }
            let start = self.backend.wire.start;
            if scan > start {
                self.client
                    .write_raw(&self.backend.wire.buf[start..scan])
                    .await?;
                self.backend.wire.start = scan;
            }
            if r.done() {
                break;
            }
            self.client.flush().await?;
            tokio::select! {
                n = self.backend.wire.fill() => {
                    if n? == 0 {
                        return Err(Error::protocol("the backend closed the connection"));
                    }
                }
                c = self.ctl.changed() => {
                    if c.is_err() {
                        return Ok(Flow::End(""));
                    }
                    let ctl = self.ctl.borrow().clone();
                    if ctl.shutdown {
                        return Ok(Flow::End(""));
                    }
                    if ctl.end_pinned != self.end_seen && (self.in_trans() || ctl.paused) {
                        // A statement still running at the pause bound.
                        self.end_seen = ctl.end_pinned;
                        return Ok(Flow::End(MSG_TRANSACTION));
                    }
                }
            }
            scan = self.backend.wire.start;
        }
        self.client.flush().await?;
        Ok(Flow::Go)
    }

    /// Relay the client's LOCAL INFILE packets to the backend as they come (sequence numbers
    /// kept), up to and including the empty packet that ends the file; an empty packet that
    /// continues a 16 MiB one does not end it.
    async fn local_file(&mut self) -> Result<Flow> {
        let mut scan = self.client.start;
        let mut continues = false;
        loop {
            let mut ended = false;
            while let Some(f) = self.client.frame_at(scan) {
                scan = f.end();
                if f.len == 0 && !continues {
                    ended = true;
                    break;
                }
                continues = f.len == protocol::MAX_PAYLOAD;
            }
            let start = self.client.start;
            if scan > start {
                self.backend
                    .wire
                    .write_raw(&self.client.buf[start..scan])
                    .await?;
                self.client.start = scan;
            }
            if ended {
                self.backend.wire.flush().await?;
                return Ok(Flow::Go);
            }
            self.backend.wire.flush().await?;
            tokio::select! {
                n = self.client.fill() => {
                    if n? == 0 {
                        return Err(Error::protocol("the client closed the connection during LOCAL INFILE"));
                    }
                }
                c = self.ctl.changed() => {
                    if c.is_err() {
                        return Ok(Flow::End(""));
                    }
                    let ctl = self.ctl.borrow().clone();
                    if ctl.shutdown {
                        return Ok(Flow::End(""));
                    }
                    if ctl.end_pinned != self.end_seen && (self.in_trans() || ctl.paused) {
                        self.end_seen = ctl.end_pinned;
                        return Ok(Flow::End(MSG_TRANSACTION));
                    }
                }
            }
            scan = self.client.start;
        }
    }

    /// Move this session to `target`: new connection, state replayed, old one closed.
    async fn reattach(&mut self, target: &Target) -> Result<()> {
        let started = Instant::now();
        let user_vars = if self.state.user_variables {
            // Bounded: an old writer that stopped answering (black-holed, frozen) must not hold
            // the session, or the switch, forever.
            let bound = self.shared.cfg.connect_timeout;
            let read = self.backend.rows(
                "SELECT VARIABLE_NAME, VARIABLE_VALUE, VARIABLE_TYPE, CHARACTER_SET_NAME \
                   FROM information_schema.USER_VARIABLES",
            );
            match tokio::time::timeout(bound, read).await.unwrap_or_else(|_| {
                Err(Error::protocol(format!(
                    "the old backend did not answer within {bound:?}"
                )))
            }) {
                Ok(rows) => rows,
                Err(e) => {
                    Metrics::inc(&self.shared.metrics.user_variables_lost_total);
                    tracing::warn!(session = self.info.id, error = %e,
                        "cannot read the session's user variables (is the user_variables plugin installed?): they do not move");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let deadline = started + self.shared.cfg.drain_bound;
        let mut nb = loop {
            match target
                .connect(&self.login, &self.secret, self.state.schema.as_deref())
                .await
            {
                Ok(b) => break b,
                Err(e @ Error::BackendRefused { .. }) => return Err(e),
                Err(e) => {
                    Metrics::inc(&self.shared.metrics.backend_connect_failures_total);
                    if Instant::now() > deadline {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        if let Some(what) = framing_lost(&self.backend, &nb) {
            tokio::spawn(nb.quit());
            return Err(Error::Backend {
                endpoint: target.backend.to_string(),
                message: format!(
                    "the new backend does not offer {what}: this session's client relies on them"
                ),
            });
        }
        let vars: Vec<(&String, &Vec<u8>)> = self
            .state
            .vars
            .iter()
            .filter(|(k, _)| {
                !tracking::PROXY_OWNED.contains(&k.as_str())
                    && !READ_ONLY_TRACKED.contains(&k.as_str())
            })
            .collect();
        if !vars.is_empty() {
            let assignments: Vec<String> = vars
                .iter()
                .map(|(k, v)| format!("{k}={}", sysvar_literal(v)))
                .collect();
            let sql = format!("SET SESSION {}", assignments.join(", "));
            if nb.simple(&sql).await.is_err() {
                // One at a time: a variable the server reports but nobody may set (read-only,
                // global-only) is skipped; any other failure means the state did not move.
                for a in &assignments {
                    match nb.simple(&format!("SET SESSION {a}")).await {
                        Ok(_) => {}
                        Err(Error::BackendRefused {
                            code: 1238 | 1228, ..
                        }) => {}
                        Err(e) => {
                            return Err(Error::Backend {
                                endpoint: target.backend.to_string(),
                                message: format!("replaying session variables: {e}"),
                            })
                        }
                    }
                }
            }
        }
        if !user_vars.is_empty() {
            let assignments: Vec<String> = user_vars
                .iter()
                .filter_map(|row| user_var_assignment(row))
                .collect();
            if !assignments.is_empty() {
                nb.simple(&format!("SET {}", assignments.join(", ")))
                    .await
                    .map_err(|e| Error::Backend {
                        endpoint: target.backend.to_string(),
                        message: format!("replaying user variables: {e}"),
                    })?;
            }
        }
        for s in self.state.stmts.values_mut() {
            s.backend_id = nb.prepare(&s.sql).await.map_err(|e| Error::Backend {
                endpoint: target.backend.to_string(),
                message: format!("re-preparing a statement: {e}"),
            })?;
            s.needs_types = s.types.is_some();
        }
        self.info
            .backend_thread
            .store(nb.handshake.connection_id, Relaxed);
        let old = std::mem::replace(&mut self.backend, nb);
        tokio::spawn(old.quit());
        tracing::debug!(session = self.info.id, to = %target.backend,
            took_ms = started.elapsed().as_millis() as u64, "session re-attached");
        Ok(())
    }
}

/// What a new backend connection negotiated otherwise than the session's (its answers would
/// be framed otherwise than the client reads them), if anything.
fn framing_lost(old: &BackendConn, new: &BackendConn) -> Option<&'static str> {
    let shaping =
        cap::DEPRECATE_EOF | cap::MULTI_RESULTS | cap::PS_MULTI_RESULTS | cap::PROTOCOL_41;
    if old.caps & shaping != new.caps & shaping {
        return Some("the client's result framing (DEPRECATE_EOF, MULTI_RESULTS) as before");
    }
    if old.ext_caps != new.ext_caps {
        return Some("the same MariaDB extended capabilities");
    }
    None
}

/// How the client proves who it is, decided by the account the server would pick.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    /// mysql_native_password on the greeting's scramble (checked with the stored H2).
    Native,
    /// caching_sha2_password's fast path on the greeting's scramble (checked with the password
    /// from the secrets file).
    Sha2,
    /// client_ed25519 on a fresh 32-byte nonce (checked with the stored public key).
    Ed25519,
    /// A plugin the proxy cannot check or answer: refused with this reason.
    Refuse(String),
}

fn method_for(row: Option<&StoredCredential>, offered: Option<&str>, has_password: bool) -> Method {
    // No account: the exchange a server runs for an unknown user, then "Access denied".
    let Some(row) = row else {
        return Method::Native;
    };
    let offers_sha2 = offered == Some(CACHING_SHA2);
    match (&row.stored, row.plugin.as_str()) {
        (Stored::Empty | Stored::Native(_), _) if offers_sha2 && has_password => Method::Sha2,
        (Stored::Empty | Stored::Native(_), _) => Method::Native,
        (Stored::Ed25519(_), _) => Method::Ed25519,
        (Stored::Other, CACHING_SHA2) if has_password => Method::Sha2,
        (Stored::Other, auth::PARSEC) => Method::Refuse(
            "parsec (MariaDB 11.6+) is not supported by the proxy; give the user ed25519 or \
             mysql_native_password, or connect to the server directly"
                .into(),
        ),
        (Stored::Other, plugin) => Method::Refuse(format!(
            "it authenticates with plugin '{plugin}', which the proxy cannot check or answer{}",
            if plugin == CACHING_SHA2 {
                " without the user's password: add the user to the proxy's secrets file \
                 (--secrets-file, ProxyConfig::secrets_file)"
            } else {
                "; connect to the server directly"
            }
        )),
    }
}

/// The outcome of [`authenticate`]; a refusal has been sent to the client.
enum Login {
    /// `next`: the sequence number of the packet that ends the exchange (the OK).
    Accepted {
        secret: SessionSecret,
        next: u8,
    },
    Refused,
}

/// Check that the client is who it says, as the server would: the account the server picks
/// for `user` from `ip` (the anonymous one included), its plugin (the client is switched to it
/// with an AuthSwitchRequest when it offered another), its password, its transport rule. Used
/// for the login and for COM_CHANGE_USER; `seq` is the sequence number of the client's packet
/// and `response` its answer to `scramble` with the plugin it `offered`.
#[allow(clippy::too_many_arguments)]
async fn authenticate(
    shared: &Shared,
    client: &mut Wire,
    mut seq: u8,
    ip: std::net::IpAddr,
    user: &str,
    offered: Option<&str>,
    mut response: Vec<u8>,
    scramble: &[u8; 20],
) -> Result<Login> {
    let host = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    };
    let (mut rows, cached) = match shared.stored_credentials(user, false).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(user = %user, error = %e, "cannot read the user's accounts");
            send_err(
                shared,
                client,
                seq.wrapping_add(1),
                1045,
                "28000",
                &format!("dbshift proxy: cannot check the password of '{user}': {e}"),
            )
            .await;
            return Ok(Login::Refused);
        }
    };
    let password = shared.secrets.get(user).cloned();
    let mut row = auth::choose(&rows, user, ip).cloned();
    let method = method_for(row.as_ref(), offered, password.is_some());
    if let Method::Refuse(why) = &method {
        Metrics::inc(&shared.metrics.auth_failures_total);
        send_err(
            shared,
            client,
            seq.wrapping_add(1),
            1251,
            "08004",
            &format!("dbshift proxy: user '{user}': {why}"),
        )
        .await;
        return Ok(Login::Refused);
    }
    // The client answers with the plugin and challenge of the method, switched to it if needed.
    let (plugin, challenge): (&str, Vec<u8>) = match method {
        Method::Ed25519 => {
            let mut nonce = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
            (CLIENT_ED25519, nonce.to_vec())
        }
        Method::Sha2 => (CACHING_SHA2, scramble.to_vec()),
        _ => (NATIVE_PASSWORD, scramble.to_vec()),
    };
    // The client answered the greeting's scramble with the method's plugin already; a client
    // whose plugin is not the greeting's may have sent nothing yet (libmariadb does): it is
    // asked again. ed25519's nonce is never the greeting's.
    let answered_already = match offered.unwrap_or(NATIVE_PASSWORD) {
        NATIVE_PASSWORD => plugin == NATIVE_PASSWORD,
        o => o == plugin && plugin == CACHING_SHA2 && !response.is_empty(),
    };
    if !answered_already {
        let mut data = challenge.clone();
        if plugin != CLIENT_ED25519 {
            data.push(0);
        }
        client
            .write_packet(
                seq.wrapping_add(1),
                &protocol::auth_switch_payload(plugin, &data),
            )
            .await?;
        let (s, p) = tokio::time::timeout(Duration::from_secs(10), client.read_packet())
            .await
            .map_err(|_| Error::protocol("no auth switch response in time"))??;
        seq = s;
        response = p;
    }
    let check = |row: Option<&StoredCredential>| -> Option<SessionSecret> {
        let row = row?;
        match (&method, &row.stored) {
            (Method::Native, Stored::Empty) => response.is_empty().then_some(SessionSecret::Empty),
            (Method::Native, Stored::Native(h2)) => {
                auth::verify_native(scramble, &response, Some(h2))
            }
            (Method::Sha2, Stored::Empty | Stored::Native(_) | Stored::Other) => {
                let p = password.as_ref()?;
                auth::sha256_scramble_matches(scramble, &response, p)
                    .then(|| SessionSecret::Password(p.clone()))
            }
            (Method::Ed25519, Stored::Ed25519(pk)) => {
                if !auth::ed25519_verify(pk, &challenge, &response) {
                    return None;
                }
                // Verified; the secret to sign the backends' nonces comes from the file.
                Some(match &password {
                    Some(p) => SessionSecret::Password(p.clone()),
                    None => SessionSecret::Empty,
                })
            }
            _ => None,
        }
    };
    let mut verdict = check(row.as_ref());
    // A password changed since the accounts were cached: read them again, once.
    if verdict.is_none() && cached {
        if let Ok((fresh, _)) = shared.stored_credentials(user, true).await {
            rows = fresh;
            let again = auth::choose(&rows, user, ip).cloned();
            if method_for(again.as_ref(), offered, password.is_some()) == method {
                row = again;
                verdict = check(row.as_ref());
            }
        }
    }
    let using = if response.is_empty() { "NO" } else { "YES" };
    let denied = format!("Access denied for user '{user}'@'{host}' (using password: {using})");
    let (Some(secret), Some(row)) = (verdict, row) else {
        Metrics::inc(&shared.metrics.auth_failures_total);
        send_err(shared, client, seq.wrapping_add(1), 1045, "28000", &denied).await;
        return Ok(Login::Refused);
    };
    // ed25519 verified: signing for the backend needs the password, which must be the
    // account's.
    if let Stored::Ed25519(pk) = &row.stored {
        let refusal = match &password {
            None => Some((
                1251,
                "08004",
                format!(
                    "dbshift proxy: user '{user}' authenticates with plugin 'ed25519': the proxy \
                     needs the user's password to authenticate to the server; add it to the \
                     proxy's secrets file (--secrets-file, ProxyConfig::secrets_file)"
                ),
            )),
            Some(p) if &auth::ed25519_public_key(p) != pk => Some((
                1045,
                "28000",
                format!(
                    "{denied}: dbshift proxy: the password of '{user}' in the secrets file is \
                     not the account's; update the secrets file"
                ),
            )),
            Some(_) => None,
        };
        if let Some((code, state, message)) = refusal {
            Metrics::inc(&shared.metrics.auth_failures_total);
            send_err(shared, client, seq.wrapping_add(1), code, state, &message).await;
            return Ok(Login::Refused);
        }
    }
    // The account's transport rule, judged on the client's leg as the server would judge a
    // direct connection (the backend leg is the proxy's own TLS and proves nothing).
    let client_tls = matches!(client.stream, Stream::ServerTls(_));
    let refusal = match row.tls {
        auth::TlsRule::None => None,
        auth::TlsRule::Tls if client_tls => None,
        auth::TlsRule::Tls => Some(denied.clone()),
        auth::TlsRule::Certificate => Some(format!(
            "{denied}: dbshift proxy: the account requires a client certificate (REQUIRE X509, \
             ISSUER, SUBJECT or CIPHER), which the proxy cannot pass to the server; connect to \
             the server directly"
        )),
    };
    if let Some(message) = refusal {
        Metrics::inc(&shared.metrics.auth_failures_total);
        send_err(shared, client, seq.wrapping_add(1), 1045, "28000", &message).await;
        return Ok(Login::Refused);
    }
    if method == Method::Sha2 {
        // caching_sha2_password's "fast authentication succeeded", then the OK.
        seq = seq.wrapping_add(1);
        client.write_packet(seq, &[0x01, 0x03]).await?;
    }
    Ok(Login::Accepted {
        secret,
        next: seq.wrapping_add(1),
    })
}

impl Session {
    /// COM_CHANGE_USER: the new user authenticated as at login, then a new backend connection
    /// as that user with the requested schema and character set; the session's state is reset
    /// (as the server resets it). On failure the client gets the server's ERR and the session
    /// keeps its user and backend, reset as the server resets a session whose change of user
    /// failed.
    async fn change_user(&mut self, payload: &[u8], seq: u8) -> Result<Flow> {
        let req = match protocol::parse_change_user(payload, self.login.client_caps) {
            Ok(r) => r,
            Err(e) => {
                send_err(
                    &self.shared,
                    &mut self.client,
                    seq.wrapping_add(1),
                    1043,
                    "08S01",
                    "Bad handshake",
                )
                .await;
                return Err(e);
            }
        };
        let shared = self.shared.clone();
        let login = authenticate(
            &shared,
            &mut self.client,
            seq,
            self.info.client.ip(),
            &req.user,
            req.auth_plugin.as_deref(),
            req.auth_response.clone(),
            &self.scramble,
        )
        .await?;
        let (secret, next) = match login {
            Login::Accepted { secret, next } => (secret, next),
            Login::Refused => {
                self.reset_kept_session().await?;
                return Ok(Flow::Go);
            }
        };
        let login = LoginSpec {
            user: req.user.clone(),
            client_caps: self.login.client_caps,
            client_ext_caps: self.login.client_ext_caps,
            max_packet: self.login.max_packet,
            charset: req.charset.unwrap_or(self.login.charset),
            connect_attrs: self.login.connect_attrs.clone(),
        };
        let target = self.ctl.borrow().target.clone();
        let nb = match target
            .connect(&login, &secret, req.database.as_deref())
            .await
        {
            Ok(b) => b,
            Err(e) => {
                let (code, state, message) = match e {
                    Error::BackendRefused {
                        code,
                        state,
                        message,
                        ..
                    } => (code, state, message),
                    e => {
                        Metrics::inc(&self.shared.metrics.backend_connect_failures_total);
                        tracing::warn!(session = self.info.id, error = %e,
                            "cannot open a backend connection for a change of user");
                        (
                            2013,
                            "HY000".to_string(),
                            format!("dbshift proxy: the backend is not reachable: {e}"),
                        )
                    }
                };
                send_err(&self.shared, &mut self.client, next, code, &state, &message).await;
                self.reset_kept_session().await?;
                return Ok(Flow::Go);
            }
        };
        let status_flags = nb.status;
        self.info
            .backend_thread
            .store(nb.handshake.connection_id, Relaxed);
        let old = std::mem::replace(&mut self.backend, nb);
        tokio::spawn(old.quit());
        *self.info.user.lock().unwrap_or_else(|p| p.into_inner()) = req.user.clone();
        self.login = login;
        self.secret = secret;
        // Everything of the old session is gone with its connection, the client's tracking
        // settings too.
        self.tracking = self.default_tracking();
        self.state = State {
            schema: req.database.clone(),
            next_stmt_id: self.state.next_stmt_id,
            ..Default::default()
        };
        tracing::debug!(session = self.info.id, user = %req.user, "user changed");
        self.client
            .write_packet(next, &ok_payload(status_flags, self.login.client_caps))
            .await?;
        Ok(Flow::Go)
    }

    /// After a failed COM_CHANGE_USER the server keeps the previous user and schema but has
    /// already reset the session (its transaction, variables, temporary tables, locks and
    /// prepared statements are gone): COM_RESET_CONNECTION does that on the kept backend.
    async fn reset_kept_session(&mut self) -> Result<()> {
        self.backend.command(&[com::RESET_CONNECTION]).await?;
        self.backend.simple(TRACKING_SQL).await?;
        self.tracking = self.default_tracking();
        self.state = State {
            schema: self.state.schema.take(),
            next_stmt_id: self.state.next_stmt_id,
            ..Default::default()
        };
        Ok(())
    }
}

/// Record the parameter types of an EXECUTE, or put the last ones back in when the statement
/// was re-prepared on a backend that never saw them. Returns a rewritten payload if needed.
fn execute_types(payload: &[u8], s: &mut Stmt, single: bool) -> Option<Vec<u8>> {
    if s.params == 0 || !single {
        return None;
    }
    let n = s.params as usize;
    let flag_at = 10 + n.div_ceil(8);
    let flag = *payload.get(flag_at)?;
    if flag == 1 {
        s.types = payload
            .get(flag_at + 1..flag_at + 1 + 2 * n)
            .map(|t| t.to_vec());
        s.needs_types = false;
        return None;
    }
    if s.needs_types {
        let types = s.types.as_ref()?;
        let mut p = Vec::with_capacity(payload.len() + types.len());
        p.extend_from_slice(&payload[..flag_at]);
        p.push(1);
        p.extend_from_slice(types);
        p.extend_from_slice(&payload[flag_at + 1..]);
        s.needs_types = false;
        return Some(p);
    }
    None
}

/// The same for a COM_STMT_BULK_EXECUTE: its types (2 bytes per parameter, as EXECUTE's)
/// follow the flags when STMT_BULK_FLAG_CLIENT_SEND_TYPES (128) is set.
fn bulk_types(payload: &[u8], s: &mut Stmt, single: bool) -> Option<Vec<u8>> {
    const SEND_TYPES: u16 = 128;
    if s.params == 0 || !single {
        return None;
    }
    let n = s.params as usize;
    let flags = u16::from_le_bytes([*payload.get(5)?, *payload.get(6)?]);
    if flags & SEND_TYPES != 0 {
        s.types = payload.get(7..7 + 2 * n).map(|t| t.to_vec());
        s.needs_types = false;
        return None;
    }
    if s.needs_types {
        let types = s.types.as_ref()?;
        let mut p = Vec::with_capacity(payload.len() + types.len());
        p.extend_from_slice(&payload[..5]);
        p.extend_from_slice(&(flags | SEND_TYPES).to_le_bytes());
        p.extend_from_slice(types);
        p.extend_from_slice(&payload[7..]);
        s.needs_types = false;
        return Some(p);
    }
    None
}

fn track_changes(state: &mut State, payload: &[u8], head: &protocol::OkHead) {
    for c in protocol::session_changes(payload, head) {
        match c {
            StateChange::SystemVariable(name, value) => {
                state
                    .vars
                    .insert(String::from_utf8_lossy(name).into_owned(), value.to_vec());
            }
            StateChange::Schema(s) => {
                state.schema =
                    Some(String::from_utf8_lossy(s).into_owned()).filter(|s| !s.is_empty());
            }
            StateChange::StateChanged | StateChange::Other => {}
        }
    }
}

/// A system variable's reported value as a literal `SET SESSION` accepts.
fn sysvar_literal(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    let numeric = !s.is_empty()
        && s.strip_prefix('-').unwrap_or(&s).split_once('.').map_or(
            s.strip_prefix('-')
                .unwrap_or(&s)
                .bytes()
                .all(|c| c.is_ascii_digit()),
            |(a, b)| {
                !a.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            },
        );
    if numeric || s == "NULL" {
        s.into_owned()
    } else {
        dbshift_db::quote_literal(&s)
    }
}

/// `@name = value` from a row of information_schema.USER_VARIABLES.
fn user_var_assignment(row: &[Option<Vec<u8>>]) -> Option<String> {
    let name = String::from_utf8_lossy(row.first()?.as_ref()?).into_owned();
    let name = format!("@`{}`", name.replace('`', "``"));
    let value = match row.get(1).and_then(|v| v.as_ref()) {
        None => return Some(format!("{name}=NULL")),
        Some(v) => v,
    };
    let kind = row
        .get(2)
        .and_then(|v| v.as_ref())
        .map(|v| String::from_utf8_lossy(v).to_ascii_uppercase())
        .unwrap_or_default();
    let hex: String = value.iter().map(|b| format!("{b:02X}")).collect();
    let literal = match kind.as_str() {
        "INT" | "DECIMAL" | "DOUBLE" | "REAL" => String::from_utf8_lossy(value).into_owned(),
        _ => match row.get(3).and_then(|v| v.as_ref()) {
            Some(cs) if !cs.is_empty() && cs.as_slice() != b"binary" => {
                format!("_{} X'{hex}'", String::from_utf8_lossy(cs))
            }
            _ => format!("X'{hex}'"),
        },
    };
    Some(format!("{name}={literal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysvar_literals() {
        assert_eq!(sysvar_literal(b"100"), "100");
        assert_eq!(sysvar_literal(b"-1.5"), "-1.5");
        assert_eq!(sysvar_literal(b"OFF"), "'OFF'");
        assert_eq!(sysvar_literal(b"it's"), "'it''s'");
        assert_eq!(sysvar_literal(b""), "''");
    }

    #[test]
    fn user_variable_literals() {
        let row = vec![
            Some(b"x".to_vec()),
            Some(b"hi".to_vec()),
            Some(b"VARCHAR".to_vec()),
            Some(b"utf8mb4".to_vec()),
        ];
        assert_eq!(
            user_var_assignment(&row).as_deref(),
            Some("@`x`=_utf8mb4 X'6869'")
        );
        let row = vec![
            Some(b"n".to_vec()),
            Some(b"5".to_vec()),
            Some(b"INT".to_vec()),
            None,
        ];
        assert_eq!(user_var_assignment(&row).as_deref(), Some("@`n`=5"));
    }
}
