//! The `file` sink: appends every record to `path` as one JSON object per line.
//!
//! Properties: `path` (required), `fsync` (bool, default false: when true every
//! batch is flushed and fsynced before it is acknowledged).
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};

use oort_plugin::{serve, BoxError, Context, Export, Plugin, Props, Record, Sink, Value};

#[derive(Default)]
struct FileSink {
    out: Option<BufWriter<File>>,
    fsync: bool,
}

impl Sink for FileSink {
    fn open(&mut self, _ctx: &Context, props: &Props) -> Result<(), BoxError> {
        let path = props.get("path").and_then(Value::as_str).ok_or("the file sink needs a string property `path`")?;
        self.fsync = match props.get("fsync") {
            None => false,
            Some(v) => v.as_bool().ok_or("property fsync must be a bool")?,
        };
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("open {path}: {e}"))?;
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    fn collect(&mut self, _ctx: &Context, records: &[Record]) -> Result<(), BoxError> {
        let out = self.out.as_mut().ok_or("the file sink is not open")?;
        for r in records {
            serde_json::to_writer(&mut *out, &r.fields_to_json())?;
            out.write_all(b"\n")?;
        }
        // Flush every batch: an acknowledged batch must be in the file, not in
        // this process's buffer, in case the process dies next.
        out.flush()?;
        if self.fsync {
            out.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn close(&mut self, _ctx: &Context) -> Result<(), BoxError> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
            out.get_ref().sync_data()?;
        }
        Ok(())
    }
}

fn main() {
    serve(Plugin::new("file", env!("CARGO_PKG_VERSION")).sink(Export::constructor(FileSink::default)));
}
