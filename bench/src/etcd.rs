//! The etcd peer: a 3-node etcd cluster on loopback, started from Debian's etcd-server package,
//! and a load target that issues puts through etcd's gRPC API.
//!
//! etcd's KV and Maintenance services are called directly with tonic and a handful of message
//! structs declared here with prost's derive (the field numbers are etcd's `rpc.proto`), so
//! building this needs no protoc. Puts go to the leader's client URL, as raftwal's client sends to
//! its leader, so neither system pays a forwarding hop the other does not.

use crate::load::AppendTarget;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "bytes", tag = "1")]
    key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    value: Bytes,
    #[prost(int64, tag = "3")]
    lease: i64,
    #[prost(bool, tag = "4")]
    prev_kv: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    cluster_id: u64,
    #[prost(uint64, tag = "2")]
    member_id: u64,
    #[prost(int64, tag = "3")]
    revision: i64,
    #[prost(uint64, tag = "4")]
    raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    version: String,
    #[prost(int64, tag = "3")]
    db_size: i64,
    #[prost(uint64, tag = "4")]
    leader: u64,
}

const PUT: &str = "/etcdserverpb.KV/Put";
const STATUS: &str = "/etcdserverpb.Maintenance/Status";

async fn unary<Req, Resp>(
    channel: &Channel,
    path: &'static str,
    req: Req,
) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec: tonic_prost::ProstCodec<Req, Resp> = tonic_prost::ProstCodec::default();
    let resp = grpc.unary(tonic::Request::new(req), PathAndQuery::from_static(path), codec).await?;
    Ok(resp.into_inner())
}

/// How long one put may take before the driver gives up on that member and tries the next.
///
/// etcd answers a put whose proposal was lost in a leader change only at its request timeout
/// (5 s plus two election timeouts, 7 s with the defaults); a client that waited for it would
/// measure that timeout, not etcd's failover. Puts here take at most tens of milliseconds
/// otherwise (p99.9 under 150 ms in the benchmark's runs), so a 1 s deadline, as raftwal's
/// client's 1 s connect timeout, only cuts waits on a dead or leaderless member. A put that
/// timed out may still be applied; it overwrites the same key, so the workload is unchanged.
const PUT_DEADLINE: Duration = Duration::from_secs(1);

/// One put to one member, within [`PUT_DEADLINE`].
async fn put(channel: &Channel, req: PutRequest) -> Result<PutResponse, String> {
    match tokio::time::timeout(PUT_DEADLINE, unary::<_, PutResponse>(channel, PUT, req)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(status)) => Err(status.message().to_owned()),
        Err(_) => Err(format!("no answer within {PUT_DEADLINE:?}")),
    }
}

/// One etcd member process.
#[derive(Debug)]
struct Member {
    name: String,
    client_url: String,
    child: Option<Child>,
    member_id: Option<u64>,
}

/// A local etcd cluster whose processes die with it.
#[derive(Debug)]
pub(crate) struct EtcdCluster {
    members: Vec<Member>,
    _dir: PathBuf,
}

/// Makes sure the `etcd` binary exists, installing Debian's package through the bench's script
/// when it does not.
pub(crate) fn ensure_installed() -> Result<(), String> {
    if Command::new("etcd").arg("--version").stdout(Stdio::null()).status().is_ok() {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-etcd.sh");
    eprintln!("etcd is missing: running {}", script.display());
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!("{} failed ({status}); install etcd 3.4 by hand", script.display()));
    }
    Ok(())
}

impl EtcdCluster {
    /// Starts `nodes` members with data under `dir`, client ports from `base_port` and peer ports
    /// from `base_port + 100`, and waits until the cluster has a leader that accepts a put.
    pub(crate) async fn start(nodes: usize, dir: &Path, base_port: u16) -> Result<Self, String> {
        ensure_installed()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", base_port + 100 + i as u16);
        let initial: Vec<String> = (0..nodes).map(|i| format!("e{i}={}", peer_url(i))).collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for i in 0..nodes {
            let name = format!("e{i}");
            let client_url = format!("http://127.0.0.1:{}", base_port + i as u16);
            let log = std::fs::File::create(dir.join(format!("{name}.log")))
                .map_err(|e| format!("create etcd log: {e}"))?;
            let child = Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.join(&name))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url(i)])
                .args(["--initial-advertise-peer-urls", &peer_url(i)])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("raftwal-bench-{}", std::process::id())])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("start etcd: {e}"))?;
            members.push(Member { name, client_url, child: Some(child), member_id: None });
        }
        let mut cluster = EtcdCluster { members, _dir: dir.to_owned() };
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    async fn connect(url: &str) -> Result<Channel, String> {
        tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connect {url}: {e}"))
    }

    /// Waits until every running member answers Status and they agree on a leader that accepts a
    /// put; records member ids.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_err = String::from("no answer yet");
        while tokio::time::Instant::now() < deadline {
            match self.leader_url().await {
                Ok(url) => {
                    let ch = Self::connect(&url).await?;
                    let probe = PutRequest {
                        key: Bytes::from_static(b"raftwal-bench/probe"),
                        value: Bytes::from_static(b"x"),
                        lease: 0,
                        prev_kv: false,
                    };
                    match unary::<_, PutResponse>(&ch, PUT, probe).await {
                        Ok(_) => return Ok(()),
                        Err(e) => last_err = e.to_string(),
                    }
                }
                Err(e) => last_err = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("etcd cluster not ready after {timeout:?}: {last_err}"))
    }

    /// The client URL of the current leader.
    pub(crate) async fn leader_url(&mut self) -> Result<String, String> {
        let mut leader = None;
        for m in self.members.iter_mut().filter(|m| m.child.is_some()) {
            let ch = match Self::connect(&m.client_url).await {
                Ok(ch) => ch,
                Err(e) => return Err(e),
            };
            let st: StatusResponse =
                unary(&ch, STATUS, StatusRequest {}).await.map_err(|e| e.to_string())?;
            m.member_id = st.header.as_ref().map(|h| h.member_id);
            if st.leader != 0 {
                leader = Some(st.leader);
            }
        }
        let leader = leader.ok_or("no leader yet")?;
        self.members
            .iter()
            .find(|m| m.member_id == Some(leader) && m.child.is_some())
            .map(|m| m.client_url.clone())
            .ok_or_else(|| "leader is not a running member".to_owned())
    }

    /// Kills the leader with SIGKILL (for failover runs), or with `graceful` stops it with
    /// SIGTERM (etcd then transfers its leadership before it exits), and returns its name.
    pub(crate) async fn kill_leader(&mut self, graceful: bool) -> Result<String, String> {
        let url = self.leader_url().await?;
        let m = self.members.iter_mut().find(|m| m.client_url == url).ok_or("leader vanished")?;
        if let Some(mut child) = m.child.take() {
            if graceful {
                // kill(1) rather than kill(2): the workspace has no unsafe code. The child is not
                // reaped yet, so its pid is still its own.
                let sent = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .map_err(|e| format!("cannot run kill: {e}"))?;
                if !sent.success() {
                    return Err(format!("kill -TERM {} failed: {sent}", child.id()));
                }
                // Wait for the exit without blocking the load generator's thread; a member that
                // does not exit within 10 s is killed.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while matches!(child.try_wait(), Ok(None)) && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(m.name.clone())
    }

    /// A load target that puts to the current leader, and follows the leader when it fails.
    pub(crate) async fn target(&mut self) -> Result<EtcdTarget, String> {
        let url = self.leader_url().await?;
        let mut members = Vec::new();
        let mut leader = 0;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            if m.client_url == url {
                leader = members.len();
            }
            members.push((m.member_id, Self::connect(&m.client_url).await?));
        }
        Ok(EtcdTarget { members, leader: AtomicUsize::new(leader), keys_per_worker: 1024 })
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Puts through etcd's gRPC API.
///
/// Each worker cycles through its own `keys_per_worker` keys, so etcd's key space stays small
/// and its B-tree warm: this favours etcd slightly over a workload of ever-new keys.
///
/// Puts go to the member believed to lead. When a put to it fails (the leader was killed in a
/// failover run), the target asks the other members who leads now and moves there, as
/// raftwal's client follows its leader; while no member names a leader, any live member takes
/// the put and forwards it.
#[derive(Debug)]
pub(crate) struct EtcdTarget {
    /// Every member running when the load started: its id and a connection to it.
    members: Vec<(Option<u64>, Channel)>,
    /// Index in `members` of the member believed to lead.
    leader: AtomicUsize,
    keys_per_worker: u64,
}

impl EtcdTarget {
    /// The index of the member another member names as leader, asking all but `failed`.
    async fn find_leader(&self, failed: usize) -> Option<usize> {
        for (at, (_, channel)) in self.members.iter().enumerate() {
            if at == failed {
                continue;
            }
            let status = unary::<_, StatusResponse>(channel, STATUS, StatusRequest {});
            if let Ok(Ok(st)) = tokio::time::timeout(PUT_DEADLINE, status).await {
                if st.leader != 0 {
                    return self.members.iter().position(|(id, _)| *id == Some(st.leader));
                }
            }
        }
        None
    }
}

impl AppendTarget for EtcdTarget {
    async fn append(&self, worker: usize, seq: u64, payload: Bytes) -> Result<u64, String> {
        let key = Bytes::from(format!("bench/{worker}/{}", seq % self.keys_per_worker));
        let req = PutRequest { key, value: payload, lease: 0, prev_kv: false };
        let revision =
            |r: PutResponse| r.header.map_or(0, |h| u64::try_from(h.revision).unwrap_or(0));
        let at = self.leader.load(Ordering::Relaxed);
        let first = match put(&self.members[at].1, req.clone()).await {
            Ok(r) => return Ok(revision(r)),
            Err(e) => e,
        };
        if let Some(next) = self.find_leader(at).await.filter(|next| *next != at) {
            self.leader.store(next, Ordering::Relaxed);
            if let Ok(r) = put(&self.members[next].1, req.clone()).await {
                return Ok(revision(r));
            }
        }
        // No leader named yet: any live member forwards the put once there is one.
        for (other, (_, channel)) in self.members.iter().enumerate() {
            if other != at {
                if let Ok(r) = put(channel, req.clone()).await {
                    return Ok(revision(r));
                }
            }
        }
        Err(first)
    }
}
