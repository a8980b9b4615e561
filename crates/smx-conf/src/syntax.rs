//! The grammar of the configuration language (seed sections 3.2, 3.2.1).
//!
//! ```text
//! conf    = entries
//! entries = entry*
//! entry   = option | section
//! section = keyword [name] "{" entries "}" [";"]
//! option  = option-name "=" rhs
//! rhs     = value ";" | "{" value-list "}" [";"]
//! ```
//!
//! * `#` starts a comment that runs to the end of the line (outside quotes).
//! * A value is one or more words or quoted strings up to the `;` (or the
//!   `,`/`}` inside a list). Several words are joined by one space, so
//!   `1h 5m 12s` is the single value `"1h 5m 12s"`. The last option before a
//!   closing brace may omit its `;` (the seed's own examples do).
//! * Adjacent quoted strings are concatenated as in C, also across lines.
//!   Escapes inside quotes: `\"`, `\\`, `\n`, `\t`, `\r`. A quoted string
//!   cannot contain a raw line break.
//! * A word is a run of characters other than white space and the
//!   punctuation `{ } ; = , " #`.
//! * Keywords and option names are case-insensitive; that is decided by the
//!   typed layer, which compares names with [`eq_ignore_ascii_case`].
//!
//! The parser is a pure function from text to a [`Document`] (or errors);
//! it does no I/O. It never panics on any input and bounds what it accepts:
//! [`MAX_INPUT`] bytes, [`MAX_DEPTH`] nested sections or lists. After a
//! syntax error it skips to the next `;` or closing brace and goes on, so one
//! run reports every independent error.
//!
//! [`eq_ignore_ascii_case`]: str::eq_ignore_ascii_case

use crate::error::{ConfError, ErrorKind, Location};

/// Largest configuration text accepted (bytes).
pub const MAX_INPUT: usize = 16 * 1024 * 1024;
/// Deepest nesting of sections and lists accepted.
pub const MAX_DEPTH: usize = 32;
/// Most syntax errors reported from one text; parsing stops after that.
pub const MAX_ERRORS: usize = 100;

/// A position in the configuration text (1-based line and column, counted
/// in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Span {
    /// Line, starting at 1.
    pub line: u32,
    /// Column, starting at 1, in characters.
    pub col: u32,
}

/// A parsed configuration text: the top-level entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// Entries in file order.
    pub entries: Vec<Entry>,
}

/// One entry: an option or a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `name = value;`
    Option(OptionEntry),
    /// `keyword [name] { entries }`
    Section(SectionEntry),
}

/// `name = value;` or `name = { v1, v2 };`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionEntry {
    /// The option name as written.
    pub name: String,
    /// Where the name starts.
    pub span: Span,
    /// The right-hand side.
    pub value: Value,
}

/// `keyword [name] { entries }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionEntry {
    /// The section keyword as written.
    pub keyword: String,
    /// The optional section name.
    pub name: Option<Scalar>,
    /// Where the keyword starts.
    pub span: Span,
    /// Entries inside the braces.
    pub entries: Vec<Entry>,
}

/// The right-hand side of an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A single value.
    Scalar(Scalar),
    /// A braced list of values; `span` is the opening brace.
    List(Vec<Scalar>, Span),
}

impl Value {
    /// Where the value starts.
    pub fn span(&self) -> Span {
        match self {
            Value::Scalar(s) => s.span,
            Value::List(_, span) => *span,
        }
    }
}

/// A single value: words joined by one space, or (concatenated) quoted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The text, quotes removed and escapes resolved.
    pub text: String,
    /// Whether any part of it was quoted.
    pub quoted: bool,
    /// Where it starts.
    pub span: Span,
}

impl Entry {
    /// Where the entry starts.
    pub fn span(&self) -> Span {
        match self {
            Entry::Option(o) => o.span,
            Entry::Section(s) => s.span,
        }
    }

    /// The option name or section keyword.
    pub fn name(&self) -> &str {
        match self {
            Entry::Option(o) => &o.name,
            Entry::Section(s) => &s.keyword,
        }
    }
}

/// Parses a whole configuration text. `file` names the source in errors.
///
/// Returns every syntax error found (up to [`MAX_ERRORS`]) if there is any.
pub fn parse(file: &str, text: &str) -> Result<Document, Vec<ConfError>> {
    if text.len() > MAX_INPUT {
        return Err(vec![ConfError::new(
            Location::new(file, Span { line: 1, col: 1 }),
            ErrorKind::Syntax(format!(
                "configuration text is {} bytes, more than the limit of {MAX_INPUT}",
                text.len()
            )),
        )]);
    }
    let mut p = Parser::new(file, text);
    let entries = p.entries(0, true);
    if p.errors.is_empty() {
        Ok(Document { entries })
    } else {
        Err(p.errors)
    }
}

/// Parses the body of a section (entries without the surrounding braces are
/// not allowed: the text must be `{ entries }`), as used by map right-hand
/// sides written in configuration syntax (seed 3.9.3, 3.13).
pub fn parse_braced_body(file: &str, text: &str) -> Result<Vec<Entry>, Vec<ConfError>> {
    if text.len() > MAX_INPUT {
        return parse(file, text).map(|d| d.entries);
    }
    let mut p = Parser::new(file, text);
    let entries = match p.next() {
        Tok {
            kind: TokKind::LBrace,
            ..
        } => {
            let e = p.entries(1, false);
            match p.next() {
                Tok {
                    kind: TokKind::RBrace,
                    ..
                } => {
                    if let Tok {
                        kind: TokKind::Semi,
                        ..
                    } = p.peek()
                    {
                        p.next();
                    }
                    let t = p.next();
                    if t.kind != TokKind::Eof {
                        p.error(t.span, format!("expected end of input, found {}", t.kind));
                    }
                }
                t => p.error(t.span, format!("expected '}}', found {}", t.kind)),
            }
            e
        }
        t => {
            p.error(t.span, format!("expected '{{', found {}", t.kind));
            Vec::new()
        }
    };
    if p.errors.is_empty() {
        Ok(entries)
    } else {
        Err(p.errors)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokKind {
    LBrace,
    RBrace,
    Semi,
    Eq,
    Comma,
    Word(String),
    Str(String),
    Eof,
    /// A lexical error; the message says what is wrong.
    Bad(String),
}

impl std::fmt::Display for TokKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokKind::LBrace => f.write_str("'{'"),
            TokKind::RBrace => f.write_str("'}'"),
            TokKind::Semi => f.write_str("';'"),
            TokKind::Eq => f.write_str("'='"),
            TokKind::Comma => f.write_str("','"),
            TokKind::Word(w) => write!(f, "'{}'", shorten(w)),
            TokKind::Str(s) => write!(f, "string \"{}\"", shorten(s)),
            TokKind::Eof => f.write_str("end of input"),
            TokKind::Bad(m) => f.write_str(m),
        }
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    out.escape_debug().to_string()
}

#[derive(Debug, Clone)]
struct Tok {
    kind: TokKind,
    span: Span,
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    col: u32,
}

fn is_punct(c: char) -> bool {
    matches!(c, '{' | '}' | ';' | '=' | ',' | '"' | '#')
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            col: 1,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    fn span(&self) -> Span {
        Span {
            line: self.line,
            col: self.col,
        }
    }

    fn skip_blank(&mut self) {
        while let Some(&c) = self.chars.peek() {
            if c.is_whitespace() {
                self.bump();
            } else if c == '#' {
                while let Some(&c) = self.chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    /// One quoted string starting at the opening quote.
    fn quoted(&mut self) -> Result<String, String> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None => return Err("unterminated string: missing closing '\"'".into()),
                Some('\n') => {
                    return Err(
                        "unterminated string: a quoted string cannot contain a line \
                                break (split it into \"...\" \"...\" parts instead)"
                            .into(),
                    );
                }
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some(c) => {
                        return Err(format!(
                            "unknown escape '\\{}' in string (known: \\\" \\\\ \\n \\t \\r)",
                            c.escape_debug()
                        ));
                    }
                    None => return Err("unterminated string: missing closing '\"'".into()),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn next_tok(&mut self) -> Tok {
        self.skip_blank();
        let span = self.span();
        let Some(&c) = self.chars.peek() else {
            return Tok {
                kind: TokKind::Eof,
                span,
            };
        };
        let kind = match c {
            '{' | '}' | ';' | '=' | ',' => {
                self.bump();
                match c {
                    '{' => TokKind::LBrace,
                    '}' => TokKind::RBrace,
                    ';' => TokKind::Semi,
                    '=' => TokKind::Eq,
                    _ => TokKind::Comma,
                }
            }
            '"' => {
                // C-style concatenation: "a" "b" (possibly across lines and
                // comments) is one string.
                let mut text = String::new();
                loop {
                    match self.quoted() {
                        Ok(part) => text.push_str(&part),
                        Err(msg) => {
                            return Tok {
                                kind: TokKind::Bad(msg),
                                span,
                            };
                        }
                    }
                    self.skip_blank();
                    if self.chars.peek() != Some(&'"') {
                        break;
                    }
                }
                TokKind::Str(text)
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = self.chars.peek() {
                    if c.is_whitespace() || is_punct(c) {
                        break;
                    }
                    w.push(c);
                    self.bump();
                }
                TokKind::Word(w)
            }
        };
        Tok { kind, span }
    }
}

struct Parser<'a> {
    file: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Tok>,
    errors: Vec<ConfError>,
}

impl<'a> Parser<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        Parser {
            file,
            lexer: Lexer::new(text),
            peeked: None,
            errors: Vec::new(),
        }
    }

    fn peek(&mut self) -> &Tok {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_tok());
        }
        // The branch above guarantees `peeked` is filled; fall back to
        // reading again rather than panicking.
        match self.peeked {
            Some(ref t) => t,
            None => unreachable_tok(),
        }
    }

    fn next(&mut self) -> Tok {
        match self.peeked.take() {
            Some(t) => t,
            None => self.lexer.next_tok(),
        }
    }

    fn error(&mut self, span: Span, msg: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(ConfError::new(
                Location::new(self.file, span),
                ErrorKind::Syntax(msg),
            ));
        }
    }

    fn too_many_errors(&self) -> bool {
        self.errors.len() >= MAX_ERRORS
    }

    /// Skips to just after the next `;` or to (not past) the `}` that closes
    /// the current section, whichever comes first, honouring nested braces.
    fn recover(&mut self) {
        let mut depth = 0usize;
        loop {
            match &self.peek().kind {
                TokKind::Eof => return,
                TokKind::Semi if depth == 0 => {
                    self.next();
                    return;
                }
                TokKind::RBrace if depth == 0 => return,
                TokKind::RBrace => depth -= 1,
                TokKind::LBrace => depth += 1,
                _ => {}
            }
            self.next();
        }
    }

    /// After a stray '{': skips to just after its matching '}'.
    fn skip_group(&mut self) {
        let mut depth = 1usize;
        loop {
            match self.next().kind {
                TokKind::Eof => return,
                TokKind::LBrace => depth += 1,
                TokKind::RBrace => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// Entries up to a closing brace (not consumed) or, at top level, the end.
    fn entries(&mut self, depth: usize, top: bool) -> Vec<Entry> {
        let mut entries = Vec::new();
        loop {
            if self.too_many_errors() {
                return entries;
            }
            let tok = self.peek().clone();
            match tok.kind {
                TokKind::Eof => {
                    if !top {
                        self.error(tok.span, "expected '}' before end of input".into());
                    }
                    return entries;
                }
                TokKind::RBrace => {
                    if top {
                        self.next();
                        self.error(tok.span, "unexpected '}' without a matching '{'".into());
                        continue;
                    }
                    return entries;
                }
                TokKind::Semi => {
                    // A stray ';' (e.g. after a section) is harmless.
                    self.next();
                }
                TokKind::Word(name) => {
                    self.next();
                    match self.entry(name, tok.span, depth) {
                        Some(e) => entries.push(e),
                        None => self.recover(),
                    }
                }
                other => {
                    self.next();
                    self.error(
                        tok.span,
                        format!("expected an option name or a section keyword, found {other}"),
                    );
                    if other == TokKind::LBrace {
                        self.skip_group();
                    } else {
                        self.recover();
                    }
                }
            }
        }
    }

    /// The rest of an entry after its first word.
    fn entry(&mut self, name: String, span: Span, depth: usize) -> Option<Entry> {
        let tok = self.next();
        match tok.kind {
            TokKind::Eq => {
                let value = self.rhs(depth)?;
                Some(Entry::Option(OptionEntry { name, span, value }))
            }
            TokKind::LBrace => self.section_body(depth, tok.span).map(|entries| {
                Entry::Section(SectionEntry {
                    keyword: name,
                    name: None,
                    span,
                    entries,
                })
            }),
            TokKind::Word(_) | TokKind::Str(_) => {
                let name_span = tok.span;
                let was_quoted = matches!(tok.kind, TokKind::Str(_));
                let (TokKind::Word(sname) | TokKind::Str(sname)) = tok.kind else {
                    return None;
                };
                let brace = self.next();
                if brace.kind != TokKind::LBrace {
                    self.error(
                        brace.span,
                        format!(
                            "expected '{{' to open section '{name} {}', found {}",
                            shorten(&sname),
                            brace.kind
                        ),
                    );
                    return None;
                }
                let entries = self.section_body(depth, brace.span)?;
                Some(Entry::Section(SectionEntry {
                    keyword: name,
                    name: Some(Scalar {
                        text: sname,
                        quoted: was_quoted,
                        span: name_span,
                    }),
                    span,
                    entries,
                }))
            }
            TokKind::Bad(msg) => {
                self.error(tok.span, msg);
                None
            }
            other => {
                self.error(
                    tok.span,
                    format!(
                        "expected '=' after option name or '{{' after section keyword '{}', found {other}",
                        shorten(&name)
                    ),
                );
                None
            }
        }
    }

    /// After the opening brace of a section: entries, the closing brace, an
    /// optional ';'.
    fn section_body(&mut self, depth: usize, open: Span) -> Option<Vec<Entry>> {
        if depth + 1 > MAX_DEPTH {
            self.error(
                open,
                format!("sections and lists nested more than {MAX_DEPTH} deep"),
            );
            return None;
        }
        let entries = self.entries(depth + 1, false);
        let tok = self.next();
        if tok.kind != TokKind::RBrace {
            // entries() only returns on '}' or end of input, and reported
            // the missing brace already.
            return Some(entries);
        }
        if self.peek().kind == TokKind::Semi {
            self.next();
        }
        Some(entries)
    }

    /// The right-hand side after '='.
    fn rhs(&mut self, depth: usize) -> Option<Value> {
        let tok = self.peek().clone();
        if tok.kind == TokKind::LBrace {
            self.next();
            if depth + 1 > MAX_DEPTH {
                self.error(
                    tok.span,
                    format!("sections and lists nested more than {MAX_DEPTH} deep"),
                );
                return None;
            }
            let items = self.list(tok.span)?;
            if self.peek().kind == TokKind::Semi {
                self.next();
            }
            return Some(Value::List(items, tok.span));
        }
        let (scalar, last) = self.scalar_words("a value")?;
        let end = self.peek().clone();
        if let (TokKind::Eq | TokKind::LBrace, Some((span, word))) = (&end.kind, &last) {
            // `a = 1 <newline> b = 2;`: the ';' after 1 is missing and the
            // next option's name was read as part of the value.
            self.error(
                *span,
                format!(
                    "expected ';' before '{}' (missing ';' at the end of the previous value?)",
                    shorten(word)
                ),
            );
            return None;
        }
        match end.kind {
            TokKind::Semi => {
                self.next();
                Some(Value::Scalar(scalar))
            }
            // The last option of a section may omit its ';'.
            TokKind::RBrace => Some(Value::Scalar(scalar)),
            other => {
                self.error(
                    end.span,
                    format!("expected ';' after the value, found {other}"),
                );
                None
            }
        }
    }

    /// Words and strings up to a delimiter, joined by single spaces.
    fn scalar(&mut self, what: &str) -> Option<Scalar> {
        self.scalar_words(what).map(|(s, _)| s)
    }

    /// Like [`Parser::scalar`], also returning the last word's position and
    /// text when the value has more than one word.
    fn scalar_words(&mut self, what: &str) -> Option<(Scalar, Option<(Span, String)>)> {
        let mut text = String::new();
        let mut quoted = false;
        let mut start = None;
        let mut last: Option<(Span, String)> = None;
        loop {
            let tok = self.peek().clone();
            match tok.kind {
                TokKind::Word(w) => {
                    self.next();
                    if start.is_some() {
                        last = Some((tok.span, w.clone()));
                    }
                    if start.is_some() {
                        text.push(' ');
                    }
                    start.get_or_insert(tok.span);
                    text.push_str(&w);
                }
                TokKind::Str(s) => {
                    self.next();
                    if start.is_some() {
                        text.push(' ');
                    }
                    start.get_or_insert(tok.span);
                    quoted = true;
                    text.push_str(&s);
                }
                TokKind::Bad(msg) => {
                    self.next();
                    self.error(tok.span, msg);
                    return None;
                }
                other => {
                    let Some(span) = start else {
                        self.next();
                        self.error(tok.span, format!("expected {what}, found {other}"));
                        return None;
                    };
                    return Some((Scalar { text, quoted, span }, last));
                }
            }
        }
    }

    /// After the '{' of a list: values separated by ',', an optional
    /// trailing ',', the closing '}'.
    fn list(&mut self, open: Span) -> Option<Vec<Scalar>> {
        let mut items = Vec::new();
        loop {
            if self.peek().kind == TokKind::RBrace {
                self.next();
                return Some(items);
            }
            let item = self.scalar("a list value or '}'")?;
            items.push(item);
            let tok = self.next();
            match tok.kind {
                TokKind::Comma => {}
                TokKind::RBrace => return Some(items),
                TokKind::Eof => {
                    self.error(
                        open,
                        "list opened here is not closed: expected '}' before end of input".into(),
                    );
                    return None;
                }
                TokKind::Bad(msg) => {
                    self.error(tok.span, msg);
                    return None;
                }
                other => {
                    self.error(
                        tok.span,
                        format!("expected ',' or '}}' in list, found {other}"),
                    );
                    return None;
                }
            }
        }
    }
}

/// Never reached: `peek` fills the slot before reading it. Kept as a
/// function returning a static end-of-input token so that even a broken
/// invariant cannot panic.
fn unreachable_tok() -> &'static Tok {
    static EOF: Tok = Tok {
        kind: TokKind::Eof,
        span: Span { line: 0, col: 0 },
    };
    &EOF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<Entry> {
        match parse("t.conf", text) {
            Ok(d) => d.entries,
            Err(e) => panic!("unexpected errors: {e:?}"),
        }
    }

    fn errs(text: &str) -> Vec<String> {
        match parse("t.conf", text) {
            Ok(d) => panic!("expected an error, got {d:?}"),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn scalar(e: &Entry) -> &str {
        match e {
            Entry::Option(OptionEntry {
                value: Value::Scalar(s),
                ..
            }) => &s.text,
            other => panic!("not a scalar option: {other:?}"),
        }
    }

    #[test]
    fn options_and_sections() {
        let e = ok("a = 1; s { b = two; } t name { c = \"x y\"; };");
        assert_eq!(e.len(), 3);
        assert_eq!(scalar(&e[0]), "1");
        let Entry::Section(s) = &e[1] else { panic!() };
        assert_eq!(s.keyword, "s");
        assert!(s.name.is_none());
        assert_eq!(scalar(&s.entries[0]), "two");
        let Entry::Section(t) = &e[2] else { panic!() };
        assert_eq!(t.name.as_ref().map(|n| n.text.as_str()), Some("name"));
        assert_eq!(scalar(&t.entries[0]), "x y");
    }

    #[test]
    fn lists_with_trailing_comma_and_no_semicolon() {
        let e = ok("l = { a, b, }\nm = {};\nn = {x}");
        let Entry::Option(OptionEntry {
            value: Value::List(items, _),
            ..
        }) = &e[0]
        else {
            panic!()
        };
        let texts: Vec<_> = items.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
        let Entry::Option(OptionEntry {
            value: Value::List(items, _),
            ..
        }) = &e[1]
        else {
            panic!()
        };
        assert!(items.is_empty());
    }

    #[test]
    fn string_concatenation_across_lines_and_comments() {
        let e = ok("m = \"this is \"\n  \"spread \" # comment\n \"out\";");
        assert_eq!(scalar(&e[0]), "this is spread out");
    }

    #[test]
    fn escapes() {
        let e = ok(r#"m = "a\"b\\c\td";"#);
        assert_eq!(scalar(&e[0]), "a\"b\\c\td");
    }

    #[test]
    fn multi_word_values_are_joined() {
        let e = ok("t = 1h   5m\n12s;");
        assert_eq!(scalar(&e[0]), "1h 5m 12s");
    }

    #[test]
    fn last_option_may_omit_semicolon() {
        let e = ok(".TLD { host = GATE.WAY }");
        let Entry::Section(s) = &e[0] else { panic!() };
        assert_eq!(scalar(&s.entries[0]), "GATE.WAY");
    }

    #[test]
    fn words_may_contain_paths_and_addresses() {
        let e = ok("p = /usr/libexec/smtps; a = 127.0.0.1:2525; f = -starttls;");
        assert_eq!(scalar(&e[0]), "/usr/libexec/smtps");
        assert_eq!(scalar(&e[1]), "127.0.0.1:2525");
        assert_eq!(scalar(&e[2]), "-starttls");
    }

    #[test]
    fn spans_are_line_and_column() {
        let e = ok("\n  abc = 1;\n s {\n\tx = 2; }");
        assert_eq!(e[0].span(), Span { line: 2, col: 3 });
        let Entry::Section(s) = &e[1] else { panic!() };
        assert_eq!(s.span, Span { line: 3, col: 2 });
        assert_eq!(s.entries[0].span(), Span { line: 4, col: 2 });
    }

    #[test]
    fn syntax_errors_name_line_column_and_expectation() {
        let cases: &[(&str, &str)] = &[
            (
                "a = 1",
                "t.conf:1:6: expected ';' after the value, found end of input",
            ),
            (
                "a 1;",
                "t.conf:1:4: expected '{' to open section 'a 1', found ';'",
            ),
            (
                "a;",
                "t.conf:1:2: expected '=' after option name or '{' after section keyword 'a', found ';'",
            ),
            (
                "= 1;",
                "t.conf:1:1: expected an option name or a section keyword, found '='",
            ),
            (
                "s { a = 1;",
                "t.conf:1:11: expected '}' before end of input",
            ),
            (
                "a = { x y",
                "t.conf:1:5: list opened here is not closed: expected '}' before end of input",
            ),
            (
                "a = { x; }",
                "t.conf:1:8: expected ',' or '}' in list, found ';'",
            ),
            ("a = ;", "t.conf:1:5: expected a value, found ';'"),
            (
                "a = \"abc",
                "t.conf:1:5: unterminated string: missing closing '\"'",
            ),
            (
                "a = \"ab\nc\";",
                "t.conf:1:5: unterminated string: a quoted string cannot contain a line break (split it into \"...\" \"...\" parts instead)",
            ),
            (
                "a = \"\\q\";",
                "t.conf:1:5: unknown escape '\\q' in string (known: \\\" \\\\ \\n \\t \\r)",
            ),
            ("}", "t.conf:1:1: unexpected '}' without a matching '{'"),
            (
                "a = { , };",
                "t.conf:1:7: expected a list value or '}', found ','",
            ),
        ];
        for (text, want) in cases {
            let got = errs(text);
            assert_eq!(
                got.first().map(String::as_str),
                Some(*want),
                "input {text:?}: {got:?}"
            );
        }
    }

    #[test]
    fn recovery_reports_several_errors() {
        let got = errs("a = 1\nb = 2;\nc { d = ; e = 3; }\nf 1 2;\ng = 4;");
        assert_eq!(
            got,
            [
                "t.conf:2:1: expected ';' before 'b' (missing ';' at the end of the previous value?)",
                "t.conf:3:9: expected a value, found ';'",
                "t.conf:4:5: expected '{' to open section 'f 1', found '2'",
            ]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "s {".repeat(MAX_DEPTH + 5) + &"}".repeat(MAX_DEPTH + 5);
        let got = errs(&deep);
        assert!(got[0].contains("nested more than"), "{got:?}");
        let fine = "s {".repeat(MAX_DEPTH - 1) + &"}".repeat(MAX_DEPTH - 1);
        ok(&fine);
    }

    #[test]
    fn braced_body() {
        let e = match parse_braced_body("rhs", "{ port=2525; protocol=esmtp; ipv4={127.0.0.1} }") {
            Ok(e) => e,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(e.len(), 3);
        assert!(parse_braced_body("rhs", "port=1;").is_err());
        assert!(parse_braced_body("rhs", "{ a = 1; } x").is_err());
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        /// Prints a document in canonical form (test-only printer).
        fn print(entries: &[Entry], out: &mut String) {
            for e in entries {
                match e {
                    Entry::Option(o) => {
                        out.push_str(&o.name);
                        out.push_str(" = ");
                        match &o.value {
                            Value::Scalar(s) => out.push_str(&crate::value::quote(&s.text)),
                            Value::List(items, _) => {
                                out.push('{');
                                for i in items {
                                    out.push_str(&crate::value::quote(&i.text));
                                    out.push_str(",\n");
                                }
                                out.push('}');
                            }
                        }
                        out.push_str(";\n");
                    }
                    Entry::Section(sec) => {
                        out.push_str(&sec.keyword);
                        if let Some(n) = &sec.name {
                            out.push(' ');
                            out.push_str(&crate::value::quote(&n.text));
                        }
                        out.push_str(" {\n");
                        print(&sec.entries, out);
                        out.push_str("}\n");
                    }
                }
            }
        }

        /// Structure without positions, for comparing documents.
        fn shape(entries: &[Entry]) -> Vec<String> {
            entries
                .iter()
                .map(|e| match e {
                    Entry::Option(o) => match &o.value {
                        Value::Scalar(s) => format!("{}={:?}", o.name, s.text),
                        Value::List(items, _) => format!(
                            "{}={:?}",
                            o.name,
                            items.iter().map(|i| i.text.clone()).collect::<Vec<_>>()
                        ),
                    },
                    Entry::Section(sec) => format!(
                        "{}[{:?}]{:?}",
                        sec.keyword,
                        sec.name.as_ref().map(|n| n.text.clone()),
                        shape(&sec.entries)
                    ),
                })
                .collect()
        }

        fn name() -> impl Strategy<Value = String> {
            "[A-Za-z_][A-Za-z0-9_.-]{0,12}"
        }

        fn text() -> impl Strategy<Value = String> {
            // Anything but NUL-free control characters is fine inside quotes.
            "[a-zA-Z0-9 {};=,#\"\\\\\n\t\r%é→-]{0,20}"
        }

        fn entry() -> impl Strategy<Value = Entry> {
            let scalar = |t: String| Scalar {
                text: t,
                quoted: true,
                span: Span::default(),
            };
            let option = (
                name(),
                prop_oneof![
                    text().prop_map(move |t| Value::Scalar(scalar(t))),
                    prop::collection::vec(text(), 0..4).prop_map(move |v| Value::List(
                        v.into_iter().map(scalar).collect(),
                        Span::default()
                    )),
                ],
            )
                .prop_map(|(name, value)| {
                    Entry::Option(OptionEntry {
                        name,
                        span: Span::default(),
                        value,
                    })
                });
            option.prop_recursive(4, 32, 6, move |inner| {
                (
                    name(),
                    prop::option::of(text()),
                    prop::collection::vec(inner, 0..6),
                )
                    .prop_map(move |(keyword, n, entries)| {
                        Entry::Section(SectionEntry {
                            keyword,
                            name: n.map(scalar),
                            span: Span::default(),
                            entries,
                        })
                    })
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn any_text_parses_or_fails_without_panic(s in "\\PC{0,300}") {
                let _ = parse("p", &s);
                let _ = parse_braced_body("p", &s);
            }

            #[test]
            fn grammar_soup_parses_or_fails_without_panic(s in "[a-z0-9{};=,\"#\\\\ \n\té]{0,300}") {
                match parse("p", &s) {
                    Ok(_) => {}
                    Err(errors) => {
                        prop_assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS);
                        for e in errors {
                            prop_assert!(e.location.span.line >= 1 && e.location.span.col >= 1);
                        }
                    }
                }
            }

            #[test]
            fn printed_documents_parse_back_equal(entries in prop::collection::vec(entry(), 0..8)) {
                let mut text = String::new();
                print(&entries, &mut text);
                match parse("p", &text) {
                    Ok(doc) => prop_assert_eq!(shape(&doc.entries), shape(&entries), "{}", text),
                    Err(e) => prop_assert!(false, "{:?}\n{}", e, text),
                }
            }
        }
    }
}
