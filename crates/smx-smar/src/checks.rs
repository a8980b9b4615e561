//! The anti-spam check sequences of seed 3.12.2 as pure functions.
//!
//! Each stage runs its checks in order until one returns something other
//! than `cont` (or finds nothing); that verdict is the stage's answer.
//! DNS results (client name, sender routability) are computed by the caller
//! and passed in, so these functions do no I/O besides map lookups. A map
//! that cannot answer, or a broken entry, gives `TempFail 451 4.3.0`.
//!
//! # Connect ([`connect_check`])
//!
//! Only with the smtps flag `access`:
//!
//! 1. `cltaddr:` for the client address;
//! 2. `cltresolve:` with `ok`/`no`/`tempptr`/`tempa`;
//! 3. `cltname:` for the confirmed client host name;
//! 4. DNS blacklist results, in configuration order: `TAG:W.X.Y.Z` for
//!    each A record returned, `TAG:temp`, `TAG:perm`.
//!
//! `relay` is honoured for `cltaddr:` and `cltname:` (relaying allowed for
//! the session); elsewhere it counts as `ok`.
//!
//! # MAIL ([`mail_check`])
//!
//! Skipped for `<>` and when the session verdict is `quick:ok` or
//! `quick:relay`:
//!
//! 1. the sender domain must be routable (mailertable entry, or MX/A):
//!    NXDOMAIN `553 5.1.8`, null MX `550 5.7.27` (RFC 7505), no usable
//!    records `553 5.1.8`, temporary failure `451 4.1.8`; an address
//!    without a domain `553 5.1.8`;
//! 2. a local sender must exist (aliases or local_user_map): `550 5.1.0`;
//! 3. `from:` (with `access`);
//! 4. `mxbadip:` for every address found in step 1 (with `access`).
//!
//! # RCPT ([`rcpt_check`])
//!
//! 1. Local recipient (mailertable `lmtp:` for its domain): it must
//!    exist, else `550 5.1.1 User unknown`.
//! 2. Relaying: allowed when the recipient is local and
//!    `lmtp_does_not_imply_relaying` is off, when the session allows it
//!    (`relay` for `cltaddr:`/`cltname:`, `quick:relay`, AUTH/STARTTLS), or
//!    when `to:` says `relay`. Otherwise a `to:` `error:` entry is the
//!    reply, and anything else is `550 5.7.1 Relaying denied`.
//! 3. Protected recipients (seed 3.10.3), unless the session is
//!    `quick:relay`, or `quick:ok` with relaying already allowed (seed
//!    3.9.3: those override the other access map checks): a
//!    `protectedrcpt:` entry lists restrictions
//!    (`from:ADDR`, `cltaddr:IP`, `list:ALIAS`); one that matches accepts
//!    (sequential OR); none matching gives `550 5.7.1`. `from:` and `list:`
//!    count only with `allow_by = sender`, `cltaddr:` only with
//!    `allow_by = client_ip`. With `match_type = exact` the entry is
//!    looked up as the full address and then the local part, and the
//!    restrictions compare exactly (case-insensitive); with
//!    `generic_lookup` both use the orders of seed 3.12.1 (so `cltaddr:10`
//!    matches the net 10); `implicitly_match_detail` also lets
//!    `user+detail` match `user`. `list:` expands the alias one level
//!    (not recursively).
//! 4. `to:`, unless the session is `quick:relay`, or `quick:ok` with
//!    relaying already allowed (seed 3.12.2 case 2 step 2): `ok`/`relay`
//!    accept, `error:`/`reject` refuse, `discard` discards.
//! 5. With `delay_checks`, a rejection of the connect or MAIL stage that was
//!    not `quick:` is answered here, unless `to:` said `quick:ok` or
//!    `quick:relay` (seed 3.9.3).
//!
//! Greylisting (step 3 of the seed's case 2) is not done by smar.

use std::net::{IpAddr, Ipv4Addr};

use smx_conf::model::smtps::{MatchType, ProtectedRecipients};
use smx_ipc::smtps_smar::SmarReply;
use smx_ipc::types::SmtpReply;
use smx_maps::keys;

use crate::access::{AccessMap, Action, Rhs, reply, split_address, temp_reply};
use crate::aliases::{AliasValue, Aliases, LocalUsers, local_address_exists};
use crate::dns::{ClientName, RouteError};
use crate::error::SmarError;
use crate::mailertable::Mailertable;

/// The smtps settings that steer the checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// smtps flag `access`: use the access map.
    pub access: bool,
    /// smtps flag `delay_checks`.
    pub delay_checks: bool,
    /// smtps flag `lmtp_does_not_imply_relaying`.
    pub lmtp_does_not_imply_relaying: bool,
    /// `protected_recipients`, if configured.
    pub protected: Option<ProtectedRecipients>,
}

/// The maps the checks use.
#[derive(Debug, Clone, Copy)]
pub struct Tables<'a> {
    /// The access map (if it could be opened).
    pub access: Option<AccessMap<'a>>,
    /// The mailertable.
    pub mailertable: Mailertable<'a>,
    /// The aliases map.
    pub aliases: Option<Aliases<'a>>,
    /// The local user map.
    pub local_users: Option<LocalUsers<'a>>,
}

/// The outcome of one DNS blacklist query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsblResult {
    /// Listed, with these A records.
    Listed(Vec<Ipv4Addr>),
    /// Not listed (NXDOMAIN or no A record).
    NotListed,
    /// Temporary failure.
    Temp,
    /// Permanent failure other than not listed.
    Perm,
}

/// What the connect stage learned from DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFacts {
    /// PTR + forward confirmation.
    pub client: ClientName,
    /// Blacklist results: (access map tag, result), in configuration order.
    pub dnsbl: Vec<(String, DnsblResult)>,
}

/// Whether the sender domain is routable (MAIL step 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routability {
    /// A mailertable entry routes it.
    Mailertable,
    /// Found by DNS, with these addresses.
    Dns(Vec<IpAddr>),
    /// Not routable.
    Failed(RouteError),
}

/// A stage's answer and whether the deciding entry was `quick:` (a
/// rejection that is not quick is held back by `delay_checks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The answer.
    pub reply: SmarReply,
    /// The deciding entry had `quick:`.
    pub quick: bool,
}

impl Verdict {
    fn accept() -> Self {
        Verdict {
            reply: SmarReply::Accept { quick: false },
            quick: false,
        }
    }

    fn plain(reply: SmarReply) -> Self {
        Verdict {
            reply,
            quick: false,
        }
    }

    /// Whether `delay_checks` holds this verdict back to RCPT: a rejection
    /// or temporary failure that was not `quick:`.
    pub fn delayable(&self) -> bool {
        !self.quick && matches!(self.reply, SmarReply::Reject(_) | SmarReply::TempFail(_))
    }
}

/// The `cltaddr:` step of the connect stage alone (no DNS needed); `None`
/// when it decides nothing.
pub fn connect_addr(policy: &Policy, t: &Tables<'_>, ip: IpAddr) -> Option<Verdict> {
    if !policy.access {
        return None;
    }
    let am = t.access?;
    decide(am.ip("cltaddr", ip), true)
}

/// The connect stage after `cltaddr:`; `None` when nothing decided.
pub fn connect_rest(policy: &Policy, t: &Tables<'_>, facts: &ConnectFacts) -> Option<Verdict> {
    if !policy.access {
        return None;
    }
    let am = t.access?;
    if let Some(v) = decide(
        am.lookup("cltresolve", &[facts.client.resolve.key().to_owned()]),
        false,
    ) {
        return Some(v);
    }
    if let Some(name) = &facts.client.name
        && let Some(v) = decide(am.host("cltname", name), true)
    {
        return Some(v);
    }
    for (tag, result) in &facts.dnsbl {
        let keys: Vec<String> = match result {
            DnsblResult::Listed(a) => a.iter().map(Ipv4Addr::to_string).collect(),
            DnsblResult::NotListed => continue,
            DnsblResult::Temp => vec!["temp".into()],
            DnsblResult::Perm => vec!["perm".into()],
        };
        for k in keys {
            if let Some(v) = decide(am.lookup(tag, &[k]), false) {
                return Some(v);
            }
        }
    }
    None
}

/// The whole connect stage (seed 3.12.2 "Connect").
pub fn connect_check(policy: &Policy, t: &Tables<'_>, ip: IpAddr, facts: &ConnectFacts) -> Verdict {
    connect_addr(policy, t, ip)
        .or_else(|| connect_rest(policy, t, facts))
        .unwrap_or_else(Verdict::accept)
}

/// The MAIL stage (seed 3.12.2 "MAIL"); `session` is the connect verdict.
pub fn mail_check(
    policy: &Policy,
    t: &Tables<'_>,
    sender: &str,
    session: Option<&SmarReply>,
    routable: &Routability,
) -> Verdict {
    if sender.is_empty() || is_quick_ok_or_relay(session) {
        return Verdict::accept();
    }
    let (_, domain) = split_address(sender);
    if domain.is_empty() {
        return Verdict::plain(SmarReply::Reject(reply(
            553,
            (5, 1, 8),
            "Domain of sender address must be given",
        )));
    }
    let addrs: &[IpAddr] = match routable {
        Routability::Mailertable => &[],
        Routability::Dns(a) => a,
        Routability::Failed(e) => return Verdict::plain(route_failure_reply(e)),
    };
    match t.mailertable.is_local_domain(domain) {
        Ok(true) => {
            match local_address_exists(t.aliases.as_ref(), t.local_users.as_ref(), sender) {
                Ok(true) => {}
                Ok(false) => {
                    return Verdict::plain(SmarReply::Reject(reply(
                        550,
                        (5, 1, 0),
                        "Sender address unknown",
                    )));
                }
                Err(e) => return Verdict::plain(temp(&e)),
            }
        }
        Ok(false) => {}
        Err(e) => return Verdict::plain(temp(&e)),
    }
    if policy.access
        && let Some(am) = t.access
    {
        if let Some(v) = decide(am.address("from", sender), false) {
            return v;
        }
        for a in addrs {
            if let Some(v) = decide(am.ip("mxbadip", *a), false) {
                return v;
            }
        }
    }
    Verdict::accept()
}

/// The reply for a sender domain that cannot be routed.
pub fn route_failure_reply(e: &RouteError) -> SmarReply {
    match e {
        RouteError::NoSuchDomain(_) => SmarReply::Reject(reply(
            553,
            (5, 1, 8),
            "Domain of sender address does not exist",
        )),
        RouteError::NullMx(_) => {
            SmarReply::Reject(reply(550, (5, 7, 27), "Sender address has null MX"))
        }
        RouteError::NoAddress(_) => SmarReply::Reject(reply(
            553,
            (5, 1, 8),
            "Domain of sender address has no mail server",
        )),
        RouteError::Temporary(_) => SmarReply::TempFail(reply(
            451,
            (4, 1, 8),
            "Domain of sender address does not resolve",
        )),
    }
}

/// What the RCPT stage knows about the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptSession {
    /// The connect verdict.
    pub connect: Option<SmarReply>,
    /// Relaying allowed by AUTH or STARTTLS.
    pub relay_allowed: bool,
    /// A connect or MAIL rejection held back by `delay_checks` (a
    /// `Reject`, `TempFail`), if any.
    pub delayed: Option<SmarReply>,
}

/// The RCPT stage (seed 3.12.2 "RCPT"; see the module doc).
pub fn rcpt_check(
    policy: &Policy,
    t: &Tables<'_>,
    rcpt: &str,
    sender: &str,
    client_ip: IpAddr,
    s: &RcptSession,
) -> SmarReply {
    let (_, domain) = split_address(rcpt);
    let local = match t.mailertable.is_local_domain(domain) {
        Ok(l) => l,
        Err(e) => return temp(&e),
    };
    if local {
        match local_address_exists(t.aliases.as_ref(), t.local_users.as_ref(), rcpt) {
            Ok(true) => {}
            Ok(false) => return SmarReply::Reject(reply(550, (5, 1, 1), "User unknown")),
            Err(e) => return temp(&e),
        }
    }
    let quick_relay = matches!(s.connect, Some(SmarReply::Relay { quick: true }));
    let quick_ok = matches!(s.connect, Some(SmarReply::Accept { quick: true }));
    let session_relay = matches!(s.connect, Some(SmarReply::Relay { .. })) || s.relay_allowed;
    let relay_ok = (local && !policy.lmtp_does_not_imply_relaying) || session_relay;
    let am = if policy.access { t.access } else { None };

    // The to: entry, looked up once for both uses.
    // quick:relay, or quick:ok when relaying needs no to: entry, override
    // the other access map checks (seed 3.9.3).
    let session_overrides = quick_relay || (quick_ok && relay_ok);
    let need_to = am.is_some() && !session_overrides;
    let to_rhs: Option<Rhs> = match (need_to, am) {
        (true, Some(am)) => match am.address("to", rcpt) {
            Ok(h) => h.map(|h| h.rhs),
            Err(e) => return temp(&e),
        },
        _ => None,
    };

    let mut relayed = false;
    if !relay_ok {
        match to_rhs.as_ref().map(|r| &r.action) {
            Some(Action::Relay) => relayed = true,
            Some(Action::Error(r)) => return error_reply(r),
            _ => {
                return SmarReply::Reject(reply(550, (5, 7, 1), "Relaying denied"));
            }
        }
    }

    if !session_overrides && let (Some(pr), Some(am)) = (&policy.protected, am) {
        match protected_ok(pr, am, t.aliases.as_ref(), rcpt, sender, client_ip) {
            Ok(true) => {}
            Ok(false) => {
                return SmarReply::Reject(reply(
                    550,
                    (5, 7, 1),
                    "Sender not allowed to send to this recipient",
                ));
            }
            Err(e) => return temp(&e),
        }
    }

    let overrides_delay = to_rhs
        .as_ref()
        .is_some_and(|r| r.quick && matches!(r.action, Action::Ok | Action::Relay));
    if !overrides_delay && let Some(d) = &s.delayed {
        return d.clone();
    }
    // A remote recipient that got this far is relayed.
    let relay_answer = relayed || !local;
    let quick_session = quick_relay || quick_ok;
    match to_rhs {
        Some(Rhs {
            action: Action::Error(r),
            ..
        }) => error_reply(&r),
        Some(Rhs {
            action: Action::Discard,
            ..
        }) => SmarReply::Discard,
        Some(Rhs {
            quick,
            action: Action::Relay,
        }) => SmarReply::Relay { quick },
        Some(Rhs {
            quick,
            action: Action::Ok,
        }) if relay_answer => SmarReply::Relay { quick },
        Some(Rhs {
            quick,
            action: Action::Ok,
        }) => SmarReply::Accept { quick },
        _ if relay_answer => SmarReply::Relay {
            quick: quick_session,
        },
        _ => SmarReply::Accept {
            quick: quick_session,
        },
    }
}

/// The verdict of an access map lookup; `None` when it decides nothing.
/// Lookup errors give `TempFail` (not quick).
pub fn verdict_of(
    r: Result<Option<crate::access::AccessHit>, SmarError>,
    relay_allowed: bool,
) -> Option<Verdict> {
    match r {
        Err(e) => Some(Verdict::plain(temp(&e))),
        Ok(None) => None,
        Ok(Some(h)) => rhs_verdict(&h.rhs, relay_allowed).map(|reply| Verdict {
            reply,
            quick: h.rhs.quick,
        }),
    }
}

// ---- helpers -------------------------------------------------------------

fn decide(r: Result<Option<crate::access::AccessHit>, SmarError>, relay: bool) -> Option<Verdict> {
    verdict_of(r, relay)
}

fn rhs_verdict(rhs: &Rhs, relay_allowed: bool) -> Option<SmarReply> {
    Some(match &rhs.action {
        Action::Cont => return None,
        Action::Ok => SmarReply::Accept { quick: rhs.quick },
        Action::Relay if relay_allowed => SmarReply::Relay { quick: rhs.quick },
        Action::Relay => SmarReply::Accept { quick: rhs.quick },
        Action::Discard => SmarReply::Discard,
        Action::Error(r) => error_reply(r),
    })
}

fn error_reply(r: &SmtpReply) -> SmarReply {
    if r.code >= 500 {
        SmarReply::Reject(r.clone())
    } else {
        SmarReply::TempFail(r.clone())
    }
}

fn temp(e: &SmarError) -> SmarReply {
    tracing::warn!(error = %e, "lookup failed; answering with a temporary failure");
    SmarReply::TempFail(temp_reply())
}

fn is_quick_ok_or_relay(s: Option<&SmarReply>) -> bool {
    matches!(
        s,
        Some(SmarReply::Accept { quick: true } | SmarReply::Relay { quick: true })
    )
}

/// Seed 3.10.3; see the module doc.
fn protected_ok(
    pr: &ProtectedRecipients,
    am: AccessMap<'_>,
    aliases: Option<&Aliases<'_>>,
    rcpt: &str,
    sender: &str,
    client_ip: IpAddr,
) -> Result<bool, SmarError> {
    let generic = pr.match_type != MatchType::Exact;
    let implicit = pr.match_type == MatchType::ImplicitlyMatchDetail;
    let rcpt_keys = if generic {
        am.address_keys(rcpt)
    } else {
        let (local, _) = split_address(rcpt);
        vec![rcpt.to_ascii_lowercase(), local.to_ascii_lowercase()]
    };
    let Some(hit) = am.raw("protectedrcpt", &rcpt_keys)? else {
        return Ok(true);
    };
    let sender_l = strip_brackets(sender).to_ascii_lowercase();
    let sender_keys: Vec<String> = if generic {
        let (l, d) = split_address(&sender_l);
        keys::address_keys_with(
            l,
            d,
            am.delimiters,
            &crate::access::address_flags(),
            keys::AddressOptions {
                localpart_step: true,
                implicitly_match_detail: implicit,
            },
        )
    } else {
        vec![sender_l.clone()]
    };
    let ip_keys = if generic {
        keys::ip_keys(client_ip)
    } else {
        vec![client_ip.to_string()]
    };
    for restriction in hit.value.split_whitespace() {
        let Some((kind, arg)) = restriction.split_once(':') else {
            continue;
        };
        let arg = strip_brackets(arg).to_ascii_lowercase();
        match kind.to_ascii_lowercase().as_str() {
            "from" if pr.allow_by.sender && !sender_l.is_empty() && sender_keys.contains(&arg) => {
                return Ok(true);
            }
            "cltaddr" if pr.allow_by.client_ip && ip_keys.contains(&arg) => {
                return Ok(true);
            }
            "list" if pr.allow_by.sender => {
                let Some(a) = aliases else { continue };
                // The list is named by the operator: it is one of ours.
                let Some((_, AliasValue::Members(members))) = a.lookup(&arg, true)? else {
                    continue;
                };
                let ok = members.iter().any(|m| {
                    let m = m.to_ascii_lowercase();
                    if generic {
                        sender_keys.contains(&m)
                    } else {
                        m == sender_l
                    }
                });
                if ok && !sender_l.is_empty() {
                    return Ok(true);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

fn strip_brackets(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(s)
}
