//! Buckets of rows between the two passes of the transform. A day that fits one output file stays
//! in memory; a larger day is hash-partitioned by dedup key into buckets spilled to Arrow IPC files
//! in a private temporary folder, so memory stays bounded as the day grows.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use bitacora_core::{Error, Result};

pub enum Bucket {
    Memory(Vec<RecordBatch>),
    Spill {
        path: PathBuf,
        writer: Option<Box<FileWriter<BufWriter<File>>>>,
        schema: SchemaRef,
    },
}

impl Bucket {
    pub fn memory() -> Self {
        Bucket::Memory(Vec::new())
    }

    pub fn spill(dir: &Path, name: &str, schema: SchemaRef) -> Self {
        Bucket::Spill {
            path: dir.join(name),
            writer: None,
            schema,
        }
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            Bucket::Memory(v) => {
                v.push(batch);
                Ok(())
            }
            Bucket::Spill {
                path,
                writer,
                schema,
            } => {
                let w = match writer {
                    Some(w) => w,
                    None => {
                        let f = File::create(&*path)
                            .map_err(|e| Error::io("create spill file", &*path, e))?;
                        // Uncompressed: spill files live for seconds, mostly in the page cache, and
                        // compressing them cost more CPU than the I/O it saved.
                        let opts = IpcWriteOptions::default();
                        let w = FileWriter::try_new_with_options(
                            BufWriter::with_capacity(1 << 20, f),
                            schema,
                            opts,
                        )
                        .map_err(|e| Error::external(format!("spill to {}", path.display()), e))?;
                        writer.insert(Box::new(w))
                    }
                };
                w.write(&batch)
                    .map_err(|e| Error::external(format!("spill to {}", path.display()), e))
            }
        }
    }

    /// Every batch of the bucket (read back from disk when spilled; the file is then removed).
    pub fn drain(&mut self) -> Result<Vec<RecordBatch>> {
        match self {
            Bucket::Memory(v) => Ok(std::mem::take(v)),
            Bucket::Spill { path, writer, .. } => {
                let Some(mut w) = writer.take() else {
                    return Ok(Vec::new());
                };
                w.finish()
                    .map_err(|e| Error::external(format!("spill to {}", path.display()), e))?;
                drop(w);
                let f = File::open(&*path).map_err(|e| Error::io("read spill file", &*path, e))?;
                let reader =
                    FileReader::try_new(std::io::BufReader::with_capacity(1 << 20, f), None)
                        .map_err(|e| {
                            Error::external(format!("read spill {}", path.display()), e)
                        })?;
                let batches = reader
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::external(format!("read spill {}", path.display()), e))?;
                let _ = std::fs::remove_file(&*path);
                Ok(batches)
            }
        }
    }
}
