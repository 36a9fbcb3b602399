//! Names of the files in a backup store. Each name carries what a restore needs to plan
//! without opening the file: a full snapshot its revision (and when it was taken), a delta
//! its first and last revision. Every file has a `.sha256` sidecar with the SHA-256 of its
//! stored bytes.

use std::io::{Read, Write};

use serde::Serialize;

/// How a stored file's bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    pub fn parse(text: &str) -> Option<Compression> {
        match text {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
        }
    }

    pub fn compress(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => bytes.to_vec(),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(bytes).expect("writing into memory cannot fail");
                encoder.finish().expect("writing into memory cannot fail")
            }
        }
    }

    pub fn decompress(self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(bytes.to_vec()),
            Compression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// A full snapshot: `full-<revision>-<unix ms>.db[.gz]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FullName {
    pub revision: i64,
    pub taken_unix_ms: u64,
    pub compression: Compression,
}

/// A delta: every event from `first` to `last` (inclusive):
/// `delta-<first>-<last>.events[.gz]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeltaName {
    pub first: i64,
    pub last: i64,
    pub compression: Compression,
}

impl FullName {
    pub fn file(&self) -> String {
        format!(
            "full-{:020}-{}.db{}",
            self.revision,
            self.taken_unix_ms,
            self.compression.suffix()
        )
    }
}

impl DeltaName {
    pub fn file(&self) -> String {
        format!(
            "delta-{:020}-{:020}.events{}",
            self.first,
            self.last,
            self.compression.suffix()
        )
    }

    /// `delta-…` with its revisions, for error messages.
    pub fn describe(&self) -> String {
        format!("{} (revisions {}..={})", self.file(), self.first, self.last)
    }
}

/// A file of a backup store, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredName {
    Full(FullName),
    Delta(DeltaName),
}

/// The sidecar holding the SHA-256 of `file`.
pub fn hash_file(file: &str) -> String {
    format!("{file}.sha256")
}

impl StoredName {
    /// Parses a file name; None for anything that is not a full or a delta (sidecars too).
    pub fn parse(name: &str) -> Option<StoredName> {
        let (stem, compression) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, Compression::Gzip),
            None => (name, Compression::None),
        };
        if let Some(rest) = stem.strip_prefix("full-").and_then(|r| r.strip_suffix(".db")) {
            let (revision, taken) = rest.split_once('-')?;
            return Some(StoredName::Full(FullName {
                revision: revision.parse().ok()?,
                taken_unix_ms: taken.parse().ok()?,
                compression,
            }));
        }
        if let Some(rest) = stem.strip_prefix("delta-").and_then(|r| r.strip_suffix(".events")) {
            let (first, last) = rest.split_once('-')?;
            let (first, last) = (first.parse().ok()?, last.parse().ok()?);
            if first > last {
                return None;
            }
            return Some(StoredName::Delta(DeltaName {
                first,
                last,
                compression,
            }));
        }
        None
    }

    pub fn file(&self) -> String {
        match self {
            StoredName::Full(f) => f.file(),
            StoredName::Delta(d) => d.file(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_revision() {
        let full = FullName {
            revision: 42,
            taken_unix_ms: 1_700_000_000_000,
            compression: Compression::Gzip,
        };
        assert_eq!(full.file(), "full-00000000000000000042-1700000000000.db.gz");
        assert_eq!(StoredName::parse(&full.file()), Some(StoredName::Full(full)));
        let delta = DeltaName {
            first: 43,
            last: 1000,
            compression: Compression::None,
        };
        assert_eq!(StoredName::parse(&delta.file()), Some(StoredName::Delta(delta)));
        assert!(
            delta.file()
                < DeltaName {
                    first: 1001,
                    last: 1001,
                    ..delta
                }
                .file()
        );
        assert_eq!(StoredName::parse(&hash_file(&delta.file())), None);
        assert_eq!(StoredName::parse("delta-9-3.events"), None);
        assert_eq!(StoredName::parse("notes.txt"), None);
    }

    #[test]
    fn gzip_round_trips() {
        let bytes = b"abcabcabcabcabcabcabcabc".repeat(100);
        let packed = Compression::Gzip.compress(&bytes);
        assert!(packed.len() < bytes.len());
        assert_eq!(Compression::Gzip.decompress(&packed).unwrap(), bytes);
        assert!(Compression::Gzip.decompress(b"not gzip").is_err());
    }
}
