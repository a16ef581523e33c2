//! Real network partitions between `raftwal serve` processes. Each node runs in a network
//! namespace of its own, joined to the others and to a client namespace by veth pairs on a
//! bridge in a hub namespace; setting a node's hub-side link down cuts it off from every other
//! node and from the client while it keeps running (its own address still works inside its
//! namespace, so a client there can still reach it).
//!
//! The scenario:
//! 1. Three nodes elect a leader; 20 lines are appended and acknowledged.
//! 2. The leader is cut off. An append sent to it from inside its namespace is never
//!    acknowledged (it cannot reach a majority), and it stops calling itself leader (CheckQuorum).
//! 3. The other two elect a leader and acknowledge 20 more lines. A plain read on the cut-off
//!    node answers without them (its own, stale, commit index); a linearizable read there fails
//!    (no leader can confirm it), and one on the majority's side holds them.
//! 4. The link comes back: all three converge on one log that holds every acknowledged line at
//!    its acknowledged index, on every node, and not the line the cut-off leader took in.
//! 5. A follower is cut off while 20 more lines are appended (the majority still commits), then
//!    comes back and catches up to the same log.
//! 6. A `tail` started on a follower, which is then cut off from the other nodes but not from
//!    the client (blackhole routes between the nodes' namespaces), moves to a node that knows a
//!    leader and prints the lines the majority commits meanwhile, at their acknowledged indexes.
//!
//! It needs root and iproute2 (`ip netns`); without them it says so and does nothing, so the
//! README's test command still passes on a machine that cannot make namespaces. CI runs as root.

// Test code: a failed unwrap is the test's failure, and it waits on real processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod cli_support;

use cli_support::{bin, read_json_lines, run_command, wait_until, Entry, Proc};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Generous deadlines: they bound a hang, they do not measure speed.
const T: Duration = Duration::from_secs(60);
const NODES: u64 = 3;
const PORT: u16 = 7400;

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|rest| rest.split_whitespace().nth(1).map(str::to_owned))
    });
    if uid.as_deref() != Some("0") {
        return Some(format!("network namespaces need root (effective uid {uid:?})"));
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`ip -V` failed: {}", String::from_utf8_lossy(&out.stderr))),
        Err(e) => Some(format!("iproute2's `ip` is not available: {e}")),
    }
}

/// Runs `ip args`; panics with its output if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces: a hub with the bridge, one per node, one for the client. Deleted on drop.
struct Net {
    prefix: String,
}

impl Net {
    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    fn node_ns(&self, id: u64) -> String {
        format!("{}-n{id}", self.prefix)
    }

    fn client_ns(&self) -> String {
        format!("{}-client", self.prefix)
    }

    /// Node `id`'s address: 10.213.0.id.
    fn addr(id: u64) -> SocketAddr {
        format!("10.213.0.{id}:{PORT}").parse().unwrap()
    }

    fn create() -> Net {
        let net = Net { prefix: format!("rwpart{}", std::process::id()) };
        let hub = net.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        let members: Vec<(String, String, u64)> = (1..=NODES)
            .map(|id| (net.node_ns(id), format!("v{id}"), id))
            .chain(std::iter::once((net.client_ns(), "vc".to_owned(), 100)))
            .collect();
        for (ns, link, host) in &members {
            ip(&["netns", "add", ns]);
            ip(&[
                "-n", &hub, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns",
                ns,
            ]);
            ip(&["-n", &hub, "link", "set", link, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", link, "up"]);
            ip(&["-n", ns, "addr", "add", &format!("10.213.0.{host}/24"), "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Cuts node `id` off from every other namespace (or joins it again).
    fn set_link(&self, id: u64, up: bool) {
        ip(&["-n", &self.hub(), "link", "set", &format!("v{id}"), if up { "up" } else { "down" }]);
    }

    /// Cuts node `id` off from the other nodes only (or joins it again), both ways, with
    /// blackhole routes in its namespace and theirs: clients still reach it.
    fn set_peers_reachable(&self, id: u64, reachable: bool) {
        let verb = if reachable { "del" } else { "add" };
        for peer in (1..=NODES).filter(|&p| p != id) {
            for (ns, to) in [(self.node_ns(id), peer), (self.node_ns(peer), id)] {
                let dest = format!("10.213.0.{to}/32");
                ip(&["-n", &ns, "route", verb, "blackhole", &dest]);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut all: Vec<String> = (1..=NODES).map(|id| self.node_ns(id)).collect();
        all.push(self.client_ns());
        all.push(self.hub());
        for ns in all {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// Runs `raftwal args` inside namespace `ns` with `stdin`; returns status, stdout, stderr.
fn run_in(ns: &str, args: &[&str], stdin: &[u8]) -> (ExitStatus, String, String) {
    run_command(Command::new("ip").args(["netns", "exec", ns, bin()]).args(args), stdin)
}

fn cluster_arg(ids: &[u64]) -> String {
    ids.iter().map(|&id| Net::addr(id).to_string()).collect::<Vec<_>>().join(",")
}

/// The cluster: the namespaces, the nodes' processes and their files.
struct Cluster {
    // Field order is drop order: the processes go before their namespaces.
    nodes: Vec<Proc>,
    net: Net,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let net = Net::create();
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let out = Command::new(bin())
            .args(["certs", "--out", tls.to_str().unwrap(), "--nodes", &NODES.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "certs: {}", String::from_utf8_lossy(&out.stderr));
        let mut cluster = Cluster { nodes: Vec::new(), net, dir };
        for id in 1..=NODES {
            let peers: Vec<String> =
                (1..=NODES).filter(|&p| p != id).map(|p| format!("{p}={}", Net::addr(p))).collect();
            let log = std::fs::File::create(cluster.log_path(id)).unwrap();
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", &cluster.net.node_ns(id), bin(), "serve"])
                .arg(format!("--id={id}"))
                .arg(format!("--listen={}", Net::addr(id)))
                .arg(format!("--peers={}", peers.join(",")))
                .arg(format!(
                    "--data-dir={}",
                    cluster.dir.path().join(format!("node-{id}")).display()
                ))
                .arg(format!("--tls-dir={}", tls.display()))
                .arg("--shards=1")
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log);
            cluster.nodes.push(Proc::spawn(format!("serve node {id}"), &mut command));
        }
        cluster
    }

    fn tls(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// Every node's standard error, for failure messages.
    fn logs(&self) -> String {
        (1..=NODES)
            .map(|id| {
                let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
                format!("--- node {id}:\n{text}")
            })
            .collect()
    }

    /// `raftwal CMD --cluster <ids> --tls-dir ... extra` run in namespace `ns`.
    fn cli(
        &self,
        ns: &str,
        cmd: &str,
        ids: &[u64],
        extra: &[&str],
        stdin: &[u8],
    ) -> (ExitStatus, String, String) {
        let tls = self.tls();
        let cluster = cluster_arg(ids);
        let mut args = vec![cmd, "--cluster", &cluster, "--tls-dir", tls.to_str().unwrap()];
        args.extend_from_slice(extra);
        run_in(ns, &args, stdin)
    }

    /// Each listed node's status as seen from `ns` (None for a node that did not answer).
    fn statuses(&self, ns: &str, ids: &[u64]) -> Vec<Option<serde_json::Value>> {
        let (_, out, _) =
            self.cli(ns, "status", ids, &["--attempt-timeout-ms", "500", "--retry-s", "1"], b"");
        let lines: Vec<serde_json::Value> =
            out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), ids.len(), "one status line per node: {out}");
        lines.into_iter().map(|v| v.get("role").is_some().then_some(v)).collect()
    }

    /// Waits until the nodes `ids`, asked from `ns`, agree on a leader among them; returns it.
    fn wait_leader(&self, ns: &str, ids: &[u64]) -> u64 {
        let mut leader = 0;
        wait_until(T, &format!("a leader agreed by nodes {ids:?}"), || {
            let statuses = self.statuses(ns, ids);
            let Some(Some(first)) = statuses.first() else { return false };
            let Some(hint) = first["leader"].as_u64() else { return false };
            let agreed = statuses
                .iter()
                .all(|s| s.as_ref().and_then(|s| s["leader"].as_u64()) == Some(hint));
            let leads = statuses.iter().flatten().any(|s| s["id"] == hint && s["role"] == "leader");
            leader = hint;
            agreed && leads && ids.contains(&hint)
        });
        leader
    }

    /// Appends `lines` through the nodes `ids` from the client namespace; returns each line's
    /// acknowledged index.
    fn append(&self, ids: &[u64], lines: &[String]) -> Vec<(String, u64)> {
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let (status, out, err) =
            self.cli(&self.net.client_ns(), "append", ids, &[], input.as_bytes());
        assert!(status.success(), "append through {ids:?} failed: {out}{err}\n{}", self.logs());
        let acks: Vec<u64> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["index"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(acks.len(), lines.len(), "one acknowledgement per line: {out}");
        lines.iter().cloned().zip(acks).collect()
    }

    /// Waits until every node, asked from the client namespace, has the same commit index of
    /// at least `at_least`; returns it.
    fn wait_converged(&self, at_least: u64) -> u64 {
        let all: Vec<u64> = (1..=NODES).collect();
        let mut commit = 0;
        wait_until(T, &format!("every node to commit the same index >= {at_least}"), || {
            let commits: Vec<Option<u64>> = self
                .statuses(&self.net.client_ns(), &all)
                .into_iter()
                .map(|s| s.and_then(|s| s["commit_index"].as_u64()))
                .collect();
            let Some(Some(first)) = commits.first() else { return false };
            commit = *first;
            *first >= at_least && commits.iter().all(|c| *c == Some(*first))
        });
        commit
    }

    /// Every committed entry of node `id`, read from the client namespace.
    fn read(&self, id: u64) -> Vec<Entry> {
        let (status, out, err) =
            self.cli(&self.net.client_ns(), "read", &[id], &["--from", "1"], b"");
        assert!(status.success(), "read from node {id} failed: {err}");
        out.lines().map(|l| Entry::from_json(&serde_json::from_str(l).unwrap())).collect()
    }
}

fn lines(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag} {i}")).collect()
}

/// Every node holds the same entries, and each acknowledged line sits at its acknowledged
/// index. Returns the common log.
fn check_logs(cluster: &Cluster, acked: &HashMap<String, u64>, commit: u64) -> Vec<Entry> {
    let logs: Vec<Vec<Entry>> = (1..=NODES).map(|id| cluster.read(id)).collect();
    for (id, log) in (1..=NODES).zip(&logs) {
        assert_eq!(log, &logs[0], "node {id}'s log differs from node 1's");
    }
    let log = logs.into_iter().next().unwrap();
    // Internal entries (a new leader's first entry) are not printed: indexes may skip.
    assert!(log.windows(2).all(|w| w[0].index < w[1].index), "indexes increase");
    assert!(log.last().is_some_and(|e| e.index <= commit), "nothing past the commit index");
    let by_index: HashMap<u64, &Entry> = log.iter().map(|e| (e.index, e)).collect();
    for (line, index) in acked {
        let entry =
            by_index.get(index).unwrap_or_else(|| panic!("acknowledged {index} is missing"));
        assert_eq!(entry.data, line.as_bytes(), "the entry at acknowledged index {index}");
    }
    log
}

#[test]
fn a_cut_off_leader_acknowledges_nothing_and_the_majority_goes_on() {
    if let Some(reason) = missing_prerequisite() {
        eprintln!("skipped: {reason}");
        return;
    }
    let cluster = Cluster::start();
    let all: Vec<u64> = (1..=NODES).collect();
    let client_ns = cluster.net.client_ns();
    let leader = cluster.wait_leader(&client_ns, &all);
    let mut acked: HashMap<String, u64> =
        cluster.append(&all, &lines("before", 20)).into_iter().collect();

    // 2. Cut the leader off. An append sent to it from its own namespace reaches it, but it
    // cannot replicate, so the append is never acknowledged.
    cluster.net.set_link(leader, false);
    let (status, out, err) = cluster.cli(
        &cluster.net.node_ns(leader),
        "append",
        &[leader],
        &["--attempt-timeout-ms", "1000", "--retry-s", "4"],
        b"sent to the cut-off leader\n",
    );
    assert!(!status.success(), "the cut-off leader acknowledged an append: {out}{err}");
    assert!(!out.contains("\"index\""), "an index was acknowledged: {out}");
    // CheckQuorum: without a majority's replies it stops leading.
    wait_until(T, "the cut-off leader to step down", || {
        cluster.statuses(&cluster.net.node_ns(leader), &[leader])[0]
            .as_ref()
            .is_some_and(|s| s["role"] != "leader")
    });

    // 3. The other two elect a leader and commit.
    let rest: Vec<u64> = all.iter().copied().filter(|&id| id != leader).collect();
    let second = cluster.wait_leader(&client_ns, &rest);
    assert_ne!(second, leader);
    acked.extend(cluster.append(&rest, &lines("during", 20)));
    // The cut-off node's own log lacks those lines. A plain read there answers from it (stale,
    // and documented so); a linearizable read there cannot be confirmed by any leader and
    // fails rather than answer without them.
    let cut_off = cluster.net.node_ns(leader);
    let quick = ["--attempt-timeout-ms", "1000", "--retry-s", "3"];
    let (status, out, err) = cluster.cli(&cut_off, "read", &[leader], &quick, b"");
    assert!(status.success(), "{err}");
    assert!(!out.contains("during"), "the cut-off node cannot have the new lines: {out}");
    let linearizable = ["--linearizable", quick[0], quick[1], quick[2], quick[3]];
    let (status, out, err) = cluster.cli(&cut_off, "read", &[leader], &linearizable, b"");
    assert_eq!(status.code(), Some(1), "a linearizable read was served stale: {out}{err}");
    // On the majority's side it holds every acknowledged line, through any node.
    let (status, out, err) = cluster.cli(&client_ns, "read", &rest, &["--linearizable"], b"");
    assert!(status.success(), "{err}");
    assert_eq!(out.matches("during").count(), 20, "{out}");

    // 4. Heal: one log everywhere, without the cut-off leader's line.
    cluster.net.set_link(leader, true);
    let last = *acked.values().max().unwrap();
    let commit = cluster.wait_converged(last);
    let log = check_logs(&cluster, &acked, commit);
    assert!(
        log.iter().all(|e| e.data != b"sent to the cut-off leader"),
        "a line the cut-off leader never got acknowledged is committed"
    );

    // 5. Cut off a follower: the other two still commit; it catches up when it comes back.
    let now_leader = cluster.wait_leader(&client_ns, &all);
    let follower = *all.iter().find(|&&id| id != now_leader).unwrap();
    cluster.net.set_link(follower, false);
    let reachable: Vec<u64> = all.iter().copied().filter(|&id| id != follower).collect();
    acked.extend(cluster.append(&reachable, &lines("follower cut off", 20)));
    cluster.net.set_link(follower, true);
    let last = *acked.values().max().unwrap();
    let commit = cluster.wait_converged(last);
    check_logs(&cluster, &acked, commit);

    // 6. A tail on a follower that is then cut off from the other nodes, not from clients: the
    // stream stays open but nothing commits there any more. The tail moves to a node that
    // knows a leader and prints what the majority commits meanwhile.
    let now_leader = cluster.wait_leader(&client_ns, &all);
    let follower = *all.iter().find(|&&id| id != now_leader).unwrap();
    let others: Vec<u64> = all.iter().copied().filter(|&id| id != follower).collect();
    let order: Vec<u64> = std::iter::once(follower).chain(others.iter().copied()).collect();
    let tls = cluster.tls();
    let from = (commit + 1).to_string();
    let mut tail = Proc::spawn(
        "tail",
        Command::new("ip")
            .args(["netns", "exec", &client_ns, bin(), "tail", "--cluster"])
            .arg(cluster_arg(&order))
            .args(["--tls-dir", tls.to_str().unwrap(), "--from", &from])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let tailed = Arc::new(Mutex::new(Vec::new()));
    let sink = tailed.clone();
    let reader = read_json_lines(tail.take_stdout(), move |line| {
        sink.lock().unwrap().push(Entry::from_json(&line));
    });
    cluster.net.set_peers_reachable(follower, false);
    let moved = lines("tail moved", 20);
    acked.extend(cluster.append(&others, &moved));
    wait_until(T, "the tail to print the lines committed past the cut-off follower", || {
        let tailed = tailed.lock().unwrap();
        moved.iter().all(|line| tailed.iter().any(|e| e.data == line.as_bytes()))
    });
    tail.kill();
    reader.join().unwrap();
    for entry in tailed.lock().unwrap().iter() {
        let data = String::from_utf8_lossy(&entry.data).into_owned();
        assert_eq!(acked.get(&data), Some(&entry.index), "tailed {data:?} at {}", entry.index);
    }
    cluster.net.set_peers_reachable(follower, true);
    let last = *acked.values().max().unwrap();
    let commit = cluster.wait_converged(last);
    let log = check_logs(&cluster, &acked, commit);
    eprintln!(
        "leader {leader} cut off, node {second} took over; follower {follower} cut off and \
         caught up, its tail moved on; {} entries, {} acknowledged, identical on every node",
        log.len(),
        acked.len()
    );
}
