//! The configuration file as a user meets it: `./dbshift.toml` (or `--config FILE`) sets what
//! the flags and `DBSHIFT_*` variables leave unset; a flag wins over the environment, which
//! wins over the file; an unknown key or a broken file exits 2. No server needed: which lab
//! directory a command looked in shows in its "no lab" error.

use std::process::{Command, Output};

fn run(cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dbshift"));
    c.current_dir(cwd)
        .args(args)
        .env_remove("DBSHIFT_LAB_DIR")
        .env_remove("DBSHIFT_CONFIG")
        .env_remove("DBSHIFT_OUTPUT")
        .env("HOME", cwd)
        .env_remove("XDG_CONFIG_HOME");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_file_fills_what_flags_and_environment_leave_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    std::fs::write(cwd.join("dbshift.toml"), "dir = \"/from/file\"\n").unwrap();

    let o = run(cwd, &["lab", "status"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("/from/file"), "{}", stderr(&o));

    let o = run(cwd, &["lab", "status"], &[("DBSHIFT_LAB_DIR", "/from/env")]);
    assert!(stderr(&o).contains("/from/env"), "{}", stderr(&o));

    let o = run(
        cwd,
        &["--dir", "/from/flag", "lab", "status"],
        &[("DBSHIFT_LAB_DIR", "/from/env")],
    );
    assert!(stderr(&o).contains("/from/flag"), "{}", stderr(&o));

    // --config names another file.
    std::fs::write(cwd.join("other.toml"), "dir = \"/from/other\"\n").unwrap();
    let o = run(cwd, &["--config", "other.toml", "lab", "status"], &[]);
    assert!(stderr(&o).contains("/from/other"), "{}", stderr(&o));

    // Mistakes in the file: exit 2, saying what is wrong.
    std::fs::write(cwd.join("dbshift.toml"), "password = \"x\"\n").unwrap();
    let o = run(cwd, &["lab", "status"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown key \"password\""),
        "{}",
        stderr(&o)
    );
    std::fs::write(cwd.join("dbshift.toml"), "dir = [\n").unwrap();
    let o = run(cwd, &["lab", "status"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("dbshift.toml"), "{}", stderr(&o));
    let o = run(cwd, &["--config", "missing.toml", "lab", "status"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
