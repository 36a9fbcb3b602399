//! Where backups live: a local directory or a prefix in an S3-compatible bucket, both
//! through the `object_store` crate. Every file is written with a `.sha256` sidecar, and a
//! `HEAD` file records the last revision the agent saved, so that a restore notices a
//! missing newest delta.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

use super::chain::{check_hash, ChainError};
use super::naming::{hash_file, DeltaName, FullName, StoredName};
use super::record::{encode, DeltaEvent};
use crate::error::{Error, Result};

/// The file that records the last revision saved.
pub const HEAD_FILE: &str = "HEAD";

/// A backup store's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A directory on this machine (created if missing).
    Local(PathBuf),
    /// `s3://bucket/prefix`; the endpoint (for S3-compatible servers) and the region are
    /// optional, credentials come from the usual `AWS_*` environment variables.
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
    },
}

impl StoreLocation {
    /// `s3://bucket/prefix` or a directory path.
    pub fn parse(spec: &str, endpoint: Option<&str>, region: Option<&str>) -> Result<StoreLocation> {
        let Some(rest) = spec.strip_prefix("s3://") else {
            if spec.is_empty() {
                return Err(Error::InvalidArgument {
                    argument: "--store".into(),
                    message: "is empty; give a directory or s3://bucket/prefix".into(),
                });
            }
            return Ok(StoreLocation::Local(PathBuf::from(spec)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::InvalidArgument {
                argument: "--store".into(),
                message: format!("`{spec}` names no bucket; use s3://bucket/prefix"),
            });
        }
        Ok(StoreLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: endpoint.map(String::from),
            region: region.map(String::from),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Local(dir) => dir.display().to_string(),
            StoreLocation::S3 {
                bucket,
                prefix,
                endpoint,
                ..
            } => match endpoint {
                Some(e) => format!("s3://{bucket}/{prefix} at {e}"),
                None => format!("s3://{bucket}/{prefix}"),
            },
        }
    }
}

/// What a store holds, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Oldest first.
    pub fulls: Vec<FullName>,
    /// By first revision.
    pub deltas: Vec<DeltaName>,
    /// The last revision the agent recorded as saved.
    pub head: Option<i64>,
    /// Bytes of all fulls and deltas as stored.
    pub bytes: u64,
}

/// A backup store.
#[derive(Clone)]
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
    pub location: StoreLocation,
}

impl BackupStore {
    pub fn open(location: StoreLocation) -> Result<BackupStore> {
        let fail = |message: String| Error::BackupStore {
            location: location.describe(),
            message,
        };
        let (store, prefix): (Arc<dyn ObjectStore>, Option<ObjectPath>) = match &location {
            StoreLocation::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| fail(e.to_string()))?;
                (Arc::new(fs), None)
            }
            StoreLocation::S3 {
                bucket,
                prefix,
                endpoint,
                region,
            } => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region.clone().unwrap_or_else(|| "us-east-1".into()));
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                let s3 = builder.build().map_err(|e| fail(e.to_string()))?;
                let prefix = (!prefix.is_empty())
                    .then(|| ObjectPath::parse(prefix))
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?;
                (Arc::new(s3), prefix)
            }
        };
        Ok(BackupStore {
            store,
            prefix,
            location,
        })
    }

    fn path(&self, name: &str) -> ObjectPath {
        match &self.prefix {
            Some(p) => p.child(name),
            None => ObjectPath::from(name),
        }
    }

    fn fail(&self, action: &str, name: &str) -> impl FnOnce(object_store::Error) -> Error + '_ {
        let what = format!("{action} {name}");
        move |e| Error::BackupStore {
            location: self.location.describe(),
            message: format!("{what}: {e}"),
        }
    }

    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map_err(self.fail("write", name))?;
        Ok(())
    }

    /// Writes `bytes` and then its `.sha256` sidecar; returns the hex digest.
    pub async fn put_with_hash(&self, name: &str, bytes: Vec<u8>) -> Result<String> {
        let digest = hex::encode(Sha256::digest(&bytes));
        self.put(name, bytes).await?;
        self.put(&hash_file(name), format!("{digest}  {name}\n").into_bytes())
            .await?;
        Ok(digest)
    }

    /// Encodes, compresses and writes one delta with its sidecar, then moves the head to
    /// its last revision; returns (encoded bytes, stored bytes).
    pub async fn put_delta(&self, name: &DeltaName, events: &[DeltaEvent]) -> Result<(u64, u64)> {
        let encoded = encode(events);
        let stored = name.compression.compress(&encoded);
        let sizes = (encoded.len() as u64, stored.len() as u64);
        self.put_with_hash(&name.file(), stored).await?;
        self.set_head(name.last).await?;
        Ok(sizes)
    }

    pub async fn get(&self, name: &str) -> Result<Vec<u8>> {
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(self.fail("read", name))?;
        Ok(got.bytes().await.map_err(self.fail("read", name))?.to_vec())
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("delete", name)(e)),
        }
    }

    /// Deletes a file and its sidecar.
    pub async fn delete_with_hash(&self, name: &str) -> Result<()> {
        self.delete(name).await?;
        self.delete(&hash_file(name)).await
    }

    /// Names and sizes of the files directly under the store's prefix.
    pub async fn list(&self) -> Result<Vec<(String, u64)>> {
        let listed = self
            .store
            .list_with_delimiter(self.prefix.as_ref())
            .await
            .map_err(self.fail("list", "files"))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| Some((o.location.filename()?.to_string(), o.size)))
            .collect())
    }

    pub async fn catalog(&self) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        for (name, size) in self.list().await? {
            match StoredName::parse(&name) {
                Some(StoredName::Full(f)) => {
                    catalog.fulls.push(f);
                    catalog.bytes += size;
                }
                Some(StoredName::Delta(d)) => {
                    catalog.deltas.push(d);
                    catalog.bytes += size;
                }
                None if name == HEAD_FILE => {
                    let text = self.get(HEAD_FILE).await?;
                    catalog.head = String::from_utf8_lossy(&text).trim().parse().ok();
                }
                None => {}
            }
        }
        catalog.fulls.sort_by_key(|f| (f.revision, f.taken_unix_ms));
        catalog.deltas.sort_by_key(|d| (d.first, d.last));
        Ok(catalog)
    }

    pub async fn set_head(&self, revision: i64) -> Result<()> {
        self.put(HEAD_FILE, format!("{revision}\n").into_bytes()).await
    }

    /// Reads a file, checks it against its sidecar and decompresses it.
    pub async fn fetch_verified(&self, name: &StoredName) -> Result<Vec<u8>, ChainError> {
        let file = name.file();
        let bytes = self.get(&file).await.map_err(|e| ChainError::Unreadable {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let sidecar = self.get(&hash_file(&file)).await.map_err(|e| ChainError::MissingHash {
            file: file.clone(),
            message: e.to_string(),
        })?;
        check_hash(&file, &bytes, &String::from_utf8_lossy(&sidecar))?;
        let compression = match name {
            StoredName::Full(f) => f.compression,
            StoredName::Delta(d) => d.compression,
        };
        compression.decompress(&bytes).map_err(|e| ChainError::Unreadable {
            file,
            message: format!("cannot decompress: {e}"),
        })
    }
}
