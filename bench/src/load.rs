//! Load generation over any append target: closed loop (N appenders, each waiting for its
//! acknowledgement before sending the next) and open loop (a fixed rate of intended sends, each
//! latency measured from its intended send time, so a stalled system is charged for every request
//! it kept waiting: coordinated omission is corrected by construction).
//!
//! The measured window selects requests by when they were issued (closed loop) or due (open
//! loop), not by when they were answered: every request of the window is followed to its answer,
//! even after the window closes, so the slowest ones (those a stall at the end of the window
//! delays past it, or the growing queue of an overloaded open loop) are not left out. One still
//! unanswered when the drain gives up counts as an error.
//!
//! Throughput is counted apart from latency: the acknowledgements that arrive inside the window
//! (whatever the append's send time), over its length. Counting the window's appends answered
//! after it would credit an overloaded target with the rate it was offered, not the one it served.
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
    /// an intended send beyond it waits for a slot, its latency running from its intended time
    /// all the same, and is counted as `queued` (the client, not the target, saturated).
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

/// How long requests of the measured window still outstanding when it closes are waited for.
const DRAIN: Duration = Duration::from_secs(5);

/// One acknowledged append of the measured window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ack {
    /// The position the target gave it.
    pub(crate) position: u64,
    /// When it was sent (closed loop) or due (open loop): where its latency starts.
    pub(crate) issued: Instant,
    /// When its acknowledgement arrived.
    pub(crate) done: Instant,
}

/// What one run measured (the warm-up excluded).
#[derive(Debug)]
pub(crate) struct LoadResult {
    /// Latency from send (closed loop) or intended send (open loop) to acknowledgement, ns, of
    /// the appends issued (or due) in the measured window and acknowledged, whenever the
    /// acknowledgement came (its count is theirs).
    pub(crate) latency_ns: Histogram<u64>,
    /// Acknowledgements that arrived inside the measured window, whenever their appends were
    /// sent: what the throughput counts.
    pub(crate) acked_in_window: u64,
    /// Appends of the measured window that failed, or were still unanswered when the drain
    /// after the window gave up (each error message is counted once in `error_samples`).
    pub(crate) errors: u64,
    pub(crate) error_samples: Vec<String>,
    /// Open loop: sends of the window that waited for a slot because `concurrency` requests were
    /// outstanding at their intended time (the wait is in their latency and their send lag).
    pub(crate) queued: u64,
    /// Open loop: how late the generator issued each request after its intended time, ns (its
    /// own timing error, included in `latency_ns`). Empty in a closed loop.
    pub(crate) send_lag_ns: Histogram<u64>,
    /// Length of the measured window.
    pub(crate) elapsed: Duration,
    /// When the measured window ended.
    pub(crate) end: Instant,
    /// Acknowledgements per [`TIMELINE_BUCKET`] from the start of the warm-up, by when they
    /// arrived (up to the end of the window).
    pub(crate) timeline: Vec<u64>,
    /// The acknowledged appends of the window, when the caller asked for them (tail lag,
    /// failover).
    pub(crate) acks: Vec<Ack>,
}

impl LoadResult {
    /// Acknowledgements per second inside the measured window.
    pub(crate) fn entries_per_s(&self) -> f64 {
        self.acked_in_window as f64 / self.elapsed.as_secs_f64().max(1e-9)
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
    acked_in_window: u64,
    errors: u64,
    error_samples: Vec<String>,
    queued: u64,
    send_lag_ns: Histogram<u64>,
    outstanding: usize,
    /// Of `outstanding`, the requests of the measured window.
    outstanding_in_window: u64,
    timeline: Vec<u64>,
    keep_acks: bool,
    acks: Vec<Ack>,
    /// Open loop: the schedule and the index of the next send not issued yet, so that sends of
    /// the window never issued are counted when the drain gives up.
    schedule: Option<(Schedule, u64)>,
}

/// An open loop's intended send times: send k is due `k` intervals after the start, in whole
/// nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    start: Instant,
    /// At least 1.
    interval_ns: u64,
}

impl Schedule {
    /// The schedule of `rate_per_s` sends a second from `start`; the interval is rounded to the
    /// nanosecond, and a rate above 10^9 (the command line refuses one) is sent at 10^9.
    fn new(start: Instant, rate_per_s: f64) -> Schedule {
        assert!(rate_per_s > 0.0, "rate must be positive");
        // `as` saturates: a tiny rate's interval is the longest one, never a panic.
        Schedule { start, interval_ns: ((1e9 / rate_per_s).round() as u64).max(1) }
    }

    /// When send `k` is due.
    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_nanos(self.interval_ns.saturating_mul(k))
    }

    /// The index of the first send due at or after `at`.
    fn first_due_from(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.start).as_nanos();
        u64::try_from(ns.div_ceil(u128::from(self.interval_ns))).unwrap_or(u64::MAX)
    }

    /// How many sends, from the `k`-th on, are due in `[from, to)`: counted, not walked (an
    /// open loop far beyond its slots may owe billions of them).
    fn count_due(&self, k: u64, from: Instant, to: Instant) -> u64 {
        self.first_due_from(to).saturating_sub(self.first_due_from(from).max(k))
    }
}

/// Nanoseconds from `from` to `to`, at least 1 (HDR histograms record no zero here).
fn ns_between(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_nanos()).unwrap_or(u64::MAX).max(1)
}

impl Shared {
    /// Whether a request sent (closed loop) or due (open loop) at `issued` belongs to the
    /// measured window.
    fn in_window(&self, issued: Instant) -> bool {
        issued >= self.measure_start && issued < self.end
    }

    /// Counts a request as outstanding from its send on.
    fn issue(&mut self, issued: Instant) {
        self.outstanding += 1;
        if self.in_window(issued) {
            self.outstanding_in_window += 1;
        }
    }

    fn record_send_lag(&mut self, intended: Instant, sent: Instant) {
        if self.in_window(intended) {
            self.send_lag_ns.saturating_record(ns_between(intended, sent));
        }
    }

    /// Records the outcome of a request counted by [`Shared::issue`] at `issued`.
    fn record(&mut self, issued: Instant, done: Instant, outcome: Result<u64, String>) {
        self.outstanding -= 1;
        if outcome.is_ok() && done >= self.start && done <= self.end {
            // The timeline shows acknowledgements as they arrived, warm-up included.
            let bucket = (done.saturating_duration_since(self.start).as_nanos()
                / TIMELINE_BUCKET.as_nanos()) as usize;
            self.bump_timeline(bucket);
            if done >= self.measure_start {
                self.acked_in_window += 1;
            }
        }
        if !self.in_window(issued) {
            // Warm-up: kept out of the figures.
            return;
        }
        self.outstanding_in_window -= 1;
        match outcome {
            Ok(position) => {
                // Values above the histogram's bound (100 s) are clamped rather than lost.
                self.latency_ns.saturating_record(ns_between(issued, done));
                if self.keep_acks {
                    self.acks.push(Ack { position, issued, done });
                }
            }
            Err(e) => self.error(e),
        }
    }

    /// Counts a failed attempt at the request issued at `issued`, which is tried again.
    fn attempt_failed(&mut self, issued: Instant, e: String) {
        if self.in_window(issued) {
            self.error(e);
        }
    }

    fn error(&mut self, e: String) {
        self.errors_counted(1, e);
    }

    /// Counts `count` errors with the same message.
    fn errors_counted(&mut self, count: u64, e: String) {
        if count == 0 {
            return;
        }
        self.errors += count;
        if self.error_samples.len() < 8 && !self.error_samples.contains(&e) {
            self.error_samples.push(e);
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
/// 250 ms with (time since start, acknowledgements so far inside the measured window).
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
        acked_in_window: 0,
        errors: 0,
        error_samples: Vec::new(),
        queued: 0,
        send_lag_ns: latency_histogram_ns(),
        outstanding: 0,
        outstanding_in_window: 0,
        timeline: Vec::new(),
        keep_acks,
        acks: Vec::new(),
        schedule: None,
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

    let mut driver = match workload.rate_per_s {
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
        progress(now.saturating_duration_since(start), shared.borrow().acked_in_window);
        if now >= end {
            break;
        }
    }
    // Requests of the window still outstanding are followed to their answers, for a bounded
    // time; this also leaves the target idle for whatever runs next. The driver first issues
    // what is left of the schedule (a late open-loop generator still owes the sends due before
    // the end) and waits for its appenders.
    let drain_deadline = tokio::time::Instant::now() + DRAIN;
    let _ = tokio::time::timeout_at(drain_deadline, &mut driver).await;
    while shared.borrow().outstanding > 0 && tokio::time::Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    driver.abort();
    let mut s = shared.borrow_mut();
    let unanswered = std::mem::take(&mut s.outstanding_in_window);
    s.errors_counted(
        unanswered,
        format!("no answer {} s after the measured window", DRAIN.as_secs()),
    );
    // An open loop whose queue outlasted the drain: the window's sends it never issued.
    if let Some((schedule, k)) = s.schedule.take() {
        let unsent = schedule.count_due(k, measure_start, end);
        s.errors_counted(
            unsent,
            format!("not sent {} s after the measured window", DRAIN.as_secs()),
        );
    }
    let total_buckets =
        ((workload.warmup + workload.duration).as_nanos() / TIMELINE_BUCKET.as_nanos()) as usize;
    let mut timeline = s.timeline.clone();
    timeline.resize(total_buckets.max(timeline.len()), 0);
    LoadResult {
        latency_ns: s.latency_ns.clone(),
        acked_in_window: s.acked_in_window,
        errors: s.errors,
        error_samples: s.error_samples.clone(),
        queued: s.queued,
        send_lag_ns: s.send_lag_ns.clone(),
        elapsed: workload.duration,
        end,
        timeline,
        acks: std::mem::take(&mut s.acks),
    }
}

/// Pause between a failed attempt and the next: keeps a dead target from turning the loop into
/// a spin.
const RETRY_PAUSE: Duration = Duration::from_millis(1);

/// Appends `payload` as request (`worker`, `seq`), issued at `issued`, trying again after each
/// failed attempt (a leader change, a dead member) until the target acknowledges it or the
/// drain after the window is over. Returns when the last attempt ended and its outcome. The
/// request's latency runs from `issued`, so the failed attempts' time is in it; each failed
/// attempt counts as an error. (A retry sent as a new request, measured from its own send,
/// would leave that time out of every figure.)
async fn append_until_acked<T: AppendTarget>(
    target: &T,
    shared: &Rc<RefCell<Shared>>,
    (worker, seq): (usize, u64),
    payload: &Bytes,
    issued: Instant,
) -> (Instant, Result<u64, String>) {
    let give_up = shared.borrow().end + DRAIN;
    loop {
        let outcome = target.append(worker, seq, payload.clone()).await;
        #[allow(clippy::disallowed_methods)]
        let done = Instant::now();
        match outcome {
            Err(e) if done < give_up => {
                shared.borrow_mut().attempt_failed(issued, e);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            outcome => return (done, outcome),
        }
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
                shared.borrow_mut().issue(sent);
                let (done, outcome) =
                    append_until_acked(&*target, &shared, (worker, seq), &payload, sent).await;
                shared.borrow_mut().record(sent, done, outcome);
                seq += 1;
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
    let (start, end) = {
        let s = shared.borrow();
        (s.start, s.end)
    };
    let schedule = Schedule::new(start, rate_per_s);
    let mut timer = match PreciseTimer::new() {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("open loop: no timerfd ({e}); pacing with tokio's 1 ms timer");
            None
        }
    };
    let mut k: u64 = 0;
    // The send that found every slot taken, counted once however long it waits.
    let mut waiting = None;
    loop {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        // Issue every request whose intended time has come. The schedule ends with the window,
        // but a generator that wakes late (after the end) still sends everything due before it:
        // those are the requests a stall delayed the most. With `max_outstanding` requests
        // outstanding the next send waits for a slot (the generator looks again each quantum),
        // its latency still running from its intended time: dropping it instead would leave the
        // requests a stall delayed most out of the figures, the coordinated omission the open
        // loop exists to avoid.
        loop {
            let intended = schedule.due(k);
            if intended >= end {
                shared.borrow_mut().schedule = None;
                return;
            }
            if intended > now {
                break;
            }
            let mut s = shared.borrow_mut();
            if s.outstanding >= max_outstanding {
                if waiting != Some(k) && s.in_window(intended) {
                    s.queued += 1;
                }
                waiting = Some(k);
                break;
            }
            // Request k goes out as the (k / workers)-th request of worker k mod workers: each
            // worker numbers its requests 0, 1, 2, ... as a closed-loop appender does, so a
            // key-value target that derives its keys from (worker, seq) writes the same key
            // space in both loops. (Numbering them k gave worker w only the seqs congruent to w,
            // and etcd 1,024 keys in all instead of 1,024 per worker.)
            let workers = payloads.len() as u64;
            let (worker, seq) = ((k % workers) as usize, k / workers);
            k += 1;
            s.issue(intended);
            drop(s);
            let payload = payloads[worker].clone();
            let target = target.clone();
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                #[allow(clippy::disallowed_methods)]
                let sent = Instant::now();
                shared.borrow_mut().record_send_lag(intended, sent);
                let (done, outcome) =
                    append_until_acked(&*target, &shared, (worker, seq), &payload, intended).await;
                shared.borrow_mut().record(intended, done, outcome);
            });
        }
        shared.borrow_mut().schedule = Some((schedule, k));
        // Sleep until the next intended send, but no less than a quantum: requests due within it
        // leave together, at most a quantum late, and the generator wakes at most once per
        // quantum (its CPU is the cluster's CPU on a small machine).
        let next = schedule.due(k).max(now + quantum);
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

    /// Runs `workload` against a fresh [`Serial`] target on a fresh current-thread runtime,
    /// keeping the acknowledgements; returns the target too, to ask what it served.
    fn run_serial(workload: &Workload) -> (LoadResult, Rc<Serial>) {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let target =
            Rc::new(Serial { busy_until: std::cell::Cell::new(None), served: Default::default() });
        let result = tokio::task::LocalSet::new()
            .block_on(&rt, run(target.clone(), workload, true, |_, _| {}));
        (result, target)
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
        // 500 sends are due in the window, and each is measured to its answer (a loaded machine
        // delays the loop, never the schedule: late sends leave at once and are charged their
        // lateness; one that finds the 8 slots taken waits for one, charged too).
        let due = 500;
        assert_eq!(result.errors, 0);
        assert_eq!(
            result.latency_ns.len(),
            due,
            "{} of {due} due sends measured",
            result.latency_ns.len()
        );
        assert_eq!(result.acks.len() as u64, result.latency_ns.len());
        // Every request's lateness is recorded, and it is part of its latency.
        assert!(result.send_lag_ns.len() >= result.latency_ns.len().saturating_sub(1));
        assert!(result.latency_ns.max() >= result.send_lag_ns.value_at_quantile(0.5));
    }

    /// Serves one append at a time, each for `SERVICE` (at least: a timer never fires early):
    /// offered more than 1 / `SERVICE` appends per second, its queue and latency grow for as
    /// long as the load lasts.
    struct Serial {
        busy_until: std::cell::Cell<Option<tokio::time::Instant>>,
        served: std::cell::Cell<u64>,
    }

    const SERVICE: Duration = Duration::from_millis(2);

    impl AppendTarget for Serial {
        async fn append(&self, _worker: usize, _seq: u64, _payload: Bytes) -> Result<u64, String> {
            let now = tokio::time::Instant::now();
            let begin = self.busy_until.get().map_or(now, |b| b.max(now));
            let done = begin + SERVICE;
            self.busy_until.set(Some(done));
            tokio::time::sleep_until(done).await;
            let n = self.served.get() + 1;
            self.served.set(n);
            Ok(n)
        }
    }

    /// An open loop at twice what the target serves: every append due in the window is
    /// measured, to its answer, although most are answered after the window closed. Counting
    /// only the answers that arrive inside the window left out the later half of the schedule,
    /// the requests that waited longest (about half the appends, and the latencies above the
    /// window's length).
    #[test]
    fn an_overloaded_open_loop_measures_every_due_append_to_its_answer() {
        let workload = Workload {
            payload_bytes: 16,
            concurrency: 4096,
            rate_per_s: Some(1_000.0),
            send_quantum: SEND_QUANTUM,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(200),
        };
        let (result, _) = run_serial(&workload);
        // Due at 0, 1, ..., 199 ms: 200 appends, none waiting for a slot (4096 may be outstanding).
        assert_eq!(result.queued, 0);
        assert_eq!(result.errors, 0, "{:?}", result.error_samples);
        assert_eq!(result.latency_ns.len(), 200, "every due append is measured");
        assert_eq!(result.acks.len(), 200);
        // The target answers the k-th append (from 0) no earlier than (k + 1) x SERVICE after
        // the start, so the last one, due at 199 ms, waited at least 400 - 199 ms.
        assert!(
            result.latency_ns.max() >= 201_000_000,
            "max latency {} ms",
            result.latency_ns.max() / 1_000_000
        );
        // The throughput is what the target served inside the window: at most one answer per
        // SERVICE, 100 in 200 ms, not the 200 it was offered and answered later.
        assert!(result.acked_in_window <= 100, "{} answers in the window", result.acked_in_window);
        assert!(result.entries_per_s() <= 500.0 + 1e-6, "{} appends/s", result.entries_per_s());
    }

    /// An open loop with fewer slots than a stall needs: the sends due while every slot is taken
    /// wait for one and are measured from their intended time, none left out. (They were
    /// dropped, and the latencies they would have had with them.)
    #[test]
    fn an_open_loop_at_its_outstanding_cap_queues_and_measures_every_due_append() {
        let workload = Workload {
            payload_bytes: 16,
            concurrency: 4,
            rate_per_s: Some(1_000.0),
            send_quantum: SEND_QUANTUM,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(200),
        };
        let (result, _) = run_serial(&workload);
        assert_eq!(result.errors, 0, "{:?}", result.error_samples);
        assert_eq!(result.latency_ns.len(), 200, "every due append is measured");
        assert!(result.queued > 0, "the target serves half the rate: sends waited for a slot");
        // As without a cap: the last one, due at 199 ms, is answered no earlier than 400 ms.
        assert!(
            result.latency_ns.max() >= 201_000_000,
            "max latency {} ms",
            result.latency_ns.max() / 1_000_000
        );
    }

    /// A closed loop counts the appends sent in the window, each to its answer: none sent in
    /// the warm-up, and the ones still in flight when the window closes are waited for.
    #[test]
    fn the_closed_loop_measures_the_appends_sent_in_the_window() {
        let workload = Workload {
            payload_bytes: 16,
            concurrency: 4,
            rate_per_s: None,
            send_quantum: SEND_QUANTUM,
            warmup: Duration::from_millis(30),
            duration: Duration::from_millis(100),
        };
        let (result, target) = run_serial(&workload);
        assert_eq!(result.errors, 0);
        let start = result.end - workload.duration - workload.warmup;
        let measure_start = start + workload.warmup;
        assert!(!result.latency_ns.is_empty());
        for ack in &result.acks {
            assert!(ack.issued >= measure_start && ack.issued < result.end, "{ack:?}");
        }
        // Four appenders, each with one append in flight when the window closed: those were
        // answered after it and are counted (the target served every append it was sent).
        assert!(result.acks.iter().any(|a| a.done > result.end));
        let sent_in_warmup = target.served.get() - result.latency_ns.len();
        assert!(sent_in_warmup > 0, "the warm-up's appends are not counted");
    }

    /// Fails every other attempt, each failure after `FAIL_AFTER`; succeeds at once otherwise.
    struct Flaky(std::cell::Cell<u64>);

    const FAIL_AFTER: Duration = Duration::from_millis(20);

    impl AppendTarget for Flaky {
        async fn append(&self, _worker: usize, _seq: u64, _payload: Bytes) -> Result<u64, String> {
            let n = self.0.get() + 1;
            self.0.set(n);
            if n % 2 == 1 {
                tokio::time::sleep(FAIL_AFTER).await;
                return Err("no leader".into());
            }
            Ok(n)
        }
    }

    /// A failed attempt is tried again for the same append, whose latency runs from the first
    /// attempt; each failure is counted. (The retry was a new append measured from its own
    /// send: every latency here was the instant success, the 20 ms failures out of sight.)
    #[test]
    fn a_failed_attempt_stays_in_the_latency_of_its_append() {
        let workload = Workload {
            payload_bytes: 16,
            concurrency: 1,
            rate_per_s: None,
            send_quantum: SEND_QUANTUM,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(100),
        };
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let result = tokio::task::LocalSet::new().block_on(&rt, async {
            run(Rc::new(Flaky(std::cell::Cell::new(0))), &workload, false, |_, _| {}).await
        });
        assert!(!result.latency_ns.is_empty());
        // Each append failed once (20 ms at least), then succeeded.
        assert!(
            result.latency_ns.min() >= FAIL_AFTER.as_nanos() as u64,
            "min latency {} us",
            result.latency_ns.min() / 1000
        );
        assert_eq!(result.errors, result.latency_ns.len(), "{:?}", result.error_samples);
    }

    /// Records the (worker, seq) of every request it acknowledges at once.
    struct Numbering(RefCell<Vec<(usize, u64)>>);

    impl AppendTarget for Numbering {
        async fn append(&self, worker: usize, seq: u64, _payload: Bytes) -> Result<u64, String> {
            let mut seen = self.0.borrow_mut();
            seen.push((worker, seq));
            Ok(seen.len() as u64)
        }
    }

    /// Both loops number each worker's requests 0, 1, 2, ..., so a key-value target that cycles
    /// each worker over its own keys (etcd's) sees the same key space in both. The open loop
    /// numbered request k as seq k of worker k mod N: at 64 workers and 1,024 keys per worker,
    /// etcd's open-loop puts went to 1,024 keys in all.
    #[test]
    fn both_loops_number_each_workers_requests_from_zero() {
        for rate_per_s in [None, Some(4_000.0)] {
            let workload = Workload {
                payload_bytes: 16,
                concurrency: 8,
                rate_per_s,
                send_quantum: SEND_QUANTUM,
                warmup: Duration::ZERO,
                duration: Duration::from_millis(100),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let target = Rc::new(Numbering(RefCell::new(Vec::new())));
            tokio::task::LocalSet::new()
                .block_on(&rt, run(target.clone(), &workload, false, |_, _| {}));
            let seen = target.0.borrow();
            assert!(seen.len() >= 16, "{rate_per_s:?}: {} requests", seen.len());
            for worker in 0..workload.concurrency {
                let mut seqs: Vec<u64> =
                    seen.iter().filter(|(w, _)| *w == worker).map(|(_, seq)| *seq).collect();
                seqs.sort_unstable();
                let expected: Vec<u64> = (0..seqs.len() as u64).collect();
                assert_eq!(seqs, expected, "{rate_per_s:?}: worker {worker}");
            }
        }
    }

    /// An open loop offered far more than its slots let it send (10^9 appends/s, one slot):
    /// every append due in the window is accounted for, measured or counted as an error, and
    /// the count of the ones never sent does not walk the schedule one append at a time (it
    /// formatted an error for each of the 2 x 10^8 here).
    #[test]
    fn an_open_loop_far_beyond_its_slots_counts_every_unsent_append() {
        let workload = Workload {
            payload_bytes: 16,
            concurrency: 1,
            rate_per_s: Some(1e9),
            send_quantum: SEND_QUANTUM,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(200),
        };
        let result = run_instant(&workload, false);
        let due = 200_000_000;
        assert_eq!(result.latency_ns.len() + result.errors, due, "{:?}", result.error_samples);
        assert!(result.errors > due / 2, "{} errors", result.errors);
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
        assert!(!result.latency_ns.is_empty());
        assert!(result.send_lag_ns.is_empty());
        assert!(result.acks.is_empty(), "acks are kept only when asked for");
    }
}
