//! The `raftwal` commands as a user runs them: a `dev` cluster driven by `append`, `read`,
//! `status`, `tail` and `compact`, the errors a user sees (unreachable cluster, oversized entry), and the
//! start errors of `serve` (malformed config, bad peer list, missing certificates, another
//! cluster's data directory), each with its exit status and message.

// Test code: a failed unwrap is the test's failure, and it waits on real processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod cli_support;

use cli_support::{bin, free_udp_addr, run, wait_until, Entry, Proc, ProcCluster};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A running `raftwal dev` cluster and what it printed.
struct Dev {
    proc: Proc,
    cluster: String,
    tls: String,
}

fn start_dev(dir: &std::path::Path) -> Dev {
    let mut command = Command::new(bin());
    command
        .args(["dev", "--nodes", "3", "--base-port", "0", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.with_extension("log")).unwrap());
    let mut proc = Proc::spawn("dev", &mut command);
    let printed = Arc::new(Mutex::new(String::new()));
    let sink = printed.clone();
    let stdout = proc.take_stdout();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    wait_until(T, "dev to print its instructions", || {
        printed.lock().unwrap().contains("Ctrl-C stops the cluster")
    });
    let text = printed.lock().unwrap().clone();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name:?} line in:\n{text}"))
            .trim()
            .to_owned()
    };
    assert!(text.contains("leader of log 0: node"), "{text}");
    assert!(text.contains("raftwal append --cluster"), "{text}");
    Dev { proc, cluster: field("cluster:"), tls: field("tls-dir:") }
}

/// A `raftwal tail` process with these arguments, the entries it printed so far, and the
/// thread that reads them.
fn spawn_tail(arguments: &[String]) -> (Proc, Arc<Mutex<Vec<Entry>>>, std::thread::JoinHandle<()>) {
    let mut command = Command::new(bin());
    command.args(args(arguments)).stdout(Stdio::piped());
    let mut tail = Proc::spawn(arguments.join(" "), &mut command);
    let tailed = Arc::new(Mutex::new(Vec::new()));
    let sink = tailed.clone();
    let reader = cli_support::read_json_lines(tail.take_stdout(), move |v| {
        sink.lock().unwrap().push(Entry::from_json(&v));
    });
    (tail, tailed, reader)
}

#[test]
fn a_dev_cluster_serves_append_read_status_tail_and_compact() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(&dir.path().join("dev"));
    let c = ["--cluster", dev.cluster.as_str(), "--tls-dir", dev.tls.as_str()];
    let with = |cmd: &str, more: &[&str]| -> Vec<String> {
        std::iter::once(cmd).chain(c).chain(more.iter().copied()).map(String::from).collect()
    };

    // Append: one position per line, in input order; the last line needs no newline; bytes
    // that are not UTF-8 go through untouched; an empty line is an empty entry.
    let mut input = Vec::new();
    for i in 0..10 {
        input.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    input.extend_from_slice(b"\n\xff\xfe raw\nno newline");
    let v = with("append", &["--batch", "4"]);
    let (status, out, err) = run(&args(&v), &input);
    assert!(status.success(), "{err}");
    let positions = json_lines(&out);
    assert_eq!(positions.len(), 13, "{out}");
    let first = positions[0]["index"].as_u64().unwrap();
    for (i, p) in positions.iter().enumerate() {
        assert_eq!(p["index"].as_u64().unwrap(), first + i as u64, "{out}");
    }

    // Read: the same entries back, the raw one as base64. Reads are served by the node reached,
    // up to its own commit index: wait until every node learned the last commit.
    let last = first + 12;
    wait_until(T, "every node to commit the appends", || {
        let (_, out, _) = run(&args(&with("status", &[])), b"");
        let lines = json_lines(&out);
        lines.len() == 3 && lines.iter().all(|l| l["commit_index"].as_u64() >= Some(last))
    });
    let v = with("read", &["--from", &first.to_string()]);
    let (status, out, err) = run(&args(&v), b"");
    assert!(status.success(), "{err}");
    let entries: Vec<Entry> = json_lines(&out).iter().map(Entry::from_json).collect();
    let data: Vec<&[u8]> = entries.iter().map(|e| &e.data[..]).collect();
    let mut expected: Vec<Vec<u8>> = (0..10).map(|i| format!("line {i}").into_bytes()).collect();
    expected.extend([b"".to_vec(), b"\xff\xfe raw".to_vec(), b"no newline".to_vec()]);
    assert_eq!(data, expected.iter().map(|d| &d[..]).collect::<Vec<_>>(), "{out}");
    assert!(out.contains("\"data_b64\":\"//4gcmF3\""), "{out}");
    let v = with("read", &["--from", &first.to_string(), "--count", "2"]);
    let (_, out, _) = run(&args(&v), b"");
    assert_eq!(json_lines(&out).len(), 2, "{out}");
    let v = with("read", &["--linearizable"]);
    let (status, out, err) = run(&args(&v), b"");
    assert!(status.success(), "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 13, "{out}");
    assert_eq!(lines[12]["data"], "no newline", "{out}");

    // Status: one line per node, all agreeing on one leader; an unreachable node gets an error
    // line and the command still succeeds.
    let unreachable = free_udp_addr().to_string();
    let both = format!("{},{unreachable}", dev.cluster);
    let (status, out, err) = run(
        &["status", "--cluster", &both, "--tls-dir", &dev.tls, "--attempt-timeout-ms", "500"],
        b"",
    );
    assert!(status.success(), "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{out}");
    let leaders: Vec<&serde_json::Value> = lines[..3].iter().map(|l| &l["leader"]).collect();
    assert!(leaders.iter().all(|l| *l == leaders[0] && l.is_u64()), "{out}");
    assert_eq!(lines[..3].iter().filter(|l| l["role"] == "leader").count(), 1, "{out}");
    for l in &lines[..3] {
        assert!(l["commit_index"].as_u64().unwrap() >= first, "{out}");
        assert!(l["last_index"].is_u64() && l["term"].is_u64() && l["id"].is_u64(), "{out}");
    }
    assert_eq!(lines[3]["addr"], unreachable.as_str());
    assert!(lines[3]["error"].is_string(), "{out}");
    // No node at all: exit status 1.
    let (status, out, _) = run(
        &[
            "status",
            "--cluster",
            &unreachable,
            "--tls-dir",
            &dev.tls,
            "--attempt-timeout-ms",
            "300",
        ],
        b"",
    );
    assert!(!status.success());
    assert_eq!(json_lines(&out).len(), 1);

    // An entry over the maximum size is refused with a clear error; the cluster goes on.
    let mut huge = vec![b'x'; (1 << 20) + 1];
    huge.push(b'\n');
    let v = with("append", &[]);
    let (status, out, err) = run(&args(&v), &huge);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(out.contains("\"line\":1") && out.contains("exceeds the maximum"), "{out}");
    assert!(err.contains("input line 1 was not acknowledged"), "{err}");
    let (status, out, err) = run(&args(&v), b"still serving\n");
    assert!(status.success() && json_lines(&out).len() == 1, "{out}{err}");

    // Tail: everything from the start, then new entries as they commit; SIGTERM ends it.
    let (tail, tailed, reader) = spawn_tail(&with("tail", &["--from", "1"]));
    wait_until(T, "the tail to catch up", || tailed.lock().unwrap().len() >= 14);
    let (status, _, _) = run(&args(&with("append", &[])), b"tailed\n");
    assert!(status.success());
    wait_until(T, "the tail to see the new entry", || {
        tailed.lock().unwrap().last().is_some_and(|e| e.data == b"tailed")
    });
    tail.signal(libc::SIGTERM);
    assert!(tail.wait(T).success());
    reader.join().unwrap();
    let tailed = tailed.lock().unwrap();
    assert!(tailed.windows(2).all(|w| w[0].index < w[1].index), "in order, no duplicate");
    assert_eq!(tailed.len(), 15);
    drop(tailed);

    // A tail from the end prints only what commits after it started: lines are appended until
    // it prints one, and none of the entries committed before it started comes out.
    let (_, out, _) = run(&args(&with("status", &[])), b"");
    let before = json_lines(&out).iter().filter_map(|l| l["commit_index"].as_u64()).max().unwrap();
    let (tail, tailed, reader) = spawn_tail(&with("tail", &["--from", "end"]));
    let mut k = 0;
    wait_until(T, "the tail from the end to print a new entry", || {
        k += 1;
        let (status, _, _) = run(&args(&with("append", &[])), format!("fresh {k}\n").as_bytes());
        assert!(status.success());
        !tailed.lock().unwrap().is_empty()
    });
    tail.signal(libc::SIGTERM);
    assert!(tail.wait(T).success());
    reader.join().unwrap();
    for entry in tailed.lock().unwrap().iter() {
        assert!(entry.index > before, "{} was committed before the tail started", entry.index);
        assert!(entry.data.starts_with(b"fresh "), "{:?}", String::from_utf8_lossy(&entry.data));
    }
    let (status, _, err) = run(&args(&with("tail", &["--from", "later"])), b"");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("neither an index nor `end`"), "{err}");

    // A tail of a log the cluster does not have fails at once, as a read does, however long it
    // may retry.
    let err_path = dir.path().join("tail-unknown.err");
    let mut command = Command::new(bin());
    command
        .args(args(&with("tail", &["--log", "5", "--retry-s", "3600"])))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let status = Proc::spawn("tail --log 5", &mut command).wait(T);
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("refused (UnknownLog): this node has no log 5"), "{err}");
    assert!(!err.contains("ClientError {"), "{err}");
    let (status, _, read_err) = run(&args(&with("read", &["--log", "5"])), b"");
    assert_eq!(status.code(), Some(1));
    assert!(read_err.contains("refused (UnknownLog): this node has no log 5"), "{read_err}");
    // Every node answered `status` of that log with a refusal: the command fails, and does not
    // say that no node answered. (Found by a review: it said "no node answered".)
    let (status, out, err) = run(&args(&with("status", &["--log", "5"])), b"");
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert_eq!(json_lines(&out).len(), 3, "{out}");
    assert!(out.contains("refused (UnknownLog)"), "{out}");
    assert!(!err.contains("no node answered") && err.contains("3 refused"), "{err}");

    // A line far over the maximum (and over any frame) is refused the same way, without being
    // read whole or sent.
    let v = with("append", &[]);
    let (status, out, err) = run(&args(&v), &vec![b'y'; 64 << 20]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(out.contains("\"line\":1") && out.contains("exceeds the maximum of 1048576"), "{out}");
    assert!(!out.contains("cannot encode"), "{out}");
    // Lines each within the maximum but together over a frame go out as several requests.
    let mut input = Vec::new();
    for i in 0..40u8 {
        input.extend(std::iter::repeat_n(b'a' + i % 26, 1 << 20));
        input.push(b'\n');
    }
    let v = with("append", &["--batch", "64"]);
    let (status, out, err) = run(&args(&v), &input);
    assert!(status.success(), "{}{err}", &out[..out.len().min(2000)]);
    assert_eq!(json_lines(&out).len(), 40, "{out}");

    // Compact: one line per node with its first index afterwards. Nothing here filled a
    // segment (64 MiB by default), and only whole segments go, so every log still starts at 1.
    let v = with("compact", &["--before", &last.to_string()]);
    let (status, out, err) = run(&args(&v), b"");
    assert!(status.success(), "{out}{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    for l in &lines {
        assert_eq!(l["first_index"].as_u64(), Some(1), "{out}");
        assert!(l["id"].is_u64() && l["addr"].is_string(), "{out}");
    }
    // A node that does not answer gets an error line, and the command fails: not every disk
    // was trimmed.
    let (status, out, err) = run(
        &[
            "compact",
            "--cluster",
            &both,
            "--tls-dir",
            &dev.tls,
            "--attempt-timeout-ms",
            "500",
            "--before",
            "5",
        ],
        b"",
    );
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[..3].iter().all(|l| l["first_index"].is_u64()), "{out}");
    assert!(lines[3]["error"].is_string(), "{out}");
    assert!(err.contains("1 of 4 nodes did not compact"), "{err}");
    let (status, _, err) = run(&args(&with("compact", &["--before", "0"])), b"");
    assert_eq!(status.code(), Some(2), "{err}");

    dev.proc.signal(libc::SIGINT);
    assert!(dev.proc.wait(T).success(), "dev exits cleanly on Ctrl-C");
}

/// A one-node cluster's certificates (in a temporary directory, kept while the first value
/// lives) and an address where no node listens: (directory, TLS directory, address).
fn certs_and_no_node() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let (status, _, _) = run(&["certs", "--out", tls.to_str().unwrap(), "--nodes", "1"], b"");
    assert!(status.success());
    let tls = tls.to_str().unwrap().to_owned();
    (dir, tls, free_udp_addr().to_string())
}

#[test]
fn an_unreachable_cluster_fails_the_append_with_an_error_line() {
    let (_dir, tls_dir, nowhere) = certs_and_no_node();
    let tls_dir = tls_dir.as_str();
    // `append` of `input` to no node, retrying for `retry_s` seconds.
    let append_nowhere = |retry_s: &str, input: &[u8]| {
        let args = ["append", "--cluster", &nowhere, "--tls-dir", tls_dir];
        run(&[&args[..], &["--attempt-timeout-ms", "200", "--retry-s", retry_s]].concat(), input)
    };
    let (status, out, err) = append_nowhere("1", b"a\nb\n");
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let lines = json_lines(&out);
    assert_eq!(lines[0]["line"], 1, "{out}");
    assert!(lines[0]["error"].as_str().unwrap().contains("no node answered"), "{out}");
    assert!(err.contains("may or may not be in the log"), "{err}");
    // --retry-s 0 makes one attempt, and says why it failed.
    let (status, out, err) = append_nowhere("0", b"a\n");
    assert_eq!(status.code(), Some(1), "{out}{err}");
    let error = json_lines(&out)[0]["error"].as_str().unwrap().to_owned();
    assert!(error.contains("no node answered") && error.contains(&nowhere), "{error}");
    assert!(!error.contains("no attempt made"), "{error}");
    // `tail --from end` asks each node for its commit index first, and says what failed at
    // each, once (it said "no node answered: no node answered before the deadline; ...").
    let (status, out, err) =
        run(&["tail", "--cluster", &nowhere, "--tls-dir", tls_dir, "--from", "end"], b"");
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(err.contains("no node gave its commit index") && err.contains(&nowhere), "{err}");
    assert_eq!(err.matches("no node answered").count(), 0, "{err}");
    // Standard input that cannot be read (a directory): line 1 gets its error line, in the
    // same shape as an unacknowledged line, and the command fails saying why. (Found by a
    // review: only the final message on standard error said so.)
    let unreadable = std::fs::File::open(_dir.path()).unwrap();
    let output = Command::new(bin())
        .args(["append", "--cluster", &nowhere, "--tls-dir", tls_dir])
        .stdin(unreadable)
        .output()
        .unwrap();
    let (out, err) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{out}{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["line"], 1, "{out}");
    assert!(lines[0]["error"].as_str().unwrap().contains("cannot read standard input"), "{out}");
    assert!(err.contains("input line 1 was not acknowledged"), "{err}");

    // Values that cannot work are usage errors: a read of zero entries, a zero attempt timeout.
    for (command, flag) in [("read", "--count"), ("read", "--attempt-timeout-ms")] {
        let (status, out, err) =
            run(&[command, "--cluster", &nowhere, "--tls-dir", tls_dir, flag, "0"], b"");
        assert_eq!(status.code(), Some(2), "{command} {flag} 0: {out}{err}");
        assert!(err.contains(flag) && out.is_empty(), "{err}");
    }
    let (status, _, err) = run(
        &["append", "--cluster", &nowhere, "--tls-dir", tls_dir, "--attempt-timeout-ms", "0"],
        b"a\n",
    );
    assert_eq!(status.code(), Some(2), "{err}");

    // Certificates missing: a clear configuration error before anything is sent.
    let (status, _, err) =
        run(&["read", "--cluster", &nowhere, "--tls-dir", "/nonexistent", "--from", "1"], b"");
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("client configuration") && err.contains("/nonexistent"), "{err}");
}

fn serve(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let (status, out, err) = run(&all, b"");
    (status, format!("{out}{err}"))
}

#[test]
fn serve_refuses_bad_starts_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &str| dir.path().join(p).display().to_string();
    let (status, _, _) = run(&["certs", "--out", &path("tls-a"), "--nodes", "1"], b"");
    assert!(status.success());
    let (status, _, _) = run(&["certs", "--out", &path("tls-b"), "--nodes", "1"], b"");
    assert!(status.success());
    let listen = free_udp_addr().to_string();
    let (d1, tls_a, tls_b, no_tls) = (path("d1"), path("tls-a"), path("tls-b"), path("no-tls"));

    // A malformed config file: the file, the line and the key are named.
    std::fs::write(path("bad.toml"), "id = 1\nlisten = \"127.0.0.1:7000\"\nshards = \"two\"\n")
        .unwrap();
    let (status, text) = serve(&["--config", &path("bad.toml")]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("invalid config file") && text.contains("shards"), "{text}");
    // A config file and node flags together are refused (neither silently wins).
    let (status, text) = serve(&["--config", &path("bad.toml"), "--id", "2"]);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("cannot be used with"), "{text}");

    // A bad peer list.
    let base = ["--id", "1", "--listen", &listen, "--data-dir", &d1];
    let mut args = base.to_vec();
    args.extend(["--tls-dir", &tls_a, "--peers", "2:127.0.0.1:7001"]);
    let (status, text) = serve(&args);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("'=' is missing"), "{text}");
    let mut args = base.to_vec();
    args.extend(["--tls-dir", &tls_a, "--peers", "1=127.0.0.1:7001"]);
    let (status, text) = serve(&args);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("lists itself among its peers"), "{text}");

    // Missing certificates: the directory and the way to make them are named.
    let mut args = base.to_vec();
    args.extend(["--tls-dir", &no_tls]);
    let (status, text) = serve(&args);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("no-tls") && text.contains("raftwal certs --out"), "{text}");

    // A key that is not the certificate's: both files are named, before anything is opened.
    let mixed = path("tls-mixed");
    std::fs::create_dir(&mixed).unwrap();
    for name in ["ca.pem", "cluster-id", "node-1.pem"] {
        std::fs::copy(dir.path().join("tls-a").join(name), dir.path().join("tls-mixed").join(name))
            .unwrap();
    }
    let key = dir.path().join("tls-mixed").join("node-1.key.pem");
    std::fs::copy(dir.path().join("tls-b").join("node-1.key.pem"), &key).unwrap();
    let mut args = base.to_vec();
    args.extend(["--tls-dir", &mixed]);
    let (status, text) = serve(&args);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("the key {} does not match the certificate", key.display())));
    assert!(!text.contains("KeyMismatch"), "{text}");

    // A data directory of another cluster: run a node of cluster A on d1, then point a node of
    // cluster B at it.
    let mut args = base.to_vec();
    args.extend(["--tls-dir", &tls_a]);
    let mut command = Command::new(bin());
    command.arg("serve").args(&args).stdout(Stdio::null()).stderr(Stdio::null());
    let node = Proc::spawn("serve a", &mut command);
    wait_until(T, "the node to start (it records its logs last)", || {
        dir.path().join("d1").join(raftwal::LOGS_FILE).exists()
    });
    node.signal(libc::SIGTERM);
    assert!(node.wait(T).success());
    let mut args = base.to_vec();
    args.extend(["--tls-dir", &tls_b]);
    let (status, text) = serve(&args);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("belongs to cluster") && text.contains("--data-dir"), "{text}");

    // A log directory that cannot be used (here: a file in its place) is an I/O error, not a
    // damaged log: no word about corruption.
    let log_dir = dir.path().join("d1").join("log-0");
    std::fs::remove_dir_all(&log_dir).unwrap();
    std::fs::write(&log_dir, b"not a directory").unwrap();
    let mut args = base.to_vec();
    args.extend(["--tls-dir", &tls_a]);
    let (status, text) = serve(&args);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("log 0 in") && text.contains("I/O error"), "{text}");
    assert!(!text.contains("corruption"), "{text}");

    // The log's directory gone: the node does not start the log over, and says how to rejoin;
    // with --rejoin this one-node cluster rejoins at once (it has no peer to hear from).
    std::fs::remove_file(&log_dir).unwrap();
    let (status, text) = serve(&args);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("holds no log") && text.contains("--rejoin"), "{text}");
    let mut command = Command::new(bin());
    command.arg("serve").args(&args).arg("--rejoin").stdout(Stdio::null()).stderr(Stdio::null());
    let node = Proc::spawn("serve --rejoin", &mut command);
    wait_until(T, "the log to rejoin", || {
        log_dir.join("hard_state").exists() && !log_dir.join(raftwal::REJOIN_MARKER).exists()
    });
    node.signal(libc::SIGTERM);
    assert!(node.wait(T).success());
}

/// A `--retry-s` too large to add to the clock is a usage error (status 2), never a panic.
/// (Found by a review: `read` panicked with status 101, adding it to `Instant::now()`.)
#[test]
fn a_huge_retry_s_is_refused_not_a_panic() {
    let (_dir, tls_dir, nowhere) = certs_and_no_node();
    let tls_dir = tls_dir.as_str();
    for command in ["read", "append"] {
        let (status, out, err) = run(
            &[
                command,
                "--cluster",
                &nowhere,
                "--tls-dir",
                tls_dir,
                "--attempt-timeout-ms",
                "100",
                "--retry-s",
                "18446744073709551615",
            ],
            b"a\n",
        );
        assert!(
            status.code() == Some(2) && err.contains("retry-s") && !err.contains("panicked"),
            "{command} --retry-s u64::MAX: status {status:?}\nstdout: {out}\nstderr: {err}"
        );
    }
}

/// `append --batch` bounds a request by its lines' bytes, and `--entry-size-bytes-max` may be as
/// large as the client's frame minus 4096 bytes; but each line of an AppendBatch also costs 20
/// bytes of framing (its 16-byte deduplication tag and its 4-byte length). 512 lines of 32,760
/// bytes (16,773,120 bytes: the largest `--entry-size-bytes-max`) made a frame of 16,783,380
/// bytes, over the client's 16 MiB, and every line of it was refused as "cannot be sent",
/// though each line is far below every limit. (Found by a review.)
#[test]
fn append_batches_at_the_largest_entry_size_fit_in_a_frame() {
    let cluster = ProcCluster::start(1);
    cluster.wait_leader(T);
    // From a file, so that whole batches of lines are ready together.
    let input = cluster.dir.path().join("input");
    let mut text = Vec::new();
    for _ in 0..2048 {
        text.extend(std::iter::repeat_n(b'z', 32_760));
        text.push(b'\n');
    }
    std::fs::write(&input, text).unwrap();
    let output = Command::new(bin())
        .args(["append", "--cluster", &cluster.nodes[0].listen.to_string(), "--tls-dir"])
        .arg(cluster.tls())
        .args(["--batch", "512", "--entry-size-bytes-max", "16773120"])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    let error = out.lines().find(|l| l.contains("error")).unwrap_or("");
    assert!(output.status.success(), "{error}\n{err}");
    let positions = json_lines(&out);
    assert_eq!(positions.len(), 2048, "{error}");
    assert!(positions.iter().all(|p| p["index"].is_u64()), "{error}");
}

/// A configuration file that validation accepts starts nodes that work. With
/// `raft.inflight_message_count_max` near the largest integer a TOML file holds (a "no limit"
/// an operator may well write), validation passed, and the shard thread of the first node to
/// win an election panicked ("capacity overflow": the consensus core allocated a window of that
/// many messages), leaving a process that still ran but answered nothing, and a cluster that
/// never elected a leader. (Found by a review.)
#[test]
fn a_huge_inflight_message_count_still_elects_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let (status, _, _) = run(&["certs", "--out", tls.to_str().unwrap(), "--nodes", "2"], b"");
    assert!(status.success());
    let addrs = [free_udp_addr(), free_udp_addr()];
    let log = |id: u64| dir.path().join(format!("node-{id}.log"));
    let mut nodes = Vec::new();
    for id in [1u64, 2] {
        let (own, other) = (addrs[id as usize - 1], addrs[2 - id as usize]);
        let toml = format!(
            "id = {id}\nlisten = \"{own}\"\ndata_dir = \"{}\"\ntls_dir = \"{}\"\nshards = 1\n\
             peers = [ {{ id = {}, addr = \"{other}\" }} ]\n\
             [raft]\ninflight_message_count_max = 9223372036854775807\n",
            dir.path().join(format!("data-{id}")).display(),
            tls.display(),
            3 - id,
        );
        let path = dir.path().join(format!("node-{id}.toml"));
        std::fs::write(&path, toml).unwrap();
        let mut command = Command::new(bin());
        command
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log(id)).unwrap());
        nodes.push(Proc::spawn(format!("serve node {id}"), &mut command));
    }
    let cluster = format!("{},{}", addrs[0], addrs[1]);
    let tls_dir = tls.to_str().unwrap();
    let (status, out, err) = run(
        &["append", "--cluster", &cluster, "--tls-dir", tls_dir, "--retry-s", "20"],
        b"committed\n",
    );
    let logs = [1, 2].map(|id| std::fs::read_to_string(log(id)).unwrap()).join("\n---\n");
    assert!(status.success(), "{out}{err}\n{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    for node in nodes {
        node.signal(libc::SIGTERM);
        assert!(node.wait(T).success());
    }
}

/// A `--cluster` list that starts with an IPv4 address reaches the IPv6 nodes in it too. The
/// client bound its socket by the first address's family only, so an IPv6 node after an IPv4
/// one could never be reached ("invalid remote address"): with the IPv4 node down, `status`
/// and `append` failed although a node they listed was serving. (Found by a review.)
#[test]
fn a_cluster_list_of_ipv4_then_ipv6_reaches_the_ipv6_node() {
    let (dir, tls, nowhere_v4) = certs_and_no_node();
    let listen = std::net::UdpSocket::bind("[::1]:0").unwrap().local_addr().unwrap().to_string();
    let mut command = Command::new(bin());
    command
        .args(["serve", "--id", "1", "--listen", &listen, "--shards", "1", "--tls-dir", &tls])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let node = Proc::spawn("serve on [::1]", &mut command);
    let only_v6 = ["status", "--cluster", &listen, "--tls-dir", &tls];
    wait_until(T, "the node to serve", || run(&only_v6, b"").0.success());
    let both = format!("{nowhere_v4},{listen}");
    let (status, out, err) =
        run(&["status", "--cluster", &both, "--tls-dir", &tls, "--attempt-timeout-ms", "500"], b"");
    assert!(status.success(), "{out}{err}");
    assert_eq!(json_lines(&out)[1]["id"], 1, "{out}");
    let (status, out, err) = run(&["append", "--cluster", &both, "--tls-dir", &tls], b"v6\n");
    assert!(status.success(), "{out}{err}");
    node.signal(libc::SIGTERM);
    assert!(node.wait(T).success());
}

/// An `append` started with its input open, for the interruption test: its standard input, the
/// JSON lines it printed so far, the thread reading them, and the file its standard error goes to.
struct OpenAppend {
    proc: Proc,
    stdin: std::process::ChildStdin,
    printed: Arc<Mutex<Vec<serde_json::Value>>>,
    reader: std::thread::JoinHandle<()>,
    stderr: std::path::PathBuf,
}

fn spawn_open_append(cluster: &ProcCluster, name: &str) -> OpenAppend {
    let stderr = cluster.dir.path().join(format!("{name}.stderr"));
    let mut command = Command::new(bin());
    command
        .args(["append", "--cluster", &cluster.nodes[0].listen.to_string(), "--tls-dir"])
        .arg(cluster.tls())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut proc = Proc::spawn(name, &mut command);
    let stdin = proc.child().stdin.take().unwrap();
    let printed = Arc::new(Mutex::new(Vec::new()));
    let sink = printed.clone();
    let reader = cli_support::read_json_lines(proc.take_stdout(), move |line| {
        sink.lock().unwrap().push(line);
    });
    OpenAppend { proc, stdin, printed, reader, stderr }
}

/// `append` stopped with Ctrl-C (SIGINT) stops reading its input, waits for the answers to the
/// lines in flight and prints their positions, then exits with status 1 saying which lines were
/// sent; a second SIGINT stops it at once, with an error line for each line whose answer had not
/// come. Without a handler, the signal killed the process, and with it the positions of lines
/// already committed but not yet printed.
#[test]
fn an_interrupted_append_answers_the_lines_in_flight_and_says_so() {
    use std::io::Write;
    const SIGINT: i32 = 2;
    const SIGCONT: i32 = 18;
    const SIGSTOP: i32 = 19;
    // The pause that lets a written line reach the command and its request leave: ordering, not
    // a measure of speed.
    let settle = Duration::from_millis(500);
    let mut cluster = ProcCluster::start(1);
    cluster.wait_leader(T);

    // Lines 1 to 3 are answered; then the node is frozen, line 4 is sent and waits.
    let mut append = spawn_open_append(&cluster, "append-1");
    append.stdin.write_all(b"one\ntwo\nthree\n").unwrap();
    wait_until(T, "three positions", || append.printed.lock().unwrap().len() == 3);
    cluster.node(1).proc.as_ref().unwrap().signal(SIGSTOP);
    append.stdin.write_all(b"four\n").unwrap();
    std::thread::sleep(settle);
    append.proc.signal(SIGINT);
    std::thread::sleep(settle);
    assert!(
        append.proc.child().try_wait().unwrap().is_none(),
        "append exited without the answer to the line in flight"
    );
    append.stdin.write_all(b"five\n").unwrap();
    cluster.node(1).proc.as_ref().unwrap().signal(SIGCONT);
    let status = append.proc.wait(T);
    append.reader.join().unwrap();
    let stderr = std::fs::read_to_string(&append.stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    let printed = append.printed.lock().unwrap().clone();
    assert_eq!(printed.len(), 4, "a position for each line sent, none for line 5: {printed:?}");
    assert!(printed.iter().all(|p| p["index"].is_u64()), "{printed:?}");
    assert!(stderr.contains("SIGINT received: input lines up to 4 were sent"), "{stderr}");
    let entries = cli_support::read_node(cluster.nodes[0].listen, &cluster.tls());
    let data: Vec<&[u8]> = entries.iter().map(|e| e.data.as_slice()).collect();
    assert_eq!(data, [b"one".as_slice(), b"two", b"three", b"four"], "line 5 was not sent");

    // A second SIGINT while the answer is still awaited: it stops at once.
    let mut append = spawn_open_append(&cluster, "append-2");
    cluster.node(1).proc.as_ref().unwrap().signal(SIGSTOP);
    append.stdin.write_all(b"six\n").unwrap();
    std::thread::sleep(settle);
    append.proc.signal(SIGINT);
    std::thread::sleep(settle);
    append.proc.signal(SIGINT);
    let status = append.proc.wait(T);
    cluster.node(1).proc.as_ref().unwrap().signal(SIGCONT);
    append.reader.join().unwrap();
    let stderr = std::fs::read_to_string(&append.stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    let printed = append.printed.lock().unwrap().clone();
    assert_eq!(printed.len(), 1, "{printed:?}");
    assert_eq!(printed[0]["line"], 1, "an error line for line 1: {printed:?}");
    assert!(printed[0]["error"].as_str().unwrap().contains("interrupted"), "{printed:?}");
    assert!(stderr.contains("may or may not be in the log"), "{stderr}");
}
