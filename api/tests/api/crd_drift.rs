//! The checked-in CRD YAML (crds/ and charts/privnet/crds/) must match the types.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["crds", "charts/privnet/crds"] {
        for (file, crd) in privnet_api::all_crds() {
            let path = root.join(dir).join(file);
            let have = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
            assert!(
                have == privnet_api::crd_yaml(&crd),
                "{} is stale: run `cargo run -p privnet -- crds --out {dir}`",
                path.display()
            );
        }
    }
}

#[test]
fn crds_have_status_subresource_columns_and_category() {
    for (_, crd) in privnet_api::all_crds() {
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
                || crd.spec.names.kind == "PrivateEndpoint"
        );
        assert!(!v.additional_printer_columns.as_ref().unwrap().is_empty());
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["privnet".to_string()][..])
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty())
        );
    }
}
