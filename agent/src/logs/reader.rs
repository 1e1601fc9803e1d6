//! Reading a container's log: its files in order, the last N lines across rotated files, and
//! following the live file across rotations. Blocking I/O: callers run it on a blocking thread.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::rotate::rotated_path;

/// The rotated files of `path` that exist, newest (`.1`) first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|n| rotated_path(path, n))
        .take_while(|p| p.exists())
        .collect()
}

/// Where the last `n` lines start in the concatenation of `bufs` (oldest first): the index of
/// a buffer and an offset in it. A newline as the very last byte ends the last line rather than
/// starting an empty one. Fewer than `n` lines: everything, `(0, 0)`.
pub fn tail_start(bufs: &[&[u8]], n: usize) -> (usize, usize) {
    if n == 0 {
        return (bufs.len(), 0);
    }
    let mut seen = 0;
    let mut last_byte = true;
    for (i, buf) in bufs.iter().enumerate().rev() {
        for j in (0..buf.len()).rev() {
            let is_newline = buf[j] == b'\n';
            if is_newline && !last_byte {
                seen += 1;
                if seen == n {
                    return (i, j + 1);
                }
            }
            last_byte = false;
        }
    }
    (0, 0)
}

fn count_lines(buf: &[u8]) -> usize {
    buf.iter().filter(|b| **b == b'\n').count()
}

/// The start of a read: the bytes to send first (the whole log, or its last `tail` lines), and
/// the live file positioned after them, for following.
pub struct Opened {
    pub initial: Vec<Vec<u8>>,
    pub live: File,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no log yet")]
    Missing,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Opens the live file first (so data written meanwhile is followed, not lost), then reads
/// rotated files only as far back as `tail` needs (all of them for `tail` 0).
pub fn open(path: &Path, tail: usize) -> Result<Opened, ReadError> {
    let mut live = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => return Err(e.into()),
    };
    let mut current = Vec::new();
    live.read_to_end(&mut current)?;
    // Newest first while collecting.
    let mut newest_first = vec![current];
    let mut lines = count_lines(&newest_first[0]);
    for older in rotated_files(path) {
        if tail > 0 && lines > tail {
            break;
        }
        match std::fs::read(&older) {
            Ok(buf) => {
                lines += count_lines(&buf);
                newest_first.push(buf);
            }
            // Rotated away meanwhile: what we have is still in order.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e.into()),
        }
    }
    newest_first.reverse();
    let mut bufs = newest_first;
    if tail > 0 {
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        let (i, off) = tail_start(&refs, tail);
        bufs.drain(..i);
        if let Some(first) = bufs.first_mut() {
            first.drain(..off);
        }
    }
    Ok(Opened {
        initial: bufs,
        live,
    })
}

/// Reads what the live file holds past its position, switching to the new live file once the
/// old one was rotated away (after draining it). Returns the bytes read (maybe none).
pub fn read_more(path: &Path, live: &mut File, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    (&mut *live).take(limit as u64).read_to_end(&mut buf)?;
    if buf.is_empty() && rotated(path, live) {
        if let Ok(mut next) = File::open(path) {
            next.seek(SeekFrom::Start(0))?;
            *live = next;
        }
    }
    Ok(buf)
}

/// Whether `path` now names a different file than `live`.
fn rotated(path: &Path, live: &File) -> bool {
    match (std::fs::metadata(path), live.metadata()) {
        (Ok(p), Ok(l)) => p.ino() != l.ino() || p.dev() != l.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::rotate::{Limits, Rotator};

    #[test]
    fn tail_start_counts_from_the_end() {
        let a: &[u8] = b"1\n2\n";
        let b: &[u8] = b"3\n4\n5\n";
        assert_eq!(tail_start(&[a, b], 2), (1, 2));
        assert_eq!(tail_start(&[a, b], 3), (0, 4));
        assert_eq!(tail_start(&[a, b], 4), (0, 2));
        assert_eq!(tail_start(&[a, b], 5), (0, 0));
        assert_eq!(tail_start(&[a, b], 50), (0, 0));
        // An unterminated last line counts as a line.
        let c: &[u8] = b"3\n4\n5";
        assert_eq!(tail_start(&[a, c], 1), (1, 4));
    }

    fn tmp() -> PathBuf {
        std::env::temp_dir().join(format!("berth-read-{}", fastrand::u64(..)))
    }

    #[test]
    fn tail_across_rotated_files() {
        let dir = tmp();
        let path = dir.join("c.log");
        let mut r = Rotator::open(
            &path,
            Limits {
                max_size_bytes: 100,
                max_files: 4,
            },
        )
        .unwrap();
        for i in 0..40 {
            r.write(format!("line {i:03}\n").as_bytes()).unwrap();
        }
        assert_eq!(rotated_files(&path).len(), 3);
        let text = |o: Opened| String::from_utf8(o.initial.concat()).unwrap();
        // 10 bytes a line, 10 lines a file: the last 15 span the live file and `.1`.
        let last15 = text(open(&path, 15).unwrap());
        let want: String = (25..40).map(|i| format!("line {i:03}\n")).collect();
        assert_eq!(last15, want);
        let all = text(open(&path, 0).unwrap());
        assert!(all.starts_with("line 000\n"), "{all}");
        assert!(all.ends_with("line 039\n"));
        assert_eq!(all.lines().count(), 40);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn follow_continues_across_rotation() {
        let dir = tmp();
        let path = dir.join("c.log");
        let limits = Limits {
            max_size_bytes: 20,
            max_files: 3,
        };
        let mut r = Rotator::open(&path, limits).unwrap();
        r.write(b"a\n").unwrap();
        let mut opened = open(&path, 0).unwrap();
        assert_eq!(opened.initial.concat(), b"a\n");
        let mut got = Vec::new();
        for i in 0..10 {
            r.write(format!("line{i}\n").as_bytes()).unwrap();
            for _ in 0..3 {
                got.extend(read_more(&path, &mut opened.live, 1024).unwrap());
            }
        }
        let want: String = (0..10).map(|i| format!("line{i}\n")).collect();
        assert_eq!(String::from_utf8(got).unwrap(), want);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
