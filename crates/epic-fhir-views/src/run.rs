//! A run: inputs → blocks of lines → workers (parse, evaluate, encode) → one writer per view
//! (in input order) → parts under a temporary location → published when everything worked.
//!
//! Memory is bounded by the blocks in flight (a few per worker, about 1 MiB each), each
//! view's Parquet row group being built, and the upload buffers, whatever the input size.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::input::InputFile;
use crate::json::{Kind, Tape, leading_resource_type};
use crate::output::{Batch, Compression, Encoder, Format, TableSchema, TableSummary, TableWriter};
#[cfg(feature = "object-store")]
use crate::sink::ObjectStorage;
use crate::sink::{Destination, LocalStorage, StdoutStorage, Storage};
use crate::view::ViewDefinition;

/// The size of the blocks of lines handed to workers.
const BLOCK: usize = 1 << 20;
/// The UTF-8 byte order mark, skipped at the start of an input.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// How many blocks the reader may be ahead of the slowest writer, per worker: this bounds
/// the batches a writer holds while it waits for an earlier block that a worker is still on.
const WINDOW_PER_WORKER: u64 = 4;

/// How a run writes its tables.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The table format (default Parquet).
    pub format: Format,
    /// Parquet compression (default Zstandard level 1).
    pub compression: Compression,
    /// Threads that parse and evaluate (default: the machine's available parallelism).
    pub workers: usize,
    /// A part is closed and the next one started once it reaches this size (default 512 MiB).
    pub part_bytes: u64,
    /// A Hive-style partition folder inside each table (`source=org_a` makes
    /// `<out>/<view>/source=org_a/part-00000.parquet`), so several runs can write one table.
    pub partition: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            format: Format::Parquet,
            compression: Compression::Zstd,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            part_bytes: 512 << 20,
            partition: None,
        }
    }
}

/// Counters a progress display can read while a run goes on.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    resources: AtomicU64,
    rows: AtomicU64,
    files: AtomicU64,
}

impl Progress {
    /// Input bytes read (compressed bytes for gzipped files).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Resources read.
    pub fn resources(&self) -> u64 {
        self.resources.load(Ordering::Relaxed)
    }

    /// Rows produced, all views together.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Input files finished.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }
}

/// What one view produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewSummary {
    /// The view's (table's) name.
    pub view: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Where its parts are, once published.
    pub parts: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Input files read (skipped ones not counted).
    pub files: u64,
    /// Resources read.
    pub resources: u64,
    /// Input bytes read.
    pub bytes: u64,
    /// Each view's table.
    pub views: Vec<ViewSummary>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// A block of complete lines from one input.
struct Block {
    seq: u64,
    input: Arc<str>,
    first_line: u64,
    /// The buffer; its first `len` bytes are the lines.
    data: Vec<u8>,
    len: usize,
}

/// The first error of a run, and the flag that stops everyone.
#[derive(Default)]
struct Failure {
    stop: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl Failure {
    fn set(&self, error: Error) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(error);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn take(&self) -> Option<Error> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Runs `views` over `inputs` into `destination`. Object store destinations need a Tokio
/// runtime `handle` (uploads run on it); call this from a thread that is not a runtime
/// worker (e.g. `spawn_blocking`).
///
/// Inputs are taken one after the other as the iterator yields them, so a caller can hand
/// over files as they arrive (a running export); an `Err` from it stops the run.
///
/// # Errors
/// The first error of any kind; nothing is published then, and what was written is removed.
pub fn run(
    views: &[ViewDefinition],
    inputs: impl IntoIterator<Item = Result<InputFile>>,
    destination: &Destination,
    options: &RunOptions,
    progress: &Progress,
    handle: Option<tokio::runtime::Handle>,
) -> Result<RunSummary> {
    let started = Instant::now();
    if views.is_empty() {
        return Err(Error::definition("no view to run"));
    }
    let mut names = Vec::new();
    for view in views {
        let name = view.name().ok_or_else(|| {
            Error::definition(format!(
                "the {} view has no name: its table needs one",
                view.resource()
            ))
        })?;
        if names.contains(&name) {
            return Err(Error::definition(format!(
                "two views are named `{name}`: each names its own table"
            )));
        }
        names.push(name);
    }
    if let Some(partition) = &options.partition {
        let valid = partition.split_once('=').is_some_and(|(k, v)| {
            !k.is_empty()
                && !v.is_empty()
                && partition
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "=_-.".contains(c))
        });
        if !valid {
            return Err(Error::new(
                ErrorKind::Output,
                format!(
                    "the partition `{partition}` must look like key=value (letters, digits, `_`, `-`, `.`)"
                ),
            ));
        }
    }
    let storage: Arc<dyn Storage> = match destination {
        Destination::Local(path) => Arc::new(LocalStorage::new(path.clone())?),
        #[cfg(feature = "object-store")]
        Destination::ObjectStore { url, options } => {
            let handle = handle.ok_or_else(|| {
                Error::new(ErrorKind::Storage, "object stores need a Tokio runtime")
            })?;
            Arc::new(ObjectStorage::new(url, options, handle)?)
        }
        #[cfg(not(feature = "object-store"))]
        Destination::ObjectStore { url, .. } => {
            let _ = handle;
            return Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "{url}: this build has no object store support (the `object-store` feature)"
                ),
            ));
        }
        Destination::Stdout => {
            if views.len() != 1 || options.format == Format::Parquet {
                return Err(Error::new(
                    ErrorKind::Output,
                    "stdout takes the rows of one view, as CSV or NDJSON",
                ));
            }
            Arc::new(StdoutStorage)
        }
    };
    let schemas = views
        .iter()
        .map(TableSchema::new)
        .collect::<Result<Vec<_>>>()?;
    let result = execute(views, &schemas, inputs, &storage, options, progress);
    match result {
        Ok(tables) => {
            let parts: Vec<_> = tables
                .iter()
                .flat_map(|t| t.parts.iter().cloned())
                .collect();
            if let Err(error) = storage.publish(&parts, options.format.extension()) {
                storage.abort();
                return Err(error);
            }
            Ok(RunSummary {
                files: progress.files(),
                resources: progress.resources(),
                bytes: progress.bytes(),
                views: names
                    .iter()
                    .zip(&tables)
                    .map(|(name, table)| ViewSummary {
                        view: (*name).to_owned(),
                        rows: table.rows,
                        bytes: table.bytes,
                        parts: table.parts.iter().map(|p| storage.location(p)).collect(),
                    })
                    .collect(),
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        Err(error) => {
            storage.abort();
            Err(error)
        }
    }
}

fn execute(
    views: &[ViewDefinition],
    schemas: &[TableSchema],
    inputs: impl IntoIterator<Item = Result<InputFile>>,
    storage: &Arc<dyn Storage>,
    options: &RunOptions,
    progress: &Progress,
) -> Result<Vec<TableSummary>> {
    let workers = options.workers.max(1);
    let failure = Failure::default();
    let wanted: Vec<&str> = views.iter().map(ViewDefinition::resource).collect();
    let written: Vec<AtomicU64> = views.iter().map(|_| AtomicU64::new(0)).collect();
    let written = &written;
    std::thread::scope(|scope| {
        let (block_tx, block_rx) = sync_channel::<Block>(workers * 2);
        let block_rx = Arc::new(Mutex::new(block_rx));
        // Workers hand their blocks' buffers back, so the reader fills the same few buffers
        // again instead of asking the allocator for fresh 1 MiB ones (fresh pages fault in).
        let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(workers * 2 + 2);
        let mut batch_txs = Vec::new();
        let mut writer_threads = Vec::new();
        for (view, schema) in views.iter().zip(schemas) {
            let (tx, rx) = sync_channel::<(u64, Batch)>(workers * 2 + 2);
            batch_txs.push(tx);
            let table = match &options.partition {
                Some(partition) => format!("{}/{partition}", view.name().unwrap_or_default()),
                None => view.name().unwrap_or_default().to_owned(),
            };
            let writer = TableWriter::new(
                Arc::clone(storage),
                options.format,
                options.compression,
                schema.clone(),
                table,
                options.part_bytes,
            );
            let failure = &failure;
            let done = &written[writer_threads.len()];
            writer_threads.push(scope.spawn(move || write_table(writer, rx, failure, done)));
        }
        let mut worker_threads = Vec::new();
        for _ in 0..workers {
            let block_rx = Arc::clone(&block_rx);
            let batch_txs = batch_txs.clone();
            let spare_tx = spare_tx.clone();
            let failure = &failure;
            worker_threads.push(scope.spawn(move || {
                let ends = WorkerEnds {
                    blocks: &block_rx,
                    batches: &batch_txs,
                    spare: &spare_tx,
                };
                work(views, schemas, options.format, &ends, failure, progress);
            }));
        }
        drop(batch_txs);
        drop(spare_tx);
        // Only the workers hold the receiver now: if they all stop, the reader's next send
        // fails instead of waiting forever.
        drop(block_rx);

        let window = Window {
            written,
            ahead: WINDOW_PER_WORKER * workers as u64,
        };
        let channels = Channels {
            blocks: &block_tx,
            spare: &spare_rx,
        };
        read_inputs(inputs, &wanted, &channels, &failure, progress, &window);
        drop(block_tx);
        for thread in worker_threads {
            if thread.join().is_err() {
                failure.set(Error::new(
                    ErrorKind::Evaluation,
                    "a worker thread panicked",
                ));
            }
        }
        let mut tables = Vec::new();
        for thread in writer_threads {
            match thread.join() {
                Ok(Some(table)) => tables.push(table),
                Ok(None) => {}
                Err(_) => failure.set(Error::new(ErrorKind::Output, "a writer thread panicked")),
            }
        }
        match failure.take() {
            Some(error) => Err(error),
            None => Ok(tables),
        }
    })
}

/// How far the reader may run ahead of the writers.
struct Window<'a> {
    /// Per view: the blocks its writer has taken in order.
    written: &'a [AtomicU64],
    ahead: u64,
}

impl Window<'_> {
    /// Waits until block `seq` is within the window of every writer (or the run stops).
    fn wait_for(&self, seq: u64, failure: &Failure) {
        while !failure.stopped()
            && self
                .written
                .iter()
                .any(|w| seq >= w.load(Ordering::Acquire) + self.ahead)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// The reader's ends of the channels: blocks out, spare buffers back.
struct Channels<'a> {
    blocks: &'a SyncSender<Block>,
    spare: &'a Receiver<Vec<u8>>,
}

impl Channels<'_> {
    /// A buffer of at least `size` bytes: a spare one if a worker gave one back. Buffers
    /// keep their length, so they are zeroed once, when first allocated.
    fn buffer(&self, size: usize) -> Vec<u8> {
        let mut buffer = self.spare.try_recv().unwrap_or_default();
        if buffer.len() < size {
            buffer.resize(size, 0);
        }
        buffer
    }
}

/// Reads into `buffer[filled..]` until it is full or the input ends; returns the new fill
/// and whether the input ended.
fn fill(
    reader: &mut dyn Read,
    buffer: &mut [u8],
    mut filled: usize,
) -> std::io::Result<(usize, bool)> {
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok((filled, false))
}

/// Reads every input into blocks of whole lines.
fn read_inputs(
    inputs: impl IntoIterator<Item = Result<InputFile>>,
    wanted: &[&str],
    channels: &Channels<'_>,
    failure: &Failure,
    progress: &Progress,
    window: &Window<'_>,
) {
    let mut seq = 0u64;
    for input in inputs {
        if failure.stopped() {
            return;
        }
        let input = match input {
            Ok(input) => input,
            Err(error) => return failure.set(error),
        };
        if let Some(kind) = &input.resource_type {
            if !wanted.contains(&kind.as_str()) {
                continue;
            }
        }
        let name: Arc<str> = input.name().into();
        let read_bytes = Arc::new(AtomicU64::new(0));
        let count = {
            let total = Arc::clone(&read_bytes);
            move |n: u64| {
                total.fetch_add(n, Ordering::Relaxed);
            }
        };
        let mut reader = match input.open(count) {
            Ok(reader) => reader,
            Err(error) => return failure.set(error),
        };
        // The incomplete last line of the previous read, moved to the front of the next block.
        let mut carry: Vec<u8> = Vec::new();
        let mut line = 1u64;
        let mut last_reported = 0;
        loop {
            if failure.stopped() {
                return;
            }
            let mut data = channels.buffer(carry.len() + BLOCK);
            data[..carry.len()].copy_from_slice(&carry);
            let start = carry.len();
            carry.clear();
            let target = start + BLOCK;
            let (mut filled, end_of_input) = match fill(&mut reader, &mut data[..target], start) {
                Ok(result) => result,
                Err(error) => {
                    return failure.set(
                        Error::new(
                            ErrorKind::Input,
                            format!("cannot read {name} after line {line}"),
                        )
                        .with_source(error),
                    );
                }
            };
            if line == 1 && start == 0 && data[..filled].starts_with(UTF8_BOM) {
                // A byte order mark some Windows tools put first: not part of the JSON.
                data.copy_within(UTF8_BOM.len()..filled, 0);
                filled -= UTF8_BOM.len();
            }
            let now = read_bytes.load(Ordering::Relaxed);
            progress
                .bytes
                .fetch_add(now - last_reported, Ordering::Relaxed);
            last_reported = now;
            let mut len = filled;
            if !end_of_input {
                // Keep the incomplete last line for the next block.
                match memchr::memrchr(b'\n', &data[..filled]) {
                    Some(pos) => len = pos + 1,
                    None => {
                        // A line longer than a block: keep reading it.
                        carry.extend_from_slice(&data[..filled]);
                        continue;
                    }
                }
                carry.extend_from_slice(&data[len..filled]);
            }
            if len > 0 {
                let lines = memchr::memchr_iter(b'\n', &data[..len]).count() as u64;
                let block = Block {
                    seq,
                    input: Arc::clone(&name),
                    first_line: line,
                    data,
                    len,
                };
                window.wait_for(seq, failure);
                seq += 1;
                line += lines;
                if channels.blocks.send(block).is_err() {
                    return;
                }
            }
            if end_of_input {
                break;
            }
        }
        progress.files.fetch_add(1, Ordering::Relaxed);
    }
}

/// A worker's ends of the channels: blocks in, one batch sender per view, buffers back.
struct WorkerEnds<'a> {
    blocks: &'a Mutex<Receiver<Block>>,
    batches: &'a [SyncSender<(u64, Batch)>],
    spare: &'a SyncSender<Vec<u8>>,
}

/// A worker: takes blocks, evaluates every view on every line, sends one batch per view per
/// block (empty ones too, so writers can keep input order).
fn work(
    views: &[ViewDefinition],
    schemas: &[TableSchema],
    format: Format,
    ends: &WorkerEnds<'_>,
    failure: &Failure,
    progress: &Progress,
) {
    let WorkerEnds {
        blocks,
        batches,
        spare,
    } = *ends;
    let mut encoders: Vec<Encoder> = schemas.iter().map(|s| Encoder::new(format, s)).collect();
    let mut tape = Tape::new();
    loop {
        let block = {
            let receiver = blocks.lock().unwrap_or_else(PoisonError::into_inner);
            match receiver.recv() {
                Ok(block) => block,
                Err(_) => return,
            }
        };
        if failure.stopped() {
            return;
        }
        let (resources, rows) =
            match evaluate_block(views, schemas, &block, &mut tape, &mut encoders) {
                Ok(counts) => counts,
                Err(error) => return failure.set(error),
            };
        let seq = block.seq;
        progress.resources.fetch_add(resources, Ordering::Relaxed);
        progress.rows.fetch_add(rows, Ordering::Relaxed);
        // Give the buffer back for another block; when enough are spare, it is freed.
        let _ = spare.try_send(block.data);
        for (encoder, sender) in encoders.iter_mut().zip(batches) {
            let batch = match encoder.take() {
                Ok(batch) => batch,
                Err(error) => return failure.set(error),
            };
            if sender.send((seq, batch)).is_err() {
                return;
            }
        }
    }
}

fn evaluate_block(
    views: &[ViewDefinition],
    schemas: &[TableSchema],
    block: &Block,
    tape: &mut Tape,
    encoders: &mut [Encoder],
) -> Result<(u64, u64)> {
    let mut resources = 0;
    let mut produced = 0;
    // One check for the whole block (lines split at `\n` stay valid UTF-8); on failure, the
    // line is found for the message.
    let text = match std::str::from_utf8(&block.data[..block.len]) {
        Ok(text) => text,
        Err(error) => {
            let before = &block.data[..error.valid_up_to()];
            let line = block.first_line + before.iter().filter(|&&b| b == b'\n').count() as u64;
            return Err(Error::new(
                ErrorKind::Input,
                format!("{} line {line}: not UTF-8 text", block.input),
            )
            .with_source(error));
        }
    };
    for (number, line) in (block.first_line..).zip(lines(text)) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.bytes().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let at = || format!("{} line {number}", block.input);
        resources += 1;
        if let Some(kind) = leading_resource_type(line) {
            if !views.iter().any(|v| v.resource() == kind) {
                continue;
            }
        }
        let doc = tape
            .parse(line)
            .map_err(|e| Error::new(ErrorKind::Input, format!("{}: not JSON: {e}", at())))?;
        let root = doc.root();
        let kind = (doc.kind(root) == Kind::Object)
            .then(|| doc.get(root, "resourceType"))
            .flatten()
            .map(|t| doc.str_value(t))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Input,
                    format!("{}: not a FHIR resource (no resourceType)", at()),
                )
            })?;
        for ((view, encoder), schema) in views.iter().zip(encoders.iter_mut()).zip(schemas) {
            if view.resource() != kind {
                continue;
            }
            let mut rows = Vec::new();
            let described = || {
                let id = doc
                    .get(root, "id")
                    .map(|i| doc.str_value(i).into_owned())
                    .unwrap_or_default();
                format!(
                    "view `{}` on {} ({kind}/{id})",
                    view.name().unwrap_or("?"),
                    at()
                )
            };
            view.rows(doc, &mut rows).map_err(|e| {
                Error::new(
                    ErrorKind::Evaluation,
                    format!("{}: {}: {}", described(), e.element, e.message),
                )
            })?;
            for row in &rows {
                encoder.push(row, schema.names()).map_err(|e| {
                    Error::new(ErrorKind::Evaluation, format!("{}: {e}", described()))
                })?;
            }
            produced += rows.len() as u64;
        }
    }
    Ok((resources, produced))
}

/// The lines of a block, split at `\n` with the memchr crate's vectorised search (the
/// standard library's `split` is several times slower on lines of a few hundred bytes).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len()));
    ends.map(move |end| {
        // `\n` is ASCII, so both ends are character boundaries.
        let line = &text[start..end];
        start = end + 1;
        line
    })
}

/// A writer: appends batches in block order.
fn write_table(
    mut writer: TableWriter,
    batches: Receiver<(u64, Batch)>,
    failure: &Failure,
    done: &AtomicU64,
) -> Option<TableSummary> {
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Batch> = BTreeMap::new();
    for (seq, batch) in batches {
        waiting.insert(seq, batch);
        while let Some(batch) = waiting.remove(&next) {
            next += 1;
            done.store(next, Ordering::Release);
            if failure.stopped() {
                continue;
            }
            if batch.rows() == 0 {
                continue;
            }
            if let Err(error) = writer.write(batch) {
                failure.set(error);
            }
        }
    }
    if failure.stopped() {
        return None;
    }
    match writer.finish() {
        Ok(summary) => Some(summary),
        Err(error) => {
            failure.set(error);
            None
        }
    }
}
