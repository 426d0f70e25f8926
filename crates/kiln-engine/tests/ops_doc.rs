//! docs/ops.md must be the registry's own table, so the documentation cannot drift from the code.

use std::path::Path;

#[test]
fn ops_doc_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ops.md");
    let want = kiln_engine::Registry::with_builtin().markdown();
    if std::env::var_os("KILN_BLESS_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/ops.md");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "docs/ops.md is out of date: run KILN_BLESS_DOCS=1 cargo test -p kiln-engine --test ops_doc");
}
