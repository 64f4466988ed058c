//! `nova new-adapter NAME`: writes a platform adapter module to start a new
//! platform from, in the shape of nova-platforms' adapters.
//!
//! The module is four files rendered from `nova-cli/templates/*.rs`
//! (compiled into the binary with `include_str!`) by plain string
//! replacement of three placeholders: `__name__` (the module name, snake
//! case), `__Name__` (its type name, camel case) and `__NAME__` (upper
//! case, for environment variable names). Nothing else is computed, so the
//! output for a name is the template with the name put in.
//!
//! Where the files go: `DIR/NAME/`, with DIR `./src` by default, i.e. the
//! command is run in the root of the crate that will hold the module. The
//! generated code imports nothing from its crate (only `super::` and the
//! public APIs of nova-proto, nova-testkit, nova-tokio, tokio and
//! serde_json), so it works in nova-platforms and in a user's own crate alike.
//!
//! Kept honest by golden files: the output for `acme` is checked in as
//! `nova-platforms/tests/generated/acme/`, compiled and tested there by
//! `tests/generated_acme.rs`, and nova-cli's tests run this command and
//! compare byte for byte.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::failure::Failure;

/// The files of the module and their templates.
const TEMPLATES: [(&str, &str); 4] = [
    ("mod.rs", include_str!("../templates/mod.rs")),
    ("adapter.rs", include_str!("../templates/adapter.rs")),
    ("testing.rs", include_str!("../templates/testing.rs")),
    ("tests.rs", include_str!("../templates/tests.rs")),
];

/// Rust's keywords, strict and reserved (2024 edition), which cannot name a module.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn", "else",
    "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod",
    "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true",
    "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names already taken: nova-platforms' platforms and modules, and crates
/// the generated code uses (a module of that name would shadow them).
const TAKEN: &[&str] = &[
    "deribit",
    "bybit",
    "discord",
    "slack",
    "ethereum",
    "common",
    "testing",
    "testing_util",
    "std",
    "core",
    "alloc",
    "nova_proto",
    "nova_testkit",
    "nova_tokio",
    "serde_json",
    "tokio",
];

/// `nova new-adapter --help`: what is written, where, and how to use it.
pub(crate) const DETAILS: &str = "\
Writes DIR/NAME/ with a platform adapter for nova-proto's Session, for a plain
JSON protocol ({\"op\":\"subscribe\",\"args\":[...],\"req_id\":\"N\"}):
  mod.rs      module docs, error codes, a topic builder, the config(url) preset
              and the rate_limits() preset
  adapter.rs  the Adapter: auth first on every connection, subscribe and
              unsubscribe, answers matched by req_id, data routed by topic, a
              JSON ping as heartbeat, error classification
  testing.rs  a mock server (a nova-testkit Handler) speaking the same protocol:
              auth, subscribe acks, periodic data, pongs, a forced drop
  tests.rs    the session against the mock, in memory and through nova-tokio
              (auth, subscribe, data, drop, re-auth, resubscribe, data)
Every place a real platform differs is marked **Change** in a doc comment. The
skeleton compiles and its tests pass as written.

DIR defaults to ./src: run it in the root of the crate the module goes into
(e.g. nova-platforms/). The code uses only public APIs of nova-proto (feature
\"json\"), nova-testkit, nova-tokio, tokio and serde_json, so any crate can hold
it; testing.rs and tests.rs are compiled only with the crate's \"testing\"
feature. The next steps are printed after the files.

NAME is snake_case (a-z, 0-9 and single underscores, starting with a letter),
not a Rust keyword and not a platform nova-platforms already has (deribit,
bybit, discord, slack, ethereum). Existing files are left alone unless --force
is given: exit 2 if one is in the way, 1 if writing fails.

Example:
  cd nova-platforms && nova new-adapter kraken";

/// `nova new-adapter`.
#[derive(Debug, Args)]
pub(crate) struct NewAdapterArgs {
    /// The module name, snake_case: kraken, okx_futures.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    name: String,
    /// Write the module to DIR/NAME/ [default: ./src, which must exist].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Overwrite files that exist.
    #[arg(long)]
    force: bool,
}

/// Checks NAME: a snake_case Rust identifier, not a keyword, not taken,
/// and not turning into a type name the generated code already uses.
fn parse_name(name: &str) -> Result<String, String> {
    let snake = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if !snake {
        return Err("NAME must be snake_case: a-z, 0-9 and single underscores, starting with a letter \
                    (at most 64 characters), e.g. kraken or okx_futures"
            .to_owned());
    }
    if KEYWORDS.contains(&name) {
        return Err(format!("{name} is a Rust keyword"));
    }
    if TAKEN.contains(&name) {
        return Err(format!("{name} is taken (an existing platform, module or crate name)"));
    }
    let type_name = camel_case(name);
    if let Some(clash) = [type_name.clone(), format!("Mock{type_name}")].into_iter().find(|t| code_words().contains(t))
    {
        return Err(format!("{name} would name a type {clash}, which the generated code already uses"));
    }
    Ok(name.to_owned())
}

/// `okx_futures` → `OkxFutures`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out
}

/// The identifiers in the templates' code (comments left out).
fn code_words() -> BTreeSet<String> {
    let code = TEMPLATES.iter().flat_map(|(_, t)| t.lines()).filter(|l| !l.trim_start().starts_with("//"));
    let words = code.flat_map(|line| line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')));
    words.filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// The templates with `name` put in: (file name, contents).
fn render(name: &str) -> Vec<(&'static str, String)> {
    let (camel, upper) = (camel_case(name), name.to_ascii_uppercase());
    let fill = |t: &str| t.replace("__name__", name).replace("__Name__", &camel).replace("__NAME__", &upper);
    TEMPLATES.iter().map(|(file, template)| (*file, fill(template))).collect()
}

/// Writes the module and prints what was written and what to do next.
pub(crate) fn run(args: &NewAdapterArgs) -> Result<u8, Failure> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None if Path::new("src").is_dir() => PathBuf::from("src"),
        None => {
            return Err(Failure::usage(
                "there is no ./src here: run nova new-adapter in the root of a crate, or give --dir DIR",
            ));
        }
    };
    let module = dir.join(&args.name);
    let files: Vec<(PathBuf, String)> =
        render(&args.name).into_iter().map(|(file, text)| (module.join(file), text)).collect();
    if !args.force {
        let existing: Vec<String> =
            files.iter().filter(|(path, _)| path.exists()).map(|(path, _)| path.display().to_string()).collect();
        if !existing.is_empty() {
            return Err(Failure::usage(format!(
                "{} already exist{}; nothing written (--force overwrites)",
                existing.join(", "),
                if existing.len() == 1 { "s" } else { "" }
            )));
        }
    }
    fs::create_dir_all(&module).map_err(|e| Failure::ended(format!("cannot create {}: {e}", module.display())))?;
    for (path, text) in &files {
        fs::write(path, text).map_err(|e| Failure::ended(format!("cannot write {}: {e}", path.display())))?;
    }
    let written: Vec<String> = files.iter().map(|(path, _)| format!("  {}", path.display())).collect();
    println!("wrote\n{}\n\n{}", written.join("\n"), next_steps(&args.name, &dir));
    Ok(0)
}

/// What to do with the module once it is written.
fn next_steps(name: &str, dir: &Path) -> String {
    format!(
        "\
next steps:
  1. declare the module in {parent}, behind a feature of its own as in nova-platforms:
       #[cfg(feature = \"{name}\")]
       pub mod {name};
  2. in Cargo.toml (nova-platforms has all of it but the feature):
       [features]
       {name} = []
       testing = [\"dep:nova-testkit\"]
       [dependencies]
       nova-proto = {{ version = \"0.1\", features = [\"json\"] }}
       nova-testkit = {{ version = \"0.1\", optional = true }}
       serde_json = \"1\"
       [dev-dependencies]
       nova-tokio = \"0.1\"
       tokio = {{ version = \"1\", features = [\"macros\", \"rt\", \"time\"] }}
  3. run its tests (they pass as generated):
       cargo test --features testing,{name} --lib {name}::
  4. make it the platform's: follow the **Change** notes in each file, with the
     platform's documentation at hand, and add a test for every rule it handles.",
        parent = if dir.file_name().is_some_and(|d| d == "src") {
            dir.join("lib.rs").display().to_string()
        } else {
            format!("the module whose directory is {}", dir.display())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_snake_case_identifiers_that_are_free() {
        for good in ["kraken", "okx_futures", "web3", "a", "coinbase_pro2"] {
            assert_eq!(parse_name(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["Kraken", "okx-futures", "1inch", "_x", "x_", "a__b", "", "kraken!", "é", &"a".repeat(65)] {
            assert!(parse_name(bad).unwrap_err().contains("snake_case"), "{bad}");
        }
        assert!(parse_name("gen").unwrap_err().contains("keyword"));
        assert!(parse_name("bybit").unwrap_err().contains("taken"));
        // `Message` and `Session` are imported by the generated code.
        assert!(parse_name("message").unwrap_err().contains("type Message"));
        assert!(parse_name("session").unwrap_err().contains("type Session"));
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(camel_case("okx_futures"), "OkxFutures");
        assert_eq!(camel_case("web3"), "Web3");
        assert_eq!(camel_case("a_1b"), "A1b");
    }

    #[test]
    fn every_placeholder_is_filled() {
        for (file, text) in render("okx_futures") {
            assert!(!text.contains("__"), "{file} keeps a placeholder");
            assert!(text.contains("okx_futures") || text.contains("OkxFutures"), "{file}");
        }
        let (_, mod_rs) = &render("okx_futures")[0];
        assert!(mod_rs.contains("\"OKX_FUTURES_API_KEY\""));
    }
}
