//! The api-versions this service speaks. Each SDK generation sends one and expects answers in
//! that version's schema (2017 `blobSource`/`maxTasksPerNode`, today's `httpUrl`/...).

use crate::error::{BatchError, ErrorCode};

/// A supported Batch REST api-version, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiVersion {
    /// azure-batch 4.0.0, the tutorial's pin.
    V2017_09_01,
    /// azure-batch 6.0.0.
    V2018_12_01,
    /// azure-batch 10.0.0.
    V2020_09_01,
    /// @azure/batch 10.2.0.
    V2022_10_01,
    /// azure-batch 14.2.0.
    V2024_02_01,
    /// The last `.NN.0` version.
    V2024_07_01,
    /// azure-batch 15.1.0 (TypeSpec generation).
    V2025_06_01,
}

impl ApiVersion {
    /// Every supported version with its wire spelling.
    pub const ALL: [(ApiVersion, &'static str); 7] = [
        (Self::V2017_09_01, "2017-09-01.6.0"),
        (Self::V2018_12_01, "2018-12-01.8.0"),
        (Self::V2020_09_01, "2020-09-01.12.0"),
        (Self::V2022_10_01, "2022-10-01.16.0"),
        (Self::V2024_02_01, "2024-02-01.19.0"),
        (Self::V2024_07_01, "2024-07-01.20.0"),
        (Self::V2025_06_01, "2025-06-01"),
    ];

    /// The version a request's `api-version` names, or Azure's error.
    pub fn parse(value: Option<&str>) -> Result<Self, BatchError> {
        let Some(value) = value else {
            return Err(BatchError::new(ErrorCode::MissingRequiredQueryParameter)
                .with_value("QueryParameterName", "api-version"));
        };
        Self::ALL
            .iter()
            .find(|(_, s)| *s == value)
            .map(|(v, _)| *v)
            .ok_or_else(|| {
                BatchError::new(ErrorCode::InvalidQueryParameterValue)
                    .with_value("QueryParameterName", "api-version")
                    .with_value("QueryParameterValue", value)
                    .with_value(
                        "Reason",
                        "The specified api-version is not supported by this Cobalt server.",
                    )
            })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("", |(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for (v, s) in ApiVersion::ALL {
            assert_eq!(ApiVersion::parse(Some(s)).unwrap(), v);
            assert_eq!(v.as_str(), s);
        }
        assert!(ApiVersion::V2017_09_01 < ApiVersion::V2025_06_01);
        assert_eq!(
            ApiVersion::parse(Some("2099-01-01")).unwrap_err().code,
            ErrorCode::InvalidQueryParameterValue
        );
        assert_eq!(
            ApiVersion::parse(None).unwrap_err().code,
            ErrorCode::MissingRequiredQueryParameter
        );
    }
}
