//! The backup store on a real S3-compatible server: moto's server mode, started here on
//! 127.0.0.1 (`pip install 'moto[server]'`; scripts/prepare installs it). A full snapshot
//! and deltas go in through the same calls the agent uses, and come back checked; a
//! damaged delta and a missing one are refused by name. The test is skipped, saying so,
//! only when `moto_server` is not installed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_drill::backup::chain::ChainError;
use etcd_drill::backup::replay::prepare;
use etcd_drill::backup::{BackupStore, Compression, DeltaEvent, DeltaName, EventKind, FullName, StoreLocation};
use etcd_drill::Error;
use sha2::{Digest, Sha256};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts moto's S3 server, or None when it is not installed.
fn start_moto() -> Option<(Moto, u16)> {
    // Through the interpreter, so that a `pip install --user` outside PATH works too.
    let installed = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return None;
    }
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto is installed but its server did not start");
    let child = Moto(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((child, port))
}

/// Creates a bucket with a plain `PUT /bucket` (moto accepts it unsigned).
fn create_bucket(port: u16, bucket: &str) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "create bucket: {answer}");
}

fn put(revision: i64, key: &str) -> DeltaEvent {
    DeltaEvent {
        kind: EventKind::Put,
        revision,
        create_revision: revision,
        version: 1,
        lease: 0,
        key: key.as_bytes().to_vec(),
        value: vec![b'v'; 64],
    }
}

fn delta(first: i64, last: i64) -> DeltaName {
    DeltaName {
        first,
        last,
        compression: Compression::Gzip,
    }
}

#[test]
fn the_backup_store_works_against_an_s3_compatible_server() {
    let Some((_moto, port)) = start_moto() else {
        eprintln!(
            "SKIPPED: moto (python3 -m moto.server) is not installed, so the S3 path was not tested. Install it with \
             `pip install 'moto[server]'` (scripts/prepare does)."
        );
        return;
    };
    create_bucket(port, "backups");
    // moto takes any credentials; object_store reads them from the environment.
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let endpoint = format!("http://127.0.0.1:{port}");
    let location = StoreLocation::parse("s3://backups/cluster-a/etcd", Some(&endpoint), None).unwrap();
    let store = BackupStore::open(location).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A full snapshot at revision 10 (a `snapshot save` file ends with its SHA-256).
        let mut snapshot = b"pretend bbolt pages".repeat(100);
        let trailer = Sha256::digest(&snapshot);
        snapshot.extend_from_slice(&trailer);
        let full = FullName {
            revision: 10,
            taken_unix_ms: 1,
            compression: Compression::Gzip,
        };
        store
            .put_with_hash(&full.file(), Compression::Gzip.compress(&snapshot))
            .await
            .unwrap();
        let first = delta(11, 12);
        let second = delta(13, 15);
        store
            .put_delta(&first, &[put(11, "/a"), put(12, "/b"), put(12, "/c")])
            .await
            .unwrap();
        store
            .put_delta(&second, &[put(13, "/a"), put(14, "/d"), put(15, "/e")])
            .await
            .unwrap();

        let catalog = store.catalog().await.unwrap();
        assert_eq!(catalog.fulls, vec![full]);
        assert_eq!(catalog.deltas, vec![first, second]);
        assert_eq!(catalog.head, Some(15));
        let names: Vec<String> = store.list().await.unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&format!("{}.sha256", second.file())), "{names:?}");

        let prepared = prepare(&store, None, false).await.unwrap();
        assert_eq!(prepared.full_bytes, snapshot);
        assert_eq!(prepared.target_revision(), 15);
        assert_eq!(prepared.deltas.iter().map(|(_, e)| e.len()).sum::<usize>(), 6);

        // One byte flipped in the second delta: refused, naming it; or stop before it.
        let mut bytes = store.get(&second.file()).await.unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        store.put(&second.file(), bytes).await.unwrap();
        let e = prepare(&store, None, false).await.err().expect("a bad hash is refused");
        assert!(
            matches!(&e, Error::BackupChain { source: ChainError::BadHash { file, .. }, .. } if *file == second.file()),
            "{e}"
        );
        assert!(e.to_string().contains("s3://backups/cluster-a/etcd"), "{e}");
        let partial = prepare(&store, None, true).await.unwrap();
        assert_eq!(partial.target_revision(), 12);
        assert!(partial.stopped.is_some());

        // The first delta gone: a gap right after the full, named.
        store.delete_with_hash(&first.file()).await.unwrap();
        let e = prepare(&store, None, false).await.err().expect("a gap is refused");
        assert!(
            matches!(
                &e,
                Error::BackupChain {
                    source: ChainError::Gap { end: 10, start: 13, .. },
                    ..
                }
            ),
            "{e}"
        );
    });
}
