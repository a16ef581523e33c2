//! Harness for tests that run the `raftwal` binary: child processes that are killed when a test
//! fails (a Drop guard), free loopback ports, a cluster of `raftwal serve` processes, and the
//! parsing of the commands' JSON lines.

#![allow(dead_code)]
// Test harness code: failures here are test failures, and it waits on real time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use raftwal::client::{Client, ClientConfig};
use raftwal_wire::client::{LogStatus, Role};
use raftwal_wire::types::LogId;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `raftwal` binary cargo built for these tests.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_raftwal")
}

/// A free UDP port on loopback (bound, then released: good enough for tests).
pub(crate) fn free_udp_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A free TCP port on loopback.
pub(crate) fn free_tcp_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so that a failing test
/// leaves nothing running.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Option<Child>,
}

impl Proc {
    pub(crate) fn spawn(name: impl Into<String>, command: &mut Command) -> Proc {
        let name = name.into();
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child: Some(child) }
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process was not reaped yet")
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().expect("the process was not reaped yet").id() as i32
    }

    pub(crate) fn take_stdout(&mut self) -> ChildStdout {
        self.child().stdout.take().expect("stdout is piped")
    }

    /// Sends `signal` (libc's number).
    pub(crate) fn signal(&self, signal: i32) {
        // The kill(1) command, since this crate allows no unsafe code for libc::kill.
        let pid = self.pid();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
        assert!(status.unwrap().success(), "kill -{signal} {pid} ({}) failed", self.name);
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(mut self) {
        let mut child = self.child.take().expect("the process was not reaped yet");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits for the process to exit, at most `timeout`.
    pub(crate) fn wait(mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {timeout:?}", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `raftwal args` to completion with `stdin` as input; returns its status, stdout and
/// stderr.
pub(crate) fn run(args: &[&str], stdin: &[u8]) -> (ExitStatus, String, String) {
    run_command(Command::new(bin()).args(args), stdin)
}

/// Runs `command` to completion with `stdin` as input; returns its status, stdout and stderr.
pub(crate) fn run_command(command: &mut Command, stdin: &[u8]) -> (ExitStatus, String, String) {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Reads JSON lines from `stdout` on a thread, handing each parsed line to `on_line`.
pub(crate) fn read_json_lines(
    stdout: ChildStdout,
    mut on_line: impl FnMut(serde_json::Value) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let value: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line: {line:?}: {e}"));
            on_line(value);
        }
    })
}

/// One committed entry as `read` and `tail` print it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) index: u64,
    pub(crate) term: u64,
    pub(crate) data: Vec<u8>,
}

impl Entry {
    pub(crate) fn from_json(value: &serde_json::Value) -> Entry {
        use base64::Engine as _;
        let data = match (value.get("data"), value.get("data_b64")) {
            (Some(text), None) => text.as_str().unwrap().as_bytes().to_vec(),
            (None, Some(b64)) => {
                base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap()
            }
            other => panic!("an entry has exactly one of data and data_b64: {value} ({other:?})"),
        };
        Entry {
            index: value["index"].as_u64().unwrap(),
            term: value["term"].as_u64().unwrap(),
            data,
        }
    }
}

/// `raftwal read` of every committed entry of the one node at `addr`.
pub(crate) fn read_node(addr: SocketAddr, tls: &Path) -> Vec<Entry> {
    let (status, out, err) = run(
        &[
            "read",
            "--cluster",
            &addr.to_string(),
            "--tls-dir",
            tls.to_str().unwrap(),
            "--from",
            "1",
        ],
        b"",
    );
    assert!(status.success(), "read from {addr} failed: {err}");
    out.lines().map(|l| Entry::from_json(&serde_json::from_str(l).unwrap())).collect()
}

/// One `raftwal serve` node: its arguments and, while it runs, its process.
#[derive(Debug)]
pub(crate) struct ServeNode {
    pub(crate) id: u64,
    pub(crate) listen: SocketAddr,
    pub(crate) metrics: SocketAddr,
    pub(crate) args: Vec<String>,
    pub(crate) stderr: PathBuf,
    pub(crate) proc: Option<Proc>,
    starts: u32,
}

impl ServeNode {
    pub(crate) fn start(&mut self) {
        assert!(self.proc.is_none(), "node {} is running", self.id);
        self.starts += 1;
        let log = File::create(self.log_path()).unwrap();
        let mut command = Command::new(bin());
        command.arg("serve").args(&self.args).stdout(Stdio::null()).stderr(log);
        command.env("RUST_LOG", "info");
        self.proc = Some(Proc::spawn(format!("serve node {}", self.id), &mut command));
    }

    /// Each start logs to a file of its own, kept for failure messages.
    fn log_path(&self) -> PathBuf {
        self.stderr.with_file_name(format!("node-{}.start-{}.log", self.id, self.starts))
    }

    /// Standard error of every start so far.
    pub(crate) fn log_text(&self) -> String {
        let mut text = String::new();
        for start in 1..=self.starts {
            let path = self.stderr.with_file_name(format!("node-{}.start-{start}.log", self.id));
            text.push_str(&format!("[start {start}]\n"));
            if let Ok(mut f) = File::open(path) {
                let _ = f.read_to_string(&mut text);
            }
        }
        text
    }
}

/// Three (or n) `raftwal serve` processes on loopback with certificates from `raftwal certs`.
#[derive(Debug)]
pub(crate) struct ProcCluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) nodes: Vec<ServeNode>,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) client: Client,
}

impl ProcCluster {
    pub(crate) fn tls(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// Writes certificates with `raftwal certs` and starts `n` nodes with flags.
    pub(crate) fn start(n: u64) -> ProcCluster {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let (status, out, err) =
            run(&["certs", "--out", tls.to_str().unwrap(), "--nodes", &n.to_string()], b"");
        assert!(status.success(), "certs failed: {out}{err}");
        let listens: Vec<SocketAddr> = (0..n).map(|_| free_udp_addr()).collect();
        let nodes = (1..=n)
            .map(|id| {
                let listen = listens[(id - 1) as usize];
                let metrics = free_tcp_addr();
                let peers: Vec<String> = (1..=n)
                    .filter(|p| *p != id)
                    .map(|p| format!("{p}={}", listens[(p - 1) as usize]))
                    .collect();
                let mut args = vec![
                    format!("--id={id}"),
                    format!("--listen={listen}"),
                    format!("--data-dir={}", dir.path().join(format!("node-{id}")).display()),
                    format!("--tls-dir={}", tls.display()),
                    "--shards=1".to_owned(),
                    format!("--metrics={metrics}"),
                ];
                if !peers.is_empty() {
                    args.push(format!("--peers={}", peers.join(",")));
                }
                ServeNode {
                    id,
                    listen,
                    metrics,
                    args,
                    stderr: dir.path().join(format!("node-{id}")),
                    proc: None,
                    starts: 0,
                }
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = runtime.block_on(async {
            let mut config = ClientConfig::new(listens.clone(), &tls, LogId(0));
            config.attempt_timeout = Duration::from_millis(1000);
            Client::new(config).unwrap()
        });
        let mut cluster = ProcCluster { dir, nodes, runtime, client };
        for node in &mut cluster.nodes {
            node.start();
        }
        cluster
    }

    pub(crate) fn node(&mut self, id: u64) -> &mut ServeNode {
        &mut self.nodes[(id - 1) as usize]
    }

    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.listen).collect()
    }

    /// The log's status on node `id`, if it answers.
    pub(crate) fn status(&self, id: u64) -> Option<LogStatus> {
        let addr = self.nodes[(id - 1) as usize].listen;
        self.runtime.block_on(self.client.status_of(addr)).ok()
    }

    pub(crate) fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|n| n.proc.is_some()).map(|n| n.id).collect()
    }

    /// Waits until node `id` answers status requests.
    pub(crate) fn wait_serving(&self, id: u64, timeout: Duration) {
        wait_until(timeout, &format!("node {id} to serve"), || self.status(id).is_some());
    }

    /// Waits until the running nodes agree on a leader that is running and says it leads.
    pub(crate) fn wait_leader(&self, timeout: Duration) -> u64 {
        let mut leader = 0;
        wait_until(timeout, "an agreed leader", || {
            let statuses: Vec<Option<LogStatus>> =
                self.running().into_iter().map(|id| self.status(id)).collect();
            let Some(Some(first)) = statuses.first() else { return false };
            let Some(hint) = first.leader else { return false };
            let agreed = statuses.iter().all(|s| s.as_ref().and_then(|s| s.leader) == Some(hint));
            let leads = self.status(hint.node.get()).is_some_and(|s| {
                s.role == Role::Leader && self.running().contains(&hint.node.get())
            });
            leader = hint.node.get();
            agreed && leads
        });
        leader
    }

    /// Waits until every node answers with the same commit index, at least `at_least`; returns
    /// it.
    pub(crate) fn wait_converged(&self, at_least: u64, timeout: Duration) -> u64 {
        let mut commit = 0;
        wait_until(timeout, &format!("every node to commit the same index >= {at_least}"), || {
            let commits: Vec<Option<u64>> = (1..=self.nodes.len() as u64)
                .map(|id| self.status(id).map(|s| s.commit_index.get()))
                .collect();
            let Some(Some(first)) = commits.first() else { return false };
            commit = *first;
            *first >= at_least && commits.iter().all(|c| *c == Some(*first))
        });
        commit
    }

    /// Every node's log files, for a failure message.
    pub(crate) fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("--- node {}:\n{}", n.id, n.log_text())).collect()
    }
}

/// GET /metrics from `addr`.
pub(crate) fn fetch_metrics(addr: SocketAddr) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
pub(crate) fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.trim().parse().ok()))
}
