//! The embedded catalog, every validation rule, headroom math and substitutes.

use capsight_catalog::{Catalog, CatalogError, GpuType, QuotaUnit};
use capsight_proto::domain::{InstanceType, Market, Provider, Region};
use proptest::prelude::*;

fn embedded() -> &'static Catalog {
    static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| Catalog::embedded().unwrap_or_else(|e| panic!("embedded catalog: {e}")))
}

fn aws(catalog: &Catalog, t: &str) -> GpuType {
    let it = InstanceType::parse("t", Provider::Aws, t).expect("valid type");
    catalog
        .get(Provider::Aws, &it)
        .unwrap_or_else(|| panic!("{t} missing"))
        .clone()
}

// ------------------------------------------------------------------------- embedded data

#[test]
fn embedded_catalog_loads_and_covers_the_required_types() {
    let c = embedded();
    for (provider, t) in [
        (Provider::Aws, "p5.48xlarge"),
        (Provider::Aws, "p5e.48xlarge"),
        (Provider::Aws, "p5en.48xlarge"),
        (Provider::Aws, "p4d.24xlarge"),
        (Provider::Aws, "p4de.24xlarge"),
        (Provider::Aws, "g6e.xlarge"),
        (Provider::Aws, "g6e.12xlarge"),
        (Provider::Aws, "g6e.48xlarge"),
        (Provider::Aws, "g5.xlarge"),
        (Provider::Aws, "g5.12xlarge"),
        (Provider::Aws, "g5.48xlarge"),
        (Provider::Aws, "g6.xlarge"),
        (Provider::Aws, "g6.12xlarge"),
        (Provider::Aws, "g6.48xlarge"),
        (Provider::Aws, "g4dn.xlarge"),
        (Provider::Aws, "g4dn.12xlarge"),
        (Provider::Gcp, "a3-highgpu-8g"),
        (Provider::Gcp, "a2-highgpu-1g"),
        (Provider::Gcp, "a2-highgpu-2g"),
        (Provider::Gcp, "a2-highgpu-4g"),
        (Provider::Gcp, "a2-highgpu-8g"),
        (Provider::Gcp, "a2-ultragpu-8g"),
        (Provider::Gcp, "g2-standard-4"),
        (Provider::Gcp, "g2-standard-8"),
        (Provider::Azure, "Standard_ND96isr_H100_v5"),
        (Provider::Azure, "Standard_NC24ads_A100_v4"),
        (Provider::Azure, "Standard_ND96asr_v4"),
        (Provider::Azure, "Standard_ND96amsr_A100_v4"),
        (Provider::Azure, "Standard_NC40ads_H100_v5"),
        (Provider::Lambda, "gpu_1x_a100_sxm4"),
        (Provider::Lambda, "gpu_8x_h100_sxm5"),
        (Provider::RunPod, "1x_h100_sxm"),
        (Provider::RunPod, "8x_h100_sxm"),
        (Provider::RunPod, "1x_h100_pcie"),
        (Provider::RunPod, "1x_a100_sxm"),
        (Provider::RunPod, "1x_a100_pcie"),
        (Provider::RunPod, "1x_l40s"),
        (Provider::RunPod, "1x_rtx_4090"),
    ] {
        let it = InstanceType::parse("t", provider, t).unwrap();
        assert!(c.get(provider, &it).is_some(), "{provider} {t} missing");
    }
    assert_eq!(c.len(), 38);
    assert_eq!(c.iter().count(), c.len());
    assert!(!c.is_empty());
}

#[test]
fn azure_gpu_sizes_carry_their_gpus_quota_families_and_compare_by_gpu_hour() {
    let c = embedded();
    let get = |p: Provider, t: &str| {
        c.get(p, &InstanceType::parse("t", p, t).unwrap())
            .unwrap_or_else(|| panic!("{p} {t} missing"))
    };
    for (t, model, count, memory, family) in [
        (
            "Standard_ND96isr_H100_v5",
            "H100",
            8,
            80,
            "standardNDSH100v5Family",
        ),
        (
            "Standard_ND96asr_v4",
            "A100",
            8,
            40,
            "standardNDASv4_A100Family",
        ),
        (
            "Standard_ND96amsr_A100_v4",
            "A100",
            8,
            80,
            "standardNDAMSv4_A100Family",
        ),
        (
            "Standard_NC24ads_A100_v4",
            "A100",
            1,
            80,
            "standardNCADSA100v4Family",
        ),
        (
            "Standard_NC40ads_H100_v5",
            "H100",
            1,
            94,
            "standardNCadsH100v5Family",
        ),
    ] {
        let g = get(Provider::Azure, t);
        assert_eq!(
            (g.gpu_model.as_str(), g.gpu_count, g.gpu_memory_gib),
            (model, count, memory),
            "{t}"
        );
        assert_eq!(g.quota_code(Market::OnDemand), Some(family), "{t}");
        assert_eq!(g.quota_code(Market::Spot), Some("lowPriorityCores"), "{t}");
        assert!(g.on_demand_usd_per_hour > 0.0, "{t}");
    }
    // 8x H100 80 GB on three clouds, compared per GPU-hour
    let aws = get(Provider::Aws, "p5.48xlarge").usd_per_gpu_hour();
    let lambda = get(Provider::Lambda, "gpu_8x_h100_sxm5").usd_per_gpu_hour();
    let azure = get(Provider::Azure, "Standard_ND96isr_H100_v5").usd_per_gpu_hour();
    assert!((azure - 98.32 / 8.0).abs() < 1e-9, "{azure}");
    assert!(
        lambda < aws && aws < azure,
        "lambda {lambda}, aws {aws}, azure {azure}"
    );
}

#[test]
fn embedded_facts_match_domain_md() {
    let c = embedded();
    let p5 = aws(c, "p5.48xlarge");
    assert_eq!(
        (
            p5.gpu_model.as_str(),
            p5.gpu_count,
            p5.gpu_memory_gib,
            p5.vcpus
        ),
        ("H100", 8, 80, 192)
    );
    assert_eq!(p5.quota_code(Market::OnDemand), Some("L-417A185B"));
    assert_eq!(p5.quota_code(Market::Spot), Some("L-C4BD4855"));
    assert_eq!(p5.quota_code(Market::CapacityBlock), None);
    assert!(p5.capacity_blocks);
    let p4d = aws(c, "p4d.24xlarge");
    assert_eq!((p4d.gpu_memory_gib, p4d.vcpus), (40, 96));
    assert_eq!(p4d.quota_code(Market::Spot), Some("L-7212CCBC"));
    assert_eq!(aws(c, "p4de.24xlarge").gpu_memory_gib, 80);
    assert_eq!(aws(c, "p5en.48xlarge").gpu_model, "H200");
    let g5 = aws(c, "g5.xlarge");
    assert_eq!(g5.quota_code(Market::OnDemand), Some("L-DB2E81BA"));
    assert_eq!(g5.quota_code(Market::Spot), Some("L-3819A6DF"));
    assert!(!g5.capacity_blocks);
    // The capability ranks in the order the design gives.
    let class = |t: &str| aws(c, t).gpu_class;
    let order = [
        class("g4dn.xlarge"),
        class("g5.xlarge"),
        class("g6.xlarge"),
        class("g6e.xlarge"),
        class("p4d.24xlarge"),
        class("p4de.24xlarge"),
        class("p5.48xlarge"),
        class("p5e.48xlarge"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(class("p5e.48xlarge"), class("p5en.48xlarge"));
    for t in c.iter() {
        assert!(t.price_date.to_string().starts_with("20"), "{t:?}");
        assert!(t.usd_per_gpu_hour() > 0.0);
    }
}

#[test]
fn offered_in_filters_by_provider_and_region() {
    let c = embedded();
    let use1 = Region::parse("r", Provider::Aws, "us-east-1").unwrap();
    let names: Vec<_> = c
        .offered_in(Provider::Aws, &use1)
        .map(|t| t.instance_type.as_str().to_owned())
        .collect();
    assert!(names.contains(&"p5.48xlarge".to_owned()));
    assert!(!names.contains(&"p5e.48xlarge".to_owned()));
    // Lambda also has a us-east-1: not mixed into AWS.
    assert!(
        c.offered_in(Provider::Aws, &use1)
            .all(|t| t.provider == Provider::Aws)
    );
    let lambda_use1 = Region::parse("r", Provider::Lambda, "us-east-1").unwrap();
    let lambda: Vec<_> = c.offered_in(Provider::Lambda, &lambda_use1).collect();
    assert_eq!(lambda.len(), 1);
    // The iterators borrow only the catalog, not their arguments.
    let offered = {
        let region = Region::parse("r", Provider::Aws, "eu-west-1").unwrap();
        c.offered_in(Provider::Aws, &region)
    };
    assert!(offered.count() > 0);
    let subs = {
        let p4d = aws(c, "p4d.24xlarge");
        c.substitutes(&p4d, 8)
    };
    assert!(subs.count() > 0);
    let nowhere = Region::parse("r", Provider::Aws, "af-south-1").unwrap();
    assert_eq!(c.offered_in(Provider::Aws, &nowhere).count(), 0);
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("capsight-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gpus.toml");
    std::fs::write(&path, capsight_catalog::EMBEDDED_TOML).unwrap();
    assert_eq!(Catalog::load(&path).unwrap().len(), embedded().len());
    let missing = dir.join("nope.toml");
    let err = Catalog::load(&missing).unwrap_err();
    assert!(matches!(err, CatalogError::Read { .. }), "{err}");
    assert!(err.to_string().contains("nope.toml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------------------------ validation

const MODELS: &str = r#"
[[model]]
name = "H100"
memory_gib = 80
class = 70
"#;

const ENTRY: &str = r#"
[[instance]]
provider = "aws"
instance_type = "p5.48xlarge"
gpu_model = "H100"
gpu_memory_gib = 80
gpu_count = 8
vcpus = 192
memory_gib = 2048
quota = { on_demand = "L-417A185B", spot = "L-C4BD4855" }
regions = ["us-east-1", "us-west-2"]
on_demand_usd_per_hour = 55.04
price_date = 2025-07-01
capacity_blocks = true
"#;

fn with(from: &str, to: &str) -> Result<Catalog, CatalogError> {
    assert!(ENTRY.contains(from), "{from}");
    Catalog::parse(&format!("{MODELS}{}", ENTRY.replace(from, to)))
}

fn invalid(result: Result<Catalog, CatalogError>, field: &str) -> String {
    let err = result.expect_err(field);
    assert_eq!(err.field(), Some(field), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("instance[0]") || text.contains("model["),
        "{text}"
    );
    text
}

/// `result` is refused as text that does not even read as a catalog.
#[track_caller]
fn unreadable(result: Result<Catalog, CatalogError>) {
    assert!(matches!(result, Err(CatalogError::Syntax(_))), "{result:?}");
}

/// Each edit `(from, to)` of the minimal entry is refused naming `field`, its message holding
/// `says` (every message holds "").
fn refused(edits: &[(&str, &str, &str, &str)]) {
    for (from, to, field, says) in edits {
        let text = invalid(with(from, to), field);
        assert!(text.contains(says), "{text}");
    }
}

#[test]
fn minimal_catalog_is_valid_and_price_date_may_be_a_string() {
    assert_eq!(with("", "").unwrap().len(), 1);
    let c = with("price_date = 2025-07-01", "price_date = \"2025-07-01\"").unwrap();
    assert_eq!(
        c.iter().next().unwrap().price_date.to_string(),
        "2025-07-01"
    );
}

#[test]
fn rejects_bad_provider_instance_type_and_regions() {
    refused(&[
        (
            "provider = \"aws\"",
            "provider = \"oracle\"",
            "provider",
            "oracle",
        ),
        (
            "\"p5.48xlarge\"",
            "\"P5.48XLARGE\"",
            "instance_type",
            "P5.48XLARGE",
        ),
        // A GCP name under provider aws.
        ("\"p5.48xlarge\"", "\"a3-highgpu-8g\"", "instance_type", ""),
        ("\"us-west-2\"", "\"uswest2\"", "regions[1]", ""),
        ("\"us-west-2\"", "\"us-east-1\"", "regions[1]", ""),
        ("[\"us-east-1\", \"us-west-2\"]", "[]", "regions", ""),
    ]);
}

#[test]
fn rejects_duplicates() {
    let text = format!("{MODELS}{ENTRY}{ENTRY}");
    let err = Catalog::parse(&text).unwrap_err();
    assert_eq!(err.field(), Some("instance_type"));
    assert!(err.to_string().contains("instance[1]"), "{err}");
    assert!(err.to_string().contains("duplicates instance[0]"), "{err}");
    let models = format!("{MODELS}{MODELS}{ENTRY}");
    let err = Catalog::parse(&models).unwrap_err();
    assert_eq!(err.field(), Some("name"), "{err}");
}

#[test]
fn rejects_zero_counts() {
    refused(&[
        ("gpu_count = 8", "gpu_count = 0", "gpu_count", ""),
        ("vcpus = 192", "vcpus = 0", "vcpus", ""),
        ("memory_gib = 2048", "memory_gib = 0", "memory_gib", ""),
        (
            "gpu_memory_gib = 80",
            "gpu_memory_gib = 0",
            "gpu_memory_gib",
            "",
        ),
    ]);
    // Negative numbers do not even fit the field type.
    unreadable(with("vcpus = 192", "vcpus = -1"));
}

#[test]
fn rejects_bad_prices() {
    for bad in ["0.0", "-1.5", "inf", "nan"] {
        let t = invalid(
            with(
                "on_demand_usd_per_hour = 55.04",
                &format!("on_demand_usd_per_hour = {bad}"),
            ),
            "on_demand_usd_per_hour",
        );
        assert!(t.contains("greater than 0"), "{t}");
    }
}

#[test]
fn rejects_bad_quota_codes() {
    const ON_DEMAND: &str = "on_demand = \"L-417A185B\"";
    const SPOT: &str = "spot = \"L-C4BD4855\"";
    refused(&[
        (ON_DEMAND, "on_demand = \"\"", "quota.on_demand", ""),
        (ON_DEMAND, "on_demand = \"L-417A18\"", "quota.on_demand", ""),
        (SPOT, "spot = \"c4bd4855\"", "quota.spot", ""),
        // Well formed, but not the P family's code.
        (
            ON_DEMAND,
            "on_demand = \"L-DB2E81BA\"",
            "quota.on_demand",
            "L-417A185B",
        ),
        // P4 spot code on a P5.
        (SPOT, "spot = \"L-7212CCBC\"", "quota.spot", ""),
    ]);
    // Spot may be absent.
    assert!(with(", spot = \"L-C4BD4855\"", "").is_ok());
}

#[test]
fn rejects_bad_price_dates() {
    for bad in [
        "\"yesterday\"",
        "\"2025-13-01\"",
        "2025-07-01T10:00:00Z",
        "20250701",
    ] {
        invalid(
            with("price_date = 2025-07-01", &format!("price_date = {bad}")),
            "price_date",
        );
    }
}

#[test]
fn rejects_unknown_models_and_fields() {
    refused(&[
        (
            "gpu_model = \"H100\"",
            "gpu_model = \"H800\"",
            "gpu_model",
            "H800",
        ),
        (
            "gpu_memory_gib = 80",
            "gpu_memory_gib = 94",
            "gpu_model",
            "",
        ),
    ]);
    unreadable(with("vcpus = 192", "vcpus = 192\ncolour = \"green\""));
    unreadable(with("vcpus = 192", ""));
    let empty = Catalog::parse(MODELS).unwrap_err();
    assert_eq!(empty.field(), Some("instance"), "{empty}");
    unreadable(Catalog::parse("this is = not toml ["));
}

// ----------------------------------------------------------------------------- headroom

#[test]
fn headroom_math() {
    let c = embedded();
    let p5 = aws(c, "p5.48xlarge");
    assert_eq!(p5.headroom_instances(384.0, 192.0), 1);
    assert_eq!(p5.headroom_instances(384.0, 0.0), 2);
    assert_eq!(p5.headroom_instances(383.0, 0.0), 1);
    assert_eq!(p5.headroom_instances(191.0, 0.0), 0);
    assert_eq!(p5.headroom_instances(0.0, 0.0), 0);
    assert_eq!(p5.headroom_instances(192.0, 384.0), 0);
    assert_eq!(p5.headroom_instances(f64::NAN, 0.0), 0);
    assert_eq!(p5.headroom_instances(384.0, f64::NAN), 0);
    assert_eq!(p5.headroom_instances(f64::INFINITY, f64::INFINITY), 0);
    assert_eq!(p5.headroom_instances(f64::INFINITY, 0.0), u32::MAX);
    assert_eq!(p5.headroom_instances(1e300, 0.0), u32::MAX);
    let g5 = aws(c, "g5.xlarge");
    assert_eq!(g5.headroom_instances(64.0, 8.0), 14);
    assert_eq!(g5.quota_unit(), QuotaUnit::Vcpus);
    assert_eq!(g5.headroom(64.0, 8.0), 14);
}

#[test]
fn headroom_in_the_providers_unit() {
    let c = embedded();
    let a3 = c
        .get(
            Provider::Gcp,
            &InstanceType::parse("t", Provider::Gcp, "a3-highgpu-8g").unwrap(),
        )
        .unwrap();
    // GCP counts GPUs: 16 H100 GPUs of quota fit two 8-GPU machines.
    assert_eq!(a3.quota_unit(), QuotaUnit::Gpus);
    assert_eq!(a3.headroom(16.0, 0.0), 2);
    assert_eq!(a3.headroom(16.0, 9.0), 0);
    let lambda = c
        .get(
            Provider::Lambda,
            &InstanceType::parse("t", Provider::Lambda, "gpu_8x_h100_sxm5").unwrap(),
        )
        .unwrap();
    assert_eq!(lambda.headroom(3.0, 1.0), 2);
    assert!((lambda.usd_per_gpu_hour() - 2.99).abs() < 1e-9);
}

// ----------------------------------------------------------------------------- substitutes

#[test]
fn h100_compares_across_aws_lambda_and_gcp_by_the_gpu_hour() {
    let c = embedded();
    let h100 = |provider, t| {
        c.get(provider, &InstanceType::parse("t", provider, t).unwrap())
            .unwrap()
            .clone()
    };
    let aws = h100(Provider::Aws, "p5.48xlarge");
    let lambda = h100(Provider::Lambda, "gpu_8x_h100_sxm5");
    let gcp = h100(Provider::Gcp, "a3-highgpu-8g");
    for t in [&aws, &lambda, &gcp] {
        assert_eq!(
            (t.gpu_model.as_str(), t.gpu_memory_gib, t.gpu_count),
            ("H100", 80, 8)
        );
    }
    // GCP's a3-highgpu-8g: $88.49 an hour for 8 GPUs
    assert!((gcp.usd_per_gpu_hour() - 88.49 / 8.0).abs() < 1e-9);
    assert!(lambda.usd_per_gpu_hour() < gcp.usd_per_gpu_hour());
    // the A100 40GB family scales with its GPUs, quota in GPUs of one metric
    for (t, gpus) in [
        ("a2-highgpu-1g", 1),
        ("a2-highgpu-2g", 2),
        ("a2-highgpu-4g", 4),
        ("a2-highgpu-8g", 8),
    ] {
        let a2 = h100(Provider::Gcp, t);
        assert_eq!((a2.gpu_model.as_str(), a2.gpu_count), ("A100", gpus));
        assert_eq!(a2.quota.on_demand, "NVIDIA_A100_GPUS");
        assert_eq!(a2.headroom(16.0, 0.0), 16 / gpus);
    }
    let l4 = h100(Provider::Gcp, "g2-standard-8");
    assert_eq!((l4.gpu_model.as_str(), l4.gpu_count), ("L4", 1));
}

#[test]
fn substitutes_go_up_never_down() {
    let c = embedded();
    let p4d = aws(c, "p4d.24xlarge");
    let subs: Vec<_> = c
        .substitutes(&p4d, 8)
        .map(|t| t.instance_type.as_str().to_owned())
        .collect();
    for want in [
        "p4de.24xlarge",
        "p5.48xlarge",
        "p5en.48xlarge",
        "a2-ultragpu-8g",
        "a2-highgpu-8g",
    ] {
        assert!(subs.contains(&want.to_owned()), "{want} not in {subs:?}");
    }
    assert!(!subs.contains(&"p4d.24xlarge".to_owned()), "not itself");
    assert!(
        !subs.contains(&"g6e.48xlarge".to_owned()),
        "L40S is smaller"
    );
    assert!(!subs.contains(&"a2-highgpu-1g".to_owned()), "too few GPUs");
    // Cheapest first.
    let prices: Vec<f64> = c
        .substitutes(&p4d, 8)
        .map(|t| t.on_demand_usd_per_hour)
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");

    // Nothing is better than an H200.
    let p5e = aws(c, "p5e.48xlarge");
    let subs: Vec<_> = c.substitutes(&p5e, 8).collect();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].instance_type.as_str(), "p5en.48xlarge");

    // A one-GPU workload on a T4 may go to any bigger GPU with at least one GPU.
    let g4dn = aws(c, "g4dn.xlarge");
    assert_eq!(c.substitutes(&g4dn, 0).count(), c.len() - 1);
}

proptest! {
    #[test]
    fn substitutes_never_return_a_smaller_gpu(i in 0usize..64, min_gpus in 0u32..12) {
        let c = embedded();
        let t = c.iter().nth(i % c.len()).unwrap().clone();
        for s in c.substitutes(&t, min_gpus) {
            prop_assert!(s.gpu_class >= t.gpu_class, "{s:?}");
            prop_assert!(s.gpu_memory_gib >= t.gpu_memory_gib, "{s:?}");
            prop_assert!(s.gpu_count >= min_gpus.max(1), "{s:?}");
            prop_assert!(!(s.provider == t.provider && s.instance_type == t.instance_type));
        }
    }

    #[test]
    fn headroom_never_overshoots(limit in -1e6f64..1e6, used in -1e6f64..1e6, i in 0usize..64) {
        let c = embedded();
        let t = c.iter().nth(i % c.len()).unwrap();
        let n = t.headroom_instances(limit, used);
        prop_assert!(f64::from(n) * f64::from(t.vcpus) <= (limit - used).max(0.0));
        prop_assert!(f64::from(n + 1) * f64::from(t.vcpus) > limit - used);
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = Catalog::parse(&text);
    }
}

fn key(text: &str) -> capsight_proto::domain::CapacityKey {
    text.parse().expect("a well-formed key")
}

#[test]
fn check_key_accepts_catalog_keys_and_names_the_unknown_field() {
    let c = embedded();
    for ok in [
        "aws/us-east-1/use1-az4/p5.48xlarge/on_demand",
        "aws/us-east-1//p5.48xlarge/spot",
        "aws/us-west-2/usw2-lax1-az1/g5.xlarge/on_demand",
        "gcp/us-central1/us-central1-a/a3-highgpu-8g/on_demand",
    ] {
        assert_eq!(c.check_key(&key(ok)), Ok(()), "{ok}");
    }
    for (bad, field) in [
        ("aws/us-east-1/use1-az99/p5.48xlarge/on_demand", "zone_id"),
        ("aws/us-east-1/usw2-az1/p5.48xlarge/on_demand", "zone_id"),
        ("aws/us-east-1/use1-az4/m5.large/on_demand", "instance_type"),
        ("aws/af-south-1//p5.48xlarge/on_demand", "region"),
        (
            "gcp/us-central1/us-central1-z/a3-highgpu-8g/on_demand",
            "zone_id",
        ),
    ] {
        let e = c.check_key(&key(bad)).expect_err(bad);
        assert_eq!(e.field, field, "{bad}: {e}");
    }
}

#[test]
fn zones_table_is_validated() {
    let text = format!(
        "{}\n[[zones]]\nprovider = \"aws\"\nregion = \"us-east-1\"\nids = [\"use1-az1\"]\n",
        capsight_catalog::EMBEDDED_TOML
    );
    let twice = Catalog::parse(&text).expect_err("a region listed twice");
    assert_eq!(twice.field(), Some("region"), "{twice}");
    let bad_id = capsight_catalog::EMBEDDED_TOML.replacen("\"use1-az1\",", "\"us-east-1a\",", 1);
    let name = Catalog::parse(&bad_id).expect_err("an AZ name instead of an id");
    assert_eq!(name.field(), Some("ids[0]"), "{name}");
    assert!(name.to_string().contains("zones[0]"), "{name}");
    let every_region_has_zones = embedded().iter().all(|t| {
        matches!(t.provider, Provider::Lambda | Provider::RunPod)
            || t.regions
                .iter()
                .all(|r| !embedded().zones(t.provider, r).is_empty())
    });
    assert!(every_region_has_zones, "a catalog region without zones");
}

#[test]
fn runpod_types_carry_their_gpu_type_id_and_count() {
    let c = embedded();
    let eight = c
        .by_provider_id(Provider::RunPod, "NVIDIA H100 80GB HBM3", 8)
        .unwrap();
    assert_eq!(eight.instance_type.as_str(), "8x_h100_sxm");
    assert!((eight.usd_per_gpu_hour() - 2.69).abs() < 1e-9);
    assert!(
        c.by_provider_id(Provider::RunPod, "NVIDIA H100 80GB HBM3", 2)
            .is_none()
    );
    assert!(
        c.by_provider_id(Provider::Lambda, "NVIDIA H100 80GB HBM3", 8)
            .is_none()
    );
    // every RunPod type names its GPU type id, and its name starts with its GPU count
    for t in c.iter().filter(|t| t.provider == Provider::RunPod) {
        assert!(t.provider_id.is_some(), "{t:?}");
        assert!(
            t.instance_type
                .as_str()
                .starts_with(&format!("{}x_", t.gpu_count)),
            "{t:?}"
        );
        assert_eq!(t.quota_unit(), capsight_catalog::QuotaUnit::Gpus);
    }
    let text = capsight_catalog::EMBEDDED_TOML;
    let missing = text.replacen("provider_id = \"NVIDIA L40S\"\n", "", 1);
    let e = Catalog::parse(&missing).expect_err("a RunPod type without its id");
    assert_eq!(e.field(), Some("provider_id"), "{e}");
    let miscounted = text.replacen(
        "instance_type = \"8x_h100_sxm\"",
        "instance_type = \"4x_h100_sxm\"",
        1,
    );
    let e = Catalog::parse(&miscounted).expect_err("a RunPod name without its count");
    assert_eq!(e.field(), Some("instance_type"), "{e}");
}
