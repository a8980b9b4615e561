//! smtpc TLS requirements from map values (seed 3.11.1, 3.13).
//!
//! Two entries can ask for TLS on a delivery: the `smtpc_rcpt_conf:` entry
//! of a recipient in smar's access map (qmgr smtpc flag
//! `lookup_rcpt_conf`), which qmgr asks smar for while routing, and the
//! `smtpc_session_conf:` entry of a target address in `qmgr_conf`
//! (flag `lookup_session_conf`, [`crate::limits::SessionConfTable`]). Both
//! are session configurations ([`smx_conf::SessionConf`]); only their
//! `tls_requirements` matter here. The first applies to the delivery as a
//! whole, the second to the sessions with that address; smtpc applies the
//! stricter of the two with its own.
//!
//! Recipients with different requirements never share a delivery: their
//! destination keys get a [`dest_tag`] that tells the requirements apart.

use smx_conf::model::smtps::RequirementsViolation as ConfViolation;
use smx_conf::{SessionConf, SessionConfError, TlsRequirementsConf};
use smx_ipc::qmgr_smtpc::{RequirementsViolation, TlsRequirements};

/// The requirements a parsed `tls_requirements` section asks for.
pub fn from_conf(t: &TlsRequirementsConf) -> TlsRequirements {
    TlsRequirements {
        verified: t.flags.verified,
        encrypted: t.flags.encrypted,
        common_name: t.common_name.clone(),
        cert_subject: t.cert_subject.clone(),
        cert_issuer: t.cert_issuer.clone(),
        min_cipher_bits: t.min_cipher_bits,
        violation: t.requirements_violation.map(|v| match v {
            ConfViolation::PermFail => RequirementsViolation::PermFail,
            ConfViolation::TempFail => RequirementsViolation::TempFail,
            ConfViolation::Abort => RequirementsViolation::Abort,
        }),
    }
}

/// The requirements of a session configuration, `None` when it asks for
/// nothing.
pub fn of_session_conf(c: &SessionConf) -> Option<TlsRequirements> {
    c.tls.as_ref().filter(|t| t.any()).map(from_conf)
}

/// The requirements of a map value (`smtpc_rcpt_conf:`), `None` when it
/// asks for nothing. A value that does not parse is an error for the
/// caller to log.
pub fn from_value(value: &str) -> Result<Option<TlsRequirements>, SessionConfError> {
    SessionConf::parse(value).map(|c| of_session_conf(&c))
}

/// A suffix for destination keys that differs between different
/// requirements (and cannot occur in a host name: it starts with a blank).
pub fn dest_tag(t: &TlsRequirements) -> String {
    let violation = match t.violation {
        None => "",
        Some(RequirementsViolation::PermFail) => "permfail",
        Some(RequirementsViolation::TempFail) => "tempfail",
        Some(RequirementsViolation::Abort) => "abort",
    };
    format!(
        " tls:{}{}:{}:{:?}:{:?}:{:?}:{violation}",
        u8::from(t.verified),
        u8::from(t.encrypted),
        t.min_cipher_bits,
        t.common_name,
        t.cert_subject,
        t.cert_issuer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_to_requirements() {
        assert_eq!(from_value("").unwrap(), None);
        assert_eq!(from_value("session_feature=x;").unwrap(), None);
        let t = from_value(
            "tls_requirements { flags = { verified }; common_name = \"mx.example\"; \
             requirements_violation = permfail; }",
        )
        .unwrap()
        .unwrap();
        assert!(t.verified && !t.encrypted);
        assert_eq!(t.common_name.as_deref(), Some("mx.example"));
        assert_eq!(t.violation, Some(RequirementsViolation::PermFail));
        assert!(from_value("tls_requirements { nonsense = 1; }").is_err());
    }

    #[test]
    fn tags_tell_requirements_apart() {
        let a = from_value("tls_requirements { flags = { verified }; }")
            .unwrap()
            .unwrap();
        let b = from_value("tls_requirements { flags = { encrypted }; }")
            .unwrap()
            .unwrap();
        let c = from_value(
            "tls_requirements { flags = { verified }; requirements_violation = abort; }",
        )
        .unwrap()
        .unwrap();
        assert_ne!(dest_tag(&a), dest_tag(&b));
        assert_ne!(dest_tag(&a), dest_tag(&c));
        assert_eq!(dest_tag(&a), dest_tag(&a.clone()));
        assert!(dest_tag(&a).starts_with(' '));
    }
}
