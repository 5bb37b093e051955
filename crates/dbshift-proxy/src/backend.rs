//! The proxy's own connections to a backend server: TCP, TLS with the certificate verified,
//! the account's plugin (mysql_native_password, client_ed25519, caching_sha2_password)
//! answered from a session's [`SessionSecret`], and the few commands the
//! proxy runs itself on a client's backend session (session tracking, replay, re-prepare).
//!
//! Nothing here decides when to connect or switch; the session and the control do.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::auth::{sha2_rsa_payload, Password, SessionSecret, CACHING_SHA2, CLIENT_ED25519};
use crate::error::{Error, Result};
use crate::protocol::{
    self, cap, handshake_response_payload, lenenc_bytes, parse_err, parse_server_handshake,
    ssl_request_payload, ServerHandshake, NATIVE_PASSWORD,
};
use crate::response::{Expect, Framing, Kind, Response};
use crate::wire::{Stream, Wire};

/// A backend server's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub host: String,
    pub port: u16,
}

impl Backend {
    pub fn new(host: impl Into<String>, port: u16) -> Backend {
        Backend {
            host: host.into(),
            port,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The session tracking every backend session of the proxy runs with: the server reports
/// the schema and every system variable a statement changed in its OK packets. What the client
/// itself asked to track is kept apart and its OK packets filtered to it (`tracking.rs`).
pub const TRACKING_SQL: &str =
    "SET SESSION session_track_schema=ON, session_track_system_variables='*'";

/// TLS client configuration that verifies backends against the CA bundle at `ca`.
pub fn client_tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
    for c in certs {
        let c = c.map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls(format!("{}: no CA certificate", ca.display())));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// TLS server configuration for client connections.
pub fn server_tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Where and how to reach one backend.
#[derive(Clone)]
pub struct Target {
    pub backend: Backend,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub connect_timeout: Duration,
}

/// What a client session asked for, replayed on every backend connection it gets.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    pub user: String,
    pub client_caps: u32,
    /// MariaDB extended capabilities the client asked for (of those the proxy offered).
    pub client_ext_caps: u32,
    pub max_packet: u32,
    pub charset: u8,
    /// The client's connect attributes, as it sent them.
    pub connect_attrs: Option<Vec<u8>>,
}

/// The capabilities a backend connection asks for: the client's own as far as they shape the
/// backend's answers, what the proxy itself needs, and, with a MariaDB server (CLIENT_MYSQL
/// clear), the client's extended ones; each kept only where the server offers it.
pub fn backend_caps(login: &LoginSpec, hs: &ServerHandshake, schema: bool) -> (u32, u32) {
    let mut caps = (login.client_caps & cap::PASSED_ON)
        | cap::PROTOCOL_41
        | cap::SECURE_CONNECTION
        | cap::PLUGIN_AUTH
        | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA
        | cap::SESSION_TRACK
        | cap::LONG_PASSWORD;
    if schema {
        caps |= cap::CONNECT_WITH_DB;
    }
    let mariadb = hs.capabilities & cap::LONG_PASSWORD == 0;
    if mariadb {
        // CLIENT_MYSQL clear: "my extended capabilities are in the filler".
        caps &= !cap::LONG_PASSWORD;
    }
    caps &= hs.capabilities | cap::LONG_PASSWORD;
    let ext = if mariadb {
        login.client_ext_caps & hs.ext_capabilities
    } else {
        0
    };
    (caps, ext)
}

/// A backend connection whose greeting was read and nothing sent yet.
pub struct Early {
    wire: Wire,
    pub hs: ServerHandshake,
}

/// One authenticated backend connection.
pub struct BackendConn {
    pub wire: Wire,
    pub handshake: ServerHandshake,
    pub caps: u32,
    /// MariaDB extended capabilities in force on this connection.
    pub ext_caps: u32,
    /// Status flags of the last OK on the connection's setup (what a COM_CHANGE_USER answers).
    pub status: u16,
}

impl Target {
    fn fail(&self, message: impl Into<String>) -> Error {
        Error::Backend {
            endpoint: self.backend.to_string(),
            message: message.into(),
        }
    }

    async fn open(&self) -> Result<(Wire, ServerHandshake)> {
        let addr = (self.backend.host.as_str(), self.backend.port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| self.fail(format!("no connection within {:?}", self.connect_timeout)))?
            .map_err(|e| self.fail(format!("cannot connect: {e}")))?;
        tcp.set_nodelay(true)?;
        let mut wire = Wire::new(Stream::Plain(tcp));
        let (_, payload) = tokio::time::timeout(self.connect_timeout, wire.read_packet())
            .await
            .map_err(|_| self.fail("no server greeting"))??;
        let hs = parse_server_handshake(&payload).map_err(|e| self.fail(e.to_string()))?;
        Ok((wire, hs))
    }

    /// Read the greeting only (server version, capabilities), then close.
    pub async fn greeting(&self) -> Result<ServerHandshake> {
        Ok(self.open().await?.1)
    }

    /// Connect and authenticate as `login` with `secret`, with `schema` as the default
    /// database, and turn session tracking on.
    pub async fn connect(
        &self,
        login: &LoginSpec,
        secret: &SessionSecret,
        schema: Option<&str>,
    ) -> Result<BackendConn> {
        let fut = self.connect_inner(login, secret, schema);
        tokio::time::timeout(self.connect_timeout * 2, fut)
            .await
            .map_err(|_| self.fail("authentication did not finish in time"))?
    }

    /// A connection opened before the client logged in (its greeting read, nothing sent):
    /// the proxy greets the client with this connection's id, so that `CONNECTION_ID()` and
    /// the greeting agree.
    pub async fn open_early(&self) -> Result<Early> {
        let (wire, hs) = self.open().await?;
        Ok(Early { wire, hs })
    }

    /// Close a connection opened early that no client logged in on, as a completed login (as
    /// the admin user, then COM_QUIT): a server counts a connection dropped during its
    /// handshake against the proxy's host (`max_connect_errors`), and a load balancer's health
    /// checks would otherwise get the proxy blocked. Without the admin's password it is
    /// dropped.
    pub async fn settle_early(&self, early: Early, admin: Option<(String, Password)>) {
        let Some((user, password)) = admin else {
            return;
        };
        let login = LoginSpec {
            user,
            client_caps: cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::PLUGIN_AUTH,
            client_ext_caps: 0,
            max_packet: 1 << 24,
            charset: early.hs.charset,
            connect_attrs: None,
        };
        let secret = SessionSecret::Password(password);
        let fut = self.login_bare(early.wire, early.hs, &login, &secret);
        match tokio::time::timeout(self.connect_timeout, fut).await {
            Ok(Ok(mut wire)) => {
                let _ = wire.write_packet(0, &[protocol::com::QUIT]).await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "settling an early backend connection"),
            Err(_) => tracing::debug!("settling an early backend connection timed out"),
        }
    }

    /// [`Target::connect`] on a connection opened early; if it went stale (the server's own
    /// `connect_timeout` passed while the client logged in) a fresh one is used.
    pub async fn connect_early(
        &self,
        early: Early,
        login: &LoginSpec,
        secret: &SessionSecret,
        schema: Option<&str>,
    ) -> Result<BackendConn> {
        let fut = self.login_on(early.wire, early.hs, login, secret, schema);
        match tokio::time::timeout(self.connect_timeout * 2, fut).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e @ Error::BackendRefused { .. })) => Err(e),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the early backend connection failed; a fresh one");
                self.connect(login, secret, schema).await
            }
            Err(_) => Err(self.fail("authentication did not finish in time")),
        }
    }

    async fn connect_inner(
        &self,
        login: &LoginSpec,
        secret: &SessionSecret,
        schema: Option<&str>,
    ) -> Result<BackendConn> {
        let (wire, hs) = self.open().await?;
        self.login_on(wire, hs, login, secret, schema).await
    }

    async fn login_on(
        &self,
        wire: Wire,
        hs: ServerHandshake,
        login: &LoginSpec,
        secret: &SessionSecret,
        schema: Option<&str>,
    ) -> Result<BackendConn> {
        if hs.capabilities & cap::SESSION_TRACK == 0 {
            return Err(self.fail("the server does not offer session tracking"));
        }
        let (caps, ext_caps) = backend_caps(login, &hs, schema.is_some());
        let (wire, caps) = self
            .authenticate(wire, &hs, login, secret, schema, caps, ext_caps)
            .await?;
        let mut conn = BackendConn {
            wire,
            handshake: hs,
            caps,
            ext_caps,
            status: 0,
        };
        match conn.simple(TRACKING_SQL).await {
            Ok(c) => conn.status = c.last_status & !protocol::status::SESSION_STATE_CHANGED,
            // An expired password puts the session in the server's sandbox, where the proxy
            // cannot turn tracking on: refused as a server with disconnect_on_expired_password.
            Err(Error::BackendRefused { code: 1820, .. }) => {
                return Err(Error::BackendRefused {
                    endpoint: self.backend.to_string(),
                    code: 1862,
                    state: "HY000".into(),
                    message: "Your password has expired. To log in you must change it using a \
                              client that supports expired passwords (dbshift proxy: change it \
                              on the server directly)"
                        .into(),
                });
            }
            Err(e) => return Err(self.fail(format!("turning session tracking on: {e}"))),
        }
        Ok(conn)
    }

    /// The handshake on an opened connection: TLS when configured, then the answer to the
    /// server's challenge (and to its switches) as `login` with `secret`. Gives the stream
    /// and the capabilities in force.
    #[allow(clippy::too_many_arguments)]
    async fn authenticate(
        &self,
        mut wire: Wire,
        hs: &ServerHandshake,
        login: &LoginSpec,
        secret: &SessionSecret,
        schema: Option<&str>,
        mut caps: u32,
        ext_caps: u32,
    ) -> Result<(Wire, u32)> {
        let mut seq = 1u8;
        if let Some(tls) = &self.tls {
            if hs.capabilities & cap::SSL == 0 {
                return Err(self.fail("TLS is configured but the server does not offer it"));
            }
            caps |= cap::SSL;
            seq = wire
                .write_packet(
                    seq,
                    &ssl_request_payload(caps, ext_caps, login.max_packet, login.charset),
                )
                .await?;
            let Stream::Plain(tcp) = std::mem::replace(&mut wire.stream, Stream::Empty) else {
                return Err(self.fail("stream already upgraded"));
            };
            let name = ServerName::try_from(self.backend.host.clone())
                .map_err(|e| self.fail(format!("not a valid TLS server name: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| self.fail(format!("TLS: {e}")))?;
            wire.stream = Stream::ClientTls(Box::new(tls));
        }
        // Answer the greeting's plugin when the secret can, else mysql_native_password (the
        // server then switches to the account's plugin).
        let (mut plugin, answer) = match secret.answer(&hs.auth_plugin, &hs.scramble) {
            Ok(a) => (hs.auth_plugin.clone(), a),
            Err(_) => (
                NATIVE_PASSWORD.to_string(),
                secret
                    .answer(NATIVE_PASSWORD, &hs.scramble)
                    .map_err(|e| self.fail(e))?,
            ),
        };
        let mut scramble = hs.scramble.clone();
        let payload = handshake_response_payload(
            caps,
            ext_caps,
            login.max_packet,
            login.charset,
            &login.user,
            &answer,
            schema,
            login.connect_attrs.as_deref(),
            &plugin,
        );
        wire.write_packet(seq, &payload).await?;
        let tls = self.tls.is_some();
        loop {
            let (seq, p) = wire.read_packet().await?;
            let reply = seq.wrapping_add(1);
            match p.first() {
                Some(0x00) => break,
                Some(0xFF) => {
                    let e = parse_err(&p);
                    return Err(Error::BackendRefused {
                        endpoint: self.backend.to_string(),
                        code: e.code,
                        state: e.state,
                        message: e.message,
                    });
                }
                Some(0xFE) => {
                    // Auth switch: the account's plugin, with a fresh challenge.
                    let mut pos = 1;
                    plugin =
                        String::from_utf8_lossy(protocol::nul_str(&p, &mut pos).unwrap_or(&[]))
                            .into_owned();
                    let data = p.get(pos..).unwrap_or(&[]);
                    // Scrambles end with a NUL that is not theirs; ed25519's nonce is 32 raw
                    // bytes.
                    scramble = if plugin == CLIENT_ED25519 {
                        data.to_vec()
                    } else {
                        data.strip_suffix(&[0]).unwrap_or(data).to_vec()
                    };
                    let answer = secret
                        .answer(&plugin, &scramble)
                        .map_err(|e| self.fail(e))?;
                    wire.write_packet(reply, &answer).await?;
                }
                Some(0x01) if plugin == CACHING_SHA2 => {
                    if let Some(out) =
                        sha2_more_data(&p[1..], tls, secret, &scramble).map_err(|e| self.fail(e))?
                    {
                        wire.write_packet(reply, &out).await?;
                    }
                }
                _ => return Err(self.fail("unexpected packet during authentication")),
            }
        }
        Ok((wire, caps))
    }

    /// A login with no session set-up (for [`Target::settle_early`]).
    async fn login_bare(
        &self,
        wire: Wire,
        hs: ServerHandshake,
        login: &LoginSpec,
        secret: &SessionSecret,
    ) -> Result<Wire> {
        let (caps, ext_caps) = backend_caps(login, &hs, false);
        let (wire, _) = self
            .authenticate(wire, &hs, login, secret, None, caps, ext_caps)
            .await?;
        Ok(wire)
    }
}

/// caching_sha2_password's AuthMoreData from the server (`data` after the 0x01): 0x03 is the
/// fast path's success (nothing to send, the OK follows); 0x04 asks for the full
/// authentication: the password in clear over TLS, else the server's RSA public key is
/// requested (0x02) and, once it arrives (PEM), the password is sent encrypted with it.
pub fn sha2_more_data(
    data: &[u8],
    tls: bool,
    secret: &SessionSecret,
    scramble: &[u8],
) -> std::result::Result<Option<Vec<u8>>, String> {
    match data {
        [0x03] => Ok(None),
        [0x04] => {
            let pw = secret.password().ok_or_else(|| {
                "caching_sha2_password asks for the full authentication, which needs the \
                 user's password (add it to the secrets file)"
                    .to_string()
            })?;
            if tls {
                let mut out = pw.to_vec();
                out.push(0);
                Ok(Some(out))
            } else {
                Ok(Some(vec![0x02]))
            }
        }
        pem if pem.starts_with(b"-----BEGIN") => {
            let pw = secret
                .password()
                .ok_or_else(|| "the RSA exchange needs the user's password".to_string())?;
            sha2_rsa_payload(pw, scramble, pem).map(Some)
        }
        _ => Err("unexpected caching_sha2_password data from the server".into()),
    }
}

/// A response collected whole (for the proxy's own commands only, never for relayed ones).
pub struct Collected {
    pub packets: Vec<Vec<u8>>,
    pub last_status: u16,
}

impl BackendConn {
    pub fn deprecate_eof(&self) -> bool {
        self.caps & cap::DEPRECATE_EOF != 0
    }

    /// What this connection negotiated that changes where a response ends.
    pub fn framing(&self) -> Framing {
        Framing {
            deprecate_eof: self.deprecate_eof(),
            progress: self.ext_caps & protocol::ext::PROGRESS != 0,
            cache_metadata: self.ext_caps & protocol::ext::CACHE_METADATA != 0,
        }
    }

    /// Send one command and collect its whole response; an ERR becomes an error.
    pub async fn command(&mut self, payload: &[u8]) -> Result<Collected> {
        self.wire.write_packet(0, payload).await?;
        let mut r = Response::new(Expect::of(payload[0]), self.framing());
        let mut out = Collected {
            packets: Vec::new(),
            last_status: 0,
        };
        while !r.done() {
            let (_, p) = self.wire.read_packet().await?;
            match r.feed(&p, p.len().min(protocol::MAX_PAYLOAD - 1)) {
                Kind::Err => {
                    let e = parse_err(&p);
                    return Err(Error::BackendRefused {
                        endpoint: String::from("session backend"),
                        code: e.code,
                        state: e.state,
                        message: e.message,
                    });
                }
                Kind::Ok(s) | Kind::Eof(s) => out.last_status = s,
                Kind::LocalInfile => return Err(Error::protocol("unexpected LOCAL INFILE")),
                Kind::Progress => continue,
                _ => {}
            }
            out.packets.push(p);
        }
        Ok(out)
    }

    /// A statement with no result set.
    pub async fn simple(&mut self, sql: &str) -> Result<Collected> {
        let mut p = Vec::with_capacity(sql.len() + 1);
        p.push(protocol::com::QUERY);
        p.extend_from_slice(sql.as_bytes());
        self.command(&p).await
    }

    /// A query's rows (text protocol), each column as bytes or NULL.
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<Vec<u8>>>>> {
        let c = self.simple(sql).await?;
        let Some(first) = c.packets.first() else {
            return Ok(Vec::new());
        };
        let mut pos = 0;
        let ncol = protocol::lenenc_int(first, &mut pos).unwrap_or(0) as usize;
        if first.first() == Some(&0) || ncol == 0 {
            return Ok(Vec::new());
        }
        // Under MARIADB_CLIENT_CACHE_METADATA a byte says whether the definitions follow.
        let definitions = if self.framing().cache_metadata && first.get(pos) == Some(&0) {
            0
        } else {
            ncol
        };
        let skip = 1 + definitions + usize::from(!self.deprecate_eof());
        let mut out = Vec::new();
        for p in c.packets.iter().skip(skip) {
            if p.first() == Some(&0xFE) && p.len() < protocol::MAX_PAYLOAD {
                break;
            }
            let mut pos = 0;
            let mut row = Vec::with_capacity(ncol);
            for _ in 0..ncol {
                if p.get(pos) == Some(&0xFB) {
                    pos += 1;
                    row.push(None);
                } else {
                    row.push(lenenc_bytes(p, &mut pos).map(|b| b.to_vec()));
                }
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Prepare `sql`; the backend's statement id.
    pub async fn prepare(&mut self, sql: &[u8]) -> Result<u32> {
        let mut p = Vec::with_capacity(sql.len() + 1);
        p.push(protocol::com::STMT_PREPARE);
        p.extend_from_slice(sql);
        let c = self.command(&p).await?;
        let head = c
            .packets
            .first()
            .and_then(|p| p.get(1..5))
            .ok_or_else(|| Error::protocol("short PREPARE_OK"))?;
        Ok(u32::from_le_bytes([head[0], head[1], head[2], head[3]]))
    }

    /// Say goodbye; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = self.wire.write_packet(0, &[protocol::com::QUIT]).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.wire.stream).await;
    }
}
