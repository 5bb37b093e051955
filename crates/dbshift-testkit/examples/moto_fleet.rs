//! Seed the test fleet (10 Aurora MySQL clusters x 4 + 10 standalone instances) into a running
//! moto: `cargo run -p dbshift-testkit --example moto_fleet -- http://127.0.0.1:5000`.
//! With `--shim PORT` it also starts the testkit's shim (DescribeCertificates,
//! DescribeDBEngineVersions) in front of a moto of its own and keeps running until Ctrl-C.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--shim" => {
            let m = dbshift_testkit::moto::Moto::start(dbshift_testkit::moto::default_shim()).await;
            dbshift_testkit::moto::Fleet::seed(&m.moto_url()).await;
            println!(
                "moto {} behind the shim {}: 50 instances seeded; Ctrl-C to stop",
                m.moto_url(),
                m.url()
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        [url] => {
            dbshift_testkit::moto::Fleet::seed(url).await;
            println!("50 instances seeded into {url}");
        }
        _ => {
            eprintln!("usage: moto_fleet URL | moto_fleet --shim");
            std::process::exit(2);
        }
    }
}
