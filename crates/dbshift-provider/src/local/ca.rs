//! The lab's certificate authorities and the primitives of a CA rotation: which CAs exist,
//! which ones the trust bundle holds, putting a bundle in place on every trust point, and
//! moving one instance's server certificate to another CA. It acts on what it is asked to and
//! nothing more: the order of a rotation, and which instances to move, are a workflow's.
//!
//! A running server takes new TLS material with `FLUSH LOCAL SSL` (MariaDB 10.4+): it reloads
//! `ssl_ca`, `ssl_cert` and `ssl_key` for new connections, and existing ones keep theirs. Never
//! the plain `FLUSH SSL`: without `LOCAL` (or `NO_WRITE_TO_BINLOG`) a FLUSH is written to the
//! binary log. Checked on MariaDB 10.11.19 with `log_bin` on: after `FLUSH LOCAL SSL`
//! `@@gtid_binlog_pos` stays empty, after `FLUSH SSL` it is `0-7-1` and the binlog holds a
//! `Gtid` event and a `Query` event `FLUSH SSL`. Run on a replica, that is a transaction of
//! the replica's own server_id in the cluster's domain (an errant GTID that breaks a later
//! failover to it); run on a writer, it is replicated to every replica.

use std::path::{Path, PathBuf};

use super::state::{CaRecord, LabLock};
use super::{process, tls, Lab, START_TIMEOUT};
use crate::error::{Error, IoContext, Result};
use crate::model::{CaApply, CertificateAuthority};

/// The CA a new lab issues its server certificates from, and the only one its trust bundle
/// holds at first. It expires soon: the one to rotate away from.
pub const CURRENT_CA: &str = "lab-ca-2024";
/// The CA a new lab offers to rotate to.
pub const NEXT_CA: &str = "lab-ca-2026";

/// Every CA a new lab makes: id, not_before, not_after. Fixed, not derived from the day the
/// lab is built, so that runbooks, tests and benchmarks can name them.
const LAB_CAS: [(&str, &str, &str); 2] = [
    (CURRENT_CA, "2024-01-01T00:00:00Z", "2027-08-22T00:00:00Z"),
    (NEXT_CA, "2026-01-01T00:00:00Z", "2036-01-01T00:00:00Z"),
];

/// Reloads a server's TLS material without a binlog event (see the module doc).
const RELOAD_TLS: &str = "FLUSH LOCAL SSL";

/// Make the CAs of a new lab under `dir` (`tls/<id>.pem`, `tls/<id>.key`).
pub(crate) fn create_lab_cas(dir: &Path) -> Result<Vec<CaRecord>> {
    LAB_CAS
        .iter()
        .map(|(id, from, to)| {
            tls::create_ca_between(dir, id, tls::parse_time(from)?, tls::parse_time(to)?)
        })
        .collect()
}

/// Whether a MariaDB server of `version` (`10.11.19-MariaDB-0+deb12u1`) has `FLUSH SSL`,
/// which came with 10.4.
pub fn reloads_tls_without_restart(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (10, 4),
        _ => false,
    }
}

impl Lab {
    /// Every CA of the lab, with its validity, its PEM, and whether an instance can move to
    /// it without a restart (the lab's MariaDB has `FLUSH SSL`).
    pub async fn list_cas(&self) -> Result<Vec<CertificateAuthority>> {
        let st = self.fresh()?;
        let without_restart = reloads_tls_without_restart(&st.engine_version);
        st.cas
            .iter()
            .map(|ca| {
                let pem = std::fs::read_to_string(self.dir.join(&ca.cert))
                    .ctx(|| format!("reading the certificate of {}", ca.id))?;
                Ok(CertificateAuthority {
                    id: ca.id.clone(),
                    not_before: ca.not_before.clone(),
                    not_after: ca.not_after.clone(),
                    pem: Some(pem),
                    rotation_without_restart: without_restart,
                })
            })
            .collect()
    }

    /// The CAs the trust bundle holds now.
    pub async fn trusted_cas(&self) -> Result<Vec<String>> {
        Ok(self.fresh()?.trusted_cas)
    }

    /// Make the trust bundle hold exactly `cas` (written atomically to `tls/trust.pem`, the
    /// one file every server's `ssl_ca` and every replica's `MASTER_SSL_CA` name), then make
    /// every running server reload it with `FLUSH LOCAL SSL`. Replication IO threads read
    /// `MASTER_SSL_CA` again when they next connect. Idempotent. Refused, with nothing
    /// changed: an empty list, an unknown CA, a list that leaves out the CA of an instance's
    /// current certificate (its clients and replicas would reject it).
    pub async fn deploy_trust(&self, cas: &[String]) -> Result<Option<PathBuf>> {
        let path = self.ca_bundle();
        let trusted = {
            let _lock = LabLock::acquire_async(&self.dir).await?;
            let mut st = self.fresh()?;
            if cas.is_empty() {
                return Err(Error::BadInput(format!(
                    "give at least one CA to trust: an empty bundle would make every server \
                     and replica reject every certificate (known CAs: {})",
                    st.known_cas()
                )));
            }
            let mut wanted: Vec<String> = Vec::new();
            for id in cas {
                st.ca(id)?;
                if !wanted.contains(id) {
                    wanted.push(id.clone());
                }
            }
            let untrusted: Vec<String> = st
                .instances
                .iter()
                .filter(|i| !wanted.contains(&i.ca))
                .map(|i| format!("{} ({})", i.id, i.ca))
                .collect();
            if !untrusted.is_empty() {
                return Err(Error::BadInput(format!(
                    "the bundle {wanted:?} leaves out the CA of the certificate that {} still \
                     present(s): clients and replicas would reject it; move those instances to \
                     a CA of the bundle first (modify_ca), or keep their CA in the bundle",
                    untrusted.join(", ")
                )));
            }
            let records: Vec<&CaRecord> =
                wanted.iter().map(|id| st.ca(id)).collect::<Result<_>>()?;
            tracing::info!(cas = ?wanted, bundle = %path.display(), "writing the trust bundle");
            tls::write_bundle(&self.dir, &records, &path)?;
            // New certificates must come from a CA the bundle holds, or a new instance would
            // be rejected by its own replicas: the newest trusted CA takes over if need be.
            if !wanted.contains(&st.current_ca) {
                let newest = records
                    .iter()
                    .max_by(|a, b| a.not_after.cmp(&b.not_after))
                    .expect("the bundle holds at least one CA");
                st.current_ca = newest.id.clone();
            }
            // Recorded as soon as the file is there: the file is what replicas and clients
            // read at their next connect, whatever the reloads below do.
            if st.trusted_cas != wanted {
                st.trusted_cas = wanted.clone();
                st.save(&self.dir)?;
            }
            wanted
        };

        let st = self.fresh()?;
        let reloads = st
            .instances
            .iter()
            .filter(|rec| process::running_pid(&self.paths(&rec.id)).is_some())
            .filter(|rec| {
                let reloads = reloads_tls_without_restart(&self.engine_version_of(rec));
                if !reloads {
                    tracing::info!(instance = %rec.id, "no FLUSH SSL on this version: its ssl_ca \
                                   changes at its next restart");
                }
                reloads
            })
            .map(|rec| async move { (rec.id.as_str(), self.reload_tls(&rec.id).await) });
        let failed: Vec<String> = futures::future::join_all(reloads)
            .await
            .into_iter()
            .filter_map(|(id, r)| r.err().map(|e| format!("{id}: {e}")))
            .collect();
        if !failed.is_empty() {
            return Err(Error::Process {
                instance: "trust bundle".into(),
                message: format!(
                    "{} holds {trusted:?}, but these servers did not reload it ({}); they read \
                     it at their next restart, or run the same deploy again",
                    path.display(),
                    failed.join("; ")
                ),
            });
        }
        tracing::info!(cas = ?trusted, "trust bundle deployed");
        Ok(Some(path))
    }

    /// Give `instance` a new server certificate issued by `ca` and put it in effect: with
    /// `FLUSH LOCAL SSL` on the running server (`NoRestart`) or by restarting it (`Restart`);
    /// then record the CA. Idempotent (the certificate is issued again). Refused, with
    /// nothing changed: an unknown instance or CA, a CA the trust bundle does not hold, a
    /// stopped instance, `NoRestart` on a server without `FLUSH SSL`.
    pub async fn modify_ca(&self, instance: &str, ca: &str, apply: CaApply) -> Result<()> {
        let st = self.fresh()?;
        let rec = st.instance(instance)?.clone();
        let ca_rec = st.ca(ca)?.clone();
        if !st.trusted_cas.iter().any(|t| t == ca) {
            return Err(Error::BadInput(format!(
                "{ca} is not in the trust bundle ({}); deploy the trust bundle first (with \
                 {} and {ca}): clients and replicas would reject the new certificate",
                st.trusted_cas.join(", "),
                st.trusted_cas.join(", "),
            )));
        }
        let paths = self.paths(instance);
        let Some(pid) = process::running_pid(&paths) else {
            return Err(Error::Process {
                instance: instance.to_string(),
                message: format!(
                    "is stopped, so its certificate was left as it is; start it first \
                     (start_instance, or `dbshift lab up`), then move it to {ca}"
                ),
            });
        };
        let version = self.engine_version_of(&rec);
        if apply == CaApply::NoRestart && !reloads_tls_without_restart(&version) {
            return Err(Error::BadInput(format!(
                "{instance} runs MariaDB {version}, which cannot reload its certificate \
                 (FLUSH SSL came with 10.4); use the restart mode"
            )));
        }

        tracing::info!(instance, from = %rec.ca, to = ca, ?apply, pid, "moving the server certificate");
        tls::issue_server_cert(&self.dir, &ca_rec, instance, &paths.tls())?;
        match apply {
            CaApply::NoRestart => self.reload_tls(instance).await?,
            CaApply::Restart => self.restart(instance, START_TIMEOUT).await?,
        }
        {
            let _lock = LabLock::acquire_async(&self.dir).await?;
            let mut st = self.fresh()?;
            if let Some(r) = st.instances.iter_mut().find(|i| i.id == instance) {
                if r.ca != ca {
                    r.ca = ca.to_string();
                    st.save(&self.dir)?;
                }
            }
        }
        tracing::info!(instance, ca, ?apply, "server certificate moved");
        Ok(())
    }

    /// `FLUSH LOCAL SSL` on one running server, as the platform (in RDS mode dbshift's admin
    /// user has no RELOAD; the control plane does).
    async fn reload_tls(&self, id: &str) -> Result<()> {
        let mut server = self.connect_platform(id).await?;
        let done = server.exec_sql(RELOAD_TLS).await;
        server.close().await;
        done?;
        tracing::debug!(instance = %id, "TLS material reloaded");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_ssl_exists_from_10_4() {
        assert!(reloads_tls_without_restart("10.11.19-MariaDB-0+deb12u1"));
        assert!(reloads_tls_without_restart("10.4.0-MariaDB"));
        assert!(reloads_tls_without_restart("11.4.2-MariaDB"));
        assert!(!reloads_tls_without_restart("10.3.39-MariaDB"));
        assert!(!reloads_tls_without_restart("5.5.68-MariaDB"));
        assert!(!reloads_tls_without_restart("unknown"));
    }

    #[test]
    fn a_new_lab_makes_the_expiring_ca_and_the_next_one() {
        let dir = std::env::temp_dir().join(format!("dbshift-cas-{}", std::process::id()));
        let cas = create_lab_cas(&dir);
        let files = [
            dir.join("tls/lab-ca-2024.pem").is_file(),
            dir.join("tls/lab-ca-2026.key").is_file(),
        ];
        let _ = std::fs::remove_dir_all(&dir);
        let cas = cas.expect("the CAs are made");
        let got: Vec<(&str, &str, &str)> = cas
            .iter()
            .map(|c| (c.id.as_str(), c.not_before.as_str(), c.not_after.as_str()))
            .collect();
        assert_eq!(got, LAB_CAS);
        assert_eq!(files, [true, true]);
    }
}
