//! The session tracking the proxy needs, kept out of the client's sight.
//!
//! Every backend session of the proxy runs with `session_track_schema=ON` and
//! `session_track_system_variables='*'` (the OK packets then say every variable and schema a
//! statement changed, which is what a switch replays). A client that asked for session tracking
//! would see more than it asked for: the proxy keeps the client's own view of those two
//! variables (the server's defaults at connect, then whatever the client sets) and filters the
//! state information of each OK packet down to what the client's settings would have produced.
//! Everything else the tracker reports (state changes, transaction state, GTIDs) is the
//! client's own setting on the server and passes through unchanged.

use crate::protocol::{self, lenenc_bytes, put_lenenc_bytes, status};

/// The variables the proxy owns on its backend sessions (the client's values are kept here).
pub const PROXY_OWNED: &[&str] = &["session_track_schema", "session_track_system_variables"];

/// What to read from a server for a client's starting view.
pub const DEFAULTS_SQL: &str =
    "SELECT @@GLOBAL.session_track_schema, @@GLOBAL.session_track_system_variables";

/// What to read from the client's own session after it set a tracking variable.
pub const SESSION_SQL: &str =
    "SELECT @@SESSION.session_track_schema, @@SESSION.session_track_system_variables";

/// The tracking a client would have on a direct connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTracking {
    pub schema: bool,
    /// `None`: every variable (`*`); else the names, lower case.
    pub vars: Option<Vec<String>>,
}

impl Default for ClientTracking {
    /// MariaDB 10.11's defaults.
    fn default() -> ClientTracking {
        ClientTracking::parse(
            b"1",
            b"autocommit,character_set_client,character_set_connection,\
              character_set_results,time_zone",
        )
    }
}

impl ClientTracking {
    /// From the values of `session_track_schema` (`1`, `ON`) and
    /// `session_track_system_variables` (a comma list, `*`, or empty).
    pub fn parse(schema: &[u8], vars: &[u8]) -> ClientTracking {
        let schema = schema.eq_ignore_ascii_case(b"1") || schema.eq_ignore_ascii_case(b"on");
        let text = String::from_utf8_lossy(vars).to_ascii_lowercase();
        let names: Vec<String> = text
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let vars = if names.iter().any(|n| n == "*") {
            None
        } else {
            Some(names)
        };
        ClientTracking { schema, vars }
    }

    /// Does the client see everything the proxy's tracking reports?
    pub fn sees_all(&self) -> bool {
        self.schema && self.vars.is_none()
    }

    fn keeps_var(&self, name: &[u8]) -> bool {
        match &self.vars {
            None => true,
            Some(names) => names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name)),
        }
    }
}

/// Does a statement text set (or may it set) a tracking variable the proxy owns?
pub fn mentions_tracking(sql: &[u8]) -> bool {
    PROXY_OWNED.iter().any(|name| {
        sql.windows(name.len())
            .any(|w| w.eq_ignore_ascii_case(name.as_bytes()))
    })
}

/// The OK packet (`payload`, whose head is `head`) as a client tracking `view` would have
/// received it from the server: state entries the client did not ask for are dropped, and with
/// none left the SESSION_STATE_CHANGED flag goes too. `None`: unchanged.
pub fn filter_ok(
    payload: &[u8],
    head: &protocol::OkHead,
    view: &ClientTracking,
) -> Option<Vec<u8>> {
    if head.status & status::SESSION_STATE_CHANGED == 0 || view.sees_all() {
        return None;
    }
    let mut pos = head.info_at;
    let info = lenenc_bytes(payload, &mut pos)?;
    let block = lenenc_bytes(payload, &mut pos)?;
    let mut kept = Vec::with_capacity(block.len());
    let mut dropped = false;
    let mut p = 0;
    while p < block.len() {
        let at = p;
        let kind = block[p];
        p += 1;
        let data = lenenc_bytes(block, &mut p)?;
        let keep = match kind {
            0 => {
                let mut q = 0;
                lenenc_bytes(data, &mut q).is_some_and(|name| view.keeps_var(name))
            }
            1 => view.schema,
            _ => true,
        };
        if keep {
            kept.extend_from_slice(&block[at..p]);
        } else {
            dropped = true;
        }
    }
    if !dropped {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len());
    out.extend_from_slice(&payload[..head.info_at - 4]);
    let st = if kept.is_empty() {
        head.status & !status::SESSION_STATE_CHANGED
    } else {
        head.status
    };
    out.extend_from_slice(&st.to_le_bytes());
    out.extend_from_slice(&payload[head.info_at - 2..head.info_at]);
    put_lenenc_bytes(&mut out, info);
    if !kept.is_empty() {
        put_lenenc_bytes(&mut out, &kept);
    }
    out.extend_from_slice(&payload[pos..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_ok_head, session_changes, StateChange};

    fn entry(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut data = Vec::new();
        for p in parts {
            put_lenenc_bytes(&mut data, p);
        }
        let mut e = vec![kind];
        put_lenenc_bytes(&mut e, &data);
        e
    }

    fn ok_with(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0x00, 0, 0];
        p.extend_from_slice(&(status::AUTOCOMMIT | status::SESSION_STATE_CHANGED).to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        put_lenenc_bytes(&mut p, b"");
        put_lenenc_bytes(&mut p, &entries.concat());
        p
    }

    #[test]
    fn defaults_keep_what_a_direct_client_sees() {
        let ok = ok_with(&[
            entry(0, &[b"time_zone", b"+02:00"]),
            entry(0, &[b"sql_mode", b"ANSI"]),
            entry(1, &[b"app"]),
            entry(2, &[b"1"]),
        ]);
        let head = parse_ok_head(&ok).unwrap();
        let out = filter_ok(&ok, &head, &ClientTracking::default()).expect("filtered");
        let h = parse_ok_head(&out).unwrap();
        assert_eq!(
            session_changes(&out, &h),
            vec![
                StateChange::SystemVariable(b"time_zone", b"+02:00"),
                StateChange::Schema(b"app"),
                StateChange::StateChanged,
            ]
        );
    }

    #[test]
    fn nothing_left_clears_the_flag() {
        let ok = ok_with(&[entry(0, &[b"sql_mode", b"ANSI"]), entry(1, &[b"app"])]);
        let head = parse_ok_head(&ok).unwrap();
        let view = ClientTracking::parse(b"OFF", b"");
        let out = filter_ok(&ok, &head, &view).expect("filtered");
        let h = parse_ok_head(&out).unwrap();
        assert_eq!(h.status, status::AUTOCOMMIT);
        assert_eq!(
            out.len(),
            h.info_at + 1,
            "an empty info string and nothing else"
        );
    }

    #[test]
    fn a_client_that_tracks_everything_gets_the_packet_as_it_is() {
        let ok = ok_with(&[entry(0, &[b"sql_mode", b"ANSI"])]);
        let head = parse_ok_head(&ok).unwrap();
        assert!(filter_ok(&ok, &head, &ClientTracking::parse(b"ON", b"*")).is_none());
        let kept = ClientTracking::parse(b"ON", b"SQL_MODE, autocommit");
        assert!(filter_ok(&ok, &head, &kept).is_none());
    }

    #[test]
    fn tracking_statements_are_noticed() {
        assert!(mentions_tracking(
            b"SET SESSION_TRACK_SYSTEM_VARIABLES = 'autocommit'"
        ));
        assert!(mentions_tracking(b"set @@session.session_track_schema=0"));
        assert!(!mentions_tracking(b"SET session_track_state_change=1"));
        assert!(!mentions_tracking(b"SELECT 1"));
    }
}
