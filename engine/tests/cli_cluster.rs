//! The multi-process test of issue 5: three `raftwal serve` processes on loopback; four
//! `raftwal append` processes append 10,000 lines concurrently while the leader is killed with
//! SIGKILL twice (and restarted each time); a `raftwal tail` follows along. Afterwards every
//! acknowledged line is in the log exactly once, at the same index with the same bytes on every
//! node, and the tail saw the log in order with no gap and no duplicate. Then all three nodes
//! are stopped with SIGTERM and started again from TOML config files: the log is intact.
//!
//! Progress, not time, drives the faults: the appenders' input is released in phases and each
//! kill waits for a number of acknowledgements, so the faults land while appends are in flight
//! however fast or slow the machine is.

// Test code: a failed unwrap is the test's failure, and it waits on real processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod cli_support;

use cli_support::{
    fetch_metrics, metric, read_json_lines, read_node, run, wait_until, Entry, Proc, ProcCluster,
};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const CLIENTS: usize = 4;
const LINES_PER_CLIENT: usize = 2_500;
const TOTAL: usize = CLIENTS * LINES_PER_CLIENT;
/// Generous deadlines: they bound a hang, they do not measure speed.
const T: Duration = Duration::from_secs(60);

/// How many lines of each client's input the writers may release.
#[derive(Default)]
struct Gate {
    allowed: Mutex<usize>,
    changed: Condvar,
}

impl Gate {
    fn open_to(&self, lines: usize) {
        *self.allowed.lock().unwrap() = lines;
        self.changed.notify_all();
    }

    fn wait_for(&self, line: usize) {
        let mut allowed = self.allowed.lock().unwrap();
        while *allowed <= line {
            allowed = self.changed.wait(allowed).unwrap();
        }
    }
}

fn line_text(client: usize, line: usize) -> String {
    format!("client-{client}-line-{line:05}")
}

/// One output line of `raftwal append`: (index, term), or the error line.
type Answer = Result<(u64, u64), String>;

/// One `raftwal append` process with its input writer and output reader.
struct Appender {
    proc: Proc,
    writer: std::thread::JoinHandle<()>,
    reader: std::thread::JoinHandle<()>,
    /// Output lines in order.
    answers: Arc<Mutex<Vec<Answer>>>,
}

fn start_appender(
    cluster: &ProcCluster,
    client: usize,
    batch: u32,
    gate: Arc<Gate>,
    acked: Arc<AtomicUsize>,
) -> Appender {
    let addrs: Vec<String> = cluster.addrs().iter().map(|a| a.to_string()).collect();
    let stderr =
        std::fs::File::create(cluster.dir.path().join(format!("append-{client}.log"))).unwrap();
    let mut command = Command::new(cli_support::bin());
    command
        .args(["append", "--cluster", &addrs.join(","), "--tls-dir"])
        .arg(cluster.tls())
        .args(["--batch", &batch.to_string(), "--attempt-timeout-ms", "2000", "--retry-s", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut proc = Proc::spawn(format!("append {client}"), &mut command);
    let mut stdin = proc.child().stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        for line in 0..LINES_PER_CLIENT {
            if *gate.allowed.lock().unwrap() <= line {
                stdin.write_all(&buffer).unwrap();
                stdin.flush().unwrap();
                buffer.clear();
                gate.wait_for(line);
            }
            buffer.extend_from_slice(line_text(client, line).as_bytes());
            buffer.push(b'\n');
        }
        stdin.write_all(&buffer).unwrap();
        // Dropping stdin ends the input: the appender exits once every line is answered.
    });
    let answers = Arc::new(Mutex::new(Vec::new()));
    let sink = answers.clone();
    let reader = read_json_lines(proc.take_stdout(), move |value| {
        let answer = match (value.get("index"), value.get("error")) {
            (Some(index), None) => {
                acked.fetch_add(1, Ordering::SeqCst);
                Ok((index.as_u64().unwrap(), value["term"].as_u64().unwrap()))
            }
            _ => Err(value.to_string()),
        };
        sink.lock().unwrap().push(answer);
    });
    Appender { proc, writer, reader, answers }
}

/// Releases input up to `open_to` lines per client; once `acked` reaches `threshold` (below the
/// lines released, so appends are in flight), kills the leader with SIGKILL; waits for the
/// survivors to elect another leader, restarts the killed node and waits until it serves.
/// Returns the killed node and the acknowledgements at the kill.
fn kill_leader_and_restart(
    cluster: &mut ProcCluster,
    gate: &Gate,
    open_to: usize,
    acked: &AtomicUsize,
    threshold: usize,
) -> (u64, usize) {
    assert!(threshold < open_to * CLIENTS);
    let leader = cluster.wait_leader(T);
    gate.open_to(open_to);
    let deadline = std::time::Instant::now() + T;
    while acked.load(Ordering::SeqCst) < threshold {
        assert!(std::time::Instant::now() < deadline, "no {threshold} acknowledgements in {T:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    cluster.node(leader).proc.take().unwrap().kill();
    let at_kill = acked.load(Ordering::SeqCst);
    let next = cluster.wait_leader(T);
    assert_ne!(next, leader);
    cluster.node(leader).start();
    cluster.wait_serving(leader, T);
    (leader, at_kill)
}

#[test]
fn appends_survive_two_leader_kills_and_a_clean_restart_keeps_the_log() {
    let mut cluster = ProcCluster::start(3);
    let first_leader = cluster.wait_leader(T);

    // The tail starts at the leader, so the first kill forces it to move to another node.
    let mut tail_order = cluster.addrs();
    tail_order.rotate_left((first_leader - 1) as usize);
    let tail_cluster: Vec<String> = tail_order.iter().map(|a| a.to_string()).collect();
    let mut command = Command::new(cli_support::bin());
    command
        .args(["tail", "--cluster", &tail_cluster.join(","), "--tls-dir"])
        .arg(cluster.tls())
        .args(["--from", "1", "--retry-s", "60"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(cluster.dir.path().join("tail.log")).unwrap());
    let mut tail = Proc::spawn("tail", &mut command);
    let tailed = Arc::new(Mutex::new(Vec::new()));
    let sink = tailed.clone();
    let tail_reader = read_json_lines(tail.take_stdout(), move |value| {
        sink.lock().unwrap().push(Entry::from_json(&value));
    });

    let gate = Arc::new(Gate::default());
    let acked = Arc::new(AtomicUsize::new(0));
    let appenders: Vec<Appender> = (0..CLIENTS)
        .map(|c| {
            let batch = if c % 2 == 0 { 1 } else { 16 };
            start_appender(&cluster, c, batch, gate.clone(), acked.clone())
        })
        .collect();

    // First fault: while the first 30% of the input is being appended. Second fault: while the
    // next 40% is. Each kill leaves lines in flight: they are retried on the dead leader's
    // successor, which appends the lost ones and answers the committed ones from its
    // deduplication table, so none is lost or doubled.
    let (killed_first, acked_first) =
        kill_leader_and_restart(&mut cluster, &gate, LINES_PER_CLIENT * 3 / 10, &acked, 1_000);
    let (killed_second, acked_second) =
        kill_leader_and_restart(&mut cluster, &gate, LINES_PER_CLIENT * 7 / 10, &acked, 4_000);
    gate.open_to(LINES_PER_CLIENT);

    let mut acknowledged: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
    for (client, appender) in appenders.into_iter().enumerate() {
        let status = appender.proc.wait(Duration::from_secs(120));
        appender.writer.join().unwrap();
        appender.reader.join().unwrap();
        let answers = appender.answers.lock().unwrap();
        assert!(
            status.success(),
            "append {client} failed ({status}); answers: {:?}\n{}",
            answers.iter().filter(|a| a.is_err()).take(5).collect::<Vec<_>>(),
            cluster.logs()
        );
        assert_eq!(answers.len(), LINES_PER_CLIENT, "one answer per input line");
        for (line, answer) in answers.iter().enumerate() {
            let position = answer.clone().unwrap();
            let previous = acknowledged.insert(line_text(client, line).into_bytes(), position);
            assert!(previous.is_none());
        }
    }
    assert_eq!(acknowledged.len(), TOTAL);
    let last_acked = acknowledged.values().map(|p| p.0).max().unwrap();

    // Every node holds the same log: read each one alone (reads are served by the node reached).
    let commit = cluster.wait_converged(last_acked, T);
    let logs: Vec<Vec<Entry>> =
        cluster.addrs().iter().map(|addr| read_node(*addr, &cluster.tls())).collect();
    for (node, log) in logs.iter().enumerate() {
        assert_eq!(log, &logs[0], "node {} differs from node 1", node + 1);
    }
    let log = &logs[0];
    assert!(log.last().unwrap().index <= commit);
    // Every acknowledged line exactly once, where its acknowledgement said, with its bytes.
    let mut seen: HashMap<&[u8], &Entry> = HashMap::new();
    for entry in log {
        assert!(seen.insert(&entry.data, entry).is_none(), "duplicate entry {entry:?}");
    }
    for (data, (index, term)) in &acknowledged {
        let entry = seen.get(&data[..]).unwrap_or_else(|| {
            panic!("acknowledged line {:?} is missing", String::from_utf8_lossy(data))
        });
        assert_eq!((entry.index, entry.term), (*index, *term), "{entry:?}");
    }
    assert_eq!(log.len(), TOTAL, "the log holds exactly the lines appended");

    // The tail saw the same sequence: no gap, no duplicate, no reordering, across both kills.
    wait_until(T, "the tail to reach the end", || tailed.lock().unwrap().len() >= TOTAL);
    tail.signal(libc::SIGINT);
    let status = tail.wait(T);
    assert!(status.success(), "tail ends cleanly on SIGINT: {status}");
    tail_reader.join().unwrap();
    assert_eq!(&*tailed.lock().unwrap(), log, "the tail saw exactly the log, in order");

    // Metrics: every node reports the required families; the leader reports its state.
    let leader = cluster.wait_leader(T);
    let text = fetch_metrics(cluster.node(leader).metrics);
    let families = [
        "raftwal_append_latency_seconds_bucket",
        "raftwal_commit_latency_seconds_bucket",
        "raftwal_fsync_latency_seconds_bucket",
        "raftwal_fsync_batch_entries_bucket",
        "raftwal_term",
        "raftwal_commit_index",
        "raftwal_leader_changes_total",
        "raftwal_bytes_in_total",
        "raftwal_bytes_out_total",
        "raftwal_zero_fill_writes_total",
        "raftwal_zero_fill_bytes_total",
        "raftwal_pipelined_batches_total",
    ];
    let labels = format!("{{node=\"{leader}\",log=\"0\"}}");
    assert!(metric(&text, &format!("raftwal_commit_index{labels}")).unwrap() >= commit as f64);
    assert!(metric(&text, &format!("raftwal_is_leader{labels}")).unwrap() == 1.0);
    assert!(metric(&text, &format!("raftwal_term{labels}")).unwrap() >= 2.0, "two elections");
    // Bytes moved: the leader that took the last appends is still running, and sent them to a
    // follower, which received them (a node restarted since counts from zero again).
    let (mut bytes_in, mut bytes_out) = (0.0, 0.0);
    for id in 1..=3 {
        let text = fetch_metrics(cluster.node(id).metrics);
        for family in families {
            assert!(text.contains(&format!("\n{family}{{")), "node {id} lacks {family}:\n{text}");
        }
        let labels = format!("{{node=\"{id}\",log=\"0\"}}");
        bytes_in += metric(&text, &format!("raftwal_bytes_in_total{labels}")).unwrap();
        bytes_out += metric(&text, &format!("raftwal_bytes_out_total{labels}")).unwrap();
    }
    assert!(bytes_in > 0.0 && bytes_out > 0.0, "bytes in {bytes_in}, out {bytes_out}");

    // Clean restart: SIGTERM stops every node cleanly; started again from TOML config files,
    // the nodes hold the same log.
    for id in 1..=3 {
        let node = cluster.node(id);
        let proc = node.proc.take().unwrap();
        proc.signal(libc::SIGTERM);
        let status = proc.wait(T);
        assert!(status.success(), "node {id} exits cleanly on SIGTERM: {status}");
        assert!(node.log_text().contains("stopped"), "{}", node.log_text());
    }
    for id in 1..=3 {
        let node = cluster.node(id);
        let config = node_toml(&node.args);
        let path = cluster.dir.path().join(format!("node-{id}.toml"));
        std::fs::write(&path, config).unwrap();
        let node = cluster.node(id);
        node.args = vec!["--config".into(), path.display().to_string()];
        node.start();
    }
    cluster.wait_leader(T);
    let (status, out, err) = run(
        &[
            "append",
            "--cluster",
            &cluster.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>().join(","),
            "--tls-dir",
            cluster.tls().to_str().unwrap(),
        ],
        b"after the restart\n",
    );
    assert!(status.success(), "{err}");
    let after: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let after_index = after["index"].as_u64().unwrap();
    assert!(after_index > last_acked);
    cluster.wait_converged(after_index, T);
    for addr in cluster.addrs() {
        let restarted = read_node(addr, &cluster.tls());
        assert_eq!(&restarted[..TOTAL], &log[..], "{addr}: the log survived the restart");
        assert_eq!(restarted[TOTAL].data, b"after the restart");
    }
    eprintln!(
        "killed node {killed_first} at {acked_first} acknowledgements, then node \
         {killed_second} at {acked_second}; {TOTAL} entries intact"
    );
}

/// The TOML configuration equivalent to `serve` flags `--id=.. --listen=.. ...`.
fn node_toml(args: &[String]) -> String {
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("no --{name} in {args:?}"))
            .to_owned()
    };
    let peers: Vec<String> = flag("peers")
        .split(',')
        .map(|p| {
            let (id, addr) = p.split_once('=').unwrap();
            format!("{{ id = {id}, addr = \"{addr}\" }}")
        })
        .collect();
    format!(
        "id = {}\nlisten = \"{}\"\ndata_dir = \"{}\"\ntls_dir = \"{}\"\nshards = {}\n\
         metrics = \"{}\"\npeers = [{}]\n",
        flag("id"),
        flag("listen"),
        flag("data-dir"),
        flag("tls-dir"),
        flag("shards"),
        flag("metrics"),
        peers.join(", ")
    )
}
