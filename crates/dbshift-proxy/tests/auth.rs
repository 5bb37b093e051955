//! Authentication as the server decides it (issue 16, items 1 to 3), each case run once
//! directly against the server and once through the proxy, the two required to agree:
//! - an ed25519 account logs in with the `mariadb` client (the proxy verifies the signature with
//!   the stored public key and signs the server's nonce with the password from its secrets
//!   file); a wrong password is refused with the same code; without the secret the proxy
//!   refuses the login naming the plugin and the secrets file;
//! - two rows of one user at different hosts with different passwords: each client address
//!   gets its own row's password (a client from 127.0.0.2 through a hand-written client bound
//!   there; the proxy used to accept a password of any row);
//! - an anonymous account: a name no account has logs in as `''@'%'`;
//! - COM_CHANGE_USER (mysql_async's `change_user`): the new user, its schema, a reset
//!   session; a refused change keeps the old user (and resets the session, as the server
//!   does);
//! - caching_sha2_password from the client (`mariadb --default-auth=caching_sha2_password`,
//!   and a hand-written client that answers with caching_sha2_password only, which gets the
//!   fast path's success through the proxy);
//! - max_user_connections (the server's 1226) and an expired password (the server's sandbox,
//!   1820 for anything but SET), relayed from the backend leg opened as the user;
//! - caching_sha2_password's RSA exchange towards a server, checked by decrypting with
//!   `openssl` (no MySQL 8 server here).
//!
//! Run with `cargo test -p dbshift-proxy --test auth` (needs `mariadbd`, the `mariadb` client
//! and `openssl`; `make test` installs them). One lab (a writer and a replica) for the whole
//! binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use dbshift_db::server::TlsOptions;
use dbshift_db::ConnectOptions;
use dbshift_provider::local::Lab;
use dbshift_proxy::protocol::{cap, handshake_response_payload, parse_err, parse_server_handshake};
use dbshift_proxy::ProxyHandle;
use dbshift_testkit::TestLab;
use mysql_async::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

mod common;

use common::{proxy_config, writer_port};

async fn lab() -> &'static Lab {
    static LAB: OnceCell<TestLab> = OnceCell::const_new();
    LAB.get_or_init(|| TestLab::start(1, 1)).await.lab()
}

async fn on_writer(lab: &Lab, sql: &str) {
    let mut s = lab
        .connect_admin(&lab.state().clusters[0].writer)
        .await
        .unwrap();
    s.exec_sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    s.close().await;
}

/// auth_ed25519 on every server, once.
async fn ed25519_installed(lab: &Lab) {
    static DONE: OnceCell<()> = OnceCell::const_new();
    DONE.get_or_init(|| async {
        let ids: Vec<String> = lab.state().instances.iter().map(|i| i.id.clone()).collect();
        for id in ids {
            let mut s = lab.connect_admin(&id).await.unwrap();
            let n = s
                .query_scalar(
                    "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'",
                )
                .await
                .unwrap();
            if n.as_deref() == Some("0") {
                s.exec_sql("INSTALL SONAME 'auth_ed25519'").await.unwrap();
            }
            s.close().await;
        }
    })
    .await;
}

/// A secrets file (mode 0600) in the lab's directory.
fn secrets_file(lab: &Lab, name: &str, lines: &[(&str, &str)]) -> PathBuf {
    let path = lab.dir().join(format!("proxy-secrets-{name}.toml"));
    let text: String = lines
        .iter()
        .map(|(u, p)| format!("{u:?} = {p:?}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

async fn proxy_with(lab: &Lab, secrets: Option<PathBuf>) -> ProxyHandle {
    let mut cfg = proxy_config(lab);
    cfg.secrets_file = secrets;
    dbshift_proxy::start(cfg).await.expect("the proxy starts")
}

fn opts(lab: &Lab, port: u16, user: &str, password: &str, db: Option<&str>) -> mysql_async::Opts {
    let mut o = ConnectOptions::new("127.0.0.1", port, user)
        .password(password)
        .tls(TlsOptions {
            ca_path: lab.ca_bundle(),
            verify_identity: true,
        });
    if let Some(db) = db {
        o = o.database(db);
    }
    o.to_opts()
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// What the `mariadb` client printed (stdout) or the error code it reported.
async fn mariadb_cli(
    lab: &Lab,
    port: u16,
    user: &str,
    password: &str,
    extra: &[&str],
    sql: &str,
) -> Result<String, String> {
    let out = tokio::process::Command::new("mariadb")
        .args(["--no-defaults", "--protocol=tcp", "-h127.0.0.1", "-N", "-B"])
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .arg(format!("--ssl-ca={}", lab.ca_bundle().display()))
        .args(extra)
        .args(["-e", sql])
        .env("MYSQL_PWD", password)
        .output()
        .await
        .expect("the mariadb client runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// "ERROR 1045 (28000) ..." -> "1045".
fn cli_code(stderr: &str) -> &str {
    stderr
        .strip_prefix("ERROR ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or(stderr)
}

/// Both ways: directly (the server's port) and through the proxy.
fn both(lab: &Lab, proxy: &ProxyHandle) -> [(&'static str, u16); 2] {
    [
        ("directly", writer_port(lab)),
        ("through the proxy", proxy.local_addr().port()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ed25519_account_logs_in_and_a_wrong_password_is_refused_alike() {
    let lab = lab().await;
    ed25519_installed(lab).await;
    on_writer(
        lab,
        "CREATE OR REPLACE USER 'ed_user'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pw-1'); \
         GRANT SELECT ON app.* TO 'ed_user'@'%'",
    )
    .await;
    let secrets = secrets_file(lab, "ed", &[("ed_user", "ed-pw-1")]);
    let proxy = proxy_with(lab, Some(secrets)).await;
    for (how, port) in both(lab, &proxy) {
        let who = mariadb_cli(
            lab,
            port,
            "ed_user",
            "ed-pw-1",
            &[],
            "SELECT CURRENT_USER()",
        )
        .await
        .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(who, "ed_user@%", "{how}");
        let e = mariadb_cli(lab, port, "ed_user", "wrong", &[], "SELECT 1")
            .await
            .expect_err("a wrong password is refused");
        assert_eq!(cli_code(&e), "1045", "{how}: {e}");
    }
    proxy.shutdown().await;
    // Without the password the proxy cannot sign for the server: refused, saying why.
    let proxy = proxy_with(lab, None).await;
    let e = mariadb_cli(
        lab,
        proxy.local_addr().port(),
        "ed_user",
        "ed-pw-1",
        &[],
        "SELECT 1",
    )
    .await
    .expect_err("refused without the secret");
    assert_eq!(cli_code(&e), "1251", "{e}");
    assert!(e.contains("ed25519") && e.contains("secrets file"), "{e}");
    proxy.shutdown().await;
}

/// A minimal client (mysql_native_password or caching_sha2_password, no TLS) bound to
/// `local`: mysql_async and the `mariadb` client cannot choose their source address. Returns
/// the plugin packets seen (AuthSwitch/AuthMoreData first bytes) and the final OK or ERR code.
async fn raw_login(
    local: &str,
    server: SocketAddr,
    user: &str,
    password: &str,
    plugin: &str,
) -> (Vec<Vec<u8>>, Result<(), u16>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let mut tcp = sock.connect(server).await.unwrap();
    let (_, greeting) = read_packet(&mut tcp).await;
    let hs = parse_server_handshake(&greeting).unwrap();
    let answer = |plugin: &str, nonce: &[u8]| -> Vec<u8> {
        let nonce = &nonce[..nonce.len().min(20)];
        match plugin {
            "caching_sha2_password" => {
                mysql_common::scramble::scramble_sha256(nonce, password.as_bytes())
                    .map(|a| a.to_vec())
                    .unwrap_or_default()
            }
            _ => mysql_common::scramble::scramble_native(nonce, password.as_bytes())
                .map(|a| a.to_vec())
                .unwrap_or_default(),
        }
    };
    let caps = cap::PROTOCOL_41
        | cap::SECURE_CONNECTION
        | cap::PLUGIN_AUTH
        | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA
        | cap::LONG_PASSWORD;
    let payload = handshake_response_payload(
        caps,
        0,
        1 << 24,
        45,
        user,
        &answer(plugin, &hs.scramble),
        None,
        None,
        plugin,
    );
    write_packet(&mut tcp, 1, &payload).await;
    let mut seen = Vec::new();
    loop {
        let (seq, p) = read_packet(&mut tcp).await;
        match <[u8]>::first(&p) {
            Some(0x00) => return (seen, Ok(())),
            Some(0xFF) => return (seen, Err(parse_err(&p).code)),
            Some(0xFE) => {
                seen.push(p.clone());
                let mut pos = 1;
                let name = dbshift_proxy::protocol::nul_str(&p, &mut pos).unwrap_or(&[]);
                let data = &p[pos..];
                let data = data.strip_suffix(&[0]).unwrap_or(data);
                let a = answer(&String::from_utf8_lossy(name), data);
                write_packet(&mut tcp, seq.wrapping_add(1), &a).await;
            }
            Some(0x01) => seen.push(p.clone()),
            _ => panic!("unexpected packet {p:?}"),
        }
    }
}

async fn read_packet(tcp: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 4];
    tcp.read_exact(&mut h).await.unwrap();
    let len = h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16;
    let mut p = vec![0u8; len];
    tcp.read_exact(&mut p).await.unwrap();
    (h[3], p)
}

async fn write_packet(tcp: &mut tokio::net::TcpStream, seq: u8, payload: &[u8]) {
    let mut out = Vec::new();
    dbshift_proxy::protocol::frame(&mut out, seq, payload);
    tcp.write_all(&out).await.unwrap();
}

/// One user, two hosts, two passwords: the row of the client's own address decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_address_gets_its_own_rows_password() {
    let lab = lab().await;
    on_writer(
        lab,
        "CREATE OR REPLACE USER 'hp'@'127.0.0.2' IDENTIFIED BY 'pw-two'; \
         CREATE OR REPLACE USER 'hp'@'127.0.0.1' IDENTIFIED BY 'pw-one'",
    )
    .await;
    let proxy = proxy_with(lab, None).await;
    for (how, port) in both(lab, &proxy) {
        let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // From 127.0.0.2 the password is pw-two's row's: pw-one is another row's.
        let (_, r) = raw_login("127.0.0.2", server, "hp", "pw-one", "mysql_native_password").await;
        assert_eq!(
            r,
            Err(1045),
            "{how}: from 127.0.0.2 with the other row's password"
        );
        // From 127.0.0.1, pw-one logs in and pw-two does not.
        let (_, r) = raw_login("127.0.0.1", server, "hp", "pw-one", "mysql_native_password").await;
        assert_eq!(r, Ok(()), "{how}: from 127.0.0.1 with its row's password");
        let (_, r) = raw_login("127.0.0.1", server, "hp", "pw-two", "mysql_native_password").await;
        assert_eq!(
            r,
            Err(1045),
            "{how}: from 127.0.0.1 with the other row's password"
        );
    }
    proxy.shutdown().await;
}

/// A name no account has logs in as the anonymous account, as the server lets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_logs_in_as_the_anonymous_account() {
    let lab = lab().await;
    on_writer(
        lab,
        "CREATE OR REPLACE USER ''@'%' IDENTIFIED BY 'anon-pw'; GRANT SELECT ON app.* TO ''@'%'",
    )
    .await;
    let proxy = proxy_with(lab, None).await;
    for (how, port) in both(lab, &proxy) {
        let mut c = mysql_async::Conn::new(opts(lab, port, "stranger", "anon-pw", None))
            .await
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        let who: String = c
            .query_first("SELECT CURRENT_USER()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(who, "@%", "{how}");
        c.disconnect().await.unwrap();
        let e = mysql_async::Conn::new(opts(lab, port, "stranger", "wrong", None))
            .await
            .expect_err("a wrong password is refused");
        assert_eq!(server_code(&e), Some(1045), "{how}: {e}");
    }
    proxy.shutdown().await;
    on_writer(lab, "DROP USER ''@'%'").await;
}

/// COM_CHANGE_USER: the new user with its schema and a reset session; a refused change keeps
/// the old user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_moves_the_session_to_the_new_user() {
    let lab = lab().await;
    on_writer(
        lab,
        "CREATE OR REPLACE USER 'cu_a'@'127.0.0.1' IDENTIFIED BY 'cu-a-pw'; \
         GRANT ALL ON app.* TO 'cu_a'@'127.0.0.1'; \
         CREATE OR REPLACE USER 'cu_b'@'127.0.0.1' IDENTIFIED BY 'cu-b-pw'; \
         GRANT ALL ON dbshift.* TO 'cu_b'@'127.0.0.1'",
    )
    .await;
    let proxy = proxy_with(lab, None).await;
    for (how, port) in both(lab, &proxy) {
        let mut c = mysql_async::Conn::new(opts(lab, port, "cu_a", "cu-a-pw", Some("app")))
            .await
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        c.query_drop("SET @kept = 1, SESSION sql_mode = 'ANSI_QUOTES'")
            .await
            .unwrap();
        c.query_drop("CREATE TEMPORARY TABLE t_cu (id INT)")
            .await
            .unwrap();
        c.change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("cu_b".into()))
                .with_pass(Some("cu-b-pw".into()))
                .with_db_name(Some("dbshift".into())),
        )
        .await
        .unwrap_or_else(|e| panic!("{how}: change_user: {e}"));
        let row: (String, Option<String>, Option<i64>, String) = c
            .query_first("SELECT CURRENT_USER(), DATABASE(), @kept, @@SESSION.sql_mode")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.0, "cu_b@127.0.0.1", "{how}");
        assert_eq!(row.1.as_deref(), Some("dbshift"), "{how}");
        assert_eq!(row.2, None, "{how}: user variables are gone");
        assert_ne!(row.3, "ANSI_QUOTES", "{how}: session variables are reset");
        let e = c
            .query_drop("SELECT * FROM t_cu")
            .await
            .expect_err("the temporary table is gone");
        assert_eq!(server_code(&e), Some(1146), "{how}: {e}");
        if how == "through the proxy" {
            let users: Vec<String> = proxy
                .status()
                .sessions
                .iter()
                .map(|s| s.user.clone())
                .collect();
            assert_eq!(users, vec!["cu_b".to_string()], "the admin status follows");
        }
        // A refused change: the server's 1045, and the session goes on as cu_b.
        c.query_drop("SET @before_refusal = 2").await.unwrap();
        let e = c
            .change_user(
                mysql_async::ChangeUserOpts::default()
                    .with_user(Some("cu_a".into()))
                    .with_pass(Some("wrong".into())),
            )
            .await
            .expect_err("a wrong password is refused");
        assert_eq!(server_code(&e), Some(1045), "{how}: {e}");
        let row: (String, Option<String>, Option<i64>) = c
            .query_first("SELECT CURRENT_USER(), DATABASE(), @before_refusal")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.0, "cu_b@127.0.0.1", "{how}: the previous user is kept");
        assert_eq!(row.1.as_deref(), Some("dbshift"), "{how}");
        // The server resets the session before it checks the new user.
        assert_eq!(row.2, None, "{how}: the session was reset");
        c.disconnect().await.unwrap();
    }
    proxy.shutdown().await;
}

/// A client that answers with caching_sha2_password, for a user whose password the proxy has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caching_sha2_client_logs_in_with_the_secrets_file() {
    let lab = lab().await;
    on_writer(
        lab,
        "CREATE OR REPLACE USER 'sha2_user'@'127.0.0.1' IDENTIFIED BY 'sha2-pw'; \
         GRANT SELECT ON app.* TO 'sha2_user'@'127.0.0.1'",
    )
    .await;
    let secrets = secrets_file(lab, "sha2", &[("sha2_user", "sha2-pw")]);
    let proxy = proxy_with(lab, Some(secrets)).await;
    for (how, port) in both(lab, &proxy) {
        let sha2 = ["--default-auth=caching_sha2_password"];
        let who = mariadb_cli(
            lab,
            port,
            "sha2_user",
            "sha2-pw",
            &sha2,
            "SELECT CURRENT_USER()",
        )
        .await
        .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(who, "sha2_user@127.0.0.1", "{how}");
        let e = mariadb_cli(lab, port, "sha2_user", "wrong", &sha2, "SELECT 1")
            .await
            .expect_err("a wrong password is refused");
        assert_eq!(cli_code(&e), "1045", "{how}: {e}");
    }
    // Through the proxy the client's own plugin is used: the fast path's success (0x01 0x03),
    // no switch to mysql_native_password.
    let (seen, r) = raw_login(
        "127.0.0.1",
        proxy.local_addr(),
        "sha2_user",
        "sha2-pw",
        "caching_sha2_password",
    )
    .await;
    assert_eq!(r, Ok(()));
    assert_eq!(seen, vec![vec![0x01, 0x03]]);
    proxy.shutdown().await;
}

/// The backend leg is opened as the user: the server's own limits answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_user_connections_and_an_expired_password() {
    let lab = lab().await;
    on_writer(
        lab,
        "CREATE OR REPLACE USER 'one_conn'@'127.0.0.1' IDENTIFIED BY 'one-pw' \
           WITH MAX_USER_CONNECTIONS 1; \
         CREATE OR REPLACE USER 'expired'@'127.0.0.1' IDENTIFIED BY 'exp-pw' PASSWORD EXPIRE",
    )
    .await;
    let proxy = proxy_with(lab, None).await;
    for (how, port) in both(lab, &proxy) {
        let first = mysql_async::Conn::new(opts(lab, port, "one_conn", "one-pw", None))
            .await
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        let e = mysql_async::Conn::new(opts(lab, port, "one_conn", "one-pw", None))
            .await
            .expect_err("a second connection is refused");
        assert_eq!(server_code(&e), Some(1226), "{how}: {e}");
        first.disconnect().await.unwrap();
    }
    // The server's sandbox, where every statement but SET is refused with 1820 (mysql_async's
    // own first query meets it), directly and through the proxy alike.
    for (how, port) in both(lab, &proxy) {
        match mysql_async::Conn::new(opts(lab, port, "expired", "exp-pw", None)).await {
            Ok(mut c) => {
                let e = c.query_drop("SELECT 1").await.expect_err("sandboxed");
                assert_eq!(server_code(&e), Some(1820), "{how}: {e}");
                let _ = c.disconnect().await;
            }
            Err(e) => assert_eq!(server_code(&e), Some(1820), "{how}: {e}"),
        }
    }
    proxy.shutdown().await;
}

/// caching_sha2_password's full authentication without TLS: the password XOR the scramble,
/// RSA-OAEP encrypted with the server's key; `openssl` decrypts it back.
#[test]
fn caching_sha2_rsa_exchange_decrypts_to_the_password() {
    let dir = std::env::temp_dir().join(format!("dbshift-rsa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    let public = dir.join("public.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let k = key.to_str().unwrap();
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        k,
    ]);
    run(&[
        "pkey",
        "-in",
        k,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let scramble = b"0123456789abcdefghij";
    let pem = std::fs::read(&public).unwrap();
    let secret = dbshift_proxy::auth::SessionSecret::Password(dbshift_proxy::auth::Password::new(
        "rsa-pw".into(),
    ));
    // The server asks for the full authentication; without TLS the proxy asks for the key...
    let asked = dbshift_proxy::backend::sha2_more_data(&[0x04], false, &secret, scramble)
        .unwrap()
        .unwrap();
    assert_eq!(asked, vec![0x02]);
    // ...and over TLS sends the password itself.
    let clear = dbshift_proxy::backend::sha2_more_data(&[0x04], true, &secret, scramble)
        .unwrap()
        .unwrap();
    assert_eq!(clear, b"rsa-pw\0");
    let sealed = dbshift_proxy::backend::sha2_more_data(&pem, false, &secret, scramble)
        .unwrap()
        .unwrap();
    let sealed_path = dir.join("sealed");
    std::fs::write(&sealed_path, &sealed).unwrap();
    let opened = run(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        k,
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-in",
        sealed_path.to_str().unwrap(),
    ]);
    let expected: Vec<u8> = b"rsa-pw\0"
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ scramble[i % scramble.len()])
        .collect();
    assert_eq!(opened, expected);
    // A native hash alone cannot do the full authentication: a clear error, not a panic.
    assert!(dbshift_proxy::backend::sha2_more_data(b"garbage", false, &secret, scramble).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
