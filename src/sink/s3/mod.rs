//! A repository in an S3 bucket (AWS or any S3-compatible server), through
//! the official `aws-sdk-s3`.
//!
//! The [`Sink`] trait is synchronous: each call runs its request on a small
//! tokio runtime owned by the sink (`block_on` from the caller's thread), so
//! many repository threads can have requests in flight at once. The SDK's
//! own retries are off: [`crate::sink::open`] stacks the one retry layer.
//!
//! What servers commonly lack is not relied on: the SDK's newest default
//! checksum headers are off (every upload carries Content-MD5, which S3 and
//! its clones verify; every download is verified against its blake3 name by
//! the repository), and a conditional write (`If-None-Match: *`) is used only
//! when the sink is told the server has it (`conditional_writes`); without
//! it, a write first asks whether the name exists.

mod errors;

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use aws_sdk_s3::Client;
use base64::Engine as _;
use md5::Digest as _;

pub use self::errors::Failure;
use super::location::S3Url;
use super::{check_name, Bytes, Capabilities, ObjectInfo, ObjectKind, Sink, SinkError};

/// Settings of an S3 sink, from a profile's `[[sink]]` or `-o s3.KEY=VALUE`.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// The region; else the usual AWS configuration's, else `us-east-1`.
    pub region: Option<String>,
    /// `bucket` in the path rather than the host name: the default for a
    /// server other than AWS.
    pub path_style: Option<bool>,
    pub storage_class: Option<String>,
    /// Requests at once (uploads of packs, reads of a restore).
    pub connections: usize,
    /// Whether the server honours `If-None-Match: *` on PUT (AWS does since
    /// 2024; many others do not). Default: yes on AWS, no elsewhere.
    pub conditional_writes: Option<bool>,
    /// Objects at least this large go up in parts of `part_size`.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// How long a transient failure is retried (see `crate::sink::retry`).
    pub retry_time: Duration,
    /// A request that makes no progress for this long is a failure.
    pub timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            region: None,
            path_style: None,
            storage_class: None,
            connections: 4,
            conditional_writes: None,
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            retry_time: Duration::from_secs(120),
            timeout: Duration::from_secs(60),
        }
    }
}

/// S3's smallest part but the last.
const MIN_PART: u64 = 5 << 20;

pub struct S3Sink {
    url: S3Url,
    client: Client,
    runtime: tokio::runtime::Runtime,
    options: S3Options,
    conditional: bool,
}

impl S3Sink {
    /// A sink for `url`; no request is made yet.
    pub fn new(url: S3Url, options: S3Options) -> Result<S3Sink, SinkError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|source| SinkError::Io {
                op: "start the S3 client for",
                location: url.to_string(),
                source,
            })?;
        let client = runtime.block_on(client(&url, &options));
        let conditional = options.conditional_writes.unwrap_or(url.endpoint.is_none());
        Ok(S3Sink {
            url,
            client,
            runtime,
            options,
            conditional,
        })
    }

    fn key(&self, kind: ObjectKind, name: &str) -> String {
        self.url.key(&kind.key(name))
    }

    fn fail<E>(
        &self,
        op: &'static str,
        kind: ObjectKind,
        name: &str,
        err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> SinkError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let failure = Failure::from_sdk(err);
        tracing::debug!("S3 {op} {kind} {name}: {failure:?}");
        failure.into_sink_error(op, kind, name, &self.url.bucket)
    }

    /// Whether the bucket exists; creates it when `create` is set and the
    /// credentials allow it.
    pub fn ensure_bucket(&self, create: bool) -> Result<(), SinkError> {
        let bucket = &self.url.bucket;
        let location = || format!("bucket {bucket} at {}", self.url);
        self.runtime.block_on(async {
            let head = self.client.head_bucket().bucket(bucket).send().await;
            let failure = match head {
                Ok(_) => return Ok(()),
                Err(e) => Failure::from_sdk(&e),
            };
            if failure.status == Some(404) && !create {
                // No bucket, so no repository: the caller says how to make one.
                return Err(SinkError::NotFound {
                    kind: ObjectKind::Config,
                    name: super::CONFIG_NAME.to_string(),
                });
            }
            if failure.status != Some(404) {
                return Err(SinkError::Remote {
                    op: "open",
                    location: location(),
                    message: failure.explain(bucket),
                    transient: failure.transient,
                });
            }
            let mut req = self.client.create_bucket().bucket(bucket);
            if let Some(region) = self.client.config().region().map(|r| r.as_ref().to_string()) {
                if region != "us-east-1" && self.url.endpoint.is_none() {
                    req = req.create_bucket_configuration(
                        aws_sdk_s3::types::CreateBucketConfiguration::builder()
                            .location_constraint(region.as_str().into())
                            .build(),
                    );
                }
            }
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let f = Failure::from_sdk(&e);
                    if matches!(f.code.as_deref(), Some("BucketAlreadyOwnedByYou")) {
                        return Ok(());
                    }
                    Err(SinkError::Remote {
                        op: "create",
                        location: location(),
                        message: f.explain(bucket),
                        transient: f.transient,
                    })
                }
            }
        })
    }

    async fn exists(&self, kind: ObjectKind, name: &str) -> Result<bool, SinkError> {
        let key = self.key(kind, name);
        match self
            .client
            .head_object()
            .bucket(&self.url.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match self.fail("read", kind, name, &e) {
                SinkError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn put(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<(), SinkError> {
        let key = self.key(kind, name);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.url.bucket)
            .key(&key)
            .content_length(data.len() as i64)
            .content_md5(md5_base64(&data))
            .body(ByteStream::from(data));
        if self.conditional {
            req = req.if_none_match("*");
        }
        if let Some(class) = &self.options.storage_class {
            req = req.storage_class(StorageClass::from(class.as_str()));
        }
        // The body is not hashed again for the signature: Content-MD5 (which
        // the server checks) and the object's blake3 name already guard it,
        // and a SHA-256 of every pack costs as much CPU as its MD5 and upload.
        req.customize()
            .disable_payload_signing()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("write", kind, name, &e))
    }

    async fn put_multipart(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<(), SinkError> {
        let key = self.key(kind, name);
        let bucket = &self.url.bucket;
        let mut create = self.client.create_multipart_upload().bucket(bucket).key(&key);
        if let Some(class) = &self.options.storage_class {
            create = create.storage_class(StorageClass::from(class.as_str()));
        }
        let upload = create
            .send()
            .await
            .map_err(|e| self.fail("write", kind, name, &e))?;
        let Some(upload_id) = upload.upload_id().map(str::to_string) else {
            return Err(SinkError::Remote {
                op: "write",
                location: format!("{kind} {name} in bucket {bucket}"),
                message: "the server started a multipart upload without an id".into(),
                transient: false,
            });
        };
        let result = self.send_parts(kind, name, &key, &upload_id, data).await;
        if result.is_err() {
            // Parts of an abandoned upload cost storage until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn send_parts(
        &self,
        kind: ObjectKind,
        name: &str,
        key: &str,
        upload_id: &str,
        data: Bytes,
    ) -> Result<(), SinkError> {
        let bucket = &self.url.bucket;
        let part_size = self.options.part_size.max(MIN_PART) as usize;
        let mut parts = Vec::new();
        for (i, start) in (0..data.len()).step_by(part_size).enumerate() {
            let part = data.slice(start..(start + part_size).min(data.len()));
            let number = i as i32 + 1;
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(part.len() as i64)
                .content_md5(md5_base64(&part))
                .body(ByteStream::from(part))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| self.fail("write", kind, name, &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
        }
        let mut complete = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        if self.conditional {
            complete = complete.if_none_match("*");
        }
        complete
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("write", kind, name, &e))
    }

    async fn get(
        &self,
        kind: ObjectKind,
        name: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>, SinkError> {
        let key = self.key(kind, name);
        let mut req = self.client.get_object().bucket(&self.url.bucket).key(&key);
        if let Some((offset, length)) = range {
            if length == 0 {
                return Ok(Vec::new());
            }
            let last = offset.saturating_add(length - 1);
            req = req.range(format!("bytes={offset}-{last}"));
        }
        let out = match req.send().await {
            Ok(out) => out,
            // A range that starts past the end: nothing there to read.
            Err(e) if range.is_some() && Failure::from_sdk(&e).status == Some(416) => return Ok(Vec::new()),
            Err(e) => return Err(self.fail("read", kind, name, &e)),
        };
        let expected = out.content_length().and_then(|n| u64::try_from(n).ok());
        let body = out.body.collect().await.map_err(|e| SinkError::Remote {
            op: "read",
            location: format!("{kind} {name} in bucket {}", self.url.bucket),
            message: format!("the download broke off: {e}"),
            transient: true,
        })?;
        let bytes = body.into_bytes();
        if expected.is_some_and(|n| n != bytes.len() as u64) {
            return Err(SinkError::Remote {
                op: "read",
                location: format!("{kind} {name} in bucket {}", self.url.bucket),
                message: format!(
                    "the download ended after {} of {} bytes",
                    bytes.len(),
                    expected.unwrap_or(0)
                ),
                transient: true,
            });
        }
        Ok(bytes.to_vec())
    }
}

/// The SDK client: the standard credential chain (environment, shared
/// files, AWS_PROFILE, SSO, web identity, instance metadata), the region,
/// the endpoint, and no SDK retries or new-style checksums.
async fn client(url: &S3Url, options: &S3Options) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10).min(options.timeout))
                .read_timeout(options.timeout)
                .build(),
        )
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if shared.region().is_none() {
        config = config.region(Region::new("us-east-1"));
    }
    if let Some(endpoint) = &url.endpoint {
        config = config.endpoint_url(endpoint);
    }
    config = config.force_path_style(options.path_style.unwrap_or(url.endpoint.is_some()));
    Client::from_conf(config.build())
}

fn md5_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

impl Sink for S3Sink {
    fn location(&self) -> String {
        self.url.to_string()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_write: true,
            exclusive_create: self.conditional,
            needs_retries: true,
            concurrency: self.options.connections.max(1),
        }
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ObjectInfo>, SinkError> {
        let dir = match kind {
            ObjectKind::Config => String::new(),
            other => format!("{}/", other.dir()),
        };
        let prefix = self.url.key(&dir);
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.url.bucket)
                    .prefix(&prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| self.fail("list", kind, "objects", &e))?;
                for object in page.contents() {
                    let Some(key) = object.key() else { continue };
                    let Some(name) = object_name(kind, key.strip_prefix(&prefix).unwrap_or("")) else {
                        continue;
                    };
                    out.push(ObjectInfo {
                        name,
                        size: object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    });
                }
                token = page.next_continuation_token().map(str::to_string);
                if page.is_truncated() != Some(true) || token.is_none() {
                    return Ok(out);
                }
            }
        })
    }

    fn read(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>, SinkError> {
        check_name(kind, name)?;
        self.runtime.block_on(self.get(kind, name, None))
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, SinkError> {
        check_name(kind, name)?;
        self.runtime
            .block_on(self.get(kind, name, Some((offset, length))))
    }

    fn write(&self, kind: ObjectKind, name: &str, data: Bytes) -> Result<u64, SinkError> {
        check_name(kind, name)?;
        let size = data.len() as u64;
        self.runtime.block_on(async {
            if !self.conditional && self.exists(kind, name).await? {
                return Err(SinkError::AlreadyExists {
                    kind,
                    name: name.to_string(),
                });
            }
            if size >= self.options.multipart_threshold.max(MIN_PART) {
                self.put_multipart(kind, name, data).await
            } else {
                self.put(kind, name, data).await
            }
        })?;
        Ok(size)
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> Result<(), SinkError> {
        check_name(kind, name)?;
        self.runtime.block_on(async {
            // S3 says yes to deleting what is not there: ask first.
            if !self.exists(kind, name).await? {
                return Err(SinkError::NotFound {
                    kind,
                    name: name.to_string(),
                });
            }
            let key = self.key(kind, name);
            self.client
                .delete_object()
                .bucket(&self.url.bucket)
                .key(&key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.fail("delete", kind, name, &e))
        })
    }
}

/// The object name of a key below the kind's directory, if it is one of
/// the repository's (anything else in the bucket is passed over).
fn object_name(kind: ObjectKind, rest: &str) -> Option<String> {
    let file = match kind {
        ObjectKind::Config => (rest == "config.json").then_some("config.json")?,
        ObjectKind::Pack => {
            let (shard, file) = rest.split_once('/')?;
            (shard.len() == 2 && file.starts_with(shard)).then_some(file)?
        }
        _ => (!rest.contains('/')).then_some(rest)?,
    };
    let name = match kind {
        ObjectKind::Config => super::CONFIG_NAME,
        _ => file.strip_suffix(kind.suffix())?,
    };
    check_name(kind, name).ok()?;
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_repository_keys_are_objects() {
        assert_eq!(
            object_name(ObjectKind::Config, "config.json").as_deref(),
            Some("config")
        );
        assert_eq!(object_name(ObjectKind::Config, "config.json.bak"), None);
        assert_eq!(
            object_name(ObjectKind::Pack, "ab/abcd.tar.zst").as_deref(),
            Some("abcd")
        );
        assert_eq!(object_name(ObjectKind::Pack, "ab/cdef.tar.zst"), None);
        assert_eq!(object_name(ObjectKind::Pack, "abcd.tar.zst"), None);
        assert_eq!(
            object_name(ObjectKind::Index, "00ff.json.zst").as_deref(),
            Some("00ff")
        );
        assert_eq!(object_name(ObjectKind::Snapshot, "x/00ff.json"), None);
        assert_eq!(object_name(ObjectKind::Lock, "UPPER.json"), None);
    }
}
