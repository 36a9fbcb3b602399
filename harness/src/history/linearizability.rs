//! Linearizability of a register history, key by key (a history is linearizable when each
//! key's is: P-compositionality). For one key, a depth-first search looks for an order of
//! the operations that respects real time (an operation answered before another was called
//! comes first) and the register's rules (a read sees the last write, a compare-and-set
//! succeeds exactly when the value matches), remembering the (operations placed, value)
//! pairs already explored so that no state is searched twice. An operation without an
//! answer may take effect at any time after its call, or never; its result constrains
//! nothing.
//!
//! Hand-written rather than a crate: stateright's tester checks histories of its own model
//! types, and no maintained crate checks etcd-shaped histories; the search is a few dozen
//! lines. When a key's history cannot be ordered, the finding names the operations that the
//! deepest order could not be extended with: the shortest window that shows the violation.
//!
//! The search is bounded: a key whose search explores more than [`STATE_BUDGET`] states
//! beyond its operations is reported undecided (neither explained nor refuted), so that a
//! pathological history ends the check with a finding instead of exhausting the machine.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::{Operation, Request, Response};

/// A key whose history no order explains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub key: String,
    /// Operations of the key's history.
    pub operations: usize,
    /// The most operations any order placed before it got stuck.
    pub placed: usize,
    /// The value the register held at that point (None: absent).
    pub value_there: Option<String>,
    /// The operations that could have come next there, and none of which fits, as lines
    /// for people: the window of the violation.
    pub window: Vec<String>,
}

/// States (operations placed, value) a key's search may explore beyond one per operation
/// before the key is reported undecided: some hundreds of megabytes at the most.
pub const STATE_BUDGET: usize = 2_000_000;

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub keys: usize,
    pub operations: usize,
    pub violations: Vec<Violation>,
    /// Keys whose search spent [`STATE_BUDGET`] without an answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecided: Vec<String>,
}

impl Verdict {
    /// Every key explained by an order (none refuted, none undecided).
    pub fn linearizable(&self) -> bool {
        self.violations.is_empty() && self.undecided.is_empty()
    }
}

/// What the search found for one key.
enum KeyVerdict {
    Explained,
    Refuted(Violation),
    Undecided,
}

/// Checks every key of `history`; `initial` is each key's value before the history (None:
/// absent; keys not listed start absent).
pub fn check(history: &[Operation], initial: &BTreeMap<String, String>) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let (mut violations, mut undecided) = (Vec::new(), Vec::new());
    for (key, ops) in &by_key {
        match check_key(key, ops, initial.get(*key).cloned(), STATE_BUDGET) {
            KeyVerdict::Explained => {}
            KeyVerdict::Refuted(violation) => violations.push(violation),
            KeyVerdict::Undecided => undecided.push(key.to_string()),
        }
    }
    Verdict {
        keys: by_key.len(),
        operations: history.len(),
        violations,
        undecided,
    }
}

/// The register's value after `op` when it can take effect on `value` with the answer it
/// got; None when it cannot.
fn apply(value: &Option<String>, op: &Operation) -> Option<Option<String>> {
    let unknown = op.response == Response::Unknown;
    match (&op.request, &op.response) {
        (Request::Put { value: new }, Response::Done) => Some(Some(new.clone())),
        (Request::Delete, Response::Done) => Some(None),
        (Request::Get, Response::Read { value: seen }) => (seen == value).then(|| value.clone()),
        (Request::Get, Response::Unknown) => Some(value.clone()),
        // A serializable read may be stale: it fits anywhere and changes nothing.
        (Request::SerializableGet, _) => Some(value.clone()),
        (Request::CompareAndSet { expected, new }, Response::Swapped { succeeded }) => {
            match (expected == value, *succeeded) {
                (true, true) => Some(Some(new.clone())),
                (false, false) => Some(value.clone()),
                _ => None,
            }
        }
        // Without an answer, a write that happened acts as if acknowledged; one that
        // compared false changes nothing.
        (Request::Put { value: new }, _) if unknown => Some(Some(new.clone())),
        (Request::Delete, _) if unknown => Some(None),
        (Request::CompareAndSet { expected, new }, _) if unknown => match expected == value {
            true => Some(Some(new.clone())),
            false => Some(value.clone()),
        },
        // An answer of the wrong kind for the request (a read answered `Done`) fits no order.
        _ => None,
    }
}

/// A set of placed operations, by their index in the key's history.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Placed(Vec<u64>);

impl Placed {
    fn new(n: usize) -> Placed {
        Placed(vec![0; n.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn flip(&mut self, i: usize) {
        self.0[i / 64] ^= 1 << (i % 64);
    }
}

fn check_key(key: &str, ops: &[&Operation], initial: Option<String>, budget: usize) -> KeyVerdict {
    let mut ops: Vec<&Operation> = ops.to_vec();
    ops.sort_by_key(|o| (o.called_us, o.effect_deadline_us()));
    let n = ops.len();
    // An operation with no answer need not happen at all: the search is done once every
    // answered one is placed.
    let must_place = ops.iter().filter(|o| o.response != Response::Unknown).count();
    let mut placed = Placed::new(n);
    let mut placed_count = 0;
    let mut placed_answered = 0;
    let mut value = initial;
    let mut seen: HashSet<(Placed, Option<String>)> = HashSet::new();
    // The order so far: (operation index, value before it).
    let mut order: Vec<(usize, Option<String>)> = Vec::new();
    // Where each level of the search resumes its scan of candidates.
    let mut next_candidate = 0;
    let mut deepest: Option<(usize, Option<String>, Vec<usize>)> = None;
    loop {
        if placed_answered == must_place {
            return KeyVerdict::Explained;
        }
        if seen.len() > n.saturating_add(budget) {
            return KeyVerdict::Undecided;
        }
        // The operations that may come next: not placed, and called before every unplaced
        // operation's deadline (else one answered before it was called would come later).
        let horizon = (0..n)
            .filter(|i| !placed.has(*i))
            .map(|i| ops[i].effect_deadline_us())
            .min()
            .unwrap_or(u64::MAX);
        let candidates: Vec<usize> = (0..n)
            .filter(|i| !placed.has(*i) && ops[*i].called_us <= horizon)
            .collect();
        let mut advanced = false;
        for &i in candidates.iter().filter(|i| **i >= next_candidate) {
            let Some(after) = apply(&value, ops[i]) else { continue };
            placed.flip(i);
            if seen.insert((placed.clone(), after.clone())) {
                order.push((i, value.clone()));
                value = after;
                placed_count += 1;
                placed_answered += usize::from(ops[i].response != Response::Unknown);
                next_candidate = 0;
                advanced = true;
                break;
            }
            placed.flip(i);
        }
        if advanced {
            continue;
        }
        if deepest.as_ref().is_none_or(|(d, _, _)| placed_count > *d) {
            deepest = Some((placed_count, value.clone(), candidates.clone()));
        }
        // Dead end: take back the last placement and try the next candidate at that level.
        let Some((last, before)) = order.pop() else {
            let (placed, value_there, stuck) = deepest.unwrap_or((0, None, Vec::new()));
            return KeyVerdict::Refuted(Violation {
                key: key.to_string(),
                operations: n,
                placed,
                value_there,
                window: stuck.iter().map(|i| ops[*i].describe()).collect(),
            });
        };
        placed.flip(last);
        placed_count -= 1;
        placed_answered -= usize::from(ops[last].response != Response::Unknown);
        value = before;
        next_candidate = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, request: Request, response: Response, called: u64, returned: u64) -> Operation {
        Operation {
            client,
            key: "r".into(),
            request,
            response,
            called_us: called,
            returned_us: returned,
        }
    }
    fn put(v: &str) -> Request {
        Request::Put { value: v.into() }
    }
    fn read(v: Option<&str>) -> Response {
        Response::Read {
            value: v.map(String::from),
        }
    }
    fn cas(expected: Option<&str>, new: &str) -> Request {
        Request::CompareAndSet {
            expected: expected.map(String::from),
            new: new.into(),
        }
    }
    fn swapped(succeeded: bool) -> Response {
        Response::Swapped { succeeded }
    }
    fn verdict(history: &[Operation]) -> Verdict {
        check(history, &BTreeMap::new())
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        // A write overlaps two reads: one sees the old value, the later one the new.
        let history = [
            op(1, put("1"), Response::Done, 0, 10),
            op(1, put("2"), Response::Done, 20, 60),
            op(2, Request::Get, read(Some("1")), 25, 30),
            op(3, Request::Get, read(Some("2")), 40, 50),
            op(2, cas(Some("2"), "3"), swapped(true), 70, 80),
            op(3, cas(Some("2"), "4"), swapped(false), 85, 90),
            op(3, Request::Get, read(Some("3")), 95, 99),
        ];
        let v = verdict(&history);
        assert!(v.linearizable(), "{v:?}");
        assert_eq!((v.keys, v.operations), (1, 7));
    }

    #[test]
    fn a_stale_read_is_a_violation_and_its_window_names_it() {
        // The read begins after put(2) was acknowledged and still sees 1.
        let history = [
            op(1, put("1"), Response::Done, 0, 10),
            op(1, put("2"), Response::Done, 20, 30),
            op(2, Request::Get, read(Some("1")), 40, 50),
        ];
        let v = verdict(&history);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        let violation = &v.violations[0];
        assert_eq!(violation.placed, 2);
        assert_eq!(violation.value_there.as_deref(), Some("2"));
        assert_eq!(violation.window, vec!["client 2 get(r) = 1 [40..50 µs]".to_string()]);
    }

    #[test]
    fn a_lost_acknowledged_compare_and_set_is_a_violation() {
        // The CAS to 5 was acknowledged as done, yet a later read finds the value before it.
        let history = [
            op(1, put("4"), Response::Done, 0, 10),
            op(2, cas(Some("4"), "5"), swapped(true), 20, 30),
            op(3, Request::Get, read(Some("4")), 40, 50),
        ];
        let v = verdict(&history);
        assert_eq!(v.violations.len(), 1, "{v:?}");
        assert!(v.violations[0].window[0].contains("get(r) = 4"), "{v:?}");
        // Reading 5 instead is fine.
        let fixed = [
            history[0].clone(),
            history[1].clone(),
            op(3, Request::Get, read(Some("5")), 40, 50),
        ];
        assert!(verdict(&fixed).linearizable());
    }

    #[test]
    fn an_operation_without_an_answer_may_have_happened_or_not() {
        // The timed-out put(2) shows up in a read much later: it took effect.
        let took = [
            op(1, put("1"), Response::Done, 0, 10),
            op(2, put("2"), Response::Unknown, 20, 30),
            op(3, Request::Get, read(Some("2")), 500, 510),
        ];
        assert!(verdict(&took).linearizable());
        // ... or never shows up: it did not.
        let lost = [
            op(1, put("1"), Response::Done, 0, 10),
            op(2, put("2"), Response::Unknown, 20, 30),
            op(3, Request::Get, read(Some("1")), 500, 510),
        ];
        assert!(verdict(&lost).linearizable());
        // But it cannot take effect before it was called.
        let early = [
            op(3, Request::Get, read(Some("2")), 0, 5),
            op(2, put("2"), Response::Unknown, 20, 30),
        ];
        assert!(!verdict(&early).linearizable());
    }

    #[test]
    fn keys_are_judged_apart_and_start_from_the_initial_values() {
        let mut history = vec![op(1, Request::Get, read(Some("seed")), 0, 5)];
        history.push(Operation {
            key: "other".into(),
            ..op(2, Request::Get, read(None), 0, 5)
        });
        let initial = BTreeMap::from([("r".to_string(), "seed".to_string())]);
        assert!(check(&history, &initial).linearizable());
        let v = check(&history, &BTreeMap::new());
        assert_eq!(v.violations.iter().map(|x| x.key.as_str()).collect::<Vec<_>>(), ["r"]);
    }

    #[test]
    fn a_long_concurrent_history_is_linearizable() {
        // 8 clients, 400 overlapping compare-and-sets that each move a counter (0 at the
        // start) on by one when they win: linearizable by construction.
        let mut history = Vec::new();
        let mut value = 0u32;
        for i in 0..400u64 {
            let client = (i % 8) as u32;
            let expected = value.to_string();
            let wins = i % 3 != 2;
            let request = cas(Some(if wins { &expected } else { "stale" }), &(value + 1).to_string());
            if wins {
                value += 1;
            }
            history.push(op(client, request, swapped(wins), i * 10, i * 10 + 25));
        }
        let initial = BTreeMap::from([("r".to_string(), "0".to_string())]);
        let v = check(&history, &initial);
        assert!(v.linearizable(), "{v:?}");
        // One lost win (its value never taken) breaks it, at that operation.
        history[201].response = swapped(false);
        let v = check(&history, &initial);
        assert_eq!(v.violations.len(), 1, "{v:?}");
    }

    #[test]
    fn a_search_past_its_budget_is_undecided_not_a_pass() {
        // Twelve puts without an answer, all concurrent, then a read of a value none wrote:
        // refuting it means trying every subset of them.
        let mut history: Vec<Operation> = (0..12)
            .map(|i| op(i, put(&i.to_string()), Response::Unknown, 0, 10))
            .collect();
        history.push(op(99, Request::Get, read(Some("never")), 20, 30));
        let refs: Vec<&Operation> = history.iter().collect();
        assert!(matches!(check_key("r", &refs, None, 10), KeyVerdict::Undecided));
        assert!(matches!(
            check_key("r", &refs, None, STATE_BUDGET),
            KeyVerdict::Refuted(_)
        ));
        let v = Verdict {
            keys: 1,
            operations: history.len(),
            violations: Vec::new(),
            undecided: vec!["r".into()],
        };
        assert!(!v.linearizable());
    }
}
