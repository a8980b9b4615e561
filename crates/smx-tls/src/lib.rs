//! TLS material shared by smtps and smtpc.
//!
//! - PEM files: [`read_certs`] (every certificate of a file, at least one),
//!   [`read_key`] (the private key), [`read_cas`] (`CAcert_file` plus every
//!   file of `CAcert_directory`, at most [`MAX_CA_DIR_FILES`]; files and
//!   certificates that are no usable trust anchor are skipped, as OpenSSL's
//!   directory lookup would never match them).
//! - [`provider`]: the ring crypto provider, the only one smx uses.
//! - [`dn`]: a distinguished name as `/KEY=value/...`, most significant
//!   first, the form of the seed's `certissuer:`/`certsubject:` entries and
//!   log lines.
//! - [`cipher_bits`]: the effective symmetric key length of a suite, for
//!   `min_cipher_bits` and the `Received:` field.
//!
//! Errors name the file and what was wrong ([`FileError`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Most files read from a `CAcert_directory`.
pub const MAX_CA_DIR_FILES: usize = 4096;

/// A PEM file that could not be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FileError {
    /// The file (or directory).
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

fn file_err(path: &Path, reason: impl ToString) -> FileError {
    FileError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file; a file without one is an error.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| file_err(path, e))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

/// The CA certificates of `CAcert_file` and `CAcert_directory`.
pub fn read_cas(file: Option<&Path>, dir: Option<&Path>) -> Result<RootCertStore, FileError> {
    let mut roots = RootCertStore::empty();
    if let Some(f) = file {
        for c in read_certs(f)? {
            roots.add(c).map_err(|e| file_err(f, e))?;
        }
    }
    if let Some(d) = dir {
        let entries = std::fs::read_dir(d).map_err(|e| file_err(d, e))?;
        for entry in entries.take(MAX_CA_DIR_FILES) {
            let path = entry.map_err(|e| file_err(d, e))?.path();
            if !path.is_file() {
                continue;
            }
            // Files without certificates (READMEs, CRLs) are skipped.
            let Ok(iter) = CertificateDer::pem_file_iter(&path) else {
                continue;
            };
            for c in iter.flatten() {
                let _ = roots.add(c);
            }
        }
    }
    Ok(roots)
}

/// The ring provider, the only one smx uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A distinguished name as `/KEY=value/...`, most significant first, keys
/// as OpenSSL abbreviates them (`C`, `ST`, `O`, `OU`, `CN`); control
/// characters become `?` (they would break log lines and headers).
pub fn dn(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut out = String::new();
    for rdn in name.iter() {
        for atv in rdn.iter() {
            let key = x509_parser::objects::oid2abbrev(
                atv.attr_type(),
                x509_parser::objects::oid_registry(),
            )
            .map_or_else(|_| atv.attr_type().to_id_string(), str::to_string);
            let value = atv.as_str().unwrap_or("?");
            out.push('/');
            out.push_str(&key);
            out.push('=');
            out.extend(value.chars().map(|c| if c.is_control() { '?' } else { c }));
        }
    }
    out
}

/// Effective key length of the symmetric cipher of a suite name.
pub fn cipher_bits(suite: &str) -> u32 {
    if suite.contains("AES_128") {
        128
    } else if suite.contains("AES_256") || suite.contains("CHACHA20") {
        256
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn suites() {
        assert_eq!(cipher_bits("TLS13_AES_256_GCM_SHA384"), 256);
        assert_eq!(cipher_bits("TLS13_AES_128_GCM_SHA256"), 128);
        assert_eq!(cipher_bits("TLS13_CHACHA20_POLY1305_SHA256"), 256);
        assert_eq!(cipher_bits("TLS_NULL"), 0);
    }

    #[test]
    fn files_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["mx.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example\u{7}Org");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mx.example");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let certs = read_certs(&cert_path).unwrap();
        assert_eq!(certs.len(), 1);
        assert!(read_key(&key_path).is_ok());
        let (_, parsed) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
        // In certificate order; the control character is replaced.
        assert_eq!(dn(parsed.subject()), "/CN=mx.example/O=Example?Org");

        // CAs from a file and from a directory with noise in it.
        let cas = dir.path().join("cas");
        std::fs::create_dir(&cas).unwrap();
        std::fs::copy(&cert_path, cas.join("ca.pem")).unwrap();
        std::fs::write(cas.join("README"), "not a certificate").unwrap();
        assert_eq!(read_cas(Some(&cert_path), None).unwrap().len(), 1);
        assert_eq!(read_cas(None, Some(&cas)).unwrap().len(), 1);
        assert_eq!(read_cas(None, None).unwrap().len(), 0);

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = read_certs(&empty).unwrap_err();
        assert_eq!(e.path, empty);
        assert!(read_certs(&dir.path().join("missing.pem")).is_err());
        assert!(read_cas(None, Some(&dir.path().join("missing"))).is_err());
    }
}
