//! Looking at the cluster: whether it is still what the run believes at each moment (the
//! name's writer, who is writable, who replicates from whom). Changes nothing.

use super::*;

/// What one server of the run said when the cluster was looked at.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    id: String,
    server_id: u32,
    port: u16,
    read_only: bool,
    /// `(source server_id once known, source port)` when configured as a replica.
    source: Option<(Option<u32>, Option<u16>)>,
}

/// The cluster as it is now: the name's writer by the provider, and each reachable server.
#[derive(Debug, Clone)]
pub(super) struct ClusterView {
    named_writer: Option<String>,
    seen: Vec<Seen>,
    unreachable: Vec<String>,
}

impl ClusterView {
    pub(super) fn get(&self, id: &str) -> Option<&Seen> {
        self.seen.iter().find(|s| s.id == id)
    }

    /// The writable servers other than `allowed`.
    pub(super) fn other_writers(&self, allowed: &[&str]) -> Vec<String> {
        self.seen
            .iter()
            .filter(|s| !s.read_only && !allowed.contains(&s.id.as_str()))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Whether `replica` replicates from `source` (by server_id once seen, else by port).
    pub(super) fn replicates_from(&self, replica: &str, source: &str) -> bool {
        match (self.get(replica), self.get(source)) {
            (Some(r), Some(s)) => match r.source {
                Some((Some(id), _)) => id == s.server_id,
                Some((None, port)) => port == Some(s.port),
                None => false,
            },
            _ => false,
        }
    }

    /// Whose replica `id` is, in words (`nobody`, `lab-1-3`, `127.0.0.1:port`).
    pub(super) fn source_of(&self, id: &str) -> String {
        match self.get(id).and_then(|s| s.source) {
            None => "nobody".into(),
            Some((sid, port)) => self
                .seen
                .iter()
                .find(|o| Some(o.server_id) == sid || (sid.is_none() && Some(o.port) == port))
                .map(|o| o.id.clone())
                .unwrap_or_else(|| format!("port {}", port.unwrap_or(0))),
        }
    }
}

/// When the cluster is looked at, and what it must be then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Moment {
    /// Before the fence (and before the guards on a resume): `from` is the named writer and
    /// nobody's replica, `to` its replica, nobody else writable.
    BeforeFence,
    /// Before putting the old writer back: it is still the named writer and nobody's replica,
    /// nobody else writable.
    BeforeRollback,
    /// After the wait, before the point of no return: as before the fence.
    BeforePointOfNoReturn,
    /// Before the new writer is made writable: the name at `from` or `to`, nobody writable
    /// but `to` (when a resumed run had promoted it already).
    BeforePromote,
    /// A resumed run: the named writer is this run's old or new writer, nobody else writable.
    Resume,
}

/// Look at the cluster: the provider's writer of the name, and `read_only` and the source
/// of each server of the run. One short connection attempt per server.
pub(super) async fn observe(
    provider: &dyn Provider,
    creds: &Credentials,
    endpoints: &Endpoints,
    p: &SwitchoverParams,
) -> StepResult<ClusterView> {
    let clusters = provider
        .list_clusters()
        .await
        .map_err(|e| StepError::from(e).context("listing the clusters"))?;
    let named_writer = clusters
        .iter()
        .find(|c| c.name == p.cluster)
        .map(|c| c.writer.clone());
    let mut ids = vec![p.from.clone(), p.to.clone()];
    ids.extend(p.siblings.iter().cloned());
    ids.extend(p.followers.iter().cloned());
    let looks = ids.into_iter().map(|id| async move {
        let Ok(ep) = endpoints.get(provider, &id).await else {
            return Err(id);
        };
        let opts = crate::connect_options(creds, &creds.admin, &ep)
            .connect_timeout(Duration::from_secs(2));
        let look = async {
            let mut s = Server::connect(&opts).await?;
            let read_only = s.read_only().await?;
            let st = s.replication_status().await?;
            let server_id = s.server_id();
            s.close().await;
            Ok::<_, dbshift_db::Error>((server_id, read_only, st))
        };
        match tokio::time::timeout(LOOK_TIMEOUT, look).await {
            Ok(Ok((server_id, read_only, st))) => Ok(Seen {
                id,
                server_id,
                port: ep.port,
                read_only,
                source: st
                    .configured
                    .then_some((st.source_server_id, st.source_port)),
            }),
            _ => Err(id),
        }
    });
    let mut seen = Vec::new();
    let mut unreachable = Vec::new();
    for r in futures::future::join_all(looks).await {
        match r {
            Ok(s) => seen.push(s),
            Err(id) => unreachable.push(id),
        }
    }
    Ok(ClusterView {
        named_writer,
        seen,
        unreachable,
    })
}

/// Whether the cluster is still what this run believes at `moment`: `Ok(None)` if so,
/// `Ok(Some(what differs))` if not.
pub(super) async fn cluster_changed(
    provider: &dyn Provider,
    creds: &Credentials,
    endpoints: &Endpoints,
    p: &SwitchoverParams,
    moment: Moment,
    renaming: bool,
) -> StepResult<Option<String>> {
    let v = observe(provider, creds, endpoints, p).await?;
    let (from, to) = (p.from.as_str(), p.to.as_str());
    let named = v.named_writer.clone().unwrap_or_else(|| "nothing".into());
    let mut wrong = Vec::new();
    let name_ok: &[&str] = match moment {
        Moment::BeforeFence | Moment::BeforeRollback | Moment::BeforePointOfNoReturn => &[from],
        Moment::BeforePromote | Moment::Resume => &[from, to],
    };
    let between_holders = renaming && v.named_writer.is_none();
    // Only a run that moves the name can judge by it: with the proxy (or hooks) moving
    // clients, the provider may keep the name where it was (AWS keeps blue's), and the
    // servers' own roles below are the evidence.
    if p.redirect == Redirect::Name && !name_ok.contains(&named.as_str()) && !between_holders {
        wrong.push(format!(
            "{} resolves to {named}, not {}",
            p.cluster,
            name_ok.join(" or ")
        ));
    }
    let writable_ok: &[&str] = match moment {
        Moment::BeforeFence | Moment::BeforeRollback | Moment::BeforePointOfNoReturn => &[from],
        Moment::BeforePromote => &[to],
        Moment::Resume => &[from, to],
    };
    let others = v.other_writers(writable_ok);
    if !others.is_empty() {
        wrong.push(format!("{} writable", others.join(", ")));
    }
    if matches!(
        moment,
        Moment::BeforeFence | Moment::BeforeRollback | Moment::BeforePointOfNoReturn
    ) && v.get(from).is_some_and(|s| s.source.is_some())
    {
        wrong.push(format!("{from} is now a replica of {}", v.source_of(from)));
    }
    if matches!(moment, Moment::BeforeFence | Moment::BeforePointOfNoReturn)
        && v.get(from).is_some()
        && v.get(to).is_some()
        && !v.replicates_from(to, from)
    {
        wrong.push(format!(
            "{to} replicates from {}, not {from}",
            v.source_of(to)
        ));
    }
    if moment == Moment::Resume && v.seen.is_empty() {
        wrong.push(format!(
            "no server of the run answers ({})",
            v.unreachable.join(", ")
        ));
    }
    Ok((!wrong.is_empty()).then(|| wrong.join("; ")))
}
