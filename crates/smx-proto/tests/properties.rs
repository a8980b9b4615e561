//! Property tests: commands built from generated valid parts render and
//! parse back equal; no parser panics on arbitrary bytes; the DATA decoder
//! undoes dot-stuffing for any content and any split of the input; xtext,
//! replies and BDAT chunks round-trip.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use smx_proto::xtext;
use smx_proto::{
    AuthParam, BareLineEnds, BdatChunk, BdatProgress, Body, ByMode, Command, DataDecoder,
    DataEncoder, DataOptions, DataProgress, DeliverBy, Domain, EnhancedCode, ForwardPath, HeloName,
    Host, LocalPart, MailParams, Mailbox, Notify, Orcpt, Path, RcptParams, Reply, ReplyLimits,
    ReplyParser, ReplyProgress, Ret, ReversePath, Syntax, Xverp, frame_line,
};

// ---------------------------------------------------------------------------
// Generators

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?",
        Just("bücher".to_owned()),
        Just("παράδειγμα".to_owned()),
    ]
}

fn domain() -> impl Strategy<Value = Domain> {
    prop::collection::vec(label(), 1..4)
        .prop_map(|ls| Domain::parse(&ls.join(".")).expect("generated domain is valid"))
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        // Many zeros, to exercise "::" and IPv4-mapped forms.
        (any::<u16>(), any::<u32>()).prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(
            0,
            0,
            0,
            0,
            0,
            a,
            (b >> 16) as u16,
            b as u16
        ))),
    ]
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![3 => domain().prop_map(Host::Domain), 1 => ip().prop_map(Host::Literal)]
}

fn local_part() -> impl Strategy<Value = LocalPart> {
    prop_oneof![
        // Dot-strings.
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}){0,2}",
        // Anything printable: quoted when needed.
        "[ -~]{0,30}",
        // UTF-8.
        "[a-zé ]{1,10}",
    ]
    .prop_map(|v| LocalPart::new(&v).expect("generated local part is valid"))
}

fn mailbox() -> impl Strategy<Value = Mailbox> {
    (local_part(), host()).prop_map(|(local, d)| Mailbox {
        local,
        domain: Some(d),
    })
}

fn path(keep_route: bool) -> impl Strategy<Value = Path> {
    let route = if keep_route {
        prop::collection::vec(domain(), 0..3).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (route, mailbox()).prop_map(|(route, mailbox)| Path { route, mailbox })
}

/// Printable text without control characters (tab allowed inside), not
/// starting or ending with white space.
fn text() -> impl Strategy<Value = String> {
    "[!-~é]([ -~\\té]{0,30}[!-~é])?"
}

/// Text that decodes from xtext to something acceptable: no controls.
fn xtext_value(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('é'),
            Just('+'),
            Just('='),
            Just(' '),
            any::<char>().prop_filter("printable ASCII", |c| (' '..='~').contains(c))
        ],
        1..max,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn mail_params() -> impl Strategy<Value = MailParams> {
    (
        prop::option::of(any::<u64>()),
        prop::option::of(prop_oneof![
            Just(Body::SevenBit),
            Just(Body::EightBitMime),
            Just(Body::BinaryMime)
        ]),
        any::<bool>(),
        prop::option::of(prop_oneof![Just(Ret::Full), Just(Ret::Hdrs)]),
        prop::option::of(xtext_value(16)),
        prop::option::of(prop_oneof![
            Just(AuthParam::Unknown),
            xtext_value(30)
                .prop_filter("not <>", |s| s != "<>")
                .prop_map(AuthParam::Mailbox)
        ]),
        prop::option::of(
            (-999_999_999i32..=999_999_999, any::<bool>(), any::<bool>()).prop_map(
                |(seconds, r, trace)| DeliverBy {
                    seconds,
                    mode: if r { ByMode::Return } else { ByMode::Notify },
                    trace,
                },
            ),
        ),
        prop::option::of(
            prop::option::of((33u8..=126, 33u8..=126).prop_map(|(a, b)| [a, b]))
                .prop_map(|delimiters| Xverp { delimiters }),
        ),
        any::<bool>(),
    )
        .prop_map(
            |(size, body, smtputf8, ret, envid, auth, by, xverp, prdr)| MailParams {
                size,
                body,
                smtputf8,
                ret,
                envid,
                auth,
                by,
                xverp,
                prdr,
            },
        )
}

fn rcpt_params() -> impl Strategy<Value = RcptParams> {
    let notify = prop_oneof![
        Just(Notify::Never),
        (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_filter("one event", |(a, b, c)| *a || *b || *c)
            .prop_map(|(success, failure, delay)| Notify::On {
                success,
                failure,
                delay
            }),
    ];
    let orcpt = (
        prop_oneof![
            Just("rfc822"),
            Just("RFC822"),
            Just("utf-8"),
            Just("x-local")
        ],
        xtext_value(60),
    )
        .prop_map(|(t, address)| Orcpt {
            addr_type: t.to_owned(),
            address,
        });
    (prop::option::of(notify), prop::option::of(orcpt))
        .prop_map(|(notify, orcpt)| RcptParams { notify, orcpt })
}

fn helo_name(sloppy: bool) -> impl Strategy<Value = HeloName> {
    let mut options = vec![
        domain().prop_map(HeloName::Domain).boxed(),
        ip().prop_map(HeloName::Literal).boxed(),
    ];
    if sloppy {
        options.push("[a-z]{1,5}_[!-~]{0,10}".prop_map(HeloName::Other).boxed());
    }
    prop::strategy::Union::new(options)
}

fn command(sloppy: bool, keep_route: bool) -> impl Strategy<Value = Command> {
    let base64 = "([A-Za-z0-9+/]{4}){1,4}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?";
    prop_oneof![
        helo_name(sloppy).prop_map(Command::Helo),
        helo_name(sloppy).prop_map(Command::Ehlo),
        (
            prop_oneof![
                1 => Just(ReversePath::Null),
                4 => path(keep_route).prop_map(ReversePath::Path)
            ],
            mail_params()
        )
            .prop_map(|(path, params)| Command::Mail { path, params }),
        (
            prop_oneof![
                1 => Just(ForwardPath::Postmaster),
                4 => path(keep_route).prop_map(ForwardPath::Path)
            ],
            rcpt_params()
        )
            .prop_map(|(path, params)| Command::Rcpt { path, params }),
        Just(Command::Data),
        (any::<u64>(), any::<bool>()).prop_map(|(size, last)| Command::Bdat { size, last }),
        Just(Command::Rset),
        prop::option::of(text()).prop_map(Command::Noop),
        Just(Command::Quit),
        text().prop_map(Command::Vrfy),
        text().prop_map(Command::Expn),
        prop::option::of(text()).prop_map(Command::Help),
        Just(Command::StartTls),
        (
            "[A-Z0-9_-]{1,20}",
            prop::option::of(prop_oneof![Just("=".to_owned()), base64.prop_map(|s| s)])
        )
            .prop_map(|(mechanism, initial)| Command::Auth { mechanism, initial }),
        "[@#]?[!-~]{1,20}"
            .prop_filter("not a bare prefix", |s| s != "@" && s != "#")
            .prop_map(Command::Etrn),
    ]
}

// ---------------------------------------------------------------------------
// Oracles

/// Dot-stuffing written independently of `DataEncoder`.
fn stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at_start = true;
    for (i, &b) in content.iter().enumerate() {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n' && i > 0 && content[i - 1] == b'\r';
    }
    out
}

/// Content, and (bytes used, result) if the end was seen.
type Decoded = (Vec<u8>, Option<(usize, Result<u64, smx_proto::DataError>)>);

/// Feeds `input` to a decoder in pieces cut at `cuts` (sorted, deduped);
/// returns the content and the total of bytes used, or `None` if the end
/// was not seen.
fn decode_split(input: &[u8], cuts: &[usize], opts: DataOptions) -> Decoded {
    let mut d = DataDecoder::new(opts);
    let mut out = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|c| *c < input.len()).collect();
    bounds.push(input.len());
    for end in bounds {
        if end < start {
            continue;
        }
        let piece = &input[start..end];
        match d.decode(piece, &mut out) {
            DataProgress::Incomplete => {}
            DataProgress::Done { consumed, result } => {
                assert!(consumed <= piece.len());
                assert_eq!(d.consumed(), (start + consumed) as u64);
                return (out, Some((start + consumed, result)));
            }
        }
        start = end;
    }
    (out, None)
}

fn lines_without_bare_ends() -> impl Strategy<Value = Vec<u8>> {
    let line = prop::collection::vec(
        prop_oneof![
            4 => any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
            2 => Just(b'.'),
        ],
        0..20,
    );
    (prop::collection::vec(line, 0..12), any::<bool>()).prop_map(|(lines, partial_last)| {
        let mut c = Vec::new();
        let n = lines.len();
        for (i, l) in lines.into_iter().enumerate() {
            c.extend_from_slice(&l);
            if i + 1 < n || !partial_last {
                c.extend_from_slice(b"\r\n");
            }
        }
        c
    })
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn strict_command_round_trip(cmd in command(false, false)) {
        let line = cmd.to_string();
        let back = Command::parse(line.as_bytes(), &Syntax::STRICT);
        prop_assert_eq!(back.as_ref(), Ok(&cmd), "line {:?}", line);
        // The sloppy parser accepts the strict form too.
        let back = Command::parse(line.as_bytes(), &Syntax::SLOPPY);
        prop_assert_eq!(back.as_ref(), Ok(&cmd), "sloppy, line {:?}", line);
        // And the framing passes it.
        let wire = cmd.to_line();
        let syntax = Syntax { max_line: 8192, ..Syntax::STRICT };
        let framed = frame_line(wire.as_bytes(), &syntax);
        prop_assert!(
            matches!(framed, Ok(smx_proto::Frame::Line { line: l, len }) if l == line.as_bytes() && len == wire.len()),
            "framing {:?}", framed
        );
    }

    #[test]
    fn sloppy_command_round_trip(cmd in command(true, false)) {
        let line = cmd.to_string();
        let back = Command::parse(line.as_bytes(), &Syntax::SLOPPY);
        prop_assert_eq!(back.as_ref(), Ok(&cmd), "line {:?}", line);
    }

    #[test]
    fn source_route_round_trip(cmd in command(false, true)) {
        let keep = Syntax { allow_source_route: true, ..Syntax::STRICT };
        let line = cmd.to_string();
        let back = Command::parse(line.as_bytes(), &keep);
        prop_assert_eq!(back.as_ref(), Ok(&cmd), "line {:?}", line);
    }

    #[test]
    fn parsed_commands_round_trip(
        line in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            "(MAIL FROM|RCPT TO|mail from|rcpt to) ?: ?<?[\"@a-z.,:\\\\ \\[\\]0-9]{0,30}>?( [A-Za-z=;+0-9,<>-]{0,20}){0,3}"
                .prop_map(String::into_bytes),
        ],
        strict in any::<bool>(),
        keep in any::<bool>(),
        require in any::<bool>(),
    ) {
        let syntax = Syntax {
            strict,
            allow_source_route: keep,
            require_domain: require,
            ..Syntax::STRICT
        };
        if let Ok(cmd) = Command::parse(&line, &syntax) {
            let rendered = cmd.to_string();
            let back = Command::parse(rendered.as_bytes(), &syntax);
            prop_assert_eq!(back.as_ref(), Ok(&cmd), "rendered {:?}", rendered);
        }
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        for syntax in [Syntax::STRICT, Syntax::SLOPPY] {
            let _ = Command::parse(&bytes, &syntax);
            let _ = frame_line(&bytes, &syntax);
        }
        let _ = ReplyParser::default().parse(&bytes);
        let mut d = DataDecoder::new(DataOptions::default());
        let mut out = Vec::new();
        if let DataProgress::Done { consumed, .. } = d.decode(&bytes, &mut out) {
            prop_assert!(consumed <= bytes.len());
        }
        let s = String::from_utf8_lossy(&bytes);
        let _ = Domain::parse(&s);
        let _ = LocalPart::parse(&s);
        let _ = Host::parse(&s);
        let _ = ReversePath::parse(&s, &Syntax::SLOPPY);
        let _ = ForwardPath::parse(&s, &Syntax::SLOPPY);
        let _ = xtext::decode(&s);
        let _ = EnhancedCode::parse(&s);
        let _ = MailParams::parse(s.split(' '), true);
        let _ = RcptParams::parse(s.split(' '), true);
    }

    #[test]
    fn data_decoder_undoes_stuffing(
        content in lines_without_bare_ends(),
        mut cuts in prop::collection::vec(0usize..400, 0..8),
        pipelined in prop_oneof![Just(&b""[..]), Just(&b"MAIL FROM:<x@y>\r\n"[..]), Just(&b".\r\n"[..])],
    ) {
        cuts.sort_unstable();
        cuts.dedup();
        let mut wire = stuff(&content);
        wire.extend_from_slice(b"\r\n.\r\n");
        let message_len = wire.len();
        wire.extend_from_slice(pipelined);
        let (out, done) = decode_split(&wire, &cuts, DataOptions::default());
        let mut want = content.clone();
        want.extend_from_slice(b"\r\n");
        prop_assert_eq!(&out, &want);
        prop_assert_eq!(done, Some((message_len, Ok(want.len() as u64))));
    }

    #[test]
    fn data_encoder_and_decoder_agree(
        content in lines_without_bare_ends(),
        mut cuts in prop::collection::vec(0usize..400, 0..8),
    ) {
        cuts.sort_unstable();
        cuts.dedup();
        // Encode in pieces too.
        let mut wire = Vec::new();
        let mut e = DataEncoder::new();
        let mut start = 0;
        for &c in cuts.iter().filter(|c| **c < content.len()) {
            e.encode(&content[start..c], &mut wire);
            start = c;
        }
        e.encode(&content[start..], &mut wire);
        e.finish(&mut wire);
        prop_assert_eq!(&wire, &DataEncoder::stuff(&content));
        let (out, done) = decode_split(&wire, &cuts, DataOptions::default());
        let mut want = content.clone();
        if !(want.is_empty() || want.ends_with(b"\r\n")) {
            want.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(&out, &want);
        prop_assert_eq!(done, Some((wire.len(), Ok(want.len() as u64))));
    }

    #[test]
    fn data_decoder_any_bytes_any_split(
        bytes in prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..200),
        mut cuts in prop::collection::vec(0usize..200, 0..8),
        max_size in prop::option::of(0u64..100),
        max_line in prop::option::of(0usize..40),
        keep in any::<bool>(),
    ) {
        cuts.sort_unstable();
        cuts.dedup();
        let opts = DataOptions {
            max_size,
            max_line,
            bare_line_ends: if keep { BareLineEnds::Keep } else { BareLineEnds::Reject },
        };
        // The split must not matter, for the outcome nor the content.
        let whole = decode_split(&bytes, &[], opts);
        let split = decode_split(&bytes, &cuts, opts);
        prop_assert_eq!(&whole, &split);
        // The end is exactly the first CRLF.CRLF (or .CRLF at the start).
        let first_end = if bytes.starts_with(b".\r\n") {
            Some(3)
        } else {
            bytes.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 5)
        };
        prop_assert_eq!(whole.1.map(|(n, _)| n), first_end);
    }

    #[test]
    fn xtext_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..64), s in ".{0,20}") {
        let enc = xtext::encode(&bytes);
        prop_assert!(enc.bytes().all(|b| (33..=126).contains(&b)));
        prop_assert_eq!(xtext::decode(&enc), Ok(bytes));
        let mut enc = String::new();
        xtext::encode_into(s.as_bytes(), true, &mut enc);
        let opts = xtext::DecodeOptions { lowercase_hex: false, utf8: true };
        prop_assert_eq!(xtext::decode_with(&enc, opts), Ok(s.into_bytes()));
    }

    #[test]
    fn reply_round_trip(
        code in (2u16..=5, 0u16..=5, 0u16..=9).prop_map(|(a, b, c)| a * 100 + b * 10 + c),
        enhanced in prop::option::of((0u16..=999, 0u16..=999)),
        lines in prop::collection::vec("([a-zA-Z ][ -~\\té]{0,40})?", 1..6),
        cuts in prop::collection::vec(0usize..300, 0..4),
    ) {
        let class = (code / 100) as u8;
        let enhanced = enhanced.and_then(|(s, d)| EnhancedCode::checked(class, s, d));
        let reply = Reply::multi(code, enhanced, lines);
        let wire = reply.to_bytes();
        let mut p = ReplyParser::default();
        let mut got = None;
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.into_iter().filter(|c| *c < wire.len()).collect();
        bounds.sort_unstable();
        bounds.push(wire.len());
        for end in bounds {
            if end < start { continue; }
            if let ReplyProgress::Complete { reply, consumed } = p.parse(&wire[start..end]).unwrap() {
                prop_assert_eq!(start + consumed, wire.len());
                got = Some(reply);
                break;
            }
            start = end;
        }
        prop_assert_eq!(got, Some(reply));
    }

    #[test]
    fn parsed_replies_round_trip(bytes in prop::collection::vec(
        prop_oneof![Just(b"250-".to_vec()), Just(b"250 ".to_vec()), Just(b"2.1.0 ".to_vec()), Just(b"\r\n".to_vec()),
                    prop::collection::vec(any::<u8>(), 0..6)], 0..12).prop_map(|v| v.concat()))
    {
        let limits = ReplyLimits::default();
        if let Ok(ReplyProgress::Complete { reply, .. }) = ReplyParser::new(limits).parse(&bytes) {
            let wire = reply.to_bytes();
            let again = ReplyParser::new(limits).parse(&wire).unwrap();
            prop_assert_eq!(again, ReplyProgress::Complete { reply, consumed: wire.len() });
        }
    }

    #[test]
    fn bdat_takes_exactly_the_size(
        data in prop::collection::vec(any::<u8>(), 0..200),
        size in 0usize..200,
        mut cuts in prop::collection::vec(0usize..200, 0..6),
    ) {
        cuts.sort_unstable();
        cuts.dedup();
        let size = size.min(data.len());
        let mut chunk = BdatChunk::new(size as u64);
        let mut got = Vec::new();
        let mut start = 0;
        let mut rest_start = None;
        let mut bounds: Vec<usize> = cuts.into_iter().filter(|c| *c < data.len()).collect();
        bounds.push(data.len());
        for end in bounds {
            match chunk.take(&data[start..end]) {
                BdatProgress::Incomplete(d) => got.extend_from_slice(d),
                BdatProgress::Complete(d) => {
                    got.extend_from_slice(d);
                    rest_start = Some(start + d.len());
                    break;
                }
            }
            start = end;
        }
        prop_assert_eq!(&got[..], &data[..size]);
        prop_assert_eq!(rest_start, Some(size));
        prop_assert_eq!(chunk.remaining(), 0);
    }
}
