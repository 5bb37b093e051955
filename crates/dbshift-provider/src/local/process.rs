//! `mariadbd` processes: finding the binary, a template datadir, the option file, starting a
//! server detached from dbshift, telling whether it runs, and stopping it by PID.
//!
//! A PID is only trusted after `/proc/PID/cmdline` shows our own option file, so that a PID
//! reused by another program is never signalled.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

/// Places where Debian and tarball installs put the server, after `$PATH`.
const SEARCH_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/local/mysql/bin",
    "/usr/bin",
];

pub(crate) const INSTALL_HINT: &str =
    "install it with `apt-get install -y mariadb-server mariadb-backup` \
                            (or pass --mariadbd PATH)";

/// Find `name` on `$PATH` or in the usual server directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SEARCH_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The server binary: the one given, or `mariadbd` found on this machine.
pub fn find_mariadbd(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(p) if p.is_file() => Ok(p.to_path_buf()),
        Some(p) => Err(Error::Missing(format!(
            "the server binary {} does not exist; {INSTALL_HINT}",
            p.display()
        ))),
        None => find_program("mariadbd").ok_or_else(|| {
            Error::Missing(format!(
                "mariadbd was not found on PATH or in /usr/sbin; {INSTALL_HINT}"
            ))
        }),
    }
}

/// `10.11.14-MariaDB-0+deb12u2` from `mariadbd --version`.
pub fn engine_version(mariadbd: &Path) -> Result<String> {
    let out = Command::new(mariadbd)
        .arg("--version")
        .output()
        .ctx(|| format!("running {} --version", mariadbd.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Missing(format!(
                "{} --version printed {:?}, not a MariaDB server version; {INSTALL_HINT}",
                mariadbd.display(),
                text.trim()
            ))
        })
}

/// The `mariadb-install-db` next to the server or on the path.
fn find_install_db(mariadbd: &Path) -> Result<PathBuf> {
    let beside = mariadbd.parent().map(|d| d.join("mariadb-install-db"));
    beside
        .filter(|p| p.is_file())
        .or_else(|| find_program("mariadb-install-db"))
        .or_else(|| find_program("mysql_install_db"))
        .ok_or_else(|| Error::Missing(format!("mariadb-install-db was not found; {INSTALL_HINT}")))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Memory settings small enough for a dozen servers on a laptop.
const SMALL_MEMORY: &str = "\
innodb_buffer_pool_size=16M
innodb_log_file_size=8M
innodb_log_buffer_size=4M
key_buffer_size=1M
aria_pagecache_buffer_size=8M
loose-performance_schema=OFF
table_open_cache=400
thread_cache_size=8
max_connections=300
";

/// Build a fresh datadir with the system tables and the lab's users, by `mariadb-install-db`
/// with `extra_sql` run after initialization.
pub fn install_template(mariadbd: &Path, template: &Path, extra_sql: &str) -> Result<()> {
    let install_db = find_install_db(mariadbd)?;
    if template.exists() {
        std::fs::remove_dir_all(template).ctx(|| format!("removing {}", template.display()))?;
    }
    std::fs::create_dir_all(template).ctx(|| format!("creating {}", template.display()))?;
    let cnf = template.join("install.cnf");
    // A private tmpdir: servers sharing /tmp can trip on each other's temporary files.
    let tmp = template.join("tmp");
    std::fs::create_dir_all(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    std::fs::write(
        &cnf,
        format!("[mysqld]\ntmpdir={}\n{SMALL_MEMORY}", tmp.display()),
    )
    .ctx(|| format!("writing {}", cnf.display()))?;
    let sql = template.join("users.sql");
    super::files::write_atomic(&sql, extra_sql.as_bytes(), 0o600)?;
    let data = template.join("data");
    let mut cmd = Command::new(&install_db);
    cmd.arg(format!("--defaults-file={}", cnf.display()))
        .arg(format!("--datadir={}", data.display()))
        .arg("--skip-test-db")
        .arg("--skip-name-resolve")
        .arg(format!("--extra-file={}", sql.display()))
        .stdin(Stdio::null());
    if let Some(basedir) = mariadbd.parent().and_then(Path::parent) {
        cmd.arg(format!("--basedir={}", basedir.display()));
    }
    if is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd
        .output()
        .ctx(|| format!("running {}", install_db.display()))?;
    // The SQL holds passwords: it must not outlive the install.
    let _ = std::fs::remove_file(&sql);
    if !out.status.success() {
        return Err(Error::Process {
            instance: "template".into(),
            message: format!(
                "{} failed ({}): {}",
                install_db.display(),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 15)
            ),
        });
    }
    Ok(())
}

/// Copy a directory tree (files and directories only, as a datadir holds).
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).ctx(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).ctx(|| format!("reading {}", from.display()))? {
        let entry = entry.ctx(|| format!("reading {}", from.display()))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .ctx(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .ctx(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Everything a server's option file says.
pub struct ServerConfig<'a> {
    pub dir: &'a Path,
    pub port: u16,
    pub server_id: u32,
    pub gtid_domain_id: u32,
    pub read_only: bool,
    pub ssl_ca: &'a Path,
    /// InnoDB buffer pool in MiB (the small-memory default when 16).
    pub buffer_pool_mb: u32,
}

/// Paths of an instance's files inside its directory.
pub struct InstancePaths {
    pub dir: PathBuf,
}

impl InstancePaths {
    pub fn new(dir: PathBuf) -> Self {
        InstancePaths { dir }
    }
    pub fn cnf(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("mysqld.pid")
    }
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    pub fn tls(&self) -> PathBuf {
        self.dir.join("tls")
    }
}

/// The option file of a lab server.
pub fn render_cnf(c: &ServerConfig) -> String {
    let p = InstancePaths::new(c.dir.to_path_buf());
    let tls = p.tls();
    format!(
        "# Written by dbshift lab; edits are lost when the lab is rebuilt.\n\
         [mysqld]\n\
         datadir={data}\n\
         port={port}\n\
         bind_address=127.0.0.1\n\
         socket={socket}\n\
         tmpdir={tmp}\n\
         pid_file={pid}\n\
         log_error={log}\n\
         skip_name_resolve=ON\n\
         server_id={server_id}\n\
         gtid_domain_id={domain}\n\
         gtid_strict_mode=ON\n\
         log_bin=binlog\n\
         relay_log=relay-bin\n\
         binlog_format=ROW\n\
         log_slave_updates=ON\n\
         sync_binlog=1\n\
         innodb_flush_log_at_trx_commit=1\n\
         report_host=127.0.0.1\n\
         report_port={port}\n\
         slave_net_timeout=4\n\
         read_only={ro}\n\
         ssl_ca={ca}\n\
         ssl_cert={cert}\n\
         ssl_key={key}\n\
         {memory}",
        data = p.data().display(),
        port = c.port,
        socket = p.socket().display(),
        tmp = p.tmp().display(),
        pid = p.pid_file().display(),
        log = p.error_log().display(),
        server_id = c.server_id,
        domain = c.gtid_domain_id,
        ro = if c.read_only { "ON" } else { "OFF" },
        ca = c.ssl_ca.display(),
        cert = tls.join("server.pem").display(),
        key = tls.join("server.key").display(),
        memory = SMALL_MEMORY.replace(
            "innodb_buffer_pool_size=16M",
            &format!("innodb_buffer_pool_size={}M", c.buffer_pool_mb)
        ),
    )
}

/// Start `mariadbd` on an instance's option file, detached (own process group, so a Ctrl-C
/// of dbshift does not reach it), and return its PID. The exit status is collected by a
/// thread so that a dead server never lingers as a zombie.
pub fn spawn_server(
    mariadbd: &Path,
    paths: &InstancePaths,
    die_with_parent: bool,
    extra_args: &[&str],
) -> Result<u32> {
    let _ = std::fs::remove_file(paths.pid_file());
    let mut cmd = Command::new(mariadbd);
    cmd.arg(format!("--defaults-file={}", paths.cnf().display()));
    cmd.args(extra_args);
    if is_root() {
        cmd.arg("--user=root");
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.error_log())
        .ctx(|| format!("opening {}", paths.error_log().display()))?;
    let log2 = log
        .try_clone()
        .ctx(|| format!("opening {}", paths.error_log().display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    spawn_detached(cmd, die_with_parent).ctx(|| format!("starting {}", mariadbd.display()))
}

/// Start `cmd` detached (own process group, so a Ctrl-C of dbshift does not reach it; tied to
/// this process with `PR_SET_PDEATHSIG` when `die_with_parent`), its exit status collected by
/// a thread so that it never lingers as a zombie. Gives its PID.
pub fn spawn_detached(mut cmd: Command, die_with_parent: bool) -> std::io::Result<u32> {
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = if die_with_parent {
        spawner::spawn_tied(cmd)
    } else {
        cmd.spawn()
    }?;
    let pid = child.id();
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(pid)
}

/// Spawning servers that die with the process that started them (tests). The kernel ties
/// `PR_SET_PDEATHSIG` to the *thread* that forked, so one thread that lives as long as the
/// process does all such forks.
mod spawner {
    use std::process::{Child, Command};
    use std::sync::mpsc;
    use std::sync::{Mutex, OnceLock};

    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);

    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();

    pub fn spawn_tied(cmd: Command) -> std::io::Result<Child> {
        let tx = SPAWNER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name("dbshift-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        // SAFETY: prctl is async-signal-safe and touches no Rust state.
                        unsafe {
                            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                                Ok(())
                            });
                        }
                        let _ = reply.send(cmd.spawn());
                    }
                })
                .expect("a thread can be started");
            Mutex::new(tx)
        });
        let (reply_tx, reply_rx) = mpsc::channel();
        tx.lock()
            .expect("the spawner lock is never poisoned: nothing panics under it")
            .send((cmd, reply_tx))
            .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
        reply_rx
            .recv()
            .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
    }
}

/// The PID in an instance's pid file, if that process runs *our* server on *this* option file.
pub fn running_pid(paths: &InstancePaths) -> Option<u32> {
    let text = std::fs::read_to_string(paths.pid_file()).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    if pid_runs_cnf(pid, &paths.cnf()) {
        Some(pid)
    } else {
        None
    }
}

/// Whether `pid` exists and has not exited (a zombie has exited; it only waits to be reaped).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .map(|s| s.trim_start().starts_with('Z'))
                != Some(true)
        }
        Err(_) => false,
    }
}

/// Whether `pid` is stopped by a signal (state `T`, e.g. SIGSTOP).
pub fn pid_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('T'))
    })
}

/// Whether `pid` is alive and its command line names `cnf`.
pub fn pid_runs_cnf(pid: u32, cnf: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; it only waits to be reaped.
        if stat
            .rsplit(')')
            .next()
            .map(|s| s.trim_start().starts_with('Z'))
            == Some(true)
        {
            return false;
        }
    }
    let want = format!("--defaults-file={}", cnf.display());
    cmdline.split(|b| *b == 0).any(|arg| arg == want.as_bytes())
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a PID we verified runs our server.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Stop the server with SIGTERM (a clean shutdown), SIGKILL after `grace`.
pub fn stop_pid(pid: u32, cnf: &Path, grace: Duration) -> bool {
    if !pid_runs_cnf(pid, cnf) {
        return false;
    }
    // A stopped (SIGSTOP, hung) server cannot shut down cleanly, and SIGCONT would let it
    // acknowledge in-flight commits before it did: it is killed where it stands.
    let sig = if pid_stopped(pid) {
        libc::SIGKILL
    } else {
        libc::SIGTERM
    };
    signal(pid, sig);
    let started = Instant::now();
    // Alive by /proc/PID/stat, not by the command line: an exiting process loses its command
    // line before it closes its sockets, and the port must be free when this returns.
    while pid_alive(pid) {
        if started.elapsed() > grace {
            signal(pid, libc::SIGKILL);
            let killed = Instant::now();
            while pid_alive(pid) && killed.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// [`stop_pid`] off the async runtime: it waits for the process with a blocking loop, which
/// must hold up neither the other tasks nor the probes.
pub async fn stop_pid_async(pid: u32, cnf: &Path, grace: Duration) -> bool {
    let cnf = cnf.to_path_buf();
    tokio::task::spawn_blocking(move || stop_pid(pid, &cnf, grace))
        .await
        .unwrap_or(false)
}

/// [`port_held`] off the async runtime.
pub async fn port_held_async(port: u16, patience: Duration) -> bool {
    tokio::task::spawn_blocking(move || port_held(port, patience))
        .await
        .unwrap_or(true)
}

/// Every running server whose option file lies under `dir` (for `lab down` when the state
/// file is damaged or lost).
pub fn servers_under(dir: &Path) -> Vec<(u32, PathBuf)> {
    // A lab dir deleted by hand while its servers run still names them on their command lines.
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    // With the separator: the servers of /tmp/lab are not those of /tmp/lab6.
    let prefix = format!(
        "--defaults-file={}/",
        canon.display().to_string().trim_end_matches('/')
    );
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        for arg in cmdline.split(|b| *b == 0) {
            let arg = String::from_utf8_lossy(arg);
            if arg.starts_with(&prefix) {
                let cnf = PathBuf::from(arg.trim_start_matches("--defaults-file="));
                if pid_runs_cnf(pid, &cnf) {
                    found.push((pid, cnf));
                }
            }
        }
    }
    found
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last lines of an instance's error log, for messages about a server that would not start.
pub fn log_tail(paths: &InstancePaths, n: usize) -> String {
    std::fs::read_to_string(paths.error_log())
        .map(|t| tail(&t, n))
        .unwrap_or_default()
}

/// Whether something already listens on 127.0.0.1:port.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Whether the port stays in use for `patience`: a server that was just killed may still be
/// closing its sockets (its PID already looks gone).
pub fn port_held(port: u16, patience: Duration) -> bool {
    let started = Instant::now();
    while port_in_use(port) {
        if started.elapsed() >= patience {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The kernel's ephemeral port range (outgoing connections take their local port from it).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().filter_map(|w| w.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999))
}

/// `count` distinct free ports on 127.0.0.1, outside the kernel's ephemeral range: a port
/// taken from that range can be given to some outgoing connection while its server is down
/// (a restart), and the server could then not listen on it again.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    use rand::Rng;
    let (eph_low, eph_high) = ephemeral_range();
    // The widest stretch of unprivileged ports that is not ephemeral.
    let (low, high) = if eph_low.saturating_sub(10_000) >= 65535 - eph_high {
        (10_000u16, eph_low.saturating_sub(1))
    } else {
        (eph_high.saturating_add(1), 65535)
    };
    let mut rng = rand::rng();
    let mut held = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..(count * 200).max(1000) {
        if ports.len() == count {
            break;
        }
        let port = rng.random_range(low..=high.max(low));
        if ports.contains(&port) {
            continue;
        }
        // Held until all are chosen, so that two picks cannot be the same free port.
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
            ports.push(port);
        }
    }
    if ports.len() < count {
        return Err(Error::Missing(format!(
            "could not find {count} free ports on 127.0.0.1 between {low} and {high}; \
             free some, or pass --base-port"
        )));
    }
    Ok(ports)
}
