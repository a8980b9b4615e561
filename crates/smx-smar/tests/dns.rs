//! DNS against a real DNS server on 127.0.0.1: a hickory-server started
//! in the test process with a small zone and a few misbehaving names.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use smx_smar::dns::{
    ClientResolve, DnsError, DnsSettings, HickoryDns, Limits, RouteError, resolve_client,
    resolve_domain,
};

/// What the test server knows.
#[derive(Default)]
struct Zone {
    records: HashMap<String, Vec<Record>>,
    servfail: Vec<String>,
    silent: Vec<String>,
    tcp_queries: AtomicUsize,
    /// Queries seen for `flaky.test`; the first one is not answered.
    flaky: AtomicUsize,
}

impl Zone {
    fn add(&mut self, name: &str, rdata: RData) {
        let n = Name::from_str(&format!("{name}.")).unwrap();
        self.records
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(Record::from_rdata(n, 60, rdata));
    }

    fn a(&mut self, name: &str, ip: &str) {
        match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => self.add(name, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(name, RData::AAAA(AAAA(v6))),
        }
    }

    fn mx(&mut self, name: &str, pref: u16, exchange: &str) {
        let ex = if exchange == "." {
            Name::root()
        } else {
            Name::from_str(&format!("{exchange}.")).unwrap()
        };
        self.add(name, RData::MX(MX::new(pref, ex)));
    }

    fn cname(&mut self, name: &str, target: &str) {
        self.add(
            name,
            RData::CNAME(CNAME(Name::from_str(&format!("{target}.")).unwrap())),
        );
    }

    fn ptr(&mut self, ip: &str, target: &str) {
        let rev = smx_smar::dns::reverse_name(ip.parse().unwrap());
        self.add(
            &rev,
            RData::PTR(PTR(Name::from_str(&format!("{target}.")).unwrap())),
        );
    }

    /// The answer for (name, type): records (following CNAMEs in the zone),
    /// or the response code.
    fn answer(&self, name: &str, rtype: RecordType) -> Result<Vec<Record>, ResponseCode> {
        let mut out = Vec::new();
        let mut name = name.trim_end_matches('.').to_ascii_lowercase();
        for _ in 0..8 {
            let Some(recs) = self.records.get(&name) else {
                return if out.is_empty() {
                    Err(ResponseCode::NXDomain)
                } else {
                    Ok(out)
                };
            };
            let direct: Vec<Record> = recs
                .iter()
                .filter(|r| r.record_type() == rtype)
                .cloned()
                .collect();
            if !direct.is_empty() {
                out.extend(direct);
                return Ok(out);
            }
            match recs.iter().find_map(|r| match &r.data {
                RData::CNAME(c) => Some((r.clone(), c.0.to_ascii())),
                _ => None,
            }) {
                Some((rec, target)) => {
                    out.push(rec);
                    name = target.trim_end_matches('.').to_ascii_lowercase();
                }
                None => return Ok(out),
            }
        }
        Ok(out)
    }
}

struct Handler(Arc<Zone>);

impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        mut response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let zone = &self.0;
            if request.protocol() == Protocol::Tcp {
                zone.tcp_queries.fetch_add(1, Ordering::SeqCst);
            }
            let mut meta = Metadata::response_from_request(&request.metadata);
            let fail = ResponseInfo::from(Header {
                metadata: meta,
                counts: HeaderCounts::default(),
            });
            let Ok(info) = request.request_info() else {
                return fail;
            };
            let name = info.query.name().to_string().to_ascii_lowercase();
            let name = name.trim_end_matches('.').to_owned();
            let rtype = info.query.query_type();
            if name == "flaky.test" && zone.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return fail;
            }
            if zone.silent.contains(&name) {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return fail;
            }
            let builder = MessageResponseBuilder::from_message_request(request);
            if zone.servfail.contains(&name) {
                let resp = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                return response_handle.send_response(resp).await.unwrap_or(fail);
            }
            meta.authoritative = true;
            let answers = match zone.answer(&name, rtype) {
                Ok(a) => a,
                Err(code) => {
                    let resp = builder.error_msg(&request.metadata, code);
                    return response_handle.send_response(resp).await.unwrap_or(fail);
                }
            };
            let resp = builder.build(meta, answers.iter(), [], [], []);
            response_handle.send_response(resp).await.unwrap_or(fail)
        })
    }
}

/// Starts the server on 127.0.0.1 (UDP and TCP on the same free port).
/// The server stops when the returned value is dropped.
async fn start(zone: Zone) -> (SocketAddr, Arc<Zone>, Server<Handler>) {
    let zone = Arc::new(zone);
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let Ok(tcp) = tokio::net::TcpListener::bind(addr).await else {
            continue;
        };
        let mut server = Server::new(Handler(Arc::clone(&zone)));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        return (addr, zone, server);
    }
    panic!("no free port for UDP and TCP");
}

fn resolver(addr: SocketAddr, timeout_ms: u64, retries: u32) -> HickoryDns {
    HickoryDns::new(&DnsSettings {
        servers: vec![addr],
        retries,
        timeout: Duration::from_millis(timeout_ms),
        tcp_only: false,
    })
    .unwrap()
}

fn test_zone() -> Zone {
    let mut z = Zone::default();
    // MX with preferences (given out of order).
    z.mx("example.test", 20, "mx2.example.test");
    z.mx("example.test", 10, "mx1.example.test");
    z.mx("example.test", 10, "mx1b.example.test");
    z.a("mx1.example.test", "192.0.2.1");
    z.a("mx1.example.test", "2001:db8::1");
    z.a("mx1b.example.test", "192.0.2.2");
    z.a("mx2.example.test", "192.0.2.3");
    // Null MX.
    z.mx("nullmx.test", 0, ".");
    // MX target behind a CNAME.
    z.mx("cname.test", 5, "alias.cname.test");
    z.cname("alias.cname.test", "real.cname.test");
    z.a("real.cname.test", "192.0.2.7");
    // Implicit MX.
    z.a("aonly.test", "192.0.2.8");
    // MX pointing to an address.
    z.mx("ipmx.test", 10, "192.0.2.9");
    // An answer too big for UDP.
    for i in 0..150u8 {
        z.a("big.test", &format!("198.51.100.{i}"));
    }
    z.mx("bigmx.test", 10, "big.test");
    // A domain whose only MX host is unreachable in DNS.
    z.mx("deadmx.test", 10, "servfail.test");
    z.servfail.push("servfail.test".into());
    z.mx("flaky.test", 10, "mx1.example.test");
    z.silent.push("silent.test".into());
    // MX with an existing name but no addresses, then a good one.
    z.mx("partial.test", 10, "noaddr.partial.test");
    z.mx("partial.test", 20, "mx.partial.test");
    z.add(
        "noaddr.partial.test",
        RData::CNAME(CNAME(Name::from_str("aonly.test.").unwrap())),
    );
    z.a("mx.partial.test", "192.0.2.20");
    // PTR cases (192.0.2.0/24).
    z.ptr("192.0.2.10", "good.test");
    z.a("good.test", "192.0.2.10");
    z.ptr("192.0.2.11", "liar.test");
    z.a("liar.test", "192.0.2.99");
    z.servfail
        .push(smx_smar::dns::reverse_name("192.0.2.13".parse().unwrap()));
    z.ptr("192.0.2.14", "servfail.test");
    z
}

fn names(hops: &[smx_ipc::qmgr_smar::Hop]) -> Vec<(String, u16, usize)> {
    hops.iter()
        .map(|h| {
            (
                h.name.clone().unwrap_or_default(),
                h.preference,
                h.addrs.len(),
            )
        })
        .collect()
}

#[tokio::test]
async fn mx_with_preferences_cname_implicit_and_null() {
    let (addr, _zone, _server) = start(test_zone()).await;
    let dns = resolver(addr, 2000, 1);
    let l = Limits::default();

    let hops = resolve_domain(&dns, "Example.Test", l).await.unwrap();
    assert_eq!(
        names(&hops),
        [
            ("mx1.example.test".into(), 10, 2),
            ("mx1b.example.test".into(), 10, 1),
            ("mx2.example.test".into(), 20, 1)
        ]
    );
    assert_eq!(
        hops[0].addrs,
        [
            "192.0.2.1".parse::<IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );

    let hops = resolve_domain(&dns, "cname.test", l).await.unwrap();
    assert_eq!(hops[0].addrs, ["192.0.2.7".parse::<IpAddr>().unwrap()]);

    let hops = resolve_domain(&dns, "aonly.test", l).await.unwrap();
    assert_eq!(names(&hops), [("aonly.test".into(), 0, 1)]);

    assert_eq!(
        resolve_domain(&dns, "nullmx.test", l).await,
        Err(RouteError::NullMx("nullmx.test".into()))
    );
    assert_eq!(
        resolve_domain(&dns, "ipmx.test", l).await,
        Err(RouteError::NoAddress("ipmx.test".into()))
    );
    assert_eq!(
        resolve_domain(&dns, "nx.test", l).await,
        Err(RouteError::NoSuchDomain("nx.test".into()))
    );
    // The first MX has no address of its own but a CNAME to one; both work.
    let hops = resolve_domain(&dns, "partial.test", l).await.unwrap();
    assert_eq!(hops.len(), 2);
}

#[tokio::test]
async fn limits_apply() {
    let (addr, _zone, _server) = start(test_zone()).await;
    let dns = resolver(addr, 2000, 1);
    let l = Limits {
        mx_max: 2,
        a_per_mx_max: 1,
        a_max: 2,
    };
    let hops = resolve_domain(&dns, "example.test", l).await.unwrap();
    assert_eq!(
        names(&hops),
        [
            ("mx1.example.test".into(), 10, 1),
            ("mx1b.example.test".into(), 10, 1)
        ]
    );
    let l = Limits {
        mx_max: 16,
        a_per_mx_max: 8,
        a_max: 3,
    };
    let hops = resolve_domain(&dns, "bigmx.test", l).await.unwrap();
    assert_eq!(names(&hops), [("big.test".into(), 10, 3)]);
}

#[tokio::test]
async fn truncated_answer_is_retried_over_tcp() {
    let (addr, zone, _server) = start(test_zone()).await;
    let dns = resolver(addr, 2000, 1);
    use smx_smar::dns::Dns;
    let addrs = dns.addrs("big.test").await.unwrap();
    assert_eq!(addrs.len(), 150);
    assert!(zone.tcp_queries.load(Ordering::SeqCst) >= 1, "TCP was used");
}

#[tokio::test]
async fn servfail_and_timeout_are_temporary() {
    let (addr, _zone, _server) = start(test_zone()).await;
    let dns = resolver(addr, 300, 0);
    use smx_smar::dns::Dns;
    let e = dns.mx("servfail.test").await.unwrap_err();
    assert!(matches!(e, DnsError::ServerFailure { .. }), "{e:?}");
    assert!(!e.is_permanent());
    let started = std::time::Instant::now();
    let e = dns.mx("silent.test").await.unwrap_err();
    assert!(!e.is_permanent(), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        resolve_domain(&dns, "silent.test", Limits::default()).await,
        Err(RouteError::Temporary(_))
    ));
    // The only MX host cannot be resolved now: temporary, not permanent.
    assert!(matches!(
        resolve_domain(&dns, "deadmx.test", Limits::default()).await,
        Err(RouteError::Temporary(_))
    ));
}

#[tokio::test]
async fn client_names() {
    let (addr, _zone, _server) = start(test_zone()).await;
    let dns = resolver(addr, 1000, 0);
    let cases = [
        ("192.0.2.10", ClientResolve::Ok, Some("good.test.")),
        ("192.0.2.11", ClientResolve::No, None),
        ("192.0.2.12", ClientResolve::No, None),
        ("192.0.2.13", ClientResolve::TempPtr, None),
        ("192.0.2.14", ClientResolve::TempA, None),
    ];
    for (ip, resolve, name) in cases {
        let got = resolve_client(&dns, ip.parse().unwrap()).await;
        assert_eq!(got.resolve, resolve, "{ip}");
        assert_eq!(got.name.as_deref(), name, "{ip}");
    }
}

/// `retries`: a query that goes unanswered is sent again.
#[tokio::test]
async fn retries_after_a_lost_query() {
    use smx_smar::dns::Dns;
    let (addr, zone, _server) = start(test_zone()).await;
    let once = resolver(addr, 300, 0);
    assert!(once.mx("flaky.test").await.is_err());
    // A fresh zone state: the first query is lost again, the retry works.
    zone.flaky.store(0, Ordering::SeqCst);
    let twice = resolver(addr, 300, 1);
    let mx = twice.mx("flaky.test").await.unwrap();
    assert_eq!(mx.len(), 1);
    assert!(zone.flaky.load(Ordering::SeqCst) >= 2);
}
