//! Client capabilities through the proxy (issue 16, item 1), each case run once directly
//! against the server and once through the proxy, the two required to agree:
//! - what is offered: MariaDB's extended capabilities (progress, bulk, extended type info,
//!   metadata cache) and LOCAL INFILE as the server offers them; never compression;
//! - LOAD DATA LOCAL INFILE and LOAD XML LOCAL INFILE carried, refused without the client's
//!   consent or with the server's `local_infile` off, with the same error;
//! - COM_STMT_BULK_EXECUTE with and without RETURNING, an unknown statement id;
//! - the metadata cache (definitions left out on a second execute, sent again after a switch);
//! - extended type information (json, inet6, point) seen by the client;
//! - progress reports of an ALTER TABLE relayed without ending its response;
//! - a read-only cursor: execute, fetches, a fetch past the end; the cursor pins the session;
//! - the client's connect attributes reach the server (seen on the wire between proxy and
//!   server: the lab runs without performance_schema).
//!
//! The protocol is spoken by a small client of the test's own on mysql_common's packet types
//! (`raw` below), which asks for exactly the capabilities a case names; every read and write
//! is bounded, so a hang fails the test instead of stalling it.
//!
//! Run with `cargo test -p dbshift-proxy --test capabilities` (needs `mariadbd`; `make test`
//! installs it). One lab (a writer and a replica) for the whole binary.

use std::collections::HashMap;
use std::time::Duration;

use dbshift_provider::local::Lab;
use dbshift_testkit::TestLab;
use tokio::sync::OnceCell;

mod common;

use common::{proxy_cert, start_proxy, writer_port};

async fn lab() -> &'static Lab {
    static LAB: OnceCell<TestLab> = OnceCell::const_new();
    LAB.get_or_init(|| TestLab::start(1, 1)).await.lab()
}

/// A client of its own on mysql_common's packet types: it asks for exactly the capabilities
/// a test names and shows every packet, so a test sees what the wire carries.
mod raw {
    use std::time::Duration;

    use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
    use mysql_common::io::ParseBuf;
    use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Every read and write of these tests is bounded: a hang fails the test.
    pub const BOUND: Duration = Duration::from_secs(20);

    pub const MORE_RESULTS: u16 = 1 << 3;
    pub const CURSOR_EXISTS: u16 = 1 << 6;
    pub const LAST_ROW_SENT: u16 = 1 << 7;

    pub struct Raw {
        stream: TcpStream,
        seq: u8,
        pub caps: CapabilityFlags,
        pub ext: MariadbCapabilities,
        pub server_caps: CapabilityFlags,
        pub server_ext: MariadbCapabilities,
        pub trace: bool,
    }

    /// A column definition as far as the tests compare it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Col {
        pub name: Vec<u8>,
        pub kind: u8,
        /// MariaDB's extended type information (type name, format), when sent.
        pub ext: Vec<(u8, Vec<u8>)>,
    }

    /// One result set: its column definitions (None: the server said they did not follow),
    /// its rows as sent, and the status of its end.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Set {
        pub columns: Option<Vec<Col>>,
        pub rows: Vec<Vec<u8>>,
        pub status: u16,
    }

    /// A whole response.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Reply {
        pub sets: Vec<Set>,
        /// OK packets: (affected rows, status).
        pub oks: Vec<(u64, u16)>,
        pub err: Option<(u16, String)>,
        pub progress: usize,
        /// The server asked for this LOCAL INFILE.
        pub infile: Option<Vec<u8>>,
    }

    impl Reply {
        pub fn code(&self) -> Option<u16> {
            self.err.as_ref().map(|e| e.0)
        }
    }

    pub fn lenenc(p: &[u8], pos: &mut usize) -> u64 {
        let f = p[*pos];
        let (v, n) = match f {
            0xFC => (u16::from_le_bytes([p[*pos + 1], p[*pos + 2]]) as u64, 3),
            0xFD => (
                u32::from_le_bytes([p[*pos + 1], p[*pos + 2], p[*pos + 3], 0]) as u64,
                4,
            ),
            0xFE => (
                u64::from_le_bytes(p[*pos + 1..*pos + 9].try_into().expect("8 bytes")),
                9,
            ),
            _ => (f as u64, 1),
        };
        *pos += n;
        v
    }

    pub fn lenenc_str<'a>(p: &'a [u8], pos: &mut usize) -> &'a [u8] {
        let n = lenenc(p, pos) as usize;
        let s = &p[*pos..*pos + n];
        *pos += n;
        s
    }

    pub fn put_lenenc(out: &mut Vec<u8>, b: &[u8]) {
        assert!(b.len() < 0xFB, "short strings only");
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }

    impl Raw {
        /// Connect as `user` to the `app` schema asking for `caps` and `ext` (each kept only
        /// as far as the server offers it), with connect attributes when given.
        pub async fn connect(
            port: u16,
            user: &str,
            password: &str,
            caps: CapabilityFlags,
            ext: MariadbCapabilities,
            attrs: Option<std::collections::HashMap<String, String>>,
        ) -> Result<Raw, (u16, String)> {
            let stream = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the server or proxy listens");
            let mut raw = Raw {
                stream,
                seq: 0,
                caps,
                ext,
                server_caps: CapabilityFlags::empty(),
                server_ext: MariadbCapabilities::empty(),
                trace: false,
            };
            let greeting = raw.packet().await;
            let hs: HandshakePacket = ParseBuf(&greeting).parse(()).expect("a greeting");
            raw.server_caps = hs.capabilities();
            raw.server_ext = hs.mariadb_ext_capabilities();
            let mariadb = !raw
                .server_caps
                .contains(CapabilityFlags::CLIENT_LONG_PASSWORD);
            raw.caps = (caps
                | CapabilityFlags::CLIENT_PROTOCOL_41
                | CapabilityFlags::CLIENT_SECURE_CONNECTION
                | CapabilityFlags::CLIENT_PLUGIN_AUTH
                | CapabilityFlags::CLIENT_LONG_PASSWORD)
                & raw.server_caps;
            raw.ext = if mariadb {
                ext & raw.server_ext
            } else {
                MariadbCapabilities::empty()
            };
            let nonce = hs.nonce();
            let answer = mysql_common::scramble::scramble_native(&nonce, password.as_bytes())
                .map(|s| s.to_vec());
            let resp = HandshakeResponse::new(
                answer,
                (10, 11, 0),
                Some(user.as_bytes()),
                Some(&b"app"[..]),
                Some(AuthPlugin::MysqlNativePassword),
                raw.caps,
                attrs,
                16 << 20,
            )
            .with_mariadb_ext_capabilities(raw.ext);
            raw.caps = resp.capabilities();
            let mut out = Vec::new();
            mysql_common::proto::MySerialize::serialize(&resp, &mut out);
            raw.write(&out).await;
            loop {
                let p = raw.packet().await;
                match p[0] {
                    0x00 => return Ok(raw),
                    0xFF => return Err(err_of(&p)),
                    0xFE => {
                        let mut pos = 1;
                        while p[pos] != 0 {
                            pos += 1;
                        }
                        let nonce = p[pos + 1..].strip_suffix(&[0]).unwrap_or(&p[pos + 1..]);
                        let answer =
                            mysql_common::scramble::scramble_native(nonce, password.as_bytes())
                                .expect("a password");
                        raw.write(&answer).await;
                    }
                    other => panic!("unexpected packet {other:#x} at login"),
                }
            }
        }

        pub fn has(&self, c: MariadbCapabilities) -> bool {
            self.ext.contains(c)
        }

        fn deprecate_eof(&self) -> bool {
            self.caps.contains(CapabilityFlags::CLIENT_DEPRECATE_EOF)
        }

        /// Write one packet with the next sequence number.
        pub async fn write(&mut self, payload: &[u8]) {
            let mut out = Vec::with_capacity(payload.len() + 4);
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
            out.push(self.seq);
            out.extend_from_slice(payload);
            self.seq = self.seq.wrapping_add(1);
            tokio::time::timeout(BOUND, self.stream.write_all(&out))
                .await
                .expect("a write within the bound")
                .expect("a write");
        }

        /// Start a command (sequence 0).
        pub async fn command(&mut self, payload: &[u8]) {
            self.seq = 0;
            self.write(payload).await;
        }

        /// One packet (payloads below 16 MiB only: these tests send small ones).
        pub async fn packet(&mut self) -> Vec<u8> {
            let mut h = [0u8; 4];
            tokio::time::timeout(BOUND, self.stream.read_exact(&mut h))
                .await
                .expect("a packet within the bound: nothing may hang")
                .expect("a packet");
            let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
            assert_eq!(h[3], self.seq, "packets in sequence");
            self.seq = h[3].wrapping_add(1);
            let mut p = vec![0u8; len];
            tokio::time::timeout(BOUND, self.stream.read_exact(&mut p))
                .await
                .expect("a packet within the bound")
                .expect("a packet");
            if self.trace {
                eprintln!("<- seq {} len {len}: {:02x?}", h[3], &p[..p.len().min(48)]);
            }
            p
        }

        /// Nothing more arrives within a short while (a response read to its end).
        pub async fn quiet(&mut self) -> bool {
            let mut b = [0u8; 1];
            tokio::time::timeout(Duration::from_millis(300), self.stream.peek(&mut b))
                .await
                .is_err()
        }

        /// Read a response to its end (text or binary rows are kept as bytes).
        pub async fn reply(&mut self) -> Reply {
            let mut r = Reply::default();
            loop {
                let p = self.packet().await;
                match p[0] {
                    0xFF => {
                        let (code, msg) = err_of(&p);
                        if code == 0xFFFF && self.has(MariadbCapabilities::MARIADB_CLIENT_PROGRESS)
                        {
                            r.progress += 1;
                            continue;
                        }
                        r.err = Some((code, msg));
                        return r;
                    }
                    0x00 => {
                        let (affected, st) = ok_of(&p);
                        r.oks.push((affected, st));
                        if st & MORE_RESULTS == 0 {
                            return r;
                        }
                    }
                    0xFB => {
                        r.infile = Some(p[1..].to_vec());
                        return r;
                    }
                    _ => {
                        let mut pos = 0;
                        let n = lenenc(&p, &mut pos);
                        let follows = !self.has(MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA)
                            || p[pos] == 1;
                        let mut set = Set::default();
                        if follows {
                            let mut cols = Vec::new();
                            for _ in 0..n {
                                let c = self.packet().await;
                                cols.push(self.column(&c));
                            }
                            set.columns = Some(cols);
                        }
                        if !self.deprecate_eof() {
                            let e = self.packet().await;
                            assert_eq!(e[0], 0xFE, "the EOF after the column definitions");
                            let st = u16::from_le_bytes([e[3], e[4]]);
                            if st & CURSOR_EXISTS != 0 {
                                set.status = st;
                                r.sets.push(set);
                                return r;
                            }
                        }
                        loop {
                            let p = self.packet().await;
                            if p[0] == 0xFF {
                                let (code, msg) = err_of(&p);
                                if code == 0xFFFF
                                    && self.has(MariadbCapabilities::MARIADB_CLIENT_PROGRESS)
                                {
                                    r.progress += 1;
                                    continue;
                                }
                                r.sets.push(set);
                                r.err = Some((code, msg));
                                return r;
                            }
                            if p[0] == 0xFE && p.len() < 0xFF_FFFF {
                                set.status = if self.deprecate_eof() {
                                    ok_of(&p).1
                                } else {
                                    u16::from_le_bytes([p[3], p[4]])
                                };
                                break;
                            }
                            set.rows.push(p);
                        }
                        let st = set.status;
                        r.sets.push(set);
                        if st & MORE_RESULTS == 0 {
                            return r;
                        }
                    }
                }
            }
        }

        /// The rows of a COM_STMT_FETCH, to their end.
        pub async fn fetched(&mut self) -> Reply {
            let mut r = Reply::default();
            let mut set = Set::default();
            loop {
                let p = self.packet().await;
                if p[0] == 0xFF {
                    r.err = Some(err_of(&p));
                    return r;
                }
                if p[0] == 0xFE && p.len() < 0xFF_FFFF {
                    set.status = if self.deprecate_eof() {
                        ok_of(&p).1
                    } else {
                        u16::from_le_bytes([p[3], p[4]])
                    };
                    r.sets.push(set);
                    return r;
                }
                set.rows.push(p);
            }
        }

        fn column(&self, c: &[u8]) -> Col {
            let mut pos = 0;
            for _ in 0..4 {
                lenenc_str(c, &mut pos);
            }
            let name = lenenc_str(c, &mut pos).to_vec();
            lenenc_str(c, &mut pos);
            let mut ext = Vec::new();
            if self.has(MariadbCapabilities::MARIADB_CLIENT_EXTENDED_METADATA) {
                let block = lenenc_str(c, &mut pos);
                let mut q = 0;
                while q + 1 < block.len() {
                    let kind = block[q];
                    let len = block[q + 1] as usize;
                    ext.push((kind, block[q + 2..q + 2 + len].to_vec()));
                    q += 2 + len;
                }
            }
            lenenc(c, &mut pos);
            let kind = c[pos + 6];
            Col { name, kind, ext }
        }

        /// COM_QUERY and its whole response.
        pub async fn query(&mut self, sql: &str) -> Reply {
            let mut p = vec![0x03];
            p.extend_from_slice(sql.as_bytes());
            self.command(&p).await;
            self.reply().await
        }

        /// COM_STMT_PREPARE: the statement id and its parameter count.
        pub async fn prepare(&mut self, sql: &str) -> Result<(u32, u16), (u16, String)> {
            let mut p = vec![0x16];
            p.extend_from_slice(sql.as_bytes());
            self.command(&p).await;
            let head = self.packet().await;
            if head[0] == 0xFF {
                return Err(err_of(&head));
            }
            let id = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes"));
            let columns = u16::from_le_bytes([head[5], head[6]]);
            let params = u16::from_le_bytes([head[7], head[8]]);
            let eofs = usize::from(!self.deprecate_eof());
            let mut left = 0;
            if params > 0 {
                left += params as usize + eofs;
            }
            if columns > 0 {
                left += columns as usize + eofs;
            }
            for _ in 0..left {
                self.packet().await;
            }
            Ok((id, params))
        }

        pub async fn close_stmt(&mut self, id: u32) {
            let mut p = vec![0x19];
            p.extend_from_slice(&id.to_le_bytes());
            self.command(&p).await;
        }
    }

    pub fn err_of(p: &[u8]) -> (u16, String) {
        let code = u16::from_le_bytes([p[1], p[2]]);
        let msg = if p.get(3) == Some(&b'#') {
            &p[9..]
        } else {
            &p[3..]
        };
        (code, String::from_utf8_lossy(msg).into_owned())
    }

    pub fn ok_of(p: &[u8]) -> (u64, u16) {
        let mut pos = 1;
        let affected = lenenc(p, &mut pos);
        lenenc(p, &mut pos);
        (affected, u16::from_le_bytes([p[pos], p[pos + 1]]))
    }
}

use mysql_common::constants::{CapabilityFlags, MariadbCapabilities};
use raw::{Raw, Reply};

fn all_ext() -> MariadbCapabilities {
    MariadbCapabilities::MARIADB_CLIENT_PROGRESS
        | MariadbCapabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS
        | MariadbCapabilities::MARIADB_CLIENT_EXTENDED_METADATA
        | MariadbCapabilities::MARIADB_CLIENT_CACHE_METADATA
}

fn base_caps() -> CapabilityFlags {
    CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_MULTI_STATEMENTS
        | CapabilityFlags::CLIENT_PS_MULTI_RESULTS
        | CapabilityFlags::CLIENT_TRANSACTIONS
}

async fn app_raw(lab: &Lab, port: u16, caps: CapabilityFlags, ext: MariadbCapabilities) -> Raw {
    let app = &lab.state().users.app;
    Raw::connect(port, &app.user, &app.password, caps, ext, None)
        .await
        .unwrap_or_else(|e| panic!("login at {port}: {e:?}"))
}

/// The two ways every case runs.
fn paths(lab: &Lab, proxy: &dbshift_proxy::ProxyHandle) -> [(&'static str, u16); 2] {
    [
        ("direct", writer_port(lab)),
        ("proxy", proxy.local_addr().port()),
    ]
}

/// Status flags that mean the same directly and through the proxy (the proxy's own session
/// tracking sets SESSION_STATE_CHANGED where the client did not ask for it).
const SAME_STATUS: u16 = 1 | 2 | raw::MORE_RESULTS | raw::CURSOR_EXISTS | raw::LAST_ROW_SENT;

fn same(mut r: Reply) -> Reply {
    // "The statement (N) has no open cursor" names the server's statement id, which the proxy
    // remaps (the client's id is not the backend's).
    if let Some((1421, msg)) = &mut r.err {
        *msg = String::from("The statement has no open cursor");
    }
    for o in &mut r.oks {
        o.1 &= SAME_STATUS;
    }
    for s in &mut r.sets {
        s.status &= SAME_STATUS;
    }
    r
}

async fn exec_sql(lab: &Lab, sql: &str) {
    let mut admin = lab
        .connect_admin(&lab.state().clusters[0].writer)
        .await
        .expect("an admin connection");
    admin.exec_sql(sql).await.expect("the admin statement");
    admin.close().await;
}

/// The proxy offers MariaDB's extended capabilities and LOCAL INFILE as the server does
/// (the proxy used to offer none and set CLIENT_MYSQL), never compression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_capabilities_are_offered_as_far_as_the_proxy_carries_them() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let mut seen = Vec::new();
    for (how, port) in paths(lab, &proxy) {
        let caps = base_caps() | CapabilityFlags::CLIENT_LOCAL_FILES;
        let c = app_raw(lab, port, caps, all_ext()).await;
        assert!(
            c.caps.contains(CapabilityFlags::CLIENT_LOCAL_FILES),
            "{how}: LOCAL INFILE offered"
        );
        if how == "proxy" {
            assert!(
                !c.server_caps.contains(CapabilityFlags::CLIENT_COMPRESS),
                "the proxy never offers compression"
            );
        }
        seen.push((
            c.ext,
            c.caps.contains(CapabilityFlags::CLIENT_LONG_PASSWORD),
        ));
    }
    assert_eq!(seen[0], seen[1], "direct, then through the proxy");
    assert_eq!(seen[1].0, all_ext(), "all four extended capabilities");
    proxy.shutdown().await;
}

/// One LOAD ... LOCAL INFILE: the file sent when asked for (or refused with an empty packet
/// when `send` is false), then the server's answer and the table's rows.
async fn load_local(
    c: &mut Raw,
    sql: &str,
    file: &[u8],
    send: bool,
    table: &str,
) -> (Reply, Reply) {
    let r = c.query(sql).await;
    let answer = match &r.infile {
        Some(name) => {
            assert!(sql.contains(std::str::from_utf8(name).expect("a file name")));
            if send {
                // In two packets, as a client reading its file in chunks does.
                let (a, b) = file.split_at(file.len() / 2);
                c.write(a).await;
                c.write(b).await;
            }
            c.write(&[]).await;
            c.reply().await
        }
        None => r,
    };
    let rows = c.query(&format!("SELECT * FROM {table} ORDER BY id")).await;
    (same(answer), same(rows))
}

/// LOAD DATA LOCAL and LOAD XML LOCAL carried when the client and the server allow it; a
/// client that refuses its file, a client without the capability and a server with
/// `local_infile` off get the same answers as directly. (One test: `local_infile` is global.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_infile_with_the_clients_and_the_servers_consent() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let csv = b"1,one\n2,two\n3,three\n";
    let xml = b"<list>\n<row id=\"1\" v=\"one\"/>\n<row id=\"2\" v=\"two\"/>\n</list>\n";
    let mut results: Vec<Vec<(Reply, Reply)>> = Vec::new();
    for (how, port) in paths(lab, &proxy) {
        let t = format!("infile_{how}");
        let mut out = Vec::new();
        let with = base_caps() | CapabilityFlags::CLIENT_LOCAL_FILES;
        let mut c = app_raw(lab, port, with, all_ext()).await;
        let r = c
            .query(&format!(
                "CREATE OR REPLACE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(16))"
            ))
            .await;
        assert_eq!(r.err, None, "{how}");
        let load =
            format!("LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE {t} FIELDS TERMINATED BY ','");
        let loaded = load_local(&mut c, &load, csv, true, &t).await;
        assert_eq!(
            loaded.0.oks.first().map(|o| o.0),
            Some(3),
            "{how}: {loaded:?}"
        );
        out.push(loaded);
        // The session goes on, and a multi-statement with a LOAD in it too.
        c.query(&format!("DELETE FROM {t}")).await;
        let multi = format!("{load}; SELECT COUNT(*) FROM {t}");
        let r = c.query(&multi).await;
        assert!(r.infile.is_some(), "{how}");
        c.write(csv).await;
        c.write(&[]).await;
        out.push((same(c.reply().await), Reply::default()));
        // LOAD XML.
        c.query(&format!("DELETE FROM {t}")).await;
        let xml_load =
            format!("LOAD XML LOCAL INFILE 'rows.xml' INTO TABLE {t} ROWS IDENTIFIED BY '<row>'");
        let loaded = load_local(&mut c, &xml_load, xml, true, &t).await;
        assert_eq!(
            loaded.0.oks.first().map(|o| o.0),
            Some(2),
            "{how}: {loaded:?}"
        );
        out.push(loaded);
        // The client refuses its file (an empty packet at once).
        c.query(&format!("DELETE FROM {t}")).await;
        out.push(load_local(&mut c, &load, csv, false, &t).await);
        // A client that did not ask for LOCAL INFILE.
        let mut without = app_raw(lab, port, base_caps(), all_ext()).await;
        let refused = load_local(&mut without, &load, csv, true, &t).await;
        assert!(refused.0.err.is_some(), "{how}: {refused:?}");
        out.push(refused);
        results.push(out);
    }
    // The server's own setting: off.
    exec_sql(lab, "SET GLOBAL local_infile = OFF").await;
    for (i, (how, port)) in paths(lab, &proxy).into_iter().enumerate() {
        let t = format!("infile_{how}");
        let with = base_caps() | CapabilityFlags::CLIENT_LOCAL_FILES;
        let mut c = app_raw(lab, port, with, all_ext()).await;
        let load =
            format!("LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE {t} FIELDS TERMINATED BY ','");
        let refused = load_local(&mut c, &load, csv, true, &t).await;
        results[i].push(refused);
    }
    exec_sql(lab, "SET GLOBAL local_infile = ON").await;
    let last = results[0].last().expect("a case").clone();
    assert!(
        last.0.err.is_some(),
        "refused with local_infile off: {last:?}"
    );
    assert_eq!(results[0], results[1], "direct, then through the proxy");
    proxy.shutdown().await;
}

/// A bulk request (COM_STMT_BULK_EXECUTE) of `rows` (id, text) with the types sent.
fn bulk(id: u32, rows: &[(i64, &str)]) -> Vec<u8> {
    let mut p = vec![0xFA];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&128u16.to_le_bytes());
    p.extend_from_slice(&[0x08, 0x00, 0xFD, 0x00]);
    for (n, v) in rows {
        p.push(0);
        p.extend_from_slice(&n.to_le_bytes());
        p.push(0);
        raw::put_lenenc(&mut p, v.as_bytes());
    }
    p
}

/// Bulk execution with and without RETURNING, and of an unknown statement, the same
/// directly and through the proxy (the proxy used to refuse the command with 1047); a
/// client on mysql_async (which uses bulk execution for `exec_batch` when offered) too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_execution_with_and_without_returning() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let mut results = Vec::new();
    for (how, port) in paths(lab, &proxy) {
        let t = format!("bulk_{how}");
        let mut c = app_raw(lab, port, base_caps(), all_ext()).await;
        assert!(
            c.has(MariadbCapabilities::MARIADB_CLIENT_STMT_BULK_OPERATIONS),
            "{how}"
        );
        c.query(&format!(
            "CREATE OR REPLACE TABLE {t} (id BIGINT PRIMARY KEY, v VARCHAR(16))"
        ))
        .await;
        let (plain, _) = c
            .prepare(&format!("INSERT INTO {t} VALUES (?, ?)"))
            .await
            .expect("prepared");
        c.command(&bulk(plain, &[(1, "one"), (2, "two"), (3, "three")]))
            .await;
        let inserted = same(c.reply().await);
        assert_eq!(
            inserted.oks.first().map(|o| o.0),
            Some(3),
            "{how}: {inserted:?}"
        );
        let (returning, _) = c
            .prepare(&format!("INSERT INTO {t} VALUES (?, ?) RETURNING id, v"))
            .await
            .expect("prepared");
        c.command(&bulk(returning, &[(4, "four"), (5, "five")]))
            .await;
        let returned = same(c.reply().await);
        assert_eq!(
            returned.sets.iter().map(|s| s.rows.len()).sum::<usize>(),
            2,
            "{how}: {returned:?}"
        );
        // A duplicate key fails the whole request with the server's error.
        c.command(&bulk(plain, &[(6, "six"), (1, "again")])).await;
        let duplicate = same(c.reply().await);
        assert_eq!(duplicate.code(), Some(1062), "{how}: {duplicate:?}");
        c.close_stmt(plain).await;
        c.command(&bulk(plain, &[(7, "seven")])).await;
        let closed = same(c.reply().await);
        assert_eq!(closed.code(), Some(1243), "{how}: {closed:?}");
        let rows = same(c.query(&format!("SELECT * FROM {t} ORDER BY id")).await);
        results.push((inserted, returned, duplicate, closed.code(), rows));

        // mysql_async's exec_batch.
        let app = &lab.state().users.app;
        let opts = dbshift_db::ConnectOptions::new("127.0.0.1", port, app.user.clone())
            .password(app.password.clone())
            .database("app")
            .to_opts();
        let mut m = tokio::time::timeout(raw::BOUND, mysql_async::Conn::new(opts))
            .await
            .expect("in time")
            .expect("mysql_async connects");
        use mysql_async::prelude::*;
        tokio::time::timeout(
            raw::BOUND,
            m.exec_batch(
                format!("INSERT INTO {t} VALUES (?, ?)"),
                (10..20).map(|i| (i, format!("v{i}"))),
            ),
        )
        .await
        .expect("in time")
        .expect("exec_batch");
        let n: u64 = m
            .query_first(format!("SELECT COUNT(*) FROM {t} WHERE id >= 10"))
            .await
            .expect("a count")
            .expect("a row");
        assert_eq!(n, 10, "{how}");
        m.disconnect().await.expect("disconnect");
    }
    assert_eq!(results[0], results[1], "direct, then through the proxy");
    proxy.shutdown().await;
}

/// COM_STMT_EXECUTE request without parameters.
fn execute(id: u32, cursor: bool) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(u8::from(cursor));
    p.extend_from_slice(&1u32.to_le_bytes());
    p
}

fn fetch(id: u32, rows: u32) -> Vec<u8> {
    let mut p = vec![0x1C];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&rows.to_le_bytes());
    p
}

/// The metadata cache: executes of a prepared statement come without its column definitions
/// (the client has them from the prepare), directly and through the proxy (which used to
/// offer no cache); after a switch the statement is re-prepared on the new connection and
/// executes still read right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_cache_and_a_switch() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let mut results = Vec::new();
    for deprecate_eof in [false, true] {
        for (how, port) in paths(lab, &proxy) {
            let mut caps = base_caps();
            if deprecate_eof {
                caps |= CapabilityFlags::CLIENT_DEPRECATE_EOF;
            }
            let mut c = app_raw(lab, port, caps, all_ext()).await;
            let (id, _) = c
                .prepare("SELECT seq, CONCAT('r', seq) FROM seq_1_to_4")
                .await
                .expect("prepared");
            c.command(&execute(id, false)).await;
            let first = same(c.reply().await);
            c.command(&execute(id, false)).await;
            let second = same(c.reply().await);
            // MariaDB leaves them out whenever the client has them (from the prepare already).
            assert!(
                second.sets[0].columns.is_none(),
                "{how}: left out: {second:?}"
            );
            assert_eq!(first.sets[0].rows, second.sets[0].rows);
            if how == "proxy" {
                proxy
                    .switch(dbshift_proxy::Backend::new("127.0.0.1", writer_port(lab)))
                    .await
                    .expect("a switch to the same writer");
                c.command(&execute(id, false)).await;
                let after = same(c.reply().await);
                assert_eq!(after.sets[0].rows, first.sets[0].rows, "after the switch");
                c.command(&execute(id, false)).await;
                let again = same(c.reply().await);
                assert_eq!(again.sets[0].rows, first.sets[0].rows);
            }
            results.push((deprecate_eof, first, second));
        }
    }
    assert_eq!(results[0], results[1], "direct, then through the proxy");
    assert_eq!(results[2], results[3], "direct, then through the proxy");
    proxy.shutdown().await;
}

/// MARIADB_CLIENT_EXTENDED_TYPE_INFO: the client sees the columns' type names (inet6,
/// point) and format (json), directly and through the proxy (which used to offer none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_type_information_reaches_the_client() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let mut results = Vec::new();
    for (how, port) in paths(lab, &proxy) {
        let t = format!("ext_types_{how}");
        let mut c = app_raw(lab, port, base_caps(), all_ext()).await;
        c.query(&format!(
            "CREATE OR REPLACE TABLE {t} (j JSON, ip INET6, pt POINT)"
        ))
        .await;
        c.query(&format!(
            "INSERT INTO {t} VALUES ('{{\"a\": 1}}', '::1', POINT(1, 2))"
        ))
        .await;
        let r = same(c.query(&format!("SELECT j, ip, pt FROM {t}")).await);
        let cols = r.sets[0].columns.clone().expect("definitions");
        let names: Vec<Vec<u8>> = cols
            .iter()
            .flat_map(|c| c.ext.iter().map(|e| e.1.clone()))
            .collect();
        for want in [&b"json"[..], b"inet6", b"point"] {
            assert!(
                names.iter().any(|n| n == want),
                "{how}: {want:?} in {cols:?}"
            );
        }
        // Binary protocol too.
        let (id, _) = c
            .prepare(&format!("SELECT j, ip, pt FROM {t}"))
            .await
            .expect("prepared");
        c.command(&execute(id, false)).await;
        let b = same(c.reply().await);
        results.push((r, b));
    }
    assert_eq!(results[0], results[1], "direct, then through the proxy");
    proxy.shutdown().await;
}

/// Progress reports of an ALTER TABLE (MARIADB_CLIENT_PROGRESS) reach the client and do not
/// end the response: the OK that ends it follows, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reports_reach_the_client() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    for (how, port) in paths(lab, &proxy) {
        let t = format!("progress_{how}");
        let mut c = app_raw(lab, port, base_caps(), all_ext()).await;
        assert!(c.has(MariadbCapabilities::MARIADB_CLIENT_PROGRESS), "{how}");
        c.query(&format!(
            "CREATE OR REPLACE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(64)) \
             SELECT seq AS id, REPEAT('x', 60) AS v FROM seq_1_to_20000"
        ))
        .await;
        // MariaDB 10.11 sent the first report at the ALTER's first progress step here (the
        // whole binary runs in a few seconds); the setting only spaces the later ones, so
        // the case does not hang on the ALTER's duration.
        c.query("SET SESSION progress_report_time = 1").await;
        let r = c
            .query(&format!("ALTER TABLE {t} ALGORITHM=COPY, ADD COLUMN w INT"))
            .await;
        assert_eq!(r.err, None, "{how}: {r:?}");
        assert_eq!(r.oks.len(), 1, "{how}: the ALTER's OK");
        assert!(r.progress > 0, "{how}: progress reports: {r:?}");
        let after = c.query("SELECT 1").await;
        assert_eq!(after.sets[0].rows, vec![vec![1, b'1']], "{how}");
    }
    proxy.shutdown().await;
}

/// A read-only cursor (COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY, then COM_STMT_FETCH), under
/// classic EOF and DEPRECATE_EOF, with the metadata cache: the same rows and statuses
/// directly and through the proxy, a fetch past the end answered 1421, nothing hangs; through
/// the proxy the open cursor pins the session until its last row is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_fetches_and_a_fetch_past_the_end() {
    let lab = lab().await;
    let proxy = start_proxy(lab).await;
    let mut results = Vec::new();
    for deprecate_eof in [false, true] {
        for (how, port) in paths(lab, &proxy) {
            let mut caps = base_caps();
            if deprecate_eof {
                caps |= CapabilityFlags::CLIENT_DEPRECATE_EOF;
            }
            let mut c = app_raw(lab, port, caps, all_ext()).await;
            let (id, _) = c
                .prepare("SELECT seq, CONCAT('r', seq) FROM seq_1_to_5")
                .await
                .expect("prepared");
            let mut steps = Vec::new();
            for round in 0..2 {
                c.command(&execute(id, true)).await;
                let opened = same(c.reply().await);
                assert_ne!(
                    opened.sets[0].status & raw::CURSOR_EXISTS,
                    0,
                    "{how}: {opened:?}"
                );
                if how == "proxy" && round == 0 {
                    let pinned = proxy
                        .status()
                        .sessions
                        .iter()
                        .any(|s| s.unmovable.contains(&"open cursors"));
                    assert!(
                        pinned,
                        "an open cursor pins the session (deprecate_eof {deprecate_eof})"
                    );
                }
                steps.push(opened);
                c.command(&fetch(id, 3)).await;
                steps.push(same(c.fetched().await));
                c.command(&fetch(id, 3)).await;
                let last = same(c.fetched().await);
                assert_ne!(
                    last.sets[0].status & raw::LAST_ROW_SENT,
                    0,
                    "{how}: {last:?}"
                );
                steps.push(last);
                if how == "proxy" && round == 0 {
                    let pinned = proxy
                        .status()
                        .sessions
                        .iter()
                        .any(|s| s.unmovable.contains(&"open cursors"));
                    assert!(!pinned, "the last row fetched: movable again");
                }
                c.command(&fetch(id, 3)).await;
                let past = same(c.fetched().await);
                assert_eq!(past.code(), Some(1421), "{how}: {past:?}");
                steps.push(past);
            }
            assert!(c.quiet().await, "{how}: nothing left over");
            let one = c.query("SELECT 1").await;
            assert_eq!(one.sets[0].rows, vec![vec![1, b'1']]);
            results.push(steps);
        }
    }
    assert_eq!(results[0], results[1], "direct, then through the proxy");
    assert_eq!(results[2], results[3], "direct, then through the proxy");
    proxy.shutdown().await;
}

/// A TCP tap between the proxy and the server that keeps what the proxy sends.
async fn tap(upstream: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = sent.clone();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let up = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                .await
                .expect("the server listens");
            let (mut dr, mut dw) = down.into_split();
            let (mut ur, mut uw) = up.into_split();
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut b = vec![0u8; 16 * 1024];
                while let Ok(n) = dr.read(&mut b).await {
                    if n == 0 || uw.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                    keep.lock()
                        .expect("the tap's buffer")
                        .extend_from_slice(&b[..n]);
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut ur, &mut dw).await;
            });
        }
    });
    (port, sent)
}

/// The client's connect attributes reach the server: seen on the wire between the proxy and
/// the server (plain TCP there for the test), since the lab's servers run without
/// performance_schema (where MariaDB would show them, `session_connect_attrs`). The proxy used
/// to drop them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_attributes_reach_the_server() {
    let lab = lab().await;
    let (tapped, sent) = tap(writer_port(lab)).await;
    let admin = &lab.state().users.admin;
    let mut cfg = dbshift_proxy::ProxyConfig::new(
        "127.0.0.1:0".parse().expect("an address"),
        dbshift_proxy::Backend::new("127.0.0.1", tapped),
        dbshift_proxy::AuthSource::Admin {
            user: admin.user.clone(),
            password: admin.password.clone(),
        },
    );
    cfg.client_tls = Some(proxy_cert(lab));
    let proxy = dbshift_proxy::start(cfg).await.expect("the proxy starts");
    let app = &lab.state().users.app;
    let attrs = HashMap::from([
        ("program_name".to_string(), "capabilities-test".to_string()),
        ("dbshift_marker".to_string(), "attr-7f3e".to_string()),
    ]);
    let c = Raw::connect(
        proxy.local_addr().port(),
        &app.user,
        &app.password,
        base_caps(),
        all_ext(),
        Some(attrs),
    )
    .await
    .expect("a login through the proxy");
    assert!(c.caps.contains(CapabilityFlags::CLIENT_CONNECT_ATTRS));
    let wire = sent.lock().expect("the tap's buffer").clone();
    for needle in [&b"dbshift_marker"[..], b"attr-7f3e", b"capabilities-test"] {
        assert!(
            wire.windows(needle.len()).any(|w| w == needle),
            "{:?} sent to the server",
            String::from_utf8_lossy(needle)
        );
    }
    drop(c);
    proxy.shutdown().await;
    let _ = Duration::from_secs(0);
}
