//! Keeps the crate layering of ARCHITECTURE.md section 5: a crate may
//! depend only on crates listed before it; component crates never depend on
//! each other; only the binary sits on top. Checked over `cargo metadata`.

use std::process::Command;

/// The layers, lowest first. Crates in one layer may not depend on each
/// other (except inside the foundation layers, which are ordered).
const ORDERED: &[&str] = &[
    "smx-log",
    "smx-conf",
    "smx-proto",
    "smx-ipc",
    "smx-store",
    "smx-maps",
    "smx-tls",
];
const COMPONENTS: &[&str] = &[
    "smx-mcp",
    "smx-qmgr",
    "smx-smtps",
    "smx-smtpc",
    "smx-smar",
    "smx-lda",
];
/// The binary, and the benchmarks and harnesses beside it, on top of
/// everything.
const TOP: &[&str] = &["smx", "smx-bench"];

fn rank(name: &str) -> Option<usize> {
    if let Some(i) = ORDERED.iter().position(|n| *n == name) {
        return Some(i);
    }
    if COMPONENTS.contains(&name) {
        return Some(ORDERED.len());
    }
    TOP.contains(&name).then_some(ORDERED.len() + 1)
}

#[test]
fn crate_dependencies_follow_the_layering() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let mut seen = 0;
    let mut violations = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default();
        let Some(r) = rank(name) else {
            violations.push(format!(
                "crate {name} is not placed in the layering (tests/architecture.rs)"
            ));
            continue;
        };
        seen += 1;
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or_default();
            // Only normal and build dependencies count; tests may use more.
            if d["kind"].as_str() == Some("dev") {
                continue;
            }
            let Some(dr) = rank(dep) else { continue };
            let ok = dr < r && !(dr == ORDERED.len() && r == ORDERED.len());
            if !ok {
                violations.push(format!("{name} must not depend on {dep}"));
            }
        }
    }
    assert!(seen >= 4, "found only {seen} workspace crates");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
