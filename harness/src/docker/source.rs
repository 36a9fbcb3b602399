//! Where the main job's etcd image comes from: the upstream image pulled from its
//! registry when the machine reaches one, else the local image built from Debian's
//! packages (`image build`), else the local image already here. The decision is pure
//! ([`plan`]); [`ensure_main_image`] carries it out and says which one the run uses.

use crate::docker::image::{build_image, BinarySource, Layout, DEFAULT_IMAGE};
use crate::docker::runtime::DockerRuntime;
use crate::error::Result;

/// The upstream image the main job pulls where a registry is reachable: an official etcd
/// 3.5 release image, run unchanged (upstream flavor). It cannot be pulled on a machine
/// without a registry, where the local build takes its place.
pub const UPSTREAM_IMAGE: &str = "gcr.io/etcd-development/etcd:v3.5.21";

/// Where the image came from, for the run's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageOrigin {
    /// Already on this machine.
    Present,
    /// Pulled from its registry now.
    Pulled,
    /// Built here now from the etcd packages of a Debian suite.
    BuiltLocally { suite: String },
}

/// One step of getting an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Use(String),
    Pull(String),
    Build { tag: String, suite: String },
}

/// What to try, in order, given what is on the machine: an upstream image already here
/// is used; otherwise it is pulled unless `local_only`; the local image is used if here,
/// else built from `suite`. The first step that works gives the image.
pub fn plan(upstream_present: bool, local_present: bool, local_only: bool, suite: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    if !local_only {
        steps.push(match upstream_present {
            true => Step::Use(UPSTREAM_IMAGE.into()),
            false => Step::Pull(UPSTREAM_IMAGE.into()),
        });
    }
    steps.push(match local_present {
        true => Step::Use(DEFAULT_IMAGE.into()),
        false => Step::Build {
            tag: DEFAULT_IMAGE.into(),
            suite: suite.into(),
        },
    });
    steps
}

/// Gets the main job's image as [`plan`] says; returns it with where it came from and,
/// when a pull was tried and failed, why (the run says so).
pub async fn ensure_main_image(
    docker: &DockerRuntime,
    local_only: bool,
    suite: &str,
) -> Result<(String, ImageOrigin, Option<String>)> {
    let steps = plan(
        docker.image_exists(UPSTREAM_IMAGE).await?,
        docker.image_exists(DEFAULT_IMAGE).await?,
        local_only,
        suite,
    );
    let mut pull_failed = None;
    for step in steps {
        match step {
            Step::Use(image) => return Ok((image, ImageOrigin::Present, pull_failed)),
            Step::Pull(image) => match docker.ensure_image(&image, DEFAULT_IMAGE).await {
                Ok(()) => return Ok((image, ImageOrigin::Pulled, None)),
                Err(crate::error::Error::ImageMissing { reason, .. }) => pull_failed = Some(reason),
                Err(e) => pull_failed = Some(e.to_string()),
            },
            Step::Build { tag, suite } => {
                let source = BinarySource::DebianSuite { suite: suite.clone() };
                let built = build_image(docker, &source, Layout::Upstream, None).await?;
                let image = match built.minor_tag.as_deref() == Some(tag.as_str()) {
                    true => tag,
                    false => built.tag,
                };
                return Ok((image, ImageOrigin::BuiltLocally { suite }, pull_failed));
            }
        }
    }
    Err(crate::error::Error::Procedure {
        step: "choose the etcd image".into(),
        message: "no step of the plan gave an image".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_image_comes_first_unless_local_only() {
        assert_eq!(
            plan(true, true, false, "sid"),
            vec![Step::Use(UPSTREAM_IMAGE.into()), Step::Use(DEFAULT_IMAGE.into())]
        );
        assert_eq!(
            plan(false, false, false, "sid"),
            vec![
                Step::Pull(UPSTREAM_IMAGE.into()),
                Step::Build {
                    tag: DEFAULT_IMAGE.into(),
                    suite: "sid".into()
                }
            ]
        );
        // Offline runners ask for the local image only: no pull is tried.
        assert_eq!(plan(true, true, true, "sid"), vec![Step::Use(DEFAULT_IMAGE.into())]);
        assert_eq!(
            plan(false, false, true, "trixie"),
            vec![Step::Build {
                tag: DEFAULT_IMAGE.into(),
                suite: "trixie".into()
            }]
        );
    }
}
