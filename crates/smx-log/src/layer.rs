//! The [`tracing_subscriber::Layer`] that turns events into seed-format
//! log lines (seed 10.3).
//!
//! A line body is `sev=LEVEL`, then the fields of every span the event is
//! in (outermost first, in the order they were declared or recorded), then
//! the event's own fields in the order written, and finally the `message`
//! field, if any, as `msg=...`. Fields are joined with `, `; every value goes
//! through [`encode_value`]. So
//!
//! ```text
//! let _s = info_span!("session", ss_sess = %sess).entered();
//! info!(ss_ta = %ta, mail = %from, stat = 0, "accepted");
//! ```
//!
//! gives `sev=INFO, ss_sess=S..., ss_ta=S..., mail=<a@b>, stat=0, msg=accepted`.
//!
//! The level from `log_level` (see [`crate::level_filter`]) filters events
//! only. Spans are always enabled (unless logging is off altogether), so a
//! session span made at any level still puts `ss_sess` on every line. The
//! layer's filter applies to the whole subscriber it is part of.
//!
//! Formatting cannot fail; writing is the sink's business (see
//! [`crate::sink`]).

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::encode_value;
use crate::sink::{LogHandle, Sink, Target};

/// Formats events as seed-format lines and writes them to a destination.
///
/// Built by [`crate::layer`] / [`crate::init`] from [`crate::LogSettings`],
/// or by [`SmxLayer::with_writer`] to capture output in tests.
#[derive(Debug)]
pub struct SmxLayer {
    sink: Arc<Sink>,
    filter: LevelFilter,
    clock: fn() -> u64,
}

impl SmxLayer {
    /// A layer writing `TIMESTAMP component[pid]: body` lines to `writer`,
    /// filtered by the MeTA1 `log_level`.
    pub fn with_writer(
        component: impl Into<String>,
        log_level: u32,
        writer: impl Write + Send + 'static,
    ) -> SmxLayer {
        let target = Target::Writer(Mutex::new(Box::new(writer)));
        SmxLayer::new(Sink::new(target, component.into()), log_level)
    }

    /// Replaces the clock (Unix seconds) used for timestamps.
    #[must_use]
    pub fn with_clock(mut self, clock: fn() -> u64) -> SmxLayer {
        self.clock = clock;
        self
    }

    /// A handle on this layer's destination.
    pub fn handle(&self) -> LogHandle {
        LogHandle {
            sink: Arc::clone(&self.sink),
        }
    }

    pub(crate) fn new(sink: Sink, log_level: u32) -> SmxLayer {
        SmxLayer {
            sink: Arc::new(sink),
            filter: crate::level_filter(log_level),
            clock: crate::time::system_now,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        (self.clock)()
    }

    pub(crate) fn sink(&self) -> &Sink {
        &self.sink
    }
}

impl<S> tracing_subscriber::Layer<S> for SmxLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        if self.filter == LevelFilter::OFF {
            return false;
        }
        metadata.is_span() || *metadata.level() <= self.filter
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanFields::default();
        attrs.record(&mut Collect(&mut fields.0));
        if let Some(span) = ctx.span(id) {
            // `replace`, not `insert`: with two smx layers in one subscriber
            // (say a file and stderr) the second would find the first's
            // fields, and `insert` panics on a duplicate.
            span.extensions_mut().replace(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<SpanFields>() {
                values.record(&mut Collect(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        let mut body = String::with_capacity(256);
        body.push_str("sev=");
        body.push_str(sev_name(level));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    append(&mut body, &fields.0);
                }
            }
        }
        let mut fields = Vec::new();
        event.record(&mut Collect(&mut fields));
        if let Some(pos) = fields.iter().position(|(name, _)| *name == MSG) {
            let msg = fields.remove(pos);
            fields.push(msg);
        }
        append(&mut body, &fields);
        self.sink.write(level, self.now(), &body);
    }
}

/// The `sev=` name of a level; ERR as in MeTA1, so `sev=(ALERT|CRIT|ERR|FAIL)`
/// (seed 4.9) finds errors.
pub(crate) fn sev_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        _ => "TRACE",
    }
}

/// Output name of tracing's `message` field.
const MSG: &str = "msg";

/// Encoded fields of a span, kept in its registry extensions.
#[derive(Debug, Default)]
struct SpanFields(Vec<(&'static str, String)>);

/// Visitor collecting encoded `(name, value)` pairs; a later value for the
/// same name replaces the earlier one (for `Span::record`).
struct Collect<'a>(&'a mut Vec<(&'static str, String)>);

impl Collect<'_> {
    fn put(&mut self, field: &Field, raw: &str) {
        let name = match field.name() {
            "message" => MSG,
            other => other,
        };
        let value = encode_value(raw).into_owned();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, &format!("{value:?}"));
    }
}

fn append(body: &mut String, fields: &[(&'static str, String)]) {
    for (name, value) in fields {
        body.push_str(", ");
        body.push_str(name);
        body.push('=');
        body.push_str(value);
    }
}
