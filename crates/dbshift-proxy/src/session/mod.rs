//! One client session: the proxy's handshake, authentication, then a loop of one command at a
//! time forwarded to the session's backend connection and its response relayed to the end.
//!
//! Between two commands the session is at a boundary, the only place where it obeys the
//! control: it holds while paused, re-attaches to a new backend, or ends itself with a clear
//! error when told to. It must never answer a held command with an error, and never log the
//! session's secret.
//!
//! Its parts: [`login`] (greeting, authentication, COM_CHANGE_USER), [`command`] (the loop and
//! each command forwarded), [`relay`] (the response back to the client), [`prepared`]
//! (statements' parameter types) and [`switch`] (the boundary and the re-attach).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::auth::SessionSecret;
use crate::backend::{BackendConn, LoginSpec};
use crate::metrics::Metrics;
use crate::protocol::{com, err_payload};
use crate::shared::{pin, Control, IdClaim, SessionInfo, Shared};
use crate::sql::Effects;
use crate::tracking::ClientTracking;
use crate::wire::Wire;

mod command;
mod login;
mod prepared;
mod relay;
mod switch;

/// ER_CONNECTION_KILLED: what a client sees when the proxy ends its session.
const ENDED_CODE: u16 = 1927;
const MSG_TRANSACTION: &str = "dbshift proxy: the writer is being switched; your open \
     transaction was ended: retry it";

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
    _id: IdClaim,
}

/// How a boundary ends.
enum Flow {
    Go,
    End(&'static str),
}

async fn send_err(shared: &Shared, wire: &mut Wire, seq: u8, code: u16, state: &str, msg: &str) {
    Metrics::inc(&shared.metrics.errors_sent_total);
    let _ = wire.write_packet(seq, &err_payload(code, state, msg)).await;
}

impl Session {
    /// A change of the control channel seen while a statement or a LOCAL INFILE is under way
    /// (`closed`: the proxy is gone): the session ends on shutdown, and at the pause bound
    /// when it holds a transaction or the proxy is paused; otherwise it goes on.
    fn ends_mid_statement(&mut self, closed: bool) -> Option<Flow> {
        if closed {
            return Some(Flow::End(""));
        }
        let ctl = self.ctl.borrow().clone();
        if ctl.shutdown {
            return Some(Flow::End(""));
        }
        if ctl.end_pinned != self.end_seen && (self.in_trans() || ctl.paused) {
            // A statement still running at the pause bound.
            self.end_seen = ctl.end_pinned;
            return Some(Flow::End(MSG_TRANSACTION));
        }
        None
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
}
