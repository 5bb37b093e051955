//! The admin API: a small HTTP/1.1 server on loopback, every request authorized by a bearer
//! token. It only calls [`ProxyHandle`]'s methods; it must never listen on a non-loopback
//! address and never echo the token.
//!
//! - `GET /status`: [`crate::Status`] as JSON
//! - `POST /pause?bound_ms=N`: [`crate::PauseReport`]
//! - `POST /switch` with `{"host": ..., "port": ...}`: [`crate::SwitchReport`]
//! - `POST /resume`: [`crate::ResumeReport`]
//! - `GET /metrics`: Prometheus text

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::constant_time_eq;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::handle::ProxyHandle;

const MAX_REQUEST: usize = 64 * 1024;

/// A running admin server.
pub struct AdminServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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

/// Serve the admin API for `handle` on `listen`, which must be a loopback address.
pub async fn serve_admin(
    handle: ProxyHandle,
    listen: SocketAddr,
    token: String,
) -> Result<AdminServer> {
    if !listen.ip().is_loopback() {
        return Err(Error::Admin(format!(
            "the admin API listens on loopback only, not {listen}"
        )));
    }
    if token.len() < 16 {
        return Err(Error::Admin(
            "the admin token must be at least 16 characters".into(),
        ));
    }
    let listener = TcpListener::bind(listen).await?;
    let local_addr = listener.local_addr()?;
    tracing::info!(listen = %local_addr, "admin API listening");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let h = handle.clone();
            let t = token.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, &h, &t).await {
                    tracing::debug!(error = %e, "admin request failed");
                }
            });
        }
    });
    Ok(AdminServer { local_addr, task })
}

struct Request {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST {
            return Err(Error::Admin("request too large".into()));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Admin("connection closed mid-request".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut authorization = None;
    let mut length = 0usize;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.to_string());
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().unwrap_or(0);
            }
        }
    }
    if length > MAX_REQUEST {
        return Err(Error::Admin("body too large".into()));
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        authorization,
        body,
    })
}

async fn respond(stream: &mut TcpStream, code: u16, ctype: &str, body: &str) -> Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if code == 401 {
        out.push_str("WWW-Authenticate: Bearer\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

fn json_error(msg: &str) -> String {
    serde_json::json!({ "error": msg }).to_string()
}

async fn serve_one(mut stream: TcpStream, h: &ProxyHandle, token: &str) -> Result<()> {
    let req = match tokio::time::timeout(Duration::from_secs(10), read_request(&mut stream)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return respond(
                &mut stream,
                400,
                "application/json",
                &json_error(&e.to_string()),
            )
            .await
        }
        Err(_) => return Ok(()),
    };
    let authorized = req
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()));
    if !authorized {
        return respond(
            &mut stream,
            401,
            "application/json",
            &json_error("a valid `Authorization: Bearer <token>` header is required"),
        )
        .await;
    }
    let json = "application/json";
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/status") => {
            let body = serde_json::to_string(&h.status()).unwrap_or_default();
            respond(&mut stream, 200, json, &body).await
        }
        ("GET", "/metrics") => {
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4",
                &h.metrics_text(),
            )
            .await
        }
        ("POST", "/pause") => {
            let bound = req
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("bound_ms="))
                .map(|v| v.parse::<u64>());
            let bound = match bound {
                None => h.shared.cfg.drain_bound,
                Some(Ok(ms)) => Duration::from_millis(ms),
                Some(Err(_)) => {
                    return respond(
                        &mut stream,
                        400,
                        json,
                        &json_error("bound_ms must be a number of milliseconds"),
                    )
                    .await
                }
            };
            match h.pause(bound).await {
                Ok(r) => {
                    respond(
                        &mut stream,
                        200,
                        json,
                        &serde_json::to_string(&r).unwrap_or_default(),
                    )
                    .await
                }
                Err(e) => respond(&mut stream, 500, json, &json_error(&e.to_string())).await,
            }
        }
        ("POST", "/switch") => {
            let backend: Backend = match serde_json::from_slice(&req.body) {
                Ok(b) => b,
                Err(e) => {
                    return respond(
                        &mut stream,
                        400,
                        json,
                        &json_error(&format!(
                            "body must be {{\"host\": ..., \"port\": ...}}: {e}"
                        )),
                    )
                    .await
                }
            };
            match h.switch(backend).await {
                Ok(r) => {
                    respond(
                        &mut stream,
                        200,
                        json,
                        &serde_json::to_string(&r).unwrap_or_default(),
                    )
                    .await
                }
                Err(e) => respond(&mut stream, 500, json, &json_error(&e.to_string())).await,
            }
        }
        ("POST", "/resume") => {
            let r = h.resume().await;
            respond(
                &mut stream,
                200,
                json,
                &serde_json::to_string(&r).unwrap_or_default(),
            )
            .await
        }
        (_, "/status" | "/metrics" | "/pause" | "/switch" | "/resume") => {
            respond(&mut stream, 405, json, &json_error("method not allowed")).await
        }
        _ => respond(&mut stream, 404, json, &json_error("not found")).await,
    }
}
