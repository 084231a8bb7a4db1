//! Whatever a provider (or a proxy in front of it) sends, classification never panics.

use capsight_classify::{Provider, classify, classify_http, region_hints, zone_hints};
use proptest::prelude::*;

fn provider() -> impl Strategy<Value = Provider> {
    prop::sample::select(Provider::ALL.to_vec())
}

/// Strings built from the pieces the parsers look for, so the interesting paths are reached.
fn shaped() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "\\\"",
        "{\"error\":",
        "\"code\":",
        "\"message\":",
        "\"details\":",
        "\"reason\":",
        "\"status\":",
        "\"suggestion\":",
        "\"regions_with_capacity_available\":",
        "<Error>",
        "</Error>",
        "<Code>",
        "</Code>",
        "<Message>",
        "</Message>",
        "&amp;",
        "&",
        "choosing ",
        "Regions with capacity available: ",
        "us-east-1b",
        ", ",
        " or ",
        ".",
        "InsufficientInstanceCapacity",
        "SkuNotAvailable",
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "é",
        "İ",
        "\u{0}",
        " ",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(p in provider(), code in any::<String>(), body in any::<String>(), status in any::<u16>()) {
        let _ = classify(p, &code, &body);
        let _ = classify_http(p, status, &body);
        let _ = zone_hints(p, &body);
        let _ = region_hints(p, &body);
    }

    #[test]
    fn shaped_strings_never_panic(p in provider(), body in shaped(), status in any::<u16>()) {
        let c = classify_http(p, status, &body);
        // Hints are only ever attached to capacity errors.
        prop_assert!(c.is_capacity() || (c.zone_hints.is_empty() && c.region_hints.is_empty()));
        let _ = classify(p, &body, &body);
    }
}
