//! Unit tests of `fleet_file.rs`.
use super::*;

fn env(var: &str) -> Option<String> {
    match var {
        "ADMIN_PW" => Some("s3cret-admin".into()),
        "REPL_PW" => Some("s3cret-repl".into()),
        "TOKEN" => Some("tok".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<FleetFile> {
    FleetFile::parse(text, Path::new("fleet.toml"), Path::new("/"), &env)
}

const MINIMAL: &str = r#"
[credentials]
admin = { user = "dbshift", password_env = "ADMIN_PW" }
replication = { user = "repl", password_env = "REPL_PW" }
[tls]
verify = "none"
[[cluster]]
name = "main"
seeds = ["10.0.0.2:3306"]
"#;

#[test]
fn a_minimal_file_takes_the_defaults() {
    let f = parse(MINIMAL).unwrap();
    let c = f.cluster("main").unwrap();
    assert_eq!(c.seeds, vec![parse_endpoint("10.0.0.2:3306").unwrap()]);
    assert_eq!(c.admin.password, "s3cret-admin");
    assert_eq!(c.redirect, RedirectKind::None);
    assert_eq!(c.commands.restart, None);
    assert_eq!(c.commands.timeout, DEFAULT_COMMAND_TIMEOUT);
    assert_eq!(c.id_of(&c.seeds[0]), "10.0.0.2:3306");
    let e = f.cluster("nope").unwrap_err().to_string();
    assert!(e.contains("known: main"), "{e}");
}

#[test]
fn an_unknown_key_is_named_with_its_line_and_cluster() {
    let e = parse(&format!("{MINIMAL}colour = \"blue\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 10, column 1 (in cluster \"main\"): unknown field `colour`"),
        "{e}"
    );
    let e = parse(&format!("{MINIMAL}[cluster.commands]\nrestrat = \"x\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("(in [cluster.commands] of cluster \"main\"): unknown field `restrat`"),
        "{e}"
    );
    let e = parse(&MINIMAL.replace("verify = \"none\"", "verfy = \"none\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("(in [tls]): unknown field `verfy`"), "{e}");
}

#[test]
fn cluster_settings_win_over_the_fleet_and_instances_are_seeds() {
    let f = parse(
        r#"
[credentials]
admin = { user = "dbshift", password_env = "ADMIN_PW" }
replication = { user = "repl", password_env = "REPL_PW" }
[tls]
verify = "none"
[commands]
restart = "ssh {host} systemctl restart mariadb"
timeout_seconds = 30
[[cluster]]
name = "a"
seeds = ["db1:3306"]
redirect = "proxy"
commands = { restart = "true {id}" }
credentials = { admin = { user = "other", password_env = "REPL_PW" } }
[[cluster.proxy]]
listen = "10.0.0.9:3306"
admin = "127.0.0.1:3308"
token_env = "TOKEN"
[[cluster.instance]]
id = "db2"
endpoint = "[fd00::2]:3307"
"#,
    )
    .unwrap();
    let c = f.cluster("a").unwrap();
    assert_eq!(c.admin.user, "other");
    assert_eq!(c.replication.user, "repl");
    assert_eq!(c.commands.restart.as_deref(), Some("true {id}"));
    assert_eq!(c.commands.timeout, Duration::from_secs(30));
    assert_eq!(c.seeds.len(), 2);
    assert_eq!(c.id_of(&parse_endpoint("fd00::2:3307").unwrap()), "db2");
    assert_eq!(c.proxies[0].token, "tok");
    assert_eq!(c.proxies[0].admin_ca, None);
}

#[test]
fn a_proxy_admin_api_off_loopback_needs_its_ca() {
    let dir = std::env::temp_dir().join(format!("dbshift-fleet-proxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("admin-ca.pem"), "PEM").unwrap();
    let with = |proxy: &str| {
        let text = format!(
            "{MINIMAL}redirect = \"proxy\"\n[[cluster.proxy]]\nlisten = \"10.0.0.9:3306\"\n\
             token_env = \"TOKEN\"\n{proxy}"
        );
        FleetFile::parse(&text, Path::new("fleet.toml"), &dir, &env)
    };
    let f = with("admin = \"10.0.0.9:3308\"\nadmin_ca = \"admin-ca.pem\"\n").unwrap();
    assert_eq!(
        f.clusters[0].proxies[0].admin_ca,
        Some(dir.join("admin-ca.pem"))
    );
    for loopback in ["127.0.0.1:3308", "localhost:3308", "[::1]:3308"] {
        let f = with(&format!("admin = {loopback:?}\n")).unwrap();
        assert_eq!(f.clusters[0].proxies[0].admin_ca, None, "{loopback}");
    }
    for far in ["10.0.0.9:3308", "proxy-1.internal:3308"] {
        let e = with(&format!("admin = {far:?}\n")).unwrap_err().to_string();
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(
            e.contains("admin_ca") && e.contains("--admin-tls-cert"),
            "{e}"
        );
    }
    let e = with("admin = \"10.0.0.9:3308\"\nadmin_ca = \"missing.pem\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.pem") && e.contains("not a readable file"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn redirects_need_their_table_or_command() {
    let hp = format!(
        "{MINIMAL}redirect = \"haproxy\"\n[cluster.haproxy]\n\
         sockets = [\"unix:/run/h.sock\", \"tcp:10.0.0.5:9999\"]\nbackend = \"db\"\n"
    );
    let c = parse(&hp).unwrap().clusters.remove(0);
    let h = c.haproxy.unwrap();
    assert_eq!(
        (h.sockets.len(), h.map, h.timeout),
        (2, ServerMap::Name, DEFAULT_HAPROXY_TIMEOUT)
    );
    let single = format!("{hp}servers = \"single\"\nserver = \"w\"\n");
    assert_eq!(
        parse(&single).unwrap().clusters[0]
            .haproxy
            .as_ref()
            .unwrap()
            .map,
        ServerMap::Single("w".into())
    );
    let cases: &[(String, &str)] = &[
        (
            format!("{MINIMAL}redirect = \"haproxy\"\n"),
            "needs [cluster.haproxy]",
        ),
        (
            hp.replace("redirect = \"haproxy\"\n", ""),
            "redirect is not \"haproxy\"",
        ),
        (
            hp.replace("unix:/run/h.sock", "/run/h.sock"),
            "unix:/path or tcp:host:port",
        ),
        (format!("{hp}servers = \"single\"\n"), "needs `server`"),
        (format!("{hp}colour = 1\n"), "unknown field `colour`"),
        (
            format!("{MINIMAL}redirect = \"command\"\n"),
            "`redirect` command template",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
    let cmd = format!(
        "{MINIMAL}redirect = \"command\"\ncommands = {{ redirect = \"dns {{writer_host}}\" }}\n"
    );
    let c = parse(&cmd).unwrap().clusters.remove(0);
    assert_eq!(
        (c.redirect, c.commands.redirect.as_deref()),
        (RedirectKind::Command, Some("dns {writer_host}"))
    );
}

#[test]
fn bad_files_are_refused_with_what_to_do_and_no_secret() {
    let cases: &[(&str, &str)] = &[
        ("password = \"hunter2\"", "password_env"),
        ("password = hunter2", "line "),
        ("colour = \"blue\"", "unknown field `colour`"),
    ];
    for (line, want) in cases {
        let text = MINIMAL.replace(
            "admin = { user = \"dbshift\", password_env = \"ADMIN_PW\" }",
            &format!("admin = {{ user = \"dbshift\", {line} }}"),
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(want), "{line}: {e}");
        assert!(!e.contains("hunter2"), "{line}: {e}");
    }
    let e = parse(&MINIMAL.replace("ADMIN_PW", "UNSET_PW"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"UNSET_PW\" is not set"), "{e}");
    let e = parse(&MINIMAL.replace("10.0.0.2:3306", "10.0.0.2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("host:port"), "{e}");
    let e = parse(&MINIMAL.replace("verify = \"none\"", "verify = \"full\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs ca_file"), "{e}");
    let e = parse(&format!("{MINIMAL}redirect = \"proxy\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[[cluster.proxy]]"), "{e}");
    let e = parse(&format!(
        "{MINIMAL}[[cluster]]\nname = \"main\"\nseeds = [\"h:1\"]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("named twice"), "{e}");
}

/// A CA certificate and a server certificate it issued, PEM, made with rcgen.
#[cfg(feature = "local")]
fn ca_and_leaf() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["db1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem())
}

#[cfg(feature = "local")]
#[test]
fn a_ca_is_one_ca_certificate_with_its_validity() {
    let dir = std::env::temp_dir().join(format!("dbshift-fleet-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, leaf) = ca_and_leaf();
    std::fs::write(dir.join("ca.pem"), &ca).unwrap();
    std::fs::write(dir.join("leaf.pem"), &leaf).unwrap();
    std::fs::write(dir.join("two.pem"), format!("{ca}{ca}")).unwrap();
    let with = |file: &str| {
        let text = format!("[[ca]]\nid = \"corp\"\ncertificate = {file:?}\n{MINIMAL}");
        FleetFile::parse(&text, Path::new("fleet.toml"), &dir, &env)
    };
    let f = with("ca.pem").unwrap();
    assert_eq!(f.cas.len(), 1);
    assert_eq!(f.cas[0].id, "corp");
    assert!(f.cas[0].not_before.contains('T'), "{:?}", f.cas[0]);
    assert!(f.cas[0].not_after > f.cas[0].not_before, "{:?}", f.cas[0]);
    let e = with("leaf.pem").unwrap_err().to_string();
    assert!(e.contains("not a CA certificate"), "{e}");
    let e = with("two.pem").unwrap_err().to_string();
    assert!(e.contains("holds 2 certificates"), "{e}");
    let e = with("missing.pem").unwrap_err().to_string();
    assert!(e.contains("missing.pem"), "{e}");
    let twice = format!(
        "[[ca]]\nid = \"corp\"\ncertificate = \"ca.pem\"\n\
         [[ca]]\nid = \"corp\"\ncertificate = \"ca.pem\"\n{MINIMAL}"
    );
    let e = FleetFile::parse(&twice, Path::new("fleet.toml"), &dir, &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("named twice"), "{e}");
    let extra = format!("[[ca]]\nid = \"corp\"\ncertificate = \"ca.pem\"\nkey = \"x\"\n{MINIMAL}");
    let e = FleetFile::parse(&extra, Path::new("fleet.toml"), &dir, &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
