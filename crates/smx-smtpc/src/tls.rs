//! STARTTLS for the client (RFC 3207; seed 3.11, 3.13, chapter 11), with
//! rustls and its ring provider.
//!
//! # Opportunistic TLS
//!
//! As MeTA1, smtpc starts TLS whenever the server offers STARTTLS. The
//! server's certificate does not have to verify for that: a handshake
//! with an unverified certificate still encrypts, and refusing it would
//! only send the mail in clear. The handshake signatures are always
//! checked (the server must own its key); the chain and the name are
//! checked against `CAcert_file` / `CAcert_directory` after the handshake,
//! and the result (`verified` or not) is logged and compared with the
//! [`TlsRequirements`]. Without any CA nothing verifies.
//!
//! When the handshake fails (the stream is then unusable), the session
//! is closed and the same host is tried again at once without STARTTLS,
//! unless TLS is required (requirements set): then the requirements are
//! violated (see below). A 4xx/5xx reply to STARTTLS goes on in clear on
//! the same session, again unless TLS is required. Input the server sends after
//! its 220 and before the handshake is the response-injection class of
//! attack: the handshake is not attempted and the host is retried in
//! clear (or fails, when required).
//!
//! # Client certificate
//!
//! With `cert_file` and `key_file` in the `tls` section the client
//! presents that certificate when asked (PEM, as for the server).
//!
//! # Requirements (seed 3.13)
//!
//! Requirements come from the configuration ([`ClientConfig`]'s
//! `tls_requirements`, for every TCP target) and from each delivery
//! (`Delivery::tls_requirements`, from qmgr's `smtpc_session_conf:` and
//! smar's `smtpc_rcpt_conf:` entries). The two are merged and the stricter
//! wins ([`TlsRequirements::merged`]): a flag set in either holds, the
//! larger `min_cipher_bits` holds, and a name given in both must match
//! both.
//!
//! * `verified`: the chain verifies against the CAs and names the host
//!   (the MX name given by qmgr, or the address when there is none);
//! * `encrypted`: the symmetric key length is above 0;
//! * `common_name`: the certificate's subject CN equals the value (ASCII
//!   case-insensitive);
//! * `cert_subject`, `cert_issuer`: the certificate's subject or issuer
//!   DN, written `/C=US/O=Example/CN=name` (most significant first, keys
//!   as OpenSSL abbreviates them), equals the value, ASCII
//!   case-insensitive ([`smx_conf::session_conf::dn_matches`]; map values
//!   are decoded from the seed's `+XX` form when they are parsed);
//! * `min_cipher_bits`: the symmetric key length is at least the value.
//!
//! Any requirement makes TLS mandatory for the target: no clear-text
//! fallback after a failed handshake, STARTTLS refused or not offered, or
//! no TLS configured. A session that does not meet them fails the
//! delivery's recipients as `requirements_violation` says (the
//! delivery's, else the configuration's, else `tempfail`):
//!
//! | violation | recipients | session | other targets |
//! | --- | --- | --- | --- |
//! | `tempfail` | temporary, `451 4.7.5` | QUIT | tried next |
//! | `permfail` | permanent, `550 5.7.5` | QUIT | not tried |
//! | `abort` | temporary, `421 4.7.5` | closed at once, without QUIT | not tried |
//!
//! An idle session is reused for a delivery only if its own TLS state
//! meets that delivery's requirements (a session opened in clear, or
//! with a certificate that does not meet them, is not reused for it).
//!
//! [`ClientConfig`]: crate::ClientConfig

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use smx_conf::model::common::TlsFiles;
use smx_conf::session_conf::dn_matches;
use smx_ipc::qmgr_smtpc::{RequirementsViolation, TlsRequirements as IpcTlsRequirements};
use tokio_rustls::TlsConnector;

pub use smx_tls::{MAX_CA_DIR_FILES, cipher_bits, dn};
use smx_tls::{provider, read_cas, read_certs, read_key};

/// Why the TLS files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

impl From<smx_tls::FileError> for TlsError {
    fn from(e: smx_tls::FileError) -> Self {
        TlsError::File {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// What a target requires of TLS; see the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsRequirements {
    /// The certificate must verify (chain and name).
    pub verified: bool,
    /// The session must be encrypted (key bits above 0).
    pub encrypted: bool,
    /// The subject CN must be each of these (ASCII case-insensitive).
    pub common_name: Vec<String>,
    /// The subject DN must be each of these (decoded `/KEY=value/...`).
    pub cert_subject: Vec<String>,
    /// The issuer DN must be each of these.
    pub cert_issuer: Vec<String>,
    /// Least symmetric key bits.
    pub min_cipher_bits: u32,
    /// What a violation does; `None`: `tempfail`.
    pub violation: Option<RequirementsViolation>,
}

impl TlsRequirements {
    /// Whether anything is required (then TLS is mandatory).
    pub fn any(&self) -> bool {
        self.verified
            || self.encrypted
            || !self.common_name.is_empty()
            || !self.cert_subject.is_empty()
            || !self.cert_issuer.is_empty()
            || self.min_cipher_bits > 0
    }

    /// What a violation does (`tempfail` unless set).
    pub fn on_violation(&self) -> RequirementsViolation {
        self.violation.unwrap_or(RequirementsViolation::TempFail)
    }

    /// These requirements and `other`'s together, the stricter winning
    /// (see the module doc); `other`'s `violation` wins when it has one.
    pub fn merged(&self, other: &TlsRequirements) -> TlsRequirements {
        let join = |a: &[String], b: &[String], same: fn(&str, &str) -> bool| {
            let mut out = a.to_vec();
            for x in b {
                if !out.iter().any(|y| same(x, y)) {
                    out.push(x.clone());
                }
            }
            out
        };
        TlsRequirements {
            verified: self.verified || other.verified,
            encrypted: self.encrypted || other.encrypted,
            common_name: join(&self.common_name, &other.common_name, |a, b| {
                a.eq_ignore_ascii_case(b)
            }),
            cert_subject: join(&self.cert_subject, &other.cert_subject, dn_matches),
            cert_issuer: join(&self.cert_issuer, &other.cert_issuer, dn_matches),
            min_cipher_bits: self.min_cipher_bits.max(other.min_cipher_bits),
            violation: other.violation.or(self.violation),
        }
    }

    /// The first requirement `info` does not meet.
    pub fn check(&self, info: &TlsInfo) -> Result<(), String> {
        if self.verified && !info.verified {
            return Err("certificate not verified".into());
        }
        if self.encrypted && info.bits == 0 {
            return Err("not encrypted".into());
        }
        for cn in &self.common_name {
            if !info
                .common_name
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(cn))
            {
                return Err(format!(
                    "common name {} is not {cn}",
                    info.common_name.as_deref().unwrap_or("(none)")
                ));
            }
        }
        for (what, want, got) in [
            ("subject", &self.cert_subject, &info.subject),
            ("issuer", &self.cert_issuer, &info.issuer),
        ] {
            for w in want {
                if !got.as_deref().is_some_and(|g| dn_matches(w, g)) {
                    return Err(format!(
                        "cert {what} {} is not {w}",
                        got.as_deref().unwrap_or("(none)")
                    ));
                }
            }
        }
        if info.bits < self.min_cipher_bits {
            return Err(format!(
                "cipher bits {} below {}",
                info.bits, self.min_cipher_bits
            ));
        }
        Ok(())
    }

    /// Whether a session with this TLS state (`None`: clear text) meets
    /// the requirements.
    pub fn met_by(&self, tls: Option<&TlsInfo>) -> bool {
        if !self.any() {
            return true;
        }
        tls.is_some_and(|i| self.check(i).is_ok())
    }
}

impl From<&IpcTlsRequirements> for TlsRequirements {
    fn from(r: &IpcTlsRequirements) -> Self {
        TlsRequirements {
            verified: r.verified,
            encrypted: r.encrypted,
            common_name: r.common_name.iter().cloned().collect(),
            cert_subject: r.cert_subject.iter().cloned().collect(),
            cert_issuer: r.cert_issuer.iter().cloned().collect(),
            min_cipher_bits: r.min_cipher_bits,
            violation: r.violation,
        }
    }
}

/// What a finished handshake gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// The IANA name of the cipher suite.
    pub cipher: String,
    /// Symmetric key bits.
    pub bits: u32,
    /// The chain and name verified.
    pub verified: bool,
    /// The subject CN of the server certificate.
    pub common_name: Option<String>,
    /// The subject DN of the server certificate (`/C=US/O=Example/CN=x`).
    pub subject: Option<String>,
    /// The issuer DN of the server certificate.
    pub issuer: Option<String>,
}

/// The client's TLS state, shared by all sessions.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("has_cas", &self.verifier.is_some())
            .finish()
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(self.connector.config(), other.connector.config())
    }
}

impl Eq for TlsClient {}

impl TlsClient {
    /// Opportunistic TLS without files: no client certificate, nothing
    /// verifies.
    pub fn opportunistic() -> Result<TlsClient, TlsError> {
        TlsClient::load(&TlsFiles::default())
    }

    /// Loads the `tls` section's files; see the module doc.
    pub fn load(files: &TlsFiles) -> Result<TlsClient, TlsError> {
        let provider = provider();
        let roots = read_cas(
            files.ca_cert_file.as_deref(),
            files.ca_cert_directory.as_deref(),
        )?;
        let verifier = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?,
            )
        };
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Lenient { provider }));
        let config = match (&files.cert_file, &files.key_file) {
            (Some(c), Some(k)) => {
                let chain = read_certs(c)?;
                let key = read_key(k)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Rustls(e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            verifier,
        })
    }

    /// The connector for handshakes.
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// What a finished handshake with `name` gave.
    pub fn info(&self, conn: &rustls::ClientConnection, name: &ServerName<'_>) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_string(),
        };
        let cipher = conn.negotiated_cipher_suite().map_or_else(
            || "unknown".to_string(),
            |s| {
                s.suite()
                    .as_str()
                    .map_or_else(|| format!("{:?}", s.suite()), str::to_string)
            },
        );
        let certs = conn.peer_certificates().unwrap_or(&[]);
        let verified = match (&self.verifier, certs.split_first()) {
            (Some(v), Some((leaf, rest))) => v
                .verify_server_cert(leaf, rest, name, &[], UnixTime::now())
                .is_ok(),
            _ => false,
        };
        let parsed = certs
            .first()
            .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok());
        let (common_name, subject, issuer) = match parsed {
            Some((_, c)) => {
                let cn = c
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|v| v.as_str().ok())
                    .map(|cn| cn.chars().filter(|c| !c.is_control()).collect());
                (cn, Some(dn(c.subject())), Some(dn(c.issuer())))
            }
            None => (None, None, None),
        };
        TlsInfo {
            bits: cipher_bits(&cipher),
            version,
            cipher,
            verified,
            common_name,
            subject,
            issuer,
        }
    }
}

/// The name to send (SNI) and verify for a target label
/// (`name[address]:port` or `[address]:port`).
pub fn server_name(label: &str, addr: std::net::IpAddr) -> ServerName<'static> {
    let name = label.split('[').next().unwrap_or("").trim_end_matches('.');
    match ServerName::try_from(name.to_string()) {
        Ok(n @ ServerName::DnsName(_)) => n,
        _ => ServerName::IpAddress(addr.into()),
    }
}

/// Accepts any chain during the handshake (it is judged after), but
/// checks the handshake signatures.
#[derive(Debug)]
struct Lenient {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_labels() {
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap_or([0, 0, 0, 0].into());
        assert!(matches!(
            server_name("mx.example.org[192.0.2.1]:25", ip),
            ServerName::DnsName(d) if d.as_ref() == "mx.example.org"
        ));
        assert!(matches!(
            server_name("[192.0.2.1]:25", ip),
            ServerName::IpAddress(_)
        ));
    }

    #[test]
    fn requirements() {
        let info = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            bits: 128,
            verified: false,
            common_name: Some("mx.example.org".into()),
            subject: Some("/C=US/O=Example/CN=mx.example.org".into()),
            issuer: Some("/C=US/O=Example CA".into()),
        };
        assert!(!TlsRequirements::default().any());
        assert!(TlsRequirements::default().check(&info).is_ok());
        let v = TlsRequirements {
            verified: true,
            ..TlsRequirements::default()
        };
        assert!(v.any() && v.check(&info).is_err());
        let cn = TlsRequirements {
            common_name: vec!["MX.example.org".into()],
            ..TlsRequirements::default()
        };
        assert!(cn.check(&info).is_ok());
        let cn = TlsRequirements {
            common_name: vec!["other.example".into()],
            ..TlsRequirements::default()
        };
        assert!(cn.check(&info).is_err());
        let bits = TlsRequirements {
            min_cipher_bits: 256,
            ..TlsRequirements::default()
        };
        assert!(bits.check(&info).is_err());
        let enc = TlsRequirements {
            encrypted: true,
            ..TlsRequirements::default()
        };
        assert!(enc.any() && enc.check(&info).is_ok());
        let clear = TlsInfo {
            bits: 0,
            ..info.clone()
        };
        assert!(enc.check(&clear).is_err());
        let dn = |s: &str, i: &str| TlsRequirements {
            cert_subject: vec![s.into()],
            cert_issuer: vec![i.into()],
            ..TlsRequirements::default()
        };
        assert!(
            dn("/c=us/o=example/cn=MX.EXAMPLE.ORG", "/C=US/O=Example CA")
                .check(&info)
                .is_ok()
        );
        assert!(
            dn("/C=US/O=Example/CN=mx.example.org", "/C=US/O=Other CA")
                .check(&info)
                .is_err()
        );
        assert!(
            dn("/C=US/CN=mx.example.org", "/C=US/O=Example CA")
                .check(&info)
                .is_err()
        );
        assert!(enc.met_by(Some(&info)) && !enc.met_by(None));
        assert!(TlsRequirements::default().met_by(None));
    }

    #[test]
    fn merging_keeps_the_stricter() {
        let global = TlsRequirements {
            verified: true,
            common_name: vec!["mx.example.org".into()],
            min_cipher_bits: 256,
            violation: Some(RequirementsViolation::Abort),
            ..TlsRequirements::default()
        };
        let delivery = TlsRequirements::from(&IpcTlsRequirements {
            encrypted: true,
            common_name: Some("MX.EXAMPLE.ORG".into()),
            cert_issuer: Some("/O=CA".into()),
            min_cipher_bits: 128,
            ..IpcTlsRequirements::default()
        });
        let m = global.merged(&delivery);
        assert!(m.verified && m.encrypted);
        assert_eq!(m.common_name, vec!["mx.example.org".to_string()]);
        assert_eq!(m.cert_issuer, vec!["/O=CA".to_string()]);
        assert_eq!(m.min_cipher_bits, 256);
        assert_eq!(m.on_violation(), RequirementsViolation::Abort);
        let other = TlsRequirements {
            common_name: vec!["other.example".into()],
            violation: Some(RequirementsViolation::PermFail),
            ..TlsRequirements::default()
        };
        let m = m.merged(&other);
        assert_eq!(m.common_name.len(), 2);
        assert_eq!(m.on_violation(), RequirementsViolation::PermFail);
        assert_eq!(
            TlsRequirements::default().on_violation(),
            RequirementsViolation::TempFail
        );
    }
}
