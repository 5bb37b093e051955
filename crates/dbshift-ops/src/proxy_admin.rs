//! A client of a dbshift proxy's admin API (HTTP/1.1 through hyper-util's client, bearer
//! token; HTTPS with the proxy's CA when the provider gives one): what the switchover core
//! calls to hold clients at the fence, re-attach them to the new writer at the redirect, and
//! release them after the promotion. A cluster may have several proxies (HA behind a load
//! balancer or DNS): [`ProxySet`] drives them all, and a pause that one of them refuses
//! releases the others, so that the switch is refused having changed nothing. See
//! docs/proxy.md.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Errors talking to a proxy's admin API.
#[derive(Debug, thiserror::Error)]
pub enum ProxyAdminError {
    #[error("proxy admin API at {addr}: {what}")]
    Io { addr: String, what: String },
    #[error("proxy admin API at {addr}: {path} answered {status}: {body}")]
    Status {
        addr: String,
        path: String,
        status: u16,
        body: String,
    },
    /// The provider names a proxy whose admin address is not one, or that cannot be reached
    /// safely (plain HTTP to another machine).
    #[error("the proxy's admin address {admin}: {what}")]
    Address { admin: String, what: String },
    /// The CA the admin API's certificate is verified against cannot be used.
    #[error("the proxy's admin API at {admin}: CA {ca}: {what}")]
    Ca {
        admin: String,
        ca: String,
        what: String,
    },
}

/// One proxy's admin API.
#[derive(Clone)]
pub struct ProxyAdmin {
    /// `host:port` (IPv6 hosts in brackets), as the requests' URIs name it.
    pub addr: String,
    /// `http` or `https`.
    scheme: &'static str,
    token: String,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for ProxyAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyAdmin({}://{}, ***)", self.scheme, self.addr)
    }
}

/// A rustls client configuration (ring) trusting the CA certificates of the PEM file `ca`.
fn tls_config(ca: &Path) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err(
            "holds no certificate (a PEM file of the CA that issued the admin API's \
                    certificate is expected)"
                .to_string(),
        );
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// `host:port` for a URI: an IPv6 address in brackets.
fn authority(host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An error and its sources, `: `-joined (hyper's own message alone says little: "client
/// error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl ProxyAdmin {
    /// A proxy's admin API in plain HTTP at `addr` (loopback: the proxy refuses plain HTTP
    /// elsewhere). `timeout` bounds each request (a pause returns once the proxy holds every
    /// session, so give it the pause's bound plus a margin).
    pub fn new(addr: SocketAddr, token: String, timeout: Duration) -> ProxyAdmin {
        Self::build(addr.to_string(), None, token, timeout)
    }

    /// A proxy's admin API over HTTPS at `host:port`, its certificate verified against the CA
    /// (PEM) at `ca`, the name `host` included.
    pub fn with_ca(
        host: &str,
        port: u16,
        ca: &Path,
        token: String,
        timeout: Duration,
    ) -> Result<ProxyAdmin, ProxyAdminError> {
        let addr = authority(host, port);
        let cfg = tls_config(ca).map_err(|what| ProxyAdminError::Ca {
            admin: addr.clone(),
            ca: ca.display().to_string(),
            what,
        })?;
        Ok(Self::build(addr, Some(cfg), token, timeout))
    }

    fn build(
        addr: String,
        tls: Option<rustls::ClientConfig>,
        token: String,
        timeout: Duration,
    ) -> ProxyAdmin {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let (scheme, connector) = match tls {
            Some(cfg) => (
                "https",
                builder
                    .with_tls_config(cfg)
                    .https_only()
                    .enable_http1()
                    .wrap_connector(http),
            ),
            // Plain HTTP: the connector never starts TLS for an `http://` URI; it is given a
            // configuration that trusts nothing, so that it could not verify one if it did.
            None => (
                "http",
                builder
                    .with_tls_config(
                        rustls::ClientConfig::builder_with_provider(Arc::new(
                            rustls::crypto::ring::default_provider(),
                        ))
                        .with_safe_default_protocol_versions()
                        .expect("ring supports the default protocol versions")
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                    )
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http),
            ),
        };
        // One request per connection (the proxy closes each after its answer).
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        ProxyAdmin {
            addr,
            scheme,
            token,
            timeout,
            client,
        }
    }

    /// The admin API of a proxy the provider names: HTTPS when it gives the admin API's CA,
    /// plain HTTP otherwise, which only a loopback address may use (the token would cross the
    /// network in clear). The error says which address is wrong and what to add.
    pub fn of(
        p: &dbshift_provider::ProxyEndpoint,
        timeout: Duration,
    ) -> Result<ProxyAdmin, ProxyAdminError> {
        if let Some(ca) = &p.admin_ca {
            return ProxyAdmin::with_ca(&p.admin.host, p.admin.port, ca, p.token.clone(), timeout);
        }
        if !p.admin.is_loopback() {
            return Err(ProxyAdminError::Address {
                admin: p.admin.to_string(),
                what: "not a loopback address, and no CA is given for its TLS: a proxy's admin \
                       API on another machine is reached over HTTPS only (start it with \
                       --admin-tls-cert and --admin-tls-key, and give its CA as the proxy's \
                       admin_ca)"
                    .to_string(),
            });
        }
        let host = p.admin.host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.eq_ignore_ascii_case("localhost") {
            "127.0.0.1"
        } else {
            host
        };
        let addr = authority(host, p.admin.port)
            .parse::<SocketAddr>()
            .map_err(|e| ProxyAdminError::Address {
                admin: p.admin.to_string(),
                what: e.to_string(),
            })?;
        Ok(ProxyAdmin::new(addr, p.token.clone(), timeout))
    }

    /// Whether requests go over HTTPS.
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
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
            addr: self.addr.clone(),
            what,
        };
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}://{}{path}", self.scheme, self.addr))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| io(format!("{method} {path}: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| io(format!("{method} {path}: {}", chain(&e))))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| {
                    io(format!(
                        "{method} {path}: reading the answer: {}",
                        chain(&e)
                    ))
                })?
                .to_bytes();
            Ok::<_, ProxyAdminError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                io(format!(
                    "{method} {path}: no answer within {:?}",
                    self.timeout
                ))
            })??;
        let body = String::from_utf8_lossy(&body);
        if !(200..300).contains(&status) {
            return Err(ProxyAdminError::Status {
                addr: self.addr.clone(),
                path: path.to_string(),
                status,
                body: body.trim().chars().take(300).collect(),
            });
        }
        Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
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

#[cfg(test)]
mod tests {
    use super::*;
    use dbshift_provider::{Endpoint, ProxyEndpoint};

    fn endpoint(admin: &str, ca: Option<&Path>) -> ProxyEndpoint {
        let (host, port) = admin.rsplit_once(':').unwrap();
        ProxyEndpoint {
            cluster: "c".into(),
            listen: Endpoint {
                host: "127.0.0.1".into(),
                port: 3307,
            },
            admin: Endpoint {
                host: host.into(),
                port: port.parse().unwrap(),
            },
            token: "0123456789abcdef-token".into(),
            admin_ca: ca.map(Path::to_path_buf),
        }
    }

    #[test]
    fn plain_http_is_for_loopback_only_and_a_ca_makes_it_https() {
        let t = Duration::from_secs(1);
        for ok in ["127.0.0.1:3308", "localhost:3308", "[::1]:3308"] {
            let a = ProxyAdmin::of(&endpoint(ok, None), t).unwrap();
            assert!(!a.is_tls(), "{ok}");
        }
        for bad in ["10.0.0.5:3308", "proxy-1.internal:3308", "0.0.0.0:3308"] {
            let e = ProxyAdmin::of(&endpoint(bad, None), t)
                .unwrap_err()
                .to_string();
            assert!(e.contains("HTTPS only") && e.contains("admin_ca"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let e = ProxyAdmin::of(
            &endpoint("10.0.0.5:3308", Some(&dir.path().join("missing.pem"))),
            t,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = ProxyAdmin::of(&endpoint("10.0.0.5:3308", Some(&empty)), t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }

    #[tokio::test]
    async fn a_closed_port_and_a_silent_one_are_clear_errors_not_hangs() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let token = "0123456789abcdef-token".to_string();
        let e = ProxyAdmin::new(addr, token.clone(), Duration::from_secs(2))
            .status()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&addr.to_string()) && e.contains("GET /status"),
            "{e}"
        );
        // Accepts, never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (s, _) = silent.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let started = std::time::Instant::now();
        let e = ProxyAdmin::new(addr, token, Duration::from_millis(300))
            .pause(Duration::from_millis(100))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no answer within 300ms"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        held.abort();
    }
}
