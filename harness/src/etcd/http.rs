//! Plain HTTP GETs on a member's client port, where etcd serves `/version` and `/metrics`
//! beside gRPC. HTTP/1.0 over a TCP stream: two fixed paths, no TLS, no keep-alive, so a
//! client crate would add a dependency tree for nothing (members with TLS on are not read
//! this way; callers say "unknown").

use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` from `endpoint` (`http://host:port`); the body of a 200 answer.
pub async fn get(endpoint: &str, path: &str, timeout: Duration) -> Result<String, String> {
    let authority = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("{endpoint}: only http:// endpoints can be read"))?
        .trim_end_matches('/');
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: */*\r\n\r\n");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let bytes = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{endpoint}{path}: no answer within {} ms", timeout.as_millis()))?
        .map_err(|e| format!("{endpoint}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{endpoint}{path}: not an HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        return Err(format!("{endpoint}{path}: {status}"));
    }
    Ok(body.to_string())
}

/// What `/version` says: the member's own release, the cluster version (the lowest minor
/// every member runs, decided by the leader) and, from etcd 3.6 on, the storage version
/// of its data (`storage`; absent before 3.6).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Versions {
    #[serde(rename = "etcdserver")]
    pub server: String,
    #[serde(rename = "etcdcluster")]
    pub cluster: String,
    #[serde(default)]
    pub storage: Option<String>,
}

pub fn parse_versions(body: &str) -> Result<Versions, String> {
    serde_json::from_str(body.trim()).map_err(|e| format!("/version is not etcd's answer ({e}): {}", body.trim()))
}

/// `/version` of the member at `endpoint`.
pub async fn versions(endpoint: &str, timeout: Duration) -> Result<Versions, String> {
    parse_versions(&get(endpoint, "/version", timeout).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_answers_are_read_and_junk_is_refused() {
        let v = parse_versions(r#"{"etcdserver":"3.5.30","etcdcluster":"3.4.0"}"#).unwrap();
        assert_eq!((v.server.as_str(), v.cluster.as_str()), ("3.5.30", "3.4.0"));
        assert_eq!(v.storage, None);
        // etcd 3.6's answer, as its upgrade guide shows it (no 3.6 binary runs here).
        let v = parse_versions(r#"{"etcdserver":"3.6.13","etcdcluster":"3.6.0","storage":"3.6.0"}"#).unwrap();
        assert_eq!(v.storage.as_deref(), Some("3.6.0"));
        assert!(parse_versions("404 page not found").is_err());
    }
}
