//! Export: a snapshot (or part of it) as one ordinary `.tar.zst`, which any
//! machine unpacks with `zstd -dc FILE | tar -x`.
//!
//! Paths in the archive are the manifest paths, the layout `restore --target`
//! produces. Every file's blobs are verified as they are read, and the whole
//! file against the entry's hash, as restore does; a mismatch stops the
//! export. Nothing is held whole: each file's blobs are written in turn after
//! its header. What ustar cannot say (long or non-UTF-8-safe paths and link
//! targets, nanosecond mtimes, large ids and sizes, extended attributes) goes
//! into PAX extended headers.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header, UstarHeader};

use crate::collect::tree::PatternError;
use crate::interrupt;
use crate::progress::Progress;
use crate::repo::index::Index;
use crate::repo::manifest::path_key;
use crate::repo::manifest::{Entry, EntryKind, RawBytes};
use crate::repo::reader::{BlobReader, ContentCheck};
use crate::repo::snapshot::Snapshot;
use crate::repo::{RepoError, Repository};
use crate::select::Selection;
use crate::sink::local::random_u64;

/// zstd's default level: what `zstd` itself uses.
const LEVEL: i32 = 3;
/// The largest value of an 8-byte ustar number field (7 octal digits).
const USTAR_ID_MAX: u64 = 0o7777777;
/// The largest value of a 12-byte ustar number field (11 octal digits).
const USTAR_NUM_MAX: u64 = 0o77777777777;

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only entries matching one of these (or inside a matching directory).
    pub include: Vec<String>,
    /// Leave out entries matching one of these (and what is inside them).
    pub exclude: Vec<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ExportSummary {
    /// Regular files and hard links.
    pub files: u64,
    pub dirs: u64,
    /// Symbolic links.
    pub links: u64,
    /// Fifos and device nodes.
    pub other: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Where the archive went (`-` for standard output).
    pub output: String,
    /// What the archive could not hold.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Pattern(#[from] PatternError),
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: Box<RepoError>,
    },
    #[error("{path}: contents differ from the snapshot ({detail})")]
    Mismatch { path: String, detail: String },
    #[error("{path}: a hard link to {target}, which is no file of the snapshot")]
    DanglingLink { path: String, target: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Exports into a new file at `dest`: written under a temporary name beside
/// it (mode 0600), synced, then renamed, so that an export that stops
/// half-way leaves nothing under the final name.
pub fn export_to_file(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    opts: &ExportOptions,
    dest: &Path,
    progress: &Progress,
) -> Result<ExportSummary, ExportError> {
    let write_err = |source| ExportError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let (temp, file) = TempFile::create(dest).map_err(write_err)?;
    let (summary, file) = export(repo, index, snapshot, opts, file, dest, progress)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    temp.commit(dest).map_err(write_err)?;
    Ok(summary)
}

/// Writes the archive to `out` (`name` says where it goes, for messages) and
/// gives `out` back.
pub fn export<W: Write>(
    repo: &Repository,
    index: &Index,
    snapshot: &Snapshot,
    opts: &ExportOptions,
    out: W,
    name: &Path,
    progress: &Progress,
) -> Result<(ExportSummary, W), ExportError> {
    let prefixes = snapshot.record.roots.iter().map(|r| r.prefix.clone()).collect();
    let selection = Selection::new(&opts.include, &opts.exclude, prefixes)?;
    let write_err = |source| ExportError::Write {
        path: name.to_path_buf(),
        source,
    };
    let mut encoder = zstd::stream::write::Encoder::new(out, LEVEL).map_err(write_err)?;
    encoder.include_checksum(true).map_err(write_err)?;
    let mut tar = TarWriter {
        reader: BlobReader::new(repo, index),
        builder: tar::Builder::new(encoder),
        name: name.to_path_buf(),
        summary: ExportSummary {
            output: name.display().to_string(),
            ..ExportSummary::default()
        },
        exported: HashSet::new(),
        deferred: HashMap::new(),
        progress,
    };
    let short = snapshot.id.short();
    let mut manifest = BlobReader::new(repo, index);
    for entry in manifest.manifest(&short, &snapshot.record.manifest) {
        let entry = entry?;
        stop_if_interrupted()?;
        if selection.matches(entry.path.as_bytes()) {
            tar.entry(entry)?;
        }
    }
    if !tar.deferred.is_empty() {
        let mut manifest = BlobReader::new(repo, index);
        tar.resolve_deferred(manifest.manifest(&short, &snapshot.record.manifest))?;
    }
    let TarWriter { builder, summary, .. } = tar;
    let out = builder
        .into_inner()
        .and_then(|encoder| encoder.finish())
        .map_err(write_err)?;
    Ok((summary, out))
}

fn stop_if_interrupted() -> Result<(), ExportError> {
    if interrupt::is_set() {
        Err(RepoError::Interrupted.into())
    } else {
        Ok(())
    }
}

/// The archive being written, with what it holds so far.
struct TarWriter<'r, 'p, W: Write> {
    /// Reads file contents (the manifest is read by a reader of its own).
    reader: BlobReader<'r>,
    builder: tar::Builder<zstd::stream::write::Encoder<'static, W>>,
    /// Where the archive goes, for messages.
    name: PathBuf,
    summary: ExportSummary,
    /// Files written, by path key: a hard link may point at one of these.
    exported: HashSet<u64>,
    /// Hard links whose first name was left out, by that name, in order.
    deferred: HashMap<Vec<u8>, Vec<Entry>>,
    progress: &'p Progress,
}

impl<W: Write> TarWriter<'_, '_, W> {
    fn write_err(&self, source: io::Error) -> ExportError {
        ExportError::Write {
            path: self.name.clone(),
            source,
        }
    }

    fn entry(&mut self, entry: Entry) -> Result<(), ExportError> {
        match entry.kind {
            EntryKind::File => {
                self.file(&entry)?;
                self.exported.insert(path_key(entry.path.as_bytes()));
            }
            EntryKind::Hardlink => {
                let target = entry.target.clone().unwrap_or_default();
                if self.exported.contains(&path_key(target.as_bytes())) {
                    self.hard_link(&entry, target.as_bytes())?;
                } else {
                    self.deferred.entry(target.0).or_default().push(entry);
                }
            }
            EntryKind::Dir => {
                self.append_empty(&entry, EntryType::Directory)?;
                self.summary.dirs += 1;
            }
            EntryKind::Symlink => {
                self.append_empty(&entry, EntryType::Symlink)?;
                self.summary.links += 1;
            }
            EntryKind::Fifo => self.special(&entry, EntryType::Fifo)?,
            EntryKind::Chardev => self.special(&entry, EntryType::Char)?,
            EntryKind::Blockdev => self.special(&entry, EntryType::Block)?,
        }
        Ok(())
    }

    fn special(&mut self, entry: &Entry, kind: EntryType) -> Result<(), ExportError> {
        self.append_empty(entry, kind)?;
        self.summary.other += 1;
        Ok(())
    }

    fn hard_link(&mut self, entry: &Entry, first: &[u8]) -> Result<(), ExportError> {
        let mut link = entry.clone();
        link.target = Some(RawBytes(first.to_vec()));
        self.append_empty(&link, EntryType::Link)?;
        self.summary.files += 1;
        Ok(())
    }

    /// Writes the headers of an entry with no contents.
    fn append_empty(&mut self, entry: &Entry, kind: EntryType) -> Result<(), ExportError> {
        let (header, pax) = entry_header(entry, kind, 0, &mut self.summary.warnings);
        self.append_headers(&header, &pax)
    }

    /// Writes the PAX extended header, if any, then the entry's own header.
    fn append_headers(&mut self, header: &Header, pax: &[(String, Vec<u8>)]) -> Result<(), ExportError> {
        let result = self
            .builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .and_then(|()| self.builder.get_mut().write_all(header.as_bytes()));
        result.map_err(|e| self.write_err(e))
    }

    /// Writes a regular file: headers, then each blob as it is read and
    /// verified, then the padding; the whole is checked against the entry.
    fn file(&mut self, entry: &Entry) -> Result<(), ExportError> {
        let (header, pax) = entry_header(entry, EntryType::Regular, entry.size, &mut self.summary.warnings);
        self.append_headers(&header, &pax)?;
        let path = entry.path.lossy();
        let mut check = ContentCheck::new(entry);
        for id in &entry.blobs {
            stop_if_interrupted()?;
            let out = self.builder.get_mut();
            let step = self.reader.read_with(id, |data| {
                let len = data.len() as u64;
                if check.written() + len > entry.size {
                    return Chunk::TooLong(check.written() + len);
                }
                check.update(data);
                match out.write_all(data) {
                    Ok(()) => Chunk::Written(len),
                    Err(e) => Chunk::Failed(e),
                }
            });
            match step {
                Ok(Chunk::Written(len)) => self.progress.add(len),
                Ok(Chunk::TooLong(bytes)) => return Err(mismatch(&path, bytes, entry.size)),
                Ok(Chunk::Failed(e)) => return Err(self.write_err(e)),
                Err(e) => {
                    return Err(ExportError::Read {
                        path,
                        source: Box::new(e),
                    })
                }
            }
        }
        let written = check.written();
        if let Some(detail) = check.mismatch(entry, self.reader.crypto()) {
            return Err(ExportError::Mismatch { path, detail });
        }
        let padding = (512 - written % 512) % 512;
        let zeros = [0u8; 512];
        let out = self.builder.get_mut();
        out.write_all(&zeros[..padding as usize])
            .map_err(|e| self.write_err(e))?;
        self.summary.files += 1;
        self.summary.bytes += written;
        self.progress.file_done();
        Ok(())
    }

    /// Hard links whose first name was left out: the first of each group
    /// becomes a file with that name's contents, the others links to it.
    fn resolve_deferred(
        &mut self,
        entries: impl Iterator<Item = Result<Entry, RepoError>>,
    ) -> Result<(), ExportError> {
        for entry in entries {
            if self.deferred.is_empty() {
                break;
            }
            let entry = entry?;
            stop_if_interrupted()?;
            if entry.kind != EntryKind::File {
                continue;
            }
            let Some(links) = self.deferred.remove(entry.path.as_bytes()) else {
                continue;
            };
            let Some((first, rest)) = links.split_first() else {
                continue;
            };
            self.file(&Entry {
                path: first.path.clone(),
                ..entry
            })?;
            for link in rest {
                self.hard_link(link, first.path.as_bytes())?;
            }
        }
        match self.deferred.iter().next() {
            Some((target, links)) => Err(ExportError::DanglingLink {
                path: links.first().map(|l| l.path.lossy()).unwrap_or_default(),
                target: String::from_utf8_lossy(target).into_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// The ustar header of an entry, and the PAX records for what ustar cannot
/// hold (the header then carries a truncated or clamped value).
fn entry_header(
    entry: &Entry,
    kind: EntryType,
    size: u64,
    warnings: &mut Vec<String>,
) -> (Header, Vec<(String, Vec<u8>)>) {
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut header = Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(entry.mode & 0o7777);
    header.set_uid(entry.uid.into());
    header.set_gid(entry.gid.into());
    if u64::from(entry.uid) > USTAR_ID_MAX {
        pax.push(("uid".into(), entry.uid.to_string().into_bytes()));
    }
    if u64::from(entry.gid) > USTAR_ID_MAX {
        pax.push(("gid".into(), entry.gid.to_string().into_bytes()));
    }
    header.set_size(size);
    if size > USTAR_NUM_MAX {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    header.set_mtime(entry.mtime.clamp(0, USTAR_NUM_MAX as i64) as u64);
    if entry.mtime_nsec != 0 || entry.mtime < 0 || entry.mtime > USTAR_NUM_MAX as i64 {
        pax.push((
            "mtime".into(),
            pax_time(entry.mtime, entry.mtime_nsec).into_bytes(),
        ));
    }
    let mut path = entry.path.as_bytes().to_vec();
    if kind == EntryType::Directory {
        path.push(b'/');
    }
    let link = match kind {
        EntryType::Symlink | EntryType::Link => entry.target.as_ref().map(|t| t.as_bytes()),
        _ => None,
    };
    if let Some(ustar) = header.as_ustar_mut() {
        set_names(ustar, &path, link, &mut pax);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            let (major, minor) = dev_numbers(entry.rdev);
            ustar.set_device_major(major);
            ustar.set_device_minor(minor);
        }
    }
    for x in &entry.xattrs {
        match std::str::from_utf8(x.name.as_bytes()) {
            Ok(name) => pax.push((format!("SCHILY.xattr.{name}"), x.value.as_bytes().to_vec())),
            Err(_) => warnings.push(format!(
                "{}: extended attribute {:?} has a name that is not UTF-8; left out of the archive",
                entry.path.lossy(),
                x.name
            )),
        }
    }
    header.set_cksum();
    (header, pax)
}

/// Puts the path (and link target) in the ustar fields, or in PAX records
/// when they do not fit. Bytes are copied as they are; a PAX path or link
/// target that is not UTF-8 is marked `hdrcharset=BINARY`, so that readers
/// take it verbatim too.
fn set_names(ustar: &mut UstarHeader, path: &[u8], link: Option<&[u8]>, pax: &mut Vec<(String, Vec<u8>)>) {
    let mut binary = false;
    if !set_ustar_path(ustar, path) {
        let cut = path.len().min(ustar.name.len());
        ustar.name[..cut].copy_from_slice(&path[..cut]);
        binary |= std::str::from_utf8(path).is_err();
        pax.push(("path".into(), path.to_vec()));
    }
    if let Some(link) = link {
        let cut = link.len().min(ustar.linkname.len());
        ustar.linkname[..cut].copy_from_slice(&link[..cut]);
        if link.len() > ustar.linkname.len() {
            binary |= std::str::from_utf8(link).is_err();
            pax.push(("linkpath".into(), link.to_vec()));
        }
    }
    if binary {
        pax.insert(0, ("hdrcharset".into(), b"BINARY".to_vec()));
    }
}

/// Stores a path in ustar's `name`, or split at a `/` between `prefix` and
/// `name`; false when it fits neither way.
fn set_ustar_path(ustar: &mut UstarHeader, path: &[u8]) -> bool {
    let name_max = ustar.name.len();
    if path.len() <= name_max {
        ustar.name[..path.len()].copy_from_slice(path);
        return true;
    }
    // The `/` at `i` leaves `path[i + 1..]` (at most `name_max` bytes) for
    // the name and `path[..i]` (at most the prefix's size) for the prefix.
    let first = path.len() - name_max - 1;
    let last = path.len().min(ustar.prefix.len() + 1);
    for i in first..last {
        if path[i] == b'/' && i > 0 && i + 1 < path.len() {
            ustar.prefix[..i].copy_from_slice(&path[..i]);
            ustar.name[..path.len() - i - 1].copy_from_slice(&path[i + 1..]);
            return true;
        }
    }
    false
}

/// A PAX time: seconds since the epoch with a decimal fraction.
fn pax_time(secs: i64, nsec: u32) -> String {
    let nsec = nsec.min(999_999_999);
    if nsec == 0 {
        secs.to_string()
    } else if secs >= 0 {
        format!("{secs}.{nsec:09}")
    } else {
        // -2 s + 0.5 s is -1.5 s.
        format!("-{}.{:09}", -(secs + 1), 1_000_000_000 - nsec)
    }
}

/// A device number's major and minor parts, as the platform packs them.
fn dev_numbers(rdev: u64) -> (u32, u32) {
    if cfg!(target_os = "linux") {
        let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
        let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
        (major as u32, minor as u32)
    } else {
        (((rdev >> 24) & 0xff) as u32, (rdev & 0xff_ffff) as u32)
    }
}

/// What became of one blob of a file.
enum Chunk {
    Written(u64),
    /// The file grew past the size its entry gives (bytes so far).
    TooLong(u64),
    Failed(io::Error),
}

fn mismatch(path: &str, bytes: u64, expected: u64) -> ExportError {
    ExportError::Mismatch {
        path: path.to_string(),
        detail: format!("at least {bytes} bytes, the manifest says {expected}"),
    }
}

/// The archive's temporary name beside its final one; removed unless the
/// export finished and renamed it into place.
struct TempFile {
    path: PathBuf,
    done: bool,
}

impl TempFile {
    fn create(dest: &Path) -> io::Result<(TempFile, File)> {
        if dest.is_dir() {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, "it is a directory"));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "it names no file"))?;
        let short: String = name.to_string_lossy().chars().take(32).collect();
        let mut attempts = 0;
        loop {
            let mut tmp = OsString::from(".");
            tmp.push(&short);
            tmp.push(format!(".cairn-{:016x}", random_u64()));
            let path = dest.with_file_name(tmp);
            match create_private(&path) {
                Ok(file) => return Ok((TempFile { path, done: false }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn commit(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A new file only its owner may read: a snapshot may hold secrets.
fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(5, 0), "5");
        assert_eq!(pax_time(1_700_000_000, 123_456_789), "1700000000.123456789");
        assert_eq!(pax_time(-2, 500_000_000), "-1.500000000");
        assert_eq!(pax_time(-1, 0), "-1");
    }

    #[test]
    fn long_paths_split_or_go_to_pax() {
        let mut header = Header::new_ustar();
        let Some(ustar) = header.as_ustar_mut() else {
            panic!("not ustar")
        };
        let path = format!("{}/{}", "p".repeat(150), "n".repeat(100));
        assert!(set_ustar_path(ustar, path.as_bytes()));
        assert_eq!(&ustar.prefix[..150], "p".repeat(150).as_bytes());
        assert_eq!(&ustar.name[..], "n".repeat(100).as_bytes());
        let mut header = Header::new_ustar();
        let Some(ustar) = header.as_ustar_mut() else {
            panic!("not ustar")
        };
        assert!(!set_ustar_path(ustar, "x".repeat(101).as_bytes()));
        let mut pax = Vec::new();
        set_names(ustar, b"a/\xff", Some(&[b'l'; 120]), &mut pax);
        let keys: Vec<&str> = pax.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["linkpath"]);
    }

    #[test]
    fn linux_device_numbers() {
        if cfg!(target_os = "linux") {
            // makedev(8, 1) and makedev(259, 65536).
            assert_eq!(dev_numbers(0x801), (8, 1));
            assert_eq!(dev_numbers((259 << 8) | (65536 << 12)), (259, 65536));
        }
    }
}
