//! Where a command's response ends: a small state machine fed one packet at a time.
//!
//! It classifies each packet (row data, OK, EOF, ERR, PREPARE_OK) from its first byte and
//! length only, so rows are never parsed; status flags are read from OK and EOF packets.
//! Multi-results (SERVER_MORE_RESULTS_EXISTS), CLIENT_DEPRECATE_EOF and packets split at
//! 16 MiB are followed.

use crate::protocol::{com, eof_status, parse_ok_head, status, MAX_PAYLOAD};

/// What kind of response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR or EOF (COM_PING, COM_INIT_DB, COM_SET_OPTION, COM_STMT_RESET, ...), or one
    /// packet of any content (COM_STATISTICS).
    Single,
    /// Text result sets or OK/ERR, possibly several (COM_QUERY).
    Query,
    /// Binary result sets or OK/ERR (COM_STMT_EXECUTE).
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
            com::STMT_EXECUTE => Expect::Execute,
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
    /// The server asks for a LOCAL INFILE (never offered by the proxy).
    LocalInfile,
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
    continuation: bool,
}

impl Response {
    pub fn new(expect: Expect, deprecate_eof: bool) -> Response {
        let state = match expect {
            Expect::Rows => State::Rows,
            Expect::Nothing => State::Done,
            _ => State::First,
        };
        Response {
            expect,
            state,
            deprecate_eof,
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
                self.state = State::Done;
                Kind::LocalInfile
            }
            _ if self.expect == Expect::Query || self.expect == Expect::Execute => {
                let mut pos = 0;
                let n = crate::protocol::lenenc_int(payload, &mut pos).unwrap_or(0);
                self.state = if n == 0 {
                    State::Done
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
        let mut r = Response::new(Expect::Execute, false);
        let kinds = run(&mut r, &[vec![1], vec![3, b'd', b'e', b'f'], err.clone()]);
        assert_eq!(kinds.last(), Some(&Kind::Err));
        assert!(r.done());
        let mut r = Response::new(Expect::Query, false);
        run(&mut r, &[vec![2], vec![3], vec![3], err]);
        assert!(r.done());
    }

    #[test]
    fn classic_result_set_then_more_results() {
        let mut r = Response::new(Expect::Query, false);
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
        let mut r = Response::new(Expect::Execute, true);
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
        let mut r = Response::new(Expect::Prepare, false);
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
        let mut r = Response::new(Expect::Query, true);
        assert_eq!(r.feed(&[0xFF, 0x10, 0x04], 3), Kind::Err);
        assert!(r.done());
    }
}
