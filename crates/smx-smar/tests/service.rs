//! Component tests of the smar service over a real Unix socket, with
//! smx_ipc::Client on the other side and an in-memory DNS.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smx_ipc::qmgr_smar::{
    FailedRcpt, Hop, Protocol, QmgrSmar, Route, RouteReply, RouteRequest, RoutedRcpt,
};
use smx_ipc::smtps_qmgr::SmtpsQmgr;
use smx_ipc::smtps_smar::{SmarReply, SmarRequest, SmtpsSmar};
use smx_ipc::types::{EnhancedCode, SmtpReply};
use smx_ipc::{Client, DEFAULT_MAX_FRAME, IpcError};
use smx_maps::{Map, MapError, TextMap};
use smx_smar::Smar;
use smx_smar::dns::{Dns, DnsError, Mx};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

/// DNS from a table; names starting with `slow` never answer, `temp`
/// fails temporarily, anything unknown is NXDOMAIN.
#[derive(Debug, Default)]
struct TableDns {
    mx: HashMap<String, Vec<Mx>>,
    a: HashMap<String, Vec<IpAddr>>,
    ptr: HashMap<IpAddr, Vec<String>>,
    delay: Duration,
}

impl TableDns {
    async fn pause(&self, name: &str) -> Result<(), DnsError> {
        if name.starts_with("slow") {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if name.starts_with("temp") {
            return Err(DnsError::ServerFailure {
                name: name.into(),
                code: "SERVFAIL".into(),
            });
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(())
    }

    fn known(&self, name: &str) -> bool {
        self.mx.contains_key(name) || self.a.contains_key(name)
    }
}

impl Dns for TableDns {
    async fn mx(&self, name: &str) -> Result<Vec<Mx>, DnsError> {
        self.pause(name).await?;
        if !self.known(name) {
            return Err(DnsError::NxDomain { name: name.into() });
        }
        Ok(self.mx.get(name).cloned().unwrap_or_default())
    }

    async fn addrs(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        self.pause(name).await?;
        if !self.known(name) {
            return Err(DnsError::NxDomain { name: name.into() });
        }
        Ok(self.a.get(name).cloned().unwrap_or_default())
    }

    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        self.ptr
            .get(&ip)
            .cloned()
            .ok_or_else(|| DnsError::NxDomain {
                name: ip.to_string(),
            })
    }
}

#[derive(Debug)]
struct Broken;

impl Map for Broken {
    fn lookup(&self, _key: &str) -> Result<Option<String>, MapError> {
        Err(MapError::Read {
            path: "gone.cdb".into(),
            source: std::io::Error::other("gone"),
        })
    }
}

fn text(entries: &[&str]) -> Arc<dyn Map> {
    Arc::new(
        TextMap::from_entries(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
    )
}

fn dns() -> TableDns {
    let mut d = TableDns::default();
    d.mx.insert(
        "remote.example".into(),
        vec![
            Mx {
                preference: 20,
                exchange: "mx2.remote.example".into(),
            },
            Mx {
                preference: 10,
                exchange: "mx1.remote.example".into(),
            },
        ],
    );
    d.a.insert(
        "mx1.remote.example".into(),
        vec!["192.0.2.1".parse().unwrap()],
    );
    d.a.insert(
        "mx2.remote.example".into(),
        vec!["192.0.2.2".parse().unwrap()],
    );
    d.mx.insert(
        "null.example".into(),
        vec![Mx {
            preference: 0,
            exchange: ".".into(),
        }],
    );
    d.a.insert("gate.way".into(), vec!["192.0.2.50".parse().unwrap()]);
    d.a.insert(
        "spammer.example".into(),
        vec!["192.0.2.66".parse().unwrap()],
    );
    d.a.insert("smart.host".into(), vec!["192.0.2.60".parse().unwrap()]);
    d
}

fn smar(dns: TableDns) -> Smar<TableDns> {
    let mut s = Smar::new(
        text(&[
            "localhost lmtp:",
            "my.dom lmtp:",
            ".tld { host = gate.way }",
            "lmtp.example 24:lmtp:[192.0.2.24]",
            "relay.example esmtp:[smart.host]",
        ]),
        dns,
    );
    s.access = Some(text(&[
        "cltaddr:127.0.0.1 quick:relay",
        "cltaddr:10 error:551 5.7.1 No direct mail from 10.x.y.z",
        "from:@spammer.example error:551 5.7.1 No spammers",
        "to:abuse quick:ok",
        "certissuer:/c=us/o=trusted+20ca relay",
        "ehlo:bad.example error:550 5.7.1 Bad HELO",
        "smtpc_rcpt_conf:@remote.example tls_requirements { flags = { encrypted }; }",
    ]));
    s.policy.access = true;
    s.aliases = Some(text(&[
        "list <a@my.dom> <b@remote.example> <gone@nx.example>",
        "owner-list someone",
        "verp-list x",
        "a local:",
        "abuse local:",
        "loop1 <loop2@my.dom>",
        "loop2 <loop1@my.dom>",
    ]));
    s.timeout = Duration::from_millis(500);
    s
}

struct Running {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

async fn start(s: Smar<TableDns>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smar.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        smx_smar::serve(listener, Arc::new(s), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        path,
        _dir: dir,
        stop: Some(tx),
        task,
    }
}

async fn smtps_client(r: &Running) -> Client<SmtpsSmar> {
    let stream = UnixStream::connect(&r.path).await.unwrap();
    Client::<SmtpsSmar>::connect(stream, DEFAULT_MAX_FRAME)
        .await
        .unwrap()
        .0
}

async fn qmgr_client(r: &Running) -> Client<QmgrSmar> {
    let stream = UnixStream::connect(&r.path).await.unwrap();
    Client::<QmgrSmar>::connect(stream, DEFAULT_MAX_FRAME)
        .await
        .unwrap()
        .0
}

const T: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn smtps_checks_over_the_socket() {
    let r = start(smar(dns())).await;
    let c = smtps_client(&r).await;
    let ask = |req| c.request(req, T);

    assert_eq!(
        ask(SmarRequest::ConnectCheck {
            client_ip: ip("127.0.0.1"),
            client_name: None
        })
        .await
        .unwrap(),
        SmarReply::Relay { quick: true }
    );
    assert!(matches!(
        ask(SmarRequest::ConnectCheck {
            client_ip: ip("10.1.2.3"),
            client_name: None
        })
        .await
        .unwrap(),
        SmarReply::Reject(r) if r.code == 551
    ));
    assert_eq!(
        ask(SmarRequest::ConnectCheck {
            client_ip: ip("192.0.2.200"),
            client_name: Some("whatever.example".into())
        })
        .await
        .unwrap(),
        SmarReply::Accept { quick: false }
    );
    assert!(matches!(
        ask(SmarRequest::MailCheck {
            sender: "x@spammer.example".into(),
            client_ip: ip("192.0.2.200")
        })
        .await
        .unwrap(),
        SmarReply::Reject(r) if r.text == "No spammers"
    ));
    // The sender domain must resolve.
    assert!(matches!(
        ask(SmarRequest::MailCheck {
            sender: "x@nx.example".into(),
            client_ip: ip("192.0.2.200")
        })
        .await
        .unwrap(),
        SmarReply::Reject(r) if r.code == 553
    ));
    assert!(matches!(
        ask(SmarRequest::MailCheck {
            sender: "x@temp.example".into(),
            client_ip: ip("192.0.2.200")
        })
        .await
        .unwrap(),
        SmarReply::TempFail(r) if r.code == 451
    ));
    assert_eq!(
        ask(SmarRequest::MailCheck {
            sender: "x@remote.example".into(),
            client_ip: ip("192.0.2.200")
        })
        .await
        .unwrap(),
        SmarReply::Accept { quick: false }
    );
    // RCPT: relaying denied from outside, allowed from 127.0.0.1.
    assert!(matches!(
        ask(SmarRequest::RcptCheck {
            rcpt: "u@remote.example".into(),
            sender: "x@remote.example".into(),
            client_ip: ip("192.0.2.200")
        })
        .await
        .unwrap(),
        SmarReply::Reject(r) if r.text == "Relaying denied"
    ));
    assert_eq!(
        ask(SmarRequest::RcptCheck {
            rcpt: "u@remote.example".into(),
            sender: "x@remote.example".into(),
            client_ip: ip("127.0.0.1")
        })
        .await
        .unwrap(),
        SmarReply::Relay { quick: true }
    );
    assert_eq!(
        ask(SmarRequest::RcptCheck {
            rcpt: "abuse@my.dom".into(),
            sender: "x@remote.example".into(),
            client_ip: ip("192.0.2.200")
        })
        .await
        .unwrap(),
        SmarReply::Accept { quick: true }
    );
    assert!(matches!(
        ask(SmarRequest::RcptCheck {
            rcpt: "nobody@my.dom".into(),
            sender: "x@remote.example".into(),
            client_ip: ip("192.0.2.200")
        })
        .await
        .unwrap(),
        SmarReply::Reject(r) if r.code == 550 && r.text == "User unknown"
    ));
    assert_eq!(
        ask(SmarRequest::RcptCheckInSession {
            rcpt: "u@remote.example".into(),
            sender: "x@remote.example".into(),
            client_ip: ip("192.0.2.200"),
            session: Some(SmarReply::Accept { quick: false }),
            relay_allowed: true,
        })
        .await
        .unwrap(),
        SmarReply::Relay { quick: false }
    );
    assert_eq!(
        ask(SmarRequest::CertCheck {
            issuer: "/C=US/O=Trusted CA".into(),
            subject: "/CN=client".into()
        })
        .await
        .unwrap(),
        SmarReply::Relay { quick: false }
    );
    assert!(matches!(
        ask(SmarRequest::EhloCheck {
            helo: "BAD.example".into(),
            client_ip: ip("192.0.2.200")
        })
        .await
        .unwrap(),
        SmarReply::Reject(r) if r.text == "Bad HELO"
    ));
}

#[tokio::test]
async fn delay_checks_hold_rejections_until_rcpt() {
    let mut s = smar(dns());
    s.policy.delay_checks = true;
    let r = start(s).await;
    let c = smtps_client(&r).await;
    // Connect and MAIL rejections are not given at once...
    assert_eq!(
        c.request(
            SmarRequest::ConnectCheck {
                client_ip: ip("10.1.2.3"),
                client_name: None
            },
            T
        )
        .await
        .unwrap(),
        SmarReply::Accept { quick: false }
    );
    assert_eq!(
        c.request(
            SmarRequest::MailCheck {
                sender: "x@spammer.example".into(),
                client_ip: ip("192.0.2.200")
            },
            T
        )
        .await
        .unwrap(),
        SmarReply::Accept { quick: false }
    );
    // ...but at RCPT, unless to: says quick:ok.
    for (client, rcpt, want_code) in [
        ("10.1.2.3", "a@my.dom", Some(551)),
        ("10.1.2.3", "abuse@my.dom", None),
    ] {
        let got = c
            .request(
                SmarRequest::RcptCheck {
                    rcpt: rcpt.into(),
                    sender: "x@remote.example".into(),
                    client_ip: ip(client),
                },
                T,
            )
            .await
            .unwrap();
        match want_code {
            Some(code) => assert!(
                matches!(&got, SmarReply::Reject(r) if r.code == code),
                "{rcpt}: {got:?}"
            ),
            None => assert_eq!(got, SmarReply::Accept { quick: true }, "{rcpt}"),
        }
    }
    // smtps sends back the Accept it got at connect: the held-back
    // rejection is still found.
    let got = c
        .request(
            SmarRequest::RcptCheckInSession {
                rcpt: "a@my.dom".into(),
                sender: "x@remote.example".into(),
                client_ip: ip("10.1.2.3"),
                session: Some(SmarReply::Accept { quick: false }),
                relay_allowed: false,
            },
            T,
        )
        .await
        .unwrap();
    assert!(
        matches!(&got, SmarReply::Reject(r) if r.code == 551),
        "{got:?}"
    );
    let got = c
        .request(
            SmarRequest::RcptCheck {
                rcpt: "a@my.dom".into(),
                sender: "x@spammer.example".into(),
                client_ip: ip("192.0.2.200"),
            },
            T,
        )
        .await
        .unwrap();
    assert!(
        matches!(&got, SmarReply::Reject(r) if r.text == "No spammers"),
        "{got:?}"
    );
}

fn hosts(port: u16, hops: &[(Option<&str>, u16, &[&str])]) -> Route {
    Route::Hosts {
        protocol: Protocol::Esmtp,
        port,
        hops: hops
            .iter()
            .map(|(n, p, a)| Hop {
                name: n.map(Into::into),
                preference: *p,
                addrs: a.iter().map(|s| ip(s)).collect(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn qmgr_routing_over_the_socket() {
    let r = start(smar(dns())).await;
    let c = qmgr_client(&r).await;
    let route = |rcpt: &str| {
        c.request(
            RouteRequest::Route {
                rcpt: rcpt.into(),
                sender: "s@remote.example".into(),
            },
            T,
        )
    };
    let single = |address: &str, route: Route| RouteReply::Routed {
        rcpts: vec![RoutedRcpt {
            address: address.into(),
            route,
        }],
        owner: None,
        verp: false,
        failed: Vec::new(),
    };
    assert_eq!(
        route("a@my.dom").await.unwrap(),
        single("a@my.dom", Route::LmtpSocket)
    );
    assert_eq!(
        route("u@remote.example").await.unwrap(),
        single(
            "u@remote.example",
            hosts(
                25,
                &[
                    (Some("mx1.remote.example"), 10, &["192.0.2.1"]),
                    (Some("mx2.remote.example"), 20, &["192.0.2.2"])
                ]
            )
        )
    );
    assert_eq!(
        route("u@x.tld").await.unwrap(),
        single(
            "u@x.tld",
            hosts(25, &[(Some("gate.way"), 0, &["192.0.2.50"])])
        )
    );
    assert_eq!(
        route("u@relay.example").await.unwrap(),
        single(
            "u@relay.example",
            hosts(25, &[(Some("smart.host"), 0, &["192.0.2.60"])])
        )
    );
    assert_eq!(
        route("u@lmtp.example").await.unwrap(),
        single(
            "u@lmtp.example",
            Route::Hosts {
                protocol: Protocol::Lmtp,
                port: 24,
                hops: vec![Hop {
                    name: None,
                    preference: 0,
                    addrs: vec![ip("192.0.2.24")]
                }]
            }
        )
    );
    assert_eq!(
        route("u@[192.0.2.77]").await.unwrap(),
        single("u@[192.0.2.77]", hosts(25, &[(None, 0, &["192.0.2.77"])]))
    );
    // An alias list with owner- and verp- entries.
    assert_eq!(
        route("list@my.dom").await.unwrap(),
        RouteReply::Routed {
            rcpts: vec![
                RoutedRcpt {
                    address: "a@my.dom".into(),
                    route: Route::LmtpSocket
                },
                RoutedRcpt {
                    address: "b@remote.example".into(),
                    route: hosts(
                        25,
                        &[
                            (Some("mx1.remote.example"), 10, &["192.0.2.1"]),
                            (Some("mx2.remote.example"), 20, &["192.0.2.2"])
                        ]
                    )
                }
            ],
            owner: Some("owner-list@my.dom".into()),
            verp: true,
            failed: vec![FailedRcpt {
                address: "gone@nx.example".into(),
                reply: SmtpReply {
                    code: 550,
                    enhanced: Some(EnhancedCode {
                        class: 5,
                        subject: 1,
                        detail: 2
                    }),
                    text: "Domain does not exist".into()
                }
            }],
        }
    );
    for (rcpt, code) in [
        ("nobody@my.dom", 550),
        ("u@nx.example", 550),
        ("u@null.example", 556),
        ("loop1@my.dom", 554),
    ] {
        let got = route(rcpt).await.unwrap();
        assert!(
            matches!(&got, RouteReply::PermFail(r) if r.code == code),
            "{rcpt}: {got:?}"
        );
    }
    let got = route("u@temp.example").await.unwrap();
    assert!(matches!(&got, RouteReply::TempFail(_)), "{got:?}");
    let conf = |rcpt: &str| c.request(RouteRequest::RcptConf { rcpt: rcpt.into() }, T);
    assert_eq!(
        conf("u@remote.example").await.unwrap(),
        RouteReply::RcptConf(Some("tls_requirements { flags = { encrypted }; }".into()))
    );
    assert_eq!(conf("u@my.dom").await.unwrap(), RouteReply::RcptConf(None));
}

/// A batch is answered request by request, exactly as the requests alone,
/// concurrently, and a malformed batch is refused as a whole.
#[tokio::test]
async fn qmgr_routing_batches() {
    let mut d = dns();
    d.delay = Duration::from_millis(100);
    let r = start(smar(d)).await;
    let c = qmgr_client(&r).await;
    let route = |rcpt: &str| RouteRequest::Route {
        rcpt: rcpt.into(),
        sender: "s@remote.example".into(),
    };
    let reqs = vec![
        route("a@my.dom"),
        route("u@remote.example"),
        route("nobody@my.dom"),
        RouteRequest::RcptConf {
            rcpt: "u@remote.example".into(),
        },
        route("u@temp.example"),
        route("list@my.dom"),
    ];
    let mut alone = Vec::new();
    for req in &reqs {
        alone.push(c.request(req.clone(), T).await.unwrap());
    }
    assert!(matches!(alone[2], RouteReply::PermFail(_)), "{alone:?}");
    assert!(matches!(alone[4], RouteReply::TempFail(_)), "{alone:?}");
    let got = c.request(RouteRequest::Batch(reqs), T).await.unwrap();
    assert_eq!(got, RouteReply::Batch(alone));

    // 30 recipients behind a 100 ms DNS each: answered together, in order.
    let reqs: Vec<_> = (0..30)
        .map(|i| route(&format!("u{i}@remote.example")))
        .collect();
    let started = Instant::now();
    let got = c.request(RouteRequest::Batch(reqs), T).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let RouteReply::Batch(answers) = got else {
        panic!("{got:?}");
    };
    assert_eq!(answers.len(), 30);
    for (i, a) in answers.iter().enumerate() {
        let RouteReply::Routed { rcpts, .. } = a else {
            panic!("{i}: {a:?}");
        };
        assert_eq!(rcpts[0].address, format!("u{i}@remote.example"));
    }

    for bad in [
        vec![route("a@my.dom"); smx_ipc::qmgr_smar::MAX_BATCH + 1],
        vec![
            route("a@my.dom"),
            RouteRequest::Batch(vec![route("a@my.dom")]),
        ],
    ] {
        let got = c.request(RouteRequest::Batch(bad), T).await.unwrap();
        assert!(
            matches!(&got, RouteReply::PermFail(r) if r.code == 501),
            "{got:?}"
        );
    }
}

/// A request that takes longer than SMAR_timeout is answered with a
/// temporary failure; other requests on the link are not held up.
#[tokio::test]
async fn smar_timeout_and_concurrency() {
    let mut d = dns();
    d.delay = Duration::from_millis(100);
    let r = start(smar(d)).await;
    let c = Arc::new(qmgr_client(&r).await);
    let started = Instant::now();
    let slow = {
        let c = Arc::clone(&c);
        tokio::spawn(async move {
            c.request(
                RouteRequest::Route {
                    rcpt: "u@slow.example".into(),
                    sender: String::new(),
                },
                T,
            )
            .await
        })
    };
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = Arc::clone(&c);
        tasks.push(tokio::spawn(async move {
            c.request(
                RouteRequest::Route {
                    rcpt: format!("user{i}@remote.example"),
                    sender: String::new(),
                },
                T,
            )
            .await
        }));
    }
    for t in tasks {
        let got = t.await.unwrap().unwrap();
        assert!(matches!(got, RouteReply::Routed { .. }), "{got:?}");
    }
    // 200 requests of 3 DNS queries of 100 ms each: far less than 60 s
    // only if they ran concurrently.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let got = slow.await.unwrap().unwrap();
    assert!(
        matches!(&got, RouteReply::TempFail(r) if r.code == 451),
        "{got:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
}

/// `SessionConf`: the raw `smtps_session_conf:` value by client address,
/// then by the client name smar resolved (PTR confirmed by A), never by
/// the name smtps sends; no entry or no access map is `None`; a failing
/// map is a temporary failure.
#[tokio::test]
async fn session_conf_for_smtps() {
    let mut d = dns();
    d.ptr
        .insert(ip("198.51.100.7"), vec!["mail.trusted.example.".into()]);
    d.a.insert("mail.trusted.example".into(), vec![ip("198.51.100.7")]);
    // A PTR name that does not resolve back is not the client's name.
    d.ptr
        .insert(ip("198.51.100.8"), vec!["liar.trusted.example.".into()]);
    let mut s = smar(d);
    s.access = Some(text(&[
        "smtps_session_conf:192.0.2 session_feature=notls;",
        "smtps_session_conf:192.0.2.9 tls_requirements { flags = { verified }; }",
        "smtps_session_conf:.trusted.example. session_feature=relaxed;",
        "cltaddr:192.0.2 ok",
    ]));
    let r = start(s).await;
    let c = smtps_client(&r).await;
    let conf = |client_ip: &str, client_name: Option<&str>| {
        c.request(
            SmarRequest::SessionConf {
                client_ip: ip(client_ip),
                client_name: client_name.map(str::to_string),
            },
            T,
        )
    };
    let some = |v: &str| SmarReply::SessionConf(Some(v.to_string()));
    assert_eq!(
        conf("192.0.2.1", None).await.unwrap(),
        some("session_feature=notls;")
    );
    // The most specific address entry wins.
    assert_eq!(
        conf("192.0.2.9", None).await.unwrap(),
        some("tls_requirements { flags = { verified }; }")
    );
    assert_eq!(
        conf("198.51.100.7", None).await.unwrap(),
        some("session_feature=relaxed;")
    );
    assert_eq!(
        conf("198.51.100.8", None).await.unwrap(),
        SmarReply::SessionConf(None)
    );
    // What smtps claims the name is does not count.
    assert_eq!(
        conf("203.0.113.1", Some("mail.trusted.example."))
            .await
            .unwrap(),
        SmarReply::SessionConf(None)
    );
    // The value is parsed by smtps, not by smar: the one above is valid.
    assert!(smx_conf::SessionConf::parse("tls_requirements { flags = { verified }; }").is_ok());
    drop(r);

    // Without an access map: no entry.
    let mut s = smar(dns());
    s.access = None;
    let r = start(s).await;
    let c = smtps_client(&r).await;
    let got = c
        .request(
            SmarRequest::SessionConf {
                client_ip: ip("192.0.2.1"),
                client_name: None,
            },
            T,
        )
        .await
        .unwrap();
    assert_eq!(got, SmarReply::SessionConf(None));
    drop(r);

    // A map that cannot be read.
    let mut s = smar(dns());
    s.access = Some(Arc::new(Broken));
    let r = start(s).await;
    let c = smtps_client(&r).await;
    let got = c
        .request(
            SmarRequest::SessionConf {
                client_ip: ip("192.0.2.1"),
                client_name: None,
            },
            T,
        )
        .await
        .unwrap();
    assert!(
        matches!(&got, SmarReply::TempFail(r) if r.code == 451),
        "{got:?}"
    );
}

/// A failing map gives a temporary failure, and smar keeps serving.
#[tokio::test]
async fn failing_map_is_tempfail_not_a_crash() {
    let mut s = smar(dns());
    s.access = Some(Arc::new(Broken));
    s.aliases = Some(Arc::new(Broken));
    let r = start(s).await;
    let c = smtps_client(&r).await;
    for _ in 0..3 {
        let got = c
            .request(
                SmarRequest::ConnectCheck {
                    client_ip: ip("192.0.2.1"),
                    client_name: None,
                },
                T,
            )
            .await
            .unwrap();
        assert!(
            matches!(&got, SmarReply::TempFail(r) if r.code == 451),
            "{got:?}"
        );
    }
    let q = qmgr_client(&r).await;
    let got = q
        .request(
            RouteRequest::Route {
                rcpt: "a@my.dom".into(),
                sender: String::new(),
            },
            T,
        )
        .await
        .unwrap();
    assert!(matches!(&got, RouteReply::TempFail(_)), "{got:?}");
}

/// A client asking for another service is turned away at the handshake;
/// the server keeps accepting.
#[tokio::test]
async fn wrong_service_is_refused() {
    let r = start(smar(dns())).await;
    let stream = UnixStream::connect(&r.path).await.unwrap();
    let err = Client::<SmtpsQmgr>::connect(stream, DEFAULT_MAX_FRAME)
        .await
        .unwrap_err();
    assert!(matches!(err, IpcError::Rejected(_)), "{err:?}");
    let c = smtps_client(&r).await;
    assert!(
        c.request(
            SmarRequest::ConnectCheck {
                client_ip: ip("127.0.0.1"),
                client_name: None
            },
            T
        )
        .await
        .is_ok()
    );
}

/// smar built from a configuration file with inline maps.
#[tokio::test]
async fn from_config() {
    let conf = smx_conf::load_str(
        "test.conf",
        r#"
smtps { flags = { access }; }
smar {
    mailertable { entries = { "localhost lmtp:", ". esmtp:[192.0.2.99]" }; }
    access_map { entries = { "cltaddr:127.0.0.1 relay" }; }
}
"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Smar::from_config(&conf, dir.path(), dns()).unwrap();
    assert!(s.policy.access);
    let r = start(s).await;
    let c = smtps_client(&r).await;
    assert_eq!(
        c.request(
            SmarRequest::ConnectCheck {
                client_ip: ip("127.0.0.1"),
                client_name: None
            },
            T
        )
        .await
        .unwrap(),
        SmarReply::Relay { quick: false }
    );
    let q = qmgr_client(&r).await;
    assert_eq!(
        q.request(
            RouteRequest::Route {
                rcpt: "u@anywhere.example".into(),
                sender: String::new()
            },
            T
        )
        .await
        .unwrap(),
        RouteReply::Routed {
            rcpts: vec![RoutedRcpt {
                address: "u@anywhere.example".into(),
                route: hosts(25, &[(None, 0, &["192.0.2.99"])])
            }],
            owner: None,
            verp: false,
            failed: Vec::new()
        }
    );
}

/// Maps read from files (text and cdb) and reloaded while serving.
#[tokio::test]
async fn file_maps_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("access.txt"), "cltaddr:192.0.2.1 reject\n").unwrap();
    std::fs::write(dir.path().join("mt"), "localhost lmtp:\n").unwrap();
    std::fs::write(dir.path().join("aliases.txt"), "postmaster root\n").unwrap();
    smx_maps::makemap::build_from_text(
        &dir.path().join("aliases.txt"),
        &dir.path().join("aliases.cdb"),
    )
    .unwrap();
    let conf = smx_conf::load_str(
        "test.conf",
        r#"
smtps { flags = { access }; }
smar {
    access_map { file = "access.txt"; }
    mailertable { file = "mt"; }
    aliases { file = "aliases.cdb"; }
}
"#,
    )
    .unwrap();
    let s = Arc::new(Smar::from_config(&conf, dir.path(), dns()).unwrap());
    let t = s.tables();
    assert!(t.aliases.is_some());
    let connect = |s: Arc<Smar<TableDns>>| async move {
        s.answer_smtps(SmarRequest::ConnectCheck {
            client_ip: ip("192.0.2.1"),
            client_name: None,
        })
        .await
    };
    assert!(matches!(
        connect(Arc::clone(&s)).await,
        SmarReply::Reject(_)
    ));
    std::fs::write(
        dir.path().join("access.txt"),
        "cltaddr:192.0.2.1 quick:ok\n",
    )
    .unwrap();
    assert!(s.reload().is_empty());
    assert_eq!(
        connect(Arc::clone(&s)).await,
        SmarReply::Accept { quick: true }
    );
    // A broken file keeps the old contents and is reported.
    std::fs::write(dir.path().join("access.txt"), "no-value-here\n").unwrap();
    let failed = s.reload();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        connect(Arc::clone(&s)).await,
        SmarReply::Accept { quick: true }
    );
    // A configured map that does not exist is an error at start.
    let conf = smx_conf::load_str(
        "test.conf",
        r#"smar { access_map { file = "missing.cdb"; } }"#,
    )
    .unwrap();
    assert!(Smar::from_config(&conf, dir.path(), dns()).is_err());
}

/// Oversized input is refused before any lookup.
#[tokio::test]
async fn oversized_input_is_refused() {
    let r = start(smar(dns())).await;
    let c = smtps_client(&r).await;
    let long = format!("u@{}example", "a.".repeat(5000));
    let got = c
        .request(
            SmarRequest::RcptCheck {
                rcpt: long.clone(),
                sender: String::new(),
                client_ip: ip("192.0.2.1"),
            },
            T,
        )
        .await
        .unwrap();
    assert!(
        matches!(&got, SmarReply::Reject(r) if r.code == 501),
        "{got:?}"
    );
    let q = qmgr_client(&r).await;
    let got = q
        .request(
            RouteRequest::Route {
                rcpt: long,
                sender: String::new(),
            },
            T,
        )
        .await
        .unwrap();
    assert!(
        matches!(&got, RouteReply::PermFail(r) if r.code == 501),
        "{got:?}"
    );
}

/// Garbage instead of a handshake closes that connection only.
#[tokio::test]
async fn garbage_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = start(smar(dns())).await;
    for junk in [
        &b"\xff\xff\xff\xffxxxx"[..],
        &b"\x00\x00\x00\x03abc"[..],
        &b"EHLO x\r\n"[..],
    ] {
        let mut s = UnixStream::connect(&r.path).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(T, s.read_to_end(&mut buf)).await;
        // The server closes (possibly after a rejection frame).
        assert!(matches!(n, Ok(Ok(_)) | Ok(Err(_))), "{junk:?}: not closed");
    }
    let c = smtps_client(&r).await;
    assert!(
        c.request(
            SmarRequest::ConnectCheck {
                client_ip: ip("127.0.0.1"),
                client_name: None
            },
            T
        )
        .await
        .is_ok()
    );
}
