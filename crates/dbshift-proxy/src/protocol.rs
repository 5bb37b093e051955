//! The MySQL/MariaDB client/server wire format, as far as the proxy needs it: framing,
//! length-encoded integers, capability and status flags, and the packets the proxy itself
//! writes (handshake, OK, ERR) or must read (handshake response, OK/EOF status flags, session
//! state information).
//!
//! Parsing here never allocates for the packets that stream through (rows, column
//! definitions); only handshake-time packets become owned values. The handshake packets (the
//! server's greeting, the client's response) are read with `mysql_common`'s packet types; the
//! per-command hot path reads first bytes and lengths only.

use mysql_common::io::ParseBuf;

use crate::error::{Error, Result};

/// Payload length that means "this packet continues in the next one".
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

pub mod cap {
    pub const LONG_PASSWORD: u32 = 1; // CLIENT_MYSQL on MariaDB: no extended capabilities
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;

    /// What the proxy offers clients when the backend offers it too (SSL is added when client
    /// TLS is configured; LOCAL_FILES and LONG_PASSWORD follow the backend's greeting, see
    /// [`offer`](super::offer)). Nothing that changes the wire format in a way the proxy does
    /// not follow: no compression.
    pub const PROXY_OFFERS: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | RESERVED
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// Client flags that shape the backend's answers and so are passed on unchanged.
    pub const PASSED_ON: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | NO_SCHEMA
        | ODBC
        | IGNORE_SPACE
        | INTERACTIVE
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | DEPRECATE_EOF
        // The client's consent to LOCAL INFILE; the server's own `local_infile` decides too.
        | LOCAL_FILES
        // The client's connect attributes are passed on as it sent them.
        | CONNECT_ATTRS;
}

/// MariaDB's extended capabilities: the upper 32 bits of its capability flags, carried in the
/// last 4 bytes of the greeting's filler and of the handshake response's filler when
/// CLIENT_MYSQL (= [`cap::LONG_PASSWORD`]) is clear. Values here are the upper half alone.
pub mod ext {
    /// ERR-shaped progress packets (code 0xFFFF) before a statement's response ends.
    pub const PROGRESS: u32 = 1;
    /// COM_STMT_BULK_EXECUTE.
    pub const STMT_BULK_OPERATIONS: u32 = 1 << 2;
    /// An extra length-encoded field (type name, format) in every column definition.
    pub const EXTENDED_TYPE_INFO: u32 = 1 << 3;
    /// A "metadata follows" byte after a result set's column count; the column definitions
    /// may be left out when the client has them (a prepared statement executed again).
    pub const CACHE_METADATA: u32 = 1 << 4;

    /// What the proxy carries exactly, offered when the backend offers it. Not
    /// BULK_UNIT_RESULTS (11.5+, changes the bulk response; not tested).
    pub const PROXY_CARRIES: u32 =
        PROGRESS | STMT_BULK_OPERATIONS | EXTENDED_TYPE_INFO | CACHE_METADATA;
}

/// What the proxy offers its clients, from the backend's greeting: the basic capabilities
/// (LOCAL_FILES only when the backend offers it, CLIENT_MYSQL as the backend has it) and the
/// MariaDB extended ones the proxy carries and the backend offers.
pub fn offer(backend: &ServerHandshake) -> (u32, u32) {
    let mut basic = cap::PROXY_OFFERS & !(cap::LOCAL_FILES | cap::LONG_PASSWORD);
    basic |= backend.capabilities & (cap::LOCAL_FILES | cap::LONG_PASSWORD);
    let extended = if backend.capabilities & cap::LONG_PASSWORD == 0 {
        backend.ext_capabilities & ext::PROXY_CARRIES
    } else {
        0
    };
    (basic, extended)
}

pub mod status {
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 1 << 1;
    pub const MORE_RESULTS_EXISTS: u16 = 1 << 3;
    pub const CURSOR_EXISTS: u16 = 1 << 6;
    pub const LAST_ROW_SENT: u16 = 1 << 7;
    pub const IN_TRANS_READONLY: u16 = 1 << 13;
    pub const SESSION_STATE_CHANGED: u16 = 1 << 14;
}

pub mod com {
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    /// `FLUSH ...` by command (`mariadb-admin refresh | flush-logs`, `mariadb-dump --flush-logs`).
    pub const REFRESH: u8 = 0x07;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_KILL: u8 = 0x0C;
    pub const DEBUG: u8 = 0x0D;
    pub const PING: u8 = 0x0E;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1A;
    pub const SET_OPTION: u8 = 0x1B;
    pub const STMT_FETCH: u8 = 0x1C;
    pub const RESET_CONNECTION: u8 = 0x1F;
    /// MariaDB's bulk execution of a prepared statement (MARIADB_CLIENT_STMT_BULK_OPERATIONS).
    pub const STMT_BULK_EXECUTE: u8 = 0xFA;
}

pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// Read a length-encoded integer at `*pos`, advancing it. `None` when truncated or 0xFF.
pub fn lenenc_int(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *buf.get(*pos)?;
    let (v, n) = match first {
        0..=0xFA => (first as u64, 1),
        0xFC => (
            u16::from_le_bytes(buf.get(*pos + 1..*pos + 3)?.try_into().ok()?) as u64,
            3,
        ),
        0xFD => {
            let b = buf.get(*pos + 1..*pos + 4)?;
            (b[0] as u64 | (b[1] as u64) << 8 | (b[2] as u64) << 16, 4)
        }
        0xFE => (
            u64::from_le_bytes(buf.get(*pos + 1..*pos + 9)?.try_into().ok()?),
            9,
        ),
        _ => return None,
    };
    *pos += n;
    Some(v)
}

/// Read a length-encoded string at `*pos`, advancing it.
pub fn lenenc_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = lenenc_int(buf, pos)? as usize;
    let s = buf.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some(s)
}

pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

pub fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A NUL-terminated string at `*pos`, advancing past the NUL.
pub fn nul_str<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*pos..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    *pos += end + 1;
    Some(&rest[..end])
}

/// Frame `payload` as one or more packets starting at sequence `seq`; returns the next seq.
pub fn frame(out: &mut Vec<u8>, mut seq: u8, payload: &[u8]) -> u8 {
    let mut chunks = payload.chunks(MAX_PAYLOAD).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0, 0, 0, seq]);
        return seq.wrapping_add(1);
    }
    let mut last_len = 0;
    for c in chunks {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(c);
        seq = seq.wrapping_add(1);
        last_len = c.len();
    }
    if last_len == MAX_PAYLOAD {
        out.extend_from_slice(&[0, 0, 0, seq]);
        seq = seq.wrapping_add(1);
    }
    seq
}

/// An ERR packet's payload (PROTOCOL_41 layout).
pub fn err_payload(code: u16, sql_state: &str, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + message.len());
    p.push(0xFF);
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    let mut state = [b'H', b'Y', b'0', b'0', b'0'];
    for (d, s) in state.iter_mut().zip(sql_state.bytes()) {
        *d = s;
    }
    p.extend_from_slice(&state);
    p.extend_from_slice(message.as_bytes());
    p
}

/// An OK packet's payload with no session state information.
pub fn ok_payload(status_flags: u16, client_caps: u32) -> Vec<u8> {
    let mut p = vec![0x00, 0, 0];
    p.extend_from_slice(&status_flags.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    if client_caps & cap::SESSION_TRACK != 0 {
        p.push(0);
    }
    p
}

/// A parsed ERR packet.
#[derive(Debug, Clone)]
pub struct ErrPacket {
    pub code: u16,
    pub state: String,
    pub message: String,
}

pub fn parse_err(payload: &[u8]) -> ErrPacket {
    let code = payload
        .get(1..3)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let (state, msg) = if payload.get(3) == Some(&b'#') && payload.len() >= 9 {
        (
            String::from_utf8_lossy(&payload[4..9]).into_owned(),
            &payload[9..],
        )
    } else {
        (String::from("HY000"), payload.get(3..).unwrap_or(&[]))
    };
    ErrPacket {
        code,
        state,
        message: String::from_utf8_lossy(msg).into_owned(),
    }
}

/// The fixed part of an OK packet, and where its trailing parts start.
#[derive(Debug, Clone, Copy)]
pub struct OkHead {
    pub status: u16,
    /// Offset of the info string (just after the warnings).
    pub info_at: usize,
}

/// Parse the head of an OK packet (header 0x00 or 0xFE).
pub fn parse_ok_head(payload: &[u8]) -> Option<OkHead> {
    let mut pos = 1;
    lenenc_int(payload, &mut pos)?;
    lenenc_int(payload, &mut pos)?;
    // Status flags and the warning count.
    let st = payload.get(pos..pos + 4)?;
    let status = u16::from_le_bytes([st[0], st[1]]);
    Some(OkHead {
        status,
        info_at: pos + 4,
    })
}

/// Status flags of a classic EOF packet (0xFE, warnings then status).
pub fn eof_status(payload: &[u8]) -> Option<u16> {
    let st = payload.get(3..5)?;
    Some(u16::from_le_bytes([st[0], st[1]]))
}

/// One entry of an OK packet's session state information.
#[derive(Debug, PartialEq, Eq)]
pub enum StateChange<'a> {
    SystemVariable(&'a [u8], &'a [u8]),
    Schema(&'a [u8]),
    StateChanged,
    Other,
}

/// The session state changes of an OK packet sent to a SESSION_TRACK client, in order. Empty
/// when the server reported none.
pub fn session_changes<'a>(payload: &'a [u8], head: &OkHead) -> Vec<StateChange<'a>> {
    let mut out = Vec::new();
    if head.status & status::SESSION_STATE_CHANGED == 0 {
        return out;
    }
    let mut pos = head.info_at;
    if lenenc_bytes(payload, &mut pos).is_none() {
        return out;
    }
    let Some(block) = lenenc_bytes(payload, &mut pos) else {
        return out;
    };
    let mut p = 0;
    while p < block.len() {
        let kind = block[p];
        p += 1;
        let Some(data) = lenenc_bytes(block, &mut p) else {
            break;
        };
        let mut q = 0;
        match kind {
            0 => {
                if let (Some(n), Some(v)) = (lenenc_bytes(data, &mut q), lenenc_bytes(data, &mut q))
                {
                    out.push(StateChange::SystemVariable(n, v));
                }
            }
            1 => {
                if let Some(s) = lenenc_bytes(data, &mut q) {
                    out.push(StateChange::Schema(s));
                }
            }
            2 => out.push(StateChange::StateChanged),
            _ => out.push(StateChange::Other),
        }
    }
    out
}

/// Rewrite an OK packet for a client that did not ask for session tracking: the info string
/// goes back to "rest of the packet" and the state information is dropped.
pub fn ok_without_tracking(payload: &[u8], head: &OkHead) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    out.extend_from_slice(&payload[..head.info_at - 4]);
    out.extend_from_slice(&(head.status & !status::SESSION_STATE_CHANGED).to_le_bytes());
    out.extend_from_slice(&payload[head.info_at - 2..head.info_at]);
    let mut pos = head.info_at;
    if let Some(info) = lenenc_bytes(payload, &mut pos) {
        out.extend_from_slice(info);
    }
    out
}

/// The server's initial handshake (HandshakeV10), as far as the proxy uses it.
#[derive(Debug, Clone)]
pub struct ServerHandshake {
    pub server_version: Vec<u8>,
    pub connection_id: u32,
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities (0 when CLIENT_MYSQL is set: a MySQL server).
    pub ext_capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

pub fn parse_server_handshake(p: &[u8]) -> Result<ServerHandshake> {
    if p.first() == Some(&0xFF) {
        let e = parse_err(p);
        return Err(Error::protocol(format!(
            "server refused the connection: {} {}",
            e.code, e.message
        )));
    }
    if p.first() != Some(&10) {
        return Err(Error::protocol(
            "server handshake is not protocol version 10",
        ));
    }
    // mysql_common 0.37 computes `auth_plugin_data_len as i8 - 8`, which overflows (a panic
    // in debug builds) for 0x80..=0x87: such a greeting is malformed anyway (found by
    // tests/parsers.rs).
    let mut pos = 1;
    if nul_str(p, &mut pos).is_some() && p.get(pos + 20).is_some_and(|b| (0x80..=0x87).contains(b))
    {
        return Err(Error::protocol(
            "malformed server handshake: bad auth data length",
        ));
    }
    let hs: mysql_common::packets::HandshakePacket = ParseBuf(p)
        .parse(())
        .map_err(|e| Error::protocol(format!("malformed server handshake: {e}")))?;
    let capabilities = hs.capabilities().bits();
    // MariaDB's extended capabilities are there only when CLIENT_MYSQL is clear.
    let ext_capabilities = if capabilities & cap::LONG_PASSWORD == 0 {
        hs.mariadb_ext_capabilities().bits()
    } else {
        0
    };
    let mut scramble = hs.scramble_1_ref().to_vec();
    if let Some(part2) = hs.scramble_2_ref() {
        // The second part ends with a NUL that is not part of the scramble.
        scramble.extend_from_slice(part2.strip_suffix(&[0]).unwrap_or(part2));
    }
    let auth_plugin = match hs.auth_plugin_name_ref() {
        Some(name) if capabilities & cap::PLUGIN_AUTH != 0 => {
            String::from_utf8_lossy(name).into_owned()
        }
        _ => NATIVE_PASSWORD.to_string(),
    };
    Ok(ServerHandshake {
        server_version: hs.server_version_ref().to_vec(),
        connection_id: hs.connection_id(),
        scramble,
        capabilities,
        ext_capabilities,
        charset: hs.default_collation(),
        status: hs.status_flags().bits(),
        auth_plugin,
    })
}

/// The proxy's own HandshakeV10 to a client; `ext_caps` go in the filler's last 4 bytes when
/// CLIENT_MYSQL is clear in `caps`.
pub fn server_handshake_payload(
    version: &[u8],
    connection_id: u32,
    scramble: &[u8; 20],
    caps: u32,
    ext_caps: u32,
    charset: u8,
    status_flags: u16,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(96);
    p.push(10);
    p.extend_from_slice(version);
    p.push(0);
    p.extend_from_slice(&connection_id.to_le_bytes());
    p.extend_from_slice(&scramble[..8]);
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(charset);
    p.extend_from_slice(&status_flags.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0u8; 6]);
    let ext_caps = if caps & cap::LONG_PASSWORD == 0 {
        ext_caps
    } else {
        0
    };
    p.extend_from_slice(&ext_caps.to_le_bytes());
    p.extend_from_slice(&scramble[8..]);
    p.push(0);
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    p
}

/// A client's HandshakeResponse41.
#[derive(Clone)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    /// MariaDB's extended capabilities the client asked for (0 when CLIENT_MYSQL is set).
    pub ext_capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// The client's connect attributes as it sent them (the length-encoded block), passed on.
    pub connect_attrs: Option<Vec<u8>>,
}

impl std::fmt::Debug for HandshakeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeResponse")
            .field("capabilities", &format_args!("{:#x}", self.capabilities))
            .field("user", &self.user)
            .field("database", &self.database)
            .field("auth_plugin", &self.auth_plugin)
            .finish_non_exhaustive()
    }
}

/// Whether a handshake-time packet from the client is an SSLRequest (32 bytes, SSL flag).
pub fn is_ssl_request(p: &[u8]) -> bool {
    p.len() == 32 && u32::from_le_bytes([p[0], p[1], p[2], p[3]]) & cap::SSL != 0
}

pub fn parse_handshake_response(p: &[u8]) -> Result<HandshakeResponse> {
    let head = p
        .get(..8)
        .ok_or_else(|| Error::protocol("malformed handshake response"))?;
    let capabilities = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    // Not exposed by mysql_common's type.
    let max_packet = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if capabilities & cap::PROTOCOL_41 == 0 {
        return Err(Error::protocol(
            "the client does not speak protocol 4.1 (pre-4.1 clients are not supported)",
        ));
    }
    let r: mysql_common::packets::HandshakeResponse = ParseBuf(p)
        .parse(())
        .map_err(|e| Error::protocol(format!("malformed handshake response: {e}")))?;
    // The flags as the client sent them (mysql_common drops the bits it does not know).
    let ext_capabilities = if capabilities & cap::LONG_PASSWORD == 0 {
        r.mariadb_ext_capabilities().bits()
    } else {
        0
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let connect_attrs = r.connect_attributes().map(|attrs| {
        let mut block = Vec::new();
        for (k, v) in &attrs {
            put_lenenc_bytes(&mut block, k.as_bytes());
            put_lenenc_bytes(&mut block, v.as_bytes());
        }
        let mut out = Vec::with_capacity(block.len() + 9);
        put_lenenc_bytes(&mut out, &block);
        out
    });
    Ok(HandshakeResponse {
        capabilities,
        ext_capabilities,
        max_packet,
        charset: r.collation(),
        user: text(r.user()),
        auth_response: r.scramble_buf().to_vec(),
        database: r.db_name().map(text).filter(|d| !d.is_empty()),
        auth_plugin: r
            .auth_plugin()
            .map(|a| text(a.as_bytes()))
            .filter(|a| !a.is_empty() || capabilities & cap::PLUGIN_AUTH != 0),
        connect_attrs,
    })
}

/// A client's COM_CHANGE_USER.
#[derive(Clone)]
pub struct ChangeUser {
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    /// The character set the client asks for (absent from old clients).
    pub charset: Option<u8>,
    pub auth_plugin: Option<String>,
}

impl std::fmt::Debug for ChangeUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeUser")
            .field("user", &self.user)
            .field("database", &self.database)
            .field("auth_plugin", &self.auth_plugin)
            .finish_non_exhaustive()
    }
}

/// Parse a COM_CHANGE_USER payload (the command byte included) sent by a client that
/// negotiated `caps`.
pub fn parse_change_user(p: &[u8], caps: u32) -> Result<ChangeUser> {
    let bad = || Error::protocol("malformed COM_CHANGE_USER");
    let mut pos = 1;
    let user = String::from_utf8_lossy(nul_str(p, &mut pos).ok_or_else(bad)?).into_owned();
    let auth_response = if caps & cap::SECURE_CONNECTION != 0 {
        let n = *p.get(pos).ok_or_else(bad)? as usize;
        let v = p.get(pos + 1..pos + 1 + n).ok_or_else(bad)?.to_vec();
        pos += 1 + n;
        v
    } else {
        nul_str(p, &mut pos).ok_or_else(bad)?.to_vec()
    };
    let database = nul_str(p, &mut pos)
        .or_else(|| p.get(pos..).filter(|_| pos < p.len()))
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .filter(|d| !d.is_empty());
    let charset = p.get(pos..pos + 2).map(|b| b[0]);
    if charset.is_some() {
        pos += 2;
    }
    let auth_plugin = if caps & cap::PLUGIN_AUTH != 0 && pos < p.len() {
        let start = pos;
        let s = nul_str(p, &mut pos).unwrap_or(&p[start..]);
        Some(String::from_utf8_lossy(s).into_owned()).filter(|s| !s.is_empty())
    } else {
        None
    };
    Ok(ChangeUser {
        user,
        auth_response,
        database,
        charset,
        auth_plugin,
    })
}

/// An AuthSwitchRequest: the client is to answer `data` with `plugin`.
pub fn auth_switch_payload(plugin: &str, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + plugin.len() + data.len());
    p.push(0xFE);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p.extend_from_slice(data);
    p
}

/// The proxy's HandshakeResponse41 to a backend, answering with `plugin`. `ext_caps` go in the filler's last 4 bytes
/// when CLIENT_MYSQL is clear in `caps`; `connect_attrs` (a length-encoded block as a client
/// sent it) follow the plugin name when `caps` has CONNECT_ATTRS.
#[allow(clippy::too_many_arguments)]
pub fn handshake_response_payload(
    caps: u32,
    ext_caps: u32,
    max_packet: u32,
    charset: u8,
    user: &str,
    auth_response: &[u8],
    database: Option<&str>,
    connect_attrs: Option<&[u8]>,
    plugin: &str,
) -> Vec<u8> {
    let mut p = ssl_request_payload(caps, ext_caps, max_packet, charset);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    if caps & cap::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        put_lenenc_bytes(&mut p, auth_response);
    } else {
        p.push(auth_response.len() as u8);
        p.extend_from_slice(auth_response);
    }
    if let Some(db) = database {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    if caps & cap::CONNECT_ATTRS != 0 {
        p.extend_from_slice(connect_attrs.unwrap_or(&[0]));
    }
    p
}

/// The SSLRequest: the first 32 bytes of a handshake response.
pub fn ssl_request_payload(caps: u32, ext_caps: u32, max_packet: u32, charset: u8) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&max_packet.to_le_bytes());
    p.push(charset);
    p.extend_from_slice(&[0u8; 19]);
    let ext_caps = if caps & cap::LONG_PASSWORD == 0 {
        ext_caps
    } else {
        0
    };
    p.extend_from_slice(&ext_caps.to_le_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trip() {
        for v in [
            0u64,
            250,
            251,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_lenenc_int(&mut b, v);
            let mut pos = 0;
            assert_eq!(lenenc_int(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
    }

    #[test]
    fn frame_splits_at_max_payload() {
        let payload = vec![7u8; MAX_PAYLOAD];
        let mut out = Vec::new();
        let next = frame(&mut out, 3, &payload);
        assert_eq!(next, 5);
        assert_eq!(out.len(), 4 + MAX_PAYLOAD + 4);
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 4]);
    }

    #[test]
    fn session_state_changes_are_read() {
        // OK, 0 rows, 0 id, status SESSION_STATE_CHANGED|AUTOCOMMIT, 0 warnings, empty info,
        // state: sysvar autocommit=OFF, schema app.
        let mut block = Vec::new();
        let mut var = Vec::new();
        put_lenenc_bytes(&mut var, b"autocommit");
        put_lenenc_bytes(&mut var, b"OFF");
        block.push(0);
        put_lenenc_bytes(&mut block, &var);
        let mut sch = Vec::new();
        put_lenenc_bytes(&mut sch, b"app");
        block.push(1);
        put_lenenc_bytes(&mut block, &sch);
        let mut p = vec![0, 0, 0];
        p.extend_from_slice(&(status::SESSION_STATE_CHANGED | status::AUTOCOMMIT).to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        put_lenenc_bytes(&mut p, b"");
        put_lenenc_bytes(&mut p, &block);
        let head = parse_ok_head(&p).expect("valid OK");
        assert_eq!(
            session_changes(&p, &head),
            vec![
                StateChange::SystemVariable(b"autocommit", b"OFF"),
                StateChange::Schema(b"app")
            ]
        );
        let plain = ok_without_tracking(&p, &head);
        assert_eq!(plain, vec![0, 0, 0, 2, 0, 0, 0]);
    }

    #[test]
    fn change_user_parses() {
        let mut p = vec![com::CHANGE_USER];
        p.extend_from_slice(b"bob\0");
        p.push(20);
        p.extend_from_slice(&[7u8; 20]);
        p.extend_from_slice(b"app\0");
        p.extend_from_slice(&[45, 0]);
        p.extend_from_slice(b"mysql_native_password\0");
        let c = parse_change_user(&p, cap::SECURE_CONNECTION | cap::PLUGIN_AUTH).unwrap();
        assert_eq!(c.user, "bob");
        assert_eq!(c.auth_response, vec![7u8; 20]);
        assert_eq!(c.database.as_deref(), Some("app"));
        assert_eq!(c.charset, Some(45));
        assert_eq!(c.auth_plugin.as_deref(), Some("mysql_native_password"));
    }

    #[test]
    fn err_packet_round_trip() {
        let p = err_payload(1927, "HY000", "ended");
        let e = parse_err(&p);
        assert_eq!(
            (e.code, e.state.as_str(), e.message.as_str()),
            (1927, "HY000", "ended")
        );
    }

    /// MariaDB's extended capabilities sit in the greeting's and the handshake response's
    /// filler only when CLIENT_MYSQL is clear; connect attributes are passed on as sent.
    #[test]
    fn extended_capabilities_and_connect_attributes_round_trip() {
        let scramble = [b'a'; 20];
        let mariadb = cap::PROXY_OFFERS & !cap::LONG_PASSWORD;
        let all = ext::PROXY_CARRIES;
        let g = server_handshake_payload(
            b"10.11.19-MariaDB",
            7,
            &scramble,
            mariadb,
            all,
            45,
            status::AUTOCOMMIT,
        );
        let hs = parse_server_handshake(&g).expect("a greeting");
        assert_eq!((hs.capabilities, hs.ext_capabilities), (mariadb, all));
        assert_eq!(offer(&hs), (mariadb, all));
        // CLIENT_MYSQL set: a MySQL-style greeting carries no extended capabilities.
        let g = server_handshake_payload(
            b"8.0",
            7,
            &scramble,
            cap::PROXY_OFFERS,
            all,
            45,
            status::AUTOCOMMIT,
        );
        let hs = parse_server_handshake(&g).expect("a greeting");
        assert_eq!(hs.ext_capabilities, 0);
        assert_eq!(offer(&hs).1, 0);

        let mut attrs = Vec::new();
        let mut pairs = Vec::new();
        put_lenenc_bytes(&mut pairs, b"program_name");
        put_lenenc_bytes(&mut pairs, b"test");
        put_lenenc_bytes(&mut attrs, &pairs);
        let caps = mariadb & !cap::CONNECT_WITH_DB;
        let p = handshake_response_payload(
            caps,
            ext::PROGRESS | ext::CACHE_METADATA,
            1 << 24,
            45,
            "app",
            &[1; 20],
            None,
            Some(&attrs),
            NATIVE_PASSWORD,
        );
        let r = parse_handshake_response(&p).expect("a response");
        assert_eq!(r.ext_capabilities, ext::PROGRESS | ext::CACHE_METADATA);
        assert_eq!(r.connect_attrs.as_deref(), Some(&attrs[..]));
        assert_eq!(r.user, "app");
    }
}
