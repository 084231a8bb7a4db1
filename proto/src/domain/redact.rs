//! Redaction of free text before it reaches shared storage: a tenant's raw cloud error messages
//! and report notes end up in the `signals` topic and table every analyst and every other
//! component reads, so account ids, ARNs, access key ids, e-mail addresses and IP addresses in
//! them are replaced by placeholders. What classification needs (error codes, zone and
//! instance-type names) is kept.

use std::sync::LazyLock;

use regex::Regex;

use super::{Payload, Signal};

/// (pattern, placeholder), applied in order: ARNs first (they contain account ids).
static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"arn:aws[a-zA-Z-]*:[^\s,;'\x22)]+", "<arn>"),
        (
            r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}\b",
            "<access-key-id>",
        ),
        (r"\b\d{4}-?\d{4}-?\d{4}\b", "<account>"),
        (r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", "<email>"),
        (r"\b(?:\d{1,3}\.){3}\d{1,3}\b", "<ip>"),
        (r"\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b", "<ip>"),
        (
            r"\b(?:Encoded authorization failure message|encoded message):\s*\S+",
            "<encoded message>",
        ),
    ]
    .into_iter()
    .map(|(p, r)| {
        // the patterns are constants: a bad one is a bug caught by the unit tests
        (
            Regex::new(p).unwrap_or_else(|e| panic!("redaction pattern {p}: {e}")),
            r,
        )
    })
    .collect()
});

/// `text` with identifiers of accounts, principals and hosts replaced by placeholders.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for (re, placeholder) in RULES.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, *placeholder).into_owned();
        }
    }
    out
}

impl Signal {
    /// Redacts the signal's free text (launch error messages, report notes) in place.
    pub fn redact(&mut self) {
        match &mut self.payload {
            Payload::LaunchAttempt(a) => a.error_message = redact(&a.error_message),
            Payload::CrowdReport(r) => r.note = redact(&r.note),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn identifiers_are_replaced_and_the_useful_part_kept() {
        let raw = "You are not authorized to perform this operation. User: \
                   arn:aws:sts::123456789012:assumed-role/capsight/s1 is not authorized to \
                   perform: ec2:RunInstances on resource: arn:aws:ec2:us-east-1:123456789012:instance/*. \
                   Encoded authorization failure message: AbC123-xyz_987";
        let red = redact(raw);
        assert!(!red.contains("123456789012"), "{red}");
        assert!(!red.contains("AbC123"), "{red}");
        assert!(
            red.contains("<arn>") && red.contains("ec2:RunInstances"),
            "{red}"
        );

        let red = redact(
            "InsufficientInstanceCapacity: no p5.48xlarge capacity in us-east-1a (use1-az4); \
             account 1234-5678-9012, key AKIAIOSFODNN7EXAMPLE, ops@example.com, from 10.0.3.17",
        );
        for gone in [
            "1234-5678-9012",
            "AKIAIOSFODNN7EXAMPLE",
            "ops@example.com",
            "10.0.3.17",
        ] {
            assert!(!red.contains(gone), "{gone} in {red}");
        }
        for kept in [
            "InsufficientInstanceCapacity",
            "p5.48xlarge",
            "us-east-1a",
            "use1-az4",
        ] {
            assert!(red.contains(kept), "{kept} lost: {red}");
        }
    }

    #[test]
    fn text_without_identifiers_is_unchanged() {
        let msg = "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested (us-west-2b).";
        assert_eq!(redact(msg), msg);
    }
}
