//! The search for one key: Wing & Gong's algorithm with Lowe's
//! memoization, over a doubly linked list of call and return entries (the
//! formulation of Porcupine).
//!
//! The entries are sorted by time. Scanning from the head, every call
//! entry met before the first return entry is an op that may be linearized
//! now (all ops that must precede it have been). Linearizing one applies it
//! to the model, lifts its call and return entries out of the list and
//! restarts the scan; meeting a return entry means that op can no longer be
//! placed, so the last choice is undone (backtracking). A configuration —
//! the set of linearized ops and the register value — already explored is
//! not explored again.

use std::collections::HashSet;

use foldhash::fast::FixedState;

use crate::history::{Op, OpKind, Outcome};
use crate::model::{step, State};

const NIL: usize = usize::MAX;

/// Why the search stopped without finding an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable {
        configurations: u64,
    },
    /// No order exists. `op` (an index into the searched ops) is the op
    /// that the longest linearizable prefix found could not be extended
    /// with; `states` are register values that prefix could end in.
    Violation {
        op: usize,
        linearized: usize,
        states: Vec<State>,
        configurations: u64,
    },
    /// The budget ran out first.
    TooHard {
        configurations: u64,
    },
}

/// The ops of one key that constrain anything: failed ops and unknown reads
/// are dropped (no effect, nothing observed).
pub fn relevant<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    ops.iter()
        .copied()
        .filter(|o| match o.outcome {
            Outcome::Ok(_) => true,
            Outcome::Fail => false,
            Outcome::Unknown => o.is_write(),
        })
        .collect()
}

struct Search<'a> {
    ops: &'a [&'a Op],
    /// Per entry: its op, whether it is the call (else the return), and the
    /// index of the op's other entry.
    entry_op: Vec<usize>,
    is_call: Vec<bool>,
    partner: Vec<usize>,
    /// The list; `head` is a sentinel before the first entry.
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    /// Random 128-bit value per op: the linearized set's hash is the XOR of
    /// its members' values (Zobrist hashing).
    zobrist: Vec<u128>,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unknown(op: &Op) -> bool {
    op.outcome == Outcome::Unknown
}

impl<'a> Search<'a> {
    fn new(ops: &'a [&'a Op]) -> Self {
        // (time, 0 = call / 1 = return, op): a call at the same instant as a
        // return counts as concurrent with it (the conservative reading).
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, o) in ops.iter().enumerate() {
            order.push((o.invoke_ns, 0, i));
            let ret = if unknown(o) { u64::MAX } else { o.complete_ns.expect("validated").max(o.invoke_ns) };
            order.push((ret, 1, i));
        }
        order.sort_unstable();
        let m = order.len();
        let (mut entry_op, mut is_call, mut partner) = (vec![0; m], vec![false; m], vec![NIL; m]);
        let mut call_of = vec![NIL; ops.len()];
        for (e, &(_, kind, i)) in order.iter().enumerate() {
            entry_op[e] = i;
            is_call[e] = kind == 0;
            if kind == 0 {
                call_of[i] = e;
            } else {
                partner[e] = call_of[i];
                partner[call_of[i]] = e;
            }
        }
        // Entries in sorted order, then `head`: a sentinel before entry 0.
        let head = m;
        let mut next: Vec<usize> = (0..=m).map(|e| if e + 1 < m { e + 1 } else { NIL }).collect();
        let mut prev: Vec<usize> = (0..=m).map(|e| e.wrapping_sub(1)).collect();
        next[head] = if m == 0 { NIL } else { 0 };
        prev[head] = NIL;
        if m > 0 {
            prev[0] = head;
        }
        let mut seed = 0x5eed_u64;
        let zobrist = (0..ops.len()).map(|_| u128::from(splitmix(&mut seed)) << 64 | u128::from(splitmix(&mut seed))).collect();
        Search { ops, entry_op, is_call, partner, next, prev, head, zobrist }
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NIL {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.partner[call]);
    }

    fn unlift(&mut self, call: usize) {
        self.relink(self.partner[call]);
        self.relink(call);
    }

    /// Effects of the unknown ops met from the head up to and including
    /// `upto` (all of them calls: a scan never passes a return).
    fn passed_unknowns(&self, upto: usize, out: &mut Vec<OpKind>) {
        out.clear();
        let mut e = self.next[self.head];
        loop {
            let op = self.ops[self.entry_op[e]];
            if unknown(op) {
                out.push(op.kind);
            }
            if e == upto {
                return;
            }
            e = self.next[e];
        }
    }

    fn run(mut self, configurations_max: u64) -> Verdict {
        let known = self.ops.iter().filter(|o| !unknown(o)).count();
        let mut remaining = known;
        let mut seen: HashSet<(u128, State), FixedState> = HashSet::with_hasher(FixedState::default());
        let mut stack: Vec<(usize, State, u128)> = Vec::new();
        let (mut state, mut hash): (State, u128) = (None, 0);
        // Unknown writes passed over since the scan began: an equal one
        // met later would only repeat their search (see the crate docs).
        let mut passed: Vec<OpKind> = Vec::new();
        // The longest prefix found, for the report.
        let (mut best, mut blocker, mut states) = (0usize, NIL, Vec::<State>::new());
        let mut e = self.next[self.head];
        loop {
            if remaining == 0 {
                return Verdict::Linearizable { configurations: seen.len() as u64 };
            }
            // Some op with a known outcome is left, and its return entry is
            // in the list: a scan always meets a return before the end.
            debug_assert_ne!(e, NIL);
            let i = self.entry_op[e];
            let op = self.ops[i];
            if self.is_call[e] {
                let is_unknown = unknown(op);
                if !(is_unknown && passed.contains(&op.kind)) {
                    if let Some(next_state) = step(state, op.kind, op.outcome) {
                        let next_hash = hash ^ self.zobrist[i];
                        if seen.insert((next_hash, next_state)) {
                            if seen.len() as u64 > configurations_max {
                                return Verdict::TooHard { configurations: seen.len() as u64 };
                            }
                            stack.push((e, state, hash));
                            (state, hash) = (next_state, next_hash);
                            self.lift(e);
                            remaining -= usize::from(!is_unknown);
                            passed.clear();
                            e = self.next[self.head];
                            continue;
                        }
                    }
                }
                if is_unknown {
                    passed.push(op.kind);
                }
                e = self.next[e];
            } else {
                let linearized = known - remaining;
                if linearized > best || blocker == NIL {
                    (best, blocker) = (linearized, i);
                    states.clear();
                }
                if linearized == best && i == blocker && states.len() < 8 && !states.contains(&state) {
                    states.push(state);
                }
                let Some((call, s, h)) = stack.pop() else {
                    return Verdict::Violation { op: blocker, linearized: best, states, configurations: seen.len() as u64 };
                };
                (state, hash) = (s, h);
                self.unlift(call);
                remaining += usize::from(!unknown(self.ops[self.entry_op[call]]));
                self.passed_unknowns(call, &mut passed);
                e = self.next[call];
            }
        }
    }
}

/// Searches for a linearization of `ops` (the relevant ops of one key).
pub fn search(ops: &[&Op], configurations_max: u64) -> Verdict {
    Search::new(ops).run(configurations_max)
}

/// A small set of ops that shows why `blocked` cannot be placed: it, the
/// ops concurrent with it, the last writes that completed before it began,
/// the writes that could have produced the value it observed, and the
/// unknown writes that were in flight. In invocation order.
pub fn window(ops: &[&Op], blocked: &Op) -> Vec<Op> {
    let start = blocked.invoke_ns;
    let end = blocked.complete_ns.unwrap_or(u64::MAX);
    let done = |o: &Op| if unknown(o) { u64::MAX } else { o.complete_ns.unwrap_or(u64::MAX) };
    let mut pick: Vec<&Op> = vec![blocked];
    // Concurrent with it.
    pick.extend(ops.iter().copied().filter(|o| !unknown(o) && o.invoke_ns <= end && done(o) >= start));
    // The last two writes known to precede it.
    let mut before: Vec<&Op> = ops.iter().copied().filter(|o| o.is_write() && !unknown(o) && done(o) < start).collect();
    before.sort_by_key(|o| std::cmp::Reverse(done(o)));
    pick.extend(before.iter().take(2));
    // Where the value it saw could have come from.
    if let Outcome::Ok(Some(v)) = blocked.outcome {
        let mut sources: Vec<&Op> = ops
            .iter()
            .copied()
            .filter(|o| o.kind == OpKind::Set(v) || (o.kind == OpKind::Incr && o.outcome == Outcome::Ok(Some(v))))
            .collect();
        sources.sort_by_key(|o| o.invoke_ns.abs_diff(start));
        pick.extend(sources.iter().take(2));
    }
    // The latest unknown writes invoked before it completed.
    let mut unknowns: Vec<&Op> = ops.iter().copied().filter(|o| unknown(o) && o.invoke_ns <= end).collect();
    unknowns.sort_by_key(|o| std::cmp::Reverse(o.invoke_ns));
    pick.extend(unknowns.iter().take(3));
    let mut out: Vec<Op> = Vec::new();
    for o in pick {
        if !out.contains(o) {
            out.push(o.clone());
        }
    }
    out.sort_by_key(|o| (o.invoke_ns, o.client));
    out.truncate(24);
    out
}
