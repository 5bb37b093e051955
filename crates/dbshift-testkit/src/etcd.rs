//! A real etcd cluster for the shared state store's tests: three `etcd` processes (Debian's
//! `etcd-server`, installed by `scripts/deps.sh`) on free loopback ports, each with its data in
//! a temporary directory, started tied to the test process (`PR_SET_PDEATHSIG`) and stopped by
//! PID when the [`EtcdCluster`] is dropped, also while a panicking test unwinds.
//!
//! Kept cheap for a 2-core machine: a small backend quota, frequent snapshots of a tiny store,
//! and heartbeat and election timings for loopback (50 ms / 500 ms), so that a killed member's
//! loss and a lease's expiry are seen within a second or two. One member can be killed
//! (`kill -9`), stopped (SIGTERM), paused (SIGSTOP) and started again on its data for fault
//! tests.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a cluster may take to become healthy.
const START_LIMIT: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Three etcd members on loopback; see the module documentation.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn etcd_binary() -> PathBuf {
    for p in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("etcd is not installed: run scripts/deps.sh (Debian's etcd-server and etcd-client)");
}

impl EtcdCluster {
    /// Start three members and wait until every one is healthy.
    pub fn start() -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("dbshift-etcd-")
            .tempdir()
            .expect("a temporary directory");
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster { dir, members };
        for i in 0..3 {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(START_LIMIT);
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial = self.initial_cluster();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("the member's log file");
        let mut cmd = Command::new(etcd_binary());
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .arg("--listen-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client_port))
            .arg("--advertise-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client_port))
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer_port))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer_port))
            .arg("--initial-cluster")
            .arg(&initial)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg("dbshift-test")
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--quota-backend-bytes", &(64u64 << 20).to_string()])
            .args(["--snapshot-count", "1000"])
            .args(["--log-level", "warn", "--logger", "zap"])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file again"))
            .stderr(log);
        // SAFETY: prctl in the child before exec only asks the kernel to kill it when the
        // test process dies; it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        m.child = Some(cmd.spawn().expect("etcd starts"));
    }

    /// `host:port` of every member, for a client.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// `host:port` of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// `etcd://` URL of the members `which` with `prefix` (e.g. `/test`), for `--state`.
    pub fn url_of(&self, which: &[usize], prefix: &str) -> String {
        let hosts: Vec<String> = which.iter().map(|&i| self.endpoint(i)).collect();
        format!("etcd://{}{prefix}", hosts.join(","))
    }

    /// `etcd://` URL of every member with `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        self.url_of(&[0, 1, 2], prefix)
    }

    /// The PID of member `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        if let Some(pid) = self.pid(i) {
            // SAFETY: kill(2) on the PID of a child this harness started and has not reaped.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
    }

    /// `kill -9` member `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        self.signal(i, libc::SIGKILL);
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.wait();
        }
    }

    /// Stop member `i` with SIGTERM (etcd leaves cleanly), then reap it.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, libc::SIGTERM);
        if let Some(mut c) = self.members[i].child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze member `i` (SIGSTOP): it holds its connections but answers nothing.
    pub fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// Let a paused member go on (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    /// Start a killed or stopped member again on its data, and wait until it is healthy.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} still runs");
        self.spawn(i, "existing");
        self.wait_healthy(START_LIMIT);
    }

    /// `etcdctl` on `endpoints` with `args`; its output, or why it failed.
    pub fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> Result<String, String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--dial-timeout=1s", "--command-timeout=2s"])
            .args(args)
            .output()
            .map_err(|e| format!("etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "etcdctl {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Wait until every running member says it is healthy (it has a leader and answers a
    /// read through raft); panic with the members' logs after `limit`.
    pub fn wait_healthy(&self, limit: Duration) {
        let running: Vec<String> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .map(|i| self.endpoint(i))
            .collect();
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < limit {
            match self.etcdctl(&running, &["endpoint", "health"]) {
                Ok(_) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd not healthy after {limit:?}: {last}\n{}", self.logs());
    }

    /// The index of the member that leads now, as the running members report it.
    pub fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let Ok(out) = self.etcdctl(&[self.endpoint(i)], &["endpoint", "status", "-w", "json"])
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) else {
                continue;
            };
            let s = &v[0]["Status"];
            let (Some(leader), Some(me)) =
                (s["leader"].as_u64(), s["header"]["member_id"].as_u64())
            else {
                continue;
            };
            if leader == me {
                return Some(i);
            }
        }
        None
    }

    /// Every member's log, for a failure message.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                format!(
                    "--- {} ({}):\n{}",
                    m.name,
                    m.log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The directory the members keep their data and logs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // A paused member does not die of SIGKILL any less; resumed first all the same.
            self.resume(i);
            self.kill(i);
        }
    }
}
