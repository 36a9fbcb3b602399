//! etcd release numbers (`3.5.30`) read from `etcd --version` or an image tag, and compared
//! as numbers, so that 3.5.30 is newer than 3.5.4. The known-bug table, the image tags and
//! the upgrade drills all ask "is this version in that range".

use std::fmt;

/// `major.minor.patch` of an etcd release; a suffix such as `-rc.0` is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtcdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl EtcdVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Reads `3.5.30`, `v3.5.30` or `3.5.30-rc.0`; None for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let mut number = || parts.next()?.parse::<u32>().ok();
        let version = Self::new(number()?, number()?, number()?);
        parts.next().is_none().then_some(version)
    }

    /// `3.5` of `3.5.30`.
    pub fn minor_line(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// An inclusive range of releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub first: EtcdVersion,
    pub last: EtcdVersion,
}

impl VersionRange {
    pub fn contains(&self, version: EtcdVersion) -> bool {
        self.first <= version && version <= self.last
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        let v = |s| EtcdVersion::parse(s).unwrap();
        assert!(v("3.5.30") > v("3.5.4"));
        assert!(v("3.4.23") < v("3.5.0"));
        assert_eq!(v("v3.6.0-rc.1"), EtcdVersion::new(3, 6, 0));
        assert_eq!(v("3.5.30").minor_line(), "3.5");
        for bad in ["", "3.5", "3.5.x", "3.5.1.2", "latest"] {
            assert_eq!(EtcdVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_are_inclusive() {
        let range = VersionRange {
            first: EtcdVersion::new(3, 5, 0),
            last: EtcdVersion::new(3, 5, 2),
        };
        assert!(range.contains(EtcdVersion::new(3, 5, 2)));
        assert!(!range.contains(EtcdVersion::new(3, 5, 3)));
        assert!(!range.contains(EtcdVersion::new(3, 4, 23)));
    }
}
