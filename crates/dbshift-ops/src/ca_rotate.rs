//! CA rotation on the fleet rollout engine: every instance in scope gets a server certificate
//! issued by the target CA, with the least downtime the platform allows.
//!
//! Before any server certificate changes, every trust point the provider manages (servers'
//! `ssl_ca`, replication's `MASTER_SSL_CA`) is made to trust the old CAs and the target
//! (`deploy_trust`), and the operator is told which configured clients (`--client-ca` bundles)
//! would not trust the target. Then the rollout: per instance `modify_ca` (no restart where
//! the CA allows it, or a restart; `failover-first` moves the writer first through the
//! switchover core), and a health gate whose TLS check verifies the server's chain against
//! the *target CA alone*, so an instance still presenting the old chain never passes.
//!
//! It must never change a certificate before the trust step is done, and never trust what the
//! journal says over what a server presents.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dbshift_db::server::{ConnectOptions, TlsOptions};
use dbshift_db::Server;
use dbshift_provider::{CaApply, CertificateAuthority, Instance, Provider};
use serde::{Deserialize, Serialize};

use crate::error::{StepError, StepResult};
use crate::events::{Silent, Workflow};
use crate::journal::{Journal, RunRecord, RunStatus};
use crate::rollout::{
    self, Change, Control, Costs, Filter, Mode, Plan, PlanOptions, ProbeSettings, Rollout,
    RolloutError, RolloutObserver, RolloutReport,
};
use crate::runner::StepRunner;

/// The journal kind of a CA rotation run.
pub const RUN_KIND: &str = "ca-rotate";

/// What the operator asked for; stored in the journal as the run's parameters (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaRotateRequest {
    /// The target CA's id.
    pub to: String,
    /// `--filter` values as given.
    pub filters: Vec<String>,
    pub concurrency: usize,
    /// `None`: no-restart where the CA allows it, else failover-first.
    pub mode: Option<Mode>,
    pub cooldown_ms: u64,
    pub start_stopped: bool,
    pub max_failures: usize,
    /// Client trust bundles to check against the target CA.
    pub client_cas: Vec<PathBuf>,
    /// A downtime probe per cluster.
    #[serde(default)]
    pub probe: bool,
}

/// One configured client bundle and whether it trusts the target CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientTrust {
    pub file: PathBuf,
    pub trusts_target: bool,
    pub certificates: usize,
}

/// The trust step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustStep {
    /// What every trust point trusts now.
    pub trusted_now: Vec<String>,
    /// What they are made to trust before any certificate changes (now ∪ target).
    pub deploy: Vec<String>,
    /// False when the target is trusted already (the deployment is then skipped).
    pub needed: bool,
}

/// A CA rotation plan, as `--plan -o json` exports it and `--plan-file` reads it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaPlan {
    pub request: CaRotateRequest,
    pub ca: CertificateAuthority,
    pub trust: TrustStep,
    pub clients: Vec<ClientTrust>,
    /// What the health gate after each instance checks.
    #[serde(default)]
    pub health_gate: HealthGate,
    #[serde(flatten)]
    pub plan: Plan,
}

/// What the health gate checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthGate {
    /// The control plane and the servers: available, the new CA recorded, the chain the server
    /// presents verified against the target CA (when the provider has its certificate),
    /// replicas replicating and caught up.
    #[default]
    SqlAndTls,
    /// The control plane alone (no database credentials): the instance available with
    /// nothing pending and the target CA recorded. The servers themselves are not checked.
    ControlPlane,
}

impl HealthGate {
    pub fn of(provider: &dyn Provider) -> HealthGate {
        if provider.sql_access() {
            HealthGate::SqlAndTls
        } else {
            HealthGate::ControlPlane
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            HealthGate::SqlAndTls => {
                "health gate: available, new CA recorded and presented, replication caught up"
            }
            HealthGate::ControlPlane => {
                "health gate: control plane only (no database credentials: DBSHIFT_DB_USER / \
                 DBSHIFT_DB_PASSWORD): available, nothing pending, the target CA recorded; the \
                 servers' TLS and replication are NOT checked"
            }
        }
    }
}

impl CaPlan {
    /// Client bundles that would not trust the target CA.
    pub fn untrusting_clients(&self) -> Vec<&ClientTrust> {
        self.clients.iter().filter(|c| !c.trusts_target).collect()
    }
}

/// The report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct CaRotateReport {
    #[serde(flatten)]
    pub rollout: RolloutReport,
    /// The CAs deployed to every trust point, when the trust step ran in this process.
    pub trust_deployed: Option<Vec<String>>,
    pub clients_not_trusting: Vec<PathBuf>,
    pub resumed: bool,
    pub health_gate: HealthGate,
    /// `--drop-old-trust`: the trust after the rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_final: Option<TrustFinal>,
}

/// The trust points after `--drop-old-trust`.
#[derive(Debug, Clone, Serialize)]
pub struct TrustFinal {
    /// The CAs every trust point trusts now.
    pub trusted: Vec<String>,
    /// Instances still on another CA: the old CAs were kept for them (nothing changed).
    pub still_on_other_cas: Vec<String>,
}

/// After a finished rotation: every trust point trusts the target CA alone, unless an
/// instance still has a certificate from another CA (one outside the filter, or skipped):
/// then nothing changes and those instances are named.
pub async fn finalize_trust(provider: &dyn Provider, ca: &str) -> Result<TrustFinal, RolloutError> {
    let others: Vec<String> = provider
        .list_instances()
        .await?
        .into_iter()
        .filter(|i| i.ca != ca)
        .map(|i| i.id)
        .collect();
    if !others.is_empty() {
        let trusted = provider.trusted_cas().await?;
        return Ok(TrustFinal {
            trusted,
            still_on_other_cas: others,
        });
    }
    provider.deploy_trust(&[ca.to_string()]).await?;
    Ok(TrustFinal {
        trusted: vec![ca.to_string()],
        still_on_other_cas: Vec::new(),
    })
}

fn bad(msg: impl Into<String>) -> RolloutError {
    RolloutError::BadInput(msg.into())
}

/// The certificates of a PEM text (the provider's parser: one for the tree).
pub use dbshift_provider::pem_certificates;

/// Resolve the CA, the mode, the client bundles and the plan; changes nothing.
pub async fn prepare(
    provider: &dyn Provider,
    req: &CaRotateRequest,
) -> Result<CaPlan, RolloutError> {
    let cas = provider.list_cas().await?;
    let ca = cas
        .iter()
        .find(|c| c.id == req.to)
        .cloned()
        .ok_or_else(|| {
            bad(format!(
                "unknown CA {:?}; known: {}",
                req.to,
                if cas.is_empty() {
                    "none (the provider lists no CA)".to_string()
                } else {
                    cas.iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))
        })?;
    let mode = match req.mode {
        Some(Mode::NoRestart) if !ca.rotation_without_restart => {
            return Err(bad(format!(
                "{} cannot be rotated to without a restart; use --mode failover-first or restart",
                ca.id
            )))
        }
        Some(m) => m,
        None if ca.rotation_without_restart => Mode::NoRestart,
        None => Mode::FailoverFirst,
    };
    let filters = req
        .filters
        .iter()
        .map(|f| Filter::parse(f).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let target_certs = ca.pem.as_deref().map(pem_certificates).unwrap_or_default();
    let mut clients = Vec::new();
    for file in &req.client_cas {
        let text = std::fs::read_to_string(file)
            .map_err(|e| bad(format!("--client-ca {}: {e}", file.display())))?;
        let certs = pem_certificates(&text);
        if certs.is_empty() {
            return Err(bad(format!(
                "--client-ca {}: no PEM certificate in it",
                file.display()
            )));
        }
        clients.push(ClientTrust {
            file: file.clone(),
            trusts_target: !target_certs.is_empty()
                && target_certs.iter().all(|t| certs.contains(t)),
            certificates: certs.len(),
        });
    }
    let clusters = provider.list_clusters().await?;
    let instances = provider.list_instances().await?;
    let opts = PlanOptions {
        kind: RUN_KIND.into(),
        target: ca.id.clone(),
        mode,
        concurrency: req.concurrency,
        cooldown_ms: req.cooldown_ms,
        start_stopped: req.start_stopped,
        max_failures: req.max_failures,
        filters,
        costs: if provider.slow_control_plane() {
            Costs::cloud()
        } else {
            Costs::default()
        },
    };
    let target = ca.id.clone();
    let plan = rollout::build_plan(opts, &clusters, &instances, &|i: &Instance| i.ca == target)?;
    // A writer moved by the switchover core needs the SQL side; without database credentials
    // only the platform's own failover (Aurora) can move it. Refused now, before anything runs,
    // rather than found out after the readers were restarted.
    if !provider.sql_access() {
        let mut stuck = Vec::new();
        for c in &plan.clusters {
            let moves = c
                .steps
                .iter()
                .any(|s| matches!(s.action, rollout::Action::Switchover { .. }));
            if moves && !provider.has_platform_failover(&c.cluster).await? {
                stuck.push(c.cluster.clone());
            }
        }
        if !stuck.is_empty() {
            return Err(bad(format!(
                "--mode failover-first moves the writers of {} through dbshift's switchover, \
                 which needs the servers' SQL side, and there are no database credentials: set \
                 DBSHIFT_DB_USER and DBSHIFT_DB_PASSWORD, or use --mode restart (those writers \
                 restart in place: write downtime), or leave those clusters out with --filter",
                stuck.join(", ")
            )));
        }
    }
    let trusted_now = provider.trusted_cas().await?;
    let mut deploy = trusted_now.clone();
    if !deploy.contains(&ca.id) {
        deploy.push(ca.id.clone());
    }
    let needed = !trusted_now.contains(&ca.id);
    Ok(CaPlan {
        request: req.clone(),
        ca,
        trust: TrustStep {
            trusted_now,
            deploy,
            needed,
        },
        clients,
        health_gate: HealthGate::of(provider),
        plan,
    })
}

/// The unfinished (running or paused, or cut short) CA rotation to the same CA with the same
/// filters, if there is one: running the same command again continues it.
pub async fn find_unfinished(
    journal: &Journal,
    req: &CaRotateRequest,
) -> Result<Option<RunRecord>, RolloutError> {
    for r in journal.runs().await? {
        if r.kind != RUN_KIND || r.status != RunStatus::Running || r.target != req.to {
            continue;
        }
        let same_filters = serde_json::from_value::<CaRotateRequest>(r.params.clone())
            .map(|p| {
                let mut a = p.filters.clone();
                let mut b = req.filters.clone();
                a.sort();
                b.sort();
                a == b
            })
            .unwrap_or(false);
        if same_filters {
            return Ok(Some(journal.run(&r.id).await?));
        }
    }
    Ok(None)
}

/// The request a journaled run was started with.
pub fn request_of(run: &RunRecord) -> Result<CaRotateRequest, RolloutError> {
    if run.kind != RUN_KIND {
        return Err(bad(format!(
            "run {} is a {}, not a {RUN_KIND}",
            run.id, run.kind
        )));
    }
    serde_json::from_value(run.params.clone())
        .map_err(|e| bad(format!("run {} has unreadable parameters: {e}", run.id)))
}

/// The change: a server certificate from the target CA.
pub struct CaChange {
    provider: Arc<dyn Provider>,
    ca: String,
    /// The target CA's certificate alone and the user to connect as, for the gate's TLS
    /// check; `None` when the servers are not reachable over SQL (no database credentials)
    /// or the provider has no certificate for the CA: the provider's record alone then.
    /// The user is the instance's cluster's (users may differ per cluster).
    tls_check: Option<tempfile::NamedTempFile>,
}

impl CaChange {
    pub fn new(
        provider: Arc<dyn Provider>,
        ca: &CertificateAuthority,
    ) -> Result<CaChange, RolloutError> {
        let tls_check = match (&ca.pem, provider.sql_access()) {
            (Some(pem), true) => {
                let mut ca_file = tempfile::Builder::new()
                    .prefix("dbshift-target-ca-")
                    .suffix(".pem")
                    .tempfile()
                    .map_err(|e| bad(format!("a temp file for the target CA: {e}")))?;
                std::io::Write::write_all(&mut ca_file, pem.as_bytes())
                    .map_err(|e| bad(format!("writing the target CA: {e}")))?;
                Some(ca_file)
            }
            (None, true) if provider.gives_ca_certificates() => {
                return Err(bad(format!(
                "the provider gives no certificate for {}: the health gate cannot check the chain",
                ca.id
            )))
            }
            _ => None,
        };
        Ok(CaChange {
            provider,
            ca: ca.id.clone(),
            tls_check,
        })
    }

    /// The PEM file of the target CA alone, when the gate checks the chain.
    pub fn ca_path(&self) -> Option<&Path> {
        self.tls_check.as_ref().map(|f| f.path())
    }
}

/// Whether the server at `inst` presents a chain that verifies against `ca_path` alone, with
/// its name checked.
pub async fn presents_chain(
    inst: &Instance,
    admin: &dbshift_provider::Credential,
    ca_path: &Path,
) -> StepResult<bool> {
    let opts = ConnectOptions::new(
        inst.endpoint.host.clone(),
        inst.endpoint.port,
        admin.user.clone(),
    )
    .password(admin.password.clone())
    .tls(TlsOptions {
        ca_path: ca_path.to_path_buf(),
        verify_identity: true,
    })
    .connect_timeout(Duration::from_secs(2));
    match Server::connect(&opts).await {
        Ok(s) => {
            s.close().await;
            Ok(true)
        }
        Err(e) => {
            let text = e.to_string();
            let lower = text.to_lowercase();
            if lower.contains("certificate") || lower.contains("issuer") || lower.contains("tls") {
                Ok(false)
            } else {
                Err(StepError::from(e).context(&inst.id))
            }
        }
    }
}

#[async_trait::async_trait]
impl Change for CaChange {
    async fn in_effect(&self, instance: &Instance) -> StepResult<bool> {
        // The platform's record must agree with the server: dbshift killed after the server
        // took the new certificate but before the provider recorded it leaves them apart, and
        // the change (idempotent) is then applied again so that both say the target CA.
        if instance.ca != self.ca {
            return Ok(false);
        }
        match &self.tls_check {
            Some(file) => {
                let admin = self
                    .provider
                    .credentials_for(&instance.cluster)
                    .map_err(StepError::from)?
                    .admin;
                presents_chain(instance, &admin, file.path()).await
            }
            None => Ok(true),
        }
    }

    async fn apply(&self, instance: &Instance, restart: bool) -> StepResult<()> {
        let apply = if restart {
            CaApply::Restart
        } else {
            CaApply::NoRestart
        };
        self.provider
            .modify_ca(&instance.id, &self.ca, apply)
            .await
            .map_err(|e| {
                StepError::from(e).context(format!("moving {} to {}", instance.id, self.ca))
            })
    }

    async fn value(&self, instance: &str) -> String {
        self.provider
            .describe_instance(instance)
            .await
            .map(|i| i.ca)
            .unwrap_or_else(|_| "?".into())
    }
}

/// How a run is carried out.
pub struct ExecuteOptions {
    pub control: Control,
    pub observer: Arc<dyn RolloutObserver>,
    pub probe: Option<ProbeSettings>,
    pub gate_timeout: Duration,
    /// Continue this run instead of starting one.
    pub resume: Option<String>,
}

/// Deploy the trust bundle (journaled), then roll the plan out.
pub async fn execute(
    provider: Arc<dyn Provider>,
    journal: &Journal,
    plan: &CaPlan,
    opts: ExecuteOptions,
) -> Result<CaRotateReport, RolloutError> {
    // Every cluster of the plan is this rotation's until it ends: a switchover or failover
    // meanwhile would move writers under the plan (the switchover it does itself shares it).
    let scopes: Vec<String> = plan
        .plan
        .clusters
        .iter()
        .map(|c| c.cluster.clone())
        .collect();
    let _locks = journal
        .locks()
        .acquire_all(&scopes, &format!("ca-rotate to {}", plan.ca.id))
        .await?;
    let change = Arc::new(CaChange::new(provider.clone(), &plan.ca)?);
    let resumed = opts.resume.is_some();
    let run_id = match opts.resume {
        Some(id) => {
            journal
                .set_status(&id, RunStatus::Running, Some("resumed"))
                .await?;
            id
        }
        None => {
            let params = serde_json::to_value(&plan.request).expect("the request serializes");
            journal.create_run(RUN_KIND, &plan.ca.id, &params).await?
        }
    };
    tracing::info!(run = %run_id, to = %plan.ca.id, "CA rotation");
    // Trust first, checked again now: the plan may be old.
    let trusted_now = provider.trusted_cas().await?;
    let trust_deployed = if trusted_now.contains(&plan.ca.id) {
        None
    } else {
        let mut deploy = trusted_now.clone();
        deploy.push(plan.ca.id.clone());
        let mut steps = StepRunner::new(journal, &run_id, Workflow::CaRotate, &Silent);
        let begun = steps.begin("trust").await?;
        tracing::info!(cas = ?deploy, "deploying the trust bundle to every trust point");
        match provider.deploy_trust(&deploy).await {
            Ok(bundle) => {
                tracing::info!(bundle = ?bundle, "trust bundle deployed");
                steps
                    .end(
                        begun,
                        serde_json::json!({ "cas": deploy, "bundle": bundle }),
                    )
                    .await?;
            }
            Err(e) => {
                let msg = format!(
                    "deploying the trust bundle {deploy:?}: {e}; no certificate was changed"
                );
                steps.failed(begun, &msg).await?;
                journal
                    .set_status(&run_id, RunStatus::Failed, Some(&msg))
                    .await?;
                return Err(RolloutError::Provider(e));
            }
        }
        Some(deploy)
    };
    let engine = Rollout {
        provider,
        journal: journal.clone(),
        change,
        observer: opts.observer,
        control: opts.control,
        probe: opts.probe,
        gate_timeout: opts.gate_timeout,
    };
    let rollout = engine.execute(&run_id, &plan.plan).await?;
    Ok(CaRotateReport {
        rollout,
        trust_deployed,
        clients_not_trusting: plan
            .untrusting_clients()
            .iter()
            .map(|c| c.file.clone())
            .collect(),
        resumed,
        health_gate: plan.health_gate,
        trust_final: None,
    })
}

/// The CAs with their use: `dbshift ca list`.
#[derive(Debug, Clone, Serialize)]
pub struct CaListing {
    pub id: String,
    pub not_before: String,
    pub not_after: String,
    pub rotation_without_restart: bool,
    /// Trusted by every trust point the provider manages now.
    pub trusted: bool,
    /// Instances whose server certificate it issued.
    pub instances: Vec<String>,
}

/// Every CA, its validity, whether it is trusted, and which instances use it.
pub async fn list(provider: &dyn Provider) -> Result<Vec<CaListing>, RolloutError> {
    let cas = provider.list_cas().await?;
    let trusted = provider.trusted_cas().await?;
    let instances = provider.list_instances().await?;
    let mut out: Vec<CaListing> = cas
        .iter()
        .map(|c| CaListing {
            id: c.id.clone(),
            not_before: c.not_before.clone(),
            not_after: c.not_after.clone(),
            rotation_without_restart: c.rotation_without_restart,
            trusted: trusted.contains(&c.id),
            instances: instances
                .iter()
                .filter(|i| i.ca == c.id)
                .map(|i| i.id.clone())
                .collect(),
        })
        .collect();
    // An instance on a CA the provider no longer lists still shows.
    for i in &instances {
        if !out.iter().any(|c| c.id == i.ca) {
            out.push(CaListing {
                id: i.ca.clone(),
                not_before: "?".into(),
                not_after: "?".into(),
                rotation_without_restart: false,
                trusted: trusted.contains(&i.ca),
                instances: Vec::new(),
            });
        }
        if let Some(c) = out.iter_mut().find(|c| c.id == i.ca) {
            if !c.instances.contains(&i.id) {
                c.instances.push(i.id.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_compared_without_line_breaks() {
        let a = "-----BEGIN CERTIFICATE-----\nAAA\nBBB\n-----END CERTIFICATE-----\n";
        let b = "junk\n-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----\n\
                 -----BEGIN CERTIFICATE-----\nAAABBB\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(a), vec!["AAABBB".to_string()]);
        assert_eq!(pem_certificates(b).len(), 2);
        assert!(pem_certificates(b).contains(&"AAABBB".to_string()));
        assert!(pem_certificates("nothing").is_empty());
    }
}
