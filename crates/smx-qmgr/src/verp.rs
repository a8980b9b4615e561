//! VERP, variable envelope return paths (seed 3.14): each recipient of a
//! mailing list gets a copy whose envelope sender names the recipient, so
//! a bounce tells the list owner exactly which address failed.
//!
//! VERP is turned on for a transaction by the `XVERP` parameter of MAIL
//! FROM (offered by smtps with its `xverp` flag), or for a list by an
//! alias entry `verp-<list>` next to the list's own alias (smar reports
//! it; [`alias_marker`] and [`list_of_marker`] name that key). qmgr then
//! rewrites the sender per delivery with [`rewrite`].
//!
//! # Rules
//!
//! 1. The sender `owner@list.example` and the recipient
//!    `user@host.example` give `owner+user=host.example@list.example`:
//!    the first delimiter (default `+`) follows the sender's local part,
//!    then the recipient's local part, the second delimiter (default `=`)
//!    and the recipient's domain. A recipient without a domain contributes
//!    only its local part and no second delimiter; a sender without a
//!    domain yields a result without one.
//! 2. The null sender `<>` is never rewritten (bounces carry no return
//!    path to vary).
//! 3. `XVERP` alone uses `+` and `=`; `XVERP=xy` chooses the two
//!    delimiters `x` and `y`, each one of `-`, `=` and `+`. Anything else
//!    is refused ([`VerpError::BadDelimiters`]).
//! 4. A quoted sender local part is unquoted first; when the new local
//!    part is not a dot-atom (RFC 5321), it is quoted again with `"` and
//!    `\` escaped, so the result is always a valid path.
//! 5. Addresses with control characters are refused
//!    ([`VerpError::BadAddress`]); a result longer than `smx_store::envelope::MAX_ADDRESS` is refused
//!    ([`VerpError::TooLong`]); qmgr then keeps the original sender.

use smx_store::envelope::MAX_ADDRESS;

/// The prefix of an alias key that marks a list for VERP.
pub const ALIAS_PREFIX: &str = "verp-";

/// Characters allowed as delimiters.
pub const ALLOWED_DELIMITERS: &str = "-=+";

/// The two delimiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// After the sender's local part (default `+`).
    pub first: char,
    /// Between the recipient's local part and domain (default `=`).
    pub second: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            first: '+',
            second: '=',
        }
    }
}

/// VERP errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerpError {
    /// The XVERP value is not two allowed delimiters.
    #[error("XVERP={0:?}: expected two characters out of {ALLOWED_DELIMITERS:?}")]
    BadDelimiters(String),
    /// The sender or recipient contains control characters.
    #[error("address contains control characters")]
    BadAddress,
    /// The rewritten sender would be too long.
    #[error("VERP sender would be {0} bytes, more than {MAX_ADDRESS}")]
    TooLong(usize),
}

/// The VERP request in MAIL FROM parameters: `None` without `XVERP`.
pub fn parse_xverp(mail_params: &str) -> Result<Option<Delimiters>, VerpError> {
    for p in mail_params.split_ascii_whitespace() {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        if !k.eq_ignore_ascii_case("XVERP") {
            continue;
        }
        let Some(v) = v else {
            return Ok(Some(Delimiters::default()));
        };
        let mut cs = v.chars();
        return match (cs.next(), cs.next(), cs.next()) {
            (Some(a), Some(b), None)
                if ALLOWED_DELIMITERS.contains(a) && ALLOWED_DELIMITERS.contains(b) =>
            {
                Ok(Some(Delimiters {
                    first: a,
                    second: b,
                }))
            }
            _ => Err(VerpError::BadDelimiters(v.to_string())),
        };
    }
    Ok(None)
}

/// The alias key that marks `list` for VERP (`verp-<list>`).
pub fn alias_marker(list: &str) -> String {
    format!("{ALIAS_PREFIX}{list}")
}

/// The list an alias key marks, if it is a VERP marker.
pub fn list_of_marker(key: &str) -> Option<&str> {
    let p = key.get(..ALIAS_PREFIX.len())?;
    if p.eq_ignore_ascii_case(ALIAS_PREFIX) && key.len() > ALIAS_PREFIX.len() {
        key.get(ALIAS_PREFIX.len()..)
    } else {
        None
    }
}

/// The VERP sender for one recipient (rules 1, 2, 4, 5). The null sender
/// comes back empty.
pub fn rewrite(sender: &str, recipient: &str, d: Delimiters) -> Result<String, VerpError> {
    if sender.is_empty() {
        return Ok(String::new());
    }
    if sender
        .chars()
        .chain(recipient.chars())
        .any(char::is_control)
    {
        return Err(VerpError::BadAddress);
    }
    let (s_local, s_domain) = split(sender);
    let (r_local, r_domain) = split(recipient);
    let mut local = unquote(s_local);
    local.push(d.first);
    local.push_str(&unquote(r_local));
    if let Some(rd) = r_domain {
        local.push(d.second);
        local.push_str(rd);
    }
    let mut out = if is_dot_atom(&local) {
        local
    } else {
        quote(&local)
    };
    if let Some(sd) = s_domain {
        out.push('@');
        out.push_str(sd);
    }
    if out.len() > MAX_ADDRESS {
        return Err(VerpError::TooLong(out.len()));
    }
    Ok(out)
}

/// Local part and domain, split at the last `@` outside quotes.
fn split(addr: &str) -> (&str, Option<&str>) {
    let mut in_quote = false;
    let mut escaped = false;
    let mut at = None;
    for (i, c) in addr.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '@' if !in_quote => at = Some(i),
            _ => {}
        }
    }
    match at {
        Some(i) => (&addr[..i], Some(&addr[i + 1..])),
        None => (addr, None),
    }
}

fn unquote(local: &str) -> String {
    let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) else {
        return local.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

fn quote(local: &str) -> String {
    let mut out = String::with_capacity(local.len() + 2);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// RFC 5321 dot-atom (with UTF-8 allowed, RFC 6531).
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rewrite_table() {
        let d = Delimiters::default();
        let cases = [
            (
                "owner@list.example",
                "user@host.example",
                "owner+user=host.example@list.example",
            ),
            (
                "owner@list.example",
                "postmaster",
                "owner+postmaster@list.example",
            ),
            ("owner", "user@host.example", "owner+user=host.example"),
            (
                "\"list owner\"@l.example",
                "u@h.example",
                "\"list owner+u=h.example\"@l.example",
            ),
            (
                "owner@l.example",
                "\"a b\"@h.example",
                "\"owner+a b=h.example\"@l.example",
            ),
            (
                "owner@l.example",
                "\"a\\\"b\"@h.example",
                "\"owner+a\\\"b=h.example\"@l.example",
            ),
            ("", "user@host.example", ""),
        ];
        for (s, r, want) in cases {
            assert_eq!(rewrite(s, r, d).as_deref(), Ok(want), "{s} {r}");
        }
        let d2 = Delimiters {
            first: '-',
            second: '=',
        };
        assert_eq!(rewrite("o@l", "u@h", d2).as_deref(), Ok("o-u=h@l"));
        let long = "x".repeat(MAX_ADDRESS);
        assert!(matches!(
            rewrite("o@l", &long, d),
            Err(VerpError::TooLong(_))
        ));
        assert_eq!(rewrite("o@l", "u\r\nx@h", d), Err(VerpError::BadAddress));
    }

    #[test]
    fn xverp_parameter() {
        assert_eq!(parse_xverp("SIZE=10 BODY=8BITMIME"), Ok(None));
        assert_eq!(
            parse_xverp("SIZE=10 XVERP"),
            Ok(Some(Delimiters::default()))
        );
        assert_eq!(
            parse_xverp("xverp=-="),
            Ok(Some(Delimiters {
                first: '-',
                second: '='
            }))
        );
        assert_eq!(
            parse_xverp("XVERP=+"),
            Err(VerpError::BadDelimiters("+".into()))
        );
        assert_eq!(
            parse_xverp("XVERP=@@"),
            Err(VerpError::BadDelimiters("@@".into()))
        );
        assert_eq!(
            parse_xverp("XVERP=+=-"),
            Err(VerpError::BadDelimiters("+=-".into()))
        );
    }

    #[test]
    fn alias_markers() {
        assert_eq!(alias_marker("otherlist"), "verp-otherlist");
        assert_eq!(list_of_marker("verp-otherlist"), Some("otherlist"));
        assert_eq!(list_of_marker("VERP-x"), Some("x"));
        assert_eq!(list_of_marker("verp-"), None);
        assert_eq!(list_of_marker("otherlist"), None);
        assert_eq!(list_of_marker("vé"), None);
    }

    proptest! {
        #[test]
        fn result_keeps_sender_domain_and_is_single_path(
            s in "[a-z0-9. ]{1,20}", sd in "[a-z0-9.]{1,20}", r in "\\PC{0,30}",
        ) {
            let sender = format!("{s}@{sd}");
            if let Ok(out) = rewrite(&sender, &r, Delimiters::default()) {
                let (_, dom) = split(&out);
                prop_assert_eq!(dom, Some(sd.as_str()));
                prop_assert!(!out.contains(['\r', '\n']));
            }
        }
    }
}
