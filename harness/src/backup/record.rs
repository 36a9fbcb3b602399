//! The content of a delta file: etcd's watch events, one record each, in revision order.
//! A small length-prefixed binary format (no protobuf): the magic `EDDELTA1`, then per
//! event a kind byte, the event's revision, the key's create revision, version and lease
//! (big-endian i64), and the key and value, each prefixed by its length (big-endian u32).

use serde::Serialize;

const MAGIC: &[u8; 8] = b"EDDELTA1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaEvent {
    pub kind: EventKind,
    /// The revision of the write (the key's mod revision).
    pub revision: i64,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

impl DeltaEvent {
    pub fn from_watch(event: &etcd_client::Event) -> Option<DeltaEvent> {
        let kv = event.kv()?;
        Some(DeltaEvent {
            kind: match event.event_type() {
                etcd_client::EventType::Put => EventKind::Put,
                etcd_client::EventType::Delete => EventKind::Delete,
            },
            revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            version: kv.version(),
            lease: kv.lease(),
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
        })
    }

    /// Bytes this event takes in a buffer, roughly: what the memory limit counts.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<DeltaEvent>() + self.key.len() + self.value.len()
    }
}

/// Encodes events in the delta format.
pub fn encode(events: &[DeltaEvent]) -> Vec<u8> {
    let size: usize = events.iter().map(|e| 41 + e.key.len() + e.value.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + size);
    out.extend_from_slice(MAGIC);
    for e in events {
        out.push(match e.kind {
            EventKind::Put => b'P',
            EventKind::Delete => b'D',
        });
        for n in [e.revision, e.create_revision, e.version, e.lease] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        for bytes in [&e.key, &e.value] {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
    out
}

/// Decodes a delta; the error says at which byte offset the content stops making sense.
pub fn decode(bytes: &[u8]) -> Result<Vec<DeltaEvent>, String> {
    let mut rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| "not a delta file (no EDDELTA1 header)".to_string())?;
    let mut events = Vec::new();
    let take = |rest: &mut &[u8], n: usize, offset: usize| -> Result<Vec<u8>, String> {
        if rest.len() < n {
            return Err(format!("truncated record at byte {offset}"));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let kind = match take(&mut rest, 1, offset)?[0] {
            b'P' => EventKind::Put,
            b'D' => EventKind::Delete,
            other => return Err(format!("unknown event kind {other:#04x} at byte {offset}")),
        };
        let mut numbers = [0i64; 4];
        for n in numbers.iter_mut() {
            let b = take(&mut rest, 8, offset)?;
            *n = i64::from_be_bytes(b.try_into().expect("8 bytes"));
        }
        let mut fields = Vec::with_capacity(2);
        for _ in 0..2 {
            let len = take(&mut rest, 4, offset)?;
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            fields.push(take(&mut rest, len, offset)?);
        }
        let value = fields.pop().expect("two fields");
        let key = fields.pop().expect("two fields");
        let [revision, create_revision, version, lease] = numbers;
        events.push(DeltaEvent {
            kind,
            revision,
            create_revision,
            version,
            lease,
            key,
            value,
        });
    }
    Ok(events)
}

/// Splits events (in revision order) into the groups of one revision each: one etcd
/// transaction per group makes the same revisions on replay.
pub fn by_revision(events: &[DeltaEvent]) -> Vec<&[DeltaEvent]> {
    events.chunk_by(|a, b| a.revision == b.revision).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn put(revision: i64, key: &str) -> DeltaEvent {
        DeltaEvent {
            kind: EventKind::Put,
            revision,
            create_revision: revision,
            version: 1,
            lease: 0,
            key: key.as_bytes().to_vec(),
            value: format!("v{revision}").into_bytes(),
        }
    }

    #[test]
    fn events_round_trip() {
        let mut events = vec![put(5, "/a"), put(6, "/b"), put(6, "/c")];
        events.push(DeltaEvent {
            kind: EventKind::Delete,
            value: vec![],
            lease: 7,
            ..put(7, "/a")
        });
        let bytes = encode(&events);
        assert_eq!(decode(&bytes).unwrap(), events);
        assert_eq!(
            by_revision(&events).iter().map(|g| g.len()).collect::<Vec<_>>(),
            vec![1, 2, 1]
        );
        assert!(decode(&bytes[..bytes.len() - 1]).unwrap_err().contains("truncated"));
        assert!(decode(b"garbage").is_err());
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }
}
