//! The AWS side of the tests: a real `moto_server` (PyPI `moto[server]`, the RDS API over HTTP)
//! on loopback, and a small HTTP/1.1 shim of ours in front of it that does what moto does not:
//! it answers `DescribeCertificates` and `DescribeDBEngineVersions` itself (a configurable CA
//! list: `rds-ca-rsa2048-g1` and friends, `rds-ca-2019` expiring), returns `Throttling` for the
//! first N calls of a chosen action, delays chosen actions, and reports an instance
//! `modifying` / `rebooting` for a few describes after a change (moto answers instantly and
//! never throttles). Everything else is forwarded to moto unchanged.
//!
//! With [`Moto::on_parameter_read_only`], a `read_only` change of a DB parameter group is also
//! applied to real servers the test maps the group onto (AWS applies this dynamic parameter at
//! once), so a fence by the parameter group is a real fence.
//!
//! `moto_server` is stopped (by PID) when the [`Moto`] is dropped. Without `moto_server` on
//! PATH the harness fails with a message saying how to install it (`scripts/deps.sh`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One CA the shim's `DescribeCertificates` returns.
#[derive(Debug, Clone)]
pub struct ShimCa {
    pub id: String,
    pub valid_from: String,
    pub valid_till: String,
}

/// What the shim does besides forwarding.
#[derive(Debug, Clone, Default)]
pub struct ShimConfig {
    pub cas: Vec<ShimCa>,
    /// `engine version` pairs whose `SupportsCertificateRotationWithoutRestart` is true.
    pub no_restart_versions: BTreeSet<String>,
    /// Action -> how many of its first calls get a `Throttling` error.
    pub throttle_first: HashMap<String, u32>,
    /// Action -> added latency.
    pub delay: HashMap<String, Duration>,
    /// Action -> an error (code, message) returned for its next call instead of moto's answer.
    pub fail_next: HashMap<String, (String, String)>,
    /// After ModifyDBInstance / RebootDBInstance of an instance, how many of the describes
    /// that show it report it `modifying` / `rebooting` instead of `available`.
    pub busy_describes: u32,
}

impl ShimConfig {
    /// RDS's CAs as of 2024 (`rds-ca-2019` expired in August 2024).
    pub fn rds_cas() -> Vec<ShimCa> {
        let ca = |id: &str, from: &str, till: &str| ShimCa {
            id: id.into(),
            valid_from: from.into(),
            valid_till: till.into(),
        };
        vec![
            ca(
                "rds-ca-2019",
                "2019-08-22T17:08:50Z",
                "2024-08-22T17:08:50Z",
            ),
            ca(
                "rds-ca-rsa2048-g1",
                "2021-05-26T23:34:51Z",
                "2061-05-26T23:34:51Z",
            ),
            ca(
                "rds-ca-rsa4096-g1",
                "2021-05-26T23:28:19Z",
                "2121-05-26T23:28:19Z",
            ),
            ca(
                "rds-ca-ecc384-g1",
                "2021-05-26T23:26:33Z",
                "2121-05-26T23:26:33Z",
            ),
            ca(
                "rds-ca-default",
                "2021-05-26T23:34:51Z",
                "2061-05-26T23:34:51Z",
            ),
        ]
    }
}

/// Calls the shim saw, by action (forwarded or answered).
#[derive(Debug, Default)]
pub struct ShimStats {
    pub calls: BTreeMap<String, u32>,
    pub throttled: BTreeMap<String, u32>,
}

/// Told `(parameter group, read_only on)` after moto accepted a `ModifyDBParameterGroup` that
/// sets `read_only`; the shim answers the caller once it returns.
pub type ReadOnlyHook = Arc<
    dyn Fn(String, bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

struct ShimState {
    config: ShimConfig,
    read_only_hook: Option<ReadOnlyHook>,
    stats: ShimStats,
    /// Instance -> (status to report, describes left).
    busy: HashMap<String, (String, u32)>,
}

/// A running `moto_server` with the shim in front.
pub struct Moto {
    child: Child,
    /// moto itself.
    pub moto_port: u16,
    /// The shim: what clients use.
    pub port: u16,
    state: Arc<Mutex<ShimState>>,
    shim: tokio::task::JoinHandle<()>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.shim.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `moto_server` on the PATH, else the virtual environment scripts/deps.sh makes where pip
/// cannot install into the system Python (`$DBSHIFT_MOTO_VENV`, default
/// `~/.local/share/dbshift/moto`).
fn moto_server_path() -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        let venv = std::env::var_os("DBSHIFT_MOTO_VENV")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".local/share/dbshift/moto")
            });
        venv.join("bin/moto_server")
    })
}

impl Moto {
    /// Start `moto_server` on a free loopback port and the shim on another.
    pub async fn start(config: ShimConfig) -> Moto {
        let moto_port = free_port();
        let child = Command::new(moto_server_path())
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}): install it with `pip install 'moto[server]'` \
                     (scripts/deps.sh does)"
                )
            });
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", moto_port)).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on 127.0.0.1:{moto_port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the shim");
        let port = listener.local_addr().expect("shim address").port();
        let state = Arc::new(Mutex::new(ShimState {
            config,
            read_only_hook: None,
            stats: ShimStats::default(),
            busy: HashMap::new(),
        }));
        let st = state.clone();
        let shim = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, moto_port, st).await;
                });
            }
        });
        Moto {
            child,
            moto_port,
            port,
            state,
            shim,
        }
    }

    /// The endpoint URL clients use (the shim).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's own URL, without the shim.
    pub fn moto_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.moto_port)
    }

    /// Change the shim's behaviour from now on.
    pub fn configure(&self, f: impl FnOnce(&mut ShimConfig)) {
        f(&mut self.state.lock().expect("shim state").config);
    }

    /// Apply parameter groups' `read_only` changes with `hook` too (see the module doc).
    pub fn on_parameter_read_only(&self, hook: ReadOnlyHook) {
        self.state.lock().expect("shim state").read_only_hook = Some(hook);
    }

    /// Calls of `action` so far.
    pub fn calls(&self, action: &str) -> u32 {
        let s = self.state.lock().expect("shim state");
        s.stats.calls.get(action).copied().unwrap_or(0)
    }

    /// Throttling errors returned for `action` so far.
    pub fn throttled(&self, action: &str) -> u32 {
        let s = self.state.lock().expect("shim state");
        s.stats.throttled.get(action).copied().unwrap_or(0)
    }
}

/// `application/x-www-form-urlencoded` into pairs.
fn form(body: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.replace('+', " ");
        let bytes = b.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Ok(v) = u8::from_str_radix(&b[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn xml_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const NS: &str = "http://rds.amazonaws.com/doc/2014-10-31/";

fn throttling() -> Vec<u8> {
    xml_response(
        "400 Bad Request",
        &format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>Throttling</Code>\
             <Message>Rate exceeded</Message></Error><RequestId>shim-throttle</RequestId></ErrorResponse>"
        ),
    )
}

fn error_response(code: &str, message: &str) -> Vec<u8> {
    xml_response(
        "400 Bad Request",
        &format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>{message}</Message></Error><RequestId>shim-error</RequestId></ErrorResponse>"
        ),
    )
}

fn describe_certificates(cas: &[ShimCa]) -> Vec<u8> {
    let certs: String = cas
        .iter()
        .map(|c| {
            format!(
                "<Certificate><CertificateIdentifier>{}</CertificateIdentifier>\
                 <CertificateType>CA</CertificateType><ValidFrom>{}</ValidFrom>\
                 <ValidTill>{}</ValidTill><CertificateArn>arn:aws:rds:us-east-1::cert:{}</CertificateArn>\
                 </Certificate>",
                c.id, c.valid_from, c.valid_till, c.id
            )
        })
        .collect();
    xml_response(
        "200 OK",
        &format!(
            "<DescribeCertificatesResponse xmlns=\"{NS}\"><DescribeCertificatesResult>\
             <DefaultCertificateForNewLaunches>rds-ca-rsa2048-g1</DefaultCertificateForNewLaunches>\
             <Certificates>{certs}</Certificates></DescribeCertificatesResult>\
             <ResponseMetadata><RequestId>shim-certs</RequestId></ResponseMetadata>\
             </DescribeCertificatesResponse>"
        ),
    )
}

fn describe_engine_versions(engine: &str, version: &str, no_restart: bool) -> Vec<u8> {
    xml_response(
        "200 OK",
        &format!(
            "<DescribeDBEngineVersionsResponse xmlns=\"{NS}\"><DescribeDBEngineVersionsResult>\
             <DBEngineVersions><DBEngineVersion><Engine>{engine}</Engine>\
             <EngineVersion>{version}</EngineVersion>\
             <SupportsCertificateRotationWithoutRestart>{no_restart}</SupportsCertificateRotationWithoutRestart>\
             </DBEngineVersion></DBEngineVersions></DescribeDBEngineVersionsResult>\
             <ResponseMetadata><RequestId>shim-versions</RequestId></ResponseMetadata>\
             </DescribeDBEngineVersionsResponse>"
        ),
    )
}

/// Replace the status of the instances the shim keeps busy in a DescribeDBInstances answer.
fn rewrite_busy(body: &str, busy: &mut HashMap<String, (String, u32)>) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find("<DBInstance>") {
        let Some(end) = rest[start..].find("</DBInstance>") else {
            break;
        };
        let end = start + end + "</DBInstance>".len();
        out.push_str(&rest[..start]);
        let mut block = rest[start..end].to_string();
        let id = block
            .split("<DBInstanceIdentifier>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
            .to_string();
        if let Some((status, left)) = busy.get_mut(&id) {
            if *left > 0 {
                *left -= 1;
                block = block.replace(
                    "<DBInstanceStatus>available</DBInstanceStatus>",
                    &format!("<DBInstanceStatus>{status}</DBInstanceStatus>"),
                );
            }
        }
        out.push_str(&block);
        rest = &rest[end..];
    }
    out.push_str(rest);
    busy.retain(|_, (_, left)| *left > 0);
    out
}

async fn read_request(sock: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();
    Ok(Some((head, body)))
}

async fn serve(
    mut sock: TcpStream,
    moto_port: u16,
    state: Arc<Mutex<ShimState>>,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut sock).await? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let params = form(&text);
    let action = param(&params, "Action").unwrap_or("").to_string();
    // `Parameters.Parameter.N.ParameterName=read_only` and its `.ParameterValue`.
    let read_only_change = (action == "ModifyDBParameterGroup")
        .then(|| {
            let group = param(&params, "DBParameterGroupName")?.to_string();
            let (key, _) = params
                .iter()
                .find(|(k, v)| k.ends_with(".ParameterName") && v == "read_only")?;
            let prefix = key.trim_end_matches(".ParameterName");
            let value = param(&params, &format!("{prefix}.ParameterValue"))?;
            Some((group, value == "1" || value.eq_ignore_ascii_case("on")))
        })
        .flatten();
    enum Plan {
        Answer(Vec<u8>),
        Forward {
            busy_after: Option<(String, String)>,
        },
    }
    let (plan, delay) = {
        let mut s = state.lock().expect("shim state");
        *s.stats.calls.entry(action.clone()).or_default() += 1;
        let delay = s.config.delay.get(&action).copied();
        let left = s.config.throttle_first.get(&action).copied().unwrap_or(0);
        let plan = if let Some((code, message)) = s.config.fail_next.remove(&action) {
            Plan::Answer(error_response(&code, &message))
        } else if left > 0 {
            s.config.throttle_first.insert(action.clone(), left - 1);
            *s.stats.throttled.entry(action.clone()).or_default() += 1;
            Plan::Answer(throttling())
        } else {
            match action.as_str() {
                "DescribeCertificates" => Plan::Answer(describe_certificates(&s.config.cas)),
                "DescribeDBEngineVersions" => {
                    let engine = param(&params, "Engine").unwrap_or("");
                    let version = param(&params, "EngineVersion").unwrap_or("");
                    let yes = s
                        .config
                        .no_restart_versions
                        .contains(&format!("{engine} {version}"));
                    Plan::Answer(describe_engine_versions(engine, version, yes))
                }
                "ModifyDBInstance" => Plan::Forward {
                    busy_after: param(&params, "DBInstanceIdentifier")
                        .map(|id| (id.to_string(), "modifying".to_string())),
                },
                "RebootDBInstance" => Plan::Forward {
                    busy_after: param(&params, "DBInstanceIdentifier")
                        .map(|id| (id.to_string(), "rebooting".to_string())),
                },
                _ => Plan::Forward { busy_after: None },
            }
        };
        (plan, delay)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let response = match plan {
        Plan::Answer(r) => r,
        Plan::Forward { busy_after } => {
            let mut upstream = TcpStream::connect(("127.0.0.1", moto_port)).await?;
            // One request per connection: moto closes after its answer.
            let mut head_out = String::new();
            for line in head.split("\r\n") {
                if line.to_ascii_lowercase().starts_with("connection:") {
                    continue;
                }
                if line.is_empty() {
                    continue;
                }
                head_out.push_str(line);
                head_out.push_str("\r\n");
            }
            head_out.push_str("Connection: close\r\n\r\n");
            upstream.write_all(head_out.as_bytes()).await?;
            upstream.write_all(&body).await?;
            let mut resp = Vec::new();
            upstream.read_to_end(&mut resp).await?;
            let ok = resp.starts_with(b"HTTP/1.1 200") || resp.starts_with(b"HTTP/1.0 200");
            let hook = {
                let mut s = state.lock().expect("shim state");
                if let (Some((id, status)), true) = (busy_after, ok) {
                    let n = s.config.busy_describes;
                    if n > 0 {
                        s.busy.insert(id, (status, n));
                    }
                }
                if action == "DescribeDBInstances" && !s.busy.is_empty() {
                    resp = rewrite_http_body(&resp, |b| rewrite_busy(b, &mut s.busy));
                }
                s.read_only_hook.clone().filter(|_| ok)
            };
            if let (Some(hook), Some((group, on))) = (hook, read_only_change) {
                hook(group, on).await;
            }
            resp
        }
    };
    sock.write_all(&response).await?;
    sock.shutdown().await?;
    Ok(())
}

/// Rewrite the body of a complete HTTP response (not chunked), fixing Content-Length.
fn rewrite_http_body(resp: &[u8], f: impl FnOnce(&str) -> String) -> Vec<u8> {
    let Some(p) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return resp.to_vec();
    };
    let head = String::from_utf8_lossy(&resp[..p]).into_owned();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return resp.to_vec();
    }
    let body = f(&String::from_utf8_lossy(&resp[p + 4..]));
    let mut out = String::new();
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut v = out.into_bytes();
    v.extend_from_slice(body.as_bytes());
    v
}

/// The seeded fleet: 10 Aurora MySQL clusters of 4 instances (`aurora-01` .. `aurora-10`,
/// instances `aurora-01-1` .. `-4`, the first the writer) and 10 standalone instances: 4
/// MySQL 8.0, 2 MySQL 8.4, 2 MariaDB 10.11, and one read replica each of `mysql-01` and
/// `mariadb-01`. Tags: `env` (prod on odd clusters, staging on even), `team=payments` on
/// `aurora-01`..`03`. 50 instances, all on `rds-ca-2019`.
pub struct Fleet;

impl Fleet {
    pub const AURORA_VERSION: &'static str = "8.0.mysql_aurora.3.05.2";

    /// The ids and versions of the standalone instances: (id, engine, version, replica of).
    pub fn standalone() -> Vec<(
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    )> {
        vec![
            ("mysql-01", "mysql", "8.0.35", None),
            ("mysql-02", "mysql", "8.0.35", None),
            ("mysql-03", "mysql", "8.0.35", None),
            ("mysql-04", "mysql", "8.0.35", None),
            ("mysql-05", "mysql", "8.4.3", None),
            ("mysql-06", "mysql", "8.4.3", None),
            ("mariadb-01", "mariadb", "10.11.8", None),
            ("mariadb-02", "mariadb", "10.11.8", None),
            ("mysql-01-r1", "mysql", "8.0.35", Some("mysql-01")),
            ("mariadb-01-r1", "mariadb", "10.11.8", Some("mariadb-01")),
        ]
    }

    /// Engine versions of the fleet that rotate without a restart in the shim's catalog.
    pub fn no_restart_versions() -> BTreeSet<String> {
        [
            format!("aurora-mysql {}", Self::AURORA_VERSION),
            "mysql 8.0.35".into(),
            "mysql 8.4.3".into(),
            "mariadb 10.11.8".into(),
        ]
        .into_iter()
        .collect()
    }

    /// Create the fleet in moto (directly, not through the shim), on `rds-ca-2019`.
    pub async fn seed(moto_url: &str) {
        let client = sdk_client(moto_url).await;
        let tag = |k: &str, v: &str| aws_sdk_rds::types::Tag::builder().key(k).value(v).build();
        let mut clusters = Vec::new();
        for c in 1..=10 {
            let client = client.clone();
            let name = format!("aurora-{c:02}");
            let mut tags = vec![tag("env", if c % 2 == 1 { "prod" } else { "staging" })];
            if c <= 3 {
                tags.push(tag("team", "payments"));
            }
            clusters.push(async move {
                client
                    .create_db_cluster()
                    .db_cluster_identifier(&name)
                    .engine("aurora-mysql")
                    .engine_version(Self::AURORA_VERSION)
                    .master_username("admin")
                    .master_user_password("not-a-secret-1")
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("seeding {name}: {e:?}"));
                for i in 1..=4 {
                    let id = format!("{name}-{i}");
                    client
                        .create_db_instance()
                        .db_instance_identifier(&id)
                        .db_cluster_identifier(&name)
                        .engine("aurora-mysql")
                        .db_instance_class("db.r6g.large")
                        .ca_certificate_identifier("rds-ca-2019")
                        .set_tags(Some(tags.clone()))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("seeding {id}: {e:?}"));
                }
            });
        }
        futures::future::join_all(clusters).await;
        for (id, engine, version, source) in Self::standalone() {
            let env = if id.ends_with("01") || id.ends_with("03") || id.ends_with("05") {
                "prod"
            } else {
                "staging"
            };
            match source {
                None => {
                    client
                        .create_db_instance()
                        .db_instance_identifier(id)
                        .engine(engine)
                        .engine_version(version)
                        .db_instance_class("db.t3.medium")
                        .allocated_storage(20)
                        .master_username("admin")
                        .master_user_password("not-a-secret-1")
                        .ca_certificate_identifier("rds-ca-2019")
                        .tags(tag("env", env))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("seeding {id}: {e:?}"));
                }
                Some(src) => {
                    client
                        .create_db_instance_read_replica()
                        .db_instance_identifier(id)
                        .source_db_instance_identifier(src)
                        .tags(tag("env", env))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("seeding {id}: {e:?}"));
                    client
                        .modify_db_instance()
                        .db_instance_identifier(id)
                        .ca_certificate_identifier("rds-ca-2019")
                        .apply_immediately(true)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("seeding {id}'s CA: {e:?}"));
                }
            }
        }
    }
}

/// A standalone instance in moto (directly, not through the shim) with a custom parameter
/// group of its own, `group` of `family` (made here), as an instance dbshift can fence by its
/// group's `read_only`.
pub async fn seed_instance(
    moto_url: &str,
    id: &str,
    engine: &str,
    version: &str,
    family: &str,
    group: &str,
) {
    let client = sdk_client(moto_url).await;
    client
        .create_db_parameter_group()
        .db_parameter_group_name(group)
        .db_parameter_group_family(family)
        .description(format!("{id}'s own"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating parameter group {group}: {e:?}"));
    client
        .create_db_instance()
        .db_instance_identifier(id)
        .engine(engine)
        .engine_version(version)
        .db_instance_class("db.t3.medium")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-secret-1")
        .db_parameter_group_name(group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("seeding {id}: {e:?}"));
}

/// Apply each parameter group's `read_only` to the lab server it names (`group -> lab
/// instance`), as RDS applies that dynamic parameter at once: a fence by the group is real.
pub fn map_parameter_groups(moto: &Moto, lab: &dbshift_provider::local::Lab, map: &[(&str, &str)]) {
    let groups: BTreeMap<String, String> = map
        .iter()
        .map(|(g, i)| (g.to_string(), i.to_string()))
        .collect();
    let lab = lab.clone();
    moto.on_parameter_read_only(Arc::new(move |group, on| {
        let (lab, target) = (lab.clone(), groups.get(&group).cloned());
        Box::pin(async move {
            if let Some(id) = target {
                lab.set_read_only(&id, on)
                    .await
                    .unwrap_or_else(|e| panic!("read_only={on} on {id}: {e}"));
            }
        })
    }));
}

/// The tags moto holds on instance `id` (by its identifier), straight from moto.
pub async fn raw_tags(moto_url: &str, id: &str) -> Option<BTreeMap<String, String>> {
    let out = sdk_client(moto_url)
        .await
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .ok()?;
    let d = out.db_instances().first()?;
    Some(
        d.tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect(),
    )
}

/// An SDK client for `url` with the test credentials (`testing`).
pub async fn sdk_client(url: &str) -> aws_sdk_rds::Client {
    set_test_credentials();
    let opts = dbshift_provider::aws::AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.to_string()),
        ..test_options()
    };
    dbshift_provider::aws::AwsProvider::connect(opts)
        .await
        .expect("an SDK client for moto")
        .client()
        .clone()
}

/// The fake credentials moto accepts, in the environment the default chain reads.
pub fn set_test_credentials() {
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ] {
        if std::env::var(k).ok().as_deref() != Some(v) {
            std::env::set_var(k, v);
        }
    }
}

/// Provider options for tests: fast polls, short waits, no database credentials.
pub fn test_options() -> dbshift_provider::aws::AwsOptions {
    dbshift_provider::aws::AwsOptions {
        region: Some("us-east-1".into()),
        profile: None,
        endpoint_url: None,
        poll_interval: Duration::from_millis(50),
        wait_timeout: Duration::from_secs(30),
        max_attempts: 5,
        kms_key: "alias/aws/rds".into(),
        db: None,
        endpoints: BTreeMap::new(),
        certificates_file: None,
        proxies: BTreeMap::new(),
    }
}

/// A provider on the shim of `moto`.
pub async fn provider(moto: &Moto) -> dbshift_provider::aws::AwsProvider {
    set_test_credentials();
    let opts = dbshift_provider::aws::AwsOptions {
        endpoint_url: Some(moto.url()),
        ..test_options()
    };
    dbshift_provider::aws::AwsProvider::connect(opts)
        .await
        .expect("the aws provider on moto")
}

/// The shim's default: RDS's CAs, the fleet's versions rotating without restart, three
/// describes of `modifying`/`rebooting` after a change.
pub fn default_shim() -> ShimConfig {
    ShimConfig {
        cas: ShimConfig::rds_cas(),
        no_restart_versions: Fleet::no_restart_versions(),
        busy_describes: 3,
        ..ShimConfig::default()
    }
}
