//! A thin client for one etcd member, reached through its port published on 127.0.0.1.
//! Every call has a deadline, so a dead or partitioned member never hangs the harness.
//! Beside it: `http` (`/version` and `/metrics` over plain HTTP), `known_bugs` (the etcd
//! bugs by release that a drill can trip over), `security` (the root password and what a
//! refused login looks like) and `tls` (the throwaway CA and certificates of a drill with
//! TLS on).

pub mod access;
pub mod http;
pub mod known_bugs;
pub mod security;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::{Client, CompactionOptions, ConnectOptions, DeleteOptions, GetOptions, KvClient};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Keys per page of a prefix read: with the workload's 128-byte values, about 0.3 MiB a page.
pub const READ_PAGE: i64 = 2_000;

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix):
/// the prefix with its last byte below 0xff incremented and what follows dropped; `\0` (to
/// the end of the keyspace) when every byte is 0xff.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
use crate::readiness::{Seen, Wait};

/// One member's client. Cheap to clone; connects lazily and reconnects by itself.
#[derive(Clone)]
pub struct MemberClient {
    pub name: String,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    client: Client,
    /// With auth on: set while a re-authentication runs (shared by the clones).
    reauthenticating: Option<Arc<AtomicBool>>,
}

/// What `Status` says about a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub leader_id: u64,
    /// The raft term this member is in; it grows with every election.
    pub raft_term: u64,
    pub revision: i64,
    pub raft_index: u64,
    /// The raft index this member has applied (a learner has caught up once it reaches
    /// the leader's).
    pub raft_applied_index: u64,
    pub db_size: i64,
    pub version: String,
    pub is_learner: bool,
}

/// What `MemberList` says about one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    /// A learner: a non-voting member not yet promoted.
    pub is_learner: bool,
}

async fn deadline<T, E: std::fmt::Display>(
    timeout: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    }
}

impl MemberClient {
    pub async fn connect(name: &str, endpoint: &str) -> Result<MemberClient> {
        Self::connect_as(name, endpoint, None, None).await
    }

    /// Connects over TLS with the run's client certificate when `tls` is given, and as
    /// `root` with `password` when given: the client authenticates once, here
    /// (bcrypt makes each authentication costly), and again only when etcd no longer knows
    /// its token (a restarted member, a restored cluster). A refused password is an
    /// [`Error::AuthRejected`].
    pub async fn connect_as(
        name: &str,
        endpoint: &str,
        password: Option<&crate::etcd::security::RootPassword>,
        tls: Option<&crate::etcd::tls::ClusterTls>,
    ) -> Result<MemberClient> {
        let user = password.map(|p| (crate::etcd::security::ROOT_USER, p));
        Self::connect_with(name, endpoint, user, tls.map(|t| t.client_options())).await
    }

    /// Connects over TLS with `tls` when given, and as `user` (name, password) when given:
    /// [`MemberClient::connect_as`] for any user and TLS material (a cluster the harness
    /// did not start: [`access::ClientAccess`]).
    pub async fn connect_with(
        name: &str,
        endpoint: &str,
        user: Option<(&str, &crate::etcd::security::RootPassword)>,
        tls: Option<etcd_client::TlsOptions>,
    ) -> Result<MemberClient> {
        let password = user.map(|(_, p)| p);
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some(tls) = tls {
            options = options.with_tls(tls);
        }
        if let Some((user_name, password)) = user {
            // The client's own refresh would run inside each call's deadline, and a login
            // (bcrypt, then raft) often outlasts a 500 ms put: see `within`.
            options = options
                .with_user(user_name, password.expose())
                .with_auto_token_refresh(false);
        }
        let connected = tokio::time::timeout(Duration::from_secs(10), Client::connect([endpoint], Some(options))).await;
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(e)) if password.is_some() && crate::etcd::security::is_rejected_password(&e.to_string()) => {
                return Err(Error::AuthRejected {
                    member: name.to_string(),
                    message: e.to_string(),
                })
            }
            Ok(Err(e)) => return Err(Error::etcd("connect", name)(e)),
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("connecting to {name} at {endpoint}"),
                    waited_ms: 10_000,
                })
            }
        };
        Ok(MemberClient {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            client,
            reauthenticating: password.map(|_| Arc::new(AtomicBool::new(false))),
        })
    }

    /// Runs `call` with a deadline. When etcd no longer knows the client's token (the member
    /// restarted, or the cluster was restored), one background task logs in again, outside
    /// any caller's deadline; calls fail until it has, as they would for any client.
    async fn within<T, E: std::fmt::Display>(
        &self,
        timeout: Duration,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        let result = deadline(timeout, call).await;
        if matches!(&result, Err(message) if message.contains("invalid auth token")) {
            self.log_in_again();
        }
        result
    }

    /// Logs in again in the background (once at a time, retrying for up to a minute), when
    /// auth is on. Needed where etcd forgot the token, and after a restore, where a token of
    /// the old cluster carries a raft index the new one has not reached: etcd would hold
    /// every request that carries it until the request's deadline.
    pub fn log_in_again(&self) {
        let Some(flag) = &self.reauthenticating else {
            return;
        };
        if flag.swap(true, Ordering::AcqRel) {
            return;
        }
        let (member, flag) = (self.clone(), flag.clone());
        tokio::spawn(async move {
            let _ = member.log_in_now(Duration::from_secs(60)).await;
            flag.store(false, Ordering::Release);
        });
    }

    /// Logs in again and returns once this client holds a fresh token (retrying for up to
    /// `window`), when auth is on; at once otherwise. A procedure that restarted or
    /// restored members awaits this for every member before it declares the cluster back,
    /// so that no client is left with a token the new cluster would hold requests on.
    pub async fn log_in_now(&self, window: Duration) -> Result<()> {
        if self.reauthenticating.is_none() {
            return Ok(());
        }
        Wait::new(
            format!("{} to accept root's login", self.name),
            Duration::from_millis(200),
            window,
        )
        .until(|| {
            let client = self.client.clone();
            async move {
                let seen = match tokio::time::timeout(Duration::from_secs(5), client.refresh_token()).await {
                    Ok(Ok(())) => Seen::Ready(Ok(())),
                    // A refused password will not be accepted by waiting.
                    Ok(Err(e)) if crate::etcd::security::is_rejected_password(&e.to_string()) => {
                        Seen::Ready(Err(Error::AuthRejected {
                            member: self.name.clone(),
                            message: e.to_string(),
                        }))
                    }
                    Ok(Err(e)) => Seen::NotYet(e.to_string()),
                    Err(_) => Seen::NotYet("no answer within 5 s".to_string()),
                };
                tracing::debug!(member = %self.name, ?seen, "login attempt");
                seen
            }
        })
        .await
        .map_err(Error::from)?
    }

    /// The underlying client, for streaming calls (watches) this wrapper does not cover.
    pub fn raw_client(&self) -> Client {
        self.client.clone()
    }

    fn fail(&self, action: &'static str) -> impl FnOnce(String) -> Error + '_ {
        move |message| Error::Etcd {
            action,
            member: self.name.clone(),
            message,
        }
    }

    /// Puts a key; returns the revision of the write.
    pub async fn put(&self, key: String, value: String, timeout: Duration) -> Result<i64, String> {
        let mut kv = self.client.kv_client();
        let resp = self.within(timeout, kv.put(key, value, None)).await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// A linearizable read, as `etcdctl endpoint health` does: it needs a leader and quorum.
    /// Like etcdctl, a refusal for want of credentials counts as healthy: etcd checks
    /// permissions after the read has gone through raft (a client not logged in yet, while
    /// an image turns authentication on by itself).
    pub async fn is_healthy(&self, timeout: Duration) -> bool {
        let mut kv = self.client.kv_client();
        match self
            .within(timeout, kv.get("health", Some(GetOptions::new().with_count_only())))
            .await
        {
            Ok(_) => true,
            Err(message) => crate::etcd::security::is_unauthenticated(&message),
        }
    }

    pub async fn status(&self, timeout: Duration) -> Result<MemberStatus> {
        let mut m = self.client.maintenance_client();
        let s = self.within(timeout, m.status()).await.map_err(self.fail("status"))?;
        let header = s.header();
        Ok(MemberStatus {
            member_id: header.map(|h| h.member_id()).unwrap_or(0),
            leader_id: s.leader(),
            raft_term: s.raft_term(),
            revision: header.map(|h| h.revision()).unwrap_or(0),
            raft_index: s.raft_index(),
            raft_applied_index: s.raft_applied_index(),
            db_size: s.db_size(),
            version: s.version().to_string(),
            is_learner: s.is_learner(),
        })
    }

    /// HashKV at `revision`: (hash, compact revision).
    pub async fn hash_kv(&self, revision: i64, timeout: Duration) -> Result<(u32, i64)> {
        let mut m = self.client.maintenance_client();
        let r = self
            .within(timeout, m.hash_kv(revision))
            .await
            .map_err(self.fail("hashkv"))?;
        Ok((r.hash(), r.compact_version()))
    }

    pub async fn member_list(&self, timeout: Duration) -> Result<Vec<ListedMember>> {
        let mut c = self.client.cluster_client();
        let r = self
            .within(timeout, c.member_list())
            .await
            .map_err(self.fail("member list"))?;
        Ok(r.members()
            .iter()
            .map(|m| ListedMember {
                id: m.id(),
                name: m.name().to_string(),
                peer_urls: m.peer_urls().to_vec(),
                is_learner: m.is_learner(),
            })
            .collect())
    }

    pub async fn member_remove(&self, id: u64, timeout: Duration) -> Result<()> {
        let mut c = self.client.cluster_client();
        self.within(timeout, c.member_remove(id))
            .await
            .map_err(self.fail("member remove"))?;
        Ok(())
    }

    /// Adds a member with `peer_url` (a non-voting learner when `learner`); returns its id
    /// and the member list `member add` prints.
    pub async fn member_add(
        &self,
        peer_url: &str,
        learner: bool,
        timeout: Duration,
    ) -> Result<(u64, Vec<ListedMember>)> {
        let mut c = self.client.cluster_client();
        let options = learner.then(|| etcd_client::MemberAddOptions::new().with_is_learner());
        let r = self
            .within(timeout, c.member_add(vec![peer_url.to_string()], options))
            .await
            .map_err(self.fail("member add"))?;
        let id = r.member().map(|m| m.id()).unwrap_or(0);
        let members = r
            .member_list()
            .iter()
            .map(|m| ListedMember {
                id: m.id(),
                name: m.name().to_string(),
                peer_urls: m.peer_urls().to_vec(),
                is_learner: m.is_learner(),
            })
            .collect();
        Ok((id, members))
    }

    /// `member promote`: makes learner `id` a voting member (etcd refuses until the
    /// learner is in sync with the leader).
    pub async fn member_promote(&self, id: u64, timeout: Duration) -> Result<()> {
        let mut c = self.client.cluster_client();
        self.within(timeout, c.member_promote(id))
            .await
            .map_err(self.fail("member promote"))?;
        Ok(())
    }

    /// `alarm list`: the alarms raised, as (member id, alarm name such as `NOSPACE`);
    /// [`alarm_line`] prints one as etcdctl does.
    pub async fn alarms(&self, timeout: Duration) -> Result<Vec<(u64, String)>> {
        use etcd_client::{AlarmAction, AlarmType};
        let mut m = self.client.maintenance_client();
        let r = self
            .within(timeout, m.alarm(AlarmAction::Get, AlarmType::None, None))
            .await
            .map_err(self.fail("alarm list"))?;
        Ok(r.alarms()
            .iter()
            .map(|a| (a.member_id(), a.alarm().as_str_name().to_string()))
            .collect())
    }

    /// `alarm disarm`: deactivates every alarm raised; returns how many there were.
    pub async fn disarm_alarms(&self, timeout: Duration) -> Result<usize> {
        use etcd_client::{AlarmAction, AlarmOptions, AlarmType};
        let raised = self.alarms(timeout).await?;
        let mut m = self.client.maintenance_client();
        for (member, name) in &raised {
            let kind = AlarmType::from_str_name(name).unwrap_or(AlarmType::None);
            let mut options = AlarmOptions::new();
            options.with_member(*member);
            self.within(timeout, m.alarm(AlarmAction::Deactivate, kind, Some(options)))
                .await
                .map_err(self.fail("alarm disarm"))?;
        }
        Ok(raised.len())
    }

    /// Grants a lease of `ttl_s` seconds; returns its id.
    pub async fn lease_grant(&self, ttl_s: i64, timeout: Duration) -> Result<i64> {
        let mut l = self.client.lease_client();
        let r = self
            .within(timeout, l.grant(ttl_s, None))
            .await
            .map_err(self.fail("lease grant"))?;
        Ok(r.id())
    }

    /// One keep-alive of lease `id`, as `etcdctl lease keep-alive --once` does. A lease
    /// that has expired is refused with "lease not found" ([`is_lease_gone`]).
    pub async fn lease_keep_alive_once(&self, id: i64, timeout: Duration) -> Result<()> {
        let mut l = self.client.lease_client();
        self.within(timeout, l.keep_alive(id))
            .await
            .map_err(self.fail("lease keep-alive"))?;
        Ok(())
    }

    /// `lease revoke`: ends lease `id` and deletes the keys attached to it.
    pub async fn lease_revoke(&self, id: i64, timeout: Duration) -> Result<()> {
        let mut l = self.client.lease_client();
        self.within(timeout, l.revoke(id))
            .await
            .map_err(self.fail("lease revoke"))?;
        Ok(())
    }

    /// Puts `key` attached to lease `id`.
    pub async fn put_with_lease(&self, key: String, value: String, id: i64, timeout: Duration) -> Result<i64> {
        let mut kv = self.client.kv_client();
        let options = etcd_client::PutOptions::new().with_lease(id);
        let r = self
            .within(timeout, kv.put(key, value, Some(options)))
            .await
            .map_err(self.fail("put"))?;
        Ok(r.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Every key under `prefix` with its value, read linearizably.
    pub async fn get_prefix(&self, prefix: &str, timeout: Duration) -> Result<HashMap<String, Vec<u8>>> {
        let mut found = HashMap::new();
        self.for_each_under(prefix, timeout, |key, value| {
            found.insert(String::from_utf8_lossy(key).into_owned(), value.to_vec());
        })
        .await?;
        Ok(found)
    }

    /// Reads every key under `prefix` in pages of [`READ_PAGE`] keys, all at the revision of
    /// the first page (one consistent view, linearizable), and hands each to `visit`. A
    /// single range read of a long run's keys would pass gRPC's 4 MiB message limit; pages
    /// stay far below it. `timeout` is for each page.
    pub async fn for_each_under(
        &self,
        prefix: &str,
        timeout: Duration,
        mut visit: impl FnMut(&[u8], &[u8]),
    ) -> Result<u64> {
        let end = prefix_end(prefix.as_bytes());
        let mut start = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut count = 0;
        loop {
            let mut kv = self.client.kv_client();
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(READ_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let r = self
                .within(timeout, kv.get(start.clone(), Some(options)))
                .await
                .map_err(self.fail("get prefix"))?;
            if revision == 0 {
                revision = r.header().map(|h| h.revision()).unwrap_or(0);
            }
            for pair in r.kvs() {
                visit(pair.key(), pair.value());
                count += 1;
            }
            match (r.more(), r.kvs().last()) {
                (true, Some(last)) => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok(count),
            }
        }
    }

    /// A linearizable read of one key: its value (None: absent) and the revision read at.
    pub async fn get_value(&self, key: &str, timeout: Duration) -> Result<(Option<String>, i64)> {
        let mut kv = self.client.kv_client();
        let r = self
            .within(timeout, kv.get(key, None))
            .await
            .map_err(self.fail("get"))?;
        let value = r
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
        Ok((value, r.header().map(|h| h.revision()).unwrap_or(0)))
    }

    /// A serializable read of one key: this member's own view, possibly stale.
    pub async fn get_value_serializable(&self, key: &str, timeout: Duration) -> Result<Option<String>> {
        let mut kv = self.client.kv_client();
        let r = self
            .within(timeout, kv.get(key, Some(GetOptions::new().with_serializable())))
            .await
            .map_err(self.fail("get"))?;
        Ok(r.kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// One transaction: if `key`'s value is `expected` (None: the key is absent), set it to
    /// `new`. Returns whether the comparison held (and the write happened).
    pub async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        timeout: Duration,
    ) -> Result<bool> {
        use etcd_client::{Compare, CompareOp, Txn, TxnOp};
        let compare = match expected {
            Some(value) => Compare::value(key, CompareOp::Equal, value),
            None => Compare::create_revision(key, CompareOp::Equal, 0),
        };
        let txn = Txn::new().when([compare]).and_then([TxnOp::put(key, new, None)]);
        let mut kv = self.client.kv_client();
        let r = self.within(timeout, kv.txn(txn)).await.map_err(self.fail("txn"))?;
        Ok(r.succeeded())
    }

    pub async fn delete(&self, key: &str, timeout: Duration) -> Result<i64> {
        let mut kv = self.client.kv_client();
        let r = self
            .within(timeout, kv.delete(key, None))
            .await
            .map_err(self.fail("delete"))?;
        Ok(r.deleted())
    }

    /// Whether any key lies under `prefix` (reads at most one key).
    pub async fn has_keys_under(&self, prefix: &str, timeout: Duration) -> Result<bool> {
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_prefix().with_limit(1).with_keys_only();
        let r = self
            .within(timeout, kv.get(prefix, Some(options)))
            .await
            .map_err(self.fail("get prefix"))?;
        Ok(!r.kvs().is_empty())
    }

    /// Deletes every key under `prefix`; returns (keys deleted, revision after the delete).
    pub async fn delete_prefix(&self, prefix: &str, timeout: Duration) -> Result<(i64, i64)> {
        let mut kv = self.client.kv_client();
        let r = self
            .within(timeout, kv.delete(prefix, Some(DeleteOptions::new().with_prefix())))
            .await
            .map_err(self.fail("delete prefix"))?;
        Ok((r.deleted(), r.header().map(|h| h.revision()).unwrap_or(0)))
    }

    /// Compacts the key space up to `revision` (and waits until the compaction is physical).
    pub async fn compact(&self, revision: i64, timeout: Duration) -> Result<()> {
        let mut kv = self.client.kv_client();
        self.within(
            timeout,
            kv.compact(revision, Some(CompactionOptions::new().with_physical())),
        )
        .await
        .map_err(self.fail("compact"))?;
        Ok(())
    }

    /// Defragments this member's backend.
    pub async fn defragment(&self, timeout: Duration) -> Result<()> {
        let mut m = self.client.maintenance_client();
        self.within(timeout, m.defragment())
            .await
            .map_err(self.fail("defragment"))?;
        Ok(())
    }

    /// The API side of `etcdctl user add root && etcdctl role add root && etcdctl user
    /// grant-role root root && etcdctl auth enable`.
    pub async fn enable_root_auth(
        &self,
        password: &crate::etcd::security::RootPassword,
        timeout: Duration,
    ) -> Result<()> {
        use crate::etcd::security::ROOT_USER;
        let mut auth = self.client.auth_client();
        self.within(timeout, auth.user_add(ROOT_USER, password.expose(), None))
            .await
            .map_err(self.fail("user add root"))?;
        self.within(timeout, auth.role_add(ROOT_USER))
            .await
            .map_err(self.fail("role add root"))?;
        self.within(timeout, auth.user_grant_role(ROOT_USER, ROOT_USER))
            .await
            .map_err(self.fail("user grant-role root root"))?;
        self.within(timeout, auth.auth_enable())
            .await
            .map_err(self.fail("auth enable"))?;
        Ok(())
    }

    /// A KV client on this member's connection, for callers that issue many requests.
    pub fn kv(&self) -> KvClient {
        self.client.kv_client()
    }

    /// Streams a snapshot of the member's backend into `path`, as `etcdctl snapshot save`
    /// does, and checks the SHA-256 that etcd appends to the stream.
    pub async fn save_snapshot(&self, path: &Path, timeout: Duration) -> Result<u64> {
        let mut m = self.client.maintenance_client();
        let fail = self.fail("snapshot save");
        let bytes = self
            .within(timeout, async {
                let mut stream = m.snapshot().await?;
                let mut bytes = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    bytes.extend_from_slice(chunk.blob());
                }
                Ok::<_, etcd_client::Error>(bytes)
            })
            .await
            .map_err(fail)?;
        if !snapshot_hash_is_valid(&bytes) {
            return Err(Error::Etcd {
                action: "snapshot save",
                member: self.name.clone(),
                message: format!(
                    "the snapshot stream ({} bytes) does not end in a valid SHA-256",
                    bytes.len()
                ),
            });
        }
        std::fs::write(path, &bytes).map_err(Error::io(path))?;
        Ok(bytes.len() as u64)
    }
}

/// One alarm as `etcdctl alarm list` prints it: `memberID:<decimal id> alarm:NOSPACE`.
pub fn alarm_line(member_id: u64, alarm: &str) -> String {
    format!("memberID:{member_id} alarm:{alarm}")
}

/// Whether an error of a keep-alive says that etcd no longer knows the lease (it expired).
pub fn is_lease_gone(error: &Error) -> bool {
    error.to_string().contains("lease not found")
}

/// The members the application side of a drill (writers, watcher) talks to. A procedure
/// that brings the cluster back on other endpoints (a restore beside the old cluster)
/// switches the set, and every holder of a clone follows from its next request on.
#[derive(Clone)]
pub struct ClientSet {
    current: Arc<RwLock<Arc<Vec<MemberClient>>>>,
}

impl ClientSet {
    pub fn new(members: Vec<MemberClient>) -> ClientSet {
        ClientSet {
            current: Arc::new(RwLock::new(Arc::new(members))),
        }
    }

    /// The members as of now.
    pub fn current(&self) -> Arc<Vec<MemberClient>> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Points every holder at `members`.
    pub fn switch(&self, members: Vec<MemberClient>) {
        let members = Arc::new(members);
        match self.current.write() {
            Ok(mut guard) => *guard = members,
            Err(poisoned) => *poisoned.into_inner() = members,
        }
    }
}

/// A snapshot from `snapshot save` ends with the SHA-256 of everything before it.
pub fn snapshot_hash_is_valid(bytes: &[u8]) -> bool {
    if bytes.len() <= 32 {
        return false;
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    Sha256::digest(body).as_slice() == trailer
}

/// Checks `--endpoints` values: http URLs with a host and port.
pub fn parse_endpoints(list: &[String]) -> Result<Vec<String>> {
    let bad = |e: &str, why: &str| Error::InvalidArgument {
        argument: "--endpoints".into(),
        message: format!("`{e}`: {why}"),
    };
    let mut out = Vec::new();
    for raw in list
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("http://{raw}")
        };
        let rest = with_scheme
            .strip_prefix("http://")
            .or_else(|| with_scheme.strip_prefix("https://"))
            .ok_or_else(|| bad(raw, "write http://host:port or https://host:port"))?;
        let (host, port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .ok_or_else(|| bad(raw, "no port; write host:port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad(raw, "write host:port with a numeric port"));
        }
        out.push(with_scheme.trim_end_matches('/').to_string());
    }
    if out.is_empty() {
        return Err(bad("", "no endpoint given"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_after_its_last_incrementable_byte() {
        assert_eq!(prefix_end(b"/etcd-drill/ab/"), b"/etcd-drill/ab0".to_vec());
        assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn endpoints_are_checked() {
        let ok = parse_endpoints(&["127.0.0.1:2379,http://10.0.0.1:2379/".into()]).unwrap();
        assert_eq!(ok, vec!["http://127.0.0.1:2379", "http://10.0.0.1:2379"]);
        assert_eq!(parse_endpoints(&["https://a:1".into()]).unwrap(), vec!["https://a:1"]);
        let err = parse_endpoints(&["unix://a:1".into()]).unwrap_err().to_string();
        assert!(err.contains("unix://a:1") && err.contains("https://"), "{err}");
        assert!(parse_endpoints(&["localhost".into()]).is_err());
        assert!(parse_endpoints(&["a:x".into()]).is_err());
        assert!(parse_endpoints(&[]).is_err());
    }

    #[test]
    fn snapshot_trailer_is_checked() {
        let mut bytes = b"a bbolt file".to_vec();
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        assert!(snapshot_hash_is_valid(&bytes));
        bytes[0] ^= 1;
        assert!(!snapshot_hash_is_valid(&bytes));
        assert!(!snapshot_hash_is_valid(&[0; 32]));
    }
}
