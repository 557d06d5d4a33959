//! crds/ftpserver.yaml and the Helm chart's copy must match the types.

use std::path::Path;

use kubeftp_operator::crd::{CRD_PATH, crd_yaml};

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn checked_in_crds_are_current() {
    for path in [CRD_PATH, "charts/kubeftp/crds/ftpserver.yaml"] {
        assert!(
            repo_file(path) == crd_yaml(),
            "{path} is stale: run `make crds` and commit the result"
        );
    }
}
