//! A session's login: the proxy's greeting, the client's handshake response and its
//! authentication (checked by the proxy against the accounts it knows), the backend login as
//! that user; and COM_CHANGE_USER, which authenticates again. It must never log the session's
//! secret.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::TcpStream;

use super::{send_err, Flow, Session, State};
use crate::auth::{self, SessionSecret, Stored, StoredCredential, CACHING_SHA2, CLIENT_ED25519};
use crate::backend::{LoginSpec, Target, TRACKING_SQL};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::protocol::{
    self, cap, com, ok_payload, parse_handshake_response, server_handshake_payload, NATIVE_PASSWORD,
};
use crate::shared::{SessionInfo, Shared};
use crate::wire::{Stream, Wire};

/// A backend connection opened before the greeting, settled (logged in and closed as the
/// admin) if no client logs in on it: see [`Target::settle_early`]. At most a few at once, so
/// a flood of clients that never log in cannot turn into a flood of admin logins.
struct EarlyGuard {
    shared: Arc<Shared>,
    target: Arc<Target>,
    early: Option<crate::backend::Early>,
}

static SETTLING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

impl Drop for EarlyGuard {
    fn drop(&mut self) {
        let Some(early) = self.early.take() else {
            return;
        };
        let Ok(permit) = SETTLING.try_acquire() else {
            return;
        };
        let admin = match &self.shared.cfg.auth {
            auth::AuthSource::Admin { user, password } => {
                Some((user.clone(), auth::Password::new(password.clone())))
            }
            auth::AuthSource::Hashes(_) => None,
        };
        let target = self.target.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                target.settle_early(early, admin).await;
                drop(permit);
            });
        }
    }
}

fn scramble() -> [u8; 20] {
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in s.iter_mut() {
        // Printable and never NUL: some clients treat the scramble as a C string.
        *b = rng.random_range(33u8..127);
    }
    s
}

impl Session {
    /// Handshake and authentication. `Ok(None)`: the client was refused (and told why).
    pub(super) async fn open(
        shared: &Arc<Shared>,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<Option<Session>> {
        let mut ctl = shared.control.subscribe();
        // New connections wait before their greeting while paused.
        if ctl.borrow_and_update().paused {
            let held_at = Instant::now();
            shared.held_connections.fetch_add(1, Relaxed);
            while ctl.borrow_and_update().paused && !ctl.borrow().shutdown {
                if ctl.changed().await.is_err() {
                    break;
                }
            }
            shared.held_connections.fetch_sub(1, Relaxed);
            shared.metrics.held(held_at.elapsed());
        }
        if ctl.borrow().shutdown {
            return Ok(None);
        }
        let mut client = Wire::new(Stream::Plain(tcp));
        // The backend connection is opened first (its greeting only): the client is greeted
        // with that connection's id, so that `CONNECTION_ID()` says what the greeting said
        // (until a switch moves the session). Unreachable now: the proxy's own id, and the
        // client gets the connection error after its login, as before.
        let (early_generation, early_target) = {
            let c = ctl.borrow();
            (c.generation, c.target.clone())
        };
        let mut early = EarlyGuard {
            shared: shared.clone(),
            target: early_target.clone(),
            early: early_target.open_early().await.ok(),
        };
        let claim = shared.claim_id(early.early.as_ref().map(|e| e.hs.connection_id));
        let id = claim.id;
        let scramble = scramble();
        let (mut offer, offer_ext) = shared.offer;
        if shared.client_tls.is_some() {
            offer |= cap::SSL;
        }
        let defaults = shared
            .client_defaults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let greeting = server_handshake_payload(
            &shared.server_version,
            id,
            &scramble,
            offer,
            offer_ext,
            shared.charset,
            defaults.status,
        );
        client.write_packet(0, &greeting).await?;
        let handshake_timeout = Duration::from_secs(10);
        let (mut seq, mut payload) =
            tokio::time::timeout(handshake_timeout, client.read_packet_exact())
                .await
                .map_err(|_| Error::protocol("no handshake response in time"))??;
        if protocol::is_ssl_request(&payload) {
            let Some(tls) = &shared.client_tls else {
                return Err(Error::protocol(
                    "client asked for TLS, which is not configured",
                ));
            };
            if !client.is_drained() {
                return Err(Error::protocol("data after the SSL request"));
            }
            let Stream::Plain(tcp) = std::mem::replace(&mut client.stream, Stream::Empty) else {
                return Err(Error::protocol("stream already upgraded"));
            };
            let tls = tokio::time::timeout(
                handshake_timeout,
                tokio_rustls::TlsAcceptor::from(tls.clone()).accept(tcp),
            )
            .await
            .map_err(|_| Error::protocol("TLS handshake timed out"))??;
            client.stream = Stream::ServerTls(Box::new(tls));
            (seq, payload) = tokio::time::timeout(handshake_timeout, client.read_packet())
                .await
                .map_err(|_| Error::protocol("no handshake response in time"))??;
        }
        let mut resp = match parse_handshake_response(&payload) {
            Ok(r) => r,
            Err(e) => {
                send_err(
                    shared,
                    &mut client,
                    seq.wrapping_add(1),
                    1043,
                    "08S01",
                    "Bad handshake",
                )
                .await;
                return Err(e);
            }
        };
        let secret = match authenticate(
            shared,
            &mut client,
            seq,
            peer.ip(),
            &resp.user,
            resp.auth_plugin.as_deref(),
            std::mem::take(&mut resp.auth_response),
            &scramble,
        )
        .await?
        {
            Login::Accepted { secret, next } => {
                seq = next.wrapping_sub(1);
                secret
            }
            Login::Refused => return Ok(None),
        };
        let next = seq.wrapping_add(1);
        let login = LoginSpec {
            user: resp.user.clone(),
            client_caps: resp.capabilities & offer,
            client_ext_caps: resp.ext_capabilities & offer_ext,
            max_packet: resp.max_packet,
            charset: resp.charset,
            connect_attrs: resp.connect_attrs.clone(),
        };
        let ctl_now = ctl.borrow_and_update().clone();
        let early = early.early.take();
        let connected = match early.filter(|_| ctl_now.generation == early_generation) {
            Some(e) => {
                ctl_now
                    .target
                    .connect_early(e, &login, &secret, resp.database.as_deref())
                    .await
            }
            None => {
                ctl_now
                    .target
                    .connect(&login, &secret, resp.database.as_deref())
                    .await
            }
        };
        let backend = match connected {
            Ok(b) => b,
            Err(Error::BackendRefused {
                code,
                state,
                message,
                ..
            }) => {
                send_err(shared, &mut client, next, code, &state, &message).await;
                return Ok(None);
            }
            Err(e) => {
                Metrics::inc(&shared.metrics.backend_connect_failures_total);
                tracing::warn!(error = %e, "cannot open a backend connection for a client");
                send_err(
                    shared,
                    &mut client,
                    next,
                    2013,
                    "HY000",
                    &format!("dbshift proxy: the backend is not reachable: {e}"),
                )
                .await;
                return Ok(None);
            }
        };
        client
            .write_packet(next, &ok_payload(defaults.status, login.client_caps))
            .await?;
        let info = Arc::new(SessionInfo {
            id,
            user: std::sync::Mutex::new(resp.user.clone()),
            client: peer,
            generation: std::sync::atomic::AtomicU64::new(ctl_now.generation),
            in_trans: Default::default(),
            busy: Default::default(),
            held: Default::default(),
            unmovable: Default::default(),
            backend_thread: std::sync::atomic::AtomicU32::new(backend.handshake.connection_id),
        });
        let state = State {
            schema: resp.database.clone(),
            next_stmt_id: 1,
            ..Default::default()
        };
        tracing::debug!(session = id, user = %resp.user, client = %peer, "session open");
        Ok(Some(Session {
            _id: claim,
            shared: shared.clone(),
            info,
            client,
            backend,
            login,
            secret,
            scramble,
            state,
            tracking: defaults.tracking,
            generation: ctl_now.generation,
            end_seen: ctl_now.end_pinned,
            ctl,
        }))
    }
}

/// How the client proves who it is, decided by the account the server would pick.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Method {
    /// mysql_native_password on the greeting's scramble (checked with the stored H2).
    Native,
    /// caching_sha2_password's fast path on the greeting's scramble (checked with the password
    /// from the secrets file).
    Sha2,
    /// client_ed25519 on a fresh 32-byte nonce (checked with the stored public key).
    Ed25519,
    /// A plugin the proxy cannot check or answer: refused with this reason.
    Refuse(String),
}

fn method_for(row: Option<&StoredCredential>, offered: Option<&str>, has_password: bool) -> Method {
    // No account: the exchange a server runs for an unknown user, then "Access denied".
    let Some(row) = row else {
        return Method::Native;
    };
    let offers_sha2 = offered == Some(CACHING_SHA2);
    match (&row.stored, row.plugin.as_str()) {
        (Stored::Empty | Stored::Native(_), _) if offers_sha2 && has_password => Method::Sha2,
        (Stored::Empty | Stored::Native(_), _) => Method::Native,
        (Stored::Ed25519(_), _) => Method::Ed25519,
        (Stored::Other, CACHING_SHA2) if has_password => Method::Sha2,
        (Stored::Other, auth::PARSEC) => Method::Refuse(
            "parsec (MariaDB 11.6+) is not supported by the proxy; give the user ed25519 or \
             mysql_native_password, or connect to the server directly"
                .into(),
        ),
        (Stored::Other, plugin) => Method::Refuse(format!(
            "it authenticates with plugin '{plugin}', which the proxy cannot check or answer{}",
            if plugin == CACHING_SHA2 {
                " without the user's password: add the user to the proxy's secrets file \
                 (--secrets-file, ProxyConfig::secrets_file)"
            } else {
                "; connect to the server directly"
            }
        )),
    }
}

/// The outcome of [`authenticate`]; a refusal has been sent to the client.
enum Login {
    /// `next`: the sequence number of the packet that ends the exchange (the OK).
    Accepted {
        secret: SessionSecret,
        next: u8,
    },
    Refused,
}

/// Check that the client is who it says, as the server would: the account the server picks
/// for `user` from `ip` (the anonymous one included), its plugin (the client is switched to it
/// with an AuthSwitchRequest when it offered another), its password, its transport rule. Used
/// for the login and for COM_CHANGE_USER; `seq` is the sequence number of the client's packet
/// and `response` its answer to `scramble` with the plugin it `offered`.
#[allow(clippy::too_many_arguments)]
async fn authenticate(
    shared: &Shared,
    client: &mut Wire,
    mut seq: u8,
    ip: std::net::IpAddr,
    user: &str,
    offered: Option<&str>,
    mut response: Vec<u8>,
    scramble: &[u8; 20],
) -> Result<Login> {
    let host = match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    };
    let (mut rows, cached) = match shared.stored_credentials(user, false).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(user = %user, error = %e, "cannot read the user's accounts");
            send_err(
                shared,
                client,
                seq.wrapping_add(1),
                1045,
                "28000",
                &format!("dbshift proxy: cannot check the password of '{user}': {e}"),
            )
            .await;
            return Ok(Login::Refused);
        }
    };
    let password = shared.secrets.get(user).cloned();
    let mut row = auth::choose(&rows, user, ip).cloned();
    let method = method_for(row.as_ref(), offered, password.is_some());
    if let Method::Refuse(why) = &method {
        Metrics::inc(&shared.metrics.auth_failures_total);
        send_err(
            shared,
            client,
            seq.wrapping_add(1),
            1251,
            "08004",
            &format!("dbshift proxy: user '{user}': {why}"),
        )
        .await;
        return Ok(Login::Refused);
    }
    // The client answers with the plugin and challenge of the method, switched to it if needed.
    let (plugin, challenge): (&str, Vec<u8>) = match method {
        Method::Ed25519 => {
            let mut nonce = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
            (CLIENT_ED25519, nonce.to_vec())
        }
        Method::Sha2 => (CACHING_SHA2, scramble.to_vec()),
        _ => (NATIVE_PASSWORD, scramble.to_vec()),
    };
    // The client answered the greeting's scramble with the method's plugin already; a client
    // whose plugin is not the greeting's may have sent nothing yet (libmariadb does): it is
    // asked again. ed25519's nonce is never the greeting's.
    let answered_already = match offered.unwrap_or(NATIVE_PASSWORD) {
        NATIVE_PASSWORD => plugin == NATIVE_PASSWORD,
        o => o == plugin && plugin == CACHING_SHA2 && !response.is_empty(),
    };
    if !answered_already {
        let mut data = challenge.clone();
        if plugin != CLIENT_ED25519 {
            data.push(0);
        }
        client
            .write_packet(
                seq.wrapping_add(1),
                &protocol::auth_switch_payload(plugin, &data),
            )
            .await?;
        let (s, p) = tokio::time::timeout(Duration::from_secs(10), client.read_packet())
            .await
            .map_err(|_| Error::protocol("no auth switch response in time"))??;
        seq = s;
        response = p;
    }
    let check = |row: Option<&StoredCredential>| -> Option<SessionSecret> {
        let row = row?;
        match (&method, &row.stored) {
            (Method::Native, Stored::Empty) => response.is_empty().then_some(SessionSecret::Empty),
            (Method::Native, Stored::Native(h2)) => {
                auth::verify_native(scramble, &response, Some(h2))
            }
            (Method::Sha2, Stored::Empty | Stored::Native(_) | Stored::Other) => {
                let p = password.as_ref()?;
                auth::sha256_scramble_matches(scramble, &response, p)
                    .then(|| SessionSecret::Password(p.clone()))
            }
            (Method::Ed25519, Stored::Ed25519(pk)) => {
                if !auth::ed25519_verify(pk, &challenge, &response) {
                    return None;
                }
                // Verified; the secret to sign the backends' nonces comes from the file.
                Some(match &password {
                    Some(p) => SessionSecret::Password(p.clone()),
                    None => SessionSecret::Empty,
                })
            }
            _ => None,
        }
    };
    let mut verdict = check(row.as_ref());
    // A password changed since the accounts were cached: read them again, once.
    if verdict.is_none() && cached {
        if let Ok((fresh, _)) = shared.stored_credentials(user, true).await {
            rows = fresh;
            let again = auth::choose(&rows, user, ip).cloned();
            if method_for(again.as_ref(), offered, password.is_some()) == method {
                row = again;
                verdict = check(row.as_ref());
            }
        }
    }
    let using = if response.is_empty() { "NO" } else { "YES" };
    let denied = format!("Access denied for user '{user}'@'{host}' (using password: {using})");
    let (Some(secret), Some(row)) = (verdict, row) else {
        Metrics::inc(&shared.metrics.auth_failures_total);
        send_err(shared, client, seq.wrapping_add(1), 1045, "28000", &denied).await;
        return Ok(Login::Refused);
    };
    // ed25519 verified: signing for the backend needs the password, which must be the
    // account's.
    if let Stored::Ed25519(pk) = &row.stored {
        let refusal = match &password {
            None => Some((
                1251,
                "08004",
                format!(
                    "dbshift proxy: user '{user}' authenticates with plugin 'ed25519': the proxy \
                     needs the user's password to authenticate to the server; add it to the \
                     proxy's secrets file (--secrets-file, ProxyConfig::secrets_file)"
                ),
            )),
            Some(p) if &auth::ed25519_public_key(p) != pk => Some((
                1045,
                "28000",
                format!(
                    "{denied}: dbshift proxy: the password of '{user}' in the secrets file is \
                     not the account's; update the secrets file"
                ),
            )),
            Some(_) => None,
        };
        if let Some((code, state, message)) = refusal {
            Metrics::inc(&shared.metrics.auth_failures_total);
            send_err(shared, client, seq.wrapping_add(1), code, state, &message).await;
            return Ok(Login::Refused);
        }
    }
    // The account's transport rule, judged on the client's leg as the server would judge a
    // direct connection (the backend leg is the proxy's own TLS and proves nothing).
    let client_tls = matches!(client.stream, Stream::ServerTls(_));
    let refusal = match row.tls {
        auth::TlsRule::None => None,
        auth::TlsRule::Tls if client_tls => None,
        auth::TlsRule::Tls => Some(denied.clone()),
        auth::TlsRule::Certificate => Some(format!(
            "{denied}: dbshift proxy: the account requires a client certificate (REQUIRE X509, \
             ISSUER, SUBJECT or CIPHER), which the proxy cannot pass to the server; connect to \
             the server directly"
        )),
    };
    if let Some(message) = refusal {
        Metrics::inc(&shared.metrics.auth_failures_total);
        send_err(shared, client, seq.wrapping_add(1), 1045, "28000", &message).await;
        return Ok(Login::Refused);
    }
    if method == Method::Sha2 {
        // caching_sha2_password's "fast authentication succeeded", then the OK.
        seq = seq.wrapping_add(1);
        client.write_packet(seq, &[0x01, 0x03]).await?;
    }
    Ok(Login::Accepted {
        secret,
        next: seq.wrapping_add(1),
    })
}

impl Session {
    /// COM_CHANGE_USER: the new user authenticated as at login, then a new backend connection
    /// as that user with the requested schema and character set; the session's state is reset
    /// (as the server resets it). On failure the client gets the server's ERR and the session
    /// keeps its user and backend, reset as the server resets a session whose change of user
    /// failed.
    pub(super) async fn change_user(&mut self, payload: &[u8], seq: u8) -> Result<Flow> {
        let req = match protocol::parse_change_user(payload, self.login.client_caps) {
            Ok(r) => r,
            Err(e) => {
                send_err(
                    &self.shared,
                    &mut self.client,
                    seq.wrapping_add(1),
                    1043,
                    "08S01",
                    "Bad handshake",
                )
                .await;
                return Err(e);
            }
        };
        let shared = self.shared.clone();
        let login = authenticate(
            &shared,
            &mut self.client,
            seq,
            self.info.client.ip(),
            &req.user,
            req.auth_plugin.as_deref(),
            req.auth_response.clone(),
            &self.scramble,
        )
        .await?;
        let (secret, next) = match login {
            Login::Accepted { secret, next } => (secret, next),
            Login::Refused => {
                self.reset_kept_session().await?;
                return Ok(Flow::Go);
            }
        };
        let login = LoginSpec {
            user: req.user.clone(),
            client_caps: self.login.client_caps,
            client_ext_caps: self.login.client_ext_caps,
            max_packet: self.login.max_packet,
            charset: req.charset.unwrap_or(self.login.charset),
            connect_attrs: self.login.connect_attrs.clone(),
        };
        let target = self.ctl.borrow().target.clone();
        let nb = match target
            .connect(&login, &secret, req.database.as_deref())
            .await
        {
            Ok(b) => b,
            Err(e) => {
                let (code, state, message) = match e {
                    Error::BackendRefused {
                        code,
                        state,
                        message,
                        ..
                    } => (code, state, message),
                    e => {
                        Metrics::inc(&self.shared.metrics.backend_connect_failures_total);
                        tracing::warn!(session = self.info.id, error = %e,
                            "cannot open a backend connection for a change of user");
                        (
                            2013,
                            "HY000".to_string(),
                            format!("dbshift proxy: the backend is not reachable: {e}"),
                        )
                    }
                };
                send_err(&self.shared, &mut self.client, next, code, &state, &message).await;
                self.reset_kept_session().await?;
                return Ok(Flow::Go);
            }
        };
        let status_flags = nb.status;
        self.info
            .backend_thread
            .store(nb.handshake.connection_id, Relaxed);
        let old = std::mem::replace(&mut self.backend, nb);
        tokio::spawn(old.quit());
        *self.info.user.lock().unwrap_or_else(|p| p.into_inner()) = req.user.clone();
        self.login = login;
        self.secret = secret;
        // Everything of the old session is gone with its connection, the client's tracking
        // settings too.
        self.tracking = self.default_tracking();
        self.state = State {
            schema: req.database.clone(),
            next_stmt_id: self.state.next_stmt_id,
            ..Default::default()
        };
        tracing::debug!(session = self.info.id, user = %req.user, "user changed");
        self.client
            .write_packet(next, &ok_payload(status_flags, self.login.client_caps))
            .await?;
        Ok(Flow::Go)
    }

    /// After a failed COM_CHANGE_USER the server keeps the previous user and schema but has
    /// already reset the session (its transaction, variables, temporary tables, locks and
    /// prepared statements are gone): COM_RESET_CONNECTION does that on the kept backend.
    async fn reset_kept_session(&mut self) -> Result<()> {
        self.backend.command(&[com::RESET_CONNECTION]).await?;
        self.backend.simple(TRACKING_SQL).await?;
        self.tracking = self.default_tracking();
        self.state = State {
            schema: self.state.schema.take(),
            next_stmt_id: self.state.next_stmt_id,
            ..Default::default()
        };
        Ok(())
    }
}
