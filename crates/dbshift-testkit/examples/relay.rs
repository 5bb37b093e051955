//! The fault-injecting relay (`dbshift_testkit::Relay`) as a process, for the benchmarks:
//! `relay UPSTREAM_PORT` relays `127.0.0.1:<port it prints>` to `127.0.0.1:UPSTREAM_PORT`.
//! SIGUSR1 cuts the link (every connection, open or new, becomes a black hole), SIGUSR2 heals
//! it; SIGTERM or SIGINT end the relay.

use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() {
    let Some(port) = std::env::args().nth(1).and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: relay UPSTREAM_PORT");
        std::process::exit(2);
    };
    let relay = dbshift_testkit::Relay::start(([127, 0, 0, 1], port).into())
        .await
        .unwrap_or_else(|e| {
            eprintln!("relay: cannot listen: {e}");
            std::process::exit(1);
        });
    println!("{}", relay.addr().port());
    let signals = |kind| signal(kind).expect("signal handlers can be installed");
    let (mut cut, mut heal) = (
        signals(SignalKind::user_defined1()),
        signals(SignalKind::user_defined2()),
    );
    let (mut term, mut int) = (
        signals(SignalKind::terminate()),
        signals(SignalKind::interrupt()),
    );
    loop {
        tokio::select! {
            _ = cut.recv() => {
                relay.set_drop(true);
                eprintln!("relay: cut");
            }
            _ = heal.recv() => {
                relay.pass();
                eprintln!("relay: healed");
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    relay.stop();
}
