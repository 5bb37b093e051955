//! dbshift proxies in front of lab clusters: each a `dbshift proxy` process the lab starts
//! and stops as it does its servers, the cluster's stable client endpoint. A cluster may have
//! several (as behind a load balancer or DNS): the switchover core pauses, switches and resumes
//! them all.
//!
//! A proxy's files live in `<lab>/proxy-<cluster>/` (the first; the n-th in
//! `<lab>/proxy-<cluster>.<n>/`): `proxy.cnf` (what `dbshift proxy
//! --defaults-file=...` reads: cluster, listen and admin addresses, token file, TLS files),
//! `token` (the admin API's bearer token, mode 0600), `tls/` (a server certificate from the
//! lab's CA for clients), `proxy.log`, `proxy.pid`. The process is found again by its
//! `--defaults-file=` argument, as a server is, so `lab down` stops it whatever happened.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{self, InstancePaths};
use super::state;
pub use super::state::ProxyRecord;
use super::{endpoint, files, tls, Lab, STOP_GRACE};
use crate::error::{Error, IoContext, Result};
use crate::model::ProxyEndpoint;

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What `dbshift proxy --defaults-file=F` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    pub lab_dir: PathBuf,
    pub cluster: String,
    pub listen: String,
    pub admin: String,
    pub token_file: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

impl ProxyOptions {
    fn render(&self) -> String {
        format!(
            "# written by dbshift lab; read by `dbshift proxy --defaults-file=`\n\
             lab_dir={}\ncluster={}\nlisten={}\nadmin={}\ntoken_file={}\ntls_cert={}\ntls_key={}\n",
            self.lab_dir.display(),
            self.cluster,
            self.listen,
            self.admin,
            self.token_file.display(),
            self.tls_cert.display(),
            self.tls_key.display()
        )
    }

    /// Parse a proxy option file.
    pub fn parse(text: &str) -> Result<ProxyOptions> {
        let mut get = std::collections::BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                Error::BadInput(format!(
                    "proxy option file: `key=value` expected, found {line:?}"
                ))
            })?;
            get.insert(k.trim().to_string(), v.trim().to_string());
        }
        let mut need = |k: &str| {
            get.remove(k)
                .ok_or_else(|| Error::BadInput(format!("proxy option file: {k} is missing")))
        };
        Ok(ProxyOptions {
            lab_dir: need("lab_dir")?.into(),
            cluster: need("cluster")?,
            listen: need("listen")?,
            admin: need("admin")?,
            token_file: need("token_file")?.into(),
            tls_cert: need("tls_cert")?.into(),
            tls_key: need("tls_key")?.into(),
        })
    }

    /// Read a proxy option file.
    pub fn read(path: &Path) -> Result<ProxyOptions> {
        let text = std::fs::read_to_string(path).ctx(|| format!("reading {}", path.display()))?;
        ProxyOptions::parse(&text)
    }
}

/// The name of a cluster's `index`-th proxy (from 0): its directory and its process name.
fn proxy_name(cluster: &str, index: u32) -> String {
    if index == 0 {
        format!("proxy-{cluster}")
    } else {
        format!("proxy-{cluster}.{}", index + 1)
    }
}

/// The files of a proxy of `cluster`.
fn proxy_paths(dir: &Path, cluster: &str, index: u32) -> InstancePaths {
    InstancePaths::new(dir.join(proxy_name(cluster, index)))
}

fn cnf_of(dir: &Path, cluster: &str, index: u32) -> PathBuf {
    proxy_paths(dir, cluster, index).dir.join("proxy.cnf")
}

fn pid_of(dir: &Path, cluster: &str, index: u32) -> Option<u32> {
    let paths = proxy_paths(dir, cluster, index);
    let pid: u32 = std::fs::read_to_string(paths.dir.join("proxy.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    process::pid_runs_cnf(pid, &cnf_of(dir, cluster, index)).then_some(pid)
}

/// Most proxies a cluster may have in the lab.
pub const MAX_PROXIES: u32 = 8;

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

impl Lab {
    fn proxy_endpoint(&self, rec: &ProxyRecord) -> Result<ProxyEndpoint> {
        let token_file = proxy_paths(&self.dir, &rec.cluster, rec.index)
            .dir
            .join("token");
        let token = std::fs::read_to_string(&token_file)
            .ctx(|| format!("reading {}", token_file.display()))?
            .trim()
            .to_string();
        Ok(ProxyEndpoint {
            cluster: rec.cluster.clone(),
            listen: endpoint(rec.port),
            admin: endpoint(rec.admin_port),
            token,
            admin_ca: None,
        })
    }

    /// [`Lab::start_proxies`] off the async runtime (it waits for each proxy to accept).
    pub async fn start_proxies_off_runtime(
        &self,
        cluster: &str,
        count: u32,
        dbshift_exe: &Path,
    ) -> Result<Vec<ProxyEndpoint>> {
        let (lab, cluster, exe) = (self.clone(), cluster.to_string(), dbshift_exe.to_path_buf());
        super::blocking::run("lab proxy up", move || {
            lab.start_proxies(&cluster, count, &exe)
        })
        .await
    }

    /// [`Lab::stop_proxies`] off the async runtime (it waits for each proxy to exit).
    pub async fn stop_proxies_off_runtime(&self, cluster: &str) -> Result<usize> {
        let (lab, cluster) = (self.clone(), cluster.to_string());
        super::blocking::run("lab proxy down", move || lab.stop_proxies(&cluster)).await
    }

    /// Start (or find running) `count` dbshift proxies in front of `cluster`, each a
    /// `dbshift_exe proxy --defaults-file=...`. Returns once each accepts connections. Proxies
    /// past `count` that already run are left as they are.
    pub fn start_proxies(
        &self,
        cluster: &str,
        count: u32,
        dbshift_exe: &Path,
    ) -> Result<Vec<ProxyEndpoint>> {
        if count == 0 || count > MAX_PROXIES {
            return Err(Error::BadInput(format!(
                "a cluster has 1 to {MAX_PROXIES} proxies in the lab, not {count}"
            )));
        }
        (0..count)
            .map(|index| self.start_proxy(cluster, index, dbshift_exe))
            .collect()
    }

    /// Start (or find running) the `index`-th (from 0) dbshift proxy in front of `cluster`.
    fn start_proxy(&self, cluster: &str, index: u32, dbshift_exe: &Path) -> Result<ProxyEndpoint> {
        let rec = {
            let _lock = state::LabLock::acquire(&self.dir)?;
            let mut st = self.fresh()?;
            if st.cluster(cluster).is_none() {
                return Err(Error::Unknown {
                    kind: "cluster",
                    name: cluster.to_string(),
                    known: st
                        .clusters
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            match st
                .proxies
                .iter()
                .find(|p| p.cluster == cluster && p.index == index)
            {
                Some(r) => r.clone(),
                None => {
                    let ports = process::free_ports(2)?;
                    let r = ProxyRecord {
                        cluster: cluster.to_string(),
                        index,
                        port: ports[0],
                        admin_port: ports[1],
                    };
                    st.proxies.push(r.clone());
                    st.save(&self.dir)?;
                    r
                }
            }
        };
        if pid_of(&self.dir, cluster, index).is_some() && accepts(rec.port) {
            return self.proxy_endpoint(&rec);
        }
        let name = proxy_name(cluster, index);
        let paths = proxy_paths(&self.dir, cluster, index);
        std::fs::create_dir_all(&paths.dir).ctx(|| format!("creating {}", paths.dir.display()))?;
        let token_file = paths.dir.join("token");
        if !token_file.exists() {
            files::write_atomic(&token_file, super::password().as_bytes(), 0o600)?;
        }
        let st = self.fresh()?;
        let ca = st
            .cas
            .iter()
            .find(|c| c.id == st.current_ca)
            .ok_or_else(|| Error::Tls(format!("the lab CA {} is gone", st.current_ca)))?;
        let tls_dir = paths.dir.join("tls");
        tls::issue_server_cert(&self.dir, ca, &name, &tls_dir)?;
        let opts = ProxyOptions {
            lab_dir: self.dir.clone(),
            cluster: cluster.to_string(),
            listen: format!("127.0.0.1:{}", rec.port),
            admin: format!("127.0.0.1:{}", rec.admin_port),
            token_file,
            tls_cert: tls_dir.join("server.pem"),
            tls_key: tls_dir.join("server.key"),
        };
        let cnf = cnf_of(&self.dir, cluster, index);
        files::write_atomic(&cnf, opts.render().as_bytes(), 0o644)?;
        let log_path = paths.dir.join("proxy.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .ctx(|| format!("opening {}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .ctx(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(dbshift_exe);
        cmd.arg("--dir")
            .arg(&self.dir)
            .arg("proxy")
            .arg(format!("--defaults-file={}", cnf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .env_remove("DBSHIFT_CRASH_AT");
        let pid = process::spawn_detached(cmd, self.die_with_parent)
            .ctx(|| format!("starting {}", dbshift_exe.display()))?;
        files::write_atomic(
            &paths.dir.join("proxy.pid"),
            pid.to_string().as_bytes(),
            0o644,
        )?;
        let started = Instant::now();
        while !accepts(rec.port) {
            if !process::pid_alive(pid) {
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Error::Process {
                    instance: name.clone(),
                    message: format!(
                        "the proxy exited at start; {}: {}",
                        log_path.display(),
                        tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                    ),
                });
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("the proxy {name} of {cluster} to accept connections"),
                    after: START_TIMEOUT,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(cluster, proxy = %name, port = rec.port, pid, "proxy started");
        self.proxy_endpoint(&rec)
    }

    /// Stop the proxies of `cluster` (they stay in the state: `start_proxies` reuses their
    /// ports); how many were running.
    pub fn stop_proxies(&self, cluster: &str) -> Result<usize> {
        let st = self.fresh()?;
        Ok(st
            .proxies
            .iter()
            .filter(|p| p.cluster == cluster)
            .filter(|p| match pid_of(&self.dir, cluster, p.index) {
                Some(pid) => {
                    process::stop_pid(pid, &cnf_of(&self.dir, cluster, p.index), STOP_GRACE)
                }
                None => false,
            })
            .count())
    }

    /// The running proxies of `cluster`, first one first.
    pub fn running_proxies(&self, cluster: &str) -> Result<Vec<ProxyEndpoint>> {
        let st = self.fresh()?;
        let mut recs: Vec<&ProxyRecord> =
            st.proxies.iter().filter(|p| p.cluster == cluster).collect();
        recs.sort_by_key(|p| p.index);
        recs.into_iter()
            .filter(|p| pid_of(&self.dir, cluster, p.index).is_some())
            .map(|p| self.proxy_endpoint(p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_option_file_round_trips_and_names_what_is_missing() {
        let o = ProxyOptions {
            lab_dir: "/lab".into(),
            cluster: "lab-1".into(),
            listen: "127.0.0.1:3307".into(),
            admin: "127.0.0.1:3308".into(),
            token_file: "/lab/proxy-lab-1/token".into(),
            tls_cert: "/lab/proxy-lab-1/tls/server.pem".into(),
            tls_key: "/lab/proxy-lab-1/tls/server.key".into(),
        };
        assert_eq!(ProxyOptions::parse(&o.render()).unwrap(), o);
        let err = ProxyOptions::parse("cluster=lab-1\n").unwrap_err();
        assert!(err.to_string().contains("lab_dir is missing"), "{err}");
        assert!(ProxyOptions::parse("nonsense\n").is_err());
    }

    #[test]
    fn proxy_names_keep_the_first_as_it_was() {
        assert_eq!(proxy_name("lab-1", 0), "proxy-lab-1");
        assert_eq!(proxy_name("lab-1", 1), "proxy-lab-1.2");
        let old: ProxyRecord =
            serde_json::from_str(r#"{"cluster":"lab-1","port":1,"admin_port":2}"#).unwrap();
        assert_eq!(old.index, 0, "a lab written before several proxies");
    }
}
