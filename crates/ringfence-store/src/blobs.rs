//! The blob store for recordings, over `object_store`: a local folder by default, any
//! S3-compatible store for scale-out. Objects hold sealed bytes only; paths hold ids only.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("blob store: {0}")]
    Backend(String),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound,
            other => BlobError::Backend(other.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// The folder of a local store: written files are fsynced there before a put returns.
    local_root: Option<PathBuf>,
}

impl Blobs {
    /// A store in a local folder (created if missing).
    pub fn local(root: &FsPath) -> Result<Self, BlobError> {
        crate::private::create_dir(root)
            .map_err(|e| BlobError::Backend(format!("cannot create the recordings folder: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(root)?.with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            local_root: Some(root.to_owned()),
        })
    }

    /// Any object store (S3-compatible and others).
    pub fn remote(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local_root: None,
        }
    }

    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    pub async fn upload(&self, path: &str) -> Result<BlobUpload, BlobError> {
        let location = Path::parse(path).map_err(|e| BlobError::Backend(e.to_string()))?;
        let upload = self.store.put_multipart(&location).await?;
        Ok(BlobUpload {
            writer: WriteMultipart::new_with_chunk_size(upload, 8 << 20),
            local_file: self.local_root.as_ref().map(|r| (r.clone(), r.join(path))),
        })
    }

    /// Opens the bytes `range` of an object for reading, once: what the returned reader
    /// reads is the object as it was when this returned, whatever happens to its path
    /// afterwards. A missing object is `NotFound` here, never halfway through.
    ///
    /// A local folder opens the file: on Unix an open file stays readable after it is
    /// unlinked (its data lives until the last descriptor closes). Any other store starts one
    /// GET of the whole range here and reads its body: whether a deletion can cut a body in
    /// flight is that store's; S3-compatible stores serve a GET that has started to its end.
    pub async fn open_range(&self, path: &str, range: Range<u64>) -> Result<BlobRange, BlobError> {
        let location = Path::parse(path).map_err(|e| BlobError::Backend(e.to_string()))?;
        let len = range.end.saturating_sub(range.start);
        let got = self
            .store
            .get_opts(
                &location,
                GetOptions {
                    range: Some(range.clone().into()),
                    ..Default::default()
                },
            )
            .await?;
        if got.range != range {
            return Err(BlobError::Backend(format!(
                "the object holds {} bytes, fewer than the range asked for",
                got.meta.size
            )));
        }
        let source = match got.payload {
            GetResultPayload::File(file, _) => RangeSource::File {
                file: Arc::new(file),
                at: range.start,
            },
            GetResultPayload::Stream(body) => RangeSource::Stream {
                body,
                buffered: Vec::new(),
            },
        };
        Ok(BlobRange {
            source,
            remaining: len,
        })
    }

    /// Deletes an object; deleting a missing one succeeds.
    pub async fn delete(&self, path: &str) -> Result<(), BlobError> {
        let location = Path::parse(path).map_err(|e| BlobError::Backend(e.to_string()))?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The objects under `prefix`, with when each was last written (Unix milliseconds).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, i64)>, BlobError> {
        use futures::TryStreamExt;
        let location = Path::parse(prefix).map_err(|e| BlobError::Backend(e.to_string()))?;
        let objects: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&location)).try_collect().await?;
        Ok(objects
            .into_iter()
            .map(|m| (m.location.to_string(), m.last_modified.timestamp_millis()))
            .collect())
    }

    pub async fn exists(&self, path: &str) -> Result<bool, BlobError> {
        let location = Path::parse(path).map_err(|e| BlobError::Backend(e.to_string()))?;
        match self.store.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A byte range of one object, opened by [`Blobs::open_range`]; read front to back.
pub struct BlobRange {
    source: RangeSource,
    /// Bytes of the range not read yet.
    remaining: u64,
}

enum RangeSource {
    /// The open file and the offset of the next byte to read.
    File { file: Arc<std::fs::File>, at: u64 },
    /// The body of the one GET, and what arrived of it beyond the last read.
    Stream {
        body: BoxStream<'static, object_store::Result<Bytes>>,
        buffered: Vec<u8>,
    },
}

impl BlobRange {
    /// The next `n` bytes of the range (fewer only at its end).
    pub async fn read(&mut self, n: usize) -> Result<Bytes, BlobError> {
        let n = n.min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let bytes = match &mut self.source {
            RangeSource::File { file, at } => {
                let (file, from) = (file.clone(), *at);
                let bytes = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut out = vec![0u8; n];
                    file.read_exact_at(&mut out, from).map(|()| out)
                })
                .await
                .map_err(|e| BlobError::Backend(e.to_string()))?
                .map_err(|e| BlobError::Backend(format!("cannot read the object: {e}")))?;
                *at += n as u64;
                Bytes::from(bytes)
            }
            RangeSource::Stream { body, buffered } => {
                while buffered.len() < n {
                    match body.next().await {
                        Some(part) => buffered.extend_from_slice(&part?),
                        None => {
                            return Err(BlobError::Backend(
                                "the object's body ended before the range".into(),
                            ));
                        }
                    }
                }
                let rest = buffered.split_off(n);
                Bytes::from(std::mem::replace(buffered, rest))
            }
        };
        self.remaining -= n as u64;
        Ok(bytes)
    }
}

/// An object being written; nothing is visible under its path until `finish`.
pub struct BlobUpload {
    writer: WriteMultipart,
    /// For a local folder: the folder and the file being written in it.
    local_file: Option<(PathBuf, PathBuf)>,
}

impl BlobUpload {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.writer.wait_for_capacity(4).await?;
        self.writer.write(data);
        Ok(())
    }

    /// Completes the object and, for a local folder, makes it durable.
    pub async fn finish(self) -> Result<(), BlobError> {
        self.writer.finish().await?;
        if let Some((root, file)) = self.local_file {
            tokio::task::spawn_blocking(move || sync_file_and_parents(&root, &file))
                .await
                .map_err(|e| BlobError::Backend(e.to_string()))?
                .map_err(|e| {
                    BlobError::Backend(format!("cannot make the recording durable: {e}"))
                })?;
        }
        Ok(())
    }

    pub async fn abort(self) {
        let _ = self.writer.abort().await;
    }
}

/// Makes `file` durable and private (0600, its folders below `root` 0700: the object store
/// creates them with the process's umask).
fn sync_file_and_parents(root: &FsPath, file: &FsPath) -> std::io::Result<()> {
    crate::private::restrict_file(file)?;
    let mut dir = file.parent();
    while let Some(d) = dir.filter(|d| d.starts_with(root) && *d != root) {
        crate::private::restrict_dir(d)?;
        dir = d.parent();
    }
    std::fs::File::open(file)?.sync_all()?;
    // The new directory entries must reach the disk too.
    let mut dir = file.parent();
    for _ in 0..3 {
        let Some(d) = dir else { break };
        std::fs::File::open(d)?.sync_all()?;
        dir = d.parent();
    }
    Ok(())
}
