//! Debian's packages for the local image builder: etcd from `etcd-server` and
//! `etcd-client` (`apt-get download`, unpacked with `dpkg-deb -x`) with the dynamic loader
//! and shared libraries the binaries need (as `ldd` lists them on this machine, which must
//! therefore be of the packages' Debian release or ABI-compatible), and the static shell
//! of `busybox-static` for the scripted test image. The etcd packages of any suite
//! (`sid`, `trixie`, `bookworm`) are read through a private apt configuration in the cache
//! ([`PrivateApt`]): the machine's apt sources are never changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::binaries::EtcdBinaries;
use crate::error::{Error, Result};

/// The packages the binaries are taken from.
const PACKAGES: [&str; 2] = ["etcd-server", "etcd-client"];
/// Binaries every build needs, and the one only 3.5 and later packages ship.
const REQUIRED_BINARIES: [&str; 2] = ["etcd", "etcdctl"];
const OPTIONAL_BINARIES: [&str; 1] = ["etcdutl"];

/// The suite `image build` takes when none is named: the newest etcd Debian packages.
pub const DEFAULT_SUITE: &str = "sid";
/// Debian's mirror; `ETCD_DRILL_DEBIAN_MIRROR` names another (a local mirror, a snapshot).
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The Debian archive keyring, used when the machine has it (Debian, and Ubuntu with the
/// `debian-archive-keyring` package); otherwise apt's own trusted keys decide.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

fn run(program: &str, args: &[&str], dir: &Path) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| Error::ImageBuild {
            message: format!(
                "cannot run `{program}` ({e}); building from Debian packages needs apt-get, dpkg-deb and ldd"
            ),
        })?;
    if !output.status.success() {
        return Err(Error::ImageBuild {
            message: format!(
                "`{program} {}` failed: {}",
                shown_args(args),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The words of a command line for an error message, without the `-o key=value` pairs
/// that point apt at the private configuration.
fn shown_args(args: &[&str]) -> String {
    let mut shown = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if *word == "-o" {
            words.next();
        } else {
            shown.push(*word);
        }
    }
    shown.join(" ")
}

/// Whether `suite` can be a Debian suite or codename (`sid`, `trixie`, `bookworm-backports`).
pub fn valid_suite(suite: &str) -> bool {
    suite.starts_with(|c: char| c.is_ascii_lowercase())
        && suite
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An apt configuration of our own for one suite, kept in the cache: its own sources file,
/// package lists and archives, passed to apt-get and apt-cache as `-o Dir::...` options,
/// so the machine's apt sources are never read or changed.
pub struct PrivateApt {
    suite: String,
    mirror: String,
    dir: PathBuf,
}

impl PrivateApt {
    /// Prepares `cache/apt/<suite>` (the sources file and empty dirs).
    pub fn new(cache: &Path, suite: &str) -> Result<Self> {
        if !valid_suite(suite) {
            return Err(Error::InvalidArgument {
                argument: "--debian-suite".into(),
                message: format!("`{suite}` is not a Debian suite name; give one such as sid, trixie or bookworm"),
            });
        }
        let mirror = std::env::var("ETCD_DRILL_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
        let dir = cache.join("apt").join(suite);
        for sub in ["lists/partial", "archives/partial", "sources.list.d"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
        }
        let apt = Self {
            suite: suite.to_string(),
            mirror,
            dir,
        };
        let sources = apt.dir.join("sources.list");
        std::fs::write(&sources, apt.sources_line(Path::new(KEYRING).is_file())).map_err(Error::io(&sources))?;
        Ok(apt)
    }

    /// The one line of the private sources file.
    fn sources_line(&self, with_keyring: bool) -> String {
        let signed = if with_keyring {
            format!(" [signed-by={KEYRING}]")
        } else {
            String::new()
        };
        format!("deb{signed} {} {} main\n", self.mirror, self.suite)
    }

    /// The `-o` options that point apt at this configuration only.
    fn options(&self) -> Vec<String> {
        let at = |sub: &str| self.dir.join(sub).to_string_lossy().into_owned();
        let mut options = Vec::new();
        for (key, value) in [
            ("Dir::Etc::SourceList", at("sources.list")),
            ("Dir::Etc::SourceParts", at("sources.list.d")),
            ("Dir::State::Lists", at("lists")),
            ("Dir::Cache::Archives", at("archives")),
            ("Dir::Cache::pkgcache", String::new()),
            ("Dir::Cache::srcpkgcache", String::new()),
            ("Dir::State::status", "/dev/null".into()),
            ("APT::Sandbox::User", "root".into()),
        ] {
            options.push("-o".into());
            options.push(format!("{key}={value}"));
        }
        options
    }

    fn apt(&self, program: &str, args: &[&str], dir: &Path) -> Result<String> {
        let options = self.options();
        let mut all: Vec<&str> = options.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run(program, &all, dir)
    }

    /// `apt-get update` of the suite's lists. Offline, lists fetched earlier still serve.
    pub fn update(&self) -> Result<()> {
        match self.apt("apt-get", &["-qq", "update"], &self.dir) {
            Ok(_) => Ok(()),
            Err(e) if self.has_lists() => {
                tracing::warn!(
                    "apt-get update of {} failed, using the lists fetched before: {e}",
                    self.suite
                );
                Ok(())
            }
            Err(e) => Err(Error::ImageBuild {
                message: format!(
                    "cannot read Debian's {} suite from {} ({e}); check the network or set ETCD_DRILL_DEBIAN_MIRROR",
                    self.suite, self.mirror
                ),
            }),
        }
    }

    fn has_lists(&self) -> bool {
        std::fs::read_dir(self.dir.join("lists"))
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
            })
            .unwrap_or(false)
    }

    /// The version of `package` the suite holds (`3.5.30-2`).
    pub fn candidate(&self, package: &str) -> Result<String> {
        let policy = self.apt("apt-cache", &["policy", package], &self.dir)?;
        parse_candidate(&policy).ok_or_else(|| Error::ImageBuild {
            message: format!(
                "Debian's {} suite holds no `{package}` package (apt-cache policy: {}); name a suite that has etcd, such as sid, trixie or bookworm",
                self.suite,
                policy.trim()
            ),
        })
    }

    /// `apt-get download` of `packages` into `into`.
    pub fn download(&self, packages: &[String], into: &Path) -> Result<()> {
        let words: Vec<&str> = std::iter::once("download")
            .chain(packages.iter().map(String::as_str))
            .collect();
        self.apt("apt-get", &words, into).map(|_| ())
    }
}

/// The `Candidate:` version in `apt-cache policy` output; None when there is none.
pub fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty() && v != "(none)")
}

fn debs_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "deb"))
                .collect()
        })
        .unwrap_or_default()
}

/// Downloads the suite's etcd packages into `cache/debs/<suite>-<version>` (once per package
/// version) and unpacks them into its `root`. Returns the root and the package version.
fn unpacked_suite(cache: &Path, suite: &str) -> Result<(PathBuf, String)> {
    let apt = PrivateApt::new(cache, suite)?;
    apt.update()?;
    let version = apt.candidate(PACKAGES[0])?;
    let dir = cache.join("debs").join(format!("{suite}-{version}"));
    let root = dir.join("root");
    if REQUIRED_BINARIES.iter().all(|b| root.join("usr/bin").join(b).is_file()) {
        return Ok((root, version));
    }
    std::fs::create_dir_all(&root).map_err(Error::io(&root))?;
    if debs_in(&dir).len() < PACKAGES.len() {
        // Both packages at the server's version: a suite may briefly hold mismatched ones.
        let wanted: Vec<String> = PACKAGES.iter().map(|p| format!("{p}={version}")).collect();
        apt.download(&wanted, &dir)?;
    }
    let root_word = root.to_string_lossy().into_owned();
    for deb in debs_in(&dir) {
        run("dpkg-deb", &["-x", &deb.to_string_lossy(), &root_word], &dir)?;
    }
    Ok((root, version))
}

/// The static busybox binary of Debian's `busybox-static` package, downloaded into
/// `cache/busybox-static` once.
pub fn static_busybox(cache: &Path) -> Result<Vec<u8>> {
    let dir = cache.join("busybox-static");
    let binary = dir.join("root/bin/busybox");
    if !binary.is_file() {
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        run("apt-get", &["download", "busybox-static"], &dir)?;
        let deb = std::fs::read_dir(&dir)
            .map_err(Error::io(&dir))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| Error::ImageBuild {
                message: format!("apt-get download busybox-static left no .deb in {}", dir.display()),
            })?;
        let root = dir.join("root");
        run(
            "dpkg-deb",
            &["-x", &deb.to_string_lossy(), &root.to_string_lossy()],
            &dir,
        )?;
    }
    std::fs::read(&binary).map_err(Error::io(&binary))
}

/// The absolute paths `ldd` output names: the libraries after `=>` and the loader.
pub fn ldd_paths(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => line,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// etcd, etcdctl and (where the packages ship it) etcdutl from the etcd packages of a
/// Debian suite, with every library they load.
pub fn etcd_from_suite(cache: &Path, suite: &str) -> Result<EtcdBinaries> {
    let (root, package_version) = unpacked_suite(cache, suite)?;
    let mut files = Vec::new();
    let mut library_paths: Vec<String> = Vec::new();
    let present = OPTIONAL_BINARIES
        .into_iter()
        .filter(|b| root.join("usr/bin").join(b).is_file());
    for binary in REQUIRED_BINARIES.into_iter().chain(present) {
        let path = root.join("usr/bin").join(binary);
        files.push((binary, std::fs::read(&path).map_err(Error::io(&path))?));
        for lib in ldd_paths(&run("ldd", &[&path.to_string_lossy()], &root)?) {
            if !library_paths.contains(&lib) {
                library_paths.push(lib);
            }
        }
    }
    let libraries = library_paths
        .into_iter()
        .map(|path| {
            // Read through symlinks: the image gets the file itself at the path asked for.
            let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
            Ok((path, bytes))
        })
        .collect::<Result<_>>()?;
    let mirror = std::env::var("ETCD_DRILL_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    Ok(EtcdBinaries {
        files,
        libraries,
        version: None,
        source: format!("Debian {suite}: etcd-server and etcd-client {package_version} from {mirror}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_libraries_and_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ff99462c000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff994438000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007ff99462e000)\n";
        assert_eq!(
            ldd_paths(out),
            vec!["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
        );
        assert!(ldd_paths("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn the_candidate_is_read_from_apt_cache_policy() {
        let policy = "etcd-server:\n  Installed: (none)\n  Candidate: 3.5.30-2\n  Version table:\n     3.5.30-2 500\n";
        assert_eq!(parse_candidate(policy).as_deref(), Some("3.5.30-2"));
        assert_eq!(
            parse_candidate("etcd-server:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(parse_candidate(""), None);
    }

    #[test]
    fn suite_names_are_checked_and_the_sources_name_only_the_suite() {
        for good in ["sid", "trixie", "bookworm-backports", "stable"] {
            assert!(valid_suite(good), "{good}");
        }
        for bad in ["", "Sid", "sid main", "../etc", "trixie;rm"] {
            assert!(!valid_suite(bad), "{bad}");
        }
        let cache = tempfile::tempdir().unwrap();
        let err = PrivateApt::new(cache.path(), "sid main")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("--debian-suite") && err.contains("sid main"), "{err}");
        let apt = PrivateApt::new(cache.path(), "trixie").unwrap();
        assert_eq!(apt.sources_line(false), format!("deb {} trixie main\n", apt.mirror));
        let options = apt.options().join(" ");
        assert!(
            options.contains("Dir::Etc::SourceList=") && options.contains("apt/trixie/sources.list"),
            "{options}"
        );
        assert!(!options.contains("/etc/apt"), "{options}");
    }
}
