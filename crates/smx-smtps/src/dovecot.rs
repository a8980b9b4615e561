//! A client of Dovecot's authentication socket (the "auth client"
//! protocol, version 1, as Postfix's smtpd uses it), for SMTP AUTH with
//! Dovecot's users (`auth { dovecot_socket = ...; }`).
//!
//! # The protocol
//!
//! Lines end with LF; fields are separated by TAB. On connect the client
//! sends `VERSION\t1\t2` and `CPID\t<pid>`; the server sends `VERSION`,
//! `MECH` lines, `SPID`, `CUID`, `COOKIE` and `DONE`. One exchange:
//!
//! ```text
//! C: AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=..\trip=..\tlport=..\trport=..[\tsecured][\tresp=BASE64]
//! S: CONT\t1\tBASE64          (a challenge; the client answers CONT\t1\tBASE64)
//! S: OK\t1\tuser=alice        (logged in)
//! S: FAIL\t1\treason=...      (failed; with `temp`: a temporary failure)
//! ```
//!
//! smtps passes the SASL data through without looking at it: Dovecot
//! runs the mechanism. Every value smtps sends is base64, a mechanism
//! name, an address or a number, so nothing needs escaping; the user
//! name in `OK` is unescaped (`\001` escapes) and control characters in
//! it are replaced by `?`. A connection is made per AUTH command. Lines
//! are bounded ([`MAX_LINE`]), the handshake to [`MAX_HANDSHAKE_LINES`]
//! lines, every read by the timeout given.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Longest line accepted from Dovecot.
pub const MAX_LINE: usize = 16 * 1024;
/// Most lines before `DONE`.
pub const MAX_HANDSHAKE_LINES: usize = 256;

/// Why talking to Dovecot failed.
#[derive(Debug, thiserror::Error)]
pub enum DovecotError {
    /// The socket.
    #[error("dovecot auth socket: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("dovecot auth socket: timeout")]
    Timeout,
    /// Dovecot said something unexpected.
    #[error("dovecot auth socket: protocol error: {0}")]
    Protocol(String),
}

/// What Dovecot answered to a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A challenge (decoded) for the client.
    Challenge(Vec<u8>),
    /// Logged in as this user.
    Success(String),
    /// Failed; the reason is for the log; `temp` for a temporary failure.
    Fail {
        /// Dovecot's reason, if any.
        reason: String,
        /// A temporary failure.
        temp: bool,
    },
}

/// The connection facts Dovecot gets with a request.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// Our address.
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
    /// The session is under TLS.
    pub secured: bool,
}

/// One connection to the auth socket.
#[derive(Debug)]
pub struct DovecotAuth {
    stream: UnixStream,
    buf: Vec<u8>,
    timeout: Duration,
    mechs: Vec<String>,
}

impl DovecotAuth {
    /// Connects and does the handshake.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<DovecotAuth, DovecotError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| DovecotError::Timeout)??;
        let mut d = DovecotAuth {
            stream,
            buf: Vec::new(),
            timeout,
            mechs: Vec::new(),
        };
        d.send(&format!("VERSION\t1\t2\nCPID\t{}\n", std::process::id()))
            .await?;
        for _ in 0..MAX_HANDSHAKE_LINES {
            let line = d.line().await?;
            let mut f = line.split('\t');
            match f.next() {
                Some("VERSION") if f.next() != Some("1") => {
                    return Err(DovecotError::Protocol(format!(
                        "unsupported version: {line}"
                    )));
                }
                Some("MECH") => {
                    if let Some(m) = f.next() {
                        d.mechs.push(m.to_ascii_uppercase());
                    }
                }
                Some("DONE") => return Ok(d),
                _ => {}
            }
        }
        Err(DovecotError::Protocol("no DONE in the handshake".into()))
    }

    /// The mechanisms Dovecot offers (upper case).
    pub fn mechanisms(&self) -> &[String] {
        &self.mechs
    }

    async fn send(&mut self, s: &str) -> Result<(), DovecotError> {
        tokio::time::timeout(self.timeout, self.stream.write_all(s.as_bytes()))
            .await
            .map_err(|_| DovecotError::Timeout)??;
        Ok(())
    }

    async fn line(&mut self) -> Result<String, DovecotError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = &line[..line.len() - 1];
                return String::from_utf8(line.to_vec())
                    .map_err(|_| DovecotError::Protocol("line is not UTF-8".into()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(DovecotError::Protocol("line too long".into()));
            }
            let mut tmp = [0u8; 4096];
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut tmp))
                .await
                .map_err(|_| DovecotError::Timeout)??;
            if n == 0 {
                return Err(DovecotError::Protocol("connection closed".into()));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// Starts an exchange for `mech` (a name of [`crate::auth::Mechanism`]).
    pub async fn start(
        &mut self,
        mech: &str,
        initial: Option<&[u8]>,
        info: &ClientInfo,
    ) -> Result<Answer, DovecotError> {
        let mut req = format!(
            "AUTH\t1\t{mech}\tservice=smtp\tnologin\tlip={}\trip={}\tlport={}\trport={}",
            info.local.ip(),
            info.remote.ip(),
            info.local.port(),
            info.remote.port()
        );
        if info.secured {
            req.push_str("\tsecured");
        }
        if let Some(i) = initial {
            req.push_str("\tresp=");
            req.push_str(&B64.encode(i));
        }
        req.push('\n');
        self.send(&req).await?;
        self.answer().await
    }

    /// Passes the client's (decoded) response on.
    pub async fn step(&mut self, resp: &[u8]) -> Result<Answer, DovecotError> {
        self.send(&format!("CONT\t1\t{}\n", B64.encode(resp)))
            .await?;
        self.answer().await
    }

    async fn answer(&mut self) -> Result<Answer, DovecotError> {
        let line = self.line().await?;
        let mut f = line.split('\t');
        let kind = f.next().unwrap_or("");
        if f.next() != Some("1") {
            return Err(DovecotError::Protocol(format!("unexpected line: {kind}")));
        }
        match kind {
            "CONT" => {
                let data = f.next().unwrap_or("");
                B64.decode(data)
                    .map(Answer::Challenge)
                    .map_err(|_| DovecotError::Protocol("bad base64 in CONT".into()))
            }
            "OK" => {
                let user = f
                    .find_map(|p| p.strip_prefix("user="))
                    .map(unescape)
                    .unwrap_or_default();
                Ok(Answer::Success(user))
            }
            "FAIL" => {
                let mut reason = String::new();
                let mut temp = false;
                for p in f {
                    if let Some(r) = p.strip_prefix("reason=") {
                        reason = unescape(r);
                    } else if p == "temp" {
                        temp = true;
                    }
                }
                Ok(Answer::Fail { reason, temp })
            }
            other => Err(DovecotError::Protocol(format!("unexpected reply {other}"))),
        }
    }
}

/// Undoes Dovecot's tab escaping (`\001` + `1`, `t`, `r`, `n`) and
/// replaces control characters by `?`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let c = if c == '\u{1}' {
            match chars.next() {
                Some('1') => '\u{1}',
                Some('t') => '\t',
                Some('r') => '\r',
                Some('n') => '\n',
                Some(o) => o,
                None => break,
            }
        } else {
            c
        };
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescaping() {
        assert_eq!(unescape("alice"), "alice");
        assert_eq!(unescape("a\u{1}tb\u{1}1"), "a?b?");
        assert_eq!(unescape("x\u{1}"), "x");
    }
}
