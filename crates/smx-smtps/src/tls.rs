//! TLS for the server: STARTTLS (RFC 3207) and implicit TLS (RFC 8314),
//! with rustls and its ring provider (seed 3.10 item 21, chapter 11).
//!
//! [`TlsServer::load`] reads the `tls` section's files, all PEM:
//! `cert_file` (the chain, leaf first), `key_file` (PKCS#8, PKCS#1 or
//! SEC1), `CAcert_file` (any number of CA certificates) and every regular
//! file in `CAcert_directory` (at most [`MAX_CA_DIR_FILES`]; files that
//! hold no PEM certificate, such as the hash links' targets repeated, are
//! read once each and duplicates do no harm). Relative paths are taken as
//! given (relative to the working directory, which mcp sets to the queue
//! directory). `DSA_cert_file` and `DSA_key_file` are ignored.
//!
//! # Client certificates
//!
//! With the `ask_cert` flag and at least one CA certificate, the server
//! asks for a client certificate, naming the CAs' subjects as acceptable
//! issuers. The handshake never fails because of the client's
//! certificate: the handshake signatures are checked (the client must own
//! the key), and the chain is checked against the CAs after the handshake,
//! giving the seed's `verify=` result (10.4):
//!
//! | result | meaning |
//! | --- | --- |
//! | `OK` | a certificate was presented and verified |
//! | `NO` | a certificate was asked for, none presented |
//! | `NOT` | no certificate was asked for |
//! | `FAIL` | a certificate was presented and could not be verified |
//!
//! # Relaying by certificate
//!
//! A verified client certificate (`verify=OK`, never `FAIL`) allows
//! relaying for the session with `allow_relaying_if_verified`; with
//! `check_access_map_for_relaying` (and the `access` flag) smar is asked
//! with the certificate's issuer and subject DNs (`/C=US/O=Example/CN=x`,
//! as in the certificate; smar applies the seed's `+XX` encoding for
//! its `certissuer:` and `certsubject:` lookups) and a `relay` verdict
//! allows relaying.
//!
//! # Requirements (seed 3.10.1, 3.13)
//!
//! A client's `smtps_session_conf:` entry may hold `tls_requirements`
//! ([`smx_conf::session_conf`]); the session checks them at MAIL with
//! [`check_requirements`]. Any requirement fails a session without TLS.
//! `verified`: the client presented a certificate that verified
//! (`verify=OK`); `encrypted`: the cipher's key bits are above 0;
//! `common_name`: the client certificate's subject CN equals the value
//! (ASCII case-insensitive); `cert_subject` / `cert_issuer`: its subject /
//! issuer DN (in the `/C=US/O=Example` form above) equals the value
//! ([`smx_conf::session_conf::dn_matches`]; the map value's `+XX`
//! encoding is decoded when it is parsed); `min_cipher_bits`: the key bits
//! are at least the value. What an unmet requirement does is the
//! session's `requirements_violation` (see [`crate::session`]).
//!
//! # Sessions
//!
//! Resumption uses rustls' in-memory session cache (stateful resumption,
//! [`SESSION_CACHE_ENTRIES`] entries); `cache_timeout` is not applied per
//! entry (rustls' cache has no lifetime), entries leave by eviction.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use smx_conf::model::smtps::SmtpsTls;
use smx_conf::session_conf::{TlsRequirementsConf, dn_matches};
use smx_tls::dn;
pub use smx_tls::{MAX_CA_DIR_FILES, cipher_bits, provider, read_cas, read_certs, read_key};
use tokio_rustls::TlsAcceptor;

/// Entries of the session resumption cache.
pub const SESSION_CACHE_ENTRIES: usize = 1024;

/// Why the TLS configuration could not be loaded.
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
    /// `cert_file` or `key_file` is missing.
    #[error("tls needs cert_file and key_file")]
    Missing,
    /// rustls refused the configuration (e.g. key and certificate differ).
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

/// The server's TLS state, shared by all sessions.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: TlsAcceptor,
    /// A verified client certificate allows relaying.
    pub allow_relaying_if_verified: bool,
    /// A verified client certificate is looked up in the access map
    /// (`certissuer:`, `certsubject:`) for relaying.
    pub check_access_map_for_relaying: bool,
    /// Verifies client chains after the handshake (None: not asked).
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("asks_client_cert", &self.verifier.is_some())
            .finish()
    }
}

impl TlsServer {
    /// Loads the files of a `tls` section; see the module doc.
    pub fn load(c: &SmtpsTls) -> Result<TlsServer, TlsError> {
        let (Some(cert), Some(key)) = (&c.files.cert_file, &c.files.key_file) else {
            return Err(TlsError::Missing);
        };
        let chain = read_certs(cert)?;
        let key = read_key(key)?;
        let provider = provider();
        let verifier = if c.flags.ask_cert {
            let roots = read_cas(
                c.files.ca_cert_file.as_deref(),
                c.files.ca_cert_directory.as_deref(),
            )?;
            if roots.is_empty() {
                None
            } else {
                let inner =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::Rustls(e.to_string()))?;
                Some(inner)
            }
        } else {
            None
        };
        let builder = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &verifier {
            Some(inner) => builder.with_client_cert_verifier(Arc::new(Lenient {
                inner: Arc::clone(inner),
            })),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            allow_relaying_if_verified: c.flags.allow_relaying_if_verified,
            check_access_map_for_relaying: c.flags.check_access_map_for_relaying,
            verifier,
        })
    }

    /// The acceptor for handshakes.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// What a finished handshake gave.
    pub fn info(&self, conn: &rustls::ServerConnection) -> TlsInfo {
        let version = conn.protocol_version().map_or_else(
            || "unknown".to_string(),
            |v| match v {
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                other => format!("{other:?}"),
            },
        );
        let suite = conn.negotiated_cipher_suite();
        let cipher = suite.map_or_else(
            || "unknown".to_string(),
            |s| {
                s.suite()
                    .as_str()
                    .map_or_else(|| format!("{:?}", s.suite()), str::to_string)
            },
        );
        let bits = cipher_bits(&cipher);
        let certs = conn.peer_certificates().unwrap_or(&[]);
        let verify = match (&self.verifier, certs.split_first()) {
            (None, _) => Verify::Not,
            (Some(_), None) => Verify::No,
            (Some(v), Some((leaf, rest))) => {
                match v.verify_client_cert(leaf, rest, UnixTime::now()) {
                    Ok(_) => Verify::Ok,
                    Err(_) => Verify::Fail,
                }
            }
        };
        let (subject, issuer) = certs
            .first()
            .map(|leaf| names(leaf))
            .unwrap_or((None, None));
        let common_name = certs.first().and_then(common_name);
        TlsInfo {
            version,
            cipher,
            bits,
            verify,
            subject,
            issuer,
            common_name,
        }
    }
}

/// The subject and issuer DNs of a certificate, in the seed's form
/// (`/C=US/O=Example/CN=name`).
pub fn names(cert: &CertificateDer<'_>) -> (Option<String>, Option<String>) {
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, c)) => (Some(dn(c.subject())), Some(dn(c.issuer()))),
        Err(_) => (None, None),
    }
}

/// The subject CN of a certificate, control characters removed.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = c.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.chars().filter(|c| !c.is_control()).collect())
}

/// The first `tls_requirements` item that a session with this TLS state
/// (`None`: no TLS) does not meet; see the module doc.
pub fn check_requirements(req: &TlsRequirementsConf, tls: Option<&TlsInfo>) -> Result<(), String> {
    if !req.any() {
        return Ok(());
    }
    let Some(info) = tls else {
        return Err("TLS not used".into());
    };
    if req.flags.verified && info.verify != Verify::Ok {
        return Err(format!(
            "client certificate not verified (verify={})",
            info.verify
        ));
    }
    if req.flags.encrypted && info.bits == 0 {
        return Err("not encrypted".into());
    }
    if let Some(cn) = &req.common_name
        && !info
            .common_name
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(cn))
    {
        return Err(format!(
            "client certificate CN {} is not {cn}",
            info.common_name.as_deref().unwrap_or("(none)")
        ));
    }
    for (what, want, got) in [
        ("subject", &req.cert_subject, &info.subject),
        ("issuer", &req.cert_issuer, &info.issuer),
    ] {
        if let Some(w) = want
            && !got.as_deref().is_some_and(|g| dn_matches(w, g))
        {
            return Err(format!(
                "client certificate {what} {} is not {w}",
                got.as_deref().unwrap_or("(none)")
            ));
        }
    }
    if info.bits < req.min_cipher_bits {
        return Err(format!(
            "cipher bits {} below {}",
            info.bits, req.min_cipher_bits
        ));
    }
    Ok(())
}

/// The result of the client certificate check; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Presented and verified.
    Ok,
    /// Asked for, not presented.
    No,
    /// Not asked for.
    Not,
    /// Presented, not verified.
    Fail,
}

impl std::fmt::Display for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verify::Ok => "OK",
            Verify::No => "NO",
            Verify::Not => "NOT",
            Verify::Fail => "FAIL",
        })
    }
}

/// What the session knows about its TLS layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// The IANA name of the cipher suite.
    pub cipher: String,
    /// Symmetric key bits.
    pub bits: u32,
    /// Client certificate result.
    pub verify: Verify,
    /// Client certificate subject.
    pub subject: Option<String>,
    /// Client certificate issuer.
    pub issuer: Option<String>,
    /// Client certificate subject CN.
    pub common_name: Option<String>,
}

impl TlsInfo {
    /// The Received: part of seed 10.4, without parentheses:
    /// `TLS=TLSv1.3, cipher=TLS13_AES_256_GCM_SHA384, bits=256, verify=OK`.
    pub fn received_part(&self) -> String {
        format!(
            "TLS={}, cipher={}, bits={}, verify={}",
            self.version, self.cipher, self.bits, self.verify
        )
    }
}

/// Asks for a client certificate and accepts whatever chain comes (the
/// chain is judged after the handshake), but checks the handshake
/// signatures: a client cannot present a certificate without its key.
#[derive(Debug)]
struct Lenient {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for Lenient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        assert_eq!(cipher_bits("TLS13_AES_256_GCM_SHA384"), 256);
        assert_eq!(cipher_bits("TLS13_AES_128_GCM_SHA256"), 128);
        assert_eq!(cipher_bits("TLS13_CHACHA20_POLY1305_SHA256"), 256);
        assert_eq!(cipher_bits("TLS_NULL"), 0);
    }

    #[test]
    fn received_part() {
        let i = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_256_GCM_SHA384".into(),
            bits: 256,
            verify: Verify::No,
            subject: None,
            issuer: None,
            common_name: None,
        };
        assert_eq!(
            i.received_part(),
            "TLS=TLSv1.3, cipher=TLS13_AES_256_GCM_SHA384, bits=256, verify=NO"
        );
    }

    #[test]
    fn requirements() {
        let info = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            bits: 128,
            verify: Verify::Ok,
            subject: Some("/C=US/O=Example/CN=client.example".into()),
            issuer: Some("/CN=Example CA".into()),
            common_name: Some("client.example".into()),
        };
        let parse = |s: &str| {
            smx_conf::SessionConf::parse(s)
                .ok()
                .and_then(|c| c.tls)
                .unwrap_or_default()
        };
        let none = TlsRequirementsConf::default();
        assert!(check_requirements(&none, None).is_ok());
        for (value, ok_with_info) in [
            ("tls_requirements { flags = { verified }; }", true),
            ("tls_requirements { flags = { encrypted }; }", true),
            ("tls_requirements { common_name = CLIENT.example; }", true),
            ("tls_requirements { common_name = other.example; }", false),
            (
                r#"tls_requirements { cert_issuer = "/cn=example+20ca"; }"#,
                true,
            ),
            (
                r#"tls_requirements { cert_issuer = "/CN=Other CA"; }"#,
                false,
            ),
            (
                r#"tls_requirements { cert_subject = "/C=US/O=Example/CN=client.example"; }"#,
                true,
            ),
            (
                r#"tls_requirements { cert_subject = "/CN=client.example"; }"#,
                false,
            ),
            ("tls_requirements { min_cipher_bits = 128; }", true),
            ("tls_requirements { min_cipher_bits = 256; }", false),
        ] {
            let req = parse(value);
            assert!(req.any(), "{value}");
            assert_eq!(
                check_requirements(&req, Some(&info)).is_ok(),
                ok_with_info,
                "{value}"
            );
            assert!(check_requirements(&req, None).is_err(), "{value}");
        }
        let verified = parse("tls_requirements { flags = { verified }; }");
        for verify in [Verify::No, Verify::Not, Verify::Fail] {
            let i = TlsInfo {
                verify,
                ..info.clone()
            };
            assert!(check_requirements(&verified, Some(&i)).is_err());
        }
        let encrypted = parse("tls_requirements { flags = { encrypted }; }");
        let clear = TlsInfo {
            bits: 0,
            ..info.clone()
        };
        assert!(check_requirements(&encrypted, Some(&clear)).is_err());
    }

    #[test]
    fn missing_files_are_errors() {
        let mut c = SmtpsTls::default();
        assert!(matches!(TlsServer::load(&c), Err(TlsError::Missing)));
        c.files.cert_file = Some("/nonexistent/cert.pem".into());
        c.files.key_file = Some("/nonexistent/key.pem".into());
        assert!(matches!(TlsServer::load(&c), Err(TlsError::File { .. })));
    }
}
