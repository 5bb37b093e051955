//! A session's part in a switch of the writer: at each boundary it obeys the control (holds
//! while paused, ends itself when told or when it holds state that cannot move), and
//! re-attaches to the new backend with its state replayed (schema, variables, user variables,
//! prepared statements).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{Flow, Session, MSG_TRANSACTION};
use crate::backend::{BackendConn, Target};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protocol::cap;
use crate::shared::Control;
use crate::tracking;

/// Variables the tracker reports that no session may set; never replayed.
const READ_ONLY_TRACKED: &[&str] = &[
    "last_gtid",
    "in_transaction",
    "warning_count",
    "error_count",
];

const MSG_UNMOVABLE: &str = "dbshift proxy: the writer was switched and this session held \
     state that cannot move to the new writer";
const MSG_REATTACH: &str =
    "dbshift proxy: the writer was switched and this session could not be re-attached";

impl Session {
    /// Obey the control at a boundary.
    pub(super) async fn at_boundary(&mut self) -> Flow {
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
    pub(super) fn may_forward(&self, ctl: &Control) -> bool {
        if !ctl.paused {
            return true;
        }
        if self.in_trans() {
            return true;
        }
        // Sessions with state that cannot move may release it while the pause drains.
        self.state.unmovable() != 0 && !ctl.drain_over && ctl.generation == self.generation
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
