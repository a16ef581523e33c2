//! Deduplication of retried client appends: which (client id, sequence number) pairs a log
//! already holds, and where.
//!
//! Owns: [`DedupTable`], replicated state: every replica applies the same committed tagged
//! entries in the same order, so replicas that applied the same entries since they started (or
//! since a leader's log start) hold the same table, and a new leader answers a retry as the old
//! one would have. A restarted replica's table is rebuilt from a save and the recent entries
//! (below): it never takes a pair the log held by the save for a new one, but it may answer a
//! retry differently: one of an entry the save settled and the rebuild did not scan is refused
//! rather than answered with its position, one of a gap's number that the live window has since
//! moved past is appended rather than refused (the number never reached the log, so nothing is
//! appended twice), and one of a number below everything a client's window recorded is
//! refused rather than appended.
//! Must not: depend on anything but the committed log and the saves made of it (no clock, no
//! arrival order), or a replica's table would differ from the leader's.
//!
//! The window, documented for users in docs/operations.md:
//! - per client, the last [`SEQS_PER_CLIENT`] sequence numbers applied, with their positions; a
//!   retry of an older one is refused ([`Lookup::Forgotten`]) rather than appended twice;
//! - at most [`CLIENTS_MAX`] clients; when a new client would exceed it, the client whose last
//!   entry is oldest in the log is forgotten entirely, and a retry from it is appended again;
//! - after a restart, the table is rebuilt from the clients' sequence numbers the log saved
//!   (`client_seqs`, docs/format.md: each client's highest number up to an index and the numbers
//!   below it that no entry up to that index holds, its gaps; saved every
//!   [`CLIENT_SEQS_SAVE_ENTRIES`] applied entries and before the log forgets entries) and the
//!   committed entries after the save, or the last [`REBUILD_ENTRIES_MAX`] when more: a retry
//!   of a number the save settled and the entries do not show is refused
//!   ([`DedupTable::settle`]); one the entries show is answered with its position; one in a
//!   gap (a number lost in a leader change while later ones committed) is appended, as before
//!   the restart. A save holds at most [`crate::storage::CLIENT_SEQS_GAPS_MAX`] gap ranges: a
//!   client whose ranges do not fit (the clients whose last entries are oldest first) has its
//!   gaps refused after a restart, never appended twice. Numbers below the lowest one a window
//!   recorded are never gaps: the window cannot tell them from numbers an earlier window of
//!   the same client held before the table forgot it. Up to the save, the rebuild records no
//!   client the save does not name (the table had forgotten it by then). Two effects of a
//!   client the table forgot and that came back (the eviction rule above): if it came back
//!   with a retry of an old number, the numbers between that one and its new ones may be
//!   called gaps, and a restart appends a retry of one of them again even once the live window
//!   moved past it; if it came back between the rebuild's start and the save, the rebuild
//!   also holds its earlier window's entries, so the restarted window may refuse as older a
//!   number the live one answers with its position;
//! - a follower that takes a leader's log start learns each client's highest number only
//!   ([`DedupTable::raise_floors`]): a gap below it is refused there.
//!
//! Invariants:
//! 1. Each client's window is sorted by sequence number, holds at most `SEQS_PER_CLIENT` of them,
//!    and every number in it is at least the client's `floor`.
//! 2. `last_used` orders clients by the log index of their last applied entry.
//! 3. `order` holds, oldest first, one `(last_used, client)` for every client in the table (its
//!    live entry) and possibly stale ones (an older `last_used`, or a client since evicted),
//!    which eviction skips; it is compacted to its live entries once it holds twice
//!    [`CLIENTS_MAX`] more than that, so finding the oldest client costs O(1) amortized, not a
//!    scan of every client.

use raftwal_wire::client::{ClientId, ClientSeq};
use raftwal_wire::types::{LogIndex, Term};
use std::collections::{HashMap, HashSet, VecDeque};

/// A client's gap in a save: the first and last number of a range (inclusive).
pub(crate) type GapRange = (ClientId, ClientSeq, ClientSeq);

/// Sequence numbers remembered per client.
pub(crate) const SEQS_PER_CLIENT: usize = 1024;
/// Clients remembered.
pub(crate) const CLIENTS_MAX: usize = 4096;
/// Committed entries scanned at start to rebuild the table, at least (more when the last save
/// of the clients' numbers is older, up to [`REBUILD_AFTER_SAVE_MAX`]).
pub(crate) const REBUILD_ENTRIES_MAX: u64 = 100_000;
/// Committed entries scanned at start after the last save of the clients' numbers, at most:
/// the scan reads them all before the log serves (about a second per million 1 KiB entries).
pub(crate) const REBUILD_AFTER_SAVE_MAX: u64 = 1_000_000;
/// Applied entries between two saves of the clients' numbers.
pub(crate) const CLIENT_SEQS_SAVE_ENTRIES: u64 = REBUILD_ENTRIES_MAX / 2;

/// What the table knows of a (client, sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Committed at this position: answer the retry with it.
    Applied { index: LogIndex, term: Term },
    /// Older than the client's window: the table cannot tell; refuse rather than duplicate.
    Forgotten,
    /// Not committed (as far as the window shows): append it.
    Unknown,
}

#[derive(Clone, Debug)]
struct ClientWindow {
    /// (seq, index, term), sorted by seq.
    recent: VecDeque<(ClientSeq, LogIndex, Term)>,
    /// Sequence numbers below this were dropped from the window.
    floor: ClientSeq,
    /// Sequence numbers below this are settled by a save of the clients' numbers
    /// ([`DedupTable::settle`]): those not in `recent` nor in `gaps` are refused.
    settled: ClientSeq,
    /// Inclusive ranges of numbers below `settled` that no entry held when the save was made
    /// (sorted, disjoint): appended when retried, not refused. Empty unless a save said so.
    gaps: Vec<(ClientSeq, ClientSeq)>,
    /// The lowest number recorded since the window was made, if any. Below it (and below
    /// `settled`) the window cannot tell a number that never reached the log from one an
    /// earlier window of the client held before the table forgot it, so a save calls none of
    /// those a gap.
    low: Option<ClientSeq>,
    /// Log index of the client's last applied entry.
    last_used: LogIndex,
}

impl ClientWindow {
    fn in_gap(&self, seq: ClientSeq) -> bool {
        let at = self.gaps.partition_point(|&(_, last)| last < seq);
        self.gaps.get(at).is_some_and(|&(first, _)| first <= seq)
    }

    /// Appends to `out` the ranges of numbers up to `top` that a retry would append were the
    /// table as it was at `through` and that the window knows no entry held (not below the
    /// floor; below `settled` only the saved gaps; otherwise not below `low`; held by no entry
    /// at or before `through`); stops once `out` holds more than `limit` (the caller drops
    /// them all then).
    fn gaps_up_to(
        &self,
        top: ClientSeq,
        through: LogIndex,
        out: &mut Vec<(ClientSeq, ClientSeq)>,
        limit: usize,
    ) {
        let floor = self.floor.get();
        let top = top.get();
        // Candidates, in order: the saved gaps below `settled`, then from `settled` (a save
        // told the window everything below it), or else from `low`, up to `top`.
        let from = if self.settled > ClientSeq(0) { Some(self.settled) } else { self.low };
        let below = self.gaps.iter().map(|&(first, last)| (first.get(), last.get()));
        let above = from.map(|from| from.get()).filter(|&from| from <= top).map(|from| (from, top));
        for (first, last) in below.chain(above) {
            let (first, last) = (first.max(floor), last.min(top));
            if first > last {
                continue;
            }
            // Split around the numbers entries at or before `through` hold. In u128, so that
            // `u64::MAX + 1` is a number.
            let mut next = u128::from(first);
            let start = self.recent.partition_point(|e| e.0.get() < first);
            for &(seq, index, _) in self.recent.range(start..) {
                if seq.get() > last {
                    break;
                }
                if index > through {
                    continue;
                }
                if u128::from(seq.get()) > next {
                    out.push((ClientSeq(next as u64), ClientSeq(seq.get() - 1)));
                    if out.len() > limit {
                        return;
                    }
                }
                next = u128::from(seq.get()) + 1;
            }
            if next <= u128::from(last) {
                out.push((ClientSeq(next as u64), ClientSeq(last)));
                if out.len() > limit {
                    return;
                }
            }
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub(crate) struct DedupTable {
    clients: HashMap<ClientId, ClientWindow>,
    /// Clients by the index of their last applied entry, oldest first (invariant 3).
    order: VecDeque<(LogIndex, ClientId)>,
    /// The `through` of the save a restart's table was settled from: entries up to it of a
    /// client the save does not name are not recorded ([`DedupTable::settle`]).
    replay_through: LogIndex,
}

impl DedupTable {
    pub(crate) fn lookup(&self, client: ClientId, seq: ClientSeq) -> Lookup {
        let Some(window) = self.clients.get(&client) else {
            return Lookup::Unknown;
        };
        match window.recent.binary_search_by_key(&seq, |&(s, _, _)| s) {
            Ok(position) => {
                let (_, index, term) = window.recent[position];
                Lookup::Applied { index, term }
            }
            Err(_) if seq < window.floor => Lookup::Forgotten,
            Err(_) if seq < window.settled && !window.in_gap(seq) => Lookup::Forgotten,
            Err(_) => Lookup::Unknown,
        }
    }

    /// Records a committed tagged entry. A sequence number already recorded keeps its first
    /// position (a duplicate that slipped in is not the one retries are answered with).
    pub(crate) fn record(&mut self, client: ClientId, seq: ClientSeq, index: LogIndex, term: Term) {
        if index <= self.replay_through && !self.clients.contains_key(&client) {
            // The table a save came from had forgotten this client by the save (see `settle`).
            return;
        }
        let (window, moved) = self.use_window(client, index);
        let last_used = window.last_used;
        window.low = Some(window.low.map_or(seq, |low| low.min(seq)));
        if seq >= window.floor {
            if let Err(position) = window.recent.binary_search_by_key(&seq, |&(s, _, _)| s) {
                if window.recent.len() < SEQS_PER_CLIENT {
                    window.recent.insert(position, (seq, index, term));
                } else if position == 0 {
                    // Full, and older than every number kept: it would be the one to go.
                    window.floor = ClientSeq(seq.get() + 1);
                } else {
                    // Full: the oldest goes before the new one comes, so the buffer never
                    // holds more than the window (one more would double its room).
                    if let Some((dropped, _, _)) = window.recent.pop_front() {
                        window.floor = ClientSeq(dropped.get() + 1);
                    }
                    window.recent.insert(position - 1, (seq, index, term));
                }
            }
        }
        if moved {
            self.note_use(client, last_used);
        }
    }

    /// For each client, the highest sequence number of its entries at or before `through`
    /// that the table remembers, or, when higher, the one below its window's floor (numbers it
    /// forgot, which may lie anywhere) or below its settled mark: what a follower that starts
    /// its log after `through` needs to refuse retries of entries it never sees
    /// ([`DedupTable::raise_floors`]), and what a save of the clients' numbers holds. At most
    /// `count_max` of them (what one frame holds): those of the clients whose last entries are
    /// newest, the others left out as if forgotten. Ordered as the table would forget them
    /// (oldest last entry first; clients that share one, in the order the table took them), so
    /// that a follower, which takes them all at one index, or a restarted table, which gives
    /// them all the rebuild's first index, still forgets them in this table's order.
    pub(crate) fn seqs_through(
        &self,
        through: LogIndex,
        count_max: usize,
    ) -> Vec<(ClientId, ClientSeq)> {
        // By last entry, and clients that share one (a log start or a restart gave them one
        // index) in the order `order` holds them, the order the table forgets them: a sort by
        // client id would reorder those, and a table that took the pairs would then forget
        // another client than this one. (A stable sort of `order`'s live entries, which are
        // sorted already when entries come in log order.)
        let mut seen: HashSet<ClientId> = HashSet::with_capacity(self.clients.len());
        let mut seqs: Vec<(LogIndex, ClientId, ClientSeq)> = self
            .order
            .iter()
            .filter(|(used, client)| {
                self.clients.get(client).is_some_and(|w| w.last_used == *used)
                    && seen.insert(*client)
            })
            .filter_map(|(_, client)| {
                let window = &self.clients[client];
                let kept = window.recent.iter().rev().find(|e| e.1 <= through).map(|e| e.0);
                let forgotten = window.floor.get().checked_sub(1).map(ClientSeq);
                let settled = window.settled.get().checked_sub(1).map(ClientSeq);
                kept.max(forgotten).max(settled).map(|seq| (window.last_used, *client, seq))
            })
            .collect();
        seqs.sort_by_key(|&(used, _, _)| used);
        // The oldest go first when not all fit (all of them when nothing fits).
        let skipped = seqs.len().saturating_sub(count_max);
        seqs.into_iter().skip(skipped).map(|(_, client, seq)| (client, seq)).collect()
    }

    /// The log now starts after `at` (a leader's log start): for each `(client, seq)`, the
    /// entries of that client up to `seq` are taken as applied somewhere at or before `at`,
    /// where the table cannot point at them, so retries of them are refused
    /// ([`Lookup::Forgotten`]) rather than appended again. Numbers above stay as they were.
    /// The clients take `at` as their last entry's index, in the order of `seqs` (the order the
    /// leader would forget them: [`DedupTable::seqs_through`]).
    pub(crate) fn raise_floors(&mut self, seqs: &[(ClientId, ClientSeq)], at: LogIndex) {
        for &(client, seq) in seqs {
            let (window, moved) = self.use_window(client, at);
            let last_used = window.last_used;
            let floor = ClientSeq(seq.get().saturating_add(1));
            if floor > window.floor {
                window.floor = floor;
                while window.recent.front().is_some_and(|e| e.0 < floor) {
                    window.recent.pop_front();
                }
            }
            if moved {
                self.note_use(client, last_used);
            }
        }
    }

    /// A restart's start: the clients' numbers a save found (`seqs`, in the order
    /// [`DedupTable::seqs_through`] gives, and `gaps`, as [`DedupTable::gaps_through`] gives)
    /// describe the log up to `through`, at or after `at`, the index the table is rebuilt from.
    /// Each client's numbers up to its `seq` are settled, except those in its gaps: a retry of
    /// one is answered with its position when the entries after `at` show it, and refused
    /// ([`Lookup::Forgotten`]) otherwise, never appended again (a pair the log holds twice, a
    /// retry the table had forgotten before, both before and after `at`, is answered with its
    /// position after `at`). A retry of a number in a gap is appended, as before the restart.
    /// The clients take `at` as their last entry's index, in the order of `seqs`, so the table
    /// forgets them in the order it would have before the restart; the entries after `at` move
    /// them up as they are applied. The entries up to `through` of a client the save does not
    /// name are not recorded: the table that made the save had forgotten that client by then,
    /// and recording it would push out a client the save kept (all of them have `at` for their
    /// last entry), which that table never did. Gaps of a client `seqs` does not name, or above
    /// its `seq`, are ignored; unsorted or overlapping ones are merged (the file's bytes, not
    /// trusted to be well formed).
    pub(crate) fn settle(
        &mut self,
        seqs: &[(ClientId, ClientSeq)],
        gaps: &[GapRange],
        at: LogIndex,
        through: LogIndex,
    ) {
        self.replay_through = self.replay_through.max(through);
        let mut gaps_of: HashMap<ClientId, Vec<(ClientSeq, ClientSeq)>> = HashMap::new();
        for &(client, first, last) in gaps {
            if first <= last {
                gaps_of.entry(client).or_default().push((first, last));
            }
        }
        for &(client, seq) in seqs {
            let (window, moved) = self.use_window(client, at);
            let last_used = window.last_used;
            let settled = ClientSeq(seq.get().saturating_add(1));
            if settled > window.settled {
                window.settled = settled;
                let mut ranges = gaps_of.remove(&client).unwrap_or_default();
                ranges.retain(|&(_, last)| last < settled);
                ranges.sort_unstable();
                window.gaps.clear();
                for (first, last) in ranges {
                    match window.gaps.last_mut() {
                        Some(prev) if first.get() <= prev.1.get().saturating_add(1) => {
                            prev.1 = prev.1.max(last);
                        }
                        _ => window.gaps.push((first, last)),
                    }
                }
            }
            if moved {
                self.note_use(client, last_used);
            }
        }
    }

    /// For the clients of a save (`seqs`: [`DedupTable::seqs_through`] for `through`), the
    /// numbers up to each client's `seq` that the table would append if retried, as inclusive
    /// ranges: its gaps, numbers no entry at or before `through` holds (a number lost in a
    /// leader change while later ones committed), above its window's floor and above 0 (a
    /// retry of 0 after a restart is refused when the save settled it). In the order of
    /// `seqs`, at most `ranges_max`: the clients whose last entries are newest go first, and
    /// a client whose ranges do not all fit is left out entirely (a restart refuses its gaps:
    /// a retry fails, nothing is appended twice).
    pub(crate) fn gaps_through(
        &self,
        through: LogIndex,
        seqs: &[(ClientId, ClientSeq)],
        ranges_max: usize,
    ) -> Vec<GapRange> {
        let mut kept: Vec<Vec<GapRange>> = Vec::new();
        let mut room = ranges_max;
        let mut ranges = Vec::new();
        for &(client, top) in seqs.iter().rev() {
            let Some(window) = self.clients.get(&client) else { continue };
            ranges.clear();
            window.gaps_up_to(top, through, &mut ranges, room);
            if ranges.len() <= room && !ranges.is_empty() {
                room -= ranges.len();
                kept.push(ranges.iter().map(|&(first, last)| (client, first, last)).collect());
            }
        }
        kept.into_iter().rev().flatten().collect()
    }

    /// The window of `client`, whose entry at `index` the table takes: made if the client is
    /// new (the client whose last entry is oldest goes first when the table is full), its last
    /// use moved up to `index`. Also whether that use moved, for [`DedupTable::note_use`].
    fn use_window(&mut self, client: ClientId, index: LogIndex) -> (&mut ClientWindow, bool) {
        let known = self.clients.contains_key(&client);
        if !known && self.clients.len() >= CLIENTS_MAX {
            self.evict_oldest();
        }
        // The window grows as the client appends: most clients (a CLI run, a short-lived
        // program) append a few entries, and room for 1,024 up front would be 24 KiB for each of
        // up to 4,096 clients, per log.
        let window = self.clients.entry(client).or_insert_with(|| ClientWindow {
            recent: VecDeque::new(),
            floor: ClientSeq(0),
            settled: ClientSeq(0),
            gaps: Vec::new(),
            low: None,
            last_used: index,
        });
        let moved = !known || index > window.last_used;
        window.last_used = window.last_used.max(index);
        (window, moved)
    }

    /// Records in `order` that `client`'s last entry is now at `last_used` (invariant 3).
    fn note_use(&mut self, client: ClientId, last_used: LogIndex) {
        self.order.push_back((last_used, client));
        if self.order.len() > self.clients.len() + 2 * CLIENTS_MAX {
            let clients = &self.clients;
            self.order.retain(|(used, c)| clients.get(c).is_some_and(|w| w.last_used == *used));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((used, client)) = self.order.pop_front() {
            // A stale entry: the client applied a later entry, or is gone already.
            if self.clients.get(&client).is_some_and(|w| w.last_used == used) {
                self.clients.remove(&client);
                return;
            }
        }
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        for w in self.clients.values() {
            assert!(w.recent.len() <= SEQS_PER_CLIENT);
            assert!(w.recent.iter().zip(w.recent.iter().skip(1)).all(|(a, b)| a.0 < b.0));
            assert!(w.recent.iter().all(|e| e.0 >= w.floor));
            assert!(w.gaps.iter().all(|g| g.0 <= g.1 && g.1 < w.settled));
            assert!(w.gaps.iter().zip(w.gaps.iter().skip(1)).all(|(a, b)| a.1 < b.0));
        }
        assert!(self.clients.len() <= CLIENTS_MAX);
        for (client, w) in &self.clients {
            let live = self.order.iter().filter(|(u, c)| c == client && *u == w.last_used).count();
            assert_eq!(live, 1, "client {client:?} has {live} live entries in the order");
        }
        assert!(self.order.iter().zip(self.order.iter().skip(1)).all(|(a, b)| a.0 <= b.0));
        assert!(self.order.len() <= self.clients.len() + 2 * CLIENTS_MAX + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_client_that_appended_little_holds_little() {
        let mut t = DedupTable::default();
        for client in 0..CLIENTS_MAX as u64 {
            t.record(ClientId(client), ClientSeq(1), LogIndex(client + 1), Term(1));
        }
        let held: usize = t.clients.values().map(|w| w.recent.capacity()).sum();
        assert!(
            held <= CLIENTS_MAX * 8,
            "{held} window slots reserved for {CLIENTS_MAX} clients of one append each"
        );
    }

    /// A client that appended more than its window holds room for the window, not twice that
    /// (a buffer that held one more than the window before dropping the oldest doubled its
    /// room: 48 KiB instead of 24 KiB per client, up to 192 MiB per log).
    #[test]
    fn a_full_window_keeps_no_more_room_than_the_window() {
        let mut t = DedupTable::default();
        for seq in 1..=3 * SEQS_PER_CLIENT as u64 {
            t.record(ClientId(7), ClientSeq(seq), LogIndex(seq), Term(1));
        }
        let window = &t.clients[&ClientId(7)];
        assert_eq!(window.recent.len(), SEQS_PER_CLIENT);
        assert!(
            window.recent.capacity() < 2 * SEQS_PER_CLIENT,
            "room for {} numbers in a window of {SEQS_PER_CLIENT}",
            window.recent.capacity()
        );
        assert_eq!(window.floor, ClientSeq(2 * SEQS_PER_CLIENT as u64 + 1));
    }

    #[test]
    fn retries_are_answered_with_the_first_position() {
        let mut t = DedupTable::default();
        t.record(ClientId(7), ClientSeq(1), LogIndex(10), Term(2));
        t.record(ClientId(7), ClientSeq(1), LogIndex(12), Term(3));
        assert_eq!(
            t.lookup(ClientId(7), ClientSeq(1)),
            Lookup::Applied { index: LogIndex(10), term: Term(2) }
        );
        assert_eq!(t.lookup(ClientId(7), ClientSeq(2)), Lookup::Unknown);
        assert_eq!(t.lookup(ClientId(8), ClientSeq(1)), Lookup::Unknown);
    }

    #[test]
    fn a_gap_filled_later_is_found_and_old_numbers_are_refused() {
        let mut t = DedupTable::default();
        for seq in 0..(SEQS_PER_CLIENT as u64 + 10) {
            if seq != 5 {
                t.record(ClientId(1), ClientSeq(seq), LogIndex(seq + 1), Term(1));
            }
        }
        // The window slid past 5 before it was filled: a retry of 5 is refused, not duplicated.
        assert_eq!(t.lookup(ClientId(1), ClientSeq(5)), Lookup::Forgotten);
        let mut t = DedupTable::default();
        t.record(ClientId(1), ClientSeq(6), LogIndex(1), Term(1));
        t.record(ClientId(1), ClientSeq(5), LogIndex(2), Term(1));
        assert_eq!(
            t.lookup(ClientId(1), ClientSeq(5)),
            Lookup::Applied { index: LogIndex(2), term: Term(1) }
        );
        t.check_invariants();
    }

    /// A follower that starts its log after index 20 learns, per client, the highest number
    /// at or before 20 (or below the floor); retries of those are refused there, not appended.
    #[test]
    fn a_log_start_carries_what_each_client_appended_up_to_it() {
        let mut leader = DedupTable::default();
        // Client 1: numbers 1 to 3 at 10 to 12, 4 at 30; number 5 at 15 (out of order).
        for (seq, index) in [(1, 10), (2, 11), (3, 12), (4, 30), (5, 15)] {
            leader.record(ClientId(1), ClientSeq(seq), LogIndex(index), Term(1));
        }
        // Client 2: only after 20. Client 3: a full window that slid, all after 20.
        leader.record(ClientId(2), ClientSeq(1), LogIndex(25), Term(1));
        for seq in 0..SEQS_PER_CLIENT as u64 + 5 {
            leader.record(ClientId(3), ClientSeq(seq), LogIndex(100 + seq), Term(1));
        }
        let seqs = leader.seqs_through(LogIndex(20), CLIENTS_MAX);
        assert_eq!(seqs, [(ClientId(1), ClientSeq(5)), (ClientId(3), ClientSeq(4))]);
        let mut follower = DedupTable::default();
        follower.record(ClientId(1), ClientSeq(1), LogIndex(10), Term(1));
        follower.raise_floors(&seqs, LogIndex(20));
        follower.check_invariants();
        for seq in 1..=5 {
            assert_eq!(follower.lookup(ClientId(1), ClientSeq(seq)), Lookup::Forgotten, "{seq}");
        }
        assert_eq!(follower.lookup(ClientId(1), ClientSeq(6)), Lookup::Unknown);
        assert_eq!(follower.lookup(ClientId(2), ClientSeq(1)), Lookup::Unknown);
        assert_eq!(follower.lookup(ClientId(3), ClientSeq(4)), Lookup::Forgotten);
        // The entries after 20 arrive by replication and are found as on the leader.
        follower.record(ClientId(1), ClientSeq(4), LogIndex(30), Term(1));
        assert_eq!(follower.lookup(ClientId(1), ClientSeq(4)), Lookup::Forgotten);
        follower.record(ClientId(3), ClientSeq(6), LogIndex(106), Term(1));
        assert_eq!(
            follower.lookup(ClientId(3), ClientSeq(6)),
            Lookup::Applied { index: LogIndex(106), term: Term(1) }
        );
        follower.check_invariants();
    }

    /// Floors for more clients than the table holds: it evicts as it does for records, and the
    /// clients kept are refused their old numbers.
    #[test]
    fn raised_floors_keep_the_table_within_its_clients() {
        let mut t = DedupTable::default();
        for c in 0..10u64 {
            t.record(ClientId(c), ClientSeq(1), LogIndex(c + 1), Term(1));
        }
        let seqs: Vec<_> =
            (100..100 + CLIENTS_MAX as u64).map(|c| (ClientId(c), ClientSeq(9))).collect();
        t.raise_floors(&seqs, LogIndex(50));
        t.check_invariants();
        assert_eq!(t.clients.len(), CLIENTS_MAX);
        assert_eq!(t.lookup(ClientId(0), ClientSeq(1)), Lookup::Unknown, "the oldest went");
        assert_eq!(t.lookup(ClientId(100), ClientSeq(9)), Lookup::Forgotten);
        assert_eq!(t.lookup(ClientId(100), ClientSeq(10)), Lookup::Unknown);
    }

    /// A log start that cannot carry every client carries those whose last entries are
    /// newest, the oldest first.
    #[test]
    fn a_log_start_too_small_for_every_client_carries_the_newest() {
        let mut t = DedupTable::default();
        // Client c's last entry is at 100 - c: client 0 is the newest.
        for c in 0..10u64 {
            t.record(ClientId(c), ClientSeq(c), LogIndex(100 - c), Term(1));
        }
        let seqs = t.seqs_through(LogIndex(200), 3);
        assert_eq!(seqs, [2, 1, 0].map(|c| (ClientId(c), ClientSeq(c))));
        assert_eq!(t.seqs_through(LogIndex(200), 0), []);
        assert_eq!(t.seqs_through(LogIndex(200), 10).len(), 10);
    }

    /// A follower takes every client of a log start at one index, yet forgets them in the order
    /// the leader does (its clients' last entries, oldest first), not by client id: otherwise a
    /// leader and a follower would remember different clients once the table is full.
    #[test]
    fn a_follower_forgets_the_clients_of_a_log_start_as_its_leader_does() {
        let mut leader = DedupTable::default();
        leader.record(ClientId(2), ClientSeq(1), LogIndex(1), Term(1));
        leader.record(ClientId(1), ClientSeq(1), LogIndex(2), Term(1));
        let mut follower = DedupTable::default();
        follower.raise_floors(&leader.seqs_through(LogIndex(10), CLIENTS_MAX), LogIndex(10));
        for table in [&mut leader, &mut follower] {
            for c in 100..100 + CLIENTS_MAX as u64 - 1 {
                table.record(ClientId(c), ClientSeq(1), LogIndex(c), Term(1));
            }
            table.check_invariants();
        }
        // Client 2's last entry is the oldest: both forget it, both keep client 1.
        for table in [&leader, &follower] {
            assert_eq!(table.lookup(ClientId(2), ClientSeq(1)), Lookup::Unknown);
            assert_ne!(table.lookup(ClientId(1), ClientSeq(1)), Lookup::Unknown);
        }
    }

    /// A restart settles what a save held: numbers the entries after the rebuild point show are
    /// answered with their positions, the others up to the save refused but for its gaps, later
    /// ones appended; and the table saved again holds what the first save held.
    #[test]
    fn a_restart_settles_the_saved_numbers() {
        let mut before = DedupTable::default();
        // Client 1: 1 to 10 at 1 to 10 (5 missing, a gap), then 11 at 40. Client 2: 1 at 3.
        for seq in (1..=10).filter(|&s| s != 5) {
            before.record(ClientId(1), ClientSeq(seq), LogIndex(seq), Term(1));
        }
        before.record(ClientId(2), ClientSeq(1), LogIndex(3), Term(1));
        let saved = before.seqs_through(LogIndex(10), CLIENTS_MAX);
        assert_eq!(saved, [(ClientId(2), ClientSeq(1)), (ClientId(1), ClientSeq(10))]);
        let gaps = before.gaps_through(LogIndex(10), &saved, 100);
        assert_eq!(gaps, [(ClientId(1), ClientSeq(5), ClientSeq(5))]);
        before.record(ClientId(1), ClientSeq(11), LogIndex(40), Term(2));
        // Restarted: the save describes the log up to 10, the table is rebuilt from 6.
        let mut after = DedupTable::default();
        after.settle(&saved, &gaps, LogIndex(6), LogIndex(10));
        for seq in 7..=10 {
            after.record(ClientId(1), ClientSeq(seq), LogIndex(seq), Term(1));
        }
        after.record(ClientId(1), ClientSeq(11), LogIndex(40), Term(2));
        after.check_invariants();
        for seq in (1..=6).filter(|&s| s != 5) {
            assert_eq!(after.lookup(ClientId(1), ClientSeq(seq)), Lookup::Forgotten, "{seq}");
        }
        // 5 never committed: its retry is appended, after the restart as before it.
        for seq in [5].into_iter().chain(7..=11).chain([12]) {
            assert_eq!(
                after.lookup(ClientId(1), ClientSeq(seq)),
                before.lookup(ClientId(1), ClientSeq(seq)),
                "{seq}"
            );
        }
        assert_eq!(after.lookup(ClientId(2), ClientSeq(1)), Lookup::Forgotten);
        assert_eq!(after.lookup(ClientId(2), ClientSeq(2)), Lookup::Unknown);
        assert_eq!(after.lookup(ClientId(3), ClientSeq(1)), Lookup::Unknown);
        // Saved again, the settled numbers and the gaps stay: a second restart refuses and
        // appends as the first did.
        let again = after.seqs_through(LogIndex(40), CLIENTS_MAX);
        assert_eq!(again, before.seqs_through(LogIndex(40), CLIENTS_MAX));
        assert_eq!(
            after.gaps_through(LogIndex(40), &again, 100),
            before.gaps_through(LogIndex(40), &again, 100)
        );
        // The clients are forgotten in the order they were before the restart.
        for table in [&mut before, &mut after] {
            for c in 100..100 + CLIENTS_MAX as u64 - 1 {
                table.record(ClientId(c), ClientSeq(1), LogIndex(1000 + c), Term(2));
            }
            table.check_invariants();
            assert_eq!(
                table.lookup(ClientId(2), ClientSeq(1)),
                Lookup::Unknown,
                "client 2 went first"
            );
            assert_ne!(table.lookup(ClientId(1), ClientSeq(11)), Lookup::Unknown);
        }
    }

    /// A save with room for fewer gap ranges than the clients have keeps those of the clients
    /// whose last entries are newest, whole: the others' gaps are refused after a restart,
    /// never appended twice, and a number a later entry holds is no gap.
    #[test]
    fn gaps_that_do_not_fit_a_save_are_refused_after_a_restart() {
        let mut before = DedupTable::default();
        // Client 1 (oldest): 1, 3, 5. Client 2: 1, 4. Client 3 (newest): 3, then 2 after 20.
        for (c, seq, index) in [(1, 1, 1), (1, 3, 2), (1, 5, 3), (2, 1, 4), (2, 4, 5)] {
            before.record(ClientId(c), ClientSeq(seq), LogIndex(index), Term(1));
        }
        before.record(ClientId(3), ClientSeq(3), LogIndex(6), Term(1));
        before.record(ClientId(3), ClientSeq(2), LogIndex(30), Term(1));
        let saved = before.seqs_through(LogIndex(20), CLIENTS_MAX);
        let all = before.gaps_through(LogIndex(20), &saved, usize::MAX);
        let range = |c, first, last| (ClientId(c), ClientSeq(first), ClientSeq(last));
        // Client 3's 1 lies below every number its entries held: no gap (it cannot be told
        // from a number an earlier window of the client held).
        assert_eq!(all, [range(1, 2, 2), range(1, 4, 4), range(2, 2, 3), range(3, 2, 2)]);
        // Room for two: client 3's one and client 2's one; client 1's two do not fit.
        let some = before.gaps_through(LogIndex(20), &saved, 2);
        assert_eq!(some, [range(2, 2, 3), range(3, 2, 2)]);
        let mut after = DedupTable::default();
        after.settle(&saved, &some, LogIndex(20), LogIndex(20));
        after.record(ClientId(3), ClientSeq(2), LogIndex(30), Term(1));
        after.check_invariants();
        for seq in 0..=5 {
            assert_eq!(after.lookup(ClientId(1), ClientSeq(seq)), Lookup::Forgotten, "{seq}");
        }
        for seq in [2, 3] {
            assert_eq!(after.lookup(ClientId(2), ClientSeq(seq)), Lookup::Unknown, "{seq}");
        }
        assert_eq!(after.lookup(ClientId(2), ClientSeq(1)), Lookup::Forgotten);
        assert_eq!(after.lookup(ClientId(3), ClientSeq(1)), Lookup::Forgotten);
        assert!(matches!(after.lookup(ClientId(3), ClientSeq(2)), Lookup::Applied { .. }));
        // Ranges from the file that overlap, come unsorted, or run past the saved number are
        // merged and trimmed, not trusted.
        let mut odd = DedupTable::default();
        let ranges = [range(2, 3, 3), range(2, 0, 2), range(2, 9, 2), range(2, 4, 40)];
        odd.settle(&[(ClientId(2), ClientSeq(4))], &ranges, LogIndex(20), LogIndex(20));
        odd.check_invariants();
        assert_eq!(odd.clients[&ClientId(2)].gaps, [(ClientSeq(0), ClientSeq(3))]);
        assert_eq!(odd.lookup(ClientId(2), ClientSeq(4)), Lookup::Forgotten);
    }

    fn save(t: &DedupTable, through: u64) -> (Vec<(ClientId, ClientSeq)>, Vec<GapRange>) {
        let seqs = t.seqs_through(LogIndex(through), CLIENTS_MAX);
        let gaps = t.gaps_through(LogIndex(through), &seqs, crate::storage::CLIENT_SEQS_GAPS_MAX);
        (seqs, gaps)
    }

    /// A client the table forgot and that came back has a window that knows nothing of its
    /// earlier entries: a save calls none of the numbers below its new ones a gap, so a restart
    /// refuses them (the live table, which forgot the client, would append them again).
    /// (Review of the gaps: the save called 1 to 9 a gap, and a restart appended 1 to 5 twice.)
    #[test]
    fn a_save_calls_no_number_of_a_forgotten_window_a_gap() {
        let mut t = DedupTable::default();
        let c = ClientId(1);
        for s in 1..=5u64 {
            t.record(c, ClientSeq(s), LogIndex(s), Term(1));
        }
        // 4,096 other clients push client 1 out; then it appends 10.
        for i in 0..CLIENTS_MAX as u64 {
            t.record(ClientId(1000 + i), ClientSeq(1), LogIndex(6 + i), Term(1));
        }
        let through = 6 + CLIENTS_MAX as u64;
        t.record(c, ClientSeq(10), LogIndex(through), Term(1));
        let (seqs, gaps) = save(&t, through);
        assert!(gaps.iter().all(|g| g.0 != c), "gaps of client 1: {gaps:?}");
        let mut restarted = DedupTable::default();
        restarted.settle(&seqs, &gaps, LogIndex(through), LogIndex(through));
        for s in 1..=9u64 {
            assert_eq!(restarted.lookup(c, ClientSeq(s)), Lookup::Forgotten, "{s}");
        }
    }

    /// The rebuild after a restart does not record, up to the save, a client the save does not
    /// name (the table had forgotten it by then): recording it would push out a client the save
    /// kept, and each of those, replayed, the next one, so pairs applied before the rebuild's
    /// start would be taken for new ones. (Review of the gaps; the cascade predates them.)
    #[test]
    fn the_rebuild_does_not_push_out_a_client_the_save_kept() {
        let n = CLIENTS_MAX as u64 - 1;
        let x = |i: u64| ClientId(100 + i);
        let (c, late) = (ClientId(1), ClientId(2));
        let mut ops: Vec<(ClientId, u64)> = Vec::new();
        for i in 0..n {
            ops.push((x(i), 1)); // indexes 1 to 4,095
        }
        ops.push((c, 1)); // 4,096: the table is full
        let at = ops.len() as u64;
        ops.push((c, 2));
        for i in 0..n {
            ops.push((x(i), 2)); // client 1's last entry is now the oldest
        }
        ops.push((late, 1)); // pushes client 1 out
        let through = ops.len() as u64;
        ops.push((ClientId(3), 1)); // after the save: a new client pushes out the oldest
        let mut live = DedupTable::default();
        for (i, &(client, s)) in ops.iter().enumerate() {
            live.record(client, ClientSeq(s), LogIndex(i as u64 + 1), Term(1));
        }
        let (seqs, gaps) = save(&live, through);
        assert!(!seqs.iter().any(|&(client, _)| client == c), "client 1 went by the save");
        let mut restarted = DedupTable::default();
        restarted.settle(&seqs, &gaps, LogIndex(at), LogIndex(through));
        for (i, &(client, s)) in ops.iter().enumerate().skip(at as usize) {
            restarted.record(client, ClientSeq(s), LogIndex(i as u64 + 1), Term(1));
        }
        restarted.check_invariants();
        let mut remembered: Vec<_> = restarted.clients.keys().copied().collect();
        let mut expected: Vec<_> = live.clients.keys().copied().collect();
        remembered.sort_unstable();
        expected.sort_unstable();
        assert_eq!(remembered, expected, "the restarted table remembers other clients");
        for i in 1..n {
            assert_ne!(restarted.lookup(x(i), ClientSeq(1)), Lookup::Unknown, "client {i}");
        }
    }

    #[test]
    fn the_client_with_the_oldest_entry_is_evicted() {
        let mut t = DedupTable::default();
        for c in 0..CLIENTS_MAX as u64 {
            t.record(ClientId(c), ClientSeq(0), LogIndex(c + 1), Term(1));
        }
        t.record(ClientId(0), ClientSeq(1), LogIndex(1_000_000), Term(1));
        t.record(ClientId(99_999), ClientSeq(0), LogIndex(1_000_001), Term(1));
        assert_eq!(t.lookup(ClientId(1), ClientSeq(0)), Lookup::Unknown);
        assert!(matches!(t.lookup(ClientId(0), ClientSeq(0)), Lookup::Applied { .. }));
        t.check_invariants();
    }

    /// Against the plain rule (evict the client whose last entry is oldest, found by a scan),
    /// over many more clients than the table keeps, with clients coming back: the same clients
    /// are remembered after every step.
    #[test]
    fn the_order_evicts_as_a_scan_for_the_oldest_client_would() {
        let mut table = DedupTable::default();
        let mut model: HashMap<u64, LogIndex> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 1..=30_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half the records come from a small set of busy clients, half from many others.
            let v = x >> 1;
            let client = if x.is_multiple_of(2) { v % 64 } else { 64 + v % 7_000 };
            let index = LogIndex(i);
            table.record(ClientId(client), ClientSeq(i), index, Term(1));
            if !model.contains_key(&client) && model.len() >= CLIENTS_MAX {
                let oldest = model.iter().min_by_key(|(_, used)| **used).map(|(c, _)| *c);
                model.remove(&oldest.unwrap());
            }
            model.insert(client, index);
            if i.is_multiple_of(97) || i == 30_000 {
                let mut remembered: Vec<u64> = table.clients.keys().map(|c| c.0).collect();
                let mut expected: Vec<u64> = model.keys().copied().collect();
                remembered.sort_unstable();
                expected.sort_unstable();
                assert_eq!(remembered, expected, "after {i} records");
            }
        }
        table.check_invariants();
        // 7,064 clients were seen: the table filled, and clients were evicted.
        assert_eq!(model.len(), CLIENTS_MAX);
    }

    proptest! {
        /// A follower whose log a leader's log start replaced (after `through`; it had applied
        /// up to `old` before) and which then applies what follows: with sequence numbers in any
        /// order, no pair the leader applied at or before `through` is taken for a new one
        /// there, and a retry is only ever answered with the pair's first position.
        #[test]
        fn a_follower_that_started_over_takes_no_old_pair_for_a_new_one(
            ops in proptest::collection::vec((0u64..4, 0u64..1500), 1..1500),
            through in 0usize..1500,
            old in 0usize..1500,
        ) {
            let through = through.min(ops.len());
            let old = old.min(through);
            let mut leader = DedupTable::default();
            let mut follower = DedupTable::default();
            let mut first: HashMap<(u64, u64), LogIndex> = HashMap::new();
            for (i, (c, s)) in ops.iter().enumerate() {
                let index = LogIndex(i as u64 + 1);
                leader.record(ClientId(*c), ClientSeq(*s), index, Term(1));
                if i < old {
                    follower.record(ClientId(*c), ClientSeq(*s), index, Term(1));
                }
                first.entry((*c, *s)).or_insert(index);
            }
            let at = LogIndex(through as u64);
            follower.raise_floors(&leader.seqs_through(at, CLIENTS_MAX), at);
            for (i, (c, s)) in ops.iter().enumerate().skip(through) {
                follower.record(ClientId(*c), ClientSeq(*s), LogIndex(i as u64 + 1), Term(1));
            }
            follower.check_invariants();
            for (c, s) in &ops[..through] {
                let found = follower.lookup(ClientId(*c), ClientSeq(*s));
                prop_assert_ne!(found, Lookup::Unknown, "client {} seq {}", c, s);
            }
            for (&(c, s), &index) in &first {
                if let Lookup::Applied { index: found, .. } = follower.lookup(ClientId(c), ClientSeq(s)) {
                    prop_assert_eq!(found, index, "client {} seq {}", c, s);
                }
            }
        }

        /// A restart that finds the clients' numbers saved through `through` and rebuilds the
        /// table from `at` (at or before it): with sequence numbers in any order, no pair applied
        /// at or before `through` is taken for a new one, a retry is only ever answered with
        /// one of the pair's positions (the first one when it lies after `at`: a pair applied
        /// twice before it, a retry the table had forgotten, is answered with its second), and
        /// the table saved again settles at least what the first save did.
        #[test]
        fn a_restarted_table_takes_no_old_pair_for_a_new_one(
            ops in proptest::collection::vec((0u64..4, 0u64..1500), 1..1500),
            through in 0usize..1500,
            at in 0usize..1500,
        ) {
            let through = through.min(ops.len());
            let at = at.min(through);
            let mut live = DedupTable::default();
            let mut positions: HashMap<(u64, u64), Vec<LogIndex>> = HashMap::new();
            let mut saved = Vec::new();
            let mut live_at_through = DedupTable::default();
            for (i, (c, s)) in ops.iter().enumerate() {
                if i == through {
                    saved = live.seqs_through(LogIndex(through as u64), CLIENTS_MAX);
                    live_at_through = live.clone();
                }
                let index = LogIndex(i as u64 + 1);
                live.record(ClientId(*c), ClientSeq(*s), index, Term(1));
                positions.entry((*c, *s)).or_default().push(index);
            }
            if through == ops.len() {
                saved = live.seqs_through(LogIndex(through as u64), CLIENTS_MAX);
                live_at_through = live.clone();
            }
            let gaps = live_at_through.gaps_through(LogIndex(through as u64), &saved, usize::MAX);
            let mut restarted = DedupTable::default();
            restarted.settle(&saved, &gaps, LogIndex(at as u64), LogIndex(through as u64));
            for (i, (c, s)) in ops.iter().enumerate().skip(at) {
                restarted.record(ClientId(*c), ClientSeq(*s), LogIndex(i as u64 + 1), Term(1));
            }
            restarted.check_invariants();
            for (c, s) in &ops[..through] {
                let found = restarted.lookup(ClientId(*c), ClientSeq(*s));
                prop_assert_ne!(found, Lookup::Unknown, "client {} seq {}", c, s);
            }
            for (&(c, s), at_positions) in &positions {
                let first = at_positions[0];
                if let Lookup::Applied { index: found, .. } = restarted.lookup(ClientId(c), ClientSeq(s)) {
                    prop_assert!(at_positions.contains(&found), "client {} seq {}", c, s);
                    if first.get() > at as u64 {
                        prop_assert_eq!(found, first, "client {} seq {}", c, s);
                    }
                }
                let before = live.lookup(ClientId(c), ClientSeq(s));
                if first.get() > at as u64 && matches!(before, Lookup::Applied { .. }) {
                    // What the rebuild scanned is answered with its position, as before.
                    prop_assert_eq!(restarted.lookup(ClientId(c), ClientSeq(s)), before);
                }
            }
            // A number never applied that the table appended before the restart, it appends
            // after it, unless it lies below every number the client's entries held by
            // `through` (every gap fitted in the save here).
            let mut low: HashMap<u64, u64> = HashMap::new();
            for (c, s) in &ops[..through] {
                low.entry(*c).and_modify(|l| *l = (*l).min(*s)).or_insert(*s);
            }
            for c in 0..4u64 {
                for s in 0..1500u64 {
                    let above_low = low.get(&c).is_none_or(|&l| s >= l);
                    if above_low && !positions.contains_key(&(c, s)) && live.lookup(ClientId(c), ClientSeq(s)) == Lookup::Unknown {
                        prop_assert_eq!(restarted.lookup(ClientId(c), ClientSeq(s)), Lookup::Unknown, "client {} seq {}", c, s);
                    }
                }
            }
            let again: HashMap<_, _> = restarted.seqs_through(LogIndex(ops.len() as u64), CLIENTS_MAX).into_iter().collect();
            for (c, s) in &saved {
                prop_assert!(again.get(c).is_some_and(|a| a >= s), "client {:?}", c);
            }
        }

        /// Against a model that remembers everything: the table never answers a retry with a
        /// position other than the first one recorded, never claims an unrecorded pair, and
        /// remembers at least the last `SEQS_PER_CLIENT` numbers of each client.
        #[test]
        fn never_a_wrong_answer(ops in proptest::collection::vec((0u64..4, 0u64..3000), 1..1500)) {
            let mut table = DedupTable::default();
            let mut model: HashMap<(u64, u64), LogIndex> = HashMap::new();
            let mut per_client: HashMap<u64, Vec<u64>> = HashMap::new();
            for (i, (c, s)) in ops.iter().enumerate() {
                let index = LogIndex(i as u64 + 1);
                table.record(ClientId(*c), ClientSeq(*s), index, Term(1));
                model.entry((*c, *s)).or_insert(index);
                per_client.entry(*c).or_default().push(*s);
            }
            table.check_invariants();
            for c in 0..4u64 {
                for s in 0..3000u64 {
                    match table.lookup(ClientId(c), ClientSeq(s)) {
                        Lookup::Applied { index, .. } => {
                            prop_assert_eq!(Some(&index), model.get(&(c, s)));
                        }
                        Lookup::Forgotten | Lookup::Unknown => {}
                    }
                }
                // Remembered: the largest numbers recorded, as many as the window holds.
                let mut seqs = per_client.get(&c).cloned().unwrap_or_default();
                seqs.sort_unstable();
                seqs.dedup();
                for s in seqs.iter().rev().take(SEQS_PER_CLIENT) {
                    let found = matches!(table.lookup(ClientId(c), ClientSeq(*s)), Lookup::Applied { .. });
                    prop_assert!(found, "client {} seq {} forgotten too early", c, s);
                }
            }
        }
    }

    /// A save's pairs, gaps and `through`.
    type Saved = (Vec<(ClientId, ClientSeq)>, Vec<GapRange>, u64);

    /// A table's (client, seq) after a restart from `save`, rebuilt from `at`.
    fn restart_from(save: &Saved, at: u64, log: &[(ClientId, ClientSeq, u64)]) -> DedupTable {
        let (seqs, gaps, through) = save;
        let mut t = DedupTable::default();
        t.settle(seqs, gaps, LogIndex(at), LogIndex(*through));
        for &(c, s, i) in log.iter().filter(|e| e.2 > at) {
            t.record(c, s, LogIndex(i), Term(1));
        }
        t
    }

    fn save_at(t: &DedupTable, through: u64) -> Saved {
        let (seqs, gaps) = save(t, through);
        (seqs, gaps, through)
    }

    /// Saved clients all take the rebuild's first index; a second save keeps them in the order
    /// the table (and the live one) forgets them, so a second restart forgets the client the
    /// live table forgets. (A save used to order those ties by client id.)
    #[test]
    fn a_second_restart_forgets_clients_in_the_live_order() {
        let (a, b) = (ClientId(1), ClientId(2));
        let mut log = vec![(b, ClientSeq(1), 1u64), (a, ClientSeq(1), 2)];
        for i in 0..CLIENTS_MAX as u64 - 2 {
            log.push((ClientId(100 + i), ClientSeq(1), 3 + i));
        }
        let through = log.len() as u64; // 4,096: the table is full, B the oldest
        let mut live = DedupTable::default();
        for &(c, s, i) in &log {
            live.record(c, s, LogIndex(i), Term(1));
        }
        let first = restart_from(&save_at(&live, through), through, &log);
        let mut second = restart_from(&save_at(&first, through), through, &log);
        let mut first = first;
        // A new client: the live table forgets B, its oldest.
        for t in [&mut live, &mut first, &mut second] {
            t.record(ClientId(99_999), ClientSeq(1), LogIndex(through + 1), Term(1));
        }
        assert!(matches!(live.lookup(a, ClientSeq(1)), Lookup::Applied { .. }));
        assert_eq!(first.lookup(a, ClientSeq(1)), Lookup::Forgotten);
        assert_eq!(second.lookup(a, ClientSeq(1)), Lookup::Forgotten, "second restart");
    }

    /// A follower's log start gives its clients one index in the leader's order; the save the
    /// follower makes at that index keeps that order, so the restarted follower forgets the
    /// client the live one (and the leader) forgets.
    #[test]
    fn a_save_after_a_log_start_keeps_the_leaders_order() {
        let (a, b) = (ClientId(1), ClientId(2));
        let mut follower = DedupTable::default();
        // The leader forgets B before A.
        follower.raise_floors(&[(b, ClientSeq(5)), (a, ClientSeq(5))], LogIndex(10));
        let mut log = Vec::new();
        for i in 0..CLIENTS_MAX as u64 - 2 {
            log.push((ClientId(100 + i), ClientSeq(1), 11 + i));
        }
        for &(c, s, i) in &log {
            follower.record(c, s, LogIndex(i), Term(1));
        }
        let through = 10 + CLIENTS_MAX as u64 - 2;
        let mut restarted = restart_from(&save_at(&follower, through), through, &log);
        for t in [&mut follower, &mut restarted] {
            t.record(ClientId(99_999), ClientSeq(1), LogIndex(through + 1), Term(1));
        }
        assert_eq!(follower.lookup(a, ClientSeq(5)), Lookup::Forgotten);
        assert_eq!(restarted.lookup(a, ClientSeq(5)), Lookup::Forgotten, "restarted");
    }

    #[derive(Clone, Debug)]
    enum ModelOp {
        Rec(u64, u64),
        Burst(u64, u16),
        Fill(u16),
        Save,
        Restart(u8),
        LogStart(Vec<(u64, u64)>),
    }

    fn model_op() -> impl Strategy<Value = ModelOp> {
        prop_oneof![
            6 => (0u64..6, 0u64..16).prop_map(|(c, s)| ModelOp::Rec(c, s)),
            1 => (0u64..6, 1000u16..1100).prop_map(|(c, n)| ModelOp::Burst(c, n)),
            4 => (1u16..4300).prop_map(ModelOp::Fill),
            3 => Just(ModelOp::Save),
            3 => (0u8..=100).prop_map(ModelOp::Restart),
            1 => proptest::collection::vec((0u64..6, 0u64..40), 0..4).prop_map(ModelOp::LogStart),
        ]
    }

    /// Model: one replica's live table (never restarted) and the same replica restarted at
    /// random from its latest save (made by the current, possibly restarted, table at the
    /// applied index, as `Replica` does), rebuilt from a random `at` (after the last log start,
    /// up to the save's `through`); 6 busy clients and a pool of 6,000 others cycled in a
    /// scrambled id order, so clients are forgotten. After every step: (1) a pair applied at or
    /// before the restart's save is Unknown to the restarted table only when the live one says
    /// Unknown too; (2) what the live table answers with a position after the rebuild's start,
    /// the restarted one answers with the same.
    /// The model's log and the replica's two tables: `live`, never restarted, and `cur`, the
    /// same replica as restarts left it.
    struct Model {
        log: Vec<(ClientId, ClientSeq, u64)>,
        /// Each pair's first index.
        first: HashMap<(ClientId, ClientSeq), u64>,
        index: u64,
        live: DedupTable,
        cur: DedupTable,
    }

    impl Model {
        /// Puts `(c, s)` at the next index of the log; returns the index.
        fn push(&mut self, c: ClientId, s: ClientSeq) -> u64 {
            self.index += 1;
            self.log.push((c, s, self.index));
            self.first.entry((c, s)).or_insert(self.index);
            self.index
        }

        /// Puts `(c, s)` in the log and has both tables apply it.
        fn apply(&mut self, c: ClientId, s: ClientSeq) {
            let index = LogIndex(self.push(c, s));
            self.live.record(c, s, index, Term(1));
            self.cur.record(c, s, index, Term(1));
        }
    }

    fn run_model(ops: &[ModelOp]) -> Result<(), TestCaseError> {
        const POOL: u64 = 6000;
        let mut m = Model {
            log: Vec::new(),
            first: HashMap::new(),
            index: 0,
            live: DedupTable::default(),
            cur: DedupTable::default(),
        };
        let mut saved: Option<Saved> = None;
        let mut log_floor = 0u64;
        let mut restarted: Option<(u64, u64)> = None;
        let mut cursor = 0u64;
        let mut burst_seq = [100u64; 6];
        for (step, op) in ops.iter().enumerate() {
            match op {
                ModelOp::Rec(c, s) => m.apply(ClientId(*c), ClientSeq(*s)),
                ModelOp::Burst(c, n) => {
                    for _ in 0..*n {
                        burst_seq[*c as usize] += 1;
                        m.apply(ClientId(*c), ClientSeq(burst_seq[*c as usize]));
                    }
                }
                ModelOp::Fill(k) => {
                    for _ in 0..*k {
                        let id = ClientId(1000 + (cursor % POOL) * 7919 % POOL);
                        let s = ClientSeq(cursor / POOL + 1);
                        cursor += 1;
                        m.apply(id, s);
                    }
                }
                ModelOp::Save => saved = Some(save_at(&m.cur, m.index)),
                ModelOp::Restart(frac) => {
                    let Some(save) = &saved else { continue };
                    let through = save.2;
                    let at = log_floor + (through - log_floor) * u64::from(*frac) / 100;
                    m.cur = restart_from(save, at, &m.log);
                    restarted = Some((at, through));
                }
                ModelOp::LogStart(extra) => {
                    // The leader applied what this replica has, then `extra`; its log starts after.
                    let mut leader = m.live.clone();
                    for &(c, s) in extra {
                        let index = m.push(ClientId(c), ClientSeq(s));
                        leader.record(ClientId(c), ClientSeq(s), LogIndex(index), Term(1));
                    }
                    m.index += 1;
                    let start = LogIndex(m.index);
                    let seqs = leader.seqs_through(start, CLIENTS_MAX);
                    m.live.raise_floors(&seqs, start);
                    m.cur.raise_floors(&seqs, start);
                    saved = Some(save_at(&m.cur, m.index));
                    log_floor = m.index;
                }
            }
            let Some((at, through)) = restarted else { continue };
            for (&(c, s), &i) in &m.first {
                let (l, r) = (m.live.lookup(c, s), m.cur.lookup(c, s));
                if i <= through && r == Lookup::Unknown {
                    prop_assert_eq!(
                        l,
                        Lookup::Unknown,
                        "step {} {:?}: {:?} {:?} (first at {}) applied by the save through {}",
                        step,
                        op,
                        c,
                        s,
                        i,
                        through
                    );
                }
                if let Lookup::Applied { index: li, .. } = l {
                    if li.get() > through {
                        prop_assert_eq!(
                            r,
                            l,
                            "step {} {:?}: {:?} {:?} (rebuilt from {}, save through {})",
                            step,
                            op,
                            c,
                            s,
                            at,
                            through
                        );
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        // Each case replays up to tens of thousands of entries: 48 cases in the test run;
        // `DEDUP_MODEL_CASES` for more.
        #![proptest_config(ProptestConfig { cases: std::env::var("DEDUP_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48), ..ProptestConfig::default() })]
        #[test]
        fn a_restarted_table_forgets_no_pair_the_live_one_knows(
            ops in proptest::collection::vec(model_op(), 1..30),
        ) {
            run_model(&ops)?;
        }
    }
}
