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
fn checked_in_crd_is_current() {
    assert!(
        repo_file(CRD_PATH) == crd_yaml(),
        "{CRD_PATH} is stale: run `make crds` and commit the result"
    );
}
