//! Test support: content in a temporary CDB, delivery requests, real peers
//! (Postfix smtp-sink, Dovecot LMTP) killed on drop, and a scripted SMTP
//! server for misbehaviour.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smx_ipc::qmgr_smtpc::{
    DaTransactionId, Delivery, DeliveryRecipient, DeliveryResult, Destination, Protocol,
    RecipientStatus, Target,
};
use smx_ipc::types::TransactionId;
use smx_smtpc::{ClientConfig, Deliverer, Timeouts};
use smx_store::cdb::{Cdb, CdbOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub mod tls_peer;

pub const HOSTNAME: &str = "smtpc.test.invalid";

/// A CDB in a temporary directory.
pub struct Store {
    pub dir: tempfile::TempDir,
    pub cdb: Cdb,
    next: u64,
}

impl Store {
    pub fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let cdb = Cdb::open(dir.path().join("cdb"), CdbOptions::default()).unwrap();
        Store { dir, cdb, next: 1 }
    }

    /// Stores `content`; returns its id and size.
    pub fn put(&mut self, content: &[u8]) -> (TransactionId, u64) {
        self.put_with(content.len() as u64, |w| w.write(content).unwrap())
    }

    /// Stores content written by `f`.
    pub fn put_with(
        &mut self,
        size: u64,
        f: impl FnOnce(&mut smx_store::cdb::CdbWriter),
    ) -> (TransactionId, u64) {
        let id = TransactionId {
            counter: 0x1000 + self.next,
            process: 0,
        };
        self.next += 1;
        let mut w = self
            .cdb
            .create(smx_store::id::TransactionId::new(id.counter, id.process))
            .unwrap();
        f(&mut w);
        assert_eq!(w.len(), size);
        w.commit().unwrap();
        (id, size)
    }
}

pub fn config() -> ClientConfig {
    ClientConfig {
        hostname: HOSTNAME.into(),
        timeouts: Timeouts::uniform(Duration::from_secs(10)),
        ..ClientConfig::default()
    }
}

pub fn deliverer(store: &Store, cfg: ClientConfig) -> Deliverer {
    Deliverer::new(cfg, store.cdb.clone())
}

pub fn tcp(addr: SocketAddr, lmtp: bool) -> Destination {
    Destination::Hosts {
        protocol: if lmtp {
            Protocol::Lmtp
        } else {
            Protocol::Esmtp
        },
        targets: vec![target(addr)],
    }
}

pub fn target(addr: SocketAddr) -> Target {
    Target {
        name: "peer.test".into(),
        addr: addr.ip(),
        port: Some(addr.port()),
        tls_requirements: None,
    }
}

pub fn delivery(
    (content, size): (TransactionId, u64),
    sender: &str,
    params: &str,
    rcpts: &[(&str, &str)],
    destination: Destination,
) -> Delivery {
    Delivery {
        da_ta: DaTransactionId {
            process: 1,
            counter: 7,
            index: content.counter as u32,
        },
        content,
        size,
        sender: sender.into(),
        params: params.into(),
        recipients: rcpts
            .iter()
            .enumerate()
            .map(|(i, (a, p))| DeliveryRecipient {
                index: i as u32,
                address: (*a).into(),
                params: (*p).into(),
            })
            .collect(),
        destination,
        tls_requirements: None,
    }
}

pub fn statuses(r: &DeliveryResult) -> Vec<RecipientStatus> {
    r.recipients.iter().map(|x| x.status).collect()
}

pub fn message(n: usize) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n\r\n".to_vec();
    let mut i = 0;
    while m.len() < n {
        m.extend_from_slice(format!("line {i} of the body\r\n").as_bytes());
        if i % 10 == 3 {
            m.extend_from_slice(b".a line that starts with a dot\r\n");
        }
        i += 1;
    }
    m
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on `addr` (bounded).
pub fn wait_listening(addr: SocketAddr) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}");
}

/// Whether `child` listens on `addr`: something accepts there and the
/// child is still running a moment later (a child that could not bind
/// exits at once).
pub fn listening_child(child: &mut Child, addr: SocketAddr) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
            return matches!(child.try_wait(), Ok(None));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Postfix's smtp-sink, killed on drop.
pub struct Sink {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Sink {
    /// Starts smtp-sink with `opts` on a free port. A port taken between
    /// choosing and binding it (another test's peer) makes smtp-sink exit;
    /// then another port is tried, so the test never talks to a stranger.
    pub fn start(opts: &[&str]) -> Sink {
        for _ in 0..20 {
            let port = free_port();
            let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
            let mut child = Command::new("/usr/sbin/smtp-sink")
                .args(["-u", "nobody"])
                .args(opts)
                .arg(format!("127.0.0.1:{port}"))
                .arg("256")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            if listening_child(&mut child, addr) {
                return Sink { child, addr };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("smtp-sink did not start");
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Dovecot instance (master with the LMTP service) configured in a
/// temporary directory, delivering to Maildirs there; stopped on drop.
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub socket: PathBuf,
    pub addr: SocketAddr,
}

impl Dovecot {
    pub fn start() -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("run")).unwrap();
        std::fs::create_dir_all(base.join("mail")).unwrap();
        // Dovecot's processes run as other users and must reach these.
        for p in [base, &base.join("mail"), &base.join("run")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let socket = base.join("lmtp.sock");
        let conf_path = base.join("dovecot.conf");
        for _ in 0..10 {
            let port = free_port();
            let conf = format!(
                "base_dir = {b}/run\nstate_dir = {b}/run\nlog_path = {b}/dovecot.log\n\
                 protocols = lmtp\nssl = no\nlisten = 127.0.0.1\n\
                 mail_location = maildir:{b}/mail/%n\nfirst_valid_uid = 0\n\
                 mail_uid = nobody\nmail_gid = nogroup\n\
                 userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={b}/mail/%n allow_all_users=yes\n}}\n\
                 passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
                 service lmtp {{\n  unix_listener {s} {{\n    mode = 0666\n  }}\n  \
                 inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n",
                b = base.display(),
                s = socket.display(),
            );
            std::fs::write(&conf_path, conf).unwrap();
            let mut child = Command::new("/usr/sbin/dovecot")
                .arg("-F")
                .arg("-c")
                .arg(&conf_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
            if !listening_child(&mut child, addr) {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let start = Instant::now();
            while !socket.exists() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            return Dovecot {
                dir,
                child,
                socket,
                addr,
            };
        }
        panic!("dovecot did not start");
    }

    /// The messages in `user`'s Maildir `new/` directory.
    pub fn maildir(&self, user: &str) -> Vec<Vec<u8>> {
        let new = self.dir.path().join("mail").join(user).join("new");
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&new) {
            for e in rd {
                out.push(std::fs::read(e.unwrap().path()).unwrap());
            }
        }
        out
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children; SIGKILL would orphan
        // them.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the scripted server does in answer to a command.
pub enum Act {
    /// Send these bytes (replies with CRLFs).
    Send(String),
    /// Send these bytes one at a time, each in its own segment.
    Trickle(String),
    /// Wait, then send.
    Delay(Duration, String),
    /// Send, then close the connection.
    SendClose(String),
    /// Close the connection.
    Close,
}

/// What the scripted server saw.
#[derive(Default, Debug)]
pub struct Transcript {
    /// Command lines, in order.
    pub commands: Vec<String>,
    /// Message bodies received (DATA unstuffed, or BDAT chunks joined).
    pub bodies: Vec<Vec<u8>>,
    /// Connections accepted.
    pub connections: usize,
    /// For each final dot: whether more bytes (QUIT) had already arrived
    /// with it.
    pub dot_followed: Vec<bool>,
}

pub type Script = Arc<dyn Fn(&str) -> Act + Send + Sync>;

/// A scripted SMTP server on a free port; every command line goes to
/// `script` (the greeting is asked for with the pseudo-command
/// `CONNECT`, the end of data with `.`, a DATA cut short with
/// `DATA-PART`). Aborted on drop.
pub struct Scripted {
    pub addr: SocketAddr,
    pub transcript: Arc<Mutex<Transcript>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    pub async fn start(script: impl Fn(&str) -> Act + Send + Sync + 'static) -> Scripted {
        Scripted::start_on("127.0.0.1:0", script).await
    }

    /// As [`Scripted::start`], listening on `bind` (e.g. `[::1]:0`).
    pub async fn start_on(
        bind: &str,
        script: impl Fn(&str) -> Act + Send + Sync + 'static,
    ) -> Scripted {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let transcript = Arc::new(Mutex::new(Transcript::default()));
        let script: Script = Arc::new(script);
        let t = Arc::clone(&transcript);
        let task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                t.lock().unwrap().connections += 1;
                let script = Arc::clone(&script);
                let t = Arc::clone(&t);
                tasks.spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(60), conversation(s, script, t))
                            .await;
                });
            }
        });
        Scripted {
            addr,
            transcript,
            task,
        }
    }

    pub fn commands(&self) -> Vec<String> {
        self.transcript.lock().unwrap().commands.clone()
    }

    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.transcript.lock().unwrap().bodies.clone()
    }
}

/// Performs `act`; false: close.
async fn act(s: &mut tokio::net::tcp::OwnedWriteHalf, a: Act) -> bool {
    match a {
        Act::Send(text) => s.write_all(text.as_bytes()).await.is_ok(),
        Act::Trickle(text) => {
            for b in text.as_bytes() {
                if s.write_all(&[*b]).await.is_err() {
                    return false;
                }
                let _ = s.flush().await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            true
        }
        Act::Delay(d, text) => {
            tokio::time::sleep(d).await;
            s.write_all(text.as_bytes()).await.is_ok()
        }
        Act::SendClose(text) => {
            let _ = s.write_all(text.as_bytes()).await;
            false
        }
        Act::Close => false,
    }
}

async fn conversation(s: tokio::net::TcpStream, script: Script, t: Arc<Mutex<Transcript>>) {
    let (rd, mut wr) = s.into_split();
    let mut rd = BufReader::new(rd);
    if !act(&mut wr, script("CONNECT")).await {
        return;
    }
    let mut line = String::new();
    let mut bdat = Vec::new();
    for _ in 0..10_000 {
        line.clear();
        match rd.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let cmd = line.trim_end().to_string();
        t.lock().unwrap().commands.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("BDAT ") {
            let mut words = upper.split_ascii_whitespace().skip(1);
            let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let last = words.next() == Some("LAST");
            let mut chunk = vec![0u8; n];
            if rd.read_exact(&mut chunk).await.is_err() {
                return;
            }
            bdat.extend_from_slice(&chunk);
            if last {
                t.lock().unwrap().bodies.push(std::mem::take(&mut bdat));
            }
            if !act(&mut wr, script(&cmd)).await {
                return;
            }
            continue;
        }
        let a = script(&cmd);
        let go_data = upper == "DATA"
            && matches!(&a, Act::Send(x) | Act::Delay(_, x) | Act::Trickle(x) if x.starts_with("354"));
        if !act(&mut wr, a).await {
            return;
        }
        if go_data {
            let mut body = Vec::new();
            let mut l = Vec::new();
            loop {
                l.clear();
                match rd.read_until(b'\n', &mut l).await {
                    Ok(0) | Err(_) => {
                        let _ = script("DATA-PART");
                        return;
                    }
                    Ok(_) => {}
                }
                if l == b".\r\n" {
                    let more = !rd.buffer().is_empty();
                    t.lock().unwrap().dot_followed.push(more);
                    break;
                }
                let data = if l.starts_with(b".") { &l[1..] } else { &l[..] };
                body.extend_from_slice(data);
                if let Act::Close = script_peek_mid(&script, body.len()) {
                    return;
                }
            }
            t.lock().unwrap().bodies.push(body);
            if !act(&mut wr, script(".")).await {
                return;
            }
        }
    }
}

/// Lets a script cut the data phase: it is asked `DATA-BYTES <n>` after
/// each line; any answer other than `Close` continues.
fn script_peek_mid(script: &Script, n: usize) -> Act {
    script(&format!("DATA-BYTES {n}"))
}

/// A plain ESMTP script: `caps` are the EHLO keywords; everything accepted.
pub fn esmtp(greeting_name: &str, caps: &[&str]) -> impl Fn(&str) -> Act + Send + Sync + 'static {
    let greeting = format!("220 {greeting_name} ESMTP ready\r\n");
    let mut ehlo = format!("250-{greeting_name} hello\r\n");
    for c in caps {
        ehlo.push_str(&format!("250-{c}\r\n"));
    }
    ehlo.push_str("250 HELP\r\n");
    move |cmd: &str| standard(cmd, &greeting, &ehlo)
}

pub fn standard(cmd: &str, greeting: &str, ehlo: &str) -> Act {
    let up = cmd.to_ascii_uppercase();
    if up == "CONNECT" {
        Act::Send(greeting.to_string())
    } else if up.starts_with("EHLO") || up.starts_with("LHLO") {
        Act::Send(ehlo.to_string())
    } else if up.starts_with("HELO") {
        Act::Send("250 hello\r\n".into())
    } else if up.starts_with("MAIL") {
        Act::Send("250 2.1.0 sender ok\r\n".into())
    } else if up.starts_with("RCPT") {
        Act::Send("250 2.1.5 recipient ok\r\n".into())
    } else if up == "DATA" {
        Act::Send("354 go ahead\r\n".into())
    } else if up == "." {
        Act::Send("250 2.0.0 queued as X1\r\n".into())
    } else if up.starts_with("BDAT") {
        Act::Send("250 2.0.0 chunk ok\r\n".into())
    } else if up == "RSET" {
        Act::Send("250 2.0.0 ok\r\n".into())
    } else if up == "QUIT" {
        Act::Send("221 2.0.0 bye\r\n".into())
    } else if up.starts_with("DATA-") {
        Act::Send(String::new())
    } else {
        Act::Send("500 5.5.1 unknown\r\n".into())
    }
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}
