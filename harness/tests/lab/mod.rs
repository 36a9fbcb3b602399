//! The two-host lab (`scripts/lab`) for the Docker tests: a network namespace with its
//! own dockerd, up for one test and removed when dropped, whatever the test did.

use std::path::PathBuf;
use std::process::Command;

/// The two-host lab's helper script.
fn lab_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab")
}

/// A lab namespace with its own dockerd, removed when dropped (whatever the test did).
pub struct Lab {
    pub name: String,
    pub docker_host: String,
    /// The hosts file `scripts/lab up` wrote, for `etcd-drill run --hosts`.
    pub hosts_file: String,
}

impl Lab {
    pub fn up(name: &str, images: &[&str]) -> Result<Lab, String> {
        Lab::up_at(name, None, images)
    }

    /// A lab with its namespace at `addr` (10.231.N.2; the machine's side is 10.231.N.1).
    pub fn up_at(name: &str, addr: Option<&str>, images: &[&str]) -> Result<Lab, String> {
        let mut command = Command::new(lab_script());
        command.args(["up", name]);
        if let Some(addr) = addr {
            command.args(["--addr", addr]);
        }
        for image in images {
            command.args(["--image", image]);
        }
        let out = command.output().map_err(|e| e.to_string())?;
        // Dropped on every path from here: `down` is idempotent.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line_after = |prefix: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(prefix).map(String::from))
                .unwrap_or_default()
        };
        let lab = Lab {
            name: name.into(),
            docker_host: line_after("DOCKER_HOST="),
            hosts_file: line_after("hosts file: "),
        };
        if !out.status.success() || lab.docker_host.is_empty() {
            return Err(format!(
                "scripts/lab up {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(lab)
    }

    /// `etcd-drill ARGS` inside the lab's namespace, talking to the lab's daemon.
    pub fn etcd_drill(&self) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{}", self.name))
            .arg(env!("CARGO_BIN_EXE_etcd-drill"))
            .env("DOCKER_HOST", &self.docker_host);
        command
    }

    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .output()
            .map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// Names of the lab daemon's containers, networks and volumes labelled by a run.
    pub fn labelled(&self) -> Result<Vec<String>, String> {
        let mut found = Vec::new();
        for kind in ["ps -aq", "network ls -q", "volume ls -q"] {
            let mut args: Vec<&str> = kind.split(' ').collect();
            args.extend(["--filter", "label=io.etcd-drill.run"]);
            found.extend(self.docker(&args)?.lines().map(String::from));
        }
        Ok(found)
    }

    pub fn restart_daemon(&self) -> Result<(), String> {
        let out = Command::new(lab_script())
            .args(["restart", &self.name])
            .output()
            .map_err(|e| e.to_string())?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(lab_script()).args(["down", &self.name]).status();
    }
}
