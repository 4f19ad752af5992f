//! A real S3 server on 127.0.0.1 for the tests: `s3s-fs` (an S3 API over a
//! directory) served by hyper on a tokio runtime of its own, in this
//! process. No Docker, no network beyond loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tempfile::TempDir;

pub const ACCESS_KEY: &str = "cairn-test-access";
pub const SECRET_KEY: &str = "cairn-test-secret-key-never-printed";

pub struct S3Server {
    pub addr: SocketAddr,
    /// Where the server keeps buckets (one directory each).
    pub root: TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The server's permissions: everything but creating buckets (credentials
/// that may use a bucket but not make one).
struct NoNewBuckets;

#[async_trait::async_trait]
impl s3s::access::S3Access for NoNewBuckets {
    async fn create_bucket(
        &self,
        _req: &mut s3s::S3Request<s3s::dto::CreateBucketInput>,
    ) -> s3s::S3Result<()> {
        Err(s3s::s3_error!(AccessDenied, "Access Denied"))
    }
}

impl S3Server {
    pub fn start() -> S3Server {
        S3Server::start_with(false)
    }

    /// A server whose credentials may not create buckets.
    pub fn start_without_bucket_creation() -> S3Server {
        S3Server::start_with(true)
    }

    fn start_with(deny_create_bucket: bool) -> S3Server {
        credentials_in_env();
        let root = tempfile::Builder::new()
            .prefix("cairn-s3-")
            .tempdir()
            .expect("tempdir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs");
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            if deny_create_bucket {
                b.set_access(NoNewBuckets);
            }
            b.build()
        };
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // Nagle and delayed ACKs would add 40 ms to each response.
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        S3Server {
            addr,
            root,
            runtime: Some(runtime),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `s3:http://127.0.0.1:PORT/BUCKET[/PREFIX]`.
    pub fn url(&self, bucket_and_prefix: &str) -> String {
        format!("s3:{}/{bucket_and_prefix}", self.endpoint())
    }

    /// The server's files of a bucket (what it stores).
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.path().join(bucket)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The test credentials, for a `cairn` child process; and never the
/// developer's own AWS configuration.
pub fn aws_env(cmd: &mut Command, scratch: &std::path::Path) {
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", scratch.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", scratch.join("no-aws-credentials"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
}

/// The same for sinks opened inside the test process: every test sets the
/// same values, so it does not matter which sets them first.
fn credentials_in_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cairn-test/aws-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/cairn-test/aws-credentials",
        );
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("CAIRN_CACHE_DIR", std::env::temp_dir().join("cairn-test-cache"));
    });
}

/// What [`FaultyProxy`] does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// Close it at once.
    Refuse,
    /// Answer `503 Slow Down` without asking the server.
    SlowDown,
    /// Pass the first bytes of the request on, then drop the connection
    /// (a connection lost mid-upload).
    CutRequest,
    /// Pass the first bytes of the server's response, then drop it (a
    /// download that breaks off).
    CutResponse,
    /// Wait, then pass everything.
    Delay,
}

/// A TCP proxy on 127.0.0.1 in front of a server that spoils a share of
/// the connections, in a fixed rotation: `every`th connection gets the
/// next fault of `faults`. It counts what it did.
pub struct FaultyProxy {
    pub addr: SocketAddr,
    pub injected: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultyProxy {
    pub fn start(target: SocketAddr, every: usize, faults: &[ProxyFault]) -> FaultyProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let injected = std::sync::Arc::new(AtomicUsize::new(0));
        let (count, faults) = (injected.clone(), faults.to_vec());
        runtime.spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                let _ = client.set_nodelay(true);
                n += 1;
                let fault = (n % every.max(1) == 0).then(|| faults[(n / every.max(1)) % faults.len()]);
                if fault.is_some() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 700];
                    match fault {
                        Some(ProxyFault::Refuse) => return,
                        Some(ProxyFault::SlowDown) => {
                            let _ = client.read(&mut buf).await;
                            let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                            let reply = format!(
                                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = client.write_all(reply.as_bytes()).await;
                            return;
                        }
                        Some(ProxyFault::Delay) => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
                        _ => {}
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                    let _ = server.set_nodelay(true);
                    match fault {
                        Some(ProxyFault::CutRequest) => {
                            if let Ok(k) = client.read(&mut buf).await {
                                let _ = server.write_all(&buf[..k / 2]).await;
                            }
                        }
                        Some(ProxyFault::CutResponse) => {
                            let (mut cr, mut cw) = client.into_split();
                            let (mut sr, mut sw) = server.into_split();
                            tokio::spawn(async move {
                                let _ = tokio::io::copy(&mut cr, &mut sw).await;
                            });
                            // Headers and the start of a body, then nothing.
                            let mut left = 700usize;
                            while left > 0 {
                                let Ok(k) = sr.read(&mut buf[..left.min(700)]).await else { break };
                                if k == 0 || cw.write_all(&buf[..k]).await.is_err() {
                                    break;
                                }
                                left -= k;
                            }
                        }
                        _ => {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }
                });
            }
        });
        FaultyProxy {
            addr,
            injected,
            runtime: Some(runtime),
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
