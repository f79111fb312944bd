//! A span's fields kept as JSON text, and the visitors that write fields: into a span's
//! [`SpanFields`] when it starts or a field is recorded, and into the line for an event.

use std::fmt;

use tracing::field::{Field, Visit};

use super::text;

/// A span's fields as JSON text: (name, encoded value), sorted by name as the JSON
/// format's map sorted them. It lives in the span's extensions, so a `record` re-encodes
/// only the field it names and a line copies the others as they are.
#[derive(Debug, Default)]
pub(super) struct SpanFields {
    /// One entry per field recorded so far (`Empty` fields appear once recorded).
    fields: Vec<(&'static str, Vec<u8>)>,
}

impl SpanFields {
    /// Room for the `count` fields a span declares: recording them never regrows the list.
    pub(super) fn with_capacity(count: usize) -> Self {
        Self {
            fields: Vec::with_capacity(count),
        }
    }

    /// The value of field `name`, emptied for its new value (a new entry if it has none).
    fn slot(&mut self, name: &'static str) -> &mut Vec<u8> {
        let at = match self.fields.binary_search_by(|(known, _)| known.cmp(&name)) {
            Ok(at) => at,
            Err(at) => {
                self.fields.insert(at, (name, Vec::new()));
                at
            }
        };
        let value = &mut self.fields[at].1;
        value.clear();
        value
    }

    /// Writes each field as `"name":value,` (the span's `name` follows them).
    pub(super) fn write_entries(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.fields {
            text::string(out, name);
            out.push(b':');
            out.extend_from_slice(value);
            out.push(b',');
        }
    }
}

/// Records a span's fields into its [`SpanFields`], as the JSON format's span visitor
/// recorded them: `Debug` values as strings without a `r#` prefix on their names (and
/// none of the `log.` metadata of records from the `log` crate), bytes as arrays.
pub(super) struct SpanVisitor<'a>(pub(super) &'a mut SpanFields);

impl Visit for SpanVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        text::scalar(self.0.slot(field.name()), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        text::scalar(self.0.slot(field.name()), &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        text::scalar(self.0.slot(field.name()), &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        text::scalar(self.0.slot(field.name()), &value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        text::string(self.0.slot(field.name()), value);
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        text::scalar(self.0.slot(field.name()), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if name.starts_with("log.") {
            return;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        text::debug_string(self.0.slot(name), value);
    }
}

/// Writes an event's fields into its line as `,"name":value`, in the order the event
/// gives them, as the JSON format's flattened event did.
pub(super) struct EventVisitor<'a>(pub(super) &'a mut Vec<u8>);

impl EventVisitor<'_> {
    /// Starts the entry of `field` and returns the line for its value.
    fn key(&mut self, field: &Field) -> &mut Vec<u8> {
        self.0.push(b',');
        text::string(self.0, field.name());
        self.0.push(b':');
        self.0
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        text::scalar(self.key(field), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        text::scalar(self.key(field), &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        text::scalar(self.key(field), &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        text::scalar(self.key(field), &value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        text::string(self.key(field), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        text::debug_string(self.key(field), value);
    }
}
