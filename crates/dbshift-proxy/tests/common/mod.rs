//! Helpers shared by the proxy's tests on real servers: a proxy in front of a lab's writer,
//! with a certificate of the lab's CA towards clients.
// Each test file uses a part of these.
#![allow(dead_code)]

use std::time::Duration;

pub mod raw;

use dbshift_provider::local::Lab;
use dbshift_proxy::{AuthSource, Backend, ClientTls, ProxyConfig, ProxyHandle};

pub fn writer_port(lab: &Lab) -> u16 {
    let w = &lab.state().clusters[0].writer;
    lab.state().instance(w).expect("the writer exists").port
}

/// A server certificate for the proxy, signed by the lab's CA (clients verify it).
pub fn proxy_cert(lab: &Lab) -> ClientTls {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = lab.dir().join(format!("proxy-tls-{n}"));
    let ca = lab
        .state()
        .ca(&lab.state().current_ca)
        .expect("the lab has its current CA");
    dbshift_provider::local::tls::issue_server_cert(lab.dir(), ca, "dbshift-proxy", &dir)
        .expect("a certificate can be issued");
    ClientTls {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

pub async fn start_proxy(lab: &Lab) -> ProxyHandle {
    dbshift_proxy::start(proxy_config(lab))
        .await
        .expect("the proxy starts")
}

/// The configuration [`start_proxy`] uses, for a test that changes something in it first.
pub fn proxy_config(lab: &Lab) -> ProxyConfig {
    let admin = &lab.state().users.admin;
    let mut cfg = ProxyConfig::new(
        "127.0.0.1:0".parse().expect("an address"),
        Backend::new("127.0.0.1", writer_port(lab)),
        AuthSource::Admin {
            user: admin.user.clone(),
            password: admin.password.clone(),
        },
    );
    cfg.backend_tls = Some(lab.ca_bundle());
    cfg.client_tls = Some(proxy_cert(lab));
    cfg.drain_bound = Duration::from_secs(3);
    cfg
}
