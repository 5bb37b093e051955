//! `dbshift proxy` in front of a cluster dbshift did not start: a lab (a writer, two replicas)
//! is driven only through a fleet file with `redirect = "proxy"`; `dbshift --provider
//! self-managed --fleet FILE proxy --target main` runs in front of it as the clients'
//! endpoint. A client session through the proxy, holding a user variable, lives through a
//! switchover there and back: no error, its variable kept, its writes landing on the new
//! writer each time. The proxy's admin API is served over HTTPS (`--admin-tls-cert`,
//! `--admin-tls-key`: a certificate the lab's CA issued for 127.0.0.1) and the switchover
//! verifies it against the fleet file's `admin_ca`. A proxy for an unknown cluster, an admin
//! API on a non-loopback address without TLS, and an admin certificate that does not load
//! are refused before anything starts.
//!
//! Run: `cargo test -p dbshift-cli --test self_managed_proxy` (needs MariaDB).
#![cfg(feature = "self-managed")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use common::text;
use dbshift_db::server::ConnectOptions;
use dbshift_db::Server;
use dbshift_testkit::TestLab;

const ADMIN_PW_VAR: &str = "DBSHIFT_TEST_ADMIN_PASSWORD";
const TOKEN: &str = "self-managed-proxy-token-0123456789";

/// The proxy process, killed when the test ends however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env(pw: &str) -> Vec<(&'static str, String)> {
    vec![
        (ADMIN_PW_VAR, pw.to_string()),
        ("DBSHIFT_PROXY_TOKEN", TOKEN.to_string()),
        ("DBSHIFT_TEST_PROXY_TOKEN", TOKEN.to_string()),
    ]
}

fn cmd(dir: &Path, fleet: &Path, pw: &str, args: &[&str]) -> std::process::Command {
    let env = env(pw);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::fleet_command(dir, fleet, &env, args)
}

async fn run(dir: &Path, fleet: &Path, pw: &str, args: &[&str]) -> Output {
    let env = env(pw);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    common::fleet_run(dir, fleet, &env, args).await
}

async fn server_id(s: &mut Server) -> String {
    s.query_scalar("SELECT @@server_id").await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_through_the_proxy_lives_through_switchovers_of_a_fleet_file_cluster() {
    let lab = TestLab::start(1, 2).await;
    let st = lab.lab().state().clone();
    let cluster = &st.clusters[0];
    let writer = st.instance(&cluster.writer).unwrap();
    let replica = st
        .instances
        .iter()
        .find(|i| i.id != cluster.writer)
        .unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (listen, admin) = (free(), free());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(
        dir.join("replication.password"),
        format!("{}\n", st.users.replication.password),
    )
    .unwrap();
    let fleet: PathBuf = dir.join("fleet.toml");
    std::fs::write(
        &fleet,
        format!(
            "[credentials]\n\
             admin = {{ user = {:?}, password_env = {ADMIN_PW_VAR:?} }}\n\
             replication = {{ user = {:?}, password_file = \"replication.password\" }}\n\
             [tls]\nca_file = {:?}\n\
             [[cluster]]\nname = \"main\"\nseeds = [\"127.0.0.1:{}\"]\nredirect = \"proxy\"\n\
             [[cluster.proxy]]\nlisten = \"127.0.0.1:{listen}\"\nadmin = \"127.0.0.1:{admin}\"\n\
             token_env = \"DBSHIFT_TEST_PROXY_TOKEN\"\nadmin_ca = {:?}\n",
            st.users.admin.user,
            st.users.replication.user,
            lab.lab().ca_bundle().display().to_string(),
            replica.port,
            lab.lab().ca_bundle().display().to_string(),
        ),
    )
    .unwrap();
    let pw = st.users.admin.password.clone();

    // Bad input: an unknown cluster, refused before anything listens.
    let o = run(
        dir,
        &fleet,
        &pw,
        &[
            "proxy",
            "--target",
            "nosuch",
            "--listen",
            &format!("127.0.0.1:{listen}"),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("main"),
        "names the known clusters: {}",
        text(&o)
    );

    // Bad input: an admin API on a non-loopback address in plain HTTP, refused with what to
    // add before anything listens.
    let o = run(
        dir,
        &fleet,
        &pw,
        &[
            "proxy",
            "--target",
            "main",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin",
            &format!("0.0.0.0:{admin}"),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--admin-tls-cert"),
        "says what to add: {}",
        text(&o)
    );

    // A certificate that does not load: refused before anything listens.
    let o = run(
        dir,
        &fleet,
        &pw,
        &[
            "proxy",
            "--target",
            "main",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--admin-tls-cert",
            "missing-cert.pem",
            "--admin-tls-key",
            "missing-key.pem",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("missing-cert.pem"), "{}", text(&o));

    // The admin API's certificate: one the lab's CA issued for 127.0.0.1 (a server's).
    let admin_tls = lab.lab().paths(&cluster.writer).tls();
    let _proxy = Running(
        cmd(
            dir,
            &fleet,
            &pw,
            &[
                "proxy",
                "--target",
                "main",
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "--admin-tls-cert",
                admin_tls.join("server.pem").to_str().unwrap(),
                "--admin-tls-key",
                admin_tls.join("server.key").to_str().unwrap(),
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    // The application's user (no SUPER): a privileged session is ended at the fence, as it
    // could write through read_only.
    let opts = ConnectOptions::new("127.0.0.1".to_string(), listen, st.users.app.user.clone())
        .password(st.users.app.password.clone())
        .connect_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let mut client = loop {
        match Server::connect(&opts).await {
            Ok(s) => break s,
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                panic!("the proxy never answered: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    client.exec_sql("SET @kept = 42").await.unwrap();
    client
        .exec_sql("CREATE TABLE IF NOT EXISTS app.sm_proxy (id INT PRIMARY KEY, at INT)")
        .await
        .unwrap();
    let writer_opts = ConnectOptions::new(
        "127.0.0.1".to_string(),
        writer.port,
        st.users.admin.user.clone(),
    )
    .password(pw.clone());
    let mut w = Server::connect(&writer_opts).await.unwrap();
    let first = server_id(&mut w).await;
    w.close().await;
    assert_eq!(server_id(&mut client).await, first);

    for (n, to) in [(1, replica), (2, writer)] {
        let id = format!("127.0.0.1:{}", to.port);
        let o = run(
            dir,
            &fleet,
            &pw,
            &["switchover", "main", "--to", &id, "--yes"],
        )
        .await;
        assert!(o.status.success(), "switchover to {id}: {}", text(&o));
        let direct = ConnectOptions::new(
            "127.0.0.1".to_string(),
            to.port,
            st.users.admin.user.clone(),
        )
        .password(pw.clone());
        let mut s = Server::connect(&direct).await.unwrap();
        let expected = server_id(&mut s).await;
        s.close().await;
        assert_eq!(
            server_id(&mut client).await,
            expected,
            "the session follows the writer to {id}"
        );
        assert_eq!(
            client
                .query_scalar("SELECT @kept")
                .await
                .unwrap()
                .as_deref(),
            Some("42"),
            "the session's variable is kept"
        );
        client
            .exec_sql(&format!(
                "INSERT INTO app.sm_proxy VALUES ({n}, @@server_id)"
            ))
            .await
            .expect("the session writes on the new writer");
    }
    client.close().await;
}
