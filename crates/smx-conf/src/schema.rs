//! How typed sections describe themselves, and the walkers that use the
//! description: the loader (syntax tree → typed values, unknown names are
//! errors), the printer (typed values → configuration text), the checker
//! (cross-field rules) and the reference-documentation generator.
//!
//! Each section type implements [`Section::visit`], listing its options and
//! subsections once, with their documentation. Every walker is a
//! [`Visitor`], so the loader, printer and docs can never disagree about
//! which options exist.

use crate::error::{ConfError, ErrorKind, Location};
use crate::syntax::{Entry, SectionEntry, Span};
use crate::value::{FieldValue, word_or_quote};
use std::collections::HashMap;

/// A typed configuration section.
pub trait Section: std::fmt::Debug {
    /// Lists the options and subsections, in the order they are printed.
    fn visit(&mut self, v: &mut dyn Visitor);
    /// Checks rules across options of this section; called after loading.
    fn check(&self, _c: &mut Checker<'_>) {}
}

/// Whether the instances of a repeated section carry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Every instance must have a name, names are unique.
    Required,
    /// No instance may have a name.
    Forbidden,
    /// At most one unnamed instance; names are unique.
    Optional,
}

/// A section that may be absent.
pub trait OptionalSection {
    /// The section if present.
    fn get(&mut self) -> Option<&mut dyn Section>;
    /// Makes the section present with its defaults and returns it.
    fn insert_default(&mut self) -> &mut dyn Section;
    /// A default instance, for printing templates and documentation.
    fn template(&self) -> Box<dyn Section>;
}

impl<S: Section + Default + 'static> OptionalSection for Option<S> {
    fn get(&mut self) -> Option<&mut dyn Section> {
        self.as_mut().map(|s| s as &mut dyn Section)
    }
    fn insert_default(&mut self) -> &mut dyn Section {
        self.insert(S::default())
    }
    fn template(&self) -> Box<dyn Section> {
        Box::new(S::default())
    }
}

/// One instance of a repeated section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Named<S> {
    /// The section name (`smtps MTA { ... }` has name `MTA`).
    pub name: Option<String>,
    /// The section content.
    pub body: S,
}

/// A section keyword that may appear several times.
pub trait RepeatedSection {
    /// Name rules.
    fn naming(&self) -> Naming;
    /// Most instances allowed.
    fn max(&self) -> usize;
    /// Removes all instances (the loader replaces defaults by what the file
    /// says).
    fn clear(&mut self);
    /// Adds an instance with defaults.
    fn push(&mut self, name: Option<String>) -> &mut dyn Section;
    /// Number of instances.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Instance `i`.
    fn item(&mut self, i: usize) -> Option<(Option<String>, &mut dyn Section)>;
    /// A default instance, for templates and documentation.
    fn template(&self) -> Box<dyn Section>;
}

/// A `Vec<Named<S>>` with its name rule and limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeated<S> {
    /// The instances, in file order.
    pub items: Vec<Named<S>>,
    naming: Naming,
    max: usize,
}

impl<S> Repeated<S> {
    /// An empty set of instances.
    pub fn new(naming: Naming, max: usize) -> Self {
        Repeated {
            items: Vec::new(),
            naming,
            max,
        }
    }

    /// With initial (default) instances.
    pub fn with(naming: Naming, max: usize, items: Vec<Named<S>>) -> Self {
        Repeated { items, naming, max }
    }

    /// Iterates over the instances.
    pub fn iter(&self) -> std::slice::Iter<'_, Named<S>> {
        self.items.iter()
    }

    /// The instance with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&S> {
        self.items
            .iter()
            .find(|n| {
                n.name
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(name))
            })
            .map(|n| &n.body)
    }
}

impl<S: Section + Default + 'static> RepeatedSection for Repeated<S> {
    fn naming(&self) -> Naming {
        self.naming
    }
    fn max(&self) -> usize {
        self.max
    }
    fn clear(&mut self) {
        self.items.clear();
    }
    fn push(&mut self, name: Option<String>) -> &mut dyn Section {
        self.items.push(Named {
            name,
            body: S::default(),
        });
        match self.items.last_mut() {
            Some(n) => &mut n.body,
            // Just pushed; this arm exists only to avoid a panic path.
            None => unreachable_section(),
        }
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn item(&mut self, i: usize) -> Option<(Option<String>, &mut dyn Section)> {
        self.items
            .get_mut(i)
            .map(|n| (n.name.clone(), &mut n.body as &mut dyn Section))
    }
    fn template(&self) -> Box<dyn Section> {
        Box::new(S::default())
    }
}

fn unreachable_section() -> &'static mut dyn Section {
    // A leaked zero-sized section: only reachable if Vec::push did not push.
    #[derive(Debug)]
    struct Empty;
    impl Section for Empty {
        fn visit(&mut self, _v: &mut dyn Visitor) {}
    }
    Box::leak(Box::new(Empty))
}

/// A walker over a section's description.
pub trait Visitor {
    /// An option.
    fn option(&mut self, name: &'static str, doc: &'static str, field: &mut dyn FieldValue);
    /// Another accepted spelling or place of an option (loaded, never
    /// printed): the seed's own examples use some older names.
    fn alias(&mut self, _name: &'static str, _field: &mut dyn FieldValue) {}
    /// A subsection that is always present.
    fn section(&mut self, name: &'static str, doc: &'static str, s: &mut dyn Section);
    /// A subsection that may be absent.
    fn optional(&mut self, name: &'static str, doc: &'static str, s: &mut dyn OptionalSection);
    /// A subsection keyword that may appear several times.
    fn repeated(&mut self, name: &'static str, doc: &'static str, s: &mut dyn RepeatedSection);
}

/// Where each loaded option and section was written, by path
/// (`qmgr/IQDB/max_cache_entries`, `smtps#1/id`), names lower-cased.
pub type Locations = HashMap<String, Span>;

/// Which option name first set a field, keyed by the field's address, so
/// that an option set under two of its names (an alias and its canonical
/// name) is an error, not a silent override.
///
/// Addresses are only stable while nothing moves: each loader keeps its own
/// map; a plain or optional subsection (stored inline in its parent) hands
/// its entries up to the parent, an instance of a repeated section (stored
/// in a Vec that may reallocate) does not. Aliases never point into
/// repeated sections.
type SetBy = HashMap<usize, (String, Span)>;

fn field_key(field: &mut dyn FieldValue) -> usize {
    (field as *mut dyn FieldValue).cast::<u8>() as usize
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_ascii_lowercase()
    } else {
        format!("{path}/{}", name.to_ascii_lowercase())
    }
}

// ---------------------------------------------------------------------------
// Loader

/// Loads `entries` into `section`; returns errors in file order.
pub fn load(
    file: &str,
    entries: &[Entry],
    section: &mut dyn Section,
    locs: &mut Locations,
) -> Vec<ConfError> {
    let mut errors = Vec::new();
    let mut l = Loader {
        file,
        entries,
        used: vec![false; entries.len()],
        names: Vec::new(),
        desc: "the top level".into(),
        path: String::new(),
        errors: &mut errors,
        locs,
        set_by: SetBy::new(),
    };
    section.visit(&mut l);
    l.report_unknown();
    errors
}

struct Loader<'a, 'e> {
    file: &'a str,
    entries: &'e [Entry],
    used: Vec<bool>,
    names: Vec<(&'static str, bool)>,
    desc: String,
    path: String,
    errors: &'a mut Vec<ConfError>,
    locs: &'a mut Locations,
    set_by: SetBy,
}

impl<'a, 'e> Loader<'a, 'e> {
    fn err(&mut self, span: Span, kind: ErrorKind) {
        self.errors
            .push(ConfError::new(Location::new(self.file, span), kind));
    }

    fn matching(&self, name: &str) -> Vec<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name().eq_ignore_ascii_case(name))
            .map(|(i, _)| i)
            .collect()
    }

    fn take_option(&mut self, name: &'static str, field: &mut dyn FieldValue) {
        let idx = self.matching(name);
        let mut first: Option<Span> = None;
        for i in idx {
            if self.used[i] {
                continue;
            }
            self.used[i] = true;
            let entries = self.entries;
            let Some(entry) = entries.get(i) else {
                continue;
            };
            match entry {
                Entry::Section(s) => self.err(
                    s.span,
                    ErrorKind::WrongEntryKind {
                        name: s.keyword.clone(),
                        section: self.desc.clone(),
                        expected: "an option (name = value;)",
                        found: "a section",
                    },
                ),
                Entry::Option(o) => {
                    if let Some(f) = first {
                        self.err(
                            o.span,
                            ErrorKind::Duplicate {
                                name: o.name.clone(),
                                section: self.desc.clone(),
                                first_line: f.line,
                            },
                        );
                        continue;
                    }
                    first = Some(o.span);
                    let key = field_key(field);
                    if let Some((other, at)) = self.set_by.get(&key) {
                        self.err(
                            o.span,
                            ErrorKind::Check(format!(
                                "'{}' sets the same option as '{}' at line {}",
                                o.name, other, at.line
                            )),
                        );
                        continue;
                    }
                    self.set_by.insert(key, (o.name.clone(), o.span));
                    self.locs.insert(join(&self.path, name), o.span);
                    if let Err(message) = field.set(&o.value) {
                        self.err(
                            o.value.span(),
                            ErrorKind::InvalidValue {
                                option: o.name.clone(),
                                message,
                            },
                        );
                    }
                }
            }
        }
    }

    /// The section entries with this keyword, marking them used; options of
    /// that name are reported.
    fn take_sections(&mut self, name: &'static str) -> Vec<&'e SectionEntry> {
        let mut out = Vec::new();
        let entries = self.entries;
        for i in self.matching(name) {
            if self.used[i] {
                continue;
            }
            self.used[i] = true;
            match entries.get(i) {
                Some(Entry::Section(s)) => out.push(s),
                Some(Entry::Option(o)) => self.err(
                    o.span,
                    ErrorKind::WrongEntryKind {
                        name: o.name.clone(),
                        section: self.desc.clone(),
                        expected: "a section (name { ... })",
                        found: "an option",
                    },
                ),
                None => {}
            }
        }
        out
    }

    fn child(
        &mut self,
        s: &'e SectionEntry,
        path: String,
        desc: String,
        target: &mut dyn Section,
        inline: bool,
    ) {
        self.locs.insert(path.clone(), s.span);
        let mut l = Loader {
            file: self.file,
            entries: &s.entries,
            used: vec![false; s.entries.len()],
            names: Vec::new(),
            desc,
            path,
            errors: self.errors,
            locs: self.locs,
            set_by: SetBy::new(),
        };
        target.visit(&mut l);
        l.report_unknown();
        if inline {
            let child = std::mem::take(&mut l.set_by);
            self.set_by.extend(child);
        }
    }

    fn single(
        &mut self,
        name: &'static str,
        target: Option<&mut dyn Section>,
        opt: Option<&mut dyn OptionalSection>,
    ) {
        let secs = self.take_sections(name);
        let mut first: Option<Span> = None;
        let mut target = target;
        let mut opt = opt;
        for s in secs {
            if let Some(f) = first {
                self.err(
                    s.span,
                    ErrorKind::Duplicate {
                        name: s.keyword.clone(),
                        section: self.desc.clone(),
                        first_line: f.line,
                    },
                );
                continue;
            }
            first = Some(s.span);
            if let Some(n) = &s.name {
                self.err(
                    n.span,
                    ErrorKind::Check(format!(
                        "section '{}' in {} takes no name (found '{}')",
                        s.keyword,
                        self.desc,
                        n.text.escape_debug()
                    )),
                );
            }
            let path = join(&self.path, name);
            let desc = self.sub_desc(&s.keyword, None);
            if let Some(t) = target.take() {
                self.child(s, path, desc, t, true);
            } else if let Some(o) = opt.take() {
                let t = o.insert_default();
                self.child(s, path, desc, t, true);
            }
        }
    }

    fn sub_desc(&self, keyword: &str, name: Option<&str>) -> String {
        let own = match name {
            Some(n) => format!("{keyword} {n}"),
            None => keyword.to_owned(),
        };
        if self.path.is_empty() {
            format!("'{own}'")
        } else {
            format!("{}/'{own}'", self.desc)
        }
    }

    fn report_unknown(&mut self) {
        let entries = self.entries;
        for (i, e) in entries.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            let hint = self.hint(e.name(), matches!(e, Entry::Section(_)));
            let kind = match e {
                Entry::Option(o) => ErrorKind::UnknownOption {
                    name: o.name.clone(),
                    section: self.desc.clone(),
                    hint,
                },
                Entry::Section(s) => ErrorKind::UnknownSection {
                    name: s.keyword.clone(),
                    section: self.desc.clone(),
                    hint,
                },
            };
            self.err(e.span(), kind);
        }
    }

    fn hint(&self, name: &str, is_section: bool) -> String {
        let lower = name.to_ascii_lowercase();
        let best = self
            .names
            .iter()
            .map(|(n, sec)| (edit_distance(&lower, &n.to_ascii_lowercase()), *n, *sec))
            .filter(|(d, _, _)| *d <= 2.max(lower.len() / 4))
            .min_by_key(|(d, _, _)| *d);
        match best {
            Some((_, n, sec)) if sec == is_section => format!(", did you mean '{n}'?"),
            Some((_, n, true)) => format!(", did you mean the section '{n} {{ ... }}'?"),
            Some((_, n, false)) => format!(", did you mean the option '{n} = ...;'?"),
            None => String::new(),
        }
    }
}

/// Levenshtein distance, for "did you mean" hints on short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl<'a, 'e> Visitor for Loader<'a, 'e> {
    fn option(&mut self, name: &'static str, _doc: &'static str, field: &mut dyn FieldValue) {
        self.names.push((name, false));
        self.take_option(name, field);
    }

    fn alias(&mut self, name: &'static str, field: &mut dyn FieldValue) {
        self.names.push((name, false));
        self.take_option(name, field);
    }

    fn section(&mut self, name: &'static str, _doc: &'static str, s: &mut dyn Section) {
        self.names.push((name, true));
        self.single(name, Some(s), None);
    }

    fn optional(&mut self, name: &'static str, _doc: &'static str, s: &mut dyn OptionalSection) {
        self.names.push((name, true));
        self.single(name, None, Some(s));
    }

    fn repeated(&mut self, name: &'static str, _doc: &'static str, r: &mut dyn RepeatedSection) {
        self.names.push((name, true));
        let secs = self.take_sections(name);
        if secs.is_empty() {
            return;
        }
        r.clear();
        let mut seen: Vec<(String, Span)> = Vec::new();
        let mut unnamed: Option<Span> = None;
        for s in secs {
            let sname = s.name.as_ref().map(|n| n.text.clone());
            match (r.naming(), &sname) {
                (Naming::Required, None) => {
                    self.err(
                        s.span,
                        ErrorKind::Check(format!(
                            "section '{}' in {} needs a name ({} NAME {{ ... }})",
                            s.keyword, self.desc, s.keyword
                        )),
                    );
                    continue;
                }
                (Naming::Forbidden, Some(n)) => {
                    self.err(
                        s.span,
                        ErrorKind::Check(format!(
                            "section '{}' in {} takes no name (found '{}')",
                            s.keyword,
                            self.desc,
                            n.escape_debug()
                        )),
                    );
                    continue;
                }
                (Naming::Optional, None) => {
                    if let Some(first) = unnamed {
                        self.err(
                            s.span,
                            ErrorKind::Check(format!(
                                "a second unnamed '{}' section in {} (first at line {}); give each a unique name",
                                s.keyword, self.desc, first.line
                            )),
                        );
                        continue;
                    }
                    unnamed = Some(s.span);
                }
                _ => {}
            }
            if let Some(n) = &sname {
                if let Some((_, first)) = seen.iter().find(|(x, _)| x.eq_ignore_ascii_case(n)) {
                    self.err(
                        s.span,
                        ErrorKind::Check(format!(
                            "section '{} {}' in {} is defined twice (first at line {})",
                            s.keyword,
                            n.escape_debug(),
                            self.desc,
                            first.line
                        )),
                    );
                    continue;
                }
                seen.push((n.clone(), s.span));
            }
            if r.len() >= r.max() {
                self.err(
                    s.span,
                    ErrorKind::Check(format!(
                        "too many '{}' sections in {} (at most {})",
                        s.keyword,
                        self.desc,
                        r.max()
                    )),
                );
                continue;
            }
            let path = format!("{}#{}", join(&self.path, name), r.len());
            let desc = self.sub_desc(&s.keyword, sname.as_deref());
            let target = r.push(sname);
            self.child(s, path, desc, target, false);
        }
    }
}

// ---------------------------------------------------------------------------
// Printer

/// Prints a section's effective values in configuration syntax. Options that
/// are not set and sections that are absent are printed as comments.
pub fn print(section: &mut dyn Section) -> String {
    let mut p = Printer {
        out: String::new(),
        indent: 0,
        comment: false,
    };
    section.visit(&mut p);
    p.out
}

struct Printer {
    out: String,
    indent: usize,
    comment: bool,
}

impl Printer {
    fn line(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
        if self.comment {
            self.out.push_str("# ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn block(&mut self, head: &str, s: &mut dyn Section, comment: bool) {
        let was = self.comment;
        self.comment = was || comment;
        self.line(&format!("{head} {{"));
        self.indent += 1;
        s.visit(self);
        self.indent -= 1;
        self.line("}");
        self.comment = was;
    }
}

impl Visitor for Printer {
    fn option(&mut self, name: &'static str, _doc: &'static str, field: &mut dyn FieldValue) {
        match field.render() {
            Some(v) => self.line(&format!("{name} = {v};")),
            None => {
                let was = self.comment;
                self.comment = true;
                self.line(&format!("{name} = ...; (not set)"));
                self.comment = was;
            }
        }
    }

    fn section(&mut self, name: &'static str, _doc: &'static str, s: &mut dyn Section) {
        self.block(name, s, false);
    }

    fn optional(&mut self, name: &'static str, _doc: &'static str, s: &mut dyn OptionalSection) {
        match s.get() {
            Some(sec) => self.block(name, sec, false),
            None => {
                let mut t = s.template();
                self.block(
                    &format!("{name} (not configured; defaults shown)"),
                    t.as_mut(),
                    true,
                );
            }
        }
    }

    fn repeated(&mut self, name: &'static str, _doc: &'static str, r: &mut dyn RepeatedSection) {
        if r.is_empty() {
            let mut t = r.template();
            let head = match r.naming() {
                Naming::Required => format!("{name} NAME (none configured; defaults shown)"),
                _ => format!("{name} (none configured; defaults shown)"),
            };
            self.block(&head, t.as_mut(), true);
            return;
        }
        for i in 0..r.len() {
            if let Some((n, s)) = r.item(i) {
                let head = match n {
                    Some(n) => format!("{name} {}", word_or_quote(&n)),
                    None => name.to_owned(),
                };
                self.block(&head, s, false);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Checker

/// Collects cross-field errors, placing each at the option it concerns (or
/// the enclosing section, or the top of the file for pure defaults).
#[derive(Debug)]
pub struct Checker<'a> {
    file: &'a str,
    locs: &'a Locations,
    path: String,
    desc: String,
    errors: Vec<ConfError>,
}

impl<'a> Checker<'a> {
    /// A checker for a loaded file.
    pub fn new(file: &'a str, locs: &'a Locations) -> Self {
        Checker {
            file,
            locs,
            path: String::new(),
            desc: "the top level".into(),
            errors: Vec::new(),
        }
    }

    /// The errors found.
    pub fn into_errors(self) -> Vec<ConfError> {
        self.errors
    }

    /// A description of the current section, for messages.
    pub fn section_desc(&self) -> &str {
        &self.desc
    }

    /// Where a path relative to the current section was written.
    fn span_of(&self, rel: &[&str]) -> Span {
        let mut p = self.path.clone();
        for part in rel {
            p = join(&p, part);
        }
        // The option itself, else the nearest enclosing section.
        let mut probe = p.as_str();
        loop {
            if let Some(s) = self.locs.get(probe) {
                return *s;
            }
            match probe.rfind('/') {
                Some(i) => probe = &probe[..i],
                None => {
                    return self
                        .locs
                        .get(probe)
                        .copied()
                        .unwrap_or(Span { line: 1, col: 1 });
                }
            }
        }
    }

    /// Reports an error at the option `rel` (a path below the current
    /// section, e.g. `["IQDB", "hash_table_entries"]`).
    pub fn error(&mut self, rel: &[&str], message: String) {
        let span = self.span_of(rel);
        self.errors.push(ConfError::new(
            Location::new(self.file, span),
            ErrorKind::Check(message),
        ));
    }

    fn enter(&mut self, part: String, desc: String) -> (String, String) {
        let old = (self.path.clone(), self.desc.clone());
        self.path = join(&self.path, &part);
        self.desc = desc;
        old
    }

    fn leave(&mut self, old: (String, String)) {
        self.path = old.0;
        self.desc = old.1;
    }
}

/// Runs [`Section::check`] on a section and all its subsections.
pub fn check(section: &mut dyn Section, c: &mut Checker<'_>) {
    section.check(c);
    let mut w = CheckWalk { c };
    section.visit(&mut w);
}

struct CheckWalk<'c, 'a> {
    c: &'c mut Checker<'a>,
}

impl CheckWalk<'_, '_> {
    fn sub(&mut self, part: String, desc: String, s: &mut dyn Section) {
        let old = self.c.enter(part, desc);
        s.check(self.c);
        s.visit(self);
        self.c.leave(old);
    }

    fn desc(&self, own: String) -> String {
        if self.c.path.is_empty() {
            format!("'{own}'")
        } else {
            format!("{}/'{own}'", self.c.desc)
        }
    }
}

impl Visitor for CheckWalk<'_, '_> {
    fn option(&mut self, _: &'static str, _: &'static str, _: &mut dyn FieldValue) {}

    fn section(&mut self, name: &'static str, _doc: &'static str, s: &mut dyn Section) {
        let d = self.desc(name.to_owned());
        self.sub(name.to_owned(), d, s);
    }

    fn optional(&mut self, name: &'static str, _doc: &'static str, s: &mut dyn OptionalSection) {
        let d = self.desc(name.to_owned());
        if let Some(sec) = s.get() {
            self.sub(name.to_owned(), d, sec);
        }
    }

    fn repeated(&mut self, name: &'static str, _doc: &'static str, r: &mut dyn RepeatedSection) {
        for i in 0..r.len() {
            let part = format!("{}#{i}", name.to_ascii_lowercase());
            let desc = |n: &Option<String>| match n {
                Some(n) => format!("{name} {n}"),
                None => name.to_owned(),
            };
            if let Some((n, s)) = r.item(i) {
                let d = self.desc(desc(&n));
                self.sub(part, d, s);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reference documentation

/// Writes a Markdown reference of every option under `section`: one table
/// per section with type, default and description.
pub fn reference(section: &mut dyn Section, top_title: &str) -> String {
    doc_section(section, top_title, "")
}

fn doc_section(section: &mut dyn Section, title: &str, doc: &str) -> String {
    let mut d = DocWalk {
        title: title.to_owned(),
        rows: Vec::new(),
        flags: Vec::new(),
        subs: Vec::new(),
    };
    section.visit(&mut d);
    let mut out = format!("\n## {title}\n\n");
    if !doc.is_empty() {
        out.push_str(doc);
        out.push_str("\n\n");
    }
    if !d.rows.is_empty() {
        out.push_str("| option | type | default | description |\n| --- | --- | --- | --- |\n");
        for (n, k, def, doc) in &d.rows {
            let def = if def.is_empty() {
                "(not set)".to_owned()
            } else {
                format!("`{}`", cell(def))
            };
            out.push_str(&format!(
                "| `{n}` | {} | {def} | {} |\n",
                cell(k),
                cell(doc)
            ));
        }
    }
    for (option, flags) in &d.flags {
        out.push_str(&format!("\nFlags of `{option}`:\n\n"));
        for (name, doc) in flags.iter() {
            out.push_str(&format!("* `{name}`: {}\n", doc.trim()));
        }
    }
    for s in d.subs {
        out.push_str(&s);
    }
    out
}

struct DocWalk {
    title: String,
    rows: Vec<(String, String, String, String)>,
    flags: Vec<(String, &'static [(&'static str, &'static str)])>,
    subs: Vec<String>,
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

impl Visitor for DocWalk {
    fn option(&mut self, name: &'static str, doc: &'static str, field: &mut dyn FieldValue) {
        let flags = field.flag_docs();
        let kind = if flags.is_empty() {
            field.kind()
        } else {
            "flags (see below)".to_owned()
        };
        self.rows.push((
            name.to_owned(),
            kind,
            field.render().unwrap_or_default(),
            doc.to_owned(),
        ));
        if !flags.is_empty() {
            self.flags.push((name.to_owned(), flags));
        }
    }

    fn section(&mut self, name: &'static str, doc: &'static str, s: &mut dyn Section) {
        let title = format!("{} / {name}", self.title);
        self.subs.push(doc_section(s, &title, doc));
    }

    fn optional(&mut self, name: &'static str, doc: &'static str, s: &mut dyn OptionalSection) {
        let mut t = s.template();
        let title = format!("{} / {name} (optional)", self.title);
        self.subs.push(doc_section(t.as_mut(), &title, doc));
    }

    fn repeated(&mut self, name: &'static str, doc: &'static str, r: &mut dyn RepeatedSection) {
        let suffix = match r.naming() {
            Naming::Required => " NAME (repeatable)",
            Naming::Optional => " [NAME] (repeatable)",
            Naming::Forbidden => " (repeatable)",
        };
        let mut t = r.template();
        let title = format!("{} / {name}{suffix}", self.title);
        self.subs.push(doc_section(t.as_mut(), &title, doc));
    }
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("io_timout", "io_timeout"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
