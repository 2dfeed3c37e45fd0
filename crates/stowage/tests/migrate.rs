//! `stowage migrate` as a user runs it: the seed estate's files in, manifests on stdout and the
//! report on stderr, or all three files in a directory; bad input exits 2 naming the file,
//! document and field, and writes nothing.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrate/testdata/seed")
        .join(name)
}

fn stowage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(args)
        .output()
        .unwrap()
}

const INPUTS: [&str; 4] = [
    "cluster.yaml",
    "cluster-autoscaler.yaml",
    "asgs.json",
    "launch-templates.json",
];

fn args(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| ["-f".to_string(), f.display().to_string()])
        .collect()
}

#[test]
fn manifests_go_to_stdout_and_the_report_to_stderr() {
    // Run where the files are, so the sources read as in the golden output (`cluster.yaml:22`).
    let files: Vec<PathBuf> = INPUTS.iter().map(PathBuf::from).collect();
    let a = args(&files);
    let mut argv = vec!["migrate"];
    argv.extend(a.iter().map(String::as_str));
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(&argv)
        .current_dir(seed(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let golden = |f: &str| std::fs::read_to_string(seed("golden").join(f)).unwrap();
    assert_eq!(
        stdout,
        format!(
            "{}---\n{}",
            golden("nodeclasses.yaml"),
            golden("nodepools.yaml")
        )
    );
    assert_eq!(stderr, golden("report.md"));
}

#[test]
fn an_output_directory_gets_all_three_files_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = INPUTS.iter().map(|f| seed(f)).collect();
    let dir = tmp.path().join("out");
    let a = args(&files);
    let mut argv = vec!["migrate", "-o", dir.to_str().unwrap()];
    argv.extend(a.iter().map(String::as_str));
    let out = stowage(&argv);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["nodeclasses.yaml", "nodepools.yaml", "report.md"] {
        assert!(dir.join(f).is_file(), "{f}");
    }

    // A bad file: exit 2, the error names file, document and field, nothing written.
    let bad = tmp.path().join("bad.yaml");
    let text = std::fs::read_to_string(seed("cluster.yaml"))
        .unwrap()
        .replacen("maxSize: 150", "maxSize: lots", 1);
    std::fs::write(&bad, text).unwrap();
    let dir2 = tmp.path().join("out2");
    let bad_str = bad.display().to_string();
    let out = stowage(&["migrate", "-o", dir2.to_str().unwrap(), "-f", &bad_str]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml document 1 managedNodeGroups[0].maxSize: expected an integer"),
        "{stderr}"
    );
    assert!(!dir2.exists());
}
