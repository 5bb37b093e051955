//! The redirects of `--provider self-managed` that move clients themselves, with real
//! processes: a lab (a writer and one replica) driven only through a fleet file, an HAProxy
//! started by the test in TCP mode in front of it (one server per instance, named by the
//! instance's id, only the writer enabled, an admin-level stats socket in the temp dir),
//! stopped by its PID at the end.
//!
//! `redirect = "haproxy"`: a switchover there and back under acknowledged writes through
//! HAProxy's frontend (0 lost, never two writers); after each, a new connection through
//! HAProxy lands on the new writer (`@@server_id`, and it is writable) and `show servers
//! state` has exactly one server taking connections; `--plan` lists the HAProxy commands.
//! `redirect = "command"`: a template that writes its arguments to a file, read after a
//! switchover. Bad input (a socket that does not exist, a backend or a server HAProxy does not
//! know) is refused before the run starts (exit 1, the HAProxy and the command named), and
//! the cluster and HAProxy are as they were.
//!
//! Run: `cargo test -p dbshift-cli --test self_managed_redirect` (needs MariaDB and haproxy;
//! `make test` installs them). About a minute.
#![cfg(feature = "self-managed")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::text;
use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_provider::selfmanaged::redirect::haproxy::{self, Socket};
use std::sync::Arc;

use dbshift_provider::selfmanaged::{FleetFile, SelfManaged};
use dbshift_provider::{Credential, Endpoint};
use dbshift_testkit::{Access, AckedWriter, InvariantChecker, Pinned, TestLab};

const ADMIN_PW_VAR: &str = "DBSHIFT_TEST_ADMIN_PASSWORD";

/// An HAProxy started by the test, stopped by its PID when dropped.
struct Haproxy {
    pid: i32,
    port: u16,
    socket: PathBuf,
}

impl Haproxy {
    /// HAProxy in TCP mode on a free port, backend `mysql` with a server per `(id, port)`,
    /// only the first enabled.
    fn start(dir: &Path, servers: &[(String, u16)]) -> Haproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let socket = dir.join("haproxy.sock");
        let mut cfg = format!(
            "global\n  stats socket {} level admin\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  \
             timeout server 1m\n\
             listen mysql\n  bind 127.0.0.1:{port}\n",
            socket.display()
        );
        for (i, (id, p)) in servers.iter().enumerate() {
            let disabled = if i == 0 { "" } else { " disabled" };
            cfg.push_str(&format!("  server {id} 127.0.0.1:{p}{disabled}\n"));
        }
        let (cfg_path, pid_path) = (dir.join("haproxy.cfg"), dir.join("haproxy.pid"));
        std::fs::write(&cfg_path, cfg).unwrap();
        let o = std::process::Command::new("haproxy")
            .arg("-D")
            .arg("-f")
            .arg(&cfg_path)
            .arg("-p")
            .arg(&pid_path)
            .output()
            .expect("haproxy is installed (make test installs it)");
        assert!(o.status.success(), "haproxy: {}", text(&o));
        let pid = std::fs::read_to_string(&pid_path)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Haproxy { pid, port, socket }
    }

    /// The servers taking connections, by name.
    async fn taking(&self) -> Vec<String> {
        let s = Socket::Unix(self.socket.clone());
        let answer = haproxy::send(&s, "show servers state mysql", Duration::from_secs(5))
            .await
            .unwrap();
        haproxy::parse_servers_state(&answer)
            .unwrap()
            .into_iter()
            .filter(|s| s.takes_connections())
            .map(|s| s.name)
            .collect()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // SAFETY: signalling the HAProxy this test started, by its PID.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
    }
}

struct Lab {
    ids: Vec<String>,
    ports: Vec<u16>,
    server_ids: Vec<String>,
    admin: Credential,
    replication: Credential,
    ca: PathBuf,
}

impl Lab {
    fn fleet_file(&self, dir: &Path, name: &str, redirect: &str) -> PathBuf {
        std::fs::write(
            dir.join("replication.password"),
            format!("{}\n", self.replication.password),
        )
        .unwrap();
        let mut text = format!(
            "[credentials]\n\
             admin = {{ user = {:?}, password_env = {ADMIN_PW_VAR:?} }}\n\
             replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
             [tls]\nca_file = {:?}\n\
             [[cluster]]\nname = \"main\"\n{redirect}\n",
            self.admin.user,
            self.replication.user,
            self.ca.display().to_string(),
        );
        for (id, port) in self.ids.iter().zip(&self.ports) {
            text.push_str(&format!(
                "[[cluster.instance]]\nid = {id:?}\nendpoint = \"127.0.0.1:{port}\"\n"
            ));
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![(ADMIN_PW_VAR.to_string(), self.admin.password.clone())]
    }

    /// `@@server_id` and `read_only` of a new connection to `port` (HAProxy's).
    async fn through(&self, port: u16) -> (String, bool) {
        let o = ConnectOptions::new("127.0.0.1".to_string(), port, self.admin.user.clone())
            .password(self.admin.password.clone())
            .connect_timeout(Duration::from_secs(2))
            .tls(TlsOptions {
                ca_path: self.ca.clone(),
                verify_identity: true,
            });
        let mut s = Server::connect(&o).await.unwrap();
        let id = s.variable("server_id").await.unwrap().unwrap();
        let ro = s.read_only().await.unwrap();
        s.close().await;
        (id, ro)
    }
}

async fn run(dir: &Path, fleet: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::fleet_run(dir, fleet, &env, args).await
}

async fn switch(dir: &Path, fleet: &Path, lab: &Lab, to: &str) {
    let o = run(
        dir,
        fleet,
        &lab.env(),
        &["switchover", "main", "--to", to, "--yes"],
    )
    .await;
    assert!(o.status.success(), "switchover to {to}: {}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_and_command_redirects_move_clients_to_the_new_writer() {
    let started = Instant::now();
    let test_lab = TestLab::start(1, 1).await;
    let st = test_lab.lab().state();
    let cluster = &st.clusters[0];
    let mut ids = vec![cluster.writer.clone()];
    ids.extend(
        st.instances
            .iter()
            .filter(|i| i.id != cluster.writer)
            .map(|i| i.id.clone()),
    );
    let ports: Vec<u16> = ids.iter().map(|id| st.instance(id).unwrap().port).collect();
    let mut lab = Lab {
        ids: ids.clone(),
        ports: ports.clone(),
        server_ids: Vec::new(),
        admin: st.users.admin.clone(),
        replication: st.users.replication.clone(),
        ca: test_lab.lab().ca_bundle(),
    };
    for p in &ports {
        lab.server_ids.push(lab.through(*p).await.0);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let servers: Vec<(String, u16)> = ids.iter().cloned().zip(ports.iter().copied()).collect();
    let hp = Haproxy::start(dir, &servers);
    let env = lab.env();
    let hp_table = |socket: &str, backend: &str| {
        format!(
            "redirect = \"haproxy\"\n[cluster.haproxy]\nsockets = [{socket:?}]\n\
             backend = {backend:?}\nservers = \"name\"\ntimeout_seconds = 2\n"
        )
    };
    let fleet = lab.fleet_file(
        dir,
        "fleet.toml",
        &hp_table(&format!("unix:{}", hp.socket.display()), "mysql"),
    );
    assert_eq!(hp.taking().await, [ids[0].clone()]);
    assert_eq!(
        lab.through(hp.port).await,
        (lab.server_ids[0].clone(), false)
    );

    // Bad input: refused before the run, nothing changed anywhere.
    let cases = [
        (
            lab.fleet_file(
                dir,
                "nosock.toml",
                &hp_table("unix:/nonexistent/h.sock", "mysql"),
            ),
            "unix:/nonexistent/h.sock",
        ),
        (
            lab.fleet_file(
                dir,
                "nobackend.toml",
                &hp_table(&format!("unix:{}", hp.socket.display()), "nope"),
            ),
            "show servers state nope",
        ),
    ];
    for (bad, want) in &cases {
        let o = run(
            dir,
            bad,
            &env,
            &["switchover", "main", "--to", &ids[1], "--yes"],
        )
        .await;
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains(want) && text(&o).contains("cluster main"),
            "{want}: {}",
            text(&o)
        );
    }
    // A server HAProxy does not know: the instance ids renamed in the file only.
    let renamed = lab.fleet_file(
        dir,
        "noserver.toml",
        &hp_table(&format!("unix:{}", hp.socket.display()), "mysql"),
    );
    let t = std::fs::read_to_string(&renamed)
        .unwrap()
        .replace(&format!("id = {:?}", ids[1]), "id = \"ghost\"");
    std::fs::write(&renamed, t).unwrap();
    let o = run(
        dir,
        &renamed,
        &env,
        &["switchover", "main", "--to", "ghost", "--yes"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no server named ghost") && text(&o).contains("HAProxy unix:"),
        "{}",
        text(&o)
    );
    assert_eq!(hp.taking().await, [ids[0].clone()]);
    assert_eq!(
        lab.through(hp.port).await,
        (lab.server_ids[0].clone(), false)
    );

    // The plan names every HAProxy command, in order.
    let o = run(
        dir,
        &fleet,
        &env,
        &["switchover", "main", "--to", &ids[1], "--plan"],
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let plan = text(&o);
    let (maint, shut, ready) = (
        plan.find(&format!("set server mysql/{} state maint", ids[0])),
        plan.find(&format!("shutdown sessions server mysql/{}", ids[0])),
        plan.find(&format!("set server mysql/{} state ready", ids[1])),
    );
    assert!(maint < shut && shut < ready && maint.is_some(), "{plan}");

    // There and back through HAProxy's runtime API, under acknowledged writes through
    // HAProxy's frontend (a client of HAProxy's), with the servers sampled for two writers.
    let text_fleet = std::fs::read_to_string(&fleet).unwrap();
    let lookup = |var: &str| env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
    let file = FleetFile::parse(&text_fleet, &fleet, dir, &lookup).unwrap();
    let through_haproxy = Arc::new(Pinned {
        inner: Arc::new(SelfManaged::new(file)),
        name: "main".into(),
        endpoint: Endpoint {
            host: "127.0.0.1".into(),
            port: hp.port,
        },
    });
    let access = Access {
        admin: lab.admin.clone(),
        app: st.users.app.clone(),
        ca: Some(lab.ca.clone()),
    };
    let targets = ids
        .iter()
        .zip(&ports)
        .map(|(id, p)| {
            (
                id.clone(),
                ConnectOptions::new("127.0.0.1".to_string(), *p, lab.admin.user.clone())
                    .password(lab.admin.password.clone())
                    .tls(TlsOptions {
                        ca_path: lab.ca.clone(),
                        verify_identity: true,
                    }),
            )
        })
        .collect();
    let checker = InvariantChecker::start(targets).await.unwrap();
    let writes = AckedWriter::start_with(access, through_haproxy, "main", "sm_haproxy").await;
    writes.wait_for_acked(20, Duration::from_secs(30)).await;
    for to in [1, 0] {
        switch(dir, &fleet, &lab, &ids[to]).await;
        writes.wait_for_acked(20, Duration::from_secs(30)).await;
        assert_eq!(
            hp.taking().await,
            [ids[to].clone()],
            "after the switch to {}",
            ids[to]
        );
        assert_eq!(
            lab.through(hp.port).await,
            (lab.server_ids[to].clone(), false),
            "a new connection through HAProxy after the switch to {}",
            ids[to]
        );
        let o = run(dir, &fleet, &env, &["resolve", "main"]).await;
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("127.0.0.1:{}", ports[to]),
            "{}",
            text(&o)
        );
    }

    let acked = writes.stop_and_audit_access().await;
    checker.stop().await.assert_never_two_writers();
    assert!(acked >= 60, "{acked} writes acknowledged through HAProxy");

    // The command redirect: a template that writes its arguments to a file.
    let out = dir.join("redirected.txt");
    let cmd = lab.fleet_file(
        dir,
        "command.toml",
        &format!(
            "redirect = \"command\"\n[cluster.commands]\nredirect = \"echo {{cluster}} \
             {{writer_id}} {{writer_host}} {{writer_port}} {{old_id}} > {}\"\n",
            out.display()
        ),
    );
    switch(dir, &cmd, &lab, &ids[1]).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        format!("main {} 127.0.0.1 {} {}", ids[1], ports[1], ids[0])
    );
    switch(dir, &cmd, &lab, &ids[0]).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        format!("main {} 127.0.0.1 {} {}", ids[0], ports[0], ids[1])
    );
    eprintln!(
        "self-managed redirects: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
