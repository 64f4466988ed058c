//! Pretty-printing JSON text without re-encoding it.
//!
//! A round trip through `serde_json::Value` would sort object keys and
//! respell numbers (`1.50` becomes `1.5`, big integers lose digits). This
//! re-indents the original tokens instead: strings, numbers and literals are
//! copied byte for byte; only the whitespace between tokens changes. The
//! layout is serde_json's `to_string_pretty` (two spaces, `"key": value`,
//! `[]` and `{}` for empty containers).

/// `text` pretty-printed, if it is a JSON object or array; `None` for
/// anything else (other JSON values, or not JSON at all).
pub(crate) fn pretty_json(text: &str) -> Option<String> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    // Validation only; the tokens are printed from `text` itself.
    serde_json::from_str::<serde_json::Value>(text).ok()?;
    Some(reindent(text))
}

/// Re-indents valid JSON. Never fails; on invalid input it still terminates
/// (every byte is visited once).
fn reindent(json: &str) -> String {
    let bytes = json.as_bytes();
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i);
                out.push_str(&json[i..end]);
                i = end;
                continue;
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                let next = skip_whitespace(bytes, i + 1);
                if bytes.get(next) == Some(&close) {
                    out.push(open as char);
                    out.push(close as char);
                    i = next + 1;
                    continue;
                }
                out.push(open as char);
                depth += 1;
                newline(&mut out, depth);
            }
            close @ (b'}' | b']') => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(close as char);
            }
            b',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            b':' => out.push_str(": "),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                // A number or a literal: copy the run up to the next
                // structural byte. Only ASCII appears outside strings, so the
                // slice boundaries are character boundaries.
                let end = bytes[i..]
                    .iter()
                    .position(|b| {
                        matches!(b, b',' | b':' | b'{' | b'}' | b'[' | b']' | b'"' | b' ' | b'\t' | b'\n' | b'\r')
                    })
                    .map_or(bytes.len(), |n| i + n);
                out.push_str(&json[i..end]);
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The index just past the string starting at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The index of the first non-whitespace byte at or after `i`.
fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A newline and the indentation of `depth`.
fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_serde_json_layout_for_ordinary_documents() {
        for doc in [
            r#"{"a":1,"b":[1,2,{"c":null}],"d":{},"e":[],"f":"x"}"#,
            r#"[{"price":64000.5,"seq":1,"type":"tick"}, true, false, -0.5]"#,
            r#" { "nested" : { "deeper" : [ [ ] , { } , "a\"b\\" ] } } "#,
        ] {
            let value: serde_json::Value = serde_json::from_str(doc).unwrap();
            let expected = serde_json::to_string_pretty(&value).unwrap();
            // serde_json sorts keys; these documents have sorted keys already.
            assert_eq!(pretty_json(doc).unwrap(), expected, "{doc}");
        }
    }

    #[test]
    fn keeps_key_order_numbers_and_escapes_as_sent() {
        let doc = r#"{"z":1.50,"a":12345678901234567890123,"s":"caf\u00e9 ☕ {\"x\":[1]}"}"#;
        assert_eq!(
            pretty_json(doc).unwrap(),
            "{\n  \"z\": 1.50,\n  \"a\": 12345678901234567890123,\n  \"s\": \"caf\\u00e9 ☕ {\\\"x\\\":[1]}\"\n}"
        );
    }

    #[test]
    fn leaves_everything_else_alone() {
        for text in ["hello", "42", "\"a string\"", "{not json}", "[1,2", "", "true"] {
            assert_eq!(pretty_json(text), None, "{text}");
        }
    }

    #[test]
    fn invalid_input_to_the_reindenter_terminates() {
        for junk in ["\"unterminated", "{\"a\\", "]]]}}", "{{{{", "\\"] {
            let _ = reindent(junk);
        }
    }
}
