//! The lab's TLS material, made with rcgen: CAs with validity dates, and server certificates
//! (for `localhost` and `127.0.0.1`, so that hostname checks pass both for clients and for
//! replication's `MASTER_SSL_VERIFY_SERVER_CERT=1`). Keys are written mode 0600, every file
//! atomically, so a server never reads half a certificate. A server's new key and certificate
//! are both written in full before either is renamed over the old pair, and the lab reloads or
//! restarts the server only after both renames, so it never reads a key that does not match
//! its certificate.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

pub use super::files::write_atomic;
use super::files::write_synced;
use super::state::CaRecord;
use crate::error::{Error, IoContext, Result};

fn tls_err(e: rcgen::Error) -> Error {
    Error::Tls(e.to_string())
}

fn ca_params(id: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("dbshift {id}"));
    dn.push(DnType::OrganizationName, "dbshift lab");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Tls(format!("bad date {s:?} in the lab state: {e}")))
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC date always formats as RFC 3339")
}

/// Make a CA valid from `valid_from` for `valid_days`, write its files under `tls_dir`
/// (relative to `lab_dir`), and return its record.
pub fn create_ca(
    lab_dir: &Path,
    id: &str,
    valid_from: OffsetDateTime,
    valid_days: i64,
) -> Result<CaRecord> {
    create_ca_between(
        lab_dir,
        id,
        valid_from,
        valid_from + Duration::days(valid_days),
    )
}

/// Make a CA valid from `not_before` to `not_after`, write its files (`tls/<id>.pem`,
/// `tls/<id>.key`) under `lab_dir`, and return its record.
pub fn create_ca_between(
    lab_dir: &Path,
    id: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CaRecord> {
    let params = ca_params(id, not_before, not_after);
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = params.self_signed(&key).map_err(tls_err)?;
    let tls_dir = lab_dir.join("tls");
    std::fs::create_dir_all(&tls_dir).ctx(|| format!("creating {}", tls_dir.display()))?;
    let cert_rel = format!("tls/{id}.pem");
    let key_rel = format!("tls/{id}.key");
    write_atomic(
        &lab_dir.join(&key_rel),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&lab_dir.join(&cert_rel), cert.pem().as_bytes(), 0o644)?;
    Ok(CaRecord {
        id: id.to_string(),
        cert: cert_rel,
        key: key_rel,
        not_before: fmt_time(not_before),
        not_after: fmt_time(not_after),
    })
}

/// Issue a server certificate signed by `ca`; write `server.pem` and `server.key` into
/// `out_dir`. Valid for `localhost` and 127.0.0.1, for the CA's lifetime. Both new files are
/// written in full under temporary names first and only then renamed over the old pair (two
/// renames in a row), so a server reloaded or restarted after this returns reads a matching
/// key and certificate.
pub fn issue_server_cert(
    lab_dir: &Path,
    ca: &CaRecord,
    common_name: &str,
    out_dir: &Path,
) -> Result<()> {
    let ca_key_pem = std::fs::read_to_string(lab_dir.join(&ca.key))
        .ctx(|| format!("reading the key of {}", ca.id))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(tls_err)?;
    let ca_params = ca_params(
        &ca.id,
        parse_time(&ca.not_before)?,
        parse_time(&ca.not_after)?,
    );
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(tls_err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let mut dn = DistinguishedName::new();
    // MariaDB's older host checks read the CN; 127.0.0.1 is what replication connects to.
    dn.push(DnType::CommonName, "127.0.0.1");
    dn.push(DnType::OrganizationalUnitName, common_name);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = parse_time(&ca.not_before)?;
    params.not_after = parse_time(&ca.not_after)?;
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
    std::fs::create_dir_all(out_dir).ctx(|| format!("creating {}", out_dir.display()))?;
    let key_path = out_dir.join("server.key");
    let cert_path = out_dir.join("server.pem");
    let key_tmp = out_dir.join("server.key.new");
    let cert_tmp = out_dir.join("server.pem.new");
    write_synced(&key_tmp, key.serialize_pem().as_bytes(), 0o600)?;
    write_synced(&cert_tmp, cert.pem().as_bytes(), 0o644)?;
    std::fs::rename(&key_tmp, &key_path).ctx(|| format!("replacing {}", key_path.display()))?;
    std::fs::rename(&cert_tmp, &cert_path).ctx(|| format!("replacing {}", cert_path.display()))?;
    // The renames themselves are durable only once the directory is.
    std::fs::File::open(out_dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing {}", out_dir.display()))
}

/// Write the trust bundle (the PEMs of `cas`, concatenated) to `path`.
pub fn write_bundle(lab_dir: &Path, cas: &[&CaRecord], path: &Path) -> Result<()> {
    let mut bundle = String::new();
    for ca in cas {
        let pem = std::fs::read_to_string(lab_dir.join(&ca.cert))
            .ctx(|| format!("reading the certificate of {}", ca.id))?;
        bundle.push_str(&pem);
    }
    write_atomic(path, bundle.as_bytes(), 0o644)
}
