//! The fleet file (`--fleet FILE`): which clusters exist, where to start looking for their
//! servers, with which users, over which TLS, how clients are moved and how a server is
//! restarted, stopped and started. Parsed strictly (an unknown key is an error) and checked
//! whole before anything connects. `docs/self-managed.md` documents it field by field.
//!
//! Passwords are never in it: each user names an environment variable (`password_env`) or a
//! file (`password_file`). A `password` key is refused with that advice, and neither its
//! value nor the line it is on is ever printed (a TOML error is reported by line and column,
//! without the text).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::redirect::{HaproxySpec, ServerMap, Socket};
use crate::error::{Error, Result};
use crate::model::{Credential, Endpoint};

/// How long one exchange with HAProxy's runtime API may take when the file does not say.
pub const DEFAULT_HAPROXY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a command template may run when the file does not say.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    credentials: Option<RawCredentials>,
    tls: Option<RawTls>,
    commands: Option<RawCommands>,
    #[serde(default)]
    ca: Vec<RawCa>,
    #[serde(default)]
    cluster: Vec<RawCluster>,
    #[serde(default)]
    deployment: Vec<RawDeployment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployment {
    name: String,
    blue: String,
    green: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    id: String,
    certificate: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    #[serde(default)]
    seeds: Vec<String>,
    credentials: Option<RawCredentials>,
    tls: Option<RawTls>,
    commands: Option<RawCommands>,
    #[serde(default)]
    redirect: RedirectKind,
    #[serde(default)]
    proxy: Vec<RawProxy>,
    haproxy: Option<RawHaproxy>,
    #[serde(default)]
    instance: Vec<RawInstance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    sockets: Vec<String>,
    backend: String,
    #[serde(default)]
    servers: RawServerMap,
    server: Option<String>,
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawServerMap {
    #[default]
    Name,
    Address,
    Single,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    admin: Option<RawUser>,
    replication: Option<RawUser>,
    app: Option<RawUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    user: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    /// Only to refuse it with advice (any type: a value of the wrong type must not make the
    /// parser quote it).
    password: Option<toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<PathBuf>,
    verify: Option<Verify>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommands {
    restart: Option<String>,
    stop: Option<String>,
    start: Option<String>,
    redirect: Option<String>,
    install_certificate: Option<String>,
    install_trust: Option<String>,
    read_trust: Option<String>,
    provision_green: Option<String>,
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: String,
    admin: String,
    token_env: String,
    /// The CA (PEM) of the admin API's certificate: HTTPS to it.
    admin_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    id: String,
    endpoint: String,
}

/// How clients find a cluster's writer after a switchover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectKind {
    /// dbshift moves nothing: the operator moves the clients.
    #[default]
    None,
    /// dbshift proxies in front of the cluster (`[[cluster.proxy]]`) hold and move clients.
    Proxy,
    /// HAProxy's runtime API (`[cluster.haproxy]`): the new writer made the only server of
    /// the backend that takes connections.
    Haproxy,
    /// The `commands.redirect` template, run with the new writer filled in.
    Command,
}

/// How dbshift checks a server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// TLS, the chain checked against `ca_file` and the certificate's name against the host.
    Full,
    /// No TLS from dbshift (and replicas it points use TLS without checking): only for a
    /// network that is trusted end to end.
    None,
}

/// The TLS of one cluster, as dbshift's connections and the replicas it points use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// `None`: no verification (`verify = "none"`).
    pub ca_file: Option<PathBuf>,
}

/// The command templates of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    pub restart: Option<String>,
    pub stop: Option<String>,
    pub start: Option<String>,
    /// `redirect = "command"`: filled by [`super::redirect::fill_command`].
    pub redirect: Option<String>,
    /// Give a server a certificate and key issued by `{ca}` (`ca-rotate`); `{ca_file}` is
    /// that CA's certificate.
    pub install_certificate: Option<String>,
    /// Make a server trust exactly the CAs of the PEM file `{bundle}` (its `ssl_ca`).
    pub install_trust: Option<String>,
    /// Print (on standard output, PEM) the CAs a server trusts now.
    pub read_trust: Option<String>,
    /// Build a deployment's green (`bluegreen create`): its servers at the green cluster's
    /// seeds, its writer replicating from blue's writer.
    pub provision_green: Option<String>,
    pub timeout: Duration,
}

/// A CA the fleet's servers can be moved to (`[[ca]]`), its certificate read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSpec {
    pub id: String,
    /// The file as given (resolved against the fleet file's directory).
    pub path: PathBuf,
    /// Its one certificate, PEM.
    pub pem: String,
    /// Validity, RFC 3339.
    pub not_before: String,
    pub not_after: String,
}

/// A dbshift proxy in front of a cluster, its token read from the environment.
#[derive(Clone)]
pub struct ProxySpec {
    pub listen: Endpoint,
    pub admin: Endpoint,
    pub token: String,
    /// The CA the admin API's certificate is verified against (resolved against the fleet
    /// file's directory): HTTPS. `None`: plain HTTP, on a loopback address only.
    pub admin_ca: Option<PathBuf>,
}

impl std::fmt::Debug for ProxySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProxySpec(listen {} admin {}{}, token ***)",
            self.listen,
            self.admin,
            match &self.admin_ca {
                Some(ca) => format!(" (TLS, CA {})", ca.display()),
                None => String::new(),
            }
        )
    }
}

/// One cluster, checked: every secret read, every endpoint parsed. `Debug` shows no secret
/// (a [`Credential`] hides its password, a [`ProxySpec`] its token).
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    /// Where discovery starts: the seeds, then the named instances' endpoints.
    pub seeds: Vec<Endpoint>,
    /// Ids the file gives to endpoints (`[[cluster.instance]]`); others are `host:port`.
    pub names: BTreeMap<String, Endpoint>,
    pub admin: Credential,
    pub replication: Credential,
    /// The application's user (no SUPER), for the downtime probe; the admin user if the file
    /// names none.
    pub app: Option<Credential>,
    pub tls: Tls,
    pub commands: Commands,
    pub redirect: RedirectKind,
    pub proxies: Vec<ProxySpec>,
    /// `redirect = "haproxy"`: the HAProxies and their backend.
    pub haproxy: Option<HaproxySpec>,
}

impl ClusterSpec {
    /// The id of the server at `ep`: the file's name for it, else `host:port`.
    pub fn id_of(&self, ep: &Endpoint) -> String {
        self.names
            .iter()
            .find(|(_, e)| *e == ep)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| ep.to_string())
    }
}

/// The whole file, checked.
#[derive(Debug, Clone)]
pub struct FleetFile {
    pub path: PathBuf,
    pub clusters: Vec<ClusterSpec>,
    /// The CAs of `[[ca]]`, in the file's order.
    pub cas: Vec<CaSpec>,
    /// The blue/green deployments of `[[deployment]]`: two clusters of the file, green's
    /// writer replicating from blue's.
    pub deployments: Vec<DeploymentSpec>,
}

/// A `[[deployment]]`: blue (the cluster whose name clients use) and green (a cluster the
/// operator built, its writer replicating from blue's writer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    pub name: String,
    pub blue: String,
    pub green: String,
}

impl FleetFile {
    /// Read and check the file at `path`; `env` gives environment variables (the process's,
    /// or a test's).
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<FleetFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::BadInput(format!(
                "the fleet file {}: {e} (give it with --fleet FILE, DBSHIFT_FLEET or the \
                 config key `fleet`)",
                path.display()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        FleetFile::parse(&text, path, base, env)
    }

    /// Check the text of a fleet file; `path` names it in messages, `base` is where relative
    /// file paths in it start.
    pub fn parse(
        text: &str,
        path: &Path,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FleetFile> {
        let file = path.display().to_string();
        let bad = |m: String| Error::BadInput(format!("the fleet file {file}: {m}"));
        let raw: RawFleet = toml::from_str(text).map_err(|e| bad(toml_error(text, &e)))?;
        if raw.cluster.is_empty() {
            return Err(bad(
                "no cluster: add a [[cluster]] with a name and seeds".to_string()
            ));
        }
        let mut clusters: Vec<ClusterSpec> = Vec::new();
        for c in &raw.cluster {
            let at = format!("cluster {:?}", c.name);
            if c.name.is_empty() {
                return Err(bad("a [[cluster]] has an empty name".to_string()));
            }
            if clusters.iter().any(|k| k.name == c.name) {
                return Err(bad(format!("{at} is named twice")));
            }
            let mut seeds = Vec::new();
            for s in &c.seeds {
                seeds.push(parse_endpoint(s).map_err(|m| bad(format!("{at}: seed {s:?}: {m}")))?);
            }
            let mut names = BTreeMap::new();
            for i in &c.instance {
                let ep = parse_endpoint(&i.endpoint)
                    .map_err(|m| bad(format!("{at}: instance {:?}: {m}", i.id)))?;
                if i.id.is_empty() || names.contains_key(&i.id) {
                    return Err(bad(format!(
                        "{at}: instance ids must be unique and not empty ({:?})",
                        i.id
                    )));
                }
                if !seeds.contains(&ep) {
                    seeds.push(ep.clone());
                }
                names.insert(i.id.clone(), ep);
            }
            if seeds.is_empty() {
                return Err(bad(format!(
                    "{at} has no seeds: give `seeds = [\"host:port\"]` or [[cluster.instance]]"
                )));
            }
            let creds = |which: &str, pick: fn(&RawCredentials) -> Option<&RawUser>| {
                let (user, key) = match c.credentials.as_ref().and_then(pick) {
                    Some(u) => (u, format!("{at}: credentials.{which}")),
                    None => match raw.credentials.as_ref().and_then(pick) {
                        Some(u) => (u, format!("credentials.{which}")),
                        None => {
                            return Err(bad(format!(
                                "{at} has no {which} user: add [credentials.{which}] (for the \
                                 fleet) or [cluster.credentials.{which}] with `user` and \
                                 `password_env` or `password_file`"
                            )))
                        }
                    },
                };
                credential(user, &key, base, env).map_err(bad)
            };
            let admin = creds("admin", |c| c.admin.as_ref())?;
            let replication = creds("replication", |c| c.replication.as_ref())?;
            let app = match c
                .credentials
                .as_ref()
                .and_then(|c| c.app.as_ref())
                .map(|u| (u, format!("{at}: credentials.app")))
                .or_else(|| {
                    raw.credentials
                        .as_ref()
                        .and_then(|c| c.app.as_ref())
                        .map(|u| (u, "credentials.app".to_string()))
                }) {
                Some((u, key)) => Some(credential(u, &key, base, env).map_err(bad)?),
                None => None,
            };
            let tls = tls(c.tls.as_ref().or(raw.tls.as_ref()), base)
                .map_err(|m| bad(format!("{at}: {m}")))?;
            let commands = commands(c.commands.as_ref(), raw.commands.as_ref());
            let mut proxies = Vec::new();
            for p in &c.proxy {
                let ep = |s: &str, key: &str| {
                    parse_endpoint(s).map_err(|m| bad(format!("{at}: proxy {key} {s:?}: {m}")))
                };
                let token = env(&p.token_env).filter(|t| !t.is_empty()).ok_or_else(|| {
                    bad(format!(
                        "{at}: the proxy's token_env {:?} is not set (export the admin API's \
                         token in it)",
                        p.token_env
                    ))
                })?;
                let admin = ep(&p.admin, "admin")?;
                let admin_ca = match &p.admin_ca {
                    Some(ca) => {
                        let ca = base.join(ca);
                        if !ca.is_file() {
                            return Err(bad(format!(
                                "{at}: proxy admin_ca {} is not a readable file (the PEM \
                                 certificate of the CA that issued the admin API's certificate)",
                                ca.display()
                            )));
                        }
                        Some(ca)
                    }
                    None if !admin.is_loopback() => {
                        return Err(bad(format!(
                            "{at}: proxy admin {:?} is not a loopback address: the admin API \
                             is reached there over TLS only. Start that proxy with \
                             --admin-tls-cert and --admin-tls-key and add `admin_ca = \
                             \"/path/ca.pem\"` (the CA that issued its certificate) to this \
                             [[cluster.proxy]], or give a loopback admin address",
                            p.admin
                        )))
                    }
                    None => None,
                };
                proxies.push(ProxySpec {
                    listen: ep(&p.listen, "listen")?,
                    admin,
                    token,
                    admin_ca,
                });
            }
            let haproxy = match &c.haproxy {
                Some(h) => Some(haproxy(h).map_err(|m| bad(format!("{at}: haproxy: {m}")))?),
                None => None,
            };
            match (c.redirect, haproxy.is_some(), commands.redirect.is_some()) {
                (RedirectKind::Haproxy, false, _) => {
                    return Err(bad(format!(
                        "{at}: redirect = \"haproxy\" needs [cluster.haproxy] with sockets and \
                         backend"
                    )))
                }
                (RedirectKind::Command, _, false) => {
                    return Err(bad(format!(
                        "{at}: redirect = \"command\" needs a `redirect` command template under \
                         [cluster.commands] (or [commands]), with {{cluster}}, {{writer_id}}, \
                         {{writer_host}}, {{writer_port}} and {{old_id}} filled in"
                    )))
                }
                (k, true, _) if k != RedirectKind::Haproxy => {
                    return Err(bad(format!(
                        "{at}: [cluster.haproxy] is given but redirect is not \"haproxy\": set \
                         redirect = \"haproxy\" or remove the table"
                    )))
                }
                _ => {}
            }
            match (c.redirect, proxies.is_empty()) {
                (RedirectKind::Proxy, true) => {
                    return Err(bad(format!(
                        "{at}: redirect = \"proxy\" needs at least one [[cluster.proxy]] with \
                         listen, admin and token_env"
                    )))
                }
                (RedirectKind::None, false) => {
                    return Err(bad(format!(
                        "{at}: [[cluster.proxy]] is given but redirect is \"none\": set \
                         redirect = \"proxy\" or remove the proxies"
                    )))
                }
                _ => {}
            }
            clusters.push(ClusterSpec {
                name: c.name.clone(),
                seeds,
                names,
                admin,
                replication,
                app,
                tls,
                commands,
                redirect: c.redirect,
                proxies,
                haproxy,
            });
        }
        let mut cas: Vec<CaSpec> = Vec::new();
        for c in &raw.ca {
            let ca = ca_spec(c, base).map_err(|m| bad(format!("ca {:?}: {m}", c.id)))?;
            if cas.iter().any(|k| k.id == ca.id) {
                return Err(bad(format!("ca {:?} is named twice", ca.id)));
            }
            cas.push(ca);
        }
        let mut deployments: Vec<DeploymentSpec> = Vec::new();
        for d in &raw.deployment {
            let at = format!("deployment {:?}", d.name);
            if d.name.is_empty() {
                return Err(bad("a [[deployment]] has an empty name".to_string()));
            }
            if deployments.iter().any(|k| k.name == d.name) {
                return Err(bad(format!("{at} is named twice")));
            }
            let side = |name: &str| {
                clusters.iter().find(|c| c.name == name).ok_or_else(|| {
                    bad(format!(
                        "{at}: no [[cluster]] named {name:?} (clusters: {})",
                        clusters
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            };
            let (blue, green) = (side(&d.blue)?, side(&d.green)?);
            if blue.name == green.name {
                return Err(bad(format!("{at}: blue and green are the same cluster")));
            }
            if let Some(other) = deployments.iter().find(|k| {
                [&k.blue, &k.green]
                    .iter()
                    .any(|c| **c == blue.name || **c == green.name)
            }) {
                return Err(bad(format!(
                    "{at}: a cluster can be in one deployment only ({:?} has {} and {})",
                    other.name, other.blue, other.green
                )));
            }
            // The two sides are discovered together (green's writer replicates from blue's):
            // one set of users and TLS.
            let same = blue.admin.user == green.admin.user
                && blue.admin.password == green.admin.password
                && blue.replication.user == green.replication.user
                && blue.replication.password == green.replication.password
                && blue.tls == green.tls;
            if !same {
                return Err(bad(format!(
                    "{at}: {} and {} use different users or TLS; the two sides of a deployment                      replicate one from the other and take one set",
                    blue.name, green.name
                )));
            }
            deployments.push(DeploymentSpec {
                name: d.name.clone(),
                blue: blue.name.clone(),
                green: green.name.clone(),
            });
        }
        Ok(FleetFile {
            path: path.to_path_buf(),
            clusters,
            cas,
            deployments,
        })
    }

    /// One cluster by name; [`Error::Unknown`] names the others.
    pub fn cluster(&self, name: &str) -> Result<&ClusterSpec> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::Unknown {
                kind: "cluster",
                name: name.to_string(),
                known: self.known(),
            })
    }

    /// The deployment `cluster` is a side of, if any.
    pub fn deployment_of(&self, cluster: &str) -> Option<&DeploymentSpec> {
        self.deployments
            .iter()
            .find(|d| d.blue == cluster || d.green == cluster)
    }

    /// The clusters' names, for messages.
    pub fn known(&self) -> String {
        self.clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A TOML error by line and column and the table it is in, without the text of the line (it
/// may hold a secret).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            let place = table_at(text, before.len())
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            format!("line {line}, column {column}{place}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// Where byte `at` of `text` is, by its table: `in cluster "main"`, `in [cluster.commands] of
/// cluster "main"`, `in [tls]`; `None` at the top level. Only table headers and a cluster's
/// `name` are read: never a line that may hold a secret.
fn table_at(text: &str, at: usize) -> Option<String> {
    let header = |line: &str| {
        let t = line.trim();
        let close = if t.starts_with("[[") { "]]" } else { "]" };
        t.starts_with('[')
            .then(|| t.find(close).map(|i| t[..i + close.len()].to_string()))
            .flatten()
    };
    let (mut table, mut cluster_at) = (None, None);
    let mut pos = 0;
    for line in text[..at].split_inclusive('\n') {
        if let Some(h) = header(line) {
            if h == "[[cluster]]" {
                cluster_at = Some(pos + line.len());
            }
            table = Some(h);
        }
        pos += line.len();
    }
    let table = table?;
    if !table.trim_start_matches('[').starts_with("cluster") {
        return Some(format!("in {table}"));
    }
    // The cluster's name: a `name = "..."` among its own keys, before its first sub-table.
    let name = cluster_at.and_then(|start| {
        text[start..]
            .lines()
            .take_while(|l| header(l).is_none())
            .find_map(|l| {
                let v = l
                    .trim()
                    .strip_prefix("name")?
                    .trim_start()
                    .strip_prefix('=')?;
                let v = v.trim().strip_prefix('"')?;
                Some(v[..v.find('"')?].to_string())
            })
    });
    let cluster = match name {
        Some(n) => format!("cluster {n:?}"),
        None => "a [[cluster]]".to_string(),
    };
    Some(if table == "[[cluster]]" {
        format!("in {cluster}")
    } else {
        format!("in {table} of {cluster}")
    })
}

/// `host:port` (`[v6]:port` too).
pub fn parse_endpoint(s: &str) -> std::result::Result<Endpoint, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| "expected host:port".to_string())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("expected host:port (the host is empty)".to_string());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("expected host:port ({port:?} is no port)"))?;
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

fn credential(
    u: &RawUser,
    key: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<Credential, String> {
    if u.password.is_some() {
        return Err(format!(
            "{key} has a plaintext `password`: refused, a fleet file is no place for a secret. \
             Put the password in an environment variable and name it with `password_env`, or \
             in a file readable only by you (mode 0600) named by `password_file`"
        ));
    }
    let password = match (&u.password_env, &u.password_file) {
        (Some(var), None) => env(var).ok_or_else(|| {
            format!("{key}: password_env {var:?} is not set (export the password in it)")
        })?,
        (None, Some(file)) => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{key}: password_file {}: {e}", path.display()))?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "{key}: give one of password_env and password_file, not both"
            ))
        }
        (None, None) => {
            return Err(format!(
                "{key}: no password source: add `password_env = \"VAR\"` or \
                 `password_file = \"/path\"`"
            ))
        }
    };
    Ok(Credential {
        user: u.user.clone(),
        password,
    })
}

fn tls(raw: Option<&RawTls>, base: &Path) -> std::result::Result<Tls, String> {
    let Some(t) = raw else {
        return Err(
            "no TLS settings: add [tls] (for the fleet) or [cluster.tls] with `ca_file` (and \
             verify = \"full\"), or verify = \"none\" for a network trusted end to end"
                .to_string(),
        );
    };
    match (t.verify.unwrap_or(Verify::Full), &t.ca_file) {
        (Verify::Full, Some(ca)) => {
            let ca = base.join(ca);
            if !ca.is_file() {
                return Err(format!(
                    "tls.ca_file {} is not a readable file",
                    ca.display()
                ));
            }
            Ok(Tls { ca_file: Some(ca) })
        }
        (Verify::Full, None) => Err(
            "tls: verify = \"full\" needs ca_file (the CA that signed the servers' certificates)"
                .to_string(),
        ),
        (Verify::None, _) => Ok(Tls { ca_file: None }),
    }
}

/// A `[[ca]]`: its file holds exactly one certificate (a bundle would leave which CA an
/// instance is moved to open), a CA's, with its validity.
fn ca_spec(c: &RawCa, base: &Path) -> std::result::Result<CaSpec, String> {
    if c.id.is_empty() {
        return Err("the id is empty".to_string());
    }
    let path = base.join(&c.certificate);
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| format!("certificate {}: {e}", path.display()))?;
    let (not_before, not_after) =
        ca_validity(&pem).map_err(|m| format!("certificate {}: {m}", path.display()))?;
    Ok(CaSpec {
        id: c.id.clone(),
        path,
        pem,
        not_before,
        not_after,
    })
}

/// The validity (RFC 3339) of the one CA certificate a PEM text holds.
pub fn ca_validity(pem: &str) -> std::result::Result<(String, String), String> {
    use x509_parser::pem::Pem;
    let blocks: Vec<Pem> = Pem::iter_from_buffer(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("not PEM ({e})"))?;
    let certs: Vec<&Pem> = blocks.iter().filter(|p| p.label == "CERTIFICATE").collect();
    let [cert] = certs.as_slice() else {
        return Err(format!(
            "holds {} certificates; give each CA its own [[ca]] with a file of its one              certificate",
            certs.len()
        ));
    };
    let x = cert
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    if !x.is_ca() {
        return Err(format!(
            "{} is not a CA certificate (no basicConstraints CA:TRUE): name the CA that              issues the servers' certificates, not a server's",
            x.subject()
        ));
    }
    let rfc = |t: &x509_parser::time::ASN1Time| {
        time::OffsetDateTime::from_unix_timestamp(t.timestamp())
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| t.to_string())
    };
    Ok((rfc(&x.validity().not_before), rfc(&x.validity().not_after)))
}

fn haproxy(h: &RawHaproxy) -> std::result::Result<HaproxySpec, String> {
    if h.sockets.is_empty() {
        return Err(
            "sockets is empty: name each HAProxy's runtime API (\"unix:/path\" or \
                    \"tcp:host:port\")"
                .to_string(),
        );
    }
    let mut sockets = Vec::new();
    for s in &h.sockets {
        sockets.push(Socket::parse(s).map_err(|m| format!("socket {s:?}: {m}"))?);
    }
    if h.backend.is_empty() {
        return Err("backend is empty".to_string());
    }
    let map = match (h.servers, &h.server) {
        (RawServerMap::Single, Some(name)) if !name.is_empty() => ServerMap::Single(name.clone()),
        (RawServerMap::Single, _) => {
            return Err(
                "servers = \"single\" needs `server`, the name of the backend's one \
                        server"
                    .to_string(),
            )
        }
        (_, Some(_)) => {
            return Err("`server` is only for servers = \"single\"".to_string());
        }
        (RawServerMap::Name, None) => ServerMap::Name,
        (RawServerMap::Address, None) => ServerMap::Address,
    };
    Ok(HaproxySpec {
        sockets,
        backend: h.backend.clone(),
        map,
        timeout: h
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_HAPROXY_TIMEOUT),
    })
}

fn commands(cluster: Option<&RawCommands>, fleet: Option<&RawCommands>) -> Commands {
    let empty = RawCommands::default();
    let (c, f) = (cluster.unwrap_or(&empty), fleet.unwrap_or(&empty));
    Commands {
        restart: c.restart.clone().or_else(|| f.restart.clone()),
        stop: c.stop.clone().or_else(|| f.stop.clone()),
        start: c.start.clone().or_else(|| f.start.clone()),
        redirect: c.redirect.clone().or_else(|| f.redirect.clone()),
        install_certificate: c
            .install_certificate
            .clone()
            .or_else(|| f.install_certificate.clone()),
        install_trust: c.install_trust.clone().or_else(|| f.install_trust.clone()),
        read_trust: c.read_trust.clone().or_else(|| f.read_trust.clone()),
        provision_green: c
            .provision_green
            .clone()
            .or_else(|| f.provision_green.clone()),
        timeout: c
            .timeout_seconds
            .or(f.timeout_seconds)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
    }
}

#[cfg(test)]
mod tests;
