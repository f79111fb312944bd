//! The JSON log lines: a [`Layer`] of our own that writes the lines `tracing-subscriber`'s
//! JSON format wrote (`flatten_event`, the current span, no span list), for less work per
//! request.
//!
//! That format keeps a span's fields as one JSON string and, on every `Span::record`,
//! parses it back into a map, adds the field and writes the whole object again; each line
//! then parses the span's fields once more to copy them. Here a span's fields are kept
//! encoded one by one ([`fields::SpanFields`]): a `record` re-encodes only the field it
//! names, and a line copies the encoded values into a buffer of its thread that is reused
//! from line to line. Filtering is not this layer's business: it sits behind the same
//! `EnvFilter` (`RUST_LOG`) as before.
//!
//! A line: `timestamp`, `level`, the event's fields (`message` among them) in the order
//! the event gives them, `target`, and `span`: the current span's fields sorted by name,
//! then its `name`.

mod clock;
mod fields;
mod text;

use std::cell::RefCell;
use std::io::Write as _;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use fields::{EventVisitor, SpanFields, SpanVisitor};

/// A thread's line buffer is given back to the allocator after a line longer than this,
/// so that one huge line does not keep its memory for the life of the thread.
const KEPT_LINE_CAPACITY: usize = 16 * 1024;

/// Writes each event as one JSON object per line to `W` (the log writer of
/// [`super::Logging`], or a buffer in tests).
#[derive(Debug)]
pub struct JsonLayer<W> {
    /// Where the lines go; asked for a writer once per line.
    make_writer: W,
}

impl<W> JsonLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// A layer writing its lines to `make_writer`.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }

    /// Formats `event` into `line` (emptied first) and writes it out in one piece.
    fn write_event<S>(&self, line: &mut Vec<u8>, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        line.clear();
        // Records of the `log` crate name their own level and target.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        line.extend_from_slice(b"{\"timestamp\":\"");
        clock::write_now(line);
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(meta.level().as_str().as_bytes());
        line.push(b'"');
        event.record(&mut EventVisitor(line));
        line.extend_from_slice(b",\"target\":");
        text::string(line, meta.target());
        // The current span as this layer's filter sees it: the phase spans, filtered out,
        // never hide the request's span.
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            line.extend_from_slice(b",\"span\":{");
            if let Some(fields) = span.extensions().get::<SpanFields>() {
                fields.write_entries(line);
            }
            line.extend_from_slice(b"\"name\":");
            text::string(line, span.name());
            line.push(b'}');
        }
        line.extend_from_slice(b"}\n");
        // A log line that cannot be written has nowhere to be reported.
        let _ = self.make_writer.make_writer_for(meta).write_all(line);
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        // A second JSON layer in the same subscriber shares the first one's fields: a
        // `record` replaces a value, so recording it twice changes nothing.
        if extensions.get_mut::<SpanFields>().is_none() {
            let mut fields = SpanFields::with_capacity(attrs.metadata().fields().len());
            attrs.record(&mut SpanVisitor(&mut fields));
            extensions.insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut SpanVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                self.write_event(&mut line, event, &ctx);
                if line.capacity() > KEPT_LINE_CAPACITY {
                    *line = Vec::new();
                }
            }
            // An event logged while another is formatted on this thread (by a field's
            // `Debug`) gets a buffer of its own.
            Err(_) => self.write_event(&mut Vec::new(), event, &ctx),
        });
    }
}
