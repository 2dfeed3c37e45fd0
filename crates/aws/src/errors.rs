//! Classification of AWS errors: the one place that decides which codes mean insufficient
//! capacity, throttling or not-found, and how SDK errors become `stowage_cloud::Error`.

use stowage_cloud::Error as CloudError;

use crate::sdk;

/// CreateFleet error codes meaning "this offering cannot be had right now": the offering is cached
/// unavailable and the launch returns `InsufficientCapacity`.
pub const INSUFFICIENT_CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "MaxSpotInstanceCountExceeded",
    "VcpuLimitExceeded",
    "UnfulfillableCapacity",
    "Unsupported",
    "InsufficientFreeAddressesInSubnet",
    "ReservationCapacityExceeded",
    "SpotMaxPriceTooLow",
];

/// Codes AWS uses when it throttles a caller (the SDK retries these with backoff first).
pub const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "SlowDown",
];

/// Codes meaning the instance (or launch template) does not exist.
pub const NOT_FOUND_CODES: &[&str] = &[
    "InvalidInstanceID.NotFound",
    "InvalidInstanceID.Malformed",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidLaunchTemplateId.NotFound",
];

/// What kind of failure an AWS error code is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    InsufficientCapacity,
    Throttled,
    NotFound,
    Other,
}

/// Classifies an AWS error code.
pub fn classify_code(code: &str) -> ErrorClass {
    if INSUFFICIENT_CAPACITY_CODES.contains(&code) {
        ErrorClass::InsufficientCapacity
    } else if THROTTLING_CODES.contains(&code) {
        ErrorClass::Throttled
    } else if NOT_FOUND_CODES.contains(&code) || code.ends_with(".NotFound") {
        ErrorClass::NotFound
    } else {
        ErrorClass::Other
    }
}

/// Classifies an SDK error (transport failures are `Other`).
pub fn classify(err: &sdk::Error) -> ErrorClass {
    err.code().map_or(ErrorClass::Other, classify_code)
}

/// The code and message of an SDK error, without its operation (the cloud error names that).
fn detail(err: &sdk::Error) -> String {
    match err.code() {
        Some(code) => format!("{code}: {}", err.message()),
        None => err.message().to_string(),
    }
}

/// Converts an SDK error of a non-launch call into the cloud error the core branches on.
pub fn to_cloud(err: sdk::Error) -> CloudError {
    match classify(&err) {
        ErrorClass::Throttled => CloudError::Throttled(err.to_string()),
        ErrorClass::NotFound => CloudError::NotFound(err.message().to_string()),
        _ => CloudError::Api {
            operation: err.operation(),
            message: detail(&err),
        },
    }
}

/// Converts a failed CreateFleet call (the whole call, not a per-override error).
pub fn launch_to_cloud(err: sdk::Error) -> CloudError {
    match (&err, classify(&err)) {
        (_, ErrorClass::Throttled) => CloudError::Throttled(err.to_string()),
        (sdk::Error::Service { code, message, .. }, _) => CloudError::Launch {
            code: code.clone(),
            message: message.clone(),
        },
        (sdk::Error::Transport { .. }, _) => CloudError::Api {
            operation: err.operation(),
            message: detail(&err),
        },
    }
}

/// An error and its sources joined with `: `, as the binary's `{err:#}` prints them (for logs
/// and status messages).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str) -> sdk::Error {
        sdk::Error::Service {
            operation: "CreateFleet",
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn codes_are_classified() {
        assert_eq!(
            classify_code("InsufficientInstanceCapacity"),
            ErrorClass::InsufficientCapacity
        );
        assert_eq!(classify_code("RequestLimitExceeded"), ErrorClass::Throttled);
        assert_eq!(
            classify_code("InvalidInstanceID.NotFound"),
            ErrorClass::NotFound
        );
        assert_eq!(
            classify_code("InvalidSubnetID.NotFound"),
            ErrorClass::NotFound
        );
        assert_eq!(classify_code("UnauthorizedOperation"), ErrorClass::Other);
    }

    #[test]
    fn errors_name_the_operation_and_their_source_once() {
        let denied = to_cloud(service("UnauthorizedOperation"));
        let text = super::error_chain(&denied);
        assert_eq!(text.matches("CreateFleet").count(), 1, "{text}");
        assert_eq!(text.matches("UnauthorizedOperation").count(), 1, "{text}");
        let transport = sdk::Error::Transport {
            operation: "DescribeSubnets",
            message: "connection refused".into(),
        };
        let text = super::error_chain(&crate::discovery::Error::DescribeSubnets(transport));
        assert_eq!(text.matches("connection refused").count(), 1, "{text}");
        assert_eq!(
            text,
            "failed to describe subnets: aws DescribeSubnets failed: connection refused"
        );
    }

    #[test]
    fn launch_errors_keep_the_aws_code() {
        match launch_to_cloud(service("UnauthorizedOperation")) {
            CloudError::Launch { code, .. } => assert_eq!(code, "UnauthorizedOperation"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            launch_to_cloud(service("RequestLimitExceeded")),
            CloudError::Throttled(_)
        ));
        assert!(matches!(
            to_cloud(service("InvalidInstanceID.NotFound")),
            CloudError::NotFound(_)
        ));
        let transport = sdk::Error::Transport {
            operation: "DescribeInstances",
            message: "io".into(),
        };
        assert!(matches!(
            to_cloud(transport),
            CloudError::Api {
                operation: "DescribeInstances",
                ..
            }
        ));
    }
}
