//! The lab's TLS material, made with rcgen: CAs with validity dates, and server certificates
//! (for `localhost` and `127.0.0.1`, so that hostname checks pass both for clients and for
//! replication's `MASTER_SSL_VERIFY_SERVER_CERT=1`). Keys are written mode 0600, every file
//! atomically, so a server never reads half a certificate.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

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

fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Tls(format!("bad date {s:?} in the lab state: {e}")))
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC date always formats as RFC 3339")
}

/// Write a file atomically with the given mode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .ctx(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("replacing {}", path.display()))
}

/// Make a CA valid from `valid_from` for `valid_days`, write its files under `tls_dir`
/// (relative to `lab_dir`), and return its record.
pub fn create_ca(
    lab_dir: &Path,
    id: &str,
    valid_from: OffsetDateTime,
    valid_days: i64,
) -> Result<CaRecord> {
    let not_before = valid_from;
    let not_after = valid_from + Duration::days(valid_days);
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
/// `out_dir`. Valid for `localhost` and 127.0.0.1, for the CA's lifetime.
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
    write_atomic(
        &out_dir.join("server.key"),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&out_dir.join("server.pem"), cert.pem().as_bytes(), 0o644)?;
    Ok(())
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
