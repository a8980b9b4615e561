//! Table-driven tests of the command parser: every command and every
//! parameter, valid and invalid, strict and sloppy.
//!
//! A row is (line, mode, want): `want` is the canonical rendering of the
//! parsed command, or the reply code and enhanced code of the error.

use std::net::IpAddr;

use smx_proto::address::{MAX_DOMAIN, MAX_LOCAL_PART, MAX_PATH};
use smx_proto::{
    AddressError, AuthParam, Body, ByMode, Command, CommandError, DeliverBy, ForwardPath, HeloName,
    Host, Notify, Orcpt, ParamError, Ret, ReversePath, Syntax, SyntaxProblem, Verb, Xverp,
};

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Strict only.
    S,
    /// Sloppy only.
    L,
    /// Both.
    B,
}

#[derive(Debug)]
enum Want {
    /// Parses; renders as this.
    P(&'static str),
    /// Fails with this reply code and enhanced code.
    F(u16, &'static str),
}
use Mode::*;
use Want::*;

fn syntaxes(mode: Mode) -> Vec<(&'static str, Syntax)> {
    match mode {
        S => vec![("strict", Syntax::STRICT)],
        L => vec![("sloppy", Syntax::SLOPPY)],
        B => vec![("strict", Syntax::STRICT), ("sloppy", Syntax::SLOPPY)],
    }
}

fn check(rows: &[(&str, Mode, Want)]) {
    let mut failures = Vec::new();
    for (line, mode, want) in rows {
        for (name, syntax) in syntaxes(*mode) {
            let got = Command::parse(line.as_bytes(), &syntax);
            let ok = match (&got, want) {
                (Ok(cmd), Want::P(canon)) => {
                    let rendered = cmd.to_string();
                    let again = Command::parse(rendered.as_bytes(), &syntax);
                    rendered == *canon && again.as_ref() == Ok(cmd)
                }
                (Err(e), Want::F(code, enh)) => {
                    let r = e.reply();
                    r.code == *code && r.enhanced.map(|e| e.to_string()).as_deref() == Some(*enh)
                }
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{name}: {line:?}: want {want:?}, got {:?}",
                    got.as_ref().map(|c| c.to_string())
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn verbs_and_simple_commands() {
    check(&[
        ("DATA", B, P("DATA")),
        ("data", B, P("DATA")),
        ("DaTa", B, P("DATA")),
        ("DATA x", B, F(501, "5.5.4")),
        ("DATA ", S, F(501, "5.5.4")),
        ("DATA ", L, P("DATA")),
        ("  DATA\t", L, P("DATA")),
        (" DATA", S, F(500, "5.5.1")),
        ("RSET", B, P("RSET")),
        ("rset now", B, F(501, "5.5.4")),
        ("QUIT", B, P("QUIT")),
        ("quit", B, P("QUIT")),
        ("STARTTLS", B, P("STARTTLS")),
        ("StartTLS", B, P("STARTTLS")),
        ("STARTTLS now", B, F(501, "5.5.4")),
        ("", B, F(500, "5.5.2")),
        ("   ", B, F(500, "5.5.2")),
        ("FOO", B, F(500, "5.5.1")),
        ("MAILFROM:<a@b>", B, F(500, "5.5.1")),
        ("TURN", B, F(500, "5.5.1")),
        ("NOOP\u{0}", B, F(500, "5.5.2")),
        ("NOOP\r", B, F(500, "5.5.2")),
        ("NOOP\nQUIT", B, F(500, "5.5.2")),
        ("NOOP x\u{7f}", B, F(500, "5.5.2")),
    ]);
}

#[test]
fn texts() {
    check(&[
        ("NOOP", B, P("NOOP")),
        ("noop hello world", B, P("NOOP hello world")),
        ("NOOP ", S, F(501, "5.5.4")),
        ("NOOP ", L, P("NOOP")),
        ("NOOP  x", S, F(501, "5.5.4")),
        ("NOOP  x ", L, P("NOOP x")),
        ("NOOP\tx", S, F(501, "5.5.4")),
        ("NOOP\tx", L, P("NOOP x")),
        ("NOOP a\tb", B, P("NOOP a\tb")),
        ("HELP", B, P("HELP")),
        ("HELP MAIL", B, P("HELP MAIL")),
        ("VRFY postmaster", B, P("VRFY postmaster")),
        ("VRFY <a@b.c>", B, P("VRFY <a@b.c>")),
        ("vrfy Jörg Müller", B, P("VRFY Jörg Müller")),
        ("VRFY", B, F(501, "5.5.4")),
        ("VRFY ", S, F(501, "5.5.4")),
        ("VRFY  ", L, F(501, "5.5.4")),
        ("EXPN staff", B, P("EXPN staff")),
        ("EXPN", B, F(501, "5.5.4")),
        ("ETRN example.org", B, P("ETRN example.org")),
        ("ETRN @example.org", B, P("ETRN @example.org")),
        ("ETRN #queue", B, P("ETRN #queue")),
        ("ETRN", B, F(501, "5.5.4")),
        ("ETRN @", B, F(501, "5.5.4")),
        ("ETRN a b", B, F(501, "5.5.4")),
    ]);
}

#[test]
fn helo_and_ehlo() {
    check(&[
        ("EHLO mx.example.org", B, P("EHLO mx.example.org")),
        ("ehlo MX.Example.ORG", B, P("EHLO MX.Example.ORG")),
        ("HELO localhost", B, P("HELO localhost")),
        ("EHLO [192.0.2.1]", B, P("EHLO [192.0.2.1]")),
        ("EHLO [IPv6:2001:db8::1]", B, P("EHLO [IPv6:2001:db8::1]")),
        ("HELO [1.2.3.4]", B, P("HELO [1.2.3.4]")),
        ("EHLO bücher.de", B, P("EHLO bücher.de")),
        ("EHLO", B, F(501, "5.5.4")),
        ("EHLO ", S, F(501, "5.5.4")),
        ("EHLO  mx.example.org", S, F(501, "5.5.4")),
        ("EHLO  mx.example.org ", L, P("EHLO mx.example.org")),
        ("EHLO mx.example.org extra", S, F(501, "5.5.4")),
        ("EHLO mx.example.org extra", L, P("EHLO mx.example.org")),
        ("EHLO my_pc", S, F(501, "5.5.4")),
        ("EHLO my_pc", L, P("EHLO my_pc")),
        ("EHLO example.org.", S, F(501, "5.5.4")),
        ("EHLO [1.2.3.999]", S, F(501, "5.5.4")),
        ("EHLO [1.2.3.999]", L, P("EHLO [1.2.3.999]")),
        ("EHLO -bad", S, F(501, "5.5.4")),
    ]);
    let c = Command::parse(b"EHLO my_pc", &Syntax::SLOPPY).unwrap();
    assert_eq!(c, Command::Ehlo(HeloName::Other("my_pc".into())));
    let c = Command::parse(b"EHLO [192.0.2.1]", &Syntax::STRICT).unwrap();
    assert_eq!(
        c,
        Command::Ehlo(HeloName::Literal("192.0.2.1".parse::<IpAddr>().unwrap()))
    );
}

#[test]
fn mail_syntax_strict_vs_sloppy() {
    check(&[
        ("MAIL FROM:<a@b.c>", B, P("MAIL FROM:<a@b.c>")),
        ("mail from:<a@b.c>", B, P("MAIL FROM:<a@b.c>")),
        ("Mail From:<a@b.c>", B, P("MAIL FROM:<a@b.c>")),
        // Seed 6.3.1: the space after the colon is a syntax error.
        ("MAIL FROM: <a@b.c>", S, F(501, "5.5.4")),
        ("MAIL FROM: <a@b.c>", L, P("MAIL FROM:<a@b.c>")),
        ("MAIL FROM :<a@b.c>", S, F(501, "5.5.4")),
        ("MAIL FROM : <a@b.c>", L, P("MAIL FROM:<a@b.c>")),
        ("MAIL  FROM:<a@b.c>", S, F(501, "5.5.4")),
        ("MAIL\tFROM:\t<a@b.c>\t", L, P("MAIL FROM:<a@b.c>")),
        // Missing angle brackets.
        ("MAIL FROM:a@b.c", S, F(501, "5.1.7")),
        ("MAIL FROM:a@b.c", L, P("MAIL FROM:<a@b.c>")),
        ("MAIL FROM:a@b.c SIZE=10", L, P("MAIL FROM:<a@b.c> SIZE=10")),
        // The WinCE example of ZMailer's manual: trailing space.
        ("MAIL FROM:user@domain ", L, P("MAIL FROM:<user@domain>")),
        ("MAIL FROM:<a@b.c> ", S, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> ", L, P("MAIL FROM:<a@b.c>")),
        ("MAIL FROM:<a@b.c>  SIZE=1", S, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c>  SIZE=1",
            L,
            P("MAIL FROM:<a@b.c> SIZE=1"),
        ),
        ("MAIL FROM:<a@b.c>SIZE=1", B, F(501, "5.5.4")),
        ("MAIL FROM:<>", B, P("MAIL FROM:<>")),
        ("MAIL FROM:<> SIZE=0", B, P("MAIL FROM:<> SIZE=0")),
        ("MAIL FROM:", B, F(501, "5.1.7")),
        ("MAIL", B, F(501, "5.5.4")),
        ("MAIL TO:<a@b.c>", B, F(501, "5.5.4")),
        ("MAIL FROM<a@b.c>", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c", B, F(501, "5.1.7")),
        ("MAIL FROM:<a@b.c>>", B, F(501, "5.5.4")),
        ("MAIL FROM:<a b@c>", B, F(501, "5.1.7")),
        ("MAIL FROM:<@>", B, F(501, "5.1.7")),
        ("MAIL FROM:<a@>", B, F(501, "5.1.7")),
        // No domain: the R style flag (require_domain) is on by default.
        ("MAIL FROM:<postmaster>", B, F(501, "5.1.7")),
        ("MAIL FROM:<a>", B, F(501, "5.1.7")),
    ]);
}

#[test]
fn rcpt_syntax() {
    check(&[
        ("RCPT TO:<a@b.c>", B, P("RCPT TO:<a@b.c>")),
        ("rcpt to:<a@b.c>", B, P("RCPT TO:<a@b.c>")),
        ("RCPT TO: <a@b.c>", S, F(501, "5.5.4")),
        ("RCPT TO: <a@b.c>", L, P("RCPT TO:<a@b.c>")),
        ("RCPT TO:a@b.c", S, F(501, "5.1.3")),
        ("RCPT TO:a@b.c", L, P("RCPT TO:<a@b.c>")),
        ("RCPT TO:<postmaster>", B, P("RCPT TO:<Postmaster>")),
        ("RCPT TO:<Postmaster>", B, P("RCPT TO:<Postmaster>")),
        ("RCPT TO:<POSTMASTER>", B, P("RCPT TO:<Postmaster>")),
        ("RCPT TO:<\"postmaster\">", B, P("RCPT TO:<Postmaster>")),
        (
            "RCPT TO:<postmaster@example.org>",
            B,
            P("RCPT TO:<postmaster@example.org>"),
        ),
        ("RCPT TO:postmaster", L, P("RCPT TO:<Postmaster>")),
        ("RCPT TO:<webmaster>", B, F(501, "5.1.3")),
        ("RCPT TO:<>", B, F(501, "5.1.3")),
        ("RCPT FROM:<a@b.c>", B, F(501, "5.5.4")),
        ("RCPT TO:", B, F(501, "5.1.3")),
        ("RCPT", B, F(501, "5.5.4")),
    ]);
    let c = Command::parse(b"RCPT TO:<postmaster>", &Syntax::STRICT).unwrap();
    assert!(matches!(
        c,
        Command::Rcpt {
            path: ForwardPath::Postmaster,
            ..
        }
    ));
}

#[test]
fn addresses() {
    check(&[
        // Quoted local parts: kept quoted when needed, canonical otherwise.
        (
            "RCPT TO:<\"a b\"@example.org>",
            B,
            P("RCPT TO:<\"a b\"@example.org>"),
        ),
        (
            "RCPT TO:<\"abc\"@example.org>",
            B,
            P("RCPT TO:<abc@example.org>"),
        ),
        (
            "RCPT TO:<\"a\\\"b\"@example.org>",
            B,
            P("RCPT TO:<\"a\\\"b\"@example.org>"),
        ),
        (
            "RCPT TO:<\"a>b\"@example.org>",
            B,
            P("RCPT TO:<\"a>b\"@example.org>"),
        ),
        (
            "RCPT TO:<\"a@b\"@example.org>",
            B,
            P("RCPT TO:<\"a@b\"@example.org>"),
        ),
        (
            "RCPT TO:<\"\"@example.org>",
            B,
            P("RCPT TO:<\"\"@example.org>"),
        ),
        (
            "RCPT TO:\"a b\"@example.org",
            L,
            P("RCPT TO:<\"a b\"@example.org>"),
        ),
        ("RCPT TO:<\"a\u{1}\"@example.org>", B, F(500, "5.5.2")),
        ("RCPT TO:<\"ab@example.org>", B, F(501, "5.1.3")),
        // Dot-strings.
        (
            "RCPT TO:<first.last+tag@example.org>",
            B,
            P("RCPT TO:<first.last+tag@example.org>"),
        ),
        (
            "RCPT TO:<a!#$%&'*+-/=?^_`{|}~z@example.org>",
            B,
            P("RCPT TO:<a!#$%&'*+-/=?^_`{|}~z@example.org>"),
        ),
        ("RCPT TO:<.a@example.org>", B, F(501, "5.1.3")),
        ("RCPT TO:<a.@example.org>", B, F(501, "5.1.3")),
        ("RCPT TO:<a..b@example.org>", B, F(501, "5.1.3")),
        ("RCPT TO:<a(b)@example.org>", B, F(501, "5.1.3")),
        // Domains and address literals.
        ("RCPT TO:<a@[192.0.2.1]>", B, P("RCPT TO:<a@[192.0.2.1]>")),
        (
            "RCPT TO:<a@[IPv6:2001:db8::1]>",
            B,
            P("RCPT TO:<a@[IPv6:2001:db8::1]>"),
        ),
        (
            "RCPT TO:<a@[ipv6:2001:DB8:0::1]>",
            B,
            P("RCPT TO:<a@[IPv6:2001:db8::1]>"),
        ),
        (
            "RCPT TO:<a@[IPv6:::ffff:192.0.2.1]>",
            B,
            P("RCPT TO:<a@[IPv6:::ffff:192.0.2.1]>"),
        ),
        ("RCPT TO:<a@[IPv6:2001:db8::g]>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@[2001:db8::1]>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@[256.0.0.1]>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@[1.2.3]>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@[x-foo:bar]>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@example..org>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@-example.org>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@example-.org>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@example.org.>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@exa_mple.org>", B, F(501, "5.1.3")),
        ("RCPT TO:<a@b@c>", B, F(501, "5.1.3")),
        // SMTPUTF8.
        ("RCPT TO:<jörg@bücher.de>", B, P("RCPT TO:<jörg@bücher.de>")),
        (
            "MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8",
            B,
            P("MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8"),
        ),
    ]);
    let ascii = Command::parse(b"RCPT TO:<a@b.c>", &Syntax::STRICT).unwrap();
    assert!(!ascii.needs_smtputf8());
    for line in [
        "RCPT TO:<jörg@example.org>",
        "RCPT TO:<joerg@bücher.de>",
        "MAIL FROM:<\"jö rg\"@example.org>",
    ] {
        let c = Command::parse(line.as_bytes(), &Syntax::STRICT).unwrap();
        assert!(c.needs_smtputf8(), "{line}");
    }
    // Invalid UTF-8 is rejected before any address parsing.
    let e = Command::parse(b"RCPT TO:<j\xf6rg@example.org>", &Syntax::STRICT).unwrap_err();
    assert_eq!(
        e,
        CommandError::InvalidCharacter {
            verb: Some(Verb::Rcpt)
        }
    );
}

#[test]
fn source_routes() {
    check(&[
        (
            "RCPT TO:<@a.example,@b.example:user@c.example>",
            B,
            P("RCPT TO:<user@c.example>"),
        ),
        (
            "MAIL FROM:<@a.example:user@c.example>",
            B,
            P("MAIL FROM:<user@c.example>"),
        ),
        (
            "RCPT TO:<@a.example,b.example:user@c.example>",
            B,
            F(501, "5.1.3"),
        ),
        ("RCPT TO:<@a.example user@c.example>", B, F(501, "5.1.3")),
        ("RCPT TO:<@:user@c.example>", B, F(501, "5.1.3")),
        ("RCPT TO:<@a.example:>", B, F(501, "5.1.3")),
        (
            "RCPT TO:<@a.example:postmaster>",
            B,
            P("RCPT TO:<Postmaster>"),
        ),
    ]);
    let keep = Syntax {
        allow_source_route: true,
        ..Syntax::STRICT
    };
    let line = b"RCPT TO:<@a.example,@b.example:user@c.example>";
    let c = Command::parse(line, &keep).unwrap();
    assert_eq!(c.to_string().as_bytes(), line);
    let Command::Rcpt {
        path: ForwardPath::Path(p),
        ..
    } = c
    else {
        panic!("{c:?}")
    };
    let route: Vec<&str> = p.route.iter().map(|d| d.as_str()).collect();
    assert_eq!(route, ["a.example", "b.example"]);
    assert_eq!(p.mailbox.to_string(), "user@c.example");
    let stripped = Command::parse(line, &Syntax::STRICT).unwrap();
    let Command::Rcpt {
        path: ForwardPath::Path(p),
        ..
    } = stripped
    else {
        panic!()
    };
    assert!(p.route.is_empty());
}

#[test]
fn require_domain_off() {
    let lax = Syntax {
        require_domain: false,
        ..Syntax::STRICT
    };
    let c = Command::parse(b"MAIL FROM:<user>", &lax).unwrap();
    let Command::Mail {
        path: ReversePath::Path(p),
        ..
    } = &c
    else {
        panic!("{c:?}")
    };
    assert_eq!(p.mailbox.domain, None);
    assert_eq!(c.to_string(), "MAIL FROM:<user>");
    let c = Command::parse(b"RCPT TO:<user>", &lax).unwrap();
    assert_eq!(c.to_string(), "RCPT TO:<user>");
    let c = Command::parse(b"RCPT TO:<postmaster>", &lax).unwrap();
    assert_eq!(c.to_string(), "RCPT TO:<Postmaster>");
}

fn addr_error(line: &str) -> AddressError {
    match Command::parse(line.as_bytes(), &Syntax::STRICT) {
        Err(CommandError::Address { error, .. }) => error,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn length_limits_at_the_boundary() {
    // Local part: 64 octets.
    let ok = format!("RCPT TO:<{}@example.org>", "l".repeat(MAX_LOCAL_PART));
    assert!(Command::parse(ok.as_bytes(), &Syntax::STRICT).is_ok());
    let bad = format!("RCPT TO:<{}@example.org>", "l".repeat(MAX_LOCAL_PART + 1));
    assert_eq!(addr_error(&bad), AddressError::LocalPartTooLong { len: 65 });
    // Quoted: the quotes count.
    let ok = format!("RCPT TO:<\"{}\"@example.org>", " ".repeat(62));
    assert!(Command::parse(ok.as_bytes(), &Syntax::STRICT).is_ok());
    let bad = format!("RCPT TO:<\"{}\"@example.org>", " ".repeat(63));
    assert_eq!(addr_error(&bad), AddressError::LocalPartTooLong { len: 65 });

    // Domain: 255 octets, labels 63.
    let label = "d".repeat(63);
    let d255 = [label.as_str(); 4].join(".");
    assert_eq!(d255.len(), MAX_DOMAIN);
    let ok = format!("EHLO {d255}");
    assert!(Command::parse(ok.as_bytes(), &Syntax::STRICT).is_ok());
    let d256 = format!("{label}.{label}.{label}.{}.d", "d".repeat(62));
    assert_eq!(d256.len(), 256);
    let e = Command::parse(format!("EHLO {d256}").as_bytes(), &Syntax::STRICT).unwrap_err();
    assert_eq!(
        e,
        CommandError::Syntax {
            verb: Verb::Ehlo,
            problem: SyntaxProblem::InvalidHostname
        }
    );
    assert_eq!(
        smx_proto::Domain::parse(&d256),
        Err(AddressError::DomainTooLong { len: 256 })
    );
    assert_eq!(
        smx_proto::Domain::parse(&"d".repeat(64)),
        Err(AddressError::LabelTooLong { len: 64 })
    );
    assert!(smx_proto::Domain::parse(&"d".repeat(63)).is_ok());

    // Path: 256 octets including the brackets: 64 + 1 + 189 + 2 = 256.
    let dom = |n: usize| {
        let mut s = String::new();
        while s.len() + 64 < n {
            s.push_str(&"p".repeat(63));
            s.push('.');
        }
        s.push_str(&"q".repeat(n - s.len()));
        s
    };
    let local = "l".repeat(64);
    let ok = format!("<{local}@{}>", dom(189));
    assert_eq!(ok.len(), MAX_PATH);
    assert!(Command::parse(format!("RCPT TO:{ok}").as_bytes(), &Syntax::STRICT).is_ok());
    let bad = format!("<{local}@{}>", dom(190));
    assert_eq!(
        addr_error(&format!("RCPT TO:{bad}")),
        AddressError::PathTooLong { len: 257 }
    );
    // Without brackets (sloppy) the same limit applies.
    let e = Command::parse(
        format!("RCPT TO:{}", &bad[1..bad.len() - 1]).as_bytes(),
        &Syntax::SLOPPY,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        CommandError::Address {
            error: AddressError::PathTooLong { len: 257 },
            ..
        }
    ));
    // A source route counts towards the path.
    let keep = Syntax {
        allow_source_route: true,
        ..Syntax::STRICT
    };
    let routed = format!("RCPT TO:<@r:{local}@{}>", dom(186));
    assert!(Command::parse(routed.as_bytes(), &keep).is_ok());
    let routed = format!("RCPT TO:<@r:{local}@{}>", dom(187));
    assert!(Command::parse(routed.as_bytes(), &keep).is_err());
}

fn mail_params(line: &str, syntax: &Syntax) -> smx_proto::MailParams {
    match Command::parse(line.as_bytes(), syntax) {
        Ok(Command::Mail { params, .. }) => params,
        other => panic!("{line}: {other:?}"),
    }
}

fn rcpt_params(line: &str) -> smx_proto::RcptParams {
    match Command::parse(line.as_bytes(), &Syntax::STRICT) {
        Ok(Command::Rcpt { params, .. }) => params,
        other => panic!("{line}: {other:?}"),
    }
}

fn param_error(line: &str) -> ParamError {
    match Command::parse(line.as_bytes(), &Syntax::STRICT) {
        Err(CommandError::Param { error, .. }) => error,
        other => panic!("{line}: {other:?}"),
    }
}

#[test]
fn mail_parameters_table() {
    check(&[
        (
            "MAIL FROM:<a@b.c> SIZE=12345",
            B,
            P("MAIL FROM:<a@b.c> SIZE=12345"),
        ),
        (
            "MAIL FROM:<a@b.c> size=007",
            B,
            P("MAIL FROM:<a@b.c> SIZE=7"),
        ),
        (
            "MAIL FROM:<a@b.c> SIZE=18446744073709551615",
            B,
            P("MAIL FROM:<a@b.c> SIZE=18446744073709551615"),
        ),
        // 20 digits beyond u64: valid RFC 1870 syntax, too big (552).
        (
            "MAIL FROM:<a@b.c> SIZE=18446744073709551616",
            B,
            F(552, "5.3.4"),
        ),
        (
            "MAIL FROM:<a@b.c> SIZE=99999999999999999999",
            B,
            F(552, "5.3.4"),
        ),
        // 21 digits: not RFC 1870 syntax.
        (
            "MAIL FROM:<a@b.c> SIZE=000000000000000000001",
            B,
            F(501, "5.5.4"),
        ),
        ("MAIL FROM:<a@b.c> SIZE=-1", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> SIZE=1k", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> SIZE", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> SIZE=", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> SIZE=1 SIZE=2", B, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c> BODY=7BIT",
            B,
            P("MAIL FROM:<a@b.c> BODY=7BIT"),
        ),
        (
            "MAIL FROM:<a@b.c> BODY=8bitmime",
            B,
            P("MAIL FROM:<a@b.c> BODY=8BITMIME"),
        ),
        (
            "MAIL FROM:<a@b.c> BODY=BINARYMIME",
            B,
            P("MAIL FROM:<a@b.c> BODY=BINARYMIME"),
        ),
        ("MAIL FROM:<a@b.c> BODY=9BIT", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> BODY", B, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c> SMTPUTF8",
            B,
            P("MAIL FROM:<a@b.c> SMTPUTF8"),
        ),
        (
            "MAIL FROM:<a@b.c> smtputf8",
            B,
            P("MAIL FROM:<a@b.c> SMTPUTF8"),
        ),
        ("MAIL FROM:<a@b.c> SMTPUTF8=yes", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> SMTPUTF8 SMTPUTF8", B, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c> RET=FULL",
            B,
            P("MAIL FROM:<a@b.c> RET=FULL"),
        ),
        (
            "MAIL FROM:<a@b.c> ret=hdrs",
            B,
            P("MAIL FROM:<a@b.c> RET=HDRS"),
        ),
        ("MAIL FROM:<a@b.c> RET=ALL", B, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c> ENVID=QQ314159",
            B,
            P("MAIL FROM:<a@b.c> ENVID=QQ314159"),
        ),
        (
            "MAIL FROM:<a@b.c> ENVID=a+2Bb+3Dc",
            B,
            P("MAIL FROM:<a@b.c> ENVID=a+2Bb+3Dc"),
        ),
        (
            "MAIL FROM:<a@b.c> ENVID=+41",
            B,
            P("MAIL FROM:<a@b.c> ENVID=A"),
        ),
        ("MAIL FROM:<a@b.c> ENVID=a+2bb", S, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c> ENVID=a+2bb",
            L,
            P("MAIL FROM:<a@b.c> ENVID=a+2Bb"),
        ),
        ("MAIL FROM:<a@b.c> ENVID=a+0D+0AX", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> ENVID=a+", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> ENVID=a=b", B, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c> AUTH=<>",
            B,
            P("MAIL FROM:<a@b.c> AUTH=<>"),
        ),
        (
            "MAIL FROM:<a@b.c> AUTH=e+2Bf@example.org",
            B,
            P("MAIL FROM:<a@b.c> AUTH=e+2Bf@example.org"),
        ),
        ("MAIL FROM:<a@b.c> AUTH", B, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c> BY=120;R",
            B,
            P("MAIL FROM:<a@b.c> BY=120;R"),
        ),
        (
            "MAIL FROM:<a@b.c> BY=+120;n",
            B,
            P("MAIL FROM:<a@b.c> BY=120;N"),
        ),
        (
            "MAIL FROM:<a@b.c> BY=-5;NT",
            B,
            P("MAIL FROM:<a@b.c> BY=-5;NT"),
        ),
        (
            "MAIL FROM:<a@b.c> BY=999999999;RT",
            B,
            P("MAIL FROM:<a@b.c> BY=999999999;RT"),
        ),
        ("MAIL FROM:<a@b.c> BY=1000000000;R", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> BY=120", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> BY=120;X", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> BY=120;TR", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> BY=;R", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> XVERP", B, P("MAIL FROM:<a@b.c> XVERP")),
        (
            "MAIL FROM:<a@b.c> XVERP=+=",
            B,
            P("MAIL FROM:<a@b.c> XVERP=+="),
        ),
        (
            "MAIL FROM:<a@b.c> xverp=-=",
            B,
            P("MAIL FROM:<a@b.c> XVERP=-="),
        ),
        ("MAIL FROM:<a@b.c> XVERP=+", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> XVERP=+=+", B, F(501, "5.5.4")),
        // Unknown parameters: 555 (RFC 5321 4.1.1.11).
        ("MAIL FROM:<a@b.c> FOO=bar", B, F(555, "5.5.4")),
        ("MAIL FROM:<a@b.c> FOO", B, F(555, "5.5.4")),
        ("MAIL FROM:<a@b.c> NOTIFY=NEVER", B, F(555, "5.5.4")),
        // Malformed keywords.
        ("MAIL FROM:<a@b.c> -X=1", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> =1", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> SIZE=1\tBODY=7BIT", S, F(501, "5.5.4")),
        (
            "MAIL FROM:<a@b.c> SIZE=1\tBODY=7BIT",
            L,
            P("MAIL FROM:<a@b.c> SIZE=1 BODY=7BIT"),
        ),
        (
            "MAIL FROM:<a@b.c> prdr xverp BY=5;R AUTH=<> ENVID=x RET=HDRS SMTPUTF8 BODY=8BITMIME SIZE=5",
            B,
            P(
                "MAIL FROM:<a@b.c> SIZE=5 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x AUTH=<> BY=5;R XVERP PRDR",
            ),
        ),
        ("MAIL FROM:<a@b.c> PRDR=1", B, F(501, "5.5.4")),
        ("MAIL FROM:<a@b.c> PRDR PRDR", B, F(501, "5.5.4")),
    ]);
}

#[test]
fn mail_parameter_values() {
    let p = mail_params(
        "MAIL FROM:<a@b.c> SIZE=1000 BODY=BINARYMIME SMTPUTF8",
        &Syntax::STRICT,
    );
    assert_eq!(p.size, Some(1000));
    assert_eq!(p.body, Some(Body::BinaryMime));
    assert!(p.smtputf8);
    let p = mail_params("MAIL FROM:<> RET=HDRS ENVID=QQ+2B314159", &Syntax::STRICT);
    assert_eq!(p.ret, Some(Ret::Hdrs));
    assert_eq!(p.envid.as_deref(), Some("QQ+314159"));
    let p = mail_params("MAIL FROM:<> BY=120;R", &Syntax::STRICT);
    assert_eq!(
        p.by,
        Some(DeliverBy {
            seconds: 120,
            mode: ByMode::Return,
            trace: false
        })
    );
    let p = mail_params("MAIL FROM:<> AUTH=<>", &Syntax::STRICT);
    assert_eq!(p.auth, Some(AuthParam::Unknown));
    let p = mail_params("MAIL FROM:<> AUTH=e+2Bf@example.org", &Syntax::STRICT);
    assert_eq!(p.auth, Some(AuthParam::Mailbox("e+f@example.org".into())));
    let p = mail_params("MAIL FROM:<> XVERP=+=", &Syntax::STRICT);
    assert_eq!(
        p.xverp,
        Some(Xverp {
            delimiters: Some(*b"+=")
        })
    );
    assert!(mail_params("MAIL FROM:<>", &Syntax::STRICT).is_empty());

    assert_eq!(
        param_error("MAIL FROM:<a@b.c> SIZE=18446744073709551616"),
        ParamError::SizeOverflow
    );
    assert_eq!(
        param_error("MAIL FROM:<a@b.c> SIZE=1 size=2"),
        ParamError::Duplicate { keyword: "SIZE" }
    );
    assert_eq!(
        param_error("MAIL FROM:<a@b.c> X-FOO=1"),
        ParamError::Unknown {
            keyword: "X-FOO".into()
        }
    );
    // ENVID: at most 100 characters as written.
    let ok = format!("MAIL FROM:<a@b.c> ENVID={}", "e".repeat(100));
    assert!(Command::parse(ok.as_bytes(), &Syntax::STRICT).is_ok());
    let bad = format!("MAIL FROM:<a@b.c> ENVID={}", "e".repeat(101));
    assert!(matches!(
        param_error(&bad),
        ParamError::Invalid {
            keyword: "ENVID",
            ..
        }
    ));
}

#[test]
fn rcpt_parameters_table() {
    check(&[
        (
            "RCPT TO:<a@b.c> NOTIFY=NEVER",
            B,
            P("RCPT TO:<a@b.c> NOTIFY=NEVER"),
        ),
        (
            "RCPT TO:<a@b.c> notify=never",
            B,
            P("RCPT TO:<a@b.c> NOTIFY=NEVER"),
        ),
        (
            "RCPT TO:<a@b.c> NOTIFY=SUCCESS",
            B,
            P("RCPT TO:<a@b.c> NOTIFY=SUCCESS"),
        ),
        (
            "RCPT TO:<a@b.c> NOTIFY=DELAY,failure,SUCCESS",
            B,
            P("RCPT TO:<a@b.c> NOTIFY=SUCCESS,FAILURE,DELAY"),
        ),
        ("RCPT TO:<a@b.c> NOTIFY=NEVER,SUCCESS", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> NOTIFY=SUCCESS,NEVER", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> NOTIFY=SUCCESS,SUCCESS", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> NOTIFY=SUCCESS,", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> NOTIFY=ALWAYS", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> NOTIFY", B, F(501, "5.5.4")),
        (
            "RCPT TO:<a@b.c> NOTIFY=NEVER NOTIFY=NEVER",
            B,
            F(501, "5.5.4"),
        ),
        (
            "RCPT TO:<a@b.c> ORCPT=rfc822;a+2Bb@c",
            B,
            P("RCPT TO:<a@b.c> ORCPT=rfc822;a+2Bb@c"),
        ),
        (
            "RCPT TO:<a@b.c> ORCPT=RFC822;a@c",
            B,
            P("RCPT TO:<a@b.c> ORCPT=RFC822;a@c"),
        ),
        (
            "RCPT TO:<a@b.c> ORCPT=utf-8;jörg@c",
            B,
            P("RCPT TO:<a@b.c> ORCPT=utf-8;jörg@c"),
        ),
        ("RCPT TO:<a@b.c> ORCPT=rfc822;jörg@c", B, F(501, "5.5.4")),
        (
            "RCPT TO:<a@b.c> ORCPT=rfc822;j+C3+B6rg@c",
            B,
            P("RCPT TO:<a@b.c> ORCPT=rfc822;j+C3+B6rg@c"),
        ),
        ("RCPT TO:<a@b.c> ORCPT=rfc822", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> ORCPT=rfc822;", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> ORCPT=;a@b", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> ORCPT=rfc(822);a@b", B, F(501, "5.5.4")),
        ("RCPT TO:<a@b.c> ORCPT=rfc822;a+0Ab", B, F(501, "5.5.4")),
        (
            "RCPT TO:<a@b.c> ORCPT=rfc822;a@b ORCPT=rfc822;a@b",
            B,
            F(501, "5.5.4"),
        ),
        (
            "RCPT TO:<a@b.c> ORCPT=rfc822;x@y NOTIFY=FAILURE,DELAY",
            B,
            P("RCPT TO:<a@b.c> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@y"),
        ),
        ("RCPT TO:<a@b.c> SIZE=10", B, F(555, "5.5.4")),
        ("RCPT TO:<a@b.c> BODY=8BITMIME", B, F(555, "5.5.4")),
        ("RCPT TO:<a@b.c> FOO", B, F(555, "5.5.4")),
    ]);
}

#[test]
fn rcpt_parameter_values() {
    let p = rcpt_params("RCPT TO:<a@b.c> ORCPT=rfc822;a+2Bb@c");
    assert_eq!(
        p.orcpt,
        Some(Orcpt {
            addr_type: "rfc822".into(),
            address: "a+b@c".into()
        })
    );
    let p = rcpt_params("RCPT TO:<a@b.c> ORCPT=UTF-8;j\\x{F6}rg@c");
    let o = p.orcpt.unwrap();
    assert_eq!(o.addr_type, "UTF-8");
    assert!(o.is_utf8_type());
    assert_eq!(o.address, "j\\x{F6}rg@c");
    let p = rcpt_params("RCPT TO:<a@b.c> NOTIFY=NEVER");
    assert_eq!(p.notify, Some(Notify::Never));
    let p = rcpt_params("RCPT TO:<a@b.c> NOTIFY=FAILURE");
    assert_eq!(
        p.notify,
        Some(Notify::On {
            success: false,
            failure: true,
            delay: false
        })
    );
    assert!(matches!(
        param_error("RCPT TO:<a@b.c> NOTIFY=NEVER,SUCCESS"),
        ParamError::Invalid {
            keyword: "NOTIFY",
            ..
        }
    ));
    assert_eq!(
        param_error("RCPT TO:<a@b.c> NOTIFY=NEVER notify=NEVER"),
        ParamError::Duplicate { keyword: "NOTIFY" }
    );
    // ORCPT: at most 500 characters as written.
    let ok = format!("RCPT TO:<a@b.c> ORCPT=rfc822;{}", "o".repeat(493));
    assert!(Command::parse(ok.as_bytes(), &Syntax::STRICT).is_ok());
    let bad = format!("RCPT TO:<a@b.c> ORCPT=rfc822;{}", "o".repeat(494));
    assert!(matches!(
        param_error(&bad),
        ParamError::Invalid {
            keyword: "ORCPT",
            ..
        }
    ));
}

#[test]
fn bdat() {
    check(&[
        ("BDAT 1000", B, P("BDAT 1000")),
        ("bdat 0 last", B, P("BDAT 0 LAST")),
        (
            "BDAT 18446744073709551615 LAST",
            B,
            P("BDAT 18446744073709551615 LAST"),
        ),
        ("BDAT 18446744073709551616", B, F(501, "5.5.4")),
        ("BDAT", B, F(501, "5.5.4")),
        ("BDAT -1", B, F(501, "5.5.4")),
        ("BDAT +1", B, F(501, "5.5.4")),
        ("BDAT 1 FIRST", B, F(501, "5.5.4")),
        ("BDAT 1 LAST x", B, F(501, "5.5.4")),
        ("BDAT  1", S, F(501, "5.5.4")),
        ("BDAT  1  LAST ", L, P("BDAT 1 LAST")),
    ]);
    assert_eq!(
        Command::parse(b"BDAT 42 LAST", &Syntax::STRICT).unwrap(),
        Command::Bdat {
            size: 42,
            last: true
        }
    );
}

#[test]
fn auth() {
    check(&[
        ("AUTH PLAIN", B, P("AUTH PLAIN")),
        ("auth plain AGFAYg==", B, P("AUTH PLAIN AGFAYg==")),
        ("AUTH PLAIN =", B, P("AUTH PLAIN =")),
        ("AUTH CRAM-MD5", B, P("AUTH CRAM-MD5")),
        ("AUTH SCRAM-SHA-256", B, P("AUTH SCRAM-SHA-256")),
        ("AUTH X_Y", B, P("AUTH X_Y")),
        ("AUTH", B, F(501, "5.5.4")),
        ("AUTH PL/AIN", B, F(501, "5.5.4")),
        ("AUTH ABCDEFGHIJKLMNOPQRSTU", B, F(501, "5.5.4")),
        ("AUTH PLAIN AGFAYg=", B, F(501, "5.5.4")),
        ("AUTH PLAIN AG=AYg==", B, F(501, "5.5.4")),
        ("AUTH PLAIN a===", B, F(501, "5.5.4")),
        ("AUTH PLAIN AGFAYg== extra", B, F(501, "5.5.4")),
    ]);
    assert_eq!(
        Command::parse(b"AUTH plain =", &Syntax::STRICT).unwrap(),
        Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some("=".into())
        }
    );
}

#[test]
fn error_replies_and_verbs() {
    let e = Command::parse(b"FOO bar", &Syntax::STRICT).unwrap_err();
    assert_eq!(e, CommandError::Unrecognized { verb: "FOO".into() });
    assert_eq!(e.verb(), None);
    assert_eq!(
        e.reply().to_bytes(),
        b"500 5.5.1 command unrecognized: FOO\r\n"
    );
    let e = Command::parse(b"MAIL FROM: <a@b.c>", &Syntax::STRICT).unwrap_err();
    assert_eq!(
        e,
        CommandError::Syntax {
            verb: Verb::Mail,
            problem: SyntaxProblem::WhiteSpace
        }
    );
    assert_eq!(
        e.reply().to_bytes(),
        b"501 5.5.4 syntax error (misplaced white space); syntax: MAIL FROM:<address> [parameters]\r\n"
    );
    let e = Command::parse(b"MAIL FROM:a@b.c", &Syntax::STRICT).unwrap_err();
    assert_eq!(
        e,
        CommandError::Address {
            verb: Verb::Mail,
            error: AddressError::MissingAngleBrackets
        }
    );
    assert_eq!(
        e.reply().to_bytes(),
        b"501 5.1.7 bad sender address: angle brackets required around the address\r\n"
    );
    let e = Command::parse(b"RCPT TO:<a@b.c> FOO=1", &Syntax::STRICT).unwrap_err();
    assert_eq!(e.verb(), Some(Verb::Rcpt));
    assert_eq!(
        e.reply().to_bytes(),
        b"555 5.5.4 parameter FOO not recognized\r\n"
    );
    // A very long unknown verb is shortened in the error.
    let long = "X".repeat(100);
    let Err(CommandError::Unrecognized { verb }) = Command::parse(long.as_bytes(), &Syntax::STRICT)
    else {
        panic!()
    };
    assert_eq!(verb.len(), 32);
}

#[test]
fn typed_values() {
    let c = Command::parse(b"MAIL FROM:<\"a b\"@[IPv6:2001:db8::1]>", &Syntax::STRICT).unwrap();
    let Command::Mail {
        path: ReversePath::Path(p),
        ..
    } = c
    else {
        panic!()
    };
    assert_eq!(p.mailbox.local.value(), "a b");
    assert!(p.mailbox.local.needs_quotes());
    assert_eq!(
        p.mailbox.domain,
        Some(Host::Literal("2001:db8::1".parse().unwrap()))
    );
    assert_eq!(Command::Noop(None).verb(), Verb::Noop);
    assert_eq!(Command::Data.to_line(), "DATA\r\n");
}

#[test]
fn rendering_never_injects_lines() {
    let cmds = [
        Command::Vrfy("a\r\nRSET".into()),
        Command::Noop(Some("\nQUIT".into())),
        Command::Etrn("x\ry".into()),
        Command::Ehlo(HeloName::Other("a\r\nMAIL FROM:<>".into())),
        Command::Auth {
            mechanism: "PLAIN\r\n".into(),
            initial: Some("\n".into()),
        },
    ];
    for c in cmds {
        let line = c.to_line();
        assert_eq!(line.matches(['\r', '\n']).count(), 2, "{line:?}");
        assert!(line.ends_with("\r\n"));
    }
}
