//! Serializable reads, which a member serves from its own state and which may be stale:
//! they constrain no linearizable order, but a value read must still have been written to
//! that register by an operation called before the read returned (absent is always
//! possible: every register starts absent). A value no write ever carried, or one written
//! only after the read had its answer, came from nowhere.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Operation, Request, Response};

/// A serializable read whose value no earlier write explains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleViolation {
    pub key: String,
    pub value: String,
    /// The read, as a line for people.
    pub read: String,
    /// When the value was first written, if ever (call time, microseconds).
    pub written_at_us: Option<u64>,
}

/// Checks every serializable read of `history` against the writes of its register.
pub fn check(history: &[Operation]) -> Vec<StaleViolation> {
    // The earliest call of a write of each (register, value).
    let mut first_written: HashMap<(&str, &str), u64> = HashMap::new();
    for op in history {
        let written = match &op.request {
            Request::Put { value } => Some(value),
            Request::CompareAndSet { new, .. } => Some(new),
            _ => None,
        };
        // A compare-and-set that answered false wrote nothing.
        let wrote = !matches!(op.response, Response::Swapped { succeeded: false });
        if let (Some(value), true) = (written, wrote) {
            let at = first_written
                .entry((op.key.as_str(), value.as_str()))
                .or_insert(op.called_us);
            *at = (*at).min(op.called_us);
        }
    }
    let mut violations: BTreeMap<(u64, u32), StaleViolation> = BTreeMap::new();
    for op in history {
        let (Request::SerializableGet, Response::Read { value: Some(value) }) = (&op.request, &op.response) else {
            continue;
        };
        let written_at = first_written.get(&(op.key.as_str(), value.as_str())).copied();
        if written_at.is_none_or(|at| at > op.returned_us) {
            violations.insert(
                (op.called_us, op.client),
                StaleViolation {
                    key: op.key.clone(),
                    value: value.clone(),
                    read: op.describe(),
                    written_at_us: written_at,
                },
            );
        }
    }
    violations.into_values().collect()
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

    fn read(value: Option<&str>, called: u64, returned: u64) -> Operation {
        op(
            9,
            Request::SerializableGet,
            Response::Read {
                value: value.map(String::from),
            },
            called,
            returned,
        )
    }

    #[test]
    fn a_stale_value_is_allowed_and_one_from_nowhere_or_the_future_is_not() {
        let put = |v: &str, at| op(0, Request::Put { value: v.into() }, Response::Done, at, at + 5);
        let history = vec![
            put("a", 0),
            put("b", 100),
            read(Some("a"), 200, 210), // stale, but written
            read(None, 220, 230),      // absent: the start
            read(Some("ghost"), 240, 250),
            read(Some("c"), 260, 270),
            put("c", 300), // written only after the read above had its answer
        ];
        let found = check(&history);
        let values: Vec<&str> = found.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(values, ["ghost", "c"]);
        assert_eq!(found[1].written_at_us, Some(300));
        // A failed compare-and-set wrote nothing: its value cannot be read.
        let failed = vec![
            op(
                0,
                Request::CompareAndSet {
                    expected: None,
                    new: "x".into(),
                },
                Response::Swapped { succeeded: false },
                0,
                5,
            ),
            read(Some("x"), 10, 20),
        ];
        assert_eq!(check(&failed).len(), 1);
        // And the linearizability checker places serializable reads anywhere.
        let stale = vec![put("a", 0), put("b", 100), read(Some("a"), 200, 210)];
        assert!(crate::history::linearizability::check(&stale, &BTreeMap::new()).linearizable());
    }
}
