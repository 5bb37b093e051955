//! The command loop: one client command at a time, checked against the control at each
//! boundary, rewritten where ids differ between the proxy and the backend (statement ids,
//! connection ids of KILL), forwarded, and its response relayed.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::prepared::{bulk_types, execute_types};
use super::{send_err, Flow, Session, State, LAST_STMT_ID};
use crate::backend::TRACKING_SQL;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protocol::{self, com, ok_payload, status};
use crate::response::Expect;
use crate::sql;
use crate::tracking::{self, ClientTracking};

impl Session {
    pub(super) async fn serve(&mut self) -> Result<()> {
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
    pub(super) fn default_tracking(&self) -> ClientTracking {
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

    /// Relay the client's LOCAL INFILE packets to the backend as they come (sequence numbers
    /// kept), up to and including the empty packet that ends the file; an empty packet that
    /// continues a 16 MiB one does not end it.
    pub(super) async fn local_file(&mut self) -> Result<Flow> {
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
                    if let Some(end) = self.ends_mid_statement(c.is_err()) {
                        return Ok(end);
                    }
                }
            }
            scan = self.client.start;
        }
    }
}
