//! A client of a dbshift proxy's admin API (loopback HTTP/1.1, bearer token): what the
//! switchover core calls to hold clients at the fence, re-attach them to the new writer at the
//! redirect, and release them after the promotion. A cluster may have several proxies (HA
//! behind a load balancer or DNS): [`ProxySet`] drives them all, and a pause that one of them
//! refuses releases the others, so that the switch is refused having changed nothing. See
//! docs/proxy.md.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Errors talking to a proxy's admin API.
#[derive(Debug, thiserror::Error)]
pub enum ProxyAdminError {
    #[error("proxy admin API at {addr}: {what}")]
    Io { addr: SocketAddr, what: String },
    #[error("proxy admin API at {addr}: {path} answered {status}: {body}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: u16,
        body: String,
    },
    /// The provider names a proxy whose admin address is not one.
    #[error("the proxy's admin address {admin}: {what}")]
    Address { admin: String, what: String },
}

/// One proxy's admin API.
#[derive(Clone)]
pub struct ProxyAdmin {
    pub addr: SocketAddr,
    token: String,
    timeout: Duration,
}

impl std::fmt::Debug for ProxyAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyAdmin({}, ***)", self.addr)
    }
}

impl ProxyAdmin {
    /// `timeout` bounds each request (a pause returns once the proxy holds every session, so
    /// give it the pause's bound plus a margin).
    pub fn new(addr: SocketAddr, token: String, timeout: Duration) -> ProxyAdmin {
        ProxyAdmin {
            addr,
            token,
            timeout,
        }
    }

    /// The admin API of a proxy the provider names; the error says which address is wrong.
    pub fn of(
        p: &dbshift_provider::ProxyEndpoint,
        timeout: Duration,
    ) -> Result<ProxyAdmin, ProxyAdminError> {
        let addr = format!("{}:{}", p.admin.host, p.admin.port)
            .parse()
            .map_err(|e: std::net::AddrParseError| ProxyAdminError::Address {
                admin: p.admin.to_string(),
                what: e.to_string(),
            })?;
        Ok(ProxyAdmin::new(addr, p.token.clone(), timeout))
    }

    /// Stop forwarding new commands; open transactions may finish within `bound`.
    pub async fn pause(&self, bound: Duration) -> Result<serde_json::Value, ProxyAdminError> {
        self.call(
            "POST",
            &format!("/pause?bound_ms={}", bound.as_millis()),
            None,
        )
        .await
    }

    /// Re-attach every session to `host:port`.
    pub async fn switch(
        &self,
        host: &str,
        port: u16,
    ) -> Result<serde_json::Value, ProxyAdminError> {
        let body = serde_json::json!({ "host": host, "port": port }).to_string();
        self.call("POST", "/switch", Some(body)).await
    }

    /// Release what was held.
    pub async fn resume(&self) -> Result<serde_json::Value, ProxyAdminError> {
        self.call("POST", "/resume", None).await
    }

    pub async fn status(&self) -> Result<serde_json::Value, ProxyAdminError> {
        self.call("GET", "/status", None).await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<serde_json::Value, ProxyAdminError> {
        let io = |what: String| ProxyAdminError::Io {
            addr: self.addr,
            what,
        };
        let exchange = async {
            let mut s = TcpStream::connect(self.addr)
                .await
                .map_err(|e| io(format!("connect: {e}")))?;
            let body = body.unwrap_or_default();
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.addr,
                self.token,
                body.len()
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| io(format!("write: {e}")))?;
            let mut raw = Vec::new();
            s.read_to_end(&mut raw)
                .await
                .map_err(|e| io(format!("read: {e}")))?;
            Ok::<Vec<u8>, ProxyAdminError>(raw)
        };
        let raw = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                io(format!(
                    "{method} {path}: no answer within {:?}",
                    self.timeout
                ))
            })??;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io(format!("{method} {path}: not an HTTP answer")))?;
        if !(200..300).contains(&status) {
            return Err(ProxyAdminError::Status {
                addr: self.addr,
                path: path.to_string(),
                status,
                body: body.trim().chars().take(300).collect(),
            });
        }
        Ok(serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    }
}

/// Every proxy in front of one cluster, driven together.
#[derive(Debug, Clone)]
pub struct ProxySet {
    proxies: Vec<ProxyAdmin>,
}

impl ProxySet {
    /// The admin APIs of the proxies the provider names; `None` when there is none.
    pub fn of(
        endpoints: &[dbshift_provider::ProxyEndpoint],
        timeout: Duration,
    ) -> Result<Option<ProxySet>, ProxyAdminError> {
        let proxies = endpoints
            .iter()
            .map(|p| ProxyAdmin::of(p, timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!proxies.is_empty()).then_some(ProxySet { proxies }))
    }

    /// Pause every proxy, at once. If one cannot be paused, the ones that were are resumed
    /// and its error is returned: clients go on as before, nothing changed.
    pub async fn pause(&self, bound: Duration) -> Result<serde_json::Value, ProxyAdminError> {
        let results = futures::future::join_all(self.proxies.iter().map(|p| p.pause(bound))).await;
        let mut reports = Vec::new();
        let mut failed = None;
        for (p, r) in self.proxies.iter().zip(results) {
            match r {
                Ok(v) => reports.push((p, v)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            for (p, _) in &reports {
                if let Err(r) = p.resume().await {
                    tracing::warn!(
                        "resuming the proxy at {} after a refused pause: {r}",
                        p.addr
                    );
                }
            }
            return Err(e);
        }
        Ok(Self::joined(reports.into_iter().map(|(_, v)| v).collect()))
    }

    /// Re-attach every proxy's sessions to `host:port`; every proxy is tried, the first error
    /// is returned.
    pub async fn switch(
        &self,
        host: &str,
        port: u16,
    ) -> Result<serde_json::Value, ProxyAdminError> {
        let results =
            futures::future::join_all(self.proxies.iter().map(|p| p.switch(host, port))).await;
        Self::all(results)
    }

    /// Release what every proxy holds; every proxy is tried, the first error is returned.
    pub async fn resume(&self) -> Result<serde_json::Value, ProxyAdminError> {
        let results = futures::future::join_all(self.proxies.iter().map(|p| p.resume())).await;
        Self::all(results)
    }

    fn all(
        results: Vec<Result<serde_json::Value, ProxyAdminError>>,
    ) -> Result<serde_json::Value, ProxyAdminError> {
        let mut out = Vec::new();
        for r in results {
            out.push(r?);
        }
        Ok(Self::joined(out))
    }

    /// One proxy's report as it is (the journal's shape with one proxy); an array for several.
    fn joined(mut reports: Vec<serde_json::Value>) -> serde_json::Value {
        if reports.len() == 1 {
            reports.remove(0)
        } else {
            serde_json::Value::Array(reports)
        }
    }
}

/// Hold clients at the proxies, when there are any, before a writer is fenced: they see
/// latency, not errors. `Ok(None)` without a proxy.
pub(crate) async fn pause_if_any(
    proxy: Option<&ProxySet>,
    bound: Duration,
    observer: &dyn crate::events::Observer,
) -> Result<Option<serde_json::Value>, crate::StepError> {
    let Some(proxy) = proxy else {
        return Ok(None);
    };
    let report = proxy.pause(bound).await.map_err(|e| {
        crate::StepError::provider(format!(
            "pausing the proxy: {e} (every proxy of the cluster must hold its clients)"
        ))
    })?;
    observer.event(&crate::events::Event::ProxyPaused);
    Ok(Some(report))
}

/// Release the clients held at the proxies, when there are any, once the new writer takes
/// writes, and say so to the observer. `Ok(None)` without a proxy.
pub(crate) async fn resume_if_any(
    proxy: Option<&ProxySet>,
    observer: &dyn crate::events::Observer,
) -> Result<Option<serde_json::Value>, crate::StepError> {
    let Some(proxy) = proxy else {
        return Ok(None);
    };
    let report = proxy
        .resume()
        .await
        .map_err(|e| crate::StepError::from(e).context("resuming the proxy"))?;
    observer.event(&crate::events::Event::ProxyResumed);
    Ok(Some(report))
}
