//! Delivery status notifications: failure DSNs (bounces) and delay DSNs as
//! RFC 3464 `multipart/report` messages (seed 3.8 item 5, 10.5).
//!
//! [`build`] takes the original transaction, the recipients to report and
//! a reader over the original content (the CDB file), and returns the DSN
//! messages to queue, each as bytes with CRLF line ends and the envelope
//! recipient it goes to. The envelope sender of every DSN is the null
//! sender `<>`. The module does no other I/O.
//!
//! # Rules
//!
//! 1. **Who asked.** A recipient's `NOTIFY` parameter (RFC 3461) decides:
//!    `NEVER` suppresses every DSN, otherwise a failure DSN needs `FAILURE`,
//!    a delay DSN `DELAY`, and a success DSN ([`DsnKind::Delivered`],
//!    [`DsnKind::Relayed`]) `SUCCESS` in the list. Without `NOTIFY` both are sent
//!    (the customary default). Suppressed recipients are listed in
//!    [`DsnPlan::skipped`].
//! 2. **Bounces are never bounced.** When the original sender is `<>` the
//!    original was itself a DSN: no DSN goes to `<>`. A failure becomes a
//!    *double bounce* sent to `double_bounce_address` (NOTIFY is not
//!    consulted, it addressed the sender); delays and successes are not
//!    reported at all;
//!    a failed recipient that is the double bounce address itself is only
//!    skipped, which ends every loop.
//! 3. **Merging.** All reported recipients of one transaction share one
//!    DSN, at most `max_errors_per_DSN` recipients per message; more are
//!    split over several messages in order.
//! 4. **Returned content.** `RET=HDRS` returns the header section of the
//!    original (`text/rfc822-headers`), `RET=FULL` the whole message
//!    (`message/rfc822`). Without `RET`, the `header_only` flag selects the
//!    headers, else the whole message, but (as the seed describes for
//!    `header_only`) only the first failure DSN of a transaction returns
//!    the whole message: later ones, whether split off by rule 3 or sent
//!    after [`OriginalTransaction::dsn_sent_before`], return the headers.
//!    With `RET=FULL` every DSN returns the whole message. Delay and
//!    success DSNs always return headers only. Content longer than `max_returned_content` is cut back to its
//!    headers; if even those are longer, nothing is returned.
//! 5. **Fields.** The `message/delivery-status` part carries the
//!    per-message fields `Original-Envelope-Id` (the `ENVID` parameter,
//!    xtext-decoded), `Reporting-MTA: dns;<host>` and `Arrival-Date`, and
//!    per recipient `Final-Recipient: rfc822;<address>`,
//!    `Original-Recipient` (the `ORCPT` parameter with its address type
//!    kept and its value xtext-decoded), `Action` (`failed` or `delayed`),
//!    `Status`, `Remote-MTA: dns;<host>`, `Diagnostic-Code: smtp;<reply>`,
//!    `Last-Attempt-Date` and, for delays, `Will-Retry-Until`. `Status` is
//!    the caller's [`ReportedRecipient::status`] if given, else the
//!    enhanced code of the last reply (RFC 3463), else the reply's class
//!    (`5.0.0`/`4.0.0`), else `5.0.0` for failures and `4.0.0` for delays.
//! 6. **Format.** With `MIME_Format` (the default) the message is
//!    `multipart/report; report-type=delivery-status` with a human-readable
//!    `text/plain` part in the layout of seed 10.5, the delivery-status
//!    part and the returned content. Without it the seed's plain format is
//!    kept: one `text/plain` body with the same text followed by the
//!    returned content after a separator line. Headers include
//!    `Auto-Submitted: auto-replied` (RFC 3834).
//!
//! 7. **Merging over time** ([`MergeQueue`], `merge_delay_max`). A
//!    failed recipient is held until `merge_delay_max` after the first
//!    held failure of the same transaction (and kind), so failures that
//!    arrive close together share one DSN. A batch is released early when
//!    the caller flushes the transaction (no recipient of it is still
//!    undecided), when it reaches `max_errors_per_DSN`, or when more than
//!    the queue's bound are held (the oldest batch goes first). Held
//!    failures are only an index: the recipients stay in DEFEDB flagged
//!    `FAILURE_PENDING`, so a restart loses nothing.
//!
//! Field values taken from the envelope or a peer's reply have control
//! characters replaced by `?` and are folded at 78 columns, so nothing a
//! peer sends can inject a header line. Text that is not ASCII (SMTPUTF8
//! addresses) makes the status part `message/global-delivery-status`
//! (RFC 6533).

use crate::time::Timestamp;
use smx_conf::model::qmgr::QmgrConfig;
use smx_store::id::{RecipientId, TransactionId};
use std::collections::{BTreeSet, HashMap};
use std::io::Read;

/// Default bound on returned original content (10 MB).
pub const DEFAULT_MAX_RETURNED_CONTENT: usize = 10 << 20;

/// DSN options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnConfig {
    /// This host's name (`Reporting-MTA`, `From`, `Message-ID`).
    pub hostname: String,
    /// Where double bounces go (`double_bounce_address`).
    pub double_bounce_address: String,
    /// Return only headers unless `RET=FULL` (`header_only`).
    pub header_only: bool,
    /// RFC 3464 multipart/report (`MIME_Format`); off: the seed's plain
    /// text format.
    pub mime_format: bool,
    /// Most recipients per DSN (`max_errors_per_DSN`, at least 1).
    pub max_errors_per_dsn: u32,
    /// Most bytes of original content returned.
    pub max_returned_content: usize,
}

impl DsnConfig {
    /// Options from the `qmgr` section; `double_bounce_address` defaults to
    /// `postmaster@<hostname>`.
    pub fn from_conf(c: &QmgrConfig, hostname: &str) -> Self {
        DsnConfig {
            hostname: hostname.to_string(),
            double_bounce_address: c
                .double_bounce_address
                .clone()
                .unwrap_or_else(|| format!("postmaster@{hostname}")),
            header_only: c.dsn_handling.flags.header_only,
            mime_format: c.dsn_handling.flags.mime_format,
            max_errors_per_dsn: c.dsn_handling.max_errors_per_dsn,
            max_returned_content: DEFAULT_MAX_RETURNED_CONTENT,
        }
    }
}

/// The kind of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DsnKind {
    /// Delivery failed (permanently or expired): `Action: failed`.
    Failure,
    /// Still trying: `Action: delayed`.
    Delay,
    /// Delivered to the final server (LMTP) and the recipient asked for
    /// `NOTIFY=SUCCESS`: `Action: delivered`.
    Delivered,
    /// Relayed to a server that does not support DSN and the recipient
    /// asked for `NOTIFY=SUCCESS` (RFC 3461 section 4.1): `Action: relayed`.
    Relayed,
}

impl DsnKind {
    fn action(self) -> &'static str {
        match self {
            DsnKind::Failure => "failed",
            DsnKind::Delay => "delayed",
            DsnKind::Delivered => "delivered",
            DsnKind::Relayed => "relayed",
        }
    }
}

/// The original transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginalTransaction<'a> {
    /// Its id.
    pub id: TransactionId,
    /// The reverse path without brackets; empty for `<>`.
    pub sender: &'a str,
    /// The MAIL FROM parameters (`RET`, `ENVID`).
    pub params: &'a str,
    /// When it arrived.
    pub arrival: Timestamp,
    /// Whether a failure DSN for this transaction was sent before (from
    /// the DEFEDB `FAILURE_SENT` flags of its recipients): without
    /// `RET=FULL` only headers are returned (rule 4).
    pub dsn_sent_before: bool,
}

/// A recipient to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedRecipient {
    /// Its id.
    pub id: RecipientId,
    /// The forward path without brackets.
    pub address: String,
    /// The RCPT TO parameters (`NOTIFY`, `ORCPT`).
    pub params: String,
    /// The status code to report (e.g. `4.4.7` for an expired recipient
    /// without a reply); `None`: derived (rule 5).
    pub status: Option<String>,
    /// The last SMTP reply, lines joined by CRLF.
    pub reply: Option<String>,
    /// The host that gave it.
    pub remote_mta: Option<String>,
    /// The last attempt.
    pub last_attempt: Option<Timestamp>,
    /// For delays: when the queue gives up.
    pub retry_until: Option<Timestamp>,
}

impl ReportedRecipient {
    /// The report for a DEFEDB entry: address, parameters, last host and
    /// reply, last attempt; `status` as given; for delays `retry_until`.
    pub fn from_deferred(
        e: &smx_store::defedb::DeferredRecipient,
        status: Option<String>,
        retry_until: Option<Timestamp>,
    ) -> Self {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        ReportedRecipient {
            id: e.id(),
            address: e.recipient.address.clone(),
            params: e.recipient.params.clone(),
            status,
            reply: non_empty(&e.last_reply),
            remote_mta: non_empty(&e.last_host),
            last_attempt: (e.last_try != 0).then(|| Timestamp::from_secs(e.last_try)),
            retry_until,
        }
    }
}

impl<'a> OriginalTransaction<'a> {
    /// The original transaction of a DEFEDB entry's transaction record.
    pub fn from_store(t: &'a smx_store::envelope::Transaction, dsn_sent_before: bool) -> Self {
        OriginalTransaction {
            id: t.id,
            sender: &t.sender,
            params: &t.params,
            arrival: Timestamp::from_micros(t.arrival_us),
            dsn_sent_before,
        }
    }
}

/// A DSN message to queue (envelope sender `<>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The envelope recipient: the original sender or the double bounce
    /// address.
    pub recipient: String,
    /// Whether this is a double bounce.
    pub double_bounce: bool,
    /// The reported recipients.
    pub covers: Vec<RecipientId>,
    /// The message, CRLF line ends.
    pub message: Vec<u8>,
}

/// Why a recipient got no DSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Its NOTIFY parameter excludes this kind of report.
    NotRequested,
    /// The original sender is `<>` and this is a delay, or the recipient
    /// is the double bounce address (rule 2).
    BounceOfBounce,
}

/// What [`build`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DsnPlan {
    /// Messages to queue.
    pub dsns: Vec<Dsn>,
    /// Recipients reported to nobody, and why.
    pub skipped: Vec<(RecipientId, SkipReason)>,
}

/// DSN errors.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    /// Reading the original content failed; retry later.
    #[error("reading the original content: {0}")]
    Content(#[from] std::io::Error),
}

/// The NOTIFY parameter (RFC 3461).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify {
    /// Report success.
    pub success: bool,
    /// Report failure.
    pub failure: bool,
    /// Report delay.
    pub delay: bool,
}

impl Notify {
    /// From RCPT parameters; without NOTIFY: failure and delay.
    pub fn from_params(params: &str) -> Notify {
        match param(params, "NOTIFY") {
            None => Notify {
                success: false,
                failure: true,
                delay: true,
            },
            Some(v) => {
                let mut n = Notify {
                    success: false,
                    failure: false,
                    delay: false,
                };
                for w in v.split(',') {
                    match w.to_ascii_uppercase().as_str() {
                        "SUCCESS" => n.success = true,
                        "FAILURE" => n.failure = true,
                        "DELAY" => n.delay = true,
                        _ => {}
                    }
                }
                n
            }
        }
    }
}

/// What part of the original is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// The header section.
    Headers,
    /// The whole message.
    Full,
}

/// Rule 4 (without the size bound).
pub fn return_of(cfg: &DsnConfig, kind: DsnKind, mail_params: &str) -> Return {
    if kind != DsnKind::Failure {
        return Return::Headers;
    }
    match param(mail_params, "RET").map(|v| v.to_ascii_uppercase()) {
        Some(v) if v == "HDRS" => Return::Headers,
        Some(v) if v == "FULL" => Return::Full,
        _ if cfg.header_only => Return::Headers,
        _ => Return::Full,
    }
}

/// Builds the DSNs for `rcpts` of `ta` (rules 1-6). `content` is read only
/// if some DSN is due.
pub fn build(
    cfg: &DsnConfig,
    kind: DsnKind,
    ta: &OriginalTransaction<'_>,
    rcpts: &[ReportedRecipient],
    content: &mut dyn Read,
    now: Timestamp,
) -> Result<DsnPlan, DsnError> {
    let mut plan = DsnPlan::default();
    let null_sender = ta.sender.is_empty();
    let mut due: Vec<&ReportedRecipient> = Vec::new();
    for r in rcpts {
        if null_sender {
            if kind != DsnKind::Failure
                || r.address.eq_ignore_ascii_case(&cfg.double_bounce_address)
            {
                plan.skipped.push((r.id, SkipReason::BounceOfBounce));
                continue;
            }
        } else {
            let n = Notify::from_params(&r.params);
            let wanted = match kind {
                DsnKind::Failure => n.failure,
                DsnKind::Delay => n.delay,
                DsnKind::Delivered | DsnKind::Relayed => n.success,
            };
            if !wanted {
                plan.skipped.push((r.id, SkipReason::NotRequested));
                continue;
            }
        }
        due.push(r);
    }
    if due.is_empty() {
        return Ok(plan);
    }
    let ret = return_of(cfg, kind, ta.params);
    let explicit_full = param(ta.params, "RET").is_some_and(|v| v.eq_ignore_ascii_case("FULL"));
    let ret = if ta.dsn_sent_before && !explicit_full {
        Return::Headers
    } else {
        ret
    };
    let returned = read_returned(content, ret, cfg.max_returned_content)?;
    // Rule 4: DSNs after the first return only the headers.
    let later = match &returned {
        Some((Return::Full, bytes)) if !explicit_full => Some(
            find(bytes, b"\r\n\r\n")
                .map(|p| (Return::Headers, bytes[..p + 2].to_vec()))
                .unwrap_or((Return::Full, bytes.clone())),
        ),
        other => other.clone(),
    };
    let (to, double_bounce) = if null_sender {
        (cfg.double_bounce_address.clone(), true)
    } else {
        (ta.sender.to_string(), false)
    };
    let per = cfg.max_errors_per_dsn.max(1) as usize;
    for (i, chunk) in due.chunks(per).enumerate() {
        let r = if i == 0 { &returned } else { &later };
        let message = render(cfg, kind, ta, chunk, r, &to, double_bounce, now, i);
        plan.dsns.push(Dsn {
            recipient: to.clone(),
            double_bounce,
            covers: chunk.iter().map(|r| r.id).collect(),
            message,
        });
    }
    Ok(plan)
}

/// A batch of recipients of one transaction for one DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The kind of report.
    pub kind: DsnKind,
    /// The transaction.
    pub transaction: TransactionId,
    /// The recipients, in the order they were held.
    pub recipients: Vec<RecipientId>,
}

/// Holds failures to merge them into fewer DSNs (rule 7).
#[derive(Debug)]
pub struct MergeQueue {
    delay: std::time::Duration,
    max_per_dsn: usize,
    max_held: usize,
    held: usize,
    batches: HashMap<(TransactionId, DsnKind), (Timestamp, Vec<RecipientId>)>,
    order: BTreeSet<(Timestamp, TransactionId, DsnKind)>,
}

impl MergeQueue {
    /// A queue releasing batches `merge_delay` after their first failure,
    /// with at most `max_per_dsn` recipients per batch and at most
    /// `max_held` recipients held in all (both at least 1).
    pub fn new(merge_delay: std::time::Duration, max_per_dsn: u32, max_held: usize) -> Self {
        MergeQueue {
            delay: merge_delay,
            max_per_dsn: (max_per_dsn as usize).max(1),
            max_held: max_held.max(1),
            held: 0,
            batches: HashMap::new(),
            order: BTreeSet::new(),
        }
    }

    /// Recipients held.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Holds a failed recipient; returns batches that must be sent now
    /// (full, or pushed out by the bound).
    pub fn hold(&mut self, kind: DsnKind, rcpt: RecipientId, now: Timestamp) -> Vec<Batch> {
        let ta = rcpt.transaction();
        let mut out = Vec::new();
        let (deadline, v) = self.batches.entry((ta, kind)).or_insert_with(|| {
            let d = now.plus(self.delay);
            (d, Vec::new())
        });
        let deadline = *deadline;
        v.push(rcpt);
        let full = v.len() >= self.max_per_dsn;
        self.order.insert((deadline, ta, kind));
        self.held += 1;
        if full {
            out.extend(self.take(ta, kind));
        }
        while self.held > self.max_held {
            let Some((_, t, k)) = self.order.first().copied() else {
                break;
            };
            out.extend(self.take(t, k));
        }
        out
    }

    /// Releases the batch of `ta` now (its last undecided recipient was
    /// decided).
    pub fn flush(&mut self, kind: DsnKind, ta: TransactionId) -> Option<Batch> {
        self.take(ta, kind)
    }

    /// Batches whose merge delay has passed at `now`.
    pub fn due(&mut self, now: Timestamp) -> Vec<Batch> {
        let mut out = Vec::new();
        while let Some((d, t, k)) = self.order.first().copied() {
            if d > now {
                break;
            }
            out.extend(self.take(t, k));
        }
        out
    }

    /// When the next batch becomes due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.order.first().map(|(d, _, _)| *d)
    }

    fn take(&mut self, ta: TransactionId, kind: DsnKind) -> Option<Batch> {
        let (deadline, recipients) = self.batches.remove(&(ta, kind))?;
        self.order.remove(&(deadline, ta, kind));
        self.held -= recipients.len();
        Some(Batch {
            kind,
            transaction: ta,
            recipients,
        })
    }
}

/// Formats `t` as an RFC 5322 date in UTC.
pub fn rfc5322_date(t: Timestamp) -> String {
    smx_proto::date::rfc5322(t.as_secs())
}

/// Decodes xtext (RFC 3461 section 4): `+XX` is the byte with hex value
/// XX. Returns `None` for malformed xtext or a result that is not UTF-8.
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---- helpers ----

/// The value of ESMTP parameter `key` (case-insensitive) in `params`.
fn param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    params.split_ascii_whitespace().find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.eq_ignore_ascii_case(key).then_some(v)
    })
}

/// Reads what is returned: CRLF-normalised, bounded (rule 4).
fn read_returned(
    content: &mut dyn Read,
    ret: Return,
    max: usize,
) -> Result<Option<(Return, Vec<u8>)>, DsnError> {
    let mut raw = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    content.take(limit).read_to_end(&mut raw)?;
    let too_long = raw.len() > max;
    let norm = to_crlf(&raw);
    if norm.is_empty() {
        return Ok(None);
    }
    let headers_end = find(&norm, b"\r\n\r\n").map(|p| p + 2);
    let (ret, bytes) = match (ret, too_long) {
        (Return::Full, false) => (Return::Full, norm),
        _ => match headers_end {
            Some(end) => (Return::Headers, norm[..end].to_vec()),
            // No end of headers inside the bound: nothing sensible to return.
            None if too_long => return Ok(None),
            None => {
                let mut v = norm;
                if !v.ends_with(b"\r\n") {
                    v.extend_from_slice(b"\r\n");
                }
                (Return::Headers, v)
            }
        },
    };
    Ok(Some((ret, bytes)))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bare LF and bare CR become CRLF.
fn to_crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 50);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if b.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Control characters (including CR and LF) become `?`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A header field `name: value`, folded at blanks to about 78 columns,
/// with CRLF.
fn field(out: &mut String, name: &str, value: &str) {
    let value = clean(value);
    let mut line_len = name.len() + 1;
    out.push_str(name);
    out.push(':');
    for (i, w) in value.split(' ').enumerate() {
        if i > 0 && line_len + 1 + w.len() > 78 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(w);
        line_len += 1 + w.len();
    }
    out.push_str("\r\n");
}

/// ENVID or ORCPT value for display: xtext-decoded if printable, else as
/// received.
fn display_xtext(v: &str) -> String {
    match xtext_decode(v) {
        Some(d) if !d.chars().any(char::is_control) => d,
        _ => v.to_string(),
    }
}

/// The status of rule 5.
fn status_of(kind: DsnKind, r: &ReportedRecipient) -> String {
    if let Some(s) = r.status.as_ref().filter(|s| is_status(s)) {
        return s.clone();
    }
    if let Some(reply) = &r.reply {
        // The last line of a multi-line reply carries the final code.
        let last = reply.rsplit("\r\n").next().unwrap_or("");
        let code = last.get(..3).unwrap_or("");
        let enhanced = last
            .get(4..)
            .and_then(|t| t.split_ascii_whitespace().next());
        if let Some(e) = enhanced.filter(|e| is_status(e) && e.get(..1) == code.get(..1)) {
            return e.to_string();
        }
        match code.get(..1) {
            Some("5") if code.bytes().all(|b| b.is_ascii_digit()) => return "5.0.0".into(),
            Some("4") if code.bytes().all(|b| b.is_ascii_digit()) => return "4.0.0".into(),
            Some("2") if code.bytes().all(|b| b.is_ascii_digit()) => return "2.0.0".into(),
            _ => {}
        }
    }
    match kind {
        DsnKind::Failure => "5.0.0".into(),
        DsnKind::Delay => "4.0.0".into(),
        DsnKind::Delivered | DsnKind::Relayed => "2.0.0".into(),
    }
}

/// `class.subject.detail` with class 2, 4 or 5 (RFC 3463).
fn is_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[allow(clippy::too_many_arguments)]
fn render(
    cfg: &DsnConfig,
    kind: DsnKind,
    ta: &OriginalTransaction<'_>,
    rcpts: &[&ReportedRecipient],
    returned: &Option<(Return, Vec<u8>)>,
    to: &str,
    double_bounce: bool,
    now: Timestamp,
    index: usize,
) -> Vec<u8> {
    let host = clean(&cfg.hostname);
    // Human-readable text (seed 10.5 layout).
    let mut text = String::new();
    match (kind, double_bounce) {
        (DsnKind::Failure, false) => {
            text.push_str("A mail from you could not be delivered. See below for details.\r\n")
        }
        (DsnKind::Failure, true) => text.push_str(
            "A delivery status notification could not be delivered. See below for details.\r\n",
        ),
        (DsnKind::Delay, _) => text.push_str(
            "A mail from you has not been delivered yet; delivery will be retried.\r\n\
             You do not need to send it again. See below for details.\r\n",
        ),
        (DsnKind::Delivered, _) => {
            text.push_str("A mail from you has been delivered. See below for details.\r\n")
        }
        (DsnKind::Relayed, _) => text.push_str(
            "A mail from you has been relayed to a system that does not report delivery\r\n\
             status; no further notification will follow. See below for details.\r\n",
        ),
    }
    for r in rcpts {
        text.push_str("\r\nRecipient:\r\n<");
        text.push_str(&clean(&r.address));
        text.push_str(">\r\n");
        if let Some(m) = &r.remote_mta {
            text.push_str("Remote-MTA:\r\n");
            text.push_str(&clean(m));
            text.push_str("\r\n");
        }
        text.push_str("Reason:\r\n");
        match &r.reply {
            Some(reply) => {
                for l in reply.split("\r\n") {
                    text.push_str(&clean(l));
                    text.push_str("\r\n");
                }
            }
            None => {
                text.push_str(match kind {
                    DsnKind::Failure => "delivery failed",
                    DsnKind::Delay => "delivery delayed",
                    DsnKind::Delivered => "delivered",
                    DsnKind::Relayed => "relayed",
                });
                text.push_str(" (status ");
                text.push_str(&status_of(kind, r));
                text.push_str(")\r\n");
            }
        }
    }

    // Delivery status fields (RFC 3464 section 2.2, 2.3).
    let mut status = String::new();
    if let Some(envid) = param(ta.params, "ENVID") {
        field(&mut status, "Original-Envelope-Id", &display_xtext(envid));
    }
    field(&mut status, "Reporting-MTA", &format!("dns;{host}"));
    field(&mut status, "X-Smx-Queue-Id", &ta.id.to_string());
    field(&mut status, "Arrival-Date", &rfc5322_date(ta.arrival));
    for r in rcpts {
        status.push_str("\r\n");
        field(
            &mut status,
            "Final-Recipient",
            &format!("rfc822;{}", r.address),
        );
        if let Some(orcpt) = param(&r.params, "ORCPT") {
            let (ty, v) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            field(
                &mut status,
                "Original-Recipient",
                &format!("{ty};{}", display_xtext(v)),
            );
        }
        field(&mut status, "Action", kind.action());
        field(&mut status, "Status", &status_of(kind, r));
        if let Some(m) = &r.remote_mta {
            field(&mut status, "Remote-MTA", &format!("dns;{m}"));
        }
        if let Some(reply) = &r.reply {
            let one_line = reply.split("\r\n").collect::<Vec<_>>().join(" ");
            field(&mut status, "Diagnostic-Code", &format!("smtp;{one_line}"));
        }
        if let Some(t) = r.last_attempt {
            field(&mut status, "Last-Attempt-Date", &rfc5322_date(t));
        }
        if let (DsnKind::Delay, Some(t)) = (kind, r.retry_until) {
            field(&mut status, "Will-Retry-Until", &rfc5322_date(t));
        }
    }

    let subject = match (kind, double_bounce) {
        (DsnKind::Failure, false) => "Undeliverable mail",
        (DsnKind::Failure, true) => "Postmaster notify: undeliverable delivery status notification",
        (DsnKind::Delay, _) => "Delayed mail (still being retried)",
        (DsnKind::Delivered, _) => "Delivery status notification: delivered",
        (DsnKind::Relayed, _) => "Delivery status notification: relayed",
    };
    let kind_tag = match kind {
        DsnKind::Failure => "f",
        DsnKind::Delay => "d",
        DsnKind::Delivered => "s",
        DsnKind::Relayed => "r",
    };
    let mut head = String::new();
    field(
        &mut head,
        "From",
        &format!("Mail Delivery Subsystem <MAILER-DAEMON@{host}>"),
    );
    field(&mut head, "To", &format!("<{to}>"));
    field(&mut head, "Subject", subject);
    field(&mut head, "Date", &rfc5322_date(now));
    field(
        &mut head,
        "Message-ID",
        &format!("<{}.{kind_tag}{index}.{}@{host}>", ta.id, now.as_micros()),
    );
    field(&mut head, "Auto-Submitted", "auto-replied");

    let mut out: Vec<u8> = Vec::new();
    if !cfg.mime_format {
        out.extend_from_slice(head.as_bytes());
        let eight = !text.is_ascii();
        if eight {
            out.extend_from_slice(b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(text.as_bytes());
        if let Some((ret, bytes)) = returned {
            out.extend_from_slice(match ret {
                Return::Full => {
                    b"\r\n------ The original message follows ------\r\n\r\n".as_slice()
                }
                Return::Headers => {
                    b"\r\n------ The headers of the original message follow ------\r\n\r\n"
                        .as_slice()
                }
            });
            out.extend_from_slice(bytes);
        }
        return out;
    }

    let boundary = pick_boundary(
        ta.id,
        index,
        &[
            text.as_bytes(),
            status.as_bytes(),
            returned.as_ref().map(|r| r.1.as_slice()).unwrap_or(b""),
        ],
    );
    let returned = if boundary.is_some() {
        returned.as_ref()
    } else {
        None
    };
    let boundary = boundary.unwrap_or_else(|| format!("=_smx_{}_{index}_x", ta.id));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/report; report-type=delivery-status;\r\n boundary=\"{boundary}\"\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(b"This is a MIME-encapsulated delivery status notification.\r\n");
    // Part 1: text.
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    if text.is_ascii() {
        out.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n");
    } else {
        out.extend_from_slice(
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
    }
    out.extend_from_slice(text.as_bytes());
    // Part 2: delivery status.
    out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
    if status.is_ascii() {
        out.extend_from_slice(b"Content-Type: message/delivery-status\r\n\r\n");
    } else {
        out.extend_from_slice(b"Content-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    }
    out.extend_from_slice(status.as_bytes());
    // Part 3: the original.
    if let Some((ret, bytes)) = returned {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(match ret {
            Return::Full => b"Content-Type: message/rfc822\r\n".as_slice(),
            Return::Headers => b"Content-Type: text/rfc822-headers\r\n".as_slice(),
        });
        if !bytes.is_ascii() {
            out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
        }
        out.extend_from_slice(b"Content-Description: ");
        out.extend_from_slice(match ret {
            Return::Full => b"Undelivered message\r\n\r\n".as_slice(),
            Return::Headers => b"Headers of the undelivered message\r\n\r\n".as_slice(),
        });
        out.extend_from_slice(bytes);
        if !bytes.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// A boundary that occurs in none of the parts, or `None` after 64 tries
/// (then the original content, the only part a sender controls, is left
/// out and the last candidate is used).
fn pick_boundary(id: TransactionId, index: usize, parts: &[&[u8]]) -> Option<String> {
    for n in 0..64u32 {
        let b = format!("=_smx_{id}_{index}_{n}");
        if !parts.iter().any(|p| find(p, b.as_bytes()).is_some()) {
            return Some(b);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders, PartType};
    use proptest::prelude::*;

    fn cfg() -> DsnConfig {
        DsnConfig {
            hostname: "mx.smx.test".into(),
            double_bounce_address: "postmaster@smx.test".into(),
            header_only: false,
            mime_format: true,
            max_errors_per_dsn: 100,
            max_returned_content: DEFAULT_MAX_RETURNED_CONTENT,
        }
    }

    fn tid() -> TransactionId {
        TransactionId::new(0x1234, 1)
    }

    const ORIGINAL: &[u8] = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: hello\r\nMessage-ID: <m1@a.test>\r\n\r\nBody line one\r\nBody line two\r\n";

    fn rcpt(i: u32, addr: &str, params: &str) -> ReportedRecipient {
        ReportedRecipient {
            id: RecipientId::new(tid(), i).unwrap(),
            address: addr.into(),
            params: params.into(),
            status: None,
            reply: Some("550 5.1.1 <bob@b.test>... User unknown".into()),
            remote_mta: Some("mx.b.test".into()),
            last_attempt: Some(Timestamp::from_secs(1_700_000_100)),
            retry_until: None,
        }
    }

    fn ta<'a>(sender: &'a str, params: &'a str) -> OriginalTransaction<'a> {
        OriginalTransaction {
            id: tid(),
            sender,
            params,
            arrival: Timestamp::from_secs(1_700_000_000),
            dsn_sent_before: false,
        }
    }

    /// Fields of a delivery-status body: the per-message group and the
    /// per-recipient groups, unfolded, names lower-cased.
    fn status_groups(body: &[u8]) -> Vec<Vec<(String, String)>> {
        let text = String::from_utf8_lossy(body).replace("\r\n ", " ");
        text.split("\r\n\r\n")
            .filter(|g| !g.trim().is_empty())
            .map(|g| {
                g.split("\r\n")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once(':').unwrap();
                        (k.trim().to_ascii_lowercase(), v.trim().to_string())
                    })
                    .collect()
            })
            .collect()
    }

    fn get<'a>(g: &'a [(String, String)], k: &str) -> Option<&'a str> {
        g.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn now() -> Timestamp {
        Timestamp::from_secs(1_700_003_600)
    }

    #[test]
    fn failure_dsn_parses_back_with_all_fields() {
        let mut r1 = rcpt(
            0,
            "bob@b.test",
            "NOTIFY=FAILURE ORCPT=rfc822;Bob+2BX@b.test",
        );
        r1.reply = Some("550-5.1.1 first line\r\n550 5.1.1 <bob@b.test>... User unknown".into());
        let mut r2 = rcpt(1, "carol@c.test", "");
        r2.reply = Some("452 4.2.2 mailbox full".into());
        r2.status = Some("4.4.7".into());
        r2.remote_mta = None;
        let plan = build(
            &cfg(),
            DsnKind::Failure,
            &ta("alice@a.test", "SIZE=100 RET=FULL ENVID=QQ+2B314"),
            &[r1, r2],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        assert!(plan.skipped.is_empty());
        assert_eq!(plan.dsns.len(), 1);
        let dsn = &plan.dsns[0];
        assert_eq!(dsn.recipient, "alice@a.test");
        assert!(!dsn.double_bounce);
        assert_eq!(dsn.covers.len(), 2);
        // Every line ends in CRLF.
        let s = String::from_utf8(dsn.message.clone()).unwrap();
        assert!(!s.replace("\r\n", "").contains('\n'));
        let msg = MessageParser::default().parse(&dsn.message).unwrap();
        assert_eq!(msg.subject(), Some("Undeliverable mail"));
        assert_eq!(
            msg.to().unwrap().first().unwrap().address(),
            Some("alice@a.test")
        );
        let ct = msg.content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        // Parts: root, text, status, original.
        let text = msg.body_text(0).unwrap();
        assert!(text.contains("A mail from you could not be delivered"));
        assert!(text.contains("<bob@b.test>"));
        let status_part = msg
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("delivery-status"))
            })
            .unwrap();
        let groups = status_groups(status_part.contents());
        assert_eq!(groups.len(), 3);
        let m = &groups[0];
        assert_eq!(get(m, "reporting-mta"), Some("dns;mx.smx.test"));
        assert_eq!(get(m, "original-envelope-id"), Some("QQ+314"));
        assert_eq!(
            get(m, "arrival-date"),
            Some("Tue, 14 Nov 2023 22:13:20 +0000")
        );
        let a = &groups[1];
        assert_eq!(get(a, "final-recipient"), Some("rfc822;bob@b.test"));
        assert_eq!(get(a, "original-recipient"), Some("rfc822;Bob+X@b.test"));
        assert_eq!(get(a, "action"), Some("failed"));
        assert_eq!(get(a, "status"), Some("5.1.1"));
        assert_eq!(get(a, "remote-mta"), Some("dns;mx.b.test"));
        assert_eq!(
            get(a, "diagnostic-code"),
            Some("smtp;550-5.1.1 first line 550 5.1.1 <bob@b.test>... User unknown")
        );
        assert_eq!(
            get(a, "last-attempt-date"),
            Some("Tue, 14 Nov 2023 22:15:00 +0000")
        );
        let b = &groups[2];
        assert_eq!(get(b, "final-recipient"), Some("rfc822;carol@c.test"));
        assert_eq!(get(b, "original-recipient"), None);
        assert_eq!(get(b, "status"), Some("4.4.7"));
        assert_eq!(get(b, "remote-mta"), None);
        // The whole original is returned as message/rfc822.
        let orig = msg
            .parts
            .iter()
            .find_map(|p| match &p.body {
                PartType::Message(m) => Some(m),
                _ => None,
            })
            .unwrap();
        assert_eq!(orig.subject(), Some("hello"));
        assert!(orig.body_text(0).unwrap().contains("Body line two"));
    }

    #[test]
    fn delay_dsn_headers_only_and_notify() {
        let mut r1 = rcpt(0, "bob@b.test", "NOTIFY=DELAY,FAILURE");
        r1.retry_until = Some(Timestamp::from_secs(1_700_432_000));
        r1.reply = Some("421 4.4.2 try later".into());
        let r2 = rcpt(1, "carol@c.test", "NOTIFY=FAILURE");
        let r3 = rcpt(2, "dave@d.test", "NOTIFY=NEVER");
        let plan = build(
            &cfg(),
            DsnKind::Delay,
            &ta("alice@a.test", "RET=FULL"),
            &[r1, r2, r3],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        assert_eq!(
            plan.skipped,
            vec![
                (
                    RecipientId::new(tid(), 1).unwrap(),
                    SkipReason::NotRequested
                ),
                (
                    RecipientId::new(tid(), 2).unwrap(),
                    SkipReason::NotRequested
                )
            ]
        );
        assert_eq!(plan.dsns.len(), 1);
        let msg = MessageParser::default()
            .parse(&plan.dsns[0].message)
            .unwrap();
        let status_part = msg
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("delivery-status"))
            })
            .unwrap();
        let g = status_groups(status_part.contents());
        assert_eq!(get(&g[1], "action"), Some("delayed"));
        assert_eq!(get(&g[1], "status"), Some("4.4.2"));
        assert_eq!(
            get(&g[1], "will-retry-until"),
            Some("Sun, 19 Nov 2023 22:13:20 +0000")
        );
        // Headers only, even with RET=FULL.
        let hdrs = msg
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("rfc822-headers"))
            })
            .unwrap();
        let h = String::from_utf8_lossy(hdrs.contents());
        assert!(h.contains("Subject: hello"));
        assert!(!h.contains("Body line"));
        // NOTIFY=NEVER: nothing for failures either.
        let plan = build(
            &cfg(),
            DsnKind::Failure,
            &ta("alice@a.test", ""),
            &[rcpt(0, "x@y", "NOTIFY=NEVER")],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        assert!(plan.dsns.is_empty());
    }

    #[test]
    fn ret_and_header_only_select_returned_content() {
        let mut c = cfg();
        let cases = [
            (false, "", "message/rfc822"),
            (true, "", "text/rfc822-headers"),
            (true, "RET=FULL", "message/rfc822"),
            (false, "RET=HDRS", "text/rfc822-headers"),
        ];
        for (header_only, params, want) in cases {
            c.header_only = header_only;
            let plan = build(
                &c,
                DsnKind::Failure,
                &ta("a@a.test", params),
                &[rcpt(0, "b@b.test", "")],
                &mut &ORIGINAL[..],
                now(),
            )
            .unwrap();
            let s = String::from_utf8_lossy(&plan.dsns[0].message).to_string();
            assert!(
                s.contains(&format!("Content-Type: {want}")),
                "{header_only} {params}"
            );
        }
        // Too long content is cut back to its headers.
        c.header_only = false;
        c.max_returned_content = 60;
        let plan = build(
            &c,
            DsnKind::Failure,
            &ta("a@a.test", ""),
            &[rcpt(0, "b@b.test", "")],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        let s = String::from_utf8_lossy(&plan.dsns[0].message).to_string();
        assert!(
            !s.contains("message/rfc822") && !s.contains("rfc822-headers"),
            "headers longer than the bound: nothing returned"
        );
        c.max_returned_content = 100;
        let plan = build(
            &c,
            DsnKind::Failure,
            &ta("a@a.test", ""),
            &[rcpt(0, "b@b.test", "")],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        let s = String::from_utf8_lossy(&plan.dsns[0].message).to_string();
        assert!(s.contains("text/rfc822-headers") && !s.contains("Body line"));
    }

    #[test]
    fn no_bounce_of_bounce_and_double_bounce() {
        // Failure of a DSN (null sender) goes to the double bounce address.
        let plan = build(
            &cfg(),
            DsnKind::Failure,
            &ta("", ""),
            &[rcpt(0, "alice@a.test", "NOTIFY=NEVER")],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        assert_eq!(plan.dsns.len(), 1);
        assert!(plan.dsns[0].double_bounce);
        assert_eq!(plan.dsns[0].recipient, "postmaster@smx.test");
        let msg = MessageParser::default()
            .parse(&plan.dsns[0].message)
            .unwrap();
        assert!(msg.subject().unwrap().starts_with("Postmaster notify"));
        // No delay DSN for a DSN.
        let plan = build(
            &cfg(),
            DsnKind::Delay,
            &ta("", ""),
            &[rcpt(0, "alice@a.test", "")],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        assert!(plan.dsns.is_empty());
        assert_eq!(plan.skipped[0].1, SkipReason::BounceOfBounce);
        // A failed double bounce is dropped.
        let plan = build(
            &cfg(),
            DsnKind::Failure,
            &ta("", ""),
            &[rcpt(0, "Postmaster@smx.test", "")],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        assert!(plan.dsns.is_empty());
        assert_eq!(plan.skipped[0].1, SkipReason::BounceOfBounce);
    }

    #[test]
    fn merged_up_to_max_errors_per_dsn() {
        let mut c = cfg();
        c.max_errors_per_dsn = 2;
        let rs: Vec<_> = (0..5)
            .map(|i| rcpt(i, &format!("r{i}@b.test"), ""))
            .collect();
        let plan = build(
            &c,
            DsnKind::Failure,
            &ta("a@a.test", ""),
            &rs,
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        assert_eq!(
            plan.dsns.iter().map(|d| d.covers.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let ids: Vec<_> = plan
            .dsns
            .iter()
            .map(|d| {
                MessageParser::default()
                    .parse(&d.message)
                    .unwrap()
                    .message_id()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn seed_plain_format() {
        let mut c = cfg();
        c.mime_format = false;
        c.header_only = true;
        let plan = build(
            &c,
            DsnKind::Failure,
            &ta("a@a.test", ""),
            &[rcpt(0, "user@example.com", "")],
            &mut &b"Subject: x\nX: y\n\nbody\n"[..],
            now(),
        )
        .unwrap();
        let s = String::from_utf8(plan.dsns[0].message.clone()).unwrap();
        assert!(!s.contains("multipart"));
        assert!(s.contains("Subject: Undeliverable mail\r\n"));
        assert!(s.contains(
            "Recipient:\r\n<user@example.com>\r\nRemote-MTA:\r\nmx.b.test\r\nReason:\r\n550 5.1.1"
        ));
        assert!(s.ends_with("Subject: x\r\nX: y\r\n"));
    }

    #[test]
    fn hostile_values_cannot_inject_headers() {
        let mut r = rcpt(
            0,
            "b@b.test\r\nBcc: evil@x",
            "ORCPT=rfc822;a+0D+0ABcc:+20x@y",
        );
        r.reply = Some("550 no\r\nBcc: evil@x".into());
        let plan = build(
            &cfg(),
            DsnKind::Failure,
            &ta("a@a.test\r\nBcc: e@x", "ENVID=+0D+0AX"),
            &[r],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        let msg = MessageParser::default()
            .parse(&plan.dsns[0].message)
            .unwrap();
        for part in &msg.parts {
            assert!(
                part.headers
                    .iter()
                    .all(|h| !h.name().eq_ignore_ascii_case("bcc")),
                "{:?}",
                part.headers
            );
        }
        // The status part's fields stay one per line.
        let status_part = msg
            .parts
            .iter()
            .find(|p| {
                p.content_type()
                    .is_some_and(|c| c.subtype() == Some("delivery-status"))
            })
            .unwrap();
        for g in status_groups(status_part.contents()) {
            assert!(g.iter().all(|(k, _)| k != "bcc"), "{g:?}");
        }
    }

    #[test]
    fn from_store_records() {
        let t = smx_store::envelope::Transaction {
            id: tid(),
            sender: "a@a.test".into(),
            params: "RET=HDRS".into(),
            size: 1,
            arrival_us: 1_700_000_000_000_000,
            nrcpts: 1,
        };
        let e = smx_store::defedb::DeferredRecipient {
            recipient: smx_store::envelope::Recipient {
                id: RecipientId::new(tid(), 0).unwrap(),
                address: "b@b.test".into(),
                params: "NOTIFY=FAILURE".into(),
            },
            transaction: t.clone(),
            tries: 3,
            next_try: 0,
            first_try: 1,
            last_try: 1_700_000_100,
            dsn_flags: 0,
            last_host: String::new(),
            last_reply: "451 4.3.0 later".into(),
        };
        let o = OriginalTransaction::from_store(&t, false);
        assert_eq!(o.arrival, Timestamp::from_secs(1_700_000_000));
        let r = ReportedRecipient::from_deferred(&e, Some("4.4.7".into()), None);
        assert_eq!(r.remote_mta, None);
        assert_eq!(r.reply.as_deref(), Some("451 4.3.0 later"));
        assert_eq!(r.last_attempt, Some(Timestamp::from_secs(1_700_000_100)));
        let plan = build(
            &cfg(),
            DsnKind::Failure,
            &o,
            &[r],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        let s = String::from_utf8_lossy(&plan.dsns[0].message).to_string();
        assert!(s.contains("Status: 4.4.7\r\n"));
        assert!(s.contains("text/rfc822-headers"));
    }

    #[test]
    fn success_dsns_only_on_request() {
        let mut r1 = rcpt(0, "bob@b.test", "NOTIFY=SUCCESS ORCPT=rfc822;bob@b.test");
        r1.reply = Some("250 2.6.0 queued as X".into());
        let mut r2 = rcpt(1, "carol@c.test", "");
        r2.reply = Some("250 ok".into());
        for (kind, action) in [
            (DsnKind::Relayed, "relayed"),
            (DsnKind::Delivered, "delivered"),
        ] {
            let plan = build(
                &cfg(),
                kind,
                &ta("alice@a.test", "RET=FULL"),
                &[r1.clone(), r2.clone()],
                &mut &ORIGINAL[..],
                now(),
            )
            .unwrap();
            assert_eq!(plan.skipped, vec![(r2.id, SkipReason::NotRequested)]);
            let msg = MessageParser::default()
                .parse(&plan.dsns[0].message)
                .unwrap();
            let status_part = msg
                .parts
                .iter()
                .find(|p| {
                    p.content_type()
                        .is_some_and(|c| c.subtype() == Some("delivery-status"))
                })
                .unwrap();
            let g = status_groups(status_part.contents());
            assert_eq!(get(&g[1], "action"), Some(action));
            assert_eq!(get(&g[1], "status"), Some("2.6.0"));
            let s = String::from_utf8_lossy(&plan.dsns[0].message).to_string();
            assert!(s.contains("text/rfc822-headers"), "headers only");
        }
        // Never for a null sender.
        let plan = build(
            &cfg(),
            DsnKind::Relayed,
            &ta("", ""),
            &[r1],
            &mut &ORIGINAL[..],
            now(),
        )
        .unwrap();
        assert!(plan.dsns.is_empty());
    }

    #[test]
    fn merge_queue_rules() {
        let d = std::time::Duration::from_secs(300);
        let mut q = MergeQueue::new(d, 3, 5);
        let t0 = Timestamp::from_secs(1000);
        let r = |t: u64, i: u32| RecipientId::new(TransactionId::new(t, 0), i).unwrap();
        assert!(q.hold(DsnKind::Failure, r(1, 0), t0).is_empty());
        assert!(
            q.hold(
                DsnKind::Failure,
                r(1, 1),
                t0.plus(std::time::Duration::from_secs(100))
            )
            .is_empty()
        );
        assert!(q.hold(DsnKind::Delay, r(1, 2), t0).is_empty());
        assert!(
            q.hold(
                DsnKind::Failure,
                r(2, 0),
                t0.plus(std::time::Duration::from_secs(10))
            )
            .is_empty()
        );
        assert_eq!(q.len(), 4);
        assert_eq!(q.next_due(), Some(t0.plus(d)));
        // Nothing before the merge delay of the first failure.
        assert!(
            q.due(t0.plus(std::time::Duration::from_secs(299)))
                .is_empty()
        );
        let due = q.due(t0.plus(d));
        assert_eq!(due.len(), 2);
        assert_eq!(
            due.iter()
                .find(|b| b.kind == DsnKind::Failure)
                .unwrap()
                .recipients,
            vec![r(1, 0), r(1, 1)]
        );
        // Full batch released at once.
        q.hold(DsnKind::Failure, r(3, 0), t0);
        q.hold(DsnKind::Failure, r(3, 1), t0);
        let full = q.hold(DsnKind::Failure, r(3, 2), t0);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].recipients.len(), 3);
        // Flush.
        assert_eq!(
            q.flush(DsnKind::Failure, TransactionId::new(2, 0))
                .unwrap()
                .recipients,
            vec![r(2, 0)]
        );
        assert!(
            q.flush(DsnKind::Failure, TransactionId::new(2, 0))
                .is_none()
        );
        assert!(q.is_empty());
        // The bound pushes out the oldest batch.
        for t in 10..15 {
            assert!(
                q.hold(
                    DsnKind::Failure,
                    r(t, 0),
                    t0.plus(std::time::Duration::from_secs(t))
                )
                .is_empty()
            );
        }
        let out = q.hold(
            DsnKind::Failure,
            r(20, 0),
            t0.plus(std::time::Duration::from_secs(20)),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].transaction, TransactionId::new(10, 0));
        assert_eq!(q.len(), 5);
    }

    #[test]
    fn dates_and_xtext() {
        assert_eq!(
            rfc5322_date(Timestamp::ZERO),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(Timestamp::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
        assert_eq!(
            rfc5322_date(Timestamp::from_secs(1_795_254_411)),
            "Sat, 21 Nov 2026 09:46:51 +0000"
        );
        assert_eq!(xtext_decode("a+2Bb+3D"), Some("a+b=".into()));
        assert_eq!(xtext_decode("a+2"), None);
        assert_eq!(xtext_decode("a+ZZ"), None);
        assert_eq!(
            Notify::from_params("notify=success"),
            Notify {
                success: true,
                failure: false,
                delay: false
            }
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_parseable(
            addr in "\\PC{0,40}", params in "\\PC{0,60}", reply in "\\PC{0,80}", content in proptest::collection::vec(any::<u8>(), 0..400)
        ) {
            let mut r = rcpt(0, &addr, &params);
            r.reply = Some(reply);
            let plan = build(&cfg(), DsnKind::Failure, &ta("a@a.test", &params), &[r], &mut content.as_slice(), now()).unwrap();
            for d in plan.dsns {
                let s = d.message;
                // No bare LF or CR in what we generate.
                for (i, b) in s.iter().enumerate() {
                    if *b == b'\n' { prop_assert!(i > 0 && s[i - 1] == b'\r'); }
                    if *b == b'\r' { prop_assert!(s.get(i + 1) == Some(&b'\n')); }
                }
                prop_assert!(MessageParser::default().parse(&s).is_some());
            }
        }
    }
}
