//! The `socket` map type (seed 3.9.1, 10.1): lookups sent to an external
//! server over a Unix domain or TCP socket, as netstrings.
//!
//! One connection per map, kept open between lookups and used by one
//! lookup at a time (a mutex): the protocol has no request ids, so
//! pipelining on one connection would mix up answers. The I/O is blocking
//! with a deadline of `timeout` per lookup (connect, send and receive
//! together); smar runs lookups on blocking threads.
//!
//! A connection that fails is dropped and the next lookup connects anew.
//! If a *kept* connection fails before any reply byte arrived (the server
//! closed an idle connection), the lookup is retried once on a fresh
//! connection. Everything that goes wrong is a temporary error: connect or
//! I/O failure, timeout, a malformed netstring, a reply longer than
//! `max_reply`, an unknown status, a `TEMP` or `TIMEOUT` reply. Only a
//! `PERM` reply is permanent. After an error the connection is closed, so
//! a late answer cannot be taken for the next request.

use crate::Map;
use crate::error::MapError;
use crate::netstring::{self, Decoded, Reply};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default limit on a reply payload.
pub const DEFAULT_MAX_REPLY: usize = 64 * 1024;

/// Where the socket map server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix domain socket.
    Unix(PathBuf),
    /// A TCP address.
    Inet(SocketAddr),
}

/// What went wrong talking to a socket map server; always temporary.
#[derive(Debug, thiserror::Error)]
pub enum SocketProblem {
    /// Connecting, sending or receiving failed.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The server closed the connection before the reply was complete.
    #[error("connection closed by the server")]
    Closed,
    /// No complete reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The reply is not a netstring (or too long).
    #[error("{0}")]
    Netstring(#[from] netstring::NetstringError),
    /// The reply netstring does not hold a valid reply.
    #[error("{0}")]
    Reply(#[from] netstring::ReplyError),
    /// More bytes arrived after the reply.
    #[error("unexpected bytes after the reply")]
    Trailing,
    /// The server answered TEMP or TIMEOUT.
    #[error("server reports a temporary failure: {0}")]
    ServerTemp(String),
}

/// A socket map.
#[derive(Debug)]
pub struct SocketMap {
    endpoint: Endpoint,
    mapname: String,
    timeout: Duration,
    max_reply: usize,
    conn: Mutex<Option<Conn>>,
}

impl SocketMap {
    /// A socket map asking `endpoint` for keys of the server's map
    /// `mapname`, with `timeout` per lookup. Does not connect yet.
    pub fn new(endpoint: Endpoint, mapname: impl Into<String>, timeout: Duration) -> Self {
        SocketMap {
            endpoint,
            mapname: mapname.into(),
            timeout,
            max_reply: DEFAULT_MAX_REPLY,
            conn: Mutex::new(None),
        }
    }

    /// Sets the longest reply payload accepted.
    pub fn with_max_reply(mut self, max: usize) -> Self {
        self.max_reply = max;
        self
    }

    fn error(&self, problem: SocketProblem) -> MapError {
        MapError::Socket {
            mapname: self.mapname.clone(),
            problem,
        }
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, SocketProblem> {
        let left = remaining(deadline, self.timeout)?;
        match &self.endpoint {
            Endpoint::Unix(p) => UnixStream::connect(p).map(Conn::Unix),
            Endpoint::Inet(a) => TcpStream::connect_timeout(a, left).map(Conn::Tcp),
        }
        .map_err(|e| io_problem(e, self.timeout))
    }

    /// One request/reply exchange. `Err((problem, replied))`: whether any
    /// reply byte had arrived.
    fn exchange(
        &self,
        conn: &mut Conn,
        request: &[u8],
        deadline: Instant,
    ) -> Result<Reply, (SocketProblem, bool)> {
        let t = self.timeout;
        conn.set_timeout(remaining(deadline, t).map_err(|p| (p, false))?)
            .map_err(|e| (io_problem(e, t), false))?;
        conn.write_all(request)
            .map_err(|e| (io_problem(e, t), false))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match netstring::decode(&buf, self.max_reply) {
                Err(e) => return Err((e.into(), true)),
                Ok(Decoded::Complete { payload, consumed }) => {
                    if consumed != buf.len() {
                        return Err((SocketProblem::Trailing, true));
                    }
                    return netstring::parse_reply(payload).map_err(|e| (e.into(), true));
                }
                Ok(Decoded::Incomplete) => {}
            }
            let started = !buf.is_empty();
            let left = remaining(deadline, t).map_err(|p| (p, started))?;
            conn.set_timeout(left)
                .map_err(|e| (io_problem(e, t), started))?;
            match conn.read(&mut chunk) {
                Ok(0) => return Err((SocketProblem::Closed, started)),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err((io_problem(e, t), started)),
            }
        }
    }
}

impl Map for SocketMap {
    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        let deadline = Instant::now() + self.timeout;
        let request = netstring::encode_request(&self.mapname, key);
        // A poisoned lock means a lookup panicked mid-exchange: the
        // connection state is unknown, so drop it.
        let mut guard = self.conn.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            *g = None;
            g
        });
        let reused = guard.is_some();
        let mut conn = match guard.take() {
            Some(c) => c,
            None => self.connect(deadline).map_err(|p| self.error(p))?,
        };
        let reply = match self.exchange(&mut conn, &request, deadline) {
            Ok(r) => r,
            Err((problem, replied)) => {
                let stale = reused && !replied && !matches!(problem, SocketProblem::Timeout(_));
                if !stale {
                    return Err(self.error(problem));
                }
                tracing::debug!(mapname = %self.mapname, %problem, "socket map connection went stale; reconnecting");
                conn = self.connect(deadline).map_err(|p| self.error(p))?;
                self.exchange(&mut conn, &request, deadline)
                    .map_err(|(p, _)| self.error(p))?
            }
        };
        *guard = Some(conn);
        drop(guard);
        match reply {
            Reply::Found(v) => Ok(Some(v)),
            Reply::NotFound => Ok(None),
            Reply::Temp(m) | Reply::Timeout(m) => Err(self.error(SocketProblem::ServerTemp(m))),
            Reply::Perm(message) => Err(MapError::Refused {
                mapname: self.mapname.clone(),
                message,
            }),
        }
    }

    /// Closes the connection; the next lookup connects anew.
    fn reload(&self) -> Result<(), MapError> {
        *self.conn.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }
}

// ---------------------------------------------------------------------------

#[derive(Debug)]
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Conn::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

/// Time left until `deadline`; a timeout if none (a zero timeout would
/// mean "block forever" to the socket API).
fn remaining(deadline: Instant, total: Duration) -> Result<Duration, SocketProblem> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(SocketProblem::Timeout(total))
    } else {
        Ok(left)
    }
}

fn io_problem(e: std::io::Error, total: Duration) -> SocketProblem {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => SocketProblem::Timeout(total),
        _ => SocketProblem::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;
    use std::os::unix::net::UnixListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What the test server does for a key.
    fn answer(key: &str) -> Option<Vec<u8>> {
        Some(match key {
            "slow" => {
                std::thread::sleep(Duration::from_secs(3));
                netstring::encode(b"OK late")
            }
            "bad" => b"xx:OK,".to_vec(),
            "big" => netstring::encode(format!("OK {}", "x".repeat(5000)).as_bytes()),
            "trailing" => [netstring::encode(b"OK a"), b"junk".to_vec()].concat(),
            "temp" => netstring::encode(b"TEMP try later"),
            "timeout" => netstring::encode(b"TIMEOUT backend slow"),
            "perm" => netstring::encode(b"PERM no such map"),
            "weird" => netstring::encode(b"MAYBE"),
            "close" => return None,
            k if k.starts_with("missing") => netstring::encode(b"NOTFOUND"),
            k => netstring::encode(format!("OK value-of-{k}").as_bytes()),
        })
    }

    /// Serves one connection: reads requests, answers each; with
    /// `one_shot` closes after the first answer. Returns when the peer
    /// closes.
    fn serve<S: Read + Write>(mut s: S, one_shot: bool, requests: &AtomicUsize) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            while let Ok(Decoded::Complete { payload, consumed }) = netstring::decode(&buf, 1000) {
                requests.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(payload).into_owned();
                buf.drain(..consumed);
                let key = text.split_once(' ').map(|(_, k)| k).unwrap_or("");
                assert!(text.starts_with("testmap "), "request {text}");
                let Some(reply) = answer(key) else { return };
                if s.write_all(&reply).is_err() || one_shot {
                    return;
                }
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Serves every connection of `incoming` on its own thread; returns
    /// the request counter.
    fn spawn_server<S, I>(incoming: I, one_shot: bool) -> Arc<AtomicUsize>
    where
        S: Read + Write + Send + 'static,
        I: Iterator<Item = std::io::Result<S>> + Send + 'static,
    {
        let requests = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&requests);
        std::thread::spawn(move || {
            for s in incoming {
                let Ok(s) = s else { return };
                let r = Arc::clone(&r);
                std::thread::spawn(move || serve(s, one_shot, &r));
            }
        });
        requests
    }

    fn unix_server(one_shot: bool) -> (tempfile::TempDir, PathBuf, Arc<AtomicUsize>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("map.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let requests = spawn_server(
            std::iter::from_fn(move || Some(listener.accept().map(|(s, _)| s))),
            one_shot,
        );
        (dir, path, requests)
    }

    fn map(path: &std::path::Path) -> SocketMap {
        SocketMap::new(
            Endpoint::Unix(path.to_path_buf()),
            "testmap",
            Duration::from_secs(1),
        )
        .with_max_reply(1000)
    }

    #[test]
    fn answers_and_errors() {
        let (_dir, path, requests) = unix_server(false);
        let m = map(&path);
        assert_eq!(
            m.lookup("alice").expect("ok").as_deref(),
            Some("value-of-alice")
        );
        assert_eq!(m.lookup("missing-x").expect("ok"), None);
        for key in [
            "bad", "big", "trailing", "temp", "timeout", "weird", "slow", "close",
        ] {
            let err = m.lookup(key).expect_err(key);
            assert_eq!(err.class(), ErrorClass::Temporary, "{key}: {err}");
        }
        let perm = m.lookup("perm").expect_err("perm");
        assert_eq!(perm.class(), ErrorClass::Permanent, "{perm}");
        // Still works after all that (reconnects as needed).
        assert_eq!(
            m.lookup("bob").expect("ok").as_deref(),
            Some("value-of-bob")
        );
        assert!(requests.load(Ordering::SeqCst) >= 12);
    }

    #[test]
    fn reconnects_when_the_server_closed_the_idle_connection() {
        let (_dir, path, _requests) = unix_server(true);
        let m = map(&path);
        for i in 0..5 {
            let key = format!("k{i}");
            assert_eq!(
                m.lookup(&key).expect("ok"),
                Some(format!("value-of-{key}")),
                "lookup {i}"
            );
        }
    }

    #[test]
    fn no_server_is_a_temporary_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = map(&dir.path().join("none.sock"));
        let err = m.lookup("x").expect_err("no server");
        assert_eq!(err.class(), ErrorClass::Temporary);
    }

    #[test]
    fn inet_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = spawn_server(
            std::iter::from_fn(move || Some(listener.accept().map(|(s, _)| s))),
            false,
        );
        let m = SocketMap::new(Endpoint::Inet(addr), "testmap", Duration::from_secs(2));
        assert_eq!(m.lookup("a").expect("ok").as_deref(), Some("value-of-a"));
        assert_eq!(m.lookup("b").expect("ok").as_deref(), Some("value-of-b"));
        assert_eq!(requests.load(Ordering::SeqCst), 2);
        m.reload().expect("reload");
        assert_eq!(m.lookup("c").expect("ok").as_deref(), Some("value-of-c"));
    }
}
