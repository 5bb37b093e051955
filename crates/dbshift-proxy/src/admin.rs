//! The admin API: HTTP/1.1 (hyper, routed by axum), every request authorized by a bearer token
//! compared in constant time. It only calls [`ProxyHandle`]'s methods and never echoes the
//! token. In plain HTTP it listens on a loopback address only; over TLS ([`serve_admin_tls`],
//! tokio-rustls with ring, as the proxy's client side) it may listen on any address.
//!
//! - `GET /status`: [`crate::Status`] as JSON
//! - `POST /pause?bound_ms=N`: [`crate::PauseReport`]
//! - `POST /switch` with `{"host": ..., "port": ...}`: [`crate::SwitchReport`]
//! - `POST /resume`: [`crate::ResumeReport`]
//! - `GET /metrics`: Prometheus text
//!
//! Errors are JSON `{"error": "..."}`: 401 without the token (before any routing), 400 for a
//! bad query or body, 404 for an unknown path, 405 for a known path with another method, 500
//! when the proxy refuses the operation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::auth::constant_time_eq;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::handle::ProxyHandle;

/// The largest request body taken (a switch's is a few dozen bytes).
const MAX_REQUEST: usize = 64 * 1024;
/// How long a client may take to send a request's head, its body, or its TLS handshake.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// TLS for the admin API: its certificate chain and key (PEM files). The certificate names
/// the host (or IP address) callers reach the admin API by; they verify it against their CA.
#[derive(Debug, Clone)]
pub struct AdminTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running admin server.
pub struct AdminServer {
    local_addr: SocketAddr,
    tls: bool,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether it speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Stop listening (requests in progress finish).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the admin API may listen on `listen`: any address over TLS, a loopback one
/// without. The error says what to add.
pub fn check_admin_listen(listen: SocketAddr, tls: bool) -> Result<()> {
    if tls || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(Error::Admin(format!(
        "the admin API listens on {listen} only over TLS (its token would cross the network \
         in clear): give it a certificate and key (--admin-tls-cert FILE --admin-tls-key \
         FILE), or listen on a loopback address such as 127.0.0.1"
    )))
}

/// Whether `token` is long enough to be an admin token.
pub fn check_admin_token(token: &str) -> Result<()> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(Error::Admin(format!(
            "the admin token must be at least {MIN_TOKEN_LEN} characters"
        )));
    }
    Ok(())
}

/// Serve the admin API for `handle` on `listen` in plain HTTP: `listen` must be a loopback
/// address.
pub async fn serve_admin(
    handle: ProxyHandle,
    listen: SocketAddr,
    token: String,
) -> Result<AdminServer> {
    serve(handle, listen, token, None).await
}

/// Serve the admin API for `handle` on `listen` over TLS with the certificate and key of
/// `tls`: any address.
pub async fn serve_admin_tls(
    handle: ProxyHandle,
    listen: SocketAddr,
    token: String,
    tls: &AdminTls,
) -> Result<AdminServer> {
    let cfg = crate::backend::server_tls_config(&tls.cert, &tls.key)?;
    let mut cfg = Arc::unwrap_or_clone(cfg);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    serve(handle, listen, token, Some(Arc::new(cfg))).await
}

async fn serve(
    handle: ProxyHandle,
    listen: SocketAddr,
    token: String,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<AdminServer> {
    check_admin_listen(listen, tls.is_some())?;
    check_admin_token(&token)?;
    let listener = TcpListener::bind(listen).await?;
    let local_addr = listener.local_addr()?;
    let is_tls = tls.is_some();
    tracing::info!(listen = %local_addr, tls = is_tls, "admin API listening");
    let app = router(AppState {
        handle,
        token: token.into(),
    });
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let app = app.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => serve_connection(stream, app, peer).await,
                    Some(a) => match tokio::time::timeout(READ_TIMEOUT, a.accept(stream)).await {
                        Ok(Ok(s)) => serve_connection(s, app, peer).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "admin API: TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "admin API: TLS handshake timed out")
                        }
                    },
                }
            });
        }
    });
    Ok(AdminServer {
        local_addr,
        tls: is_tls,
        task,
    })
}

/// One connection, one request: keep-alive is off, so the connection closes after the answer.
async fn serve_connection<S>(stream: S, app: Router, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "admin request failed");
    }
}

#[derive(Clone)]
struct AppState {
    handle: ProxyHandle,
    token: Arc<str>,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/pause", post(pause))
        .route("/switch", post(switch))
        .route("/resume", post(resume))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not found") })
        .method_not_allowed_fallback(|| async {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        // Every request, routed or not, shows the token first.
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(state)
}

async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let authorized = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|a| a.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), s.token.as_bytes()));
    if !authorized {
        let mut r = json_error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` header is required",
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("a valid header"));
        return r;
    }
    next.run(req).await
}

fn json(code: StatusCode, body: String) -> Response {
    (code, [(CONTENT_TYPE, "application/json")], body).into_response()
}

fn json_error(code: StatusCode, msg: &str) -> Response {
    json(code, serde_json::json!({ "error": msg }).to_string())
}

fn json_ok<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn status(State(s): State<AppState>) -> Response {
    json_ok(&s.handle.status())
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.handle.metrics_text(),
    )
        .into_response()
}

/// `bound_ms` of a query string: `None` when absent.
fn bound_ms(query: &str) -> Option<std::result::Result<u64, std::num::ParseIntError>> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("bound_ms="))
        .map(|v| v.parse::<u64>())
}

async fn pause(State(s): State<AppState>, uri: Uri) -> Response {
    let bound = match bound_ms(uri.query().unwrap_or_default()) {
        None => s.handle.shared.cfg.drain_bound,
        Some(Ok(ms)) => Duration::from_millis(ms),
        Some(Err(_)) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bound_ms must be a number of milliseconds",
            )
        }
    };
    match s.handle.pause(bound).await {
        Ok(r) => json_ok(&r),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn switch(State(s): State<AppState>, body: Body) -> Response {
    let body: Bytes =
        match tokio::time::timeout(READ_TIMEOUT, axum::body::to_bytes(body, MAX_REQUEST)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return json_error(StatusCode::BAD_REQUEST, &format!("reading the body: {e}"))
            }
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("the body did not arrive within {READ_TIMEOUT:?}"),
                )
            }
        };
    let backend: Backend = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("body must be {{\"host\": ..., \"port\": ...}}: {e}"),
            )
        }
    };
    match s.handle.switch(backend).await {
        Ok(r) => json_ok(&r),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn resume(State(s): State<AppState>) -> Response {
    json_ok(&s.handle.resume().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_listens_on_loopback_only_tls_anywhere() {
        for ok in ["127.0.0.1:3308", "[::1]:3308", "127.0.0.2:0"] {
            check_admin_listen(ok.parse().unwrap(), false).unwrap();
        }
        for bad in ["0.0.0.0:3308", "10.0.0.5:3308", "[::]:3308"] {
            let e = check_admin_listen(bad.parse().unwrap(), false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("only over TLS"), "{e}");
            assert!(e.contains("--admin-tls-cert"), "{e}");
            check_admin_listen(bad.parse().unwrap(), true).unwrap();
        }
    }

    #[test]
    fn a_short_token_is_refused() {
        assert!(check_admin_token("short").is_err());
        check_admin_token("0123456789abcdef").unwrap();
    }

    #[test]
    fn bound_ms_is_read_from_the_query() {
        assert_eq!(bound_ms(""), None);
        assert_eq!(bound_ms("x=1&bound_ms=250"), Some(Ok(250)));
        assert!(bound_ms("bound_ms=soon").unwrap().is_err());
    }
}
