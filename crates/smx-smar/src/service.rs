//! The smar service: answers smtps and qmgr on one Unix socket.
//!
//! [`serve`] accepts connections on an already bound listener until the
//! shutdown future completes. Each connection starts with the smx-ipc
//! handshake; smar accepts the services `SmtpsSmar` ([`SmarRequest`]) and
//! `QmgrSmar` ([`RouteRequest`]) and refuses others with the usual
//! `HelloReply::Reject`. After the handshake every request is answered in
//! its own task, so many requests are in flight at once and replies go out
//! in the order they are ready (the ipc request id pairs them up). At most
//! [`MAX_IN_FLIGHT`] requests per connection are worked on; further ones
//! wait in the socket.
//!
//! Every request has a deadline (`qmgr { SMAR_timeout }`): a request that
//! is not answered by then gets a temporary failure (`451 4.4.3` to
//! smtps, `TempFail` to qmgr). A map or DNS failure gives a temporary
//! failure too; a bad frame closes only that connection.
//!
//! # Answers to smtps
//!
//! Addresses, DNs and EHLO arguments longer than [`MAX_INPUT`] are refused
//! with `501 5.1.3` (`PermFail` to qmgr) before any lookup. smar keeps no
//! session state: where a check needs the connect verdict, smar recomputes
//! it from the client address (cached DNS makes that cheap).
//!
//! * `ConnectCheck`: the connect stage ([`checks::connect_check`]), with
//!   the client name resolved by smar itself (PTR and forward
//!   confirmation; the `client_name` smtps sends is not trusted) and the
//!   DNS blacklists queried. With `delay_checks` a rejection that is not
//!   `quick:` is answered `Accept` here and repeated at RCPT.
//! * `MailCheck`: the MAIL stage; with `delay_checks` as above.
//! * `RcptCheck`: the RCPT stage, with the connect verdict recomputed from
//!   the client address, and (with `delay_checks`) the held-back connect and
//!   MAIL rejections.
//! * `RcptCheckInSession`: as `RcptCheck` with smtps's session verdict.
//! * `CertCheck`: `certissuer:` then `certsubject:`; `relay` allows
//!   relaying.
//! * `EhloCheck`: `ehlo:` for the argument (as a domain).
//! * `SessionConf`: the raw right-hand side of the client's
//!   `smtps_session_conf:` entry ([`AccessMap::session_conf`]): by address
//!   first, then by the client name smar resolves itself (as for
//!   `ConnectCheck`; the name smtps sends is not trusted). No access map
//!   or no entry: `SessionConf(None)`; a map that cannot be read:
//!   `TempFail`. smtps parses and judges the value.
//!
//! [`AccessMap::session_conf`]: crate::access::AccessMap::session_conf
//!
//! # Answers to qmgr
//!
//! * `Route`: alias expansion (when the aliases map is configured), then
//!   for each final recipient: an address literal `[IP]` goes to that
//!   address; otherwise the mailertable entry (LMTP socket, host with MX
//!   lookup, bracketed host without MX, address list), or without an entry
//!   the MX/A records of the domain. A local recipient (`lmtp:` domain)
//!   that does not exist is a permanent failure. Any temporary failure
//!   makes the whole answer `TempFail`; members of a list that fail
//!   permanently go into `Routed { failed }`, and when no member is left
//!   the answer is `PermFail`.
//! * `RcptConf`: the raw right-hand side of the recipient's
//!   `smtpc_rcpt_conf:` entry, looked up with qmgr's
//!   `rcpt_conf_lookup_flags` and the local part alone as the last step.
//!
//! # Reload
//!
//! [`Smar::reload`] re-reads every map; the process calls it on SIGUSR1
//! (or a control request). Declared maps that the access map, aliases or
//! mailertable refer to by name are reloaded once per call, with the
//! others.
//!
//! # Maps from the configuration
//!
//! A map given by `name` is the declared map; `entries` are inline text;
//! a `file` ending in `.cdb` is read as cdb, any other file as a text map.
//! Relative paths are relative to the configuration directory. A map whose
//! file is the default (not named in the configuration) and does not exist
//! is treated as absent (logged); a map the configuration names must open.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use smx_conf::Config;
use smx_conf::model::qmgr::LookupFlags;
use smx_conf::model::smar::{AliasFlags, MapRef};
use smx_ipc::frame::{FrameReader, FrameWriter};
use smx_ipc::hello::{Hello, HelloRejection, HelloReply, PROTOCOL_VERSION, ServiceName};
use smx_ipc::link::{RequestFrame, ServerFrame};
use smx_ipc::qmgr_smar::{
    self, FailedRcpt, Hop, Protocol, Route, RouteReply, RouteRequest, RoutedRcpt,
};
use smx_ipc::smtps_smar::{NoNotice, SmarReply, SmarRequest};
use smx_ipc::types::SmtpReply;
use smx_maps::{CdbMap, Map, MapSet, TextMap};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};

use crate::access::{AccessMap, reply, split_address};
use crate::aliases::{Aliases, ExpandError, ExpandFailure, LocalUsers, local_address_exists};
use crate::checks::{
    self, ConnectFacts, DnsblResult, Policy, RcptSession, Routability, Tables, Verdict,
};
use crate::dns::{self, Dns, DnsError, Limits, resolve_client, resolve_domain};
use crate::error::SmarError;
use crate::mailertable::{Mailertable, Target};

/// Most requests worked on at once per connection.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Longest address, DN or EHLO argument accepted from a peer, in bytes
/// (RFC 5321 allows 256 for a path; this leaves room for long DNs). The
/// number of lookup keys grows with the number of labels, so longer input
/// is refused (`501 5.1.3`) before any lookup.
pub const MAX_INPUT: usize = 1024;
/// Longest time for the handshake of a new connection.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything smar needs to answer; build with [`Smar::from_config`] or
/// [`Smar::new`].
#[derive(Debug)]
pub struct Smar<D> {
    /// The smtps settings of the checks.
    pub policy: Policy,
    /// The access map.
    pub access: Option<Arc<dyn Map>>,
    /// The mailertable.
    pub mailertable: Arc<dyn Map>,
    /// Mailertable lookup flags.
    pub mailertable_flags: LookupFlags,
    /// The aliases map.
    pub aliases: Option<Arc<dyn Map>>,
    /// Aliases flags.
    pub alias_flags: AliasFlags,
    /// The local user map.
    pub local_users: Option<Arc<dyn Map>>,
    /// Its `implicitly_match_detail`.
    pub local_users_implicit_detail: bool,
    /// `address_delimiter`.
    pub delimiters: String,
    /// Lookup steps for `smtpc_rcpt_conf:` (qmgr
    /// `smtpc { rcpt_conf_lookup_flags }`).
    pub rcpt_conf_flags: LookupFlags,
    /// This host's name (qualifies bare alias members).
    pub hostname: String,
    /// DNS blacklists: (zone, access map tag).
    pub dnsbl: Vec<(String, String)>,
    /// MX/A limits.
    pub limits: Limits,
    /// The resolver.
    pub dns: D,
    /// Deadline of one request (SMAR_timeout).
    pub timeout: Duration,
    /// The declared maps (for reload).
    pub maps: Option<MapSet>,
}

impl<D: Dns> Smar<D> {
    /// A resolver with the given mailertable and resolver and everything
    /// else off (no access map, no aliases); set the public fields for
    /// more.
    pub fn new(mailertable: Arc<dyn Map>, dns: D) -> Self {
        Smar {
            policy: Policy::default(),
            access: None,
            mailertable,
            mailertable_flags: smx_conf::model::smar::MailertableConfig::default().flags,
            aliases: None,
            alias_flags: AliasFlags::default(),
            local_users: None,
            local_users_implicit_detail: false,
            delimiters: "+".into(),
            rcpt_conf_flags: crate::access::address_flags(),
            hostname: "localhost".into(),
            dnsbl: Vec::new(),
            limits: Limits::default(),
            dns,
            timeout: Duration::from_secs(60),
            maps: None,
        }
    }

    /// Builds smar from the configuration; relative map files are taken
    /// relative to `base_dir`. The check policy comes from the first
    /// `smtps` section (all smtps instances share one smar).
    pub fn from_config(config: &Config, base_dir: &Path, dns: D) -> Result<Self, SmarError> {
        let s = &config.smar;
        let maps = MapSet::open(&s.maps, base_dir).map_err(|e| SmarError::Open {
            what: "declared maps",
            source: e,
        })?;
        let policy = match config.smtps.iter().next() {
            Some(n) => Policy {
                access: n.body.flags.access,
                delay_checks: n.body.flags.delay_checks,
                lmtp_does_not_imply_relaying: n.body.flags.lmtp_does_not_imply_relaying,
                protected: n.body.protected_recipients.clone(),
            },
            None => Policy::default(),
        };
        let access = open_ref(&s.access_map, "access map", base_dir, &maps)?;
        let mailertable = match open_ref(&s.mailertable.map, "mailertable", base_dir, &maps)? {
            Some(m) => m,
            None => Arc::new(
                TextMap::from_entries(&[]).map_err(|source| SmarError::Open {
                    what: "mailertable",
                    source,
                })?,
            ),
        };
        let aliases = open_ref(&s.aliases.map, "aliases", base_dir, &maps)?;
        let local_users = match &s.local_user_map {
            Some(l) => Some(maps.get(&l.name).ok_or_else(|| {
                SmarError::Config(format!("local_user_map: map '{}' is not declared", l.name))
            })?),
            None => None,
        };
        Ok(Smar {
            policy,
            access,
            mailertable,
            mailertable_flags: s.mailertable.flags,
            aliases,
            alias_flags: s.aliases.flags,
            local_users,
            local_users_implicit_detail: s
                .local_user_map
                .as_ref()
                .is_some_and(|l| l.flags.implicitly_match_detail),
            delimiters: s.address_delimiter.clone(),
            rcpt_conf_flags: config.qmgr.smtpc.rcpt_conf_lookup_flags,
            hostname: config
                .hostname
                .clone()
                .unwrap_or_else(|| "localhost".into()),
            dnsbl: s
                .dnsbl
                .iter()
                .map(|d| (d.body.domain.clone(), d.body.tag.clone()))
                .collect(),
            limits: Limits::from_config(&s.dns),
            dns,
            timeout: config.qmgr.smar_timeout.0,
            maps: Some(maps),
        })
    }

    /// Re-reads every map (on SIGUSR1 or a control request; the caller
    /// decides when). Lookups in flight keep the old contents; a map that
    /// fails to reload keeps its old contents and is returned with its
    /// error.
    pub fn reload(&self) -> Vec<(String, smx_maps::MapError)> {
        let (mut failed, declared): (Vec<_>, Vec<*const ()>) = match &self.maps {
            Some(m) => (
                m.reload_all(),
                m.names()
                    .iter()
                    .filter_map(|n| m.get(n))
                    .map(|a| Arc::as_ptr(&a).cast::<()>())
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let own = [
            ("access map", self.access.as_ref()),
            ("mailertable", Some(&self.mailertable)),
            ("aliases", self.aliases.as_ref()),
        ];
        for (what, map) in own {
            if let Some(m) = map
                && !declared.contains(&Arc::as_ptr(m).cast::<()>())
                && let Err(e) = m.reload()
            {
                tracing::warn!(map = what, error = %e, "map reload failed; keeping the old contents");
                failed.push((what.to_owned(), e));
            }
        }
        failed
    }

    /// The maps as the check functions see them.
    pub fn tables(&self) -> Tables<'_> {
        Tables {
            access: self.access.as_deref().map(|m| AccessMap {
                map: m,
                delimiters: &self.delimiters,
            }),
            mailertable: Mailertable {
                map: self.mailertable.as_ref(),
                flags: &self.mailertable_flags,
                delimiters: &self.delimiters,
            },
            aliases: self.aliases.as_deref().map(|m| Aliases {
                map: m,
                flags: &self.alias_flags,
                delimiters: &self.delimiters,
                hostname: &self.hostname,
            }),
            local_users: self.local_users.as_deref().map(|m| LocalUsers {
                map: m,
                implicitly_match_detail: self.local_users_implicit_detail,
                delimiters: &self.delimiters,
            }),
        }
    }

    /// Answers an smtps request (without the deadline; see [`serve`]).
    pub async fn answer_smtps(&self, req: SmarRequest) -> SmarReply {
        let too_long = match &req {
            SmarRequest::ConnectCheck { .. } => false,
            SmarRequest::MailCheck { sender, .. } => sender.len() > MAX_INPUT,
            SmarRequest::RcptCheck { rcpt, sender, .. }
            | SmarRequest::RcptCheckInSession { rcpt, sender, .. } => {
                rcpt.len() > MAX_INPUT || sender.len() > MAX_INPUT
            }
            SmarRequest::CertCheck { issuer, subject } => {
                issuer.len() > MAX_INPUT || subject.len() > MAX_INPUT
            }
            SmarRequest::EhloCheck { helo, .. } => helo.len() > MAX_INPUT,
            SmarRequest::SessionConf { .. } => false,
        };
        if too_long {
            return SmarReply::Reject(reply(501, (5, 1, 3), "Argument too long"));
        }
        match req {
            SmarRequest::ConnectCheck { client_ip, .. } => {
                let v = self.connect(client_ip).await;
                self.apply_delay(v)
            }
            SmarRequest::MailCheck { sender, client_ip } => {
                let session = self.connect(client_ip).await;
                if session.delayable() && self.policy.delay_checks {
                    return SmarReply::Accept { quick: false };
                }
                let v = self.mail(&sender, Some(&session.reply)).await;
                self.apply_delay(v)
            }
            SmarRequest::RcptCheck {
                rcpt,
                sender,
                client_ip,
            } => {
                let session = self.connect(client_ip).await;
                self.rcpt(&rcpt, &sender, client_ip, session, false).await
            }
            SmarRequest::RcptCheckInSession {
                rcpt,
                sender,
                client_ip,
                session,
                relay_allowed,
            } => {
                // smtps only knows the reply. Relay and quick:ok are taken as
                // given; a plain Accept may hide a connect rejection held back
                // by delay_checks, so then (and without a session verdict)
                // the connect stage is recomputed.
                let v = match session {
                    Some(reply @ (SmarReply::Relay { .. } | SmarReply::Accept { quick: true })) => {
                        Verdict {
                            quick: matches!(
                                reply,
                                SmarReply::Accept { quick: true }
                                    | SmarReply::Relay { quick: true }
                            ),
                            reply,
                        }
                    }
                    Some(reply @ SmarReply::Accept { quick: false })
                        if !self.policy.delay_checks =>
                    {
                        Verdict {
                            reply,
                            quick: false,
                        }
                    }
                    _ => self.connect(client_ip).await,
                };
                self.rcpt(&rcpt, &sender, client_ip, v, relay_allowed).await
            }
            SmarRequest::CertCheck { issuer, subject } => {
                let t = self.tables();
                let Some(am) = t.access.filter(|_| self.policy.access) else {
                    return SmarReply::Accept { quick: false };
                };
                for (tag, v) in [("certissuer", issuer), ("certsubject", subject)] {
                    let key = crate::access::dn_key(&v);
                    if let Some(v) = checks::verdict_of(am.lookup(tag, &[key]), true) {
                        return v.reply;
                    }
                }
                SmarReply::Accept { quick: false }
            }
            SmarRequest::EhloCheck { helo, .. } => {
                let t = self.tables();
                let Some(am) = t.access.filter(|_| self.policy.access) else {
                    return SmarReply::Accept { quick: false };
                };
                let mut f = LookupFlags::default();
                f.dot = false;
                let keys = smx_maps::keys::domain_keys(&helo, &f);
                checks::verdict_of(am.lookup("ehlo", &keys), false)
                    .map(|v| v.reply)
                    .unwrap_or(SmarReply::Accept { quick: false })
            }
            SmarRequest::SessionConf { client_ip, .. } => self.session_conf(client_ip).await,
        }
    }

    /// `smtps_session_conf:` for a client; see the module doc.
    async fn session_conf(&self, ip: IpAddr) -> SmarReply {
        let failed = |e: SmarError| {
            tracing::warn!(error = %e, "smtps_session_conf lookup failed");
            SmarReply::TempFail(crate::access::temp_reply())
        };
        let t = self.tables();
        let Some(am) = t.access else {
            return SmarReply::SessionConf(None);
        };
        match am.session_conf(ip, None) {
            Ok(Some(v)) => return SmarReply::SessionConf(Some(v)),
            Ok(None) => {}
            Err(e) => return failed(e),
        }
        let client = resolve_client(&self.dns, ip).await;
        let Some(name) = client.name else {
            return SmarReply::SessionConf(None);
        };
        let t = self.tables();
        let Some(am) = t.access else {
            return SmarReply::SessionConf(None);
        };
        match am.session_conf(ip, Some(&name)) {
            Ok(v) => SmarReply::SessionConf(v),
            Err(e) => failed(e),
        }
    }

    fn apply_delay(&self, v: Verdict) -> SmarReply {
        if self.policy.delay_checks && v.delayable() {
            SmarReply::Accept { quick: false }
        } else {
            v.reply
        }
    }

    async fn connect(&self, ip: IpAddr) -> Verdict {
        let t = self.tables();
        if let Some(v) = checks::connect_addr(&self.policy, &t, ip) {
            return v;
        }
        if !self.policy.access || t.access.is_none() {
            return Verdict {
                reply: SmarReply::Accept { quick: false },
                quick: false,
            };
        }
        let client = resolve_client(&self.dns, ip).await;
        let mut dnsbl = Vec::new();
        if let IpAddr::V4(v4) = ip {
            for (zone, tag) in &self.dnsbl {
                dnsbl.push((tag.clone(), self.dnsbl_query(v4, zone).await));
            }
        }
        let facts = ConnectFacts { client, dnsbl };
        checks::connect_rest(&self.policy, &t, &facts).unwrap_or(Verdict {
            reply: SmarReply::Accept { quick: false },
            quick: false,
        })
    }

    async fn dnsbl_query(&self, ip: Ipv4Addr, zone: &str) -> DnsblResult {
        let o = ip.octets();
        let name = format!("{}.{}.{}.{}.{}", o[3], o[2], o[1], o[0], zone);
        match self.dns.addrs(&name).await {
            Ok(a) => {
                let v4: Vec<Ipv4Addr> = a
                    .into_iter()
                    .filter_map(|a| match a {
                        IpAddr::V4(v) => Some(v),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                if v4.is_empty() {
                    DnsblResult::NotListed
                } else {
                    DnsblResult::Listed(v4)
                }
            }
            Err(e) if e.is_permanent() => DnsblResult::NotListed,
            Err(_) => DnsblResult::Temp,
        }
    }

    async fn mail(&self, sender: &str, session: Option<&SmarReply>) -> Verdict {
        let t = self.tables();
        let routable = if sender.is_empty() {
            Routability::Mailertable
        } else {
            self.routability(sender).await
        };
        checks::mail_check(&self.policy, &t, sender, session, &routable)
    }

    async fn routability(&self, addr: &str) -> Routability {
        let (_, domain) = split_address(addr);
        if domain.is_empty() || literal(domain).is_some() {
            return Routability::Mailertable;
        }
        match self.tables().mailertable.lookup(addr) {
            Ok(Some(_)) => return Routability::Mailertable,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "mailertable lookup failed");
                return Routability::Failed(dns::RouteError::Temporary(DnsError::Other {
                    name: domain.into(),
                    reason: "mailertable lookup failed".into(),
                }));
            }
        }
        match resolve_domain(&self.dns, domain, self.limits).await {
            Ok(hops) => Routability::Dns(hops.into_iter().flat_map(|h| h.addrs).collect()),
            Err(e) => Routability::Failed(e),
        }
    }

    async fn rcpt(
        &self,
        rcpt: &str,
        sender: &str,
        client_ip: IpAddr,
        session: Verdict,
        relay_allowed: bool,
    ) -> SmarReply {
        let mut delayed = None;
        if self.policy.delay_checks {
            if session.delayable() {
                delayed = Some(session.reply.clone());
            } else if !matches!(session.reply, SmarReply::Reject(_) | SmarReply::TempFail(_)) {
                let m = self.mail(sender, Some(&session.reply)).await;
                if m.delayable() {
                    delayed = Some(m.reply);
                }
            }
        }
        let s = RcptSession {
            connect: Some(session.reply),
            relay_allowed,
            delayed,
        };
        checks::rcpt_check(&self.policy, &self.tables(), rcpt, sender, client_ip, &s)
    }

    /// Answers a qmgr request (without the deadline; see [`serve`]). The
    /// requests of a batch are answered concurrently.
    pub async fn answer_qmgr(&self, req: RouteRequest) -> RouteReply {
        match req {
            RouteRequest::Batch(reqs) => {
                if reqs.len() > qmgr_smar::MAX_BATCH
                    || reqs.iter().any(|r| matches!(r, RouteRequest::Batch(_)))
                {
                    return RouteReply::PermFail(reply(501, (5, 5, 4), "Malformed routing batch"));
                }
                RouteReply::Batch(join_all(reqs.into_iter().map(|r| self.answer_single(r))).await)
            }
            other => self.answer_single(other).await,
        }
    }

    /// Answers one `Route` or `RcptConf` request.
    async fn answer_single(&self, req: RouteRequest) -> RouteReply {
        match req {
            RouteRequest::Batch(_) => {
                RouteReply::PermFail(reply(501, (5, 5, 4), "Malformed routing batch"))
            }
            RouteRequest::Route { rcpt, .. } => self.route(&rcpt).await,
            RouteRequest::RcptConf { rcpt } => {
                if rcpt.len() > MAX_INPUT {
                    return RouteReply::PermFail(reply(501, (5, 1, 3), "Address too long"));
                }
                let Some(am) = self.tables().access else {
                    return RouteReply::RcptConf(None);
                };
                let (local, domain) = split_address(&rcpt);
                let keys = smx_maps::keys::address_keys(
                    local,
                    domain,
                    &self.delimiters,
                    &self.rcpt_conf_flags,
                    true,
                );
                match am.raw("smtpc_rcpt_conf", &keys) {
                    Ok(hit) => RouteReply::RcptConf(hit.map(|h| h.value)),
                    Err(e) => {
                        tracing::warn!(error = %e, "smtpc_rcpt_conf lookup failed");
                        RouteReply::TempFail(crate::access::temp_reply())
                    }
                }
            }
        }
    }

    async fn route(&self, rcpt: &str) -> RouteReply {
        if rcpt.len() > MAX_INPUT {
            return RouteReply::PermFail(reply(501, (5, 1, 3), "Address too long"));
        }
        let t = self.tables();
        let rcpt = rcpt.trim();
        let (_, domain) = split_address(rcpt);
        let rcpt: String = if domain.is_empty() {
            format!("{rcpt}@{}", self.hostname)
        } else {
            rcpt.to_owned()
        };
        let is_local = |d: &str| -> Result<bool, SmarError> {
            if d.is_empty() {
                return Ok(true);
            }
            t.mailertable.is_local_domain(d)
        };
        let (rcpts, owner, verp) = match &t.aliases {
            Some(a) => match a.expand(&rcpt, &is_local) {
                Ok(e) => (e.rcpts, e.owner, e.verp),
                Err(ExpandFailure::Temporary(e)) => {
                    tracing::warn!(rcpt = %rcpt, error = %e, "alias expansion failed");
                    return RouteReply::TempFail(crate::access::temp_reply());
                }
                Err(ExpandFailure::Permanent(e)) => {
                    tracing::info!(rcpt = %rcpt, error = %e, "alias expansion failed");
                    let r = match e {
                        ExpandError::TooMany => {
                            reply(550, (5, 5, 3), "Too many recipients in alias expansion")
                        }
                        _ => reply(554, (5, 4, 6), "Alias loop or too deeply nested aliases"),
                    };
                    return RouteReply::PermFail(r);
                }
            },
            None => (vec![rcpt.clone()], None, false),
        };
        let mut routed = Vec::new();
        let mut failed: Vec<FailedRcpt> = Vec::new();
        for r in rcpts {
            match self.route_one(&r).await {
                Ok(route) => routed.push(RoutedRcpt { address: r, route }),
                Err(RouteFailure::Temp(reply)) => return RouteReply::TempFail(reply),
                Err(RouteFailure::Perm(reply)) => {
                    tracing::info!(rcpt = %r, reply = %reply, "recipient cannot be routed");
                    failed.push(FailedRcpt { address: r, reply });
                }
            }
        }
        if routed.is_empty() {
            return RouteReply::PermFail(match failed.pop() {
                Some(f) => f.reply,
                None => reply(550, (5, 1, 1), "No recipients left"),
            });
        }
        RouteReply::Routed {
            rcpts: routed,
            owner,
            verp,
            failed,
        }
    }

    async fn route_one(&self, addr: &str) -> Result<Route, RouteFailure> {
        let t = self.tables();
        let (_, domain) = split_address(addr);
        if let Some(ip) = literal(domain) {
            return Ok(Route::Hosts {
                protocol: Protocol::Esmtp,
                port: crate::mailertable::SMTP_PORT,
                hops: vec![Hop {
                    name: None,
                    preference: 0,
                    addrs: vec![ip],
                }],
            });
        }
        let entry = t.mailertable.lookup(addr).map_err(temp_failure)?;
        if let Some((_, e)) = &entry
            && e.is_local()
        {
            match local_address_exists(t.aliases.as_ref(), t.local_users.as_ref(), addr) {
                Ok(true) => {}
                Ok(false) => return Err(RouteFailure::Perm(reply(550, (5, 1, 1), "User unknown"))),
                Err(e) => return Err(temp_failure(e)),
            }
        }
        let (protocol, port, hops) = match entry {
            Some((_, e)) => {
                let port = e.port_or_default();
                let hops = match e.target {
                    Target::LmtpSocket => return Ok(Route::LmtpSocket),
                    Target::Addrs(addrs) => vec![Hop {
                        name: None,
                        preference: 0,
                        addrs,
                    }],
                    Target::Host { name, mx: true } => {
                        resolve_domain(&self.dns, &name, self.limits)
                            .await
                            .map_err(route_failure)?
                    }
                    Target::Host { name, mx: false } => {
                        let mut addrs = self.dns.addrs(&name).await.map_err(|e| {
                            route_failure(if e.is_permanent() {
                                dns::RouteError::NoSuchDomain(name.clone())
                            } else {
                                dns::RouteError::Temporary(e)
                            })
                        })?;
                        addrs.truncate(self.limits.a_per_mx_max);
                        if addrs.is_empty() {
                            return Err(route_failure(dns::RouteError::NoAddress(name)));
                        }
                        vec![Hop {
                            name: Some(name),
                            preference: 0,
                            addrs,
                        }]
                    }
                };
                (e.protocol, port, hops)
            }
            None => (
                Protocol::Esmtp,
                crate::mailertable::SMTP_PORT,
                resolve_domain(&self.dns, domain, self.limits)
                    .await
                    .map_err(route_failure)?,
            ),
        };
        Ok(Route::Hosts {
            protocol,
            port,
            hops,
        })
    }
}

/// Serves smtps and qmgr on `listener` until `shutdown` completes; see the
/// module doc. Connections in progress are dropped at shutdown.
pub async fn serve<D: Dns>(
    listener: UnixListener,
    smar: Arc<Smar<D>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SmarError> {
    tokio::pin!(shutdown);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, _)) => {
                        let smar = Arc::clone(&smar);
                        conns.spawn(async move {
                            if let Err(e) = connection(stream, smar).await {
                                tracing::info!(error = %e, "smar connection closed");
                            }
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    Ok(())
}

// ---- helpers -------------------------------------------------------------

enum RouteFailure {
    Temp(SmtpReply),
    Perm(SmtpReply),
}

fn temp_failure(e: SmarError) -> RouteFailure {
    tracing::warn!(error = %e, "routing lookup failed");
    RouteFailure::Temp(crate::access::temp_reply())
}

fn route_failure(e: dns::RouteError) -> RouteFailure {
    match e {
        dns::RouteError::NoSuchDomain(_) => {
            RouteFailure::Perm(reply(550, (5, 1, 2), "Domain does not exist"))
        }
        dns::RouteError::NullMx(_) => RouteFailure::Perm(reply(
            556,
            (5, 1, 10),
            "Domain does not accept mail (null MX)",
        )),
        dns::RouteError::NoAddress(_) => {
            RouteFailure::Perm(reply(550, (5, 1, 2), "No usable mail server for domain"))
        }
        dns::RouteError::Temporary(e) => {
            tracing::info!(error = %e, "DNS lookup failed temporarily");
            RouteFailure::Temp(reply(451, (4, 4, 3), "DNS lookup failed, try again later"))
        }
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
fn literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

fn open_ref(
    r: &MapRef,
    what: &'static str,
    base_dir: &Path,
    maps: &MapSet,
) -> Result<Option<Arc<dyn Map>>, SmarError> {
    let err = |source| SmarError::Open { what, source };
    if let Some(name) = &r.name {
        return maps
            .get(name)
            .map(Some)
            .ok_or_else(|| SmarError::Config(format!("{what}: map '{name}' is not declared")));
    }
    if !r.entries.is_empty() {
        return Ok(Some(Arc::new(
            TextMap::from_entries(&r.entries).map_err(err)?,
        )));
    }
    let Some(file) = r.effective_file() else {
        return Ok(None);
    };
    let path = base_dir.join(&file);
    if r.file.is_none() && !path.exists() {
        tracing::info!(map = what, file = %path.display(), "default map file does not exist; map not used");
        return Ok(None);
    }
    if file.extension().is_some_and(|e| e == "cdb") {
        Ok(Some(Arc::new(CdbMap::open(path).map_err(err)?)))
    } else {
        Ok(Some(Arc::new(TextMap::open(path).map_err(err)?)))
    }
}

enum Peer {
    Smtps,
    Qmgr,
}

async fn connection<D: Dns>(
    stream: tokio::net::UnixStream,
    smar: Arc<Smar<D>>,
) -> Result<(), SmarError> {
    let max = smx_ipc::DEFAULT_MAX_FRAME;
    let (rd, wr) = stream.into_split();
    let mut reader: FrameReader<OwnedReadHalf, Hello> = FrameReader::new(rd, max);
    let mut writer: FrameWriter<OwnedWriteHalf, HelloReply> = FrameWriter::new(wr, max);
    let hello = tokio::time::timeout(HELLO_TIMEOUT, reader.read_required())
        .await
        .map_err(|_| ipc_io("handshake timed out"))?
        .map_err(|e| ipc_io(&e.to_string()))?;
    let peer = match hello.service {
        ServiceName::SmtpsSmar => Some(Peer::Smtps),
        ServiceName::QmgrSmar => Some(Peer::Qmgr),
        _ => None,
    };
    let rejection = match (&peer, hello.version == PROTOCOL_VERSION) {
        (None, _) => Some(HelloRejection::WrongService {
            offered: ServiceName::SmtpsSmar,
            requested: hello.service,
        }),
        (Some(_), false) => Some(HelloRejection::UnsupportedVersion {
            supported: PROTOCOL_VERSION,
            requested: hello.version,
        }),
        (Some(_), true) => None,
    };
    if let Some(r) = rejection {
        let _ = writer.write(&HelloReply::Reject(r)).await;
        let _ = writer.shutdown().await;
        return Err(ipc_io(&format!("handshake refused: {r}")));
    }
    let service = match peer {
        Some(Peer::Qmgr) => ServiceName::QmgrSmar,
        _ => ServiceName::SmtpsSmar,
    };
    writer
        .write(&HelloReply::Ack {
            service,
            version: PROTOCOL_VERSION,
        })
        .await
        .map_err(|e| ipc_io(&e.to_string()))?;
    match peer {
        Some(Peer::Qmgr) => {
            let s = Arc::clone(&smar);
            run_link::<RouteRequest, RouteReply, _, _>(
                reader.retype(),
                writer.retype(),
                smar.timeout,
                move |req| {
                    let s = Arc::clone(&s);
                    async move { s.answer_qmgr(req).await }
                },
                || RouteReply::TempFail(reply(451, (4, 4, 3), "Address resolver timeout")),
            )
            .await
        }
        _ => {
            let s = Arc::clone(&smar);
            run_link::<SmarRequest, SmarReply, _, _>(
                reader.retype(),
                writer.retype(),
                smar.timeout,
                move |req| {
                    let s = Arc::clone(&s);
                    async move { s.answer_smtps(req).await }
                },
                || SmarReply::TempFail(reply(451, (4, 4, 3), "Address resolver timeout")),
            )
            .await
        }
    }
}

/// Runs `futs` concurrently on this task and returns their outputs in
/// order. Every pending future is polled again on each wake-up, which is
/// fine for the few dozen of a routing batch.
async fn join_all<F: Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

fn ipc_io(msg: &str) -> SmarError {
    SmarError::Io(std::io::Error::other(msg.to_owned()))
}

/// Reads requests, answers each in its own task under `timeout`, writes
/// replies as they are ready.
async fn run_link<Q, P, F, Fut>(
    mut reader: FrameReader<OwnedReadHalf, RequestFrame<Q>>,
    mut writer: FrameWriter<OwnedWriteHalf, ServerFrame<P, NoNotice>>,
    timeout: Duration,
    answer: F,
    on_timeout: fn() -> P,
) -> Result<(), SmarError>
where
    Q: serde::de::DeserializeOwned + Send + 'static,
    P: serde::Serialize + Send + Sync + 'static,
    F: Fn(Q) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = P> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<(u64, P)>(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(async move {
        while let Some((id, body)) = rx.recv().await {
            let more = || {
                rx.try_recv()
                    .ok()
                    .map(|(id, body)| ServerFrame::Reply { id, body })
            };
            if let Err(e) = writer
                .write_batch(&ServerFrame::Reply { id, body }, more)
                .await
            {
                tracing::info!(error = %e, "cannot write reply; closing link");
                break;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let result = loop {
        let frame = match reader.read().await {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(ipc_io(&e.to_string())),
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break Ok(());
        };
        let tx = tx.clone();
        let fut = answer(frame.body);
        let id = frame.id;
        tasks.spawn(async move {
            let body = match tokio::time::timeout(timeout, fut).await {
                Ok(b) => b,
                Err(_) => {
                    tracing::warn!(id, "request not answered within SMAR_timeout");
                    on_timeout()
                }
            };
            let _ = tx.send((id, body)).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    };
    // Let the requests in flight finish (each is bounded by `timeout`).
    while tasks.join_next().await.is_some() {}
    drop(tx);
    let _ = writer_task.await;
    result
}
