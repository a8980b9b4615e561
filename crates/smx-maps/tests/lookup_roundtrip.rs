//! makemap, then lookups in the order of seed 3.12.1: the key that
//! matches is the most specific one present in the map.

use smx_conf::model::qmgr::LookupFlags;
use smx_maps::keys::{address_keys, domain_keys, ip_keys, with_tag};
use smx_maps::{CdbMap, Hit, Map, lookup_first, makemap};

const ACCESS: &str = "\
# access map
To:User+Special@Example.COM   ok-exact
to:user++@example.com         ok-any-detail
to:list*@example.com          ok-list
to:@.example.com              ok-subdomains
cltaddr:192.0.2               relay-net
cltaddr:2001:db8              relay-v6
";

/// (local part, domain, expected (key, value)).
type Case = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

#[test]
fn access_map_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("access.cdb");
    makemap::build(ACCESS.as_bytes(), None, &out).expect("build");
    let map = CdbMap::open(&out).expect("open");
    let flags = LookupFlags::default();
    let cases: &[Case] = &[
        (
            "User+Special",
            "example.com",
            Some(("to:user+special@example.com", "ok-exact")),
        ),
        (
            "user+other",
            "EXAMPLE.com",
            Some(("to:user++@example.com", "ok-any-detail")),
        ),
        ("user", "example.com", None),
        (
            "list",
            "example.com",
            Some(("to:list*@example.com", "ok-list")),
        ),
        (
            "list+x",
            "example.com",
            Some(("to:list*@example.com", "ok-list")),
        ),
        ("listx", "example.com", None),
        (
            "anyone",
            "mx.sub.example.com",
            Some(("to:@.example.com", "ok-subdomains")),
        ),
    ];
    for (local, domain, want) in cases {
        let keys = with_tag("to", &address_keys(local, domain, "+", &flags, false));
        let got = lookup_first(&map, &keys).expect("no error");
        let want = want.map(|(k, v)| Hit {
            key: k.into(),
            value: v.into(),
        });
        assert_eq!(got, want, "{local}@{domain}");
    }
    for (ip, want) in [
        ("192.0.2.55", Some("relay-net")),
        ("192.0.3.1", None),
        ("2001:db8::5", Some("relay-v6")),
    ] {
        let keys = with_tag("cltaddr", &ip_keys(ip.parse().expect("ip")));
        let got = lookup_first(&map, &keys).expect("no error");
        assert_eq!(got.map(|h| h.value).as_deref(), want, "{ip}");
    }
    // Keys are exact: "example.com" itself is not a subdomain entry.
    assert_eq!(map.lookup("to:@example.com").expect("ok"), None);
    let keys = domain_keys("Example.COM", &flags);
    assert_eq!(keys, ["example.com", ".com", "."]);
}
