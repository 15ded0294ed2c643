//! Parts, manifests and leases in an S3-compatible bucket, through `object_store` (see "Object
//! storage" in docs/ARCHITECTURE.md).
//!
//! Every object more than one process may write is written with a conditional put: `Create`
//! when the writer read no object, `Update` on the ETag it read otherwise. A writer that loses
//! gets [`Committed::Lost`] and reads again.

mod lease;
mod sync;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::RetryConfig;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use lease::Lease;
pub use sync::{Backlog, Mirror, Synced, Uploader};

use crate::error::{Error, Result};
use crate::manifest::PartMeta;
use crate::model::Signal;

/// Bytes a file is uploaded by: a larger file goes up as a multipart upload of such pieces.
const UPLOAD_PIECE_BYTES: usize = 8 << 20;

/// `[store.object_store]`: the S3-compatible bucket parts and manifests live in (see "Object
/// storage" in docs/ARCHITECTURE.md). Credentials come from the usual `AWS_*` variables.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// `s3://<bucket>[/<prefix>]`: where the parts and manifests live.
    pub url: String,
    /// The S3 endpoint of an S3-compatible server (`http://127.0.0.1:9000`); AWS's if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket's region; `AWS_REGION` or `AWS_DEFAULT_REGION` if unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Allow an `http://` endpoint (a server on the local network).
    pub allow_http: bool,
    /// Any other setting of the S3 client, by its `object_store` name (`aws_access_key_id`,
    /// `aws_session_token`, `aws_virtual_hosted_style_request`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// This ingester's name in the bucket (letters, digits, `.`, `_`, `-`), one per data
    /// directory. If unset, a random one is made. Either is kept in the data directory
    /// (`ingester_id`) with a token that only this directory writes under that name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingester_id: Option<String>,
    /// How often a querier reads the bucket's manifests for new parts, in seconds.
    pub refresh_secs: u64,
    /// Bytes of parts an ingester keeps for upload while the object store cannot be reached;
    /// past them it answers 503 / UNAVAILABLE (with a retry delay) until they are up.
    pub max_pending_bytes: u64,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: None,
            region: None,
            allow_http: false,
            options: BTreeMap::new(),
            ingester_id: None,
            refresh_secs: 5,
            max_pending_bytes: 4 << 30,
        }
    }
}

/// Who an ingester is in the bucket: its id, and the token of the data directory that owns the
/// id (written into its manifest, so that no other directory can commit under that id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingester {
    pub id: String,
    pub token: String,
}

/// This data directory's ingester: kept in `root/ingester_id` (id, then token), made the first
/// time from the configured id or a random one. A configured id other than the one kept is
/// refused: the directory's parts and WAL belong to the id it has.
pub fn ingester(root: &Path, configured: Option<&str>) -> Result<Ingester> {
    let path = root.join("ingester_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut lines = text.lines();
            let (id, token) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
            sync::check_owner(id)?;
            if token.is_empty() {
                return Err(Error::Corrupt(format!("{} holds no token", path.display())));
            }
            if let Some(configured) = configured
                && configured != id
            {
                return Err(Error::Config(format!(
                    "ingester_id is {configured:?} but data directory {} belongs to ingester \
                     {id:?}: use that id, or another data directory",
                    root.display()
                )));
            }
            return Ok(Ingester {
                id: id.to_owned(),
                token: token.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read", &path)(e)),
    }
    let id = match configured {
        Some(id) => {
            sync::check_owner(id)?;
            id.to_owned()
        }
        None => format!("{:016x}", rand::random::<u64>()),
    };
    let token = format!("{:032x}", rand::random::<u128>());
    let partial = root.join("ingester_id.tmp");
    std::fs::write(&partial, format!("{id}\n{token}\n")).map_err(Error::io("write", &partial))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("sync", &partial))?;
    std::fs::rename(&partial, &path).map_err(Error::io("rename", &partial))?;
    crate::manifest::sync_dir(root)?;
    Ok(Ingester { id, token })
}

/// A bucket and the prefix under which Spyglass keeps its objects.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

/// The version of an object as read: what a conditional replacement is conditional on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(UpdateVersion);

/// What came of a conditional put.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// The object is written; this is its new version.
    Done(Version),
    /// Another writer changed the object first (or created it, when none was expected).
    Lost,
}

impl Bucket {
    /// The bucket `config.url` names, with `AWS_*` variables for what the config leaves out.
    pub fn open(config: &ObjectStoreConfig) -> Result<Self> {
        if config.refresh_secs == 0 {
            return Err(Error::Config(
                "object_store refresh_secs must be at least 1".into(),
            ));
        }
        let rest = config.url.strip_prefix("s3://").ok_or_else(|| {
            Error::Config(format!(
                "object store url {:?} must start with s3://",
                config.url
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Config(format!(
                "object store url {:?} names no bucket",
                config.url
            )));
        }
        // A request the store does not answer is given up within about ten seconds (the
        // uploader tries again later), not the client's default three minutes.
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(config.allow_http)
            .with_retry(retry);
        for (key, value) in &config.options {
            let key = AmazonS3ConfigKey::from_str(key).map_err(|_| {
                Error::Config(format!("object store option {key:?} is not an S3 setting"))
            })?;
            builder = builder.with_config(key, value);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        let store = builder
            .build()
            .map_err(|e| Error::Config(format!("object store {}: {e}", config.url)))?;
        Ok(Self::with_store(Arc::new(store), prefix))
    }

    /// A bucket over any `object_store` backend.
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    fn key(&self, name: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(name)
        } else {
            Key::from(format!("{}/{name}", self.prefix))
        }
    }

    /// The JSON object `name` and its version, or `None` when there is none.
    pub async fn get_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<(T, Version)>> {
        let result = match self.store.get(&self.key(name)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(bucket_err("read", name, source)),
        };
        let version = Version(UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        });
        let bytes = result
            .bytes()
            .await
            .map_err(|source| bucket_err("read", name, source))?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("object {name} is not what was written: {e}")))?;
        Ok(Some((value, version)))
    }

    /// Writes `value` as the JSON object `name` if it is still at `read` (`None`: if there is
    /// no such object).
    pub async fn put_json<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        read: Option<&Version>,
    ) -> Result<Committed> {
        let body = serde_json::to_vec(value).map_err(|e| Error::Task(e.to_string()))?;
        let mode = match read {
            None => PutMode::Create,
            Some(version) => PutMode::Update(version.0.clone()),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match (self.store)
            .put_opts(&self.key(name), PutPayload::from(body), opts)
            .await
        {
            Ok(put) => Ok(Committed::Done(Version(UpdateVersion {
                e_tag: put.e_tag,
                version: put.version,
            }))),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(Committed::Lost),
            Err(source) => Err(bucket_err("write", name, source)),
        }
    }

    /// Uploads the local file `from` as `name`: in one request up to [`UPLOAD_PIECE_BYTES`],
    /// else as a multipart upload of such pieces (two in flight), so the file is never in
    /// memory whole. A failed multipart upload is aborted.
    pub async fn upload_file(&self, from: &Path, name: &str) -> Result<u64> {
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(Error::io("open", from))?;
        let size = (file.metadata().await)
            .map_err(Error::io("read", from))?
            .len();
        let key = self.key(name);
        if size <= UPLOAD_PIECE_BYTES as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            (file.read_to_end(&mut bytes).await).map_err(Error::io("read", from))?;
            (self.store.put(&key, PutPayload::from(bytes)).await)
                .map_err(|source| bucket_err("upload", name, source))?;
            return Ok(size);
        }
        let upload = (self.store.put_multipart(&key).await)
            .map_err(|source| bucket_err("upload", name, source))?;
        let mut write = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PIECE_BYTES);
        let mut total = 0u64;
        let failed = loop {
            let mut piece = Vec::with_capacity(UPLOAD_PIECE_BYTES);
            let read = (&mut file)
                .take(UPLOAD_PIECE_BYTES as u64)
                .read_to_end(&mut piece)
                .await;
            match read {
                Ok(0) => break None,
                Ok(read) => total += read as u64,
                Err(e) => break Some(Error::io("read", from)(e)),
            }
            if let Err(source) = write.wait_for_capacity(2).await {
                break Some(bucket_err("upload", name, source));
            }
            write.put(Bytes::from(piece));
        };
        if let Some(error) = failed {
            let _ = write.abort().await;
            return Err(error);
        }
        (write.finish().await).map_err(|source| bucket_err("upload", name, source))?;
        Ok(total)
    }

    /// Downloads `name` to the local file `to` (written beside it, then renamed), returning its
    /// size.
    pub async fn download_file(&self, name: &str, to: &Path) -> Result<u64> {
        let result = (self.store.get(&self.key(name)).await)
            .map_err(|source| bucket_err("download", name, source))?;
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(Error::io("create", dir))?;
        }
        let partial = to.with_extension("download");
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(Error::io("create", &partial))?;
        let mut stream = result.into_stream();
        let mut total = 0u64;
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|source| bucket_err("download", name, source))?;
            total += piece.len() as u64;
            file.write_all(&piece)
                .await
                .map_err(Error::io("write", &partial))?;
        }
        file.sync_all().await.map_err(Error::io("sync", &partial))?;
        tokio::fs::rename(&partial, to)
            .await
            .map_err(Error::io("rename", &partial))?;
        Ok(total)
    }

    /// Deletes `name`; deleting what is not there is not an error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.key(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(bucket_err("delete", name, source)),
        }
    }

    /// Deletes a part's objects: its Parquet file and its index's files.
    pub async fn delete_part(&self, part: &BucketPart) -> Result<()> {
        self.delete(&part_key(&part.owner, &part.meta.file)).await?;
        if let Some(index) = &part.meta.index {
            for name in &part.index_files {
                self.delete(&part_key(&part.owner, &format!("{index}/{name}")))
                    .await?;
            }
        }
        Ok(())
    }

    /// The names of the objects under `prefix` (relative to the bucket's prefix), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut listed = self.store.list(Some(&self.key(prefix)));
        let mut names = Vec::new();
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|source| bucket_err("list", prefix, source))?;
            let name = meta.location.as_ref();
            names.push(name.strip_prefix(&strip).unwrap_or(name).to_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Uploads a part's files (its Parquet file and, for spans, every file of its trace index)
    /// from the data directory `root` under `owner`'s prefix. Returns the part's entry for the
    /// owner's manifest, its index files listed. Uploading a part again writes the same keys.
    pub async fn upload_part(
        &self,
        owner: &str,
        part: &PartMeta,
        root: &Path,
    ) -> Result<BucketPart> {
        self.upload_file(&root.join(&part.file), &part_key(owner, &part.file))
            .await?;
        let mut index_files = Vec::new();
        if let Some(index) = &part.index {
            let dir = root.join(index);
            let mut entries = tokio::fs::read_dir(&dir)
                .await
                .map_err(Error::io("list", &dir))?;
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(Error::io("list", &dir))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                // tantivy's lock files are the writer's, not the index's.
                if name.ends_with(".lock") {
                    continue;
                }
                index_files.push(name);
            }
            index_files.sort();
            for name in &index_files {
                let file = format!("{index}/{name}");
                self.upload_file(&root.join(&file), &part_key(owner, &file))
                    .await?;
            }
        }
        Ok(BucketPart {
            owner: owner.to_owned(),
            meta: part.clone(),
            index_files,
        })
    }

    /// Downloads a part's files: its Parquet file to `file`, its index's files into `index`.
    pub async fn download_part(
        &self,
        part: &BucketPart,
        file: &Path,
        index: Option<&Path>,
    ) -> Result<u64> {
        let mut total = (self.download_file(&part_key(&part.owner, &part.meta.file), file)).await?;
        if let (Some(from), Some(to)) = (&part.meta.index, index) {
            for name in &part.index_files {
                let key = part_key(&part.owner, &format!("{from}/{name}"));
                total += self.download_file(&key, &to.join(name)).await?;
            }
        }
        Ok(total)
    }

    /// The manifest of ingester `id`, if it has one.
    pub async fn read_ingester_manifest(&self, id: &str) -> Result<Option<OwnerManifest>> {
        let manifest = self
            .get_json::<OwnerManifest>(&ingester_manifest(id))
            .await?;
        Ok(manifest.map(|(manifest, _)| manifest))
    }

    /// The ids of the ingesters that have written to the bucket.
    pub async fn ingesters(&self) -> Result<Vec<String>> {
        let listed = (self.store.list_with_delimiter(Some(&self.key("ingesters"))))
            .await
            .map_err(|source| bucket_err("list", "ingesters/", source))?;
        let mut ids: Vec<String> = (listed.common_prefixes.iter())
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The parts readers see: every ingester's listed parts and the shared ones, less those
    /// retired.
    pub async fn visible_parts(&self) -> Result<Vec<BucketPart>> {
        let shared = self.get_json::<SharedManifest>(SHARED_MANIFEST).await?;
        let shared = shared.map(|(m, _)| m).unwrap_or_default();
        let retired: HashSet<&PartRef> = shared.retired.iter().collect();
        let mut parts = Vec::new();
        for ingester in self.ingesters().await? {
            let name = ingester_manifest(&ingester);
            if let Some((manifest, _)) = self.get_json::<OwnerManifest>(&name).await? {
                parts.extend(manifest.parts);
            }
        }
        parts.extend(shared.parts.iter().cloned());
        parts.retain(|p| !retired.contains(&p.key()));
        Ok(parts)
    }
}

/// The object that lists what an owner (an ingester) has uploaded.
pub fn ingester_manifest(ingester: &str) -> String {
    format!("ingesters/{ingester}/manifest.json")
}

const SHARED_MANIFEST: &str = "shared/manifest.json";
const FORMAT_VERSION: u32 = 1;

/// An ingester's manifest in the bucket: the parts it has uploaded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct OwnerManifest {
    pub format_version: u32,
    /// The token of the data directory that writes this manifest (see [`Ingester`]).
    #[serde(default)]
    pub token: String,
    pub parts: Vec<BucketPart>,
}

impl OwnerManifest {
    /// Rows of `signal` in the listed parts.
    pub fn rows(&self, signal: Signal) -> u64 {
        (self.parts.iter())
            .filter(|p| p.meta.signal == signal)
            .map(|p| p.meta.rows)
            .sum()
    }
}

/// `shared/manifest.json`: the compactor's parts, and the parts no reader may see any more.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SharedManifest {
    pub format_version: u32,
    pub next_part_id: u64,
    pub parts: Vec<BucketPart>,
    pub retired: Vec<PartRef>,
}

/// A part's name in the bucket: its owner and the owner's id for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct PartRef {
    pub owner: String,
    pub id: u64,
}

/// A part in the bucket: its owner (an ingester's id, or `shared`), its manifest entry and the
/// files of its trace index.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct BucketPart {
    pub owner: String,
    #[serde(flatten)]
    pub meta: PartMeta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index_files: Vec<String>,
}

impl BucketPart {
    pub fn key(&self) -> PartRef {
        PartRef {
            owner: self.owner.clone(),
            id: self.meta.id,
        }
    }
}

/// The key of a part's file (`parts/...`, as the manifest names it) under `owner`'s prefix.
fn part_key(owner: &str, file: &str) -> String {
    if owner == "shared" {
        format!("shared/{file}")
    } else {
        format!("ingesters/{owner}/{file}")
    }
}

fn bucket_err(action: &'static str, name: &str, source: object_store::Error) -> Error {
    Error::Bucket {
        action,
        key: name.to_owned(),
        source: Box::new(source),
    }
}
