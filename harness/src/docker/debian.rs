//! etcd from Debian's packages, for the local image builder: `apt-get download` of
//! `etcd-server` and `etcd-client`, unpacked with `dpkg-deb -x`, and the dynamic loader
//! and shared libraries the binaries need (as `ldd` lists them on this machine, which must
//! therefore be of the packages' Debian release or ABI-compatible).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::binaries::EtcdBinaries;
use crate::error::{Error, Result};

/// The packages and the binaries taken from them (3.4 has no etcdutl).
const PACKAGES: [&str; 2] = ["etcd-server", "etcd-client"];
const BINARIES: [&str; 2] = ["etcd", "etcdctl"];

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
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Downloads the packages into `cache/<version>` (once) and unpacks them into its `root`.
fn unpacked(cache: &Path, version: &str) -> Result<PathBuf> {
    let dir = cache.join(version);
    let root = dir.join("root");
    if BINARIES.iter().all(|b| root.join("usr/bin").join(b).is_file()) {
        return Ok(root);
    }
    std::fs::create_dir_all(&root).map_err(Error::io(&root))?;
    let debs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "deb"))
                    .collect()
            })
            .unwrap_or_default()
    };
    if debs(&dir).len() < PACKAGES.len() {
        run("apt-get", &["download", PACKAGES[0], PACKAGES[1]], &dir)?;
    }
    let root_word = root.to_string_lossy().into_owned();
    for deb in debs(&dir) {
        run("dpkg-deb", &["-x", &deb.to_string_lossy(), &root_word], &dir)?;
    }
    Ok(root)
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

/// etcd and etcdctl from Debian's packages of `version`, and every library they load.
pub fn etcd_from_debs(cache: &Path, version: &str) -> Result<EtcdBinaries> {
    let root = unpacked(cache, version)?;
    let mut files = Vec::new();
    let mut library_paths: Vec<String> = Vec::new();
    for binary in BINARIES {
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
    Ok(EtcdBinaries {
        files,
        libraries,
        version: None,
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
}
