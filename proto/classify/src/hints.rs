//! Positive hints inside error messages: the zones or regions the provider says *do* have
//! capacity.
//!
//! * Zones: AWS InsufficientInstanceCapacity ends with "You can currently get p4d.24xlarge
//!   capacity by not specifying an Availability Zone in your request or choosing us-east-1b,
//!   us-east-1c." The list after "choosing" is read (commas, "or", "and"), up to the end of the
//!   sentence. Names are returned as written (AZ *names* such as `us-east-1b`, or AZ IDs if the
//!   message used them); mapping names to AZ IDs is the adapter's job, per account.
//! * Regions: Lambda Cloud's "Regions with capacity available: us-west-1, us-east-1". Only names
//!   that are valid regions of the provider are kept.
//!
//! Both never panic and return hints in message order without duplicates.

use capsight_proto::domain::{Provider, Region};

/// Zone names or ids the message lists as having capacity.
pub fn zone_hints(provider: Provider, message: &str) -> Vec<String> {
    if matches!(provider, Provider::Lambda | Provider::RunPod) {
        // Lambda and RunPod have no zones.
        return Vec::new();
    }
    list_after(message, "choosing", looks_like_zone)
}

/// Regions the message lists as having capacity.
pub fn region_hints(provider: Provider, message: &str) -> Vec<String> {
    list_after(message, "regions with capacity available", |word| {
        Region::parse("region", provider, word).is_ok()
    })
}

/// For every case-insensitive occurrence of `marker`, the words after it that pass `accept`,
/// separated by commas/"or"/"and", until a word that does not pass or the end of a sentence.
fn list_after(message: &str, marker: &str, accept: impl Fn(&str) -> bool) -> Vec<String> {
    // ASCII lowercasing keeps byte offsets identical to `message`.
    let lower = message.to_ascii_lowercase();
    let mut out: Vec<String> = Vec::new();
    let mut from = 0;
    while let Some(found) = lower.get(from..).and_then(|rest| rest.find(marker)) {
        let start = from + found + marker.len();
        from = start;
        let Some(rest) = message.get(start..) else {
            break;
        };
        for raw in rest.split_whitespace() {
            let word = raw.trim_matches(|c: char| {
                matches!(
                    c,
                    ',' | '.' | ';' | ':' | '(' | ')' | '[' | ']' | '"' | '\'' | '`'
                )
            });
            let lower_word = word.to_ascii_lowercase();
            if word.is_empty() || matches!(lower_word.as_str(), "or" | "and" | "are" | "is") {
                if raw.ends_with('.') {
                    break;
                }
                continue;
            }
            if !accept(word) {
                break;
            }
            if !out.iter().any(|w| w == word) {
                out.push(word.to_owned());
            }
            // A period ends the list; a zone name never ends in one.
            if raw.trim_end_matches(['"', '\'', ')', ']']).ends_with('.') {
                break;
            }
        }
    }
    out
}

/// An AZ name (`us-east-1b`, `us-west-2-lax-1a`), an AZ ID (`use1-az4`) or a GCP/Azure zone
/// (`us-central1-a`, `eastus-1`): lowercase letters, digits and hyphens, starting with a letter,
/// with at least one hyphen and one digit.
fn looks_like_zone(word: &str) -> bool {
    word.len() <= 40
        && word.starts_with(|c: char| c.is_ascii_lowercase())
        && word.contains('-')
        && word.contains(|c: char| c.is_ascii_digit())
        && !word.ends_with('-')
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWS_TWO: &str = "We currently do not have sufficient p4d.24xlarge capacity in the \
        Availability Zone you requested (us-east-1a). Our system will be working on provisioning \
        additional capacity. You can currently get p4d.24xlarge capacity by not specifying an \
        Availability Zone in your request or choosing us-east-1b, us-east-1c.";

    #[test]
    fn aws_two_zones() {
        assert_eq!(
            zone_hints(Provider::Aws, AWS_TWO),
            ["us-east-1b", "us-east-1c"]
        );
    }

    #[test]
    fn aws_three_zones_and_single_zone() {
        let three = "We currently do not have sufficient p5.48xlarge capacity in the Availability \
            Zone you requested (us-east-1a). Our system will be working on provisioning additional \
            capacity. You can currently get p5.48xlarge capacity by not specifying an Availability \
            Zone in your request or choosing us-east-1b, us-east-1c, us-east-1d.";
        assert_eq!(
            zone_hints(Provider::Aws, three),
            ["us-east-1b", "us-east-1c", "us-east-1d"]
        );
        let one = "We currently do not have sufficient g6e.xlarge capacity in the Availability \
            Zone you requested (eu-west-1a). Our system will be working on provisioning \
            additional capacity. You can currently get g6e.xlarge capacity by not specifying an \
            Availability Zone in your request or choosing eu-west-1c.";
        assert_eq!(zone_hints(Provider::Aws, one), ["eu-west-1c"]);
    }

    #[test]
    fn requested_zone_is_not_a_hint_and_text_after_the_list_is_ignored() {
        let msg = format!("{AWS_TWO} Our system will retry in us-east-1d soon.");
        assert_eq!(
            zone_hints(Provider::Aws, &msg),
            ["us-east-1b", "us-east-1c"]
        );
    }

    #[test]
    fn or_and_separators_local_zones_and_az_ids() {
        assert_eq!(
            zone_hints(
                Provider::Aws,
                "... or choosing us-west-2-lax-1a or us-west-2b and use1-az4."
            ),
            ["us-west-2-lax-1a", "us-west-2b", "use1-az4"]
        );
    }

    #[test]
    fn no_list_no_hints() {
        for msg in [
            "We currently do not have sufficient p5.48xlarge capacity in zones with support for \
             'gp3' volumes. Our system will be working on provisioning additional capacity.",
            "Insufficient capacity.",
            "choosing",
            "choosing ",
            "by choosing.",
            "",
        ] {
            assert!(zone_hints(Provider::Aws, msg).is_empty(), "{msg}");
        }
    }

    #[test]
    fn lambda_regions_with_capacity() {
        let msg = "Not enough capacity to fulfill launch request. Regions with capacity \
                   available: us-west-1, us-east-1 and europe-central-1.";
        assert_eq!(
            region_hints(Provider::Lambda, msg),
            ["us-west-1", "us-east-1", "europe-central-1"]
        );
        assert!(zone_hints(Provider::Lambda, msg).is_empty());
        assert_eq!(
            region_hints(
                Provider::Lambda,
                "Regions with capacity available: [\"us-south-1\"]"
            ),
            ["us-south-1"]
        );
        assert!(
            region_hints(
                Provider::Lambda,
                "Regions with capacity available: none. Try again later."
            )
            .is_empty()
        );
    }

    #[test]
    fn duplicates_are_dropped() {
        assert_eq!(
            zone_hints(
                Provider::Aws,
                "choosing us-east-1b, us-east-1b. Or choosing us-east-1b."
            ),
            ["us-east-1b"]
        );
    }

    #[test]
    fn non_ascii_text_does_not_panic() {
        assert!(zone_hints(Provider::Aws, "ÄÖ choosing ü-1, é").is_empty());
        assert!(zone_hints(Provider::Aws, "CHOOSİNG us-east-1b").len() <= 1);
    }
}
