//! Test certificates made with rcgen: a CA, a server certificate it
//! signs, client certificates (signed by the CA, or self-signed), written
//! as PEM files; and a rustls client connector.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// One certificate and key as PEM files.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Pki {
    pub ca: Pem,
    pub server: Pem,
    pub client: Pem,
    pub rogue_client: Pem,
}

fn write(dir: &Path, name: &str, cert: &str, key: &str) -> Pem {
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    Pem { cert: c, key: k }
}

fn dn(params: &mut CertificateParams, cn: &str) {
    params
        .distinguished_name
        .push(DnType::OrganizationName, "smx test");
    params.distinguished_name.push(DnType::CommonName, cn);
}

/// Makes the test PKI under `dir`; the server certificate names `host`.
pub fn make(dir: &Path, host: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    dn(&mut ca_params, "smx test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let srv_key = KeyPair::generate().unwrap();
    let mut srv_params = CertificateParams::new(vec![host.to_string()]).unwrap();
    dn(&mut srv_params, host);
    srv_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let srv = srv_params.signed_by(&srv_key, &ca, &ca_key).unwrap();

    let cl_key = KeyPair::generate().unwrap();
    let mut cl_params = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    dn(&mut cl_params, "client.example");
    cl_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cl = cl_params.signed_by(&cl_key, &ca, &ca_key).unwrap();

    let rogue_key = KeyPair::generate().unwrap();
    let mut rogue_params = CertificateParams::new(vec!["rogue.example".to_string()]).unwrap();
    dn(&mut rogue_params, "rogue.example");
    rogue_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let rogue = rogue_params.self_signed(&rogue_key).unwrap();

    Pki {
        ca: write(dir, "ca", &ca.pem(), &ca_key.serialize_pem()),
        server: write(dir, "server", &srv.pem(), &srv_key.serialize_pem()),
        client: write(dir, "client", &cl.pem(), &cl_key.serialize_pem()),
        rogue_client: write(dir, "rogue", &rogue.pem(), &rogue_key.serialize_pem()),
    }
}

/// A TLS connector trusting `ca`, presenting `client` if given.
pub fn connector(ca: &Path, client: Option<&Pem>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match client {
        Some(p) => {
            let chain = CertificateDer::pem_file_iter(&p.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(&p.key).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// Runs a TLS handshake as client over `tcp`.
pub async fn tls_connect(
    c: &tokio_rustls::TlsConnector,
    host: &str,
    tcp: Box<dyn super::Io>,
) -> std::io::Result<tokio_rustls::client::TlsStream<Box<dyn super::Io>>> {
    let name = ServerName::try_from(host.to_string()).unwrap();
    c.connect(name, tcp).await
}

/// A TCP connection.
pub async fn tcp(addr: std::net::SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}
