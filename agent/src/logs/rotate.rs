//! Size-based rotation of one container's log file: `<name>.log` is the live file, `<name>.log.1`
//! the most recently rotated one, up to `<name>.log.<max_files - 1>`. `max_files` counts the live
//! file too (as Docker's `max-file` does), so at most `max_files` files exist at any time.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The limits a logger rotates by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_size_bytes: u64,
    pub max_files: u32,
}

/// `<path>.<n>`: the n-th rotated file (n >= 1).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// One step of a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Remove(PathBuf),
    Rename { from: PathBuf, to: PathBuf },
}

/// What rotating `path` does, in order: drop the oldest rotated file, shift every other one up,
/// and move the live file to `.1`. With `max_files` 1 the live file is simply removed (and
/// reopened empty by the caller). Missing files are skipped when the steps are carried out.
pub fn plan(path: &Path, max_files: u32) -> Vec<Step> {
    let keep = max_files.max(1) - 1;
    if keep == 0 {
        return vec![Step::Remove(path.to_path_buf())];
    }
    let mut steps = vec![Step::Remove(rotated_path(path, keep))];
    for n in (1..keep).rev() {
        steps.push(Step::Rename {
            from: rotated_path(path, n),
            to: rotated_path(path, n + 1),
        });
    }
    steps.push(Step::Rename {
        from: path.to_path_buf(),
        to: rotated_path(path, 1),
    });
    steps
}

/// Whether a write of `incoming` bytes onto a file of `size` bytes must rotate first. An empty
/// file never rotates, so a single oversized write still lands somewhere.
pub fn needs_rotation(size: u64, incoming: u64, limits: Limits) -> bool {
    size > 0 && size.saturating_add(incoming) > limits.max_size_bytes
}

/// The live log file with rotation: appends, and rotates before a write would exceed the limit.
pub struct Rotator {
    path: PathBuf,
    limits: Limits,
    file: File,
    size: u64,
}

fn open_append(path: &Path) -> std::io::Result<(File, u64)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

impl Rotator {
    /// Opens (or continues: a restarted container appends) the live file.
    pub fn open(path: &Path, limits: Limits) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (file, size) = open_append(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            limits,
            file,
            size,
        })
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if needs_rotation(self.size, data.len() as u64, self.limits) {
            self.rotate()?;
        }
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        for step in plan(&self.path, self.limits.max_files) {
            let result = match &step {
                Step::Remove(p) => std::fs::remove_file(p),
                Step::Rename { from, to } => std::fs::rename(from, to),
            };
            match result {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn plan_shifts_oldest_first_and_drops_the_last() {
        let steps = plan(Path::new("/l/a.log"), 3);
        assert_eq!(
            steps,
            vec![
                Step::Remove(p("/l/a.log.2")),
                Step::Rename {
                    from: p("/l/a.log.1"),
                    to: p("/l/a.log.2")
                },
                Step::Rename {
                    from: p("/l/a.log"),
                    to: p("/l/a.log.1")
                },
            ]
        );
        assert_eq!(
            plan(Path::new("/l/a.log"), 1),
            vec![Step::Remove(p("/l/a.log"))]
        );
        assert_eq!(
            plan(Path::new("/l/a.log"), 2),
            vec![
                Step::Remove(p("/l/a.log.1")),
                Step::Rename {
                    from: p("/l/a.log"),
                    to: p("/l/a.log.1")
                },
            ]
        );
    }

    #[test]
    fn rotation_threshold() {
        let l = Limits {
            max_size_bytes: 100,
            max_files: 3,
        };
        assert!(!needs_rotation(0, 500, l), "an empty file takes any write");
        assert!(!needs_rotation(50, 50, l));
        assert!(needs_rotation(50, 51, l));
    }

    #[test]
    fn rotator_keeps_at_most_max_files_of_bounded_size() {
        let dir = std::env::temp_dir().join(format!("berth-rot-{}", fastrand::u64(..)));
        let path = dir.join("c.log");
        let limits = Limits {
            max_size_bytes: 1000,
            max_files: 3,
        };
        let mut r = Rotator::open(&path, limits).unwrap();
        for i in 0..500 {
            r.write(format!("line {i:05}\n").as_bytes()).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["c.log", "c.log.1", "c.log.2"]);
        for n in &names {
            assert!(std::fs::metadata(dir.join(n)).unwrap().len() <= 1000);
        }
        let live = std::fs::read_to_string(&path).unwrap();
        assert!(live.ends_with("line 00499\n"), "{live}");
        let older = std::fs::read_to_string(rotated_path(&path, 1)).unwrap();
        let first_live = live.lines().next().unwrap();
        let last_older = older.lines().last().unwrap();
        let num = |l: &str| l[5..].parse::<u32>().unwrap();
        assert_eq!(
            num(last_older) + 1,
            num(first_live),
            "no line lost between files"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
