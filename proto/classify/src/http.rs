//! Classification of errors that arrive as an HTTP status and a body.
//!
//! The body is searched for every error code it holds, and the most specific one that the
//! provider's table knows wins:
//! * JSON bodies (GCP, Azure, Lambda Cloud, AWS JSON APIs): every object's `code`, `errorCode`,
//!   `__type`, `reason` (strings) and, in objects that carry a `message`, `status`. Deeper is more
//!   specific: GCP `error.errors[].reason` beats `error.status`; Azure's innermost
//!   `error.details[]...code` beats `DeploymentFailed`. Azure often nests a whole JSON error
//!   document inside a `message` string; such strings are parsed too.
//! * XML bodies (AWS Query/EC2): each `<Error>`'s `<Code>` and `<Message>`.
//! * GraphQL bodies (RunPod): each top-level `errors[]` entry's `message`, coded by the HTTP
//!   status when it has no code of its own; a 2xx answer with `errors` is an error.
//!
//! When no code in the body is known, the HTTP status decides where it means something
//! (429 throttled; 500/502/503/504 transient; 401/403 permission), keeping the body's own code
//! if it has one. A 2xx status with no error in the body is `ErrorClass::None`. Malformed bodies
//! never panic: they classify by status, with the body as the message.

use capsight_proto::domain::{ErrorClass, Provider};
use serde_json::{Map, Value};

use crate::{Classified, hints, table};

/// How many times a JSON document inside a string is parsed (Azure nests one level, rarely two).
const MAX_NESTED_DOCUMENTS: usize = 4;

/// One code found in a body.
#[derive(Debug)]
struct Candidate {
    code: String,
    message: String,
    /// Extra text that may carry hints (Lambda's `suggestion`).
    extra: String,
    depth: usize,
}

/// What a body held: its codes, and region lists given as data.
#[derive(Debug, Default)]
struct Found {
    candidates: Vec<Candidate>,
    /// The outermost message, used when the winning code has none.
    first_message: Option<String>,
    /// `regions_with_capacity_available` entries (Lambda `/instance-types` shape).
    regions: Vec<String>,
}

/// See [`crate::classify_http`].
pub fn classify_http(provider: Provider, status: u16, body: &str) -> Classified {
    let found = if looks_like_xml(body) {
        xml_errors(body)
    } else {
        let mut found = Found::default();
        if let Ok(value) = serde_json::from_str::<Value>(body) {
            walk(&value, 0, None, 0, &mut found);
            graphql_errors(&value, status, &mut found);
        }
        found
    };

    let known = found
        .candidates
        .iter()
        .map(|c| {
            (
                c,
                table::lookup(provider, &c.code).map(|r| r.apply(&c.message)),
            )
        })
        .filter_map(|(c, class)| class.filter(|k| *k != ErrorClass::Unknown).map(|k| (c, k)))
        // Deepest wins; among equals the first in document order (max_by_key keeps the last).
        .rev()
        .max_by_key(|(c, _)| c.depth);

    let mut classified = if let Some((c, class)) = known {
        let message = pick_message(&c.message, &found, body);
        Classified::new(class, c.code.clone(), message)
            .with_message_hints(provider)
            .with_hints(provider, &c.extra)
    } else {
        let deepest = found.candidates.iter().rev().max_by_key(|c| c.depth);
        let code = deepest.map_or_else(|| status.to_string(), |c| c.code.clone());
        let message = pick_message(deepest.map_or("", |c| c.message.as_str()), &found, body);
        match status_class(status) {
            Some(class) => Classified::new(class, code, message),
            None if (200..300).contains(&status) && deepest.is_none() => {
                Classified::new(ErrorClass::None, String::new(), String::new())
            }
            None => Classified::new(ErrorClass::Unknown, code, message),
        }
    };

    if classified.is_capacity() {
        for region in found.regions {
            if capsight_proto::domain::Region::parse("region", provider, &region).is_ok()
                && !classified.region_hints.contains(&region)
            {
                classified.region_hints.push(region);
            }
        }
    }
    classified
}

/// The class an HTTP status alone implies, if any.
fn status_class(status: u16) -> Option<ErrorClass> {
    match status {
        429 => Some(ErrorClass::Throttled),
        500 | 502 | 503 | 504 => Some(ErrorClass::Transient),
        401 | 403 => Some(ErrorClass::Permission),
        _ => None,
    }
}

fn pick_message(own: &str, found: &Found, body: &str) -> String {
    if !own.is_empty() {
        own.to_owned()
    } else if let Some(first) = &found.first_message {
        first.clone()
    } else if found.candidates.is_empty() {
        body.to_owned()
    } else {
        String::new()
    }
}

fn string_field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

/// A string that holds a JSON document (Azure's nested errors).
fn nested_document(text: &str) -> Option<Value> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).ok()
    } else {
        None
    }
}

/// Collects candidates from `value`. `inherited` is the nearest enclosing plain message.
fn walk(value: &Value, depth: usize, inherited: Option<&str>, nested: usize, found: &mut Found) {
    match value {
        Value::Array(items) => {
            for item in items {
                walk(item, depth + 1, inherited, nested, found);
            }
        }
        Value::Object(object) => {
            let own_message = string_field(object, "message")
                .or_else(|| string_field(object, "Message"))
                .filter(|m| nested_document(m).is_none());
            if found.first_message.is_none() {
                found.first_message = own_message.map(str::to_owned);
            }
            let message = own_message.or(inherited);
            let has_message = object.contains_key("message") || object.contains_key("Message");
            let extra = string_field(object, "suggestion").unwrap_or_default();
            let mut codes = vec![
                string_field(object, "code"),
                string_field(object, "Code"),
                string_field(object, "errorCode"),
                string_field(object, "__type"),
                string_field(object, "reason"),
            ];
            if has_message {
                codes.push(string_field(object, "status"));
            }
            for code in codes.into_iter().flatten() {
                if code.trim().is_empty() {
                    continue;
                }
                found.candidates.push(Candidate {
                    code: code.to_owned(),
                    message: message.unwrap_or_default().to_owned(),
                    extra: extra.to_owned(),
                    depth,
                });
            }
            if let Some(Value::Array(regions)) = object.get("regions_with_capacity_available") {
                for region in regions {
                    let name = region
                        .as_str()
                        .or_else(|| region.get("name").and_then(Value::as_str));
                    if let Some(name) = name {
                        found.regions.push(name.to_owned());
                    }
                }
            }
            for child in object.values() {
                match child {
                    Value::String(text) if nested < MAX_NESTED_DOCUMENTS => {
                        if let Some(document) = nested_document(text) {
                            walk(&document, depth + 1, message, nested + 1, found);
                        }
                    }
                    Value::Array(_) | Value::Object(_) => {
                        walk(child, depth + 1, message, nested, found);
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// GraphQL errors (RunPod): a top-level `errors` array whose entries carry a `message` and
/// often no code. Each becomes a candidate coded by the HTTP status (a code inside, such as
/// `extensions.code`, was found by [`walk`] already, deeper), so the provider's table can
/// decide by the message; a 2xx answer with `errors` is an error, not a success.
fn graphql_errors(value: &Value, status: u16, found: &mut Found) {
    let Some(Value::Array(errors)) = value.get("errors") else {
        return;
    };
    for error in errors {
        if let Some(message) = error.get("message").and_then(Value::as_str) {
            if found.first_message.is_none() {
                found.first_message = Some(message.to_owned());
            }
            found.candidates.push(Candidate {
                code: status.to_string(),
                message: message.to_owned(),
                extra: String::new(),
                depth: 0,
            });
        }
    }
}

fn looks_like_xml(body: &str) -> bool {
    body.trim_start().starts_with('<')
}

/// The `<Error>` elements of an AWS Query/EC2 error response (`<Response><Errors><Error>
/// <Code>..</Code><Message>..</Message></Error></Errors>..`, or `<ErrorResponse><Error>..`).
fn xml_errors(body: &str) -> Found {
    let mut found = Found::default();
    let mut rest = body;
    while let Some((error, after)) = element(rest, "Error") {
        rest = after;
        if let Some((code, _)) = element(error, "Code") {
            let message = element(error, "Message").map_or_else(String::new, |(m, _)| unescape(m));
            if found.first_message.is_none() && !message.is_empty() {
                found.first_message = Some(message.clone());
            }
            found.candidates.push(Candidate {
                code: unescape(code.trim()),
                message,
                extra: String::new(),
                depth: 0,
            });
        }
    }
    found
}

/// The text inside the first `<tag>...</tag>` of `text`, and the text after it.
fn element<'a>(text: &'a str, tag: &str) -> Option<(&'a str, &'a str)> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text.get(start..)?.find(&close)?;
    let inner = text.get(start..start + len)?;
    let after = text.get(start + len + close.len()..)?;
    Some((inner, after))
}

/// Decodes the five predefined XML entities.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl Classified {
    /// Adds hints from the message and `extra` text when the class is capacity.
    fn with_hints(mut self, provider: Provider, extra: &str) -> Self {
        if self.is_capacity() && !extra.is_empty() {
            for zone in hints::zone_hints(provider, extra) {
                if !self.zone_hints.contains(&zone) {
                    self.zone_hints.push(zone);
                }
            }
            for region in hints::region_hints(provider, extra) {
                if !self.region_hints.contains(&region) {
                    self.region_hints.push(region);
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_elements_and_entities() {
        let found = xml_errors(
            "<Response><Errors><Error><Code>A</Code><Message>x &apos;y&apos; &amp;lt;</Message>\
             </Error><Error><Code>B</Code></Error></Errors></Response>",
        );
        let codes: Vec<_> = found.candidates.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["A", "B"]);
        assert_eq!(found.candidates[0].message, "x 'y' &lt;");
    }

    #[test]
    fn unterminated_xml_is_not_an_error_element() {
        assert!(xml_errors("<Error><Code>A</Code>").candidates.is_empty());
        assert!(xml_errors("<Error><Code>A</Error>").candidates.is_empty());
    }

    #[test]
    fn status_only_fallbacks() {
        for (status, class) in [
            (429, ErrorClass::Throttled),
            (503, ErrorClass::Transient),
            (500, ErrorClass::Transient),
            (401, ErrorClass::Permission),
            (403, ErrorClass::Permission),
            (404, ErrorClass::Unknown),
            (400, ErrorClass::Unknown),
            (200, ErrorClass::None),
        ] {
            let c = classify_http(Provider::Gcp, status, "");
            assert_eq!(c.class, class, "{status}");
        }
    }
}
