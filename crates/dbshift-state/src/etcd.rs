//! Cluster locks on etcd: the [`LockStore`] of a team, whose locks are seen by every dbshift
//! that reaches the same etcd cluster, whatever its working directory or machine.
//!
//! A lock is the key `<prefix>/locks/<scope>`, created in a transaction only if it is absent
//! and attached to a lease of a few seconds; its value is the [`Holder`] (pid, host, what,
//! since, dbshift version), read back for the refusal. The fencing token is the key's create
//! revision: etcd's revision grows with every write of the store, so every acquisition of a
//! scope gets a larger token than the one before.
//!
//! While held, a task keeps the lease alive (every third of its TTL) and re-reads the key. The
//! lease is taken as alive until the time the last answered keep-alive was *sent* plus the
//! TTL (earlier than etcd's own expiry, never later); past that, or once the key is gone or
//! belongs to another lease, [`LockLease::check`] fails with [`LockError::Lost`]. That check
//! reads this state only: it never waits on etcd, and a process paused longer than the TTL
//! finds its lease lost when it wakes, before its next change. Dropping the lease revokes it.
//!
//! Each member given in the URL gets a client of its own, and a request that fails or hangs on
//! one member is tried on the next (a balanced channel over all of them keeps sending to a
//! dead member): the lock outlives the loss of any member while the others keep quorum.
//!
//! The etcd clients and the keep-alive tasks run on a runtime of their own (one thread): the
//! keep-alive does not depend on the command's runtime being free, and a lease dropped as the
//! command ends is revoked (waited for one second at most; past that etcd expires it within
//! its TTL). Nothing here ever changes a database server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::Notify;

use crate::lock::{Holder, LockError, LockLease, LockStore};

/// The lease of a lock unless told otherwise: a holder cut off from etcd stops within it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// How long one request to one member may take before the next member is asked.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the locks live: `etcd://host:port[,host:port...][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// `host:port` of each member given.
    pub endpoints: Vec<String>,
    /// The key prefix, `/dbshift` unless the URL names another; never ends with `/`.
    pub prefix: String,
}

impl EtcdTarget {
    /// Parse an `etcd://` URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<EtcdTarget, String> {
        let rest = if let Some(rest) = url.strip_prefix("etcd://") {
            rest
        } else if url.starts_with("etcds://") || url.starts_with("https://") {
            return Err(format!(
                "{url}: TLS to etcd is not supported yet; use etcd://host:port on a trusted \
                 network"
            ));
        } else {
            return Err(format!(
                "{url}: expected etcd://host:port[,host:port...][/prefix]"
            ));
        };
        let (hosts, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if hosts.contains('@') {
            return Err(format!(
                "{url}: a user and password for etcd are not supported yet"
            ));
        }
        if prefix.contains(['?', '#']) {
            return Err(format!(
                "{url}: no query or fragment is understood; expected etcd://host:port[/prefix]"
            ));
        }
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            let (host, port) = h.rsplit_once(':').ok_or_else(|| {
                format!("{url}: {h:?} is not host:port (etcd's client port, e.g. 127.0.0.1:2379)")
            })?;
            if host.is_empty() || host.contains(char::is_whitespace) {
                return Err(format!("{url}: {h:?} has no host"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {}
                _ => return Err(format!("{url}: {h:?} has no valid port")),
            }
            endpoints.push(h.to_string());
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            "/dbshift".to_string()
        } else {
            prefix.to_string()
        };
        Ok(EtcdTarget { endpoints, prefix })
    }

    /// The key of `scope`'s lock.
    pub fn lock_key(&self, scope: &str) -> String {
        format!("{}/locks/{scope}", self.prefix)
    }
}

impl std::fmt::Display for EtcdTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd://{}{}", self.endpoints.join(","), self.prefix)
    }
}

/// The runtime the client and the keep-alive tasks run on; shut down when the store and its
/// last lease are gone.
struct Keeper {
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Allowed inside another runtime, unlike dropping it.
            rt.shutdown_background();
        }
    }
}

impl Keeper {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the keeper")
            .handle()
    }
}

/// One client per member, and the member that answered last (asked first).
struct Members {
    endpoints: Vec<String>,
    clients: Vec<Client>,
    current: AtomicUsize,
}

impl Members {
    /// The member to ask now.
    fn pick(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        (i, self.clients[i].clone())
    }

    /// Member `i` failed: the next one is asked first from now on.
    fn failed(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// `request` on each member in turn, from the current one, until one answers; the
    /// error names what each member said.
    async fn call<T, F, Fut>(&self, request: F) -> Result<T, String>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let (first, _) = self.pick();
        let mut errors = Vec::new();
        for k in 0..self.clients.len() {
            let i = (first + k) % self.clients.len();
            match tokio::time::timeout(ATTEMPT_TIMEOUT, request(self.clients[i].clone())).await {
                Ok(Ok(v)) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) => errors.push(format!("{}: {e}", self.endpoints[i])),
                Err(_) => errors.push(format!(
                    "{}: no answer within {ATTEMPT_TIMEOUT:?}",
                    self.endpoints[i]
                )),
            }
        }
        Err(errors.join("; "))
    }
}

/// Locks in etcd; see the module documentation.
#[derive(Clone)]
pub struct EtcdLocks {
    target: EtcdTarget,
    ttl: Duration,
    members: Arc<Members>,
    keeper: Arc<Keeper>,
}

impl std::fmt::Debug for EtcdLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLocks")
            .field("target", &self.target.to_string())
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn unreachable(target: &EtcdTarget, reason: impl std::fmt::Display) -> LockError {
    LockError::Unreachable {
        store: target.to_string(),
        reason: reason.to_string(),
    }
}

impl EtcdLocks {
    /// Connect to `target` and prove it answers with a leader (a read of the lock prefix),
    /// within a few seconds; leases last `ttl` (whole seconds, at least one).
    pub async fn connect(target: &EtcdTarget, ttl: Duration) -> Result<EtcdLocks, LockError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dbshift-etcd")
            .enable_all()
            .build()
            .map_err(|e| unreachable(target, format!("starting its client: {e}")))?;
        let keeper = Arc::new(Keeper { rt: Some(rt) });
        let endpoints = target.endpoints.clone();
        let prefix = format!("{}/", target.prefix);
        let connecting = keeper.handle().spawn(async move {
            let opts = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(ATTEMPT_TIMEOUT)
                .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
                .with_require_leader(true);
            let mut clients = Vec::new();
            for e in &endpoints {
                // Connects lazily: a member down now is tried again when it is asked.
                let client = Client::connect([e.as_str()], Some(opts.clone()))
                    .await
                    .map_err(|err| format!("{e}: {err}"))?;
                clients.push(client);
            }
            let members = Members {
                endpoints,
                clients,
                current: AtomicUsize::new(0),
            };
            members
                .call(|mut c| {
                    let prefix = prefix.clone();
                    async move {
                        c.get(
                            prefix,
                            Some(GetOptions::new().with_prefix().with_count_only()),
                        )
                        .await
                    }
                })
                .await?;
            Ok::<Members, String>(members)
        });
        let limit = ATTEMPT_TIMEOUT * (target.endpoints.len() as u32 + 1);
        let members = match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(Ok(m))) => m,
            Ok(Ok(Err(e))) => return Err(unreachable(target, e)),
            Ok(Err(e)) => return Err(unreachable(target, e)),
            Err(_) => return Err(unreachable(target, format!("no answer within {limit:?}"))),
        };
        Ok(EtcdLocks {
            target: target.clone(),
            ttl: Duration::from_secs(ttl.as_secs().max(1)),
            members: Arc::new(members),
            keeper,
        })
    }

    /// Where the locks live.
    pub fn target(&self) -> &EtcdTarget {
        &self.target
    }
}

/// What the keep-alive task learns, read by [`LockLease::check`].
struct LeaseState {
    /// Until when the lease is known to be alive in etcd.
    alive_until: Mutex<Instant>,
    /// Why the lock is lost, once it is.
    lost: Mutex<Option<String>>,
    stop: Notify,
}

struct EtcdLease {
    scope: String,
    key: String,
    lease_id: i64,
    token: u64,
    ttl: Duration,
    state: Arc<LeaseState>,
    members: Arc<Members>,
    keeper: Arc<Keeper>,
}

impl LockLease for EtcdLease {
    fn token(&self) -> u64 {
        self.token
    }

    fn check(&self) -> Result<(), LockError> {
        let lost = |reason: String| LockError::Lost {
            scope: self.scope.clone(),
            reason,
        };
        if let Some(why) = self
            .state
            .lost
            .lock()
            .expect("the lease state is never poisoned")
            .clone()
        {
            return Err(lost(why));
        }
        let until = *self
            .state
            .alive_until
            .lock()
            .expect("the lease state is never poisoned");
        if Instant::now() >= until {
            return Err(lost(format!(
                "etcd has not renewed its lease for more than its TTL ({} s): this holder was \
                 cut off from etcd or paused, and another command may hold {} now",
                self.ttl.as_secs(),
                self.key
            )));
        }
        Ok(())
    }
}

impl Drop for EtcdLease {
    fn drop(&mut self) {
        self.state.stop.notify_one();
        let members = self.members.clone();
        let id = self.lease_id;
        let (done, wait) = std::sync::mpsc::channel();
        self.keeper.handle().spawn(async move {
            let revoked = tokio::time::timeout(
                REVOKE_WAIT,
                members.call(|mut c| async move { c.lease_revoke(id).await }),
            )
            .await;
            if !matches!(revoked, Ok(Ok(_))) {
                tracing::warn!(
                    lease = id,
                    "the lock's lease was not revoked; it expires by itself"
                );
            }
            let _ = done.send(());
        });
        // The keeper's own thread does the revoke: waiting here cannot deadlock, and it is
        // bounded. A command that ends right after releasing leaves no lock behind.
        let _ = wait.recv_timeout(REVOKE_WAIT + Duration::from_millis(200));
    }
}

/// How long a released lock waits for etcd to revoke its lease.
const REVOKE_WAIT: Duration = Duration::from_secs(1);

/// Keep `lease_id` alive and `key` ours until told to stop or the lock is lost.
async fn keep_alive(
    members: Arc<Members>,
    key: String,
    lease_id: i64,
    token: u64,
    ttl: Duration,
    state: Arc<LeaseState>,
) {
    let every = ttl / 3;
    // The keep-alive stream, and the member it is open to.
    let mut stream = None;
    let set_lost = |why: String| {
        tracing::warn!(key = %key, "lock lost: {why}");
        *state
            .lost
            .lock()
            .expect("the lease state is never poisoned") = Some(why);
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = state.stop.notified() => return,
        }
        // Renewed through the current member, or at once through the next when it fails or
        // hangs (a dead member must not cost a whole period).
        let attempt = (every / 2).max(Duration::from_millis(300));
        let mut renewed_by = None;
        for _ in 0..members.clients.len() {
            let (i, mut client) = members.pick();
            let sent = Instant::now();
            let renewed = tokio::time::timeout(attempt, async {
                if !matches!(stream, Some((at, _)) if at == i) {
                    stream = Some((i, client.lease_keep_alive(lease_id).await?));
                }
                let (_, (keeper, answers)) = stream.as_mut().expect("just opened");
                keeper.keep_alive().await?;
                match answers.message().await? {
                    Some(answer) => Ok(answer.ttl()),
                    None => Err(etcd_client::Error::InvalidArgs(
                        "the keep-alive stream ended".into(),
                    )),
                }
            })
            .await;
            match renewed {
                Ok(Ok(left)) if left > 0 => {
                    *state
                        .alive_until
                        .lock()
                        .expect("the lease state is never poisoned") =
                        sent + Duration::from_secs(left as u64);
                    renewed_by = Some((i, client));
                    break;
                }
                Ok(Ok(_)) => {
                    set_lost(format!("etcd says its lease {lease_id:x} has expired"));
                    return;
                }
                Ok(Err(e)) => tracing::warn!(
                    key = %key, member = %members.endpoints[i],
                    "keep-alive of the lock's lease failed: {e}"
                ),
                Err(_) => tracing::warn!(
                    key = %key, member = %members.endpoints[i],
                    "keep-alive of the lock's lease had no answer within {attempt:?}"
                ),
            }
            members.failed(i);
            stream = None;
        }
        let Some((i, mut client)) = renewed_by else {
            continue;
        };
        // The key itself: deleted, or taken by another lease (its lease expired in etcd while
        // this holder still believed in it), the lock is lost.
        match tokio::time::timeout(attempt, client.get(key.as_str(), None)).await {
            Ok(Ok(answer)) => match answer.kvs().first() {
                None => {
                    set_lost(format!("its key {key} is gone"));
                    return;
                }
                Some(kv) if kv.lease() != lease_id || kv.create_revision() as u64 != token => {
                    set_lost(format!(
                        "its key {key} now belongs to another holder (created at revision {})",
                        kv.create_revision()
                    ));
                    return;
                }
                Some(_) => {}
            },
            _ => members.failed(i),
        }
    }
}

#[async_trait::async_trait]
impl LockStore for EtcdLocks {
    async fn try_acquire(
        &self,
        scope: &str,
        holder: &Holder,
    ) -> Result<Box<dyn LockLease>, LockError> {
        let key = self.target.lock_key(scope);
        let value = serde_json::to_string(holder).expect("a holder always serializes");
        let ttl = self.ttl;
        let members = self.members.clone();
        let k = key.clone();
        let taking = self.keeper.handle().spawn(async move {
            let sent = Instant::now();
            let lease = members
                .call(|mut c| async move { c.lease_grant(ttl.as_secs() as i64, None).await })
                .await?;
            let id = lease.id();
            let txn = Txn::new()
                .when([Compare::create_revision(k.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    k.as_str(),
                    value,
                    Some(PutOptions::new().with_lease(id)),
                )])
                .or_else([TxnOp::get(k.as_str(), None)]);
            // Tried again on another member when one fails: a first try that did create the
            // key shows as a refusal by this very lease, taken below as the success it was.
            let answer = members
                .call(|mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await;
            let revoke = || async {
                let _ = members
                    .call(|mut c| async move { c.lease_revoke(id).await })
                    .await;
            };
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    revoke().await;
                    return Err(e);
                }
            };
            let taken = if answer.succeeded() {
                Taken::Mine(answer.header().map(|h| h.revision()).unwrap_or_default())
            } else {
                let kv = answer.op_responses().into_iter().find_map(|r| match r {
                    TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                    _ => None,
                });
                match kv {
                    Some(kv) if kv.lease() == id => Taken::Mine(kv.create_revision()),
                    other => {
                        revoke().await;
                        Taken::Held(other.map(|kv| kv.value().to_vec()))
                    }
                }
            };
            Ok((id, sent, lease.ttl(), taken))
        });
        let limit = ATTEMPT_TIMEOUT * (3 * self.target.endpoints.len() as u32 + 1);
        let (id, sent, granted, taken) = match tokio::time::timeout(limit, taking).await {
            Ok(Ok(Ok(t))) => t,
            Ok(Ok(Err(e))) => return Err(unreachable(&self.target, format!("taking {key}: {e}"))),
            Ok(Err(e)) => return Err(unreachable(&self.target, e)),
            Err(_) => {
                return Err(unreachable(
                    &self.target,
                    format!("taking {key}: no answer within {limit:?}"),
                ))
            }
        };
        let token = match taken {
            Taken::Mine(revision) => revision as u64,
            Taken::Held(value) => {
                let holder = match value {
                    Some(v) => match serde_json::from_slice::<Holder>(&v) {
                        Ok(h) => format!("{h}, etcd key {key}"),
                        Err(_) => format!("an unknown holder of etcd key {key}"),
                    },
                    // Released between the two reads: refused all the same; the next try
                    // may pass.
                    None => format!("a holder that has just released etcd key {key}"),
                };
                return Err(LockError::Held {
                    scope: scope.to_string(),
                    holder,
                });
            }
        };
        let ttl = Duration::from_secs(granted.max(1) as u64);
        let state = Arc::new(LeaseState {
            alive_until: Mutex::new(sent + ttl),
            lost: Mutex::new(None),
            stop: Notify::new(),
        });
        self.keeper.handle().spawn(keep_alive(
            self.members.clone(),
            key.clone(),
            id,
            token,
            ttl,
            state.clone(),
        ));
        tracing::info!(scope, key = %key, token, "lock taken in etcd");
        Ok(Box::new(EtcdLease {
            scope: scope.to_string(),
            key,
            lease_id: id,
            token,
            ttl,
            state,
            members: self.members.clone(),
            keeper: self.keeper.clone(),
        }))
    }
}

/// What a try to take a lock found.
enum Taken {
    /// The key is this lease's, created at this revision (the fencing token).
    Mine(i64),
    /// Another holder's, with its value (none: released in between).
    Held(Option<Vec<u8>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_or_refused_with_the_reason() {
        let t = EtcdTarget::parse("etcd://127.0.0.1:2379").unwrap();
        assert_eq!(t.endpoints, vec!["127.0.0.1:2379"]);
        assert_eq!(t.prefix, "/dbshift");
        assert_eq!(t.lock_key("lab-1"), "/dbshift/locks/lab-1");
        let t = EtcdTarget::parse("etcd://a:1,b:2,[::1]:3/team/a/").unwrap();
        assert_eq!(t.endpoints, vec!["a:1", "b:2", "[::1]:3"]);
        assert_eq!(t.prefix, "/team/a");
        assert_eq!(t.to_string(), "etcd://a:1,b:2,[::1]:3/team/a");
        for (bad, says) in [
            ("http://a:1", "expected etcd://"),
            ("etcds://a:1", "TLS"),
            ("etcd://", "not host:port"),
            ("etcd://a", "not host:port"),
            ("etcd://a:x", "no valid port"),
            ("etcd://a:0", "no valid port"),
            ("etcd://:1", "no host"),
            ("etcd://a:1,", "not host:port"),
            ("etcd://u:p@a:1", "user and password"),
            ("etcd://a:1/p?x=1", "no query"),
        ] {
            let err = EtcdTarget::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
