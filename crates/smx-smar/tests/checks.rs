//! Table-driven tests of the check sequences (seed 3.9.3, 3.10.3, 3.12.2,
//! 4.3–4.5): each example of the seed with the decision it must give.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use smx_conf::model::qmgr::LookupFlags;
use smx_conf::model::smar::{AliasFlags, MailertableConfig};
use smx_conf::model::smtps::{AllowBy, MatchType, ProtectedRecipients};
use smx_ipc::smtps_smar::SmarReply;
use smx_ipc::types::{EnhancedCode, SmtpReply};
use smx_maps::{Map, MapError, TextMap};
use smx_smar::access::AccessMap;
use smx_smar::aliases::Aliases;
use smx_smar::checks::{
    ConnectFacts, DnsblResult, Policy, RcptSession, Routability, Tables, connect_check, mail_check,
    rcpt_check,
};
use smx_smar::dns::{ClientName, ClientResolve, RouteError};
use smx_smar::mailertable::Mailertable;

fn text(entries: &[&str]) -> TextMap {
    TextMap::from_entries(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

/// A map that always fails, as an unreadable file does.
#[derive(Debug)]
struct Broken;

impl Map for Broken {
    fn lookup(&self, _key: &str) -> Result<Option<String>, MapError> {
        Err(MapError::Read {
            path: "broken.cdb".into(),
            source: std::io::Error::other("disk on fire"),
        })
    }
}

struct World {
    access: Box<dyn Map>,
    mt: TextMap,
    mt_flags: LookupFlags,
    aliases: Option<TextMap>,
    alias_flags: AliasFlags,
    policy: Policy,
}

impl World {
    fn new(access: &[&str]) -> Self {
        World {
            access: Box::new(text(access)),
            mt: text(&[
                "localhost lmtp:",
                "my.dom lmtp:",
                "host.my.dom lmtp:",
                "local.dom lmtp:",
                ". esmtp:smart.host",
            ]),
            mt_flags: MailertableConfig::default().flags,
            aliases: None,
            alias_flags: AliasFlags::default(),
            policy: Policy {
                access: true,
                ..Policy::default()
            },
        }
    }

    fn with_aliases(mut self, entries: &[&str]) -> Self {
        self.aliases = Some(text(entries));
        self
    }

    fn tables(&self) -> Tables<'_> {
        Tables {
            access: Some(AccessMap {
                map: self.access.as_ref(),
                delimiters: "+",
            }),
            mailertable: Mailertable {
                map: &self.mt,
                flags: &self.mt_flags,
                delimiters: "+",
            },
            aliases: self.aliases.as_ref().map(|m| Aliases {
                map: m,
                flags: &self.alias_flags,
                delimiters: "+",
                hostname: "localhost",
            }),
            local_users: None,
        }
    }

    fn connect(&self, ip: &str, resolve: ClientResolve, name: Option<&str>) -> SmarReply {
        let facts = ConnectFacts {
            client: ClientName {
                resolve,
                name: name.map(Into::into),
            },
            dnsbl: Vec::new(),
        };
        connect_check(&self.policy, &self.tables(), ip.parse().unwrap(), &facts).reply
    }

    fn mail(&self, sender: &str, session: Option<&SmarReply>, r: Routability) -> SmarReply {
        mail_check(&self.policy, &self.tables(), sender, session, &r).reply
    }

    fn rcpt(&self, rcpt: &str, sender: &str, ip: &str, s: &RcptSession) -> SmarReply {
        rcpt_check(
            &self.policy,
            &self.tables(),
            rcpt,
            sender,
            ip.parse::<IpAddr>().unwrap(),
            s,
        )
    }

    /// RCPT with the connect verdict of `ip` as the session.
    fn rcpt_from(&self, rcpt: &str, ip: &str) -> SmarReply {
        let session = self.connect(ip, ClientResolve::No, None);
        self.rcpt(
            rcpt,
            "sender@example.org",
            ip,
            &RcptSession {
                connect: Some(session),
                ..RcptSession::default()
            },
        )
    }
}

fn r(code: u16, e: (u8, u16, u16), text: &str) -> SmtpReply {
    SmtpReply {
        code,
        enhanced: Some(EnhancedCode {
            class: e.0,
            subject: e.1,
            detail: e.2,
        }),
        text: text.into(),
    }
}

const ACCEPT: SmarReply = SmarReply::Accept { quick: false };
const RELAY: SmarReply = SmarReply::Relay { quick: false };

fn relaying_denied() -> SmarReply {
    SmarReply::Reject(r(550, (5, 7, 1), "Relaying denied"))
}

/// Seed 3.9.3, access map examples, connect stage.
#[test]
fn seed_3_9_3_connect_examples() {
    let w = World::new(&[
        "cltresolve:tempptr error:451 4.7.1 reverse lookup failed",
        "cltaddr:10 error:551 5.7.1 No direct mail from 10.x.y.z",
        "cltname:spammer.domain. quick:error:551 5.7.1 No mail from spammers",
        "cltaddr:127.0.0.1 quick:relay",
        "cltaddr:192.0.2.66 discard",
        "cltaddr:192.0.2.77 cont",
    ]);
    let cases: Vec<(&str, ClientResolve, Option<&str>, SmarReply)> = vec![
        (
            "198.51.100.1",
            ClientResolve::TempPtr,
            None,
            SmarReply::TempFail(r(451, (4, 7, 1), "reverse lookup failed")),
        ),
        (
            "10.1.2.3",
            ClientResolve::Ok,
            Some("x.example."),
            SmarReply::Reject(r(551, (5, 7, 1), "No direct mail from 10.x.y.z")),
        ),
        (
            "198.51.100.2",
            ClientResolve::Ok,
            Some("spammer.domain."),
            SmarReply::Reject(r(551, (5, 7, 1), "No mail from spammers")),
        ),
        // cltname: entries match only the exact name (no leading dot).
        (
            "198.51.100.2",
            ClientResolve::Ok,
            Some("mail.spammer.domain."),
            ACCEPT,
        ),
        (
            "127.0.0.1",
            ClientResolve::TempPtr,
            None,
            SmarReply::Relay { quick: true },
        ),
        ("192.0.2.66", ClientResolve::Ok, None, SmarReply::Discard),
        // cont: this lookup decides nothing, the next checks run.
        (
            "192.0.2.77",
            ClientResolve::TempPtr,
            None,
            SmarReply::TempFail(r(451, (4, 7, 1), "reverse lookup failed")),
        ),
        (
            "198.51.100.3",
            ClientResolve::Ok,
            Some("good.example."),
            ACCEPT,
        ),
    ];
    for (ip, res, name, want) in cases {
        assert_eq!(w.connect(ip, res, name), want, "connect from {ip} {name:?}");
    }
}

/// Without the smtps flag `access` no access map lookups happen.
#[test]
fn access_flag_off_means_no_lookups() {
    let mut w = World::new(&["cltaddr:10 reject", "from:@spammer.domain reject"]);
    w.policy.access = false;
    assert_eq!(w.connect("10.0.0.1", ClientResolve::Ok, None), ACCEPT);
    assert_eq!(
        w.mail("a@spammer.domain", None, Routability::Dns(vec![])),
        ACCEPT
    );
}

/// Seed 3.9.3 `from:` and `mxbadip:` examples, seed 3.12.2 MAIL steps.
#[test]
fn seed_3_9_3_mail_examples() {
    let w = World::new(&[
        "mxbadip:127.0.0.1 error:551 5.7.1 Bad IP address 127.0.0.1 in MX/A list",
        "mxbadip:192.168.255.255 error:551 5.7.1 Bad IP address 192.168.255.255 in MX/A list",
        "from:@spammer.domain error:551 5.7.1 No spammers",
        "from:@.spammer.domain error:551 5.7.1 No spammers in subdomains either",
        "from:good@spammer.domain ok",
    ])
    .with_aliases(&["postmaster <root@localhost>", "user local:"]);
    let ok_dns = || Routability::Dns(vec!["192.0.2.1".parse().unwrap()]);
    let cases: Vec<(&str, Routability, SmarReply)> = vec![
        (
            "a@spammer.domain",
            ok_dns(),
            SmarReply::Reject(r(551, (5, 7, 1), "No spammers")),
        ),
        (
            "a@mail.spammer.domain",
            ok_dns(),
            SmarReply::Reject(r(551, (5, 7, 1), "No spammers in subdomains either")),
        ),
        ("good@spammer.domain", ok_dns(), ACCEPT),
        (
            "a@bad-mx.example",
            Routability::Dns(vec!["127.0.0.1".parse().unwrap()]),
            SmarReply::Reject(r(551, (5, 7, 1), "Bad IP address 127.0.0.1 in MX/A list")),
        ),
        (
            "a@bad-mx2.example",
            Routability::Dns(vec![
                "192.0.2.9".parse().unwrap(),
                "192.168.255.255".parse().unwrap(),
            ]),
            SmarReply::Reject(r(
                551,
                (5, 7, 1),
                "Bad IP address 192.168.255.255 in MX/A list",
            )),
        ),
        ("a@fine.example", ok_dns(), ACCEPT),
        ("<>", ok_dns(), ACCEPT),
        (
            "a@nx.example",
            Routability::Failed(RouteError::NoSuchDomain("nx.example".into())),
            SmarReply::Reject(r(553, (5, 1, 8), "Domain of sender address does not exist")),
        ),
        (
            "a@null.example",
            Routability::Failed(RouteError::NullMx("null.example".into())),
            SmarReply::Reject(r(550, (5, 7, 27), "Sender address has null MX")),
        ),
        (
            "a@slow.example",
            Routability::Failed(RouteError::Temporary(smx_smar::dns::DnsError::Timeout {
                name: "slow.example".into(),
            })),
            SmarReply::TempFail(r(
                451,
                (4, 1, 8),
                "Domain of sender address does not resolve",
            )),
        ),
        (
            "nodomain",
            ok_dns(),
            SmarReply::Reject(r(553, (5, 1, 8), "Domain of sender address must be given")),
        ),
        // MAIL step 2: a local sender must exist.
        ("user@my.dom", Routability::Mailertable, ACCEPT),
        (
            "nobody@my.dom",
            Routability::Mailertable,
            SmarReply::Reject(r(550, (5, 1, 0), "Sender address unknown")),
        ),
    ];
    for (sender, routable, want) in cases {
        let sender_arg = if sender == "<>" { "" } else { sender };
        assert_eq!(
            w.mail(sender_arg, None, routable),
            want,
            "MAIL FROM {sender}"
        );
    }
    // A session with quick:relay or quick:ok skips the MAIL checks.
    for s in [
        SmarReply::Relay { quick: true },
        SmarReply::Accept { quick: true },
    ] {
        assert_eq!(w.mail("a@spammer.domain", Some(&s), ok_dns()), ACCEPT);
    }
    // A non-quick session verdict does not.
    assert_eq!(
        w.mail("a@spammer.domain", Some(&RELAY), ok_dns()),
        SmarReply::Reject(r(551, (5, 7, 1), "No spammers"))
    );
}

/// Seed 3.9.3 `to:` and `cltaddr: relay` examples, seed 3.12.2 RCPT.
#[test]
fn seed_3_9_3_rcpt_examples() {
    let w = World::new(&[
        "to:root error:551 5.7.1 No mail to root",
        "to:abuse quick:ok",
        "to:@primary.domain relay",
        "cltaddr:10 relay",
        "cltaddr:127.0.0.1 quick:relay",
        "to:junk@my.dom discard",
    ]);
    let cases: Vec<(&str, &str, SmarReply)> = vec![
        (
            "root@my.dom",
            "192.0.2.1",
            SmarReply::Reject(r(551, (5, 7, 1), "No mail to root")),
        ),
        (
            "abuse@my.dom",
            "192.0.2.1",
            SmarReply::Accept { quick: true },
        ),
        ("user@primary.domain", "192.0.2.1", RELAY),
        ("user@sub.primary.domain", "192.0.2.1", relaying_denied()),
        ("user@elsewhere.example", "192.0.2.1", relaying_denied()),
        ("user@elsewhere.example", "10.9.8.7", RELAY),
        (
            "user@elsewhere.example",
            "127.0.0.1",
            SmarReply::Relay { quick: true },
        ),
        // quick:relay overrides all other access map checks.
        (
            "root@my.dom",
            "127.0.0.1",
            SmarReply::Accept { quick: true },
        ),
        // Non-quick relay does not: to:root still applies.
        (
            "root@my.dom",
            "10.9.8.7",
            SmarReply::Reject(r(551, (5, 7, 1), "No mail to root")),
        ),
        ("user@my.dom", "192.0.2.1", ACCEPT),
        ("junk@my.dom", "192.0.2.1", SmarReply::Discard),
    ];
    for (rcpt, ip, want) in cases {
        assert_eq!(w.rcpt_from(rcpt, ip), want, "RCPT TO {rcpt} from {ip}");
    }
    // Relaying allowed by AUTH/STARTTLS.
    let s = RcptSession {
        relay_allowed: true,
        ..RcptSession::default()
    };
    assert_eq!(
        w.rcpt("user@elsewhere.example", "a@b.example", "192.0.2.1", &s),
        RELAY
    );
}

/// Seed 3.9.3 quick: and delay_checks: a delayed rejection is answered
/// at RCPT unless to: says quick:ok or quick:relay.
#[test]
fn delay_checks_and_quick_override() {
    let w = World::new(&["to:abuse quick:ok", "to:postmaster ok"]);
    let delayed = SmarReply::Reject(r(551, (5, 7, 1), "No spammers"));
    let s = RcptSession {
        delayed: Some(delayed.clone()),
        ..RcptSession::default()
    };
    assert_eq!(
        w.rcpt("abuse@my.dom", "a@spammer.domain", "192.0.2.1", &s),
        SmarReply::Accept { quick: true }
    );
    assert_eq!(
        w.rcpt("postmaster@my.dom", "a@spammer.domain", "192.0.2.1", &s),
        delayed
    );
    assert_eq!(
        w.rcpt("user@my.dom", "a@spammer.domain", "192.0.2.1", &s),
        delayed
    );
}

/// Seed 3.10.3 protected recipients.
#[test]
fn seed_3_10_3_protected_recipients() {
    let aliases = [
        "list1 <user1-1@l1-1.dom> <user2-1@l1-1.dom> <list2@local.dom>",
        "list2 <user1-2@l2-1.dom> <user2-2@l2-2.dom>",
        "list3 <user1-3@l3-1.dom> <user2-3@l3-2.dom>",
    ];
    let access = [
        "protectedrcpt:list1@local.dom list:<list1@local.dom>",
        "protectedrcpt:list3 from:<moderator3@local.dom> cltaddr:1.2.3.4 cltaddr:10",
    ];
    let mut w = World::new(&access).with_aliases(&aliases);
    w.policy.protected = Some(ProtectedRecipients {
        allow_by: {
            let mut a = AllowBy::default();
            a.sender = true;
            a.client_ip = true;
            a
        },
        match_type: MatchType::Exact,
    });
    let denied = SmarReply::Reject(r(
        550,
        (5, 7, 1),
        "Sender not allowed to send to this recipient",
    ));
    let none = RcptSession::default();
    let exact: Vec<(&str, &str, &str, SmarReply)> = vec![
        ("list1@local.dom", "user1-1@l1-1.dom", "192.0.2.1", ACCEPT),
        ("list1@local.dom", "user2-1@l1-1.dom", "192.0.2.1", ACCEPT),
        // Not recursive: members of list2 are not allowed.
        (
            "list1@local.dom",
            "user1-2@l2-1.dom",
            "192.0.2.1",
            denied.clone(),
        ),
        (
            "list1@local.dom",
            "stranger@x.dom",
            "192.0.2.1",
            denied.clone(),
        ),
        (
            "list3@local.dom",
            "moderator3@local.dom",
            "192.0.2.1",
            ACCEPT,
        ),
        ("list3@local.dom", "someone@x.dom", "1.2.3.4", ACCEPT),
        // cltaddr:10 (a net) needs generic_lookup.
        (
            "list3@local.dom",
            "someone@x.dom",
            "10.0.0.1",
            denied.clone(),
        ),
        (
            "list3@local.dom",
            "user1-3@l3-1.dom",
            "192.0.2.1",
            denied.clone(),
        ),
        ("list2@local.dom", "anyone@x.dom", "192.0.2.1", ACCEPT),
    ];
    for (rcpt, sender, ip, want) in exact {
        assert_eq!(
            w.rcpt(rcpt, sender, ip, &none),
            want,
            "{rcpt} from {sender} at {ip}"
        );
    }
    w.policy.protected = Some(ProtectedRecipients {
        match_type: MatchType::GenericLookup,
        ..w.policy.protected.clone().unwrap()
    });
    assert_eq!(
        w.rcpt("list3@local.dom", "someone@x.dom", "10.0.0.1", &none),
        ACCEPT
    );
    assert_eq!(
        w.rcpt(
            "list1@local.dom",
            "user1-1+tag@l1-1.dom",
            "192.0.2.1",
            &none
        ),
        denied
    );
    w.policy.protected = Some(ProtectedRecipients {
        match_type: MatchType::ImplicitlyMatchDetail,
        ..w.policy.protected.clone().unwrap()
    });
    assert_eq!(
        w.rcpt(
            "list1@local.dom",
            "user1-1+tag@l1-1.dom",
            "192.0.2.1",
            &none
        ),
        ACCEPT
    );
    // allow_by without client_ip: cltaddr restrictions do not count.
    w.policy.protected = Some(ProtectedRecipients {
        allow_by: {
            let mut a = AllowBy::default();
            a.sender = true;
            a
        },
        match_type: MatchType::Exact,
    });
    assert_eq!(
        w.rcpt("list3@local.dom", "someone@x.dom", "1.2.3.4", &none),
        denied
    );
}

/// Seed 4.3.1 and 4.3.2: lmtp: domains are local, local addresses must
/// exist, and lmtp_does_not_imply_relaying.
#[test]
fn seed_4_3_incoming_mail() {
    let mut w = World::new(&["to:@host.my.dom relay"]).with_aliases(&[
        "postmaster: <user@host.domain>",
        "abuse: user+abuse",
        "user++: local:",
        "user: local:",
    ]);
    let unknown = SmarReply::Reject(r(550, (5, 1, 1), "User unknown"));
    let cases: Vec<(&str, SmarReply)> = vec![
        ("user@my.dom", ACCEPT),
        ("user+box@localhost", ACCEPT),
        // The to: entry says relay (for lmtp_does_not_imply_relaying below).
        ("postmaster@host.my.dom", RELAY),
        ("abuse@my.dom", ACCEPT),
        ("nobody@my.dom", unknown.clone()),
        ("user+@my.dom", unknown),
    ];
    for (rcpt, want) in &cases {
        assert_eq!(&w.rcpt_from(rcpt, "192.0.2.1"), want, "{rcpt}");
    }
    w.policy.lmtp_does_not_imply_relaying = true;
    assert_eq!(w.rcpt_from("user@my.dom", "192.0.2.1"), relaying_denied());
    assert_eq!(w.rcpt_from("user@host.my.dom", "192.0.2.1"), RELAY);
}

/// Seed 4.4: gateway with a list of valid remote addresses.
#[test]
fn seed_4_4_gateway() {
    let w = World::new(&[
        "to:user1@my.domain relay",
        "to:user2@my.domain relay",
        "to:postmaster@my.domain relay",
        "cltaddr:10.12 relay",
    ]);
    let cases: Vec<(&str, &str, SmarReply)> = vec![
        ("user1@my.domain", "192.0.2.1", RELAY),
        ("user2@my.domain", "192.0.2.1", RELAY),
        ("postmaster@my.domain", "192.0.2.1", RELAY),
        ("user3@my.domain", "192.0.2.1", relaying_denied()),
        ("user3@my.domain", "10.12.1.1", RELAY),
        ("user3@my.domain", "10.13.1.1", relaying_denied()),
    ];
    for (rcpt, ip, want) in cases {
        assert_eq!(w.rcpt_from(rcpt, ip), want, "{rcpt} from {ip}");
    }
}

/// Seed 4.5: backup MX.
#[test]
fn seed_4_5_backup_mx() {
    let w = World::new(&[
        "to:user1@other.domain relay",
        "to:user2@other.domain relay",
        "to:postmaster@other.domain relay",
        "to:@other.domain error:451 4.3.3 Try main MX server",
        "cltaddr:10.12 quick:relay",
        "cltaddr:127.0.0.1 quick:relay",
    ]);
    let try_main = SmarReply::TempFail(r(451, (4, 3, 3), "Try main MX server"));
    let cases: Vec<(&str, &str, SmarReply)> = vec![
        ("user1@other.domain", "192.0.2.1", RELAY),
        ("postmaster@other.domain", "192.0.2.1", RELAY),
        ("user9@other.domain", "192.0.2.1", try_main),
        (
            "user9@other.domain",
            "10.12.0.5",
            SmarReply::Relay { quick: true },
        ),
        (
            "user9@other.domain",
            "127.0.0.1",
            SmarReply::Relay { quick: true },
        ),
        ("someone@third.example", "192.0.2.1", relaying_denied()),
    ];
    for (rcpt, ip, want) in cases {
        assert_eq!(w.rcpt_from(rcpt, ip), want, "{rcpt} from {ip}");
    }
}

/// Seed 3.9.2 item 5: DNS blacklist results in the access map.
#[test]
fn dnsbl_results() {
    let w = World::new(&[
        "dnsbltld:127.0.0.1 error:550 5.7.1 listed at dnsbl.tld as open relay",
        "dnsbltld:127.0.0.2 error:550 5.7.1 listed at dnsbl.tld as spam source",
        "dnsbltld:temp error:451 4.7.1 temporary lookup failure at dnsbl.tld",
    ]);
    let run = |res: DnsblResult| {
        let facts = ConnectFacts {
            client: ClientName {
                resolve: ClientResolve::Ok,
                name: None,
            },
            dnsbl: vec![("dnsbltld".into(), res)],
        };
        connect_check(&w.policy, &w.tables(), "192.0.2.5".parse().unwrap(), &facts).reply
    };
    assert_eq!(
        run(DnsblResult::Listed(vec![
            "127.0.0.9".parse().unwrap(),
            "127.0.0.2".parse().unwrap()
        ])),
        SmarReply::Reject(r(550, (5, 7, 1), "listed at dnsbl.tld as spam source"))
    );
    assert_eq!(
        run(DnsblResult::Temp),
        SmarReply::TempFail(r(451, (4, 7, 1), "temporary lookup failure at dnsbl.tld"))
    );
    assert_eq!(run(DnsblResult::NotListed), ACCEPT);
    assert_eq!(run(DnsblResult::Perm), ACCEPT);
}

/// A map that cannot answer, or a broken entry, gives a temporary failure
/// at every stage, never a decision.
#[test]
fn failing_map_gives_tempfail() {
    let temp = SmarReply::TempFail(r(
        451,
        (4, 3, 0),
        "Temporary lookup failure, try again later",
    ));
    let mut w = World::new(&[]);
    w.access = Box::new(Broken);
    assert_eq!(w.connect("192.0.2.1", ClientResolve::Ok, None), temp);
    assert_eq!(w.mail("a@b.example", None, Routability::Dns(vec![])), temp);
    assert_eq!(
        w.rcpt(
            "x@elsewhere.example",
            "a@b.example",
            "192.0.2.1",
            &RcptSession::default()
        ),
        temp
    );
    let w = World::new(&["from:@b.example bogus", "cltaddr:192.0.2 error:250 fine"]);
    assert_eq!(w.connect("192.0.2.1", ClientResolve::Ok, None), temp);
    assert_eq!(w.mail("a@b.example", None, Routability::Dns(vec![])), temp);
    let mut w = World::new(&[]);
    w.mt = text(&["my.dom lmtp:"]);
    let w2 = World {
        mt: text(&["my.dom lmtp:host.without.port"]),
        ..w
    };
    assert_eq!(
        w2.rcpt(
            "x@my.dom",
            "a@b.example",
            "192.0.2.1",
            &RcptSession::default()
        ),
        temp
    );
}

proptest::proptest! {
    /// Any address from a peer gives a verdict, never a panic.
    #[test]
    fn arbitrary_addresses_never_panic(
        rcpt in "\\PC{0,40}",
        sender in "\\PC{0,40}",
        octets in proptest::prelude::any::<[u8; 4]>(),
    ) {
        let w = World::new(&[
            "to:@x.example relay",
            "from:a@ ok",
            "protectedrcpt:x from:<y> list:<z> cltaddr:1 garbage",
        ])
        .with_aliases(&["z <y@my.dom>", "user local:"]);
        let mut w = w;
        w.policy.protected = Some(ProtectedRecipients {
            allow_by: {
                let mut a = AllowBy::default();
                a.sender = true;
                a.client_ip = true;
                a
            },
            match_type: MatchType::GenericLookup,
        });
        let ip = IpAddr::from(octets).to_string();
        let _ = w.rcpt(&rcpt, &sender, &ip, &RcptSession::default());
        let _ = w.mail(&sender, None, Routability::Dns(vec![IpAddr::from(octets)]));
        let _ = w.connect(&ip, ClientResolve::Ok, Some(&rcpt));
    }
}
