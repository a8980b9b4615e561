//! Typed option values: how the text of a value becomes a number, a time, a
//! size, a boolean, a flag set, and how each is printed back.
//!
//! Rules (seed 3.2.1, 8.1.1):
//!
//! * Numbers take C prefixes: `0x1F` (hex), `017` (octal), else decimal.
//!   Values that do not fit the option's integer type are errors.
//! * Booleans: `0`, `false`, `off` and `1`, `true`, `on`, any case.
//! * Times: a number with a unit `w d h m s`, or a sequence of them
//!   (`1h 5m 12s`, `5m3s`). A bare number is in the option's default unit
//!   (seconds, or microseconds for the few options documented so). As an
//!   extension `ms` and `us` are accepted.
//! * Sizes: a number with a unit `B KB MB GB` (1 KB = 1024 B), or a sequence.
//!   A bare number is in the option's default unit (bytes, or KB where the
//!   seed says so).
//! * Flag lists: `{ a, b, -c }`; each name may be negated with one of the
//!   prefixes `not_ dont_ no_ - ! ~`. Flags start from their defaults and
//!   the list turns them on or off one by one.
//!
//! Every parser here is a pure function; errors are messages that the
//! caller places at the value's location.

use crate::syntax::{Scalar, Value};
use std::net::IpAddr;
use std::path::PathBuf;

/// A value type that can be parsed from, and printed as, configuration text.
pub trait ConfValue: Sized {
    /// Parses a right-hand side.
    fn parse(v: &Value) -> Result<Self, String>;
    /// Prints the value as a right-hand side (without the `;`); `None` for
    /// an option that is not set.
    fn render(&self) -> Option<String>;
    /// A short description of the type for error messages and the
    /// reference documentation.
    fn kind() -> String;
}

/// A value type written as one scalar (not a list).
pub trait ScalarValue: Sized {
    /// Parses the text of a scalar.
    fn parse_scalar(s: &Scalar) -> Result<Self, String>;
    /// Prints the scalar.
    fn render_scalar(&self) -> String;
    /// Type description.
    fn scalar_kind() -> String;
}

impl<T: ScalarValue> ConfValue for T {
    fn parse(v: &Value) -> Result<Self, String> {
        match v {
            Value::Scalar(s) => T::parse_scalar(s),
            Value::List(..) => Err(format!("expected {}, found a list", T::scalar_kind())),
        }
    }
    fn render(&self) -> Option<String> {
        Some(self.render_scalar())
    }
    fn kind() -> String {
        T::scalar_kind()
    }
}

impl<T: ScalarValue> ConfValue for Vec<T> {
    /// A braced list; a single scalar is accepted as a list of one.
    fn parse(v: &Value) -> Result<Self, String> {
        match v {
            Value::Scalar(s) => Ok(vec![T::parse_scalar(s)?]),
            Value::List(items, _) => items.iter().map(T::parse_scalar).collect(),
        }
    }
    fn render(&self) -> Option<String> {
        if self.is_empty() {
            return Some("{ }".into());
        }
        let items: Vec<String> = self.iter().map(T::render_scalar).collect();
        Some(format!("{{ {} }}", items.join(", ")))
    }
    fn kind() -> String {
        format!("list of {}", T::scalar_kind())
    }
}

impl<T: ConfValue> ConfValue for Option<T> {
    fn parse(v: &Value) -> Result<Self, String> {
        T::parse(v).map(Some)
    }
    fn render(&self) -> Option<String> {
        self.as_ref().and_then(T::render)
    }
    fn kind() -> String {
        T::kind()
    }
}

/// An option's slot in a typed section: parses into itself, prints itself.
///
/// Implemented for every [`ConfValue`] and, separately, for flag sets, which
/// apply a list on top of their current (default) state.
pub trait FieldValue {
    /// Sets the field from a right-hand side.
    fn set(&mut self, v: &Value) -> Result<(), String>;
    /// Prints the current value, `None` if unset.
    fn render(&self) -> Option<String>;
    /// Type description.
    fn kind(&self) -> String;
    /// For flag sets: each flag's name and description (for the reference
    /// documentation); empty for other types.
    fn flag_docs(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

impl<T: ConfValue> FieldValue for T {
    fn set(&mut self, v: &Value) -> Result<(), String> {
        *self = T::parse(v)?;
        Ok(())
    }
    fn render(&self) -> Option<String> {
        ConfValue::render(self)
    }
    fn kind(&self) -> String {
        T::kind()
    }
}

/// Quotes a string for configuration text, escaping what needs escaping.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `s` can be written as a single unquoted word.
pub fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/' | ':' | '+' | '@' | '[' | ']')
        })
}

/// A word if possible, else a quoted string.
pub fn word_or_quote(s: &str) -> String {
    if is_plain_word(s) {
        s.to_owned()
    } else {
        quote(s)
    }
}

fn shown(s: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    format!("'{}'", out.escape_debug())
}

impl ScalarValue for String {
    fn parse_scalar(s: &Scalar) -> Result<Self, String> {
        Ok(s.text.clone())
    }
    fn render_scalar(&self) -> String {
        quote(self)
    }
    fn scalar_kind() -> String {
        "string".into()
    }
}

impl ScalarValue for PathBuf {
    fn parse_scalar(s: &Scalar) -> Result<Self, String> {
        if s.text.is_empty() {
            return Err("expected a path, found an empty string".into());
        }
        if s.text.contains('\0') {
            return Err("a path cannot contain a NUL character".into());
        }
        Ok(PathBuf::from(&s.text))
    }
    fn render_scalar(&self) -> String {
        quote(&self.to_string_lossy())
    }
    fn scalar_kind() -> String {
        "path".into()
    }
}

impl ScalarValue for bool {
    fn parse_scalar(s: &Scalar) -> Result<Self, String> {
        parse_bool(&s.text)
    }
    fn render_scalar(&self) -> String {
        if *self { "true".into() } else { "false".into() }
    }
    fn scalar_kind() -> String {
        "boolean (true/on/1 or false/off/0)".into()
    }
}

/// Parses a boolean: `0 false off` / `1 true on`, any case.
pub fn parse_bool(t: &str) -> Result<bool, String> {
    let t = t.trim();
    for f in ["0", "false", "off"] {
        if t.eq_ignore_ascii_case(f) {
            return Ok(false);
        }
    }
    for v in ["1", "true", "on"] {
        if t.eq_ignore_ascii_case(v) {
            return Ok(true);
        }
    }
    Err(format!(
        "expected a boolean (true, on, 1, false, off, 0), found {}",
        shown(t)
    ))
}

/// Parses an unsigned integer with C prefixes (`0x` hex, `0` octal).
pub fn parse_u64(t: &str) -> Result<u64, String> {
    let t = t.trim();
    let bad = || {
        format!(
            "expected a number (decimal, 0x hexadecimal or 0 octal), found {}",
            shown(t)
        )
    };
    let (digits, radix) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (h, 16)
    } else if t.len() > 1 && t.starts_with('0') {
        (&t[1..], 8)
    } else {
        (t, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("number {} is too large", shown(t)))
}

macro_rules! uint_value {
    ($($t:ty),*) => {$(
        impl ScalarValue for $t {
            fn parse_scalar(s: &Scalar) -> Result<Self, String> {
                let n = parse_u64(&s.text)?;
                <$t>::try_from(n).map_err(|_| {
                    format!("{} is out of range (at most {})", n, <$t>::MAX)
                })
            }
            fn render_scalar(&self) -> String {
                self.to_string()
            }
            fn scalar_kind() -> String {
                "number".into()
            }
        }
    )*};
}
uint_value!(u8, u16, u32, u64);

impl ScalarValue for f64 {
    fn parse_scalar(s: &Scalar) -> Result<Self, String> {
        let t = s.text.trim();
        let ok = !t.is_empty()
            && t.chars().all(|c| c.is_ascii_digit() || c == '.')
            && t.chars().filter(|&c| c == '.').count() <= 1
            && t.chars().any(|c| c.is_ascii_digit());
        if !ok {
            return Err(format!(
                "expected a decimal number such as 0.5, found {}",
                shown(t)
            ));
        }
        t.parse::<f64>()
            .map_err(|_| format!("expected a decimal number such as 0.5, found {}", shown(t)))
    }
    fn render_scalar(&self) -> String {
        let s = format!("{self}");
        if s.contains('.') { s } else { format!("{s}.0") }
    }
    fn scalar_kind() -> String {
        "decimal number".into()
    }
}

impl ScalarValue for IpAddr {
    fn parse_scalar(s: &Scalar) -> Result<Self, String> {
        let t = s.text.trim();
        let inner = t
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(t);
        inner
            .parse()
            .map_err(|_| format!("expected an IPv4 or IPv6 address, found {}", shown(t)))
    }
    fn render_scalar(&self) -> String {
        match self {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => quote(&a.to_string()),
        }
    }
    fn scalar_kind() -> String {
        "IP address".into()
    }
}

/// A time span. Bare numbers are seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Time(pub std::time::Duration);

/// A time span whose bare numbers are microseconds (seed 3.8 item 7a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct MicroTime(pub std::time::Duration);

impl Time {
    /// `n` seconds.
    pub const fn secs(n: u64) -> Self {
        Time(std::time::Duration::from_secs(n))
    }
    /// `n` minutes.
    pub const fn mins(n: u64) -> Self {
        Time(std::time::Duration::from_secs(n * 60))
    }
    /// `n` hours.
    pub const fn hours(n: u64) -> Self {
        Time(std::time::Duration::from_secs(n * 3600))
    }
    /// `n` days.
    pub const fn days(n: u64) -> Self {
        Time(std::time::Duration::from_secs(n * 86_400))
    }
}

const TIME_UNITS: &[(&str, u128)] = &[
    ("w", 7 * 86_400 * 1_000_000),
    ("d", 86_400 * 1_000_000),
    ("h", 3_600 * 1_000_000),
    ("m", 60 * 1_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
    ("us", 1),
];

const SIZE_UNITS: &[(&str, u128)] = &[("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)];

/// Parses `number unit number unit ...` (white space optional between the
/// pairs). A single bare number takes `default_unit`. Returns the total in
/// the table's base unit, or an error; `what` names the value kind.
fn parse_units(
    t: &str,
    units: &[(&str, u128)],
    default_unit: u128,
    what: &str,
    max: u128,
) -> Result<u128, String> {
    let t = t.trim();
    let unit_names: Vec<&str> = units.iter().map(|u| u.0).collect();
    let bad = |why: &str| {
        format!(
            "expected a {what} such as '{}', {why}, found {}",
            if what == "time" { "1h 5m 12s" } else { "10MB" },
            shown(t)
        )
    };
    if t.is_empty() {
        return Err(bad("empty value"));
    }
    // A bare number (C prefixes allowed) takes the default unit.
    if let Ok(n) = parse_u64(t) {
        let v = u128::from(n) * default_unit;
        return if v > max {
            Err(format!("{what} {} is too large", shown(t)))
        } else {
            Ok(v)
        };
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let ndigits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if ndigits == 0 {
            return Err(bad("each part must start with a number"));
        }
        let (num, after) = rest.split_at(ndigits);
        let n: u128 = num
            .parse()
            .map_err(|_| format!("{what} {} is too large", shown(t)))?;
        let after_trim = after.trim_start();
        let ulen = after_trim
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        if ulen == 0 {
            return Err(bad(&format!(
                "a number in a sequence needs a unit ({})",
                unit_names.join(" ")
            )));
        }
        let (uname, after_unit) = after_trim.split_at(ulen);
        let Some(&(_, factor)) = units.iter().find(|u| u.0.eq_ignore_ascii_case(uname)) else {
            return Err(format!(
                "unknown {what} unit '{}' in {} (valid: {})",
                uname.escape_debug(),
                shown(t),
                unit_names.join(" ")
            ));
        };
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .filter(|&v| v <= max)
            .ok_or_else(|| format!("{what} {} is too large", shown(t)))?;
        rest = after_unit;
    }
    Ok(total)
}

/// Renders a total as unit pairs, largest unit first (`1h 5m 12s`).
fn render_units(mut v: u128, units: &[(&str, u128)], zero: &str) -> String {
    if v == 0 {
        return zero.to_owned();
    }
    let mut parts = Vec::new();
    for (name, factor) in units {
        if v >= *factor {
            parts.push(format!("{}{}", v / factor, name));
            v %= factor;
        }
    }
    parts.join(" ")
}

/// The largest time accepted: 100 years, far beyond any sensible timeout.
const MAX_TIME_US: u128 = 100 * 365 * 86_400 * 1_000_000;

fn parse_time(s: &Scalar, default_unit_us: u128) -> Result<std::time::Duration, String> {
    let us = parse_units(&s.text, TIME_UNITS, default_unit_us, "time", MAX_TIME_US)?;
    let us = u64::try_from(us).map_err(|_| "time is too large".to_string())?;
    Ok(std::time::Duration::from_micros(us))
}

/// Time units used when printing: all but weeks (`14d` reads better than
/// `2w`).
const PRINT_TIME_UNITS: &[(&str, u128)] = TIME_UNITS.split_at(1).1;

fn render_time(d: std::time::Duration) -> String {
    let s = render_units(d.as_micros(), PRINT_TIME_UNITS, "0s");
    if s.contains(' ') { quote(&s) } else { s }
}

/// Implements [`ScalarValue`] for a newtype over a unit-bearing number.
macro_rules! unit_value {
    ($t:ident, $parse:ident, $default_unit:expr, $render:ident, $kind:literal) => {
        impl ScalarValue for $t {
            fn parse_scalar(s: &Scalar) -> Result<Self, String> {
                $parse(s, $default_unit).map($t)
            }
            fn render_scalar(&self) -> String {
                $render(self.0)
            }
            fn scalar_kind() -> String {
                $kind.into()
            }
        }
    };
}

unit_value!(
    Time,
    parse_time,
    1_000_000,
    render_time,
    "time (units w d h m s; default s)"
);
unit_value!(
    MicroTime,
    parse_time,
    1,
    render_time,
    "time (units w d h m s ms us; default us)"
);

/// A size in bytes. Bare numbers are bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

/// A size in bytes whose bare numbers are kilobytes (seed: "unit: KB").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct KbSize(pub u64);

impl Size {
    /// `n` bytes.
    pub const fn bytes(n: u64) -> Self {
        Size(n)
    }
    /// `n` megabytes.
    pub const fn mb(n: u64) -> Self {
        Size(n << 20)
    }
}

impl KbSize {
    /// `n` kilobytes.
    pub const fn kb(n: u64) -> Self {
        KbSize(n << 10)
    }
    /// `n` megabytes.
    pub const fn mb(n: u64) -> Self {
        KbSize(n << 20)
    }
}

fn parse_size(s: &Scalar, default_unit: u128) -> Result<u64, String> {
    let v = parse_units(
        &s.text,
        SIZE_UNITS,
        default_unit,
        "size",
        u128::from(u64::MAX),
    )?;
    u64::try_from(v).map_err(|_| "size is too large".to_string())
}

fn render_size(b: u64) -> String {
    // The largest unit that divides the value exactly (bytes always do).
    let b = u128::from(b);
    let (name, factor) = SIZE_UNITS
        .iter()
        .find(|(_, f)| b != 0 && b % f == 0)
        .copied()
        .unwrap_or(("B", 1));
    format!("{}{}", b / factor, name)
}

unit_value!(
    Size,
    parse_size,
    1,
    render_size,
    "size (units B KB MB GB; default B)"
);
unit_value!(
    KbSize,
    parse_size,
    1024,
    render_size,
    "size (units B KB MB GB; default KB)"
);

/// A list of words, written either as a list or as one space-separated
/// string (`trusted_mechanisms = "CRAM-MD5 DIGEST-MD5";`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Words(pub Vec<String>);

impl ConfValue for Words {
    fn parse(v: &Value) -> Result<Self, String> {
        let items: Vec<&Scalar> = match v {
            Value::Scalar(s) => vec![s],
            Value::List(items, _) => items.iter().collect(),
        };
        Ok(Words(
            items
                .iter()
                .flat_map(|s| s.text.split_whitespace())
                .map(str::to_owned)
                .collect(),
        ))
    }
    fn render(&self) -> Option<String> {
        if self.0.is_empty() {
            return Some("{ }".into());
        }
        let items: Vec<String> = self.0.iter().map(|w| word_or_quote(w)).collect();
        Some(format!("{{ {} }}", items.join(", ")))
    }
    fn kind() -> String {
        "list of words".into()
    }
}

/// Defines an enumeration written as one of several case-insensitive words.
#[macro_export]
macro_rules! conf_enum {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $( $(#[doc = $doc:literal])* $var:ident = $text:literal ),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $( $(#[doc = $doc])* $var ),+ }

        impl $name {
            /// The configuration word of the value.
            pub fn as_str(&self) -> &'static str {
                match self { $( $name::$var => $text ),+ }
            }
        }

        impl $crate::value::ScalarValue for $name {
            fn parse_scalar(s: &$crate::syntax::Scalar) -> Result<Self, String> {
                let t = s.text.trim();
                $( if t.eq_ignore_ascii_case($text) { return Ok($name::$var); } )+
                Err(format!(
                    "expected one of {}, found '{}'",
                    [$($text),+].join(", "),
                    t.escape_debug()
                ))
            }
            fn render_scalar(&self) -> String {
                self.as_str().to_owned()
            }
            fn scalar_kind() -> String {
                format!("one of: {}", [$($text),+].join(", "))
            }
        }
    };
}

/// The prefixes that negate a flag (seed 8.1.1).
pub const NEGATIONS: &[&str] = &["not_", "dont_", "no_", "-", "!", "~"];

/// Splits a flag word into (name, on?) by removing one negation prefix.
/// A word that is itself a known flag name is never treated as negated,
/// so a flag called `noplaintext` stays positive.
pub fn split_flag<'a>(word: &'a str, known: &dyn Fn(&str) -> bool) -> (&'a str, bool) {
    if known(word) {
        return (word, true);
    }
    for p in NEGATIONS {
        // `get` rather than indexing: the word may start with a multi-byte
        // character, and slicing inside it would panic.
        if let (Some(head), Some(rest)) = (word.get(..p.len()), word.get(p.len()..))
            && !rest.is_empty()
            && head.eq_ignore_ascii_case(p)
        {
            return (rest, false);
        }
    }
    (word, true)
}

/// Defines a set of named boolean flags with defaults, parsed from a flag
/// list (seed 8.1.1) on top of the defaults, printed as the complete list.
#[macro_export]
macro_rules! conf_flags {
    ($(#[$m:meta])* $vis:vis struct $name:ident {
        $( $(#[doc = $doc:literal])* $field:ident : $text:literal $(| $alias:literal)* = $default:expr ),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy)]
        $vis struct $name {
            $( $(#[doc = $doc])* pub $field: bool, )+
            /// Flags named explicitly in the configuration (bit per flag in
            /// declaration order); not part of equality.
            explicit: u64,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )+ explicit: 0 }
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                true $( && self.$field == other.$field )+
            }
        }
        impl Eq for $name {}

        impl $name {
            /// Flag names in declaration order with their descriptions.
            pub const NAMES: &'static [(&'static str, &'static str)] = &[
                $( ($text, concat!($($doc, " "),*)) ),+
            ];

            fn slot(&mut self, word: &str) -> Option<(usize, &mut bool)> {
                let mut i = 0usize;
                $(
                    if word.eq_ignore_ascii_case($text) $(|| word.eq_ignore_ascii_case($alias))* {
                        return Some((i, &mut self.$field));
                    }
                    i += 1;
                )+
                let _ = i;
                None
            }

            fn known(word: &str) -> bool {
                false $( || word.eq_ignore_ascii_case($text) $(|| word.eq_ignore_ascii_case($alias))* )+
            }

            /// Whether the configuration named this flag (either way).
            pub fn explicitly_set(&self, flag: &str) -> bool {
                let mut copy = *self;
                match copy.slot(flag) {
                    Some((i, _)) => self.explicit & (1u64 << i) != 0,
                    None => false,
                }
            }

            /// Turns a flag on or off by name; false if no such flag.
            pub fn set_flag(&mut self, flag: &str, on: bool) -> bool {
                match self.slot(flag) {
                    Some((i, f)) => {
                        *f = on;
                        self.explicit |= 1u64 << i;
                        true
                    }
                    None => false,
                }
            }
        }

        impl $crate::value::FieldValue for $name {
            fn set(&mut self, v: &$crate::syntax::Value) -> Result<(), String> {
                let words: Vec<&str> = match v {
                    $crate::syntax::Value::Scalar(s) => s.text.split_whitespace().collect(),
                    $crate::syntax::Value::List(items, _) => {
                        items.iter().flat_map(|s| s.text.split_whitespace()).collect()
                    }
                };
                for w in words {
                    let (flag, on) = $crate::value::split_flag(w, &|x| Self::known(x));
                    if !self.set_flag(flag, on) {
                        let names: Vec<&str> = Self::NAMES.iter().map(|n| n.0).collect();
                        return Err(format!(
                            "unknown flag '{}' (valid: {}; negate with a prefix not_ dont_ no_ - ! ~)",
                            w.escape_debug(),
                            names.join(", ")
                        ));
                    }
                }
                Ok(())
            }
            fn render(&self) -> Option<String> {
                let items: Vec<String> = vec![
                    $( if self.$field { $text.to_owned() } else { format!("no_{}", $text) } ),+
                ];
                Some(format!("{{ {} }}", items.join(", ")))
            }
            fn kind(&self) -> String {
                let names: Vec<&str> = Self::NAMES.iter().map(|n| n.0).collect();
                format!("flags: {}", names.join(", "))
            }
            fn flag_docs(&self) -> &'static [(&'static str, &'static str)] {
                Self::NAMES
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::Span;

    fn sc(t: &str) -> Scalar {
        Scalar {
            text: t.into(),
            quoted: false,
            span: Span::default(),
        }
    }

    #[test]
    fn numbers_with_c_prefixes() {
        let cases = [
            ("0", 0),
            ("10", 10),
            ("0x1F", 31),
            ("0XfF", 255),
            ("017", 15),
            ("00", 0),
        ];
        for (t, want) in cases {
            assert_eq!(parse_u64(t), Ok(want), "{t}");
        }
        for bad in [
            "",
            "x",
            "0x",
            "08",
            "1a",
            "-1",
            "1.5",
            "99999999999999999999999",
        ] {
            assert!(parse_u64(bad).is_err(), "{bad}");
        }
        assert_eq!(
            u8::parse_scalar(&sc("256")),
            Err("256 is out of range (at most 255)".into())
        );
    }

    #[test]
    fn booleans() {
        for t in ["0", "false", "OFF", "False"] {
            assert_eq!(parse_bool(t), Ok(false));
        }
        for t in ["1", "true", "On", "TRUE"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        assert!(parse_bool("yes").is_err());
        assert!(parse_bool("2").is_err());
    }

    #[test]
    fn times() {
        let cases = [
            ("6", 6),
            ("5m3s", 303),
            ("1h 5m 12s", 3912),
            ("1w", 604_800),
            ("2d", 172_800),
            ("0x10", 16),
            ("1H 1M", 3660),
        ];
        for (t, want) in cases {
            assert_eq!(Time::parse_scalar(&sc(t)), Ok(Time::secs(want)), "{t}");
        }
        assert_eq!(
            MicroTime::parse_scalar(&sc("250")).map(|t| t.0.as_micros()),
            Ok(250)
        );
        assert_eq!(
            MicroTime::parse_scalar(&sc("10ms")).map(|t| t.0.as_micros()),
            Ok(10_000)
        );
        for bad in ["", "h", "5x", "5m 3", "1.5h", "m5", "1000000000000w"] {
            assert!(Time::parse_scalar(&sc(bad)).is_err(), "{bad}");
        }
        assert_eq!(Time::secs(3912).render_scalar(), "\"1h 5m 12s\"");
        assert_eq!(Time::secs(0).render_scalar(), "0s");
        assert_eq!(Time::mins(5).render_scalar(), "5m");
    }

    #[test]
    fn sizes() {
        let cases = [
            ("100", 100),
            ("1KB", 1024),
            ("2 MB", 2 << 20),
            ("1GB 1KB", (1 << 30) + 1024),
            ("5kb", 5120),
        ];
        for (t, want) in cases {
            assert_eq!(Size::parse_scalar(&sc(t)), Ok(Size(want)), "{t}");
        }
        assert_eq!(KbSize::parse_scalar(&sc("100")), Ok(KbSize(102_400)));
        assert_eq!(KbSize::parse_scalar(&sc("100B")), Ok(KbSize(100)));
        assert!(Size::parse_scalar(&sc("5TB")).is_err());
        assert!(Size::parse_scalar(&sc("99999999999GB")).is_err());
        assert_eq!(Size(1 << 20).render_scalar(), "1MB");
        assert_eq!(Size(1025).render_scalar(), "1025B");
        assert_eq!(Size(3 << 30).render_scalar(), "3GB");
    }

    #[test]
    fn floats() {
        assert_eq!(f64::parse_scalar(&sc("0.1")), Ok(0.1));
        assert_eq!(f64::parse_scalar(&sc("3")), Ok(3.0));
        for bad in ["", ".", "1e5", "nan", "inf", "-1", "1.2.3"] {
            assert!(f64::parse_scalar(&sc(bad)).is_err(), "{bad}");
        }
        assert_eq!(3.0f64.render_scalar(), "3.0");
    }

    crate::conf_flags! {
        struct Demo {
            /// a flag
            alpha: "alpha" = false,
            beta: "beta" | "b2" = true,
            noplain: "noplaintext" = false,
        }
    }

    #[test]
    fn flags_with_negations() {
        let list =
            |items: &[&str]| Value::List(items.iter().map(|t| sc(t)).collect(), Span::default());
        for neg in [
            "not_beta",
            "dont_beta",
            "no_beta",
            "-beta",
            "!beta",
            "~beta",
            "NO_BETA",
        ] {
            let mut d = Demo::default();
            FieldValue::set(&mut d, &list(&["alpha", neg])).unwrap();
            assert!(d.alpha && !d.beta, "{neg}");
            assert!(d.explicitly_set("beta"));
        }
        let mut d = Demo::default();
        FieldValue::set(&mut d, &list(&["noplaintext", "b2"])).unwrap();
        assert!(d.noplain && d.beta && !d.alpha);
        assert!(!d.explicitly_set("alpha"));
        // Multi-byte characters where a prefix would be (found by fuzzing).
        for w in ["ޚd", "n\u{e9}_x", "é", "~", "no_"] {
            assert!(FieldValue::set(&mut d, &list(&[w])).is_err(), "{w}");
        }
        let err = FieldValue::set(&mut d, &list(&["gamma"])).unwrap_err();
        assert!(
            err.starts_with("unknown flag 'gamma' (valid: alpha, beta, noplaintext"),
            "{err}"
        );
        assert_eq!(
            FieldValue::render(&Demo::default()).as_deref(),
            Some("{ no_alpha, beta, no_noplaintext }")
        );
    }

    mod props {
        use super::super::*;
        use super::sc;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn numbers_round_trip_in_every_base(n in any::<u64>()) {
                prop_assert_eq!(parse_u64(&n.to_string()), Ok(n));
                prop_assert_eq!(parse_u64(&format!("0x{n:x}")), Ok(n));
                prop_assert_eq!(parse_u64(&format!("0{n:o}")), Ok(n));
            }

            #[test]
            fn times_round_trip(us in 0u64..(100 * 365 * 86_400 * 1_000_000)) {
                let t = Time(std::time::Duration::from_micros(us));
                let text = t.render_scalar();
                let text = text.trim_matches('"');
                prop_assert_eq!(Time::parse_scalar(&sc(text)), Ok(t));
                prop_assert_eq!(MicroTime::parse_scalar(&sc(text)), Ok(MicroTime(t.0)));
            }

            #[test]
            fn sizes_round_trip(b in any::<u64>()) {
                let text = Size(b).render_scalar();
                prop_assert_eq!(Size::parse_scalar(&sc(&text)), Ok(Size(b)));
                prop_assert_eq!(KbSize::parse_scalar(&sc(&text)), Ok(KbSize(b)));
            }

            #[test]
            fn value_parsers_never_panic(t in "\\PC{0,40}") {
                let _ = parse_u64(&t);
                let _ = parse_bool(&t);
                let _ = Time::parse_scalar(&sc(&t));
                let _ = Size::parse_scalar(&sc(&t));
                let _ = KbSize::parse_scalar(&sc(&t));
                let _ = f64::parse_scalar(&sc(&t));
                let _ = IpAddr::parse_scalar(&sc(&t));
            }

            #[test]
            fn quoted_strings_round_trip(t in "\\PC{0,40}") {
                let text = format!("x = {};", quote(&t));
                let doc = crate::syntax::parse("p", &text);
                match doc {
                    Ok(d) => match &d.entries[..] {
                        [crate::syntax::Entry::Option(o)] => match &o.value {
                            Value::Scalar(s) => prop_assert_eq!(&s.text, &t),
                            v => prop_assert!(false, "{:?}", v),
                        },
                        e => prop_assert!(false, "{:?}", e),
                    },
                    Err(e) => prop_assert!(false, "{:?} for {:?}", e, text),
                }
            }
        }
    }
}
