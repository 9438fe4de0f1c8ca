//! `palette image`: a container image from the `palette` binary already
//! built on this machine.
//!
//! The generated `Dockerfile` builds Palette inside Docker, which needs a
//! Rust image and takes minutes; a user who has built Palette already has
//! the binary. This module makes an image `FROM scratch` holding only that
//! binary, the shared libraries `ldd` says it loads (glibc, libgcc_s, the
//! loader), an `/etc/passwd` naming the non-root user Kubernetes'
//! `runAsNonRoot` checks, `/etc/palette` (where `system.json` is mounted and
//! spans are written) owned by that user, and `/tmp`. The layer is streamed
//! as a tar to `docker import`, so no base image, registry or builder
//! (BuildKit or legacy) is involved, and it works offline.
//!
//! The image runs exactly what the generated compose file and manifests
//! ask of the Dockerfile's image: `palette serve`, `palette load`, and
//! `palette health` as the health check.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::k8s::UID;

/// Why an image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot run `{command}`: {source}; is Docker installed and on PATH?")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed: {message}")]
    Failed { command: String, message: String },
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("`ldd {}` printed a line this does not understand: {line}", binary.display())]
    Ldd { binary: PathBuf, line: String },
    #[error("image `{0}` is not an image reference (no spaces, not empty)")]
    BadTag(String),
}

/// What went into an image.
#[derive(Clone, Debug)]
pub struct ImageReport {
    /// The tag it was imported as.
    pub tag: String,
    /// The image ID `docker import` printed.
    pub id: String,
    /// Every file copied into it, with its path in the image.
    pub files: Vec<PathBuf>,
    /// Bytes of file content in the layer.
    pub bytes: u64,
}

/// The `docker import --change` instructions that make the layer an image
/// that behaves like the Dockerfile's.
fn changes() -> Vec<String> {
    vec![
        format!("USER {UID}:{UID}"),
        "WORKDIR /etc/palette".into(),
        r#"ENTRYPOINT ["/usr/local/bin/palette"]"#.into(),
        r#"CMD ["--help"]"#.into(),
        // A scratch image has no environment; the loader needs none, but
        // tools a user execs into expect a PATH.
        "ENV PATH=/usr/local/bin".into(),
    ]
}

/// The shared libraries `binary` loads, as `ldd` resolves them. A static
/// binary has none.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let command = format!("ldd {}", binary.display());
    let out = Command::new("ldd")
        .arg(binary)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ImageError::Spawn { command: command.clone(), source })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || stderr.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(ImageError::Failed { command, message: stderr.trim().to_string() });
    }
    parse_ldd(&text).map_err(|line| ImageError::Ldd { binary: binary.to_path_buf(), line })
}

/// The library paths in `ldd`'s output: `name => /path (0x…)` and the
/// loader's `/path (0x…)`; the kernel's vDSO has no file.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not a dynamic executable") || line.starts_with("statically linked") {
            continue;
        }
        let target = line.split_once("=>").map_or(line, |(_, t)| t.trim());
        let path = target.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        } else if !line.starts_with("linux-vdso") && !line.starts_with("linux-gate") {
            return Err(line.to_string());
        }
    }
    Ok(libs)
}

/// Writes the image's one layer as a tar to `out`: directories first, each
/// owned by root but `/etc/palette`, files at the paths the binary expects.
/// Returns what it copied and how many bytes.
pub fn write_layer(binary: &Path, libraries: &[PathBuf], out: impl Write) -> Result<(Vec<PathBuf>, u64), ImageError> {
    let mut tar = tar::Builder::new(out);
    let io_err = |source| ImageError::Failed { command: "docker import".into(), message: format!("{source}") };
    let mut dirs: Vec<PathBuf> = ["etc", "tmp", "usr", "usr/local", "usr/local/bin"].map(PathBuf::from).into();
    for lib in libraries {
        let rel = lib.strip_prefix("/").unwrap_or(lib);
        for a in rel.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
            if !dirs.iter().any(|d| d == a) {
                dirs.push(a.to_path_buf());
            }
        }
    }
    dirs.sort();
    for d in &dirs {
        let mode = if d == Path::new("tmp") { 0o1777 } else { 0o755 };
        append_dir(&mut tar, d, 0, mode).map_err(io_err)?;
    }
    append_dir(&mut tar, Path::new("etc/palette"), UID, 0o755).map_err(io_err)?;
    let passwd = format!("root:x:0:0:root:/:/sbin/nologin\npalette:x:{UID}:{UID}:palette:/nonexistent:/sbin/nologin\n");
    let group = format!("root:x:0:\npalette:x:{UID}:\n");
    append_bytes(&mut tar, Path::new("etc/passwd"), passwd.as_bytes(), 0o644).map_err(io_err)?;
    append_bytes(&mut tar, Path::new("etc/group"), group.as_bytes(), 0o644).map_err(io_err)?;
    let mut files = Vec::new();
    let mut bytes = 0;
    let mut copy = |tar: &mut tar::Builder<_>, from: &Path, to: &Path| -> Result<(), ImageError> {
        // `ldd` names the paths the loader opens, which are often symlinks
        // (libc.so.6 → libc-2.36.so): the image holds the file's bytes there.
        let content = std::fs::read(from).map_err(|source| ImageError::Read { path: from.to_path_buf(), source })?;
        append_bytes(tar, to, &content, 0o755).map_err(io_err)?;
        bytes += content.len() as u64;
        files.push(Path::new("/").join(to));
        Ok(())
    };
    copy(&mut tar, binary, Path::new("usr/local/bin/palette"))?;
    for lib in libraries {
        copy(&mut tar, lib, lib.strip_prefix("/").unwrap_or(lib))?;
    }
    tar.finish().map_err(io_err)?;
    Ok((files, bytes))
}

fn header(kind: tar::EntryType, uid: u32, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(uid));
    h.set_mode(mode);
    h.set_size(size);
    // A fixed time: the same binary makes the same layer.
    h.set_mtime(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &Path, uid: u32, mode: u32) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, uid, mode, 0);
    tar.append_data(&mut h, path, io::empty())
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, 0, mode, content.len() as u64);
    tar.append_data(&mut h, path, content)
}

/// Makes the image `tag` from `binary` with `docker import`.
pub fn import(binary: &Path, tag: &str) -> Result<ImageReport, ImageError> {
    if tag.is_empty() || tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ImageError::BadTag(tag.to_string()));
    }
    let libraries = shared_libraries(binary)?;
    let mut args = vec!["import".to_string()];
    for c in changes() {
        args.push("--change".into());
        args.push(c);
    }
    args.extend(["-".to_string(), tag.to_string()]);
    let command = format!("docker {}", args.join(" "));
    let mut child = Command::new("docker")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ImageError::Spawn { command: command.clone(), source })?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let written = write_layer(binary, &libraries, io::BufWriter::new(stdin));
    let out = child.wait_with_output().map_err(|source| ImageError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(ImageError::Failed { command, message });
    }
    let (files, bytes) = written?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(ImageReport { tag: tag.to_string(), id, files, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_the_files_the_loader_opens() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f18)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f18)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f18)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
                .map(PathBuf::from)
        );
        assert_eq!(parse_ldd("\tstatically linked\n").unwrap(), Vec::<PathBuf>::new());
        assert_eq!(parse_ldd("\tlibfoo.so => not found\n").unwrap_err(), "libfoo.so => not found");
    }

    #[test]
    fn the_layer_holds_the_binary_its_libraries_and_a_non_root_home() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("palette");
        let lib = dir.path().join("libx.so");
        std::fs::write(&bin, b"#!binary").unwrap();
        std::fs::write(&lib, b"library").unwrap();
        let mut out = Vec::new();
        let (files, bytes) = write_layer(&bin, std::slice::from_ref(&lib), &mut out).unwrap();
        assert_eq!(bytes, 15);
        assert_eq!(files[0], Path::new("/usr/local/bin/palette"));
        assert_eq!(files[1], lib);
        let mut archive = tar::Archive::new(out.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            seen.push((entry.path().unwrap().display().to_string(), h.uid().unwrap(), h.mode().unwrap()));
        }
        assert!(seen.contains(&("etc/palette".into(), u64::from(UID), 0o755)), "{seen:?}");
        assert!(seen.contains(&("tmp".into(), 0, 0o1777)), "{seen:?}");
        assert!(seen.contains(&("usr/local/bin/palette".into(), 0, 0o755)), "{seen:?}");
        let lib_in_image = lib.strip_prefix("/").unwrap().display().to_string();
        assert!(seen.iter().any(|(p, _, _)| *p == lib_in_image), "{seen:?}");
        // Every parent directory comes before what it holds.
        let dirs = lib.strip_prefix("/").unwrap().parent().unwrap().display().to_string();
        let at = |p: &str| seen.iter().position(|(q, _, _)| q == p).unwrap();
        assert!(at(&dirs) < at(&lib_in_image));
    }
}
