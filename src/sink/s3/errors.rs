//! What an S3 failure means for cairn: not found, already there, worth a
//! retry, or permanent, with one line that says what to check. Nothing here
//! ever prints credentials: the SDK's errors carry none, and only the code,
//! status and server message are kept.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::sink::{ObjectKind, SinkError};

/// The parts of an SDK error that decide what it means.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    pub transient: bool,
}

impl Failure {
    pub fn from_sdk<E>(err: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match err {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                let code = se.err().code().map(str::to_string);
                let message = se.err().message().unwrap_or_default().to_string();
                let transient = status >= 500
                    || status == 429
                    || status == 408
                    || matches!(
                        code.as_deref(),
                        Some(
                            "SlowDown"
                                | "RequestTimeout"
                                | "InternalError"
                                | "ServiceUnavailable"
                                | "RequestTimeTooSkewed"
                        )
                    );
                Failure {
                    status: Some(status),
                    code,
                    message,
                    transient,
                }
            }
            SdkError::ResponseError(re) => Failure {
                status: Some(re.raw().status().as_u16()),
                message: format!(
                    "the response was cut short or could not be read ({})",
                    source_text(err)
                ),
                transient: true,
                ..Failure::default()
            },
            SdkError::TimeoutError(_) => Failure {
                message: "timed out".into(),
                transient: true,
                ..Failure::default()
            },
            SdkError::DispatchFailure(df) => Failure {
                message: format!("cannot reach the server ({})", source_text(err)),
                // A refused or reset connection, a stalled transfer: may pass.
                transient: df.is_io() || df.is_timeout() || df.is_other(),
                ..Failure::default()
            },
            _ => Failure {
                message: source_text(err),
                transient: false,
                ..Failure::default()
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404) && self.code.as_deref() != Some("NoSuchBucket")
    }

    /// A conditional write (`If-None-Match: *`) that found the name taken.
    pub fn is_precondition_failed(&self) -> bool {
        self.status == Some(412) || self.code.as_deref() == Some("PreconditionFailed")
    }

    /// The sink error for operation `op` on `what` in `bucket`.
    pub fn into_sink_error(self, op: &'static str, kind: ObjectKind, name: &str, bucket: &str) -> SinkError {
        if self.is_not_found() {
            return SinkError::NotFound {
                kind,
                name: name.to_string(),
            };
        }
        if self.is_precondition_failed() {
            return SinkError::AlreadyExists {
                kind,
                name: name.to_string(),
            };
        }
        SinkError::Remote {
            op,
            location: format!("{kind} {name} in bucket {bucket}"),
            message: self.explain(bucket),
            transient: self.transient,
        }
    }

    /// The server's words plus what to check, for the errors people meet.
    pub fn explain(&self, bucket: &str) -> String {
        let said = match (&self.code, self.status, self.message.is_empty()) {
            (Some(code), Some(status), false) => format!("{code} ({status}): {}", self.message),
            (Some(code), Some(status), true) => format!("{code} ({status})"),
            (None, Some(status), _) => format!("HTTP {status} {}", self.message),
            _ => self.message.clone(),
        };
        let hint = match (self.code.as_deref(), self.status) {
            (Some("NoSuchBucket"), _) => {
                format!("; bucket {bucket} does not exist (`cairn init` creates it)")
            }
            (Some("InvalidAccessKeyId" | "SignatureDoesNotMatch"), _) => {
                "; check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)".into()
            }
            (Some("AccessDenied"), _) | (_, Some(403)) => {
                format!("; the credentials are not allowed this on bucket {bucket}: check them and the bucket's policy")
            }
            (
                Some(
                    "PermanentRedirect"
                    | "AuthorizationHeaderMalformed"
                    | "IllegalLocationConstraintException",
                ),
                _,
            )
            | (_, Some(301)) => {
                format!("; bucket {bucket} is in another region: set AWS_REGION or the sink's region")
            }
            _ if self.transient => "; retried until the retry time ran out".into(),
            _ => String::new(),
        };
        format!("{said}{hint}")
    }
}

/// The error's causes, joined, without repeating the top line.
fn source_text(err: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}
