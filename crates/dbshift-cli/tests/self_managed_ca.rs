//! `ca-rotate --provider self-managed`: a CA rotation on servers dbshift did not start, with
//! the operator's own commands installing certificates and trust. A lab (a writer, two
//! replicas) is driven only through a fleet file from another directory: `[[ca]]` names the
//! lab's two CAs by their certificates alone, `install_certificate` issues a server
//! certificate with `openssl` from the CA's key (the operator's PKI: dbshift never sees a CA
//! key), `install_trust` copies the bundle dbshift writes into the servers' `ssl_ca`,
//! `read_trust` prints it, and `restart` stops and starts a server.
//!
//! First bad input, each refused with nothing changed: an unknown CA, dbshift's own
//! `tls.ca_file` without the target CA, an `install_certificate` that fails. Then a rotation
//! without restarts (`FLUSH LOCAL SSL`) to the new CA, checked on every server by a handshake
//! against the new CA alone, and one back in restart mode with the old trust dropped; rows
//! written before reach every replica after.
//!
//! Run: `cargo test -p dbshift-cli --test self_managed_ca` (needs MariaDB and openssl).
#![cfg(feature = "self-managed")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{json, text};
use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_testkit::TestLab;

const ADMIN_PW_VAR: &str = "DBSHIFT_TEST_ADMIN_PASSWORD";
const OLD: &str = "lab-ca-2024";
const NEW: &str = "lab-ca-2026";

struct Fixture {
    lab: TestLab,
    /// Writer first.
    ports: Vec<u16>,
    scripts: PathBuf,
    admin_password: String,
}

impl Fixture {
    fn ca_cert(&self, id: &str) -> PathBuf {
        let st = self.lab.lab().state();
        let rec = st.cas.iter().find(|c| c.id == id).unwrap();
        self.lab.dir().join(&rec.cert)
    }

    /// A fleet file in `dir`: dbshift's own `tls.ca_file` holds `own` (CA ids), `commands`
    /// are TOML lines for `[commands]`.
    fn fleet(&self, dir: &Path, own: &[&str], commands: &str) -> PathBuf {
        let st = self.lab.lab().state();
        let own_file = dir.join("own-ca.pem");
        let text: String = own
            .iter()
            .map(|id| std::fs::read_to_string(self.ca_cert(id)).unwrap())
            .collect();
        std::fs::write(&own_file, text).unwrap();
        std::fs::write(
            dir.join("replication.password"),
            format!("{}\n", st.users.replication.password),
        )
        .unwrap();
        let path = dir.join("fleet.toml");
        std::fs::write(
            &path,
            format!(
                "[credentials]\n\
                 admin = {{ user = {:?}, password_env = {ADMIN_PW_VAR:?} }}\n\
                 replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
                 [tls]\nca_file = \"own-ca.pem\"\nverify = \"full\"\n\
                 [[ca]]\nid = {OLD:?}\ncertificate = {:?}\n\
                 [[ca]]\nid = {NEW:?}\ncertificate = {:?}\n\
                 [commands]\n{commands}\ntimeout_seconds = 60\n\
                 [[cluster]]\nname = \"main\"\nseeds = [\"127.0.0.1:{}\"]\n",
                st.users.admin.user,
                st.users.replication.user,
                self.ca_cert(OLD).display().to_string(),
                self.ca_cert(NEW).display().to_string(),
                self.ports[1],
            ),
        )
        .unwrap();
        path
    }

    fn commands(&self) -> String {
        let s = self.scripts.display();
        format!(
            "install_certificate = \"sh {s}/install_cert.sh {{port}} {{ca}} {{ca_file}}\"\n\
             install_trust = \"sh {s}/install_trust.sh {{bundle}}\"\n\
             read_trust = \"cat {}\"\n\
             restart = \"sh {s}/restart.sh {{port}}\"",
            self.lab.lab().ca_bundle().display()
        )
    }

    async fn run(&self, dir: &Path, fleet: &Path, args: &[&str]) -> Output {
        common::fleet_run(dir, fleet, &[(ADMIN_PW_VAR, &self.admin_password)], args).await
    }

    /// Instance id -> CA, from `inventory -o json`.
    async fn cas(&self, dir: &Path, fleet: &Path) -> Vec<(String, String)> {
        let rows = json(&self.run(dir, fleet, &["inventory", "-o", "json"]).await);
        let mut out: Vec<(String, String)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["ca"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn all_on(&self, ca: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .ports
            .iter()
            .map(|p| (format!("127.0.0.1:{p}"), ca.to_string()))
            .collect();
        out.sort();
        out
    }

    /// A connection to `port` verifying its chain and name against `ca` alone.
    async fn connect_with(&self, port: u16, ca: &str) -> Result<Server, dbshift_db::Error> {
        let admin = &self.lab.lab().state().users.admin;
        let opts = ConnectOptions::new("127.0.0.1".to_string(), port, admin.user.clone())
            .password(admin.password.clone())
            .tls(TlsOptions {
                ca_path: self.ca_cert(ca),
                verify_identity: true,
            })
            .connect_timeout(Duration::from_secs(2));
        Server::connect(&opts).await
    }

    /// The CAs the servers' trust bundle holds, by subject CN as openssl prints them.
    fn trusted(&self) -> Vec<String> {
        let bundle = std::fs::read_to_string(self.lab.lab().ca_bundle()).unwrap();
        let mut out = Vec::new();
        for id in [OLD, NEW] {
            let pem = std::fs::read_to_string(self.ca_cert(id)).unwrap();
            if bundle.contains(pem.trim()) {
                out.push(id.to_string());
            }
        }
        out
    }
}

/// The operator's scripts: issue a certificate with openssl from the CA's key, install a
/// trust bundle, restart a server (stop by its pid file, start on its option file).
fn scripts(lab: &TestLab, dir: &Path) {
    let pick = common::lab_port_case(lab);
    let tls = lab.dir().join("tls").display().to_string();
    std::fs::write(
        dir.join("install_cert.sh"),
        format!(
            "set -e\n{pick}ca=$2; ca_file=$3; key={tls:?}/$ca.key\n\
             [ -f \"$key\" ] || {{ echo \"no key for CA $ca\" >&2; exit 3; }}\n\
             t=$(mktemp -d)\n\
             openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout \"$t/k\" -subj /CN=127.0.0.1 -out \"$t/csr\" 2>/dev/null\n\
             printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth,clientAuth\\n' > \"$t/ext\"\n\
             openssl x509 -req -in \"$t/csr\" -CA \"$ca_file\" -CAkey \"$key\" -CAcreateserial \
             -CAserial \"$t/srl\" -days 365 -extfile \"$t/ext\" -out \"$t/c\" 2>/dev/null\n\
             cp \"$t/k\" \"$d/tls/server.key.new\"; cp \"$t/c\" \"$d/tls/server.pem.new\"\n\
             mv \"$d/tls/server.key.new\" \"$d/tls/server.key\"\n\
             mv \"$d/tls/server.pem.new\" \"$d/tls/server.pem\"\n\
             rm -rf \"$t\"\n"
        ),
    )
    .unwrap();
    let trust = lab.lab().ca_bundle().display().to_string();
    std::fs::write(
        dir.join("install_trust.sh"),
        format!("set -e\ncp \"$1\" {trust:?}.new\nmv {trust:?}.new {trust:?}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("restart.sh"),
        format!(
            "{pick}pid=$(cat \"$d/mysqld.pid\" 2>/dev/null) && kill -TERM \"$pid\" 2>/dev/null\n\
             n=0; while [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done\n\
             user=; [ \"$(id -u)\" = 0 ] && user=--user=root\n\
             rm -f \"$d/mysqld.pid\"\n\
             setsid \"$bin\" --defaults-file=\"$d/my.cnf\" $user </dev/null >>\"$d/error.log\" 2>&1 &\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rotation_through_the_fleet_files_commands() {
    let lab = TestLab::start(1, 2).await;
    let st = lab.lab().state().clone();
    let cluster = &st.clusters[0];
    let mut ports = vec![st.instance(&cluster.writer).unwrap().port];
    ports.extend(
        st.instances
            .iter()
            .filter(|i| i.id != cluster.writer)
            .map(|i| i.port),
    );
    let scripts_dir = tempfile::tempdir().unwrap();
    scripts(&lab, scripts_dir.path());
    let f = Fixture {
        admin_password: st.users.admin.password.clone(),
        lab,
        ports,
        scripts: scripts_dir.path().to_path_buf(),
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let fleet = f.fleet(dir, &[OLD, NEW], &f.commands());
    assert_eq!(f.cas(dir, &fleet).await, f.all_on(OLD));
    let plan = f
        .run(dir, &fleet, &["ca-rotate", "--to", NEW, "--plan"])
        .await;
    assert!(plan.status.success(), "{}", text(&plan));

    // Bad input, nothing changed.
    let o = f
        .run(dir, &fleet, &["ca-rotate", "--to", "corp-ca", "--yes"])
        .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(NEW), "names the known CAs: {}", text(&o));
    let narrow = tempfile::tempdir().unwrap();
    let only_old = f.fleet(narrow.path(), &[OLD], &f.commands());
    let o = f
        .run(
            narrow.path(),
            &only_old,
            &["ca-rotate", "--to", NEW, "--yes"],
        )
        .await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("tls.ca_file"), "{}", text(&o));
    let failing = tempfile::tempdir().unwrap();
    let broken = f.fleet(
        failing.path(),
        &[OLD, NEW],
        &f.commands().replace(
            &format!("sh {}/install_cert.sh", f.scripts.display()),
            "echo no PKI here >&2; false",
        ),
    );
    let o = f
        .run(
            failing.path(),
            &broken,
            &["ca-rotate", "--to", NEW, "--yes"],
        )
        .await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("install_certificate") && text(&o).contains("no PKI here"),
        "names the command and its output: {}",
        text(&o)
    );
    assert_eq!(f.cas(dir, &fleet).await, f.all_on(OLD), "nothing moved");
    for &port in &f.ports {
        let s = f
            .connect_with(port, OLD)
            .await
            .expect("still the old chain");
        s.close().await;
    }

    // Rows written before the rotation reach every replica after it.
    let admin = &st.users.admin;
    let writer_opts = ConnectOptions::new("127.0.0.1".to_string(), f.ports[0], admin.user.clone())
        .password(admin.password.clone());
    let mut w = Server::connect(&writer_opts).await.unwrap();
    w.exec_sql("CREATE TABLE IF NOT EXISTS app.sm_ca (id INT PRIMARY KEY)")
        .await
        .unwrap();
    w.exec_sql("INSERT INTO app.sm_ca VALUES (1), (2), (3)")
        .await
        .unwrap();
    w.close().await;

    // Without restarts, to the new CA: the trust first (old + new), then each server.
    let o = f
        .run(dir, &fleet, &["ca-rotate", "--to", NEW, "--yes"])
        .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f.cas(dir, &fleet).await, f.all_on(NEW));
    assert_eq!(f.trusted(), vec![OLD, NEW]);
    for &port in &f.ports {
        let s = f.connect_with(port, NEW).await.expect("the new chain");
        s.close().await;
        assert!(
            f.connect_with(port, OLD).await.is_err(),
            "{port} no longer presents the old chain"
        );
    }

    // Back to the old CA by restarts, the new one dropped from the trust at the end.
    let o = f
        .run(
            dir,
            &fleet,
            &[
                "ca-rotate",
                "--to",
                OLD,
                "--mode",
                "restart",
                "--drop-old-trust",
                "--yes",
            ],
        )
        .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(f.cas(dir, &fleet).await, f.all_on(OLD));
    assert_eq!(f.trusted(), vec![OLD]);

    // The writer is still the writer and replication carries on over TLS.
    let mut w = Server::connect(&writer_opts).await.unwrap();
    w.exec_sql("INSERT INTO app.sm_ca VALUES (4)")
        .await
        .unwrap();
    w.close().await;
    for &port in &f.ports[1..] {
        let opts = ConnectOptions::new("127.0.0.1".to_string(), port, admin.user.clone())
            .password(admin.password.clone());
        let mut r = Server::connect(&opts).await.unwrap();
        let mut n = 0;
        for _ in 0..200 {
            n = r
                .query_scalar("SELECT COUNT(*) FROM app.sm_ca")
                .await
                .ok()
                .flatten()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if n == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(n, 4, "replica {port} has every row");
        r.close().await;
    }
}
