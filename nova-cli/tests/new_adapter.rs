//! `nova new-adapter` end to end: the real binary writing into temporary
//! directories.
//!
//! The golden check: the output for `acme` must equal, byte for byte, the
//! copy checked in under `nova-platforms/tests/generated/acme/`, which
//! nova-platforms compiles and tests (`tests/generated_acme.rs`). A template
//! changed without regenerating fails here; generated code that stops
//! compiling or passing its tests fails there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOVA: &str = env!("CARGO_BIN_EXE_nova");

/// The files of a generated module.
const FILES: [&str; 4] = ["mod.rs", "adapter.rs", "testing.rs", "tests.rs"];

/// How to bring the golden files up to date, for failure messages.
const REGENERATE: &str = "regenerate them from the workspace root with\n    \
    cargo run -p nova-cli -- new-adapter acme --dir nova-platforms/tests/generated --force\n\
    then run `cargo test -p nova-platforms --all-features --test generated_acme` and commit both";

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("nova-new-adapter-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn nova(args: &[&str], cwd: &Path) -> Output {
    Command::new(NOVA).args(args).current_dir(cwd).output().expect("the nova binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn new_adapter_output_matches_the_golden_files() {
    let tmp = TempDir::new("golden");
    let dir = tmp.path().to_str().expect("a UTF-8 temporary path");
    let out = nova(&["new-adapter", "acme", "--dir", dir], tmp.path());
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nova-platforms/tests/generated/acme");
    let mut checked_in: Vec<String> = fs::read_dir(&golden)
        .expect("the golden directory")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    checked_in.sort();
    let mut expected: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
    expected.sort();
    assert_eq!(checked_in, expected, "the golden directory holds exactly the generated files; {REGENERATE}");
    for file in FILES {
        let generated = fs::read(tmp.path().join("acme").join(file)).expect("the file was written");
        let checked_in = fs::read(golden.join(file)).expect("the golden file");
        assert!(
            generated == checked_in,
            "nova-platforms/tests/generated/acme/{file} is not what `nova new-adapter acme` writes \
             (nova-cli/templates/{file} changed?); {REGENERATE}"
        );
    }
    let stdout = text(&out.stdout);
    for file in FILES {
        assert!(stdout.contains(&format!("acme/{file}")), "{file} is listed: {stdout}");
    }
    assert!(stdout.contains("next steps") && stdout.contains("pub mod acme;"), "{stdout}");
}

#[test]
fn bad_names_are_usage_errors_and_write_nothing() {
    let tmp = TempDir::new("names");
    let dir = tmp.path().to_str().expect("a UTF-8 temporary path");
    for (name, why) in [
        ("Kraken", "snake_case"),
        ("okx-futures", "snake_case"),
        ("1inch", "snake_case"),
        ("a__b", "snake_case"),
        ("fn", "keyword"),
        ("bybit", "taken"),
        ("message", "type Message"),
    ] {
        let out = nova(&["new-adapter", name, "--dir", dir], tmp.path());
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(why), "{name}: {stderr}");
    }
    assert_eq!(fs::read_dir(tmp.path()).expect("the directory").count(), 0, "nothing written");
}

#[test]
fn existing_files_are_kept_unless_force_is_given() {
    let tmp = TempDir::new("force");
    let dir = tmp.path().to_str().expect("a UTF-8 temporary path");
    assert_eq!(nova(&["new-adapter", "kraken", "--dir", dir], tmp.path()).status.code(), Some(0));
    let adapter = tmp.path().join("kraken/adapter.rs");
    let generated = fs::read_to_string(&adapter).expect("written");
    assert!(generated.contains("pub struct Kraken"));
    fs::write(&adapter, "// my work\n").expect("edited");
    fs::remove_file(tmp.path().join("kraken/tests.rs")).expect("removed");

    let out = nova(&["new-adapter", "kraken", "--dir", dir], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("already exist") && stderr.contains("--force"), "{stderr}");
    assert_eq!(fs::read_to_string(&adapter).expect("kept"), "// my work\n");
    assert!(!tmp.path().join("kraken/tests.rs").exists(), "nothing written when one file is in the way");

    let out = nova(&["new-adapter", "kraken", "--dir", dir, "--force"], tmp.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&adapter).expect("overwritten"), generated);
    assert!(tmp.path().join("kraken/tests.rs").exists());
}

#[test]
fn dir_defaults_to_src_of_the_current_directory() {
    let tmp = TempDir::new("default-dir");
    let out = nova(&["new-adapter", "kraken"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no ./src"), "{}", text(&out.stderr));

    fs::create_dir(tmp.path().join("src")).expect("src created");
    let out = nova(&["new-adapter", "okx_futures"], tmp.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for file in FILES {
        assert!(tmp.path().join("src/okx_futures").join(file).is_file(), "{file}");
    }
    let stdout = text(&out.stdout);
    assert!(stdout.contains("src/lib.rs") && stdout.contains("--features testing,okx_futures"), "{stdout}");
    let mod_rs = fs::read_to_string(tmp.path().join("src/okx_futures/mod.rs")).expect("written");
    assert!(mod_rs.contains("pub use adapter::{OkxFutures, Credentials};"), "{mod_rs}");
    assert!(mod_rs.contains("\"OKX_FUTURES_API_KEY\""));
}

#[test]
fn help_describes_the_generator() {
    let tmp = TempDir::new("help");
    let out = nova(&["--help"], tmp.path());
    assert!(text(&out.stdout).contains("new-adapter"), "{}", text(&out.stdout));
    let out = nova(&["new-adapter", "--help"], tmp.path());
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for needle in ["--dir", "--force", "./src", "**Change**", "mock server", "nova-tokio"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
