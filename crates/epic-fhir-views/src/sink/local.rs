//! Tables in a local folder: parts written under `<out>/.epic-fhir-views-<run>/`, synced, then
//! renamed into `<out>/<table>/`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Part, PartWriter, Storage, is_part, run_id};
use crate::error::{Error, ErrorKind, Result};

/// A local folder.
pub(crate) struct LocalStorage {
    root: PathBuf,
    temp: PathBuf,
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Output,
        format!("cannot {action} {}", path.display()),
    )
    .with_source(error)
}

impl LocalStorage {
    pub(crate) fn new(root: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(|e| io_error("create the folder", &root, e))?;
        let temp = root.join(format!(".epic-fhir-views-{}", run_id()));
        Ok(LocalStorage { root, temp })
    }
}

struct LocalPart {
    file: BufWriter<File>,
    path: PathBuf,
}

impl Write for LocalPart {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl PartWriter for LocalPart {
    fn finish(self: Box<Self>) -> Result<()> {
        let path = self.path;
        let file = self
            .file
            .into_inner()
            .map_err(|e| io_error("write", &path, e.into_error()))?;
        file.sync_all().map_err(|e| io_error("sync", &path, e))
    }
}

impl Storage for LocalStorage {
    fn create(&self, part: &Part) -> Result<Box<dyn PartWriter>> {
        let dir = self.temp.join(&part.table);
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create the folder", &dir, e))?;
        let path = dir.join(&part.file);
        let file = File::create(&path).map_err(|e| io_error("create", &path, e))?;
        Ok(Box::new(LocalPart {
            file: BufWriter::with_capacity(1 << 20, file),
            path,
        }))
    }

    fn publish(&self, parts: &[Part], extension: &str) -> Result<()> {
        let mut tables: Vec<&str> = parts.iter().map(|p| p.table.as_str()).collect();
        tables.sort_unstable();
        tables.dedup();
        for table in tables {
            let dir = self.root.join(table);
            std::fs::create_dir_all(&dir).map_err(|e| io_error("create the folder", &dir, e))?;
            // Older parts that this run does not replace would join the table: remove them.
            let new: Vec<&str> = parts
                .iter()
                .filter(|p| p.table == table)
                .map(|p| p.file.as_str())
                .collect();
            let entries = std::fs::read_dir(&dir).map_err(|e| io_error("list", &dir, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if is_part(&name, extension) && !new.contains(&name.as_str()) {
                    std::fs::remove_file(entry.path())
                        .map_err(|e| io_error("remove the old part", &entry.path(), e))?;
                }
            }
            for file in new {
                let from = self.temp.join(table).join(file);
                let to = dir.join(file);
                std::fs::rename(&from, &to).map_err(|e| io_error("publish", &to, e))?;
            }
        }
        let _ = std::fs::remove_dir_all(&self.temp);
        Ok(())
    }

    fn abort(&self) {
        let _ = std::fs::remove_dir_all(&self.temp);
    }

    fn location(&self, part: &Part) -> String {
        self.root
            .join(&part.table)
            .join(&part.file)
            .display()
            .to_string()
    }
}
