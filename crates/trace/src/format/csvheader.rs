//! Finding the columns of a CSV header by name, shared by the row formats.

use crate::format::truncate;

/// A header's column names, normalised (trimmed, unquoted, lower case), so a
/// column can be found by any of its accepted spellings.
pub(crate) struct HeaderNames(Vec<String>);

impl HeaderNames {
    pub fn new(names: Vec<String>) -> HeaderNames {
        HeaderNames(names)
    }

    /// How many columns the header has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The normalised name of column `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.0[i]
    }

    /// The first column named one of `alts` (lower case).
    pub fn find(&self, alts: &[&str]) -> Option<usize> {
        self.0.iter().position(|n| alts.contains(&n.as_str()))
    }

    /// Like [`HeaderNames::find`], but a missing column is an error naming
    /// `alts[0]` and listing the header.
    pub fn need(&self, alts: &[&str]) -> Result<usize, String> {
        self.find(alts).ok_or_else(|| format!("the header has no `{}` column (it has: {})", alts[0], self.listing()))
    }

    /// The header as shown in error messages: escaped and cut short.
    pub fn listing(&self) -> String {
        truncate(&self.0.join(",").escape_debug().to_string(), 200)
    }
}
