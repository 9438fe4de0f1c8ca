//! Pretty JSON that keeps lists of numbers on one line.
//!
//! `serde_json`'s pretty printer puts every array element on its own line,
//! so a latency sketch's bins (`[[665, 1], [679, 1], …]`) take four
//! indented lines per bin, and the pretty model was six times its compact
//! size (a 20-service system.json of 800 kB, 110 kB of it data).
//! [`LeafArrays`] indents objects and arrays of objects as `serde_json`
//! does, and writes an array whose first element is a scalar or such an
//! array (or that is empty) on one line, with everything inside it. The
//! decision needs to see at most the first element of two nested arrays,
//! so the output still streams: a model of 20,000 services is not held in
//! memory as text.
//!
//! ```
//! let v = serde_json::json!({"bins": [[1, 2], [3, 4]], "next": [{"to": null}]});
//! let text = palette_model::json::to_string(&v);
//! assert_eq!(text, "{\n  \"bins\": [[1, 2], [3, 4]],\n  \"next\": [\n    {\n      \"to\": null\n    }\n  ]\n}\n");
//! ```

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

/// Serialises `value` with [`LeafArrays`] and a trailing newline.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    to_writer(&mut out, value).expect("writing to memory does not fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Writes `value` with [`LeafArrays`] and a trailing newline, as it is made.
pub fn to_writer<W: Write, T: Serialize + ?Sized>(mut writer: W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut writer, LeafArrays::default());
    value.serialize(&mut ser).map_err(io::Error::other)?;
    writer.write_all(b"\n")
}

/// How an open array or object is laid out.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// One member per line, indented.
    Indented { has_members: bool },
    /// Everything on the line it starts on.
    OneLine,
    /// An array whose first element has not been seen yet.
    Undecided,
}

/// Output held back while arrays are undecided: how it is written depends
/// on the decision.
#[derive(Clone, Copy, Debug)]
enum Held {
    /// The `[` of a nested array.
    Open,
    /// The break before an array's first element, at this indent if the
    /// array is indented.
    FirstBreak(usize),
}

/// A [`Formatter`] that indents like `serde_json`'s pretty printer but
/// writes lists of numbers (and other leaf arrays) on one line.
#[derive(Debug, Default)]
pub struct LeafArrays {
    /// Every open array and object, innermost last.
    open: Vec<Layout>,
    /// What was not written because an array is still undecided.
    held: Vec<Held>,
}

impl LeafArrays {
    /// The indent of a member of the innermost container, if every
    /// undecided array turns out indented.
    fn depth(&self) -> usize {
        self.open.iter().filter(|l| !matches!(l, Layout::OneLine)).count()
    }

    fn in_one_line(&self) -> bool {
        self.open.iter().any(|l| matches!(l, Layout::OneLine))
    }

    /// Settles every undecided array the same way (each is the first
    /// element of the one before, so the innermost decides for all), and
    /// writes what was held back.
    fn settle<W: ?Sized + Write>(&mut self, w: &mut W, one_line: bool) -> io::Result<()> {
        if self.held.is_empty() && !self.open.contains(&Layout::Undecided) {
            return Ok(());
        }
        for layout in &mut self.open {
            if *layout == Layout::Undecided {
                *layout = if one_line { Layout::OneLine } else { Layout::Indented { has_members: true } };
            }
        }
        for held in std::mem::take(&mut self.held) {
            match held {
                Held::Open => w.write_all(b"[")?,
                Held::FirstBreak(depth) if !one_line => newline(w, depth)?,
                Held::FirstBreak(_) => {}
            }
        }
        Ok(())
    }

    fn undecided(&self) -> bool {
        self.open.last() == Some(&Layout::Undecided)
    }

    fn begin_member<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        let depth = self.depth();
        match self.open.last_mut() {
            Some(Layout::Undecided) => {
                self.held.push(Held::FirstBreak(depth));
                Ok(())
            }
            Some(Layout::OneLine) => {
                if first {
                    Ok(())
                } else {
                    w.write_all(b", ")
                }
            }
            Some(Layout::Indented { has_members }) => {
                *has_members = true;
                if !first {
                    w.write_all(b",")?;
                }
                newline(w, depth)
            }
            None => Ok(()),
        }
    }

    fn end_container<W: ?Sized + Write>(&mut self, w: &mut W, close: &[u8]) -> io::Result<()> {
        if let Some(Layout::Indented { has_members: true }) = self.open.pop() {
            newline(w, self.depth())?;
        }
        w.write_all(close)
    }
}

fn newline<W: ?Sized + Write>(w: &mut W, depth: usize) -> io::Result<()> {
    w.write_all(b"\n")?;
    for _ in 0..depth {
        w.write_all(b"  ")?;
    }
    Ok(())
}

/// Scalars decide undecided arrays for one line, then write as compact JSON does.
macro_rules! scalar {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<W: ?Sized + Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> io::Result<()> {
            self.settle(w, true)?;
            CompactFormatter.$name(w $(, $arg)*)
        }
    )*};
}

impl Formatter for LeafArrays {
    scalar! {
        write_null();
        write_bool(value: bool);
        write_i8(value: i8);
        write_i16(value: i16);
        write_i32(value: i32);
        write_i64(value: i64);
        write_i128(value: i128);
        write_u8(value: u8);
        write_u16(value: u16);
        write_u32(value: u32);
        write_u64(value: u64);
        write_u128(value: u128);
        write_f32(value: f32);
        write_f64(value: f64);
        write_number_str(value: &str);
        begin_string();
        write_byte_array(value: &[u8]);
        write_raw_fragment(fragment: &str);
    }

    fn write_char_escape<W: ?Sized + Write>(&mut self, w: &mut W, escape: CharEscape) -> io::Result<()> {
        CompactFormatter.write_char_escape(w, escape)
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.in_one_line() {
            self.open.push(Layout::OneLine);
            return w.write_all(b"[");
        }
        if self.undecided() {
            self.held.push(Held::Open);
        } else {
            w.write_all(b"[")?;
        }
        self.open.push(Layout::Undecided);
        Ok(())
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        // An empty array is a leaf.
        if self.undecided() {
            self.settle(w, true)?;
        }
        self.end_container(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.begin_member(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.settle(w, false)?;
        let layout = if self.in_one_line() { Layout::OneLine } else { Layout::Indented { has_members: false } };
        self.open.push(layout);
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.end_container(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.begin_member(w, first)
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::to_string;

    #[test]
    fn leaf_arrays_sit_on_one_line_and_objects_are_indented() {
        let v = json!({
            "empty": [],
            "names": ["a", "b"],
            "nested_empty": [[], [1]],
            "objects": [{"a": [1, 2], "b": {}}, {"c": [[{"d": 1}]]}],
            "mixed": [1, {"x": [2]}],
            "deep": [[[3]]],
        });
        let text = to_string(&v);
        let expected = r#"{
  "deep": [[[3]]],
  "empty": [],
  "mixed": [1, {"x": [2]}],
  "names": ["a", "b"],
  "nested_empty": [[], [1]],
  "objects": [
    {
      "a": [1, 2],
      "b": {}
    },
    {
      "c": [
        [
          {
            "d": 1
          }
        ]
      ]
    }
  ]
}
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn the_text_reads_back_as_the_same_value() {
        let v = json!({
            "f": [1.5e300, -0.0, 3.25],
            "s": ["\u{1}\"\\é", ""],
            "n": [null, true, false, u64::MAX, i64::MIN],
            "o": [[{"k": [[1, 2], [3, 4]]}], []],
            "top": {},
        });
        let text = to_string(&v);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
        assert_eq!(serde_json::from_str::<Value>(&to_string(&json!([]))).unwrap(), json!([]));
        assert_eq!(to_string(&json!([[{"a": 1}]])), "[\n  [\n    {\n      \"a\": 1\n    }\n  ]\n]\n");
    }
}
