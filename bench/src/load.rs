//! Load generation over any append target: closed loop (N appenders, each waiting for its
//! acknowledgement before sending the next) and open loop (a fixed rate of intended sends, each
//! latency measured from its intended send time, so a stalled system is charged for every request
//! it kept waiting: coordinated omission is corrected by construction).
//!
//! The driver runs on the caller's current-thread tokio runtime inside a `LocalSet`, so a target
//! needs neither `Send` nor locks. It owns no system under test: targets (raftwal's client, etcd's
//! gRPC API) live in their own modules and implement [`AppendTarget`].

use crate::report::latency_histogram_ns;
use crate::timer::PreciseTimer;
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Width of one bucket of the throughput timeline.
pub(crate) const TIMELINE_BUCKET: Duration = Duration::from_millis(100);

/// Open loop, by default: the generator wakes at most once per quantum and sends every request
/// due by then, so a request leaves at most this late (plus the thread's wake-up), and the
/// lateness is measured (`LoadResult::send_lag_ns`). A shorter quantum costs the machine more
/// wake-ups of the generator; a longer one sends in bursts.
pub(crate) const SEND_QUANTUM: Duration = Duration::from_micros(50);

/// Something the load generator appends to.
pub(crate) trait AppendTarget {
    /// Appends `payload` and resolves once the target acknowledges it as durably committed, with
    /// the position the target gave it (a log index, a revision). `worker` and `seq` identify the
    /// request (a key-value target derives its key from them).
    async fn append(&self, worker: usize, seq: u64, payload: Bytes) -> Result<u64, String>;
}

/// What load to apply.
#[derive(Clone, Debug)]
pub(crate) struct Workload {
    pub(crate) payload_bytes: usize,
    /// Closed loop: the number of appenders. Open loop: the most requests outstanding at once;
    /// an intended send beyond it is counted as `dropped` (the client, not the target, saturated).
    pub(crate) concurrency: usize,
    /// Open loop when set: intended appends per second.
    pub(crate) rate_per_s: Option<f64>,
    /// Open loop: the generator's pacing quantum (see [`SEND_QUANTUM`]).
    pub(crate) send_quantum: Duration,
    /// Load applied before measuring, to fill caches, open files and settle leadership.
    pub(crate) warmup: Duration,
    /// Measured time.
    pub(crate) duration: Duration,
}

/// What one run measured (the warm-up excluded).
#[derive(Debug)]
pub(crate) struct LoadResult {
    /// Latency from send (closed loop) or intended send (open loop) to acknowledgement, ns.
    pub(crate) latency_ns: Histogram<u64>,
    /// Appends acknowledged inside the measured window.
    pub(crate) completed: u64,
    /// Appends that failed inside the measured window (each error message is counted once in
    /// `error_samples`).
    pub(crate) errors: u64,
    pub(crate) error_samples: Vec<String>,
    /// Open loop: intended sends the client could not issue because `concurrency` were outstanding.
    pub(crate) dropped: u64,
    /// Open loop: how late the generator issued each request after its intended time, ns (its
    /// own timing error, included in `latency_ns`). Empty in a closed loop.
    pub(crate) send_lag_ns: Histogram<u64>,
    /// Length of the measured window.
    pub(crate) elapsed: Duration,
    /// When the measured window ended.
    pub(crate) end: Instant,
    /// Acknowledgements per [`TIMELINE_BUCKET`] from the start of the warm-up.
    pub(crate) timeline: Vec<u64>,
    /// Positions and acknowledgement instants, when the caller asked for them (tail lag).
    pub(crate) acks: Vec<(u64, Instant)>,
}

impl LoadResult {
    pub(crate) fn entries_per_s(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn mb_per_s(&self, payload_bytes: usize) -> f64 {
        self.entries_per_s() * payload_bytes as f64 / 1e6
    }
}

struct Shared {
    start: Instant,
    measure_start: Instant,
    end: Instant,
    latency_ns: Histogram<u64>,
    completed: u64,
    errors: u64,
    error_samples: Vec<String>,
    dropped: u64,
    send_lag_ns: Histogram<u64>,
    outstanding: usize,
    timeline: Vec<u64>,
    keep_acks: bool,
    acks: Vec<(u64, Instant)>,
}

/// Nanoseconds from `from` to `to`, at least 1 (HDR histograms record no zero here).
fn ns_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX).max(1)
}

impl Shared {
    fn record_send_lag(&mut self, intended: Instant, sent: Instant) {
        if intended >= self.measure_start && intended <= self.end {
            self.send_lag_ns.saturating_record(ns_between(intended, sent));
        }
    }

    fn record(&mut self, intended: Instant, done: Instant, outcome: Result<u64, String>) {
        let bucket = (done.saturating_duration_since(self.start).as_nanos()
            / TIMELINE_BUCKET.as_nanos()) as usize;
        if done < self.measure_start || done > self.end {
            // Warm-up or drain: shown on the timeline, kept out of the figures.
            if outcome.is_ok() && done <= self.end {
                self.bump_timeline(bucket);
            }
            return;
        }
        match outcome {
            Ok(position) => {
                self.completed += 1;
                self.bump_timeline(bucket);
                // Values above the histogram's bound (100 s) are clamped rather than lost.
                self.latency_ns.saturating_record(ns_between(intended, done));
                if self.keep_acks {
                    self.acks.push((position, done));
                }
            }
            Err(e) => {
                self.errors += 1;
                if self.error_samples.len() < 8 && !self.error_samples.contains(&e) {
                    self.error_samples.push(e);
                }
            }
        }
    }

    fn bump_timeline(&mut self, bucket: usize) {
        if self.timeline.len() <= bucket {
            self.timeline.resize(bucket + 1, 0);
        }
        self.timeline[bucket] += 1;
    }
}

/// Runs `workload` against `target` on the current `LocalSet`, calling `progress` about every
/// 250 ms with (time since start, appends acknowledged so far in the measured window).
pub(crate) async fn run<T: AppendTarget + 'static>(
    target: Rc<T>,
    workload: &Workload,
    keep_acks: bool,
    mut progress: impl FnMut(Duration, u64),
) -> LoadResult {
    assert!(workload.concurrency > 0, "concurrency must be positive");
    assert!(workload.payload_bytes > 0, "payload must not be empty");
    #[allow(clippy::disallowed_methods)] // the benchmark's own clock is the point of a benchmark
    let start = Instant::now();
    let measure_start = start + workload.warmup;
    let end = measure_start + workload.duration;
    let shared = Rc::new(RefCell::new(Shared {
        start,
        measure_start,
        end,
        latency_ns: latency_histogram_ns(),
        completed: 0,
        errors: 0,
        error_samples: Vec::new(),
        dropped: 0,
        send_lag_ns: latency_histogram_ns(),
        outstanding: 0,
        timeline: Vec::new(),
        keep_acks,
        acks: Vec::new(),
    }));
    // Payloads differ per worker in their first bytes so that no layer can deduplicate them, and
    // are otherwise shared: the harness must not spend the CPU it is measuring on copies.
    let payloads: Vec<Bytes> = (0..workload.concurrency)
        .map(|w| {
            let mut p = vec![0x5a_u8; workload.payload_bytes];
            for (i, b) in (w as u64).to_le_bytes().iter().enumerate().take(p.len()) {
                p[i] = *b;
            }
            Bytes::from(p)
        })
        .collect();

    let driver = match workload.rate_per_s {
        None => tokio::task::spawn_local(closed_loop(target, shared.clone(), payloads)),
        Some(rate) => tokio::task::spawn_local(open_loop(
            target,
            shared.clone(),
            payloads,
            rate,
            workload.concurrency,
            workload.send_quantum,
        )),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        progress(now.saturating_duration_since(start), shared.borrow().completed);
        if now >= end {
            break;
        }
    }
    // Requests still outstanding at the end finish outside the window and are not counted;
    // give them a bounded time to drain so the target is idle for whatever runs next.
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while shared.borrow().outstanding > 0 && tokio::time::Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    driver.abort();
    let mut s = shared.borrow_mut();
    let total_buckets =
        ((workload.warmup + workload.duration).as_nanos() / TIMELINE_BUCKET.as_nanos()) as usize;
    let mut timeline = s.timeline.clone();
    timeline.resize(total_buckets.max(timeline.len()), 0);
    LoadResult {
        latency_ns: s.latency_ns.clone(),
        completed: s.completed,
        errors: s.errors,
        error_samples: s.error_samples.clone(),
        dropped: s.dropped,
        send_lag_ns: s.send_lag_ns.clone(),
        elapsed: workload.duration,
        end,
        timeline,
        acks: std::mem::take(&mut s.acks),
    }
}

async fn closed_loop<T: AppendTarget + 'static>(
    target: Rc<T>,
    shared: Rc<RefCell<Shared>>,
    payloads: Vec<Bytes>,
) {
    let end = shared.borrow().end;
    let mut workers = Vec::with_capacity(payloads.len());
    for (worker, payload) in payloads.into_iter().enumerate() {
        let target = target.clone();
        let shared = shared.clone();
        workers.push(tokio::task::spawn_local(async move {
            let mut seq = 0_u64;
            loop {
                #[allow(clippy::disallowed_methods)]
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                shared.borrow_mut().outstanding += 1;
                let outcome = target.append(worker, seq, payload.clone()).await;
                #[allow(clippy::disallowed_methods)]
                let done = Instant::now();
                let failed = outcome.is_err();
                {
                    let mut s = shared.borrow_mut();
                    s.outstanding -= 1;
                    s.record(sent, done, outcome);
                }
                seq += 1;
                if failed {
                    // A failing target (leader change, restart) is retried by the next request;
                    // pausing briefly keeps a dead target from turning the loop into a spin.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
}

async fn open_loop<T: AppendTarget + 'static>(
    target: Rc<T>,
    shared: Rc<RefCell<Shared>>,
    payloads: Vec<Bytes>,
    rate_per_s: f64,
    max_outstanding: usize,
    quantum: Duration,
) {
    assert!(rate_per_s > 0.0, "rate must be positive");
    let (start, end) = {
        let s = shared.borrow();
        (s.start, s.end)
    };
    let interval = Duration::from_secs_f64(1.0 / rate_per_s);
    let mut timer = match PreciseTimer::new() {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("open loop: no timerfd ({e}); pacing with tokio's 1 ms timer");
            None
        }
    };
    let mut k: u64 = 0;
    loop {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        if now >= end {
            break;
        }
        // Issue every request whose intended time has come.
        loop {
            let intended = start + interval.mul_f64(k as f64);
            if intended > now {
                break;
            }
            k += 1;
            let mut s = shared.borrow_mut();
            if s.outstanding >= max_outstanding {
                if intended >= s.measure_start {
                    s.dropped += 1;
                }
                continue;
            }
            s.outstanding += 1;
            drop(s);
            let worker = (k % payloads.len() as u64) as usize;
            let payload = payloads[worker].clone();
            let target = target.clone();
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                #[allow(clippy::disallowed_methods)]
                let sent = Instant::now();
                shared.borrow_mut().record_send_lag(intended, sent);
                let outcome = target.append(worker, k, payload).await;
                #[allow(clippy::disallowed_methods)]
                let done = Instant::now();
                let mut s = shared.borrow_mut();
                s.outstanding -= 1;
                s.record(intended, done, outcome);
            });
        }
        // Sleep until the next intended send, but no less than a quantum: requests due within it
        // leave together, at most a quantum late, and the generator wakes at most once per
        // quantum (its CPU is the cluster's CPU on a small machine).
        let next = (start + interval.mul_f64(k as f64)).max(now + quantum);
        match &timer {
            Some(t) => {
                if let Err(e) = t.sleep_until(next).await {
                    eprintln!("open loop: the timerfd failed ({e}); pacing with tokio's timer");
                    timer = None;
                }
            }
            None => tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acknowledges every append at once, numbering them.
    struct Instant0(std::cell::Cell<u64>);

    impl AppendTarget for Instant0 {
        async fn append(&self, _worker: usize, _seq: u64, _payload: Bytes) -> Result<u64, String> {
            let n = self.0.get() + 1;
            self.0.set(n);
            Ok(n)
        }
    }

    /// Runs `workload` against [`Instant0`] on a fresh current-thread runtime.
    fn run_instant(workload: &Workload, keep_acks: bool) -> LoadResult {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, async {
            run(Rc::new(Instant0(std::cell::Cell::new(0))), workload, keep_acks, |_, _| {}).await
        })
    }

    #[test]
    fn the_open_loop_issues_the_whole_schedule_and_measures_its_own_lateness() {
        let workload = Workload {
            payload_bytes: 16,
            concurrency: 8,
            rate_per_s: Some(2_000.0),
            send_quantum: SEND_QUANTUM,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(250),
        };
        let result = run_instant(&workload, true);
        // 500 sends are due in the window. The last few may be acknowledged after the window
        // closes (a loaded machine delays the loop, never the schedule: late sends leave at once
        // and are charged their lateness), and sends due just before it may be acknowledged
        // inside it (at most the 8 outstanding). A target that answers at once never has 8
        // outstanding, unless the loop itself stalled long enough for 8 sends to fall due at
        // once (the machine is busy): then they leave together and the ninth is dropped, and the
        // first of them shows that stall as its lateness. So: no drop without such a stall.
        let due = 500;
        let interval_ns = 500_000;
        assert_eq!(result.errors, 0);
        let stalled = result.send_lag_ns.max() >= 7 * interval_ns;
        assert!(
            result.dropped == 0 || stalled,
            "{} dropped with the loop never more than {} us late",
            result.dropped,
            result.send_lag_ns.max() / 1000
        );
        let issued = result.completed + result.dropped;
        assert!(
            issued <= due + 8 && issued >= due * 9 / 10,
            "{} of {due} due sends acknowledged in the window, {} dropped",
            result.completed,
            result.dropped
        );
        assert_eq!(result.acks.len() as u64, result.completed);
        // Every request's lateness is recorded, and it is part of its latency.
        assert!(result.send_lag_ns.len() >= result.completed.saturating_sub(1));
        assert!(result.latency_ns.max() >= result.send_lag_ns.value_at_quantile(0.5));
    }

    #[test]
    fn the_closed_loop_records_no_send_lag() {
        let workload = Workload {
            payload_bytes: 16,
            concurrency: 2,
            rate_per_s: None,
            send_quantum: SEND_QUANTUM,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(50),
        };
        let result = run_instant(&workload, false);
        assert!(result.completed > 0);
        assert!(result.send_lag_ns.is_empty());
        assert!(result.acks.is_empty(), "acks are kept only when asked for");
    }
}
