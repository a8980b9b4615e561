//! SMTP commands: parsing one command line into a [`Command`], and writing
//! a command back in canonical wire syntax (`Display`, [`Command::to_line`]).
//!
//! # Accepted
//!
//! The verbs HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY EXPN HELP
//! STARTTLS AUTH ETRN, in any case, with the arguments of RFC 5321 4.1.1
//! (paths: see [`address`](crate::address); parameters: see
//! [`params`](crate::params)), RFC 3030 (BDAT), RFC 4954 (AUTH) and RFC 1985
//! (ETRN). The line is given without its CRLF (see [`line`](mod@crate::line));
//! it must be UTF-8 (non-ASCII only matters inside addresses and texts).
//!
//! Strict syntax ([`Syntax::strict`], the default, seed 6.3.1): one space
//! between verb and argument and between parameters, `MAIL FROM:<path>` and
//! `RCPT TO:<path>` with no space around the colon and angle brackets
//! required, no leading or trailing white space, texts (NOOP, HELP, VRFY,
//! EXPN) neither starting nor ending with white space. Sloppy syntax
//! (ZMailer `-s sloppy`) allows runs of spaces and tabs wherever one space
//! is allowed, around the colon, and at both ends; paths without angle
//! brackets; and a HELO/EHLO argument that is no valid host name (kept as
//! [`HeloName::Other`]; words after it are ignored).
//!
//! Rendering is always strict and canonical (upper-case verbs and
//! keywords, canonical local parts and address literals, parameters in a
//! fixed order), so a parsed command, rendered and parsed again under the
//! same [`Syntax`], is equal to itself (property-tested and fuzzed). Texts
//! that did not come from the parser are written with control characters
//! replaced by `?`, so a command can never carry a second line.
//!
//! # Rejected, and the reply for it ([`CommandError::reply`])
//!
//! | error | reply |
//! | --- | --- |
//! | empty line | 500 5.5.2 |
//! | unknown verb | 500 5.5.1 |
//! | control character or invalid UTF-8 in the line | 500 5.5.2 |
//! | argument syntax (see [`SyntaxProblem`]) | 501 5.5.4 |
//! | MAIL path | 501 5.1.7 |
//! | RCPT path | 501 5.1.3 |
//! | unknown ESMTP parameter | 555 5.5.4 |
//! | duplicate or malformed parameter | 501 5.5.4 |
//! | SIZE beyond 2^64-1 | 552 5.3.4 |
//!
//! Whether a command is allowed in the session's state, and whether a
//! UTF-8 address came with SMTPUTF8 ([`Command::needs_smtputf8`]), is for
//! the server.
//!
//! [`Syntax::strict`]: crate::Syntax::strict

use std::fmt;
use std::net::IpAddr;

use crate::Syntax;
use crate::address::{
    AddressError, Domain, ForwardPath, Host, ReversePath, forward_path_at, reverse_path_at,
};
use crate::params::{MailParams, ParamError, RcptParams};
use crate::reply::{EnhancedCode, Reply};

/// The verbs, for errors and dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// HELO.
    Helo,
    /// EHLO.
    Ehlo,
    /// MAIL.
    Mail,
    /// RCPT.
    Rcpt,
    /// DATA.
    Data,
    /// BDAT.
    Bdat,
    /// RSET.
    Rset,
    /// NOOP.
    Noop,
    /// QUIT.
    Quit,
    /// VRFY.
    Vrfy,
    /// EXPN.
    Expn,
    /// HELP.
    Help,
    /// STARTTLS.
    StartTls,
    /// AUTH.
    Auth,
    /// ETRN.
    Etrn,
}

impl Verb {
    const ALL: [Verb; 15] = [
        Verb::Helo,
        Verb::Ehlo,
        Verb::Mail,
        Verb::Rcpt,
        Verb::Data,
        Verb::Bdat,
        Verb::Rset,
        Verb::Noop,
        Verb::Quit,
        Verb::Vrfy,
        Verb::Expn,
        Verb::Help,
        Verb::StartTls,
        Verb::Auth,
        Verb::Etrn,
    ];

    /// The verb in upper case.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verb::Helo => "HELO",
            Verb::Ehlo => "EHLO",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT",
            Verb::Rset => "RSET",
            Verb::Noop => "NOOP",
            Verb::Quit => "QUIT",
            Verb::Vrfy => "VRFY",
            Verb::Expn => "EXPN",
            Verb::Help => "HELP",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH",
            Verb::Etrn => "ETRN",
        }
    }

    /// The verb named by `word`, any case.
    pub fn from_word(word: &str) -> Option<Verb> {
        Verb::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(word))
    }

    /// The syntax summary shown in 501 replies.
    pub fn usage(&self) -> &'static str {
        match self {
            Verb::Helo => "HELO hostname",
            Verb::Ehlo => "EHLO hostname",
            Verb::Mail => "MAIL FROM:<address> [parameters]",
            Verb::Rcpt => "RCPT TO:<address> [parameters]",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT size [LAST]",
            Verb::Rset => "RSET",
            Verb::Noop => "NOOP [text]",
            Verb::Quit => "QUIT",
            Verb::Vrfy => "VRFY address",
            Verb::Expn => "EXPN list",
            Verb::Help => "HELP [topic]",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH mechanism [initial-response]",
            Verb::Etrn => "ETRN [@|#]name",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The argument of HELO and EHLO.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeloName {
    /// A domain name.
    Domain(Domain),
    /// An address literal.
    Literal(IpAddr),
    /// Sloppy syntax only: a word that is neither (e.g. `my_pc`).
    Other(String),
}

impl fmt::Display for HeloName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeloName::Domain(d) => write!(f, "{d}"),
            HeloName::Literal(a) => write!(f, "{}", Host::Literal(*a)),
            HeloName::Other(s) => write_text(f, s),
        }
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// HELO name.
    Helo(HeloName),
    /// EHLO name.
    Ehlo(HeloName),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The return path.
        path: ReversePath,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The recipient.
        path: ForwardPath,
        /// ESMTP parameters.
        params: RcptParams,
    },
    /// DATA.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// The chunk size in octets.
        size: u64,
        /// LAST given: the final chunk.
        last: bool,
    },
    /// RSET.
    Rset,
    /// `NOOP [text]`.
    Noop(Option<String>),
    /// QUIT.
    Quit,
    /// VRFY text.
    Vrfy(String),
    /// EXPN text.
    Expn(String),
    /// `HELP [topic]`.
    Help(Option<String>),
    /// STARTTLS (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism, upper case (e.g. `PLAIN`).
        mechanism: String,
        /// The initial response as sent: base64, or `=` for an empty one.
        /// Decoding is the SASL layer's business.
        initial: Option<String>,
    },
    /// `ETRN [@|#]name` (RFC 1985), as sent.
    Etrn(String),
}

/// What is wrong with a command's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SyntaxProblem {
    /// The command needs an argument.
    #[error("argument required")]
    MissingArgument,
    /// The command takes no argument (or not this many).
    #[error("unexpected argument")]
    UnexpectedArgument,
    /// Strict syntax: white space where it is not allowed, or not one
    /// space where one is required.
    #[error("misplaced white space")]
    WhiteSpace,
    /// MAIL without `FROM:`, RCPT without `TO:`.
    #[error("expected FROM: or TO:")]
    MissingKeyword,
    /// Text after the path that is not a parameter list.
    #[error("unexpected text after the address")]
    TrailingText,
    /// HELO/EHLO argument is not a domain or address literal.
    #[error("invalid host name")]
    InvalidHostname,
    /// BDAT size is not a number that fits in 64 bits.
    #[error("invalid chunk size")]
    InvalidNumber,
    /// BDAT's second word is not LAST.
    #[error("expected LAST")]
    InvalidEndMarker,
    /// AUTH mechanism is not 1 to 20 of A-Z 0-9 - _.
    #[error("invalid SASL mechanism name")]
    InvalidMechanism,
    /// AUTH initial response is not base64 or `=`.
    #[error("invalid initial response")]
    InvalidInitialResponse,
    /// ETRN argument is not one word.
    #[error("invalid argument")]
    InvalidArgument,
}

/// Why a command line was rejected; [`CommandError::reply`] gives the
/// reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The line is empty (or only white space).
    #[error("empty command")]
    Empty,
    /// The verb is not known.
    #[error("command unrecognized: {verb}")]
    Unrecognized {
        /// The first word, at most 32 characters, control characters
        /// replaced.
        verb: String,
    },
    /// A control character (other than tab) or invalid UTF-8.
    #[error("invalid character in command")]
    InvalidCharacter {
        /// The verb, if it was recognised.
        verb: Option<Verb>,
    },
    /// The arguments do not follow the command's syntax.
    #[error("syntax error ({problem}); syntax: {}", .verb.usage())]
    Syntax {
        /// The command.
        verb: Verb,
        /// What is wrong.
        problem: SyntaxProblem,
    },
    /// The MAIL or RCPT path is not acceptable.
    #[error("bad {} address: {error}", whose(*.verb))]
    Address {
        /// MAIL or RCPT.
        verb: Verb,
        /// What is wrong.
        error: AddressError,
    },
    /// An ESMTP parameter of MAIL or RCPT is not acceptable.
    #[error("{error}")]
    Param {
        /// MAIL or RCPT.
        verb: Verb,
        /// What is wrong.
        error: ParamError,
    },
}

/// Whose address a MAIL or RCPT error is about.
fn whose(verb: Verb) -> &'static str {
    if verb == Verb::Mail {
        "sender"
    } else {
        "recipient"
    }
}

impl CommandError {
    /// The reply the server sends (see the module doc's table).
    pub fn reply(&self) -> Reply {
        let text = self.to_string();
        match self {
            CommandError::Empty | CommandError::InvalidCharacter { .. } => {
                Reply::new(500, Some(EnhancedCode::new(5, 5, 2)), text)
            }
            CommandError::Unrecognized { .. } => {
                Reply::new(500, Some(EnhancedCode::new(5, 5, 1)), text)
            }
            CommandError::Syntax { .. } => Reply::new(501, Some(EnhancedCode::new(5, 5, 4)), text),
            CommandError::Address { verb, .. } => {
                let detail = if *verb == Verb::Mail { 7 } else { 3 };
                Reply::new(501, Some(EnhancedCode::new(5, 1, detail)), text)
            }
            CommandError::Param { error, .. } => error.reply(),
        }
    }

    /// The verb, if the command was recognised.
    pub fn verb(&self) -> Option<Verb> {
        match self {
            CommandError::Empty | CommandError::Unrecognized { .. } => None,
            CommandError::InvalidCharacter { verb } => *verb,
            CommandError::Syntax { verb, .. }
            | CommandError::Address { verb, .. }
            | CommandError::Param { verb, .. } => Some(*verb),
        }
    }
}

impl Command {
    /// Parses one command line (without CRLF) under `syntax`.
    pub fn parse(line: &[u8], syntax: &Syntax) -> Result<Command, CommandError> {
        parse(line, syntax)
    }

    /// The verb.
    pub fn verb(&self) -> Verb {
        match self {
            Command::Helo(_) => Verb::Helo,
            Command::Ehlo(_) => Verb::Ehlo,
            Command::Mail { .. } => Verb::Mail,
            Command::Rcpt { .. } => Verb::Rcpt,
            Command::Data => Verb::Data,
            Command::Bdat { .. } => Verb::Bdat,
            Command::Rset => Verb::Rset,
            Command::Noop(_) => Verb::Noop,
            Command::Quit => Verb::Quit,
            Command::Vrfy(_) => Verb::Vrfy,
            Command::Expn(_) => Verb::Expn,
            Command::Help(_) => Verb::Help,
            Command::StartTls => Verb::StartTls,
            Command::Auth { .. } => Verb::Auth,
            Command::Etrn(_) => Verb::Etrn,
        }
    }

    /// Whether the command's address has non-ASCII characters, so the
    /// transaction must use SMTPUTF8 (RFC 6531 3.4; the server answers
    /// 553 5.6.7 if MAIL did not give it).
    pub fn needs_smtputf8(&self) -> bool {
        match self {
            Command::Mail { path, .. } => !path.is_ascii(),
            Command::Rcpt { path, .. } => !path.is_ascii(),
            _ => false,
        }
    }

    /// The wire form with CRLF.
    pub fn to_line(&self) -> String {
        format!("{self}\r\n")
    }
}

impl fmt::Display for Command {
    /// The canonical wire form, without CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Helo(h) => write!(f, "HELO {h}"),
            Command::Ehlo(h) => write!(f, "EHLO {h}"),
            Command::Mail { path, params } => write!(f, "MAIL FROM:{path}{params}"),
            Command::Rcpt { path, params } => write!(f, "RCPT TO:{path}{params}"),
            Command::Data => f.write_str("DATA"),
            Command::Bdat { size, last } => {
                write!(f, "BDAT {size}{}", if *last { " LAST" } else { "" })
            }
            Command::Rset => f.write_str("RSET"),
            Command::Noop(t) => verb_text(f, "NOOP", t.as_deref()),
            Command::Quit => f.write_str("QUIT"),
            Command::Vrfy(t) => verb_text(f, "VRFY", Some(t)),
            Command::Expn(t) => verb_text(f, "EXPN", Some(t)),
            Command::Help(t) => verb_text(f, "HELP", t.as_deref()),
            Command::StartTls => f.write_str("STARTTLS"),
            Command::Auth { mechanism, initial } => {
                f.write_str("AUTH ")?;
                write_text(f, mechanism)?;
                if let Some(i) = initial {
                    f.write_str(" ")?;
                    write_text(f, i)?;
                }
                Ok(())
            }
            Command::Etrn(t) => verb_text(f, "ETRN", Some(t)),
        }
    }
}

fn verb_text(f: &mut fmt::Formatter<'_>, verb: &str, text: Option<&str>) -> fmt::Result {
    f.write_str(verb)?;
    if let Some(t) = text {
        f.write_str(" ")?;
        write_text(f, t)?;
    }
    Ok(())
}

/// Writes text with control characters (other than tab) replaced by `?`.
fn write_text(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    if !text.chars().any(is_bad_char) {
        return f.write_str(text);
    }
    for c in text.chars() {
        write!(f, "{}", if is_bad_char(c) { '?' } else { c })?;
    }
    Ok(())
}

fn is_bad_char(c: char) -> bool {
    (c.is_ascii_control() && c != '\t') || c == '\u{7f}'
}

// ---------------------------------------------------------------------------
// Parser

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn parse(line: &[u8], syntax: &Syntax) -> Result<Command, CommandError> {
    let strict = syntax.strict;
    // The verb: up to the first space or tab.
    let lead = if strict {
        0
    } else {
        line.iter().take_while(|b| is_ws(**b)).count()
    };
    let body = &line[lead..];
    let verb_len = body.iter().position(|b| is_ws(*b)).unwrap_or(body.len());
    let verb_bytes = &body[..verb_len];
    if verb_bytes.is_empty() {
        return Err(if line.iter().all(|b| is_ws(*b)) {
            CommandError::Empty
        } else {
            CommandError::Unrecognized {
                verb: String::new(),
            }
        });
    }
    let verb = std::str::from_utf8(verb_bytes)
        .ok()
        .and_then(Verb::from_word);
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::InvalidCharacter { verb });
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(CommandError::InvalidCharacter { verb });
    };
    let Some(verb) = verb else {
        let shown: String = String::from_utf8_lossy(verb_bytes)
            .chars()
            .take(32)
            .collect();
        return Err(CommandError::Unrecognized { verb: shown });
    };
    // `rest` starts right after the verb (with its separator, if any).
    let rest = &text[lead + verb_len..];
    let p = Args {
        verb,
        syntax: *syntax,
    };
    match verb {
        Verb::Helo => Ok(Command::Helo(p.helo_name(rest)?)),
        Verb::Ehlo => Ok(Command::Ehlo(p.helo_name(rest)?)),
        Verb::Mail => p.mail(rest),
        Verb::Rcpt => p.rcpt(rest),
        Verb::Data => p.no_arg(rest, Command::Data),
        Verb::Rset => p.no_arg(rest, Command::Rset),
        Verb::Quit => p.no_arg(rest, Command::Quit),
        Verb::StartTls => p.no_arg(rest, Command::StartTls),
        Verb::Bdat => p.bdat(rest),
        Verb::Noop => Ok(Command::Noop(p.text(rest)?.map(str::to_owned))),
        Verb::Help => Ok(Command::Help(p.text(rest)?.map(str::to_owned))),
        Verb::Vrfy => Ok(Command::Vrfy(p.required_text(rest)?.to_owned())),
        Verb::Expn => Ok(Command::Expn(p.required_text(rest)?.to_owned())),
        Verb::Auth => p.auth(rest),
        Verb::Etrn => p.etrn(rest),
    }
}

/// Argument parsing for one verb.
struct Args {
    verb: Verb,
    syntax: Syntax,
}

impl Args {
    fn err(&self, problem: SyntaxProblem) -> CommandError {
        CommandError::Syntax {
            verb: self.verb,
            problem,
        }
    }

    fn addr_err(&self, error: AddressError) -> CommandError {
        CommandError::Address {
            verb: self.verb,
            error,
        }
    }

    fn param_err(&self, error: ParamError) -> CommandError {
        CommandError::Param {
            verb: self.verb,
            error,
        }
    }

    /// The argument text after the verb: `None` if there is none.
    /// Strict: exactly one space, then text not starting or ending with
    /// white space. Sloppy: trimmed.
    fn text<'a>(&self, rest: &'a str) -> Result<Option<&'a str>, CommandError> {
        if !self.syntax.strict {
            let t = rest.trim_matches([' ', '\t']);
            return Ok((!t.is_empty()).then_some(t));
        }
        if rest.is_empty() {
            return Ok(None);
        }
        let Some(t) = rest.strip_prefix(' ') else {
            return Err(self.err(SyntaxProblem::WhiteSpace));
        };
        let tb = t.as_bytes();
        match (tb.first(), tb.last()) {
            (None, _) => Err(self.err(SyntaxProblem::WhiteSpace)),
            (Some(a), Some(z)) if is_ws(*a) || is_ws(*z) => {
                Err(self.err(SyntaxProblem::WhiteSpace))
            }
            _ => Ok(Some(t)),
        }
    }

    fn required_text<'a>(&self, rest: &'a str) -> Result<&'a str, CommandError> {
        self.text(rest)?
            .ok_or(self.err(SyntaxProblem::MissingArgument))
    }

    /// The argument split into words: single spaces (strict) or runs of
    /// white space (sloppy).
    fn words<'a>(&self, rest: &'a str) -> Result<Vec<&'a str>, CommandError> {
        match self.text(rest)? {
            None => Ok(Vec::new()),
            Some(t) => {
                split_words(t, self.syntax.strict).ok_or(self.err(SyntaxProblem::WhiteSpace))
            }
        }
    }

    fn no_arg(&self, rest: &str, cmd: Command) -> Result<Command, CommandError> {
        let empty = if self.syntax.strict {
            rest.is_empty()
        } else {
            rest.bytes().all(is_ws)
        };
        if empty {
            Ok(cmd)
        } else {
            Err(self.err(SyntaxProblem::UnexpectedArgument))
        }
    }

    fn helo_name(&self, rest: &str) -> Result<HeloName, CommandError> {
        let words = self.words(rest)?;
        let Some(first) = words.first() else {
            return Err(self.err(SyntaxProblem::MissingArgument));
        };
        if self.syntax.strict && words.len() > 1 {
            return Err(self.err(SyntaxProblem::UnexpectedArgument));
        }
        match Host::parse(first) {
            Ok(Host::Domain(d)) => Ok(HeloName::Domain(d)),
            Ok(Host::Literal(a)) => Ok(HeloName::Literal(a)),
            Err(_) if !self.syntax.strict => Ok(HeloName::Other((*first).to_owned())),
            Err(_) => Err(self.err(SyntaxProblem::InvalidHostname)),
        }
    }

    /// Everything after `MAIL`/`RCPT` up to the path: ` FROM:` strictly,
    /// or white space, the keyword, white space, colon, white space.
    fn after_keyword<'a>(&self, rest: &'a str, keyword: &str) -> Result<&'a str, CommandError> {
        if rest.bytes().all(is_ws) {
            return Err(self.err(SyntaxProblem::MissingArgument));
        }
        let missing = self.err(SyntaxProblem::MissingKeyword);
        let (r, ws_ok) = if self.syntax.strict {
            (
                rest.strip_prefix(' ')
                    .ok_or(self.err(SyntaxProblem::WhiteSpace))?,
                false,
            )
        } else {
            (rest.trim_start_matches([' ', '\t']), true)
        };
        let n = keyword.len();
        if r.len() < n || !r.as_bytes()[..n].eq_ignore_ascii_case(keyword.as_bytes()) {
            return Err(if r.starts_with([' ', '\t']) {
                self.err(SyntaxProblem::WhiteSpace)
            } else {
                missing
            });
        }
        let mut r = &r[n..];
        if ws_ok {
            r = r.trim_start_matches([' ', '\t']);
        }
        let Some(mut r) = r.strip_prefix(':') else {
            return Err(if r.starts_with([' ', '\t']) {
                self.err(SyntaxProblem::WhiteSpace)
            } else {
                missing
            });
        };
        if ws_ok {
            r = r.trim_start_matches([' ', '\t']);
        } else if r.starts_with([' ', '\t']) {
            return Err(self.err(SyntaxProblem::WhiteSpace));
        }
        Ok(r)
    }

    /// The words after a path that ended at byte `end` of `r`.
    fn param_words<'a>(&self, r: &'a str, end: usize) -> Result<Vec<&'a str>, CommandError> {
        let tail = &r[end..];
        if tail.is_empty() {
            return Ok(Vec::new());
        }
        if !tail.starts_with([' ', '\t']) {
            return Err(self.err(SyntaxProblem::TrailingText));
        }
        self.words(tail)
    }

    fn mail(&self, rest: &str) -> Result<Command, CommandError> {
        let r = self.after_keyword(rest, "FROM")?;
        let (path, end) = reverse_path_at(r, &self.syntax).map_err(|e| self.addr_err(e))?;
        let words = self.param_words(r, end)?;
        let params =
            MailParams::parse(words, !self.syntax.strict).map_err(|e| self.param_err(e))?;
        Ok(Command::Mail { path, params })
    }

    fn rcpt(&self, rest: &str) -> Result<Command, CommandError> {
        let r = self.after_keyword(rest, "TO")?;
        let (path, end) = forward_path_at(r, &self.syntax).map_err(|e| self.addr_err(e))?;
        let words = self.param_words(r, end)?;
        let params =
            RcptParams::parse(words, !self.syntax.strict).map_err(|e| self.param_err(e))?;
        Ok(Command::Rcpt { path, params })
    }

    fn bdat(&self, rest: &str) -> Result<Command, CommandError> {
        let words = self.words(rest)?;
        let (size, last) = match words.as_slice() {
            [] => return Err(self.err(SyntaxProblem::MissingArgument)),
            [size] => (*size, false),
            [size, marker] => {
                if !marker.eq_ignore_ascii_case("LAST") {
                    return Err(self.err(SyntaxProblem::InvalidEndMarker));
                }
                (*size, true)
            }
            _ => return Err(self.err(SyntaxProblem::UnexpectedArgument)),
        };
        if !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.err(SyntaxProblem::InvalidNumber));
        }
        let size = size
            .parse::<u64>()
            .map_err(|_| self.err(SyntaxProblem::InvalidNumber))?;
        Ok(Command::Bdat { size, last })
    }

    fn auth(&self, rest: &str) -> Result<Command, CommandError> {
        let words = self.words(rest)?;
        let (mech, initial) = match words.as_slice() {
            [] => return Err(self.err(SyntaxProblem::MissingArgument)),
            [m] => (*m, None),
            [m, i] => (*m, Some(*i)),
            _ => return Err(self.err(SyntaxProblem::UnexpectedArgument)),
        };
        let mech_ok = !mech.is_empty()
            && mech.len() <= 20
            && mech
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !mech_ok {
            return Err(self.err(SyntaxProblem::InvalidMechanism));
        }
        if let Some(i) = initial
            && i != "="
            && !is_base64(i)
        {
            return Err(self.err(SyntaxProblem::InvalidInitialResponse));
        }
        Ok(Command::Auth {
            mechanism: mech.to_ascii_uppercase(),
            initial: initial.map(str::to_owned),
        })
    }

    fn etrn(&self, rest: &str) -> Result<Command, CommandError> {
        let words = self.words(rest)?;
        match words.as_slice() {
            [] => Err(self.err(SyntaxProblem::MissingArgument)),
            [w] if !matches!(*w, "@" | "#") => Ok(Command::Etrn((*w).to_owned())),
            [_] => Err(self.err(SyntaxProblem::InvalidArgument)),
            _ => Err(self.err(SyntaxProblem::UnexpectedArgument)),
        }
    }
}

/// Words separated by one space (strict) or runs of spaces and tabs
/// (sloppy; the text is already trimmed). `None` if strict and a tab or a
/// double space appears.
fn split_words(t: &str, strict: bool) -> Option<Vec<&str>> {
    if strict {
        let words: Vec<&str> = t.split(' ').collect();
        if words.iter().any(|w| w.is_empty() || w.contains('\t')) {
            return None;
        }
        Some(words)
    } else {
        Some(t.split([' ', '\t']).filter(|w| !w.is_empty()).collect())
    }
}

/// Base64 (RFC 4648 4): groups of four, `=` padding only at the end.
fn is_base64(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(4) {
        return false;
    }
    let pad = b.iter().rev().take_while(|c| **c == b'=').count();
    pad <= 2
        && b[..b.len() - pad]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}
