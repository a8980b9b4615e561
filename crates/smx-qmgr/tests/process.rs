//! Component tests of the qmgr process over real Unix sockets in a
//! temporary queue directory, with scripted smtps, smar and smtpc peers
//! speaking the smx-ipc links.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use smx_conf::model::qmgr::QmgrConfig;
use smx_conf::value::Time;
use smx_ipc::qmgr_smar::{self, Hop, QmgrSmar, Route, RouteReply, RouteRequest, RoutedRcpt};
use smx_ipc::qmgr_smtpc::{
    Delivery, DeliveryResult, Destination, FullReply, QmgrSmtpc, RecipientResult, RecipientStatus,
    SmtpcReply, SmtpcRequest,
};
use smx_ipc::smtps_qmgr::{
    Envelope, EnvelopeRecipient, QmgrNotice, QmgrReply, SmtpsQmgr, SmtpsRequest, ThrottleReason,
};
use smx_ipc::types::{EnhancedCode, SessionId, SmtpReply};
use smx_ipc::{Client, DEFAULT_MAX_FRAME, Link, Server};
use smx_qmgr::{Qmgr, QueueStats, Settings, StatsHandle};
use smx_store::cdb::{Cdb, CdbOptions};
use smx_store::id::IdSource;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

// ---- peers ---------------------------------------------------------------

/// Aborts its task when dropped.
struct Peer(JoinHandle<()>);

impl Drop for Peer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Handler<L> =
    Arc<dyn Fn(<L as Link>::Request) -> Option<<L as Link>::Reply> + Send + Sync + 'static>;

/// A scripted server for link `L`: each request goes to `handler`; `None`
/// drops the connection without an answer. Requests are answered
/// concurrently after `delay`.
fn serve_peer<L: Link>(path: &Path, handler: Handler<L>, delay: Duration) -> Peer
where
    L::Reply: Sync,
    L::Notice: Sync,
{
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap();
    Peer(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let Ok(server) = Server::<L>::accept(stream, DEFAULT_MAX_FRAME).await else {
                    return;
                };
                let (mut rd, mut wr) = server.into_split();
                let (tx, mut rx) = mpsc::unbounded_channel::<Option<(u64, L::Reply)>>();
                let writer = tokio::spawn(async move {
                    while let Some(Some((id, body))) = rx.recv().await {
                        if wr
                            .write(&smx_ipc::link::ServerFrame::Reply { id, body })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
                while let Ok(Some(req)) = rd.read().await {
                    let handler = Arc::clone(&handler);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let answer = handler(req.body);
                        let _ = tx.send(answer.map(|a| (req.id, a)));
                    });
                }
                drop(tx);
                let _ = writer.await;
            });
        }
    }))
}

fn mx_route(host: &str) -> Route {
    Route::Hosts {
        protocol: qmgr_smar::Protocol::Esmtp,
        port: 25,
        hops: vec![Hop {
            name: Some(host.into()),
            preference: 10,
            addrs: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }],
    }
}

/// smar: `list@lists.example` expands to two members (owner
/// `owner-list@b.example`) and one failed member, `*@noroute.example` fails
/// permanently, `*@a.example` and
/// `*@a2.example` share the MX `mx.a.example`, everything else goes to
/// `mx.<domain>`. The `smtpc_rcpt_conf` of `tls-*` recipients asks for a
/// verified certificate, that of `badconf-*` recipients does not parse.
fn smar(path: &Path) -> Peer {
    let h: Handler<QmgrSmar> = Arc::new(|req| {
        let rcpt = match req {
            RouteRequest::Route { rcpt, .. } => rcpt,
            RouteRequest::RcptConf { rcpt } => {
                let conf = if rcpt.starts_with("tls-") {
                    Some("tls_requirements { flags = { verified }; }".to_string())
                } else if rcpt.starts_with("badconf-") {
                    Some("tls_requirements { nonsense".to_string())
                } else {
                    None
                };
                return Some(RouteReply::RcptConf(conf));
            }
            RouteRequest::Batch(_) => return None,
        };
        let domain = rcpt.rsplit('@').next().unwrap_or("").to_string();
        if rcpt == "list@lists.example" {
            return Some(RouteReply::Routed {
                rcpts: vec![
                    RoutedRcpt {
                        address: "m1@b.example".into(),
                        route: mx_route("mx.b.example"),
                    },
                    RoutedRcpt {
                        address: "m2@c.example".into(),
                        route: mx_route("mx.c.example"),
                    },
                ],
                owner: Some("owner-list@b.example".into()),
                verp: false,
                failed: vec![qmgr_smar::FailedRcpt {
                    address: "gone@lists.example".into(),
                    reply: SmtpReply {
                        code: 550,
                        enhanced: Some(EnhancedCode {
                            class: 5,
                            subject: 1,
                            detail: 1,
                        }),
                        text: "no such member".into(),
                    },
                }],
            });
        }
        if rcpt == "vlist@lists.example" {
            return Some(RouteReply::Routed {
                rcpts: ["m1@c.example", "m2@c.example"]
                    .iter()
                    .map(|a| RoutedRcpt {
                        address: (*a).into(),
                        route: mx_route("mx.c.example"),
                    })
                    .collect(),
                owner: Some("owner-vlist@b.example".into()),
                verp: true,
                failed: vec![],
            });
        }
        if domain == "noroute.example" {
            return Some(RouteReply::PermFail(SmtpReply {
                code: 550,
                enhanced: Some(EnhancedCode {
                    class: 5,
                    subject: 1,
                    detail: 2,
                }),
                text: "no such domain".into(),
            }));
        }
        let host = match domain.as_str() {
            "a.example" | "a2.example" => "mx.a.example".to_string(),
            d => format!("mx.{d}"),
        };
        Some(RouteReply::Routed {
            rcpts: vec![RoutedRcpt {
                address: rcpt.clone(),
                route: mx_route(&host),
            }],
            owner: None,
            verp: false,
            failed: vec![],
        })
    });
    // Batches are answered request by request, as smar does.
    let batched: Handler<QmgrSmar> = Arc::new(move |req| match req {
        RouteRequest::Batch(reqs) => {
            let answers: Option<Vec<RouteReply>> = reqs.into_iter().map(|r| h(r)).collect();
            answers.map(RouteReply::Batch)
        }
        other => h(other),
    });
    serve_peer::<QmgrSmar>(path, batched, Duration::ZERO)
}

/// What the scripted smtpc saw: each delivery with the content it read.
#[derive(Default)]
struct Seen {
    deliveries: Mutex<Vec<(Delivery, Vec<u8>)>>,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Seen {
    fn all(&self) -> Vec<(Delivery, Vec<u8>)> {
        self.deliveries.lock().unwrap().clone()
    }
}

/// The decision of the scripted smtpc for one recipient: its address and
/// the how-manieth attempt for it (1 for the first). `None` drops the link.
type Decide = Arc<dyn Fn(&str, u32) -> Option<RecipientStatus> + Send + Sync>;

fn smtpc(path: &Path, cdb_base: &Path, seen: Arc<Seen>, decide: Decide, delay: Duration) -> Peer {
    let cdb = Cdb::open(cdb_base, CdbOptions::default()).unwrap();
    let h: Handler<QmgrSmtpc> = Arc::new(move |req| {
        let SmtpcRequest::Deliver(d) = req;
        let ta = smx_store::id::TransactionId::new(d.content.counter, d.content.process);
        let mut content = Vec::new();
        if let Ok(mut r) = cdb.open_reader(ta) {
            std::io::Read::read_to_end(&mut r, &mut content).unwrap();
        }
        let mut results = Vec::new();
        for r in &d.recipients {
            let n = {
                let mut a = seen.attempts.lock().unwrap();
                let n = a.entry(r.address.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let status = decide(&r.address, n)?;
            let (code, e) = match status {
                RecipientStatus::Delivered => (250, (2, 0, 0)),
                RecipientStatus::TempFail => (451, (4, 3, 0)),
                RecipientStatus::PermFail => (550, (5, 1, 1)),
            };
            results.push(RecipientResult {
                index: r.index,
                status,
                reply: FullReply {
                    code,
                    enhanced: Some(EnhancedCode {
                        class: e.0,
                        subject: e.1,
                        detail: e.2,
                    }),
                    lines: vec!["scripted".into()],
                },
                host: Some("mx.test[127.0.0.1]:25".into()),
                relayed: false,
            });
        }
        seen.deliveries.lock().unwrap().push((d.clone(), content));
        Some(SmtpcReply::Delivered(DeliveryResult {
            da_ta: d.da_ta,
            recipients: results,
        }))
    });
    serve_peer::<QmgrSmtpc>(path, h, delay)
}

fn deliver_all() -> Decide {
    Arc::new(|_, _| Some(RecipientStatus::Delivered))
}

// ---- the queue -------------------------------------------------------------

struct Env {
    dir: tempfile::TempDir,
    settings: Settings,
    smtps_ids: IdSource,
    cdb: Cdb,
}

fn qmgr_config() -> QmgrConfig {
    let mut q = QmgrConfig {
        retry_min_delay: Time(Duration::from_secs(1)),
        retry_max_delay: Time(Duration::from_secs(2)),
        smar_timeout: Time(Duration::from_secs(5)),
        delivery_timeout: Time(Duration::from_secs(10)),
        ..QmgrConfig::default()
    };
    q.dsn_handling.merge_delay_max = Time(Duration::from_millis(200));
    q
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::in_queue_dir(dir.path(), qmgr_config());
        settings.reconnect_delay = Duration::from_millis(50);
        settings.disk_check_interval = Duration::from_millis(100);
        settings.defedb_scan_interval = Duration::from_secs(1);
        let smtps_ids = IdSource::open(dir.path().join("smtps.ids")).unwrap();
        let cdb = Cdb::open(dir.path(), CdbOptions::default()).unwrap();
        Env {
            dir,
            settings,
            smtps_ids,
            cdb,
        }
    }

    fn smar(&self) -> Peer {
        smar(&self.settings.smar_socket)
    }

    fn smtpc(&self, seen: &Arc<Seen>, decide: Decide) -> Peer {
        smtpc(
            &self.settings.smtpc_socket,
            self.dir.path(),
            Arc::clone(seen),
            decide,
            Duration::ZERO,
        )
    }

    /// Starts qmgr; returns the stop trigger, the run task and a stats handle.
    async fn start(&self) -> Running {
        let q = Qmgr::start(self.settings.clone()).await.unwrap();
        let stats = q.stats_handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            q.run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Running {
            stop: Some(stop),
            task: Some(task),
            stats,
        }
    }

    async fn smtps(&self) -> (Client<SmtpsQmgr>, mpsc::Receiver<QmgrNotice>) {
        let stream = tokio::net::UnixStream::connect(&self.settings.smtps_socket)
            .await
            .unwrap();
        Client::<SmtpsQmgr>::connect(stream, DEFAULT_MAX_FRAME)
            .await
            .unwrap()
    }

    /// Writes a message to CDB as smtps does and returns its envelope.
    fn message(&self, sender: &str, rcpts: &[&str]) -> Envelope {
        self.message_with(sender, "", rcpts)
    }

    /// Like [`Env::message`], with MAIL FROM parameters.
    fn message_with(&self, sender: &str, params: &str, rcpts: &[&str]) -> Envelope {
        let ta = self.smtps_ids.next_transaction(1).unwrap();
        let body = format!(
            "From: <{sender}>\r\nTo: <{}>\r\nSubject: test {ta}\r\nMessage-ID: <{ta}@test>\r\n\r\nHello.\r\n",
            rcpts.join(">, <")
        );
        let mut w = self.cdb.create(ta).unwrap();
        w.write(body.as_bytes()).unwrap();
        w.commit().unwrap();
        static SESSION: AtomicU64 = AtomicU64::new(1);
        Envelope {
            session: SessionId {
                counter: SESSION.fetch_add(1, Ordering::Relaxed),
                process: 1,
            },
            id: smx_ipc::types::TransactionId {
                counter: ta.counter(),
                process: ta.process(),
            },
            sender: sender.into(),
            params: params.into(),
            size: body.len() as u64,
            arrival_us: smx_qmgr::Timestamp::now().as_micros(),
            recipients: rcpts
                .iter()
                .enumerate()
                .map(|(i, r)| EnvelopeRecipient {
                    index: i as u32,
                    address: (*r).into(),
                    params: String::new(),
                })
                .collect(),
        }
    }

    fn content_exists(&self, env: &Envelope) -> bool {
        let ta = smx_store::id::TransactionId::new(env.id.counter, env.id.process);
        self.cdb.path_of(ta).exists()
    }

    fn ibdb_dir(&self) -> PathBuf {
        self.settings.ibdb_dir.clone()
    }
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    stats: StatsHandle,
}

impl Running {
    fn stats(&self) -> QueueStats {
        self.stats.snapshot().unwrap()
    }

    async fn wait_for(&self, what: &str, cond: impl Fn(&QueueStats) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.stats();
            if cond(&s) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {s:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn commit(c: &Client<SmtpsQmgr>, env: &Envelope) -> QmgrReply {
    c.request(SmtpsRequest::Commit(env.clone()), WAIT)
        .await
        .unwrap()
}

/// Open transactions and their open recipients' addresses, from the IBDB
/// log (qmgr must be stopped).
fn ibdb_open(dir: &Path) -> Vec<(String, Vec<String>)> {
    let (db, rec) = smx_store::ibdb::Ibdb::open(smx_store::ibdb::Options::new(dir)).unwrap();
    db.close().unwrap();
    rec.open
        .into_iter()
        .map(|t| {
            (
                t.transaction.sender,
                t.open.into_iter().map(|r| r.address).collect(),
            )
        })
        .collect()
}

fn defedb_len(path: &Path) -> u64 {
    smx_store::defedb::Defedb::open(path)
        .unwrap()
        .len()
        .unwrap()
}

// ---- tests -----------------------------------------------------------------

/// `Committed` is sent only once the envelope is durable in IBDB: with no
/// smar reachable nothing is routed, qmgr is stopped right after the
/// reply, and the log holds the transaction with both recipients open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_only_after_ibdb_commit() {
    let env = Env::new();
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@src.example", &["x@a.example", "y@b.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.stop().await;
    let open = ibdb_open(&env.ibdb_dir());
    assert_eq!(
        open,
        vec![(
            "s@src.example".to_string(),
            vec!["x@a.example".to_string(), "y@b.example".to_string()]
        )]
    );
    assert!(env.content_exists(&e));
}

/// With lookup_rcpt_conf, each recipient's smtpc_rcpt_conf travels with
/// its delivery, recipients with other requirements (or none) get
/// deliveries of their own although they share the MX, an entry that does
/// not parse is ignored; with lookup_session_conf every target carries its
/// smtpc_session_conf entry from qmgr_conf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_requirements_reach_smtpc() {
    let mut env = Env::new();
    env.settings.qmgr.smtpc.flags.lookup_rcpt_conf = true;
    env.settings.qmgr.smtpc.flags.lookup_session_conf = true;
    env.settings.session_confs = smx_qmgr::limits::SessionConfTable::parse(
        "smtpc_session_conf:127.0.0.1 tls_requirements { min_cipher_bits = 128; }\n",
    )
    .unwrap();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = env.smtpc(&seen, deliver_all());
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message(
        "s@src.example",
        &[
            "tls-x@a.example",
            "y@a.example",
            "tls-z@a2.example",
            "badconf-w@a2.example",
        ],
    );
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("4 delivered", |s| s.totals.delivered == 4).await;
    let mut groups: Vec<(Vec<String>, bool)> = seen
        .all()
        .iter()
        .map(|(d, _)| {
            let Destination::Hosts { targets, .. } = &d.destination else {
                panic!("{d:?}");
            };
            for t in targets {
                let t = t.tls_requirements.as_ref().expect("session conf");
                assert_eq!(t.min_cipher_bits, 128);
                assert!(!t.verified);
            }
            let verified = d.tls_requirements.as_ref().is_some_and(|t| t.verified);
            (
                d.recipients.iter().map(|r| r.address.clone()).collect(),
                verified,
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            (
                vec![
                    "tls-x@a.example".to_string(),
                    "tls-z@a2.example".to_string()
                ],
                true
            ),
            (
                vec![
                    "y@a.example".to_string(),
                    "badconf-w@a2.example".to_string()
                ],
                false
            ),
        ]
    );
    q.stop().await;
}

/// Recipients are routed by smar and grouped by destination: two domains
/// with the same MX share one delivery. After delivery the content is
/// removed and IBDB holds nothing open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_groups_recipients_by_destination() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = env.smtpc(&seen, deliver_all());
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message(
        "s@src.example",
        &["x@a.example", "y@a2.example", "z@b.example"],
    );
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("3 delivered", |s| s.totals.delivered == 3).await;
    let mut groups: Vec<Vec<String>> = seen
        .all()
        .iter()
        .map(|(d, content)| {
            assert!(String::from_utf8_lossy(content).contains("Hello."));
            d.recipients.iter().map(|r| r.address.clone()).collect()
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![
            vec!["x@a.example".to_string(), "y@a2.example".to_string()],
            vec!["z@b.example".to_string()]
        ]
    );
    q.wait_for("content released", |s| s.contents == 0).await;
    let s = q.stats();
    assert_eq!(s.totals.recipients_in, 3);
    assert_eq!(s.iqdb, 0);
    q.stop().await;
    assert!(!env.content_exists(&e));
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
}

/// A temporary failure moves the recipient to DEFEDB; it is tried again
/// after retry_min_delay (1 s here) and delivered, then DEFEDB is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_failure_is_deferred_and_retried() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let decide: Decide = Arc::new(|_, n| {
        Some(if n == 1 {
            RecipientStatus::TempFail
        } else {
            RecipientStatus::Delivered
        })
    });
    let _smtpc = env.smtpc(&seen, decide);
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@src.example", &["x@b.example"]);
    let t0 = tokio::time::Instant::now();
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("deferred", |s| s.totals.deferred == 1).await;
    q.wait_for("delivered", |s| s.totals.delivered == 1).await;
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "retried too early: {elapsed:?}"
    );
    assert_eq!(seen.all().len(), 2);
    q.wait_for("content released", |s| s.contents == 0).await;
    q.stop().await;
    assert_eq!(defedb_len(&env.settings.defedb_path), 0);
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
    assert!(!env.content_exists(&e));
}

/// The delivery-status part of a DSN as (field, value) pairs, lower-case
/// field names.
fn status_fields(msg: &[u8]) -> Vec<(String, String)> {
    let m = MessageParser::default().parse(msg).unwrap();
    let ct = m.content_type().unwrap();
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    let part = m
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("delivery-status"))
        })
        .unwrap();
    String::from_utf8_lossy(part.contents())
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// A permanent failure produces an RFC 3464 DSN to the sender from `<>`.
/// When that DSN fails too, a double bounce goes to the postmaster, and
/// when that fails, nothing more is sent: no bounce of a bounce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_bounces_and_never_bounces_a_bounce() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    // Everything to b.example is delivered; the rest fails permanently.
    let decide: Decide = Arc::new(|a, _| {
        Some(if a.ends_with("@b.example") {
            RecipientStatus::Delivered
        } else {
            RecipientStatus::PermFail
        })
    });
    let _smtpc = env.smtpc(&seen, decide);
    let q = env.start().await;
    let (c, _n) = env.smtps().await;

    // 1. A plain bounce to a sender that accepts it.
    let e = env.message("s@b.example", &["bad@c.example", "ok@b.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("bounce delivered", |s| s.totals.delivered == 2)
        .await;
    let all = seen.all();
    let dsn: Vec<_> = all.iter().filter(|(d, _)| d.sender.is_empty()).collect();
    assert_eq!(dsn.len(), 1);
    let (d, content) = dsn[0];
    assert_eq!(d.recipients[0].address, "s@b.example");
    let fields = status_fields(content);
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    assert_eq!(get("final-recipient"), Some("rfc822;bad@c.example"));
    assert_eq!(get("action"), Some("failed"));
    assert_eq!(get("status"), Some("5.1.1"));
    assert!(get("diagnostic-code").unwrap().contains("550"));
    let m = MessageParser::default().parse(content.as_slice()).unwrap();
    assert_eq!(
        m.to().unwrap().first().unwrap().address(),
        Some("s@b.example")
    );

    // 2. The sender's domain refuses the bounce: a double bounce goes to
    // postmaster@localhost, which refuses it too; that ends it.
    let e2 = env.message("s@c.example", &["bad2@c.example"]);
    assert_eq!(commit(&c, &e2).await, QmgrReply::Committed);
    q.wait_for("three more bounced", |s| s.totals.bounced == 4)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = q.stats();
    assert_eq!(s.totals.bounced, 4, "{s:#?}");
    assert_eq!(s.totals.dsns, 3, "{s:#?}");
    let from_null: Vec<String> = seen
        .all()
        .iter()
        .filter(|(d, _)| d.sender.is_empty())
        .flat_map(|(d, _)| d.recipients.iter().map(|r| r.address.clone()))
        .collect();
    assert_eq!(
        from_null,
        vec!["s@b.example", "s@c.example", "postmaster@localhost"]
    );
    q.wait_for("all content released", |s| s.contents == 0)
        .await;
    q.stop().await;
    assert_eq!(defedb_len(&env.settings.defedb_path), 0);
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
}

/// A recipient that smar refuses permanently bounces too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_failure_bounces() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = env.smtpc(&seen, deliver_all());
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@b.example", &["x@noroute.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("bounce delivered", |s| s.totals.delivered == 1)
        .await;
    let all = seen.all();
    assert_eq!(all.len(), 1);
    let fields = status_fields(&all[0].1);
    assert!(
        fields.contains(&("status".into(), "5.1.2".into())),
        "{fields:?}"
    );
    q.stop().await;
}

/// qmgr stopped while deliveries hang in smtpc; started again on the same
/// directories, it recovers every open recipient and delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_and_delivers_open_recipients() {
    let env = Env::new();
    let _smar = env.smar();
    let hung = Arc::new(Seen::default());
    // smtpc answers only after a minute: the deliveries are in flight.
    let slow = smtpc(
        &env.settings.smtpc_socket,
        env.dir.path(),
        Arc::clone(&hung),
        deliver_all(),
        Duration::from_secs(60),
    );
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e1 = env.message("s@src.example", &["x@a.example", "y@b.example"]);
    let e2 = env.message("s@src.example", &["z@c.example"]);
    assert_eq!(commit(&c, &e1).await, QmgrReply::Committed);
    assert_eq!(commit(&c, &e2).await, QmgrReply::Committed);
    q.wait_for("3 recipients in deliveries", |s| {
        s.aq.active_recipients == 3
    })
    .await;
    drop(c);
    q.stop().await;
    drop(slow);
    assert_eq!(ibdb_open(&env.ibdb_dir()).len(), 2);

    let seen = Arc::new(Seen::default());
    let _smtpc = env.smtpc(&seen, deliver_all());
    let q = env.start().await;
    assert_eq!(q.stats().totals.recovered, 3);
    q.wait_for("3 delivered", |s| s.totals.delivered == 3).await;
    let mut got: Vec<String> = seen
        .all()
        .iter()
        .flat_map(|(d, _)| d.recipients.iter().map(|r| r.address.clone()))
        .collect();
    got.sort();
    assert_eq!(got, vec!["x@a.example", "y@b.example", "z@c.example"]);
    q.wait_for("content released", |s| s.contents == 0).await;
    q.stop().await;
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
    assert!(!env.content_exists(&e1));
    assert!(!env.content_exists(&e2));
}

/// A deferred recipient survives a restart in DEFEDB and is delivered by
/// the new qmgr; an orphaned CDB file is removed at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_deferred_and_removes_orphans() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let tempfail: Decide = Arc::new(|_, _| Some(RecipientStatus::TempFail));
    let s1 = env.smtpc(&seen, tempfail);
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@src.example", &["x@b.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("deferred", |s| s.totals.deferred == 1).await;
    drop(c);
    q.stop().await;
    drop(s1);
    assert_eq!(defedb_len(&env.settings.defedb_path), 1);
    // A content file no envelope refers to.
    let orphan = env.message("s@src.example", &["o@b.example"]);

    let seen2 = Arc::new(Seen::default());
    let _s2 = env.smtpc(&seen2, deliver_all());
    let q = env.start().await;
    assert_eq!(q.stats().totals.orphans_removed, 1);
    assert!(!env.content_exists(&orphan));
    q.wait_for("delivered", |s| s.totals.delivered == 1).await;
    q.wait_for("content released", |s| s.contents == 0).await;
    q.stop().await;
    assert_eq!(defedb_len(&env.settings.defedb_path), 0);
    assert!(!env.content_exists(&e));
}

/// smtpc drops the link in the middle of a delivery (no answer); qmgr
/// reconnects and sends the delivery again, and the recipients are
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtpc_link_dropped_mid_delivery_is_retried() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let decide: Decide = Arc::new(|_, n| (n > 1).then_some(RecipientStatus::Delivered));
    let _smtpc = env.smtpc(&seen, decide);
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@src.example", &["x@b.example", "y@b.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("delivered", |s| s.totals.delivered == 2).await;
    let attempts = seen.attempts.lock().unwrap().clone();
    assert!(attempts.values().all(|n| *n >= 2), "{attempts:?}");
    q.stop().await;
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
}

/// Short disk space throttles every connected smtps (and a new one on
/// connect), and commits get 452 4.3.1; when space is back, smtps is
/// unthrottled and commits are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_shortage_throttles_and_resumes() {
    let mut env = Env::new();
    let free = Arc::new(AtomicU64::new(u64::MAX));
    let f = Arc::clone(&free);
    env.settings.disk_probe = Some(Arc::new(move || Some(f.load(Ordering::Relaxed))));
    let q = env.start().await;
    let (c, mut notices) = env.smtps().await;
    free.store(1024, Ordering::Relaxed);
    let n = tokio::time::timeout(WAIT, notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        n,
        QmgrNotice::Throttle {
            max_sessions: 0,
            reason: ThrottleReason::DiskSpace
        }
    );
    let (_c2, mut notices2) = env.smtps().await;
    let n2 = tokio::time::timeout(WAIT, notices2.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n2, n);
    let e = env.message("s@src.example", &["x@b.example"]);
    match commit(&c, &e).await {
        QmgrReply::TempFail(r) => {
            assert_eq!(r.code, 452);
            assert_eq!(r.enhanced.map(|e| e.to_string()), Some("4.3.1".into()));
        }
        other => panic!("expected TempFail, got {other:?}"),
    }
    assert!(q.stats().disk_short);
    free.store(u64::MAX, Ordering::Relaxed);
    let n = tokio::time::timeout(WAIT, notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, QmgrNotice::Unthrottle);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    assert_eq!(q.stats().totals.commits_refused, 1);
    q.stop().await;
}

/// Connection control answers NewSession, and CloseSession frees the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_go_through_connection_control() {
    let mut env = Env::new();
    env.settings.qmgr.smtps.max_connections = 1;
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let new = |n: u64| {
        SmtpsRequest::NewSession(smx_ipc::smtps_qmgr::NewSession {
            session: SessionId {
                counter: n,
                process: 1,
            },
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            client_port: 4000,
            server_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server_port: 25,
        })
    };
    assert_eq!(
        c.request(new(1), WAIT).await.unwrap(),
        QmgrReply::SessionAccepted
    );
    match c.request(new(2), WAIT).await.unwrap() {
        QmgrReply::SessionRefused(r) => assert_eq!(r.code, 421),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let close = SmtpsRequest::CloseSession {
        session: SessionId {
            counter: 1,
            process: 1,
        },
    };
    assert_eq!(c.request(close, WAIT).await.unwrap(), QmgrReply::Done);
    assert_eq!(
        c.request(new(3), WAIT).await.unwrap(),
        QmgrReply::SessionAccepted
    );
    q.stop().await;
}

/// An alias expansion becomes a new transaction from the list owner: the
/// members are delivered with the original content, the failed member is
/// bounced to the owner, and the original recipient is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_expansion_is_a_new_transaction_from_the_owner() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = env.smtpc(&seen, deliver_all());
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@src.example", &["list@lists.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    // Two members and the bounce to the owner.
    q.wait_for("members and bounce delivered", |s| s.totals.delivered == 3)
        .await;
    let all = seen.all();
    let mut members: Vec<(String, String)> = all
        .iter()
        .filter(|(d, _)| !d.sender.is_empty())
        .flat_map(|(d, c)| {
            assert!(String::from_utf8_lossy(c).contains("Hello."));
            d.recipients
                .iter()
                .map(|r| (d.sender.clone(), r.address.clone()))
        })
        .collect();
    members.sort();
    assert_eq!(
        members,
        vec![
            (
                "owner-list@b.example".to_string(),
                "m1@b.example".to_string()
            ),
            (
                "owner-list@b.example".to_string(),
                "m2@c.example".to_string()
            )
        ]
    );
    let bounce: Vec<_> = all.iter().filter(|(d, _)| d.sender.is_empty()).collect();
    assert_eq!(bounce.len(), 1);
    assert_eq!(bounce[0].0.recipients[0].address, "owner-list@b.example");
    let fields = status_fields(&bounce[0].1);
    assert!(
        fields.contains(&("final-recipient".into(), "rfc822;gone@lists.example".into())),
        "{fields:?}"
    );
    let s = q.stats();
    assert_eq!(s.totals.expanded, 1);
    q.wait_for("content released", |s| s.contents == 0).await;
    q.stop().await;
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
    assert!(!env.content_exists(&e));
}

/// smar is not running when the mail arrives and starts a little later:
/// the routing request reconnects and the mail is delivered without a
/// deferral.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smar_started_late_is_reconnected() {
    let env = Env::new();
    let seen = Arc::new(Seen::default());
    let _smtpc = env.smtpc(&seen, deliver_all());
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@src.example", &["x@b.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = env.smar();
    q.wait_for("delivered", |s| s.totals.delivered == 1).await;
    // smar restarts: a new instance on the same socket serves the next one.
    drop(first);
    let _second = env.smar();
    let e2 = env.message("s@src.example", &["y@b.example"]);
    assert_eq!(commit(&c, &e2).await, QmgrReply::Committed);
    q.wait_for("delivered", |s| s.totals.delivered == 2).await;
    assert_eq!(q.stats().totals.deferred, 0);
    q.stop().await;
}

/// ETRN makes the deferred recipients of a domain due at once, long
/// before their retry time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etrn_runs_the_deferred_mail_of_a_domain() {
    let mut env = Env::new();
    env.settings.qmgr.retry_min_delay = Time(Duration::from_secs(600));
    env.settings.qmgr.retry_max_delay = Time(Duration::from_secs(600));
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let decide: Decide = Arc::new(|_, n| {
        Some(if n == 1 {
            RecipientStatus::TempFail
        } else {
            RecipientStatus::Delivered
        })
    });
    let _smtpc = env.smtpc(&seen, decide);
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@src.example", &["x@b.example", "y@c.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("deferred", |s| s.totals.deferred == 2).await;
    let etrn = SmtpsRequest::Etrn {
        session: SessionId {
            counter: 9,
            process: 1,
        },
        node: "b.example".into(),
    };
    assert_eq!(c.request(etrn, WAIT).await.unwrap(), QmgrReply::Done);
    q.wait_for("b.example delivered", |s| s.totals.delivered == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.stats().totals.delivered, 1, "c.example must still wait");
    q.stop().await;
    assert_eq!(defedb_len(&env.settings.defedb_path), 1);
}

/// A transaction whose recipients do not fit in IQDB is refused with
/// 452 4.3.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iqdb_full_refuses_commit() {
    let mut env = Env::new();
    env.settings.qmgr.iqdb.max_cache_entries = 1;
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@src.example", &["x@b.example", "y@b.example"]);
    match commit(&c, &e).await {
        QmgrReply::TempFail(r) => assert_eq!(r.code, 452),
        other => panic!("expected TempFail, got {other:?}"),
    }
    q.stop().await;
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
}

/// A recipient still deferred after queue_delay_timeout gets one delay
/// DSN ("Action: delayed") to the sender, and only one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_dsn_is_sent_once() {
    let mut env = Env::new();
    env.settings.qmgr.queue_delay_timeout = Time(Duration::from_secs(1));
    env.settings.qmgr.queue_return_timeout = Time(Duration::from_secs(600));
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let decide: Decide = Arc::new(|a, _| {
        Some(if a.ends_with("@b.example") {
            RecipientStatus::Delivered
        } else {
            RecipientStatus::TempFail
        })
    });
    let _smtpc = env.smtpc(&seen, decide);
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@b.example", &["x@c.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("delay DSN delivered", |s| s.totals.delivered == 1)
        .await;
    let dsns: Vec<_> = seen
        .all()
        .into_iter()
        .filter(|(d, _)| d.sender.is_empty())
        .collect();
    assert_eq!(dsns.len(), 1);
    assert_eq!(dsns[0].0.recipients[0].address, "s@b.example");
    let fields = status_fields(&dsns[0].1);
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    assert_eq!(get("action").as_deref(), Some("delayed"));
    assert_eq!(
        get("final-recipient").as_deref(),
        Some("rfc822;x@c.example")
    );
    assert!(get("will-retry-until").is_some());
    // More attempts follow; no second delay DSN.
    let tries = seen.attempts.lock().unwrap()["x@c.example"];
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.attempts.lock().unwrap()["x@c.example"] < tries + 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(q.stats().totals.dsns, 1);
    q.stop().await;
}

/// A recipient that keeps failing temporarily bounces when
/// queue_return_timeout has passed, with status 5.4.7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_recipient_bounces() {
    let mut env = Env::new();
    env.settings.qmgr.queue_return_timeout = Time(Duration::from_secs(2));
    env.settings.qmgr.queue_delay_timeout = Time(Duration::from_secs(600));
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let decide: Decide = Arc::new(|a, _| {
        Some(if a.ends_with("@b.example") {
            RecipientStatus::Delivered
        } else {
            RecipientStatus::TempFail
        })
    });
    let _smtpc = env.smtpc(&seen, decide);
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message("s@b.example", &["x@c.example"]);
    let t0 = tokio::time::Instant::now();
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    q.wait_for("bounce delivered", |s| s.totals.delivered == 1)
        .await;
    assert!(t0.elapsed() >= Duration::from_secs(2));
    let dsns: Vec<_> = seen
        .all()
        .into_iter()
        .filter(|(d, _)| d.sender.is_empty())
        .collect();
    assert_eq!(dsns.len(), 1);
    let fields = status_fields(&dsns[0].1);
    assert!(
        fields.contains(&("action".into(), "failed".into())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("status".into(), "5.4.7".into())),
        "{fields:?}"
    );
    assert_eq!(q.stats().totals.bounced, 1);
    q.wait_for("content released", |s| s.contents == 0).await;
    q.stop().await;
    assert_eq!(defedb_len(&env.settings.defedb_path), 0);
    assert!(!env.content_exists(&e));
}

/// XVERP on a transaction, and a list that smar marks for VERP: each
/// recipient is delivered alone with a sender that names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verp_rewrites_the_sender_per_recipient() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = env.smtpc(&seen, deliver_all());
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let e = env.message_with("list@b.example", "XVERP", &["a@c.example", "b@c.example"]);
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    let e2 = env.message("s@src.example", &["vlist@lists.example"]);
    assert_eq!(commit(&c, &e2).await, QmgrReply::Committed);
    q.wait_for("delivered", |s| s.totals.delivered == 4).await;
    let mut got: Vec<(String, Vec<String>, String)> = seen
        .all()
        .iter()
        .map(|(d, _)| {
            (
                d.sender.clone(),
                d.recipients.iter().map(|r| r.address.clone()).collect(),
                d.params.clone(),
            )
        })
        .collect();
    got.sort();
    let want = |s: &str, r: &str| (s.to_string(), vec![r.to_string()], String::new());
    assert_eq!(
        got,
        vec![
            want("list+a=c.example@b.example", "a@c.example"),
            want("list+b=c.example@b.example", "b@c.example"),
            want("owner-vlist+m1=c.example@b.example", "m1@c.example"),
            want("owner-vlist+m2=c.example@b.example", "m2@c.example"),
        ]
    );
    q.stop().await;
}

/// A full active queue reduces smtps' sessions (QueueFull); recipients
/// that do not fit wait for room, and when the queue drains smtps is
/// unthrottled and everything is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_active_queue_throttles_and_recovers() {
    let mut env = Env::new();
    env.settings.qmgr.aq_max_entries = 2;
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = smtpc(
        &env.settings.smtpc_socket,
        env.dir.path(),
        Arc::clone(&seen),
        deliver_all(),
        Duration::from_millis(500),
    );
    let q = env.start().await;
    let (c, mut notices) = env.smtps().await;
    let e = env.message(
        "s@src.example",
        &["x@b.example", "y@c.example", "z@d.example"],
    );
    assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
    let n = tokio::time::timeout(WAIT, notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        n,
        QmgrNotice::Throttle {
            max_sessions: 25,
            reason: ThrottleReason::QueueFull
        }
    );
    q.wait_for("3 delivered", |s| s.totals.delivered == 3).await;
    let n = tokio::time::timeout(WAIT, notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, QmgrNotice::Unthrottle);
    q.stop().await;
}

/// A qmgr child process, killed with SIGKILL when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    /// Starts the `smx-qmgr` binary on the test's queue directory and
    /// waits until it listens.
    async fn start(env: &Env) -> (Child, Client<SmtpsQmgr>) {
        let conf = env.dir.path().join("smx.conf");
        std::fs::write(
            &conf,
            format!(
                "queue_directory = \"{}\";\n\
                 qmgr {{\n\
                   retry_min_delay = 1s; retry_max_delay = 2s;\n\
                   SMAR_timeout = 5s; delivery_timeout = 10s;\n\
                   min_disk_space = 1KB; ok_disk_space = 2KB;\n\
                 }}\n",
                env.dir.path().display()
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(&env.settings.smtps_socket);
        let child = Child(
            std::process::Command::new(env!("CARGO_BIN_EXE_smx-qmgr"))
                .arg(&conf)
                .spawn()
                .unwrap(),
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(s) = tokio::net::UnixStream::connect(&env.settings.smtps_socket).await
                && let Ok((c, _)) = Client::<SmtpsQmgr>::connect(s, DEFAULT_MAX_FRAME).await
            {
                return (child, c);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "qmgr child did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

/// qmgr is killed with SIGKILL while transactions flow and deliveries are
/// in flight, then started again: every recipient whose transaction was
/// acknowledged is delivered, and at the end nothing is left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_recipient() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = smtpc(
        &env.settings.smtpc_socket,
        env.dir.path(),
        Arc::clone(&seen),
        deliver_all(),
        Duration::from_millis(30),
    );
    let (child, mut c) = Child::start(&env).await;
    let mut child = Some(child);
    let mut acked: Vec<String> = Vec::new();
    for i in 0..40 {
        if i == 20 {
            // Kill in the middle of the flow, then start again.
            child.take().unwrap().kill();
            let (ch, c2) = Child::start(&env).await;
            child = Some(ch);
            c = c2;
        }
        let rcpts = [format!("r{i}a@b.example"), format!("r{i}b@c.example")];
        let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let e = env.message("s@src.example", &refs);
        if c.request(SmtpsRequest::Commit(e), WAIT).await.ok() == Some(QmgrReply::Committed) {
            acked.extend(rcpts);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(acked.len(), 80);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let delivered: std::collections::HashSet<String> = seen
            .all()
            .iter()
            .flat_map(|(d, _)| d.recipients.iter().map(|r| r.address.clone()))
            .collect();
        let missing: Vec<&String> = acked.iter().filter(|a| !delivered.contains(*a)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the outcome records follow, then stop the process and look.
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.take().unwrap().kill();
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
    assert_eq!(defedb_len(&env.settings.defedb_path), 0);
}

/// Abort of a transaction qmgr never took removes its content; Abort of a
/// committed one keeps it (the mail is delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_removes_only_uncommitted_content() {
    let env = Env::new();
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = smtpc(
        &env.settings.smtpc_socket,
        env.dir.path(),
        Arc::clone(&seen),
        deliver_all(),
        Duration::from_millis(300),
    );
    let q = env.start().await;
    let (c, _n) = env.smtps().await;
    let abort = |e: &Envelope| SmtpsRequest::Abort {
        session: e.session,
        transaction: e.id,
    };
    let never = env.message("s@src.example", &["x@b.example"]);
    assert!(env.content_exists(&never));
    assert_eq!(
        c.request(abort(&never), WAIT).await.unwrap(),
        QmgrReply::Done
    );
    assert!(!env.content_exists(&never));
    let kept = env.message("s@src.example", &["y@b.example"]);
    assert_eq!(commit(&c, &kept).await, QmgrReply::Committed);
    assert_eq!(
        c.request(abort(&kept), WAIT).await.unwrap(),
        QmgrReply::Done
    );
    assert!(env.content_exists(&kept));
    q.wait_for("delivered", |s| s.totals.delivered == 1).await;
    assert_eq!(seen.all()[0].0.recipients[0].address, "y@b.example");
    q.stop().await;
}

/// Two smtps links commit 200 transactions concurrently; every recipient
/// is delivered once and the queue ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_from_two_smtps_links() {
    let env = Arc::new(Env::new());
    let _smar = env.smar();
    let seen = Arc::new(Seen::default());
    let _smtpc = env.smtpc(&seen, deliver_all());
    let q = env.start().await;
    let t0 = tokio::time::Instant::now();
    let mut links = Vec::new();
    for l in 0..2 {
        let env = Arc::clone(&env);
        links.push(tokio::spawn(async move {
            let (c, _n) = env.smtps().await;
            let c = Arc::new(c);
            let mut commits = Vec::new();
            for i in 0..100 {
                let e = env.message(
                    "s@src.example",
                    &[
                        &format!("l{l}m{i}@b.example"),
                        &format!("l{l}m{i}@c.example"),
                    ],
                );
                let c = Arc::clone(&c);
                commits.push(tokio::spawn(async move { commit(&c, &e).await }));
            }
            for h in commits {
                assert_eq!(h.await.unwrap(), QmgrReply::Committed);
            }
        }));
    }
    for l in links {
        l.await.unwrap();
    }
    q.wait_for("400 delivered", |s| s.totals.delivered == 400)
        .await;
    eprintln!("400 recipients through qmgr in {:?}", t0.elapsed());
    let mut addrs: Vec<String> = seen
        .all()
        .iter()
        .flat_map(|(d, _)| d.recipients.iter().map(|r| r.address.clone()))
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 400);
    q.wait_for("content released", |s| s.contents == 0 && s.iqdb == 0)
        .await;
    q.stop().await;
    assert!(ibdb_open(&env.ibdb_dir()).is_empty());
}

/// wait_for_server: a routing request waits that long for smar to become
/// available, although its own timeout (SMAR_timeout) is shorter; without
/// it the recipient is deferred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_server_bridges_a_late_smar() {
    for (wait, deferred) in [(Duration::from_secs(10), false), (Duration::ZERO, true)] {
        let mut env = Env::new();
        env.settings.qmgr.smar_timeout = Time(Duration::from_millis(300));
        env.settings.qmgr.wait_for_server = Time(wait);
        let seen = Arc::new(Seen::default());
        let _smtpc = env.smtpc(&seen, deliver_all());
        let q = env.start().await;
        let (c, _n) = env.smtps().await;
        let e = env.message("s@src.example", &["x@b.example"]);
        assert_eq!(commit(&c, &e).await, QmgrReply::Committed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _smar = env.smar();
        if deferred {
            q.wait_for("deferred", |s| s.totals.deferred == 1).await;
        } else {
            q.wait_for("delivered", |s| s.totals.delivered == 1).await;
            assert_eq!(q.stats().totals.deferred, 0);
        }
        q.stop().await;
    }
}
