//! The output of `nova new-adapter acme`, compiled and tested for real.
//!
//! `tests/generated/acme/` holds the generator's output byte for byte (a
//! golden copy): nova-cli's `new_adapter_output_matches_the_golden_files`
//! test runs the real binary and compares, and this test crate compiles the
//! module and runs its own tests (`acme::tests`). So a template change that
//! was not regenerated fails there, and generated code that stops compiling
//! or passing fails here. The module sits outside `src/` (it is not part of
//! nova-platforms' API) and is included with `#[path]`, as a user's crate
//! would declare it with `mod acme;`; it uses only public APIs.
//!
//! Regenerate after changing nova-cli/templates/:
//! `cargo run -p nova-cli -- new-adapter acme --dir nova-platforms/tests/generated --force`
#![allow(missing_docs)]

// The whole generated module, as in a user's crate; not every item is used here.
#[allow(dead_code, unreachable_pub)]
#[path = "generated/acme/mod.rs"]
mod acme;
