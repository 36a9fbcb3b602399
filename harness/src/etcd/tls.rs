//! TLS on a drill's cluster: a throwaway CA made for the run (rcgen), a server and a peer
//! certificate for every member (names: the member's, `localhost`; addresses: its peer
//! network address and 127.0.0.1, where its client port is published), and a client
//! certificate for the harness (common name `etcd-drill-client`, not a user). The member
//! files go into the containers through the archive API, the client's stay in memory;
//! only a cluster kept running (`--keep`) gets the CA, the client certificate and its key
//! written into its report folder, for its user to reach it. The report shows the
//! `--cacert/--cert/--key` flags a runbook needs, never a key.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

use crate::error::{Error, Result};

/// Where the member files are in a member's container.
pub const CERT_DIR: &str = "/etc/etcd-drill/tls";
/// How recorded `etcdctl` commands show the client's TLS files.
pub const ETCDCTL_FLAGS: &str = "--cacert=ca.crt --cert=client.crt --key=client.key";

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertifiedKey(key ***)")
    }
}

/// The run's CA and every certificate it signed.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    pub ca_pem: String,
    pub client: CertifiedKey,
    /// Per member, in topology order: (name, server certificate, peer certificate).
    pub members: Vec<(String, CertifiedKey, CertifiedKey)>,
}

fn failed(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::Procedure {
        step: format!("generate the run's {what}"),
        message: e.to_string(),
    }
}

fn leaf(
    common_name: &str,
    names: &[String],
    addresses: &[IpAddr],
    usages: Vec<ExtendedKeyUsagePurpose>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<CertifiedKey> {
    let mut params = CertificateParams::new(names.to_vec()).map_err(failed(common_name))?;
    params
        .subject_alt_names
        .extend(addresses.iter().map(|a| SanType::IpAddress(*a)));
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = usages;
    let key = KeyPair::generate().map_err(failed(common_name))?;
    let cert = params.signed_by(&key, issuer).map_err(failed(common_name))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl ClusterTls {
    /// A CA and the certificates for `members` (name, peer network address).
    pub fn generate(members: &[(String, IpAddr)]) -> Result<ClusterTls> {
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed("CA"))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "etcd-drill throwaway CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(failed("CA"))?;
        let ca_pem = ca.self_signed(&ca_key).map_err(failed("CA"))?.pem();
        let issuer = Issuer::new(ca, ca_key);
        let both = || vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let loopback: IpAddr = [127, 0, 0, 1].into();
        let mut certs = Vec::new();
        for (name, ip) in members {
            let names = vec![name.clone(), "localhost".to_string()];
            let server = leaf(name, &names, &[*ip, loopback], both(), &issuer)?;
            let peer = leaf(name, &names[..1], &[*ip], both(), &issuer)?;
            certs.push((name.clone(), server, peer));
        }
        // Not `root`: etcd takes a client certificate's common name as the user when a
        // request carries no token, and the password must stay the only way in.
        let client = leaf(
            "etcd-drill-client",
            &[],
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            &issuer,
        )?;
        Ok(ClusterTls {
            ca_pem,
            client,
            members: certs,
        })
    }

    /// A tar archive of `member`'s files, to unpack at `/` in its container (readable by
    /// any uid the member may run as).
    pub fn member_archive(&self, member: &str) -> Result<Vec<u8>> {
        let (_, server, peer) =
            self.members
                .iter()
                .find(|(n, _, _)| n == member)
                .ok_or_else(|| Error::InvalidArgument {
                    argument: "member".into(),
                    message: format!("no certificate for `{member}`"),
                })?;
        let files: Vec<(String, &[u8])> = [
            ("ca.crt", self.ca_pem.as_bytes()),
            ("server.crt", server.cert_pem.as_bytes()),
            ("server.key", server.key_pem.as_bytes()),
            ("peer.crt", peer.cert_pem.as_bytes()),
            ("peer.key", peer.key_pem.as_bytes()),
        ]
        .into_iter()
        .map(|(f, b)| (format!("{CERT_DIR}/{f}"), b))
        .collect();
        let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        crate::docker::runtime::tar_archive(&borrowed).map_err(Error::io(CERT_DIR))
    }

    /// The etcd settings that turn TLS on, with client certificates required, on both ports.
    pub fn member_env() -> Vec<(String, String)> {
        let file = |f: &str| format!("{CERT_DIR}/{f}");
        [
            ("ETCD_CERT_FILE", file("server.crt")),
            ("ETCD_KEY_FILE", file("server.key")),
            ("ETCD_TRUSTED_CA_FILE", file("ca.crt")),
            ("ETCD_CLIENT_CERT_AUTH", "true".into()),
            ("ETCD_PEER_CERT_FILE", file("peer.crt")),
            ("ETCD_PEER_KEY_FILE", file("peer.key")),
            ("ETCD_PEER_TRUSTED_CA_FILE", file("ca.crt")),
            ("ETCD_PEER_CLIENT_CERT_AUTH", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The harness's client settings: the run's CA and the client certificate.
    /// Writes `ca.crt`, `client.crt` and `client.key` (mode 0600) into `dir`: for a kept
    /// cluster only, whose user needs them to reach it. Nothing else writes keys to disk.
    pub fn write_client_files(&self, dir: &std::path::Path) -> crate::error::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        for (name, text, private) in [
            ("ca.crt", &self.ca_pem, false),
            ("client.crt", &self.client.cert_pem, false),
            ("client.key", &self.client.key_pem, true),
        ] {
            let path = dir.join(name);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            if private {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let _ = private;
            let mut file = options.open(&path).map_err(Error::io(&path))?;
            file.write_all(text.as_bytes()).map_err(Error::io(&path))?;
            // A key file that existed keeps its old mode unless it is set again.
            #[cfg(unix)]
            if private {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(Error::io(&path))?;
            }
        }
        Ok(())
    }

    pub fn client_options(&self) -> etcd_client::TlsOptions {
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(&self.ca_pem))
            .identity(etcd_client::Identity::from_pem(
                &self.client.cert_pem,
                &self.client.key_pem,
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_gets_server_and_peer_certificates_from_one_ca() {
        let members = vec![
            ("etcd1".to_string(), IpAddr::from([10, 213, 7, 10])),
            ("etcd2".to_string(), IpAddr::from([10, 213, 7, 11])),
        ];
        let tls = ClusterTls::generate(&members).unwrap();
        assert!(tls.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(tls.members.len(), 2);
        assert!(tls.client.key_pem.contains("PRIVATE KEY"));
        let archive = tls.member_archive("etcd2").unwrap();
        let names = crate::docker::runtime::tar_file_names(&archive).unwrap();
        assert_eq!(
            names,
            ["ca.crt", "server.crt", "server.key", "peer.crt", "peer.key"]
                .iter()
                .map(|f| format!("etc/etcd-drill/tls/{f}"))
                .collect::<Vec<_>>()
        );
        assert!(tls.member_archive("etcd9").is_err());
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn members_require_client_certificates_on_both_ports() {
        let env: std::collections::BTreeMap<String, String> = ClusterTls::member_env().into_iter().collect();
        assert_eq!(env["ETCD_CLIENT_CERT_AUTH"], "true");
        assert_eq!(env["ETCD_PEER_CLIENT_CERT_AUTH"], "true");
        assert_eq!(env["ETCD_PEER_TRUSTED_CA_FILE"], "/etc/etcd-drill/tls/ca.crt");
    }
}
