//! The plan of a rollout, made before anything runs: per cluster the readers then the
//! writer, what is skipped and why, the estimate, and the fleet's fingerprint.

use super::*;

/// What each kind of action is expected to cost, for the estimate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Costs {
    pub no_restart_ms: u64,
    pub restart_ms: u64,
    pub switchover_ms: u64,
    /// Starting and stopping a stopped instance, on top of its change.
    pub start_stop_ms: u64,
}

impl Default for Costs {
    /// Measured on the local lab (docs/ca-rotation.md: 36 small servers, 2 cores); a cloud
    /// provider's are minutes.
    fn default() -> Self {
        Costs {
            no_restart_ms: 100,
            restart_ms: 600,
            switchover_ms: 700,
            start_stop_ms: 800,
        }
    }
}

impl Costs {
    /// RDS and Aurora, as AWS documents them: a CA change without restart about a minute of
    /// control-plane work, with a restart a few minutes, an Aurora failover about a minute,
    /// starting a stopped instance several. Rough: the run reports the real durations.
    pub fn cloud() -> Self {
        Costs {
            no_restart_ms: 60_000,
            restart_ms: 300_000,
            switchover_ms: 60_000,
            start_stop_ms: 600_000,
        }
    }

    pub(super) fn of(&self, action: &Action, cooldown_ms: u64) -> u64 {
        let raw = match action {
            Action::NoRestart => self.no_restart_ms,
            Action::Restart => self.restart_ms,
            Action::Switchover { .. } => self.switchover_ms,
            Action::StartChangeStop { restart } => {
                self.start_stop_ms
                    + if *restart {
                        self.restart_ms
                    } else {
                        self.no_restart_ms
                    }
            }
            Action::Skip { .. } => return 0,
        };
        // The cooldown is a floor per instance change, not for the switchover.
        if matches!(action, Action::Switchover { .. }) {
            raw
        } else {
            raw.max(cooldown_ms)
        }
    }
}

/// The time the plan is expected to take.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Estimate {
    /// Every action one after the other.
    pub serial_ms: u64,
    /// Clusters on `concurrency` slots in plan order, each as soon as a slot frees: the
    /// critical path of the rollout.
    pub critical_path_ms: u64,
    pub costs: Costs,
}

/// The longest slot when `durations` (in order) go to `k` slots, each to the first free one.
pub fn critical_path(durations: &[u64], k: usize) -> u64 {
    let mut slots = vec![0u64; k.max(1)];
    for d in durations {
        let (i, _) = slots
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| **t)
            .expect("at least one slot");
        slots[i] += d;
    }
    slots.into_iter().max().unwrap_or(0)
}

/// A `--filter`: a glob on cluster names and instance ids, or `tag=value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Filter {
    Name(String),
    Tag(String, String),
}

/// A `--filter` that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("an empty --filter matches nothing")]
    Empty,
    /// `=value` without a tag name.
    #[error("--filter {0:?}: a tag filter is name=value")]
    NoTagName(String),
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(FilterError::Empty);
        }
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(Filter::Tag(k.to_string(), v.to_string())),
            Some(_) => Err(FilterError::NoTagName(s.to_string())),
            None => Ok(Filter::Name(s.to_string())),
        }
    }

    pub(super) fn matches(&self, inst: &Instance) -> bool {
        match self {
            Filter::Name(g) => glob(g, &inst.cluster) || glob(g, &inst.id),
            Filter::Tag(k, v) => inst.tags.get(k).is_some_and(|x| x == v),
        }
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::Name(g) => f.write_str(g),
            Filter::Tag(k, v) => write!(f, "{k}={v}"),
        }
    }
}

/// `*` any run of characters, `?` one character; everything else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether `inst` is in scope: it matches one of the name globs (if any) and every tag filter.
pub fn in_scope(filters: &[Filter], inst: &Instance) -> bool {
    let names: Vec<&Filter> = filters
        .iter()
        .filter(|f| matches!(f, Filter::Name(_)))
        .collect();
    let name_ok = names.is_empty() || names.iter().any(|f| f.matches(inst));
    let tags_ok = filters
        .iter()
        .filter(|f| matches!(f, Filter::Tag(..)))
        .all(|f| f.matches(inst));
    name_ok && tags_ok
}

/// Clusters in natural order: lab-2 before lab-10.
pub(super) fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((std::mem::take(&mut text), num.parse().unwrap_or(u64::MAX)));
                num.clear();
            }
            text.push(c);
        }
    }
    out.push((text, num.parse().unwrap_or(0)));
    out
}

/// The plan's inputs that are not the fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanOptions {
    /// The journal kind of the rollout, e.g. `ca-rotate`.
    pub kind: String,
    /// What the instances are moved to, e.g. a CA id.
    pub target: String,
    pub mode: Mode,
    pub concurrency: usize,
    pub cooldown_ms: u64,
    pub start_stopped: bool,
    pub max_failures: usize,
    pub filters: Vec<Filter>,
    pub costs: Costs,
}

/// A rollout plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub options: PlanOptions,
    pub clusters: Vec<ClusterPlan>,
    pub estimate: Estimate,
    /// Of the fleet in scope when the plan was made (instances, roles, values, statuses).
    pub fingerprint: String,
    pub to_change: usize,
    pub skipped: usize,
}

/// The fingerprint of the fleet a plan is made for: every instance of the clusters in scope,
/// its role, value (CA), status, and each cluster's writer. FNV-1a, hex.
pub fn fingerprint(clusters: &[&Cluster], instances: &[&Instance]) -> String {
    let mut lines: Vec<String> = instances
        .iter()
        .map(|i| format!("{}|{}|{}|{}|{}", i.id, i.cluster, i.role, i.ca, i.status))
        .collect();
    lines.extend(clusters.iter().map(|c| format!("{}>{}", c.name, c.writer)));
    lines.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lines.join("\n").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Make the plan. `done(instance)` says whether the provider already shows it changed (the
/// servers are asked again at execution). Bad input: concurrency 0, a filter matching nothing.
pub fn build_plan(
    opts: PlanOptions,
    clusters: &[Cluster],
    instances: &[Instance],
    done: &dyn Fn(&Instance) -> bool,
) -> Result<Plan, RolloutError> {
    if opts.concurrency == 0 {
        return Err(RolloutError::BadInput(
            "--concurrency must be at least 1".into(),
        ));
    }
    for f in &opts.filters {
        if !instances.iter().any(|i| f.matches(i)) {
            return Err(RolloutError::BadInput(format!(
                "--filter {f} matches no instance; clusters: {}",
                clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let scope: Vec<&Instance> = instances
        .iter()
        .filter(|i| in_scope(&opts.filters, i))
        .collect();
    if scope.is_empty() {
        return Err(RolloutError::BadInput(format!(
            "the filters {} together match no instance",
            opts.filters
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut in_clusters: Vec<&Cluster> = clusters
        .iter()
        .filter(|c| scope.iter().any(|i| i.cluster == c.name))
        .collect();
    in_clusters.sort_by_key(|c| natural_key(&c.name));
    let cooldown = opts.cooldown_ms;
    let mut plans = Vec::new();
    for c in &in_clusters {
        let members: Vec<&Instance> = instances.iter().filter(|i| i.cluster == c.name).collect();
        let mut readers: Vec<&&Instance> = members
            .iter()
            .filter(|i| i.id != c.writer && scope.iter().any(|s| s.id == i.id))
            .collect();
        readers.sort_by_key(|i| natural_key(&i.id));
        let mut steps = Vec::new();
        let mut notes = Vec::new();
        let step_for = |i: &Instance, restart: bool| -> Action {
            if done(i) {
                Action::Skip {
                    reason: format!("already on {}", opts.target),
                }
            } else if i.status == InstanceStatus::Stopped && !opts.start_stopped {
                Action::Skip {
                    reason: "stopped (--start-stopped to include it)".into(),
                }
            } else if i.status == InstanceStatus::Stopped {
                Action::StartChangeStop { restart }
            } else if restart {
                Action::Restart
            } else {
                Action::NoRestart
            }
        };
        let reader_restart = opts.mode != Mode::NoRestart;
        for r in &readers {
            steps.push((r, step_for(r, reader_restart)));
        }
        let writer = members
            .iter()
            .find(|i| i.id == c.writer)
            .filter(|w| scope.iter().any(|s| s.id == w.id));
        let mut writer_steps = Vec::new();
        if let Some(w) = writer {
            let base = step_for(w, opts.mode != Mode::NoRestart);
            match (&base, opts.mode) {
                (Action::Restart, Mode::FailoverFirst) => {
                    // A reader that will be changed before the writer, or already is, and runs.
                    let candidate = members.iter().find(|r| {
                        r.id != w.id
                            && r.status == InstanceStatus::Available
                            && (done(r)
                                || steps
                                    .iter()
                                    .any(|(s, a)| s.id == r.id && *a == Action::Restart))
                    });
                    match candidate {
                        Some(to) => {
                            writer_steps.push((w, Action::Switchover { to: to.id.clone() }));
                            writer_steps.push((w, Action::Restart));
                        }
                        None => {
                            notes.push(format!(
                                "no running reader of {} to fail over to: {} is restarted in place (write downtime)",
                                c.name, w.id
                            ));
                            writer_steps.push((w, Action::Restart));
                        }
                    }
                }
                _ => writer_steps.push((w, base)),
            }
        }
        let all: Vec<PlannedStep> = steps
            .into_iter()
            .map(|(i, a)| (**i, a))
            .chain(writer_steps.into_iter().map(|(i, a)| (*i, a)))
            .map(|(i, action)| PlannedStep {
                instance: i.id.clone(),
                role: i.role,
                status: i.status,
                before: i.ca.clone(),
                estimate_ms: opts.costs.of(&action, cooldown),
                action,
            })
            .collect();
        plans.push(ClusterPlan {
            cluster: c.name.clone(),
            writer: c.writer.clone(),
            estimate_ms: all.iter().map(|s| s.estimate_ms).sum(),
            steps: all,
            notes,
        });
    }
    let durations: Vec<u64> = plans.iter().map(|c| c.estimate_ms).collect();
    let estimate = Estimate {
        serial_ms: durations.iter().sum(),
        critical_path_ms: critical_path(&durations, opts.concurrency),
        costs: opts.costs,
    };
    let scope_members: Vec<&Instance> = instances
        .iter()
        .filter(|i| in_clusters.iter().any(|c| c.name == i.cluster))
        .collect();
    let fp = fingerprint(&in_clusters, &scope_members);
    let steps = plans.iter().flat_map(|c| c.steps.iter());
    let to_change = steps
        .clone()
        .filter(|s| !s.action.is_skip() && !matches!(s.action, Action::Switchover { .. }))
        .count();
    let skipped = steps.filter(|s| s.action.is_skip()).count();
    Ok(Plan {
        options: opts,
        clusters: plans,
        estimate,
        fingerprint: fp,
        to_change,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dbshift_provider::Endpoint;

    fn inst(id: &str, cluster: &str, role: Role, ca: &str, status: InstanceStatus) -> Instance {
        Instance {
            id: id.into(),
            cluster: cluster.into(),
            role,
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port: 1,
            },
            engine: "mariadb".into(),
            engine_version: "11".into(),
            status,
            ca: ca.into(),
            encrypted: false,
            source: None,
            tags: [("env".to_string(), cluster.replace("lab-", "e"))]
                .into_iter()
                .collect(),
        }
    }

    fn fleet(n: usize) -> (Vec<Cluster>, Vec<Instance>) {
        let mut cs = Vec::new();
        let mut is = Vec::new();
        for c in 1..=n {
            let name = format!("lab-{c}");
            let ids: Vec<String> = (1..=3).map(|i| format!("{name}-{i}")).collect();
            for (k, id) in ids.iter().enumerate() {
                let role = if k == 0 { Role::Writer } else { Role::Reader };
                is.push(inst(id, &name, role, "old", InstanceStatus::Available));
            }
            cs.push(Cluster {
                name: name.clone(),
                writer: ids[0].clone(),
                instances: ids,
                gtid_domain_id: Some(c as u32),
            });
        }
        (cs, is)
    }

    fn opts(mode: Mode, k: usize, filters: Vec<Filter>) -> PlanOptions {
        PlanOptions {
            kind: "ca-rotate".into(),
            target: "new".into(),
            mode,
            concurrency: k,
            cooldown_ms: 0,
            start_stopped: false,
            max_failures: 0,
            filters,
            costs: Costs::default(),
        }
    }

    fn done(i: &Instance) -> bool {
        i.ca == "new"
    }

    #[test]
    fn globs() {
        assert!(glob("lab-*", "lab-12"));
        assert!(glob("lab-1?", "lab-12"));
        assert!(!glob("lab-1?", "lab-1"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("lab-1-1", "lab-1-1"));
    }

    #[test]
    fn filters_parse_and_combine() {
        assert_eq!(
            Filter::parse("env=e1"),
            Ok(Filter::Tag("env".into(), "e1".into()))
        );
        assert_eq!(Filter::parse("lab-*"), Ok(Filter::Name("lab-*".into())));
        assert_eq!(
            Filter::parse("=x"),
            Err(FilterError::NoTagName("=x".into()))
        );
        assert_eq!(Filter::parse("  "), Err(FilterError::Empty));
        assert_eq!(
            FilterError::NoTagName("=x".into()).to_string(),
            "--filter \"=x\": a tag filter is name=value"
        );
        let i = inst(
            "lab-1-2",
            "lab-1",
            Role::Reader,
            "old",
            InstanceStatus::Available,
        );
        assert!(in_scope(&[], &i));
        assert!(in_scope(
            &[Filter::Name("lab-2".into()), Filter::Name("lab-1".into())],
            &i
        ));
        assert!(in_scope(&[Filter::Name("lab-1-2".into())], &i));
        assert!(!in_scope(
            &[
                Filter::Name("lab-1".into()),
                Filter::Tag("env".into(), "e2".into())
            ],
            &i
        ));
    }

    #[test]
    fn readers_first_then_the_writer_in_natural_cluster_order() {
        let (cs, is) = fleet(10);
        let p = build_plan(opts(Mode::NoRestart, 4, vec![]), &cs, &is, &done).unwrap();
        let names: Vec<&str> = p.clusters.iter().map(|c| c.cluster.as_str()).collect();
        assert_eq!(names[..3], ["lab-1", "lab-2", "lab-3"]);
        assert_eq!(names[9], "lab-10");
        let order: Vec<&str> = p.clusters[0]
            .steps
            .iter()
            .map(|s| s.instance.as_str())
            .collect();
        assert_eq!(order, ["lab-1-2", "lab-1-3", "lab-1-1"]);
        assert!(p.clusters[0]
            .steps
            .iter()
            .all(|s| s.action == Action::NoRestart));
        assert_eq!(p.to_change, 30);
        // 10 clusters of 3 instances on 4 slots: 3 rounds.
        let per = Costs::default().no_restart_ms;
        assert_eq!(p.estimate.serial_ms, 30 * per);
        assert_eq!(p.estimate.critical_path_ms, 9 * per);
    }

    #[test]
    fn failover_first_moves_the_writer_to_a_changed_reader_then_restarts_it() {
        let (cs, is) = fleet(1);
        let p = build_plan(opts(Mode::FailoverFirst, 1, vec![]), &cs, &is, &done).unwrap();
        let actions: Vec<(&str, Action)> = p.clusters[0]
            .steps
            .iter()
            .map(|s| (s.instance.as_str(), s.action.clone()))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("lab-1-2", Action::Restart),
                ("lab-1-3", Action::Restart),
                (
                    "lab-1-1",
                    Action::Switchover {
                        to: "lab-1-2".into()
                    }
                ),
                ("lab-1-1", Action::Restart),
            ]
        );
        assert_eq!(p.to_change, 3);
    }

    #[test]
    fn done_and_stopped_instances_are_skipped_or_started() {
        let (cs, mut is) = fleet(1);
        is[1].ca = "new".into();
        is[2].status = InstanceStatus::Stopped;
        let p = build_plan(opts(Mode::NoRestart, 1, vec![]), &cs, &is, &done).unwrap();
        let s = &p.clusters[0].steps;
        assert!(matches!(&s[0].action, Action::Skip { reason } if reason.contains("already")));
        assert!(matches!(&s[1].action, Action::Skip { reason } if reason.contains("stopped")));
        assert_eq!(s[2].action, Action::NoRestart);
        assert_eq!(p.skipped, 2);
        let mut o = opts(Mode::NoRestart, 1, vec![]);
        o.start_stopped = true;
        let p = build_plan(o, &cs, &is, &done).unwrap();
        assert_eq!(
            p.clusters[0].steps[1].action,
            Action::StartChangeStop { restart: false }
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let (cs, is) = fleet(2);
        assert!(matches!(
            build_plan(opts(Mode::Restart, 0, vec![]), &cs, &is, &done),
            Err(RolloutError::BadInput(_))
        ));
        let e = build_plan(
            opts(Mode::Restart, 1, vec![Filter::Name("prod-*".into())]),
            &cs,
            &is,
            &done,
        )
        .unwrap_err();
        assert!(e.to_string().contains("prod-*"), "{e}");
        let e = build_plan(
            opts(
                Mode::Restart,
                1,
                vec![
                    Filter::Name("lab-1".into()),
                    Filter::Tag("env".into(), "e2".into()),
                ],
            ),
            &cs,
            &is,
            &done,
        )
        .unwrap_err();
        assert!(e.to_string().contains("together"), "{e}");
    }

    #[test]
    fn the_fingerprint_follows_the_fleet() {
        let (cs, mut is) = fleet(2);
        let a = build_plan(opts(Mode::Restart, 1, vec![]), &cs, &is, &done).unwrap();
        let b = build_plan(opts(Mode::Restart, 1, vec![]), &cs, &is, &done).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        is[4].status = InstanceStatus::Stopped;
        let c = build_plan(opts(Mode::Restart, 1, vec![]), &cs, &is, &done).unwrap();
        assert_ne!(a.fingerprint, c.fingerprint);
    }

    #[test]
    fn critical_path_on_k_slots() {
        assert_eq!(critical_path(&[], 4), 0);
        assert_eq!(critical_path(&[5, 5, 5, 5, 5], 4), 10);
        assert_eq!(critical_path(&[5, 5, 5], 1), 15);
        assert_eq!(critical_path(&[10, 1, 1, 1], 2), 10);
    }
}
