//! DNS for smar: the [`Dns`] trait, its hickory-resolver implementation
//! [`HickoryDns`], and the mail-routing rules built on it.
//!
//! # The trait
//!
//! [`Dns`] has three queries: MX, addresses (A and AAAA) and PTR. Each
//! answers `Ok(records)` — an empty list is NODATA (the name exists, no
//! records of that type) — or a [`DnsError`]: `NxDomain` is permanent,
//! everything else (SERVFAIL, REFUSED, timeout, network) is temporary.
//! Tests implement the trait without a server; [`HickoryDns`] asks real
//! servers.
//!
//! # HickoryDns
//!
//! Nameservers come from `smar { DNS { nameservers } }` or, with
//! `use_resolvconf` (the default without nameservers), from
//! `/etc/resolv.conf`. Each query waits `timeout` and is tried `retries`
//! more times; a truncated UDP answer is retried over TCP (`use_TCP`
//! queries over TCP only). Names are queried as absolute names (no search
//! list). CNAME chains are followed by the resolver. Answers are cached
//! for their TTL.
//!
//! # Routing a domain ([`resolve_domain`])
//!
//! 1. Query MX. NXDOMAIN is a permanent failure ("no such domain"); a
//!    temporary error is temporary.
//! 2. A single MX whose exchange is `.` is a null MX (RFC 7505): permanent
//!    failure. `.` records among others are ignored.
//! 3. MX records whose exchange is an IP address are refused (seed 6.3.1)
//!    and skipped. The rest are sorted by preference (stable: equal
//!    preferences keep the DNS order) and cut to `MX_max`.
//! 4. Each exchange is resolved (A and AAAA), keeping at most
//!    `A_per_MX_max` addresses per host and `A_max` in all.
//! 5. No MX records at all (NODATA): the domain itself is the implicit MX
//!    (RFC 5321 5.1), preference 0.
//! 6. The result is the hosts that have addresses. When none has one, the
//!    failure is temporary if any lookup failed temporarily, otherwise
//!    permanent.
//!
//! # Client names ([`resolve_client`])
//!
//! PTR of the client address, then A/AAAA of each name (at most
//! [`MAX_PTR_NAMES`]); the first name whose addresses contain the client
//! address is the client name. The result for `cltresolve:` is `ok`
//! (confirmed), `no` (no PTR, or no name confirms), `tempptr` (the PTR
//! query failed temporarily) or `tempa` (no name confirmed and an address
//! query failed temporarily).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use smx_conf::model::smar::DnsConfig;
use smx_ipc::qmgr_smar::Hop;

/// Most PTR names checked for a client.
pub const MAX_PTR_NAMES: usize = 10;

/// An MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// The preference.
    pub preference: u16,
    /// The exchange, lower-cased, without the trailing dot; `.` for a
    /// null MX.
    pub exchange: String,
}

/// A failed DNS query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (permanent).
    #[error("{name}: no such domain")]
    NxDomain {
        /// The name queried.
        name: String,
    },
    /// No answer in time (temporary).
    #[error("{name}: timeout")]
    Timeout {
        /// The name queried.
        name: String,
    },
    /// The server answered with an error code such as SERVFAIL or REFUSED
    /// (temporary).
    #[error("{name}: server failure ({code})")]
    ServerFailure {
        /// The name queried.
        name: String,
        /// The response code.
        code: String,
    },
    /// The name is not a valid DNS name (permanent: asking again cannot
    /// help).
    #[error("{name}: invalid domain name")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Anything else: network errors, malformed answers (temporary).
    #[error("{name}: {reason}")]
    Other {
        /// The name queried.
        name: String,
        /// What happened.
        reason: String,
    },
}

impl DnsError {
    /// Whether the failure is permanent (NXDOMAIN, invalid name).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DnsError::NxDomain { .. } | DnsError::InvalidName { .. }
        )
    }
}

/// DNS queries; see the module doc.
pub trait Dns: Send + Sync + 'static {
    /// MX records of `name`.
    fn mx(&self, name: &str) -> impl Future<Output = Result<Vec<Mx>, DnsError>> + Send;
    /// A and AAAA records of `name` (A first).
    fn addrs(&self, name: &str) -> impl Future<Output = Result<Vec<IpAddr>, DnsError>> + Send;
    /// PTR names of `ip`, lower-cased, with the trailing dot.
    fn ptr(&self, ip: IpAddr) -> impl Future<Output = Result<Vec<String>, DnsError>> + Send;
}

/// Limits of [`resolve_domain`] (config `MX_max`, `A_per_MX_max`,
/// `A_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most MX records used.
    pub mx_max: usize,
    /// Most addresses per MX host.
    pub a_per_mx_max: usize,
    /// Most addresses in all.
    pub a_max: usize,
}

impl Limits {
    /// The limits of a configuration.
    pub fn from_config(c: &DnsConfig) -> Self {
        let n = |v: u32| usize::try_from(v).unwrap_or(usize::MAX).max(1);
        Limits {
            mx_max: n(c.mx_max),
            a_per_mx_max: n(c.a_per_mx_max),
            a_max: n(c.a_max),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&DnsConfig::default())
    }
}

/// Why a domain cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// NXDOMAIN.
    #[error("{0}: no such domain")]
    NoSuchDomain(String),
    /// Null MX (RFC 7505).
    #[error("{0}: domain does not accept mail (null MX)")]
    NullMx(String),
    /// No usable MX host or address.
    #[error("{0}: no usable MX or address records")]
    NoAddress(String),
    /// Try again later.
    #[error("{0}")]
    Temporary(DnsError),
}

impl RouteError {
    /// Whether the failure is permanent.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, RouteError::Temporary(_))
    }
}

/// Resolves the mail hosts of `domain`; see the module doc.
pub async fn resolve_domain<D: Dns>(
    dns: &D,
    domain: &str,
    limits: Limits,
) -> Result<Vec<Hop>, RouteError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mxs = match dns.mx(&domain).await {
        Ok(m) => m,
        Err(e) if e.is_permanent() => return Err(RouteError::NoSuchDomain(domain)),
        Err(e) => return Err(RouteError::Temporary(e)),
    };
    if mxs.len() == 1 && mxs[0].exchange == "." {
        return Err(RouteError::NullMx(domain));
    }
    let mut candidates: Vec<Mx> = Vec::new();
    let had_mx = !mxs.is_empty();
    for mx in mxs {
        if mx.exchange == "." || mx.exchange.is_empty() {
            continue;
        }
        if mx.exchange.parse::<IpAddr>().is_ok()
            || mx
                .exchange
                .strip_prefix('[')
                .is_some_and(|s| s.trim_end_matches(']').parse::<IpAddr>().is_ok())
        {
            tracing::info!(domain = %domain, exchange = %mx.exchange, "MX record points to an IP address; refused");
            continue;
        }
        candidates.push(mx);
    }
    if had_mx && candidates.is_empty() {
        return Err(RouteError::NoAddress(domain));
    }
    if !had_mx {
        candidates.push(Mx {
            preference: 0,
            exchange: domain.clone(),
        });
    }
    candidates.sort_by_key(|m| m.preference);
    candidates.truncate(limits.mx_max);

    let mut hops = Vec::new();
    let mut total = 0usize;
    let mut temp: Option<DnsError> = None;
    for mx in candidates {
        if total >= limits.a_max {
            break;
        }
        match dns.addrs(&mx.exchange).await {
            Ok(mut addrs) => {
                addrs.dedup();
                addrs.truncate(limits.a_per_mx_max.min(limits.a_max - total));
                if addrs.is_empty() {
                    continue;
                }
                total += addrs.len();
                hops.push(Hop {
                    name: Some(mx.exchange),
                    preference: mx.preference,
                    addrs,
                });
            }
            Err(e) if e.is_permanent() && had_mx => continue,
            Err(e) if e.is_permanent() => return Err(RouteError::NoSuchDomain(domain)),
            Err(e) => {
                temp.get_or_insert(e);
            }
        }
    }
    if hops.is_empty() {
        return Err(match temp {
            Some(e) => RouteError::Temporary(e),
            None => RouteError::NoAddress(domain),
        });
    }
    Ok(hops)
}

/// The result of [`resolve_client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientName {
    /// `ok`, `no`, `tempptr` or `tempa`.
    pub resolve: ClientResolve,
    /// The confirmed name (with trailing dot) when `resolve` is `Ok`.
    pub name: Option<String>,
}

/// The `cltresolve:` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientResolve {
    /// PTR and A/AAAA match.
    Ok,
    /// No PTR, or no name resolves back to the address.
    No,
    /// The PTR query failed temporarily.
    TempPtr,
    /// An address query failed temporarily and no name confirmed.
    TempA,
}

impl ClientResolve {
    /// The access map key (`cltresolve:KEY`).
    pub fn key(self) -> &'static str {
        match self {
            ClientResolve::Ok => "ok",
            ClientResolve::No => "no",
            ClientResolve::TempPtr => "tempptr",
            ClientResolve::TempA => "tempa",
        }
    }
}

/// Maps `ip` to a forward-confirmed name; see the module doc.
pub async fn resolve_client<D: Dns>(dns: &D, ip: IpAddr) -> ClientName {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let names = match dns.ptr(ip).await {
        Ok(n) => n,
        Err(e) if e.is_permanent() => Vec::new(),
        Err(_) => {
            return ClientName {
                resolve: ClientResolve::TempPtr,
                name: None,
            };
        }
    };
    let mut temp = false;
    for name in names.into_iter().take(MAX_PTR_NAMES) {
        match dns.addrs(name.trim_end_matches('.')).await {
            Ok(addrs) if addrs.contains(&ip) => {
                let name = if name.ends_with('.') {
                    name
                } else {
                    format!("{name}.")
                };
                return ClientName {
                    resolve: ClientResolve::Ok,
                    name: Some(name),
                };
            }
            Ok(_) => {}
            Err(e) if e.is_permanent() => {}
            Err(_) => temp = true,
        }
    }
    ClientName {
        resolve: if temp {
            ClientResolve::TempA
        } else {
            ClientResolve::No
        },
        name: None,
    }
}

// ---- hickory-resolver ----------------------------------------------------

/// Settings of [`HickoryDns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Nameservers with ports; empty means resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// Retries after the first try.
    pub retries: u32,
    /// Timeout of one try.
    pub timeout: Duration,
    /// TCP only.
    pub tcp_only: bool,
}

impl DnsSettings {
    /// The settings of `smar { DNS { ... } }`: configured nameservers on
    /// port 53, or none (resolv.conf) when `use_resolvconf` applies.
    pub fn from_config(c: &DnsConfig) -> Self {
        DnsSettings {
            servers: if c.use_resolvconf() {
                Vec::new()
            } else {
                c.nameservers
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, 53))
                    .collect()
            },
            retries: c.retries,
            timeout: c.timeout.0,
            tcp_only: c.flags.use_tcp,
        }
    }
}

/// [`Dns`] over hickory-resolver; see the module doc.
#[derive(Debug, Clone)]
pub struct HickoryDns {
    resolver: TokioResolver,
}

impl HickoryDns {
    /// Builds the resolver (reads resolv.conf when `servers` is empty).
    pub fn new(s: &DnsSettings) -> Result<Self, DnsError> {
        let err = |reason: String| DnsError::Other {
            name: "resolver configuration".into(),
            reason,
        };
        let provider = TokioRuntimeProvider::default();
        let mut builder = if s.servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| err(e.to_string()))?
        } else {
            let mut cfg = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
            for sa in &s.servers {
                let mut conns = Vec::new();
                if !s.tcp_only {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = sa.port();
                    conns.push(udp);
                }
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                conns.push(tcp);
                cfg.add_name_server(NameServerConfig::new(sa.ip(), true, conns));
            }
            TokioResolver::builder_with_config(cfg, provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = s.timeout;
        // hickory's `attempts` counts the retries after the first query.
        opts.attempts = usize::try_from(s.retries).unwrap_or(10).min(10);
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        let resolver = builder.build().map_err(|e| err(e.to_string()))?;
        Ok(HickoryDns { resolver })
    }

    async fn query(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
        let fq = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|_| DnsError::InvalidName { name: name.into() })?;
        match self.resolver.lookup(fq, rtype).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect()),
            Err(e) => classify(name, e),
        }
    }
}

fn classify(name: &str, e: NetError) -> Result<Vec<RData>, DnsError> {
    use hickory_resolver::net::DnsError as H;
    let code_err = |code: ResponseCode| DnsError::ServerFailure {
        name: name.into(),
        code: code.to_string(),
    };
    match e {
        NetError::Dns(H::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => Err(DnsError::NxDomain { name: name.into() }),
            ResponseCode::NoError => Ok(Vec::new()),
            code => Err(code_err(code)),
        },
        NetError::Dns(H::ResponseCode(ResponseCode::NXDomain)) => {
            Err(DnsError::NxDomain { name: name.into() })
        }
        NetError::Dns(H::ResponseCode(code)) => Err(code_err(code)),
        NetError::Timeout => Err(DnsError::Timeout { name: name.into() }),
        other => Err(DnsError::Other {
            name: name.into(),
            reason: other.to_string(),
        }),
    }
}

fn name_text(n: &Name) -> String {
    let s = n.to_ascii().to_ascii_lowercase();
    if s == "." {
        s
    } else {
        s.trim_end_matches('.').to_owned()
    }
}

impl Dns for HickoryDns {
    async fn mx(&self, name: &str) -> Result<Vec<Mx>, DnsError> {
        Ok(self
            .query(name, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::MX(mx) => Some(Mx {
                    preference: mx.preference,
                    exchange: name_text(&mx.exchange),
                }),
                _ => None,
            })
            .collect())
    }

    async fn addrs(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let v4 = self.query(name, RecordType::A).await;
        let v6 = self.query(name, RecordType::AAAA).await;
        let mut out: Vec<IpAddr> = Vec::new();
        let mut errs = Vec::new();
        for r in [v4, v6] {
            match r {
                Ok(recs) => out.extend(recs.into_iter().filter_map(|d| match d {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => errs.push(e),
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
        // Both failed, or one failed and the other had no records: a
        // temporary failure wins over NXDOMAIN/NODATA.
        match errs.iter().find(|e| !e.is_permanent()).or(errs.first()) {
            Some(e) if errs.len() == 2 || !e.is_permanent() => Err(e.clone()),
            _ => Ok(out),
        }
    }

    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        let rev = reverse_name(ip);
        Ok(self
            .query(&rev, RecordType::PTR)
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::PTR(p) => Some(format!("{}.", name_text(&p.0))),
                _ => None,
            })
            .collect())
    }
}

/// The `in-addr.arpa` / `ip6.arpa` name of an address.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(72);
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// DNS from tables: MX and address answers per name; `temp.*` fails
    /// temporarily; unknown names are NXDOMAIN.
    #[derive(Default)]
    struct Table {
        mx: HashMap<&'static str, Vec<(u16, &'static str)>>,
        a: HashMap<&'static str, Vec<&'static str>>,
        ptr: HashMap<&'static str, Vec<&'static str>>,
    }

    impl Dns for Table {
        async fn mx(&self, name: &str) -> Result<Vec<Mx>, DnsError> {
            if name.starts_with("temp") {
                return Err(DnsError::Timeout { name: name.into() });
            }
            match self.mx.get(name) {
                Some(v) => Ok(v
                    .iter()
                    .map(|(p, e)| Mx {
                        preference: *p,
                        exchange: (*e).into(),
                    })
                    .collect()),
                None if self.a.contains_key(name) => Ok(Vec::new()),
                None => Err(DnsError::NxDomain { name: name.into() }),
            }
        }

        async fn addrs(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
            if name.starts_with("temp") {
                return Err(DnsError::Timeout { name: name.into() });
            }
            match self.a.get(name) {
                Some(v) => Ok(v.iter().filter_map(|s| s.parse().ok()).collect()),
                None => Err(DnsError::NxDomain { name: name.into() }),
            }
        }

        async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
            let k = ip.to_string();
            if k == "192.0.2.99" {
                return Err(DnsError::Timeout { name: k });
            }
            match self.ptr.get(k.as_str()) {
                Some(v) => Ok(v.iter().map(|s| s.to_string()).collect()),
                None => Err(DnsError::NxDomain { name: k }),
            }
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    fn table() -> Table {
        let mut t = Table::default();
        t.mx.insert(
            "mixed.test",
            vec![
                (5, "192.0.2.1"),
                (10, "temp.mx.test"),
                (20, "good.mx.test"),
                (30, "nx.mx.test"),
            ],
        );
        t.a.insert("good.mx.test", vec!["192.0.2.2", "192.0.2.3"]);
        t.mx.insert("allbad.test", vec![(5, "[192.0.2.1]"), (10, "10.0.0.1")]);
        t.mx.insert("onlytemp.test", vec![(10, "temp.mx.test")]);
        t.mx.insert("twonull.test", vec![(0, "."), (10, "good.mx.test")]);
        t.a.insert("aonly.test", vec!["192.0.2.4"]);
        t.ptr
            .insert("192.0.2.2", vec!["other.test.", "good.mx.test."]);
        t.ptr.insert("192.0.2.5", vec!["temp.name.test."]);
        t
    }

    #[test]
    fn routing_rules_without_a_server() {
        let t = table();
        let l = Limits::default();
        let hops = block_on(resolve_domain(&t, "mixed.test", l)).unwrap_or_else(|e| panic!("{e}"));
        // The MX naming an address is refused, the temporary and the
        // non-existent hosts are skipped.
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].name.as_deref(), Some("good.mx.test"));
        assert_eq!(
            block_on(resolve_domain(&t, "allbad.test", l)),
            Err(RouteError::NoAddress("allbad.test".into()))
        );
        assert!(matches!(
            block_on(resolve_domain(&t, "onlytemp.test", l)),
            Err(RouteError::Temporary(_))
        ));
        assert!(matches!(
            block_on(resolve_domain(&t, "temp.test", l)),
            Err(RouteError::Temporary(_))
        ));
        // "." among other MX records is not a null MX; it is skipped.
        assert_eq!(
            block_on(resolve_domain(&t, "twonull.test", l)).map(|h| h.len()),
            Ok(1)
        );
        assert_eq!(
            block_on(resolve_domain(&t, "AOnly.Test.", l)).map(|h| h[0].preference),
            Ok(0)
        );
        assert_eq!(
            block_on(resolve_domain(&t, "nx.test", l)),
            Err(RouteError::NoSuchDomain("nx.test".into()))
        );
    }

    #[test]
    fn client_resolution_without_a_server() {
        let t = table();
        let got = block_on(resolve_client(
            &t,
            "192.0.2.2".parse().unwrap_or_else(|_| panic!()),
        ));
        assert_eq!(got.resolve, ClientResolve::Ok);
        assert_eq!(got.name.as_deref(), Some("good.mx.test."));
        let mapped: IpAddr = "::ffff:192.0.2.2".parse().unwrap_or_else(|_| panic!());
        assert_eq!(
            block_on(resolve_client(&t, mapped)).resolve,
            ClientResolve::Ok
        );
        for (ip, want) in [
            ("192.0.2.99", ClientResolve::TempPtr),
            ("192.0.2.5", ClientResolve::TempA),
            ("192.0.2.6", ClientResolve::No),
        ] {
            let ip: IpAddr = ip.parse().unwrap_or_else(|_| panic!());
            assert_eq!(block_on(resolve_client(&t, ip)).resolve, want, "{ip}");
        }
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap_or_else(|_| panic!())),
            "1.2.0.192.in-addr.arpa"
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap_or_else(|_| panic!()));
        assert!(v6.starts_with("1.0.0.0."), "{v6}");
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
    }
}
