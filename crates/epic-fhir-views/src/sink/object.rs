//! Tables in an object store (S3, GCS, Azure) through the `object_store` crate.
//!
//! Each part is a multipart upload to `<prefix>/_temporary/<run>/<table>/<file>`, fed from
//! the writer thread through a small bounded channel (so memory stays bounded whatever the
//! part's size). Publishing copies each part to `<prefix>/<table>/<file>`, deletes older
//! parts of the same tables, then the temporary objects.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::{Part, PartWriter, Storage, is_part, run_id};
use crate::error::{Error, ErrorKind, Result};

/// The size of each uploaded chunk (S3 needs at least 5 MiB for all but the last).
const CHUNK: usize = 8 << 20;
/// Chunks queued per part before the writer waits for the upload.
const QUEUED_CHUNKS: usize = 2;
/// Chunks uploaded at once per part.
const CONCURRENT_UPLOADS: usize = 2;

/// An object store and a prefix in it.
pub(crate) struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    temp: Path,
    handle: Handle,
    /// The URL as given, without credentials or query, for messages.
    label: String,
}

fn storage_error(action: String, error: object_store::Error) -> Error {
    Error::new(ErrorKind::Storage, action).with_source(error)
}

impl ObjectStorage {
    /// Connects to the store of `url` with credentials from the environment. S3 also reads
    /// `AWS_ENDPOINT_URL` (an S3-compatible endpoint) and `AWS_ALLOW_HTTP=true`.
    pub(crate) fn new(
        url: &url::Url,
        options: &[(String, String)],
        handle: Handle,
    ) -> Result<Self> {
        let text = url.as_str();
        let bad_option = |key: &str, e: object_store::Error| {
            storage_error(format!("`{key}` is not an option of {}", url.scheme()), e)
        };
        // A builder with the URL and the caller's options, built: the same steps for every
        // store (their builders share no trait).
        macro_rules! build_store {
            ($builder:expr) => {{
                let mut builder = $builder.with_url(text);
                for (key, value) in options {
                    builder =
                        builder.with_config(key.parse().map_err(|e| bad_option(key, e))?, value);
                }
                Arc::new(
                    builder
                        .build()
                        .map_err(|e| storage_error(format!("cannot use {text}"), e))?,
                )
            }};
        }
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(text);
                if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                    builder = builder.with_endpoint(endpoint);
                }
                for (key, value) in options {
                    builder =
                        builder.with_config(key.parse().map_err(|e| bad_option(key, e))?, value);
                }
                let custom_endpoint = std::env::var("AWS_ENDPOINT_URL").is_ok()
                    || std::env::var("AWS_ENDPOINT").is_ok()
                    || options.iter().any(|(key, _)| key.contains("endpoint"));
                if custom_endpoint {
                    // S3-compatible servers (MinIO, moto, Ceph) are addressed by path.
                    builder = builder.with_virtual_hosted_style_request(false);
                }
                Arc::new(
                    builder
                        .build()
                        .map_err(|e| storage_error(format!("cannot use {text}"), e))?,
                )
            }
            "gs" => build_store!(object_store::gcp::GoogleCloudStorageBuilder::from_env()),
            _ => build_store!(object_store::azure::MicrosoftAzureBuilder::from_env()),
        };
        let prefix = Path::from_url_path(url.path()).map_err(|e| {
            Error::new(ErrorKind::Storage, format!("{text}: the path is not valid")).with_source(e)
        })?;
        let temp = prefix.clone().join("_temporary").join(run_id());
        let mut label = url.clone();
        label.set_query(None);
        let _ = label.set_password(None);
        let _ = label.set_username("");
        Ok(ObjectStorage {
            store,
            prefix,
            temp,
            handle,
            label: label.to_string().trim_end_matches('/').to_owned(),
        })
    }

    fn temp_path(&self, part: &Part) -> Path {
        join(&self.temp, &part.table).join(part.file.as_str())
    }

    fn final_path(&self, part: &Part) -> Path {
        join(&self.prefix, &part.table).join(part.file.as_str())
    }
}

fn join(base: &Path, relative: &str) -> Path {
    relative
        .split('/')
        .filter(|s| !s.is_empty())
        .fold(base.clone(), |path, segment| path.join(segment))
}

struct ObjectPart {
    buffer: Vec<u8>,
    sender: Option<mpsc::Sender<Bytes>>,
    task: Option<tokio::task::JoinHandle<std::result::Result<(), object_store::Error>>>,
    handle: Handle,
    location: String,
}

impl ObjectPart {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the part is closed"))?;
        sender
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other(format!("the upload of {} stopped", self.location)))
    }
}

impl Write for ObjectPart {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl PartWriter for ObjectPart {
    fn finish(mut self: Box<Self>) -> Result<()> {
        let location = self.location.clone();
        let write_error = |e: std::io::Error| {
            Error::new(ErrorKind::Storage, format!("cannot upload {location}")).with_source(e)
        };
        if !self.buffer.is_empty() {
            self.send().map_err(write_error)?;
        }
        self.sender = None;
        let task = self
            .task
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Storage, "the part was finished twice"))?;
        match self.handle.block_on(task) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(storage_error(format!("cannot upload {location}"), e)),
            Err(e) => Err(Error::new(
                ErrorKind::Storage,
                format!("the upload of {location} stopped"),
            )
            .with_source(e)),
        }
    }
}

impl Drop for ObjectPart {
    fn drop(&mut self) {
        // A part dropped without `finish` (a failed run): close its upload so no incomplete
        // multipart upload lingers in the bucket; the run's abort then deletes the object,
        // which is under the temporary prefix.
        self.sender = None;
        if let Some(task) = self.task.take() {
            if Handle::try_current().is_ok() {
                task.abort();
            } else {
                let _ = self.handle.block_on(task);
            }
        }
    }
}

impl Storage for ObjectStorage {
    fn create(&self, part: &Part) -> Result<Box<dyn PartWriter>> {
        let path = self.temp_path(part);
        let (sender, mut receiver) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
        let store = Arc::clone(&self.store);
        let task = self.handle.spawn(async move {
            let upload = store.put_multipart(&path).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
            while let Some(chunk) = receiver.recv().await {
                if let Err(e) = writer.wait_for_capacity(CONCURRENT_UPLOADS).await {
                    writer.abort().await.ok();
                    return Err(e);
                }
                writer.put(chunk);
            }
            writer.finish().await.map(|_| ())
        });
        Ok(Box::new(ObjectPart {
            buffer: Vec::with_capacity(CHUNK),
            sender: Some(sender),
            task: Some(task),
            handle: self.handle.clone(),
            location: self.location(part),
        }))
    }

    fn publish(&self, parts: &[Part], extension: &str) -> Result<()> {
        self.handle.block_on(async {
            let mut tables: Vec<&str> = parts.iter().map(|p| p.table.as_str()).collect();
            tables.sort_unstable();
            tables.dedup();
            for part in parts {
                let (from, to) = (self.temp_path(part), self.final_path(part));
                self.store.copy(&from, &to).await.map_err(|e| {
                    storage_error(format!("cannot publish {}", self.location(part)), e)
                })?;
            }
            for table in tables {
                let dir = join(&self.prefix, table);
                let listing = self
                    .store
                    .list_with_delimiter(Some(&dir))
                    .await
                    .map_err(|e| storage_error(format!("cannot list {}/{table}", self.label), e))?;
                for object in listing.objects {
                    let name = object.location.filename().unwrap_or_default();
                    let new = parts.iter().any(|p| p.table == table && p.file == name);
                    if is_part(name, extension) && !new {
                        self.store.delete(&object.location).await.map_err(|e| {
                            storage_error(
                                format!("cannot remove the old part {}", object.location),
                                e,
                            )
                        })?;
                    }
                }
            }
            self.remove_temporary().await;
            Ok(())
        })
    }

    fn abort(&self) {
        self.handle.block_on(self.remove_temporary());
    }

    fn location(&self, part: &Part) -> String {
        format!("{}/{}/{}", self.label, part.table, part.file)
    }
}

impl ObjectStorage {
    async fn remove_temporary(&self) {
        let mut listing = self.store.list(Some(&self.temp));
        let mut leftovers = Vec::new();
        while let Some(Ok(object)) = listing.next().await {
            leftovers.push(object.location);
        }
        for location in leftovers {
            if let Err(error) = self.store.delete(&location).await {
                tracing::warn!(%location, %error, "cannot remove a temporary object");
            }
        }
    }
}
