//! CA rotation on servers dbshift did not start (`ca-rotate --provider self-managed`).
//!
//! The fleet file names the CAs (`[[ca]]`, each with its certificate) and three command
//! templates: `install_certificate` gives one server a certificate and key issued by `{ca}`
//! (the operator's PKI does the issuing: dbshift never holds a CA key), `install_trust` makes
//! one server trust exactly the CAs of the PEM file `{bundle}` (its `ssl_ca`), and the
//! optional `read_trust` prints the CAs a server trusts now. dbshift then loads the new
//! material without a restart (`FLUSH LOCAL SSL` on MariaDB 10.4+, `ALTER INSTANCE RELOAD
//! TLS` on MySQL 8.0.16+, both through `dbshift-db`) or with the fleet file's `restart`.
//!
//! The servers are the truth, as for the topology: which CA an instance's certificate comes
//! from is what the server presents (a TLS handshake checked against each `[[ca]]` alone),
//! never a record of dbshift's. Without `read_trust` the CAs the servers trust are inferred
//! from the certificates they present (every server must trust the CAs its peers present, or
//! replication over TLS would fail): a rotation then deploys every presented CA plus the
//! target, which never drops a CA in use.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;

use super::discovery::{self, Member};
use super::fleet_file::{CaSpec, ClusterSpec};
use super::{commands, SelfManaged};
use crate::error::{Error, Result};
use crate::model::{pem_certificates, CaApply, CertificateAuthority};
use crate::provider::{Certificates, InstanceControl};

/// What an instance presents when no `[[ca]]` verifies it (another CA, or no TLS), and when it
/// does not answer.
pub const UNKNOWN_CA: &str = "-";
pub const UNREACHABLE_CA: &str = "?";

/// How long one identifying handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// The ids of `cas` whose certificate `text` (a PEM bundle) holds, in `cas`' order.
pub fn cas_in(text: &str, cas: &[CaSpec]) -> Vec<String> {
    let held = pem_certificates(text);
    cas.iter()
        .filter(|ca| pem_certificates(&ca.pem).iter().all(|b| held.contains(b)))
        .map(|ca| ca.id.clone())
        .collect()
}

impl SelfManaged {
    /// The `[[ca]]` called `id`, or what the file has.
    fn ca_spec(&self, id: &str) -> Result<&CaSpec> {
        self.fleet
            .cas
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::Unknown {
                kind: "CA",
                name: id.to_string(),
                known: if self.fleet.cas.is_empty() {
                    format!(
                        "none: add a [[ca]] with `id` and `certificate` to {}",
                        self.fleet.path.display()
                    )
                } else {
                    self.fleet
                        .cas
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// The CA whose certificate verifies what `m` presents, by a handshake per `[[ca]]`
    /// (the name is not checked: this identifies the issuer, dbshift's own connections check
    /// names with `tls.ca_file`). Kept for the run; [`SelfManaged::forget_ca`] drops it.
    pub(super) async fn presented_ca(&self, spec: &ClusterSpec, m: &Member) -> String {
        if self.fleet.cas.is_empty() {
            return UNKNOWN_CA.to_string();
        }
        if !m.reachable {
            return UNREACHABLE_CA.to_string();
        }
        if let Some(ca) = self.presented.lock().await.get(&m.id) {
            return ca.clone();
        }
        let mut found = UNKNOWN_CA.to_string();
        for ca in &self.fleet.cas {
            let opts = ConnectOptions::new(
                m.endpoint.host.clone(),
                m.endpoint.port,
                spec.admin.user.clone(),
            )
            .password(spec.admin.password.clone())
            .tls(TlsOptions {
                ca_path: ca.path.clone(),
                verify_identity: false,
            })
            .connect_timeout(HANDSHAKE_TIMEOUT);
            if let Ok(Ok(s)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, Server::connect(&opts)).await
            {
                s.close().await;
                found = ca.id.clone();
                break;
            }
        }
        self.presented
            .lock()
            .await
            .insert(m.id.clone(), found.clone());
        found
    }

    async fn forget_ca(&self, id: &str) {
        self.presented.lock().await.remove(id);
    }

    /// Every reachable member of every cluster, with its cluster; an unreachable one is an
    /// error for a change that must reach every trust point.
    async fn every_member(&self, what: &str) -> Result<Vec<(ClusterSpec, Member)>> {
        let mut out = Vec::new();
        for spec in &self.fleet.clusters {
            let t = self.topology(&spec.name).await?;
            for m in &t.members {
                if !m.reachable {
                    return Err(Error::Process {
                        instance: m.id.clone(),
                        message: format!(
                            "does not answer, so {what} cannot reach it; start it or take it \
                             out of cluster {} in {}, then run again (nothing was changed)",
                            spec.name,
                            self.fleet.path.display()
                        ),
                    });
                }
                out.push((spec.clone(), m.clone()));
            }
        }
        Ok(out)
    }

    /// Refuse, changing nothing, when dbshift's own connections to `spec`'s servers would not
    /// verify a certificate from every CA of `cas` (its `tls.ca_file` lacks one): after the
    /// rotation dbshift could no longer reach them.
    fn check_own_trust(&self, spec: &ClusterSpec, cas: &[String]) -> Result<()> {
        let Some(file) = &spec.tls.ca_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::BadInput(format!(
                "cluster {}: tls.ca_file {}: {e}",
                spec.name,
                file.display()
            ))
        })?;
        let held = cas_in(&text, &self.fleet.cas);
        let missing: Vec<&String> = cas.iter().filter(|c| !held.contains(c)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::BadInput(format!(
            "cluster {}: dbshift's own tls.ca_file {} does not hold {missing:?}, so once a \
             server presents a certificate from it dbshift could no longer connect to it; put \
             the old and the new CA in that file (a PEM bundle) and run again (nothing was \
             changed)",
            spec.name,
            file.display()
        )))
    }

    /// The filled template `key` of `spec` for `m`, or what to set.
    fn template(
        &self,
        spec: &ClusterSpec,
        key: &str,
        pick: fn(&super::fleet_file::Commands) -> Option<&String>,
        what: &str,
    ) -> Result<String> {
        pick(&spec.commands).cloned().ok_or_else(|| {
            Error::Unsupported(format!(
                "the fleet file {} has no `{key}` command for cluster {}, so dbshift cannot \
                 {what}: set `{key} = \"...\"` under [commands] (or [cluster.commands]); see \
                 docs/self-managed.md",
                self.fleet.path.display(),
                spec.name
            ))
        })
    }

    /// Load `m`'s TLS material again over SQL, as the admin user.
    async fn reload(&self, spec: &ClusterSpec, m: &Member) -> Result<()> {
        let fleet = self.fleet.path.display().to_string();
        let mut s = discovery::connect_admin(spec, &fleet, &m.endpoint).await?;
        let r = s.reload_tls().await;
        s.close().await;
        r.map_err(|e| match e {
            e @ dbshift_db::Error::Unsupported { .. } => Error::BadInput(format!(
                "{e}; rotate with --mode restart (the fleet file's `restart` command)"
            )),
            e => Error::Db(e),
        })
    }
}

#[async_trait::async_trait]
impl Certificates for SelfManaged {
    /// Every `[[ca]]` comes with its certificate.
    fn gives_ca_certificates(&self) -> bool {
        true
    }

    /// The `[[ca]]`s; a move without a restart is offered when every server answers and
    /// can reload its certificate (MariaDB 10.4+, MySQL 8.0.16+).
    async fn list_cas(&self) -> Result<Vec<CertificateAuthority>> {
        if self.fleet.cas.is_empty() {
            return Ok(Vec::new());
        }
        let fleet = self.fleet.path.display().to_string();
        let mut reloads = true;
        for spec in &self.fleet.clusters {
            let t = self.topology(&spec.name).await?;
            for m in &t.members {
                if !m.reachable {
                    reloads = false;
                    continue;
                }
                let s = discovery::connect_admin(spec, &fleet, &m.endpoint).await?;
                reloads &= s.dialect().flush_ssl().is_ok();
                s.close().await;
            }
        }
        Ok(self
            .fleet
            .cas
            .iter()
            .map(|ca| CertificateAuthority {
                id: ca.id.clone(),
                not_before: ca.not_before.clone(),
                not_after: ca.not_after.clone(),
                pem: Some(ca.pem.clone()),
                rotation_without_restart: reloads,
            })
            .collect())
    }

    /// With `read_trust`: the CAs every server trusts (what the command prints, matched
    /// against the `[[ca]]`s). Without it: the CAs the servers present (see the module doc).
    async fn trusted_cas(&self) -> Result<Vec<String>> {
        if self.fleet.cas.is_empty() {
            return Ok(Vec::new());
        }
        let mut every: Option<BTreeSet<String>> = None;
        let mut presented = BTreeSet::new();
        for spec in &self.fleet.clusters {
            let t = self.topology(&spec.name).await?;
            for m in t.members.iter().filter(|m| m.reachable) {
                match &spec.commands.read_trust {
                    Some(template) => {
                        let cmd = commands::fill(template, &m.id, &m.endpoint);
                        let out =
                            commands::output("read_trust", &m.id, &cmd, spec.commands.timeout)
                                .await?;
                        let here: BTreeSet<String> =
                            cas_in(&out, &self.fleet.cas).into_iter().collect();
                        every = Some(match every {
                            None => here,
                            Some(e) => e.intersection(&here).cloned().collect(),
                        });
                    }
                    None => {
                        let ca = self.presented_ca(spec, m).await;
                        if ca != UNKNOWN_CA && ca != UNREACHABLE_CA {
                            presented.insert(ca);
                        }
                    }
                }
            }
        }
        let trusted: BTreeSet<String> = match every {
            Some(e) => e.union(&presented).cloned().collect(),
            None => presented,
        };
        // In the file's order.
        Ok(self
            .fleet
            .cas
            .iter()
            .filter(|c| trusted.contains(&c.id))
            .map(|c| c.id.clone())
            .collect())
    }

    /// Write the bundle of `cas`, run `install_trust` with it for every server, then reload
    /// every server's TLS material. Refused, with nothing changed: an unknown CA, a member
    /// that does not answer, no `install_trust`, a bundle that leaves out a CA a server
    /// presents, or dbshift's own `tls.ca_file` lacking one of `cas`.
    async fn deploy_trust(&self, cas: &[String]) -> Result<Option<PathBuf>> {
        if cas.is_empty() {
            return Err(Error::BadInput(
                "give at least one CA to trust: an empty bundle would make every server and \
                 replica reject every certificate"
                    .to_string(),
            ));
        }
        let specs: Vec<&CaSpec> = cas
            .iter()
            .map(|id| self.ca_spec(id))
            .collect::<Result<_>>()?;
        let members = self.every_member("the trust bundle").await?;
        let mut left_out = Vec::new();
        for (spec, m) in &members {
            self.template(
                spec,
                "install_trust",
                |c| c.install_trust.as_ref(),
                "deploy a trust bundle",
            )?;
            self.check_own_trust(spec, cas)?;
            let ca = self.presented_ca(spec, m).await;
            if ca != UNKNOWN_CA && !cas.contains(&ca) {
                left_out.push(format!("{} ({ca})", m.id));
            }
        }
        if !left_out.is_empty() {
            return Err(Error::BadInput(format!(
                "the bundle {cas:?} leaves out the CA of the certificate that {} still \
                 present(s): clients and replicas would reject it; move those instances first, \
                 or keep their CA in the bundle (nothing was changed)",
                left_out.join(", ")
            )));
        }
        let dir = std::env::temp_dir().join(format!("dbshift-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Process {
            instance: "trust bundle".into(),
            message: format!("creating {}: {e}", dir.display()),
        })?;
        let bundle = dir.join(format!("{}.pem", cas.join("+")));
        let text: String = specs
            .iter()
            .map(|c| c.pem.trim_end().to_string() + "\n")
            .collect();
        std::fs::write(&bundle, text).map_err(|e| Error::Process {
            instance: "trust bundle".into(),
            message: format!("writing {}: {e}", bundle.display()),
        })?;
        let path = bundle.display().to_string();
        tracing::info!(cas = ?cas, bundle = %path, "installing the trust bundle on every server");
        for (spec, m) in &members {
            let template = spec.commands.install_trust.as_ref().expect("checked above");
            let cmd = commands::fill_with(template, &m.id, &m.endpoint, &[("{bundle}", &path)]);
            commands::run("install_trust", &m.id, &cmd, spec.commands.timeout).await?;
        }
        let mut failed = Vec::new();
        for (spec, m) in &members {
            if let Err(e) = self.reload(spec, m).await {
                failed.push(format!("{}: {e}", m.id));
            }
        }
        if !failed.is_empty() {
            return Err(Error::Process {
                instance: "trust bundle".into(),
                message: format!(
                    "every server was given {cas:?}, but these did not load it ({}); they read \
                     it at their next restart, or run the same command again",
                    failed.join("; ")
                ),
            });
        }
        tracing::info!(cas = ?cas, "trust bundle deployed");
        Ok(Some(bundle))
    }

    /// `install_certificate` for `instance`, then its TLS reloaded (or the server restarted),
    /// then what it presents checked: it must be a certificate from `ca`.
    async fn modify_ca(&self, instance: &str, ca: &str, apply: CaApply) -> Result<()> {
        let ca_spec = self.ca_spec(ca)?.clone();
        let (spec, m) = self.find(instance).await?;
        let spec = spec.clone();
        let template = self.template(
            &spec,
            "install_certificate",
            |c| c.install_certificate.as_ref(),
            "give a server a new certificate",
        )?;
        self.check_own_trust(&spec, &[ca.to_string()])?;
        if !m.reachable {
            return Err(Error::Process {
                instance: instance.to_string(),
                message: format!(
                    "does not answer, so its certificate was left as it is; start it first, \
                     then move it to {ca}"
                ),
            });
        }
        if apply == CaApply::NoRestart {
            // Refused before the certificate changes: a server that cannot reload it.
            let fleet = self.fleet.path.display().to_string();
            let s = discovery::connect_admin(&spec, &fleet, &m.endpoint).await?;
            let can = s.dialect().flush_ssl().map(|_| ());
            s.close().await;
            can.map_err(|e| {
                Error::BadInput(format!(
                    "{instance}: {e}; rotate with --mode restart (nothing was changed)"
                ))
            })?;
        }
        let path = ca_spec.path.display().to_string();
        let cmd = commands::fill_with(
            &template,
            &m.id,
            &m.endpoint,
            &[("{ca}", ca), ("{ca_file}", &path)],
        );
        tracing::info!(
            instance,
            to = ca,
            ?apply,
            "installing the new server certificate"
        );
        commands::run("install_certificate", instance, &cmd, spec.commands.timeout).await?;
        match apply {
            CaApply::NoRestart => self.reload(&spec, &m).await?,
            CaApply::Restart => {
                InstanceControl::reboot(self, instance, spec.commands.timeout).await?
            }
        }
        self.forget_ca(instance).await;
        let now = self.presented_ca(&spec, &m).await;
        if now != ca {
            return Err(Error::Process {
                instance: instance.to_string(),
                message: format!(
                    "the install_certificate command succeeded and the server {} but it still \
                     presents a certificate from {now}, not {ca}: check that the command writes \
                     the files its ssl_cert and ssl_key name",
                    match apply {
                        CaApply::NoRestart => "reloaded its TLS material",
                        CaApply::Restart => "restarted",
                    }
                ),
            });
        }
        tracing::info!(
            instance,
            ca,
            "the server presents a certificate from the new CA"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(id: &str, body: &str) -> CaSpec {
        CaSpec {
            id: id.into(),
            path: PathBuf::from(format!("/{id}.pem")),
            pem: format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"),
            not_before: String::new(),
            not_after: String::new(),
        }
    }

    #[test]
    fn a_bundle_is_matched_against_the_fleet_cas_by_certificate() {
        let cas = [ca("old", "QUJD\nREVG"), ca("new", "R0hJ")];
        let bundle = "junk\n-----BEGIN CERTIFICATE-----\nR0hJ\n-----END CERTIFICATE-----\n\
                      -----BEGIN CERTIFICATE-----\nQUJDREVG\n-----END CERTIFICATE-----\n";
        assert_eq!(cas_in(bundle, &cas), vec!["old", "new"]);
        assert_eq!(
            cas_in(
                "-----BEGIN CERTIFICATE-----\nR0hJ\n-----END CERTIFICATE-----",
                &cas
            ),
            vec!["new"]
        );
        assert!(cas_in("", &cas).is_empty());
    }
}
