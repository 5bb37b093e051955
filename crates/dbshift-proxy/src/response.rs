//! Where a command's response ends: a small state machine fed one packet at a time.
//!
//! It classifies each packet (row data, OK, EOF, ERR, PREPARE_OK) from its first byte and
//! length only, so rows are never parsed; status flags are read from OK and EOF packets.
//! Multi-results (SERVER_MORE_RESULTS_EXISTS), CLIENT_DEPRECATE_EOF, packets split at 16 MiB,
//! LOCAL INFILE requests and MariaDB's progress reports and "metadata follows" byte are
//! followed.

use crate::protocol::{com, eof_status, parse_ok_head, status, MAX_PAYLOAD};

/// What the connection negotiated that changes where a response ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Framing {
    /// CLIENT_DEPRECATE_EOF: no EOF after column definitions, rows end with an OK (0xFE).
    pub deprecate_eof: bool,
    /// MARIADB_CLIENT_PROGRESS: ERR-shaped packets with code 0xFFFF may come before the end
    /// and do not end anything.
    pub progress: bool,
    /// MARIADB_CLIENT_CACHE_METADATA: a result set's column count is followed by one byte,
    /// 0 when its column definitions are left out (the EOF after them is still sent without
    /// DEPRECATE_EOF).
    pub cache_metadata: bool,
}

/// The error code of a MariaDB progress report.
pub const PROGRESS_CODE: u16 = 0xFFFF;

/// What kind of response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR or EOF (COM_PING, COM_INIT_DB, COM_SET_OPTION, COM_STMT_RESET, ...), or one
    /// packet of any content (COM_STATISTICS).
    Single,
    /// Text result sets or OK/ERR, possibly several (COM_QUERY).
    Query,
    /// Binary result sets or OK/ERR (COM_STMT_EXECUTE, COM_STMT_BULK_EXECUTE).
    Execute,
    /// PREPARE_OK with parameter and column definitions, or ERR.
    Prepare,
    /// Rows up to an EOF/OK terminator, or ERR (COM_STMT_FETCH, COM_FIELD_LIST).
    Rows,
    /// No response at all (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT).
    Nothing,
}

impl Expect {
    pub fn of(command: u8) -> Expect {
        match command {
            com::QUERY => Expect::Query,
            com::STMT_EXECUTE | com::STMT_BULK_EXECUTE => Expect::Execute,
            com::STMT_PREPARE => Expect::Prepare,
            com::STMT_FETCH | com::FIELD_LIST => Expect::Rows,
            com::STMT_CLOSE | com::STMT_SEND_LONG_DATA | com::QUIT => Expect::Nothing,
            _ => Expect::Single,
        }
    }
}

/// The class of one packet of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    /// An OK packet (header 0x00, or 0xFE ending rows under DEPRECATE_EOF) with its status.
    Ok(u16),
    /// A classic EOF packet with its status.
    Eof(u16),
    Err,
    /// COM_STMT_PREPARE's first packet: statement id at payload[1..5].
    PrepareOk {
        columns: u16,
        params: u16,
    },
    /// The server asks for a LOCAL INFILE: the client's file packets follow, up to an empty
    /// one, then the response goes on (OK or ERR).
    LocalInfile,
    /// A MariaDB progress report: relayed, ends nothing.
    Progress,
}

#[derive(Debug, Clone, Copy)]
enum State {
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
    Params { left: u16, columns: u16 },
    ParamsEof { columns: u16 },
    PrepColumns(u16),
    PrepColumnsEof,
    Done,
}

#[derive(Debug)]
pub struct Response {
    expect: Expect,
    state: State,
    deprecate_eof: bool,
    framing: Framing,
    continuation: bool,
}

impl Response {
    pub fn new(expect: Expect, framing: Framing) -> Response {
        let state = match expect {
            Expect::Rows => State::Rows,
            Expect::Nothing => State::Done,
            _ => State::First,
        };
        Response {
            expect,
            state,
            deprecate_eof: framing.deprecate_eof,
            framing,
            continuation: false,
        }
    }

    pub fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Feed the next packet (its payload as far as it is needed, and its length).
    pub fn feed(&mut self, payload: &[u8], len: usize) -> Kind {
        if self.continuation {
            self.continuation = len == MAX_PAYLOAD;
            return Kind::Data;
        }
        self.continuation = len == MAX_PAYLOAD;
        let first = payload.first().copied().unwrap_or(0);
        // No row or column definition starts with 0xFF: this is an ERR or, when negotiated, a
        // progress report, which may come anywhere before the end.
        if first == 0xFF
            && self.framing.progress
            && !matches!(self.state, State::Done)
            && payload.get(1..3) == Some(&PROGRESS_CODE.to_le_bytes()[..])
        {
            return Kind::Progress;
        }
        // An ERR ends a response wherever it comes: no column or parameter definition, row,
        // EOF or OK starts with 0xFF (a server that fails while sending its metadata sends
        // one there; read as a definition, the client would wait for rows forever).
        if first == 0xFF && !matches!(self.state, State::Done) {
            self.state = State::Done;
            return Kind::Err;
        }
        match self.state {
            State::Done => Kind::Data,
            State::First => self.first(first, payload, len),
            State::Columns(n) => {
                self.state = if n > 1 {
                    State::Columns(n - 1)
                } else if self.deprecate_eof {
                    State::Rows
                } else {
                    State::ColumnsEof
                };
                Kind::Data
            }
            State::ColumnsEof => {
                // An execute that fails after its column definitions (a cursor whose result
                // cannot be materialized) ends there with an ERR instead of the EOF.
                if first == 0xFF {
                    self.state = State::Done;
                    return Kind::Err;
                }
                let st = eof_status(payload).unwrap_or(0);
                // A cursor was opened: the rows come with COM_STMT_FETCH.
                self.state = if st & status::CURSOR_EXISTS != 0 && self.expect == Expect::Execute {
                    State::Done
                } else {
                    State::Rows
                };
                Kind::Eof(st)
            }
            State::Rows => {
                if first == 0xFF {
                    self.state = State::Done;
                    return Kind::Err;
                }
                let terminator = first == 0xFE
                    && if self.deprecate_eof {
                        len < MAX_PAYLOAD
                    } else {
                        len < 9
                    };
                if !terminator {
                    return Kind::Data;
                }
                let (st, kind) = if self.deprecate_eof {
                    let st = parse_ok_head(payload).map(|h| h.status).unwrap_or(0);
                    (st, Kind::Ok(st))
                } else {
                    let st = eof_status(payload).unwrap_or(0);
                    (st, Kind::Eof(st))
                };
                self.after_end(st);
                kind
            }
            State::Params { left, columns } => {
                self.state = if left > 1 {
                    State::Params {
                        left: left - 1,
                        columns,
                    }
                } else if !self.deprecate_eof {
                    State::ParamsEof { columns }
                } else {
                    self.columns_or_done(columns)
                };
                Kind::Data
            }
            State::ParamsEof { columns } => {
                self.state = self.columns_or_done(columns);
                Kind::Eof(eof_status(payload).unwrap_or(0))
            }
            State::PrepColumns(n) => {
                self.state = if n > 1 {
                    State::PrepColumns(n - 1)
                } else if !self.deprecate_eof {
                    State::PrepColumnsEof
                } else {
                    State::Done
                };
                Kind::Data
            }
            State::PrepColumnsEof => {
                self.state = State::Done;
                Kind::Eof(eof_status(payload).unwrap_or(0))
            }
        }
    }

    fn columns_or_done(&self, columns: u16) -> State {
        if columns > 0 {
            State::PrepColumns(columns)
        } else {
            State::Done
        }
    }

    fn after_end(&mut self, st: u16) {
        self.state = if st & status::MORE_RESULTS_EXISTS != 0 {
            State::First
        } else {
            State::Done
        };
    }

    fn first(&mut self, first: u8, payload: &[u8], len: usize) -> Kind {
        match first {
            0xFF => {
                self.state = State::Done;
                Kind::Err
            }
            0x00 if self.expect == Expect::Prepare => {
                let columns = payload
                    .get(5..7)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .unwrap_or(0);
                let params = payload
                    .get(7..9)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .unwrap_or(0);
                self.state = if params > 0 {
                    State::Params {
                        left: params,
                        columns,
                    }
                } else {
                    self.columns_or_done(columns)
                };
                Kind::PrepareOk { columns, params }
            }
            0x00 => {
                let st = parse_ok_head(payload).map(|h| h.status).unwrap_or(0);
                self.after_end(st);
                Kind::Ok(st)
            }
            0xFE if len < 9 && self.expect == Expect::Single => {
                self.state = State::Done;
                Kind::Eof(eof_status(payload).unwrap_or(0))
            }
            0xFB if self.expect == Expect::Query => {
                // After the client's file, the server answers as to any statement (and more
                // results may follow a multi-statement's LOAD).
                self.state = State::First;
                Kind::LocalInfile
            }
            _ if self.expect == Expect::Query || self.expect == Expect::Execute => {
                let mut pos = 0;
                let n = crate::protocol::lenenc_int(payload, &mut pos).unwrap_or(0);
                let metadata_follows =
                    !self.framing.cache_metadata || payload.get(pos).is_none_or(|&b| b != 0);
                self.state = if n == 0 {
                    State::Done
                } else if !metadata_follows {
                    if self.deprecate_eof {
                        State::Rows
                    } else {
                        State::ColumnsEof
                    }
                } else {
                    State::Columns(n)
                };
                Kind::Data
            }
            _ => {
                self.state = State::Done;
                Kind::Data
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIC: Framing = Framing {
        deprecate_eof: false,
        progress: false,
        cache_metadata: false,
    };
    const DEPRECATE_EOF: Framing = Framing {
        deprecate_eof: true,
        progress: false,
        cache_metadata: false,
    };
    /// What a MariaDB client asking for everything gets (the cases below, as MariaDB 10.11
    /// sends them).
    const MARIADB: Framing = Framing {
        deprecate_eof: false,
        progress: true,
        cache_metadata: true,
    };

    /// A progress report: stage 1 of 2, 50.000 %, "copy to tmp table".
    fn progress() -> Vec<u8> {
        let mut p = vec![0xFF, 0xFF, 0xFF, 1, 1, 2];
        p.extend_from_slice(&50_000u32.to_le_bytes()[..3]);
        p.push(17);
        p.extend_from_slice(b"copy to tmp table");
        p
    }

    fn ok(st: u16) -> Vec<u8> {
        let mut p = vec![0, 0, 0];
        p.extend_from_slice(&st.to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        p
    }

    fn eof(st: u16) -> Vec<u8> {
        let mut p = vec![0xFE, 0, 0];
        p.extend_from_slice(&st.to_le_bytes());
        p
    }

    fn run(r: &mut Response, packets: &[Vec<u8>]) -> Vec<Kind> {
        packets
            .iter()
            .map(|p| {
                assert!(!r.done(), "response ended early");
                r.feed(p, p.len())
            })
            .collect()
    }

    /// Issue 16: an execute that fails after its column definitions (a cursor whose result
    /// cannot be built) ends at the ERR; taken for the EOF, the proxy waited for rows forever.
    #[test]
    fn an_error_after_the_column_definitions_ends_the_response() {
        let err = vec![0xFF, 0x7A, 0x04, b'#', b'2', b'1', b'0', b'0', b'0', b'x'];
        let mut r = Response::new(Expect::Execute, CLASSIC);
        let kinds = run(&mut r, &[vec![1], vec![3, b'd', b'e', b'f'], err.clone()]);
        assert_eq!(kinds.last(), Some(&Kind::Err));
        assert!(r.done());
        let mut r = Response::new(Expect::Query, CLASSIC);
        run(&mut r, &[vec![2], vec![3], vec![3], err]);
        assert!(r.done());
    }

    #[test]
    fn classic_result_set_then_more_results() {
        let mut r = Response::new(Expect::Query, CLASSIC);
        let kinds = run(
            &mut r,
            &[
                vec![1],
                vec![3, b'd', b'e', b'f'],
                eof(status::AUTOCOMMIT),
                vec![1, b'1'],
                vec![1, b'2'],
                eof(status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS),
                ok(status::AUTOCOMMIT | status::IN_TRANS),
            ],
        );
        assert!(r.done());
        assert_eq!(kinds[6], Kind::Ok(status::AUTOCOMMIT | status::IN_TRANS));
    }

    #[test]
    fn deprecate_eof_rows_end_with_ok() {
        let mut r = Response::new(Expect::Execute, DEPRECATE_EOF);
        let mut term = ok(status::AUTOCOMMIT);
        term[0] = 0xFE;
        run(
            &mut r,
            &[vec![1], vec![3, b'd', b'e', b'f'], vec![0, 0, 1, 7], term],
        );
        assert!(r.done());
    }

    #[test]
    fn prepare_with_params_and_columns() {
        let mut r = Response::new(Expect::Prepare, CLASSIC);
        let head = vec![0, 9, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0];
        let kinds = run(&mut r, &[head, vec![3], vec![3], eof(0), vec![3], eof(0)]);
        assert_eq!(
            kinds[0],
            Kind::PrepareOk {
                columns: 1,
                params: 2
            }
        );
        assert!(r.done());
    }

    #[test]
    fn error_ends_anything() {
        let mut r = Response::new(Expect::Query, DEPRECATE_EOF);
        assert_eq!(r.feed(&[0xFF, 0x10, 0x04], 3), Kind::Err);
        assert!(r.done());
    }

    /// MARIADB_CLIENT_PROGRESS: progress reports before the OK, and between rows, end nothing;
    /// without the capability an ERR with that code ends the response like any ERR.
    #[test]
    fn progress_reports_do_not_end_the_response() {
        let mut r = Response::new(Expect::Query, MARIADB);
        let kinds = run(&mut r, &[progress(), progress(), ok(status::AUTOCOMMIT)]);
        assert_eq!(kinds[..2], [Kind::Progress, Kind::Progress]);
        assert!(r.done());
        let mut r = Response::new(Expect::Query, MARIADB);
        let kinds = run(
            &mut r,
            &[
                vec![1, 1],
                vec![3, b'd', b'e', b'f'],
                eof(status::AUTOCOMMIT),
                vec![1, b'1'],
                progress(),
                vec![1, b'2'],
                eof(status::AUTOCOMMIT),
            ],
        );
        assert_eq!(kinds[4], Kind::Progress);
        assert!(r.done());
        let mut r = Response::new(Expect::Query, CLASSIC);
        assert_eq!(r.feed(&progress(), progress().len()), Kind::Err);
        assert!(r.done());
    }

    /// MARIADB_CLIENT_CACHE_METADATA: a column count with "metadata follows" 0 is followed by
    /// the EOF (classic) or the rows (DEPRECATE_EOF), without column definitions; with 1, by
    /// the definitions as usual.
    #[test]
    fn metadata_follows_byte_is_followed() {
        let rows = [
            vec![0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            vec![0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
        ];
        let mut r = Response::new(Expect::Execute, MARIADB);
        let mut packets = vec![vec![1, 0], eof(status::AUTOCOMMIT)];
        packets.extend(rows.iter().cloned());
        packets.push(eof(status::AUTOCOMMIT));
        let kinds = run(&mut r, &packets);
        assert_eq!(kinds[1], Kind::Eof(status::AUTOCOMMIT));
        assert!(r.done());
        let framing = Framing {
            deprecate_eof: true,
            ..MARIADB
        };
        let mut r = Response::new(Expect::Execute, framing);
        let mut term = ok(status::AUTOCOMMIT);
        term[0] = 0xFE;
        let mut packets = vec![vec![1, 0]];
        packets.extend(rows.iter().cloned());
        packets.push(term);
        run(&mut r, &packets);
        assert!(r.done());
        // Metadata follows: the definitions are counted as before.
        let mut r = Response::new(Expect::Query, MARIADB);
        let kinds = run(
            &mut r,
            &[
                vec![2, 1],
                vec![3, b'd', b'e', b'f'],
                vec![3, b'd', b'e', b'f'],
                eof(status::AUTOCOMMIT),
                vec![1, b'1', 1, b'2'],
                eof(status::AUTOCOMMIT),
            ],
        );
        assert_eq!(kinds[3], Kind::Eof(status::AUTOCOMMIT));
        assert!(r.done());
    }

    /// COM_STMT_BULK_EXECUTE is answered like an execute: an OK, or (with RETURNING) a binary
    /// result set, and an ERR.
    #[test]
    fn bulk_execute_responses() {
        assert_eq!(Expect::of(com::STMT_BULK_EXECUTE), Expect::Execute);
        let mut r = Response::new(Expect::of(com::STMT_BULK_EXECUTE), MARIADB);
        assert_eq!(
            r.feed(&ok(status::AUTOCOMMIT), 7),
            Kind::Ok(status::AUTOCOMMIT)
        );
        assert!(r.done());
        let mut r = Response::new(Expect::of(com::STMT_BULK_EXECUTE), MARIADB);
        run(
            &mut r,
            &[
                vec![1, 1],
                vec![3, b'd', b'e', b'f'],
                eof(status::AUTOCOMMIT),
                vec![0, 0, 1, 0, 0, 0],
                vec![0, 0, 2, 0, 0, 0],
                vec![0, 0, 3, 0, 0, 0],
                eof(status::AUTOCOMMIT),
            ],
        );
        assert!(r.done());
        let mut r = Response::new(Expect::of(com::STMT_BULK_EXECUTE), MARIADB);
        assert_eq!(r.feed(&[0xFF, 0x26, 0x04, b'#'], 4), Kind::Err);
        assert!(r.done());
    }

    /// LOAD DATA LOCAL: the request (0xFB and the file name) does not end the response; the
    /// server's answer after the file does, or the next result of a multi-statement follows.
    #[test]
    fn local_infile_request_then_the_answer() {
        let mut request = vec![0xFB];
        request.extend_from_slice(b"/tmp/data.csv");
        let mut r = Response::new(Expect::Query, DEPRECATE_EOF);
        assert_eq!(r.feed(&request, request.len()), Kind::LocalInfile);
        assert!(!r.done());
        assert_eq!(
            r.feed(&ok(status::AUTOCOMMIT), 7),
            Kind::Ok(status::AUTOCOMMIT)
        );
        assert!(r.done());
        let mut r = Response::new(Expect::Query, CLASSIC);
        let kinds = run(
            &mut r,
            &[
                request,
                ok(status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS),
                vec![1],
                vec![3, b'd', b'e', b'f'],
                eof(status::AUTOCOMMIT),
                vec![1, b'3'],
                eof(status::AUTOCOMMIT),
            ],
        );
        assert_eq!(kinds[0], Kind::LocalInfile);
        assert!(r.done());
    }

    /// A cursor opened under DEPRECATE_EOF: the column definitions, then an OK (0xFE) with
    /// SERVER_STATUS_CURSOR_EXISTS ends the execute (MariaDB 10.11); the rows come by FETCH.
    #[test]
    fn cursor_execute_under_deprecate_eof_ends_at_its_ok() {
        let mut r = Response::new(Expect::Execute, DEPRECATE_EOF);
        let mut term = ok(status::AUTOCOMMIT | status::CURSOR_EXISTS);
        term[0] = 0xFE;
        let kinds = run(&mut r, &[vec![1], vec![3, b'd', b'e', b'f'], term]);
        assert_eq!(
            kinds[2],
            Kind::Ok(status::AUTOCOMMIT | status::CURSOR_EXISTS)
        );
        assert!(r.done());
    }
}
