//! Property test: any configuration, with every option and section set to
//! random values of its type, prints in the configuration language and
//! loads back equal.
//!
//! The generator walks the schema itself (the same `visit` lists the loader
//! and printer use), so every option is covered, including ones added later.

use proptest::prelude::*;
use smx_conf::Config;
use smx_conf::schema::{OptionalSection, RepeatedSection, Section, Visitor};
use smx_conf::syntax::{Scalar, Span, Value};
use smx_conf::value::FieldValue;

/// splitmix64: a small deterministic generator seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn scalar(text: String) -> Scalar {
    Scalar {
        text,
        quoted: true,
        span: Span::default(),
    }
}

/// Characters that stress quoting: punctuation of the grammar, escapes,
/// comment markers, non-ASCII.
const TRICKY: &[char] = &[
    'a', 'Z', '0', ' ', '"', '\\', '#', ';', '{', '}', ',', '=', '\n', '\t', 'é', '→', '%', '/',
    '.', '-',
];

fn text(r: &mut Rng, min: u64) -> String {
    let n = min + r.below(12);
    (0..n)
        .map(|_| TRICKY[r.below(TRICKY.len() as u64) as usize])
        .collect()
}

fn word(r: &mut Rng) -> String {
    const A: &[u8] = b"abcxyzABC019_-.";
    let n = 1 + r.below(10);
    (0..n)
        .map(|_| A[r.below(A.len() as u64) as usize] as char)
        .collect()
}

/// A random value text for a type description (FieldValue::kind).
fn value_for(kind: &str, r: &mut Rng) -> Value {
    let one = |t: String| Value::Scalar(scalar(t));
    if let Some(elem) = kind.strip_prefix("list of ") {
        let n = r.below(4);
        let items = (0..n)
            .map(|_| match value_for(elem, r) {
                Value::Scalar(s) => s,
                Value::List(mut l, _) => l.pop().unwrap_or_else(|| scalar("x".into())),
            })
            .collect();
        return Value::List(items, Span::default());
    }
    if kind == "words" {
        return one(word(r));
    }
    if let Some(names) = kind.strip_prefix("flags: ") {
        let names: Vec<&str> = names.split(", ").collect();
        let mut items = Vec::new();
        for n in names {
            if r.chance(50) {
                let neg = ["", "no_", "not_", "dont_", "-", "!", "~"][r.below(7) as usize];
                items.push(scalar(format!("{neg}{n}")));
            }
        }
        return Value::List(items, Span::default());
    }
    if let Some(names) = kind.strip_prefix("one of: ") {
        let names: Vec<&str> = names.split(", ").collect();
        return one(names[r.below(names.len() as u64) as usize].to_owned());
    }
    if kind == "number" {
        // Small numbers fit every integer type; sometimes use hex or octal.
        let n = r.below(256);
        return one(match r.below(3) {
            0 => format!("{n}"),
            1 => format!("0x{n:X}"),
            _ => format!("0{n:o}"),
        });
    }
    if kind.starts_with("boolean") {
        return one(["true", "off", "1", "0", "ON", "False"][r.below(6) as usize].into());
    }
    if kind.starts_with("time") {
        let s = r.below(10_000_000);
        return one(match r.below(3) {
            0 => format!("{s}s"),
            1 => format!("{}h {}m {}s", s / 3600, (s / 60) % 60, s % 60),
            _ => format!("{}d{}ms", s % 30, s % 1000),
        });
    }
    if kind.starts_with("size") {
        let n = r.below(1 << 20);
        return one(match r.below(3) {
            0 => format!("{n}B"),
            1 => format!("{}KB", n % 4096),
            _ => format!("{}MB {}B", n % 64, n % 100),
        });
    }
    if kind == "decimal number" {
        return one(format!("{}.{}", r.below(100), r.below(1000)));
    }
    if kind == "IP address" {
        return one(if r.chance(50) {
            format!(
                "{}.{}.{}.{}",
                r.below(256),
                r.below(256),
                r.below(256),
                r.below(256)
            )
        } else {
            format!("2001:db8::{:x}", r.below(65536))
        });
    }
    if kind == "path" {
        return one(format!("/{}", text(r, 1)));
    }
    if kind == "string" {
        return one(text(r, 0));
    }
    panic!("the property test does not know how to generate a value of type {kind:?}");
}

struct Randomize<'r> {
    r: &'r mut Rng,
    depth: usize,
}

impl Visitor for Randomize<'_> {
    fn option(&mut self, name: &'static str, _doc: &'static str, field: &mut dyn FieldValue) {
        if !self.r.chance(60) {
            return;
        }
        let kind = field.kind();
        let v = value_for(&kind, self.r);
        if let Err(e) = field.set(&v) {
            panic!("generated value {v:?} for {name} ({kind}) was refused: {e}");
        }
    }

    fn section(&mut self, _name: &'static str, _doc: &'static str, s: &mut dyn Section) {
        self.depth += 1;
        s.visit(self);
        self.depth -= 1;
    }

    fn optional(&mut self, _name: &'static str, _doc: &'static str, s: &mut dyn OptionalSection) {
        if self.r.chance(50) {
            let sec = s.insert_default();
            self.depth += 1;
            sec.visit(self);
            self.depth -= 1;
        }
    }

    fn repeated(&mut self, _name: &'static str, _doc: &'static str, rep: &mut dyn RepeatedSection) {
        use smx_conf::schema::Naming;
        if !self.r.chance(60) {
            return;
        }
        rep.clear();
        let n = 1 + self.r.below(3) as usize;
        for i in 0..n.min(rep.max()) {
            let name = match rep.naming() {
                Naming::Forbidden => None,
                Naming::Optional if i == 0 && self.r.chance(50) => None,
                // Unique names; some need quoting.
                _ => Some(format!(
                    "{}{i}",
                    if self.r.chance(30) {
                        text(self.r, 1)
                    } else {
                        word(self.r)
                    }
                )),
            };
            let sec = rep.push(name);
            self.depth += 1;
            sec.visit(self);
            self.depth -= 1;
        }
    }
}

fn random_config(seed: u64) -> Config {
    let mut c = Config::default();
    let mut r = Rng(seed);
    let mut v = Randomize {
        r: &mut r,
        depth: 0,
    };
    c.visit(&mut v);
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_configuration_loads_back_equal(seed in any::<u64>()) {
        let c = random_config(seed);
        let text = smx_conf::print(&c);
        match smx_conf::load_str_unchecked("printed", &text) {
            Ok(back) => prop_assert_eq!(&c, &back, "printed:\n{}", text),
            Err(e) => prop_assert!(false, "printed configuration does not load: {}\n{}", e, text),
        }
    }
}

#[test]
fn default_and_embedded_print_back_equal_and_pass_checks() {
    for c in [
        Config::default(),
        smx_conf::embedded_default(None).expect("embedded default loads"),
    ] {
        let text = smx_conf::print(&c);
        let back =
            smx_conf::load_str("printed", &text).expect("printed default passes every check");
        assert_eq!(c, back);
    }
}

#[test]
fn generator_changes_values() {
    // Guards the property test against a generator that sets nothing.
    let differing = (0..20u64)
        .filter(|s| random_config(*s) != Config::default())
        .count();
    assert!(
        differing >= 18,
        "only {differing} of 20 random configurations differ from the default"
    );
}
