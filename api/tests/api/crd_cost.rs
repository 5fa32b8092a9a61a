//! A kube-apiserver refuses a CRD whose CEL rules are estimated too costly.
//! Estimates every rule of the checked-in CRDs (crds/, what `kubectl apply`
//! sends) the way the API server does and fails over its budget; the
//! controls show the estimate refuses what the API server refuses.

use crate::cel_cost;

use cel_cost::{CRD_LIMIT, RULE_LIMIT, crd_rule_costs, over_budget, rule_cost};
use serde_json::{Value, json};
use std::path::Path;

fn checked_in_schema(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    let crd: Value = serde_yaml::from_str(&text).expect("a CRD is YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn every_checked_in_crd_fits_the_api_server_cel_budget() {
    for (file, _) in privnet_api::all_crds() {
        let costs = crd_rule_costs(&checked_in_schema(file));
        assert!(
            !costs.is_empty(),
            "{file}: no rule found, the walk is broken"
        );
        for r in &costs {
            println!(
                "{file} {} ×{}: {} — {}",
                r.path, r.cardinality, r.cost, r.rule
            );
        }
        let errors = over_budget(&costs);
        assert!(errors.is_empty(), "{file} would be refused: {errors:#?}");
    }
}

#[test]
fn the_estimate_matches_the_api_server_arithmetic() {
    // matches: ceil((63×4 + 1) × 0.1) × ceil(29 × 0.25) = 26 × 8, + 1 for `self`.
    let label = json!({"type": "string", "maxLength": 63});
    assert_eq!(
        rule_cost("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')", &label),
        209
    );
    // The same rule over an unbounded string: ceil(3145727 × 0.1) × 8 + 1.
    let unbounded = json!({"type": "string"});
    assert_eq!(
        rule_cost(
            "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
            &unbounded
        ),
        314_573 * 8 + 1
    );
}

/// The rules privnet had before this bound, which a kube-apiserver refused.
#[test]
fn the_former_unbounded_rules_are_reported_over_budget() {
    let namespaces = json!({"type": "array", "maxItems": 256, "items": {"type": "string"}});
    let quadratic = rule_cost("self.all(n, self.exists_one(m, m == n))", &namespaces);
    assert!(quadratic > RULE_LIMIT, "{quadratic}");
    let labels = "self.all(n, n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(n) <= 63)";
    assert!(rule_cost(labels, &namespaces) > RULE_LIMIT);
    // The same rules with bounded items fit: it is the bound that matters.
    let bounded = json!({"type": "array", "maxItems": 256,
                         "items": {"type": "string", "maxLength": 63}});
    assert!(rule_cost("self.all(n, self.exists_one(m, m == n))", &bounded) < RULE_LIMIT);
    assert!(rule_cost(labels, &bounded) < RULE_LIMIT);

    // split() parts have no bound, even when the split string has one.
    let subnet = json!({"type": "string", "maxLength": 18});
    let split = "self.split('/')[0].split('.').all(o, int(o) <= 255)";
    assert!(rule_cost(split, &subnet) > RULE_LIMIT);
    // string(int) has no bound either.
    let endpoint = json!({"type": "object", "properties": {
        "hostname": {"type": "string", "maxLength": 253},
        "containerNumber": {"type": "integer"}}});
    let spliced = "self.hostname.startsWith(string(self.containerNumber) + '.')";
    assert!(rule_cost(spliced, &endpoint) > RULE_LIMIT);
}

#[test]
fn cheap_rules_run_too_often_are_reported_over_the_crd_budget() {
    // Each evaluation is cheap; an unbounded list makes it run a million times.
    let schema = json!({"type": "object", "properties": {"names": {"type": "array",
        "items": {"type": "string", "maxLength": 253,
                  "x-kubernetes-validations": [{"rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"}]}}}});
    let costs = crd_rule_costs(&schema);
    assert_eq!(costs.len(), 1);
    assert!(costs[0].cost < RULE_LIMIT);
    let errors = over_budget(&costs);
    assert!(
        errors.iter().any(|e| e.contains(&CRD_LIMIT.to_string())),
        "{errors:?}"
    );
    // Bounded, the same rule fits.
    let mut bounded = schema.clone();
    bounded["properties"]["names"]["maxItems"] = json!(256);
    assert_eq!(over_budget(&crd_rule_costs(&bounded)), Vec::<String>::new());
}
