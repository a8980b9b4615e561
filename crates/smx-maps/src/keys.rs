//! Lookup orders (seed 3.12.1): which keys are tried, in which order.
//!
//! Pure functions, no I/O: each turns a domain, an IP address or an
//! address into the ordered list of keys that [`crate::lookup_first`]
//! tries. Every key is lower-cased (ASCII only, as MeTA1's `tolower` in the
//! C locale; seed 6.5). The `tag:` prefix of the access map is added by
//! [`with_tag`].
//!
//! # Domains
//!
//! `sub2.sub1.tld` → `sub2.sub1.tld`, then with flag `dotsubdomain`
//! `.sub1.tld`, `.tld`, then with flag `dot` `.`. There is no implicit
//! "all subdomains" match: `sub2.sub1.tld` never matches `sub1.tld`. One
//! trailing dot of an absolute name is removed first; an empty domain gives
//! only `.` (with `dot`).
//!
//! # IP addresses
//!
//! `A.B.C.D` → `A.B.C.D`, `A.B.C`, `A.B`, `A`. Our extension for IPv6: the
//! address written as eight uncompressed, lower-case hex groups without
//! leading zeros (`2001:db8:0:0:0:0:0:1`), then shortened by one 16-bit
//! group at a time down to the first group. [`ip_keys`] treats an
//! IPv4-mapped IPv6 address (`::ffff:A.B.C.D`) as the IPv4 address.
//!
//! # Addresses
//!
//! For `user+detail@domain`, where `+` is the delimiter character that
//! occurs *leftmost* in the local part among the `address_delimiter`
//! characters (seed 3.9.2 item 2: with `/_-`, `user-ext_list` uses `-`),
//! and `+detail` may be absent:
//!
//! 1. for each domain key `D` of [Domains](#domains) (same flags):
//!    (a) `user+detail@D` if there is a detail (flag `full_address`);
//!    (b) `user++@D` if the detail is not empty (flag `detail_plus`; the
//!    second `+` is literal, whatever the delimiter);
//!    (c) `user+*@D` if there is a detail, even empty (flag `detail_star`);
//!    (d) `user*@D` (flag `star`);
//!    (e) `user@D` if there is no detail, or with `implicitly_match_detail`;
//!    (f) `@D` (flag `domain`).
//! 2. if the map asks for it (`localpart_step`), the same steps (a)–(e)
//!    without `@D`.
//!
//! An address without a domain has only step 2 (if asked for). With flag
//! `dot` step 1 ends with keys like `user@.` and `@.`, as "." is the last
//! domain key; maps that do not want that leave `dot` off.

use smx_conf::model::qmgr::LookupFlags;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Extra choices for [`address_keys_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressOptions {
    /// Also try the local part alone (step 2).
    pub localpart_step: bool,
    /// `user@D` also matches `user+detail@D` (aliases flag
    /// `implicitly_match_detail`, seed 3.9.2 item 3c).
    pub implicitly_match_detail: bool,
}

/// A local part split at its address delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPart<'a> {
    /// Before the delimiter (all of it if there is none).
    pub user: &'a str,
    /// The delimiter and the detail after it (possibly empty).
    pub detail: Option<(char, &'a str)>,
}

/// Splits `local` at the leftmost character that is one of `delimiters`.
pub fn split_local<'a>(local: &'a str, delimiters: &str) -> LocalPart<'a> {
    match local.char_indices().find(|(_, c)| delimiters.contains(*c)) {
        Some((i, c)) => LocalPart {
            user: &local[..i],
            detail: Some((c, &local[i + c.len_utf8()..])),
        },
        None => LocalPart {
            user: local,
            detail: None,
        },
    }
}

/// The keys for a domain name.
pub fn domain_keys(domain: &str, flags: &LookupFlags) -> Vec<String> {
    let domain = domain.to_ascii_lowercase();
    let domain = domain.strip_suffix('.').unwrap_or(&domain);
    let mut keys = Vec::new();
    if !domain.is_empty() {
        keys.push(domain.to_owned());
        if flags.dotsubdomain {
            keys.extend(
                domain
                    .char_indices()
                    .filter(|(i, c)| *c == '.' && *i > 0)
                    .map(|(i, _)| domain[i..].to_owned()),
            );
        }
    }
    if flags.dot {
        keys.push(".".to_owned());
    }
    keys
}

/// The keys for an IPv4 address: `A.B.C.D`, `A.B.C`, `A.B`, `A`.
pub fn ipv4_keys(addr: Ipv4Addr) -> Vec<String> {
    let o = addr.octets();
    (1..=4)
        .rev()
        .map(|n| {
            o[..n]
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect()
}

/// The keys for an IPv6 address (our extension): eight groups, then
/// seven, … down to one.
pub fn ipv6_keys(addr: Ipv6Addr) -> Vec<String> {
    let g = addr.segments();
    (1..=8)
        .rev()
        .map(|n| {
            g[..n]
                .iter()
                .map(|s| format!("{s:x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

/// The keys for an IP address; IPv4-mapped IPv6 addresses as IPv4.
pub fn ip_keys(addr: IpAddr) -> Vec<String> {
    match addr {
        IpAddr::V4(a) => ipv4_keys(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => ipv4_keys(v4),
            None => ipv6_keys(a),
        },
    }
}

/// The keys for the address `local@domain` (seed 3.12.1), without
/// `implicitly_match_detail`.
pub fn address_keys(
    local: &str,
    domain: &str,
    delimiters: &str,
    flags: &LookupFlags,
    localpart_step: bool,
) -> Vec<String> {
    address_keys_with(
        local,
        domain,
        delimiters,
        flags,
        AddressOptions {
            localpart_step,
            implicitly_match_detail: false,
        },
    )
}

/// The keys for the address `local@domain` (seed 3.12.1); see the module
/// documentation. An empty `domain` means an address without a domain.
pub fn address_keys_with(
    local: &str,
    domain: &str,
    delimiters: &str,
    flags: &LookupFlags,
    opts: AddressOptions,
) -> Vec<String> {
    let local = local.to_ascii_lowercase();
    let lp = split_local(&local, delimiters);
    let locals = local_variants(&lp, flags, opts);
    let mut keys = Vec::new();
    if !domain.is_empty() {
        for d in domain_keys(domain, flags) {
            keys.extend(locals.iter().map(|l| format!("{l}@{d}")));
            if flags.domain {
                keys.push(format!("@{d}"));
            }
        }
    }
    if opts.localpart_step {
        keys.extend(locals);
    }
    keys
}

/// Prefixes every key with `tag:` (the tag lower-cased), as the access map
/// wants (`to:`, `cltaddr:`, ...).
pub fn with_tag(tag: &str, keys: &[String]) -> Vec<String> {
    let tag = tag.to_ascii_lowercase();
    keys.iter().map(|k| format!("{tag}:{k}")).collect()
}

// ---------------------------------------------------------------------------

/// Steps (a)–(e) for one local part, in order.
fn local_variants(lp: &LocalPart<'_>, flags: &LookupFlags, opts: AddressOptions) -> Vec<String> {
    let user = lp.user;
    let mut out = Vec::new();
    if let Some((delim, detail)) = lp.detail {
        if flags.full_address {
            out.push(format!("{user}{delim}{detail}"));
        }
        if flags.detail_plus && !detail.is_empty() {
            out.push(format!("{user}{delim}+"));
        }
        if flags.detail_star {
            out.push(format!("{user}{delim}*"));
        }
    }
    if flags.star {
        out.push(format!("{user}*"));
    }
    if lp.detail.is_none() || opts.implicitly_match_detail {
        out.push(user.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags from the names that are on; all others off.
    fn on(names: &[&str]) -> LookupFlags {
        let mut f = LookupFlags::default();
        for (n, _) in LookupFlags::NAMES {
            assert!(f.set_flag(n, names.contains(n)), "known flag {n}");
        }
        f
    }

    const ALL: &[&str] = &[
        "full_address",
        "detail_plus",
        "detail_star",
        "star",
        "domain",
        "dotsubdomain",
        "dot",
    ];

    #[test]
    fn domain_lookup_order() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "sub2.sub1.tld",
                &["dotsubdomain", "dot"],
                &["sub2.sub1.tld", ".sub1.tld", ".tld", "."],
            ),
            ("sub2.sub1.tld", &[], &["sub2.sub1.tld"]),
            (
                "sub2.sub1.tld",
                &["dotsubdomain"],
                &["sub2.sub1.tld", ".sub1.tld", ".tld"],
            ),
            ("sub2.sub1.tld", &["dot"], &["sub2.sub1.tld", "."]),
            (
                "A.B.Example.COM.",
                &["dotsubdomain"],
                &["a.b.example.com", ".b.example.com", ".example.com", ".com"],
            ),
            ("tld", &["dotsubdomain", "dot"], &["tld", "."]),
            ("", &["dotsubdomain", "dot"], &["."]),
            ("", &["dotsubdomain"], &[]),
        ];
        for (domain, flags, want) in cases {
            let got = domain_keys(domain, &on(flags));
            assert_eq!(got, *want, "domain {domain:?} flags {flags:?}");
        }
    }

    #[test]
    fn ip_lookup_order() {
        let v4: Ipv4Addr = "10.1.2.3".parse().expect("valid");
        assert_eq!(ipv4_keys(v4), ["10.1.2.3", "10.1.2", "10.1", "10"]);
        let v6: Ipv6Addr = "2001:DB8::1".parse().expect("valid");
        assert_eq!(
            ipv6_keys(v6),
            [
                "2001:db8:0:0:0:0:0:1",
                "2001:db8:0:0:0:0:0",
                "2001:db8:0:0:0:0",
                "2001:db8:0:0:0",
                "2001:db8:0:0",
                "2001:db8:0",
                "2001:db8",
                "2001",
            ]
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("valid");
        assert_eq!(ip_keys(mapped), ["192.0.2.7", "192.0.2", "192.0", "192"]);
    }

    #[test]
    fn delimiter_is_the_leftmost_one_found() {
        // Seed 3.9.2 item 2, address_delimiter = "/_-".
        assert_eq!(
            split_local("user/ext-list", "/_-"),
            LocalPart {
                user: "user",
                detail: Some(('/', "ext-list"))
            }
        );
        assert_eq!(
            split_local("user-ext_list", "/_-"),
            LocalPart {
                user: "user",
                detail: Some(('-', "ext_list"))
            }
        );
        assert_eq!(
            split_local("user", "/_-"),
            LocalPart {
                user: "user",
                detail: None
            }
        );
        assert_eq!(
            split_local("user+", "+"),
            LocalPart {
                user: "user",
                detail: Some(('+', ""))
            }
        );
    }

    #[test]
    fn address_with_detail_all_flags() {
        let got = address_keys("User+Detail", "Sub.Dom", "+", &on(ALL), true);
        let want = [
            "user+detail@sub.dom",
            "user++@sub.dom",
            "user+*@sub.dom",
            "user*@sub.dom",
            "@sub.dom",
            "user+detail@.dom",
            "user++@.dom",
            "user+*@.dom",
            "user*@.dom",
            "@.dom",
            "user+detail@.",
            "user++@.",
            "user+*@.",
            "user*@.",
            "@.",
            "user+detail",
            "user++",
            "user+*",
            "user*",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn address_each_flag_alone() {
        // user+detail@sub.dom, one flag at a time, no localpart step.
        let cases: &[(&str, &[&str])] = &[
            ("full_address", &["user+detail@sub.dom"]),
            ("detail_plus", &["user++@sub.dom"]),
            ("detail_star", &["user+*@sub.dom"]),
            ("star", &["user*@sub.dom"]),
            ("domain", &["@sub.dom"]),
            ("dotsubdomain", &[]),
            ("dot", &[]),
        ];
        for (flag, want) in cases {
            let got = address_keys("user+detail", "sub.dom", "+", &on(&[flag]), false);
            assert_eq!(got, *want, "flag {flag}");
        }
        // Without any flag only (e) remains, and it needs no detail.
        assert_eq!(
            address_keys("user", "sub.dom", "+", &on(&[]), true),
            ["user@sub.dom", "user"]
        );
        assert!(address_keys("user+d", "sub.dom", "+", &on(&[]), true).is_empty());
    }

    #[test]
    fn address_every_flag_combination_is_the_subsequence_of_all() {
        // For each of the 128 flag sets the keys are exactly the keys of
        // the all-flags order whose step is enabled, in the same order.
        let full = |f: &LookupFlags, d: &str| address_keys("user+detail", d, "+", f, true);
        for mask in 0u32..128 {
            let names: Vec<&str> = ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            let f = on(&names);
            let mut want = Vec::new();
            let mut domains = vec!["sub.dom".to_string()];
            if f.dotsubdomain {
                domains.push(".dom".into());
            }
            if f.dot {
                domains.push(".".into());
            }
            let mut locals = Vec::new();
            if f.full_address {
                locals.push("user+detail");
            }
            if f.detail_plus {
                locals.push("user++");
            }
            if f.detail_star {
                locals.push("user+*");
            }
            if f.star {
                locals.push("user*");
            }
            for d in &domains {
                want.extend(locals.iter().map(|l| format!("{l}@{d}")));
                if f.domain {
                    want.push(format!("@{d}"));
                }
            }
            want.extend(locals.iter().map(|l| l.to_string()));
            assert_eq!(full(&f, "sub.dom"), want, "flags {names:?}");
        }
    }

    #[test]
    fn address_without_detail() {
        let got = address_keys("user", "sub.dom", "+", &on(ALL), true);
        assert_eq!(
            got,
            [
                "user*@sub.dom",
                "user@sub.dom",
                "@sub.dom",
                "user*@.dom",
                "user@.dom",
                "@.dom",
                "user*@.",
                "user@.",
                "@.",
                "user*",
                "user",
            ]
        );
    }

    #[test]
    fn address_with_empty_detail() {
        // "user+@dom": a detail exists but is empty, so no "user++".
        let f = on(&[
            "full_address",
            "detail_plus",
            "detail_star",
            "star",
            "domain",
        ]);
        assert_eq!(
            address_keys("user+", "dom", "+", &f, true),
            [
                "user+@dom",
                "user+*@dom",
                "user*@dom",
                "@dom",
                "user+",
                "user+*",
                "user*"
            ]
        );
    }

    #[test]
    fn address_with_several_delimiters() {
        let f = on(&[
            "full_address",
            "detail_plus",
            "detail_star",
            "star",
            "domain",
        ]);
        assert_eq!(
            address_keys("user/ext-list", "dom.ain", "/_-", &f, false),
            [
                "user/ext-list@dom.ain",
                "user/+@dom.ain",
                "user/*@dom.ain",
                "user*@dom.ain",
                "@dom.ain",
            ]
        );
        assert_eq!(
            address_keys("user-ext_list", "dom.ain", "/_-", &f, false),
            [
                "user-ext_list@dom.ain",
                "user-+@dom.ain",
                "user-*@dom.ain",
                "user*@dom.ain",
                "@dom.ain",
            ]
        );
    }

    #[test]
    fn implicitly_match_detail_adds_user_at_domain() {
        let f = on(&["full_address", "domain"]);
        let opts = AddressOptions {
            localpart_step: true,
            implicitly_match_detail: true,
        };
        assert_eq!(
            address_keys_with("user+x", "dom", "+", &f, opts),
            ["user+x@dom", "user@dom", "@dom", "user+x", "user"]
        );
    }

    #[test]
    fn localpart_only_address() {
        let f = on(ALL);
        assert_eq!(
            address_keys("Postmaster", "", "+", &f, true),
            ["postmaster*", "postmaster"]
        );
        assert!(address_keys("postmaster", "", "+", &f, false).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_addresses_never_panic_and_give_lower_case_keys(
            local in "\\PC{0,20}",
            domain in "\\PC{0,30}",
            delims in "\\PC{0,4}",
            mask in 0u32..128,
        ) {
            let names: Vec<&str> = ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            let f = on(&names);
            for k in address_keys_with(&local, &domain, &delims, &f, AddressOptions { localpart_step: true, implicitly_match_detail: true }) {
                proptest::prop_assert_eq!(k.to_ascii_lowercase(), k);
            }
            for k in domain_keys(&domain, &f) {
                proptest::prop_assert_eq!(k.to_ascii_lowercase(), k);
            }
        }
    }

    #[test]
    fn tags_are_prefixed() {
        let keys = address_keys("a", "b.c", "+", &on(&["domain"]), false);
        assert_eq!(with_tag("To", &keys), ["to:a@b.c", "to:@b.c"]);
    }
}
