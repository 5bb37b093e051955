//! A backend's response relayed to the client, packet boundaries followed, with what it says
//! about the session (transaction, schema, variables, prepared statements) recorded on the
//! way.

use super::{Flow, Session, State, Stmt};
use crate::error::{Error, Result};
use crate::protocol::{self, cap, status, StateChange};
use crate::response::{Expect, Kind, Response};
use crate::sql;
use crate::tracking;

impl Session {
    /// Relay the backend's response to the client, packet boundaries followed, bytes written
    /// from the buffer they were read into.
    pub(super) async fn relay(
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
                    if let Some(end) = self.ends_mid_statement(c.is_err()) {
                        return Ok(end);
                    }
                }
            }
            scan = self.backend.wire.start;
        }
        self.client.flush().await?;
        Ok(Flow::Go)
    }
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
