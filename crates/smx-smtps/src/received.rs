//! The `Received:` header field smtps puts at the top of every message
//! (seed 10.4; RFC 5321 4.4):
//!
//! ```text
//! Received: from EHLO-NAME (CLIENT-NAME [CLIENT-ADDR])
//!     by HOST-NAME (smx VERSION) with PROTOCOL
//!     id SMTP-TA-ID; DATE
//! ```
//!
//! With TLS active, the seed's TLS part comes before `id`, on its own
//! line: `(TLS=TLSv1.3, cipher=TLS13_AES_256_GCM_SHA384, bits=256,
//! verify=NO)` (see [`crate::tls::TlsInfo::received_part`]).
//!
//! (continuation lines start with a tab). `CLIENT-NAME` appears only when it is known (smar resolved the client);
//! otherwise the parenthesis holds the address alone, `([192.0.2.1])`.
//! PROTOCOL is `SMTP` after HELO and `ESMTP` after EHLO, with the RFC 3848
//! suffixes (`S` for TLS, `A` for AUTH) and the RFC 6531 `UTF8` prefix for
//! SMTPUTF8 transactions. DATE is RFC 5322 date-time in UTC. A client that
//! sent no HELO/EHLO (allowed when `require_EHLO_before_MAIL` is off) is
//! shown by its address literal. Every part the client chose has been
//! parsed by smx-proto (no CR, LF or control characters); the folding keeps
//! lines well below 998 octets for any legal EHLO name.

use std::fmt::Write as _;
use std::net::IpAddr;

/// What the Received: field says about the session and transaction.
#[derive(Debug, Clone)]
pub struct ReceivedInfo<'a> {
    /// The HELO/EHLO argument as given, if any.
    pub helo: Option<&'a str>,
    /// The client's host name, if known.
    pub client_name: Option<&'a str>,
    /// The client's address.
    pub client_ip: IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// EHLO (true) or HELO (false).
    pub esmtp: bool,
    /// The transaction used SMTPUTF8.
    pub utf8: bool,
    /// TLS was active: its part of the field (seed 10.4), without
    /// parentheses.
    pub tls: Option<&'a str>,
    /// The client authenticated.
    pub auth: bool,
    /// The transaction id.
    pub id: &'a str,
    /// Seconds since the Unix epoch.
    pub time: u64,
}

/// The protocol name for the `with` clause.
pub fn protocol(esmtp: bool, utf8: bool, tls: bool, auth: bool) -> String {
    let mut p = String::new();
    if utf8 {
        p.push_str("UTF8");
    }
    p.push_str(if esmtp || utf8 { "ESMTP" } else { "SMTP" });
    if tls {
        p.push('S');
    }
    if auth {
        p.push('A');
    }
    p
}

/// An address as an address literal: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
pub fn literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("[{a}]"),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{a}]"),
        },
    }
}

/// The whole field, with its CRLF.
pub fn received(info: &ReceivedInfo<'_>) -> String {
    let lit = literal(info.client_ip);
    let helo = info.helo.unwrap_or(&lit);
    let mut s = String::with_capacity(200);
    let _ = write!(s, "Received: from {helo} (");
    if let Some(name) = info.client_name {
        let _ = write!(s, "{name} ");
    }
    let _ = write!(
        s,
        "{lit})\r\n\tby {} (smx {}) with {}\r\n",
        info.hostname,
        env!("CARGO_PKG_VERSION"),
        protocol(info.esmtp, info.utf8, info.tls.is_some(), info.auth),
    );
    if let Some(part) = info.tls {
        let _ = write!(s, "\t({part})\r\n");
    }
    let _ = write!(s, "\tid {}; {}\r\n", info.id, rfc5322_date(info.time));
    s
}

/// RFC 5322 date-time in UTC: `Sat, 21 Nov 2026 09:45:00 +0000`.
pub fn rfc5322_date(secs: u64) -> String {
    smx_proto::date::rfc5322(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_254_300),
            "Sat, 21 Nov 2026 09:45:00 +0000"
        );
        assert_eq!(
            rfc5322_date(4_102_444_799),
            "Thu, 31 Dec 2099 23:59:59 +0000"
        );
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol(false, false, false, false), "SMTP");
        assert_eq!(protocol(true, false, false, false), "ESMTP");
        assert_eq!(protocol(true, false, true, true), "ESMTPSA");
        assert_eq!(protocol(true, true, true, false), "UTF8ESMTPS");
    }

    #[test]
    fn field() {
        let r = received(&ReceivedInfo {
            helo: Some("client.example"),
            client_name: None,
            client_ip: "192.0.2.1".parse().unwrap(),
            hostname: "mx.example",
            esmtp: true,
            utf8: false,
            tls: None,
            auth: false,
            id: "S00000000407EAE4E00",
            time: 0,
        });
        assert_eq!(
            r,
            format!(
                "Received: from client.example ([192.0.2.1])\r\n\tby mx.example (smx {}) with ESMTP\r\n\tid S00000000407EAE4E00; Thu, 01 Jan 1970 00:00:00 +0000\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let r = received(&ReceivedInfo {
            helo: None,
            client_name: Some("c.example"),
            client_ip: "2001:db8::1".parse().unwrap(),
            ..ReceivedInfo {
                helo: None,
                client_name: None,
                client_ip: "192.0.2.1".parse().unwrap(),
                hostname: "h",
                esmtp: false,
                utf8: false,
                tls: None,
                auth: false,
                id: "S",
                time: 0,
            }
        });
        assert!(
            r.starts_with("Received: from [IPv6:2001:db8::1] (c.example [IPv6:2001:db8::1])\r\n")
        );
        let r = received(&ReceivedInfo {
            helo: Some("c"),
            client_name: None,
            client_ip: "192.0.2.1".parse().unwrap(),
            hostname: "h",
            esmtp: true,
            utf8: false,
            tls: Some("TLS=TLSv1.3, cipher=X, bits=256, verify=NOT"),
            auth: true,
            id: "S",
            time: 0,
        });
        assert!(
            r.contains(
                " with ESMTPSA\r\n\t(TLS=TLSv1.3, cipher=X, bits=256, verify=NOT)\r\n\tid S; "
            ),
            "{r}"
        );
    }
}
