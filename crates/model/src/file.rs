//! Reading `model.json` and partial-fit files, with errors that say what
//! the file is and where it is wrong.

use std::path::{Path, PathBuf};

use palette_trace::failure::{Classify, FailureKind};

use crate::check::{Seg, check, locate_line};
use crate::model::{FORMAT, Model};
use crate::partial::{PARTIAL_FORMAT, Partial};

/// Why a model or partial file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path names nothing.
    #[error("{}: no such file", .0.display())]
    NotFound(PathBuf),
    /// The path is a directory.
    #[error("{}: is a directory, not a model file", .0.display())]
    IsADirectory(PathBuf),
    /// The file could not be read (permissions, I/O).
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The content is not what it should be, at `line` (0: unknown).
    #[error("{}{}: {message}", path.display(), if *line == 0 { String::new() } else { format!(":{line}") })]
    BadData { path: PathBuf, line: u64, message: String },
}

impl Classify for FileError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            FileError::NotFound(_) | FileError::IsADirectory(_) => FailureKind::Usage,
            FileError::Read { .. } => FailureKind::Runtime,
            FileError::BadData { .. } => FailureKind::BadData,
        }
    }
}

fn bad_data(path: &Path, line: u64, message: String) -> FileError {
    FileError::BadData { path: path.to_path_buf(), line, message }
}

/// The file's text; `what` names the kind of file for a non-UTF-8 one.
fn read_text(path: &Path, what: &str) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FileError::NotFound(path.to_path_buf()),
        std::io::ErrorKind::IsADirectory => FileError::IsADirectory(path.to_path_buf()),
        std::io::ErrorKind::InvalidData => bad_data(path, 0, format!("not {what}: the file is not UTF-8 text")),
        _ => FileError::Read { path: path.to_path_buf(), source: e },
    })
}

impl Model {
    /// Reads and checks a model file: it must be a well-formed
    /// `palette-model/1` model whose every reference resolves (the checks
    /// of [`crate::check::check`]); a partial fit or another format is named
    /// as such.
    pub fn load(path: &Path) -> Result<Model, FileError> {
        let text = read_text(path, "a model")?;
        let model: Model = serde_json::from_str(&text).map_err(|e| not_a_model(path, &text, &e))?;
        if model.format != FORMAT {
            let line = locate_line(&text, &[Seg::Key("format")]).unwrap_or(1);
            return Err(bad_data(path, line, format!("format `{}` is not {FORMAT}", model.format)));
        }
        check(&model).map_err(|e| bad_data(path, e.line(&text), e.to_string()))?;
        Ok(model)
    }
}

/// Why text that did not parse as a model is not one: another format tag
/// (at its line), or the parser's own message.
fn not_a_model(path: &Path, text: &str, e: &serde_json::Error) -> FileError {
    #[derive(serde::Deserialize)]
    struct Tag {
        format: Option<String>,
    }
    let tag = serde_json::from_str::<Tag>(text).ok().and_then(|t| t.format);
    let message = match tag.as_deref() {
        Some(PARTIAL_FORMAT) => {
            "this is a partial fit, not a model; turn it into one with `palette merge PARTIAL... -o model.json`"
                .to_string()
        }
        Some(f) if f != FORMAT => format!("format `{f}` is not {FORMAT}"),
        _ => format!("not a palette model ({e}); write one with `palette fit`"),
    };
    let line = if tag.is_some() && tag.as_deref() != Some(FORMAT) {
        locate_line(text, &[Seg::Key("format")]).unwrap_or(1)
    } else {
        e.line() as u64
    };
    bad_data(path, line, message)
}

impl Partial {
    /// Reads a partial fit (`palette fit --partial`), with a clear error for
    /// anything else.
    pub fn load(path: &Path) -> Result<Partial, FileError> {
        let text = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileError::NotFound(path.to_path_buf())),
            Err(e) => return Err(FileError::Read { path: path.to_path_buf(), source: e }),
            Ok(text) => text,
        };
        let partial: Partial = serde_json::from_str(&text).map_err(|e| {
            bad_data(path, e.line() as u64, format!("not a partial fit ({e}); write one with `palette fit --partial`"))
        })?;
        if partial.format != PARTIAL_FORMAT {
            return Err(bad_data(path, 1, format!("format `{}` is not {PARTIAL_FORMAT}", partial.format)));
        }
        Ok(partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_of_paths() {
        let text = "{\n  \"format\": \"x\",\n  \"apis\": [\n    {\"a\": [1, 2]},\n    {\"a\": [\"}\\\"\",\n      7]}\n  ]\n}\n";
        assert_eq!(locate_line(text, &[Seg::Key("format")]), Some(2));
        assert_eq!(locate_line(text, &[Seg::Key("apis"), Seg::Index(0), Seg::Key("a"), Seg::Index(1)]), Some(4));
        assert_eq!(locate_line(text, &[Seg::Key("apis"), Seg::Index(1), Seg::Key("a"), Seg::Index(1)]), Some(6));
        assert_eq!(locate_line(text, &[Seg::Key("apis"), Seg::Index(2)]), None);
        assert_eq!(locate_line(text, &[Seg::Key("nope")]), None);
    }

    #[test]
    fn missing_and_wrong_files_say_what_they_are() {
        let dir = std::env::temp_dir().join(format!("palette-model-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("none.json");
        assert_eq!(Model::load(&missing).unwrap_err().failure_kind(), FailureKind::Usage);
        assert_eq!(Model::load(&dir).unwrap_err().failure_kind(), FailureKind::Usage);
        let partial = dir.join("p.json");
        std::fs::write(&partial, "{\"format\": \"palette-partial/1\"}").unwrap();
        let e = Model::load(&partial).unwrap_err();
        assert_eq!(e.failure_kind(), FailureKind::BadData);
        assert!(e.to_string().contains("this is a partial fit"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
