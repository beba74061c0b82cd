//! The blob store for recordings, over `object_store`: a local folder by default, any
//! S3-compatible store for scale-out. Objects hold sealed bytes only; paths hold ids only.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

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

    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, BlobError> {
        let location = Path::parse(path).map_err(|e| BlobError::Backend(e.to_string()))?;
        Ok(self.store.get_range(&location, range).await?)
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
