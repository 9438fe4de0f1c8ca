//! The little YAML the generated files need, written by hand: every value
//! that comes from the model (service names, hosts, commands) is a
//! double-quoted scalar, so no name can turn into a boolean, a number or
//! YAML syntax, whatever parser (YAML 1.1 or 1.2) reads it.

use crate::generate::yaml_printable;

/// `s` as a double-quoted YAML scalar.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || !yaml_printable(c) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A flow sequence of quoted scalars: `["a", "b"]`.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| q(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

/// `text` as the body of a literal block scalar (`|`), each line indented.
pub fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(q("yes"), "\"yes\"");
        assert_eq!(q("a \"b\" \\ c\nd"), r#""a \"b\" \\ c\nd""#);
        assert_eq!(q("x\u{2028}\u{1}"), r#""x\u2028\u0001""#);
        assert_eq!(list(&["serve", "--service=A"]), r#"["serve", "--service=A"]"#);
        assert_eq!(block("{\n  \"a\": 1\n}\n", 4), "    {\n      \"a\": 1\n    }\n");
    }
}
