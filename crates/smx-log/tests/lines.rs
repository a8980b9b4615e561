//! Component tests: real tracing events through `SmxLayer` into an
//! in-memory writer, a file, or a Unix datagram socket standing in for
//! syslogd.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smx_log::{Destination, Facility, LogSettings, SmxLayer, SyslogOption};
use tracing::{debug, debug_span, error, info, info_span, trace, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;

/// 2026-11-21T07:05:00Z.
fn fixed_clock() -> u64 {
    1_795_244_700
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .expect("no test thread panics while holding the buffer")
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn lines(&self) -> Vec<String> {
        let bytes = self
            .0
            .lock()
            .expect("no test thread panics while holding the buffer")
            .clone();
        String::from_utf8(bytes)
            .expect("encoded log lines are ASCII")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `f` with a capturing subscriber at `log_level`; returns the lines.
fn capture(log_level: u32, f: impl FnOnce()) -> Vec<String> {
    let buf = Buf::default();
    let layer = SmxLayer::with_writer("smtps", log_level, buf.clone()).with_clock(fixed_clock);
    tracing::subscriber::with_default(Registry::default().with(layer), f);
    buf.lines()
}

fn header() -> String {
    format!("2026-11-21T07:05:00Z smtps[{}]: ", std::process::id())
}

#[test]
fn event_fields_in_order() {
    let got = capture(9, || {
        info!(
            ss_sess = "S00000000407EAE3800",
            client_ipv4 = "127.0.0.1",
            client_name = "localhost."
        );
    });
    assert_eq!(
        got,
        [format!(
            "{}sev=INFO, ss_sess=S00000000407EAE3800, client_ipv4=127.0.0.1, client_name=localhost.",
            header()
        )]
    );
}

#[test]
fn message_goes_last_as_msg() {
    let got = capture(9, || {
        let size = 1177;
        info!(stat = 0, "accepted {size} bytes");
        info!("only a message");
    });
    assert_eq!(
        got,
        [
            format!("{}sev=INFO, stat=0, msg=accepted 1177 bytes", header()),
            format!("{}sev=INFO, msg=only a message", header()),
        ]
    );
}

#[test]
fn span_fields_on_every_line() {
    let got = capture(9, || {
        let sess = info_span!("session", ss_sess = "S00000000407EAE3800");
        let _s = sess.enter();
        info!(where_ = "connection", starttls = "successful");
        let ta = info_span!("transaction", ss_ta = tracing::field::Empty);
        ta.record("ss_ta", "S00000000407EAE4E00");
        let _t = ta.enter();
        info!(mail = "<SENDER@meta1.org>", stat = 0);
        info!(rcpt = "<RECIPIENT@meta1.org>", idx = 0, stat = 0);
    });
    let h = header();
    assert_eq!(
        got,
        [
            format!(
                "{h}sev=INFO, ss_sess=S00000000407EAE3800, where_=connection, starttls=successful"
            ),
            format!(
                "{h}sev=INFO, ss_sess=S00000000407EAE3800, ss_ta=S00000000407EAE4E00, mail=<SENDER@meta1.org>, stat=0"
            ),
            format!(
                "{h}sev=INFO, ss_sess=S00000000407EAE3800, ss_ta=S00000000407EAE4E00, rcpt=<RECIPIENT@meta1.org>, idx=0, stat=0"
            ),
        ]
    );
}

#[test]
fn span_below_the_level_still_annotates() {
    let got = capture(9, || {
        let _s = debug_span!("session", ss_sess = "S00000000407EAE3800").entered();
        info!(stat = 0);
    });
    assert_eq!(
        got,
        [format!(
            "{}sev=INFO, ss_sess=S00000000407EAE3800, stat=0",
            header()
        )]
    );
}

#[test]
fn untrusted_values_are_encoded() {
    let got = capture(9, || {
        let reply = "550 5.7.1 no, not now, 99% usage";
        let helo = "evil\r\nsev=ERR, forged=1";
        warn!(reply, helo = %helo, "peer said: {reply}");
    });
    assert_eq!(
        got,
        [format!(
            "{}sev=WARN, reply=550 5.7.1 no%2C not now%2C 99%25 usage, helo=evil%0D%0Asev=ERR%2C forged=1, msg=peer said: 550 5.7.1 no%2C not now%2C 99%25 usage",
            header()
        )]
    );
}

#[test]
fn severity_names() {
    let got = capture(14, || {
        error!(n = 1);
        warn!(n = 2);
        info!(n = 3);
        debug!(n = 4);
        trace!(n = 5);
    });
    let h = header();
    assert_eq!(
        got,
        [
            format!("{h}sev=ERR, n=1"),
            format!("{h}sev=WARN, n=2"),
            format!("{h}sev=INFO, n=3"),
            format!("{h}sev=DEBUG, n=4"),
            format!("{h}sev=TRACE, n=5"),
        ]
    );
}

#[test]
fn log_level_filters_events() {
    let cases: [(u32, &[&str]); 8] = [
        (0, &[]),
        (1, &["ERR"]),
        (3, &["ERR"]),
        (4, &["ERR", "WARN"]),
        (9, &["ERR", "WARN", "INFO"]),
        (12, &["ERR", "WARN", "INFO", "DEBUG"]),
        (13, &["ERR", "WARN", "INFO", "DEBUG"]),
        (14, &["ERR", "WARN", "INFO", "DEBUG", "TRACE"]),
    ];
    for (level, want) in cases {
        let got = capture(level, || {
            let _s = info_span!("s", ss_sess = "x").entered();
            error!("e");
            warn!("w");
            info!("i");
            debug!("d");
            trace!("t");
        });
        let sevs: Vec<String> = got
            .iter()
            .map(|l| {
                let body = l.split_once("]: ").unwrap().1;
                body.split(", ")
                    .next()
                    .unwrap()
                    .trim_start_matches("sev=")
                    .to_owned()
            })
            .collect();
        assert_eq!(sevs, want, "log_level {level}");
    }
}

#[test]
fn file_destination_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smtps.log");
    let settings = LogSettings {
        component: "smtps".into(),
        level: 9,
        destination: Destination::File(path.clone()),
    };
    let (layer, handle) = smx_log::layer(&settings).unwrap();
    let layer = layer.with_clock(fixed_clock);
    let rotated = dir.path().join("smtps.log.0");
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        info!(n = 1);
        std::fs::rename(&path, &rotated).unwrap();
        info!(n = 2); // still into the renamed file
        handle.reopen().unwrap();
        info!(n = 3);
    });
    let h = header();
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap(),
        format!("{h}sev=INFO, n=1\n{h}sev=INFO, n=2\n")
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{h}sev=INFO, n=3\n")
    );
}

#[test]
fn file_destination_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmgr.log");
    std::fs::write(&path, "earlier line\n").unwrap();
    let settings = LogSettings {
        component: "qmgr".into(),
        level: 9,
        destination: Destination::File(path.clone()),
    };
    let (layer, _handle) = smx_log::layer(&settings).unwrap();
    tracing::subscriber::with_default(Registry::default().with(layer), || info!(n = 1));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("earlier line\n"), "{text}");
    assert!(text.ends_with("sev=INFO, n=1\n"), "{text}");
}

#[test]
fn unopenable_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let settings = LogSettings {
        component: "smtps".into(),
        level: 9,
        destination: Destination::File(dir.path().join("no-such-dir").join("x.log")),
    };
    assert!(matches!(
        smx_log::layer(&settings),
        Err(smx_log::LogError::Open { .. })
    ));
}

fn syslog_settings(socket: PathBuf, facility: Facility, options: Vec<SyslogOption>) -> LogSettings {
    LogSettings {
        component: "smtps".into(),
        level: 9,
        destination: Destination::Syslog {
            facility,
            ident: "meta1-MTA".into(),
            options,
            socket,
        },
    }
}

fn recv(server: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = server
        .recv(&mut buf)
        .expect("a datagram arrives within the read timeout");
    String::from_utf8(buf[..n].to_vec()).expect("encoded log lines are ASCII")
}

#[test]
fn syslog_datagrams_carry_priority() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("log");
    let server = UnixDatagram::bind(&socket).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let pid = std::process::id();
    let settings = syslog_settings(socket.clone(), Facility::Mail, vec![SyslogOption::Pid]);
    let (layer, _handle) = smx_log::layer(&settings).unwrap();
    let layer = layer.with_clock(fixed_clock);
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        warn!(ss_sess = "S00000000407EAE3800", "slow, very");
        error!(stat = 451);
        info!(stat = 0);
        debug!(stat = 1); // filtered at log_level 9
    });
    // mail = 2: WARN 2*8+4, ERR 2*8+3, INFO 2*8+6.
    assert_eq!(
        recv(&server),
        format!(
            "<20>Nov 21 07:05:00 meta1-MTA[{pid}]: sev=WARN, ss_sess=S00000000407EAE3800, msg=slow%2C very"
        )
    );
    assert_eq!(
        recv(&server),
        format!("<19>Nov 21 07:05:00 meta1-MTA[{pid}]: sev=ERR, stat=451")
    );
    assert_eq!(
        recv(&server),
        format!("<22>Nov 21 07:05:00 meta1-MTA[{pid}]: sev=INFO, stat=0")
    );
    server.set_nonblocking(true).unwrap();
    assert!(server.recv(&mut [0u8; 16]).is_err(), "debug event was sent");
}

#[test]
fn syslog_without_pid_option_and_local_facility() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("log");
    let server = UnixDatagram::bind(&socket).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let settings = syslog_settings(socket.clone(), "local7".parse().unwrap(), vec![]);
    let (layer, _handle) = smx_log::layer(&settings).unwrap();
    let layer = layer.with_clock(fixed_clock);
    tracing::subscriber::with_default(Registry::default().with(layer), || error!("boom"));
    // local7 = 23: 23*8+3 = 187.
    assert_eq!(
        recv(&server),
        "<187>Nov 21 07:05:00 meta1-MTA: sev=ERR, msg=boom"
    );
}

#[test]
fn syslog_survives_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("log");
    let server = UnixDatagram::bind(&socket).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    let settings = syslog_settings(socket.clone(), Facility::Daemon, vec![]);
    let (layer, handle) = smx_log::layer(&settings).unwrap();
    let layer = layer.with_clock(fixed_clock);
    let dispatch = tracing::Dispatch::new(Registry::default().with(layer));

    tracing::dispatcher::with_default(&dispatch, || info!(n = 1));
    assert!(recv(&server).ends_with("sev=INFO, n=1"));

    // syslogd restarts: the old socket goes away, a new one appears.
    drop(server);
    std::fs::remove_file(&socket).unwrap();
    let server = UnixDatagram::bind(&socket).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || info!(n = 2));
    assert!(recv(&server).ends_with("sev=INFO, n=2"));

    handle.reopen().unwrap();
    tracing::dispatcher::with_default(&dispatch, || info!(n = 3));
    assert!(recv(&server).ends_with("sev=INFO, n=3"));
}

#[test]
fn syslog_unavailable_falls_back_without_error() {
    let dir = tempfile::tempdir().unwrap();
    let settings = syslog_settings(dir.path().join("no-socket"), Facility::Mail, vec![]);
    let (layer, handle) = smx_log::layer(&settings).unwrap();
    // Lines go to stderr; nothing panics or blocks.
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        error!("first");
        error!("second");
    });
    assert!(matches!(
        handle.reopen(),
        Err(smx_log::LogError::Connect { .. })
    ));
}

#[test]
fn two_layers_in_one_subscriber() {
    let (a, b) = (Buf::default(), Buf::default());
    let la = SmxLayer::with_writer("smtps", 9, a.clone()).with_clock(fixed_clock);
    let lb = SmxLayer::with_writer("smtps", 9, b.clone()).with_clock(fixed_clock);
    tracing::subscriber::with_default(Registry::default().with(la).with(lb), || {
        let _s = info_span!("session", ss_sess = "S00000000407EAE3800").entered();
        info!(stat = 0);
    });
    let want = [format!(
        "{}sev=INFO, ss_sess=S00000000407EAE3800, stat=0",
        header()
    )];
    assert_eq!(a.lines(), want);
    assert_eq!(b.lines(), want);
}
