//! AWS errors turned into messages an operator can act on. The SDK's own text says what the
//! API refused; the hint says what to do next. Nothing here may print a credential.

use aws_sdk_rds::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::Error;

/// Whether an AWS error code is a throttle (the call may be repeated after a pause).
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "RequestThrottled"
            | "RequestThrottledException"
    )
}

/// What the operator can do about an error code.
pub fn hint(code: &str) -> &'static str {
    match code {
        c if is_throttling(c) => {
            "AWS throttled the request and the retries ran out: lower --concurrency, or run the \
             same command again later (finished steps are skipped)"
        }
        "InvalidDBInstanceState" | "InvalidDBInstanceStateFault" | "InvalidDBClusterStateFault" => {
            "the resource is busy (modifying, rebooting, backing up, stopped...): wait until \
             `dbshift --provider aws inventory` shows it available and run again"
        }
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            "the AWS identity lacks a permission: grant the IAM actions listed in README.md \
             (section AWS) or use another --profile"
        }
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "UnrecognizedClientException" => {
            "the AWS credentials are refused: check AWS_PROFILE / --profile, AWS_ACCESS_KEY_ID, or \
             refresh an expired session"
        }
        "KMSKeyNotAccessibleFault" | "KMSKeyNotAccessible" | "InvalidKMSKeyFault" => {
            "the KMS key cannot be used: check --kms-key (id, ARN or alias in this region) and \
             that its key policy allows this identity and RDS"
        }
        "DBSnapshotAlreadyExists"
        | "DBClusterSnapshotAlreadyExistsFault"
        | "DBInstanceAlreadyExists"
        | "DBClusterAlreadyExistsFault" => {
            "a resource with that name exists already: pick another deployment name, or delete \
             the leftover (the message names it)"
        }
        "InstanceQuotaExceeded"
        | "StorageQuotaExceeded"
        | "SnapshotQuotaExceeded"
        | "DBClusterQuotaExceededFault" => {
            "an account quota is reached: delete unused resources or ask AWS for a higher quota"
        }
        "InvalidParameterCombination" | "InvalidParameterValue" => {
            "RDS refused the parameters: the message says which; nothing was changed"
        }
        c if c.ends_with("NotFound") || c.ends_with("NotFoundFault") => {
            "it does not exist in this account and region: check --region / --profile and \
             `dbshift --provider aws inventory`"
        }
        _ => "",
    }
}

/// An SDK error as the provider's [`Error::Platform`], with a hint when one applies.
pub fn platform<E>(operation: &str, target: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_string();
    let message = match (&err, err.message()) {
        (SdkError::ServiceError(_), Some(m)) => m.to_string(),
        (SdkError::ServiceError(e), None) if code.is_empty() => format!(
            "the endpoint answered HTTP {} without an RDS error (an endpoint that does not \
             implement {operation}?)",
            e.raw().status().as_u16()
        ),
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => format!(
            "cannot reach the RDS API ({}): check --endpoint-url, --region and the network",
            DisplayErrorContext(&err)
        ),
        _ => DisplayErrorContext(&err).to_string(),
    };
    let hint = hint(&code);
    let message = if hint.is_empty() {
        if code.is_empty() {
            message
        } else {
            format!("{code}: {message}")
        }
    } else {
        format!("{code}: {message}; {hint}")
    };
    Error::Platform {
        operation: operation.to_string(),
        target: target.to_string(),
        code,
        message,
    }
}

/// The code of a provider error from AWS, if it is one.
pub fn code_of(err: &Error) -> Option<&str> {
    match err {
        Error::Platform { code, .. } => Some(code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_what_to_do() {
        assert!(hint("Throttling").contains("run the same command again"));
        assert!(hint("DBInstanceNotFound").contains("--region"));
        assert!(hint("DBClusterNotFoundFault").contains("--region"));
        assert!(hint("InvalidDBInstanceState").contains("available"));
        assert!(hint("KMSKeyNotAccessibleFault").contains("--kms-key"));
        assert_eq!(hint("SomethingElse"), "");
        assert!(is_throttling("ThrottlingException"));
        assert!(!is_throttling("InvalidDBInstanceState"));
    }
}
