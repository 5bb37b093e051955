//! Blue/green: a green environment built from blue's snapshot (the provider builds it),
//! replicating from blue from the exact position; its status; the switch to green and back,
//! which is the switchover core between the two writers, never a second implementation.
//!
//! Each side keeps its own chain: the side that does not serve has its writer replicating
//! from the serving writer, and its readers replicating from its writer. A switch moves the
//! serving side: the core fences the serving writer, waits for the other writer to have its
//! last transaction, redirects blue's cluster name, promotes, and makes the old writer a
//! replica of the new one (reverse replication, so that the rollback is the same switch
//! backwards).

use std::time::Duration;

use dbshift_provider::{Deployment, GreenSpec, Provider, Side};
use serde::Serialize;

use crate::events::Observer;
use crate::guards::GuardReport;
use crate::inventory::{self, InventoryRow};
use crate::journal::Journal;
use crate::switchover::{self, Outcome, Redirect, SwitchoverError, SwitchoverParams};

/// Errors of the blue/green workflow before any switch starts.
#[derive(Debug, thiserror::Error)]
pub enum BlueGreenError {
    /// The request is wrong; nothing changed.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Provider(#[from] dbshift_provider::Error),
    #[error(transparent)]
    Switchover(#[from] SwitchoverError),
    #[error(transparent)]
    Inventory(#[from] inventory::Error),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
}

/// Check a create request, then have the provider build green.
pub async fn create(
    provider: &dyn Provider,
    spec: &GreenSpec,
) -> Result<Deployment, BlueGreenError> {
    if spec.name.is_empty()
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(BlueGreenError::BadInput(format!(
            "--name {:?}: use letters, digits, '-' and '_'",
            spec.name
        )));
    }
    if let Some(bin) = &spec.engine_binary {
        if !bin.is_file() {
            return Err(BlueGreenError::BadInput(format!(
                "--engine-binary {}: no such file; give the path of a mariadbd binary",
                bin.display()
            )));
        }
    }
    Ok(provider.create_green(spec).await?)
}

/// The deployment named `name`, or the only one when no name is given.
pub async fn find(
    provider: &dyn Provider,
    name: Option<&str>,
) -> Result<Deployment, BlueGreenError> {
    let all = provider.deployments().await?;
    let names = || {
        if all.is_empty() {
            "none; create one with `dbshift bluegreen create --source <cluster>`".to_string()
        } else {
            all.iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    match name {
        Some(n) => all.iter().find(|d| d.name == n).cloned().ok_or_else(|| {
            BlueGreenError::BadInput(format!("unknown deployment {n:?}; known: {}", names()))
        }),
        None if all.len() == 1 => Ok(all[0].clone()),
        None => Err(BlueGreenError::BadInput(format!(
            "name the deployment; known: {}",
            names()
        ))),
    }
}

/// How a switch is bounded (the core's guards and wait).
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    pub max_lag_transactions: u64,
    pub max_lag_seconds: u64,
    pub timeout: Duration,
    pub hooks: Vec<String>,
    /// How clients move; `None`: the proxy if one is in front of blue's name, else the name
    /// (AWS: the rename swap).
    pub redirect: Option<Redirect>,
    /// The guards accept `binlog_format=STATEMENT` with a warning (an upgrade blue/green is
    /// where statement-based replication differs most).
    pub allow_statement_binlog: bool,
}

impl Default for SwitchOptions {
    fn default() -> Self {
        SwitchOptions {
            max_lag_transactions: 100,
            max_lag_seconds: 5,
            timeout: Duration::from_secs(10),
            hooks: Vec::new(),
            redirect: None,
            allow_statement_binlog: false,
        }
    }
}

/// The core's parameters for making `to` serve: from the serving writer to `to`'s writer,
/// blue's cluster name redirected, no sibling re-pointed (each side keeps its chain), every
/// other instance of both sides checked at the end.
pub async fn switch_params(
    provider: &dyn Provider,
    d: &Deployment,
    to: Side,
    opts: &SwitchOptions,
) -> Result<SwitchoverParams, BlueGreenError> {
    if d.serving == to {
        let hint = match to {
            Side::Green => format!("`dbshift bluegreen rollback {}` goes back to blue", d.name),
            Side::Blue => format!("`dbshift bluegreen switchover {}` moves to green", d.name),
        };
        return Err(BlueGreenError::BadInput(format!(
            "{to} already serves in {}; {hint}",
            d.name
        )));
    }
    if opts.timeout.is_zero() {
        return Err(BlueGreenError::BadInput(
            "--timeout must be more than zero".into(),
        ));
    }
    let proxy = !provider.proxies_of(&d.blue).await?.is_empty();
    let redirect = match opts.redirect {
        Some(Redirect::Proxy) if !proxy => {
            return Err(BlueGreenError::BadInput(format!(
                "--redirect proxy: no dbshift proxy is in front of {}; use --redirect name",
                d.blue
            )))
        }
        Some(r) => r,
        None if proxy => Redirect::Proxy,
        None => Redirect::Name,
    };
    let from = d.writer(d.serving).to_string();
    let new = d.writer(to).to_string();
    // A redirect the provider cannot do is refused now, not found at the redirect step, past
    // the point of no return (AWS: an Aurora cluster's name is not an instance's to rename).
    if redirect == Redirect::Name {
        provider
            .redirect_plan(&d.blue, &new)
            .await
            .map_err(|e| BlueGreenError::BadInput(format!("--redirect name: {e}")))?;
    }
    let followers = provider
        .list_instances()
        .await?
        .into_iter()
        .filter(|i| (i.cluster == d.blue || i.cluster == d.green) && i.id != from && i.id != new)
        .map(|i| i.id)
        .collect();
    Ok(SwitchoverParams {
        cluster: d.blue.clone(),
        from,
        to: new,
        siblings: Vec::new(),
        max_lag_transactions: opts.max_lag_transactions,
        max_lag_seconds: opts.max_lag_seconds,
        timeout_ms: crate::ms(opts.timeout),
        fence_lock_wait_ms: 1000,
        fence_attempts: 3,
        statement_timeout_ms: crate::ms(dbshift_db::server::DEFAULT_STATEMENT_TIMEOUT),
        hooks: opts.hooks.clone(),
        followers,
        redirect,
        allow_statement_binlog: opts.allow_statement_binlog,
        redirect_actions: Vec::new(),
    })
}

/// Make `to` serve, through the switchover core. The run is journaled as
/// `bluegreen-switchover` (to green) or `bluegreen-rollback` (to blue); `dbshift resume`
/// continues either.
pub async fn switch(
    provider: &dyn Provider,
    journal: &Journal,
    params: SwitchoverParams,
    to: Side,
    observer: &dyn Observer,
) -> Result<(String, Outcome), BlueGreenError> {
    let kind = match to {
        Side::Green => "bluegreen-switchover",
        Side::Blue => "bluegreen-rollback",
    };
    Ok(switchover::run_as(provider, journal, kind, params, observer).await?)
}

/// One side, as `bluegreen status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SideStatus {
    pub side: Side,
    pub cluster: String,
    pub writer: String,
    pub serving: bool,
    pub instances: Vec<InventoryRow>,
}

/// `bluegreen status`: both sides, replication between them, and the guards of the next switch.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub deployment: Deployment,
    pub blue: SideStatus,
    pub green: SideStatus,
    /// The standby writer's replication from the serving writer, in transactions.
    pub standby_lag_transactions: Option<u64>,
    pub standby_lag_seconds: Option<u64>,
    /// Whether the standby writer replicates from the serving one without error.
    pub standby_replicating: bool,
    /// The guards of a switch to the standby side, run now (`None` if they could not run).
    pub guards: Option<GuardReport>,
    /// Why the guards could not run.
    pub guards_error: Option<String>,
}

/// Read both sides and run the guards of the next switch; changes nothing.
pub async fn status(provider: &dyn Provider, d: &Deployment) -> Result<Status, BlueGreenError> {
    let rows = inventory::inventory(provider).await?;
    let side = |s: Side| SideStatus {
        side: s,
        cluster: d.cluster(s).to_string(),
        writer: d.writer(s).to_string(),
        serving: d.serving == s,
        // A side's writer by id (on AWS a swap moves blue's name, and with it the cluster an
        // instance is listed under, to green's writer), its other instances by cluster.
        instances: rows
            .iter()
            .filter(|r| {
                r.id == d.writer(s) || (r.cluster == d.cluster(s) && r.id != d.writer(s.other()))
            })
            .cloned()
            .collect(),
    };
    let standby = d.serving.other();
    let standby_row = rows.iter().find(|r| r.id == d.writer(standby));
    let repl = standby_row.and_then(|r| r.replication.clone());
    let (guards, guards_error) =
        match switch_params(provider, d, standby, &SwitchOptions::default()).await {
            Ok(params) => match switchover::check(provider, &params).await {
                Ok(g) => (Some(g), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Err(e) => (None, Some(e.to_string())),
        };
    Ok(Status {
        deployment: d.clone(),
        blue: side(Side::Blue),
        green: side(Side::Green),
        standby_lag_transactions: repl.as_ref().and_then(|r| r.lag_transactions),
        standby_lag_seconds: repl.as_ref().and_then(|r| r.lag_seconds),
        standby_replicating: repl
            .as_ref()
            .is_some_and(|r| r.replicating && r.sql_running && r.io_running == "Yes"),
        guards,
        guards_error,
    })
}

/// Compare the serving side's writer with the standby writer that replicates from it, at one
/// GTID position (see [`crate::verify`]).
pub async fn verify(
    provider: &dyn Provider,
    d: &Deployment,
    opts: &crate::verify::VerifyOptions,
) -> Result<crate::verify::VerifyReport, BlueGreenError> {
    let creds = provider.credentials_for(&d.blue)?;
    let serving = provider.describe_instance(d.writer(d.serving)).await?;
    let standby = provider
        .describe_instance(d.writer(d.serving.other()))
        .await?;
    let blue = crate::connect_options(&creds, &creds.admin, &serving.endpoint);
    let green = crate::connect_options(&creds, &creds.admin, &standby.endpoint);
    Ok(crate::verify::verify(&blue, &green, opts).await?)
}

/// Remove the side that does not serve (the provider stops and deletes it); refuses while a
/// switch of this deployment is running or needs a human.
pub async fn cleanup(
    provider: &dyn Provider,
    journal: Option<&Journal>,
    d: &Deployment,
) -> Result<Vec<String>, BlueGreenError> {
    if let Some(j) = journal {
        let open = j
            .runs()
            .await
            .map_err(SwitchoverError::from)?
            .into_iter()
            .find(|r| {
                r.kind.starts_with("bluegreen")
                    && r.target == d.blue
                    && matches!(
                        r.status,
                        crate::journal::RunStatus::Running | crate::journal::RunStatus::NeedsHuman
                    )
            });
        if let Some(r) = open {
            return Err(BlueGreenError::BadInput(format!(
                "run {} ({}) of {} has not ended ({}); finish it with `dbshift resume {}` first",
                r.id, r.kind, d.name, r.status, r.id
            )));
        }
    }
    Ok(provider.remove_standby(&d.name).await?)
}
