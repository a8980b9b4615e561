//! The whole MTA end to end: the built `smx` binary started with `smx run`
//! (mcp and every component as separate processes) on a configuration in a
//! temporary directory, driven by real peers: swaks, Postfix's smtp-source
//! and smtp-sink, Dovecot's LMTP server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{free_port, wait_port};

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `smx run` on a configuration; stopped with SIGINT on drop.
struct Smx {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Smx {
    /// Starts smx with `extra_smar` mailertable entries and `extra_conf`
    /// appended to the configuration.
    fn start(mailertable: &[String], extra_conf: &str) -> Smx {
        Smx::start_with("mx.e2e.test", mailertable, "", extra_conf)
    }

    /// Starts smx named `hostname`, with `smtps_extra` inside its smtps
    /// section.
    fn start_with(
        hostname: &str,
        mailertable: &[String],
        smtps_extra: &str,
        extra_conf: &str,
    ) -> Smx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let spool = dir.path().join("spool");
        let mut entries = vec!["\"localhost lmtp:\"".to_string()];
        entries.extend(mailertable.iter().map(|e| format!("\"{e}\"")));
        let conf = format!(
            r#"
queue_directory = "{spool}";
hostname = "{hostname}";
smtps {{
    listen_socket {{ type = inet; address = 127.0.0.1; port = {port}; }}
    flags = {{ access }};
    max_connections_per_ip = 100;
    {smtps_extra}
}}
smar {{
    mailertable {{ entries = {{ {entries} }}; }}
    access_map {{ entries = {{ "cltaddr:127.0.0.1 relay" }}; }}
}}
qmgr {{
    min_disk_space = 1MB;
    ok_disk_space = 2MB;
    retry_min_delay = 1s;
    retry_max_delay = 2s;
    smtps {{ max_connection_rate = 100000; max_connections = 100; }}
}}
{extra_conf}
"#,
            spool = spool.display(),
            entries = entries.join(", "),
        );
        let conf_path = dir.path().join("smx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let check = Command::new(env!("CARGO_BIN_EXE_smx"))
            .args(["conf-check", "-f"])
            .arg(&conf_path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.path().join("smx.log");
        let child = Command::new(env!("CARGO_BIN_EXE_smx"))
            .args(["run", "-f"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let smx = Smx {
            dir,
            child: Some(child),
            port,
            log,
        };
        assert!(
            wait_port(port, Duration::from_secs(20)),
            "{}",
            smx.log_text()
        );
        // The greeting comes once qmgr and smar are up.
        let start = Instant::now();
        loop {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut line = String::new();
            let _ = BufReader::new(&mut s).read_line(&mut line);
            let _ = std::io::Write::write_all(&mut s, b"QUIT\r\n");
            if line.starts_with("220") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{line}: {}",
                smx.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        smx
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn maildir(&self, user: &str) -> Vec<Vec<u8>> {
        read_dir_files(&self.spool().join("mail").join(user).join("Maildir/new"))
    }

    /// Content files left in the CDB.
    fn cdb_files(&self) -> usize {
        (0..16)
            .map(|i| read_dir_files(&self.spool().join(format!("{i:X}"))).len())
            .sum()
    }

    /// Stops smx with SIGINT (Ctrl-C) and returns how long it took.
    fn stop(&mut self) -> Duration {
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        start.elapsed()
    }
}

impl Drop for Smx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                out.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Waits until `f` holds (at most `limit`).
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

fn swaks(port: u16, from: &str, to: &str, data: &str) -> String {
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--from", from, "--to", to, "--helo", "client.e2e.test"])
        .args(["--data", data])
        .output()
        .expect("swaks (installed by .ci/run)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The message as delivered, without the fields added on the way
/// (Return-Path, Delivered-To by the LMTP server; Received by smtps).
fn strip_trace(delivered: &[u8]) -> String {
    let text = String::from_utf8_lossy(delivered).replace("\r\n", "\n");
    let mut out = String::new();
    let mut in_received = false;
    let mut header = true;
    for line in text.split_inclusive('\n') {
        if header && line == "\n" {
            header = false;
        }
        if header {
            if line.starts_with("Return-Path:") || line.starts_with("Delivered-To:") {
                in_received = false;
                continue;
            }
            if line.starts_with("Received:") {
                in_received = true;
                continue;
            }
            if in_received && (line.starts_with('\t') || line.starts_with(' ')) {
                continue;
            }
            in_received = false;
        }
        out.push_str(line);
    }
    out
}

const MESSAGE: &str = "From: sender@localhost\nTo: user@localhost\nSubject: end to end\nMessage-ID: <e2e-1@client.e2e.test>\n\nline one\n.leading dot\n\nlast line\n";

#[test]
fn swaks_to_the_builtin_lda_byte_exact() {
    let mut smx = Smx::start(&[], "");
    // swaks ends the data with CRLF . CRLF after what it is given.
    let out = swaks(
        smx.port,
        "sender@localhost",
        "user@localhost",
        MESSAGE.trim_end(),
    );
    assert!(out.contains("<-  250 2.0.0"), "{out}");
    assert!(
        eventually(Duration::from_secs(20), || smx.maildir("user").len() == 1),
        "{}",
        smx.log_text()
    );
    let delivered = &smx.maildir("user")[0];
    assert_eq!(strip_trace(delivered), MESSAGE);
    let text = String::from_utf8_lossy(delivered);
    assert!(
        text.starts_with("Return-Path: <sender@localhost>\r\n"),
        "{text}"
    );
    assert!(text.contains("by mx.e2e.test (smx "), "{text}");
    assert!(eventually(Duration::from_secs(10), || smx.cdb_files() == 0));
    // Ctrl-C stops everything within 10 s.
    let took = smx.stop();
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A Dovecot LMTP server configured in a temporary directory.
struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Dovecot {
    fn start() -> Dovecot {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        std::fs::create_dir_all(b.join("run")).unwrap();
        std::fs::create_dir_all(b.join("mail")).unwrap();
        for p in [b, &b.join("mail"), &b.join("run")] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = free_port();
        let conf = format!(
            "base_dir = {b}/run\nstate_dir = {b}/run\nlog_path = {b}/dovecot.log\n\
             protocols = lmtp\nssl = no\nlisten = 127.0.0.1\n\
             mail_location = maildir:{b}/mail/%n\nfirst_valid_uid = 0\n\
             mail_uid = nobody\nmail_gid = nogroup\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={b}/mail/%n allow_all_users=yes\n}}\n\
             passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
             service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n",
            b = b.display()
        );
        let conf_path = b.join("dovecot.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot (installed by .ci/run)");
        assert!(
            wait_port(port, Duration::from_secs(20)),
            "dovecot did not start"
        );
        Dovecot { dir, child, port }
    }

    fn maildir(&self, user: &str) -> Vec<Vec<u8>> {
        read_dir_files(&self.dir.path().join("mail").join(user).join("new"))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
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

#[test]
fn swaks_to_dovecot_lmtp_byte_exact() {
    let dovecot = Dovecot::start();
    let smx = Smx::start(
        &[format!(
            "dovecot.e2e.test {}:lmtp:[127.0.0.1]",
            dovecot.port
        )],
        "",
    );
    let msg = MESSAGE.replace("user@localhost", "joe@dovecot.e2e.test");
    let out = swaks(
        smx.port,
        "sender@localhost",
        "joe@dovecot.e2e.test",
        msg.trim_end(),
    );
    assert!(out.contains("<-  250 2.0.0"), "{out}");
    assert!(
        eventually(Duration::from_secs(20), || dovecot.maildir("joe").len()
            == 1),
        "{}",
        smx.log_text()
    );
    assert_eq!(strip_trace(&dovecot.maildir("joe")[0]), msg);
}

/// smtp-sink on `port` dumping every message into `dir`; killed on drop.
struct Sink(Child);

impl Sink {
    fn start(port: u16, args: &[&str]) -> Sink {
        let mut cmd = Command::new("/usr/sbin/smtp-sink");
        if nix_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .args(args)
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (installed by .ci/run)");
        assert!(wait_port(port, Duration::from_secs(10)));
        Sink(child)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nix_root() -> bool {
    let mut s = String::new();
    std::fs::File::open("/proc/self/status")
        .and_then(|mut f| f.read_to_string(&mut s))
        .ok();
    s.lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn smtp_source_1000_messages_through_to_smtp_sink() {
    let sink_port = free_port();
    let dump = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let template = format!("{}/%Y%m%d%H%M%S.", dump.path().display());
    // -d: one file per message; the counter in each name keeps them apart.
    let _sink = Sink::start(sink_port, &["-d", &template]);
    let smx = Smx::start(
        &[format!("sink.e2e.test {sink_port}:esmtp:[127.0.0.1]")],
        "",
    );
    let out = Command::new("/usr/sbin/smtp-source")
        .args(["-s", "10", "-m", "1000", "-l", "2048"])
        .args([
            "-f",
            "sender@localhost",
            "-t",
            "user@sink.e2e.test",
            "-M",
            "client.e2e.test",
        ])
        .arg(format!("127.0.0.1:{}", smx.port))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = || std::fs::read_dir(dump.path()).map_or(0, |d| d.count());
    assert!(
        eventually(Duration::from_secs(120), || count() >= 1000),
        "{} of 1000 arrived\n{}",
        count(),
        smx.log_text()
    );
    // Once each: nothing more arrives, and the queue is empty.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(), 1000);
    assert!(eventually(Duration::from_secs(20), || smx.cdb_files() == 0));
}

#[test]
fn temporary_failure_is_retried_and_permanent_failure_bounces() {
    let later_port = free_port();
    let reject_port = free_port();
    let _reject = Sink::start(reject_port, &["-f", "rcpt"]);
    let smx = Smx::start(
        &[
            format!("later.e2e.test {later_port}:esmtp:[127.0.0.1]"),
            format!("reject.e2e.test {reject_port}:esmtp:[127.0.0.1]"),
        ],
        "",
    );
    // Nothing listens on later_port yet: the first attempt fails.
    let msg = "Subject: retry\n\nbody\n";
    swaks(smx.port, "sender@localhost", "a@later.e2e.test", msg);
    // A permanent failure: the sender gets an RFC 3464 bounce.
    swaks(
        smx.port,
        "sender@localhost",
        "b@reject.e2e.test",
        "Subject: doomed\n\nbody\n",
    );
    assert!(
        eventually(Duration::from_secs(30), || !smx
            .maildir("sender")
            .is_empty()),
        "{}",
        smx.log_text()
    );
    let bounce = String::from_utf8_lossy(&smx.maildir("sender")[0]).to_string();
    assert!(bounce.contains("Return-Path: <>"), "{bounce}");
    assert!(bounce.contains("multipart/report"), "{bounce}");
    assert!(bounce.contains("report-type=delivery-status"), "{bounce}");
    assert!(
        bounce.contains("Final-Recipient: rfc822;b@reject.e2e.test"),
        "{bounce}"
    );
    assert!(bounce.contains("Action: failed"), "{bounce}");
    assert!(bounce.contains("Status: 5."), "{bounce}");
    // The destination comes up: the deferred message is delivered.
    std::thread::sleep(Duration::from_secs(2));
    let dump = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let template = format!("{}/%Y%m%d%H%M%S.", dump.path().display());
    let _later = Sink::start(later_port, &["-d", &template]);
    assert!(
        eventually(Duration::from_secs(60), || std::fs::read_dir(dump.path())
            .map_or(0, |d| d.count())
            == 1),
        "{}",
        smx.log_text()
    );
    assert!(eventually(Duration::from_secs(20), || smx.cdb_files() == 0));
    // Exactly one bounce, for the one failed recipient.
    assert_eq!(smx.maildir("sender").len(), 1);
}

#[test]
fn ctrl_c_leaves_no_process_behind() {
    let mut smx = Smx::start(&[], "");
    let pid = smx.child.as_ref().unwrap().id();
    // The components are mcp's children.
    let children: Vec<u32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(children.len() >= 5, "{children:?}");
    let took = smx.stop();
    assert!(took < Duration::from_secs(10), "{took:?}");
    for c in children {
        let gone =
            std::fs::read_to_string(format!("/proc/{c}/stat")).map_or(true, |s| s.contains(") Z "));
        assert!(gone, "component {c} still running after Ctrl-C");
    }
}

/// One SMTP transaction with a blocking client; `true` if the message got
/// 250 at the end of the data.
fn send_one(port: u16, id: usize) -> bool {
    use std::io::Write;
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return false,
    };
    let mut r = BufReader::new(stream);
    let mut reply = || -> Option<String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Some(line);
            }
        }
    };
    let ok = |r: Option<String>, code: &str| r.is_some_and(|l| l.starts_with(code));
    if !ok(reply(), "220") {
        return false;
    }
    let steps: [(&str, &str); 4] = [
        ("EHLO chaos.e2e.test\r\n", "250"),
        ("MAIL FROM:<sender@localhost>\r\n", "250"),
        ("RCPT TO:<user@sink.e2e.test>\r\n", "250"),
        ("DATA\r\n", "354"),
    ];
    for (cmd, code) in steps {
        if w.write_all(cmd.as_bytes()).is_err() || !ok(reply(), code) {
            return false;
        }
    }
    let body = format!(
        "Subject: chaos {id}\r\nX-Chaos-Id: <{id}>\r\n\r\n{}\r\n.\r\n",
        "x".repeat(1000)
    );
    if w.write_all(body.as_bytes()).is_err() {
        return false;
    }
    let accepted = ok(reply(), "250");
    let _ = w.write_all(b"QUIT\r\n");
    accepted
}

/// The pid of a running component of mcp `mcp`.
fn component_pid(mcp: u32, name: &str) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{mcp}/task/{mcp}/children")).ok()?;
    children.split_whitespace().find_map(|p| {
        let env = std::fs::read(format!("/proc/{p}/environ")).ok()?;
        let want = format!("SMX_COMPONENT={name}");
        env.split(|b| *b == 0)
            .any(|v| v == want.as_bytes())
            .then(|| p.parse().ok())
            .flatten()
    })
}

/// Every component killed with SIGKILL, one at a time, several times,
/// while messages flow: every message that got 250 arrives at the sink.
/// SMX_CHAOS_MESSAGES sets the number of messages (default 10,000); each
/// component is killed three times, 2.5 s apart in rotation.
#[test]
fn sigkill_each_component_while_mail_flows_loses_nothing() {
    let total: usize = std::env::var("SMX_CHAOS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let sink_port = free_port();
    let dump = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let template = format!("{}/%Y%m%d%H%M%S.", dump.path().display());
    let _sink = Sink::start(sink_port, &["-d", &template]);
    let smx = Smx::start(
        &[format!("sink.e2e.test {sink_port}:esmtp:[127.0.0.1]")],
        "",
    );
    let mcp = smx.child.as_ref().unwrap().id();
    let port = smx.port;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let next = std::sync::Arc::clone(&next);
            let accepted = std::sync::Arc::clone(&accepted);
            std::thread::spawn(move || {
                loop {
                    let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if id >= total {
                        return;
                    }
                    // A refused or broken attempt (a component was just
                    // killed) is tried again, as a client would.
                    for _ in 0..600 {
                        if send_one(port, id) {
                            accepted.lock().unwrap().push(id);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    let mut kills = Vec::new();
    let victims = ["qmgr", "smtps", "smtpc", "smar", "lda"];
    let mut round = 0;
    // Three rounds: each component killed three times. mcp's restart
    // back-off grows with quick deaths (1, 2, 4 s), so more rounds mostly
    // measure the back-off.
    while next.load(std::sync::atomic::Ordering::Relaxed) < total && kills.len() < 15 {
        std::thread::sleep(Duration::from_millis(2500));
        let name = victims[round % victims.len()];
        round += 1;
        if let Some(pid) = component_pid(mcp, name) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            kills.push(name);
        }
    }
    for s in senders {
        s.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    for v in victims {
        assert!(kills.contains(&v), "{v} was never killed: {kills:?}");
    }
    assert!(
        accepted.len() > total * 9 / 10,
        "only {} of {total} accepted",
        accepted.len()
    );
    let arrived = || -> std::collections::HashSet<usize> {
        let mut ids = std::collections::HashSet::new();
        if let Ok(rd) = std::fs::read_dir(dump.path()) {
            for e in rd.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("X-Chaos-Id: <")
                        && let Some(n) = v.strip_suffix('>').and_then(|n| n.parse().ok())
                    {
                        ids.insert(n);
                    }
                }
            }
        }
        ids
    };
    let all_there = eventually(Duration::from_secs(180), || {
        let got = arrived();
        accepted.iter().all(|id| got.contains(id))
    });
    let got = arrived();
    let missing: Vec<_> = accepted
        .iter()
        .filter(|id| !got.contains(id))
        .take(20)
        .collect();
    assert!(
        all_there,
        "{} accepted messages missing (first: {missing:?}); kills: {kills:?}",
        accepted.iter().filter(|id| !got.contains(id)).count()
    );
    eprintln!(
        "chaos: {total} sent, {} accepted, {} arrived, {} kills: {kills:?}",
        accepted.len(),
        got.len(),
        kills.len()
    );
}

/// smtpc and smtps talk TLS to each other: one smx relays to a second smx
/// whose smtps offers STARTTLS; the message arrives through ESMTPS and the
/// relaying smtpc logs the successful handshake.
#[test]
fn smtpc_uses_starttls_with_smtps() {
    let pki = tempfile::tempdir().unwrap();
    let (cert, key) = (pki.path().join("cert.pem"), pki.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=b.e2e.test",
            "-addext",
            "subjectAltName=DNS:b.e2e.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tls = format!(
        "tls {{ cert_file = \"{}\"; key_file = \"{}\"; }}",
        cert.display(),
        key.display()
    );
    let b = Smx::start_with("b.e2e.test", &["b.e2e.test lmtp:".to_string()], &tls, "");
    let a = Smx::start_with(
        "a.e2e.test",
        &[format!("b.e2e.test {}:esmtp:[127.0.0.1]", b.port)],
        "",
        "",
    );
    swaks(
        a.port,
        "sender@localhost",
        "user@b.e2e.test",
        "Subject: over tls\n\nsecret",
    );
    assert!(
        eventually(Duration::from_secs(30), || b.maildir("user").len() == 1),
        "A:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    let text = String::from_utf8_lossy(&b.maildir("user")[0]).to_string();
    assert!(text.contains("by b.e2e.test (smx "), "{text}");
    assert!(
        text.contains("with ESMTPS"),
        "B received it over TLS: {text}"
    );
    assert!(text.contains("secret"), "{text}");
    assert!(
        a.log_text().contains("starttls=successful"),
        "{}",
        a.log_text()
    );
}
