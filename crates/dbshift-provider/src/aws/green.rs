//! Blue/green on AWS, the dbshift way: snapshot of blue, a copy encrypted with a KMS key,
//! a restore with blue's settings (engine version, parameter group, subnet group, security
//! groups, class), then the SQL half: green's writer replicates from blue's writer through the
//! `mysql.rds_*` procedures from the exact position the restore recovered to.
//!
//! A finished restore is never thrown away: when the SQL half cannot run (no database
//! credentials, servers unreachable from here), the build stops with
//! [`Error::NeedsHuman`] naming what exists and how to continue or clean up. The deployment is
//! recorded as tags on the resources, nowhere else.

use std::time::SystemTime;

use aws_sdk_rds::types::{DbInstance, Tag};
use dbshift_db::dialect::{SourceSpec, SourceStart};
use dbshift_db::server::ConnectOptions;
use dbshift_db::{BinlogPosition, Server};

use super::errors::platform;
use super::{
    AwsProvider, TAG_BLUE, TAG_DEPLOYMENT, TAG_ID, TAG_SERVES, TAG_SIDE, TAG_SOURCE_POSITION,
};
use crate::model::{Deployment, Endpoint, GreenSpec, Side};
use crate::provider::Fleet;
use crate::{Error, Result};

/// What the control-plane half built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GreenBuilt {
    /// The snapshot of blue (instance or cluster snapshot).
    pub snapshot: String,
    /// The encrypted copy, when asked.
    pub encrypted_copy: Option<String>,
    /// Green's Aurora cluster, when blue is one.
    pub cluster: Option<String>,
    /// Green's writer instance.
    pub writer: String,
}

/// MySQL's recovery event on a restored instance: "Binlog position from crash recovery is
/// mysql-bin-changelog.000003 4278".
pub fn parse_recovery_position(message: &str) -> Option<BinlogPosition> {
    let rest = message
        .split("Binlog position from crash recovery is")
        .nth(1)?;
    let mut words = rest.split_whitespace();
    let file = words.next()?.to_string();
    let pos = words.next()?.trim_end_matches('.').parse().ok()?;
    Some(BinlogPosition { file, pos })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn wait_snapshot(p: &AwsProvider, id: &str, cluster: bool) -> Result<()> {
    p.wait_for(&format!("snapshot {id} to be available"), || async {
        let status = if cluster {
            p.client
                .describe_db_cluster_snapshots()
                .db_cluster_snapshot_identifier(id)
                .send()
                .await
                .map_err(|e| platform("DescribeDBClusterSnapshots", id, e))?
                .db_cluster_snapshots()
                .first()
                .and_then(|s| s.status().map(str::to_string))
        } else {
            p.client
                .describe_db_snapshots()
                .db_snapshot_identifier(id)
                .send()
                .await
                .map_err(|e| platform("DescribeDBSnapshots", id, e))?
                .db_snapshots()
                .first()
                .and_then(|s| s.status().map(str::to_string))
        };
        match status.as_deref() {
            Some("available") => Ok(Some(())),
            Some("failed") | Some("error") => Err(Error::Platform {
                operation: "snapshot".into(),
                target: id.into(),
                code: "SnapshotFailed".into(),
                message: "RDS reports the snapshot failed; delete it and run again".into(),
            }),
            _ => Ok(None),
        }
    })
    .await
}

/// The deployment's tags on an instance whose identifier (and stable id) is `id`.
fn deployment_tags(name: &str, blue: &str, side: Side, id: &str) -> Vec<Tag> {
    vec![
        Tag::builder().key(TAG_ID).value(id).build(),
        Tag::builder().key(TAG_DEPLOYMENT).value(name).build(),
        Tag::builder().key(TAG_BLUE).value(blue).build(),
        Tag::builder().key(TAG_SIDE).value(side.to_string()).build(),
    ]
}

/// Green's parameter group: a copy of blue's custom group of its own (`<name>-params`), so
/// that a fence by the group's `read_only` on one side never reaches the other; blue's
/// default group as it is (RDS lets no one change those: such a pair is fenced by the proxy).
async fn green_parameter_group(
    p: &AwsProvider,
    spec: &GreenSpec,
    src: &DbInstance,
) -> Result<Option<String>> {
    let Some(blue_group) = src
        .db_parameter_groups()
        .first()
        .and_then(|g| g.db_parameter_group_name())
    else {
        return Ok(None);
    };
    if blue_group.starts_with("default.") {
        return Ok(Some(blue_group.to_string()));
    }
    let own = format!("{}-params", spec.name);
    let exists = p
        .client
        .describe_db_parameter_groups()
        .db_parameter_group_name(&own)
        .send()
        .await
        .is_ok_and(|o| !o.db_parameter_groups().is_empty());
    if !exists {
        tracing::info!(from = blue_group, to = %own, "CopyDBParameterGroup (green's own group)");
        p.client
            .copy_db_parameter_group()
            .source_db_parameter_group_identifier(blue_group)
            .target_db_parameter_group_identifier(&own)
            .target_db_parameter_group_description(format!(
                "dbshift: green {} of {}, copied from {blue_group}",
                spec.name, spec.source
            ))
            .send()
            .await
            .map_err(|e| platform("CopyDBParameterGroup", blue_group, e))?;
    }
    Ok(Some(own))
}

/// Snapshot -> encrypted copy -> restore of a standalone instance, settings from the source.
async fn build_instance(p: &AwsProvider, spec: &GreenSpec, src: &DbInstance) -> Result<GreenBuilt> {
    let blue = spec.source.as_str();
    let snap = format!("{}-snap-{}", spec.name, unix());
    tracing::info!(source = blue, snapshot = %snap, "CreateDBSnapshot");
    p.client
        .create_db_snapshot()
        .db_instance_identifier(blue)
        .db_snapshot_identifier(&snap)
        .send()
        .await
        .map_err(|e| platform("CreateDBSnapshot", blue, e))?;
    wait_snapshot(p, &snap, false).await?;
    let mut restore_from = snap.clone();
    let mut encrypted_copy = None;
    if spec.encrypt {
        let copy = format!("{snap}-enc");
        tracing::info!(snapshot = %snap, copy = %copy, kms_key = %p.opts.kms_key, "CopyDBSnapshot with a KMS key");
        p.client
            .copy_db_snapshot()
            .source_db_snapshot_identifier(&snap)
            .target_db_snapshot_identifier(&copy)
            .kms_key_id(&p.opts.kms_key)
            .copy_tags(true)
            .send()
            .await
            .map_err(|e| platform("CopyDBSnapshot", &snap, e))?;
        wait_snapshot(p, &copy, false).await?;
        restore_from = copy.clone();
        encrypted_copy = Some(copy);
    }
    let mut req = p
        .client
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(&spec.name)
        .db_snapshot_identifier(&restore_from)
        .set_db_instance_class(src.db_instance_class().map(str::to_string))
        .set_multi_az(src.multi_az())
        .set_publicly_accessible(src.publicly_accessible())
        .set_db_subnet_group_name(
            src.db_subnet_group()
                .and_then(|g| g.db_subnet_group_name())
                .map(str::to_string),
        )
        .set_db_parameter_group_name(green_parameter_group(p, spec, src).await?)
        // A default option group is what the restore gets anyway (and naming one fails).
        .set_option_group_name(
            src.option_group_memberships()
                .first()
                .and_then(|g| g.option_group_name())
                .filter(|g| !g.starts_with("default:"))
                .map(str::to_string),
        );
    for sg in src.vpc_security_groups() {
        if let Some(id) = sg.vpc_security_group_id() {
            req = req.vpc_security_group_ids(id);
        }
    }
    for t in deployment_tags(&spec.name, blue, Side::Green, &spec.name) {
        req = req.tags(t);
    }
    tracing::info!(green = %spec.name, from = %restore_from, "RestoreDBInstanceFromDBSnapshot");
    req.send()
        .await
        .map_err(|e| platform("RestoreDBInstanceFromDBSnapshot", &spec.name, e))?;
    p.wait_instance(&spec.name, "available", |_| true).await?;
    Ok(GreenBuilt {
        snapshot: snap,
        encrypted_copy,
        cluster: None,
        writer: spec.name.clone(),
    })
}

/// The same for an Aurora cluster: cluster snapshot, encrypted copy, cluster restore, then a
/// writer instance in blue's writer's class.
async fn build_cluster(p: &AwsProvider, spec: &GreenSpec) -> Result<GreenBuilt> {
    let blue = spec.source.as_str();
    let src = p
        .describe_db_cluster(blue)
        .await?
        .ok_or_else(|| Error::Unknown {
            kind: "cluster",
            name: blue.to_string(),
            known: "see `dbshift --provider aws inventory`".into(),
        })?;
    let snap = format!("{}-snap-{}", spec.name, unix());
    tracing::info!(source = blue, snapshot = %snap, "CreateDBClusterSnapshot");
    p.client
        .create_db_cluster_snapshot()
        .db_cluster_identifier(blue)
        .db_cluster_snapshot_identifier(&snap)
        .send()
        .await
        .map_err(|e| platform("CreateDBClusterSnapshot", blue, e))?;
    wait_snapshot(p, &snap, true).await?;
    let mut restore_from = snap.clone();
    let mut encrypted_copy = None;
    if spec.encrypt {
        let copy = format!("{snap}-enc");
        tracing::info!(snapshot = %snap, copy = %copy, "CopyDBClusterSnapshot with a KMS key");
        p.client
            .copy_db_cluster_snapshot()
            .source_db_cluster_snapshot_identifier(&snap)
            .target_db_cluster_snapshot_identifier(&copy)
            .kms_key_id(&p.opts.kms_key)
            .copy_tags(true)
            .send()
            .await
            .map_err(|e| platform("CopyDBClusterSnapshot", &snap, e))?;
        wait_snapshot(p, &copy, true).await?;
        restore_from = copy.clone();
        encrypted_copy = Some(copy);
    }
    let mut req = p
        .client
        .restore_db_cluster_from_snapshot()
        .db_cluster_identifier(&spec.name)
        .snapshot_identifier(&restore_from)
        .engine(src.engine().unwrap_or("aurora-mysql"))
        .set_engine_version(src.engine_version().map(str::to_string))
        .set_db_cluster_parameter_group_name(src.db_cluster_parameter_group().map(str::to_string))
        .set_db_subnet_group_name(src.db_subnet_group().map(str::to_string));
    for sg in src.vpc_security_groups() {
        if let Some(id) = sg.vpc_security_group_id() {
            req = req.vpc_security_group_ids(id);
        }
    }
    for t in deployment_tags(&spec.name, blue, Side::Green, &spec.name) {
        req = req.tags(t);
    }
    tracing::info!(green = %spec.name, from = %restore_from, "RestoreDBClusterFromSnapshot");
    req.send()
        .await
        .map_err(|e| platform("RestoreDBClusterFromSnapshot", &spec.name, e))?;
    let name = spec.name.clone();
    p.wait_for(&format!("cluster {name} to be available"), || async {
        Ok(p.describe_db_cluster(&name)
            .await?
            .filter(|c| c.status() == Some("available"))
            .map(|_| ()))
    })
    .await?;
    let blue_writer = src
        .db_cluster_members()
        .iter()
        .find(|m| m.is_cluster_writer() == Some(true))
        .and_then(|m| m.db_instance_identifier())
        .unwrap_or_default()
        .to_string();
    let class = p
        .describe_db_instance(&blue_writer)
        .await?
        .db_instance_class()
        .unwrap_or("db.r6g.large")
        .to_string();
    let writer = format!("{}-1", spec.name);
    tracing::info!(cluster = %spec.name, writer = %writer, "CreateDBInstance (green's writer)");
    let mut req = p
        .client
        .create_db_instance()
        .db_instance_identifier(&writer)
        .db_cluster_identifier(&spec.name)
        .engine(src.engine().unwrap_or("aurora-mysql"))
        .db_instance_class(class);
    for t in deployment_tags(&spec.name, blue, Side::Green, &writer) {
        req = req.tags(t);
    }
    req.send()
        .await
        .map_err(|e| platform("CreateDBInstance", &writer, e))?;
    p.wait_instance(&writer, "available", |_| true).await?;
    Ok(GreenBuilt {
        snapshot: snap,
        encrypted_copy,
        cluster: Some(spec.name.clone()),
        writer,
    })
}

/// The restored instance's recovery position from its events, if RDS reported one.
async fn recovery_event(p: &AwsProvider, id: &str) -> Result<Option<BinlogPosition>> {
    let events = p
        .client
        .describe_events()
        .source_identifier(id)
        .source_type(aws_sdk_rds::types::SourceType::DbInstance)
        .duration(24 * 60)
        .send()
        .await
        .map_err(|e| platform("DescribeEvents", id, e))?;
    Ok(events
        .events()
        .iter()
        .rev()
        .filter_map(|e| e.message().and_then(parse_recovery_position))
        .next())
}

/// Where green starts replicating from blue: MariaDB green's own GTID position (the restore
/// holds exactly what it recovered), MySQL the recovery event or green's binlog coordinates
/// (`SHOW BINARY LOG STATUS` on 8.4, `SHOW MASTER STATUS` before).
pub async fn resume_position(
    green: &mut Server,
    recovery: Option<BinlogPosition>,
) -> Result<SourceStart> {
    if green.flavor().is_mariadb() {
        return Ok(SourceStart::GtidAt(green.gtid_binlog_pos().await?));
    }
    if let Some(pos) = recovery {
        return Ok(SourceStart::File(pos));
    }
    match green.binlog_position().await? {
        Some(pos) => Ok(SourceStart::File(pos)),
        None => Err(Error::NeedsHuman(
            "green has no binary log position (binary logging off: set a backup retention \
             period on it) and RDS reported no recovery event"
                .into(),
        )),
    }
}

/// The SQL half of a green on RDS, given endpoints: binlog retention on blue, green's resume
/// position, `mysql.rds_set_external_master(_gtid)` (or `_source`) on green, then
/// `mysql.rds_start_replication`. Gives the position green started from.
pub async fn start_green_replication(
    creds: &crate::Credentials,
    blue: &Endpoint,
    green: &Endpoint,
    recovery: Option<BinlogPosition>,
    retention_hours: u32,
) -> Result<String> {
    let connect = |ep: &Endpoint| {
        let mut o = ConnectOptions::new(ep.host.clone(), ep.port, creds.admin.user.clone())
            .password(creds.admin.password.clone())
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Some(ca) = &creds.ca_bundle {
            o = o.tls(dbshift_db::server::TlsOptions {
                ca_path: ca.clone(),
                verify_identity: true,
            });
        }
        o
    };
    let mut b = Server::connect(&connect(blue)).await?;
    tracing::info!(blue = %blue, hours = retention_hours, "mysql.rds_set_configuration binlog retention hours");
    b.exec_sql(&format!(
        "CALL mysql.rds_set_configuration('binlog retention hours', {retention_hours})"
    ))
    .await?;
    b.close().await;
    let mut g = Server::connect(&connect(green)).await?;
    let start = resume_position(&mut g, recovery).await?;
    let shown = match &start {
        SourceStart::GtidAt(p) => p.to_string(),
        SourceStart::File(p) => p.to_string(),
        other => format!("{other:?}"),
    };
    // Encrypted; the procedures cannot verify the source's certificate (RDS needs
    // mysql.rds_import_binlog_ssl_material for that).
    let spec = SourceSpec {
        host: blue.host.clone(),
        port: blue.port,
        user: creds.replication.user.clone(),
        password: creds.replication.password.clone(),
        start,
        ssl: Some(dbshift_db::dialect::SslSpec {
            ca_path: None,
            verify_server_cert: false,
        }),
        connect_retry_s: None,
        // The rds_* procedures take no heartbeat period.
        heartbeat_period_ms: None,
    };
    tracing::info!(green = %green, from = %shown, "pointing green at blue (mysql.rds_set_external_*)");
    g.point_replica_at(&spec).await?;
    g.start_replication().await?;
    g.close().await;
    Ok(shown)
}

/// Build green on AWS (see the module doc).
pub async fn create_green(p: &AwsProvider, spec: &GreenSpec) -> Result<Deployment> {
    if spec.engine_binary.is_some() {
        return Err(Error::BadInput(
            "--engine-binary is for the local lab; on AWS upgrade green after it is built \
             (ModifyDBInstance EngineVersion) before the switchover"
                .into(),
        ));
    }
    let aurora = p.describe_db_cluster(&spec.source).await?;
    let green_writer = match &aurora {
        Some(_) => format!("{}-1", spec.name),
        None => spec.name.clone(),
    };
    // Run again after a stop for a human: green built before is reused, not rebuilt.
    let existing = match p.describe_db_instance(&green_writer).await {
        Ok(d) => {
            let t = super::describe::tags(d.tag_list());
            if t.get(TAG_DEPLOYMENT) != Some(&spec.name)
                || t.get(TAG_BLUE) != Some(&spec.source)
                || t.get(TAG_SIDE).map(String::as_str) != Some("green")
            {
                return Err(Error::BadInput(format!(
                    "{green_writer} exists and is not green of deployment {} from {}: pick \
                     another --name",
                    spec.name, spec.source
                )));
            }
            tracing::info!(green = %green_writer, "green exists already (built by an earlier run): reusing it");
            p.wait_instance(&green_writer, "available", |_| true)
                .await?;
            Some(GreenBuilt {
                snapshot: "(taken by an earlier run)".into(),
                encrypted_copy: None,
                cluster: aurora.as_ref().map(|_| spec.name.clone()),
                writer: green_writer.clone(),
            })
        }
        Err(Error::Unknown { .. }) => None,
        Err(e) => return Err(e),
    };
    let blue_writer = match &aurora {
        Some(c) => c
            .db_cluster_members()
            .iter()
            .find(|m| m.is_cluster_writer() == Some(true))
            .and_then(|m| m.db_instance_identifier())
            .unwrap_or_default()
            .to_string(),
        None => spec.source.clone(),
    };
    let built = match (existing, &aurora) {
        (Some(b), _) => b,
        (None, Some(_)) => build_cluster(p, spec).await?,
        (None, None) => {
            let src = p.describe_db_instance(&spec.source).await?;
            build_instance(p, spec, &src).await?
        }
    };
    let blue_arn = match &aurora {
        Some(c) => c.db_cluster_arn().map(str::to_string),
        None => p
            .describe_db_instance(&spec.source)
            .await?
            .db_instance_arn()
            .map(str::to_string),
    };
    if aurora.is_none() {
        let d = p.describe_db_instance(&spec.source).await?;
        p.ensure_stable_id(&d).await?;
    }
    if let Some(arn) = &blue_arn {
        p.tag(
            arn,
            &[
                (TAG_DEPLOYMENT, spec.name.as_str()),
                (TAG_BLUE, spec.source.as_str()),
                (TAG_SIDE, "blue"),
            ],
        )
        .await?;
    }
    let what = format!(
        "built: snapshot {}{}, green {} (writer {}), tagged {TAG_DEPLOYMENT}={}",
        built.snapshot,
        built
            .encrypted_copy
            .as_ref()
            .map(|c| format!(", encrypted copy {c} (KMS key {})", p.opts.kms_key))
            .unwrap_or_default(),
        built.cluster.as_deref().unwrap_or(&built.writer),
        built.writer,
        spec.name,
    );
    let cleanup = match &built.cluster {
        Some(c) => format!(
            "aws rds delete-db-instance --db-instance-identifier {} --skip-final-snapshot; aws rds \
             delete-db-cluster --db-cluster-identifier {c} --skip-final-snapshot",
            built.writer
        ),
        None => format!(
            "aws rds delete-db-instance --db-instance-identifier {} --skip-final-snapshot",
            built.writer
        ),
    };
    let creds = match p.db_credentials() {
        Ok(c) => c,
        Err(_) => {
            return Err(Error::NeedsHuman(format!(
                "{what}. Green does not replicate yet: no database credentials are configured \
                 (DBSHIFT_DB_USER / DBSHIFT_DB_PASSWORD). To continue, set them (and \
                 DBSHIFT_AWS_ENDPOINTS if the servers are reached through a tunnel) and run the \
                 same command again: it reuses green and runs the SQL half; to clean up: {cleanup}"
            )))
        }
    };
    let blue_ep = p.resolve(&blue_writer).await?;
    let green_ep = p.resolve(&built.writer).await?;
    let recovery = recovery_event(p, &built.writer).await?;
    let position = match start_green_replication(&creds, &blue_ep, &green_ep, recovery, 24).await {
        Ok(pos) => pos,
        Err(e) => {
            return Err(Error::NeedsHuman(format!(
                "{what}. Green does not replicate: the SQL half failed ({e}; blue {blue_ep}, green \
                 {green_ep}). Fix the access (DBSHIFT_AWS_ENDPOINTS for tunnels, security groups) \
                 and run the same command again (it reuses green), or clean up: {cleanup}"
            )))
        }
    };
    let green_arn = p
        .describe_db_instance(&built.writer)
        .await?
        .db_instance_arn()
        .map(str::to_string);
    if let Some(arn) = green_arn {
        p.tag(&arn, &[(TAG_SOURCE_POSITION, position.as_str())])
            .await?;
    }
    Ok(Deployment {
        name: spec.name.clone(),
        blue: spec.source.clone(),
        green: built
            .cluster
            .clone()
            .unwrap_or_else(|| built.writer.clone()),
        blue_writer,
        green_writer: built.writer.clone(),
        serving: Side::Blue,
        source_position: position,
        snapshot_taken_on: spec.source.clone(),
        encrypted: spec.encrypt,
        engine_binary: None,
        created_at: now_rfc3339(),
    })
}

/// The deployments recorded in tags: a green-side instance names its deployment and blue;
/// blue's writer is the instance tagged blue of the same deployment. Green serves once it
/// holds blue's name (a rename swap moved it there; ids are the stable ones, [`TAG_ID`]).
pub async fn deployments(p: &AwsProvider) -> Result<Vec<Deployment>> {
    let instances = p.list_instances().await?;
    let clusters = p.list_clusters().await?;
    let mut out = Vec::new();
    for g in instances
        .iter()
        .filter(|i| i.tags.get(TAG_SIDE).map(String::as_str) == Some("green"))
    {
        let (Some(name), Some(blue)) = (g.tags.get(TAG_DEPLOYMENT), g.tags.get(TAG_BLUE)) else {
            continue;
        };
        // Aurora green: cluster NAME, writer NAME-1; a standalone green is NAME itself.
        let aurora = &g.id != name;
        let blue_writer = instances
            .iter()
            .find(|i| {
                i.tags.get(TAG_DEPLOYMENT) == Some(name)
                    && i.tags.get(TAG_SIDE).map(String::as_str) == Some("blue")
            })
            .map(|i| i.id.clone())
            .or_else(|| {
                clusters
                    .iter()
                    .find(|c| &c.name == blue)
                    .map(|c| c.writer.clone())
            })
            .unwrap_or_else(|| blue.clone());
        // The serving record of the last redirect, else who holds blue's name.
        let serving = if g.tags.get(TAG_SERVES) == Some(blue) {
            Side::Green
        } else if instances
            .iter()
            .any(|i| i.id == blue_writer && i.tags.get(TAG_SERVES) == Some(blue))
        {
            Side::Blue
        } else if !aurora && &g.cluster == blue {
            Side::Green
        } else {
            Side::Blue
        };
        out.push(Deployment {
            name: name.clone(),
            blue: blue.clone(),
            green: name.clone(),
            blue_writer,
            green_writer: g.id.clone(),
            serving,
            source_position: g.tags.get(TAG_SOURCE_POSITION).cloned().unwrap_or_default(),
            snapshot_taken_on: blue.clone(),
            encrypted: g.encrypted,
            engine_binary: None,
            created_at: String::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_event_is_parsed() {
        let p = parse_recovery_position(
            "Binlog position from crash recovery is mysql-bin-changelog.000003 4278",
        )
        .unwrap();
        assert_eq!(p.file, "mysql-bin-changelog.000003");
        assert_eq!(p.pos, 4278);
        assert!(parse_recovery_position("DB instance restarted").is_none());
        assert!(parse_recovery_position("Binlog position from crash recovery is x").is_none());
    }
}
