//! What the aws provider is told: the flags and the `DBSHIFT_*` variables (waits, retries,
//! database credentials, endpoint and proxy maps). It never prints a password.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{Credential, Credentials, Endpoint, ProxyEndpoint};
use crate::{Error, Result};

/// How the provider reaches AWS and waits on it.
#[derive(Clone)]
pub struct AwsOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Another RDS endpoint (moto, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Between two describes of a waiter (jittered by up to a quarter).
    pub poll_interval: Duration,
    /// Longest a waiter waits (snapshots and restores take minutes to hours).
    pub wait_timeout: Duration,
    /// Attempts per API call, throttles included (SDK standard retry mode).
    pub max_attempts: u32,
    /// The KMS key an encrypted copy is made with.
    pub kms_key: String,
    /// The servers' credentials for the SQL side, if configured.
    pub db: Option<Credentials>,
    /// Instance or cluster id -> where to connect instead of the AWS endpoint (SSH tunnels,
    /// bastions): `DBSHIFT_AWS_ENDPOINTS=id=host:port,id2=host:port`.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// A CA list instead of `DescribeCertificates` (`DBSHIFT_AWS_CERTIFICATES`).
    pub certificates_file: Option<PathBuf>,
    /// Standalone instance name (what clients use) -> the dbshift proxies in front of it
    /// (`DBSHIFT_AWS_PROXY=NAME=LISTEN_HOST:PORT/ADMIN_HOST:PORT,...`, a name given again for
    /// each further proxy, the admin API's token in `DBSHIFT_PROXY_TOKEN`): a switchover then
    /// holds clients there and switches them all. `DBSHIFT_AWS_PROXY_ADMIN_CA`: the CA (PEM)
    /// of their admin APIs' certificates, for admin APIs served over TLS on another host.
    pub proxies: BTreeMap<String, Vec<ProxyEndpoint>>,
}

/// Give every proxy of `map` the admin API CA `ca` (`DBSHIFT_AWS_PROXY_ADMIN_CA`): HTTPS to
/// their admin APIs, verified against it.
pub fn set_proxy_admin_ca(map: &mut BTreeMap<String, Vec<ProxyEndpoint>>, ca: &Path) -> Result<()> {
    if !ca.is_file() {
        return Err(Error::BadInput(format!(
            "DBSHIFT_AWS_PROXY_ADMIN_CA: {} is not a readable file (the PEM certificate of the \
             CA that issued the proxies' admin API certificates)",
            ca.display()
        )));
    }
    for p in map.values_mut().flatten() {
        p.admin_ca = Some(ca.to_path_buf());
    }
    Ok(())
}

/// `NAME=LISTEN_HOST:PORT/ADMIN_HOST:PORT,...` with the admin API's `token`; a name given
/// several times has several proxies, in the order given.
pub fn parse_proxy_map(text: &str, token: &str) -> Result<BTreeMap<String, Vec<ProxyEndpoint>>> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            Error::BadInput(format!(
                "DBSHIFT_AWS_PROXY: {part:?} is not NAME=LISTEN_HOST:PORT/ADMIN_HOST:PORT"
            ))
        };
        let (name, addrs) = part.split_once('=').ok_or_else(bad)?;
        let (listen, admin) = addrs.split_once('/').ok_or_else(bad)?;
        let ep = |a: &str| -> Result<Endpoint> {
            let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
            Ok(Endpoint {
                host: host.to_string(),
                port: port.parse().map_err(|_| bad())?,
            })
        };
        out.entry(name.to_string())
            .or_insert_with(Vec::new)
            .push(ProxyEndpoint {
                cluster: name.to_string(),
                listen: ep(listen)?,
                admin: ep(admin)?,
                token: token.to_string(),
                admin_ca: None,
            });
    }
    Ok(out)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_number(name: &str) -> Result<Option<u64>> {
    env(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Error::BadInput(format!("{name}={v:?} is not a whole number")))
        })
        .transpose()
}

/// `id=host:port,id2=host:port`.
pub fn parse_endpoint_map(text: &str) -> Result<BTreeMap<String, Endpoint>> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            Error::BadInput(format!(
                "DBSHIFT_AWS_ENDPOINTS: {part:?} is not ID=HOST:PORT"
            ))
        };
        let (id, addr) = part.split_once('=').ok_or_else(bad)?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if id.is_empty() || host.is_empty() {
            return Err(bad());
        }
        out.insert(
            id.to_string(),
            Endpoint {
                host: host.to_string(),
                port,
            },
        );
    }
    Ok(out)
}

impl AwsOptions {
    /// Defaults, then the `DBSHIFT_*` variables: `DBSHIFT_DB_USER`, `DBSHIFT_DB_PASSWORD`,
    /// `DBSHIFT_REPL_USER`, `DBSHIFT_REPL_PASSWORD`, `DBSHIFT_DB_CA_BUNDLE`,
    /// `DBSHIFT_AWS_ENDPOINTS`, `DBSHIFT_AWS_POLL_MS`, `DBSHIFT_AWS_WAIT_TIMEOUT_S`,
    /// `DBSHIFT_AWS_MAX_ATTEMPTS`, `DBSHIFT_AWS_KMS_KEY`, `DBSHIFT_AWS_CERTIFICATES`.
    pub fn from_env() -> Result<AwsOptions> {
        let db = match (env("DBSHIFT_DB_USER"), env("DBSHIFT_DB_PASSWORD")) {
            (Some(user), Some(password)) => {
                let admin = Credential { user, password };
                let replication = match (env("DBSHIFT_REPL_USER"), env("DBSHIFT_REPL_PASSWORD")) {
                    (Some(user), Some(password)) => Credential { user, password },
                    _ => admin.clone(),
                };
                Some(Credentials {
                    app: admin.clone(),
                    admin,
                    replication,
                    ca_bundle: env("DBSHIFT_DB_CA_BUNDLE").map(PathBuf::from),
                })
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::BadInput(
                    "set both DBSHIFT_DB_USER and DBSHIFT_DB_PASSWORD (or neither: then only the \
                     control plane is used)"
                        .into(),
                ))
            }
            (None, None) => None,
        };
        Ok(AwsOptions {
            region: None,
            profile: None,
            endpoint_url: None,
            poll_interval: Duration::from_millis(
                env_number("DBSHIFT_AWS_POLL_MS")?.unwrap_or(15_000),
            ),
            wait_timeout: Duration::from_secs(
                env_number("DBSHIFT_AWS_WAIT_TIMEOUT_S")?.unwrap_or(4 * 3600),
            ),
            max_attempts: env_number("DBSHIFT_AWS_MAX_ATTEMPTS")?.unwrap_or(8) as u32,
            kms_key: env("DBSHIFT_AWS_KMS_KEY").unwrap_or_else(|| "alias/aws/rds".into()),
            db,
            endpoints: env("DBSHIFT_AWS_ENDPOINTS")
                .map(|t| parse_endpoint_map(&t))
                .transpose()?
                .unwrap_or_default(),
            certificates_file: env("DBSHIFT_AWS_CERTIFICATES").map(PathBuf::from),
            proxies: match env("DBSHIFT_AWS_PROXY") {
                None => BTreeMap::new(),
                Some(text) => {
                    let token = env("DBSHIFT_PROXY_TOKEN").ok_or_else(|| {
                        Error::BadInput(
                            "DBSHIFT_AWS_PROXY needs the proxies' admin token in \
                             DBSHIFT_PROXY_TOKEN"
                                .into(),
                        )
                    })?;
                    let mut map = parse_proxy_map(&text, &token)?;
                    if let Some(ca) = env("DBSHIFT_AWS_PROXY_ADMIN_CA") {
                        set_proxy_admin_ca(&mut map, Path::new(&ca))?;
                    }
                    map
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_map() {
        let m = parse_endpoint_map("db-1=127.0.0.1:3307, db-2=bastion:13306").unwrap();
        assert_eq!(m["db-1"].port, 3307);
        assert_eq!(m["db-2"].host, "bastion");
        assert!(parse_endpoint_map("db-1=127.0.0.1").is_err());
        assert!(parse_endpoint_map("=h:1").is_err());
        assert!(parse_endpoint_map("").unwrap().is_empty());
    }

    #[test]
    fn proxy_map() {
        let m = parse_proxy_map("orders=10.0.0.5:3306/127.0.0.1:7070", "t").unwrap();
        assert_eq!(m["orders"][0].listen.port, 3306);
        assert_eq!(m["orders"][0].admin.host, "127.0.0.1");
        assert!(format!("{:?}", m["orders"]).contains("***"));
        let two = parse_proxy_map(
            "orders=10.0.0.5:3306/127.0.0.1:7070, orders=10.0.0.6:3306/127.0.0.1:7071",
            "t",
        )
        .unwrap();
        assert_eq!(two["orders"].len(), 2);
        assert_eq!(two["orders"][1].admin.port, 7071);
        assert!(parse_proxy_map("orders=10.0.0.5:3306", "t").is_err());
        assert!(parse_proxy_map("orders=h:x/h:1", "t").is_err());
        assert_eq!(two["orders"][0].admin_ca, None);
    }

    #[test]
    fn proxy_admin_ca() {
        let mut m = parse_proxy_map(
            "orders=10.0.0.5:3306/10.0.0.5:7070, orders=10.0.0.6:3306/10.0.0.6:7070",
            "t",
        )
        .unwrap();
        let e = set_proxy_admin_ca(&mut m, Path::new("/nonexistent/ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let ca = std::env::current_exe().unwrap();
        set_proxy_admin_ca(&mut m, &ca).unwrap();
        assert!(m["orders"]
            .iter()
            .all(|p| p.admin_ca.as_deref() == Some(&*ca)));
    }
}
