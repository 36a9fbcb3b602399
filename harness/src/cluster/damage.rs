//! How the `corrupt` verb damages a member's file: which file (the newest WAL segment,
//! the bbolt db, the newest raft snapshot) and how (flip bytes, truncate). Pure bytes.

use serde::{Deserialize, Serialize};

/// Which file `corrupt` damages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DamagedFile {
    /// The newest WAL segment (`member/wal/*.wal`).
    Wal,
    /// The bbolt backend (`member/snap/db`).
    Db,
    /// The newest raft snapshot file (`member/snap/*.snap`); etcd writes one every
    /// `snapshot-count` applied entries.
    Snap,
}

/// How `corrupt` damages it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DamageKind {
    /// Flip bytes: in the db, the magic numbers of both meta pages (bbolt keeps two, so both
    /// must go for the damage to be certain); in a WAL segment, bytes inside its records.
    Flip,
    /// Cut the file to half its written length.
    Truncate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    pub file: DamagedFile,
    pub how: DamageKind,
}

impl DamagedFile {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "wal" => Some(DamagedFile::Wal),
            "db" => Some(DamagedFile::Db),
            "snap" => Some(DamagedFile::Snap),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DamagedFile::Wal => "wal",
            DamagedFile::Db => "db",
            DamagedFile::Snap => "snap",
        }
    }
}

impl DamageKind {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "flip" => Some(DamageKind::Flip),
            "truncate" => Some(DamageKind::Truncate),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DamageKind::Flip => "flip",
            DamageKind::Truncate => "truncate",
        }
    }
}

/// Damages `bytes` (a whole file) as `damage` says. Returns false when there is nothing
/// to damage (an empty or too short file).
pub fn damage_bytes(bytes: &mut Vec<u8>, damage: Damage) -> bool {
    // WAL segments are preallocated with zeros; only the written part holds records.
    let written = match damage.file {
        DamagedFile::Wal => bytes.iter().rposition(|b| *b != 0).map(|i| i + 1).unwrap_or(0),
        DamagedFile::Db | DamagedFile::Snap => bytes.len(),
    };
    match (damage.how, damage.file) {
        (DamageKind::Truncate, _) => {
            if written < 2 {
                return false;
            }
            bytes.truncate(written / 2);
            true
        }
        (DamageKind::Flip, DamagedFile::Db) => {
            // bbolt meta page: a 16-byte page header, then the magic (u32) and version, then
            // the page size (u32) at offset 24.
            if bytes.len() < 28 {
                return false;
            }
            let page_size = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]) as usize;
            for offset in [16, page_size + 16] {
                if let Some(magic) = bytes.get_mut(offset..offset + 4) {
                    magic.iter_mut().for_each(|b| *b ^= 0xff);
                }
            }
            true
        }
        (DamageKind::Flip, DamagedFile::Wal | DamagedFile::Snap) => {
            if written < 64 {
                return false;
            }
            let middle = written / 2;
            bytes[middle..middle + 16].iter_mut().for_each(|b| *b ^= 0xa5);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_hits_the_written_part_of_the_file() {
        let mut wal = vec![7u8; 1000];
        wal.extend(vec![0u8; 9000]);
        let before = wal.clone();
        assert!(damage_bytes(
            &mut wal,
            Damage {
                file: DamagedFile::Wal,
                how: DamageKind::Flip
            }
        ));
        assert_ne!(wal[..1000], before[..1000]);
        assert_eq!(wal[1000..], before[1000..]);

        let mut wal = before.clone();
        assert!(damage_bytes(
            &mut wal,
            Damage {
                file: DamagedFile::Wal,
                how: DamageKind::Truncate
            }
        ));
        assert_eq!(wal.len(), 500);

        let mut db = vec![0u8; 8192];
        db[24..28].copy_from_slice(&4096u32.to_le_bytes());
        db[16..20].copy_from_slice(&0xED0CDAEDu32.to_le_bytes());
        db[4096 + 16..4096 + 20].copy_from_slice(&0xED0CDAEDu32.to_le_bytes());
        assert!(damage_bytes(
            &mut db,
            Damage {
                file: DamagedFile::Db,
                how: DamageKind::Flip
            }
        ));
        assert_ne!(db[16..20], 0xED0CDAEDu32.to_le_bytes());
        assert_ne!(db[4096 + 16..4096 + 20], 0xED0CDAEDu32.to_le_bytes());

        assert!(!damage_bytes(
            &mut Vec::new(),
            Damage {
                file: DamagedFile::Db,
                how: DamageKind::Flip
            }
        ));
    }
}
