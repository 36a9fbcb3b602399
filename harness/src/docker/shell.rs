//! Shell command lines as the reports print them: splitting a line into words (keeping
//! quotes), masking secrets as `***` so that no report carries a password, and wrapping
//! long lines at option boundaries for people to read; quoting words, and the `docker run`
//! line that creates a given container.

use crate::docker::runtime::ContainerSpec;

/// Names (flags or environment variables) whose value is a secret. The cluster token is
/// not one: an operator needs the real one to restore.
const SECRET_NAMES: &[&str] = &["password", "secret", "passwd", "api-key", "api_key"];

/// Splits a command line into its words, as a POSIX shell would for single- and
/// double-quoted words (the quotes stay in the words); runs of blanks separate words.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c);
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                word.push(ch);
            }
            (None, ' ' | '\t') => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn is_secret_name(name: &str) -> bool {
    let name = name.trim_start_matches('-').to_ascii_lowercase();
    SECRET_NAMES.iter().any(|s| name.contains(s))
}

/// `name=value` with the value masked when `name` is a secret's; `user:password` values
/// of `--user` keep the user.
fn mask_assignment(word: &str) -> Option<String> {
    let (quote, inner) = match word.chars().next() {
        Some(q @ ('\'' | '"')) if word.len() >= 2 && word.ends_with(q) => (Some(q), &word[1..word.len() - 1]),
        _ => (None, word),
    };
    let (name, value) = inner.split_once('=')?;
    let masked = if is_secret_name(name) {
        "***".to_string()
    } else if is_user_name(name) && value.contains(':') {
        format!("{}:***", value.split(':').next().unwrap_or_default())
    } else {
        return None;
    };
    Some(match quote {
        Some(q) => format!("{q}{name}={masked}{q}"),
        None => format!("{name}={masked}"),
    })
}

fn is_user_name(name: &str) -> bool {
    let name = name.trim_start_matches('-').to_ascii_lowercase();
    name == "user" || name.ends_with("_user")
}

/// The command line with every secret replaced by `***`: values of `--password`-like
/// flags (`--password=x` and `--password x`), the password half of `--user name:pass`,
/// and environment assignments such as `ETCD_ROOT_PASSWORD=x` or `-e ETCDCTL_PASSWORD=x`.
/// A line without secrets comes back unchanged.
pub fn mask_secrets(line: &str) -> String {
    let words = split_words(line);
    let mut changed = false;
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut mask_next: Option<bool> = None;
    for word in &words {
        match mask_next.take() {
            Some(false) => {
                changed = true;
                out.push("***".into());
                continue;
            }
            // `--user name:password`; `--user name` alone has no secret.
            Some(true) if word.contains(':') => {
                changed = true;
                out.push(format!("{}:***", word.split(':').next().unwrap_or_default()));
                continue;
            }
            _ => {}
        }
        if let Some(masked) = mask_assignment(word) {
            changed = true;
            out.push(masked);
            continue;
        }
        if word.starts_with("--") && !word.contains('=') {
            if is_secret_name(word) {
                mask_next = Some(false);
            } else if is_user_name(word) {
                mask_next = Some(true);
            }
        }
        out.push(word.clone());
    }
    // An unchanged line keeps its exact spacing.
    if changed {
        out.join(" ")
    } else {
        line.to_string()
    }
}

/// Wraps a long command line before its options (`-x`, `--x`), with ` \` continuations, so
/// that it still pastes into a shell as one command. Short lines stay as they are.
pub fn wrap_command(line: &str, width: usize) -> String {
    if line.len() <= width || line.contains('\n') {
        return line.to_string();
    }
    let mut out = String::new();
    let mut current = 0usize;
    for (i, word) in split_words(line).iter().enumerate() {
        if i > 0 {
            if word.starts_with('-') && current > 0 {
                out.push_str(" \\\n    ");
                current = 4;
            } else {
                out.push(' ');
                current += 1;
            }
        }
        out.push_str(word);
        current += word.len();
    }
    out
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The `docker run` line that creates the same container as `spec`. `files` are host files
/// (as shell words, e.g. `"$PWD/snapshot.db"`) mounted read-only at a path in the container.
pub fn docker_run_line(spec: &ContainerSpec, detach: bool, files: &[(&str, &str)]) -> String {
    let mut words: Vec<String> = vec!["docker".into()];
    // A second network is connected, and files are copied in, between create and start.
    let connect_later = spec.peer_network.as_ref().filter(|_| detach);
    let create_then_start = detach && (connect_later.is_some() || !spec.copied_files.is_empty());
    if create_then_start {
        words.push("create".into());
    } else {
        words.push(if detach { "run -d".into() } else { "run --rm".into() });
    }
    words.push(format!("--name {}", spec.name));
    for capability in &spec.cap_add {
        words.push(format!("--cap-add {capability}"));
    }
    if spec.host_network {
        words.push("--network host".into());
    } else if let Some(container) = &spec.network_of {
        words.push(format!("--network container:{container}"));
    } else if let Some((network, alias)) = &spec.network {
        words.push(format!("--network {network} --network-alias {alias}"));
    } else if spec.isolated {
        words.push("--network none".into());
    }
    if let Some(h) = &spec.hostname {
        words.push(format!("--hostname {h}"));
    }
    if let Some(u) = &spec.user {
        words.push(format!("--user {u}"));
    }
    let mut entrypoint = spec.entrypoint.iter().flatten();
    if let Some(first) = entrypoint.next() {
        words.push(format!("--entrypoint {}", shell_quote(first)));
    }
    let entrypoint_rest: Vec<&String> = entrypoint.collect();
    for host in &spec.extra_hosts {
        words.push(format!("--add-host {host}"));
    }
    if let Some((port, host_port)) = spec.publish {
        words.push(format!("-p 127.0.0.1:{host_port}:{port}"));
    }
    for (volume, target) in &spec.volumes {
        words.push(format!("-v {volume}:{target}"));
    }
    for (host, target) in files {
        words.push(format!("-v {host}:{target}:ro"));
    }
    for (k, v) in &spec.env {
        words.push(format!("-e {}", shell_quote(&format!("{k}={v}"))));
    }
    words.push(spec.image.clone());
    words.extend(entrypoint_rest.into_iter().chain(&spec.cmd).map(|c| shell_quote(c)));
    let mut line = words.join(" ");
    if let Some(peer) = connect_later {
        let ip = peer.ipv4.as_ref().map(|ip| format!("--ip {ip} ")).unwrap_or_default();
        line.push_str(&format!(
            " && docker network connect {ip}--alias {} {} {}",
            peer.alias, peer.network, spec.name
        ));
    }
    if detach {
        for (host, target) in &spec.copied_files {
            let file = host
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            line.push_str(&format!(" && docker cp {} {}:{target}", shell_quote(&file), spec.name));
        }
    }
    if create_then_start {
        line.push_str(&format!(" && docker start {}", spec.name));
    }
    line
}

/// The `docker` command line that runs the tool container `spec` to its end where the
/// daemon is on another machine, so that files of this machine cannot be bound: the
/// container is created, `files` (shell words of this machine's paths, and their paths in
/// the container) are copied in with `docker cp`, then it is started attached and removed.
pub fn docker_run_line_copying(spec: &ContainerSpec, files: &[(&str, &str)]) -> String {
    let run = docker_run_line(spec, false, &[]);
    let create = run.replacen("docker run --rm ", "docker create ", 1);
    let mut line = create;
    for (host, target) in files {
        line.push_str(&format!(" && docker cp {host} {}:{target}", spec.name));
    }
    line.push_str(&format!(" && docker start -a {0} && docker rm {0}", spec.name));
    line
}

/// `command` with `prefix` (`DOCKER_HOST=... `) in front of every `docker` it runs, not
/// only the first: an assignment before a command holds for that command alone, so in
/// `docker stop x && docker rm x` both need it.
pub fn on_daemon(prefix: &str, command: &str) -> String {
    if prefix.is_empty() {
        return command.to_string();
    }
    const STARTS: [&str; 7] = ["&& ", "|| ", "; ", "| ", "$(", "do ", "then "];
    let mut out = String::with_capacity(command.len() + prefix.len() * 2);
    let mut rest = command;
    let mut at_start = true;
    while !rest.is_empty() {
        if rest.starts_with("docker ") && (at_start || STARTS.iter().any(|s| out.ends_with(s))) {
            out.push_str(prefix);
        }
        let next = rest.chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&rest[..next]);
        rest = &rest[next..];
        at_start = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::runtime::NetworkAttachment;

    #[test]
    fn every_docker_of_a_chain_runs_on_the_daemon() {
        let prefix = "DOCKER_HOST=unix:///b.sock ";
        assert_eq!(
            on_daemon(prefix, "docker stop x && docker rm x; for v in a; do docker volume rm $v; done"),
            "DOCKER_HOST=unix:///b.sock docker stop x && DOCKER_HOST=unix:///b.sock docker rm x; for v in a; do DOCKER_HOST=unix:///b.sock docker volume rm $v; done"
        );
        // `docker` inside a word or an argument is left alone.
        assert_eq!(
            on_daemon(prefix, "etcdctl put k 'docker x' && mydocker run"),
            "etcdctl put k 'docker x' && mydocker run"
        );
        assert_eq!(on_daemon("", "docker ps && docker rm x"), "docker ps && docker rm x");
    }

    #[test]
    fn a_tool_on_another_machine_gets_its_files_copied_not_bound() {
        let spec = ContainerSpec {
            name: "etcd-drill-1-restore-etcd3".into(),
            image: "etcd-drill/etcd:3.5".into(),
            cmd: vec!["snapshot".into(), "restore".into(), "/snapshot.db".into()],
            ..ContainerSpec::default()
        };
        let line = docker_run_line_copying(&spec, &[("\"$PWD/snapshot.db\"", "/snapshot.db")]);
        assert_eq!(
            line,
            "docker create --name etcd-drill-1-restore-etcd3 etcd-drill/etcd:3.5 snapshot restore /snapshot.db \
             && docker cp \"$PWD/snapshot.db\" etcd-drill-1-restore-etcd3:/snapshot.db \
             && docker start -a etcd-drill-1-restore-etcd3 && docker rm etcd-drill-1-restore-etcd3"
        );
    }
    use proptest::prelude::*;

    #[test]
    fn words_keep_their_quotes() {
        assert_eq!(
            split_words("docker run -e 'A=b c' \"x y\"  z"),
            vec!["docker", "run", "-e", "'A=b c'", "\"x y\"", "z"]
        );
    }

    #[test]
    fn secrets_are_masked_and_nothing_else() {
        assert_eq!(
            mask_secrets("etcdctl --user=root:hunter2 --password=s3cret put k v"),
            "etcdctl --user=root:*** --password=*** put k v"
        );
        assert_eq!(
            mask_secrets("etcdctl --user root:hunter2 --password s3cret get k"),
            "etcdctl --user root:*** --password *** get k"
        );
        assert_eq!(
            mask_secrets("docker run -e ETCD_ROOT_PASSWORD=pw -e 'ETCDCTL_PASSWORD=a b' img"),
            "docker run -e ETCD_ROOT_PASSWORD=*** -e 'ETCDCTL_PASSWORD=***' img"
        );
        let plain = "docker run -e ETCD_INITIAL_CLUSTER_TOKEN=etcd-drill-1a2b  --name x img";
        assert_eq!(mask_secrets(plain), plain);
        assert_eq!(mask_secrets("etcdctl --user root get k"), "etcdctl --user root get k");
    }

    #[test]
    fn long_lines_wrap_before_options() {
        let line = "docker run --rm --name etcd-drill-1-restore-etcd3 -v vol:/var/lib/etcd -e 'A=b -c' img /usr/local/bin/etcdutl snapshot restore /s.db --name=etcd3";
        let wrapped = wrap_command(line, 60);
        assert!(wrapped.contains(" \\\n    -v vol:/var/lib/etcd"), "{wrapped}");
        assert!(wrapped.contains("-e 'A=b -c' img"), "{wrapped}");
        assert_eq!(wrapped.replace(" \\\n    ", " "), line);
        assert_eq!(wrap_command("etcdctl get k", 60), "etcdctl get k");
    }

    proptest! {
        #[test]
        fn wrapping_never_changes_the_words(words in proptest::collection::vec("[-a-z=:/.]{1,12}", 1..30)) {
            let line = words.join(" ");
            let wrapped = wrap_command(&line, 20);
            prop_assert_eq!(split_words(&wrapped.replace(" \\\n    ", " ")), split_words(&line));
        }

        #[test]
        fn masking_never_leaks_a_password(pw in "Q[0-9]{5,12}") {
            let line = format!("etcdctl --user root:{pw} --password={pw} -e ETCD_ROOT_PASSWORD={pw} put k v");
            prop_assert!(!mask_secrets(&line).contains(&pw));
        }
    }

    #[test]
    fn shell_quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("ETCD_NAME=etcd1"), "ETCD_NAME=etcd1");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn docker_run_line_carries_every_setting() {
        let spec = ContainerSpec {
            name: "c".into(),
            image: "img:1".into(),
            cmd: vec!["/usr/local/bin/etcd".into()],
            env: vec![("ETCD_NAME".into(), "etcd1".into())],
            network: Some(("net".into(), "etcd1".into())),
            peer_network: Some(NetworkAttachment {
                network: "peers".into(),
                alias: "etcd1".into(),
                ipv4: Some("10.0.0.5".into()),
            }),
            volumes: vec![("vol".into(), "/var/lib/etcd".into())],
            publish: Some((2379, 40000)),
            ..ContainerSpec::default()
        };
        assert_eq!(
            docker_run_line(&spec, true, &[]),
            "docker create --name c --network net --network-alias etcd1 -p 127.0.0.1:40000:2379 \
             -v vol:/var/lib/etcd -e ETCD_NAME=etcd1 img:1 /usr/local/bin/etcd \
             && docker network connect --ip 10.0.0.5 --alias etcd1 peers c && docker start c"
        );
    }

    #[test]
    fn copied_files_go_in_between_create_and_start() {
        let spec = ContainerSpec {
            name: "c".into(),
            image: "img:1".into(),
            copied_files: vec![("/tmp/run/snapshot.db".into(), "/init/snapshot.db".into())],
            ..ContainerSpec::default()
        };
        assert_eq!(
            docker_run_line(&spec, true, &[]),
            "docker create --name c img:1 && docker cp snapshot.db c:/init/snapshot.db && docker start c"
        );
    }
}
